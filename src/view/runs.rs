//! Runs as the interfaces show them: one document per run, read from the
//! state directory. `list`/`status --json` serialize these; the TUI draws them.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{Mode, RunId, RunSpec};
use crate::policy::state::{Attempt, AttemptPhase, Blame, FailureClass, RunState};
use crate::records::{HEARTBEAT_VERSION, Heartbeat, ProbeStatus};
use crate::store::atomic;
use crate::store::{RunDir, StateDir};
use crate::view::words::{DocStatus, Word};

/// The run named on the command line does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no run named {id:?}{}", suggest(.suggestions))]
pub struct UnknownRun {
    pub id: String,
    pub suggestions: Vec<String>,
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        "; `shepherd list` shows the runs".to_string()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

/// `status --json` and `list --json`: the documented per-run document. It
/// reads back (a remote's answer) with the defaults an older Shepherd's
/// document needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDoc {
    pub run_id: String,
    pub status: Word<DocStatus>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub paused: bool,
    pub slurm_job_id: Option<u64>,
    pub node: Option<String>,
    pub partition: Option<String>,
    #[serde(default)]
    pub workload_failures: u32,
    #[serde(default)]
    pub max_retries: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub run_dir: PathBuf,
    #[serde(default)]
    pub attempts: Vec<AttemptDoc>,
    /// Set when the run's files cannot be read: the run is quarantined.
    pub error: Option<String>,
}

impl RunDoc {
    /// The run reached an end (completed, failed, stopped, expired).
    pub fn is_ended(&self) -> bool {
        self.status.known().is_some_and(DocStatus::is_ended)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptDoc {
    pub attempt: u32,
    pub job_id: Option<u64>,
    pub phase: Word<AttemptPhase>,
    pub partition: Option<String>,
    pub node: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    pub submitted_at: Timestamp,
    pub running_since: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// The failure class (`success`, `node_fault`, `workload_failure`, …).
    pub outcome: Option<Word<FailureClass>>,
    /// `node`, `workload` or `none`.
    pub blame: Option<Word<Blame>>,
    pub slurm_state: Option<String>,
    pub exit_code: Option<i32>,
    pub detail: Option<String>,
    /// A workload failure's fingerprint (exit, normalised stderr lines,
    /// time to failure): the same-failure rule compares these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<crate::policy::state::Fingerprint>,
    /// The GPU probes of the attempt and what each concluded (`healthy`,
    /// `faulty`, `inconclusive`); empty for CPU jobs and unended attempts.
    #[serde(default)]
    pub probes: Vec<ProbeDoc>,
    /// For a restart in place (`--restart-in-place`): which run of the
    /// workload in the job it is, and the attempt whose job it continues
    /// (whose directory holds its files and logs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_place: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_job_of: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AttemptDoc {
    /// The attempt directory holding this attempt's files ([`Attempt::dir_attempt`]).
    pub fn dir_attempt(&self) -> u32 {
        self.in_job_of.unwrap_or(self.attempt)
    }
}

/// One GPU probe of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeDoc {
    pub name: String,
    pub status: Word<ProbeStatus>,
    pub detail: String,
}

pub fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The probes of an attempt: from its end once it ended, before that from
/// its live heartbeat (the wrapper records them there when the workload
/// starts), so that an inconclusive probe shows while the workload runs.
fn probe_docs(a: &Attempt, run_dir: &Path) -> Vec<ProbeDoc> {
    let doc = |name: &str, status: ProbeStatus, detail: &str| ProbeDoc {
        name: name.to_string(),
        status: status.into(),
        detail: detail.to_string(),
    };
    if let Some(end) = &a.end {
        return end
            .probes
            .iter()
            .map(|p| doc(&p.name, p.status, &p.detail))
            .collect();
    }
    let Some(job) = a.job_id else {
        return Vec::new();
    };
    let path = RunDir::at(run_dir)
        .attempt(a.dir_attempt())
        .heartbeat(job, a.restarts);
    atomic::read_json::<Heartbeat>(&path, HEARTBEAT_VERSION)
        .map(|hb| {
            hb.probes
                .iter()
                .map(|p| doc(&p.name, p.status, &p.detail))
                .collect()
        })
        .unwrap_or_default()
}

fn attempt_doc(a: &Attempt, run_dir: &Path) -> AttemptDoc {
    AttemptDoc {
        attempt: a.attempt,
        job_id: a.job_id.map(|j| j.0),
        phase: a.phase.into(),
        partition: a.partition.clone(),
        node: a.node.clone(),
        restarts: a.restarts,
        submitted_at: a.submitted_at,
        running_since: a.running_since,
        ended_at: a.ended_at,
        outcome: a.end.as_ref().map(|e| e.class.into()),
        blame: a.end.as_ref().map(|e| e.blame.into()),
        slurm_state: a.end.as_ref().and_then(|e| e.slurm_state.clone()),
        exit_code: a.end.as_ref().and_then(|e| e.exit.map(|x| x.code)),
        detail: a.end.as_ref().map(|e| e.detail.clone()),
        fingerprint: a.end.as_ref().and_then(|e| e.fingerprint.clone()),
        probes: probe_docs(a, run_dir),
        in_place: a.in_place,
        in_job_of: a.in_job_of,
    }
}

pub fn run_doc(sd: &StateDir, id: &RunId) -> RunDoc {
    let dir = sd.run(id);
    let loaded = dir
        .load_spec()
        .and_then(|spec| Ok((dir.load_state()?, spec)));
    match loaded {
        Ok((state, spec)) => {
            let state = state.unwrap_or_else(|| RunState::new(spec.created_at));
            doc_of(&spec, &state, dir.path().to_path_buf())
        }
        Err(e) => RunDoc::quarantined(id.as_str(), e.to_string(), dir.path().to_path_buf()),
    }
}

impl RunDoc {
    /// The document of a run whose files cannot be read.
    pub fn quarantined(run_id: &str, error: String, run_dir: PathBuf) -> RunDoc {
        RunDoc {
            run_id: run_id.to_string(),
            status: DocStatus::Error.into(),
            reason: error.clone(),
            mode: Mode::RunOnce,
            paused: false,
            slurm_job_id: None,
            node: None,
            partition: None,
            workload_failures: 0,
            max_retries: 0,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
            run_dir,
            attempts: vec![],
            error: Some(error),
        }
    }
}

/// Reads many runs on several threads: on a shared filesystem each read is a
/// round trip, and `list` is what people run most.
pub fn run_docs(sd: &StateDir, ids: &[RunId]) -> Vec<RunDoc> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if ids.len() < 64 || threads == 1 {
        return ids.iter().map(|id| run_doc(sd, id)).collect();
    }
    let chunk = ids.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|id| run_doc(sd, id)).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn doc_of(spec: &RunSpec, state: &RunState, run_dir: PathBuf) -> RunDoc {
    let last = state.attempts.last();
    let attempts = state
        .attempts
        .iter()
        .map(|a| attempt_doc(a, &run_dir))
        .collect();
    RunDoc {
        run_id: spec.run_id.to_string(),
        status: DocStatus::Run(state.status).into(),
        reason: state.reason.clone(),
        mode: spec.mode,
        paused: state.paused,
        slurm_job_id: last.and_then(|a| a.job_id).map(|j| j.0),
        node: last.and_then(|a| a.node.clone()),
        partition: last.and_then(|a| a.partition.clone()),
        workload_failures: state.workload_failures,
        max_retries: spec.policy.max_retries,
        created_at: spec.created_at,
        updated_at: state.updated_at,
        run_dir,
        attempts,
        error: None,
    }
}

impl UnknownRun {
    /// `id` is none of `ids`: the error, with the ids close to it.
    pub fn among(id: &str, ids: &[RunId]) -> UnknownRun {
        let mut close: Vec<(usize, String)> = ids
            .iter()
            .map(|r| (edit_distance(r.as_str(), id), r.to_string()))
            .filter(|(d, r)| *d <= 2.max(id.len() / 3) || r.contains(id))
            .collect();
        close.sort();
        UnknownRun {
            id: id.to_string(),
            suggestions: close.into_iter().take(3).map(|(_, r)| r).collect(),
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
