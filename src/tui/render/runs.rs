//! The runs screen: the list, and the detail pane with its tabs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Tabs};

use crate::policy::state::{AttemptPhase, Blame, FailureClass, RunStatus};
use crate::store::logs::Stream;
use crate::tui::app::{App, Focus, LOCAL, Tab, age};
use crate::tui::data::RunRow;
use crate::tui::theme::Theme;
use crate::view::{AttemptDoc, DocStatus, Word};

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if app.fullscreen {
        detail(app, theme, f, area);
        return;
    }
    let list_h = (area.height * 2 / 5).max(4);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(3)]).areas(area);
    list(app, theme, f, top);
    detail(app, theme, f, bottom);
}

/// First row to show so that `selected` is visible in `height` rows.
pub fn window(selected: usize, height: usize) -> usize {
    if height == 0 {
        return 0;
    }
    selected.saturating_sub(height - 1)
}

fn list(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if app.view.is_empty() {
        let text = if let Some(e) = &app.runs_error {
            format!(" cannot read the runs: {e}")
        } else if !app.runs_loaded {
            " reading the runs…".to_string()
        } else if !app.filter.is_empty() {
            format!(" no run matches {:?} (Esc clears the filter)", app.filter)
        } else {
            " no runs yet: `n` starts one (or `shepherd SCRIPT` in a shell)".to_string()
        };
        f.render_widget(Paragraph::new(text).style(theme.dim()), area);
        return;
    }
    let rows_h = area.height.saturating_sub(1) as usize;
    let sel = app.selected_index().unwrap_or(0);
    let first = window(sel, rows_h);
    let rows: Vec<Row> = app.view[first..]
        .iter()
        .take(rows_h)
        .enumerate()
        .map(|(i, &r)| {
            let row = run_row(app, &app.runs[r], theme);
            if first + i == sel {
                let style = if app.focus == Focus::List {
                    theme.selected()
                } else {
                    theme.bold()
                };
                row.style(style)
            } else {
                row
            }
        })
        .collect();
    let mut titles = vec![
        "",
        "RUN",
        "STATUS",
        "MODE",
        "PARTITION",
        "NODE",
        "ATT/RQ",
        "HB",
        "AGE",
    ];
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(4),
    ];
    if !app.remotes.is_empty() {
        // `--remotes`: which cluster each run is on (stale ones say how old).
        let longest = app
            .remotes
            .iter()
            .map(|r| r.name.chars().count() + usize::from(r.error.is_some()) * 6)
            .chain([LOCAL.len(), "REMOTE".len()])
            .max()
            .unwrap_or(0);
        titles.insert(1, "REMOTE");
        widths.insert(1, Constraint::Length(longest.min(24) as u16));
    }
    let header = Row::new(titles).style(theme.header());
    let table = Table::new(rows, widths).header(header);
    f.render_widget(table, area);
}

fn run_row(app: &App, r: &RunRow, theme: Theme) -> Row<'static> {
    let now = app.now;
    let d = &r.doc;
    let (icon, style) = theme.status(&d.status);
    let (att, rq) = r.attempts_restarts();
    let live = d.attempts.last().is_some_and(|a| a.ended_at.is_none());
    let hb = match r.heartbeat {
        Some(t) if live => age(now, t),
        _ => "-".to_string(),
    };
    let mut cells = vec![
        Line::from(Span::styled(icon, style)),
        Line::raw(r.run_id().to_string()),
        Line::from(Span::styled(d.status.to_string(), style)),
        Line::raw(crate::view::snake(&d.mode)),
        Line::raw(d.partition.clone().unwrap_or_else(|| "-".into())),
        Line::raw(d.node.clone().unwrap_or_else(|| "-".into())),
        Line::raw(format!("{att}/{rq}")),
        Line::raw(hb),
        Line::raw(age(now, d.created_at)),
    ];
    if !app.remotes.is_empty() {
        let cell = match r.remote() {
            None => Line::styled(LOCAL, theme.dim()),
            Some(name) => match app.remote_stale(name) {
                // Its remote did not answer: the rows are as old as this.
                Some(at) => Line::styled(
                    format!(
                        "{name} {}",
                        at.map_or("(?)".to_string(), |t| format!("({})", age(now, t)))
                    ),
                    theme.warn(),
                ),
                None => Line::raw(name.to_string()),
            },
        };
        cells.insert(1, cell);
    }
    Row::new(cells)
}

fn detail(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let focused = app.focus == Focus::Detail || app.fullscreen;
    let block = Block::new().borders(Borders::TOP).border_style(if focused {
        theme.info()
    } else {
        theme.dim()
    });
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [tabs_area, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let titles: Vec<Line> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| Line::raw(format!("{} {}", i + 1, t.title())))
        .collect();
    let idx = Tab::ALL.iter().position(|t| *t == app.tab).unwrap_or(0);
    let run_name = app.selected.clone().unwrap_or_default();
    let tabs = Tabs::new(titles)
        .select(idx)
        .highlight_style(theme.selected())
        .divider("│");
    let [tabs_left, tabs_right] = Layout::horizontal([
        Constraint::Min(10),
        Constraint::Length((run_name.chars().count() as u16 + 2).min(tabs_area.width / 3)),
    ])
    .areas(tabs_area);
    f.render_widget(tabs, tabs_left);
    f.render_widget(
        Paragraph::new(Span::styled(run_name, theme.bold())).right_aligned(),
        tabs_right,
    );
    let Some(run) = app.selected_run() else {
        f.render_widget(
            Paragraph::new(" select a run to see its details").style(theme.dim()),
            body,
        );
        return;
    };
    match app.tab {
        Tab::Info => info(app, run, theme, f, body),
        Tab::Attempts => attempts(app, run, theme, f, body),
        Tab::Events => events(app, theme, f, body),
        Tab::Script => script(app, theme, f, body),
        Tab::Logs => logs(app, theme, f, body),
    }
}

fn kv(key: &str, value: impl Into<String>, theme: Theme) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {key:<10} "), theme.dim()),
        Span::raw(value.into()),
    ])
}

fn info(app: &App, run: &RunRow, theme: Theme, f: &mut Frame, area: Rect) {
    let lines = info_lines(app, run, theme);
    let scroll = app.detail_scroll.min(lines.len().saturating_sub(1));
    f.render_widget(
        Paragraph::new(lines).scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

/// Lines of the info tab (also counted to bound its scrolling).
pub fn info_lines(app: &App, run: &RunRow, theme: Theme) -> Vec<Line<'static>> {
    let d = &run.doc;
    let x = &app.detail.extra;
    let (icon, style) = theme.status(&d.status);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!(" {:<10} ", "status"), theme.dim()),
            Span::styled(format!("{icon} {}", d.status), style),
            Span::raw(
                if d.paused && !d.status.is(DocStatus::Run(RunStatus::Paused)) {
                    " (paused)"
                } else {
                    ""
                },
            ),
        ]),
        kv("reason", d.reason.clone(), theme),
        kv(
            "mode",
            format!(
                "{} · {} of {} workload failures allowed · created {} ago",
                crate::view::snake(&d.mode),
                d.workload_failures,
                d.max_retries,
                age(app.now, d.created_at)
            ),
            theme,
        ),
    ];
    match d.attempts.last() {
        Some(a) => {
            let mut s = format!("{}", a.attempt);
            if let Some(j) = a.job_id {
                s.push_str(&format!(" · job {j}"));
            }
            if let Some(p) = &a.partition {
                s.push_str(&format!(" · partition {p}"));
            }
            if let Some(n) = &a.node {
                s.push_str(&format!(" · node {n}"));
            }
            if a.restarts > 0 {
                s.push_str(&format!(" · requeued {}×", a.restarts));
            }
            match (a.running_since, a.ended_at) {
                (_, Some(e)) => s.push_str(&format!(" · ended {} ago", age(app.now, e))),
                (Some(r), None) => s.push_str(&format!(" · running for {}", age(app.now, r))),
                (None, None) => s.push_str(&format!(
                    " · submitted {} ago",
                    age(app.now, a.submitted_at)
                )),
            }
            lines.push(kv("attempt", s, theme));
            lines.push(kv("slurm", slurm_line(app, a), theme));
        }
        None => lines.push(kv("attempt", "none yet", theme)),
    }
    let live = d.attempts.last().is_some_and(|a| a.ended_at.is_none());
    lines.push(kv(
        "heartbeat",
        match run.heartbeat {
            Some(t) if live => format!("{} ago", age(app.now, t)),
            _ => "-".to_string(),
        },
        theme,
    ));
    if let Some(t) = x.not_before.filter(|t| *t > app.now) {
        lines.push(kv(
            "backoff",
            format!("next attempt in {}", age(t, app.now)),
            theme,
        ));
    }
    let failed = d.attempts.iter().rev().find(|a| {
        a.outcome
            .as_ref()
            .is_some_and(|o| !o.is(FailureClass::Success))
    });
    lines.push(match failed {
        Some(a) => Line::from(vec![
            Span::styled(format!(" {:<10} ", "last fail"), theme.dim()),
            Span::raw(format!(
                "attempt {}: {} · ",
                a.attempt,
                a.outcome
                    .as_ref()
                    .map_or("?", Word::as_str)
                    .replace('_', " ")
            )),
            Span::styled(blame_words(a.blame.as_ref()), theme.warn()),
            Span::raw(format!(" · {}", a.detail.as_deref().unwrap_or(""))),
        ]),
        None => kv("last fail", "none", theme),
    });
    if let Some(e) = &d.error {
        lines.push(Line::from(Span::styled(
            format!(" error: {e}"),
            theme.bad(),
        )));
    }
    lines.push(kv(
        "files",
        match run.remote() {
            Some(remote) => format!("{remote}:{}", d.run_dir.display()),
            None => d.run_dir.display().to_string(),
        },
        theme,
    ));
    lines
}

fn blame_words(blame: Option<&Word<Blame>>) -> String {
    match blame {
        Some(Word::Known(Blame::Node)) => "blamed on the node".into(),
        Some(Word::Known(Blame::Workload)) => "blamed on the workload".into(),
        Some(Word::Known(Blame::None)) | None => "nobody to blame".into(),
        Some(Word::Unknown(other)) => format!("blame: {other}"),
    }
}

/// Slurm's view of the current attempt, in words.
fn slurm_line(app: &App, a: &AttemptDoc) -> String {
    let x = &app.detail.extra;
    if a.ended_at.is_some() {
        return match (&a.slurm_state, a.exit_code) {
            (Some(s), Some(c)) => format!("{s}, exit code {c}"),
            (Some(s), None) => s.clone(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => "ended".into(),
        };
    }
    match x.live_phase {
        Some(AttemptPhase::Pending) => match &x.pending_reason {
            Some(r) => format!("PENDING ({r}): {}", pending_words(r)),
            None => "PENDING".into(),
        },
        Some(AttemptPhase::Running) => "RUNNING".into(),
        Some(AttemptPhase::Submitting) => "being submitted (sbatch has not answered yet)".into(),
        Some(AttemptPhase::Ended) => "ENDED".into(),
        None => a.phase.as_str().to_uppercase(),
    }
}

/// Slurm's pending reason codes in plain words.
pub fn pending_words(reason: &str) -> String {
    use crate::slurm::reasons::{PendingOutlook, classify_pending};
    let code = reason
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap_or("");
    let words = match code {
        "Resources" => "waiting for GPUs or nodes to free up",
        "Priority" => "other jobs go first",
        "BeginTime" => "waiting for its start time",
        "Dependency" => "waiting for another job",
        "ReqNodeNotAvail" | "NodeDown" => "the nodes it needs are down, drained or reserved",
        "PartitionDown" | "PartitionInactive" => "the partition is down",
        "PartitionTimeLimit" => "asks for more time than the partition allows",
        "PartitionNodeLimit" | "PartitionConfig" => "asks for more than the partition has",
        "JobHeldUser" => "held by you (scontrol release)",
        "JobHeldAdmin" => "held by an admin",
        "QOSMaxGRESPerUser" | "QOSMaxJobsPerUserLimit" | "AssocGrpGRES" => {
            "you are at your GPU or job limit"
        }
        "InvalidAccount" | "InvalidQOS" | "AccountNotAllowed" | "QOSNotAllowed" => {
            "the account or QOS may not use this partition"
        }
        _ => match classify_pending(reason) {
            PendingOutlook::Waiting => "waiting; should start eventually",
            PendingOutlook::Blocked => "blocked until an admin acts",
            PendingOutlook::Hopeless => "can never start where it is",
        },
    };
    words.to_string()
}

fn attempts(app: &App, run: &RunRow, theme: Theme, f: &mut Frame, area: Rect) {
    let rows: Vec<Row> = run
        .doc
        .attempts
        .iter()
        .rev()
        .skip(app.detail_scroll)
        .map(|a| {
            let start = a.running_since.unwrap_or(a.submitted_at);
            let took = match (a.running_since, a.ended_at) {
                (None, Some(_)) => "-".to_string(),
                (_, end) => age(end.unwrap_or(app.now), start),
            };
            let outcome = a
                .outcome
                .as_ref()
                .map_or_else(|| a.phase.as_str(), Word::as_str)
                .replace('_', " ");
            let style = match &a.outcome {
                Some(o) if o.is(FailureClass::Success) => theme.good(),
                Some(_) => theme.bad(),
                None => theme.plain(),
            };
            Row::new(vec![
                Line::raw(a.attempt.to_string()),
                Line::raw(a.job_id.map_or("-".into(), |j| j.to_string())),
                Line::raw(a.partition.clone().unwrap_or_else(|| "-".into())),
                Line::raw(a.node.clone().unwrap_or_else(|| "-".into())),
                Line::from(Span::styled(outcome, style)),
                Line::raw(a.blame.as_ref().map_or_else(|| "-".into(), Word::to_string)),
                Line::raw(took),
                Line::raw(a.detail.clone().unwrap_or_default()),
            ])
        })
        .collect();
    let header = Row::new([
        "#",
        "JOB",
        "PARTITION",
        "NODE",
        "OUTCOME",
        "BLAME",
        "TOOK",
        "DETAIL",
    ])
    .style(theme.header());
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            // Job ids of 8 digits and more.
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Fill(1),
        ],
    )
    .header(header);
    f.render_widget(table, area);
}

fn events(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if app.detail.events.is_empty() {
        f.render_widget(Paragraph::new(" no events yet").style(theme.dim()), area);
        return;
    }
    // Newest first: what just happened is what one opens the journal for.
    let lines: Vec<Line> = app
        .detail
        .events
        .iter()
        .rev()
        .skip(app.detail_scroll)
        .take(area.height as usize)
        .map(|e| {
            let kind_style = if e.kind.contains("fail") || e.kind.contains("error") {
                theme.bad()
            } else {
                theme.info()
            };
            Line::from(vec![
                Span::styled(
                    format!(" {} ", e.time.strftime("%m-%d %H:%M:%S")),
                    theme.dim(),
                ),
                Span::styled(format!("{:<14} ", e.kind), kind_style),
                Span::raw(match e.attempt {
                    Some(a) => format!("#{a:<3} "),
                    None => "     ".to_string(),
                }),
                Span::raw(e.message.clone()),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

fn script(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if let Some(remote) = app.selected_run().and_then(|r| r.remote()) {
        f.render_widget(
            Paragraph::new(format!(
                " the script is not available for remote runs (it is on {remote})"
            ))
            .style(theme.dim()),
            area,
        );
        return;
    }
    let text = match &app.detail.script {
        None => {
            f.render_widget(Paragraph::new(" reading…").style(theme.dim()), area);
            return;
        }
        Some(Err(e)) => {
            f.render_widget(
                Paragraph::new(format!(" cannot read the script: {e}")).style(theme.bad()),
                area,
            );
            return;
        }
        Some(Ok(t)) => t,
    };
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .skip(app.detail_scroll)
        .take(area.height as usize)
        .map(|(i, l)| {
            let style = if l.starts_with("#SBATCH") {
                theme.warn().add_modifier(ratatui::style::Modifier::BOLD)
            } else if l.starts_with("#SHEPHERD") {
                theme.info().add_modifier(ratatui::style::Modifier::BOLD)
            } else if l.trim_start().starts_with('#') {
                theme.dim()
            } else {
                theme.plain()
            };
            Line::from(vec![
                Span::styled(format!("{:>4} ", i + 1), theme.dim()),
                Span::styled(l.to_string(), style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

fn logs(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let log = &app.detail.log;
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let mut h = vec![Span::styled(
        format!(
            " attempt {} · {} ",
            log.attempt
                .or(app.log_attempt)
                .map_or("latest".to_string(), |a| a.to_string()),
            match app.log_stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
        ),
        theme.bold(),
    )];
    h.push(Span::styled(
        if app.follow {
            "· following ".to_string()
        } else {
            format!("· paused, {} lines up ", app.detail_scroll)
        },
        if app.follow {
            theme.good()
        } else {
            theme.warn()
        },
    ));
    if !app.search.is_empty() {
        h.push(Span::styled(format!("· /{} ", app.search), theme.info()));
    }
    if let Some(p) = &log.path {
        h.push(Span::styled(
            format!("· {} · {}", human_bytes(log.size), p.display()),
            theme.dim(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(h)), head);
    if log.is_empty() {
        let note = log
            .note
            .clone()
            .unwrap_or_else(|| "no output yet".to_string());
        f.render_widget(Paragraph::new(format!(" {note}")).style(theme.dim()), body);
        return;
    }
    let height = body.height as usize;
    let n = log.len();
    let end = n.saturating_sub(app.detail_scroll).max(height.min(n));
    let start = end.saturating_sub(height);
    let needle = app.search.to_ascii_lowercase();
    let lines: Vec<Line> = (start..end)
        .filter_map(|i| log.line(i))
        .map(|l| highlight(l, &needle, theme))
        .collect();
    f.render_widget(Paragraph::new(lines), body);
}

/// The line with every match of `needle` (ASCII-lowercased) highlighted.
/// Lines arrive clean from the loader (no tabs or control characters).
fn highlight<'a>(line: &'a str, needle: &str, theme: Theme) -> Line<'a> {
    if needle.is_empty() {
        return Line::raw(line);
    }
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(i) = crate::tui::app::find_ignoring_case(&line[at..], needle) {
        let s = at + i;
        let e = s + needle.len();
        spans.push(Span::raw(&line[at..s]));
        spans.push(Span::styled(&line[s..e], theme.hit()));
        at = e;
    }
    spans.push(Span::raw(&line[at..]));
    Line::from(spans)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
