//! The data Shepherd reads from and sends to Slurm, independent of how it was obtained.
//!
//! These types are what the policy sees. They carry Slurm's own words (state names,
//! reasons) where Shepherd must not lose information, and typed values where it
//! decides on them.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A Slurm job id. Shepherd never submits array jobs, so the id is a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = String;

    /// Accepts `123`, and `123;cluster` as printed by `sbatch --parsable` on a
    /// multi-cluster setup.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let digits = s.split(';').next().unwrap_or(s);
        digits
            .parse::<u64>()
            .map(JobId)
            .map_err(|_| format!("not a Slurm job id: {s:?}"))
    }
}

/// A job's state as Slurm names it (`JOB_STATE_*` without the prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Configuring,
    Running,
    Suspended,
    Completing,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    NodeFail,
    Preempted,
    OutOfMemory,
    BootFail,
    Deadline,
    /// Requeued by Slurm; the same job id goes back to pending.
    Requeued,
    RequeueHold,
    RequeueFed,
    SpecialExit,
    Resizing,
    Revoked,
    Signaling,
    StageOut,
    Stopped,
    ResvDelHold,
    /// A state this version of Shepherd does not know; kept verbatim.
    Other(String),
}

impl JobState {
    /// Parses the long state name from `squeue %T`, `scontrol` `JobState=` or
    /// `sacct` `State`. Accepts sacct's `CANCELLED by 1000` and lower case.
    pub fn parse(s: &str) -> JobState {
        let word = s.split_whitespace().next().unwrap_or("");
        match word.to_ascii_uppercase().as_str() {
            "PENDING" | "PD" => JobState::Pending,
            "CONFIGURING" | "CF" => JobState::Configuring,
            "RUNNING" | "R" => JobState::Running,
            "SUSPENDED" | "S" => JobState::Suspended,
            "COMPLETING" | "CG" => JobState::Completing,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            "REQUEUED" | "RQ" => JobState::Requeued,
            "REQUEUE_HOLD" | "RH" => JobState::RequeueHold,
            "REQUEUE_FED" | "RF" => JobState::RequeueFed,
            "SPECIAL_EXIT" | "SE" => JobState::SpecialExit,
            "RESIZING" | "RS" => JobState::Resizing,
            "REVOKED" | "RV" => JobState::Revoked,
            "SIGNALING" | "SI" => JobState::Signaling,
            "STAGE_OUT" | "SO" => JobState::StageOut,
            "STOPPED" | "ST" => JobState::Stopped,
            "RESV_DEL_HOLD" => JobState::ResvDelHold,
            _ => JobState::Other(s.trim().to_string()),
        }
    }

    /// True when the job will not run again under this job id by itself.
    ///
    /// `Requeued` is not terminal: Slurm puts the same id back to pending.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Cancelled
                | JobState::Timeout
                | JobState::NodeFail
                | JobState::Preempted
                | JobState::OutOfMemory
                | JobState::BootFail
                | JobState::Deadline
                | JobState::SpecialExit
                | JobState::Revoked
        )
    }

    /// True while the job waits to be scheduled (or rescheduled).
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            JobState::Pending
                | JobState::Requeued
                | JobState::RequeueHold
                | JobState::RequeueFed
                | JobState::ResvDelHold
        )
    }

    /// True while the job holds nodes.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            JobState::Configuring
                | JobState::Running
                | JobState::Suspended
                | JobState::Completing
                | JobState::Signaling
                | JobState::StageOut
                | JobState::Stopped
                | JobState::Resizing
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            JobState::Pending => "PENDING",
            JobState::Configuring => "CONFIGURING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Preempted => "PREEMPTED",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::Requeued => "REQUEUED",
            JobState::RequeueHold => "REQUEUE_HOLD",
            JobState::RequeueFed => "REQUEUE_FED",
            JobState::SpecialExit => "SPECIAL_EXIT",
            JobState::Resizing => "RESIZING",
            JobState::Revoked => "REVOKED",
            JobState::Signaling => "SIGNALING",
            JobState::StageOut => "STAGE_OUT",
            JobState::Stopped => "STOPPED",
            JobState::ResvDelHold => "RESV_DEL_HOLD",
            JobState::Other(s) => s,
        };
        f.write_str(s)
    }
}

/// Slurm's `ExitCode=code:signal`: the exit status of the batch script, and the
/// signal that ended it (0 when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
}

impl FromStr for ExitStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (code, signal) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("not an exit code: {s:?}"))?;
        let parse = |v: &str| {
            v.parse::<i32>()
                .map_err(|_| format!("not an exit code: {s:?}"))
        };
        Ok(ExitStatus {
            code: parse(code)?,
            signal: parse(signal)?,
        })
    }
}

/// One job as seen by the controller (`squeue`) or by accounting (`sacct`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    /// Slurm's reason, verbatim (`None`, `Resources`, `PartitionDown`,
    /// `Nodes required for job are DOWN, …`). Empty when Slurm gave none.
    pub reason: String,
    /// The partition the job runs or waits in. While pending on several
    /// partitions, Slurm lists them all, comma-separated.
    pub partition: String,
    /// Nodes allocated to the job (expanded from Slurm's host list).
    pub nodes: Vec<String>,
    /// How many times Slurm requeued this job id.
    pub restarts: u32,
    /// Present once the job has ended.
    pub exit: Option<ExitStatus>,
    pub submit_time: Option<Timestamp>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
}

/// Where a job record came from, so callers know how fresh and complete it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountingSource {
    /// `sacct` backed by slurmdbd: complete history.
    Slurmdbd,
    /// `sacct -c`: the job completion file; one record per end of a job id,
    /// including each requeue.
    JobComp,
    /// `scontrol show job`: only while the controller keeps the job (MinJobAge).
    Controller,
}

/// A job's final record from accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub state: JobState,
    pub exit: Option<ExitStatus>,
    pub nodes: Vec<String>,
    pub partition: String,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub source: AccountingSource,
}

/// A node's state: the base state plus flags, e.g. `IDLE+DRAIN` or `DOWN*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// `IDLE`, `MIXED`, `ALLOCATED`, `DOWN`, `FUTURE`, `UNKNOWN`, …
    pub base: String,
    /// `DRAIN`, `NOT_RESPONDING`, `COMPLETING`, `MAINTENANCE`, `REBOOT_REQUESTED`, …
    pub flags: Vec<String>,
}

impl NodeState {
    /// Parses `scontrol`'s `State=IDLE+DRAIN` or `sinfo`'s `idle*` / `drained`.
    pub fn parse(s: &str) -> NodeState {
        let s = s.trim();
        let (s, not_responding) = match s.strip_suffix('*') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let mut parts = s.split('+').map(|p| p.trim().to_ascii_uppercase());
        let base = parts.next().unwrap_or_default();
        let mut flags: Vec<String> = parts.filter(|p| !p.is_empty()).collect();
        if not_responding && !flags.iter().any(|f| f == "NOT_RESPONDING") {
            flags.push("NOT_RESPONDING".to_string());
        }
        NodeState { base, flags }
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when new jobs may be scheduled on the node.
    pub fn is_usable(&self) -> bool {
        let base_ok = matches!(
            self.base.as_str(),
            "IDLE" | "MIXED" | "ALLOCATED" | "COMPLETING"
        );
        let blocked = self.flags.iter().any(|f| {
            matches!(
                f.as_str(),
                "DRAIN"
                    | "DRAINING"
                    | "DRAINED"
                    | "NOT_RESPONDING"
                    | "FAIL"
                    | "MAINTENANCE"
                    | "REBOOT_REQUESTED"
                    | "REBOOT_ISSUED"
                    | "POWERED_DOWN"
                    | "POWERING_DOWN"
                    | "POWER_DOWN"
                    | "RESERVED"
                    | "INVALID_REG"
            )
        });
        base_ok && !blocked
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        for flag in &self.flags {
            write!(f, "+{flag}")?;
        }
        Ok(())
    }
}

/// One kind of generic resource on a node, e.g. `gpu:a100:4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gres {
    /// `gpu`, `shard`, `mps`, …
    pub name: String,
    /// The GRES type (`a100`), when the cluster names one.
    pub kind: Option<String>,
    pub count: u32,
}

/// A node as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub state: NodeState,
    /// Why the node is down or drained, as the admin or Slurm wrote it.
    pub reason: Option<String>,
    pub partitions: Vec<String>,
    pub features: Vec<String>,
    pub gres: Vec<Gres>,
    /// GPUs in use right now on this node (from `GresUsed`).
    pub gpus_used: u32,
    pub cpus: u32,
    pub cpus_alloc: u32,
    /// Configured memory in MB.
    pub memory_mb: u64,
    pub memory_alloc_mb: u64,
}

impl NodeInfo {
    /// Total GPUs on the node, over all GPU types.
    pub fn gpus_total(&self) -> u32 {
        self.gres
            .iter()
            .filter(|g| g.name == "gpu")
            .map(|g| g.count)
            .sum()
    }

    /// GPU types on the node (`a100`), in the order Slurm lists them.
    pub fn gpu_types(&self) -> Vec<&str> {
        self.gres
            .iter()
            .filter(|g| g.name == "gpu")
            .filter_map(|g| g.kind.as_deref())
            .collect()
    }

    pub fn gpus_free(&self) -> u32 {
        self.gpus_total().saturating_sub(self.gpus_used)
    }
}

/// A partition as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `INACTIVE`.
    pub state: String,
    pub is_default: bool,
    pub nodes: Vec<String>,
    /// `None` for UNLIMITED.
    pub max_time_minutes: Option<u64>,
    pub priority_tier: u32,
    /// `OFF`, `CANCEL`, `REQUEUE`, `SUSPEND`, `GANG`, combined with `,`.
    pub preempt_mode: String,
    pub total_cpus: u32,
    pub total_nodes: u32,
}

impl PartitionInfo {
    pub fn is_up(&self) -> bool {
        self.state.eq_ignore_ascii_case("UP")
    }
}

/// A switch of the network topology (`scontrol show topology`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub name: String,
    pub level: u32,
    /// Nodes attached directly (leaf switches).
    pub nodes: Vec<String>,
    /// Child switches (upper levels).
    pub switches: Vec<String>,
}

/// `sbatch --test-only`'s answer: when and where the job would start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartEstimate {
    pub start: Timestamp,
    pub nodes: Vec<String>,
    pub partition: String,
    pub processors: u32,
}

/// What a submission looks like to the adapter: the script and sbatch arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    pub script: ScriptSource,
    /// Arguments for `sbatch` before the script, e.g. `--partition=a100`.
    pub args: Vec<String>,
    /// The environment sbatch runs in (and so the job's, with sbatch's default
    /// `--export=ALL`); `None` inherits Shepherd's own.
    pub env: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSource {
    /// A script file on the shared filesystem, passed to sbatch by path.
    File(std::path::PathBuf),
    /// Script text, given to sbatch on standard input.
    Text(String),
}

/// The controller's identity and the settings Shepherd depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub version: String,
    /// `accounting_storage/slurmdbd` or `accounting_storage/none`.
    pub accounting_storage: String,
    /// `jobcomp/filetxt`, `jobcomp/none`, …
    pub job_comp: String,
    /// Seconds the controller keeps a finished job (`MinJobAge`).
    pub min_job_age_secs: u64,
    pub topology_plugin: String,
}
