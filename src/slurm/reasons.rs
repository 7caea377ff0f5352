//! What a pending job's reason says about its future.
//!
//! Most reasons (`Resources`, `Priority`, `BeginTime`) resolve by themselves.
//! Some never do without someone changing the cluster or the job: Slurm accepts
//! the job and lets it wait forever. Those are the ones the policy must act on.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingOutlook {
    /// Waits for resources, priority or time; will start eventually.
    Waiting,
    /// Waits for nodes that are down, drained or reserved: may resolve when an
    /// admin acts, but not on the timescale of a run.
    Blocked,
    /// The job can never start where it is (partition down, asks for more than
    /// the partition allows, account or QOS forbids it).
    Hopeless,
}

/// Classifies Slurm's pending reason (`squeue %r`, `scontrol` `Reason=`).
pub fn classify_pending(reason: &str) -> PendingOutlook {
    let r = reason.trim();
    // `Nodes required for job are DOWN, DRAINED or reserved for jobs in higher
    // priority partitions` is printed as a sentence, not a code.
    if r.starts_with("Nodes required for job are DOWN") {
        return PendingOutlook::Blocked;
    }
    // The reason code is the first word: `ReqNodeNotAvail, UnavailableNodes:a100-1`.
    let code = r
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap_or("");
    match code {
        "PartitionDown"
        | "PartitionInactive"
        | "PartitionNodeLimit"
        | "PartitionConfig"
        | "PartitionTimeLimit"
        | "InvalidAccount"
        | "InvalidQOS"
        | "BadConstraints"
        | "QOSJobLimit"
        | "AccountNotAllowed"
        | "QOSNotAllowed"
        | "PartitionAccess"
        | "DependencyNeverSatisfied"
        | "JobHeldAdmin" => PendingOutlook::Hopeless,
        "ReqNodeNotAvail" | "NodeDown" => PendingOutlook::Blocked,
        _ => PendingOutlook::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_never_resolve() {
        for r in [
            "PartitionDown",
            "PartitionNodeLimit",
            "PartitionConfig",
            "PartitionTimeLimit",
            "InvalidQOS",
        ] {
            assert_eq!(classify_pending(r), PendingOutlook::Hopeless, "{r}");
        }
        assert_eq!(
            classify_pending(
                "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
            ),
            PendingOutlook::Blocked
        );
        assert_eq!(
            classify_pending("ReqNodeNotAvail, UnavailableNodes:a100-1"),
            PendingOutlook::Blocked
        );
    }

    #[test]
    fn reasons_that_resolve() {
        for r in [
            "Resources",
            "Priority",
            "BeginTime",
            "None",
            "",
            "Dependency",
        ] {
            assert_eq!(classify_pending(r), PendingOutlook::Waiting, "{r}");
        }
    }
}
