//! What the adapter reports when the cluster misbehaves: node crashes,
//! preemption, time limits and a controller outage.

use std::time::{Duration, Instant};

use shepherd::slurm::{JobState, Slurm};

use crate::both_modes;
use crate::support::{Mode, TestCluster, poll, wait_job};

const WAIT: Duration = Duration::from_secs(90);

both_modes!(node_crash, preemption, time_limit, controller_outage);

fn node_crash(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();

    // Requeueable (Slurm's default): the same job id goes back to pending with
    // its restart count raised, then runs on the other node.
    let requeued = cluster.submit(&slurm, &["-p", "a100", "--gres=gpu:a100:1"], "sleep 600");
    let running = wait_job(&slurm, requeued, WAIT, "start", |j| {
        j.state == JobState::Running
    });
    let crashed = running.nodes[0].clone();
    assert_eq!(running.restarts, 0);

    // Not requeueable: ends as NODE_FAIL when its node is set down.
    let lost = cluster.submit(
        &slurm,
        &["-p", "a6000", "--no-requeue", "--gres=gpu:a6000:1"],
        "sleep 600",
    );
    let lost_running = wait_job(&slurm, lost, WAIT, "start", |j| {
        j.state == JobState::Running
    });

    cluster.inject(&["crash", &crashed]);
    cluster.inject(&["down-node", &lost_running.nodes[0], "injected failure"]);

    // The reason may show a poll after the requeue itself.
    let after = wait_job(&slurm, requeued, WAIT, "requeue after crash", |j| {
        j.restarts >= 1 && (!j.reason.is_empty() || !j.state.is_pending())
    });
    // Seen within the hold (11 s; the poll is far faster).
    assert!(
        after.state.is_pending() && after.reason == "BeginTime",
        "{after:?}"
    );
    // Slurm holds the requeued job for cred_expire (BeginTime, its
    // EligibleTime 11 s ahead); `StartTime=now` (what the daemon asks at a
    // requeue) brings the EligibleTime back to now.
    {
        let eligible = || {
            let show = cluster.slurm_ok("scontrol", &["show", "job", &requeued.to_string()]);
            show.split_whitespace()
                .find_map(|w| w.strip_prefix("EligibleTime="))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let held = eligible();
        let update = shepherd::slurm::PendingUpdate {
            start_now: true,
            ..Default::default()
        };
        match slurm.update_pending(requeued, &update) {
            Ok(()) => {
                let now = eligible();
                assert!(now < held, "EligibleTime {held} -> {now}");
            }
            // It may have started meanwhile: the adapter says so.
            Err(e) => assert_eq!(
                e.rejection(),
                Some(shepherd::slurm::Rejection::JobNotPending),
                "{e}"
            ),
        }
    }
    let rerun = wait_job(&slurm, requeued, WAIT, "rerun elsewhere", |j| {
        j.state == JobState::Running
    });
    assert_ne!(rerun.nodes[0], crashed, "{rerun:?}");
    assert_eq!(rerun.restarts, 1);

    let failed = wait_job(&slurm, lost, WAIT, "node failure", |j| {
        j.state.is_terminal()
    });
    assert_eq!(failed.state, JobState::NodeFail, "{failed:?}");
    let records = poll(Duration::from_secs(30), "NODE_FAIL record", || {
        let r = slurm.accounting(&[lost]).map_err(|e| e.to_string())?;
        r.into_iter()
            .find(|r| r.state == JobState::NodeFail)
            .ok_or_else(|| "no NODE_FAIL record yet".to_string())
    });
    assert_eq!(records.nodes, lost_running.nodes);

    // The crashed node comes back once its slurmd does.
    cluster.inject(&["restart-node", &crashed]);
    cluster.inject(&["resume", &lost_running.nodes[0]]);
    slurm.cancel(&[requeued]).unwrap();
}

fn preemption(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();

    // Victims fill a node's GPUs; the urgent partition then needs them.
    let requeue_victim = cluster.submit(
        &slurm,
        &["-p", "a100", "-w", "a100-1", "--gres=gpu:a100:4"],
        "sleep 600",
    );
    let cancel_victim = cluster.submit(
        &slurm,
        &["-p", "a6000", "-w", "a6000-1", "--gres=gpu:a6000:8"],
        "sleep 600",
    );
    for id in [requeue_victim, cancel_victim] {
        wait_job(&slurm, id, WAIT, "start", |j| j.state == JobState::Running);
    }
    let urgent: Vec<_> = [("a100-1", "gpu:a100:4"), ("a6000-1", "gpu:a6000:8")]
        .iter()
        .map(|(node, gres)| {
            cluster.submit(
                &slurm,
                &["-p", "urgent", "-w", node, &format!("--gres={gres}")],
                "sleep 600",
            )
        })
        .collect();

    // The victim passes through COMPLETING on its way back to pending.
    wait_job(&slurm, requeue_victim, WAIT, "requeue by preemption", |j| {
        j.restarts >= 1 && j.state.is_pending()
    });
    let preempted = wait_job(&slurm, cancel_victim, WAIT, "cancel by preemption", |j| {
        j.state.is_terminal()
    });
    assert_eq!(preempted.state, JobState::Preempted);
    for id in &urgent {
        wait_job(&slurm, *id, WAIT, "urgent start", |j| {
            j.state == JobState::Running
        });
    }
    let record = poll(Duration::from_secs(30), "PREEMPTED record", || {
        let r = slurm
            .accounting(&[cancel_victim])
            .map_err(|e| e.to_string())?;
        r.into_iter()
            .find(|r| r.state == JobState::Preempted)
            .ok_or_else(|| "no PREEMPTED record yet".to_string())
    });
    assert_eq!(record.nodes, ["a6000-1"]);
    slurm.cancel(&urgent).unwrap();
    slurm.cancel(&[requeue_victim]).unwrap();
}

fn time_limit(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();
    let id = cluster.submit(&slurm, &["-p", "short", "--time=1"], "sleep 600");
    // Slurm checks limits about every 30 s, so a one-minute limit ends by ~90 s.
    let job = wait_job(&slurm, id, Duration::from_secs(180), "time limit", |j| {
        j.state.is_terminal()
    });
    assert_eq!(job.state, JobState::Timeout, "{job:?}");
    assert_eq!(job.reason, "TimeLimit");
    assert!(cluster.job_output(id).contains("DUE TO TIME LIMIT"));
    let record = poll(Duration::from_secs(30), "TIMEOUT record", || {
        let r = slurm.accounting(&[id]).map_err(|e| e.to_string())?;
        r.into_iter()
            .find(|r| r.state == JobState::Timeout)
            .ok_or_else(|| "no TIMEOUT record yet".to_string())
    });
    assert_eq!(record.partition, "short");
}

fn controller_outage(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();
    let id = cluster.submit(&slurm, &["-p", "cpu"], "sleep 600");
    wait_job(&slurm, id, WAIT, "start", |j| j.state == JobState::Running);

    cluster.inject(&["ctld-stop"]);
    let timeout = Duration::from_secs(3);
    let down = cluster.slurm_with_timeout(timeout);
    type Check<'a> = Box<dyn Fn() -> Option<shepherd::slurm::SlurmError> + 'a>;
    let checks: [(&str, Check); 4] = [
        ("jobs", Box::new(|| down.jobs(&[id]).err())),
        ("nodes", Box::new(|| down.nodes().err())),
        ("accounting", Box::new(|| down.accounting(&[id]).err())),
        (
            "submit",
            Box::new(|| {
                down.submit(&shepherd::slurm::SubmitRequest {
                    script: shepherd::slurm::ScriptSource::Text("#!/bin/bash\ntrue\n".into()),
                    args: vec!["-p".into(), "cpu".into()],
                    env: None,
                })
                .err()
            }),
        ),
    ];
    for (name, call) in &checks {
        let started = Instant::now();
        let err = call().unwrap_or_else(|| panic!("{name} succeeded with the controller down"));
        assert!(
            err.is_observation_failure(),
            "{name}: an outage must not look like an answer about jobs: {err}"
        );
        // The deadline holds whatever the command does (plus kill grace).
        assert!(
            started.elapsed() < timeout + Duration::from_secs(2),
            "{name} took {:?}",
            started.elapsed()
        );
    }

    cluster.inject(&["ctld-start"]);
    let job = poll(WAIT, "controller back", || {
        slurm.jobs(&[id]).map_err(|e| e.to_string())
    });
    assert_eq!(
        job[0].state,
        JobState::Running,
        "state survives the restart"
    );
    slurm.cancel(&[id]).unwrap();
}
