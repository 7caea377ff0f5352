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
        &["--max-retries", "2"],
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
    let run = shep.submit(
        "stall.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}#SHEPHERD --progress-stall 6s\n\
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
    let out = std::process::Command::new("scancel")
        .env("SLURM_CONF", cluster.conf())
        .arg(&job)
        .output()
        .unwrap();
    assert!(out.status.success());
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

    // Unknown run ids get suggestions and their own exit code.
    let out = shep.run(&["status", "twicee"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean twice"));
}
