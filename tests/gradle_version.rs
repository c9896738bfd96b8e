//! gradle-version through the real binary, on realistic build files: stdout,
//! stderr and the exit code together.

use std::path::Path;

use bg_deploy_tests::{Bin, Run};

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn gradle_version(dir: &Path, args: &[&str]) -> Run {
    Bin::new("gradle-version")
        .arg("--dir")
        .arg(dir.to_str().unwrap())
        .args(args)
        .run()
}

const INITIALIZR_GROOVY: &str = "plugins {
\tid 'java'
\tid 'org.springframework.boot' version '3.2.0'
\tid 'io.spring.dependency-management' version '1.1.4'
}

group = 'com.example'
version = '0.0.1-SNAPSHOT'

java {
\tsourceCompatibility = '17'
}

repositories {
\tmavenCentral()
}

dependencies {
\timplementation 'org.springframework.boot:spring-boot-starter-web'
\ttestImplementation 'org.springframework.boot:spring-boot-starter-test'
}

tasks.named('test') {
\tuseJUnitPlatform()
}
";

const INITIALIZR_KOTLIN: &str = r#"import org.jetbrains.kotlin.gradle.tasks.KotlinCompile

plugins {
	id("org.springframework.boot") version "3.2.0"
	id("io.spring.dependency-management") version "1.1.4"
	kotlin("jvm") version "1.9.20"
	kotlin("plugin.spring") version "1.9.20"
}

group = "com.example"
version = "1.4.2"

java {
	sourceCompatibility = JavaVersion.VERSION_17
}

tasks.withType<KotlinCompile> {
	kotlinOptions {
		freeCompilerArgs += "-Xjsr305=strict"
		jvmTarget = "17"
	}
}
"#;

#[test]
fn spring_initializr_groovy_build() {
    let dir = project(&[("build.gradle", INITIALIZR_GROOVY)]);
    let run = gradle_version(dir.path(), &[]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "0.0.1-SNAPSHOT\n", "")
    );
}

#[test]
fn spring_initializr_kotlin_build() {
    let dir = project(&[("build.gradle.kts", INITIALIZR_KOTLIN)]);
    let run = gradle_version(dir.path(), &["--format", "env"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            0,
            "BG_VERSION=1.4.2\nBG_VERSION_SOURCE=build.gradle.kts:11\n",
            ""
        )
    );
}

#[test]
fn multi_project_root_with_properties() {
    let dir = project(&[
        (
            "settings.gradle",
            "rootProject.name = 'shop'\ninclude 'api', 'worker'\n",
        ),
        (
            "build.gradle",
            "plugins { id 'org.springframework.boot' version '3.1.5' apply false }\n\nallprojects {\n    group = 'com.example.shop'\n    version = \"${projectVersion}\"\n}\n\nsubprojects {\n    apply plugin: 'java'\n}\n",
        ),
        (
            "gradle.properties",
            "org.gradle.jvmargs=-Xmx2g\nprojectVersion=2.3.4\n",
        ),
        (
            "api/build.gradle",
            "dependencies { implementation project(':worker') }\n",
        ),
    ]);
    let run = gradle_version(dir.path(), &["--format", "json"]);
    run.code(0);
    assert_eq!(
        run.stdout,
        "{\"version\":\"2.3.4\",\"version_source\":\"build.gradle:5\"}\n"
    );
}

#[test]
fn project_property_from_gradle_properties() {
    let dir = project(&[
        (
            "build.gradle.kts",
            "version = project.property(\"appVersion\") as String\n",
        ),
        ("gradle.properties", "appVersion = 7.0.1\n"),
    ]);
    assert_eq!(gradle_version(dir.path(), &[]).code(0).stdout, "7.0.1\n");
}

#[test]
fn gradle_properties_alone() {
    let dir = project(&[("gradle.properties", "# release\nversion=3.0.0-RC2\n")]);
    assert_eq!(
        gradle_version(dir.path(), &[]).code(0).stdout,
        "3.0.0-RC2\n"
    );
}

#[test]
fn file_flag_reads_that_file() {
    let dir = project(&[
        ("build.gradle", "version = '1'\n"),
        ("service/build.gradle.kts", "version = \"9.9.9\"\n"),
    ]);
    let run = gradle_version(dir.path(), &["--file", "service/build.gradle.kts"]);
    assert_eq!(run.code(0).stdout, "9.9.9\n");
}

#[test]
fn plugin_versions_are_not_the_project_version() {
    // Only a plugin declares a version here: that is not the project's.
    let dir = project(&[(
        "build.gradle",
        "plugins {\n  id 'org.springframework.boot' version '3.2.0'\n}\n",
    )]);
    let run = gradle_version(dir.path(), &[]);
    run.code(3);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "one line on stderr:\n{}",
        run.stderr
    );
    assert!(run.error_line().starts_with("gradle-version: error: "));
    assert!(
        run.error_line()
            .contains("build.gradle: declares no version"),
        "{}",
        run.stderr
    );
    assert!(
        run.error_line().contains("--default"),
        "the hint says what to do"
    );
}

#[test]
fn default_is_used_when_nothing_is_declared() {
    let dir = project(&[("build.gradle", "group = 'x'\n")]);
    let run = gradle_version(dir.path(), &["--default", "0.0.0-unknown"]);
    assert_eq!(run.code(0).stdout, "0.0.0-unknown\n");
    assert!(run.stderr.contains("warning: "), "{}", run.stderr);
    assert!(run.stderr.contains("using --default 0.0.0-unknown"));
}

#[test]
fn an_unresolved_reference_is_not_a_guess() {
    let dir = project(&[("build.gradle", "version = \"${releaseVersion}\"\n")]);
    let run = gradle_version(dir.path(), &[]);
    run.code(3);
    assert!(
        run.error_line().contains("releaseVersion"),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_inputs_are_usage_errors() {
    let dir = project(&[]);
    let run = gradle_version(dir.path(), &["--file", "nope.gradle"]);
    run.code(2);
    assert!(run.error_line().contains("nope.gradle does not exist"));
    let run = gradle_version(&dir.path().join("absent"), &[]);
    run.code(2);
    let run = gradle_version(dir.path(), &[]);
    run.code(3);
    assert!(
        run.error_line().contains("no build.gradle"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flags_get_one_line_and_exit_2() {
    let run = Bin::new("gradle-version").arg("--dirr").arg(".").run();
    run.code(2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.error_line().contains("--dirr"));
    assert!(
        run.error_line().contains("--dir"),
        "suggests the right flag: {}",
        run.stderr
    );
    let run = Bin::new("gradle-version").args(["--format", "yaml"]).run();
    run.code(2);
    assert!(run.error_line().contains("yaml"));
}

#[test]
fn env_output_survives_source_whatever_the_value() {
    let hostile = "1.0 $(touch pwned) `touch pwned2` it's \"q\" ;|&";
    let dir = project(&[
        ("gradle.properties", &format!("v={hostile}\n")),
        ("build.gradle", "version = property('v')\n"),
    ]);
    let run = gradle_version(dir.path(), &["--format", "env"]);
    run.code(0);
    let env_file = dir.path().join("out.env");
    std::fs::write(&env_file, &run.stdout).unwrap();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg("set -eu; source \"$1\"; printf '%s' \"$BG_VERSION\"")
        .arg("bash")
        .arg(&env_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), hostile);
    assert!(!dir.path().join("pwned").exists() && !dir.path().join("pwned2").exists());
}

#[test]
fn format_from_the_environment() {
    let dir = project(&[("build.gradle", "version = '5.5.5'\n")]);
    let run = Bin::new("gradle-version")
        .args(["--dir", dir.path().to_str().unwrap()])
        .env("BG_FORMAT", "env")
        .run();
    assert_eq!(run.code(0).stdout.lines().next(), Some("BG_VERSION=5.5.5"));
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let dir = project(&[("build.gradle", "version = '5.5.5'\n")]);
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    use std::os::fd::FromRawFd;
    let write_end = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let output = Bin::new("gradle-version")
        .args(["--dir", dir.path().to_str().unwrap()])
        .command()
        .stdout(write_end)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn help_is_stable() {
    let run = Bin::new("gradle-version").arg("--help").run();
    run.code(0);
    insta::assert_snapshot!(run.stdout);
}
