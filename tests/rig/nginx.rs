//! A real nginx with its own prefix, config and pid file in a temp dir,
//! never the system one. The master runs in the foreground as our child;
//! `test_cmd()` and `reload_cmd()` are what bg-switch is given.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{free_port, wait_for_port};

const NGINX: &str = "/usr/sbin/nginx";

pub struct Nginx {
    pub dir: TempDir,
    /// The port the rig's own status server listens on.
    pub status_port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Lays out `sites-available/`, `sites-enabled/`, `conf.d/` and nginx.conf;
    /// the test writes its site files, then calls [`Nginx::start`].
    pub fn new() -> Nginx {
        crate::need(NGINX);
        let dir = tempfile::Builder::new()
            .prefix("bg-nginx-")
            .tempdir()
            .unwrap();
        for sub in ["sites-available", "sites-enabled", "conf.d", "tmp", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Nginx {
            dir,
            status_port: 0,
            child: None,
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn sites_available(&self) -> PathBuf {
        self.path("sites-available")
    }

    pub fn sites_enabled(&self) -> PathBuf {
        self.path("sites-enabled")
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        // Workers run as root when we are root; otherwise `user` would only warn.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        std::fs::write(
            self.path("nginx.conf"),
            format!(
                "{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/logs/error.log notice;\nevents {{ worker_connections 512; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
                 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
                 server {{ listen 127.0.0.1:{status}; return 200 \"rig\\n\"; }}\n\
                 include {d}/conf.d/*.conf;\n  include {d}/sites-enabled/*;\n}}\n",
                status = self.status_port,
            ),
        )
        .unwrap();
    }

    /// `nginx -p DIR -c DIR/nginx.conf -e DIR/logs/error.log`, as one shell line.
    pub fn base_cmd(&self) -> String {
        let d = self.dir.path().display();
        format!("{NGINX} -p {d} -c {d}/nginx.conf -e {d}/logs/error.log")
    }

    pub fn test_cmd(&self) -> String {
        format!("{} -t -q", self.base_cmd())
    }

    pub fn reload_cmd(&self) -> String {
        format!("{} -s reload", self.base_cmd())
    }

    /// Starts the master and waits until it listens.
    pub fn start(&mut self) {
        for _attempt in 0..10 {
            self.status_port = free_port();
            self.write_config();
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(format!("exec {}", self.base_cmd()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(crate::cannot_run("sh"));
            // nginx listens before it writes its pid file, and `nginx -s reload`
            // reads that file: ready means both.
            if wait_for_port(self.status_port, Duration::from_secs(10)) {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while self.pid() != Some(child.id()) {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "nginx never wrote its pid file"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !stderr.contains("Address already in use") {
                panic!("nginx did not start:\n{stderr}\n{}", self.error_log());
            }
        }
        panic!("nginx found no free port in 10 attempts");
    }

    /// Reloads the way an operator would (`nginx -s reload`).
    pub fn reload(&self) {
        crate::sh("sh", &["-c", &self.reload_cmd()]);
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.path("logs/error.log")).unwrap_or_default()
    }

    /// Enables site `name`: a server on 127.0.0.1:`listen` that passes
    /// everything to the upstream `backend`, as in the managed layout.
    pub fn enable_backend_site(&self, name: &str, listen: u16) {
        std::fs::write(
            self.sites_enabled().join(name),
            format!(
                "server {{\n    listen 127.0.0.1:{listen};\n    location / {{ proxy_pass http://backend; }}\n}}\n"
            ),
        )
        .unwrap();
    }

    /// The master's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.path("nginx.pid")
    }

    /// The master's pid, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Default for Nginx {
    fn default() -> Self {
        Nginx::new()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is nginx's fast shutdown; the workers go with the master.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}
