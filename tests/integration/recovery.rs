//! The recovery loop end to end: the real binary submits, wraps, watches and
//! recovers runs on a real cluster, and Slurm never holds two live jobs for
//! one run.

use std::time::Duration;

use crate::both_modes;
use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);

/// Fast settings for tests: 1 s heartbeats, short backoff.
const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s --backoff-max 2s\n";

both_modes!(success_first_time, fails_twice_then_succeeds);

fn success_first_time(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "hello.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}echo \"run=$SHEPHERD_RUN_ID attempt=$SHEPHERD_ATTEMPT dir=$PWD\"\n"
        ),
        &[],
    );
    assert_eq!(run, "hello");
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["success"]);
    assert_eq!(s["attempts"][0]["blame"], "none");
    assert_eq!(s["attempts"][0]["partition"], "cpu");
    assert!(s["slurm_job_id"].as_u64().is_some());
    assert!(s["node"].as_str().unwrap().starts_with("cpu-"));
    // The job ran in the submit directory, and its output went to the
    // attempt's own file.
    let job = s["slurm_job_id"].as_u64().unwrap();
    let out_file = shep
        .state
        .join(format!("runs/hello/attempts/1/slurm-{job}.out"));
    let out = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        out.trim(),
        format!("run=hello attempt=1 dir={}", shep.work.display())
    );
    // `list --json` carries the same document.
    let list: serde_json::Value = serde_json::from_str(&shep.ok(&["list", "--json"])).unwrap();
    assert_eq!(list["runs"][0]["run_id"], "hello");
    assert_eq!(list["runs"][0]["status"], "completed");
    shep.assert_no_duplicates();
}

fn fails_twice_then_succeeds(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "flaky.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" -lt 3 ]; then echo \"boom $SHEPHERD_ATTEMPT\" >&2; exit 3; fi\n\
             echo fine\n"
        ),
        &["--max-retries", "3"],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(
        outcomes(&s),
        ["workload_failure", "workload_failure", "success"]
    );
    assert_eq!(s["attempts"][0]["blame"], "workload");
    assert_eq!(s["attempts"][0]["exit_code"], 3);
    assert_eq!(s["workload_failures"], 2);
    shep.assert_no_duplicates();
}

#[test]
fn retries_run_out() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "broken.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}echo 'Traceback: oops' >&2; exit 7\n"
        ),
        // The same failure three times would end the run earlier, as the
        // workload failing the same way everywhere (verdicts_daemon.rs):
        // here the budget itself is under test.
        &["--max-retries", "2", "--same-failure-limit", "0"],
    );
    let s = shep.wait_status(&run, &["failed"], LONG);
    assert_eq!(outcomes(&s), ["workload_failure"; 3]);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("--max-retries 2"), "{reason}");
    assert!(reason.contains("code 7"), "{reason}");
    // Nothing more is submitted for a failed run.
    let events = shep.ok(&["events", &run]);
    assert!(events.contains("run_failed"), "{events}");
    shep.assert_no_duplicates();
}

#[test]
fn stop_pause_unpause_restart() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "long.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}sleep 600\n"),
        &[],
    );
    let s = shep.wait_status(&run, &["running"], LONG);
    let first_job = s["slurm_job_id"].as_u64().unwrap();

    // Restart: the running job is cancelled and a new attempt submitted.
    shep.ok(&["restart", &run]);
    let s = poll(LONG, "a second attempt running", || {
        let s = shep.status(&run);
        if s["attempts"].as_array().unwrap().len() == 2 && s["status"] == "running" {
            Ok(s)
        } else {
            Err(format!("{} {}", s["status"], s["attempts"]))
        }
    });
    assert_ne!(s["slurm_job_id"].as_u64().unwrap(), first_job);
    assert_eq!(s["attempts"][0]["outcome"], "cancelled_by_shepherd");

    // Pause: the job goes on; stop ends it.
    shep.ok(&["pause", &run]);
    poll(LONG, "paused flag", || {
        let s = shep.status(&run);
        if s["paused"] == true {
            Ok(())
        } else {
            Err(s["paused"].to_string())
        }
    });
    assert_eq!(shep.status(&run)["status"], "running");
    shep.ok(&["unpause", &run]);
    shep.ok(&["stop", &run]);
    let s = shep.wait_status(&run, &["stopped"], LONG);
    assert_eq!(s["attempts"].as_array().unwrap().len(), 2);
    // Restart revives a stopped run.
    shep.ok(&["restart", &run]);
    let s = shep.wait_status(&run, &["running"], LONG);
    assert_eq!(s["attempts"].as_array().unwrap().len(), 3);
    shep.ok(&["stop", &run]);
    shep.wait_status(&run, &["stopped"], LONG);
    shep.assert_no_duplicates();
}

#[test]
fn hung_workload_is_cancelled_and_resubmitted() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // Attempt 1 prints once, then stalls (alive, silent); attempt 2 is fine.
    // A first hang resubmits at once: with a 10-minute backoff the run
    // still completes within LONG.
    let run = shep.submit(
        "stall.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}#SHEPHERD --progress-stall 6s\n\
             #SHEPHERD --backoff-base 10m --backoff-max 10m\n\
             echo started\n\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then sleep 600; fi\n\
             echo done\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["hang", "success"]);
    let events = shep.ok(&["events", &run]);
    assert!(events.contains("hang_detected"), "{events}");
    shep.assert_no_duplicates();
}

#[test]
fn cancel_outside_shepherd_stops_the_run() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "victim.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}sleep 600\n"),
        &[],
    );
    let s = shep.wait_status(&run, &["running"], LONG);
    let job = s["slurm_job_id"].as_u64().unwrap().to_string();
    cluster.slurm_ok("scancel", &[&job]);
    let s = shep.wait_status(&run, &["stopped"], LONG);
    assert_eq!(outcomes(&s), ["cancelled_externally"]);
    shep.assert_no_duplicates();
}

#[test]
fn bad_scripts_are_refused_and_nothing_is_created() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let shep = Shepherd::new(&cluster);
    let cases: [(&str, &str, &[&str], &str); 5] = [
        ("noshebang.sh", "echo hi\n", &[], "shebang"),
        (
            "typo.sh",
            "#!/bin/bash\n#SHEPHERD --gpuz 2\n",
            &[],
            "typo.sh:2: invalid #SHEPHERD directive",
        ),
        (
            "badval.sh",
            "#!/bin/bash\n#SHEPHERD --max-retries lots\n",
            &[],
            "typo",
        ),
        (
            "ok.sh",
            "#!/bin/bash\ntrue\n",
            &["--run-id", "../evil"],
            "run id",
        ),
        (
            "ok2.sh",
            "#!/bin/bash\ntrue\n",
            &["--heartbeat-grace", "1s", "--heartbeat-interval", "5s"],
            "--heartbeat-grace",
        ),
    ];
    for (name, body, args, want) in cases {
        std::fs::write(shep.work.join(name), body).unwrap();
        let mut all = vec![name];
        all.extend_from_slice(args);
        let out = shep.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        if want != "typo" {
            assert!(err.contains(want), "{name}: {err}");
        } else {
            assert!(
                err.contains("badval.sh:2:") && err.contains("lots"),
                "{name}: {err}"
            );
        }
    }
    let out = shep.run(&["missing.sh"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.sh"));
    assert!(
        !shep.state.join("runs").exists()
            || std::fs::read_dir(shep.state.join("runs"))
                .unwrap()
                .next()
                .is_none()
    );

    // A clash names the existing run.
    std::fs::write(
        shep.work.join("twice.sh"),
        "#!/bin/bash\n#SBATCH -p cpu\nsleep 1\n",
    )
    .unwrap();
    shep.ok(&["twice.sh"]);
    let out = shep.run(&["twice.sh"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("twice") && err.contains("already exists"),
        "{err}"
    );

    // A run whose state file is damaged is reported, not fatal to the others.
    // Once it has ended, so that the daemon does not write it again (it
    // would replace the damage with its own state before `status` reads it).
    let state = shep.state.join("runs/twice/state.json");
    shep.wait_status("twice", &["completed"], LONG);
    std::fs::write(&state, "{\"version\": 1, \"stat").unwrap();
    let out = shep.run(&["status", "twice"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("twice") && err.contains("corrupt"), "{err}");
    let list = shep.ok(&["list"]);
    assert!(list.contains("error"), "{list}");

    // Unknown run ids get suggestions and their own exit code.
    let out = shep.run(&["status", "twicee"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean twice"));
}

#[test]
fn node_crash_mid_run_is_recovered_elsewhere() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // Requeueable (Slurm's default): Slurm requeues the same job id, and
    // Shepherd must wait for it rather than submit a duplicate.
    let requeued = shep.submit(
        "requeued.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu --nodelist=cpu-1\n{FAST}\
             if [ \"${{SLURM_RESTART_COUNT:-0}}\" = 0 ]; then sleep 600; fi\necho \"done on $(hostname)\"\n"
        ),
        // Longer than Slurm takes to notice the dead node, so Slurm's own
        // requeue is what happens (a lost heartbeat is tested on its own).
        &["--heartbeat-grace", "5m"],
    );
    // Not requeueable: NODE_FAIL, and Shepherd submits a new attempt.
    let lost = shep.submit(
        "lost.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=a6000 --no-requeue\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then sleep 600; fi\necho fine\n"
        ),
        &[],
    );
    shep.wait_status(&requeued, &["running"], LONG);
    let lost_node = shep.wait_status(&lost, &["running"], LONG)["node"]
        .as_str()
        .unwrap()
        .to_string();
    cluster.inject(&["crash", "cpu-1"]);
    cluster.inject(&["down-node", &lost_node, "injected failure"]);
    // The requeued job may only rerun on cpu-1 (nodelist): bring it back.
    poll(LONG, "Slurm to requeue the job of the crashed node", || {
        let s = shep.status(&requeued);
        let restarts = s["attempts"][0]["restarts"].as_u64().unwrap_or(0);
        if restarts >= 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    cluster.inject(&["restart-node", "cpu-1"]);
    let s = shep.wait_status(&requeued, &["completed"], Duration::from_secs(180));
    assert_eq!(
        outcomes(&s),
        ["success"],
        "one attempt: Slurm's requeue is not a new attempt"
    );
    let events = shep.ok(&["events", &requeued]);
    assert!(events.contains("requeued_by_slurm"), "{events}");
    // Slurm holds a requeued job for cred_expire (BeginTime); Shepherd
    // lifts the hold, since the old instance died with its node.
    assert!(
        events.contains("asking Slurm to start it again now"),
        "{events}"
    );

    let s = shep.wait_status(&lost, &["completed"], Duration::from_secs(180));
    assert_eq!(outcomes(&s), ["node_fault", "success"]);
    assert_eq!(s["attempts"][0]["blame"], "node");
    assert_eq!(s["attempts"][0]["node"], lost_node.as_str());
    assert_ne!(
        s["attempts"][1]["node"],
        lost_node.as_str(),
        "the failed node is banned"
    );
    cluster.inject(&["resume", &lost_node]);
    assert_eq!(
        s["workload_failures"], 0,
        "a node fault is not charged to the workload"
    );
    shep.assert_no_duplicates();
}

#[test]
fn preemption_by_the_high_priority_partition() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let body = |gres: &str, node: &str| {
        format!(
            "#!/bin/bash\n#SBATCH --partition={} --nodelist={node} --gres={gres}\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ] && [ \"${{SLURM_RESTART_COUNT:-0}}\" = 0 ]; then sleep 600; fi\necho fine\n",
            node.split('-').next().unwrap()
        )
    };
    // a100 victims are requeued by Slurm (same job id); a6000 victims are
    // cancelled (PREEMPTED) and Shepherd resubmits.
    let requeue = shep.submit("requeue.sh", &body("gpu:a100:4", "a100-1"), &[]);
    let cancel = shep.submit("cancel.sh", &body("gpu:a6000:8", "a6000-1"), &[]);
    shep.wait_status(&requeue, &["running"], LONG);
    shep.wait_status(&cancel, &["running"], LONG);
    for (node, gres) in [("a100-1", "gpu:a100:4"), ("a6000-1", "gpu:a6000:8")] {
        cluster.sbatch(
            &["-p", "urgent", "-w", node, &format!("--gres={gres}")],
            "sleep 8",
        );
    }
    let s = shep.wait_status(&cancel, &["completed"], Duration::from_secs(180));
    assert_eq!(outcomes(&s), ["preempted", "success"]);
    assert_eq!(s["workload_failures"], 0);
    let s = shep.wait_status(&requeue, &["completed"], Duration::from_secs(180));
    assert_eq!(outcomes(&s), ["success"]);
    assert_eq!(s["attempts"][0]["restarts"], 1);
    let events = shep.ok(&["events", &requeue]);
    assert!(
        events.contains("asking Slurm to start it again now"),
        "{events}"
    );
    shep.assert_no_duplicates();
}

#[test]
fn time_limit_with_warning_signal_checkpoints_and_continues() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // Attempt 1 runs until the time limit; on SIGUSR1 it "checkpoints".
    // Attempt 2 finds the checkpoint and finishes.
    let run = shep.submit(
        "ckpt.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=short --time=1\n{FAST}#SHEPHERD --signal-before 45s\n\
             if [ -f ckpt ]; then echo \"resumed from $(cat ckpt)\"; exit 0; fi\n\
             trap 'echo saved > ckpt; echo checkpointed' USR1\n\
             while :; do sleep 1; done\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["completed", "failed"], Duration::from_secs(240));
    assert_eq!(outcomes(&s), ["time_limit", "success"], "{s}");
    assert_eq!(
        std::fs::read_to_string(shep.work.join("ckpt"))
            .unwrap()
            .trim(),
        "saved"
    );
    shep.assert_no_duplicates();
}

#[test]
fn indefinite_runs_expire_after_keep_alive() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "forever.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}sleep 600\n"),
        &["--mode", "indefinite", "--keep-alive", "12s"],
    );
    shep.wait_status(&run, &["running"], LONG);
    let s = shep.wait_status(&run, &["expired"], LONG);
    assert_eq!(outcomes(&s), ["cancelled_by_shepherd"]);
    assert_eq!(s["mode"], "indefinite");
    shep.assert_no_duplicates();
}

#[test]
fn two_daemons_started_at_once_make_one() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let shep = Shepherd::new(&cluster);
    let children: Vec<_> = (0..4)
        .map(|_| {
            shep.command()
                .args(["daemon", "start", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<u64> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["daemon"]["pid"].as_u64().unwrap()
        })
        .collect();
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "all see one daemon: {pids:?}"
    );
    // A second foreground daemon refuses with a clear message.
    let out = shep.run(&["daemon", "run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&pids[0].to_string()),
        "{err}"
    );
}

/// Kills the daemon with SIGKILL over and over while runs fail, retry and
/// succeed; restarting it each time. Nothing is lost, nothing duplicated.
#[test]
fn daemon_killed_at_random_points() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(shep.submit(
            &format!("r{i}.sh"),
            &format!(
                "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
                 sleep $(( RANDOM % 3 ))\n\
                 if [ \"$SHEPHERD_ATTEMPT\" -lt 3 ]; then exit 1; fi\n"
            ),
            &["--max-retries", "5"],
        ));
    }
    let lease = shep.state.join("daemon/lease.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut kills = 0;
    let mut rng = 0x2545_f491_u64;
    loop {
        let done = runs.iter().all(|r| shep.status(r)["status"] == "completed");
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs did not complete: {:?}",
            runs.iter().map(|r| shep.status(r)).collect::<Vec<_>>()
        );
        // Sleep 0.3–1.5 s, then kill -9 the daemon and start a new one.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 1200));
        if let Ok(text) = std::fs::read_to_string(&lease)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(pid) = v["pid"].as_i64()
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            kills += 1;
        }
        shep.ok(&["daemon", "start"]);
    }
    assert!(kills >= 3, "the daemon was killed {kills} times");
    for r in &runs {
        let s = shep.status(r);
        assert_eq!(
            outcomes(&s),
            ["workload_failure", "workload_failure", "success"],
            "{r}: {s}"
        );
    }
    shep.assert_no_duplicates();
}

#[test]
fn controller_outage_is_not_a_failure() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "steady.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}sleep 70\necho done\n"),
        &["--heartbeat-grace", "5m"],
    );
    shep.wait_status(&run, &["running"], LONG);
    cluster.inject(&["ctld-stop"]);
    let outage = std::time::Instant::now();
    // For the outage the run stays as it was; no attempt ends.
    while outage.elapsed() < Duration::from_secs(60) {
        let s = shep.status(&run);
        assert_eq!(s["status"], "running", "{s}");
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1);
        std::thread::sleep(Duration::from_secs(2));
    }
    cluster.inject(&["ctld-start"]);
    let s = shep.wait_status(&run, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["success"]);
    let log = std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap();
    assert!(log.contains("Slurm unavailable"), "{log}");
    shep.assert_no_duplicates();
}

#[test]
fn stuck_node_is_blamed_and_the_run_moves_on() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "stuck.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then sleep 600; fi\necho fine\n"
        ),
        &["--heartbeat-grace", "8s"],
    );
    let s = shep.wait_status(&run, &["running"], LONG);
    let node = s["node"].as_str().unwrap().to_string();
    // SIGSTOP slurmd, slurmstepd, the wrapper and the workload: the node is
    // alive but nothing on it answers.
    cluster.inject(&["hang", &node]);
    let s = shep.wait_status(&run, &["completed"], Duration::from_secs(180));
    let first = &s["attempts"][0];
    // Shepherd's lost heartbeat and Slurm's own node-down race; either way the
    // node is blamed and the workload is not charged.
    assert!(
        matches!(first["outcome"].as_str(), Some("hang" | "node_fault")),
        "{first}"
    );
    assert_eq!(first["blame"], "node", "{first}");
    assert_eq!(s["workload_failures"], 0);
    let last = s["attempts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["outcome"], "success");
    assert_ne!(last["node"], node.as_str());
    cluster.inject(&["unhang", &node]);
    shep.assert_no_duplicates();
}

#[test]
fn logs_are_found_per_attempt_and_followed_across_attempts() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    // Default files: one pair per attempt in the run directory.
    let run = shep.submit(
        "talky.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
             for i in 1 2 3; do echo \"attempt $SHEPHERD_ATTEMPT line $i\"; sleep 1; done\n\
             echo \"oops $SHEPHERD_ATTEMPT\" >&2\n[ \"$SHEPHERD_ATTEMPT\" -ge 2 ]\n"
        ),
        &[],
    );
    // Follow from the start: both attempts' output arrives, then it ends.
    let followed = shep.ok(&["logs", &run, "-f", "-n", "0"]);
    for k in 1..=2 {
        for i in 1..=3 {
            assert!(
                followed.contains(&format!("attempt {k} line {i}")),
                "{followed}"
            );
        }
    }
    assert!(followed.contains("==> attempt 2"), "{followed}");
    assert_eq!(shep.status(&run)["status"], "completed");
    assert_eq!(
        shep.ok(&["logs", &run, "-n", "1"]).trim(),
        "attempt 2 line 3"
    );
    assert_eq!(
        shep.ok(&["logs", &run, "--attempt", "1", "--stderr"])
            .trim(),
        "oops 1"
    );

    // The script's own --output pattern is honoured and found.
    std::fs::create_dir_all(shep.work.join("out")).unwrap();
    let mine = shep.submit(
        "mine.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu --output=out/%x-%j.txt\n{FAST}echo custom\n"
        ),
        &[],
    );
    let s = shep.wait_status(&mine, &["completed"], LONG);
    let job = s["slurm_job_id"].as_u64().unwrap();
    let file = shep.work.join(format!("out/shepherd.mine.1-{job}.txt"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "custom");
    assert_eq!(shep.ok(&["logs", &mine]).trim(), "custom");
    let out = shep.run(&["logs", &mine, "--attempt", "7"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no attempt 7"));
    shep.assert_no_duplicates();
}
