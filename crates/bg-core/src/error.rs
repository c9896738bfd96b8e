//! Errors carry their own exit code and a hint of what to do next.
//!
//! Every error type in the workspace implements [`Failure`]; only
//! [`crate::main`] turns one into a line on stderr and an exit code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Code;
use crate::host::Output;

/// An error that knows its exit code and what the user should do about it.
pub trait Failure: fmt::Display + fmt::Debug {
    /// The contract's exit code for this error.
    fn code(&self) -> Code;

    /// What to do next; printed on the same line as the message.
    fn hint(&self) -> Option<String> {
        None
    }

    /// Lines printed before the error line, such as a failed command's stderr.
    fn details(&self) -> Option<String> {
        None
    }

    /// A result to print on stdout all the same, before the error line: what
    /// a check saw when it failed.
    fn report(&self) -> Option<&crate::Report> {
        None
    }
}

impl<E: Failure + 'static> From<E> for Box<dyn Failure> {
    fn from(error: E) -> Self {
        Box::new(error)
    }
}

/// What a binary's `run` returns.
pub type Result<T, E = Box<dyn Failure>> = std::result::Result<T, E>;

/// Failures of acting on a host, local or remote.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{value:?} is not a valid host: {why}")]
    BadTarget { value: String, why: &'static str },

    #[error("could not connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },

    #[error("SSH handshake with {target} failed: {message}")]
    Handshake { target: String, message: String },

    #[error("host key for {target} ({fingerprint}) is not in {known_hosts}")]
    HostKeyUnknown {
        target: String,
        fingerprint: String,
        known_hosts: PathBuf,
        keyscan: String,
    },

    #[error(
        "host key for {target} has CHANGED: the server sent {fingerprint}, {known_hosts} line {line} holds another; this may be an attack"
    )]
    HostKeyChanged {
        target: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },

    #[error("host key for {target} ({fingerprint}) is marked @revoked in {known_hosts}")]
    HostKeyRevoked {
        target: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("cannot use known_hosts file {path}: {source}")]
    KnownHosts {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("SSH key {path} does not exist")]
    KeyMissing { path: PathBuf },

    #[error("authentication as {user} on {target} failed; tried {}", tried.join("; "))]
    Auth {
        target: String,
        user: String,
        tried: Vec<String>,
    },

    #[error("SSH session with {target} failed while {during}: {source}")]
    Ssh {
        target: String,
        during: &'static str,
        source: ssh2::Error,
    },

    /// The system's `ssh` (`--ssh-client openssh`) could not reach or trust
    /// the host; `what` is its own words, `hint` our reading of them.
    #[error("ssh to {target} failed: {what}")]
    SshClient {
        target: String,
        what: String,
        hint: String,
    },

    /// The private directory for the openssh client's shared connections.
    #[error("no private directory for SSH connection sockets: {why}")]
    ControlDir { why: String },

    #[error("SSH connection to {target} broke while {during}: {source}")]
    Transport {
        target: String,
        during: &'static str,
        source: std::io::Error,
    },

    #[error("cannot run {program} on {host}: {source}")]
    Spawn {
        host: String,
        program: String,
        source: std::io::Error,
    },

    #[error("cannot read {path}: {source}")]
    LocalFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("a value contains a NUL byte and cannot be passed to a shell: {value:?}")]
    Nul { value: String },

    #[error("`{command}` on {host} {}", output.status_text())]
    Command {
        host: String,
        command: String,
        output: Box<Output>,
    },

    #[error("`{command}` on {host} did not finish within {}", humantime::format_duration(*after))]
    Timeout {
        host: String,
        command: String,
        after: Duration,
    },

    #[error("{lock} on {host} is held by {holder}")]
    Busy {
        host: String,
        lock: String,
        holder: String,
        waited: Duration,
    },

    #[error("permission denied on {host}: {what}")]
    Permission { host: String, what: String },

    #[error("{path} on {host} is a directory, not a file")]
    NotAFile { host: String, path: String },

    #[error("ssh_config file {path} does not exist")]
    SshConfigMissing { path: PathBuf },

    #[error("cannot read ssh_config file {path}: {source}")]
    SshConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}:{line}: {problem}")]
    SshConfigLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },

    #[error("ProxyJump for {host} chains more than {max} jump hosts")]
    JumpLoop { host: String, max: usize },

    /// Reaching a jump host failed; `source` says how.
    #[error("jump host {hop}: {source}")]
    Jump { hop: String, source: Box<HostError> },

    #[error("jump host {via} could not open a connection to {to}: {message}")]
    Tunnel {
        via: String,
        to: String,
        message: String,
    },

    #[error("ProxyCommand for {target} failed: {problem}")]
    ProxyCommand {
        target: String,
        command: String,
        problem: String,
        stderr: String,
    },
}

impl Failure for HostError {
    fn code(&self) -> Code {
        match self {
            HostError::BadTarget { .. }
            | HostError::KeyMissing { .. }
            | HostError::Nul { .. }
            | HostError::SshConfigMissing { .. }
            | HostError::SshConfigRead { .. }
            | HostError::SshConfigLine { .. }
            | HostError::JumpLoop { .. } => Code::Usage,
            HostError::Connect { .. }
            | HostError::Handshake { .. }
            | HostError::HostKeyUnknown { .. }
            | HostError::HostKeyChanged { .. }
            | HostError::HostKeyRevoked { .. }
            | HostError::KnownHosts { .. }
            | HostError::Auth { .. }
            | HostError::Ssh { .. }
            | HostError::Transport { .. }
            | HostError::Tunnel { .. }
            | HostError::SshClient { .. }
            | HostError::ControlDir { .. }
            | HostError::ProxyCommand { .. } => Code::Unreachable,
            // A jump host that cannot be reached or trusted fails like the host would.
            HostError::Jump { source, .. } => source.code(),
            HostError::Spawn { .. }
            | HostError::LocalFile { .. }
            | HostError::Command { .. }
            | HostError::Timeout { .. }
            | HostError::Permission { .. }
            | HostError::NotAFile { .. } => Code::Failed,
            HostError::Busy { .. } => Code::Busy,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            HostError::BadTarget { .. } => "write it as [USER@]HOST[:PORT], e.g. deploy@10.0.0.5:22 or [::1]:2222".into(),
            HostError::Connect { .. } => "check the address and port, and that sshd runs there; --connect-timeout sets how long to wait".into(),
            HostError::Handshake { .. } => "check that the port speaks SSH and that the host is not overloaded".into(),
            HostError::HostKeyUnknown { keyscan, known_hosts, .. } => {
                let path = known_hosts.display().to_string();
                // Quoted as a shell would need it: the line is meant to be pasted.
                let path = crate::quote::quote(&path).unwrap_or(path);
                format!(
                    "verify the key, then run `{keyscan} >> {path}`, or pass --host-key-check accept-new"
                )
            }
            HostError::HostKeyChanged { known_hosts, line, .. } => format!(
                "if the host was really reinstalled, remove line {line} of {} and verify the new key; do not use --host-key-check off",
                known_hosts.display()
            ),
            HostError::HostKeyRevoked { .. } => "do not connect; ask whoever revoked the key".into(),
            HostError::KnownHosts { .. } => "fix the file's permissions or pass --known-hosts FILE".into(),
            HostError::KeyMissing { .. } => "check --identity / BG_SSH_KEY (Jenkins: keyFileVariable of sshUserPrivateKey)".into(),
            HostError::Auth { .. } => "authorize the key on the host (~/.ssh/authorized_keys), pass --identity or BG_SSH_KEY, or load it into ssh-agent".into(),
            HostError::SshClient { hint, .. } => hint.clone(),
            HostError::ControlDir { .. } => "set XDG_RUNTIME_DIR to a directory of your own (mode 0700), or use --ssh-client ssh2".into(),
            HostError::Ssh { .. } | HostError::Transport { .. } => "run again; if it persists, check the host's sshd log".into(),
            HostError::Spawn { program, source, .. } => match debian_package(program) {
                Some(package) if source.kind() == std::io::ErrorKind::NotFound => {
                    format!("{}, or put {program} on PATH", install_hint(package))
                }
                _ => "check that the program is installed and on PATH".into(),
            },
            HostError::LocalFile { .. } => "check the path and its permissions".into(),
            HostError::Nul { .. } => "remove the NUL byte from the value".into(),
            HostError::Command { .. } => "see the command's output above".into(),
            HostError::Timeout { .. } => "check what the host is doing, then run again".into(),
            HostError::Busy { waited, .. } => format!(
                "another run is changing this now (waited {}); retry later or raise --lock-timeout",
                humantime::format_duration(*waited)
            ),
            HostError::Permission { .. } => "run with --sudo (sudo -n must be allowed for this user) or as the owner".into(),
            HostError::NotAFile { .. } => "check the path: a file is expected there".into(),
            HostError::SshConfigMissing { .. } => "check --ssh-config / BG_SSH_CONFIG, or pass --no-ssh-config to read none".into(),
            HostError::SshConfigRead { .. } => "fix the file's permissions, or pass --no-ssh-config to read none".into(),
            HostError::SshConfigLine { .. } => "fix that line (see `man ssh_config`), or pass --no-ssh-config to read no ssh_config".into(),
            HostError::JumpLoop { .. } => "a jump host probably matches its own ProxyJump: exclude it from the Host line, e.g. `Host *.internal !bastion.internal`".into(),
            HostError::Jump { source, .. } => return source.hint(),
            HostError::Tunnel { via, .. } => format!(
                "check that {via} reaches that address and port (a HostName is resolved there) and allows forwarding (AllowTcpForwarding in its sshd_config)"
            ),
            HostError::ProxyCommand { .. } => "run the ProxyCommand by hand (with %h and %p filled in) to see why, or fix it in your ssh_config".into(),
        })
    }

    fn details(&self) -> Option<String> {
        match self {
            HostError::Command { output, .. } => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let stderr = stderr.trim_end();
                (!stderr.is_empty()).then(|| stderr.to_string())
            }
            HostError::ProxyCommand { stderr, .. } => {
                let stderr = stderr.trim_end();
                (!stderr.is_empty()).then(|| stderr.to_string())
            }
            HostError::Jump { source, .. } => source.details(),
            _ => None,
        }
    }
}

/// The Debian (and Ubuntu) package of a program the binaries start on the
/// machine they run on, for the hint when it is not installed.
pub fn debian_package(program: &str) -> Option<&'static str> {
    match program {
        "ssh" => Some("openssh-client"),
        "sudo" => Some("sudo"),
        _ => None,
    }
}

/// How to install `package`, for a hint.
pub fn install_hint(package: &str) -> String {
    format!(
        "install the {package} package (as root on Debian and Ubuntu: `apt-get install {package}`)"
    )
}

/// Bad usage or bad input detected by a binary after clap parsed its flags.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
    pub hint: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl Failure for UsageError {
    fn code(&self) -> Code {
        Code::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}
