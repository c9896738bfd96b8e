//! What the tests need besides a Rust toolchain: README's set-up command
//! (scripts/install-test-deps.sh) finds what is missing and names its
//! Debian packages, and a test whose program is missing says which package
//! to install instead of panicking with a bare `NotFound`.

use std::path::{Path, PathBuf};
use std::process::Command;

use bg_deploy_tests::{SETUP_COMMAND, cannot_run, cannot_run_message, package_of, setup_table};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-test-deps.sh");
const README: &str = include_str!("../README.md");

/// `name` on the PATH of the tests.
fn on_path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// The set-up script with `--check` (it installs nothing) and `PATH` only.
fn check(path: &Path) -> (i32, String) {
    let output = Command::new(on_path("bash"))
        .arg(SCRIPT)
        .arg("--check")
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap_or_else(cannot_run("bash"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr).into_owned()
    );
    (output.status.code().unwrap_or(-1), stdout)
}

#[test]
fn readme_gives_the_set_up_command_before_the_test_command() {
    let setup = README
        .find(&format!("```sh\n{SETUP_COMMAND}\n```"))
        .expect("README has no set-up command block");
    let tests = README.find("<!-- test-command -->").unwrap();
    assert!(setup < tests, "the set-up command comes after the tests");
}

#[test]
fn every_program_the_tests_start_has_its_package() {
    for (program, package) in [
        ("/usr/sbin/nginx", "nginx-light"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("ssh-agent", "openssh-client"),
        ("ssh-add", "openssh-client"),
        ("scp", "openssh-client"),
        ("java", "default-jdk-headless"),
        ("javac", "default-jdk-headless"),
        ("jar", "default-jdk-headless"),
        ("groovy", "groovy"),
        ("git", "git"),
        ("curl", "curl"),
        ("pgrep", "procps"),
        ("flock", "util-linux"),
    ] {
        assert_eq!(package_of(program), Some(package), "{program}");
    }
    assert_eq!(package_of("no-such-program"), None);
}

#[test]
fn a_missing_program_fails_naming_its_package() {
    let empty = tempfile::tempdir().unwrap();
    let error = Command::new("groovy")
        .env("PATH", empty.path())
        .output()
        .unwrap_err();
    let message = cannot_run_message("groovy", &error);
    assert!(message.starts_with("cannot run groovy: "), "{message}");
    assert!(message.contains("the Debian package groovy"), "{message}");
    assert!(message.contains(SETUP_COMMAND), "{message}");

    // The panic of a spawn that failed says the same.
    let panic = std::panic::catch_unwind(|| {
        Command::new("ssh-keygen")
            .env("PATH", empty.path())
            .output()
            .unwrap_or_else(cannot_run("ssh-keygen"))
    })
    .unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    assert!(text.contains("the Debian package openssh-client"), "{text}");

    // Only a program that is not there is a missing package.
    let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let message = cannot_run_message("groovy", &denied);
    assert!(!message.contains("package"), "{message}");
}

#[test]
fn the_set_up_script_names_the_packages_of_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stdout) = check(empty.path());
    assert_eq!(code, 1, "{stdout}");
    // Nothing is on this PATH; the programs given by path are where they are.
    let mut expected: Vec<&str> = Vec::new();
    for (program, package) in setup_table() {
        let missing = !program.starts_with('/') || !Path::new(program).exists();
        if missing && !expected.contains(&package) {
            expected.push(package);
        }
    }
    let line = format!("  sudo apt-get install -y {}", expected.join(" "));
    assert!(
        stdout.lines().any(|l| l == line),
        "no line {line:?} in:\n{stdout}"
    );
    assert!(stdout.contains("missing ssh ssh-keygen"), "{stdout}");
}

#[test]
fn the_set_up_script_does_nothing_when_nothing_is_missing() {
    let bin = tempfile::tempdir().unwrap();
    for (program, _) in setup_table() {
        if program.starts_with('/') {
            // The rig runs these from where Debian puts them.
            assert!(Path::new(program).exists(), "{program} is missing");
        } else {
            std::os::unix::fs::symlink("/bin/true", bin.path().join(program)).unwrap();
        }
    }
    let (code, stdout) = check(bin.path());
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout,
        "install-test-deps: everything the tests need is installed\n"
    );
}
