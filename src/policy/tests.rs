//! The policy, driven tick by tick with plain data.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::decide::*;
use super::state::*;
use crate::model::{Mode, Policy, Resources, RunSpec};
use crate::records::{Heartbeat, Outcome, Phase, Verdict};
use crate::slurm::{AccountingSource, ExitStatus, JobId, JobInfo, JobRecord, JobState, Rejection};

fn spec(mode: Mode) -> RunSpec {
    RunSpec {
        run_id: "train".parse().unwrap(),
        script_path: "/home/u/train.sh".into(),
        workdir: "/home/u".into(),
        created_at: t(0),
        mode,
        resources: Resources::default(),
        policy: Policy {
            max_retries: 2,
            heartbeat_grace: Duration::from_secs(120),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            keep_alive: Some(Duration::from_secs(3600)),
            ..Policy::default()
        },
        sbatch_lines: vec![],
        user_output: false,
        user_error: false,
        setup: None,
        notify: None,
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
}

fn job(id: u64, state: JobState, restarts: u32) -> JobInfo {
    JobInfo {
        id: JobId(id),
        name: format!("shepherd.train.{id}"),
        state: state.clone(),
        reason: if state.is_pending() {
            "Resources".into()
        } else {
            String::new()
        },
        partition: "a100".into(),
        nodes: if state.is_pending() {
            vec![]
        } else {
            vec!["a100-1".into()]
        },
        restarts,
        exit: None,
        submit_time: None,
        start_time: None,
        end_time: None,
    }
}

fn ended(id: u64, state: JobState, code: i32) -> JobInfo {
    JobInfo {
        exit: Some(ExitStatus { code, signal: 0 }),
        ..job(id, state, 0)
    }
}

fn outcome(id: u64, restarts: u32, verdict: Verdict) -> Outcome {
    Outcome {
        version: 1,
        run_id: "train".parse().unwrap(),
        attempt: 1,
        job_id: JobId(id),
        restarts,
        node: "a100-1".into(),
        started_at: t(0),
        ended_at: t(0),
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

fn heartbeat(id: u64, restarts: u32, seq: u64) -> Heartbeat {
    Heartbeat {
        version: 1,
        run_id: "train".parse().unwrap(),
        attempt: 1,
        job_id: JobId(id),
        restarts,
        node: "a100-1".into(),
        pid: 1,
        phase: Phase::Running,
        started_at: t(0),
        time: t(0),
        seq,
        output_bytes: None,
        probes: Vec::new(),
        in_place: 0,
    }
}

fn seen(info: JobInfo) -> Observation {
    Observation {
        job: JobView::Seen(info),
        ..Observation::nothing()
    }
}

/// Drives a run: keeps the state, feeds observations, checks invariants.
struct Sim {
    spec: RunSpec,
    state: RunState,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl Sim {
    fn new(mode: Mode) -> Sim {
        Sim {
            spec: spec(mode),
            state: RunState::new(t(0)),
            actions: vec![],
            events: vec![],
        }
    }

    fn tick(&mut self, at: i64, obs: Observation) -> &mut Self {
        let s = step(&self.spec, &self.state, &obs, t(at));
        self.apply(s);
        self
    }

    fn submit_result(&mut self, at: i64, result: SubmitResult) -> &mut Self {
        let attempt = self.state.attempts.last().unwrap().attempt;
        let s = submitted(&self.spec, &self.state, attempt, &result, t(at));
        self.apply(s);
        self
    }

    fn apply(&mut self, s: Step) {
        let live = s.state.attempts.iter().filter(|a| a.is_live()).count();
        assert!(live <= 1, "two live attempts: {:?}", s.state.attempts);
        self.state = s.state;
        self.actions = s.actions;
        self.events.extend(s.events);
    }

    /// Runs attempt submission: expects a Submit action and accepts it as `id`.
    fn accept(&mut self, at: i64, id: u64) -> &mut Self {
        assert!(
            matches!(self.actions.as_slice(), [Action::Submit { .. }]),
            "expected a submit, got {:?} ({:?})",
            self.actions,
            self.state
        );
        self.submit_result(at, SubmitResult::Accepted(JobId(id)))
    }

    fn status(&self) -> RunStatus {
        self.state.status
    }
}

#[test]
fn success_first_time() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    assert_eq!(s.status(), RunStatus::Submitting);
    s.accept(0, 7);
    assert_eq!(s.status(), RunStatus::Pending);
    s.tick(10, seen(job(7, JobState::Pending, 0)));
    assert_eq!(s.status(), RunStatus::Pending);
    s.tick(20, seen(job(7, JobState::Running, 0)));
    assert_eq!(s.status(), RunStatus::Running);
    assert!(s.actions.is_empty());
    let mut obs = seen(ended(7, JobState::Completed, 0));
    obs.outcome = Some(outcome(7, 0, Verdict::Exited { code: 0 }));
    s.tick(30, obs);
    assert_eq!(s.status(), RunStatus::Completed);
    assert!(s.actions.is_empty());
    let a = &s.state.attempts[0];
    assert_eq!(a.end.as_ref().unwrap().class, FailureClass::Success);
    // Nothing more happens to a completed run.
    s.tick(40, Observation::nothing());
    assert!(s.actions.is_empty());
    assert_eq!(s.state.attempts.len(), 1);
}

#[test]
fn workload_failures_back_off_then_fail_for_good() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let failed = |id| {
        let mut o = seen(ended(id, JobState::Failed, 3));
        o.outcome = Some(outcome(id, 0, Verdict::Exited { code: 3 }));
        o
    };
    s.tick(10, failed(1));
    assert_eq!(s.status(), RunStatus::Queued);
    assert_eq!(s.state.workload_failures, 1);
    assert!(s.actions.is_empty(), "backoff: no submit yet");
    s.tick(15, Observation::nothing());
    assert!(s.actions.is_empty());
    s.tick(20, Observation::nothing()).accept(20, 2);
    s.tick(30, failed(2));
    // Second failure: backoff doubles to 20 s.
    s.tick(45, Observation::nothing());
    assert!(s.actions.is_empty());
    s.tick(50, Observation::nothing()).accept(50, 3);
    s.tick(60, failed(3));
    assert_eq!(s.status(), RunStatus::Failed);
    assert!(
        s.state.reason.contains("--max-retries 2"),
        "{}",
        s.state.reason
    );
    assert!(s.state.reason.contains("code 3"));
    assert_eq!(s.state.attempts.len(), 3);
}

#[test]
fn fails_twice_then_succeeds() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(1, seen(ended(1, JobState::Failed, 1)));
    s.tick(11, Observation::nothing()).accept(11, 2);
    s.tick(12, seen(ended(2, JobState::Failed, 1)));
    s.tick(32, Observation::nothing()).accept(32, 3);
    s.tick(33, seen(ended(3, JobState::Completed, 0)));
    assert_eq!(s.status(), RunStatus::Completed);
    assert_eq!(s.state.workload_failures, 2);
}

#[test]
fn node_faults_and_preemption_resubmit_at_once_without_charge() {
    for state in [JobState::NodeFail, JobState::Preempted] {
        let mut s = Sim::new(Mode::RunOnce);
        s.tick(0, Observation::nothing()).accept(0, 1);
        s.tick(5, seen(job(1, JobState::Running, 0)));
        s.tick(6, seen(ended(1, state.clone(), 0)));
        assert_eq!(s.state.workload_failures, 0);
        assert!(
            matches!(s.actions.as_slice(), [Action::Submit { attempt: 2 }]),
            "{state}: {:?}",
            s.actions
        );
    }
}

#[test]
fn probe_failure_is_a_node_fault() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let mut obs = seen(ended(1, JobState::Failed, 97));
    obs.outcome = Some(outcome(
        1,
        0,
        Verdict::ProbeFailed {
            probe: "visibility".into(),
            detail: "3 of 4 GPUs".into(),
        },
    ));
    s.tick(5, obs);
    let end = s.state.attempts[0].end.clone().unwrap();
    assert_eq!(
        (end.class, end.blame),
        (FailureClass::NodeFault, Blame::Node)
    );
    assert_eq!(s.state.workload_failures, 0);
    assert!(matches!(
        s.actions.as_slice(),
        [Action::Submit { attempt: 2 }]
    ));
}

#[test]
fn slurm_requeue_is_not_answered_with_a_duplicate() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(job(1, JobState::Running, 0)));
    s.tick(30, seen(job(1, JobState::Pending, 1)));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    assert_eq!(s.state.attempts.len(), 1);
    assert_eq!(s.state.attempts[0].restarts, 1);
    assert!(s.events.iter().any(|e| e.kind == "requeued_by_slurm"));
    s.tick(40, seen(job(1, JobState::Running, 1)));
    assert_eq!(s.status(), RunStatus::Running);
}

#[test]
fn a_requeued_job_held_for_cred_expire_is_asked_to_start_now_once() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(job(1, JobState::Running, 0)));
    // Slurm's requeue after a node failure or a preemption: BeginTime.
    let mut held = job(1, JobState::Pending, 1);
    held.reason = "BeginTime".into();
    s.tick(30, seen(held.clone()));
    assert_eq!(s.actions, [Action::StartNow { job: JobId(1) }]);
    assert_eq!(s.state.attempts.len(), 1, "the same job, no new submission");
    let said = s
        .events
        .iter()
        .find(|e| e.kind == "start_now_asked")
        .unwrap();
    assert!(said.message.contains("BeginTime"), "{}", said.message);
    // Asked once: the same requeue seen again asks nothing.
    s.tick(32, seen(held));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    // A second requeue is asked again.
    s.tick(40, seen(job(1, JobState::Running, 1)));
    let mut again = job(1, JobState::Pending, 2);
    again.reason = "BeginTime".into();
    s.tick(50, seen(again));
    assert_eq!(s.actions, [Action::StartNow { job: JobId(1) }]);

    // The reason may show a poll after the requeue: asked then.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(job(1, JobState::Running, 0)));
    let mut no_reason = job(1, JobState::Pending, 1);
    no_reason.reason = String::new();
    s.tick(30, seen(no_reason));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    let mut held = job(1, JobState::Pending, 1);
    held.reason = "BeginTime".into();
    s.tick(31, seen(held));
    assert_eq!(s.actions, [Action::StartNow { job: JobId(1) }]);
}

#[test]
fn a_requeue_held_for_another_reason_is_not_started_now() {
    // Held by a user or an admin (scontrol requeuehold), or waiting for
    // resources: not Slurm's credential wait.
    for reason in ["JobHeldUser", "JobHeldAdmin", "Resources", "Priority"] {
        let mut s = Sim::new(Mode::RunOnce);
        s.tick(0, Observation::nothing()).accept(0, 1);
        s.tick(5, seen(job(1, JobState::Running, 0)));
        let mut held = job(1, JobState::Pending, 1);
        held.reason = reason.into();
        s.tick(30, seen(held));
        assert!(
            !s.actions
                .iter()
                .any(|a| matches!(a, Action::StartNow { .. })),
            "{reason}: {:?}",
            s.actions
        );
    }
}

#[test]
fn stale_heartbeat_cancels_after_the_grace_period() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    // First seen running at 10; no heartbeat verdict before 10 + 120.
    s.tick(10, seen(job(1, JobState::Running, 0)));
    let mut beating = seen(job(1, JobState::Running, 0));
    beating.heartbeat = Some(heartbeat(1, 0, 1));
    s.tick(100, beating.clone());
    s.tick(200, beating.clone());
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    // seq stays 1 from t=100: stale after t=220.
    s.tick(221, beating);
    assert_eq!(s.actions, [Action::Cancel { job: JobId(1) }]);
    s.tick(230, seen(ended(1, JobState::Cancelled, 0)));
    let end = s.state.attempts[0].end.clone().unwrap();
    // The wrapper beats on its own: its silence is the node's fault.
    assert_eq!((end.class, end.blame), (FailureClass::Hang, Blame::Node));
    assert_eq!(s.state.workload_failures, 0);
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
}

#[test]
fn stalled_progress_is_the_workloads_hang() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.progress_stall = Some(Duration::from_secs(60));
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(10, seen(job(1, JobState::Running, 0)));
    let mut hb = heartbeat(1, 0, 1);
    hb.output_bytes = Some(100);
    for (i, at) in [20, 40, 60, 81].into_iter().enumerate() {
        // The wrapper beats, the output does not grow (since t=20, first seen).
        hb.seq = i as u64 + 1;
        let mut o = seen(job(1, JobState::Running, 0));
        o.heartbeat = Some(hb.clone());
        s.tick(at, o);
        if at < 81 {
            assert!(s.actions.is_empty(), "at {at}: {:?}", s.actions);
        }
    }
    assert_eq!(s.actions, [Action::Cancel { job: JobId(1) }]);
    s.tick(80, seen(ended(1, JobState::Cancelled, 0)));
    let end = s.state.attempts[0].end.clone().unwrap();
    assert_eq!(
        (end.class, end.blame),
        (FailureClass::Hang, Blame::Workload)
    );
    assert_eq!(s.state.workload_failures, 1);
    // Detecting it took the stall already: a first hang resubmits at once
    // (charged all the same).
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
}

#[test]
fn the_stall_does_not_count_while_the_wrapper_probes_or_waits_to_restart() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.progress_stall = Some(Duration::from_secs(60));
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(10, seen(job(1, JobState::Running, 0)));
    let mut hb = heartbeat(1, 0, 1);
    hb.output_bytes = Some(100);
    // Probing (or waiting before a restart in place) for 200 s, then running
    // with no progress: the stall counts from the last probing heartbeat.
    let mut seq = 0;
    for at in (20..=200).step_by(20).chain([230, 259, 262]) {
        seq += 1;
        hb.seq = seq;
        hb.phase = if at <= 200 {
            Phase::Probing
        } else {
            Phase::Running
        };
        let mut o = seen(job(1, JobState::Running, 0));
        o.heartbeat = Some(hb.clone());
        s.tick(at, o);
        if at < 262 {
            assert!(s.actions.is_empty(), "at {at}: {:?}", s.actions);
        }
    }
    assert_eq!(s.actions, [Action::Cancel { job: JobId(1) }]);
}

/// Drives attempt `id` from running to a workload hang (stall 60 s), the
/// next attempt accepted or not as the policy decides.
fn hang_of_the_workload(s: &mut Sim, id: u64, from: i64) {
    s.tick(from, seen(job(id, JobState::Running, 0)));
    let mut hb = heartbeat(id, 0, 1);
    hb.attempt = s.state.attempts.last().unwrap().attempt;
    hb.output_bytes = Some(100);
    for (i, at) in [from + 10, from + 71].into_iter().enumerate() {
        hb.seq = i as u64 + 1;
        let mut o = seen(job(id, JobState::Running, 0));
        o.heartbeat = Some(hb.clone());
        s.tick(at, o);
    }
    assert_eq!(s.actions, [Action::Cancel { job: JobId(id) }]);
    s.tick(from + 72, seen(ended(id, JobState::Cancelled, 0)));
    let end = s.state.attempts.iter().rev().find_map(|a| a.end.clone());
    let end = end.expect("the hung attempt ended");
    assert_eq!(
        (end.class, end.blame),
        (FailureClass::Hang, Blame::Workload)
    );
}

#[test]
fn hangs_in_a_row_or_after_a_crash_back_off() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 5;
    s.spec.policy.progress_stall = Some(Duration::from_secs(60));
    s.tick(0, Observation::nothing()).accept(0, 1);
    hang_of_the_workload(&mut s, 1, 10);
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }], "first: at once");
    s.accept(82, 2);
    hang_of_the_workload(&mut s, 2, 90);
    assert!(s.actions.is_empty(), "second in a row: backoff");
    assert!(
        s.state.reason.contains("retry 2 of 5 in 20s"),
        "{}",
        s.state.reason
    );

    // A crash, then a hang: the hang is a repeated failure too.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 5;
    s.spec.policy.progress_stall = Some(Duration::from_secs(60));
    s.tick(0, Observation::nothing()).accept(0, 1);
    let mut crashed = seen(ended(1, JobState::Failed, 3));
    crashed.outcome = Some(outcome(1, 0, Verdict::Exited { code: 3 }));
    s.tick(10, crashed);
    assert!(s.actions.is_empty(), "a crash backs off");
    s.tick(20, Observation::nothing()).accept(20, 2);
    hang_of_the_workload(&mut s, 2, 30);
    assert!(s.actions.is_empty(), "a hang after a crash: backoff");

    // A success in between ends the streak (indefinite run).
    let mut s = Sim::new(Mode::Indefinite);
    s.spec.policy.progress_stall = Some(Duration::from_secs(60));
    s.tick(0, Observation::nothing()).accept(0, 1);
    let mut done = seen(ended(1, JobState::Completed, 0));
    done.outcome = Some(outcome(1, 0, Verdict::Exited { code: 0 }));
    s.tick(10, done);
    s.accept(11, 2);
    hang_of_the_workload(&mut s, 2, 20);
    assert_eq!(s.actions, [Action::Submit { attempt: 3 }]);
}

#[test]
fn a_heartbeat_of_another_instance_does_not_count() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(10, seen(job(1, JobState::Running, 1)));
    for (i, at) in [50, 100, 131].into_iter().enumerate() {
        // The orphaned first instance (restarts 0) keeps beating.
        let mut o = seen(job(1, JobState::Running, 1));
        o.heartbeat = Some(heartbeat(1, 0, i as u64));
        s.tick(at, o);
    }
    assert_eq!(s.actions, [Action::Cancel { job: JobId(1) }]);
}

#[test]
fn unknown_observations_change_nothing() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(10, seen(job(1, JobState::Running, 0)));
    let before = s.state.clone();
    for at in [20, 500, 5000] {
        s.tick(at, Observation::nothing());
        assert!(s.actions.is_empty());
        assert_eq!(s.state, before, "an unreachable Slurm is not a failure");
        let gone_unknown = Observation {
            job: JobView::Gone(None),
            ..Observation::nothing()
        };
        s.tick(at, gone_unknown);
        assert!(s.actions.is_empty());
    }
}

#[test]
fn a_job_gone_from_the_queue_is_judged_by_accounting() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let record = |state| JobRecord {
        id: JobId(1),
        state,
        exit: Some(ExitStatus { code: 0, signal: 0 }),
        nodes: vec!["a100-1".into()],
        partition: "a100".into(),
        start_time: None,
        end_time: Some(t(5)),
        source: AccountingSource::JobComp,
    };
    let gone = Observation {
        job: JobView::Gone(Some(vec![
            record(JobState::Requeued),
            record(JobState::Completed),
        ])),
        ..Observation::nothing()
    };
    s.tick(400, gone);
    assert_eq!(s.status(), RunStatus::Completed);

    // Only a REQUEUED record: Slurm lost the job mid-requeue. Unknown end.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let gone = Observation {
        job: JobView::Gone(Some(vec![record(JobState::Requeued)])),
        ..Observation::nothing()
    };
    s.tick(400, gone);
    assert_eq!(
        s.state.attempts[0].end.as_ref().unwrap().class,
        FailureClass::Unknown
    );
    assert_eq!(s.status(), RunStatus::Queued);
}

#[test]
fn unconfirmed_submission_is_reconciled_by_name() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(
        0,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    assert_eq!(s.status(), RunStatus::Submitting);
    // The job turns up under the attempt's name: adopted, not resubmitted.
    let mut found = job(5, JobState::Pending, 0);
    found.name = "shepherd.train.1".into();
    let obs = Observation {
        found: Some(vec![found]),
        ..Observation::nothing()
    };
    s.tick(10, obs);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    assert_eq!(s.state.attempts[0].job_id, Some(JobId(5)));
}

#[test]
fn unconfirmed_submission_not_found_is_submitted_again_after_a_while() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(
        0,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    let nothing_found = || Observation {
        found: Some(vec![]),
        ..Observation::nothing()
    };
    s.tick(10, nothing_found());
    assert!(s.actions.is_empty(), "too early to conclude");
    s.tick(40, nothing_found());
    assert_eq!(
        s.actions,
        [Action::Submit { attempt: 1 }],
        "same attempt, same name"
    );
    // Slurm unreachable during reconciliation: wait.
    s.submit_result(
        40,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    s.tick(100, Observation::nothing());
    assert!(s.actions.is_empty());
}

#[test]
fn duplicates_found_by_name_are_cancelled() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(
        0,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    let mut a = job(5, JobState::Running, 0);
    a.name = "shepherd.train.1".into();
    let mut b = job(6, JobState::Pending, 0);
    b.name = "shepherd.train.1".into();
    s.tick(
        10,
        Observation {
            found: Some(vec![a, b]),
            ..Observation::nothing()
        },
    );
    assert_eq!(s.state.attempts[0].job_id, Some(JobId(5)));
    assert_eq!(s.actions, [Action::Cancel { job: JobId(6) }]);
}

#[test]
fn stop_pause_unpause_restart() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(job(1, JobState::Running, 0)));
    let mut o = seen(job(1, JobState::Running, 0));
    o.controls = vec![Control::Stop];
    s.tick(6, o);
    assert_eq!(s.actions, [Action::Cancel { job: JobId(1) }]);
    assert_eq!(s.status(), RunStatus::Stopping);
    s.tick(7, seen(job(1, JobState::Running, 0)));
    assert_eq!(
        s.actions,
        [Action::Cancel { job: JobId(1) }],
        "asks again until gone"
    );
    s.tick(8, seen(ended(1, JobState::Cancelled, 0)));
    assert_eq!(s.status(), RunStatus::Stopped);

    // Restart an ended run: a new attempt at once.
    s.tick(
        9,
        Observation {
            controls: vec![Control::Restart],
            ..Observation::nothing()
        },
    );
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
    s.accept(9, 2);
    // Pause: the job goes on, but the next attempt waits.
    s.tick(
        10,
        Observation {
            controls: vec![Control::Pause],
            ..seen(job(2, JobState::Running, 0))
        },
    );
    assert!(s.actions.is_empty());
    s.tick(11, seen(ended(2, JobState::NodeFail, 0)));
    assert_eq!(s.status(), RunStatus::Paused);
    assert!(s.actions.is_empty());
    s.tick(
        12,
        Observation {
            controls: vec![Control::Unpause],
            ..Observation::nothing()
        },
    );
    assert_eq!(s.actions, [Action::Submit { attempt: 3 }]);
    s.accept(12, 3);
    // Restart of a live run: cancel, then a new attempt.
    s.tick(
        13,
        Observation {
            controls: vec![Control::Restart],
            ..seen(job(3, JobState::Running, 0))
        },
    );
    assert_eq!(s.actions, [Action::Cancel { job: JobId(3) }]);
    s.tick(14, seen(ended(3, JobState::Cancelled, 0)));
    assert_eq!(s.actions, [Action::Submit { attempt: 4 }]);
}

#[test]
fn a_cancel_outside_shepherd_stops_the_run() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(ended(1, JobState::Cancelled, 0)));
    assert_eq!(s.status(), RunStatus::Stopped);
    assert!(s.state.reason.contains("outside Shepherd"));
}

#[test]
fn time_limit_continues_only_when_checkpointed_or_indefinite() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(ended(1, JobState::Timeout, 0)));
    assert_eq!(s.status(), RunStatus::Failed);

    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let mut o = seen(ended(1, JobState::Timeout, 0));
    let mut out = outcome(1, 0, Verdict::Signaled { signal: 15 });
    out.warned = true;
    o.outcome = Some(out);
    s.tick(5, o);
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);

    let mut s = Sim::new(Mode::Indefinite);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(ended(1, JobState::Timeout, 0)));
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
}

#[test]
fn indefinite_runs_expire_gracefully() {
    let mut s = Sim::new(Mode::Indefinite);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, seen(ended(1, JobState::Completed, 0)));
    assert_eq!(
        s.actions,
        [Action::Submit { attempt: 2 }],
        "success does not end it"
    );
    s.accept(5, 2);
    let mut beating = seen(job(2, JobState::Running, 0));
    beating.heartbeat = Some(heartbeat(2, 0, 1));
    s.tick(3599, beating.clone());
    assert!(s.actions.is_empty());
    beating.heartbeat = Some(heartbeat(2, 0, 2));
    s.tick(3600, beating);
    assert_eq!(s.actions, [Action::Cancel { job: JobId(2) }]);
    assert_eq!(s.status(), RunStatus::Expiring);
    s.tick(3610, seen(ended(2, JobState::Cancelled, 0)));
    assert_eq!(s.status(), RunStatus::Expired);
}

#[test]
fn rejected_submission_fails_the_run_with_slurms_words() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(
        0,
        SubmitResult::Rejected {
            kind: Rejection::InvalidPartition,
            message: "Invalid partition name specified".into(),
        },
    );
    assert_eq!(s.status(), RunStatus::Failed);
    assert!(
        s.state.reason.contains("Invalid partition name"),
        "{}",
        s.state.reason
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    let sp = spec(Mode::RunOnce);
    let secs: Vec<u64> = (1..=5).map(|f| backoff(&sp, f).as_secs()).collect();
    assert_eq!(secs, [10, 20, 40, 60, 60]);
}

fn failed_with_stderr(id: u64, node: &str, tail: &str) -> Observation {
    let mut info = ended(id, JobState::Failed, 1);
    info.nodes = vec![node.to_string()];
    let mut o = seen(info);
    let mut out = outcome(id, 0, Verdict::Exited { code: 1 });
    out.node = node.to_string();
    out.stderr_tail = tail.to_string();
    o.outcome = Some(out);
    o
}

#[test]
fn a_hardware_signature_in_stderr_blames_the_node() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(
        5,
        failed_with_stderr(
            1,
            "a100-1",
            "Traceback (most recent call last):\nRuntimeError: CUDA error: an illegal memory access was encountered\n\
             [ 1234.5] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.\n",
        ),
    );
    let end = s.state.attempts[0].end.clone().unwrap();
    assert_eq!(
        (end.class, end.blame),
        (FailureClass::NodeFault, Blame::Node)
    );
    assert_eq!(end.signature.as_ref().unwrap().id, "gpu-fallen-off-bus");
    assert_eq!(s.state.workload_failures, 0);
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
}

#[test]
fn an_ambiguous_failure_on_two_nodes_is_the_codes_fault() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    let crash = "RuntimeError: CUDA error: an illegal memory access was encountered\n";
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, failed_with_stderr(1, "a100-1", crash));
    assert_eq!(
        s.status(),
        RunStatus::Queued,
        "the benefit of the doubt: retry"
    );
    assert_eq!(s.state.workload_failures, 1);
    s.tick(20, Observation::nothing()).accept(20, 2);
    s.tick(25, failed_with_stderr(2, "a100-2", crash));
    assert_eq!(s.status(), RunStatus::Failed);
    assert!(
        s.state.reason.starts_with("workload fails on every node"),
        "{}",
        s.state.reason
    );
    assert!(s.state.reason.contains("a100-1") && s.state.reason.contains("a100-2"));
    assert!(s.events.iter().any(|e| e.kind == "code_fault"));

    // The same failure twice on the same node says nothing about the code.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(5, failed_with_stderr(1, "a100-1", crash));
    s.tick(20, Observation::nothing()).accept(20, 2);
    s.tick(25, failed_with_stderr(2, "a100-1", crash));
    assert_eq!(s.status(), RunStatus::Queued);
}

#[test]
fn long_or_hopeless_pending_asks_for_a_better_partition_at_most_once_a_minute() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.pending_timeout = Some(Duration::from_secs(300));
    s.tick(0, Observation::nothing()).accept(0, 1);
    s.tick(10, seen(job(1, JobState::Pending, 0)));
    assert!(s.actions.is_empty());
    s.tick(309, seen(job(1, JobState::Pending, 0)));
    assert!(s.actions.is_empty(), "not yet 300 s pending");
    s.tick(310, seen(job(1, JobState::Pending, 0)));
    assert_eq!(s.actions, [Action::Reconsider { job: JobId(1) }]);
    s.tick(330, seen(job(1, JobState::Pending, 0)));
    assert!(s.actions.is_empty(), "once a minute at most");
    s.tick(371, seen(job(1, JobState::Pending, 0)));
    assert_eq!(s.actions, [Action::Reconsider { job: JobId(1) }]);

    // A reason that never resolves: at once.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 1);
    let mut down = job(1, JobState::Pending, 0);
    down.reason = "PartitionDown".into();
    s.tick(5, seen(down));
    assert_eq!(s.actions, [Action::Reconsider { job: JobId(1) }]);
}

// Phantom records: a job that never reached a node is never charged.

/// Slurm's record of a refused submission: FAILED, BadConstraints, no node.
fn phantom(id: u64, attempt: u32) -> JobInfo {
    JobInfo {
        id: JobId(id),
        name: format!("shepherd.train.{attempt}"),
        state: JobState::Failed,
        reason: "BadConstraints".into(),
        partition: "a100".into(),
        nodes: vec![],
        restarts: 0,
        exit: Some(ExitStatus { code: 1, signal: 0 }),
        submit_time: Some(t(0)),
        // Slurm 22.05 sets StartTime to the submit time even so.
        start_time: Some(t(0)),
        end_time: Some(t(0)),
    }
}

fn nowhere(exclude: &[&str], until: Option<i64>) -> SubmitResult {
    SubmitResult::Nowhere {
        message: "nowhere to run: every node the job may use is excluded".into(),
        blockers: exclude.iter().map(|s| s.to_string()).collect(),
        until: until.map(t),
    }
}

fn excluding(exclude: &[&str]) -> Observation {
    Observation {
        found: Some(vec![]),
        blockers_now: Some(exclude.iter().map(|s| s.to_string()).collect()),
        ..Observation::nothing()
    }
}

#[test]
fn a_refused_submissions_record_found_by_name_is_not_adopted() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(
        0,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    let obs = || Observation {
        found: Some(vec![phantom(9, 1)]),
        ..Observation::nothing()
    };
    s.tick(10, obs());
    assert_eq!(s.state.attempts[0].job_id, None, "{:?}", s.state.attempts);
    assert!(!s.events.iter().any(|e| e.kind == "reconciled"));
    s.tick(40, obs());
    assert_eq!(s.actions, [Action::Submit { attempt: 1 }]);
    assert_eq!(s.state.workload_failures, 0);
}

#[test]
fn jobs_that_never_start_again_and_again_back_off() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.backoff_max = Duration::from_secs(600);
    let mut now = 0;
    let mut waits = Vec::new();
    for k in 0..6u32 {
        s.tick(now, Observation::nothing())
            .accept(now, 100 + u64::from(k));
        s.tick(now + 1, seen(phantom(100 + u64::from(k), k + 1)));
        let until = s.state.not_before.unwrap();
        waits.push(until.duration_since(t(now + 1)).as_secs());
        now = until.duration_since(t(0)).as_secs() + 1;
    }
    assert_eq!(
        waits,
        [30, 60, 120, 240, 480, 600],
        "doubling up to --backoff-max"
    );
    assert_eq!(s.state.workload_failures, 0);
}

#[test]
fn a_job_that_never_reached_a_node_is_not_charged() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 9);
    s.tick(5, seen(phantom(9, 1)));
    let end = s.state.attempts[0].end.clone().unwrap();
    assert_eq!(
        (end.class, end.blame),
        (FailureClass::NeverStarted, Blame::None)
    );
    assert!(end.detail.contains("BadConstraints"), "{}", end.detail);
    assert_eq!(s.state.workload_failures, 0);
    assert_eq!(s.status(), RunStatus::Queued);
    assert!(s.actions.is_empty(), "not in a tight loop");
    s.tick(40, Observation::nothing());
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);

    // The same record from accounting, after the queue forgot the job.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 9);
    let gone = Observation {
        job: JobView::Gone(Some(vec![JobRecord {
            id: JobId(9),
            state: JobState::Failed,
            exit: Some(ExitStatus { code: 1, signal: 0 }),
            nodes: vec![],
            partition: "a100".into(),
            start_time: Some(t(0)),
            end_time: Some(t(0)),
            source: AccountingSource::Slurmdbd,
        }])),
        ..Observation::nothing()
    };
    s.tick(400, gone);
    assert_eq!(
        s.state.attempts[0].end.as_ref().unwrap().class,
        FailureClass::NeverStarted
    );
    assert_eq!(s.state.workload_failures, 0);

    // A job that ran (a node in its record) and failed is charged as before.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing()).accept(0, 9);
    let mut ran = phantom(9, 1);
    ran.nodes = vec!["a100-1".into()];
    s.tick(5, seen(ran));
    assert_eq!(s.state.workload_failures, 1);
}

#[test]
fn nowhere_to_run_waits_until_the_bans_change() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(0, nowhere(&["a100-2", "a100-1"], Some(3600)));
    assert_eq!(s.status(), RunStatus::Queued);
    assert!(
        s.state.reason.contains("nowhere to run"),
        "{}",
        s.state.reason
    );
    let w = s.state.attempts[0].waiting.clone().unwrap();
    assert_eq!(w.blockers, ["a100-1", "a100-2"], "sorted");
    assert!(s.events.iter().any(|e| e.kind == "nowhere_to_run"));
    // The same bans, in any order: no submission, minute after minute.
    for at in (30..600).step_by(30) {
        s.tick(at, excluding(&["a100-1", "a100-2"]));
        assert!(s.actions.is_empty(), "at {at}: {:?}", s.actions);
    }
    // Refused again (a ban added meanwhile): one event for the incident.
    s.tick(630, excluding(&["a100-1", "a100-2", "a100-3"]));
    assert_eq!(s.actions, [Action::Submit { attempt: 1 }]);
    s.submit_result(630, nowhere(&["a100-1", "a100-2", "a100-3"], Some(3600)));
    assert_eq!(
        s.events
            .iter()
            .filter(|e| e.kind == "nowhere_to_run")
            .count(),
        1
    );
    // A ban lifted: try again at once; accepted, the wait is over.
    s.tick(700, excluding(&["a100-1", "a100-3"]));
    assert_eq!(s.actions, [Action::Submit { attempt: 1 }]);
    s.submit_result(700, SubmitResult::Accepted(JobId(4)));
    assert_eq!(s.state.attempts[0].waiting, None);
    assert_eq!(s.status(), RunStatus::Pending);
    assert_eq!(s.state.attempts.len(), 1);
    assert_eq!(s.state.workload_failures, 0);

    // An unclear answer to a retry: the job may exist, so it is looked for
    // by name again (the wait is over).
    let mut s2 = Sim::new(Mode::RunOnce);
    s2.tick(0, Observation::nothing());
    s2.submit_result(0, nowhere(&["a100-1"], None));
    s2.tick(10, excluding(&[]));
    s2.submit_result(
        10,
        SubmitResult::Unknown {
            message: "timed out".into(),
        },
    );
    assert_eq!(s2.state.attempts[0].waiting, None);
    let mut found = job(5, JobState::Pending, 0);
    found.name = "shepherd.train.1".into();
    s2.tick(
        20,
        Observation {
            found: Some(vec![found]),
            ..Observation::nothing()
        },
    );
    assert_eq!(s2.state.attempts[0].job_id, Some(JobId(5)));

    // Without word from the daemon, the first ban's expiry still wakes it.
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(0, nowhere(&["a100-1"], Some(300)));
    s.tick(299, Observation::nothing());
    assert!(s.actions.is_empty());
    s.tick(300, Observation::nothing());
    assert_eq!(s.actions, [Action::Submit { attempt: 1 }]);
}

#[test]
fn a_paused_run_waiting_for_somewhere_submits_nothing_until_unpaused() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(0, nowhere(&["a100-1"], None));
    let mut obs = excluding(&[]);
    obs.controls = vec![Control::Pause];
    s.tick(5, obs);
    assert!(s.actions.is_empty());
    s.tick(10, excluding(&[]));
    assert!(s.actions.is_empty());
    let mut obs = excluding(&[]);
    obs.controls = vec![Control::Unpause];
    s.tick(15, obs);
    assert_eq!(s.actions, [Action::Submit { attempt: 1 }]);
}

#[test]
fn a_stop_while_waiting_for_somewhere_ends_the_run_at_once() {
    let mut s = Sim::new(Mode::RunOnce);
    s.tick(0, Observation::nothing());
    s.submit_result(0, nowhere(&["a100-1"], None));
    let mut obs = excluding(&["a100-1"]);
    obs.controls = vec![Control::Stop];
    s.tick(5, obs);
    assert_eq!(s.status(), RunStatus::Stopped);
    assert!(s.actions.is_empty());
}

mod never_charged {
    use super::*;
    use proptest::prelude::*;

    /// What Slurm may say about a job that never reached a node, or about
    /// a submission that was refused.
    #[derive(Debug, Clone)]
    enum Seen {
        Refused,
        Nowhere(bool),
        Unclear,
        Pending,
        Phantom,
        PhantomGone,
        PhantomFound,
        NothingFound,
        Unreachable,
    }

    fn seen_any() -> impl Strategy<Value = Seen> {
        prop_oneof![
            Just(Seen::Refused),
            any::<bool>().prop_map(Seen::Nowhere),
            Just(Seen::Unclear),
            Just(Seen::Pending),
            Just(Seen::Phantom),
            Just(Seen::PhantomGone),
            Just(Seen::PhantomFound),
            Just(Seen::NothingFound),
            Just(Seen::Unreachable),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A refused or never-started job never changes `workload_failures`,
        /// whatever order Slurm's answers come in.
        #[test]
        fn refused_or_never_started_jobs_never_charge_the_workload(
            script in proptest::collection::vec((seen_any(), 1i64..400), 1..40),
            mode in prop_oneof![Just(Mode::RunOnce), Just(Mode::Indefinite)],
        ) {
            let mut s = Sim::new(mode);
            s.spec.policy.keep_alive = None;
            let mut at = 0;
            let mut next_id = 1;
            for (what, gap) in script {
                at += gap;
                let submit = s.actions.iter().any(|a| matches!(a, Action::Submit { .. }));
                let live = s.state.live_attempt().cloned();
                let attempt = live.as_ref().map_or(1, |a| a.attempt);
                match what {
                    Seen::Refused if submit => {
                        s.submit_result(at, SubmitResult::Deferred { message: "drained".into() });
                    }
                    Seen::Nowhere(expiry) if submit => {
                        s.submit_result(at, nowhere(&["a100-1"], expiry.then_some(at + 100)));
                    }
                    Seen::Unclear if submit => {
                        s.submit_result(at, SubmitResult::Unknown { message: "timed out".into() });
                    }
                    _ if submit => {
                        next_id += 1;
                        s.submit_result(at, SubmitResult::Accepted(JobId(next_id)));
                    }
                    Seen::Pending => {
                        if let Some(id) = live.and_then(|a| a.job_id) {
                            s.tick(at, seen(job(id.0, JobState::Pending, 0)));
                        } else {
                            s.tick(at, Observation::nothing());
                        }
                    }
                    Seen::Phantom | Seen::PhantomGone => {
                        let id = live.and_then(|a| a.job_id).map_or(next_id, |j| j.0);
                        let obs = if matches!(what, Seen::Phantom) {
                            seen(phantom(id, attempt))
                        } else {
                            Observation {
                                job: JobView::Gone(Some(vec![JobRecord {
                                    id: JobId(id),
                                    state: JobState::Failed,
                                    exit: Some(ExitStatus { code: 1, signal: 0 }),
                                    nodes: vec![],
                                    partition: "a100".into(),
                                    start_time: None,
                                    end_time: None,
                                    source: AccountingSource::JobComp,
                                }])),
                                ..Observation::nothing()
                            }
                        };
                        s.tick(at, obs);
                    }
                    Seen::PhantomFound => {
                        s.tick(at, Observation {
                            found: Some(vec![phantom(next_id + 100, attempt)]),
                            ..excluding(&["a100-1"])
                        });
                    }
                    Seen::NothingFound => {
                        s.tick(at, excluding(&[]));
                    }
                    _ => {
                        s.tick(at, Observation::nothing());
                    }
                }
                prop_assert_eq!(s.state.workload_failures, 0, "{:?}", s.state);
                prop_assert!(s.status() != RunStatus::Failed, "{:?}", s.state);
            }
        }
    }
}

// Deterministic failures: the same fingerprint on two nodes, three attempts.

fn poison(id: u64, node: &str, pid: u32, ran: i64) -> Observation {
    let tail = format!(
        "[{node}:{pid}] 2026-12-02 05:{:02}:11 loading /data/run-{id}/config.yaml\n\
         Traceback (most recent call last):\n  File \"/home/u/train.py\", line 12, in <module>\n\
         ValueError: bad config at 0x7f{pid:x}\n",
        id % 60
    );
    let mut o = failed_with_stderr(id, node, &tail);
    if let Some(out) = &mut o.outcome {
        out.started_at = t(0);
        out.ended_at = t(ran);
    }
    o
}

/// Drives one failed attempt: submit (at `at`, after any backoff), accept as
/// job `id`, fail with `obs`.
fn fail_attempt(s: &mut Sim, at: i64, id: u64, obs: Observation) {
    s.tick(at, Observation::nothing()).accept(at, id);
    s.tick(at + 2, obs);
}

#[test]
fn the_same_failure_on_two_nodes_in_three_attempts_ends_the_run() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    fail_attempt(&mut s, 0, 1, poison(1, "a100-1", 4242, 2));
    fail_attempt(&mut s, 100, 2, poison(2, "a100-1", 977, 3));
    assert_eq!(s.status(), RunStatus::Queued, "two attempts on one node");
    let fp1 = s.state.attempts[0]
        .end
        .as_ref()
        .unwrap()
        .fingerprint
        .clone();
    let fp2 = s.state.attempts[1]
        .end
        .as_ref()
        .unwrap()
        .fingerprint
        .clone();
    assert!(fp1.is_some());
    assert_eq!(fp1, fp2, "PIDs, times, paths and addresses normalised");
    assert_eq!(
        super::verdicts::avoid_node(&s.state, 3).as_deref(),
        Some("a100-1"),
        "the next attempt goes elsewhere to tell node from code"
    );
    fail_attempt(&mut s, 200, 3, poison(3, "a100-2", 31337, 1));
    assert_eq!(s.status(), RunStatus::Failed, "{}", s.state.reason);
    let reason = &s.state.reason;
    assert!(
        reason.starts_with("the workload fails the same way everywhere"),
        "{reason}"
    );
    for needle in [
        "exit 1",
        "1 on a100-1",
        "2 on a100-1",
        "3 on a100-2",
        "ValueError: bad config",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    assert!(s.events.iter().any(|e| e.kind == "code_fault"));
    assert_eq!(s.state.attempts.len(), 3);
}

#[test]
fn different_failures_or_one_node_or_the_limit_off_do_not_end_the_run() {
    // A different error each time: retried as before.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    for (i, node) in ["a100-1", "a100-2", "a100-1"].iter().enumerate() {
        let id = i as u64 + 1;
        let obs = failed_with_stderr(
            id,
            node,
            &format!("KeyError: 'field_{}'\n", ["a", "b", "c"][i]),
        );
        fail_attempt(&mut s, id as i64 * 100, id, obs);
    }
    assert_eq!(s.status(), RunStatus::Queued);

    // The same failure, always on one node: could be the node.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    for id in 1..=4 {
        fail_attempt(&mut s, id as i64 * 100, id, poison(id, "a100-1", 7, 2));
    }
    assert_eq!(s.status(), RunStatus::Queued);

    // Off: --same-failure-limit 0; --max-retries decides.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.same_failure_limit = 0;
    for (i, node) in ["a100-1", "a100-2", "a100-1"].iter().enumerate() {
        let id = i as u64 + 1;
        fail_attempt(&mut s, id as i64 * 100, id, poison(id, node, 7, 2));
    }
    assert!(
        s.state.reason.contains("--max-retries 2"),
        "{}",
        s.state.reason
    );

    // A crash at once and one after hours are not the same failure.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    fail_attempt(&mut s, 100, 1, poison(1, "a100-1", 7, 2));
    fail_attempt(&mut s, 200, 2, poison(2, "a100-2", 7, 5 * 3600));
    fail_attempt(&mut s, 300, 3, poison(3, "a100-1", 7, 2));
    assert_eq!(s.status(), RunStatus::Queued, "{}", s.state.reason);
}

#[test]
fn fails_the_same_way_twice_then_succeeds() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    fail_attempt(&mut s, 0, 1, poison(1, "a100-1", 7, 2));
    fail_attempt(&mut s, 100, 2, poison(2, "a100-2", 7, 2));
    s.tick(200, Observation::nothing()).accept(200, 3);
    let mut ok = seen(ended(3, JobState::Completed, 0));
    ok.outcome = Some(outcome(3, 0, Verdict::Exited { code: 0 }));
    s.tick(210, ok);
    assert_eq!(s.status(), RunStatus::Completed);
}

#[test]
fn a_success_in_between_restarts_the_evidence_of_an_indefinite_run() {
    let mut s = Sim::new(Mode::Indefinite);
    s.spec.policy.keep_alive = None;
    s.spec.policy.max_retries = 100;
    fail_attempt(&mut s, 0, 1, poison(1, "a100-1", 7, 2));
    fail_attempt(&mut s, 100, 2, poison(2, "a100-2", 7, 2));
    s.tick(200, Observation::nothing()).accept(200, 3);
    let mut ok = seen(ended(3, JobState::Completed, 0));
    ok.outcome = Some(outcome(3, 0, Verdict::Exited { code: 0 }));
    s.tick(210, ok);
    // The failure count is kept (the budget is the run's), the evidence is not.
    assert_eq!(s.state.workload_failures, 2);
    // The next attempt is submitted at once.
    s.accept(210, 4);
    s.tick(212, poison(4, "a100-1", 7, 2));
    fail_attempt(&mut s, 400, 5, poison(5, "a100-2", 7, 2));
    assert_eq!(s.status(), RunStatus::Queued, "{}", s.state.reason);
    fail_attempt(&mut s, 600, 6, poison(6, "a100-1", 7, 2));
    assert_eq!(s.status(), RunStatus::Failed, "{}", s.state.reason);
    assert!(s.state.reason.contains("4 on a100-1"), "{}", s.state.reason);
    assert!(
        !s.state.reason.contains("1 on a100-1"),
        "{}",
        s.state.reason
    );
}

#[test]
fn a_restart_is_a_fresh_start_for_the_verdicts() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.max_retries = 10;
    fail_attempt(&mut s, 0, 1, poison(1, "a100-1", 7, 2));
    fail_attempt(&mut s, 100, 2, poison(2, "a100-2", 7, 2));
    let restart = Observation {
        controls: vec![Control::Restart],
        ..Observation::nothing()
    };
    s.tick(150, restart).accept(150, 3);
    s.tick(152, poison(3, "a100-1", 7, 2));
    assert_eq!(s.status(), RunStatus::Queued, "{}", s.state.reason);
}

#[test]
fn files_written_before_the_verdicts_still_read() {
    // An attempt end, a run state and a policy as older versions wrote them.
    let end: AttemptEnd = serde_json::from_str(
        r#"{"class":"workload_failure","blame":"workload","slurm_state":"FAILED",
            "exit":{"code":1,"signal":0},"detail":"the workload exited with code 1"}"#,
    )
    .unwrap();
    assert_eq!(end.fingerprint, None);
    let mut state = serde_json::to_value(RunState::new(t(0))).unwrap();
    assert!(state.get("evidence_after").is_none(), "not written when 0");
    state.as_object_mut().unwrap().remove("evidence_after");
    let state: RunState = serde_json::from_value(state).unwrap();
    assert_eq!(state.evidence_after, 0);
    let mut policy = serde_json::to_value(Policy::default()).unwrap();
    policy.as_object_mut().unwrap().remove("same_failure_limit");
    let policy: Policy = serde_json::from_value(policy).unwrap();
    assert_eq!(policy.same_failure_limit, 3);
    let a = serde_json::to_value(Attempt::new(1, t(0))).unwrap();
    assert!(a.get("waiting").is_none());
}

/// A run-once run with `--restart-in-place n`, its job 7 seen running.
fn running_with_restart_in_place(n: u32) -> Sim {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.restart_in_place = n;
    s.tick(0, Observation::nothing()).accept(0, 7);
    s.tick(10, seen(job(7, JobState::Running, 0)));
    s
}

/// A run of the workload the wrapper restarted in place after.
fn restarted(id: u64, k: u32, code: i32, stderr: &str) -> Outcome {
    Outcome {
        in_place: k,
        restarted_in_place: true,
        stderr_tail: stderr.into(),
        ..outcome(id, 0, Verdict::Exited { code })
    }
}

#[test]
fn restarts_in_place_are_attempts_of_the_same_job_and_nothing_is_resubmitted() {
    let mut s = running_with_restart_in_place(2);
    // Two crashes restarted in place between two ticks.
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![
        restarted(7, 0, 1, "ValueError: a"),
        restarted(7, 1, 2, "KeyError: b"),
    ];
    obs.heartbeat = Some(Heartbeat {
        in_place: 2,
        ..heartbeat(7, 0, 5)
    });
    s.tick(20, obs.clone());
    assert!(
        s.actions.is_empty(),
        "nothing submitted or cancelled: {:?}",
        s.actions
    );
    assert_eq!(s.status(), RunStatus::Running);
    assert!(
        s.state.reason.contains("restarted in place"),
        "{}",
        s.state.reason
    );
    let a = &s.state.attempts;
    assert_eq!(a.len(), 3);
    for (i, x) in a.iter().enumerate() {
        assert_eq!(x.attempt, i as u32 + 1);
        assert_eq!(x.job_id, Some(JobId(7)), "one job throughout");
        assert_eq!(x.dir_attempt(), 1, "files in the job's attempt directory");
        assert_eq!(x.in_place, i as u32);
    }
    assert_eq!(
        a[0].end.as_ref().unwrap().class,
        FailureClass::WorkloadFailure
    );
    assert!(a[0].end.as_ref().unwrap().fingerprint.is_some());
    assert_eq!(
        a[1].end.as_ref().unwrap().class,
        FailureClass::WorkloadFailure
    );
    assert!(a[2].is_live() && a[2].phase == AttemptPhase::Running);
    assert_eq!(s.state.workload_failures, 2, "each restart is charged");
    assert_eq!(
        s.events
            .iter()
            .filter(|e| e.kind == "restarted_in_place")
            .count(),
        2
    );
    // The same observation again (the tick read the chain before the
    // state was saved) changes nothing.
    let before = s.state.clone();
    s.tick(22, obs);
    assert_eq!(s.state.attempts, before.attempts);
    assert_eq!(s.state.workload_failures, 2);

    // The third run completes: the job's end is the last attempt's.
    let mut obs = seen(ended(7, JobState::Completed, 0));
    obs.outcome = Some(Outcome {
        in_place: 2,
        ..outcome(7, 0, Verdict::Exited { code: 0 })
    });
    s.tick(30, obs);
    assert_eq!(s.status(), RunStatus::Completed);
    assert_eq!(s.state.attempts.len(), 3);
    assert!(s.actions.is_empty());
}

#[test]
fn an_outcome_of_another_run_of_the_job_is_not_the_attempts() {
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.restart_in_place = 1;
    s.tick(0, Observation::nothing()).accept(0, 7);
    s.tick(10, seen(job(7, JobState::Running, 0)));
    // Out of order (run 1 before run 0 was seen) or another instance:
    // ignored.
    for stray in [
        restarted(7, 1, 1, ""),
        restarted(8, 0, 1, ""),
        Outcome {
            restarts: 1,
            ..restarted(7, 0, 1, "")
        },
    ] {
        let mut obs = seen(job(7, JobState::Running, 0));
        obs.in_place = vec![stray.clone()];
        s.tick(20, obs);
        assert_eq!(s.state.attempts.len(), 1, "{stray:?}");
    }
    // The job ends; its final outcome names run 1, which this attempt
    // (run 0) never was: it does not decide.
    let mut obs = seen(ended(7, JobState::Failed, 1));
    obs.outcome = Some(Outcome {
        in_place: 1,
        ..outcome(7, 0, Verdict::Exited { code: 0 })
    });
    s.tick(30, obs);
    let end = s.state.attempts[0].end.as_ref().unwrap();
    assert_ne!(end.class, FailureClass::Success, "{end:?}");
}

#[test]
fn a_requeue_after_restarts_in_place_counts_runs_from_zero_again() {
    let mut s = running_with_restart_in_place(2);
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![restarted(7, 0, 1, "")];
    s.tick(20, obs);
    assert_eq!(s.state.attempts.last().unwrap().in_place, 1);
    // Slurm requeues the job (its node failed): restart 1 starts at run 0.
    s.tick(30, seen(job(7, JobState::Pending, 1)));
    let a = s.state.attempts.last().unwrap();
    assert_eq!((a.restarts, a.in_place, a.dir_attempt()), (1, 0, 1));
    s.tick(40, seen(job(7, JobState::Running, 1)));
    let mut obs = seen(JobInfo {
        restarts: 1,
        ..ended(7, JobState::Completed, 0)
    });
    obs.outcome = Some(outcome(7, 1, Verdict::Exited { code: 0 }));
    s.tick(50, obs);
    assert_eq!(s.status(), RunStatus::Completed);
}

#[test]
fn a_restart_in_place_the_users_signatures_blame_on_the_node_is_cancelled() {
    use crate::policy::signatures::{SignatureBlame, SignatureSet, UserSignature};
    let mut s = running_with_restart_in_place(2);
    // The wrapper (built-in signatures) restarted; the user's set calls
    // this line a fault of the node.
    let users = SignatureSet::new(&[UserSignature {
        id: "fabric-down".into(),
        pattern: "fabric manager not running".into(),
        blame: SignatureBlame::Node,
        action: None,
        meaning: None,
    }])
    .unwrap();
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![restarted(7, 0, 1, "error: fabric manager not running")];
    obs.signatures = Some(std::sync::Arc::new(users));
    s.tick(20, obs.clone());
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }]);
    assert_eq!(s.state.attempts.len(), 1, "the restarted run is no attempt");
    assert!(
        s.events
            .iter()
            .any(|e| e.kind == "restart_in_place_refused" && e.message.contains("node's")),
        "{:?}",
        s.events
    );
    // Until Slurm ends the job: asked again, nothing else.
    s.tick(22, obs.clone());
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }]);
    assert_eq!(s.state.attempts.len(), 1);
    // The job ends cancelled: the crash before the restart decides, a node
    // fault, not charged; the next attempt is submitted at once.
    let mut end = obs;
    end.job = seen(ended(7, JobState::Cancelled, 0)).job;
    end.outcome = Some(Outcome {
        in_place: 1,
        terminated: true,
        ..outcome(7, 0, Verdict::Signaled { signal: 15 })
    });
    s.tick(30, end);
    let e = s.state.attempts[0].end.as_ref().unwrap();
    assert_eq!((e.class, e.blame), (FailureClass::NodeFault, Blame::Node));
    assert_eq!(s.state.workload_failures, 0);
    assert_eq!(s.actions, [Action::Submit { attempt: 2 }]);
}

#[test]
fn a_restart_in_place_past_the_retries_or_after_the_same_failure_elsewhere_ends_the_run() {
    // No retries left (the wrapper read the state before the last charge).
    let mut s = refused_for_no_retries();
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![restarted(7, 0, 1, "ValueError: x")];
    s.tick(20, obs.clone());
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }]);
    assert!(
        s.events
            .iter()
            .any(|e| e.message.contains("no retries left"))
    );
    obs.job = seen(ended(7, JobState::Cancelled, 0)).job;
    s.tick(30, obs);
    assert_eq!(s.status(), RunStatus::Failed);
    assert!(
        s.state.reason.contains("--max-retries 1"),
        "{}",
        s.state.reason
    );
    assert!(s.actions.is_empty());

    // The same failure as on two other nodes before: a code fault.
    let mut s = Sim::new(Mode::RunOnce);
    s.spec.policy.restart_in_place = 2;
    s.spec.policy.max_retries = 9;
    s.spec.policy.same_failure_limit = 2;
    s.tick(0, Observation::nothing()).accept(0, 7);
    let mut crashed = seen(JobInfo {
        nodes: vec!["a100-2".into()],
        ..ended(7, JobState::Failed, 1)
    });
    crashed.outcome = Some(Outcome {
        node: "a100-2".into(),
        stderr_tail: "KeyError: 'lr'".into(),
        ..outcome(7, 0, Verdict::Exited { code: 1 })
    });
    s.tick(10, crashed);
    s.tick(100, Observation::nothing()).accept(100, 8);
    s.tick(110, seen(job(8, JobState::Running, 0)));
    let mut obs = seen(job(8, JobState::Running, 0));
    obs.in_place = vec![restarted(8, 0, 1, "KeyError: 'lr'")];
    s.tick(120, obs.clone());
    assert_eq!(s.actions, [Action::Cancel { job: JobId(8) }]);
    assert!(
        s.events.iter().any(|e| e.message.contains("same failure")),
        "{:?}",
        s.events
    );
    obs.job = seen(ended(8, JobState::Cancelled, 0)).job;
    s.tick(130, obs);
    assert_eq!(s.status(), RunStatus::Failed, "{}", s.state.reason);
    assert!(s.events.iter().any(|e| e.kind == "code_fault"));
}

#[test]
fn runs_restarted_in_place_just_before_a_requeue_are_still_charged() {
    let mut s = running_with_restart_in_place(2);
    // Between two ticks: a crash restarted in place, then Slurm requeued
    // the job (its node failed). The tick reads the old instance's runs
    // first.
    let mut obs = seen(job(7, JobState::Pending, 1));
    obs.in_place = vec![restarted(7, 0, 1, "ValueError: x")];
    s.tick(20, obs);
    let a = &s.state.attempts;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        a[0].end.as_ref().unwrap().class,
        FailureClass::WorkloadFailure
    );
    // The restarted run is the attempt Slurm requeued: its next instance
    // counts runs from 0 again, files in the job's attempt directory.
    assert_eq!(
        (a[1].in_place, a[1].restarts, a[1].dir_attempt()),
        (0, 1, 1)
    );
    assert_eq!(s.state.workload_failures, 1);
}

/// A run restarted in place with no retries left: the daemon refuses it.
fn refused_for_no_retries() -> Sim {
    let mut s = running_with_restart_in_place(2);
    s.spec.policy.max_retries = 1;
    s.state.workload_failures = 1;
    s
}

#[test]
fn a_refused_restart_in_place_decides_after_a_requeue_too() {
    let mut s = refused_for_no_retries();
    // The refusal and Slurm's requeue in one tick: the new instance's files
    // no longer hold the refused run, its verdict is kept on the attempt.
    let mut obs = seen(job(7, JobState::Pending, 1));
    obs.in_place = vec![restarted(7, 0, 1, "ValueError: x")];
    s.tick(20, obs);
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }]);
    s.tick(30, seen(job(7, JobState::Pending, 1)));
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }], "asked again");
    s.tick(
        40,
        seen(JobInfo {
            restarts: 1,
            ..ended(7, JobState::Cancelled, 0)
        }),
    );
    assert_eq!(s.status(), RunStatus::Failed, "{}", s.state.reason);
    assert_eq!(s.state.workload_failures, 2);
    assert!(s.actions.is_empty());
}

#[test]
fn a_refused_restart_in_place_that_completes_anyway_is_a_success() {
    let mut s = refused_for_no_retries();
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![restarted(7, 0, 1, "ValueError: x")];
    s.tick(20, obs.clone());
    assert_eq!(s.actions, [Action::Cancel { job: JobId(7) }]);
    // The restarted run finished before the cancel landed.
    obs.job = seen(ended(7, JobState::Completed, 0)).job;
    obs.outcome = Some(Outcome {
        in_place: 1,
        ..outcome(7, 0, Verdict::Exited { code: 0 })
    });
    s.tick(30, obs);
    assert_eq!(s.status(), RunStatus::Completed, "{}", s.state.reason);
    let a = &s.state.attempts;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        a[0].end.as_ref().unwrap().class,
        FailureClass::WorkloadFailure
    );
    assert_eq!(a[1].end.as_ref().unwrap().class, FailureClass::Success);
    assert_eq!(a[1].in_place, 1);
}

#[test]
fn a_restart_in_place_does_not_override_the_users_stop() {
    let mut s = refused_for_no_retries();
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.controls = vec![Control::Stop];
    s.tick(15, obs);
    let mut obs = seen(job(7, JobState::Running, 0));
    obs.in_place = vec![restarted(7, 0, 1, "ValueError: x")];
    s.tick(20, obs);
    assert!(
        !s.events
            .iter()
            .any(|e| e.kind == "restart_in_place_refused"),
        "{:?}",
        s.events
    );
    let live = s.state.live_attempt().unwrap();
    assert_eq!(live.cancel, Some(CancelReason::Stop));
    s.tick(30, seen(ended(7, JobState::Cancelled, 0)));
    assert_eq!(s.status(), RunStatus::Stopped);
}
