//! Reads what an nginx site or upstream file really routes to.
//!
//! bg-detect-port and bg-switch decide where users' traffic goes from what
//! these files contain, never from their names (the seed's `dev_8001` holds
//! 8000 as its primary). So the reader is strict: it parses nginx's syntax
//! (quotes, comments, CRLF, nested blocks) into directives, and anything that
//! bears on routing and that it cannot pin to a port (a variable in
//! `proxy_pass`, a unix socket, an upstream defined elsewhere, an unknown
//! server parameter) is reported as a [`Problem`] instead of being guessed.

use std::collections::BTreeSet;
use std::fmt;

/// One directive: `name arg...;` or `name arg... { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    /// 1-based line of the directive's name.
    pub line: usize,
}

/// Something the reader could not understand, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl Problem {
    fn new(line: usize, what: impl Into<String>) -> Self {
        Problem {
            line,
            what: what.into(),
        }
    }
}

/// Parses a whole file into its top-level directives.
pub fn parse(text: &str) -> Result<Vec<Directive>, Problem> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    let directives = parse_block(&tokens, &mut pos, None)?;
    Ok(directives)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Semi,
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, Problem> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            '{' => {
                tokens.push((Tok::Open, line));
                chars.next();
            }
            '}' => {
                tokens.push((Tok::Close, line));
                chars.next();
            }
            ';' => {
                tokens.push((Tok::Semi, line));
                chars.next();
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(Problem::new(start, format!("unterminated {c}quote{c}")));
                        }
                        Some('\\') => match chars.next() {
                            Some(next) => {
                                if next == '\n' {
                                    line += 1;
                                }
                                if next != c && next != '\\' {
                                    word.push('\\');
                                }
                                word.push(next);
                            }
                            None => {
                                return Err(Problem::new(
                                    start,
                                    format!("unterminated {c}quote{c}"),
                                ));
                            }
                        },
                        Some(q) if q == c => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
                tokens.push((Tok::Word(word), start));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '\'') {
                        break;
                    }
                    if c == '\\' {
                        // As nginx: `\"`, `\'`, `\\` lose the backslash, `\.` keeps it.
                        chars.next();
                        if let Some(next) = chars.next() {
                            if !matches!(next, '"' | '\'' | '\\') {
                                word.push('\\');
                            }
                            if next == '\n' {
                                line += 1;
                            }
                            word.push(next);
                        }
                        continue;
                    }
                    // `${var}` keeps its braces inside a word.
                    if c == '$' {
                        word.push(c);
                        chars.next();
                        if chars.peek() == Some(&'{') {
                            for c in chars.by_ref() {
                                word.push(c);
                                if c == '}' {
                                    break;
                                }
                            }
                        }
                        continue;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push((Tok::Word(word), line));
            }
        }
    }
    Ok(tokens)
}

fn parse_block(
    tokens: &[(Tok, usize)],
    pos: &mut usize,
    opened_at: Option<usize>,
) -> Result<Vec<Directive>, Problem> {
    let mut directives = Vec::new();
    loop {
        let Some((tok, line)) = tokens.get(*pos) else {
            return match opened_at {
                None => Ok(directives),
                Some(at) => Err(Problem::new(at, "a block opened here is never closed")),
            };
        };
        let line = *line;
        *pos += 1;
        match tok {
            Tok::Close => {
                return match opened_at {
                    Some(_) => Ok(directives),
                    None => Err(Problem::new(line, "unexpected \"}\"")),
                };
            }
            Tok::Open => return Err(Problem::new(line, "a block without a directive name")),
            Tok::Semi => return Err(Problem::new(line, "unexpected \";\"")),
            Tok::Word(name) => {
                let mut args = Vec::new();
                loop {
                    match tokens.get(*pos) {
                        None => {
                            return Err(Problem::new(
                                line,
                                format!("directive \"{name}\" has no ending \";\""),
                            ));
                        }
                        Some((Tok::Word(arg), _)) => {
                            args.push(arg.clone());
                            *pos += 1;
                        }
                        Some((Tok::Semi, _)) => {
                            *pos += 1;
                            directives.push(Directive {
                                name: name.clone(),
                                args,
                                block: None,
                                line,
                            });
                            break;
                        }
                        Some((Tok::Open, _)) => {
                            *pos += 1;
                            let block = parse_block(tokens, pos, Some(line))?;
                            directives.push(Directive {
                                name: name.clone(),
                                args,
                                block: Some(block),
                                line,
                            });
                            break;
                        }
                        Some((Tok::Close, at)) => {
                            return Err(Problem::new(
                                *at,
                                format!("directive \"{name}\" has no ending \";\""),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// `HOST:PORT` as nginx dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// As written, IPv6 with its brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parses `10.0.0.5:8000`, `localhost:8000`, `[::1]:8000`. A missing port,
/// a unix socket or a variable is refused: we do not guess ports.
pub fn parse_address(text: &str) -> Result<Address, String> {
    if text.starts_with("unix:") {
        return Err(format!("{text} is a unix socket, not a port"));
    }
    if text.contains('$') {
        return Err(format!(
            "{text} uses a variable, known only at request time"
        ));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((host, port)) => (format!("[{host}]"), port),
            None => return Err(format!("{text} has no port")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host.to_string(), port),
            _ => return Err(format!("{text} has no port")),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("{text} has no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Address { host, port }),
        _ => Err(format!("{text} has no valid port")),
    }
}

/// One `server` line of an upstream block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    pub address: Address,
    pub weight: Option<u32>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<String>,
    pub backup: bool,
    pub down: bool,
    /// The parameters as written, in order (`weight=3`, `backup`...).
    pub params: Vec<String>,
    pub line: usize,
}

impl UpstreamServer {
    /// Takes traffic while it is up: neither `backup` nor `down`.
    pub fn is_primary(&self) -> bool {
        !self.backup && !self.down
    }
}

/// `upstream NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub line: usize,
}

impl Upstream {
    /// The ports of the servers that take traffic (not backup, not down).
    pub fn primary_ports(&self) -> BTreeSet<u16> {
        self.servers
            .iter()
            .filter(|s| s.is_primary())
            .map(|s| s.address.port)
            .collect()
    }

    pub fn backup_ports(&self) -> BTreeSet<u16> {
        self.servers
            .iter()
            .filter(|s| s.backup && !s.down)
            .map(|s| s.address.port)
            .collect()
    }
}

/// Parameters nginx accepts on an upstream `server` line. Those beyond
/// backup and down do not change which port is primary.
const KNOWN_PARAMS: &[&str] = &[
    "weight",
    "max_conns",
    "max_fails",
    "fail_timeout",
    "backup",
    "down",
    "resolve",
    "route",
    "service",
    "slow_start",
    "drain",
];

fn read_upstream(directive: &Directive, problems: &mut Vec<Problem>) -> Option<Upstream> {
    let line = directive.line;
    let [name] = directive.args.as_slice() else {
        problems.push(Problem::new(line, "upstream needs exactly one name"));
        return None;
    };
    let mut servers = Vec::new();
    for inner in directive.block.iter().flatten() {
        if inner.name != "server" {
            // keepalive, least_conn, hash...: they shape balancing, not which port is primary.
            continue;
        }
        let Some((address, params)) = inner.args.split_first() else {
            problems.push(Problem::new(inner.line, "server without an address"));
            continue;
        };
        let address = match parse_address(address) {
            Ok(address) => address,
            Err(why) => {
                problems.push(Problem::new(inner.line, format!("upstream {name}: {why}")));
                continue;
            }
        };
        let mut server = UpstreamServer {
            address,
            weight: None,
            max_fails: None,
            fail_timeout: None,
            backup: false,
            down: false,
            params: params.to_vec(),
            line: inner.line,
        };
        for param in params {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (param.as_str(), None),
            };
            let number = |v: Option<&str>| v.and_then(|v| v.parse::<u32>().ok());
            match (key, value) {
                ("backup", None) => server.backup = true,
                ("down", None) => server.down = true,
                ("weight", v) if number(v).is_some() => server.weight = number(v),
                ("max_fails", v) if number(v).is_some() => server.max_fails = number(v),
                ("fail_timeout", Some(v)) => server.fail_timeout = Some(v.to_string()),
                (key, _) if KNOWN_PARAMS.contains(&key) && !matches!(key, "backup" | "down") => {
                    if matches!(key, "weight" | "max_fails") {
                        problems.push(Problem::new(inner.line, format!("{param} is not a number")));
                    }
                }
                _ => problems.push(Problem::new(
                    inner.line,
                    format!("unknown server parameter \"{param}\""),
                )),
            }
        }
        servers.push(server);
    }
    Some(Upstream {
        name: name.clone(),
        servers,
        line,
    })
}

/// Where a `proxy_pass` sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassTarget {
    /// `proxy_pass http://NAME`, NAME being an upstream (or a host without port).
    Name(String),
    /// `proxy_pass http://HOST:PORT[/uri]`.
    Address(Address),
}

/// A `proxy_pass` and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPass {
    pub target: PassTarget,
    pub line: usize,
}

fn read_proxy_pass(directive: &Directive) -> Result<ProxyPass, Problem> {
    let line = directive.line;
    let [url] = directive.args.as_slice() else {
        return Err(Problem::new(line, "proxy_pass needs exactly one URL"));
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| Problem::new(line, format!("proxy_pass {url}: not an http(s) URL")))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('$') {
        return Err(Problem::new(
            line,
            format!("proxy_pass {url} uses a variable, known only at request time"),
        ));
    }
    if authority.is_empty() {
        return Err(Problem::new(line, format!("proxy_pass {url} has no host")));
    }
    if authority.starts_with("unix:") {
        return Err(Problem::new(
            line,
            format!("proxy_pass {url} goes to a unix socket, not a port"),
        ));
    }
    let has_port =
        authority.contains("]:") || (!authority.starts_with('[') && authority.contains(':'));
    let target = if has_port {
        PassTarget::Address(
            parse_address(authority)
                .map_err(|why| Problem::new(line, format!("proxy_pass {url}: {why}")))?,
        )
    } else {
        PassTarget::Name(authority.to_string())
    };
    Ok(ProxyPass { target, line })
}

/// What one file holds that bears on routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub upstreams: Vec<Upstream>,
    pub proxy_passes: Vec<ProxyPass>,
    /// Top-level directives other than `upstream` (a managed upstream file has none).
    pub other_top_level: Vec<Directive>,
    /// Everything that bears on routing and could not be understood.
    pub problems: Vec<Problem>,
}

/// The addresses that take traffic at `port`: upstream servers that are
/// neither `backup` nor `down`, and `proxy_pass` addresses, each once.
pub fn addresses_at(routing: &Routing, port: u16) -> Vec<Address> {
    let mut found: Vec<Address> = Vec::new();
    let servers = routing
        .upstreams
        .iter()
        .flat_map(|u| &u.servers)
        .filter(|s| !s.backup && !s.down)
        .map(|s| &s.address);
    let passes = routing.proxy_passes.iter().filter_map(|p| match &p.target {
        PassTarget::Address(address) => Some(address),
        PassTarget::Name(_) => None,
    });
    for address in servers.chain(passes) {
        if address.port == port && !found.contains(address) {
            found.push(address.clone());
        }
    }
    found
}

/// Where a file sends its traffic: primary and backup ports, and the
/// servers behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub primary: BTreeSet<u16>,
    pub backup: BTreeSet<u16>,
    /// Every server the traffic may go to, in the file's order, each once:
    /// the upstream's lines (`down` ones too, so a host taken out shows as
    /// such) and `proxy_pass` addresses (primary). Several app hosts behind
    /// one upstream are told apart by these.
    pub servers: Vec<RouteServer>,
}

/// What nginx does with one server of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Takes traffic.
    Primary,
    /// Takes traffic only when every primary is failing.
    Backup,
    /// Marked `down`: takes none.
    Down,
}

/// One server of a route: where nginx dials, and what for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteServer {
    pub address: Address,
    pub role: ServerRole,
}

impl Route {
    /// The one port all primary traffic goes to, if there is exactly one.
    pub fn single_port(&self) -> Option<u16> {
        match self.primary.len() {
            1 => self.primary.first().copied(),
            _ => None,
        }
    }

    /// The hosts of the servers, as written, each once, in the file's order.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = Vec::new();
        for server in &self.servers {
            if !hosts.contains(&server.address.host.as_str()) {
                hosts.push(&server.address.host);
            }
        }
        hosts
    }

    /// What `host` (as [`Route::hosts`] lists it) is at `port`: `None` when
    /// the route has no such server. A host listed twice at a port counts as
    /// primary if either line is.
    pub fn role(&self, host: &str, port: u16) -> Option<ServerRole> {
        let roles = self
            .servers
            .iter()
            .filter(|s| s.address.host == host && s.address.port == port)
            .map(|s| s.role);
        roles.min_by_key(|role| match role {
            ServerRole::Primary => 0,
            ServerRole::Backup => 1,
            ServerRole::Down => 2,
        })
    }

    fn add_server(&mut self, address: &Address, role: ServerRole) {
        if !self
            .servers
            .iter()
            .any(|s| s.address == *address && s.role == role)
        {
            self.servers.push(RouteServer {
                address: address.clone(),
                role,
            });
        }
    }

    fn add_upstream(&mut self, upstream: &Upstream) {
        self.primary.extend(upstream.primary_ports());
        self.backup.extend(upstream.backup_ports());
        for server in &upstream.servers {
            let role = if server.down {
                ServerRole::Down
            } else if server.backup {
                ServerRole::Backup
            } else {
                ServerRole::Primary
            };
            self.add_server(&server.address, role);
        }
    }
}

impl Address {
    /// The host without IPv6 brackets.
    pub fn bare_host(&self) -> &str {
        bare_host(&self.host)
    }

    /// Whether this is `host`: see [`same_host`].
    pub fn names_host(&self, host: &str) -> bool {
        same_host(&self.host, host)
    }

    /// Whether nginx dials its own machine: see [`is_loopback_host`].
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether two hosts (names or addresses, IPv6 with or without brackets:
/// an upstream server's and an SSH target's) are the same by their text,
/// case aside. Names are not resolved: `app1` and `10.0.0.5` are different
/// hosts here even where DNS says otherwise.
pub fn same_host(a: &str, b: &str) -> bool {
    bare_host(a).eq_ignore_ascii_case(bare_host(b))
}

/// Whether a server's host is the machine nginx runs on: `localhost`,
/// 127.0.0.0/8, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = bare_host(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |set: &BTreeSet<u16>| {
            set.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.primary.is_empty() {
            f.write_str("no port")?;
        } else {
            write!(f, "port {}", list(&self.primary))?;
        }
        if !self.backup.is_empty() {
            write!(f, " (backup {})", list(&self.backup))?;
        }
        Ok(())
    }
}

/// Reads a file: its upstreams, its proxy_passes, and what it could not understand.
pub fn read(text: &str) -> Result<Routing, Problem> {
    let directives = parse(text)?;
    let mut routing = Routing::default();
    for directive in &directives {
        if directive.name == "upstream" {
            if let Some(upstream) = read_upstream(directive, &mut routing.problems) {
                routing.upstreams.push(upstream);
            }
        } else {
            routing.other_top_level.push(directive.clone());
        }
    }
    walk(&directives, &mut routing, 0);
    let mut names = BTreeSet::new();
    for upstream in &routing.upstreams {
        if !names.insert(upstream.name.clone()) {
            routing.problems.push(Problem::new(
                upstream.line,
                format!("upstream {} is defined twice", upstream.name),
            ));
        }
    }
    Ok(routing)
}

/// Finds proxy_pass anywhere (server, location, if); upstreams inside `http {}` too.
fn walk(directives: &[Directive], routing: &mut Routing, depth: usize) {
    for directive in directives {
        match directive.name.as_str() {
            "proxy_pass" => match read_proxy_pass(directive) {
                Ok(pass) => routing.proxy_passes.push(pass),
                Err(problem) => routing.problems.push(problem),
            },
            "upstream" if depth > 0 => {
                if let Some(upstream) = read_upstream(directive, &mut routing.problems) {
                    routing.upstreams.push(upstream);
                }
            }
            _ => {}
        }
        if let Some(block) = &directive.block
            && directive.name != "upstream"
        {
            walk(block, routing, depth + 1);
        }
    }
}

impl Routing {
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// Where a site file sends traffic: through its proxy_passes, or, when it
    /// has none, its upstreams' servers. Refuses (with every problem it saw)
    /// instead of guessing.
    pub fn route(&self) -> Result<Route, Vec<Problem>> {
        let mut problems = self.problems.clone();
        let mut route = Route::default();
        if self.proxy_passes.is_empty() {
            for upstream in &self.upstreams {
                route.add_upstream(upstream);
            }
        }
        for pass in &self.proxy_passes {
            match &pass.target {
                PassTarget::Address(address) => {
                    route.primary.insert(address.port);
                    route.add_server(address, ServerRole::Primary);
                }
                PassTarget::Name(name) => match self.upstream(name) {
                    Some(upstream) => route.add_upstream(upstream),
                    None => problems.push(Problem::new(
                        pass.line,
                        format!(
                            "proxy_pass goes to {name}, which has no port and no upstream block in this file"
                        ),
                    )),
                },
            }
        }
        route.backup.retain(|p| !route.primary.contains(p));
        if problems.is_empty() {
            Ok(route)
        } else {
            Err(problems)
        }
    }

    /// The route of upstream `name` alone, for a managed upstream file.
    pub fn upstream_route(&self, name: &str) -> Result<Route, Vec<Problem>> {
        if !self.problems.is_empty() {
            return Err(self.problems.clone());
        }
        let upstream = self.upstream(name).ok_or_else(|| {
            vec![Problem::new(
                1,
                format!("no \"upstream {name}\" block in this file"),
            )]
        })?;
        let mut route = Route::default();
        route.add_upstream(upstream);
        route.backup.retain(|p| !route.primary.contains(p));
        Ok(route)
    }
}

/// Joins problems into one line for an error message.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "upstream backend {
    server 10.0.0.5:8000 fail_timeout=60s max_fails=5;
    server 10.0.0.5:8001 backup;
}
";

    fn route(text: &str) -> Route {
        read(text).unwrap().route().unwrap()
    }

    fn refused(text: &str) -> String {
        match read(text) {
            Err(problem) => problem.to_string(),
            Ok(routing) => describe(&routing.route().expect_err("should be refused")),
        }
    }

    fn ports(list: &[u16]) -> BTreeSet<u16> {
        list.iter().copied().collect()
    }

    #[test]
    fn the_seed_file_routes_to_8000_with_8001_as_backup() {
        let routing = read(SEED).unwrap();
        let upstream = routing.upstream("backend").unwrap();
        assert_eq!(upstream.servers.len(), 2);
        let primary = &upstream.servers[0];
        assert_eq!(primary.address.to_string(), "10.0.0.5:8000");
        assert_eq!(primary.fail_timeout.as_deref(), Some("60s"));
        assert_eq!(primary.max_fails, Some(5));
        assert!(primary.is_primary());
        assert!(upstream.servers[1].backup);
        let route = routing.route().unwrap();
        assert_eq!(route.single_port(), Some(8000));
        assert_eq!(route.backup, ports(&[8001]));
        assert_eq!(route.to_string(), "port 8000 (backup 8001)");
    }

    #[test]
    fn a_whole_site_file_with_crlf_comments_and_quotes() {
        let site = "# dev site, green is primary\r\n\
            upstream backend {\r\n\
            \x20   server 127.0.0.1:8001 weight=3 max_fails=5 fail_timeout=60s; # primary\r\n\
            \x20   server 127.0.0.1:8000 backup;\r\n\
            \x20   keepalive 16;\r\n\
            }\r\n\
            server {\r\n\
            \x20   listen 80;\r\n\
            \x20   server_name \"dev.example.com\" 'www.dev.example.com';\r\n\
            \x20   add_header X-Note \"a ; brace { inside quotes } # not a comment\";\r\n\
            \x20   location / {\r\n\
            \x20       proxy_set_header Host $host;\r\n\
            \x20       proxy_pass http://backend;\r\n\
            \x20   }\r\n\
            \x20   location /static/ { root /var/www; }\r\n\
            }\r\n";
        let routing = read(site).unwrap();
        assert_eq!(routing.upstreams[0].servers[0].weight, Some(3));
        assert_eq!(routing.proxy_passes.len(), 1);
        assert_eq!(routing.proxy_passes[0].line, 13);
        assert_eq!(routing.route().unwrap().single_port(), Some(8001));
        let directives = parse(site).unwrap();
        let server = &directives[1];
        let header = &server.block.as_ref().unwrap()[2];
        assert_eq!(
            header.args,
            vec!["X-Note", "a ; brace { inside quotes } # not a comment"]
        );
    }

    /// A typical production site: HTTP redirect, TLS, websockets, static files.
    const PRODUCTION: &str = r#"# Managed by hand. Certbot edited the 443 block.
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}

upstream api_backend {
    least_conn;
    server 10.0.0.5:8001 weight=5 max_fails=3 fail_timeout=30s;
    server 10.0.0.6:8001 weight=5 max_fails=3 fail_timeout=30s;
    server 10.0.0.5:8000 backup;
    server 10.0.0.6:8000 backup;
    keepalive 32;
}

server {
    listen 80;
    listen [::]:80;
    server_name api.example.com;
    return 301 https://$host$request_uri;
}

server {
    listen 443 ssl http2;
    server_name api.example.com;
    ssl_certificate /etc/letsencrypt/live/api.example.com/fullchain.pem; # managed by Certbot
    include /etc/letsencrypt/options-ssl-nginx.conf;

    location ~* \.(js|css|png)$ {
        root /var/www/static;
        expires 30d;
    }

    location "~ ^/v[0-9]{1,2}/" {
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        if ($request_method = OPTIONS) {
            return 204;
        }
        proxy_pass http://api_backend;
    }

    location / {
        proxy_pass http://api_backend/;
    }
}
"#;

    #[test]
    fn a_production_site_file() {
        let routing = read(PRODUCTION).unwrap();
        assert_eq!(routing.proxy_passes.len(), 2);
        let route = routing.route().unwrap();
        assert_eq!(route.primary, ports(&[8001]));
        assert_eq!(route.backup, ports(&[8000]));
        let directives = parse(PRODUCTION).unwrap();
        let tls = &directives[3];
        let block = tls.block.as_ref().unwrap();
        assert_eq!(block[4].args, vec!["~*", "\\.(js|css|png)$"]);
        assert_eq!(block[5].args, vec!["~ ^/v[0-9]{1,2}/"]);
    }

    #[test]
    fn a_plain_proxy_pass_routes_to_its_port() {
        let site = "server {\n listen 80;\n location / { proxy_pass http://127.0.0.1:8001/; }\n}\n";
        assert_eq!(route(site).single_port(), Some(8001));
        assert_eq!(
            route("server { location / { proxy_pass http://[::1]:8000; } }").single_port(),
            Some(8000)
        );
        assert_eq!(
            route("server { location /api/ { proxy_pass \"http://app.internal:8001/api/\"; } }")
                .single_port(),
            Some(8001)
        );
    }

    #[test]
    fn several_server_blocks_add_up() {
        let site = "upstream backend { server 10.0.0.5:8000; server 10.0.0.6:8000; server 10.0.0.5:8001 backup; server 10.0.0.6:8001 backup; }
server { listen 80; location / { proxy_pass http://backend; } }
server { listen 443 ssl; location / { proxy_pass http://backend; } }
";
        let route = route(site);
        assert_eq!(route.primary, ports(&[8000]));
        assert_eq!(route.backup, ports(&[8001]));
        let split = "server { listen 80; location / { proxy_pass http://127.0.0.1:8000; } }
server { listen 81; location / { proxy_pass http://127.0.0.1:8001; } }";
        assert_eq!(
            super::read(split).unwrap().route().unwrap().single_port(),
            None
        );
    }

    #[test]
    fn down_servers_take_no_traffic() {
        let site =
            "upstream backend { server 127.0.0.1:8000 down; server 127.0.0.1:8001 weight=2; }";
        let route = route(site);
        assert_eq!(route.primary, ports(&[8001]));
        assert!(route.backup.is_empty());
    }

    #[test]
    fn an_upstream_inside_http_is_found() {
        let conf = "http { upstream backend { server 127.0.0.1:8001; server 127.0.0.1:8000 backup; } server { location / { proxy_pass http://backend; } } }";
        assert_eq!(route(conf).single_port(), Some(8001));
    }

    #[test]
    fn a_file_without_routes_routes_nowhere() {
        let route = route("server { listen 80; root /var/www; }\n");
        assert!(route.primary.is_empty());
        assert_eq!(route.to_string(), "no port");
    }

    #[test]
    fn what_it_refuses_to_guess() {
        for (text, expected) in [
            (
                "server { location / { proxy_pass http://$backend; } }",
                "uses a variable",
            ),
            (
                "server { location / { proxy_pass http://backend; } }",
                "no upstream block in this file",
            ),
            (
                "upstream b { server unix:/run/app.sock; } server { location / { proxy_pass http://b; } }",
                "unix socket",
            ),
            ("upstream b { server 10.0.0.5; }", "has no port"),
            (
                "upstream b { server 10.0.0.5:8000 frobnicate; }",
                "unknown server parameter \"frobnicate\"",
            ),
            (
                "upstream b { server 10.0.0.5:8000 weight=x; }",
                "not a number",
            ),
            (
                "upstream b { server 10.0.0.5:8000; } upstream b { server 10.0.0.5:8001; }",
                "defined twice",
            ),
            (
                "server { location / { proxy_pass fastcgi://x:1; } }",
                "not an http(s) URL",
            ),
            ("upstream b { server 10.0.0.5:99999; }", "no valid port"),
        ] {
            let why = refused(text);
            assert!(why.contains(expected), "{text}: {why}");
        }
    }

    #[test]
    fn broken_syntax_names_its_line() {
        for (text, expected) in [
            (
                "upstream backend {\n server 1.2.3.4:8000;\n",
                "line 1: a block opened here is never closed",
            ),
            (
                "server {\n listen 80\n}\n",
                "line 3: directive \"listen\" has no ending \";\"",
            ),
            ("server { }\n}\n", "line 2: unexpected \"}\""),
            (
                "server_name \"unterminated;\n",
                "line 1: unterminated \"quote\"",
            ),
            ("server {\n listen 80;\n ;\n}", "line 3: unexpected \";\""),
        ] {
            assert_eq!(read(text).unwrap_err().to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("[::1]:8000").unwrap(),
            Address {
                host: "[::1]".into(),
                port: 8000
            }
        );
        assert_eq!(parse_address("localhost:8001").unwrap().port, 8001);
        for bad in [
            "::1",
            "10.0.0.5",
            ":8000",
            "[::1]",
            "host:0",
            "host:port",
            "unix:/x",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    /// The file bg-switch writes for `--app-host 10.200.0.2 --app-host 10.200.0.6 --port 8001`.
    const FLEET: &str = "# Written by bg-switch: port 8001 is active, 8000 is the backup.
upstream backend {
    server 10.200.0.2:8001 max_fails=5;
    server 10.200.0.6:8001;
    server [fd00::7]:8001 down;
    server 10.200.0.2:8000 backup;
    server 10.200.0.6:8000 backup;
    server [fd00::7]:8000 backup;
}
";

    #[test]
    fn a_route_knows_its_servers_and_their_hosts() {
        let fleet = read(FLEET).unwrap().upstream_route("backend").unwrap();
        assert_eq!(fleet.single_port(), Some(8001));
        assert_eq!(fleet.hosts(), ["10.200.0.2", "10.200.0.6", "[fd00::7]"]);
        assert_eq!(fleet.servers.len(), 6);
        assert_eq!(fleet.role("10.200.0.2", 8001), Some(ServerRole::Primary));
        assert_eq!(fleet.role("10.200.0.6", 8000), Some(ServerRole::Backup));
        assert_eq!(fleet.role("[fd00::7]", 8001), Some(ServerRole::Down));
        assert_eq!(fleet.role("10.200.0.9", 8001), None);
        assert_eq!(fleet.role("10.200.0.2", 9000), None);
        // The same through a site file's proxy_pass, and a plain address.
        let site = format!("{FLEET}server {{ location / {{ proxy_pass http://backend; }} }}\n");
        assert_eq!(route(&site).hosts().len(), 3);
        let plain = route("server { location / { proxy_pass http://10.0.0.5:8001/; } }");
        assert_eq!(plain.hosts(), ["10.0.0.5"]);
        assert_eq!(plain.role("10.0.0.5", 8001), Some(ServerRole::Primary));
        // A host listed as primary and as backup at one port is primary.
        let twice = route(
            "upstream b { server 10.0.0.5:8000 backup; server 10.0.0.5:8000; server 10.0.0.5:8000; }",
        );
        assert_eq!(twice.role("10.0.0.5", 8000), Some(ServerRole::Primary));
        assert_eq!(twice.servers.len(), 2, "each (address, role) once");
    }

    #[test]
    fn an_address_names_an_ssh_host_by_its_text() {
        let v4 = parse_address("10.200.0.2:8001").unwrap();
        assert!(v4.names_host("10.200.0.2"));
        assert!(!v4.names_host("10.200.0.20"));
        let name = parse_address("App1.internal:8001").unwrap();
        assert!(name.names_host("app1.internal"), "case does not matter");
        assert!(!name.names_host("app1"), "names are not resolved");
        let v6 = parse_address("[fd00::7]:8000").unwrap();
        assert_eq!(v6.bare_host(), "fd00::7");
        assert!(v6.names_host("fd00::7") && v6.names_host("[fd00::7]"));
        for (address, loopback) in [
            ("127.0.0.1:1", true),
            ("127.0.0.3:1", true),
            ("localhost:1", true),
            ("[::1]:1", true),
            ("10.0.0.5:1", false),
            ("app:1", false),
        ] {
            assert_eq!(
                parse_address(address).unwrap().is_loopback(),
                loopback,
                "{address}"
            );
        }
    }

    #[test]
    fn a_managed_upstream_file_and_what_else_it_holds() {
        let routing = read(SEED).unwrap();
        assert!(routing.other_top_level.is_empty());
        assert_eq!(
            routing.upstream_route("backend").unwrap().single_port(),
            Some(8000)
        );
        assert!(
            describe(&routing.upstream_route("other").unwrap_err())
                .contains("no \"upstream other\"")
        );
        let more = read("upstream backend { server 127.0.0.1:8000; }\nmap $a $b { default 1; }\n")
            .unwrap();
        assert_eq!(more.other_top_level[0].name, "map");
    }
}
