//! What bg-status asks a host, and how it reads the answers.
//!
//! Each host gets one command (with the files read beside it in the same
//! round trip, see [`bg_core::host::Prefetched`]): the nginx host's says
//! when nginx's workers started and when the site's files last changed;
//! the app host's says who listens on each port, what the pid files hold,
//! and when those processes started. Both say whether a lock is held
//! without taking it: `/proc/locks` lists every held `flock` with its file's
//! device and inode, so a lock is looked at, never taken or waited for.
//!
//! Times are compared on the host's own clocks: a process's start is in
//! clock ticks since boot (`/proc/PID/stat`), read against `/proc/uptime`
//! and the wall clock at the same moment.

use bg_core::Cmd;

/// `clock` prints `CLOCK NOW UPTIME TICKS`: the wall clock (seconds since
/// the epoch, with a fraction where `date` has `%N`), seconds since boot,
/// and clock ticks per second.
const CLOCK_FUNCTION: &str = r#"clock() {
  up=-
  read -r up _ 2>/dev/null < /proc/uptime
  now=$(date +%s.%N 2>/dev/null)
  case $now in ''|*[!0-9.]*) now=$(date +%s) ;; esac
  tck=$(getconf CLK_TCK 2>/dev/null) || tck=100
  printf 'CLOCK %s %s %s\n' "$now" "${up:--}" "${tck:-100}"
}
"#;

/// `mtime [-L] FILE` prints when FILE (with `-L`, what it links to) was
/// last modified, in seconds since the epoch (with nanoseconds where stat
/// knows `%.9Y`), or `-`.
const MTIME_FUNCTION: &str = r#"mtime() {
  if [ "$1" = -L ]; then l=-L; shift; else l=; fi
  t=$(stat $l -c %.9Y -- "$1" 2>/dev/null)
  case $t in ''|*[!0-9.]*) t=$(stat $l -c %Y -- "$1" 2>/dev/null) ;; esac
  case $t in ''|*[!0-9.]*) t=- ;; esac
  printf '%s' "$t"
}
"#;

/// `lock_look FILE`: `LOCK none` (no such file), `LOCK unknown` (no
/// /proc/locks), or `LOCK DEV INODE`, the lines of /proc/locks about that
/// file as `PL LINE`, and `HOLDER` with the file's first line, which the
/// holder wrote when it took the lock. Reading takes nothing.
const LOCK_FUNCTION: &str = r#"lock_look() {
  if [ ! -e "$1" ]; then echo "LOCK none"; return 0; fi
  if [ ! -r /proc/locks ] || ! id=$(stat -L -c '%d %i' -- "$1" 2>/dev/null); then
    echo "LOCK unknown"; return 0
  fi
  printf 'LOCK %s\n' "$id"
  awk -v ino="${id#* }" '{ for (i = 1; i <= NF; i++) if ($i ~ (":" ino "$")) { print "PL " $0; next } }' /proc/locks
  printf 'HOLDER %s\n' "$(head -n 1 -- "$1" 2>/dev/null)"
}
"#;

/// `$1` nginx's pid file, `$2` `symlink` or `managed`, `$3` sites-enabled
/// or the upstream file, `$4` bg-switch's lock of the site.
const NGINX_SCRIPT: &str = r#"clock
if w=$(nginx_workers "$1"); then
  printf '%s\n' "$w" | while read -r pid state; do
    [ -n "$pid" ] || continue
    s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    printf 'W %s %s\n' "$state" "$s"
  done
else
  echo NO-MASTER
fi
lock_look "$4"
case $2 in
  managed) printf 'FILE %s %s\n' "$(mtime "$3")" "$(mtime -L "$3")" ;;
  symlink)
    printf 'DIR %s\n' "$(mtime -L "$3")"
    echo ENTRIES
    for f in "$3"/*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      printf '%s\0%s\0%s\0' "${f##*/}" "$(mtime "$f")" "$(mtime -L "$f")"
    done ;;
esac
"#;

/// `$1`, `$2` the blue and green ports as /proc writes them, `$3`, `$4`
/// their pid files (empty: none), `$5`, `$6` their locks. For each: the
/// listeners search's output, each line after `| `; the pid file's pid;
/// the stat lines of that pid and of the listeners; the lock.
const APPS_SCRIPT: &str = r#"clock
for c in 1 2; do
  if [ "$c" = 1 ]; then port=$1 pidfile=$3 lock=$5; else port=$2 pidfile=$4 lock=$6; fi
  echo "COLOR $c"
  out=$(find_listeners "$port"); rc=$?
  echo "FIND $rc"
  printf '%s\n' "$out" | sed 's/^/| /'
  pid=
  if [ -n "$pidfile" ]; then pid=$(head -n 1 -- "$pidfile" 2>/dev/null); fi
  case $pid in ''|*[!0-9]*) pid= ;; esac
  echo "PIDFILE ${pid:--}"
  for p in $pid $(printf '%s\n' "$out" | sed -n '/^BG-OWNERS$/,$p' | awk 'NR > 1 { print $1 }'); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) && printf 'S %s\n' "$s"
  done
  lock_look "$lock"
done
"#;

/// The nginx host's command.
pub fn nginx_cmd(pid_file: &str, managed_file: Option<&str>, enabled: &str, lock: &str) -> Cmd {
    let script = format!(
        "# look at nginx's workers and the site's files\n{}{CLOCK_FUNCTION}{MTIME_FUNCTION}{LOCK_FUNCTION}{NGINX_SCRIPT}",
        bg_core::reload::WORKERS_FUNCTION
    );
    let (kind, path) = match managed_file {
        Some(file) => ("managed", file),
        None => ("symlink", enabled),
    };
    Cmd::script(&script, &[pid_file, kind, path, lock]).privileged(true)
}

/// The app host's command, for `[blue, green]`.
pub fn apps_cmd(ports: [u16; 2], pid_files: [&str; 2], locks: [&str; 2]) -> Cmd {
    let script = format!(
        "# look at the apps\n{}{CLOCK_FUNCTION}{LOCK_FUNCTION}{APPS_SCRIPT}",
        bg_core::listeners::find_function()
    );
    let [blue, green] = ports.map(bg_core::listeners::proc_port);
    Cmd::script(
        &script,
        &[
            &blue,
            &green,
            pid_files[0],
            pid_files[1],
            locks[0],
            locks[1],
        ],
    )
    .privileged(true)
}

/// A host's clocks at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// Seconds since the epoch.
    pub now: f64,
    /// Seconds since boot.
    pub uptime: f64,
    /// Clock ticks per second.
    pub ticks: f64,
    /// The wall clock has a fraction of a second (`date +%N`).
    pub precise: bool,
}

impl Clock {
    /// `CLOCK NOW UPTIME TICKS`.
    pub fn parse(line: &str) -> Option<Clock> {
        let mut words = line.strip_prefix("CLOCK ")?.split_whitespace();
        let now_word = words.next()?;
        let now: f64 = now_word.parse().ok()?;
        let uptime: f64 = words.next()?.parse().ok()?;
        let ticks: f64 = words.next()?.parse().ok().filter(|t: &f64| *t > 0.0)?;
        Some(Clock {
            now,
            uptime,
            ticks,
            precise: now_word.contains('.'),
        })
    }

    /// How long ago a process started, from its start in ticks since boot.
    pub fn age(&self, start_ticks: u64) -> f64 {
        (self.uptime - start_ticks as f64 / self.ticks).max(0.0)
    }

    /// When it started, in seconds since the epoch.
    pub fn started(&self, start_ticks: u64) -> f64 {
        self.now - self.age(start_ticks)
    }
}

/// A process, from its `/proc/PID/stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// `R`, `S`, `Z`...
    pub state: char,
    /// Field 22: when it started, in clock ticks since boot.
    pub start_ticks: u64,
}

impl Stat {
    /// `PID (COMM) STATE PPID ...`; the command name may hold spaces and
    /// parentheses, so the fields are counted from its last `)`.
    pub fn parse(line: &str) -> Option<Stat> {
        let pid = line.split_whitespace().next()?.parse().ok()?;
        let (_, rest) = line.rsplit_once(") ")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Stat {
            pid,
            state: fields.first()?.chars().next()?,
            start_ticks: fields.get(19)?.parse().ok()?,
        })
    }

    /// Running, not a zombie.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// A lock file, as seen without taking it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LockSeen {
    /// No such file: never taken here.
    #[default]
    Absent,
    /// The file is there and nobody holds it.
    Free,
    /// Someone holds it; the text it wrote, and how many wait.
    Held { holder: String, waiting: usize },
    /// No /proc/locks to look in.
    Unknown,
}

impl LockSeen {
    pub fn holder(&self) -> Option<&str> {
        match self {
            LockSeen::Held { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

/// Linux's `dev_t` as stat's `%d` prints it, split as /proc/locks writes
/// it: `MAJOR:MINOR` in hex.
fn dev_text(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major:02x}:{minor:02x}")
}

/// Reads `LOCK`, `PL` and `HOLDER` lines of [`LOCK_FUNCTION`].
pub fn parse_lock(lines: &[&str]) -> LockSeen {
    let Some(head) = lines.iter().find_map(|l| l.strip_prefix("LOCK ")) else {
        return LockSeen::Unknown;
    };
    let (dev, inode) = match head.trim() {
        "none" => return LockSeen::Absent,
        "unknown" => return LockSeen::Unknown,
        id => match id.split_once(' ') {
            Some((dev, inode)) => match (dev.parse::<u64>(), inode.parse::<u64>()) {
                (Ok(dev), Ok(inode)) => (dev_text(dev), inode),
                _ => return LockSeen::Unknown,
            },
            None => return LockSeen::Unknown,
        },
    };
    let want = format!("{dev}:{inode}");
    let (mut held, mut waiting) = (false, 0);
    for line in lines.iter().filter_map(|l| l.strip_prefix("PL ")) {
        // `1: FLOCK  ADVISORY  WRITE 5754 fe:00:5505548 0 EOF`, and
        // `1: -> FLOCK ...` for a run waiting for it.
        if !line.split_whitespace().any(|f| f == want) {
            continue;
        }
        if line.contains(" -> ") {
            waiting += 1;
        } else {
            held = true;
        }
    }
    if !held {
        return LockSeen::Free;
    }
    let holder = lines
        .iter()
        .find_map(|l| l.strip_prefix("HOLDER "))
        .or_else(|| lines.iter().find(|l| **l == "HOLDER").map(|_| ""))
        .unwrap_or("")
        .trim();
    LockSeen::Held {
        holder: if holder.is_empty() {
            "a run that has not said who it is".to_string()
        } else {
            holder.to_string()
        },
        waiting,
    }
}

/// What the nginx host's command found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NginxSeen {
    pub clock: Option<Clock>,
    /// Whether a master was found through the pid file.
    pub master: bool,
    /// The start of the newest worker not shutting down, seconds since the
    /// epoch: the master starts new workers when it loads a configuration.
    /// (Right after a reload the old workers may not say "shutting down" for
    /// a moment yet: the newest is a new one all the same.)
    pub loaded_at: Option<f64>,
    pub lock: LockSeen,
    /// Managed layout: the upstream file's (lstat, stat) times.
    pub file: Option<(Option<f64>, Option<f64>)>,
    /// Symlink layout: sites-enabled's own time.
    pub dir: Option<f64>,
    /// Symlink layout: each entry's name and (lstat, stat) times.
    pub entries: Vec<(String, Option<f64>, Option<f64>)>,
}

fn time(word: &str) -> Option<f64> {
    word.parse().ok()
}

/// Reads [`NGINX_SCRIPT`]'s output.
pub fn parse_nginx(out: &[u8]) -> NginxSeen {
    let (head, entries) = match find(out, b"ENTRIES\n") {
        Some(at) => (&out[..at], &out[at + b"ENTRIES\n".len()..]),
        None => (out, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let lines: Vec<&str> = head.lines().collect();
    let clock = lines.iter().find_map(|l| Clock::parse(l));
    let mut seen = NginxSeen {
        clock,
        master: clock.is_some() && !lines.contains(&"NO-MASTER"),
        lock: parse_lock(&lines),
        ..NginxSeen::default()
    };
    let mut newest: Option<u64> = None;
    for line in &lines {
        if let Some(rest) = line.strip_prefix("W ") {
            let Some((state, stat)) = rest.split_once(' ') else {
                continue;
            };
            if state != "live" {
                continue;
            }
            if let Some(stat) = Stat::parse(stat) {
                newest = Some(newest.map_or(stat.start_ticks, |n| n.max(stat.start_ticks)));
            }
        } else if let Some(rest) = line.strip_prefix("FILE ") {
            let mut words = rest.split_whitespace();
            seen.file = Some((words.next().and_then(time), words.next().and_then(time)));
        } else if let Some(rest) = line.strip_prefix("DIR ") {
            seen.dir = time(rest.trim());
        }
    }
    if let (Some(clock), Some(ticks)) = (seen.clock, newest) {
        seen.loaded_at = Some(clock.started(ticks));
    }
    let text = String::from_utf8_lossy(entries);
    let fields: Vec<&str> = text.split('\0').collect();
    for record in fields.chunks_exact(3) {
        seen.entries
            .push((record[0].to_string(), time(record[1]), time(record[2])));
    }
    seen
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if haystack.starts_with(needle) {
        return Some(0);
    }
    let mut with_newline = vec![b'\n'];
    with_newline.extend_from_slice(needle);
    haystack
        .windows(with_newline.len())
        .position(|w| w == with_newline.as_slice())
        .map(|at| at + 1)
}

/// What the app host's command found about one color.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSeen {
    /// The listeners search's output, for `listeners::parse_found`; `None`
    /// where it could not run (no /proc: `listeners::find` knows other ways).
    pub find: Option<String>,
    pub pid_file: Option<u32>,
    pub stats: Vec<Stat>,
    pub lock: LockSeen,
}

impl AppSeen {
    pub fn stat(&self, pid: u32) -> Option<&Stat> {
        self.stats.iter().find(|s| s.pid == pid)
    }
}

/// Reads [`APPS_SCRIPT`]'s output: the clock, and blue's and green's.
pub fn parse_apps(out: &str) -> (Option<Clock>, [AppSeen; 2]) {
    let mut clock = None;
    let mut colors: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
    let mut current: Option<usize> = None;
    for line in out.lines() {
        if let Some(c) = Clock::parse(line) {
            clock = clock.or(Some(c));
        } else if let Some(n) = line.strip_prefix("COLOR ") {
            current = match n.trim() {
                "1" => Some(0),
                "2" => Some(1),
                _ => None,
            };
        } else if let Some(i) = current {
            colors[i].push(line);
        }
    }
    (clock, colors.map(|lines| parse_app(&lines)))
}

fn parse_app(lines: &[&str]) -> AppSeen {
    let ran = lines
        .iter()
        .find_map(|l| l.strip_prefix("FIND "))
        .is_some_and(|rc| rc.trim() == "0");
    let find: String = lines
        .iter()
        .filter_map(|l| l.strip_prefix("| ").or_else(|| (*l == "|").then_some("")))
        .map(|l| format!("{l}\n"))
        .collect();
    AppSeen {
        find: ran.then_some(find),
        pid_file: lines
            .iter()
            .find_map(|l| l.strip_prefix("PIDFILE "))
            .and_then(|p| p.trim().parse().ok()),
        stats: lines
            .iter()
            .filter_map(|l| l.strip_prefix("S "))
            .filter_map(Stat::parse)
            .collect(),
        lock: parse_lock(lines),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAVA: &str = "4242 (java) S 1 4242 4242 0 -1 4194560 27866 0 0 0 523 41 0 0 20 0 35 0 123456 3809058816 52000 18446744073709551615 1 1 0 0 0 0 0 4096 16796879 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_lines() {
        let stat = Stat::parse(JAVA).unwrap();
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                state: 'S',
                start_ticks: 123456
            }
        );
        assert!(stat.alive());
        // A name with spaces and a parenthesis does not shift the fields.
        let odd = JAVA.replace("(java)", "(my ) app)").replace(" S ", " Z ");
        let odd = Stat::parse(&odd).unwrap();
        assert_eq!(odd.start_ticks, 123456);
        assert!(!odd.alive());
        assert_eq!(Stat::parse("4242 (java) S 1"), None);
    }

    #[test]
    fn clocks() {
        let clock = Clock::parse("CLOCK 1800000000.250000000 1000.50 100").unwrap();
        assert!(clock.precise);
        // Started 10.5 s after boot: 990 s ago.
        assert_eq!(clock.age(1050), 990.0);
        assert_eq!(clock.started(1050), 1800000000.25 - 990.0);
        let coarse = Clock::parse("CLOCK 1800000000 5.00 100").unwrap();
        assert!(!coarse.precise);
        assert_eq!(coarse.age(10_000), 0.0, "never negative");
        for bad in [
            "CLOCK - 1 100",
            "CLOCK 1 - 100",
            "CLOCK 1 1 0",
            "clock 1 1 1",
        ] {
            assert_eq!(Clock::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn devices_as_proc_locks_writes_them() {
        assert_eq!(dev_text(65024), "fe:00");
        assert_eq!(dev_text(2049), "08:01");
        // A minor number above 255 (device-mapper, NVMe partitions).
        assert_eq!(
            dev_text((259 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)),
            "103:12c"
        );
    }

    #[test]
    fn locks_are_read_from_proc_locks() {
        let held = [
            "LOCK 65024 5505548",
            "PL 1: FLOCK  ADVISORY  WRITE 5754 fe:00:5505548 0 EOF",
            "PL 2: -> FLOCK  ADVISORY  WRITE 6000 fe:00:5505548 0 EOF",
            "HOLDER bg-switch (pid 4711 on agent, actor jenkins-7, since 2026-11-25T12:00:00Z)",
        ];
        assert_eq!(
            parse_lock(&held),
            LockSeen::Held {
                holder:
                    "bg-switch (pid 4711 on agent, actor jenkins-7, since 2026-11-25T12:00:00Z)"
                        .into(),
                waiting: 1
            }
        );
        // Another file's lock with an inode that ends the same, or on
        // another device, is not this one.
        let other = [
            "LOCK 65024 5505548",
            "PL 1: FLOCK  ADVISORY  WRITE 5754 fe:00:15505548 0 EOF",
            "PL 2: FLOCK  ADVISORY  WRITE 5754 08:01:5505548 0 EOF",
            "HOLDER bg-ship (old text)",
        ];
        assert_eq!(parse_lock(&other), LockSeen::Free);
        assert_eq!(parse_lock(&["LOCK none"]), LockSeen::Absent);
        assert_eq!(parse_lock(&["LOCK unknown"]), LockSeen::Unknown);
        assert_eq!(parse_lock(&[]), LockSeen::Unknown);
        let silent = [
            "LOCK 65024 1",
            "PL 1: FLOCK ADVISORY WRITE 1 fe:00:1 0 EOF",
            "HOLDER ",
        ];
        assert!(matches!(parse_lock(&silent), LockSeen::Held { .. }));
    }

    #[test]
    fn the_nginx_host_answer() {
        let worker = |pid: u32, start: u64| {
            format!("{pid} (nginx) S 100 100 100 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0")
        };
        let out = format!(
            "CLOCK 2000.0 1000.0 100\nW old {}\nW live {}\nW live {}\nLOCK none\nDIR 1500.5\nENTRIES\ndev_8001\0{}\0{}\0odd\nname\0-\0-\0",
            worker(1, 90_000),
            worker(2, 50_000),
            worker(3, 60_000),
            "1600.25",
            "1400"
        );
        let seen = parse_nginx(out.as_bytes());
        assert!(seen.master);
        // The newest live worker: 600 s after boot, 400 s ago; the newer
        // one shutting down does not count.
        assert_eq!(seen.loaded_at, Some(1600.0));
        assert_eq!(seen.dir, Some(1500.5));
        assert_eq!(seen.lock, LockSeen::Absent);
        assert_eq!(
            seen.entries,
            vec![
                ("dev_8001".to_string(), Some(1600.25), Some(1400.0)),
                ("odd\nname".to_string(), None, None)
            ]
        );
        let none = parse_nginx(b"CLOCK 2000.0 1000.0 100\nNO-MASTER\nLOCK none\nFILE 1 2\n");
        assert!(!none.master);
        assert_eq!(none.loaded_at, None);
        assert_eq!(none.file, Some((Some(1.0), Some(2.0))));
    }

    #[test]
    fn the_app_host_answer() {
        let out = format!(
            "welcome to the host\nCLOCK 2000.5 1000.0 100\nCOLOR 1\nFIND 0\n| tables\n| BG-OWNERS\n| 4242 77 java\nPIDFILE 4242\nS {JAVA}\nLOCK none\nCOLOR 2\nFIND 100\n|\nPIDFILE -\nLOCK unknown\n"
        );
        let (clock, [blue, green]) = parse_apps(&out);
        assert_eq!(clock.unwrap().now, 2000.5);
        assert_eq!(
            blue.find.as_deref(),
            Some("tables\nBG-OWNERS\n4242 77 java\n")
        );
        assert_eq!(blue.pid_file, Some(4242));
        assert_eq!(blue.stat(4242).unwrap().start_ticks, 123456);
        assert_eq!(blue.lock, LockSeen::Absent);
        assert_eq!(green.find, None, "no /proc: found another way");
        assert_eq!(green.pid_file, None);
        assert_eq!(green.lock, LockSeen::Unknown);
    }
}
