//! `shepherd tui --remotes`: the runs of named remotes beside the local ones.
//!
//! One loader thread per remote asks `list --json` over the remote's shared
//! ssh connection (the `--remote` machinery: bootstrap, `ControlMaster=auto`)
//! every [`REMOTE_EVERY`]; a failure is a message like any answer, so a lost
//! connection is a banner, never a frozen screen, and the next ask opens a
//! new connection by itself. One more thread follows the selected remote
//! run's journal and log the same way. Nothing here runs on the UI thread.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use jiff::Timestamp;

use super::app::Msg;
use super::clean;
use super::data::{DetailRequest, DetailUpdate, LOG_LINES, LogChunk, RunRow, split_key};
use super::loaders::{DetailBox, clean_doc};
use crate::remote::registry::Remote;
use crate::store::logs::Stream;
use crate::store::runs::JournalEntry;
use crate::view::RunDoc;

/// How often each remote's run list is asked for (each ask is one round
/// trip over the shared connection).
pub const REMOTE_EVERY: Duration = Duration::from_secs(10);
/// How often the selected remote run's journal and log are asked for.
pub const REMOTE_DETAIL_EVERY: Duration = Duration::from_secs(3);
/// Lines of a remote log asked for at each look (`logs -n`).
pub const REMOTE_LOG_LINES: usize = 500;

/// The remotes named on the command line (`--remotes a,b`), in that order;
/// none named: every remote of the registry.
pub fn pick(all: Vec<Remote>, names: &[String]) -> anyhow::Result<Vec<Remote>> {
    if names.is_empty() {
        if all.is_empty() {
            bail!("no remotes; add one with `shepherd remotes add NAME --host HOST`");
        }
        return Ok(all);
    }
    let mut out: Vec<Remote> = Vec::new();
    for name in names {
        let Some(r) = all.iter().find(|r| &r.name == name) else {
            bail!("no remote named {name:?}; `shepherd remotes list` shows them");
        };
        if !out.iter().any(|o| o.name == r.name) {
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// The rows of a remote's `list --json` answer, labelled by the remote.
/// A run id that is not one (it would break the `REMOTE/RUN` keys) is left
/// out.
pub fn parse_runs(remote: &str, answer: &serde_json::Value) -> Result<Vec<RunRow>, String> {
    let runs = answer
        .get("runs")
        .cloned()
        .ok_or_else(|| "unreadable answer: no runs".to_string())?;
    let docs: Vec<RunDoc> =
        serde_json::from_value(runs).map_err(|e| format!("unreadable answer: {e}"))?;
    Ok(docs
        .into_iter()
        .filter(|d| d.run_id.parse::<crate::model::RunId>().is_ok())
        .map(|mut doc| {
            clean_doc(&mut doc);
            RunRow::on_remote(remote, doc)
        })
        .collect())
}

/// One answer of a remote: its rows, or why there are none this time.
pub struct RemoteRead {
    pub runs: Result<Vec<RunRow>, String>,
    pub at: Timestamp,
}

/// The newest answer of each remote, waiting for the UI (one slot per
/// remote: a UI that is behind takes the newest, never a queue).
#[derive(Clone, Default)]
pub struct LatestRemotes(Arc<Mutex<BTreeMap<String, RemoteRead>>>);

impl LatestRemotes {
    pub fn put(&self, remote: &str, read: RemoteRead) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(remote.to_string(), read);
    }

    /// What waits, as messages for `update`.
    pub fn take(&self) -> Vec<Msg> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|(remote, read)| Msg::RemoteRuns {
                remote,
                runs: read.runs,
                at: read.at,
            })
            .collect()
    }
}

/// Asks `remote` for its runs every [`REMOTE_EVERY`], or at once when
/// `again` says so (after an action on one of its runs), until the UI is
/// gone. `again` holds at most one wake-up (a `sync_channel(1)`).
pub fn runs_thread(
    remote: Remote,
    tx: Sender<Msg>,
    latest: LatestRemotes,
    again: Receiver<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("remote {}", remote.name))
        .spawn(move || {
            loop {
                let runs = crate::remote::remote_json(&remote, &["list", "--json"])
                    .map_err(|e| e.to_string())
                    .and_then(|answer| parse_runs(&remote.name, &answer))
                    .map_err(|e| clean::line(&e));
                latest.put(
                    &remote.name,
                    RemoteRead {
                        runs,
                        at: Timestamp::now(),
                    },
                );
                if tx.send(Msg::Wake).is_err() {
                    return;
                }
                match again.recv_timeout(REMOTE_EVERY) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    // The UI is gone.
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    Ok(())
}

/// What the remote detail loader remembers between looks.
#[derive(Default)]
struct Watch {
    /// The journal's length and newest time, as last sent.
    events: Option<(usize, Option<Timestamp>)>,
    /// The log lines as last received (`None`: nothing sent yet).
    log: Option<Vec<String>>,
}

/// Follows the selected remote run (a request whose run is `REMOTE/RUN`):
/// its journal (`events RUN --json`) and log (`logs RUN -n 500 --json`),
/// every [`REMOTE_DETAIL_EVERY`] and at once when the selection changes.
pub fn detail_thread(
    remotes: Vec<Remote>,
    tx: Sender<Msg>,
    requests: Receiver<Option<DetailRequest>>,
    mailbox: DetailBox,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("remote detail".into())
        .spawn(move || {
            let mut requests = super::loaders::Requests::new(requests, REMOTE_DETAIL_EVERY);
            let mut watch = Watch::default();
            loop {
                match requests.next() {
                    None => return,
                    Some(true) => watch = Watch::default(),
                    Some(false) => {}
                }
                let Some(req) = requests.want() else { continue };
                let (Some(name), run) = split_key(&req.run) else {
                    continue;
                };
                let Some(remote) = remotes.iter().find(|r| r.name == name) else {
                    continue;
                };
                let events = crate::remote::remote_json(remote, &["events", run, "--json"])
                    .map_err(|e| e.to_string());
                let mut words = vec![
                    "logs".to_string(),
                    run.to_string(),
                    "-n".into(),
                    REMOTE_LOG_LINES.to_string(),
                    "--json".into(),
                ];
                if req.stream == Stream::Stderr {
                    words.push("--stderr".into());
                }
                if let Some(k) = req.attempt {
                    words.extend(["--attempt".to_string(), k.to_string()]);
                }
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let log =
                    crate::remote::remote_json_lines(remote, &words).map_err(|e| e.to_string());
                let updates = look(req, &mut watch, events, log);
                if !updates.is_empty() {
                    mailbox.put(req, updates);
                    if tx.send(Msg::Wake).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// What changed since the last look, from the remote's answers.
fn look(
    req: &DetailRequest,
    w: &mut Watch,
    events: Result<serde_json::Value, String>,
    log: Result<Vec<serde_json::Value>, String>,
) -> Vec<DetailUpdate> {
    let mut out = Vec::new();
    if let Ok(doc) = events
        && let Some(evs) = doc.get("events").cloned()
        && let Ok(mut ev) = serde_json::from_value::<Vec<JournalEntry>>(evs)
    {
        let sig = (ev.len(), ev.last().map(|e| e.time));
        if w.events != Some(sig) {
            w.events = Some(sig);
            if ev.len() > 2_000 {
                ev.drain(..ev.len() - 2_000);
            }
            for e in &mut ev {
                e.kind = clean::line(&e.kind);
                e.message = clean::line(&e.message);
                e.status = clean::line(&e.status);
            }
            out.push(DetailUpdate::Events(ev));
        }
    }
    let chunk = match log {
        Ok(values) => {
            let attempt = values
                .iter()
                .rev()
                .find_map(|v| v["attempt"].as_u64())
                .and_then(|a| u32::try_from(a).ok())
                .or(req.attempt);
            let lines: Vec<String> = values
                .iter()
                .filter_map(|v| v["line"].as_str().map(clean::line))
                .collect();
            log_chunk(&mut w.log, lines, attempt, req.stream)
        }
        // Shown once, while there is nothing else to show; a connection
        // that fails later keeps the lines (the banner says why).
        Err(e) if w.log.is_none() => {
            w.log = Some(Vec::new());
            Some(LogChunk {
                attempt: req.attempt,
                stream: req.stream,
                path: None,
                reset: true,
                lines: vec![],
                partial: None,
                size: 0,
                note: Some(format!("cannot read the log: {}", clean::line(&e))),
            })
        }
        Err(_) => None,
    };
    out.extend(chunk.map(DetailUpdate::Log));
    out
}

/// The log's last lines as a change to what was shown: the new lines when
/// the tail moved on (the old tail overlaps the new one's start), all of
/// them otherwise; nothing when nothing changed.
pub fn log_chunk(
    shown: &mut Option<Vec<String>>,
    lines: Vec<String>,
    attempt: Option<u32>,
    stream: Stream,
) -> Option<LogChunk> {
    let chunk = |reset: bool, lines: Vec<String>, size: usize| LogChunk {
        attempt,
        stream,
        path: None,
        reset,
        note: (reset && lines.is_empty()).then(|| "no output yet".to_string()),
        lines,
        partial: None,
        size: size as u64,
    };
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    let Some(old) = shown.as_ref() else {
        *shown = Some(lines.clone());
        return Some(chunk(true, lines, total));
    };
    if *old == lines {
        return None;
    }
    // The longest end of the old tail that begins the new one.
    let most = old.len().min(lines.len());
    let overlap = (1..=most)
        .rev()
        .find(|&k| old[old.len() - k..] == lines[..k]);
    let out = match overlap {
        Some(k) => chunk(false, lines[k..].to_vec(), total),
        None => chunk(true, lines.clone(), total),
    };
    *shown = Some(lines);
    debug_assert!(out.lines.len() <= LOG_LINES);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(name: &str) -> Remote {
        Remote {
            name: name.into(),
            host: format!("{name}-login"),
            remote_dir: None,
            setup: None,
        }
    }

    #[test]
    fn tui_remotes_are_picked_by_name_or_all() {
        let all = vec![remote("a100"), remote("h100")];
        let names = |v: Vec<Remote>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(pick(all.clone(), &[]).unwrap()), ["a100", "h100"]);
        assert_eq!(
            names(pick(all.clone(), &["h100".into(), "h100".into()]).unwrap()),
            ["h100"]
        );
        let err = pick(all, &["v100".into()]).unwrap_err().to_string();
        assert!(err.contains("no remote named \"v100\""), "{err}");
        assert!(pick(vec![], &[]).is_err());
    }

    #[test]
    fn tui_remote_list_answers_become_labelled_rows() {
        let answer = serde_json::json!({
            "schema_version": 1,
            "runs": [{
                "run_id": "train", "status": "running", "reason": "job \u{1b}[31m7",
                "mode": "run_once", "paused": false, "slurm_job_id": 7, "node": "n1",
                "partition": "gpu", "workload_failures": 0, "max_retries": 3,
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "run_dir": "/state/runs/train",
                "attempts": [{"attempt": 1, "job_id": 7, "phase": "running",
                    "partition": "gpu", "node": "n1", "restarts": 0,
                    "submitted_at": "2026-01-01T00:00:00Z", "running_since": null,
                    "ended_at": null, "outcome": null, "blame": null,
                    "slurm_state": null, "exit_code": null, "detail": null}],
                "error": null
            }, {
                "run_id": "../evil", "status": "running",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            }]
        });
        let rows = parse_runs("a100", &answer).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id(), "a100/train");
        assert_eq!(rows[0].remote(), Some("a100"));
        assert_eq!(rows[0].run_id(), "train");
        assert_eq!(rows[0].doc.attempts[0].job_id, Some(7));
        assert!(!rows[0].doc.reason.contains('\u{1b}'));
        assert!(parse_runs("a100", &serde_json::json!({"nope": 1})).is_err());
    }

    #[test]
    fn tui_remote_log_tails_become_appended_lines() {
        let v = |r: std::ops::Range<usize>| r.map(|i| format!("l{i}")).collect::<Vec<_>>();
        let mut shown = None;
        let first = log_chunk(&mut shown, v(0..5), Some(1), Stream::Stdout).unwrap();
        assert!(first.reset && first.lines == v(0..5));
        assert!(log_chunk(&mut shown, v(0..5), Some(1), Stream::Stdout).is_none());
        // The tail moved on (the window slid): only the new lines.
        let next = log_chunk(&mut shown, v(2..8), Some(1), Stream::Stdout).unwrap();
        assert!(!next.reset && next.lines == v(5..8), "{next:?}");
        // Something else entirely (another attempt, a truncation): all of it.
        let other = log_chunk(&mut shown, v(100..102), Some(2), Stream::Stdout).unwrap();
        assert!(other.reset && other.lines == v(100..102));
        let mut empty = None;
        let c = log_chunk(&mut empty, vec![], None, Stream::Stdout).unwrap();
        assert!(c.reset && c.note.is_some());
    }

    #[test]
    fn tui_remote_detail_sends_changes_and_keeps_lines_when_the_connection_fails() {
        let req = DetailRequest {
            run: "a100/train".into(),
            generation: 1,
            attempt: None,
            stream: Stream::Stdout,
        };
        let events = serde_json::json!({"schema_version": 1, "events": [{
            "time": "2026-01-01T00:00:00Z", "kind": "submitted", "attempt": 1,
            "job_id": 7, "message": "attempt 1 is job 7", "status": "pending"}]});
        let line = |s: &str| serde_json::json!({"run_id": "train", "attempt": 1, "stream": "stdout", "line": s});
        let mut w = Watch::default();
        let first = look(&req, &mut w, Ok(events.clone()), Ok(vec![line("a")]));
        assert!(
            matches!(&first[..], [DetailUpdate::Events(e), DetailUpdate::Log(c)]
            if e.len() == 1 && c.reset && c.lines == ["a"] && c.attempt == Some(1))
        );
        assert!(look(&req, &mut w, Ok(events.clone()), Ok(vec![line("a")])).is_empty());
        // The connection is lost: nothing replaces what is shown.
        let msg = "the ssh connection to a100-login failed";
        fn lost<T>(m: &str) -> Result<T, String> {
            Err(m.to_string())
        }
        assert!(look(&req, &mut w, lost(msg), lost(msg)).is_empty());
        let back = look(&req, &mut w, Ok(events), Ok(vec![line("a"), line("b")]));
        assert!(matches!(&back[..], [DetailUpdate::Log(c)] if !c.reset && c.lines == ["b"]));
        // Unreachable from the start: a note, once.
        let mut w = Watch::default();
        let first = look(&req, &mut w, lost(msg), lost(msg));
        assert!(
            matches!(&first[..], [DetailUpdate::Log(c)] if c.note.as_deref().is_some_and(|n| n.contains("ssh connection")))
        );
        assert!(look(&req, &mut w, lost(msg), lost(msg)).is_empty());
    }
}
