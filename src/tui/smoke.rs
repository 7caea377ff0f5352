//! The node smoke test: one short job pinned to each chosen node, to see
//! whether it starts jobs and its GPUs answer, with results as they come.

use std::time::{Duration, Instant};

use super::app::Msg;
use crate::slurm::{JobId, JobState, ScriptSource, Slurm, SubmitRequest};

/// Where a node's smoke test stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Smoke {
    Submitting,
    /// Waiting in Slurm's queue, with its reason.
    Pending(String),
    Running,
    /// Ended well, after this many seconds.
    Passed(u64),
    Failed(String),
}

impl Smoke {
    pub fn label(&self) -> String {
        match self {
            Smoke::Submitting => "submitting".into(),
            Smoke::Pending(_) => "pending".into(),
            Smoke::Running => "running".into(),
            Smoke::Passed(s) => format!("ok in {s}s"),
            Smoke::Failed(_) => "FAILED".into(),
        }
    }
}

/// A node to test, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeTarget {
    pub node: String,
    pub partition: Option<String>,
    pub gpus: bool,
}

/// The probe: starts, and when it was given GPUs, lists them.
const SCRIPT: &str = "#!/bin/sh
# Shepherd's node smoke test: the node starts a job and its GPUs answer.
if [ -n \"$CUDA_VISIBLE_DEVICES$SLURM_JOB_GPUS\" ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L >/dev/null 2>&1 || exit 3
fi
exit 0
";

/// A probe that has not started within this is cancelled and reported.
const GIVE_UP: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(2);

fn request(t: &SmokeTarget) -> SubmitRequest {
    let mut args = vec![
        format!("--nodelist={}", t.node),
        "--job-name=shepherd.smoke".to_string(),
        "--time=5".to_string(),
        "--ntasks=1".to_string(),
        "--output=/dev/null".to_string(),
    ];
    if let Some(p) = &t.partition {
        args.push(format!("--partition={p}"));
    }
    if t.gpus {
        args.push("--gres=gpu:1".to_string());
    }
    SubmitRequest {
        script: ScriptSource::Text(SCRIPT.to_string()),
        args,
        env: None,
    }
}

fn first_line(s: &str) -> String {
    super::clean::line(s.lines().next().unwrap_or(""))
}

/// Submits one probe per target and reports each as it moves, until all
/// have ended. Runs on its own thread.
pub fn run(slurm: &dyn Slurm, targets: Vec<SmokeTarget>, tx: &std::sync::mpsc::Sender<Msg>) {
    let send = |node: &str, s: Smoke| tx.send(Msg::Smoke(node.to_string(), s)).is_ok();
    let mut live: Vec<(String, JobId)> = Vec::new();
    for t in &targets {
        send(&t.node, Smoke::Submitting);
        match slurm.submit(&request(t)) {
            Ok(id) => {
                send(&t.node, Smoke::Pending(String::new()));
                live.push((t.node.clone(), id));
            }
            Err(e) => {
                send(&t.node, Smoke::Failed(first_line(&e.to_string())));
            }
        }
    }
    let started = Instant::now();
    let mut last: Vec<Option<Smoke>> = vec![None; live.len()];
    while live.iter().any(|l| !l.0.is_empty()) {
        std::thread::sleep(POLL);
        let ids: Vec<JobId> = live
            .iter()
            .filter(|l| !l.0.is_empty())
            .map(|l| l.1)
            .collect();
        let Ok(jobs) = slurm.jobs(&ids) else {
            // Slurm unreachable: the banner says so; try again.
            continue;
        };
        for (i, (node, id)) in live.iter_mut().enumerate() {
            if node.is_empty() {
                continue;
            }
            let state = match jobs.iter().find(|j| j.id == *id) {
                None => Smoke::Failed("Slurm forgot the job".into()),
                Some(j) => match &j.state {
                    s if s.is_pending() => Smoke::Pending(super::clean::line(&j.reason)),
                    JobState::Completed if j.exit.is_none_or(|e| e.code == 0) => {
                        let secs = match (j.start_time, j.end_time) {
                            (Some(a), Some(b)) => b.duration_since(a).as_secs().max(0) as u64,
                            _ => 0,
                        };
                        Smoke::Passed(secs)
                    }
                    s if s.is_terminal() => Smoke::Failed(match j.exit {
                        Some(e) if e.code == 3 => "the GPUs do not answer (nvidia-smi)".into(),
                        Some(e) => format!("{} (exit {})", crate::view::snake(s), e.code),
                        None => crate::view::snake(s),
                    }),
                    _ => Smoke::Running,
                },
            };
            let timed_out = started.elapsed() > GIVE_UP && matches!(state, Smoke::Pending(_));
            let state = if timed_out {
                let _ = slurm.cancel(&[*id]);
                Smoke::Failed(format!(
                    "did not start within {}",
                    crate::duration::format(GIVE_UP)
                ))
            } else {
                state
            };
            let done = matches!(state, Smoke::Passed(_) | Smoke::Failed(_));
            if last[i].as_ref() != Some(&state) {
                if !send(node, state.clone()) {
                    // The TUI is gone: leave no probe behind.
                    let _ = slurm.cancel(&ids);
                    return;
                }
                last[i] = Some(state);
            }
            if done {
                node.clear();
            }
        }
    }
}
