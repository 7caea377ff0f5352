//! What the TUI shows, as plain data: built on the loader threads from the
//! store and Slurm, handed to the UI thread in messages, drawn from `&App`.

use std::collections::VecDeque;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::placement::inventory::PartitionGpus;
use crate::store::logs::Stream;
use crate::store::runs::JournalEntry;
use crate::view::RunDoc;
use crate::view::nodes::NodesDoc;

/// One run of the list: the shared document plus what only the TUI shows.
#[derive(Debug)]
pub struct RunRow {
    /// For a remote's run (`tui --remotes`), `run_id` is `REMOTE/RUN`: run
    /// ids cannot contain `/`, so it is unique across clusters (see
    /// [`RunRow::on_remote`]).
    pub doc: RunDoc,
    /// When the live attempt's wrapper last wrote a heartbeat (compute-node
    /// clock), if it has one.
    pub heartbeat: Option<Timestamp>,
}

/// Splits a key of [`RunRow::id`] (or a node named the same way) into the
/// remote, if any, and the run (or node) on it.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((remote, rest)) => (Some(remote), rest),
        None => (None, key),
    }
}

impl RunRow {
    /// A run of the named remote, as its `list --json` shows it (no
    /// heartbeat: the document has none): its id becomes `REMOTE/RUN`.
    pub fn on_remote(remote: &str, mut doc: RunDoc) -> RunRow {
        doc.run_id = format!("{remote}/{}", doc.run_id);
        RunRow {
            doc,
            heartbeat: None,
        }
    }

    /// The run's id, unique across clusters: what the selection, the
    /// detail requests and the effects name.
    pub fn id(&self) -> &str {
        &self.doc.run_id
    }

    /// The named remote the run lives on; `None`: this machine's.
    pub fn remote(&self) -> Option<&str> {
        split_key(&self.doc.run_id).0
    }

    /// The run's id on its own cluster.
    pub fn run_id(&self) -> &str {
        split_key(&self.doc.run_id).1
    }

    /// Attempts made, and Slurm requeues summed over them.
    pub fn attempts_restarts(&self) -> (usize, u32) {
        (
            self.doc.attempts.len(),
            self.doc.attempts.iter().map(|a| a.restarts).sum(),
        )
    }

    /// Whether the run may still change (shown first by the status sort).
    pub fn is_active(&self) -> bool {
        !self.doc.is_ended() && self.doc.error.is_none()
    }
}

/// One answer of Slurm plus the blacklist: the nodes and GPUs screens.
#[derive(Debug)]
pub struct ClusterSnapshot {
    pub cluster: String,
    pub nodes: NodesDoc,
    /// Partitions with GPUs.
    pub gpus: Vec<PartitionGpus>,
    pub fetched_at: Timestamp,
}

/// What the detail loader watches: the selected run and which log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailRequest {
    pub run: String,
    /// Bumped by the UI at every new selection, stream or attempt, even one
    /// that comes back to what was watched before: the loader starts afresh
    /// (and sends everything again) when it changes, and the UI drops
    /// answers to any other generation.
    pub generation: u64,
    /// `None`: the newest attempt that has a job.
    pub attempt: Option<u32>,
    pub stream: Stream,
}

/// What the detail pane knows beyond the run document, read from the run's
/// files for the selected run only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunExtra {
    /// Slurm's pending reason of the live attempt, as the daemon last saw it.
    pub pending_reason: Option<String>,
    /// The live attempt's phase (`pending`, `running`, …).
    pub live_phase: Option<crate::policy::state::AttemptPhase>,
    pub not_before: Option<Timestamp>,
}

/// One refresh from the detail loader.
#[derive(Debug)]
pub enum DetailUpdate {
    /// The run's journal (newest last), when it changed.
    Events(Vec<JournalEntry>),
    /// The script snapshot (or why it cannot be read).
    Script(Result<String, String>),
    Extra(RunExtra),
    /// New log text for the log being watched.
    Log(LogChunk),
}

/// New lines of a log. `reset`: the lines replace what is shown (another
/// attempt or stream, or the file was truncated).
#[derive(Debug)]
pub struct LogChunk {
    pub attempt: Option<u32>,
    pub stream: Stream,
    pub path: Option<PathBuf>,
    pub reset: bool,
    pub lines: Vec<String>,
    /// The unfinished last line (a progress bar redrawn with `\r`), shown
    /// live after the lines; replaces the previous one.
    pub partial: Option<String>,
    /// The file's size, for the header.
    pub size: u64,
    /// Why there is nothing to show (no job yet, file not created yet).
    pub note: Option<String>,
}

/// Lines kept of a log: the tail, never the whole file. Each is at most
/// [`super::clean::LINE_MAX`] bytes, so the tail holds at most about 20 MB.
pub const LOG_LINES: usize = 5_000;

/// The log tail held by the UI.
#[derive(Debug, Default)]
pub struct LogView {
    pub attempt: Option<u32>,
    pub path: Option<PathBuf>,
    pub size: u64,
    pub note: Option<String>,
    pub lines: VecDeque<String>,
    /// The unfinished last line, shown after `lines`.
    pub partial: Option<String>,
}

impl LogView {
    pub fn apply(&mut self, chunk: LogChunk) {
        if chunk.reset {
            self.lines.clear();
        }
        self.attempt = chunk.attempt;
        self.path = chunk.path;
        self.size = chunk.size;
        self.note = chunk.note;
        self.lines.extend(chunk.lines);
        self.partial = chunk.partial;
        while self.lines.len() > LOG_LINES {
            self.lines.pop_front();
        }
    }

    /// Lines shown: the complete ones and the unfinished one.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(self.partial.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th line shown.
    pub fn line(&self, i: usize) -> Option<&str> {
        match self.lines.get(i) {
            Some(l) => Some(l),
            None if i == self.lines.len() => self.partial.as_deref(),
            None => None,
        }
    }
}
