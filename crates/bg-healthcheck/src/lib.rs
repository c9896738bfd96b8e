//! `bg-healthcheck`: waits until the new app answers healthy, or fails fast.
//!
//! Replaces the seed's `curl -s URL > /dev/null` loop, which counted any
//! answer (a 500 too) as healthy, ignored the body, went through whatever
//! proxy the environment set, and after its last try carried on as if all
//! was well: it could never fail the build.

use std::time::{Duration, Instant};

use bg_core::cli::{HostArgs, OutputArgs, TlsArgs, parse_duration, parse_positive_duration};
use bg_core::host::Host;
use bg_core::http::{Answer, Probe, StatusSet, check_url};
use bg_core::{Code, Failure, Report};
use clap::Parser;
use regex::Regex;

/// Wait until a URL answers healthy, or fail: at the deadline, or at once when the app dies.
///
/// Healthy = the status is in --expect-status and the body matches
/// --expect-body, --successes times in a row. A refused or reset connection is
/// "not yet". The probe runs from here, ignores http_proxy and friends, and
/// reads at most 64 KiB of a body. --host is only for --watch-pid and
/// --log-file, which live on the app host.
#[derive(Debug, Parser)]
#[command(name = "bg-healthcheck", version, max_term_width = 100)]
pub struct Cli {
    /// The URL to probe, http[s]://HOST:PORT/PATH (e.g. http://10.0.0.5:8001/actuator/health)
    #[arg(long, env = "BG_URL", value_parser = parse_url, value_name = "URL")]
    pub url: String,

    /// Statuses that count as healthy: a list or ranges, e.g. 200,204,300-399
    #[arg(
        long,
        env = "BG_EXPECT_STATUS",
        default_value = "200-299",
        value_name = "SET"
    )]
    pub expect_status: StatusSet,

    /// A regular expression the body must match, e.g. '"status":"UP"'
    #[arg(long, env = "BG_EXPECT_BODY", value_name = "REGEX")]
    pub expect_body: Option<Regex>,

    /// Time between two probes
    #[arg(long, env = "BG_INTERVAL", default_value = "1s", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// How long to wait for healthy in all
    #[arg(long, env = "BG_TIMEOUT", default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Limit for one request, connect to last byte
    #[arg(long, env = "BG_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// Healthy answers needed in a row
    #[arg(long, env = "BG_SUCCESSES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub successes: u32,

    /// Fail at once when this process dies (on --host, or here)
    #[arg(long, env = "BG_WATCH_PID", value_name = "PID")]
    pub watch_pid: Option<u32>,

    /// The app's log (on --host, or here): its last 50 lines are shown on failure
    #[arg(long, env = "BG_LOG_FILE", value_parser = bg_core::cli::parse_host_path, value_name = "PATH")]
    pub log_file: Option<String>,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_url(value: &str) -> Result<String, String> {
    check_url(value).map(|()| value.to_string())
}

/// Why the app is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url} not healthy after {} ({attempts} attempts); last answer: {}", bg_core::log::duration(*after), describe(last))]
    Unhealthy {
        url: String,
        after: Duration,
        attempts: u32,
        last: Answer,
        tail: Option<(String, String)>,
    },

    #[error("the app (pid {pid}) died after {} ({attempts} attempts); last answer: {}", bg_core::log::duration(*after), describe(last))]
    Died {
        pid: u32,
        after: Duration,
        attempts: u32,
        last: Answer,
        tail: Option<(String, String)>,
    },
}

impl Failure for HealthError {
    fn code(&self) -> Code {
        match self {
            HealthError::Unhealthy { .. } | HealthError::Died { .. } => Code::Failed,
        }
    }

    fn hint(&self) -> Option<String> {
        let (log, last) = match self {
            HealthError::Unhealthy { tail, last, .. } | HealthError::Died { tail, last, .. } => {
                (tail, last)
            }
        };
        if matches!(self, HealthError::Unhealthy { .. }) && last.is_tls_failure() {
            // The app may be fine: nothing got past the certificate.
            return Some(
                "the app was never reached: fix what the last answer says (the certificate, its trust or the URL); do not switch"
                    .to_string(),
            );
        }
        Some(match (self, log) {
            (_, Some((path, _))) => format!("see the app's log above ({path}); the old port still serves traffic, do not switch"),
            (HealthError::Died { .. }, None) => "see the app's log (pass --log-file to show it here); do not switch".to_string(),
            (HealthError::Unhealthy { .. }, None) => "check the app's log (pass --log-file to show it here), or raise --timeout for a slow start; do not switch".to_string(),
        })
    }

    fn details(&self) -> Option<String> {
        match self {
            HealthError::Unhealthy { tail, .. } | HealthError::Died { tail, .. } => tail
                .as_ref()
                .map(|(path, text)| bg_core::proc::framed_tail(path, text)),
        }
    }
}

/// "503 {"status":"DOWN"}" or "no answer (connection refused)", on one line.
pub fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Status { status, body } => {
            let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut start: String = body.chars().take(200).collect();
            if start.len() < body.len() {
                start.push_str("...");
            }
            if start.is_empty() {
                format!("status {status}, empty body")
            } else {
                format!("status {status}, body {start}")
            }
        }
        Answer::NoAnswer { reason } => format!("no answer ({reason})"),
    }
}

/// How many log lines a failure shows.
const TAIL_LINES: usize = 50;

impl Cli {
    /// Whether one answer is healthy.
    pub fn healthy(&self, answer: &Answer) -> bool {
        match answer {
            Answer::Status { status, body } => {
                self.expect_status.contains(*status)
                    && self.expect_body.as_ref().is_none_or(|re| re.is_match(body))
            }
            Answer::NoAnswer { .. } => false,
        }
    }

    fn tail(&self, host: Option<&dyn Host>) -> Option<(String, String)> {
        let (host, path) = (host?, self.log_file.as_ref()?);
        let text = match bg_core::proc::tail(host, path, TAIL_LINES) {
            Ok(Some(text)) => text,
            Ok(None) => format!("({path} does not exist)"),
            Err(e) => format!("(cannot read {path}: {e})"),
        };
        Some((path.clone(), text))
    }
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        // A bad --cacert is bad input, before anything else happens.
        let trust = self.tls.trust()?;
        // The app host is needed only to watch the process and read its log.
        let host = if self.watch_pid.is_some() || self.log_file.is_some() {
            Some(self.host.connect()?)
        } else {
            None
        };
        let host = host.as_deref();
        // From the first wait on, one command on the host watches the
        // process, and a death ends the wait at once, not at the next probe.
        let mut watch: Option<bg_core::proc::Watch> = None;
        let probe = Probe::with_trust(self.request_timeout, &trust);
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut attempts = 0u32;
        let mut in_a_row = 0u32;
        let mut shown = String::new();
        bg_core::log::info(&format!(
            "waiting up to {} for {} (status {}{})",
            humantime::format_duration(self.timeout),
            self.url,
            self.expect_status,
            self.expect_body
                .as_ref()
                .map(|re| format!(", body matching {re}"))
                .unwrap_or_default()
        ));
        // With --watch-pid the watch starts beside the first probe: a
        // process already dead, or dying while a probe hangs, ends the check
        // at once, not after --request-timeout.
        let mut to_watch = self.watch_pid.zip(host);
        loop {
            let asked = Instant::now();
            attempts += 1;
            // No request outlives the deadline.
            let within = self
                .request_timeout
                .min(deadline.saturating_duration_since(asked))
                .max(Duration::from_millis(100));
            let answer = match ask(&probe, &self.url, within, &mut watch, to_watch.take())? {
                Some(answer) => answer,
                None => {
                    return Err(HealthError::Died {
                        pid: self.watch_pid.unwrap_or_default(),
                        after: rounded(start.elapsed()),
                        attempts,
                        last: Answer::NoAnswer {
                            reason: "it died while a request was in flight".to_string(),
                        },
                        tail: self.tail(host),
                    }
                    .into());
                }
            };
            let healthy = self.healthy(&answer);
            in_a_row = if healthy { in_a_row + 1 } else { 0 };
            let seen = describe(&answer);
            if seen != shown {
                bg_core::log::info(&format!("attempt {attempts}: {seen}"));
                shown = seen;
            } else {
                bg_core::log::debug(&format!("attempt {attempts}: {shown}"));
            }
            if in_a_row >= self.successes
                && let (Some(pid), Some(host)) = (self.watch_pid, host)
            {
                // A healthy answer from a watched process that is gone came
                // from someone else (the old app still on the port).
                let watching = match watch.as_mut() {
                    Some(watching) => watching,
                    None => watch.insert(bg_core::proc::watch(host, pid)?),
                };
                if watching.gone(Duration::ZERO)? {
                    return Err(HealthError::Died {
                        pid,
                        after: rounded(start.elapsed()),
                        attempts,
                        last: answer,
                        tail: self.tail(Some(host)),
                    }
                    .into());
                }
            }
            if in_a_row >= self.successes {
                let after = start.elapsed();
                bg_core::log::info(&format!(
                    "healthy after {} ({attempts} attempts)",
                    humantime::format_duration(Duration::from_millis(after.as_millis() as u64))
                ));
                return Ok(
                    Report::new(format!("healthy after {}ms", after.as_millis()))
                        .field("HEALTHY_AFTER_MS", after.as_millis() as u64)
                        .field("ATTEMPTS", attempts)
                        .field("URL", self.url.clone()),
                );
            }
            let now = Instant::now();
            let next = (asked + self.interval).min(deadline);
            let wait = next.saturating_duration_since(now);
            let gone = match (self.watch_pid, host) {
                (Some(pid), Some(host)) => {
                    if watch.is_none() {
                        watch = Some(bg_core::proc::watch(host, pid)?);
                    }
                    watch.as_mut().expect("just started").gone(wait)?
                }
                _ => {
                    std::thread::sleep(wait);
                    false
                }
            };
            if gone {
                return Err(HealthError::Died {
                    pid: self.watch_pid.unwrap_or_default(),
                    after: rounded(start.elapsed()),
                    attempts,
                    last: answer,
                    tail: self.tail(host),
                }
                .into());
            }
            if Instant::now() >= deadline {
                return Err(HealthError::Unhealthy {
                    url: self.url.clone(),
                    after: rounded(start.elapsed()),
                    attempts,
                    last: answer,
                    tail: self.tail(host),
                }
                .into());
            }
        }
    }
}

/// One probe, watching the process meanwhile when there is a watch:
/// `None` when the process died before the answer came.
/// `start`: the process to start watching, beside this probe (the first):
/// the request goes out while the watch makes its first look.
fn ask(
    probe: &Probe,
    url: &str,
    within: Duration,
    watch: &mut Option<bg_core::proc::Watch>,
    start: Option<(u32, &dyn Host)>,
) -> Result<Option<Answer>, bg_core::HostError> {
    if watch.is_none() && start.is_none() {
        return Ok(Some(probe.get_within(url, within)));
    }
    // The request in a thread of its own, so that the watch is read while
    // it is in flight. A request still running when the process died is
    // left to its own timeout; nothing waits for it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (probe, url) = (probe.clone(), url.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(probe.get_within(&url, within));
    });
    if let Some((pid, host)) = start {
        *watch = Some(bg_core::proc::watch(host, pid)?);
    }
    let Some(watch) = watch.as_mut() else {
        return Ok(rx.recv().ok());
    };
    if watch.gone(Duration::ZERO)? {
        return Ok(None);
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(answer) => return Ok(Some(answer)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Some(Answer::NoAnswer {
                    reason: "the request failed".to_string(),
                }));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if watch.gone(Duration::from_millis(30))? {
            return Ok(None);
        }
    }
}

fn rounded(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["bg-healthcheck", "--url", "http://127.0.0.1:1/"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn status(status: u16, body: &str) -> Answer {
        Answer::Status {
            status,
            body: body.to_string(),
        }
    }

    #[test]
    fn health_is_status_and_body() {
        let plain = cli(&[]);
        assert!(plain.healthy(&status(200, "")));
        assert!(plain.healthy(&status(204, "")));
        assert!(!plain.healthy(&status(500, "")));
        assert!(!plain.healthy(&status(302, "")));
        assert!(!plain.healthy(&Answer::NoAnswer {
            reason: "connection refused".into()
        }));
        let strict = cli(&[
            "--expect-status",
            "200,204,300-399",
            "--expect-body",
            r#""status"\s*:\s*"UP""#,
        ]);
        assert!(strict.healthy(&status(200, r#"{"status": "UP"}"#)));
        assert!(strict.healthy(&status(302, r#"{"status":"UP"}"#)));
        assert!(!strict.healthy(&status(200, r#"{"status":"DOWN"}"#)));
        assert!(!strict.healthy(&status(201, r#"{"status":"UP"}"#)));
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["--url", "ftp://x/"][..],
            &["--url", "http://x/", "--expect-body", "("][..],
            &["--url", "http://x/", "--expect-status", "2xx"][..],
            &["--url", "http://x/", "--successes", "0"][..],
        ] {
            let mut argv = vec!["bg-healthcheck"];
            argv.extend_from_slice(args);
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn answers_read_on_one_line() {
        assert_eq!(
            describe(&status(503, "{\"status\":\n \"DOWN\"}")),
            "status 503, body {\"status\": \"DOWN\"}"
        );
        assert_eq!(describe(&status(500, "")), "status 500, empty body");
        let long = "x".repeat(500);
        assert_eq!(
            describe(&status(200, &long)).len(),
            "status 200, body ".len() + 203
        );
        assert_eq!(
            describe(&Answer::NoAnswer {
                reason: "connection refused".into()
            }),
            "no answer (connection refused)"
        );
    }
}
