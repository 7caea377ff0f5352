//! The simulator's own tests: that it behaves as the real cluster did.

use std::sync::Arc;
use std::time::Instant;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn sim() -> SimSlurm {
    SimSlurm::new(SimCluster::test_cluster())
}

fn request(args: &[&str]) -> SubmitRequest {
    SubmitRequest {
        script: ScriptSource::Text("#!/bin/bash\ntrue\n".into()),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: None,
    }
}

fn submit(s: &SimSlurm, args: &[&str]) -> JobId {
    s.submit(&request(args)).unwrap()
}

fn reject(s: &SimSlurm, args: &[&str]) -> SlurmError {
    s.submit(&request(args))
        .expect_err("submission should be rejected")
}

/// The job as `jobs()` reports it.
fn get(s: &SimSlurm, id: JobId) -> JobInfo {
    s.jobs(&[id])
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("job {id} is not held"))
}

fn node(s: &SimSlurm, name: &str) -> NodeInfo {
    s.nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.name == name)
        .unwrap()
}

fn exit(j: &JobInfo) -> Option<(i32, i32)> {
    j.exit.map(|e| (e.code, e.signal))
}

fn exits(code: i32) -> Behaviour {
    Behaviour::Exit {
        after: secs(60),
        code,
    }
}

#[test]
fn is_a_shareable_slurm() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SimSlurm>();
    let shared: Arc<dyn Slurm> = Arc::new(sim());
    assert_eq!(shared.cluster().unwrap().name, "sim");
}

#[test]
fn test_cluster_inventory_matches_the_real_one() {
    let s = sim();
    let nodes = s.nodes().unwrap();
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
    let n = |name: &str| nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(n("a100-1").gpu_types(), ["a100"]);
    assert_eq!(n("a100-1").gpus_total(), 4);
    assert_eq!(n("a6000-2").gpus_total(), 8);
    assert_eq!(n("rtx4090-1").gpus_total(), 4);
    assert_eq!(n("cpu-1").gpus_total(), 0);
    assert_eq!(n("cpu-1").cpus, 8);
    assert!(n("a100-1").features.contains(&"a100_80gb".to_string()));
    assert_eq!(n("a100-1").partitions, ["a100", "urgent"]);
    assert_eq!(n("rtx4090-2").partitions, ["rtx4090", "offline"]);
    assert!(
        nodes
            .iter()
            .all(|n| n.state.is_usable() && n.gpus_used == 0 && n.state.base == "IDLE")
    );

    let parts = s.partitions().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu", "a100", "a6000", "rtx4090", "short", "offline", "urgent"
        ]
    );
    let p = |name: &str| parts.iter().find(|p| p.name == name).unwrap();
    assert!(p("cpu").is_default && !p("a100").is_default);
    assert!(!p("offline").is_up());
    assert_eq!(p("short").max_time_minutes, Some(1));
    assert_eq!(p("a100").max_time_minutes, None);
    assert_eq!(p("urgent").priority_tier, 10);
    assert_eq!(p("urgent").nodes.len(), 4);
    assert_eq!(p("a6000").preempt_mode, "CANCEL");
    assert_eq!(p("a100").preempt_mode, "REQUEUE");
    assert_eq!(p("urgent").preempt_mode, "OFF");
    assert_eq!(p("a100").nodes, ["a100-1", "a100-2"]);
    assert_eq!((p("a100").total_cpus, p("a100").total_nodes), (32, 2));

    let switches = s.topology().unwrap();
    assert_eq!(switches.len(), 4);
    let leaf1 = switches.iter().find(|s| s.name == "leaf1").unwrap();
    assert_eq!(leaf1.level, 0);
    assert_eq!(leaf1.nodes, ["a100-1", "a100-2", "rtx4090-1"]);
    let spine = switches.iter().find(|s| s.name == "spine").unwrap();
    assert_eq!((spine.level, spine.switches.len()), (1, 3));
    assert_eq!(spine.switches, ["leaf1", "leaf2", "leaf3"]);
    assert_eq!(spine.nodes.len(), 8);

    let info = s.cluster().unwrap();
    assert_eq!(info.name, "sim");
    assert_eq!(info.version, "22.05.8");
    assert_eq!(info.accounting_storage, "accounting_storage/none");
    assert_eq!(info.job_comp, "jobcomp/filetxt");
    assert_eq!(info.min_job_age_secs, 300);
    assert_eq!(info.topology_plugin, "topology/tree");
}

#[test]
fn schedules_onto_free_gpus_and_reports_them_in_use() {
    let s = sim();
    let holder = submit(&s, &["-p", "a6000", "--gres=gpu:a6000:3", "-J", "holder"]);
    assert_eq!(holder, JobId(1));
    let fresh = get(&s, holder);
    assert_eq!(fresh.state, JobState::Pending);
    assert_eq!(fresh.reason, "", "no reason before the scheduler looked");
    assert_eq!(fresh.submit_time, Some(s.now()));

    s.step();
    let running = get(&s, holder);
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.name, "holder");
    assert_eq!(running.partition, "a6000");
    assert_eq!(running.nodes, ["a6000-1"]);
    assert_eq!(running.start_time, Some(s.now()));
    assert!(running.end_time.is_none() && running.exit.is_none());
    let n = node(&s, "a6000-1");
    assert_eq!((n.gpus_used, n.gpus_total(), n.gpus_free()), (3, 8, 5));
    assert_eq!((n.state.to_string().as_str(), n.cpus_alloc), ("MIXED", 1));

    // Eight GPUs fit only on the other node; five then fill the first.
    let eight = submit(&s, &["-p", "a6000", "--gpus=8"]);
    let five = submit(&s, &["-p", "a6000", "--gres=gpu:5"]);
    s.step();
    assert_eq!(get(&s, eight).nodes, ["a6000-2"]);
    assert_eq!(get(&s, five).nodes, ["a6000-1"]);
    let n = node(&s, "a6000-1");
    assert_eq!(n.gpus_free(), 0);
    assert_eq!(n.state.base, "MIXED", "Slurm's node state follows CPUs");

    // All CPUs of a node taken: ALLOCATED.
    let cpus = submit(&s, &["-p", "cpu", "-c", "8"]);
    s.step();
    assert_eq!(get(&s, cpus).nodes, ["cpu-1"]);
    assert_eq!(node(&s, "cpu-1").state.base, "ALLOCATED");
}

#[test]
fn pending_jobs_start_first_in_first_out() {
    let s = sim();
    s.behave_named("fill", exits(0));
    let fill: Vec<JobId> = (0..2)
        .map(|_| submit(&s, &["-p", "a100", "--gres=gpu:a100:4", "-J", "fill"]))
        .collect();
    let first = submit(&s, &["-p", "a100", "--gres=gpu:a100:4"]);
    let small = submit(&s, &["-p", "a100", "--gres=gpu:a100:1"]);
    let third = submit(&s, &["-p", "a100", "--gres=gpu:a100:4"]);
    s.step();
    for id in &fill {
        assert_eq!(get(&s, *id).state, JobState::Running);
    }
    assert_eq!(get(&s, first).reason, "Resources");
    assert_eq!(get(&s, small).reason, "Priority");
    assert_eq!(get(&s, third).reason, "Priority");
    for id in [first, small, third] {
        let reason = get(&s, id).reason;
        assert_eq!(classify_pending(&reason), PendingOutlook::Waiting);
    }

    s.advance(secs(59));
    assert_eq!(get(&s, first).state, JobState::Pending);
    s.advance(secs(1));
    assert_eq!(get(&s, fill[0]).state, JobState::Completed);
    let first_job = get(&s, first);
    assert_eq!(first_job.nodes, ["a100-1"]);
    assert_eq!(first_job.start_time, Some(s.now()));
    assert_eq!(get(&s, small).nodes, ["a100-2"]);
    let third_job = get(&s, third);
    assert_eq!(third_job.state, JobState::Pending);
    assert_eq!(third_job.reason, "Resources");
}

#[test]
fn several_partitions_start_where_the_job_fits_now() {
    let s = sim();
    for _ in 0..2 {
        submit(&s, &["-p", "a100", "--gres=gpu:4"]);
    }
    let either = submit(&s, &["-p", "a100,a6000", "--gres=gpu:2"]);
    assert_eq!(get(&s, either).partition, "a100,a6000");
    // An a100 request is accepted on both partitions, but a6000 can never
    // run it: it waits for a100.
    let typed = submit(&s, &["--partition=a100,a6000", "--gres=gpu:a100:2"]);
    s.step();
    let started = get(&s, either);
    assert_eq!(started.state, JobState::Running);
    assert_eq!(started.partition, "a6000");
    assert_eq!(started.nodes, ["a6000-1"]);
    let waiting = get(&s, typed);
    assert_eq!(
        (waiting.state, waiting.reason.as_str()),
        (JobState::Pending, "Resources")
    );
}

#[test]
fn exclude_lists_and_node_lists() {
    let s = sim();
    let excluded = submit(&s, &["-p", "cpu", "--exclude=cpu-1"]);
    let short_flag = submit(&s, &["-p", "cpu", "-x", "cpu-2"]);
    let pinned = submit(&s, &["-p", "a100", "-w", "a100-2", "--gres=gpu:1"]);
    let both = submit(
        &s,
        &[
            "-p",
            "a6000",
            "--nodelist=a6000-[1-2]",
            "--gres=gpu:a6000:1",
        ],
    );
    let all_but = submit(
        &s,
        &["-p", "urgent", "-x", "a100-[1-2],a6000-1", "--gres=gpu:1"],
    );
    s.step();
    assert_eq!(get(&s, excluded).nodes, ["cpu-2"]);
    assert_eq!(get(&s, short_flag).nodes, ["cpu-1"]);
    assert_eq!(get(&s, pinned).nodes, ["a100-2"]);
    assert_eq!(get(&s, both).nodes, ["a6000-1", "a6000-2"]);
    assert_eq!(get(&s, all_but).nodes, ["a6000-2"]);
    assert_eq!(node(&s, "a6000-2").gpus_used, 2);
}

#[test]
fn rejections_have_the_real_kinds_and_messages() {
    let s = sim();
    let cases: &[(&[&str], Rejection)] = &[
        (&["-p", "nosuch"], Rejection::InvalidPartition),
        (&["-p", "a100,nosuch"], Rejection::InvalidPartition),
        (
            &["-p", "a100", "--exclude=retired-node-7"],
            Rejection::InvalidNodeName,
        ),
        (&["-p", "a100", "-w", "a100-9"], Rejection::InvalidNodeName),
        (
            &["-p", "a100", "--gres=gpu:a100:5"],
            Rejection::NodeConfigUnavailable,
        ),
        (
            &["-p", "cpu", "--gres=gpu:1"],
            Rejection::NodeConfigUnavailable,
        ),
        (
            &["-p", "a100", "--gres=gpu:h100:1"],
            Rejection::NodeConfigUnavailable,
        ),
        (
            &["-p", "a100", "-w", "cpu-1"],
            Rejection::NodeConfigUnavailable,
        ),
        (
            &["-p", "cpu", "--exclude=cpu-[1-2]"],
            Rejection::NodeConfigUnavailable,
        ),
        (&["-p", "cpu", "--mem=1T"], Rejection::NodeConfigUnavailable),
        (&["-p", "a100", "--gres=tpu:1"], Rejection::InvalidRequest),
        (
            &["-p", "a100", "--gres=gpu:a100:x"],
            Rejection::InvalidRequest,
        ),
        (&["--time=bogus"], Rejection::InvalidRequest),
        (&["-C", "nosuchfeature"], Rejection::InvalidRequest),
        (&["-p"], Rejection::InvalidRequest),
    ];
    for (args, want) in cases {
        let err = reject(&s, args);
        assert!(!err.is_observation_failure(), "{args:?}: {err}");
        assert_eq!(err.rejection(), Some(*want), "{args:?}: {err}");
        let SlurmError::Rejected { message, .. } = &err else {
            unreachable!()
        };
        assert_eq!(
            Rejection::classify(message),
            Some(*want),
            "the adapter would classify {message:?} differently"
        );
    }
    s.set_partition_state("a100", PartitionState::Drain);
    s.set_partition_state("a6000", PartitionState::Inactive);
    for p in ["a100", "a6000", "a100,a6000"] {
        let err = reject(&s, &["-p", p]);
        assert_eq!(
            err.rejection(),
            Some(Rejection::PartitionUnavailable),
            "{err}"
        );
    }
    // One usable partition in the list is enough.
    submit(&s, &["-p", "a100,rtx4090"]);
}

#[test]
fn a_rejected_node_configuration_uses_up_a_job_id() {
    let s = sim();
    reject(&s, &["-p", "a100", "--gres=gpu:a100:5", "-J", "toomany"]);
    reject(&s, &["-p", "nosuch"]);
    let next = submit(&s, &["-p", "cpu"]);
    assert_eq!(next, JobId(2), "Slurm keeps a FAILED job for the first");
    let ghost = s.job(JobId(1)).unwrap();
    assert!(!ghost.accepted && !ghost.is_live());
    assert_eq!(ghost.info.state, JobState::Failed);
    assert_eq!(ghost.info.reason, "BadConstraints");
    assert_eq!(ghost.info.partition, "a100");
    assert!(s.live_jobs_named("toomany").is_empty());
}

#[test]
fn jobs_that_can_never_start_pend_with_hopeless_reasons() {
    let s = sim();
    let down = submit(&s, &["-p", "offline"]);
    let too_long = submit(&s, &["-p", "short", "--time=10"]);
    let too_big = submit(&s, &["-p", "a100", "-N", "3"]);
    let too_wide = submit(&s, &["-p", "cpu", "-c", "64"]);
    let forever = submit(&s, &["-p", "short", "--time=UNLIMITED"]);
    s.advance(secs(3600));
    for (id, want) in [
        (down, "PartitionDown"),
        (too_long, "PartitionTimeLimit"),
        (too_big, "PartitionNodeLimit"),
        (too_wide, "PartitionConfig"),
        (forever, "PartitionTimeLimit"),
    ] {
        let j = get(&s, id);
        assert_eq!(
            (j.state.clone(), j.reason.as_str()),
            (JobState::Pending, want)
        );
        assert_eq!(classify_pending(&j.reason), PendingOutlook::Hopeless);
        assert!(j.nodes.is_empty() && j.start_time.is_none());
    }
    s.set_partition_state("offline", PartitionState::Up);
    s.step();
    let up = get(&s, down);
    assert_eq!(
        (up.state, up.nodes),
        (JobState::Running, vec!["rtx4090-1".to_string()])
    );
}

#[test]
fn node_failure_requeues_or_ends_node_fail() {
    let s = sim();
    let requeued = submit(&s, &["-p", "a100", "--gres=gpu:a100:1", "-J", "requeued"]);
    let lost = submit(
        &s,
        &[
            "-p",
            "a6000",
            "--no-requeue",
            "--gres=gpu:a6000:1",
            "-J",
            "lost",
        ],
    );
    s.step();
    assert_eq!(get(&s, requeued).nodes, ["a100-1"]);
    assert_eq!(get(&s, lost).nodes, ["a6000-1"]);
    assert_eq!(get(&s, requeued).restarts, 0);

    s.advance(secs(5));
    s.fail_node("a100-1", "injected failure");
    s.fail_node("a6000-1", "injected failure");
    let back = get(&s, requeued);
    assert_eq!(back.state, JobState::Pending);
    assert_eq!((back.restarts, back.reason.as_str()), (1, "BeginTime"));
    assert!(back.nodes.is_empty() && back.start_time.is_none());
    assert_eq!(back.partition, "a100");
    let failed = get(&s, lost);
    assert_eq!(
        (failed.state.clone(), failed.reason.as_str()),
        (JobState::NodeFail, "NodeDown")
    );
    assert_eq!(exit(&failed), Some((0, 0)));
    assert_eq!(failed.end_time, Some(s.now()));

    let down = node(&s, "a100-1");
    assert_eq!(down.state.to_string(), "DOWN");
    assert!(!down.state.is_usable());
    assert!(down.reason.unwrap().starts_with("injected failure [root@"));
    assert_eq!(down.gpus_used, 0);

    // Eligible again after the requeue delay, then on the other node.
    s.advance(secs(10));
    assert_eq!(get(&s, requeued).state, JobState::Pending);
    s.advance(secs(1));
    let rerun = get(&s, requeued);
    assert_eq!(rerun.state, JobState::Running);
    assert_eq!((rerun.nodes[0].as_str(), rerun.restarts), ("a100-2", 1));

    // Accounting logs the interrupted run as NODE_FAIL in both cases.
    let records = s.accounting(&[requeued, lost]).unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r.state == JobState::NodeFail));
    assert_eq!(records[0].nodes, ["a100-1"]);
    assert_eq!(records[1].nodes, ["a6000-1"]);
    assert_eq!(records[1].partition, "a6000");

    s.resume_node("a100-1");
    assert!(node(&s, "a100-1").state.is_usable());
    assert_eq!(node(&s, "a100-1").reason, None);
}

#[test]
fn a_crashed_node_is_noticed_late() {
    let s = sim();
    s.on_start(|_| Behaviour::Exit {
        after: secs(100),
        code: 0,
    });
    let id = submit(&s, &["-p", "a100", "--gres=gpu:a100:2"]);
    s.step();
    assert_eq!(get(&s, id).nodes, ["a100-1"]);
    s.advance(secs(95));
    s.crash_node("a100-1");
    // The script would have ended at 100 s, but its node is dead: Slurm
    // still shows it running, and the node looks fine for a while.
    s.advance(secs(10));
    assert_eq!(get(&s, id).state, JobState::Running);
    assert!(node(&s, "a100-1").state.flags.is_empty());
    s.advance(secs(6));
    assert_eq!(get(&s, id).state, JobState::Running);
    let n = node(&s, "a100-1");
    assert!(
        n.state.has_flag("NOT_RESPONDING") && !n.state.is_usable(),
        "{n:?}"
    );
    assert_eq!(n.state.base, "MIXED");
    // No new job goes there meanwhile.
    let other = submit(&s, &["-p", "a100", "--gres=gpu:a100:1"]);
    s.step();
    assert_eq!(get(&s, other).nodes, ["a100-2"]);

    s.advance(secs(13));
    assert_eq!(get(&s, id).state, JobState::Running);
    s.advance(secs(1));
    let n = node(&s, "a100-1");
    assert_eq!(n.state.to_string(), "DOWN+NOT_RESPONDING");
    assert!(n.reason.unwrap().starts_with("Not responding"));
    let j = get(&s, id);
    assert_eq!((j.state.clone(), j.restarts), (JobState::Pending, 1));

    s.advance(secs(11));
    assert_eq!(get(&s, id).nodes, ["a100-2"]);
    s.advance(secs(100));
    assert_eq!(get(&s, id).state, JobState::Completed);
    let states: Vec<JobState> = s
        .accounting(&[id])
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [JobState::NodeFail, JobState::Completed]);

    s.restart_node("a100-1");
    let n = node(&s, "a100-1");
    assert!(n.state.is_usable() && n.reason.is_none(), "{n:?}");
}

#[test]
fn drained_nodes_keep_their_jobs_and_take_no_new_ones() {
    let s = sim();
    let running = submit(&s, &["-p", "rtx4090", "-w", "rtx4090-2", "--gres=gpu:1"]);
    s.step();
    s.drain_node("rtx4090-2", "bad fan");
    let n = node(&s, "rtx4090-2");
    assert_eq!(n.state.to_string(), "MIXED+DRAIN");
    assert!(!n.state.is_usable());
    assert!(
        n.reason
            .unwrap()
            .starts_with("bad fan [root@2026-01-01T00:00:00]")
    );
    assert_eq!(get(&s, running).state, JobState::Running);

    let wants_it = submit(&s, &["-p", "rtx4090", "-w", "rtx4090-2", "--gres=gpu:1"]);
    s.step();
    let j = get(&s, wants_it);
    assert_eq!(j.reason, "ReqNodeNotAvail, UnavailableNodes:rtx4090-2");
    assert_eq!(classify_pending(&j.reason), PendingOutlook::Blocked);

    s.cancel(&[running]).unwrap();
    assert_eq!(node(&s, "rtx4090-2").state.to_string(), "IDLE+DRAIN");
    s.resume_node("rtx4090-2");
    s.step();
    assert_eq!(get(&s, wants_it).state, JobState::Running);

    s.drain_node("cpu-1", "maintenance");
    s.drain_node("cpu-2", "maintenance");
    let nowhere = submit(&s, &["-p", "cpu"]);
    s.step();
    let j = get(&s, nowhere);
    assert_eq!(j.reason, ALL_NODES_DOWN);
    assert_eq!(classify_pending(&j.reason), PendingOutlook::Blocked);
}

#[test]
fn preemption_by_hand_follows_the_partition_mode() {
    let s = sim();
    let requeue = submit(&s, &["-p", "a100", "--gres=gpu:1"]);
    let cancel = submit(&s, &["-p", "a6000", "--gres=gpu:1"]);
    s.step();
    s.preempt(requeue);
    s.preempt(cancel);
    let j = get(&s, requeue);
    assert_eq!(
        (j.state.clone(), j.restarts, j.reason.as_str()),
        (JobState::Pending, 1, "BeginTime")
    );
    let j = get(&s, cancel);
    assert_eq!(j.state, JobState::Preempted);
    assert_eq!(exit(&j), Some((0, 15)));
    let records = s.accounting(&[requeue, cancel]).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.state == JobState::Preempted));
    assert_eq!(records[1].exit.map(|e| (e.code, e.signal)), Some((0, 0)));
    s.advance(secs(11));
    assert_eq!(get(&s, requeue).state, JobState::Running);
}

#[test]
fn a_higher_tier_preempts_lower_ones() {
    let s = sim();
    let requeue_victim = submit(&s, &["-p", "a100", "-w", "a100-1", "--gres=gpu:a100:4"]);
    let cancel_victim = submit(&s, &["-p", "a6000", "-w", "a6000-1", "--gres=gpu:a6000:8"]);
    let bystander = submit(&s, &["-p", "a100", "-w", "a100-2", "--gres=gpu:a100:1"]);
    s.step();
    let urgent = [
        submit(&s, &["-p", "urgent", "-w", "a100-1", "--gres=gpu:a100:4"]),
        submit(&s, &["-p", "urgent", "-w", "a6000-1", "--gres=gpu:a6000:8"]),
    ];
    s.step();
    for id in urgent {
        let j = get(&s, id);
        assert_eq!(
            (j.state, j.partition.as_str()),
            (JobState::Running, "urgent")
        );
    }
    let j = get(&s, requeue_victim);
    assert_eq!((j.state.clone(), j.restarts), (JobState::Pending, 1));
    assert_eq!(get(&s, cancel_victim).state, JobState::Preempted);
    assert_eq!(get(&s, bystander).state, JobState::Running);
    s.advance(secs(11));
    let j = get(&s, requeue_victim);
    assert_eq!(
        (j.state.clone(), j.reason.as_str()),
        (JobState::Pending, "Resources")
    );
    s.cancel(&urgent).unwrap();
    s.step();
    assert_eq!(get(&s, requeue_victim).state, JobState::Running);
}

#[test]
fn same_shaped_jobs_each_preempt_in_one_pass() {
    let s = sim();
    let victims = [
        submit(&s, &["-p", "a100", "--gres=gpu:a100:4"]),
        submit(&s, &["-p", "a100", "--gres=gpu:a100:4"]),
    ];
    s.step();
    let urgent: Vec<JobId> = (0..3)
        .map(|_| submit(&s, &["-p", "urgent", "--gres=gpu:a100:4"]))
        .collect();
    s.step();
    let nodes: Vec<Vec<String>> = urgent[..2].iter().map(|&id| get(&s, id).nodes).collect();
    assert_eq!(nodes, [["a100-1"], ["a100-2"]]);
    let third = get(&s, urgent[2]);
    assert_eq!(
        (third.state, third.reason.as_str()),
        (JobState::Pending, "Resources")
    );
    for id in victims {
        assert_eq!(get(&s, id).restarts, 1);
    }
}

#[test]
fn time_limits_end_jobs_timeout() {
    let s = sim();
    let short = submit(&s, &["-p", "short"]);
    let limited = submit(&s, &["-p", "cpu", "--time=2"]);
    let in_time = submit(&s, &["-p", "cpu", "-t", "5", "-J", "quick"]);
    s.behave_named("quick", exits(0));
    s.step();
    assert_eq!(s.job(short).unwrap().time_limit_minutes, Some(1));
    assert_eq!(s.job(limited).unwrap().time_limit_minutes, Some(2));
    s.advance(secs(59));
    assert_eq!(get(&s, short).state, JobState::Running);
    s.advance(secs(1));
    let j = get(&s, short);
    assert_eq!(
        (j.state.clone(), j.reason.as_str()),
        (JobState::Timeout, "TimeLimit")
    );
    assert_eq!(exit(&j), Some((0, 15)));
    assert_eq!(get(&s, in_time).state, JobState::Completed);
    s.advance(secs(60));
    assert_eq!(get(&s, limited).state, JobState::Timeout);
    let record = s.accounting(&[short]).unwrap().pop().unwrap();
    assert_eq!(
        (record.state, record.partition.as_str()),
        (JobState::Timeout, "short")
    );
}

#[test]
fn ended_jobs_leave_the_controller_after_min_job_age() {
    let s = sim();
    s.on_start(|_| Behaviour::Exit {
        after: Duration::ZERO,
        code: 0,
    });
    let id = submit(&s, &["-p", "cpu"]);
    s.advance(secs(1));
    assert_eq!(get(&s, id).state, JobState::Completed);
    s.advance(secs(298));
    assert!(s.job(id).unwrap().held);
    assert_eq!(s.jobs(&[id]).unwrap().len(), 1);
    s.advance(secs(1));
    assert!(s.jobs(&[id]).unwrap().is_empty(), "forgotten after 300 s");
    assert!(!s.job(id).unwrap().held);
    assert_eq!(s.accounting(&[id]).unwrap().len(), 1, "accounting keeps it");
    let err = s.requeue(id).unwrap_err();
    assert!(matches!(err, SlurmError::UnknownJob { .. }), "{err}");
    assert!(!err.is_observation_failure());
    s.cancel(&[id])
        .expect("cancelling a forgotten job is not an error");
}

#[test]
fn accounting_records_every_ended_run() {
    let s = sim();
    s.behave_named("ok", exits(0));
    s.behave_named("three", exits(3));
    s.behave_named(
        "killed",
        Behaviour::Killed {
            after: secs(1),
            signal: 9,
        },
    );
    let ids: Vec<JobId> = ["ok", "three", "killed", "holder"]
        .iter()
        .map(|name| submit(&s, &["-p", "cpu", "-J", name]))
        .collect();
    let [ok, three, killed, holder] = ids[..] else {
        unreachable!()
    };
    let never_ran = submit(&s, &["-p", "offline"]);
    s.advance(secs(60));

    let j = get(&s, ok);
    assert_eq!(
        (j.state.clone(), exit(&j), j.reason.as_str()),
        (JobState::Completed, Some((0, 0)), "")
    );
    let j = get(&s, three);
    assert_eq!(
        (j.state.clone(), exit(&j)),
        (JobState::Failed, Some((3, 0)))
    );
    assert_eq!(j.reason, "NonZeroExitCode");
    let j = get(&s, killed);
    assert_eq!(
        (j.state.clone(), exit(&j)),
        (JobState::Failed, Some((0, 9)))
    );
    assert_eq!(j.reason, "JobLaunchFailure");
    assert!(j.start_time.is_some() && j.end_time.is_some());

    // Only ended runs have records.
    let records = s.accounting(&ids).unwrap();
    let ended: Vec<JobId> = records.iter().map(|r| r.id).collect();
    assert_eq!(ended, [ok, three, killed]);
    assert!(
        records
            .iter()
            .all(|r| r.source == AccountingSource::JobComp)
    );
    assert_eq!(records[1].exit.map(|e| e.code), Some(3));
    assert_eq!(records[2].exit.map(|e| e.signal), Some(9));
    assert_eq!(
        (records[0].nodes.len(), records[0].partition.as_str()),
        (1, "cpu")
    );

    // A requeue is a record; a cancel while waiting to rerun writes none.
    s.requeue(holder).unwrap();
    let j = get(&s, holder);
    assert_eq!((j.state.clone(), j.restarts), (JobState::Pending, 1));
    s.cancel(&[holder]).unwrap();
    assert_eq!(get(&s, holder).state, JobState::Cancelled);
    let states: Vec<JobState> = s
        .accounting(&[holder])
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [JobState::Requeued]);

    // A job cancelled before it ever ran has a record without a start.
    s.cancel(&[never_ran]).unwrap();
    let r = s.accounting(&[never_ran]).unwrap().pop().unwrap();
    assert_eq!(r.state, JobState::Cancelled);
    assert!(r.start_time.is_none() && r.nodes.is_empty() && r.end_time.is_some());

    assert!(s.accounting(&[JobId(987_654)]).unwrap().is_empty());
}

#[test]
fn a_cancelled_running_job_and_its_requeue_record() {
    let s = sim();
    let id = submit(&s, &["-p", "cpu"]);
    s.step();
    s.requeue(id).unwrap();
    s.advance(secs(11));
    assert_eq!(get(&s, id).state, JobState::Running);
    s.cancel(&[id]).unwrap();
    let j = get(&s, id);
    assert_eq!(
        (j.state.clone(), exit(&j), j.restarts),
        (JobState::Cancelled, Some((0, 15)), 1)
    );
    let states: Vec<JobState> = s
        .accounting(&[id])
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [JobState::Requeued, JobState::Cancelled]);
}

#[test]
fn slurmdbd_lags_and_the_controller_forgets() {
    let s = SimSlurm::new(
        SimCluster::test_cluster()
            .accounting(AccountingSource::Slurmdbd)
            .accounting_lag(secs(1)),
    );
    assert_eq!(
        s.cluster().unwrap().accounting_storage,
        "accounting_storage/slurmdbd"
    );
    s.on_start(|_| exits(0));
    let id = submit(&s, &["-p", "cpu"]);
    s.advance(secs(60));
    assert_eq!(get(&s, id).state, JobState::Completed);
    assert!(
        s.accounting(&[id]).unwrap().is_empty(),
        "not in slurmdbd yet"
    );
    s.advance(secs(1));
    let r = s.accounting(&[id]).unwrap();
    assert_eq!((r.len(), r[0].source), (1, AccountingSource::Slurmdbd));

    let s = SimSlurm::new(SimCluster::test_cluster().accounting(AccountingSource::Controller));
    assert_eq!(s.cluster().unwrap().job_comp, "jobcomp/none");
    s.on_start(|_| exits(0));
    let id = submit(&s, &["-p", "cpu"]);
    s.step();
    s.requeue(id).unwrap();
    s.advance(secs(11 + 60));
    let r = s.accounting(&[id]).unwrap();
    assert_eq!(r.len(), 1, "the controller knows only the last run: {r:?}");
    assert_eq!(
        (r[0].state.clone(), r[0].source),
        (JobState::Completed, AccountingSource::Controller)
    );
    s.advance(secs(300));
    assert!(s.accounting(&[id]).unwrap().is_empty());
}

#[test]
fn an_unreachable_controller_fails_every_command_but_the_cluster_goes_on() {
    let s = sim();
    s.on_start(|_| exits(0));
    let id = submit(&s, &["-p", "cpu", "-J", "r1"]);
    s.step();
    s.set_unreachable(true);
    let req = request(&["-p", "cpu"]);
    let update = PendingUpdate {
        exclude: Some(vec!["cpu-1".into()]),
        partition: None,
        start_now: false,
    };
    let errors = [
        s.cluster().err(),
        s.submit(&req).err(),
        s.estimate_start(&req).err(),
        s.jobs(&[id]).err(),
        s.jobs_by_name(&["r1".to_string()]).err(),
        s.accounting(&[id]).err(),
        s.cancel(&[id]).err(),
        s.requeue(id).err(),
        s.update_pending(id, &update).err(),
        s.nodes().err(),
        s.partitions().err(),
        s.topology().err(),
    ];
    for err in errors {
        let err = err.expect("a call succeeded with the controller unreachable");
        assert!(matches!(err, SlurmError::Unreachable { .. }), "{err}");
        assert!(err.is_observation_failure());
    }
    // The adapter runs no command for an empty list.
    assert!(s.jobs(&[]).unwrap().is_empty());
    s.cancel(&[]).unwrap();
    assert_eq!(s.all_jobs().len(), 1, "nothing was submitted");

    // Jobs go on meanwhile; the news is there once Slurm answers again.
    s.advance(secs(60));
    s.set_unreachable(false);
    assert_eq!(get(&s, id).state, JobState::Completed);
    // Learnt once, the configuration is cached like the adapter does.
    s.cluster().unwrap();
    s.set_unreachable(true);
    assert!(s.cluster().is_ok());
}

#[test]
fn timeouts_and_lost_submit_replies() {
    let s = sim();
    s.set_timeout(true);
    let err = s.submit(&request(&["-p", "cpu", "-J", "r1"])).unwrap_err();
    match &err {
        SlurmError::TimedOut { after, .. } => assert_eq!(*after, secs(30)),
        other => panic!("{other}"),
    }
    assert!(err.is_observation_failure());
    assert!(s.all_jobs().is_empty(), "a timed-out command did nothing");
    assert!(s.nodes().is_err());
    s.set_timeout(false);

    // The reply is lost but the job exists: it must be found by name.
    s.set_submit_reply_lost(true);
    let err = s.submit(&request(&["-p", "cpu", "-J", "r1"])).unwrap_err();
    assert!(matches!(err, SlurmError::TimedOut { .. }));
    s.set_submit_reply_lost(false);
    let live = s.live_jobs_named("r1");
    assert_eq!(live.len(), 1);
    let found = s
        .jobs_by_name(&["r1".to_string(), "other".to_string()])
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, live[0].info.id);
}

#[test]
fn calls_are_counted_by_kind() {
    let s = sim();
    let id = submit(&s, &["-p", "cpu"]);
    assert_eq!(s.calls().submit, 1);
    s.reset_calls();
    assert_eq!(s.calls(), SimCalls::default());
    s.jobs(&[id]).unwrap();
    s.jobs(&[id, JobId(99)]).unwrap();
    s.nodes().unwrap();
    s.accounting(&[id]).unwrap();
    let c = s.calls();
    assert_eq!((c.jobs, c.nodes, c.accounting), (2, 1, 1));
    assert_eq!((c.queries(), c.actions(), c.total()), (4, 0, 4));
    // squeue ×2, scontrol show node, scontrol show config + sacct.
    assert_eq!(c.commands, 5);

    s.jobs(&[]).unwrap();
    s.accounting(&[id]).unwrap();
    s.update_pending(id, &PendingUpdate::default()).unwrap();
    s.cancel(&[id]).unwrap();
    s.partitions().unwrap();
    s.topology().unwrap();
    s.cluster().unwrap();
    s.estimate_start(&request(&["-p", "cpu"])).unwrap();
    s.requeue(JobId(999)).unwrap_err();
    s.jobs_by_name(&["x".to_string()]).unwrap();
    let c = s.calls();
    assert_eq!(c.jobs, 3);
    assert_eq!(c.accounting, 2);
    assert_eq!(
        (c.update_pending, c.cancel, c.partitions, c.topology),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (c.cluster, c.estimate, c.requeue, c.jobs_by_name),
        (1, 1, 1, 1)
    );
    // No command for the empty list, the empty update or the cached config.
    assert_eq!(c.commands, 5 + 1 + 1 + 1 + 1 + 1 + 1 + 1);
}

#[test]
fn pending_jobs_are_changed_in_place() {
    let s = sim();
    let down = submit(&s, &["-p", "offline"]);
    s.update_pending(
        down,
        &PendingUpdate {
            exclude: Some(vec!["cpu-1".into()]),
            partition: None,
            start_now: false,
        },
    )
    .unwrap();
    s.update_pending(
        down,
        &PendingUpdate {
            exclude: None,
            partition: Some("cpu".into()),
            start_now: false,
        },
    )
    .unwrap();
    s.step();
    let moved = get(&s, down);
    assert_eq!(moved.state, JobState::Running);
    assert_eq!(
        (moved.partition.as_str(), moved.nodes.as_slice()),
        ("cpu", &["cpu-2".to_string()][..])
    );

    let err = s
        .update_pending(
            down,
            &PendingUpdate {
                exclude: Some(vec!["cpu-2".into()]),
                partition: None,
                start_now: false,
            },
        )
        .unwrap_err();
    assert_eq!(err.rejection(), Some(Rejection::JobNotPending), "{err}");
    let SlurmError::Rejected { message, .. } = &err else {
        unreachable!()
    };
    assert_eq!(Rejection::classify(message), Some(Rejection::JobNotPending));

    let waiting = submit(&s, &["-p", "offline"]);
    let bad = |update: PendingUpdate| s.update_pending(waiting, &update).unwrap_err().rejection();
    assert_eq!(
        bad(PendingUpdate {
            exclude: None,
            partition: Some("nosuch".into()),
            start_now: false,
        }),
        Some(Rejection::InvalidPartition)
    );
    assert_eq!(
        bad(PendingUpdate {
            exclude: Some(vec!["retired-node-7".into()]),
            partition: None,
            start_now: false,
        }),
        Some(Rejection::InvalidNodeName)
    );
    let err = s
        .update_pending(
            JobId(987_654),
            &PendingUpdate {
                exclude: Some(vec![]),
                partition: None,
                start_now: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, SlurmError::UnknownJob { .. }), "{err}");
}

#[test]
fn requeue_needs_a_started_requeueable_job() {
    let s = sim();
    let err = s.requeue(JobId(987_654)).unwrap_err();
    assert!(matches!(err, SlurmError::UnknownJob { .. }), "{err}");
    let pending = submit(&s, &["-p", "offline"]);
    assert!(matches!(s.requeue(pending), Err(SlurmError::Failed { .. })));
    let fixed = submit(&s, &["-p", "cpu", "--no-requeue"]);
    s.step();
    assert!(matches!(s.requeue(fixed), Err(SlurmError::Failed { .. })));
    assert_eq!(get(&s, fixed).state, JobState::Running);
}

#[test]
fn start_estimates() {
    let s = sim();
    let e = s
        .estimate_start(&request(&["-p", "a6000", "--gres=gpu:a6000:2"]))
        .unwrap();
    assert_eq!((e.start, e.partition.as_str()), (s.now(), "a6000"));
    assert_eq!(
        (e.nodes.as_slice(), e.processors),
        (&["a6000-1".to_string()][..], 1)
    );
    assert!(s.all_jobs().is_empty(), "--test-only creates no job");

    submit(&s, &["-p", "a100", "--gres=gpu:4", "--time=10"]);
    submit(&s, &["-p", "a100", "--gres=gpu:4"]);
    s.step();
    let e = s
        .estimate_start(&request(&["-p", "a100", "--gres=gpu:a100:4"]))
        .unwrap();
    assert_eq!(e.nodes, ["a100-1"]);
    assert_eq!(e.start.duration_since(s.now()).as_secs(), 600);

    submit(&s, &["-p", "a6000", "--gres=gpu:8"]);
    submit(&s, &["-p", "a6000", "--gres=gpu:8"]);
    s.step();
    let e = s
        .estimate_start(&request(&["-p", "a6000", "--gres=gpu:1"]))
        .unwrap();
    assert!(
        e.start.duration_since(s.now()).as_secs() > 300 * 86_400,
        "{e:?}"
    );

    let err = s.estimate_start(&request(&["-p", "nosuch"])).unwrap_err();
    assert_eq!(err.rejection(), Some(Rejection::InvalidPartition));
}

#[test]
fn sbatch_lines_in_the_script_count_and_unknown_arguments_are_kept() {
    let s = sim();
    let script = "#!/bin/bash\n\
                  # a comment\n\
                  #SBATCH -p a100\n\
                  #SBATCH --gres=gpu:a100:2 # two GPUs\n\
                  #SBATCH --job-name=fromscript\n\
                  \n\
                  echo hi\n\
                  #SBATCH -p cpu\n";
    let id = s
        .submit(&SubmitRequest {
            script: ScriptSource::Text(script.into()),
            args: [
                "--output=/tmp/x",
                "--signal",
                "B:USR1@120",
                "--mystery-flag",
                "-J",
                "cli",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            env: Some(vec![("HOME".into(), "/home/u".into())]),
        })
        .unwrap();
    s.step();
    let j = s.job(id).unwrap();
    assert_eq!(j.info.name, "cli", "the command line wins");
    assert_eq!(
        j.info.partition, "a100",
        "directives after a command are not read"
    );
    assert_eq!(node(&s, "a100-1").gpus_used, 2);
    assert_eq!(
        j.ignored_args,
        [
            "--output=/tmp/x",
            "--signal",
            "B:USR1@120",
            "--mystery-flag"
        ]
    );
    assert_eq!(j.args[0], "-p");
    assert_eq!(j.env.unwrap()[0].1, "/home/u");

    let stdin = submit(&s, &["-p", "cpu"]);
    assert_eq!(s.job(stdin).unwrap().info.name, "sbatch");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.sh");
    std::fs::write(
        &path,
        "#!/bin/bash\n#SBATCH --partition=rtx4090\n#SBATCH --no-requeue\nexec true\n",
    )
    .unwrap();
    let file = s
        .submit(&SubmitRequest {
            script: ScriptSource::File(path.clone()),
            args: vec![],
            env: None,
        })
        .unwrap();
    let j = s.job(file).unwrap();
    assert_eq!(
        (j.info.name.as_str(), j.info.partition.as_str()),
        ("train.sh", "rtx4090")
    );
    assert!(!j.requeueable);

    let err = s
        .submit(&SubmitRequest {
            script: ScriptSource::File(dir.path().join("missing.sh")),
            args: vec![],
            env: None,
        })
        .unwrap_err();
    assert!(matches!(err, SlurmError::Failed { .. }), "{err}");
}

#[test]
fn workload_rules_node_before_name_before_closure() {
    let s = sim();
    s.on_start(|job| Behaviour::Exit {
        after: secs(10),
        code: if job.restarts == 0 { 7 } else { 0 },
    });
    s.behave_named("named", exits(5));
    s.behave_on_node("cpu-2", exits(9));
    let by_closure = submit(&s, &["-p", "cpu", "-w", "cpu-1"]);
    let by_name = submit(&s, &["-p", "cpu", "-w", "cpu-1", "-J", "named"]);
    let by_node = submit(&s, &["-p", "cpu", "-w", "cpu-2", "-J", "named"]);
    s.advance(secs(60));
    assert_eq!(exit(&get(&s, by_closure)), Some((7, 0)));
    assert_eq!(exit(&get(&s, by_name)), Some((5, 0)));
    assert_eq!(exit(&get(&s, by_node)), Some((9, 0)));
    s.clear_node_behaviour("cpu-2");
    let now_fine = submit(&s, &["-p", "cpu", "-w", "cpu-2"]);
    s.advance(secs(10));
    assert_eq!(exit(&get(&s, now_fine)), Some((7, 0)));
}

#[test]
fn multi_node_jobs_hold_and_free_every_node() {
    let s = sim();
    let id = submit(&s, &["-p", "a100", "-N", "2", "--gres=gpu:a100:2"]);
    s.step();
    assert_eq!(get(&s, id).nodes, ["a100-1", "a100-2"]);
    assert_eq!(node(&s, "a100-2").gpus_used, 2);
    s.fail_node("a100-2", "gone");
    assert_eq!(node(&s, "a100-1").gpus_used, 0);
    s.advance(secs(60));
    let j = get(&s, id);
    assert_eq!(
        (j.state.clone(), j.reason.as_str()),
        (JobState::Pending, ALL_NODES_DOWN)
    );
}

#[test]
fn live_jobs_by_name() {
    let s = sim();
    let a = submit(&s, &["-p", "cpu", "-J", "run-a"]);
    submit(&s, &["-p", "cpu", "-J", "run-a"]);
    submit(&s, &["-p", "cpu", "-J", "run-b"]);
    s.step();
    assert_eq!(s.live_jobs_named("run-a").len(), 2);
    s.cancel(&[a]).unwrap();
    let live = s.live_jobs_named("run-a");
    assert_eq!(live.len(), 1);
    assert!(live[0].is_live() && live[0].info.id != a);
    assert_eq!(s.all_jobs().len(), 3);
}

/// Invariants that must hold at any time.
fn check_invariants(s: &SimSlurm) {
    let nodes = s.nodes().unwrap();
    let jobs = s.all_jobs();
    for n in &nodes {
        assert!(n.gpus_used <= n.gpus_total(), "{n:?}");
        assert!(n.cpus_alloc <= n.cpus, "{n:?}");
        let running: u32 = jobs
            .iter()
            .filter(|j| j.info.state == JobState::Running && j.info.nodes.contains(&n.name))
            .count() as u32;
        assert_eq!(running == 0, n.cpus_alloc == 0, "{n:?}");
    }
}

#[test]
fn a_thousand_jobs_run_to_completion_with_their_records() {
    let started = Instant::now();
    let s = sim();
    s.on_start(|job| Behaviour::Exit {
        after: secs(10 * (job.id.0 % 17 + 1)),
        code: i32::from(job.id.0 % 10 == 0),
    });
    let shapes: [&[&str]; 5] = [
        &["-p", "a100", "--gres=gpu:a100:1"],
        &["-p", "a6000", "--gres=gpu:a6000:3"],
        &["-p", "rtx4090,a100", "--gres=gpu:2"],
        &["-p", "cpu", "-c", "2"],
        &["-p", "urgent", "--gres=gpu:4"],
    ];
    let ids: Vec<JobId> = (0..1000)
        .map(|i| submit(&s, shapes[i % shapes.len()]))
        .collect();
    let mut ticks = 0;
    while s.live_job_count() > 0 {
        s.advance(secs(60));
        ticks += 1;
        if ticks % 10 == 0 {
            check_invariants(&s);
        }
        assert!(ticks < 10_000, "the queue never drains");
    }
    let jobs = s.all_jobs();
    assert_eq!(jobs.len(), 1000);
    let completed = jobs
        .iter()
        .filter(|j| j.info.state == JobState::Completed)
        .count();
    let failed = jobs
        .iter()
        .filter(|j| j.info.state == JobState::Failed)
        .count();
    assert_eq!((completed, failed), (900, 100));
    let records = s.accounting(&ids).unwrap();
    assert_eq!(records.len(), 1000);
    // Speed is the recovery_loop benchmark's to measure (a timed assertion
    // fails on a loaded machine); this prints the figure only.
    let elapsed = started.elapsed();
    eprintln!("1000 jobs over {ticks} virtual minutes in {elapsed:?}");
}

#[test]
fn a_thousand_runs_on_a_big_cluster() {
    let started = Instant::now();
    let s = SimSlurm::new(SimCluster::uniform(128, 8));
    assert_eq!(s.nodes().unwrap().len(), 128);
    assert_eq!(s.topology().unwrap().len(), 5);
    let ids: Vec<JobId> = (0..1000)
        .map(|i| submit(&s, &["--gres=gpu:1", "-J", &format!("run-{i}")]))
        .collect();
    s.step();
    s.reset_calls();
    let jobs = s.jobs(&ids).unwrap();
    assert_eq!(jobs.len(), 1000);
    assert!(jobs.iter().all(|j| j.state == JobState::Running));
    let used: u32 = s.nodes().unwrap().iter().map(|n| n.gpus_used).sum();
    assert_eq!(used, 1000);
    assert_eq!(s.calls().commands, 2);
    let elapsed = started.elapsed();
    eprintln!("1000 runs on 128 nodes in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[test]
fn parses_slurm_values() {
    assert_eq!(parse_time("10"), Some(TimeReq::Minutes(10)));
    assert_eq!(parse_time("0:30"), Some(TimeReq::Minutes(1)));
    assert_eq!(parse_time("1:00:00"), Some(TimeReq::Minutes(60)));
    assert_eq!(parse_time("2-0"), Some(TimeReq::Minutes(2880)));
    assert_eq!(parse_time("1-2:30"), Some(TimeReq::Minutes(1590)));
    assert_eq!(parse_time("1-00:00:01"), Some(TimeReq::Minutes(1441)));
    assert_eq!(parse_time("UNLIMITED"), Some(TimeReq::Unlimited));
    assert_eq!(parse_time("0"), Some(TimeReq::Unlimited));
    for bad in ["", "bogus", "1:2:3:4", "x-1"] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    assert_eq!(parse_gres("gpu"), Some((None, 1)));
    assert_eq!(parse_gres("gpu:2"), Some((None, 2)));
    assert_eq!(parse_gres("gpu:a100"), Some((Some("a100".into()), 1)));
    assert_eq!(parse_gres("gpu:a100:3"), Some((Some("a100".into()), 3)));
    assert_eq!(parse_gres("shard:1"), None);
    assert_eq!(parse_gpu_count("a6000:2"), Some((Some("a6000".into()), 2)));
    assert_eq!(parse_gpu_count("4"), Some((None, 4)));
    assert_eq!(parse_mem("4G"), Some(4096));
    assert_eq!(parse_mem("16000"), Some(16_000));
    assert_eq!(parse_mem("2048K"), Some(2));
    assert_eq!(parse_mem("lots"), None);
    assert_eq!(split_top_level("a100-[1-2],cpu-1"), ["a100-[1-2]", "cpu-1"]);
    assert_eq!(
        parse_constraint("a100&a100_80gb|a6000"),
        Some(vec![
            vec!["a100".to_string(), "a100_80gb".to_string()],
            vec!["a6000".to_string()]
        ])
    );
    assert_eq!(
        script_directives("#!/bin/sh\n#SBATCH -p a100 --time=5\n#SBATCHx\ntrue\n#SBATCH -J late\n"),
        ["-p", "a100", "--time=5"]
    );
}

#[test]
fn constraints_pick_nodes_by_feature() {
    let s = sim();
    let id = submit(
        &s,
        &["-p", "urgent", "--constraint=a100_80gb", "--gres=gpu:1"],
    );
    let other = submit(&s, &["-p", "urgent", "-C", "a6000", "--gres=gpu:1"]);
    s.step();
    assert_eq!(get(&s, id).nodes, ["a100-1"]);
    assert_eq!(get(&s, other).nodes, ["a6000-1"]);
}
