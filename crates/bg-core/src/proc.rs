//! Processes on a host: is one still alive, and what did its log say last.
//!
//! bg-ship and bg-healthcheck both watch the app they care about and show the
//! end of its log when it dies, on the local machine or over SSH.

use crate::cmd::Cmd;
use crate::error::HostError;
use crate::host::Host;

/// Exit 0 when `$1` is a live process. Where /proc exists, a zombie (exited
/// but not yet reaped, which happens under a PID 1 that does not reap) is
/// dead; `kill -0` alone would call it alive, and would call a live process
/// of another user dead.
const ALIVE_SCRIPT: &str = r#"# is the process alive
if [ -d /proc/self ]; then
  [ -r "/proc/$1/stat" ] || exit 1
  state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
  exit
fi
kill -0 "$1" 2>/dev/null && exit 0
ps -p "$1" >/dev/null 2>&1
"#;

/// Whether process `pid` runs on the host.
pub fn alive(host: &dyn Host, pid: u32) -> Result<bool, HostError> {
    let output = host.run(&Cmd::script(ALIVE_SCRIPT, &[&pid.to_string()]))?;
    Ok(output.success())
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
