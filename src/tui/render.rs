//! Drawing: a pure function of `&App` onto a frame, so tests draw into
//! ratatui's `TestBackend`. Per screen: `runs` (list and detail), `cluster`
//! (nodes and GPUs).

mod cluster;
mod runs;

pub use runs::{info_lines, pending_words};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::app::{App, Confirm, Effect, Mode, PromptKind, Screen};
use super::keys::HELP;
use super::theme::{ICONS, Theme};

/// Draws the whole screen.
pub fn render(app: &App, f: &mut Frame) {
    let theme = Theme { color: app.color };
    let banner = app.banner();
    let [header, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(app, theme, f, header);
    if let Some(b) = banner {
        f.render_widget(
            Paragraph::new(Line::from(format!(" {b}"))).style(theme.banner()),
            banner_area,
        );
    }
    match app.screen {
        Screen::Runs => runs::draw(app, theme, f, body),
        Screen::Nodes => cluster::draw_nodes(app, theme, f, body),
        Screen::Gpus => cluster::draw_gpus(app, theme, f, body),
    }
    draw_footer(app, theme, f, footer);
    match &app.mode {
        Mode::Help => draw_help(theme, f),
        Mode::Confirm(c) => draw_confirm(c, theme, f),
        _ => {}
    }
}

fn draw_header(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(" shepherd ", theme.bold())];
    for (screen, label) in [
        (Screen::Runs, "runs"),
        (Screen::Nodes, "nodes"),
        (Screen::Gpus, "gpus"),
    ] {
        let style = if app.screen == screen {
            theme.selected()
        } else {
            theme.dim()
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!(" {label} "), style));
    }
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = &app.cluster {
        parts.push(c.cluster.clone());
    }
    match app.screen {
        Screen::Runs => {
            parts.push(if app.view.len() == app.runs.len() {
                format!("{} runs", app.runs.len())
            } else {
                format!("{}/{} runs", app.view.len(), app.runs.len())
            });
            parts.push(format!("by {}", app.sort.label()));
            if !app.filter.is_empty() {
                parts.push(format!("filter {:?}", app.filter));
            }
        }
        Screen::Nodes | Screen::Gpus => {
            if let Some(c) = &app.cluster {
                parts.push(format!("updated {} ago", age_of(app, c.fetched_at)));
            }
        }
    }
    let right = format!("  {}", parts.join(" · "));
    spans.push(Span::styled(right, theme.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn age_of(app: &App, t: jiff::Timestamp) -> String {
    super::app::age(app.now, t)
}

fn draw_footer(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let line = match &app.mode {
        Mode::Filter => Line::from(vec![
            Span::styled(" filter: ", theme.bold()),
            Span::raw(format!("{}▏", app.filter)),
            Span::styled("  Enter keep · Esc clear", theme.dim()),
        ]),
        Mode::Search => Line::from(vec![
            Span::styled(" search: ", theme.bold()),
            Span::raw(format!("{}▏", app.search)),
            Span::styled("  Enter find · Esc cancel", theme.dim()),
        ]),
        Mode::Prompt { kind, input } => {
            let q = match kind {
                PromptKind::NewRun => "new run, script path: ".to_string(),
                PromptKind::BanTtl { node } => {
                    format!("ban {node} for (e.g. 2h; empty: until unbanned): ")
                }
                PromptKind::BanReason { node, .. } => format!("reason to ban {node}: "),
            };
            Line::from(vec![
                Span::styled(format!(" {q}"), theme.bold()),
                Span::raw(format!("{input}▏")),
                Span::styled("  Esc cancel", theme.dim()),
            ])
        }
        _ => match app.visible_flash() {
            Some(fl) => Line::from(Span::styled(
                format!(" {}", fl.text),
                if fl.error { theme.bad() } else { theme.good() },
            )),
            None => hints(app, theme),
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

fn hints(app: &App, theme: Theme) -> Line<'static> {
    let keys: &[(&str, &str)] = match app.screen {
        Screen::Runs => &[
            ("?", "help"),
            ("r", "restart"),
            ("s", "stop"),
            ("p", "pause"),
            ("b", "ban"),
            ("n", "new"),
            ("/", "filter"),
            ("gn", "nodes"),
            ("q", "quit"),
        ],
        Screen::Nodes => &[
            ("?", "help"),
            ("b", "ban"),
            ("u", "unban"),
            ("t T", "smoke test"),
            ("gr", "runs"),
            ("gp", "gpus"),
            ("q", "quit"),
        ],
        Screen::Gpus => &[
            ("?", "help"),
            ("gr", "runs"),
            ("gn", "nodes"),
            ("q", "quit"),
        ],
    };
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in keys {
        spans.push(Span::styled(*k, theme.bold()));
        spans.push(Span::styled(format!(" {what}  "), theme.dim()));
    }
    Line::from(spans)
}

/// A rectangle of at most `w`×`h` centred in `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(theme: Theme, f: &mut Frame) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<16}"), theme.bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    let mut icons = vec![Span::raw(" ")];
    for (i, (status, what)) in ICONS.iter().enumerate() {
        let word = what.split([' ', ',', ':']).next().unwrap_or(what);
        let (icon, style) = theme.known_status(*status);
        icons.push(Span::styled(icon, style));
        icons.push(Span::raw(format!(" {word}  ")));
        if i == 3 {
            lines.push(Line::from(std::mem::replace(
                &mut icons,
                vec![Span::raw(" ")],
            )));
        }
    }
    lines.push(Line::from(icons));
    let area = centered(f.area(), 72, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (any key closes) ")),
        area,
    );
}

fn draw_confirm(c: &Confirm, theme: Theme, f: &mut Frame) {
    let question = match c {
        Confirm::Stop { run } => {
            format!("Stop run {run}? Its job is cancelled and it is not resubmitted.")
        }
        Confirm::Remove { run } => format!(
            "Remove run {run}? Its state, journal and Shepherd's copies of its logs are deleted."
        ),
        Confirm::Ban(Effect::Ban { node, ttl, reason }) => format!(
            "Ban node {node} {} ({reason})? Runs avoid it; pending jobs learn it.",
            match ttl {
                Some(t) => format!("for {}", crate::duration::format(*t)),
                None => "until unbanned".to_string(),
            }
        ),
        Confirm::Smoke(Effect::Smoke { targets }) => format!(
            "Smoke-test {} node(s)? One short job is submitted to each.",
            targets.len()
        ),
        Confirm::Ban(other) | Confirm::Smoke(other) => format!("{other:?}?"),
    };
    let lines = vec![
        Line::raw(format!(" {question}")),
        Line::raw(""),
        Line::from(vec![
            Span::styled(" y", theme.bold()),
            Span::raw(" yes    "),
            Span::styled("any other key", theme.bold()),
            Span::raw(" no"),
        ]),
    ];
    let area = centered(f.area(), 70, 6);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(Block::bordered().title(" confirm ").style(theme.warn())),
        area,
    );
}
