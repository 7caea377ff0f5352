//! What the daemon learns about nodes from runs' failures: strikes and bans,
//! incidents under one switch, and pending jobs told about new bans.

use jiff::Timestamp;

use super::tick::{Loaded, Ticker, stamp};
use crate::policy::blacklist::Strike;
use crate::policy::decide;
use crate::policy::state::{AttemptPhase, RunState};
use crate::policy::strikes;
use crate::slurm::{PendingUpdate, Slurm};

impl<S: Slurm + ?Sized> Ticker<'_, S> {
    /// True when the blacklist changed since the last call.
    pub(super) fn blacklist_changed(&self) -> bool {
        let Some(cluster) = self.cluster.name_known() else {
            return false;
        };
        let now = stamp(&self.state_dir.blacklist_path(&cluster));
        let mut last = self.blacklist_stamp.borrow_mut();
        let changed = *last != now;
        *last = now;
        changed
    }

    /// Strikes the nodes blamed by attempts that ended in this step: the
    /// policy decides ([`strikes`]); this loads and saves the blacklist,
    /// asks Slurm for corroboration when a probe is judged, journals and
    /// notifies.
    pub(super) fn strike_nodes(
        &self,
        run: &Loaded,
        before: &RunState,
        after: &RunState,
        now: Timestamp,
    ) {
        let charged = strikes::charges(
            run.spec.policy.blacklist,
            before,
            after,
            self.breaker.is_some(),
        );
        if charged.is_empty() {
            return;
        }
        let Some(cluster) = self.cluster.name() else {
            return;
        };
        let rules = self.breaker.unwrap_or_default();
        for c in charged {
            let evidence = Strike {
                time: now,
                run_id: run.id.to_string(),
                job_id: c.attempt.job_id.map(|j| j.0),
                reason: c.end.detail.clone(),
            };
            let strike = matches!(c.charge, strikes::Charge::Strike { .. });
            let groups = if strike {
                self.cluster.switch_groups()
            } else {
                Vec::new()
            };
            // Asked only when a probe is to be judged: the node inventory
            // may cost a Slurm call.
            let corroborated = c.charge.judges_a_probe()
                && (c.end.signature.is_some() || self.slurm_says_down(c.node, now));
            let cx = strikes::Context {
                ttl: run.spec.policy.blacklist_ttl,
                rules: &rules,
                corroborated,
                groups: &groups,
                now,
            };
            let Ok(judged) = self
                .state_dir
                .update_blacklist(&cluster, |bl| strikes::apply(bl, &c, evidence, &cx))
            else {
                continue;
            };
            let said = strikes::consequences(run.id.as_str(), &c, &judged, now);
            if !said.events.is_empty() {
                let _ = run
                    .dir
                    .append_events(&said.events, after.status.as_str(), now);
            }
            for p in self.notify(run, &said.notices, now) {
                super::service::Log::new(self.state_dir).line(&format!("problem: {p}"));
            }
        }
    }

    /// Whether Slurm itself says the node is unusable (down, drained, not
    /// responding): evidence beside a probe's, from the cached inventory.
    fn slurm_says_down(&self, node: &str, now: Timestamp) -> bool {
        self.cluster
            .inventory(now, false)
            .is_some_and(|nodes| nodes.iter().any(|n| n.name == node && !n.state.is_usable()))
    }

    /// The probes whose circuit breaker is open on this cluster: the next
    /// jobs skip them.
    pub(super) fn skipped_probes(&self, now: Timestamp) -> Vec<String> {
        // Off here: breakers tripped elsewhere (a lab member's daemon on a
        // shared blacklist) do not change what this user's jobs probe.
        let (Some(_), Some(cluster)) = (self.breaker, self.cluster.name()) else {
            return Vec::new();
        };
        self.state_dir
            .load_blacklist(&cluster)
            .map(|bl| bl.breakers.skipped_probes(now))
            .unwrap_or_default()
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
                    start_now: false,
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
