//! The stand-in for a Spring Boot jar: tests/rig/TestApp.java, compiled once
//! per source version into target/, started with `java -jar`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{cannot_run, wait_for_port};

/// The flags of every JVM the tests start: a quick start, and no perf data
/// file. The JVM keeps that file in /tmp/hsperfdata_USER whatever TMPDIR
/// says, and one killed at a test's end leaves it there: tests leave nothing
/// in /tmp. `javac` and `jar` get the last one as `-J-XX:-UsePerfData`.
pub const JAVA_OPTS: &str = "-XX:TieredStopAtLevel=1 -Xshare:auto -XX:-UsePerfData";

const SOURCE: &str = include_str!("TestApp.java");

static JAR: OnceLock<PathBuf> = OnceLock::new();

/// The app's jar, built with the JDK's javac and jar the first time it is asked for.
pub fn app_jar() -> &'static Path {
    JAR.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        SOURCE.hash(&mut hasher);
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().to_path_buf();
        let dir = target.join(format!("bg-test-app/{:016x}", hasher.finish()));
        let jar = dir.join("app.jar");
        if jar.is_file() {
            return jar;
        }
        // Build beside, then rename: parallel test processes never see half a jar.
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(target.as_path())
            .unwrap();
        std::fs::write(work.path().join("TestApp.java"), SOURCE).unwrap();
        let classes = work.path().join("classes");
        let javac = Command::new("javac")
            .args([
                "-J-XX:-UsePerfData",
                "-nowarn",
                "-XDignore.symbol.file",
                "-d",
            ])
            .arg(&classes)
            .arg(work.path().join("TestApp.java"))
            .output()
            .unwrap_or_else(cannot_run("javac"));
        assert!(
            javac.status.success(),
            "javac failed: {}",
            String::from_utf8_lossy(&javac.stderr)
        );
        let built = work.path().join("app.jar");
        let status = Command::new("jar")
            .args(["-J-XX:-UsePerfData", "--create", "--file"])
            .arg(&built)
            .args(["--main-class", "TestApp", "-C"])
            .arg(&classes)
            .arg(".")
            .status()
            .unwrap_or_else(cannot_run("jar"));
        assert!(status.success(), "jar failed");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(&built, &jar).unwrap();
        jar
    })
}

/// A running app on a port, killed when dropped.
pub struct App {
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl App {
    /// Starts `java -Dserver.port=PORT [-Dk=v...] -jar app.jar` with output to `log`.
    pub fn start(port: u16, properties: &[(&str, &str)], log: &Path) -> App {
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new("java");
        cmd.args(JAVA_OPTS.split_whitespace())
            .arg(format!("-Dserver.port={port}"));
        for (k, v) in properties {
            cmd.arg(format!("-D{k}={v}"));
        }
        let child = cmd
            .arg("-jar")
            .arg(app_jar())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(cannot_run("java"));
        App {
            port,
            log: log.to_path_buf(),
            child,
        }
    }

    /// Starts and waits until it listens.
    pub fn start_ready(port: u16, properties: &[(&str, &str)], log: &Path) -> App {
        let app = App::start(port, properties, log);
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "the app did not listen on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        app
    }

    /// Waits for the app to exit by itself; its exit code, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
