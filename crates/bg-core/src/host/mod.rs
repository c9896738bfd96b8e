//! "The host we act on": the local machine or a remote one over SSH.
//!
//! Every binary is written once against [`Host`]. The implementations
//! differ only in how a command runs (a child process, an exec channel of
//! libssh2, or a client of OpenSSH's shared connection);
//! files, checksums, uploads and locks are built here from commands, so the
//! local and the SSH path are the same code and are tested the same way.

mod key;
mod known_hosts;
mod local;
mod mux;
mod openssh;
mod prefetch;
mod proxy_command;
mod ssh;
pub mod ssh_config;
mod target;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

pub use known_hosts::{HostKeyCheck, KnownHosts};
pub use local::LocalHost;
pub use mux::MuxHost;
pub use openssh::{OpensshHost, OpensshOptions, control_dir};
pub use prefetch::Prefetched;
pub use ssh::{Proxy, SshHost, SshOptions};
pub use ssh_config::SshConfig;
pub use target::Target;

use crate::cmd::Cmd;
use crate::error::HostError;

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status, when the command exited on its own.
    pub code: Option<i32>,
    /// The signal that killed it (`KILL`, `TERM`...), without the `SIG` prefix.
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exited by itself with status 0. A command killed by a signal is a failure.
    pub fn success(&self) -> bool {
        self.signal.is_none() && self.code == Some(0)
    }

    /// "exited with status 3" or "was killed by SIGKILL".
    pub fn status_text(&self) -> String {
        match (&self.signal, self.code) {
            (Some(signal), _) => format!("was killed by SIG{signal}"),
            (None, Some(code)) => format!("exited with status {code}"),
            (None, None) => "ended without an exit status".to_string(),
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What a command reads on its stdin.
pub enum Input<'a> {
    None,
    Bytes(&'a [u8]),
    /// `len` bytes from `reader`; `progress` is called with the bytes sent so far.
    Stream {
        reader: &'a mut dyn Read,
        len: u64,
        progress: &'a mut dyn FnMut(u64),
    },
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::None => f.write_str("Input::None"),
            Input::Bytes(bytes) => write!(f, "Input::Bytes({} bytes)", bytes.len()),
            Input::Stream { len, .. } => write!(f, "Input::Stream({len} bytes)"),
        }
    }
}

/// A held lock; dropping it releases it. A killed holder releases it too,
/// because the lock lives in a process whose stdin is our pipe or channel.
pub struct Lock {
    _release: Box<dyn std::any::Any + Send>,
    pub path: String,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lock({})", self.path)
    }
}

/// What a command left running has printed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Its next line, without the newline.
    Line(String),
    /// No new line within the wait.
    NotYet,
    /// It ended, and printed no line we have not seen.
    Ended,
}

/// A command left running, its stdin held open until this drops: our
/// scripts that wait (a lock, a watch) end then, and so they do when we are
/// killed, because the pipe or channel closes with us.
pub trait Running: Send {
    /// The next line the command prints, waiting up to `wait` for one
    /// (`Duration::ZERO`: only look).
    fn line(&mut self, wait: Duration) -> Result<Line, HostError>;

    /// Writes `bytes` to the command's stdin, all of them: a script that
    /// holds one channel open for a whole run reads its next step there.
    fn send(&mut self, bytes: &[u8]) -> Result<(), HostError>;

    /// Closes its stdin and returns at once, without waiting for it to end:
    /// for the last command of a run, whose end nobody reads (it ends by
    /// itself on the end of its input). Over a 50 ms link the wait for the
    /// channel's close is a round trip per run. Otherwise as dropping it.
    fn finish(self: Box<Self>) {}
}

/// A machine we run commands on.
pub trait Host {
    /// `local` or `user@host:port`, for messages.
    fn name(&self) -> &str;

    /// Whether privileged commands run through `sudo -n`.
    fn sudo(&self) -> bool;

    /// Runs a command to completion, feeding it `input`, collecting stdout
    /// and stderr together so that neither can fill up and stall the other.
    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError>;

    /// Starts `cmd` and returns at once, leaving it running (see [`Running`]).
    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError>;

    /// Runs a command and returns its output whatever its status.
    fn run(&self, cmd: &Cmd) -> Result<Output, HostError> {
        self.exec(cmd, Input::None)
    }

    /// Runs commands one after another and returns their outputs whatever
    /// their status; over one channel ([`MuxHost`]) they travel together,
    /// one round trip for all.
    fn run_all(&self, cmds: &[Cmd]) -> Result<Vec<Output>, HostError> {
        cmds.iter().map(|cmd| self.run(cmd)).collect()
    }

    /// Runs `first` to its end, then starts `then` and leaves it running,
    /// whatever became of `first` (look at its output before trusting what
    /// `then` says): over one channel ([`MuxHost`]) both travel together.
    fn run_then_start(
        &self,
        first: &Cmd,
        then: &Cmd,
    ) -> Result<(Output, Box<dyn Running>), HostError> {
        let output = self.run(first)?;
        Ok((output, self.start(then)?))
    }

    /// Runs a command that must succeed.
    fn run_ok(&self, cmd: &Cmd) -> Result<Output, HostError> {
        let output = self.run(cmd)?;
        self.check(cmd, output)
    }

    /// Turns a failed command into the right error: a permission problem
    /// gets its own (it has its own fix), anything else shows the stderr.
    fn check(&self, cmd: &Cmd, output: Output) -> Result<Output, HostError> {
        if output.success() {
            return Ok(output);
        }
        let stderr = output.stderr_text();
        if is_permission_problem(&stderr) {
            return Err(HostError::Permission {
                host: self.name().to_string(),
                what: first_line(&stderr).to_string(),
            });
        }
        Err(HostError::Command {
            host: self.name().to_string(),
            command: cmd.to_string(),
            output: Box::new(output),
        })
    }

    /// The file's bytes, or `None` when nothing is at that path.
    fn read_file(&self, path: &str, privileged: bool) -> Result<Option<Vec<u8>>, HostError> {
        let cmd = Cmd::script(READ_SCRIPT, &[path]).privileged(privileged);
        let output = self.run(&cmd)?;
        if output.code == Some(NOT_FOUND) && output.signal.is_none() {
            return Ok(None);
        }
        if output.code == Some(NOT_A_FILE) && output.signal.is_none() {
            return Err(HostError::NotAFile {
                host: self.name().to_string(),
                path: path.to_string(),
            });
        }
        Ok(Some(self.check(&cmd, output)?.stdout))
    }

    /// Replaces the file with `contents` through a temporary file in the same
    /// directory and a rename: readers see the old file or the new one, never half.
    fn write_file_atomic(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
        privileged: bool,
    ) -> Result<(), HostError> {
        let mode = format!("{mode:o}");
        let cmd = Cmd::script(WRITE_SCRIPT, &[path, &mode]).privileged(privileged);
        let output = self.exec(&cmd, Input::Bytes(contents))?;
        self.check(&cmd, output).map(drop)
    }

    /// Appends `line` (a newline is added) to the file, creating its directory.
    fn append_line(&self, path: &str, line: &str, privileged: bool) -> Result<(), HostError> {
        let cmd = Cmd::script(APPEND_SCRIPT, &[path, line]).privileged(privileged);
        self.run_ok(&cmd).map(drop)
    }

    /// Streams a local file into `remote_path` (created or truncated).
    /// `progress` sees the bytes sent so far.
    fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), HostError> {
        let cmd = Cmd::script(RECEIVE_SCRIPT, &[remote_path]);
        let output = self.exec_with_file(&cmd, local, progress)?;
        self.check(&cmd, output).map(drop)
    }

    /// Runs `cmd` with a local file streamed to its stdin (`progress` sees
    /// the bytes sent so far) and returns its output whatever its status:
    /// for receivers that do more than store the bytes.
    fn exec_with_file(
        &self,
        cmd: &Cmd,
        local: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Output, HostError> {
        let local_error = |source| HostError::LocalFile {
            path: local.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(local).map_err(local_error)?;
        let len = file.metadata().map_err(local_error)?.len();
        self.exec(
            cmd,
            Input::Stream {
                reader: &mut file,
                len,
                progress,
            },
        )
    }

    /// The file's sha256 as lowercase hex, or `None` when it does not exist.
    fn sha256(&self, path: &str) -> Result<Option<String>, HostError> {
        let script = format!("# checksum a file\n{SHA256_FUNCTION}{SHA256_SCRIPT}");
        let cmd = Cmd::script(&script, &[path]);
        let output = self.run(&cmd)?;
        if output.code == Some(NOT_FOUND) && output.signal.is_none() {
            return Ok(None);
        }
        let output = self.check(&cmd, output)?;
        let text = output.stdout_text();
        let hex = text.split_whitespace().next().unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HostError::Command {
                host: self.name().to_string(),
                command: cmd.to_string(),
                output: Box::new(output),
            });
        }
        Ok(Some(hex.to_ascii_lowercase()))
    }

    /// Takes an exclusive lock on `path` (flock semantics), waiting up to
    /// `timeout` for another holder; `holder` describes us to whoever waits.
    fn lock(&self, path: &str, timeout: Duration, holder: &str) -> Result<Lock, HostError> {
        lock_with(self, path, timeout, holder)
    }
}

/// [`Host::lock`] through a command left running, its stdin held open.
pub(crate) fn lock_with<H: Host + ?Sized>(
    host: &H,
    path: &str,
    timeout: Duration,
    holder: &str,
) -> Result<Lock, HostError> {
    let seconds = format!("{:.3}", timeout.as_secs_f64());
    let cmd = Cmd::script(LOCK_SCRIPT, &[path, &seconds, holder]);
    // The host waits for the lock itself; we allow it some extra time to answer.
    let deadline = Instant::now() + timeout + Duration::from_secs(30);
    let mut running = host.start(&cmd)?;
    let mut other = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match running.line(left)? {
            Line::Line(line) if line.starts_with("LOCKED") => {
                return Ok(Lock {
                    _release: Box::new(running),
                    path: cmd.to_string(),
                });
            }
            Line::Line(line) if line.starts_with("BUSY ") => {
                drop(running);
                return Err(busy(host, path, &line["BUSY ".len()..], timeout));
            }
            // Our script's complaint, or a chatty login shell's lines.
            Line::Line(line) => other.push(line),
            Line::NotYet | Line::Ended => {
                drop(running);
                return Err(HostError::Command {
                    host: host.name().to_string(),
                    command: cmd.to_string(),
                    output: Box::new(Output {
                        stderr: other.join("\n").into_bytes(),
                        ..Output::default()
                    }),
                });
            }
        }
    }
}

/// The error for a lock that another run held all along.
pub(crate) fn busy<H: Host + ?Sized>(
    host: &H,
    path: &str,
    holder: &str,
    waited: Duration,
) -> HostError {
    let holder = holder.trim();
    HostError::Busy {
        host: host.name().to_string(),
        lock: path.to_string(),
        holder: if holder.is_empty() {
            "another run".to_string()
        } else {
            holder.to_string()
        },
        waited,
    }
}

/// Exit status our scripts use for "no such file".
const NOT_FOUND: i32 = 100;

/// Exit status of [`READ_SCRIPT`] for a directory where a file should be.
const NOT_A_FILE: i32 = 101;

const READ_SCRIPT: &str = r#"# read a file
if [ -d "$1" ]; then printf '%s is a directory, not a file\n' "$1" >&2; exit 101; fi
if [ -e "$1" ]; then exec cat -- "$1"; fi
if [ -L "$1" ]; then printf '%s is a dangling symlink\n' "$1" >&2; exit 1; fi
exit 100
"#;

/// The temporary file is a dot file beside the target: a managed upstream
/// file may live in a directory nginx includes with `*`, which matches no
/// dot file, so a reload that races the write never reads it.
pub const WRITE_SCRIPT: &str = r#"# write a file atomically
case $1 in
  */*) tmp="${1%/*}/.${1##*/}.bg-tmp.$$" ;;
  *) tmp=".$1.bg-tmp.$$" ;;
esac
if cat > "$tmp" && chmod "$2" "$tmp" && mv -f -- "$tmp" "$1"; then exit 0; fi
rm -f -- "$tmp"
exit 1
"#;

const APPEND_SCRIPT: &str = r#"# append a line
dir=$(dirname -- "$1") && mkdir -p -- "$dir" && printf '%s\n' "$2" >> "$1"
"#;

const RECEIVE_SCRIPT: &str = r#"# receive a file
exec cat > "$1"
"#;

/// A shell function, `sha256_of FILE`, that prints the file's sha256 as hex.
/// OpenSSL comes first: it uses the CPU's SHA extensions and was four times
/// faster than coreutils' sha256sum on a 200 MiB jar. The file is read on
/// stdin: given the name as an argument, GNU sha256sum escapes its output (a
/// leading backslash) when the name holds a newline or a backslash.
/// Scripts that need a checksum paste this (our own fixed text) before theirs.
pub const SHA256_FUNCTION: &str = r#"sha256_of() {
  if command -v openssl >/dev/null 2>&1 && h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null) && [ -n "$h" ]; then
    printf '%s\n' "${h%% *}"; return 0
  fi
  if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < "$1") || return 1
  elif command -v shasum >/dev/null 2>&1; then h=$(shasum -a 256 < "$1") || return 1
  else echo "none of openssl, sha256sum, shasum is installed" >&2; return 1
  fi
  printf '%s\n' "${h%% *}"
}
"#;

const SHA256_SCRIPT: &str = r#"[ -e "$1" ] || exit 100
sha256_of "$1"
"#;

/// Holds an flock on `$1` for as long as our stdin stays open. When we are
/// killed, our pipe or SSH channel closes, `cat` sees end of file, the
/// process exits, and the kernel drops the lock: nothing is left behind.
pub const LOCK_SCRIPT: &str = r#"# take a lock
dir=$(dirname -- "$1")
[ -d "$dir" ] || mkdir -p -- "$dir" || exit 1
if ! command -v flock >/dev/null 2>&1; then
  echo "flock(1) is not installed on this host (it comes with util-linux)"; exit 1
fi
exec 9>>"$1" || exit 1
if ! flock -x -w "$2" 9; then
  printf 'BUSY '; head -n 1 -- "$1"; echo; exit 75
fi
printf '%s\n' "$3" > "$1"
echo LOCKED
exec cat > /dev/null
"#;

/// Describes this run to whoever waits for its lock.
pub fn holder_description(tool: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".to_string());
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "{tool} (pid {} on {host}, actor {}, since {since})",
        std::process::id(),
        crate::actor()
    )
}

fn is_permission_problem(stderr: &str) -> bool {
    [
        "Permission denied",
        "Operation not permitted",
        "sudo: a password is required",
        "sudo: a terminal is required",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
