//! The exit codes of the contract, the same in every binary.
//!
//! Jenkinsfiles branch on these numbers, so they are named once here and every
//! error type maps each of its variants to one of them with an exhaustive match.

/// An exit code from the contract's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Done; also "nothing to do" (port already free, nginx already on that port).
    Ok = 0,
    /// The operation ran and failed: unhealthy, port still busy, nginx rejected the config.
    Failed = 1,
    /// Bad usage or bad input: unknown flag, port out of range, a given file missing.
    Usage = 2,
    /// The host is not in a state we can act on safely: layout ambiguous, protected port.
    Unsafe = 3,
    /// Could not reach or trust the host: connect, authentication, host key.
    Unreachable = 4,
    /// Another run holds the lock; nothing was changed, retry later.
    Busy = 5,
}

impl Code {
    /// The number the process exits with.
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
