//! HTTP probes: the health check, and bg-switch's check through nginx.
//!
//! A probe asks once and says what it saw. Every answer is an answer (a 5xx
//! is a status, not a transport error), a refused or reset connection is "no
//! answer yet", environment proxies are ignored (a probe of 127.0.0.1 through
//! a corporate proxy tests the proxy), and at most [`BODY_LIMIT`] bytes of a
//! body are read.
//!
//! https goes through rustls with ring: no OpenSSL at run time, and the
//! static musl build stays static. Which servers are trusted is a [`Trust`]:
//! Mozilla's roots built into the binary, only the CAs of a PEM bundle
//! (`--cacert`, which like curl's replaces the built-in roots), or none
//! checked (`--insecure`). A certificate that is not trusted is "no answer",
//! with a reason that says which check failed and what to pass.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::Failure;
use crate::exit::Code;

/// How much of a body is read; enough for any health document.
pub const BODY_LIMIT: u64 = 64 * 1024;

/// What one request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with this status and (the start of) this body.
    Status { status: u16, body: String },
    /// No HTTP answer: refused, reset, timed out, not HTTP at all, or a
    /// server whose certificate is not trusted.
    NoAnswer { reason: String },
}

impl Answer {
    /// Whether there was no answer because of TLS: the certificate or the
    /// handshake, not the app. The fix is then in how the server is
    /// trusted (`--cacert`, the URL's name), not in waiting longer.
    pub fn is_tls_failure(&self) -> bool {
        match self {
            Answer::NoAnswer { reason } => is_tls_reason(reason),
            Answer::Status { .. } => false,
        }
    }
}

/// Whether a [`Answer::NoAnswer`] reason is a TLS failure (see [`Answer::is_tls_failure`]).
pub fn is_tls_reason(reason: &str) -> bool {
    reason.starts_with(CERTIFICATE) || reason.starts_with(HANDSHAKE)
}

/// The starts of the reasons [`tls_reason`] gives, for [`is_tls_reason`].
const CERTIFICATE: &str = "certificate ";
const HANDSHAKE: &str = "TLS handshake failed";

/// Which server certificates an https probe trusts.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Mozilla's root CAs, built into the binary (webpki-roots): the same on
    /// every agent, whatever its system bundle holds.
    #[default]
    BuiltIn,
    /// Only the CAs of a PEM bundle (`--cacert`), instead of the built-in
    /// roots, as curl's `--cacert` does.
    Cacert {
        path: PathBuf,
        certs: Arc<Vec<Certificate<'static>>>,
    },
    /// No verification at all (`--insecure`).
    Insecure,
}

impl Trust {
    /// Reads a PEM bundle of CA certificates: `--cacert FILE`.
    pub fn cacert(path: &Path) -> Result<Trust, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let certs = parse_bundle(&bytes).map_err(|why| TlsError::NotPem {
            path: path.to_path_buf(),
            why,
        })?;
        Ok(Trust::Cacert {
            path: path.to_path_buf(),
            certs: Arc::new(certs),
        })
    }

    /// What is trusted, for a reason: "the built-in roots".
    fn text(&self) -> String {
        match self {
            Trust::BuiltIn => "Mozilla's roots built in".to_string(),
            Trust::Cacert { path, .. } => format!("the CAs in {}", path.display()),
            Trust::Insecure => "anything (--insecure)".to_string(),
        }
    }

    fn tls_config(&self) -> TlsConfig {
        let builder = TlsConfig::builder();
        match self {
            Trust::BuiltIn => builder.root_certs(RootCerts::WebPki),
            Trust::Cacert { certs, .. } => builder.root_certs(RootCerts::Specific(certs.clone())),
            Trust::Insecure => builder.disable_verification(true),
        }
        .build()
    }
}

/// The certificates of a PEM bundle, each checked to be one rustls can
/// trust: a bundle with a broken certificate is refused whole rather than
/// quietly trusting less than it says (rustls itself would skip it).
fn parse_bundle(bytes: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    let mut keys = 0;
    for item in ureq::tls::parse_pem(bytes) {
        match item.map_err(|e| format!("broken PEM: {e}"))? {
            PemItem::Certificate(cert) => certs.push(cert),
            PemItem::PrivateKey(_) => keys += 1,
            // Kinds ureq may add later; none is a CA.
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err(if keys > 0 {
            "it holds a private key and no certificate".to_string()
        } else if bytes.starts_with(&[0x30]) {
            "no -----BEGIN CERTIFICATE----- block; it looks like DER: convert it with `openssl x509 -inform der -in FILE -out FILE.pem`".to_string()
        } else {
            "no -----BEGIN CERTIFICATE----- block".to_string()
        });
    }
    let mut store = rustls::RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        store
            .add(rustls::pki_types::CertificateDer::from(cert.der()))
            .map_err(|e| {
                format!(
                    "certificate {} of {} is not usable: {e}",
                    n + 1,
                    certs.len()
                )
            })?;
    }
    Ok(certs)
}

/// A `--cacert` that cannot be used: bad input, exit 2, before any probe.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA bundle {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the CA bundle {path} is not a PEM file of certificates: {why}")]
    NotPem { path: PathBuf, why: String },
}

impl Failure for TlsError {
    fn code(&self) -> Code {
        match self {
            TlsError::Unreadable { .. } | TlsError::NotPem { .. } => Code::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            TlsError::Unreadable { .. } => "check --cacert / BG_CACERT: the path of a PEM file of the CA certificates to trust, readable by this user".to_string(),
            TlsError::NotPem { .. } => "give --cacert a PEM file holding the CA's certificate (-----BEGIN CERTIFICATE-----), e.g. the CA's ca.pem or /etc/ssl/certs/ca-certificates.crt".to_string(),
        })
    }
}

/// A reusable HTTP client for probes.
#[derive(Debug, Clone)]
pub struct Probe {
    agent: ureq::Agent,
    trust: Trust,
}

impl Probe {
    /// Each request, connect to last byte, is bounded by `request_timeout`;
    /// https servers are checked against the built-in roots.
    pub fn new(request_timeout: Duration) -> Probe {
        Probe::with_trust(request_timeout, &Trust::BuiltIn)
    }

    /// [`Probe::new`], trusting https servers as `trust` says.
    pub fn with_trust(request_timeout: Duration, trust: &Trust) -> Probe {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(request_timeout))
            .max_redirects(0)
            .user_agent("bg-deploy-probe")
            .tls_config(trust.tls_config())
            .build();
        Probe {
            agent: ureq::Agent::new_with_config(config),
            trust: trust.clone(),
        }
    }

    pub fn get(&self, url: &str) -> Answer {
        self.answer(
            self.agent.get(url).header("Connection", "close").call(),
            None,
        )
        .0
    }

    /// [`Probe::get`], and the value of the response header `name`, when
    /// the answer has it.
    pub fn get_with_header(&self, url: &str, name: &str) -> (Answer, Option<String>) {
        self.answer(
            self.agent.get(url).header("Connection", "close").call(),
            Some(name),
        )
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
        self.answer(request.call(), None).0
    }

    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        header: Option<&str>,
    ) -> (Answer, Option<String>) {
        let answer = match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let value = header
                    .and_then(|name| response.headers().get(name))
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string);
                let mut bytes = Vec::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(BODY_LIMIT)
                    .read_to_end(&mut bytes);
                let answer = Answer::Status {
                    status,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                };
                return (answer, value);
            }
            Err(error) => Answer::NoAnswer {
                reason: match rustls_error(&error) {
                    Some(tls) => tls_reason(tls, &self.trust),
                    None => describe(&error),
                },
            },
        };
        (answer, None)
    }
}

/// The port of the server that answered, from nginx's `$upstream_addr` as a
/// site adds it to its answers (`add_header X-Upstream $upstream_addr
/// always;`): the last address of the list nginx tried ("127.0.0.1:8001,
/// 127.0.0.1:8000"; " : " separates internal redirects). `None` for a unix
/// socket or anything else without a port.
pub fn upstream_port(value: &str) -> Option<u16> {
    let last = value
        .rsplit([',', ' '])
        .find(|part| !part.trim().is_empty() && part.trim() != ":")?;
    let (_, port) = last.trim().rsplit_once(':')?;
    port.parse().ok()
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

/// The rustls error behind a failed request, if TLS is what failed: ureq
/// passes the handshake's errors up inside an io::Error.
fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Why the handshake failed, in a probe's words, with what to pass to get
/// past it; every reason starts with [`CERTIFICATE`] or [`HANDSHAKE`].
fn tls_reason(error: &rustls::Error, trust: &Trust) -> String {
    use rustls::CertificateError as Cert;
    let Some(cert) = (match error {
        rustls::Error::InvalidCertificate(cert) => Some(cert),
        _ => None,
    }) else {
        let hint = match error {
            rustls::Error::InvalidMessage(_) => "; is it https at that port?",
            _ => "",
        };
        return format!("{HANDSHAKE}: {error}{hint}");
    };
    match cert {
        Cert::UnknownIssuer | Cert::BadSignature => format!(
            "certificate not trusted: its issuer is not among {}; pass --cacert FILE with the CA that signed it, or --insecure",
            trust.text()
        ),
        Cert::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate not valid for {}: it is for {}; use a URL with a name it holds, or --insecure",
            expected.to_str(),
            match presented.as_slice() {
                [] => "no name".to_string(),
                names => names.join(", "),
            }
        ),
        Cert::NotValidForName => {
            "certificate not valid for the URL's host; use a URL with a name it holds, or --insecure"
                .to_string()
        }
        Cert::ExpiredContext { not_after, .. } => format!(
            "certificate expired at {}; renew it on the server, or pass --insecure",
            unix_time(not_after.as_secs())
        ),
        Cert::Expired => "certificate expired; renew it on the server, or pass --insecure".to_string(),
        Cert::NotValidYetContext { not_before, .. } => format!(
            "certificate not valid before {}; check the clocks here and on the server, or pass --insecure",
            unix_time(not_before.as_secs())
        ),
        Cert::NotValidYet => {
            "certificate not valid yet; check the clocks here and on the server, or pass --insecure"
                .to_string()
        }
        other => format!("certificate rejected: {other}; pass --cacert FILE or --insecure"),
    }
}

fn unix_time(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

/// Checks that a URL is one a probe can ask: `http[s]://host[:port]/path`.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if uri.port_u16() == Some(0) {
        return Err(format!("{url:?}: port 0 is not a port"));
    }
    Ok(())
}

/// The host a URL names (an IPv6 address in brackets), if it parses.
pub fn url_host(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    uri.host().filter(|h| !h.is_empty()).map(str::to_string)
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
    fn the_upstream_port_is_the_last_one_nginx_tried() {
        assert_eq!(upstream_port("127.0.0.1:8001"), Some(8001));
        assert_eq!(upstream_port("127.0.0.1:8001, 127.0.0.1:8000"), Some(8000));
        assert_eq!(upstream_port("10.0.0.5:8001 : 10.0.0.6:8000"), Some(8000));
        assert_eq!(upstream_port("[::1]:8001"), Some(8001));
        assert_eq!(upstream_port("unix:/run/app.sock"), None);
        assert_eq!(upstream_port(""), None);
        assert_eq!(upstream_port("-"), None);
    }

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
        assert!(check_url("https://example.com/").is_ok());
        assert!(check_url("https://127.0.0.1:8443/actuator/health").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("127.0.0.1:8000").is_err());
        assert!(check_url("http:///x").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("http://127.0.0.1:0/").is_err());
    }

    #[test]
    fn the_host_of_a_url() {
        let host = |url| url_host(url);
        assert_eq!(
            host("http://10.0.0.5:8000/health").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            host("https://user@app1.internal/").as_deref(),
            Some("app1.internal")
        );
        assert!(host("http://[fd00::7]:8000/").unwrap().contains("fd00::7"));
        assert_eq!(host("not a url"), None);
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

    /// A self-signed CA certificate in PEM, and the same in DER.
    fn ca(name: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    fn load(dir: &Path, name: &str, bytes: &[u8]) -> Result<Trust, TlsError> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Trust::cacert(&path)
    }

    fn not_pem(result: Result<Trust, TlsError>) -> String {
        match result {
            Err(e @ TlsError::NotPem { .. }) => {
                assert_eq!(e.code(), Code::Usage);
                e.to_string()
            }
            other => panic!("not refused as NotPem: {other:?}"),
        }
    }

    #[test]
    fn a_pem_bundle_is_every_certificate_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let (one, _) = ca("one");
        let (two, _) = ca("two");
        // Text around the blocks (as in the system bundle) is fine.
        let bundle = format!("# our CAs\n{one}\nsome comment\n{two}");
        match load(dir.path(), "bundle.pem", bundle.as_bytes()).unwrap() {
            Trust::Cacert { path, certs } => {
                assert_eq!(certs.len(), 2);
                assert_eq!(path, dir.path().join("bundle.pem"));
            }
            other => panic!("{other:?}"),
        }
        // A key beside the certificate is skipped.
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let with_key = format!("{key}{one}");
        match load(dir.path(), "with-key.pem", with_key.as_bytes()).unwrap() {
            Trust::Cacert { certs, .. } => assert_eq!(certs.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_or_unreadable_cacert_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path().join("missing.pem"), dir.path().to_path_buf()] {
            match Trust::cacert(&path) {
                Err(e @ TlsError::Unreadable { .. }) => {
                    assert_eq!(e.code(), Code::Usage);
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                    assert!(e.hint().unwrap().contains("--cacert"));
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn what_is_not_a_pem_bundle_of_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, der) = ca("ca");
        for (name, bytes) in [
            ("empty.pem", &b""[..]),
            ("text.pem", &b"hello, this is not a certificate\n"[..]),
        ] {
            let why = not_pem(load(dir.path(), name, bytes));
            assert!(why.contains(name), "{why}");
            assert!(
                why.contains("no -----BEGIN CERTIFICATE----- block"),
                "{why}"
            );
        }
        let why = not_pem(load(dir.path(), "ca.der", &der));
        assert!(why.contains("looks like DER"), "{why}");
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let why = not_pem(load(dir.path(), "key.pem", key.as_bytes()));
        assert!(why.contains("private key and no certificate"), "{why}");
        // A block that is not base64, and one that is but holds no certificate.
        let broken = pem.replacen("MII", "M*I", 1);
        let why = not_pem(load(dir.path(), "broken.pem", broken.as_bytes()));
        assert!(why.contains("broken PEM"), "{why}");
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let bundle = format!("{pem}{junk}");
        let why = not_pem(load(dir.path(), "junk.pem", bundle.as_bytes()));
        assert!(why.contains("certificate 2 of 2 is not usable"), "{why}");
    }

    #[test]
    fn tls_failures_say_what_to_pass() {
        use rustls::CertificateError as Cert;
        let cacert = Trust::Cacert {
            path: PathBuf::from("/etc/bg/ca.pem"),
            certs: Arc::new(Vec::new()),
        };
        let unknown = rustls::Error::InvalidCertificate(Cert::UnknownIssuer);
        let reason = tls_reason(&unknown, &Trust::BuiltIn);
        assert!(reason.starts_with("certificate not trusted: "), "{reason}");
        assert!(reason.contains("Mozilla's roots built in"), "{reason}");
        assert!(reason.ends_with("pass --cacert FILE with the CA that signed it, or --insecure"));
        assert!(tls_reason(&unknown, &cacert).contains("the CAs in /etc/bg/ca.pem"));

        let name = rustls::Error::InvalidCertificate(Cert::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("10.0.0.9").unwrap(),
            presented: vec!["DnsName(\"localhost\")".to_string()],
        });
        let reason = tls_reason(&name, &Trust::BuiltIn);
        assert!(
            reason.starts_with("certificate not valid for 10.0.0.9: it is for "),
            "{reason}"
        );

        let expired = rustls::Error::InvalidCertificate(Cert::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                1_700_000_000,
            )),
        });
        assert_eq!(
            tls_reason(&expired, &Trust::BuiltIn),
            "certificate expired at 2023-11-14T22:13:20Z; renew it on the server, or pass --insecure"
        );

        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let reason = tls_reason(&plain, &Trust::BuiltIn);
        assert!(reason.starts_with("TLS handshake failed: "), "{reason}");
        assert!(reason.ends_with("is it https at that port?"), "{reason}");

        for reason in [tls_reason(&unknown, &cacert), reason] {
            assert!(Answer::NoAnswer { reason }.is_tls_failure());
        }
        for reason in ["connection refused", "no answer within the request timeout"] {
            assert!(
                !Answer::NoAnswer {
                    reason: reason.into()
                }
                .is_tls_failure()
            );
        }
    }
}
