//! Every command of a run over one SSH channel.
//!
//! Each exec channel costs round trips (open, exec request, close) and a
//! start of the user's login shell, which a `~/.bashrc` that runs
//! `pyenv init` makes 90 ms slow. A deploy used to open about 21 of them.
//! [`MuxHost`] opens one channel per run, runs a small driver script there,
//! and sends each command to it as a frame on the channel's stdin; the
//! answer comes back as hex lines (exact bytes, whatever the command
//! printed), then its exit status. A command costs one round trip and no
//! shell start.
//!
//! Locks are held by the driver shell itself (an `flock` on one of the fds
//! 7 to 9, which the commands it runs inherit), so they last exactly as long
//! as the channel: a killed run drops the channel, the driver reads end of
//! file and exits, and the kernel releases the lock. A command that leaves a
//! process running for good (the app's start) closes those fds for it.
//!
//! What does not fit a frame goes over a channel of its own, as before: an
//! upload streamed from a file, and stdin bytes that hold a NUL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Host, Input, Line, Lock, Output, Running};
use crate::cmd::Cmd;
use crate::error::HostError;

/// The driver. `$1` is the line that ends a frame, `$2` the first frames
/// (may be empty): they travel with the channel's exec request, and their
/// answers come back a round trip sooner than if they waited for the
/// channel to be open (OpenSSH forwards stdin only once the exec request
/// is answered). Frames are an op line, the command's lines, then that end
/// line:
/// - `X`: run the command in a subshell, stdin from /dev/null;
/// - `L`: the words `PATH SECONDS HOLDER FD`: take a lock in this shell,
///   and end after answering when it could not: nothing sent after it runs;
/// - `U`: the word `FD`: release that lock;
/// - `S`: then a line with a length and that many bytes: run the command
///   with those bytes on its stdin (only where `head -c` is exact);
/// - `H`: hand the channel over: run the command with the channel as its
///   stdin and stdout, then end.
///
/// Each answer is `O` + stdout in hex, `E` + stderr in hex, `R` + status.
const DRIVER_SCRIPT: &str = r#"# run commands sent on stdin
end=$1
t=$(mktemp -d "${TMPDIR:-/tmp}/bg-mux.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
# A run that is gone when an answer is written: end, and clean up (dash
# would die of SIGPIPE without running the EXIT trap).
trap 'exit 1' HUP INT TERM PIPE
hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
lock() {
  dir=$(dirname -- "$1")
  [ -d "$dir" ] || mkdir -p -- "$dir" || return 1
  if ! command -v flock >/dev/null 2>&1; then
    echo "flock(1) is not installed on this host (it comes with util-linux)" >&2; return 1
  fi
  eval "exec $4>>\"\$1\"" || return 1
  if ! flock -x -w "$2" "$4"; then
    printf 'BUSY '; head -n 1 -- "$1"; echo; eval "exec $4>&-"; return 75
  fi
  printf '%s\n' "$3" > "$1"
  echo LOCKED
}
# Whether head -c reads no further than it is told (GNU, busybox): then a
# file can come on this channel too, its bytes between two frames.
if [ "$(printf ab | { head -c 1 >/dev/null 2>&1; cat; })" = b ]; then
  printf '\nBG-MUX-READY exact\n'
else
  printf '\nBG-MUX-READY\n'
fi
# The channel, kept on fd 3 while the first frames come from a file; no
# command but a hand-over gets it.
exec 3<&0
serve() {
  while IFS= read -r op; do
    cmd=
    while IFS= read -r l; do
      [ "$l" = "$end" ] && break
      cmd="${cmd:+$cmd
}$l"
    done
    case $op in
      X) ( eval "$cmd" ) </dev/null 3<&- >"$t/o" 2>"$t/e"; rc=$? ;;
      L) eval "set -- $cmd"; lock "$@" </dev/null 3<&- >"$t/o" 2>"$t/e"; rc=$? ;;
      U) case $cmd in [789]) eval "exec $cmd>&-" ;; esac; : >"$t/o"; : >"$t/e"; rc=0 ;;
      S) IFS= read -r len || exit 2
         # What the command leaves unread is drained: the next frame follows.
         head -c "$len" | { ( eval "$cmd" ) 3<&- >"$t/o" 2>"$t/e"; rc=$?; cat >/dev/null; exit "$rc"; }
         rc=$? ;;
      H) exec <&3 3<&-; eval "$cmd"; exit ;;
      *) exit 2 ;;
    esac
    printf 'O%s\nE%s\nR%s\n' "$(hex "$t/o")" "$(hex "$t/e")" "$rc"
    # No command may run after a lock we did not get.
    if [ "$op" = L ] && [ "$rc" != 0 ]; then exit 0; fi
  done
}
if [ -n "$2" ]; then
  printf '%s' "$2" > "$t/first"
  serve < "$t/first"
fi
serve
"#;

/// An answer the driver owes us.
enum Unread {
    /// A lock's release: nothing to check.
    Release,
    /// A lock: taken, or the run must stop.
    Lock(LockFailure),
}

/// A lock, and, once it failed, how.
#[derive(Clone)]
struct LockFailure {
    path: String,
    timeout: Duration,
    deadline: Instant,
    output: Output,
}

/// The fds a run's locks use, highest first; POSIX shells number up to 9.
const LOCK_FDS: [u8; 3] = [9, 8, 7];

/// The largest file sent between two frames. A bigger one takes a channel
/// of its own: its transfer dwarfs the round trips a channel costs, and a
/// direct pipe into the receiver is faster than one through the driver's
/// `head` (bg-ship took 0.93x scp's time for 200 MiB that way, 0.75x with a
/// channel of its own; benches/ship-vs-scp.sh).
const BETWEEN_FRAMES_MAX: u64 = 8 * 1024 * 1024;

/// How long the driver may take to start: the login shell runs first.
const START: Duration = Duration::from_secs(30);

/// The most frame text that goes with a driver's start: the whole command
/// is one argument of the remote shell, and Linux takes at most 128 KiB.
const INLINE_MAX: usize = 32 * 1024;

/// A host whose commands all go over one channel of `inner`.
pub struct MuxHost {
    inner: Box<dyn Host>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MuxHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MuxHost({})", self.inner.name())
    }
}

struct State {
    /// The driver, once started; `None` again after it was handed over or broke.
    driver: Option<Box<dyn Running>>,
    /// A driver begun but not started yet: the frames that go with its
    /// start ([`MuxHost::launch`]).
    queued: Option<String>,
    /// Whether the driver has said it is ready (lines before that are the
    /// login shell's).
    ready: bool,
    /// Whether the driver can take a file between two frames (`S`).
    exact_head: bool,
    /// The line that ends a frame: unguessable, so that no command's own
    /// line can end its frame early.
    end: String,
    /// Lock fds in use, and those dropped but not yet released.
    held: Vec<u8>,
    release: Vec<u8>,
    /// Answers sent for and not yet read, oldest first: a lock is not
    /// waited for until the next command needs the channel, so that both
    /// travel in one round trip.
    unread: Vec<Unread>,
    /// A lock this run did not get: every later command fails with it,
    /// until the next lock.
    lock_failed: Option<LockFailure>,
    /// Which driver this is: a lock's release is for the driver it was
    /// taken on, not a later one.
    generation: u64,
    /// How many channels this host opened, and frames it sent, for `-vv`.
    channels: usize,
    frames: usize,
}

impl MuxHost {
    pub fn new(inner: Box<dyn Host>) -> MuxHost {
        MuxHost {
            inner,
            state: Arc::new(Mutex::new(State {
                driver: None,
                queued: None,
                ready: false,
                exact_head: false,
                end: end_line(),
                held: Vec::new(),
                release: Vec::new(),
                unread: Vec::new(),
                lock_failed: None,
                generation: 0,
                channels: 0,
                frames: 0,
            })),
        }
    }

    /// Sends one frame (after any pending lock releases) and returns its
    /// answer, waiting until `deadline`; the answers owed before it are
    /// read first.
    fn frame(
        &self,
        op: char,
        body: &str,
        what: &Cmd,
        deadline: Option<Instant>,
    ) -> Result<Output, HostError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = &state.lock_failed {
            return Err(self.lock_error(failure));
        }
        self.begin(&mut state)?;
        let text = self.with_releases(&mut state, op, body);
        self.exchange(
            &mut state,
            &text,
            true,
            what,
            |_| Ok(()),
            |driver, ready| read_answer(driver, ready, deadline, self, what),
        )
    }

    /// Sends `text` (with the driver's start when it is not started yet and
    /// `inline`), then what `feed` sends, reads the answers owed, then what
    /// `read` reads. A lock found not taken is remembered; any error leaves
    /// the driver out of step, and the next command starts another.
    fn exchange<T>(
        &self,
        state: &mut State,
        text: &str,
        inline: bool,
        what: &Cmd,
        feed: impl FnOnce(&mut dyn Running) -> Result<(), HostError>,
        read: impl FnOnce(&mut dyn Running, &mut (bool, bool)) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let sent = self.launch(state, inline.then_some(text))?;
        let mut ready = (state.ready, state.exact_head);
        let unread = std::mem::take(&mut state.unread);
        let Some(driver) = state.driver.as_mut() else {
            return Err(broken(self, what));
        };
        let mut failed = None;
        // The answers owed come first: a lock not taken ends the driver
        // before a file would be sent to it.
        let send = if sent {
            Ok(())
        } else {
            driver.send(text.as_bytes())
        };
        let result = send
            .and_then(|()| {
                for owed in unread {
                    if let Some(failure) =
                        self.read_owed(driver.as_mut(), &mut ready, owed, what)?
                    {
                        let error = self.lock_error(&failure);
                        failed = Some(failure);
                        return Err(error);
                    }
                }
                Ok(())
            })
            .and_then(|()| feed(driver.as_mut()))
            .and_then(|()| read(driver.as_mut(), &mut ready));
        (state.ready, state.exact_head) = ready;
        if failed.is_some() {
            // The driver ended at the failure, and every lock with it.
            state.lock_failed = failed;
            state.held.clear();
        }
        if result.is_err() {
            state.driver = None;
        }
        result
    }

    /// The release frames of dropped locks, then this frame.
    fn with_releases(&self, state: &mut State, op: char, body: &str) -> String {
        let mut text = String::new();
        for fd in std::mem::take(&mut state.release) {
            text.push_str(&format!("U\n{fd}\n{}\n", state.end));
            state.unread.push(Unread::Release);
        }
        text.push_str(&format!("{op}\n{body}\n{}\n", state.end));
        state.frames += 1;
        text
    }

    /// Reads one owed answer; `Some` for a lock that was not taken.
    fn read_owed(
        &self,
        driver: &mut dyn Running,
        ready: &mut (bool, bool),
        owed: Unread,
        what: &Cmd,
    ) -> Result<Option<LockFailure>, HostError> {
        match owed {
            Unread::Release => {
                read_answer(driver, ready, None, self, what)?;
                Ok(None)
            }
            Unread::Lock(mut lock) => {
                let output = read_answer(driver, ready, Some(lock.deadline), self, what)?;
                let taken =
                    output.code == Some(0) && output.stdout_text().lines().any(|l| l == "LOCKED");
                lock.output = output;
                Ok((!taken).then_some(lock))
            }
        }
    }

    fn lock_error(&self, failure: &LockFailure) -> HostError {
        let text = failure.output.stdout_text();
        if let Some(line) = text.lines().find(|l| l.starts_with("BUSY ")) {
            return super::busy(self, &failure.path, &line["BUSY ".len()..], failure.timeout);
        }
        HostError::Command {
            host: self.name().to_string(),
            command: Cmd::script("# take a lock", &[&failure.path]).to_string(),
            output: Box::new(failure.output.clone()),
        }
    }

    /// Sends `first` (when given) and the hand-over of the channel to
    /// `cmd` in one write; returns `first`'s answer and the running command.
    fn hand_over(
        &self,
        first: Option<&Cmd>,
        cmd: &Cmd,
    ) -> Result<(Option<Output>, Box<dyn Running>), HostError> {
        let line = cmd.to_shell_line(self.sudo())?;
        let first_line = first.map(|f| f.to_shell_line(self.sudo())).transpose()?;
        if let Some(first) = first {
            crate::log::debug(&format!("{}: {first}", self.name()));
        }
        crate::log::debug(&format!("{}: {cmd} (left running)", self.name()));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = &state.lock_failed {
            return Err(self.lock_error(failure));
        }
        self.begin(&mut state)?;
        let mut text = String::new();
        if let Some(first_line) = &first_line {
            text.push_str(&self.with_releases(&mut state, 'X', first_line));
        }
        text.push_str(&self.with_releases(&mut state, 'H', &line));
        // The driver's own lines must not reach the command's reader: its
        // answers owed, `first`'s, and its ready line are read here.
        let output = self.exchange(
            &mut state,
            &text,
            true,
            cmd,
            |_| Ok(()),
            |driver, ready| {
                let output = match first {
                    Some(first) => Some(read_answer(
                        driver,
                        ready,
                        first.get_timeout().map(|t| Instant::now() + t),
                        self,
                        first,
                    )?),
                    None => None,
                };
                if !wait_ready(driver, ready)? {
                    return Err(broken(self, cmd));
                }
                Ok(output)
            },
        )?;
        let driver = state.driver.take().ok_or_else(|| broken(self, cmd))?;
        state.held.clear();
        Ok((output, driver))
    }

    /// Whether a file can go over the driver's channel: the driver says so
    /// once it is ready (waited for here, when it is new).
    fn can_stream(&self) -> Result<bool, HostError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.lock_failed.is_some() {
            return Ok(false);
        }
        self.begin(&mut state)?;
        self.launch(&mut state, None)?;
        let mut ready = (state.ready, state.exact_head);
        let driver = state.driver.as_mut().expect("started above");
        if !wait_ready(driver.as_mut(), &mut ready)? {
            state.driver = None;
            return Ok(false);
        }
        (state.ready, state.exact_head) = ready;
        Ok(state.exact_head)
    }

    /// An `S` frame: the command, then `len` bytes from `reader` on its
    /// stdin, in large writes. A reader that runs short is padded with
    /// zeros, so that the driver stays in step; the receiving end's size
    /// and checksum show the difference.
    fn stream_frame(
        &self,
        line: &str,
        what: &Cmd,
        reader: &mut dyn std::io::Read,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Output, HostError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = &state.lock_failed {
            return Err(self.lock_error(failure));
        }
        self.begin(&mut state)?;
        let mut text = self.with_releases(&mut state, 'S', line);
        text.push_str(&format!("{len}\n"));
        let feed = |driver: &mut dyn Running| {
            let mut buf = vec![0u8; super::local::CHUNK];
            let mut sent = 0u64;
            while sent < len {
                let want = (len - sent).min(buf.len() as u64) as usize;
                let n = match reader.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => {
                        buf[..want].fill(0);
                        want
                    }
                    Ok(n) => n,
                };
                driver.send(&buf[..n])?;
                sent += n as u64;
                progress(sent);
            }
            Ok(())
        };
        // Not with the start: the file's bytes follow the frame.
        self.exchange(&mut state, &text, false, what, feed, |driver, ready| {
            read_answer(driver, ready, None, self, what)
        })
    }

    /// Makes sure a driver is started or about to be: a new one holds no
    /// lock, and its frames wait in `queued` until [`MuxHost::launch`].
    fn begin(&self, state: &mut State) -> Result<(), HostError> {
        if state.driver.is_some() || state.queued.is_some() {
            return Ok(());
        }
        if !state.held.is_empty() {
            // The channel that held this run's lock ended (an error put the
            // driver out of step): nothing may run as if it were still held.
            return Err(HostError::Transport {
                target: self.inner.name().to_string(),
                during: "holding the run's lock",
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the channel that held the lock ended; run again",
                ),
            });
        }
        state.generation += 1;
        state.queued = Some(String::new());
        // Answers owed by a driver that is gone will never come.
        state.unread.clear();
        state.ready = false;
        state.exact_head = false;
        state.release.clear();
        Ok(())
    }

    /// Starts the begun driver with its queued frames, and `more` too when
    /// given and small enough: `true` when `more` went with the start.
    fn launch(&self, state: &mut State, more: Option<&str>) -> Result<bool, HostError> {
        if state.driver.is_some() {
            return Ok(false);
        }
        let Some(mut first) = state.queued.take() else {
            return Ok(false);
        };
        let with_more = more.filter(|more| first.len() + more.len() <= INLINE_MAX);
        if let Some(more) = with_more {
            first.push_str(more);
        }
        let rest = if first.len() > INLINE_MAX {
            std::mem::take(&mut first)
        } else {
            String::new()
        };
        let cmd = Cmd::script(DRIVER_SCRIPT, &[&state.end, &first]);
        let mut driver = self.inner.start(&cmd)?;
        if !rest.is_empty() {
            driver.send(rest.as_bytes())?;
        }
        state.driver = Some(driver);
        state.channels += 1;
        crate::log::debug(&format!(
            "{}: channel {} opened for this run's commands",
            self.inner.name(),
            state.channels
        ));
        Ok(with_more.is_some())
    }

    /// Channels opened so far: the driver's, and one per upload.
    pub fn channels(&self) -> usize {
        self.state.lock().map(|s| s.channels).unwrap_or(0)
    }
}

fn end_line() -> String {
    let mut bytes = [0u8; 12];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(nanos as u64 ^ u64::from(std::process::id())).to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("--bg-end-{hex}")
}

/// Reads the login shell's lines up to the driver's ready line, unless it
/// was read already; `false` when it did not come within [`START`].
fn wait_ready(driver: &mut dyn Running, ready: &mut (bool, bool)) -> Result<bool, HostError> {
    let deadline = Instant::now() + START;
    while !ready.0 {
        match driver.line(deadline.saturating_duration_since(Instant::now()))? {
            Line::Line(line) if line.starts_with("BG-MUX-READY") => {
                *ready = (true, line.ends_with(" exact"));
            }
            Line::Line(_) => {}
            Line::NotYet | Line::Ended => return Ok(false),
        }
    }
    Ok(true)
}

/// Reads one answer: `O...`, `E...`, `R...`. Lines before the driver's
/// `BG-MUX-READY` are the login shell's and are skipped.
fn read_answer(
    driver: &mut dyn Running,
    ready: &mut (bool, bool),
    deadline: Option<Instant>,
    host: &MuxHost,
    what: &Cmd,
) -> Result<Output, HostError> {
    let mut output = Output::default();
    let start_deadline = Instant::now() + START;
    loop {
        let limit = match (deadline, ready.0) {
            (Some(d), _) => d,
            (None, false) => start_deadline,
            (None, true) => Instant::now() + Duration::from_secs(24 * 3600),
        };
        let left = limit.saturating_duration_since(Instant::now());
        match driver.line(left)? {
            Line::Line(line) if !ready.0 => {
                if line.starts_with("BG-MUX-READY") {
                    *ready = (true, line.ends_with(" exact"));
                }
            }
            Line::Line(line) => match line.split_at_checked(1) {
                Some(("O", hex)) => output.stdout = unhex(hex).ok_or_else(|| broken(host, what))?,
                Some(("E", hex)) => output.stderr = unhex(hex).ok_or_else(|| broken(host, what))?,
                Some(("R", status)) => {
                    let status: i32 = status.trim().parse().map_err(|_| broken(host, what))?;
                    // 128 + N is how a shell tells a death by signal N; an
                    // exit status that high is rare, and no signal is above 64.
                    if (129..=192).contains(&status) {
                        output.signal = Some(super::local::signal_name(status - 128));
                    } else {
                        output.code = Some(status);
                    }
                    return Ok(output);
                }
                _ => return Err(broken(host, what)),
            },
            Line::NotYet if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(HostError::Timeout {
                    host: host.inner.name().to_string(),
                    command: what.to_string(),
                    after: what.get_timeout().unwrap_or_default(),
                });
            }
            Line::NotYet if !ready.0 && Instant::now() >= start_deadline => {
                return Err(broken(host, what));
            }
            Line::NotYet => {}
            Line::Ended => {
                return Err(HostError::Transport {
                    target: host.inner.name().to_string(),
                    during: "running a command",
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the host's end of the channel ended",
                    ),
                });
            }
        }
    }
}

fn broken(host: &MuxHost, what: &Cmd) -> HostError {
    HostError::Transport {
        target: host.inner.name().to_string(),
        during: "running a command",
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no answer we could read for `{what}`"),
        ),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Releases the lock's fd before the next command (or when the channel ends).
struct Release {
    state: Arc<Mutex<State>>,
    fd: u8,
    generation: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation != self.generation {
            return;
        }
        if let Some(i) = state.held.iter().position(|&fd| fd == self.fd) {
            state.held.remove(i);
            state.release.push(self.fd);
        }
    }
}

impl Host for MuxHost {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn sudo(&self) -> bool {
        self.inner.sudo()
    }

    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError> {
        let line = cmd.to_shell_line(self.sudo())?;
        let line = match input {
            Input::None => line,
            Input::Bytes(bytes) if !bytes.contains(&0) => match std::str::from_utf8(bytes) {
                Ok(text) => format!("printf '%s' {} | {line}", crate::quote::quote(text)?),
                Err(_) => return self.inner.exec(cmd, input),
            },
            Input::Stream {
                reader,
                len,
                progress,
            } => {
                if len <= BETWEEN_FRAMES_MAX && self.can_stream()? {
                    crate::log::debug(&format!("{}: {cmd} (with {len} bytes)", self.name()));
                    return self.stream_frame(&line, cmd, reader, len, progress);
                }
                self.count_channel();
                return self.inner.exec(
                    cmd,
                    Input::Stream {
                        reader,
                        len,
                        progress,
                    },
                );
            }
            other => {
                self.count_channel();
                return self.inner.exec(cmd, other);
            }
        };
        crate::log::debug(&format!("{}: {cmd}", self.name()));
        let deadline = cmd.get_timeout().map(|t| Instant::now() + t);
        self.frame('X', &line, cmd, deadline)
    }

    fn run_all(&self, cmds: &[Cmd]) -> Result<Vec<Output>, HostError> {
        let Some(last) = cmds.last() else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            crate::log::debug(&format!("{}: {cmd}", self.name()));
            lines.push(cmd.to_shell_line(self.sudo())?);
        }
        let deadline = cmds
            .iter()
            .filter_map(Cmd::get_timeout)
            .reduce(|a, b| a + b)
            .map(|t| Instant::now() + t);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = &state.lock_failed {
            return Err(self.lock_error(failure));
        }
        self.begin(&mut state)?;
        let mut text = String::new();
        for line in &lines {
            text.push_str(&self.with_releases(&mut state, 'X', line));
        }
        self.exchange(
            &mut state,
            &text,
            true,
            last,
            |_| Ok(()),
            |driver, ready| {
                cmds.iter()
                    .map(|cmd| read_answer(driver, ready, deadline, self, cmd))
                    .collect()
            },
        )
    }

    /// Hands this run's channel over to `cmd`: a later command opens another.
    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError> {
        self.hand_over(None, cmd).map(|(_, running)| running)
    }

    fn run_then_start(
        &self,
        first: &Cmd,
        then: &Cmd,
    ) -> Result<(Output, Box<dyn Running>), HostError> {
        let (output, running) = self.hand_over(Some(first), then)?;
        Ok((output.unwrap_or_default(), running))
    }

    /// Sends the lock and returns: the answer is read with the next
    /// command's, one round trip for both. A lock the host could not take
    /// ends the driver before anything else runs, and that command (and
    /// every later one) fails with the lock's error.
    fn lock(&self, path: &str, timeout: Duration, holder: &str) -> Result<Lock, HostError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.lock_failed.take().is_some() {
            // Trying again: on a new driver (the last one ended at the failure).
            state.driver = None;
        }
        let fd = LOCK_FDS
            .iter()
            .copied()
            .find(|fd| !state.held.contains(fd) && !state.release.contains(fd));
        let Some(fd) = fd else {
            drop(state);
            return super::lock_with(self, path, timeout, holder);
        };
        let seconds = format!("{:.3}", timeout.as_secs_f64());
        let holder = holder.replace(['\n', '\r'], " ");
        let words = crate::quote::join(&[path, &seconds, &holder, &fd.to_string()])?;
        self.begin(&mut state)?;
        let text = self.with_releases(&mut state, 'L', &words);
        if let Some(driver) = state.driver.as_mut() {
            if let Err(e) = driver.send(text.as_bytes()) {
                state.driver = None;
                return Err(e);
            }
        } else {
            // Not started yet: the lock goes with the start.
            state.queued.get_or_insert_default().push_str(&text);
        }
        state.unread.push(Unread::Lock(LockFailure {
            path: path.to_string(),
            timeout,
            // The host waits for the lock itself; it gets some extra time to answer.
            deadline: Instant::now() + timeout + Duration::from_secs(30),
            output: Output::default(),
        }));
        state.held.push(fd);
        Ok(Lock {
            _release: Box::new(Release {
                state: Arc::clone(&self.state),
                fd,
                generation: state.generation,
            }),
            path: path.to_string(),
        })
    }
}

impl Drop for MuxHost {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The driver ends on the end of its input, releasing the run's
        // locks; waiting for its channel to close would be one more round
        // trip for nothing.
        if let Some(driver) = state.driver.take() {
            driver.finish();
        }
        crate::log::debug(&format!(
            "{}: {} commands over {} channels",
            self.inner.name(),
            state.frames,
            state.channels
        ));
    }
}

impl MuxHost {
    fn count_channel(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.channels += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("").unwrap(), b"");
        assert_eq!(unhex("00ff0a0d").unwrap(), [0, 255, 10, 13]);
        assert!(unhex("0").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn end_lines_differ() {
        assert_ne!(end_line(), end_line());
        assert!(end_line().starts_with("--bg-end-"));
    }
}
