//! The one exit policy, for every subcommand.
//!
//! - 0: nothing wrong;
//! - 1: a refusal (the planner refused something, a group cannot be handed over), a
//!   failed action, or a FAIL finding;
//! - 2: a usage, config or I/O error (an argument naming nothing, a config that does
//!   not parse, a file that cannot be read or written).
//!
//! Warnings never change the code. `bind` without `--strict` always exits 0: the boot
//! goes on. A subcommand returns an [`Outcome`]; [`finish`], called once from `main`,
//! prints the error chain and turns it into the process's exit code, and a JSON
//! document's `exit` is [`Exit::code`] of the same value.

use std::process::ExitCode;

/// How a subcommand ended, when it ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Nothing wrong (0).
    Ok,
    /// A refusal, a failed action or a FAIL finding, already shown (1).
    Problem,
    /// A usage, config or I/O error, already shown (2).
    Usage,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Problem => 1,
            Self::Usage => 2,
        }
    }

    /// [`Exit::Problem`] when `problem`, else [`Exit::Ok`].
    pub(crate) fn problem_if(problem: bool) -> Self {
        if problem {
            Self::Problem
        } else {
            Self::Ok
        }
    }
}

/// Why a subcommand stopped; its [`std::fmt::Display`] is the message, its source
/// chain the detail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments name nothing that exists, or contradict each other (2).
    #[error("{0}")]
    Usage(String),
    /// The config cannot be read or parsed (2).
    #[error("{0}")]
    Config(#[source] crate::config::ConfigError),
    /// A file or command could not be read, written or run (2).
    #[error("{0}")]
    Io(String),
    /// The planner refused, or there is nothing the command may do (1).
    #[error("{0}")]
    Refused(String),
    /// An action was tried and failed (1).
    #[error("{0}")]
    Failed(String),
    /// A subcommand's own typed error, with the exit it stands for.
    #[error("{source}")]
    Typed {
        /// 1 or 2.
        exit: Exit,
        /// The error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// The exit this error stands for.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) | Self::Config(_) | Self::Io(_) => Exit::Usage,
            Self::Refused(_) | Self::Failed(_) => Exit::Problem,
            Self::Typed { exit, .. } => *exit,
        }
    }

    /// A typed error that stands for `exit`.
    pub fn typed(exit: Exit, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Typed {
            exit,
            source: Box::new(e),
        }
    }
}

/// What a subcommand returns.
pub type Outcome = Result<Exit, Error>;

/// The error and its sources, joined with `": "`, each source once (a source whose
/// text the message already contains is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

/// Turns an outcome into the process's exit code, printing an error's chain on
/// stderr as `vfio-early: COMMAND: message`.
pub fn finish(command: &str, outcome: Outcome) -> ExitCode {
    let exit = match outcome {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vfio-early: {command}: {}", chain(&e));
            e.exit()
        }
    };
    ExitCode::from(exit.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Problem.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Error::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(Error::Io("x".into()).exit(), Exit::Usage);
        assert_eq!(Error::Refused("x".into()).exit(), Exit::Problem);
        assert_eq!(Error::Failed("x".into()).exit(), Exit::Problem);
        assert_eq!(Exit::problem_if(true), Exit::Problem);
        assert_eq!(Exit::Ok.max(Exit::Usage), Exit::Usage);
    }
}
