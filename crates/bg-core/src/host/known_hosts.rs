//! OpenSSH's known_hosts, read the way `ssh` reads it.
//!
//! libssh2 can check a key, but it cannot tell us which key types a host is
//! known by (so that we ask the server for one of those, as `ssh` does) and
//! its writer rewrites the whole file. So we read the file ourselves, plain
//! and hashed (`|1|salt|hash`) names, `[host]:port`, wildcards, negations and
//! `@revoked`, and we only ever append to it.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Digest;

use crate::error::HostError;

/// `--host-key-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostKeyCheck {
    /// An unknown or changed key is refused.
    Strict,
    /// An unknown key is added to the file; a changed one is refused.
    AcceptNew,
    /// No check at all (a warning says so).
    Off,
}

/// One key line that applies to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    pub key_type: String,
    pub key: Vec<u8>,
    pub revoked: bool,
    pub line: usize,
}

/// The keys a known_hosts file holds for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    pub path: PathBuf,
    pub keys: Vec<KnownKey>,
}

/// How the server's key compares with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// Keys of this type are known for the host, and this one is not among them.
    Changed {
        line: usize,
    },
    Revoked,
    Unknown,
}

impl KnownHosts {
    /// The entries of `path` for `name` (`host` or `[host]:port`). A missing
    /// file is an empty one.
    pub fn load(path: &Path, name: &str) -> Result<KnownHosts, HostError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(HostError::KnownHosts {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(KnownHosts {
            path: path.to_path_buf(),
            keys: parse(&text, name),
        })
    }

    /// Key types known for the host, in the server-preference order to send.
    pub fn key_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = Vec::new();
        for k in self.keys.iter().filter(|k| !k.revoked) {
            if !types.contains(&k.key_type.as_str()) {
                types.push(&k.key_type);
            }
        }
        types
    }

    pub fn verdict(&self, key_type: &str, key: &[u8]) -> Verdict {
        if self.keys.iter().any(|k| k.revoked && k.key == key) {
            return Verdict::Revoked;
        }
        let same_type: Vec<&KnownKey> = self
            .keys
            .iter()
            .filter(|k| !k.revoked && k.key_type == key_type)
            .collect();
        if same_type.iter().any(|k| k.key == key) {
            Verdict::Match
        } else if let Some(first) = same_type.first() {
            Verdict::Changed { line: first.line }
        } else {
            Verdict::Unknown
        }
    }
}

/// Appends one line for `name` to the file, creating it (and `~/.ssh`) when
/// missing. The rest of the file is never rewritten.
pub fn append(path: &Path, name: &str, key_type: &str, key: &[u8]) -> Result<(), HostError> {
    let error = |source| HostError::KnownHosts {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(error)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let needs_newline = match std::fs::read(path) {
        Ok(bytes) => bytes.last().is_some_and(|&b| b != b'\n'),
        Err(_) => false,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(error)?;
    let line = format!(
        "{}{name} {key_type} {}\n",
        if needs_newline { "\n" } else { "" },
        STANDARD.encode(key)
    );
    file.write_all(line.as_bytes()).map_err(error)
}

/// `SHA256:...` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(sha2::Sha256::digest(key))
    )
}

fn parse(text: &str, name: &str) -> Vec<KnownKey> {
    let mut keys = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => continue, // @cert-authority: certificates are not supported
            }
            first = fields.next().unwrap_or("");
        }
        let (Some(key_type), Some(encoded)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, name) {
            continue;
        }
        let Ok(key) = STANDARD.decode(encoded) else {
            continue;
        };
        keys.push(KnownKey {
            key_type: key_type.to_string(),
            key,
            revoked,
            line: index + 1,
        });
    }
    keys
}

/// A comma-separated pattern list matches when one pattern matches and no
/// negated one does.
fn patterns_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, case-insensitive as in OpenSSH.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAII9Dku1AO2ecwf6IH/3uaq98py/RRb1S7URG+qJEfd61";
    const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOm5XcBs+EGxf9gl3pGHQEIRv6dVBDJa+Kah/CfkVbvf";

    fn key(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).unwrap()
    }

    #[test]
    fn plain_and_bracketed_names() {
        let text = format!("10.0.0.5 ssh-ed25519 {ED}\n[10.0.0.5]:2222 ssh-ed25519 {ED2}\n");
        assert_eq!(parse(&text, "10.0.0.5").len(), 1);
        let on_2222 = parse(&text, "[10.0.0.5]:2222");
        assert_eq!(on_2222.len(), 1);
        assert_eq!(on_2222[0].key, key(ED2));
        assert_eq!(on_2222[0].line, 2);
        assert!(parse(&text, "10.0.0.6").is_empty());
    }

    #[test]
    fn hashed_names_match_only_their_host() {
        // Made by `ssh-keygen -H` for "[127.0.0.1]:2222".
        let salt = STANDARD.encode(b"0123456789abcdefghij");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"0123456789abcdefghij").unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = STANDARD.encode(mac.finalize().into_bytes());
        let text = format!("|1|{salt}|{hash} ssh-ed25519 {ED}\n");
        assert_eq!(parse(&text, "[127.0.0.1]:2222").len(), 1);
        assert!(parse(&text, "127.0.0.1").is_empty());
        assert!(parse(&text, "[127.0.0.1]:2223").is_empty());
    }

    #[test]
    fn wildcards_lists_and_negation() {
        let text = format!("*.prod.example.com,!db.prod.example.com,10.0.0.? ssh-ed25519 {ED}\n");
        assert_eq!(parse(&text, "app.prod.example.com").len(), 1);
        assert_eq!(parse(&text, "APP.prod.example.com").len(), 1);
        assert!(parse(&text, "db.prod.example.com").is_empty());
        assert_eq!(parse(&text, "10.0.0.7").len(), 1);
        assert!(parse(&text, "10.0.0.77").is_empty());
    }

    #[test]
    fn comments_markers_and_junk_are_skipped() {
        let text = format!(
            "# comment\n\n@cert-authority *.example.com ssh-ed25519 {ED}\nbroken-line\nhost ssh-ed25519 not-base64!\n@revoked host ssh-ed25519 {ED2}\nhost ssh-ed25519 {ED}\r\n"
        );
        let known = KnownHosts {
            path: PathBuf::from("k"),
            keys: parse(&text, "host"),
        };
        assert_eq!(known.keys.len(), 2);
        assert_eq!(known.verdict("ssh-ed25519", &key(ED)), Verdict::Match);
        assert_eq!(known.verdict("ssh-ed25519", &key(ED2)), Verdict::Revoked);
        assert_eq!(known.key_types(), vec!["ssh-ed25519"]);
    }

    #[test]
    fn verdicts() {
        let text = format!("h ssh-ed25519 {ED}\n");
        let known = KnownHosts {
            path: PathBuf::from("k"),
            keys: parse(&text, "h"),
        };
        assert_eq!(known.verdict("ssh-ed25519", &key(ED)), Verdict::Match);
        assert_eq!(
            known.verdict("ssh-ed25519", &key(ED2)),
            Verdict::Changed { line: 1 }
        );
        assert_eq!(known.verdict("ssh-rsa", &key(ED2)), Verdict::Unknown);
        let empty = KnownHosts {
            path: PathBuf::from("k"),
            keys: vec![],
        };
        assert_eq!(empty.verdict("ssh-ed25519", &key(ED)), Verdict::Unknown);
    }

    #[test]
    fn append_keeps_what_was_there_and_adds_a_missing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        append(&path, "[h]:2222", "ssh-ed25519", &key(ED)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("[h]:2222 ssh-ed25519 {ED}\n")
        );
        std::fs::write(&path, "other ssh-ed25519 AAAA").unwrap();
        append(&path, "h", "ssh-ed25519", &key(ED2)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("other ssh-ed25519 AAAA\nh ssh-ed25519 {ED2}\n")
        );
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // `ssh-keygen -lf` on a file holding ED prints this fingerprint.
        assert_eq!(
            fingerprint(&key(ED)),
            "SHA256:xPRF+S18l+1Av6U2yRyuieEwNPsL1W8NTpzYBiCVHfI"
        );
    }
}
