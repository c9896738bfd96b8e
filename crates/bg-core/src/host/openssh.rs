//! A remote host through the system's `ssh` (`--ssh-client openssh`).
//!
//! Why a second transport: OpenSSH shares one connection between processes
//! (`ControlMaster`), so the stages of a pipeline, separate processes seconds
//! apart, authenticate once; and everything OpenSSH supports (certificates,
//! FIDO keys, GSSAPI, `Match` blocks, `ProxyJump`) works without us knowing
//! about it.
//!
//! [`OpensshHost::connect`] opens the shared connection (the "master") and
//! runs no remote command. Each command is then one `ssh` process, a client
//! of that master: it hands the master its stdin, stdout and stderr, and
//! exits with the remote status.
//!
//! OpenSSH's client does not pass on a remote signal: a killed command makes
//! `ssh` exit 255, as a broken connection does. So the remote line runs under
//! a short wrapper that reports the command's status on stderr after a
//! one-time marker, which we take off again: a killed command is a failure
//! (`$?` above 128 is read as a signal, as a shell reads it), and a missing
//! marker means the connection broke.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::Digest;

use super::known_hosts::HostKeyCheck;
use super::local::{self, RunningChild};
use super::target::Target;
use super::{Host, Input, Output, Running};
use crate::cmd::Cmd;
use crate::error::HostError;

/// The `ssh` program, found on PATH.
const SSH: &str = "ssh";

/// Longest control directory we use. ssh binds the socket at a temporary
/// name first (`SOCKET.` and 16 characters), and a unix socket path holds at
/// most 103 bytes on BSD and macOS (107 on Linux): 64 + 1 + 20 + 17 < 103.
const MAX_DIR_LEN: usize = 64;

/// Everything `ssh` is told on its command line. `None` leaves the value to
/// OpenSSH: its config files, then its own defaults.
#[derive(Clone)]
pub struct OpensshOptions {
    pub target: Target,
    /// `--ssh-user`; a user in the target wins.
    pub user: Option<String>,
    /// `--ssh-port`; a port in the target wins.
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    pub passphrase: Option<String>,
    pub known_hosts: Option<PathBuf>,
    pub host_key_check: Option<HostKeyCheck>,
    pub connect_timeout: Option<Duration>,
    /// `-F FILE`; `/dev/null` reads no config file at all.
    pub config: Option<PathBuf>,
    /// How long the shared connection outlives its last use (`ControlPersist`).
    pub persist: Duration,
    pub sudo: bool,
    /// Where the shared connections' sockets live; `None`: [`control_dir`].
    pub control_dir: Option<PathBuf>,
}

impl std::fmt::Debug for OpensshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpensshOptions")
            .field("target", &self.target)
            .field("user", &self.user)
            .field("port", &self.port)
            .field("identity", &self.identity)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "(set)"))
            .field("known_hosts", &self.known_hosts)
            .field("host_key_check", &self.host_key_check)
            .field("connect_timeout", &self.connect_timeout)
            .field("config", &self.config)
            .field("persist", &self.persist)
            .field("sudo", &self.sudo)
            .field("control_dir", &self.control_dir)
            .finish()
    }
}

impl OpensshOptions {
    /// Options for `target` that leave everything to OpenSSH.
    pub fn new(target: Target) -> Self {
        OpensshOptions {
            target,
            user: None,
            port: None,
            identity: None,
            passphrase: None,
            known_hosts: None,
            host_key_check: None,
            connect_timeout: None,
            config: None,
            persist: Duration::from_secs(60),
            sudo: false,
            control_dir: None,
        }
    }

    fn user(&self) -> Option<&str> {
        self.target.user.as_deref().or(self.user.as_deref())
    }

    fn port(&self) -> Option<u16> {
        self.target.port.or(self.port)
    }

    fn passphrase(&self) -> Option<&str> {
        self.passphrase.as_deref().filter(|p| !p.is_empty())
    }

    /// The host as we know it, for messages: what ssh_config adds is not shown.
    fn shown(&self) -> String {
        Target {
            user: self.user().map(str::to_string),
            host: self.target.host.clone(),
            port: self.port(),
        }
        .to_string()
    }

    /// The name of the shared connection: a hash of everything that picks
    /// the host and decides whether to trust it. A master opened with other
    /// settings (another key, `--host-key-check off`) is never reused, which
    /// a name from `%C` (user, host and port only) would allow.
    fn connection_name(&self) -> String {
        let mut hash = sha2::Sha256::new();
        let port = self.port().map(|p| p.to_string()).unwrap_or_default();
        let check = self.host_key_check.map(check_value).unwrap_or("");
        for part in [self.user().unwrap_or(""), &self.target.host, &port, check] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for path in [&self.identity, &self.known_hosts, &self.config] {
            if let Some(path) = path {
                hash.update(path.as_os_str().as_encoded_bytes());
            }
            hash.update([0]);
        }
        hash.update([u8::from(self.passphrase().is_some())]);
        let digest = hash.finalize();
        digest[..10].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn check_value(check: HostKeyCheck) -> &'static str {
    match check {
        HostKeyCheck::Strict => "yes",
        HostKeyCheck::AcceptNew => "accept-new",
        HostKeyCheck::Off => "no",
    }
}

/// A host reached through the system's `ssh` and its shared connection.
#[derive(Debug)]
pub struct OpensshHost {
    name: String,
    sudo: bool,
    /// ssh's options, before the destination.
    options: Vec<OsString>,
    /// The destination, after `--`.
    host: String,
    /// Set on every ssh we start: the askpass for an encrypted key.
    env: Vec<(&'static str, OsString)>,
    socket: PathBuf,
}

impl OpensshHost {
    /// Opens the shared connection, or finds it open, without running any
    /// remote command: what fails here (connect, host key, authentication)
    /// is exit 4.
    pub fn connect(options: &OpensshOptions) -> Result<OpensshHost, HostError> {
        let dir = match &options.control_dir {
            Some(dir) => {
                private_dir(dir).map_err(|why| HostError::ControlDir { why })?;
                dir.clone()
            }
            None => control_dir()?,
        };
        let host = OpensshHost::new(options, &dir)?;
        if options.host_key_check == Some(HostKeyCheck::AcceptNew) {
            // ssh adds the key to the file, but does not create its directory.
            if let Some(parent) = options.known_hosts.as_deref().and_then(Path::parent) {
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent);
            }
        }
        if options.host_key_check == Some(HostKeyCheck::Off) {
            crate::log::warn(&format!(
                "host key of {} is NOT checked (--host-key-check off)",
                host.name
            ));
        }
        // Processes of one pipeline may connect at the same moment: only one
        // of them may start the master, the others then find it running.
        let _lock = lock_file(&dir.join(format!("{}.lock", options.connection_name())))?;
        if host.master_running() {
            crate::log::debug(&format!("{}: sharing the open connection", host.name));
            return Ok(host);
        }
        // No master answers: a socket still there is left from one that was
        // killed, and would make the new master run without sharing.
        let _ = std::fs::remove_file(&host.socket);
        host.start_master(options)?;
        Ok(host)
    }

    fn new(options: &OpensshOptions, dir: &Path) -> Result<OpensshHost, HostError> {
        let socket = dir.join(options.connection_name());
        let mut args: Vec<OsString> = Vec::new();
        if let Some(config) = &options.config {
            args.push("-F".into());
            args.push(config.clone().into());
        }
        let mut opt = |value: String| {
            args.push("-o".into());
            args.push(value.into());
        };
        opt(format!("ControlPath={}", config_path(&socket)?));
        opt(format!(
            "ControlPersist={}",
            options.persist.as_secs_f64().ceil().max(1.0) as u64
        ));
        let mut env = Vec::new();
        match options.passphrase() {
            None => opt("BatchMode=yes".into()),
            Some(passphrase) => {
                // BatchMode never asks for a passphrase, not even the askpass
                // program; without it, ssh must not ask for anything else.
                opt("PasswordAuthentication=no".into());
                opt("KbdInteractiveAuthentication=no".into());
                let askpass = askpass(dir)?;
                env.push(("SSH_ASKPASS", askpass.into_os_string()));
                env.push(("SSH_ASKPASS_REQUIRE", "force".into()));
                env.push(("BG_SSH_PASSPHRASE", passphrase.into()));
            }
        }
        opt("ServerAliveInterval=15".into());
        match options.host_key_check {
            None => {}
            Some(HostKeyCheck::Off) => {
                // Off checks nothing and writes nothing, as with ssh2.
                opt("StrictHostKeyChecking=no".into());
                opt("UserKnownHostsFile=/dev/null".into());
                opt("GlobalKnownHostsFile=/dev/null".into());
            }
            Some(check) => opt(format!("StrictHostKeyChecking={}", check_value(check))),
        }
        if let Some(file) = &options.known_hosts {
            opt(format!("UserKnownHostsFile={}", config_path(file)?));
        }
        if let Some(timeout) = options.connect_timeout {
            opt(format!(
                "ConnectTimeout={}",
                timeout.as_secs_f64().ceil().max(1.0) as u64
            ));
        }
        if let Some(user) = options.user() {
            args.push("-l".into());
            args.push(user.into());
        }
        if let Some(port) = options.port() {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        if let Some(key) = &options.identity {
            args.push("-i".into());
            args.push(config_path(key)?.into());
        }
        Ok(OpensshHost {
            name: options.shown(),
            sudo: options.sudo,
            options: args,
            host: options.target.host.clone(),
            env,
            socket,
        })
    }

    /// `ssh OPTIONS EXTRA -- HOST [REMOTE]`.
    fn command(&self, extra: &[&str], remote: Option<&str>) -> Command {
        let mut command = Command::new(SSH);
        command
            .args(&self.options)
            .args(extra)
            .arg("--")
            .arg(&self.host);
        if let Some(remote) = remote {
            command.arg(remote);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    fn spawn_error(&self, source: std::io::Error) -> HostError {
        let package = crate::error::debian_package(SSH).unwrap_or("openssh-client");
        HostError::SshClient {
            target: self.name.clone(),
            what: format!("cannot run `{SSH}`: {source}"),
            hint: format!(
                "{}, or use --ssh-client ssh2 (built in)",
                crate::error::install_hint(package)
            ),
        }
    }

    /// `ssh -O check`: asks the master over its socket, no network involved.
    fn master_running(&self) -> bool {
        self.command(&["-O", "check"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `ssh -N` with `ControlMaster=yes` and `ControlPersist`: it connects,
    /// authenticates, puts the master in the background and exits 0; or
    /// exits 255 with its reason on stderr.
    fn start_master(&self, options: &OpensshOptions) -> Result<(), HostError> {
        let mut child = self
            .command(&["-N", "-o", "ControlMaster=yes"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        // Lines arrive through a channel: a ProxyJump's helper inherits
        // ssh's stderr and lives as long as the master, so we never wait for
        // the end of the stream once ssh itself has exited.
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let limit = options.connect_timeout.unwrap_or(Duration::from_secs(10)) + WATCHDOG_SLACK;
        let deadline = Instant::now() + limit;
        let mut said = Vec::new();
        let status = loop {
            while let Ok(line) = lines.try_recv() {
                // A socket appeared between our check and ssh's bind: ssh
                // would stay in the foreground for good, sharing nothing.
                let stuck = line.contains("disabling multiplexing");
                said.push(line);
                if stuck {
                    let _ = child.kill();
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => {
                    if let Ok(line) = lines.recv_timeout(Duration::from_millis(20)) {
                        said.push(line);
                    }
                }
                Err(_) => break None,
            }
        };
        if status.is_some_and(|s| !s.success()) {
            // It failed: its helpers are gone, the rest of its words come.
            let end = Instant::now() + Duration::from_secs(2);
            while let Ok(line) = lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                said.push(line);
            }
        } else {
            said.extend(lines.try_iter());
        }
        let text = said.join("\n");
        match status {
            Some(status) if status.success() && self.socket.exists() => {
                for line in said.iter().filter(|l| !l.trim().is_empty()) {
                    crate::log::info(&format!("ssh: {}", line.trim()));
                }
                crate::log::debug(&format!("{}: opened a shared connection", self.name));
                Ok(())
            }
            Some(status) if status.success() => Err(HostError::SshClient {
                target: self.name.clone(),
                what: "ssh connected but opened no shared connection".into(),
                hint: "check ControlMaster/ControlPath in your ssh_config, or use --ssh-client ssh2"
                    .into(),
            }),
            None if text.contains("disabling multiplexing") => Err(HostError::SshClient {
                target: self.name.clone(),
                what: last_line(&text).to_string(),
                hint: "another ssh uses the same socket; run again".into(),
            }),
            None => Err(HostError::SshClient {
                target: self.name.clone(),
                what: format!(
                    "no connection within {}",
                    humantime::format_duration(limit)
                ),
                hint: "check the address and port, and that sshd runs there; --connect-timeout sets how long to wait".into(),
            }),
            Some(_) => Err(connect_error(&self.name, &text, options)),
        }
    }

    /// Ends the shared connection at once (`ssh -O exit`), for callers that
    /// know no stage will follow.
    pub fn close_shared(&self) {
        let _ = self
            .command(&["-O", "exit"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The socket of the shared connection.
    pub fn control_socket(&self) -> &Path {
        &self.socket
    }

    /// An ssh for one remote command: a client of the master. Should the
    /// master be gone, it connects on its own (`ControlMaster=no`), and
    /// never starts a master that would hold our pipes open.
    fn remote(&self, line: &str, marker: &str) -> Command {
        self.command(
            &["-T", "-o", "ControlMaster=no", "-o", "LogLevel=ERROR"],
            Some(&wrap(line, marker)),
        )
    }
}

/// How long past the connect timeout the master may take to authenticate.
const WATCHDOG_SLACK: Duration = Duration::from_secs(20);

/// The remote line under a wrapper that reports its status on stderr after
/// `marker`. The command's stderr goes to ours through fd 3, while the
/// shell's own stderr is quiet for it: bash would otherwise add a
/// "Killed ..." line of its own for a command killed by a signal.
fn wrap(line: &str, marker: &str) -> String {
    format!(
        "{{ {line} 2>&3 3>&-; }} 3>&2 2>/dev/null; bg_rc=$?; printf '{marker}%s\\n' \"$bg_rc\" >&2; exit \"$bg_rc\""
    )
}

/// A marker no remote command can guess.
fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("bg-exit-{:016x}:", hasher.finish())
}

/// Takes the wrapper's status line out of `stderr`; `None` when it is not
/// there, i.e. the wrapper never finished.
fn take_status(stderr: &mut Vec<u8>, marker: &str) -> Option<i32> {
    let marker = marker.as_bytes();
    let start = stderr.windows(marker.len()).rposition(|w| w == marker)?;
    let rest = &stderr[start + marker.len()..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    let status = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    stderr.drain(start..start + marker.len() + end + 1);
    Some(status)
}

/// A shell's `$?` as code or signal: 128+N (sh, bash, dash) or 256+N (ksh93)
/// is signal N, for the 64 signals Linux has; 255 and other statuses above
/// 192 are exit statuses.
fn status_output(status: i32) -> (Option<i32>, Option<String>) {
    match status {
        s @ 257..=320 => (None, Some(local::signal_name(s - 256))),
        s @ 129..=192 => (None, Some(local::signal_name(s - 128))),
        s => (Some(s), None),
    }
}

impl Host for OpensshHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn sudo(&self) -> bool {
        self.sudo
    }

    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError> {
        let line = cmd.to_shell_line(self.sudo)?;
        crate::log::debug(&format!("{}: {line}", self.name));
        let marker = marker();
        let stdin = match input {
            Input::None => Stdio::null(),
            _ => Stdio::piped(),
        };
        let mut child = self
            .remote(&line, &marker)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let timeout = cmd.get_timeout();
        let (status, out, mut err) = std::thread::scope(|scope| {
            let out = scope.spawn(move || local::read_all(&mut stdout));
            let err = scope.spawn(move || local::read_all(&mut stderr));
            if let Some(stdin) = stdin {
                local::feed(stdin, input);
            }
            // Killing our ssh on a timeout makes the master close the pipes
            // it was handed, so the readers end.
            let status = local::wait(&mut child, timeout);
            (
                status,
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            )
        });
        if status.is_none() {
            return Err(HostError::Timeout {
                host: self.name.clone(),
                command: cmd.to_string(),
                after: timeout.unwrap_or_default(),
            });
        }
        match take_status(&mut err, &marker) {
            Some(status) => {
                let (code, signal) = status_output(status);
                Ok(Output {
                    code,
                    signal,
                    stdout: out,
                    stderr: err,
                })
            }
            None => {
                let text = String::from_utf8_lossy(&err);
                Err(HostError::Transport {
                    target: self.name.clone(),
                    during: "running a command",
                    source: std::io::Error::other(match last_line(&text) {
                        "" => "ssh ended without the command's status".to_string(),
                        line => line.to_string(),
                    }),
                })
            }
        }
    }

    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError> {
        let line = cmd.to_shell_line(self.sudo)?;
        crate::log::debug(&format!("{}: {line}", self.name));
        // Its stderr is not ours to show (as with the other hosts).
        let child = self
            .remote(&line, &marker())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        Ok(Box::new(RunningChild::new(child, &self.name)))
    }
}

/// What ssh said when it could not connect, read into one of our errors:
/// its own line, and what to do about it.
fn connect_error(target: &str, stderr: &str, options: &OpensshOptions) -> HostError {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@'))
        .collect();
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
    let known_hosts = options
        .known_hosts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".to_string());
    let (what, hint) = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        let what = find("has changed and you have requested").unwrap_or("the host key has CHANGED");
        let offending = find("Offending ")
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        (
            format!("{what}; this may be an attack"),
            format!(
                "if the host was really reinstalled, remove its old line from {known_hosts}{offending} and verify the new key; do not use --host-key-check off"
            ),
        )
    } else if stderr.contains("Host key verification failed") {
        let what = find("host key is known for")
            .or_else(|| find("Host key verification failed"))
            .unwrap_or("host key verification failed");
        let keyscan = match options.port() {
            Some(port) if port != 22 => format!("ssh-keyscan -p {port} {}", options.target.host),
            _ => format!("ssh-keyscan {}", options.target.host),
        };
        (
            what.to_string(),
            format!(
                "verify the key, then run `{keyscan} >> {known_hosts}`, or pass --host-key-check accept-new"
            ),
        )
    } else if let Some(line) = find("Permission denied") {
        let hint = if options.passphrase().is_some() {
            "check BG_SSH_PASSPHRASE (Jenkins: passphraseVariable), and that the key is authorized on the host (~/.ssh/authorized_keys)"
        } else {
            "authorize the key on the host (~/.ssh/authorized_keys), pass --identity or BG_SSH_KEY (with BG_SSH_PASSPHRASE if it is encrypted), or load it into ssh-agent"
        };
        (line.to_string(), hint.to_string())
    } else if let Some(line) = find("Could not resolve hostname")
        .or_else(|| find("connect to host"))
        .or_else(|| find("timed out"))
        .or_else(|| find("Connection refused"))
        .or_else(|| find("Connection closed"))
    {
        (
            line.to_string(),
            "check the address and port, and that sshd runs there; --connect-timeout sets how long to wait".to_string(),
        )
    } else {
        (
            match last_line(stderr) {
                "" => "ssh exited without saying why".to_string(),
                line => line.to_string(),
            },
            "run `ssh -v` with the same settings to see more, or use --ssh-client ssh2".to_string(),
        )
    };
    HostError::SshClient {
        target: target.to_string(),
        // Our error line goes on with "; hint".
        what: what.trim_end_matches('.').to_string(),
        hint,
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// A path as an ssh option value: ssh expands `%` tokens in it (so `%`
/// becomes `%%`) and splits it at blanks unless it is quoted.
fn config_path(path: &Path) -> Result<String, HostError> {
    let text = path.to_str().ok_or_else(|| HostError::ControlDir {
        why: format!("{} is not UTF-8", path.display()),
    })?;
    if text.contains('"') || text.chars().any(char::is_control) {
        return Err(HostError::Nul {
            value: format!("{text} (a quote or control character in a path for ssh)"),
        });
    }
    let text = text.replace('%', "%%");
    Ok(if text.contains(char::is_whitespace) {
        format!("\"{text}\"")
    } else {
        text
    })
}

/// The directory for the shared connections' sockets, private to this
/// user: `$XDG_RUNTIME_DIR/bg-ssh` (a tmpfs of the user's own, emptied at
/// logout), else `~/.ssh/bg-mux`, else `/tmp/bg-ssh-UID`. Each is created
/// with mode 0700, and used only if it is a directory we own that nobody
/// else may enter, and short enough for a socket path.
pub fn control_dir() -> Result<PathBuf, HostError> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let candidates: Vec<PathBuf> = [
        var("XDG_RUNTIME_DIR").map(|d| d.join("bg-ssh")),
        var("HOME").map(|h| h.join(".ssh").join("bg-mux")),
        Some(PathBuf::from(format!("/tmp/bg-ssh-{uid}"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut refused = Vec::new();
    for dir in candidates {
        match private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => refused.push(why),
        }
    }
    Err(HostError::ControlDir {
        why: refused.join("; "),
    })
}

/// Creates `dir` (mode 0700) if needed and checks that it is ours alone.
fn private_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if dir.as_os_str().len() > MAX_DIR_LEN {
        return Err(format!(
            "{shown} is too long for a socket path (over {MAX_DIR_LEN} bytes)"
        ));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{shown}: {e}"))?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory (a symlink?)"));
    }
    if meta.uid() != uid {
        return Err(format!("{shown} belongs to uid {}, not to us", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{shown}: {e}"))?;
    }
    Ok(())
}

/// The askpass program: prints `BG_SSH_PASSPHRASE` when ssh asks for a
/// key's passphrase, and refuses every other question (an unknown host
/// key, a password), as BatchMode would. The passphrase itself only ever
/// travels in the environment of ssh and this script, never in a file or
/// an argument.
const ASKPASS: &str = "#!/bin/sh\n# bg-deploy: answers ssh's passphrase prompt from BG_SSH_PASSPHRASE, nothing else\ncase $1 in\n  *assphrase*) printf '%s\\n' \"$BG_SSH_PASSPHRASE\" ;;\n  *) exit 1 ;;\nesac\n";

/// Writes the askpass script into the private directory, once.
fn askpass(dir: &Path) -> Result<PathBuf, HostError> {
    let path = dir.join("askpass");
    if std::fs::read(&path).is_ok_and(|text| text == ASKPASS.as_bytes()) {
        return Ok(path);
    }
    let error = |e: std::io::Error| HostError::ControlDir {
        why: format!("cannot write {}: {e}", path.display()),
    };
    // Through a temporary name: another process may be running the old one.
    let tmp = dir.join(format!(".askpass.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, ASKPASS.as_bytes()))
        .map_err(error)?;
    std::fs::rename(&tmp, &path).map_err(error)?;
    Ok(path)
}

/// An exclusive flock on `path`, released when the file closes.
fn lock_file(path: &Path) -> Result<std::fs::File, HostError> {
    use std::os::fd::AsRawFd;
    let error = |e: std::io::Error| HostError::ControlDir {
        why: format!("cannot lock {}: {e}", path.display()),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    loop {
        // SAFETY: flock on a descriptor we own, for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(error(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: &str) -> OpensshOptions {
        OpensshOptions::new(Target::parse(target).unwrap())
    }

    fn args(options: &OpensshOptions) -> Vec<String> {
        let host = OpensshHost::new(options, Path::new("/run/user/1000/bg-ssh")).unwrap();
        host.options
            .iter()
            .map(|a| a.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn only_what_was_given_reaches_ssh() {
        let a = args(&options("app1"));
        assert!(
            !a.iter()
                .any(|a| a == "-l" || a == "-p" || a == "-i" || a == "-F")
        );
        assert!(!a.iter().any(|a| a.starts_with("StrictHostKeyChecking")));
        assert!(!a.iter().any(|a| a.starts_with("ConnectTimeout")));
        assert!(a.contains(&"BatchMode=yes".to_string()));
        assert!(a.contains(&"ControlPersist=60".to_string()));

        let mut o = options("deploy@[::1]:2222");
        o.user = Some("jenkins".into());
        o.port = Some(22);
        o.host_key_check = Some(HostKeyCheck::AcceptNew);
        o.connect_timeout = Some(Duration::from_millis(2500));
        o.config = Some("/dev/null".into());
        o.known_hosts = Some("/home/j/50% kh".into());
        let a = args(&o);
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(after("-l"), "deploy", "the user in --host wins");
        assert_eq!(after("-p"), "2222", "the port in --host wins");
        assert_eq!(after("-F"), "/dev/null");
        assert!(a.contains(&"StrictHostKeyChecking=accept-new".to_string()));
        assert!(a.contains(&"ConnectTimeout=3".to_string()));
        assert!(a.contains(&"UserKnownHostsFile=\"/home/j/50%% kh\"".to_string()));
    }

    #[test]
    fn a_passphrase_replaces_batch_mode_with_an_askpass() {
        let mut o = options("app1");
        o.passphrase = Some("s3cret $(x)".into());
        let dir = tempfile::tempdir().unwrap();
        let host = OpensshHost::new(&o, dir.path()).unwrap();
        let a: Vec<_> = host.options.iter().map(|a| a.to_str().unwrap()).collect();
        assert!(!a.contains(&"BatchMode=yes"));
        assert!(a.contains(&"PasswordAuthentication=no"));
        assert!(!a.iter().any(|a| a.contains("s3cret")), "never in argv");
        let script = std::fs::read_to_string(dir.path().join("askpass")).unwrap();
        assert!(!script.contains("s3cret"), "never in a file");
    }

    #[test]
    fn settings_that_decide_trust_name_another_connection() {
        let base = options("deploy@10.0.0.5");
        let mut off = base.clone();
        off.host_key_check = Some(HostKeyCheck::Off);
        let mut key = base.clone();
        key.identity = Some("/k".into());
        let names = [&base, &off, &key].map(|o| o.connection_name());
        assert_eq!(names[0].len(), 20);
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2]);
        assert_eq!(names[0], base.clone().connection_name());
    }

    #[test]
    fn the_status_line_is_taken_out_of_stderr() {
        let m = "bg-exit-0123456789abcdef:";
        let mut err = format!("partial{m}137\n").into_bytes();
        assert_eq!(take_status(&mut err, m), Some(137));
        assert_eq!(err, b"partial");
        let mut err = format!("a\n{m}0\nlate\n").into_bytes();
        assert_eq!(take_status(&mut err, m), Some(0));
        assert_eq!(err, b"a\nlate\n");
        let mut err = b"Connection closed by remote host\n".to_vec();
        assert_eq!(take_status(&mut err, m), None);
        assert_eq!(status_output(137), (None, Some("KILL".to_string())));
        assert_eq!(status_output(265), (None, Some("KILL".to_string())));
        assert_eq!(status_output(7), (Some(7), None));
        assert_eq!(status_output(255), (Some(255), None));
    }

    #[test]
    fn ssh_words_become_errors_with_a_way_out() {
        let o = {
            let mut o = options("deploy@10.0.0.5:2222");
            o.known_hosts = Some("/kh".into());
            o
        };
        let unknown = connect_error(
            "t",
            "No ED25519 host key is known for [10.0.0.5]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            &o,
        );
        assert!(unknown.to_string().contains("No ED25519 host key is known"));
        let hint = crate::Failure::hint(&unknown).unwrap();
        assert!(
            hint.contains("ssh-keyscan -p 2222 10.0.0.5 >> /kh"),
            "{hint}"
        );
        let denied = connect_error("t", "deploy@10.0.0.5: Permission denied (publickey).\n", &o);
        assert!(denied.to_string().contains("Permission denied (publickey)"));
        assert_eq!(crate::Failure::code(&denied), crate::Code::Unreachable);
    }
}
