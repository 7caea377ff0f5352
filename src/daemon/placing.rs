//! Where a run's next job may go: the inventory the daemon reads for it,
//! the exclude list, the partitions chosen for a GPU run, Slurm's start
//! estimates when nothing is free, and moving a long-pending job.

use std::collections::HashMap;

use jiff::Timestamp;

use super::attempt;
use super::tick::{Loaded, Ticker};
use crate::model::RunSpec;
use crate::placement::inventory::{Fit, PartitionGpus, fit, order_by_estimate, partition_gpus};
use crate::placement::refusal::{AfterRefusal, after_refusal};
use crate::policy::decide::{self, SubmitResult};
use crate::policy::state::RunState;
use crate::slurm::{JobId, PendingUpdate, Rejection, Slurm, SlurmError};
use crate::store::atomic::StoreError;

/// Why a run's next job cannot be placed.
pub(super) enum PlanError {
    /// Slurm's inventory cannot be read now, or no partition can hold the
    /// job until nodes come back: try again later.
    Unobservable,
    /// No partition can hold the request; why not, per partition.
    NoPartition(String),
    /// Partitions could hold it, but every node that could is banned or
    /// down now: wait for that to change.
    Nowhere,
}

impl<S: Slurm + ?Sized> Ticker<'_, S> {
    /// Where the run's next job may go: nodes to avoid, and for a GPU run
    /// that pins no partition, the partitions that can hold it, best first.
    pub(super) fn plan(
        &self,
        spec: &RunSpec,
        state: &RunState,
        now: Timestamp,
    ) -> Result<attempt::Placement, PlanError> {
        let (exclude, avoid) = self.exclude_and_avoid(spec, state, now);
        let script_pins = crate::options::directives::sbatch_files(&spec.sbatch_lines)
            .partition
            .is_some();
        let partitions = if !spec.resources.partitions.is_empty() {
            Some(spec.resources.partitions.clone())
        } else if spec.resources.gpus.is_some() && !script_pins {
            let nodes = self
                .cluster
                .inventory(now, true)
                .ok_or(PlanError::Unobservable)?;
            let parts = self
                .cluster
                .partitions(now)
                .ok_or(PlanError::Unobservable)?;
            let catalog = &self.catalog;
            let views = partition_gpus(&parts, &nodes, &exclude, catalog);
            let time = crate::options::directives::sbatch_files(&spec.sbatch_lines)
                .time
                .and_then(|t| {
                    crate::slurm::parse::values::time_limit_minutes(&t)
                        .ok()
                        .flatten()
                });
            let chosen = match fit(&views, &spec.resources, time, catalog) {
                Fit::Now(chosen) => chosen,
                Fit::Queue(chosen) => self.by_estimate(spec, state, &exclude, chosen),
                Fit::Later => return Err(PlanError::Nowhere),
                Fit::Never(why) => return Err(PlanError::NoPartition(why)),
            };
            Some(chosen.iter().map(|v| v.partition.clone()).collect())
        } else {
            None
        };
        Ok(attempt::Placement {
            exclude,
            partitions,
            avoid,
        })
    }

    /// The `--exclude` list for a run's next job. Without an inventory no
    /// list is passed, so the script's own `--exclude` applies as written.
    pub(super) fn exclude_for(
        &self,
        spec: &RunSpec,
        state: &RunState,
        now: Timestamp,
    ) -> Vec<String> {
        self.exclude_and_avoid(spec, state, now).0
    }

    /// The `--exclude` list, and which of its nodes is there only because
    /// this run's last failure asks to try elsewhere (not banned).
    fn exclude_and_avoid(
        &self,
        spec: &RunSpec,
        state: &RunState,
        now: Timestamp,
    ) -> (Vec<String>, Option<String>) {
        let Some(known) = self.cluster.known_nodes(now) else {
            return (Vec::new(), None);
        };
        let mut banned = match (spec.policy.blacklist, self.cluster.name()) {
            (true, Some(cluster)) => self
                .state_dir
                .load_blacklist(&cluster)
                .map(|bl| bl.exclude_list(&known, now))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        // A node this run's last attempt failed on in a way that may be the
        // node's, or where the same failure repeated: the next attempt tries
        // elsewhere.
        let avoid = crate::policy::verdicts::avoid_node(state, spec.policy.same_failure_limit)
            .filter(|n| known.contains(n) && !banned.contains(n));
        if let Some(node) = &avoid {
            banned.push(node.clone());
        }
        (attempt::exclude_list(spec, &banned, &known), avoid)
    }

    /// What keeps a run's job from every node, as [`Waiting::blockers`]:
    /// its exclude list and `down:NODE` for each node Slurm cannot use.
    /// `None` without a node inventory.
    ///
    /// [`Waiting::blockers`]: crate::policy::state::Waiting::blockers
    pub(super) fn blockers(
        &self,
        spec: &RunSpec,
        state: &RunState,
        now: Timestamp,
    ) -> Option<Vec<String>> {
        let nodes = self.cluster.inventory(now, false)?;
        let mut all = self.exclude_for(spec, state, now);
        all.extend(
            nodes
                .iter()
                .filter(|n| !n.state.is_usable())
                .map(|n| format!("down:{}", n.name)),
        );
        all.sort();
        Some(all)
    }

    /// Why a run has nowhere to run, for people: the banned nodes with
    /// until when and why, the unusable GPU nodes, when the first ban
    /// expires. Also that time.
    pub(super) fn nowhere_message(
        &self,
        exclude: &[String],
        now: Timestamp,
        detail: &str,
    ) -> (String, Option<Timestamp>) {
        let (bans, until) = self.bans_named(exclude, now);
        let down: Vec<String> = self
            .cluster
            .inventory(now, false)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !n.state.is_usable() && n.gpus_total() > 0)
            .map(|n| n.name)
            .collect();
        let mut what = Vec::new();
        if !bans.is_empty() {
            what.push(format!("excluded: {bans}"));
        }
        if !down.is_empty() {
            what.push(format!("down or drained: {}", down.join(", ")));
        }
        let first = until.map_or(String::new(), |u| {
            format!(
                "; the first ban expires at {}",
                u.strftime("%Y-%m-%d %H:%M:%S UTC")
            )
        });
        (
            format!(
                "nowhere to run: every node the job may use is banned or down ({}){first}; \
                 submitting again when that changes ({detail})",
                what.join("; ")
            ),
            until,
        )
    }

    /// The bans among `exclude`, for people, and when the first expires.
    fn bans_named(&self, exclude: &[String], now: Timestamp) -> (String, Option<Timestamp>) {
        let bl = self
            .cluster
            .name()
            .and_then(|c| self.state_dir.load_blacklist(&c).ok());
        let mut first: Option<Timestamp> = None;
        let named: Vec<String> = exclude
            .iter()
            .map(|n| match bl.as_ref().and_then(|b| b.active_ban(n, now)) {
                Some(ban) => {
                    if let Some(u) = ban.until {
                        first = Some(first.map_or(u, |f| f.min(u)));
                    }
                    let until = ban.until.map_or("until unbanned".to_string(), |u| {
                        format!("until {}", u.strftime("%Y-%m-%d %H:%M:%S UTC"))
                    });
                    format!("{n} (banned {until}: {})", ban.reason)
                }
                None => format!("{n} (excluded)"),
            })
            .collect();
        (named.join(", "), first)
    }

    /// Nothing is free anywhere: ask Slurm when the job would start in each
    /// partition (`sbatch --test-only`, at most four), soonest first.
    pub(super) fn by_estimate<'v>(
        &self,
        spec: &RunSpec,
        state: &RunState,
        exclude: &[String],
        chosen: Vec<&'v PartitionGpus>,
    ) -> Vec<&'v PartitionGpus> {
        let Some(attempt) = state.attempts.last().map(|a| a.dir_attempt()) else {
            return chosen;
        };
        let script = self
            .state_dir
            .run(&spec.run_id)
            .attempt(attempt)
            .job_script();
        let gres = match (&spec.resources.gpu_type, spec.resources.gpus) {
            (Some(t), Some(n)) => format!("--gres=gpu:{t}:{n}"),
            (None, Some(n)) => format!("--gres=gpu:{n}"),
            _ => String::new(),
        };
        let mut estimates = HashMap::new();
        for p in chosen.iter().take(4) {
            let mut args = vec![format!("--partition={}", p.partition), gres.clone()];
            if !exclude.is_empty() {
                args.push(format!("--exclude={}", exclude.join(",")));
            }
            let request = crate::slurm::SubmitRequest {
                script: crate::slurm::ScriptSource::File(script.clone()),
                args,
                env: None,
            };
            if let Ok(e) = self.slurm.estimate_start(&request) {
                estimates.insert(p.partition.clone(), e.start);
            }
        }
        order_by_estimate(chosen, |p| estimates.get(p).copied())
    }

    /// Moves a long-pending job, in place, to the partitions that can hold
    /// it when one of them can start it now. Runs that pin their partitions
    /// are left alone.
    pub(super) fn reconsider(&self, run: &Loaded, job: JobId, now: Timestamp) {
        let Some(a) = run.state.live_attempt() else {
            return;
        };
        if !run.spec.resources.partitions.is_empty() {
            return;
        }
        let Ok(placement) = self.plan(&run.spec, &run.state, now) else {
            return;
        };
        let Some(wanted) = placement.partitions else {
            return;
        };
        let current: Vec<&str> = a.partition.as_deref().unwrap_or("").split(',').collect();
        let first = &wanted[0];
        let can_start_now = self
            .cluster
            .inventory(now, false)
            .zip(self.cluster.partitions(now))
            .map(|(nodes, parts)| {
                let views = partition_gpus(&parts, &nodes, &placement.exclude, &self.catalog);
                views.iter().any(|v| {
                    v.partition == *first
                        && v.availability(run.spec.resources.gpus.unwrap_or(1))
                            == crate::placement::inventory::Availability::Full
                })
            })
            .unwrap_or(false);
        let same =
            wanted.len() == current.len() && wanted.iter().all(|w| current.contains(&w.as_str()));
        if same || !can_start_now {
            return;
        }
        let update = PendingUpdate {
            exclude: Some(placement.exclude.clone()),
            partition: Some(wanted.join(",")),
            start_now: false,
        };
        let message = match self.slurm.update_pending(job, &update) {
            Ok(()) => format!(
                "job {job} pending ({}) in {}: moved to partitions {} ({first} can start it now)",
                a.pending_reason.as_deref().unwrap_or("waiting"),
                a.partition.as_deref().unwrap_or("?"),
                wanted.join(", ")
            ),
            // It started meanwhile: nothing to move.
            Err(e) if e.rejection() == Some(Rejection::JobNotPending) => return,
            Err(e) => format!("could not move pending job {job}: {e}"),
        };
        let event = decide::Event {
            kind: "failover",
            attempt: Some(a.attempt),
            job_id: Some(job),
            message,
        };
        let _ = run
            .dir
            .append_events(&[event], run.state.status.as_str(), now);
    }

    /// Submits an attempt where `placement` says. When Slurm refuses a
    /// submission naming several partitions for a reason that may concern
    /// only one of them (one was deleted, drained, or is closed to the
    /// user's account), the partitions are tried one at a time, in order.
    /// A refused sbatch created no job, so each try is safe; an unclear
    /// answer ends the tries (the job may exist and is looked for by name).
    pub(super) fn submit_placed(
        &self,
        run: &Loaded,
        attempt: u32,
        env: &[(String, String)],
        placement: &attempt::Placement,
        now: Timestamp,
    ) -> Result<SubmitResult, StoreError> {
        let submit = |placement: &attempt::Placement| {
            let request =
                attempt::submit_request(&run.spec, &run.dir, attempt, env.to_vec(), placement);
            self.slurm.submit(&request)
        };
        let (kind, message) = match submit(placement) {
            Ok(id) => return Ok(SubmitResult::Accepted(id)),
            Err(SlurmError::Rejected { kind, message, .. }) => (kind, one_line(&message)),
            Err(e) => {
                return Ok(SubmitResult::Unknown {
                    message: e.to_string(),
                });
            }
        };
        let mut refusals = vec![(kind, message.clone())];
        let partitions = placement.partitions.as_deref().unwrap_or_default();
        if partitions.len() > 1 && kind.may_concern_one_partition() {
            for (i, p) in partitions.iter().enumerate() {
                let one = attempt::Placement {
                    exclude: placement.exclude.clone(),
                    partitions: Some(vec![p.clone()]),
                    avoid: placement.avoid.clone(),
                };
                match submit(&one) {
                    Ok(id) => {
                        let skipped = &partitions[..i];
                        let event = decide::Event {
                            kind: "failover",
                            attempt: Some(attempt),
                            job_id: Some(id),
                            message: format!(
                                "sbatch refused partitions {} ({message}); submitted to {p}",
                                partitions.join(","),
                            ) + &if skipped.is_empty() {
                                String::new()
                            } else {
                                format!(", after {} refused it", skipped.join(", "))
                            },
                        };
                        run.dir
                            .append_events(&[event], run.state.status.as_str(), now)?;
                        return Ok(SubmitResult::Accepted(id));
                    }
                    Err(SlurmError::Rejected { kind, message, .. }) => {
                        refusals.push((kind, format!("{p}: {}", one_line(&message))));
                    }
                    Err(e) => {
                        return Ok(SubmitResult::Unknown {
                            message: e.to_string(),
                        });
                    }
                }
            }
            refusals.remove(0);
        }
        let after = after_refusal(
            &refusals,
            !placement.exclude.is_empty(),
            placement.avoid.as_deref(),
            || self.refused_anyway(run, attempt, env, placement),
        );
        Ok(match after {
            AfterRefusal::UseAvoided(node) => {
                let fewer = attempt::Placement {
                    exclude: placement
                        .exclude
                        .iter()
                        .filter(|n| **n != node)
                        .cloned()
                        .collect(),
                    partitions: placement.partitions.clone(),
                    avoid: None,
                };
                return self.submit_placed(run, attempt, env, &fewer, now);
            }
            AfterRefusal::Nowhere { message } => {
                let (message, until) = self.nowhere_message(&placement.exclude, now, &message);
                let mut blockers = placement.exclude.clone();
                blockers.sort();
                SubmitResult::Nowhere {
                    message,
                    blockers: self
                        .blockers(&run.spec, &run.state, now)
                        .unwrap_or(blockers),
                    until,
                }
            }
            AfterRefusal::Defer { message } => SubmitResult::Deferred { message },
            AfterRefusal::Reject { kind, message } => SubmitResult::Rejected { kind, message },
        })
    }

    /// Whether Slurm refuses the job even with no node excluded: then the
    /// request itself is impossible and waiting for bans would be in vain.
    /// An unclear answer counts as "no" (the bans are the likely cause).
    fn refused_anyway(
        &self,
        run: &Loaded,
        attempt: u32,
        env: &[(String, String)],
        placement: &attempt::Placement,
    ) -> bool {
        let open = attempt::Placement {
            exclude: Vec::new(),
            partitions: placement.partitions.clone(),
            avoid: None,
        };
        let request = attempt::submit_request(&run.spec, &run.dir, attempt, env.to_vec(), &open);
        matches!(
            self.slurm.estimate_start(&request),
            Err(SlurmError::Rejected {
                kind: Rejection::NodeConfigUnavailable,
                ..
            })
        )
    }
}

/// sbatch's refusal on one line, for events and the run's reason.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(|l| l.trim().trim_start_matches("sbatch: error: "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
