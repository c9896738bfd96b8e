//! `bg-stop-port`: stops whatever listens on a port and returns only when
//! the port is free.
//!
//! Replaces the seed's `fuser -s -k PORT/tcp` and its sleep loop, which sent
//! SIGKILL at once (no graceful shutdown), needed fuser on the host, never
//! failed when the port stayed busy, and would have killed the active port as
//! readily as the backup.

use std::time::{Duration, Instant};

use bg_core::cli::{HostArgs, LockArgs, OutputArgs, parse_duration, parse_port};
use bg_core::host::{Host, holder_description};
use bg_core::listeners;
use bg_core::{Cmd, Code, Failure, HostError, Report};
use clap::Parser;

pub use bg_core::listeners::{Found, Listener, describe, find, is_listening};

/// Stop whatever listens on a port, gracefully first, and wait until the port is free.
///
/// Sends --signal (TERM) to every process listening on PORT (IPv4 and IPv6),
/// waits up to --grace for them to let go of it, then sends KILL, and exits 0
/// only when nothing listens on PORT any more. Nothing listening is success.
#[derive(Debug, Parser)]
#[command(name = "bg-stop-port", version, max_term_width = 100)]
pub struct Cli {
    /// The port to free
    #[arg(long, env = "BG_PORT", value_parser = parse_port, value_name = "PORT")]
    pub port: u16,

    /// Never stop this port (the active one): asking to is exit 3, nothing signalled. Repeatable;
    /// an empty value protects nothing (a first deploy has no active port)
    #[arg(long = "protect-port", env = "BG_PROTECT_PORT", value_parser = parse_protected_port, value_delimiter = ',', value_name = "PORT")]
    pub protect_ports: Vec<Option<u16>>,

    /// First signal: TERM, INT, HUP, QUIT, USR1, USR2 or KILL (a SIG prefix or number is fine)
    #[arg(long, env = "BG_SIGNAL", default_value = "TERM", value_parser = parse_signal, value_name = "SIGNAL")]
    pub signal: String,

    /// How long to wait after the first signal before sending KILL; longer than --timeout is exit 2 [default: 30s, or --timeout when that is shorter]
    #[arg(long, env = "BG_GRACE", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Option<Duration>,

    /// How long in all before giving up with exit 1 (the port still busy)
    #[arg(long, env = "BG_TIMEOUT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Show what would be stopped; signal nothing
    #[arg(long, env = "BG_DRY_RUN")]
    pub dry_run: bool,

    /// The app's directory, as bg-ship's --deploy-path: once the port is free, the pid file
    /// there (app-PORT.pid) is removed when its process is gone, with bg-ship's record of the
    /// start beside it (app-PORT.json)
    #[arg(long, env = "BG_DEPLOY_PATH", value_parser = bg_core::cli::parse_host_path, value_name = "DIR")]
    pub deploy_path: Option<String>,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// A port, or nothing for an empty value: `--protect-port "$BG_ACTIVE_PORT"`
/// works on a first deploy, when bg-detect-port found no active port.
fn parse_protected_port(value: &str) -> Result<Option<u16>, String> {
    match value.trim() {
        "" => Ok(None),
        port => parse_port(port).map(Some),
    }
}

/// Why the port could not be freed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(
        "port {port} is protected (--protect-port): it is the active port; nothing was signalled"
    )]
    Protected { port: u16 },

    #[error(
        "port {port} is held by {hidden} socket(s) of a process this user cannot see (another user's); nothing was signalled"
    )]
    Hidden { port: u16, hidden: usize },

    #[error("port {port} is still busy after {}: {}", bg_core::log::duration(*after), describe(listeners))]
    StillBusy {
        port: u16,
        listeners: Vec<Listener>,
        after: Duration,
    },
}

impl Failure for StopError {
    fn code(&self) -> Code {
        match self {
            StopError::Protected { .. } => Code::Unsafe,
            StopError::Hidden { .. } | StopError::StillBusy { .. } => Code::Failed,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            StopError::Protected { .. } => {
                "stop the other port (bg-detect-port prints it), or switch traffic away first with bg-switch".to_string()
            }
            StopError::Hidden { .. } => {
                "run with --sudo (sudo -n must be allowed for this user) or as the app's user".to_string()
            }
            StopError::StillBusy { .. } => {
                "check what restarts it (systemd, supervisord, docker) and stop that; raise --timeout if shutdown is just slow".to_string()
            }
        })
    }
}

/// `TERM`, `SIGTERM`, `term`, `15` → `TERM`.
pub fn parse_signal(value: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let name = match name {
        "1" => "HUP",
        "2" => "INT",
        "3" => "QUIT",
        "9" => "KILL",
        "10" => "USR1",
        "12" => "USR2",
        "15" => "TERM",
        other => other,
    };
    match name {
        "HUP" | "INT" | "QUIT" | "KILL" | "USR1" | "USR2" | "TERM" => Ok(name.to_string()),
        _ => Err(format!(
            "{value:?} is not a signal this tool sends (TERM, INT, HUP, QUIT, USR1, USR2, KILL)"
        )),
    }
}

/// After a KILL, the least time we give the kernel to close the sockets.
const AFTER_KILL: Duration = Duration::from_secs(2);

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        let dry_run = self.dry_run;
        let report = self.stop()?;
        // As bg-switch says it: a script reading the env output can tell.
        Ok(if dry_run {
            report.field("DRY_RUN", true)
        } else {
            report
        })
    }
}

/// The grace without --grace.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

impl Cli {
    fn stop(self) -> bg_core::Result<Report> {
        let port = self.port;
        // Before we even connect: a protected port is never touched.
        if self.protect_ports.contains(&Some(port)) {
            return Err(StopError::Protected { port }.into());
        }
        let grace = match self.grace {
            Some(grace) if grace > self.timeout => {
                return Err(bg_core::UsageError::new(
                    format!(
                        "--grace {} is longer than --timeout {}: the KILL would never be sent in time",
                        humantime::format_duration(grace),
                        humantime::format_duration(self.timeout)
                    ),
                    "give a --timeout at least as long as --grace",
                )
                .into());
            }
            Some(grace) => grace,
            None => DEFAULT_GRACE.min(self.timeout),
        };
        let host = self.host.connect()?;
        let host = host.as_ref();
        let _lock = if self.dry_run {
            None
        } else {
            Some(host.lock(
                &self.lock.path("port", &port.to_string()),
                self.lock.lock_timeout,
                &holder_description("bg-stop-port"),
            )?)
        };

        // The look and the first signal are one command, and the stale pid
        // file goes with it: one round trip. A dry run only looks.
        let pid_file = self
            .deploy_path
            .as_deref()
            .filter(|_| !self.dry_run)
            .map(|dir| pid_file_of(dir, port));
        let start = Instant::now();
        let (found, signalled) = if self.dry_run {
            (find(host, port)?, None)
        } else {
            find_and_signal(host, port, &self.signal, grace, pid_file.as_deref())?
        };
        if found.sockets == 0 {
            bg_core::log::info(&format!(
                "nothing listens on port {port} on {}",
                host.name()
            ));
            return Ok(report(port, &[], &self.signal, false, "nothing listens on"));
        }
        if found.hidden > 0 || found.listeners.is_empty() {
            if !found.listeners.is_empty() {
                bg_core::log::warn(&format!(
                    "visible on port {port}: {}",
                    describe(&found.listeners)
                ));
            }
            return Err(StopError::Hidden {
                port,
                hidden: found.hidden.max(1),
            }
            .into());
        }
        if self.dry_run {
            bg_core::log::info(&format!(
                "dry run: would send SIG{} to {} on {}",
                self.signal,
                describe(&found.listeners),
                host.name()
            ));
            return Ok(report(
                port,
                &found.listeners,
                &self.signal,
                false,
                "would stop",
            ));
        }

        let deadline = start + self.timeout;
        let grace_end = start + grace;
        let mut killed = self.signal == "KILL";
        // The one command forgot the pid file when the port let go in time.
        let forgotten = signalled == Some(true);
        let mut free = match signalled {
            Some(free) => {
                bg_core::log::info(&format!(
                    "sent SIG{} to {} (port {port} on {})",
                    self.signal,
                    describe(&found.listeners),
                    host.name()
                ));
                free
            }
            None => {
                bg_core::log::info(&format!(
                    "sending SIG{} to {} (port {port} on {})",
                    self.signal,
                    describe(&found.listeners),
                    host.name()
                ));
                signal_and_wait(host, &self.signal, &found.pids(), port, grace_end)?
            }
        };
        if !free && !killed {
            let now = find(host, port)?;
            let mut pids = found.pids();
            for pid in now.pids() {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            bg_core::log::info(&format!(
                "port {port} still busy after {}; sending SIGKILL to {}",
                humantime::format_duration(grace),
                describe(&now.listeners)
            ));
            killed = true;
            free = signal_and_wait(
                host,
                "KILL",
                &pids,
                port,
                deadline.max(Instant::now() + AFTER_KILL),
            )?;
        }
        if !free && !wait_free(host, port, deadline.max(Instant::now() + AFTER_KILL))? {
            let left = find(host, port)?;
            return Err(StopError::StillBusy {
                port,
                listeners: left.listeners,
                after: start.elapsed(),
            }
            .into());
        }
        if let Some(file) = pid_file.as_deref()
            && !forgotten
        {
            // Only once the port is free: a stop that failed keeps the pid
            // file of an app that may still run.
            let forget = forget_cmd(file, &found.pids());
            match host.run(&forget) {
                Ok(output) => report_forgotten(Some(&output)),
                Err(e) => bg_core::log::warn(&format!("could not look at {file}: {e}")),
            }
        }
        bg_core::log::info(&format!(
            "port {port} is free after {}",
            humantime::format_duration(Duration::from_millis(start.elapsed().as_millis() as u64))
        ));
        Ok(report(
            port,
            &found.listeners,
            &self.signal,
            killed,
            "stopped",
        ))
    }
}

fn report(port: u16, listeners: &[Listener], signal: &str, killed: bool, verb: &str) -> Report {
    let text = if listeners.is_empty() {
        format!("{verb} port {port}")
    } else {
        format!("{verb} {} on port {port}", describe(listeners))
    };
    Report::new(text)
        .field("PORT", port)
        .field(
            "STOPPED_PIDS",
            listeners.iter().map(|l| l.pid).collect::<Vec<_>>(),
        )
        .field(
            "STOPPED_NAMES",
            listeners.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        )
        .field("SIGNAL", signal)
        .field("KILLED", killed)
}

/// `$1` signal, `$2` port as /proc writes it, `$3` tenths of a second to
/// wait, then the pids: one command (one round trip) signals, then waits
/// until nothing listens. `BG-KILL STATUS` first, kill's complaints on
/// stderr, then [`bg_core::listeners::WAIT_FREE_FUNCTION`]'s word.
const SIGNAL_AND_WAIT_SCRIPT: &str = r#"sig=$1 p=$2 n=$3; shift 3
kill -s "$sig" "$@"
echo "BG-KILL $?"
wait_free "$p" "$n"
"#;

/// Sends `sig` to `pids`, then waits until nothing listens on `port` or
/// `until` passes: `true` once free. A process that is already gone is not
/// an error, one we may not signal is (its own error, with its own hint:
/// --sudo).
fn signal_and_wait(
    host: &dyn Host,
    sig: &str,
    pids: &[u32],
    port: u16,
    until: Instant,
) -> Result<bool, HostError> {
    if pids.is_empty() {
        return wait_free(host, port, until);
    }
    let within = until.saturating_duration_since(Instant::now());
    let mut args = vec![
        sig.to_string(),
        listeners::proc_port(port),
        listeners::tenths(within),
    ];
    args.extend(pids.iter().map(u32::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script = format!(
        "# send a signal, wait for the port\n{}{SIGNAL_AND_WAIT_SCRIPT}",
        listeners::WAIT_FREE_FUNCTION
    );
    let cmd = Cmd::script(&script, &args)
        .privileged(true)
        .timeout(within + Duration::from_secs(30));
    let output = host.run(&cmd)?;
    // No /proc: a look at a time.
    signal_outcome(host, &cmd, output, || wait_free(host, port, until))
}

/// What a signal command's output says: `true` once the port was free. A
/// process that is already gone is not an error, one we may not signal is
/// (its own error, with its own hint: --sudo).
fn signal_outcome(
    host: &dyn Host,
    cmd: &Cmd,
    output: bg_core::host::Output,
    no_proc: impl FnOnce() -> Result<bool, HostError>,
) -> Result<bool, HostError> {
    let stdout = output.stdout_text();
    let Some(status) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BG-KILL "))
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return host.check(cmd, output).map(|_| false);
    };
    if status != 0 {
        let only_gone = output
            .stderr_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.contains("No such process"));
        if !only_gone {
            let kill = bg_core::host::Output {
                code: Some(status),
                ..output
            };
            return host.check(cmd, kill).map(|_| false);
        }
    }
    if output.code == Some(100) && output.signal.is_none() {
        return no_proc();
    }
    let output = host.check(cmd, output)?;
    Ok(output.stdout_text().lines().any(|l| l == "FREE"))
}

/// `$1` a pid file, then the pids just stopped: the file is removed, with
/// the record beside it (`.json`), when it names one of them (a JVM lets go
/// of its port before its shutdown ends) or a process that is gone (or a
/// zombie). Prints `BG-FORGOT FILE` when it removed it.
const FORGET_FUNCTION: &str = r#"forget() (
f=$1; shift
[ -f "$f" ] || exit 0
pid=$(head -n 1 -- "$f" 2>/dev/null)
case $pid in ''|*[!0-9]*) exit 0 ;; esac
stopped=
for p in "$@"; do [ "$p" = "$pid" ] && stopped=1; done
if [ -z "$stopped" ]; then
  # Gone: a zombie, or no such process (not merely one we may not signal,
  # or cannot see in a /proc mounted with hidepid).
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
  if [ "$state" != Z ]; then
    why=$(LC_ALL=C kill -0 "$pid" 2>&1) && exit 0
    case $why in *[Nn]o\ such\ process*) ;; *) exit 0 ;; esac
  fi
fi
rm -f -- "$f" "${f%.pid}.json" && printf 'BG-FORGOT %s\n' "$f"
)
"#;

/// The pid file bg-ship writes for `port` in `dir`.
fn pid_file_of(dir: &str, port: u16) -> String {
    let dir = dir.trim_end_matches('/');
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{dir}/app-{port}.pid")
}

/// [`FORGET_FUNCTION`] for `pid_file`, and the pids just stopped.
fn forget_cmd(pid_file: &str, stopped: &[u32]) -> Cmd {
    let mut args = vec![pid_file.to_string()];
    args.extend(stopped.iter().map(u32::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let script =
        format!("# forget the pid file of a stopped process\n{FORGET_FUNCTION}forget \"$@\"\n");
    Cmd::script(&script, &args)
}

/// `$1` signal, `$2` port as /proc writes it, `$3` tenths of a second to
/// wait, `$4` the app's pid file (or empty): finds who listens on the port
/// ([`listeners::find_function`]'s output, then `BG-FOUND-END`); when it
/// sees every listening socket's process, signals them all and waits until
/// the port is free, as [`SIGNAL_AND_WAIT_SCRIPT`] does; then forgets the pid
/// file of a stopped or dead app. Nothing listening, or a socket whose
/// process it cannot see: no signal (the caller says what it found).
const FIND_AND_SIGNAL_SCRIPT: &str = r#"sig=$1 p=$2 n=$3 pidfile=$4
found=$(find_listeners "$p"); rc=$?
[ "$rc" = 0 ] || exit "$rc"
printf '%s\nBG-FOUND-END\n' "$found"
inodes=$(printf '%s\n' "$found" | sed '/^BG-OWNERS$/,$d' |
  awk -v p="$p" '$4 == "0A" && $10 != "0" { n = split($2, a, ":"); if (a[n] "" == p "") print $10 }' | sort -u)
owners=$(printf '%s\n' "$found" | sed '1,/^BG-OWNERS$/d')
pids=
for i in $inodes; do
  o=$(printf '%s\n' "$owners" | awk -v i="$i" '$2 == i { print $1 }')
  if [ -z "$o" ]; then inodes=; pids=; break; fi
  pids="$pids $o"
done
if [ -z "$pids" ]; then
  [ -z "$pidfile" ] || forget "$pidfile"
  exit 0
fi
pids=$(printf '%s\n' $pids | sort -u)
err=$(LC_ALL=C kill -s "$sig" $pids 2>&1); k=$?
[ -z "$err" ] || printf '%s\n' "$err" >&2
echo "BG-KILL $k"
state=$(wait_free "$p" "$n")
printf '%s\n' "$state"
# Forgotten only when the stop worked: the port is free, and every kill
# reached its process or found it gone.
if [ -n "$pidfile" ] && [ "$state" = FREE ] &&
  { [ "$k" = 0 ] || ! printf '%s\n' "$err" | grep -v -i 'no such process' | grep -q .; }; then
  forget "$pidfile" $pids
fi
exit 0
"#;

/// The look and the first signal in one command ([`FIND_AND_SIGNAL_SCRIPT`]):
/// what listens, and `Some(free)` when it was signalled (`free`: the port
/// let go within `grace`). Without /proc: a look the other ways, no signal.
fn find_and_signal(
    host: &dyn Host,
    port: u16,
    sig: &str,
    grace: Duration,
    pid_file: Option<&str>,
) -> Result<(Found, Option<bool>), HostError> {
    let script = format!(
        "# find who listens on a port, and signal them\n{}{}{FORGET_FUNCTION}{FIND_AND_SIGNAL_SCRIPT}",
        listeners::find_function(),
        listeners::WAIT_FREE_FUNCTION
    );
    let args = [
        sig.to_string(),
        listeners::proc_port(port),
        listeners::tenths(grace),
        pid_file.unwrap_or("").to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = Cmd::script(&script, &args)
        .privileged(true)
        .timeout(grace + Duration::from_secs(30));
    let output = host.run(&cmd)?;
    if output.code == Some(100) && output.signal.is_none() {
        let found = find(host, port)?;
        if let Some(file) = pid_file
            && found.sockets == 0
        {
            report_forgotten(Some(&host.run(&forget_cmd(file, &[]))?));
        }
        return Ok((found, None));
    }
    let text = output.stdout_text();
    // The marker as a whole line: a process's name cannot fake it.
    let Some((look, after)) = text.split_once("\nBG-FOUND-END\n") else {
        return host.check(&cmd, output).map(|_| (Found::default(), None));
    };
    let found = listeners::parse_found(look, port);
    report_forgotten(Some(&output));
    if !after.lines().any(|l| l.starts_with("BG-KILL ")) {
        host.check(&cmd, output)?;
        return Ok((found, None));
    }
    // The look found /proc, so its wait had it too.
    let free = signal_outcome(host, &cmd, output, || Ok(false))?;
    Ok((found, Some(free)))
}

/// Says what [`FORGET_SCRIPT`] removed; a failure to look is only a warning.
fn report_forgotten(output: Option<&bg_core::host::Output>) {
    let Some(output) = output else { return };
    let text = output.stdout_text();
    for file in text.lines().filter_map(|l| l.strip_prefix("BG-FORGOT ")) {
        bg_core::log::info(&format!("removed {file}: its process is gone"));
    }
    if !output.success() {
        bg_core::log::warn(&format!(
            "could not look at the app's pid file: {}",
            output.stderr_text().trim()
        ));
    }
}

/// Waits until nothing listens on `port` (`true`) or `until` passes (`false`).
fn wait_free(host: &dyn Host, port: u16, until: Instant) -> Result<bool, HostError> {
    bg_core::listeners::wait_free(host, port, until.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        for (given, name) in [
            ("TERM", "TERM"),
            ("sigterm", "TERM"),
            ("SIGKILL", "KILL"),
            ("15", "TERM"),
            ("9", "KILL"),
            ("hup", "HUP"),
            (" INT ", "INT"),
        ] {
            assert_eq!(parse_signal(given).unwrap(), name, "{given}");
        }
        for bad in ["", "STOP", "SIG", "99", "TERM; rm -rf /"] {
            assert!(parse_signal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn protected_is_exit_3_and_busy_is_exit_1() {
        assert_eq!(StopError::Protected { port: 8000 }.code(), Code::Unsafe);
        let busy = StopError::StillBusy {
            port: 8001,
            listeners: vec![Listener {
                pid: 42,
                name: "java".into(),
            }],
            after: Duration::from_secs(60),
        };
        assert_eq!(busy.code(), Code::Failed);
        assert_eq!(
            busy.to_string(),
            "port 8001 is still busy after 1m: pid 42 (java)"
        );
        assert!(
            StopError::Hidden { port: 1, hidden: 1 }
                .hint()
                .unwrap()
                .contains("--sudo")
        );
    }

    #[test]
    fn reports_list_pids_for_env() {
        let listeners = [
            Listener {
                pid: 12,
                name: "java".into(),
            },
            Listener {
                pid: 34,
                name: "java".into(),
            },
        ];
        let env = report(8001, &listeners, "TERM", true, "stopped").render(bg_core::Format::Env);
        assert!(env.contains("BG_STOPPED_PIDS=12,34\n"), "{env}");
        let none = report(8001, &[], "TERM", false, "nothing listens on");
        assert!(
            none.render(bg_core::Format::Env)
                .contains("BG_STOPPED_PIDS=\n")
        );
        assert_eq!(none.text, "nothing listens on port 8001");
    }
}
