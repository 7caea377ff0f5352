//! The circuit breaker on probe blame: a GPU probe that blames node after
//! node in exactly the same words, with nothing else saying those nodes are
//! bad, is more likely a wrong probe (a driver that answers differently, a
//! layout the parser misreads) than a bad rack. After the second such node
//! the breaker trips: the probe's blame stops banning, the bans it made are
//! lifted, and runs go on without that probe until the breaker closes again.
//!
//! Pure data and rules, kept in the cluster's blacklist (so every run and,
//! with a shared blacklist, every member of the lab sees the same breaker);
//! the daemon carries out what [`Breakers::judge`] decides.
//!
//! Corroborated blame is never held back: when Slurm itself marks the node
//! down, drained or not responding, or the failure came with a hardware
//! fault signature, the ban goes ahead as before (and the switch-incident
//! rule of [`super::blacklist`] still applies).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The breaker's thresholds, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRules {
    /// Identical blames closer together than this count together.
    pub window: Duration,
    /// Distinct nodes blamed identically within `window` that trip it.
    pub nodes: usize,
    /// How long a tripped breaker stays open (the probe's blame ignored).
    pub hold: Duration,
}

impl Default for BreakerRules {
    fn default() -> Self {
        BreakerRules {
            window: Duration::from_secs(3600),
            nodes: 2,
            hold: Duration::from_secs(24 * 3600),
        }
    }
}

/// One probe blame remembered for the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub key: String,
    pub node: String,
    pub time: Timestamp,
}

/// A tripped breaker: the probe whose blame is ignored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tripped {
    /// `probe: detail` with the node's name taken out.
    pub key: String,
    /// The probe's name (`health`, `visibility`, …): runs skip it.
    pub probe: String,
    pub since: Timestamp,
    pub until: Timestamp,
    /// The nodes it blamed identically.
    pub nodes: Vec<String>,
}

impl Tripped {
    pub fn active(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// The breakers of one cluster (a field of its blacklist file).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Breakers {
    #[serde(default)]
    pub recent: Vec<Mark>,
    #[serde(default)]
    pub tripped: Vec<Tripped>,
}

/// A node blamed by a probe of the wrapper.
#[derive(Debug, Clone, Copy)]
pub struct ProbeBlame<'a> {
    pub probe: &'a str,
    pub node: &'a str,
    /// What the probe saw (its detail), as recorded.
    pub detail: &'a str,
    /// Something other than the probe says the node is bad: Slurm's node
    /// state, a hardware fault signature.
    pub corroborated: bool,
    pub time: Timestamp,
}

/// What to do with a probe's blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Strike the node as usual.
    Ban,
    /// The probe's breaker is open: no strike; the run should skip the probe.
    Held(Tripped),
    /// This blame tripped the breaker: no strike, and lift the bans the
    /// probe made on `lift` (the other nodes it blamed identically).
    Tripped { tripped: Tripped, lift: Vec<String> },
}

/// The breaker's key of a blame: the probe and its words, with the node's
/// own name taken out so that the same finding on two nodes reads the same.
pub fn key(probe: &str, detail: &str, node: &str) -> String {
    let detail = if node.is_empty() {
        detail.to_string()
    } else {
        detail.replace(node, "NODE")
    };
    format!("{probe}: {}", detail.trim())
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Breakers {
    /// The open breaker for `probe`, if any.
    pub fn open_for(&self, probe: &str, now: Timestamp) -> Option<&Tripped> {
        self.tripped
            .iter()
            .find(|t| t.probe == probe && t.active(now))
    }

    /// Probes whose breaker is open: runs skip them.
    pub fn skipped_probes(&self, now: Timestamp) -> Vec<String> {
        let mut p: Vec<String> = self
            .tripped
            .iter()
            .filter(|t| t.active(now))
            .map(|t| t.probe.clone())
            .collect();
        p.sort();
        p.dedup();
        p
    }

    /// Judges one probe blame, remembering it.
    pub fn judge(&mut self, blame: ProbeBlame<'_>, rules: &BreakerRules) -> Judgement {
        let now = blame.time;
        self.tripped.retain(|t| t.active(now));
        self.recent
            .retain(|m| now.duration_since(m.time).unsigned_abs() < rules.window);
        if let Some(open) = self.open_for(blame.probe, now) {
            return Judgement::Held(open.clone());
        }
        if blame.corroborated {
            return Judgement::Ban;
        }
        let key = key(blame.probe, blame.detail, blame.node);
        if !self
            .recent
            .iter()
            .any(|m| m.key == key && m.node == blame.node)
        {
            self.recent.push(Mark {
                key: key.clone(),
                node: blame.node.to_string(),
                time: now,
            });
        }
        let mut nodes: Vec<String> = self
            .recent
            .iter()
            .filter(|m| m.key == key)
            .map(|m| m.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        if nodes.len() < rules.nodes.max(1) {
            return Judgement::Ban;
        }
        self.recent.retain(|m| m.key != key);
        let tripped = Tripped {
            key,
            probe: blame.probe.to_string(),
            since: now,
            until: add(now, rules.hold),
            nodes: nodes.clone(),
        };
        self.tripped.push(tripped.clone());
        let lift = nodes.into_iter().filter(|n| n != blame.node).collect();
        Judgement::Tripped { tripped, lift }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + secs)
    }

    fn blame<'a>(node: &'a str, detail: &'a str, secs: i64) -> ProbeBlame<'a> {
        ProbeBlame {
            probe: "health",
            node,
            detail,
            corroborated: false,
            time: t(secs),
        }
    }

    const ODD: &str = "nvidia-smi -q printed no GPU section";

    #[test]
    fn the_second_identical_node_trips_it_and_lifts_the_first_ban() {
        let rules = BreakerRules::default();
        let mut b = Breakers::default();
        assert_eq!(b.judge(blame("a100-1", ODD, 0), &rules), Judgement::Ban);
        let Judgement::Tripped { tripped, lift } = b.judge(blame("a100-2", ODD, 60), &rules) else {
            panic!("tripped");
        };
        assert_eq!(lift, ["a100-1"]);
        assert_eq!(tripped.nodes, ["a100-1", "a100-2"]);
        assert_eq!(tripped.probe, "health");
        // Open: every further blame of the probe is held, on any node.
        assert!(matches!(
            b.judge(blame("a100-3", "something else entirely", 120), &rules),
            Judgement::Held(_)
        ));
        assert_eq!(b.skipped_probes(t(120)), ["health"]);
        // It closes after its hold, and the probe bans again.
        let later = 24 * 3600 + 61;
        assert_eq!(b.skipped_probes(t(later)), Vec::<String>::new());
        assert_eq!(b.judge(blame("a100-3", ODD, later), &rules), Judgement::Ban);
    }

    #[test]
    fn the_node_name_in_the_words_does_not_make_them_differ() {
        let rules = BreakerRules::default();
        let mut b = Breakers::default();
        b.judge(blame("a100-1", "no answer from a100-1's driver", 0), &rules);
        assert!(matches!(
            b.judge(blame("a100-2", "no answer from a100-2's driver", 1), &rules),
            Judgement::Tripped { .. }
        ));
    }

    #[test]
    fn different_words_far_apart_or_corroborated_blames_ban() {
        let rules = BreakerRules::default();
        let mut b = Breakers::default();
        assert_eq!(
            b.judge(blame("a100-1", "GPU 2 missing", 0), &rules),
            Judgement::Ban
        );
        assert_eq!(
            b.judge(blame("a100-2", "GPU 0 missing", 1), &rules),
            Judgement::Ban
        );
        // The same words, but more than the window apart.
        assert_eq!(b.judge(blame("a100-3", ODD, 10), &rules), Judgement::Ban);
        assert_eq!(b.judge(blame("a100-4", ODD, 3700), &rules), Judgement::Ban);
        // The same node twice is one node.
        assert_eq!(b.judge(blame("a100-4", ODD, 3701), &rules), Judgement::Ban);
        // Slurm agrees the node is bad: the ban goes ahead.
        let mut c = blame("a100-5", ODD, 3702);
        c.corroborated = true;
        assert_eq!(b.judge(c, &rules), Judgement::Ban);
        assert!(b.tripped.is_empty());
    }

    #[test]
    fn thresholds_are_data() {
        let rules = BreakerRules {
            nodes: 3,
            ..BreakerRules::default()
        };
        let mut b = Breakers::default();
        assert_eq!(b.judge(blame("n1", ODD, 0), &rules), Judgement::Ban);
        assert_eq!(b.judge(blame("n2", ODD, 1), &rules), Judgement::Ban);
        let Judgement::Tripped { lift, .. } = b.judge(blame("n3", ODD, 2), &rules) else {
            panic!("third node trips it");
        };
        assert_eq!(lift, ["n1", "n2"]);
    }

    proptest! {
        /// However identical blames arrive within one window, no more than
        /// `nodes - 1` distinct nodes stay banned for them: the blame that
        /// would make it `nodes` trips the breaker and lifts the others.
        #[test]
        fn identical_blame_bans_at_most_one_node(
            seq in proptest::collection::vec((0usize..6, 0usize..2, 0i64..100), 1..30)
        ) {
            let rules = BreakerRules::default();
            let mut b = Breakers::default();
            let details = [ODD, "GPU 1 missing"];
            let mut banned: std::collections::BTreeMap<&str, std::collections::BTreeSet<usize>> =
                Default::default();
            let mut time = 0;
            for (node, d, dt) in seq {
                time += dt;
                let name = ["n0", "n1", "n2", "n3", "n4", "n5"][node];
                match b.judge(blame(name, details[d], time), &rules) {
                    Judgement::Ban => {
                        banned.entry(details[d]).or_default().insert(node);
                    }
                    Judgement::Tripped { lift, .. } => {
                        let set = banned.entry(details[d]).or_default();
                        for l in lift {
                            set.remove(&l[1..].parse::<usize>().unwrap());
                        }
                        prop_assert!(!set.contains(&node));
                    }
                    Judgement::Held(_) => {}
                }
                for set in banned.values() {
                    prop_assert!(set.len() < rules.nodes, "{banned:?}");
                }
            }
        }
    }
}
