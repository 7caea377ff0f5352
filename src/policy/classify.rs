//! How an attempt ended, from all the evidence together: Slurm's final state and
//! exit status, the wrapper's outcome record, and whether Shepherd itself
//! cancelled the job.

use super::signatures::{Hit, SignatureAction, SignatureSet, scan, verdict};
use super::state::{AttemptEnd, Blame, CancelReason, FailureClass, ProbeNote, SignatureNote};
use crate::records::{EXIT_LAUNCH_FAILED, EXIT_PROBE_CODES};
use crate::records::{Outcome, ProbeStatus, Verdict};
use crate::slurm::{ExitStatus, JobState};

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

/// How an attempt ended, from all its evidence.
///
/// Only positive evidence blames a node: a faulty GPU probe (the outcome's
/// `ProbeFailed`), Slurm's NODE_FAIL/BOOT_FAIL, a run directory the node
/// could not read, a lost heartbeat, a hardware signature. An inconclusive
/// probe never does: it is recorded in `probes` and named in the detail.
pub fn classify(ev: &EndEvidence<'_>) -> AttemptEnd {
    let mut end = classify_inner(ev);
    if let Some(o) = ev.outcome {
        end.probes = o
            .probes
            .iter()
            .map(|p| ProbeNote {
                name: p.name.clone(),
                status: p.status,
                detail: p.detail.clone(),
            })
            .collect();
        let unsure: Vec<String> = o
            .probes
            .iter()
            .filter(|p| p.status == ProbeStatus::Inconclusive)
            .map(|p| format!("{}: {}", p.name, p.detail))
            .collect();
        if !unsure.is_empty() {
            end.detail = format!(
                "{}; GPU probe(s) inconclusive, not held against the node: {}",
                end.detail,
                unsure.join("; ")
            );
        }
    }
    end
}

fn classify_inner(ev: &EndEvidence<'_>) -> AttemptEnd {
    let end = |class, blame, detail: String| AttemptEnd {
        class,
        blame,
        slurm_state: ev.state.map(ToString::to_string),
        exit: ev.exit,
        detail,
        signature: None,
        fingerprint: None,
        probes: Vec::new(),
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
        // The run directory is on the shared filesystem, and the login
        // node reads it every tick: a node that cannot read it is broken.
        return end(
            FailureClass::NodeFault,
            Blame::Node,
            format!("the wrapper could not start on {node}: {detail}"),
        );
    }
    if let Some(Outcome {
        verdict: Verdict::LaunchFailed { detail },
        node,
        ..
    }) = ev.outcome
    {
        // The kernel refused the script itself (its #! line, its
        // permissions): it would be refused on any node.
        return end(
            FailureClass::WorkloadFailure,
            Blame::Workload,
            format!("the workload could not be started on {node}: {detail}"),
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
            CancelReason::InPlaceRefused => (
                FailureClass::CancelledByShepherd,
                Blame::None,
                "cancelled by Shepherd: the workload was restarted in place after a failure that must leave the node",
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
            } else if ev.exit.is_some_and(|e| e.code == EXIT_LAUNCH_FAILED) {
                end(
                    FailureClass::WorkloadFailure,
                    Blame::Workload,
                    format!(
                        "the workload could not be started (exit code {EXIT_LAUNCH_FAILED} of the wrapper; its outcome record is missing)"
                    ),
                )
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
    use crate::records::ProbeResult;
    use crate::slurm::JobId;
    use crate::wrapper::{EXIT_PROBE_FAILED, EXIT_PROBE_HEALTH};
    use proptest::prelude::*;

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
            in_place: 0,
            restarted_in_place: false,
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
    fn a_launch_failure_is_the_workloads_with_or_without_an_outcome() {
        let launch = outcome(Verdict::LaunchFailed {
            detail: "cannot execute the workload: No such file or directory (os error 2)".into(),
        });
        let end = classify(&EndEvidence {
            state: Some(&JobState::Failed),
            exit: Some(ExitStatus {
                code: EXIT_LAUNCH_FAILED,
                signal: 0,
            }),
            outcome: Some(&launch),
            cancel: None,
            signatures: None,
        });
        assert_eq!(
            (end.class, end.blame),
            (FailureClass::WorkloadFailure, Blame::Workload)
        );
        assert!(
            end.detail.contains("could not be started on a100-1"),
            "{}",
            end.detail
        );
        assert!(end.detail.contains("os error 2"), "{}", end.detail);
        // The outcome record lost: the wrapper's exit code still tells.
        let end = classify(&EndEvidence {
            state: Some(&JobState::Failed),
            exit: Some(ExitStatus {
                code: EXIT_LAUNCH_FAILED,
                signal: 0,
            }),
            outcome: None,
            cancel: None,
            signatures: None,
        });
        assert_eq!(
            (end.class, end.blame),
            (FailureClass::WorkloadFailure, Blame::Workload)
        );
    }

    #[test]
    fn inconclusive_probes_are_recorded_and_named_but_blame_nobody() {
        let mut ok = outcome(Verdict::Exited { code: 0 });
        ok.probes = vec![
            ProbeResult::new("visibility", ProbeStatus::Healthy, "2 GPU(s)".into(), 3),
            ProbeResult::new(
                "health",
                ProbeStatus::Inconclusive,
                "nvidia-smi -q printed no GPU section".into(),
                5,
            ),
        ];
        let end = classify(&EndEvidence {
            state: Some(&JobState::Completed),
            exit: None,
            outcome: Some(&ok),
            cancel: None,
            signatures: None,
        });
        assert_eq!((end.class, end.blame), (FailureClass::Success, Blame::None));
        assert_eq!(end.probes.len(), 2);
        assert_eq!(end.probes[1].status, ProbeStatus::Inconclusive);
        assert_eq!(
            end.detail,
            "the workload exited with code 0; GPU probe(s) inconclusive, not held against the node: \
             health: nvidia-smi -q printed no GPU section"
        );
    }

    fn probe_status() -> impl Strategy<Value = ProbeStatus> {
        prop_oneof![
            Just(ProbeStatus::Healthy),
            Just(ProbeStatus::Faulty),
            Just(ProbeStatus::Inconclusive),
        ]
    }

    fn probes() -> impl Strategy<Value = Vec<ProbeResult>> {
        proptest::collection::vec((0usize..4, probe_status(), "[a-h ]{0,12}"), 0..5).prop_map(|v| {
            v.into_iter()
                .map(|(i, st, d)| ProbeResult::new(crate::wrapper::probe::ALL[i], st, d, 1))
                .collect()
        })
    }

    /// What the workload did when no probe stopped it.
    fn workload_verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            (-1i32..256).prop_map(|code| Verdict::Exited { code }),
            (1i32..32).prop_map(|signal| Verdict::Signaled { signal }),
            "[a-z ]{0,12}".prop_map(|detail| Verdict::LaunchFailed { detail }),
        ]
    }

    /// Slurm's ends that carry no evidence against the node by themselves
    /// (NODE_FAIL and BOOT_FAIL do, and are left out).
    fn slurm_state() -> impl Strategy<Value = Option<JobState>> {
        prop_oneof![
            Just(None),
            Just(Some(JobState::Completed)),
            Just(Some(JobState::Failed)),
            Just(Some(JobState::Cancelled)),
            Just(Some(JobState::Timeout)),
            Just(Some(JobState::OutOfMemory)),
            Just(Some(JobState::Preempted)),
        ]
    }

    fn cancel() -> impl Strategy<Value = Option<CancelReason>> {
        // HeartbeatLost is evidence of its own (the node stopped answering).
        prop_oneof![
            Just(None),
            Just(Some(CancelReason::Stop)),
            Just(Some(CancelReason::Restart)),
            Just(Some(CancelReason::KeepAlive)),
            Just(Some(CancelReason::ProgressStalled)),
        ]
    }

    proptest! {
        /// Through the wrapper's rule (only a faulty probe ends the attempt
        /// as `probe_failed`) and the classifier, the node is blamed only
        /// when a probe was faulty: never on inconclusive ones.
        #[test]
        fn node_blame_only_arises_from_faulty_probes(
            probes in probes(),
            workload in workload_verdict(),
            state in slurm_state(),
            code in 0i32..256,
            cancel in cancel(),
        ) {
            let verdict = match crate::wrapper::faulty_probe(&probes) {
                Some(p) => Verdict::ProbeFailed { probe: p.name.clone(), detail: p.detail.clone() },
                None => workload,
            };
            let mut o = outcome(verdict);
            o.probes = probes.clone();
            let set = SignatureSet::builtin();
            let end = classify(&EndEvidence {
                state: state.as_ref(),
                exit: Some(ExitStatus { code, signal: 0 }),
                outcome: Some(&o),
                cancel,
                signatures: Some(&set),
            });
            let any_faulty = probes.iter().any(|p| p.status == ProbeStatus::Faulty);
            prop_assert!(
                end.blame != Blame::Node || any_faulty,
                "blamed the node without a faulty probe: {end:?}"
            );
            prop_assert!(end.class != FailureClass::NodeFault || any_faulty, "{end:?}");
            prop_assert_eq!(end.probes.len(), probes.len());
            let inconclusive = probes.iter().any(|p| p.status == ProbeStatus::Inconclusive);
            prop_assert_eq!(end.detail.contains("inconclusive"), inconclusive);
        }
    }

    #[test]
    fn shepherds_own_cancels_are_recognised() {
        for (reason, want) in [
            (CancelReason::Stop, FailureClass::CancelledByShepherd),
            (CancelReason::Restart, FailureClass::CancelledByShepherd),
            (CancelReason::KeepAlive, FailureClass::CancelledByShepherd),
            (
                CancelReason::InPlaceRefused,
                FailureClass::CancelledByShepherd,
            ),
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
