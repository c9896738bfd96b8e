//! bg-healthcheck against the stand-in JVM app; --watch-pid and --log-file
//! both locally and over a real sshd; https against a real nginx serving a
//! certificate of the test's own CA.

mod tls;

use std::path::Path;
use std::time::{Duration, Instant};

use bg_deploy_tests::{App, Bin, Nginx, Sshd, free_port};

fn check(port: u16, path: &str) -> Bin {
    Bin::new("bg-healthcheck").args(["--url", &format!("http://127.0.0.1:{port}{path}")])
}

#[test]
fn a_healthy_app_passes_with_successes_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start_ready(port, &[], &dir.path().join("app.log"));
    let run = check(port, "/actuator/health")
        .args(["--expect-body", r#""status"\s*:\s*"UP""#])
        .args(["--successes", "2", "--interval", "100ms", "--format", "env"])
        .run();
    run.code(0);
    assert!(run.stdout.contains("BG_ATTEMPTS=2\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("BG_HEALTHY_AFTER_MS="),
        "{}",
        run.stdout
    );
}

#[test]
fn a_503_app_fails_at_the_deadline_with_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start_ready(
        port,
        &[("app.unhealthy", "true")],
        &dir.path().join("app.log"),
    );
    // The first run in a test process builds the binaries: not on the clock.
    bg_deploy_tests::bin_path("bg-healthcheck");
    let started = Instant::now();
    let run = check(port, "/actuator/health")
        .args(["--timeout", "2s", "--interval", "200ms"])
        .run();
    run.code(1);
    assert!(started.elapsed() >= Duration::from_secs(2), "gave up early");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not stop at the deadline"
    );
    let line = run.error_line();
    assert!(line.contains("status 503"), "{line}");
    assert!(line.contains(r#"{"status":"DOWN"}"#), "{line}");
}

#[test]
fn a_wrong_body_fails() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start_ready(
        port,
        &[("app.version", "1.0.0")],
        &dir.path().join("app.log"),
    );
    let run = check(port, "/version")
        .args([
            "--expect-body",
            r"^2\.0\.0",
            "--timeout",
            "1s",
            "--interval",
            "200ms",
        ])
        .run();
    run.code(1);
    assert!(
        run.error_line().contains("status 200, body 1.0.0"),
        "{}",
        run.stderr
    );
    // The right body passes.
    check(port, "/version")
        .args(["--expect-body", r"^1\.0\.0", "--timeout", "5s"])
        .run()
        .code(0);
}

#[test]
fn a_slow_starter_passes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start(
        port,
        &[("app.startDelay", "1500")],
        &dir.path().join("app.log"),
    );
    let run = check(port, "/actuator/health")
        .args([
            "--timeout",
            "60s",
            "--interval",
            "200ms",
            "--format",
            "json",
        ])
        .run();
    run.code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(json["attempts"].as_u64().unwrap() > 1, "{json}");
    assert!(json["healthy_after_ms"].as_u64().unwrap() >= 1000, "{json}");
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
}

fn crash_with_watch_pid(host_args: &[String], dir: &Path) {
    let port = free_port();
    let log = dir.join("app.log");
    let mut app = App::start(port, &[("app.crash", "true")], &log);
    // A zombie until we reap it: it must count as dead all the same.
    assert!(app.wait_exit(Duration::from_secs(30)).is_some());
    let started = Instant::now();
    let run = check(port, "/actuator/health")
        .args(["--watch-pid", &app.pid().to_string()])
        .args(["--log-file", log.to_str().unwrap()])
        .args(["--timeout", "120s"])
        .args(host_args)
        .run();
    run.code(1);
    assert!(started.elapsed() < Duration::from_secs(10), "not at once");
    assert!(
        run.stderr.contains("APPLICATION FAILED TO START"),
        "{}",
        run.stderr
    );
    assert!(run.error_line().contains("died"), "{}", run.stderr);
}

#[test]
fn a_crash_is_seen_at_once_with_watch_pid_local() {
    let dir = tempfile::tempdir().unwrap();
    crash_with_watch_pid(&[], dir.path());
}

#[test]
fn a_crash_is_seen_at_once_with_watch_pid_ssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    crash_with_watch_pid(&sshd.host_args(), dir.path());
}

#[test]
fn a_crash_is_seen_at_once_with_watch_pid_openssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    crash_with_watch_pid(&sshd.openssh_args(), dir.path());
}

#[test]
fn a_crash_during_startup_is_seen_without_waiting_for_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("app.log");
    // The check starts polling while the JVM is still starting, then it crashes.
    let mut app = App::start(port, &[("app.crash", "true")], &log);
    let pid = app.pid().to_string();
    let started = Instant::now();
    let run = check(port, "/")
        .args(["--watch-pid", &pid, "--log-file", log.to_str().unwrap()])
        .args(["--interval", "200ms", "--timeout", "120s"])
        .run();
    run.code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the timeout"
    );
    assert!(
        run.stderr.contains("APPLICATION FAILED TO START"),
        "{}",
        run.stderr
    );
    assert!(app.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn unhealthy_at_the_deadline_shows_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("app.log");
    let _app = App::start_ready(port, &[("app.unhealthy", "true")], &log);
    let run = check(port, "/actuator/health")
        .args(["--log-file", log.to_str().unwrap()])
        .args(["--timeout", "500ms", "--interval", "100ms"])
        .run();
    run.code(1);
    assert!(
        run.stderr.contains("Tomcat started on port"),
        "{}",
        run.stderr
    );
}

#[test]
fn proxies_in_the_environment_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start_ready(port, &[], &dir.path().join("app.log"));
    let mut bin = check(port, "/actuator/health").args(["--timeout", "5s"]);
    for key in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        bin = bin.env(key, "http://127.0.0.1:9");
    }
    bin.env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .run()
        .code(0);
}

#[test]
fn nothing_listening_fails_as_connection_refused() {
    let run = check(free_port(), "/")
        .args(["--timeout", "500ms", "--interval", "100ms"])
        .run();
    run.code(1);
    assert!(
        run.error_line().contains("connection refused"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_input_is_exit_2() {
    for args in [
        &["--url", "ftp://example.com/"][..],
        &["--url", "127.0.0.1:8000"][..],
        &["--url", "http://127.0.0.1/", "--expect-status", "2xx"][..],
        &["--url", "http://127.0.0.1/", "--expect-body", "(unclosed"][..],
        &["--url", "http://127.0.0.1/", "--timeout", "soon"][..],
        &["--url", "http://127.0.0.1/", "--request-timeout", "0ms"][..],
        &["--url", "http://127.0.0.1/", "--interval", "0s"][..],
        &["--url", "http://127.0.0.1:0/"][..],
    ] {
        let run = Bin::new("bg-healthcheck").args(args).run();
        run.code(2);
        run.error_line();
    }
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-healthcheck").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}

/// A healthy answer while the watched process is already gone came from
/// someone else (the old app still holding the port): exit 1, not healthy.
fn a_dead_watched_pid_fails_even_when_the_url_is_healthy(host_args: &[String], dir: &Path) {
    let port = free_port();
    let _someone_else = App::start_ready(port, &[], &dir.join("app.log"));
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let run = check(port, "/actuator/health")
        .args(["--watch-pid", &pid.to_string(), "--timeout", "10s"])
        .args(host_args)
        .run();
    run.code(1);
    assert!(
        run.error_line().contains(&format!("{pid}")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dead_watched_pid_fails_even_when_the_url_is_healthy_local() {
    let dir = tempfile::tempdir().unwrap();
    a_dead_watched_pid_fails_even_when_the_url_is_healthy(&[], dir.path());
}

#[test]
fn a_dead_watched_pid_fails_even_when_the_url_is_healthy_ssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    a_dead_watched_pid_fails_even_when_the_url_is_healthy(&sshd.host_args(), dir.path());
}

/// A failure shows this start's log lines, not an earlier deploy's: the
/// tail begins after the last line bg-ship writes when it starts the app.
fn the_tail_is_this_starts_lines(host_args: &[String], dir: &Path) {
    let log = dir.join("app.log");
    std::fs::write(
        &log,
        "OLD-DEPLOY failed to bind\n\
         === 2026-12-04 10:00:00 +0000 bg-ship: starting the app\n\
         OLDER-START line\n\
         === 2026-12-04 11:00:00 +0000 bg-ship: starting the app\n\
         THIS-START line one\nTHIS-START line two\n",
    )
    .unwrap();
    let port = free_port();
    let run = check(port, "/actuator/health")
        .args(["--log-file", log.to_str().unwrap()])
        .args(["--timeout", "300ms", "--interval", "100ms"])
        .args(host_args)
        .run();
    run.code(1);
    assert!(run.stderr.contains("THIS-START line two"), "{}", run.stderr);
    assert!(!run.stderr.contains("OLD"), "{}", run.stderr);
}

#[test]
fn the_tail_is_this_starts_lines_local() {
    let dir = tempfile::tempdir().unwrap();
    the_tail_is_this_starts_lines(&[], dir.path());
}

#[test]
fn the_tail_is_this_starts_lines_ssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    the_tail_is_this_starts_lines(&sshd.host_args(), dir.path());
}

/// A probe that hangs (the port accepts, nothing answers) does not hide a
/// death: the watch is read while the request is in flight.
fn a_death_during_a_hanging_probe(host_args: &[String]) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut doomed = std::process::Command::new("sleep")
        .arg("1")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run = check(port, "/actuator/health")
        .args(["--watch-pid", &doomed.id().to_string()])
        .args(["--request-timeout", "60s", "--timeout", "120s"])
        .args(host_args)
        .run();
    run.code(1);
    assert!(run.error_line().contains("died"), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited for the request timeout: {:?}",
        started.elapsed()
    );
    doomed.wait().unwrap();
    drop(silent);
}

#[test]
fn a_death_during_a_hanging_probe_is_seen_local() {
    a_death_during_a_hanging_probe(&[]);
}

#[test]
fn a_death_during_a_hanging_probe_is_seen_ssh() {
    let sshd = Sshd::start();
    a_death_during_a_hanging_probe(&sshd.host_args());
}

/// A real nginx serving https on a loopback port with a certificate of a CA
/// made for the test; `/actuator/health` answers UP.
fn https_nginx() -> (Nginx, tls::Pki, u16) {
    let mut nginx = Nginx::new();
    let pki = tls::Pki::new(&nginx.path("tls"));
    let port = free_port();
    let health = "  location = /actuator/health {\n    default_type application/json;\n    return 200 '{\"status\":\"UP\"}';\n  }\n";
    std::fs::write(
        nginx.path("conf.d/https.conf"),
        pki.server_block(port, health),
    )
    .unwrap();
    nginx.start();
    (nginx, pki, port)
}

fn https_check(port: u16) -> Bin {
    Bin::new("bg-healthcheck").args([
        "--url",
        &format!("https://127.0.0.1:{port}/actuator/health"),
    ])
}

#[test]
fn https_with_the_ca_in_cacert_is_healthy() {
    let (_nginx, pki, port) = https_nginx();
    let ca = pki.ca.to_str().unwrap();
    let run = https_check(port)
        .args(["--cacert", ca, "--expect-body", r#""status":"UP""#])
        .args(["--timeout", "5s", "--format", "env"])
        .run();
    run.code(0);
    assert!(run.stdout.contains("BG_ATTEMPTS=1\n"), "{}", run.stdout);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    // The same from the environment, as a Jenkins credential file would give it.
    https_check(port)
        .env("BG_CACERT", ca)
        .args(["--timeout", "5s"])
        .run()
        .code(0);
}

#[test]
fn https_without_the_ca_fails_as_not_trusted() {
    let (nginx, _pki, port) = https_nginx();
    let started = Instant::now();
    let run = https_check(port)
        .args(["--timeout", "600ms", "--interval", "200ms"])
        .run();
    run.code(1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not at the deadline"
    );
    let line = run.error_line();
    assert!(
        line.contains("no answer (certificate not trusted: its issuer is not among Mozilla's roots built in; pass --cacert FILE with the CA that signed it, or --insecure)"),
        "{line}"
    );
    assert!(
        line.contains("the app was never reached: fix what the last answer says"),
        "{line}"
    );
    // Another CA in --cacert is no better, and the reason names the file.
    let dir = tempfile::tempdir().unwrap();
    let other = tls::Pki::new(dir.path());
    let run = https_check(port)
        .args(["--cacert", other.ca.to_str().unwrap()])
        .args(["--timeout", "300ms", "--interval", "100ms"])
        .run();
    run.code(1);
    let line = run.error_line();
    assert!(
        line.contains(&format!("not among the CAs in {}", other.ca.display())),
        "{line}"
    );
    // https to a port that speaks plain http.
    let run = Bin::new("bg-healthcheck")
        .args([
            "--url",
            &format!("https://127.0.0.1:{}/", nginx.status_port),
        ])
        .args(["--timeout", "300ms", "--interval", "100ms"])
        .run();
    run.code(1);
    let line = run.error_line();
    assert!(line.contains("no answer (TLS handshake failed: "), "{line}");
    assert!(line.contains("is it https at that port?"), "{line}");
}

#[test]
fn https_with_insecure_passes_and_warns() {
    let (_nginx, _pki, port) = https_nginx();
    for run in [
        https_check(port)
            .args(["--insecure", "--timeout", "5s"])
            .run(),
        https_check(port)
            .env("BG_INSECURE", "1")
            .args(["--timeout", "5s"])
            .run(),
    ] {
        run.code(0);
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("warning"))
            .collect();
        assert_eq!(
            warnings,
            [
                "bg-healthcheck: warning: --insecure: https certificates are not verified; anyone between here and the server can answer for it"
            ],
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_bad_cacert_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let key = dir.path().join("server.key");
    std::fs::write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let missing = dir.path().join("missing.pem");
    let url = format!("https://127.0.0.1:{}/", free_port());
    for (path, what) in [
        (&missing, "cannot read the CA bundle"),
        (&text, "is not a PEM file of certificates"),
        (&key, "holds a private key and no certificate"),
    ] {
        // Refused before any probe, with --insecure too.
        for extra in [&[][..], &["--insecure"][..]] {
            let run = Bin::new("bg-healthcheck")
                .args(["--url", &url, "--cacert", path.to_str().unwrap()])
                .args(extra)
                .run();
            run.code(2);
            assert!(!run.stderr.contains("attempt"), "{}", run.stderr);
            let line = run.error_line();
            assert!(line.contains(&path.display().to_string()), "{line}");
            assert!(line.contains(what), "{line}");
            assert!(line.contains("--cacert"), "{line}");
        }
    }
}
