//! The nodes and GPUs screens, from the last answer of Slurm.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use super::runs::window;
use crate::tui::app::App;
use crate::tui::smoke::Smoke;
use crate::tui::theme::Theme;

fn waiting(app: &App, theme: Theme, f: &mut Frame, area: Rect) -> bool {
    if app.cluster.is_some() {
        return false;
    }
    let text = match &app.cluster_error {
        Some((e, _)) => format!(" Slurm did not answer: {e}"),
        None => " asking Slurm…".to_string(),
    };
    f.render_widget(Paragraph::new(text).style(theme.dim()), area);
    true
}

pub fn draw_nodes(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if waiting(app, theme, f, area) {
        return;
    }
    let Some(c) = &app.cluster else { return };
    let nodes = &c.nodes.nodes;
    let rows_h = area.height.saturating_sub(1) as usize;
    let sel = app
        .selected_node
        .as_deref()
        .and_then(|s| nodes.iter().position(|n| n.name == s))
        .unwrap_or(0);
    let first = window(sel, rows_h);
    let (widths, show) = node_columns(app, area.width);
    let rows: Vec<Row> = nodes
        .iter()
        .enumerate()
        .skip(first)
        .take(rows_h)
        .map(|(i, n)| {
            let gpus = match (&n.gpu_type, n.gpus) {
                (_, 0) => "-".to_string(),
                (Some(t), g) => format!("{t}x{g}"),
                (None, g) => g.to_string(),
            };
            let state_style = if n.usable { theme.good() } else { theme.bad() };
            let (banned, ban_style) = match &n.banned {
                None => ("-".to_string(), theme.plain()),
                Some(b) => (
                    match b.until {
                        None => "until unban".to_string(),
                        Some(u) => format!("{} left", crate::tui::app::age(u, app.now)),
                    },
                    theme.bad(),
                ),
            };
            let reason = n
                .banned
                .as_ref()
                .map(|b| format!("{}{}", b.reason, if b.manual { " (by hand)" } else { "" }))
                .or_else(|| n.admin_reason.clone().map(|r| format!("admin: {r}")))
                .or_else(|| match app.smoke.get(&n.name) {
                    Some(Smoke::Failed(why)) => Some(format!("smoke test: {why}")),
                    _ => None,
                })
                .unwrap_or_default();
            let cells = vec![
                Line::raw(n.name.clone()),
                Line::from(Span::styled(n.state.clone(), state_style)),
                Line::raw(n.partitions.join(",")),
                Line::raw(gpus),
                Line::raw(if n.gpus == 0 {
                    "-".into()
                } else {
                    format!("{}/{}", n.gpus_free, n.gpus)
                }),
                Line::raw(n.switch.clone().unwrap_or_else(|| "-".into())),
                Line::from(Span::styled(banned, ban_style)),
                smoke_cell(app.smoke.get(&n.name), theme),
                Line::raw(reason),
            ];
            let row = Row::new(pick(cells, &show));
            if i == sel {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(pick(HEADERS.to_vec(), &show)).style(theme.header());
    let table = Table::new(rows, pick(widths.to_vec(), &show)).header(header);
    f.render_widget(table, area);
}

const HEADERS: [&str; 9] = [
    "NODE",
    "STATE",
    "PARTITIONS",
    "GPUS",
    "FREE",
    "SWITCH",
    "BANNED",
    "SMOKE",
    "REASON",
];

fn pick<T>(all: Vec<T>, show: &[bool; 9]) -> Vec<T> {
    all.into_iter()
        .zip(show)
        .filter(|(_, s)| **s)
        .map(|(x, _)| x)
        .collect()
}

/// Column widths from the content, and which columns fit: the switch goes
/// first when the screen is narrow, the smoke column shows once there are
/// smoke tests, and the reason keeps at least 16 columns.
fn node_columns(app: &App, width: u16) -> ([Constraint; 9], [bool; 9]) {
    let nodes = app
        .cluster
        .as_ref()
        .map(|c| c.nodes.nodes.as_slice())
        .unwrap_or_default();
    let fit = |f: &dyn Fn(&crate::view::nodes::NodeDoc) -> usize, head: &str, cap: usize| {
        nodes
            .iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(head.len())
            .min(cap) as u16
    };
    let mut w = [
        fit(&|n| n.name.len(), "NODE", 14),
        fit(&|n| n.state.len(), "STATE", 16),
        fit(&|n| n.partitions.join(",").len(), "PARTITIONS", 20),
        fit(
            &|n| n.gpu_type.as_deref().map_or(2, |t| t.len() + 3),
            "GPUS",
            12,
        ),
        5,
        fit(&|n| n.switch.as_deref().map_or(1, str::len), "SWITCH", 10),
        11,
        10,
        0,
    ];
    let mut show = [true; 9];
    show[5] = nodes.iter().any(|n| n.switch.is_some());
    show[7] = !app.smoke.is_empty();
    let used = |w: &[u16; 9], show: &[bool; 9]| -> u16 {
        w.iter()
            .zip(show)
            .filter(|(_, s)| **s)
            .map(|(w, _)| w + 1)
            .sum()
    };
    if used(&w, &show) + 16 > width {
        show[5] = false;
    }
    while used(&w, &show) + 16 > width && w[2] > 10 {
        w[2] -= 1;
    }
    let mut c = w.map(Constraint::Length);
    c[8] = Constraint::Fill(1);
    (c, show)
}

fn smoke_cell(s: Option<&Smoke>, theme: Theme) -> Line<'static> {
    let Some(s) = s else {
        return Line::raw("-");
    };
    let style = match s {
        Smoke::Passed(_) => theme.good(),
        Smoke::Failed(_) => theme.bad(),
        _ => theme.warn(),
    };
    Line::from(Span::styled(s.label(), style))
}

pub fn draw_gpus(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if waiting(app, theme, f, area) {
        return;
    }
    let Some(c) = &app.cluster else { return };
    if c.gpus.is_empty() {
        f.render_widget(
            Paragraph::new(" no partition has GPUs").style(theme.dim()),
            area,
        );
        return;
    }
    let rows_h = area.height.saturating_sub(1) as usize;
    let first = window(app.selected_gpu, rows_h);
    let rows: Vec<Row> = c
        .gpus
        .iter()
        .enumerate()
        .skip(first)
        .take(rows_h)
        .map(|(i, v)| {
            let (icon, level) = crate::view::gpus::icon(v);
            let style = match level {
                crate::view::gpus::Level::Good => theme.good(),
                crate::view::gpus::Level::Warn => theme.warn(),
                crate::view::gpus::Level::Bad => theme.bad(),
            };
            let mut cells = vec![Line::from(Span::styled(icon, style))];
            cells.extend(crate::view::gpus::cells(v).into_iter().map(Line::raw));
            let row = Row::new(cells);
            if i == app.selected_gpu {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(crate::view::gpus::COLUMNS).style(theme.header());
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(header);
    f.render_widget(table, area);
}
