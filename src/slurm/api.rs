//! The one narrow interface through which Shepherd talks to Slurm.
//!
//! Everything above this trait (daemon, policy, CLI, TUI) works with any
//! implementation: the real one that runs Slurm's commands, or an in-memory one
//! for fast tests of the policy. Every query is batched: one call covers all of
//! Shepherd's jobs, so the load on the controller does not grow with the number
//! of runs.

use super::error::SlurmError;
use super::types::{
    ClusterInfo, JobId, JobInfo, JobRecord, NodeInfo, PartitionInfo, StartEstimate, SubmitRequest,
    Switch,
};

/// A change to a job that has not started yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingUpdate {
    /// Replace the job's exclude list (`ExcNodeList=`).
    pub exclude: Option<Vec<String>>,
    /// Move the job to these partitions (`Partition=`).
    pub partition: Option<String>,
    /// Lift a `BeginTime` hold (`StartTime=now`): after a requeue, Slurm
    /// holds the job until the old credential expired.
    pub start_now: bool,
}

pub trait Slurm: Send + Sync {
    /// The cluster's name and the settings Shepherd depends on.
    fn cluster(&self) -> Result<ClusterInfo, SlurmError>;

    /// Submits a batch job. A refusal is [`SlurmError::Rejected`] with its kind.
    fn submit(&self, request: &SubmitRequest) -> Result<JobId, SlurmError>;

    /// Asks when and where the request would start, without submitting it.
    fn estimate_start(&self, request: &SubmitRequest) -> Result<StartEstimate, SlurmError>;

    /// The controller's view of the given jobs, pending, running and recently
    /// finished (within `MinJobAge`), in one call. Ids the controller no longer
    /// knows are absent from the answer; that is not an error.
    fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobInfo>, SlurmError>;

    /// The user's own jobs with any of these names, pending, running or
    /// recently ended, in one call: how a job whose submission was never
    /// confirmed is found again.
    fn jobs_by_name(&self, names: &[String]) -> Result<Vec<JobInfo>, SlurmError>;

    /// Records of ended runs from accounting: slurmdbd when the cluster has it,
    /// the job completion file otherwise, the controller as a last resort. A
    /// requeued job id has a `REQUEUED` record per requeue, oldest first. A job
    /// cancelled while Slurm was requeueing it gets no final record at all: its
    /// last record stays `REQUEUED`.
    /// slurmdbd lags the controller by a fraction of a second and may fill
    /// some fields (the partition) of a fresh record a moment later.
    fn accounting(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, SlurmError>;

    /// Cancels jobs. Unknown or finished ids are ignored, as `scancel` does.
    fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError>;

    /// Puts a running job back to pending under the same id.
    fn requeue(&self, id: JobId) -> Result<(), SlurmError>;

    /// Changes a pending job in place. A job that has started gives
    /// [`Rejection::JobNotPending`](super::error::Rejection::JobNotPending).
    fn update_pending(&self, id: JobId, update: &PendingUpdate) -> Result<(), SlurmError>;

    /// Every node with its state, reason, partitions, GPUs and GPUs in use.
    fn nodes(&self) -> Result<Vec<NodeInfo>, SlurmError>;

    /// Every partition.
    fn partitions(&self) -> Result<Vec<PartitionInfo>, SlurmError>;

    /// The switch tree; empty when the cluster has no topology plugin.
    fn topology(&self) -> Result<Vec<Switch>, SlurmError>;
}
