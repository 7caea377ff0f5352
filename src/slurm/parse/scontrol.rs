//! `scontrol -o -d show node`, `scontrol -o show partition`, `scontrol show
//! topology`, `scontrol show config` and `scontrol -o show job`.

use jiff::tz::TimeZone;

use super::kv::{self, Record};
use super::values;
use crate::slurm::hostlist;
use crate::slurm::types::{
    AccountingSource, ClusterInfo, JobRecord, JobState, NodeInfo, NodeState, PartitionInfo, Switch,
};

fn list(v: Option<&str>) -> Vec<String> {
    v.filter(|v| !kv::is_null(v))
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn nodes(text: &str) -> Result<Vec<NodeInfo>, String> {
    kv::records(text)
        .iter()
        .map(|r| node(r).map_err(|e| format!("{e} (node {:?})", r.get("NodeName"))))
        .collect()
}

fn node(r: &Record) -> Result<NodeInfo, String> {
    let gres = values::gres_list(r.get("Gres").unwrap_or(""))?;
    // `GresUsed` (with -d) counts GPUs in use with or without accounting;
    // `AllocTRES` only has them when slurmdbd tracks gres/gpu.
    let gpus_used = match r.get("GresUsed") {
        Some(used) => values::gres_list(used)?
            .iter()
            .filter(|g| g.name == "gpu")
            .map(|g| g.count)
            .sum(),
        None => values::tres_gpus(r.get("AllocTRES").unwrap_or("")),
    };
    Ok(NodeInfo {
        name: r.require("NodeName")?.to_string(),
        state: NodeState::parse(r.require("State")?),
        reason: r.get_some("Reason").map(str::to_string),
        partitions: list(r.get("Partitions")),
        features: list(r.get("AvailableFeatures")),
        gres,
        gpus_used,
        cpus: r.get_u32("CPUTot").unwrap_or(0),
        cpus_alloc: r.get_u32("CPUAlloc").unwrap_or(0),
        memory_mb: r.get_u64("RealMemory").unwrap_or(0),
        memory_alloc_mb: r.get_u64("AllocMem").unwrap_or(0),
    })
}

pub fn partitions(text: &str) -> Result<Vec<PartitionInfo>, String> {
    kv::records(text)
        .iter()
        .map(|r| partition(r).map_err(|e| format!("{e} (partition {:?})", r.get("PartitionName"))))
        .collect()
}

fn partition(r: &Record) -> Result<PartitionInfo, String> {
    Ok(PartitionInfo {
        name: r.require("PartitionName")?.to_string(),
        state: r.require("State")?.to_string(),
        is_default: r.get("Default") == Some("YES"),
        nodes: hostlist::expand(r.get("Nodes").unwrap_or(""))?,
        max_time_minutes: values::time_limit_minutes(r.get("MaxTime").unwrap_or("UNLIMITED"))?,
        priority_tier: r.get_u32("PriorityTier").unwrap_or(1),
        preempt_mode: r.get("PreemptMode").unwrap_or("OFF").to_string(),
        total_cpus: r.get_u32("TotalCPUs").unwrap_or(0),
        total_nodes: r.get_u32("TotalNodes").unwrap_or(0),
    })
}

/// Without a topology plugin scontrol prints `No topology information
/// available` (on stderr); that is an empty tree, not an error.
pub fn topology(text: &str) -> Result<Vec<Switch>, String> {
    text.lines()
        .filter(|l| l.trim_start().starts_with("SwitchName="))
        .map(|l| {
            let r = Record::parse(l.trim());
            Ok(Switch {
                name: r.require("SwitchName")?.to_string(),
                level: r.get_u32("Level").unwrap_or(0),
                nodes: hostlist::expand(r.get("Nodes").unwrap_or(""))?,
                switches: hostlist::expand(r.get("Switches").unwrap_or(""))?,
            })
        })
        .collect()
}

/// `scontrol show config`: `Key = Value` lines.
pub fn config(text: &str) -> Result<ClusterInfo, String> {
    let get = |key: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(" = ").or_else(|| l.split_once('='))?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = get("ClusterName").ok_or("no ClusterName in scontrol show config")?;
    let min_job_age = get("MinJobAge").unwrap_or_default();
    Ok(ClusterInfo {
        name,
        version: get("SLURM_VERSION").unwrap_or_default(),
        accounting_storage: get("AccountingStorageType").unwrap_or_default(),
        job_comp: get("JobCompType").unwrap_or_default(),
        min_job_age_secs: min_job_age
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        topology_plugin: get("TopologyPlugin").unwrap_or_default(),
    })
}

/// `scontrol -o show job` records, as accounting of last resort.
pub fn job_records(text: &str, tz: &TimeZone) -> Result<Vec<JobRecord>, String> {
    kv::records(text)
        .iter()
        .map(|r| {
            Ok(JobRecord {
                id: r.require("JobId")?.parse()?,
                state: JobState::parse(r.require("JobState")?),
                exit: r.get("ExitCode").and_then(|e| e.parse().ok()),
                nodes: hostlist::expand(r.get("NodeList").unwrap_or(""))?,
                partition: r.get("Partition").unwrap_or("").to_string(),
                start_time: values::time(r.get("StartTime").unwrap_or(""), tz)?,
                end_time: values::time(r.get("EndTime").unwrap_or(""), tz)?,
                source: AccountingSource::Controller,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_with_gres_used() {
        let text = "NodeName=p1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=4 CPUTot=4 CPULoad=0.02 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:a100:2 GresDrain=N/A GresUsed=gpu:a100:1(IDX:0) NodeAddr=127.0.0.1 NodeHostName=p1 Port=30102 Version=22.05.8 OS=Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=22815 Sockets=4 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=gpu  BootTime=2026-11-26T09:00:59 SlurmdStartTime=2026-11-26T09:11:38 LastBusyTime=2026-11-26T09:11:38 CfgTRES=cpu=4,mem=4000M,billing=4 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s\n";
        let n = nodes(text).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].name, "p1");
        assert_eq!(n[0].gpus_total(), 2);
        assert_eq!(n[0].gpus_used, 1);
        assert_eq!(n[0].partitions, ["gpu"]);
        assert!(n[0].features.is_empty());
        assert_eq!(n[0].cpus, 4);
        assert!(n[0].state.is_usable());
    }

    #[test]
    fn no_topology_is_empty() {
        assert!(topology("").unwrap().is_empty());
    }
}
