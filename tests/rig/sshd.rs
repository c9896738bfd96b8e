//! A real OpenSSH server on a free loopback port, with its own host key,
//! client key, authorized_keys and a known_hosts file for the client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tempfile::TempDir;

use crate::{current_user, free_port, sh};

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, passphrase: &str) -> PathBuf {
    sh(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "bg-test",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    path.to_path_buf()
}

pub struct Sshd {
    /// The address it listens on: 127.0.0.1, or a network namespace's own.
    pub address: String,
    pub port: u16,
    pub dir: TempDir,
    /// The client key authorized on the server.
    pub client_key: PathBuf,
    /// A known_hosts file holding the server's key as `[ADDRESS]:port`
    /// (plain `ADDRESS` on port 22).
    pub known_hosts: PathBuf,
    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    pub user: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// Starts a server; panics with its log when it cannot.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// Starts a server with `extra` lines in its config (`Ciphers
    /// aes128-ctr\n`, `LogLevel DEBUG1\n`, say). They come first, so they
    /// win over the rig's own lines: sshd keeps the first value it reads.
    pub fn start_with(extra: &str) -> Sshd {
        Sshd::start_at(None, extra)
    }

    /// Starts a server inside the network namespace `netns`, on its own
    /// address at port 22 as on a real host, in a mount namespace of its own
    /// where `own` is mounted on `shared`: every host of a fleet has its
    /// deploy directory at the same path, as servers do. Panics when it cannot.
    pub fn start_in(netns: &crate::Netns, own: &Path, shared: &Path) -> Sshd {
        Sshd::start_at(Some((netns, own, shared)), "")
    }

    fn start_at(netns: Option<(&crate::Netns, &Path, &Path)>, extra: &str) -> Sshd {
        crate::need(SSHD);
        // sshd wants its privilege separation directory to exist.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("bg-sshd-")
            .tempdir()
            .unwrap();
        let host_key = keygen(&dir.path().join("host_ed25519"), "");
        let client_key = keygen(&dir.path().join("client_ed25519"), "");
        std::fs::copy(
            dir.path().join("client_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_pub: String = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let user = current_user();
        // The sessions' TMPDIR: the host side of a run keeps its scratch
        // files there (the mux's `bg-mux.*`), and a session killed when the
        // server stops cannot remove its own; they go with this directory.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();

        let address = netns.map_or("127.0.0.1".to_string(), |(ns, ..)| ns.address.to_string());
        for _attempt in 0..10 {
            // A namespace's port 22 is its own: nothing else can take it.
            let port = if netns.is_some() { 22 } else { free_port() };
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "{extra}SetEnv TMPDIR={tmp}\nPort {port}\nListenAddress {address}\nHostKey {host_key}\nAuthorizedKeysFile {dir}/authorized_keys\n\
                     PidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                     AllowUsers {user}\nMaxStartups 100\nMaxAuthTries 10\nLogLevel VERBOSE\n\
                     Subsystem sftp internal-sftp\n",
                    host_key = host_key.display(),
                    dir = dir.path().display(),
                    tmp = tmp.display(),
                ),
            )
            .unwrap();
            let mut command = match netns {
                // ip, unshare and sh each exec the next: the child is sshd.
                Some((ns, own, shared)) => {
                    let mut command = Command::new("ip");
                    command
                        .args(["netns", "exec", &ns.name, "unshare", "--mount", "--"])
                        .args([
                            "sh",
                            "-c",
                            r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#,
                        ])
                        .args(["sh".as_ref(), own.as_os_str(), shared.as_os_str()])
                        .arg(SSHD);
                    command
                }
                None => Command::new(SSHD),
            };
            let mut child = command
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(crate::cannot_run(SSHD));
            let log = Arc::new(Mutex::new(String::new()));
            let (ready_tx, ready_rx) = mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Server listening on") {
                        let _ = ready_tx.send(true);
                    }
                    sink.lock().unwrap().push_str(&format!("{line}\n"));
                }
                let _ = ready_tx.send(false);
            });
            match ready_rx.recv_timeout(Duration::from_secs(20)) {
                Ok(true) => {
                    let known_hosts = dir.path().join("known_hosts");
                    let entry = match port {
                        22 => address.clone(),
                        _ => format!("[{address}]:{port}"),
                    };
                    std::fs::write(&known_hosts, format!("{entry} {host_pub}\n")).unwrap();
                    return Sshd {
                        address,
                        port,
                        client_key,
                        known_hosts,
                        host_key: host_pub,
                        user,
                        child,
                        log,
                        dir,
                    };
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = log.lock().unwrap().clone();
                    if !text.contains("Address already in use") {
                        panic!("sshd did not start:\n{text}");
                    }
                }
            }
        }
        panic!("sshd found no free port in 10 attempts");
    }

    /// `user@ADDRESS:port`.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The flags that reach this server with the authorized key, strictly checked.
    pub fn host_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.target(),
            "--identity".into(),
            self.client_key.display().to_string(),
            "--known-hosts".into(),
            self.known_hosts.display().to_string(),
            // The machine's own ~/.ssh/config must not steer the tests.
            "--no-ssh-config".into(),
        ]
    }

    /// The flags that reach this server through the system's `ssh`: the same
    /// key and known_hosts, and no ssh_config as in [`Sshd::host_args`]
    /// (OpenSSH finds `~` in the password database, not in `$HOME`, so a
    /// machine's own `~/.ssh/config` could otherwise change what the tests run).
    pub fn openssh_args(&self) -> Vec<String> {
        let mut args = self.host_args();
        args.extend(["--ssh-client", "openssh"].map(String::from));
        args
    }

    /// The same, as library options, with the shared connection's socket in
    /// this server's directory.
    pub fn openssh_options(&self) -> bg_core::host::OpensshOptions {
        let target = bg_core::host::Target::parse(&self.target()).unwrap();
        let mut options = bg_core::host::OpensshOptions::new(target);
        options.identity = Some(self.client_key.clone());
        options.known_hosts = Some(self.known_hosts.clone());
        options.connect_timeout = Some(Duration::from_secs(10));
        options.config = Some(PathBuf::from("/dev/null"));
        options.control_dir = Some(self.control_dir());
        options
    }

    /// Where [`Sshd::openssh_options`] keeps its shared connections.
    pub fn control_dir(&self) -> PathBuf {
        self.dir.path().join("mux")
    }

    pub fn connect_openssh(&self) -> bg_core::host::OpensshHost {
        bg_core::host::OpensshHost::connect(&self.openssh_options())
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", self.log()))
    }

    /// The connections sshd accepted so far.
    pub fn connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("Connection from "))
            .count()
    }

    /// The same, as library options.
    pub fn options(&self) -> bg_core::host::SshOptions {
        let target = bg_core::host::Target::parse(&self.target()).unwrap();
        let mut options = bg_core::host::SshOptions::new(target);
        options.identity = Some(self.client_key.clone());
        options.known_hosts = Some(self.known_hosts.clone());
        options.connect_timeout = Duration::from_secs(10);
        options
    }

    pub fn connect(&self) -> bg_core::host::SshHost {
        bg_core::host::SshHost::connect(&self.options())
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", self.log()))
    }

    /// Adds a public key to authorized_keys.
    pub fn authorize(&self, public_key: &Path) {
        let line = std::fs::read_to_string(public_key).unwrap();
        let path = self.dir.path().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&path).unwrap();
        keys.push_str(&line);
        std::fs::write(path, keys).unwrap();
    }

    /// Replaces authorized_keys with exactly these public keys.
    pub fn authorize_only(&self, public_keys: &[&Path]) {
        let text: String = public_keys
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        std::fs::write(self.dir.path().join("authorized_keys"), text).unwrap();
    }

    /// Everything sshd logged before this call: a new connection's first
    /// line comes after whatever its processes wrote earlier, so once the
    /// log shows it, the earlier lines are in.
    pub fn settled_log(&self) -> String {
        use std::io::Read;
        let mut probe = std::net::TcpStream::connect((self.address.as_str(), self.port)).unwrap();
        let mine = format!(
            "Connection from {} port {} ",
            probe.local_addr().unwrap().ip(),
            probe.local_addr().unwrap().port()
        );
        // Its banner: sshd has logged the connection by then.
        let _ = probe.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = probe.read(&mut [0u8; 64]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log();
            if text.contains(&mine) || std::time::Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What sshd said so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until sshd's log has a line containing every one of `parts`
    /// (it writes its log on its own schedule); false after `timeout`.
    pub fn wait_for_log(&self, parts: &[&str], timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .log()
                .lines()
                .any(|line| parts.iter().all(|p| line.contains(p)))
            {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `Host` block of ssh_config that reaches this server as `alias`
    /// with its authorized key and known_hosts file.
    pub fn ssh_config_block(&self, alias: &str) -> String {
        format!(
            "Host {alias}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
            self.address,
            self.port,
            self.user,
            self.client_key.display(),
            self.known_hosts.display()
        )
    }
}

impl Drop for Sshd {
    /// Ends the server and every session it serves. Killing the listener
    /// alone would leave its per-connection processes (each in a session of
    /// its own) serving, and with them the OpenSSH masters of the tests,
    /// which end only when their connection does.
    fn drop(&mut self) {
        let sessions = descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &pid in &sessions {
            // SAFETY: kill(2) on a process this server started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        // The directory goes next: no session may still be writing there.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sessions.iter().any(|&pid| running(pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether `pid` is a process that has not ended (neither gone nor a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next()),
            Some('Z' | 'X') | None
        )
    })
}

/// Every process below `pid`, read from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat
                .rsplit(") ")
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}
