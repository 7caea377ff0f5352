//! The TUI's state and how messages change it. Pure: no terminal, files,
//! threads or clock; `now` arrives in messages, and what must happen outside
//! (controls, bans, new runs) comes back as [`Effect`]s for the shell to run.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use jiff::Timestamp;

use super::data::{ClusterSnapshot, DetailRequest, DetailUpdate, LogView, RunExtra, RunRow};
use super::keys::{Action, action_for};
use super::smoke::{Smoke, SmokeTarget};
use crate::policy::decide::Control;
use crate::store::logs::Stream;
use crate::store::runs::JournalEntry;

/// The three screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Runs,
    Nodes,
    Gpus,
}

/// The detail pane's tabs, in order (number keys 1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Info,
    Attempts,
    Events,
    Script,
    Logs,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Info,
        Tab::Attempts,
        Tab::Events,
        Tab::Script,
        Tab::Logs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Info => "info",
            Tab::Attempts => "attempts",
            Tab::Events => "events",
            Tab::Script => "script",
            Tab::Logs => "logs",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// How the run list is ordered (`o` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Active runs first, then newest first.
    Status,
    /// Newest first.
    Newest,
    /// By name.
    Name,
}

impl Sort {
    pub fn label(self) -> &'static str {
        match self {
            Sort::Status => "status",
            Sort::Newest => "newest",
            Sort::Name => "name",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Status => Sort::Newest,
            Sort::Newest => Sort::Name,
            Sort::Name => Sort::Status,
        }
    }
}

/// Which pane the movement keys act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Detail,
}

/// What a text prompt is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// Path of a script to run.
    NewRun,
    /// Ban duration for a node (empty: until unbanned).
    BanTtl {
        node: String,
    },
    BanReason {
        node: String,
        ttl: Option<Duration>,
    },
}

/// Something that changes the cluster or the runs, awaiting `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Stop {
        run: String,
    },
    /// Removing forgets the run's records for good.
    Remove {
        run: String,
    },
    Ban(Effect),
    /// Smoke-testing many nodes submits a job to each.
    Smoke(Effect),
}

/// What the keyboard is doing right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the run filter.
    Filter,
    /// Typing a log search.
    Search,
    Prompt {
        kind: PromptKind,
        input: String,
    },
    Confirm(Confirm),
    Help,
}

/// Work for the shell (off the UI thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Control {
        run: String,
        control: Control,
    },
    Ban {
        node: String,
        ttl: Option<Duration>,
        reason: String,
    },
    Unban {
        node: String,
    },
    /// `shepherd run PATH`.
    NewRun {
        path: String,
    },
    /// `shepherd rm RUN`: ended runs only, as on the command line.
    Remove {
        run: String,
    },
    /// One probe job per node.
    Smoke {
        targets: Vec<SmokeTarget>,
    },
}

/// Everything the UI thread receives.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// The clock moved (and the screen may have been resized).
    Tick(Timestamp),
    Runs(Result<Vec<RunRow>, String>),
    /// Whether a daemon watches this login node's runs (read with them).
    Watch(crate::view::daemon::Watch),
    /// One answer of a named remote (`tui --remotes`): its runs, or why
    /// it could not be asked.
    RemoteRuns {
        remote: String,
        runs: Result<Vec<RunRow>, String>,
        at: Timestamp,
    },
    /// A Slurm query started (a slow controller shows as a banner).
    SlurmAsking(Timestamp),
    Cluster(Result<ClusterSnapshot, String>),
    /// Detail of the run named, for the request it answers.
    Detail(DetailRequest, DetailUpdate),
    /// A node's smoke test moved on.
    Smoke(String, Smoke),
    /// An effect finished: a message for the status line.
    Done(Result<String, String>),
    /// SIGTERM, SIGHUP or SIGINT.
    Quit,
    /// A loader left something in its mailbox; the shell takes it.
    Wake,
}

/// A line at the bottom, for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub at: Timestamp,
}

/// How long a Slurm query may take before the banner says so.
pub const SLOW_SLURM: Duration = Duration::from_secs(3);
/// How long a read of the state directory may take before the banner says
/// so (a hung NFS mount).
pub const STALE_READ: Duration = Duration::from_secs(10);
const FLASH_FOR: Duration = Duration::from_secs(6);

/// What the UI knows of a named remote (`tui --remotes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStatus {
    pub name: String,
    /// When its runs were last read.
    pub fetched_at: Option<Timestamp>,
    /// Why the last ask failed; its rows (if any) are then stale.
    pub error: Option<String>,
}

/// How the runs of this machine's state directory are labelled beside
/// those of remotes.
pub const LOCAL: &str = "local";

/// The detail pane's contents for the selected run.
#[derive(Debug, Default)]
pub struct Detail {
    /// The run these belong to.
    pub run: Option<String>,
    pub events: Vec<JournalEntry>,
    pub script: Option<Result<String, String>>,
    pub extra: RunExtra,
    pub log: LogView,
}

#[derive(Debug)]
pub struct App {
    pub now: Timestamp,
    pub color: bool,
    pub screen: Screen,
    pub mode: Mode,
    pub focus: Focus,
    pub tab: Tab,
    pub fullscreen: bool,
    pub sort: Sort,
    pub filter: String,

    /// Local runs and, with `--remotes`, the remotes' (see
    /// [`RunRow::id`]).
    pub runs: Vec<RunRow>,
    /// The named remotes shown beside the local runs (none: local only).
    pub remotes: Vec<RemoteStatus>,
    /// Indices into `runs`: filtered and sorted.
    pub view: Vec<usize>,
    /// The selected run, by id: survives re-sorting and refreshes.
    pub selected: Option<String>,
    pub runs_error: Option<String>,
    pub runs_loaded: bool,
    /// The local daemon, as last read (`None` before the first read).
    pub watch: Option<crate::view::daemon::Watch>,
    /// When the runs loader's read in progress started (set by the shell
    /// before each draw).
    pub runs_reading_since: Option<Timestamp>,
    /// The same for the selected run's files.
    pub detail_reading_since: Option<Timestamp>,

    pub cluster: Option<ClusterSnapshot>,
    /// The last Slurm failure and when it happened.
    pub cluster_error: Option<(String, Timestamp)>,
    /// A Slurm query in flight since then.
    pub slurm_asking: Option<Timestamp>,
    pub selected_node: Option<String>,
    pub selected_gpu: usize,
    /// Smoke tests by node, as they come.
    pub smoke: std::collections::BTreeMap<String, Smoke>,

    pub detail: Detail,
    /// Which detail request is current (see [`DetailRequest::generation`]).
    pub detail_generation: u64,
    /// Lines scrolled in the detail pane; for logs, lines up from the end.
    pub detail_scroll: usize,
    /// Logs: stick to the end as lines arrive.
    pub follow: bool,
    pub log_attempt: Option<u32>,
    pub log_stream: Stream,
    pub search: String,

    pub flash: Option<Flash>,
    /// A `g` was typed: the next key completes `gg`, `gr`, `gn`, `gp`.
    pub pending_g: bool,
    /// Rows the list and the detail pane had at the last draw (for paging).
    pub page: usize,
    pub quit: bool,
}

impl App {
    pub fn new(now: Timestamp, color: bool) -> App {
        App {
            now,
            color,
            screen: Screen::Runs,
            mode: Mode::Normal,
            focus: Focus::List,
            tab: Tab::Info,
            fullscreen: false,
            sort: Sort::Status,
            filter: String::new(),
            runs: Vec::new(),
            remotes: Vec::new(),
            view: Vec::new(),
            selected: None,
            runs_error: None,
            runs_loaded: false,
            watch: None,
            runs_reading_since: None,
            detail_reading_since: None,
            cluster: None,
            cluster_error: None,
            slurm_asking: None,
            selected_node: None,
            selected_gpu: 0,
            smoke: Default::default(),
            detail: Detail::default(),
            detail_generation: 0,
            detail_scroll: 0,
            follow: true,
            log_attempt: None,
            log_stream: Stream::Stdout,
            search: String::new(),
            flash: None,
            pending_g: false,
            page: 10,
            quit: false,
        }
    }

    /// Shows the runs of these named remotes too.
    pub fn with_remotes(mut self, names: impl IntoIterator<Item = String>) -> App {
        self.remotes = names
            .into_iter()
            .map(|name| RemoteStatus {
                name,
                fetched_at: None,
                error: None,
            })
            .collect();
        self
    }

    /// The remote's rows are stale (its last ask failed): since when they
    /// were read, if ever.
    pub fn remote_stale(&self, remote: &str) -> Option<Option<Timestamp>> {
        self.remotes
            .iter()
            .find(|r| r.name == remote && r.error.is_some())
            .map(|r| r.fetched_at)
    }

    /// The selected run's row.
    pub fn selected_run(&self) -> Option<&RunRow> {
        let id = self.selected.as_deref()?;
        self.runs.iter().find(|r| r.id() == id)
    }

    /// Position of the selection in `view`.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.view.iter().position(|&i| self.runs[i].id() == id)
    }

    /// What the detail loader should watch.
    pub fn detail_request(&self) -> Option<DetailRequest> {
        Some(DetailRequest {
            run: self.selected.clone()?,
            generation: self.detail_generation,
            attempt: self.log_attempt,
            stream: self.log_stream,
        })
    }

    /// The banner about Slurm, if any: a slow or dead controller is a line
    /// on the screen, never a frozen screen.
    pub fn slurm_banner(&self) -> Option<String> {
        if let Some(since) = self.slurm_asking {
            let waited = self.now.duration_since(since).unsigned_abs();
            if waited >= SLOW_SLURM {
                return Some(format!(
                    "Slurm has not answered for {}{}",
                    crate::duration::format(Duration::from_secs(waited.as_secs())),
                    self.last_answer()
                ));
            }
        }
        self.cluster_error
            .as_ref()
            .map(|(e, _)| format!("Slurm unreachable: {}{}", first_line(e), self.last_answer()))
    }

    /// The line under the header, if anything is wrong: the runs cannot
    /// be read, a read of the state directory hangs, Slurm is slow or gone.
    pub fn banner(&self) -> Option<String> {
        let mut parts = Vec::new();
        // This login node's active runs with no daemon: nothing recovers
        // them until one starts.
        if let Some(w) = &self.watch {
            let active = self
                .runs
                .iter()
                .filter(|r| r.remote().is_none() && r.doc.error.is_none() && !r.doc.is_ended())
                .count();
            parts.extend(crate::view::daemon::unwatched(active, w, self.now));
        }
        if let Some(e) = &self.runs_error {
            parts.push(format!("cannot read the runs: {}", first_line(e)));
        }
        let stale = |since: Option<Timestamp>| {
            since
                .map(|t| self.now.duration_since(t).unsigned_abs())
                .filter(|d| *d >= STALE_READ)
                .map(|d| crate::duration::format(Duration::from_secs(d.as_secs())))
        };
        if let Some(d) = stale(self.runs_reading_since) {
            parts.push(format!(
                "runs not re-read for {d} (the filesystem is not answering)"
            ));
        }
        if let Some(d) = stale(self.detail_reading_since) {
            parts.push(format!("the run's files not re-read for {d}"));
        }
        for r in &self.remotes {
            if let Some(e) = &r.error {
                parts.push(format!(
                    "{} unreachable: {}{}",
                    r.name,
                    first_line(e),
                    match r.fetched_at {
                        Some(t) => format!("; showing its runs from {} ago", age(self.now, t)),
                        None => "; no runs from it yet".to_string(),
                    }
                ));
            }
        }
        parts.extend(self.slurm_banner());
        (!parts.is_empty()).then(|| parts.join(" · "))
    }

    /// Rows the detail pane's tab shows at the last draw's size (the layout
    /// of `render`, to bound scrolling).
    fn detail_rows(&self) -> usize {
        let body = self
            .page
            .saturating_sub(2 + usize::from(self.banner().is_some()));
        let pane = if self.fullscreen {
            body
        } else {
            body.saturating_sub((body * 2 / 5).max(4))
        };
        // The border and the tab titles; the logs' header, the tables'.
        let chrome = if self.tab == Tab::Info { 2 } else { 3 };
        pane.saturating_sub(chrome).max(1)
    }

    /// Lines the detail pane's current tab has.
    fn detail_len(&self) -> usize {
        let Some(run) = self.selected_run() else {
            return 0;
        };
        match self.tab {
            Tab::Info => {
                super::render::info_lines(self, run, super::theme::Theme { color: false }).len()
            }
            Tab::Attempts => run.doc.attempts.len(),
            Tab::Events => self.detail.events.len(),
            Tab::Script => match &self.detail.script {
                Some(Ok(t)) => t.lines().count(),
                _ => 0,
            },
            Tab::Logs => self.detail.log.len(),
        }
    }

    fn last_answer(&self) -> String {
        match &self.cluster {
            Some(c) => format!(
                "; showing its answer from {} ago",
                age(self.now, c.fetched_at)
            ),
            None => String::new(),
        }
    }

    /// Node names in the order the nodes screen shows them.
    pub fn node_names(&self) -> Vec<&str> {
        self.cluster
            .as_ref()
            .map(|c| c.nodes.nodes.iter().map(|n| n.name.as_str()).collect())
            .unwrap_or_default()
    }

    pub fn visible_flash(&self) -> Option<&Flash> {
        self.flash
            .as_ref()
            .filter(|f| self.now.duration_since(f.at).unsigned_abs() < FLASH_FOR)
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            at: self.now,
        });
    }

    /// Re-filters and re-sorts; the selection stays on the same run, or
    /// moves to the first row when its run is gone.
    pub fn rebuild_view(&mut self) {
        let needle = self.filter.to_lowercase();
        let mut view: Vec<usize> = (0..self.runs.len())
            .filter(|&i| needle.is_empty() || matches_filter(&self.runs[i], &needle))
            .collect();
        let runs = &self.runs;
        match self.sort {
            Sort::Status => view.sort_by(|&a, &b| {
                let (a, b) = (&runs[a], &runs[b]);
                b.is_active()
                    .cmp(&a.is_active())
                    .then(b.doc.created_at.cmp(&a.doc.created_at))
                    .then(a.id().cmp(b.id()))
            }),
            Sort::Newest => view.sort_by(|&a, &b| {
                let (a, b) = (&runs[a], &runs[b]);
                b.doc
                    .created_at
                    .cmp(&a.doc.created_at)
                    .then(a.id().cmp(b.id()))
            }),
            Sort::Name => view.sort_by(|&a, &b| runs[a].id().cmp(runs[b].id())),
        }
        self.view = view;
        if self.selected_index().is_none() {
            let first = self.view.first().map(|&i| self.runs[i].id().to_string());
            self.select(first);
        }
    }

    fn select(&mut self, id: Option<String>) {
        if id != self.selected {
            self.selected = id;
            self.detail_generation += 1;
            self.detail = Detail::default();
            self.detail_scroll = 0;
            self.log_attempt = None;
            self.follow = true;
        }
    }

    fn move_selection(&mut self, delta: isize) {
        if self.view.is_empty() {
            return;
        }
        let cur = self.selected_index().unwrap_or(0);
        let to = cur.saturating_add_signed(delta).min(self.view.len() - 1);
        let id = self.runs[self.view[to]].id().to_string();
        self.select(Some(id));
    }

    fn move_node(&mut self, delta: isize) {
        let names = self.node_names();
        if names.is_empty() {
            return;
        }
        let cur = self
            .selected_node
            .as_deref()
            .and_then(|n| names.iter().position(|x| *x == n))
            .unwrap_or(0);
        let to = cur.saturating_add_signed(delta).min(names.len() - 1);
        self.selected_node = Some(names[to].to_string());
    }

    fn move_gpu(&mut self, delta: isize) {
        let n = self.cluster.as_ref().map_or(0, |c| c.gpus.len());
        if n == 0 {
            return;
        }
        self.selected_gpu = self.selected_gpu.saturating_add_signed(delta).min(n - 1);
    }

    /// Moves whatever the movement keys act on now.
    fn move_by(&mut self, delta: isize) {
        match self.screen {
            Screen::Runs if self.focus == Focus::Detail || self.fullscreen => {
                self.scroll_detail(delta)
            }
            Screen::Runs => self.move_selection(delta),
            Screen::Nodes => self.move_node(delta),
            Screen::Gpus => self.move_gpu(delta),
        }
    }

    fn scroll_detail(&mut self, delta: isize) {
        // Never past the content: the last page at most.
        let max = self.detail_len().saturating_sub(self.detail_rows());
        if self.tab == Tab::Logs {
            // Logs scroll from the end: down (positive) goes towards it.
            let s = self
                .detail_scroll
                .min(max)
                .saturating_add_signed(delta.saturating_neg())
                .min(max);
            self.detail_scroll = s;
            self.follow = s == 0;
        } else {
            self.detail_scroll = self
                .detail_scroll
                .min(max)
                .saturating_add_signed(delta)
                .min(max);
        }
    }

    /// Another stream or attempt: the log is read again from its end.
    fn reload_log(&mut self) {
        self.detail_generation += 1;
        self.detail.log = LogView::default();
        self.detail_scroll = 0;
        self.follow = true;
    }

    fn jump_to_edge(&mut self, end: bool) {
        self.move_by(if end { isize::MAX } else { isize::MIN });
    }

    /// The node of the selected run (or the selected node on the nodes
    /// screen).
    fn target_node(&self) -> Option<String> {
        match self.screen {
            Screen::Nodes => self.selected_node.clone(),
            _ => self.selected_run().and_then(|r| {
                let node = r.doc.node.clone()?;
                // A remote's node is named as its runs are: REMOTE/NODE.
                Some(match r.remote() {
                    Some(remote) => format!("{remote}/{node}"),
                    None => node,
                })
            }),
        }
    }
}

fn matches_filter(r: &RunRow, needle: &str) -> bool {
    [
        Some(r.doc.run_id.as_str()),
        Some(r.remote().unwrap_or(LOCAL)),
        Some(r.doc.status.as_str()),
        r.doc.node.as_deref(),
        r.doc.partition.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|f| f.to_lowercase().contains(needle))
}

pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `5s`, `3m`, `2h`, `4d`: ages in one short word.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.duration_since(then).as_secs().max(0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Applies one message; returns the work it asks of the shell.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Tick(now) => app.now = now,
        Msg::Quit => app.quit = true,
        Msg::Wake => {}
        Msg::Runs(Ok(rows)) => {
            app.runs.retain(|r| r.remote().is_some());
            app.runs.extend(rows);
            app.runs_error = None;
            app.runs_loaded = true;
            app.rebuild_view();
        }
        Msg::Runs(Err(e)) => app.runs_error = Some(e),
        Msg::Watch(w) => app.watch = Some(w),
        Msg::RemoteRuns { remote, runs, at } => {
            let Some(status) = app.remotes.iter_mut().find(|r| r.name == remote) else {
                return vec![];
            };
            match runs {
                Ok(rows) => {
                    status.fetched_at = Some(at);
                    status.error = None;
                    app.runs.retain(|r| r.remote() != Some(remote.as_str()));
                    // Only this remote's rows, whatever the answer says.
                    app.runs.extend(
                        rows.into_iter()
                            .filter(|r| r.remote() == Some(remote.as_str())),
                    );
                    app.rebuild_view();
                }
                // Its rows stay, marked stale; the banner says why.
                Err(e) => status.error = Some(e),
            }
        }
        Msg::SlurmAsking(t) => app.slurm_asking = Some(t),
        Msg::Cluster(Ok(snap)) => {
            app.slurm_asking = None;
            app.cluster_error = None;
            let known = app
                .selected_node
                .as_deref()
                .is_some_and(|n| snap.nodes.nodes.iter().any(|x| x.name == n));
            if !known {
                app.selected_node = snap.nodes.nodes.first().map(|n| n.name.clone());
            }
            app.selected_gpu = app.selected_gpu.min(snap.gpus.len().saturating_sub(1));
            app.cluster = Some(snap);
        }
        Msg::Cluster(Err(e)) => {
            app.slurm_asking = None;
            app.cluster_error = Some((e, app.now));
        }
        Msg::Detail(req, upd) => {
            // Answers for a run no longer selected, or for an earlier request
            // of this one, are late: drop them.
            if req.generation != app.detail_generation
                || app.selected.as_deref() != Some(req.run.as_str())
            {
                return vec![];
            }
            app.detail.run = Some(req.run.clone());
            match upd {
                DetailUpdate::Events(e) => app.detail.events = e,
                DetailUpdate::Script(s) => app.detail.script = Some(s),
                DetailUpdate::Extra(x) => app.detail.extra = x,
                DetailUpdate::Log(chunk) => {
                    if req.attempt != app.log_attempt || req.stream != app.log_stream {
                        return vec![];
                    }
                    // Lines shown added at the end: the complete ones, less
                    // an unfinished one they replace.
                    let added = (chunk.lines.len() + usize::from(chunk.partial.is_some()))
                        .saturating_sub(usize::from(app.detail.log.partial.is_some()));
                    let reset = chunk.reset;
                    app.detail.log.apply(chunk);
                    if reset {
                        // Another file (or the same one rotated): its end.
                        app.follow = true;
                        if app.tab == Tab::Logs {
                            app.detail_scroll = 0;
                        }
                    } else if !app.follow && app.tab == Tab::Logs {
                        // Keep the same lines in view while new ones arrive.
                        app.detail_scroll = app
                            .detail_scroll
                            .saturating_add(added)
                            .min(app.detail.log.len());
                    }
                }
            }
        }
        Msg::Smoke(node, state) => {
            app.smoke.insert(node, state);
        }
        Msg::Done(Ok(text)) => app.say(text, false),
        Msg::Done(Err(text)) => app.say(text, true),
        Msg::Mouse(m) => match m.kind {
            MouseEventKind::ScrollDown => app.move_by(3),
            MouseEventKind::ScrollUp => app.move_by(-3),
            _ => {}
        },
        Msg::Key(key) => return on_key(app, key),
    }
    vec![]
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    if key.kind == crossterm::event::KeyEventKind::Release {
        return vec![];
    }
    // Ctrl-C always quits, whatever the mode.
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return vec![];
    }
    match app.mode.clone() {
        Mode::Normal => on_normal_key(app, key),
        Mode::Help => {
            app.mode = Mode::Normal;
            vec![]
        }
        Mode::Filter => {
            match edit(&mut app.filter, key) {
                Edit::Done => app.mode = Mode::Normal,
                Edit::Cancel => {
                    app.filter.clear();
                    app.mode = Mode::Normal;
                }
                Edit::Changed | Edit::Ignored => {}
            }
            app.rebuild_view();
            vec![]
        }
        Mode::Search => {
            match edit(&mut app.search, key) {
                Edit::Done => {
                    app.mode = Mode::Normal;
                    search_jump(app, true, true);
                }
                Edit::Cancel => {
                    app.search.clear();
                    app.mode = Mode::Normal;
                }
                Edit::Changed => search_jump(app, true, true),
                Edit::Ignored => {}
            }
            vec![]
        }
        Mode::Prompt { kind, mut input } => match edit(&mut input, key) {
            Edit::Cancel => {
                app.mode = Mode::Normal;
                vec![]
            }
            Edit::Changed | Edit::Ignored => {
                app.mode = Mode::Prompt { kind, input };
                vec![]
            }
            Edit::Done => {
                app.flash = None;
                prompt_done(app, kind, input.trim().to_string())
            }
        },
        Mode::Confirm(what) => match key.code {
            KeyCode::Char('y' | 'Y') => {
                app.mode = Mode::Normal;
                match what {
                    Confirm::Stop { run } => {
                        app.say(format!("stop requested for {run}"), false);
                        vec![Effect::Control {
                            run,
                            control: Control::Stop,
                        }]
                    }
                    Confirm::Remove { run } => {
                        app.say(format!("removing {run}…"), false);
                        vec![Effect::Remove { run }]
                    }
                    Confirm::Ban(effect) | Confirm::Smoke(effect) => vec![effect],
                }
            }
            _ => {
                app.mode = Mode::Normal;
                app.say("cancelled", false);
                vec![]
            }
        },
    }
}

fn prompt_done(app: &mut App, kind: PromptKind, input: String) -> Vec<Effect> {
    app.mode = Mode::Normal;
    match kind {
        PromptKind::NewRun if input.is_empty() => vec![],
        PromptKind::NewRun => {
            app.say(format!("submitting {input}…"), false);
            vec![Effect::NewRun { path: input }]
        }
        PromptKind::BanTtl { node } => {
            let ttl = if input.is_empty() {
                None
            } else {
                match crate::duration::parse(&input) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        app.say(format!("not a duration: {e}"), true);
                        app.mode = Mode::Prompt {
                            kind: PromptKind::BanTtl { node },
                            input,
                        };
                        return vec![];
                    }
                }
            };
            app.mode = Mode::Prompt {
                kind: PromptKind::BanReason { node, ttl },
                input: String::new(),
            };
            vec![]
        }
        PromptKind::BanReason { node, ttl } => {
            let reason = if input.is_empty() {
                "banned from the TUI".to_string()
            } else {
                input
            };
            app.mode = Mode::Confirm(Confirm::Ban(Effect::Ban { node, ttl, reason }));
            vec![]
        }
    }
}

fn on_normal_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let g = std::mem::take(&mut app.pending_g);
    let Some(action) = action_for(key, g, app.screen, app.tab) else {
        return vec![];
    };
    let page = app.page.max(2) as isize / 2;
    match action {
        Action::Quit => {
            if app.fullscreen {
                app.fullscreen = false;
            } else {
                app.quit = true;
            }
        }
        Action::Back => {
            if app.fullscreen {
                app.fullscreen = false;
            } else if app.focus == Focus::Detail {
                app.focus = Focus::List;
            } else if !app.filter.is_empty() {
                app.filter.clear();
                app.rebuild_view();
            }
        }
        Action::PendingG => app.pending_g = true,
        Action::Up => app.move_by(-1),
        Action::Down => app.move_by(1),
        Action::HalfPageUp => app.move_by(-page),
        Action::HalfPageDown => app.move_by(page),
        Action::Top => app.jump_to_edge(false),
        Action::Bottom => app.jump_to_edge(true),
        Action::FocusDetail => {
            if app.screen == Screen::Runs {
                app.focus = Focus::Detail
            }
        }
        Action::FocusList => app.focus = Focus::List,
        Action::Screen(s) => {
            app.screen = s;
            app.fullscreen = false;
        }
        Action::Tab(t) => {
            app.tab = t;
            app.detail_scroll = 0;
            app.follow = true;
        }
        Action::NextTab(d) => {
            let i = (app.tab.index() as isize + d).rem_euclid(Tab::ALL.len() as isize);
            app.tab = Tab::ALL[i as usize];
            app.detail_scroll = 0;
            app.follow = true;
        }
        Action::Help => app.mode = Mode::Help,
        Action::Filter => app.mode = Mode::Filter,
        Action::Sort => {
            app.sort = app.sort.next();
            app.rebuild_view();
            app.say(format!("sorted by {}", app.sort.label()), false);
        }
        Action::Fullscreen => {
            app.fullscreen = !app.fullscreen;
            if app.fullscreen {
                app.focus = Focus::Detail;
            }
        }
        Action::Restart | Action::Stop | Action::Pause | Action::Remove => {
            return on_run_action(app, action);
        }
        Action::Ban | Action::Unban | Action::Smoke(_) => return on_node_action(app, action),
        Action::Follow
        | Action::Search
        | Action::SearchNext(_)
        | Action::Stream
        | Action::Attempt(_) => on_log_action(app, action),
        Action::NewRun => {
            app.mode = Mode::Prompt {
                kind: PromptKind::NewRun,
                input: String::new(),
            }
        }
    }
    vec![]
}

/// Actions on the selected run (the runs screen only).
fn on_run_action(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Restart | Action::Stop | Action::Pause if app.screen != Screen::Runs => {}
        Action::Restart | Action::Stop | Action::Pause => {
            let Some(run) = app.selected.clone() else {
                app.say("no run selected", true);
                return vec![];
            };
            match action {
                Action::Stop => app.mode = Mode::Confirm(Confirm::Stop { run }),
                Action::Restart => {
                    app.say(format!("restart requested for {run}"), false);
                    return vec![Effect::Control {
                        run,
                        control: Control::Restart,
                    }];
                }
                _ => {
                    let paused = app.selected_run().is_some_and(|r| r.doc.paused);
                    let control = if paused {
                        Control::Unpause
                    } else {
                        Control::Pause
                    };
                    app.say(
                        format!(
                            "{} requested for {run}",
                            if paused { "unpause" } else { "pause" }
                        ),
                        false,
                    );
                    return vec![Effect::Control { run, control }];
                }
            }
        }
        Action::Remove if app.screen != Screen::Runs => {}
        Action::Remove => match app.selected_run() {
            None => app.say("no run selected", true),
            Some(r) if r.doc.error.is_none() && !r.doc.is_ended() => app.say(
                format!(
                    "run {} is {}: stop it first (s), then remove it",
                    r.doc.run_id, r.doc.status
                ),
                true,
            ),
            Some(r) => {
                app.mode = Mode::Confirm(Confirm::Remove {
                    run: r.id().to_string(),
                })
            }
        },
        _ => {}
    }
    vec![]
}

/// Actions on a node: the selected run's, or the one selected on the nodes
/// screen.
fn on_node_action(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Smoke(all) => {
            let Some(c) = &app.cluster else {
                app.say("no answer from Slurm yet", true);
                return vec![];
            };
            let targets: Vec<SmokeTarget> = c
                .nodes
                .nodes
                .iter()
                .filter(|n| {
                    if all {
                        n.usable && n.banned.is_none()
                    } else {
                        app.selected_node.as_deref() == Some(n.name.as_str())
                    }
                })
                .map(|n| SmokeTarget {
                    node: n.name.clone(),
                    partition: n.partitions.first().cloned(),
                    gpus: n.gpus > 0,
                })
                .collect();
            if targets.is_empty() {
                app.say("no usable node to test", true);
                return vec![];
            }
            if all {
                app.mode = Mode::Confirm(Confirm::Smoke(Effect::Smoke { targets }));
                return vec![];
            }
            for t in &targets {
                app.smoke.insert(t.node.clone(), Smoke::Submitting);
            }
            return vec![Effect::Smoke { targets }];
        }
        Action::Ban => match app.target_node() {
            Some(node) => {
                app.mode = Mode::Prompt {
                    kind: PromptKind::BanTtl { node },
                    input: "1h".to_string(),
                }
            }
            None => app.say("the selected run has no node", true),
        },
        Action::Unban => {
            if let Some(node) = app.selected_node.clone() {
                app.say(format!("unbanning {node}…"), false);
                return vec![Effect::Unban { node }];
            }
        }
        _ => {}
    }
    vec![]
}

/// Moving about the selected run's log.
fn on_log_action(app: &mut App, action: Action) {
    match action {
        Action::Follow => {
            app.follow = !app.follow;
            if app.follow {
                app.detail_scroll = 0;
            }
        }
        Action::Search => {
            app.search.clear();
            app.mode = Mode::Search;
        }
        Action::SearchNext(forward) => search_jump(app, forward, false),
        Action::Stream => {
            app.log_stream = match app.log_stream {
                Stream::Stdout => Stream::Stderr,
                Stream::Stderr => Stream::Stdout,
            };
            app.reload_log();
        }
        Action::Attempt(d) => {
            let Some(n) = app.selected_run().map(|r| r.doc.attempts.len() as isize) else {
                return;
            };
            if n == 0 {
                return;
            }
            // `None` is the newest attempt with a job: start from the last.
            let cur = app.log_attempt.map_or(n, |a| a as isize);
            let to = (cur + d).clamp(1, n);
            app.log_attempt = if to == n && d > 0 {
                None
            } else {
                Some(to as u32)
            };
            app.reload_log();
        }
        _ => {}
    }
}

/// Moves the log view to the next (or previous) line matching the search.
/// `inclusive`: a match at the current position counts (typing).
fn search_jump(app: &mut App, forward: bool, inclusive: bool) {
    if app.search.is_empty() {
        return;
    }
    let needle = app.search.to_ascii_lowercase();
    let log = &app.detail.log;
    let n = log.len();
    if n == 0 {
        return;
    }
    // The line at the top of the view's bottom edge: index from the end.
    let cur = n.saturating_sub(1 + app.detail_scroll);
    let hit = |i: usize| {
        log.line(i)
            .is_some_and(|l| find_ignoring_case(l, &needle).is_some())
    };
    let found = if forward {
        let start = if inclusive { cur } else { cur + 1 };
        (start..n).find(|&i| hit(i))
    } else {
        let end = if inclusive { cur + 1 } else { cur };
        (0..end).rev().find(|&i| hit(i))
    }
    // Searching backwards from the end is what one usually wants first.
    .or_else(|| (0..n).rev().find(|&i| hit(i)));
    match found {
        Some(i) => {
            app.detail_scroll = n - 1 - i;
            app.follow = app.detail_scroll == 0;
        }
        None => app.say(format!("no line matches {:?}", app.search), true),
    }
}

/// Where `needle` (ASCII-lowercased) first occurs in `hay`, ASCII letters
/// compared without case: no lowercased copy of each line, and the match is
/// always on character boundaries.
pub fn find_ignoring_case(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return Some(0);
    }
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| {
        h[i..i + n.len()]
            .iter()
            .zip(n)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

enum Edit {
    Changed,
    Ignored,
    Done,
    Cancel,
}

/// Line editing for prompts: typing, backspace, Ctrl-U, Enter, Esc.
fn edit(text: &mut String, key: KeyEvent) -> Edit {
    match key.code {
        KeyCode::Enter => Edit::Done,
        KeyCode::Esc => Edit::Cancel,
        KeyCode::Backspace => {
            text.pop();
            Edit::Changed
        }
        KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            text.clear();
            Edit::Changed
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            text.push(c);
            Edit::Changed
        }
        _ => Edit::Ignored,
    }
}
