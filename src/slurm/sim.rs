//! `SimSlurm`: an in-memory Slurm for fast, deterministic tests of the policy
//! and the daemon, and for benchmarks with many runs.
//!
//! It implements [`Slurm`] the way the real adapter ([`SlurmCli`](super::SlurmCli))
//! behaves against Slurm 22.05 on the test cluster (`scripts/testcluster`,
//! docs/slurm-adapter.md): `jobs()` drops unknown ids, `cancel()` ignores them,
//! a requeue keeps the job id and raises `restarts`, a job cancelled while it
//! waits to rerun gets no final accounting record, accounting returns only
//! ended runs (a requeue after a node failure is logged `NODE_FAIL`, after a
//! preemption `PREEMPTED`, after `scontrol requeue` `REQUEUED`), ended jobs stay
//! in the controller for `MinJobAge`, rejections carry Slurm's own sentences
//! (so [`Rejection::classify`] agrees with their kind), and a submission
//! refused with `Requested node configuration is not available` still uses up
//! a job id and leaves a `FAILED` job (`BadConstraints`) in the controller.
//! Calls that make the adapter run no command (an empty id list) succeed
//! whatever the faults. Answers list jobs by id. It never replaces the tests
//! on a real cluster: it encodes what they showed.
//!
//! # Time and workload
//!
//! The sim owns a virtual clock. Nothing happens between calls: [`SimSlurm::advance`]
//! moves the clock, firing every event on the way in order (job ends, time
//! limits, requeued jobs becoming eligible, crashed nodes being noticed) and
//! running the scheduler after each; [`SimSlurm::step`] runs the scheduler
//! without moving the clock. Like Slurm, a fresh submission is `PENDING` with
//! no reason until the scheduler has looked at it.
//!
//! Scripts are never run, but their `#SBATCH` lines are read as sbatch does
//! (the command line wins). What a job does once it starts is scripted by
//! the test through a workload model ([`Behaviour`]): per node
//! ([`SimSlurm::behave_on_node`], to model a bad node), per job name
//! ([`SimSlurm::behave_named`]), or by a closure ([`SimSlurm::on_start`]);
//! jobs run forever otherwise. Faults are injected by the test: node failures
//! and crashes, drains, preemption, partition states, an unreachable or slow
//! controller, a lost `sbatch` reply.
//!
//! # What it does not model
//!
//! Multiple GPU types per node, memory allocation (the test cluster uses
//! `CR_Core`: `AllocMem` is always 0), fair-share or multifactor priority
//! (the queue is FIFO within a priority tier, and a job that cannot start
//! does not hold back smaller ones behind it: there are no reservations, so
//! a large job can starve), the `COMPLETING` state, the ~30 s period of
//! Slurm's time-limit checks (limits are exact), reservations, QOS and account
//! limits, job arrays, dependencies, `--begin`, holds, suspension, gang
//! scheduling, topology-aware placement, preemption for multi-node jobs,
//! sub-second timestamps (Slurm prints whole seconds; so does the sim), the
//! orphaned first instance of a job requeued off a crashed node, slurmdbd's
//! partly filled fresh records, sbatch options other than `-p`, `-J`, `-t`,
//! `--gres`, `-G`/`--gpus`, `--gpus-per-node`, `-N`, `-n`, `-c`, `--mem`,
//! `-x`, `-w`, `-C`, `--requeue` and `--no-requeue` (the others are kept in
//! [`SimJob::ignored_args`]). The cluster keeps running while the controller
//! is "unreachable": the fault is between Shepherd and Slurm, not a
//! controller crash.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

use super::api::{PendingUpdate, Slurm};
use super::error::{Rejection, SlurmError};
use super::hostlist;
use super::reasons::{PendingOutlook, classify_pending};
use super::types::{
    AccountingSource, ClusterInfo, ExitStatus, Gres, JobId, JobInfo, JobRecord, JobState, NodeInfo,
    NodeState, PartitionInfo, ScriptSource, StartEstimate, SubmitRequest, Switch,
};

/// The Slurm version the sim imitates.
pub const SIM_SLURM_VERSION: &str = "22.05.8";

const UNREACHABLE: &str = "Unable to contact slurm controller (connect failure)";
const ALL_NODES_DOWN: &str =
    "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions";
/// Exit status 0:0, which accounting also logs for cancelled, preempted,
/// timed-out and node-failed runs.
const EXIT_OK: ExitStatus = ExitStatus { code: 0, signal: 0 };
/// 0:15: what squeue shows for a job Slurm killed (cancel, preemption, time
/// limit).
const EXIT_TERM: ExitStatus = ExitStatus {
    code: 0,
    signal: 15,
};
/// What Slurm assumes for a job without a time limit when it estimates starts
/// (it prints absurd dates on a full cluster); also the sim's "never".
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

// ---------------------------------------------------------------------------
// Cluster description
// ---------------------------------------------------------------------------

/// A partition's `State=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Accepts and runs jobs.
    Up,
    /// Accepts jobs, which pend with reason `PartitionDown`; running jobs go on.
    Down,
    /// Refuses new jobs; jobs already queued still start.
    Drain,
    /// Refuses new jobs and starts none (`PartitionInactive`).
    Inactive,
}

impl PartitionState {
    fn as_str(self) -> &'static str {
        match self {
            PartitionState::Up => "UP",
            PartitionState::Down => "DOWN",
            PartitionState::Drain => "DRAIN",
            PartitionState::Inactive => "INACTIVE",
        }
    }

    /// Whether the scheduler starts jobs here.
    fn schedules(self) -> bool {
        matches!(self, PartitionState::Up | PartitionState::Drain)
    }
}

/// What happens to a job of this partition when a higher tier needs its
/// resources (`PreemptType=preempt/partition_prio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptMode {
    /// Never preempted.
    Off,
    /// Ends `PREEMPTED`.
    Cancel,
    /// Back to pending under the same id (`--no-requeue` jobs end `PREEMPTED`).
    Requeue,
}

impl PreemptMode {
    fn as_str(self) -> &'static str {
        match self {
            PreemptMode::Off => "OFF",
            PreemptMode::Cancel => "CANCEL",
            PreemptMode::Requeue => "REQUEUE",
        }
    }
}

/// A node of the simulated cluster. One GPU type per node.
#[derive(Debug, Clone)]
pub struct SimNode {
    name: String,
    gpu_type: Option<String>,
    gpus: u32,
    cpus: u32,
    memory_mb: u64,
    features: Vec<String>,
}

impl SimNode {
    /// A node with 16 CPUs, 64000 MB and no GPUs.
    pub fn new(name: impl Into<String>) -> Self {
        SimNode {
            name: name.into(),
            gpu_type: None,
            gpus: 0,
            cpus: 16,
            memory_mb: 64_000,
            features: Vec::new(),
        }
    }

    /// `Gres=gpu:KIND:COUNT`.
    pub fn gpus(mut self, kind: impl Into<String>, count: u32) -> Self {
        self.gpu_type = Some(kind.into());
        self.gpus = count;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    pub fn memory_mb(mut self, memory_mb: u64) -> Self {
        self.memory_mb = memory_mb;
        self
    }

    /// `Features=`, matched by `--constraint`.
    pub fn features(mut self, features: &[&str]) -> Self {
        self.features = features.iter().map(|f| f.to_string()).collect();
        self
    }
}

/// A partition of the simulated cluster.
#[derive(Debug, Clone)]
pub struct SimPartition {
    name: String,
    nodes: String,
    default: bool,
    max_time_minutes: Option<u64>,
    priority_tier: u32,
    preempt_mode: PreemptMode,
    state: PartitionState,
}

impl SimPartition {
    /// An `UP` partition over `nodes` (a Slurm host list, `a100-[1-2]`), with
    /// `PriorityTier=1`, no time limit and `PreemptMode=REQUEUE` (the test
    /// cluster's global setting).
    pub fn new(name: impl Into<String>, nodes: &str) -> Self {
        SimPartition {
            name: name.into(),
            nodes: nodes.to_string(),
            default: false,
            max_time_minutes: None,
            priority_tier: 1,
            preempt_mode: PreemptMode::Requeue,
            state: PartitionState::Up,
        }
    }

    /// `Default=YES`: used when a submission names no partition.
    pub fn default(mut self) -> Self {
        self.default = true;
        self
    }

    pub fn max_time_minutes(mut self, minutes: u64) -> Self {
        self.max_time_minutes = Some(minutes);
        self
    }

    pub fn priority_tier(mut self, tier: u32) -> Self {
        self.priority_tier = tier;
        self
    }

    pub fn preempt_mode(mut self, mode: PreemptMode) -> Self {
        self.preempt_mode = mode;
        self
    }

    pub fn state(mut self, state: PartitionState) -> Self {
        self.state = state;
        self
    }
}

#[derive(Debug, Clone)]
enum SwitchSpec {
    Leaf { name: String, nodes: String },
    Upper { name: String, switches: String },
}

/// Everything a [`SimSlurm`] starts from: nodes, partitions, switches and the
/// controller settings Shepherd depends on.
#[derive(Debug, Clone)]
pub struct SimCluster {
    name: String,
    nodes: Vec<SimNode>,
    partitions: Vec<SimPartition>,
    switches: Vec<SwitchSpec>,
    accounting: AccountingSource,
    min_job_age: Duration,
    requeue_delay: Duration,
    crash_detection: Duration,
    accounting_lag: Duration,
    command_timeout: Duration,
    start: Timestamp,
}

impl Default for SimCluster {
    fn default() -> Self {
        SimCluster::new()
    }
}

impl SimCluster {
    /// An empty cluster named `sim` with the test cluster's settings: job
    /// completion file accounting, `MinJobAge=300`, requeued jobs eligible
    /// again after 11 s (`cred_expire=10`), crashed nodes noticed after 30 s,
    /// a 30 s command deadline, and a clock starting at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        SimCluster {
            name: "sim".to_string(),
            nodes: Vec::new(),
            partitions: Vec::new(),
            switches: Vec::new(),
            accounting: AccountingSource::JobComp,
            min_job_age: Duration::from_secs(300),
            requeue_delay: Duration::from_secs(11),
            crash_detection: Duration::from_secs(30),
            accounting_lag: Duration::ZERO,
            command_timeout: Duration::from_secs(30),
            start: Timestamp::from_second(1_767_225_600).expect("a valid timestamp"),
        }
    }

    /// The project's test cluster (`scripts/testcluster`, docs/testcluster.md):
    /// the same nodes, GPUs, partitions and switches.
    pub fn test_cluster() -> Self {
        let gpu_node = |name: &str, kind: &str, count: u32, memory_mb: u64, features: &[&str]| {
            SimNode::new(name)
                .gpus(kind, count)
                .memory_mb(memory_mb)
                .features(features)
        };
        let cpu_node = |name: &str| SimNode::new(name).cpus(8).memory_mb(16_000);
        SimCluster::new()
            .node(gpu_node(
                "a100-1",
                "a100",
                4,
                64_000,
                &["a100", "a100_80gb"],
            ))
            .node(gpu_node(
                "a100-2",
                "a100",
                4,
                64_000,
                &["a100", "a100_80gb"],
            ))
            .node(gpu_node("a6000-1", "a6000", 8, 64_000, &["a6000"]))
            .node(gpu_node("a6000-2", "a6000", 8, 64_000, &["a6000"]))
            .node(cpu_node("cpu-1"))
            .node(cpu_node("cpu-2"))
            .node(gpu_node("rtx4090-1", "rtx4090", 4, 32_000, &["rtx4090"]))
            .node(gpu_node("rtx4090-2", "rtx4090", 4, 32_000, &["rtx4090"]))
            .partition(SimPartition::new("cpu", "cpu-[1-2]").default())
            .partition(SimPartition::new("a100", "a100-[1-2]"))
            .partition(SimPartition::new("a6000", "a6000-[1-2]").preempt_mode(PreemptMode::Cancel))
            .partition(SimPartition::new("rtx4090", "rtx4090-[1-2]"))
            .partition(SimPartition::new("short", "cpu-[1-2]").max_time_minutes(1))
            .partition(SimPartition::new("offline", "rtx4090-[1-2]").state(PartitionState::Down))
            .partition(
                SimPartition::new("urgent", "a100-[1-2],a6000-[1-2]")
                    .priority_tier(10)
                    .preempt_mode(PreemptMode::Off),
            )
            .leaf_switch("leaf1", "a100-[1-2],rtx4090-1")
            .leaf_switch("leaf2", "a6000-[1-2],rtx4090-2")
            .leaf_switch("leaf3", "cpu-[1-2]")
            .switch("spine", "leaf[1-3]")
    }

    /// A large uniform cluster for benchmarks: `nodes` nodes `gpu-0001`, …
    /// with `gpus_per_node` a100 GPUs and 64 CPUs each, one default partition
    /// `gpu`, leaf switches of 32 nodes under one spine.
    pub fn uniform(nodes: usize, gpus_per_node: u32) -> Self {
        assert!(nodes >= 1, "a cluster needs at least one node");
        let mut cluster = SimCluster::new();
        for i in 1..=nodes {
            cluster = cluster.node(
                SimNode::new(format!("gpu-{i:04}"))
                    .gpus("a100", gpus_per_node)
                    .cpus(64)
                    .memory_mb(512_000)
                    .features(&["a100"]),
            );
        }
        cluster = cluster
            .partition(SimPartition::new("gpu", &format!("gpu-[0001-{nodes:04}]")).default());
        let leaves = nodes.div_ceil(32);
        for leaf in 0..leaves {
            let first = leaf * 32 + 1;
            let last = ((leaf + 1) * 32).min(nodes);
            cluster = cluster.leaf_switch(
                &format!("leaf{}", leaf + 1),
                &format!("gpu-[{first:04}-{last:04}]"),
            );
        }
        if leaves > 1 {
            cluster = cluster.switch("spine", &format!("leaf[1-{leaves}]"));
        }
        cluster
    }

    /// `ClusterName=`; `sim` by default.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn node(mut self, node: SimNode) -> Self {
        self.nodes.push(node);
        self
    }

    pub fn partition(mut self, partition: SimPartition) -> Self {
        self.partitions.push(partition);
        self
    }

    /// A leaf switch with nodes attached (a host list).
    pub fn leaf_switch(mut self, name: &str, nodes: &str) -> Self {
        self.switches.push(SwitchSpec::Leaf {
            name: name.to_string(),
            nodes: nodes.to_string(),
        });
        self
    }

    /// An upper switch over switches defined before it (a host list of names).
    pub fn switch(mut self, name: &str, switches: &str) -> Self {
        self.switches.push(SwitchSpec::Upper {
            name: name.to_string(),
            switches: switches.to_string(),
        });
        self
    }

    /// Where `accounting()` reads: `Slurmdbd` (the `--accounting` test cluster),
    /// `JobComp` (the default test cluster) or `Controller` (neither).
    pub fn accounting(mut self, source: AccountingSource) -> Self {
        self.accounting = source;
        self
    }

    /// How long the controller keeps ended jobs (`MinJobAge`).
    pub fn min_job_age(mut self, age: Duration) -> Self {
        self.min_job_age = age;
        self
    }

    /// How long a requeued job waits (`BeginTime`) before it may start again.
    pub fn requeue_delay(mut self, delay: Duration) -> Self {
        self.requeue_delay = delay;
        self
    }

    /// How long after [`SimSlurm::crash_node`] Slurm marks the node `DOWN` and
    /// requeues its jobs (`SlurmdTimeout` and the ping interval).
    pub fn crash_detection(mut self, delay: Duration) -> Self {
        self.crash_detection = delay;
        self
    }

    /// How long after a run ends its accounting record becomes visible
    /// (slurmdbd lags the controller by up to a second). Zero by default.
    pub fn accounting_lag(mut self, lag: Duration) -> Self {
        self.accounting_lag = lag;
        self
    }

    /// The `after` of the `TimedOut` errors of [`SimSlurm::set_timeout`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The virtual clock's start (rounded down to a second).
    pub fn start_time(mut self, start: Timestamp) -> Self {
        self.start = start;
        self
    }
}

// ---------------------------------------------------------------------------
// Workload model, snapshots and call counters
// ---------------------------------------------------------------------------

/// What a job's script does once it starts, as scripted by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Exits with `code` after running for `after`: `COMPLETED` for 0,
    /// `FAILED` (`NonZeroExitCode`) otherwise.
    Exit { after: Duration, code: i32 },
    /// The batch shell is killed by `signal` after `after` (OOM killer,
    /// segfault): `FAILED` with reason `JobLaunchFailure`, exit `0:signal`.
    Killed { after: Duration, signal: i32 },
    /// Runs until cancelled, preempted, out of time, or its node fails.
    RunForever,
}

/// What a workload closure is told about a job that starts (again).
#[derive(Debug)]
pub struct JobStart<'a> {
    pub id: JobId,
    pub name: &'a str,
    pub partition: &'a str,
    pub nodes: &'a [String],
    /// 0 on the first run, raised by each requeue.
    pub restarts: u32,
    /// The effective sbatch arguments (`#SBATCH` lines first).
    pub args: &'a [String],
    pub now: Timestamp,
}

type Workload = Box<dyn FnMut(&JobStart<'_>) -> Behaviour + Send>;

/// A snapshot of one job, for assertions; more than `jobs()` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimJob {
    /// The job as `jobs()` reports it (also once the controller forgot it).
    pub info: JobInfo,
    /// The effective sbatch arguments: `#SBATCH` lines, then the command line.
    pub args: Vec<String>,
    /// Arguments the sim does not model (kept so tests can check them).
    pub ignored_args: Vec<String>,
    /// The environment the job was submitted with.
    pub env: Option<Vec<(String, String)>>,
    pub requeueable: bool,
    /// The time limit of the current or last run; `None` when unlimited or
    /// never started.
    pub time_limit_minutes: Option<u64>,
    /// Whether the controller still holds the job (`jobs()` shows it).
    pub held: bool,
    /// False for the FAILED job Slurm keeps for a submission it rejected with
    /// `Requested node configuration is not available`.
    pub accepted: bool,
    /// Every accounting record written so far, visible or not yet.
    pub records: Vec<JobRecord>,
}

impl SimJob {
    /// Pending, running or completing: holds or waits for resources.
    pub fn is_live(&self) -> bool {
        self.info.state.is_pending() || self.info.state.is_active()
    }
}

/// How often each [`Slurm`] method was called, so tests and benchmarks can
/// bound the load Shepherd puts on the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCalls {
    pub cluster: u64,
    pub submit: u64,
    pub estimate: u64,
    pub jobs: u64,
    pub jobs_by_name: u64,
    pub accounting: u64,
    pub cancel: u64,
    pub requeue: u64,
    pub update_pending: u64,
    pub nodes: u64,
    pub partitions: u64,
    pub topology: u64,
    /// Slurm commands the real adapter would have run for these calls: none
    /// for an empty id list or an empty update, and `scontrol show config`
    /// only until it first succeeds (the adapter caches it).
    pub commands: u64,
}

impl SimCalls {
    /// Calls that only read: everything but submit, cancel, requeue and
    /// update_pending.
    pub fn queries(&self) -> u64 {
        self.cluster
            + self.estimate
            + self.jobs
            + self.jobs_by_name
            + self.accounting
            + self.nodes
            + self.partitions
            + self.topology
    }

    /// Calls that change something.
    pub fn actions(&self) -> u64 {
        self.submit + self.cancel + self.requeue + self.update_pending
    }

    pub fn total(&self) -> u64 {
        self.queries() + self.actions()
    }
}

// ---------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------

/// An in-memory Slurm cluster implementing [`Slurm`]. See the module docs.
///
/// Every method takes `&self`: the state sits behind a mutex so the sim can be
/// shared (`Arc<dyn Slurm>`) like the real adapter. Workload closures run with
/// that lock held and must not call back into the sim.
pub struct SimSlurm {
    state: Mutex<State>,
}

impl SimSlurm {
    /// Builds the cluster.
    ///
    /// # Panics
    ///
    /// On an inconsistent description (duplicate or unknown names, bad host
    /// lists, two default partitions): a typo in a test fails loudly.
    pub fn new(cluster: SimCluster) -> Self {
        SimSlurm {
            state: Mutex::new(State::new(cluster)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --- clock ---

    /// The virtual time, in whole seconds as Slurm reports it.
    pub fn now(&self) -> Timestamp {
        let st = self.state();
        st.stamp(st.now)
    }

    /// Virtual time since the sim started.
    pub fn elapsed(&self) -> Duration {
        self.state().now
    }

    /// Moves the clock forward, firing every event on the way in order and
    /// scheduling after each.
    pub fn advance(&self, by: Duration) {
        let mut st = self.state();
        let target = st.now + by;
        st.run_to(target);
    }

    /// Fires what is due and runs the scheduler, without moving the clock.
    pub fn step(&self) {
        let mut st = self.state();
        let now = st.now;
        st.run_to(now);
    }

    // --- workload ---

    /// Decides what each job does when it starts (again), unless a node or
    /// name rule applies. Without any rule jobs run forever.
    pub fn on_start(&self, workload: impl FnMut(&JobStart<'_>) -> Behaviour + Send + 'static) {
        self.state().on_start = Some(Box::new(workload));
    }

    /// Every job named `name` behaves so (before [`SimSlurm::on_start`]).
    pub fn behave_named(&self, name: &str, behaviour: Behaviour) {
        self.state().by_name.insert(name.to_string(), behaviour);
    }

    /// Every job starting on `node` behaves so, whatever its name: a bad
    /// node. Takes precedence over name rules and the closure.
    pub fn behave_on_node(&self, node: &str, behaviour: Behaviour) {
        let mut st = self.state();
        let n = st.node_index(node);
        st.nodes[n].behaviour = Some(behaviour);
    }

    /// Removes the rule of [`SimSlurm::behave_on_node`].
    pub fn clear_node_behaviour(&self, node: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        st.nodes[n].behaviour = None;
    }

    // --- faults ---

    /// `scontrol update state=down reason=…`: the node goes `DOWN` at once;
    /// its jobs are requeued (record `NODE_FAIL`, `restarts` + 1) or, with
    /// `--no-requeue`, end `NODE_FAIL` (reason `NodeDown`).
    pub fn fail_node(&self, node: &str, reason: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        let reason = st.admin_reason(reason);
        let node = &mut st.nodes[n];
        node.down = true;
        node.crashed = None;
        node.reason = Some(reason);
        st.fail_jobs_on(n);
        st.dirty = true;
    }

    /// The node's slurmd dies. Its jobs stay `RUNNING` (their scripts no
    /// longer end) until Slurm notices after the crash detection delay. The
    /// node takes no new jobs from the crash on, and shows `NOT_RESPONDING`
    /// after half the delay. Then it is `DOWN` ("Not responding") and its
    /// jobs are handled as by [`SimSlurm::fail_node`].
    pub fn crash_node(&self, node: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        if st.nodes[n].down || st.nodes[n].crashed.is_some() {
            return;
        }
        let at = st.now + st.cfg.crash_detection;
        st.nodes[n].crashed = Some(st.now);
        st.nodes[n].crash_gen += 1;
        let crash = st.nodes[n].crash_gen;
        st.push_event(at, EventKind::Detect { node: n, crash });
        st.dirty = true;
    }

    /// The node's slurmd is back. A crash Slurm had not noticed yet is
    /// noticed now (its jobs fail as on a node failure); a node that Slurm set
    /// down for not responding returns to service by itself (`ReturnToService=1`).
    pub fn restart_node(&self, node: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        if st.nodes[n].crashed.is_some() {
            st.nodes[n].crashed = None;
            st.fail_jobs_on(n);
        }
        let node = &mut st.nodes[n];
        if node.not_responding {
            node.not_responding = false;
            node.down = false;
            if !node.drain {
                node.reason = None;
            }
        }
        st.dirty = true;
    }

    /// `scontrol update state=drain reason=…`: running jobs go on, no new
    /// ones start there.
    pub fn drain_node(&self, node: &str, reason: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        let reason = st.admin_reason(reason);
        st.nodes[n].drain = true;
        st.nodes[n].reason = Some(reason);
        st.dirty = true;
    }

    /// `scontrol update state=resume`: clears down, drain and a crash.
    pub fn resume_node(&self, node: &str) {
        let mut st = self.state();
        let n = st.node_index(node);
        if st.nodes[n].crashed.is_some() {
            st.nodes[n].crashed = None;
            st.fail_jobs_on(n);
        }
        let node = &mut st.nodes[n];
        node.down = false;
        node.drain = false;
        node.not_responding = false;
        node.reason = None;
        st.dirty = true;
    }

    /// Preempts a running job as its partition's `PreemptMode` says:
    /// `REQUEUE` puts it back to pending (record `PREEMPTED`), `CANCEL` ends it
    /// `PREEMPTED`. Jobs are also preempted by the scheduler when a job of a
    /// higher `PriorityTier` needs their resources.
    ///
    /// # Panics
    ///
    /// When the job is not running or its partition has `PreemptMode=OFF`.
    pub fn preempt(&self, id: JobId) {
        let mut st = self.state();
        let idx = st
            .job_index(id)
            .filter(|&i| st.jobs[i].state == JobState::Running)
            .unwrap_or_else(|| panic!("job {id} is not running"));
        let p = st.jobs[idx]
            .partition
            .expect("a running job has a partition");
        assert_ne!(
            st.partitions[p].preempt,
            PreemptMode::Off,
            "partition {} has PreemptMode=OFF",
            st.partitions[p].name
        );
        st.preempt_job(idx);
    }

    /// `scontrol update partitionname=… state=…`.
    pub fn set_partition_state(&self, partition: &str, state: PartitionState) {
        let mut st = self.state();
        let p = *st
            .part_index
            .get(partition)
            .unwrap_or_else(|| panic!("the simulated cluster has no partition {partition:?}"));
        st.partitions[p].state = state;
        st.dirty = true;
    }

    /// Every command fails with [`SlurmError::Unreachable`] while set.
    pub fn set_unreachable(&self, on: bool) {
        self.state().faults.unreachable = on;
    }

    /// Every command fails with [`SlurmError::TimedOut`] while set (and does
    /// nothing).
    pub fn set_timeout(&self, on: bool) {
        self.state().faults.timeout = on;
    }

    /// While set, `submit()` creates the job but answers
    /// [`SlurmError::TimedOut`]: sbatch's reply was lost, the job exists.
    pub fn set_submit_reply_lost(&self, on: bool) {
        self.state().faults.submit_reply_lost = on;
    }

    // --- observation ---

    pub fn calls(&self) -> SimCalls {
        self.state().calls
    }

    pub fn reset_calls(&self) {
        self.state().calls = SimCalls::default();
    }

    /// One job, also after the controller forgot it.
    pub fn job(&self, id: JobId) -> Option<SimJob> {
        let st = self.state();
        st.job_index(id).map(|i| st.snapshot(&st.jobs[i]))
    }

    /// Every job ever submitted (including the FAILED ones Slurm keeps for
    /// some rejected submissions), by id.
    pub fn all_jobs(&self) -> Vec<SimJob> {
        let st = self.state();
        st.jobs.iter().map(|j| st.snapshot(j)).collect()
    }

    /// How many jobs are pending, running or completing: zero once the
    /// cluster has nothing left to do.
    pub fn live_job_count(&self) -> usize {
        self.state()
            .jobs
            .iter()
            .filter(|j| j.state.is_pending() || j.state.is_active())
            .count()
    }

    /// Jobs named `name` that are pending, running or completing: a test of
    /// "never two live jobs for one run" asserts this has at most one entry.
    pub fn live_jobs_named(&self, name: &str) -> Vec<SimJob> {
        let st = self.state();
        st.jobs
            .iter()
            .filter(|j| j.name == name && (j.state.is_pending() || j.state.is_active()))
            .map(|j| st.snapshot(j))
            .collect()
    }
}

impl Slurm for SimSlurm {
    fn cluster(&self) -> Result<ClusterInfo, SlurmError> {
        let mut st = self.state();
        st.calls.cluster += 1;
        st.config()
    }

    fn submit(&self, request: &SubmitRequest) -> Result<JobId, SlurmError> {
        let mut st = self.state();
        st.calls.submit += 1;
        st.command("sbatch")?;
        let (name, args, parsed) = read_request(request, "sbatch")?;
        let req = match st.resolve(&parsed) {
            Ok(req) => req,
            Err(refusal) => {
                if refusal.kind == Rejection::NodeConfigUnavailable {
                    // Slurm creates the job before it finds no node fits, and
                    // keeps it FAILED (BadConstraints): the id is used up.
                    st.add_ghost(name, args, &parsed, request.env.clone());
                }
                return Err(refusal.error("sbatch"));
            }
        };
        let id = st.add_job(name, args, parsed, req, request.env.clone());
        if st.faults.submit_reply_lost {
            return Err(SlurmError::TimedOut {
                command: "sbatch".to_string(),
                after: st.cfg.command_timeout,
            });
        }
        Ok(id)
    }

    fn estimate_start(&self, request: &SubmitRequest) -> Result<StartEstimate, SlurmError> {
        let mut st = self.state();
        st.calls.estimate += 1;
        st.command("sbatch --test-only")?;
        let (_, _, parsed) = read_request(request, "sbatch --test-only")?;
        let req = st
            .resolve(&parsed)
            .map_err(|r| r.error("sbatch --test-only"))?;
        Ok(st.estimate(&req))
    }

    fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobInfo>, SlurmError> {
        let mut st = self.state();
        st.calls.jobs += 1;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        st.command("squeue")?;
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        Ok(ids
            .into_iter()
            .filter_map(|id| st.job_index(id))
            .filter(|&i| st.held(&st.jobs[i]))
            .map(|i| st.info(&st.jobs[i]))
            .collect())
    }

    fn jobs_by_name(&self, names: &[String]) -> Result<Vec<JobInfo>, SlurmError> {
        let mut st = self.state();
        st.calls.jobs_by_name += 1;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        st.command("squeue --me -n")?;
        Ok(st
            .jobs
            .iter()
            .filter(|j| names.contains(&j.name) && st.held(j))
            .map(|j| st.info(j))
            .collect())
    }

    fn accounting(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, SlurmError> {
        let mut st = self.state();
        st.calls.accounting += 1;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The adapter learns which accounting the cluster has first.
        st.config()?;
        let command = match st.cfg.accounting {
            AccountingSource::Slurmdbd => "sacct",
            AccountingSource::JobComp => "sacct -c",
            AccountingSource::Controller => "scontrol show job",
        };
        st.command(command)?;
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for idx in ids.into_iter().filter_map(|id| st.job_index(id)) {
            let job = &st.jobs[idx];
            if st.cfg.accounting == AccountingSource::Controller {
                if job.state.is_terminal() && st.held(job) {
                    out.push(st.controller_record(job));
                }
            } else {
                out.extend(
                    job.records
                        .iter()
                        .filter(|(end, _)| *end + st.cfg.accounting_lag <= st.now)
                        .map(|(_, r)| r.clone()),
                );
            }
        }
        Ok(out)
    }

    fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError> {
        let mut st = self.state();
        st.calls.cancel += 1;
        if ids.is_empty() {
            return Ok(());
        }
        st.command("scancel")?;
        for &id in ids {
            if let Some(idx) = st.job_index(id) {
                st.cancel_job(idx);
            }
        }
        Ok(())
    }

    fn requeue(&self, id: JobId) -> Result<(), SlurmError> {
        let mut st = self.state();
        st.calls.requeue += 1;
        let command = format!("scontrol requeue {id}");
        st.command(&command)?;
        let idx = st
            .job_index(id)
            .filter(|&i| st.held(&st.jobs[i]))
            .ok_or_else(|| SlurmError::UnknownJob {
                command: command.clone(),
                message: "Invalid job id specified".to_string(),
            })?;
        // Slurm's refusals here match none of the classified rejections, so
        // the real adapter reports them as plain failures.
        let refuse = |message: String| SlurmError::Failed {
            command: command.clone(),
            status: "exit 1".to_string(),
            message,
        };
        let job = &st.jobs[idx];
        if job.state.is_pending() {
            return Err(refuse(format!("Job is pending execution for job {id}")));
        }
        if !job.accepted || !job.req.requeueable {
            return Err(refuse(format!(
                "Requested operation is presently disabled for job {id}"
            )));
        }
        st.requeue_job(idx, JobState::Requeued);
        Ok(())
    }

    fn update_pending(&self, id: JobId, update: &PendingUpdate) -> Result<(), SlurmError> {
        let mut st = self.state();
        st.calls.update_pending += 1;
        if update.exclude.is_none() && update.partition.is_none() && !update.start_now {
            return Ok(());
        }
        let command = format!("scontrol update JobId={id}");
        st.command(&command)?;
        let idx = st
            .job_index(id)
            .filter(|&i| st.held(&st.jobs[i]))
            .ok_or_else(|| SlurmError::UnknownJob {
                command: command.clone(),
                message: "Invalid job id specified".to_string(),
            })?;
        if !st.jobs[idx].state.is_pending() {
            return Err(SlurmError::Rejected {
                command,
                kind: Rejection::JobNotPending,
                message: "slurm_update error: Job is no longer pending execution".to_string(),
            });
        }
        if update.start_now {
            let now = st.now;
            st.jobs[idx].eligible = now;
        }
        let mut parsed = st.jobs[idx].parsed.clone();
        if let Some(exclude) = &update.exclude {
            parsed.exclude = Some(exclude.clone());
        }
        if let Some(partition) = &update.partition {
            parsed.partitions = Some(split_list(partition));
        }
        let req = st.resolve(&parsed).map_err(|r| SlurmError::Rejected {
            command: command.clone(),
            kind: r.kind,
            message: format!("slurm_update error: {}", r.sentence()),
        })?;
        st.unqueue(idx);
        let job = &mut st.jobs[idx];
        job.parsed = parsed;
        job.tier = req.tier;
        job.req = req;
        job.reason.clear();
        st.enqueue(idx);
        st.dirty = true;
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>, SlurmError> {
        let mut st = self.state();
        st.calls.nodes += 1;
        st.command("scontrol show node")?;
        Ok((0..st.nodes.len()).map(|n| st.node_info(n)).collect())
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SlurmError> {
        let mut st = self.state();
        st.calls.partitions += 1;
        st.command("scontrol show partition")?;
        Ok(st
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                name: p.name.clone(),
                state: p.state.as_str().to_string(),
                is_default: p.default,
                nodes: p.nodes.iter().map(|&n| st.nodes[n].name.clone()).collect(),
                max_time_minutes: p.max_time,
                priority_tier: p.tier,
                preempt_mode: p.preempt.as_str().to_string(),
                total_cpus: p.nodes.iter().map(|&n| st.nodes[n].cpus).sum(),
                total_nodes: p.nodes.len() as u32,
            })
            .collect())
    }

    fn topology(&self) -> Result<Vec<Switch>, SlurmError> {
        let mut st = self.state();
        st.calls.topology += 1;
        st.command("scontrol show topology")?;
        Ok(st.switches.clone())
    }
}

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

struct Config {
    name: String,
    accounting: AccountingSource,
    min_job_age: Duration,
    requeue_delay: Duration,
    crash_detection: Duration,
    accounting_lag: Duration,
    command_timeout: Duration,
    /// The clock's start, in Unix seconds.
    epoch: i64,
}

struct Node {
    name: String,
    gpu_type: Option<String>,
    gpus: u32,
    cpus: u32,
    memory_mb: u64,
    features: Vec<String>,
    /// Partitions holding the node, in configuration order.
    partitions: Vec<String>,
    down: bool,
    drain: bool,
    not_responding: bool,
    reason: Option<String>,
    /// When slurmd died, while Slurm has not noticed yet.
    crashed: Option<Duration>,
    /// Invalidates the detection event of an earlier crash.
    crash_gen: u32,
    gpus_used: u32,
    cpus_used: u32,
    /// Jobs running here, oldest start first.
    jobs: Vec<JobId>,
    behaviour: Option<Behaviour>,
}

struct Partition {
    name: String,
    nodes: Vec<usize>,
    default: bool,
    max_time: Option<u64>,
    tier: u32,
    preempt: PreemptMode,
    state: PartitionState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
enum TimeReq {
    /// No `--time`: the partition's limit applies.
    #[default]
    Default,
    Unlimited,
    Minutes(u64),
}

/// A submission resolved against the cluster.
#[derive(Debug, Clone, Default)]
struct Req {
    partitions: Vec<usize>,
    /// The highest `PriorityTier` among `partitions`: the queue order.
    tier: u32,
    /// Per node.
    gpus: u32,
    gpu_type: Option<String>,
    nodes: u32,
    /// Per node.
    cpus: u32,
    mem_mb: u64,
    exclude: Vec<usize>,
    required: Vec<usize>,
    time: TimeReq,
    /// `--constraint`: any of these sets of features, each needed in full.
    features: Vec<Vec<String>>,
    requeueable: bool,
    /// Per partition, why the job can never start there
    /// ([`State::hopeless`]): fixed once resolved, so the scheduler does
    /// not work it out again on every pass.
    hopeless: Vec<Option<&'static str>>,
    /// A hash of what decides where and whether the job fits
    /// ([`Req::same_shape`]).
    shape: u64,
}

impl Req {
    /// Whether two requests compete for nodes identically: same partitions,
    /// sizes, node lists, features and time limit.
    fn same_shape(&self, other: &Req) -> bool {
        self.partitions == other.partitions
            && self.gpus == other.gpus
            && self.gpu_type == other.gpu_type
            && self.nodes == other.nodes
            && self.cpus == other.cpus
            && self.mem_mb == other.mem_mb
            && self.exclude == other.exclude
            && self.required == other.required
            && self.features == other.features
            && self.time == other.time
    }

    fn shape_hash(&self) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        (
            &self.partitions,
            self.gpus,
            &self.gpu_type,
            self.nodes,
            self.cpus,
        )
            .hash(&mut h);
        (
            self.mem_mb,
            &self.exclude,
            &self.required,
            &self.features,
            self.time,
        )
            .hash(&mut h);
        h.finish()
    }

    fn hopeless_in(&self, p: usize) -> Option<&'static str> {
        let k = self.partitions.iter().position(|&q| q == p)?;
        self.hopeless.get(k).copied().flatten()
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Exit(i32),
    Signal(i32),
    Timeout,
}

struct Job {
    id: JobId,
    name: String,
    args: Vec<String>,
    parsed: Args,
    env: Option<Vec<(String, String)>>,
    req: Req,
    tier: u32,
    accepted: bool,
    state: JobState,
    reason: String,
    /// Where it runs, or ran last.
    partition: Option<usize>,
    /// Nodes of the current or last run; empty after a requeue.
    nodes: Vec<usize>,
    restarts: u32,
    exit: Option<ExitStatus>,
    submit: Duration,
    start: Option<Duration>,
    end: Option<Duration>,
    /// `BeginTime`: not before this.
    eligible: Duration,
    limit_minutes: Option<u64>,
    planned: Option<Outcome>,
    /// Bumped on every transition, so stale events are ignored.
    run: u32,
    /// Requeued and not started since: a cancel now writes no record.
    awaiting_rerun: bool,
    /// Accounting records with the virtual time they were written.
    records: Vec<(Duration, JobRecord)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    End { job: JobId, run: u32 },
    Eligible { job: JobId, run: u32 },
    Detect { node: usize, crash: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Duration,
    seq: u64,
    kind: EventKind,
}

#[derive(Default)]
struct Faults {
    unreachable: bool,
    timeout: bool,
    submit_reply_lost: bool,
}

/// What a scheduler pass concluded for a job that did not start.
#[derive(Debug, Clone)]
enum Verdict {
    /// Waits for resources (or behind a job that does).
    Waits,
    /// Waits for something else, with this reason.
    Blocked(String),
}

/// Why a pending job cannot start in one partition.
enum Why {
    Static(&'static str),
    NodesUnavailable(Vec<usize>),
    Resources,
}

struct State {
    cfg: Config,
    now: Duration,
    nodes: Vec<Node>,
    node_names: HashMap<String, usize>,
    partitions: Vec<Partition>,
    part_index: HashMap<String, usize>,
    switches: Vec<Switch>,
    /// Job `n` is at index `n - 1`.
    jobs: Vec<Job>,
    /// Pending jobs in queue order: higher tier first, then FIFO.
    pending: BTreeSet<(Reverse<u32>, JobId)>,
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    /// Something changed that may let a job start or change a pending reason.
    dirty: bool,
    on_start: Option<Workload>,
    by_name: HashMap<String, Behaviour>,
    faults: Faults,
    calls: SimCalls,
    config_cached: bool,
}

impl State {
    fn new(c: SimCluster) -> State {
        let mut node_names = HashMap::new();
        let mut nodes = Vec::new();
        for (i, n) in c.nodes.into_iter().enumerate() {
            assert!(
                node_names.insert(n.name.clone(), i).is_none(),
                "duplicate node {:?}",
                n.name
            );
            nodes.push(Node {
                name: n.name,
                gpu_type: n.gpu_type,
                gpus: n.gpus,
                cpus: n.cpus,
                memory_mb: n.memory_mb,
                features: n.features,
                partitions: Vec::new(),
                down: false,
                drain: false,
                not_responding: false,
                reason: None,
                crashed: None,
                crash_gen: 0,
                gpus_used: 0,
                cpus_used: 0,
                jobs: Vec::new(),
                behaviour: None,
            });
        }
        let lookup = |list: &str, what: &str| -> Vec<usize> {
            hostlist::expand(list)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .iter()
                .map(|name| {
                    *node_names
                        .get(name)
                        .unwrap_or_else(|| panic!("{what}: unknown node {name:?}"))
                })
                .collect()
        };
        let mut part_index = HashMap::new();
        let mut partitions = Vec::new();
        for (i, p) in c.partitions.into_iter().enumerate() {
            assert!(
                part_index.insert(p.name.clone(), i).is_none(),
                "duplicate partition {:?}",
                p.name
            );
            let members = lookup(&p.nodes, &format!("partition {}", p.name));
            for &n in &members {
                nodes[n].partitions.push(p.name.clone());
            }
            partitions.push(Partition {
                name: p.name,
                nodes: members,
                default: p.default,
                max_time: p.max_time_minutes,
                tier: p.priority_tier,
                preempt: p.preempt_mode,
                state: p.state,
            });
        }
        assert!(
            partitions.iter().filter(|p| p.default).count() <= 1,
            "more than one default partition"
        );
        let mut switches: Vec<Switch> = Vec::new();
        for spec in c.switches {
            let switch = match spec {
                SwitchSpec::Leaf { name, nodes: list } => {
                    let members = lookup(&list, &format!("switch {name}"));
                    Switch {
                        name,
                        level: 0,
                        nodes: members.iter().map(|&n| nodes[n].name.clone()).collect(),
                        switches: Vec::new(),
                    }
                }
                SwitchSpec::Upper {
                    name,
                    switches: list,
                } => {
                    let children =
                        hostlist::expand(&list).unwrap_or_else(|e| panic!("switch {name}: {e}"));
                    let mut level = 0;
                    let mut members = Vec::new();
                    for child in &children {
                        let child = switches
                            .iter()
                            .find(|s| &s.name == child)
                            .unwrap_or_else(|| panic!("switch {name}: unknown switch {child:?}"));
                        level = level.max(child.level + 1);
                        members.extend(child.nodes.iter().cloned());
                    }
                    // Slurm lists every node below an upper switch, sorted.
                    members.sort();
                    members.dedup();
                    Switch {
                        name,
                        level,
                        nodes: members,
                        switches: children,
                    }
                }
            };
            switches.push(switch);
        }
        State {
            cfg: Config {
                name: c.name,
                accounting: c.accounting,
                min_job_age: c.min_job_age,
                requeue_delay: c.requeue_delay,
                crash_detection: c.crash_detection,
                accounting_lag: c.accounting_lag,
                command_timeout: c.command_timeout,
                epoch: c.start.as_second(),
            },
            now: Duration::ZERO,
            nodes,
            node_names,
            partitions,
            part_index,
            switches,
            jobs: Vec::new(),
            pending: BTreeSet::new(),
            events: BinaryHeap::new(),
            seq: 0,
            dirty: false,
            on_start: None,
            by_name: HashMap::new(),
            faults: Faults::default(),
            calls: SimCalls::default(),
            config_cached: false,
        }
    }

    // --- helpers ---

    fn stamp(&self, t: Duration) -> Timestamp {
        let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
        Timestamp::from_second(self.cfg.epoch.saturating_add(secs))
            .expect("virtual time within jiff's range")
    }

    fn node_index(&self, name: &str) -> usize {
        *self
            .node_names
            .get(name)
            .unwrap_or_else(|| panic!("the simulated cluster has no node {name:?}"))
    }

    fn job_index(&self, id: JobId) -> Option<usize> {
        let idx = usize::try_from(id.0).ok()?.checked_sub(1)?;
        (idx < self.jobs.len()).then_some(idx)
    }

    /// Whether the controller still knows the job (`MinJobAge`).
    fn held(&self, job: &Job) -> bool {
        job.end
            .is_none_or(|end| self.now < end + self.cfg.min_job_age)
    }

    /// An admin's reason as Slurm stores it: `bad fan [root@2026-…]`.
    fn admin_reason(&self, reason: &str) -> String {
        format!(
            "{reason} [root@{}]",
            self.stamp(self.now).strftime("%Y-%m-%dT%H:%M:%S")
        )
    }

    fn usable(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        !node.down && !node.drain && !node.not_responding && node.crashed.is_none()
    }

    fn push_event(&mut self, at: Duration, kind: EventKind) {
        self.seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    /// Counts a command the real adapter runs, and fails it under a fault.
    fn command(&mut self, command: &str) -> Result<(), SlurmError> {
        self.calls.commands += 1;
        if self.faults.unreachable {
            return Err(SlurmError::Unreachable {
                command: command.to_string(),
                message: UNREACHABLE.to_string(),
            });
        }
        if self.faults.timeout {
            return Err(SlurmError::TimedOut {
                command: command.to_string(),
                after: self.cfg.command_timeout,
            });
        }
        Ok(())
    }

    /// `scontrol show config`, run by the adapter until it first succeeds.
    fn config(&mut self) -> Result<ClusterInfo, SlurmError> {
        if !self.config_cached {
            self.command("scontrol show config")?;
            self.config_cached = true;
        }
        Ok(ClusterInfo {
            name: self.cfg.name.clone(),
            version: SIM_SLURM_VERSION.to_string(),
            accounting_storage: match self.cfg.accounting {
                AccountingSource::Slurmdbd => "accounting_storage/slurmdbd",
                _ => "accounting_storage/none",
            }
            .to_string(),
            job_comp: match self.cfg.accounting {
                AccountingSource::Controller => "jobcomp/none",
                _ => "jobcomp/filetxt",
            }
            .to_string(),
            min_job_age_secs: self.cfg.min_job_age.as_secs(),
            topology_plugin: if self.switches.is_empty() {
                "topology/none"
            } else {
                "topology/tree"
            }
            .to_string(),
        })
    }

    // --- reporting ---

    fn node_names_of(&self, nodes: &[usize]) -> Vec<String> {
        nodes.iter().map(|&n| self.nodes[n].name.clone()).collect()
    }

    fn partition_label(&self, job: &Job) -> String {
        match job.partition {
            Some(p) => self.partitions[p].name.clone(),
            None => job
                .req
                .partitions
                .iter()
                .map(|&p| self.partitions[p].name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn info(&self, job: &Job) -> JobInfo {
        let terminal = job.state.is_terminal();
        JobInfo {
            id: job.id,
            name: job.name.clone(),
            state: job.state.clone(),
            reason: job.reason.clone(),
            partition: self.partition_label(job),
            nodes: self.node_names_of(&job.nodes),
            restarts: job.restarts,
            exit: if terminal { job.exit } else { None },
            submit_time: Some(self.stamp(job.submit)),
            start_time: if job.state.is_pending() {
                None
            } else {
                job.start.map(|t| self.stamp(t))
            },
            end_time: if terminal {
                job.end.map(|t| self.stamp(t))
            } else {
                None
            },
        }
    }

    fn snapshot(&self, job: &Job) -> SimJob {
        let records = if self.cfg.accounting == AccountingSource::Controller {
            if job.state.is_terminal() {
                vec![self.controller_record(job)]
            } else {
                Vec::new()
            }
        } else {
            job.records.iter().map(|(_, r)| r.clone()).collect()
        };
        SimJob {
            info: self.info(job),
            args: job.args.clone(),
            ignored_args: job.parsed.ignored.clone(),
            env: job.env.clone(),
            requeueable: job.req.requeueable,
            time_limit_minutes: job.limit_minutes,
            held: self.held(job),
            accepted: job.accepted,
            records,
        }
    }

    fn record(&self, job: &Job, state: JobState, exit: ExitStatus) -> JobRecord {
        JobRecord {
            id: job.id,
            state,
            exit: Some(exit),
            nodes: self.node_names_of(&job.nodes),
            partition: self.partition_label(job),
            start_time: job.start.map(|t| self.stamp(t)),
            end_time: Some(self.stamp(self.now)),
            source: self.cfg.accounting,
        }
    }

    /// `scontrol show job`'s view of an ended job.
    fn controller_record(&self, job: &Job) -> JobRecord {
        JobRecord {
            id: job.id,
            state: job.state.clone(),
            exit: job.exit,
            nodes: self.node_names_of(&job.nodes),
            partition: self.partition_label(job),
            start_time: job.start.map(|t| self.stamp(t)),
            end_time: job.end.map(|t| self.stamp(t)),
            source: AccountingSource::Controller,
        }
    }

    fn node_info(&self, n: usize) -> NodeInfo {
        let node = &self.nodes[n];
        let base = if node.down {
            "DOWN"
        } else if node.cpus_used == 0 {
            "IDLE"
        } else if node.cpus_used >= node.cpus {
            "ALLOCATED"
        } else {
            // Slurm's node state follows CPUs: all GPUs in use on a node with
            // free CPUs is still MIXED.
            "MIXED"
        };
        let mut flags = Vec::new();
        if node.drain {
            flags.push("DRAIN".to_string());
        }
        let unanswered = node
            .crashed
            .is_some_and(|at| self.now >= at + self.cfg.crash_detection / 2);
        if node.not_responding || unanswered {
            flags.push("NOT_RESPONDING".to_string());
        }
        NodeInfo {
            name: node.name.clone(),
            state: NodeState {
                base: base.to_string(),
                flags,
            },
            reason: node.reason.clone(),
            partitions: node.partitions.clone(),
            features: node.features.clone(),
            gres: if node.gpus > 0 {
                vec![Gres {
                    name: "gpu".to_string(),
                    kind: node.gpu_type.clone(),
                    count: node.gpus,
                }]
            } else {
                Vec::new()
            },
            gpus_used: node.gpus_used,
            cpus: node.cpus,
            cpus_alloc: node.cpus_used,
            memory_mb: node.memory_mb,
            memory_alloc_mb: 0,
        }
    }

    // --- submission ---

    /// Turns parsed arguments into a request on this cluster, or Slurm's
    /// refusal, checked in the order sbatch reports them.
    fn resolve(&self, a: &Args) -> Result<Req, Refusal> {
        let names = match &a.partitions {
            Some(list) if !list.is_empty() => list.clone(),
            _ => match self.partitions.iter().find(|p| p.default) {
                Some(p) => vec![p.name.clone()],
                None => {
                    return Err(Refusal::new(
                        Rejection::InvalidPartition,
                        "Invalid partition name specified",
                    )
                    .note("No partition specified or system default partition"));
                }
            },
        };
        let mut partitions = Vec::new();
        for name in &names {
            let p = *self.part_index.get(name).ok_or_else(|| {
                Refusal::new(
                    Rejection::InvalidPartition,
                    "Invalid partition name specified",
                )
                .note(format!("invalid partition specified: {name}"))
            })?;
            if !partitions.contains(&p) {
                partitions.push(p);
            }
        }
        let nodes_of = |list: &Option<Vec<String>>| -> Result<Vec<usize>, Refusal> {
            let mut out = Vec::new();
            for item in list.iter().flatten() {
                let expanded = hostlist::expand(item).map_err(|_| Refusal::invalid_node())?;
                for name in expanded {
                    let n = *self
                        .node_names
                        .get(&name)
                        .ok_or_else(Refusal::invalid_node)?;
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
            Ok(out)
        };
        let exclude = nodes_of(&a.exclude)?;
        let required = nodes_of(&a.nodelist)?;
        let features = match &a.constraint {
            Some(c) => parse_constraint(c)
                .filter(|alts| {
                    alts.iter()
                        .flatten()
                        .all(|f| self.nodes.iter().any(|n| n.features.contains(f)))
                })
                .ok_or_else(|| {
                    Refusal::new(Rejection::InvalidRequest, "Invalid feature specification")
                })?,
            None => Vec::new(),
        };
        let nodes = a
            .nodes
            .unwrap_or(1)
            .max(u32::try_from(required.len()).unwrap_or(u32::MAX))
            .max(1);
        let (gpu_type, gpus) = match (&a.gres, &a.gpus_per_node, &a.gpus_total) {
            (Some(g), _, _) | (None, Some(g), _) => g.clone(),
            (None, None, Some((kind, total))) => (kind.clone(), total.div_ceil(nodes)),
            (None, None, None) => (None, 0),
        };
        let tasks_per_node = a.ntasks.unwrap_or(1).div_ceil(nodes).max(1);
        let mut req = Req {
            tier: partitions
                .iter()
                .map(|&p| self.partitions[p].tier)
                .max()
                .unwrap_or(0),
            partitions,
            gpus,
            gpu_type,
            nodes,
            cpus: a.cpus_per_task.unwrap_or(1) * tasks_per_node,
            mem_mb: a.mem_mb.unwrap_or(0),
            exclude,
            required,
            time: a.time.unwrap_or_default(),
            features,
            requeueable: a.requeue.unwrap_or(true),
            hopeless: Vec::new(),
            shape: 0,
        };
        req.shape = req.shape_hash();
        if req.partitions.iter().all(|&p| {
            !matches!(
                self.partitions[p].state,
                PartitionState::Up | PartitionState::Down
            )
        }) {
            return Err(Refusal::new(
                Rejection::PartitionUnavailable,
                "Required partition not available (inactive or drain)",
            ));
        }
        // Accepted when any partition could ever run it.
        let mut first = None;
        for &p in &req.partitions {
            match self.config_problem(&req, p) {
                None => {
                    req.hopeless = req
                        .partitions
                        .iter()
                        .map(|&p| self.hopeless(&req, p))
                        .collect();
                    return Ok(req);
                }
                Some(refusal) => {
                    first.get_or_insert(refusal);
                }
            }
        }
        Err(first.expect("a request names at least one partition"))
    }

    /// Whether `n` matches the request's configuration (not its CPU count:
    /// Slurm accepts too many CPUs and pends `PartitionConfig`).
    fn config_fits(&self, req: &Req, n: usize) -> bool {
        let node = &self.nodes[n];
        let gpus_ok = req.gpus == 0
            || (node.gpus >= req.gpus
                && req
                    .gpu_type
                    .as_ref()
                    .is_none_or(|t| node.gpu_type.as_ref() == Some(t)));
        gpus_ok
            && !req.exclude.contains(&n)
            && req.mem_mb <= node.memory_mb
            && (req.features.is_empty()
                || req
                    .features
                    .iter()
                    .any(|all| all.iter().all(|f| node.features.contains(f))))
    }

    /// Why partition `p` can never run the request, as sbatch says it.
    fn config_problem(&self, req: &Req, p: usize) -> Option<Refusal> {
        let part = &self.partitions[p];
        let unavailable = || {
            Refusal::new(
                Rejection::NodeConfigUnavailable,
                "Requested node configuration is not available",
            )
        };
        if req.required.iter().any(|r| !part.nodes.contains(r)) {
            return Some(unavailable());
        }
        if req.required.iter().any(|&r| !self.config_fits(req, r)) {
            return Some(unavailable());
        }
        let fitting = part
            .nodes
            .iter()
            .filter(|&&n| self.config_fits(req, n))
            .count();
        if fitting == 0 {
            let memory = part
                .nodes
                .iter()
                .all(|&n| self.nodes[n].memory_mb < req.mem_mb);
            return Some(if memory {
                unavailable().note("Memory specification can not be satisfied")
            } else {
                unavailable()
            });
        }
        if req.nodes as usize <= part.nodes.len() && fitting < req.nodes as usize {
            return Some(unavailable());
        }
        None
    }

    /// The time limit in partition `p`, or `Err` when it exceeds `MaxTime`.
    fn limit_in(&self, req: &Req, p: usize) -> Result<Option<u64>, ()> {
        let max = self.partitions[p].max_time;
        match req.time {
            TimeReq::Default => Ok(max),
            TimeReq::Unlimited if max.is_some() => Err(()),
            TimeReq::Unlimited => Ok(None),
            TimeReq::Minutes(m) if max.is_some_and(|max| m > max) => Err(()),
            TimeReq::Minutes(m) => Ok(Some(m)),
        }
    }

    /// Reasons Slurm gives a job it accepted but can never start in `p`.
    fn hopeless(&self, req: &Req, p: usize) -> Option<&'static str> {
        let part = &self.partitions[p];
        if self.limit_in(req, p).is_err() {
            Some("PartitionTimeLimit")
        } else if req.nodes as usize > part.nodes.len() {
            Some("PartitionNodeLimit")
        } else if part.nodes.iter().all(|&n| self.nodes[n].cpus < req.cpus) {
            Some("PartitionConfig")
        } else if self.config_problem(req, p).is_some() {
            Some("BadConstraints")
        } else {
            None
        }
    }

    fn add_job(
        &mut self,
        name: String,
        args: Vec<String>,
        parsed: Args,
        req: Req,
        env: Option<Vec<(String, String)>>,
    ) -> JobId {
        let id = JobId(self.jobs.len() as u64 + 1);
        self.jobs.push(Job {
            id,
            name,
            args,
            parsed,
            env,
            tier: req.tier,
            req,
            accepted: true,
            state: JobState::Pending,
            // Slurm shows no reason until the scheduler has looked.
            reason: String::new(),
            partition: None,
            nodes: Vec::new(),
            restarts: 0,
            exit: None,
            submit: self.now,
            start: None,
            end: None,
            eligible: self.now,
            limit_minutes: None,
            planned: None,
            run: 0,
            awaiting_rerun: false,
            records: Vec::new(),
        });
        self.enqueue(self.jobs.len() - 1);
        self.dirty = true;
        id
    }

    fn add_ghost(
        &mut self,
        name: String,
        args: Vec<String>,
        parsed: &Args,
        env: Option<Vec<(String, String)>>,
    ) {
        let partitions = parsed
            .partitions
            .iter()
            .flatten()
            .filter_map(|p| self.part_index.get(p).copied())
            .take(1)
            .collect();
        let id = JobId(self.jobs.len() as u64 + 1);
        self.jobs.push(Job {
            id,
            name,
            args,
            parsed: parsed.clone(),
            env,
            req: Req {
                partitions,
                ..Req::default()
            },
            tier: 0,
            accepted: false,
            state: JobState::Failed,
            reason: "BadConstraints".to_string(),
            partition: None,
            nodes: Vec::new(),
            restarts: 0,
            exit: Some(ExitStatus { code: 1, signal: 0 }),
            submit: self.now,
            start: None,
            end: Some(self.now),
            eligible: self.now,
            limit_minutes: None,
            planned: None,
            run: 0,
            awaiting_rerun: false,
            records: Vec::new(),
        });
    }

    fn enqueue(&mut self, idx: usize) {
        let job = &self.jobs[idx];
        self.pending.insert((Reverse(job.tier), job.id));
    }

    fn unqueue(&mut self, idx: usize) {
        let job = &self.jobs[idx];
        self.pending.remove(&(Reverse(job.tier), job.id));
    }

    // --- the clock ---

    fn run_to(&mut self, target: Duration) {
        loop {
            self.schedule();
            let at = match self.events.peek() {
                Some(Reverse(e)) if e.at <= target => e.at,
                _ => break,
            };
            self.now = self.now.max(at);
            while let Some(Reverse(e)) = self.events.peek().copied() {
                if e.at > at {
                    break;
                }
                self.events.pop();
                self.handle(e.kind);
            }
        }
        self.now = self.now.max(target);
        self.schedule();
    }

    fn handle(&mut self, kind: EventKind) {
        match kind {
            EventKind::End { job, run } => {
                let Some(idx) = self.job_index(job) else {
                    return;
                };
                let j = &self.jobs[idx];
                if j.run != run || j.state != JobState::Running {
                    return;
                }
                // A dead slurmd reports nothing: the job ends when Slurm
                // notices the crash.
                if j.nodes.iter().any(|&n| self.nodes[n].crashed.is_some()) {
                    return;
                }
                match j
                    .planned
                    .expect("a running job with an end event has an outcome")
                {
                    Outcome::Exit(0) => {
                        self.end_job(idx, JobState::Completed, EXIT_OK, "", Some(EXIT_OK))
                    }
                    Outcome::Exit(code) => {
                        let exit = ExitStatus { code, signal: 0 };
                        self.end_job(idx, JobState::Failed, exit, "NonZeroExitCode", Some(exit));
                    }
                    Outcome::Signal(signal) => {
                        let exit = ExitStatus { code: 0, signal };
                        self.end_job(idx, JobState::Failed, exit, "JobLaunchFailure", Some(exit));
                    }
                    Outcome::Timeout => {
                        self.end_job(
                            idx,
                            JobState::Timeout,
                            EXIT_TERM,
                            "TimeLimit",
                            Some(EXIT_OK),
                        );
                    }
                }
            }
            EventKind::Eligible { job, run } => {
                if let Some(idx) = self.job_index(job) {
                    if self.jobs[idx].run == run && self.jobs[idx].state.is_pending() {
                        self.dirty = true;
                    }
                }
            }
            EventKind::Detect { node, crash } => {
                let n = &mut self.nodes[node];
                if n.crash_gen != crash || n.crashed.is_none() {
                    return;
                }
                n.crashed = None;
                n.down = true;
                n.not_responding = true;
                let reason = self.admin_reason("Not responding");
                self.nodes[node].reason = Some(reason);
                self.fail_jobs_on(node);
                self.dirty = true;
            }
        }
    }

    // --- job transitions ---

    /// Frees the nodes of a job that holds them.
    fn release(&mut self, idx: usize) {
        if !self.jobs[idx].state.is_active() {
            return;
        }
        let (id, gpus, cpus) = {
            let job = &self.jobs[idx];
            (job.id, job.req.gpus, job.req.cpus)
        };
        for k in 0..self.jobs[idx].nodes.len() {
            let node = &mut self.nodes[self.jobs[idx].nodes[k]];
            node.gpus_used -= gpus;
            node.cpus_used -= cpus;
            node.jobs.retain(|&j| j != id);
        }
        self.dirty = true;
    }

    /// Ends a job for good; `record` is the exit code accounting logs, or
    /// `None` when Slurm writes no record.
    fn end_job(
        &mut self,
        idx: usize,
        state: JobState,
        exit: ExitStatus,
        reason: &str,
        record: Option<ExitStatus>,
    ) {
        self.release(idx);
        self.unqueue(idx);
        if let Some(record_exit) = record {
            if self.cfg.accounting != AccountingSource::Controller {
                let rec = self.record(&self.jobs[idx], state.clone(), record_exit);
                let now = self.now;
                self.jobs[idx].records.push((now, rec));
            }
        }
        let now = self.now;
        let job = &mut self.jobs[idx];
        job.state = state;
        job.exit = Some(exit);
        job.reason = reason.to_string();
        job.end = Some(now);
        job.planned = None;
        job.run += 1;
    }

    /// Puts a job back to pending under the same id; a run it had ends with
    /// a record in state `cause` (`REQUEUED`, `NODE_FAIL`, `PREEMPTED`).
    fn requeue_job(&mut self, idx: usize, cause: JobState) {
        if self.jobs[idx].state.is_active() {
            self.release(idx);
            if self.cfg.accounting != AccountingSource::Controller {
                let rec = self.record(&self.jobs[idx], cause, EXIT_OK);
                let now = self.now;
                self.jobs[idx].records.push((now, rec));
            }
        }
        let eligible = self.now + self.cfg.requeue_delay;
        let job = &mut self.jobs[idx];
        job.state = JobState::Pending;
        job.reason = "BeginTime".to_string();
        job.restarts += 1;
        job.partition = None;
        job.nodes.clear();
        job.start = None;
        job.end = None;
        job.exit = None;
        job.planned = None;
        job.limit_minutes = None;
        job.run += 1;
        job.awaiting_rerun = true;
        job.eligible = eligible;
        let (id, run) = (job.id, job.run);
        self.enqueue(idx);
        self.push_event(eligible, EventKind::Eligible { job: id, run });
        self.dirty = true;
    }

    fn cancel_job(&mut self, idx: usize) {
        let job = &self.jobs[idx];
        if job.state.is_active() {
            self.end_job(idx, JobState::Cancelled, EXIT_TERM, "", Some(EXIT_OK));
        } else if job.state.is_pending() {
            // Cancelled while waiting to rerun: Slurm writes no final record,
            // accounting's last word stays the requeue.
            let record = (!job.awaiting_rerun).then_some(EXIT_OK);
            self.end_job(idx, JobState::Cancelled, EXIT_OK, "", record);
        }
    }

    fn preempt_job(&mut self, idx: usize) {
        let p = self.jobs[idx]
            .partition
            .expect("a running job has a partition");
        if self.partitions[p].preempt == PreemptMode::Requeue && self.jobs[idx].req.requeueable {
            self.requeue_job(idx, JobState::Preempted);
        } else {
            self.end_job(idx, JobState::Preempted, EXIT_TERM, "", Some(EXIT_OK));
        }
    }

    /// A node failed: its jobs are requeued or end `NODE_FAIL`.
    fn fail_jobs_on(&mut self, n: usize) {
        let victims = self.nodes[n].jobs.clone();
        for id in victims {
            let Some(idx) = self.job_index(id) else {
                continue;
            };
            if self.jobs[idx].req.requeueable {
                self.requeue_job(idx, JobState::NodeFail);
            } else {
                self.end_job(idx, JobState::NodeFail, EXIT_OK, "NodeDown", Some(EXIT_OK));
            }
        }
    }

    fn start_job(&mut self, idx: usize, p: usize, nodes: Vec<usize>) {
        self.unqueue(idx);
        let limit = self.limit_in(&self.jobs[idx].req, p).unwrap_or(None);
        let (id, gpus, cpus) = {
            let job = &self.jobs[idx];
            (job.id, job.req.gpus, job.req.cpus)
        };
        for &n in &nodes {
            let node = &mut self.nodes[n];
            node.gpus_used += gpus;
            node.cpus_used += cpus;
            node.jobs.push(id);
        }
        let now = self.now;
        let job = &mut self.jobs[idx];
        job.state = JobState::Running;
        job.reason.clear();
        job.partition = Some(p);
        job.nodes = nodes;
        job.start = Some(now);
        job.end = None;
        job.exit = None;
        job.limit_minutes = limit;
        job.awaiting_rerun = false;
        job.run += 1;
        let mut planned = match self.behaviour_for(idx) {
            Behaviour::Exit { after, code } => Some((now + after, Outcome::Exit(code))),
            Behaviour::Killed { after, signal } => Some((now + after, Outcome::Signal(signal))),
            Behaviour::RunForever => None,
        };
        if let Some(minutes) = limit {
            let at = now + Duration::from_secs(minutes * 60);
            if planned.is_none_or(|(end, _)| at < end) {
                planned = Some((at, Outcome::Timeout));
            }
        }
        if let Some((at, outcome)) = planned {
            let job = &mut self.jobs[idx];
            job.planned = Some(outcome);
            let run = job.run;
            self.push_event(at, EventKind::End { job: id, run });
        }
    }

    /// Node rule, then name rule, then the workload closure, then forever.
    fn behaviour_for(&mut self, idx: usize) -> Behaviour {
        let State {
            jobs,
            nodes,
            partitions,
            on_start,
            by_name,
            cfg,
            now,
            ..
        } = self;
        let job = &jobs[idx];
        if let Some(b) = job.nodes.iter().find_map(|&n| nodes[n].behaviour) {
            return b;
        }
        if let Some(b) = by_name.get(&job.name) {
            return *b;
        }
        let Some(workload) = on_start.as_mut() else {
            return Behaviour::RunForever;
        };
        let names: Vec<String> = job.nodes.iter().map(|&n| nodes[n].name.clone()).collect();
        let partition = job.partition.map_or("", |p| partitions[p].name.as_str());
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let start = JobStart {
            id: job.id,
            name: &job.name,
            partition,
            nodes: &names,
            restarts: job.restarts,
            args: &job.args,
            now: Timestamp::from_second(cfg.epoch.saturating_add(secs))
                .expect("virtual time within jiff's range"),
        };
        workload(&start)
    }

    // --- the scheduler ---

    fn schedule(&mut self) {
        while self.dirty {
            self.dirty = false;
            self.schedule_pass();
        }
    }

    /// One pass over the queue: higher tiers first, FIFO within a tier; a job
    /// that cannot start does not hold back the ones behind it (backfill).
    fn schedule_pass(&mut self) {
        let order: Vec<JobId> = self.pending.iter().map(|&(_, id)| id).collect();
        // Partitions where a job already waits for resources: the ones behind
        // it wait for `Priority`.
        let mut waiting = vec![false; self.partitions.len()];
        // Within a pass resources only shrink (higher tiers go first, so a
        // job started in this pass is never preempted later in it): a job
        // shaped like one that could not start cannot start either. This
        // keeps a pass over a long queue cheap.
        let mut failed: HashMap<u64, (usize, Verdict)> = HashMap::new();
        for id in order {
            let Some(idx) = self.job_index(id) else {
                continue;
            };
            if !self.jobs[idx].state.is_pending() {
                continue;
            }
            if self.jobs[idx].eligible > self.now {
                self.set_reason(idx, "BeginTime");
                continue;
            }
            let req = &self.jobs[idx].req;
            let known = failed
                .get(&req.shape)
                .filter(|(first, _)| self.jobs[*first].req.same_shape(req))
                .map(|(_, verdict)| verdict.clone());
            match known {
                Some(Verdict::Waits) => self.set_reason(idx, "Priority"),
                Some(Verdict::Blocked(reason)) => self.set_reason(idx, &reason),
                None => match self.place_or_explain(idx, &mut waiting) {
                    Err(verdict) => {
                        let shape = self.jobs[idx].req.shape;
                        failed.insert(shape, (idx, verdict));
                    }
                    // Started by preempting others: resources grew.
                    Ok(true) => failed.clear(),
                    Ok(false) => {}
                },
            }
        }
    }

    /// Starts the job if it fits, preempting lower tiers if it may (`Ok`,
    /// true when it preempted), or sets its pending reason and says why it
    /// waits.
    fn place_or_explain(&mut self, idx: usize, waiting: &mut [bool]) -> Result<bool, Verdict> {
        let mut best: Option<(u8, usize, Why)> = None;
        for k in 0..self.jobs[idx].req.partitions.len() {
            let p = self.jobs[idx].req.partitions[k];
            match self.try_place(&self.jobs[idx].req, p) {
                Ok(nodes) => {
                    self.start_job(idx, p, nodes);
                    return Ok(false);
                }
                Err(why) => {
                    let rank = self.rank(&why);
                    if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                        best = Some((rank, p, why));
                    }
                }
            }
        }
        if let Some((p, nodes)) = self.try_preempt_for(idx) {
            self.start_job(idx, p, nodes);
            return Ok(true);
        }
        let (_, p, why) = best.expect("a job names at least one partition");
        let verdict = match why {
            Why::Resources => {
                let reason = if waiting[p] { "Priority" } else { "Resources" };
                waiting[p] = true;
                self.set_reason(idx, reason);
                return Err(Verdict::Waits);
            }
            Why::Static(s) => s.to_string(),
            Why::NodesUnavailable(nodes) => format!(
                "ReqNodeNotAvail, UnavailableNodes:{}",
                self.node_names_of(&nodes).join(",")
            ),
        };
        self.set_reason(idx, &verdict);
        Err(Verdict::Blocked(verdict))
    }

    fn set_reason(&mut self, idx: usize, reason: &str) {
        if self.jobs[idx].reason != reason {
            self.jobs[idx].reason = reason.to_string();
        }
    }

    /// Lower is more hopeful; the reason shown is the most hopeful one over
    /// the job's partitions.
    fn rank(&self, why: &Why) -> u8 {
        match why {
            Why::Resources => 0,
            Why::NodesUnavailable(_) => 1,
            Why::Static(s) => match classify_pending(s) {
                PendingOutlook::Waiting => 0,
                PendingOutlook::Blocked => 1,
                PendingOutlook::Hopeless => 2,
            },
        }
    }

    fn fits_now(&self, req: &Req, n: usize) -> bool {
        let node = &self.nodes[n];
        node.gpus - node.gpus_used >= req.gpus && node.cpus - node.cpus_used >= req.cpus
    }

    /// Nodes in `p` where the request starts now (first fit, in node order),
    /// or why not.
    fn try_place(&self, req: &Req, p: usize) -> Result<Vec<usize>, Why> {
        let part = &self.partitions[p];
        match part.state {
            PartitionState::Down => return Err(Why::Static("PartitionDown")),
            PartitionState::Inactive => return Err(Why::Static("PartitionInactive")),
            PartitionState::Up | PartitionState::Drain => {}
        }
        if let Some(reason) = req.hopeless_in(p) {
            return Err(Why::Static(reason));
        }
        let unavailable: Vec<usize> = req
            .required
            .iter()
            .copied()
            .filter(|&n| !self.usable(n))
            .collect();
        if !unavailable.is_empty() {
            return Err(Why::NodesUnavailable(unavailable));
        }
        let want = req.nodes as usize;
        let mut chosen: Vec<usize> = req
            .required
            .iter()
            .copied()
            .filter(|&n| self.fits_now(req, n))
            .collect();
        let required_busy = chosen.len() < req.required.len();
        // Usable nodes that could ever take the job: too few means it waits
        // for nodes to come back, not for resources.
        let mut usable = req.required.len();
        for &n in &part.nodes {
            if !required_busy && chosen.len() == want {
                break;
            }
            if req.required.contains(&n)
                || !self.config_fits(req, n)
                || !self.usable(n)
                || self.nodes[n].cpus < req.cpus
            {
                continue;
            }
            usable += 1;
            if chosen.len() < want && self.fits_now(req, n) {
                chosen.push(n);
            }
        }
        if !required_busy && chosen.len() == want {
            chosen.sort_unstable();
            Ok(chosen)
        } else if usable < want {
            Err(Why::Static(ALL_NODES_DOWN))
        } else {
            Err(Why::Resources)
        }
    }

    /// Partition-priority preemption: a single-node job finds a node where
    /// preempting jobs of lower-tier partitions (newest first) makes room.
    fn try_preempt_for(&mut self, idx: usize) -> Option<(usize, Vec<usize>)> {
        let (p, n, victims) = self.preemption_plan(&self.jobs[idx].req)?;
        for v in victims {
            self.preempt_job(v);
        }
        Some((p, vec![n]))
    }

    /// The partition, node and victims of a preemption that makes room.
    fn preemption_plan(&self, req: &Req) -> Option<(usize, usize, Vec<usize>)> {
        // Most jobs can preempt nobody: no preemptable partition has a
        // lower tier. Cheap to rule out, and this runs for every waiting job.
        let lowest = self
            .partitions
            .iter()
            .filter(|p| p.preempt != PreemptMode::Off)
            .map(|p| p.tier)
            .min()?;
        if req.tier <= lowest || req.nodes != 1 || req.required.len() > 1 {
            return None;
        }
        for &p in &req.partitions {
            let part = &self.partitions[p];
            if !part.state.schedules() || req.hopeless_in(p).is_some() {
                continue;
            }
            for &n in &part.nodes {
                if !self.config_fits(req, n)
                    || !self.usable(n)
                    || self.nodes[n].cpus < req.cpus
                    || req.required.first().is_some_and(|&r| r != n)
                {
                    continue;
                }
                let node = &self.nodes[n];
                let (mut gpus, mut cpus) = (node.gpus - node.gpus_used, node.cpus - node.cpus_used);
                let mut victims = Vec::new();
                for v in node.jobs.iter().rev().filter_map(|&v| self.job_index(v)) {
                    if gpus >= req.gpus && cpus >= req.cpus {
                        break;
                    }
                    let vp = self.jobs[v]
                        .partition
                        .expect("running jobs have a partition");
                    if self.partitions[vp].tier >= part.tier
                        || self.partitions[vp].preempt == PreemptMode::Off
                    {
                        continue;
                    }
                    gpus += self.jobs[v].req.gpus;
                    cpus += self.jobs[v].req.cpus;
                    victims.push(v);
                }
                if !victims.is_empty() && gpus >= req.gpus && cpus >= req.cpus {
                    return Some((p, n, victims));
                }
            }
        }
        None
    }

    /// `sbatch --test-only`: now where the request fits now, otherwise when
    /// enough running jobs reach their time limits (a job without one counts
    /// as running for a year, as Slurm does). Pending jobs are not counted.
    fn estimate(&self, req: &Req) -> StartEstimate {
        let mut best: Option<(Duration, usize, Vec<usize>)> = None;
        for &p in &req.partitions {
            if !self.partitions[p].state.schedules() || req.hopeless_in(p).is_some() {
                continue;
            }
            let found = match self.try_place(req, p) {
                Ok(nodes) => Some((self.now, nodes)),
                Err(_) => self.later_start(req, p),
            };
            if let Some((at, nodes)) = found {
                if best.as_ref().is_none_or(|(b, _, _)| at < *b) {
                    best = Some((at, p, nodes));
                }
            }
        }
        let (at, p, nodes) = best.unwrap_or_else(|| {
            let p = req.partitions[0];
            let node = self.partitions[p]
                .nodes
                .iter()
                .copied()
                .find(|&n| self.config_fits(req, n));
            (self.now + FAR_FUTURE, p, node.into_iter().collect())
        });
        StartEstimate {
            start: self.stamp(at),
            nodes: self.node_names_of(&nodes),
            partition: self.partitions[p].name.clone(),
            processors: req.cpus * req.nodes,
        }
    }

    fn later_start(&self, req: &Req, p: usize) -> Option<(Duration, Vec<usize>)> {
        let mut times: Vec<(Duration, usize)> = Vec::new();
        for &n in &self.partitions[p].nodes {
            if !self.config_fits(req, n) || !self.usable(n) || self.nodes[n].cpus < req.cpus {
                continue;
            }
            let node = &self.nodes[n];
            let mut ends: Vec<(Duration, u32, u32)> = node
                .jobs
                .iter()
                .filter_map(|&j| self.job_index(j))
                .map(|j| {
                    let job = &self.jobs[j];
                    let start = job.start.unwrap_or(self.now);
                    let limit = job
                        .limit_minutes
                        .map_or(FAR_FUTURE, |m| Duration::from_secs(m * 60));
                    (start + limit, job.req.gpus, job.req.cpus)
                })
                .collect();
            ends.sort();
            let (mut gpus, mut cpus) = (node.gpus - node.gpus_used, node.cpus - node.cpus_used);
            for (at, g, c) in ends {
                gpus += g;
                cpus += c;
                if gpus >= req.gpus && cpus >= req.cpus {
                    times.push((at.max(self.now), n));
                    break;
                }
            }
        }
        let mut chosen: Vec<(Duration, usize)> = req
            .required
            .iter()
            .map(|&r| times.iter().copied().find(|&(_, n)| n == r))
            .collect::<Option<_>>()?;
        times.sort();
        for t in times {
            if chosen.len() >= req.nodes as usize {
                break;
            }
            if !chosen.iter().any(|&(_, n)| n == t.1) {
                chosen.push(t);
            }
        }
        if chosen.len() < req.nodes as usize {
            return None;
        }
        let at = chosen.iter().map(|&(t, _)| t).max()?;
        let mut nodes: Vec<usize> = chosen.into_iter().map(|(_, n)| n).collect();
        nodes.sort_unstable();
        Some((at, nodes))
    }
}

mod args;
use args::*;

#[cfg(test)]
mod tests;
