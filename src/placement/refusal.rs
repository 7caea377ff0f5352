//! What to do when sbatch refused every partition a job was offered, as
//! data: use the node this run only meant to avoid, wait for a ban to end,
//! wait for Slurm, or take the refusal. The daemon (`daemon::placing`)
//! submits and asks; this decides.

use crate::slurm::Rejection;

/// The choice after sbatch's refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Only the node this run meant to avoid (not banned) is left: submit
    /// again without excluding it, rather than wait.
    UseAvoided(String),
    /// Our own exclude list leaves the job no node (every node it may use is
    /// banned or down): wait until that changes.
    Nowhere { message: String },
    /// A refusal that lifts by itself (a limit, a reservation): wait for
    /// Slurm to accept it.
    Defer { message: String },
    /// Slurm refused the request itself.
    Reject { kind: Rejection, message: String },
}

/// Decides after `refusals` (each partition's, or the one refusal of the
/// whole list; never empty). `excluded`: the job excluded nodes.
/// `refused_anyway`: whether Slurm refuses it with no node excluded (a
/// Slurm call, made only when the answer matters).
pub fn after_refusal(
    refusals: &[(Rejection, String)],
    excluded: bool,
    avoid: Option<&str>,
    refused_anyway: impl FnOnce() -> bool,
) -> AfterRefusal {
    let combined = refusals
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    // Asked without the list (`--test-only`, which creates no job), Slurm
    // tells whether the list is the cause.
    let banned_out = excluded
        && refusals
            .iter()
            .any(|(k, _)| *k == Rejection::NodeConfigUnavailable)
        && !refused_anyway();
    if banned_out {
        return match avoid {
            Some(node) => AfterRefusal::UseAvoided(node.to_string()),
            None => AfterRefusal::Nowhere { message: combined },
        };
    }
    if refusals.iter().any(|(k, m)| k.may_lift(m)) {
        return AfterRefusal::Defer {
            message: format!("{combined}; waiting for Slurm to accept it"),
        };
    }
    AfterRefusal::Reject {
        kind: refusals.last().map_or(Rejection::Other, |(k, _)| *k),
        message: combined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_config() -> (Rejection, String) {
        (
            Rejection::NodeConfigUnavailable,
            "Requested node configuration is not available".into(),
        )
    }

    #[test]
    fn banned_out_waits_or_uses_the_avoided_node() {
        let r = [node_config()];
        assert!(matches!(
            after_refusal(&r, true, None, || false),
            AfterRefusal::Nowhere { .. }
        ));
        assert_eq!(
            after_refusal(&r, true, Some("gpu-03"), || false),
            AfterRefusal::UseAvoided("gpu-03".into())
        );
    }

    #[test]
    fn an_impossible_request_is_refused_even_with_bans() {
        // Refused with nothing excluded too: the bans are not the cause.
        let r = [node_config()];
        assert!(matches!(
            after_refusal(&r, true, Some("gpu-03"), || true),
            AfterRefusal::Reject {
                kind: Rejection::NodeConfigUnavailable,
                ..
            }
        ));
        // Nothing excluded: Slurm is not asked again.
        let asked = std::cell::Cell::new(false);
        let got = after_refusal(&r, false, None, || {
            asked.set(true);
            false
        });
        assert!(!asked.get());
        assert!(matches!(got, AfterRefusal::Reject { .. }), "{got:?}");
    }

    #[test]
    fn every_partitions_refusal_is_told_and_the_last_kind_decides() {
        let r = [
            (
                Rejection::InvalidPartition,
                "a: invalid partition".to_string(),
            ),
            node_config(),
        ];
        match after_refusal(&r, false, None, || false) {
            AfterRefusal::Reject { kind, message } => {
                assert_eq!(kind, Rejection::NodeConfigUnavailable);
                assert!(
                    message.starts_with("a: invalid partition; Requested"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
