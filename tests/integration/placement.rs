//! Placement end to end: partitions chosen by GPU memory and availability,
//! `shepherd gpus`, and pinned partitions checked at submit time.

use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::Shepherd;
use crate::support::{Mode, TestCluster};

const LONG: Duration = Duration::from_secs(120);
const FAST: &str = "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s\n";

fn hold(cluster: &TestCluster, node: &str, gres: &str) {
    let partition = node.split('-').next().unwrap();
    cluster.sbatch(
        &["-p", partition, "-w", node, &format!("--gres={gres}")],
        "sleep 600",
    );
}

fn placement_event(shep: &Shepherd, run: &str) -> String {
    shep.ok(&["events", run])
        .lines()
        .find(|l| l.contains("placement"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn memory_decides_the_partitions_and_free_gpus_the_order() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // >= 40 GB: a6000 (48 GB) and a100 (80 GB), never rtx4090 (24 GB), never
    // the preempting high-priority partition; the smallest sufficient first.
    let big = shep.submit(
        "big.sh",
        &format!("#!/bin/bash\n{FAST}echo \"$SLURM_JOB_PARTITION\"\n"),
        &["--gpus", "1", "--min-vram", "40"],
    );
    let s = shep.wait_status(&big, &["completed"], LONG);
    assert_eq!(s["attempts"][0]["partition"], "a6000");
    let event = placement_event(&shep, &big);
    assert!(event.contains("a6000, a100"), "{event}");
    assert!(
        !event.contains("rtx4090") && !event.contains("urgent"),
        "{event}"
    );

    // With the preferred partition full and the next one idle, the job starts
    // in the idle one at once (one submission naming both; Slurm picks).
    hold(&cluster, "a6000-1", "gpu:a6000:8");
    hold(&cluster, "a6000-2", "gpu:a6000:8");
    let started = std::time::Instant::now();
    let moved = shep.submit(
        "moved.sh",
        &format!("#!/bin/bash\n{FAST}sleep 1\n"),
        &["--gpus", "2", "--min-vram", "40"],
    );
    let s = shep.wait_status(&moved, &["running", "completed"], LONG);
    assert_eq!(s["attempts"][0]["partition"], "a100", "{s}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let event = placement_event(&shep, &moved);
    assert!(event.contains("a100, a6000"), "availability first: {event}");

    // A DOWN partition is never chosen; a request no partition can hold fails
    // the run with the reasons.
    let small = shep.submit(
        "small.sh",
        &format!("#!/bin/bash\n{FAST}true\n"),
        &["--gpus", "1", "--max-vram", "24"],
    );
    let s = shep.wait_status(&small, &["completed"], LONG);
    assert_eq!(s["attempts"][0]["partition"], "rtx4090");
    assert!(!placement_event(&shep, &small).contains("offline"));
    let huge = shep.submit(
        "huge.sh",
        &format!("#!/bin/bash\n{FAST}true\n"),
        &["--gpus", "2", "--min-vram", "100"],
    );
    let s = shep.wait_status(&huge, &["failed"], LONG);
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("no partition can hold this job"),
        "{reason}"
    );
    assert!(reason.contains("less than --min-vram 100"), "{reason}");
    shep.assert_no_duplicates();
}

#[test]
fn gpus_table_matches_slurm_and_pinned_partitions_are_checked() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let shep = Shepherd::new(&cluster);
    hold(&cluster, "a100-1", "gpu:a100:3");
    crate::support::poll(LONG, "the holder to run", || {
        let v: Value = serde_json::from_str(&shep.ok(&["gpus", "--json"])).unwrap();
        let a100 = v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partition"] == "a100")
            .unwrap()
            .clone();
        if a100["gpus_free"] == 5 {
            Ok(a100)
        } else {
            Err(a100.to_string())
        }
    });
    let v: Value = serde_json::from_str(&shep.ok(&["gpus", "--json"])).unwrap();
    let p = |name: &str| {
        v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partition"] == name)
            .unwrap()
            .clone()
    };
    let a100 = p("a100");
    assert_eq!(
        (
            &a100["gpu_type"],
            &a100["vram_gb_min"],
            &a100["gpus_per_node"],
            &a100["largest_now"],
            &a100["nodes_free"],
            &a100["gpus_total"]
        ),
        (
            &Value::from("a100"),
            &Value::from(80),
            &Value::from(4),
            &Value::from(4),
            &Value::from(2),
            &Value::from(8)
        )
    );
    assert_eq!(p("a6000")["gpus_free"], 16);
    assert_eq!(p("offline")["up"], false);
    assert!(
        v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["partition"] != "cpu")
    );
    let text = shep.ok(&["gpus"]);
    assert!(
        text.contains("PARTITION") && text.contains("80 GB") && text.contains("5/8"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when piped");

    std::fs::write(shep.work.join("pin.sh"), "#!/bin/bash\ntrue\n").unwrap();
    let out = shep.run(&["pin.sh", "--partitions", "a100,nosuch"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown partition \"nosuch\"") && err.contains("a6000"),
        "{err}"
    );
}

#[test]
fn a_job_pending_too_long_moves_in_place_to_a_partition_that_can_start_it() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // At submission a100 is drained, so only a6000 qualifies, and it is full.
    cluster.inject(&["drain", "a100-1", "maintenance"]);
    cluster.inject(&["drain", "a100-2", "maintenance"]);
    hold(&cluster, "a6000-1", "gpu:a6000:8");
    hold(&cluster, "a6000-2", "gpu:a6000:8");
    let run = shep.submit(
        "patient.sh",
        &format!("#!/bin/bash\n{FAST}true\n"),
        &["--gpus", "4", "--min-vram", "40", "--pending-timeout", "5s"],
    );
    let s = crate::support::poll(LONG, "the job pending in a6000", || {
        let s = shep.status(&run);
        if s["status"] == "pending" && s["attempts"][0]["partition"] == "a6000" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    let job = s["slurm_job_id"].clone();
    // a100 comes back: after --pending-timeout the job moves there.
    cluster.inject(&["resume", "a100-1"]);
    cluster.inject(&["resume", "a100-2"]);
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["slurm_job_id"], job, "moved in place, not resubmitted");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(s["attempts"][0]["partition"], "a100");
    let events = shep.ok(&["events", &run]);
    assert!(
        events.contains("failover") && events.contains("a100 can start it now"),
        "{events}"
    );
    shep.assert_no_duplicates();
}

#[test]
fn when_nothing_is_free_slurms_start_estimates_decide_the_order() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // Everything is full; the a100 jobs end within minutes, the a6000 ones
    // have no time limit.
    for node in ["a100-1", "a100-2"] {
        cluster.sbatch(
            &["-p", "a100", "-w", node, "--gres=gpu:a100:4", "--time=3"],
            "sleep 600",
        );
    }
    hold(&cluster, "a6000-1", "gpu:a6000:8");
    hold(&cluster, "a6000-2", "gpu:a6000:8");
    crate::support::poll(LONG, "every GPU busy", || {
        let v: Value = serde_json::from_str(&shep.ok(&["gpus", "--json"])).unwrap();
        let busy = v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["partition"] == "a100" || p["partition"] == "a6000")
            .all(|p| p["gpus_free"] == 0);
        if busy { Ok(()) } else { Err(v.to_string()) }
    });
    let run = shep.submit(
        "later.sh",
        &format!("#!/bin/bash\n{FAST}true\n"),
        &["--gpus", "4", "--min-vram", "40"],
    );
    let event = crate::support::poll(LONG, "the placement event", || {
        let e = placement_event(&shep, &run);
        if e.is_empty() {
            Err("none yet".into())
        } else {
            Ok(e)
        }
    });
    // --prefer min alone would put a6000 (48 GB) first.
    assert!(event.contains("a100, a6000"), "{event}");
    shep.ok(&["stop", &run]);
    shep.wait_status(&run, &["stopped"], LONG);
    shep.assert_no_duplicates();
}

#[test]
fn after_a_failover_the_next_attempt_goes_back_to_the_preferred_partition() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // a6000 (48 GB) is preferred for >= 40 GB, but full: attempt 1 goes to
    // a100. It fails; by then a6000 is free again, and attempt 2 goes there.
    let holders: Vec<String> = ["a6000-1", "a6000-2"]
        .iter()
        .map(|node| {
            cluster.sbatch(
                &["-p", "a6000", "-w", node, "--gres=gpu:a6000:8"],
                "sleep 600",
            )
        })
        .collect();
    let run = shep.submit(
        "comeback.sh",
        &format!(
            "#!/bin/bash\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then sleep 3; exit 1; fi\necho fine\n"
        ),
        &["--gpus", "2", "--min-vram", "40", "--max-retries", "3"],
    );
    let s = shep.wait_status(&run, &["running"], LONG);
    assert_eq!(s["attempts"][0]["partition"], "a100", "{s}");
    let holders: Vec<&str> = holders.iter().map(String::as_str).collect();
    cluster.slurm_ok("scancel", &holders);
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["attempts"][1]["partition"], "a6000", "{s}");
    shep.assert_no_duplicates();
}

#[test]
fn a_partition_whose_max_time_is_too_short_is_skipped() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // a6000 (48 GB, the smallest sufficient GPU, so preferred) now takes
    // jobs of at most 5 minutes; this one asks for two hours.
    cluster.slurm_ok("scontrol", &["update", "partitionname=a6000", "maxtime=5"]);
    let run = shep.submit(
        "long.sh",
        &format!("#!/bin/bash\n#SBATCH --time=2:00:00\n{FAST}echo done\n"),
        &["--gpus", "1", "--min-vram", "40"],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["attempts"][0]["partition"], "a100", "{s}");
    let placement = placement_event(&shep, &run);
    assert!(
        placement.contains("a100") && !placement.contains("a6000"),
        "{placement}"
    );
    shep.assert_no_duplicates();
}

#[test]
fn a_partition_sbatch_refuses_is_failed_over_from_and_a_drained_one_is_waited_for() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // `doomed` exists but is drained: Slurm takes `-p doomed,a100` and runs
    // it in a100, but refuses `-p doomed` alone.
    cluster.slurm_ok(
        "scontrol",
        &[
            "create",
            "partitionname=doomed",
            "nodes=rtx4090-[1-2]",
            "state=drain",
        ],
    );
    let only = shep.submit(
        "only.sh",
        &format!("#!/bin/bash\n{FAST}echo never\n"),
        &["--gpus", "1", "--partitions", "doomed"],
    );
    let s = shep.wait_until(&only, "waiting", LONG, |s| {
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("waiting:")
    });
    assert_eq!(s["status"], "queued", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not available"),
        "{s}"
    );
    // Attempt 1 fails, and while the run waits out its backoff the admins
    // delete `doomed`: sbatch now refuses the whole `-p doomed,a100`.
    let run = shep.submit(
        "moved.sh",
        &format!(
            "#!/bin/bash\n{FAST}#SHEPHERD --backoff-base 15s\n\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then exit 1; fi\necho fine\n"
        ),
        &["--gpus", "1", "--partitions", "doomed,a100"],
    );
    let s = shep.wait_until(&run, "waiting to retry", LONG, |s| {
        s["reason"].as_str().unwrap_or_default().contains("retry 1")
    });
    assert_eq!(s["attempts"][0]["partition"], "a100", "{s}");
    cluster.slurm_ok("scontrol", &["delete", "partitionname=doomed"]);
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(s["attempts"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(s["attempts"][1]["partition"], "a100", "{s}");
    let events = shep.ok(&["events", &run]);
    assert!(
        events.lines().any(|l| l.contains("failover")
            && l.contains("doomed")
            && l.contains("submitted to a100")),
        "{events}"
    );
    // The run pinned to the deleted partition now fails with Slurm's reason.
    let s = shep.wait_status(&only, &["failed"], LONG);
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid partition"),
        "{s}"
    );
    shep.assert_no_duplicates();
}
