//! Who listens on a port, with nothing installed on the host but a POSIX
//! shell and base tools.
//!
//! On Linux the kernel's own tables answer: `/proc/net/tcp` and `tcp6` give
//! the inodes of listening sockets (IPv4 and IPv6), and the `socket:[INODE]`
//! links under `/proc/PID/fd` give their processes. That needs no `ss`,
//! `lsof` or `fuser`; they are used only where /proc is missing.
//!
//! A listening socket whose process we cannot see belongs to another user:
//! we report that instead of pretending the port is free or signalling a
//! part of what holds it.
//!
//! bg-stop-port uses it to find what to stop; bg-ship to refuse starting an
//! app on a port that is still taken (the old app would answer the health
//! check in the new one's place).

use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::error::HostError;
use crate::host::Host;

/// A process listening on the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    /// The command name (`/proc/PID/comm`), `?` when unknown.
    pub name: String,
}

/// What listens on a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Listening sockets on the port.
    pub sockets: usize,
    /// The processes holding them that we can see, each once.
    pub listeners: Vec<Listener>,
    /// Sockets whose process we cannot see (another user's, without root).
    pub hidden: usize,
}

/// `pid 42 (java), pid 43 (java)`, for messages.
pub fn describe(listeners: &[Listener]) -> String {
    if listeners.is_empty() {
        return "a process this user cannot see".to_string();
    }
    listeners
        .iter()
        .map(|l| format!("pid {} ({})", l.pid, l.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Found {
    pub fn pids(&self) -> Vec<u32> {
        self.listeners.iter().map(|l| l.pid).collect()
    }
}

/// Exit status for "no /proc/net/tcp here".
const NO_PROC: i32 = 100;

const TABLES_SCRIPT: &str = r#"# read the kernel's TCP tables
[ -r /proc/net/tcp ] || exit 100
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
exit 0
"#;

/// `$1` the port as /proc writes it: the kernel's listening sockets, a
/// `BG-OWNERS` line, then [`OWNERS_SCRIPT`] for those on the port (it
/// continues this script, with the inodes as its arguments).
const FIND_SCRIPT: &str = r#"# find who listens on a port
[ -r /proc/net/tcp ] || exit 100
tables=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A"')
printf '%s\n' "$tables"
echo BG-OWNERS
want=$(printf '%s\n' "$tables" | awk -v p="$1" '$4 == "0A" && $10 != "0" { n = split($2, a, ":"); if (a[n] "" == p "") printf " %s", $10 }')
[ -n "$want" ] || exit 0
set -- $want
"#;

/// Prints `PID INODE COMM` for each process holding one of the socket
/// inodes given as arguments. One `ls` lists every fd link of every process
/// we may see; awk keeps the wanted sockets.
const OWNERS_SCRIPT: &str = r#"# find the processes holding these sockets
ls -l /proc/[0-9]*/fd 2>/dev/null | awk -v want=" $* " '
  /^\/proc\/[0-9]+\/fd:$/ { split($0, part, "/"); pid = part[3]; next }
  /socket:\[[0-9]+\]$/ {
    inode = $NF; sub(/^socket:\[/, "", inode); sub(/\]$/, "", inode)
    if (index(want, " " inode " ")) print pid, inode
  }' | sort -u | while read -r pid inode; do
  # A name is the process's to choose: one line of printable characters.
  comm=$(head -n 1 -- "/proc/$pid/comm" 2>/dev/null) || continue
  comm=$(printf '%s' "$comm" | tr -c '[:print:]' '?')
  printf '%s %s %s\n' "$pid" "$inode" "$comm"
done
exit 0
"#;

/// Where /proc is missing: the first tool present, named on the first line.
const FALLBACK_SCRIPT: &str = r#"# find listeners with ss, lsof or fuser
if command -v ss >/dev/null 2>&1; then echo ss; exec ss -Htlnp "sport = :$1"; fi
if command -v lsof >/dev/null 2>&1; then echo lsof; exec lsof -nP -iTCP:"$1" -sTCP:LISTEN -Fpc; fi
if command -v fuser >/dev/null 2>&1; then echo fuser; fuser -n tcp "$1" 2>/dev/null; echo; exit 0; fi
echo none
"#;

/// The command [`find`] runs: the listening sockets and their owners in one
/// command (one round trip); our parser of the tables decides which sockets
/// count. Public so that a caller can send it with others
/// ([`crate::host::Prefetched::with_commands`]).
pub fn find_cmd(port: u16) -> Cmd {
    let script = format!("{FIND_SCRIPT}{OWNERS_SCRIPT}");
    Cmd::script(&script, &[&proc_port(port)]).privileged(true)
}

/// Finds every process listening on `port`. Looking at other users'
/// processes is privileged: with `--sudo` it runs through `sudo -n`.
pub fn find(host: &dyn Host, port: u16) -> Result<Found, HostError> {
    let cmd = find_cmd(port);
    let output = host.run(&cmd)?;
    if output.code == Some(NO_PROC) && output.signal.is_none() {
        return fallback(host, port);
    }
    let output = host.check(&cmd, output)?;
    Ok(parse_found(&output.stdout_text(), port))
}

/// The same search as a shell function, `find_listeners PORT` (PORT as
/// [`proc_port`] writes it), for a script that looks at more than one
/// thing in one round trip: its output is [`parse_found`]'s input, its
/// status 100 where there is no /proc (then [`find`] knows other ways).
pub fn find_function() -> String {
    // A subshell as the function's body: the script's `exit` and `set --`
    // stay inside it.
    format!("find_listeners() (\n{FIND_SCRIPT}{OWNERS_SCRIPT})\n")
}

/// What listens on `port`, from the output of [`find`]'s script.
pub fn parse_found(text: &str, port: u16) -> Found {
    let (tables, owners) = text.split_once("BG-OWNERS\n").unwrap_or((text, ""));
    let inodes = listening_inodes(tables, port);
    if inodes.is_empty() {
        return Found::default();
    }
    let owners: Vec<(u32, u64, String)> = parse_owners(owners)
        .into_iter()
        .filter(|(_, inode, _)| inodes.contains(inode))
        .collect();
    let hidden = inodes
        .iter()
        .filter(|inode| !owners.iter().any(|(_, i, _)| i == *inode))
        .count();
    let mut listeners: Vec<Listener> = Vec::new();
    for (pid, _, name) in owners {
        if !listeners.iter().any(|l| l.pid == pid) {
            listeners.push(Listener { pid, name });
        }
    }
    Found {
        sockets: inodes.len(),
        listeners,
        hidden,
    }
}

/// `wait_free PORT TENTHS`: PORT as /proc writes it (four upper-case hex
/// digits), TENTHS how long to wait, in tenths of a second. Prints `FREE`
/// once no socket listens on the port, or `BUSY` at the end; status 100
/// without /proc.
pub const WAIT_FREE_FUNCTION: &str = r#"wait_free() {
  [ -r /proc/net/tcp ] || return 100
  i=0
  while :; do
    if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v p="$1" '$4 == "0A" && $10 != "0" { n = split($2, a, ":"); if (a[n] "" == p "") busy = 1 } END { exit !busy }'; then
      echo FREE; return 0
    fi
    [ "$i" -ge "$2" ] && { echo BUSY; return 0; }
    if sleep 0.1 2>/dev/null; then i=$((i + 1)); else sleep 1; i=$((i + 10)); fi
  done
}
"#;

/// The port as /proc writes it.
pub fn proc_port(port: u16) -> String {
    format!("{port:04X}")
}

/// How long to wait, in tenths of a second, as [`WAIT_FREE_FUNCTION`] takes it.
pub fn tenths(within: Duration) -> String {
    within.as_millis().div_ceil(100).to_string()
}

/// Waits up to `within` until nothing listens on `port`; `true` once free.
/// One command on the host does the looking (a read of the TCP tables
/// every 0.1 s), not a command per look; without /proc, a command per look.
pub fn wait_free(host: &dyn Host, port: u16, within: Duration) -> Result<bool, HostError> {
    let script =
        format!("# wait until nothing listens on a port\n{WAIT_FREE_FUNCTION}wait_free \"$@\"\n");
    let cmd = Cmd::script(&script, &[&proc_port(port), &tenths(within)])
        .timeout(within + Duration::from_secs(30));
    let output = host.run(&cmd)?;
    if output.code == Some(NO_PROC) && output.signal.is_none() {
        let until = Instant::now() + within;
        loop {
            if !is_listening(host, port)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100).min(until - now));
        }
    }
    let output = host.check(&cmd, output)?;
    Ok(output.stdout_text().lines().any(|l| l == "FREE"))
}

/// Whether anything listens on `port`: one read of the TCP tables.
pub fn is_listening(host: &dyn Host, port: u16) -> Result<bool, HostError> {
    match listening_inodes_on(host, port)? {
        Some(inodes) => Ok(!inodes.is_empty()),
        None => Ok(fallback(host, port)?.sockets > 0),
    }
}

/// The inodes of the sockets listening on `port`; `None` without /proc.
fn listening_inodes_on(host: &dyn Host, port: u16) -> Result<Option<Vec<u64>>, HostError> {
    let cmd = Cmd::script(TABLES_SCRIPT, &[]);
    let output = host.run(&cmd)?;
    if output.code == Some(NO_PROC) {
        return Ok(None);
    }
    let output = host.check(&cmd, output)?;
    Ok(Some(listening_inodes(&output.stdout_text(), port)))
}

/// Reads `/proc/net/tcp` / `tcp6` lines: the inodes of sockets in state
/// `0A` (LISTEN) whose local port is `port`, each once.
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
///    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 ...
/// ```
pub fn listening_inodes(tables: &str, port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for line in tables.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || fields[3] != "0A" {
            continue;
        }
        let Some((_, hex_port)) = fields[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(hex_port, 16) != Ok(port) {
            continue;
        }
        if let Ok(inode) = fields[9].parse::<u64>()
            && inode != 0
            && !inodes.contains(&inode)
        {
            inodes.push(inode);
        }
    }
    inodes
}

/// `PID INODE COMM` lines from [`OWNERS_SCRIPT`].
pub fn parse_owners(text: &str) -> Vec<(u32, u64, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let pid = parts.next()?.parse().ok()?;
            let inode = parts.next()?.parse().ok()?;
            let name = parts.next().unwrap_or("?").trim();
            Some((
                pid,
                inode,
                if name.is_empty() { "?" } else { name }.to_string(),
            ))
        })
        .collect()
}

fn fallback(host: &dyn Host, port: u16) -> Result<Found, HostError> {
    let cmd = Cmd::script(FALLBACK_SCRIPT, &[&port.to_string()]).privileged(true);
    let output = host.run(&cmd)?;
    let text = output.stdout_text();
    let (tool, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    match tool.trim() {
        "ss" => Ok(parse_ss(rest)),
        "lsof" => Ok(parse_lsof(rest)),
        "fuser" => Ok(parse_fuser(rest)),
        _ => Err(HostError::Command {
            host: host.name().to_string(),
            command: "find listeners".to_string(),
            output: Box::new(crate::host::Output {
                stderr: b"no /proc/net/tcp, and none of ss, lsof, fuser is installed".to_vec(),
                ..output
            }),
        }),
    }
}

/// `ss -Htlnp` lines: `LISTEN 0 4096 *:8080 *:* users:(("java",pid=123,fd=7))`.
/// A line without `users:` is a socket of a process we may not see.
pub fn parse_ss(text: &str) -> Found {
    let mut found = Found::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        found.sockets += 1;
        let mut any = false;
        let mut rest = line;
        while let Some(start) = rest.find("(\"") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find("\",pid=") else {
                break;
            };
            let name = rest[..end].to_string();
            rest = &rest[end + 6..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(pid) = digits.parse() {
                any = true;
                if !found.listeners.iter().any(|l| l.pid == pid) {
                    found.listeners.push(Listener { pid, name });
                }
            }
        }
        if !any {
            found.hidden += 1;
        }
    }
    found
}

/// `lsof -F pc` output: `p123` then `cjava`, per process.
pub fn parse_lsof(text: &str) -> Found {
    let mut found = Found::default();
    for line in text.lines() {
        if let Some(pid) = line.strip_prefix('p').and_then(|p| p.parse().ok()) {
            found.listeners.push(Listener {
                pid,
                name: "?".to_string(),
            });
        } else if let Some(name) = line.strip_prefix('c')
            && let Some(last) = found.listeners.last_mut()
        {
            last.name = name.to_string();
        }
    }
    found.sockets = found.listeners.len();
    found
}

/// `fuser -n tcp PORT` stdout: the pids, separated by spaces.
pub fn parse_fuser(text: &str) -> Found {
    let mut found = Found::default();
    for pid in text.split_whitespace().filter_map(|p| p.parse().ok()) {
        found.listeners.push(Listener {
            pid,
            name: "?".to_string(),
        });
    }
    found.sockets = found.listeners.len();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5151 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F41 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 6161 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7373 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_on_ipv4_and_ipv6() {
        let tables = format!("{TCP}{TCP6}");
        // 0x1F41 = 8001: v4 listener, v6 listener, and an established connection (st 01) not counted.
        assert_eq!(listening_inodes(&tables, 8001), vec![4242, 7373]);
        assert_eq!(listening_inodes(&tables, 8000), vec![5151]);
        assert_eq!(listening_inodes(&tables, 9000), Vec::<u64>::new());
        assert_eq!(listening_inodes("", 8000), Vec::<u64>::new());
        assert_eq!(listening_inodes("garbage line\n", 8000), Vec::<u64>::new());
    }

    #[test]
    fn owners_lines() {
        assert_eq!(
            parse_owners("123 4242 java\n124 4242 my app\nbad line\n"),
            vec![
                (123, 4242, "java".to_string()),
                (124, 4242, "my app".to_string())
            ]
        );
    }

    #[test]
    fn ss_lines() {
        let found = parse_ss(
            "LISTEN 0 50 *:8001 *:* users:((\"java\",pid=123,fd=7),(\"java\",pid=124,fd=7))\n\
             LISTEN 0 50 0.0.0.0:8001 0.0.0.0:*\n",
        );
        assert_eq!(found.sockets, 2);
        assert_eq!(found.hidden, 1);
        assert_eq!(found.pids(), vec![123, 124]);
        assert_eq!(found.listeners[0].name, "java");
    }

    #[test]
    fn lsof_and_fuser_output() {
        let found = parse_lsof("p123\ncjava\np456\ncnginx\n");
        assert_eq!(found.pids(), vec![123, 456]);
        assert_eq!(found.listeners[1].name, "nginx");
        assert_eq!(parse_fuser("  123  456\n").pids(), vec![123, 456]);
    }

    #[test]
    fn the_search_as_a_function_returns_to_its_caller() {
        // Its `exit` ends the function's subshell, not the script using it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = format!(
            "{}out=$(find_listeners \"$1\"); echo \"rc=$?\"; printf '%s\\n' \"$out\"\n",
            find_function()
        );
        let output = std::process::Command::new("sh")
            .args(["-c", &script, "sh", &proc_port(port)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let (status, found) = text.split_once('\n').unwrap();
        if status == "rc=100" {
            return; // no /proc here
        }
        assert_eq!(status, "rc=0", "{text}");
        let found = parse_found(found, port);
        assert_eq!(found.sockets, 1, "{text}");
        assert_eq!(found.pids(), vec![std::process::id()], "{text}");
    }
}
