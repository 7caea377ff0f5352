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
use std::rc::Rc;

use jiff::Timestamp;

use super::attempt;
use super::cluster::ClusterView;
use super::placing::PlanError;
use crate::model::{RunId, RunSpec};
use crate::placement::catalog::Catalog;
use crate::policy::decide::{self, Action, JobView, Observation, SubmitResult, job_name};
use crate::policy::signatures::SignatureSet;
use crate::policy::state::RunState;
use crate::records::{
    HEARTBEAT_VERSION, Heartbeat, OUTCOME_VERSION, Outcome, PROGRESS_VERSION, Progress,
};
use crate::slurm::{JobId, JobInfo, JobRecord, Rejection, Slurm, SlurmError};
use crate::store::atomic::{self, StoreError};
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

pub(super) struct Loaded {
    pub(super) id: RunId,
    pub(super) dir: RunDir,
    pub(super) spec: Rc<RunSpec>,
    pub(super) state: RunState,
    /// Whether `state.json` exists yet.
    pub(super) persisted: bool,
}

/// A run's spec (immutable) and state as last read or written, with the state
/// file's size and mtime then: unchanged files are not read again.
struct Cached {
    spec: Rc<RunSpec>,
    /// `spec.json`'s inode and mtime when read: a run removed and created
    /// again under the same id (between two ticks) has a new spec.
    spec_stamp: Option<(u64, std::time::SystemTime)>,
    state: Option<RunState>,
    stamp: Option<(std::time::SystemTime, u64)>,
}

fn spec_stamp(path: &std::path::Path) -> Option<(u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?))
}

/// How often every run is looked at even without a noted change: a safety
/// net for changes made without noting them (an older Shepherd's request, a
/// run directory restored by hand). Ticks in between skip ended runs.
const FULL_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The run list as of the last full scan.
struct Scan {
    /// The runs that were not ended as of the last tick: the ones a tick
    /// between full scans looks at.
    live: Vec<RunId>,
    /// How many runs the list had.
    runs: usize,
    /// [`StateDir::changes_noted`] then.
    changes: Option<u64>,
    at: Timestamp,
}

pub struct Ticker<'a, S: Slurm + ?Sized> {
    pub(super) slurm: &'a S,
    pub(super) state_dir: &'a StateDir,
    /// The shepherd binary the jobs run as their wrapper.
    pub(super) exe: PathBuf,
    cache: RefCell<HashMap<RunId, Cached>>,
    scan: RefCell<Option<Scan>>,
    /// The cluster's name, nodes, partitions and switches, cached.
    pub(super) cluster: ClusterView<'a, S>,
    /// From the configuration file: the GPU catalog with the lab's entries,
    /// fault signatures, and node groups for clusters without a topology.
    pub(super) catalog: Catalog,
    pub(super) signatures: std::sync::Arc<SignatureSet>,
    /// The blacklist file as last seen: a change (a ban by the CLI, or by
    /// this daemon) makes pending jobs learn the new exclude list.
    pub(super) blacklist_stamp: RefCell<Option<(std::time::SystemTime, u64)>>,
    /// Where notices go, from the configuration file.
    pub(super) channels: Vec<crate::notify::Channel>,
    pub(super) outbox: crate::notify::outbox::Outbox,
    /// The circuit breaker on probe blame, when the configuration turns it
    /// on.
    pub(super) breaker: Option<crate::policy::breaker::BreakerRules>,
    /// `[keeper] after`, when the keeper is on: handed to each job.
    keeper_after: Option<std::time::Duration>,
    /// Asked before each run's actions: is the lease still this daemon's?
    /// (The service renews it there during a long tick.) A tick that finds
    /// it lost stops acting at once: two daemons never act in one tick.
    fence: Option<Box<dyn Fn() -> bool + 'a>>,
}

/// The problem a tick reports when it stopped acting on a lost lease.
pub const LEASE_LOST: &str =
    "the lease was taken over during this tick; stopped acting (another daemon acts now)";

pub(super) fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
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
            scan: RefCell::new(None),
            cluster: ClusterView::new(slurm),
            catalog: Catalog::builtin(),
            signatures: std::sync::Arc::new(SignatureSet::builtin()),
            blacklist_stamp: RefCell::new(None),
            channels: Vec::new(),
            outbox: crate::notify::outbox::Outbox::new(state_dir),
            breaker: None,
            keeper_after: None,
            fence: None,
        }
    }

    /// See [`Ticker::fence`].
    pub fn with_fence(mut self, fence: impl Fn() -> bool + 'a) -> Self {
        self.fence = Some(Box::new(fence));
        self
    }

    fn still_ours(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f())
    }

    /// Applies the configuration file's catalog, signatures and node groups.
    pub fn with_config(mut self, config: &crate::config::Config) -> Result<Self, String> {
        self.catalog = config.catalog();
        self.signatures = std::sync::Arc::new(config.signatures()?);
        self.cluster.groups = config.node_groups()?;
        self.channels = config.channels()?;
        self.breaker = config.blacklist.breaker_rules()?;
        self.keeper_after = config.keeper.settings()?.map(|k| k.after);
        Ok(self)
    }

    pub fn tick(&self, now: Timestamp) -> TickReport {
        let mut report = TickReport::default();
        let Some((ids, runs_known)) = self.run_list(now, &mut report.problems) else {
            return report;
        };
        report.runs = runs_known;
        let mut runs = Vec::new();
        let mut live = Vec::new();
        for id in ids {
            match self.load(&id, now) {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => continue,
                Err(e) => report.problems.push(format!("run {id}: {e}")),
            }
            live.push(id);
        }
        if let Some(scan) = self.scan.borrow_mut().as_mut() {
            scan.live = live;
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
                // A refused attempt created no job: nothing to look for.
                (a.job_id.is_none() && a.waiting.is_none()).then(|| job_name(&r.spec, a.attempt))
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

        // Slurm's answers may have taken their whole deadlines.
        if !self.still_ours() {
            report.problems.push(LEASE_LOST.to_string());
            return report;
        }
        let mut cancels: Vec<(usize, JobId)> = Vec::new();
        let mut start_now: Vec<(usize, JobId)> = Vec::new();
        let mut steps = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let obs = self.observe(
                run,
                &jobs,
                records.as_deref(),
                found.as_deref(),
                now,
                &mut report.problems,
            );
            let step = decide::step(&run.spec, &run.state, &obs.0, now);
            steps.push((i, step, obs.1));
        }
        for (i, step, control_files) in steps {
            if !self.still_ours() {
                report.problems.push(LEASE_LOST.to_string());
                return report;
            }
            let run = &mut runs[i];
            // Record first: the intent to submit must be on disk before sbatch.
            if let Err(e) = self.record(run, &step.state, &step.events, now) {
                report.problems.push(format!("run {}: {e}", run.id));
                continue;
            }
            self.strike_nodes(run, &run.state, &step.state, now);
            let notices = crate::policy::notices::for_run(&run.spec, &run.state, &step.state, now);
            report.problems.extend(self.notify(run, &notices, now));
            run.state = step.state;
            run.persisted = true;
            for f in control_files {
                let _ = std::fs::remove_file(f);
            }
            for action in step.actions {
                match action {
                    Action::Cancel { job } => cancels.push((i, job)),
                    Action::Submit { attempt } => {
                        report.submitted += 1;
                        match self.submit(run, attempt, now) {
                            Ok(problems) => report.problems.extend(problems),
                            Err(e) => report.problems.push(format!("run {}: {e}", run.id)),
                        }
                    }
                    Action::Reconsider { job } => self.reconsider(run, job, now),
                    // After this tick's exclude updates (below): a node
                    // banned this tick must be excluded before the job may
                    // start.
                    Action::StartNow { job } => start_now.push((i, job)),
                }
            }
        }
        if !self.still_ours() {
            report.problems.push(LEASE_LOST.to_string());
            return report;
        }
        if self.blacklist_changed() {
            self.exclude_from_pending(&runs, now);
        }
        for (i, job) in start_now {
            // Best effort: a refusal (the job started already) or a failed
            // call leaves Slurm's own wait.
            let update = crate::slurm::PendingUpdate {
                start_now: true,
                ..Default::default()
            };
            if let Err(e) = self.slurm.update_pending(job, &update)
                && e.rejection() != Some(Rejection::JobNotPending)
            {
                report.problems.push(format!(
                    "run {}: scontrol update StartTime=now of job {job}: {e}",
                    runs[i].id
                ));
            }
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

    /// Queues notices for the run's channels; returns the problems. Sending
    /// happens on the daemon's notify thread; a notice that cannot be queued
    /// is a problem for the log, never a reason to stop the tick.
    pub(super) fn notify(
        &self,
        run: &Loaded,
        notices: &[crate::policy::notices::Notice],
        now: Timestamp,
    ) -> Vec<String> {
        if notices.is_empty() {
            return Vec::new();
        }
        let channels =
            match crate::notify::channels::for_run(&self.channels, run.spec.notify.as_deref()) {
                Ok(c) => c,
                Err(e) => return vec![format!("run {}: notify: {e}", run.id)],
            };
        let cluster = self.cluster.name();
        notices
            .iter()
            .filter_map(|n| {
                self.outbox
                    .enqueue(n, &channels, cluster.as_deref(), now)
                    .err()
                    .map(|e| format!("run {}: cannot queue notice {}: {e}", run.id, n.id))
            })
            .collect()
    }

    /// The runs to look at, and how many runs there are. The run list is
    /// read again, and every ended run looked at, only after a noted change
    /// (a run created or removed, a control request:
    /// [`StateDir::changes_noted`]) or every [`FULL_SCAN_EVERY`]; ticks in
    /// between look at the runs that were not ended at the last one. With
    /// thousands of ended runs, a tick costs what the active ones do.
    fn run_list(&self, now: Timestamp, problems: &mut Vec<String>) -> Option<(Vec<RunId>, usize)> {
        let changes = self.state_dir.changes_noted();
        let mut scan = self.scan.borrow_mut();
        // A clock stepped back makes the last scan look young for ever:
        // a negative age scans again.
        let young = |at: Timestamp| {
            let age = now.duration_since(at);
            !age.is_negative() && age.unsigned_abs() < FULL_SCAN_EVERY
        };
        if let Some(s) = scan.as_ref()
            && s.changes == changes
            && young(s.at)
        {
            return Some((s.live.clone(), s.runs));
        }
        match self.state_dir.run_ids() {
            Ok(ids) => {
                // Runs removed since are forgotten with the list.
                self.cache
                    .borrow_mut()
                    .retain(|id, _| ids.binary_search(id).is_ok());
                *scan = Some(Scan {
                    live: Vec::new(),
                    runs: ids.len(),
                    changes,
                    at: now,
                });
                let runs = ids.len();
                Some((ids, runs))
            }
            Err(e) => {
                problems.push(e.to_string());
                None
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
            let spec_now = spec_stamp(&dir.spec());
            let spec = match cache.remove(id) {
                Some(c) if c.spec_stamp.is_some() && c.spec_stamp == spec_now => c.spec,
                _ => Rc::new(dir.load_spec()?),
            };
            let state = dir.load_state()?;
            cache.insert(
                id.clone(),
                Cached {
                    spec,
                    spec_stamp: spec_now,
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
            spec: Rc::clone(&cached.spec),
            state: cached.state.clone().unwrap_or_else(|| RunState::new(now)),
            persisted: current.is_some(),
        }))
    }

    fn observe(
        &self,
        run: &Loaded,
        jobs: &Result<HashMap<JobId, JobInfo>, SlurmError>,
        records: Option<&[JobRecord]>,
        found: Option<&[JobInfo]>,
        now: Timestamp,
        problems: &mut Vec<String>,
    ) -> (Observation, Vec<PathBuf>) {
        let mut obs = Observation::nothing();
        obs.signatures = Some(std::sync::Arc::clone(&self.signatures));
        let mut files = Vec::new();
        for (path, control) in run.dir.pending_controls() {
            match control {
                Ok(c) => obs.controls.push(c),
                // A request from a newer Shepherd is kept for the daemon that
                // understands it, and reported (once: the log keeps lasting
                // problems to one line).
                Err(e @ StoreError::TooNew { .. }) => {
                    problems.push(format!(
                        "run {}: control request kept, not applied: {e}",
                        run.id
                    ));
                    continue;
                }
                // A corrupt request is dropped rather than retried forever.
                Err(_) => {}
            }
            files.push(path);
        }
        let Some(a) = run.state.live_attempt() else {
            return (obs, files);
        };
        let Some(job) = a.job_id else {
            obs.found = found.map(|f| f.to_vec());
            // Waiting for somewhere to run: where could it go now? Only
            // with a node inventory (without one the list would be empty).
            if a.waiting.is_some() {
                obs.blockers_now = self.blockers(&run.spec, &run.state, now);
            }
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
        let dir = run.dir.attempt(a.dir_attempt());
        obs.heartbeat =
            atomic::read_json::<Heartbeat>(&dir.heartbeat(job, restarts), HEARTBEAT_VERSION).ok();
        // The runs the wrapper restarted in place since the attempt's own
        // (each outcome says so), at most as many as the policy allows; the
        // progress and outcome that matter are the last run's.
        let limit = run.spec.policy.restart_in_place;
        let chain = |restarts, mut k, runs: &mut Vec<Outcome>| {
            let read = |k| {
                atomic::read_json::<Outcome>(&dir.outcome(job, restarts, k), OUTCOME_VERSION).ok()
            };
            let mut followed = 0;
            let last = loop {
                match read(k) {
                    Some(o) if o.restarted_in_place && followed < limit => {
                        runs.push(o);
                        followed += 1;
                        k += 1;
                    }
                    other => break other,
                }
            };
            (last, k)
        };
        // Slurm requeued the job since the last tick: the old instance's
        // runs not followed yet come first, so that each is charged.
        let from = if restarts == a.restarts {
            a.in_place
        } else {
            chain(a.restarts, a.in_place, &mut obs.in_place);
            0
        };
        let (last, k) = chain(restarts, from, &mut obs.in_place);
        obs.outcome = last;
        obs.progress =
            atomic::read_json::<Progress>(&dir.progress(job, restarts, k), PROGRESS_VERSION).ok();
        (obs, files)
    }

    fn record(
        &self,
        run: &Loaded,
        state: &RunState,
        events: &[decide::Event],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if *state != run.state || !run.persisted {
            run.dir.save_state(state)?;
            // An ended run changes only with a noted change: `list` serves
            // ended runs from its cache until one is noted.
            if run.persisted && run.state.status.is_terminal() {
                self.state_dir.note_change();
            }
            if let Some(c) = self.cache.borrow_mut().get_mut(&run.id) {
                c.state = Some(state.clone());
                c.stamp = stamp(&run.dir.state());
            }
        }
        run.dir.append_events(events, state.status.as_str(), now)
    }

    /// Submits an attempt and records the answer; returns the problems of
    /// queueing its notices.
    fn submit(
        &self,
        run: &mut Loaded,
        attempt: u32,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let dir = run.dir.attempt(attempt);
        std::fs::create_dir_all(dir.path()).map_err(|source| StoreError::Write {
            path: dir.path().to_path_buf(),
            source,
        })?;
        atomic::write_bytes(
            &dir.job_script(),
            attempt::job_script(
                &run.spec,
                &run.dir,
                attempt,
                &self.exe,
                &self.skipped_probes(now),
                self.keeper_after,
            )
            .as_bytes(),
        )?;
        let env = run.dir.load_env()?;
        let result = match self.plan(&run.spec, &run.state, now) {
            Err(PlanError::NoPartition(why)) => SubmitResult::Rejected {
                kind: Rejection::NodeConfigUnavailable,
                message: format!("no partition can hold this job ({why})"),
            },
            Err(PlanError::Nowhere) => {
                let exclude = self.exclude_for(&run.spec, &run.state, now);
                let (message, until) = self.nowhere_message(
                    &exclude,
                    now,
                    "no partition has a usable node for it now",
                );
                match self.blockers(&run.spec, &run.state, now) {
                    Some(blockers) => SubmitResult::Nowhere {
                        message,
                        blockers,
                        until,
                    },
                    None => SubmitResult::Unknown { message },
                }
            }
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
                self.submit_placed(run, attempt, &env, &placement, now)?
            }
        };
        let step = decide::submitted(&run.spec, &run.state, attempt, &result, now);
        self.record(run, &step.state, &step.events, now)?;
        let notices = crate::policy::notices::for_run(&run.spec, &run.state, &step.state, now);
        let problems = self.notify(run, &notices, now);
        run.state = step.state;
        run.persisted = true;
        if let Some(Action::Cancel { job }) = step.actions.first() {
            // Stop was requested while sbatch ran: cancel at once.
            let _ = self.slurm.cancel(&[*job]);
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use std::path::Path;

    use crate::policy::state::RunStatus;
    use crate::slurm::sim::{Behaviour, PartitionState, SimCluster, SimSlurm};

    fn spec(id: &str, now: Timestamp) -> RunSpec {
        let mut s = RunSpec::with_defaults(id.parse().unwrap(), Path::new("/w"), now);
        s.policy.heartbeat_grace = Duration::from_secs(3600);
        s
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
    fn a_tick_that_loses_its_lease_stops_acting_at_once() {
        let (_tmp, sd, slurm) = setup(3);
        slurm.on_start(|_| Behaviour::RunForever);
        // The lease is found taken over before the second run's actions
        // (after the check once Slurm answered, and the first run's).
        let asked = std::cell::Cell::new(0);
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into()).with_fence(|| {
            asked.set(asked.get() + 1);
            asked.get() < 3
        });
        let r = ticker.tick(slurm.now());
        assert_eq!(r.submitted, 1, "{:?}", r.problems);
        assert_eq!(slurm.calls().submit, 1);
        assert!(
            r.problems.iter().any(|p| p == LEASE_LOST),
            "{:?}",
            r.problems
        );
        // Nothing was recorded for the runs not acted on: the next daemon
        // finds them as they were.
        let untouched = (0..3)
            .filter(|i| {
                sd.run(&format!("r{i}").parse().unwrap())
                    .load_state()
                    .unwrap()
                    .is_none_or(|st| st.attempts.is_empty())
            })
            .count();
        assert_eq!(untouched, 2);
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
    fn ended_runs_are_read_again_only_after_a_noted_change() {
        let (_tmp, sd, slurm) = setup(2);
        slurm.on_start(|_| Behaviour::Exit {
            after: Duration::from_secs(5),
            code: 0,
        });
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        for _ in 0..4 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        let ended = sd.run(&"r0".parse().unwrap());
        assert_eq!(
            ended.load_state().unwrap().unwrap().status,
            RunStatus::Completed
        );

        // Between full scans an ended run's files are not even looked at:
        // a state made unreadable behind the daemon's back goes unnoticed.
        let good = std::fs::read(ended.state()).unwrap();
        std::fs::write(ended.state(), "{\"version\": 1, ").unwrap();
        let r = ticker.tick(slurm.now());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.runs, 2);

        // A noted change (here: a new run) makes the next tick read them all.
        sd.create_run(&spec("r2", slurm.now()), b"#!/bin/bash\n", vec![])
            .unwrap();
        slurm.advance(Duration::from_secs(10));
        let r = ticker.tick(slurm.now());
        assert!(
            r.problems.iter().any(|p| p.contains("r0")),
            "{:?}",
            r.problems
        );
        assert_eq!((r.runs, r.submitted), (3, 1));
        std::fs::write(ended.state(), good).unwrap();

        // A control request on an ended run is a noted change: it is acted on
        // at the next tick, not at the next periodic scan.
        slurm.advance(Duration::from_secs(10));
        ticker.tick(slurm.now());
        ended
            .request_control(crate::policy::decide::Control::Restart, slurm.now())
            .unwrap();
        slurm.advance(Duration::from_secs(10));
        let r = ticker.tick(slurm.now());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let st = ended.load_state().unwrap().unwrap();
        assert!(!st.status.is_terminal(), "{:?}: {}", st.status, st.reason);

        // Acting on an ended run, the daemon noted a change of its own (for
        // `list`'s cache): one more full scan.
        slurm.advance(Duration::from_secs(10));
        assert!(ticker.tick(slurm.now()).problems.is_empty());

        // Without any noted change, the periodic scan still comes round.
        let other = sd.run(&"r1".parse().unwrap());
        std::fs::write(other.state(), "{\"version\": 1, ").unwrap();
        slurm.advance(Duration::from_secs(10));
        assert!(ticker.tick(slurm.now()).problems.is_empty());
        slurm.advance(FULL_SCAN_EVERY);
        let r = ticker.tick(slurm.now());
        assert!(
            r.problems.iter().any(|p| p.contains("r1")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_run_removed_and_created_again_between_ticks_runs_its_new_spec() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::Exit {
            after: Duration::from_secs(5),
            code: 0,
        });
        sd.create_run(&pinned("r0", &["a6000"], &slurm), b"#!/bin/bash\n", vec![])
            .unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        for _ in 0..4 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        let id: RunId = "r0".parse().unwrap();
        assert!(
            sd.run(&id)
                .load_state()
                .unwrap()
                .unwrap()
                .status
                .is_terminal()
        );
        // `shepherd rm r0 && shepherd run r0.sh -p a100` before the next tick.
        sd.remove_run(&id).unwrap();
        sd.create_run(&pinned("r0", &["a100"], &slurm), b"#!/bin/bash\n", vec![])
            .unwrap();
        let r = ticker.tick(slurm.now());
        assert_eq!(r.submitted, 1, "{:?}", r.problems);
        let st = sd.run(&id).load_state().unwrap().unwrap();
        let job = st.attempts[0].job_id.unwrap();
        let info = slurm.jobs(&[job]).unwrap();
        assert_eq!(
            info[0].partition, "a100",
            "the new spec's partition: {info:?}"
        );
    }

    #[test]
    fn runs_restarted_in_place_before_a_requeue_are_read_and_charged() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::RunForever);
        let mut s = spec("r0", slurm.now());
        s.policy.restart_in_place = 2;
        sd.create_run(&s, b"#!/bin/bash\n", vec![]).unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        let run = sd.run(&"r0".parse().unwrap());
        for _ in 0..2 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        let st = run.load_state().unwrap().unwrap();
        let job = st.attempts[0].job_id.unwrap();
        // Between two ticks: the workload crashed and the wrapper restarted
        // it in place, then the job was requeued.
        let now = slurm.now();
        let crashed = Outcome {
            version: OUTCOME_VERSION,
            run_id: "r0".parse().unwrap(),
            attempt: 1,
            job_id: job,
            restarts: 0,
            node: "n1".into(),
            started_at: now,
            ended_at: now,
            verdict: crate::records::Verdict::Exited { code: 1 },
            probes: vec![],
            terminated: false,
            warned: false,
            stderr_tail: "ValueError: x\n".into(),
            exit_code: 1,
            in_place: 0,
            restarted_in_place: true,
        };
        let path = run.attempt(1).outcome(job, 0, 0);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        atomic::write_json(&path, &crashed).unwrap();
        slurm.requeue(job).unwrap();
        let r = ticker.tick(slurm.now());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let st = run.load_state().unwrap().unwrap();
        assert_eq!(st.workload_failures, 1, "{:?}", st.attempts);
        assert_eq!(
            st.attempts[0].end.as_ref().map(|e| e.class),
            Some(crate::policy::state::FailureClass::WorkloadFailure)
        );
        assert_eq!(st.attempts.last().unwrap().restarts, 1);
    }

    #[test]
    fn a_control_request_of_a_newer_format_is_kept_and_reported() {
        let (_tmp, sd, slurm) = setup(1);
        slurm.on_start(|_| Behaviour::RunForever);
        let run = sd.run(&"r0".parse().unwrap());
        std::fs::create_dir_all(run.control()).unwrap();
        let newer = run.control().join("00000000000000000001-1.json");
        std::fs::write(&newer, r#"{"version": 9, "control": "teleport"}"#).unwrap();
        let corrupt = run.control().join("00000000000000000002-1.json");
        std::fs::write(&corrupt, "{\"version\": 1, ").unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        for _ in 0..3 {
            let r = ticker.tick(slurm.now());
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.contains("control request kept") && p.contains("newer")),
                "{:?}",
                r.problems
            );
            assert!(newer.exists(), "kept for a daemon that understands it");
            slurm.advance(Duration::from_secs(10));
        }
        assert!(!corrupt.exists(), "a corrupt request is dropped");
        let st = run.load_state().unwrap().unwrap();
        assert_eq!(st.status, crate::policy::state::RunStatus::Running);
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

    fn pinned(id: &str, partitions: &[&str], slurm: &SimSlurm) -> RunSpec {
        let mut s = spec(id, slurm.now());
        s.resources.gpus = Some(1);
        s.resources.partitions = partitions.iter().map(|p| p.to_string()).collect();
        s
    }

    fn state_of(sd: &StateDir, id: &str) -> RunState {
        sd.run(&id.parse().unwrap()).load_state().unwrap().unwrap()
    }

    fn event_kinds(sd: &StateDir, id: &str) -> Vec<String> {
        let events = sd.run(&id.parse().unwrap()).read_events().unwrap();
        events
            .iter()
            .map(|e| format!("{}: {}", e.kind, e.message))
            .collect()
    }

    #[test]
    fn a_partition_sbatch_refuses_is_skipped_for_the_next_in_order() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::RunForever);
        // `gone` was deleted by the admins after the run was created.
        let s = pinned("r0", &["gone", "a6000", "a100"], &slurm);
        sd.create_run(&s, b"#!/bin/bash\n", vec![]).unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        let r = ticker.tick(slurm.now());
        assert_eq!(r.submitted, 1, "{:?}", r.problems);
        let jobs = slurm.all_jobs();
        assert_eq!(
            jobs.len(),
            1,
            "one job, in the first partition that accepts"
        );
        assert_eq!(jobs[0].info.partition, "a6000");
        let events = event_kinds(&sd, "r0");
        assert!(
            events.iter().any(|e| e.starts_with("failover:")
                && e.contains("gone")
                && e.contains("submitted to a6000")),
            "{events:?}"
        );
        assert_eq!(state_of(&sd, "r0").status, RunStatus::Pending);
    }

    #[test]
    fn a_drained_partition_makes_the_run_wait_not_fail() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::RunForever);
        slurm.set_partition_state("a100", PartitionState::Drain);
        sd.create_run(&pinned("r0", &["a100"], &slurm), b"#!/bin/bash\n", vec![])
            .unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        for _ in 0..5 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Queued, "{st:?}");
        assert!(st.reason.contains("not available"), "{}", st.reason);
        assert!(slurm.all_jobs().is_empty());
        slurm.set_partition_state("a100", PartitionState::Up);
        for _ in 0..5 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        assert_eq!(state_of(&sd, "r0").status, RunStatus::Running);
        assert_eq!(slurm.all_jobs().len(), 1);
    }

    #[test]
    fn a_refusal_from_every_partition_fails_the_run_with_each_reason() {
        let (_tmp, sd, slurm) = setup(0);
        let mut s = pinned("r0", &["gone", "cpu"], &slurm);
        // More GPUs than any node of either partition has.
        s.resources.gpus = Some(64);
        sd.create_run(&s, b"#!/bin/bash\n", vec![]).unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        ticker.tick(slurm.now());
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Failed, "{st:?}");
        assert!(
            st.reason.contains("gone:") && st.reason.contains("cpu:"),
            "{}",
            st.reason
        );
        // Like Slurm, the simulator keeps a FAILED record of a refused GPU
        // request; nothing may be left alive.
        assert!(
            slurm.all_jobs().iter().all(|j| j.info.state.is_terminal()),
            "{:?}",
            slurm.all_jobs()
        );
    }

    #[test]
    fn every_usable_node_banned_waits_without_phantom_attempts_or_charges() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::RunForever);
        let now = slurm.now();
        sd.update_blacklist("sim", |bl| {
            bl.ban(
                "a100-1",
                "GPU probe visibility failed",
                Some(Duration::from_secs(3600)),
                now,
            );
            bl.ban(
                "a100-2",
                "GPU probe visibility failed",
                Some(Duration::from_secs(1800)),
                now,
            );
        })
        .unwrap();
        sd.create_run(&pinned("r0", &["a100"], &slurm), b"#!/bin/bash\n", vec![])
            .unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        ticker.tick(slurm.now());
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Queued, "{st:?}");
        for needle in [
            "nowhere to run",
            "a100-1 (banned until",
            "a100-2 (banned until",
            "GPU probe",
            "the first ban expires",
        ] {
            assert!(st.reason.contains(needle), "{needle}: {}", st.reason);
        }
        // Slurm kept a FAILED record of the refusal under the job's name.
        assert_eq!(slurm.all_jobs().len(), 1);
        slurm.reset_calls();
        // Ten minutes of ticks: no adoption of the record, no new sbatch.
        for _ in 0..60 {
            slurm.advance(Duration::from_secs(10));
            let r = ticker.tick(slurm.now());
            assert!(r.problems.is_empty(), "{:?}", r.problems);
        }
        assert_eq!(slurm.calls().submit, 0, "{:?}", slurm.calls());
        let st = state_of(&sd, "r0");
        assert_eq!(
            (st.status, st.workload_failures, st.attempts.len()),
            (RunStatus::Queued, 0, 1),
            "{st:?}"
        );
        assert!(st.attempts[0].job_id.is_none());
        let events = event_kinds(&sd, "r0");
        assert!(
            !events.iter().any(|e| e.starts_with("reconciled")),
            "{events:?}"
        );
        // A ban lifted by hand: submitted at the next tick, and it runs.
        sd.update_blacklist("sim", |bl| {
            bl.unban("a100-2");
        })
        .unwrap();
        for _ in 0..3 {
            slurm.advance(Duration::from_secs(10));
            ticker.tick(slurm.now());
        }
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Running, "{st:?}");
        assert_eq!((st.workload_failures, st.attempts.len()), (0, 1));
        assert_eq!(slurm.calls().submit, 1);
    }

    #[test]
    fn an_unpinned_run_with_every_fitting_node_banned_or_down_waits_for_a_change() {
        let (_tmp, sd, slurm) = setup(0);
        slurm.on_start(|_| Behaviour::RunForever);
        let now = slurm.now();
        sd.update_blacklist("sim", |bl| {
            bl.ban("a100-1", "ECC", Some(Duration::from_secs(3600)), now);
        })
        .unwrap();
        slurm.drain_node("a100-2", "maintenance");
        let mut s = spec("r0", slurm.now());
        s.resources.gpus = Some(1);
        s.resources.gpu_type = Some("a100".into());
        sd.create_run(&s, b"#!/bin/bash\n", vec![]).unwrap();
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        ticker.tick(slurm.now());
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Queued, "{st:?}");
        assert!(
            st.reason.contains("a100-1 (banned until")
                && st.reason.contains("down or drained: a100-2"),
            "{}",
            st.reason
        );
        assert!(st.attempts[0].waiting.is_some());
        slurm.reset_calls();
        for _ in 0..30 {
            slurm.advance(Duration::from_secs(10));
            ticker.tick(slurm.now());
        }
        assert_eq!(slurm.calls().submit, 0);
        assert!(slurm.all_jobs().is_empty(), "nothing was ever submitted");
        // The down node comes back: placed there within a minute or so.
        slurm.resume_node("a100-2");
        for _ in 0..12 {
            slurm.advance(Duration::from_secs(10));
            ticker.tick(slurm.now());
        }
        let st = state_of(&sd, "r0");
        assert_eq!(st.status, RunStatus::Running, "{st:?}");
        assert_eq!((st.workload_failures, st.attempts.len()), (0, 1));
    }
}
