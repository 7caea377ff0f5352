//! Commands about runs: run, list, status, events, stop/pause/unpause/restart.

use std::path::PathBuf;

use jiff::Timestamp;

use super::args::{GlobalArgs, RunArgs};
use super::output::{Table, emit, emit_serialized, paint, print, terminal_safe};
use crate::daemon::service;
use crate::fail;
use crate::ops::{Context, Error, Kind, Local, Ops, Result, Submission};
use crate::policy::decide::Control;
use crate::records::ProbeStatus;
use crate::store::StateDir;
use crate::view::listing::Entry;
use crate::view::{RunDoc, Word, run_doc, snake};

pub fn state_dir(global: &GlobalArgs) -> Result<StateDir> {
    let root = match &global.state_dir {
        // Absolute: the run directory is written into every job's batch
        // script, and the job runs in another directory (its --chdir), as
        // does the daemon. A relative path would name another place there.
        Some(d) => std::path::absolute(d)
            .with_context(|| format!("cannot make the state directory {} absolute", d.display()))?,
        None => {
            let home = std::env::var_os("HOME")
                .context("HOME is not set; pass --state-dir or set SHEPHERD_STATE_DIR")?;
            PathBuf::from(home).join(".slurm_shepherd")
        }
    };
    // A broken configuration file is reported by the commands that depend
    // on it (run, daemon); here it only decides where blacklists live.
    let shared = crate::config::load(&root)
        .ok()
        .and_then(|(c, _)| c.blacklist.shared_dir);
    Ok(StateDir::new(root).with_shared_blacklists(shared))
}

/// The operations on this login node, as the command line asks for them.
pub(super) fn local(global: &GlobalArgs) -> Result<Local> {
    Ok(Local::new(state_dir(global)?, global.slurm_timeout))
}

/// `shepherd run SCRIPT`: create the run and make sure a daemon watches it.
pub fn run(global: &GlobalArgs, args: RunArgs) -> Result<()> {
    let local = local(global)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let created = local.submit(
        Submission {
            script: &args.script,
            options: args.options,
            cwd: &cwd,
            check_script: !args.no_script_check,
            poll: args.poll.poll_interval,
        },
        &mut |warning| eprintln!("warning: {warning}"),
    )?;
    emit(global.json, "run", &created, |c| {
        let daemon = if c.daemon_started {
            format!("started the daemon (pid {})", c.daemon_pid)
        } else {
            format!("daemon running (pid {})", c.daemon_pid)
        };
        format!(
            "{}\n  {daemon}; follow it with `shepherd status {}`\n",
            c.sentence(),
            c.run_id
        )
    });
    Ok(())
}

fn age(t: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(t);
    crate::duration::format(d.unsigned_abs())
}

/// Whether human output to stdout is coloured.
fn colour(global: &GlobalArgs) -> bool {
    use std::io::IsTerminal;
    global.color.enabled(std::io::stdout().is_terminal())
}

/// Active runs without a daemon are not watched: say so on stderr, with
/// since when (commands still work; the next `run`, `stop` … starts a
/// daemon).
fn warn_if_unwatched(sd: &StateDir, active: usize) {
    if active == 0 {
        return;
    }
    let watch = crate::view::daemon::Watch::of(sd);
    if let Some(banner) = crate::view::daemon::unwatched(active, &watch, Timestamp::now()) {
        eprintln!("note: {banner}");
    }
}

/// `list`: from `view::listing`, which serves ended runs from a cache, so
/// that a list over thousands of runs reads only the active ones' files.
pub fn list(global: &GlobalArgs) -> Result<()> {
    let local = local(global)?;
    let listing = crate::view::listing::listing(local.state_dir(), global.json)?;
    let entries = &listing.entries;
    let active = entries
        .iter()
        .filter(|e| !e.row.error && !e.row.is_ended())
        .count();
    warn_if_unwatched(local.state_dir(), active);
    if global.json {
        emit_serialized::<RunDoc>("runs", entries.iter().map(|e| listing.json(e)));
        return Ok(());
    }
    let colour = colour(global);
    if entries.is_empty() {
        print("no runs yet; submit one with `shepherd SCRIPT`\n");
        return Ok(());
    }
    let now = Timestamp::now();
    let mut t = Table::new(&[
        "RUN", "STATUS", "MODE", "JOB", "NODE", "ATTEMPTS", "AGE", "REASON",
    ]);
    for Entry { row: r, .. } in entries {
        t.row_of(vec![
            r.run_id.as_str().into(),
            paint::status(colour, &r.status).into(),
            snake(&r.mode).into(),
            r.slurm_job_id.map_or("-".into(), |j| j.to_string().into()),
            r.node.as_deref().unwrap_or("-").into(),
            r.attempts.to_string().into(),
            if r.error {
                "-".into()
            } else {
                age(r.created_at, now).into()
            },
            r.reason.as_str().into(),
        ]);
    }
    print(&terminal_safe(&t.render()));
    Ok(())
}

pub fn status(global: &GlobalArgs, run: &str) -> Result<()> {
    let local = local(global)?;
    let doc = local.status(run)?;
    let id = doc.run_id.clone();
    warn_if_unwatched(
        local.state_dir(),
        usize::from(doc.error.is_none() && !doc.is_ended()),
    );
    let quarantined = doc.error.clone();
    let colour = colour(global);
    emit(global.json, "run", &doc, |d| {
        let mut s = format!(
            "run       {}\nstatus    {}{}\nreason    {}\nmode      {}\njob       {}\nnode      {}\npartition {}\nfailures  {} of {} allowed\ndir       {}\n",
            d.run_id,
            paint::status(colour, &d.status),
            if d.paused { " (paused)" } else { "" },
            d.reason,
            snake(&d.mode),
            d.slurm_job_id.map_or("-".into(), |j| j.to_string()),
            d.node.as_deref().unwrap_or("-"),
            d.partition.as_deref().unwrap_or("-"),
            d.workload_failures,
            d.max_retries,
            d.run_dir.display(),
        );
        if !d.attempts.is_empty() {
            let mut t = Table::new(&[
                "ATTEMPT",
                "JOB",
                "PARTITION",
                "NODE",
                "OUTCOME",
                "BLAME",
                "DETAIL",
            ]);
            for a in &d.attempts {
                t.row(vec![
                    a.attempt.to_string(),
                    a.job_id.map_or("-".into(), |j| j.to_string()),
                    a.partition.clone().unwrap_or_else(|| "-".into()),
                    a.node.clone().unwrap_or_else(|| "-".into()),
                    a.outcome
                        .as_ref()
                        .map_or_else(|| a.phase.to_string(), Word::to_string),
                    a.blame.as_ref().map_or_else(|| "-".into(), Word::to_string),
                    a.detail.clone().unwrap_or_default(),
                ]);
            }
            s.push('\n');
            s.push_str(&t.render());
            // Probes that did not find the node healthy, said plainly:
            // an inconclusive one was not held against the node.
            for a in &d.attempts {
                for p in a
                    .probes
                    .iter()
                    .filter(|p| !p.status.is(ProbeStatus::Healthy))
                {
                    s.push_str(&format!(
                        "attempt {} GPU probe {}: {}: {}\n",
                        a.attempt, p.name, p.status, p.detail
                    ));
                }
            }
        }
        s
    });
    if let Some(e) = quarantined {
        if global.json {
            // The run document above says it all (`status: error`, `error`):
            // one JSON document per invocation, and the exit code says it failed.
            return Err(Error::new(
                Kind::Reported,
                anyhow::anyhow!("run {id} cannot be read: {e}"),
            ));
        }
        fail!("run {id} cannot be read: {e}");
    }
    Ok(())
}

/// `wait RUN [--timeout D]`: block until the run ends, then print it (as
/// `status` does) and return the exit code of its end
/// ([`super::exit::for_ended_run`]). Reads only the run's `state.json`, so
/// waiting costs Slurm nothing; the daemon does the watching.
pub fn wait(global: &GlobalArgs, run: &str, timeout: Option<std::time::Duration>) -> Result<u8> {
    use std::time::{Duration, Instant};
    let local = local(global)?;
    let sd = local.state_dir();
    let id = local.find_run(run)?;
    let dir = sd.run(&id);
    // Bounded at parse time (crate::duration), so this cannot overflow.
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut watched = true;
    let mut last_lease_check: Option<Instant> = None;
    let unreadable = |e: crate::store::atomic::StoreError| {
        Error::from(e).context(format!(
            "run {id} cannot be read, so its end cannot be known"
        ))
    };
    // The spec is written once, at creation: read it once; the state each
    // time round.
    dir.load_spec().map_err(unreadable)?;
    let code = loop {
        let status = match dir.load_state().map_err(unreadable)? {
            Some(st) => st.status,
            None => crate::policy::state::RunStatus::Queued,
        };
        if let Some(code) = super::exit::for_ended_run(status) {
            break code;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break super::exit::WAIT_TIMED_OUT;
        }
        // The run ends only if a daemon watches it: say so once when none
        // does (and again if one came and went), but keep waiting: the next
        // `shepherd` command that starts a daemon lets the run go on.
        if last_lease_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            last_lease_check = Some(Instant::now());
            let now_watched = service::status(sd).is_some();
            if watched && !now_watched {
                eprintln!(
                    "note: no daemon is running, so run {id} is not being watched and cannot end; \
                     start one with `shepherd daemon start`"
                );
            }
            watched = now_watched;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let doc = run_doc(sd, &id);
    let colour = colour(global);
    emit(global.json, "run", &doc, |d| {
        if code == super::exit::WAIT_TIMED_OUT {
            format!(
                "run {} is still {} after {}: {}\n",
                d.run_id,
                paint::status(colour, &d.status),
                crate::duration::format(timeout.unwrap_or_default()),
                d.reason
            )
        } else {
            format!(
                "run {} {}: {}\n",
                d.run_id,
                paint::status(colour, &d.status),
                d.reason
            )
        }
    });
    Ok(code)
}

pub fn events(global: &GlobalArgs, run: &str) -> Result<()> {
    let events = local(global)?.events(run)?;
    emit(global.json, "events", &events, |evs| {
        let mut t = Table::new(&["TIME", "ATTEMPT", "JOB", "EVENT", "STATUS", "MESSAGE"]);
        for e in evs {
            t.row(vec![
                e.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                e.attempt.map_or("-".into(), |a| a.to_string()),
                e.job_id.map_or("-".into(), |j| j.to_string()),
                e.kind.clone(),
                e.status.clone(),
                e.message.clone(),
            ]);
        }
        t.render()
    });
    Ok(())
}

/// stop, pause, unpause, restart: file the request; the daemon applies it.
pub fn control(global: &GlobalArgs, run: &str, control: Control) -> Result<()> {
    let requested = local(global)?.control(run, control)?;
    emit(global.json, "requested", &requested, |r| {
        format!("{}\n", r.sentence())
    });
    Ok(())
}

/// `rm RUN [--force]`: delete an ended run; with `--force`, stop it first
/// through the daemon (which cancels its job) and wait until it has ended.
pub fn rm(global: &GlobalArgs, run: &str, force: bool, wait: std::time::Duration) -> Result<()> {
    let removed = local(global)?.remove(run, force, wait)?;
    if !removed.cancelled.is_empty() {
        eprintln!(
            "cancelled job(s) {} of run {}",
            removed
                .cancelled
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            removed.run_id
        );
    }
    emit(global.json, "removed", &removed.run_id, |id| {
        format!("removed run {id}\n")
    });
    Ok(())
}

pub fn progress(step: Option<u64>, message: Option<String>) -> Result<()> {
    crate::wrapper::report_progress(step, message)?;
    print("");
    Ok(())
}
