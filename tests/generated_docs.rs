//! Man pages and shell completions are generated from the clap definitions,
//! the one place each flag and its help text is written, and committed under
//! docs/man and docs/completions so that packagers and users need no build.
//! This test regenerates them in memory and fails when the committed files
//! differ; `BG_UPDATE_DOCS=1 cargo test --test generated_docs` rewrites them.

use std::path::{Path, PathBuf};

use bg_core::exit::Code;
use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, roman};

const UPDATE_HINT: &str =
    "run `BG_UPDATE_DOCS=1 cargo test --test generated_docs` and commit the result";

/// The exit codes of the contract, the same in every binary (bg_core::exit::Code).
const EXIT_STATUS: [(Code, &str); 6] = [
    (
        Code::Ok,
        "Done; also nothing to do (port already free, nginx already on that port).",
    ),
    (
        Code::Failed,
        "The operation ran and failed: unhealthy, port still busy, nginx rejected the config (rolled back).",
    ),
    (
        Code::Usage,
        "Bad usage or bad input: unknown flag, port out of range, blue = green, a given file missing.",
    ),
    (
        Code::Unsafe,
        "The host is not in a state to act on safely: layout not found or ambiguous, asked to stop the protected port.",
    ),
    (
        Code::Unreachable,
        "Could not reach or trust the host: connect, authentication, host key unknown or changed.",
    ),
    (
        Code::Busy,
        "Another run holds the lock for this site or port; nothing was changed, retry later.",
    ),
];

/// clap_mangen's page, plus the sections clap knows nothing about: the exit
/// codes of the contract and the other binaries of the deploy.
fn man_page(cmd: &Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    let fail = "rendering a man page into memory cannot fail";
    man.render_title(&mut out).expect(fail);
    man.render_name_section(&mut out).expect(fail);
    man.render_synopsis_section(&mut out).expect(fail);
    man.render_description_section(&mut out).expect(fail);
    man.render_options_section(&mut out).expect(fail);

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", [])
            .text([bold(code.as_i32().to_string())])
            .text([roman(meaning)]);
    }
    roff.control("PP", []).text([roman(
        "Every non-zero exit prints one line on stderr that says what happened and what to do next.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    let others: Vec<String> = bg_deploy_tests::commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != cmd.get_name())
        .map(|n| format!("{n}(1)"))
        .collect();
    roff.text([roman(format!(
        "{}; docs/GUIDE.md in the bg-deploy sources for the whole deploy.",
        others.join(", ")
    ))]);
    roff.to_writer(&mut out).expect(fail);

    man.render_version_section(&mut out).expect(fail);
    out
}

/// (path relative to the repository, content) for every generated file.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for cmd in bg_deploy_tests::commands() {
        let name = cmd.get_name().to_string();

        let man = man_page(&cmd);
        files.push((PathBuf::from(format!("docs/man/{name}.1")), man));

        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            files.push((
                PathBuf::from(format!("docs/completions/{shell}/{file}")),
                out,
            ));
        }
    }
    files
}

#[test]
fn man_pages_and_completions_match_the_clap_definitions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("BG_UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (relative, content) in generated() {
        let path = root.join(&relative);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            stale.push(relative.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated docs are missing or out of date: {}; {UPDATE_HINT}",
        stale.join(", ")
    );
}

#[test]
fn every_binary_has_a_man_page_and_three_completions() {
    let files = generated();
    assert_eq!(files.len(), 7 * 4);
    for (path, content) in files {
        assert!(!content.is_empty(), "{} is empty", path.display());
    }
}
