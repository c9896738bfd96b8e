//! The result on stdout, as `--format text|json|env` asks.
//!
//! `env` lines must survive `source` in bash, `>> "$GITHUB_OUTPUT"` and GitLab
//! dotenv reports. The last two take values literally, so a value that needs
//! no quoting is written bare (ports, versions, pids always are; a list is
//! comma-separated) and only a
//! value that would break a shell is single-quoted.

use std::io::Write;

use serde_json::Value;

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The one value a shell wants, or one human line.
    #[default]
    Text,
    /// One JSON object on one line.
    Json,
    /// `BG_KEY=value` lines, shell-safe.
    Env,
}

/// What a binary found or did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The text-format line.
    pub text: String,
    /// `(KEY, value)` pairs; keys without the `BG_` prefix, upper case.
    pub fields: Vec<(&'static str, Value)>,
}

impl Report {
    pub fn new(text: impl Into<String>) -> Self {
        Report {
            text: text.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field: `ACTIVE_PORT` becomes `BG_ACTIVE_PORT` in env and `active_port` in json.
    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.fields.push((key, value.into()));
        self
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => format!("{}\n", self.text),
            Format::Json => {
                let object: serde_json::Map<String, Value> = self
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect();
                format!("{}\n", Value::Object(object))
            }
            Format::Env => self
                .fields
                .iter()
                .map(|(k, v)| format!("BG_{k}={}\n", env_value(v)))
                .collect(),
        }
    }

    /// Prints to stdout; a closed pipe (`| head`) is not an error.
    pub fn print(&self, format: Format) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        match out
            .write_all(self.render(format).as_bytes())
            .and_then(|()| out.flush())
        {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// A value as one shell word: bare when safe, else single-quoted.
pub fn env_value(value: &Value) -> String {
    let plain = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let safe = plain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.,:/+@%=".contains(&b));
    if safe {
        plain
    } else {
        format!("'{}'", plain.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Report {
        Report::new("8001")
            .field("ACTIVE_PORT", 8000)
            .field("TARGET_PORT", 8001)
            .field("SITE", "dev")
    }

    #[test]
    fn three_formats() {
        assert_eq!(report().render(Format::Text), "8001\n");
        assert_eq!(
            report().render(Format::Json),
            "{\"active_port\":8000,\"target_port\":8001,\"site\":\"dev\"}\n"
        );
        assert_eq!(
            report().render(Format::Env),
            "BG_ACTIVE_PORT=8000\nBG_TARGET_PORT=8001\nBG_SITE=dev\n"
        );
    }

    #[test]
    fn env_values() {
        assert_eq!(env_value(&json!(null)), "");
        assert_eq!(env_value(&json!("1.2.3-SNAPSHOT")), "1.2.3-SNAPSHOT");
        assert_eq!(env_value(&json!([123, 456])), "123,456");
        assert_eq!(env_value(&json!("it's $(x)")), r"'it'\''s $(x)'");
    }
}
