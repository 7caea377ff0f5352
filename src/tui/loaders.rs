//! The threads that read the store and ask Slurm, so the UI thread never
//! waits on a filesystem or a controller. Each sends [`Msg`]s and ends when
//! the UI is gone (its channel closes).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::app::Msg;
use super::clean;
use super::data::{
    ClusterSnapshot, DetailRequest, DetailUpdate, LOG_LINES, LogChunk, RunExtra, RunRow,
};
use crate::model::RunId;
use crate::placement::catalog::Catalog;
use crate::placement::inventory::partition_gpus;
use crate::records::{HEARTBEAT_VERSION, Heartbeat};
use crate::slurm::{JobId, Slurm};
use crate::store::StateDir;
use crate::store::atomic;
use crate::store::logs::{Stream, attempt_file};
use crate::view::RunDoc;

/// How often the run list is re-read.
pub const RUNS_EVERY: Duration = Duration::from_secs(2);
/// How often Slurm is asked (each answer costs the controller a query).
pub const SLURM_EVERY: Duration = Duration::from_secs(10);
/// How often the selected run's files are re-read (the live log tail).
pub const DETAIL_EVERY: Duration = Duration::from_millis(500);
/// At most this much of a log is read at once: a log that grew by more
/// shows only its end.
const LOG_READ_MAX: u64 = 2 * 1024 * 1024;

/// Reads every run, with the live attempt's last heartbeat.
pub fn load_runs(sd: &StateDir) -> Result<Vec<RunRow>, String> {
    // Ended runs from the list cache: at 10,000 runs a refresh costs
    // ~35 ms instead of ~160 ms of file reads.
    let docs = crate::view::listing::run_docs(sd).map_err(|e| clean::line(&e.to_string()))?;
    Ok(docs
        .into_iter()
        .map(|mut doc| {
            let heartbeat = heartbeat_of(sd, &doc);
            clean_doc(&mut doc);
            RunRow { doc, heartbeat }
        })
        .collect())
}

/// The run's free text (reasons, Slurm's words, failure details) made safe
/// for the terminal.
pub(crate) fn clean_doc(doc: &mut RunDoc) {
    doc.reason = clean::line(&doc.reason);
    clean::word(&mut doc.status);
    clean::opt(&mut doc.error);
    clean::opt(&mut doc.node);
    clean::opt(&mut doc.partition);
    for a in &mut doc.attempts {
        clean::opt(&mut a.detail);
        clean::opt_word(&mut a.outcome);
        clean::opt_word(&mut a.blame);
        clean::opt(&mut a.slurm_state);
        clean::opt(&mut a.node);
        clean::opt(&mut a.partition);
    }
}

fn heartbeat_of(sd: &StateDir, doc: &RunDoc) -> Option<Timestamp> {
    let a = doc.attempts.last().filter(|a| a.ended_at.is_none())?;
    let job = JobId(a.job_id?);
    let id = doc.run_id.parse::<RunId>().ok()?;
    let path = sd
        .run(&id)
        .attempt(a.dir_attempt())
        .heartbeat(job, a.restarts);
    atomic::read_json::<Heartbeat>(&path, HEARTBEAT_VERSION)
        .ok()
        .map(|h| h.time)
}

/// When a loader's current read of the filesystem started, shared with the
/// UI: a read that hangs (a dead NFS server) shows as a banner with its age
/// instead of a list that silently stops changing.
#[derive(Debug, Clone, Default)]
pub struct Reading(Arc<AtomicI64>);

impl Reading {
    fn start(&self) {
        self.0
            .store(Timestamp::now().as_millisecond().max(1), Ordering::SeqCst);
    }

    fn done(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// When the read in progress started; `None`: none is.
    pub fn since(&self) -> Option<Timestamp> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            ms => Timestamp::from_millisecond(ms).ok(),
        }
    }
}

/// The newest run list, waiting for the UI: a UI that is behind (blocked
/// on its terminal) takes the newest list when it wakes, not every list
/// read meanwhile.
#[derive(Debug, Clone, Default)]
pub struct LatestRuns(Arc<Mutex<Option<RunsRead>>>);

/// One read of the run list.
type RunsRead = Result<Vec<RunRow>, String>;

impl LatestRuns {
    fn put(&self, runs: RunsRead) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(runs);
    }

    /// The list waiting, as a message for `update`.
    pub fn take(&self) -> Option<Msg> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(Msg::Runs)
    }
}

pub fn runs_thread(
    sd: StateDir,
    tx: Sender<Msg>,
    latest: LatestRuns,
    reading: Reading,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("runs".into())
        .spawn(move || {
            loop {
                reading.start();
                let runs = load_runs(&sd);
                let watch = crate::view::daemon::Watch::of(&sd);
                reading.done();
                latest.put(runs);
                if tx.send(Msg::Watch(watch)).is_err() {
                    return;
                }
                // A wake-up, not the list: a few bytes even when the UI is
                // stuck.
                if tx.send(Msg::Wake).is_err() {
                    return;
                }
                std::thread::sleep(RUNS_EVERY);
            }
        })?;
    Ok(())
}

/// One answer: nodes, partitions, switches, and the blacklist applied.
pub fn load_cluster(slurm: &dyn Slurm, sd: &StateDir) -> Result<ClusterSnapshot, String> {
    let cluster = slurm.cluster().map_err(|e| e.to_string())?.name;
    let nodes = slurm.nodes().map_err(|e| e.to_string())?;
    let partitions = slurm.partitions().map_err(|e| e.to_string())?;
    // Without a topology plugin there are no switches; not an error.
    let switches = slurm.topology().unwrap_or_default();
    let now = Timestamp::now();
    let bl = sd
        .load_blacklist(&cluster)
        .map_err(|e| format!("cannot read the blacklist: {e}"))?;
    let known: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let banned = bl.exclude_list(&known, now);
    let gpus = partition_gpus(&partitions, &nodes, &banned, &Catalog::builtin())
        .into_iter()
        .filter(|v| v.gpus_total > 0)
        .collect();
    let mut doc = crate::view::nodes::nodes_doc(&cluster, &nodes, &switches, &bl, now);
    for n in &mut doc.nodes {
        n.state = clean::line(&n.state);
        clean::opt(&mut n.admin_reason);
        clean::opt(&mut n.switch);
        clean::opt(&mut n.gpu_type);
        if let Some(b) = &mut n.banned {
            b.reason = clean::line(&b.reason);
        }
    }
    Ok(ClusterSnapshot {
        cluster,
        nodes: doc,
        gpus,
        fetched_at: now,
    })
}

/// Asks Slurm every [`SLURM_EVERY`], or at once when `refresh` says so
/// (after a ban).
pub fn slurm_thread(
    slurm: Box<dyn Slurm>,
    sd: StateDir,
    tx: Sender<Msg>,
    refresh: Receiver<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("slurm".into())
        .spawn(move || {
            loop {
                if tx.send(Msg::SlurmAsking(Timestamp::now())).is_err() {
                    return;
                }
                let answer = load_cluster(slurm.as_ref(), &sd).map_err(|e| clean::text(&e));
                if tx.send(Msg::Cluster(answer)).is_err() {
                    return;
                }
                match refresh.recv_timeout(SLURM_EVERY) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => while refresh.try_recv().is_ok() {},
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    Ok(())
}

/// Longest unfinished line kept, in bytes (its end): a progress bar that
/// only ever writes `\r` never grows past it.
pub const PARTIAL_MAX: usize = 64 * 1024;

/// Follows one log file: what was appended since the last look, bounded.
#[derive(Debug, Default)]
pub struct LogFollower {
    path: Option<PathBuf>,
    /// The file's (device, inode): another file at the same path (the log
    /// was rotated or replaced) starts again.
    file: Option<(u64, u64)>,
    offset: u64,
    /// The unfinished last line, as bytes (a character may be cut between
    /// reads), at most [`PARTIAL_MAX`] of its end.
    partial: Vec<u8>,
    /// The unfinished line as last returned.
    shown: Option<String>,
}

/// What [`LogFollower::poll`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// The lines replace what was shown (first look, truncation, rotation,
    /// or a jump over more than [`LOG_READ_MAX`]).
    pub reset: bool,
    /// New complete lines, cleaned.
    pub lines: Vec<String>,
    /// The unfinished last line as a terminal would show it now (what
    /// follows its last `\r`), cleaned; `None`: there is none.
    pub partial: Option<String>,
    /// Whether `partial` differs from the last poll's.
    pub partial_changed: bool,
    /// The file's size.
    pub size: u64,
}

impl LogFollower {
    /// New complete lines of `path`, and the unfinished one. The first look
    /// and any jump reads at most [`LOG_READ_MAX`] from the end, so the
    /// file's size never matters.
    pub fn poll(&mut self, path: &Path) -> std::io::Result<Polled> {
        use std::os::unix::fs::MetadataExt;
        let mut reset = false;
        if self.path.as_deref() != Some(path) {
            *self = LogFollower {
                path: Some(path.to_path_buf()),
                ..LogFollower::default()
            };
            reset = true;
        }
        let mut f = File::open(path)?;
        let meta = f.metadata()?;
        let len = meta.len();
        let file = Some((meta.dev(), meta.ino()));
        if self.file.is_some() && self.file != file {
            // Rotated or replaced: the new file from its start.
            self.offset = 0;
            self.partial.clear();
            reset = true;
        }
        self.file = file;
        if len < self.offset {
            // Truncated: start again.
            self.offset = 0;
            self.partial.clear();
            reset = true;
        }
        let mut lines = Vec::new();
        if len > self.offset {
            let mut from = self.offset;
            let mut skipped = false;
            if len - from > LOG_READ_MAX {
                from = len - LOG_READ_MAX;
                self.partial.clear();
                skipped = true;
                reset = true;
            }
            f.seek(SeekFrom::Start(from))?;
            let mut buf = Vec::with_capacity((len - from) as usize);
            f.take(len - from).read_to_end(&mut buf)?;
            self.offset = from + buf.len() as u64;
            let mut rest = &buf[..];
            if skipped {
                // The first line read is probably cut: drop it (but a file
                // without a newline is all one unfinished line).
                if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                    rest = &rest[i + 1..];
                }
            }
            // Complete lines: only those are decoded, so a character split
            // between two reads is never turned into `�`; and only the
            // newest LOG_LINES of them, as no more are kept.
            let mut pieces: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
            // What follows the last newline is not a line yet.
            let tail = pieces.pop().unwrap_or_default();
            let mut held = std::mem::take(&mut self.partial);
            let skip = pieces.len().saturating_sub(LOG_LINES);
            for (i, piece) in pieces.iter().enumerate() {
                if i == 0 {
                    // The bytes held from the last look begin this line.
                    held.extend_from_slice(piece);
                    if skip == 0 {
                        lines.push(decode_line(&held));
                    }
                    held.clear();
                } else if i >= skip {
                    lines.push(decode_line(piece));
                }
            }
            held.extend_from_slice(tail);
            if held.len() > PARTIAL_MAX {
                let mut cut = held.len() - PARTIAL_MAX;
                // Never start inside a character.
                while cut < held.len() && (held[cut] & 0xc0) == 0x80 {
                    cut += 1;
                }
                held.drain(..cut);
            }
            self.partial = held;
        }
        let partial = if self.partial.is_empty() {
            None
        } else {
            let complete = complete_utf8(&self.partial);
            Some(clean::line(&String::from_utf8_lossy(
                &self.partial[..complete],
            )))
        };
        let partial_changed = partial != self.shown;
        self.shown = partial.clone();
        Ok(Polled {
            reset,
            lines,
            partial,
            partial_changed,
            size: len,
        })
    }
}

impl LogFollower {
    /// Bytes held of the unfinished line.
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }
}

fn decode_line(b: &[u8]) -> String {
    clean::line(&String::from_utf8_lossy(b))
}

/// How much of `b` ends on a whole character: a character cut at the end
/// (the rest not written yet) is left out.
fn complete_utf8(b: &[u8]) -> usize {
    let n = b.len();
    // The last character's first byte, within the last 4.
    for back in 1..=n.min(4) {
        let lead = b[n - back];
        if (lead & 0xc0) == 0x80 {
            continue;
        }
        let want = match lead {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if want > back { n - back } else { n };
    }
    n
}

/// The detail loader's updates waiting for the UI, merged: one of each
/// kind, log lines appended (at most [`LOG_LINES`]), so a UI that is behind
/// never has more than one log tail queued.
#[derive(Debug, Clone, Default)]
pub struct DetailBox(Arc<Mutex<Pending>>);

#[derive(Debug, Default)]
struct Pending {
    req: Option<DetailRequest>,
    events: Option<Vec<crate::store::runs::JournalEntry>>,
    script: Option<Result<String, String>>,
    extra: Option<RunExtra>,
    log: Option<LogChunk>,
}

impl DetailBox {
    /// Adds updates for `req`; what waits for another request is dropped.
    pub fn put(&self, req: &DetailRequest, updates: Vec<DetailUpdate>) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.req.as_ref() != Some(req) {
            *p = Pending {
                req: Some(req.clone()),
                ..Pending::default()
            };
        }
        for u in updates {
            match u {
                DetailUpdate::Events(e) => p.events = Some(e),
                DetailUpdate::Script(s) => p.script = Some(s),
                DetailUpdate::Extra(x) => p.extra = Some(x),
                DetailUpdate::Log(c) => {
                    p.log = Some(match p.log.take() {
                        Some(old) if !c.reset => merge(old, c),
                        _ => c,
                    })
                }
            }
        }
    }

    /// What is waiting, as messages for `update`.
    pub fn take(&self) -> Vec<Msg> {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let p = std::mem::take(&mut *p);
        let Some(req) = p.req else {
            return Vec::new();
        };
        [
            p.events.map(DetailUpdate::Events),
            p.script.map(DetailUpdate::Script),
            p.extra.map(DetailUpdate::Extra),
            p.log.map(DetailUpdate::Log),
        ]
        .into_iter()
        .flatten()
        .map(|u| Msg::Detail(req.clone(), u))
        .collect()
    }
}

/// `new` appended to `old` (which keeps its `reset`).
fn merge(mut old: LogChunk, new: LogChunk) -> LogChunk {
    old.lines.extend(new.lines);
    if old.lines.len() > LOG_LINES {
        old.lines.drain(..old.lines.len() - LOG_LINES);
    }
    old.attempt = new.attempt;
    old.stream = new.stream;
    old.path = new.path;
    old.partial = new.partial;
    old.size = new.size;
    old.note = new.note;
    old
}

/// What the detail loader remembers between looks, to send only changes.
#[derive(Default)]
struct Watch {
    events_len: Option<u64>,
    script_sent: bool,
    extra: Option<RunExtra>,
    log: LogFollower,
    log_key: Option<(Option<u32>, Stream, Option<PathBuf>)>,
}

/// Re-reads the selected run's files every [`DETAIL_EVERY`], and at once
/// when the selection changes.
pub fn detail_thread(
    sd: StateDir,
    tx: Sender<Msg>,
    requests: Receiver<Option<DetailRequest>>,
    mailbox: DetailBox,
    reading: Reading,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("detail".into())
        .spawn(move || {
            let mut requests = Requests::new(requests, DETAIL_EVERY);
            let mut watch = Watch::default();
            loop {
                match requests.next() {
                    None => return,
                    Some(true) => watch = Watch::default(),
                    Some(false) => {}
                }
                let Some(req) = requests.want() else { continue };
                reading.start();
                let updates = look(&sd, req, &mut watch);
                reading.done();
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

/// The newest detail request and when to look again, for a detail thread
/// (local or remote): requests that queued up meanwhile collapse into the
/// last one.
pub(super) struct Requests {
    rx: Receiver<Option<DetailRequest>>,
    want: Option<DetailRequest>,
    next: Instant,
    every: Duration,
}

impl Requests {
    pub(super) fn new(rx: Receiver<Option<DetailRequest>>, every: Duration) -> Requests {
        Requests {
            rx,
            want: None,
            next: Instant::now(),
            every,
        }
    }

    /// Waits until it is time to look (or a request arrives). `None`: the
    /// UI is gone; `Some(true)`: the request changed, so what was watched
    /// starts afresh.
    pub(super) fn next(&mut self) -> Option<bool> {
        let wait = self.next.saturating_duration_since(Instant::now());
        let mut changed = false;
        match self.rx.recv_timeout(wait) {
            Ok(mut r) => {
                while let Ok(newer) = self.rx.try_recv() {
                    r = newer;
                }
                if r != self.want {
                    self.want = r;
                    changed = true;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
        self.next = Instant::now() + self.every;
        Some(changed)
    }

    pub(super) fn want(&self) -> Option<&DetailRequest> {
        self.want.as_ref()
    }
}

fn look(sd: &StateDir, req: &DetailRequest, w: &mut Watch) -> Vec<DetailUpdate> {
    let mut out = Vec::new();
    let Ok(id) = req.run.parse::<RunId>() else {
        return out;
    };
    let run = sd.run(&id);
    let events_len = std::fs::metadata(run.events()).ok().map(|m| m.len());
    if w.events_len.is_none() || events_len != w.events_len {
        w.events_len = events_len.or(Some(0));
        if let Ok(mut ev) = run.read_events() {
            // The journal can be long; the pane shows the newest.
            if ev.len() > 2_000 {
                ev.drain(..ev.len() - 2_000);
            }
            for e in &mut ev {
                e.kind = clean::line(&e.kind);
                e.message = clean::line(&e.message);
            }
            out.push(DetailUpdate::Events(ev));
        }
    }
    if !w.script_sent {
        w.script_sent = true;
        out.push(DetailUpdate::Script(read_script(&run.script())));
    }
    let (spec, state) = match run.load_spec() {
        Ok(spec) => {
            let state = run
                .load_state()
                .ok()
                .flatten()
                .unwrap_or_else(|| crate::policy::state::RunState::new(spec.created_at));
            (spec, state)
        }
        Err(_) => return out,
    };
    let live = state.live_attempt();
    let extra = RunExtra {
        pending_reason: live.and_then(|a| a.pending_reason.as_deref().map(clean::line)),
        live_phase: live.map(|a| a.phase),
        not_before: state.not_before,
    };
    if w.extra.as_ref() != Some(&extra) {
        w.extra = Some(extra.clone());
        out.push(DetailUpdate::Extra(extra));
    }
    // The log: the attempt asked for, or the newest with a job.
    let attempt = match req.attempt {
        Some(k) => state.attempts.iter().find(|a| a.attempt == k),
        None => state.attempts.iter().rev().find(|a| a.job_id.is_some()),
    };
    let target = attempt.and_then(|a| {
        let job = a.job_id?;
        Some((
            a.attempt,
            attempt_file(
                &spec,
                &run,
                a.dir_attempt(),
                job,
                a.node.as_deref(),
                req.stream,
            ),
        ))
    });
    let key = (
        target.as_ref().map(|t| t.0),
        req.stream,
        target.as_ref().map(|t| t.1.clone()),
    );
    let changed = w.log_key.as_ref() != Some(&key);
    if changed {
        w.log_key = Some(key);
        w.log = LogFollower::default();
    }
    let chunk = match &target {
        None => changed.then(|| LogChunk {
            attempt: None,
            stream: req.stream,
            path: None,
            reset: true,
            lines: vec![],
            partial: None,
            size: 0,
            note: Some("no job yet: nothing to show".into()),
        }),
        Some((k, path)) => match w.log.poll(path) {
            Ok(p) => {
                (p.reset || changed || !p.lines.is_empty() || p.partial_changed).then(|| LogChunk {
                    attempt: Some(*k),
                    stream: req.stream,
                    path: Some(path.clone()),
                    reset: p.reset || changed,
                    lines: p.lines,
                    partial: p.partial,
                    size: p.size,
                    note: None,
                })
            }
            Err(e) => changed.then(|| LogChunk {
                attempt: Some(*k),
                stream: req.stream,
                path: Some(path.clone()),
                reset: true,
                lines: vec![],
                partial: None,
                size: 0,
                note: Some(if e.kind() == std::io::ErrorKind::NotFound {
                    "no output yet (the job may not have started)".into()
                } else {
                    format!("cannot read the log: {e}")
                }),
            }),
        },
    };
    if let Some(c) = chunk {
        out.push(DetailUpdate::Log(c));
    }
    out
}

/// The script snapshot, at most 1 MB of it.
fn read_script(path: &Path) -> Result<String, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(1024 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    Ok(clean::text(&String::from_utf8_lossy(&buf)))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::policy::decide::Event;
    use crate::policy::state::{Attempt, AttemptPhase, RunState, RunStatus};
    use crate::records::Phase;

    /// A run created as `shepherd run` does, with one running attempt (job
    /// 42 on n1), a journal, a heartbeat and some output.
    fn fixture() -> (tempfile::TempDir, StateDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path().join("state"));
        let script = dir.path().join("train.sh");
        std::fs::write(&script, "#!/bin/bash\n#SBATCH --time=1:00:00\necho hi\n").unwrap();
        let now = Timestamp::now();
        let prepared = crate::submit::prepare(
            &script,
            Default::default(),
            Default::default(),
            dir.path(),
            now,
        )
        .unwrap();
        let run = crate::submit::create(&sd, &prepared).unwrap();
        let mut state = RunState::new(now);
        state.status = RunStatus::Running;
        let mut a = Attempt::new(1, now);
        a.phase = AttemptPhase::Running;
        a.job_id = Some(JobId(42));
        a.node = Some("n1".into());
        a.running_since = Some(now);
        state.attempts.push(a);
        run.save_state(&state).unwrap();
        run.append_events(
            &[Event {
                kind: "submitted",
                attempt: Some(1),
                job_id: Some(JobId(42)),
                message: "attempt 1 is job 42".into(),
            }],
            "running",
            now,
        )
        .unwrap();
        let hb = run.attempt(1).heartbeat(JobId(42), 0);
        std::fs::create_dir_all(hb.parent().unwrap()).unwrap();
        atomic::write_json(
            &hb,
            &Heartbeat {
                version: HEARTBEAT_VERSION,
                run_id: "train".parse().unwrap(),
                attempt: 1,
                job_id: JobId(42),
                restarts: 0,
                node: "n1".into(),
                pid: 1,
                phase: Phase::Running,
                started_at: now,
                time: now,
                seq: 1,
                output_bytes: None,
                probes: Vec::new(),
                in_place: 0,
            },
        )
        .unwrap();
        let log = attempt_file(
            &run.load_spec().unwrap(),
            &run,
            1,
            JobId(42),
            Some("n1"),
            Stream::Stdout,
        );
        std::fs::write(&log, "line 1\nline 2\n").unwrap();
        (dir, sd, log)
    }

    #[test]
    fn tui_loads_runs_with_their_heartbeat() {
        let (_dir, sd, _) = fixture();
        let rows = load_runs(&sd).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id(), "train");
        assert!(rows[0].heartbeat.is_some());
    }

    #[test]
    fn tui_detail_loader_sends_changes_only() {
        let (_dir, sd, log) = fixture();
        let req = DetailRequest {
            run: "train".into(),
            generation: 0,
            attempt: None,
            stream: Stream::Stdout,
        };
        let mut w = Watch::default();
        let first = look(&sd, &req, &mut w);
        let mut saw = (false, false, false, false);
        for u in &first {
            match u {
                DetailUpdate::Events(e) => saw.0 = e.len() == 1,
                DetailUpdate::Script(s) => saw.1 = s.as_ref().unwrap().contains("echo hi"),
                DetailUpdate::Extra(x) => saw.2 = x.live_phase == Some(AttemptPhase::Running),
                DetailUpdate::Log(c) => {
                    saw.3 = c.reset && c.lines == ["line 1", "line 2"] && c.attempt == Some(1)
                }
            }
        }
        assert_eq!(saw, (true, true, true, true), "{first:?}");
        // Nothing changed: nothing sent.
        assert!(look(&sd, &req, &mut w).is_empty());
        // New output: only the new line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "line 3").unwrap();
        let next = look(&sd, &req, &mut w);
        assert!(
            matches!(&next[..], [DetailUpdate::Log(c)] if !c.reset && c.lines == ["line 3"]),
            "{next:?}"
        );
        // stderr has no file yet: a note, once.
        let err = DetailRequest {
            stream: Stream::Stderr,
            ..req
        };
        let next = look(&sd, &err, &mut w);
        assert!(
            matches!(&next[..], [DetailUpdate::Log(c)] if c.note.is_some()),
            "{next:?}"
        );
        assert!(look(&sd, &err, &mut w).is_empty());
    }

    #[test]
    fn tui_detail_loader_starts_afresh_for_a_new_generation() {
        let (_dir, sd, _) = fixture();
        let (tx, rx) = std::sync::mpsc::channel();
        let (req_tx, req_rx) = std::sync::mpsc::channel();
        let mailbox = DetailBox::default();
        detail_thread(sd, tx, req_rx, mailbox.clone(), Reading::default()).unwrap();
        let req = |generation| DetailRequest {
            run: "train".into(),
            generation,
            attempt: None,
            stream: Stream::Stdout,
        };
        // Everything for each generation, even the same run and log again.
        for generation in [1, 2, 3] {
            req_tx.send(Some(req(generation))).unwrap();
            let mut log = false;
            let mut script = false;
            while !(log && script) {
                assert!(matches!(
                    rx.recv_timeout(Duration::from_secs(10)).unwrap(),
                    Msg::Wake
                ));
                for m in mailbox.take() {
                    match m {
                        Msg::Detail(r, u) if r.generation == generation => match u {
                            DetailUpdate::Log(c) => {
                                log = c.reset && c.lines == ["line 1", "line 2"]
                            }
                            DetailUpdate::Script(_) => script = true,
                            _ => {}
                        },
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn tui_detail_mailbox_merges_while_the_ui_is_behind() {
        let req = DetailRequest {
            run: "train".into(),
            generation: 1,
            attempt: None,
            stream: Stream::Stdout,
        };
        let chunk = |reset: bool, from: usize, n: usize| {
            DetailUpdate::Log(LogChunk {
                attempt: Some(1),
                stream: Stream::Stdout,
                path: None,
                reset,
                lines: (from..from + n).map(|i| format!("line {i}")).collect(),
                partial: Some(format!("partial {from}")),
                size: (from + n) as u64,
                note: None,
            })
        };
        let mailbox = DetailBox::default();
        mailbox.put(&req, vec![chunk(true, 0, 10)]);
        // A stalled UI: a thousand looks' worth of output waits as one chunk
        // of at most LOG_LINES lines.
        for i in 0..1_000 {
            mailbox.put(
                &req,
                vec![
                    DetailUpdate::Extra(RunExtra::default()),
                    chunk(false, 10 + i * 100, 100),
                ],
            );
        }
        let msgs = mailbox.take();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        let Msg::Detail(_, DetailUpdate::Log(c)) = &msgs[1] else {
            panic!("{msgs:?}")
        };
        assert!(c.reset);
        assert_eq!(c.lines.len(), LOG_LINES);
        assert_eq!(c.lines.last().unwrap(), "line 100009");
        assert_eq!(c.partial.as_deref(), Some("partial 99910"));
        assert!(mailbox.take().is_empty());
        // A reset replaces what waits; another request drops it.
        mailbox.put(&req, vec![chunk(false, 0, 5), chunk(true, 7, 1)]);
        let msgs = mailbox.take();
        assert!(
            matches!(&msgs[..], [Msg::Detail(_, DetailUpdate::Log(c))] if c.lines == ["line 7"])
        );
        let other = DetailRequest {
            generation: 2,
            ..req.clone()
        };
        mailbox.put(&req, vec![chunk(true, 0, 5)]);
        mailbox.put(&other, vec![DetailUpdate::Extra(RunExtra::default())]);
        let msgs = mailbox.take();
        assert!(matches!(&msgs[..], [Msg::Detail(r, DetailUpdate::Extra(_))] if r.generation == 2));
    }
}
