//! The rig itself: nginx and the stand-in app work as later tests expect.

use std::time::Duration;

use bg_deploy_tests::{App, DelayProxy, Nginx, free_port, http_get, wait_for_port};

#[test]
fn the_stand_in_app_answers_health_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _app = App::start_ready(
        port,
        &[("app.version", "1.2.3")],
        &dir.path().join("app.log"),
    );
    assert_eq!(
        http_get(port, "/actuator/health").unwrap(),
        (200, "{\"status\":\"UP\"}".to_string())
    );
    assert_eq!(
        http_get(port, "/version").unwrap(),
        (200, "1.2.3\n".to_string())
    );
}

#[test]
fn the_stand_in_app_can_be_unhealthy_slow_or_crash() {
    let dir = tempfile::tempdir().unwrap();
    let sick = free_port();
    let _sick = App::start_ready(
        sick,
        &[("app.unhealthy", "true")],
        &dir.path().join("sick.log"),
    );
    assert_eq!(http_get(sick, "/actuator/health").unwrap().0, 503);

    let crash_log = dir.path().join("crash.log");
    let crash_port = free_port();
    let mut crashed = App::start(crash_port, &[("app.crash", "true")], &crash_log);
    assert_eq!(crashed.wait_exit(Duration::from_secs(30)), Some(1));
    assert!(!wait_for_port(crash_port, Duration::from_millis(100)));
    assert!(
        std::fs::read_to_string(&crash_log)
            .unwrap()
            .contains("APPLICATION FAILED TO START")
    );

    let slow = free_port();
    let _slow = App::start(
        slow,
        &[("app.startDelay", "1500")],
        &dir.path().join("slow.log"),
    );
    assert!(
        !wait_for_port(slow, Duration::from_millis(500)),
        "listened before its delay"
    );
    assert!(wait_for_port(slow, Duration::from_secs(30)));
}

#[test]
fn nginx_proxies_to_the_app_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (blue, green) = (free_port(), free_port());
    let _blue = App::start_ready(
        blue,
        &[("app.version", "blue")],
        &dir.path().join("blue.log"),
    );
    let _green = App::start_ready(
        green,
        &[("app.version", "green")],
        &dir.path().join("green.log"),
    );
    let mut nginx = Nginx::new();
    let listen = free_port();
    let site = |primary: u16, backup: u16| {
        format!(
            "upstream backend {{\n    server 127.0.0.1:{primary} fail_timeout=60s max_fails=5;\n    server 127.0.0.1:{backup} backup;\n}}\nserver {{\n    listen 127.0.0.1:{listen};\n    location / {{ proxy_pass http://backend; }}\n}}\n"
        )
    };
    std::fs::write(nginx.sites_available().join("dev"), site(blue, green)).unwrap();
    std::os::unix::fs::symlink(
        nginx.sites_available().join("dev"),
        nginx.sites_enabled().join("dev"),
    )
    .unwrap();
    nginx.start();
    assert!(wait_for_port(listen, Duration::from_secs(5)));
    assert_eq!(
        http_get(listen, "/version").unwrap(),
        (200, "blue\n".to_string())
    );

    std::fs::write(nginx.sites_available().join("dev"), site(green, blue)).unwrap();
    let old_master = nginx.pid();
    nginx.reload();
    assert_eq!(nginx.pid(), old_master, "a reload keeps the master");
    // The old workers finish their connections; new ones answer with the new config.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http_get(listen, "/version").unwrap().1 != "green\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "still blue after the reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The delay proxy's tests use a short round trip: they check what it
/// carries, never how long it takes (that is the benchmarks' job).
const TEST_RTT: Duration = Duration::from_millis(20);

/// Connects to the proxy, with a read timeout, so that a bug fails the test
/// instead of hanging it.
fn dial(port: u16) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

fn accept(listener: &std::net::TcpListener) -> std::net::TcpStream {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// The proxy's bookkeeping empties once both ends are done.
fn wait_for_no_connections(proxy: &DelayProxy) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.connections() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy still holds a connection whose ends are both closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[test]
fn the_delay_proxy_carries_megabytes_both_ways_at_once() {
    use std::io::{Read, Write};
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = DelayProxy::start(target.local_addr().unwrap().port(), TEST_RTT);
    let up = pattern(3 * 1024 * 1024 + 17, 1);
    let down = pattern(3 * 1024 * 1024 + 4099, 2);

    let server = {
        let (up, down) = (up.clone(), down.clone());
        std::thread::spawn(move || {
            let stream = accept(&target);
            let mut writer = stream.try_clone().unwrap();
            let sending = std::thread::spawn(move || {
                writer.write_all(&down).unwrap();
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut got = Vec::new();
            (&stream).read_to_end(&mut got).unwrap();
            sending.join().unwrap();
            assert!(
                got == up,
                "upstream: {} bytes of {} came, or differ",
                got.len(),
                up.len()
            );
        })
    };
    let client = dial(proxy.port);
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        writer.write_all(&up).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    (&client).read_to_end(&mut got).unwrap();
    sending.join().unwrap();
    server.join().unwrap();
    assert!(
        got == down,
        "downstream: {} bytes of {} came, or differ",
        got.len(),
        down.len()
    );
    drop(client);
    wait_for_no_connections(&proxy);
}

#[test]
fn the_delay_proxy_passes_a_half_close_on_and_keeps_the_other_way_open() {
    use std::io::{Read, Write};
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = DelayProxy::start(target.local_addr().unwrap().port(), TEST_RTT);
    let mut client = dial(proxy.port);
    client.write_all(b"ping").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();

    let mut server = accept(&target);
    let mut got = Vec::new();
    // Returns only when the client's EOF came through.
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping");
    // The other way still carries data after the half-close, then its own EOF.
    server.write_all(b"pong").unwrap();
    server.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"pong");
    wait_for_no_connections(&proxy);
}

#[test]
fn dropping_the_delay_proxy_ends_its_connections() {
    use std::io::{Read, Write};
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = DelayProxy::start(target.local_addr().unwrap().port(), TEST_RTT);
    let mut client = dial(proxy.port);
    client.write_all(b"x").unwrap();
    let mut server = accept(&target);
    let mut one = [0; 1];
    server.read_exact(&mut one).unwrap();
    drop(proxy);
    // Both ends see the connection end (EOF or a reset), not a timeout.
    for end in [&mut client, &mut server] {
        match end.read(&mut one) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
    }
}

#[test]
fn the_delay_proxy_closes_a_client_whose_target_refuses() {
    use std::io::Read;
    let closed = bg_deploy_tests::ClosedPort::new();
    let proxy = DelayProxy::start(closed.port, TEST_RTT);
    let mut client = dial(proxy.port);
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(got.is_empty());
}

/// A real SSH session through the proxy: our client (connect, a command, an
/// upload) and OpenSSH's ssh and scp, which must end by themselves, which
/// they only do when EOFs and closes pass through.
#[test]
fn ssh_and_scp_work_through_the_delay_proxy() {
    use bg_core::host::{Host, Input, SshHost, SshOptions, Target};
    let sshd = bg_deploy_tests::Sshd::start();
    let proxy = DelayProxy::start(sshd.port, TEST_RTT);
    let known_hosts = sshd.dir.path().join("known_hosts_proxy");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", proxy.port, sshd.host_key),
    )
    .unwrap();

    let target = format!("{}@127.0.0.1:{}", sshd.user, proxy.port);
    let mut options = SshOptions::new(Target::parse(&target).unwrap());
    options.identity = Some(sshd.client_key.clone());
    options.known_hosts = Some(known_hosts.clone());
    let host =
        SshHost::connect(&options).unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    let data = pattern(1024 * 1024 + 3, 3);
    let echoed = host
        .exec(&bg_core::Cmd::new("cat"), Input::Bytes(&data))
        .unwrap();
    assert!(echoed.stdout == data, "cat through ssh2 changed the bytes");
    let local = sshd.dir.path().join("data");
    std::fs::write(&local, &data).unwrap();
    let remote = sshd.dir.path().join("uploaded");
    host.upload(&local, remote.to_str().unwrap(), &mut |_| {})
        .unwrap();
    assert!(std::fs::read(&remote).unwrap() == data);
    drop(host);

    let openssh = |program: &str, port_flag: &str, args: &[&str]| {
        bg_deploy_tests::need(program);
        let output = std::process::Command::new("timeout")
            .args(["60", program, "-i"])
            .arg(&sshd.client_key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", port_flag])
            .arg(proxy.port.to_string())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program} through the proxy: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            sshd.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let login = format!("{}@127.0.0.1", sshd.user);
    assert_eq!(openssh("ssh", "-p", &[&login, "echo hello"]), "hello\n");
    let copied = sshd.dir.path().join("scp-copy");
    openssh(
        "scp",
        "-P",
        &[
            local.to_str().unwrap(),
            &format!("{login}:{}", copied.display()),
        ],
    );
    assert!(std::fs::read(&copied).unwrap() == data);
    wait_for_no_connections(&proxy);
}

#[test]
fn the_delay_proxy_program_prints_its_port_and_forwards() {
    use std::io::{BufRead, Read, Write};
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = std::process::Command::new(bg_deploy_tests::bin_path("delay-proxy"))
        .arg("20")
        .arg(target.local_addr().unwrap().port().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let mut client = dial(port);
    client.write_all(b"through").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    accept(&target).read_to_end(&mut got).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got, b"through");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}
