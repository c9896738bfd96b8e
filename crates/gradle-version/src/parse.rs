//! Reading `version` out of Gradle build scripts and properties files.
//!
//! Not a Groovy or Kotlin parser: it removes comments, tracks `{ }` blocks,
//! and reads the statements that set the project version, at the top level
//! or in `allprojects { }`. Plugin lines (`id 'x' version '3.1.0'`) never
//! match because `version` there does not start a statement. An expression
//! it cannot evaluate is reported, not guessed.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A version and where it was declared (a line number, or a property name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub version: String,
    pub source: String,
}

/// Why a file yields no version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NoVersion,
    Unresolved { name: String, line: usize },
    Unsupported { expression: String, line: usize },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoVersion => f.write_str("declares no version"),
            Problem::Unresolved { name, line } => write!(
                f,
                "line {line}: the version refers to `{name}`, which neither the script nor gradle.properties defines"
            ),
            Problem::Unsupported { expression, line } => {
                write!(
                    f,
                    "line {line}: cannot evaluate `version = {expression}` without running Gradle"
                )
            }
        }
    }
}

/// `key=value`, `key = value`, `key: value` lines of a properties file; `#` and `!` comments.
pub fn read_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|line| {
            let split = line
                .find(['=', ':'])
                .or_else(|| line.find(char::is_whitespace))?;
            let key = line[..split].trim();
            let value = line[split + 1..].trim();
            (!key.is_empty()).then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

static VERSION_STATEMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:project\s*\.\s*)?version\s*(?:=\s*(?P<assigned>.+?)|(?P<called>\(.+\)|["'].*))\s*;?$"#)
        .expect("valid regex")
});

static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:(?:def|val|var|final|String)\s+|(?:project\s*\.\s*)?ext\s*\.\s*|set\s*\(\s*)?["']?(?P<name>[A-Za-z_][A-Za-z0-9_]*)["']?(?:\s*:\s*String\??)?\s*(?:=|,)\s*(?P<value>.+?)\s*\)?\s*;?$"#,
    )
    .expect("valid regex")
});

static BY_PROJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^val\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*String\??)?\s+by\s+project\s*;?$"#,
    )
    .expect("valid regex")
});

static PROPERTY_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:(?:root)?[pP]roject\s*\.\s*)?(?:property|findProperty|properties\s*\.\s*get)\s*\(\s*["'](?P<name>[^"']+)["']\s*\)(?:\s*as\s+String|\s*\.toString\(\)|!!)?(?:\s*\?:\s*(?P<fallback>.+))?$"#,
    )
    .expect("valid regex")
});

static PROPERTY_INDEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:(?:root)?[pP]roject\s*\.\s*)?properties\s*\[\s*["'](?P<name>[^"']+)["']\s*\](?:\s*as\s+String|\s*\.toString\(\))?$"#)
        .expect("valid regex")
});

static IDENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:(?:root)?[pP]roject\s*\.\s*)?(?:ext\s*\.\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)$"#,
    )
    .expect("valid regex")
});

static INTERPOLATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\$\{\s*(?:project\s*\.\s*)?(?P<braced>[A-Za-z_][A-Za-z0-9_.]*)\s*\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"#)
        .expect("valid regex")
});

/// One statement of a script: its text, the line it starts on, and the
/// names of the blocks it is inside (`["allprojects"]`).
#[derive(Debug)]
struct Statement {
    text: String,
    line: usize,
    blocks: Vec<String>,
}

/// Finds the project version in a Groovy or Kotlin build script.
pub fn find_in_build_script(text: &str, properties: &[(String, String)]) -> Result<Found, Problem> {
    let statements = statements(&strip_comments(text));
    let mut scope = Scope::default();
    for (key, value) in properties {
        scope.properties.insert(key.clone(), value.clone());
    }
    for s in &statements {
        if let Some(c) = BY_PROJECT.captures(&s.text) {
            scope.delegated.push(c["name"].to_string());
        } else if let Some(c) = VARIABLE.captures(&s.text) {
            let in_ext = s.blocks.last().is_some_and(|b| b == "ext");
            let declared = s.text.starts_with(['d', 'v', 'f', 'S', 'e', 'p', 's']) || in_ext;
            if declared && &c["name"] != "version" {
                scope
                    .variables
                    .insert(c["name"].to_string(), (c["value"].to_string(), s.line));
            }
        }
    }
    let declaration = statements
        .iter()
        .filter(|s| match s.blocks.as_slice() {
            [] => true,
            [only] => only == "allprojects",
            _ => false,
        })
        .filter_map(|s| VERSION_STATEMENT.captures(&s.text).map(|c| (c, s.line)))
        .next_back(); // the last assignment wins, as when Gradle runs the script
    let Some((captures, line)) = declaration else {
        return Err(Problem::NoVersion);
    };
    let expression = captures
        .name("assigned")
        .or_else(|| captures.name("called"))
        .map(|m| m.as_str().trim())
        .unwrap_or("");
    let version = scope.eval(expression, line, 0)?;
    if version.is_empty() {
        return Err(Problem::Unsupported {
            expression: expression.to_string(),
            line,
        });
    }
    Ok(Found {
        version,
        source: line.to_string(),
    })
}

#[derive(Default)]
struct Scope {
    properties: HashMap<String, String>,
    variables: HashMap<String, (String, usize)>,
    delegated: Vec<String>,
}

impl Scope {
    fn eval(&self, expression: &str, line: usize, depth: usize) -> Result<String, Problem> {
        let unsupported = || Problem::Unsupported {
            expression: expression.to_string(),
            line,
        };
        let e = expression.trim().trim_end_matches(';').trim();
        if depth > 8 {
            return Err(unsupported());
        }
        if let Some(inner) = e.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            return self.eval(inner, line, depth + 1);
        }
        if let Some(literal) = single_quoted(e) {
            return Ok(literal.to_string());
        }
        if let Some(template) = double_quoted(e) {
            let mut out = String::new();
            let mut last = 0;
            for c in INTERPOLATION.captures_iter(template) {
                let whole = c.get(0).expect("group 0");
                let name = c
                    .name("braced")
                    .or_else(|| c.name("bare"))
                    .expect("one group")
                    .as_str();
                out.push_str(&template[last..whole.start()]);
                out.push_str(&self.lookup(name, line, depth)?);
                last = whole.end();
            }
            out.push_str(&template[last..]);
            return Ok(out);
        }
        if let Some(c) = PROPERTY_CALL
            .captures(e)
            .or_else(|| PROPERTY_INDEX.captures(e))
        {
            return match (self.properties.get(&c["name"]), c.name("fallback")) {
                (Some(value), _) => Ok(value.clone()),
                (None, Some(fallback)) => self.eval(fallback.as_str(), line, depth + 1),
                (None, None) => Err(Problem::Unresolved {
                    name: c["name"].to_string(),
                    line,
                }),
            };
        }
        if let Some(c) = IDENT.captures(e) {
            return self.lookup(&c["name"], line, depth);
        }
        Err(unsupported())
    }

    /// A name in a script: a variable of the script, else a project property.
    fn lookup(&self, name: &str, line: usize, depth: usize) -> Result<String, Problem> {
        let name = name.strip_prefix("ext.").unwrap_or(name);
        if let Some((expression, at)) = self.variables.get(name) {
            return self.eval(expression, *at, depth + 1);
        }
        if let Some(value) = self.properties.get(name) {
            return Ok(value.clone());
        }
        let _ = &self.delegated; // `val x: String by project` is a property too: same lookup.
        Err(Problem::Unresolved {
            name: name.to_string(),
            line,
        })
    }
}

fn single_quoted(e: &str) -> Option<&str> {
    let inner = e.strip_prefix('\'')?.strip_suffix('\'')?;
    (!inner.contains('\'')).then_some(inner)
}

fn double_quoted(e: &str) -> Option<&str> {
    let inner = e.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

/// Replaces `//` and `/* */` comments with spaces, keeping strings and line breaks.
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' {
                    if let Some(n) = next {
                        out.push(n);
                        i += 1;
                    }
                } else if c == q || c == '\n' {
                    quote = None;
                }
            }
            None if c == '/' && next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            None if c == '/' && next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 2;
                out.push(' ');
                continue;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// Splits a comment-free script into statements, each with its block path.
fn statements(text: &str) -> Vec<Statement> {
    let mut result = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut line = 1;
    let mut quote: Option<char> = None;
    let mut parens = 0usize;
    let flush =
        |current: &mut String, result: &mut Vec<Statement>, blocks: &[String], start: usize| {
            let text = current.trim().to_string();
            if !text.is_empty() {
                result.push(Statement {
                    text,
                    line: start,
                    blocks: blocks.to_vec(),
                });
            }
            current.clear();
        };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if current.trim().is_empty() {
            start_line = line;
        }
        if c == '\n' {
            line += 1;
        }
        if let Some(q) = quote {
            current.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                current.push(c);
            }
            '(' => {
                parens += 1;
                current.push(c);
            }
            ')' => {
                parens = parens.saturating_sub(1);
                current.push(c);
            }
            '{' => {
                let head = current.trim();
                let name = head
                    .split(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '.'))
                    .find(|w| !w.is_empty())
                    .unwrap_or("")
                    .to_string();
                current.clear();
                blocks.push(name);
            }
            '}' => {
                flush(&mut current, &mut result, &blocks, start_line);
                blocks.pop();
            }
            '\n' | ';' if parens == 0 => flush(&mut current, &mut result, &blocks, start_line),
            _ => current.push(c),
        }
    }
    flush(&mut current, &mut result, &blocks, start_line);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(script: &str) -> Result<String, Problem> {
        find_in_build_script(script, &[]).map(|f| f.version)
    }

    fn with_props(script: &str, props: &str) -> Result<String, Problem> {
        find_in_build_script(script, &read_properties(props)).map(|f| f.version)
    }

    #[test]
    fn groovy_forms() {
        assert_eq!(version("version = '1.2.3'").unwrap(), "1.2.3");
        assert_eq!(version("version = \"1.2.3\"").unwrap(), "1.2.3");
        assert_eq!(version("version '1.2.3'").unwrap(), "1.2.3");
        assert_eq!(version("version \"1.2.3\"").unwrap(), "1.2.3");
        assert_eq!(version("version('1.2.3')").unwrap(), "1.2.3");
        assert_eq!(
            version("project.version = '2.0.0-SNAPSHOT'").unwrap(),
            "2.0.0-SNAPSHOT"
        );
        assert_eq!(version("version='0.0.1';").unwrap(), "0.0.1");
    }

    #[test]
    fn plugin_lines_and_lookalikes_are_ignored() {
        let script = "plugins {\n  id 'org.springframework.boot' version '3.1.0'\n  id(\"io.spring.dependency-management\") version \"1.1.0\"\n}\njava { toolchain { languageVersion = JavaLanguageVersion.of(17) } }\nversionCode = 3\nversion = '0.4.0'\n";
        assert_eq!(version(script).unwrap(), "0.4.0");
        assert_eq!(
            version("plugins { id 'x' version '3.1.0' }"),
            Err(Problem::NoVersion)
        );
    }

    #[test]
    fn comments_are_ignored() {
        let script = "// version = '9.9.9'\n/* version = '8.8.8'\n version = '7.7.7' */\nversion = '1.0.0' // the real one\nrepositories { maven { url 'https://repo.example.com//x' } }\n";
        assert_eq!(version(script).unwrap(), "1.0.0");
    }

    #[test]
    fn properties_resolve_references() {
        let props = "# comment\nprojectVersion=3.4.5\nv = 6.7.8\nsuffix: RC1\n";
        assert_eq!(
            with_props("version = \"${projectVersion}\"", props).unwrap(),
            "3.4.5"
        );
        assert_eq!(
            with_props("version = \"$projectVersion-$suffix\"", props).unwrap(),
            "3.4.5-RC1"
        );
        assert_eq!(
            with_props("version = project.property(\"v\")", props).unwrap(),
            "6.7.8"
        );
        assert_eq!(
            with_props("version = property('v')", props).unwrap(),
            "6.7.8"
        );
        assert_eq!(
            with_props("version = project.findProperty(\"v\") ?: \"0\"", props).unwrap(),
            "6.7.8"
        );
        assert_eq!(
            with_props("version = findProperty(\"nope\") ?: \"0.0.1\"", props).unwrap(),
            "0.0.1"
        );
        assert_eq!(
            with_props("version = projectVersion", props).unwrap(),
            "3.4.5"
        );
        assert_eq!(
            with_props("version = project.properties['v']", props).unwrap(),
            "6.7.8"
        );
    }

    #[test]
    fn single_quotes_do_not_interpolate() {
        assert_eq!(with_props("version = '${x}'", "x=1").unwrap(), "${x}");
    }

    #[test]
    fn script_variables_and_ext() {
        assert_eq!(
            version("def appVersion = '1.1.1'\nversion = appVersion").unwrap(),
            "1.1.1"
        );
        assert_eq!(
            version("ext { releaseVersion = '2.2.2' }\nversion = \"${releaseVersion}\"").unwrap(),
            "2.2.2"
        );
        assert_eq!(
            version("ext.base = '3.3'\nversion = \"${base}.3\"").unwrap(),
            "3.3.3"
        );
        assert_eq!(
            with_props(
                "val appVersion: String by project\nversion = appVersion",
                "appVersion=4.4.4"
            )
            .unwrap(),
            "4.4.4"
        );
    }

    #[test]
    fn unresolved_and_unsupported_are_reported() {
        assert_eq!(
            version("\nversion = \"${missing}\""),
            Err(Problem::Unresolved {
                name: "missing".into(),
                line: 2
            })
        );
        assert!(matches!(
            version("version = computeVersion() + 1"),
            Err(Problem::Unsupported { line: 1, .. })
        ));
    }

    #[test]
    fn allprojects_counts_other_blocks_do_not() {
        assert_eq!(
            version("allprojects {\n  group = 'com.x'\n  version = '5.0.0'\n}").unwrap(),
            "5.0.0"
        );
        assert_eq!(
            version(
                "subprojects {\n  apply plugin: 'java'\n}\ntasks.named('jar') { version = '6' }"
            ),
            Err(Problem::NoVersion)
        );
    }

    #[test]
    fn properties_file_parsing() {
        assert_eq!(
            read_properties("a=1\n b : 2 \n! c=3\n#d=4\ne 5\nurl=http://x:8080/y"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
                ("e".to_string(), "5".to_string()),
                ("url".to_string(), "http://x:8080/y".to_string()),
            ]
        );
    }

    #[test]
    fn line_numbers_are_reported() {
        let found = find_in_build_script("plugins {\n}\n\nversion = '1'\n", &[]).unwrap();
        assert_eq!(found.source, "4");
    }
}
