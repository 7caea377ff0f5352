//! What the daemon knows of the cluster, read from Slurm once or at most
//! once a minute, not once per run: its name (keys the blacklist), its
//! nodes and partitions (placement, exclude lists) and its leaf switches
//! (correlated failures).

use std::cell::RefCell;

use jiff::Timestamp;

use crate::policy::strikes::SwitchGroup;
use crate::slurm::{NodeInfo, PartitionInfo, Slurm};

/// How long the node names read from Slurm are trusted.
pub(super) const INVENTORY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) struct ClusterView<'a, S: Slurm + ?Sized> {
    slurm: &'a S,
    /// Slurm's cluster name, learnt once.
    cluster: RefCell<Option<String>>,
    /// Node names the cluster knows, and when they were read: only these may
    /// go into `--exclude`.
    known: RefCell<Option<(Timestamp, Vec<NodeInfo>)>>,
    /// The cluster's partitions, read when a run needs placing.
    partitions: RefCell<Option<(Timestamp, Vec<PartitionInfo>)>>,
    /// Leaf switches, for correlated failures.
    topology: RefCell<Option<Vec<SwitchGroup>>>,
    /// Node groups of the configuration file, for clusters without a
    /// topology.
    pub(super) groups: Vec<SwitchGroup>,
}

impl<'a, S: Slurm + ?Sized> ClusterView<'a, S> {
    pub(super) fn new(slurm: &'a S) -> Self {
        ClusterView {
            slurm,
            cluster: RefCell::new(None),
            known: RefCell::new(None),
            partitions: RefCell::new(None),
            topology: RefCell::new(None),
            groups: Vec::new(),
        }
    }

    /// The name, if it was learnt already (no Slurm call).
    pub(super) fn name_known(&self) -> Option<String> {
        self.cluster.borrow().clone()
    }

    /// The node inventory; `fresh` forces a new read (GPU availability
    /// changes by the second; node names rarely).
    pub(super) fn inventory(&self, now: Timestamp, fresh: bool) -> Option<Vec<NodeInfo>> {
        let mut k = self.known.borrow_mut();
        let recent = k
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at).unsigned_abs() < INVENTORY_TTL);
        if fresh || !recent {
            *k = Some((now, self.slurm.nodes().ok()?));
        }
        k.as_ref().map(|(_, n)| n.clone())
    }

    pub(super) fn known_nodes(&self, now: Timestamp) -> Option<Vec<String>> {
        Some(
            self.inventory(now, false)?
                .into_iter()
                .map(|n| n.name)
                .collect(),
        )
    }

    pub(super) fn partitions(&self, now: Timestamp) -> Option<Vec<PartitionInfo>> {
        let mut p = self.partitions.borrow_mut();
        let fresh = p
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at).unsigned_abs() < INVENTORY_TTL);
        if !fresh {
            *p = Some((now, self.slurm.partitions().ok()?));
        }
        p.as_ref().map(|(_, v)| v.clone())
    }

    pub(super) fn name(&self) -> Option<String> {
        let mut c = self.cluster.borrow_mut();
        if c.is_none() {
            *c = self.slurm.cluster().ok().map(|i| i.name);
        }
        c.clone()
    }

    /// Leaf switches and their nodes, read once per daemon (the topology
    /// changes with hardware, not by the minute). Empty without a topology
    /// plugin.
    pub(super) fn switch_groups(&self) -> Vec<SwitchGroup> {
        let mut t = self.topology.borrow_mut();
        if t.is_none() {
            *t = self.slurm.topology().ok().map(|switches| {
                switches
                    .into_iter()
                    .filter(|s| !s.nodes.is_empty())
                    .map(|s| (s.name, s.nodes))
                    .collect()
            });
        }
        // Without a topology plugin, the configured node groups stand in.
        match t.clone().unwrap_or_default() {
            switches if switches.is_empty() => self.groups.clone(),
            switches => switches,
        }
    }
}
