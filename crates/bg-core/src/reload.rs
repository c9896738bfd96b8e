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
use crate::host::Host;

/// `nginx_workers PIDFILE` prints one line per worker process of the master
/// whose pid is in PIDFILE: `PID live`, or `PID old` for one shutting down
/// after a reload. Status 100 when there is no such master to look at.
const WORKERS_FUNCTION: &str = r#"nginx_workers() {
  [ -r /proc/self/stat ] || return 100
  master=$(cat -- "$1" 2>/dev/null) || return 100
  case $master in ''|*[!0-9]*) return 100 ;; esac
  [ -r "/proc/$master/stat" ] || return 100
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

const LIST_SCRIPT: &str = r#"nginx_workers "$1"
"#;

/// `$1` pid file, `$2` the workers before (pids, space-separated), `$3`
/// seconds to wait. Prints `RELOADED` once the master runs a worker that
/// was not there before; otherwise, at the deadline, exit 3 with the
/// workers it sees.
const WAIT_SCRIPT: &str = r#"deadline=$(( $(date +%s) + $3 ))
while :; do
  now=$(nginx_workers "$1") || exit 100
  for w in $(printf '%s\n' "$now" | awk '$2 == "live" { print $1 }'); do
    case " $2 " in *" $w "*) ;; *) echo RELOADED; exit 0 ;; esac
  done
  if [ "$(date +%s)" -ge "$deadline" ]; then
    printf '%s\n' "$now" | tr '\n' ' '; echo; exit 3
  fi
  sleep 0.05 2>/dev/null || sleep 1
done
"#;

/// Exit status of our scripts when there is no master to look at.
const UNKNOWN: i32 = 100;

/// The worker processes of the nginx master in `pid_file` that accept
/// connections, or `None` when that cannot be known here.
pub fn workers(host: &dyn Host, pid_file: &str) -> Result<Option<Vec<u32>>, HostError> {
    let script = format!("# list nginx's workers\n{WORKERS_FUNCTION}{LIST_SCRIPT}");
    let cmd = Cmd::script(&script, &[pid_file]).privileged(true);
    let output = host.run(&cmd)?;
    if output.code == Some(UNKNOWN) && output.signal.is_none() {
        return Ok(None);
    }
    let output = host.check(&cmd, output)?;
    Ok(Some(
        output
            .stdout_text()
            .lines()
            .filter_map(|l| l.strip_suffix(" live")?.parse().ok())
            .collect(),
    ))
}

/// What a wait for the new configuration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The master runs new workers: it has loaded the configuration.
    Done,
    /// Not within the time: the workers then (`PID live|old ...`).
    NotYet { workers: String },
    /// The master is gone or cannot be looked at any more.
    Unknown,
}

/// Waits up to `within` for the master in `pid_file` to run a worker not
/// among `before`. One command on the host does the waiting.
pub fn wait(
    host: &dyn Host,
    pid_file: &str,
    before: &[u32],
    within: Duration,
) -> Result<Reload, HostError> {
    let script = format!("# wait for nginx's new workers\n{WORKERS_FUNCTION}{WAIT_SCRIPT}");
    let before: Vec<String> = before.iter().map(u32::to_string).collect();
    let seconds = within.as_secs_f64().ceil().max(1.0).to_string();
    let cmd = Cmd::script(&script, &[pid_file, &before.join(" "), &seconds])
        .privileged(true)
        .timeout(within + Duration::from_secs(30));
    let output = host.run(&cmd)?;
    match (output.code, output.signal.is_none()) {
        (Some(0), true) => Ok(Reload::Done),
        (Some(3), true) => Ok(Reload::NotYet {
            workers: output.stdout_text().trim().to_string(),
        }),
        (Some(UNKNOWN), true) => Ok(Reload::Unknown),
        _ => host.check(&cmd, output).map(|_| Reload::Unknown),
    }
}
