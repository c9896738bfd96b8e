//! The two nginx layouts that bg-detect-port reads and bg-switch changes,
//! and how to read which port is active in each.
//!
//! - symlink layout: `sites-available/SITE_BLUE` and `SITE_GREEN`, one of
//!   them linked into `sites-enabled`. What a file routes to is read from its
//!   content; its name only says it belongs to the site.
//! - managed layout (`--upstream-file`): one include file that holds
//!   `upstream NAME { ... }` and nothing else; bg-switch rewrites it.
//!
//! Anything else (two files enabled, a dangling link, a port that is neither
//! blue nor green, a file that routes nowhere) is [`LayoutError::Unsafe`]:
//! exit 3, with what was seen and what to fix.

use clap::Args;

use crate::Failure;
use crate::cli::parse_port;
use crate::cmd::Cmd;
use crate::error::{HostError, UsageError};
use crate::exit::Code;
use crate::host::Host;
use crate::nginx::{self, Route, Routing};

/// Which nginx files hold the site, and its two ports.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Layout")]
pub struct LayoutArgs {
    /// Site name: the symlink layout's files are sites-available/NAME_PORT
    #[arg(long, env = "BG_SITE", default_value = "dev", value_parser = crate::cli::parse_name, value_name = "NAME")]
    pub site: String,

    /// The blue port (the target when nothing is active yet)
    #[arg(long, env = "BG_BLUE_PORT", default_value = "8000", value_parser = parse_port, value_name = "PORT")]
    pub blue_port: u16,

    /// The green port
    #[arg(long, env = "BG_GREEN_PORT", default_value = "8001", value_parser = parse_port, value_name = "PORT")]
    pub green_port: u16,

    /// Symlink layout: directory of the site files, one per port
    #[arg(
        long,
        env = "BG_SITES_AVAILABLE",
        default_value = "/etc/nginx/sites-available",
        value_parser = crate::cli::parse_host_path,
        value_name = "DIR"
    )]
    pub sites_available: String,

    /// Symlink layout: directory nginx includes, holding the one enabled link
    #[arg(
        long,
        env = "BG_SITES_ENABLED",
        default_value = "/etc/nginx/sites-enabled",
        value_parser = crate::cli::parse_host_path,
        value_name = "DIR"
    )]
    pub sites_enabled: String,

    /// Managed layout: the include file holding `upstream NAME { ... }` and nothing else
    #[arg(long, env = "BG_UPSTREAM_FILE", value_parser = crate::cli::parse_host_path, value_name = "FILE")]
    pub upstream_file: Option<String>,

    /// Managed layout: the upstream's name
    #[arg(
        long,
        env = "BG_UPSTREAM_NAME",
        default_value = "backend",
        value_name = "NAME"
    )]
    pub upstream_name: String,
}

impl LayoutArgs {
    /// Refuses what cannot name a layout: blue = green, a site name that is
    /// a path, an upstream name nginx would not accept.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.blue_port == self.green_port {
            return Err(UsageError::new(
                format!("--blue-port and --green-port are both {}", self.blue_port),
                "give the two ports the app runs on, e.g. --blue-port 8000 --green-port 8001",
            ));
        }
        let site = &self.site;
        if site.is_empty()
            || site == "."
            || site == ".."
            || site.starts_with('.')
            || site.contains('/')
            || site.contains('\0')
        {
            return Err(UsageError::new(
                format!("{site:?} is not a site name"),
                "give --site the name part of sites-available/NAME_PORT, without a path or a leading dot",
            ));
        }
        let name = &self.upstream_name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(UsageError::new(
                format!("{name:?} is not an upstream name"),
                "use letters, digits, '_', '-' and '.' in --upstream-name",
            ));
        }
        Ok(())
    }

    /// The managed layout's file, when one is given (an empty value means none).
    pub fn managed_file(&self) -> Option<&str> {
        self.upstream_file.as_deref().filter(|f| !f.is_empty())
    }

    /// The other color's port.
    pub fn other(&self, port: u16) -> u16 {
        if port == self.blue_port {
            self.green_port
        } else {
            self.blue_port
        }
    }

    /// `blue` or `green`, for messages.
    pub fn color(&self, port: u16) -> &'static str {
        if port == self.blue_port {
            "blue"
        } else if port == self.green_port {
            "green"
        } else {
            "neither blue nor green"
        }
    }

    /// The site's two file names, `SITE_BLUE` and `SITE_GREEN`.
    pub fn site_files(&self) -> [String; 2] {
        [
            format!("{}_{}", self.site, self.blue_port),
            format!("{}_{}", self.site, self.green_port),
        ]
    }

    fn is_color(&self, port: u16) -> bool {
        port == self.blue_port || port == self.green_port
    }

    /// The files that reading the state and finding the file to enable
    /// usually read: worth reading ahead in one command
    /// ([`crate::host::Prefetched`]). Anything else is read when needed.
    /// What reading the state asks the host, for [`Prefetched::with_commands`]:
    /// the listing of sites-enabled in the symlink layout.
    ///
    /// [`Prefetched::with_commands`]: crate::host::Prefetched::with_commands
    pub fn usual_commands(&self) -> Vec<Cmd> {
        match self.managed_file() {
            Some(_) => Vec::new(),
            None => vec![list_cmd(&self.sites_enabled)],
        }
    }

    pub fn usual_files(&self) -> Vec<String> {
        match self.managed_file() {
            Some(path) => vec![path.to_string()],
            None => self
                .site_files()
                .iter()
                .flat_map(|f| [join(&self.sites_enabled, f), join(&self.sites_available, f)])
                .collect(),
        }
    }
}

/// `DIR/NAME`.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The layout cannot be acted on safely.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Host(#[from] HostError),

    /// Exit 3: what we saw, and what to fix.
    #[error("{saw}")]
    Unsafe { saw: String, fix: String },
}

impl LayoutError {
    pub fn unsafe_state(saw: impl Into<String>, fix: impl Into<String>) -> Self {
        LayoutError::Unsafe {
            saw: saw.into(),
            fix: fix.into(),
        }
    }
}

impl Failure for LayoutError {
    fn code(&self) -> Code {
        match self {
            LayoutError::Host(e) => e.code(),
            LayoutError::Unsafe { .. } => Code::Unsafe,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            LayoutError::Host(e) => e.hint(),
            LayoutError::Unsafe { fix, .. } => Some(fix.clone()),
        }
    }

    fn details(&self) -> Option<String> {
        match self {
            LayoutError::Host(e) => e.details(),
            LayoutError::Unsafe { .. } => None,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A symlink, its target as written, and whether that target exists.
    Link {
        target: String,
        exists: bool,
    },
    File,
    Other,
}

/// Lists a directory: name, kind, link target. NUL-separated, so any name
/// (newlines, quotes, `$(...)`) comes back as it is.
/// The command [`list_dir`] runs.
pub fn list_cmd(dir: &str) -> Cmd {
    Cmd::script(LIST_SCRIPT, &[dir]).privileged(true)
}

const LIST_SCRIPT: &str = r#"# list a directory
[ -d "$1" ] || exit 100
for f in "$1"/*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  name=${f##*/}
  if [ -L "$f" ]; then
    t=$(readlink -- "$f"; printf x); t=${t%x}; t=${t%?}
    if [ -e "$f" ]; then e=1; else e=0; fi
    printf 'L\0%s\0%s\0%s\0' "$name" "$t" "$e"
  elif [ -f "$f" ]; then
    printf 'F\0%s\0\0\0' "$name"
  else
    printf 'O\0%s\0\0\0' "$name"
  fi
done
"#;

/// The entries of `dir` (no dot files: nginx's `*` skips them too), or
/// `None` when it is not a directory.
pub fn list_dir(host: &dyn Host, dir: &str) -> Result<Option<Vec<Entry>>, HostError> {
    let cmd = list_cmd(dir);
    let output = host.run(&cmd)?;
    if output.code == Some(100) && output.signal.is_none() {
        return Ok(None);
    }
    let output = host.check(&cmd, output)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.split('\0').collect();
    let mut entries = Vec::new();
    for record in fields.chunks_exact(4) {
        let kind = match record[0] {
            "L" => EntryKind::Link {
                target: record[2].to_string(),
                exists: record[3] == "1",
            },
            "F" => EntryKind::File,
            _ => EntryKind::Other,
        };
        entries.push(Entry {
            name: record[1].to_string(),
            kind,
        });
    }
    Ok(Some(entries))
}

/// The enabled file of the symlink layout and what it routes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    /// Its name in sites-enabled.
    pub name: String,
    /// The link's target as written; `None` for a regular file.
    pub link: Option<String>,
    pub route: Route,
    pub port: u16,
}

/// What the layout holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Symlink layout: the one enabled entry of the site, if any.
    Symlink { enabled: Option<Enabled> },
    /// Managed layout: the file's bytes (`None`: no file yet) and its active port.
    Managed {
        path: String,
        contents: Option<Vec<u8>>,
        routing: Option<Routing>,
        port: Option<u16>,
    },
}

impl State {
    /// The active port; `None` when nothing is enabled yet.
    pub fn active(&self) -> Option<u16> {
        match self {
            State::Symlink { enabled } => enabled.as_ref().map(|e| e.port),
            State::Managed { port, .. } => *port,
        }
    }

    /// One line for stderr: what was read where.
    pub fn describe(&self, args: &LayoutArgs) -> String {
        match self {
            State::Symlink { enabled: None } => format!(
                "no file of site {} is enabled in {}",
                args.site, args.sites_enabled
            ),
            State::Symlink {
                enabled: Some(enabled),
            } => {
                let path = join(&args.sites_enabled, &enabled.name);
                match &enabled.link {
                    Some(target) => format!("{path} -> {target} routes to {}", enabled.route),
                    None => format!("{path} routes to {}", enabled.route),
                }
            }
            State::Managed {
                path,
                contents: None,
                ..
            } => format!("{path} does not exist yet"),
            State::Managed { path, routing, .. } => {
                let route = routing
                    .as_ref()
                    .and_then(|r| r.upstream_route(&args.upstream_name).ok())
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                format!(
                    "upstream {} in {path} routes to {route}",
                    args.upstream_name
                )
            }
        }
    }
}

/// Reads the layout's state on the host.
pub fn read_state(host: &dyn Host, args: &LayoutArgs) -> Result<State, LayoutError> {
    match args.managed_file() {
        Some(path) => read_managed(host, args, path),
        None => read_symlink(host, args),
    }
}

/// The one port a route sends its primary traffic to, if it is blue or green.
pub fn port_of(args: &LayoutArgs, what: &str, route: &Route) -> Result<u16, LayoutError> {
    let colors = format!("blue {} or green {}", args.blue_port, args.green_port);
    match route.single_port() {
        Some(port) if args.is_color(port) => Ok(port),
        Some(port) => Err(LayoutError::unsafe_state(
            format!("{what} routes to port {port}, which is neither {colors}"),
            "fix the file, or pass the ports it uses as --blue-port/--green-port",
        )),
        None if route.primary.is_empty() => Err(LayoutError::unsafe_state(
            format!("{what} routes nowhere: no proxy_pass and no primary upstream server"),
            format!(
                "give it `proxy_pass http://HOST:PORT;` or an upstream whose one non-backup port is {colors}"
            ),
        )),
        None => Err(LayoutError::unsafe_state(
            format!("{what} routes to {route}: several primary ports"),
            format!("leave one primary port ({colors}) and mark the other `backup`"),
        )),
    }
}

/// A file of the layout, or `None` when nothing is there. A directory in
/// its place is a layout problem (exit 3), not a failed command.
fn read_layout_file(host: &dyn Host, path: &str) -> Result<Option<Vec<u8>>, LayoutError> {
    host.read_file(path, true).map_err(|e| match e {
        HostError::NotAFile { path, .. } => LayoutError::unsafe_state(
            format!("{path} is a directory, where a site or upstream file should be"),
            "check the path flags (--sites-available, --sites-enabled, --upstream-file)",
        ),
        other => other.into(),
    })
}

fn read_text(host: &dyn Host, path: &str) -> Result<Option<String>, LayoutError> {
    Ok(read_layout_file(host, path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Reads a site file's route, refusing what it cannot understand.
pub fn route_of_file(host: &dyn Host, path: &str, what: &str) -> Result<Route, LayoutError> {
    let Some(text) = read_text(host, path)? else {
        return Err(LayoutError::unsafe_state(
            format!("{what} ({path}) does not exist"),
            "create it, or check --sites-available",
        ));
    };
    route_of_text(&text, what)
}

fn route_of_text(text: &str, what: &str) -> Result<Route, LayoutError> {
    let routing = nginx::read(text).map_err(|problem| {
        LayoutError::unsafe_state(
            format!("{what} is not valid nginx configuration: {problem}"),
            "fix the file (nginx -t shows the same)",
        )
    })?;
    routing.route().map_err(|problems| {
        LayoutError::unsafe_state(
            format!("cannot tell where {what} routes: {}", nginx::describe(&problems)),
            "route it with `proxy_pass http://HOST:PORT` or an upstream in the same file whose servers are HOST:PORT",
        )
    })
}

/// The site's entries in sites-enabled: named SITE_BLUE or SITE_GREEN, or
/// linking to a file of that name.
fn site_entries(args: &LayoutArgs, entries: Vec<Entry>) -> Vec<Entry> {
    let files = args.site_files();
    entries
        .into_iter()
        .filter(|entry| {
            files.contains(&entry.name)
                || match &entry.kind {
                    EntryKind::Link { target, .. } => {
                        let base = target.trim_end_matches('/').rsplit('/').next();
                        base.is_some_and(|b| files.iter().any(|f| f == b))
                    }
                    _ => false,
                }
        })
        .collect()
}

fn read_symlink(host: &dyn Host, args: &LayoutArgs) -> Result<State, LayoutError> {
    let Some(entries) = list_dir(host, &args.sites_enabled)? else {
        return Err(LayoutError::unsafe_state(
            format!(
                "{} is not a directory on {}",
                args.sites_enabled,
                host.name()
            ),
            "check --sites-enabled, or use the managed layout with --upstream-file",
        ));
    };
    let [blue_file, green_file] = args.site_files();
    let mine = site_entries(args, entries);
    let mut enabled = Vec::new();
    for entry in &mine {
        let path = join(&args.sites_enabled, &entry.name);
        let (link, what) = match &entry.kind {
            EntryKind::Link { target, exists } => {
                if !exists {
                    return Err(LayoutError::unsafe_state(
                        format!("{path} is a dangling symlink to {target}"),
                        format!("remove it (`rm {path}`) or restore its target, then run nginx -t"),
                    ));
                }
                (Some(target.clone()), format!("{path} -> {target}"))
            }
            EntryKind::File => (None, path.clone()),
            EntryKind::Other => {
                return Err(LayoutError::unsafe_state(
                    format!("{path} is neither a file nor a symlink"),
                    "remove it from sites-enabled",
                ));
            }
        };
        let route = route_of_file(host, &path, &what)?;
        enabled.push((entry.name.clone(), link, what, route));
    }
    match enabled.len() {
        0 => Ok(State::Symlink { enabled: None }),
        1 => {
            let (name, link, what, route) = enabled.remove(0);
            let port = port_of(args, &what, &route)?;
            Ok(State::Symlink {
                enabled: Some(Enabled {
                    name,
                    link,
                    route,
                    port,
                }),
            })
        }
        _ => {
            let saw: Vec<String> = enabled
                .iter()
                .map(|(_, _, what, route)| format!("{what} routes to {route}"))
                .collect();
            Err(LayoutError::unsafe_state(
                format!(
                    "{} files of site {} are enabled: {}",
                    enabled.len(),
                    args.site,
                    saw.join("; ")
                ),
                format!(
                    "keep exactly one of {blue_file} and {green_file} in {}: remove the link of the port that should not serve, then run nginx -t and reload",
                    args.sites_enabled
                ),
            ))
        }
    }
}

fn read_managed(host: &dyn Host, args: &LayoutArgs, path: &str) -> Result<State, LayoutError> {
    let Some(bytes) = read_layout_file(host, path)? else {
        return Ok(State::Managed {
            path: path.to_string(),
            contents: None,
            routing: None,
            port: None,
        });
    };
    let text = String::from_utf8_lossy(&bytes);
    let name = &args.upstream_name;
    let routing = nginx::read(&text).map_err(|problem| {
        LayoutError::unsafe_state(
            format!("{path} is not valid nginx configuration: {problem}"),
            "fix the file (nginx -t shows the same)",
        )
    })?;
    let route = routing.upstream_route(name).map_err(|problems| {
        LayoutError::unsafe_state(
            format!(
                "cannot tell where upstream {name} in {path} routes: {}",
                nginx::describe(&problems)
            ),
            format!(
                "the file must hold `upstream {name} {{ server HOST:PORT; server HOST:PORT backup; }}`; check --upstream-name"
            ),
        )
    })?;
    let port = if route.primary.is_empty() && route.backup.is_empty() {
        None
    } else {
        Some(port_of(
            args,
            &format!("upstream {name} in {path}"),
            &route,
        )?)
    };
    Ok(State::Managed {
        path: path.to_string(),
        contents: Some(bytes),
        routing: Some(routing),
        port,
    })
}

/// Symlink layout: the file in sites-available whose content routes to
/// `port`, and its route. Exactly one of SITE_BLUE and SITE_GREEN must.
pub fn available_for(
    host: &dyn Host,
    args: &LayoutArgs,
    port: u16,
) -> Result<(String, Route), LayoutError> {
    let mut routing_there = Vec::new();
    let mut saw = Vec::new();
    for file in args.site_files() {
        let path = join(&args.sites_available, &file);
        let Some(text) = read_text(host, &path)? else {
            saw.push(format!("{path} does not exist"));
            continue;
        };
        let route = route_of_text(&text, &path)?;
        saw.push(format!("{path} routes to {route}"));
        if route.single_port() == Some(port) {
            routing_there.push((file, route));
        }
    }
    match routing_there.len() {
        1 => Ok(routing_there.remove(0)),
        0 => Err(LayoutError::unsafe_state(
            format!(
                "no file of site {} in {} routes to port {port}: {}",
                args.site,
                args.sites_available,
                saw.join("; ")
            ),
            format!(
                "create {} with an upstream whose primary server is at port {port} (see docs/nginx-layouts.md)",
                join(&args.sites_available, &format!("{}_{port}", args.site))
            ),
        )),
        _ => Err(LayoutError::unsafe_state(
            format!(
                "both files of site {} route to port {port}: {}",
                args.site,
                saw.join("; ")
            ),
            format!(
                "make one file route to {} and the other to {}",
                args.blue_port, args.green_port
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        layout: LayoutArgs,
    }

    fn args(extra: &[&str]) -> LayoutArgs {
        let mut argv = vec!["test"];
        argv.extend(extra);
        Test::try_parse_from(argv).unwrap().layout
    }

    #[test]
    fn defaults_follow_the_contract() {
        let a = args(&[]);
        assert_eq!(a.site, "dev");
        assert_eq!((a.blue_port, a.green_port), (8000, 8001));
        assert_eq!(a.sites_available, "/etc/nginx/sites-available");
        assert_eq!(a.sites_enabled, "/etc/nginx/sites-enabled");
        assert_eq!(a.upstream_file, None);
        assert_eq!(a.upstream_name, "backend");
        assert_eq!(
            a.site_files(),
            ["dev_8000".to_string(), "dev_8001".to_string()]
        );
        assert!(a.check().is_ok());
    }

    #[test]
    fn bad_layouts_are_usage_errors() {
        assert!(
            args(&["--blue-port", "8000", "--green-port", "8000"])
                .check()
                .is_err()
        );
        for site in ["", "..", "a/b", ".hidden"] {
            assert!(args(&["--site", site]).check().is_err(), "{site:?}");
        }
        assert!(args(&["--site", "dev $(id) 'q\""]).check().is_ok());
        assert!(args(&["--upstream-name", "a b"]).check().is_err());
    }

    #[test]
    fn a_port_must_be_blue_or_green() {
        let a = args(&[]);
        let route = |primary: &[u16]| Route {
            primary: primary.iter().copied().collect(),
            ..Route::default()
        };
        assert_eq!(port_of(&a, "f", &route(&[8001])).unwrap(), 8001);
        assert!(
            port_of(&a, "f", &route(&[9000]))
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        assert!(
            port_of(&a, "f", &route(&[]))
                .unwrap_err()
                .to_string()
                .contains("nowhere")
        );
        assert!(
            port_of(&a, "f", &route(&[8000, 8001]))
                .unwrap_err()
                .to_string()
                .contains("several")
        );
    }

    #[test]
    fn entries_belong_to_the_site_by_name_or_link_target() {
        let a = args(&[]);
        let link = |name: &str, target: &str| Entry {
            name: name.into(),
            kind: EntryKind::Link {
                target: target.into(),
                exists: true,
            },
        };
        let entries = vec![
            link("dev_8000", "/etc/nginx/sites-available/dev_8000"),
            link("dev", "../sites-available/dev_8001"),
            link("default", "/etc/nginx/sites-available/default"),
            link("dev_80000", "/etc/nginx/sites-available/dev_80000"),
            Entry {
                name: "dev_8001".into(),
                kind: EntryKind::File,
            },
        ];
        let names: Vec<String> = site_entries(&a, entries)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["dev_8000", "dev", "dev_8001"]);
    }
}
