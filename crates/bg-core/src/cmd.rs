//! A command to run on a host, as an argv list that is quoted only at the
//! last moment (for SSH) or never (locally).

use std::fmt;
use std::time::Duration;

use crate::error::HostError;
use crate::quote;

/// A command for [`crate::host::Host::exec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cmd {
    argv: Vec<String>,
    privileged: bool,
    timeout: Option<Duration>,
}

impl Cmd {
    /// A program and, with [`Cmd::arg`], its arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            argv: vec![program.into()],
            privileged: false,
            timeout: None,
        }
    }

    /// A fixed shell script whose inputs arrive as `"$1"`, `"$2"`...: the
    /// script is our own text, the values are never pasted into it.
    pub fn script(script: &str, args: &[&str]) -> Self {
        let mut cmd = Cmd::new("sh").arg("-c").arg(script).arg("sh");
        cmd.argv.extend(args.iter().map(|a| a.to_string()));
        cmd
    }

    /// A command line given by the user (`--test-cmd "nginx -t"`), run by `sh -c`
    /// exactly as they wrote it.
    pub fn shell(line: &str) -> Self {
        Cmd::new("sh").arg("-c").arg(line)
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Marks the command as needing root: with `--sudo` it runs as `sudo -n -- ...`.
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.privileged = privileged;
        self
    }

    /// Fails the command with [`HostError::Timeout`] (and kills it) after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The argv actually run, with the sudo prefix when asked for.
    pub fn argv(&self, sudo: bool) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.argv.len() + 3);
        if sudo && self.privileged {
            argv.extend(["sudo", "-n", "--"].map(String::from));
        }
        argv.extend(self.argv.iter().cloned());
        argv
    }

    /// The one shell line sent to a remote host.
    pub fn to_shell_line(&self, sudo: bool) -> Result<String, HostError> {
        quote::join(&self.argv(sudo))
    }
}

/// Shows the command as a shell line, for logs and error messages; a script
/// is shown by its inputs only, not its whole text.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<&str> = match self.argv.as_slice() {
            [sh, c, script, _, rest @ ..] if sh == "sh" && c == "-c" && script.contains('\n') => {
                let first = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let mut v = vec![first.trim().trim_start_matches("# ")];
                v.extend(rest.iter().map(String::as_str));
                v
            }
            argv => argv.iter().map(String::as_str).collect(),
        };
        let line = quote::join(&shown).unwrap_or_else(|_| shown.join(" "));
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_prefix_only_when_privileged_and_asked() {
        let cmd = Cmd::new("nginx").arg("-t").privileged(true);
        assert_eq!(cmd.to_shell_line(true).unwrap(), "sudo -n -- nginx -t");
        assert_eq!(cmd.to_shell_line(false).unwrap(), "nginx -t");
        let plain = Cmd::new("cat").arg("/etc/hostname");
        assert_eq!(plain.to_shell_line(true).unwrap(), "cat /etc/hostname");
    }

    #[test]
    fn script_inputs_are_positional_and_quoted() {
        let cmd = Cmd::script("printf '%s' \"$1\"", &["$(id)"]);
        assert_eq!(
            cmd.to_shell_line(false).unwrap(),
            r#"sh -c "printf '%s' \""'$1"' sh '$(id)'"#
        );
    }

    #[test]
    fn display_names_a_script_by_its_first_line() {
        let cmd = Cmd::script("# read a file\ncat -- \"$1\"\n", &["/etc/nginx/nginx.conf"]);
        assert_eq!(cmd.to_string(), "'read a file' /etc/nginx/nginx.conf");
    }
}
