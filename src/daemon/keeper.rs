//! The keeper: the daemon run as a small job inside Slurm, for when nothing
//! on a login node brings one back (docs/daemon.md).
//!
//! - A run's wrapper that finds the lease unrenewed for `[keeper] after`
//!   runs `shepherd daemon keeper`, which [`ask`]s for one: unless a daemon
//!   is live, a keeper was asked for lately (`daemon/keeper-asked`, shared
//!   by every wrapper of the state directory) or a keeper job is queued or
//!   running, it submits one.
//! - The keeper job is `shepherd daemon run --started-by keeper` under a
//!   name of its own per state directory, with `--dependency=singleton`: at
//!   most one runs at a time. When it holds the lease it queues its
//!   successor (the same name, so it starts when this one ends), so the
//!   watch goes on past the time limit.
//! - The hand-back goes through the lease: a daemon starting on a login
//!   node writes `daemon/handback` and waits; the keeper, at the start of
//!   its next tick, cancels its queued successor, gives up the lease and
//!   exits; then the login-node daemon takes the lease. The two never act in
//!   the same tick.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::lease::{self, Lease};
use crate::config::Keeper;
use crate::slurm::{JobId, ScriptSource, Slurm, SlurmError, SubmitRequest};
use crate::store::StateDir;
use crate::store::atomic;

const MARK_VERSION: u32 = 1;

/// Who asked for a keeper, or for the lease back, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub version: u32,
    pub at: Timestamp,
    pub host: String,
    pub pid: u32,
    /// A hand-back that is a `daemon stop`: nobody takes the lease next.
    #[serde(default)]
    pub stop: bool,
}

impl Mark {
    fn now(now: Timestamp) -> Mark {
        Mark {
            version: MARK_VERSION,
            at: now,
            host: lease::hostname(),
            pid: std::process::id(),
            stop: false,
        }
    }
}

/// The keeper job's name: one per state directory (its path's hash), so
/// two state directories of one user have a keeper each and `singleton`
/// keeps each to one.
pub fn job_name(sd: &StateDir) -> String {
    // FNV-1a: stable across builds and hosts, which std's hasher is not.
    let mut h: u32 = 0x811c_9dc5;
    for b in sd.root().as_os_str().as_encoded_bytes() {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    format!("shepherd-keeper.{h:08x}")
}

fn asked_path(sd: &StateDir) -> std::path::PathBuf {
    sd.daemon().join("keeper-asked")
}

fn handback_path(sd: &StateDir) -> std::path::PathBuf {
    sd.daemon().join("handback")
}

fn stopped_path(sd: &StateDir) -> std::path::PathBuf {
    sd.daemon().join(crate::records::lease::STOPPED_FILE)
}

/// `daemon stop` was asked (see [`crate::records::lease::STOPPED_FILE`]).
pub fn mark_stopped(sd: &StateDir, now: Timestamp) -> Result<(), KeeperError> {
    std::fs::create_dir_all(sd.daemon()).map_err(|e| KeeperError::Io(e.to_string()))?;
    atomic::write_json(&stopped_path(sd), &Mark::now(now))
        .map_err(|e| KeeperError::Io(e.to_string()))
}

/// When `daemon stop` was asked, if the daemon is still off by choice. A
/// mark that cannot be read counts as there: nothing is started on a
/// doubt.
pub fn stopped(sd: &StateDir) -> Option<Timestamp> {
    match atomic::read_json::<Mark>(&stopped_path(sd), MARK_VERSION) {
        Ok(m) => Some(m.at),
        Err(e) if e.is_not_found() => None,
        Err(_) => Some(Timestamp::UNIX_EPOCH),
    }
}

/// A daemon the user started: the choice to stop is over.
pub fn clear_stopped(sd: &StateDir) {
    let _ = std::fs::remove_file(stopped_path(sd));
}

/// What [`ask`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A daemon holds a fresh lease: nothing to do.
    DaemonRuns(Lease),
    /// `daemon stop` turned the daemon off: nothing brings it back.
    Stopped(Timestamp),
    /// Another wrapper asked at this time, lately: left to it.
    AskedLately(Timestamp),
    /// A keeper job is queued or running already.
    Queued(Vec<JobId>),
    Submitted(JobId),
}

impl Asked {
    pub fn describe(&self) -> String {
        match self {
            Asked::DaemonRuns(l) => format!("a daemon runs ({}); no keeper needed", l.describe()),
            Asked::Stopped(at) => format!(
                "the daemon was stopped with `shepherd daemon stop` at {}; no keeper until `shepherd daemon start`",
                at.strftime("%Y-%m-%d %H:%M:%S UTC")
            ),
            Asked::AskedLately(at) => format!(
                "a keeper was asked for at {}; left to that request",
                at.strftime("%H:%M:%S UTC")
            ),
            Asked::Queued(ids) => format!(
                "a keeper job is queued or running already ({})",
                ids.iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Asked::Submitted(id) => format!("submitted keeper job {id}"),
        }
    }
}

/// How long a request for a keeper stands before another may be made.
fn ask_window(keeper: &Keeper) -> Duration {
    keeper.after.min(Duration::from_secs(300))
}

/// A keeper, unless one is not needed or is coming.
pub fn ask(
    slurm: &dyn Slurm,
    sd: &StateDir,
    keeper: &Keeper,
    command: &KeeperCommand,
    now: Timestamp,
) -> Result<Asked, KeeperError> {
    if let Some(at) = stopped(sd) {
        return Ok(Asked::Stopped(at));
    }
    if let Some(l) = super::service::status(sd) {
        return Ok(Asked::DaemonRuns(l));
    }
    let path = asked_path(sd);
    if let Ok(m) = atomic::read_json::<Mark>(&path, MARK_VERSION) {
        let age = now.duration_since(m.at);
        if !age.is_negative() && age.unsigned_abs() < ask_window(keeper) {
            return Ok(Asked::AskedLately(m.at));
        }
    }
    // Written before Slurm is asked: wrappers asking at the same time
    // mostly see it; the name check below and `singleton` catch the rest.
    std::fs::create_dir_all(sd.daemon()).map_err(|e| KeeperError::Io(e.to_string()))?;
    atomic::write_json(&path, &Mark::now(now)).map_err(|e| KeeperError::Io(e.to_string()))?;
    let queued = queued(slurm, sd)?;
    if !queued.is_empty() {
        return Ok(Asked::Queued(queued));
    }
    Ok(Asked::Submitted(submit(slurm, sd, keeper, command)?))
}

/// The keeper jobs of this state directory that are pending or running.
pub fn queued(slurm: &dyn Slurm, sd: &StateDir) -> Result<Vec<JobId>, KeeperError> {
    Ok(slurm
        .jobs_by_name(&[job_name(sd)])?
        .into_iter()
        .filter(|j| !j.state.is_terminal())
        .map(|j| j.id)
        .collect())
}

/// What the keeper job runs.
#[derive(Debug, Clone)]
pub struct KeeperCommand {
    pub exe: std::path::PathBuf,
    pub poll: Duration,
    pub slurm_timeout: Duration,
}

/// The keeper job's script: the daemon, nothing else.
pub fn script(sd: &StateDir, c: &KeeperCommand) -> String {
    let q = |p: &Path| super::attempt::quote(&p.to_string_lossy());
    format!(
        "#!/bin/bash\n# Shepherd's keeper for {root}: the daemon while none runs on a login node.\n\
         exec {exe} --state-dir {qroot} --slurm-timeout {t}s daemon run --started-by keeper --poll-interval {p}s\n",
        root = sd.root().display(),
        exe = q(&c.exe),
        qroot = q(sd.root()),
        t = c.slurm_timeout.as_secs().max(1),
        p = c.poll.as_secs().max(1),
    )
}

/// sbatch's arguments for a keeper job.
pub fn sbatch_args(sd: &StateDir, keeper: &Keeper) -> Vec<String> {
    let mut args = vec![
        format!("--job-name={}", job_name(sd)),
        // One at a time: a successor waits for the keeper before it.
        "--dependency=singleton".to_string(),
        format!("--time={}", keeper.time_limit.as_secs().div_ceil(60)),
        "--ntasks=1".to_string(),
        "--cpus-per-task=1".to_string(),
        format!("--output={}/keeper-%j.out", sd.daemon().display()),
    ];
    if let Some(p) = &keeper.partition {
        args.push(format!("--partition={p}"));
    }
    args.extend(keeper.sbatch_args.iter().cloned());
    args
}

/// Submits a keeper job (the first, or a running keeper's successor).
pub fn submit(
    slurm: &dyn Slurm,
    sd: &StateDir,
    keeper: &Keeper,
    command: &KeeperCommand,
) -> Result<JobId, KeeperError> {
    Ok(slurm.submit(&SubmitRequest {
        script: ScriptSource::Text(script(sd, command)),
        args: sbatch_args(sd, keeper),
        env: None,
    })?)
}

/// A login-node daemon asks the keeper for the lease; with `stop`, the
/// user stops the daemon (`daemon stop`) and nobody takes it. Returns the
/// request, to [`withdraw_handback`] it.
pub fn ask_for_handback(sd: &StateDir, now: Timestamp, stop: bool) -> Result<Mark, KeeperError> {
    let mark = Mark {
        stop,
        ..Mark::now(now)
    };
    atomic::write_json(&handback_path(sd), &mark).map_err(|e| KeeperError::Io(e.to_string()))?;
    Ok(mark)
}

/// A request nobody answered in time is taken back (if it is still this
/// one), so a keeper does not answer it later, when nobody is waiting to
/// take the lease.
pub fn withdraw_handback(sd: &StateDir, mark: &Mark) {
    if atomic::read_json::<Mark>(&handback_path(sd), MARK_VERSION).is_ok_and(|m| &m == mark) {
        let _ = std::fs::remove_file(handback_path(sd));
    }
}

/// A hand-back asked for after `since` (the keeper's start): who asked.
pub fn handback_asked(sd: &StateDir, since: Timestamp) -> Option<Mark> {
    atomic::read_json::<Mark>(&handback_path(sd), MARK_VERSION)
        .ok()
        .filter(|m| m.at > since)
}

/// The request answered (by the daemon that took the lease back).
pub fn clear_handback(sd: &StateDir) {
    let _ = std::fs::remove_file(handback_path(sd));
}

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(
        "no keeper: `[keeper] enabled = true` in the configuration turns it on (docs/daemon.md)"
    )]
    Off,
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("cannot write in the daemon directory: {0}")]
    Io(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::sim::{SimCluster, SimSlurm};

    fn keeper() -> Keeper {
        Keeper {
            after: Duration::from_secs(600),
            partition: Some("cpu".into()),
            time_limit: Duration::from_secs(4 * 3600),
            sbatch_args: vec!["--qos=long".into()],
        }
    }

    fn command() -> KeeperCommand {
        KeeperCommand {
            exe: "/opt/it's/shepherd".into(),
            poll: Duration::from_secs(10),
            slurm_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_keeper_job_is_one_small_singleton_per_state_directory() {
        let sd = StateDir::new("/home/u/.slurm_shepherd");
        let name = job_name(&sd);
        assert!(name.starts_with("shepherd-keeper."), "{name}");
        assert_eq!(name, job_name(&StateDir::new("/home/u/.slurm_shepherd")));
        assert_ne!(name, job_name(&StateDir::new("/scratch/u/shep")));
        assert_eq!(
            sbatch_args(&sd, &keeper()),
            [
                format!("--job-name={name}"),
                "--dependency=singleton".into(),
                "--time=240".into(),
                "--ntasks=1".into(),
                "--cpus-per-task=1".into(),
                "--output=/home/u/.slurm_shepherd/daemon/keeper-%j.out".into(),
                "--partition=cpu".into(),
                "--qos=long".into(),
            ]
        );
        assert_eq!(
            script(&sd, &command()).lines().last().unwrap(),
            "exec '/opt/it'\\''s/shepherd' --state-dir '/home/u/.slurm_shepherd' --slurm-timeout 30s daemon run --started-by keeper --poll-interval 10s"
        );
    }

    #[test]
    fn a_keeper_is_asked_for_once_whoever_asks() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        let slurm = SimSlurm::new(SimCluster::uniform(2, 4));
        let now = slurm.now();
        let keeper = || Keeper {
            partition: Some("gpu".into()),
            ..keeper()
        };
        let first = ask(&slurm, &sd, &keeper(), &command(), now).unwrap();
        let Asked::Submitted(id) = first else {
            panic!("{first:?}")
        };
        // Another wrapper a moment later: the mark says it was asked.
        let later = now + jiff::SignedDuration::from_secs(30);
        assert_eq!(
            ask(&slurm, &sd, &keeper(), &command(), later).unwrap(),
            Asked::AskedLately(now)
        );
        // Past the window, the queued job is found by name: still one.
        let much_later = now + jiff::SignedDuration::from_secs(400);
        assert_eq!(
            ask(&slurm, &sd, &keeper(), &command(), much_later).unwrap(),
            Asked::Queued(vec![id])
        );
        assert_eq!(slurm.calls().submit, 1);
    }

    #[test]
    fn a_hand_back_counts_only_after_the_keeper_started() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        std::fs::create_dir_all(sd.daemon()).unwrap();
        let t0: Timestamp = "2026-12-08T02:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-12-08T03:00:00Z".parse().unwrap();
        assert_eq!(handback_asked(&sd, t0), None);
        ask_for_handback(&sd, t1, false).unwrap();
        assert_eq!(handback_asked(&sd, t0).map(|m| m.at), Some(t1));
        // A keeper started after that request (an old file) ignores it.
        assert_eq!(handback_asked(&sd, t1), None);
        clear_handback(&sd);
        assert_eq!(handback_asked(&sd, t0), None);
    }
}
