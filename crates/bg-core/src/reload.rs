//! Did nginx take the new configuration? `nginx -s reload` and `systemctl
//! reload nginx` only signal the master and return; the master then reads
//! the configuration, starts new workers, and about 100 ms later tells the
//! old ones to finish what they serve and stop accepting. Until then, new
//! connections still reach the old configuration; and a configuration the
//! master cannot load (a port it cannot bind, say) leaves the old workers in
//! place for good, while the reload command said 0.
//!
//! So: the master's workers before the reload, then wait until it runs a
//! new one: the configuration is loaded. (The old workers stop accepting
//! about 100 ms later; a verify through nginx asks for an unbroken run of
//! good answers, which covers that.) Linux `/proc`; elsewhere, or without a
//! readable pid file, nothing is known and nothing waits.

use std::time::Duration;

use crate::cmd::Cmd;
use crate::error::HostError;
use crate::host::{Host, Output};

/// `nginx_workers PIDFILE` prints one line per worker process of the master
/// whose pid is in PIDFILE: `PID live`, or `PID old` for one shutting down
/// after a reload. Status 100 when there is no such master to look at.
pub const WORKERS_FUNCTION: &str = r#"nginx_workers() {
  [ -r /proc/self/stat ] || return 100
  master=$(cat -- "$1" 2>/dev/null) || return 100
  case $master in ''|*[!0-9]*) return 100 ;; esac
  [ -r "/proc/$master/stat" ] || return 100
  # A stale pid file may name a reused pid: only an nginx master counts.
  case $(tr '\000' ' ' < "/proc/$master/cmdline" 2>/dev/null) in
    *nginx*) ;;
    *) return 100 ;;
  esac
  for w in $(cat /proc/[0-9]*/stat 2>/dev/null |
      awk -v m="$master" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); if (f[2] == m) print $1 }'); do
    title=$(tr '\000' ' ' < "/proc/$w/cmdline" 2>/dev/null) || continue
    case $title in
      *"shutting down"*) echo "$w old" ;;
      ?*) echo "$w live" ;;
    esac
  done
}
"#;

/// `reload_wait CMD PIDFILE SECONDS`: SECONDS a whole number (the clock it
/// reads has seconds, so it waits one more). Notes the
/// master's workers, runs the reload command (its output goes to stderr, so
/// that our line is the only one on stdout; a failing status passes
/// through), then waits until the master runs a worker that was not there
/// before. The last stdout line says how that
/// ended: `BG-RELOAD done`, `BG-RELOAD unknown` (no master to look at), or
/// `BG-RELOAD not-yet PID live|old ...` at the deadline.
pub const RELOAD_FUNCTION: &str = r#"reload_wait() {
  if now=$(nginx_workers "$2"); then
    before=$(printf '%s\n' "$now" | awk '$2 == "live" { printf "%s ", $1 }')
  else
    before=-
  fi
  sh -c "$1" >&2 || return
  [ "$before" = - ] && { echo "BG-RELOAD unknown"; return 0; }
  deadline=$(( $(date +%s) + $3 + 1 ))
  while :; do
    now=$(nginx_workers "$2") || { echo "BG-RELOAD unknown"; return 0; }
    for w in $(printf '%s\n' "$now" | awk '$2 == "live" { print $1 }'); do
      case " $before " in *" $w "*) ;; *) echo "BG-RELOAD done"; return 0 ;; esac
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "BG-RELOAD not-yet $(printf '%s\n' "$now" | tr '\n' ' ')"; return 0
    fi
    sleep 0.05 2>/dev/null || sleep 1
  done
}
"#;

/// What a reload found after its command said 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The master runs new workers: it has loaded the configuration.
    Done,
    /// None within the time: the workers then (`PID live|old ...`).
    NotYet { workers: String },
    /// No master to look at through the pid file (or no `/proc`).
    Unknown,
}

/// Runs `reload_cmd` on the host and waits up to `within` for the master in
/// `pid_file` to run a worker it did not have before: one command, one SSH
/// channel. The command's output, whatever its status; and, when it
/// succeeded, what the wait found.
pub fn reload(
    host: &dyn Host,
    reload_cmd: &str,
    pid_file: &str,
    within: Duration,
    timeout: Duration,
) -> Result<(Output, Option<Reload>), HostError> {
    let script = format!(
        "# reload nginx, wait for its new workers\n{WORKERS_FUNCTION}{RELOAD_FUNCTION}reload_wait \"$@\"\n"
    );
    let seconds = within.as_secs_f64().ceil().max(1.0).to_string();
    let cmd = Cmd::script(&script, &[reload_cmd, pid_file, &seconds])
        .privileged(true)
        .timeout(timeout + within);
    let output = host.run(&cmd)?;
    if !output.success() {
        return Ok((output, None));
    }
    Ok((output.clone(), Some(found(&output.stdout_text()))))
}

/// What the last `BG-RELOAD` line of [`RELOAD_FUNCTION`]'s output says.
pub fn found(stdout: &str) -> Reload {
    let last = stdout.lines().last().unwrap_or("");
    match last.strip_prefix("BG-RELOAD ") {
        Some("done") => Reload::Done,
        Some(rest) if rest.starts_with("not-yet") => Reload::NotYet {
            workers: rest["not-yet".len()..].trim().to_string(),
        },
        _ => Reload::Unknown,
    }
}
