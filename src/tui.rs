//! The terminal interface (`shepherd` with no arguments, or `shepherd tui`).
//!
//! The shape is that of gitui and bottom: one message channel fed by an input
//! thread, loader threads (runs, Slurm, the selected run's files) and effect
//! threads; the loop receives, updates the pure [`app::App`], and draws it
//! with [`render::render`]. Nothing on the UI thread touches a file or Slurm,
//! so a slow filesystem or a dead controller never freezes the screen.

mod ansi;
pub mod app;
pub mod clean;
pub mod data;
pub mod keys;
pub mod loaders;
pub mod remotes;
pub mod render;
pub mod smoke;
mod term;
pub mod theme;

#[cfg(test)]
mod tests;

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use anyhow::Context;
use crossterm::event::Event;
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::Backend;

use self::app::{App, Effect, Msg, update};
use self::data::DetailRequest;
use crate::ops::{self, Local, Ops};
use crate::slurm::{SlurmCli, SlurmCliConfig};
use crate::store::StateDir;

/// What the TUI needs from the command line.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub state_dir: StateDir,
    /// Deadline for each Slurm command the TUI runs (off the UI thread).
    pub slurm_timeout: Duration,
    /// Use colours (false: monochrome, for NO_COLOR or `--color never`).
    pub color: bool,
    /// Named remotes whose runs are shown too (`tui --remotes`).
    pub remotes: Vec<crate::remote::registry::Remote>,
}

/// How often the screen is redrawn when nothing happens (ages move on).
const IDLE_REDRAW: Duration = Duration::from_millis(500);

/// Runs the TUI until the user quits.
pub fn run(opts: TuiOptions) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    // Before any thread starts: a panic anywhere restores the terminal.
    term::install_panic_hook();
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("the terminal interface needs a terminal; `shepherd list` prints the runs");
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    term::forward_signals(tx.clone()).context("cannot watch for signals")?;
    let (detail_tx, detail_rx) = mpsc::channel::<Option<DetailRequest>>();
    let (refresh_tx, refresh_rx) = mpsc::channel::<()>();
    let runs_reading = loaders::Reading::default();
    let detail_reading = loaders::Reading::default();
    let latest_runs = loaders::LatestRuns::default();
    let detail_box = loaders::DetailBox::default();
    loaders::runs_thread(
        opts.state_dir.clone(),
        tx.clone(),
        latest_runs.clone(),
        runs_reading.clone(),
    )
    .context("cannot start a thread")?;
    loaders::detail_thread(
        opts.state_dir.clone(),
        tx.clone(),
        detail_rx,
        detail_box.clone(),
        detail_reading.clone(),
    )
    .context("cannot start a thread")?;
    let slurm = SlurmCli::new(SlurmCliConfig {
        timeout: opts.slurm_timeout,
        ..SlurmCliConfig::default()
    });
    loaders::slurm_thread(
        Box::new(slurm),
        opts.state_dir.clone(),
        tx.clone(),
        refresh_rx,
    )
    .context("cannot start a thread")?;
    let latest_remotes = remotes::LatestRemotes::default();
    let (remote_detail_tx, remote_detail_rx) = mpsc::channel::<Option<DetailRequest>>();
    let mut remote_again = std::collections::BTreeMap::new();
    if !opts.remotes.is_empty() {
        for r in &opts.remotes {
            let (again_tx, again_rx) = mpsc::sync_channel::<()>(1);
            remotes::runs_thread(r.clone(), tx.clone(), latest_remotes.clone(), again_rx)
                .context("cannot start a thread")?;
            remote_again.insert(r.name.clone(), again_tx);
        }
        remotes::detail_thread(
            opts.remotes.clone(),
            tx.clone(),
            remote_detail_rx,
            detail_box.clone(),
        )
        .context("cannot start a thread")?;
    }
    input_thread(tx.clone()).context("cannot start a thread")?;

    let (mut terminal, guard) = term::enter().context("cannot set up the terminal")?;
    let mut app = App::new(Timestamp::now(), opts.color)
        .with_remotes(opts.remotes.iter().map(|r| r.name.clone()));
    let shell = Shell {
        opts,
        tx,
        detail_tx,
        remote_detail_tx,
        refresh_tx,
        runs_reading,
        detail_reading,
        latest_runs,
        latest_remotes,
        remote_again,
        detail_box,
    };
    let result = event_loop(&mut terminal, &mut app, &rx, &shell);
    drop(terminal);
    drop(guard);
    if let Some(sig) = term::signalled() {
        // Ended by a signal: say so in the exit status, as a shell would.
        std::process::exit(128 + sig);
    }
    result
}

/// What effects need to run.
struct Shell {
    opts: TuiOptions,
    tx: Sender<Msg>,
    detail_tx: Sender<Option<DetailRequest>>,
    /// The same for a remote run (`REMOTE/RUN`).
    remote_detail_tx: Sender<Option<DetailRequest>>,
    refresh_tx: Sender<()>,
    /// When the loaders' reads in progress started (a hung filesystem).
    runs_reading: loaders::Reading,
    detail_reading: loaders::Reading,
    /// What the loaders read, waiting (merged) for the loop to take it.
    latest_runs: loaders::LatestRuns,
    latest_remotes: remotes::LatestRemotes,
    /// Wakes a remote's loader (after an action on one of its runs).
    remote_again: std::collections::BTreeMap<String, mpsc::SyncSender<()>>,
    detail_box: loaders::DetailBox,
}

fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &Receiver<Msg>,
    shell: &Shell,
) -> anyhow::Result<()> {
    let mut watching: Option<DetailRequest> = None;
    loop {
        if term::panicked() {
            // The hook restored the terminal and printed the message: draw
            // over neither.
            return Ok(());
        }
        let size = terminal.size()?;
        app.page = usize::from(size.height);
        app.runs_reading_since = shell.runs_reading.since();
        app.detail_reading_since = shell.detail_reading.since();
        terminal.draw(|f| render::render(app, f))?;
        let first = match rx.recv_timeout(IDLE_REDRAW) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        update(app, Msg::Tick(Timestamp::now()));
        // Everything that queued up, what waits in the mailboxes, then one
        // draw.
        let queued: Vec<Msg> = first.into_iter().chain(rx.try_iter()).collect();
        let waiting = shell
            .latest_runs
            .take()
            .into_iter()
            .chain(shell.latest_remotes.take())
            .chain(shell.detail_box.take());
        let mut repaint = false;
        for msg in queued.into_iter().chain(waiting) {
            if let Msg::RemoteRuns { remote, .. } = &msg {
                // The first answer of a remote may have installed shepherd
                // there, which says so on stderr (this terminal): draw
                // everything again.
                repaint |= app
                    .remotes
                    .iter()
                    .any(|r| &r.name == remote && r.fetched_at.is_none());
            }
            for effect in update(app, msg) {
                let cluster = app.cluster.as_ref().map(|c| c.cluster.clone());
                if let Err(e) = perform(shell, effect, cluster) {
                    // Out of threads (or memory): say so, do not crash.
                    update(app, Msg::Done(Err(format!("cannot start the action: {e}"))));
                }
            }
            if app.quit {
                return Ok(());
            }
        }
        if repaint {
            terminal.clear()?;
        }
        let want = app.detail_request();
        if want != watching {
            watching = want.clone();
            // A remote run is followed over ssh, a local one from its files.
            let remote = want
                .as_ref()
                .is_some_and(|w| data::split_key(&w.run).0.is_some());
            let (to, other) = if remote {
                (&shell.remote_detail_tx, &shell.detail_tx)
            } else {
                (&shell.detail_tx, &shell.remote_detail_tx)
            };
            let _ = other.send(None);
            let _ = to.send(want);
        }
    }
}

fn input_thread(tx: Sender<Msg>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            loop {
                let msg = match crossterm::event::read() {
                    Ok(Event::Key(k)) => Msg::Key(k),
                    Ok(Event::Mouse(m)) => Msg::Mouse(m),
                    Ok(Event::Resize(..)) => Msg::Tick(Timestamp::now()),
                    Ok(_) => continue,
                    Err(_) => {
                        // The terminal is gone: quit, and read no more (a read
                        // that keeps failing would spin).
                        let _ = tx.send(Msg::Quit);
                        return;
                    }
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Runs an effect on its own thread; its result comes back as [`Msg::Done`].
/// Every action is an operation ([`crate::ops`]): on this cluster's state
/// directory and daemon, or on a remote's over ssh for a `REMOTE/…` key,
/// as the same commands from a shell would do it.
fn perform(shell: &Shell, effect: Effect, cluster: Option<String>) -> std::io::Result<()> {
    let sd = shell.opts.state_dir.clone();
    let timeout = shell.opts.slurm_timeout;
    let remotes = shell.opts.remotes.clone();
    let tx = shell.tx.clone();
    let refresh = shell.refresh_tx.clone();
    let remote_again = shell.remote_again.clone();
    std::thread::Builder::new()
        .name("effect".into())
        .spawn(move || {
            let local = || Local::new(sd.clone(), timeout).with_cluster(cluster.clone());
            // A remote's operations; after one, its runs are asked for again
            // at once.
            let on = |remote: &str, op: &dyn Fn(&ops::Remote) -> ops::Result<String>| {
                let result = match remotes.iter().find(|r| r.name == remote) {
                    Some(r) => op(&ops::Remote::new(r.clone(), timeout))
                        .map(|said| format!("{remote}: {said}")),
                    None => Err(ops::Error::new(
                        ops::Kind::RemoteUsage,
                        anyhow::anyhow!("{remote}: not a remote of this view"),
                    )),
                };
                if let Some(w) = remote_again.get(remote) {
                    let _ = w.try_send(());
                }
                result
            };
            let result: ops::Result<String> = match effect {
                Effect::Control { run, control } => match data::split_key(&run) {
                    (Some(remote), run) => on(remote, &|r| Ok(r.control(run, control)?.sentence())),
                    (None, run) => local().control(run, control).map(|r| r.sentence()),
                },
                Effect::Ban { node, ttl, reason } => {
                    let r = match data::split_key(&node) {
                        (Some(remote), node) => {
                            on(remote, &|r| Ok(r.ban(node, ttl, &reason)?.sentence()))
                        }
                        (None, node) => local().ban(node, ttl, &reason).map(|b| b.sentence()),
                    };
                    let _ = refresh.send(());
                    r
                }
                Effect::Unban { node } => {
                    let r = match data::split_key(&node) {
                        (Some(remote), node) => on(remote, &|r| Ok(r.unban(node)?.sentence())),
                        (None, node) => local().unban(node).map(|u| u.sentence()),
                    };
                    let _ = refresh.send(());
                    r
                }
                Effect::NewRun { path } => new_run(&local(), &path),
                Effect::Remove { run } => {
                    let r = match data::split_key(&run) {
                        (Some(remote), run) => on(remote, &|r| {
                            Ok(format!(
                                "removed run {}",
                                r.remove(run, false, RM_WAIT)?.run_id
                            ))
                        }),
                        (None, run) => local()
                            .remove(run, false, RM_WAIT)
                            .map(|r| format!("removed run {}", r.run_id)),
                    };
                    let _ = refresh.send(());
                    r
                }
                Effect::Smoke { targets } => {
                    let n = targets.len();
                    let slurm = SlurmCli::new(SlurmCliConfig {
                        timeout,
                        ..SlurmCliConfig::default()
                    });
                    smoke::run(&slurm, targets, &tx);
                    Ok(format!("smoke test of {n} node(s) done"))
                }
            };
            let result = match result {
                Ok(t) => Ok(clean::line(&t)),
                Err(e) => Err(clean::line(&format!("{e:#}"))),
            };
            let _ = tx.send(Msg::Done(result));
        })?;
    Ok(())
}

/// `rm` from the TUI removes ended runs only (no `--force`): unused.
const RM_WAIT: Duration = Duration::from_secs(120);

/// `n` (a new run): `shepherd PATH` from the directory the TUI was started
/// in, with the configuration's defaults and the script's directives; what
/// the checks only warn about is said after the run's id.
fn new_run(local: &Local, path: &str) -> ops::Result<String> {
    let cwd = ops::Context::context(std::env::current_dir(), "cannot read the current directory")?;
    let mut warnings = Vec::new();
    let created = local.submit(
        ops::Submission {
            script: std::path::Path::new(path),
            options: crate::options::RunOptions::default(),
            cwd: &cwd,
            check_script: true,
            poll: crate::daemon::service::default_poll_interval(),
        },
        &mut |w| warnings.push(w.to_string()),
    )?;
    let mut said = created.sentence();
    for w in warnings {
        said.push_str(&format!("; warning: {w}"));
    }
    Ok(said)
}
