//! A deploy agent is often 50 ms from its hosts, and every SSH channel costs
//! round trips and a start of the login shell there. The whole deploy
//! (detect, stop, ship, health check, switch) over a real sshd must open at
//! most 7 channels: one per binary, and the upload's. sshd's own log
//! counts them, not our binaries.

#[path = "nginx_site/mod.rs"]
mod nginx_site;

use bg_deploy_tests::{Bin, Sshd, app_jar};
use nginx_site::{Site, Via};

/// JVM options that start the stand-in quickly and leave nothing in /tmp.
const FAST: &str = bg_deploy_tests::JAVA_OPTS;

/// Kills the shipped app when the test ends, whatever happened.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid the test's deploy started.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// Kills a helper process when the test ends, whatever happened.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The session channels sshd has opened so far.
fn channels(sshd: &Sshd) -> usize {
    sshd.settled_log()
        .lines()
        .filter(|l| l.contains("server_input_channel_open: ctype session"))
        .count()
}

fn env_value(stdout: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn a_whole_deploy_opens_at_most_seven_channels() {
    // The host's temporary files go to a directory of the test's own.
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_with(&format!(
        "LogLevel DEBUG1\nSetEnv TMPDIR={}\n",
        tmp.path().display()
    ));
    let host = sshd.host_args();
    {
        use bg_core::host::Host;
        let said = sshd
            .connect()
            .run(&bg_core::Cmd::script("printf %s \"$TMPDIR\"", &[]))
            .unwrap();
        assert_eq!(said.stdout_text(), tmp.path().to_str().unwrap());
    }
    let mut site = Site::new("dev", Via::Ssh(sshd));
    site.enable(site.blue);
    site.start(&[]);
    site.assert_serves("blue");
    let sshd = match &site.via {
        Via::Ssh(sshd) => sshd,
        _ => unreachable!(),
    };
    let mut stages: Vec<(&str, usize)> = Vec::new();
    let mut before = channels(sshd);
    let mut counted = |stage: &'static str| {
        let now = channels(sshd);
        stages.push((stage, now - before));
        before = now;
    };

    let detect = site.detect(&["--format", "env"]);
    detect.code(0);
    let target: u16 = env_value(&detect.stdout, "BG_TARGET_PORT").parse().unwrap();
    assert_eq!(target, site.green);
    counted("bg-detect-port");

    let locks = site.work.path().join("locks");
    let lock_dir = locks.to_str().unwrap();
    Bin::new("bg-stop-port")
        .args(&host)
        .args(["--port", &target.to_string()])
        .args(["--protect-port", &site.blue.to_string()])
        .args(["--lock-dir", lock_dir])
        .run()
        .code(0);
    counted("bg-stop-port");

    let deploy = site.work.path().join("deploy");
    let ship = Bin::new("bg-ship")
        .args(&host)
        .args(["--artifact", app_jar().to_str().unwrap()])
        .args(["--deploy-path", deploy.to_str().unwrap()])
        .args(["--port", &target.to_string()])
        .args(["--java-opts", &format!("{FAST} -Dapp.version=green-2")])
        .args(["--lock-dir", lock_dir, "--format", "env"])
        .run();
    ship.code(0);
    let pid: u32 = env_value(&ship.stdout, "BG_PID").parse().unwrap();
    let _app = Reap(pid);
    counted("bg-ship");

    Bin::new("bg-healthcheck")
        .args(&host)
        .args([
            "--url",
            &format!("http://127.0.0.1:{target}/actuator/health"),
            "--watch-pid",
            &pid.to_string(),
            "--timeout",
            "60s",
            "--interval",
            "100ms",
        ])
        .run()
        .code(0);
    counted("bg-healthcheck");

    site.switch(target, &[]).code(0);
    counted("bg-switch");

    // Old workers answer with the previous config for a moment.
    site.assert_serves("green-2");
    let total: usize = stages.iter().map(|(_, n)| n).sum();
    eprintln!("channels per stage: {stages:?}, {total} in all");
    assert!(
        total <= 7,
        "a deploy opened {total} SSH channels ({stages:?}); at most 7"
    );
    for (stage, n) in &stages {
        let most = if *stage == "bg-ship" { 2 } else { 1 };
        assert!(*n <= most, "{stage} opened {n} channels ({stages:?})");
    }

    // bg-status after it: both colors, nginx's workers, the locks and the
    // records, all read through one channel.
    let before = channels(sshd);
    Bin::new("bg-status")
        .args(site.layout_args())
        .args(["--deploy-path", deploy.to_str().unwrap()])
        .args(["--lock-dir", lock_dir])
        .args([
            "--nginx-pid-file",
            site.nginx.pid_file().to_str().unwrap(),
            "--check",
        ])
        .run()
        .code(0);
    let status = channels(sshd) - before;
    assert_eq!(status, 1, "bg-status opened {status} channels");

    // A run that fails on the host (nginx rejects the configuration; the
    // switch is undone) and one refused by the lock (exit 5) clean up too.
    let rejected = site.switch(site.blue, &["--test-cmd", "echo 'bad config' >&2; exit 1"]);
    rejected.code(1);
    assert!(
        rejected.error_line().contains("rejected"),
        "{}",
        rejected.stderr
    );
    site.assert_serves("green-2");
    let held = locks.join("bg-port-9.lock");
    std::fs::create_dir_all(&locks).unwrap();
    let holder = std::process::Command::new("flock")
        .arg(&held)
        .args(["sleep", "30"])
        .spawn()
        .unwrap_or_else(bg_deploy_tests::cannot_run("flock"));
    let _holder = KillOnDrop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let busy = loop {
        let busy = Bin::new("bg-stop-port")
            .args(&host)
            .args([
                "--port",
                "9",
                "--lock-dir",
                lock_dir,
                "--lock-timeout",
                "100ms",
            ])
            .run();
        if busy.code == 5 || std::time::Instant::now() >= deadline {
            break busy;
        }
    };
    busy.code(5);

    // What the deploy ran on the host left nothing in its temporary
    // directory once it ended (the last drivers end just after the
    // binaries, on the end of their input).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let left = loop {
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(left.is_empty(), "left in the host's TMPDIR: {left:?}");
}
