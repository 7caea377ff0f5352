//! One pass of the daemon over every run: observe (batched), decide (pure),
//! act, record.
//!
//! Slurm load per tick is constant in the number of runs: one `squeue` for all
//! live jobs, at most one `sacct` for jobs that just left the queue, and (rarely)
//! one `squeue --name` for submissions whose answer was lost. Submissions and
//! cancellations are the only per-run commands, and only when a run needs one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use jiff::Timestamp;

use super::attempt;
use crate::model::{RunId, RunSpec};
use crate::placement::catalog::Catalog;
use crate::placement::inventory::{
    Availability, PartitionGpus, choose, order_by_estimate, partition_gpus, unfit,
};
use crate::policy::blacklist::Strike;
use crate::policy::decide::{self, Action, JobView, Observation, SubmitResult, job_name};
use crate::policy::signatures::{SignatureAction, SignatureSet};
use crate::policy::state::{AttemptPhase, Blame, RunState};
use crate::slurm::{
    JobId, JobInfo, JobRecord, NodeInfo, PartitionInfo, PendingUpdate, Rejection, Slurm, SlurmError,
};
use crate::store::atomic::{self, StoreError};
use crate::store::records::{
    HEARTBEAT_VERSION, Heartbeat, OUTCOME_VERSION, Outcome, PROGRESS_VERSION, Progress,
};
use crate::store::{RunDir, StateDir};

/// What one tick did, for the log and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct TickReport {
    pub runs: usize,
    pub active: usize,
    pub submitted: usize,
    pub cancelled: usize,
    /// Runs that could not be read or written (quarantined for this tick).
    pub problems: Vec<String>,
    /// Slurm could not be asked this tick.
    pub slurm_unavailable: Option<String>,
}

struct Loaded {
    id: RunId,
    dir: RunDir,
    spec: RunSpec,
    state: RunState,
}

/// The node of the run's last ended attempt, when its failure asks the next
/// attempt to go elsewhere.
fn suspect_node(state: &RunState) -> Option<String> {
    let last = state.attempts.iter().rev().find(|a| a.end.is_some())?;
    let action = last.end.as_ref()?.signature.as_ref()?.action;
    matches!(
        action,
        SignatureAction::RetryElsewhere | SignatureAction::CountAndRetryElsewhere
    )
    .then(|| last.node.clone())
    .flatten()
}

/// A run's spec (immutable) and state as last read or written, with the state
/// file's size and mtime then: unchanged files are not read again.
struct Cached {
    spec: RunSpec,
    state: Option<RunState>,
    stamp: Option<(std::time::SystemTime, u64)>,
}

pub struct Ticker<'a, S: Slurm + ?Sized> {
    slurm: &'a S,
    state_dir: &'a StateDir,
    /// The shepherd binary the jobs run as their wrapper.
    exe: PathBuf,
    cache: RefCell<HashMap<RunId, Cached>>,
    /// Slurm's cluster name (keys the blacklist), learnt once.
    cluster: RefCell<Option<String>>,
    /// Node names the cluster knows, and when they were read: only these may
    /// go into `--exclude`.
    known: RefCell<Option<(Timestamp, Vec<NodeInfo>)>>,
    /// Leaf switches, for correlated failures.
    topology: RefCell<Option<Vec<SwitchGroup>>>,
    /// From the configuration file: the GPU catalog with the lab's entries,
    /// fault signatures, and node groups for clusters without a topology.
    catalog: Catalog,
    signatures: std::sync::Arc<SignatureSet>,
    groups: Vec<SwitchGroup>,
    /// The cluster's partitions, read when a run needs placing.
    partitions: RefCell<Option<(Timestamp, Vec<PartitionInfo>)>>,
    /// The blacklist file as last seen: a change (a ban by the CLI, or by
    /// this daemon) makes pending jobs learn the new exclude list.
    blacklist_stamp: RefCell<Option<(std::time::SystemTime, u64)>>,
}

/// A leaf switch and the nodes under it.
type SwitchGroup = (String, Vec<String>);

/// Why a run's next job cannot be placed.
enum PlanError {
    /// Slurm's inventory cannot be read now, or no partition can hold the
    /// job until nodes come back: try again later.
    Unobservable,
    /// No partition can hold the request; why not, per partition.
    NoPartition(String),
}

/// How long the node names read from Slurm are trusted.
const INVENTORY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<'a, S: Slurm + ?Sized> Ticker<'a, S> {
    pub fn new(slurm: &'a S, state_dir: &'a StateDir, exe: PathBuf) -> Self {
        Ticker {
            slurm,
            state_dir,
            exe,
            cache: RefCell::new(HashMap::new()),
            cluster: RefCell::new(None),
            known: RefCell::new(None),
            partitions: RefCell::new(None),
            topology: RefCell::new(None),
            catalog: Catalog::builtin(),
            signatures: std::sync::Arc::new(SignatureSet::builtin()),
            groups: Vec::new(),
            blacklist_stamp: RefCell::new(None),
        }
    }

    /// Applies the configuration file's catalog, signatures and node groups.
    pub fn with_config(mut self, config: &crate::config::Config) -> Result<Self, String> {
        self.catalog = config.catalog();
        self.signatures = std::sync::Arc::new(config.signatures()?);
        self.groups = config.node_groups()?;
        Ok(self)
    }

    /// True when the blacklist changed since the last call.
    fn blacklist_changed(&self) -> bool {
        let Some(cluster) = self.cluster.borrow().clone() else {
            return false;
        };
        let now = stamp(&self.state_dir.blacklist_path(&cluster));
        let mut last = self.blacklist_stamp.borrow_mut();
        let changed = *last != now;
        *last = now;
        changed
    }

    fn cluster_name(&self) -> Option<String> {
        let mut c = self.cluster.borrow_mut();
        if c.is_none() {
            *c = self.slurm.cluster().ok().map(|i| i.name);
        }
        c.clone()
    }

    /// The node inventory; `fresh` forces a new read (GPU availability
    /// changes by the second; node names rarely).
    fn inventory(&self, now: Timestamp, fresh: bool) -> Option<Vec<NodeInfo>> {
        let mut k = self.known.borrow_mut();
        let recent = k
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at).unsigned_abs() < INVENTORY_TTL);
        if fresh || !recent {
            *k = Some((now, self.slurm.nodes().ok()?));
        }
        k.as_ref().map(|(_, n)| n.clone())
    }

    fn known_nodes(&self, now: Timestamp) -> Option<Vec<String>> {
        Some(
            self.inventory(now, false)?
                .into_iter()
                .map(|n| n.name)
                .collect(),
        )
    }

    fn partition_list(&self, now: Timestamp) -> Option<Vec<PartitionInfo>> {
        let mut p = self.partitions.borrow_mut();
        let fresh = p
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at).unsigned_abs() < INVENTORY_TTL);
        if !fresh {
            *p = Some((now, self.slurm.partitions().ok()?));
        }
        p.as_ref().map(|(_, v)| v.clone())
    }

    /// Where the run's next job may go: nodes to avoid, and for a GPU run
    /// that pins no partition, the partitions that can hold it, best first.
    fn plan(
        &self,
        spec: &RunSpec,
        state: &RunState,
        now: Timestamp,
    ) -> Result<attempt::Placement, PlanError> {
        let exclude = self.exclude_for(spec, state, now);
        let script_pins = crate::submit::directives::sbatch_files(&spec.sbatch_lines)
            .partition
            .is_some();
        let partitions = if !spec.resources.partitions.is_empty() {
            Some(spec.resources.partitions.clone())
        } else if spec.resources.gpus.is_some() && !script_pins {
            let nodes = self.inventory(now, true).ok_or(PlanError::Unobservable)?;
            let parts = self.partition_list(now).ok_or(PlanError::Unobservable)?;
            let catalog = &self.catalog;
            let views = partition_gpus(&parts, &nodes, &exclude, catalog);
            let chosen = choose(&views, &spec.resources, catalog);
            if chosen.is_empty() {
                // Down, drained or banned nodes may come back: wait for them
                // rather than fail the run.
                let later = views.iter().any(|v| {
                    v.gpus_total > 0
                        && unfit(&v.with_all_nodes_usable(), &spec.resources, catalog).is_none()
                });
                if later {
                    return Err(PlanError::Unobservable);
                }
                let why: Vec<String> = views
                    .iter()
                    .filter(|v| v.gpus_total > 0)
                    .filter_map(|v| {
                        unfit(v, &spec.resources, catalog).map(|w| format!("{}: {w}", v.partition))
                    })
                    .collect();
                return Err(PlanError::NoPartition(why.join("; ")));
            }
            let gpus = spec.resources.gpus.unwrap_or(1);
            let chosen = if chosen[0].availability(gpus) == Availability::None {
                self.by_estimate(spec, state, &exclude, chosen)
            } else {
                chosen
            };
            Some(chosen.iter().map(|v| v.partition.clone()).collect())
        } else {
            None
        };
        Ok(attempt::Placement {
            exclude,
            partitions,
        })
    }

    /// The `--exclude` list for a run's next job. Without an inventory no
    /// list is passed, so the script's own `--exclude` applies as written.
    fn exclude_for(&self, spec: &RunSpec, state: &RunState, now: Timestamp) -> Vec<String> {
        let Some(known) = self.known_nodes(now) else {
            return Vec::new();
        };
        let mut banned = match (spec.policy.blacklist, self.cluster_name()) {
            (true, Some(cluster)) => self
                .state_dir
                .load_blacklist(&cluster)
                .map(|bl| bl.exclude_list(&known, now))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        // A node this run's last attempt failed on in a way that may be the
        // node's: the next attempt tries elsewhere.
        if let Some(node) = suspect_node(state).filter(|n| known.contains(n) && !banned.contains(n))
        {
            banned.push(node);
        }
        attempt::exclude_list(spec, &banned, &known)
    }

    /// Nothing is free anywhere: ask Slurm when the job would start in each
    /// partition (`sbatch --test-only`, at most four), soonest first.
    fn by_estimate<'v>(
        &self,
        spec: &RunSpec,
        state: &RunState,
        exclude: &[String],
        chosen: Vec<&'v PartitionGpus>,
    ) -> Vec<&'v PartitionGpus> {
        let Some(attempt) = state.attempts.last().map(|a| a.attempt) else {
            return chosen;
        };
        let script = self
            .state_dir
            .run(&spec.run_id)
            .attempt(attempt)
            .job_script();
        let gres = match (&spec.resources.gpu_type, spec.resources.gpus) {
            (Some(t), Some(n)) => format!("--gres=gpu:{t}:{n}"),
            (None, Some(n)) => format!("--gres=gpu:{n}"),
            _ => String::new(),
        };
        let mut estimates = HashMap::new();
        for p in chosen.iter().take(4) {
            let mut args = vec![format!("--partition={}", p.partition), gres.clone()];
            if !exclude.is_empty() {
                args.push(format!("--exclude={}", exclude.join(",")));
            }
            let request = crate::slurm::SubmitRequest {
                script: crate::slurm::ScriptSource::File(script.clone()),
                args,
                env: None,
            };
            if let Ok(e) = self.slurm.estimate_start(&request) {
                estimates.insert(p.partition.clone(), e.start);
            }
        }
        order_by_estimate(chosen, |p| estimates.get(p).copied())
    }

    /// Leaf switches and their nodes, read once per daemon (the topology
    /// changes with hardware, not by the minute). Empty without a topology
    /// plugin.
    fn switch_groups(&self) -> Vec<SwitchGroup> {
        let mut t = self.topology.borrow_mut();
        if t.is_none() {
            *t = self.slurm.topology().ok().map(|switches| {
                switches
                    .into_iter()
                    .filter(|s| !s.nodes.is_empty())
                    .map(|s| (s.name, s.nodes))
                    .collect()
            });
        }
        // Without a topology plugin, the configured node groups stand in.
        match t.clone().unwrap_or_default() {
            switches if switches.is_empty() => self.groups.clone(),
            switches => switches,
        }
    }

    /// Strikes the nodes blamed by attempts that ended in this step.
    fn strike_nodes(&self, run: &Loaded, before: &RunState, after: &RunState, now: Timestamp) {
        if !run.spec.policy.blacklist {
            return;
        }
        let Some(cluster) = self.cluster_name() else {
            return;
        };
        for a in &after.attempts {
            let was_live = before
                .attempts
                .iter()
                .any(|b| b.attempt == a.attempt && b.is_live());
            let (true, Some(end), Some(node)) = (was_live, a.end.as_ref(), a.node.as_deref())
            else {
                continue;
            };
            let action = end.signature.as_ref().map(|s| s.action);
            let mut evidence = Strike {
                time: now,
                run_id: run.id.to_string(),
                job_id: a.job_id.map(|j| j.0),
                reason: end.detail.clone(),
            };
            let ttl = run.spec.policy.blacklist_ttl;
            let result = match (end.blame, action) {
                // Suspected, not proven: avoided by this run, no strike.
                (Blame::Node, Some(SignatureAction::RetryElsewhere)) => continue,
                (Blame::Node, _) => {
                    let groups = self.switch_groups();
                    let incident = self.state_dir.update_blacklist(&cluster, |bl| {
                        let ban = bl.strike(node, evidence, ttl);
                        (ban, bl.correlate(node, &groups, now, ttl))
                    });
                    if let Ok((_, Some(inc))) = &incident {
                        let event = decide::Event {
                            kind: "switch_banned",
                            attempt: Some(a.attempt),
                            job_id: a.job_id,
                            message: format!(
                                "nodes {} under switch {} failed within minutes: one incident; banned {} until {}",
                                inc.failed.join(", "),
                                inc.switch,
                                inc.banned.join(", "),
                                inc.until
                            ),
                        };
                        let _ = run.dir.append_events(&[event], after.status.as_str(), now);
                    }
                    incident.map(|(ban, _)| Some(ban))
                }
                // Ambiguous: only the same failure from another run bans it.
                (_, Some(SignatureAction::CountAndRetryElsewhere)) => {
                    evidence.reason = end
                        .signature
                        .as_ref()
                        .map(|s| s.id.clone())
                        .unwrap_or_default();
                    self.state_dir
                        .update_blacklist(&cluster, |bl| bl.suspect(node, evidence, ttl))
                }
                _ => continue,
            };
            if let Ok(Some(ban)) = result {
                let until = ban
                    .until
                    .map_or("until unbanned".to_string(), |u| format!("until {u}"));
                let event = decide::Event {
                    kind: "node_banned",
                    attempt: Some(a.attempt),
                    job_id: a.job_id,
                    message: format!("banned node {node} {until}: {}", end.detail),
                };
                let _ = run.dir.append_events(&[event], after.status.as_str(), now);
            }
        }
    }

    pub fn tick(&self, now: Timestamp) -> TickReport {
        let mut report = TickReport::default();
        let ids = match self.state_dir.run_ids() {
            Ok(ids) => ids,
            Err(e) => {
                report.problems.push(e.to_string());
                return report;
            }
        };
        report.runs = ids.len();
        let mut runs = Vec::new();
        for id in ids {
            match self.load(&id, now) {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => {}
                Err(e) => report.problems.push(format!("run {id}: {e}")),
            }
        }
        report.active = runs.len();

        // Observe: one query for every live job id, one for the ones gone.
        let ids: Vec<JobId> = runs
            .iter()
            .filter_map(|r| r.state.live_attempt().and_then(|a| a.job_id))
            .collect();
        let jobs: Result<HashMap<JobId, JobInfo>, SlurmError> = if ids.is_empty() {
            Ok(HashMap::new())
        } else {
            self.slurm
                .jobs(&ids)
                .map(|js| js.into_iter().map(|j| (j.id, j)).collect())
        };
        let gone: Vec<JobId> = match &jobs {
            Ok(map) => ids
                .iter()
                .filter(|id| !map.contains_key(id))
                .copied()
                .collect(),
            Err(_) => Vec::new(),
        };
        let records: Option<Vec<JobRecord>> = if gone.is_empty() {
            Some(Vec::new())
        } else {
            self.slurm.accounting(&gone).ok()
        };
        let names: Vec<String> = runs
            .iter()
            .filter_map(|r| {
                let a = r.state.live_attempt()?;
                a.job_id.is_none().then(|| job_name(&r.spec, a.attempt))
            })
            .collect();
        let found: Option<Vec<JobInfo>> = if names.is_empty() {
            None
        } else {
            self.slurm.jobs_by_name(&names).ok()
        };
        if let Err(e) = &jobs {
            report.slurm_unavailable = Some(e.to_string());
        }

        let mut cancels: Vec<(usize, JobId)> = Vec::new();
        let mut steps = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let obs = self.observe(run, &jobs, records.as_deref(), found.as_deref());
            let step = decide::step(&run.spec, &run.state, &obs.0, now);
            steps.push((i, step, obs.1));
        }
        for (i, step, control_files) in steps {
            let run = &mut runs[i];
            // Record first: the intent to submit must be on disk before sbatch.
            if let Err(e) = self.record(run, &step.state, &step.events, now) {
                report.problems.push(format!("run {}: {e}", run.id));
                continue;
            }
            self.strike_nodes(run, &run.state, &step.state, now);
            run.state = step.state;
            for f in control_files {
                let _ = std::fs::remove_file(f);
            }
            for action in step.actions {
                match action {
                    Action::Cancel { job } => cancels.push((i, job)),
                    Action::Submit { attempt } => {
                        report.submitted += 1;
                        if let Err(e) = self.submit(run, attempt, now) {
                            report.problems.push(format!("run {}: {e}", run.id));
                        }
                    }
                    Action::Reconsider { job } => self.reconsider(run, job, now),
                }
            }
        }
        if self.blacklist_changed() {
            self.exclude_from_pending(&runs, now);
        }
        if !cancels.is_empty() {
            let ids: Vec<JobId> = cancels.iter().map(|(_, j)| *j).collect();
            report.cancelled = ids.len();
            // A failed cancel is retried by the policy on the next tick: the
            // attempt keeps its cancel reason until Slurm ends the job.
            if let Err(e) = self.slurm.cancel(&ids) {
                report.problems.push(format!("scancel {ids:?}: {e}"));
            }
        }
        report
    }

    /// Moves a long-pending job, in place, to the partitions that can hold
    /// it when one of them can start it now. Runs that pin their partitions
    /// are left alone.
    fn reconsider(&self, run: &Loaded, job: JobId, now: Timestamp) {
        let Some(a) = run.state.live_attempt() else {
            return;
        };
        if !run.spec.resources.partitions.is_empty() {
            return;
        }
        let Ok(placement) = self.plan(&run.spec, &run.state, now) else {
            return;
        };
        let Some(wanted) = placement.partitions else {
            return;
        };
        let current: Vec<&str> = a.partition.as_deref().unwrap_or("").split(',').collect();
        let first = &wanted[0];
        let can_start_now = self
            .inventory(now, false)
            .zip(self.partition_list(now))
            .map(|(nodes, parts)| {
                let views = partition_gpus(&parts, &nodes, &placement.exclude, &self.catalog);
                views.iter().any(|v| {
                    v.partition == *first
                        && v.availability(run.spec.resources.gpus.unwrap_or(1))
                            == crate::placement::inventory::Availability::Full
                })
            })
            .unwrap_or(false);
        let same =
            wanted.len() == current.len() && wanted.iter().all(|w| current.contains(&w.as_str()));
        if same || !can_start_now {
            return;
        }
        let update = PendingUpdate {
            exclude: Some(placement.exclude.clone()),
            partition: Some(wanted.join(",")),
        };
        let message = match self.slurm.update_pending(job, &update) {
            Ok(()) => format!(
                "job {job} pending ({}) in {}: moved to partitions {} ({first} can start it now)",
                a.pending_reason.as_deref().unwrap_or("waiting"),
                a.partition.as_deref().unwrap_or("?"),
                wanted.join(", ")
            ),
            // It started meanwhile: nothing to move.
            Err(e) if e.rejection() == Some(Rejection::JobNotPending) => return,
            Err(e) => format!("could not move pending job {job}: {e}"),
        };
        let event = decide::Event {
            kind: "failover",
            attempt: Some(a.attempt),
            job_id: Some(job),
            message,
        };
        let _ = run
            .dir
            .append_events(&[event], run.state.status.as_str(), now);
    }

    /// After a new ban, pending jobs learn to avoid the node in place
    /// (`scontrol update`), rather than being cancelled and resubmitted.
    fn exclude_from_pending(&self, runs: &[Loaded], now: Timestamp) {
        for run in runs {
            let Some(a) = run.state.live_attempt() else {
                continue;
            };
            if let (AttemptPhase::Pending, Some(job)) = (a.phase, a.job_id) {
                let exclude = self.exclude_for(&run.spec, &run.state, now);
                let update = PendingUpdate {
                    exclude: Some(exclude.clone()),
                    partition: None,
                };
                // A job that started meanwhile refuses: nothing to do then.
                if self.slurm.update_pending(job, &update).is_ok() {
                    let event = decide::Event {
                        kind: "exclude_updated",
                        attempt: Some(a.attempt),
                        job_id: Some(job),
                        message: format!("pending job {job} now excludes {}", exclude.join(",")),
                    };
                    let _ = run
                        .dir
                        .append_events(&[event], run.state.status.as_str(), now);
                }
            }
        }
    }

    /// Loads a run that may need attention. Ended runs without pending
    /// controls are skipped cheaply; the spec is read once per daemon, the
    /// state only when its file changed.
    fn load(&self, id: &RunId, now: Timestamp) -> Result<Option<Loaded>, StoreError> {
        let dir = self.state_dir.run(id);
        let current = stamp(&dir.state());
        let mut cache = self.cache.borrow_mut();
        let fresh = cache
            .get(id)
            .is_some_and(|c| c.stamp == current && (current.is_some() || c.state.is_none()));
        if !fresh {
            let spec = match cache.remove(id) {
                Some(c) => c.spec,
                None => dir.load_spec()?,
            };
            let state = dir.load_state()?;
            cache.insert(
                id.clone(),
                Cached {
                    spec,
                    state,
                    stamp: current,
                },
            );
        }
        let cached = cache.get(id).expect("just cached");
        if let Some(s) = &cached.state
            && s.status.is_terminal()
            && dir.pending_controls().is_empty()
        {
            return Ok(None);
        }
        Ok(Some(Loaded {
            id: id.clone(),
            dir,
            spec: cached.spec.clone(),
            state: cached.state.clone().unwrap_or_else(|| RunState::new(now)),
        }))
    }

    fn observe(
        &self,
        run: &Loaded,
        jobs: &Result<HashMap<JobId, JobInfo>, SlurmError>,
        records: Option<&[JobRecord]>,
        found: Option<&[JobInfo]>,
    ) -> (Observation, Vec<PathBuf>) {
        let mut obs = Observation::nothing();
        obs.signatures = Some(std::sync::Arc::clone(&self.signatures));
        let mut files = Vec::new();
        for (path, control) in run.dir.pending_controls() {
            if let Ok(c) = control {
                obs.controls.push(c);
            }
            // Unreadable requests are dropped rather than retried forever.
            files.push(path);
        }
        let Some(a) = run.state.live_attempt() else {
            return (obs, files);
        };
        let Some(job) = a.job_id else {
            obs.found = found.map(|f| f.to_vec());
            return (obs, files);
        };
        let mut restarts = a.restarts;
        obs.job = match jobs {
            Err(_) => JobView::Unknown,
            Ok(map) => match map.get(&job) {
                Some(info) => {
                    restarts = info.restarts;
                    JobView::Seen(info.clone())
                }
                None => JobView::Gone(
                    records.map(|r| r.iter().filter(|r| r.id == job).cloned().collect()),
                ),
            },
        };
        let dir = run.dir.attempt(a.attempt);
        obs.heartbeat =
            atomic::read_json::<Heartbeat>(&dir.heartbeat(job, restarts), HEARTBEAT_VERSION).ok();
        obs.progress =
            atomic::read_json::<Progress>(&dir.progress(job, restarts), PROGRESS_VERSION).ok();
        obs.outcome =
            atomic::read_json::<Outcome>(&dir.outcome(job, restarts), OUTCOME_VERSION).ok();
        (obs, files)
    }

    fn record(
        &self,
        run: &Loaded,
        state: &RunState,
        events: &[decide::Event],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if *state != run.state || !run.dir.state().exists() {
            run.dir.save_state(state)?;
            if let Some(c) = self.cache.borrow_mut().get_mut(&run.id) {
                c.state = Some(state.clone());
                c.stamp = stamp(&run.dir.state());
            }
        }
        run.dir.append_events(events, state.status.as_str(), now)
    }

    fn submit(&self, run: &mut Loaded, attempt: u32, now: Timestamp) -> Result<(), StoreError> {
        let dir = run.dir.attempt(attempt);
        std::fs::create_dir_all(dir.path()).map_err(|source| StoreError::Write {
            path: dir.path().to_path_buf(),
            source,
        })?;
        atomic::write_bytes(
            &dir.job_script(),
            attempt::job_script(&run.spec, &run.dir, attempt, &self.exe).as_bytes(),
        )?;
        let env = run.dir.load_env()?;
        let result = match self.plan(&run.spec, &run.state, now) {
            Err(PlanError::NoPartition(why)) => SubmitResult::Rejected {
                kind: Rejection::NodeConfigUnavailable,
                message: format!("no partition can hold this job ({why})"),
            },
            // Without an inventory nothing is submitted; the attempt stays
            // unconfirmed and is retried once Slurm answers.
            Err(PlanError::Unobservable) => SubmitResult::Unknown {
                message: "cannot read the node inventory to place the job".into(),
            },
            Ok(placement) => {
                if let Some(p) = &placement.partitions {
                    let event = decide::Event {
                        kind: "placement",
                        attempt: Some(attempt),
                        job_id: None,
                        message: format!("partitions in order of preference: {}", p.join(", ")),
                    };
                    run.dir
                        .append_events(&[event], run.state.status.as_str(), now)?;
                }
                let request =
                    attempt::submit_request(&run.spec, &run.dir, attempt, env, &placement);
                match self.slurm.submit(&request) {
                    Ok(id) => SubmitResult::Accepted(id),
                    // Our own exclude list may leave the job no node at all
                    // (every node it may use is banned): wait for a ban to
                    // expire rather than fail the run.
                    Err(SlurmError::Rejected {
                        kind: Rejection::NodeConfigUnavailable,
                        message,
                        ..
                    }) if !placement.exclude.is_empty() => SubmitResult::Unknown {
                        message: format!(
                            "{message}; with nodes {} excluded, waiting for a ban to expire",
                            placement.exclude.join(",")
                        ),
                    },
                    Err(SlurmError::Rejected { kind, message, .. }) => {
                        SubmitResult::Rejected { kind, message }
                    }
                    Err(e) => SubmitResult::Unknown {
                        message: e.to_string(),
                    },
                }
            }
        };
        let step = decide::submitted(&run.spec, &run.state, attempt, &result, now);
        self.record(run, &step.state, &step.events, now)?;
        run.state = step.state;
        if let Some(Action::Cancel { job }) = step.actions.first() {
            // Stop was requested while sbatch ran: cancel at once.
            let _ = self.slurm.cancel(&[*job]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Mode, Policy, Resources};
    use crate::policy::state::RunStatus;
    use crate::slurm::sim::{Behaviour, SimCluster, SimSlurm};

    fn spec(id: &str, now: Timestamp) -> RunSpec {
        RunSpec {
            run_id: id.parse().unwrap(),
            script_path: "/w/train.sh".into(),
            workdir: "/w".into(),
            created_at: now,
            mode: Mode::RunOnce,
            resources: Resources::default(),
            policy: Policy {
                heartbeat_grace: Duration::from_secs(3600),
                ..Policy::default()
            },
            sbatch_lines: vec![],
            user_output: false,
            user_error: false,
        }
    }

    fn setup(runs: usize) -> (tempfile::TempDir, StateDir, SimSlurm) {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        let slurm = SimSlurm::new(SimCluster::test_cluster());
        for i in 0..runs {
            sd.create_run(
                &spec(&format!("r{i}"), slurm.now()),
                b"#!/bin/bash\n",
                vec![],
            )
            .unwrap();
        }
        (tmp, sd, slurm)
    }

    #[test]
    fn slurm_queries_per_tick_do_not_grow_with_runs() {
        let (_tmp, sd, slurm) = setup(40);
        slurm.on_start(|_| Behaviour::RunForever);
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        let first = ticker.tick(slurm.now());
        assert_eq!(first.submitted, 40, "{:?}", first.problems);
        for _ in 0..5 {
            slurm.advance(Duration::from_secs(10));
            slurm.reset_calls();
            let r = ticker.tick(slurm.now());
            assert!(r.problems.is_empty(), "{:?}", r.problems);
            assert_eq!(slurm.calls().queries(), 1, "{:?}", slurm.calls());
            assert_eq!(slurm.calls().submit, 0);
        }
        for j in slurm.all_jobs() {
            assert_eq!(slurm.live_jobs_named(&j.info.name).len(), 1);
        }
    }

    #[test]
    fn a_corrupt_run_is_quarantined_and_the_others_go_on() {
        let (_tmp, sd, slurm) = setup(2);
        slurm.on_start(|_| Behaviour::Exit {
            after: Duration::from_secs(5),
            code: 0,
        });
        let bad = sd.run(&"r0".parse().unwrap());
        std::fs::write(bad.state(), "{\"version\": 1, \"status\": ").unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        let mut problems = Vec::new();
        for _ in 0..4 {
            let r = ticker.tick(slurm.now());
            problems.extend(r.problems);
            slurm.advance(Duration::from_secs(10));
        }
        assert!(
            problems
                .iter()
                .any(|p| p.contains("r0") && p.contains("corrupt")),
            "{problems:?}"
        );
        let good = sd
            .run(&"r1".parse().unwrap())
            .load_state()
            .unwrap()
            .unwrap();
        assert_eq!(good.status, RunStatus::Completed);
        // The corrupt file is left for the user to inspect, not overwritten.
        assert!(
            std::fs::read_to_string(bad.state())
                .unwrap()
                .ends_with(": ")
        );
    }

    #[test]
    fn slurm_unreachable_changes_no_run() {
        let (_tmp, sd, slurm) = setup(3);
        slurm.on_start(|_| Behaviour::RunForever);
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        ticker.tick(slurm.now());
        slurm.advance(Duration::from_secs(10));
        ticker.tick(slurm.now());
        let before: Vec<_> = (0..3)
            .map(|i| {
                sd.run(&format!("r{i}").parse().unwrap())
                    .load_state()
                    .unwrap()
            })
            .collect();
        slurm.set_unreachable(true);
        for _ in 0..10 {
            slurm.advance(Duration::from_secs(60));
            let r = ticker.tick(slurm.now());
            assert!(r.slurm_unavailable.is_some());
            assert_eq!((r.submitted, r.cancelled), (0, 0));
        }
        let after: Vec<_> = (0..3)
            .map(|i| {
                sd.run(&format!("r{i}").parse().unwrap())
                    .load_state()
                    .unwrap()
            })
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_lost_sbatch_answer_is_reconciled_without_a_duplicate() {
        let (_tmp, sd, slurm) = setup(1);
        slurm.on_start(|_| Behaviour::RunForever);
        slurm.set_submit_reply_lost(true);
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        ticker.tick(slurm.now());
        slurm.set_submit_reply_lost(false);
        for _ in 0..6 {
            slurm.advance(Duration::from_secs(10));
            ticker.tick(slurm.now());
        }
        let state = sd
            .run(&"r0".parse().unwrap())
            .load_state()
            .unwrap()
            .unwrap();
        assert_eq!(state.status, RunStatus::Running, "{state:?}");
        assert_eq!(slurm.all_jobs().len(), 1, "exactly one job submitted");
    }
}
