//! Messages on stderr, at the level `-v` / `-q` chose.
//!
//! stdout carries only the result; everything a person reads goes here.

use std::io::Write;
use std::sync::atomic::{AtomicI8, Ordering};

static LEVEL: AtomicI8 = AtomicI8::new(0);
static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the binary's name and level: 0 normal, 1+ with `-v`, -1 with `-q`.
pub fn init(name: &str, level: i8) {
    let _ = NAME.set(name.to_string());
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed)
}

fn emit(min: i8, kind: &str, message: &str) {
    if level() < min {
        return;
    }
    let name = NAME.get().map(String::as_str).unwrap_or("bg");
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{name}: {kind}{message}");
}

/// A duration for people: `2s 757ms`, not `2s 757ms 268us 196ns`.
pub fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// What happens, step by step; hidden by `-q`.
pub fn info(message: &str) {
    emit(0, "", message);
}

/// Something the user should know about; hidden by `-qq`.
pub fn warn(message: &str) {
    emit(-1, "warning: ", message);
}

/// Details for `-v`: the commands run and their hosts.
pub fn debug(message: &str) {
    emit(1, "", message);
}

/// Raw lines (a log tail, a command's stderr), shown at normal level.
pub fn block(text: &str) {
    if level() < 0 || text.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
}
