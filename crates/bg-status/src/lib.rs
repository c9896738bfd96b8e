//! `bg-status`: what runs on each color, and whether nginx serves it now.
//!
//! After a deploy the operator had `bg-detect-port -v` (what the files say)
//! and `ps`, `cat app-8001.pid`, `curl` by hand. This reads it all at once:
//! per color the port, its role in the nginx files, whether nginx has loaded
//! those files (its workers started after the files last changed) and so
//! serves it, the listening process and the pid file, the jar and version
//! bg-ship recorded, one health probe; bg-switch's marker of an unfinished
//! switch and any held lock. It changes nothing on any host: every look is
//! a read, locks included (see [`look`]).
//!
//! `--history [N]` prints the last switches from bg-switch's history file.

pub mod history;
pub mod look;
pub mod table;

use std::time::Duration;

use bg_core::cli::{
    HostArgs, LockArgs, OutputArgs, TlsArgs, parse_host_path, parse_positive_duration,
};
use bg_core::host::{Host, Prefetched};
use bg_core::http::{Answer, Probe, StatusSet};
use bg_core::layout::{self, LayoutArgs, LayoutError, State};
use bg_core::listeners::Found;
use bg_core::nginx::Route;
use bg_core::{Cmd, Code, Failure, Format, HostError, Report, UsageError, log};
use clap::Parser;
use serde_json::{Map, Value};

use look::{AppSeen, Clock, LockSeen, NginxSeen};
use table::Table;

/// Show, for the blue and the green port, what runs there and whether nginx serves it now.
///
/// Reads the nginx files (as bg-detect-port does) and whether nginx has loaded them (its workers
/// started after the files last changed), the process listening on each port, bg-ship's pid file
/// and record (jar, version) in --deploy-path, bg-switch's marker of an unfinished switch and any
/// held lock; probes each port once with --health-url. Changes nothing anywhere. With --history,
/// prints the last switches instead.
#[derive(Debug, Parser)]
#[command(name = "bg-status", version, max_term_width = 100)]
pub struct Cli {
    /// The app's directory on the app host, where bg-ship writes app-PORT.pid and app-PORT.json
    /// [default: none: no pid file, jar or version is shown]
    #[arg(long, env = "BG_DEPLOY_PATH", value_parser = parse_host_path, value_name = "DIR")]
    pub deploy_path: Option<String>,

    /// Probe each port once at this URL, {port} standing for it (e.g.
    /// http://10.0.0.5:{port}/actuator/health), from where bg-status runs
    #[arg(long, env = "BG_HEALTH_URL", value_name = "TEMPLATE")]
    pub health_url: Option<String>,

    /// Statuses of --health-url that count as healthy: a list or ranges, e.g. 200,204,300-399
    #[arg(
        long,
        env = "BG_EXPECT_STATUS",
        default_value = "200-299",
        value_name = "SET"
    )]
    pub expect_status: StatusSet,

    /// How long each probe may take
    #[arg(long, env = "BG_HEALTH_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub health_timeout: Duration,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Exit 1 unless a port is active, nginx has loaded the files that say so, no switch is
    /// pending, and the active port's app listens (and, with --health-url, answers healthy)
    #[arg(long, env = "BG_CHECK", value_parser = clap::builder::BoolishValueParser::new())]
    pub check: bool,

    /// Print the last N switches from bg-switch's history file instead [default N: 10]
    #[arg(
        long,
        env = "BG_HISTORY",
        num_args = 0..=1,
        default_missing_value = "10",
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        value_name = "N",
        conflicts_with = "check"
    )]
    pub history: Option<u32>,

    /// bg-switch's history file on the nginx host [default: /var/lib/bg/SITE.history.jsonl]
    #[arg(long, env = "BG_HISTORY_FILE", value_parser = parse_host_path, value_name = "FILE")]
    pub history_file: Option<String>,

    /// nginx's pid file on the nginx host: when its master's workers started tells whether nginx
    /// has loaded the files; unreadable: that is not known
    #[arg(
        long,
        env = "BG_NGINX_PID_FILE",
        default_value = "/run/nginx.pid",
        value_parser = parse_host_path,
        value_name = "FILE"
    )]
    pub nginx_pid_file: String,

    /// Where bg-switch keeps its lock and marker (nginx host) and bg-ship and bg-stop-port their
    /// locks (app host)
    #[arg(long, env = "BG_LOCK_DIR", default_value = "/tmp", value_parser = parse_host_path, value_name = "DIR")]
    pub lock_dir: String,

    #[command(flatten)]
    pub layout: LayoutArgs,

    /// The app host, where it is not --host (the nginx host): reached with the same SSH options
    #[arg(
        long,
        env = "BG_APP_SSH_HOST",
        value_name = "[USER@]HOST[:PORT]",
        help_heading = "Host"
    )]
    pub app_ssh_host: Option<String>,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `--check` found the active port not served as it should be.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{why}")]
    Check { why: String, report: Box<Report> },
}

impl Failure for StatusError {
    fn code(&self) -> Code {
        match self {
            StatusError::Check { .. } => Code::Failed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StatusError::Check { .. } => Some(
                "the table above shows each port; `bg-status --history` shows the last switches"
                    .to_string(),
            ),
        }
    }

    fn report(&self) -> Option<&Report> {
        match self {
            StatusError::Check { report, .. } => Some(report),
        }
    }
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        self.layout.check()?;
        let health = self.health_template()?;
        if let Some(lines) = self.history {
            return self.history(lines);
        }
        // The probes go out while the hosts are read.
        let ports = [self.layout.blue_port, self.layout.green_port];
        // A bad --cacert is bad input, before anything else happens.
        let trust = match &health {
            Some(_) => Some(self.tls.trust()?),
            None => None,
        };
        let probes = health.zip(trust).map(|(template, trust)| {
            let probe = Probe::with_trust(self.health_timeout, &trust);
            ports.map(|port| {
                let (probe, url) = (probe.clone(), template.replace("{port}", &port.to_string()));
                std::thread::spawn(move || probe.get(&url))
            })
        });
        let (nginx, apps) = self.look()?;
        let health = probes.map(|[blue, green]| {
            [blue, green].map(|handle| {
                handle.join().unwrap_or_else(|_| Answer::NoAnswer {
                    reason: "the probe failed".to_string(),
                })
            })
        });
        let status = self.status(nginx, apps, health);
        let report = status.report(self.output.format);
        match status.problems.first() {
            Some(why) if self.check => Err(StatusError::Check {
                why: why.clone(),
                report: Box::new(report),
            }
            .into()),
            _ => {
                for problem in &status.problems {
                    log::warn(problem);
                }
                Ok(report)
            }
        }
    }
}

/// What the nginx host showed.
#[derive(Debug)]
struct NginxView {
    state: State,
    route: Option<Route>,
    /// bg-switch's marker of a switch that did not finish, as JSON.
    pending: Option<Value>,
    pending_path: String,
    seen: NginxSeen,
    /// When the files that say what is active last changed.
    files_changed: Option<f64>,
}

/// What the app host showed about one port.
#[derive(Debug, Default)]
struct AppView {
    found: Found,
    pid_file: Option<u32>,
    pid_file_alive: bool,
    /// The first listener's start, seconds since the epoch, and its age.
    started: Option<(f64, f64)>,
    record: Option<Map<String, Value>>,
    notes: Vec<String>,
    lock: LockSeen,
}

impl Cli {
    /// The health URL template, checked: it must name `{port}`.
    fn health_template(&self) -> Result<Option<String>, UsageError> {
        let Some(template) = self.health_url.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if !template.contains("{port}") {
            return Err(UsageError::new(
                format!("--health-url {template:?} does not name {{port}}"),
                "write the port as {port}, e.g. --health-url 'http://10.0.0.5:{port}/actuator/health'",
            ));
        }
        bg_core::http::check_url(&template.replace("{port}", &self.layout.blue_port.to_string()))
            .map_err(|why| {
            UsageError::new(
                format!("--health-url: {why}"),
                "give a URL like http://HOST:{port}/PATH",
            )
        })?;
        Ok(Some(template.to_string()))
    }

    fn lock_args(&self) -> LockArgs {
        LockArgs {
            lock_timeout: Duration::ZERO,
            lock_dir: self.lock_dir.clone(),
        }
    }

    /// The app host's flags: `--app-ssh-host` where given, else `--host`'s.
    fn app_host(&self) -> Option<HostArgs> {
        let app = self.app_ssh_host.as_deref().filter(|h| !h.is_empty())?;
        if Some(app) == self.host.host.as_deref() {
            return None;
        }
        let mut args = self.host.clone();
        args.host = Some(app.to_string());
        Some(args)
    }

    fn files(&self, port: u16, ext: &str) -> Option<String> {
        let dir = self.deploy_path.as_deref().filter(|d| !d.is_empty())?;
        Some(layout::join(dir, &format!("app-{port}.{ext}")))
    }

    /// Reads both hosts, each in one round trip; two hosts at the same time.
    fn look(&self) -> bg_core::Result<(NginxView, [AppView; 2])> {
        let site_lock = self.lock_args().path("switch", &self.layout.site);
        let pending_path = format!("{site_lock}.pending");
        let mut nginx_files = self.layout.usual_files();
        nginx_files.push(pending_path.clone());
        let nginx_cmd = look::nginx_cmd(
            &self.nginx_pid_file,
            self.layout.managed_file(),
            &self.layout.sites_enabled,
            &site_lock,
        );
        let mut nginx_cmds = self.layout.usual_commands();
        nginx_cmds.push(nginx_cmd.clone());

        let ports = [self.layout.blue_port, self.layout.green_port];
        let pid_files = ports.map(|p| self.files(p, "pid").unwrap_or_default());
        let records: Vec<String> = ports
            .iter()
            .filter_map(|p| self.files(*p, "json"))
            .collect();
        let locks = ports.map(|p| self.lock_args().path("port", &p.to_string()));
        let apps_cmd = look::apps_cmd(
            ports,
            [&pid_files[0], &pid_files[1]],
            [&locks[0], &locks[1]],
        );

        let read_nginx =
            |host: &dyn Host| read_nginx(host, &self.layout, pending_path.clone(), &nginx_cmd);
        let read_apps =
            |host: &dyn Host| read_apps(host, ports, |p| self.files(p, "json"), &apps_cmd);

        let Some(app_args) = self.app_host() else {
            // One host: one round trip for everything.
            let host = self.host.connect()?;
            let mut files = nginx_files;
            files.extend(records);
            let mut cmds = nginx_cmds;
            cmds.push(apps_cmd.clone());
            let read = Prefetched::with_commands(host.as_ref(), &files, true, &cmds);
            let nginx = read_nginx(&read)?;
            let apps = read_apps(&read)?;
            return Ok((nginx, apps));
        };
        let (nginx, apps) = std::thread::scope(|scope| {
            let apps = scope.spawn(|| -> Result<[AppView; 2], HostError> {
                let host = app_args.connect()?;
                let cmds = [apps_cmd.clone()];
                let read = Prefetched::with_commands(host.as_ref(), &records, true, &cmds);
                read_apps(&read)
            });
            let nginx = (|| -> Result<NginxView, LayoutError> {
                let host = self.host.connect()?;
                let read =
                    Prefetched::with_commands(host.as_ref(), &nginx_files, true, &nginx_cmds);
                read_nginx(&read)
            })();
            let apps = apps.join().unwrap_or_else(|_| {
                Err(HostError::Command {
                    host: "the app host".to_string(),
                    command: "look at the apps".to_string(),
                    output: Box::default(),
                })
            });
            (nginx, apps)
        });
        Ok((nginx?, apps?))
    }

    fn history_path(&self) -> String {
        self.history_file
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| format!("/var/lib/bg/{}.history.jsonl", self.layout.site))
    }

    /// `--history N`: the last N lines of the history file, as a table.
    fn history(&self, lines: u32) -> bg_core::Result<Report> {
        let host = self.host.connect()?;
        let path = self.history_path();
        let cmd = Cmd::script(TAIL_SCRIPT, &[&path, &lines.to_string()]).privileged(true);
        let output = host.run(&cmd)?;
        let text = match output.code {
            Some(100) if output.signal.is_none() => {
                log::info(&format!(
                    "no switch recorded yet: {path} does not exist on {}",
                    host.name()
                ));
                String::new()
            }
            Some(101) if output.signal.is_none() => {
                return Err(UsageError::new(
                    format!("{path} is a directory, not bg-switch's history file"),
                    "check --history-file (bg-switch's, on the nginx host)",
                )
                .into());
            }
            _ => host.check(&cmd, output)?.stdout_text(),
        };
        let read = history::parse(&text);
        if read.skipped > 0 {
            log::warn(&format!(
                "{} of the last {lines} lines of {path} are not JSON objects; skipped",
                read.skipped
            ));
        }
        let mut report = Report::new(if read.entries.is_empty() {
            format!("no switch recorded in {path}")
        } else {
            history::table(&read).trim_end().to_string()
        });
        match self.output.format {
            Format::Json => {
                report = report.field(
                    "HISTORY",
                    Value::Array(read.entries.into_iter().map(Value::Object).collect()),
                );
            }
            Format::Env | Format::Text => {
                report = report.field("HISTORY_COUNT", read.entries.len());
                let last = read.entries.last();
                for (key, name) in history::LAST_FIELDS {
                    let value = last
                        .and_then(|e| e.get(name))
                        .cloned()
                        .unwrap_or(Value::Null);
                    report = report.field(key, value);
                }
            }
        }
        Ok(report)
    }

    fn status(&self, nginx: NginxView, apps: [AppView; 2], health: Option<[Answer; 2]>) -> Status {
        let active = nginx.state.active();
        let loaded = loaded(&nginx);
        let [blue_app, green_app] = apps;
        let health = health.map(|[b, g]| [Some(b), Some(g)]).unwrap_or_default();
        let [blue_health, green_health] = health;
        let colors = [
            ("blue", self.layout.blue_port, blue_app, blue_health),
            ("green", self.layout.green_port, green_app, green_health),
        ]
        .map(|(name, port, app, health)| {
            let role = match (&nginx.route, active) {
                (_, Some(a)) if a == port => Role::Active,
                (Some(route), _) if route.backup.contains(&port) => Role::Backup,
                _ => Role::Unused,
            };
            ColorStatus {
                name,
                port,
                role,
                nginx: match (role, loaded) {
                    (Role::Unused, _) => Nginx::Unused,
                    (_, Some(false)) => Nginx::NotLoaded,
                    (_, None) => Nginx::Unknown,
                    (Role::Active, Some(true)) => Nginx::Serving,
                    (Role::Backup, Some(true)) => Nginx::Standby,
                },
                health: health.map(|answer| Health::of(answer, &self.expect_status)),
                app,
            }
        });
        let mut status = Status {
            site: self.layout.site.clone(),
            layout: if self.layout.managed_file().is_some() {
                "managed"
            } else {
                "symlink"
            },
            described: nginx.state.describe(&self.layout),
            active,
            loaded,
            loaded_at: nginx.seen.loaded_at,
            files_changed: nginx.files_changed,
            master: nginx.seen.master,
            pid_file: self.nginx_pid_file.clone(),
            pending: nginx.pending,
            pending_path: nginx.pending_path,
            site_lock: nginx.seen.lock,
            colors,
            problems: Vec::new(),
        };
        status.problems = status.problems();
        status
    }
}

/// `$1` the history file, `$2` how many lines: the file's last lines.
const TAIL_SCRIPT: &str = r#"# read the end of the switch history
if [ -d "$1" ]; then exit 101; fi
[ -e "$1" ] || exit 100
tail -n "$2" -- "$1"
"#;

/// The nginx host: the layout as bg-detect-port reads it, the marker, and
/// what the host's command saw, from one round trip (`host` is prefetched).
fn read_nginx(
    host: &dyn Host,
    args: &LayoutArgs,
    pending_path: String,
    cmd: &Cmd,
) -> Result<NginxView, LayoutError> {
    let pending = host
        .read_file(&pending_path, false)?
        .map(|note| serde_json::from_slice(&note).unwrap_or(Value::Null));
    let output = host.run(cmd)?;
    let seen = look::parse_nginx(&output.stdout);
    let state = layout::read_state(host, args)?;
    log::debug(&state.describe(args));
    if let (Some(path), State::Managed { contents: None, .. }) = (args.managed_file(), &state) {
        return Err(LayoutError::unsafe_state(
            format!("the upstream file {path} does not exist"),
            "check --upstream-file; before the first switch (bg-switch --init) nothing is active",
        ));
    }
    if state.active().is_none() && args.managed_file().is_none() {
        // Nothing enabled is a first deploy only when the site's files are
        // there: else a mistyped --site or directory.
        layout::available_for(host, args, args.blue_port)?;
    }
    let (route, files_changed) = match &state {
        State::Managed { routing, .. } => (
            routing
                .as_ref()
                .and_then(|r| r.upstream_route(&args.upstream_name).ok()),
            seen.file.and_then(|(l, s)| latest(l, s)),
        ),
        State::Symlink { enabled: Some(e) } => (
            Some(e.route.clone()),
            // The enabled link is made anew by each switch, its target
            // edited in place: the later of the two. (Not the directory's
            // own time: an editor's swap file in it changes that.)
            seen.entries
                .iter()
                .find(|(name, _, _)| *name == e.name)
                .and_then(|(_, l, s)| latest(*l, *s))
                .or(seen.dir),
        ),
        // A link removed: the directory changed then.
        State::Symlink { enabled: None } => (None, seen.dir),
    };
    Ok(NginxView {
        state,
        route,
        pending,
        pending_path,
        seen,
        files_changed,
    })
}

fn latest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether nginx runs the files as they are: its newest worker started after
/// they last changed. `None` when that cannot be known (no master through
/// the pid file, no /proc). A worker the master restarts after a crash
/// runs the loaded configuration but is newer: after files changed without
/// a reload, that alone would read as loaded (rare; bg-switch's marker and
/// its own wait for new workers cover its switches).
fn loaded(nginx: &NginxView) -> Option<bool> {
    let clock = nginx.seen.clock?;
    let (workers, files) = (nginx.seen.loaded_at?, nginx.files_changed?);
    // The start of a process is known to a clock tick, the boot time to the
    // precision of /proc/uptime; a file's time to the nanosecond where stat
    // has %.9Y. A worker started within that of the change counts as after it.
    let slack = if clock.precise && files.fract() != 0.0 {
        0.05
    } else {
        1.0
    };
    Some(workers + slack >= files)
}

/// The app host, from one round trip (`host` is prefetched).
fn read_apps(
    host: &dyn Host,
    ports: [u16; 2],
    record_of: impl Fn(u16) -> Option<String>,
    cmd: &Cmd,
) -> Result<[AppView; 2], HostError> {
    let output = host.run(cmd)?;
    let output = host.check(cmd, output)?;
    let (clock, seen) = look::parse_apps(&output.stdout_text());
    let mut views: [AppView; 2] = Default::default();
    for ((view, seen), port) in views.iter_mut().zip(seen).zip(ports) {
        *view = app_view(host, port, seen, clock, record_of(port).as_deref())?;
    }
    Ok(views)
}

fn app_view(
    host: &dyn Host,
    port: u16,
    seen: AppSeen,
    clock: Option<Clock>,
    record_path: Option<&str>,
) -> Result<AppView, HostError> {
    let found = match &seen.find {
        Some(text) => bg_core::listeners::parse_found(text, port),
        None => bg_core::listeners::find(host, port)?,
    };
    let mut notes = Vec::new();
    if found.hidden > 0 {
        notes.push(format!(
            "a process this user cannot see listens on port {port} (--sudo shows it)"
        ));
    }
    let started = found
        .listeners
        .iter()
        .find_map(|l| seen.stat(l.pid))
        .zip(clock)
        .map(|(stat, clock)| (clock.started(stat.start_ticks), clock.age(stat.start_ticks)));
    let pid_file_alive = seen
        .pid_file
        .and_then(|pid| seen.stat(pid))
        .is_some_and(look::Stat::alive);
    let record = match record_path {
        None => None,
        Some(path) => match host.read_file(path, true)? {
            None => None,
            Some(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Some(map),
                _ => {
                    notes.push(format!("{path} is not bg-ship's JSON record; ignored"));
                    None
                }
            },
        },
    };
    if let (Some(recorded), Some(pid_file)) = (
        record
            .as_ref()
            .and_then(|r| r.get("pid"))
            .and_then(Value::as_u64),
        seen.pid_file,
    ) && recorded != u64::from(pid_file)
    {
        notes.push(format!(
            "port {port}: the record names pid {recorded}, the pid file {pid_file}: the jar and version shown may not be what runs"
        ));
    }
    Ok(AppView {
        found,
        pid_file: seen.pid_file,
        pid_file_alive,
        started,
        record,
        notes,
        lock: seen.lock,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Active,
    Backup,
    /// Neither the active nor a backup server in the files.
    Unused,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Backup => "backup",
            Role::Unused => "none",
        }
    }
}

/// What nginx does with a port now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nginx {
    /// Active in the files, which nginx has loaded.
    Serving,
    /// Backup in the files, which nginx has loaded.
    Standby,
    /// The files changed after nginx loaded them.
    NotLoaded,
    /// Whether nginx has loaded the files is not known.
    Unknown,
    /// Not in the files.
    Unused,
}

impl Nginx {
    fn word(self) -> &'static str {
        match self {
            Nginx::Serving => "serving",
            Nginx::Standby => "standby",
            Nginx::NotLoaded => "not-loaded",
            Nginx::Unknown => "unknown",
            Nginx::Unused => "none",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Nginx::NotLoaded => "not loaded",
            Nginx::Unused => "-",
            other => other.word(),
        }
    }
}

/// One probe's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Healthy { status: u16 },
    Unhealthy { status: u16, body: String },
    NoAnswer { reason: String },
}

impl Health {
    fn of(answer: Answer, expect: &StatusSet) -> Health {
        match answer {
            Answer::Status { status, .. } if expect.contains(status) => Health::Healthy { status },
            Answer::Status { status, body } => Health::Unhealthy {
                status,
                body: body
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(60)
                    .collect(),
            },
            Answer::NoAnswer { reason } => Health::NoAnswer { reason },
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Health::Healthy { .. } => "healthy",
            Health::Unhealthy { .. } => "unhealthy",
            Health::NoAnswer { .. } => "no-answer",
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Health::Healthy { status } | Health::Unhealthy { status, .. } => Some(*status),
            Health::NoAnswer { .. } => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Health::Healthy { status } => format!("healthy ({status})"),
            Health::Unhealthy { status, .. } => format!("unhealthy ({status})"),
            Health::NoAnswer { reason } => format!("no answer ({reason})"),
        }
    }
}

#[derive(Debug)]
struct ColorStatus {
    name: &'static str,
    port: u16,
    role: Role,
    nginx: Nginx,
    app: AppView,
    health: Option<Health>,
}

impl ColorStatus {
    /// `up` (something listens), `starting` (the pid file's process lives
    /// but does not listen yet), `down`.
    fn app_word(&self) -> &'static str {
        if self.app.found.sockets > 0 {
            "up"
        } else if self.app.pid_file_alive {
            "starting"
        } else {
            "down"
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.app.found.pids()
    }

    /// Whether the pid file names a listener: `None` without both.
    fn pid_match(&self) -> Option<bool> {
        let pid = self.app.pid_file?;
        if self.app.found.listeners.is_empty() {
            return None;
        }
        Some(self.pids().contains(&pid))
    }

    fn record(&self, key: &str) -> Value {
        self.app
            .record
            .as_ref()
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn record_text(&self, key: &str) -> String {
        match self.record(key) {
            Value::String(s) if !s.is_empty() => s.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => "-".to_string(),
        }
    }

    fn row(&self) -> Vec<String> {
        let pids = self.pids();
        let pid = if !pids.is_empty() {
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        } else if self.app.found.sockets > 0 {
            "?".to_string()
        } else {
            "-".to_string()
        };
        let pid_file = match self.app.pid_file {
            None => "-".to_string(),
            Some(p) if pids.contains(&p) => p.to_string(),
            Some(p) if self.app.pid_file_alive && pids.is_empty() => format!("{p} (not listening)"),
            Some(p) if self.app.pid_file_alive => format!("{p} (differs)"),
            Some(p) => format!("{p} (gone)"),
        };
        vec![
            self.name.to_string(),
            self.port.to_string(),
            match self.role {
                Role::Unused => "-".to_string(),
                role => role.word().to_string(),
            },
            self.nginx.text().to_string(),
            self.app_word().to_string(),
            pid,
            pid_file,
            self.app
                .started
                .map_or("-".to_string(), |(_, age)| table::age(age)),
            self.record_text("version"),
            self.record_text("artifact"),
            self.health.as_ref().map_or("-".to_string(), Health::text),
        ]
    }
}

/// The keys of one color's fields in `--format env|json`.
struct Keys {
    port: &'static str,
    role: &'static str,
    nginx: &'static str,
    app: &'static str,
    pid: &'static str,
    pid_file_pid: &'static str,
    pid_match: &'static str,
    uptime: &'static str,
    started: &'static str,
    artifact: &'static str,
    version: &'static str,
    sha256: &'static str,
    deployed: &'static str,
    deployed_by: &'static str,
    health: &'static str,
    health_status: &'static str,
    lock: &'static str,
}

macro_rules! keys {
    ($color:literal) => {
        Keys {
            port: concat!($color, "_PORT"),
            role: concat!($color, "_ROLE"),
            nginx: concat!($color, "_NGINX"),
            app: concat!($color, "_APP"),
            pid: concat!($color, "_PID"),
            pid_file_pid: concat!($color, "_PID_FILE_PID"),
            pid_match: concat!($color, "_PID_MATCH"),
            uptime: concat!($color, "_UPTIME"),
            started: concat!($color, "_STARTED"),
            artifact: concat!($color, "_ARTIFACT"),
            version: concat!($color, "_VERSION"),
            sha256: concat!($color, "_SHA256"),
            deployed: concat!($color, "_DEPLOYED"),
            deployed_by: concat!($color, "_DEPLOYED_BY"),
            health: concat!($color, "_HEALTH"),
            health_status: concat!($color, "_HEALTH_STATUS"),
            lock: concat!($color, "_LOCK"),
        }
    };
}

const KEYS: [Keys; 2] = [keys!("BLUE"), keys!("GREEN")];

/// Everything seen, ready to print.
#[derive(Debug)]
struct Status {
    site: String,
    layout: &'static str,
    described: String,
    active: Option<u16>,
    loaded: Option<bool>,
    loaded_at: Option<f64>,
    files_changed: Option<f64>,
    master: bool,
    pid_file: String,
    pending: Option<Value>,
    pending_path: String,
    site_lock: LockSeen,
    colors: [ColorStatus; 2],
    /// Why the active port is not served as it should be; empty when it is.
    problems: Vec<String>,
}

fn port_of(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

impl Status {
    fn active_color(&self) -> Option<&ColorStatus> {
        self.colors.iter().find(|c| c.role == Role::Active)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(active) = self.active_color() else {
            problems.push(format!(
                "site {}: no port is active ({})",
                self.site, self.described
            ));
            return problems;
        };
        let port = active.port;
        if let Some(note) = &self.pending {
            let to = port_of(note, "to").map_or("a port".to_string(), |p| format!("port {p}"));
            problems.push(format!(
                "a switch of site {} to {to} did not finish ({})",
                self.site, self.pending_path
            ));
        }
        if self.loaded == Some(false) {
            problems.push(format!(
                "nginx has not loaded the files that make port {port} active: {}",
                self.load_text()
            ));
        }
        if active.app.found.sockets == 0 {
            problems.push(format!("nothing listens on the active port {port}"));
        }
        match &active.health {
            Some(Health::Unhealthy { status, body }) => {
                problems.push(format!("the active port {port} answered {status} {body}"))
            }
            Some(Health::NoAnswer { reason }) => problems.push(format!(
                "the active port {port} did not answer the health probe ({reason})"
            )),
            _ => {}
        }
        problems
    }

    /// `the files changed at T, after its workers started at T0`, or the reverse.
    fn load_text(&self) -> String {
        match (self.files_changed, self.loaded_at) {
            (Some(files), Some(workers)) if self.loaded == Some(false) => format!(
                "the files changed at {}, after its workers started at {}",
                table::rfc3339(files),
                table::rfc3339(workers)
            ),
            (Some(files), Some(workers)) => format!(
                "its workers started at {}, the files last changed at {}",
                table::rfc3339(workers),
                table::rfc3339(files)
            ),
            _ if !self.master => format!(
                "no nginx master through {} (--nginx-pid-file)",
                self.pid_file
            ),
            _ => "no times from the host (no /proc?)".to_string(),
        }
    }

    /// The lines under the table.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let finish = self
            .pending
            .as_ref()
            .and_then(|n| port_of(n, "to"))
            .or(self.active.map(u64::from));
        lines.push(match self.loaded {
            Some(true) => format!("nginx: has loaded the files ({})", self.load_text()),
            Some(false) => format!(
                "nginx: not loaded: {}; reload nginx{}",
                self.load_text(),
                finish.map_or(String::new(), |p| format!(
                    ", or finish with bg-switch --port {p}"
                ))
            ),
            None => format!(
                "nginx: cannot tell whether it has loaded the files: {}",
                self.load_text()
            ),
        });
        if let Some(note) = &self.pending {
            let from = port_of(note, "from").map_or("nothing".to_string(), |p| p.to_string());
            let to = port_of(note, "to").map_or("?".to_string(), |p| p.to_string());
            let since = note.get("time").and_then(Value::as_str).unwrap_or("?");
            lines.push(format!(
                "pending: a switch from {from} to {to} did not finish (since {since}, {}); finish it with bg-switch --port {to}",
                self.pending_path
            ));
        }
        let mut held = Vec::new();
        let mut unknown = false;
        let locks = [
            (format!("site {}", self.site), &self.site_lock),
            (
                format!("port {}", self.colors[0].port),
                &self.colors[0].app.lock,
            ),
            (
                format!("port {}", self.colors[1].port),
                &self.colors[1].app.lock,
            ),
        ];
        for (what, lock) in locks {
            match lock {
                LockSeen::Held { holder, waiting } => held.push(format!(
                    "lock: {what} is held by {holder}{}",
                    match waiting {
                        0 => String::new(),
                        n => format!(" ({n} waiting)"),
                    }
                )),
                LockSeen::Unknown => unknown = true,
                LockSeen::Absent | LockSeen::Free => {}
            }
        }
        if held.is_empty() {
            lines.push(if unknown {
                "locks: cannot tell (no /proc/locks)".to_string()
            } else {
                "locks: none held".to_string()
            });
        }
        lines.extend(held);
        for color in &self.colors {
            lines.extend(color.app.notes.iter().map(|n| format!("note: {n}")));
        }
        lines
    }

    fn text(&self) -> String {
        let mut table = Table::new(&[
            "COLOR", "PORT", "ROLE", "NGINX", "APP", "PID", "PID FILE", "UPTIME", "VERSION",
            "ARTIFACT", "HEALTH",
        ]);
        for color in &self.colors {
            table.row(color.row());
        }
        let mut text = table.render();
        for line in self.lines() {
            text.push_str(&line);
            text.push('\n');
        }
        text.trim_end().to_string()
    }

    fn report(&self, format: Format) -> Report {
        let when = |t: Option<f64>| t.map_or(Value::Null, |t| Value::from(table::rfc3339(t)));
        let pending = |key: &str| {
            self.pending
                .as_ref()
                .and_then(|n| n.get(key))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let text = if format == Format::Text {
            self.text()
        } else {
            String::new()
        };
        let mut report = Report::new(text)
            .field("SITE", self.site.clone())
            .field("LAYOUT", self.layout)
            .field("ACTIVE_PORT", self.active.map_or(Value::Null, Value::from))
            .field("NGINX_LOADED", self.loaded.map_or(Value::Null, Value::from))
            .field("FILES_CHANGED", when(self.files_changed))
            .field("WORKERS_STARTED", when(self.loaded_at))
            .field("PENDING_FROM", pending("from"))
            .field("PENDING_TO", pending("to"))
            .field("PENDING_SINCE", pending("time"))
            .field(
                "SITE_LOCK",
                self.site_lock.holder().map_or(Value::Null, Value::from),
            )
            .field("OK", self.problems.is_empty())
            .field(
                "PROBLEM",
                self.problems
                    .first()
                    .map_or(Value::Null, |p| Value::from(p.clone())),
            );
        for (color, keys) in self.colors.iter().zip(&KEYS) {
            let pids = color.pids();
            report = report
                .field(keys.port, color.port)
                .field(keys.role, color.role.word())
                .field(keys.nginx, color.nginx.word())
                .field(keys.app, color.app_word())
                .field(
                    keys.pid,
                    pids.first().map_or(Value::Null, |p| Value::from(*p)),
                )
                .field(
                    keys.pid_file_pid,
                    color.app.pid_file.map_or(Value::Null, Value::from),
                )
                .field(
                    keys.pid_match,
                    color.pid_match().map_or(Value::Null, Value::from),
                )
                .field(
                    keys.uptime,
                    color
                        .app
                        .started
                        .map_or(Value::Null, |(_, age)| Value::from(age as u64)),
                )
                .field(keys.started, when(color.app.started.map(|(at, _)| at)))
                .field(keys.artifact, color.record("artifact"))
                .field(keys.version, color.record("version"))
                .field(keys.sha256, color.record("sha256"))
                .field(keys.deployed, color.record("started"))
                .field(keys.deployed_by, color.record("actor"))
                .field(
                    keys.health,
                    color
                        .health
                        .as_ref()
                        .map_or(Value::Null, |h| Value::from(h.word())),
                )
                .field(
                    keys.health_status,
                    color
                        .health
                        .as_ref()
                        .and_then(Health::status)
                        .map_or(Value::Null, Value::from),
                )
                .field(
                    keys.lock,
                    color.app.lock.holder().map_or(Value::Null, Value::from),
                );
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(precise: bool, workers: f64, files: f64) -> NginxView {
        NginxView {
            state: State::Symlink { enabled: None },
            route: None,
            pending: None,
            pending_path: String::new(),
            seen: NginxSeen {
                clock: Some(Clock {
                    now: 2000.0,
                    uptime: 1000.0,
                    ticks: 100.0,
                    precise,
                }),
                master: true,
                loaded_at: Some(workers),
                ..NginxSeen::default()
            },
            files_changed: Some(files),
        }
    }

    #[test]
    fn loaded_means_workers_started_after_the_change() {
        assert_eq!(loaded(&view(true, 1500.30, 1500.25)), Some(true));
        assert_eq!(loaded(&view(true, 1500.00, 1500.25)), Some(false));
        // Within what the clocks can tell apart: after.
        assert_eq!(loaded(&view(true, 1500.22, 1500.25)), Some(true));
        // Whole seconds only: a second of doubt, read as loaded.
        assert_eq!(loaded(&view(false, 1499.5, 1500.0)), Some(true));
        assert_eq!(loaded(&view(false, 1498.0, 1500.0)), Some(false));
        let mut unknown = view(true, 1.0, 2.0);
        unknown.seen.loaded_at = None;
        assert_eq!(loaded(&unknown), None);
    }

    #[test]
    fn health_verdicts() {
        let expect: StatusSet = "200-299".parse().unwrap();
        let answer = |status, body: &str| Answer::Status {
            status,
            body: body.to_string(),
        };
        assert_eq!(
            Health::of(answer(200, "ok"), &expect),
            Health::Healthy { status: 200 }
        );
        let down = Health::of(answer(503, "{\"status\":\n\"DOWN\"}"), &expect);
        assert_eq!(down.text(), "unhealthy (503)");
        assert_eq!(
            down,
            Health::Unhealthy {
                status: 503,
                body: "{\"status\": \"DOWN\"}".into()
            }
        );
        let none = Health::of(
            Answer::NoAnswer {
                reason: "connection refused".into(),
            },
            &expect,
        );
        assert_eq!(none.text(), "no answer (connection refused)");
        assert_eq!((none.word(), none.status()), ("no-answer", None));
    }

    #[test]
    fn each_color_has_its_own_keys() {
        assert_eq!(KEYS[0].pid_file_pid, "BLUE_PID_FILE_PID");
        assert_eq!(KEYS[1].health_status, "GREEN_HEALTH_STATUS");
    }
}
