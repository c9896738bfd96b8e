//! OpenSSH's client configuration (`~/.ssh/config`), read for the built-in
//! SSH client.
//!
//! People reach their hosts through aliases, bastions and per-host keys that
//! live in ssh_config: a host that `ssh app` reaches must be reachable as
//! `--host app` too. We read the keywords that decide where to connect, as
//! whom, with which key and trust, and through what (ProxyJump, ProxyCommand),
//! with OpenSSH's rules: the first value obtained wins (IdentityFile adds up),
//! `Host` patterns with `*`, `?` and `!` are matched against the alias as
//! typed, `%` tokens and `~` are expanded, `Include` is followed. Unknown
//! keywords are ignored (OpenSSH has hundreds); `Match` blocks other than
//! `Match all` are skipped, never applied on a guess.
//!
//! Why not the `ssh2-config` crate: it expands no `%` tokens, does not
//! evaluate `Match`, keeps ProxyJump, ProxyCommand, UserKnownHostsFile and
//! StrictHostKeyChecking out of its typed parameters, and cannot name the
//! line of a problem, which our exit-2 contract needs. The subset we need is
//! small enough to own, with the tests below.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::known_hosts::HostKeyCheck;
use super::ssh::{Proxy, SshOptions};
use super::target::Target;
use crate::error::HostError;

/// How deep `Include` may nest, as in OpenSSH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// How many jump hosts a route may chain; more is almost surely a loop.
const MAX_HOPS: usize = 8;

/// A value and the line it came from, for token errors found later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub file: Arc<PathBuf>,
    pub line: usize,
}

/// ProxyJump or ProxyCommand: whichever comes first wins, as in OpenSSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// `ProxyJump none` or `ProxyCommand none`: connect directly.
    None,
    /// The hops, first to connect to first.
    Jump(Vec<Target>),
    Command(Sourced),
}

/// What the file says for one alias, `%` tokens not yet expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<Sourced>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<Sourced>,
    pub known_hosts: Option<Sourced>,
    pub host_key_check: Option<HostKeyCheck>,
    pub connect_timeout: Option<Duration>,
    pub proxy: Option<ProxySetting>,
}

/// A parsed ssh_config file, its Includes read in.
#[derive(Debug, Clone)]
pub struct SshConfig {
    lines: Vec<Line>,
}

#[derive(Debug, Clone)]
struct Line {
    file: Arc<PathBuf>,
    number: usize,
    item: Item,
}

#[derive(Debug, Clone)]
enum Item {
    Host(Vec<String>),
    /// `Match all`.
    MatchAll,
    /// Any other Match: its criteria, for the debug log.
    MatchOther(String),
    /// Each included file's lines; the active state is restored after each.
    Include(Vec<Vec<Line>>),
    Set(Setting),
}

#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    UserKnownHostsFile(String),
    StrictHostKeyChecking(HostKeyCheck),
    ConnectTimeout(Duration),
    /// `None`: `ProxyJump none`.
    ProxyJump(Option<Vec<Target>>),
    /// `None`: `ProxyCommand none`.
    ProxyCommand(Option<String>),
}

impl SshConfig {
    /// Reads `path`. Relative `Include` paths start in `home/.ssh`, as for
    /// OpenSSH's user configuration.
    pub fn load(path: &Path, home: Option<&Path>) -> Result<SshConfig, HostError> {
        let text = read(path)?;
        SshConfig::parse(&text, path, home)
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<SshConfig, HostError> {
        Ok(SshConfig {
            lines: parse_lines(text, path, home, 0)?,
        })
    }

    /// The settings that apply to `alias`, the host as the user typed it.
    pub fn lookup(&self, alias: &str) -> HostConfig {
        let mut found = HostConfig::default();
        let mut active = true;
        apply(&self.lines, alias, &mut active, &mut found);
        found
    }
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|source| HostError::SshConfigRead {
            path: path.to_path_buf(),
            source,
        })
}

fn parse_lines(
    text: &str,
    path: &Path,
    home: Option<&Path>,
    depth: usize,
) -> Result<Vec<Line>, HostError> {
    let file = Arc::new(path.to_path_buf());
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let bad = |problem: String| HostError::SshConfigLine {
            path: path.to_path_buf(),
            line: number,
            problem,
        };
        let (keyword, rest) = split_keyword(raw);
        if keyword.is_empty() || keyword.starts_with('#') {
            continue;
        }
        let keyword_lower = keyword.to_ascii_lowercase();
        // ProxyCommand takes the rest of the line as it is: it is shell text.
        if keyword_lower == "proxycommand" {
            let command = rest.trim_end();
            if command.is_empty() {
                return Err(bad("ProxyCommand needs a command, or none".into()));
            }
            let setting = Setting::ProxyCommand((command != "none").then(|| command.to_string()));
            lines.push(Line {
                file: Arc::clone(&file),
                number,
                item: Item::Set(setting),
            });
            continue;
        }
        let args = split_args(rest).map_err(|p| bad(p.to_string()))?;
        let one = |what: &str| -> Result<String, HostError> {
            match args.as_slice() {
                [value] => Ok(value.clone()),
                [] => Err(bad(format!("{keyword} needs {what}"))),
                [_, extra, ..] => Err(bad(format!(
                    "{keyword} takes one value; {extra:?} is one too many"
                ))),
            }
        };
        let item = match keyword_lower.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(bad("Host needs at least one pattern".into()));
                }
                Item::Host(args.clone())
            }
            "match" => match args.as_slice() {
                [all] if all.eq_ignore_ascii_case("all") => Item::MatchAll,
                [] => return Err(bad("Match needs criteria".into())),
                _ => Item::MatchOther(rest.trim().to_string()),
            },
            "include" => {
                if args.is_empty() {
                    return Err(bad("Include needs a file".into()));
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(bad(format!(
                        "Include is nested more than {MAX_INCLUDE_DEPTH} deep (a file including itself?)"
                    )));
                }
                let mut files = Vec::new();
                for arg in &args {
                    for included in include_paths(arg, home) {
                        if included.is_dir() {
                            continue;
                        }
                        let text = read(&included)?;
                        files.push(parse_lines(&text, &included, home, depth + 1)?);
                    }
                }
                Item::Include(files)
            }
            "hostname" => Item::Set(Setting::HostName(one("a host name")?)),
            "user" => Item::Set(Setting::User(one("a user name")?)),
            "port" => {
                let value = one("a port")?;
                match value.parse::<u16>() {
                    Ok(port) if port > 0 => Item::Set(Setting::Port(port)),
                    _ => {
                        return Err(bad(format!("Port {value:?} is not a port (1 to 65535)")));
                    }
                }
            }
            "identityfile" => Item::Set(Setting::IdentityFile(one("a key file")?)),
            "userknownhostsfile" => match args.first() {
                // OpenSSH reads several files; we read the first, the one it writes to.
                Some(first) => Item::Set(Setting::UserKnownHostsFile(first.clone())),
                None => return Err(bad("UserKnownHostsFile needs a file".into())),
            },
            "stricthostkeychecking" => {
                let value = one("yes, accept-new or no")?;
                let mode = match value.to_ascii_lowercase().as_str() {
                    "yes" | "ask" | "true" => HostKeyCheck::Strict,
                    "accept-new" => HostKeyCheck::AcceptNew,
                    "no" | "off" | "false" => HostKeyCheck::Off,
                    _ => {
                        return Err(bad(format!(
                            "StrictHostKeyChecking {value:?} is not one of yes, ask, accept-new, no, off"
                        )));
                    }
                };
                Item::Set(Setting::StrictHostKeyChecking(mode))
            }
            "connecttimeout" => {
                let value = one("a time in seconds")?;
                match crate::cli::parse_duration(&value) {
                    Ok(timeout) => Item::Set(Setting::ConnectTimeout(timeout)),
                    Err(_) => {
                        return Err(bad(format!(
                            "ConnectTimeout {value:?} is not a time (write it like 10 or 10s)"
                        )));
                    }
                }
            }
            "proxyjump" => {
                let value = one("[user@]host[:port] hops, or none")?;
                if value == "none" {
                    Item::Set(Setting::ProxyJump(None))
                } else {
                    let mut hops = Vec::new();
                    for hop in value.split(',') {
                        let spec = hop.strip_prefix("ssh://").unwrap_or(hop);
                        let target = Target::parse(spec)
                            .map_err(|e| bad(format!("ProxyJump hop {hop:?}: {e}")))?;
                        hops.push(target);
                    }
                    Item::Set(Setting::ProxyJump(Some(hops)))
                }
            }
            _ => continue,
        };
        lines.push(Line {
            file: Arc::clone(&file),
            number,
            item,
        });
    }
    Ok(lines)
}

/// `Keyword value`, `Keyword=value` or `Keyword = value`; the keyword is
/// empty for a blank line.
fn split_keyword(raw: &str) -> (&str, &str) {
    let line = raw.trim();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

/// Splits arguments as OpenSSH does: whitespace between them, `"` or `'`
/// around one with spaces, `\` before a quote, a backslash or (unquoted) a
/// space, and `#` at the start of an argument begins a comment.
fn split_args(text: &str) -> Result<Vec<String>, &'static str> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => match chars.peek().copied() {
                    Some(next @ ('\\' | '"' | '\'')) => {
                        arg.push(next);
                        chars.next();
                    }
                    Some(' ') if quote.is_none() => {
                        arg.push(' ');
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                (_, c) => arg.push(c),
            }
        }
        if quote.is_some() {
            return Err("a quote is not closed");
        }
        args.push(arg);
    }
}

/// The files an `Include` argument names: `~` expanded, relative to
/// `~/.ssh`, wildcards matched in sorted order (as glob(3) returns them).
fn include_paths(arg: &str, home: Option<&Path>) -> Vec<PathBuf> {
    let expanded = expand_tilde(arg, home);
    let path = if expanded.is_absolute() {
        expanded
    } else {
        match home {
            Some(home) => home.join(".ssh").join(expanded),
            None => expanded,
        }
    };
    // Walk the path one component at a time; a component with a wildcard
    // fans out into the matching entries of each directory found so far.
    let mut found = vec![PathBuf::new()];
    for component in path.components() {
        let std::path::Component::Normal(name) = component else {
            found.iter_mut().for_each(|p| p.push(component));
            continue;
        };
        let name = name.to_string_lossy();
        if !name.contains(['*', '?']) {
            found.iter_mut().for_each(|p| p.push(name.as_ref()));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let listed = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let Ok(entries) = std::fs::read_dir(listed) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // As glob(3): a wildcard does not match a leading dot.
                .filter(|n| !n.starts_with('.') || name.starts_with('.'))
                .filter(|n| wildcard(&name, n, false))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.into_iter().filter(|p| p.exists()).collect()
}

fn apply(lines: &[Line], alias: &str, active: &mut bool, found: &mut HostConfig) {
    for line in lines {
        match &line.item {
            Item::Host(patterns) => *active = host_matches(patterns, alias),
            Item::MatchAll => *active = true,
            Item::MatchOther(criteria) => {
                crate::log::debug(&format!(
                    "{}:{}: `Match {criteria}` is not evaluated; its settings are skipped",
                    line.file.display(),
                    line.number
                ));
                *active = false;
            }
            Item::Include(files) => {
                if *active {
                    for lines in files {
                        let before = *active;
                        apply(lines, alias, active, found);
                        *active = before;
                    }
                }
            }
            Item::Set(setting) if *active => take(found, setting, line),
            Item::Set(_) => {}
        }
    }
}

/// Keeps the first value of each keyword; IdentityFile adds up.
fn take(found: &mut HostConfig, setting: &Setting, line: &Line) {
    let sourced = |value: &str| Sourced {
        value: value.to_string(),
        file: Arc::clone(&line.file),
        line: line.number,
    };
    match setting {
        Setting::HostName(v) => {
            found.hostname.get_or_insert_with(|| sourced(v));
        }
        Setting::User(v) => {
            found.user.get_or_insert_with(|| v.clone());
        }
        Setting::Port(v) => {
            found.port.get_or_insert(*v);
        }
        Setting::IdentityFile(v) => found.identity_files.push(sourced(v)),
        Setting::UserKnownHostsFile(v) => {
            found.known_hosts.get_or_insert_with(|| sourced(v));
        }
        Setting::StrictHostKeyChecking(v) => {
            found.host_key_check.get_or_insert(*v);
        }
        Setting::ConnectTimeout(v) => {
            found.connect_timeout.get_or_insert(*v);
        }
        Setting::ProxyJump(hops) => {
            found.proxy.get_or_insert_with(|| match hops {
                None => ProxySetting::None,
                Some(hops) => ProxySetting::Jump(hops.clone()),
            });
        }
        Setting::ProxyCommand(command) => {
            found.proxy.get_or_insert_with(|| match command {
                None => ProxySetting::None,
                Some(command) => ProxySetting::Command(sourced(command)),
            });
        }
    }
}

/// A Host line matches when one of its patterns does and no `!pattern` does.
fn host_matches(patterns: &[String], alias: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(negated, alias, true) => return false,
            Some(_) => {}
            None => matched |= wildcard(pattern, alias, true),
        }
    }
    matched
}

/// `*` and `?` wildcards; host names compare without case, file names with.
fn wildcard(pattern: &str, name: &str, fold_case: bool) -> bool {
    fn go(p: &[u8], n: &[u8], fold: bool) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n, fold) || (!n.is_empty() && go(p, &n[1..], fold)),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..], fold),
            (Some(a), Some(b)) if a == b || (fold && a.eq_ignore_ascii_case(b)) => {
                go(&p[1..], &n[1..], fold)
            }
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes(), fold_case)
}

fn expand_tilde(value: &str, home: Option<&Path>) -> PathBuf {
    match (value, home) {
        ("~", Some(home)) => home.to_path_buf(),
        (v, Some(home)) if v.starts_with("~/") => home.join(&v[2..]),
        (v, _) => PathBuf::from(v),
    }
}

/// Replaces `%x` tokens with their values; `%%` is a percent sign. A token
/// this keyword does not know is an error on the value's line, as in OpenSSH.
fn expand_tokens(value: &Sourced, tokens: &[(char, &str)]) -> Result<String, HostError> {
    let mut out = String::new();
    let mut chars = value.value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let token = chars.next();
        let known = token.and_then(|t| tokens.iter().find(|(k, _)| *k == t));
        match (token, known) {
            (Some('%'), _) => out.push('%'),
            (_, Some((_, v))) => out.push_str(v),
            (other, None) => {
                let known: Vec<String> = tokens.iter().map(|(k, _)| format!("%{k}")).collect();
                return Err(HostError::SshConfigLine {
                    path: value.file.to_path_buf(),
                    line: value.line,
                    problem: format!(
                        "{} in {:?} is not a token we know here (known: %%, {})",
                        other.map_or("a lone %".to_string(), |t| format!("%{t}")),
                        value.value,
                        known.join(", ")
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// What the command line and the environment say; `None` where nothing was given.
#[derive(Debug, Clone)]
pub struct Given {
    pub target: Target,
    /// `--ssh-user`: for the host, not for its jump hosts (as `ssh -l`).
    pub user: Option<String>,
    /// `--ssh-port`: for the host, not for its jump hosts (as `ssh -p`).
    pub port: Option<u16>,
    /// The flags below are about keys and trust; they apply to every hop.
    pub identity: Option<PathBuf>,
    pub passphrase: Option<String>,
    pub known_hosts: Option<PathBuf>,
    pub host_key_check: Option<HostKeyCheck>,
    pub connect_timeout: Option<Duration>,
    pub sudo: bool,
    pub agent_socket: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// Our own login name: `%u`, and the remote user when nothing names one.
    pub local_user: String,
}

/// The options for `given.target`: the parts of `--host` first, then flags
/// and `BG_*` variables, then the file, then the contract's defaults.
pub fn resolve(config: Option<&SshConfig>, given: &Given) -> Result<SshOptions, HostError> {
    resolve_host(config, &given.target, given, true, true, 0)
}

fn resolve_host(
    config: Option<&SshConfig>,
    target: &Target,
    given: &Given,
    is_target: bool,
    with_proxy: bool,
    depth: usize,
) -> Result<SshOptions, HostError> {
    let alias = target.host.as_str();
    let found = config.map(|c| c.lookup(alias)).unwrap_or_default();
    let hostname = match &found.hostname {
        Some(h) => expand_tokens(h, &[('h', alias)])?,
        None => alias.to_string(),
    };
    let mut options = SshOptions::new(Target {
        user: target.user.clone(),
        host: hostname.clone(),
        port: target.port,
    });
    if !hostname.eq_ignore_ascii_case(alias) {
        options.alias = Some(alias.to_string());
    }
    let user = target
        .user
        .clone()
        .or_else(|| given.user.clone().filter(|_| is_target))
        .or_else(|| found.user.clone())
        .unwrap_or_else(|| given.local_user.clone());
    options.user = Some(user.clone());
    options.port = given
        .port
        .filter(|_| is_target)
        .or(found.port)
        .unwrap_or(22);
    let port = options.target.port.unwrap_or(options.port).to_string();
    let home = given
        .home
        .as_ref()
        .map(|h| h.display().to_string())
        .unwrap_or_default();
    let path_tokens = [
        ('d', home.as_str()),
        ('h', hostname.as_str()),
        ('n', alias),
        ('p', port.as_str()),
        ('r', user.as_str()),
        ('u', given.local_user.as_str()),
    ];
    let home_dir = given.home.as_deref();
    for file in &found.identity_files {
        let expanded = expand_tokens(file, &path_tokens)?;
        options
            .identity_files
            .push(expand_tilde(&expanded, home_dir));
    }
    options.identity = given.identity.clone();
    options.passphrase = given.passphrase.clone();
    options.known_hosts = match (&given.known_hosts, &found.known_hosts) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(file)) if file.value == "none" => Some(PathBuf::from("/dev/null")),
        (None, Some(file)) => Some(expand_tilde(&expand_tokens(file, &path_tokens)?, home_dir)),
        (None, None) => None,
    };
    options.host_key_check = given
        .host_key_check
        .or(found.host_key_check)
        .unwrap_or(HostKeyCheck::Strict);
    options.connect_timeout = given
        .connect_timeout
        .or(found.connect_timeout)
        .unwrap_or(Duration::from_secs(10));
    options.sudo = given.sudo && is_target;
    options.agent_socket = given.agent_socket.clone();
    options.home = given.home.clone();
    if !with_proxy {
        return Ok(options);
    }
    options.proxy = match found.proxy {
        None | Some(ProxySetting::None) => Proxy::Direct,
        Some(ProxySetting::Command(command)) => {
            let tokens = [
                ('h', hostname.as_str()),
                ('n', alias),
                ('p', port.as_str()),
                ('r', user.as_str()),
            ];
            Proxy::Command(expand_tokens(&command, &tokens)?)
        }
        Some(ProxySetting::Jump(hops)) => {
            if depth + hops.len() > MAX_HOPS {
                return Err(HostError::JumpLoop {
                    host: alias.to_string(),
                    max: MAX_HOPS,
                });
            }
            // As `ssh -J a,b`: b is reached through a; only the first hop
            // follows its own ProxyJump or ProxyCommand from the file.
            let mut previous: Option<SshOptions> = None;
            for hop in &hops {
                let first = previous.is_none();
                let mut hop_options =
                    resolve_host(config, hop, given, false, first, depth + hops.len())?;
                if let Some(previous) = previous.take() {
                    hop_options.proxy = Proxy::Jump(Box::new(previous));
                }
                previous = Some(hop_options);
            }
            match previous {
                Some(last) => Proxy::Jump(Box::new(last)),
                None => Proxy::Direct,
            }
        }
    };
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("/cfg"), Some(Path::new("/home/me"))).unwrap()
    }

    fn bad_line(text: &str) -> (usize, String) {
        match SshConfig::parse(text, Path::new("/cfg"), None).unwrap_err() {
            HostError::SshConfigLine { line, problem, .. } => (line, problem),
            other => panic!("not a line error: {other}"),
        }
    }

    fn given(host: &str) -> Given {
        Given {
            target: Target::parse(host).unwrap(),
            user: None,
            port: None,
            identity: None,
            passphrase: None,
            known_hosts: None,
            host_key_check: None,
            connect_timeout: None,
            sudo: false,
            agent_socket: None,
            home: Some(PathBuf::from("/home/me")),
            local_user: "me".into(),
        }
    }

    fn values(found: &[Sourced]) -> Vec<&str> {
        found.iter().map(|s| s.value.as_str()).collect()
    }

    #[test]
    fn the_first_value_obtained_wins_and_identity_files_add_up() {
        let c = config(
            "# a comment\n\
             Host app\n  HostName 10.0.0.5\n  Port 2222\n  IdentityFile ~/.ssh/app\n\n\
             Host *\n  Port 22\n  User deploy\n  HostName nope\n  IdentityFile ~/.ssh/id_all\n",
        );
        let app = c.lookup("app");
        assert_eq!(app.hostname.unwrap().value, "10.0.0.5");
        assert_eq!(app.port, Some(2222));
        assert_eq!(app.user.as_deref(), Some("deploy"));
        assert_eq!(values(&app.identity_files), ["~/.ssh/app", "~/.ssh/id_all"]);
        let other = c.lookup("other");
        assert_eq!(other.port, Some(22));
        assert_eq!(values(&other.identity_files), ["~/.ssh/id_all"]);
    }

    #[test]
    fn settings_before_any_host_line_apply_to_every_host() {
        let c = config("User early\nHost app\n  User late\n");
        assert_eq!(c.lookup("app").user.as_deref(), Some("early"));
    }

    #[test]
    fn patterns_wildcards_negation_and_several_per_line() {
        let c = config(
            "Host *.prod !db.prod web? 10.0.0.*\n  User ops\n\
             Host Mixed\n  User case\n",
        );
        for yes in ["app.prod", "web1", "10.0.0.9", "APP.PROD"] {
            assert_eq!(c.lookup(yes).user.as_deref(), Some("ops"), "{yes}");
        }
        for no in ["db.prod", "web12", "10.0.1.9", "prod"] {
            assert_eq!(c.lookup(no).user, None, "{no}");
        }
        assert_eq!(c.lookup("mixed").user.as_deref(), Some("case"));
    }

    #[test]
    fn equals_signs_quotes_comments_and_case_of_keywords() {
        let c = config(
            "HOST=app\n\tHostName = \"10.0.0.5\"\n IdentityFile \"/keys/with space\" # trailing\n\
             USER=\"a b\"\nPort=2200\r\n",
        );
        let app = c.lookup("app");
        assert_eq!(app.hostname.unwrap().value, "10.0.0.5");
        assert_eq!(values(&app.identity_files), ["/keys/with space"]);
        assert_eq!(app.user.as_deref(), Some("a b"));
        assert_eq!(app.port, Some(2200));
        assert_eq!(
            split_args(r#"a\ b 'c "d"' "e\"f" g\\h # rest"#).unwrap(),
            ["a b", "c \"d\"", "e\"f", "g\\h"]
        );
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let c = config("Host app\n  ForwardAgent yes\n  SendEnv LANG LC_*\n  Port 2\n");
        assert_eq!(c.lookup("app").port, Some(2));
    }

    #[test]
    fn a_match_block_is_skipped_and_match_all_applies() {
        let c = config(
            "Match host app exec \"true\"\n  User wrong\n  Port 1\n\
             Host app\n  User right\n\
             Match all\n  Port 2\n",
        );
        let app = c.lookup("app");
        assert_eq!(app.user.as_deref(), Some("right"));
        assert_eq!(app.port, Some(2));
    }

    #[test]
    fn host_key_checking_words() {
        for (word, mode) in [
            ("yes", HostKeyCheck::Strict),
            ("ask", HostKeyCheck::Strict),
            ("accept-new", HostKeyCheck::AcceptNew),
            ("no", HostKeyCheck::Off),
            ("off", HostKeyCheck::Off),
        ] {
            let c = config(&format!("StrictHostKeyChecking {word}\n"));
            assert_eq!(c.lookup("x").host_key_check, Some(mode), "{word}");
        }
    }

    #[test]
    fn connect_timeout_is_seconds() {
        assert_eq!(
            config("ConnectTimeout 5\n").lookup("x").connect_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            config("ConnectTimeout 2m\n").lookup("x").connect_timeout,
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn proxy_jump_and_proxy_command_first_one_wins() {
        let c = config(
            "Host app\n  ProxyJump deploy@bastion:2222,ssh://hop2\n  ProxyCommand nc %h %p\n\
             Host cmd\n  ProxyCommand=ssh -W %h:%p bastion # not a comment\n  ProxyJump x\n\
             Host direct\n  ProxyJump none\nHost *\n  ProxyJump fallback\n",
        );
        assert_eq!(
            c.lookup("app").proxy,
            Some(ProxySetting::Jump(vec![
                Target::parse("deploy@bastion:2222").unwrap(),
                Target::parse("hop2").unwrap()
            ]))
        );
        match c.lookup("cmd").proxy {
            Some(ProxySetting::Command(command)) => {
                assert_eq!(command.value, "ssh -W %h:%p bastion # not a comment");
                assert_eq!(command.line, 5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.lookup("direct").proxy, Some(ProxySetting::None));
        assert_eq!(
            c.lookup("else").proxy,
            Some(ProxySetting::Jump(vec![Target::parse("fallback").unwrap()]))
        );
    }

    #[test]
    fn unreadable_lines_name_their_line() {
        assert_eq!(bad_line("Host a\n  Port abc\n").0, 2);
        assert!(bad_line("Port 0\n").1.contains("not a port"));
        assert!(bad_line("Port 22 23\n").1.contains("one too many"));
        assert_eq!(bad_line("\n\nHostName \"open\n").0, 3);
        assert!(bad_line("HostName \"open\n").1.contains("quote"));
        assert!(bad_line("Host\n").1.contains("pattern"));
        assert!(
            bad_line("StrictHostKeyChecking maybe\n")
                .1
                .contains("accept-new")
        );
        assert!(bad_line("ConnectTimeout soon\n").1.contains("10s"));
        assert!(
            bad_line("ProxyJump -oProxyCommand=x\n")
                .1
                .contains("ProxyJump hop")
        );
        assert!(bad_line("ProxyCommand\n").1.contains("needs a command"));
        // A bad value is an error even where no Host matches, as in OpenSSH.
        assert_eq!(bad_line("Host nowhere\n  Port x\n").0, 2);
    }

    #[test]
    fn includes_follow_tilde_relative_paths_and_globs() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d/b.conf"), "Host app\n  Port 2\n").unwrap();
        std::fs::write(ssh.join("conf.d/a.conf"), "Host app\n  User from-a\n").unwrap();
        std::fs::write(ssh.join("conf.d/.hidden"), "Host app\n  User hidden\n").unwrap();
        std::fs::write(ssh.join("extra"), "HostName 10.0.0.7\n").unwrap();
        let main = ssh.join("config");
        std::fs::write(
            &main,
            "Include conf.d/*.conf\nHost app\n  Include ~/.ssh/extra\n  Port 3\nHost other\n  Include extra\n",
        )
        .unwrap();
        let c = SshConfig::load(&main, Some(home.path())).unwrap();
        let app = c.lookup("app");
        assert_eq!(app.user.as_deref(), Some("from-a"));
        assert_eq!(app.port, Some(2));
        // The Host line in the included file does not leak out of it.
        assert_eq!(app.hostname.unwrap().value, "10.0.0.7");
        assert_eq!(c.lookup("third").hostname, None);

        std::fs::write(ssh.join("conf.d/b.conf"), "Host app\n  Port x\n").unwrap();
        match SshConfig::load(&main, Some(home.path())).unwrap_err() {
            HostError::SshConfigLine { path, line, .. } => {
                assert_eq!(path, ssh.join("conf.d/b.conf"));
                assert_eq!(line, 2);
            }
            other => panic!("{other}"),
        }
        std::fs::write(ssh.join("loop"), "Include loop\n").unwrap();
        std::fs::write(&main, "Include loop\n").unwrap();
        let err = SshConfig::load(&main, Some(home.path())).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn resolve_puts_host_parts_first_then_flags_then_the_file() {
        let c = config(
            "Host app\n  HostName %h.example.com\n  User fileuser\n  Port 2222\n\
             \x20 IdentityFile ~/.ssh/%r@%h-%p\n  IdentityFile %d/k-%u-%n\n\
             \x20 UserKnownHostsFile ~/.ssh/kh-%h other\n  StrictHostKeyChecking accept-new\n\
             \x20 ConnectTimeout 3\n",
        );
        let from_file = resolve(Some(&c), &given("app")).unwrap();
        assert_eq!(from_file.target.host, "app.example.com");
        assert_eq!(from_file.alias.as_deref(), Some("app"));
        assert_eq!(from_file.user.as_deref(), Some("fileuser"));
        assert_eq!(from_file.port, 2222);
        assert_eq!(
            from_file.identity_files,
            [
                PathBuf::from("/home/me/.ssh/fileuser@app.example.com-2222"),
                PathBuf::from("/home/me/k-me-app")
            ]
        );
        assert_eq!(
            from_file.known_hosts,
            Some(PathBuf::from("/home/me/.ssh/kh-app.example.com"))
        );
        assert_eq!(from_file.host_key_check, HostKeyCheck::AcceptNew);
        assert_eq!(from_file.connect_timeout, Duration::from_secs(3));

        let mut flags = given("app");
        flags.user = Some("flaguser".into());
        flags.port = Some(2200);
        flags.known_hosts = Some("/kh".into());
        flags.host_key_check = Some(HostKeyCheck::Strict);
        flags.connect_timeout = Some(Duration::from_secs(9));
        let flagged = resolve(Some(&c), &flags).unwrap();
        assert_eq!(flagged.user.as_deref(), Some("flaguser"));
        assert_eq!(flagged.port, 2200);
        assert_eq!(flagged.known_hosts, Some(PathBuf::from("/kh")));
        assert_eq!(flagged.host_key_check, HostKeyCheck::Strict);
        assert_eq!(flagged.connect_timeout, Duration::from_secs(9));

        let mut typed = flags.clone();
        typed.target = Target::parse("root@app:2").unwrap();
        let typed = resolve(Some(&c), &typed).unwrap();
        assert_eq!(typed.target.user.as_deref(), Some("root"));
        assert_eq!(typed.target.port, Some(2));
        assert_eq!(
            typed.identity_files[0],
            PathBuf::from("/home/me/.ssh/root@app.example.com-2")
        );

        let none = resolve(None, &given("app")).unwrap();
        assert_eq!(none.target.host, "app");
        assert_eq!(none.alias, None);
        assert_eq!(none.user.as_deref(), Some("me"));
        assert_eq!(none.port, 22);
        assert!(none.identity_files.is_empty());
        assert_eq!(none.host_key_check, HostKeyCheck::Strict);
        assert_eq!(none.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn an_unknown_token_names_its_line() {
        let c = config("Host app\n  IdentityFile ~/.ssh/%Q\n");
        match resolve(Some(&c), &given("app")).unwrap_err() {
            HostError::SshConfigLine { line, problem, .. } => {
                assert_eq!(line, 2);
                assert!(problem.contains("%Q"), "{problem}");
            }
            other => panic!("{other}"),
        }
        let c = config("Host app\n  HostName %p.example\n");
        assert!(resolve(Some(&c), &given("app")).is_err());
    }

    #[test]
    fn jump_hops_are_resolved_through_the_file_and_chain_in_order() {
        let c = config(
            "Host app\n  HostName 10.0.0.5\n  ProxyJump hop1,ops@hop2:2022\n\
             Host hop1\n  HostName 192.0.2.1\n  User jumper\n  Port 2201\n  ProxyCommand nc gw %p\n\
             Host hop2\n  HostName 192.0.2.2\n  ProxyJump ignored\n  IdentityFile ~/.ssh/hop2\n",
        );
        let mut flags = given("app");
        flags.user = Some("deploy".into());
        flags.port = Some(2200);
        flags.host_key_check = Some(HostKeyCheck::AcceptNew);
        let app = resolve(Some(&c), &flags).unwrap();
        assert_eq!(app.user.as_deref(), Some("deploy"));
        let Proxy::Jump(hop2) = &app.proxy else {
            panic!("{:?}", app.proxy)
        };
        assert_eq!(hop2.target.host, "192.0.2.2");
        assert_eq!(hop2.alias.as_deref(), Some("hop2"));
        assert_eq!(hop2.target.user.as_deref(), Some("ops"));
        assert_eq!(hop2.target.port, Some(2022));
        // --ssh-port and --ssh-user are for the host; trust flags are for all.
        assert_eq!(hop2.port, 22);
        assert_eq!(hop2.host_key_check, HostKeyCheck::AcceptNew);
        assert_eq!(hop2.identity_files, [PathBuf::from("/home/me/.ssh/hop2")]);
        let Proxy::Jump(hop1) = &hop2.proxy else {
            panic!(
                "hop2 must go through hop1, not its own ProxyJump: {:?}",
                hop2.proxy
            )
        };
        assert_eq!(hop1.target.host, "192.0.2.1");
        assert_eq!(hop1.user.as_deref(), Some("jumper"));
        assert_eq!(hop1.port, 2201);
        assert!(
            matches!(&hop1.proxy, Proxy::Command(c) if c == "nc gw 2201"),
            "the first hop keeps its own proxy: {:?}",
            hop1.proxy
        );
    }

    #[test]
    fn a_jump_loop_is_refused() {
        let c = config("Host *.internal\n  ProxyJump bastion.internal\n");
        let err = resolve(Some(&c), &given("app.internal")).unwrap_err();
        assert!(matches!(err, HostError::JumpLoop { .. }), "{err}");
        let fixed = config("Host *.internal !bastion.internal\n  ProxyJump bastion.internal\n");
        let app = resolve(Some(&fixed), &given("app.internal")).unwrap();
        assert!(
            matches!(&app.proxy, Proxy::Jump(hop) if matches!(hop.proxy, Proxy::Direct)),
            "{:?}",
            app.proxy
        );
    }

    #[test]
    fn proxy_command_tokens() {
        let c =
            config("Host app\n  HostName 10.0.0.5\n  ProxyCommand ssh -W %h:%p %r@gw # %n %%\n");
        let app = resolve(Some(&c), &given("app:2200")).unwrap();
        assert!(
            matches!(&app.proxy, Proxy::Command(c) if c == "ssh -W 10.0.0.5:2200 me@gw # app %"),
            "{:?}",
            app.proxy
        );
    }
}
