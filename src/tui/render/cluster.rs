//! The nodes and GPUs screens, from the last answer of Slurm.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use super::runs::window;
use crate::placement::inventory::Availability;
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
            let row = Row::new(vec![
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
            ]);
            if i == sel {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new([
        "NODE",
        "STATE",
        "PARTITIONS",
        "GPUS",
        "FREE",
        "SWITCH",
        "BANNED",
        "SMOKE",
        "REASON",
    ])
    .style(theme.header());
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Fill(1),
        ],
    )
    .header(header);
    f.render_widget(table, area);
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
            let (icon, style) = match (v.up, v.availability(1), v.largest_now == v.gpus_per_node) {
                (false, _, _) => ("x", theme.bad()),
                (true, Availability::Full, true) => ("●", theme.good()),
                (true, Availability::Full | Availability::Partial, _) => ("◐", theme.warn()),
                (true, Availability::None, _) => ("○", theme.bad()),
            };
            let vram = match (v.vram_gb_min, v.vram_gb_max) {
                (Some(a), Some(b)) if a == b => format!("{a} GB"),
                (Some(a), Some(b)) => format!("{a}-{b} GB"),
                _ => "unknown".into(),
            };
            let row = Row::new(vec![
                Line::from(Span::styled(icon, style)),
                Line::raw(format!(
                    "{}{}",
                    v.partition,
                    if v.up { "" } else { " (down)" }
                )),
                Line::raw(v.gpu_type.clone().unwrap_or_else(|| "gpu".into())),
                Line::raw(vram),
                Line::raw(v.gpus_per_node.to_string()),
                Line::raw(v.largest_now.to_string()),
                Line::raw(format!("{}/{}", v.nodes_free, v.nodes_usable)),
                Line::raw(format!("{}/{}", v.gpus_free, v.gpus_total)),
            ]);
            if i == app.selected_gpu {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new([
        "",
        "PARTITION",
        "GPU",
        "VRAM",
        "PER NODE",
        "START NOW",
        "NODES FREE",
        "GPUS FREE",
    ])
    .style(theme.header());
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
