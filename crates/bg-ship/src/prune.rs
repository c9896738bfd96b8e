//! `--keep N`: removes older artifacts from the deploy directory, never the
//! one just shipped and never one a running process uses (the backup port's
//! app runs from an older jar, and switching back must keep working).

use bg_core::host::Host;
use bg_core::{Cmd, HostError};

/// Lists `A MTIME NAME` for each file in `$1` ending in `$2` (names holding a
/// newline are skipped: they could not be told apart from two lines), then
/// `U`, then every word of every process's command line and every file a
/// process holds open.
const LIST_SCRIPT: &str = r#"# list artifacts and what uses them
for f in "$1"/*"$2"; do
  [ -f "$f" ] || continue
  name=${f##*/}
  case $name in *'
'*) continue ;; esac
  m=$(stat -c %Y -- "$f" 2>/dev/null || date -r "$f" +%s 2>/dev/null || echo 0)
  printf 'A %s %s\n' "$m" "$name"
done
echo U
cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n'
ls -l /proc/[0-9]*/fd 2>/dev/null | sed -n 's/.* -> //p'
exit 0
"#;

/// What `--keep` decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub remove: Vec<String>,
    /// Beyond N, kept because a process uses them.
    pub in_use: Vec<String>,
}

/// Decides from [`LIST_SCRIPT`]'s output: `shipped` first, then the newest,
/// `keep` in all; of the rest, those in use stay.
pub fn plan(listing: &str, dir: &str, shipped: &str, keep: usize) -> Plan {
    let mut artifacts: Vec<(i64, String)> = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    let mut in_use_section = false;
    for line in listing.lines() {
        if in_use_section {
            used.push(line);
        } else if line == "U" {
            in_use_section = true;
        } else if let Some(rest) = line.strip_prefix("A ")
            && let Some((mtime, name)) = rest.split_once(' ')
        {
            artifacts.push((mtime.parse().unwrap_or(0), name.to_string()));
        }
    }
    artifacts.retain(|(_, name)| name != shipped);
    artifacts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let full = |name: &str| format!("{}/{name}", dir.trim_end_matches('/'));
    let is_used = |name: &str| {
        let path = full(name);
        used.iter()
            .any(|word| *word == name || *word == path || word.ends_with(&format!("/{name}")))
    };
    let mut plan = Plan::default();
    for (_, name) in artifacts.into_iter().skip(keep.saturating_sub(1)) {
        if is_used(&name) {
            plan.in_use.push(name);
        } else {
            plan.remove.push(name);
        }
    }
    plan
}

/// Applies `--keep` in `dir` to files ending in `suffix`; returns what was removed.
pub fn prune(
    host: &dyn Host,
    dir: &str,
    suffix: &str,
    shipped: &str,
    keep: usize,
) -> Result<Vec<String>, HostError> {
    let output = host.run_ok(&Cmd::script(LIST_SCRIPT, &[dir, suffix]))?;
    let plan = plan(&output.stdout_text(), dir, shipped, keep);
    for name in &plan.in_use {
        bg_core::log::info(&format!(
            "--keep: keeping {name}, a running process uses it"
        ));
    }
    if !plan.remove.is_empty() {
        let paths = plan
            .remove
            .iter()
            .map(|n| format!("{}/{n}", dir.trim_end_matches('/')));
        host.run_ok(&Cmd::new("rm").arg("-f").arg("--").args(paths))?;
        bg_core::log::info(&format!(
            "--keep {keep}: removed {}",
            plan.remove.join(", ")
        ));
    }
    Ok(plan.remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "A 100 app-1.0.jar\nA 300 app-3.0.jar\nA 200 app-2.0.jar\nA 400 app-4.0.jar\nA 50 app-0.9.jar\nU\n/usr/bin/java\n-jar\n/srv/app/app-1.0.jar\nsshd: x\n";

    #[test]
    fn keeps_the_shipped_the_newest_and_the_used() {
        let plan = plan(LISTING, "/srv/app/", "app-3.0.jar", 2);
        // shipped app-3.0, newest other app-4.0; app-1.0 runs.
        assert_eq!(plan.remove, vec!["app-2.0.jar", "app-0.9.jar"]);
        assert_eq!(plan.in_use, vec!["app-1.0.jar"]);
    }

    #[test]
    fn keep_one_keeps_only_the_shipped_and_the_used() {
        let plan = plan(LISTING, "/srv/app", "app-0.9.jar", 1);
        assert_eq!(
            plan.remove,
            vec!["app-4.0.jar", "app-3.0.jar", "app-2.0.jar"]
        );
        assert_eq!(plan.in_use, vec!["app-1.0.jar"]);
    }

    #[test]
    fn relative_names_in_command_lines_count_as_used() {
        let plan = plan(
            "A 1 a.jar\nA 2 b.jar\nU\njava\n-jar\na.jar\n",
            "/d",
            "b.jar",
            1,
        );
        assert_eq!(
            plan,
            Plan {
                remove: vec![],
                in_use: vec!["a.jar".into()]
            }
        );
    }
}
