//! What the `bg-*` binaries share, and nothing else.
//!
//! - [`host`]: one [`host::Host`] trait for the machine we act on, local or
//!   over SSH, so that every binary is written once.
//! - [`quote`] and [`cmd`]: the one way a value reaches a shell.
//! - [`error`] and [`exit`]: typed errors, each mapped to the contract's exit code.
//! - [`output`]: `--format text|json|env`.
//! - [`cli`]: flags shared by several binaries, and [`main`], which is all a
//!   binary's `main.rs` calls.

pub mod cli;
pub mod cmd;
pub mod error;
pub mod exit;
pub mod history;
pub mod host;
pub mod http;
pub mod layout;
pub mod listeners;
pub mod log;
pub mod nginx;
pub mod output;
pub mod proc;
pub mod quote;
pub mod reload;
pub mod sha256;

use std::process::ExitCode;

pub use cmd::Cmd;
pub use error::{Failure, HostError, Result, UsageError};
pub use exit::Code;
pub use host::Host;
pub use output::{Format, Report};

/// A binary: its parsed flags and what it does with them.
pub trait Tool: clap::Parser {
    /// The output flags, so that [`main`] can print the result.
    fn output(&self) -> &cli::OutputArgs;

    /// Does the work. Only [`main`] turns an error into a message and an exit code.
    fn run(self) -> Result<Report>;
}

/// The whole `main` of every binary: parse, run, print, exit with the contract's code.
pub fn main<T: Tool>() -> ExitCode {
    forget_empty_variables();
    let name = T::command().get_name().to_string();
    let cli = match T::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&name, error),
    };
    log::init(&name, cli.output().level());
    let format = cli.output().format;
    match cli.run() {
        Ok(report) => match report.print(format) {
            Ok(()) => Code::Ok.into(),
            Err(e) => {
                eprintln!("{name}: error: cannot write the result to stdout: {e}");
                Code::Failed.into()
            }
        },
        Err(failure) => {
            // A failure that comes with a result (bg-status --check) prints it
            // first: the CI log shows what was seen, then why it failed.
            if let Some(report) = failure.report() {
                let _ = report.print(format);
            }
            report_failure(&name, failure.as_ref());
            failure.code().into()
        }
    }
}

/// An empty `BG_*` variable counts as unset, for every flag alike: CI
/// templates write `BG_WATCH_PID=$BG_PID` or `BG_SUDO=${SUDO:-}`, and an
/// empty value there means "not given", not "a bad value".
fn forget_empty_variables() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(key, value)| value.is_empty() && key.to_string_lossy().starts_with("BG_"))
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        // SAFETY: called first thing in `main`, before any thread exists.
        unsafe { std::env::remove_var(key) };
    }
}

/// Prints a failure: its details as they came, then one line that says what
/// happened and what to do next.
pub fn report_failure(name: &str, failure: &dyn Failure) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    if let Some(details) = failure.details() {
        let _ = writeln!(err, "{}", details.trim_end());
    }
    let message = one_line(&failure.to_string());
    let _ = match failure.hint() {
        Some(hint) => writeln!(err, "{name}: error: {message}; {}", one_line(&hint)),
        None => writeln!(err, "{name}: error: {message}"),
    };
}

/// clap's errors, reduced to the contract's single line; help and version go to stdout.
fn clap_exit(name: &str, error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            Code::Ok.into()
        }
        _ => {
            let rendered = error.render().to_string();
            // The first paragraph says what is wrong, over several lines when
            // clap lists the missing arguments; a later `tip:` says what to do.
            let mut paragraphs = rendered
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty());
            let first = paragraphs.next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let what = shorten_words(&one_line(first));
            let tip = paragraphs
                .find_map(|p| p.strip_prefix("tip: "))
                .map(one_line)
                .unwrap_or_else(|| format!("see '{name} --help'"));
            eprintln!("{name}: error: {what}; {tip}");
            Code::Usage.into()
        }
    }
}

/// A value of 100,000 characters must not make the one error line as long:
/// each word over 120 characters keeps its start and says how long it was.
fn shorten_words(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.chars().count() <= 120 {
                return word.to_string();
            }
            let start: String = word.chars().take(60).collect();
            format!("{start}...({} bytes)", word.len())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A time as the history and bg-ship's records write it: RFC 3339, UTC,
/// whole seconds (`2026-11-25T12:07:31Z`).
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Who is deploying, for locks and history: `BG_ACTOR`, else Jenkins'
/// `BUILD_TAG`, else `$USER` (`$LOGNAME`), else the name of our user id.
pub fn actor() -> String {
    ["BG_ACTOR", "BUILD_TAG", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .or_else(user_name)
        .unwrap_or_else(|| "unknown".to_string())
}

/// The login name of the effective user, from the password database.
pub(crate) fn user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy
    // the name out at once and nothing else in this process calls it concurrently
    // in a way that matters for a best-effort name.
    unsafe {
        let entry = libc::getpwuid(libc::geteuid());
        if entry.is_null() || (*entry).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}
