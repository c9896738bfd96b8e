//! Runs the workspace's real binaries.
//!
//! Cargo only hands `CARGO_BIN_EXE_*` to tests of the package that owns the
//! binary, so the rig builds the workspace's binaries itself, once per test
//! process, with the cargo and profile that built the tests, and runs them
//! from `target/<profile>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();

fn bin_dir() -> &'static Path {
    BIN_DIR.get_or_init(|| {
        // target/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target = dir.parent().unwrap();
        let profile = dir.file_name().unwrap().to_str().unwrap().to_string();
        if std::env::var_os("BG_TEST_NO_BUILD").is_none() {
            let mut cargo = Command::new(env!("CARGO"));
            // What cargo set for this test process is not the developer's
            // environment: ring's build script watches CARGO_MANIFEST_DIR and
            // CARGO_PKG_*, and seeing them here rebuilt ring, rustls, ureq and
            // every binary on each run (30 s and more, inside the first test's
            // timing), then again for the next plain `cargo build`.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_BIN_EXE_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_MANIFEST_LINKS",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&key.as_ref())
                {
                    cargo.env_remove(key.as_ref());
                }
            }
            let status = cargo
                .args(["build", "--workspace", "--bins", "--quiet", "--profile"])
                .arg(if profile == "debug" { "dev" } else { &profile })
                .arg("--target-dir")
                .arg(target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cannot run cargo to build the binaries");
            assert!(status.success(), "cargo build --workspace --bins failed");
        }
        dir
    })
}

/// The binaries' `XDG_RUNTIME_DIR`: `--ssh-client openssh` keeps its shared
/// connections' sockets there (in `bg-ssh/`), next to the binaries rather
/// than in the home or /tmp of whoever runs the tests. Each test's sshd ends
/// its sessions when it stops, and with them the masters and their sockets.
pub fn runtime_dir() -> PathBuf {
    let dir = bin_dir().join("rig-run");
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    dir
}

/// The path of a workspace binary.
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.is_file(), "{} is not built", path.display());
    path
}

/// A command line for one of our binaries, logged before it runs.
#[derive(Debug, Clone)]
pub struct Bin {
    name: String,
    args: Vec<String>,
    env: BTreeMap<String, Option<String>>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

/// What a run left: exit code, stdout, stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything when it is another.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The one-line error contract: the last stderr line is `NAME: error: ...; hint`.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let last = self.stderr.lines().last().unwrap_or("");
        assert!(
            last.contains(": error: "),
            "no error line in stderr:\n{}",
            self.stderr
        );
        last
    }
}

impl Bin {
    pub fn new(name: &str) -> Self {
        // The tests set what they need; nothing from the developer's shell leaks in.
        let mut env = BTreeMap::new();
        for (key, _) in std::env::vars() {
            if key.starts_with("BG_") || key == "SSH_AUTH_SOCK" || key == "BUILD_TAG" {
                env.insert(key, None);
            }
        }
        env.insert(
            "XDG_RUNTIME_DIR".to_string(),
            Some(runtime_dir().display().to_string()),
        );
        Bin {
            name: name.to_string(),
            args: Vec::new(),
            env,
            dir: None,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.env
            .insert(key.to_string(), Some(value.as_ref().to_string()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.insert(key.to_string(), None);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin_path(&self.name));
        cmd.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs to completion.
    pub fn run(&self) -> Run {
        eprintln!("$ {} {}", self.name, self.args.join(" "));
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(bytes) = &self.stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        run
    }
}
