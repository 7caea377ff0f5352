//! The one error type of the operations layer. Every error is classified
//! where it is made, by its own type (an exhaustive `match` in each `From`),
//! into a [`Kind`]: the kind decides the exit code (`cli::exit::code`, one
//! table) and the JSON `kind`; the CLI renders every error the same way
//! (`cli::output::error`). Nothing is recovered by downcasting later, so a
//! new error type has to say what it is before it compiles.

use std::fmt;

use crate::remote::{AskError, RemoteError};
use crate::slurm::SlurmError;
use crate::store::atomic::StoreError;
use crate::view::UnknownRun;

/// What kind of failure, as far as the caller (a script, the TUI) can act
/// on it. Slurm's kinds carry `SlurmError::kind_name` for `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A failure not covered below.
    Failure,
    /// The command line was invalid.
    Usage,
    /// The run named does not exist.
    UnknownRun,
    /// Slurm could not be asked (missing, misconfigured, down, timed out).
    SlurmUnavailable(&'static str),
    /// Slurm refused the request.
    SlurmRejected(&'static str),
    /// The job named does not exist.
    SlurmUnknownJob(&'static str),
    /// Slurm failed otherwise (an answer not understood, a command failed).
    SlurmFailed(&'static str),
    /// `--remote`: ssh could not connect or log in, or the connection was lost.
    RemoteUnreachable,
    /// `--remote`: an invalid host or argument.
    RemoteUsage,
    /// `--remote`: the remote machinery failed otherwise (install, copy, an
    /// answer not understood).
    Remote,
    /// The remote `shepherd` refused, exiting with this code (which is
    /// passed on as it is: the remote's own table made it).
    RemoteRefused(u8),
    /// Already shown in full (with `--json`, as the one JSON document of
    /// the invocation): nothing more is printed, and the command fails.
    Reported,
}

impl Kind {
    /// The `kind` of a `--json` error document.
    pub fn json_name(self) -> &'static str {
        match self {
            Kind::Failure | Kind::UnknownRun | Kind::Reported => "error",
            Kind::Usage => "usage",
            Kind::SlurmUnavailable(n)
            | Kind::SlurmRejected(n)
            | Kind::SlurmUnknownJob(n)
            | Kind::SlurmFailed(n) => n,
            Kind::RemoteUnreachable | Kind::RemoteUsage | Kind::Remote | Kind::RemoteRefused(_) => {
                "remote"
            }
        }
    }
}

/// An error of an operation: its kind, the message chain, and a hint that
/// names the fix when one is known.
pub struct Error {
    kind: Kind,
    hint: Option<String>,
    inner: anyhow::Error,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, inner: impl Into<anyhow::Error>) -> Error {
        Error {
            kind,
            hint: None,
            inner: inner.into(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// The message chain, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        self.inner.chain()
    }

    /// Adds context, keeping the kind and the hint.
    pub fn context<C: fmt::Display + Send + Sync + 'static>(self, c: C) -> Error {
        Error {
            inner: self.inner.context(c),
            ..self
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", self.inner)
        } else {
            write!(f, "{}", self.inner)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?})", self.inner, self.kind)
    }
}

impl From<SlurmError> for Error {
    fn from(e: SlurmError) -> Error {
        let name = e.kind_name();
        let kind = match &e {
            SlurmError::NotFound { .. }
            | SlurmError::Misconfigured { .. }
            | SlurmError::TimedOut { .. }
            | SlurmError::Unreachable { .. }
            | SlurmError::AccountingUnavailable { .. } => Kind::SlurmUnavailable(name),
            SlurmError::Rejected { .. } => Kind::SlurmRejected(name),
            SlurmError::UnknownJob { .. } => Kind::SlurmUnknownJob(name),
            SlurmError::Failed { .. } | SlurmError::Parse { .. } => Kind::SlurmFailed(name),
        };
        let hint = match &e {
            SlurmError::NotFound { .. } => Some(
                "install the Slurm client tools (sbatch, squeue, scontrol) or put them on PATH",
            ),
            SlurmError::Misconfigured { .. } => Some(
                "point SLURM_CONF at your cluster's slurm.conf, or unset it to use the default",
            ),
            SlurmError::TimedOut { .. } | SlurmError::Unreachable { .. } => Some(
                "check `scontrol ping` and SLURM_CONF; raise --slurm-timeout if the controller is just slow",
            ),
            SlurmError::Rejected { .. } => {
                Some("change the request (partition, GPUs, excluded nodes) and retry")
            }
            _ => None,
        };
        Error {
            kind,
            hint: hint.map(str::to_string),
            inner: e.into(),
        }
    }
}

impl From<UnknownRun> for Error {
    fn from(e: UnknownRun) -> Error {
        Error::new(Kind::UnknownRun, e)
    }
}

impl From<RemoteError> for Error {
    fn from(e: RemoteError) -> Error {
        let kind = match &e {
            RemoteError::Unreachable { .. } => Kind::RemoteUnreachable,
            RemoteError::BadHost(_) | RemoteError::NotUtf8(_) => Kind::RemoteUsage,
            RemoteError::NoHome
            | RemoteError::NoSsh { .. }
            | RemoteError::Local { .. }
            | RemoteError::Config(_)
            | RemoteError::WrongPlatform { .. }
            | RemoteError::Install { .. } => Kind::Remote,
        };
        Error {
            kind,
            hint: e.hint(),
            inner: e.into(),
        }
    }
}

impl From<AskError> for Error {
    fn from(e: AskError) -> Error {
        match e {
            AskError::Transport(e) => e.into(),
            AskError::Refused {
                code,
                message,
                hint,
            } => Error {
                kind: Kind::RemoteRefused(u8::try_from(code).unwrap_or(1)),
                hint,
                inner: anyhow::anyhow!(message),
            },
            e @ AskError::Unreadable { .. } => Error::new(Kind::Remote, e),
        }
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Error {
        Error::new(Kind::Failure, e)
    }
}

impl From<crate::daemon::install::InstallError> for Error {
    fn from(e: crate::daemon::install::InstallError) -> Error {
        Error::new(Kind::Failure, e)
    }
}

impl From<crate::daemon::keeper::KeeperError> for Error {
    fn from(e: crate::daemon::keeper::KeeperError) -> Error {
        match e {
            crate::daemon::keeper::KeeperError::Slurm(e) => e.into(),
            e => Error::new(Kind::Failure, e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::new(Kind::Failure, e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(Kind::Failure, e)
    }
}

/// Errors of the code below the operations layer that is still written with
/// `anyhow` (submission checks, configuration, the daemon's service): a
/// failure. Slurm's, the store's and the remote's errors have kinds of their
/// own and must be converted where they happen (`?` on them, or
/// [`Context`]); debug builds (every test) check that none arrives here.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        debug_assert!(
            e.chain()
                .all(|c| !c.is::<SlurmError>() && !c.is::<UnknownRun>() && !c.is::<RemoteError>()),
            "an error with a kind of its own lost it inside anyhow: {e:#}"
        );
        Error::new(Kind::Failure, e)
    }
}

/// `.context(…)` that keeps the error's kind (anyhow's would erase it).
pub trait Context<T> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, c: C) -> Result<T>;
    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, c: C) -> Result<T> {
        self.map_err(|e| e.into().context(c))
    }
    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, c: C) -> Result<T> {
        self.ok_or_else(|| Error::new(Kind::Failure, anyhow::anyhow!("{c}")))
    }
    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> Result<T> {
        self.ok_or_else(|| Error::new(Kind::Failure, anyhow::anyhow!("{}", f())))
    }
}

/// `bail!` for the operations layer: a failure with this message.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::ops::Error::new(
            $crate::ops::Kind::Failure,
            anyhow::anyhow!($($t)*),
        ))
    };
}
