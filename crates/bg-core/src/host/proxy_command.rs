//! ssh_config's ProxyCommand: a local command whose stdin and stdout carry
//! the SSH connection (`ssh -W %h:%p bastion`, `nc`, a cloud CLI's tunnel).
//!
//! As OpenSSH does, the command gets one end of a socket pair as both its
//! stdin and stdout, and the session talks on the other end. It runs in a
//! process group of its own, so that whatever it starts goes with it when
//! the host is dropped: no child is left behind.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::error::HostError;

/// How much of the command's stderr is kept for an error message.
const STDERR_KEPT: usize = 16 * 1024;

/// The running command; stopped and reaped on drop.
pub(super) struct ProxyChild {
    child: Child,
    command: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Says when the stderr reader has seen the end of the command's stderr.
    stderr_done: Mutex<mpsc::Receiver<()>>,
    stopped: bool,
}

impl ProxyChild {
    /// Starts `sh -c COMMAND`; returns the session's end of the pair.
    pub(super) fn spawn(
        command: &str,
        target: &str,
    ) -> Result<(UnixStream, ProxyChild), HostError> {
        let cannot = |e: std::io::Error| HostError::ProxyCommand {
            target: target.to_string(),
            command: command.to_string(),
            problem: format!("cannot start `{command}`: {e}"),
            stderr: String::new(),
        };
        let (ours, theirs) = UnixStream::pair().map_err(cannot)?;
        let theirs_out = theirs.try_clone().map_err(cannot)?;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(cannot)?;
        // The command's stderr is drained all along (a chatty `ssh -v -W`
        // must not block on a full pipe); its tail is kept for errors.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = mpsc::channel();
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            let spawned = std::thread::Builder::new()
                .name("bg-proxy-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buf) {
                        let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
                        kept.extend_from_slice(&buf[..n]);
                        let excess = kept.len().saturating_sub(STDERR_KEPT);
                        kept.drain(..excess);
                    }
                    let _ = done_tx.send(());
                });
            if let Err(e) = spawned {
                let mut proxy = ProxyChild::new(child, command, stderr, done_rx);
                proxy.stop();
                return Err(cannot(e));
            }
        }
        Ok((ours, ProxyChild::new(child, command, stderr, done_rx)))
    }

    fn new(
        child: Child,
        command: &str,
        stderr: Arc<Mutex<Vec<u8>>>,
        done: mpsc::Receiver<()>,
    ) -> ProxyChild {
        ProxyChild {
            child,
            command: command.to_string(),
            stderr,
            stderr_done: Mutex::new(done),
            stopped: false,
        }
    }

    /// The error for a connection that failed through this command: its
    /// exit status and what it said on stderr, which tell more than the
    /// SSH handshake's `message`.
    pub(super) fn failure(&mut self, target: &str, message: &str) -> HostError {
        // A command that failed exits on its own; give it a moment to.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let exited = self.exited();
        let status = self.stop();
        if let Ok(done) = self.stderr_done.lock() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let stderr = {
            let kept = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&kept).into_owned()
        };
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty());
        let problem = match (exited, status, said) {
            (true, Some(status), Some(said)) => {
                format!("it {}: {}", status_text(status), said.trim())
            }
            (true, Some(status), None) => format!("it {} ({message})", status_text(status)),
            (_, _, Some(said)) => format!("{message}: {}", said.trim()),
            (_, _, None) => message.to_string(),
        };
        HostError::ProxyCommand {
            target: target.to_string(),
            command: self.command.clone(),
            problem,
            stderr,
        }
    }

    /// Whether the command has exited, without reaping it: while it is a
    /// zombie its process group id cannot be reused, so signalling the
    /// group stays safe.
    fn exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid with
        // WNOWAIT leaves the child to be reaped by `Child::wait`.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() != 0
        }
    }

    /// Ends the command and everything in its process group, then reaps it.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        let group = self.child.id() as libc::pid_t;
        if !self.exited() {
            // SIGHUP first, as OpenSSH does: `ssh -W` and `nc` end on it.
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-group, libc::SIGHUP) };
            let deadline = Instant::now() + Duration::from_secs(1);
            while !self.exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Whatever is left in the group (a command that ignores SIGHUP, or
        // what it started in the background) goes now. The leader is not
        // reaped yet, so the group id is still ours.
        // SAFETY: as above.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        self.child.wait().ok()
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_string(),
    }
}
