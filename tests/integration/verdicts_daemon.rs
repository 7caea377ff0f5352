//! Verdicts the daemon must earn (issue 11): a run with nowhere to run waits
//! without phantom attempts or charges; a workload that fails the same way
//! on several nodes ends early; one that fails twice and then succeeds
//! completes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster};

const LONG: Duration = Duration::from_secs(150);
const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s --backoff-max 2s\n";

/// Slurm's jobs (ids) carrying one of the run's job names, finished ones
/// included (`MinJobAge` is 5 minutes on the test cluster).
fn slurm_jobs_of(cluster: &TestCluster, run: &str) -> BTreeSet<String> {
    let prefix = format!("shepherd.{run}.");
    cluster
        .slurm_ok("squeue", &["-h", "-t", "all", "-o", "%i %j"])
        .lines()
        .filter_map(|l| {
            let (id, name) = l.trim().split_once(' ')?;
            name.starts_with(&prefix).then(|| id.to_string())
        })
        .collect()
}

fn attempts(s: &Value) -> &Vec<Value> {
    s["attempts"].as_array().unwrap()
}

fn nodes_of(s: &Value) -> BTreeSet<String> {
    attempts(s)
        .iter()
        .filter_map(|a| a["node"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_node_of_a_pinned_partition_faulty_waits_with_the_bans_named() {
    // With accounting: Slurm 22.05 then keeps a FAILED/BadConstraints record
    // of each refused submission under the job's name.
    let cluster = TestCluster::start(Mode::Accounting);
    let mut shep = Shepherd::new(&cluster);
    for node in ["rtx4090-1", "rtx4090-2"] {
        cluster.inject(&["gpu-fault", node, "lost"]);
    }
    let run = shep.submit(
        "pinned.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=rtx4090\n{FAST}echo \"trained on $(hostname)\"\n"
        ),
        &["--gpus", "1"],
    );
    let s = shep.wait_until(&run, "waiting with nowhere to run", LONG, |s| {
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("nowhere to run"))
    });
    let reason = s["reason"].as_str().unwrap();
    for needle in [
        "rtx4090-1 (banned until",
        "rtx4090-2 (banned until",
        "the first ban expires at",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    assert_eq!(s["workload_failures"], 0, "{s}");
    // At most one job per node; the refused submission is no attempt.
    let ended: Vec<&Value> = attempts(&s)
        .iter()
        .filter(|a| !a["outcome"].is_null())
        .collect();
    assert!(ended.len() <= 2, "{s}");
    assert!(
        ended.iter().all(|a| a["outcome"] == "node_fault"),
        "{:?}",
        outcomes(&s)
    );
    assert_eq!(nodes_of(&s).len(), ended.len(), "one job per node: {s}");

    // A window of 70 s (two of the old 30 s loops and more): no new sbatch,
    // no new attempt, nothing charged. Polled, failing at the first change.
    let jobs = slurm_jobs_of(&cluster, &run);
    let n_attempts = attempts(&s).len();
    assert!(
        jobs.len() <= ended.len() + 1,
        "the nodes' jobs and one refused record: {jobs:?}"
    );
    let until = Instant::now() + Duration::from_secs(70);
    while Instant::now() < until {
        let now = slurm_jobs_of(&cluster, &run);
        assert_eq!(now, jobs, "a new sbatch while nothing changed");
        let s = shep.status(&run);
        assert_eq!(attempts(&s).len(), n_attempts, "{s}");
        assert_eq!(s["workload_failures"], 0, "{s}");
        assert_eq!(s["status"], "queued", "{s}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let events = shep.ok(&["events", &run]);
    assert!(!events.contains("reconciled"), "{events}");
    assert_eq!(events.matches("nowhere_to_run").count(), 1, "{events}");

    // A node repaired and its ban lifted: the run goes there and completes.
    cluster.inject(&["gpu-ok", "rtx4090-2"]);
    shep.ok(&["nodes", "unban", "rtx4090-2"]);
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["workload_failures"], 0, "{s}");
    assert_eq!(attempts(&s).last().unwrap()["node"], "rtx4090-2", "{s}");
    assert_eq!(attempts(&s).len(), n_attempts, "the waiting attempt ran");
    shep.assert_no_duplicates();
}

const POISON: &str = "echo \"loading config on $(hostname), pid $$, at $(date +%T.%N)\" >&2\n\
     sleep 1\n\
     echo 'Traceback (most recent call last):' >&2\n\
     echo '  File \"train.py\", line 3, in <module>' >&2\n\
     echo 'ValueError: bad config' >&2\n\
     exit 1\n";

#[test]
fn a_poison_workload_ends_after_three_attempts_on_two_nodes() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "poison.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}{POISON}"),
        &["--max-retries", "10"],
    );
    let s = shep.wait_status(&run, &["failed"], LONG);
    assert_eq!(
        outcomes(&s),
        ["workload_failure", "workload_failure", "workload_failure"],
        "{s}"
    );
    assert!(nodes_of(&s).len() >= 2, "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the workload fails the same way everywhere"),
        "{reason}"
    );
    assert!(
        reason.contains("exit 1") && reason.contains("ValueError: bad config"),
        "{reason}"
    );
    assert!(shep.ok(&["events", &run]).contains("code_fault"));
    // The evidence: one fingerprint, the host name, PID and time taken out.
    let fp = &attempts(&s)[0]["fingerprint"];
    assert!(attempts(&s).iter().all(|a| a["fingerprint"] == *fp), "{s}");
    assert_eq!(fp["exit"], "exit 1", "{fp}");
    assert_eq!(fp["after"], "<10s", "{fp}");
    assert_eq!(
        fp["lines"][0], "loading config on <node>, pid <n>, at <n>",
        "{fp}"
    );
    // Nothing about it blamed a node.
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    let banned: Vec<&Value> = nodes["nodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !n["banned"].is_null())
        .collect();
    assert!(banned.is_empty(), "{banned:?}");
    shep.assert_no_duplicates();
}

#[test]
fn a_workload_that_fails_twice_the_same_way_then_succeeds_completes() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let body = "f=\"$PWD/flaky.count\"\n\
         n=$(( $(cat \"$f\" 2>/dev/null || echo 0) + 1 ))\n\
         echo \"$n\" > \"$f\"\n\
         if [ \"$n\" -lt 3 ]; then echo 'ValueError: bad config' >&2; exit 1; fi\n\
         echo done\n";
    let run = shep.submit(
        "flaky.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}{body}"),
        &["--max-retries", "10"],
    );
    let s = shep.wait_status(&run, &["completed", "failed"], LONG);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(
        outcomes(&s),
        ["workload_failure", "workload_failure", "success"],
        "{s}"
    );
    assert_eq!(s["workload_failures"], 2);
    shep.assert_no_duplicates();
}
