//! Flags shared by several binaries, defined and documented once and
//! flattened into each binary's `Cli`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::error::HostError;
use crate::host::ssh_config::{self, Given};
use crate::host::{
    Host, HostKeyCheck, LocalHost, MuxHost, OpensshHost, OpensshOptions, Proxy, SshConfig, SshHost,
    SshOptions, Target,
};
use crate::http::{TlsError, Trust};
use crate::output::Format;

/// `--format`, `-v`, `-q`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines
    #[arg(long, env = "BG_FORMAT", value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,

    /// Say more on stderr (-vv for even more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Say less on stderr (-qq: errors only)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl OutputArgs {
    pub fn level(&self) -> i8 {
        (self.verbose.min(10) as i8) - (self.quiet.min(10) as i8)
    }
}

/// Which SSH client reaches a `--host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SshClient {
    /// libssh2, built in: needs nothing on the agent (the static build's choice)
    Ssh2,
    /// The system's `ssh`, with a shared connection (ControlMaster)
    Openssh,
}

/// Where to act: this machine, or `--host` over SSH.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Host")]
pub struct HostArgs {
    /// Act on this host over SSH instead of the local machine
    #[arg(long, env = "BG_HOST", value_name = "[USER@]HOST[:PORT]")]
    pub host: Option<String>,

    /// SSH login name [default: the user in --host, else $USER]
    #[arg(long, env = "BG_SSH_USER", value_name = "USER")]
    pub ssh_user: Option<String>,

    /// SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]
    #[arg(long, env = "BG_SSH_PORT", value_parser = parse_port, value_name = "PORT")]
    pub ssh_port: Option<u16>,

    /// Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]
    #[arg(long, env = "BG_SSH_KEY", value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Host keys to trust [default: ~/.ssh/known_hosts]
    #[arg(long, env = "BG_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]
    #[arg(long, env = "BG_HOST_KEY_CHECK", value_enum, value_name = "MODE")]
    pub host_key_check: Option<HostKeyCheck>,

    /// Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]
    #[arg(long, env = "BG_CONNECT_TIMEOUT", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,

    /// OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]
    #[arg(long, env = "BG_SSH_CONFIG", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// Read no ssh_config file, not even --ssh-config's: only the flags and BG_* variables count
    #[arg(long, env = "BG_NO_SSH_CONFIG", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_ssh_config: bool,

    /// How to reach the host: the built-in client (ssh2), or the system's `ssh` (openssh), which
    /// shares one connection across the stages of a pipeline and knows all of OpenSSH's options
    #[arg(long, env = "BG_SSH_CLIENT", value_enum, default_value_t = SshClient::Ssh2, value_name = "CLIENT")]
    pub ssh_client: SshClient,

    /// openssh client: how long its shared connection stays open after the last use (ControlPersist)
    #[arg(long, env = "BG_SSH_PERSIST", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub ssh_persist: Duration,

    /// Run privileged commands as `sudo -n ...` (BG_SUDO=1)
    #[arg(long, env = "BG_SUDO", value_parser = clap::builder::BoolishValueParser::new())]
    pub sudo: bool,
}

impl HostArgs {
    /// Opens the host: the local machine without `--host`, else an SSH session.
    pub fn connect(&self) -> Result<Box<dyn Host>, HostError> {
        if self.ssh_client == SshClient::Openssh {
            return match self.openssh_options()? {
                None => Ok(Box::new(LocalHost::new(self.sudo))),
                Some(options) => {
                    crate::log::debug(&format!("connecting to {} with OpenSSH", options.target));
                    let ssh = OpensshHost::connect(&options)?;
                    Ok(Box::new(MuxHost::new(Box::new(ssh))))
                }
            };
        }
        match self.ssh_options()? {
            None => Ok(Box::new(LocalHost::new(self.sudo))),
            Some(options) => {
                crate::log::debug(&format!("connecting to {}", route_text(&options)));
                let ssh = SshHost::connect(&options)?;
                Ok(Box::new(MuxHost::new(Box::new(ssh))))
            }
        }
    }

    /// The SSH options, reading `BG_SSH_PASSPHRASE`, `SSH_AUTH_SOCK` and
    /// `HOME` from the environment, and ssh_config unless `--no-ssh-config`;
    /// `None` without `--host`.
    ///
    /// Precedence: the user and port written in `--host`, then the flags and
    /// `BG_*` variables, then ssh_config, then the contract's defaults.
    pub fn ssh_options(&self) -> Result<Option<SshOptions>, HostError> {
        let Some(given) = self.given()? else {
            return Ok(None);
        };
        let config = self.ssh_config_file(given.home.as_deref())?;
        ssh_config::resolve(config.as_ref(), &given).map(Some)
    }

    /// What the flags and the environment say about reaching the host, for
    /// both clients; `None` without `--host`.
    fn given(&self) -> Result<Option<Given>, HostError> {
        let Some(host) = self.host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let env_path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let target = Target::parse(host)?;
        let identity = self.identity.clone().filter(|p| !p.as_os_str().is_empty());
        // A key file that is not there is bad input, whether or not the host answers.
        if let Some(key) = identity.as_ref().filter(|k| !k.is_file()) {
            return Err(HostError::KeyMissing { path: key.clone() });
        }
        Ok(Some(Given {
            target,
            user: self.ssh_user.clone().filter(|u| !u.is_empty()),
            port: self.ssh_port,
            identity,
            passphrase: std::env::var("BG_SSH_PASSPHRASE").ok(),
            known_hosts: self
                .known_hosts
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            host_key_check: self.host_key_check,
            connect_timeout: self.connect_timeout,
            sudo: self.sudo,
            agent_socket: env_path("SSH_AUTH_SOCK"),
            home: env_path("HOME"),
            local_user: ["USER", "LOGNAME"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
                .or_else(crate::user_name)
                .unwrap_or_else(|| "root".to_string()),
        }))
    }

    /// `--ssh-config FILE` (which must exist), else `~/.ssh/config` if there
    /// is one; none with `--no-ssh-config`.
    fn ssh_config_file(&self, home: Option<&Path>) -> Result<Option<SshConfig>, HostError> {
        if self.no_ssh_config {
            return Ok(None);
        }
        match self
            .ssh_config
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) if !path.exists() => Err(HostError::SshConfigMissing { path: path.clone() }),
            Some(path) => SshConfig::load(path, home).map(Some),
            None => {
                let Some(path) = home.map(|h| h.join(".ssh").join("config")) else {
                    return Ok(None);
                };
                if !path.exists() {
                    return Ok(None);
                }
                crate::log::debug(&format!("reading {}", path.display()));
                SshConfig::load(&path, home).map(Some)
            }
        }
    }
}

/// `app (deploy@10.0.0.5:22) via bastion (ops@192.0.2.1:22)`, for `-v`.
fn route_text(options: &SshOptions) -> String {
    match &options.proxy {
        Proxy::Direct => options.label(),
        Proxy::Command(command) => format!("{} via ProxyCommand `{command}`", options.label()),
        Proxy::Jump(hop) => format!("{} via {}", options.label(), route_text(hop)),
    }
}

impl HostArgs {
    /// The options for the system's `ssh`: only what was given, the rest is
    /// left to OpenSSH and its config; `None` without `--host`.
    pub fn openssh_options(&self) -> Result<Option<OpensshOptions>, HostError> {
        let Some(given) = self.given()? else {
            return Ok(None);
        };
        let mut options = OpensshOptions::new(given.target);
        options.user = given.user;
        options.port = given.port;
        options.identity = given.identity;
        options.passphrase = given.passphrase;
        options.known_hosts = given.known_hosts;
        options.host_key_check = given.host_key_check;
        options.connect_timeout = given.connect_timeout;
        options.config = if self.no_ssh_config {
            Some(PathBuf::from("/dev/null"))
        } else {
            self.ssh_config
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
        };
        options.persist = self.ssh_persist;
        options.sudo = given.sudo;
        Ok(Some(options))
    }
}

/// `--cacert`, `--insecure`: how a binary's https probes trust servers.
/// Flattened into every binary that probes a URL, beside that URL's flag.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// For https URLs: trust only the CA certificates in this PEM file, instead of the built-in
    /// roots (as curl's --cacert does) [default: Mozilla's roots, built into the binary]
    #[arg(long, env = "BG_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// For https URLs: do not verify the server's certificate at all (a warning says so on stderr)
    #[arg(long, env = "BG_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
}

impl TlsArgs {
    /// What the probes trust. A `--cacert` file is read and checked here,
    /// even beside `--insecure` (which wins): a bad path is exit 2 at once,
    /// not a surprise on the day `--insecure` goes. `--insecure` warns.
    pub fn trust(&self) -> Result<Trust, TlsError> {
        let cacert = match self.cacert.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => Some(Trust::cacert(path)?),
            None => None,
        };
        if self.insecure {
            crate::log::warn(
                "--insecure: https certificates are not verified; anyone between here and the server can answer for it",
            );
            return Ok(Trust::Insecure);
        }
        Ok(cacert.unwrap_or_default())
    }
}

/// `--lock-timeout`, for binaries that hold a lock while they change things.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long to wait for another run holding the same lock before exiting 5
    #[arg(long, env = "BG_LOCK_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub lock_timeout: Duration,

    /// Directory of the lock files on the host
    #[arg(long, env = "BG_LOCK_DIR", default_value = "/tmp", value_parser = parse_host_path, value_name = "DIR")]
    pub lock_dir: String,
}

impl LockArgs {
    /// `DIR/bg-KIND-NAME.lock`, with NAME reduced to characters safe in a file name.
    pub fn path(&self, kind: &str, name: &str) -> String {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{}/bg-{kind}-{safe}.lock",
            self.lock_dir.trim_end_matches('/')
        )
    }
}

/// The longest duration any flag takes: a deploy step that waits longer is
/// a mistake, and deadlines computed from more overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `500ms`, `10s`, `2m`, `1h 30m`; a bare number is seconds; at most 24h.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let duration = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds.min(u64::MAX / 2)),
        Err(_) => humantime::parse_duration(value)
            .map_err(|e| format!("{e} (write it like 500ms, 10s or 2m)"))?,
    };
    if duration > MAX_DURATION {
        return Err(format!(
            "{value:?} is longer than 24h, the most any wait may be"
        ));
    }
    Ok(duration)
}

/// A duration that must be more than zero (a request timeout, a poll interval).
pub fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err(format!("{value:?} must be more than zero")),
        d => Ok(d),
    }
}

/// The longest path on a host (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// The longest name (a site, a profile): it becomes part of file names,
/// which Linux allows 255 bytes, with room for what we add.
pub const MAX_NAME: usize = 200;

/// A path on a host: at most [`MAX_PATH`] bytes. (Any byte is fine: values
/// reach the host as arguments of fixed scripts, never pasted into them.)
pub fn parse_host_path(value: &str) -> Result<String, String> {
    if value.len() > MAX_PATH {
        return Err(format!(
            "it is {} bytes long; a path on the host is at most {MAX_PATH}",
            value.len()
        ));
    }
    Ok(value.to_string())
}

/// A name that becomes part of file names on the host: at most [`MAX_NAME`] bytes.
pub fn parse_name(value: &str) -> Result<String, String> {
    if value.len() > MAX_NAME {
        return Err(format!(
            "it is {} bytes long; a name is at most {MAX_NAME}",
            value.len()
        ));
    }
    Ok(value.to_string())
}

/// A TCP port, 1 to 65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{value:?} is not a port (1 to 65535)")),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("24h").unwrap(), MAX_DURATION);
        for huge in ["18446744073709551615", "24h 1s", "100000d"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert!(parse_positive_duration("0ms").is_err());
        assert_eq!(
            parse_positive_duration("1ms").unwrap(),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8000").unwrap(), 8000);
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lock_paths_are_plain_file_names() {
        let args = LockArgs {
            lock_timeout: Duration::from_secs(1),
            lock_dir: "/run/lock/".into(),
        };
        assert_eq!(args.path("switch", "dev"), "/run/lock/bg-switch-dev.lock");
        assert_eq!(
            args.path("switch", "a/../b $(x)"),
            "/run/lock/bg-switch-a_.._b___x_.lock"
        );
    }

    #[test]
    fn tls_args_check_a_cacert_even_beside_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let args = |cacert: Option<&Path>, insecure| TlsArgs {
            cacert: cacert.map(Path::to_path_buf),
            insecure,
        };
        assert!(matches!(args(None, false).trust(), Ok(Trust::BuiltIn)));
        assert!(matches!(
            args(Some(Path::new("")), false).trust(),
            Ok(Trust::BuiltIn)
        ));
        assert!(matches!(args(None, true).trust(), Ok(Trust::Insecure)));
        for insecure in [false, true] {
            assert!(matches!(
                args(Some(&missing), insecure).trust(),
                Err(TlsError::Unreadable { .. })
            ));
        }
    }
}
