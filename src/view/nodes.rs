//! Nodes as the interfaces show them: Slurm's state, GPUs, switch, and
//! Shepherd's ban, in one document per node.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::policy::blacklist::Blacklist;
use crate::slurm::{NodeInfo, Switch};

#[derive(Debug, Serialize, Deserialize)]
pub struct BanDoc {
    pub reason: String,
    pub since: Timestamp,
    /// `null`: until unbanned.
    pub until: Option<Timestamp>,
    pub manual: bool,
    pub strikes: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeDoc {
    pub name: String,
    pub state: String,
    pub usable: bool,
    pub partitions: Vec<String>,
    pub gpu_type: Option<String>,
    pub gpus: u32,
    pub gpus_free: u32,
    pub switch: Option<String>,
    /// Why an admin drained or downed it (`sinfo -R`), if so.
    pub admin_reason: Option<String>,
    pub banned: Option<BanDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodesDoc {
    pub cluster: String,
    pub nodes: Vec<NodeDoc>,
    /// Nodes under one switch failing together, newest last.
    pub incidents: Vec<crate::policy::blacklist::Incident>,
}

/// Joins Slurm's view of the nodes with the blacklist at `now`.
pub fn nodes_doc(
    cluster: &str,
    nodes: &[NodeInfo],
    switches: &[Switch],
    bl: &Blacklist,
    now: Timestamp,
) -> NodesDoc {
    let docs: Vec<NodeDoc> = nodes
        .iter()
        .map(|n| NodeDoc {
            name: n.name.clone(),
            state: n.state.to_string(),
            usable: n.state.is_usable(),
            partitions: n.partitions.clone(),
            gpu_type: n.gpu_types().first().map(|t| t.to_string()),
            gpus: n.gpus_total(),
            gpus_free: if n.state.is_usable() {
                n.gpus_free()
            } else {
                0
            },
            switch: switches
                .iter()
                .find(|s| s.nodes.contains(&n.name))
                .map(|s| s.name.clone()),
            admin_reason: n.reason.clone(),
            banned: bl.active_ban(&n.name, now).map(|b| BanDoc {
                reason: b.reason.clone(),
                since: b.since,
                until: b.until,
                manual: b.manual,
                strikes: bl.strikes(&n.name, now),
            }),
        })
        .collect();
    NodesDoc {
        cluster: cluster.to_string(),
        nodes: docs,
        incidents: bl.incidents.clone(),
    }
}
