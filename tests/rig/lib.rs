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
mod net;
mod nginx;
mod sshd;

pub use app::{App, app_jar};
pub use bin::{Bin, Run, bin_path};
pub use net::{ClosedPort, free_port, http_get, wait_for_port};
pub use nginx::Nginx;
pub use sshd::{Sshd, keygen};

/// Runs `program` with `args`, panicking with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
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
