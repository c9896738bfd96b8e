//! `bg-status --history`: bg-switch's history file, read back
//! ([`bg_core::history`]) and shown as a table.
//!
//! Each line is one JSON object that bg-switch appended: `time`, `site`,
//! `from` (a port or null), `to`, `actor`, `result`, an optional `reason`,
//! and in newer lines `kind` and the version and jar of both ports. Older
//! lines lack those (shown as `-`).

use serde_json::{Map, Value};

pub use bg_core::history::{History, parse};

use crate::table::Table;

/// A field as text: `-` when absent or null.
pub fn text(entry: &Map<String, Value>, key: &str) -> String {
    match entry.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(Value::String(s)) => one_line(s),
        Some(other) => one_line(&other.to_string()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `8000 -> 8001`, `- -> 8000` for a first switch.
fn ports(entry: &Map<String, Value>) -> String {
    format!("{} -> {}", text(entry, "from"), text(entry, "to"))
}

/// The versions (else the jars) of both sides, `-` when the line has none.
fn versions(entry: &Map<String, Value>) -> String {
    let side = |which: &str| {
        let version = text(entry, &format!("{which}_version"));
        if version != "-" {
            return version;
        }
        text(entry, &format!("{which}_artifact"))
    };
    let (from, to) = (side("from"), side("to"));
    if from == "-" && to == "-" {
        "-".to_string()
    } else {
        format!("{from} -> {to}")
    }
}

/// The table of `--format text`.
pub fn table(history: &History) -> String {
    let mut table = Table::new(&[
        "TIME", "SWITCH", "KIND", "VERSIONS", "ACTOR", "RESULT", "REASON",
    ]);
    for entry in &history.entries {
        table.row(vec![
            text(entry, "time"),
            ports(entry),
            text(entry, "kind"),
            versions(entry),
            text(entry, "actor"),
            text(entry, "result"),
            text(entry, "reason"),
        ]);
    }
    table.render()
}

/// The last entry's fields for `--format env`, as `(KEY, value)`.
pub const LAST_FIELDS: [(&str, &str); 12] = [
    ("LAST_TIME", "time"),
    ("LAST_SITE", "site"),
    ("LAST_FROM", "from"),
    ("LAST_TO", "to"),
    ("LAST_KIND", "kind"),
    ("LAST_ACTOR", "actor"),
    ("LAST_RESULT", "result"),
    ("LAST_REASON", "reason"),
    ("LAST_FROM_VERSION", "from_version"),
    ("LAST_TO_VERSION", "to_version"),
    ("LAST_FROM_ARTIFACT", "from_artifact"),
    ("LAST_TO_ARTIFACT", "to_artifact"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"time":"2026-11-25T12:07:31Z","site":"dev","from":null,"to":8000,"actor":"jenkins-deploy-1","result":"done"}"#;
    const NEW: &str = r#"{"time":"2026-11-26T09:00:00Z","site":"dev","from":8000,"to":8001,"actor":"alice","result":"rolled back","reason":"nginx rejected\nthe configuration","kind":"deploy","from_version":"1.3.9","from_artifact":"app-1.3.9.jar","to_version":null,"to_artifact":"app-1.4.0.jar"}"#;

    #[test]
    fn old_and_new_lines_and_garbage() {
        let history = parse(&format!("{OLD}\n\n{{\"time\": \"cut sho\n[1,2]\n{NEW}\n"));
        assert_eq!(history.entries.len(), 2);
        assert_eq!(history.skipped, 2, "a cut line and a non-object");
        let old = &history.entries[0];
        assert_eq!(ports(old), "- -> 8000");
        assert_eq!(text(old, "kind"), "-");
        assert_eq!(versions(old), "-");
        let new = &history.entries[1];
        assert_eq!(ports(new), "8000 -> 8001");
        assert_eq!(
            versions(new),
            "1.3.9 -> app-1.4.0.jar",
            "a jar where no version"
        );
        assert_eq!(text(new, "reason"), "nginx rejected the configuration");
    }

    #[test]
    fn the_table() {
        let table = table(&parse(&format!("{OLD}\n{NEW}\n")));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("TIME                  SWITCH        KIND"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("2026-11-25T12:07:31Z  - -> 8000     -       -"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("rolled back  nginx rejected the configuration"),
            "{table}"
        );
    }
}
