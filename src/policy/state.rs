//! A run's state as the daemon keeps it (`state.json`), and the vocabulary of
//! outcomes. Only the daemon writes it; everyone else reads.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::slurm::{ExitStatus, JobId};

pub const STATE_VERSION: u32 = 1;

/// Where a run stands, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting to submit its next attempt (first submission, or backoff).
    Queued,
    /// An attempt was handed to sbatch; its job id is not confirmed yet.
    Submitting,
    /// The attempt's job waits in Slurm's queue.
    Pending,
    /// The attempt's job runs.
    Running,
    /// Paused by the user: the current job (if any) goes on, nothing new is
    /// submitted.
    Paused,
    /// Stop requested; waiting for Slurm to end the job.
    Stopping,
    /// Keep-alive elapsed; waiting for Slurm to end the job.
    Expiring,
    /// The workload succeeded (run_once).
    Completed,
    /// Retries exhausted or unrecoverable.
    Failed,
    /// Stopped by the user.
    Stopped,
    /// An `indefinite` run reached its keep-alive.
    Expired,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Stopped | RunStatus::Expired
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Submitting => "submitting",
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Stopping => "stopping",
            RunStatus::Expiring => "expiring",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
            RunStatus::Expired => "expired",
        }
    }
}

/// Why an attempt ended. Each class has its own handling (docs/failures.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The workload exited 0.
    Success,
    /// The node failed the job: NODE_FAIL, a failed GPU probe, boot failure.
    NodeFault,
    /// The workload exited non-zero (or was killed) on a healthy node.
    WorkloadFailure,
    /// The workload ran out of memory.
    OutOfMemory,
    /// Preempted by a higher-priority partition.
    Preempted,
    /// The job reached its time limit.
    TimeLimit,
    /// The heartbeat (blame: node) or the progress (blame: workload) stopped;
    /// Shepherd cancelled the job.
    Hang,
    /// Cancelled by someone outside Shepherd (`scancel`).
    CancelledExternally,
    /// Cancelled by Shepherd on the user's request (stop, restart, keep-alive).
    CancelledByShepherd,
    /// sbatch refused the submission.
    Rejected,
    /// The job ended and Slurm kept no record of how.
    Unknown,
    /// The job never reached a node: Slurm kept a record of it (a refused
    /// submission's `FAILED`/`BadConstraints`, a pending job ended by Slurm)
    /// with no node. Nothing ran, so nothing is charged.
    NeverStarted,
}

/// Who is to blame for an attempt's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    Node,
    Workload,
    None,
}

/// How an attempt ended, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptEnd {
    pub class: FailureClass,
    pub blame: Blame,
    /// Slurm's final state (`FAILED`, `NODE_FAIL`, …) when known.
    pub slurm_state: Option<String>,
    pub exit: Option<ExitStatus>,
    /// One sentence for people: what happened.
    pub detail: String,
    /// The known fault signature in the job's output that decided, if any.
    #[serde(default)]
    pub signature: Option<SignatureNote>,
    /// What a workload failure looked like, to recognise the same failure
    /// on other attempts ([`super::verdicts`]). Absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// The GPU probes the wrapper ran, with what each concluded (absent in
    /// states written before probes were recorded here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeNote>,
}

/// A workload failure with the accidents taken out (numbers, addresses,
/// times, the node's name), so that the same bug on two nodes compares equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `exit 1` or `signal 11`.
    pub exit: String,
    /// The last lines of the workload's stderr, normalised.
    pub lines: Vec<String>,
    /// Roughly how long after the workload started it failed (`<10s`,
    /// `10s-1m`, `1m-10m`, `10m-1h`, `1h-6h`, `>6h`).
    pub after: String,
}

/// Why an unconfirmed attempt waits instead of being submitted: Slurm
/// refused it because every node it may use is excluded (banned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub since: Timestamp,
    /// What kept the job from every node, sorted: the `--exclude` list
    /// (banned nodes) and `down:NODE` for each node Slurm cannot use. When
    /// the daemon sees a different list (a ban expired, was lifted or added,
    /// a node came back), it tries again.
    pub blockers: Vec<String>,
    /// When the first of those bans expires (`None`: none expires by itself).
    pub until: Option<Timestamp>,
    /// When the daemon last tried.
    pub tried_at: Timestamp,
}

/// One GPU probe of an attempt, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeNote {
    pub name: String,
    pub status: crate::records::ProbeStatus,
    pub detail: String,
}

/// A fault signature found in an attempt's output ([`super::signatures`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureNote {
    pub id: String,
    pub action: super::signatures::SignatureAction,
    /// The line that matched.
    pub line: String,
}

/// Why Shepherd cancelled a job, so its end is classified correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Stop,
    Restart,
    /// The wrapper stopped writing heartbeats: it or its node is stuck.
    HeartbeatLost,
    /// The wrapper is alive but the workload reports no progress and writes
    /// no output.
    ProgressStalled,
    KeepAlive,
    /// The wrapper restarted the workload in place after a failure the
    /// daemon judges otherwise (a node signature of the user's, the same
    /// failure on two nodes, no retries left): the job is cancelled, and the
    /// failed run decides what follows.
    InPlaceRefused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptPhase {
    /// The intent to submit is recorded; sbatch's answer is not.
    Submitting,
    Pending,
    Running,
    Ended,
}

/// One submission of the run: one Slurm job id (which Slurm itself may requeue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub phase: AttemptPhase,
    pub job_id: Option<JobId>,
    /// When the intent to submit was recorded (login-node clock).
    pub submitted_at: Timestamp,
    /// When the daemon first saw the job running.
    pub running_since: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub partition: Option<String>,
    pub node: Option<String>,
    /// Slurm's restart count of the job id, as last seen.
    pub restarts: u32,
    /// Slurm's pending reason, as last seen.
    pub pending_reason: Option<String>,
    /// When the daemon first saw this job instance pending, and when it last
    /// looked for a better partition for it.
    #[serde(default)]
    pub pending_since: Option<Timestamp>,
    #[serde(default)]
    pub reconsidered_at: Option<Timestamp>,
    /// Last heartbeat sequence number seen, and when (login-node clock) it
    /// last changed: staleness is judged on one clock only.
    pub heartbeat_seq: Option<u64>,
    pub heartbeat_changed_at: Option<Timestamp>,
    /// Last progress/output signature seen, and when it last changed.
    pub progress_mark: Option<String>,
    pub progress_changed_at: Option<Timestamp>,
    pub cancel: Option<CancelReason>,
    pub end: Option<AttemptEnd>,
    /// The restart (Slurm's requeue count) whose `BeginTime` hold the daemon
    /// asked Slurm to lift (`StartTime=now`): asked once per requeue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hurried: Option<u32>,
    /// Set while the attempt waits for somewhere to run (its submission was
    /// refused because every usable node is banned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Which run of the workload within the job instance this attempt is:
    /// 0 for the first, k for the k-th restart in place
    /// ([`crate::records::Outcome::in_place`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_place: u32,
    /// For a restart in place: the attempt whose job it continues, whose
    /// directory holds its files (`None`: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_job_of: Option<u32>,
    /// A restart in place the daemon refused (cancel `InPlaceRefused`): how
    /// the run before it ended, and the warning flag of its outcome. Kept
    /// here because that run's file may no longer be read when the job
    /// ends (a requeue between, a new instance's files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// See [`Attempt::refused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub end: AttemptEnd,
    /// The refused run's node, from its outcome.
    pub node: String,
    /// Which run it was: Slurm's restart count, run in the job.
    pub restarts: u32,
    pub in_place: u32,
    pub warned: bool,
}

impl Attempt {
    /// The attempt directory holding this attempt's files: its own, or for a
    /// restart in place that of the attempt whose job it continues.
    pub fn dir_attempt(&self) -> u32 {
        self.in_job_of.unwrap_or(self.attempt)
    }

    pub fn new(attempt: u32, now: Timestamp) -> Attempt {
        Attempt {
            attempt,
            phase: AttemptPhase::Submitting,
            job_id: None,
            submitted_at: now,
            running_since: None,
            ended_at: None,
            partition: None,
            node: None,
            restarts: 0,
            pending_reason: None,
            pending_since: None,
            reconsidered_at: None,
            heartbeat_seq: None,
            heartbeat_changed_at: None,
            progress_mark: None,
            progress_changed_at: None,
            cancel: None,
            end: None,
            hurried: None,
            waiting: None,
            in_place: 0,
            in_job_of: None,
            refused: None,
        }
    }

    pub fn is_live(&self) -> bool {
        self.phase != AttemptPhase::Ended
    }
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub status: RunStatus,
    /// Why the run is where it is, for people (`status`, `list`).
    pub reason: String,
    pub attempts: Vec<Attempt>,
    /// Failures charged to the workload (against `max_retries`).
    pub workload_failures: u32,
    pub paused: bool,
    /// No submission before this time (backoff).
    pub not_before: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Attempts up to this number are no evidence for the run's verdicts
    /// (`restart` asked for a fresh start).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evidence_after: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RunState {
    pub fn new(now: Timestamp) -> RunState {
        RunState {
            version: STATE_VERSION,
            status: RunStatus::Queued,
            reason: "waiting for the daemon to submit the first attempt".to_string(),
            attempts: Vec::new(),
            workload_failures: 0,
            paused: false,
            not_before: None,
            updated_at: now,
            evidence_after: 0,
        }
    }

    /// The newest attempt while it is live.
    pub fn live_attempt(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.is_live())
    }

    pub fn live_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut().filter(|a| a.is_live())
    }
}
