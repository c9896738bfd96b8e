//! The rig itself: nginx and the stand-in app work as later tests expect.

use std::time::Duration;

use bg_deploy_tests::{App, Nginx, free_port, http_get, wait_for_port};

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
