//! bg-switch through the real binary against a real nginx and two stand-in
//! apps, locally and over the rig's sshd: after every run, what nginx serves,
//! which files are enabled, and the history agree with the exit code.

mod nginx_site;
mod tls;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bg_deploy_tests::{Bin, free_port, http_get};
use nginx_site::{Site, Via};

/// A site with both apps running and blue enabled.
fn running(name: &str, via: Via, green_props: &[(&str, &str)]) -> Site {
    let mut site = Site::new(name, via);
    site.enable(site.blue);
    site.start(green_props);
    site.assert_serves("blue");
    site
}

both_ways!(switches_back_and_forth_through_real_nginx, |via: Via| {
    let site = running("dev", via, &[]);
    let (blue, green) = (site.blue, site.green);

    let run = site.switch(green, &["--format", "env"]);
    assert_eq!(
        run.code(0).stdout,
        format!("BG_PREVIOUS_PORT={blue}\nBG_ACTIVE_PORT={green}\nBG_CHANGED=true\n")
    );
    site.assert_serves("green");
    assert_eq!(site.enabled_port(), green);
    // Done: the "switch in progress" marker is gone with the history line.
    let markers: Vec<String> = std::fs::read_dir(site.work.path().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pending"))
        .collect();
    assert!(markers.is_empty(), "{markers:?}");
    assert_eq!(site.history_lines().len(), 1);
    // The enabled link carries the name of the file it points to.
    assert_eq!(site.enabled(), [format!("dev_{blue}")]);
    assert_eq!(site.detect(&[]).code(0).stdout, format!("{blue}\n"));
    assert_eq!(site.reload_count(), 1);

    // Again: nothing touched, no reload.
    let link = site.nginx.sites_enabled().join(format!("dev_{blue}"));
    let before = std::fs::symlink_metadata(&link)
        .unwrap()
        .modified()
        .unwrap();
    let again = site.switch(green, &[]);
    assert!(
        again.code(0).stdout.contains("already active"),
        "{}",
        again.stdout
    );
    assert_eq!(
        site.reload_count(),
        1,
        "an idempotent switch reloaded nginx"
    );
    assert_eq!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    // Back to blue, verified through nginx.
    let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
    let back = site.switch(blue, &["--verify-url", &url, "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&back.code(0).stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"previous_port": green, "active_port": blue, "changed": true})
    );
    site.assert_serves("blue");
    assert_eq!(site.detect(&[]).code(0).stdout, format!("{green}\n"));
    assert_eq!(site.enabled(), [format!("dev_{green}")]);

    let history = site.history_lines();
    assert_eq!(history.len(), 2, "{history:?}");
    for (line, (from, to)) in history.iter().zip([(blue, green), (green, blue)]) {
        assert_eq!(line["site"], "dev");
        assert_eq!(line["from"], from);
        assert_eq!(line["to"], to);
        assert_eq!(line["actor"], "tester");
        assert_eq!(line["result"], "done");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
});

both_ways!(the_first_switch_enables_a_file, |via: Via| {
    let mut site = Site::new("dev", via);
    site.start(&[]);
    let run = site.switch(site.green, &["--format", "env"]);
    assert_eq!(
        run.code(0).stdout,
        format!(
            "BG_PREVIOUS_PORT=\nBG_ACTIVE_PORT={}\nBG_CHANGED=true\n",
            site.green
        )
    );
    site.assert_serves("green");
    assert_eq!(site.enabled(), [format!("dev_{}", site.blue)]);
    assert!(site.history_lines()[0]["from"].is_null());
});

both_ways!(a_bogus_directive_is_rejected_and_rolled_back, |via: Via| {
    let site = running("dev", via, &[]);
    // The file that routes to green is named after blue.
    site.write_available(
        site.blue,
        &nginx_site::site_file(
            site.listen,
            site.green,
            site.blue,
            "    bogus_directive on;\r\n",
        ),
    );
    let run = site.switch(site.green, &[]);
    run.code(1);
    assert!(
        run.stderr.contains("unknown directive \"bogus_directive\""),
        "nginx's own message is missing:\n{}",
        run.stderr
    );
    let line = run.error_line();
    assert!(line.contains("nginx rejected the configuration"), "{line}");
    assert!(
        line.contains(&format!("the previous state (port {}) is back", site.blue)),
        "{line}"
    );
    assert_eq!(site.enabled(), [format!("dev_{}", site.green)]);
    assert_eq!(site.enabled_port(), site.blue);
    assert_eq!(site.reload_count(), 0);
    site.assert_serves("blue");
    let history = site.history_lines();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["result"], "rolled back");
    assert!(history[0]["reason"].as_str().unwrap().contains("rejected"));
});

both_ways!(a_failing_reload_is_rolled_back_and_reloaded, |via: Via| {
    let site = running("dev", via, &[]);
    let once = site.work.path().join("failed-once");
    // Fails the first time (after counting), then reloads for real.
    let reload = format!(
        "echo reload >> '{count}'; if [ -e '{once}' ]; then {real}; else touch '{once}'; echo 'reload: boom' >&2; exit 1; fi",
        count = site.reloads().display(),
        once = once.display(),
        real = site.nginx.reload_cmd()
    );
    let run = site.switch(site.green, &["--reload-cmd", &reload]);
    run.code(1);
    assert!(run.stderr.contains("reload: boom"), "{}", run.stderr);
    assert!(
        run.error_line().contains("reloading nginx failed"),
        "{}",
        run.stderr
    );
    assert_eq!(site.reload_count(), 2, "no second reload after the undo");
    assert_eq!(site.enabled_port(), site.blue);
    site.assert_serves("blue");
    assert_eq!(site.history_lines()[0]["result"], "rolled back");
});

both_ways!(a_failing_verify_url_switches_back, |via: Via| {
    // Green starts, but its health answers 503.
    let site = running("dev", via, &[("app.unhealthy", "true")]);
    let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
    let started = Instant::now();
    let run = site.switch(
        site.green,
        &["--verify-url", &url, "--verify-timeout", "2s"],
    );
    run.code(1);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let line = run.error_line();
    assert!(line.contains("did not answer 2xx"), "{line}");
    assert!(line.contains("status 503"), "{line}");
    assert_eq!(site.enabled_port(), site.blue);
    assert_eq!(site.reload_count(), 2, "switched and switched back");
    site.assert_serves("blue");
    assert_eq!(site.history_lines()[0]["result"], "rolled back");
});

both_ways!(a_reload_that_does_not_take_effect_is_undone, |via: Via| {
    let site = running("dev", via, &[]);
    // The reload command says 0 and does nothing, as a master that cannot
    // load the configuration (a port it cannot bind) keeps its old workers.
    // (It prints a word without a newline: that must not hide our answer.)
    let run = site.switch(
        site.green,
        &["--reload-cmd", "printf reloading", "--reload-timeout", "1s"],
    );
    run.code(1);
    let line = run.error_line();
    assert!(line.contains("did not take the configuration"), "{line}");
    assert!(line.contains("no new worker processes"), "{line}");
    assert_eq!(site.enabled_port(), site.blue);
    site.assert_serves("blue");
    assert_eq!(site.history_lines()[0]["result"], "rolled back");
});

both_ways!(
    an_asynchronous_reload_is_waited_for_before_verifying,
    |via: Via| {
        // Green answers its health with 503. The reload command returns at once
        // and nginx reloads 1.5 s later, as after `systemctl reload nginx` on a
        // busy host: until then the old workers serve blue, whose health is 200.
        // Verifying before the new workers run would pass on blue's answers.
        let site = running("dev", via, &[("app.unhealthy", "true")]);
        let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
        let later = format!(
            "(sleep 1.5; {}) >/dev/null 2>&1 </dev/null &",
            site.reload_cmd()
        );
        let run = site.switch(
            site.green,
            &[
                "--reload-cmd",
                &later,
                "--verify-url",
                &url,
                "--verify-timeout",
                "3s",
            ],
        );
        run.code(1);
        let line = run.error_line();
        assert!(line.contains("did not answer 2xx"), "{line}");
        assert!(line.contains("status 503"), "{line}");
        assert_eq!(site.enabled_port(), site.blue);
        // The undo's reload comes 1.5 s late too.
        site.assert_serves("blue");
    }
);

both_ways!(the_managed_layout_rewrites_one_upstream_file, |via: Via| {
    let mut site = Site::new("dev", via);
    let upstream = site.nginx.path("conf.d/dev-upstream.conf");
    site.nginx.enable_backend_site("dev", site.listen);
    let managed = ["--upstream-file", upstream.to_str().unwrap()];
    let no_file = site.switch(site.blue, &managed);
    no_file.code(3);
    assert!(no_file.error_line().contains("pass --init"));
    // nginx runs without the site; --init writes the first upstream file.
    let site_file = std::fs::read_to_string(site.nginx.sites_enabled().join("dev")).unwrap();
    std::fs::remove_file(site.nginx.sites_enabled().join("dev")).unwrap();
    site.start(&[]);
    site.switch(site.blue, &[&managed[..], &["--init"]].concat())
        .code(0);
    std::fs::write(site.nginx.sites_enabled().join("dev"), site_file).unwrap();
    site.nginx.reload();
    site.assert_serves("blue");

    let run = site.switch(site.green, &managed);
    run.code(0);
    site.assert_serves("green");
    assert_eq!(
        std::fs::read_to_string(&upstream).unwrap(),
        format!(
            "# Written by bg-switch: port {g} is active, {b} is the backup.\n# bg-switch rewrites this whole file on every switch.\nupstream backend {{\n    server 127.0.0.1:{g};\n    server 127.0.0.1:{b} backup;\n}}\n",
            g = site.green,
            b = site.blue
        )
    );
    let detect = site.detect(&managed);
    assert_eq!(detect.code(0).stdout, format!("{}\n", site.blue));
    let again = site.switch(site.green, &managed);
    assert!(again.code(0).stdout.contains("already active"));

    // A bad upstream file is put back byte for byte (past the target
    // check, which would refuse a host that does not answer first).
    let good = std::fs::read_to_string(&upstream).unwrap();
    let bad_host = site.switch(
        site.blue,
        &[
            &managed[..],
            &["--app-host", "no-such-host.invalid", "--no-target-check"],
        ]
        .concat(),
    );
    bad_host.code(1);
    assert!(
        bad_host.stderr.contains("no-such-host.invalid"),
        "{}",
        bad_host.stderr
    );
    assert_eq!(std::fs::read_to_string(&upstream).unwrap(), good);
    site.assert_serves("green");
});

#[test]
fn several_app_hosts_are_all_primary() {
    let mut site = Site::new("dev", Via::Local);
    let upstream = site.nginx.path("conf.d/dev-upstream.conf");
    // The seed's file, pointed at our ports; parameters follow the primary.
    std::fs::write(
        &upstream,
        format!(
            "upstream backend {{\r\n    server 127.0.0.1:{b} fail_timeout=60s max_fails=5;\r\n    server 127.0.0.1:{g} backup;\r\n}}\r\n",
            b = site.blue,
            g = site.green
        ),
    )
    .unwrap();
    site.nginx.enable_backend_site("dev", site.listen);
    site.start(&[]);
    site.assert_serves("blue");
    let run = site.switch(
        site.green,
        &[
            "--upstream-file",
            upstream.to_str().unwrap(),
            "--app-host",
            "127.0.0.1",
            "--app-host",
            "localhost",
        ],
    );
    run.code(0);
    let text = std::fs::read_to_string(&upstream).unwrap();
    assert!(
        text.contains(&format!(
            "    server 127.0.0.1:{g} fail_timeout=60s max_fails=5;\n    server localhost:{g};\n    server 127.0.0.1:{b} backup;\n    server localhost:{b} backup;\n",
            g = site.green,
            b = site.blue
        )),
        "{text}"
    );
    site.assert_serves("green");
}

/// Starts a bg-switch to green whose test command sleeps `seconds` inside
/// the site's lock, and returns once it is in there.
fn switch_inside_its_lock(
    site: &Site,
    seconds: u32,
    output: impl Fn() -> Stdio,
) -> std::process::Child {
    let started = site.work.path().join("test-started");
    let slow = format!(
        "touch '{}'; sleep {seconds}; {}",
        started.display(),
        site.nginx.test_cmd()
    );
    let child = site
        .switch_bin(site.green, &["--test-cmd", &slow])
        .command()
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the run never reached its test");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

both_ways!(two_runs_at_once_never_both_change, |via: Via| {
    let site = running("dev", via, &[]);
    // A slow test command keeps the first run inside its lock for a while.
    let mut first = switch_inside_its_lock(&site, 2, Stdio::piped);
    // Short patience: exit 5, naming the holder, nothing changed.
    let busy = site.switch(site.green, &["--lock-timeout", "300ms"]);
    busy.code(5);
    let line = busy.error_line();
    assert!(
        line.contains(&format!("held by bg-switch (pid {}", first.id())),
        "{line}"
    );
    // Enough patience: waits, then finds green active and does nothing.
    let waiter = site.switch(site.green, &["--lock-timeout", "30s"]);
    assert!(
        waiter.code(0).stdout.contains("already active"),
        "{}",
        waiter.stdout
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(
        site.history_lines().len(),
        1,
        "more than one run changed the site"
    );
    assert_eq!(site.reload_count(), 1);
    site.assert_serves("green");
});

#[test]
fn runs_started_together_change_the_site_once() {
    let site = running("dev", Via::Local, &[]);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            site.switch_bin(site.green, &["--format", "env"])
                .command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    let mut changed = 0;
    for output in &outputs {
        assert!(output.status.success(), "{output:?}");
        if String::from_utf8_lossy(&output.stdout).contains("BG_CHANGED=true") {
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "{outputs:?}");
    assert_eq!(site.history_lines().len(), 1);
    assert_eq!(site.reload_count(), 1);
    site.assert_serves("green");
}

#[test]
fn error_lines_are_stable() {
    let lines: Vec<String> = [
        vec!["--port", "9000"],
        vec!["--port", "8000", "--green-port", "8000"],
        vec!["--port", "8000", "--verify-url", "ftp://nginx/"],
        vec![
            "--port",
            "8000",
            "--verify-url",
            "https://nginx/",
            "--cacert",
            "/nonexistent/ca.pem",
        ],
        vec!["--port", "8000", "--app-host", "a b"],
        vec!["--port", "8000", "--site", "../etc"],
        vec!["--port", "0"],
    ]
    .into_iter()
    .map(|args| {
        let run = Bin::new("bg-switch").args(args).run();
        run.code(2);
        run.error_line().to_string()
    })
    .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

both_ways!(a_killed_run_finishes_its_switch_on_the_host, |via: Via| {
    let site = running("dev", via, &[]);
    let mut holder = switch_inside_its_lock(&site, 3, Stdio::null);
    holder.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    holder.wait().unwrap();
    // The run was killed inside its transaction on the host (in the 3 s
    // test command). The transaction goes on without it, holding the lock:
    // the next run waits, then finds the switch done and recorded, and
    // nothing to do. No lock is left behind.
    let begun = Instant::now();
    let next = site.switch(site.green, &["--lock-timeout", "60s"]);
    next.code(0);
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "waited {:?} for a dead holder's lock",
        begun.elapsed()
    );
    assert!(
        next.stdout.contains("was already active"),
        "{}",
        next.stdout
    );
    site.assert_serves("green");
    assert_eq!(site.enabled_port(), site.green);
    let history = site.history_lines();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["result"], "done");
    assert!(
        !site
            .work
            .path()
            .join("locks/bg-switch-dev.lock.pending")
            .exists()
    );
    let again = site.switch(site.blue, &["--lock-timeout", "1s"]);
    again.code(0);
    site.assert_serves("blue");
});

both_ways!(hostile_names_and_paths_reach_no_shell, |via: Via| {
    let name = "dev $(touch pwned) `touch pwned` 'it''s' \"q\" ;|&*";
    let mut site = Site::with_available_dir(name, via, "avail $(touch pwned) 'q' `x`");
    site.enable(site.blue);
    site.start(&[]);
    site.assert_serves("blue");
    let history = site.work.path().join("h $(touch pwned) 'x'/history.jsonl");
    let run = site.switch(site.green, &["--history-file", history.to_str().unwrap()]);
    run.code(0);
    site.assert_serves("green");
    assert_eq!(site.enabled_port(), site.green);
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&history).unwrap().trim()).unwrap();
    assert_eq!(line["site"], name);
    assert!(!site.marker().exists());
    assert!(!std::path::Path::new("pwned").exists());
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(!std::path::Path::new(&home).join("pwned").exists());
    assert!(!site.work.path().join("h $(touch pwned) 'x'/pwned").exists());
});

#[test]
fn dry_run_and_bad_input_change_nothing() {
    let site = running("dev", Via::Local, &[]);
    let dry = site.switch(site.green, &["--dry-run", "--format", "env"]);
    assert_eq!(
        dry.code(0).stdout,
        format!(
            "BG_PREVIOUS_PORT={b}\nBG_ACTIVE_PORT={b}\nBG_CHANGED=false\nBG_DRY_RUN=true\n",
            b = site.blue
        )
    );
    assert!(dry.stderr.contains("would replace"), "{}", dry.stderr);
    let text = site.switch(site.green, &["--dry-run"]);
    assert!(
        text.code(0).stdout.contains("would switch"),
        "{}",
        text.stdout
    );
    assert_eq!(site.enabled_port(), site.blue);
    assert_eq!(site.reload_count(), 0);
    assert!(site.history_lines().is_empty());

    let neither = site.switch(9, &[]);
    neither.code(2);
    assert!(neither.error_line().contains("neither the blue port"));
    let same = Bin::new("bg-switch")
        .args([
            "--port",
            "8000",
            "--blue-port",
            "8000",
            "--green-port",
            "8000",
        ])
        .run();
    same.code(2);
    let url = site.switch(site.green, &["--verify-url", "ftp://x"]);
    url.code(2);
    assert_eq!(site.enabled_port(), site.blue);
    site.assert_serves("blue");
}

#[test]
fn sudo_runs_every_change_to_nginx_through_sudo() {
    let site = running("dev", Via::Local, &[]);
    let bin = nginx_site::fake_sudo(site.work.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = site
        .switch_bin(site.green, &["--sudo"])
        .env("PATH", path)
        .run();
    run.code(0);
    site.assert_serves("green");
    let log = std::fs::read_to_string(site.work.path().join("sudo.log")).unwrap();
    for expected in [
        "# list a directory",
        // The change, the test command, the reload and the history line
        // run inside this one script on the host, under the same sudo.
        "# switch nginx in one go",
    ] {
        assert!(
            log.lines().any(|l| l == expected),
            "{expected:?} not run through sudo:\n{log}"
        );
    }
}

both_ways!(unsafe_layouts_are_exit_3_and_untouched, |via: Via| {
    let site = Site::new("dev", via);
    site.enable(site.blue);
    // Both files route to blue: none routes to green.
    site.write_available(
        site.blue,
        &nginx_site::site_file(site.listen, site.blue, site.green, ""),
    );
    let none = site.switch(site.green, &[]);
    none.code(3);
    assert!(
        none.error_line().contains("no file of site dev in"),
        "{}",
        none.stderr
    );
    // Both enabled.
    site.enable(site.green);
    let both = site.switch(site.green, &[]);
    both.code(3);
    assert!(
        both.error_line()
            .contains("2 files of site dev are enabled")
    );
    assert_eq!(site.enabled().len(), 2);
    // An enabled copy instead of a link.
    for name in site.enabled() {
        std::fs::remove_file(site.nginx.sites_enabled().join(name)).unwrap();
    }
    std::fs::copy(
        site.available(site.green),
        site.nginx
            .sites_enabled()
            .join(format!("dev_{}", site.green)),
    )
    .unwrap();
    let copy = site.switch(site.green, &[]);
    copy.code(3);
    assert!(copy.error_line().contains("is a regular file, not a link"));
    assert_eq!(site.reload_count(), 0);
    assert!(site.history_lines().is_empty());
});

#[test]
fn fifty_switches_under_load_lose_no_request() {
    let site = running("dev", Via::Local, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let listen = site.listen;
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            // Bounded: one request at a time, at most 50,000.
            while !stop.load(Ordering::Relaxed) && ok.load(Ordering::Relaxed) < 50_000 {
                match http_get(listen, "/version") {
                    Some((200, body)) if body == "blue\n" || body == "green\n" => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("{other:?}"));
                    }
                }
            }
            failures
        })
    };
    // Meanwhile, sites-enabled is watched: never zero, never two entries.
    let watcher = {
        let stop = stop.clone();
        let dir = site.nginx.sites_enabled();
        std::thread::spawn(move || {
            let (mut looks, mut wrong) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let names: Vec<String> = std::fs::read_dir(&dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                looks += 1;
                if names.len() != 1 {
                    wrong.push(names);
                }
                // Pacing, so that the watcher leaves CPU to nginx and the switches.
                std::thread::sleep(Duration::from_micros(200));
            }
            (looks, wrong)
        })
    };
    let begun = Instant::now();
    for i in 0..50 {
        let port = if i % 2 == 0 { site.green } else { site.blue };
        site.switch(port, &["-q"]).code(0);
    }
    let switching = begun.elapsed();
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().unwrap();
    let (looks, wrong) = watcher.join().unwrap();
    eprintln!("sites-enabled looked at {looks} times during the switches");
    assert!(wrong.is_empty(), "not exactly one file enabled: {wrong:?}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("50 switches in {switching:?}: {ok} requests answered, {failed} failed {failures:?}");
    assert_eq!(failed, 0, "requests lost during switches: {failures:?}");
    assert!(ok > 100, "the load was too light to mean anything: {ok}");
    assert_eq!(site.reload_count(), 50);
    assert_eq!(site.history_lines().len(), 50);
    site.assert_serves("blue");
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-switch").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}

/// The state a run leaves when it dies after changing the files and before
/// nginx loaded them: the files say green, nginx still serves blue, and the
/// marker says the switch came from blue.
fn interrupted_on_the_way_to_green(site: &Site) {
    let enabled = site.nginx.sites_enabled();
    for entry in std::fs::read_dir(&enabled).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    site.enable(site.green);
    let locks = site.work.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(
        locks.join("bg-switch-dev.lock.pending"),
        format!(r#"{{"from":{},"to":{},"time":"x"}}"#, site.blue, site.green),
    )
    .unwrap();
    site.assert_serves("blue");
}

both_ways!(
    finishing_an_interrupted_switch_verifies_and_rolls_back,
    |via: Via| {
        // Green answers 503: finishing the switch must not end "done" while
        // nginx serves errors; it goes back to where the run came from.
        let site = running("dev", via, &[("app.unhealthy", "true")]);
        interrupted_on_the_way_to_green(&site);
        let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
        let run = site.switch(
            site.green,
            &["--verify-url", &url, "--verify-timeout", "2s"],
        );
        run.code(1);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        assert!(
            run.error_line().contains("did not answer 2xx"),
            "{}",
            run.stderr
        );
        site.assert_serves("blue");
        assert_eq!(site.enabled_port(), site.blue);
        let history = site.history_lines();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0]["result"], "rolled back");
        assert_eq!(history[0]["from"], site.blue);
    }
);

both_ways!(finishing_an_interrupted_switch_is_recorded, |via: Via| {
    let site = running("dev", via, &[]);
    interrupted_on_the_way_to_green(&site);
    // The files say green, nginx serves blue: detect does not guess.
    let locks = site.work.path().join("locks");
    let locks = ["--lock-dir", locks.to_str().unwrap()];
    let detect = site.detect(&locks);
    detect.code(3);
    assert!(
        detect.error_line().contains("did not finish")
            && detect
                .error_line()
                .contains(&format!("bg-switch --port {}", site.green)),
        "{}",
        detect.stderr
    );
    let url = format!("http://127.0.0.1:{}/version", site.listen);
    let run = site.switch(site.green, &["--verify-url", &url]);
    run.code(0);
    assert_eq!(
        site.detect(&locks).code(0).stdout,
        format!("{}\n", site.blue)
    );
    assert!(
        run.stdout.contains("already set in the files"),
        "{}",
        run.stdout
    );
    site.assert_serves("green");
    let history = site.history_lines();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["result"], "done");
    assert!(
        !site
            .work
            .path()
            .join("locks/bg-switch-dev.lock.pending")
            .exists()
    );
});

both_ways!(temporary_files_of_killed_runs_are_removed, |via: Via| {
    let site = running("dev", via, &[]);
    let enabled = site.nginx.sites_enabled();
    // A pid that is gone, and one that lives (this test's own).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let alive = std::process::id();
    let stale = [
        enabled.join(format!(".bg-switch.{dead}")),
        enabled.join(format!(".dev_{}.bg-tmp.{dead}", site.blue)),
    ];
    for file in &stale {
        std::os::unix::fs::symlink("/nonexistent", file).unwrap();
    }
    let live = enabled.join(format!(".bg-switch.{alive}"));
    std::os::unix::fs::symlink("/nonexistent", &live).unwrap();
    let run = site.switch(site.green, &[]);
    run.code(0);
    site.assert_serves("green");
    for file in &stale {
        assert!(
            std::fs::symlink_metadata(file).is_err(),
            "{} is still there",
            file.display()
        );
    }
    assert!(
        std::fs::symlink_metadata(&live).is_ok(),
        "a live run's file went"
    );
    assert!(
        run.stderr.contains("left by a run that was killed"),
        "{}",
        run.stderr
    );
});

both_ways!(a_switch_to_a_dead_port_changes_nothing, |via: Via| {
    let mut site = running("dev", via, &[]);
    // The green app is gone: nothing listens on its port.
    let green = site.apps.pop().unwrap();
    drop(green);
    let run = site.switch(site.green, &[]);
    run.code(3);
    assert!(
        run.error_line()
            .contains(&format!("nothing answers at port {}", site.green)),
        "{}",
        run.stderr
    );
    assert!(
        run.error_line().contains("--no-target-check"),
        "{}",
        run.stderr
    );
    site.assert_serves("blue");
    assert_eq!(site.enabled_port(), site.blue);
    assert_eq!(site.reload_count(), 0);
    // Asked for, it goes ahead (nginx then answers from the backup).
    site.switch(site.green, &["--no-target-check"]).code(0);
    assert_eq!(site.enabled_port(), site.green);
});

both_ways!(a_refused_switch_leaves_another_runs_marker, |via: Via| {
    let mut site = running("dev", via, &[]);
    // An earlier run's undo failed: its marker says the files are in doubt.
    let marker = site.work.path().join("locks/bg-switch-dev.lock.pending");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    let note = format!(r#"{{"from":{},"to":{},"time":"x"}}"#, site.green, site.blue);
    std::fs::write(&marker, &note).unwrap();
    drop(site.apps.pop());
    site.switch(site.green, &[]).code(3);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), note);
});

/// --verify-url over https, through nginx, with the test CA's certificate:
/// not trusted without --cacert (switched back), verified with it.
#[test]
fn verifies_an_https_url_through_nginx_with_cacert() {
    let mut site = Site::new("dev", Via::Local);
    site.enable(site.blue);
    let pki = tls::Pki::new(&site.nginx.path("tls"));
    let https = free_port();
    std::fs::write(
        site.nginx.path("conf.d/https.conf"),
        pki.server_block(
            https,
            "  location / {\n    proxy_pass http://backend;\n  }\n",
        ),
    )
    .unwrap();
    site.start(&[]);
    site.assert_serves("blue");
    let url = format!("https://127.0.0.1:{https}/actuator/health");

    let run = site.switch(
        site.green,
        &["--verify-url", &url, "--verify-timeout", "1s"],
    );
    run.code(1);
    let line = run.error_line();
    assert!(line.contains("(last: certificate not trusted: "), "{line}");
    assert!(
        line.contains(&format!("the previous state (port {}) is back", site.blue)),
        "{line}"
    );
    assert!(
        line.contains("nginx's certificate was not accepted"),
        "{line}"
    );
    site.assert_serves("blue");

    let ca = pki.ca.to_str().unwrap();
    site.switch(site.green, &["--verify-url", &url, "--cacert", ca])
        .code(0);
    site.assert_serves("green");
    let history = site.history_lines();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["result"], "rolled back");
    assert_eq!(history[1]["result"], "done");
    // The https side serves green too, as the probe sees it.
    let version = format!("https://127.0.0.1:{https}/version");
    Bin::new("bg-healthcheck")
        .args([
            "--url",
            &version,
            "--expect-body",
            "^green",
            "--timeout",
            "5s",
        ])
        .env("BG_CACERT", ca)
        .run()
        .code(0);
}

both_ways!(previous_goes_back_only_to_a_healthy_app, |via: Via| {
    let mut site = running("dev", via, &[]);
    let (blue, green) = (site.blue, site.green);
    let url = "http://127.0.0.1:{port}/actuator/health";
    // A deploy of 2.0 to green, then back to blue with --previous.
    site.switch(green, &["--app-version", "2.0"]).code(0);
    site.assert_serves("green");
    let run = site.previous(&["--url", url, "--format", "env"]);
    assert_eq!(
        run.code(0).stdout,
        format!("BG_PREVIOUS_PORT={green}\nBG_ACTIVE_PORT={blue}\nBG_CHANGED=true\n")
    );
    site.assert_serves("blue");
    let history = site.history_lines();
    assert_eq!(history[0]["kind"], "deploy", "{history:?}");
    assert_eq!(history[0]["to_version"], "2.0", "{history:?}");
    assert_eq!(history[1]["kind"], "rollback", "{history:?}");
    assert_eq!(history[1]["from_version"], "2.0", "{history:?}");

    // Without --url it does not guess: exit 2, nothing read or changed.
    let run = site.previous(&[]);
    run.code(2);
    assert!(run.error_line().contains("--url"), "{}", run.stderr);

    // The other color answers, but not healthy: exit 3, nothing changed,
    // and the refusal is in the history.
    let body = "--expect-body=\"status\": *\"DOWN\"";
    let run = site.previous(&["--url", url, body]);
    run.code(3);
    assert!(
        run.error_line()
            .contains(&format!("port {green} (green) is not healthy")),
        "{}",
        run.stderr
    );
    assert!(
        run.error_line().contains("nothing was changed"),
        "{}",
        run.stderr
    );
    assert_eq!(site.enabled_port(), blue);
    site.assert_serves("blue");
    let history = site.history_lines();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[2]["result"], "refused", "{history:?}");
    assert_eq!(history[2]["kind"], "rollback", "{history:?}");

    // Gone altogether: exit 3 too, and a dry run says so before anything.
    drop(site.apps.pop());
    let run = site.previous(&["--url", url, "--dry-run"]);
    run.code(3);
    let run = site.previous(&["--url", url]);
    run.code(3);
    assert!(run.error_line().contains("not healthy"), "{}", run.stderr);
    assert_eq!(site.enabled_port(), blue);
    assert_eq!(site.reload_count(), 2, "a refused rollback reloaded nginx");
});

#[test]
fn previous_with_nothing_active_is_exit_3() {
    let mut site = Site::new("dev", Via::Local);
    site.start(&[]);
    let run = site.previous(&["--url", "http://127.0.0.1:{port}/actuator/health"]);
    run.code(3);
    assert!(
        run.error_line().contains("nothing is active"),
        "{}",
        run.stderr
    );
    assert!(site.enabled().is_empty());
}

both_ways!(a_verify_answered_by_the_backup_is_undone, |via: Via| {
    let mut site = running("dev", via, &[]);
    let (blue, green) = (site.blue, site.green);
    // The site says which server answered, as docs/nginx-layouts.md shows.
    let header = "    add_header X-Upstream $upstream_addr always;\r\n";
    site.write_available(
        blue,
        &nginx_site::site_file(site.listen, green, blue, header),
    );
    site.write_available(
        green,
        &nginx_site::site_file(site.listen, blue, green, header),
    );
    site.nginx.reload();
    let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
    // Alive: verified, and it was green that answered.
    site.switch(green, &["--verify-url", &url]).code(0);
    site.assert_serves("green");
    site.switch(blue, &["--verify-url", &url]).code(0);

    // Green is gone; switched anyway, nginx falls back to blue, which
    // answers 200. That is not a switch to green: undone, exit 1.
    drop(site.apps.pop());
    let run = site.switch(
        green,
        &[
            "--verify-url",
            &url,
            "--verify-timeout",
            "2s",
            "--no-target-check",
        ],
    );
    run.code(1);
    assert!(
        run.error_line()
            .contains(&format!("not port {green}: nginx sent it to the backup")),
        "{}",
        run.stderr
    );
    assert_eq!(site.enabled_port(), blue);
    site.assert_serves("blue");
    let history = site.history_lines();
    assert_eq!(
        history.last().unwrap()["result"],
        "rolled back",
        "{history:?}"
    );
});

#[test]
fn a_site_that_does_not_say_who_answered_is_named_once() {
    let site = running("dev", Via::Local, &[]);
    let url = format!("http://127.0.0.1:{}/actuator/health", site.listen);
    let run = site.switch(site.green, &["--verify-url", &url]);
    run.code(0);
    assert_eq!(
        run.stderr.matches("no X-Upstream header").count(),
        1,
        "{}",
        run.stderr
    );
    // --upstream-header '' turns the check and its note off.
    let run = site.switch(site.blue, &["--verify-url", &url, "--upstream-header", ""]);
    run.code(0);
    assert!(!run.stderr.contains("X-Upstream"), "{}", run.stderr);
}

#[test]
fn previous_and_a_port_that_says_otherwise_or_a_bad_url_are_exit_2() {
    let site = running("dev", Via::Local, &[]);
    let url = "http://127.0.0.1:{port}/actuator/health";
    // A pipeline that exported BG_PORT for another stage: saying otherwise
    // is exit 2, nothing changed; agreeing is fine (below).
    let run = site
        .previous_bin(&["--url", url])
        .env("BG_PORT", site.blue.to_string())
        .run();
    run.code(2);
    assert!(
        run.error_line().contains("--previous goes to port"),
        "{}",
        run.stderr
    );
    assert_eq!(site.enabled_port(), site.blue);
    let run = site.previous(&["--url", "ftp://127.0.0.1:{port}/"]);
    run.code(2);
    assert!(run.error_line().contains("--url"), "{}", run.stderr);
    site.previous_bin(&["--url", url])
        .env("BG_PORT", site.green.to_string())
        .run()
        .code(0);
    assert_eq!(site.enabled_port(), site.green);
}
