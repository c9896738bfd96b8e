//! App hosts of their own on one machine: each a network namespace with one
//! end of a veth pair and an address in 10.200.0.0/16, the other end in the
//! test's namespace. Its sshd listens on port 22 of that address, and the
//! apps it starts listen on the namespace's own ports, so three hosts can
//! all run blue on 8000 as three servers would. Only the test and nginx
//! reach them, through the veth: nothing is routed anywhere else.
//!
//! Making one needs `ip` (iproute2) and the right to make namespaces (root,
//! or CAP_NET_ADMIN and CAP_SYS_ADMIN). Where that is missing,
//! [`Netns::create`] says why, and the tests that need hosts skip with
//! that message.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How many /30 subnets 10.200.0.0/16 holds: the namespaces' numbers.
const SLOTS: u32 = 16384;

/// A network namespace named `bgt-N`, holding one end of a veth pair with
/// `10.200.x.y+2/30`; the other end, `10.200.x.y+1`, is in the test's
/// namespace. Dropping it kills every process inside, then deletes it.
pub struct Netns {
    pub name: String,
    /// The host's address, inside the namespace.
    pub address: Ipv4Addr,
    /// The address of the test's end of the veth pair.
    pub peer: Ipv4Addr,
    outer: String,
}

impl Netns {
    /// A new namespace, or why none can be made here. Each test process
    /// may run several at once: a number is claimed by `ip netns add`,
    /// which fails when another test (or a process left from an earlier
    /// run) holds it.
    pub fn create() -> Result<Netns, String> {
        available()?;
        let mut slot = start_slot();
        for _attempt in 0..64 {
            slot = (slot + 7919) % SLOTS;
            let name = format!("bgt-{slot}");
            let added = ip(&["netns", "add", &name]);
            if let Err(why) = added {
                if why.contains("File exists") {
                    continue;
                }
                return Err(why);
            }
            let base = slot * 4;
            let subnet =
                |host: u32| Ipv4Addr::new(10, 200, (base / 256) as u8, (base % 256 + host) as u8);
            let ns = Netns {
                outer: format!("bgt{slot}o"),
                name,
                address: subnet(2),
                peer: subnet(1),
            };
            match ns.wire() {
                Ok(()) => return Ok(ns),
                // A veth of that number outlived its namespace's name:
                // another number.
                Err(why) if why.contains("File exists") => continue,
                Err(why) => return Err(why),
            }
        }
        Err("no free namespace number in 64 tries (ip netns list shows them)".to_string())
    }

    /// The veth pair, the addresses and the links up.
    fn wire(&self) -> Result<(), String> {
        let inner = format!("{}i", self.outer.trim_end_matches('o'));
        ip(&[
            "link",
            "add",
            &self.outer,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
            "netns",
            &self.name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.peer),
            "dev",
            &self.outer,
        ])?;
        ip(&["link", "set", &self.outer, "up"])?;
        let address = format!("{}/30", self.address);
        ip(&["-n", &self.name, "addr", "add", &address, "dev", &inner])?;
        ip(&["-n", &self.name, "link", "set", &inner, "up"])?;
        ip(&["-n", &self.name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Runs `f` on a thread inside the namespace: sockets it makes, and
    /// threads it starts, belong to the namespace.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an open namespace file; it changes this thread only.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                entered,
                0,
                "setns {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap()
    }

    /// Every process in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        ip(&["netns", "pids", &self.name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A namespace lives while a process is in it, whatever its name
        // does: its apps (detached from their sessions) go first.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) on a process of this test's namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = ip(&["link", "del", &self.outer]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// An app host: a namespace with its own sshd on port 22 and its own deploy
/// directory, which its sessions see at the fleet's shared path. Dropped, it
/// stops the server, then every process left in the namespace (the apps it
/// started), then removes the directory.
pub struct AppHost {
    pub sshd: crate::Sshd,
    pub netns: Netns,
    /// The host's deploy directory, as the test sees it.
    pub deploy: tempfile::TempDir,
}

impl AppHost {
    pub fn address(&self) -> Ipv4Addr {
        self.netns.address
    }

    /// A slow link to this host's sshd: a [`crate::DelayProxy`] inside
    /// the namespace on port 2222 of its address, forwarding to port 22.
    pub fn slow_ssh(&self, rtt: Duration) -> crate::DelayProxy {
        let address = std::net::IpAddr::V4(self.address());
        self.netns.run_inside(move || {
            crate::DelayProxy::between((address, 2222).into(), (address, 22).into(), rtt)
                .expect("the delay proxy cannot listen in the namespace")
        })
    }
}

/// App hosts that share one deploy path (each with its own directory
/// mounted there), as a fleet of servers does.
pub struct Fleet {
    pub hosts: Vec<AppHost>,
    shared: tempfile::TempDir,
}

impl Fleet {
    /// `n` hosts, started side by side; or why there can be none here.
    pub fn start(n: usize) -> Result<Fleet, String> {
        let shared = tempfile::Builder::new()
            .prefix("bg-fleet-deploy-")
            .tempdir()
            .unwrap();
        let at = shared.path().to_path_buf();
        let started: Vec<_> = (0..n)
            .map(|_| {
                let at = at.clone();
                std::thread::spawn(move || -> Result<AppHost, String> {
                    let netns = Netns::create()?;
                    let deploy = tempfile::Builder::new()
                        .prefix("bg-host-deploy-")
                        .tempdir()
                        .unwrap();
                    let sshd = crate::Sshd::start_in(&netns, deploy.path(), &at);
                    Ok(AppHost {
                        sshd,
                        netns,
                        deploy,
                    })
                })
            })
            .collect();
        let hosts = started
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Result<_, _>>()?;
        Ok(Fleet { hosts, shared })
    }

    /// The deploy path on every host.
    pub fn deploy_path(&self) -> PathBuf {
        self.shared.path().to_path_buf()
    }
}

/// Whether namespaces can be made here, asked once per test process.
fn available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            if let Err(e) = Command::new("ip").arg("-V").output() {
                return Err(crate::cannot_run_message("ip", &e));
            }
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Err("making network namespaces needs root".to_string());
            }
            Ok(())
        })
        .clone()
}

/// Where this process starts looking for a free number: apart from other
/// test processes running at the same time.
fn start_slot() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (std::process::id().wrapping_mul(2654435761) ^ nanos) % SLOTS
}

/// Runs `ip ARGS`: its stdout, or what it said on failure.
fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
