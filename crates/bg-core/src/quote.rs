//! The one way a value reaches a shell.
//!
//! Every remote command line is built here from an argv list: each word is
//! quoted for a POSIX shell, so spaces, quotes, `$(...)`, backticks, newlines
//! and non-ASCII text arrive as the same bytes on the other side.

use crate::error::HostError;

/// Quotes one word for a POSIX shell; words that need no quoting stay bare.
pub fn quote(word: &str) -> Result<String, HostError> {
    shlex::try_quote(word)
        .map(|quoted| quoted.into_owned())
        .map_err(|_| HostError::Nul {
            value: word.to_string(),
        })
}

/// Joins words into one shell command line, each quoted.
pub fn join<S: AsRef<str>>(words: &[S]) -> Result<String, HostError> {
    let quoted: Result<Vec<String>, HostError> = words.iter().map(|w| quote(w.as_ref())).collect();
    Ok(quoted?.join(" "))
}

/// Splits a string the way a POSIX shell splits words (quotes respected),
/// without expanding anything. `None` when quotes are unbalanced.
pub fn split(line: &str) -> Option<Vec<String>> {
    shlex::split(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "with space",
        "it's",
        "\"double\"",
        "$(touch /tmp/bg-quote-pwned)",
        "`touch /tmp/bg-quote-pwned`",
        "$HOME",
        "a\nb\nc",
        "tab\there",
        "semi;colon && pipe | amp &",
        "glob * ? [x]",
        "~user",
        "back\\slash",
        "héllo wörld ✓ 배포",
        "-n",
        "--flag=$(id)",
        "'",
        "''\"\"''",
        "{a,b}",
        "#comment",
        "!bang",
        "trailing newline\n",
    ];

    /// Runs the quoted line through a real `sh` and returns the words it saw.
    fn through_sh(words: &[&str]) -> Vec<String> {
        let line = join(words).unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .unwrap();
        assert!(output.status.success(), "sh rejected: {line}");
        let text = String::from_utf8(output.stdout).unwrap();
        let mut seen: Vec<String> = text.split('\0').map(str::to_string).collect();
        seen.pop(); // after the last NUL
        seen
    }

    #[test]
    fn every_hostile_word_survives_a_real_shell() {
        for word in HOSTILE {
            assert_eq!(through_sh(&[word]), vec![word.to_string()], "word {word:?}");
        }
        assert_eq!(
            through_sh(HOSTILE),
            HOSTILE.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        assert!(!std::path::Path::new("/tmp/bg-quote-pwned").exists());
    }

    #[test]
    fn safe_words_stay_readable() {
        assert_eq!(quote("nginx").unwrap(), "nginx");
        assert_eq!(
            quote("/etc/nginx/sites-enabled/dev_8001").unwrap(),
            "/etc/nginx/sites-enabled/dev_8001"
        );
        assert_eq!(
            join(&["systemctl", "reload", "nginx"]).unwrap(),
            "systemctl reload nginx"
        );
    }

    #[test]
    fn nul_is_refused_not_truncated() {
        assert!(matches!(quote("a\0b"), Err(HostError::Nul { .. })));
    }

    #[test]
    fn split_respects_quotes_and_expands_nothing() {
        assert_eq!(
            split(r#"-Xms4096m -Dname="a b" -Dx='$(id)'"#).unwrap(),
            vec!["-Xms4096m", "-Dname=a b", "-Dx=$(id)"]
        );
        assert_eq!(split("unbalanced 'quote"), None);
    }
}
