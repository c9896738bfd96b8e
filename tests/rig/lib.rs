//! The test rig: the workspace's real binaries, a real `sshd`, a real `nginx`
//! and a real JVM, all on loopback, each in its own temp dir, torn down when
//! the test that started them ends. Tests run in parallel: every server takes
//! a fresh port and retries if another test took it first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

mod app;
mod bin;
mod delay;
mod net;
mod netns;
mod nginx;
mod programs;
mod sshd;

pub use app::{App, JAVA_OPTS, app_jar};
pub use bin::{Bin, Run, bin_path, runtime_dir};
pub use delay::DelayProxy;
pub use net::{ClosedPort, free_port, http_get, http_get_at, wait_for_port};
pub use netns::{AppHost, Fleet, Netns};
pub use nginx::Nginx;
pub use programs::{SETUP_COMMAND, cannot_run, cannot_run_message, need, package_of, setup_table};
pub use sshd::{Sshd, descendants, keygen};

#[doc(hidden)]
pub use tempfile as __tempfile;

/// Runs a scenario that drives a binary as `NAME::local`, `NAME::ssh` and
/// `NAME::openssh`: the body gets the host flags (none locally, a fresh
/// sshd's `host_args()` for libssh2, its `openssh_args()` for the system's
/// `ssh`) and a temp dir.
#[macro_export]
macro_rules! both_ways {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn local() {
                let dir = $crate::__tempfile::tempdir().unwrap();
                ($body)(&[] as &[String], dir.path());
            }

            #[test]
            fn ssh() {
                let sshd = $crate::Sshd::start();
                let dir = $crate::__tempfile::tempdir().unwrap();
                ($body)(&sshd.host_args(), dir.path());
            }

            #[test]
            fn openssh() {
                let sshd = $crate::Sshd::start();
                let dir = $crate::__tempfile::tempdir().unwrap();
                ($body)(&sshd.openssh_args(), dir.path());
            }
        }
    };
}

/// Every binary's clap `Command`, built from the same `Cli` its `main` parses.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        gradle_version::Cli::command(),
        bg_detect_port::Cli::command(),
        bg_stop_port::Cli::command(),
        bg_ship::Cli::command(),
        bg_healthcheck::Cli::command(),
        bg_switch::Cli::command(),
        bg_status::Cli::command(),
    ]
}

/// Runs `program` with `args`, panicking with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(cannot_run(program));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The user tests log in as over SSH: the one running them.
pub fn current_user() -> String {
    sh("id", &["-un"]).trim().to_string()
}
