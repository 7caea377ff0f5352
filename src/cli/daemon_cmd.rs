//! `shepherd daemon start|stop|status|run|ensure|install|uninstall`.

use jiff::Timestamp;
use serde_json::json;

use super::args::{DaemonCommand, GlobalArgs};
use super::output::{emit, emit_fields, print};
use super::runs_cmd::local;
use crate::daemon::install::{self, KEPT_ENV};
use crate::daemon::keeper::{self, Asked, KeeperCommand, KeeperError};
use crate::daemon::lease::{Lease, StartedBy};
use crate::daemon::service;
use crate::ops::{Context, Result};
use crate::store::StateDir;

pub fn daemon(global: &GlobalArgs, cmd: DaemonCommand) -> Result<()> {
    let local = local(global)?;
    let sd = local.state_dir();
    match cmd {
        DaemonCommand::Run { poll, started_by } => Ok(service::run(
            &local.slurm(),
            sd,
            poll.poll_interval,
            global.slurm_timeout,
            started_by,
        )?),
        DaemonCommand::Start(poll) => {
            let (lease, started) = service::start(
                sd,
                poll.poll_interval,
                global.slurm_timeout,
                StartedBy::Start,
            )?;
            emit(global.json, "daemon", &lease, |l| {
                if started {
                    format!("daemon started ({})\n", l.describe())
                } else {
                    format!("daemon already running ({})\n", l.describe())
                }
            });
            Ok(())
        }
        DaemonCommand::Ensure(poll) => {
            use service::Ensured;
            let seen = last_seen_words(sd);
            let ensured = service::ensure(sd, poll.poll_interval, global.slurm_timeout)?;
            if global.json {
                let (lease, started, stopped_at) = match &ensured {
                    Ensured::Running(l) => (Some(l), false, None),
                    Ensured::Started(l) | Ensured::TookBack(l) => (Some(l), true, None),
                    Ensured::Stopped(at) => (None, false, Some(*at)),
                };
                emit_fields(&[
                    ("daemon", json!(lease)),
                    ("started", json!(started)),
                    ("stopped_at", json!(stopped_at)),
                ]);
                return Ok(());
            }
            // Cron mails what a job prints: one line when it acted,
            // nothing otherwise.
            match ensured {
                Ensured::Started(l) => print(&format!(
                    "shepherd daemon ensure: no daemon was running (last seen {seen}); started one ({})\n",
                    l.describe()
                )),
                Ensured::TookBack(l) => print(&format!(
                    "shepherd daemon ensure: took the lease back from the keeper job; daemon started ({})\n",
                    l.describe()
                )),
                Ensured::Running(_) | Ensured::Stopped(_) => {}
            }
            Ok(())
        }
        DaemonCommand::Stop => {
            let stopped = service::stop(&local.slurm(), sd)?;
            emit(global.json, "stopped", &stopped, |s| match s {
                Some(l) => format!("daemon stopped (was {})\n", l.describe()),
                None => "no daemon was running\n".to_string(),
            });
            Ok(())
        }
        DaemonCommand::Status => status(global, sd),
        DaemonCommand::Keeper(poll) => {
            let (config, _) = crate::config::load(sd.root())?;
            let keeper = config
                .keeper
                .settings()
                .map_err(|e| crate::ops::Error::new(crate::ops::Kind::Failure, anyhow::anyhow!(e)))?
                .ok_or(KeeperError::Off)?;
            let exe = std::env::current_exe().context("cannot locate the shepherd binary")?;
            let command = KeeperCommand {
                exe,
                poll: poll.poll_interval,
                slurm_timeout: global.slurm_timeout,
            };
            let asked = keeper::ask(&local.slurm(), sd, &keeper, &command, Timestamp::now())?;
            let job = match &asked {
                Asked::Submitted(id) => Some(id.0),
                _ => None,
            };
            emit(
                global.json,
                "keeper",
                &json!({"submitted": job, "said": asked.describe()}),
                |_| format!("{}\n", asked.describe()),
            );
            Ok(())
        }
        DaemonCommand::Install {
            every,
            dry_run,
            poll,
        } => {
            let exe = std::env::current_exe().context("cannot locate the shepherd binary")?;
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            let env: Vec<(String, String)> = KEPT_ENV
                .iter()
                .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
                .collect();
            let command = install::command_line(
                &exe,
                sd.root(),
                &env,
                poll.poll_interval,
                global.slurm_timeout,
            )?;
            let block = install::block(sd.root(), &command, every);
            if dry_run {
                if global.json {
                    emit_fields(&[("crontab_block", json!(block))]);
                } else {
                    print(&block);
                }
                return Ok(());
            }
            let before = install::read_crontab_for_change()
                .context("cannot read your crontab; `shepherd daemon install --dry-run` prints the lines to add by hand, or run `shepherd daemon ensure` from any scheduler you have")?;
            let after = install::with_block(&before, sd.root(), &block);
            let changed = after != before;
            if changed {
                save_copy(sd, &before)?;
                install::write_crontab(&after).context("cannot install the crontab")?;
            }
            let live = service::status(sd);
            if global.json {
                emit_fields(&[(
                    "installed",
                    json!({"method": "cron", "every_minutes": every, "changed": changed, "daemon": live}),
                )]);
            } else {
                print(&format!(
                    "{} your crontab: `shepherd daemon ensure` at boot and every {every} minute(s) for {}\n{}\n`shepherd daemon uninstall` removes it.\n",
                    if changed {
                        "installed in"
                    } else {
                        "already in"
                    },
                    sd.root().display(),
                    match &live {
                        Some(l) => format!("a daemon runs now ({})", l.describe()),
                        None => format!(
                            "no daemon runs now: cron starts one within {every} minute(s), or `shepherd daemon start` does now"
                        ),
                    }
                ));
            }
            Ok(())
        }
        DaemonCommand::Uninstall => {
            let before = install::read_crontab_for_change().context("cannot read your crontab")?;
            let (after, had) = install::without_block(&before, sd.root());
            if had {
                save_copy(sd, &before)?;
                install::write_crontab(&after).context("cannot write your crontab")?;
            }
            emit(global.json, "uninstalled", &had, |had| {
                if *had {
                    format!(
                        "removed `shepherd daemon ensure` for {} from your crontab; a running daemon goes on until `shepherd daemon stop`\n",
                        sd.root().display()
                    )
                } else {
                    format!(
                        "your crontab has no `shepherd daemon ensure` for {}; nothing changed\n",
                        sd.root().display()
                    )
                }
            });
            Ok(())
        }
    }
}

/// `daemon status`: where the daemon runs, since when, what started it,
/// its last tick; or since when none has; and whether the crontab brings
/// one back.
fn status(global: &GlobalArgs, sd: &StateDir) -> Result<()> {
    let crate::view::daemon::Watch {
        live,
        last_seen,
        stopped,
    } = crate::view::daemon::Watch::of(sd);
    // Whether cron keeps one alive: `None` when the crontab cannot be read.
    let crontab = install::read_crontab().ok();
    let installed = crontab.as_deref().map(|c| install::has_block(c, sd.root()));
    if global.json {
        emit_fields(&[
            ("daemon", json!(live)),
            ("last_seen", json!(last_seen)),
            ("stopped_at", json!(stopped)),
            ("crontab", json!(installed)),
        ]);
        return Ok(());
    }
    let mut s = match &live {
        Some(l) => running_words(l, sd),
        None => {
            let mut s = match stopped {
                Some(at) => format!(
                    "no daemon running: stopped with `shepherd daemon stop` at {}; runs are not watched, and neither cron's `daemon ensure` nor a keeper starts one until `shepherd daemon start`\n",
                    at.strftime("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!(
                    "no daemon running (last seen {}); runs are not watched (start one with `shepherd daemon start`)\n",
                    seen_words(last_seen)
                ),
            };
            if let Some(last) = service::last_log_line(sd) {
                s.push_str(&format!("the last daemon's last log line: {last}\n"));
            }
            s
        }
    };
    // The keeper, as the configuration says (what the jobs were told may
    // differ until they are resubmitted).
    match crate::config::load(sd.root()).map(|(c, _)| c.keeper.settings()) {
        Ok(Ok(Some(k))) => s.push_str(&format!(
            "keeper: on: a job that finds no daemon for {} asks for one on {} (`[keeper]` in the configuration)\n",
            crate::duration::format(k.after),
            k.partition.as_deref().unwrap_or("the default partition")
        )),
        Ok(Ok(None)) => s.push_str("keeper: off (`[keeper] enabled = true` runs the daemon inside Slurm when none runs)\n"),
        Ok(Err(e)) => s.push_str(&format!("keeper: the configuration's [keeper] is invalid: {e}\n")),
        Err(e) => s.push_str(&format!("keeper: unknown: {e}\n")),
    }
    s.push_str(match installed {
        Some(true) => "kept alive by your crontab (`shepherd daemon ensure`; `shepherd daemon uninstall` removes it)\n",
        Some(false) => "nothing brings a daemon back after a reboot or a kill: `shepherd daemon install` adds `daemon ensure` to your crontab\n",
        None => "your crontab cannot be read: whether anything brings a daemon back is unknown\n",
    });
    print(&super::output::terminal_safe(&s));
    Ok(())
}

fn running_words(l: &Lease, sd: &StateDir) -> String {
    let tick = Timestamp::now()
        .duration_since(l.heartbeat_at)
        .unsigned_abs();
    format!(
        "daemon running on {} (pid {}) since {}, {}\nlast tick {} ({} ago), polling every {}\nlog: {}\n",
        l.host,
        l.pid,
        l.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        l.started_by.describe(),
        l.heartbeat_at.strftime("%H:%M:%S UTC"),
        crate::duration::format(std::time::Duration::from_secs(tick.as_secs())),
        crate::duration::format(std::time::Duration::from_secs(l.poll_interval_secs)),
        service::log_path(sd).display()
    )
}

/// The crontab as it was, in `STATE/daemon/crontab.before` (private),
/// before Shepherd changes it.
fn save_copy(sd: &StateDir, crontab: &str) -> Result<()> {
    sd.ensure_private_root()?;
    std::fs::create_dir_all(sd.daemon())
        .with_context(|| format!("cannot create {}", sd.daemon().display()))?;
    let path = sd.daemon().join("crontab.before");
    crate::store::atomic::write_bytes(&path, crontab.as_bytes())
        .context("cannot save a copy of your crontab before changing it; nothing was changed")?;
    Ok(())
}

fn last_seen_words(sd: &StateDir) -> String {
    seen_words(service::last_seen(sd))
}

fn seen_words(at: Option<Timestamp>) -> String {
    match at {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "never".to_string(),
    }
}
