//! What to tell the user about a run, decided from the run's state before and
//! after one daemon step: one notice per incident, not per retry.
//!
//! - the run completed;
//! - the run failed for good (the verdict and the evidence);
//! - the run recovered: after one or more failed attempts (or a requeue by
//!   Slurm), a job runs again; what failed, what Shepherd did, how long the
//!   run was down;
//! - the run has nowhere to run: every node it may use is banned (once per
//!   attempt, however long it waits);
//! - a node or a switch was banned (built by the daemon where it bans).
//!
//! Each notice has a stable id, so a notice decided twice (the daemon died
//! between recording the state and queueing the notice) is sent once.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::state::{Attempt, FailureClass, RunState, RunStatus};
use crate::model::RunSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    RunCompleted,
    RunFailed,
    RunRecovered,
    NodeBanned,
    RunWaiting,
    /// A GPU probe blamed several nodes identically: its blame no longer
    /// bans ([`super::breaker`]).
    ProbeDistrusted,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 6] = [
        NoticeKind::RunCompleted,
        NoticeKind::RunFailed,
        NoticeKind::RunRecovered,
        NoticeKind::NodeBanned,
        NoticeKind::RunWaiting,
        NoticeKind::ProbeDistrusted,
    ];

    /// The short name users write in `events = [...]`.
    pub fn short(self) -> &'static str {
        match self {
            NoticeKind::RunCompleted => "completed",
            NoticeKind::RunFailed => "failed",
            NoticeKind::RunRecovered => "recovered",
            NoticeKind::NodeBanned => "banned",
            NoticeKind::RunWaiting => "waiting",
            NoticeKind::ProbeDistrusted => "breaker",
        }
    }

    pub fn from_short(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.short() == s)
    }
}

/// One message for the user. Serialized as the documented notification JSON
/// (docs/notifications.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Stable: the same incident always gets the same id.
    pub id: String,
    pub kind: NoticeKind,
    pub time: Timestamp,
    pub run_id: Option<String>,
    /// The run's status after the incident.
    pub status: Option<String>,
    /// One line for people: what happened.
    pub summary: String,
    /// Evidence and what Shepherd did, one fact per line.
    pub details: Vec<String>,
    /// How long the run had no job running, for `run_recovered`.
    pub down_secs: Option<u64>,
    /// The attempt the notice is about.
    pub attempt: Option<u32>,
    pub node: Option<String>,
    pub partition: Option<String>,
    /// Banned nodes, for `node_banned`.
    #[serde(default)]
    pub nodes: Vec<String>,
}

impl Notice {
    fn about(
        id: String,
        kind: NoticeKind,
        spec: &RunSpec,
        st: &RunState,
        now: Timestamp,
    ) -> Notice {
        Notice {
            id,
            kind,
            time: now,
            run_id: Some(spec.run_id.to_string()),
            status: Some(st.status.as_str().to_string()),
            summary: String::new(),
            details: Vec::new(),
            down_secs: None,
            attempt: None,
            node: None,
            partition: None,
            nodes: Vec::new(),
        }
    }

    /// A probe's circuit breaker tripped: one notice per trip (its id is the
    /// probe and the time it tripped), whichever run saw it.
    pub fn probe_distrusted(
        run_id: &str,
        attempt: u32,
        tripped: &super::breaker::Tripped,
        lifted: &[String],
        now: Timestamp,
    ) -> Notice {
        let mut details = vec![
            format!(
                "the same finding on {}: {}",
                tripped.nodes.join(", "),
                tripped.key
            ),
            "nothing else (Slurm's node state, a hardware signature) said those nodes are bad, so the probe is more likely wrong than the nodes".to_string(),
            format!(
                "runs skip the {} probe until {}",
                tripped.probe,
                tripped.until.strftime("%Y-%m-%d %H:%M UTC")
            ),
        ];
        if !lifted.is_empty() {
            details.push(format!(
                "lifted the ban(s) it made on {}",
                lifted.join(", ")
            ));
        }
        Notice {
            id: format!("breaker.{}.{}", tripped.probe, tripped.since.as_second()),
            kind: NoticeKind::ProbeDistrusted,
            time: now,
            run_id: Some(run_id.to_string()),
            status: None,
            summary: format!(
                "GPU probe {} blamed {} nodes the same way: not banning on it",
                tripped.probe,
                tripped.nodes.len()
            ),
            details,
            down_secs: None,
            attempt: Some(attempt),
            node: None,
            partition: None,
            nodes: tripped.nodes.clone(),
        }
    }

    /// A ban by the daemon, caused by one of a run's attempts.
    pub fn banned(
        run_id: &str,
        attempt: u32,
        nodes: Vec<String>,
        why: &str,
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Notice {
        let until_text = until.map_or("until unbanned".to_string(), |u| {
            format!("until {}", u.strftime("%Y-%m-%d %H:%M UTC"))
        });
        Notice {
            id: format!("{run_id}.{attempt}.banned.{}", nodes.join(",")),
            kind: NoticeKind::NodeBanned,
            time: now,
            run_id: Some(run_id.to_string()),
            status: None,
            summary: format!("banned {} {until_text}", nodes.join(", ")),
            details: vec![
                format!("why: {why}"),
                format!("after run {run_id}, attempt {attempt}"),
            ],
            down_secs: None,
            attempt: Some(attempt),
            node: nodes.first().cloned(),
            partition: None,
            nodes,
        }
    }
}

/// Whether an attempt's end is an incident the run had to recover from.
fn is_failure(a: &Attempt) -> bool {
    a.end.as_ref().is_some_and(|e| {
        matches!(
            e.class,
            FailureClass::NodeFault
                | FailureClass::WorkloadFailure
                | FailureClass::OutOfMemory
                | FailureClass::Preempted
                | FailureClass::Hang
                | FailureClass::Unknown
        )
    })
}

fn describe(a: &Attempt) -> String {
    let Some(end) = &a.end else {
        return format!("attempt {}", a.attempt);
    };
    let mut s = format!("attempt {}", a.attempt);
    if let Some(node) = &a.node {
        s.push_str(&format!(" on {node}"));
    }
    s.push_str(&format!(": {}", end.detail));
    s.push_str(&format!(
        " (blame: {})",
        match end.blame {
            super::state::Blame::Node => "node",
            super::state::Blame::Workload => "workload",
            super::state::Blame::None => "none",
        }
    ));
    s
}

fn duration_text(secs: u64) -> String {
    crate::duration::format(std::time::Duration::from_secs(secs))
}

/// The notices for one step of a run, from its state before and after.
pub fn for_run(spec: &RunSpec, before: &RunState, after: &RunState, now: Timestamp) -> Vec<Notice> {
    let mut out = Vec::new();
    let run = spec.run_id.as_str();
    let n = after.attempts.len();
    if after.status != before.status {
        match after.status {
            RunStatus::Completed => {
                let recovered = after.attempts.iter().filter(|a| is_failure(a)).count();
                let mut notice = Notice::about(
                    format!("{run}.{n}.completed"),
                    NoticeKind::RunCompleted,
                    spec,
                    after,
                    now,
                );
                let took = now.duration_since(spec.created_at).unsigned_abs().as_secs();
                notice.summary = format!(
                    "run {run} completed after {n} attempt{} in {}",
                    if n == 1 { "" } else { "s" },
                    duration_text(took)
                );
                if recovered > 0 {
                    notice
                        .details
                        .push(format!("Shepherd recovered it from {recovered} failure(s)"));
                }
                if let Some(a) = after.attempts.last() {
                    notice.attempt = Some(a.attempt);
                    notice.node = a.node.clone();
                    notice.partition = a.partition.clone();
                }
                out.push(notice);
            }
            RunStatus::Failed => {
                let mut notice = Notice::about(
                    format!("{run}.{n}.failed"),
                    NoticeKind::RunFailed,
                    spec,
                    after,
                    now,
                );
                notice.summary = format!("run {run} failed: {}", after.reason);
                if let Some(a) = after.attempts.last() {
                    notice.attempt = Some(a.attempt);
                    notice.node = a.node.clone();
                    notice.partition = a.partition.clone();
                    notice.details.push(format!("last {}", describe(a)));
                    if let Some(sig) = a.end.as_ref().and_then(|e| e.signature.as_ref()) {
                        notice
                            .details
                            .push(format!("evidence ({}): {}", sig.id, sig.line));
                    }
                    if let Some(fp) = a.end.as_ref().and_then(|e| e.fingerprint.as_ref()) {
                        notice.details.push(format!(
                            "failure fingerprint: {} after {}: {}",
                            fp.exit,
                            fp.after,
                            fp.lines.join(" | ")
                        ));
                    }
                    if let Some(job) = a.job_id {
                        notice.details.push(format!("Slurm job {job}"));
                    }
                }
                let failed = after.attempts.iter().filter(|a| is_failure(a)).count();
                notice.details.push(format!(
                    "{n} attempt(s), {failed} failed; `shepherd status {run}` and `shepherd logs {run} --stderr` show more"
                ));
                out.push(notice);
            }
            _ => {}
        }
    }
    if let Some(notice) = waiting(spec, before, after, now) {
        out.push(notice);
    }
    if let Some(notice) = recovered(spec, before, after, now) {
        out.push(notice);
    }
    out
}

/// The live attempt started waiting for somewhere to run in this step.
fn waiting(spec: &RunSpec, before: &RunState, after: &RunState, now: Timestamp) -> Option<Notice> {
    let a = after.live_attempt()?;
    let w = a.waiting.as_ref()?;
    let was = before.attempts.iter().find(|b| b.attempt == a.attempt);
    if was.is_some_and(|b| b.waiting.is_some()) {
        return None;
    }
    let run = spec.run_id.as_str();
    let mut notice = Notice::about(
        format!("{run}.{}.waiting", a.attempt),
        NoticeKind::RunWaiting,
        spec,
        after,
        now,
    );
    notice.attempt = Some(a.attempt);
    notice.summary = format!("run {run} is waiting: every node it may use is banned");
    notice.details.push(after.reason.clone());
    notice.details.push(match w.until {
        Some(u) => format!(
            "Shepherd submits it again when a ban is lifted or at {}",
            u.strftime("%Y-%m-%d %H:%M UTC")
        ),
        None => "Shepherd submits it again when a ban is lifted (`shepherd nodes unban NODE`)"
            .to_string(),
    });
    notice.nodes = w
        .blockers
        .iter()
        .filter(|n| !n.starts_with("down:"))
        .cloned()
        .collect();
    Some(notice)
}

/// A job runs again after failures: the newest attempt started running in
/// this step, and the attempts just before it failed (or Slurm requeued it).
fn recovered(
    spec: &RunSpec,
    before: &RunState,
    after: &RunState,
    now: Timestamp,
) -> Option<Notice> {
    let a = after.attempts.last()?;
    let started = a.running_since?;
    let was = before.attempts.iter().find(|b| b.attempt == a.attempt);
    if was.is_some_and(|b| b.running_since.is_some()) {
        return None;
    }
    let run = spec.run_id.as_str();
    // The failures since the run last ran to a planned end.
    let chain: Vec<&Attempt> = after.attempts[..after.attempts.len() - 1]
        .iter()
        .rev()
        .take_while(|p| is_failure(p))
        .collect();
    let mut notice = Notice::about(
        format!("{run}.{}.r{}.recovered", a.attempt, a.restarts),
        NoticeKind::RunRecovered,
        spec,
        after,
        now,
    );
    notice.attempt = Some(a.attempt);
    notice.node = a.node.clone();
    notice.partition = a.partition.clone();
    let place = match (&a.node, &a.partition) {
        (Some(n), Some(p)) => format!(" on {n} ({p})"),
        (Some(n), None) => format!(" on {n}"),
        (None, Some(p)) => format!(" in {p}"),
        _ => String::new(),
    };
    if let Some(first) = chain.last() {
        let down = first
            .ended_at
            .map(|t| started.duration_since(t).unsigned_abs().as_secs());
        notice.down_secs = down;
        notice.summary = format!(
            "run {run} recovered: attempt {} running{place}{}",
            a.attempt,
            down.map_or(String::new(), |d| format!(
                " after {} down",
                duration_text(d)
            ))
        );
        for f in chain.iter().rev() {
            notice.details.push(format!("failed: {}", describe(f)));
        }
        let mut avoided: Vec<&str> = Vec::new();
        for n in chain.iter().rev().filter_map(|f| f.node.as_deref()) {
            if a.node.as_deref() != Some(n) && !avoided.contains(&n) {
                avoided.push(n);
            }
        }
        notice.details.push(match (a.in_place, a.job_id) {
            (1.., Some(job)) => format!(
                "the wrapper restarted it in place as attempt {} (--restart-in-place): same job {job}, no new queue wait",
                a.attempt
            ),
            _ => format!(
                "Shepherd resubmitted it as attempt {}{}",
                a.attempt,
                if avoided.is_empty() {
                    String::new()
                } else {
                    format!(", away from {}", avoided.join(", "))
                }
            ),
        });
        return Some(notice);
    }
    if a.restarts > 0 {
        notice.summary = format!(
            "run {run} recovered: Slurm requeued job {} (restart {}) and it runs again{place}",
            a.job_id.map_or("?".into(), |j| j.to_string()),
            a.restarts
        );
        notice.details.push(
            "the job's node failed or it was preempted; Slurm requeued it under the same job id"
                .into(),
        );
        return Some(notice);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::state::{AttemptEnd, AttemptPhase, Blame};
    use crate::slurm::JobId;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn spec() -> RunSpec {
        RunSpec::with_defaults("train".parse().unwrap(), Path::new("/w"), t(0))
    }

    fn ended(n: u32, class: FailureClass, node: &str, at: i64) -> Attempt {
        let mut a = Attempt::new(n, t(at - 10));
        a.phase = AttemptPhase::Ended;
        a.job_id = Some(JobId(u64::from(n) + 100));
        a.node = Some(node.into());
        a.running_since = Some(t(at - 5));
        a.ended_at = Some(t(at));
        a.end = Some(AttemptEnd {
            class,
            blame: if class == FailureClass::NodeFault {
                Blame::Node
            } else {
                Blame::Workload
            },
            slurm_state: None,
            exit: None,
            detail: format!("{class:?} happened"),
            signature: None,
            fingerprint: None,
            probes: Vec::new(),
        });
        a
    }

    fn running(n: u32, node: &str, since: Option<i64>) -> Attempt {
        let mut a = Attempt::new(n, t(0));
        a.phase = if since.is_some() {
            AttemptPhase::Running
        } else {
            AttemptPhase::Pending
        };
        a.node = Some(node.into());
        a.partition = Some("a100".into());
        a.running_since = since.map(t);
        a
    }

    fn state(status: RunStatus, attempts: Vec<Attempt>) -> RunState {
        let mut s = RunState::new(t(0));
        s.status = status;
        s.attempts = attempts;
        s
    }

    fn kinds(n: &[Notice]) -> Vec<NoticeKind> {
        n.iter().map(|n| n.kind).collect()
    }

    #[test]
    fn two_failures_then_running_is_one_recovery_with_the_down_time() {
        let f1 = ended(1, FailureClass::NodeFault, "gpu-1", 100);
        let f2 = ended(2, FailureClass::WorkloadFailure, "gpu-2", 200);
        // Attempt 3 pending: nothing yet (a retry is not an incident).
        let before = state(
            RunStatus::Pending,
            vec![f1.clone(), f2.clone(), running(3, "gpu-3", None)],
        );
        let mid = state(
            RunStatus::Pending,
            vec![f1.clone(), f2.clone(), running(3, "gpu-3", None)],
        );
        assert!(for_run(&spec(), &before, &mid, t(250)).is_empty());
        let after = state(
            RunStatus::Running,
            vec![f1, f2, running(3, "gpu-3", Some(400))],
        );
        let n = for_run(&spec(), &mid, &after, t(401));
        assert_eq!(kinds(&n), [NoticeKind::RunRecovered]);
        assert_eq!(n[0].down_secs, Some(300), "from the first failure's end");
        assert_eq!(n[0].id, "train.3.r0.recovered");
        assert!(
            n[0].summary
                .contains("attempt 3 running on gpu-3 (a100) after 5m down"),
            "{}",
            n[0].summary
        );
        assert_eq!(n[0].details.len(), 3, "{:?}", n[0].details);
        assert!(
            n[0].details[2].contains("away from gpu-1"),
            "{:?}",
            n[0].details
        );
        // The next step, still running: nothing again.
        assert!(for_run(&spec(), &after, &after, t(500)).is_empty());
    }

    #[test]
    fn a_restart_in_place_is_a_recovery_in_the_same_job() {
        let crashed = ended(1, FailureClass::WorkloadFailure, "gpu-1", 100);
        let mut again = running(2, "gpu-1", Some(100));
        again.job_id = crashed.job_id;
        again.in_place = 1;
        again.in_job_of = Some(1);
        let before = state(RunStatus::Running, vec![crashed.clone()]);
        let after = state(RunStatus::Running, vec![crashed, again]);
        let n = for_run(&spec(), &before, &after, t(101));
        assert_eq!(kinds(&n), [NoticeKind::RunRecovered]);
        let said = n[0].details.last().unwrap();
        assert!(said.contains("restarted it in place"), "{said}");
        assert!(said.contains("same job 101"), "{said}");
        assert!(!said.contains("resubmitted"), "{said}");
    }

    #[test]
    fn a_first_attempt_running_or_a_planned_continuation_is_no_recovery() {
        let before = state(RunStatus::Pending, vec![running(1, "n", None)]);
        let after = state(RunStatus::Running, vec![running(1, "n", Some(10))]);
        assert!(for_run(&spec(), &before, &after, t(11)).is_empty());
        // Indefinite mode: the previous attempt succeeded; a time limit
        // continuation is planned too.
        for class in [
            FailureClass::Success,
            FailureClass::TimeLimit,
            FailureClass::CancelledByShepherd,
        ] {
            let prev = ended(1, class, "n", 50);
            let before = state(
                RunStatus::Pending,
                vec![prev.clone(), running(2, "m", None)],
            );
            let after = state(RunStatus::Running, vec![prev, running(2, "m", Some(60))]);
            assert!(
                for_run(&spec(), &before, &after, t(61)).is_empty(),
                "{class:?}"
            );
        }
    }

    #[test]
    fn a_slurm_requeue_that_runs_again_is_a_recovery() {
        let mut a = running(1, "gpu-2", None);
        a.restarts = 1;
        let before = state(RunStatus::Pending, vec![a.clone()]);
        a.running_since = Some(t(90));
        a.job_id = Some(JobId(7));
        let after = state(RunStatus::Running, vec![a]);
        let n = for_run(&spec(), &before, &after, t(91));
        assert_eq!(kinds(&n), [NoticeKind::RunRecovered]);
        assert_eq!(n[0].id, "train.1.r1.recovered");
        assert!(
            n[0].summary.contains("requeued job 7 (restart 1)"),
            "{}",
            n[0].summary
        );
    }

    #[test]
    fn completion_and_final_failure_are_one_notice_each() {
        let f1 = ended(1, FailureClass::WorkloadFailure, "n", 100);
        let ok = ended(2, FailureClass::Success, "m", 200);
        let before = state(
            RunStatus::Running,
            vec![f1.clone(), running(2, "m", Some(150))],
        );
        let after = state(RunStatus::Completed, vec![f1.clone(), ok]);
        let n = for_run(&spec(), &before, &after, t(200));
        assert_eq!(kinds(&n), [NoticeKind::RunCompleted]);
        assert!(
            n[0].summary.contains("after 2 attempts"),
            "{}",
            n[0].summary
        );
        assert_eq!(n[0].details, ["Shepherd recovered it from 1 failure(s)"]);
        assert!(for_run(&spec(), &after, &after, t(300)).is_empty());

        let f2 = ended(2, FailureClass::WorkloadFailure, "m", 200);
        let before = state(
            RunStatus::Running,
            vec![f1.clone(), running(2, "m", Some(150))],
        );
        let mut after = state(RunStatus::Failed, vec![f1, f2]);
        after.reason = "2 failures, more than --max-retries 1".into();
        let n = for_run(&spec(), &before, &after, t(200));
        assert_eq!(kinds(&n), [NoticeKind::RunFailed]);
        assert_eq!(n[0].id, "train.2.failed");
        assert!(
            n[0].summary.ends_with("more than --max-retries 1"),
            "{}",
            n[0].summary
        );
        assert!(
            n[0].details[0].starts_with("last attempt 2 on m: "),
            "{:?}",
            n[0].details
        );
    }

    #[test]
    fn event_names_round_trip() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::from_short(k.short()), Some(k));
        }
        assert_eq!(NoticeKind::from_short("nope"), None);
    }

    #[test]
    fn nowhere_to_run_is_one_notice_per_attempt() {
        use super::super::state::Waiting;
        let mut waiting = running(2, "gpu-1", None);
        waiting.phase = AttemptPhase::Submitting;
        waiting.node = None;
        let before = state(RunStatus::Submitting, vec![waiting.clone()]);
        waiting.waiting = Some(Waiting {
            since: t(10),
            blockers: vec!["gpu-1".into(), "gpu-2".into()],
            until: Some(t(3600)),
            tried_at: t(10),
        });
        let mut after = state(RunStatus::Queued, vec![waiting.clone()]);
        after.reason = "waiting: nowhere to run: gpu-1 (banned …), gpu-2 (banned …)".into();
        let n = for_run(&spec(), &before, &after, t(10));
        assert_eq!(kinds(&n), [NoticeKind::RunWaiting]);
        assert_eq!(n[0].id, "train.2.waiting");
        assert_eq!(n[0].nodes, ["gpu-1", "gpu-2"]);
        assert!(
            n[0].details[0].contains("nowhere to run"),
            "{:?}",
            n[0].details
        );
        // Still waiting (refused again after a change): nothing new.
        let mut later = after.clone();
        later.attempts[0].waiting.as_mut().unwrap().tried_at = t(700);
        assert!(for_run(&spec(), &after, &later, t(700)).is_empty());
    }
}
