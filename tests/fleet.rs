//! jenkins/Jenkinsfile.fleet end to end: three app hosts, each a network
//! namespace with its own address, sshd and deploy directory (the rig's
//! `Fleet`), behind one real nginx with the managed upstream, deployed by
//! the pipeline shim with Stop Port, Deploy and Health Check run on every
//! host at once (`parallel`, failFast) and one Switch.
//!
//! Where network namespaces cannot be made (not root, no iproute2), each
//! test says why on stderr and skips.

mod pipeline;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use bg_deploy_tests::{Fleet, Nginx, Sshd, bin_path, free_port, http_get, http_get_at};
use pipeline::{AppRepo, Load, Shim, tempdir};
use tempfile::TempDir;

const FLEET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jenkins/Jenkinsfile.fleet");
const BLUE: u16 = 8000;
const GREEN: u16 = 8001;

/// One fleet job's world: the hosts, nginx (reached over a loopback sshd
/// with the same key), the app's repository, the agent's workspace.
/// See [`FleetJob::running`].
struct Running {
    upstream: String,
    pids: Vec<(Ipv4Addr, String)>,
}

struct FleetJob {
    fleet: Fleet,
    nginx: Nginx,
    nginx_sshd: Sshd,
    /// Where nginx serves the site, once the first deploy enabled it.
    listen: u16,
    repo: AppRepo,
    workspace: TempDir,
    /// Credentials, known_hosts, history, locks.
    work: TempDir,
    builds: usize,
}

impl FleetJob {
    /// `None`, having said why, where the hosts cannot be made.
    fn new(hosts: usize) -> Option<FleetJob> {
        let fleet = match Fleet::start(hosts) {
            Ok(fleet) => fleet,
            Err(why) => {
                eprintln!("SKIPPED: this test needs network namespaces for its app hosts: {why}");
                return None;
            }
        };
        let nginx_sshd = Sshd::start();
        let work = tempdir("bg-fleet-work-");
        // One key and one known_hosts file for every host, as Jenkins holds them.
        let key = nginx_sshd.client_key.clone();
        let mut known = std::fs::read_to_string(&nginx_sshd.known_hosts).unwrap();
        for host in &fleet.hosts {
            host.sshd.authorize(&key.with_extension("pub"));
            known.push_str(&std::fs::read_to_string(&host.sshd.known_hosts).unwrap());
        }
        let known_hosts = work.path().join("known_hosts");
        std::fs::write(&known_hosts, known).unwrap();
        let store = serde_json::json!({
            "deploy-ssh": {
                "type": "sshUserPrivateKey",
                "username": nginx_sshd.user,
                "privateKeyFile": key,
                "passphrase": "",
            },
            "deploy-known-hosts": { "type": "file", "file": known_hosts },
        });
        std::fs::write(work.path().join("credentials.json"), store.to_string()).unwrap();
        // nginx runs without the site until the first switch wrote the upstream.
        let mut nginx = Nginx::new();
        nginx.start();
        Some(FleetJob {
            fleet,
            nginx,
            nginx_sshd,
            listen: free_port(),
            repo: AppRepo::new(),
            workspace: tempdir("bg-fleet-ws-"),
            work,
            builds: 0,
        })
    }

    fn upstream_file(&self) -> PathBuf {
        self.nginx.path("conf.d/dev-upstream.conf")
    }

    fn history(&self) -> PathBuf {
        self.work.path().join("history.jsonl")
    }

    fn app_hosts(&self) -> String {
        self.fleet
            .hosts
            .iter()
            .map(|h| h.address().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn params(&self, app_hosts: String) -> Vec<(&'static str, String)> {
        let deploy_path = self.fleet.deploy_path();
        vec![
            ("BRANCH", "main".into()),
            ("GIT_URL", self.repo.url()),
            ("APP_HOSTS", app_hosts),
            ("NGINX_HOST", format!("127.0.0.1:{}", self.nginx_sshd.port)),
            ("BLUE_PORT", BLUE.to_string()),
            ("GREEN_PORT", GREEN.to_string()),
            ("SITE", "dev".into()),
            ("UPSTREAM_FILE", self.upstream_file().display().to_string()),
            ("NGINX_TEST_CMD", self.nginx.test_cmd()),
            ("NGINX_RELOAD_CMD", self.nginx.reload_cmd()),
            (
                "NGINX_PID_FILE",
                self.nginx.pid_file().display().to_string(),
            ),
            ("NGINX_SUDO", "false".into()),
            ("SWITCH_HISTORY_FILE", self.history().display().to_string()),
            ("DEPLOY_PATH", deploy_path.display().to_string()),
            ("JAR_PATTERN", "build/libs/demo-{version}.jar".into()),
            ("KEEP_JARS", "3".into()),
            ("SPRING_PROFILE", "test".into()),
            (
                "JAVA_OPTS",
                format!(
                    "{} -Xmx64m -Dserver.address=0.0.0.0",
                    bg_deploy_tests::JAVA_OPTS
                ),
            ),
            ("HEALTH_TIMEOUT", "30s".into()),
            (
                "BG_BIN",
                bin_path("bg-ship").parent().unwrap().display().to_string(),
            ),
        ]
    }

    /// Runs the fleet pipeline for `version` over `app_hosts`: (succeeded, log).
    fn run(&mut self, version: &str, app_hosts: String) -> (bool, String) {
        self.run_with(version, app_hosts, &[])
    }

    fn run_with(
        &mut self,
        version: &str,
        app_hosts: String,
        extra: &[(&'static str, &str)],
    ) -> (bool, String) {
        self.repo.commit(version, false);
        self.builds += 1;
        // Each host takes its locks in its own deploy directory (the shared
        // path), as each server has its own /tmp; the nginx host in the
        // shared path's empty directory of this namespace.
        let lock_dir = self.fleet.deploy_path().join(".locks");
        let (ok, log, _) = Shim {
            jenkinsfile: Path::new(FLEET),
            job: "bg-fleet",
            build: self.builds,
            credentials: &self.work.path().join("credentials.json"),
            workspace: self.workspace.path(),
            lock_dir: Some(&lock_dir),
            params: self
                .params(app_hosts)
                .into_iter()
                .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
                .collect(),
        }
        .run();
        (ok, log)
    }

    #[track_caller]
    fn deploy(&mut self, version: &str) -> String {
        self.deploy_with(version, &[])
    }

    #[track_caller]
    fn deploy_with(&mut self, version: &str, extra: &[(&'static str, &str)]) -> String {
        let (ok, log) = self.run_with(version, self.app_hosts(), extra);
        assert!(ok, "the fleet deploy of {version} failed:\n{log}");
        assert!(log.contains("Finished: SUCCESS"), "{log}");
        log
    }

    /// The first deploy: writes the upstream (`FIRST_DEPLOY`: `--init`),
    /// then enables the site that passes to it.
    fn first_deploy(&mut self, version: &str) -> String {
        let log = self.deploy_with(version, &[("FIRST_DEPLOY", "true")]);
        assert!(log.contains("nginx serves port (none yet)"), "{log}");
        self.nginx.enable_backend_site("dev", self.listen);
        self.nginx.reload();
        self.wait_serves(version);
        log
    }

    /// Waits (up to 10 s, for the reload's new workers) until nginx answers
    /// `version` on every one of 20 requests in a row.
    #[track_caller]
    fn wait_serves(&self, version: &str) {
        let want = Some((200, format!("{version}\n")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut in_a_row = 0;
        while in_a_row < 20 {
            let got = http_get(self.listen, "/version");
            in_a_row = if got == want { in_a_row + 1 } else { 0 };
            assert!(
                std::time::Instant::now() < deadline,
                "nginx does not serve {version} steadily; last answer {got:?}"
            );
        }
    }

    /// What each host answers on `port`, straight, not through nginx.
    fn versions_on(&self, port: u16) -> Vec<String> {
        self.fleet
            .hosts
            .iter()
            .map(
                |h| match http_get_at(IpAddr::V4(h.address()), port, "/version") {
                    Some((200, body)) => body.trim().to_string(),
                    other => format!("{other:?}"),
                },
            )
            .collect()
    }

    /// The pid in each host's `app-PORT.pid`.
    fn pids(&self, port: u16) -> Vec<String> {
        self.fleet
            .hosts
            .iter()
            .map(|h| {
                std::fs::read_to_string(h.deploy.path().join(format!("app-{port}.pid")))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect()
    }

    fn upstream(&self) -> String {
        std::fs::read_to_string(self.upstream_file()).unwrap()
    }

    /// What a failed deploy must leave as it was: the upstream file and
    /// each host's blue app.
    fn running(&self) -> Running {
        Running {
            upstream: self.upstream(),
            pids: self.hosts_and(self.pids(BLUE)),
        }
    }

    /// Asserts that nothing changed since `before` (the first deploy's
    /// state): the upstream, the one switch in the history, and on every
    /// host still in the fleet the same blue process, serving `version`.
    #[track_caller]
    fn assert_still_running(&self, before: &Running, version: &str) {
        assert_eq!(self.upstream(), before.upstream);
        assert_eq!(self.history_lines(), 1);
        self.wait_serves(version);
        assert_eq!(
            self.versions_on(BLUE),
            vec![version; self.fleet.hosts.len()]
        );
        let kept: Vec<_> = before
            .pids
            .iter()
            .filter(|(a, _)| self.fleet.hosts.iter().any(|h| h.address() == *a))
            .cloned()
            .collect();
        assert_eq!(self.hosts_and(self.pids(BLUE)), kept);
    }

    /// `values` (one per host, in order) with each host's address.
    fn hosts_and<T>(&self, values: Vec<T>) -> Vec<(Ipv4Addr, T)> {
        self.fleet
            .hosts
            .iter()
            .map(|h| h.address())
            .zip(values)
            .collect()
    }

    /// Asserts that the upstream lists every host at `primary` and at
    /// `backup` as the backup.
    #[track_caller]
    fn assert_upstream(&self, primary: u16, backup: u16) {
        let upstream = self.upstream();
        for host in &self.fleet.hosts {
            let a = host.address();
            for line in [
                format!("server {a}:{primary};"),
                format!("server {a}:{backup} backup;"),
            ] {
                assert!(upstream.contains(&line), "no {line:?} in:\n{upstream}");
            }
        }
    }

    fn history_lines(&self) -> usize {
        std::fs::read_to_string(self.history())
            .unwrap_or_default()
            .lines()
            .count()
    }
}

#[test]
fn a_fleet_of_three_deploys_under_load_without_a_failed_request() {
    let Some(mut job) = FleetJob::new(3) else {
        return;
    };
    let first = job.first_deploy("1.0.0");
    assert_eq!(job.versions_on(BLUE), ["1.0.0"; 3], "{first}");
    job.assert_upstream(BLUE, GREEN);
    // Stop Port, Deploy and Health Check: one branch per host each.
    assert_eq!(first.matches("(Branch: ").count(), 9, "{first}");

    let load = Load::start(job.listen, &["1.0.0", "1.1.0"]);
    let second = job.deploy("1.1.0");
    assert!(
        second.contains(&format!(
            "nginx serves port {BLUE}; deploying to port {GREEN} on every host"
        )),
        "{second}"
    );
    job.wait_serves("1.1.0");
    load.finish("a fleet deploy of 3 hosts");
    assert_eq!(job.versions_on(GREEN), ["1.1.0"; 3]);
    assert_eq!(job.versions_on(BLUE), ["1.0.0"; 3], "a backup stopped");
    job.assert_upstream(GREEN, BLUE);
    assert_eq!(job.history_lines(), 2);
    // The last stage's bg-status showed every host of the upstream.
    for host in &job.fleet.hosts {
        let row = |color: &str| {
            second
                .lines()
                .find(|l| l.starts_with(&format!("{} ", host.address())) && l.contains(color))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| {
                    panic!("no bg-status row for {} {color}:\n{second}", host.address())
                })
        };
        let green = row(" green ");
        assert!(green.contains("8001 active serving up"), "{green}");
        assert!(
            green.contains("1.1.0 demo-1.1.0.jar healthy (200)"),
            "{green}"
        );
        let blue = row(" blue ");
        assert!(blue.contains("8000 backup standby up"), "{blue}");
    }
}

#[test]
fn a_host_whose_app_crashes_at_start_stops_the_fleet_before_the_switch() {
    let Some(mut job) = FleetJob::new(3) else {
        return;
    };
    job.first_deploy("2.0.0");
    let before = job.running();
    // The second host's app reads a file beside it that makes it fail 2.5 s
    // after it starts, past bg-ship's settle: its Health Check fails.
    let crashing = &job.fleet.hosts[1];
    std::fs::write(
        crashing.deploy.path().join("application.properties"),
        "app.crashAfter=2500\n",
    )
    .unwrap();
    let (ok, log) = job.run("2.1.0", job.app_hosts());
    assert!(!ok, "{log}");
    assert!(log.contains("[shim] failed stage: Health Check"), "{log}");
    assert!(
        log.contains("app.crashAfter was set"),
        "the crashed app's log is not shown:\n{log}"
    );
    assert!(!log.contains("/bg-switch "), "bg-switch ran:\n{log}");
    assert!(
        log.contains("Stage \"Switch\" skipped due to earlier failure(s)"),
        "{log}"
    );
    // Nothing changed for nginx, and every host runs the same blue app.
    job.assert_still_running(&before, "2.0.0");
}

#[test]
fn an_unreachable_host_stops_the_fleet_before_the_switch_with_exit_4() {
    let Some(mut job) = FleetJob::new(3) else {
        return;
    };
    job.first_deploy("3.0.0");
    let before = job.running();
    // The third host's sshd is gone (its apps keep running): connection refused.
    let gone = job.fleet.hosts.pop().unwrap();
    let gone_address = gone.address();
    drop(gone.sshd);
    let hosts = format!("{},{gone_address}", job.app_hosts());
    let (ok, log) = job.run("3.1.0", hosts);
    assert!(!ok, "{log}");
    assert!(log.contains("[shim] failed stage: Stop Port"), "{log}");
    assert!(log.contains("script returned exit code 4"), "{log}");
    assert!(
        log.contains("Stage \"Deploy\" skipped due to earlier failure(s)"),
        "{log}"
    );
    assert_eq!(job.fleet.hosts.len(), 2);
    job.assert_still_running(&before, "3.0.0");
    drop((gone.netns, gone.deploy));
}

/// The benchmark behind docs/BENCHMARKS.md's fleet table (benches/fleet.sh
/// runs it): the same pipeline to one host and to three, in turn, ROUNDS
/// times (`BG_BENCH_ROUNDS`, default 3), with every SSH connection over a
/// link of `BG_BENCH_RTT_MS` (default 0: none). Prints each run's wall time
/// and its fan-out stages' (Stop Port to Health Check), then the medians.
#[test]
#[ignore = "a benchmark: benches/fleet.sh"]
fn bench_fleet_of_three_vs_one_host() {
    let number = |name: &str, default: u64| -> u64 {
        std::env::var(name).map_or(default, |v| v.parse().expect(name))
    };
    let rounds = number("BG_BENCH_ROUNDS", 3);
    let rtt = std::time::Duration::from_millis(number("BG_BENCH_RTT_MS", 0));
    let mut job = FleetJob::new(3).expect("the benchmark needs network namespaces");
    // Over a slow link, SSH goes to a delaying proxy on port 2222 of each host.
    let mut proxies = Vec::new();
    let mut ssh_hosts = Vec::new();
    if rtt.is_zero() {
        ssh_hosts.extend(job.fleet.hosts.iter().map(|h| h.address().to_string()));
    } else {
        let known_hosts = job.work.path().join("known_hosts");
        let mut known = std::fs::read_to_string(&known_hosts).unwrap();
        for host in &job.fleet.hosts {
            let proxy = host.slow_ssh(rtt);
            known.push_str(&format!(
                "[{}]:{} {}\n",
                host.address(),
                proxy.port,
                host.sshd.host_key
            ));
            ssh_hosts.push(format!("{}:{}", host.address(), proxy.port));
            proxies.push(proxy);
        }
        std::fs::write(&known_hosts, known).unwrap();
    }
    job.first_deploy("0.1.0");
    let mut times: [Vec<(f64, f64)>; 2] = Default::default();
    for round in 0..rounds {
        for (i, hosts) in [&ssh_hosts[..1], &ssh_hosts[..]].into_iter().enumerate() {
            let version = format!("0.2.{}", round * 2 + i as u64);
            let begun = std::time::Instant::now();
            let (ok, log) = job.run(&version, hosts.join(","));
            let wall = begun.elapsed().as_secs_f64();
            assert!(ok, "{log}");
            let fan_out: f64 = ["Stop Port", "Deploy", "Health Check"]
                .iter()
                .map(|stage| stage_seconds(&log, stage))
                .sum();
            eprintln!(
                "BENCH round {round}: {} host(s): whole {wall:.2} s, fan-out stages {fan_out:.2} s",
                hosts.len()
            );
            times[i].push((wall, fan_out));
        }
    }
    let median = |runs: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [one, three] = &times;
    let (one_wall, three_wall) = (median(one, |t| t.0), median(three, |t| t.0));
    let (one_fan, three_fan) = (median(one, |t| t.1), median(three, |t| t.1));
    eprintln!(
        "BENCH rtt {} ms, {rounds} rounds, medians: whole 1 host {one_wall:.2} s, 3 hosts {three_wall:.2} s ({:.2}x); \
         fan-out stages 1 host {one_fan:.2} s, 3 hosts {three_fan:.2} s ({:.2}x)",
        rtt.as_millis(),
        three_wall / one_wall,
        three_fan / one_fan
    );
}

/// How long the shim says stage `name` took, in seconds.
fn stage_seconds(log: &str, name: &str) -> f64 {
    let prefix = format!("[shim] stage ({name}) took ");
    log.lines()
        .find_map(|l| {
            l.strip_prefix(&prefix)?
                .strip_suffix(" ms")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no time for stage {name} in the log:\n{log}"))
        / 1000.0
}
