//! GUIDE.md's "Every deploy after it" is a script people paste into CI. Run
//! as written under `set -e`, it must stop at the first step that fails,
//! not go on with empty ports: `eval "$(cmd)"` succeeds whatever `cmd` did,
//! which is why the recipe assigns first (`detect=$(cmd)`), then evals.

use bg_deploy_tests::{ClosedPort, bin_path};

const GUIDE: &str = include_str!("../docs/GUIDE.md");

/// The first ```sh block after the heading that starts with `heading`.
fn block_after(heading: &str) -> String {
    let start = GUIDE
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in GUIDE.md"));
    let rest = &GUIDE[start..];
    let open = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block ends");
    rest[open..open + close].to_string()
}

#[test]
fn the_deploy_recipe_stops_at_the_first_failure() {
    let script = block_after("## 7. Every deploy after it");
    assert!(script.starts_with("set -e\n"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("build.gradle"), "version = '1.4.0'\n").unwrap();
    // Nothing listens there: bg-detect-port exits 4.
    let closed = ClosedPort::new();
    let host = format!("127.0.0.1:{}", closed.port);
    let bin_dir = bin_path("bg-detect-port").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("NGINX", &host)
        .env("APP", &host)
        .env("BG_CONNECT_TIMEOUT", "5s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("bg-detect-port: error:"), "{stderr}");
    // Nothing after the failed step ran.
    for later in ["bg-stop-port", "bg-ship", "bg-healthcheck", "bg-switch"] {
        assert!(
            !stderr.contains(later),
            "{later} ran after the failure:\n{stderr}"
        );
    }
}
