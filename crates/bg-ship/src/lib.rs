//! `bg-ship`: puts the jar on the app host and starts it on a port.
//!
//! Replaces the seed's `scp app.jar host:DIR` and
//! `ssh host "nohup java -jar ... > DIR/BUILD.log &" &`: scp wrote straight
//! to the real name (a broken upload left half a jar where the next start
//! would find it), re-sent identical files, and the backgrounded ssh never
//! said whether java started at all.

mod progress;
mod prune;
mod start;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bg_core::cli::{HostArgs, LockArgs, OutputArgs, parse_duration, parse_port};
use bg_core::host::{Host, Input, holder_description};
use bg_core::{Cmd, Code, Failure, HostError, Report, UsageError};
use clap::Parser;

pub use progress::{Progress, human};
pub use prune::{Plan, plan};
pub use start::{Launch, Record, START_SCRIPT, parse_env, split_java_opts, start_args};

/// Upload a jar to the app host and start it, detached, on a port.
///
/// The jar goes to DIR under a partial name, its sha256 is checked on the
/// host, and only then is it renamed into place; an identical file already
/// there is not sent again. Then `java <java-opts> -Dserver.port=PORT
/// [-Dspring.profiles.active=PROFILE] -jar DIR/FILE` starts in its own
/// session, output to the log file, pid to DIR/app-PORT.pid, and what was
/// started (jar, version, sha256, time, actor) to DIR/app-PORT.json for
/// bg-status. A process gone within --settle (1s) is exit 1, with the end of
/// its log.
#[derive(Debug, Parser)]
#[command(name = "bg-ship", version, max_term_width = 100)]
pub struct Cli {
    /// The jar (or any file) to ship
    #[arg(long, env = "BG_ARTIFACT", value_name = "FILE")]
    pub artifact: PathBuf,

    /// Directory on the host to put it in (created if missing)
    #[arg(long, env = "BG_DEPLOY_PATH", value_parser = bg_core::cli::parse_host_path, value_name = "DIR")]
    pub deploy_path: String,

    /// The port the app listens on (-Dserver.port)
    #[arg(long, env = "BG_PORT", value_parser = parse_port, value_name = "PORT")]
    pub port: u16,

    /// Spring profile (-Dspring.profiles.active)
    #[arg(long, env = "BG_PROFILE", value_parser = bg_core::cli::parse_name, value_name = "NAME")]
    pub profile: Option<String>,

    /// JVM options, split like a shell would (quotes respected, nothing expanded)
    #[arg(
        long,
        env = "BG_JAVA_OPTS",
        allow_hyphen_values = true,
        value_name = "OPTS"
    )]
    pub java_opts: Option<String>,

    /// Log file for the app's stdout and stderr, appended to; relative to DIR [default: app-PORT.log]
    #[arg(long, env = "BG_LOG_FILE", value_parser = bg_core::cli::parse_host_path, value_name = "NAME")]
    pub log_file: Option<String>,

    /// Shell command to start the app instead of java, with {port} {artifact} {profile} {java_opts} {deploy_path} filled in, each quoted
    #[arg(long, env = "BG_START_CMD", value_name = "TEMPLATE")]
    pub start_cmd: Option<String>,

    /// Environment variable for the app; repeatable
    #[arg(long = "env", value_parser = parse_env, value_name = "KEY=VAL")]
    pub env: Vec<(String, String)>,

    /// Keep this many artifacts in DIR (this one included); older ones go unless a running process uses them
    #[arg(long, env = "BG_KEEP", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub keep: Option<u32>,

    /// Upload only; do not start anything
    #[arg(long, env = "BG_NO_START")]
    pub no_start: bool,

    /// Show what would be sent and started; change nothing
    #[arg(long, env = "BG_DRY_RUN")]
    pub dry_run: bool,

    /// The java to run on the host
    #[arg(long, env = "BG_JAVA", default_value = "java", value_parser = bg_core::cli::parse_host_path, value_name = "PATH")]
    pub java: String,

    /// The version being deployed, recorded in DIR/app-PORT.json for bg-status (gradle-version's
    /// `--format env` sets BG_VERSION)
    #[arg(long, env = "BG_VERSION", value_parser = bg_core::cli::parse_name, value_name = "VERSION")]
    pub app_version: Option<String>,

    /// How long the started process must stay alive to count as started
    #[arg(long, env = "BG_SETTLE", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Why the artifact is not shipped and running.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot read the artifact {}: {source}", path.display())]
    Artifact {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the upload of {path} arrived damaged: sha256 {remote} on the host, {local} here")]
    Checksum {
        path: String,
        local: String,
        remote: String,
    },

    #[error(
        "port {port} is still taken by {}; nothing was uploaded or started",
        bg_core::listeners::describe(listeners)
    )]
    PortBusy {
        port: u16,
        listeners: Vec<bg_core::listeners::Listener>,
    },

    #[error("{} changed while it was being shipped; nothing was renamed into place", path.display())]
    Changed { path: PathBuf },

    #[error("the start command printed no pid: {output:?}")]
    NoPid { output: String },

    #[error("the app (pid {pid}) exited within {} of starting", humantime::format_duration(*within))]
    Died {
        pid: u32,
        within: Duration,
        log: String,
        tail: Option<String>,
    },
}

impl Failure for ShipError {
    fn code(&self) -> Code {
        match self {
            ShipError::Artifact { .. } => Code::Usage,
            ShipError::PortBusy { .. } => Code::Unsafe,
            ShipError::Checksum { .. }
            | ShipError::Changed { .. }
            | ShipError::NoPid { .. }
            | ShipError::Died { .. } => Code::Failed,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ShipError::Artifact { .. } => "check --artifact (the build's output path)".to_string(),
            ShipError::PortBusy { port, .. } => format!(
                "free it first with `bg-stop-port --port {port}` (never the active port); the old app would answer the health check in the new one's place"
            ),
            ShipError::Checksum { .. } => {
                "run again; if it persists, check the host's disk (df) and memory".to_string()
            }
            ShipError::Changed { .. } => {
                "ship the jar once the build has finished writing it".to_string()
            }
            ShipError::NoPid { .. } => "check --start-cmd and the host's shell".to_string(),
            ShipError::Died { log, .. } => format!("see the app's log above ({log})"),
        })
    }

    fn details(&self) -> Option<String> {
        match self {
            ShipError::Died {
                log,
                tail: Some(tail),
                ..
            } => Some(bg_core::proc::framed_tail(log, tail)),
            _ => None,
        }
    }
}

/// How many log lines a failed start shows.
const TAIL_LINES: usize = 50;

/// `$1` the deploy directory, `$2` the artifact's name, `$3` its size.
/// Prints `BG-SUM ` and the sha256 of the file already there when it has
/// that size (or `-`: a file of another size cannot be identical, and is
/// not read), then the directory's physical path: one round trip instead of
/// two. The marker lets a login shell print lines of its own first.
const PREPARE_SCRIPT: &str = r#"mkdir -p -- "$1" && cd -- "$1" || exit 1
sum_there "$2" "$3"
pwd -P
"#;

/// The same for `--dry-run`, which creates nothing.
const RESOLVE_SCRIPT: &str = r#"if cd -- "$1" 2>/dev/null; then
  sum_there "$2" "$3"
  pwd -P
else
  printf 'BG-SUM -\n%s\n' "$1"
fi
"#;

/// `sum_there NAME SIZE`: the `BG-SUM` line for the file NAME in the
/// current directory, shared by [`PREPARE_SCRIPT`] and [`RESOLVE_SCRIPT`].
const SUM_THERE_FUNCTION: &str = r#"sum_there() {
  if [ -f "$1" ] && size=$(wc -c < "$1") && [ "$((size))" -eq "$2" ]; then
    sum=$(sha256_of "$1") || sum=-
  else
    sum=-
  fi
  printf 'BG-SUM %s\n' "$sum"
}
"#;

/// `$4` `refuse` (a taken port stops here), `look` (say, go on) or empty,
/// `$5` the port as /proc writes it. Prints `BG-PORT busy|free|unknown`.
const PORT_GUARD: &str = r#"if [ -n "$4" ]; then
  state=$(wait_free "$5" 0); rc=$?
  if [ "$rc" = 100 ]; then state=unknown; elif [ "$state" = BUSY ]; then state=busy; else state=free; fi
  echo "BG-PORT $state"
  if [ "$4" = refuse ] && [ "$state" != free ]; then exit 0; fi
fi
"#;

/// The sum and the directory from [`PREPARE_SCRIPT`]'s output: what follows
/// the first `BG-SUM` line is the directory, whatever it holds (a newline
/// too), but the one newline `pwd` adds.
fn parse_prepared(stdout: &str) -> Option<(String, String)> {
    let at = if stdout.starts_with("BG-SUM ") {
        0
    } else {
        stdout.find("\nBG-SUM ")? + 1
    };
    let (line, dir) = stdout[at + "BG-SUM ".len()..].split_once('\n')?;
    let dir = dir.strip_suffix('\n').unwrap_or(dir);
    Some((line.trim().to_string(), dir.to_string()))
}

/// `$1` partial name, `$2` expected size. Writes stdin to the partial name,
/// then prints the sha256 of what is on disk once its size shows that every
/// byte arrived. On any failure the partial file is removed.
///
/// The sum is taken after the last byte (from the page cache), not as the
/// bytes pass through a `tee`: on a loaded host the `tee` competes with sshd
/// for the CPU, and was 20% slower in benches/ship-vs-scp.sh.
const RECEIVE_SCRIPT: &str = r#"cat > "$1" || { rm -f -- "$1"; exit 1; }
size=$(wc -c < "$1") || { rm -f -- "$1"; exit 1; }
if [ "$((size))" -ne "$2" ]; then
  rm -f -- "$1"; echo "stored $((size)) of $2 bytes" >&2; exit 1
fi
sha256_of "$1" || { rm -f -- "$1"; exit 1; }
"#;

/// `$1` partial name, `$2` real name, `$3` `keep` or `drop`: renames the
/// checked upload into place, or removes a damaged one.
const SETTLE_UPLOAD_SCRIPT: &str = r#"# rename the checked upload into place
if [ "$3" = keep ]; then mv -f -- "$1" "$2"; else rm -f -- "$1"; fi
"#;

/// `$1` the checked upload, `$2` its real name: put in place, then (after
/// `shift 2`) [`START_SCRIPT`] with its own arguments.
const RENAME_THEN: &str = r#"# put the checked upload in place, then start the app
mv -f -- "$1" "$2" || exit 1
shift 2
"#;

/// One of our scripts with the checksum function it uses.
fn with_sha256(title: &str, script: &str) -> String {
    format!("# {title}\n{}{script}", bg_core::host::SHA256_FUNCTION)
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        let plan = self.check()?;
        self.ship(&plan)
    }
}

impl Cli {
    fn ship(&self, plan: &Checked) -> bg_core::Result<Report> {
        let host = self.host.connect()?;
        let host = host.as_ref();
        let _lock = if self.dry_run {
            None
        } else {
            Some(host.lock(
                &self.lock.path("port", &self.port.to_string()),
                self.lock.lock_timeout,
                &holder_description("bg-ship"),
            )?)
        };
        let (title, body) = if self.dry_run {
            ("find the deploy directory", RESOLVE_SCRIPT)
        } else {
            ("make the deploy directory", PREPARE_SCRIPT)
        };
        let script = with_sha256(
            title,
            &format!(
                "{}{PORT_GUARD}{SUM_THERE_FUNCTION}{body}",
                bg_core::listeners::WAIT_FREE_FUNCTION
            ),
        );
        // A taken port (the old app would answer the health check in the
        // new one's place) is refused before anything changes.
        let guard = match (self.no_start, self.dry_run) {
            (true, _) => "",
            (false, false) => "refuse",
            (false, true) => "look",
        };
        let prepare = |guard: &str| {
            Cmd::script(
                &script,
                &[
                    &self.deploy_path,
                    &plan.name,
                    &plan.len().to_string(),
                    guard,
                    &bg_core::listeners::proc_port(self.port),
                ],
            )
        };
        // Whether the port is taken, and the deploy directory: one round trip.
        let mut output = host.run_ok(&prepare(guard))?;
        let port_state = output
            .stdout_text()
            .lines()
            .find_map(|l| l.strip_prefix("BG-PORT ").map(str::to_string));
        let taken = match port_state.as_deref() {
            Some("busy") => true,
            // No /proc: ss, lsof or fuser tell, then the directory is made.
            Some("unknown") => {
                let taken = bg_core::listeners::is_listening(host, self.port)?;
                if !taken {
                    output = host.run_ok(&prepare(""))?;
                }
                taken
            }
            _ => false,
        };
        if taken {
            let found = bg_core::listeners::find(host, self.port)?;
            let busy = ShipError::PortBusy {
                port: self.port,
                listeners: found.listeners,
            };
            if !self.dry_run {
                return Err(busy.into());
            }
            bg_core::log::warn(&format!("dry run: {busy}"));
        }
        let stdout = output.stdout_text();
        let Some((remote_hash, dir)) = parse_prepared(&stdout) else {
            return Err(HostError::Command {
                host: host.name().to_string(),
                command: "make the deploy directory".to_string(),
                output: Box::new(output),
            }
            .into());
        };
        let remote = join(&dir, &plan.name);
        // Per port, as the lock is: two runs for the two ports that ship the
        // same jar into one directory never write the same partial file.
        let partial = join(&dir, &format!(".{}.{}.partial", plan.name, self.port));
        let log_file = match &self.log_file {
            Some(name) if name.starts_with('/') => name.clone(),
            Some(name) => join(&dir, name),
            None => join(&dir, &format!("app-{}.log", self.port)),
        };
        let pid_file = join(&dir, &format!("app-{}.pid", self.port));

        // Our own sum is needed before sending only to compare it with a
        // file of the same size already there (or to show it in a dry run);
        // otherwise it is taken as the bytes go out.
        let remote_hash = remote_hash.trim();
        let local_hash = if remote_hash != "-" || self.dry_run {
            Some(
                bg_core::sha256::file(&self.artifact).map_err(|source| ShipError::Artifact {
                    path: self.artifact.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        let identical = local_hash.as_deref() == Some(remote_hash);

        let launch = Launch {
            port: self.port,
            artifact: remote.clone(),
            profile: self.profile.clone(),
            java_opts: plan.java_opts.clone(),
            deploy_path: dir.clone(),
        };
        let argv = match &self.start_cmd {
            Some(template) => vec![
                "sh".to_string(),
                "-c".to_string(),
                launch.fill(template).map_err(|why| bad_template(&why))?,
            ],
            None => launch.java_argv(&self.java),
        };

        if self.dry_run {
            let upload = if identical {
                format!("{remote} is already there, identical: would not send it")
            } else {
                format!(
                    "would upload {} ({}) to {remote}",
                    self.artifact.display(),
                    human(plan.len())
                )
            };
            bg_core::log::info(&format!("dry run on {}: {upload}", host.name()));
            if !self.no_start {
                bg_core::log::info(&format!(
                    "dry run: would start `{}` with output to {log_file}, pid to {pid_file}",
                    bg_core::quote::join(&argv).unwrap_or_default()
                ));
            }
            return Ok(Report::new(format!("dry run: {remote}"))
                .field("PID", serde_null())
                .field("REMOTE_ARTIFACT", remote)
                .field("LOG_FILE", log_file)
                .field("SENT", false)
                .field("SHA256", local_hash));
        }

        let (sent, sha256) = match local_hash {
            Some(hash) if identical => {
                bg_core::log::info(&format!(
                    "{remote} on {} is already identical (sha256 {}): not sending it again",
                    host.name(),
                    &hash[..12]
                ));
                (false, hash)
            }
            _ => (true, self.upload(host, &partial, &remote, plan)?),
        };
        // A checked upload goes into place with the start: one round trip less.
        let rename = (sent && !self.no_start).then_some((partial.as_str(), remote.as_str()));

        // Before the start: the start hands the channel to the watch, and
        // the shipped jar is never pruned anyway.
        let mut pruned = Vec::new();
        if let Some(keep) = self.keep {
            let suffix = match plan.name.rfind('.') {
                Some(dot) => &plan.name[dot..],
                None => "",
            };
            if suffix.is_empty() {
                bg_core::log::warn(
                    "--keep needs an artifact with an extension (.jar); nothing pruned",
                );
            } else {
                pruned = prune::prune(host, &dir, suffix, &plan.name, keep as usize)?;
            }
        }

        let mut pid = None;
        if !self.no_start {
            // What is started, beside the pid file; the pid goes in on the host.
            let record = Record::new(
                join(&dir, &format!("app-{}.json", self.port)),
                self.port,
                &serde_json::json!({
                    "artifact": plan.name,
                    "path": remote,
                    "sha256": sha256,
                    "version": self.app_version,
                    "started": bg_core::rfc3339(std::time::SystemTime::now()),
                    "actor": bg_core::actor(),
                }),
            );
            pid = Some(start_and_settle(
                host,
                &Files {
                    dir: &dir,
                    log: &log_file,
                    pid: &pid_file,
                    record: &record,
                },
                &self.env,
                &argv,
                self.settle,
                rename,
            )?);
        }

        let text = match pid {
            Some(pid) => pid.to_string(),
            None => remote.clone(),
        };
        Ok(Report::new(text)
            .field("PID", pid.map_or(serde_null(), serde_json::Value::from))
            .field("REMOTE_ARTIFACT", remote)
            .field("LOG_FILE", log_file)
            .field("PID_FILE", pid_file)
            .field("SENT", sent)
            .field("SHA256", sha256)
            .field("PRUNED", pruned))
    }
}

/// What the flags mean once checked, before anything touches the host.
struct Checked {
    name: String,
    java_opts: Vec<String>,
    stamp: Stamp,
}

impl Checked {
    fn len(&self) -> u64 {
        self.stamp.len
    }
}

/// The artifact as it was when checked. A jar written or replaced since
/// (a build still running) is not what was asked for, and is not shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: (meta.dev(), meta.ino()),
        }
    }
}

impl Cli {
    fn check(&self) -> bg_core::Result<Checked> {
        let meta = std::fs::metadata(&self.artifact).map_err(|source| ShipError::Artifact {
            path: self.artifact.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(UsageError::new(
                format!("{} is not a file", self.artifact.display()),
                "pass the built jar with --artifact",
            )
            .into());
        }
        let name = self
            .artifact
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                UsageError::new(
                    format!("{} has no file name in UTF-8", self.artifact.display()),
                    "rename the artifact",
                )
            })?
            .to_string();
        if self.deploy_path.is_empty() {
            return Err(UsageError::new(
                "--deploy-path is empty",
                "pass the directory on the host",
            )
            .into());
        }
        let java_opts = split_java_opts(self.java_opts.as_deref()).ok_or_else(|| {
            UsageError::new(
                format!(
                    "--java-opts has an unclosed quote: {:?}",
                    self.java_opts.as_deref().unwrap_or("")
                ),
                "close the quote, e.g. --java-opts \"-Xmx1g -Dname='a b'\"",
            )
        })?;
        if let Some(template) = &self.start_cmd {
            // Checked here with placeholder values, filled for real once DIR is known.
            let probe = Launch {
                port: self.port,
                artifact: String::new(),
                profile: None,
                java_opts: Vec::new(),
                deploy_path: String::new(),
            };
            probe.fill(template).map_err(|why| bad_template(&why))?;
        }
        Ok(Checked {
            name,
            java_opts,
            stamp: Stamp::of(&meta),
        })
    }

    /// Sends the file to `partial`, checks its sha256 there against ours,
    /// renames it to `remote` (or leaves that to the start, which follows);
    /// the sha256. Until the rename, nothing is under the real name.
    fn upload(
        &self,
        host: &dyn Host,
        partial: &str,
        remote: &str,
        plan: &Checked,
    ) -> Result<String, Box<dyn Failure>> {
        let len = plan.len();
        bg_core::log::info(&format!(
            "uploading {} ({}) to {} on {}",
            self.artifact.display(),
            human(len),
            remote,
            host.name()
        ));
        let started = Instant::now();
        let artifact_error = |source| ShipError::Artifact {
            path: self.artifact.clone(),
            source,
        };
        let file = std::fs::File::open(&self.artifact).map_err(artifact_error)?;
        let changed = || -> Box<dyn Failure> {
            ShipError::Changed {
                path: self.artifact.clone(),
            }
            .into()
        };
        if Stamp::of(&file.metadata().map_err(artifact_error)?) != plan.stamp {
            return Err(changed());
        }
        let mut reader = bg_core::sha256::Reader::new(file.take(len));
        let mut progress = Progress::new(len);
        let cmd = Cmd::script(
            &with_sha256("receive and checksum", RECEIVE_SCRIPT),
            &[partial, &len.to_string()],
        );
        let output = host.exec(
            &cmd,
            Input::Stream {
                reader: &mut reader,
                len,
                progress: &mut |n| progress.update(n),
            },
        );
        progress.finish();
        let output = host.check(&cmd, output?)?;
        // The sum is the last line: a login shell that prints something
        // first must not make a good upload look damaged.
        let stdout = output.stdout_text();
        let found = stdout.lines().last().unwrap_or("").trim().to_string();
        let (rest, ours) = reader.into_parts();
        // Still the file that was checked, and nothing past what was sent.
        let mut file = rest.into_inner();
        let grew = file.read(&mut [0u8; 1]).map_err(artifact_error)? != 0;
        let same = !grew && Stamp::of(&file.metadata().map_err(artifact_error)?) == plan.stamp;
        let intact = same && found == ours;
        if !intact || self.no_start {
            let settle = Cmd::script(
                SETTLE_UPLOAD_SCRIPT,
                &[partial, remote, if intact { "keep" } else { "drop" }],
            );
            host.run_ok(&settle)?;
        }
        if !same {
            return Err(changed());
        }
        if !intact {
            return Err(ShipError::Checksum {
                path: partial.to_string(),
                local: ours,
                remote: found,
            }
            .into());
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        bg_core::log::info(&format!(
            "sent and verified in {:.1}s ({}/s)",
            secs,
            human((len as f64 / secs) as u64)
        ));
        Ok(ours)
    }
}

fn bad_template(why: &str) -> UsageError {
    UsageError::new(
        format!("--start-cmd: {why}"),
        "use {port} {artifact} {profile} {java_opts} {deploy_path}, unquoted (each is quoted for you)",
    )
}

fn serde_null() -> serde_json::Value {
    serde_json::Value::Null
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Where a start writes on the host.
struct Files<'a> {
    dir: &'a str,
    log: &'a str,
    pid: &'a str,
    record: &'a Record,
}

/// Runs [`START_SCRIPT`], which prints the pid and writes the pid file and
/// the record, and watches the app for `within`: gone by then is a failed
/// start. The start and the watch go to the host together, and with
/// `rename` (partial, real name) the checked upload goes into place first,
/// in the same command.
fn start_and_settle(
    host: &dyn Host,
    files: &Files<'_>,
    env: &[(String, String)],
    argv: &[String],
    within: Duration,
    rename: Option<(&str, &str)>,
) -> Result<u32, Box<dyn Failure>> {
    let (log, pid_file) = (files.log, files.pid);
    let args = start_args(files.dir, log, pid_file, Some(files.record), env, argv);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let starter = match rename {
        Some((partial, remote)) => {
            args.splice(0..0, [partial, remote]);
            let script = format!("{RENAME_THEN}{START_SCRIPT}");
            Cmd::script(&script, &args)
        }
        None => Cmd::script(START_SCRIPT, &args),
    }
    .timeout(Duration::from_secs(30));
    let begun = Instant::now();
    let (output, watch) = bg_core::proc::start_and_watch(host, &starter, pid_file)?;
    let output = host.check(&starter, output)?;
    for line in output.stderr_text().lines() {
        if line.starts_with("cannot write ") {
            bg_core::log::warn(&format!("{line}: bg-status will not know what runs there"));
        }
    }
    let text = output.stdout_text();
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Err(ShipError::NoPid { output: text }.into());
    };
    bg_core::log::info(&format!("started pid {pid} on {}, log {log}", host.name()));
    // A start that succeeded comes with its watch.
    let Some(mut watch) = watch else {
        return Err(ShipError::NoPid { output: text }.into());
    };
    if !watch.gone(within.saturating_sub(begun.elapsed()))? {
        return Ok(pid);
    }
    drop(watch);
    let tail = bg_core::proc::tail(host, log, TAIL_LINES)
        .unwrap_or_else(|e: HostError| Some(format!("(cannot read the log: {e})")));
    Err(ShipError::Died {
        pid,
        within: Duration::from_millis(begun.elapsed().as_millis() as u64),
        log: log.to_string(),
        tail,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join("/srv/app", "a.jar"), "/srv/app/a.jar");
        assert_eq!(join("/", "a.jar"), "/a.jar");
    }

    #[test]
    fn the_prepared_directory_is_whatever_follows_the_sum() {
        let sum = "a".repeat(64);
        assert_eq!(
            parse_prepared(&format!("BG-SUM {sum}\n/srv/app\n")),
            Some((sum.clone(), "/srv/app".to_string()))
        );
        // A chatty login shell first; a directory with a newline and a marker.
        assert_eq!(
            parse_prepared("welcome!\nBG-SUM -\n/srv/a\nBG-SUM x\n\n"),
            Some(("-".to_string(), "/srv/a\nBG-SUM x\n".to_string()))
        );
        assert_eq!(parse_prepared("no marker\n/srv\n"), None);
    }

    #[test]
    fn a_died_app_shows_its_log_before_the_error_line() {
        let died = ShipError::Died {
            pid: 42,
            within: Duration::from_millis(300),
            log: "/srv/app/app-8001.log".into(),
            tail: Some("APPLICATION FAILED TO START\n".into()),
        };
        assert_eq!(died.code(), Code::Failed);
        assert!(
            died.details()
                .unwrap()
                .contains("APPLICATION FAILED TO START")
        );
    }
}
