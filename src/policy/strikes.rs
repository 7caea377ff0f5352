//! What a failed attempt means for its node, decided as data: which ended
//! attempts charge their node ([`charges`]), what the blacklist makes of a
//! charge ([`apply`], pure over the [`Blacklist`]) and what is said about it
//! ([`consequences`]: journal events and notices). The daemon
//! (`daemon::health`) only loads, asks Slurm for corroboration, saves and
//! sends.

use std::time::Duration;

use jiff::Timestamp;

use super::blacklist::{Ban, Blacklist, Incident, Strike};
use super::breaker::{BreakerRules, Judgement, ProbeBlame, Tripped};
use super::decide::Event;
use super::notices::Notice;
use super::signatures::SignatureAction;
use super::state::{Attempt, AttemptEnd, Blame, ProbeNote, RunState};
use crate::records::ProbeStatus;

/// A leaf switch (or a configured node group) and the nodes under it.
pub type SwitchGroup = (String, Vec<String>);

/// What an ended attempt asks of its node's record.
#[derive(Debug, Clone, PartialEq)]
pub enum Charge<'a> {
    /// The node is to blame: a strike; when a faulty probe made the blame
    /// (and the breaker is on), its circuit breaker judges it first.
    Strike { probe: Option<&'a ProbeNote> },
    /// An ambiguous fault signature: a suspicion, which only the same
    /// failure from another run turns into a ban.
    Suspect { signature: String },
}

impl Charge<'_> {
    /// Whether a probe's blame is to be judged (then Slurm's view of the
    /// node is worth asking for: it corroborates or not).
    pub fn judges_a_probe(&self) -> bool {
        matches!(self, Charge::Strike { probe: Some(_) })
    }
}

/// An attempt that ended in this step on a node, and its charge.
#[derive(Debug, Clone, PartialEq)]
pub struct Charged<'a> {
    pub attempt: &'a Attempt,
    pub node: &'a str,
    pub end: &'a AttemptEnd,
    pub charge: Charge<'a>,
}

/// The attempts live in `before` (or not yet there) that have ended in
/// `after` on a node, and
/// what each charges that node. Nothing when the run does not use the
/// blacklist; nothing for a failure that is not the node's; nothing for a
/// node only suspected by a signature that says "retry elsewhere" (this run
/// avoids it; no strike).
pub fn charges<'a>(
    uses_blacklist: bool,
    before: &RunState,
    after: &'a RunState,
    breaker_on: bool,
) -> Vec<Charged<'a>> {
    if !uses_blacklist {
        return Vec::new();
    }
    let mut out = Vec::new();
    for a in &after.attempts {
        // Live before, or new in this step: a restart in place may begin
        // and end between two ticks.
        let was_live = !before
            .attempts
            .iter()
            .any(|b| b.attempt == a.attempt && !b.is_live());
        let (true, Some(end), Some(node)) = (was_live, a.end.as_ref(), a.node.as_deref()) else {
            continue;
        };
        let action = end.signature.as_ref().map(|s| s.action);
        let charge = match (end.blame, action) {
            (Blame::Node, Some(SignatureAction::RetryElsewhere)) => continue,
            (Blame::Node, _) => Charge::Strike {
                // NODE_FAIL and BOOT_FAIL are Slurm's own word: they strike
                // as they are, whatever a probe said.
                probe: end
                    .probes
                    .iter()
                    .find(|p| p.status == ProbeStatus::Faulty)
                    .filter(|_| {
                        breaker_on
                            && !matches!(
                                end.slurm_state.as_deref(),
                                Some("NODE_FAIL" | "BOOT_FAIL")
                            )
                    }),
            },
            (_, Some(SignatureAction::CountAndRetryElsewhere)) => Charge::Suspect {
                signature: end
                    .signature
                    .as_ref()
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
            },
            _ => continue,
        };
        out.push(Charged {
            attempt: a,
            node,
            end,
            charge,
        });
    }
    out
}

/// What the blacklist made of a charge.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// A strike, the ban it made, and an incident under the node's switch
    /// if this failure completed one.
    Struck(Ban, Option<Incident>),
    /// A suspicion; a ban when another run saw the same failure.
    Suspected(Option<Ban>),
    /// The blaming probe's breaker is open: no strike.
    Held(Tripped),
    /// This blame tripped the probe's breaker; these of its bans were lifted.
    Tripped(Tripped, Vec<String>),
}

/// What else the blacklist needs to judge a charge.
pub struct Context<'a> {
    /// The run's ban length (`--blacklist-ttl`), doubled per repeat.
    pub ttl: Duration,
    pub rules: &'a BreakerRules,
    /// Slurm or a fault signature says the node is bad too.
    pub corroborated: bool,
    pub groups: &'a [SwitchGroup],
    pub now: Timestamp,
}

/// Applies a charge to the blacklist.
pub fn apply(
    bl: &mut Blacklist,
    c: &Charged<'_>,
    mut evidence: Strike,
    cx: &Context<'_>,
) -> Judged {
    let node = c.node;
    match &c.charge {
        Charge::Suspect { signature } => {
            evidence.reason = signature.clone();
            Judged::Suspected(bl.suspect(node, evidence, cx.ttl))
        }
        Charge::Strike { probe } => {
            let judgement = probe.map(|p| {
                bl.breakers.judge(
                    ProbeBlame {
                        probe: &p.name,
                        node,
                        detail: &p.detail,
                        corroborated: cx.corroborated,
                        time: cx.now,
                    },
                    cx.rules,
                )
            });
            match judgement {
                Some(Judgement::Held(t)) => Judged::Held(t),
                Some(Judgement::Tripped { tripped, lift }) => {
                    // Only the bans this probe made (classify's words for a
                    // faulty probe).
                    let made_by = format!("GPU probe {} failed", tripped.probe);
                    let lifted = lift
                        .into_iter()
                        .filter(|n| bl.lift(n, |r| r.starts_with(&made_by)))
                        .collect();
                    Judged::Tripped(tripped, lifted)
                }
                None | Some(Judgement::Ban) => {
                    let ban = bl.strike(node, evidence, cx.ttl);
                    Judged::Struck(ban, bl.correlate(node, cx.groups, cx.now, cx.ttl))
                }
            }
        }
    }
}

/// What is journalled and sent about a judgement, in order.
#[derive(Debug, Default)]
pub struct Said {
    pub events: Vec<Event>,
    pub notices: Vec<Notice>,
}

/// The journal events and notices of a judgement of `c` (of run `run_id`).
pub fn consequences(run_id: &str, c: &Charged<'_>, judged: &Judged, now: Timestamp) -> Said {
    let a = c.attempt;
    let node = c.node;
    let event = |kind, message| Event {
        kind,
        attempt: Some(a.attempt),
        job_id: a.job_id,
        message,
    };
    let mut said = Said::default();
    let ban = match judged {
        Judged::Held(t) => {
            said.events.push(event(
                "probe_blame_held",
                format!(
                    "GPU probe {} blamed {node}, but its circuit breaker is open (it blamed {} the same way since {}): node not banned",
                    t.probe,
                    t.nodes.join(", "),
                    t.since
                ),
            ));
            return said;
        }
        Judged::Tripped(t, lifted) => {
            said.events.push(event(
                "probe_breaker_tripped",
                format!(
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
            ));
            said.notices
                .push(Notice::probe_distrusted(run_id, a.attempt, t, lifted, now));
            return said;
        }
        Judged::Suspected(None) => return said,
        Judged::Suspected(Some(ban)) => ban,
        Judged::Struck(ban, incident) => {
            if let Some(inc) = incident {
                said.notices.push(Notice::banned(
                    run_id,
                    a.attempt,
                    inc.banned.clone(),
                    &format!(
                        "switch {}: {} failed within minutes",
                        inc.switch,
                        inc.failed.join(", ")
                    ),
                    Some(inc.until),
                    now,
                ));
                said.events.push(event(
                    "switch_banned",
                    format!(
                        "nodes {} under switch {} failed within minutes: one incident; banned {} until {}",
                        inc.failed.join(", "),
                        inc.switch,
                        inc.banned.join(", "),
                        inc.until
                    ),
                ));
            }
            ban
        }
    };
    let detail = &c.end.detail;
    said.notices.push(Notice::banned(
        run_id,
        a.attempt,
        vec![node.to_string()],
        detail,
        ban.until,
        now,
    ));
    let until = ban
        .until
        .map_or("until unbanned".to_string(), |u| format!("until {u}"));
    said.events.push(event(
        "node_banned",
        format!("banned node {node} {until}: {detail}"),
    ));
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::signatures::SignatureAction;
    use crate::policy::state::{AttemptPhase, FailureClass, SignatureNote};

    fn t0() -> Timestamp {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn end(blame: Blame, slurm_state: &str) -> AttemptEnd {
        AttemptEnd {
            class: FailureClass::NodeFault,
            blame,
            slurm_state: Some(slurm_state.into()),
            exit: None,
            detail: "it broke".into(),
            signature: None,
            fingerprint: None,
            probes: Vec::new(),
        }
    }

    fn faulty(name: &str) -> ProbeNote {
        ProbeNote {
            name: name.into(),
            status: ProbeStatus::Faulty,
            detail: "ECC errors".into(),
        }
    }

    fn signature(action: SignatureAction) -> SignatureNote {
        SignatureNote {
            id: "nccl_timeout".into(),
            action,
            line: "NCCL watchdog".into(),
        }
    }

    /// A run whose attempt 1 on `gpu-01` was live before and ended with `e`.
    fn ended(e: AttemptEnd) -> (RunState, RunState) {
        let mut before = RunState::new(t0());
        let mut a = Attempt::new(1, t0());
        a.phase = AttemptPhase::Running;
        a.node = Some("gpu-01".into());
        a.job_id = Some(crate::slurm::JobId(7));
        before.attempts.push(a.clone());
        let mut after = before.clone();
        after.attempts[0].phase = AttemptPhase::Ended;
        after.attempts[0].end = Some(e);
        (before, after)
    }

    fn charge_of(e: AttemptEnd, breaker_on: bool) -> Option<String> {
        let (before, after) = ended(e);
        let c = charges(true, &before, &after, breaker_on);
        assert!(c.len() <= 1);
        c.first().map(|c| format!("{:?}", c.charge))
    }

    #[test]
    fn only_the_nodes_fault_strikes_and_a_faulty_probe_goes_to_its_breaker() {
        // Slurm's NODE_FAIL strikes as it is.
        assert_eq!(
            charge_of(end(Blame::Node, "NODE_FAIL"), true).as_deref(),
            Some("Strike { probe: None }")
        );
        let mut e = end(Blame::Node, "FAILED");
        e.probes = vec![faulty("health")];
        let with_probe = charge_of(e.clone(), true).unwrap();
        assert!(with_probe.contains("health"), "{with_probe}");
        // The breaker off: the probe's blame strikes as it is.
        assert_eq!(
            charge_of(e.clone(), false).as_deref(),
            Some("Strike { probe: None }")
        );
        // Even a faulty probe: NODE_FAIL is Slurm's own word.
        e.slurm_state = Some("NODE_FAIL".into());
        assert_eq!(
            charge_of(e, true).as_deref(),
            Some("Strike { probe: None }")
        );
        // Suspected by a retry-elsewhere signature: avoided, not struck.
        let mut e = end(Blame::Node, "FAILED");
        e.signature = Some(signature(SignatureAction::RetryElsewhere));
        assert_eq!(charge_of(e, true), None);
        // The workload's failure: nothing, unless a signature is ambiguous.
        assert_eq!(charge_of(end(Blame::Workload, "FAILED"), true), None);
        assert_eq!(charge_of(end(Blame::None, "PREEMPTED"), true), None);
        let mut e = end(Blame::Workload, "FAILED");
        e.signature = Some(signature(SignatureAction::CountAndRetryElsewhere));
        assert_eq!(
            charge_of(e, true).as_deref(),
            Some("Suspect { signature: \"nccl_timeout\" }")
        );
    }

    #[test]
    fn nothing_is_charged_twice_or_for_a_run_without_the_blacklist() {
        let (before, after) = ended(end(Blame::Node, "NODE_FAIL"));
        assert!(charges(false, &before, &after, true).is_empty());
        // Already ended in the state before: charged then, not again.
        assert!(charges(true, &after, &after, true).is_empty());
        // Never on a node (refused by sbatch): nobody to charge.
        let (before, mut after) = ended(end(Blame::Node, "NODE_FAIL"));
        after.attempts[0].node = None;
        assert!(charges(true, &before, &after, true).is_empty());
    }

    fn judge(e: AttemptEnd, bl: &mut Blacklist, corroborated: bool) -> (Judged, Said) {
        let (before, after) = ended(e);
        let c = charges(true, &before, &after, true).remove(0);
        let evidence = Strike {
            time: t0(),
            run_id: "r1".into(),
            job_id: Some(7),
            reason: c.end.detail.clone(),
        };
        let rules = BreakerRules::default();
        let cx = Context {
            ttl: Duration::from_secs(3600),
            rules: &rules,
            corroborated,
            groups: &[],
            now: t0(),
        };
        let judged = apply(bl, &c, evidence, &cx);
        let said = consequences("r1", &c, &judged, t0());
        (judged, said)
    }

    fn kinds(said: &Said) -> Vec<&'static str> {
        said.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_strike_bans_the_node_and_says_so_once() {
        let mut bl = Blacklist::new("test");
        let (judged, said) = judge(end(Blame::Node, "NODE_FAIL"), &mut bl, false);
        assert!(matches!(judged, Judged::Struck(_, None)), "{judged:?}");
        assert!(bl.active_ban("gpu-01", t0()).is_some());
        assert_eq!(kinds(&said), ["node_banned"]);
        assert!(said.events[0].message.contains("gpu-01"));
        assert_eq!(said.notices.len(), 1);
    }

    #[test]
    fn a_single_suspicion_bans_nothing_and_says_nothing() {
        let mut bl = Blacklist::new("test");
        let mut e = end(Blame::Workload, "FAILED");
        e.signature = Some(signature(SignatureAction::CountAndRetryElsewhere));
        let (judged, said) = judge(e, &mut bl, false);
        assert_eq!(judged, Judged::Suspected(None));
        assert!(bl.active_ban("gpu-01", t0()).is_none());
        assert!(said.events.is_empty() && said.notices.is_empty());
    }

    #[test]
    fn a_probe_blaming_many_nodes_alike_trips_its_breaker_and_bans_stop() {
        let mut bl = Blacklist::new("test");
        let rules = BreakerRules::default();
        let mut e = end(Blame::Node, "FAILED");
        e.probes = vec![faulty("health")];
        let mut seen = Vec::new();
        // The same uncorroborated blame on node after node.
        for n in 0..=rules.nodes {
            let (before, mut after) = ended(e.clone());
            let node = format!("gpu-{n:02}");
            after.attempts[0].node = Some(node.clone());
            let mut before = before;
            before.attempts[0].node = Some(node);
            let c = charges(true, &before, &after, true).remove(0);
            let cx = Context {
                ttl: Duration::from_secs(3600),
                rules: &rules,
                corroborated: false,
                groups: &[],
                now: t0(),
            };
            let evidence = Strike {
                time: t0(),
                run_id: "r1".into(),
                job_id: Some(7),
                reason: "GPU probe health failed: ECC errors".into(),
            };
            let judged = apply(&mut bl, &c, evidence, &cx);
            seen.push(kinds(&consequences("r1", &c, &judged, t0())));
        }
        assert!(
            seen.iter().any(|k| k == &["probe_breaker_tripped"]),
            "{seen:?}"
        );
        // Once open, the probe's blame is held: no ban, one event.
        let (judged, said) = judge(e, &mut bl, false);
        assert!(matches!(judged, Judged::Held(_)), "{judged:?}");
        assert_eq!(kinds(&said), ["probe_blame_held"]);
        assert!(said.notices.is_empty());
    }
}
