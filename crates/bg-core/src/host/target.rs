//! `[USER@]HOST[:PORT]`, with IPv6 in brackets: `deploy@[::1]:2222`.

use std::fmt;

use crate::error::HostError;

/// Where to connect, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    /// The host name or address, without brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    pub fn parse(value: &str) -> Result<Target, HostError> {
        let bad = |why| HostError::BadTarget {
            value: value.to_string(),
            why,
        };
        if value.is_empty() {
            return Err(bad("it is empty"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace or control characters"));
        }
        let (user, rest) = match value.rsplit_once('@') {
            Some(("", _)) => return Err(bad("the user before @ is empty")),
            Some((user, rest)) => (Some(user.to_string()), rest),
            None => (None, value),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("a [ is not closed by ]"))?;
            match after {
                "" => (host, None),
                _ => {
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("only :PORT may follow ]"))?;
                    (host, Some(port))
                }
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address: its colons are not a port separator.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.starts_with('-') {
            return Err(bad("a host cannot start with '-'"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(port) => Some(port),
            },
        };
        Ok(Target {
            user,
            host: host.to_string(),
            port,
        })
    }
}

/// Writes the host the way known_hosts and ssh-keyscan name it: `host` on
/// port 22, `[host]:port` on any other.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: Option<&str>, host: &str, port: Option<u16>) -> Target {
        Target {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Target::parse("10.0.0.5").unwrap(),
            t(None, "10.0.0.5", None)
        );
        assert_eq!(
            Target::parse("ubuntu@10.0.0.5").unwrap(),
            t(Some("ubuntu"), "10.0.0.5", None)
        );
        assert_eq!(
            Target::parse("app.example.com:2222").unwrap(),
            t(None, "app.example.com", Some(2222))
        );
        assert_eq!(
            Target::parse("deploy@[::1]:2222").unwrap(),
            t(Some("deploy"), "::1", Some(2222))
        );
        assert_eq!(Target::parse("[::1]").unwrap(), t(None, "::1", None));
        assert_eq!(Target::parse("::1").unwrap(), t(None, "::1", None));
        assert_eq!(
            Target::parse("fe80::1:22").unwrap(),
            t(None, "fe80::1:22", None)
        );
        assert_eq!(
            Target::parse("a@b@host").unwrap(),
            t(Some("a@b"), "host", None)
        );
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "",
            "@host",
            "host:",
            "host:0",
            "host:70000",
            "host:ssh",
            "[::1",
            "[::1]x",
            "-oProxyCommand=x",
            "a b",
            "host\nx",
            "user@",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn displays_back_in_the_same_form() {
        for value in [
            "10.0.0.5",
            "ubuntu@10.0.0.5:22",
            "deploy@[::1]:2222",
            "[::1]",
        ] {
            assert_eq!(Target::parse(value).unwrap().to_string(), value);
        }
        assert_eq!(known_hosts_name("10.0.0.5", 22), "10.0.0.5");
        assert_eq!(known_hosts_name("::1", 2222), "[::1]:2222");
    }
}
