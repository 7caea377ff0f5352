//! Every verdict earned: what cannot start is refused at submission, what
//! the kernel refuses in the job is charged to the run (not to the node),
//! and a GPU probe that cannot ask its question bans nobody.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster};

const LONG: Duration = Duration::from_secs(150);
const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s --backoff-max 2s\n";

fn shepherd_in(state: &Path, work: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shepherd"))
        .env("SHEPHERD_STATE_DIR", state)
        // Nothing here may reach a Slurm: a refusal comes before it.
        .env("SLURM_CONF", "/nonexistent/slurm.conf")
        .current_dir(work)
        .args(args)
        .output()
        .expect("run shepherd")
}

fn no_bans(shep: &Shepherd<'_>) {
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    let all = nodes["nodes"]["nodes"].as_array().unwrap();
    assert!(!all.is_empty(), "{nodes}");
    for n in all {
        assert!(n["banned"].is_null(), "{n}");
    }
}

/// A script, its extra arguments, and what the refusal must say.
type Refusal = (
    &'static str,
    &'static [u8],
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn scripts_that_cannot_start_are_refused_at_submit_and_no_run_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let (state, work) = (dir.path().join("state"), dir.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let cases: &[Refusal] = &[
        (
            "crlf.sh",
            b"#!/bin/bash\r\n#SBATCH --partition=cpu\r\necho hi\r\n",
            &[],
            &[
                "crlf.sh has Windows (CRLF) line endings",
                "sed -i 's/\\r$//' crlf.sh",
                "dos2unix",
            ],
        ),
        (
            "typo.sh",
            b"#!/usr/bin/pyhton3\nprint('hi')\n",
            &[],
            &[
                "its interpreter /usr/bin/pyhton3 does not exist on this login node",
                "Compute nodes may differ",
                "--no-script-check",
            ],
        ),
        ("bare.sh", b"#!\necho hi\n", &[], &["names no interpreter"]),
        (
            "setup.sh",
            b"#!/bin/bash\necho hi\n",
            &["--setup", "echo 'unbalanced"],
            &["--setup is not valid shell (bash -n"],
        ),
    ];
    for (name, body, extra, signs) in cases {
        std::fs::write(work.join(name), body).unwrap();
        let mut args = vec!["run", name];
        args.extend_from_slice(extra);
        let out = shepherd_in(&state, &work, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        for sign in *signs {
            assert!(stderr.contains(sign), "{name}: {sign:?} not in {stderr}");
        }
    }
    // No run was created, no daemon started.
    let runs = state.join("runs");
    let created: Vec<_> = std::fs::read_dir(&runs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(created.is_empty(), "{created:?}");
    assert!(!state.join("daemon").exists(), "no daemon was started");
}

/// The kernel refuses the workload in the job: here its interpreter exists
/// on no node, and the login-node check was skipped with
/// `--no-script-check` (as for an interpreter that only the compute nodes
/// have). What is reproduced is the in-job path: a real ENOENT from execve
/// inside a real Slurm job.
#[test]
fn a_workload_the_kernel_refuses_is_charged_to_the_run_and_bans_no_node() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "nodesonly.sh",
        &format!("#!/opt/nodes-only/bin/python3\n#SBATCH --partition=cpu\n{FAST}print('hi')\n"),
        &["--max-retries", "1", "--no-script-check"],
    );
    let s = shep.wait_status(&run, &["failed"], LONG);
    assert_eq!(
        outcomes(&s),
        ["workload_failure", "workload_failure"],
        "{s}"
    );
    assert_eq!(s["workload_failures"], 2, "{s}");
    for a in s["attempts"].as_array().unwrap() {
        assert_eq!(a["blame"], "workload", "{a}");
        assert_eq!(a["exit_code"], 93, "{a}");
        let detail = a["detail"].as_str().unwrap();
        assert!(detail.contains("could not be started on"), "{detail}");
        assert!(
            detail.contains("No such file or directory (os error 2)"),
            "{detail}"
        );
        assert!(
            detail.contains(
                "its interpreter /opt/nodes-only/bin/python3 does not exist on this node"
            ),
            "{detail}"
        );
    }
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("more than --max-retries 1"), "{reason}");
    // Charged (a node fault would not count), and no node struck.
    let events = shep.ok(&["events", &run]);
    assert!(
        events.contains("nodesonly.sh"),
        "the user's script is named: {events}"
    );
    assert!(!events.contains("node_banned"), "{events}");
    no_bans(&shep);
    shep.assert_no_duplicates();
}

/// Every GPU node's nvidia-smi either refuses `-q -d …ROW_REMAPPER` (an old
/// driver) or prints a `-q` layout nobody knows: no node is banned, the runs
/// complete at the first attempt, and `status --json` says what each probe
/// concluded.
#[test]
fn probes_that_cannot_ask_their_question_ban_no_node() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    for node in ["a100-1", "a100-2"] {
        cluster.inject(&["gpu-fault", node, "refuse-q"]);
    }
    for node in ["a6000-1", "a6000-2"] {
        cluster.inject(&["gpu-fault", node, "odd-layout"]);
    }
    let body = |partition: &str| {
        format!(
            "#!/bin/bash\n#SBATCH --partition={partition}\n{FAST}echo \"trained on $(hostname)\"\n"
        )
    };
    let old = shep.submit("olddriver.sh", &body("a100"), &["--gpus", "2"]);
    // This one waits for a word from the test: its probes must show while
    // it runs, from its heartbeat.
    let go = shep.work.join("go");
    let odd = shep.submit(
        "oddlayout.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=a6000\n{FAST}while [ ! -e {} ]; do sleep 0.2; done\n",
            go.display()
        ),
        &["--gpus", "1"],
    );
    let live = shep.wait_until(&odd, "running with its probes shown", LONG, |s| {
        s["attempts"][0]["phase"] == "running"
            && s["attempts"][0]["probes"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["status"] == "inconclusive"))
    });
    assert!(live["attempts"][0]["outcome"].is_null(), "{live}");
    std::fs::write(&go, "").unwrap();
    let health = |s: &Value| -> Value {
        let probes = s["attempts"][0]["probes"].as_array().unwrap().clone();
        let names: Vec<&str> = probes.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["visibility", "health", "processes", "cuda"], "{s}");
        probes.into_iter().find(|p| p["name"] == "health").unwrap()
    };

    let s = shep.wait_status(&old, &["completed", "failed"], LONG);
    assert_eq!(outcomes(&s), ["success"], "{s}");
    let h = health(&s);
    // Asked again with fewer display types: the ECC was still checked.
    assert_eq!(h["status"], "healthy", "{h}");
    assert!(
        h["detail"]
            .as_str()
            .unwrap()
            .contains("this driver refused -d ECC,PAGE_RETIREMENT,ROW_REMAPPER"),
        "{h}"
    );

    let s = shep.wait_status(&odd, &["completed", "failed"], LONG);
    assert_eq!(outcomes(&s), ["success"], "{s}");
    let h = health(&s);
    assert_eq!(h["status"], "inconclusive", "{h}");
    assert!(
        h["detail"].as_str().unwrap().contains("no GPU section"),
        "{h}"
    );
    let detail = s["attempts"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "inconclusive, not held against the node: health: nvidia-smi -q printed no GPU section"
        ),
        "{detail}"
    );
    assert_eq!(s["attempts"][0]["blame"], "none", "{s}");
    // Said plainly in the human status and the journal too.
    let human = shep.ok(&["status", &odd]);
    assert!(
        human.contains(
            "attempt 1 GPU probe health: inconclusive: nvidia-smi -q printed no GPU section"
        ),
        "{human}"
    );
    assert!(shep.ok(&["events", &odd]).contains("inconclusive"));

    no_bans(&shep);
    shep.assert_no_duplicates();
}

/// A probe that blames node after node in the same words, with nothing else
/// saying they are bad, trips its circuit breaker: the ban it made is
/// lifted, the probe is skipped, and the run completes.
#[test]
fn identical_probe_blame_on_two_nodes_trips_the_breaker_and_the_run_completes() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // The same error line on both nodes of the partition (the same PCI
    // address too): what a wrong probe, not two bad nodes, looks like.
    for node in ["a100-1", "a100-2"] {
        cluster.inject(&["gpu-fault", node, "error"]);
    }
    // The breaker is off unless the configuration turns it on.
    std::fs::create_dir_all(&shep.state).unwrap();
    std::fs::write(
        shep.state.join("config.toml"),
        "[blacklist]\nprobe_breaker = true\n",
    )
    .unwrap();
    let run = shep.submit(
        "breaker.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=a100\n{FAST}echo \"trained on $(hostname)\"\n"),
        &["--gpus", "1", "--probes", "visibility"],
    );
    let s = shep.wait_status(&run, &["completed", "failed"], LONG);
    assert_eq!(outcomes(&s), ["node_fault", "node_fault", "success"], "{s}");
    let nodes: Vec<&str> = s["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|a| a["node"].as_str().unwrap())
        .collect();
    assert_ne!(nodes[0], nodes[1], "two distinct nodes: {s}");
    assert_eq!(s["workload_failures"], 0);
    // The third attempt ran without the probe, and says so.
    let third = &s["attempts"][2]["probes"][0];
    assert_eq!(
        (third["name"].as_str(), third["status"].as_str()),
        (Some("visibility"), Some("inconclusive")),
        "{s}"
    );
    assert!(
        third["detail"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{third}"
    );
    // The first node's ban was lifted, the second never made.
    no_bans(&shep);
    let events = shep.ok(&["events", &run]);
    assert_eq!(
        events.matches("probe_breaker_tripped").count(),
        1,
        "{events}"
    );
    assert!(
        events.contains(&format!("lifted the bans on {}", nodes[0])),
        "{events}"
    );
    shep.assert_no_duplicates();
}
