//! bg-stop-port against a real JVM, locally and over a real sshd.

use std::path::Path;
use std::time::{Duration, Instant};

use bg_core::host::{Host, LocalHost};
use bg_deploy_tests::{App, Bin, app_jar, free_port, http_get, wait_for_port};

use bg_deploy_tests::both_ways;

fn stop(port: u16, dir: &Path, host_args: &[String]) -> Bin {
    Bin::new("bg-stop-port")
        .args(["--port", &port.to_string()])
        .args(["--lock-dir", dir.to_str().unwrap()])
        .args(host_args)
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_err()
}

both_ways!(
    a_process_that_ignores_term_is_killed_after_the_grace,
    |host_args: &[String], dir: &Path| {
        let port = free_port();
        let mut app = App::start_ready(port, &[("app.ignoreTerm", "true")], &dir.join("app.log"));
        let started = Instant::now();
        let run = stop(port, dir, host_args)
            .args(["--grace", "1s", "--timeout", "30s", "--format", "env"])
            .run();
        run.code(0);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "KILL came before the grace ended"
        );
        assert!(
            run.stdout
                .contains(&format!("BG_STOPPED_PIDS={}\n", app.pid())),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("BG_STOPPED_NAMES=java\n"));
        assert!(run.stdout.contains("BG_KILLED=true\n"));
        assert!(run.stderr.contains("SIGKILL"), "{}", run.stderr);
        assert!(port_is_free(port), "exit 0 but the port is still busy");
        assert_eq!(
            app.wait_exit(Duration::from_secs(10)),
            Some(-1),
            "not killed by a signal"
        );
        assert!(
            std::fs::read_to_string(dir.join("app.log"))
                .unwrap()
                .contains("Ignoring SIGTERM"),
            "TERM was not sent first"
        );
    }
);

#[test]
fn a_graceful_app_stops_on_term_without_kill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut app = App::start_ready(
        port,
        &[("app.stopDelay", "300")],
        &dir.path().join("app.log"),
    );
    let run = stop(port, dir.path(), &[]).args(["--format", "json"]).run();
    run.code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["stopped_pids"], serde_json::json!([app.pid()]));
    assert_eq!(json["killed"], serde_json::json!(false));
    assert!(port_is_free(port));
    assert!(app.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        std::fs::read_to_string(dir.path().join("app.log"))
            .unwrap()
            .contains("Stopping TestApp"),
        "the app's shutdown hook did not run"
    );
}

both_ways!(
    the_protected_port_is_never_signalled,
    |host_args: &[String], dir: &Path| {
        let port = free_port();
        let mut app = App::start_ready(port, &[], &dir.join("app.log"));
        let run = stop(port, dir, host_args)
            .args(["--protect-port", &port.to_string()])
            .run();
        run.code(3);
        assert!(run.error_line().contains("protected"), "{}", run.stderr);
        // Several protected ports, from the environment as Jenkins would set them.
        let run = stop(port, dir, host_args)
            .env("BG_PROTECT_PORT", format!("1,{port}"))
            .run();
        run.code(3);
        assert_eq!(
            app.wait_exit(Duration::from_millis(300)),
            None,
            "the app died"
        );
        assert_eq!(http_get(port, "/actuator/health").map(|a| a.0), Some(200));
        assert!(
            !std::fs::read_to_string(dir.join("app.log"))
                .unwrap()
                .contains("Stopping"),
            "the protected app was signalled"
        );
    }
);

both_ways!(
    nothing_listening_is_success,
    |host_args: &[String], dir: &Path| {
        let port = free_port();
        let run = stop(port, dir, host_args).args(["--format", "env"]).run();
        run.code(0);
        assert!(run.stdout.contains("BG_STOPPED_PIDS=\n"), "{}", run.stdout);
    }
);

/// /proc/net/tcp6 as well as tcp: an app bound to ::1 only is found and stopped.
#[test]
fn an_ipv6_only_listener_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut app = App::start(
        port,
        &[("server.address", "::1")],
        &dir.path().join("app.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    while std::net::TcpStream::connect_timeout(&v6, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the app never listened on [::1]:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = stop(port, dir.path(), &[]).args(["--format", "env"]).run();
    run.code(0);
    assert!(
        run.stdout
            .contains(&format!("BG_STOPPED_PIDS={}\n", app.pid())),
        "{}",
        run.stdout
    );
    assert!(app.wait_exit(Duration::from_secs(10)).is_some());
    assert!(std::net::TcpStream::connect_timeout(&v6, Duration::from_millis(500)).is_err());
}

/// Another user's process: its sockets are listed in /proc/net/tcp, its fds
/// are not readable. Run as `nobody` against root's app (needs root and
/// runuser; elsewhere the test says so and passes without running).
#[test]
fn another_users_process_is_a_clear_error_that_suggests_sudo() {
    let runuser = Path::new("/usr/sbin/runuser");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !runuser.exists() {
        eprintln!("skipped: needs root and runuser to act as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // nobody runs a copy: the built binary may be where only root can
    // reach it (a clone under /root, mode 0700).
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stop_port = bin.path().join("bg-stop-port");
    std::fs::copy(bg_deploy_tests::bin_path("bg-stop-port"), &stop_port).unwrap();
    let port = free_port();
    let mut app = App::start_ready(port, &[], &dir.path().join("app.log"));
    let output = std::process::Command::new(runuser)
        .args(["-u", "nobody", "--"])
        .arg(&stop_port)
        .args(["--port", &port.to_string(), "--lock-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.contains("cannot see"), "{stderr}");
    assert!(last.contains("--sudo"), "{stderr}");
    assert_eq!(
        app.wait_exit(Duration::from_millis(300)),
        None,
        "the app was stopped"
    );
}

/// `--sudo` where no `sudo` is installed: the hint names its package.
#[test]
fn a_missing_sudo_names_the_package_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let run = stop(free_port(), dir.path(), &[])
        .arg("--sudo")
        .env("PATH", dir.path().join("empty").to_str().unwrap())
        .run();
    run.code(1);
    let line = run.error_line();
    assert!(line.contains("cannot run sudo"), "{}", run.stderr);
    assert!(line.contains("`apt-get install sudo`"), "{}", run.stderr);
}

#[test]
fn a_dry_run_signals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut app = App::start_ready(port, &[], &dir.path().join("app.log"));
    let run = stop(port, dir.path(), &[]).arg("--dry-run").run();
    run.code(0);
    assert!(
        run.stdout
            .contains(&format!("would stop pid {} (java)", app.pid())),
        "{}",
        run.stdout
    );
    assert_eq!(app.wait_exit(Duration::from_millis(300)), None);
    assert!(wait_for_port(port, Duration::from_secs(1)));
}

#[test]
fn bad_input_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--port", "0"][..],
        &["--port", "65536"][..],
        &["--port", "8001", "--signal", "STOP"][..],
        &["--port", "8001", "--grace", "soon"][..],
    ] {
        let run = Bin::new("bg-stop-port")
            .args(args)
            .args(["--lock-dir", dir.path().to_str().unwrap()])
            .run();
        run.code(2);
        run.error_line();
    }
}

/// A first deploy has no active port: `--protect-port "$BG_ACTIVE_PORT"` is
/// then empty and protects nothing, while a bad port is still refused.
#[test]
fn an_empty_protected_port_protects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let closed = bg_deploy_tests::ClosedPort::new();
    let port = closed.port.to_string();
    let lock_dir = dir.path().to_str().unwrap();
    let run = Bin::new("bg-stop-port")
        .args([
            "--port",
            &port,
            "--protect-port",
            "",
            "--lock-dir",
            lock_dir,
        ])
        .run();
    run.code(0);
    let run = Bin::new("bg-stop-port")
        .args(["--port", &port, "--lock-dir", lock_dir])
        .env("BG_PROTECT_PORT", "")
        .run();
    run.code(0);
    let run = Bin::new("bg-stop-port")
        .args([
            "--port",
            &port,
            "--protect-port",
            "x",
            "--lock-dir",
            lock_dir,
        ])
        .run();
    run.code(2);
    let run = Bin::new("bg-stop-port")
        .args([
            "--port",
            &port,
            "--protect-port",
            &port,
            "--lock-dir",
            lock_dir,
        ])
        .run();
    run.code(3);
}

/// CI templates write `BG_SUDO=${SUDO:-}`: an empty variable is as if unset,
/// and a missing flag is named in the one error line.
#[test]
fn empty_variables_are_unset_and_missing_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let closed = bg_deploy_tests::ClosedPort::new();
    let run = Bin::new("bg-stop-port")
        .args([
            "--port",
            &closed.port.to_string(),
            "--lock-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("BG_SUDO", "")
        .env("BG_DRY_RUN", "")
        .env("BG_FORMAT", "")
        .env("BG_SSH_PORT", "")
        .env("BG_HOST", "")
        .run();
    run.code(0);
    let run = Bin::new("bg-stop-port").env("BG_PORT", "").run();
    run.code(2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.error_line().contains("not provided: --port <PORT>"),
        "{}",
        run.stderr
    );
}

/// bg-ship and bg-stop-port take the same lock per port: one waits for the other.
#[test]
fn a_held_port_lock_is_exit_5_for_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let lock_path = dir.path().join(format!("bg-port-{port}.lock"));
    let _held = LocalHost::new(false)
        .lock(
            lock_path.to_str().unwrap(),
            Duration::from_secs(5),
            "the other deploy",
        )
        .unwrap();
    let run = stop(port, dir.path(), &[])
        .args(["--lock-timeout", "200ms"])
        .run();
    run.code(5);
    assert!(
        run.error_line().contains("the other deploy"),
        "{}",
        run.stderr
    );
    let run = Bin::new("bg-ship")
        .args(["--artifact", app_jar().to_str().unwrap()])
        .args(["--deploy-path", dir.path().join("d").to_str().unwrap()])
        .args(["--port", &port.to_string(), "--no-start"])
        .args([
            "--lock-dir",
            dir.path().to_str().unwrap(),
            "--lock-timeout",
            "200ms",
        ])
        .run();
    run.code(5);
    assert!(
        run.error_line().contains("the other deploy"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.path().join("d").exists(),
        "bg-ship changed something while busy"
    );
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-stop-port").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn a_grace_longer_than_the_timeout_is_exit_2_and_a_dry_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let lock_dir = dir.path().to_str().unwrap();
    let run = Bin::new("bg-stop-port")
        .args(["--port", "9", "--grace", "40s", "--timeout", "30s"])
        .args(["--lock-dir", lock_dir])
        .run();
    run.code(2);
    assert!(run.error_line().contains("--grace 40s"), "{}", run.stderr);
    // Without --grace, a short --timeout is fine: the grace shrinks to it.
    Bin::new("bg-stop-port")
        .args(["--port", "9", "--timeout", "5s", "--lock-dir", lock_dir])
        .run()
        .code(0);
    let dry = Bin::new("bg-stop-port")
        .args(["--port", "9", "--dry-run", "--format", "env"])
        .args(["--lock-dir", lock_dir])
        .run();
    dry.code(0);
    assert!(dry.stdout.contains("BG_DRY_RUN=true\n"), "{}", dry.stdout);
}

both_ways!(
    a_stopped_apps_pid_file_is_removed_and_a_live_ones_kept,
    |host_args: &[String], dir: &Path| {
        // As bg-ship leaves them: the pid file and its record, per port. A
        // directory with a space and a quote reaches the host quoted.
        let deploy = dir.join("it's deployed");
        std::fs::create_dir_all(&deploy).unwrap();
        let deploy_arg = deploy.to_str().unwrap();
        let port = free_port();
        let mut app = App::start_ready(port, &[], &dir.join("app.log"));
        let pid_file = deploy.join(format!("app-{port}.pid"));
        let record = deploy.join(format!("app-{port}.json"));
        std::fs::write(&pid_file, format!("{}\n", app.pid())).unwrap();
        std::fs::write(&record, "{}\n").unwrap();
        // Another port's pid file, its process alive: not ours to touch.
        let other = free_port();
        let other_pid_file = deploy.join(format!("app-{other}.pid"));
        std::fs::write(&other_pid_file, format!("{}\n", std::process::id())).unwrap();

        let run = stop(port, dir, host_args)
            .args(["--deploy-path", deploy_arg])
            .run();
        run.code(0);
        assert!(app.wait_exit(Duration::from_secs(10)).is_some());
        assert!(
            !pid_file.exists(),
            "the stopped app's pid file is left: {}",
            run.stderr
        );
        assert!(!record.exists(), "its record is left");
        assert!(run.stderr.contains("its process is gone"), "{}", run.stderr);

        // A pid file left by an app that died by itself: nothing listens,
        // and it goes too. One whose process lives stays.
        std::fs::write(&pid_file, format!("{}\n", app.pid())).unwrap();
        std::fs::write(&other_pid_file, format!("{}\n", std::process::id())).unwrap();
        stop(port, dir, host_args)
            .args(["--deploy-path", deploy_arg])
            .run()
            .code(0);
        assert!(!pid_file.exists(), "a dead app's pid file is left");
        stop(other, dir, host_args)
            .args(["--deploy-path", deploy_arg])
            .run()
            .code(0);
        assert!(
            other_pid_file.exists(),
            "a live process's pid file was removed"
        );

        // A dry run removes nothing.
        std::fs::write(&pid_file, format!("{}\n", app.pid())).unwrap();
        stop(port, dir, host_args)
            .args(["--deploy-path", deploy_arg, "--dry-run"])
            .run()
            .code(0);
        assert!(pid_file.exists(), "a dry run removed the pid file");
    }
);

/// /proc writes ports in hex, and awk compares strings that look like
/// numbers as numbers: 0E10 (3600) once matched 0E11 (3601), both "zero".
/// Stopping 3600 must leave an app on 3601 alone.
#[test]
fn a_port_whose_hex_reads_as_a_number_is_not_another() {
    let dir = tempfile::tempdir().unwrap();
    let (stopped, spared) = (3600, 3601);
    for port in [stopped, spared] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            panic!("port {port} is taken on this machine: this test needs 3600 and 3601 free");
        }
    }
    let mut gone = App::start_ready(stopped, &[], &dir.path().join("a.log"));
    let mut kept = App::start_ready(spared, &[], &dir.path().join("b.log"));
    let run = stop(stopped, dir.path(), &[])
        .args(["--format", "env"])
        .run();
    run.code(0);
    assert!(
        run.stdout
            .contains(&format!("BG_STOPPED_PIDS={}\n", gone.pid())),
        "{}",
        run.stdout
    );
    assert!(gone.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(
        kept.wait_exit(Duration::from_millis(500)),
        None,
        "3601 was stopped too"
    );
    assert_eq!(http_get(spared, "/actuator/health").map(|a| a.0), Some(200));
}
