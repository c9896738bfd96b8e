//! bg-detect-port through the real binary, on real site files, locally and
//! over the rig's sshd: the port comes from what the files say, and every
//! state it cannot be sure of is exit 3 with what it saw.

mod nginx_site;

use bg_deploy_tests::Bin;
use nginx_site::{Site, Via};

both_ways!(reads_the_enabled_file_by_its_content, |via: Via| {
    let site = Site::new("dev", via);
    // As in the seed: the file named after green holds blue as its primary.
    site.enable(site.blue);
    assert_eq!(
        site.enabled(),
        [format!("dev_{}", site.green)],
        "the enabled file is named after green"
    );
    let run = site.detect(&[]);
    run.code(0);
    assert_eq!(run.stdout, format!("{}\n", site.green));
    assert!(
        run.stderr
            .contains(&format!("active port {} (blue)", site.blue)),
        "{}",
        run.stderr
    );

    let env = site.detect(&["--format", "env"]);
    env.code(0);
    assert_eq!(
        env.stdout,
        format!(
            "BG_ACTIVE_PORT={}\nBG_TARGET_PORT={}\n",
            site.blue, site.green
        )
    );
    let json = site.detect(&["--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.code(0).stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"active_port": site.blue, "target_port": site.green})
    );
});

both_ways!(nothing_enabled_targets_blue, |via: Via| {
    let site = Site::new("dev", via);
    let run = site.detect(&["--format", "env"]);
    run.code(0);
    assert_eq!(
        run.stdout,
        format!("BG_ACTIVE_PORT=\nBG_TARGET_PORT={}\n", site.blue)
    );
    let json = site.detect(&["--format", "json"]);
    assert_eq!(
        json.code(0).stdout,
        format!("{{\"active_port\":null,\"target_port\":{}}}\n", site.blue)
    );
});

/// Exit 3, one error line naming what it saw.
#[track_caller]
fn unsafe_state(site: &Site, expected: &[&str]) {
    let run = site.detect(&[]);
    run.code(3);
    assert_eq!(run.stdout, "", "nothing on stdout when it cannot tell");
    let line = run.error_line();
    assert!(line.starts_with("bg-detect-port: error: "), "{line}");
    for part in expected {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

both_ways!(ambiguous_states_are_exit_3, |via: Via| {
    let site = Site::new("dev", via);
    let enabled = site.nginx.sites_enabled();

    site.enable(site.blue);
    site.enable(site.green);
    unsafe_state(
        &site,
        &["2 files of site dev are enabled", "keep exactly one"],
    );
    // Left: the link to dev_BLUE, whose content routes to green.
    std::fs::remove_file(enabled.join(format!("dev_{}", site.green))).unwrap();

    // The enabled file routes to a port that is neither color.
    site.write_available(
        site.blue,
        &nginx_site::site_file(site.listen, 9, site.blue, ""),
    );
    unsafe_state(&site, &["routes to port 9, which is neither"]);

    // ...or nowhere.
    site.write_available(site.blue, "server { listen 127.0.0.1:1; root /var/www; }\n");
    unsafe_state(&site, &["routes nowhere"]);

    // ...or somewhere only known at request time.
    site.write_available(
        site.blue,
        "server { listen 127.0.0.1:1; location / { proxy_pass http://$upstream_host; } }\n",
    );
    unsafe_state(&site, &["cannot tell where", "uses a variable"]);

    // ...or is not nginx configuration at all.
    site.write_available(site.blue, "upstream backend {\n server 127.0.0.1:1;\n");
    unsafe_state(&site, &["not valid nginx configuration", "line 1"]);

    // A link whose file is gone.
    std::fs::remove_file(site.available(site.blue)).unwrap();
    unsafe_state(&site, &["dangling symlink", "remove it"]);
});

both_ways!(
    a_site_that_is_not_there_is_not_a_first_deploy,
    |via: Via| {
        // Nothing enabled and no site files: a mistyped --site or directory. An
        // empty active port here would leave the live app unprotected.
        let site = Site::new("dev", via);
        std::fs::remove_file(site.available(site.blue)).unwrap();
        std::fs::remove_file(site.available(site.green)).unwrap();
        let run = site.detect(&[]);
        run.code(3);
        assert_eq!(run.stdout, "");
        let line = run.error_line();
        assert!(line.contains("no file of site dev"), "{line}");
        assert!(line.contains("does not exist"), "{line}");
        assert!(
            line.contains(&format!("dev_{}", site.blue)),
            "the hint names the file to create: {line}"
        );
        std::fs::remove_dir(&site.available_dir).unwrap();
        site.detect(&[]).code(3);
    }
);

both_ways!(the_managed_layout_reads_the_upstream_file, |via: Via| {
    let site = Site::new("dev", via);
    let file = site.nginx.path("conf.d/dev-upstream.conf");
    let args = ["--upstream-file", file.to_str().unwrap()];

    // No upstream file: a mistyped path must not hand out the live port
    // as the target. The first deploy says so with --init.
    let missing = site.detect(&args);
    missing.code(3);
    assert!(
        missing.error_line().contains("does not exist") && missing.error_line().contains("--init"),
        "{}",
        missing.stderr
    );
    let none = site.detect(&[&args[..], &["--init"]].concat());
    assert_eq!(none.code(0).stdout, format!("{}\n", site.blue));

    std::fs::write(
        &file,
        format!(
            "upstream backend {{\n    server 10.0.0.5:{g} max_fails=5;\n    server 10.0.0.6:{g};\n    server 10.0.0.5:{b} backup;\n    server 10.0.0.6:{b} backup;\n}}\n",
            g = site.green,
            b = site.blue
        ),
    )
    .unwrap();
    let run = site.detect(&[&args[..], &["--format", "env"]].concat());
    assert_eq!(
        run.code(0).stdout,
        format!(
            "BG_ACTIVE_PORT={}\nBG_TARGET_PORT={}\n",
            site.green, site.blue
        )
    );

    let other_name = site.detect(&[&args[..], &["--upstream-name", "app"]].concat());
    other_name.code(3);
    assert!(
        other_name
            .error_line()
            .contains("no \"upstream app\" block")
    );

    // A directory where the file should be is a layout to fix, not a crash.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let dir = site.detect(&args);
    dir.code(3);
    assert!(
        dir.error_line().contains("is a directory"),
        "{}",
        dir.stderr
    );
});

both_ways!(hostile_site_names_reach_no_shell, |via: Via| {
    let name = "dev $(touch pwned) `touch pwned` 'it''s' \"q\" ;|&*";
    let site = Site::new(name, via);
    site.enable(site.green);
    let run = site.detect(&[]).code(0).clone();
    assert_eq!(run.stdout, format!("{}\n", site.blue));
    assert!(!site.marker().exists());
    assert!(!std::path::Path::new("pwned").exists());
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(!std::path::Path::new(&home).join("pwned").exists());
});

#[test]
fn sudo_runs_privileged_reads_through_sudo() {
    let site = Site::new("dev", Via::Local);
    site.enable(site.green);
    let bin = nginx_site::fake_sudo(site.work.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = Bin::new("bg-detect-port")
        .env("PATH", path)
        .env("BG_SUDO", "1")
        .args(site.layout_args())
        .run();
    assert_eq!(run.code(0).stdout, format!("{}\n", site.blue));
    let log = std::fs::read_to_string(site.work.path().join("sudo.log")).unwrap();
    assert!(log.lines().count() >= 2, "{log}");
}

#[test]
fn bad_usage_is_exit_2() {
    let site = Site::new("dev", Via::Local);
    let same = Bin::new("bg-detect-port")
        .args(["--blue-port", "8000", "--green-port", "8000"])
        .run();
    same.code(2);
    assert!(
        same.error_line()
            .contains("--blue-port and --green-port are both")
    );
    let path = site.detect(&["--site", "../etc"]);
    path.code(2);
    let port = Bin::new("bg-detect-port")
        .args(["--blue-port", "70000"])
        .run();
    port.code(2);
    assert!(port.error_line().contains("is not a port"));
}

#[test]
fn an_unreachable_host_is_exit_4() {
    let closed = bg_deploy_tests::ClosedPort::new();
    let port = closed.port.to_string();
    let run = Bin::new("bg-detect-port")
        .args([
            "--host",
            &format!("127.0.0.1:{port}"),
            "--connect-timeout",
            "2s",
        ])
        .run();
    run.code(4);
    run.error_line();
}

#[test]
fn help_is_stable() {
    let run = Bin::new("bg-detect-port").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}
