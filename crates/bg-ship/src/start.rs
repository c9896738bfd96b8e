//! Starting the app: the command line, the environment, and the one fixed
//! script that runs it detached from our session.
//!
//! Nothing the user gives is pasted into a shell line. The java command is an
//! argv list (`--java-opts` split the way a shell would, quotes respected,
//! nothing expanded); `--start-cmd` is the user's own shell text, but every
//! value put into its `{placeholders}` is quoted first.

use bg_core::quote;

/// Detaches the app from our SSH session (or local process group) and
/// returns at once with its pid on stdout.
///
/// `$1` directory to run in, `$2` log file, `$3` pid file, `$4` the record
/// of the start (`DIR/app-PORT.json`, or empty for none), `$5` and `$6` its
/// JSON text before and after the pid (known only here), `$7` the text of
/// `DIR/app-PORT.start`, a script that starts the same again (written with
/// the record; see [`again_script`]), `$8` count N of `KEY=VALUE` words that
/// follow, then the app's argv. `setsid` gives the app
/// its own session (no SIGHUP when ours ends; Jenkins' process-tree killer
/// follows BUILD_ID / JENKINS_NODE_COOKIE, which are dropped); `nohup` is the
/// fallback where util-linux is missing. All three standard streams are
/// redirected, so the SSH channel closes as soon as this script exits.
pub const START_SCRIPT: &str = r#"# start the app, detached
dir=$1 log=$2 pidfile=$3 record=$4 head=$5 tail=$6 again=$7 n=$8
shift 8
unset BUILD_ID JENKINS_NODE_COOKIE JENKINS_SERVER_COOKIE
# Our own settings are not the app's, and BG_SSH_PASSPHRASE is a secret.
for v in $(env | sed -n 's/^\(BG_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
while [ "$n" -gt 0 ]; do export "$1" || exit 2; shift; n=$((n - 1)); done
cd -- "$dir" || exit 1
printf '=== %s bg-ship: starting the app\n' "$(date '+%Y-%m-%d %H:%M:%S %z')" >> "$log" || exit 1
# The app must not keep this run's locks (fds 7 to 9 of the host's driver).
if command -v setsid >/dev/null 2>&1; then
  setsid nohup "$@" </dev/null >>"$log" 2>&1 7>&- 8>&- 9>&- &
else
  nohup "$@" </dev/null >>"$log" 2>&1 7>&- 8>&- 9>&- &
fi
pid=$!
printf '%s\n' "$pid" > "$pidfile" || exit 1
# What was started, for bg-status: written beside and renamed into place, so
# that a reader sees the previous record or this one, never half of one. A
# failure here is a warning: the app runs.
if [ -n "$record" ]; then
  tmp="${record%/*}/.${record##*/}.bg-tmp.$$"
  if ! { printf '%s%s%s\n' "$head" "$pid" "$tail" > "$tmp" && mv -f -- "$tmp" "$record"; }; then
    rm -f -- "$tmp"
    printf 'cannot write %s\n' "$record" >&2
  fi
  # The same start again, for a boot-time unit (docs/GUIDE.md, "Day two").
  start="${record%.json}.start"
  tmp="${start%/*}/.${start##*/}.bg-tmp.$$"
  # The owner's only: it holds the --env values.
  if [ -n "$again" ] && ! { (umask 077 && printf '%s' "$again" > "$tmp") && chmod 700 "$tmp" && mv -f -- "$tmp" "$start"; }; then
    rm -f -- "$tmp"
    printf 'cannot write %s\n' "$start" >&2
  fi
fi
printf '%s\n' "$pid"
"#;

/// `KEY=VALUE` for `--env`: KEY a shell variable name, VALUE anything.
pub fn parse_env(value: &str) -> Result<(String, String), String> {
    let Some((key, val)) = value.split_once('=') else {
        return Err(format!("{value:?} is not KEY=VALUE"));
    };
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{key:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((key.to_string(), val.to_string()))
}

/// `--java-opts` as words; `None` when its quotes are unbalanced.
pub fn split_java_opts(opts: Option<&str>) -> Option<Vec<String>> {
    match opts {
        None => Some(Vec::new()),
        Some(text) => quote::split(text),
    }
}

/// What the app is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub port: u16,
    pub artifact: String,
    pub profile: Option<String>,
    pub java_opts: Vec<String>,
    pub deploy_path: String,
}

impl Launch {
    /// `java <java-opts> -Dserver.port=PORT [-Dspring.profiles.active=PROFILE] -jar ARTIFACT`.
    pub fn java_argv(&self, java: &str) -> Vec<String> {
        let mut argv = vec![java.to_string()];
        argv.extend(self.java_opts.iter().cloned());
        argv.push(format!("-Dserver.port={}", self.port));
        if let Some(profile) = &self.profile {
            argv.push(format!("-Dspring.profiles.active={profile}"));
        }
        argv.push("-jar".to_string());
        argv.push(self.artifact.clone());
        argv
    }

    /// Fills a `--start-cmd` template. Each placeholder becomes one quoted
    /// shell word (`{java_opts}` one quoted word per option); `{{` and `}}`
    /// are literal braces. An unknown placeholder is an error.
    pub fn fill(&self, template: &str) -> Result<String, String> {
        let quoted = |value: &str| quote::quote(value).map_err(|e| e.to_string());
        let mut out = String::new();
        let mut rest = template;
        while let Some(at) = rest.find(['{', '}']) {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{") {
                out.push('{');
                rest = after;
                continue;
            }
            if let Some(after) = tail.strip_prefix("}}") {
                out.push('}');
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err("a lone `}` (write `}}` for a literal brace)".to_string());
            }
            let Some(end) = tail.find('}') else {
                return Err("a `{` without its `}` (write `{{` for a literal brace)".to_string());
            };
            let name = &tail[1..end];
            let value = match name {
                "port" => self.port.to_string(),
                "artifact" => quoted(&self.artifact)?,
                "profile" => quoted(self.profile.as_deref().unwrap_or(""))?,
                "deploy_path" => quoted(&self.deploy_path)?,
                "java_opts" => quote::join(&self.java_opts).map_err(|e| e.to_string())?,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} (known: {{port}} {{artifact}} {{profile}} {{java_opts}} {{deploy_path}})"
                    ));
                }
            };
            out.push_str(&value);
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// What bg-ship writes to `DIR/app-PORT.json` when it starts the app, for
/// bg-status: one JSON object, the pid filled in on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `DIR/app-PORT.json`.
    pub path: String,
    /// The JSON text before the pid.
    pub head: String,
    /// The JSON text after the pid.
    pub tail: String,
}

impl Record {
    /// `{"port":PORT,"pid":PID,...rest}`: `rest`, a JSON object, follows the pid.
    pub fn new(path: String, port: u16, rest: &serde_json::Value) -> Record {
        let rest = rest.to_string();
        let tail = match rest.strip_prefix('{') {
            Some("}") | None => "}".to_string(),
            Some(fields) => format!(",{fields}"),
        };
        Record {
            path,
            head: format!("{{\"port\":{port},\"pid\":"),
            tail,
        }
    }
}

/// `DIR/app-PORT.start`: a shell script that runs [`START_SCRIPT`] again
/// with the same directory, log, pid file, environment and argv (and no
/// record): the app as bg-ship last started it, detached, its pid in the
/// pid file. A systemd unit of `Type=forking` runs it at boot.
pub fn again_script(
    dir: &str,
    log: &str,
    pid_file: &str,
    env: &[(String, String)],
    argv: &[String],
) -> Option<String> {
    let mut words = vec![
        "sh".to_string(),
        "-c".to_string(),
        START_SCRIPT.to_string(),
        "sh".to_string(),
        dir.to_string(),
        log.to_string(),
        pid_file.to_string(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        env.len().to_string(),
    ];
    words.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    words.extend(argv.iter().cloned());
    let line = quote::join(&words).ok()?;
    Some(format!(
        "#!/bin/sh\n# Written by bg-ship: starts the app on this port again as it last did,\n# detached, and prints its pid (also in {pid}).\nexec {line}\n",
        pid = pid_file.replace('\n', " ")
    ))
}

/// The script's arguments: the fixed ones, the record (if any), `N`, the
/// env words, the argv.
pub fn start_args(
    dir: &str,
    log: &str,
    pid_file: &str,
    record: Option<&Record>,
    env: &[(String, String)],
    argv: &[String],
) -> Vec<String> {
    let (path, head, tail) = match record {
        Some(r) => (r.path.as_str(), r.head.as_str(), r.tail.as_str()),
        None => ("", "", ""),
    };
    let again = match record {
        // A text that cannot be quoted (a NUL) leaves no script: the start
        // itself does not depend on it.
        Some(_) => again_script(dir, log, pid_file, env, argv).unwrap_or_default(),
        None => String::new(),
    };
    let mut args = vec![
        dir.to_string(),
        log.to_string(),
        pid_file.to_string(),
        path.to_string(),
        head.to_string(),
        tail.to_string(),
        again,
        env.len().to_string(),
    ];
    args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    args.extend(argv.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            port: 8001,
            artifact: "/srv/app/my app-1.0.jar".into(),
            profile: Some("dev".into()),
            java_opts: vec!["-Xmx1g".into(), "-Dname=a b".into()],
            deploy_path: "/srv/app".into(),
        }
    }

    #[test]
    fn env_pairs() {
        assert_eq!(
            parse_env("SPRING_DATASOURCE_URL=jdbc:x=y").unwrap(),
            ("SPRING_DATASOURCE_URL".into(), "jdbc:x=y".into())
        );
        assert_eq!(parse_env("_X=").unwrap(), ("_X".into(), "".into()));
        assert_eq!(
            parse_env("A=$(id) 'q'\nz").unwrap().1,
            "$(id) 'q'\nz".to_string()
        );
        for bad in ["NOVALUE", "=x", "1A=x", "A-B=x", "A B=x", "$(id)=x"] {
            assert!(parse_env(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn java_opts_split_like_a_shell() {
        assert_eq!(
            split_java_opts(Some(r#"-Xms4096m -Dname="a b" -Dx='$(id)'"#)).unwrap(),
            vec!["-Xms4096m", "-Dname=a b", "-Dx=$(id)"]
        );
        assert_eq!(split_java_opts(None).unwrap(), Vec::<String>::new());
        assert_eq!(split_java_opts(Some("-Dx='open")), None);
    }

    #[test]
    fn java_command_line() {
        assert_eq!(
            launch().java_argv("java"),
            vec![
                "java",
                "-Xmx1g",
                "-Dname=a b",
                "-Dserver.port=8001",
                "-Dspring.profiles.active=dev",
                "-jar",
                "/srv/app/my app-1.0.jar"
            ]
        );
        let plain = Launch {
            profile: None,
            java_opts: vec![],
            ..launch()
        };
        assert_eq!(
            plain.java_argv("/opt/jdk/bin/java"),
            vec![
                "/opt/jdk/bin/java",
                "-Dserver.port=8001",
                "-jar",
                "/srv/app/my app-1.0.jar"
            ]
        );
    }

    #[test]
    fn templates_quote_every_value() {
        assert_eq!(
            launch()
                .fill("exec java {java_opts} -Dserver.port={port} -jar {artifact} --spring.profiles.active={profile}")
                .unwrap(),
            "exec java -Xmx1g '-Dname=a b' -Dserver.port=8001 -jar '/srv/app/my app-1.0.jar' --spring.profiles.active=dev"
        );
        assert_eq!(
            launch().fill("cd {deploy_path} && echo {{x}}").unwrap(),
            "cd /srv/app && echo {x}"
        );
        let hostile = Launch {
            artifact: "/a/$(touch pwned)'\n.jar".into(),
            ..launch()
        };
        let line = hostile.fill("ls {artifact}").unwrap();
        assert_eq!(
            bg_core::quote::split(&line).unwrap(),
            vec!["ls", "/a/$(touch pwned)'\n.jar"]
        );
        for bad in ["{nope}", "{port", "port}", "{}"] {
            assert!(launch().fill(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn start_arguments_count_the_env_words() {
        let args = start_args(
            "/d",
            "/d/app.log",
            "/d/app-1.pid",
            None,
            &[("A".into(), "1".into())],
            &["java".into(), "-jar".into()],
        );
        assert_eq!(
            args,
            vec![
                "/d",
                "/d/app.log",
                "/d/app-1.pid",
                "",
                "",
                "",
                "",
                "1",
                "A=1",
                "java",
                "-jar"
            ]
        );
    }

    #[test]
    fn the_record_is_one_json_object_once_the_pid_is_in() {
        let record = Record::new(
            "/d/app-8001.json".into(),
            8001,
            &serde_json::json!({
                "artifact": "app-1.4.0.jar",
                "path": "/d/app-1.4.0.jar",
                "sha256": "ab12",
                "version": "1.4.0 \"q\" $(x)\n",
                "started": "2026-11-25T12:07:31Z",
                "actor": "jenkins-deploy-42",
            }),
        );
        let text = format!("{}4242{}", record.head, record.tail);
        assert!(!text.contains('\n'), "one line: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "port", "pid", "artifact", "path", "sha256", "version", "started", "actor"
            ]
        );
        assert_eq!(value["pid"], 4242);
        assert_eq!(value["port"], 8001);
        assert_eq!(value["version"], "1.4.0 \"q\" $(x)\n");
        let bare = Record::new(String::new(), 1, &serde_json::json!({}));
        assert_eq!(
            format!("{}7{}", bare.head, bare.tail),
            r#"{"port":1,"pid":7}"#
        );
    }
}
