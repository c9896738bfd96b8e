//! Upload progress on stderr: a bar on a terminal, and in a Jenkins log (no
//! terminal) one line about every 10%, so the log shows it moving without
//! drowning in carriage returns.

use std::io::IsTerminal;
use std::time::Instant;

/// Where progress goes.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    start: Instant,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Quiet,
    Bar(indicatif::ProgressBar),
    /// The next tenth to report, 1 to 10.
    Lines {
        next: u64,
    },
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        let mode = if bg_core::log::level() < 0 {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            Mode::Bar(bar)
        } else {
            Mode::Lines { next: 1 }
        };
        Progress {
            total,
            start: Instant::now(),
            mode,
        }
    }

    /// `sent` bytes of `total` are out.
    pub fn update(&mut self, sent: u64) {
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Bar(bar) => bar.set_position(sent),
            Mode::Lines { next } => {
                let tenths = tenths(sent, self.total);
                if tenths >= *next {
                    *next = tenths + 1;
                    bg_core::log::info(&format!(
                        "sent {:>3}% ({} of {}, {}/s)",
                        tenths * 10,
                        human(sent),
                        human(self.total),
                        human(rate(sent, self.start))
                    ));
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

/// Whole tenths of `total` that `sent` covers (10 when done; an empty file is done).
fn tenths(sent: u64, total: u64) -> u64 {
    if total == 0 {
        return 10;
    }
    (u128::from(sent) * 10 / u128::from(total)).min(10) as u64
}

fn rate(bytes: u64, since: Instant) -> u64 {
    let secs = since.elapsed().as_secs_f64();
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 / secs) as u64
    }
}

/// `1.5 MiB`, `200.0 MiB`, `812 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_and_sizes() {
        assert_eq!(tenths(0, 100), 0);
        assert_eq!(tenths(9, 100), 0);
        assert_eq!(tenths(10, 100), 1);
        assert_eq!(tenths(100, 100), 10);
        assert_eq!(tenths(0, 0), 10);
        assert_eq!(tenths(u64::MAX, u64::MAX), 10);
        assert_eq!(human(812), "812 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(200 * 1024 * 1024), "200.0 MiB");
    }
}
