//! Every duration flag of every binary is bounded when it is parsed: a value
//! past 24h is exit 2 naming the flag, before anything runs (an unbounded
//! one made deadlines overflow the clock, a panic after bg-switch had
//! changed the files). `--connect-timeout 0` is bad input too, not an
//! unreachable host. Names and paths that reach a host are bounded too.

use bg_deploy_tests::{Bin, commands};

#[test]
fn every_duration_flag_refuses_what_would_overflow() {
    let mut checked = 0;
    for command in commands() {
        let name = command.get_name().to_string();
        for arg in command.get_arguments() {
            let takes_duration = arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|n| n == "DURATION"));
            let Some(long) = arg.get_long().filter(|_| takes_duration) else {
                continue;
            };
            for huge in ["18446744073709551615", "25h", "100000d"] {
                let run = Bin::new(&name).arg(format!("--{long}")).arg(huge).run();
                run.code(2);
                let line = run.error_line();
                assert!(line.contains(&format!("--{long}")), "{name}: {line}");
                assert!(line.contains("24h"), "{name}: {line}");
            }
            checked += 1;
        }
    }
    // bg-switch alone has six (lock, verify, settle, reload...).
    assert!(checked >= 15, "only {checked} duration flags found");
}

#[test]
fn a_connect_timeout_of_zero_is_bad_input() {
    for name in ["bg-detect-port", "bg-stop-port", "bg-switch"] {
        let run = Bin::new(name)
            .args(["--host", "127.0.0.1", "--connect-timeout", "0"])
            .run();
        run.code(2);
        assert!(run.error_line().contains("--connect-timeout"), "{name}");
    }
}

/// Names and paths that reach the host are bounded too: a value of 100,000
/// characters is exit 2 naming the flag, in one short line, before anything
/// touches a host (it used to take a lock attempt, or hang on a pipe).
#[test]
fn over_long_names_and_paths_are_bad_input() {
    let path = format!("/tmp/{}", "a".repeat(100_000));
    let name = "s".repeat(300);
    for (binary, flag, value) in [
        ("bg-stop-port", "--lock-dir", &path),
        ("bg-ship", "--deploy-path", &path),
        ("bg-switch", "--site", &name),
        ("bg-switch", "--history-file", &path),
        ("bg-detect-port", "--sites-enabled", &path),
        ("bg-healthcheck", "--log-file", &path),
    ] {
        let run = Bin::new(binary).args([flag, value.as_str()]).run();
        run.code(2);
        let line = run.error_line();
        assert!(line.contains(flag), "{binary}: {line}");
        assert!(line.len() < 400, "{binary}: a line of {} bytes", line.len());
    }
}
