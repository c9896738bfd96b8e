//! bg-switch's history file, read back: one JSON object per line, which
//! bg-switch appends and bg-status prints (and bg-switch itself reads, to
//! find the versions it last saw on each port). A line that is not a JSON
//! object (cut short by a full disk, edited by hand) is skipped and counted,
//! never fatal: the history is there to help, not to block.

use serde_json::{Map, Value};

/// The lines read: the entries that parse, oldest first, and how many did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub entries: Vec<Map<String, Value>>,
    pub skipped: usize,
}

/// Reads the lines of a history file; empty lines are not entries.
pub fn parse(text: &str) -> History {
    let mut history = History::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(entry)) => history.entries.push(entry),
            _ => history.skipped += 1,
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_entries_and_the_rest_is_counted() {
        let history = parse("{\"to\":8000}\n\n{\"time\": \"cut sho\n[1,2]\n {\"to\":8001} \n");
        assert_eq!(history.entries.len(), 2);
        assert_eq!(history.entries[1]["to"], 8001);
        assert_eq!(history.skipped, 2, "a cut line and a non-object");
    }
}
