//! The switch as one command on the nginx host: mark, change, test, reload,
//! wait for new workers, and on any failure put the files back (reloading
//! again when nginx had been told to load them) and record what happened.
//!
//! Run step by step from here, a connection that dropped between two steps
//! left nginx half-switched until the next run; and every step was a round
//! trip, 50 ms each from a distant Jenkins agent. On the host, the script
//! ignores SIGHUP and SIGPIPE and keeps its output in files, so it finishes
//! or rolls back whatever happens to the connection; it inherits the run's
//! lock, so no other run starts before it is done.

use bg_core::host::Output;
use bg_core::reload::{RELOAD_FUNCTION, Reload, WORKERS_FUNCTION};

/// `$1` marker, `$2` its text, `$3` the change, `$4` its undo (both shell
/// lines), `$5` test command, `$6` reload command (empty: systemctl where
/// systemd runs, else `nginx -s reload`), `$7` nginx's pid file, `$8`
/// seconds to wait for new workers, `$9` history file, `${10}` its line up
/// to the result, `${11}` `record` to record a success too (no verify
/// follows), `${12}` the directory whose temporary files of dead runs to
/// remove first, `${13}` a shell line that checks the target answers (empty:
/// no check; status 1: nothing answers, and nothing is changed), `${14}`
/// `finish` when the files already say what we want (an interrupted run's):
/// then every undo is followed by a reload. Prints `BG-TX STEP STATUS` lines, each followed by the
/// step's stdout and stderr in hex.
const TRANSACTION_SCRIPT: &str = r#"trap '' HUP PIPE
marker=$1 note=$2 apply=$3 undo=$4 test=$5 reload=$6 pidfile=$7 secs=$8
history=$9 line=${10} record=${11} clean=${12} check=${13} mode=${14}
t=$(mktemp -d "${TMPDIR:-/tmp}/bg-switch.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
run() {
  name=$1; shift
  "$@" >"$t/o" 2>"$t/e"; rc=$?
  printf 'BG-TX %s %s\nBG-TX-OUT %s\nBG-TX-ERR %s\n' "$name" "$rc" "$(hex "$t/o")" "$(hex "$t/e")"
  return "$rc"
}
json() { LC_ALL=C tr -c ' -~' ' ' | sed 's/\\/\\\\/g; s/"/\\"/g'; }
ended() {
  if [ -n "$history" ]; then
    if [ -n "$2" ]; then
      entry="$line$1\",\"reason\":\"$(printf '%s' "$2" | head -c 1000 | json)\"}"
    else
      entry="$line$1\"}"
    fi
    dir=$(dirname -- "$history") && mkdir -p -- "$dir" && printf '%s\n' "$entry" >> "$history"
    echo "BG-TX recorded $?"
  fi
  [ "$1" = "rollback failed" ] || rm -f -- "$marker"
  exit 0
}
put_back() {
  if run undo sh -c "$undo"; then result="rolled back"; else result="rollback failed"; fi
  # Finishing an interrupted run, nobody knows what nginx has loaded:
  # reload after any undo, and keep the marker when that fails.
  if [ -n "$2" ] || [ "$mode" = finish ]; then
    run again sh -c "$reload" 7>&- 8>&- 9>&- || { [ "$mode" = finish ] && result="rollback failed"; }
  fi
  ended "$result" "$1"
}
last_line() { cat "$t/e" "$t/o" | grep -v '^[[:space:]]*$' | tail -n 1; }
# What a killed run left (`.bg-switch.PID`, `.NAME.bg-tmp.PID`): we hold
# the lock, so a file whose process is gone is nobody's any more.
gone() {
  if [ -d /proc/self ]; then [ ! -d "/proc/$1" ]; else ! kill -0 "$1" 2>/dev/null; fi
}
if [ -n "$clean" ] && [ -d "$clean" ]; then
  for f in "$clean"/.bg-switch.* "$clean"/.*.bg-tmp.* "$marker".bg-tmp.*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    pid=${f##*.}
    case $pid in ''|*[!0-9]*) continue ;; esac
    if gone "$pid" && rm -f -- "$f"; then printf 'BG-TX removed %s\n' "$f" >&2; fi
  done
fi
if [ -z "$reload" ]; then
  if [ -d /run/systemd/system ]; then reload="systemctl reload nginx"; else reload="nginx -s reload"; fi
fi
printf '%s' "$reload" > "$t/r"
echo "BG-TX reload-cmd $(hex "$t/r")"
if [ -n "$check" ]; then
  run check sh -c "$check"
  # Nothing answers at the target: nothing is changed, nothing recorded.
  [ "$rc" = 1 ] && exit 0
fi
if printf '%s\n' "$note" > "$marker.bg-tmp.$$" && mv -f -- "$marker.bg-tmp.$$" "$marker"; then
  echo "BG-TX marker 0"
else
  rm -f -- "$marker.bg-tmp.$$"; echo "BG-TX marker 1"
fi
run apply sh -c "$apply" || put_back "changing the files failed: $(last_line)"
run test sh -c "$test" 7>&- 8>&- 9>&- || put_back "nginx rejected the configuration: $(last_line)"
run reload reload_wait "$reload" "$pidfile" "$secs" 7>&- 8>&- 9>&- || put_back "reloading nginx failed: $(last_line)" again
case $(grep '^BG-RELOAD' "$t/o" | tail -n 1) in
  "BG-RELOAD not-yet"*) put_back "nginx did not take the configuration (no new worker processes)" again ;;
esac
[ -z "$record" ] || ended done ""
exit 0
"#;

/// `HOST PORT`...: status 0 when each answers a TCP connect (from the nginx
/// host: nginx must reach them), 1 when one does not (named on stderr), 3
/// when this host has no tool to tell (bash's /dev/tcp, or nc).
pub const CHECK_SCRIPT: &str = r#"# check that the target answers
if command -v bash >/dev/null 2>&1; then tool=bash
elif command -v nc >/dev/null 2>&1; then tool=nc
else echo "neither bash nor nc is on this host to check the target with" >&2; exit 3
fi
to=; if command -v timeout >/dev/null 2>&1; then to="timeout 5"; fi
dead=
while [ $# -ge 2 ]; do
  a=$1 p=$2; shift 2
  h=${a#[}; h=${h%]}
  if [ "$tool" = bash ]; then
    $to bash -c 'exec 3<>"/dev/tcp/$1/$2"' sh "$h" "$p" 2>/dev/null
  else
    $to nc -z "$h" "$p" 2>/dev/null
  fi || dead="$dead $a:$p"
done
[ -z "$dead" ] && exit 0
echo "nothing answers at$dead" >&2
exit 1
"#;

/// The whole script: the reload wait's functions, then the transaction.
pub fn script() -> String {
    format!("# switch nginx in one go\n{WORKERS_FUNCTION}{RELOAD_FUNCTION}{TRANSACTION_SCRIPT}")
}

/// What one step printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub output: Output,
}

/// What the transaction reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The reload command it ran (ours, or the one it picked).
    pub reload_cmd: Option<String>,
    /// Whether the marker was written.
    pub marker_written: Option<bool>,
    pub steps: Vec<Step>,
    /// Whether the history line went in, when it wrote one.
    pub recorded: Option<bool>,
}

impl Outcome {
    pub fn step(&self, name: &str) -> Option<&Output> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| &s.output)
    }

    /// What the reload wait found, when the reload command succeeded.
    pub fn reload(&self) -> Option<Reload> {
        let reload = self.step("reload")?;
        reload
            .success()
            .then(|| bg_core::reload::found(&reload.stdout_text()))
    }
}

/// Reads the script's stdout; lines it did not print (a chatty login shell)
/// are skipped.
pub fn parse(stdout: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in stdout.lines() {
        if let Some(hex) = line.strip_prefix("BG-TX-OUT ") {
            if let Some(step) = outcome.steps.last_mut() {
                step.output.stdout = unhex(hex);
            }
        } else if let Some(hex) = line.strip_prefix("BG-TX-ERR ") {
            if let Some(step) = outcome.steps.last_mut() {
                step.output.stderr = unhex(hex);
            }
        } else if let Some(rest) = line.strip_prefix("BG-TX ") {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            match name {
                "reload-cmd" => {
                    outcome.reload_cmd = Some(String::from_utf8_lossy(&unhex(value)).into_owned())
                }
                "marker" => outcome.marker_written = Some(value == "0"),
                "recorded" => outcome.recorded = Some(value == "0"),
                _ => {
                    let status: i32 = value.trim().parse().unwrap_or(-1);
                    let mut output = Output::default();
                    if (129..=192).contains(&status) {
                        output.signal = Some(format!("{}", status - 128));
                    } else {
                        output.code = Some(status);
                    }
                    outcome.steps.push(Step {
                        name: name.to_string(),
                        output,
                    });
                }
            }
        }
    }
    outcome
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_step_with_its_output() {
        let out = "welcome to the host\n\
                   BG-TX reload-cmd 6e67696e78\n\
                   BG-TX marker 0\n\
                   BG-TX apply 0\nBG-TX-OUT \nBG-TX-ERR \n\
                   BG-TX test 1\nBG-TX-OUT 6f6b0a\nBG-TX-ERR 6261640a\n\
                   BG-TX undo 0\nBG-TX-OUT \nBG-TX-ERR \n\
                   BG-TX recorded 0\n";
        let outcome = parse(out);
        assert_eq!(outcome.reload_cmd.as_deref(), Some("nginx"));
        assert_eq!(outcome.marker_written, Some(true));
        assert_eq!(outcome.recorded, Some(true));
        let test = outcome.step("test").unwrap();
        assert_eq!(
            (test.code, test.stdout_text(), test.stderr_text()),
            (Some(1), "ok\n".into(), "bad\n".into())
        );
        assert!(outcome.step("undo").unwrap().success());
        assert!(outcome.step("reload").is_none());
        assert_eq!(outcome.reload(), None);
    }

    #[test]
    fn a_reload_that_took_is_done() {
        let out = "BG-TX reload 0\nBG-TX-OUT 42472d52454c4f414420646f6e650a\nBG-TX-ERR \n";
        assert_eq!(parse(out).reload(), Some(Reload::Done));
    }
}
