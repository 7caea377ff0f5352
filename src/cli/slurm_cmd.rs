//! `shepherd slurm …`: the adapter's calls, one per subcommand, for people who
//! want to see exactly what Shepherd sees (and for the README's first job).

use std::time::{Duration, Instant};

use crate::fail;
use crate::ops::Context;

use super::args::{GlobalArgs, SlurmCommand, SubmitArgs};
use super::output::{Table, emit};
use crate::slurm::{
    JobInfo, JobRecord, NodeInfo, ScriptSource, Slurm, SlurmCli, SlurmCliConfig, SubmitRequest,
};

pub fn run(global: &GlobalArgs, cmd: SlurmCommand) -> crate::ops::Result<()> {
    let slurm = SlurmCli::new(SlurmCliConfig {
        timeout: global.slurm_timeout,
        ..SlurmCliConfig::default()
    });
    let json = global.json;
    match cmd {
        SlurmCommand::Cluster => {
            let info = slurm.cluster()?;
            emit(json, "cluster", &info, |i| {
                format!(
                    "cluster     {}\nversion     {}\naccounting  {}\njobcomp     {}\ntopology    {}\nmin job age {}s\n",
                    i.name,
                    i.version,
                    i.accounting_storage,
                    i.job_comp,
                    i.topology_plugin,
                    i.min_job_age_secs
                )
            });
        }
        SlurmCommand::Nodes => {
            let nodes = slurm.nodes()?;
            emit(json, "nodes", &nodes, |n| nodes_table(n));
        }
        SlurmCommand::Partitions => {
            let parts = slurm.partitions()?;
            emit(json, "partitions", &parts, |parts| {
                let mut t =
                    Table::new(&["PARTITION", "STATE", "NODES", "MAXTIME", "TIER", "PREEMPT"]);
                for p in parts {
                    t.row(vec![
                        format!("{}{}", p.name, if p.is_default { "*" } else { "" }),
                        p.state.clone(),
                        p.nodes.join(","),
                        p.max_time_minutes
                            .map_or("unlimited".to_string(), |m| format!("{m}m")),
                        p.priority_tier.to_string(),
                        p.preempt_mode.clone(),
                    ]);
                }
                t.render()
            });
        }
        SlurmCommand::Topology => {
            let switches = slurm.topology()?;
            emit(json, "switches", &switches, |s| {
                if s.is_empty() {
                    return "no topology (the cluster has no topology plugin)\n".to_string();
                }
                let mut t = Table::new(&["SWITCH", "LEVEL", "NODES", "SWITCHES"]);
                for sw in s {
                    t.row(vec![
                        sw.name.clone(),
                        sw.level.to_string(),
                        sw.nodes.join(","),
                        sw.switches.join(","),
                    ]);
                }
                t.render()
            });
        }
        SlurmCommand::Jobs { ids } => {
            let jobs = slurm.jobs(&ids)?;
            emit(json, "jobs", &jobs, |j| jobs_table(j));
        }
        SlurmCommand::Accounting { ids } => {
            let records = slurm.accounting(&ids)?;
            emit(json, "records", &records, |r| records_table(r));
        }
        SlurmCommand::Submit(args) => submit(&slurm, json, args)?,
        SlurmCommand::Estimate(args) => {
            let est = slurm.estimate_start(&request(&args)?)?;
            emit(json, "estimate", &est, |e| {
                format!(
                    "would start at {} in partition {} on {}\n",
                    e.start,
                    e.partition,
                    e.nodes.join(",")
                )
            });
        }
        SlurmCommand::Cancel { ids } => {
            slurm.cancel(&ids)?;
            emit(json, "cancelled", &ids, |ids| {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                format!("cancelled {}\n", ids.join(" "))
            });
        }
    }
    Ok(())
}

fn request(args: &SubmitArgs) -> crate::ops::Result<SubmitRequest> {
    let script = std::fs::canonicalize(&args.script)
        .with_context(|| format!("cannot read batch script {}", args.script.display()))?;
    Ok(SubmitRequest {
        script: ScriptSource::File(script),
        args: args.sbatch_args.clone(),
        env: None,
    })
}

fn submit(slurm: &SlurmCli, json: bool, args: SubmitArgs) -> crate::ops::Result<()> {
    let id = slurm.submit(&request(&args)?)?;
    if !args.wait {
        emit(json, "job_id", &id, |id| format!("{id}\n"));
        return Ok(());
    }
    if !json {
        super::output::print(&format!("submitted job {id}, waiting for it to end\n"));
    }
    let deadline = Instant::now() + args.wait_timeout;
    loop {
        // The controller forgets a job MinJobAge after its end; accounting
        // then has the final word, so either answer ends the wait.
        let jobs = slurm.jobs(&[id])?;
        let ended = match jobs.first() {
            Some(job) => job.state.is_terminal(),
            None => true,
        };
        if ended {
            break;
        }
        if Instant::now() > deadline {
            fail!(
                "job {id} did not end within {}; it is still in Slurm (cancel it with `shepherd slurm cancel {id}`)",
                crate::duration::format(args.wait_timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let records = slurm.accounting(&[id])?;
    let jobs = slurm.jobs(&[id])?;
    let final_state =
        serde_json::json!({ "job_id": id, "controller": jobs, "accounting": records });
    emit(json, "job", &final_state, |_| {
        let mut s = jobs_table(&jobs);
        if !records.is_empty() {
            s.push_str(&records_table(&records));
        }
        s
    });
    Ok(())
}

fn nodes_table(nodes: &[NodeInfo]) -> String {
    let mut t = Table::new(&["NODE", "STATE", "GPUS", "FREE", "PARTITIONS", "REASON"]);
    for n in nodes {
        let gpus = match (n.gpus_total(), n.gpu_types().as_slice()) {
            (0, _) => "-".to_string(),
            (total, []) => total.to_string(),
            (total, types) => format!("{}x{total}", types.join("+")),
        };
        t.row(vec![
            n.name.clone(),
            n.state.to_string(),
            gpus,
            if n.gpus_total() == 0 {
                "-".to_string()
            } else {
                n.gpus_free().to_string()
            },
            n.partitions.join(","),
            n.reason.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

fn jobs_table(jobs: &[JobInfo]) -> String {
    let mut t = Table::new(&[
        "JOBID",
        "STATE",
        "REASON",
        "PARTITION",
        "NODES",
        "RESTARTS",
        "EXIT",
        "NAME",
    ]);
    for j in jobs {
        t.row(vec![
            j.id.to_string(),
            j.state.to_string(),
            j.reason.clone(),
            j.partition.clone(),
            j.nodes.join(","),
            j.restarts.to_string(),
            j.exit
                .map_or(String::new(), |e| format!("{}:{}", e.code, e.signal)),
            j.name.clone(),
        ]);
    }
    t.render()
}

fn records_table(records: &[JobRecord]) -> String {
    let mut t = Table::new(&["JOBID", "STATE", "EXIT", "PARTITION", "NODES", "SOURCE"]);
    for r in records {
        t.row(vec![
            r.id.to_string(),
            r.state.to_string(),
            r.exit
                .map_or(String::new(), |e| format!("{}:{}", e.code, e.signal)),
            r.partition.clone(),
            r.nodes.join(","),
            format!("{:?}", r.source).to_lowercase(),
        ]);
    }
    t.render()
}
