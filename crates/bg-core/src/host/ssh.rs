//! A remote host over SSH (libssh2 through the `ssh2` crate).
//!
//! After the handshake the session is non-blocking and every channel is
//! driven by one loop that writes stdin and drains stdout and stderr in turn,
//! waiting on the socket only when nothing moved: a command that fills both
//! streams cannot stall on the shared window.
//!
//! The session's bytes travel over a TCP connection, or, for a host behind a
//! bastion, over one end of a socket pair: a direct-tcpip channel of the jump
//! host's own session (ProxyJump), or a command's stdin and stdout
//! (ProxyCommand), on the other end. libssh2 needs a file descriptor, and a
//! socket pair gives it one while we move the bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ErrorCode, HostKeyType, MethodType, Session};

use super::known_hosts::{self, HostKeyCheck, KnownHosts, Verdict};
use super::local::CHUNK;
use super::proxy_command::ProxyChild;
use super::target::{Target, known_hosts_name};
use super::{Host, Input, Line, Output, Running};
use crate::cmd::Cmd;
use crate::error::HostError;

const EAGAIN: i32 = -37;
const TIMEOUT: i32 = -9;
const FILE: i32 = -16;
const AUTH_FAILED: i32 = -18;
const UNVERIFIED: i32 = -19;

/// Everything needed to reach and trust a host.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub target: Target,
    /// `--ssh-user`, else ssh_config's User; a user in the target wins.
    pub user: Option<String>,
    /// `--ssh-port`, else ssh_config's Port, else 22; a port in the target wins.
    pub port: u16,
    pub identity: Option<PathBuf>,
    pub passphrase: Option<String>,
    /// `None`: `~/.ssh/known_hosts`, then `/etc/ssh/ssh_known_hosts` to read.
    pub known_hosts: Option<PathBuf>,
    pub host_key_check: HostKeyCheck,
    pub connect_timeout: Duration,
    pub sudo: bool,
    /// The ssh-agent socket (`SSH_AUTH_SOCK`); `None`: no agent.
    pub agent_socket: Option<PathBuf>,
    /// Where `~/.ssh` is.
    pub home: Option<PathBuf>,
    /// Key files tried after the agent (ssh_config's IdentityFile); empty:
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity_files: Vec<PathBuf>,
    /// How the connection reaches the host.
    pub proxy: Proxy,
    /// The name the user wrote, when ssh_config's HostName replaced it.
    pub alias: Option<String>,
}

/// How the connection reaches the host.
#[derive(Debug, Clone, Default)]
pub enum Proxy {
    /// A TCP connection of our own.
    #[default]
    Direct,
    /// A direct-tcpip channel of a session with this jump host, which may
    /// itself be reached through another.
    Jump(Box<SshOptions>),
    /// The stdin and stdout of `sh -c COMMAND` (its `%` tokens expanded).
    Command(String),
}

impl SshOptions {
    /// Options for `target` with the contract's defaults and nothing from the environment.
    pub fn new(target: Target) -> Self {
        SshOptions {
            target,
            user: None,
            port: 22,
            identity: None,
            passphrase: None,
            known_hosts: None,
            host_key_check: HostKeyCheck::Strict,
            connect_timeout: Duration::from_secs(10),
            sudo: false,
            agent_socket: None,
            home: None,
            identity_files: Vec::new(),
            proxy: Proxy::Direct,
            alias: None,
        }
    }

    /// The host as the user knows it: `app (deploy@10.0.0.5:22)` for an
    /// ssh_config alias, else `deploy@10.0.0.5:22`.
    pub fn label(&self) -> String {
        let shown = self.shown();
        match &self.alias {
            Some(alias) => format!("{alias} ({shown})"),
            None => shown,
        }
    }

    fn shown(&self) -> String {
        Target {
            user: Some(self.user()),
            host: self.target.host.clone(),
            port: Some(self.port()),
        }
        .to_string()
    }

    fn port(&self) -> u16 {
        self.target.port.unwrap_or(self.port)
    }

    fn user(&self) -> String {
        self.target
            .user
            .clone()
            .or_else(|| self.user.clone())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "root".to_string())
    }

    fn ssh_dir(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".ssh"))
    }
}

struct Inner {
    session: Session,
    /// A copy of the socket libssh2 uses, kept to wait on it.
    socket: OwnedFd,
    name: String,
    /// What carries the bytes beyond the socket; declared last, so that it
    /// is dropped after the session has said goodbye and closed its socket.
    _route: Route,
}

/// A host reached over SSH.
pub struct SshHost {
    inner: Arc<Inner>,
    sudo: bool,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshHost({})", self.inner.name)
    }
}

impl SshHost {
    /// Connects, checks the host key and authenticates, all within the
    /// connect timeout (each jump host has its own).
    pub fn connect(options: &SshOptions) -> Result<SshHost, HostError> {
        Ok(SshHost {
            inner: Arc::new(Inner::connect(options)?),
            sudo: options.sudo,
        })
    }
}

impl Inner {
    fn connect(options: &SshOptions) -> Result<Inner, HostError> {
        let host = options.target.host.as_str();
        let port = options.port();
        let user = options.user();
        let shown = options.shown();

        let opened = open_route(options, &shown)?;
        // Declared before the session, so dropped after it on every early return.
        let mut route = opened.route;
        let deadline = opened.started + options.connect_timeout;
        let socket = opened.socket;
        let connect_error = |source| HostError::Connect {
            target: shown.clone(),
            source,
        };
        let poll_socket = socket.as_fd().try_clone_to_owned().map_err(connect_error)?;
        let ssh_error = |during| {
            let shown = shown.clone();
            move |source| HostError::Ssh {
                target: shown,
                during,
                source,
            }
        };
        let mut session = Session::new().map_err(ssh_error("starting a session"))?;
        session.set_tcp_stream(socket);
        session.set_timeout(remaining_ms(deadline));

        let name = known_hosts_name(host, port);
        let known = match options.host_key_check {
            HostKeyCheck::Off => None,
            _ => Some(load_known_hosts(options, &name)?),
        };
        if let Some(known) = &known {
            let prefs = host_key_prefs(&known.key_types());
            if !prefs.is_empty() {
                // Ask for a key type we know, as ssh does; otherwise the server
                // may offer another type and look like a stranger.
                let _ = session.method_pref(MethodType::HostKey, &prefs);
            }
        }

        prefer_fast_ciphers(&session);

        if let Err(e) = session.handshake() {
            let message = if e.code() == ErrorCode::Session(TIMEOUT) {
                format!(
                    "no SSH answer within {}",
                    humantime::format_duration(options.connect_timeout)
                )
            } else {
                e.message().to_string()
            };
            // Through a command, the command knows best what went wrong.
            if let Route::Command(child) = &mut route {
                drop(session);
                return Err(child.failure(&shown, &message));
            }
            return Err(HostError::Handshake {
                target: shown.clone(),
                message,
            });
        }

        let (key, key_type) = session
            .host_key()
            .map(|(k, t)| (k.to_vec(), t))
            .ok_or_else(|| HostError::Handshake {
                target: shown.clone(),
                message: "the server sent no host key".to_string(),
            })?;
        verify_host_key(options, known, &name, &shown, &key, key_type_name(key_type))?;

        session.set_timeout(remaining_ms(deadline).max(1000));
        authenticate(&session, options, &user, &shown)?;

        session.set_timeout(0);
        session.set_keepalive(true, 15);
        session.set_blocking(false);
        Ok(Inner {
            session,
            socket: poll_socket,
            name: shown,
            _route: route,
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.session.set_blocking(true);
        self.session.set_timeout(1000);
        let _ = self
            .session
            .disconnect(Some(ssh2::DisconnectCode::ByApplication), "done", None);
    }
}

/// The socket libssh2 talks on.
enum Socket {
    Tcp(TcpStream),
    Pair(UnixStream),
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Pair(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// What carries a session's bytes beyond its socket, kept alive as long as
/// the session and stopped after it.
enum Route {
    Direct,
    Jump(#[allow(dead_code, reason = "held for its Drop, which ends the pump")] Pump),
    Command(ProxyChild),
}

struct Opened {
    socket: Socket,
    route: Route,
    /// When the connection to this host itself began: its connect timeout
    /// counts from here, not from the start of the first hop.
    started: Instant,
}

fn open_route(options: &SshOptions, shown: &str) -> Result<Opened, HostError> {
    let host = options.target.host.as_str();
    let port = options.port();
    match &options.proxy {
        Proxy::Direct => {
            let started = Instant::now();
            let stream = connect_tcp(host, port, options.connect_timeout, shown)?;
            Ok(Opened {
                socket: Socket::Tcp(stream),
                route: Route::Direct,
                started,
            })
        }
        Proxy::Command(command) => {
            let started = Instant::now();
            let (ours, child) = ProxyChild::spawn(command, shown)?;
            Ok(Opened {
                socket: Socket::Pair(ours),
                route: Route::Command(child),
                started,
            })
        }
        Proxy::Jump(hop) => {
            let via = Inner::connect(hop).map_err(|e| match e {
                // Already names the hops involved.
                HostError::Jump { .. } | HostError::Tunnel { .. } => e,
                other => HostError::Jump {
                    hop: hop.alias.clone().unwrap_or_else(|| hop.shown()),
                    source: Box::new(other),
                },
            })?;
            let started = Instant::now();
            let deadline = started + options.connect_timeout;
            let tunnel_error = |message: String| HostError::Tunnel {
                via: hop.label(),
                to: match &options.alias {
                    Some(alias) => format!("{alias} ({host}:{port})"),
                    None => format!("{host}:{port}"),
                },
                message,
            };
            let channel = loop {
                match via.session.channel_direct_tcpip(host, port, None) {
                    Ok(channel) => break channel,
                    Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {
                        if Instant::now() >= deadline {
                            return Err(tunnel_error(format!(
                                "no answer within {}",
                                humantime::format_duration(options.connect_timeout)
                            )));
                        }
                        via.wait(Some(deadline));
                    }
                    Err(e) => return Err(tunnel_error(e.message().to_string())),
                }
            };
            let (ours, theirs) = UnixStream::pair().map_err(|source| HostError::Connect {
                target: shown.to_string(),
                source,
            })?;
            let pump = Pump::start(via, channel, theirs).map_err(|source| HostError::Connect {
                target: shown.to_string(),
                source,
            })?;
            Ok(Opened {
                socket: Socket::Pair(ours),
                route: Route::Jump(pump),
                started,
            })
        }
    }
}

fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    shown: &str,
) -> Result<TcpStream, HostError> {
    let connect_error = |source| HostError::Connect {
        target: shown.to_string(),
        source,
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(connect_error)?
        .collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the name resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_error(last))
}

fn remaining_ms(deadline: Instant) -> u32 {
    let left = deadline.saturating_duration_since(Instant::now());
    u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1)
}

fn load_known_hosts(options: &SshOptions, name: &str) -> Result<KnownHosts, HostError> {
    match &options.known_hosts {
        Some(path) => KnownHosts::load(path, name),
        None => {
            let user_file = options
                .ssh_dir()
                .map(|d| d.join("known_hosts"))
                .unwrap_or_else(|| PathBuf::from(".ssh/known_hosts"));
            let mut known = KnownHosts::load(&user_file, name)?;
            // The system-wide file is read, never written, as ssh does.
            if let Ok(global) = KnownHosts::load(Path::new("/etc/ssh/ssh_known_hosts"), name) {
                known.keys.extend(global.keys);
            }
            Ok(known)
        }
    }
}

fn verify_host_key(
    options: &SshOptions,
    known: Option<KnownHosts>,
    name: &str,
    shown: &str,
    key: &[u8],
    key_type: &str,
) -> Result<(), HostError> {
    let fingerprint = known_hosts::fingerprint(key);
    let Some(known) = known else {
        crate::log::warn(&format!(
            "host key of {shown} ({fingerprint}) is NOT checked (--host-key-check off)"
        ));
        return Ok(());
    };
    match known.verdict(key_type, key) {
        Verdict::Match => Ok(()),
        Verdict::Revoked => Err(HostError::HostKeyRevoked {
            target: shown.to_string(),
            fingerprint,
            known_hosts: known.path,
        }),
        Verdict::Changed { line } => Err(HostError::HostKeyChanged {
            target: shown.to_string(),
            fingerprint,
            known_hosts: known.path,
            line,
        }),
        Verdict::Unknown if options.host_key_check == HostKeyCheck::AcceptNew => {
            known_hosts::append(&known.path, name, key_type, key)?;
            crate::log::info(&format!(
                "added the host key of {shown} ({fingerprint}) to {}",
                known.path.display()
            ));
            Ok(())
        }
        Verdict::Unknown => {
            let port = options.port();
            let keyscan = if port == 22 {
                format!("ssh-keyscan {}", options.target.host)
            } else {
                format!("ssh-keyscan -p {port} {}", options.target.host)
            };
            Err(HostError::HostKeyUnknown {
                target: shown.to_string(),
                fingerprint,
                known_hosts: known.path,
                keyscan,
            })
        }
    }
}

/// Ciphers, fastest first. libssh2 prefers chacha20-poly1305, which it
/// implements in portable C; AES-GCM and AES-CTR go through OpenSSL and use
/// AES-NI, and our libssh2 encrypts an AES-GCM packet in one call
/// (vendor/libssh2-sys/PATCHED.md). chacha20-poly1305 stays as the last
/// choice for servers that offer nothing else.
const FAST_CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "aes192-ctr",
    "chacha20-poly1305@openssh.com",
];

fn prefer_fast_ciphers(session: &Session) {
    for method in [MethodType::CryptCs, MethodType::CryptSc] {
        let supported = session.supported_algs(method).unwrap_or_default();
        let prefs: Vec<&str> = FAST_CIPHERS
            .iter()
            .copied()
            .filter(|c| supported.contains(c))
            .collect();
        if !prefs.is_empty() {
            // Only an order: any cipher libssh2 knows is still negotiable.
            let mut all = prefs.clone();
            all.extend(supported.iter().copied().filter(|c| !prefs.contains(c)));
            let _ = session.method_pref(method, &all.join(","));
        }
    }
}

fn key_type_name(key_type: HostKeyType) -> &'static str {
    match key_type {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The host key algorithms to offer for the key types in known_hosts.
fn host_key_prefs(types: &[&str]) -> String {
    let mut prefs: Vec<&str> = Vec::new();
    for t in types {
        match *t {
            "ssh-rsa" => prefs.extend(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
            "ssh-ed25519"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521" => prefs.push(t),
            _ => {}
        }
    }
    prefs.join(",")
}

/// `--identity` / `BG_SSH_KEY`, then every ssh-agent identity, then the default key files.
fn authenticate(
    session: &Session,
    options: &SshOptions,
    user: &str,
    shown: &str,
) -> Result<(), HostError> {
    let mut tried = Vec::new();
    if let Some(key) = &options.identity {
        if !key.is_file() {
            return Err(HostError::KeyMissing { path: key.clone() });
        }
        if let Some(()) = try_key_file(
            session,
            user,
            key,
            options.passphrase.as_deref(),
            &mut tried,
            true,
        ) {
            return Ok(());
        }
    }
    match &options.agent_socket {
        None => tried.push("ssh-agent (SSH_AUTH_SOCK is not set)".to_string()),
        Some(socket) => match try_agent(session, user, socket) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(note) => tried.push(note),
        },
    }
    if options.agent_socket.is_some() && !tried.iter().any(|t| t.starts_with("ssh-agent")) {
        tried.push("ssh-agent (no identity accepted)".to_string());
    }
    // ssh_config's IdentityFile lines take the place of the default files.
    let files = if options.identity_files.is_empty() {
        options
            .ssh_dir()
            .map(|dir| {
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|name| dir.join(name))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        options.identity_files.clone()
    };
    for key in &files {
        if !key.is_file() {
            // As ssh: an IdentityFile that is not there is skipped.
            continue;
        }
        if try_key_file(session, user, key, None, &mut tried, false).is_some() {
            return Ok(());
        }
    }
    if tried.is_empty() {
        tried.push(if options.identity_files.is_empty() {
            "no key: none given, no agent, no ~/.ssh/id_* file".to_string()
        } else {
            "no key: none given, no agent, no IdentityFile from ssh_config exists".to_string()
        });
    }
    Err(HostError::Auth {
        target: shown.to_string(),
        user: user.to_string(),
        tried,
    })
}

fn try_key_file(
    session: &Session,
    user: &str,
    key: &Path,
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
    explicit: bool,
) -> Option<()> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    if passphrase.is_none() && super::key::is_encrypted(key) {
        tried.push(if explicit {
            format!(
                "{}: the key is encrypted and BG_SSH_PASSPHRASE is not set (Jenkins: passphraseVariable)",
                key.display()
            )
        } else {
            format!("{}: encrypted, skipped", key.display())
        });
        return None;
    }
    let text = match std::fs::read_to_string(key) {
        Ok(text) => text,
        Err(e) => {
            tried.push(format!("{}: {e}", key.display()));
            return None;
        }
    };
    // libssh2 cannot use an encrypted OpenSSH-format key (the format
    // ssh-keygen writes by default), so we decrypt it in memory ourselves.
    let attempt = match (super::key::is_encrypted_openssh(&text), passphrase) {
        (true, Some(passphrase)) => match super::key::decrypt_openssh(&text, passphrase) {
            Ok(plain) => session.userauth_pubkey_memory(user, None, &plain, None),
            Err(problem) => {
                tried.push(format!("{}: {problem}", key.display()));
                return None;
            }
        },
        _ => session.userauth_pubkey_file(user, None, key, passphrase),
    };
    match attempt {
        Ok(()) if session.authenticated() => Some(()),
        Ok(()) => {
            tried.push(format!("{}: not accepted", key.display()));
            None
        }
        Err(e) => {
            // With a passphrase, a key the server knows but we cannot sign
            // with is almost always a wrong passphrase: say so.
            let why = match (e.code(), passphrase) {
                (ErrorCode::Session(AUTH_FAILED), None) => "not accepted by the server".to_string(),
                (ErrorCode::Session(AUTH_FAILED | UNVERIFIED | FILE), Some(_)) => {
                    "not accepted: wrong BG_SSH_PASSPHRASE, or the key is not authorized"
                        .to_string()
                }
                (ErrorCode::Session(UNVERIFIED), None) => {
                    "the server could not verify its signature".to_string()
                }
                _ => e.message().to_string(),
            };
            tried.push(format!("{}: {why}", key.display()));
            None
        }
    }
}

/// Tries each agent identity in turn. `Err` carries a note for the error message.
fn try_agent(session: &Session, user: &str, socket: &Path) -> Result<bool, String> {
    let mut agent = session.agent().map_err(|e| format!("ssh-agent: {e}"))?;
    agent
        .set_identity_path(socket)
        .map_err(|e| format!("ssh-agent: {e}"))?;
    agent
        .connect()
        .map_err(|e| format!("ssh-agent at {}: {}", socket.display(), e.message()))?;
    agent
        .list_identities()
        .map_err(|e| format!("ssh-agent: {}", e.message()))?;
    let identities = agent
        .identities()
        .map_err(|e| format!("ssh-agent: {}", e.message()))?;
    let count = identities.len();
    for identity in identities {
        if agent.userauth(user, &identity).is_ok() && session.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Err(format!("ssh-agent ({count} identities, none accepted)"))
}

impl Inner {
    /// Waits until the socket can move in the direction libssh2 is blocked on.
    fn wait(&self, deadline: Option<Instant>) {
        let events = match self.session.block_directions() {
            BlockDirections::Outbound => libc::POLLOUT,
            BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
            BlockDirections::Inbound | BlockDirections::None => libc::POLLIN,
        };
        let mut slice = Duration::from_millis(200);
        if let Some(deadline) = deadline {
            slice = slice.min(deadline.saturating_duration_since(Instant::now()));
        }
        let mut fd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, slice.as_millis() as libc::c_int) };
        let _ = self.session.keepalive_send();
    }

    /// Retries a libssh2 call that says "would block".
    fn again<T>(
        &self,
        during: &'static str,
        deadline: Option<Instant>,
        mut call: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, HostError> {
        loop {
            match call() {
                Ok(value) => return Ok(value),
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(HostError::Ssh {
                            target: self.name.clone(),
                            during,
                            source: e,
                        });
                    }
                    self.wait(deadline);
                }
                Err(source) => {
                    return Err(HostError::Ssh {
                        target: self.name.clone(),
                        during,
                        source,
                    });
                }
            }
        }
    }

    fn open(&self, line: &str) -> Result<Channel, HostError> {
        let mut channel =
            self.again("opening a channel", None, || self.session.channel_session())?;
        self.again("starting a command", None, || channel.exec(line))?;
        Ok(channel)
    }
}

/// Reads what is there without blocking; `true` if anything came.
fn drain(
    stream: &mut impl Read,
    into: &mut Vec<u8>,
    buf: &mut [u8],
) -> Result<bool, std::io::Error> {
    let mut any = false;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(any),
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                any = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(any),
            Err(e) => return Err(e),
        }
    }
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn sudo(&self) -> bool {
        self.sudo
    }

    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError> {
        let inner = &*self.inner;
        let line = cmd.to_shell_line(self.sudo)?;
        crate::log::debug(&format!("{}: {line}", inner.name));
        let deadline = cmd.get_timeout().map(|t| Instant::now() + t);
        let mut channel = inner.open(&line)?;
        let transport = |source| HostError::Transport {
            target: inner.name.clone(),
            during: "running a command",
            source,
        };

        let mut feeder = Feeder::new(input);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut moved = feeder.step(&mut channel).map_err(transport)?;
            if feeder.done_writing() && !feeder.eof_sent {
                inner.again("closing stdin", deadline, || channel.send_eof())?;
                feeder.eof_sent = true;
            }
            moved |= drain(&mut channel, &mut stdout, &mut buf).map_err(transport)?;
            moved |= drain(&mut channel.stderr(), &mut stderr, &mut buf).map_err(transport)?;
            if channel.eof() {
                break;
            }
            if !moved {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = channel.close();
                    return Err(HostError::Timeout {
                        host: inner.name.clone(),
                        command: cmd.to_string(),
                        after: cmd.get_timeout().unwrap_or_default(),
                    });
                }
                inner.wait(deadline);
            }
        }
        inner.again("closing a channel", None, || channel.wait_close())?;
        let signal = channel
            .exit_signal()
            .ok()
            .and_then(|s| s.exit_signal)
            .map(|s| s.trim_start_matches("SIG").to_string());
        let code = match signal {
            Some(_) => None,
            None => channel.exit_status().ok(),
        };
        Ok(Output {
            code,
            signal,
            stdout,
            stderr,
        })
    }

    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError> {
        let line = cmd.to_shell_line(self.sudo)?;
        crate::log::debug(&format!("{}: {line}", self.inner.name));
        let channel = self.inner.open(&line)?;
        Ok(Box::new(RunningChannel {
            channel,
            inner: Arc::clone(&self.inner),
            stdout: Vec::new(),
            finished: false,
        }))
    }
}

/// A channel left running; sending EOF on it makes our scripts exit.
struct RunningChannel {
    channel: Channel,
    inner: Arc<Inner>,
    /// What came and is not yet a whole line.
    stdout: Vec<u8>,
    /// Let go by [`Running::finish`]: its close is not waited for.
    finished: bool,
}

impl Running for RunningChannel {
    fn line(&mut self, wait: Duration) -> Result<Line, HostError> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = self.stdout.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.stdout.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                return Ok(Line::Line(text));
            }
            let moved = drain(&mut self.channel, &mut self.stdout, &mut buf).map_err(|source| {
                HostError::Transport {
                    target: self.inner.name.clone(),
                    during: "reading a running command",
                    source,
                }
            })?;
            // Its stderr is not ours to show, but must not fill the window.
            let mut sink = Vec::new();
            let _ = drain(&mut self.channel.stderr(), &mut sink, &mut buf);
            if moved && self.stdout.contains(&b'\n') {
                continue;
            }
            if !moved && self.channel.eof() {
                if self.stdout.is_empty() {
                    return Ok(Line::Ended);
                }
                let rest = std::mem::take(&mut self.stdout);
                return Ok(Line::Line(String::from_utf8_lossy(&rest).into_owned()));
            }
            if Instant::now() >= deadline {
                return Ok(Line::NotYet);
            }
            if !moved {
                self.inner.wait(Some(deadline));
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        let mut offset = 0;
        let mut buf = [0u8; 4096];
        while offset < bytes.len() {
            match self.channel.write(&bytes[offset..]) {
                Ok(n) => offset += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Keep reading while we wait, so that a command that
                    // answers as it reads cannot stall us on the window.
                    let _ = drain(&mut self.channel, &mut self.stdout, &mut buf);
                    let mut sink = Vec::new();
                    let _ = drain(&mut self.channel.stderr(), &mut sink, &mut buf);
                    self.inner.wait(None);
                }
                Err(source) => {
                    return Err(HostError::Transport {
                        target: self.inner.name.clone(),
                        during: "writing to a running command",
                        source,
                    });
                }
            }
        }
        // No flush: libssh2's channel flush discards unread input. A write
        // that returned has gone out (libssh2 sends a whole packet or says
        // "would block").
        Ok(())
    }

    fn finish(mut self: Box<Self>) {
        self.finished = true;
    }
}

impl Drop for RunningChannel {
    fn drop(&mut self) {
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let channel = &mut self.channel;
        let _ = self
            .inner
            .again("ending a command", deadline, || channel.send_eof());
        if self.finished {
            return;
        }
        let _ = self
            .inner
            .again("ending a command", deadline, || channel.wait_close());
    }
}

/// Feeds a channel's stdin from an [`Input`] in large pieces.
struct Feeder<'a> {
    input: Input<'a>,
    pending: Vec<u8>,
    offset: usize,
    sent: u64,
    finished: bool,
    eof_sent: bool,
}

impl<'a> Feeder<'a> {
    fn new(input: Input<'a>) -> Self {
        Feeder {
            input,
            pending: Vec::new(),
            offset: 0,
            sent: 0,
            finished: false,
            eof_sent: false,
        }
    }

    fn done_writing(&self) -> bool {
        self.finished
    }

    /// Writes as much as the channel takes now; `true` if anything went out.
    fn step(&mut self, channel: &mut Channel) -> Result<bool, std::io::Error> {
        let mut moved = false;
        while !self.finished {
            if self.offset == self.pending.len() {
                self.refill()?;
                if self.finished {
                    break;
                }
            }
            match channel.write(&self.pending[self.offset..]) {
                Ok(n) => {
                    self.offset += n;
                    self.sent += n as u64;
                    moved = true;
                    if let Input::Stream { progress, .. } = &mut self.input {
                        progress(self.sent);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // The command exited without reading everything: its exit status tells.
                Err(_) => {
                    self.finished = true;
                }
            }
        }
        Ok(moved)
    }

    fn refill(&mut self) -> Result<(), std::io::Error> {
        self.offset = 0;
        self.pending.clear();
        match &mut self.input {
            Input::None => {}
            Input::Bytes(bytes) => {
                self.pending.extend_from_slice(bytes);
                self.input = Input::None;
            }
            Input::Stream { reader, len, .. } => {
                if self.sent < *len {
                    self.pending.resize(CHUNK, 0);
                    let n = reader.read(&mut self.pending)?;
                    self.pending.truncate(n);
                }
            }
        }
        self.finished = self.pending.is_empty();
        Ok(())
    }
}

/// Moves bytes between a jump host's direct-tcpip channel and our end of a
/// socket pair, on a thread of its own that alone uses the jump host's
/// session. It ends when the session on the other end closes its socket
/// (the host was dropped) or the channel ends (the far side closed), then
/// closes the channel and the jump host's session.
struct Pump {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pump {
    fn start(via: Inner, channel: Channel, end: UnixStream) -> std::io::Result<Pump> {
        end.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name(format!("bg-jump {}", via.name))
            .spawn(move || pump(via, channel, end))?;
        Ok(Pump {
            thread: Some(thread),
        })
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // Our session has closed its end by now (Inner drops its route
        // last), so the thread is on its way out.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes read from one side and not yet written to the other.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    offset: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.offset == self.bytes.len()
    }

    fn fill(&mut self, bytes: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.offset = 0;
    }

    /// Writes what the writer takes now; `Err` when it is broken.
    fn flush_into(&mut self, writer: &mut impl Write) -> std::io::Result<bool> {
        let mut moved = false;
        while !self.is_empty() {
            match writer.write(&self.bytes[self.offset..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
}

fn pump(via: Inner, mut channel: Channel, mut end: UnixStream) {
    let mut up = Pending::default(); // from our session, to the channel
    let mut down = Pending::default(); // from the channel, to our session
    let mut buf = vec![0u8; 64 * 1024];
    let mut ours_closed = false;
    let mut theirs_closed = false;
    // poll() reports a hang-up whatever we ask for; once seen, the fd is
    // left out of poll so that it cannot wake us again and again.
    let (mut ours_hung_up, mut theirs_hung_up) = (false, false);
    let mut flush_deadline: Option<Instant> = None;
    loop {
        let mut moved = false;
        if up.is_empty() && !ours_closed {
            match end.read(&mut buf) {
                Ok(0) => ours_closed = true,
                Ok(n) => {
                    up.fill(&buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => moved = true,
                Err(_) => ours_closed = true,
            }
        }
        match up.flush_into(&mut channel) {
            Ok(m) => moved |= m,
            Err(_) => break,
        }
        if ours_closed {
            // Our session is gone; pass on what it last said (its goodbye), briefly.
            let deadline =
                *flush_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
            if up.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        if down.is_empty() && !theirs_closed {
            match channel.read(&mut buf) {
                Ok(0) => theirs_closed = channel.eof(),
                Ok(n) => {
                    down.fill(&buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => theirs_closed = true,
            }
        }
        match down.flush_into(&mut end) {
            Ok(m) => moved |= m,
            Err(_) => break,
        }
        if theirs_closed && down.is_empty() {
            // The far side is gone: closing our end tells our session.
            break;
        }
        if moved {
            continue;
        }
        let mut ours_events = 0;
        if up.is_empty() && !ours_closed {
            ours_events |= libc::POLLIN;
        }
        if !down.is_empty() {
            ours_events |= libc::POLLOUT;
        }
        let mut theirs_events = 0;
        // Read the jump host's socket only when there is room for what
        // comes, or when a window adjustment may free a blocked write.
        if (down.is_empty() && !theirs_closed) || !up.is_empty() {
            theirs_events |= libc::POLLIN;
        }
        if matches!(
            via.session.block_directions(),
            BlockDirections::Outbound | BlockDirections::Both
        ) {
            theirs_events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd {
                fd: if ours_hung_up { -1 } else { end.as_raw_fd() },
                events: ours_events,
                revents: 0,
            },
            libc::pollfd {
                fd: if theirs_hung_up {
                    -1
                } else {
                    via.socket.as_raw_fd()
                },
                events: theirs_events,
                revents: 0,
            },
        ];
        // Wake up for the jump host's keepalive, at the latest.
        let next_keepalive = via.session.keepalive_send().unwrap_or(15).clamp(1, 15);
        let timeout_ms = (next_keepalive * 1000) as libc::c_int;
        // SAFETY: two valid pollfds, for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        // The reads above find the end of file or the error in turn.
        let hang_up = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
        ours_hung_up |= fds[0].revents & hang_up != 0;
        theirs_hung_up |= fds[1].revents & hang_up != 0;
    }
    let deadline = Some(Instant::now() + Duration::from_secs(2));
    let _ = via.again("closing a tunnel", deadline, || channel.close());
    drop(channel);
    drop(end);
    drop(via);
}
