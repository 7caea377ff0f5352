//! Submitting jobs and observing how they end, through the real adapter.

use std::time::Duration;

use shepherd::slurm::{AccountingSource, JobId, JobState, Slurm};

use crate::both_modes;
use crate::support::{Mode, TestCluster, poll, wait_job};

const END: Duration = Duration::from_secs(60);

both_modes!(job_outcomes);

fn job_outcomes(mode: Mode) {
    let cluster = TestCluster::start(mode);
    let slurm = cluster.slurm();

    let info = slurm.cluster().unwrap();
    assert_eq!(info.name, "shepherd-test");
    assert_eq!(
        info.accounting_storage.ends_with("slurmdbd"),
        mode == Mode::Accounting,
        "{info:?}"
    );

    let ok = cluster.submit(&slurm, &["-p", "cpu", "-J", "ok"], "echo hello");
    let three = cluster.submit(&slurm, &["-p", "cpu", "-J", "three"], "exit 3");
    let killed = cluster.submit(&slurm, &["-p", "cpu", "-J", "killed"], "kill -9 $$");
    let gpu = cluster.submit(
        &slurm,
        &["-p", "a100", "--gres=gpu:a100:2", "-J", "gpu"],
        "echo \"node=$(hostname) gpus=$CUDA_VISIBLE_DEVICES\"",
    );
    // Holds three GPUs until cancelled, so the inventory must show them in use.
    let holder = cluster.submit(
        &slurm,
        &["-p", "a6000", "--gres=gpu:a6000:3", "-J", "holder"],
        "sleep 600",
    );

    let done = |j: &shepherd::slurm::JobInfo| j.state.is_terminal();
    let ok_job = wait_job(&slurm, ok, END, "end", done);
    assert_eq!(ok_job.state, JobState::Completed);
    assert_eq!(ok_job.exit.map(|e| (e.code, e.signal)), Some((0, 0)));
    assert_eq!(ok_job.name, "ok");
    assert!(ok_job.start_time.is_some() && ok_job.end_time.is_some());
    assert_eq!(cluster.job_output(ok).trim(), "hello");

    let three_job = wait_job(&slurm, three, END, "end", done);
    assert_eq!(three_job.state, JobState::Failed);
    assert_eq!(three_job.exit.map(|e| (e.code, e.signal)), Some((3, 0)));
    assert_eq!(three_job.reason, "NonZeroExitCode");

    let killed_job = wait_job(&slurm, killed, END, "end", done);
    assert_eq!(killed_job.state, JobState::Failed);
    assert_eq!(killed_job.exit.map(|e| e.signal), Some(9));

    let gpu_job = wait_job(&slurm, gpu, END, "end", done);
    assert_eq!(gpu_job.state, JobState::Completed);
    assert_eq!(gpu_job.partition, "a100");
    let node = &gpu_job.nodes[0];
    assert!(node.starts_with("a100-"), "{gpu_job:?}");
    assert_eq!(
        cluster.job_output(gpu).trim(),
        format!("node={node} gpus=0,1"),
        "jobs see their node's name and CUDA_VISIBLE_DEVICES"
    );

    let running = wait_job(&slurm, holder, END, "start", |j| {
        j.state == JobState::Running
    });
    assert!(running.end_time.is_none() && running.exit.is_none());
    let holder_node = running.nodes[0].clone();
    let nodes = slurm.nodes().unwrap();
    let n = nodes.iter().find(|n| n.name == holder_node).unwrap();
    assert_eq!(
        (n.gpus_used, n.gpus_total(), n.gpus_free()),
        (3, 8, 5),
        "{n:?}"
    );

    // One call for several ids; ids the controller does not know are dropped,
    // also when none is known.
    let unknown = JobId(987_654);
    let seen = slurm.jobs(&[ok, unknown, three]).unwrap();
    let mut ids: Vec<JobId> = seen.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, [ok, three]);
    assert!(slurm.jobs(&[unknown]).unwrap().is_empty());
    slurm
        .cancel(&[unknown])
        .expect("cancelling an unknown id is not an error");

    // A requeue keeps the job id and raises the restart count.
    slurm.requeue(holder).unwrap();
    let requeued = wait_job(&slurm, holder, END, "requeue", |j| j.restarts == 1);
    assert!(!requeued.state.is_terminal(), "{requeued:?}");

    slurm.cancel(&[holder]).unwrap();
    let cancelled = wait_job(&slurm, holder, END, "cancel", done);
    assert_eq!(cancelled.state, JobState::Cancelled);

    // Accounting has the final word once the controller forgets the job.
    let want_source = match mode {
        Mode::Accounting => AccountingSource::Slurmdbd,
        Mode::NoAccounting => AccountingSource::JobComp,
    };
    let ids = [ok, three, killed, gpu, holder];
    let records = poll(Duration::from_secs(30), "accounting records", || {
        let r = slurm.accounting(&ids).map_err(|e| e.to_string())?;
        // slurmdbd writes a record first and fills its partition a moment later.
        let complete = |id: &JobId| {
            r.iter().any(|rec| {
                rec.id == *id
                    && (rec.state.is_terminal() || rec.state == JobState::Requeued)
                    && !rec.partition.is_empty()
            })
        };
        if ids.iter().all(complete) {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    let rec = |id: JobId| records.iter().rfind(|r| r.id == id).unwrap();
    assert!(
        records.iter().all(|r| r.source == want_source),
        "{records:?}"
    );
    assert_eq!(rec(ok).state, JobState::Completed);
    assert_eq!(rec(three).state, JobState::Failed);
    assert_eq!(rec(three).exit.map(|e| e.code), Some(3));
    assert_eq!(rec(killed).state, JobState::Failed);
    assert_eq!(&rec(gpu).nodes, std::slice::from_ref(node));
    assert_eq!(rec(gpu).partition, "a100");
    // Cancelled during its requeue: Slurm writes no final record (in either
    // mode), so accounting's last word on it is the requeue.
    assert!(
        records
            .iter()
            .any(|r| r.id == holder && r.state == JobState::Requeued),
        "{records:?}"
    );
    assert!(slurm.accounting(&[unknown]).unwrap().is_empty());
}
