//! The daemon as a process: the loop (`shepherd daemon run`), and starting,
//! stopping and inspecting it from the CLI.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;

use super::lease::{self, Held, Lease, StartedBy};
use super::tick::{TickReport, Ticker};
use crate::slurm::Slurm;
use crate::store::StateDir;

pub use crate::store::log::Log;

/// The poll interval of a daemon that a command (run, a control, the TUI)
/// starts on the user's behalf: `SHEPHERD_POLL_INTERVAL`, else 10 s, as for
/// `daemon start`.
pub fn default_poll_interval() -> Duration {
    std::env::var("SHEPHERD_POLL_INTERVAL")
        .ok()
        .and_then(|v| crate::duration::parse(&v).ok())
        .unwrap_or(Duration::from_secs(10))
}

/// Runs the daemon in the foreground until SIGTERM/SIGINT.
pub fn run(
    slurm: &dyn Slurm,
    state_dir: &StateDir,
    poll: Duration,
    slurm_timeout: Duration,
    started_by: StartedBy,
) -> anyhow::Result<()> {
    state_dir.ensure_private_root()?;
    // Off by the user's choice (`daemon stop`): automation leaves it off.
    if matches!(started_by, StartedBy::Keeper | StartedBy::Ensure)
        && let Some(at) = super::keeper::stopped(state_dir)
    {
        eprintln!(
            "the daemon was stopped with `shepherd daemon stop` at {}; not starting (`shepherd daemon start` starts it again)",
            at.strftime("%Y-%m-%d %H:%M:%S UTC")
        );
        return Ok(());
    }
    let held = std::cell::RefCell::new(match started_by {
        StartedBy::Keeper => keeper_acquire(state_dir, poll)?,
        _ => Held::acquire(&state_dir.daemon(), poll, Timestamp::now(), started_by)?,
    });
    let log = Log::new(state_dir);
    log.line(&format!(
        "daemon started ({}), polling every {}; {}",
        held.borrow().lease().describe(),
        crate::duration::format(poll),
        started_by.describe()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let exe = std::env::current_exe().context("cannot locate the shepherd binary")?;
    let ticker_exe = exe.clone();
    let (config, config_path) = crate::config::load(state_dir.root())?;
    if let Some(p) = &config_path {
        log.line(&format!("configuration from {}", p.display()));
    }
    // During a long tick (slow Slurm, many submissions) the lease is
    // renewed between runs, at most once a poll; a tick that finds it
    // taken over stops acting at once.
    let renewed = std::cell::Cell::new(Instant::now());
    let fence = || {
        if renewed.get().elapsed() < poll {
            return true;
        }
        let mut h = held.borrow_mut();
        if h.taken_over().is_some() {
            return false;
        }
        // A failed renewal is the loop's to handle (it fences itself
        // before the lease could go stale).
        if h.renew(Timestamp::now()).is_ok() {
            renewed.set(Instant::now());
        }
        true
    };
    let ticker = Ticker::new(slurm, state_dir, exe)
        .with_config(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.unwrap_or_default().display()))?
        .with_fence(fence);
    // Notices are sent on their own thread: a slow endpoint never delays a
    // tick.
    let sender =
        crate::notify::sender::spawn(state_dir.clone(), Duration::from_secs(1), Arc::clone(&stop))
            .context("cannot start the notification thread")?;
    let mut said = Said::default();
    // Since when the lease could not be renewed, if it cannot now.
    let mut unrenewed: Option<Instant> = None;
    let fence_after = fence_after(held.borrow().lease(), poll);
    let keeper = config.keeper.settings().ok().flatten();
    let keeper_command = super::keeper::KeeperCommand {
        exe: ticker_exe.clone(),
        poll,
        slurm_timeout,
    };
    let own_job = std::env::var("SLURM_JOB_ID").ok();
    let other_keepers = |ids: Vec<crate::slurm::JobId>| -> Vec<crate::slurm::JobId> {
        ids.into_iter()
            .filter(|j| Some(j.to_string()) != own_job)
            .collect()
    };
    if started_by == StartedBy::Keeper {
        // Its successor waits behind it (singleton) to take over at its
        // time limit; cancelled when the lease is handed back. One queued
        // already (a wrapper's request that raced) is the successor.
        match (
            &keeper,
            super::keeper::queued(slurm, state_dir).map(other_keepers),
        ) {
            (None, _) => {
                log.line("keeper: [keeper] is off in the configuration; no successor queued")
            }
            (Some(_), Ok(ids)) if !ids.is_empty() => {
                log.line(&format!("keeper: successor job {} queued already", ids[0]))
            }
            (Some(k), _) => match super::keeper::submit(slurm, state_dir, k, &keeper_command) {
                Ok(id) => log.line(&format!("keeper: successor job {id} queued")),
                Err(e) => log.line(&format!("keeper: cannot queue a successor: {e}")),
            },
        }
    } else {
        // A daemon the user (or cron, checked above) started: the choice
        // to stop is over, and a request for the lease is answered.
        super::keeper::clear_stopped(state_dir);
        super::keeper::clear_handback(state_dir);
    }
    // Read once: a borrow in the condition below would live through its
    // block, where the lease is released (a RefCell panic, found by CI).
    let since = held.borrow().lease().started_at;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let now = Timestamp::now();
        if started_by == StartedBy::Keeper
            && let Some(m) = super::keeper::handback_asked(state_dir, since)
        {
            log.line(&match m.stop {
                false => format!(
                    "keeper: a daemon on {} (pid {}) asks for the lease; handing it back",
                    m.host, m.pid
                ),
                true => format!(
                    "keeper: `daemon stop` on {} (pid {}); stopping without a successor",
                    m.host, m.pid
                ),
            });
            // The lease first, before any Slurm call (which may take its
            // whole timeout): the daemon waiting for it starts at once.
            held.borrow_mut().release();
            match super::keeper::queued(slurm, state_dir) {
                Ok(ids) => {
                    if let Err(e) = slurm.cancel(&other_keepers(ids)) {
                        log.line(&format!(
                            "keeper: cannot cancel its successor: {e} (it will find the daemon and end)"
                        ));
                    }
                }
                Err(e) => log.line(&format!(
                    "keeper: cannot find its successor: {e} (it will find the daemon and end)"
                )),
            }
            drop(sender);
            return Ok(());
        }
        let taken = held.borrow().taken_over();
        if let Some(other) = taken {
            let why = format!(
                "another daemon took the lease over ({}); stopping so that no two daemons act",
                other.describe()
            );
            return Err(fenced(&log, why));
        }
        // A daemon acts only under a lease it has just renewed. One that
        // cannot renew it (full disk, quota, a read-only remount) stops
        // acting at once, and exits before another daemon could take the
        // lease over as stale: two daemons never act on the same runs.
        let renewal = held.borrow_mut().renew(now);
        if renewal.is_ok() {
            renewed.set(Instant::now());
        }
        match renewal {
            Ok(()) => {
                if unrenewed.take().is_some() {
                    log.line("lease renewed again; acting again");
                }
            }
            Err(e) => {
                let since = *unrenewed.get_or_insert(started);
                if since.elapsed() >= fence_after {
                    let why = format!(
                        "cannot renew the lease for {}: {e}; stopping so that no two daemons act (start one again with `shepherd daemon start` once the state directory is writable)",
                        crate::duration::format(since.elapsed())
                    );
                    return Err(fenced(&log, why));
                }
                log.line(&format!(
                    "cannot renew the lease, not acting this tick: {e}"
                ));
                sleep_until(started + poll, &stop);
                continue;
            }
        }
        let report = ticker.tick(now);
        log_report(&log, &report, &mut said, started.elapsed());
        // A tick longer than the lease lives (Slurm answering slowly, many
        // submissions) is renewed between runs; said, so a site's slow
        // controller shows in the log.
        let stale_after = held.borrow().lease().stale_after();
        if started.elapsed() >= stale_after {
            log.line(&format!(
                "a slow tick: {} (longer than the lease lives, {}; it was renewed between runs)",
                crate::duration::format(started.elapsed()),
                crate::duration::format(stale_after)
            ));
        }
        sleep_until(started + poll, &stop);
    }
    log.line("daemon stopping on signal");
    // Not joined: a delivery in flight may take its whole timeout, and one
    // cut short is sent again by the next daemon (at least once).
    drop(sender);
    if started_by == StartedBy::Keeper {
        // Slurm's time limit (or a cancel), not the user's `daemon stop`:
        // the successor takes the lease, or the wrappers ask again.
        held.borrow_mut().leave_stale();
    }
    Ok(())
}

/// A keeper takes the lease once the daemon it replaces has let it go
/// stale: from a compute node the dead daemon's pid cannot be checked, so
/// its lease counts as live until [`Lease::stale_after`]. The keeper waits
/// that long (plus the watch before a takeover) rather than give up; a
/// daemon that renews the lease meanwhile keeps it, and the keeper ends.
fn keeper_acquire(state_dir: &StateDir, poll: Duration) -> anyhow::Result<Held> {
    let dir = state_dir.daemon();
    let first = lease::read_lease(&dir);
    let give_up = Instant::now()
        + first.as_ref().map_or(Duration::ZERO, |l| {
            l.stale_after() + lease::confirm_wait(l) + poll
        });
    loop {
        match Held::acquire(&dir, poll, Timestamp::now(), StartedBy::Keeper) {
            Err(lease::LeaseError::Held(who)) if Instant::now() < give_up => {
                // Renewed, or another daemon's now: a live daemon; not ours
                // to replace.
                if lease::read_lease(&dir) != first {
                    return Err(lease::LeaseError::Held(who).into());
                }
                std::thread::sleep(poll.max(Duration::from_secs(1)));
            }
            other => return Ok(other?),
        }
    }
}

/// A daemon that must stop acting says why in its log and on stderr
/// (daemon.out), then exits with that error (the sender thread goes with
/// it, as on a signal).
fn fenced(log: &Log, why: String) -> anyhow::Error {
    log.line(&why);
    eprintln!("{why}");
    anyhow::anyhow!(why)
}

/// Sleeps in short slices so a stop request is honoured promptly.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now().min(deadline)));
    }
}

/// How long a daemon keeps trying to renew its lease (acting on nothing)
/// before it exits: half the time after which others take the lease over,
/// and no more than three polls.
fn fence_after(lease: &Lease, poll: Duration) -> Duration {
    (lease.stale_after() / 2).min(poll * 3)
}

/// What the log already said, so that a condition lasting many ticks (a
/// quarantined run, Slurm down) is logged when it starts and when it ends,
/// not once per tick: the log must not grow without bound.
#[derive(Default)]
struct Said {
    unavailable: bool,
    problems: std::collections::BTreeSet<String>,
}

fn log_report(log: &Log, r: &TickReport, said: &mut Said, took: Duration) {
    match (&r.slurm_unavailable, said.unavailable) {
        (Some(e), false) => log.line(&format!("Slurm unavailable, keeping last known state: {e}")),
        (None, true) => log.line("Slurm reachable again"),
        _ => {}
    }
    said.unavailable = r.slurm_unavailable.is_some();
    let now: std::collections::BTreeSet<String> = r.problems.iter().cloned().collect();
    for p in now.difference(&said.problems) {
        log.line(&format!("problem: {p}"));
    }
    for p in said.problems.difference(&now) {
        log.line(&format!("problem gone: {p}"));
    }
    said.problems = now;
    if r.submitted + r.cancelled > 0 {
        log.line(&format!(
            "tick: {} runs, {} active, {} submitted, {} cancelled, {} ms",
            r.runs,
            r.active,
            r.submitted,
            r.cancelled,
            took.as_millis()
        ));
    }
}

/// The live daemon's lease, if one is running.
pub fn status(state_dir: &StateDir) -> Option<Lease> {
    let l = lease::read_lease(&state_dir.daemon())?;
    // On this host the pid is checked to be a daemon of ours for this state
    // directory: a lease outliving its daemon may name a reused pid.
    let alive = l.is_fresh(Timestamp::now())
        && (l.host != lease::hostname() || lease::is_daemon_process(l.pid, state_dir.root()));
    alive.then_some(l)
}

/// When a daemon of this state directory was last known to act: the
/// renewal time of a lease its daemon left behind (killed), else the last
/// line of the daemon log (a daemon that stopped says so last). `None`: no
/// daemon ever ran here.
pub fn last_seen(state_dir: &StateDir) -> Option<Timestamp> {
    if let Some(l) = lease::read_lease(&state_dir.daemon()) {
        return Some(l.heartbeat_at);
    }
    let modified = std::fs::metadata(log_path(state_dir))
        .and_then(|m| m.modified())
        .ok()?;
    Timestamp::try_from(modified).ok()
}

/// `daemon ensure`: a daemon of this state directory runs afterwards, and
/// this call started it only if none held a fresh lease. Cheap when one
/// runs (one file read, on this host a look at /proc; no Slurm call), and
/// safe to run from several login nodes at once: the lease decides.
/// A daemon the user stopped (`daemon stop`) stays stopped: cron does not
/// undo it.
pub fn ensure(
    state_dir: &StateDir,
    poll: Duration,
    slurm_timeout: Duration,
) -> anyhow::Result<Ensured> {
    if let Some(at) = super::keeper::stopped(state_dir) {
        return Ok(Ensured::Stopped(at));
    }
    let took_back = status(state_dir).is_some_and(|l| l.started_by == StartedBy::Keeper);
    let (lease, started) = start(state_dir, poll, slurm_timeout, StartedBy::Ensure)?;
    Ok(match (started, took_back) {
        (false, _) => Ensured::Running(lease),
        (true, false) => Ensured::Started(lease),
        (true, true) => Ensured::TookBack(lease),
    })
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// A daemon holds a fresh lease (on this login node or another).
    Running(Lease),
    /// None did: this call started one.
    Started(Lease),
    /// A keeper job held the lease: it handed it back to the daemon this
    /// call started.
    TookBack(Lease),
    /// Stopped with `daemon stop` at this time: left stopped.
    Stopped(Timestamp),
}

/// Starts `shepherd daemon run` in the background unless one runs already.
/// Returns the lease of the running daemon and whether this call started it.
pub fn start(
    state_dir: &StateDir,
    poll: Duration,
    slurm_timeout: Duration,
    how: StartedBy,
) -> anyhow::Result<(Lease, bool)> {
    if let Some(l) = status(state_dir) {
        let keeper_holds = l.started_by == StartedBy::Keeper
            && how != StartedBy::Keeper
            && std::env::var_os("SLURM_JOB_ID").is_none();
        if !keeper_holds {
            return Ok((l, false));
        }
        // A keeper job holds the lease and a login node can run the daemon
        // again: ask for the lease back and wait until the keeper has let
        // it go (at the start of its next tick), so the two never act in
        // the same tick. A keeper that does not answer goes on.
        let asked = super::keeper::ask_for_handback(state_dir, Timestamp::now(), false)?;
        let deadline = Instant::now() + Duration::from_secs(l.poll_interval_secs * 2 + 15);
        loop {
            match status(state_dir) {
                Some(k) if k.pid == l.pid && k.host == l.host => {
                    if Instant::now() > deadline {
                        // Nobody will be waiting when it answers later.
                        super::keeper::withdraw_handback(state_dir, &asked);
                        return Ok((k, false));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(other) => return Ok((other, false)),
                None => break,
            }
        }
    }
    state_dir.ensure_private_root()?;
    let daemon_dir = state_dir.daemon();
    std::fs::create_dir_all(&daemon_dir)
        .with_context(|| format!("cannot create {}", daemon_dir.display()))?;
    let out_path = daemon_dir.join("daemon.out");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("cannot open {}", out_path.display()))?;
    let exe = std::env::current_exe().context("cannot locate the shepherd binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(state_dir.root())
        .arg("--slurm-timeout")
        .arg(format!("{}s", slurm_timeout.as_secs().max(1)))
        .args(["daemon", "run", "--poll-interval"])
        .arg(format!("{}s", poll.as_secs().max(1)))
        .args(["--started-by", how.as_str()])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // Its own session: no terminal, no signals from the user's shell.
    unsafe_setsid(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    // Another host's stale lease is watched before it is taken over.
    let watch = lease::read_lease(&daemon_dir)
        .filter(|l| l.host != lease::hostname())
        .map_or(Duration::ZERO, |l| lease::confirm_wait(&l));
    let deadline = Instant::now() + Duration::from_secs(15) + watch;
    // Ours only if the lease names the process we started: another one
    // (this host's or another login node's, racing us) may win the lease.
    let (pid, host) = (child.id(), lease::hostname());
    let ours = |l: &Lease| l.pid == pid && l.host == host;
    loop {
        if let Some(l) = status(state_dir) {
            // One that lost exits by itself; never waited for here (were
            // the winner to die now, ours would take over and run on).
            let started = ours(&l);
            return Ok((l, started));
        }
        if let Ok(Some(code)) = child.try_wait() {
            // Our daemon lost a race with another one starting at the same
            // time: wait a moment for the winner's lease before giving up.
            // (The winner may be watching another host's stale lease.)
            let grace = Instant::now() + Duration::from_secs(5) + watch;
            while Instant::now() < grace {
                if let Some(l) = status(state_dir) {
                    return Ok((l, false));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let tail = std::fs::read_to_string(&out_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the daemon exited at once ({code}); its last words:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not come up within {} s; see {}",
                (Duration::from_secs(15) + watch).as_secs(),
                out_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unsafe_setsid(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Stops the daemon of this state directory (it must run on this host).
///
/// The daemon stays off by the user's choice (`STATE/daemon/stopped`) until
/// a user starts one: cron's `daemon ensure` and keepers leave it off.
pub fn stop(slurm: &dyn Slurm, state_dir: &StateDir) -> anyhow::Result<Option<Lease>> {
    let Some(l) = status(state_dir) else {
        super::keeper::mark_stopped(state_dir, Timestamp::now())?;
        return Ok(None);
    };
    if l.started_by == StartedBy::Keeper {
        // A keeper job is stopped through the lease, as it hands back: it
        // gives up the lease and cancels its successor; the mark keeps any
        // keeper that starts anyway (a successor not cancelled) from
        // acting.
        super::keeper::mark_stopped(state_dir, Timestamp::now())?;
        super::keeper::ask_for_handback(state_dir, Timestamp::now(), true)?;
        let wait = Duration::from_secs(l.poll_interval_secs * 2 + 15);
        let deadline = Instant::now() + wait;
        // A lease that cannot be read is no evidence the keeper let go:
        // keep waiting (and cancel its jobs at the deadline).
        let holds = || match lease::read_lease_checked(&state_dir.daemon()) {
            Ok(k) => k.is_some_and(|k| {
                k.pid == l.pid && k.host == l.host && k.is_fresh(Timestamp::now())
            }),
            Err(_) => true,
        };
        while holds() {
            if Instant::now() > deadline {
                // It does not answer (hung, or gone at its time limit with
                // its lease still fresh): its jobs, found by their name
                // (this user's own), are cancelled instead.
                let ids = super::keeper::queued(slurm, state_dir)
                    .context("the keeper did not answer, and its jobs cannot be found")?;
                slurm
                    .cancel(&ids)
                    .context("the keeper did not answer, and its jobs cannot be cancelled")?;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        return Ok(Some(l));
    }
    if l.host != lease::hostname() {
        bail!(
            "the daemon runs on {} (pid {}); run `shepherd daemon stop` there",
            l.host,
            l.pid
        );
    }
    // Never signal a process not verified as ours: `status` checked that the
    // pid is a Shepherd daemon of this user and state directory; the lock
    // says that a daemon of this directory is really running.
    if !lease::lock_is_held(&state_dir.daemon()) {
        bail!(
            "the lease names pid {} on this host, but no daemon holds this state directory's lock; \
             nothing was signalled (a stale or copied lease: remove {} if no daemon runs)",
            l.pid,
            lease::lease_path(&state_dir.daemon()).display()
        );
    }
    let pid = rustix::process::Pid::from_raw(l.pid as i32).context("invalid pid in the lease")?;
    super::keeper::mark_stopped(state_dir, Timestamp::now())?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .with_context(|| format!("cannot signal the daemon (pid {})", l.pid))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease::process_alive(l.pid) {
        if Instant::now() > deadline {
            bail!("the daemon (pid {}) did not stop within 30 s", l.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(l))
}

/// The last line of the daemon's log (read from its last 4 KiB): what a
/// daemon that is gone said last, e.g. why it stopped.
pub fn last_log_line(state_dir: &StateDir) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log_path(state_dir)).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}

pub fn log_path(state_dir: &StateDir) -> PathBuf {
    state_dir.daemon().join("daemon.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_problem_is_logged_when_it_starts_and_ends_not_every_tick() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        std::fs::create_dir_all(sd.daemon()).unwrap();
        let log = Log::new(&sd);
        let mut said = Said::default();
        let quarantined = TickReport {
            problems: vec!["run r: state.json is corrupt".into()],
            slurm_unavailable: Some("timed out".into()),
            ..TickReport::default()
        };
        for _ in 0..50 {
            log_report(&log, &quarantined, &mut said, Duration::ZERO);
        }
        log_report(&log, &TickReport::default(), &mut said, Duration::ZERO);
        let text = std::fs::read_to_string(log_path(&sd)).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "Slurm unavailable, keeping last known state: timed out",
                "problem: run r: state.json is corrupt",
                "Slurm reachable again",
                "problem gone: run r: state.json is corrupt",
            ]
        );
    }
}
