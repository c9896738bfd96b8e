//! The programs the tests start besides the binaries. A missing one fails
//! its test with a line naming the Debian package to install, not a bare
//! `NotFound`. The table is the one in scripts/install-test-deps.sh, README's
//! set-up command, so the two cannot disagree.

use std::io;
use std::path::Path;

const SETUP: &str = include_str!("../../scripts/install-test-deps.sh");

/// The set-up command, as README gives it.
pub const SETUP_COMMAND: &str = "bash scripts/install-test-deps.sh";

/// The set-up script's table: (program, Debian package), a program being a
/// name looked for on PATH or a path.
pub fn setup_table() -> Vec<(&'static str, &'static str)> {
    let table = SETUP
        .split_once("needs='\n")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("", |(table, _)| table);
    table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .collect()
}

/// The Debian package that has `program` (a name, or a path such as
/// `/usr/sbin/nginx`), from the set-up script's table.
pub fn package_of(program: &str) -> Option<&'static str> {
    let name = program.rsplit('/').next()?;
    setup_table()
        .into_iter()
        .find(|(listed, _)| listed.rsplit('/').next() == Some(name))
        .map(|(_, package)| package)
}

/// What to say when `program` could not be started.
pub fn cannot_run_message(program: &str, error: &io::Error) -> String {
    match package_of(program) {
        Some(package) if error.kind() == io::ErrorKind::NotFound => format!(
            "cannot run {program}: {error}; it comes with the Debian package {package} \
             (`{SETUP_COMMAND}` installs what the tests need)"
        ),
        _ => format!("cannot run {program}: {error}"),
    }
}

/// For the spawn of `program`: `.unwrap_or_else(cannot_run("groovy"))`.
pub fn cannot_run<T>(program: &str) -> impl FnOnce(io::Error) -> T + '_ {
    move |error| panic!("{}", cannot_run_message(program, &error))
}

/// Panics naming the package unless `program` is there: a path as it is, a
/// name on PATH. For programs that would otherwise fail later and less
/// clearly (a script's `curl: not found`).
#[track_caller]
pub fn need(program: &str) {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if !found {
        let error = io::Error::from(io::ErrorKind::NotFound);
        panic!("{}", cannot_run_message(program, &error));
    }
}
