//! HTTP probes: the health check, and bg-switch's check through nginx.
//!
//! A probe asks once and says what it saw. Every answer is an answer (a 5xx
//! is a status, not a transport error), a refused or reset connection is "no
//! answer yet", environment proxies are ignored (a probe of 127.0.0.1 through
//! a corporate proxy tests the proxy), and at most [`BODY_LIMIT`] bytes of a
//! body are read.

use std::fmt;
use std::io::Read;
use std::str::FromStr;
use std::time::Duration;

/// How much of a body is read; enough for any health document.
pub const BODY_LIMIT: u64 = 64 * 1024;

/// What one request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with this status and (the start of) this body.
    Status { status: u16, body: String },
    /// No HTTP answer: refused, reset, timed out, or not HTTP at all.
    NoAnswer { reason: String },
}

/// A reusable HTTP client for probes.
#[derive(Debug, Clone)]
pub struct Probe {
    agent: ureq::Agent,
}

impl Probe {
    /// Each request, connect to last byte, is bounded by `request_timeout`.
    pub fn new(request_timeout: Duration) -> Probe {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(request_timeout))
            .max_redirects(0)
            .user_agent("bg-deploy-probe")
            .build();
        Probe {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn get(&self, url: &str) -> Answer {
        self.answer(self.agent.get(url).header("Connection", "close").call())
    }

    /// [`Probe::get`], bounded by `within` too (the time left before a
    /// deadline, when that is shorter than the request timeout).
    pub fn get_within(&self, url: &str, within: Duration) -> Answer {
        let request = self
            .agent
            .get(url)
            .header("Connection", "close")
            .config()
            .timeout_global(Some(within))
            .build();
        self.answer(request.call())
    }

    fn answer(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut bytes = Vec::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(BODY_LIMIT)
                    .read_to_end(&mut bytes);
                Answer::Status {
                    status,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            Err(error) => Answer::NoAnswer {
                reason: describe(&error),
            },
        }
    }
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            _ => io.to_string(),
        },
        ureq::Error::Timeout(_) => "no answer within the request timeout".to_string(),
        other => other.to_string(),
    }
}

/// Checks that a URL is one a probe can ask: `http://host[:port]/path`.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{url:?}: https probes are not built in; probe the app or nginx over http on loopback"
            ));
        }
        _ => return Err(format!("{url:?} must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if uri.port_u16() == Some(0) {
        return Err(format!("{url:?}: port 0 is not a port"));
    }
    Ok(())
}

/// A set of statuses: `200-299`, `200,204,300-399`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }
}

impl FromStr for StatusSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(format!("{s:?} is not an HTTP status (100 to 599)")),
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let range = match part.split_once('-') {
                Some((low, high)) => (parse(low)?, parse(high)?),
                None => (parse(part)?, parse(part)?),
            };
            if range.0 > range.1 {
                return Err(format!("{part:?} is an empty range"));
            }
            ranges.push(range);
        }
        Ok(StatusSet(ranges))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(low, high)| {
                if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets() {
        let set: StatusSet = "200,204,300-399".parse().unwrap();
        for ok in [200, 204, 300, 302, 399] {
            assert!(set.contains(ok), "{ok}");
        }
        for no in [201, 299, 400, 500, 503] {
            assert!(!set.contains(no), "{no}");
        }
        assert_eq!(set.to_string(), "200,204,300-399");
        for bad in ["", "abc", "99", "600", "300-200", "200-", "2xx"] {
            assert!(bad.parse::<StatusSet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:8000/actuator/health").is_ok());
        assert!(check_url("http://[::1]:8000/").is_ok());
        assert!(check_url("https://example.com/").is_err());
        assert!(check_url("127.0.0.1:8000").is_err());
        assert!(check_url("http:///x").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("http://127.0.0.1:0/").is_err());
    }

    #[test]
    fn a_refused_connection_is_no_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let answer = Probe::new(Duration::from_secs(2)).get(&format!("http://127.0.0.1:{port}/"));
        assert_eq!(
            answer,
            Answer::NoAnswer {
                reason: "connection refused".into()
            }
        );
    }
}
