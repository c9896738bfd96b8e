//! The docs are full of command lines, and a flag that does not exist fails
//! only when someone copies it into a pipeline. Every code block of the
//! task-oriented pages (and bg-status's) is scanned for calls of the binaries, and every
//! `--flag` given to one is looked up in that binary's clap definition.

use std::collections::BTreeSet;

const PAGES: [(&str, &str); 5] = [
    ("docs/GUIDE.md", include_str!("../docs/GUIDE.md")),
    ("docs/migration.md", include_str!("../docs/migration.md")),
    (
        "docs/ci-examples.md",
        include_str!("../docs/ci-examples.md"),
    ),
    ("README.md", include_str!("../README.md")),
    ("docs/bg-status.md", include_str!("../docs/bg-status.md")),
];

/// Code blocks as (info string, lines).
fn code_blocks(page: &str) -> Vec<(String, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in page.lines() {
        let fence = line.trim_start().starts_with("```");
        match current.as_mut() {
            None if fence => {
                current = Some((
                    line.trim_start().trim_start_matches('`').to_string(),
                    vec![],
                ))
            }
            None => {}
            Some(_) if fence => blocks.push(current.take().unwrap()),
            Some((_, lines)) => lines.push(line),
        }
    }
    blocks
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `--name` tokens in a piece of shell, wherever they stand (`${A:+--x "$A"}` too).
fn long_flags(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut flags = Vec::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let starts = bytes[i] == b'-'
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_lowercase()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-'));
        if starts {
            let end = text[i + 2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(text.len(), |n| i + 2 + n);
            flags.push(text[i + 2..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    flags
}

/// Where a binary is called as a command word in `line`: its byte offset.
fn call_of(line: &str, name: &str) -> Option<usize> {
    line.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].chars().next();
        let word_before =
            before.is_none_or(|c| " \t(\"$`|&;{".contains(c)) || line[..i].ends_with('/');
        let word_after = after.is_none_or(|c| c == ' ' || c == '\\' || c == ')');
        // `target/release/bg-*`, `bg-switch(1)`, `jenkins/Jenkinsfile` are not calls
        word_before
            && word_after
            && !line[..i].ends_with("release/")
            && !line[..i].ends_with("command -v ")
    })
}

#[test]
fn every_flag_in_the_docs_exists() {
    let commands = bg_deploy_tests::commands();
    let mut bad = BTreeSet::new();
    let mut checked = 0;
    for (page, text) in PAGES {
        for (info, lines) in code_blocks(text) {
            let yaml = info == "yaml";
            for (n, line) in lines.iter().enumerate() {
                for cmd in &commands {
                    let name = cmd.get_name();
                    let Some(at) = call_of(line, name) else {
                        continue;
                    };
                    // The call: the rest of the line, plus continuation lines
                    // (a trailing backslash; in YAML, a folded scalar's lines).
                    let mut call = line[at + name.len()..].to_string();
                    let (mut prev, mut k) = (*line, n + 1);
                    while k < lines.len() {
                        let next = lines[k];
                        let folded = yaml
                            && indent(next) == indent(line)
                            && !next.trim_start().starts_with("- ")
                            && !next.trim_end().ends_with(':');
                        if !(prev.trim_end().ends_with('\\') || folded) {
                            break;
                        }
                        call.push(' ');
                        call.push_str(next);
                        prev = next;
                        k += 1;
                    }
                    // Only up to the end of this command: the next binary or
                    // shell operator.
                    let call = [" || ", " && ", "; ", " | "]
                        .iter()
                        .filter_map(|op| call.find(op))
                        .min()
                        .map_or(call.as_str(), |end| &call[..end]);
                    let call = commands
                        .iter()
                        .filter_map(|c| call_of(call, c.get_name()))
                        .min()
                        .map_or(call, |end| &call[..end]);
                    for flag in long_flags(call) {
                        checked += 1;
                        let known = flag == "help"
                            || flag == "version"
                            || cmd
                                .get_arguments()
                                .any(|a| a.get_long() == Some(flag.as_str()));
                        if !known {
                            bad.insert(format!("{page}: {name} --{flag}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} flags found: is the scan broken?"
    );
    assert!(
        bad.is_empty(),
        "flags the binaries do not have:\n{}",
        bad.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_scanner_finds_flags_where_shell_hides_them() {
    assert_eq!(
        long_flags(r#"bg-stop-port --port "$T" ${A:+--protect-port "$A"} -q"#),
        ["port", "protect-port"]
    );
    assert_eq!(call_of("x=$(bg-ship --port 1)", "bg-ship"), Some(4));
    assert_eq!(
        call_of("install target/release/bg-ship /x", "bg-ship"),
        None
    );
}
