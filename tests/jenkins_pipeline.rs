//! jenkins/Jenkinsfile and jenkins/Jenkinsfile.rollback, end to end. There is
//! no Jenkins here: tests/jenkins/pipeline-shim.groovy evaluates the
//! Jenkinsfile the way declarative Jenkins does and runs its `sh` steps for
//! real. The Checkout stage clones a git repo made by the test; its `gradlew`
//! stand-in compiles the rig's TestApp into build/libs/demo-VERSION.jar with
//! the version baked in; the binaries reach the rig's real sshd (both as app
//! and as nginx host) and a real nginx; the apps are real JVMs.

mod nginx_site;
mod pipeline;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bg_deploy_tests::{ClosedPort, JAVA_OPTS, Sshd, bin_path, http_get, need};
use nginx_site::{Site, Via};
use pipeline::{AppRepo, Load, Shim, tempdir, write};
use tempfile::TempDir;

const JENKINSFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jenkins/Jenkinsfile");
const ROLLBACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jenkins/Jenkinsfile.rollback");

/// The parameters only the deploy pipeline declares.
const DEPLOY_ONLY: &[&str] = &[
    "BRANCH",
    "GIT_URL",
    "DEPLOY_PATH",
    "JAR_PATTERN",
    "KEEP_JARS",
    "SPRING_PROFILE",
    "JAVA_OPTS",
    "HEALTH_TIMEOUT",
    "CHAT_WEBHOOK_CREDENTIALS_ID",
];

/// One Jenkins job's world: the app's git repo, the agent's workspace, the
/// credentials store, nginx with the blue/green site, and the app host's
/// deploy directory (all on this machine, reached over the rig's sshd).
struct Job {
    site: Site,
    repo: AppRepo,
    workspace: TempDir,
    deploy: TempDir,
    credentials: PathBuf,
    builds: usize,
    /// The chat webhook's URL, when notifications are on.
    chat: Option<String>,
    /// Another directory of binaries (`BG_BIN`), when set.
    bin: Option<PathBuf>,
}

impl Job {
    fn new() -> Job {
        let sshd = Sshd::start();
        let mut site = Site::new("dev", Via::Ssh(sshd));
        site.nginx.start();
        let repo = AppRepo::new();
        let workspace = tempdir("bg-jenkins-ws-");
        let deploy = tempdir("bg-jenkins-deploy-");
        let credentials = site.work.path().join("credentials.json");
        let job = Job {
            site,
            repo,
            workspace,
            deploy,
            credentials,
            builds: 0,
            chat: None,
            bin: None,
        };
        job.write_credentials();
        job
    }

    /// Jenkins' credentials store, as the shim reads it.
    fn write_credentials(&self) {
        let sshd = site_sshd(&self.site);
        let mut store = serde_json::json!({
            "deploy-ssh": {
                "type": "sshUserPrivateKey",
                "username": sshd.user,
                "privateKeyFile": sshd.client_key,
                "passphrase": "",
            },
            "deploy-known-hosts": { "type": "file", "file": sshd.known_hosts },
        });
        if let Some(url) = &self.chat {
            store["chat-webhook"] = serde_json::json!({ "type": "string", "secret": url });
        }
        std::fs::write(&self.credentials, store.to_string()).unwrap();
    }

    /// Turns chat notifications on, to `url`.
    fn chat_to(&mut self, url: String) {
        self.chat = Some(url);
        self.write_credentials();
    }

    /// Commits `version` to main; `crash` makes the app fail 2.5 s after it
    /// starts, past bg-ship's 1 s settle, as a Spring context can.
    fn commit(&self, version: &str, crash: bool) {
        self.repo.commit(version, crash);
    }

    fn history(&self) -> PathBuf {
        self.site.work.path().join("history.jsonl")
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let sshd = site_sshd(&self.site);
        let host = format!("127.0.0.1:{}", sshd.port);
        let bin = match &self.bin {
            Some(dir) => dir.display().to_string(),
            None => bin_path("bg-ship").parent().unwrap().display().to_string(),
        };
        vec![
            ("BRANCH", "main".into()),
            ("GIT_URL", self.repo.url()),
            ("APP_HOST", host.clone()),
            ("NGINX_HOST", host),
            ("BLUE_PORT", self.site.blue.to_string()),
            ("GREEN_PORT", self.site.green.to_string()),
            ("SITE", "dev".into()),
            (
                "SITES_AVAILABLE",
                self.site.available_dir.display().to_string(),
            ),
            (
                "SITES_ENABLED",
                self.site.nginx.sites_enabled().display().to_string(),
            ),
            ("NGINX_TEST_CMD", self.site.nginx.test_cmd()),
            ("NGINX_RELOAD_CMD", self.site.nginx.reload_cmd()),
            (
                "NGINX_PID_FILE",
                self.site.nginx.pid_file().display().to_string(),
            ),
            ("NGINX_SUDO", "false".into()),
            ("SWITCH_HISTORY_FILE", self.history().display().to_string()),
            ("DEPLOY_PATH", self.deploy.path().display().to_string()),
            ("JAR_PATTERN", "build/libs/demo-{version}.jar".into()),
            ("KEEP_JARS", "3".into()),
            ("SPRING_PROFILE", "test".into()),
            ("JAVA_OPTS", format!("{JAVA_OPTS} -Xmx64m")),
            ("HEALTH_TIMEOUT", "30s".into()),
            ("BG_BIN", bin),
            (
                "CHAT_WEBHOOK_CREDENTIALS_ID",
                if self.chat.is_some() {
                    "chat-webhook".into()
                } else {
                    String::new()
                },
            ),
        ]
    }

    /// Runs a Jenkinsfile through the shim: (succeeded, console log).
    fn run(&mut self, jenkinsfile: &str) -> (bool, String) {
        let rollback = jenkinsfile == ROLLBACK;
        let params = self
            .params()
            .into_iter()
            .filter(|(name, _)| !(rollback && DEPLOY_ONLY.contains(name)))
            .collect();
        let job = if rollback { "bg-rollback" } else { "bg-deploy" };
        self.run_with(job, jenkinsfile, params)
    }

    /// Runs `jenkinsfile` with exactly these parameters.
    fn run_with(
        &mut self,
        job: &str,
        jenkinsfile: &str,
        params: Vec<(&str, String)>,
    ) -> (bool, String) {
        self.builds += 1;
        let (ok, log, _) = Shim {
            jenkinsfile: Path::new(jenkinsfile),
            job,
            build: self.builds,
            credentials: &self.credentials,
            workspace: self.workspace.path(),
            lock_dir: Some(&self.site.work.path().join("locks")),
            params,
        }
        .run();
        (ok, log)
    }

    #[track_caller]
    fn deploy(&mut self, version: &str) -> String {
        self.commit(version, false);
        let (ok, log) = self.run(JENKINSFILE);
        assert!(ok, "the deploy of {version} failed:\n{log}");
        assert!(log.contains("Finished: SUCCESS"), "{log}");
        log
    }

    /// What the app on `port` reports as its version, straight, not through nginx.
    fn version_on(&self, port: u16) -> String {
        match http_get(port, "/version") {
            Some((200, body)) => body.trim().to_string(),
            other => format!("{other:?}"),
        }
    }
}

impl Drop for Job {
    /// Kills every app the pipelines started, from their pid files.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.deploy.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("app-") && name.ends_with(".pid") {
                let pid = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

fn site_sshd(site: &Site) -> &Sshd {
    match &site.via {
        Via::Ssh(sshd) | Via::Openssh(sshd) => sshd,
        Via::Local => unreachable!("the job's site is always reached over SSH"),
    }
}

/// A chat webhook: answers every POST with 200 and keeps the `text` of each.
fn chat_webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/deploys", listener.local_addr().unwrap());
    let texts = Arc::new(Mutex::new(Vec::new()));
    let sink = texts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                sink.lock()
                    .unwrap()
                    .push(value["text"].as_str().unwrap_or("(no text)").to_string());
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (url, texts)
}

#[test]
fn three_deploys_alternate_colors_under_load_and_rollback_restores_the_previous() {
    let begun = Instant::now();
    let mut job = Job::new();
    let (blue, green) = (job.site.blue, job.site.green);

    let first = job.deploy("1.0.0");
    assert!(first.contains("Build version 1.0.0"), "{first}");
    assert!(first.contains("nginx serves port (none yet)"), "{first}");
    job.site.assert_serves("1.0.0");
    assert_eq!(job.site.enabled_port(), blue);

    let load = Load::start(job.site.listen, &["1.0.0", "1.1.0", "1.2.0"]);

    let second = job.deploy("1.1.0");
    assert!(
        second.contains(&format!(
            "nginx serves port {blue}; deploying to port {green}"
        )),
        "{second}"
    );
    job.site.assert_serves("1.1.0");
    assert_eq!(job.site.enabled_port(), green);
    assert_eq!(job.version_on(blue), "1.0.0", "the backup stopped");
    // The last stage printed both colors: versions from bg-ship's records.
    let row = |port: u16| {
        second
            .lines()
            .find(|l| {
                l.starts_with(&format!("{} ", job.site.color(port)))
                    && l.contains(&port.to_string())
            })
            .unwrap_or_else(|| panic!("no bg-status row for {port}:\n{second}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(row(green).contains("active serving up"), "{}", row(green));
    assert!(
        row(green).contains("1.1.0 demo-1.1.0.jar healthy (200)"),
        "{}",
        row(green)
    );
    assert!(row(blue).contains("backup standby up"), "{}", row(blue));
    assert!(
        row(blue).contains("1.0.0 demo-1.0.0.jar healthy (200)"),
        "{}",
        row(blue)
    );

    job.deploy("1.2.0");
    job.site.assert_serves("1.2.0");
    assert_eq!(job.site.enabled_port(), blue);
    assert_eq!(job.version_on(green), "1.1.0", "the backup stopped");

    let (ok, log) = job.run(ROLLBACK);
    assert!(ok, "rollback failed:\n{log}");
    assert!(
        log.contains(&format!("Rolled back: nginx serves port {green}")),
        "{log}"
    );
    job.site.assert_serves("1.1.0");
    assert_eq!(job.site.enabled_port(), green);
    assert_eq!(
        job.version_on(blue),
        "1.2.0",
        "rollback stopped the newer build"
    );

    load.finish("2 deploys and a rollback");

    // Each switch is in the history, by the Jenkins build that made it.
    let history = std::fs::read_to_string(job.history()).unwrap();
    let lines: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{history}");
    assert_eq!(lines[0]["actor"], "jenkins-bg-deploy-1", "{history}");
    assert_eq!(lines[3]["actor"], "jenkins-bg-rollback-4", "{history}");
    // With the versions on both sides, and what each switch was.
    assert_eq!(lines[1]["kind"], "deploy", "{history}");
    assert_eq!(lines[1]["from_version"], "1.0.0", "{history}");
    assert_eq!(lines[1]["to_version"], "1.1.0", "{history}");
    assert_eq!(lines[3]["kind"], "rollback", "{history}");
    assert_eq!(lines[3]["from_version"], "1.2.0", "{history}");
    assert_eq!(lines[3]["to_version"], "1.1.0", "{history}");
    eprintln!("test took {:?}", begun.elapsed());
}

#[test]
fn a_crashing_build_stops_at_health_check_and_nginx_keeps_the_previous() {
    // The Jenkinsfile posts to the chat with curl.
    need("curl");
    let mut job = Job::new();
    let (blue, green) = (job.site.blue, job.site.green);
    let (url, chat) = chat_webhook();
    job.chat_to(url);
    job.deploy("2.0.0");
    job.site.assert_serves("2.0.0");
    assert_eq!(
        *chat.lock().unwrap(),
        [
            "bg-deploy #1: deploying main".to_string(),
            format!("bg-deploy #1: deployed 2.0.0 on port {blue}"),
        ]
    );

    job.commit("2.1.0", true);
    let (ok, log) = job.run(JENKINSFILE);
    assert!(!ok, "a crashing build deployed:\n{log}");
    assert!(log.contains("[shim] failed stage: Health Check"), "{log}");
    assert!(
        log.contains("Stage \"Switch\" skipped due to earlier failure(s)"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Deploy failed at stage 'Health Check'. nginx still serves the previous build on port {blue}"
        )),
        "{log}"
    );
    // bg-healthcheck showed the app's own words.
    assert!(log.contains("APPLICATION FAILED TO START"), "{log}");
    assert!(log.contains("Finished: FAILURE"), "{log}");
    job.site.assert_serves("2.0.0");
    assert_eq!(job.site.enabled_port(), blue);
    assert_eq!(
        chat.lock().unwrap()[2..],
        [
            "bg-deploy #2: deploying main".to_string(),
            format!(
                "bg-deploy #2: Deploy failed at stage 'Health Check'. nginx still serves the previous \
                 build on port {blue}; the new build was not switched in. http://jenkins.invalid/job/bg-deploy/2/"
            ),
        ]
    );

    // A chat that does not answer is reported, and the deploy goes on.
    let closed = ClosedPort::new();
    job.chat_to(format!("http://127.0.0.1:{}/hooks/deploys", closed.port));

    // The next good build goes to the same target port, over the crashed one;
    // a bg-status that fails (here: one that cannot run) does not fail it.
    let bin = job.site.work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for entry in std::fs::read_dir(bin_path("bg-ship").parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.is_file() && name != "bg-status" {
            std::os::unix::fs::symlink(&path, bin.join(name)).unwrap();
        }
    }
    write(
        &bin,
        "bg-status",
        "#!/bin/sh\necho 'bg-status: error: broken on purpose' >&2\nexit 4\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("bg-status"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    job.bin = Some(bin);
    let log = job.deploy("2.1.1");
    assert!(
        log.contains("bg-status exited 4; the deploy is done all the same"),
        "{log}"
    );
    assert!(
        log.contains("chat notification failed (curl exit 7); the deploy goes on"),
        "{log}"
    );
    job.site.assert_serves("2.1.1");
    assert_eq!(job.site.enabled_port(), green);
    assert_eq!(job.version_on(blue), "2.0.0");
}

#[test]
fn the_pipelines_trust_only_pinned_host_keys() {
    for path in [JENKINSFILE, ROLLBACK] {
        let text = std::fs::read_to_string(path).unwrap();
        for banned in [
            "StrictHostKeyChecking",
            "host-key-check off",
            "accept-new",
            "BG_HOST_KEY_CHECK = 'off'",
        ] {
            assert!(!text.contains(banned), "{path} contains {banned}");
        }
        assert!(text.contains("BG_HOST_KEY_CHECK = 'strict'"), "{path}");
        assert!(text.contains("variable: 'BG_KNOWN_HOSTS'"), "{path}");
        assert!(text.contains("disableConcurrentBuilds()"), "{path}");
    }
}

/// The alternative to a key file: Jenkins' `sshagent` step, which sets only
/// SSH_AUTH_SOCK; the user comes with the host. The known_hosts file is pinned
/// all the same.
#[test]
fn the_binaries_work_under_sshagent() {
    let mut job = Job::new();
    let jenkinsfile = job.site.work.path().join("Jenkinsfile.sshagent");
    std::fs::write(
        &jenkinsfile,
        r#"
pipeline {
    agent any
    parameters {
        string(name: 'BG_BIN', defaultValue: '')
        string(name: 'NGINX_HOST', defaultValue: '')
        string(name: 'BLUE_PORT', defaultValue: '')
        string(name: 'GREEN_PORT', defaultValue: '')
        string(name: 'SITES_AVAILABLE', defaultValue: '')
        string(name: 'SITES_ENABLED', defaultValue: '')
    }
    environment {
        BG_BLUE_PORT = "${params.BLUE_PORT}"
        BG_GREEN_PORT = "${params.GREEN_PORT}"
        BG_SITES_AVAILABLE = "${params.SITES_AVAILABLE}"
        BG_SITES_ENABLED = "${params.SITES_ENABLED}"
    }
    stages {
        stage('Detect Port') {
            steps {
                sshagent(credentials: ['deploy-ssh']) {
                    withCredentials([file(credentialsId: 'deploy-known-hosts', variable: 'BG_KNOWN_HOSTS')]) {
                        script {
                            String target = sh(returnStdout: true, script: '''
                                [ -n "$SSH_AUTH_SOCK" ] && [ -z "${BG_SSH_KEY:-}" ]
                                "$BG_BIN/bg-detect-port" --host "$NGINX_HOST"
                            ''').trim()
                            echo "target port ${target}"
                        }
                    }
                }
            }
        }
    }
}
"#,
    )
    .unwrap();
    let sshd = site_sshd(&job.site);
    let wanted = [
        "BG_BIN",
        "BLUE_PORT",
        "GREEN_PORT",
        "SITES_AVAILABLE",
        "SITES_ENABLED",
    ];
    let mut params: Vec<(&str, String)> = job
        .params()
        .into_iter()
        .filter(|(name, _)| wanted.contains(name))
        .collect();
    params.push(("NGINX_HOST", sshd.target()));
    let blue = job.site.blue;
    let (ok, log) = job.run_with("bg-sshagent", jenkinsfile.to_str().unwrap(), params);
    assert!(ok, "{log}");
    assert!(log.contains(&format!("target port {blue}")), "{log}");
}

/// A Jenkinsfile written by a test and run through the shim, in a workspace
/// of its own; no sshd, nginx or app. For the shim's own steps, here
/// `parallel`.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempdir("bg-jenkins-fixture-");
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        // One secret, for withCredentials in a branch.
        std::fs::write(
            dir.path().join("credentials.json"),
            r#"{ "token": { "type": "string", "secret": "s3cret" } }"#,
        )
        .unwrap();
        Fixture { dir }
    }

    /// The workspace, as the shim names it (WORKSPACE, `pwd()`).
    fn workspace(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("ws")).unwrap()
    }

    /// Runs `text` as the Jenkinsfile: (succeeded, console log, how long it took).
    fn run(&self, text: &str) -> (bool, String, Duration) {
        let jenkinsfile = self.dir.path().join("Jenkinsfile");
        std::fs::write(&jenkinsfile, text).unwrap();
        Shim {
            jenkinsfile: &jenkinsfile,
            job: "fixture",
            build: 1,
            credentials: &self.dir.path().join("credentials.json"),
            workspace: &self.workspace(),
            lock_dir: None,
            params: Vec::new(),
        }
        .run()
    }
}

/// Asserts that each of `lines` is a whole line of `log`.
#[track_caller]
fn assert_lines(log: &str, lines: &[impl AsRef<str>]) {
    for line in lines.iter().map(AsRef::as_ref) {
        assert!(log.lines().any(|l| l == line), "no line {line:?}:\n{log}");
    }
}

/// A pipeline of one stage, Fleet, whose `script` block is `script`, and a
/// second stage, Next. Fleet's post prints `env.CAUGHT`.
fn fleet(script: &str) -> String {
    format!(
        r#"
pipeline {{
    agent any
    stages {{
        stage('Fleet') {{
            environment {{ STAGE_X = 'from the stage' }}
            steps {{
                script {{
{script}
                }}
            }}
            post {{ always {{ echo "caught: ${{env.CAUGHT}}" }} }}
        }}
        stage('Next') {{
            steps {{ echo 'next stage' }}
        }}
    }}
}}
"#
    )
}

/// Pids of the processes whose command line has `arg` as one of its arguments.
fn processes_with(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Kills what a failed test may have left running with `arg` in its command line.
struct KillLeftovers(String);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for pid in processes_with(&self.0) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Two branches that each wait for the other's file: they finish only when
/// they run at the same time (one after the other, the first gives up after 10 s).
#[test]
fn parallel_branches_run_at_the_same_time() {
    let fixture = Fixture::new();
    let (ok, log, _) = fixture.run(&fleet(
        r#"
                    Map branches = [:]
                    for (String h : ['a', 'b']) {
                        String me = h
                        String other = h == 'a' ? 'b' : 'a'
                        branches[me] = {
                            sh "touch ${me}.ready; i=0; while [ ! -f ${other}.ready ]; do i=\$((i+1)); [ \$i -le 100 ] || exit 1; sleep 0.1; done"
                            echo "${me} met ${other}"
                        }
                    }
                    parallel branches
                    echo 'both met'
"#,
    ));
    assert!(ok, "{log}");
    assert_lines(
        &log,
        &[
            "[Pipeline] parallel",
            "[Pipeline] { (Branch: a)",
            "[Pipeline] { (Branch: b)",
            "[a] a met b",
            "[b] b met a",
            "[Pipeline] // parallel",
            "both met",
            "next stage",
            "Finished: SUCCESS",
        ],
    );
    assert!(!log.contains("Failed in branch"), "{log}");
}

/// failFast: the first failure aborts the other branch at once. Its `sh`, a
/// shell whose child's child is a long sleep, is killed with all of it; no
/// later step of that branch starts (not even after a catch), and `retry` does
/// not retry it.
#[test]
fn parallel_fail_fast_kills_the_other_branch_and_its_processes() {
    let fixture = Fixture::new();
    let ws = fixture.workspace();
    // A long sleep, told apart from any other by its argument.
    let marker = format!("120.{}", std::process::id());
    let _cleanup = KillLeftovers(marker.clone());
    let (ok, log, took) = fixture.run(
        &fleet(
            r#"
                    Map branches = [:]
                    branches['fast'] = {
                        // Fails once the sleep runs.
                        sh 'i=0; while [ ! -s sleep.pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 1'
                    }
                    branches['slow'] = {
                        try {
                            retry(3) {
                                sh '''sh -c 'echo $$ > sleep.pid; exec sleep MARKER'; touch done'''
                            }
                        } catch (e) {
                            env.CAUGHT = e.message
                        }
                        sh 'touch later'
                    }
                    branches.failFast = true
                    parallel branches
                    echo 'after parallel'
"#,
        )
        .replace("MARKER", &marker),
    );
    assert!(!ok, "{log}");
    assert!(
        took < Duration::from_secs(60),
        "the pipeline waited for the sleep: {took:?}\n{log}"
    );
    assert_lines(
        &log,
        &[
            "Failed in branch fast",
            "failFast: branch fast failed; aborting branch slow",
            "[slow] Sending interrupt signal to process",
            "Failed in branch slow",
            "[Pipeline] // parallel",
            "ERROR: Failed in branch fast: script returned exit code 1; aborted (failFast): branch slow",
            "caught: aborted: failFast, branch fast failed",
            "Stage \"Next\" skipped due to earlier failure(s)",
            "[shim] failed stage: Fleet",
            "Finished: FAILURE",
        ],
    );
    assert!(!log.contains("Retrying"), "{log}");
    assert!(!log.contains("after parallel"), "{log}");
    let pid = std::fs::read_to_string(ws.join("sleep.pid")).unwrap();
    let pid = pid.trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&marker),
        "the sleep ({pid}) still runs"
    );
    assert_eq!(
        processes_with(&marker),
        Vec::<u32>::new(),
        "a sleep remains"
    );
    assert!(!ws.join("done").exists(), "the aborted sh ran to its end");
    assert!(
        !ws.join("later").exists(),
        "a step of the aborted branch started"
    );
}

/// Without failFast a failure aborts nothing: the other branches run to their
/// end (here one succeeds, one fails later), and then `parallel` fails the
/// stage naming every failed branch.
#[test]
fn parallel_without_fail_fast_lets_the_other_branches_finish() {
    let fixture = Fixture::new();
    let ws = fixture.workspace();
    let (ok, log, _) = fixture.run(&fleet(
        r#"
                    parallel(
                        fast: { sh 'touch failed; exit 1' },
                        slow: {
                            sh 'i=0; while [ ! -f failed ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -f failed ]'
                            sh 'touch done'
                        },
                        later: {
                            sh 'i=0; while [ ! -f done ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 2'
                        }
                    )
                    echo 'after parallel'
"#,
    ));
    assert!(!ok, "{log}");
    assert!(ws.join("done").exists(), "the slow branch stopped:\n{log}");
    assert_lines(
        &log,
        &[
            "Failed in branch fast",
            "Failed in branch later",
            "ERROR: Failed in branch fast: script returned exit code 1; Failed in branch later: script returned exit code 2",
            "Stage \"Next\" skipped due to earlier failure(s)",
            "[shim] failed stage: Fleet",
            "Finished: FAILURE",
        ],
    );
    assert!(!log.contains("Failed in branch slow"), "{log}");
    assert!(!log.contains("Sending interrupt signal"), "{log}");
    assert!(!log.contains("after parallel"), "{log}");
}

/// Each branch has its own copy of the caller's scoped environment and
/// directory: withEnv, withCredentials and dir in one branch are not seen in
/// the other, checked while the first is inside them. `env.X = ...` in a
/// branch is the build's, seen by the other branch and after `parallel`.
#[test]
fn parallel_branches_have_their_own_scoped_environment_and_directory() {
    let fixture = Fixture::new();
    let ws = fixture.workspace().display().to_string();
    let (ok, log, _) = fixture.run(&fleet(
        r#"
                    parallel(
                        a: {
                            withEnv(['ONLY_A=yes']) {
                                withCredentials([string(credentialsId: 'token', variable: 'TOKEN')]) {
                                    dir('sub-a') {
                                        env.FROM_A = 'set in a'
                                        // Stays in here until b has looked.
                                        sh 'touch ../a.inside; i=0; while [ ! -f ../b.looked ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -f ../b.looked ]'
                                        echo "ONLY_A=${env.ONLY_A} TOKEN=${env.TOKEN} pwd=${pwd()}"
                                    }
                                }
                            }
                        },
                        b: {
                            sh 'i=0; while [ ! -f a.inside ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -f a.inside ]'
                            echo "ONLY_A=${env.ONLY_A} TOKEN=${env.TOKEN} pwd=${pwd()} STAGE_X=${env.STAGE_X}"
                            sh 'echo "b sh: ONLY_A=${ONLY_A:-unset} TOKEN=${TOKEN:-unset} FROM_A=$FROM_A pwd=$(pwd)"; touch b.looked'
                        },
                        failFast: true
                    )
                    echo "after: FROM_A=${env.FROM_A} ONLY_A=${env.ONLY_A} TOKEN=${env.TOKEN} pwd=${pwd()} STAGE_X=${env.STAGE_X}"
                    sh 'echo "after sh: FROM_A=$FROM_A"'
"#,
    ));
    assert!(ok, "{log}");
    assert_lines(
        &log,
        &[
            format!("[a] ONLY_A=yes TOKEN=s3cret pwd={ws}/sub-a"),
            format!("[b] ONLY_A=null TOKEN=null pwd={ws} STAGE_X=from the stage"),
            format!("b sh: ONLY_A=unset TOKEN=unset FROM_A=set in a pwd={ws}"),
            format!(
                "after: FROM_A=set in a ONLY_A=null TOKEN=null pwd={ws} STAGE_X=from the stage"
            ),
            "after sh: FROM_A=set in a".to_string(),
            "Finished: SUCCESS".to_string(),
        ],
    );
}
