//! The verdicts that look across attempts, in one place: a job that never
//! reached a node is nobody's failure; the same failure on several nodes is
//! the code's; and which node the next attempt should avoid to tell the two
//! apart.
//!
//! Pure functions over the run's state and the ended job's evidence.

use std::time::Duration;

use super::signatures::SignatureAction;
use super::state::{Attempt, AttemptEnd, Blame, FailureClass, Fingerprint, RunState};
use crate::records::{Outcome, Verdict};
use crate::slurm::JobState;

/// How many of the stderr tail's last lines make up a fingerprint.
pub const FINGERPRINT_LINES: usize = 5;

/// What is known about a job that ended, for [`never_started`].
#[derive(Debug, Clone, Copy)]
pub struct Reached<'a> {
    pub state: Option<&'a JobState>,
    /// The nodes Slurm says the job had (empty: none).
    pub nodes: &'a [String],
    pub reason: &'a str,
    /// The wrapper wrote an outcome: it ran somewhere.
    pub outcome: bool,
    /// The daemon saw the job running.
    pub seen_running: bool,
}

/// A job that ended without ever reaching a node: a refused submission's
/// record (`FAILED`, reason `BadConstraints`, no `NodeList`; Slurm 22.05
/// sets its StartTime to the submit time, so that says nothing), or a
/// pending job Slurm ended (a `DEADLINE` while queued). A cancel while
/// pending is someone's decision and keeps its own class; a job with any
/// trace of running (a node, a wrapper report, the daemon saw it run) did
/// reach a node.
pub fn never_started(r: &Reached<'_>) -> Option<AttemptEnd> {
    let state = r.state?;
    if !state.is_terminal()
        || matches!(state, JobState::Cancelled | JobState::Completed)
        || !r.nodes.is_empty()
        || r.outcome
        || r.seen_running
    {
        return None;
    }
    let reason = match r.reason.trim() {
        "" | "None" => String::new(),
        why => format!(", reason {why}"),
    };
    Some(AttemptEnd {
        class: FailureClass::NeverStarted,
        blame: Blame::None,
        slurm_state: Some(state.to_string()),
        exit: None,
        detail: format!("the job never reached a node (Slurm: {state}{reason}, no node)"),
        signature: None,
        fingerprint: None,
        probes: Vec::new(),
    })
}

/// A job found by its name that is only the record of a refused submission:
/// it never held a node and will never run. It is not the attempt's job.
pub fn is_phantom(job: &crate::slurm::JobInfo) -> bool {
    job.state.is_terminal() && job.state != JobState::Cancelled && job.nodes.is_empty()
}

/// The fingerprint of a workload failure the wrapper reported.
pub fn fingerprint(outcome: &Outcome) -> Option<Fingerprint> {
    let exit = match outcome.verdict {
        Verdict::Exited { code } if code != 0 => format!("exit {code}"),
        Verdict::Signaled { signal } => format!("signal {signal}"),
        _ => return None,
    };
    let ran = outcome
        .ended_at
        .duration_since(outcome.started_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let mut lines: Vec<String> = outcome
        .stderr_tail
        .lines()
        .map(|l| normalise(l, &outcome.node))
        .filter(|l| !l.is_empty())
        .collect();
    let skip = lines.len().saturating_sub(FINGERPRINT_LINES);
    lines.drain(..skip);
    Some(Fingerprint {
        exit,
        lines,
        after: bucket(ran).to_string(),
    })
}

/// Durations on a rough log scale: a crash at 2 s and one at 5 s are the same
/// crash, one at 2 s and one after 3 hours are not.
pub fn bucket(d: Duration) -> &'static str {
    match d.as_secs() {
        0..10 => "<10s",
        10..60 => "10s-1m",
        60..600 => "1m-10m",
        600..3600 => "10m-1h",
        3600..21600 => "1h-6h",
        _ => ">6h",
    }
}

/// One stderr line with what differs between two runs of the same bug
/// replaced: the node's name (and its short form), hex addresses and ids,
/// and every number, with the separators that glue numbers into
/// timestamps, PIDs, job ids in paths, versions and addresses.
pub fn normalise(line: &str, node: &str) -> String {
    let mut text = line.trim().to_string();
    let short = node.split('.').next().unwrap_or(node);
    for name in [node, short] {
        if !name.is_empty() {
            text = text.replace(name, "<node>");
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let at_word_start = i == 0 || !word(chars[i - 1]);
        if c == '0'
            && chars.get(i + 1).is_some_and(|x| *x == 'x' || *x == 'X')
            && chars.get(i + 2).is_some_and(char::is_ascii_hexdigit)
        {
            i += 2;
            while chars.get(i).is_some_and(char::is_ascii_hexdigit) {
                i += 1;
            }
            out.push_str("<hex>");
            continue;
        }
        if at_word_start && c.is_ascii_hexdigit() {
            // A long hex word with a digit in it (a hash), or a UUID's part.
            let end = (i..chars.len())
                .find(|&j| !chars[j].is_ascii_hexdigit())
                .unwrap_or(chars.len());
            let run = &chars[i..end];
            let bounded = chars.get(end).is_none_or(|x| !word(*x));
            if is_uuid(&chars[i..]) && chars.get(i + 36).is_none_or(|x| !word(*x)) {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
            if run.len() >= 8 && bounded && run.iter().any(char::is_ascii_digit) {
                out.push_str("<hex>");
                i = end;
                continue;
            }
        }
        if c.is_ascii_digit() {
            while i < chars.len() {
                let x = chars[i];
                let glue = matches!(x, '.' | ':' | '-' | '/' | 'T' | ',')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if x.is_ascii_digit() || glue {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push_str("<n>");
            continue;
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out.trim().to_string()
}

/// `8-4-4-4-12` hex digits at the start of `chars`.
fn is_uuid(chars: &[char]) -> bool {
    chars.len() >= 36
        && chars[..36].iter().enumerate().all(|(k, c)| match k {
            8 | 13 | 18 | 23 => *c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The attempts that count as evidence now: after the last success (a
/// success proves the failure is not certain) and after the last `restart`.
fn window(st: &RunState) -> &[Attempt] {
    let from = st
        .attempts
        .iter()
        .rposition(|a| {
            a.attempt <= st.evidence_after
                || a.end
                    .as_ref()
                    .is_some_and(|e| e.class == FailureClass::Success)
        })
        .map_or(0, |i| i + 1);
    &st.attempts[from..]
}

fn fingerprint_of(a: &Attempt) -> Option<&Fingerprint> {
    a.end.as_ref().and_then(|e| e.fingerprint.as_ref())
}

/// The run's verdict after its last attempt failed the workload's way, when
/// the evidence says the code (not a node) is at fault:
///
/// - an ambiguous signature (an illegal memory access, an NCCL timeout, …)
///   that an earlier attempt had on another node;
/// - the same [`Fingerprint`] in `limit` attempts on at least two nodes.
///
/// `limit` 0 turns both off (`--same-failure-limit 0`). Only the attempts
/// since the last success or restart count.
pub fn code_fault(st: &RunState, limit: u32) -> Option<String> {
    if limit == 0 {
        return None;
    }
    let window = window(st);
    let (last, earlier) = window.split_last()?;
    let end = last.end.as_ref()?;
    let node = last.node.as_deref()?;
    if let Some(sig) = end
        .signature
        .as_ref()
        .filter(|s| s.action == SignatureAction::CountAndRetryElsewhere)
        && let Some(other) = earlier.iter().find(|a| {
            a.node.as_deref().is_some_and(|n| n != node)
                && a.end
                    .as_ref()
                    .and_then(|e| e.signature.as_ref())
                    .is_some_and(|s| s.id == sig.id)
        })
    {
        return Some(format!(
            "workload fails on every node: {} on {} (attempt {}) and {node} (attempt {}): {}",
            sig.id,
            other.node.as_deref().unwrap_or("?"),
            other.attempt,
            last.attempt,
            sig.line
        ));
    }
    let fp = end.fingerprint.as_ref()?;
    let same: Vec<&Attempt> = window
        .iter()
        .filter(|a| fingerprint_of(a) == Some(fp))
        .collect();
    let mut nodes: Vec<&str> = same.iter().filter_map(|a| a.node.as_deref()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if same.len() < limit as usize || nodes.len() < 2 {
        return None;
    }
    let attempts: Vec<String> = same
        .iter()
        .map(|a| format!("{} on {}", a.attempt, a.node.as_deref().unwrap_or("?")))
        .collect();
    let lines = if fp.lines.is_empty() {
        "no stderr".to_string()
    } else {
        fp.lines.join(" | ")
    };
    Some(format!(
        "the workload fails the same way everywhere: {} after {} in attempts {} ({} nodes): {lines}",
        fp.exit,
        fp.after,
        attempts.join(", "),
        nodes.len()
    ))
}

/// The node the run's next attempt should avoid (not a ban: this run only,
/// this once): the node of the last ended attempt when its failure may be
/// the node's (a signature that says "retry elsewhere"), or when the same
/// workload failure repeated only there, so that the next attempt tells
/// node from code.
pub fn avoid_node(st: &RunState, limit: u32) -> Option<String> {
    let last = st.attempts.iter().rfind(|a| a.end.is_some())?;
    let node = last.node.clone()?;
    let end = last.end.as_ref()?;
    if let Some(sig) = &end.signature
        && matches!(
            sig.action,
            SignatureAction::RetryElsewhere | SignatureAction::CountAndRetryElsewhere
        )
    {
        return Some(node);
    }
    let fp = end.fingerprint.as_ref().filter(|_| limit > 0)?;
    let same: Vec<&Attempt> = window(st)
        .iter()
        .filter(|a| a.attempt != last.attempt && fingerprint_of(a) == Some(fp))
        .collect();
    let only_here = !same.is_empty() && same.iter().all(|a| a.node.as_deref() == Some(&node));
    only_here.then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_takes_out_what_differs_between_two_runs_of_one_bug() {
        let n = |l: &str, node: &str| normalise(l, node);
        assert_eq!(
            n(
                "[rank 3, pid 4242] 2026-12-02T05:11:09.123 ERROR at 0x7ffd1234beef",
                "a100-1"
            ),
            n(
                "[rank 3, pid 977] 2026-12-03T19:00:00.999 ERROR at 0x55aa00ff",
                "a100-2"
            ),
        );
        assert_eq!(
            n(
                "cannot open /state/runs/train/attempts/3/slurm-1234.out on a100-1.cluster.local",
                "a100-1.cluster.local"
            ),
            "cannot open /state/runs/train/attempts/<n>/slurm-<n>.out on <node>"
        );
        assert_eq!(
            n(
                "a100-1: job uuid 3c52dd8c-5f09-4f76-9872-a0a13c859f79 failed",
                "a100-1"
            ),
            n(
                "a100-2: job uuid 81722a1a-6be5-e51e-d349-a7ff7c3dc0c8 failed",
                "a100-2"
            ),
        );
        assert_eq!(
            n("ValueError:   bad   config", "x"),
            "ValueError: bad config"
        );
        // Words are kept: a different error stays different.
        assert_ne!(n("KeyError: 'lr'", "x"), n("KeyError: 'batch'", "x"));
        assert_eq!(
            n("deadbeef and cafe", "x"),
            "deadbeef and cafe",
            "hex words need a digit"
        );
    }

    #[test]
    fn durations_are_bucketed_roughly() {
        let b = |s| bucket(Duration::from_secs(s));
        assert_eq!(b(1), b(9));
        assert_ne!(b(5), b(30));
        assert_eq!(b(3 * 3600), "1h-6h");
        assert_eq!(b(100_000), ">6h");
    }

    #[test]
    fn a_phantom_is_a_record_with_no_node() {
        let base = Reached {
            state: Some(&JobState::Failed),
            nodes: &[],
            reason: "BadConstraints",
            outcome: false,
            seen_running: false,
        };
        assert_eq!(
            never_started(&base).unwrap().class,
            FailureClass::NeverStarted
        );
        let node = ["a100-1".to_string()];
        for ran in [
            Reached {
                nodes: &node,
                ..base
            },
            Reached {
                outcome: true,
                ..base
            },
            Reached {
                seen_running: true,
                ..base
            },
            Reached {
                state: Some(&JobState::Cancelled),
                ..base
            },
            Reached {
                state: Some(&JobState::Pending),
                ..base
            },
            Reached {
                state: None,
                ..base
            },
        ] {
            assert!(never_started(&ran).is_none(), "{ran:?}");
        }
    }
}
