//! Nodes, partitions, topology, start estimates, rejections and pending jobs.

use std::time::Duration;

use shepherd::slurm::reasons::{PendingOutlook, classify_pending};
use shepherd::slurm::{
    JobState, PendingUpdate, Rejection, ScriptSource, Slurm, SlurmError, SubmitRequest,
};

use crate::both_modes;
use crate::support::{Mode, TestCluster, poll, wait_job};

const WAIT: Duration = Duration::from_secs(60);

both_modes!(inventory, rejections_and_pending_jobs);

fn inventory(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();

    let nodes = slurm.nodes().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a100-1",
            "a100-2",
            "a6000-1",
            "a6000-2",
            "cpu-1",
            "cpu-2",
            "rtx4090-1",
            "rtx4090-2"
        ]
    );
    let node = |name: &str| nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(node("a100-1").gpu_types(), ["a100"]);
    assert_eq!(node("a100-1").gpus_total(), 4);
    assert_eq!(node("a6000-2").gpus_total(), 8);
    assert_eq!(node("rtx4090-1").gpus_total(), 4);
    assert_eq!(node("cpu-1").gpus_total(), 0);
    assert!(node("a100-1").features.contains(&"a100_80gb".to_string()));
    assert!(node("a100-1").partitions.contains(&"urgent".to_string()));
    assert!(
        nodes
            .iter()
            .all(|n| n.state.is_usable() && n.gpus_used == 0),
        "{nodes:?}"
    );

    let parts = slurm.partitions().unwrap();
    let part = |name: &str| parts.iter().find(|p| p.name == name).unwrap();
    assert!(part("cpu").is_default);
    assert!(!part("offline").is_up());
    assert_eq!(part("short").max_time_minutes, Some(1));
    assert_eq!(part("a100").max_time_minutes, None);
    assert_eq!(part("urgent").priority_tier, 10);
    assert_eq!(part("a6000").preempt_mode, "CANCEL");
    assert_eq!(part("a100").preempt_mode, "REQUEUE");
    assert_eq!(part("a100").nodes, ["a100-1", "a100-2"]);

    let switches = slurm.topology().unwrap();
    let leaf1 = switches.iter().find(|s| s.name == "leaf1").unwrap();
    assert_eq!(leaf1.level, 0);
    assert_eq!(leaf1.nodes, ["a100-1", "a100-2", "rtx4090-1"]);
    let spine = switches.iter().find(|s| s.name == "spine").unwrap();
    assert_eq!(spine.switches, ["leaf1", "leaf2", "leaf3"]);

    let estimate = slurm
        .estimate_start(&SubmitRequest {
            script: ScriptSource::Text("#!/bin/bash\ntrue\n".into()),
            args: vec!["-p".into(), "a6000".into(), "--gres=gpu:a6000:2".into()],
            env: None,
        })
        .unwrap();
    assert_eq!(estimate.partition, "a6000");
    assert!(estimate.nodes[0].starts_with("a6000-"));

    // An admin drain shows up with its reason and makes the node unusable.
    cluster.inject(&["drain", "rtx4090-2", "bad fan"]);
    let drained = poll(WAIT, "rtx4090-2 drained", || {
        let n = slurm.nodes().map_err(|e| e.to_string())?;
        let n = n.into_iter().find(|n| n.name == "rtx4090-2").unwrap();
        if n.state.has_flag("DRAIN") {
            Ok(n)
        } else {
            Err(format!("{n:?}"))
        }
    });
    assert!(!drained.state.is_usable());
    assert!(
        drained.reason.as_deref().unwrap_or("").contains("bad fan"),
        "{drained:?}"
    );
    cluster.inject(&["resume", "rtx4090-2"]);
    poll(WAIT, "rtx4090-2 resumed", || {
        let n = slurm.nodes().map_err(|e| e.to_string())?;
        let n = n.into_iter().find(|n| n.name == "rtx4090-2").unwrap();
        if n.state.is_usable() {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    });
}

fn rejections_and_pending_jobs(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();
    let reject = |args: &[&str]| -> Rejection {
        let err = slurm
            .submit(&SubmitRequest {
                script: ScriptSource::Text("#!/bin/bash\ntrue\n".into()),
                args: args.iter().map(|s| s.to_string()).collect(),
                env: None,
            })
            .expect_err("submission should be rejected");
        assert!(!err.is_observation_failure(), "{err}");
        err.rejection()
            .unwrap_or_else(|| panic!("not a rejection: {err}"))
    };
    assert_eq!(reject(&["-p", "nosuch"]), Rejection::InvalidPartition);
    assert_eq!(reject(&["-p", "a100,nosuch"]), Rejection::InvalidPartition);
    assert_eq!(
        reject(&["-p", "a100", "--exclude=retired-node-7"]),
        Rejection::InvalidNodeName
    );
    assert_eq!(
        reject(&["-p", "a100", "--gres=gpu:a100:5"]),
        Rejection::NodeConfigUnavailable
    );
    assert_eq!(
        reject(&["-p", "cpu", "--gres=gpu:1"]),
        Rejection::NodeConfigUnavailable
    );

    // Accepted, but can never start where it is. Slurm may show a transient
    // reason first (`PartitionConfig` before `PartitionTimeLimit`); every
    // reason on the way must already read as hopeless.
    let pending_reason = |args: &[&str], want: &str| {
        let id = cluster.submit(&slurm, args, "true");
        wait_job(&slurm, id, WAIT, want, |j| {
            assert!(j.state.is_pending(), "{j:?}");
            if !j.reason.is_empty() && j.reason != "None" {
                assert_eq!(
                    classify_pending(&j.reason),
                    PendingOutlook::Hopeless,
                    "{j:?}"
                );
            }
            j.reason == want
        });
        id
    };
    let down_job = pending_reason(&["-p", "offline"], "PartitionDown");
    pending_reason(&["-p", "short", "--time=10"], "PartitionTimeLimit");
    pending_reason(&["-p", "a100", "-N", "3"], "PartitionNodeLimit");

    // A pending job is changed in place: new exclude list, then a partition
    // where it can run.
    slurm
        .update_pending(
            down_job,
            &PendingUpdate {
                exclude: Some(vec!["cpu-1".into()]),
                partition: None,
                start_now: false,
            },
        )
        .unwrap();
    slurm
        .update_pending(
            down_job,
            &PendingUpdate {
                exclude: None,
                partition: Some("cpu".into()),
                start_now: false,
            },
        )
        .unwrap();
    let moved = wait_job(&slurm, down_job, WAIT, "run in cpu", |j| {
        j.state.is_terminal()
    });
    assert_eq!(moved.state, JobState::Completed);
    assert_eq!(moved.partition, "cpu");
    assert_eq!(moved.nodes, ["cpu-2"], "cpu-1 was excluded");

    // Too late for a running job.
    let running = cluster.submit(&slurm, &["-p", "cpu"], "sleep 600");
    wait_job(&slurm, running, WAIT, "start", |j| {
        j.state == JobState::Running
    });
    let err = slurm
        .update_pending(
            running,
            &PendingUpdate {
                exclude: Some(vec!["cpu-2".into()]),
                partition: None,
                start_now: false,
            },
        )
        .unwrap_err();
    assert_eq!(err.rejection(), Some(Rejection::JobNotPending), "{err}");
    slurm.cancel(&[running]).unwrap();

    // A job id that never existed.
    let err = slurm.requeue(shepherd::slurm::JobId(987_654)).unwrap_err();
    assert!(matches!(err, SlurmError::UnknownJob { .. }), "{err}");
}
