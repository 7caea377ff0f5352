//! Typed failures of Slurm commands.
//!
//! The distinction that matters most: an *observation failure* (Slurm could not be
//! asked: timeout, controller down, command missing) says nothing about any job,
//! while a *rejection* or an *unknown job* is Slurm's answer. The daemon must never
//! treat the first kind as a job failure.

use std::time::Duration;

use serde::Serialize;

/// Why `sbatch` (or `scontrol update`) refused a request, classified from
/// Slurm's exact messages so the policy can react (fail over, drop an exclude).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// `invalid partition specified` / `Invalid partition name specified`.
    InvalidPartition,
    /// `Required partition not available (inactive or drain)`.
    PartitionUnavailable,
    /// `Requested node configuration is not available` (too many GPUs, unknown
    /// GRES type, GPUs on a CPU partition, every node excluded) or memory that
    /// no node has.
    NodeConfigUnavailable,
    /// `Invalid node name specified`: a name in `--exclude`/`-w` is unknown to
    /// the cluster. One stale name blocks every submission.
    InvalidNodeName,
    /// QOS, association or account limits.
    QosOrAccountLimit,
    /// `Requested time limit is invalid (missing or exceeds some limit)`.
    TimeLimit,
    /// Malformed request: bad GRES, feature, or time syntax.
    InvalidRequest,
    /// `Job is no longer pending execution`: an update of a job that started.
    JobNotPending,
    /// Slurm refused for a reason this version does not classify.
    Other,
}

impl Rejection {
    /// Classifies Slurm's message. Returns `None` when the text does not look like
    /// a rejection at all (so the caller can keep looking, e.g. for "unreachable").
    pub fn classify(stderr: &str) -> Option<Rejection> {
        let s = stderr.to_ascii_lowercase();
        let has = |needle: &str| s.contains(needle);
        Some(
            if has("invalid partition name specified") || has("invalid partition specified") {
                Rejection::InvalidPartition
            } else if has("required partition not available") {
                Rejection::PartitionUnavailable
            } else if has("requested node configuration is not available")
                || has("memory specification can not be satisfied")
            {
                Rejection::NodeConfigUnavailable
            } else if has("invalid node name specified") {
                Rejection::InvalidNodeName
            } else if has("qos") || has("invalid account") || has("association") {
                Rejection::QosOrAccountLimit
            } else if has("requested time limit is invalid") {
                Rejection::TimeLimit
            } else if has("invalid generic resource")
                || has("invalid feature specification")
                || has("invalid --time specification")
                || has("unrecognized option")
                || has("invalid option")
            {
                Rejection::InvalidRequest
            } else if has("job is no longer pending execution") {
                Rejection::JobNotPending
            } else if has("batch job submission failed") || has("slurm_update error") {
                Rejection::Other
            } else {
                return None;
            },
        )
    }
}

impl Rejection {
    /// True when, for a submission naming several partitions, the refusal
    /// may come from one of them alone (deleted, drained, closed to the
    /// account, a lower limit), so another may still take the job.
    pub fn may_concern_one_partition(self) -> bool {
        matches!(
            self,
            Rejection::InvalidPartition
                | Rejection::PartitionUnavailable
                | Rejection::NodeConfigUnavailable
                | Rejection::QosOrAccountLimit
                | Rejection::TimeLimit
                | Rejection::Other
        )
    }

    /// True when the refusal may lift by itself: a drained or inactive
    /// partition (maintenance), or a submit limit that frees up as other
    /// jobs end. A run then waits instead of failing.
    pub fn may_lift(self, message: &str) -> bool {
        match self {
            Rejection::PartitionUnavailable => true,
            Rejection::QosOrAccountLimit => message
                .to_ascii_lowercase()
                .contains("job violates accounting/qos policy"),
            _ => false,
        }
    }
}

/// True when Slurm's message says the controller could not be reached.
pub fn is_unreachable_message(stderr: &str) -> bool {
    const SIGNS: &[&str] = &[
        "unable to contact slurm controller",
        "socket timed out on send/recv",
        "slurm backup controller in standby mode",
        "connection refused",
        "connection timed out",
        "zero bytes were transmitted or received",
        "unable to establish controller machine",
        "slurmctld is busy",
        "communication connection failure",
        "munge",
        "protocol authentication error",
    ];
    let s = stderr.to_ascii_lowercase();
    SIGNS.iter().any(|sign| s.contains(sign))
}

/// True when Slurm's message says the job id is unknown to the controller.
pub fn is_unknown_job_message(stderr: &str) -> bool {
    stderr
        .to_ascii_lowercase()
        .contains("invalid job id specified")
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The Slurm command could not be started.
    #[error("cannot run `{program}`: {source} (is the Slurm client installed and on PATH?)")]
    NotFound {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// Slurm's configuration cannot be found (`SLURM_CONF` names a missing
    /// file); Slurm's commands would wait for their whole timeout.
    #[error("{message}")]
    Misconfigured { message: String },

    /// The command did not finish in time; its process group was killed.
    #[error("`{command}` did not answer within {:.0?}; Slurm may be overloaded or unreachable", .after)]
    TimedOut { command: String, after: Duration },

    /// Slurm could not reach its controller.
    #[error("Slurm controller unreachable (`{command}`): {message}")]
    Unreachable { command: String, message: String },

    /// Slurm answered that the job id does not exist (any more).
    #[error("Slurm does not know the job (`{command}`): {message}")]
    UnknownJob { command: String, message: String },

    /// Slurm refused the request.
    #[error("Slurm rejected `{command}` ({kind:?}): {message}")]
    Rejected {
        command: String,
        kind: Rejection,
        message: String,
    },

    /// Accounting is not available on this cluster (no slurmdbd and no jobcomp).
    #[error("job accounting is not available on this cluster: {message}")]
    AccountingUnavailable { message: String },

    /// The command failed in a way Slurm did not explain further.
    #[error("`{command}` failed ({status}): {message}")]
    Failed {
        command: String,
        status: String,
        message: String,
    },

    /// The command's output was not what Shepherd expects from this Slurm version.
    #[error("cannot understand the output of `{command}`: {detail}")]
    Parse { command: String, detail: String },
}

impl From<crate::proc::ProcError> for SlurmError {
    fn from(e: crate::proc::ProcError) -> Self {
        use crate::proc::ProcError;
        match e {
            ProcError::NotFound { program, source } => SlurmError::NotFound { program, source },
            ProcError::TimedOut { command, after } => SlurmError::TimedOut { command, after },
            ProcError::Wait { command, source } => SlurmError::Failed {
                command,
                status: "wait failed".to_string(),
                message: source.to_string(),
            },
        }
    }
}

impl SlurmError {
    /// True when the error says nothing about the jobs asked about: Slurm
    /// could not be asked. Callers must keep their last known state.
    pub fn is_observation_failure(&self) -> bool {
        matches!(
            self,
            SlurmError::NotFound { .. }
                | SlurmError::Misconfigured { .. }
                | SlurmError::TimedOut { .. }
                | SlurmError::Unreachable { .. }
                | SlurmError::Failed { .. }
                | SlurmError::Parse { .. }
                | SlurmError::AccountingUnavailable { .. }
        )
    }

    /// The classified rejection, if this is one.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            SlurmError::Rejected { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A short stable name for JSON output and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SlurmError::NotFound { .. } => "not_found",
            SlurmError::Misconfigured { .. } => "misconfigured",
            SlurmError::TimedOut { .. } => "timed_out",
            SlurmError::Unreachable { .. } => "unreachable",
            SlurmError::UnknownJob { .. } => "unknown_job",
            SlurmError::Rejected { .. } => "rejected",
            SlurmError::AccountingUnavailable { .. } => "accounting_unavailable",
            SlurmError::Failed { .. } => "failed",
            SlurmError::Parse { .. } => "parse",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sbatch_rejections_from_exact_texts() {
        let cases = [
            (
                "sbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed: Invalid partition name specified\n",
                Rejection::InvalidPartition,
            ),
            (
                "sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)\n",
                Rejection::PartitionUnavailable,
            ),
            (
                "sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
                Rejection::NodeConfigUnavailable,
            ),
            (
                "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed: Requested node configuration is not available\n",
                Rejection::NodeConfigUnavailable,
            ),
            (
                "sbatch: error: Batch job submission failed: Invalid node name specified\n",
                Rejection::InvalidNodeName,
            ),
            (
                "sbatch: error: QOSMaxGRESPerUser\nsbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n",
                Rejection::QosOrAccountLimit,
            ),
            (
                "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n",
                Rejection::QosOrAccountLimit,
            ),
            (
                "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification\n",
                Rejection::InvalidRequest,
            ),
            (
                "sbatch: error: Invalid --time specification\n",
                Rejection::InvalidRequest,
            ),
            (
                "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)\n",
                Rejection::TimeLimit,
            ),
            (
                "slurm_update error: Job is no longer pending execution\n",
                Rejection::JobNotPending,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Rejection::classify(text), Some(want), "{text}");
        }
    }

    #[test]
    fn controller_down_is_not_a_rejection() {
        let text = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n";
        assert!(is_unreachable_message(text));
        let squeue =
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n";
        assert!(is_unreachable_message(squeue));
        assert!(!is_unreachable_message(
            "sbatch: error: Batch job submission failed: Invalid node name specified"
        ));
    }

    #[test]
    fn unknown_job_message() {
        assert!(is_unknown_job_message(
            "slurm_load_jobs error: Invalid job id specified\n"
        ));
        assert!(!is_unknown_job_message(
            "Unable to contact slurm controller"
        ));
    }

    #[test]
    fn observation_failures_are_not_job_answers() {
        let t = SlurmError::TimedOut {
            command: "squeue".into(),
            after: Duration::from_secs(5),
        };
        assert!(t.is_observation_failure());
        let u = SlurmError::UnknownJob {
            command: "scontrol requeue 7".into(),
            message: "Invalid job id specified".into(),
        };
        assert!(!u.is_observation_failure());
        let r = SlurmError::Rejected {
            command: "sbatch".into(),
            kind: Rejection::InvalidPartition,
            message: String::new(),
        };
        assert!(!r.is_observation_failure());
        assert_eq!(r.rejection(), Some(Rejection::InvalidPartition));
    }
}
