//! GPUs per partition, which partitions can hold a request, and in what order
//! to try them. Pure: built from the adapter's node and partition inventory.

use serde::Serialize;

use super::catalog::{Catalog, identify, vram_for_node};
use crate::model::{Prefer, Resources};
use crate::slurm::{NodeInfo, PartitionInfo};

/// One partition's GPUs, as `shepherd gpus` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionGpus {
    pub partition: String,
    pub up: bool,
    /// The GRES type of its GPUs (`a100`); `mixed` when nodes differ.
    pub gpu_type: Option<String>,
    /// The catalog's model name, when the VRAM is known.
    pub model: Option<String>,
    /// VRAM per GPU: one value when known, the range of candidates when the
    /// GPU name is ambiguous; `None` when unknown.
    pub vram_gb_min: Option<u32>,
    pub vram_gb_max: Option<u32>,
    pub gpus_per_node: u32,
    /// The most GPUs one usable node can give right now.
    pub largest_now: u32,
    /// Usable nodes with at least one free GPU.
    pub nodes_free: u32,
    /// Nodes not down, drained or banned.
    pub nodes_usable: u32,
    pub nodes_total: u32,
    pub gpus_free: u32,
    pub gpus_total: u32,
    pub max_time_minutes: Option<u64>,
    /// Slurm's PriorityTier: partitions above the usual tier usually preempt
    /// other people's jobs, and are only used when pinned.
    pub priority_tier: u32,
}

/// How much of a request a partition can start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// One node has enough free GPUs for the whole request.
    Full,
    /// Some GPUs are free, but no node has enough.
    Partial,
    None,
}

impl PartitionGpus {
    /// The partition as it would be once its down, drained or banned nodes
    /// are back: tells "not now" from "never".
    pub fn with_all_nodes_usable(&self) -> PartitionGpus {
        PartitionGpus {
            nodes_usable: self.nodes_total,
            ..self.clone()
        }
    }

    pub fn availability(&self, gpus: u32) -> Availability {
        if self.largest_now >= gpus.max(1) {
            Availability::Full
        } else if self.gpus_free > 0 {
            Availability::Partial
        } else {
            Availability::None
        }
    }
}

/// Summarises every partition that has nodes. `banned` nodes count as
/// unusable.
pub fn partition_gpus(
    partitions: &[PartitionInfo],
    nodes: &[NodeInfo],
    banned: &[String],
    catalog: &Catalog,
) -> Vec<PartitionGpus> {
    partitions
        .iter()
        .map(|p| {
            let members: Vec<&NodeInfo> =
                nodes.iter().filter(|n| p.nodes.contains(&n.name)).collect();
            let usable = |n: &NodeInfo| n.state.is_usable() && !banned.contains(&n.name);
            let mut types: Vec<String> = Vec::new();
            let (mut lo, mut hi, mut unknown) = (None::<u32>, None::<u32>, false);
            let mut models: Vec<String> = Vec::new();
            for n in members.iter().filter(|n| n.gpus_total() > 0) {
                for t in n.gpu_types() {
                    if !types.iter().any(|x| x == t) {
                        types.push(t.to_string());
                    }
                }
                let gres: Vec<&str> = n.gpu_types();
                let features: Vec<&str> = n.features.iter().map(String::as_str).collect();
                for g in vram_for_node(&gres, &features, catalog).gpus {
                    match g.matched.vram_range() {
                        Some(r) => {
                            lo = Some(lo.map_or(*r.start(), |l| l.min(*r.start())));
                            hi = Some(hi.map_or(*r.end(), |h| h.max(*r.end())));
                        }
                        None => unknown = true,
                    }
                    if let Some(m) = g.matched.known() {
                        let name = m.name.to_string();
                        if !models.contains(&name) {
                            models.push(name);
                        }
                    }
                }
            }
            if unknown {
                // One GPU of unknown memory makes the whole range unknown:
                // never guess.
                lo = None;
                hi = None;
            }
            PartitionGpus {
                partition: p.name.clone(),
                up: p.is_up(),
                gpu_type: match types.len() {
                    0 => None,
                    1 => types.pop(),
                    _ => Some("mixed".to_string()),
                },
                model: (models.len() == 1).then(|| models.remove(0)),
                vram_gb_min: lo,
                vram_gb_max: hi,
                gpus_per_node: members.iter().map(|n| n.gpus_total()).max().unwrap_or(0),
                largest_now: members
                    .iter()
                    .copied()
                    .filter(|n| usable(n))
                    .map(|n| n.gpus_free())
                    .max()
                    .unwrap_or(0),
                nodes_free: members
                    .iter()
                    .copied()
                    .filter(|n| usable(n))
                    .filter(|n| n.gpus_free() > 0)
                    .count() as u32,
                nodes_usable: members.iter().copied().filter(|n| usable(n)).count() as u32,
                nodes_total: members.len() as u32,
                gpus_free: members
                    .iter()
                    .copied()
                    .filter(|n| usable(n))
                    .map(|n| n.gpus_free())
                    .sum(),
                gpus_total: members.iter().map(|n| n.gpus_total()).sum(),
                max_time_minutes: p.max_time_minutes,
                priority_tier: p.priority_tier,
            }
        })
        .collect()
}

/// Why a partition cannot hold the request, or `None` when it can.
pub fn unfit(
    p: &PartitionGpus,
    r: &Resources,
    time_minutes: Option<u64>,
    catalog: &Catalog,
) -> Option<String> {
    let gpus = r.gpus.unwrap_or(0);
    if !p.up {
        return Some("the partition is not up".into());
    }
    if let (Some(want), Some(max)) = (time_minutes, p.max_time_minutes)
        && want > max
    {
        return Some(format!(
            "its time limit ({max} min) is shorter than the job's --time ({want} min)"
        ));
    }
    if gpus > 0 && p.gpus_total == 0 {
        return Some("it has no GPUs".into());
    }
    if gpus > p.gpus_per_node {
        return Some(format!("its nodes have at most {} GPUs", p.gpus_per_node));
    }
    if p.nodes_usable == 0 {
        return Some("all its nodes are down, drained or banned".into());
    }
    if let Some(want) = &r.gpu_type {
        let have = p.gpu_type.as_deref().unwrap_or("");
        let same_model = || {
            let a = identify(want, catalog).candidates();
            let b = identify(have, catalog).candidates();
            !a.is_empty() && a.iter().all(|m| b.iter().any(|n| n.key == m.key))
        };
        if !have.eq_ignore_ascii_case(want) && !same_model() {
            return Some(format!("its GPUs are {have}, not {want}"));
        }
    }
    if r.min_vram_gb.is_some() || r.max_vram_gb.is_some() {
        let (Some(lo), Some(hi)) = (p.vram_gb_min, p.vram_gb_max) else {
            return Some(format!(
                "the memory of its GPUs ({}) is unknown; add them to the GPU catalog",
                p.gpu_type.as_deref().unwrap_or("untyped")
            ));
        };
        if let Some(min) = r.min_vram_gb
            && lo < min
        {
            return Some(format!("its GPUs have {lo} GB, less than --min-vram {min}"));
        }
        if let Some(max) = r.max_vram_gb
            && hi > max
        {
            return Some(format!("its GPUs have {hi} GB, more than --max-vram {max}"));
        }
    }
    None
}

/// The partitions that can hold the request, best first: a node with enough
/// free GPUs beats partial capacity, which beats none; then the smallest
/// (`--prefer min`) or biggest (`max`) sufficient GPU; then the name.
pub fn choose<'a>(
    views: &'a [PartitionGpus],
    r: &Resources,
    time_minutes: Option<u64>,
    catalog: &Catalog,
) -> Vec<&'a PartitionGpus> {
    let gpus = r.gpus.unwrap_or(0);
    let mut fit: Vec<&PartitionGpus> = views
        .iter()
        .filter(|p| p.gpus_total > 0 && unfit(p, r, time_minutes, catalog).is_none())
        .collect();
    // A partition above the lowest tier among those that fit is a
    // high-priority one (it preempts others' jobs): never chosen unasked.
    if let Some(base) = fit.iter().map(|p| p.priority_tier).min() {
        fit.retain(|p| p.priority_tier == base);
    }
    fit.sort_by(|a, b| {
        let vram = match r.prefer {
            Prefer::Min => a.vram_gb_min.cmp(&b.vram_gb_min),
            Prefer::Max => b.vram_gb_max.cmp(&a.vram_gb_max),
        };
        a.availability(gpus)
            .cmp(&b.availability(gpus))
            .then(vram)
            .then(a.partition.cmp(&b.partition))
    });
    fit
}

/// Where a GPU job can go, as the inventory tells.
#[derive(Debug, PartialEq)]
pub enum Fit<'a> {
    /// These partitions, best first ([`choose`]); one has free GPUs now.
    Now(Vec<&'a PartitionGpus>),
    /// These, but none has a free GPU: Slurm's start estimates should
    /// order them ([`order_by_estimate`]).
    Queue(Vec<&'a PartitionGpus>),
    /// None now, but one would fit with its down, drained or banned nodes
    /// back: wait for them rather than fail the run.
    Later,
    /// No partition can ever hold it; why not, per partition.
    Never(String),
}

/// Which partitions can hold the request now, later or never.
pub fn fit<'a>(
    views: &'a [PartitionGpus],
    r: &Resources,
    time_minutes: Option<u64>,
    catalog: &Catalog,
) -> Fit<'a> {
    let chosen = choose(views, r, time_minutes, catalog);
    if let Some(best) = chosen.first() {
        return if best.availability(r.gpus.unwrap_or(1)) == Availability::None {
            Fit::Queue(chosen)
        } else {
            Fit::Now(chosen)
        };
    }
    let later = views.iter().any(|v| {
        v.gpus_total > 0 && unfit(&v.with_all_nodes_usable(), r, time_minutes, catalog).is_none()
    });
    if later {
        return Fit::Later;
    }
    let why: Vec<String> = views
        .iter()
        .filter(|v| v.gpus_total > 0)
        .filter_map(|v| unfit(v, r, time_minutes, catalog).map(|w| format!("{}: {w}", v.partition)))
        .collect();
    Fit::Never(why.join("; "))
}

/// When no qualifying partition has a free GPU, Slurm's own start estimates
/// (`sbatch --test-only`) order them: the soonest start first; partitions
/// without an estimate keep their order, after those with one.
pub fn order_by_estimate(
    chosen: Vec<&PartitionGpus>,
    estimate: impl Fn(&str) -> Option<jiff::Timestamp>,
) -> Vec<&PartitionGpus> {
    let mut keyed: Vec<(Option<jiff::Timestamp>, usize, &PartitionGpus)> = chosen
        .into_iter()
        .enumerate()
        .map(|(i, p)| (estimate(&p.partition), i, p))
        .collect();
    keyed.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    keyed.into_iter().map(|(_, _, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::sim::{SimCluster, SimSlurm};
    use crate::slurm::{ScriptSource, Slurm, SubmitRequest};

    fn views(sim: &SimSlurm, banned: &[&str]) -> Vec<PartitionGpus> {
        let banned: Vec<String> = banned.iter().map(|s| s.to_string()).collect();
        partition_gpus(
            &sim.partitions().unwrap(),
            &sim.nodes().unwrap(),
            &banned,
            &Catalog::builtin(),
        )
    }

    fn req(gpus: u32, min: Option<u32>) -> Resources {
        Resources {
            gpus: Some(gpus),
            min_vram_gb: min,
            ..Resources::default()
        }
    }

    /// Runs a job on each node holding that many of its a6000 GPUs.
    fn take_gpus(sim: &SimSlurm, jobs: &[(&str, u32)]) {
        for (node, n) in jobs {
            sim.submit(&SubmitRequest {
                script: ScriptSource::Text("#!/bin/bash\n".into()),
                args: vec![
                    "-p".into(),
                    "a6000".into(),
                    "-w".into(),
                    node.to_string(),
                    format!("--gres=gpu:a6000:{n}"),
                ],
                env: None,
            })
            .unwrap();
        }
        sim.step();
    }

    fn names(v: Vec<&PartitionGpus>) -> Vec<String> {
        v.into_iter().map(|p| p.partition.clone()).collect()
    }

    #[test]
    fn the_test_clusters_partitions() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let v = views(&sim, &[]);
        let p = |n: &str| v.iter().find(|p| p.partition == n).unwrap().clone();
        let a100 = p("a100");
        assert_eq!(
            (a100.gpu_type.as_deref(), a100.vram_gb_min, a100.vram_gb_max),
            (Some("a100"), Some(80), Some(80))
        );
        assert_eq!(
            (
                a100.gpus_per_node,
                a100.gpus_total,
                a100.gpus_free,
                a100.largest_now
            ),
            (4, 8, 8, 4)
        );
        assert_eq!(p("a6000").vram_gb_min, Some(48));
        assert_eq!(p("rtx4090").vram_gb_max, Some(24));
        assert!(!p("offline").up);
        assert_eq!(p("cpu").gpus_total, 0);
        assert_eq!(p("urgent").gpu_type.as_deref(), Some("mixed"));
    }

    #[test]
    fn vram_selects_and_availability_orders() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let cat = Catalog::builtin();
        let v = views(&sim, &[]);
        // >= 40 GB: never rtx4090; the smallest sufficient first.
        // The high-priority (preempting) partition is never chosen unasked.
        assert_eq!(
            names(choose(&v, &req(4, Some(40)), None, &cat)),
            ["a6000", "a100"]
        );
        let mut max = req(4, Some(40));
        max.prefer = Prefer::Max;
        assert_eq!(names(choose(&v, &max, None, &cat))[0], "a100");
        // 8 GPUs per node: only the a6000 nodes have that many.
        assert_eq!(names(choose(&v, &req(8, None), None, &cat)), ["a6000"]);
        assert!(choose(&v, &req(9, None), None, &cat).is_empty());
        let offline = v.iter().find(|p| p.partition == "offline").unwrap();
        assert_eq!(
            unfit(offline, &req(1, None), None, &cat).unwrap(),
            "the partition is not up"
        );

        // Fill a6000-1 and take 6 GPUs of a6000-2: a6000 can no longer start
        // 4 GPUs on one node, a100 can.
        take_gpus(&sim, &[("a6000-1", 8), ("a6000-2", 6)]);
        let v = views(&sim, &[]);
        let a6000 = v.iter().find(|p| p.partition == "a6000").unwrap();
        assert_eq!((a6000.gpus_free, a6000.largest_now), (2, 2));
        assert_eq!(a6000.availability(4), Availability::Partial);
        assert_eq!(
            names(choose(&v, &req(4, Some(40)), None, &cat)),
            ["a100", "a6000"]
        );
        // Banned nodes do not count.
        let v = views(&sim, &["a100-1", "a100-2"]);
        let a100 = v.iter().find(|p| p.partition == "a100").unwrap();
        assert_eq!(
            unfit(a100, &req(1, None), None, &cat).unwrap(),
            "all its nodes are down, drained or banned"
        );
    }

    #[test]
    fn a_job_fits_now_in_the_queue_later_or_never() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let cat = Catalog::builtin();
        let v = views(&sim, &[]);
        let Fit::Now(now) = fit(&v, &req(4, Some(40)), None, &cat) else {
            panic!("free GPUs fit now");
        };
        assert_eq!(names(now), ["a6000", "a100"]);
        // No node has 9 GPUs: never, with every partition's reason.
        match fit(&v, &req(9, None), None, &cat) {
            Fit::Never(why) => assert!(why.contains("a6000: "), "{why}"),
            other => panic!("{other:?}"),
        }
        // Every node banned: 8 GPUs fit later, when they are back.
        let all: Vec<String> = sim.nodes().unwrap().into_iter().map(|n| n.name).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let v = views(&sim, &all);
        assert_eq!(fit(&v, &req(8, None), None, &cat), Fit::Later);
        // Every a6000 GPU busy: it fits, in the queue.
        take_gpus(&sim, &[("a6000-1", 8), ("a6000-2", 8)]);
        let v = views(&sim, &[]);
        let Fit::Queue(queued) = fit(&v, &req(8, None), None, &cat) else {
            panic!("busy GPUs queue");
        };
        assert_eq!(names(queued), ["a6000"]);
    }

    #[test]
    fn estimates_order_partitions_when_nothing_is_free() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let v = views(&sim, &[]);
        let pick: Vec<&PartitionGpus> = ["a6000", "a100", "rtx4090"]
            .iter()
            .map(|n| v.iter().find(|p| p.partition == *n).unwrap())
            .collect();
        let t = |m: i64| Some(jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(m));
        let ordered = order_by_estimate(pick, |p| match p {
            "a6000" => t(600),
            "a100" => t(5),
            _ => None,
        });
        assert_eq!(names(ordered), ["a100", "a6000", "rtx4090"]);
    }

    #[test]
    fn a_partition_whose_time_limit_is_too_short_is_skipped() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let cat = Catalog::builtin();
        let mut v = views(&sim, &[]);
        v.iter_mut()
            .find(|p| p.partition == "a100")
            .unwrap()
            .max_time_minutes = Some(60);
        assert_eq!(
            names(choose(&v, &req(1, Some(40)), Some(120), &cat)),
            ["a6000"]
        );
        assert_eq!(
            names(choose(&v, &req(1, Some(40)), Some(60), &cat)),
            ["a6000", "a100"]
        );
        let a100 = v.iter().find(|p| p.partition == "a100").unwrap();
        let why = unfit(a100, &req(1, None), Some(120), &cat).unwrap();
        assert!(why.contains("60 min"), "{why}");
    }

    #[test]
    fn gpu_type_and_unknown_memory() {
        let sim = SimSlurm::new(SimCluster::test_cluster());
        let cat = Catalog::builtin();
        let v = views(&sim, &[]);
        let r = Resources {
            gpus: Some(1),
            gpu_type: Some("rtx4090".into()),
            ..Resources::default()
        };
        assert_eq!(names(choose(&v, &r, None, &cat)), ["rtx4090"]);
        let mut weird = v.iter().find(|p| p.partition == "a100").unwrap().clone();
        weird.vram_gb_min = None;
        weird.vram_gb_max = None;
        let why = unfit(&weird, &req(1, Some(40)), None, &cat).unwrap();
        assert!(why.contains("unknown"), "{why}");
        assert!(
            unfit(&weird, &req(1, None), None, &cat).is_none(),
            "no VRAM asked: fine"
        );
    }
}
