//! bg-status through the real binary, against the rig's real nginx and real
//! JVMs started by the real bg-ship, locally and over the rig's sshd (both
//! clients): what each color runs, whether nginx has loaded the files that
//! say so, held locks seen without waiting, the switch history; and it
//! changes nothing.

mod nginx_site;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bg_deploy_tests::{Bin, Run, app_jar, wait_for_port};
use nginx_site::{Site, Via};

/// JVM options that start the stand-in quickly and leave nothing in /tmp.
const FAST: &str = bg_deploy_tests::JAVA_OPTS;

/// Kills the apps a test shipped when it ends, whatever happened.
#[derive(Default)]
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) on a pid the test's bg-ship started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// `--format env` output as a map, values unquoted.
fn env(run: &Run) -> BTreeMap<String, String> {
    run.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map(|v| v.replace(r"'\''", "'"))
                .unwrap_or_else(|| v.to_string());
            (k.to_string(), v)
        })
        .collect()
}

fn json(run: &Run) -> serde_json::Value {
    assert_eq!(run.stdout.lines().count(), 1, "one line: {}", run.stdout);
    serde_json::from_str(&run.stdout).unwrap()
}

fn locks(site: &Site) -> PathBuf {
    site.work.path().join("locks")
}

/// bg-ship of the rig's app as `version` to `port`, recording the version;
/// its pid, once the app listens.
fn ship(site: &Site, deploy: &Path, port: u16, version: &str, reap: &mut Reap) -> u32 {
    let run = Bin::new("bg-ship")
        .env("BG_ACTOR", "tester")
        .args(site.via.args())
        .args(["--artifact", app_jar().to_str().unwrap()])
        .args(["--deploy-path", deploy.to_str().unwrap()])
        .args(["--port", &port.to_string()])
        .args(["--java-opts", &format!("{FAST} -Dapp.version={version}")])
        .args(["--app-version", version])
        .args(["--lock-dir", locks(site).to_str().unwrap()])
        .args(["--format", "env"])
        .run();
    run.code(0);
    let pid: u32 = env(&run)["BG_PID"].parse().unwrap();
    reap.0.push(pid);
    assert!(wait_for_port(port, Duration::from_secs(30)), "{port}");
    pid
}

/// bg-status with the site's layout, its pid file, locks and history.
fn status_bin(site: &Site, deploy: Option<&Path>) -> Bin {
    let mut bin = Bin::new("bg-status")
        .args(site.layout_args())
        .args(["--nginx-pid-file", site.nginx.pid_file().to_str().unwrap()])
        .args(["--lock-dir", locks(site).to_str().unwrap()])
        .args(["--history-file", site.history().to_str().unwrap()]);
    if let Some(deploy) = deploy {
        bin = bin.args(["--deploy-path", deploy.to_str().unwrap()]);
    }
    bin
}

const HEALTH: &str = "http://127.0.0.1:{port}/actuator/health";

/// Polls bg-status `--format env` until `ready` holds (nginx's old workers
/// leave, a killed app's socket closes), at most 10 s.
#[track_caller]
fn status_until(bin: &Bin, ready: impl Fn(&BTreeMap<String, String>) -> bool) -> Run {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = bin.clone().args(["--format", "env"]).run();
        run.code(0);
        if ready(&env(&run)) {
            return run;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", run.stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
}

both_ways!(a_deploy_of_both_colors_is_shown, |via: Via| {
    let mut site = Site::new("dev", via);
    site.nginx.start();
    let (blue, green) = (site.blue, site.green);
    let deploy = site.work.path().join("app");
    let mut reap = Reap::default();

    // Two deploys, as the pipeline makes them: blue first, then green.
    let blue_pid = ship(&site, &deploy, blue, "1.0.0", &mut reap);
    site.switch(blue, &[]).code(0);
    let green_pid = ship(&site, &deploy, green, "1.1.0", &mut reap);
    site.switch(green, &[]).code(0);
    site.assert_serves("1.1.0");

    let bin = status_bin(&site, Some(&deploy)).args(["--health-url", HEALTH]);
    let begun = Instant::now();
    let run = bin.clone().args(["--format", "json"]).run();
    run.code(0);
    let took = begun.elapsed();
    let value = json(&run);
    assert_eq!(value["site"], "dev");
    assert_eq!(value["layout"], "symlink");
    assert_eq!(value["active_port"], green);
    assert_eq!(value["nginx_loaded"], true, "{value}");
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(value["problem"], serde_json::Value::Null);
    assert_eq!(value["pending_to"], serde_json::Value::Null);
    assert_eq!(value["site_lock"], serde_json::Value::Null);
    for (color, port, pid, version, role, nginx) in [
        ("blue", blue, blue_pid, "1.0.0", "backup", "standby"),
        ("green", green, green_pid, "1.1.0", "active", "serving"),
    ] {
        let key = |k: &str| format!("{color}_{k}");
        assert_eq!(value[key("port")], port);
        assert_eq!(value[key("role")], role, "{value}");
        assert_eq!(value[key("nginx")], nginx, "{value}");
        assert_eq!(value[key("app")], "up");
        assert_eq!(value[key("pid")], pid);
        assert_eq!(value[key("pid_file_pid")], pid);
        assert_eq!(value[key("pid_match")], true);
        assert_eq!(value[key("version")], version);
        assert_eq!(value[key("artifact")], "app.jar");
        assert_eq!(value[key("deployed_by")], "tester");
        assert_eq!(value[key("sha256")].as_str().unwrap().len(), 64);
        assert_eq!(value[key("health")], "healthy");
        assert_eq!(value[key("health_status")], 200);
        assert!(value[key("uptime")].as_u64().unwrap() < 600, "{value}");
        assert!(value[key("started")].as_str().unwrap().ends_with('Z'));
    }
    eprintln!("bg-status took {took:?}");

    // The record bg-ship wrote beside the pid file.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join(format!("app-{green}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["pid"], green_pid);
    assert_eq!(record["port"], green);
    assert_eq!(record["path"], deploy.join("app.jar").to_str().unwrap());
    assert!(record["started"].as_str().unwrap().ends_with('Z'));

    let text = bin.clone().run();
    text.code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines[0].starts_with("COLOR  PORT"), "{}", text.stdout);
    for (line, port, pid, version, role, nginx) in [
        (lines[1], blue, blue_pid, "1.0.0", "backup", "standby"),
        (lines[2], green, green_pid, "1.1.0", "active", "serving"),
    ] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[1..7],
            [
                port.to_string().as_str(),
                role,
                nginx,
                "up",
                &pid.to_string(),
                &pid.to_string()
            ],
            "{line}"
        );
        assert!(
            line.contains(version) && line.contains("healthy (200)"),
            "{line}"
        );
    }
    assert!(
        text.stdout.contains("nginx: has loaded the files"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("locks: none held"), "{}", text.stdout);
    status_bin(&site, Some(&deploy))
        .arg("--check")
        .run()
        .code(0);

    // Over SSH, with nginx here and the apps on --app-ssh-host: two hosts.
    let args = site.via.args();
    if let Some(at) = args.iter().position(|a| a == "--host") {
        let mut apart = args.clone();
        apart[at] = "--app-ssh-host".to_string();
        let run = Bin::new("bg-status")
            .args(apart)
            .args(site.layout_args().into_iter().skip(args.len()))
            .args(["--deploy-path", deploy.to_str().unwrap()])
            .args(["--nginx-pid-file", site.nginx.pid_file().to_str().unwrap()])
            .args(["--format", "env"])
            .run();
        run.code(0);
        let seen = env(&run);
        assert_eq!(seen["BG_GREEN_PID"], green_pid.to_string());
        assert_eq!(seen["BG_GREEN_NGINX"], "serving");
        assert_eq!(seen["BG_BLUE_VERSION"], "1.0.0");
    }

    // The backup stopped: down, its pid file's process gone; the active
    // port still passes --check.
    unsafe { libc::kill(blue_pid as i32, libc::SIGKILL) };
    let run = status_until(&bin, |e| e["BG_BLUE_APP"] == "down");
    let seen = env(&run);
    assert_eq!(seen["BG_BLUE_PID"], "");
    assert_eq!(seen["BG_BLUE_PID_FILE_PID"], blue_pid.to_string());
    assert_eq!(seen["BG_BLUE_HEALTH"], "no-answer");
    assert_eq!(seen["BG_BLUE_VERSION"], "1.0.0", "the record stays");
    assert_eq!(seen["BG_OK"], "true");
    assert_eq!(seen["BG_GREEN_APP"], "up");
    let text = bin.clone().arg("--check").run();
    text.code(0);
    let blue_line = text.stdout.lines().nth(1).unwrap();
    assert!(
        blue_line.contains(&format!("{blue_pid} (gone)")),
        "{blue_line}"
    );
    assert!(blue_line.contains(" down "), "{blue_line}");
    assert!(
        blue_line.contains("no answer (connection refused)"),
        "{blue_line}"
    );

    // The history of the two switches, newest last.
    let history = status_bin(&site, None)
        .args(["--history", "--format", "json"])
        .run();
    let value = json(history.code(0));
    let lines = value["history"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{value}");
    assert_eq!(lines[1]["to"], green);
    assert_eq!(lines[1]["actor"], "tester");
    let one = status_bin(&site, None).args(["--history", "1"]).run();
    one.code(0);
    assert_eq!(one.stdout.lines().count(), 2, "{}", one.stdout);
    assert!(
        one.stdout.contains(&format!("{blue} -> {green}")),
        "{}",
        one.stdout
    );
});

both_ways!(files_nginx_never_loaded_are_not_served, |via: Via| {
    let mut site = Site::new("dev", via);
    site.enable(site.blue);
    site.start(&[]);
    site.assert_serves("blue");
    let (blue, green) = (site.blue, site.green);
    let bin = status_bin(&site, None);
    let run = bin.clone().args(["--format", "env"]).run();
    let seen = env(run.code(0));
    assert_eq!(seen["BG_ACTIVE_PORT"], blue.to_string());
    assert_eq!(seen["BG_NGINX_LOADED"], "true", "{}", run.stdout);
    assert_eq!(seen["BG_BLUE_NGINX"], "serving");

    // A switch whose reload never happened: the files say green, nginx
    // still runs the configuration it loaded before.
    site.switch(
        green,
        &[
            "--reload-cmd",
            "true",
            "--nginx-pid-file",
            "/nonexistent/nginx.pid",
        ],
    )
    .code(0);
    site.assert_serves("blue");
    let run = bin.clone().args(["--format", "env"]).run();
    let seen = env(run.code(0));
    assert_eq!(seen["BG_ACTIVE_PORT"], green.to_string());
    assert_eq!(seen["BG_NGINX_LOADED"], "false", "{}", run.stdout);
    assert_eq!(seen["BG_GREEN_NGINX"], "not-loaded");
    assert_eq!(seen["BG_BLUE_NGINX"], "not-loaded");
    assert_eq!(seen["BG_OK"], "false");
    assert!(
        seen["BG_FILES_CHANGED"] >= seen["BG_WORKERS_STARTED"],
        "{}",
        run.stdout
    );
    let text = bin.clone().run();
    text.code(0);
    assert!(
        text.stdout.contains(&format!(
            "nginx: not loaded: the files changed at {}, after its workers started at {}; reload nginx, or finish with bg-switch --port {green}",
            seen["BG_FILES_CHANGED"], seen["BG_WORKERS_STARTED"]
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stderr.contains("warning: nginx has not loaded"),
        "{}",
        text.stderr
    );
    // --check fails, printing what it saw, then one error line.
    let check = bin.clone().arg("--check").run();
    check.code(1);
    assert!(check.stdout.contains("not loaded"), "{}", check.stdout);
    assert!(
        check
            .error_line()
            .starts_with("bg-status: error: nginx has not loaded the files"),
        "{}",
        check.stderr
    );

    // Reloaded: served.
    site.nginx.reload();
    status_until(&bin, |e| e["BG_GREEN_NGINX"] == "serving");
    site.assert_serves("green");
    bin.clone().arg("--check").run().code(0);

    // bg-switch's marker of a switch that did not finish.
    std::fs::create_dir_all(locks(&site)).unwrap();
    let marker = locks(&site).join("bg-switch-dev.lock.pending");
    std::fs::write(
        &marker,
        format!(r#"{{"from":{green},"to":{blue},"time":"2026-11-25T12:07:31Z"}}"#),
    )
    .unwrap();
    let run = bin.clone().args(["--format", "env"]).run();
    let seen = env(run.code(0));
    assert_eq!(seen["BG_PENDING_TO"], blue.to_string());
    assert_eq!(seen["BG_PENDING_FROM"], green.to_string());
    assert_eq!(seen["BG_PENDING_SINCE"], "2026-11-25T12:07:31Z");
    let check = bin.clone().arg("--check").run();
    check.code(1);
    assert!(
        check.stdout.contains(&format!(
            "pending: a switch from {green} to {blue} did not finish (since 2026-11-25T12:07:31Z"
        )) && check
            .stdout
            .contains(&format!("finish it with bg-switch --port {blue}")),
        "{}",
        check.stdout
    );
    assert!(
        check.error_line().contains("did not finish"),
        "{}",
        check.stderr
    );
    assert!(marker.exists(), "bg-status changes nothing");
});

#[test]
fn the_managed_layout_reads_the_upstream_file() {
    let mut site = Site::new("dev", Via::Local);
    let (blue, green) = (site.blue, site.green);
    let upstream = site.nginx.path("conf.d/dev-upstream.conf");
    let write_upstream = |primary: u16, backup: u16| {
        std::fs::write(
            &upstream,
            format!("upstream backend {{\n    server 127.0.0.1:{primary};\n    server 127.0.0.1:{backup} backup;\n}}\n"),
        )
        .unwrap()
    };
    write_upstream(green, blue);
    site.nginx.enable_backend_site("dev", site.listen);
    site.start(&[]);
    site.assert_serves("green");
    let bin = status_bin(&site, None).args(["--upstream-file", upstream.to_str().unwrap()]);
    let seen = env(bin.clone().args(["--format", "env"]).run().code(0));
    assert_eq!(seen["BG_LAYOUT"], "managed");
    assert_eq!(seen["BG_ACTIVE_PORT"], green.to_string());
    assert_eq!(seen["BG_GREEN_NGINX"], "serving");
    assert_eq!(seen["BG_BLUE_NGINX"], "standby");
    assert_eq!(seen["BG_NGINX_LOADED"], "true");

    // Rewritten by hand, not reloaded: nginx still sends traffic to green.
    std::thread::sleep(Duration::from_millis(200));
    write_upstream(blue, green);
    let seen = env(bin.clone().args(["--format", "env"]).run().code(0));
    assert_eq!(seen["BG_ACTIVE_PORT"], blue.to_string());
    assert_eq!(seen["BG_BLUE_NGINX"], "not-loaded");
    site.assert_serves("green");
    bin.clone().arg("--check").run().code(1);
    site.nginx.reload();
    status_until(&bin, |e| e["BG_BLUE_NGINX"] == "serving");
    site.assert_serves("blue");

    // No upstream file: a mistyped path, as bg-detect-port says.
    std::fs::remove_file(&upstream).unwrap();
    let missing = bin.clone().run();
    missing.code(3);
    assert!(
        missing.error_line().contains("does not exist"),
        "{}",
        missing.stderr
    );
}

/// Whether something accepts connections at `address`:`port`, within 30 s.
fn answers_at(address: &str, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((address, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The rig's app on `port` of one loopback address only: a host of its own.
fn app_on(site: &Site, address: &str, port: u16, version: &str) -> bg_deploy_tests::App {
    let log = site.work.path().join(format!("{address}-{port}.log"));
    let app = bg_deploy_tests::App::start(
        port,
        &[("app.version", version), ("server.address", address)],
        &log,
    );
    assert!(answers_at(address, port), "{address}:{port}");
    app
}

/// The row of `host` and `color` in a fleet's text table, as words.
fn fleet_row<'a>(text: &'a str, host: &str, color: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() > 2 && w[0] == host && w[1] == color)
        .unwrap_or_else(|| panic!("no row of {host} {color}:\n{text}"))
}

/// Three app hosts behind one managed upstream, as bg-switch writes it for
/// `--app-host` x3; on one machine they are three loopback addresses, each
/// app listening on its own. 127.0.0.1 is read over SSH, 127.0.0.2 only
/// probed (no --app-ssh-host names it), 127.0.0.3's --app-ssh-host is a port
/// nothing listens on.
fn a_fleet_is_shown_host_by_host(via: Via) {
    let mut site = Site::new("dev", via);
    let (blue, green) = (site.blue, site.green);
    let deploy = site.work.path().join("app");
    let mut reap = Reap::default();
    let upstream = site.nginx.path("conf.d/dev-upstream.conf");
    std::fs::write(
        &upstream,
        format!("upstream backend {{\n    server 127.0.0.1:{blue};\n    server 127.0.0.1:{green} backup;\n}}\n"),
    )
    .unwrap();
    site.nginx.enable_backend_site("dev", site.listen);
    site.nginx.start();
    let blue_pid = ship(&site, &deploy, blue, "1.0.0", &mut reap);
    let green_pid = ship(&site, &deploy, green, "1.1.0", &mut reap);
    let second = app_on(&site, "127.0.0.2", green, "1.1.0");
    let managed = ["--upstream-file", upstream.to_str().unwrap()];
    let mut switch = managed.to_vec();
    for host in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        switch.extend(["--app-host", host]);
    }
    switch.push("--no-target-check");
    site.switch(green, &switch).code(0);
    let written = std::fs::read_to_string(&upstream).unwrap();
    assert!(
        written.contains(&format!(
            "    server 127.0.0.3:{green};\n    server 127.0.0.1:{blue} backup;\n"
        )),
        "{written}"
    );

    let args = site.via.args();
    let at = args.iter().position(|a| a == "--host").unwrap();
    let ssh_target = args[at + 1].clone();
    let closed = bg_deploy_tests::ClosedPort::new();
    let unreachable = format!("127.0.0.3:{}", closed.port);
    let bin = status_bin(&site, Some(&deploy))
        .args(managed)
        .args(["--health-url", "http://{host}:{port}/actuator/health"])
        .args(["--connect-timeout", "2s"]);
    let fleet = bin
        .clone()
        .args(["--app-ssh-host", &ssh_target])
        .args(["--app-ssh-host", &unreachable]);

    // Text: a HOST column, each host with both colors; an unreachable host
    // is shown, warned about, and not the end of the report.
    let text = fleet.clone().run();
    text.code(0);
    let out = &text.stdout;
    assert!(out.starts_with("HOST "), "{out}");
    assert!(out.lines().next().unwrap().contains(" COLOR "), "{out}");
    let row = fleet_row(out, "127.0.0.1", "green");
    assert_eq!(
        row[2..6],
        [green.to_string().as_str(), "active", "serving", "up"],
        "{out}"
    );
    // One machine: 127.0.0.2's app on that port is a listener here too.
    assert!(
        row[6].split(',').any(|p| p == green_pid.to_string()),
        "{out}"
    );
    assert_eq!(row[7], green_pid.to_string(), "the pid file's");
    assert!(
        row.contains(&"1.1.0") && row.ends_with(&["healthy", "(200)"]),
        "{out}"
    );
    let row = fleet_row(out, "127.0.0.1", "blue");
    assert_eq!(row[3..6], ["backup", "standby", "up"], "{out}");
    assert!(row.contains(&blue_pid.to_string().as_str()), "{out}");
    let row = fleet_row(out, "127.0.0.2", "green");
    assert_eq!(row[3..6], ["active", "serving", "-"], "{out}");
    assert!(row.ends_with(&["healthy", "(200)"]), "{out}");
    let row = fleet_row(out, "127.0.0.2", "blue");
    assert_eq!(row[3..5], ["backup", "standby"], "{out}");
    assert!(
        row.join(" ").contains("no answer (connection refused)"),
        "{out}"
    );
    let row = fleet_row(out, "127.0.0.3", "green");
    assert_eq!(row[3..6], ["active", "serving", "unreachable"], "{out}");
    assert!(row.join(" ").contains("no answer"), "{out}");
    assert!(
        out.contains(&format!(
            "host 127.0.0.3: unreachable over SSH ({unreachable})"
        )),
        "{out}"
    );
    assert!(out.contains("not read over SSH: 127.0.0.2"), "{out}");
    assert!(
        text.stderr
            .contains("warning: app host 127.0.0.3 is unreachable"),
        "{}",
        text.stderr
    );

    // JSON: the old keys, and every host.
    let value = json(fleet.clone().args(["--format", "json"]).run().code(0));
    assert_eq!(value["active_port"], green);
    assert_eq!(value["green_pid"], green_pid, "the first app host's view");
    assert_eq!(value["ok"], false);
    assert_eq!(value["green_healthy_hosts"], 2, "{value}");
    assert_eq!(value["green_up_hosts"], 1, "{value}");
    assert_eq!(value["unreachable_hosts"], serde_json::json!(["127.0.0.3"]));
    let hosts = value["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    for (host, ssh, state, green_app, green_health) in [
        (
            &hosts[0],
            Some(ssh_target.as_str()),
            "read",
            "up",
            "healthy",
        ),
        (&hosts[1], None, "not-read", "unknown", "healthy"),
        (
            &hosts[2],
            Some(unreachable.as_str()),
            "unreachable",
            "unreachable",
            "no-answer",
        ),
    ] {
        assert_eq!(host["ssh_host"].as_str(), ssh, "{host}");
        assert_eq!(host["app_host"], state, "{host}");
        assert_eq!(host["in_upstream"], true, "{host}");
        assert_eq!(host["green"]["role"], "active", "{host}");
        assert_eq!(host["blue"]["role"], "backup", "{host}");
        assert_eq!(host["green"]["app"], green_app, "{host}");
        assert_eq!(host["green"]["health"], green_health, "{host}");
    }
    assert_eq!(hosts[0]["green"]["version"], "1.1.0");
    assert_eq!(hosts[0]["blue"]["pid"], blue_pid);
    assert!(hosts[2]["error"].as_str().unwrap().len() > 3, "{value}");

    // env, the app hosts as one comma-separated BG_APP_SSH_HOST.
    let run = bin
        .clone()
        .env("BG_APP_SSH_HOST", format!("{ssh_target},{unreachable}"))
        .args(["--format", "env"])
        .run();
    let seen = env(run.code(0));
    assert_eq!(seen["BG_HOSTS"], "127.0.0.1,127.0.0.2,127.0.0.3");
    assert_eq!(seen["BG_UNREACHABLE_HOSTS"], "127.0.0.3");
    assert_eq!(seen["BG_GREEN_HEALTHY_HOSTS"], "2");
    assert_eq!(seen["BG_BLUE_HEALTHY_HOSTS"], "1");
    assert_eq!(seen["BG_GREEN_VERSION"], "1.1.0");

    // --check: the unreachable host fails it, by name.
    let check = fleet.clone().arg("--check").run();
    check.code(1);
    assert!(check.stdout.starts_with("HOST "), "{}", check.stdout);
    assert!(check.error_line().contains("127.0.0.3"), "{}", check.stderr);

    // Every host's active port answers: --check passes.
    let third = app_on(&site, "127.0.0.3", green, "1.1.0");
    let reachable = bin.clone().args(["--app-ssh-host", &ssh_target]);
    reachable.clone().arg("--check").run().code(0);

    // 127.0.0.2's active app stops: --check fails naming it.
    drop(second);
    let check = reachable.clone().arg("--check").run();
    check.code(1);
    assert!(
        check.error_line().contains(&format!(
            "the active port {green} on 127.0.0.2 did not answer the health probe"
        )),
        "{}",
        check.stderr
    );
    let row = fleet_row(&check.stdout, "127.0.0.2", "green");
    assert!(row.join(" ").contains("no answer"), "{}", check.stdout);
    drop(third);
}

mod a_fleet_behind_one_upstream_is_shown_host_by_host {
    use super::*;

    #[test]
    fn ssh() {
        a_fleet_is_shown_host_by_host(nginx_site::Via::start(true));
    }

    #[test]
    fn openssh() {
        a_fleet_is_shown_host_by_host(nginx_site::Via::openssh());
    }
}

/// A lock holder: `flock` and the command it runs, in a process group of
/// their own, killed together when dropped (the command keeps the lock's
/// file open too).
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group the test started.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Holds `path` as our binaries do (flock, then the holder's text in the
/// file) until dropped; returns once the text is there.
fn hold(path: &Path, holder: &str) -> Holder {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let child = std::process::Command::new("flock")
        .arg(path)
        .args([
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > \"$2\"; exec sleep 60",
            "sh",
            holder,
        ])
        .arg(path)
        .process_group(0)
        .spawn()
        .unwrap();
    let guard = Holder(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(path).unwrap_or_default().trim() != holder {
        assert!(Instant::now() < deadline, "the holder never wrote its text");
        std::thread::sleep(Duration::from_millis(10));
    }
    guard
}

/// Whether someone holds an flock on `path` (asked without waiting).
fn held(path: &Path) -> bool {
    !std::process::Command::new("flock")
        .args(["-n", "-s"])
        .arg(path)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

both_ways!(held_locks_are_shown_without_waiting, |via: Via| {
    let mut site = Site::new("dev", via);
    site.enable(site.blue);
    site.nginx.start();
    let site_lock = locks(&site).join("bg-switch-dev.lock");
    let port_lock = locks(&site).join(format!("bg-port-{}.lock", site.green));
    let switching =
        "bg-switch (pid 4711 on agent-7, actor jenkins-deploy-42, since 2026-11-25T12:00:00Z)";
    let shipping =
        "bg-ship (pid 4712 on agent-7, actor jenkins-deploy-42, since 2026-11-25T12:00:01Z)";
    let site_holder = hold(&site_lock, switching);
    let port_holder = hold(&port_lock, shipping);

    let bin = status_bin(&site, None);
    let begun = Instant::now();
    let run = bin.clone().run();
    run.code(0);
    assert!(begun.elapsed() < Duration::from_secs(10), "it waited");
    assert!(
        run.stdout
            .contains(&format!("lock: site dev is held by {switching}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("lock: port {} is held by {shipping}", site.green)),
        "{}",
        run.stdout
    );
    let seen = env(bin.clone().args(["--format", "env"]).run().code(0));
    assert_eq!(seen["BG_SITE_LOCK"], switching);
    assert_eq!(seen["BG_GREEN_LOCK"], shipping);
    assert_eq!(seen["BG_BLUE_LOCK"], "");
    // Neither holder was disturbed.
    assert!(held(&site_lock) && held(&port_lock));

    // Released: the files stay, with their last holder's text, but nobody
    // holds them.
    drop(site_holder);
    drop(port_holder);
    let run = bin.clone().run();
    run.code(0);
    assert!(run.stdout.contains("locks: none held"), "{}", run.stdout);
    assert!(site_lock.exists() && port_lock.exists());
});

both_ways!(history_shows_the_last_n_switches, |via: Via| {
    let site = Site::new("dev", via);
    let history = site.history();
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    let (b, g) = (site.blue, site.green);
    let lines = [
        format!(
            r#"{{"time":"2026-11-20T10:00:00Z","site":"dev","from":null,"to":{b},"actor":"jenkins-deploy-1","result":"done"}}"#
        ),
        format!(
            r#"{{"time":"2026-11-21T10:00:00Z","site":"dev","from":{b},"to":{g},"actor":"jenkins-deploy-2","result":"rolled back","reason":"nginx rejected the configuration: unknown directive"}}"#
        ),
        "{\"time\":\"2026-11-22T10:0".to_string(),
        format!(
            r#"{{"time":"2026-11-23T10:00:00Z","site":"dev","from":{b},"to":{g},"actor":"jenkins-deploy-3","result":"done","kind":"deploy","from_version":"1.0.0","from_artifact":"app-1.0.0.jar","to_version":"1.1.0","to_artifact":"app-1.1.0.jar"}}"#
        ),
    ];
    std::fs::write(&history, lines.join("\n") + "\n").unwrap();

    let all = status_bin(&site, None).arg("--history").run();
    all.code(0);
    let rows: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three entries:\n{}", all.stdout);
    assert!(rows[0].starts_with("TIME "), "{}", all.stdout);
    assert!(
        rows[1].starts_with(&format!("2026-11-20T10:00:00Z  - -> {b}")),
        "{}",
        all.stdout
    );
    assert!(rows[2].ends_with("rolled back  nginx rejected the configuration: unknown directive"));
    let newest: Vec<&str> = rows[3]
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        newest,
        [
            "2026-11-23T10:00:00Z",
            &format!("{b} -> {g}"),
            "deploy",
            "1.0.0 -> 1.1.0",
            "jenkins-deploy-3",
            "done",
            "-"
        ]
    );
    assert!(
        all.stderr.contains("warning: 1 of the last 10 lines"),
        "{}",
        all.stderr
    );

    // The last 2 lines: one cut short, skipped.
    let two = status_bin(&site, None)
        .args(["--history", "2", "--format", "json"])
        .run();
    let value = json(two.code(0));
    assert_eq!(value["history"].as_array().unwrap().len(), 1, "{value}");
    assert_eq!(value["history"][0]["to_version"], "1.1.0");

    let env_run = status_bin(&site, None)
        .args(["--history", "3", "--format", "env"])
        .run();
    let seen = env(env_run.code(0));
    assert_eq!(seen["BG_HISTORY_COUNT"], "2");
    assert_eq!(seen["BG_LAST_TO"], g.to_string());
    assert_eq!(seen["BG_LAST_KIND"], "deploy");
    assert_eq!(seen["BG_LAST_TO_VERSION"], "1.1.0");
    assert_eq!(seen["BG_LAST_REASON"], "");

    // No history yet: nothing to show, not a failure.
    std::fs::remove_file(&history).unwrap();
    let none = status_bin(&site, None).arg("--history").run();
    none.code(0);
    assert!(
        none.stdout.starts_with("no switch recorded in "),
        "{}",
        none.stdout
    );
});

both_ways!(hostile_values_reach_no_shell, |via: Via| {
    let name = "dev $(touch pwned) `touch pwned` 'it''s' \"q\" ;|&*";
    let site = Site::new(name, via);
    site.enable(site.green);
    let marker = site.marker();
    let evil = format!(
        "$(touch {m}) `touch {m}` 'q' \"dq\"\nline",
        m = marker.display()
    );
    let deploy = site.work.path().join(format!("app {evil}"));
    std::fs::create_dir_all(&deploy).unwrap();
    let port = site.blue;
    std::fs::write(deploy.join(format!("app-{port}.pid")), "999999\n").unwrap();
    let record = serde_json::json!({
        "port": port,
        "pid": 999999,
        "artifact": format!("app {evil}.jar"),
        "version": evil,
    });
    std::fs::write(deploy.join(format!("app-{port}.json")), record.to_string()).unwrap();
    let history = site.work.path().join(format!("history {evil}.jsonl"));
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    std::fs::write(&history, "{\"to\":1}\n").unwrap();
    let lock_dir = site.work.path().join(format!("locks {evil}"));
    let run = Bin::new("bg-status")
        .args(site.layout_args())
        .args(["--deploy-path", deploy.to_str().unwrap()])
        .args(["--lock-dir", lock_dir.to_str().unwrap()])
        .args(["--format", "json"])
        .run();
    let value = json(run.code(0));
    assert_eq!(value["blue_pid_file_pid"], 999999);
    assert_eq!(value["blue_app"], "down");
    assert_eq!(value["blue_artifact"], format!("app {evil}.jar"));
    let history_run = Bin::new("bg-status")
        .args(site.layout_args())
        .args([
            "--history-file",
            history.to_str().unwrap(),
            "--history",
            "--format",
            "env",
        ])
        .run();
    assert_eq!(env(history_run.code(0))["BG_HISTORY_COUNT"], "1");
    assert!(!marker.exists(), "a value was executed");
    assert!(!Path::new("pwned").exists());
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(!Path::new(&home).join("pwned").exists());
});

#[test]
fn a_layout_it_cannot_read_is_exit_3() {
    let site = Site::new("dev", Via::Local);
    site.enable(site.blue);
    site.enable(site.green);
    let run = status_bin(&site, None).run();
    run.code(3);
    assert_eq!(run.stdout, "");
    assert!(
        run.error_line().contains("2 files of site dev are enabled"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let no_port = Bin::new("bg-status")
        .args(["--health-url", "http://127.0.0.1:8000/health"])
        .run();
    no_port.code(2);
    assert!(
        no_port.error_line().contains("{port}"),
        "{}",
        no_port.stderr
    );
    let same = Bin::new("bg-status")
        .args(["--blue-port", "8000", "--green-port", "8000"])
        .run();
    same.code(2);
    let zero = Bin::new("bg-status").args(["--history", "0"]).run();
    zero.code(2);
    let both = Bin::new("bg-status").args(["--history", "--check"]).run();
    both.code(2);
    let cacert = Bin::new("bg-status")
        .args(["--health-url", "https://127.0.0.1:{port}/health"])
        .args(["--cacert", "/nonexistent/ca.pem"])
        .run();
    cacert.code(2);
    assert!(cacert.error_line().contains("ca.pem"), "{}", cacert.stderr);
}

#[test]
fn an_unreachable_host_is_exit_4() {
    let closed = bg_deploy_tests::ClosedPort::new();
    let run = Bin::new("bg-status")
        .args([
            "--host",
            &format!("127.0.0.1:{}", closed.port),
            "--connect-timeout",
            "2s",
        ])
        .run();
    run.code(4);
    run.error_line();
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-status").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}
