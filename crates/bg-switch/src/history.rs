//! What a history line says beyond the switch itself: whether it was a
//! deploy, a rollback or the finish of an interrupted run, and the version
//! and jar on each side.
//!
//! Where the versions come from, first found wins: `--app-version` for the
//! port going live; bg-ship's record of each port's start (`app-PORT.json`
//! in `--deploy-path`, when nginx runs on the app host); else the history
//! itself, as it last saw each port. All of it is read with the site's
//! files, in the same round trip.

use std::collections::HashMap;

use bg_core::Cmd;
use serde_json::{Map, Value};

/// How many of the history's last lines are read to find versions.
const TAIL_LINES: &str = "200";

/// `tail` of the history file; nothing when there is none yet.
pub fn tail_cmd(path: &str) -> Cmd {
    Cmd::script(
        "# read the history's last lines\n[ -f \"$1\" ] || exit 0\ntail -n \"$2\" -- \"$1\"\n",
        &[path, TAIL_LINES],
    )
    .privileged(true)
}

/// The history's lines that parse as JSON objects, oldest first (as
/// values: a missing field reads as null).
pub fn parse(text: &str) -> Vec<Value> {
    bg_core::history::parse(text)
        .entries
        .into_iter()
        .map(Value::Object)
        .collect()
}

/// What bg-ship recorded about the app it started on a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub version: Option<String>,
    pub artifact: Option<String>,
    /// RFC 3339, as the history's times.
    pub started: Option<String>,
}

impl Record {
    /// Whatever of the record parses; a damaged one says nothing.
    pub fn parse(bytes: &[u8]) -> Record {
        let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let text = |key: &str| value[key].as_str().map(str::to_string);
        Record {
            version: text("version"),
            artifact: text("artifact"),
            started: text("started"),
        }
    }
}

/// What [`fields`] works from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The history's last lines, oldest first.
    pub past: &'a [Value],
    /// bg-ship's records, by port.
    pub records: &'a HashMap<u16, Record>,
    pub from: Option<u16>,
    pub to: u16,
    /// `--app-version`.
    pub version: Option<&'a str>,
    /// `--previous`.
    pub rollback: bool,
}

/// `kind`, `from_version`, `from_artifact`, `to_version`, `to_artifact`.
///
/// A switch is a rollback when asked for one (`--previous`), or when it goes
/// straight back to the port the last done switch left and the app there
/// has not been started again since (by bg-ship's record). Anything else is
/// a deploy: without a record, switching back by hand with `--port` cannot
/// be told from a deploy, which is what `--previous` is for.
pub fn fields(inputs: &Inputs<'_>) -> Map<String, Value> {
    let to = side(inputs, inputs.to);
    let to_version = inputs.version.map(str::to_string).or(to.version.clone());
    let from = inputs
        .from
        .map(|port| side(inputs, port))
        .unwrap_or_default();
    let kind = if inputs.rollback || went_back(inputs, &to) {
        "rollback"
    } else {
        "deploy"
    };
    let mut map = Map::new();
    map.insert("kind".into(), Value::from(kind));
    map.insert("from_version".into(), Value::from(from.version));
    map.insert("from_artifact".into(), Value::from(from.artifact));
    map.insert("to_version".into(), Value::from(to_version));
    map.insert("to_artifact".into(), Value::from(to.artifact));
    map
}

/// What is known of the app on `port`: bg-ship's record, else the history's
/// latest line that names a version for it.
fn side(inputs: &Inputs<'_>, port: u16) -> Record {
    if let Some(record) = inputs.records.get(&port)
        && (record.version.is_some() || record.artifact.is_some())
    {
        return record.clone();
    }
    for line in inputs.past.iter().rev() {
        for (key, prefix) in [("to", "to_"), ("from", "from_")] {
            if line[key].as_u64() != Some(u64::from(port)) {
                continue;
            }
            let text = |what: &str| line[format!("{prefix}{what}")].as_str().map(str::to_string);
            let (version, artifact) = (text("version"), text("artifact"));
            if version.is_some() || artifact.is_some() {
                return Record {
                    version,
                    artifact,
                    started: None,
                };
            }
        }
    }
    Record::default()
}

/// Whether this switch undoes the last done one: back to the port it left,
/// whose app bg-ship has not started again since.
fn went_back(inputs: &Inputs<'_>, to: &Record) -> bool {
    let Some(last) = inputs
        .past
        .iter()
        .rev()
        .find(|line| line["result"].as_str() == Some("done"))
    else {
        return false;
    };
    if last["from"].as_u64() != Some(u64::from(inputs.to)) {
        return false;
    }
    let (Some(started), Some(time)) = (
        inputs.records.get(&inputs.to).and(to.started.as_deref()),
        last["time"].as_str(),
    ) else {
        return false;
    };
    // Both are RFC 3339 in UTC, as `now()` and bg-ship write them: they
    // compare as text.
    started <= time
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn inputs<'a>(
        past: &'a [Value],
        records: &'a HashMap<u16, Record>,
        from: Option<u16>,
        to: u16,
    ) -> Inputs<'a> {
        Inputs {
            past,
            records,
            from,
            to,
            version: None,
            rollback: false,
        }
    }

    #[test]
    fn versions_come_from_the_records_then_the_history() {
        let past = parse(concat!(
            "{\"from\":8000,\"to\":8001,\"result\":\"done\",\"time\":\"2026-12-01T10:00:00Z\",\"from_version\":\"1.0\",\"to_version\":\"1.1\",\"to_artifact\":\"app-1.1.jar\"}\n",
            "not json\n",
        ));
        let mut records = HashMap::new();
        records.insert(
            8000,
            Record::parse(
                br#"{"version":"1.2","artifact":"app-1.2.jar","started":"2026-12-02T09:00:00Z"}"#,
            ),
        );
        let map = fields(&inputs(&past, &records, Some(8001), 8000));
        assert_eq!(map["to_version"], "1.2");
        assert_eq!(map["to_artifact"], "app-1.2.jar");
        assert_eq!(
            map["from_version"], "1.1",
            "from the history's last word on 8001"
        );
        assert_eq!(map["from_artifact"], "app-1.1.jar");
        // Started again after the last switch away from it: a deploy.
        assert_eq!(map["kind"], "deploy");
    }

    #[test]
    fn going_straight_back_to_an_app_not_restarted_is_a_rollback() {
        let past = vec![line(
            r#"{"from":8000,"to":8001,"result":"done","time":"2026-12-02T10:00:00Z"}"#,
        )];
        let mut records = HashMap::new();
        records.insert(
            8000,
            Record::parse(br#"{"version":"1.0","started":"2026-12-01T10:00:00Z"}"#),
        );
        let map = fields(&inputs(&past, &records, Some(8001), 8000));
        assert_eq!(map["kind"], "rollback");
        // Without a record nobody can tell: a deploy, unless asked.
        let none = HashMap::new();
        let map = fields(&inputs(&past, &none, Some(8001), 8000));
        assert_eq!(map["kind"], "deploy");
        let mut asked = inputs(&past, &none, Some(8001), 8000);
        asked.rollback = true;
        assert_eq!(fields(&asked)["kind"], "rollback");
    }

    #[test]
    fn the_given_version_wins_and_unknowns_are_null() {
        let none = HashMap::new();
        let mut given = inputs(&[], &none, None, 8001);
        given.version = Some("2.0");
        let map = fields(&given);
        assert_eq!(map["to_version"], "2.0");
        assert_eq!(map["to_artifact"], Value::Null);
        assert_eq!(map["from_version"], Value::Null);
        assert_eq!(map["kind"], "deploy");
    }
}
