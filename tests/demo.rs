//! README's first command, `bash tests/demo.sh`, run as a newcomer would:
//! a whole local blue/green deploy through the six binaries.

use std::process::Command;

use bg_deploy_tests::cannot_run;

#[test]
fn the_demo_deploys_v2_and_cleans_up() {
    let bin = bg_deploy_tests::bin_path("bg-switch")
        .parent()
        .unwrap()
        .to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new("bash");
    demo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/demo.sh"))
        .env("TMPDIR", tmp.path());
    // The demo builds the binaries as README's first command does, when the
    // rig's are that build's: nothing is left to compile then. A test run
    // of another profile hands the demo its binaries.
    let builds = bin.file_name().is_some_and(|name| name == "debug");
    if builds {
        demo.env("CARGO", env!("CARGO"))
            .env("CARGO_TARGET_DIR", bin.parent().unwrap())
            .env_remove("BG_DEMO_BIN");
    } else {
        demo.env("BG_DEMO_BIN", &bin);
    }
    let output = demo.output().unwrap_or_else(cannot_run("bash"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    if builds {
        // cargo's own output, not hidden: a first build takes minutes.
        assert!(stdout.contains("building the binaries"), "{stdout}");
        assert!(stderr.contains("Finished"), "{stderr}");
    }
    // The last line says how long the whole demo took, cleanup included.
    let last = stdout.lines().last().unwrap_or("");
    let took = last
        .strip_prefix("==> cleaned up; the whole demo took ")
        .unwrap_or_else(|| panic!("no duration at the end:\n{stdout}"));
    let numbers: Vec<&str> = took.trim_end_matches('s').split("m ").collect();
    assert!(
        numbers.iter().all(|n| n.parse::<u64>().is_ok()),
        "not a duration: {took:?}"
    );
    let before = stdout
        .find("nginx serves: version=1.0.0")
        .expect("v1 served before");
    let after = stdout
        .find("nginx serves: version=2.0.0")
        .expect("v2 served after");
    assert!(before < after);
    assert!(
        stdout.contains("the backup still runs: version=1.0.0"),
        "{stdout}"
    );
    for stage in [
        "1/6 Get Version",
        "2/6 Detect Port",
        "3/6 Stop Port",
        "4/6 Deploy",
        "5/6 Health Check",
        "6/6 Switch",
    ] {
        assert!(stdout.contains(stage), "stage {stage} missing:\n{stdout}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
    let still_running = Command::new("pgrep")
        .args(["-f", &tmp.path().display().to_string()])
        .output()
        .unwrap_or_else(cannot_run("pgrep"));
    assert!(
        still_running.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&still_running.stdout)
    );
}
