//! The node blacklist as data and pure rules: strikes, bans with a TTL that
//! grows for repeat offenders, decay after a clean period, manual bans, and
//! the exclude list handed to Slurm.
//!
//! The rules, each tested below (and by property tests):
//! - A strike bans the node for `base × 2^(strikes-1)`, capped at
//!   [`MAX_TTL_FACTOR`] × base. A ban never shortens on a new strike.
//! - One strike decays per [`CLEAN_PERIOD`] without a new one.
//! - A manual ban without a TTL is permanent until unbanned; a manual unban
//!   always wins and forgets the strikes.
//! - Only names the cluster knows reach `--exclude`, at most
//!   [`EXCLUDE_CAP`] of them, manual bans and repeat offenders first.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

pub const BLACKLIST_VERSION: u32 = 1;

/// A repeat offender's TTL grows to at most this multiple of the base.
pub const MAX_TTL_FACTOR: u32 = 64;
/// One strike is forgiven per this long without a new one.
pub const CLEAN_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Slurm's `--exclude` is capped: a huge list slows scheduling and may
/// exclude every node of a partition.
pub const EXCLUDE_CAP: usize = 32;
/// Strikes remembered per node (for `shepherd nodes` and the journal).
const HISTORY: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strike {
    pub time: Timestamp,
    /// Which run and job gave the evidence (empty for manual bans).
    pub run_id: String,
    pub job_id: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub reason: String,
    pub since: Timestamp,
    /// `None`: permanent (a manual ban without a TTL).
    pub until: Option<Timestamp>,
    pub manual: bool,
}

impl Ban {
    pub fn active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeRecord {
    pub strikes: u32,
    pub last_strike_at: Option<Timestamp>,
    pub ban: Option<Ban>,
    pub history: Vec<Strike>,
    /// Failures that could be the node's or the workload's (an ambiguous
    /// signature). Alone they ban nothing; from different runs they do.
    #[serde(default)]
    pub suspicions: Vec<Strike>,
}

/// Suspicions older than this are forgotten.
pub const SUSPICION_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Nodes under one leaf switch failing together: one incident, not several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub time: Timestamp,
    pub switch: String,
    /// The nodes whose failures made the incident.
    pub failed: Vec<String>,
    /// Every node under the switch, all banned for the incident.
    pub banned: Vec<String>,
    pub until: Timestamp,
}

/// Failures of nodes under one switch this close together are one incident.
pub const INCIDENT_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Incidents remembered (for `shepherd nodes`).
const INCIDENTS: usize = 20;

/// `STATE/clusters/CLUSTER/blacklist.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blacklist {
    pub version: u32,
    pub cluster: String,
    pub nodes: BTreeMap<String, NodeRecord>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// The circuit breakers on probe blame ([`super::breaker`]).
    #[serde(default)]
    pub breakers: super::breaker::Breakers,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The TTL of a ban after `strikes` strikes.
pub fn ttl(base: Duration, strikes: u32) -> Duration {
    let factor = 2u32
        .saturating_pow(strikes.saturating_sub(1))
        .min(MAX_TTL_FACTOR);
    base.saturating_mul(factor)
}

impl Blacklist {
    pub fn new(cluster: &str) -> Blacklist {
        Blacklist {
            version: BLACKLIST_VERSION,
            cluster: cluster.to_string(),
            nodes: BTreeMap::new(),
            incidents: Vec::new(),
            breakers: Default::default(),
        }
    }

    /// Strikes left after decay, as of `now`.
    pub fn strikes(&self, node: &str, now: Timestamp) -> u32 {
        let Some(r) = self.nodes.get(node) else {
            return 0;
        };
        let Some(last) = r.last_strike_at else {
            return r.strikes;
        };
        let clean = now.duration_since(last).as_secs().max(0) as u64;
        let forgiven = clean / CLEAN_PERIOD.as_secs();
        r.strikes
            .saturating_sub(u32::try_from(forgiven).unwrap_or(u32::MAX))
    }

    /// Records evidence against a node and bans it. Returns the ban now in
    /// force.
    pub fn strike(&mut self, node: &str, evidence: Strike, base: Duration) -> Ban {
        let now = evidence.time;
        let strikes = self.strikes(node, now) + 1;
        let r = self.nodes.entry(node.to_string()).or_default();
        r.strikes = strikes;
        r.last_strike_at = Some(now);
        let until = add(now, ttl(base, strikes));
        let ban = match r.ban.take() {
            // A permanent or longer ban stays as it is.
            Some(old) if old.active(now) && old.until.is_none_or(|u| u >= until) => old,
            _ => Ban {
                reason: evidence.reason.clone(),
                since: now,
                until: Some(until),
                manual: false,
            },
        };
        r.ban = Some(ban.clone());
        r.history.push(evidence);
        if r.history.len() > HISTORY {
            r.history.remove(0);
        }
        ban
    }

    /// Takes back an automatic ban a tripped breaker showed to be wrong:
    /// the ban goes, with the strike that made it. Manual bans stay.
    /// Only a ban whose reason `made_by` recognises is lifted: on a shared
    /// blacklist the node may since have been banned for something else.
    pub fn lift(&mut self, node: &str, made_by: impl Fn(&str) -> bool) -> bool {
        let Some(r) = self.nodes.get_mut(node) else {
            return false;
        };
        if r.ban
            .as_ref()
            .is_none_or(|b| b.manual || !made_by(&b.reason))
        {
            return false;
        }
        r.ban = None;
        r.strikes = r.strikes.saturating_sub(1);
        r.history.pop();
        true
    }

    /// Records a failure that may be the node's. When failures of at least
    /// two different runs point at the node within [`SUSPICION_WINDOW`], it
    /// is a bad node even though each run alone could not tell: the node gets
    /// a strike, and the ban is returned.
    ///
    /// Suspicions only add up for the same kind of failure (`evidence.reason`
    /// names the signature): two runs with unrelated bugs prove nothing.
    pub fn suspect(&mut self, node: &str, evidence: Strike, base: Duration) -> Option<Ban> {
        let now = evidence.time;
        let r = self.nodes.entry(node.to_string()).or_default();
        r.suspicions
            .retain(|s| now.duration_since(s.time).unsigned_abs() < SUSPICION_WINDOW);
        r.suspicions.push(evidence.clone());
        let mut runs: Vec<&str> = r
            .suspicions
            .iter()
            .filter(|s| s.reason == evidence.reason)
            .map(|s| s.run_id.as_str())
            .collect();
        runs.sort_unstable();
        runs.dedup();
        if runs.len() < 2 {
            return None;
        }
        let runs = runs.join(", ");
        r.suspicions.retain(|s| s.reason != evidence.reason);
        let evidence = Strike {
            reason: format!("failures of different runs ({runs}): {}", evidence.reason),
            ..evidence
        };
        Some(self.strike(node, evidence, base))
    }

    /// After a strike on `node`: when another node under the same leaf
    /// switch was struck within [`INCIDENT_WINDOW`], the switch is the likely
    /// cause (power, cooling, network): every node under it is banned for the
    /// base TTL, and the incident recorded. `groups` are the leaf switches
    /// (or user-defined groups) as (name, nodes).
    pub fn correlate(
        &mut self,
        node: &str,
        groups: &[(String, Vec<String>)],
        now: Timestamp,
        base: Duration,
    ) -> Option<Incident> {
        let (switch, members) = groups
            .iter()
            .find(|(_, nodes)| nodes.iter().any(|n| n == node))?;
        let recent = |r: &NodeRecord| {
            r.last_strike_at
                .is_some_and(|t| now.duration_since(t).unsigned_abs() <= INCIDENT_WINDOW)
        };
        let failed: Vec<String> = members
            .iter()
            .filter(|m| self.nodes.get(*m).is_some_and(recent))
            .cloned()
            .collect();
        if failed.len() < 2 {
            return None;
        }
        // One incident per switch and window.
        if self.incidents.iter().any(|i| {
            i.switch == *switch && now.duration_since(i.time).unsigned_abs() <= INCIDENT_WINDOW
        }) {
            return None;
        }
        let until = add(now, base);
        let reason = format!(
            "switch {switch}: {} failed within minutes",
            failed.join(", ")
        );
        for m in members {
            let r = self.nodes.entry(m.clone()).or_default();
            let longer = r
                .ban
                .as_ref()
                .is_some_and(|b| b.active(now) && b.until.is_none_or(|u| u >= until));
            if !longer {
                r.ban = Some(Ban {
                    reason: reason.clone(),
                    since: now,
                    until: Some(until),
                    manual: false,
                });
            }
        }
        let incident = Incident {
            time: now,
            switch: switch.clone(),
            failed,
            banned: members.clone(),
            until,
        };
        self.incidents.push(incident.clone());
        if self.incidents.len() > INCIDENTS {
            self.incidents.remove(0);
        }
        Some(incident)
    }

    /// A ban by hand: permanent without a TTL.
    pub fn ban(&mut self, node: &str, reason: &str, ttl: Option<Duration>, now: Timestamp) {
        let r = self.nodes.entry(node.to_string()).or_default();
        r.ban = Some(Ban {
            reason: reason.to_string(),
            since: now,
            until: ttl.map(|t| add(now, t)),
            manual: true,
        });
        r.history.push(Strike {
            time: now,
            run_id: String::new(),
            job_id: None,
            reason: format!("banned by hand: {reason}"),
        });
        if r.history.len() > HISTORY {
            r.history.remove(0);
        }
    }

    /// Lifts a ban and forgets the strikes: the user vouches for the node.
    /// Returns whether the node was banned.
    pub fn unban(&mut self, node: &str) -> bool {
        match self.nodes.get_mut(node) {
            Some(r) => {
                let was = r.ban.is_some();
                r.ban = None;
                r.strikes = 0;
                r.last_strike_at = None;
                was
            }
            None => false,
        }
    }

    /// The ban in force on a node, if any.
    pub fn active_ban(&self, node: &str, now: Timestamp) -> Option<&Ban> {
        self.nodes.get(node)?.ban.as_ref().filter(|b| b.active(now))
    }

    /// Nodes to pass to `--exclude`: banned now, known to the cluster, capped,
    /// manual bans first, then by strikes, then the newest ban.
    pub fn exclude_list(&self, known: &[String], now: Timestamp) -> Vec<String> {
        let mut banned: Vec<(&String, &Ban, u32)> = self
            .nodes
            .iter()
            .filter(|(n, _)| known.contains(n))
            .filter_map(|(n, r)| {
                let b = r.ban.as_ref().filter(|b| b.active(now))?;
                Some((n, b, self.strikes(n, now)))
            })
            .collect();
        banned.sort_by(|a, b| {
            b.1.manual
                .cmp(&a.1.manual)
                .then(b.2.cmp(&a.2))
                .then(b.1.since.cmp(&a.1.since))
                .then(a.0.cmp(b.0))
        });
        banned
            .into_iter()
            .take(EXCLUDE_CAP)
            .map(|(n, _, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifted_ban_takes_its_strike_with_it_but_manual_bans_stay() {
        let now = Timestamp::UNIX_EPOCH;
        let mut bl = Blacklist::new("c");
        let strike = |reason: &str| Strike {
            time: now,
            run_id: "r".into(),
            job_id: Some(1),
            reason: reason.into(),
        };
        bl.strike("n1", strike("probe"), Duration::from_secs(3600));
        assert!(!bl.lift("n1", |r| r == "ecc"), "made by something else");
        assert!(bl.lift("n1", |r| r == "probe"));
        assert_eq!(bl.strikes("n1", now), 0);
        assert!(bl.nodes["n1"].ban.is_none() && bl.nodes["n1"].history.is_empty());
        assert!(!bl.lift("n1", |_| true), "nothing left to lift");
        bl.ban("n2", "by hand", None, now);
        assert!(!bl.lift("n2", |_| true));
        assert!(bl.nodes["n2"].ban.is_some());
    }
    use proptest::prelude::*;

    const BASE: Duration = Duration::from_secs(3600);

    fn t(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
    }

    fn strike_at(secs: i64) -> Strike {
        Strike {
            time: t(secs),
            run_id: "r".into(),
            job_id: Some(1),
            reason: "GPU probe failed".into(),
        }
    }

    #[test]
    fn ttl_doubles_per_strike_and_is_capped() {
        let hours: Vec<u64> = (1..=9).map(|s| ttl(BASE, s).as_secs() / 3600).collect();
        assert_eq!(hours, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
    }

    #[test]
    fn repeat_offenders_are_banned_longer_and_strikes_decay() {
        let mut bl = Blacklist::new("c");
        let b1 = bl.strike("n1", strike_at(0), BASE);
        assert_eq!(b1.until, Some(t(3600)));
        assert!(bl.active_ban("n1", t(3599)).is_some());
        assert!(bl.active_ban("n1", t(3600)).is_none(), "expired");
        let b2 = bl.strike("n1", strike_at(7200), BASE);
        assert_eq!(
            b2.until,
            Some(t(7200 + 7200)),
            "second strike: twice as long"
        );
        assert_eq!(bl.strikes("n1", t(7200)), 2);
        // Two clean days forgive both strikes.
        assert_eq!(bl.strikes("n1", t(7200 + 2 * 86400)), 0);
        let b3 = bl.strike("n1", strike_at(7200 + 2 * 86400), BASE);
        assert_eq!(b3.until, Some(t(7200 + 2 * 86400 + 3600)));
    }

    #[test]
    fn manual_bans_and_unbans() {
        let mut bl = Blacklist::new("c");
        bl.ban("n1", "fan noise", None, t(0));
        assert!(bl.active_ban("n1", t(1_000_000_000)).is_some(), "permanent");
        bl.strike("n1", strike_at(10), BASE);
        assert_eq!(
            bl.active_ban("n1", t(20)).unwrap().until,
            None,
            "a strike never shortens"
        );
        assert!(bl.unban("n1"));
        assert!(bl.active_ban("n1", t(30)).is_none());
        assert_eq!(bl.strikes("n1", t(30)), 0);
        assert!(!bl.unban("never-seen"));
        bl.ban("n2", "maintenance", Some(Duration::from_secs(60)), t(0));
        assert!(bl.active_ban("n2", t(59)).is_some());
        assert!(bl.active_ban("n2", t(60)).is_none());
    }

    #[test]
    fn a_node_failing_different_runs_is_banned() {
        let mut bl = Blacklist::new("c");
        let ev = |run: &str, secs| Strike {
            run_id: run.into(),
            ..strike_at(secs)
        };
        assert!(bl.suspect("n", ev("r1", 0), BASE).is_none());
        assert!(
            bl.suspect("n", ev("r1", 10), BASE).is_none(),
            "the same run twice says nothing"
        );
        let other = Strike {
            reason: "another signature".into(),
            ..ev("r3", 15)
        };
        assert!(
            bl.suspect("n", other, BASE).is_none(),
            "different failures do not add up"
        );
        let ban = bl
            .suspect("n", ev("r2", 20), BASE)
            .expect("two runs: banned");
        assert!(ban.reason.contains("r1, r2"), "{}", ban.reason);
        assert_eq!(bl.strikes("n", t(20)), 1);
        // Old suspicions fade.
        assert!(bl.suspect("m", ev("r1", 0), BASE).is_none());
        assert!(bl.suspect("m", ev("r2", 2 * 86400), BASE).is_none());
    }

    #[test]
    fn nodes_failing_together_under_one_switch_ban_the_switch() {
        let mut bl = Blacklist::new("c");
        let groups = vec![
            (
                "leaf1".to_string(),
                vec!["a".to_string(), "b".to_string(), "c".to_string()],
            ),
            ("leaf2".to_string(), vec!["d".to_string()]),
        ];
        bl.strike("a", strike_at(0), BASE);
        assert!(
            bl.correlate("a", &groups, t(0), BASE).is_none(),
            "one node is not an incident"
        );
        bl.strike("d", strike_at(60), BASE);
        assert!(
            bl.correlate("d", &groups, t(60), BASE).is_none(),
            "another switch"
        );
        bl.strike("b", strike_at(120), BASE);
        let inc = bl
            .correlate("b", &groups, t(120), BASE)
            .expect("an incident");
        assert_eq!((inc.switch.as_str(), inc.failed.len()), ("leaf1", 2));
        assert!(
            bl.active_ban("c", t(121))
                .unwrap()
                .reason
                .contains("switch leaf1")
        );
        assert!(
            bl.correlate("b", &groups, t(130), BASE).is_none(),
            "one incident per window"
        );
        // Failures far apart are not one incident.
        let mut bl = Blacklist::new("c");
        bl.strike("a", strike_at(0), BASE);
        bl.strike("b", strike_at(3600), BASE);
        assert!(bl.correlate("b", &groups, t(3600), BASE).is_none());
    }

    #[test]
    fn exclude_list_only_has_known_names_in_priority_order() {
        let mut bl = Blacklist::new("c");
        bl.strike("a", strike_at(0), BASE);
        bl.strike("b", strike_at(0), BASE);
        bl.strike("b", strike_at(1), BASE);
        bl.ban("m", "by hand", None, t(0));
        bl.ban("retired-7", "gone", None, t(0));
        let known: Vec<String> = ["a", "b", "m", "x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(bl.exclude_list(&known, t(2)), ["m", "b", "a"]);
        assert_eq!(
            bl.exclude_list(&known, t(5 * 3600)),
            ["m"],
            "strike bans expired"
        );
    }

    proptest! {
        /// Whatever happens, a new strike never ends a ban earlier than it
        /// would have ended without it.
        #[test]
        fn a_ban_never_shortens_on_a_new_strike(
            gaps in proptest::collection::vec(0i64..200_000, 1..12),
            manual_ttl in proptest::option::of(1u64..100_000),
        ) {
            let mut bl = Blacklist::new("c");
            let mut now = 0;
            if let Some(ttl) = manual_ttl {
                bl.ban("n", "hand", Some(Duration::from_secs(ttl)), t(0));
            }
            for gap in gaps {
                now += gap;
                let before = bl.active_ban("n", t(now)).map(|b| b.until);
                let after = bl.strike("n", strike_at(now), BASE).until;
                if let Some(before) = before {
                    prop_assert!(after.is_none() || before.is_some_and(|b| after.unwrap() >= b));
                }
                prop_assert!(bl.active_ban("n", t(now)).is_some());
            }
        }

        /// A manual unban wins over any history of strikes.
        #[test]
        fn a_manual_unban_always_wins(strikes in 1usize..20, permanent in any::<bool>()) {
            let mut bl = Blacklist::new("c");
            if permanent {
                bl.ban("n", "hand", None, t(0));
            }
            for i in 0..strikes {
                bl.strike("n", strike_at(i as i64), BASE);
            }
            bl.unban("n");
            prop_assert!(bl.active_ban("n", t(strikes as i64)).is_none());
            prop_assert!(bl.exclude_list(&["n".to_string()], t(strikes as i64)).is_empty());
        }

        /// No name the cluster does not know ever reaches --exclude, and the
        /// list is capped.
        #[test]
        fn no_unknown_node_reaches_exclude(
            banned in proptest::collection::vec("[a-d][0-9]{1,2}", 0..60),
            known in proptest::collection::vec("[a-c][0-9]{1,2}", 0..60),
        ) {
            let mut bl = Blacklist::new("c");
            for n in &banned {
                bl.strike(n, strike_at(0), BASE);
            }
            let list = bl.exclude_list(&known, t(1));
            prop_assert!(list.len() <= EXCLUDE_CAP);
            for n in &list {
                prop_assert!(known.contains(n));
            }
        }
    }
}
