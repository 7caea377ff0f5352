//! `shepherd nodes [list | ban NODE | unban NODE]` and `shepherd gpus`.

use crate::fail;
use jiff::Timestamp;

use super::args::{GlobalArgs, NodesCommand};
use super::output::{Table, emit, paint};
use super::runs_cmd::local;
use crate::ops::Ops;
use crate::slurm::Slurm;

pub fn run(global: &GlobalArgs, cmd: Option<NodesCommand>) -> crate::ops::Result<()> {
    let local = local(global)?;
    let now = Timestamp::now();
    match cmd.unwrap_or(NodesCommand::List) {
        NodesCommand::List => {
            let doc = local.nodes()?;
            emit(global.json, "nodes", &doc, |d| {
                let mut t = Table::new(&[
                    "NODE",
                    "STATE",
                    "PARTITIONS",
                    "GPUS",
                    "FREE",
                    "SWITCH",
                    "BANNED",
                    "REASON",
                ]);
                for n in &d.nodes {
                    let gpus = match (&n.gpu_type, n.gpus) {
                        (_, 0) => "-".to_string(),
                        (Some(t), g) => format!("{t}x{g}"),
                        (None, g) => g.to_string(),
                    };
                    let banned = n
                        .banned
                        .as_ref()
                        .map_or("-".to_string(), |b| match b.until {
                            None => "until unbanned".to_string(),
                            Some(u) => format!(
                                "{} left",
                                crate::duration::format(u.duration_since(now).unsigned_abs())
                            ),
                        });
                    let reason = n
                        .banned
                        .as_ref()
                        .map(|b| b.reason.clone())
                        .or_else(|| n.admin_reason.clone().map(|r| format!("admin: {r}")))
                        .unwrap_or_default();
                    t.row(vec![
                        n.name.clone(),
                        n.state.clone(),
                        n.partitions.join(","),
                        gpus,
                        if n.gpus == 0 {
                            "-".into()
                        } else {
                            n.gpus_free.to_string()
                        },
                        n.switch.clone().unwrap_or_else(|| "-".into()),
                        banned,
                        reason,
                    ]);
                }
                let mut out = t.render();
                for i in &d.incidents {
                    out.push_str(&format!(
                        "incident {}: switch {} ({} failed) banned {} until {}\n",
                        i.time.strftime("%Y-%m-%d %H:%M"),
                        i.switch,
                        i.failed.join(", "),
                        i.banned.join(", "),
                        i.until.strftime("%Y-%m-%d %H:%M")
                    ));
                }
                out
            });
        }
        NodesCommand::Ban { node, ttl, reason } => {
            let banned = local.ban(&node, ttl, &reason)?;
            emit(global.json, "banned", &banned.node, |_| {
                format!("{}\n", banned.sentence())
            });
        }
        NodesCommand::Unban { node } => {
            let unbanned = local.unban(&node)?;
            emit(global.json, "unbanned", &unbanned.node, |_| {
                format!("{}\n", unbanned.sentence())
            });
        }
    }
    Ok(())
}

/// `shepherd gpus`: one line per partition with GPUs.
pub fn gpus(
    global: &GlobalArgs,
    interactive: bool,
    every: std::time::Duration,
) -> crate::ops::Result<()> {
    use std::io::IsTerminal;
    if !interactive {
        return gpus_once(global);
    }
    if global.json || !std::io::stdout().is_terminal() {
        fail!("`gpus -i` refreshes a terminal; without one, run `shepherd gpus` repeatedly");
    }
    loop {
        // Clear and redraw; a Slurm that does not answer becomes a line on
        // the screen, not the end of the view.
        super::output::print("\x1b[H\x1b[2J");
        super::output::print(&format!(
            "shepherd gpus — {} (every {}, Ctrl-C to quit)\n\n",
            Timestamp::now().strftime("%H:%M:%S"),
            crate::duration::format(every)
        ));
        if let Err(e) = gpus_once(global) {
            super::output::print(&format!("Slurm unreachable: {e}\n"));
        }
        std::thread::sleep(every);
    }
}

fn gpus_once(global: &GlobalArgs) -> crate::ops::Result<()> {
    use crate::placement::catalog::Catalog;
    use crate::placement::inventory::partition_gpus;
    use std::io::IsTerminal;

    let local = local(global)?;
    let sd = local.state_dir();
    let slurm = local.slurm();
    let nodes = slurm.nodes()?;
    let partitions = slurm.partitions()?;
    let now = Timestamp::now();
    let known: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    // Banned nodes are not available to your runs; without a cluster name
    // (no answer) there is no blacklist to apply.
    let banned = slurm
        .cluster()
        .ok()
        .and_then(|c| sd.load_blacklist(&c.name).ok())
        .map(|bl| bl.exclude_list(&known, now))
        .unwrap_or_default();
    let views: Vec<_> = partition_gpus(&partitions, &nodes, &banned, &Catalog::builtin())
        .into_iter()
        .filter(|v| v.gpus_total > 0)
        .collect();
    let color = global.color.enabled(std::io::stdout().is_terminal());
    emit(global.json, "partitions", &views, |views| {
        let mut t = Table::new(&crate::view::gpus::COLUMNS);
        for v in views {
            let (icon, level) = crate::view::gpus::icon(v);
            let code = match level {
                crate::view::gpus::Level::Good => paint::GREEN,
                crate::view::gpus::Level::Warn => paint::YELLOW,
                crate::view::gpus::Level::Bad => paint::RED,
            };
            let mut row = vec![paint::paint(color, code, icon)];
            row.extend(crate::view::gpus::cells(v));
            t.row(row);
        }
        t.render()
    });
    Ok(())
}
