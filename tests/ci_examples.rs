//! docs/ci-examples.md holds a whole GitHub Actions workflow and a whole
//! .gitlab-ci.yml that people copy. A YAML slip there fails only in their CI,
//! so every ```yaml block on the page is parsed here, and the keys the deploy
//! depends on are checked: one deploy at a time (`concurrency`,
//! `resource_group`), results handed on (`$GITHUB_OUTPUT`, dotenv reports),
//! all six binaries called, host keys never left unchecked.

use serde_yaml_ng::{Mapping, Value};

const PAGE: &str = include_str!("../docs/ci-examples.md");

const BINARIES: [&str; 6] = [
    "gradle-version",
    "bg-detect-port",
    "bg-stop-port",
    "bg-ship",
    "bg-healthcheck",
    "bg-switch",
];

/// The text of every fenced block whose info string is `yaml`.
fn yaml_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in PAGE.lines() {
        match current.as_mut() {
            None if line.trim_start() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "a ```yaml block is not closed");
    blocks
}

fn parse(block: &str) -> Mapping {
    match serde_yaml_ng::from_str::<Value>(block) {
        Ok(Value::Mapping(map)) => map,
        Ok(other) => panic!("a yaml block is not a mapping: {other:?}\n{block}"),
        Err(e) => panic!("a yaml block does not parse: {e}\n{block}"),
    }
}

/// Every string anywhere in the document: the shell the CI will run.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        Value::Tagged(tagged) => strings(&tagged.value, out),
        _ => {}
    }
}

fn assert_calls_every_binary(name: &str, doc: &Mapping) {
    let mut all = Vec::new();
    strings(&Value::Mapping(doc.clone()), &mut all);
    let shell = all.join("\n");
    for binary in BINARIES {
        assert!(
            shell.contains(&format!("{binary} ")),
            "the {name} example never calls {binary}"
        );
    }
    for unsafe_trust in [
        "StrictHostKeyChecking=no",
        "host-key-check off",
        "BG_HOST_KEY_CHECK",
    ] {
        assert!(
            !shell.contains(unsafe_trust),
            "the {name} example turns host key checking off ({unsafe_trust})"
        );
    }
    assert!(
        shell.contains("BG_SSH_KEY") && shell.contains("BG_KNOWN_HOSTS"),
        "the {name} example must take the key and known_hosts from secrets"
    );
}

fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(Value::String(key.into()))
}

#[test]
fn the_page_has_one_github_workflow_and_one_gitlab_file() {
    let docs: Vec<Mapping> = yaml_blocks().iter().map(|b| parse(b)).collect();
    assert_eq!(
        docs.len(),
        2,
        "expected two yaml blocks on docs/ci-examples.md"
    );
    assert_eq!(docs.iter().filter(|d| get(d, "jobs").is_some()).count(), 1);
    assert_eq!(
        docs.iter().filter(|d| get(d, "stages").is_some()).count(),
        1
    );
}

#[test]
fn github_workflow_runs_one_deploy_at_a_time_and_passes_outputs_on() {
    let blocks = yaml_blocks();
    let (text, doc) = blocks
        .iter()
        .map(|b| (b, parse(b)))
        .find(|(_, d)| get(d, "jobs").is_some())
        .expect("no GitHub Actions workflow (a mapping with `jobs`)");
    assert!(
        get(&doc, "on").is_some(),
        "the workflow has no `on:` trigger"
    );
    let concurrency = get(&doc, "concurrency").expect("the workflow has no `concurrency:`");
    assert!(
        concurrency.get("group").is_some(),
        "`concurrency:` needs a group"
    );
    assert_eq!(
        concurrency.get("cancel-in-progress"),
        Some(&Value::Bool(false)),
        "a deploy must never be cancelled half-way"
    );
    let jobs = get(&doc, "jobs").unwrap().as_mapping().unwrap();
    assert!(!jobs.is_empty());
    for (name, job) in jobs {
        let steps = job.get("steps").and_then(Value::as_sequence);
        assert!(
            steps.is_some_and(|s| !s.is_empty()),
            "job {name:?} has no steps"
        );
        assert!(job.get("runs-on").is_some(), "job {name:?} has no runs-on");
    }
    assert!(text.contains(">> \"$GITHUB_OUTPUT\""));
    assert!(text.contains("--format env"));
    assert_calls_every_binary("GitHub Actions", &doc);
}

#[test]
fn gitlab_file_holds_the_resource_group_and_hands_results_on_as_dotenv() {
    let blocks = yaml_blocks();
    let doc = blocks
        .iter()
        .map(|b| parse(b))
        .find(|d| get(d, "stages").is_some())
        .expect("no GitLab CI file (a mapping with `stages`)");
    let stages: Vec<&str> = get(&doc, "stages")
        .and_then(Value::as_sequence)
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut dotenv_reports = 0;
    let mut deploy_jobs = 0;
    for (name, job) in &doc {
        let name = name.as_str().unwrap();
        let Some(stage) = job.get("stage").and_then(Value::as_str) else {
            continue; // `stages`, `variables`, hidden keys
        };
        assert!(
            stages.contains(&stage),
            "job {name} has an unknown stage {stage}"
        );
        assert!(
            job.get("script").and_then(Value::as_sequence).is_some(),
            "job {name} has no script"
        );
        let shell = serde_yaml_ng::to_string(job).unwrap();
        if shell.contains("bg-switch") || shell.contains("bg-ship") {
            deploy_jobs += 1;
            assert!(
                job.get("resource_group").is_some(),
                "job {name} changes hosts without a resource_group"
            );
        }
        if let Some(reports) = job.get("artifacts").and_then(|a| a.get("reports")) {
            dotenv_reports += usize::from(reports.get("dotenv").is_some());
        }
    }
    assert!(deploy_jobs >= 1, "no job deploys");
    assert!(
        dotenv_reports >= 1,
        "no job hands its results on as a dotenv report"
    );
    assert_calls_every_binary("GitLab CI", &doc);
}

/// `${{ expr }}` is GitHub's, expanded before the shell sees the line.
fn without_github_expressions(run: &str) -> String {
    let mut out = String::new();
    let mut rest = run;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed ${{") + start + 2;
        out.push_str("EXPR");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn assert_shell_parses(what: &str, script: &str) {
    let out = std::process::Command::new("bash")
        .args(["-n", "-c", script])
        .output()
        .expect("bash is needed to check the examples' shell");
    assert!(
        out.status.success(),
        "{what}: bash -n rejects it: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shell_step_of_the_examples_parses() {
    let mut checked = 0;
    for doc in yaml_blocks().iter().map(|b| parse(b)) {
        if let Some(jobs) = get(&doc, "jobs").and_then(Value::as_mapping) {
            for (job, body) in jobs {
                let steps = body.get("steps").and_then(Value::as_sequence).unwrap();
                for step in steps {
                    if let Some(run) = step.get("run").and_then(Value::as_str) {
                        assert_shell_parses(
                            &format!("GitHub job {job:?}"),
                            &without_github_expressions(run),
                        );
                        checked += 1;
                    }
                }
            }
        }
        if get(&doc, "stages").is_some() {
            for (job, body) in &doc {
                let Some(script) = body.get("script").and_then(Value::as_sequence) else {
                    continue;
                };
                // Anchored lists (`- *ssh`) arrive nested; GitLab flattens them.
                let mut lines = Vec::new();
                for item in script {
                    match item {
                        Value::Sequence(inner) => {
                            lines.extend(inner.iter().filter_map(Value::as_str))
                        }
                        other => lines.extend(other.as_str()),
                    }
                }
                assert_shell_parses(&format!("GitLab job {job:?}"), &lines.join("\n"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} shell steps found");
}
