//! What the Jenkins tests share: the app's git repository with a gradlew
//! stand-in, the pipeline shim's invocation, and a bounded load through nginx.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bg_deploy_tests::{cannot_run, http_get, need};
use tempfile::TempDir;

pub const SOURCE: &str = include_str!("../rig/TestApp.java");
pub const SHIM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/jenkins/pipeline-shim.groovy"
);

/// The Gradle wrapper's stand-in: no Gradle download is possible here.
pub const GRADLEW: &str = r#"#!/usr/bin/env bash
# Test stand-in for the Gradle wrapper: `clean` and `bootJar` of the one-class
# app in src/main/java, the version from build.gradle baked into
# application.properties the way processResources would.
set -euo pipefail
cd "$(dirname "$0")"
name=$(sed -n "s/^rootProject.name *= *'\(.*\)'.*/\1/p" settings.gradle)
version=$(sed -n "s/^version *= *'\(.*\)'.*/\1/p" build.gradle)
for task in "$@"; do
  case "$task" in
    clean) rm -rf build ;;
    bootJar)
      mkdir -p build/classes build/libs
      javac -J-XX:-UsePerfData -nowarn -XDignore.symbol.file -d build/classes src/main/java/*.java 2>&1 | grep -v -e warning -e '^ ' -e '^[0-9]* warning' >&2 || true
      [ -f build/classes/TestApp.class ] || { echo "compilation failed" >&2; exit 1; }
      if [ -d src/main/resources ]; then cp -R src/main/resources/. build/classes/; fi
      echo "app.version=$version" >> build/classes/application.properties
      jar -J-XX:-UsePerfData --create --file "build/libs/$name-$version.jar" --main-class TestApp -C build/classes .
      echo "built build/libs/$name-$version.jar"
      ;;
    *) echo "gradlew stand-in: unknown task $task" >&2; exit 1 ;;
  esac
done
"#;

/// The app's repository: TestApp as `demo`, built by the gradlew stand-in.
pub struct AppRepo {
    pub dir: TempDir,
}

impl AppRepo {
    pub fn new() -> AppRepo {
        let dir = tempdir("bg-jenkins-repo-");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        write(dir.path(), "settings.gradle", "rootProject.name = 'demo'\n");
        write(dir.path(), "src/main/java/TestApp.java", SOURCE);
        write(dir.path(), "gradlew", GRADLEW);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("gradlew"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        AppRepo { dir }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Commits `version` to main; `crash` makes the app fail 2.5 s after it
    /// starts, past bg-ship's 1 s settle, as a Spring context can.
    pub fn commit(&self, version: &str, crash: bool) {
        let root = self.dir.path();
        // The plugin line is there for gradle-version to ignore.
        write(
            root,
            "build.gradle",
            &format!(
                "plugins {{\n    id 'org.springframework.boot' version '3.3.0'\n}}\n\nversion = '{version}'\n"
            ),
        );
        let resources = root.join("src/main/resources/application.properties");
        if crash {
            write(
                root,
                "src/main/resources/application.properties",
                "app.crashAfter=2500\n",
            );
        } else {
            let _ = std::fs::remove_file(resources);
        }
        git(root, &["add", "-A"]);
        git(
            root,
            &[
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.invalid",
                "commit",
                "-q",
                "-m",
                version,
            ],
        );
    }
}

/// One run of a Jenkinsfile through the shim.
pub struct Shim<'a> {
    pub jenkinsfile: &'a Path,
    pub job: &'a str,
    pub build: usize,
    pub credentials: &'a Path,
    pub workspace: &'a Path,
    /// The binaries' locks (`BG_LOCK_DIR`): the job's world, not the host's /tmp.
    pub lock_dir: Option<&'a Path>,
    pub params: Vec<(&'a str, String)>,
}

impl Shim<'_> {
    /// Runs it: (succeeded, console log, how long it took). The console goes
    /// to files, not pipes: a process the shim failed to end would hold a
    /// pipe open, and the test would wait for it.
    pub fn run(self) -> (bool, String, Duration) {
        let mut cmd = Command::new("groovy");
        cmd.arg(SHIM)
            .arg("--credentials")
            .arg(self.credentials)
            .arg("--workspace")
            .arg(self.workspace)
            .arg(self.jenkinsfile);
        for (name, value) in &self.params {
            cmd.arg(format!("{name}={value}"));
        }
        // Nothing from the developer's shell leaks in.
        for (key, _) in std::env::vars() {
            if key.starts_with("BG_")
                || key.starts_with("SHIM_")
                || key == "SSH_AUTH_SOCK"
                || key == "BUILD_TAG"
            {
                cmd.env_remove(key);
            }
        }
        if let Some(dir) = self.lock_dir {
            cmd.env("BG_LOCK_DIR", dir);
        }
        let console = tempdir("bg-shim-console-");
        let (stdout, stderr) = (console.path().join("stdout"), console.path().join("stderr"));
        cmd.env("JAVA_HOME", java_home())
            // groovy's own JVM, with the flag every JVM of the tests gets.
            .env("JAVA_OPTS", "-XX:-UsePerfData")
            .env("SHIM_JOB_NAME", self.job)
            .env("SHIM_BUILD_NUMBER", self.build.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let begun = Instant::now();
        let status = cmd.status().unwrap_or_else(cannot_run("groovy"));
        let took = begun.elapsed();
        // stdout is the console; stderr holds `sh -x` traces and the binaries' progress.
        let log = format!(
            "{}{}",
            std::fs::read_to_string(&stdout).unwrap(),
            std::fs::read_to_string(&stderr).unwrap()
        );
        eprintln!(
            "==== {} #{} ({took:?}) exit {:?}\n{log}",
            self.job,
            self.build,
            status.code()
        );
        (status.success(), log, took)
    }
}

pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .unwrap_or_else(cannot_run("git"));
    assert!(status.success(), "git {args:?} failed");
}

/// groovy needs JAVA_HOME: the JDK that holds the `javac` on PATH.
pub fn java_home() -> PathBuf {
    need("javac");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let javac = std::env::split_paths(&path)
        .map(|dir| dir.join("javac"))
        .find(|p| p.is_file())
        .unwrap();
    let real = std::fs::canonicalize(javac).unwrap();
    real.ancestors().nth(2).unwrap().to_path_buf()
}

/// Bounded load through nginx: one `Connection: close` GET at a time, paced,
/// at most 20,000; every answer must be 200 from one of the deployed versions.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    thread: JoinHandle<Vec<String>>,
}

impl Load {
    pub fn start(listen: u16, versions: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let versions: Vec<String> = versions.iter().map(|v| format!("{v}\n")).collect();
        let thread = {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) && ok.load(Ordering::Relaxed) < 20_000 {
                    match http_get(listen, "/version") {
                        Some((200, body)) if versions.contains(&body) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                failures
            })
        };
        Load { stop, ok, thread }
    }

    /// Stops the load and asserts that no request failed and that there
    /// were enough of them to mean something; `what` ran meanwhile.
    #[track_caller]
    pub fn finish(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.join().unwrap();
        let answered = self.ok.load(Ordering::Relaxed);
        eprintln!(
            "{what} under load: {answered} requests through nginx, {} failed",
            failures.len()
        );
        assert!(failures.is_empty(), "requests failed: {failures:?}");
        assert!(
            answered > 50,
            "the load was too light to mean anything: {answered}"
        );
    }
}
