//! Reaching and trusting a host: known_hosts modes, keys, ssh-agent,
//! passphrases and timeouts, against a real sshd.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bg_core::host::{Host, HostKeyCheck, SshHost, SshOptions};
use bg_core::{Cmd, Code, Failure, HostError};
use bg_deploy_tests::{ClosedPort, Sshd, keygen};

fn connect(options: &SshOptions) -> Result<SshHost, HostError> {
    SshHost::connect(options)
}

/// Proves the session works by running a command on it.
fn works(host: SshHost) {
    let output = host.run(&Cmd::new("echo").arg("hello")).unwrap();
    assert_eq!(output.stdout_text(), "hello\n");
}

fn no_default_keys() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Each cipher we may negotiate, forced on the server in turn, moves data
/// intact both ways: whole packets, a short last one, and tiny writes.
/// AES-GCM goes through the patched send path of our libssh2
/// (vendor/libssh2-sys/PATCHED.md), the others through upstream's.
#[test]
fn every_cipher_we_offer_moves_data_intact_both_ways() {
    let data: Vec<u8> = (0..(3 * 1024 * 1024 + 4097u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data");
    std::fs::write(&local, &data).unwrap();
    for cipher in [
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes256-ctr",
        "chacha20-poly1305@openssh.com",
    ] {
        let sshd = Sshd::start_with(&format!("Ciphers {cipher}\n"));
        let host = connect(&sshd.options()).unwrap_or_else(|e| panic!("{cipher}: {e}"));
        let remote = sshd.dir.path().join("copy");
        let remote = remote.to_str().unwrap();
        host.upload(&local, remote, &mut |_| {}).unwrap();
        let back = host.run_ok(&Cmd::new("cat").arg(remote)).unwrap();
        assert!(back.stdout == data, "{cipher}: the copy differs");
        for len in [0, 1, 15, 16, 17, 4096] {
            let small = &data[..len];
            let echoed = host
                .exec(&Cmd::new("cat"), bg_core::host::Input::Bytes(small))
                .unwrap();
            assert_eq!(echoed.stdout, small, "{cipher}: {len} bytes");
        }
    }
}

#[test]
fn strict_with_the_key_known_connects() {
    let sshd = Sshd::start();
    works(connect(&sshd.options()).unwrap());
}

#[test]
fn strict_refuses_an_unknown_host_and_says_how_to_trust_it() {
    let sshd = Sshd::start();
    let mut options = sshd.options();
    let missing = sshd.dir.path().join("absent/known_hosts");
    options.known_hosts = Some(missing.clone());
    let err = connect(&options).unwrap_err();
    assert!(matches!(err, HostError::HostKeyUnknown { .. }), "{err}");
    assert_eq!(err.code(), Code::Unreachable);
    let hint = err.hint().unwrap();
    assert!(
        hint.contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)),
        "{hint}"
    );
    assert!(hint.contains("accept-new"), "{hint}");
    assert!(!missing.exists(), "strict mode must not write the file");
}

#[test]
fn accept_new_adds_the_key_to_a_missing_file_then_strict_trusts_it() {
    let sshd = Sshd::start();
    let mut options = sshd.options();
    let file = sshd.dir.path().join("new/.ssh/known_hosts");
    options.known_hosts = Some(file.clone());
    options.host_key_check = HostKeyCheck::AcceptNew;
    works(connect(&options).unwrap());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key)
    );
    options.host_key_check = HostKeyCheck::Strict;
    works(connect(&options).unwrap());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        1,
        "no second line"
    );
}

#[test]
fn accept_new_appends_and_never_rewrites() {
    let sshd = Sshd::start();
    let file = sshd.dir.path().join("kh");
    let before = "# team hosts\n|1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|aGFzaGhhc2hoYXNoaGFzaGhhc2g= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm5XcBs+EGxf9gl3pGHQEIRv6dVBDJa+Kah/CfkVbvf\nother.example.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ";
    std::fs::write(&file, before).unwrap();
    let mut options = sshd.options();
    options.known_hosts = Some(file.clone());
    options.host_key_check = HostKeyCheck::AcceptNew;
    works(connect(&options).unwrap());
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(
        after.starts_with(before),
        "existing bytes changed:\n{after}"
    );
    assert_eq!(
        &after[before.len()..],
        format!("\n[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key)
    );
}

#[test]
fn a_changed_key_is_refused_in_strict_and_accept_new() {
    let sshd = Sshd::start();
    let impostor = keygen(&sshd.dir.path().join("impostor"), "");
    let impostor_pub = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let line: Vec<&str> = impostor_pub.split_whitespace().take(2).collect();
    let file = sshd.dir.path().join("kh-changed");
    let text = format!("[127.0.0.1]:{} {}\n", sshd.port, line.join(" "));
    std::fs::write(&file, &text).unwrap();
    for mode in [HostKeyCheck::Strict, HostKeyCheck::AcceptNew] {
        let mut options = sshd.options();
        options.known_hosts = Some(file.clone());
        options.host_key_check = mode;
        let err = connect(&options).unwrap_err();
        assert!(
            matches!(err, HostError::HostKeyChanged { line: 1, .. }),
            "{mode:?}: {err}"
        );
        assert_eq!(err.code(), Code::Unreachable);
        assert!(err.to_string().contains("CHANGED"));
        assert!(err.hint().unwrap().contains("remove line 1"));
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the file was touched"
    );
}

#[test]
fn off_connects_whatever_the_file_says() {
    let sshd = Sshd::start();
    let mut options = sshd.options();
    options.known_hosts = Some(sshd.dir.path().join("nothing-here"));
    options.host_key_check = HostKeyCheck::Off;
    works(connect(&options).unwrap());
    assert!(!sshd.dir.path().join("nothing-here").exists());
}

#[test]
fn a_hashed_entry_is_trusted() {
    let sshd = Sshd::start();
    let file = sshd.dir.path().join("kh-hashed");
    std::fs::copy(&sshd.known_hosts, &file).unwrap();
    let status = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .status()
        .unwrap_or_else(bg_deploy_tests::cannot_run("ssh-keygen"));
    assert!(status.success());
    let hashed = std::fs::read_to_string(&file).unwrap();
    assert!(
        hashed.starts_with("|1|"),
        "ssh-keygen -H did not hash: {hashed}"
    );
    let mut options = sshd.options();
    options.known_hosts = Some(file);
    works(connect(&options).unwrap());
}

#[test]
fn a_key_the_server_does_not_know_fails_authentication() {
    let sshd = Sshd::start();
    let stranger = keygen(&sshd.dir.path().join("stranger"), "");
    let mut options = sshd.options();
    options.identity = Some(stranger.clone());
    options.home = Some(no_default_keys().path().to_path_buf());
    let err = connect(&options).unwrap_err();
    assert!(matches!(err, HostError::Auth { .. }), "{err}");
    assert_eq!(err.code(), Code::Unreachable);
    assert!(
        err.to_string().contains(&stranger.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_missing_key_file_is_bad_input() {
    let sshd = Sshd::start();
    let mut options = sshd.options();
    options.identity = Some(PathBuf::from("/nonexistent/id_ed25519"));
    let err = connect(&options).unwrap_err();
    assert!(matches!(err, HostError::KeyMissing { .. }), "{err}");
    assert_eq!(err.code(), Code::Usage);
}

#[test]
fn an_encrypted_key_needs_its_passphrase() {
    let sshd = Sshd::start();
    let passphrase = "correct horse $(battery) 'staple'";
    let key = keygen(&sshd.dir.path().join("locked"), passphrase);
    sshd.authorize_only(&[&key.with_extension("pub")]);
    let home = no_default_keys();
    let mut options = sshd.options();
    options.identity = Some(key.clone());
    options.home = Some(home.path().to_path_buf());

    let err = connect(&options).unwrap_err();
    assert_eq!(err.code(), Code::Unreachable);
    assert!(
        err.to_string().contains("encrypted") && err.to_string().contains("BG_SSH_PASSPHRASE"),
        "{err}"
    );

    options.passphrase = Some("wrong".into());
    let err = connect(&options).unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong passphrase (BG_SSH_PASSPHRASE)"),
        "{err}"
    );

    options.passphrase = Some(passphrase.into());
    works(connect(&options).unwrap());
}

/// A real ssh-agent on a socket in `dir`, killed on drop.
struct Agent {
    socket: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path, keys: &[&Path]) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(bg_deploy_tests::cannot_run("ssh-agent"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            let status = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &socket)
                .status()
                .unwrap_or_else(bg_deploy_tests::cannot_run("ssh-add"));
            assert!(status.success(), "ssh-add {}", key.display());
        }
        Agent { socket, child }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_agent_tries_each_identity_until_one_is_accepted() {
    let sshd = Sshd::start();
    let first = keygen(&sshd.dir.path().join("agent-first"), "");
    let second = keygen(&sshd.dir.path().join("agent-second"), "");
    sshd.authorize_only(&[&second.with_extension("pub")]);
    let agent = Agent::start(sshd.dir.path(), &[&first, &second]);
    let home = no_default_keys();
    let mut options = sshd.options();
    options.identity = None;
    options.agent_socket = Some(agent.socket.clone());
    options.home = Some(home.path().to_path_buf());
    works(connect(&options).unwrap());

    sshd.authorize_only(&[&sshd.client_key.with_extension("pub")]);
    let err = connect(&options).unwrap_err();
    assert!(
        err.to_string()
            .contains("ssh-agent (2 identities, none accepted)"),
        "{err}"
    );
}

#[test]
fn default_key_files_come_last() {
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::copy(&sshd.client_key, home.path().join(".ssh/id_ed25519")).unwrap();
    let mut options = sshd.options();
    options.identity = None;
    options.agent_socket = None;
    options.home = Some(home.path().to_path_buf());
    works(connect(&options).unwrap());
}

#[test]
fn a_closed_port_fails_at_once_with_exit_4() {
    let closed = ClosedPort::new();
    let port = closed.port;
    let mut options =
        SshOptions::new(bg_core::host::Target::parse(&format!("127.0.0.1:{port}")).unwrap());
    options.connect_timeout = Duration::from_secs(5);
    let err = connect(&options).unwrap_err();
    assert!(matches!(err, HostError::Connect { .. }), "{err}");
    assert_eq!(err.code(), Code::Unreachable);
}

#[test]
fn a_port_that_never_speaks_ssh_fails_within_the_connect_timeout() {
    // The kernel accepts the connection into the backlog; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut options =
        SshOptions::new(bg_core::host::Target::parse(&format!("127.0.0.1:{port}")).unwrap());
    options.connect_timeout = Duration::from_millis(800);
    let started = Instant::now();
    let err = connect(&options).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, HostError::Handshake { .. }), "{err}");
    assert_eq!(err.code(), Code::Unreachable);
    assert!(
        err.to_string().contains("no SSH answer within 800ms"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "took {took:?}"
    );
}
