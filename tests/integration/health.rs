//! Node health end to end: a failed GPU probe bans the node and the run moves
//! on; bans by hand, their expiry, stale names, and pending jobs updated in
//! place.

use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);
const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s --backoff-max 2s\n";

/// A plain Slurm job (not a run) that holds GPUs for a while.
fn blocker(cluster: &TestCluster, args: &[&str], secs: u32) -> String {
    cluster.sbatch(args, &format!("sleep {secs}"))
}

fn node<'a>(nodes: &'a Value, name: &str) -> &'a Value {
    nodes["nodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

#[test]
fn failed_gpu_probe_bans_the_node_and_the_run_completes_elsewhere() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    cluster.inject(&["gpu-fault", "a100-1", "lost"]);
    // a100-2's GPUs are busy for a while: the first attempt lands on a100-1.
    blocker(
        &cluster,
        &["-p", "a100", "-w", "a100-2", "--gres=gpu:a100:4"],
        12,
    );
    let run = shep.submit(
        "gpu.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a100\n{FAST}echo \"trained on $(hostname)\"\n"),
        &["--gpus", "1"],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["node_fault", "success"]);
    let first = &s["attempts"][0];
    assert_eq!(
        (first["node"].as_str(), first["blame"].as_str()),
        (Some("a100-1"), Some("node"))
    );
    assert!(
        first["detail"].as_str().unwrap().contains("probe"),
        "{first}"
    );
    assert_eq!(first["exit_code"], 97);
    assert_eq!(s["attempts"][1]["node"], "a100-2");
    assert_eq!(s["workload_failures"], 0);
    // The failed attempt was short: probes, not the workload, ended it.
    let at = |k: &str| {
        first[k]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let took = at("ended_at").duration_since(at("submitted_at"));
    assert!(
        took.as_secs() < 30,
        "the probe failed within seconds: {first}"
    );
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    let banned = &node(&nodes, "a100-1")["banned"];
    assert_eq!(banned["strikes"], 1, "{banned}");
    assert_eq!(banned["manual"], false);
    assert!(banned["until"].is_string());
    assert!(node(&nodes, "a100-2")["banned"].is_null());
    assert!(shep.ok(&["events", &run]).contains("node_banned"));
    shep.assert_no_duplicates();
}

#[test]
fn bans_by_hand_expire_stale_names_are_harmless_and_pending_jobs_learn() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);

    // Unknown nodes cannot be banned by hand...
    let out = shep.run(&["nodes", "ban", "nosuch-9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node"));
    // ...but a stale name that got into the blacklist (a node retired since)
    // must never break a submission.
    let bl_dir = shep.state.join("clusters/shepherd-test");
    std::fs::create_dir_all(&bl_dir).unwrap();
    std::fs::write(
        bl_dir.join("blacklist.json"),
        r#"{"version":1,"cluster":"shepherd-test","nodes":{"retired-9":{"strikes":3,"last_strike_at":null,"ban":{"reason":"old","since":"2026-01-01T00:00:00Z","until":null,"manual":true},"history":[]}}}"#,
    )
    .unwrap();

    // A short ban by hand keeps runs off the node until it expires.
    shep.ok(&[
        "nodes",
        "ban",
        "cpu-1",
        "--ttl",
        "8s",
        "--reason",
        "flaky fan",
    ]);
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    assert_eq!(node(&nodes, "cpu-1")["banned"]["reason"], "flaky fan");
    let run = shep.submit(
        "avoid.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}sleep 2\n"),
        &[],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["attempts"][0]["node"], "cpu-2", "{s}");
    poll(LONG, "the ban to expire", || {
        let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
        if node(&nodes, "cpu-1")["banned"].is_null() {
            Ok(())
        } else {
            Err("still banned".into())
        }
    });
    let pinned = shep.submit(
        "back.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu --nodelist=cpu-1\n{FAST}true\n"),
        &[],
    );
    let s = shep.wait_status(&pinned, &["completed"], LONG);
    assert_eq!(s["attempts"][0]["node"], "cpu-1");

    // A pending job learns a new ban in place: same job, new exclude list.
    blocker(
        &cluster,
        &["-p", "a6000", "-w", "a6000-1", "--gres=gpu:a6000:8"],
        600,
    );
    blocker(
        &cluster,
        &["-p", "a6000", "-w", "a6000-2", "--gres=gpu:a6000:8"],
        600,
    );
    let waiting = shep.submit(
        "waiting.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a6000 --gres=gpu:a6000:1\n{FAST}true\n"),
        &[],
    );
    let s = shep.wait_status(&waiting, &["pending"], LONG);
    let job = s["slurm_job_id"].as_u64().unwrap().to_string();
    shep.ok(&["nodes", "ban", "a6000-1", "--reason", "ECC errors"]);
    let excluded = poll(LONG, "the pending job's exclude list", || {
        let text = cluster.slurm_ok("scontrol", &["show", "job", &job]);
        if text.contains("ExcNodeList=a6000-1") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        !excluded.contains("retired-9"),
        "stale names never reach Slurm"
    );
    let s = shep.status(&waiting);
    assert_eq!(
        s["attempts"].as_array().unwrap().len(),
        1,
        "not resubmitted"
    );
    assert!(shep.ok(&["events", &waiting]).contains("exclude_updated"));
    shep.ok(&["nodes", "unban", "a6000-1"]);
    shep.ok(&["stop", &waiting]);
    shep.wait_status(&waiting, &["stopped"], LONG);
    shep.assert_no_duplicates();
}

const ILLEGAL: &str =
    "echo 'RuntimeError: CUDA error: an illegal memory access was encountered' >&2; exit 1";

#[test]
fn a_bug_on_every_node_stops_the_run_and_bans_nothing() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "buggy.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}{ILLEGAL}\n"),
        &["--max-retries", "10"],
    );
    let s = shep.wait_status(&run, &["failed"], LONG);
    assert_eq!(outcomes(&s), ["workload_failure", "workload_failure"]);
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("workload fails on every node"),
        "{reason}"
    );
    assert!(
        reason.contains("cpu-1") && reason.contains("cpu-2"),
        "{reason}"
    );
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    for n in nodes["nodes"]["nodes"].as_array().unwrap() {
        assert!(n["banned"].is_null(), "{n}");
    }
    shep.assert_no_duplicates();
}

#[test]
fn a_node_failing_two_different_runs_is_banned() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    for name in ["first.sh", "second.sh"] {
        let run = shep.submit(
            name,
            &format!("#!/bin/bash\n#SBATCH --partition=cpu --nodelist=cpu-2\n{FAST}{ILLEGAL}\n"),
            &["--max-retries", "0"],
        );
        shep.wait_status(&run, &["failed"], LONG);
    }
    let banned = poll(LONG, "cpu-2 banned", || {
        let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
        let b = node(&nodes, "cpu-2")["banned"].clone();
        if b.is_null() {
            Err(nodes.to_string())
        } else {
            Ok(b)
        }
    });
    let reason = banned["reason"].as_str().unwrap();
    assert!(
        reason.contains("first") && reason.contains("second"),
        "{reason}"
    );
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    assert!(node(&nodes, "cpu-1")["banned"].is_null());
    shep.assert_no_duplicates();
}

#[test]
fn two_nodes_failing_under_one_switch_ban_the_switch() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // leaf1 holds a100-1, a100-2 and rtx4090-1. Both a100 nodes lose a GPU.
    cluster.inject(&["gpu-fault", "a100-1", "lost"]);
    cluster.inject(&["gpu-fault", "a100-2", "lost"]);
    let run = shep.submit(
        "rack.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a100\n{FAST}true\n"),
        &["--gpus", "1"],
    );
    let nodes = poll(LONG, "the incident", || {
        let v: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
        if v["nodes"]["incidents"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
        {
            Ok(v)
        } else {
            Err(v["nodes"]["incidents"].to_string())
        }
    });
    let incident = &nodes["nodes"]["incidents"][0];
    assert_eq!(incident["switch"], "leaf1");
    // The third node under the switch never failed, but is banned with it.
    let rtx = &node(&nodes, "rtx4090-1")["banned"];
    assert!(
        rtx["reason"].as_str().unwrap().contains("switch leaf1"),
        "{rtx}"
    );
    assert!(
        node(&nodes, "rtx4090-2")["banned"].is_null(),
        "another switch"
    );
    let events = shep.ok(&["events", &run]);
    assert!(events.contains("switch_banned"), "{events}");
    let s = shep.status(&run);
    assert_eq!(outcomes(&s)[..2], ["node_fault", "node_fault"]);
    // Every a100 node is banned: the run waits rather than fails.
    assert!(!matches!(s["status"].as_str(), Some("failed")), "{s}");
    shep.ok(&["stop", &run]);
    shep.wait_status(&run, &["stopped"], LONG);
    shep.assert_no_duplicates();
}

#[test]
fn the_config_files_defaults_and_signatures_apply() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    std::fs::create_dir_all(&shep.state).unwrap();
    let config = shep.state.join("config.toml");
    std::fs::write(&config, "[defaults]\nmax_retrys = 0\n").unwrap();
    std::fs::write(shep.work.join("fabric.sh"), "#!/bin/bash\ntrue\n").unwrap();
    let out = shep.run(&["fabric.sh"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("max_retrys"),
        "{err}"
    );

    // No retries allowed by default, but the lab's own signature says the
    // node is at fault: the run moves on instead of failing.
    std::fs::write(
        &config,
        "[defaults]\nmax_retries = 0\n\n[[signature]]\nid = \"lab-fabric\"\npattern = \"FABRIC DOWN\"\nblame = \"node\"\n",
    )
    .unwrap();
    let run = shep.submit(
        "fabric.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then echo 'mlx: FABRIC DOWN on port 1' >&2; exit 1; fi\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["completed", "failed"], LONG);
    assert_eq!(outcomes(&s), ["node_fault", "success"], "{s}");
    assert!(
        s["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("lab-fabric"),
        "{s}"
    );
    assert_eq!(s["max_retries"], 0);
    shep.assert_no_duplicates();
}

#[test]
fn gpu_health_and_foreign_process_probes_blame_the_node() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // a6000-1 has ECC errors on its GPU 0; a6000-2 has a stranger's process
    // on the job's GPU. a100-1 is fine.
    cluster.inject(&["gpu-fault", "a6000-1", "ecc"]);
    cluster.inject(&["gpu-fault", "a6000-2", "busy"]);
    let run = shep.submit(
        "probed.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a6000,a100\n{FAST}echo ok\n"),
        &["--gpus", "1"],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    let attempts = s["attempts"].as_array().unwrap();
    let last = attempts.last().unwrap();
    assert_eq!(last["outcome"], "success");
    assert_eq!(last["node"], "a100-1", "{s}");
    for a in &attempts[..attempts.len() - 1] {
        assert_eq!(
            (a["outcome"].as_str(), a["blame"].as_str()),
            (Some("node_fault"), Some("node")),
            "{a}"
        );
    }
    let details: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a["detail"].as_str())
        .collect();
    assert!(details.iter().any(|d| d.contains("health")), "{details:?}");
    assert!(
        details.iter().any(|d| d.contains("processes")),
        "{details:?}"
    );
    // --probes none: the same faulty node runs the workload.
    let unchecked = shep.submit(
        "unchecked.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a6000 --nodelist=a6000-1\n{FAST}echo ok\n"),
        &["--gpus", "1", "--probes", "none", "--no-blacklist"],
    );
    let s = shep.wait_status(&unchecked, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["success"]);
    shep.assert_no_duplicates();
}

#[test]
fn the_setup_snippet_and_sbatch_args_of_the_config_reach_the_job() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    std::fs::create_dir_all(&shep.state).unwrap();
    std::fs::write(
        shep.state.join("config.toml"),
        "[defaults]\nsetup = \"\"\"\nexport LAB_ENV=ready\ncd /tmp\n\"\"\"\n\
         sbatch_args = [\"--comment=from config\", \"--time=30\"]\n",
    )
    .unwrap();
    // The script's own --time wins over the configuration's.
    let run = shep.submit(
        "envcheck.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n#SBATCH --time=20\n{FAST}echo \"env=$LAB_ENV\"\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["completed", "failed"], LONG);
    assert_eq!(s["status"], "completed", "{s}");
    let log = shep.ok(&["logs", &run]);
    assert!(log.contains("env=ready"), "{log}");
    let job = s["slurm_job_id"].as_u64().unwrap().to_string();
    let shown = cluster.slurm_ok("scontrol", &["show", "job", &job]);
    assert!(shown.contains("Comment=from config"), "{shown}");
    assert!(shown.contains("TimeLimit=00:20:00"), "{shown}");

    // A snippet that fails stops the job before the workload, and says so.
    let broken = shep.submit(
        "broken.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}echo workload-ran\n"),
        &[
            "--setup",
            "conda_activate_missing_env",
            "--max-retries",
            "0",
        ],
    );
    let s = shep.wait_status(&broken, &["completed", "failed"], LONG);
    assert_eq!(s["status"], "failed", "{s}");
    let err = shep.ok(&["logs", &broken, "--stderr"]);
    assert!(err.contains("the setup snippet failed"), "{err}");
    let out = shep.ok(&["logs", &broken]);
    assert!(!out.contains("workload-ran"), "{out}");
    shep.assert_no_duplicates();
}
