//! Processes on a host: watching one until it ends, and what its log said last.
//!
//! bg-ship and bg-healthcheck both watch the app they care about and show the
//! end of its log when it dies, on the local machine or over SSH.

use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::error::HostError;
use crate::host::{Host, Line, Output, Running};

/// `alive PID`: status 0 when PID is a live process. Where /proc exists, a
/// zombie (exited but not yet reaped, which happens under a PID 1 that does
/// not reap) is dead; `kill -0` alone would call it alive, and would call a
/// live process of another user dead.
const ALIVE_FUNCTION: &str = r#"alive() {
  if [ -d /proc/self ]; then
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
    return
  fi
  kill -0 "$1" 2>/dev/null && return 0
  ps -p "$1" >/dev/null 2>&1
}
"#;

/// `$1` a pid, `$2` seconds between looks. Prints `ALIVE` after a first
/// look that found the process, then `GONE` once it is not alive (or only
/// `GONE`), and ends when its stdin closes (we are done, or gone). The loop
/// also ends with this shell (`$$`): killed by a Ctrl-C that a background
/// job ignores, it must not leave the loop polling.
const WATCH_SCRIPT: &str = r#"( if alive "$1"; then echo ALIVE; fi
  while alive "$1" && alive $$; do
    sleep "$2" >/dev/null 2>&1 || sleep 1 >/dev/null 2>&1
  done
  echo GONE ) &
looking=$!
cat > /dev/null
kill "$looking" 2>/dev/null
"#;

/// How long the watch may take to make its first look (the login shell
/// starts first, which a heavy `~/.bashrc` makes slow).
const FIRST_LOOK: Duration = Duration::from_secs(30);

/// How often the watch looks.
const WATCH_EVERY: &str = "0.1";

/// A process on the host, watched by one command that keeps running there
/// (one SSH channel for the whole wait, not one per look).
pub struct Watch {
    /// `None` only while dropping.
    running: Option<Box<dyn Running>>,
    pid: u32,
    host: String,
    /// The process was already gone at the first look.
    gone: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watch(pid {} on {})", self.pid, self.host)
    }
}

/// Starts watching process `pid`, and returns once the watch has made its
/// first look: a slow start on the host cannot let a dead process pass.
pub fn watch(host: &dyn Host, pid: u32) -> Result<Watch, HostError> {
    let script = format!("# watch a process\n{ALIVE_FUNCTION}{WATCH_SCRIPT}");
    let running = host.start(&Cmd::script(&script, &[&pid.to_string(), WATCH_EVERY]))?;
    first_look(running, pid, host.name())
}

/// Runs `starter`, which writes the pid of what it started to `pid_file`,
/// then watches that process: one round trip for both over one channel.
/// `starter`'s output comes back with the watch; when it failed, what the
/// watch says means nothing (it may have read an older pid file).
pub fn start_and_watch(
    host: &dyn Host,
    starter: &Cmd,
    pid_file: &str,
) -> Result<(Output, Option<Watch>), HostError> {
    let script = format!(
        "# watch a process\n{ALIVE_FUNCTION}pid=$(cat -- \"$1\" 2>/dev/null)\nset -- \"${{pid:-0}}\" \"$2\"\n{WATCH_SCRIPT}"
    );
    let (output, running) =
        host.run_then_start(starter, &Cmd::script(&script, &[pid_file, WATCH_EVERY]))?;
    if !output.success() {
        return Ok((output, None));
    }
    let pid = output.stdout_text().trim().parse().unwrap_or(0);
    let watch = first_look(running, pid, host.name())?;
    Ok((output, Some(watch)))
}

impl Drop for Watch {
    /// The watch ends on the host when its input does: no need to wait a
    /// round trip for its channel to close.
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.finish();
        }
    }
}

/// Waits for the watch's first look.
fn first_look(running: Box<dyn Running>, pid: u32, host: &str) -> Result<Watch, HostError> {
    let mut watch = Watch {
        running: Some(running),
        pid,
        host: host.to_string(),
        gone: false,
    };
    let deadline = Instant::now() + FIRST_LOOK;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.next(left)? {
            Some("ALIVE") => return Ok(watch),
            Some(_) => {
                watch.gone = true;
                return Ok(watch);
            }
            None if Instant::now() >= deadline => {
                return Err(watch.broken("the watch did not make its first look"));
            }
            None => {}
        }
    }
}

impl Watch {
    /// Waits up to `wait` for the process to end (`Duration::ZERO`: only
    /// look); `true` once it has.
    pub fn gone(&mut self, wait: Duration) -> Result<bool, HostError> {
        if self.gone {
            return Ok(true);
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left)? {
                Some("GONE") => {
                    self.gone = true;
                    return Ok(true);
                }
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    /// The watch's next word (`ALIVE`, `GONE`) within `wait`, or `None`.
    /// Other lines (a chatty login shell) are not ours and are skipped.
    fn next(&mut self, wait: Duration) -> Result<Option<&'static str>, HostError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let running = self.running.as_mut().expect("taken only by drop");
            match running.line(left)? {
                Line::Line(line) if line == "ALIVE" => return Ok(Some("ALIVE")),
                Line::Line(line) if line == "GONE" => return Ok(Some("GONE")),
                Line::Line(_) => {}
                Line::NotYet => return Ok(None),
                Line::Ended => return Err(self.broken("the watch ended without an answer")),
            }
        }
    }

    fn broken(&self, why: &str) -> HostError {
        HostError::Command {
            host: self.host.clone(),
            command: format!("watch pid {}", self.pid),
            output: Box::new(Output {
                stderr: why.as_bytes().to_vec(),
                ..Output::default()
            }),
        }
    }
}

/// `$1` the log, `$2` how many lines: the last ones after the last line
/// bg-ship writes when it starts the app (`=== DATE bg-ship: starting the
/// app`), so that a failure shows this start's lines, not an earlier
/// deploy's; the whole end of the file when it has no such line.
const TAIL_SCRIPT: &str = r#"# show the end of a file
[ -e "$1" ] || exit 100
last=$(awk '/^=== .* bg-ship: starting the app$/ { last = NR } END { print last + 0 }' "$1")
tail -n "+$((last + 1))" -- "$1" | tail -n "$2"
"#;

/// The last `lines` lines of a file since the app's last start, or `None`
/// when it does not exist.
pub fn tail(host: &dyn Host, path: &str, lines: usize) -> Result<Option<String>, HostError> {
    let cmd = Cmd::script(TAIL_SCRIPT, &[path, &lines.to_string()]).privileged(true);
    let output = host.run(&cmd)?;
    if output.code == Some(100) {
        return Ok(None);
    }
    Ok(Some(host.check(&cmd, output)?.stdout_text()))
}

/// A log tail framed for stderr, so it stands apart from our own lines.
pub fn framed_tail(path: &str, text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        return format!("--- {path} is empty");
    }
    format!("--- last lines of {path}\n{text}\n---")
}
