//! bg-core's Host, run every way: on the local machine; over a real sshd,
//! through libssh2 and through the system's `ssh`; and over that sshd with
//! every command through one channel (`MuxHost`), as the binaries run them.
//! Each scenario is written once and run as `NAME::local`, `NAME::ssh`,
//! `NAME::openssh`, `NAME::mux` and `NAME::openssh_mux`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bg_core::host::{Host, Input, LocalHost};
use bg_core::{Cmd, Code, Failure, HostError};
use bg_deploy_tests::Sshd;
use sha2::Digest;

macro_rules! both_ways {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn local() {
                let dir = tempfile::tempdir().unwrap();
                ($body)(&LocalHost::new(false) as &dyn Host, dir.path());
            }

            #[test]
            fn ssh() {
                let sshd = Sshd::start();
                let host = sshd.connect();
                let dir = tempfile::tempdir().unwrap();
                ($body)(&host as &dyn Host, dir.path());
            }

            /// Over SSH, every command through the run's one channel.
            #[test]
            fn mux() {
                let sshd = Sshd::start();
                let host = bg_core::host::MuxHost::new(Box::new(sshd.connect()));
                let dir = tempfile::tempdir().unwrap();
                ($body)(&host as &dyn Host, dir.path());
            }

            #[test]
            fn openssh() {
                let sshd = Sshd::start();
                let host = sshd.connect_openssh();
                let dir = tempfile::tempdir().unwrap();
                ($body)(&host as &dyn Host, dir.path());
            }

            /// The system's `ssh`, every command through one channel.
            #[test]
            fn openssh_mux() {
                let sshd = Sshd::start();
                let host = bg_core::host::MuxHost::new(Box::new(sshd.connect_openssh()));
                let dir = tempfile::tempdir().unwrap();
                ($body)(&host as &dyn Host, dir.path());
            }
        }
    };
}

const HOSTILE: &[&str] = &[
    "with space",
    "it's",
    "\"dq\"",
    "$(touch /tmp/bg-host-pwned)",
    "`touch /tmp/bg-host-pwned`",
    "a\nb",
    "semi;colon|pipe&amp",
    "*",
    "héllo ✓ 배포",
    "-n",
    "",
];

both_ways!(exit_codes_and_signals, |host: &dyn Host, _dir: &Path| {
    let ok = host.run(&Cmd::new("true")).unwrap();
    assert!(ok.success());
    assert_eq!(ok.code, Some(0));

    let seven = host.run(&Cmd::script("exit 7", &[])).unwrap();
    assert_eq!(
        (seven.code, seven.signal.as_deref(), seven.success()),
        (Some(7), None, false)
    );

    let killed = host.run(&Cmd::script("kill -KILL $$", &[])).unwrap();
    assert_eq!(killed.signal.as_deref(), Some("KILL"));
    assert!(
        !killed.success(),
        "a command killed by a signal is a failure"
    );
    assert_eq!(killed.status_text(), "was killed by SIGKILL");

    let err = host
        .run_ok(&Cmd::script("echo broken >&2; exit 3", &[]))
        .unwrap_err();
    assert_eq!(err.code(), Code::Failed);
    assert_eq!(err.details().as_deref(), Some("broken"));
});

both_ways!(
    ten_mib_on_stdout_and_stderr_at_once,
    |host: &dyn Host, _dir: &Path| {
        const SIZE: usize = 10 * 1024 * 1024;
        let script = "head -c 10485760 /dev/zero | tr '\\0' e >&2 & head -c 10485760 /dev/zero | tr '\\0' o; wait";
        let output = host.run(&Cmd::script(script, &[])).unwrap();
        assert!(output.success(), "{}", output.status_text());
        assert_eq!(output.stdout.len(), SIZE);
        assert_eq!(output.stderr.len(), SIZE);
        assert!(output.stdout.iter().all(|&b| b == b'o'));
        assert!(output.stderr.iter().all(|&b| b == b'e'));
    }
);

both_ways!(
    hostile_values_arrive_as_they_were,
    |host: &dyn Host, _dir: &Path| {
        let output = host
            .run(
                &Cmd::new("printf")
                    .arg("%s\\0")
                    .args(HOSTILE.iter().copied()),
            )
            .unwrap();
        let seen: Vec<&str> = std::str::from_utf8(&output.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(seen, HOSTILE);
        let output = host
            .run(&Cmd::script("printf '%s|' \"$@\"", HOSTILE))
            .unwrap();
        assert_eq!(
            output.stdout_text(),
            HOSTILE.iter().map(|h| format!("{h}|")).collect::<String>()
        );
        assert!(!Path::new("/tmp/bg-host-pwned").exists());
    }
);

both_ways!(stdin_is_delivered_whole, |host: &dyn Host, _dir: &Path| {
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let output = host.exec(&Cmd::new("cat"), Input::Bytes(&data)).unwrap();
    assert!(output.success());
    assert!(output.stdout == data, "cat returned other bytes");
});

both_ways!(
    files_are_written_atomically_and_read_back,
    |host: &dyn Host, dir: &Path| {
        for name in HOSTILE
            .iter()
            .filter(|n| !n.is_empty() && !n.contains('/') && **n != "*")
        {
            let sub = dir.join(name);
            std::fs::create_dir_all(&sub).unwrap();
            let path = sub.join(format!("{name}.conf"));
            let path = path.to_str().unwrap();
            assert_eq!(
                host.read_file(path, false).unwrap(),
                None,
                "nothing there yet"
            );
            host.write_file_atomic(path, b"first\n", 0o640, false)
                .unwrap();
            host.write_file_atomic(path, b"second $(x)\n", 0o640, false)
                .unwrap();
            assert_eq!(
                host.read_file(path, false).unwrap().unwrap(),
                b"second $(x)\n"
            );
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o640
            );
            let leftovers: Vec<_> = std::fs::read_dir(&sub)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                leftovers.len(),
                1,
                "a temp file was left behind: {leftovers:?}"
            );
        }
        let history = dir.join("new dir/h.jsonl");
        host.append_line(history.to_str().unwrap(), "{\"a\":1}", false)
            .unwrap();
        host.append_line(history.to_str().unwrap(), "it's", false)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&history).unwrap(),
            "{\"a\":1}\nit's\n"
        );
        let missing_dir = dir.join("no/such/dir/file");
        let err = host
            .write_file_atomic(missing_dir.to_str().unwrap(), b"x", 0o644, false)
            .unwrap_err();
        assert_eq!(err.code(), Code::Failed);
        let err = host.read_file(dir.to_str().unwrap(), false).unwrap_err();
        assert!(matches!(err, HostError::NotAFile { .. }), "{err}");
    }
);

/// The temporary file of an atomic write is a dot file, which nginx's
/// `include dir/*;` does not match: seen through a `chmod` that records
/// what it is given (the script runs it on the temporary file).
#[test]
fn an_atomic_write_stages_in_a_dot_file() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("chmod.log");
    let chmod = bin.join("chmod");
    std::fs::write(
        &chmod,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$2\" >> '{}'\nexec /bin/chmod \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chmod, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("sites-enabled");
    std::fs::create_dir(&conf).unwrap();
    let target = conf.join("upstream.conf");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut child = Command::new("sh")
        .args(["-c", bg_core::host::WRITE_SCRIPT, "sh"])
        .args([target.to_str().unwrap(), "644"])
        .env("PATH", path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"x\n").unwrap();
    assert!(child.wait().unwrap().success());
    let staged = std::fs::read_to_string(&log).unwrap_or_default();
    let staged = staged.trim();
    assert!(!staged.is_empty(), "chmod was not called");
    let name = Path::new(staged).file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(".upstream.conf.bg-tmp."), "{staged}");
    assert_eq!(Path::new(staged).parent(), Some(conf.as_path()));
    assert_eq!(std::fs::read(&target).unwrap(), b"x\n");
}

both_ways!(
    uploads_arrive_intact_with_progress,
    |host: &dyn Host, dir: &Path| {
        // Over one channel (`mux`) a small file goes between two frames and
        // a big one over a channel of its own: both, and a command after
        // each, which finds the channel in step.
        for (name, size) in [
            ("small.jar", 3 * 1024 * 1024 + 7u32),
            ("big.jar", 20 * 1024 * 1024 + 12345),
        ] {
            let local = dir.join(name);
            let data: Vec<u8> = (0..size)
                .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
                .collect();
            std::fs::write(&local, &data).unwrap();
            let remote = dir.join(format!("remote $(x) 'q' {name}"));
            let mut seen = Vec::new();
            host.upload(&local, remote.to_str().unwrap(), &mut |sent| {
                seen.push(sent)
            })
            .unwrap();
            assert_eq!(seen.last().copied(), Some(data.len() as u64));
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "progress went backwards"
            );
            let expected = format!("{:x}", sha2::Sha256::digest(&data));
            assert_eq!(
                host.sha256(remote.to_str().unwrap()).unwrap(),
                Some(expected)
            );
        }
        assert_eq!(
            host.sha256(dir.join("absent").to_str().unwrap()).unwrap(),
            None
        );
    }
);

both_ways!(
    locks_exclude_and_name_their_holder,
    |host: &dyn Host, dir: &Path| {
        let path = dir.join("locks/site $(x).lock");
        let path = path.to_str().unwrap();
        let first = host
            .lock(path, Duration::from_secs(5), "first run (it's me)")
            .unwrap();
        let started = Instant::now();
        // Over one channel (`mux`) a lock is confirmed with the command
        // after it, in the same round trip.
        let busy = host
            .lock(path, Duration::from_millis(300), "second run")
            .and_then(|lock| host.run(&Cmd::new("true")).map(|_| lock))
            .unwrap_err();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "did not wait"
        );
        assert_eq!(busy.code(), Code::Busy);
        assert!(busy.to_string().contains("first run (it's me)"), "{busy}");
        drop(first);
        // Over one channel, nothing runs after a lock that failed until
        // the next lock.
        if let Err(e) = host.run(&Cmd::new("true")) {
            assert_eq!(e.code(), Code::Busy, "{e}");
        }
        let again = host
            .lock(path, Duration::from_secs(5), "third run")
            .unwrap();
        assert!(host.run(&Cmd::new("true")).unwrap().success());
        drop(again);
    }
);

/// Run in a child process by `a_killed_holder_leaves_no_lock`: takes the
/// lock named by the environment, says so, and waits to be killed.
#[test]
#[ignore = "a helper process, started by other tests"]
fn lock_holder_process() {
    let Ok(path) = std::env::var("BG_RIG_LOCK_PATH") else {
        return;
    };
    let host: Box<dyn Host> = match std::env::var("BG_RIG_SSH_PORT") {
        Err(_) => Box::new(LocalHost::new(false)),
        Ok(port) if std::env::var_os("BG_RIG_SSH_OPENSSH").is_some() => {
            let target = bg_core::host::Target::parse(&format!(
                "{}@127.0.0.1:{port}",
                bg_deploy_tests::current_user()
            ))
            .unwrap();
            let mut options = bg_core::host::OpensshOptions::new(target);
            options.identity = Some(std::env::var("BG_RIG_SSH_KEY").unwrap().into());
            options.known_hosts = Some(std::env::var("BG_RIG_KNOWN_HOSTS").unwrap().into());
            options.config = Some("/dev/null".into());
            options.control_dir = Some(std::env::var("BG_RIG_SSH_OPENSSH").unwrap().into());
            Box::new(bg_core::host::OpensshHost::connect(&options).unwrap())
        }
        Ok(port) => {
            let target = bg_core::host::Target::parse(&format!(
                "{}@127.0.0.1:{port}",
                bg_deploy_tests::current_user()
            ))
            .unwrap();
            let mut options = bg_core::host::SshOptions::new(target);
            options.identity = Some(std::env::var("BG_RIG_SSH_KEY").unwrap().into());
            options.known_hosts = Some(std::env::var("BG_RIG_KNOWN_HOSTS").unwrap().into());
            Box::new(bg_core::host::SshHost::connect(&options).unwrap())
        }
    };
    let _lock = host
        .lock(&path, Duration::from_secs(5), "the doomed holder")
        .unwrap();
    println!("HOLDING");
    std::thread::sleep(Duration::from_secs(120));
}

fn killed_holder(host: &dyn Host, dir: &Path, sshd: Option<&Sshd>, openssh: bool) {
    let path = dir.join("killed.lock");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "lock_holder_process",
        "--nocapture",
        "--include-ignored",
    ])
    .env("BG_RIG_LOCK_PATH", &path)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(sshd) = sshd {
        cmd.env("BG_RIG_SSH_PORT", sshd.port.to_string())
            .env("BG_RIG_SSH_KEY", &sshd.client_key)
            .env("BG_RIG_KNOWN_HOSTS", &sshd.known_hosts);
        if openssh {
            cmd.env("BG_RIG_SSH_OPENSSH", sshd.control_dir());
        }
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let holding = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("HOLDING"));
    assert!(holding, "the helper never took the lock");
    let path = path.to_str().unwrap();
    let busy = host
        .lock(path, Duration::from_millis(200), "waiter")
        .unwrap_err();
    assert!(busy.to_string().contains("the doomed holder"), "{busy}");
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    host.lock(path, Duration::from_secs(10), "next run")
        .expect("the killed holder's lock was left behind");
}

#[test]
fn a_killed_holder_leaves_no_lock_local() {
    let dir = tempfile::tempdir().unwrap();
    killed_holder(&LocalHost::new(false), dir.path(), None, false);
}

#[test]
fn a_killed_holder_leaves_no_lock_ssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    killed_holder(&sshd.connect(), dir.path(), Some(&sshd), false);
}

/// The killed holder's `ssh` outlives it, but the pipe it held closes with
/// it, and the master passes that end of file on.
#[test]
fn a_killed_holder_leaves_no_lock_openssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    killed_holder(&sshd.connect_openssh(), dir.path(), Some(&sshd), true);
}

#[test]
fn a_command_past_its_timeout_fails() {
    let sshd = Sshd::start();
    let ssh = sshd.connect();
    let openssh = sshd.connect_openssh();
    for host in [&LocalHost::new(false) as &dyn Host, &ssh, &openssh] {
        let err = host
            .run(
                &Cmd::new("sleep")
                    .arg("30")
                    .timeout(Duration::from_millis(300)),
            )
            .unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
        assert_eq!(err.code(), Code::Failed);
    }
}

/// The shells of a watch of `pid`: their command line has the script's
/// title and `pid` as an argument of its own (`sh -c SCRIPT sh PID 0.1`, or
/// that whole line as one argument of the login shell over SSH).
fn watchers_of(pid: u32) -> Vec<u32> {
    let arg = pid.to_string();
    let tail = format!(" {pid} 0.1");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(raw) = std::fs::read(format!("/proc/{p}/cmdline")) else {
                return false;
            };
            let text = String::from_utf8_lossy(&raw);
            text.contains("# watch a process")
                && text.split('\0').any(|a| a == arg || a.ends_with(&tail))
        })
        .collect()
}

/// Waits up to five seconds for the watch of `pid` to be gone.
fn no_watchers_of(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if watchers_of(pid).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

both_ways!(
    a_watch_sees_a_process_end_even_unreaped,
    |host: &dyn Host, _dir: &Path| {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut watch = bg_core::proc::watch(host, child.id()).unwrap();
        assert!(!watch.gone(Duration::from_millis(300)).unwrap());
        assert!(!watch.gone(Duration::ZERO).unwrap());
        child.kill().unwrap();
        // Not reaped yet: a zombie, which is no live process.
        let killed = Instant::now();
        assert!(watch.gone(Duration::from_secs(10)).unwrap());
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "{:?}",
            killed.elapsed()
        );
        child.wait().unwrap();
    }
);

both_ways!(
    a_dropped_watch_leaves_nothing_running,
    |host: &dyn Host, _dir: &Path| {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut watch = bg_core::proc::watch(host, child.id()).unwrap();
        assert!(!watch.gone(Duration::from_millis(200)).unwrap());
        let pid = child.id();
        assert!(!watchers_of(pid).is_empty(), "the watch is not running");
        drop(watch);
        assert!(no_watchers_of(pid), "left running: {:?}", watchers_of(pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
);

/// The parent's pid, from /proc/PID/stat.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ")
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A shell killed where its cleanup cannot run (a Ctrl-C, which the
/// background loop ignores, or SIGKILL) must not leave the loop polling.
#[test]
fn a_watch_whose_shell_dies_stops_looking() {
    let host = LocalHost::new(false);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let watch = bg_core::proc::watch(&host, pid).unwrap();
    let me = std::process::id();
    let shells: Vec<u32> = watchers_of(pid)
        .into_iter()
        .filter(|p| parent_of(*p) == Some(me))
        .collect();
    assert_eq!(shells.len(), 1, "{:?}", watchers_of(pid));
    // SAFETY: kill(2) on the shell this test started.
    unsafe { libc::kill(shells[0] as i32, libc::SIGKILL) };
    assert!(no_watchers_of(pid), "left looking: {:?}", watchers_of(pid));
    drop(watch);
    child.kill().unwrap();
    child.wait().unwrap();
}

both_ways!(
    files_read_ahead_answer_as_read_file_does,
    |host: &dyn Host, dir: &Path| {
        let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
        std::fs::write(dir.join("plain"), "server 127.0.0.1:8000;\n").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        std::fs::write(dir.join("it's $(x)\nnl"), b"\x00binary\nF 3\n").unwrap();
        std::fs::create_dir(dir.join("a dir")).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).unwrap();
        std::os::unix::fs::symlink(dir.join("plain"), dir.join("link")).unwrap();
        let paths: Vec<String> = [
            "plain",
            "empty",
            "it's $(x)\nnl",
            "a dir",
            "dangling",
            "link",
            "absent",
        ]
        .iter()
        .map(|n| p(n))
        .collect();
        let ahead = bg_core::host::Prefetched::new(host, &paths, false);
        for path in &paths {
            let direct = host.read_file(path, false).map_err(|e| e.to_string());
            let read = ahead.read_file(path, false).map_err(|e| e.to_string());
            assert_eq!(read, direct, "{path:?}");
        }
        assert!(!Path::new("/tmp/bg-host-pwned").exists());
    }
);

both_ways!(
    waiting_for_a_free_port_sees_it_freed,
    |host: &dyn Host, _dir: &Path| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = Instant::now();
        assert!(!bg_core::listeners::wait_free(host, port, Duration::from_millis(300)).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(300));
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(listener);
        });
        let waiting = Instant::now();
        assert!(bg_core::listeners::wait_free(host, port, Duration::from_secs(20)).unwrap());
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "{:?}",
            waiting.elapsed()
        );
        closer.join().unwrap();
        // Free already: at once.
        assert!(bg_core::listeners::wait_free(host, port, Duration::ZERO).unwrap());
    }
);
