//! Restart in place (`--restart-in-place N`): after the workload failed on a
//! node that passes its probes again, run it again inside the same
//! allocation instead of giving the allocation back and queueing anew.
//!
//! Whether to restart is a pure function of what the run of the workload
//! left ([`Outcome`]), how many restarts this job made, and the run's
//! policy. Only a failure with positive evidence against the workload
//! qualifies; anything that may be the node's (a node signature, an
//! ambiguous one, the OOM killer's SIGKILL) or Slurm's (a SIGTERM, the
//! time-limit warning) ends the job as before, and the daemon decides.

use std::time::Duration;

use crate::model::Policy;
use crate::policy::classify::{EndEvidence, classify};
use crate::policy::signatures::{SignatureAction, SignatureSet};
use crate::policy::state::{Blame, FailureClass, Fingerprint, RunState};
use crate::policy::verdicts;
use crate::records::{Outcome, Verdict};
use crate::slurm::JobState;

/// SIGKILL: what the kernel's (or the cgroup's) out-of-memory killer sends.
const SIGKILL: i32 = 9;

/// What the wrapper does after a run of the workload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// End the job with this outcome; `why` says why it was not restarted
    /// in place, when restarting was enabled and the workload failed.
    Stop { why: Option<String> },
    /// Run the workload again here after `wait` (and the probes).
    Restart {
        wait: Duration,
        fingerprint: Option<Fingerprint>,
    },
}

/// How many restarts in place this job may make: `--restart-in-place`, and
/// no more than the retries the run has left (each restart is a failure
/// charged to `--max-retries`). Without the run's state (unreadable) none:
/// the daemon, which can read it, decides.
pub fn allowed(policy: &Policy, state: Option<&RunState>) -> u32 {
    match state {
        Some(st) => policy
            .restart_in_place
            .min(policy.max_retries.saturating_sub(st.workload_failures)),
        None => 0,
    }
}

/// The fingerprint of the run's last ended attempt, when it was a workload
/// failure: a job that fails the same way again is not restarted in place.
pub fn last_fingerprint(st: &RunState) -> Option<Fingerprint> {
    st.attempts
        .iter()
        .rev()
        .find_map(|a| a.end.as_ref())
        .and_then(|e| e.fingerprint.clone())
}

/// After the run `done` restarts into this job ended with `outcome`.
/// `previous` is the fingerprint of the run before it in this job, if it
/// failed too.
pub fn next(
    policy: &Policy,
    outcome: &Outcome,
    done: u32,
    allowed: u32,
    previous: Option<&Fingerprint>,
    signatures: &SignatureSet,
) -> Next {
    let stop = |why: &str| Next::Stop {
        why: Some(why.to_string()),
    };
    if policy.restart_in_place == 0 {
        return Next::Stop { why: None };
    }
    match outcome.verdict {
        Verdict::Exited { code } if code != 0 => {}
        Verdict::Signaled { signal } if signal != SIGKILL => {}
        Verdict::Signaled { .. } => {
            return stop(
                "it was killed by SIGKILL (the out-of-memory killer, or someone outside the job)",
            );
        }
        _ => return Next::Stop { why: None },
    }
    if outcome.terminated || outcome.warned {
        return stop("the job itself is being stopped (a signal from Slurm)");
    }
    // Judged as the daemon would judge the job had the wrapper exited now.
    let end = classify(&EndEvidence {
        state: Some(&JobState::Failed),
        exit: None,
        outcome: Some(outcome),
        cancel: None,
        signatures: Some(signatures),
    });
    if end.class != FailureClass::WorkloadFailure || end.blame != Blame::Workload {
        return stop(&format!(
            "the failure may be the node's ({}); node faults leave the node",
            end.detail
        ));
    }
    if let Some(sig) = end
        .signature
        .as_ref()
        .filter(|s| s.action == SignatureAction::CountAndRetryElsewhere)
    {
        return stop(&format!(
            "signature {} may be the node's; the next attempt runs elsewhere",
            sig.id
        ));
    }
    if done >= allowed {
        return stop(&if allowed < policy.restart_in_place {
            format!(
                "restarted in place {done} times: the run has no more retries (--max-retries {})",
                policy.max_retries
            )
        } else {
            format!(
                "restarted in place {done} times already (--restart-in-place {})",
                policy.restart_in_place
            )
        });
    }
    let fingerprint = verdicts::fingerprint(outcome);
    if previous.is_some() && fingerprint.as_ref() == previous {
        return stop(
            "the same failure as the run before it on this node; the next attempt runs elsewhere to tell node from code",
        );
    }
    // The first restart at once (the point is to lose nothing); repeated
    // ones back off like resubmissions (--backoff-base, doubling).
    let wait = match done {
        0 => Duration::ZERO,
        n => policy
            .backoff_base
            .saturating_mul(2u32.saturating_pow(n - 1))
            .min(policy.backoff_max),
    };
    Next::Restart { wait, fingerprint }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunId;
    use crate::slurm::JobId;
    use jiff::Timestamp;

    fn policy(n: u32) -> Policy {
        Policy {
            restart_in_place: n,
            ..Policy::default()
        }
    }

    fn outcome(verdict: Verdict, stderr: &str) -> Outcome {
        Outcome {
            version: 1,
            run_id: "r".parse::<RunId>().unwrap(),
            attempt: 1,
            job_id: JobId(7),
            restarts: 0,
            node: "a100-1".into(),
            started_at: Timestamp::UNIX_EPOCH,
            ended_at: Timestamp::UNIX_EPOCH,
            verdict,
            probes: vec![],
            terminated: false,
            warned: false,
            stderr_tail: stderr.into(),
            exit_code: 1,
            in_place: 0,
            restarted_in_place: false,
        }
    }

    fn decide(p: &Policy, o: &Outcome, done: u32, previous: Option<&Fingerprint>) -> Next {
        next(
            p,
            o,
            done,
            allowed(p, Some(&RunState::new(Timestamp::UNIX_EPOCH))),
            previous,
            &SignatureSet::builtin(),
        )
    }

    fn restarts(n: &Next) -> bool {
        matches!(n, Next::Restart { .. })
    }

    #[test]
    fn a_plain_crash_restarts_at_once_then_backs_off() {
        let p = policy(3);
        let crash = outcome(Verdict::Exited { code: 1 }, "Traceback\nValueError: boom");
        assert_eq!(
            decide(&p, &crash, 0, None),
            Next::Restart {
                wait: Duration::ZERO,
                fingerprint: verdicts::fingerprint(&crash)
            }
        );
        let other = verdicts::fingerprint(&outcome(Verdict::Exited { code: 2 }, "x")).unwrap();
        match decide(&p, &crash, 1, Some(&other)) {
            Next::Restart { wait, .. } => assert_eq!(wait, p.backoff_base),
            n => panic!("{n:?}"),
        }
        match decide(&p, &crash, 2, Some(&other)) {
            Next::Restart { wait, .. } => assert_eq!(wait, p.backoff_base * 2),
            n => panic!("{n:?}"),
        }
        assert!(restarts(&decide(
            &p,
            &outcome(Verdict::Signaled { signal: 11 }, "Segmentation fault"),
            0,
            None
        )));
    }

    #[test]
    fn off_success_and_what_is_not_the_workloads_never_restart() {
        let crash = outcome(Verdict::Exited { code: 1 }, "boom");
        assert_eq!(
            decide(&policy(0), &crash, 0, None),
            Next::Stop { why: None }
        );
        let p = policy(3);
        let ok = outcome(Verdict::Exited { code: 0 }, "");
        assert_eq!(decide(&p, &ok, 0, None), Next::Stop { why: None });
        let launch = outcome(
            Verdict::LaunchFailed {
                detail: "bad interpreter".into(),
            },
            "",
        );
        assert_eq!(decide(&p, &launch, 0, None), Next::Stop { why: None });
        let stopped = |mut o: Outcome, warned: bool| {
            o.terminated = !warned;
            o.warned = warned;
            o
        };
        for o in [
            outcome(Verdict::Signaled { signal: 9 }, ""),
            stopped(crash.clone(), false),
            stopped(crash.clone(), true),
            // A node signature (an Xid / uncorrectable ECC error line).
            outcome(
                Verdict::Exited { code: 1 },
                "RuntimeError: CUDA error: uncorrectable ECC error encountered",
            ),
        ] {
            let n = decide(&p, &o, 0, None);
            assert!(matches!(&n, Next::Stop { why: Some(_) }), "{o:?} -> {n:?}");
        }
    }

    #[test]
    fn the_same_failure_twice_in_one_job_leaves_the_node() {
        let p = policy(3);
        let crash = outcome(Verdict::Exited { code: 1 }, "KeyError: 'lr'");
        let fp = verdicts::fingerprint(&crash).unwrap();
        let n = decide(&p, &crash, 1, Some(&fp));
        assert!(
            matches!(&n, Next::Stop { why: Some(w) } if w.contains("same failure")),
            "{n:?}"
        );
    }

    #[test]
    fn restarts_are_bounded_by_the_option_and_the_retries_left() {
        let p = policy(2);
        let crash = |code| outcome(Verdict::Exited { code }, "");
        let fp = |code| verdicts::fingerprint(&crash(code)).unwrap();
        assert!(restarts(&decide(&p, &crash(1), 1, Some(&fp(2)))));
        let n = decide(&p, &crash(1), 2, Some(&fp(2)));
        assert!(
            matches!(&n, Next::Stop { why: Some(w) } if w.contains("--restart-in-place 2")),
            "{n:?}"
        );
        let mut st = RunState::new(Timestamp::UNIX_EPOCH);
        st.workload_failures = p.max_retries - 1;
        assert_eq!(allowed(&p, Some(&st)), 1);
        let n = next(&p, &crash(1), 1, 1, Some(&fp(2)), &SignatureSet::builtin());
        assert!(
            matches!(&n, Next::Stop { why: Some(w) } if w.contains("--max-retries")),
            "{n:?}"
        );
        assert_eq!(allowed(&p, None), 0, "without the run's state: none");
    }
}
