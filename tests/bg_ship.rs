//! bg-ship against a real JVM, locally and over a real sshd (on loopback, so
//! the "remote" files and processes are visible to the test directly).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bg_deploy_tests::{Bin, Run, app_jar, free_port, http_get, wait_for_port};

use bg_deploy_tests::both_ways;

/// JVM options that start the stand-in quickly and leave nothing in /tmp.
const FAST: &str = bg_deploy_tests::JAVA_OPTS;

/// Kills a started app when the test ends, whatever happened.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid we started.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// The app a successful `--format env` run started: killed when the guard
/// drops, and answering on `port` by the time this returns.
fn serving(run: &Run, port: u16) -> Reap {
    let pid: u32 = env_value(run, "BG_PID").parse().unwrap();
    let reap = Reap(pid);
    assert!(
        wait_for_port(port, Duration::from_secs(30)),
        "{}",
        run.stderr
    );
    reap
}

fn ship(artifact: &Path, deploy: &Path, port: u16, dir: &Path, host_args: &[String]) -> Bin {
    Bin::new("bg-ship")
        .args(["--artifact", artifact.to_str().unwrap()])
        .args(["--deploy-path", deploy.to_str().unwrap()])
        .args(["--port", &port.to_string()])
        .args(["--lock-dir", dir.to_str().unwrap()])
        .args(host_args)
}

/// `BG_KEY=value` from `--format env` output, unquoted.
fn env_value(run: &Run, key: &str) -> String {
    let prefix = format!("{key}=");
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {}", run.stdout));
    line.strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .map(|l| l.replace(r"'\''", "'"))
        .unwrap_or_else(|| line.to_string())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

/// Field 6 of /proc/PID/stat: the session id.
fn session_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(") ").next().unwrap();
    after.split_whitespace().nth(3).unwrap().parse().unwrap()
}

both_ways!(
    a_shipped_app_keeps_running_after_the_session_ends,
    |host_args: &[String], dir: &Path| {
        let deploy = dir.join("deploy");
        let port = free_port();
        let run = ship(app_jar(), &deploy, port, dir, host_args)
            .args(["--java-opts", &format!("{FAST} -Dapp.version=1.2.3")])
            .args(["--profile", "dev", "--format", "env"])
            .env("BG_VERSION", "1.2.3")
            .env("BG_ACTOR", "ship-tester")
            .run();
        run.code(0);
        // bg-ship (and its SSH session) ended; the app did not.
        let app = serving(&run, port);
        let pid = app.0;
        assert!(alive(pid));
        assert_eq!(session_of(pid), pid, "the app is not in its own session");
        assert_eq!(http_get(port, "/version").unwrap(), (200, "1.2.3\n".into()));
        assert!(http_get(port, "/").unwrap().1.contains("profile=dev"));

        let pid_file = deploy.join(format!("app-{port}.pid"));
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            pid.to_string()
        );
        assert_eq!(env_value(&run, "BG_PID_FILE"), pid_file.to_str().unwrap());
        // What was started, beside the pid file, for bg-status.
        let record_file = deploy.join(format!("app-{port}.json"));
        let record = std::fs::read_to_string(&record_file).unwrap();
        let value: serde_json::Value = serde_json::from_str(&record).unwrap();
        assert_eq!(value["port"], port);
        assert_eq!(value["pid"], pid);
        assert_eq!(value["artifact"], "app.jar");
        assert_eq!(value["path"], deploy.join("app.jar").to_str().unwrap());
        assert_eq!(value["sha256"], env_value(&run, "BG_SHA256"));
        assert_eq!(value["version"], "1.2.3");
        assert_eq!(value["actor"], "ship-tester");
        assert!(
            value["started"].as_str().unwrap().ends_with('Z'),
            "{record}"
        );
        let left: Vec<String> = std::fs::read_dir(&deploy)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        let log = deploy.join(format!("app-{port}.log"));
        assert_eq!(env_value(&run, "BG_LOG_FILE"), log.to_str().unwrap());
        let artifact = deploy.join("app.jar");
        assert_eq!(
            env_value(&run, "BG_REMOTE_ARTIFACT"),
            artifact.to_str().unwrap()
        );
        assert_eq!(
            std::fs::read(&artifact).unwrap(),
            std::fs::read(app_jar()).unwrap()
        );
        assert!(!deploy.join(format!(".app.jar.{port}.partial")).exists());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap()
            .contains("Started TestApp")
        {
            assert!(Instant::now() < deadline, "the log never said Started");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(env_value(&run, "BG_SENT"), "true");

        // The same jar again: not sent.
        let again = ship(app_jar(), &deploy, port, dir, host_args)
            .args(["--no-start", "--format", "env"])
            .run();
        again.code(0);
        assert_eq!(env_value(&again, "BG_SENT"), "false");
        assert!(
            again.stderr.contains("not sending it again"),
            "{}",
            again.stderr
        );
        assert!(!again.stderr.contains("uploading"), "{}", again.stderr);
        // Nothing started: the record still says what runs.
        assert_eq!(std::fs::read_to_string(&record_file).unwrap(), record);
    }
);

both_ways!(
    a_different_file_under_the_name_is_replaced,
    |host_args: &[String], dir: &Path| {
        let deploy = dir.join("deploy");
        std::fs::create_dir_all(&deploy).unwrap();
        let jar = std::fs::read(app_jar()).unwrap();
        let sha256 = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&jar));
        let mut same_size = jar.clone();
        same_size[100] ^= 0xff;
        for stale in [same_size, b"short".to_vec()] {
            std::fs::write(deploy.join("app.jar"), &stale).unwrap();
            let run = ship(app_jar(), &deploy, free_port(), dir, host_args)
                .args(["--no-start", "--format", "env"])
                .run();
            run.code(0);
            assert_eq!(env_value(&run, "BG_SENT"), "true");
            assert_eq!(env_value(&run, "BG_SHA256"), sha256);
            assert!(std::fs::read(deploy.join("app.jar")).unwrap() == jar);
        }
    }
);

both_ways!(
    a_crash_at_start_fails_with_the_log,
    |host_args: &[String], dir: &Path| {
        let deploy = dir.join("deploy");
        let started = Instant::now();
        let run = ship(app_jar(), &deploy, free_port(), dir, host_args)
            .args(["--java-opts", &format!("{FAST} -Dapp.crash=true")])
            .run();
        run.code(1);
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            run.stderr.contains("APPLICATION FAILED TO START"),
            "{}",
            run.stderr
        );
        assert!(run.error_line().contains("exited within"), "{}", run.stderr);
    }
);

/// Values that would run `touch` if any of them reached a shell unquoted.
fn hostile(dir: &Path) -> (PathBuf, String) {
    let pwned = dir.join("pwned");
    let cmd = format!("$(touch {p}) `touch {p}`", p = pwned.display());
    (pwned, cmd)
}

both_ways!(
    hostile_values_are_never_executed,
    |host_args: &[String], dir: &Path| {
        let (pwned, cmd) = hostile(dir);
        // File names cannot hold a `/`: theirs touch a relative name, looked
        // for wherever a shell could have run it.
        let name_cmd = "$(touch pwned-by-name) `touch pwned-by-name`";
        let src = dir.join("src");
        std::fs::create_dir(&src).unwrap();
        let artifact = src.join(format!("app {name_cmd} 'q'.jar"));
        std::fs::copy(app_jar(), &artifact).unwrap();
        let deploy = dir.join(format!("deploy {cmd} \"dq\" 'sq'\nline"));
        let version = format!("{cmd} \"v\" 'w'");
        let env_val = format!("{cmd} 'a'\n\"b\";x");
        let log_name = format!("log {name_cmd}\n'x'.log");
        let port = free_port();
        let run = ship(&artifact, &deploy, port, dir, host_args)
            .args([
                "--java-opts",
                &format!(
                    "{FAST} {}",
                    bg_core::quote::quote(&format!("-Dapp.version={version}")).unwrap()
                ),
            ])
            .args(["--env", &format!("HOSTILE={env_val}")])
            .args(["--log-file", &log_name])
            .args(["--app-version", &version])
            .args(["--format", "env"])
            .current_dir(dir)
            .run();
        run.code(0);
        let app = serving(&run, port);
        let pid = app.0;
        let (_, seen) = http_get(port, "/version").unwrap();
        assert_eq!(seen.trim_end(), version);
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(deploy.join(format!("app-{port}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["version"], version.as_str());
        assert_eq!(
            record["artifact"],
            artifact.file_name().unwrap().to_str().unwrap()
        );
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let want = format!("HOSTILE={env_val}");
        assert!(
            environ.split(|&b| b == 0).any(|kv| kv == want.as_bytes()),
            "HOSTILE did not arrive intact"
        );
        assert!(deploy.join(&log_name).is_file());
        assert!(deploy.join(artifact.file_name().unwrap()).is_file());

        // What a boot-time unit runs: the same start again, the same values
        // intact, the pid in the pid file.
        drop(app);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < until, "the app did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let again = std::process::Command::new("sh")
            .arg(deploy.join(format!("app-{port}.start")))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .output()
            .unwrap();
        assert!(again.status.success(), "{again:?}");
        let pid: u32 = String::from_utf8_lossy(&again.stdout)
            .trim()
            .parse()
            .unwrap();
        let _again = Reap(pid);
        assert!(wait_for_port(port, Duration::from_secs(30)));
        let (_, seen) = http_get(port, "/version").unwrap();
        assert_eq!(seen.trim_end(), version);
        let pid_file = deploy.join(format!("app-{port}.pid"));
        assert_eq!(
            std::fs::read_to_string(pid_file).unwrap().trim(),
            pid.to_string()
        );
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environ.split(|&b| b == 0).any(|kv| kv == want.as_bytes()),
            "HOSTILE did not arrive intact the second time"
        );
        assert!(!pwned.exists(), "a value was executed");
        let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
        for place in [dir, deploy.as_path(), Path::new(&home)] {
            assert!(
                !place.join("pwned-by-name").exists(),
                "a file name was executed (in {})",
                place.display()
            );
        }
    }
);

both_ways!(
    a_start_cmd_template_gets_quoted_values,
    |host_args: &[String], dir: &Path| {
        let (pwned, cmd) = hostile(dir);
        let deploy = dir.join(format!("deploy {cmd}"));
        let port = free_port();
        let run = ship(app_jar(), &deploy, port, dir, host_args)
            .args(["--java-opts", &format!("{FAST} -Dapp.version=tpl")])
            .args(["--profile", &cmd])
            .args([
                "--start-cmd",
                "cd {deploy_path} && exec java {java_opts} -Dserver.port={port} -Dspring.profiles.active={profile} -jar {artifact}",
            ])
            .args(["--format", "env"])
            .run();
        run.code(0);
        let _app = serving(&run, port);
        let (_, root) = http_get(port, "/").unwrap();
        assert!(root.contains("version=tpl"), "{root}");
        assert!(root.contains(&format!("profile={cmd}")), "{root}");
        assert!(!pwned.exists(), "a value was executed");
    }
);

/// A bg-ship of a 1 GiB (sparse) jar, `--no-start -q`, seen sending: its
/// partial file has bytes. Its stderr is piped.
struct BigUpload {
    child: std::process::Child,
    big: PathBuf,
    deploy: PathBuf,
    partial: PathBuf,
}

fn big_upload_under_way(host_args: &[String], dir: &Path) -> BigUpload {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let big = src.join("big.jar");
    // Sparse: costs no disk here, and reads as fast as memory.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let deploy = dir.join("deploy");
    let port = free_port();
    let mut child = ship(&big, &deploy, port, dir, host_args)
        .args(["--no-start", "-q"])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial = deploy.join(format!(".big.jar.{port}.partial"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "bg-ship ended before the upload was seen"
        );
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    BigUpload {
        child,
        big,
        deploy,
        partial,
    }
}

both_ways!(
    an_interrupted_upload_leaves_no_file_under_the_real_name,
    |host_args: &[String], dir: &Path| {
        let mut upload = big_upload_under_way(host_args, dir);
        upload.child.kill().unwrap(); // SIGKILL: nothing gets to clean up
        upload.child.wait().unwrap();
        assert!(
            !upload.deploy.join("big.jar").exists(),
            "a half upload is under the real name"
        );
    }
);

both_ways!(
    a_jar_written_during_the_upload_is_not_shipped,
    |host_args: &[String], dir: &Path| {
        let BigUpload {
            child,
            big,
            deploy,
            partial,
        } = big_upload_under_way(host_args, dir);
        // The build is still writing: the jar grows while it is sent.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&big)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("changed while it was being shipped"),
            "{stderr}"
        );
        assert!(
            !deploy.join("big.jar").exists(),
            "the changed jar was renamed into place"
        );
        assert!(!partial.exists(), "the partial file was left behind");
    }
);

both_ways!(
    keep_prunes_old_artifacts_but_not_a_running_one,
    |host_args: &[String], dir: &Path| {
        let src = dir.join("src");
        std::fs::create_dir(&src).unwrap();
        // Names of this run's own: a process anywhere on the host whose
        // command line names a jar keeps it, and the same scenario runs at
        // once over the other transports on this machine, with its
        // `bg-ship --artifact .../app-2.jar` in the process table.
        let tag = dir.file_name().unwrap().to_str().unwrap().replace('.', "");
        let jar = |n: u32| format!("app-{tag}-{n}.jar");
        for n in 1..=3 {
            std::fs::copy(app_jar(), src.join(jar(n))).unwrap();
        }
        let deploy = dir.join("deploy");
        let port = free_port();
        let first = ship(&src.join(jar(1)), &deploy, port, dir, host_args)
            .args(["--java-opts", FAST, "--format", "env"])
            .run();
        first.code(0);
        let _reap = Reap(env_value(&first, "BG_PID").parse().unwrap());
        ship(&src.join(jar(2)), &deploy, free_port(), dir, host_args)
            .arg("--no-start")
            .run()
            .code(0);
        let third = ship(&src.join(jar(3)), &deploy, free_port(), dir, host_args)
            .args(["--no-start", "--keep", "1", "--format", "env"])
            .run();
        third.code(0);
        assert_eq!(env_value(&third, "BG_PRUNED"), jar(2));
        assert!(deploy.join(jar(1)).is_file(), "the running jar was removed");
        assert!(!deploy.join(jar(2)).exists());
        assert!(deploy.join(jar(3)).is_file(), "the shipped jar was removed");
    }
);

#[test]
fn bad_input_is_exit_2_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy");
    let jar = app_jar();
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (dir.path().join("missing.jar"), vec![]),
        (dir.path().to_path_buf(), vec![]),
        (jar.to_path_buf(), vec!["--env", "NOEQUALS"]),
        (jar.to_path_buf(), vec!["--env", "1BAD=x"]),
        (jar.to_path_buf(), vec!["--java-opts", "-Dx='unclosed"]),
        (jar.to_path_buf(), vec!["--start-cmd", "java -jar {jar}"]),
        (jar.to_path_buf(), vec!["--keep", "0"]),
    ];
    for (artifact, extra) in cases {
        let run = ship(&artifact, &deploy, 8001, dir.path(), &[])
            .args(extra)
            .run();
        run.code(2);
        run.error_line();
    }
    let run = ship(jar, &deploy, 0, dir.path(), &[]).run();
    run.code(2);
    assert!(!deploy.exists());
}

/// The host's checksum tool is made to lie, as a damaged arrival would
/// look: the upload is removed, nothing is under the real name, nothing
/// starts. (Locally only: the comparison is ours, the same for both ways,
/// and PATH is ours to change only here.)
#[test]
fn a_damaged_arrival_is_removed_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    let openssl = fake.join("openssl");
    std::fs::write(
        &openssl,
        "#!/bin/sh\ncat > /dev/null\necho 0000000000000000000000000000000000000000000000000000000000000000 '*stdin'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &openssl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let deploy = dir.path().join("deploy");
    let port = free_port();
    let run = ship(app_jar(), &deploy, port, dir.path(), &[])
        .args(["--java-opts", FAST])
        .env("PATH", path)
        .run();
    run.code(1);
    let line = run.error_line();
    assert!(line.contains("arrived damaged"), "{line}");
    assert!(line.contains("0000000000000000"), "{line}");
    let left: Vec<_> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // No jar, no partial file, and no pid or log file: nothing started.
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy");
    let run = ship(app_jar(), &deploy, free_port(), dir.path(), &[])
        .arg("--dry-run")
        .run();
    run.code(0);
    assert!(run.stderr.contains("would upload"), "{}", run.stderr);
    assert!(run.stderr.contains("would start"), "{}", run.stderr);
    assert!(!deploy.exists());
}

#[test]
fn progress_is_a_line_per_tenth_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jar");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let run = ship(
        &big,
        &dir.path().join("deploy"),
        free_port(),
        dir.path(),
        &[],
    )
    .arg("--no-start")
    .run();
    run.code(0);
    let lines = run.stderr.lines().filter(|l| l.contains("% (")).count();
    assert!((1..=10).contains(&lines), "{}", run.stderr);
    assert!(run.stderr.contains("sent 100%"), "{}", run.stderr);
    let quiet = ship(
        &big,
        &dir.path().join("deploy2"),
        free_port(),
        dir.path(),
        &[],
    )
    .args(["--no-start", "-q"])
    .run();
    quiet.code(0);
    assert_eq!(quiet.stderr, "");
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-ship").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}

both_ways!(
    a_taken_port_is_refused_before_anything_changes,
    |host_args: &[String], dir: &Path| {
        let port = free_port();
        let mut old = bg_deploy_tests::App::start_ready(port, &[], &dir.join("old.log"));
        let deploy = dir.join("deploy");
        let run = ship(app_jar(), &deploy, port, dir, host_args)
            .args(["--java-opts", FAST])
            .run();
        run.code(3);
        let line = run.error_line();
        assert!(
            line.contains(&format!("pid {} (java)", old.pid())),
            "{line}"
        );
        assert!(line.contains("bg-stop-port"), "{line}");
        assert!(!deploy.exists(), "something changed");
        assert_eq!(old.wait_exit(Duration::from_millis(100)), None);
    }
);

both_ways!(
    the_app_gets_none_of_our_settings_or_secrets,
    |host_args: &[String], dir: &Path| {
        let deploy = dir.join("deploy");
        let port = free_port();
        let run = ship(app_jar(), &deploy, port, dir, host_args)
            .env("BG_SSH_PASSPHRASE", "hunter2")
            .env("BG_ACTOR", "someone")
            .args(["--env", "BG_MINE=kept", "--env", "PLAIN=1"])
            .args(["--start-cmd", "env > {deploy_path}/app.env; exec sleep 30"])
            .args(["--format", "env"])
            .run();
        run.code(0);
        let _app = Reap(env_value(&run, "BG_PID").parse().unwrap());
        let seen = std::fs::read_to_string(deploy.join("app.env")).unwrap();
        assert!(!seen.contains("hunter2"), "the passphrase reached the app");
        assert!(!seen.contains("BG_ACTOR="), "{seen}");
        // What the user hands the app with --env, it gets.
        assert!(seen.contains("BG_MINE=kept\n"), "{seen}");
        assert!(seen.contains("PLAIN=1\n"), "{seen}");
    }
);
