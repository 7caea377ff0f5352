//! The policy: one pure function from (spec, state, observation, now) to the
//! next state, the actions to carry out and the events to journal.
//!
//! The daemon calls [`step`] once per run per tick. It holds no clock, reads no
//! file and runs no command; everything it knows comes in [`Observation`].

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::classify::{EndEvidence, classify};
use super::signatures::SignatureSet;
use super::state::{
    Attempt, AttemptEnd, AttemptPhase, Blame, CancelReason, FailureClass, RunState, RunStatus,
    Waiting,
};
use super::verdicts;
use crate::model::{Mode, RunSpec};
use crate::records::{Heartbeat, Outcome, Progress};
use crate::slurm::{JobId, JobInfo, JobRecord, JobState, Rejection};

/// How long after an unconfirmed submission the daemon trusts that a job it
/// cannot find by name was never created, and submits the attempt again.
pub const RECONCILE_AFTER: Duration = Duration::from_secs(30);

/// An attempt waiting for somewhere to run is tried again at least this
/// often even when nothing it knows of changed (a node added to the
/// partition, an admin's change Shepherd cannot see).
pub const WAITING_RECHECK: Duration = Duration::from_secs(15 * 60);

/// What Slurm said about the live attempt's job this tick.
#[derive(Debug, Clone)]
pub enum JobView {
    /// Slurm could not be asked. Nothing may be concluded.
    Unknown,
    /// The controller holds the job.
    Seen(JobInfo),
    /// The controller no longer holds the job; these are accounting's records
    /// of it (`None` when accounting could not be asked).
    Gone(Option<Vec<JobRecord>>),
}

/// A request from the user, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Stop,
    Pause,
    Unpause,
    Restart,
}

/// Everything observed about one run this tick.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The live attempt's job, when it has a job id.
    pub job: JobView,
    /// For an attempt whose submission is unconfirmed: Slurm's jobs carrying
    /// the attempt's job name (`None` when not asked or Slurm was unreachable).
    pub found: Option<Vec<JobInfo>>,
    pub heartbeat: Option<Heartbeat>,
    pub progress: Option<Progress>,
    pub outcome: Option<Outcome>,
    /// The outcomes of the runs of the workload the wrapper restarted in
    /// place after (`--restart-in-place`), from the live attempt's own run
    /// on, in order; `outcome` is then the run after the last of them.
    pub in_place: Vec<Outcome>,
    pub controls: Vec<Control>,
    /// The fault signatures to judge an ended attempt's output by (the
    /// built-in set when `None`).
    pub signatures: Option<std::sync::Arc<SignatureSet>>,
    /// For an attempt waiting for somewhere to run: what keeps it from every
    /// node now ([`Waiting::blockers`]; `None` when the daemon cannot tell).
    pub blockers_now: Option<Vec<String>>,
}

impl Observation {
    pub fn nothing() -> Observation {
        Observation {
            job: JobView::Unknown,
            found: None,
            heartbeat: None,
            progress: None,
            outcome: None,
            in_place: Vec::new(),
            controls: Vec::new(),
            signatures: None,
            blockers_now: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Submit the run's attempt `attempt` (already recorded as intent).
    Submit {
        attempt: u32,
    },
    Cancel {
        job: JobId,
    },
    /// The pending job waited too long (or can never start where it is):
    /// look for partitions that can start it now and move it there in place.
    Reconsider {
        job: JobId,
    },
    /// Slurm requeued the job (a node failure, a preemption) and holds it
    /// until `cred_expire` has passed (`BeginTime`): the instance it ran is
    /// gone, so let the job start again now, on whatever node is free.
    StartNow {
        job: JobId,
    },
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub attempt: Option<u32>,
    pub job_id: Option<JobId>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub state: RunState,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
}

/// The answer to a `Submit` action, fed back through [`submitted`].
#[derive(Debug, Clone)]
pub enum SubmitResult {
    Accepted(JobId),
    Rejected {
        kind: Rejection,
        message: String,
    },
    /// sbatch may or may not have created the job (timeout, controller down).
    Unknown {
        message: String,
    },
    /// Slurm refused for now, for a reason that may lift by itself (a drained
    /// partition, a submit limit, every usable node banned): no job exists;
    /// the attempt is submitted again later.
    Deferred {
        message: String,
    },
    /// Every node the job may use is banned (Slurm refused the exclude list)
    /// or down: no job exists. The attempt waits until that changes (a ban
    /// expires, is lifted or added, a node comes back), not on a timer.
    Nowhere {
        message: String,
        /// What kept the job from every node ([`Waiting::blockers`]).
        blockers: Vec<String>,
        /// When the first of those bans expires.
        until: Option<Timestamp>,
    },
}

/// The job name of an attempt: how a job is found again after a crash.
pub fn job_name(spec: &RunSpec, attempt: u32) -> String {
    job_name_of(&spec.run_id, attempt)
}

/// [`job_name`] from the run id alone (for a run whose spec cannot be read).
pub fn job_name_of(run_id: &crate::model::RunId, attempt: u32) -> String {
    format!("shepherd.{run_id}.{attempt}")
}

struct Ctx<'a> {
    spec: &'a RunSpec,
    now: Timestamp,
    st: RunState,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl Ctx<'_> {
    fn event(&mut self, kind: &'static str, message: String) {
        let (attempt, job_id) = self
            .st
            .attempts
            .last()
            .map_or((None, None), |a| (Some(a.attempt), a.job_id));
        self.events.push(Event {
            kind,
            attempt,
            job_id,
            message,
        });
    }

    fn new<'s>(spec: &'s RunSpec, state: &RunState, now: Timestamp) -> Ctx<'s> {
        Ctx {
            spec,
            now,
            st: state.clone(),
            actions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The step: the new state (stamped when it changed), actions, events.
    fn finish(self, before: &RunState) -> Step {
        let mut st = self.st;
        if st != *before {
            st.updated_at = self.now;
        }
        Step {
            state: st,
            actions: self.actions,
            events: self.events,
        }
    }

    fn set_status(&mut self, status: RunStatus, reason: String) {
        if self.st.status != status || self.st.reason != reason {
            self.st.status = status;
            self.st.reason = reason;
        }
    }
}

fn since(now: Timestamp, then: Timestamp) -> Duration {
    let d: SignedDuration = now.duration_since(then);
    d.try_into().unwrap_or(Duration::ZERO)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The backoff before the next attempt after `failures` workload failures.
pub fn backoff(spec: &RunSpec, failures: u32) -> Duration {
    let base = spec.policy.backoff_base;
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    base.saturating_mul(factor).min(spec.policy.backoff_max)
}

/// True when the attempt before the last (the one that just ended), leaving
/// out those that never reached a node, ended in a failure charged to the
/// workload: the last failure is then a repeated one.
fn follows_a_charged_failure(st: &RunState) -> bool {
    st.attempts
        .iter()
        .rev()
        .skip(1)
        .filter_map(|a| a.end.as_ref())
        .find(|e| e.class != FailureClass::NeverStarted)
        .is_some_and(|e| {
            matches!(
                e.class,
                FailureClass::WorkloadFailure | FailureClass::OutOfMemory | FailureClass::Unknown
            ) || (e.class == FailureClass::Hang && e.blame != Blame::Node)
        })
}

/// When an `indefinite` run must end.
fn keep_alive_deadline(spec: &RunSpec) -> Option<Timestamp> {
    match spec.mode {
        Mode::Indefinite => spec.policy.keep_alive.map(|k| add(spec.created_at, k)),
        Mode::RunOnce => None,
    }
}

pub fn step(spec: &RunSpec, state: &RunState, obs: &Observation, now: Timestamp) -> Step {
    let mut cx = Ctx::new(spec, state, now);
    for control in &obs.controls {
        apply_control(&mut cx, *control);
    }
    observe_live_attempt(&mut cx, obs);
    plan_next(&mut cx);
    // A control and an observation may both ask to cancel the same job.
    let mut seen = Vec::new();
    cx.actions.retain(|a| {
        let new = !seen.contains(a);
        seen.push(a.clone());
        new
    });
    cx.finish(state)
}

fn cancel_live(cx: &mut Ctx<'_>, reason: CancelReason) {
    let Some(a) = cx.st.live_attempt_mut() else {
        return;
    };
    a.cancel = Some(reason);
    if let Some(job) = a.job_id {
        cx.actions.push(Action::Cancel { job });
    }
}

fn apply_control(cx: &mut Ctx<'_>, control: Control) {
    let terminal = cx.st.status.is_terminal();
    match control {
        Control::Pause => {
            cx.st.paused = true;
            cx.event("paused", "paused: no new attempt will be submitted".into());
        }
        Control::Unpause => {
            cx.st.paused = false;
            cx.event("unpaused", "unpaused".into());
        }
        Control::Stop if terminal => {
            cx.event(
                "control_ignored",
                format!("stop ignored: the run is already {}", cx.st.status.as_str()),
            );
        }
        Control::Stop => {
            cx.event("stop_requested", "stop requested".into());
            if cx.st.live_attempt().is_some() {
                cancel_live(cx, CancelReason::Stop);
                cx.set_status(
                    RunStatus::Stopping,
                    "stopping: waiting for Slurm to end the job".into(),
                );
            } else {
                cx.set_status(RunStatus::Stopped, "stopped by the user".into());
            }
        }
        Control::Restart => {
            cx.event("restart_requested", "restart requested".into());
            cx.st.workload_failures = 0;
            // Earlier failures are no evidence for the fresh start's verdicts.
            cx.st.evidence_after = cx.st.attempts.last().map_or(0, |a| a.attempt);
            cx.st.not_before = None;
            if cx.st.live_attempt().is_some() {
                cancel_live(cx, CancelReason::Restart);
            } else {
                cx.set_status(RunStatus::Queued, "restart requested".into());
            }
        }
    }
}

fn observe_live_attempt(cx: &mut Ctx<'_>, obs: &Observation) {
    follow_restarts_in_place(cx, obs);
    let Some(attempt) = cx.st.live_attempt().cloned() else {
        return;
    };
    match (attempt.job_id, &obs.job) {
        (None, _) => reconcile_submission(cx, &attempt, obs),
        (Some(_), JobView::Unknown) => {}
        (Some(_), JobView::Seen(info)) => observe_job(cx, &attempt, info, obs),
        (Some(job), JobView::Gone(Some(records))) => {
            // The last record of the job decides; a REQUEUED record means
            // Slurm requeued it and then lost track (e.g. cancelled mid-requeue).
            let last = records.iter().rfind(|r| r.id == job);
            let state = last.map(|r| &r.state).filter(|s| s.is_terminal());
            let exit = last.and_then(|r| r.exit);
            if let Some(r) = last {
                note_placement(cx, &r.partition, &r.nodes);
            }
            let nodes = last.map_or(&[][..], |r| &r.nodes[..]);
            end_attempt(cx, state, exit, nodes, "", obs);
        }
        (Some(_), JobView::Gone(None)) => {}
    }
}

/// The wrapper restarted the workload in place (`--restart-in-place`): each
/// run that failed ends its attempt, judged and charged like any ended job
/// (the wrapper restarts only failures that are the workload's), and the
/// next run is the next attempt of the same job, already running. Nothing is
/// submitted or cancelled: the job goes on.
fn follow_restarts_in_place(cx: &mut Ctx<'_>, obs: &Observation) {
    for o in &obs.in_place {
        let Some(a) = cx.st.live_attempt() else {
            return;
        };
        // Only the next run of this very instance, in order; none once a
        // restart was refused (that run decides at the job's end).
        if Some(o.job_id) != a.job_id
            || o.restarts != a.restarts
            || o.in_place != a.in_place
            || a.refused.is_some()
        {
            return;
        }
        let signatures = signatures_of(obs);
        let end = restarted_run_end(o, &signatures);
        // The wrapper judged with the built-in signatures and the state it
        // read at the start: where the daemon's judgement differs, the
        // restart is cancelled and this run ends the attempt as if the
        // job had ended with it (end_attempt). Not over the user's own
        // cancel (a stop, a restart), which decides instead.
        if let Some(why) = refuse_restart(cx, &end).filter(|_| a.cancel.is_none()) {
            let node = a.node.clone().unwrap_or_else(|| o.node.clone());
            cx.event(
                "restart_in_place_refused",
                format!(
                    "the wrapper restarted the workload in place on {node}, but {why}; cancelling job {}",
                    o.job_id
                ),
            );
            let a = cx.st.live_attempt_mut().expect("live attempt");
            a.refused = Some(crate::policy::state::Refused {
                end,
                node: o.node.clone(),
                restarts: o.restarts,
                in_place: o.in_place,
                warned: o.warned,
            });
            cancel_live(cx, CancelReason::InPlaceRefused);
            return;
        }
        let restarts = a.restarts;
        split_in_place(cx, end, &o.node, (restarts, o.in_place + 1));
    }
}

/// Ends the live attempt (a run of the workload in its job) with `end`,
/// charged like any ended job, and starts the next attempt of the same job:
/// the wrapper's run `next` (Slurm's restart count, run in the job).
fn split_in_place(cx: &mut Ctx<'_>, end: AttemptEnd, node: &str, next: (u32, u32)) {
    if end.class == FailureClass::WorkloadFailure {
        cx.st.workload_failures += 1;
    }
    let now = cx.now;
    let a = cx.st.live_attempt_mut().expect("live attempt");
    let job = a.job_id.map_or("?".to_string(), |j| j.to_string());
    let mut attempt = Attempt::new(a.attempt + 1, a.submitted_at);
    attempt.phase = AttemptPhase::Running;
    attempt.job_id = a.job_id;
    attempt.running_since = Some(now);
    attempt.partition = a.partition.clone();
    attempt.node = a.node.clone().or_else(|| Some(node.to_string()));
    attempt.restarts = next.0;
    attempt.pending_since = a.pending_since;
    attempt.heartbeat_seq = a.heartbeat_seq;
    attempt.heartbeat_changed_at = a.heartbeat_changed_at;
    attempt.cancel = a.cancel.filter(|c| *c != CancelReason::InPlaceRefused);
    attempt.hurried = a.hurried;
    attempt.in_place = next.1;
    attempt.in_job_of = Some(a.dir_attempt());
    a.phase = AttemptPhase::Ended;
    a.ended_at = Some(now);
    a.node.get_or_insert_with(|| node.to_string());
    a.refused = None;
    a.end = Some(end.clone());
    let node = a.node.clone().unwrap_or_default();
    let blame = match end.blame {
        Blame::Node => format!(" (blame: node {node})"),
        Blame::Workload => " (blame: workload)".to_string(),
        Blame::None => String::new(),
    };
    cx.event("attempt_ended", format!("{}{blame}", end.detail));
    let number = attempt.attempt;
    cx.st.attempts.push(attempt);
    cx.event(
        "restarted_in_place",
        format!(
            "the wrapper restarted the workload in place on {node} (restart {} of --restart-in-place {}): attempt {number} runs in job {job}'s allocation, nothing resubmitted",
            next.1,
            cx.spec.policy.restart_in_place
        ),
    );
    if !matches!(cx.st.status, RunStatus::Stopping | RunStatus::Expiring) {
        cx.set_status(
            RunStatus::Running,
            format!(
                "job {job} running on {node} (restarted in place after: {})",
                end.detail
            ),
        );
    }
}

/// How a run the wrapper restarted in place after ended: judged as the job
/// would be, had the wrapper exited with it.
fn restarted_run_end(o: &Outcome, signatures: &SignatureSet) -> AttemptEnd {
    let mut end = classify(&EndEvidence {
        state: Some(&JobState::Failed),
        exit: Some(crate::slurm::ExitStatus {
            code: o.exit_code,
            signal: 0,
        }),
        outcome: Some(o),
        cancel: None,
        signatures: Some(signatures),
    });
    if end.class == FailureClass::WorkloadFailure {
        end.fingerprint = verdicts::fingerprint(o);
    }
    end
}

/// Why the daemon would not have restarted in place after a run that ended
/// with `end` (the live attempt's), or `None` when it agrees with the
/// wrapper: a plain workload failure that asks for no other node, with
/// retries left, and not the same failure as on another node.
fn refuse_restart(cx: &Ctx<'_>, end: &AttemptEnd) -> Option<String> {
    if end.class != FailureClass::WorkloadFailure || end.blame != Blame::Workload {
        return Some(format!("the failure may be the node's: {}", end.detail));
    }
    if let Some(sig) = end
        .signature
        .as_ref()
        .filter(|s| s.action == crate::policy::signatures::SignatureAction::CountAndRetryElsewhere)
    {
        return Some(format!(
            "signature {} asks for another node: {}",
            sig.id, end.detail
        ));
    }
    let policy = &cx.spec.policy;
    if cx.st.workload_failures + 1 > policy.max_retries {
        return Some(format!(
            "the run has no retries left (--max-retries {})",
            policy.max_retries
        ));
    }
    // The same-failure rule over the history with this run ended.
    let mut st = cx.st.clone();
    let a = st.live_attempt_mut()?;
    a.phase = AttemptPhase::Ended;
    a.end = Some(end.clone());
    verdicts::code_fault(&st, policy.same_failure_limit)
        .map(|v| format!("the same failure repeats: {v}"))
}

/// The fault signatures to judge an ended job's output by.
fn signatures_of(obs: &Observation) -> std::sync::Arc<SignatureSet> {
    obs.signatures
        .clone()
        .unwrap_or_else(|| std::sync::Arc::new(SignatureSet::builtin()))
}

/// Where the live attempt ran, when Slurm says so (a job may end before the
/// daemon ever saw it running).
fn note_placement(cx: &mut Ctx<'_>, partition: &str, nodes: &[String]) {
    if let Some(a) = cx.st.live_attempt_mut() {
        if !partition.is_empty() {
            a.partition = Some(partition.to_string());
        }
        if let Some(n) = nodes.first() {
            a.node = Some(n.clone());
        }
    }
}

/// An attempt whose sbatch answer was never recorded: find its job by name, or
/// conclude that it was never created.
fn reconcile_submission(cx: &mut Ctx<'_>, attempt: &Attempt, obs: &Observation) {
    if attempt.waiting.is_some() {
        wait_for_somewhere(cx, attempt, obs);
        return;
    }
    let Some(found) = &obs.found else {
        return;
    };
    let name = job_name(cx.spec, attempt.attempt);
    // A refused submission leaves a record under the name (FAILED,
    // BadConstraints, no node): it is not this attempt's job.
    let mine: Vec<&JobInfo> = found
        .iter()
        .filter(|j| j.name == name && !verdicts::is_phantom(j))
        .collect();
    if let Some(job) = mine.iter().find(|j| !j.state.is_terminal()).or(mine.last()) {
        let id = job.id;
        if let Some(a) = cx.st.live_attempt_mut() {
            a.job_id = Some(id);
            a.phase = AttemptPhase::Pending;
        }
        cx.event(
            "reconciled",
            format!("found job {id} ({name}) submitted before the daemon lost track of it"),
        );
        // Any further copies would be duplicates: cancel them.
        for extra in mine.iter().filter(|j| j.id != id && !j.state.is_terminal()) {
            cx.actions.push(Action::Cancel { job: extra.id });
            cx.event(
                "duplicate_cancelled",
                format!("cancelled duplicate job {}", extra.id),
            );
        }
        if let Some(reason) = attempt.cancel {
            cancel_live(cx, reason);
        }
        return;
    }
    if since(cx.now, attempt.submitted_at) < RECONCILE_AFTER {
        return;
    }
    if attempt.cancel.is_some() {
        // Stop or restart was asked before the job ever appeared.
        if let Some(a) = cx.st.live_attempt_mut() {
            a.phase = AttemptPhase::Ended;
            a.ended_at = Some(cx.now);
        }
        finish_cancelled(cx, attempt.cancel);
        return;
    }
    cx.event(
        "resubmit_unconfirmed",
        format!(
            "no job named {name} in Slurm; submitting attempt {} again",
            attempt.attempt
        ),
    );
    if let Some(a) = cx.st.live_attempt_mut() {
        a.submitted_at = cx.now;
    }
    cx.actions.push(Action::Submit {
        attempt: attempt.attempt,
    });
}

/// An attempt Slurm refused because every node it may use is banned: no job
/// exists (sbatch's answer was definite), so a stop ends it at once, and it
/// is submitted again only when that can help: the blockers changed, the
/// first ban expired, or (rarely) after [`WAITING_RECHECK`].
fn wait_for_somewhere(cx: &mut Ctx<'_>, attempt: &Attempt, obs: &Observation) {
    let Some(w) = &attempt.waiting else {
        return;
    };
    if attempt.cancel.is_some() {
        if let Some(a) = cx.st.live_attempt_mut() {
            a.phase = AttemptPhase::Ended;
            a.ended_at = Some(cx.now);
            a.waiting = None;
        }
        finish_cancelled(cx, attempt.cancel);
        return;
    }
    if cx.st.paused {
        // Paused: nothing new is submitted, however the bans change.
        return;
    }
    let now = cx.now;
    let changed = obs.blockers_now.as_ref().is_some_and(|x| {
        let mut x = x.clone();
        x.sort();
        x != w.blockers
    });
    let expired = w.until.is_some_and(|u| now >= u);
    let recheck = since(now, w.tried_at) >= WAITING_RECHECK;
    let why = if changed {
        "the banned or down nodes changed"
    } else if expired {
        "the first ban expired"
    } else if recheck {
        "checking again"
    } else {
        return;
    };
    cx.event(
        "resubmit_waiting",
        format!("{why}; submitting attempt {} again", attempt.attempt),
    );
    if let Some(a) = cx.st.live_attempt_mut() {
        a.submitted_at = now;
        if let Some(w) = &mut a.waiting {
            w.tried_at = now;
        }
    }
    cx.actions.push(Action::Submit {
        attempt: attempt.attempt,
    });
}

fn observe_job(cx: &mut Ctx<'_>, attempt: &Attempt, info: &JobInfo, obs: &Observation) {
    if info.state.is_terminal() {
        note_placement(cx, &info.partition, &info.nodes);
        end_attempt(
            cx,
            Some(&info.state),
            info.exit,
            &info.nodes,
            &info.reason,
            obs,
        );
        return;
    }
    let now = cx.now;
    let requeued = info.restarts > attempt.restarts;
    if requeued {
        cx.event(
            "requeued_by_slurm",
            format!(
                "Slurm requeued job {} (restart {}); waiting for it to run again",
                info.id, info.restarts
            ),
        );
    }
    // Slurm's hold after a requeue only waits for the old instance's
    // credential to expire (`cred_expire + 1`: 11 s on the test cluster,
    // 121 s by default); the old instance is gone (its node failed, or it
    // was preempted), so the wait buys nothing. Asked once per requeue (the
    // reason may show a poll after the requeue itself).
    let held = info.state.is_pending() && info.reason == "BeginTime" && info.restarts > 0;
    if held && attempt.hurried != Some(info.restarts) && attempt.cancel.is_none() {
        cx.event(
            "start_now_asked",
            format!(
                "job {} is held after its requeue until Slurm's credential expires (BeginTime); asking Slurm to start it again now",
                info.id
            ),
        );
        cx.actions.push(Action::StartNow { job: info.id });
        if let Some(a) = cx.st.live_attempt_mut() {
            a.hurried = Some(info.restarts);
        }
    }
    let a = cx.st.live_attempt_mut().expect("live attempt");
    a.restarts = info.restarts;
    if requeued {
        // The new instance's wrapper counts its runs from 0 again.
        a.in_place = 0;
    }
    if !info.partition.is_empty() {
        a.partition = Some(info.partition.clone());
    }
    if requeued {
        // A new instance of the job: its heartbeats start afresh.
        a.running_since = None;
        a.heartbeat_seq = None;
        a.heartbeat_changed_at = None;
        a.progress_mark = None;
        a.progress_changed_at = None;
    }
    if info.state.is_pending() {
        a.phase = AttemptPhase::Pending;
        a.pending_reason = Some(info.reason.clone()).filter(|r| !r.is_empty());
        if requeued {
            a.pending_since = None;
        }
        let since_pending = *a.pending_since.get_or_insert(now);
        let reason = a.pending_reason.clone().unwrap_or_else(|| "waiting".into());
        // Look for a better partition when the job waited past
        // --pending-timeout, or at once when its reason can never resolve;
        // at most once a minute.
        let stuck = crate::slurm::reasons::classify_pending(&reason)
            != crate::slurm::reasons::PendingOutlook::Waiting;
        let waited = cx
            .spec
            .policy
            .pending_timeout
            .is_some_and(|t| since(now, since_pending) >= t);
        let recently = a
            .reconsidered_at
            .is_some_and(|t| since(now, t) < Duration::from_secs(60));
        if (stuck || waited) && !recently && a.cancel.is_none() {
            a.reconsidered_at = Some(now);
            cx.actions.push(Action::Reconsider { job: info.id });
        }
        if a.cancel.is_some() {
            // Cancelled earlier (a scancel that failed, or a requeue that
            // raced it): ask again until Slurm ends the job.
            cx.actions.push(Action::Cancel { job: info.id });
        }
        if !matches!(cx.st.status, RunStatus::Stopping | RunStatus::Expiring) {
            cx.set_status(
                RunStatus::Pending,
                format!("job {} pending: {reason}", info.id),
            );
        }
        return;
    }
    a.phase = AttemptPhase::Running;
    a.pending_reason = None;
    a.node = info.nodes.first().cloned().or(a.node.take());
    let running_since = *a.running_since.get_or_insert(now);
    // Heartbeats of this exact instance (job id and restart count) only.
    if let Some(hb) = obs
        .heartbeat
        .as_ref()
        .filter(|h| h.job_id == info.id && h.restarts == info.restarts)
        && a.heartbeat_seq != Some(hb.seq)
    {
        a.heartbeat_seq = Some(hb.seq);
        a.heartbeat_changed_at = Some(now);
    }
    let mark = progress_mark(obs, info);
    // Between runs (the probes, the wait before a restart in place) the
    // workload is not running: no progress is due, and the stall counts
    // from when it runs again.
    let probing = obs
        .heartbeat
        .as_ref()
        .filter(|h| h.job_id == info.id && h.restarts == info.restarts)
        .is_some_and(|h| h.phase == crate::records::Phase::Probing);
    if probing {
        if mark.is_some() {
            a.progress_mark = mark;
        }
        a.progress_changed_at = Some(now);
    } else if mark.is_some() && a.progress_mark != mark {
        a.progress_mark = mark;
        a.progress_changed_at = Some(now);
    }
    let node = a.node.clone().unwrap_or_default();
    let heartbeat_age = since(now, a.heartbeat_changed_at.unwrap_or(running_since));
    let progress_age = since(now, a.progress_changed_at.unwrap_or(running_since));
    let cancel_pending = a.cancel.is_some();
    let in_place = match a.in_place {
        0 => String::new(),
        1 => " (restarted in place once)".to_string(),
        k => format!(" (restarted in place {k} times)"),
    };
    if !matches!(cx.st.status, RunStatus::Stopping | RunStatus::Expiring) {
        cx.set_status(
            RunStatus::Running,
            format!("job {} running on {node}{in_place}", info.id),
        );
    }
    if cancel_pending {
        // Cancelled earlier; Slurm has not ended it yet. Ask again.
        cx.actions.push(Action::Cancel { job: info.id });
        return;
    }
    let policy = &cx.spec.policy;
    // The first heartbeat may only come after the wrapper's probes: the grace
    // period counts from when the job was first seen running.
    let hang = |cx: &mut Ctx<'_>, what: &str, age: Duration, reason| {
        let age = crate::duration::format(age);
        cx.event(
            "hang_detected",
            format!("{what} from job {} for {age}; cancelling it", info.id),
        );
        cancel_live(cx, reason);
    };
    if heartbeat_age > policy.heartbeat_grace {
        hang(
            cx,
            "no heartbeat",
            heartbeat_age,
            CancelReason::HeartbeatLost,
        );
    } else if let Some(stall) = policy.progress_stall
        && progress_age > stall
    {
        hang(
            cx,
            "no progress and no output",
            progress_age,
            CancelReason::ProgressStalled,
        );
    } else if let Some(deadline) = keep_alive_deadline(cx.spec)
        && now >= deadline
    {
        cx.event(
            "keep_alive_elapsed",
            "keep-alive elapsed; stopping the run gracefully".into(),
        );
        cancel_live(cx, CancelReason::KeepAlive);
        cx.set_status(
            RunStatus::Expiring,
            "keep-alive elapsed: waiting for Slurm to end the job".into(),
        );
    }
}

/// Progress is a report from the workload or growth of its output.
fn progress_mark(obs: &Observation, info: &JobInfo) -> Option<String> {
    let reported = obs
        .progress
        .as_ref()
        .map(|p| format!("{:?}/{:?}/{}", p.step, p.message, p.time));
    let output = obs
        .heartbeat
        .as_ref()
        .filter(|h| h.job_id == info.id && h.restarts == info.restarts)
        .and_then(|h| h.output_bytes);
    match (reported, output) {
        (None, None) => None,
        (r, o) => Some(format!("{r:?}+{o:?}")),
    }
}

fn end_attempt(
    cx: &mut Ctx<'_>,
    state: Option<&JobState>,
    exit: Option<crate::slurm::ExitStatus>,
    nodes: &[String],
    reason: &str,
    obs: &Observation,
) {
    let outcome = obs.outcome.as_ref();
    let Some(a) = cx.st.live_attempt() else {
        return;
    };
    // A refused restart in place: the run before it decides, as if the job
    // had ended with it; unless the restarted run completed (positive
    // evidence wins): then the refused run is an attempt of its own, and
    // the success ends the next.
    if let Some(r) = a.refused.clone() {
        let completed = outcome.filter(|o| {
            state == Some(&JobState::Completed)
                && Some(o.job_id) == a.job_id
                && (o.restarts, o.in_place) > (r.restarts, r.in_place)
                && o.verdict == crate::records::Verdict::Exited { code: 0 }
        });
        if let Some(o) = completed {
            split_in_place(cx, r.end, &r.node, (o.restarts, o.in_place));
            return end_attempt(cx, state, exit, nodes, reason, obs);
        }
        return record_end(cx, r.end, Some(r.node), r.warned);
    }
    // The wrapper's outcome counts only if it belongs to this job instance.
    let outcome = outcome.filter(|o| {
        Some(o.job_id) == a.job_id && o.restarts == a.restarts && o.in_place == a.in_place
    });
    let cancel = a.cancel;
    let signatures = signatures_of(obs);
    let reached = verdicts::Reached {
        state,
        nodes,
        reason,
        outcome: outcome.is_some(),
        seen_running: a.running_since.is_some(),
    };
    let never = verdicts::never_started(&reached).filter(|_| cancel.is_none());
    let mut end = never.unwrap_or_else(|| {
        classify(&EndEvidence {
            state,
            exit,
            outcome,
            cancel,
            signatures: Some(&signatures),
        })
    });
    if matches!(
        end.class,
        FailureClass::WorkloadFailure | FailureClass::OutOfMemory
    ) {
        end.fingerprint = outcome.and_then(verdicts::fingerprint);
    }
    record_end(
        cx,
        end,
        outcome.map(|o| o.node.clone()),
        outcome.is_some_and(|o| o.warned),
    );
}

/// Ends the live attempt with `end` (on `node`, when Slurm did not say;
/// `warned` by the time-limit signal) and decides what follows.
fn record_end(cx: &mut Ctx<'_>, end: AttemptEnd, node: Option<String>, warned: bool) {
    let now = cx.now;
    let a = cx.st.live_attempt_mut().expect("live attempt");
    a.phase = AttemptPhase::Ended;
    a.ended_at = Some(now);
    if let Some(node) = node {
        a.node.get_or_insert(node);
    }
    a.end = Some(end.clone());
    let blame = match end.blame {
        Blame::Node => format!(" (blame: node {})", a.node.clone().unwrap_or_default()),
        Blame::Workload => " (blame: workload)".to_string(),
        Blame::None => String::new(),
    };
    cx.event("attempt_ended", format!("{}{blame}", end.detail));
    after_end(cx, &end, warned);
}

fn finish_cancelled(cx: &mut Ctx<'_>, cancel: Option<CancelReason>) {
    match cancel {
        Some(CancelReason::Stop) => cx.set_status(RunStatus::Stopped, "stopped by the user".into()),
        Some(CancelReason::KeepAlive) => {
            cx.set_status(RunStatus::Expired, "keep-alive elapsed".into())
        }
        _ => cx.set_status(RunStatus::Queued, "restarting".into()),
    }
}

/// Decides what the run does after an attempt ended.
fn after_end(cx: &mut Ctx<'_>, end: &AttemptEnd, warned: bool) {
    let spec = cx.spec;
    // The user's stop wins over however the job happened to end.
    if matches!(cx.st.status, RunStatus::Stopping) {
        cx.set_status(RunStatus::Stopped, "stopped by the user".into());
        return;
    }
    if matches!(cx.st.status, RunStatus::Expiring) {
        cx.set_status(RunStatus::Expired, "keep-alive elapsed".into());
        return;
    }
    let resubmit_now = |cx: &mut Ctx<'_>, why: String| {
        cx.st.not_before = None;
        cx.set_status(RunStatus::Queued, why);
    };
    match end.class {
        FailureClass::Success => match spec.mode {
            Mode::RunOnce => cx.set_status(RunStatus::Completed, "the workload exited with code 0".into()),
            Mode::Indefinite => resubmit_now(cx, "the workload exited 0; indefinite run continues".into()),
        },
        FailureClass::NodeFault => resubmit_now(cx, format!("node fault: {}; resubmitting", end.detail)),
        FailureClass::Hang if end.blame == Blame::Node => {
            resubmit_now(cx, format!("{}; resubmitting", end.detail))
        }
        FailureClass::Preempted => resubmit_now(cx, "preempted; resubmitting".into()),
        FailureClass::TimeLimit if spec.mode == Mode::Indefinite || warned => {
            resubmit_now(cx, "time limit reached; resubmitting to continue".into())
        }
        FailureClass::TimeLimit => cx.set_status(
            RunStatus::Failed,
            "the job reached its time limit without checkpointing (use --signal-before, or a longer --time)".into(),
        ),
        FailureClass::CancelledExternally => cx.set_status(
            RunStatus::Stopped,
            "the job was cancelled outside Shepherd (scancel); the run is stopped".into(),
        ),
        FailureClass::CancelledByShepherd => {
            let cancel = cx.st.attempts.last().and_then(|a| a.cancel);
            finish_cancelled(cx, cancel);
        }
        FailureClass::Rejected => {
            cx.set_status(RunStatus::Failed, format!("Slurm refused the submission: {}", end.detail));
        }
        // Nothing ran: not charged. A refusal waits in `submitted`; this is
        // a job Slurm accepted and then ended unplaced, so try again after a
        // pause that keeps such ends from looping.
        // Consecutive ones back off (doubling, up to --backoff-max): a
        // standing cause (a QOS that ends pending jobs) must not loop every
        // 30 s forever.
        FailureClass::NeverStarted => {
            let in_a_row = cx
                .st
                .attempts
                .iter()
                .rev()
                .take_while(|a| {
                    a.end
                        .as_ref()
                        .is_some_and(|e| e.class == FailureClass::NeverStarted)
                })
                .count()
                .max(1);
            let factor = 1u32 << (in_a_row - 1).min(16);
            let delay = RECONCILE_AFTER
                .saturating_mul(factor)
                .min(spec.policy.backoff_max.max(RECONCILE_AFTER));
            cx.st.not_before = Some(add(cx.now, delay));
            cx.set_status(
                RunStatus::Queued,
                format!(
                    "{}; not charged, submitting again in {} ({in_a_row} in a row)",
                    end.detail,
                    crate::duration::format(delay)
                ),
            );
        }
        FailureClass::WorkloadFailure | FailureClass::OutOfMemory
            if let Some(verdict) = verdicts::code_fault(&cx.st, spec.policy.same_failure_limit) =>
        {
            cx.st.workload_failures += 1;
            cx.event("code_fault", verdict.clone());
            cx.set_status(RunStatus::Failed, verdict);
        }
        FailureClass::WorkloadFailure
        | FailureClass::OutOfMemory
        | FailureClass::Hang
        | FailureClass::Unknown => {
            cx.st.workload_failures += 1;
            let failures = cx.st.workload_failures;
            if failures > spec.policy.max_retries {
                let verdict = format!(
                    "{} failures, more than --max-retries {}; last: {}",
                    failures, spec.policy.max_retries, end.detail
                );
                cx.event("run_failed", verdict.clone());
                cx.set_status(RunStatus::Failed, verdict);
            } else if end.class == FailureClass::Hang && !follows_a_charged_failure(&cx.st) {
                // Detecting the hang already took --progress-stall: a pause
                // on top buys nothing for a first one. Hangs in a row (or
                // after a crash) back off like any repeated failure.
                cx.st.not_before = None;
                cx.set_status(
                    RunStatus::Queued,
                    format!(
                        "{}; retry {failures} of {} at once (a first hang: no backoff)",
                        end.detail, spec.policy.max_retries
                    ),
                );
            } else {
                let wait = backoff(spec, failures);
                cx.st.not_before = Some(add(cx.now, wait));
                cx.set_status(
                    RunStatus::Queued,
                    format!(
                        "{}; retry {failures} of {} in {}",
                        end.detail,
                        spec.policy.max_retries,
                        crate::duration::format(wait)
                    ),
                );
            }
        }
    }
}

/// With no live attempt: submit the next one, or wait.
fn plan_next(cx: &mut Ctx<'_>) {
    if cx.st.live_attempt().is_some() || cx.st.status.is_terminal() {
        return;
    }
    if matches!(cx.st.status, RunStatus::Stopping) {
        cx.set_status(RunStatus::Stopped, "stopped by the user".into());
        return;
    }
    if let Some(deadline) = keep_alive_deadline(cx.spec)
        && cx.now >= deadline
    {
        cx.set_status(RunStatus::Expired, "keep-alive elapsed".into());
        return;
    }
    if cx.st.paused {
        cx.set_status(
            RunStatus::Paused,
            "paused: unpause to submit the next attempt".into(),
        );
        return;
    }
    if let Some(t) = cx.st.not_before
        && cx.now < t
    {
        if cx.st.status == RunStatus::Paused {
            cx.set_status(RunStatus::Queued, format!("backing off until {t}"));
        }
        return;
    }
    let n = cx.st.attempts.last().map_or(1, |a| a.attempt + 1);
    cx.st.attempts.push(Attempt::new(n, cx.now));
    cx.st.not_before = None;
    cx.set_status(RunStatus::Submitting, format!("submitting attempt {n}"));
    cx.event(
        "submit",
        format!("submitting attempt {n} as {}", job_name(cx.spec, n)),
    );
    cx.actions.push(Action::Submit { attempt: n });
}

/// Records sbatch's answer to a `Submit` action.
pub fn submitted(
    spec: &RunSpec,
    state: &RunState,
    attempt: u32,
    result: &SubmitResult,
    now: Timestamp,
) -> Step {
    let mut cx = Ctx::new(spec, state, now);
    let live = cx
        .st
        .live_attempt()
        .is_some_and(|a| a.attempt == attempt && a.job_id.is_none());
    if live {
        match result {
            SubmitResult::Accepted(id) => {
                let a = cx.st.live_attempt_mut().expect("live attempt");
                a.job_id = Some(*id);
                a.phase = AttemptPhase::Pending;
                a.waiting = None;
                let cancel = a.cancel;
                cx.set_status(RunStatus::Pending, format!("job {id} submitted"));
                cx.event("submitted", format!("attempt {attempt} is job {id}"));
                if let Some(reason) = cancel {
                    cancel_live(&mut cx, reason);
                }
            }
            SubmitResult::Rejected { kind, message } => {
                let a = cx.st.live_attempt_mut().expect("live attempt");
                a.phase = AttemptPhase::Ended;
                a.ended_at = Some(now);
                let end = AttemptEnd {
                    class: FailureClass::Rejected,
                    blame: Blame::None,
                    slurm_state: None,
                    exit: None,
                    detail: format!("{kind:?}: {message}"),
                    signature: None,
                    fingerprint: None,
                    probes: Vec::new(),
                };
                a.end = Some(end.clone());
                cx.event("submit_rejected", end.detail.clone());
                after_end(&mut cx, &end, false);
            }
            SubmitResult::Unknown { message } => {
                // The job may exist after all: look for it by name again.
                if let Some(a) = cx.st.live_attempt_mut() {
                    a.waiting = None;
                }
                cx.event(
                    "submit_unknown",
                    format!("sbatch gave no answer ({message}); will look for the job before submitting again"),
                );
            }
            // The attempt stays unconfirmed: the same path as an unclear
            // answer retries it, after looking for it by name, which is cheap
            // and covers a refusal misread as final.
            SubmitResult::Deferred { message } => {
                if let Some(a) = cx.st.live_attempt_mut() {
                    a.waiting = None;
                }
                cx.event(
                    "submit_deferred",
                    format!("Slurm cannot take the job yet: {message}"),
                );
                cx.set_status(RunStatus::Queued, format!("waiting: {message}"));
            }
            SubmitResult::Nowhere {
                message,
                blockers,
                until,
            } => {
                let mut blockers = blockers.clone();
                blockers.sort();
                let a = cx.st.live_attempt_mut().expect("live attempt");
                let first = a.waiting.is_none();
                let since = a.waiting.as_ref().map_or(now, |w| w.since);
                a.waiting = Some(Waiting {
                    since,
                    blockers,
                    until: *until,
                    tried_at: now,
                });
                if first {
                    cx.event("nowhere_to_run", message.clone());
                }
                cx.set_status(RunStatus::Queued, format!("waiting: {message}"));
            }
        }
    }
    cx.finish(state)
}
