//! `bg-detect-port`: which port nginx sends traffic to now, and so which port
//! the next build goes to.
//!
//! Replaces the seed's `test -e /etc/nginx/sites-enabled/dev_8001`, which
//! trusted a file name, answered "blue" for every state it did not expect
//! (both files enabled, a dangling link, ssh failing), and never read what
//! nginx was really told to do.

use bg_core::cli::{HostArgs, LockArgs, OutputArgs};
use bg_core::host::Host;
use bg_core::layout::{self, LayoutArgs};
use bg_core::{Report, log};
use clap::Parser;
use serde_json::Value;

/// Print the port the next build should be deployed to: the one nginx does not send traffic to.
///
/// Reads the enabled site file (symlink layout) or the upstream file (managed layout, with
/// --upstream-file) on the nginx host and finds the active port from its content. Nothing enabled
/// yet: prints the blue port. Ambiguous states exit 3 with what was seen.
#[derive(Debug, Parser)]
#[command(name = "bg-detect-port", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub layout: LayoutArgs,

    /// Managed layout: no upstream file yet is the first deploy (target: the blue port); without
    /// it, a missing file is exit 3, as a mistyped --upstream-file would hand out the live port
    #[arg(long, env = "BG_INIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub init: bool,

    /// Where bg-switch keeps its lock and its "switch in progress" marker on the nginx host
    #[arg(long, env = "BG_LOCK_DIR", default_value = "/tmp", value_parser = bg_core::cli::parse_host_path, value_name = "DIR")]
    pub lock_dir: String,

    #[command(flatten)]
    pub host: HostArgs,

    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        self.layout.check()?;
        let host = self.host.connect()?;
        // bg-switch's marker of a switch that did not finish: the files may
        // say a port nginx was never told to load.
        let marker = format!(
            "{}.pending",
            LockArgs {
                lock_timeout: std::time::Duration::ZERO,
                lock_dir: self.lock_dir.clone(),
            }
            .path("switch", &self.layout.site)
        );
        // What the state is read from, asked in one round trip.
        let mut files = self.layout.usual_files();
        files.push(marker.clone());
        let read = bg_core::host::Prefetched::with_commands(
            host.as_ref(),
            &files,
            true,
            &self.layout.usual_commands(),
        );
        if let Some(note) = read.read_file(&marker, false)? {
            let to = serde_json::from_slice::<Value>(&note)
                .ok()
                .and_then(|v| v["to"].as_u64())
                .map_or_else(|| "PORT".to_string(), |p| p.to_string());
            return Err(layout::LayoutError::unsafe_state(
                format!(
                    "a switch of site {} to port {to} did not finish ({marker} on {}): nginx may not serve what its files say",
                    self.layout.site,
                    host.name()
                ),
                format!(
                    "finish it with `bg-switch --port {to}` (same layout and --lock-dir), which tests, reloads and verifies, or goes back"
                ),
            )
            .into());
        }
        let state = layout::read_state(&read, &self.layout)?;
        log::debug(&state.describe(&self.layout));
        let active = state.active();
        if let (Some(path), layout::State::Managed { contents: None, .. }) =
            (self.layout.managed_file(), &state)
            && !self.init
        {
            return Err(layout::LayoutError::unsafe_state(
                format!("the upstream file {path} does not exist"),
                "check --upstream-file; for the very first deploy pass --init (bg-switch --init writes the file)",
            )
            .into());
        }
        if active.is_none() && self.layout.managed_file().is_none() {
            // Nothing enabled is a first deploy only when the site's files are
            // there: a mistyped --site or directory is "layout not found", and
            // an empty active port would leave the live app unprotected.
            layout::available_for(host.as_ref(), &self.layout, self.layout.blue_port)?;
        }
        let target = match active {
            Some(port) => self.layout.other(port),
            None => self.layout.blue_port,
        };
        match active {
            Some(port) => log::info(&format!(
                "site {}: active port {port} ({}), target {target} ({})",
                self.layout.site,
                self.layout.color(port),
                self.layout.color(target)
            )),
            None => log::info(&format!(
                "site {}: nothing active yet ({}); target is the blue port {target}",
                self.layout.site,
                state.describe(&self.layout)
            )),
        }
        Ok(Report::new(target.to_string())
            .field("ACTIVE_PORT", active.map_or(Value::Null, Value::from))
            .field("TARGET_PORT", target))
    }
}
