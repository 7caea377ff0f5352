//! Commands about runs: run, list, status, events, stop/pause/unpause/restart,
//! and the daemon's start/stop/status/run.

use std::path::PathBuf;

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde::Serialize;

use super::args::{DaemonCommand, GlobalArgs, RunArgs};
use super::output::{Table, emit, paint, print};
use crate::daemon::service;
use crate::policy::decide::Control;
use crate::policy::state::RunState;
use crate::slurm::{SlurmCli, SlurmCliConfig};
use crate::store::StateDir;
use crate::store::records::ProbeStatus;
use crate::view::{RunDoc, Word, find_run, run_doc, run_docs, snake};

pub fn state_dir(global: &GlobalArgs) -> anyhow::Result<StateDir> {
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

pub(super) fn slurm(global: &GlobalArgs) -> SlurmCli {
    SlurmCli::new(SlurmCliConfig {
        timeout: global.slurm_timeout,
        ..SlurmCliConfig::default()
    })
}

/// `shepherd run SCRIPT`: create the run and make sure a daemon watches it.
pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let (config, _) = crate::config::load(sd.root())?;
    let defaults = config
        .defaults
        .run_options()
        .map_err(|e| anyhow::anyhow!(e))?;
    let prepared =
        crate::submit::prepare(&args.script, defaults, args.options, &cwd, Timestamp::now())?;
    for warning in crate::submit::check_launch(&args.script, &prepared, !args.no_script_check)? {
        eprintln!("warning: {warning}");
    }
    check_partitions(global, &prepared.spec.resources.partitions)?;
    let channels = config.channels().map_err(|e| anyhow::anyhow!(e))?;
    crate::notify::channels::for_run(&channels, prepared.spec.notify.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let run = crate::submit::create(&sd, &prepared)?;
    let (lease, started) = service::start(&sd, args.poll.poll_interval, global.slurm_timeout)
        .context(
            "the run was created, but the daemon could not be started; try `shepherd daemon start`",
        )?;
    let id = prepared.spec.run_id.to_string();
    #[derive(Serialize)]
    struct Created {
        run_id: String,
        run_dir: PathBuf,
        daemon_pid: u32,
        daemon_started: bool,
    }
    let created = Created {
        run_id: id.clone(),
        run_dir: run.path().to_path_buf(),
        daemon_pid: lease.pid,
        daemon_started: started,
    };
    emit(global.json, "run", &created, |c| {
        let daemon = if c.daemon_started {
            format!("started the daemon (pid {})", c.daemon_pid)
        } else {
            format!("daemon running (pid {})", c.daemon_pid)
        };
        format!(
            "created run {}\n  {daemon}; follow it with `shepherd status {}`\n",
            c.run_id, c.run_id
        )
    });
    Ok(())
}

/// Pinned partitions must exist. When Slurm cannot be asked now, the run is
/// created anyway: the daemon will meet sbatch's verdict.
fn check_partitions(global: &GlobalArgs, pinned: &[String]) -> anyhow::Result<()> {
    if pinned.is_empty() {
        return Ok(());
    }
    let slurm = SlurmCli::new(SlurmCliConfig {
        timeout: global.slurm_timeout.min(std::time::Duration::from_secs(10)),
        ..SlurmCliConfig::default()
    });
    let Ok(parts) = crate::slurm::Slurm::partitions(&slurm) else {
        return Ok(());
    };
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    for p in pinned {
        if !names.contains(&p.as_str()) {
            bail!(
                "unknown partition {p:?} in --partitions; this cluster has: {}",
                names.join(", ")
            );
        }
    }
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

/// Active runs without a daemon are not watched: say so on stderr (commands
/// still work; the next `run`, `stop` … starts a daemon).
fn warn_if_unwatched(sd: &StateDir, docs: &[RunDoc]) {
    let active = docs
        .iter()
        .filter(|d| d.error.is_none() && !d.is_ended())
        .count();
    if active > 0 && service::status(sd).is_none() {
        eprintln!(
            "note: no daemon is running, so {active} active run(s) are not being watched; \
             start one with `shepherd daemon start`"
        );
    }
}

pub fn list(global: &GlobalArgs) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let docs = run_docs(&sd, &sd.run_ids()?);
    warn_if_unwatched(&sd, &docs);
    let colour = colour(global);
    emit(global.json, "runs", &docs, |docs| {
        if docs.is_empty() {
            return "no runs yet; submit one with `shepherd SCRIPT`\n".to_string();
        }
        let now = Timestamp::now();
        let mut t = Table::new(&[
            "RUN", "STATUS", "MODE", "JOB", "NODE", "ATTEMPTS", "AGE", "REASON",
        ]);
        for d in docs {
            t.row(vec![
                d.run_id.clone(),
                paint::status(colour, &d.status),
                snake(&d.mode),
                d.slurm_job_id.map_or("-".into(), |j| j.to_string()),
                d.node.clone().unwrap_or_else(|| "-".into()),
                d.attempts.len().to_string(),
                if d.error.is_some() {
                    "-".into()
                } else {
                    age(d.created_at, now)
                },
                d.reason.clone(),
            ]);
        }
        t.render()
    });
    Ok(())
}

pub fn status(global: &GlobalArgs, run: &str) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let id = find_run(&sd, run)?;
    let doc = run_doc(&sd, &id);
    warn_if_unwatched(&sd, std::slice::from_ref(&doc));
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
            return Err(super::Reported.into());
        }
        bail!("run {id} cannot be read: {e}");
    }
    Ok(())
}

/// `wait RUN [--timeout D]`: block until the run ends, then print it (as
/// `status` does) and return the exit code of its end
/// ([`super::exit::for_ended_run`]). Reads only the run's `state.json`, so
/// waiting costs Slurm nothing; the daemon does the watching.
pub fn wait(
    global: &GlobalArgs,
    run: &str,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<u8> {
    use std::time::{Duration, Instant};
    let sd = state_dir(global)?;
    let id = find_run(&sd, run)?;
    let dir = sd.run(&id);
    // Bounded at parse time (crate::duration), so this cannot overflow.
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut watched = true;
    let mut last_lease_check: Option<Instant> = None;
    let unreadable = |e: crate::store::atomic::StoreError| {
        anyhow::Error::new(e).context(format!(
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
            let now_watched = service::status(&sd).is_some();
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
    let doc = run_doc(&sd, &id);
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

pub fn events(global: &GlobalArgs, run: &str) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let id = find_run(&sd, run)?;
    let events = sd.run(&id).read_events()?;
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
pub fn control(global: &GlobalArgs, run: &str, control: Control) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let id = find_run(&sd, run)?;
    let dir = sd.run(&id);
    dir.request_control(control, Timestamp::now())?;
    let (lease, _) = service::start(&sd, service::default_poll_interval(), global.slurm_timeout)?;
    #[derive(Serialize)]
    struct Requested {
        run_id: String,
        control: Control,
        daemon_pid: u32,
    }
    let r = Requested {
        run_id: id.to_string(),
        control,
        daemon_pid: lease.pid,
    };
    emit(global.json, "requested", &r, |r| {
        format!(
            "{} requested for run {}; the daemon applies it within one tick\n",
            snake(&r.control),
            r.run_id
        )
    });
    Ok(())
}

/// `rm RUN [--force]`: delete an ended run; with `--force`, stop it first
/// through the daemon (which cancels its job) and wait until it has ended.
pub fn rm(
    global: &GlobalArgs,
    run: &str,
    force: bool,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    let id = find_run(&sd, run)?;
    let dir = sd.run(&id);
    let still_active = |dir: &crate::store::RunDir| -> Option<RunState> {
        match (dir.load_spec(), dir.load_state()) {
            (Ok(_), Ok(Some(st))) if !st.status.is_terminal() => Some(st),
            (Ok(spec), Ok(None)) => Some(RunState::new(spec.created_at)),
            _ => None,
        }
    };
    // A run whose files cannot be read (corrupt, or written by a newer
    // Shepherd) may still have a live job that no daemon can see any more.
    if let Err(e) = dir.load_spec().and_then(|_| dir.load_state()) {
        if !force {
            bail!(
                "run {id} cannot be read ({e}), so Shepherd cannot tell whether its job still runs; \
                 `shepherd rm --force {id}` cancels any job of it still in Slurm, then removes it \
                 (or upgrade shepherd if a newer one wrote it)"
            );
        }
        cancel_jobs_of_unreadable_run(global, &dir, &id)?;
    }
    if let Some(st) = still_active(&dir) {
        if !force {
            bail!(
                "run {id} is {} ({}); stop it first with `shepherd stop {id}`, or remove it with `shepherd rm --force {id}`",
                st.status.as_str(),
                st.reason
            );
        }
        dir.request_control(Control::Stop, Timestamp::now())?;
        let poll = service::default_poll_interval();
        service::start(&sd, poll, global.slurm_timeout)?;
        let deadline = std::time::Instant::now() + wait;
        while still_active(&dir).is_some() {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "the daemon did not stop run {id} within {}; nothing was removed (see `shepherd daemon status`)",
                    crate::duration::format(wait)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    sd.remove_run(&id)
        .with_context(|| format!("cannot remove run {id}"))?;
    emit(global.json, "removed", &id.to_string(), |id| {
        format!("removed run {id}\n")
    });
    Ok(())
}

/// `rm --force` of a run whose files cannot be read: its jobs are found by
/// name (`shepherd.RUN.K` for every attempt directory, and the next one, in
/// case it was being submitted) and cancelled. When Slurm cannot be asked,
/// nothing is removed.
fn cancel_jobs_of_unreadable_run(
    global: &GlobalArgs,
    dir: &crate::store::RunDir,
    id: &crate::model::RunId,
) -> anyhow::Result<()> {
    use crate::slurm::Slurm;
    let mut attempts: Vec<u32> = std::fs::read_dir(dir.path().join("attempts"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    attempts.push(attempts.iter().max().map_or(1, |m| m + 1));
    let names: Vec<String> = attempts
        .iter()
        .map(|k| crate::policy::decide::job_name_of(id, *k))
        .collect();
    let slurm = slurm(global);
    let live: Vec<_> = slurm
        .jobs_by_name(&names)
        .with_context(|| format!("cannot look for jobs of run {id}; nothing was removed"))?
        .into_iter()
        .filter(|j| !j.state.is_terminal())
        .map(|j| j.id)
        .collect();
    if !live.is_empty() {
        slurm
            .cancel(&live)
            .with_context(|| format!("cannot cancel the jobs of run {id}; nothing was removed"))?;
        eprintln!(
            "cancelled job(s) {} of run {id}",
            live.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

pub fn daemon(global: &GlobalArgs, cmd: DaemonCommand) -> anyhow::Result<()> {
    let sd = state_dir(global)?;
    match cmd {
        DaemonCommand::Run(poll) => service::run(&slurm(global), &sd, poll.poll_interval),
        DaemonCommand::Start(poll) => {
            let (lease, started) = service::start(&sd, poll.poll_interval, global.slurm_timeout)?;
            emit(global.json, "daemon", &lease, |l| {
                if started {
                    format!("daemon started ({})\n", l.describe())
                } else {
                    format!("daemon already running ({})\n", l.describe())
                }
            });
            Ok(())
        }
        DaemonCommand::Stop => {
            let stopped = service::stop(&sd)?;
            emit(global.json, "stopped", &stopped, |s| match s {
                Some(l) => format!("daemon stopped (was {})\n", l.describe()),
                None => "no daemon was running\n".to_string(),
            });
            Ok(())
        }
        DaemonCommand::Status => {
            let lease = service::status(&sd);
            emit(global.json, "daemon", &lease, |l| match l {
                Some(l) => format!(
                    "daemon running ({}), last tick {}\nlog: {}\n",
                    l.describe(),
                    l.heartbeat_at.strftime("%H:%M:%S UTC"),
                    service::log_path(&sd).display()
                ),
                None => {
                    let mut s = "no daemon running; runs are not watched (start one with `shepherd daemon start`)\n"
                        .to_string();
                    if let Some(last) = service::last_log_line(&sd) {
                        s.push_str(&format!("the last daemon's last log line: {last}\n"));
                    }
                    s
                }
            });
            Ok(())
        }
    }
}

pub fn progress(step: Option<u64>, message: Option<String>) -> anyhow::Result<()> {
    crate::wrapper::report_progress(step, message)?;
    print("");
    Ok(())
}
