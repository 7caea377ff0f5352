//! Records exchanged through the state directory between the wrapper (inside
//! the job) and the daemon (on the login node).
//!
//! Each carries `version`; readers accept versions up to their own
//! `*_VERSION` constant and refuse newer ones with a clear error.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub mod lease;

use crate::model::RunId;
use crate::slurm::JobId;

// The wrapper's exit codes: how a job's exit status reads (in Slurm's
// accounting too) when its outcome file never arrived. A contract between
// the two halves, like the records below.

/// The `visibility` GPU probe (or one this version does not name) failed:
/// the node is to blame; the workload did not run.
pub const EXIT_PROBE_FAILED: i32 = 97;
/// The `health` probe failed (ECC errors, pages pending retirement, rows
/// pending remapping).
pub const EXIT_PROBE_HEALTH: i32 = 94;
/// The `processes` probe failed (another job's process on our GPUs).
pub const EXIT_PROBE_PROCESSES: i32 = 95;
/// The `cuda` probe failed (a kernel launch did not work).
pub const EXIT_PROBE_CUDA: i32 = 96;
/// Every exit code that means "a GPU probe failed".
pub const EXIT_PROBE_CODES: [i32; 4] = [
    EXIT_PROBE_HEALTH,
    EXIT_PROBE_PROCESSES,
    EXIT_PROBE_CUDA,
    EXIT_PROBE_FAILED,
];

/// The exit code of a failed probe: each has its own, so even Slurm's
/// accounting tells which probe a node failed.
pub fn probe_exit_code(probe: &str) -> i32 {
    match probe {
        "health" => EXIT_PROBE_HEALTH,
        "processes" => EXIT_PROBE_PROCESSES,
        "cuda" => EXIT_PROBE_CUDA,
        _ => EXIT_PROBE_FAILED,
    }
}
/// The run directory, its spec or its script is unusable, or the wrapper runs
/// outside a Slurm job; the workload did not run.
pub const EXIT_SETUP_FAILED: i32 = 98;
/// The workload could not be started: the kernel refused to execute the
/// script (missing interpreter, CRLF shebang, no shebang, not executable).
/// The submission's fault, not the node's.
pub const EXIT_LAUNCH_FAILED: i32 = 93;
/// A bug in the wrapper.
pub const EXIT_INTERNAL: i32 = 99;

pub const HEARTBEAT_VERSION: u32 = 1;
pub const PROGRESS_VERSION: u32 = 1;
pub const OUTCOME_VERSION: u32 = 1;

/// Where the wrapper is in its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking the GPUs before the workload starts.
    Probing,
    /// The workload runs.
    Running,
    /// The workload got SIGTERM (or the warning signal) and may be checkpointing.
    Stopping,
}

/// Written atomically by the wrapper every heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u32,
    pub run_id: RunId,
    pub attempt: u32,
    pub job_id: JobId,
    /// Slurm's restart count of this job id (`SLURM_RESTART_COUNT`, 0 if unset).
    pub restarts: u32,
    pub node: String,
    /// The wrapper's pid on the node.
    pub pid: u32,
    pub phase: Phase,
    /// When the wrapper started (compute node clock).
    pub started_at: Timestamp,
    /// When this heartbeat was written (compute node clock).
    pub time: Timestamp,
    /// Increments with every heartbeat, so a reader can tell a fresh write from
    /// a stale file even when the two clocks disagree.
    pub seq: u64,
    /// Bytes written so far to the attempt's stdout and stderr files, when known.
    pub output_bytes: Option<u64>,
    /// The GPU probes' results once probing is over, so that `status` shows
    /// an inconclusive probe while the workload runs (absent before, and in
    /// heartbeats of older wrappers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeResult>,
    /// Which run of the workload this is within the job instance: 0 for the
    /// first, k after the k-th restart in place (`--restart-in-place`). The
    /// outcomes of the earlier runs are written before this changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_place: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Written atomically by `shepherd progress` (or the workload itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub version: u32,
    pub step: Option<u64>,
    pub message: Option<String>,
    pub time: Timestamp,
}

/// What a probe found (docs/wrapper.md, "What each probe concludes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// The probe asked its question and the answer was good.
    Healthy,
    /// Positive evidence of a broken node: an error line naming a GPU
    /// failure, a GPU missing, an uncorrectable ECC count, …
    Faulty,
    /// The question could not be asked or the answer was not understood
    /// (tool missing, option refused, unknown layout, timeout without an
    /// error line). Recorded and shown, never held against the node.
    Inconclusive,
}

impl ProbeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Healthy => "healthy",
            ProbeStatus::Faulty => "faulty",
            ProbeStatus::Inconclusive => "inconclusive",
        }
    }
}

/// The result of one GPU probe.
///
/// `status` is new in this version of the record. Old records (written by an
/// older wrapper) have only `ok`: read as `healthy` or `faulty`. Old readers
/// of new records see `ok: true` for an inconclusive probe, which matches
/// what happened (the node was not judged, the workload ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ProbeResultOnDisk")]
pub struct ProbeResult {
    /// `visibility`, …
    pub name: String,
    /// Not faulty: the probe did not stop the attempt.
    pub ok: bool,
    pub status: ProbeStatus,
    /// What was seen, for the journal and `status`.
    pub detail: String,
    pub millis: u64,
}

impl ProbeResult {
    pub fn new(name: &str, status: ProbeStatus, detail: String, millis: u64) -> ProbeResult {
        ProbeResult {
            name: name.to_string(),
            ok: status != ProbeStatus::Faulty,
            status,
            detail,
            millis,
        }
    }

    pub fn is_faulty(&self) -> bool {
        self.status == ProbeStatus::Faulty
    }
}

/// [`ProbeResult`] as stored, `status` optional for records of older wrappers.
#[derive(Deserialize)]
struct ProbeResultOnDisk {
    name: String,
    ok: bool,
    #[serde(default)]
    status: Option<ProbeStatus>,
    detail: String,
    millis: u64,
}

impl From<ProbeResultOnDisk> for ProbeResult {
    fn from(d: ProbeResultOnDisk) -> ProbeResult {
        let status = d.status.unwrap_or(if d.ok {
            ProbeStatus::Healthy
        } else {
            ProbeStatus::Faulty
        });
        ProbeResult::new(&d.name, status, d.detail, d.millis)
    }
}

/// How the attempt ended, as the wrapper saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The workload exited by itself with this code.
    Exited { code: i32 },
    /// The workload was killed by a signal.
    Signaled { signal: i32 },
    /// A GPU probe failed: the node is to blame, the workload never ran.
    ProbeFailed { probe: String, detail: String },
    /// The wrapper could not use the run directory on the node (the spec
    /// or the script snapshot unreadable there): the node is to blame.
    SetupFailed { detail: String },
    /// The workload could not be started (the kernel refused to execute the
    /// script: missing interpreter, CRLF shebang, no execute permission, …):
    /// the submission is to blame. `detail` carries the OS's words.
    LaunchFailed { detail: String },
}

/// Written once by the wrapper when the attempt ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub version: u32,
    pub run_id: RunId,
    pub attempt: u32,
    pub job_id: JobId,
    pub restarts: u32,
    pub node: String,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub verdict: Verdict,
    pub probes: Vec<ProbeResult>,
    /// The wrapper received SIGTERM (cancel, preemption, time limit) before the
    /// workload ended.
    pub terminated: bool,
    /// The workload received the warning signal (`--signal-before`).
    pub warned: bool,
    /// The last lines of the workload's stderr (bounded).
    pub stderr_tail: String,
    /// The exit code the wrapper itself ended with (see docs/wrapper.md).
    /// For a run of the workload that was restarted in place, the code the
    /// wrapper would have ended with.
    pub exit_code: i32,
    /// Which run of the workload within the job instance ([`Heartbeat::in_place`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_place: u32,
    /// The wrapper restarted the workload in place after this run
    /// (`--restart-in-place`): the job goes on; the next run's outcome is
    /// the one with `in_place + 1`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted_in_place: bool,
}

pub const SPEC_VERSION: u32 = 1;

/// `spec.json`: the run's [`RunSpec`](crate::model::RunSpec) with its format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecFile {
    pub version: u32,
    pub spec: crate::model::RunSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_probe_results_read_as_healthy_or_faulty() {
        let old: ProbeResult =
            serde_json::from_str(r#"{"name":"health","ok":false,"detail":"ecc","millis":3}"#)
                .unwrap();
        assert_eq!(old.status, ProbeStatus::Faulty);
        let old: ProbeResult =
            serde_json::from_str(r#"{"name":"health","ok":true,"detail":"fine","millis":3}"#)
                .unwrap();
        assert_eq!(old.status, ProbeStatus::Healthy);
        let new = ProbeResult::new("health", ProbeStatus::Inconclusive, "refused".into(), 1);
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""ok":true"#), "{text}");
        assert!(text.contains(r#""status":"inconclusive""#), "{text}");
        assert_eq!(serde_json::from_str::<ProbeResult>(&text).unwrap(), new);
    }
}
