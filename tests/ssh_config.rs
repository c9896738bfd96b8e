//! ~/.ssh/config for the built-in SSH client, against real sshd servers on
//! loopback: aliases, precedence of flags over the file, jump hosts
//! (ProxyJump, one and two hops, each a real sshd whose log shows the
//! forwarded connection), ProxyCommand, and the errors for bad files and
//! failing hops. Every test gives the binaries a HOME of its own, so the
//! machine's own ~/.ssh never counts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bg_core::host::{Host, Proxy, SshHost, SshOptions, Target};
use bg_core::{Cmd, Code, Failure, HostError};
use bg_deploy_tests::{Bin, ClosedPort, Run, Sshd, free_port};

const LOG_WAIT: Duration = Duration::from_secs(10);

/// A temp dir used as HOME, and the lock dir of bg-stop-port.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to a file in HOME and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `bg-stop-port --port FREE --host HOST ARGS...`: a real binary that
    /// runs commands on the host and exits 0 when nothing listens.
    fn stop_port(&self, host: &str, args: &[&str]) -> Run {
        Bin::new("bg-stop-port")
            .env("HOME", self.path().to_str().unwrap())
            .args(["--port", &free_port().to_string()])
            .args(["--lock-dir", self.path().to_str().unwrap()])
            .args(["--format", "env", "--connect-timeout", "20s"])
            .args(["--host", host])
            .args(args)
            .run()
    }
}

#[track_caller]
fn reached(run: &Run) {
    run.code(0);
    assert!(
        run.stdout.contains("\nBG_STOPPED_PIDS=\n"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}

/// The bastion's sshd, at DEBUG1, logs each direct-tcpip channel it opens.
fn bastion() -> Sshd {
    Sshd::start_with("LogLevel DEBUG1\n")
}

#[track_caller]
fn forwarded(bastion: &Sshd, to: &Sshd) {
    let target = format!("target 127.0.0.1 port {}", to.port);
    assert!(
        bastion.wait_for_log(&["server_request_direct_tcpip", &target], LOG_WAIT),
        "the bastion opened no direct-tcpip channel to port {}:\n{}",
        to.port,
        bastion.log()
    );
}

#[test]
fn an_alias_in_the_default_config_reaches_its_host() {
    let sshd = Sshd::start();
    let home = Home::new();
    // ~ in IdentityFile is HOME; the file is found under HOME by default.
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::copy(&sshd.client_key, home.path().join(".ssh/app_key")).unwrap();
    home.write(
        ".ssh/config",
        &format!(
            "Host app\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile ~/.ssh/app_key\n  UserKnownHostsFile {}\n",
            sshd.port,
            sshd.user,
            sshd.known_hosts.display()
        ),
    );
    reached(&home.stop_port("app", &[]));
    assert!(
        sshd.wait_for_log(&["Accepted publickey for", &sshd.user], LOG_WAIT),
        "{}",
        sshd.log()
    );
}

#[test]
fn an_explicit_config_file_and_bg_ssh_config_are_read() {
    let sshd = Sshd::start();
    let home = Home::new();
    let config = home.write("elsewhere/ssh_config", &sshd.ssh_config_block("app"));
    reached(&home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]));
    let run = Bin::new("bg-stop-port")
        .env("HOME", home.path().to_str().unwrap())
        .env("BG_SSH_CONFIG", config.to_str().unwrap())
        .args(["--port", &free_port().to_string(), "--format", "env"])
        .args(["--lock-dir", home.path().to_str().unwrap(), "--host", "app"])
        .run();
    reached(&run);
}

#[test]
fn a_flag_wins_over_the_file_and_host_parts_win_over_both() {
    let sshd = Sshd::start();
    let closed = ClosedPort::new();
    let home = Home::new();
    let block = sshd.ssh_config_block("app").replace(
        &format!("Port {}", sshd.port),
        &format!("Port {}", closed.port),
    );
    let config = home.write("config", &block);
    let config = config.to_str().unwrap();

    let wrong = home.stop_port("app", &["--ssh-config", config]);
    wrong.code(4);
    assert!(
        wrong.error_line().contains(&closed.port.to_string()),
        "the file's port is used when no flag says otherwise: {}",
        wrong.stderr
    );

    let port = sshd.port.to_string();
    reached(&home.stop_port("app", &["--ssh-config", config, "--ssh-port", &port]));

    // The port in --host wins over --ssh-port.
    let typed = format!("app:{}", sshd.port);
    let closed_port = closed.port.to_string();
    reached(&home.stop_port(
        &typed,
        &["--ssh-config", config, "--ssh-port", &closed_port],
    ));
}

#[test]
fn proxy_jump_through_one_bastion() {
    let bastion = bastion();
    let app = Sshd::start();
    let home = Home::new();
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyJump bastion\n\n{}\n{}",
            app.ssh_config_block("app"),
            bastion.ssh_config_block("bastion")
        ),
    );
    reached(&home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]));
    forwarded(&bastion, &app);
}

#[test]
fn proxy_jump_through_two_hops_written_as_user_host_port() {
    let first = bastion();
    let second = bastion();
    let app = Sshd::start();
    let home = Home::new();
    // The second hop is written as user@host:port; its key and known_hosts
    // still come from the file, through its Host block matching 127.0.0.1.
    let second_block = second
        .ssh_config_block("127.0.0.1")
        .replace("  HostName 127.0.0.1\n", "");
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyJump first,{}@127.0.0.1:{}\n\n{}\n{}\n{}",
            second.user,
            second.port,
            app.ssh_config_block("app"),
            first.ssh_config_block("first"),
            second_block,
        ),
    );
    reached(&home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]));
    forwarded(&first, &second);
    forwarded(&second, &app);
}

#[test]
fn proxy_command_with_ssh_w_through_the_bastion() {
    let bastion = bastion();
    let app = Sshd::start();
    let home = Home::new();
    let command = format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i {key} -o UserKnownHostsFile={kh} -p {port} -W %h:%p {user}@127.0.0.1",
        key = bastion.client_key.display(),
        kh = bastion.known_hosts.display(),
        port = bastion.port,
        user = bastion.user,
    );
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyCommand {command}\n{}",
            app.ssh_config_block("app")
        ),
    );
    reached(&home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]));
    forwarded(&bastion, &app);
}

#[test]
fn a_failing_proxy_command_is_exit_4_with_its_stderr() {
    let app = Sshd::start();
    let home = Home::new();
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyCommand echo 'proxy says no to %h:%p' >&2; exit 3\n{}",
            app.ssh_config_block("app")
        ),
    );
    let run = home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]);
    run.code(4);
    let line = run.error_line();
    assert!(line.contains("ProxyCommand for"), "{line}");
    assert!(line.contains("exited with status 3"), "{line}");
    assert!(
        line.contains(&format!("proxy says no to 127.0.0.1:{}", app.port)),
        "{line}"
    );
}

#[test]
fn a_bastion_that_refuses_the_key_is_exit_4_naming_it() {
    let bastion = bastion();
    let app = Sshd::start();
    let home = Home::new();
    let stranger = bg_deploy_tests::keygen(&home.path().join("stranger"), "");
    let bastion_block = bastion.ssh_config_block("bastion").replace(
        &bastion.client_key.display().to_string(),
        stranger.to_str().unwrap(),
    );
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyJump bastion\n{}{}",
            app.ssh_config_block("app"),
            bastion_block
        ),
    );
    let run = home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]);
    run.code(4);
    let line = run.error_line();
    assert!(line.contains("jump host bastion: authentication"), "{line}");
    assert!(line.contains(stranger.to_str().unwrap()), "{line}");
}

#[test]
fn a_hop_that_cannot_reach_the_next_is_exit_4_naming_both() {
    let first = bastion();
    let closed = ClosedPort::new();
    let app = Sshd::start();
    let home = Home::new();
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyJump first,second\n{}{}Host second\n  HostName 127.0.0.1\n  Port {}\n",
            app.ssh_config_block("app"),
            first.ssh_config_block("first"),
            closed.port
        ),
    );
    let run = home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]);
    run.code(4);
    let line = run.error_line();
    assert!(
        line.contains("jump host first (")
            && line.contains(&format!(
                "could not open a connection to second (127.0.0.1:{})",
                closed.port
            )),
        "{line}"
    );
}

#[test]
fn a_bastion_without_forwarding_is_exit_4() {
    let bastion = Sshd::start_with("AllowTcpForwarding no\n");
    let app = Sshd::start();
    let home = Home::new();
    let config = home.write(
        "config",
        &format!(
            "Host app\n  ProxyJump bastion\n{}{}",
            app.ssh_config_block("app"),
            bastion.ssh_config_block("bastion")
        ),
    );
    let run = home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]);
    run.code(4);
    let line = run.error_line();
    assert!(line.contains("jump host bastion ("), "{line}");
    assert!(line.contains("AllowTcpForwarding"), "{line}");
    assert!(
        !app.log().contains("Accepted publickey"),
        "nothing reached the host:\n{}",
        app.log()
    );
}

#[test]
fn an_unreadable_line_is_exit_2_naming_file_and_line() {
    let home = Home::new();
    let config = home.write(
        "config",
        "Host app\n  HostName 127.0.0.1\n  Port twenty-two\n",
    );
    let run = home.stop_port("app", &["--ssh-config", config.to_str().unwrap()]);
    run.code(2);
    let line = run.error_line();
    assert!(
        line.contains(&format!("{}:3: Port \"twenty-two\"", config.display())),
        "{line}"
    );
    assert!(line.contains("--no-ssh-config"), "{line}");
}

#[test]
fn an_explicit_config_that_does_not_exist_is_exit_2() {
    let home = Home::new();
    let missing = home.path().join("no-such-config");
    let run = home.stop_port("app", &["--ssh-config", missing.to_str().unwrap()]);
    run.code(2);
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "ssh_config file {} does not exist",
            missing.display()
        )),
        "{line}"
    );
}

#[test]
fn no_ssh_config_ignores_a_file_that_would_break_things() {
    let sshd = Sshd::start();
    let home = Home::new();
    home.write(".ssh/config", "Host *\n  Port not-a-port\n");
    let mut args: Vec<String> = sshd.host_args();
    let target = args.remove(1);
    args.remove(0);
    args.retain(|a| a != "--no-ssh-config");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    home.stop_port(&target, &args).code(2);

    let mut with_flag = args.clone();
    with_flag.push("--no-ssh-config");
    reached(&home.stop_port(&target, &with_flag));

    let run = Bin::new("bg-stop-port")
        .env("HOME", home.path().to_str().unwrap())
        .env("BG_NO_SSH_CONFIG", "1")
        .args(["--port", &free_port().to_string(), "--format", "env"])
        .args([
            "--lock-dir",
            home.path().to_str().unwrap(),
            "--host",
            &target,
        ])
        .args(&args)
        .run();
    reached(&run);
}

/// The options the library gets for `app` behind `bastion`.
fn through(bastion: &Sshd, app: &Sshd) -> SshOptions {
    let mut options = app.options();
    let mut hop = bastion.options();
    hop.alias = Some("bastion".into());
    options.proxy = Proxy::Jump(Box::new(hop));
    options
}

#[test]
fn dropping_a_host_behind_a_bastion_closes_both_sessions() {
    let bastion = bastion();
    let app = Sshd::start();
    let host = SshHost::connect(&through(&bastion, &app)).unwrap();
    // Data both ways, more than one channel window, through the tunnel.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = host
        .exec(&Cmd::new("cat"), bg_core::host::Input::Bytes(&data))
        .unwrap();
    assert!(echoed.stdout == data, "the data came back changed");
    drop(host);
    // Drop returns after the pump thread ended and the bastion's session
    // said goodbye; each sshd logs it on its own schedule.
    assert!(
        bastion.wait_for_log(&["Received disconnect from 127.0.0.1"], LOG_WAIT),
        "the bastion session was not closed:\n{}",
        bastion.log()
    );
    assert!(
        app.wait_for_log(&["Received disconnect from 127.0.0.1"], LOG_WAIT),
        "the host session was not closed:\n{}",
        app.log()
    );
}

#[test]
fn a_proxy_command_and_what_it_started_end_with_the_host() {
    let app = Sshd::start();
    let marker = format!("bg-proxy-marker-{}", free_port());
    let mut options = app.options();
    // A background process that would outlive us for minutes if its
    // process group were not ended with the host.
    options.proxy = Proxy::Command(format!(
        "bash -c 'exec -a {marker} sleep 300' & exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; cat <&3 & exec cat >&3'",
        app.port
    ));
    let host = SshHost::connect(&options).unwrap();
    let output = host
        .run(&Cmd::new("echo").arg("through a command"))
        .unwrap();
    assert_eq!(output.stdout_text(), "through a command\n");
    assert!(running(&marker), "the marker process did not start");
    drop(host);
    let deadline = std::time::Instant::now() + LOG_WAIT;
    while running(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "{marker} outlived the host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .unwrap_or_else(bg_deploy_tests::cannot_run("pgrep"))
        .status
        .success()
}

#[test]
fn a_jump_host_that_refuses_connections_is_named_in_a_connect_error() {
    let app = Sshd::start();
    let closed = ClosedPort::new();
    let mut options = app.options();
    let mut hop = SshOptions::new(Target::parse(&format!("127.0.0.1:{}", closed.port)).unwrap());
    hop.alias = Some("bastion".into());
    options.proxy = Proxy::Jump(Box::new(hop));
    let err = SshHost::connect(&options).unwrap_err();
    assert!(
        matches!(&err, HostError::Jump { hop, source } if hop == "bastion" && matches!(**source, HostError::Connect { .. })),
        "{err}"
    );
    assert_eq!(err.code(), Code::Unreachable);
    assert!(
        err.to_string()
            .starts_with("jump host bastion: could not connect"),
        "{err}"
    );
}

/// A listener that accepts (into the kernel's backlog) and never speaks.
fn silent() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn the_connect_timeout_bounds_each_hop() {
    let bastion = bastion();
    let (_listener, port) = silent();

    // Behind a working bastion, a host that never answers.
    let mut options = SshOptions::new(Target::parse(&format!("127.0.0.1:{port}")).unwrap());
    options.connect_timeout = Duration::from_millis(800);
    let mut hop = bastion.options();
    hop.alias = Some("bastion".into());
    options.proxy = Proxy::Jump(Box::new(hop));
    let started = std::time::Instant::now();
    let err = SshHost::connect(&options).unwrap_err();
    assert!(matches!(err, HostError::Handshake { .. }), "{err}");
    assert!(
        err.to_string().contains("no SSH answer within 800ms"),
        "{err}"
    );
    assert_eq!(err.code(), Code::Unreachable);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A bastion that never answers.
    let (_listener2, port2) = silent();
    let app = Sshd::start();
    let mut options = app.options();
    let mut hop = SshOptions::new(Target::parse(&format!("127.0.0.1:{port2}")).unwrap());
    hop.alias = Some("mute".into());
    hop.connect_timeout = Duration::from_millis(800);
    options.proxy = Proxy::Jump(Box::new(hop));
    let err = SshHost::connect(&options).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("jump host mute: SSH handshake with")
            && err.to_string().contains("no SSH answer within 800ms"),
        "{err}"
    );
    assert_eq!(err.code(), Code::Unreachable);
}
