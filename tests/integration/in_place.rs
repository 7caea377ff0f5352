//! Restart in place (`--restart-in-place`) end to end: the wrapper runs a
//! crashed workload again inside the same allocation (no new job, no queue
//! wait), the daemon journals each run as an attempt of that one job, and a
//! node that fails its probes after the crash is left.

use std::time::Duration;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);

const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s --backoff-max 2s\n";

#[test]
fn a_crash_is_run_again_in_the_same_allocation() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "inplace.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}#SHEPHERD --restart-in-place 2\n\
             echo \"attempt=$SHEPHERD_ATTEMPT in_place=$SHEPHERD_IN_PLACE job=$SLURM_JOB_ID on $(hostname)\"\n\
             if [ \"$SHEPHERD_IN_PLACE\" = 0 ]; then echo 'ValueError: boom' >&2; exit 3; fi\n\
             echo fine\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["workload_failure", "success"]);
    let (a, b) = (&s["attempts"][0], &s["attempts"][1]);
    assert_eq!(a["job_id"], b["job_id"], "one job: nothing resubmitted");
    assert_eq!(a["node"], b["node"]);
    assert_eq!(a["blame"], "workload");
    assert_eq!(a["exit_code"], 3);
    assert_eq!(
        (b["in_place"].as_u64(), b["in_job_of"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s["workload_failures"], 1, "the crash is charged");
    let events = shep.ok(&["events", &run]);
    assert!(events.contains("restarted_in_place"), "{events}");
    // Both runs wrote to the job's one output file, which `logs` finds for
    // either attempt.
    let job = a["job_id"].as_u64().unwrap();
    for attempt in ["1", "2"] {
        let out = shep.ok(&["logs", &run, "--attempt", attempt]);
        assert!(
            out.contains(&format!("attempt=1 in_place=0 job={job}"))
                && out.contains(&format!("attempt=2 in_place=1 job={job}"))
                && out.contains("fine"),
            "attempt {attempt}: {out}"
        );
    }
    shep.assert_no_duplicates();
}

#[test]
fn a_node_failing_its_probes_after_the_crash_is_left_and_banned() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let flag = shep.work.join("crash-now");
    // The first attempt waits for the test to break its node's GPU, then
    // crashes; the wrapper probes again before a restart and finds it.
    let run = shep.submit(
        "gpu-inplace.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=a100\n{FAST}#SHEPHERD --restart-in-place 2\n\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then\n\
               hostname > {ready}\n\
               while [ ! -e {flag} ]; do sleep 0.2; done\n\
               echo 'ValueError: boom' >&2; exit 3\n\
             fi\n\
             echo \"trained on $(hostname)\"\n",
            ready = shep.work.join("ready").display(),
            flag = flag.display(),
        ),
        &["--gpus", "1"],
    );
    let node = poll(LONG, "the first attempt to start", || {
        std::fs::read_to_string(shep.work.join("ready"))
            .map(|n| n.trim().to_string())
            .map_err(|e| e.to_string())
    });
    cluster.inject(&["gpu-fault", &node, "lost"]);
    std::fs::write(&flag, "").unwrap();
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(
        outcomes(&s),
        ["workload_failure", "node_fault", "success"],
        "{:#}",
        s["attempts"]
    );
    let at = |i: usize| &s["attempts"][i];
    assert_eq!(
        at(0)["job_id"],
        at(1)["job_id"],
        "the probe ran in the same job"
    );
    assert_eq!(at(1)["node"], node.as_str());
    assert_eq!(at(1)["blame"], "node");
    assert!(
        at(1)["detail"].as_str().unwrap().contains("probe"),
        "{}",
        at(1)
    );
    assert_ne!(at(2)["job_id"], at(1)["job_id"], "a new job elsewhere");
    assert_ne!(at(2)["node"], node.as_str());
    assert_eq!(s["workload_failures"], 1, "only the crash is charged");
    let nodes: serde_json::Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    let banned = nodes["nodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str())
        .map(|n| n["banned"].clone());
    assert!(
        banned.as_ref().is_some_and(|b| b["strikes"] == 1),
        "{node} banned: {banned:?}"
    );
    cluster.inject(&["gpu-ok", &node]);
    shep.assert_no_duplicates();
}
