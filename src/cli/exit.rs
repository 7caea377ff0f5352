//! The exit-code contract of the `shepherd` command (not of the wrapper, whose
//! codes are reported to the daemon). Documented in `docs/exit-codes.md`;
//! changing a value is a breaking change.

use crate::ops::Kind;

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// A failure not covered below.
pub const FAILURE: u8 = 1;
/// The command line was invalid (clap's own code).
pub const USAGE: u8 = 2;
/// Slurm could not be asked: not installed, controller unreachable, timed out.
pub const SLURM_UNAVAILABLE: u8 = 3;
/// Slurm refused the request (invalid partition, unknown node, limits).
pub const REJECTED: u8 = 4;
/// The job (or run) named does not exist.
pub const NOT_FOUND: u8 = 5;
/// `--remote`: ssh could not connect or log in, or the connection was lost
/// (or the remote command was killed: ssh cannot tell those apart).
pub const REMOTE_UNREACHABLE: u8 = 6;

/// `wait`: the run ended `failed`.
pub const RUN_FAILED: u8 = 7;
/// `wait`: the run ended `stopped` (by `shepherd stop` or an outside `scancel`).
pub const RUN_STOPPED: u8 = 8;
/// `wait --timeout`: the run was still active when the timeout passed.
pub const WAIT_TIMED_OUT: u8 = 9;

/// How `wait` exits for a run with `status`; `None` while the run is active.
pub fn for_ended_run(status: crate::policy::state::RunStatus) -> Option<u8> {
    use crate::policy::state::RunStatus as S;
    match status {
        // An indefinite run reaching its keep-alive is its normal end.
        S::Completed | S::Expired => Some(SUCCESS),
        S::Failed => Some(RUN_FAILED),
        S::Stopped => Some(RUN_STOPPED),
        S::Queued
        | S::Submitting
        | S::Pending
        | S::Running
        | S::Paused
        | S::Stopping
        | S::Expiring => None,
    }
}

/// The one place errors become exit codes: by their kind, decided where
/// each error was made (`ops::Error`).
pub fn code(kind: Kind) -> u8 {
    match kind {
        Kind::Failure | Kind::Reported | Kind::Remote => FAILURE,
        Kind::Usage | Kind::RemoteUsage => USAGE,
        Kind::UnknownRun | Kind::SlurmUnknownJob(_) => NOT_FOUND,
        Kind::SlurmUnavailable(_) => SLURM_UNAVAILABLE,
        Kind::SlurmRejected(_) => REJECTED,
        Kind::SlurmFailed(_) => FAILURE,
        Kind::RemoteUnreachable => REMOTE_UNREACHABLE,
        // The remote's own table made it.
        Kind::RemoteRefused(code) => code,
    }
}
