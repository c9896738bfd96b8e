//! A blue/green site behind the rig's real nginx, shared by the
//! bg-detect-port and bg-switch tests: two stand-in apps (or none), the two
//! site files in the seed's shape, and the flags that point our binaries at
//! them, locally or over the rig's sshd.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bg_deploy_tests::{App, Bin, Nginx, Run, Sshd, free_port, http_get, wait_for_port};
use tempfile::TempDir;

/// Where the binaries act: here, or over SSH on the same machine.
pub enum Via {
    Local,
    /// libssh2, built in.
    Ssh(Sshd),
    /// The system's `ssh`.
    Openssh(Sshd),
}

impl Via {
    pub fn start(ssh: bool) -> Via {
        if ssh {
            Via::Ssh(Sshd::start())
        } else {
            Via::Local
        }
    }

    pub fn openssh() -> Via {
        Via::Openssh(Sshd::start())
    }

    pub fn args(&self) -> Vec<String> {
        match self {
            Via::Local => Vec::new(),
            Via::Ssh(sshd) => sshd.host_args(),
            Via::Openssh(sshd) => sshd.openssh_args(),
        }
    }
}

/// Runs one scenario as `NAME::local`, `NAME::ssh` and `NAME::openssh`.
#[macro_export]
macro_rules! both_ways {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn local() {
                ($body)(nginx_site::Via::start(false));
            }

            #[test]
            fn ssh() {
                ($body)(nginx_site::Via::start(true));
            }

            #[test]
            fn openssh() {
                ($body)(nginx_site::Via::openssh());
            }
        }
    };
}

pub struct Site {
    pub nginx: Nginx,
    /// Logs, history, locks, markers.
    pub work: TempDir,
    pub name: String,
    pub blue: u16,
    pub green: u16,
    /// Where nginx serves the site.
    pub listen: u16,
    pub apps: Vec<App>,
    pub via: Via,
    /// `sites-available`, or another directory given with `--sites-available`.
    pub available_dir: PathBuf,
}

/// A site file in the seed's shape: an upstream with `primary` and
/// `backup`, and a server block passing to it.
pub fn site_file(listen: u16, primary: u16, backup: u16, extra: &str) -> String {
    format!(
        "# {primary} primary, {backup} backup\r\n\
         upstream backend {{\r\n\
         \x20   server 127.0.0.1:{primary} fail_timeout=60s max_fails=5;\r\n\
         \x20   server 127.0.0.1:{backup} backup;\r\n\
         }}\r\n\
         server {{\r\n\
         \x20   listen 127.0.0.1:{listen};\r\n\
         {extra}\
         \x20   location / {{\r\n\
         \x20       proxy_set_header Host $host;\r\n\
         \x20       proxy_pass http://backend;\r\n\
         \x20   }}\r\n\
         }}\r\n"
    )
}

impl Site {
    /// Site `name` with files named as in the seed, where the file named
    /// after a port holds the *other* port as primary (names are not
    /// trusted); nothing enabled, nginx not started, no apps.
    pub fn new(name: &str, via: Via) -> Site {
        Site::with_available_dir(name, via, "sites-available")
    }

    /// The same, with the site files in `DIR/available` (any name).
    pub fn with_available_dir(name: &str, via: Via, available: &str) -> Site {
        let nginx = Nginx::new();
        let available_dir = nginx.path(available);
        std::fs::create_dir_all(&available_dir).unwrap();
        let work = tempfile::Builder::new()
            .prefix("bg-site-")
            .tempdir()
            .unwrap();
        let (blue, green, listen) = (free_port(), free_port(), free_port());
        let site = Site {
            nginx,
            work,
            name: name.to_string(),
            blue,
            green,
            listen,
            apps: Vec::new(),
            via,
            available_dir,
        };
        site.write_available(blue, &site_file(listen, green, blue, ""));
        site.write_available(green, &site_file(listen, blue, green, ""));
        site
    }

    /// `sites-available/NAME_PORT`.
    pub fn available(&self, port: u16) -> PathBuf {
        self.available_dir.join(format!("{}_{port}", self.name))
    }

    pub fn write_available(&self, port: u16, text: &str) {
        std::fs::write(self.available(port), text).unwrap();
    }

    /// Links the file that routes to `port` (named after the other port).
    pub fn enable(&self, port: u16) {
        let file = self.available(self.other(port));
        let link = self.nginx.sites_enabled().join(file.file_name().unwrap());
        std::os::unix::fs::symlink(&file, link).unwrap();
    }

    pub fn other(&self, port: u16) -> u16 {
        if port == self.blue {
            self.green
        } else {
            self.blue
        }
    }

    /// Starts both apps (`/version` answers blue or green) and nginx.
    pub fn start(&mut self, green_props: &[(&str, &str)]) {
        let blue = App::start(
            self.blue,
            &[("app.version", "blue")],
            &self.work.path().join("blue.log"),
        );
        let mut props = vec![("app.version", "green")];
        props.extend_from_slice(green_props);
        let green = App::start(self.green, &props, &self.work.path().join("green.log"));
        for app in [&blue, &green] {
            assert!(
                wait_for_port(app.port, Duration::from_secs(30)),
                "app on {} did not start",
                app.port
            );
        }
        self.apps = vec![blue, green];
        self.nginx.start();
    }

    pub fn color(&self, port: u16) -> &'static str {
        if port == self.blue { "blue" } else { "green" }
    }

    /// The layout flags for our binaries.
    pub fn layout_args(&self) -> Vec<String> {
        let mut args = self.via.args();
        args.extend([
            "--site".to_string(),
            self.name.clone(),
            "--blue-port".into(),
            self.blue.to_string(),
            "--green-port".into(),
            self.green.to_string(),
            "--sites-available".into(),
            self.available_dir.display().to_string(),
            "--sites-enabled".into(),
            self.nginx.sites_enabled().display().to_string(),
        ]);
        args
    }

    pub fn history(&self) -> PathBuf {
        self.work.path().join("history dir/switches.jsonl")
    }

    pub fn reloads(&self) -> PathBuf {
        self.work.path().join("reloads")
    }

    /// The reload command, counting its runs in `reloads()`.
    pub fn reload_cmd(&self) -> String {
        format!(
            "echo reload >> '{}' && {}",
            self.reloads().display(),
            self.nginx.reload_cmd()
        )
    }

    pub fn reload_count(&self) -> usize {
        std::fs::read_to_string(self.reloads())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    pub fn detect(&self, extra: &[&str]) -> Run {
        Bin::new("bg-detect-port")
            .args(self.layout_args())
            .args(extra)
            .run()
    }

    /// bg-switch with the rig's test and reload commands, history and locks in `work`.
    pub fn switch_bin(&self, port: u16, extra: &[&str]) -> Bin {
        self.switch_to(&["--port", &port.to_string()], extra)
    }

    /// bg-switch --previous, with the site's defaults as [`Site::switch_bin`].
    pub fn previous(&self, extra: &[&str]) -> Run {
        self.previous_bin(extra).run()
    }

    pub fn previous_bin(&self, extra: &[&str]) -> Bin {
        self.switch_to(&["--previous"], extra)
    }

    fn switch_to(&self, target: &[&str], extra: &[&str]) -> Bin {
        let defaults = [
            ("--test-cmd", self.nginx.test_cmd()),
            ("--reload-cmd", self.reload_cmd()),
            ("--history-file", self.history().display().to_string()),
            (
                "--nginx-pid-file",
                self.nginx.pid_file().display().to_string(),
            ),
            (
                "--lock-dir",
                self.work.path().join("locks").display().to_string(),
            ),
        ];
        let mut bin = Bin::new("bg-switch")
            .env("BG_ACTOR", "tester")
            .args(target)
            .args(self.layout_args());
        // A flag the test gives replaces the default.
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                bin = bin.arg(flag).arg(value);
            }
        }
        bin.args(extra)
    }

    pub fn switch(&self, port: u16, extra: &[&str]) -> Run {
        self.switch_bin(port, extra).run()
    }

    /// The history, one JSON value per line.
    pub fn history_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.history())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// sites-enabled's entries, sorted.
    pub fn enabled(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.nginx.sites_enabled())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The one enabled entry and the port its target's content routes to.
    pub fn enabled_port(&self) -> u16 {
        let names = self.enabled();
        assert_eq!(names.len(), 1, "not exactly one enabled: {names:?}");
        let text = std::fs::read_to_string(self.nginx.sites_enabled().join(&names[0])).unwrap();
        bg_core::nginx::read(&text)
            .unwrap()
            .route()
            .unwrap()
            .single_port()
            .unwrap()
    }

    /// What nginx serves at `/version`: `blue`, `green`, or why nothing.
    pub fn serves(&self) -> String {
        match http_get(self.listen, "/version") {
            Some((200, body)) => body.trim().to_string(),
            Some((status, body)) => format!("status {status}: {body}"),
            None => "no answer".to_string(),
        }
    }

    /// Waits until nginx serves `color` ten times in a row: for a moment
    /// after a reload, old workers still answer with the previous config.
    #[track_caller]
    pub fn assert_serves(&self, color: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut in_a_row = 0;
        while in_a_row < 10 {
            let now = self.serves();
            if now == color {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                assert!(
                    Instant::now() < deadline,
                    "nginx serves {now:?}, not {color:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn marker(&self) -> PathBuf {
        self.work.path().join("pwned")
    }
}

/// A `sudo` that logs what it runs (the first line of `sh -c`'s script),
/// then runs it: for --sudo tests as root.
pub fn fake_sudo(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = -n ] && shift\n[ \"$1\" = -- ] && shift\nprintf '%s\\n' \"$3\" | head -n 1 >> '{}'\nexec \"$@\"\n",
        dir.join("sudo.log").display()
    );
    let path = bin.join("sudo");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}
