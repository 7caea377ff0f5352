//! The parsers on verbatim outputs of the test cluster, in both accounting
//! modes (`tests/fixtures/slurm/`, written by `scripts/capture-fixtures`). No
//! cluster is needed here; these run in milliseconds.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use shepherd::proc::Output;
use shepherd::slurm::cli::classify_failure;
use shepherd::slurm::commands::{self, Argv};
use shepherd::slurm::parse::{sacct, sbatch, scontrol, squeue};
use shepherd::slurm::reasons::{PendingOutlook, classify_pending};
use shepherd::slurm::{AccountingSource, JobId, JobInfo, JobState, Rejection, SlurmError, error};

use crate::support::repo_root;

/// One recorded command: its argv, stdout, stderr and exit status.
struct Fixture {
    name: String,
    argv: Vec<String>,
    stdout: String,
    stderr: String,
    rc: i32,
}

impl Fixture {
    fn load(mode: &str, name: &str) -> Fixture {
        let base: PathBuf = repo_root().join("tests/fixtures/slurm").join(mode);
        let read = |ext: &str| {
            let path = base.join(format!("{name}.{ext}"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/capture-fixtures)", path.display())
            })
        };
        Fixture {
            name: format!("{mode}/{name}"),
            argv: read("argv").lines().map(str::to_string).collect(),
            stdout: read("out"),
            stderr: read("err"),
            rc: read("rc").trim().parse().unwrap(),
        }
    }

    /// Fails when the adapter no longer runs the command that was recorded.
    fn assert_argv(&self, want: Argv) {
        assert_eq!(
            self.argv,
            want.to_vec(),
            "{}: the adapter's command changed; rerun scripts/capture-fixtures",
            self.name
        );
    }

    fn ids_arg(&self) -> Vec<JobId> {
        let i = self.argv.iter().position(|a| a == "-j").unwrap() + 1;
        self.argv[i]
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect()
    }

    fn output(&self) -> Output {
        Output {
            command: self.argv.join(" "),
            status: std::process::ExitStatus::from_raw(self.rc << 8),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            elapsed: Duration::ZERO,
        }
    }
}

const MODES: [&str; 2] = ["plain", "accounting"];
// Captured on a machine whose local time zone is UTC.
const TZ: TimeZone = TimeZone::UTC;

#[test]
fn config() {
    for mode in MODES {
        let f = Fixture::load(mode, "config");
        f.assert_argv(commands::config());
        let info = scontrol::config(&f.stdout).unwrap();
        assert_eq!(info.name, "shepherd-test");
        assert_eq!(info.version, "22.05.8");
        assert_eq!(info.job_comp, "jobcomp/filetxt");
        assert_eq!(info.topology_plugin, "topology/tree");
        assert_eq!(info.min_job_age_secs, 300);
        let dbd = mode == "accounting";
        assert_eq!(
            info.accounting_storage.ends_with("slurmdbd"),
            dbd,
            "{info:?}"
        );
    }
}

#[test]
fn nodes_idle_busy_and_faulty() {
    for mode in MODES {
        let idle = Fixture::load(mode, "nodes_idle");
        idle.assert_argv(commands::nodes());
        let nodes = scontrol::nodes(&idle.stdout).unwrap();
        assert_eq!(nodes.len(), 8);
        assert!(
            nodes
                .iter()
                .all(|n| n.state.is_usable() && n.gpus_used == 0)
        );
        let total: u32 = nodes.iter().map(|n| n.gpus_total()).sum();
        assert_eq!(total, 2 * 4 + 2 * 8 + 2 * 4);

        let busy = Fixture::load(mode, "nodes_busy");
        busy.assert_argv(commands::nodes());
        let nodes = scontrol::nodes(&busy.stdout).unwrap();
        let node = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().clone();
        // holder: 3 GPUs on a6000-2; victim: all 8 on a6000-1.
        assert_eq!(node("a6000-2").gpus_used, 3);
        assert_eq!(node("a6000-2").gpus_free(), 5);
        assert_eq!(node("a6000-1").gpus_free(), 0);
        assert_eq!(node("a6000-1").state.base, "MIXED");

        let faults = Fixture::load(mode, "nodes_faults");
        let nodes = scontrol::nodes(&faults.stdout).unwrap();
        let node = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().clone();
        let crashed = node("a100-1");
        assert_eq!(crashed.state.base, "DOWN");
        assert!(crashed.state.has_flag("NOT_RESPONDING"));
        assert!(!crashed.state.is_usable());
        assert!(crashed.reason.unwrap().starts_with("Not responding"));
        let drained = node("cpu-2");
        assert!(drained.state.has_flag("DRAIN") && !drained.state.is_usable());
        assert!(drained.reason.unwrap().starts_with("bad fan ["));
        let down = node("rtx4090-1");
        assert_eq!(down.state.to_string(), "DOWN");
        assert!(down.reason.unwrap().starts_with("injected failure"));
        assert!(node("a100-2").state.is_usable());
    }
}

#[test]
fn partitions_and_topology() {
    for mode in MODES {
        let f = Fixture::load(mode, "partitions");
        f.assert_argv(commands::partitions());
        let parts = scontrol::partitions(&f.stdout).unwrap();
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu", "a100", "a6000", "rtx4090", "short", "offline", "urgent"
            ]
        );
        let part = |n: &str| parts.iter().find(|p| p.name == n).unwrap();
        assert!(part("cpu").is_default);
        assert_eq!(part("offline").state, "DOWN");
        assert_eq!(part("short").max_time_minutes, Some(1));
        assert_eq!(part("urgent").priority_tier, 10);
        assert_eq!(part("urgent").nodes.len(), 4);

        let f = Fixture::load(mode, "topology");
        f.assert_argv(commands::topology());
        let switches = scontrol::topology(&f.stdout).unwrap();
        assert_eq!(switches.len(), 4);
        let leaf2 = switches.iter().find(|s| s.name == "leaf2").unwrap();
        assert_eq!(leaf2.nodes, ["a6000-1", "a6000-2", "rtx4090-2"]);
        let spine = switches.iter().find(|s| s.name == "spine").unwrap();
        assert_eq!((spine.level, spine.switches.len()), (1, 3));
    }
}

#[test]
fn start_estimate() {
    for mode in MODES {
        let f = Fixture::load(mode, "estimate");
        assert_eq!(&f.argv[..2], ["sbatch", "--test-only"]);
        let e = sbatch::start_estimate(&f.stderr, &TZ).unwrap();
        assert_eq!(e.partition, "a6000");
        assert_eq!(e.nodes, ["a6000-1"]);
    }
}

#[test]
fn rejections_and_failures_are_classified() {
    for mode in MODES {
        let cases = [
            ("reject_invalid_partition", Rejection::InvalidPartition),
            ("reject_invalid_node", Rejection::InvalidNodeName),
            ("reject_node_config", Rejection::NodeConfigUnavailable),
            (
                "reject_partition_unavailable",
                Rejection::PartitionUnavailable,
            ),
            ("update_running", Rejection::JobNotPending),
        ];
        for (name, want) in cases {
            let f = Fixture::load(mode, name);
            assert_ne!(f.rc, 0, "{}", f.name);
            let err = classify_failure(&f.output());
            assert_eq!(err.rejection(), Some(want), "{}: {err}", f.name);
            assert!(!err.is_observation_failure());
        }
        for name in ["outage_squeue", "outage_sbatch"] {
            let f = Fixture::load(mode, name);
            let err = classify_failure(&f.output());
            assert!(
                matches!(err, SlurmError::Unreachable { .. }),
                "{}: {err}",
                f.name
            );
            assert!(err.is_observation_failure());
        }
        let f = Fixture::load(mode, "outage_squeue");
        f.assert_argv(commands::squeue(&f.ids_arg()));
    }
}

fn by_name<'a>(jobs: &'a [JobInfo], name: &str) -> &'a JobInfo {
    jobs.iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

#[test]
fn squeue_every_way_a_job_ends_or_waits() {
    for mode in MODES {
        let mixed = Fixture::load(mode, "squeue_mixed");
        mixed.assert_argv(commands::squeue(&mixed.ids_arg()));
        let jobs = squeue::parse(&mixed.stdout, &TZ).unwrap();
        assert_eq!(jobs.len(), 12, "the unknown id is dropped");
        let holder = by_name(&jobs, "holder");
        assert_eq!(holder.state, JobState::Running);
        assert_eq!(holder.nodes, ["a6000-2"]);
        assert!(holder.start_time.is_some() && holder.end_time.is_none());

        let f = Fixture::load(mode, "squeue_faults");
        f.assert_argv(commands::squeue(&f.ids_arg()));
        let jobs = squeue::parse(&f.stdout, &TZ).unwrap();
        let exit = |name: &str| by_name(&jobs, name).exit.map(|e| (e.code, e.signal));
        assert_eq!(by_name(&jobs, "ok").state, JobState::Completed);
        assert_eq!(exit("ok"), Some((0, 0)));
        assert_eq!(by_name(&jobs, "three").state, JobState::Failed);
        assert_eq!(by_name(&jobs, "three").reason, "NonZeroExitCode");
        assert_eq!(exit("three"), Some((3, 0)));
        assert_eq!(by_name(&jobs, "killed").reason, "JobLaunchFailure");
        assert_eq!(exit("killed"), Some((0, 9)));
        assert_eq!(by_name(&jobs, "cancelled").state, JobState::Cancelled);
        assert_eq!(by_name(&jobs, "victim").state, JobState::Preempted);
        assert_eq!(by_name(&jobs, "lost").state, JobState::NodeFail);
        assert_eq!(by_name(&jobs, "lost").reason, "NodeDown");
        let requeued = by_name(&jobs, "requeued");
        assert!(requeued.state.is_pending(), "{requeued:?}");
        assert_eq!(requeued.restarts, 1);
        assert_eq!(
            requeued.start_time, None,
            "an expected start is not a start"
        );
        assert_eq!(by_name(&jobs, "urgent").partition, "urgent");
        for (name, reason) in [
            ("down", "PartitionDown"),
            ("toolong", "PartitionTimeLimit"),
            ("toobig", "PartitionNodeLimit"),
        ] {
            let j = by_name(&jobs, name);
            assert_eq!(
                (j.state.clone(), j.reason.as_str()),
                (JobState::Pending, reason)
            );
            assert_eq!(classify_pending(&j.reason), PendingOutlook::Hopeless);
            assert!(j.nodes.is_empty());
        }

        let unknown = Fixture::load(mode, "squeue_unknown");
        assert_eq!(unknown.rc, 1);
        assert!(error::is_unknown_job_message(&unknown.stderr));
    }
}

#[test]
fn accounting_records() {
    let f = Fixture::load("plain", "sacct_disabled");
    assert!(sacct::is_storage_disabled(&f.stderr));

    for (mode, source) in [
        ("plain", AccountingSource::JobComp),
        ("accounting", AccountingSource::Slurmdbd),
    ] {
        let f = Fixture::load(mode, "sacct");
        f.assert_argv(commands::sacct(source, &f.ids_arg()));
        let records = sacct::parse(&f.stdout, source, &TZ).unwrap();
        let ids = f.ids_arg();
        // ok, three, killed, gpu, holder, cancelled, down, toolong, toobig,
        // requeued, lost, victim, urgent
        let state = |i: usize| {
            records
                .iter()
                .rfind(|r| r.id == ids[i])
                .map(|r| r.state.clone())
        };
        assert_eq!(state(0), Some(JobState::Completed));
        assert_eq!(state(1), Some(JobState::Failed));
        assert_eq!(state(2), Some(JobState::Failed));
        assert_eq!(state(5), Some(JobState::Cancelled));
        assert_eq!(state(9), Some(JobState::NodeFail), "the requeued run's end");
        assert_eq!(state(10), Some(JobState::NodeFail));
        assert_eq!(state(11), Some(JobState::Preempted));
        let three = records.iter().find(|r| r.id == ids[1]).unwrap();
        assert_eq!(three.exit.map(|e| e.code), Some(3));
        assert_eq!(three.nodes, ["cpu-1"]);
        assert!(three.start_time.is_some() && three.end_time.is_some());
    }
}

#[test]
fn controller_job_records() {
    for mode in MODES {
        let f = Fixture::load(mode, "scontrol_jobs");
        f.assert_argv(commands::controller_jobs());
        let records = scontrol::job_records(&f.stdout, &TZ).unwrap();
        // 13 jobs of the scenario, plus one left by a *rejected* submission:
        // `--gres=gpu:a100:5` is refused to sbatch yet kept by the controller
        // as FAILED with reason BadConstraints.
        assert_eq!(records.len(), 14);
        let rejected = &records[0];
        assert_eq!(
            (rejected.state.clone(), rejected.partition.as_str()),
            (JobState::Failed, "a100")
        );
        let three = records
            .iter()
            .find(|r| r.exit.map(|e| e.code) == Some(3))
            .unwrap();
        assert_eq!(three.state, JobState::Failed);
        assert!(records.iter().any(|r| r.state == JobState::Preempted));
    }
}
