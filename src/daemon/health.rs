//! What the daemon learns about nodes from runs' failures: strikes and bans,
//! incidents under one switch, and pending jobs told about new bans.

use jiff::Timestamp;

use super::tick::{Loaded, Ticker, stamp};
use crate::policy::blacklist::Strike;
use crate::policy::breaker::{Judgement, ProbeBlame, Tripped};
use crate::policy::decide;
use crate::policy::notices::Notice;
use crate::policy::signatures::SignatureAction;
use crate::policy::state::{AttemptPhase, Blame, RunState};
use crate::records::ProbeStatus;
use crate::slurm::{PendingUpdate, Slurm};

/// A leaf switch and the nodes under it.
pub(super) type SwitchGroup = (String, Vec<String>);

/// What the blacklist made of a node blame.
enum Judged {
    Struck(
        crate::policy::blacklist::Ban,
        Option<crate::policy::blacklist::Incident>,
    ),
    /// The blaming probe's breaker is open: no strike.
    Held(Tripped),
    /// This blame tripped the breaker; these bans were lifted.
    Tripped(Tripped, Vec<String>),
}

impl<S: Slurm + ?Sized> Ticker<'_, S> {
    /// True when the blacklist changed since the last call.
    pub(super) fn blacklist_changed(&self) -> bool {
        let Some(cluster) = self.cluster.borrow().clone() else {
            return false;
        };
        let now = stamp(&self.state_dir.blacklist_path(&cluster));
        let mut last = self.blacklist_stamp.borrow_mut();
        let changed = *last != now;
        *last = now;
        changed
    }

    pub(super) fn cluster_name(&self) -> Option<String> {
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

    /// Strikes the nodes blamed by attempts that ended in this step.
    pub(super) fn strike_nodes(
        &self,
        run: &Loaded,
        before: &RunState,
        after: &RunState,
        now: Timestamp,
    ) {
        if !run.spec.policy.blacklist {
            return;
        }
        let Some(cluster) = self.cluster_name() else {
            return;
        };
        for a in &after.attempts {
            let was_live = before
                .attempts
                .iter()
                .any(|b| b.attempt == a.attempt && b.is_live());
            let (true, Some(end), Some(node)) = (was_live, a.end.as_ref(), a.node.as_deref())
            else {
                continue;
            };
            let action = end.signature.as_ref().map(|s| s.action);
            let mut evidence = Strike {
                time: now,
                run_id: run.id.to_string(),
                job_id: a.job_id.map(|j| j.0),
                reason: end.detail.clone(),
            };
            let ttl = run.spec.policy.blacklist_ttl;
            let result = match (end.blame, action) {
                // Suspected, not proven: avoided by this run, no strike.
                (Blame::Node, Some(SignatureAction::RetryElsewhere)) => continue,
                (Blame::Node, _) => {
                    let groups = self.switch_groups();
                    // A faulty probe's blame goes through its circuit
                    // breaker first; other node blame (NODE_FAIL, a lost
                    // heartbeat, a hardware signature) strikes as it is.
                    let probe = self
                        .breaker
                        .and_then(|_| end.probes.iter().find(|p| p.status == ProbeStatus::Faulty))
                        .filter(|_| {
                            !matches!(end.slurm_state.as_deref(), Some("NODE_FAIL" | "BOOT_FAIL"))
                        });
                    let rules = self.breaker.unwrap_or_default();
                    // Asked only when a probe is to be judged: the node
                    // inventory may cost a Slurm call.
                    let corroborated = probe.is_some()
                        && (end.signature.is_some() || self.slurm_says_down(node, now));
                    let judged = self.state_dir.update_blacklist(&cluster, |bl| {
                        let judgement = probe.map(|p| {
                            bl.breakers.judge(
                                ProbeBlame {
                                    probe: &p.name,
                                    node,
                                    detail: &p.detail,
                                    corroborated,
                                    time: now,
                                },
                                &rules,
                            )
                        });
                        match judgement {
                            Some(Judgement::Held(t)) => Judged::Held(t),
                            Some(Judgement::Tripped { tripped, lift }) => {
                                // Only the bans this probe made (classify's
                                // words for a faulty probe).
                                let made_by = format!("GPU probe {} failed", tripped.probe);
                                let lifted = lift
                                    .into_iter()
                                    .filter(|n| bl.lift(n, |r| r.starts_with(&made_by)))
                                    .collect();
                                Judged::Tripped(tripped, lifted)
                            }
                            None | Some(Judgement::Ban) => {
                                let ban = bl.strike(node, evidence, ttl);
                                Judged::Struck(ban, bl.correlate(node, &groups, now, ttl))
                            }
                        }
                    });
                    let incident = match judged {
                        Ok(Judged::Struck(ban, incident)) => Ok((ban, incident)),
                        Ok(Judged::Held(t)) => {
                            let event = decide::Event {
                                kind: "probe_blame_held",
                                attempt: Some(a.attempt),
                                job_id: a.job_id,
                                message: format!(
                                    "GPU probe {} blamed {node}, but its circuit breaker is open (it blamed {} the same way since {}): node not banned",
                                    t.probe,
                                    t.nodes.join(", "),
                                    t.since
                                ),
                            };
                            let _ = run.dir.append_events(&[event], after.status.as_str(), now);
                            continue;
                        }
                        Ok(Judged::Tripped(t, lifted)) => {
                            let event = decide::Event {
                                kind: "probe_breaker_tripped",
                                attempt: Some(a.attempt),
                                job_id: a.job_id,
                                message: format!(
                                    "GPU probe {} blamed {} the same way ({}), with nothing else saying they are bad: not banning on it until {}, runs skip it{}",
                                    t.probe,
                                    t.nodes.join(", "),
                                    t.key,
                                    t.until,
                                    if lifted.is_empty() {
                                        String::new()
                                    } else {
                                        format!("; lifted the bans on {}", lifted.join(", "))
                                    }
                                ),
                            };
                            let _ = run.dir.append_events(&[event], after.status.as_str(), now);
                            let notice = Notice::probe_distrusted(
                                run.id.as_str(),
                                a.attempt,
                                &t,
                                &lifted,
                                now,
                            );
                            for p in self.notify(run, &[notice], now) {
                                super::service::Log::new(self.state_dir)
                                    .line(&format!("problem: {p}"));
                            }
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                    if let Ok((_, Some(inc))) = &incident {
                        self.notify_ban(
                            run,
                            a.attempt,
                            inc.banned.clone(),
                            &format!(
                                "switch {}: {} failed within minutes",
                                inc.switch,
                                inc.failed.join(", ")
                            ),
                            Some(inc.until),
                            now,
                        );
                        let event = decide::Event {
                            kind: "switch_banned",
                            attempt: Some(a.attempt),
                            job_id: a.job_id,
                            message: format!(
                                "nodes {} under switch {} failed within minutes: one incident; banned {} until {}",
                                inc.failed.join(", "),
                                inc.switch,
                                inc.banned.join(", "),
                                inc.until
                            ),
                        };
                        let _ = run.dir.append_events(&[event], after.status.as_str(), now);
                    }
                    incident.map(|(ban, _)| Some(ban))
                }
                // Ambiguous: only the same failure from another run bans it.
                (_, Some(SignatureAction::CountAndRetryElsewhere)) => {
                    evidence.reason = end
                        .signature
                        .as_ref()
                        .map(|s| s.id.clone())
                        .unwrap_or_default();
                    self.state_dir
                        .update_blacklist(&cluster, |bl| bl.suspect(node, evidence, ttl))
                }
                _ => continue,
            };
            if let Ok(Some(ban)) = result {
                let until = ban
                    .until
                    .map_or("until unbanned".to_string(), |u| format!("until {u}"));
                self.notify_ban(
                    run,
                    a.attempt,
                    vec![node.to_string()],
                    &end.detail,
                    ban.until,
                    now,
                );
                let event = decide::Event {
                    kind: "node_banned",
                    attempt: Some(a.attempt),
                    job_id: a.job_id,
                    message: format!("banned node {node} {until}: {}", end.detail),
                };
                let _ = run.dir.append_events(&[event], after.status.as_str(), now);
            }
        }
    }

    /// Whether Slurm itself says the node is unusable (down, drained, not
    /// responding): evidence beside a probe's, from the cached inventory.
    fn slurm_says_down(&self, node: &str, now: Timestamp) -> bool {
        self.inventory(now, false)
            .is_some_and(|nodes| nodes.iter().any(|n| n.name == node && !n.state.is_usable()))
    }

    /// The probes whose circuit breaker is open on this cluster: the next
    /// jobs skip them.
    pub(super) fn skipped_probes(&self, now: Timestamp) -> Vec<String> {
        // Off here: breakers tripped elsewhere (a lab member's daemon on a
        // shared blacklist) do not change what this user's jobs probe.
        let (Some(_), Some(cluster)) = (self.breaker, self.cluster_name()) else {
            return Vec::new();
        };
        self.state_dir
            .load_blacklist(&cluster)
            .map(|bl| bl.breakers.skipped_probes(now))
            .unwrap_or_default()
    }

    fn notify_ban(
        &self,
        run: &Loaded,
        attempt: u32,
        nodes: Vec<String>,
        why: &str,
        until: Option<Timestamp>,
        now: Timestamp,
    ) {
        let notice = Notice::banned(run.id.as_str(), attempt, nodes, why, until, now);
        for p in self.notify(run, &[notice], now) {
            super::service::Log::new(self.state_dir).line(&format!("problem: {p}"));
        }
    }

    /// After a new ban, pending jobs learn to avoid the node in place
    /// (`scontrol update`), rather than being cancelled and resubmitted.
    pub(super) fn exclude_from_pending(&self, runs: &[Loaded], now: Timestamp) {
        for run in runs {
            let Some(a) = run.state.live_attempt() else {
                continue;
            };
            if let (AttemptPhase::Pending, Some(job)) = (a.phase, a.job_id) {
                let exclude = self.exclude_for(&run.spec, &run.state, now);
                let update = PendingUpdate {
                    exclude: Some(exclude.clone()),
                    partition: None,
                };
                // A job that started meanwhile refuses: nothing to do then.
                if self.slurm.update_pending(job, &update).is_ok() {
                    let event = decide::Event {
                        kind: "exclude_updated",
                        attempt: Some(a.attempt),
                        job_id: Some(job),
                        message: format!("pending job {job} now excludes {}", exclude.join(",")),
                    };
                    let _ = run
                        .dir
                        .append_events(&[event], run.state.status.as_str(), now);
                }
            }
        }
    }
}
