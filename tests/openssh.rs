//! `--ssh-client openssh`: the system's `ssh` with one shared connection,
//! against a real sshd. What it has in common with the other hosts runs in
//! the both-ways tests (`NAME::openssh`); here is what is its own: the shared
//! connection, host keys and passphrases as OpenSSH handles them, remote
//! statuses it does not pass on, and that nothing is left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use bg_core::host::{Host, OpensshHost};
use bg_core::{Cmd, Code, Failure, HostError};
use bg_deploy_tests::{Bin, ClosedPort, Run, Sshd, free_port, keygen};

/// bg-stop-port on a port nothing listens on: exit 0 after a few remote
/// commands, the cheapest whole run of a binary on a host.
fn stop_nothing(args: &[String], dir: &Path) -> Bin {
    Bin::new("bg-stop-port")
        .args(["--port", &free_port().to_string()])
        .args(["--lock-dir", dir.to_str().unwrap()])
        .args(args)
}

/// `args` with `--flag value` replaced (or added).
fn with(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if arg == flag {
            skip = true;
        } else {
            out.push(arg.clone());
        }
    }
    out.extend([flag.to_string(), value.to_string()]);
    out
}

#[track_caller]
fn refused(run: &Run) -> &str {
    run.code(4);
    run.error_line()
}

/// The point of the transport: stages of a pipeline are separate processes,
/// and all of them use the one connection the first one opened.
#[test]
fn two_binaries_one_after_the_other_share_one_connection() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    stop_nothing(&sshd.openssh_args(), dir.path()).run().code(0);
    stop_nothing(&sshd.openssh_args(), dir.path()).run().code(0);
    // Another binary: it finds no site there (exit 3), having looked over
    // the same connection.
    Bin::new("bg-detect-port")
        .args(sshd.openssh_args())
        .args(["--sites-available", dir.path().to_str().unwrap()])
        .args(["--sites-enabled", dir.path().to_str().unwrap()])
        .run()
        .code(3);
    assert_eq!(
        sshd.connections(),
        1,
        "sshd accepted more than one connection:\n{}",
        sshd.log()
    );
}

#[test]
fn an_unknown_host_key_is_exit_4_with_the_keyscan_line() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent/known_hosts");
    let args = with(
        &sshd.openssh_args(),
        "--known-hosts",
        missing.to_str().unwrap(),
    );
    let run = stop_nothing(&args, dir.path()).run();
    let line = refused(&run);
    assert!(
        line.contains(&format!(
            "ssh-keyscan -p {} 127.0.0.1 >> {}",
            sshd.port,
            missing.display()
        )),
        "{line}"
    );
    assert!(line.contains("accept-new"), "{line}");
    assert!(
        line.contains("Host key verification failed"),
        "ssh's words: {line}"
    );
    assert!(!missing.exists(), "strict checking must not write the file");
    // The same with the check asked for explicitly.
    let strict = with(&args, "--host-key-check", "strict");
    refused(&stop_nothing(&strict, dir.path()).run());
}

#[test]
fn accept_new_appends_the_key_then_strict_trusts_it() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new/.ssh/known_hosts");
    let args = with(
        &sshd.openssh_args(),
        "--known-hosts",
        file.to_str().unwrap(),
    );
    let accept = with(&args, "--host-key-check", "accept-new");
    stop_nothing(&accept, dir.path()).run().code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key)
    );
    let strict = with(&args, "--host-key-check", "strict");
    stop_nothing(&strict, dir.path()).run().code(0);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "no second line"
    );
}

#[test]
fn a_changed_host_key_is_exit_4_in_strict_and_accept_new() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let impostor = keygen(&dir.path().join("impostor"), "");
    let line: Vec<String> = std::fs::read_to_string(impostor.with_extension("pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .map(str::to_string)
        .collect();
    let file = dir.path().join("kh-changed");
    let text = format!("[127.0.0.1]:{} {}\n", sshd.port, line.join(" "));
    std::fs::write(&file, &text).unwrap();
    let args = with(
        &sshd.openssh_args(),
        "--known-hosts",
        file.to_str().unwrap(),
    );
    for mode in ["strict", "accept-new"] {
        let run = stop_nothing(&with(&args, "--host-key-check", mode), dir.path()).run();
        let error = refused(&run);
        assert!(error.contains("has changed"), "{mode}: {error}");
        assert!(error.contains("kh-changed:1"), "{mode}: {error}");
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the file was touched"
    );
}

#[test]
fn an_encrypted_key_works_with_bg_ssh_passphrase() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let passphrase = "correct horse $(battery) 'staple'";
    let key = keygen(&dir.path().join("locked"), passphrase);
    sshd.authorize_only(&[&key.with_extension("pub")]);
    let args = with(&sshd.openssh_args(), "--identity", key.to_str().unwrap());

    let error = refused(&stop_nothing(&args, dir.path()).run()).to_string();
    assert!(error.contains("Permission denied"), "{error}");

    let wrong = stop_nothing(&args, dir.path())
        .env("BG_SSH_PASSPHRASE", "wrong")
        .run();
    assert!(refused(&wrong).contains("BG_SSH_PASSPHRASE"));

    stop_nothing(&args, dir.path())
        .env("BG_SSH_PASSPHRASE", passphrase)
        .run()
        .code(0);
}

#[test]
fn a_key_the_server_does_not_know_is_exit_4() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(&dir.path().join("stranger"), "");
    let args = with(
        &sshd.openssh_args(),
        "--identity",
        stranger.to_str().unwrap(),
    );
    let run = stop_nothing(&args, dir.path()).run();
    let error = refused(&run);
    assert!(error.contains("Permission denied (publickey"), "{error}");
    assert!(error.contains("authorized_keys"), "{error}");
}

#[test]
fn a_closed_port_is_exit_4() {
    let closed = ClosedPort::new();
    let dir = tempfile::tempdir().unwrap();
    let run = stop_nothing(
        &[
            "--host".into(),
            format!("127.0.0.1:{}", closed.port),
            "--ssh-client".into(),
            "openssh".into(),
            "--no-ssh-config".into(),
            "--connect-timeout".into(),
            "5s".into(),
        ],
        dir.path(),
    )
    .run();
    assert!(
        refused(&run).contains("Connection refused"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_ipv6_target_in_brackets_works() {
    let sshd = Sshd::start_with("ListenAddress [::1]\n");
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("kh6");
    std::fs::write(&known, format!("[::1]:{} {}\n", sshd.port, sshd.host_key)).unwrap();
    let mut args = with(
        &sshd.openssh_args(),
        "--host",
        &format!("{}@[::1]:{}", sshd.user, sshd.port),
    );
    args = with(&args, "--known-hosts", known.to_str().unwrap());
    stop_nothing(&args, dir.path()).run().code(0);
}

/// OpenSSH's client exits 255 for a remote command killed by a signal, as
/// for a broken connection: the host must still see a killed command (and
/// a real exit status 255 as that status).
#[test]
fn a_killed_remote_command_is_a_failure_and_255_is_a_status() {
    let sshd = Sshd::start();
    let host = sshd.connect_openssh();
    for signal in ["KILL", "TERM", "SEGV"] {
        let output = host
            .run(&Cmd::script(&format!("kill -{signal} $$"), &[]))
            .unwrap();
        assert!(!output.success(), "{signal}");
        assert_eq!(output.signal.as_deref(), Some(signal));
        assert_eq!(output.stderr_text(), "", "{signal}: stderr");
    }
    let output = host
        .run(&Cmd::script(
            "echo partial >&2; printf no-newline >&2; exit 255",
            &[],
        ))
        .unwrap();
    assert_eq!((output.code, output.signal.as_deref()), (Some(255), None));
    assert_eq!(output.stderr_text(), "partial\nno-newline");
}

/// A value the remote shell must not interpret, in the command's arguments.
#[test]
fn hostile_arguments_arrive_intact() {
    let sshd = Sshd::start();
    let host = sshd.connect_openssh();
    let hostile = [
        "with space",
        "it's \"quoted\"",
        "$(touch /tmp/bg-openssh-pwned)",
        "`id`",
        "a\nb\n",
        "; exit 3 #",
        "bg-exit-0000000000000000:0",
        "-o",
        "",
    ];
    let output = host
        .run_ok(&Cmd::new("printf").arg("%s\\0").args(hostile))
        .unwrap();
    let seen: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .split_terminator('\0')
        .collect();
    assert_eq!(seen, hostile);
    assert!(!Path::new("/tmp/bg-openssh-pwned").exists());
}

/// The master serves while its sshd does; once the server is gone, so is
/// the master and its socket: tests leave no ssh running.
#[test]
fn the_master_ends_with_its_server() {
    let sshd = Sshd::start();
    // Outside the server's directory, which goes with it.
    let mux = tempfile::tempdir().unwrap();
    let mut options = sshd.openssh_options();
    options.control_dir = Some(mux.path().join("m"));
    let host = OpensshHost::connect(&options).unwrap();
    host.run_ok(&Cmd::new("true")).unwrap();
    let socket = host.control_socket().to_path_buf();
    let pid = master_pid(&host);
    assert!(is_running(pid));
    // A second host on the same settings shares it.
    let again = OpensshHost::connect(&options).unwrap();
    assert_eq!(master_pid(&again), pid);
    assert_eq!(sshd.connections(), 1, "{}", sshd.log());
    drop(sshd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "master {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!socket.exists(), "{} left behind", socket.display());
    let err = host.run(&Cmd::new("true")).unwrap_err();
    assert_eq!(err.code(), Code::Unreachable, "{err}");
}

/// A socket left by a master that was killed does not stop the next run.
#[test]
fn a_stale_socket_is_replaced() {
    let sshd = Sshd::start();
    let host = sshd.connect_openssh();
    let pid = master_pid(&host);
    // SAFETY: kill(2) on the master this test opened.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "master {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(host.control_socket().exists(), "SIGKILL leaves the socket");
    let host = sshd.connect_openssh();
    assert_ne!(master_pid(&host), pid);
    host.run_ok(&Cmd::new("true")).unwrap();
}

#[test]
fn an_unreachable_control_directory_is_exit_4() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a file");
    std::fs::write(&file, "").unwrap();
    let mut options = sshd.openssh_options();
    options.control_dir = Some(file.join("mux"));
    let err = OpensshHost::connect(&options).unwrap_err();
    assert!(matches!(err, HostError::ControlDir { .. }), "{err}");
    assert_eq!(err.code(), Code::Unreachable);
}

/// No `ssh` on PATH: exit 4, and the hint names the package that has it.
#[test]
fn a_missing_ssh_names_the_package_to_install() {
    let closed = ClosedPort::new();
    let dir = tempfile::tempdir().unwrap();
    let run = stop_nothing(
        &[
            "--host".into(),
            format!("127.0.0.1:{}", closed.port),
            "--ssh-client".into(),
            "openssh".into(),
            "--no-ssh-config".into(),
        ],
        dir.path(),
    )
    .env("PATH", dir.path().join("empty").to_str().unwrap())
    .run();
    let line = refused(&run);
    assert!(line.contains("cannot run `ssh`"), "{}", run.stderr);
    assert!(
        line.contains("`apt-get install openssh-client`"),
        "{}",
        run.stderr
    );
    assert!(line.contains("--ssh-client ssh2"), "{}", run.stderr);
}

/// The pid of the master serving `host`, from `ssh -O check`.
fn master_pid(host: &OpensshHost) -> u32 {
    let output = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-O", "check", "-S"])
        .arg(host.control_socket())
        .arg("placeholder")
        .output()
        .unwrap_or_else(bg_deploy_tests::cannot_run("ssh"));
    let text = String::from_utf8_lossy(&output.stderr);
    text.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no master: {text}"))
}

/// Alive and not a zombie waiting for its parent.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|rest| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}
