//! The machine we run on: commands are child processes, no shell in between
//! unless the command itself is a script.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Host, Input, Line, Lock, Output, Running};
use crate::cmd::Cmd;
use crate::error::HostError;

/// The local machine.
#[derive(Debug, Clone, Default)]
pub struct LocalHost {
    sudo: bool,
}

impl LocalHost {
    pub fn new(sudo: bool) -> Self {
        LocalHost { sudo }
    }

    fn spawn(&self, cmd: &Cmd, stdin: Stdio) -> Result<Child, HostError> {
        let argv = cmd.argv(self.sudo);
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HostError::Spawn {
                host: self.name().to_string(),
                program: argv[0].clone(),
                source,
            })
    }
}

/// Large enough for few system calls on big uploads, small enough to keep memory flat.
pub(crate) const CHUNK: usize = 1024 * 1024;

impl Host for LocalHost {
    fn name(&self) -> &str {
        "local"
    }

    fn sudo(&self) -> bool {
        self.sudo
    }

    /// The lock is an `flock` held by this process on one of the fds 7 to 9,
    /// which the commands we run inherit, as over SSH (see `mux`): a switch
    /// on the host keeps the lock until it has finished, even when we are
    /// killed. The app's start closes those fds for the app.
    fn lock(&self, path: &str, timeout: Duration, holder: &str) -> Result<Lock, HostError> {
        match lock_here(path, timeout, holder) {
            Ok(Some(fd)) => Ok(Lock {
                _release: Box::new(HeldFd(fd)),
                path: path.to_string(),
            }),
            Ok(None) => {
                let first = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.lines().next().map(str::to_string))
                    .unwrap_or_default();
                Err(super::busy(self, path, &first, timeout))
            }
            // No free fd among 7 to 9, or no flock here: a lock process.
            Err(_) if std::fs::metadata(path).is_ok() => {
                super::lock_with(self, path, timeout, holder)
            }
            Err(source) => Err(HostError::Command {
                host: self.name().to_string(),
                command: format!("take the lock {path}"),
                output: Box::new(Output {
                    code: Some(1),
                    stderr: format!("cannot open {path}: {source}").into_bytes(),
                    ..Output::default()
                }),
            }),
        }
    }

    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError> {
        let stdin = match input {
            Input::None => Stdio::null(),
            _ => Stdio::piped(),
        };
        let mut child = self.spawn(cmd, stdin)?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let timeout = cmd.get_timeout();
        let (status, out, err) = std::thread::scope(|scope| {
            let out = scope.spawn(move || read_all(&mut stdout));
            let err = scope.spawn(move || read_all(&mut stderr));
            if let Some(stdin) = stdin {
                feed(stdin, input);
            }
            // Wait before joining the readers: on a timeout the kill closes the pipes.
            let status = wait(&mut child, timeout);
            (
                status,
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            )
        });
        let status = status.ok_or_else(|| HostError::Timeout {
            host: self.name().to_string(),
            command: cmd.to_string(),
            after: timeout.unwrap_or_default(),
        })?;
        let status = status.map_err(|source| HostError::Spawn {
            host: self.name().to_string(),
            program: cmd.to_string(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        Ok(Output {
            code: status.code(),
            signal: status.signal().map(signal_name),
            stdout: out,
            stderr: err,
        })
    }

    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError> {
        let child = self.spawn(cmd, Stdio::piped())?;
        Ok(Box::new(RunningChild::new(child, self.name())))
    }
}

/// A child left running; closing its stdin makes our scripts exit.
pub(crate) struct RunningChild {
    /// The host, for messages.
    host: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout, a line at a time; disconnected at the end.
    lines: mpsc::Receiver<String>,
    /// Let go by [`Running::finish`]: not waited for.
    finished: bool,
}

impl RunningChild {
    /// Takes over a child spawned with stdin and stdout piped.
    pub(crate) fn new(mut child: Child, host: &str) -> RunningChild {
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        RunningChild {
            host: host.to_string(),
            child,
            stdin,
            lines,
            finished: false,
        }
    }
}

impl Running for RunningChild {
    fn line(&mut self, wait: Duration) -> Result<Line, HostError> {
        Ok(match self.lines.recv_timeout(wait) {
            Ok(line) => Line::Line(line),
            Err(mpsc::RecvTimeoutError::Timeout) => Line::NotYet,
            Err(mpsc::RecvTimeoutError::Disconnected) => Line::Ended,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| HostError::Spawn {
            host: self.host.clone(),
            program: "a running command".to_string(),
            source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "its stdin is closed"),
        })?;
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|source| HostError::Spawn {
                host: self.host.clone(),
                program: "a running command".to_string(),
                source,
            })
    }

    fn finish(mut self: Box<Self>) {
        // The child ends by itself once its stdin closes; whatever is left
        // of it is reaped when we exit.
        self.finished = true;
    }
}

impl Drop for RunningChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.finished {
            return;
        }
        if wait(&mut self.child, Some(Duration::from_secs(5))).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn read_all(reader: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = reader.read_to_end(&mut buf);
    buf
}

/// Writes the input; a command that exits without reading it all is not our error.
pub(crate) fn feed(mut stdin: ChildStdin, input: Input<'_>) {
    match input {
        Input::None => {}
        Input::Bytes(bytes) => {
            let _ = stdin.write_all(bytes);
        }
        Input::Stream {
            reader,
            len,
            progress,
        } => {
            let mut buf = vec![0; CHUNK];
            let mut sent = 0u64;
            while sent < len {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if stdin.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                progress(sent);
            }
        }
    }
}

/// Waits for the child; `None` when the timeout passed (the child is then killed).
pub(crate) fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let Some(timeout) = timeout else {
        return Some(child.wait());
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Some(Err(e)),
        }
    }
}

/// `KILL` for 9: the names sshd reports in exit-signal, so both hosts agree.
pub(crate) fn signal_name(number: i32) -> String {
    let name = match number {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        libc::SIGBUS => "BUS",
        other => return other.to_string(),
    };
    name.to_string()
}

/// A lock fd of ours, closed (and the lock released) on drop.
struct HeldFd(i32);

impl Drop for HeldFd {
    fn drop(&mut self) {
        // SAFETY: an fd this process opened for the lock and nothing else closes.
        unsafe { libc::close(self.0) };
    }
}

/// Takes an exclusive flock on `path` within `timeout`, on one of the fds 9,
/// 8, 7 left open across exec. `Ok(None)`: another holder kept it.
fn lock_here(path: &str, timeout: Duration, holder: &str) -> std::io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(error);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    file.set_len(0)?;
    writeln!(file, "{holder}")?;
    for fd in [9, 8, 7] {
        // SAFETY: F_GETFD only asks whether the fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // dup2 leaves the new fd without FD_CLOEXEC: commands inherit it.
            // SAFETY: both fds are valid or free; the result is checked.
            if unsafe { libc::dup2(file.as_raw_fd(), fd) } == fd {
                return Ok(Some(fd));
            }
        }
    }
    Err(std::io::Error::other("fds 7 to 9 are all in use"))
}
