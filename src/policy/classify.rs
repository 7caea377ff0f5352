//! How an attempt ended, from all the evidence together: Slurm's final state and
//! exit status, the wrapper's outcome record, and whether Shepherd itself
//! cancelled the job.

use super::signatures::{Hit, SignatureAction, SignatureSet, scan, verdict};
use super::state::{AttemptEnd, Blame, CancelReason, FailureClass, SignatureNote};
use crate::slurm::{ExitStatus, JobState};
use crate::store::records::{Outcome, Verdict};
use crate::wrapper::EXIT_PROBE_CODES;

/// What is known about an ended job.
#[derive(Debug, Clone, Default)]
pub struct EndEvidence<'a> {
    /// Slurm's final state; `None` when Slurm kept no record.
    pub state: Option<&'a JobState>,
    pub exit: Option<ExitStatus>,
    pub outcome: Option<&'a Outcome>,
    pub cancel: Option<CancelReason>,
    /// Known fault signatures to look for in the wrapper's stderr tail.
    pub signatures: Option<&'a SignatureSet>,
}

/// The decisive fault signature in the outcome's stderr tail.
fn decisive_hit(ev: &EndEvidence<'_>) -> Option<Hit> {
    let text = &ev.outcome?.stderr_tail;
    let hits = scan(text, ev.signatures?);
    verdict(&hits).map(|(_, hit)| hit.clone())
}

pub fn classify(ev: &EndEvidence<'_>) -> AttemptEnd {
    let end = |class, blame, detail: String| AttemptEnd {
        class,
        blame,
        slurm_state: ev.state.map(ToString::to_string),
        exit: ev.exit,
        detail,
        signature: None,
        fingerprint: None,
    };
    // A probe failure is the node's fault whatever Slurm recorded after it.
    if let Some(Outcome {
        verdict: Verdict::ProbeFailed { probe, detail },
        node,
        ..
    }) = ev.outcome
    {
        return end(
            FailureClass::NodeFault,
            Blame::Node,
            format!("GPU probe {probe} failed on {node}: {detail}"),
        );
    }
    if let Some(Outcome {
        verdict: Verdict::SetupFailed { detail },
        node,
        ..
    }) = ev.outcome
    {
        // The run directory is on the shared filesystem: a node that cannot
        // read it is a broken node.
        return end(
            FailureClass::NodeFault,
            Blame::Node,
            format!("the wrapper could not start on {node}: {detail}"),
        );
    }
    if let Some(reason) = ev.cancel {
        let (class, blame, detail) = match reason {
            CancelReason::Stop => (
                FailureClass::CancelledByShepherd,
                Blame::None,
                "cancelled by Shepherd: stop requested",
            ),
            CancelReason::Restart => (
                FailureClass::CancelledByShepherd,
                Blame::None,
                "cancelled by Shepherd: restart requested",
            ),
            CancelReason::KeepAlive => (
                FailureClass::CancelledByShepherd,
                Blame::None,
                "cancelled by Shepherd: keep-alive elapsed",
            ),
            // The wrapper beats from its own thread whatever the workload
            // does: silence means the wrapper or its node is stuck.
            CancelReason::HeartbeatLost => (
                FailureClass::Hang,
                Blame::Node,
                "cancelled by Shepherd: no heartbeat (the job's node stopped responding)",
            ),
            CancelReason::ProgressStalled => (
                FailureClass::Hang,
                Blame::Workload,
                "cancelled by Shepherd: the workload stopped making progress",
            ),
        };
        return end(class, blame, detail.to_string());
    }
    let workload_exit = ev.outcome.and_then(|o| match o.verdict {
        Verdict::Exited { code } => Some(format!("the workload exited with code {code}")),
        Verdict::Signaled { signal } => Some(format!("the workload was killed by signal {signal}")),
        _ => None,
    });
    let Some(state) = ev.state else {
        return end(
            FailureClass::Unknown,
            Blame::None,
            "the job ended and Slurm kept no record of how".to_string(),
        );
    };
    match state {
        JobState::Completed => match ev.outcome.map(|o| &o.verdict) {
            Some(Verdict::Exited { code }) if *code != 0 => end(
                FailureClass::WorkloadFailure,
                Blame::Workload,
                format!("the workload exited with code {code}"),
            ),
            _ => end(
                FailureClass::Success,
                Blame::None,
                "the workload exited with code 0".to_string(),
            ),
        },
        JobState::NodeFail | JobState::BootFail => end(
            FailureClass::NodeFault,
            Blame::Node,
            format!("Slurm ended the job with {state}: its node failed"),
        ),
        JobState::Preempted => end(
            FailureClass::Preempted,
            Blame::None,
            "preempted by a higher-priority job".to_string(),
        ),
        JobState::Timeout | JobState::Deadline => end(
            FailureClass::TimeLimit,
            Blame::None,
            "the job reached its time limit".to_string(),
        ),
        JobState::OutOfMemory => end(
            FailureClass::OutOfMemory,
            Blame::Workload,
            "the workload ran out of memory".to_string(),
        ),
        JobState::Cancelled => end(
            FailureClass::CancelledExternally,
            Blame::None,
            "the job was cancelled outside Shepherd (scancel or an admin)".to_string(),
        ),
        JobState::Failed if workload_exit.is_some() && decisive_hit(ev).is_some() => {
            // The workload failed and its output names the cause.
            let hit = decisive_hit(ev).expect("checked");
            let (class, blame) = match hit.action {
                SignatureAction::BanNode | SignatureAction::RetryElsewhere => {
                    (FailureClass::NodeFault, Blame::Node)
                }
                SignatureAction::CountAgainstWorkload | SignatureAction::CountAndRetryElsewhere => {
                    (FailureClass::WorkloadFailure, Blame::Workload)
                }
            };
            let mut e = end(
                class,
                blame,
                format!(
                    "{}; {} (signature {}: {})",
                    workload_exit.unwrap_or_default(),
                    hit.meaning,
                    hit.id,
                    hit.line
                ),
            );
            e.signature = Some(SignatureNote {
                id: hit.id,
                action: hit.action,
                line: hit.line,
            });
            e
        }
        JobState::Failed => {
            if let Some(detail) = workload_exit {
                end(FailureClass::WorkloadFailure, Blame::Workload, detail)
            } else if ev.exit.is_some_and(|e| EXIT_PROBE_CODES.contains(&e.code)) {
                end(
                    FailureClass::NodeFault,
                    Blame::Node,
                    "a GPU probe failed (exit code of the wrapper)".to_string(),
                )
            } else {
                let exit = ev.exit.map_or("unknown".to_string(), |e| {
                    format!("{}:{}", e.code, e.signal)
                });
                end(
                    FailureClass::Unknown,
                    Blame::None,
                    format!("the job failed (exit {exit}) without a report from the wrapper"),
                )
            }
        }
        other => end(
            FailureClass::Unknown,
            Blame::None,
            format!("the job ended in state {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunId;
    use crate::slurm::JobId;
    use crate::wrapper::{EXIT_PROBE_FAILED, EXIT_PROBE_HEALTH};

    fn outcome(verdict: Verdict) -> Outcome {
        Outcome {
            version: 1,
            run_id: "r".parse::<RunId>().unwrap(),
            attempt: 1,
            job_id: JobId(1),
            restarts: 0,
            node: "a100-1".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            ended_at: jiff::Timestamp::UNIX_EPOCH,
            verdict,
            probes: vec![],
            terminated: false,
            warned: false,
            stderr_tail: String::new(),
            exit_code: 0,
        }
    }

    fn class(state: Option<JobState>, outcome: Option<&Outcome>) -> (FailureClass, Blame) {
        let end = classify(&EndEvidence {
            state: state.as_ref(),
            exit: None,
            outcome,
            cancel: None,
            signatures: None,
        });
        (end.class, end.blame)
    }

    #[test]
    fn every_slurm_end_has_a_class() {
        use FailureClass::*;
        let ok = outcome(Verdict::Exited { code: 0 });
        let bad = outcome(Verdict::Exited { code: 3 });
        assert_eq!(
            class(Some(JobState::Completed), Some(&ok)),
            (Success, Blame::None)
        );
        assert_eq!(
            class(Some(JobState::Completed), None),
            (Success, Blame::None)
        );
        assert_eq!(
            class(Some(JobState::Failed), Some(&bad)),
            (WorkloadFailure, Blame::Workload)
        );
        assert_eq!(
            class(Some(JobState::NodeFail), None),
            (NodeFault, Blame::Node)
        );
        assert_eq!(
            class(Some(JobState::Preempted), None),
            (Preempted, Blame::None)
        );
        assert_eq!(
            class(Some(JobState::Timeout), None),
            (TimeLimit, Blame::None)
        );
        assert_eq!(
            class(Some(JobState::OutOfMemory), None),
            (OutOfMemory, Blame::Workload)
        );
        assert_eq!(
            class(Some(JobState::Cancelled), None),
            (CancelledExternally, Blame::None)
        );
        assert_eq!(class(Some(JobState::Failed), None), (Unknown, Blame::None));
        assert_eq!(class(None, None), (Unknown, Blame::None));
    }

    #[test]
    fn probe_failure_blames_the_node_whatever_slurm_says() {
        let probe = outcome(Verdict::ProbeFailed {
            probe: "visibility".into(),
            detail: "3 of 4 GPUs visible".into(),
        });
        for state in [JobState::Failed, JobState::Completed, JobState::Cancelled] {
            assert_eq!(
                class(Some(state), Some(&probe)),
                (FailureClass::NodeFault, Blame::Node)
            );
        }
        let end = classify(&EndEvidence {
            state: Some(&JobState::Failed),
            exit: Some(ExitStatus {
                code: EXIT_PROBE_FAILED,
                signal: 0,
            }),
            outcome: None,
            cancel: None,
            signatures: None,
        });
        assert_eq!(end.class, FailureClass::NodeFault);
        let end = classify(&EndEvidence {
            state: Some(&JobState::Failed),
            exit: Some(ExitStatus {
                code: EXIT_PROBE_HEALTH,
                signal: 0,
            }),
            outcome: None,
            cancel: None,
            signatures: None,
        });
        assert_eq!(end.class, FailureClass::NodeFault, "every probe code");
    }

    #[test]
    fn shepherds_own_cancels_are_recognised() {
        for (reason, want) in [
            (CancelReason::Stop, FailureClass::CancelledByShepherd),
            (CancelReason::Restart, FailureClass::CancelledByShepherd),
            (CancelReason::KeepAlive, FailureClass::CancelledByShepherd),
            (CancelReason::HeartbeatLost, FailureClass::Hang),
            (CancelReason::ProgressStalled, FailureClass::Hang),
        ] {
            let end = classify(&EndEvidence {
                state: Some(&JobState::Cancelled),
                exit: None,
                outcome: None,
                cancel: Some(reason),
                signatures: None,
            });
            assert_eq!(end.class, want);
        }
    }
}
