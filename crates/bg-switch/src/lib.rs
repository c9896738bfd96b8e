//! `bg-switch`: points nginx at a port, and never leaves it half-switched.
//!
//! Replaces the seed's `unlink dev_8000 && ln -s dev_8001 && systemctl
//! reload nginx`, which ran no `nginx -t`, left nothing enabled when `ln`
//! failed, could not undo a bad reload, and let two builds switch at once.
//!
//! The order: lock the site, read the state, change the files (one rename at
//! a time, see [`change`]), `nginx -t`, reload, verify through nginx. Any
//! failure after the change puts the previous state back (and reloads again
//! if nginx had already loaded the new one). Every switch, done or undone, is
//! one line in the history file.

pub mod change;
pub mod history;
mod transaction;

use std::time::{Duration, Instant};

use bg_core::cli::{HostArgs, LockArgs, OutputArgs, TlsArgs, parse_duration, parse_port};
use bg_core::host::{Host, Output};
use bg_core::layout::{self, LayoutArgs, LayoutError, State};
use bg_core::reload::Reload;
use bg_core::{Cmd, Code, Failure, HostError, Report, UsageError, log};
use clap::Parser;
use serde_json::{Value, json};

use change::Change;

/// How long a test or reload command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Make PORT the port nginx sends traffic to: validated, reloaded, verified, rolled back on failure.
///
/// Symlink layout: enables the sites-available file whose content routes to PORT in place of the
/// other. Managed layout (--upstream-file): rewrites the upstream file with PORT primary and the
/// other port as backup. Then runs the test command and reloads; any failure puts the previous
/// state back and exits 1. PORT already active: exit 0, nothing touched.
#[derive(Debug, Parser)]
#[command(name = "bg-switch", version, max_term_width = 100)]
pub struct Cli {
    /// The port to make active: the blue or the green port
    #[arg(long, env = "BG_PORT", value_parser = parse_port, value_name = "PORT", required_unless_present = "previous")]
    pub port: Option<u16>,

    /// Switch back to the other color (a rollback), only when its app is alive and --url answers
    /// healthy there; else exit 3, nothing changed
    #[arg(long)]
    pub previous: bool,

    /// With --previous: the other color's health URL, probed from here before any change;
    /// {port} is filled with its port (e.g. http://10.0.0.5:{port}/actuator/health)
    #[arg(long, env = "BG_URL", value_name = "URL")]
    pub url: Option<String>,

    /// With --url: healthy statuses, a list or ranges (200,204,300-399)
    #[arg(
        long,
        env = "BG_EXPECT_STATUS",
        default_value = "200-299",
        value_name = "LIST"
    )]
    pub expect_status: bg_core::http::StatusSet,

    /// With --url: a regex the body must match
    #[arg(long, env = "BG_EXPECT_BODY", value_name = "REGEX")]
    pub expect_body: Option<regex::Regex>,

    /// Checks nginx's configuration after the change, before the reload
    #[arg(
        long,
        env = "BG_TEST_CMD",
        default_value = "nginx -t",
        value_name = "CMD"
    )]
    pub test_cmd: String,

    /// Makes nginx load the configuration [default: `systemctl reload nginx` where systemd runs, else `nginx -s reload`]
    #[arg(long, env = "BG_RELOAD_CMD", value_name = "CMD")]
    pub reload_cmd: Option<String>,

    /// Managed layout: an app host nginx dials, listed at PORT as primary and at the other port as
    /// backup; repeat it for several [default: the hosts already in the file, else 127.0.0.1]
    #[arg(
        long = "app-host",
        env = "BG_APP_HOST",
        value_delimiter = ',',
        value_name = "ADDR"
    )]
    pub app_hosts: Vec<String>,

    /// Managed layout: write the upstream file when none exists yet (else that is exit 3)
    #[arg(long, env = "BG_INIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub init: bool,

    /// Switch even when nothing answers at the target port's addresses (checked from the nginx
    /// host before any change; a dead target is exit 3)
    #[arg(long, env = "BG_NO_TARGET_CHECK", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_target_check: bool,

    /// After the reload, this URL through nginx must answer 2xx, or the switch is undone (exit 1)
    #[arg(long, env = "BG_VERIFY_URL", value_name = "URL")]
    pub verify_url: Option<String>,

    /// How long to wait for --verify-url to answer 2xx
    #[arg(long, env = "BG_VERIFY_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub verify_timeout: Duration,

    /// The response header in which the site names the server that answered (`add_header
    /// X-Upstream $upstream_addr always;`): a --verify-url answer from another port fails the
    /// verify. Empty: not checked
    #[arg(
        long,
        env = "BG_UPSTREAM_HEADER",
        default_value = "X-Upstream",
        value_name = "NAME"
    )]
    pub upstream_header: String,

    /// How long --verify-url must keep answering 2xx: for a moment after a reload, nginx's old
    /// workers still serve the previous port
    #[arg(long, env = "BG_VERIFY_SETTLE", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub verify_settle: Duration,

    // For an https --verify-url or --url.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// What --verify-url and --url trust, read from `tls` once, before anything changes.
    #[arg(skip)]
    trust: bg_core::http::Trust,

    /// nginx's pid file on the nginx host: after the reload, wait until that master runs new
    /// workers (it has taken the configuration); missing or unreadable: no wait
    #[arg(
        long,
        env = "BG_NGINX_PID_FILE",
        default_value = "/run/nginx.pid",
        value_parser = bg_core::cli::parse_host_path,
        value_name = "FILE"
    )]
    pub nginx_pid_file: String,

    /// How long nginx may take to run new workers after the reload command returns
    #[arg(long, env = "BG_RELOAD_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub reload_timeout: Duration,

    /// One JSON line per switch is appended here, on the nginx host [default: /var/lib/bg/SITE.history.jsonl]
    #[arg(long, env = "BG_HISTORY_FILE", value_parser = bg_core::cli::parse_host_path, value_name = "FILE")]
    pub history_file: Option<String>,

    /// The version going live, for the history line (gradle-version's BG_VERSION) [default: as
    /// bg-ship recorded it in --deploy-path, else as the history last saw the port]
    #[arg(long, env = "BG_VERSION", value_parser = bg_core::cli::parse_name, value_name = "VERSION")]
    pub app_version: Option<String>,

    /// The app's directory, when nginx runs on the app host: the jar and version bg-ship recorded
    /// there for each port (app-PORT.json) go into the history line
    #[arg(long, env = "BG_DEPLOY_PATH", value_parser = bg_core::cli::parse_host_path, value_name = "DIR")]
    pub deploy_path: Option<String>,

    /// Say what would change, and change nothing
    #[arg(long, env = "BG_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new())]
    pub dry_run: bool,

    #[command(flatten)]
    pub layout: LayoutArgs,

    #[command(flatten, next_help_heading = "Locking")]
    pub lock: LockArgs,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,

    /// What the history line says beyond the switch itself: its kind, and
    /// the version and jar on each side (found by [`Cli::run`]).
    #[arg(skip)]
    pub history_extra: serde_json::Map<String, Value>,
}

/// How a failed switch ended: was the previous state put back?
#[derive(Debug)]
pub enum Undone {
    /// Back as it was.
    Restored,
    /// Nothing was changed in the first place.
    Untouched,
    /// Putting it back failed: the site needs a hand.
    Failed { error: String, manual: String },
}

impl Undone {
    fn text(&self, from: Option<u16>) -> String {
        match self {
            Undone::Restored => format!("the previous state ({}) is back", port_text(from)),
            Undone::Untouched => format!("nothing was changed ({} as before)", port_text(from)),
            Undone::Failed { error, .. } => {
                format!("putting the previous state back FAILED too: {error}")
            }
        }
    }

    fn hint(&self, otherwise: String) -> String {
        match self {
            Undone::Restored | Undone::Untouched => otherwise,
            Undone::Failed { manual, .. } => {
                format!("fix it by hand now: {manual}, then run the test command and reload nginx")
            }
        }
    }

    fn result(&self) -> &'static str {
        match self {
            Undone::Restored => "rolled back",
            Undone::Untouched => "refused",
            Undone::Failed { .. } => "rollback failed",
        }
    }
}

fn port_text(port: Option<u16>) -> String {
    match port {
        Some(port) => format!("port {port}"),
        None => "nothing enabled".to_string(),
    }
}

/// Why a switch did not happen or was undone.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("--port {port} is neither the blue port {blue} nor the green port {green}")]
    NotAColor { port: u16, blue: u16, green: u16 },

    #[error("the upstream file {path} does not exist")]
    NoUpstreamFile { path: String },

    #[error(
        "nothing answers at port {port} ({what}); nginx would send traffic to a dead app, so nothing was changed"
    )]
    TargetDown { port: u16, what: String },

    #[error(
        "--previous: nothing is active on site {site}, so there is no other color to go back to"
    )]
    NothingActive { site: String },

    #[error("port {port} ({color}) is not healthy at {url}: {seen}; nothing was changed")]
    Unhealthy {
        port: u16,
        color: &'static str,
        url: String,
        seen: String,
    },

    #[error("{path} holds more than `upstream {name}`: {what}")]
    NotManaged {
        path: String,
        name: String,
        what: String,
    },

    #[error("nginx rejected the configuration with port {to} active (`{cmd}` {}); {}", output.status_text(), undone.text(*from))]
    Rejected {
        from: Option<u16>,
        to: u16,
        cmd: String,
        output: Box<Output>,
        undone: Undone,
    },

    #[error("reloading nginx failed (`{cmd}` {}); {}{}", output.status_text(), undone.text(*from), reload_again.as_ref().map(|e| format!(", but reloading it again failed too: {e}")).unwrap_or_else(|| " and reloaded".to_string()))]
    ReloadFailed {
        from: Option<u16>,
        cmd: String,
        output: Box<Output>,
        undone: Undone,
        reload_again: Option<String>,
    },

    #[error("nginx did not take the configuration with port {to} active within {} of `{cmd}` (no new worker processes; it saw: {workers}); {}{}", humantime::format_duration(*after), undone.text(*from), reload_again.as_ref().map(|e| format!(", but reloading it again failed too: {e}")).unwrap_or_else(|| " and reloaded".to_string()))]
    NotReloaded {
        from: Option<u16>,
        to: u16,
        cmd: String,
        after: Duration,
        workers: String,
        undone: Undone,
        reload_again: Option<String>,
    },

    #[error("{url} did not answer 2xx through nginx with port {to} active within {} (last: {last}); {}{}", humantime::format_duration(*timeout), undone.text(*from), reload_again.as_ref().map(|e| format!(", but reloading nginx failed: {e}")).unwrap_or_else(|| " and reloaded".to_string()))]
    VerifyFailed {
        url: String,
        from: Option<u16>,
        to: u16,
        timeout: Duration,
        last: String,
        undone: Undone,
        reload_again: Option<String>,
    },

    #[error("{during} failed: {error}; {}", undone.text(*from))]
    Interrupted {
        during: &'static str,
        from: Option<u16>,
        error: HostError,
        undone: Undone,
    },
}

impl Failure for SwitchError {
    fn code(&self) -> Code {
        match self {
            SwitchError::NotAColor { .. } => Code::Usage,
            SwitchError::NoUpstreamFile { .. }
            | SwitchError::NotManaged { .. }
            | SwitchError::TargetDown { .. }
            | SwitchError::NothingActive { .. }
            | SwitchError::Unhealthy { .. } => Code::Unsafe,
            SwitchError::Rejected { .. }
            | SwitchError::ReloadFailed { .. }
            | SwitchError::NotReloaded { .. }
            | SwitchError::VerifyFailed { .. } => Code::Failed,
            SwitchError::Interrupted { error, .. } => match error.code() {
                Code::Busy => Code::Failed,
                other => other,
            },
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SwitchError::NotAColor { blue, green, .. } => {
                format!("pass --port {blue} or --port {green}, or set --blue-port/--green-port")
            }
            SwitchError::NoUpstreamFile { .. } => {
                "check --upstream-file, or pass --init to write the first one".to_string()
            }
            SwitchError::NothingActive { .. } => {
                "check the site's files with bg-detect-port; switch with --port PORT".to_string()
            }
            SwitchError::Unhealthy { port, .. } => format!(
                "the app on port {port} cannot take the traffic: start it again (bg-ship, then bg-healthcheck) or deploy a fixed build"
            ),
            SwitchError::TargetDown { port, .. } => format!(
                "start the app on port {port} first (bg-ship, then bg-healthcheck), or pass --no-target-check to switch anyway"
            ),
            SwitchError::NotManaged { path, .. } => format!(
                "bg-switch rewrites all of {path}: move everything but the upstream block to another file"
            ),
            SwitchError::Rejected { undone, .. } => undone.hint(
                "fix what nginx reports above in the site file, check it with the test command, then switch again".into(),
            ),
            SwitchError::ReloadFailed { undone, .. } => undone.hint(
                "see the reload command's output above; check that nginx runs and --reload-cmd is right".into(),
            ),
            SwitchError::NotReloaded { undone, .. } => undone.hint(
                "nginx's error log says why the master kept its old configuration (a port it cannot bind, a file it cannot read); fix that, then switch again".into(),
            ),
            SwitchError::VerifyFailed { undone, last, .. }
                if bg_core::http::is_tls_reason(last) =>
            {
                undone.hint(
                    "nginx's certificate was not accepted: fix it or its trust as the last answer says, then switch again"
                        .into(),
                )
            }
            SwitchError::VerifyFailed { undone, to, .. } => undone.hint(format!(
                "check the app on port {to} (bg-healthcheck) and the URL, then switch again"
            )),
            SwitchError::Interrupted { undone, error, .. } => {
                undone.hint(error.hint().unwrap_or_else(|| "run again".into()))
            }
        })
    }

    fn details(&self) -> Option<String> {
        match self {
            SwitchError::Rejected { output, .. } | SwitchError::ReloadFailed { output, .. } => {
                let text = format!("{}{}", output.stderr_text(), output.stdout_text());
                let text = text.trim_end();
                (!text.is_empty()).then(|| text.to_string())
            }
            SwitchError::Interrupted { error, .. } => error.details(),
            _ => None,
        }
    }
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(mut self) -> bg_core::Result<Report> {
        self.check()?;
        if self.verify_url.is_some() || self.url.is_some() {
            self.trust = self.tls.trust()?;
        }
        let host = self.host.connect()?;
        let host = host.as_ref();
        if self.dry_run {
            return self.dry_run(host);
        }
        let site = &self.layout.site.clone();
        let lock_path = self.lock.path("switch", site);
        let _lock = host.lock(
            &lock_path,
            self.lock.lock_timeout,
            &bg_core::host::holder_description("bg-switch"),
        )?;
        log::debug(&format!("holding {lock_path} on {}", host.name()));
        // Left by a run that was killed between changing the files and
        // finishing: nginx may not have loaded what the files say.
        let pending_path = format!("{lock_path}.pending");
        // The marker and the site's files, read in one command; nothing is
        // written until `plan` below is done with them.
        let mut ahead = self.layout.usual_files();
        ahead.push(pending_path.clone());
        let records = self.record_paths();
        ahead.extend(records.iter().map(|(_, path)| path.clone()));
        let history_tail = history::tail_cmd(&self.history_path());
        let mut commands = self.layout.usual_commands();
        commands.push(history_tail.clone());
        let read = bg_core::host::Prefetched::with_commands(host, &ahead, true, &commands);
        let interrupted = read.read_file(&pending_path, false)?;

        let state = layout::read_state(&read, &self.layout)?;
        log::debug(&state.describe(&self.layout));
        let from = state.active();
        self.resolve_previous(from)?;
        let past = read
            .answer(&history_tail)
            .map(|output| history::parse(&output.stdout_text()))
            .unwrap_or_default();
        let mut known = std::collections::HashMap::new();
        for (port, path) in &records {
            if let Ok(Some(bytes)) = read.read_file(path, false) {
                known.insert(*port, history::Record::parse(&bytes));
            }
        }
        self.history_extra = history::fields(&history::Inputs {
            past: &past,
            records: &known,
            from,
            to: self.port(),
            version: self.app_version.as_deref(),
            rollback: self.previous,
        });
        if from == Some(self.port()) {
            let Some(note) = interrupted else {
                log::info(&format!(
                    "site {site}: port {} ({}) is already active; nothing to do",
                    self.port(),
                    self.layout.color(self.port())
                ));
                return Ok(self.report(from, from, false));
            };
            log::warn(&format!(
                "a previous run was interrupted while switching ({}); loading the files as they are now",
                String::from_utf8_lossy(&note).trim()
            ));
            self.history_extra
                .insert("kind".into(), Value::from("finish"));
            // Where the interrupted run came from: the way back on a failure.
            let came_from = serde_json::from_slice::<Value>(&note)
                .ok()
                .and_then(|v| v["from"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| {
                    *p != self.port()
                        && (*p == self.layout.blue_port || *p == self.layout.green_port)
                });
            let back = match came_from {
                Some(port) => self.plan_to(&read, &state, port).ok(),
                None => None,
            };
            match back.as_ref().and_then(Steps::finish) {
                // Everything a switch does: test, reload, wait for the new
                // workers, verify, record; back to where it came from on failure.
                Some(steps) => {
                    let note = String::from_utf8_lossy(&note).into_owned();
                    let (result, recorded) =
                        self.switch_in_one_go(host, &steps, came_from, &pending_path, &note);
                    if !recorded {
                        self.record_result(host, came_from, &result, &pending_path);
                    }
                    result?;
                }
                // Nothing known to go back to (a first switch): test and reload.
                None => {
                    self.finish_interrupted(host)?;
                    remove(host, &pending_path);
                }
            }
            let mut report = self.report(from, from, false);
            report.text = format!(
                "site {site}: port {} was already set in the files; nginx tested and reloaded to serve it",
                self.port()
            );
            return Ok(report);
        }
        if let Some(url) = &self.url
            && let Err(e) = self.gate(url)
        {
            self.record(host, from, "refused", Some(e.to_string()), None);
            return Err(e);
        }
        let change = self.plan(&read, &state)?;
        log::info(&format!(
            "site {site}: switching from {} to port {} ({})",
            port_text(from),
            self.port(),
            self.layout.color(self.port())
        ));
        log::debug(&change.describe());
        let note = json!({"from": from, "to": self.port(), "time": now()}).to_string();
        let (result, recorded) = match Steps::of(&change) {
            Some(mut steps) => {
                steps.check = self.target_check(&read, &state)?;
                self.switch_in_one_go(host, &steps, from, &pending_path, &note)
            }
            None => {
                if let Err(e) = host.write_file_atomic(&pending_path, note.as_bytes(), 0o644, false)
                {
                    log::warn(&format!("cannot write {pending_path}: {e}"));
                }
                (self.switch(host, &change, from), false)
            }
        };
        if !recorded {
            self.record_result(host, from, &result, &pending_path);
        }
        result?;
        log::info(&format!(
            "site {site}: port {} ({}) is active",
            self.port(),
            self.layout.color(self.port())
        ));
        Ok(self.report(from, Some(self.port()), true))
    }
}

/// What the host's one command does and undoes, as shell lines, and what
/// to tell when the undo fails.
#[derive(Debug)]
struct Steps {
    apply: String,
    undo: String,
    /// Where killed runs' temporary files may be.
    temp_dir: String,
    /// Checks that the target answers; empty: no check.
    check: String,
    /// `finish` for an interrupted run's files: every undo reloads.
    mode: &'static str,
    /// One line for logs.
    describe: String,
    /// How to put the previous state back by hand.
    manual: String,
}

impl Steps {
    /// `change` and its exact undo; `None` when its bytes cannot go on a
    /// command line (then the steps run one by one).
    fn of(change: &Change) -> Option<Steps> {
        Some(Steps {
            apply: change.apply_line()?,
            undo: change.undo_line()?,
            temp_dir: change.temp_dir(),
            check: String::new(),
            mode: "",
            describe: change.describe().lines().next().unwrap_or("").to_string(),
            manual: change.manual_undo(),
        })
    }

    /// Files that already say what we want, left by an interrupted run:
    /// nothing to change; on a failure, `back` (the change to the port the
    /// interrupted run came from) puts the previous state back.
    fn finish(back: &Change) -> Option<Steps> {
        Some(Steps {
            apply: "true".to_string(),
            undo: back.apply_line()?,
            temp_dir: back.temp_dir(),
            check: String::new(),
            mode: "finish",
            describe: "keep the files as they are".to_string(),
            manual: format!(
                "to go back, {}",
                back.describe().lines().next().unwrap_or("")
            ),
        })
    }
}

fn error_result(error: &SwitchError) -> &'static str {
    match error {
        SwitchError::Rejected { undone, .. }
        | SwitchError::ReloadFailed { undone, .. }
        | SwitchError::NotReloaded { undone, .. }
        | SwitchError::VerifyFailed { undone, .. }
        | SwitchError::Interrupted { undone, .. } => undone.result(),
        SwitchError::NotAColor { .. }
        | SwitchError::NoUpstreamFile { .. }
        | SwitchError::NotManaged { .. }
        | SwitchError::TargetDown { .. }
        | SwitchError::NothingActive { .. }
        | SwitchError::Unhealthy { .. } => "refused",
    }
}

/// Reloads nginx again after the files were put back: `None` when that
/// worked, else what went wrong, for the error line.
fn reload_again(host: &dyn Host, reload_cmd: &str) -> Option<String> {
    log::debug(&format!("$ {reload_cmd}"));
    let reload = Cmd::shell(reload_cmd)
        .privileged(true)
        .timeout(COMMAND_TIMEOUT);
    match host.run(&reload) {
        Ok(output) if output.success() => None,
        Ok(output) => Some(format!(
            "`{reload_cmd}` {}: {}",
            output.status_text(),
            output.stderr_text().trim()
        )),
        Err(e) => Some(e.to_string()),
    }
}

fn remove(host: &dyn Host, path: &str) {
    let cmd = Cmd::script("# remove a file\nrm -f -- \"$1\"\n", &[path]);
    if let Err(e) = host.run_ok(&cmd) {
        log::warn(&format!("cannot remove {path}: {e}"));
    }
}

/// How long the one probe before a gated switch may take.
const GATE_TIMEOUT: Duration = Duration::from_secs(5);

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Cli {
    /// The target: `--port`, or with `--previous` the other color, once
    /// [`Cli::run`] has read which is active.
    fn port(&self) -> u16 {
        self.port
            .expect("--port given, or --previous resolved first")
    }

    fn check(&self) -> Result<(), Box<dyn Failure>> {
        self.layout.check()?;
        if self.previous && self.url.is_none() {
            return Err(bg_core::UsageError::new(
                "--previous switches only to a healthy app, and needs --url to check it",
                "add --url http://APP_HOST:{port}/actuator/health (the other color's port is filled in)",
            )
            .into());
        }
        let (blue, green) = (self.layout.blue_port, self.layout.green_port);
        if let Some(port) = self.port
            && port != blue
            && port != green
        {
            return Err(SwitchError::NotAColor { port, blue, green }.into());
        }
        if let Some(url) = &self.url {
            // Checked with a port in place of {port}.
            bg_core::http::check_url(&url.replace("{port}", "1")).map_err(|why| {
                UsageError::new(
                    format!("--url: {why}"),
                    "give --url as http://APP_HOST:{port}/PATH (or https://), {port} filled in for you",
                )
            })?;
        }
        if let Some(url) = &self.verify_url {
            bg_core::http::check_url(url).map_err(|why| {
                UsageError::new(
                    why,
                    "give --verify-url as http://HOST:PORT/PATH (or https://) of nginx",
                )
            })?;
        }
        if let Some(bad) = self.app_hosts.iter().find(|h| !change::valid_host(h)) {
            return Err(UsageError::new(
                format!("{bad:?} is not an address for an upstream server"),
                "give --app-host as an IP address or a host name, e.g. 10.0.0.5",
            )
            .into());
        }
        if self.test_cmd.trim().is_empty() {
            return Err(UsageError::new(
                "--test-cmd is empty",
                "leave it out for `nginx -t`, or give the command that checks nginx's configuration",
            )
            .into());
        }
        Ok(())
    }

    /// The result: `active` is the port active afterwards (in a dry run,
    /// still the current one, which may be none).
    fn report(&self, from: Option<u16>, active: Option<u16>, changed: bool) -> Report {
        let site = &self.layout.site;
        let text = match (changed, self.dry_run) {
            (true, _) => format!(
                "site {site}: port {} is active, was {}",
                self.port(),
                port_text(from)
            ),
            (false, true) if from != Some(self.port()) => format!(
                "site {site}: would switch from {} to port {} (dry run, nothing changed)",
                port_text(from),
                self.port()
            ),
            (false, _) => format!(
                "site {site}: port {} was already active, nothing changed",
                self.port()
            ),
        };
        let port = |p: Option<u16>| p.map_or(Value::Null, Value::from);
        let report = Report::new(text)
            .field("PREVIOUS_PORT", port(from))
            .field("ACTIVE_PORT", port(active))
            .field("CHANGED", changed);
        if self.dry_run {
            report.field("DRY_RUN", true)
        } else {
            report
        }
    }

    fn dry_run(&mut self, host: &dyn Host) -> bg_core::Result<Report> {
        let state = layout::read_state(host, &self.layout)?;
        log::info(&state.describe(&self.layout));
        let from = state.active();
        self.resolve_previous(from)?;
        if from != Some(self.port())
            && let Some(url) = &self.url
        {
            self.gate(url)?;
        }
        if from == Some(self.port()) {
            log::info(&format!(
                "port {} is already active; nothing would change",
                self.port()
            ));
            return Ok(self.report(from, from, false));
        }
        let change = self.plan(host, &state)?;
        log::info(&format!("would {}", change.describe()));
        log::info(&format!(
            "would then run `{}` and `{}`",
            self.test_cmd,
            self.reload_cmd
                .as_deref()
                .unwrap_or("systemctl reload nginx (or nginx -s reload)")
        ));
        Ok(self.report(from, from, false))
    }

    /// The change that makes `self.port()` active.
    fn plan(&self, host: &dyn Host, state: &State) -> bg_core::Result<Change> {
        self.plan_to(host, state, self.port())
    }

    /// The change that makes `port` active.
    fn plan_to(&self, host: &dyn Host, state: &State, port: u16) -> bg_core::Result<Change> {
        let args = &self.layout;
        match state {
            State::Symlink { enabled } => {
                let before = match enabled {
                    None => None,
                    Some(enabled) => match &enabled.link {
                        Some(target) => Some((enabled.name.clone(), target.clone())),
                        None => {
                            let path = layout::join(&args.sites_enabled, &enabled.name);
                            return Err(LayoutError::unsafe_state(
                                format!("{path} is a regular file, not a link to sites-available"),
                                format!(
                                    "bg-switch switches links: replace it with `ln -sfn {}/FILE {path}` for the file that routes to {}",
                                    args.sites_available, enabled.port
                                ),
                            )
                            .into());
                        }
                    },
                };
                let (file, route) = layout::available_for(host, args, port)?;
                log::debug(&format!("{file} routes to {route}"));
                Ok(Change::relink(host, args, before, &file)?)
            }
            State::Managed {
                path,
                contents,
                routing,
                ..
            } => {
                if contents.is_none() && !self.init {
                    return Err(SwitchError::NoUpstreamFile { path: path.clone() }.into());
                }
                if let Some(routing) = routing {
                    let extra: Vec<String> = routing
                        .other_top_level
                        .iter()
                        .map(|d| format!("`{}` on line {}", d.name, d.line))
                        .chain(
                            routing
                                .upstreams
                                .iter()
                                .filter(|u| u.name != args.upstream_name)
                                .map(|u| format!("`upstream {}` on line {}", u.name, u.line)),
                        )
                        .collect();
                    if !extra.is_empty() {
                        return Err(SwitchError::NotManaged {
                            path: path.clone(),
                            name: args.upstream_name.clone(),
                            what: extra.join(", "),
                        }
                        .into());
                    }
                }
                let hosts = self.app_hosts_for(routing.as_ref());
                let text = change::upstream_file(
                    &args.upstream_name,
                    &hosts,
                    port,
                    args.other(port),
                    routing.as_ref(),
                );
                Ok(Change::Rewrite {
                    path: path.clone(),
                    before: contents.clone(),
                    after: text.into_bytes(),
                })
            }
        }
    }

    /// `--app-host`, else the hosts the file lists now, else 127.0.0.1.
    fn app_hosts_for(&self, routing: Option<&bg_core::nginx::Routing>) -> Vec<String> {
        if !self.app_hosts.is_empty() {
            return self
                .app_hosts
                .iter()
                .map(|h| change::format_host(h))
                .collect();
        }
        let mut hosts: Vec<String> = Vec::new();
        if let Some(upstream) = routing.and_then(|r| r.upstream(&self.layout.upstream_name)) {
            for server in &upstream.servers {
                if !hosts.contains(&server.address.host) {
                    hosts.push(server.address.host.clone());
                }
            }
        }
        if hosts.is_empty() {
            hosts.push("127.0.0.1".to_string());
        }
        hosts
    }

    /// Change, test, reload, verify; on any failure, undo.
    #[allow(
        clippy::result_large_err,
        reason = "called once per run; the error is the run's result"
    )]
    fn switch(
        &self,
        host: &dyn Host,
        change: &Change,
        from: Option<u16>,
    ) -> Result<(), SwitchError> {
        let undo = || match change.undo(host) {
            Ok(()) => Undone::Restored,
            Err(e) => Undone::Failed {
                error: e.to_string(),
                manual: change.manual_undo(),
            },
        };
        if let Err(error) = change.apply(host) {
            return Err(SwitchError::Interrupted {
                during: "changing the files",
                from,
                error,
                undone: undo(),
            });
        }
        let test = Cmd::shell(&self.test_cmd)
            .privileged(true)
            .timeout(COMMAND_TIMEOUT);
        log::debug(&format!("$ {}", self.test_cmd));
        let output = match host.run(&test) {
            Ok(output) => output,
            Err(error) => {
                return Err(SwitchError::Interrupted {
                    during: "running the test command",
                    from,
                    error,
                    undone: undo(),
                });
            }
        };
        if !output.success() {
            return Err(SwitchError::Rejected {
                from,
                to: self.port(),
                cmd: self.test_cmd.clone(),
                output: Box::new(output),
                undone: undo(),
            });
        }
        let reload_cmd = match self.reload_command(host) {
            Ok(cmd) => cmd,
            Err(error) => {
                return Err(SwitchError::Interrupted {
                    during: "finding the reload command",
                    from,
                    error,
                    undone: undo(),
                });
            }
        };
        let reload_again = || reload_again(host, &reload_cmd);
        // Past the reload, a failed step puts the files back and reloads again.
        let broken = |during: &'static str, error: HostError| {
            let undone = undo();
            let _ = reload_again();
            SwitchError::Interrupted {
                during,
                from,
                error,
                undone,
            }
        };
        log::debug(&format!("$ {reload_cmd}"));
        let reloaded = bg_core::reload::reload(
            host,
            &reload_cmd,
            &self.nginx_pid_file,
            self.reload_timeout,
            COMMAND_TIMEOUT,
        );
        let (output, found) = match reloaded {
            Ok(reloaded) => reloaded,
            Err(error) => return Err(broken("reloading nginx", error)),
        };
        match found {
            None => {
                let undone = undo();
                return Err(SwitchError::ReloadFailed {
                    from,
                    cmd: reload_cmd.clone(),
                    output: Box::new(output),
                    reload_again: reload_again(),
                    undone,
                });
            }
            Some(Reload::Done) => log::debug("nginx runs new workers: the configuration is loaded"),
            // Said by default: without it, a reload that nginx did not take
            // would look like one that it did.
            Some(Reload::Unknown) => log::info(&format!(
                "no nginx master found through {} on {} (--nginx-pid-file): the reload cannot be confirmed by new workers",
                self.nginx_pid_file,
                host.name()
            )),
            Some(Reload::NotYet { workers }) => {
                let undone = undo();
                return Err(SwitchError::NotReloaded {
                    from,
                    to: self.port(),
                    cmd: reload_cmd.clone(),
                    after: self.reload_timeout,
                    workers,
                    reload_again: reload_again(),
                    undone,
                });
            }
        }
        if let Some(url) = &self.verify_url
            && let Err(last) = self.verify(url)
        {
            let undone = undo();
            return Err(SwitchError::VerifyFailed {
                url: url.clone(),
                from,
                to: self.port(),
                timeout: self.verify_timeout,
                last,
                reload_again: reload_again(),
                undone,
            });
        }
        Ok(())
    }

    /// The switch as one command on the host ([`transaction`]), then the
    /// verify from here. `true` beside the result when the host recorded
    /// it (and removed the marker) itself.
    #[allow(
        clippy::result_large_err,
        clippy::too_many_arguments,
        reason = "called once per run; the error is the run's result"
    )]
    fn switch_in_one_go(
        &self,
        host: &dyn Host,
        steps: &Steps,
        from: Option<u16>,
        pending_path: &str,
        note: &str,
    ) -> (Result<(), SwitchError>, bool) {
        let (apply, undo_line) = (steps.apply.as_str(), steps.undo.as_str());
        let history = self.history_path();
        let mut line = json!({
            "time": now(),
            "site": self.layout.site,
            "from": from,
            "to": self.port(),
            "actor": bg_core::actor(),
        });
        line.as_object_mut()
            .expect("an object")
            .extend(self.history_extra.clone());
        let mut line = line.to_string();
        line.pop();
        line.push_str(",\"result\":\"");
        let seconds = self
            .reload_timeout
            .as_secs_f64()
            .ceil()
            .clamp(1.0, 86_400.0)
            .to_string();
        let reload_cmd = self
            .reload_cmd
            .clone()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_default();
        let record = if self.verify_url.is_some() {
            ""
        } else {
            "record"
        };
        let script = transaction::script();
        let cmd = Cmd::script(
            &script,
            &[
                pending_path,
                note,
                apply,
                undo_line,
                &self.test_cmd,
                &reload_cmd,
                &self.nginx_pid_file,
                &seconds,
                &history,
                &line,
                record,
                &steps.temp_dir,
                &steps.check,
                steps.mode,
            ],
        )
        .privileged(true)
        .timeout(COMMAND_TIMEOUT * 3 + self.reload_timeout);
        log::debug(&format!(
            "$ {} && {} && {} (one command on {})",
            steps.describe,
            self.test_cmd,
            self.reload_cmd.as_deref().unwrap_or("reload"),
            host.name()
        ));
        let output = match host.run(&cmd) {
            Ok(output) => output,
            Err(error) => {
                // The host finishes or rolls back on its own; what it did
                // is not known here. The marker tells the next run.
                return (
                    Err(SwitchError::Interrupted {
                        during: "switching on the host",
                        from,
                        error,
                        undone: Undone::Failed {
                            error: "the connection ended before the host said how the switch went"
                                .to_string(),
                            manual: steps.manual.clone(),
                        },
                    }),
                    true,
                );
            }
        };
        for removed in output
            .stderr_text()
            .lines()
            .filter_map(|l| l.strip_prefix("BG-TX removed "))
        {
            log::info(&format!("removed {removed}, left by a run that was killed"));
        }
        let outcome = transaction::parse(&output.stdout_text());
        if let Some(check) = outcome.step("check") {
            match check.code {
                Some(1) => {
                    let what = check.stderr_text().trim().to_string();
                    let what = what.strip_prefix("nothing answers at ").unwrap_or(&what);
                    return (
                        Err(SwitchError::TargetDown {
                            port: self.port(),
                            what: what.trim().to_string(),
                        }),
                        false,
                    );
                }
                Some(0) => log::debug(&format!("port {} answers", self.port())),
                _ => log::warn(&format!(
                    "could not check that port {} answers on {}: {}",
                    self.port(),
                    host.name(),
                    check.stderr_text().trim()
                )),
            }
        }
        if outcome.marker_written == Some(false) {
            log::warn(&format!("cannot write {pending_path}"));
        }
        if outcome.recorded == Some(false) {
            log::warn(&format!("the switch was not recorded in {history}"));
        }
        let recorded = outcome.recorded.is_some();
        let reload_cmd = outcome.reload_cmd.clone().unwrap_or(reload_cmd);
        let undone = || match outcome.step("undo") {
            Some(undo) if undo.success() => Undone::Restored,
            Some(undo) => Undone::Failed {
                error: format!("{}: {}", undo.status_text(), undo.stderr_text().trim()),
                manual: steps.manual.clone(),
            },
            None => Undone::Failed {
                error: "the host did not say".to_string(),
                manual: steps.manual.clone(),
            },
        };
        let again = || {
            outcome.step("again").and_then(|again| {
                (!again.success()).then(|| {
                    format!(
                        "`{reload_cmd}` {}: {}",
                        again.status_text(),
                        again.stderr_text().trim()
                    )
                })
            })
        };
        let failed = |step: &str| outcome.step(step).filter(|o| !o.success());
        if let Some(apply) = failed("apply") {
            let error = host
                .check(&Cmd::new("change the files"), apply.clone())
                .err()
                .unwrap_or_else(|| HostError::Command {
                    host: host.name().to_string(),
                    command: "change the files".to_string(),
                    output: Box::new(apply.clone()),
                });
            return (
                Err(SwitchError::Interrupted {
                    during: "changing the files",
                    from,
                    error,
                    undone: undone(),
                }),
                recorded,
            );
        }
        if let Some(test) = failed("test") {
            return (
                Err(SwitchError::Rejected {
                    from,
                    to: self.port(),
                    cmd: self.test_cmd.clone(),
                    output: Box::new(test.clone()),
                    undone: undone(),
                }),
                recorded,
            );
        }
        if let Some(reload) = failed("reload") {
            return (
                Err(SwitchError::ReloadFailed {
                    from,
                    cmd: reload_cmd.clone(),
                    output: Box::new(reload.clone()),
                    reload_again: again(),
                    undone: undone(),
                }),
                recorded,
            );
        }
        match outcome.reload() {
            Some(Reload::Done) => log::debug("nginx runs new workers: the configuration is loaded"),
            Some(Reload::Unknown) => log::info(&format!(
                "no nginx master found through {} on {} (--nginx-pid-file): the reload cannot be confirmed by new workers",
                self.nginx_pid_file,
                host.name()
            )),
            Some(Reload::NotYet { workers }) => {
                return (
                    Err(SwitchError::NotReloaded {
                        from,
                        to: self.port(),
                        cmd: reload_cmd.clone(),
                        after: self.reload_timeout,
                        workers,
                        reload_again: again(),
                        undone: undone(),
                    }),
                    recorded,
                );
            }
            None if outcome.steps.is_empty() && outcome.marker_written.is_none() => {
                // It never started (sudo wanted a password, no temporary
                // directory): nothing was changed.
                return (
                    Err(SwitchError::Interrupted {
                        during: "starting the switch on the host",
                        from,
                        error: host.check(&cmd, output).err().unwrap_or_else(|| {
                            HostError::Command {
                                host: host.name().to_string(),
                                command: cmd.to_string(),
                                output: Box::default(),
                            }
                        }),
                        undone: Undone::Untouched,
                    }),
                    false,
                );
            }
            None => {
                // The script ended before its reload: killed, or it could
                // not start. Its own words say why.
                return (
                    Err(SwitchError::Interrupted {
                        during: "switching on the host",
                        from,
                        error: HostError::Command {
                            host: host.name().to_string(),
                            command: cmd.to_string(),
                            output: Box::new(output),
                        },
                        undone: Undone::Failed {
                            error: "the host's switch ended early".to_string(),
                            manual: steps.manual.clone(),
                        },
                    }),
                    recorded,
                );
            }
        }
        if let Some(url) = &self.verify_url
            && let Err(last) = self.verify(url)
        {
            let undo = Cmd::shell(undo_line)
                .privileged(true)
                .timeout(COMMAND_TIMEOUT);
            let undone = match host.run_ok(&undo) {
                Ok(_) => Undone::Restored,
                Err(e) => Undone::Failed {
                    error: e.to_string(),
                    manual: steps.manual.clone(),
                },
            };
            let reload_again = reload_again(host, &reload_cmd);
            return (
                Err(SwitchError::VerifyFailed {
                    url: url.clone(),
                    from,
                    to: self.port(),
                    timeout: self.verify_timeout,
                    last,
                    reload_again,
                    undone,
                }),
                false,
            );
        }
        (Ok(()), recorded)
    }

    /// The shell line that checks, from the nginx host, that the target's
    /// addresses answer; empty with --no-target-check, or when the layout
    /// names none we can read.
    fn target_check(&self, host: &dyn Host, state: &State) -> bg_core::Result<String> {
        if self.no_target_check {
            return Ok(String::new());
        }
        let addresses: Vec<bg_core::nginx::Address> = match state {
            State::Symlink { .. } => {
                let (file, _) = layout::available_for(host, &self.layout, self.port())?;
                let path = layout::join(&self.layout.sites_available, &file);
                let text = host
                    .read_file(&path, true)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                bg_core::nginx::read(&text)
                    .map(|routing| bg_core::nginx::addresses_at(&routing, self.port()))
                    .unwrap_or_default()
            }
            State::Managed { routing, .. } => self
                .app_hosts_for(routing.as_ref())
                .into_iter()
                .map(|host| bg_core::nginx::Address {
                    host,
                    port: self.port(),
                })
                .collect(),
        };
        if addresses.is_empty() {
            return Ok(String::new());
        }
        let mut args: Vec<String> = Vec::new();
        for address in &addresses {
            args.push(address.host.clone());
            args.push(address.port.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(Cmd::script(transaction::CHECK_SCRIPT, &args).to_shell_line(false)?)
    }

    /// Records how a switch ended, when the host did not, and removes the
    /// marker unless it must stay: after a failed undo the files are in
    /// doubt, so the marker stays for the next run to test and reload what
    /// it finds; a run refused before any change wrote no marker, so one
    /// that is there is another run's, and stays too.
    fn record_result(
        &self,
        host: &dyn Host,
        from: Option<u16>,
        result: &Result<(), SwitchError>,
        pending_path: &str,
    ) {
        let (outcome, reason) = match result {
            Ok(()) => ("done", None),
            Err(error) => (error_result(error), Some(error.to_string())),
        };
        let done_with =
            (outcome != "rollback failed" && outcome != "refused").then_some(pending_path);
        self.record(host, from, outcome, reason, done_with);
    }

    /// With `--previous`, the target is the color that is not active.
    fn resolve_previous(&mut self, active: Option<u16>) -> Result<(), Box<dyn Failure>> {
        if !self.previous {
            return Ok(());
        }
        let site = &self.layout.site;
        let Some(active) = active else {
            return Err(SwitchError::NothingActive { site: site.clone() }.into());
        };
        let other = if active == self.layout.blue_port {
            self.layout.green_port
        } else {
            self.layout.blue_port
        };
        // A --port (or BG_PORT, which a pipeline may export) that says
        // otherwise is a contradiction, not something to pick from.
        if let Some(given) = self.port
            && given != other
        {
            return Err(bg_core::UsageError::new(
                format!("--previous goes to port {other}, but --port (or BG_PORT) says {given}"),
                "give one of them: --previous alone, or --port PORT",
            )
            .into());
        }
        log::info(&format!(
            "site {site}: port {active} is active; going back to port {other} ({})",
            self.layout.color(other)
        ));
        self.port = Some(other);
        Ok(())
    }

    /// bg-ship's record of each port's start, when the app's directory is
    /// on this host (`--deploy-path`).
    fn record_paths(&self) -> Vec<(u16, String)> {
        let Some(dir) = &self.deploy_path else {
            return Vec::new();
        };
        let dir = dir.trim_end_matches('/');
        [self.layout.blue_port, self.layout.green_port]
            .into_iter()
            .map(|port| (port, format!("{dir}/app-{port}.json")))
            .collect()
    }

    /// One probe of the target's app at `url` (`{port}` filled in), from
    /// here, before anything changes: healthy, or why not.
    fn gate(&self, url: &str) -> Result<(), Box<dyn Failure>> {
        let port = self.port();
        let url = url.replace("{port}", &port.to_string());
        log::info(&format!("checking port {port} at {url} before the switch"));
        let probe = bg_core::http::Probe::with_trust(GATE_TIMEOUT, &self.trust);
        let seen = match probe.get(&url) {
            bg_core::http::Answer::Status { status, body }
                if self.expect_status.contains(status)
                    && self
                        .expect_body
                        .as_ref()
                        .is_none_or(|re| re.is_match(&body)) =>
            {
                log::info(&format!("port {port} is healthy (status {status})"));
                return Ok(());
            }
            bg_core::http::Answer::Status { status, body }
                if self.expect_status.contains(status) =>
            {
                let start: String = body.trim().chars().take(80).collect();
                format!("status {status}, but the body does not match --expect-body: {start}")
            }
            bg_core::http::Answer::Status { status, body } => {
                let start: String = body.trim().chars().take(80).collect();
                format!("status {status} {start}").trim_end().to_string()
            }
            bg_core::http::Answer::NoAnswer { reason } => reason,
        };
        Err(SwitchError::Unhealthy {
            port,
            color: self.layout.color(port),
            url,
            seen,
        }
        .into())
    }

    fn history_path(&self) -> String {
        self.history_file
            .clone()
            .unwrap_or_else(|| format!("/var/lib/bg/{}.history.jsonl", self.layout.site))
    }

    /// Re-runs test and reload for files a killed run left switched.
    fn finish_interrupted(&self, host: &dyn Host) -> Result<(), Box<dyn Failure>> {
        let test = Cmd::shell(&self.test_cmd)
            .privileged(true)
            .timeout(COMMAND_TIMEOUT);
        host.run_ok(&test)?;
        let reload_cmd = self.reload_command(host)?;
        host.run_ok(
            &Cmd::shell(&reload_cmd)
                .privileged(true)
                .timeout(COMMAND_TIMEOUT),
        )?;
        Ok(())
    }

    fn reload_command(&self, host: &dyn Host) -> Result<String, HostError> {
        if let Some(cmd) = self.reload_cmd.as_deref().filter(|c| !c.trim().is_empty()) {
            return Ok(cmd.to_string());
        }
        let systemd = host
            .run(&Cmd::script(
                "# is systemd running\n[ -d /run/systemd/system ]\n",
                &[],
            ))?
            .success();
        Ok(if systemd {
            "systemctl reload nginx".to_string()
        } else {
            "nginx -s reload".to_string()
        })
    }

    /// Polls the URL until it has answered 2xx for `verify_settle` without a
    /// break. Old workers keep serving the previous config for a moment after
    /// a reload (nginx waits 100 ms before telling them to stop), so one 2xx
    /// right after the reload may come from the previous port.
    fn verify(&self, url: &str) -> Result<(), String> {
        let probe = bg_core::http::Probe::with_trust(
            self.verify_timeout
                .clamp(Duration::from_millis(500), Duration::from_secs(5)),
            &self.trust,
        );
        let deadline = Instant::now() + self.verify_timeout;
        let mut good_since: Option<Instant> = None;
        let mut last: String;
        let mut said_who = false;
        let header = self.upstream_header.as_str();
        log::info(&format!("verifying {url} through nginx"));
        loop {
            let (answer, upstream) = probe.get_with_header(url, header);
            let now = Instant::now();
            // Which port answered, when the site says so: a 2xx from the
            // other port is nginx falling back to the backup, not a switch.
            let elsewhere = upstream.as_deref().and_then(|value| {
                let port = bg_core::http::upstream_port(value)?;
                (port != self.port()).then(|| value.to_string())
            });
            if !said_who
                && !header.is_empty()
                && matches!(answer, bg_core::http::Answer::Status { .. })
            {
                said_who = true;
                if upstream.is_none() {
                    log::info(&format!(
                        "{url} does not say which port answered (no {header} header): add `add_header {header} $upstream_addr always;` to the site's server block, and the verify checks it"
                    ));
                }
            }
            match &answer {
                bg_core::http::Answer::Status { status, .. }
                    if (200..300).contains(status) && elsewhere.is_some() =>
                {
                    good_since = None;
                    last = format!(
                        "status {status} from {} ({header}), not port {}: nginx sent it to the backup",
                        elsewhere.unwrap_or_default(),
                        self.port()
                    );
                }
                bg_core::http::Answer::Status { status, .. } if (200..300).contains(status) => {
                    let since = *good_since.get_or_insert(now);
                    last = format!("status {status}");
                    if now.duration_since(since) >= self.verify_settle {
                        log::debug(&format!("{url} answered {status}"));
                        return Ok(());
                    }
                }
                bg_core::http::Answer::Status { status, body } => {
                    good_since = None;
                    let start: String = body.trim().chars().take(80).collect();
                    last = format!("status {status} {start}");
                }
                bg_core::http::Answer::NoAnswer { reason } => {
                    good_since = None;
                    last = reason.clone();
                }
            }
            // A run of 2xx that began in time may finish; anything else stops at the deadline.
            if now >= deadline && good_since.is_none() {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Appends the history line, and removes the marker `pending` when
    /// given: one command on the host. A failure to record does not undo a
    /// switch.
    fn record(
        &self,
        host: &dyn Host,
        from: Option<u16>,
        result: &str,
        reason: Option<String>,
        pending: Option<&str>,
    ) {
        let path = self.history_path();
        let mut line = json!({
            "time": now(),
            "site": self.layout.site,
            "from": from,
            "to": self.port(),
            "actor": bg_core::actor(),
        });
        line.as_object_mut()
            .expect("an object")
            .extend(self.history_extra.clone());
        line["result"] = Value::from(result);
        if let Some(reason) = reason {
            line["reason"] = Value::from(reason);
        }
        let line = line.to_string();
        let cmd =
            Cmd::script(RECORD_SCRIPT, &[&path, &line, pending.unwrap_or("")]).privileged(true);
        match host.run(&cmd) {
            Ok(output) if output.code == Some(0) => {}
            Ok(output) if output.code == Some(3) => log::warn(&format!(
                "cannot remove {}: {}",
                pending.unwrap_or(""),
                output.stderr_text().trim()
            )),
            Ok(output) => log::warn(&format!(
                "the switch was not recorded in {path}: {}",
                output.stderr_text().trim()
            )),
            Err(e) => log::warn(&format!("the switch was not recorded in {path}: {e}")),
        }
    }
}

/// `$1` the history file, `$2` its new line, `$3` the marker to remove (or
/// empty), each tried whatever became of the other. Exit 1 when the line
/// could not be appended, 3 when only the marker could not be removed.
const RECORD_SCRIPT: &str = r#"# record the switch
dir=$(dirname -- "$1") && mkdir -p -- "$dir" && printf '%s\n' "$2" >> "$1"
recorded=$?
removed=0
[ -z "$3" ] || rm -f -- "$3" || removed=1
[ "$recorded" = 0 ] || exit 1
[ "$removed" = 0 ] || exit 3
"#;
