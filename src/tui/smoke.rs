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

/// How long the smoke test waits, and how often it asks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub poll: Duration,
    /// A probe that has not started within this is cancelled and reported.
    pub give_up: Duration,
    /// Whatever the probes do (stuck `RUNNING` or `COMPLETING`, Slurm not
    /// answering), the test ends after this: what is left is cancelled.
    pub deadline: Duration,
}

pub const LIMITS: Limits = Limits {
    poll: Duration::from_secs(2),
    give_up: Duration::from_secs(600),
    deadline: Duration::from_secs(20 * 60),
};

/// Slurm drops a probe that cannot end by then (`--deadline`), so none is
/// left behind if the TUI dies: its 10 minutes to start plus its 5 to run.
const SLURM_DEADLINE: &str = "--deadline=now+15minutes";

fn request(t: &SmokeTarget) -> SubmitRequest {
    let mut args = vec![
        format!("--nodelist={}", t.node),
        "--job-name=shepherd.smoke".to_string(),
        "--time=5".to_string(),
        "--ntasks=1".to_string(),
        "--output=/dev/null".to_string(),
        SLURM_DEADLINE.to_string(),
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
    run_within(slurm, targets, tx, LIMITS)
}

/// [`run`] with its limits.
pub fn run_within(
    slurm: &dyn Slurm,
    targets: Vec<SmokeTarget>,
    tx: &std::sync::mpsc::Sender<Msg>,
    limits: Limits,
) {
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
        let ids: Vec<JobId> = live
            .iter()
            .filter(|l| !l.0.is_empty())
            .map(|l| l.1)
            .collect();
        if started.elapsed() > limits.deadline {
            // Stuck probes, or a Slurm that stopped answering: give up on
            // all that is left.
            let _ = slurm.cancel(&ids);
            for (node, _) in live.iter().filter(|l| !l.0.is_empty()) {
                send(
                    node,
                    Smoke::Failed(format!(
                        "did not end within {}; cancelled",
                        crate::duration::format(limits.deadline)
                    )),
                );
            }
            return;
        }
        std::thread::sleep(limits.poll);
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
            let timed_out =
                started.elapsed() > limits.give_up && matches!(state, Smoke::Pending(_));
            let state = if timed_out {
                let _ = slurm.cancel(&[*id]);
                Smoke::Failed(format!(
                    "did not start within {}",
                    crate::duration::format(limits.give_up)
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::slurm::sim::{SimCluster, SimSlurm};

    fn target(node: &str) -> SmokeTarget {
        SmokeTarget {
            node: node.into(),
            partition: Some("cpu".into()),
            gpus: false,
        }
    }

    #[test]
    fn tui_smoke_probes_carry_a_slurm_deadline() {
        let r = request(&target("cpu-1"));
        assert!(r.args.contains(&"--deadline=now+15minutes".to_string()));
    }

    #[test]
    fn tui_smoke_test_ends_by_its_deadline_even_with_probes_stuck_running() {
        let sim = std::sync::Arc::new(SimSlurm::new(SimCluster::test_cluster()));
        let (tx, rx) = mpsc::channel();
        let limits = Limits {
            poll: Duration::from_millis(5),
            give_up: Duration::from_secs(3600),
            deadline: Duration::from_millis(200),
        };
        let t = std::thread::spawn({
            let sim = sim.clone();
            move || run_within(&*sim, vec![target("cpu-1")], &tx, limits)
        });
        // The probe starts and runs forever (the sim's clock stands still).
        std::thread::sleep(Duration::from_millis(20));
        sim.step();
        let started = Instant::now();
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let last = rx.try_iter().last().unwrap();
        assert!(
            matches!(&last, Msg::Smoke(n, Smoke::Failed(why)) if n == "cpu-1" && why.contains("did not end")),
            "{last:?}"
        );
        assert_eq!(sim.live_job_count(), 0, "the probe was cancelled");
    }

    #[test]
    fn tui_smoke_test_ends_by_its_deadline_when_slurm_stops_answering() {
        let sim = std::sync::Arc::new(SimSlurm::new(SimCluster::test_cluster()));
        let (tx, rx) = mpsc::channel();
        let limits = Limits {
            poll: Duration::from_millis(5),
            give_up: Duration::from_secs(3600),
            deadline: Duration::from_millis(100),
        };
        let t = std::thread::spawn({
            let sim = sim.clone();
            move || run_within(&*sim, vec![target("cpu-1")], &tx, limits)
        });
        std::thread::sleep(Duration::from_millis(20));
        sim.set_unreachable(true);
        t.join().unwrap();
        let last = rx.try_iter().last().unwrap();
        assert!(
            matches!(&last, Msg::Smoke(_, Smoke::Failed(why)) if why.contains("did not end")),
            "{last:?}"
        );
    }
}
