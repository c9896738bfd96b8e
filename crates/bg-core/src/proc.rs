//! Processes on a host: is one still alive, and what did its log say last.
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

/// Whether process `pid` runs on the host.
pub fn alive(host: &dyn Host, pid: u32) -> Result<bool, HostError> {
    let script = format!("# is the process alive\n{ALIVE_FUNCTION}alive \"$1\"\n");
    let output = host.run(&Cmd::script(&script, &[&pid.to_string()]))?;
    Ok(output.success())
}

/// `$1` a pid, `$2` seconds between looks. Prints `GONE` once the process
/// is not alive, and ends when its stdin closes (we are done, or gone).
const WATCH_SCRIPT: &str = r#"( while alive "$1"; do
    sleep "$2" >/dev/null 2>&1 || sleep 1 >/dev/null 2>&1
  done
  echo GONE ) &
looking=$!
cat > /dev/null
kill "$looking" 2>/dev/null
"#;

/// How often the watch looks.
const WATCH_EVERY: &str = "0.1";

/// A process on the host, watched by one command that keeps running there
/// (one SSH channel for the whole wait, not one per look).
pub struct Watch {
    running: Box<dyn Running>,
    pid: u32,
    host: String,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watch(pid {} on {})", self.pid, self.host)
    }
}

/// Starts watching process `pid`.
pub fn watch(host: &dyn Host, pid: u32) -> Result<Watch, HostError> {
    let script = format!("# watch a process\n{ALIVE_FUNCTION}{WATCH_SCRIPT}");
    let running = host.start(&Cmd::script(&script, &[&pid.to_string(), WATCH_EVERY]))?;
    Ok(Watch {
        running,
        pid,
        host: host.name().to_string(),
    })
}

impl Watch {
    /// Waits up to `wait` for the process to end (`Duration::ZERO`: only
    /// look); `true` once it has.
    pub fn gone(&mut self, wait: Duration) -> Result<bool, HostError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.running.line(left)? {
                Line::Line(line) if line == "GONE" => return Ok(true),
                // Anything else (a chatty login shell) is not ours.
                Line::Line(_) => continue,
                Line::NotYet => return Ok(false),
                Line::Ended => {
                    return Err(HostError::Command {
                        host: self.host.clone(),
                        command: format!("watch pid {}", self.pid),
                        output: Box::new(Output {
                            stderr: b"the watch ended without an answer".to_vec(),
                            ..Output::default()
                        }),
                    });
                }
            }
        }
    }
}

const TAIL_SCRIPT: &str = r#"# show the end of a file
[ -e "$1" ] || exit 100
exec tail -n "$2" -- "$1"
"#;

/// The last `lines` lines of a file, or `None` when it does not exist.
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
