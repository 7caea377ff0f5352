//! The exact command lines the adapter runs, as pure functions.
//!
//! Kept apart from their execution so that the fixture tests can check that the
//! outputs recorded by `scripts/capture-fixtures` came from these very command
//! lines: a changed format string without new fixtures fails a test.

use super::parse::{sacct, squeue};
use super::types::{AccountingSource, JobId};

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub program: &'static str,
    pub args: Vec<String>,
}

impl Argv {
    fn new(program: &'static str, args: &[&str]) -> Argv {
        Argv {
            program,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Program followed by arguments, as `scripts/capture-fixtures` records them.
    pub fn to_vec(&self) -> Vec<String> {
        std::iter::once(self.program.to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

pub fn join_ids(ids: &[JobId]) -> String {
    ids.iter()
        .map(JobId::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// All given jobs, including those ended within `MinJobAge`, in one call.
pub fn squeue(ids: &[JobId]) -> Argv {
    let ids = join_ids(ids);
    let format = squeue::format_arg();
    Argv::new("squeue", &["-h", "-t", "all", "-j", &ids, "-O", &format])
}

/// The caller's own jobs with these names (`--me`: never adopt another user's
/// job that happens to share a name).
pub fn squeue_by_name(names: &[String]) -> Argv {
    let names = names.join(",");
    let format = squeue::format_arg();
    Argv::new(
        "squeue",
        &["-h", "-t", "all", "--me", "-n", &names, "-O", &format],
    )
}

pub fn sacct(source: AccountingSource, ids: &[JobId]) -> Argv {
    let ids = join_ids(ids);
    let tail = ["-n", "--parsable2", "-o", sacct::FORMAT, "-j", &ids];
    let head: &[&str] = match source {
        // -D: every run of a requeued job id, not only the last.
        AccountingSource::Slurmdbd => &["-X", "-D"],
        // The job completion file, read by sacct itself.
        _ => &["-c"],
    };
    let args: Vec<&str> = head.iter().copied().chain(tail).collect();
    Argv::new("sacct", &args)
}

/// Every job the controller holds (accounting of last resort).
pub fn controller_jobs() -> Argv {
    Argv::new("scontrol", &["-o", "show", "job"])
}

/// `-d` adds `GresUsed`, the only per-node GPU usage visible without slurmdbd.
pub fn nodes() -> Argv {
    Argv::new("scontrol", &["-o", "-d", "show", "node"])
}

pub fn partitions() -> Argv {
    Argv::new("scontrol", &["-o", "show", "partition"])
}

pub fn topology() -> Argv {
    Argv::new("scontrol", &["show", "topology"])
}

pub fn config() -> Argv {
    Argv::new("scontrol", &["show", "config"])
}
