//! Several files read in one command, then served as [`Host::read_file`]
//! answers: each command over SSH is a session and a start of the login
//! shell, and a switch reads up to five small files before it changes
//! anything.

use std::collections::HashMap;

use super::{Host, Input, Output, Running};
use crate::cmd::Cmd;
use crate::error::HostError;

/// For each path: `F SIZE`, a newline and the bytes of a regular file;
/// `N` for nothing there; `X` for anything else (a directory, a dangling
/// link, an unreadable file), which is left to `read_file` to explain.
const READ_MANY_SCRIPT: &str = r#"# read files
for f in "$@"; do
  if [ -f "$f" ] && [ -r "$f" ] && n=$(wc -c < "$f"); then
    printf 'F %s\n' "$((n))"; cat -- "$f"
  elif [ ! -e "$f" ] && [ ! -L "$f" ]; then
    echo N
  else
    echo X
  fi
done
"#;

/// A host whose `read_file` answers from files read ahead, for as long as
/// nothing writes: use it for reading a state, then the host itself.
pub struct Prefetched<'a> {
    host: &'a dyn Host,
    /// Path to its bytes (`None`: nothing there). Paths the batch could not
    /// answer plainly are absent and read the usual way.
    files: HashMap<String, Option<Vec<u8>>>,
    /// Commands run ahead with the files (listing a directory, say), and
    /// what they printed: the same command asked again gets this answer.
    answers: HashMap<Cmd, Output>,
}

impl std::fmt::Debug for Prefetched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Prefetched({}, {} files)",
            self.host.name(),
            self.files.len()
        )
    }
}

impl<'a> Prefetched<'a> {
    /// Reads `paths` in one command (through sudo when `privileged`). A
    /// batch that fails or does not parse leaves every path to be read on
    /// its own, as without it.
    pub fn new(host: &'a dyn Host, paths: &[String], privileged: bool) -> Prefetched<'a> {
        Prefetched::with_commands(host, paths, privileged, &[])
    }

    /// The same, with `cmds` run in the same round trip and their answers
    /// kept for when they are asked. A failure leaves them to run then.
    pub fn with_commands(
        host: &'a dyn Host,
        paths: &[String],
        privileged: bool,
        cmds: &[Cmd],
    ) -> Prefetched<'a> {
        let args: Vec<&str> = paths.iter().map(String::as_str).collect();
        let read = (!paths.is_empty())
            .then(|| Cmd::script(READ_MANY_SCRIPT, &args).privileged(privileged));
        let mut all: Vec<Cmd> = read.iter().cloned().collect();
        all.extend(cmds.iter().cloned());
        let mut outputs = host.run_all(&all).unwrap_or_default().into_iter();
        let files = match read.and_then(|_| outputs.next()) {
            Some(output) if output.success() => parse(paths, &output.stdout).unwrap_or_default(),
            _ => HashMap::new(),
        };
        let answers = cmds.iter().cloned().zip(outputs).collect();
        Prefetched {
            host,
            files,
            answers,
        }
    }
}

impl Prefetched<'_> {
    /// The answer `cmd` got in the batch, if it was in it and the batch ran.
    pub fn answer(&self, cmd: &Cmd) -> Option<&Output> {
        self.answers.get(cmd)
    }
}

/// The batch's answers, or `None` when its output is not exactly one
/// record per path.
fn parse(paths: &[String], mut out: &[u8]) -> Option<HashMap<String, Option<Vec<u8>>>> {
    let mut files = HashMap::new();
    for path in paths {
        let end = out.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&out[..end]).ok()?;
        out = &out[end + 1..];
        match head {
            "N" => {
                files.insert(path.clone(), None);
            }
            "X" => {}
            _ => {
                let size: usize = head.strip_prefix("F ")?.parse().ok()?;
                let bytes = out.get(..size)?;
                files.insert(path.clone(), Some(bytes.to_vec()));
                out = &out[size..];
            }
        }
    }
    out.is_empty().then_some(files)
}

impl Host for Prefetched<'_> {
    fn name(&self) -> &str {
        self.host.name()
    }

    fn sudo(&self) -> bool {
        self.host.sudo()
    }

    fn exec(&self, cmd: &Cmd, input: Input<'_>) -> Result<Output, HostError> {
        if let (Some(answer), Input::None) = (self.answers.get(cmd), &input) {
            return Ok(answer.clone());
        }
        self.host.exec(cmd, input)
    }

    fn start(&self, cmd: &Cmd) -> Result<Box<dyn Running>, HostError> {
        self.host.start(cmd)
    }

    fn read_file(&self, path: &str, privileged: bool) -> Result<Option<Vec<u8>>, HostError> {
        match self.files.get(path) {
            Some(answer) => Ok(answer.clone()),
            None => self.host.read_file(path, privileged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_one_record_per_path() {
        let out = b"F 3\nabcN\nX\nF 0\nF 4\na\nb\n";
        let files = parse(&paths(&["a", "b", "c", "d", "e"]), out).unwrap();
        assert_eq!(files["a"], Some(b"abc".to_vec()));
        assert_eq!(files["b"], None);
        assert!(!files.contains_key("c"), "left to read_file");
        assert_eq!(files["d"], Some(Vec::new()));
        assert_eq!(files["e"], Some(b"a\nb\n".to_vec()));
    }

    #[test]
    fn refuses_output_that_does_not_add_up() {
        let two = paths(&["a", "b"]);
        assert!(parse(&two, b"F 3\nabc").is_none(), "a record missing");
        assert!(parse(&two, b"N\nN\nN\n").is_none(), "a record too many");
        assert!(parse(&two, b"F 9\nabc\nN\n").is_none(), "short bytes");
        assert!(parse(&two, b"welcome\nN\n").is_none(), "not a record");
    }
}
