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
//! Behind one upstream there may be several app hosts (bg-switch's
//! `--app-host`, repeated): then each host of the upstream is shown with
//! its own role, health (`{host}` in `--health-url`) and, where an
//! `--app-ssh-host` names it, its apps; one host that cannot be reached is
//! shown as such instead of hiding the others. One app host and one server
//! host print exactly what bg-status printed before there were fleets.
//!
//! `--history [N]` prints the last switches from bg-switch's history file.

pub mod history;
pub mod look;
pub mod table;

use std::time::Duration;

use bg_core::cli::{
    HostArgs, LockArgs, OutputArgs, TlsArgs, parse_host_path, parse_positive_duration,
};
use bg_core::host::Target;
use bg_core::host::{Host, Prefetched};
use bg_core::http::{Answer, Probe, StatusSet};
use bg_core::layout::{self, LayoutArgs, LayoutError, State};
use bg_core::listeners::Found;
use bg_core::nginx::{self, Route, ServerRole};
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
    /// http://10.0.0.5:{port}/actuator/health), from where bg-status runs; with {host} too
    /// (http://{host}:{port}/actuator/health), each port of every app host nginx routes to
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

    /// The app host, where it is not --host (the nginx host): reached with the same SSH options.
    /// Repeat it (or list them, comma-separated) for several app hosts behind one upstream: all
    /// are read at the same time, each shown beside the upstream's server with its HOST
    #[arg(
        long,
        env = "BG_APP_SSH_HOST",
        value_name = "[USER@]HOST[:PORT]",
        value_delimiter = ',',
        help_heading = "Host"
    )]
    pub app_ssh_host: Vec<String>,

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
        let sources = self.sources()?;
        let ports = [self.layout.blue_port, self.layout.green_port];
        // A bad --cacert is bad input, before anything else happens.
        let probe = match &health {
            Some(_) => Some(Probe::with_trust(self.health_timeout, &self.tls.trust()?)),
            None => None,
        };
        let template = health.zip(probe);
        // Without {host} the probes go out while the hosts are read; with
        // it, as soon as the nginx host has said which app hosts there are.
        let per_color = template
            .as_ref()
            .filter(|(t, _)| !t.per_host)
            .map(|(t, probe)| probe_all(probe, ports.map(|p| t.url(None, p)).to_vec()));
        let per_host = |nginx: &NginxView| {
            let (t, probe) = template.as_ref().filter(|(t, _)| t.per_host)?;
            let names: Vec<String> = entries(&route_hosts(nginx), &sources)
                .into_iter()
                .map(|e| e.name)
                .collect();
            let urls = names
                .iter()
                .flat_map(|name| ports.map(|p| t.url(Some(name), p)))
                .collect();
            Some((names, probe_all(probe, urls)))
        };
        let (nginx, reads, per_host) = self.look(&sources, per_host)?;
        let probed = match (per_color, per_host) {
            (Some(handle), _) => match joined(handle).as_slice() {
                [blue, green] => Probed::PerColor([blue.clone(), green.clone()]),
                _ => Probed::None,
            },
            (None, Some((names, handle))) => {
                let answers = joined(handle);
                Probed::PerHost(
                    names
                        .into_iter()
                        .zip(answers.chunks_exact(2))
                        .map(|(name, pair)| (name, [pair[0].clone(), pair[1].clone()]))
                        .collect(),
                )
            }
            (None, None) => Probed::None,
        };
        let status = self.status(nginx, &sources, reads, probed);
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

/// How many health probes run at once: a fleet of hosts times two ports
/// must not open hundreds of connections from a CI agent at one moment.
const PROBES_AT_ONCE: usize = 8;

/// Probes each URL once, [`PROBES_AT_ONCE`] at a time, in threads of their
/// own; the answers in the URLs' order.
fn probe_all(probe: &Probe, urls: Vec<String>) -> std::thread::JoinHandle<Vec<Answer>> {
    let probe = probe.clone();
    std::thread::spawn(move || {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let answers: Vec<std::sync::Mutex<Option<Answer>>> =
            urls.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..urls.len().min(PROBES_AT_ONCE) {
                let (probe, next, answers, urls) = (probe.clone(), &next, &answers, &urls);
                scope.spawn(move || {
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(url) = urls.get(at) else { break };
                        let answer = probe.get(url);
                        if let Ok(mut slot) = answers[at].lock() {
                            *slot = Some(answer);
                        }
                    }
                });
            }
        });
        answers
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(probe_failed)
            })
            .collect()
    })
}

fn probe_failed() -> Answer {
    Answer::NoAnswer {
        reason: "the probe failed".to_string(),
    }
}

fn joined(handle: std::thread::JoinHandle<Vec<Answer>>) -> Vec<Answer> {
    handle.join().unwrap_or_default()
}

/// The health probes' answers.
#[derive(Debug)]
enum Probed {
    None,
    /// `--health-url` without `{host}`: blue's and green's.
    PerColor([Answer; 2]),
    /// With `{host}`: each host's blue and green.
    PerHost(Vec<(String, [Answer; 2])>),
}

/// `--health-url`, checked.
#[derive(Debug, Clone)]
struct Template {
    text: String,
    /// It names `{host}`: probe each app host.
    per_host: bool,
}

impl Template {
    fn url(&self, host: Option<&str>, port: u16) -> String {
        let url = self.text.replace("{port}", &port.to_string());
        match host {
            // A bare IPv6 address (an --app-ssh-host's) needs its brackets in a URL.
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                url.replace("{host}", &format!("[{host}]"))
            }
            Some(host) => url.replace("{host}", host),
            None => url,
        }
    }
}

/// An app host bg-status reads: an `--app-ssh-host`, or (without one) the
/// nginx host itself, as bg-status always did.
#[derive(Debug, Clone)]
struct Source {
    /// As given: `--app-ssh-host`'s value, or `--host`'s; `None`: this machine.
    given: Option<String>,
    /// Its HOST, to find it among the servers nginx routes to.
    host: Option<String>,
    /// From `--app-ssh-host`.
    explicit: bool,
    args: HostArgs,
    /// It is `--host`: read in the nginx host's round trip when it is the only app host.
    is_nginx_host: bool,
}

impl Source {
    /// Whether a server's host is this one: by its HOST's text; and the
    /// nginx host is the app host of the servers on its own loopback.
    fn serves(&self, server: &str) -> bool {
        match &self.host {
            Some(host) if nginx::same_host(server, host) => true,
            _ => !self.explicit && nginx::is_loopback_host(server),
        }
    }
}

/// One host of the report: a server's host nginx routes to, or an
/// `--app-ssh-host` that is none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    in_route: bool,
    /// The source that reads its apps.
    source: Option<usize>,
}

/// The hosts of the route, in its order.
fn route_hosts(nginx: &NginxView) -> Vec<String> {
    nginx
        .route
        .as_ref()
        .map(|r| r.hosts().into_iter().map(String::from).collect())
        .unwrap_or_default()
}

/// The hosts to show: every host the route names, each with the app host
/// that is it (matched by HOST), then the `--app-ssh-host`s that are none
/// of them. One app host and at most one server host are one host, whatever
/// their names: bg-status's view before there were fleets.
fn entries(route_hosts: &[String], sources: &[Source]) -> Vec<Entry> {
    if sources.len() == 1 && route_hosts.len() <= 1 {
        let name = route_hosts
            .first()
            .cloned()
            .or_else(|| sources[0].host.clone())
            .unwrap_or_else(|| "localhost".to_string());
        return vec![Entry {
            name,
            in_route: !route_hosts.is_empty(),
            source: Some(0),
        }];
    }
    let mut list: Vec<Entry> = route_hosts
        .iter()
        .map(|host| Entry {
            name: host.clone(),
            in_route: true,
            source: sources.iter().position(|s| s.serves(host)),
        })
        .collect();
    for (at, source) in sources.iter().enumerate() {
        if source.explicit && !list.iter().any(|e| e.source == Some(at)) {
            list.push(Entry {
                name: source.host.clone().unwrap_or_default(),
                in_route: false,
                source: Some(at),
            });
        }
    }
    list
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
#[derive(Debug, Clone, Default)]
struct AppView {
    reach: Reach,
    found: Found,
    pid_file: Option<u32>,
    pid_file_alive: bool,
    /// The first listener's start, seconds since the epoch, and its age.
    started: Option<(f64, f64)>,
    record: Option<Map<String, Value>>,
    notes: Vec<String>,
    lock: LockSeen,
}

/// Whether an app host's view is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Reach {
    #[default]
    Read,
    /// Its SSH connection failed: why.
    Unreachable(String),
    /// No --app-ssh-host names it.
    NotRead,
}

impl AppView {
    fn unreachable(why: &str) -> AppView {
        AppView {
            reach: Reach::Unreachable(why.to_string()),
            ..AppView::default()
        }
    }

    fn not_read() -> AppView {
        AppView {
            reach: Reach::NotRead,
            ..AppView::default()
        }
    }
}

impl Cli {
    /// The health URL template, checked: it must name `{port}`, and may name `{host}`.
    fn health_template(&self) -> Result<Option<Template>, UsageError> {
        let Some(template) = self.health_url.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if !template.contains("{port}") {
            return Err(UsageError::new(
                format!("--health-url {template:?} does not name {{port}}"),
                "write the port as {port}, e.g. --health-url 'http://10.0.0.5:{port}/actuator/health'",
            ));
        }
        let template = Template {
            text: template.to_string(),
            per_host: template.contains("{host}"),
        };
        bg_core::http::check_url(&template.url(Some("127.0.0.1"), self.layout.blue_port))
            .map_err(|why| {
                UsageError::new(
                    format!("--health-url: {why}"),
                    "give a URL like http://HOST:{port}/PATH, or http://{host}:{port}/PATH for every app host",
                )
            })?;
        Ok(Some(template))
    }

    fn lock_args(&self) -> LockArgs {
        LockArgs {
            lock_timeout: Duration::ZERO,
            lock_dir: self.lock_dir.clone(),
        }
    }

    /// The app hosts: each `--app-ssh-host` (once), else the nginx host.
    fn sources(&self) -> Result<Vec<Source>, HostError> {
        let nginx_host = self.host.host.as_deref().filter(|h| !h.is_empty());
        let host_of = |value: &str| Target::parse(value).map(|t| t.host);
        let mut given: Vec<&str> = Vec::new();
        for value in self.app_ssh_host.iter().map(|h| h.trim()) {
            if !value.is_empty() && !given.contains(&value) {
                given.push(value);
            }
        }
        if given.is_empty() {
            return Ok(vec![Source {
                given: nginx_host.map(String::from),
                host: nginx_host.map(host_of).transpose()?,
                explicit: false,
                args: self.host.clone(),
                is_nginx_host: true,
            }]);
        }
        given
            .into_iter()
            .map(|value| {
                let mut args = self.host.clone();
                args.host = Some(value.to_string());
                Ok(Source {
                    given: Some(value.to_string()),
                    host: Some(host_of(value)?),
                    explicit: true,
                    args,
                    is_nginx_host: Some(value) == nginx_host,
                })
            })
            .collect()
    }

    fn files(&self, port: u16, ext: &str) -> Option<String> {
        let dir = self.deploy_path.as_deref().filter(|d| !d.is_empty())?;
        Some(layout::join(dir, &format!("app-{port}.{ext}")))
    }

    /// Reads the nginx host and every app host, each in one round trip, all
    /// at the same time; `start` runs as soon as the nginx host is read.
    /// With several app hosts, one that cannot be reached is an `Err` with
    /// why, not the end: the others are still worth showing.
    #[allow(clippy::type_complexity)]
    fn look<P>(
        &self,
        sources: &[Source],
        start: impl FnOnce(&NginxView) -> P,
    ) -> bg_core::Result<(NginxView, Vec<Result<[AppView; 2], String>>, P)> {
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

        if let [only] = sources
            && only.is_nginx_host
        {
            // One host: one round trip for everything.
            let host = self.host.connect()?;
            let mut files = nginx_files;
            files.extend(records);
            let mut cmds = nginx_cmds;
            cmds.push(apps_cmd.clone());
            let read = Prefetched::with_commands(host.as_ref(), &files, true, &cmds);
            let nginx = read_nginx(&read)?;
            let started = start(&nginx);
            let apps = read_apps(&read)?;
            return Ok((nginx, vec![Ok(apps)], started));
        }
        let (nginx, apps) = std::thread::scope(|scope| {
            let handles: Vec<_> = sources
                .iter()
                .map(|source| {
                    let (records, apps_cmd, read_apps) = (&records, &apps_cmd, &read_apps);
                    scope.spawn(move || -> Result<[AppView; 2], HostError> {
                        let host = source.args.connect()?;
                        let cmds = std::slice::from_ref(apps_cmd);
                        let read = Prefetched::with_commands(host.as_ref(), records, true, cmds);
                        read_apps(&read)
                    })
                })
                .collect();
            let nginx = (|| -> Result<NginxView, LayoutError> {
                let host = self.host.connect()?;
                let read =
                    Prefetched::with_commands(host.as_ref(), &nginx_files, true, &nginx_cmds);
                read_nginx(&read)
            })()
            .map(|nginx| {
                let started = start(&nginx);
                (nginx, started)
            });
            let apps: Vec<Result<[AppView; 2], HostError>> = handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(HostError::Command {
                            host: "the app host".to_string(),
                            command: "look at the apps".to_string(),
                            output: Box::default(),
                        })
                    })
                })
                .collect();
            (nginx, apps)
        });
        let (nginx, started) = nginx?;
        let mut reads = Vec::new();
        for read in apps {
            reads.push(match read {
                Ok(apps) => Ok(apps),
                // One app host: as bg-status always was, it must answer.
                Err(e) if sources.len() == 1 => return Err(e.into()),
                Err(e) if e.code() == Code::Unreachable => Err(first_line(&e.to_string())),
                Err(e) => return Err(e.into()),
            });
        }
        Ok((nginx, reads, started))
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

    fn status(
        &self,
        nginx: NginxView,
        sources: &[Source],
        reads: Vec<Result<[AppView; 2], String>>,
        probed: Probed,
    ) -> Status {
        let active = nginx.state.active();
        let loaded = loaded(&nginx);
        let ports = [self.layout.blue_port, self.layout.green_port];
        let names = ["blue", "green"];
        let route_hosts = route_hosts(&nginx);
        let list = entries(&route_hosts, sources);
        let fleet = !(sources.len() == 1 && route_hosts.len() <= 1);
        let views: Vec<[AppView; 2]> = reads
            .into_iter()
            .map(|read| match read {
                Ok(views) => views,
                Err(why) => [AppView::unreachable(&why), AppView::unreachable(&why)],
            })
            .collect();
        let health_of = |answer: &Answer| Health::of(answer.clone(), &self.expect_status);
        // Which host a --health-url without {host} probes, in a fleet.
        let url_host = self
            .health_url
            .as_deref()
            .map(|t| t.replace("{port}", "1"))
            .and_then(|url| bg_core::http::url_host(&url));
        let placed = url_host
            .as_deref()
            .and_then(|h| list.iter().position(|e| nginx::same_host(&e.name, h)));
        let host_health: Vec<[Option<Health>; 2]> = list
            .iter()
            .enumerate()
            .map(|(at, entry)| match &probed {
                Probed::None => [None, None],
                Probed::PerColor(answers) if !fleet || placed == Some(at) => {
                    answers.each_ref().map(|a| Some(health_of(a)))
                }
                Probed::PerColor(_) => [None, None],
                Probed::PerHost(answers) => answers
                    .iter()
                    .find(|(name, _)| *name == entry.name)
                    .map(|(_, pair)| pair.each_ref().map(|a| Some(health_of(a))))
                    .unwrap_or_default(),
            })
            .collect();
        // The colors' own health: the probe without {host}, or the first
        // host's that is not healthy (else the first host's).
        let color_health: [Option<Health>; 2] = match &probed {
            Probed::None => [None, None],
            Probed::PerColor(answers) => answers.each_ref().map(|a| Some(health_of(a))),
            Probed::PerHost(_) => [0, 1].map(|c| {
                let all: Vec<&Health> = host_health.iter().filter_map(|h| h[c].as_ref()).collect();
                all.iter()
                    .find(|h| !matches!(h, Health::Healthy { .. }))
                    .or(all.first())
                    .map(|h| (*h).clone())
            }),
        };
        let role_of = |port: u16| match (&nginx.route, active) {
            (_, Some(a)) if a == port => Role::Active,
            (Some(route), _) if route.backup.contains(&port) => Role::Backup,
            _ => Role::Unused,
        };
        let color = |c: usize, role: Role, app: AppView, health: Option<Health>| ColorStatus {
            name: names[c],
            port: ports[c],
            role,
            nginx: match (role, loaded) {
                (Role::Unused | Role::Down, _) => Nginx::Unused,
                (_, Some(false)) => Nginx::NotLoaded,
                (_, None) => Nginx::Unknown,
                (Role::Active, Some(true)) => Nginx::Serving,
                (Role::Backup, Some(true)) => Nginx::Standby,
            },
            health,
            app,
        };
        let first = views.first().cloned().unwrap_or_default();
        let [blue_app, green_app] = first;
        let [blue_health, green_health] = color_health;
        let colors = [
            color(0, role_of(ports[0]), blue_app, blue_health),
            color(1, role_of(ports[1]), green_app, green_health),
        ];
        let hosts = list
            .iter()
            .zip(host_health)
            .map(|(entry, health)| {
                let [blue_health, green_health] = health;
                let app = |c: usize| match entry.source {
                    Some(at) => views[at][c].clone(),
                    None => AppView::not_read(),
                };
                let role = |c: usize| {
                    if !fleet {
                        return role_of(ports[c]);
                    }
                    match nginx
                        .route
                        .as_ref()
                        .and_then(|r| r.role(&entry.name, ports[c]))
                    {
                        Some(ServerRole::Primary) => Role::Active,
                        Some(ServerRole::Backup) => Role::Backup,
                        Some(ServerRole::Down) => Role::Down,
                        None => Role::Unused,
                    }
                };
                HostStatus {
                    name: entry.name.clone(),
                    in_route: entry.in_route,
                    source: entry.source,
                    ssh: entry.source.and_then(|at| sources[at].given.clone()),
                    colors: [
                        color(0, role(0), app(0), blue_health),
                        color(1, role(1), app(1), green_health),
                    ],
                }
            })
            .collect();
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
            fleet,
            hosts,
            unplaced_health: match probed {
                Probed::PerColor(_) if fleet && placed.is_none() => {
                    Some(url_host.unwrap_or_else(|| "?".to_string()))
                }
                _ => None,
            },
            problems: Vec::new(),
        };
        status.problems = status.problems();
        status
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
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
        reach: Reach::Read,
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
    /// Marked `down` in the files (a host of a fleet taken out).
    Down,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Backup => "backup",
            Role::Unused => "none",
            Role::Down => "down",
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
        match self.app.reach {
            Reach::Read => {}
            Reach::Unreachable(_) => return "unreachable",
            Reach::NotRead => return "unknown",
        }
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
            match self.app.reach {
                Reach::NotRead => "-",
                _ => self.app_word(),
            }
            .to_string(),
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
    up_hosts: &'static str,
    healthy_hosts: &'static str,
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
            up_hosts: concat!($color, "_UP_HOSTS"),
            healthy_hosts: concat!($color, "_HEALTHY_HOSTS"),
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
    /// The first app host's view (the only one before fleets).
    colors: [ColorStatus; 2],
    /// Several hosts: the route's and the --app-ssh-hosts.
    fleet: bool,
    /// Each host with its own view of both colors (one host: `colors`).
    hosts: Vec<HostStatus>,
    /// A fleet probed without {host}, at a host that is none of them: that host.
    unplaced_health: Option<String>,
    /// Why the active port is not served as it should be; empty when it is.
    problems: Vec<String>,
}

/// One host of a fleet: its role in nginx's files, its app view, its health, per color.
#[derive(Debug)]
struct HostStatus {
    /// As the route writes it, or the --app-ssh-host's HOST.
    name: String,
    /// nginx routes to it.
    in_route: bool,
    /// The app host that reads it (two hosts of the route may share one).
    source: Option<usize>,
    /// The --app-ssh-host (or --host) it is read through.
    ssh: Option<String>,
    colors: [ColorStatus; 2],
}

impl HostStatus {
    fn reach(&self) -> &Reach {
        &self.colors[0].app.reach
    }

    fn state_word(&self) -> &'static str {
        match self.reach() {
            Reach::Read => "read",
            Reach::Unreachable(_) => "unreachable",
            Reach::NotRead => "not-read",
        }
    }
}

/// Why the active `port` (on a host: ` on HOST`) fails its probe, if it does.
fn health_problem(port: u16, on: &str, health: Option<&Health>) -> Option<String> {
    match health? {
        Health::Unhealthy { status, body } => Some(format!(
            "the active port {port}{on} answered {status} {body}"
        )),
        Health::NoAnswer { reason } => Some(format!(
            "the active port {port}{on} did not answer the health probe ({reason})"
        )),
        Health::Healthy { .. } => None,
    }
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
        if !self.fleet {
            if active.app.found.sockets == 0 {
                problems.push(format!("nothing listens on the active port {port}"));
            }
            problems.extend(health_problem(port, "", active.health.as_ref()));
            return problems;
        }
        // A fleet: the active port on every host nginx sends it to.
        for host in &self.hosts {
            if let Reach::Unreachable(why) = host.reach() {
                problems.push(format!("app host {} is unreachable: {why}", host.name));
            }
            if !host.in_route {
                continue;
            }
            let Some(color) = host.colors.iter().find(|c| c.role == Role::Active) else {
                continue;
            };
            let on = format!(" on {}", host.name);
            if color.app.reach == Reach::Read && color.app.found.sockets == 0 {
                problems.push(format!("nothing listens on the active port {port}{on}"));
            }
            problems.extend(health_problem(port, &on, color.health.as_ref()));
        }
        if self.unplaced_health.is_some() {
            problems.extend(health_problem(port, "", active.health.as_ref()));
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
        let mut locks = vec![(format!("site {}", self.site), &self.site_lock)];
        if self.fleet {
            // Each app host once, though it may serve several of the route's hosts.
            let mut seen = Vec::new();
            for host in self.hosts.iter().filter(|h| *h.reach() == Reach::Read) {
                if host.source.is_some_and(|s| seen.contains(&s)) {
                    continue;
                }
                seen.extend(host.source);
                for color in &host.colors {
                    locks.push((
                        format!("port {} on {}", color.port, host.name),
                        &color.app.lock,
                    ));
                }
            }
        } else {
            for color in &self.colors {
                locks.push((format!("port {}", color.port), &color.app.lock));
            }
        }
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
        if !self.fleet {
            for color in &self.colors {
                lines.extend(color.app.notes.iter().map(|n| format!("note: {n}")));
            }
            return lines;
        }
        let mut seen = Vec::new();
        let mut not_read = Vec::new();
        for host in &self.hosts {
            match host.reach() {
                Reach::Unreachable(why) => lines.push(format!(
                    "host {}: unreachable over SSH ({}): {why}",
                    host.name,
                    host.ssh.as_deref().unwrap_or("?")
                )),
                Reach::NotRead => not_read.push(host.name.as_str()),
                Reach::Read => {}
            }
            if !host.in_route {
                lines.push(format!(
                    "host {}: not a server nginx routes to (--app-ssh-host {}); shown apart",
                    host.name,
                    host.ssh.as_deref().unwrap_or("?")
                ));
            }
            if host.source.is_some_and(|s| seen.contains(&s)) {
                continue;
            }
            seen.extend(host.source);
            for color in &host.colors {
                lines.extend(
                    color
                        .app
                        .notes
                        .iter()
                        .map(|n| format!("note: {}: {n}", host.name)),
                );
            }
        }
        if !not_read.is_empty() {
            lines.push(format!(
                "not read over SSH: {} (give an --app-ssh-host for each to see its apps)",
                not_read.join(", ")
            ));
        }
        if let Some(at) = &self.unplaced_health {
            let health = |c: &ColorStatus| c.health.as_ref().map_or("-".to_string(), Health::text);
            lines.push(format!(
                "health (at {at}, none of these hosts; --health-url with {{host}} probes each): blue {}, green {}",
                health(&self.colors[0]),
                health(&self.colors[1])
            ));
        }
        lines
    }

    fn text(&self) -> String {
        const HEADER: [&str; 11] = [
            "COLOR", "PORT", "ROLE", "NGINX", "APP", "PID", "PID FILE", "UPTIME", "VERSION",
            "ARTIFACT", "HEALTH",
        ];
        let table = if self.fleet {
            let mut table = Table::new(&[&["HOST"][..], &HEADER[..]].concat());
            for host in &self.hosts {
                for color in &host.colors {
                    let mut row = vec![host.name.clone()];
                    row.extend(color.row());
                    table.row(row);
                }
            }
            table
        } else {
            let mut table = Table::new(&HEADER);
            for color in &self.colors {
                table.row(color.row());
            }
            table
        };
        let mut text = table.render();
        for line in self.lines() {
            text.push_str(&line);
            text.push('\n');
        }
        text.trim_end().to_string()
    }

    fn report(&self, format: Format) -> Report {
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
            for (key, value) in color.fields(keys) {
                report = report.field(key, value);
            }
        }
        // The hosts: added after every key there was before them.
        let names: Vec<Value> = self
            .hosts
            .iter()
            .map(|h| Value::from(h.name.clone()))
            .collect();
        report = report.field(
            "HOSTS",
            match format {
                Format::Json => Value::Array(self.hosts.iter().map(HostStatus::json).collect()),
                Format::Env | Format::Text => Value::Array(names),
            },
        );
        let unreachable: Vec<Value> = self
            .hosts
            .iter()
            .filter(|h| matches!(h.reach(), Reach::Unreachable(_)))
            .map(|h| Value::from(h.name.clone()))
            .collect();
        report = report.field("UNREACHABLE_HOSTS", Value::Array(unreachable));
        for (c, keys) in KEYS.iter().enumerate() {
            let up = self
                .hosts
                .iter()
                .filter(|h| {
                    h.colors[c].app.reach == Reach::Read && h.colors[c].app.found.sockets > 0
                })
                .count();
            let probed: Vec<&Health> = self
                .hosts
                .iter()
                .filter_map(|h| h.colors[c].health.as_ref())
                .collect();
            let healthy = probed
                .iter()
                .filter(|h| matches!(h, Health::Healthy { .. }))
                .count();
            report = report.field(keys.up_hosts, up).field(
                keys.healthy_hosts,
                if probed.is_empty() {
                    Value::Null
                } else {
                    Value::from(healthy)
                },
            );
        }
        report
    }
}

fn when(t: Option<f64>) -> Value {
    t.map_or(Value::Null, |t| Value::from(table::rfc3339(t)))
}

impl ColorStatus {
    /// This color's fields in `--format env|json`, under `keys`.
    fn fields(&self, keys: &Keys) -> Vec<(&'static str, Value)> {
        let pids = self.pids();
        vec![
            (keys.port, Value::from(self.port)),
            (keys.role, Value::from(self.role.word())),
            (keys.nginx, Value::from(self.nginx.word())),
            (keys.app, Value::from(self.app_word())),
            (
                keys.pid,
                pids.first().map_or(Value::Null, |p| Value::from(*p)),
            ),
            (
                keys.pid_file_pid,
                self.app.pid_file.map_or(Value::Null, Value::from),
            ),
            (
                keys.pid_match,
                self.pid_match().map_or(Value::Null, Value::from),
            ),
            (
                keys.uptime,
                self.app
                    .started
                    .map_or(Value::Null, |(_, age)| Value::from(age as u64)),
            ),
            (keys.started, when(self.app.started.map(|(at, _)| at))),
            (keys.artifact, self.record("artifact")),
            (keys.version, self.record("version")),
            (keys.sha256, self.record("sha256")),
            (keys.deployed, self.record("started")),
            (keys.deployed_by, self.record("actor")),
            (
                keys.health,
                self.health
                    .as_ref()
                    .map_or(Value::Null, |h| Value::from(h.word())),
            ),
            (
                keys.health_status,
                self.health
                    .as_ref()
                    .and_then(Health::status)
                    .map_or(Value::Null, Value::from),
            ),
            (
                keys.lock,
                self.app.lock.holder().map_or(Value::Null, Value::from),
            ),
        ]
    }
}

impl HostStatus {
    /// One element of `hosts` in `--format json`: the color's fields
    /// without their color (`blue_pid` is `blue.pid`).
    fn json(&self) -> Value {
        let mut object = Map::new();
        object.insert("host".into(), Value::from(self.name.clone()));
        object.insert(
            "ssh_host".into(),
            self.ssh.clone().map_or(Value::Null, Value::from),
        );
        object.insert("in_upstream".into(), Value::from(self.in_route));
        object.insert("app_host".into(), Value::from(self.state_word()));
        object.insert(
            "error".into(),
            match self.reach() {
                Reach::Unreachable(why) => Value::from(why.clone()),
                _ => Value::Null,
            },
        );
        for (color, keys) in self.colors.iter().zip(&KEYS) {
            let fields: Map<String, Value> = color
                .fields(keys)
                .into_iter()
                .map(|(key, value)| {
                    let key = key.split_once('_').map_or(key, |(_, rest)| rest);
                    (key.to_ascii_lowercase(), value)
                })
                .collect();
            object.insert(color.name.to_string(), Value::Object(fields));
        }
        Value::Object(object)
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

    fn sources(args: &[&str]) -> Vec<Source> {
        let cli = Cli::try_parse_from([&["bg-status"][..], args].concat()).unwrap();
        cli.sources().unwrap()
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    fn names(entries: &[Entry]) -> Vec<(&str, bool, Option<usize>)> {
        entries
            .iter()
            .map(|e| (e.name.as_str(), e.in_route, e.source))
            .collect()
    }

    #[test]
    fn app_hosts_repeat_or_come_as_a_list() {
        let given = sources(&[
            "--app-ssh-host",
            "deploy@10.200.0.2:2222",
            "--app-ssh-host",
            "10.200.0.6,[fd00::7]:22",
            "--app-ssh-host",
            "10.200.0.6",
        ]);
        let seen: Vec<_> = given
            .iter()
            .map(|s| (s.given.as_deref().unwrap(), s.host.as_deref().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("deploy@10.200.0.2:2222", "10.200.0.2"),
                ("10.200.0.6", "10.200.0.6"),
                ("[fd00::7]:22", "fd00::7")
            ],
            "each once"
        );
        assert!(given.iter().all(|s| s.explicit && !s.is_nginx_host));
        // None: the nginx host, as before.
        let nginx = sources(&["--host", "ops@10.0.0.1"]);
        assert_eq!(nginx.len(), 1);
        assert!(nginx[0].is_nginx_host && !nginx[0].explicit);
        assert_eq!(nginx[0].host.as_deref(), Some("10.0.0.1"));
        let local = sources(&[]);
        assert_eq!(
            (local[0].given.as_ref(), local[0].host.as_ref()),
            (None, None)
        );
        // The same as --host: read with the nginx host.
        let same = sources(&["--host", "10.0.0.1", "--app-ssh-host", "10.0.0.1"]);
        assert!(same[0].is_nginx_host && same[0].explicit);
    }

    #[test]
    fn each_server_host_meets_its_app_host_by_host() {
        let fleet = hosts(&["10.200.0.2", "10.200.0.6", "[fd00::7]"]);
        let given = sources(&[
            "--app-ssh-host",
            "deploy@10.200.0.6:2222",
            "--app-ssh-host",
            "10.9.9.9",
            "--app-ssh-host",
            "fd00::7",
        ]);
        assert_eq!(
            names(&entries(&fleet, &given)),
            [
                ("10.200.0.2", true, None),
                ("10.200.0.6", true, Some(0)),
                ("[fd00::7]", true, Some(2)),
                ("10.9.9.9", false, Some(1)),
            ]
        );
        // The nginx host is the app host of its loopback servers, and of its own name.
        let here = hosts(&["127.0.0.1", "127.0.0.2", "10.0.0.1", "10.0.0.5"]);
        assert_eq!(
            names(&entries(&here, &sources(&["--host", "10.0.0.1"]))),
            [
                ("127.0.0.1", true, Some(0)),
                ("127.0.0.2", true, Some(0)),
                ("10.0.0.1", true, Some(0)),
                ("10.0.0.5", true, None),
            ]
        );
        // An --app-ssh-host is matched by its name alone, loopback or not.
        assert_eq!(
            names(&entries(
                &hosts(&["127.0.0.1", "127.0.0.2"]),
                &sources(&["--app-ssh-host", "127.0.0.1:2222"])
            )),
            [("127.0.0.1", true, Some(0)), ("127.0.0.2", true, None)]
        );
    }

    #[test]
    fn one_app_host_and_one_server_host_are_one_host_whatever_their_names() {
        let one = entries(
            &hosts(&["10.0.0.5"]),
            &sources(&["--app-ssh-host", "app1.example"]),
        );
        assert_eq!(names(&one), [("10.0.0.5", true, Some(0))]);
        // Nothing routed yet: the app host by its name.
        let none = entries(&[], &sources(&["--host", "deploy@app1:2222"]));
        assert_eq!(names(&none), [("app1", false, Some(0))]);
        assert_eq!(names(&entries(&[], &sources(&[])))[0].0, "localhost");
    }

    #[test]
    fn health_urls_with_a_host() {
        let template = |text: &str| Template {
            text: text.into(),
            per_host: text.contains("{host}"),
        };
        let fleet = template("http://{host}:{port}/actuator/health");
        assert_eq!(
            fleet.url(Some("10.200.0.2"), 8001),
            "http://10.200.0.2:8001/actuator/health"
        );
        assert_eq!(
            fleet.url(Some("[fd00::7]"), 8000),
            "http://[fd00::7]:8000/actuator/health"
        );
        assert_eq!(
            fleet.url(Some("fd00::7"), 8000),
            "http://[fd00::7]:8000/actuator/health"
        );
        let one = template("http://10.0.0.5:{port}/health");
        assert!(!one.per_host);
        assert_eq!(one.url(None, 8000), "http://10.0.0.5:8000/health");
        let cli = |url: &str| {
            Cli::try_parse_from(["bg-status", "--health-url", url])
                .unwrap()
                .health_template()
        };
        assert!(
            cli("http://{host}:{port}/health")
                .unwrap()
                .unwrap()
                .per_host
        );
        assert!(cli("http://{host}/health").is_err(), "no {{port}}");
        assert!(cli("ftp://{host}:{port}/").is_err());
    }

    #[test]
    fn each_color_has_its_own_keys() {
        assert_eq!(KEYS[0].pid_file_pid, "BLUE_PID_FILE_PID");
        assert_eq!(KEYS[1].health_status, "GREEN_HEALTH_STATUS");
    }
}
