//! The one change bg-switch makes to nginx's files, and its exact undo.
//!
//! Each step is a single rename(2) on the nginx host, so nginx (and anyone
//! running `nginx -t` meanwhile) sees the old state or the new one, never a
//! half-written file, never two enabled files of the site, never none.

use bg_core::Cmd;
use bg_core::HostError;
use bg_core::host::Host;
use bg_core::layout::{LayoutArgs, join};
use bg_core::nginx::{Routing, UpstreamServer};

/// What bg-switch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Symlink layout: the site's link in sites-enabled.
    Relink {
        dir: String,
        /// The enabled entry before: its name and link target.
        before: Option<(String, String)>,
        /// The entry after: its name and link target.
        after: (String, String),
    },
    /// Managed layout: the upstream file's whole content.
    Rewrite {
        path: String,
        before: Option<Vec<u8>>,
        after: Vec<u8>,
    },
}

/// Points the site's link at a new target in two renames, each atomic:
/// first the new link replaces the enabled one under its old name (nginx
/// sees the old file or the new one), then it takes the new file's name
/// (the entry is under one name or the other). At no instant are there zero
/// or two enabled entries. `$1` dir, `$2` entry enabled now ("" for none),
/// `$3` its name afterwards, `$4` the link target.
const RELINK_SCRIPT: &str = r#"# point a site link
now=$2
# An undo after a failed second rename finds the entry still under its new name.
if [ -n "$now" ] && [ ! -e "$1/$now" ] && [ ! -L "$1/$now" ] && [ -L "$1/$3" ]; then now=$3; fi
if [ -n "$now" ] && [ -d "$1/$now" ]; then echo "$1/$now is a directory" >&2; exit 1; fi
if [ "$now" != "$3" ] && { [ -e "$1/$3" ] || [ -L "$1/$3" ]; }; then
  echo "$1/$3 exists already" >&2; exit 1
fi
tmp="$1/.bg-switch.$$"
rm -f -- "$tmp"
ln -s -- "$4" "$tmp" || exit 1
if [ -n "$now" ]; then
  mv -f -- "$tmp" "$1/$now" || { rm -f -- "$tmp"; exit 1; }
  if [ "$now" != "$3" ]; then mv -f -- "$1/$now" "$1/$3" || exit 1; fi
else
  mv -f -- "$tmp" "$1/$3" || { rm -f -- "$tmp"; exit 1; }
fi
"#;

const REMOVE_SCRIPT: &str = r#"# remove a file
rm -f -- "$1"
"#;

const ABSOLUTE_SCRIPT: &str = r#"# resolve a directory
cd -- "$1" && pwd -P
"#;

impl Change {
    /// Symlink layout: enable `file` of sites-available in place of `before`.
    pub fn relink(
        host: &dyn Host,
        args: &LayoutArgs,
        before: Option<(String, String)>,
        file: &str,
    ) -> Result<Change, HostError> {
        let dir = if args.sites_available.starts_with('/') {
            args.sites_available.clone()
        } else {
            let cmd = Cmd::script(ABSOLUTE_SCRIPT, &[&args.sites_available]).privileged(true);
            host.run_ok(&cmd)?.stdout_text().trim_end().to_string()
        };
        let target = join(&dir, file);
        // A link named after a port file takes the new file's name; a link
        // with a name of its own (`dev`) keeps it.
        let name = match &before {
            Some((name, _)) if !args.site_files().contains(name) => name.clone(),
            _ => file.to_string(),
        };
        Ok(Change::Relink {
            dir: args.sites_enabled.clone(),
            before,
            after: (name, target),
        })
    }

    pub fn apply(&self, host: &dyn Host) -> Result<(), HostError> {
        match self {
            Change::Relink { dir, before, after } => {
                let now = before.as_ref().map(|(name, _)| name.as_str()).unwrap_or("");
                relink(host, dir, now, &after.0, &after.1)
            }
            Change::Rewrite { path, after, .. } => host.write_file_atomic(path, after, 0o644, true),
        }
    }

    /// Puts back exactly what was there before [`Change::apply`].
    pub fn undo(&self, host: &dyn Host) -> Result<(), HostError> {
        match self {
            Change::Relink { dir, before, after } => match before {
                Some((name, target)) => relink(host, dir, &after.0, name, target),
                None => remove(host, &join(dir, &after.0)),
            },
            Change::Rewrite { path, before, .. } => match before {
                Some(bytes) => host.write_file_atomic(path, bytes, 0o644, true),
                None => remove(host, path),
            },
        }
    }

    /// [`Change::apply`] as one shell line, for the host to run inside the
    /// switch's transaction; `None` when a file's bytes cannot go on a
    /// command line (not UTF-8, or a NUL), and the steps run one by one.
    pub fn apply_line(&self) -> Option<String> {
        match self {
            Change::Relink { dir, before, after } => {
                let now = before.as_ref().map(|(name, _)| name.as_str()).unwrap_or("");
                relink_cmd(dir, now, &after.0, &after.1)
                    .to_shell_line(false)
                    .ok()
            }
            Change::Rewrite { path, after, .. } => write_line(path, after),
        }
    }

    /// [`Change::undo`] as one shell line, as [`Change::apply_line`].
    pub fn undo_line(&self) -> Option<String> {
        match self {
            Change::Relink { dir, before, after } => match before {
                Some((name, target)) => relink_cmd(dir, &after.0, name, target)
                    .to_shell_line(false)
                    .ok(),
                None => remove_cmd(&join(dir, &after.0)).to_shell_line(false).ok(),
            },
            Change::Rewrite { path, before, .. } => match before {
                Some(bytes) => write_line(path, bytes),
                None => remove_cmd(path).to_shell_line(false).ok(),
            },
        }
    }

    /// The directory where the change makes its temporary files.
    pub fn temp_dir(&self) -> String {
        match self {
            Change::Relink { dir, .. } => dir.clone(),
            Change::Rewrite { path, .. } => match path.rsplit_once('/') {
                Some(("", _)) => "/".to_string(),
                Some((dir, _)) => dir.to_string(),
                None => ".".to_string(),
            },
        }
    }

    /// One line: what changes.
    pub fn describe(&self) -> String {
        match self {
            Change::Relink { dir, before, after } => {
                let new = format!("{} -> {}", join(dir, &after.0), after.1);
                match before {
                    Some((name, target)) => {
                        format!("replace {} -> {target} with {new}", join(dir, name))
                    }
                    None => format!("enable {new}"),
                }
            }
            Change::Rewrite {
                path,
                before,
                after,
            } => {
                let verb = if before.is_some() {
                    "rewrite"
                } else {
                    "create"
                };
                format!(
                    "{verb} {path} as:\n{}",
                    String::from_utf8_lossy(after).trim_end()
                )
            }
        }
    }

    /// How to put the previous state back by hand, for when the undo failed.
    pub fn manual_undo(&self) -> String {
        match self {
            Change::Relink { dir, before, after } => match before {
                Some((name, target)) => format!(
                    "make {} the only link of the site again, pointing to {target}",
                    join(dir, name)
                ),
                None => format!("remove {}", join(dir, &after.0)),
            },
            Change::Rewrite { path, before, .. } => match before {
                Some(_) => format!("restore {path} from the history or a backup"),
                None => format!("remove {path}"),
            },
        }
    }
}

fn relink_cmd(dir: &str, now: &str, name: &str, target: &str) -> Cmd {
    Cmd::script(RELINK_SCRIPT, &[dir, now, name, target])
}

fn remove_cmd(path: &str) -> Cmd {
    Cmd::script(REMOVE_SCRIPT, &[path])
}

/// `printf '%s' BYTES | (write PATH atomically)`.
fn write_line(path: &str, bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))?;
    let write = Cmd::script(bg_core::host::WRITE_SCRIPT, &[path, "644"])
        .to_shell_line(false)
        .ok()?;
    Some(format!(
        "printf '%s' {} | {write}",
        bg_core::quote::quote(text).ok()?
    ))
}

fn relink(
    host: &dyn Host,
    dir: &str,
    now: &str,
    name: &str,
    target: &str,
) -> Result<(), HostError> {
    let cmd = relink_cmd(dir, now, name, target).privileged(true);
    host.run_ok(&cmd).map(drop)
}

fn remove(host: &dyn Host, path: &str) -> Result<(), HostError> {
    let cmd = remove_cmd(path).privileged(true);
    host.run_ok(&cmd).map(drop)
}

/// An app host as nginx writes it: IPv6 in brackets.
pub fn format_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Whether an `--app-host` value is an address nginx accepts unquoted.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
}

/// The managed upstream file: every app host at `port` as primary, at
/// `other` as backup. A host's parameters on its old primary line
/// (`max_fails=5 fail_timeout=60s`...) move with the primary role.
pub fn upstream_file(
    name: &str,
    hosts: &[String],
    port: u16,
    other: u16,
    old: Option<&Routing>,
) -> String {
    let old_primary = |host: &str| -> Vec<String> {
        old.and_then(|r| r.upstream(name))
            .and_then(|u| {
                u.servers
                    .iter()
                    .find(|s: &&UpstreamServer| s.is_primary() && s.address.host == host)
            })
            .map(|s| {
                s.params
                    .iter()
                    .filter(|p| *p != "backup" && *p != "down")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut text = format!(
        "# Written by bg-switch: port {port} is active, {other} is the backup.\n\
         # bg-switch rewrites this whole file on every switch.\n\
         upstream {name} {{\n"
    );
    for host in hosts {
        let mut line = format!("    server {host}:{port}");
        for param in old_primary(host) {
            line.push(' ');
            line.push_str(&param);
        }
        text.push_str(&line);
        text.push_str(";\n");
    }
    for host in hosts {
        text.push_str(&format!("    server {host}:{other} backup;\n"));
    }
    text.push_str("}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_upstream_switched_keeps_its_parameters_on_the_primary() {
        let seed = "upstream backend {\n    server 10.0.0.5:8000 fail_timeout=60s max_fails=5;\n    server 10.0.0.5:8001 backup;\n}\n";
        let old = bg_core::nginx::read(seed).unwrap();
        let text = upstream_file("backend", &["10.0.0.5".into()], 8001, 8000, Some(&old));
        assert!(
            text.ends_with(
                "upstream backend {\n    server 10.0.0.5:8001 fail_timeout=60s max_fails=5;\n    server 10.0.0.5:8000 backup;\n}\n"
            ),
            "{text}"
        );
        let route = bg_core::nginx::read(&text)
            .unwrap()
            .upstream_route("backend")
            .unwrap();
        assert_eq!(route.single_port(), Some(8001));
    }

    #[test]
    fn several_app_hosts_are_all_primary_at_the_port() {
        let hosts = ["10.0.0.5".to_string(), format_host("fd00::6")];
        let text = upstream_file("app", &hosts, 8000, 8001, None);
        assert!(text.contains(
            "upstream app {\n    server 10.0.0.5:8000;\n    server [fd00::6]:8000;\n    server 10.0.0.5:8001 backup;\n    server [fd00::6]:8001 backup;\n}\n"
        ), "{text}");
    }

    fn link(dir: &std::path::Path, name: &str) -> Option<String> {
        std::fs::read_link(dir.join(name))
            .ok()
            .map(|t| t.display().to_string())
    }

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn relinking_and_its_undo_from_every_state() {
        let host = bg_core::host::LocalHost::new(false);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("en abled $(x)");
        std::fs::create_dir(&dir).unwrap();
        let d = dir.to_str().unwrap();
        let change = Change::Relink {
            dir: d.to_string(),
            before: Some(("dev_8000".into(), "/av/dev_8000".into())),
            after: ("dev_8001".into(), "/av/dev_8001".into()),
        };
        std::os::unix::fs::symlink("/av/dev_8000", dir.join("dev_8000")).unwrap();
        change.apply(&host).unwrap();
        assert_eq!(entries(&dir), ["dev_8001"]);
        assert_eq!(link(&dir, "dev_8001").as_deref(), Some("/av/dev_8001"));
        change.undo(&host).unwrap();
        assert_eq!(entries(&dir), ["dev_8000"]);
        assert_eq!(link(&dir, "dev_8000").as_deref(), Some("/av/dev_8000"));

        // The second rename failed: the new target is still under the old name.
        std::fs::remove_file(dir.join("dev_8000")).unwrap();
        std::os::unix::fs::symlink("/av/dev_8001", dir.join("dev_8000")).unwrap();
        change.undo(&host).unwrap();
        assert_eq!(entries(&dir), ["dev_8000"]);
        assert_eq!(link(&dir, "dev_8000").as_deref(), Some("/av/dev_8000"));

        // Nothing enabled before: the undo removes the link.
        let first = Change::Relink {
            dir: d.to_string(),
            before: None,
            after: ("dev_8001".into(), "/av/dev_8001".into()),
        };
        std::fs::remove_file(dir.join("dev_8000")).unwrap();
        first.apply(&host).unwrap();
        assert_eq!(entries(&dir), ["dev_8001"]);
        first.undo(&host).unwrap();
        assert!(entries(&dir).is_empty());

        // Another file under the target name is never overwritten.
        std::fs::write(dir.join("dev_8001"), "someone's file").unwrap();
        std::os::unix::fs::symlink("/av/dev_8000", dir.join("dev_8000")).unwrap();
        assert!(change.apply(&host).is_err());
        assert_eq!(entries(&dir), ["dev_8000", "dev_8001"]);
        assert_eq!(link(&dir, "dev_8000").as_deref(), Some("/av/dev_8000"));
    }

    #[test]
    fn app_hosts_that_would_break_the_file_are_refused() {
        for ok in ["127.0.0.1", "app-1.internal", "[::1]", "::1"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "a;b", "a}", "$(id)", "a\nb", "'x'"] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
