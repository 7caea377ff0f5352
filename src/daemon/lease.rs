//! One daemon per state directory, even when several login nodes share it.
//!
//! Two mechanisms, because neither suffices alone: an exclusive `flock` on
//! `daemon/lock` serialises daemons on one host (and across hosts where the
//! shared filesystem supports locks), and a lease file naming host, pid and a
//! heartbeat lets a daemon on another login node see a live one even where
//! locks are not shared. A lease whose heartbeat is older than
//! [`Lease::stale_after`] belongs to a dead daemon and is taken over.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rustix::fs::{FlockOperation, flock};

use crate::store::atomic::{self, StoreError};

pub use crate::records::lease::{LEASE_VERSION, Lease, StartedBy};

/// How long a stale lease of another host is watched before it is taken
/// over: two of its polls (capped at 30 s), in which its daemon, were it
/// alive, would have renewed it.
pub fn confirm_wait(other: &Lease) -> Duration {
    Duration::from_secs((other.poll_interval_secs * 2).clamp(1, 30))
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

pub fn lease_path(daemon_dir: &Path) -> PathBuf {
    daemon_dir.join(crate::records::lease::LEASE_FILE)
}

/// The current lease, if any and readable.
pub fn read_lease(daemon_dir: &Path) -> Option<Lease> {
    atomic::read_json(&lease_path(daemon_dir), LEASE_VERSION).ok()
}

/// The current lease: `Ok(None)` only when there is none. One that is
/// there but cannot be read (a stale NFS handle, a newer build's format,
/// damage) is an error, never taken for "no daemon" where a takeover
/// depends on it.
pub fn read_lease_checked(daemon_dir: &Path) -> Result<Option<Lease>, StoreError> {
    match atomic::read_json(&lease_path(daemon_dir), LEASE_VERSION) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("a Shepherd daemon is already running for this state directory ({0})")]
    Held(String),
    #[error("cannot use the daemon directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Held while the daemon runs; dropping it releases the lock and removes the
/// lease.
pub struct Held {
    /// The flock; `None` once released.
    lock: Option<File>,
    dir: PathBuf,
    lease: Lease,
    /// Leave the lease behind on drop, to go stale.
    leave: bool,
}

impl Held {
    pub fn acquire(
        daemon_dir: &Path,
        poll: Duration,
        now: Timestamp,
        started_by: StartedBy,
    ) -> Result<Held, LeaseError> {
        Self::acquire_with(daemon_dir, poll, now, started_by, confirm_wait)
    }

    /// [`acquire`](Self::acquire), with the wait before a stale lease of
    /// another host is taken over chosen by the caller (tests).
    pub fn acquire_with(
        daemon_dir: &Path,
        poll: Duration,
        now: Timestamp,
        started_by: StartedBy,
        confirm: impl Fn(&Lease) -> Duration,
    ) -> Result<Held, LeaseError> {
        let io = |source| LeaseError::Io {
            path: daemon_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(daemon_dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(daemon_dir.join("lock"))
            .map_err(io)?;
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            let who = read_lease(daemon_dir).map_or("lock held".to_string(), |l| l.describe());
            return Err(LeaseError::Held(who));
        }
        let host = hostname();
        let pid = std::process::id();
        let mut now = now;
        if let Some(other) = read_lease_checked(daemon_dir)?
            && !(other.host == host && other.pid == pid)
        {
            if other.is_fresh(now)
                && (other.host != host
                    || is_daemon_process(other.pid, daemon_dir.parent().unwrap_or(daemon_dir)))
            {
                return Err(LeaseError::Held(other.describe()));
            }
            // Another host's lease that looks stale may only look so: that
            // host's clock may lag ours, or this host may read a cached
            // copy (NFS attribute caching). Its daemon is dead only if the
            // lease stays as it is while it should have been renewed twice.
            // (On this host the pid says it: no daemon of ours has it.)
            if other.host != host {
                std::thread::sleep(confirm(&other));
                if let Some(again) = read_lease_checked(daemon_dir)?
                    && again != other
                {
                    return Err(LeaseError::Held(again.describe()));
                }
                // The lease written below is renewed as of now, not as of
                // before the watch.
                now = Timestamp::now();
            }
        }
        let lease = Lease {
            version: LEASE_VERSION,
            host,
            pid,
            started_at: now,
            heartbeat_at: now,
            poll_interval_secs: poll.as_secs(),
            started_by,
            slurm_job_id: std::env::var("SLURM_JOB_ID")
                .ok()
                .and_then(|j| j.parse().ok()),
        };
        atomic::write_json(&lease_path(daemon_dir), &lease)?;
        Ok(Held {
            lock: Some(lock),
            dir: daemon_dir.to_path_buf(),
            lease,
            leave: false,
        })
    }

    /// Another daemon's lease, if one replaced ours: a tick that ran longer
    /// than the lease lives (slow Slurm calls) lets a daemon elsewhere take
    /// over, and this one must then stop, not overwrite it.
    pub fn taken_over(&self) -> Option<Lease> {
        read_lease(&self.dir).filter(|l| l.host != self.lease.host || l.pid != self.lease.pid)
    }

    pub fn renew(&mut self, now: Timestamp) -> Result<(), StoreError> {
        self.lease.heartbeat_at = now;
        atomic::write_json(&lease_path(&self.dir), &self.lease)
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Held {
    /// On drop, releases the lock but leaves the lease to go stale, as a
    /// daemon that died would: a keeper ending at its time limit is no
    /// `daemon stop`, and a stale lease is what makes the runs' wrappers
    /// ask for another.
    pub fn leave_stale(&mut self) {
        self.leave = true;
    }

    /// Gives the lease and the lock up now (the lease only if it is still
    /// ours), before the process ends: a daemon waiting for them may take
    /// them at once, while this one still finishes (a keeper cancelling its
    /// successor).
    pub fn release(&mut self) {
        if read_lease(&self.dir)
            .is_some_and(|l| l.pid == self.lease.pid && l.host == self.lease.host)
        {
            let _ = std::fs::remove_file(lease_path(&self.dir));
        }
        self.leave = true;
        // Closing the file releases the flock.
        self.lock = None;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only remove the lease if it is still ours.
        if !self.leave
            && read_lease(&self.dir)
                .is_some_and(|l| l.pid == self.lease.pid && l.host == self.lease.host)
        {
            let _ = std::fs::remove_file(lease_path(&self.dir));
        }
    }
}

/// True when a process with this pid exists on this host.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid`, on this host, is a Shepherd daemon of this user for the
/// state directory `root`: its real uid is ours and its command line is
/// `… daemon run …`, with `--state-dir root` when it names one (a daemon run
/// by hand may take it from `SHEPHERD_STATE_DIR`). A pid from a lease may
/// have been reused by any process since; this is checked before the pid is
/// believed or signalled.
pub fn is_daemon_process(pid: u32, root: &Path) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
    if uid != Some(rustix::process::getuid().as_raw()) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    daemon_cmdline_for(&cmdline, root)
}

/// The test behind [`is_daemon_process`] on a NUL-separated command line.
fn daemon_cmdline_for(cmdline: &[u8], root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let runs_daemon = args.windows(2).any(|w| w == [&b"daemon"[..], &b"run"[..]]);
    let same = |given: &[u8]| {
        let given = Path::new(std::ffi::OsStr::from_bytes(given));
        given == root
            || matches!(
                (std::fs::canonicalize(given), std::fs::canonicalize(root)),
                (Ok(a), Ok(b)) if a == b
            )
    };
    let state_dir_ok = args.iter().enumerate().all(|(i, a)| {
        if *a == b"--state-dir" {
            args.get(i + 1).is_some_and(|d| same(d))
        } else if let Some(d) = a.strip_prefix(b"--state-dir=") {
            same(d)
        } else {
            true
        }
    });
    runs_daemon && state_dir_ok
}

/// Whether some process holds the daemon lock of `daemon_dir` (on this host,
/// and across hosts where the filesystem shares locks). Probed with a shared
/// lock, released at once.
pub fn lock_is_held(daemon_dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(daemon_dir.join("lock"))
    else {
        return false;
    };
    match flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&f, FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acquires without the wait before another host's stale lease is taken.
    fn acq(dir: &Path, now: Timestamp) -> Result<Held, LeaseError> {
        Held::acquire_with(
            dir,
            Duration::from_secs(10),
            now,
            StartedBy::Foreground,
            |_| Duration::ZERO,
        )
    }

    #[test]
    fn a_lease_from_the_future_is_believed_only_within_the_skew_margin() {
        let now = Timestamp::now();
        let at = |secs: i64| Lease {
            version: 1,
            host: "login-2".into(),
            pid: 1,
            started_at: now,
            heartbeat_at: now + jiff::SignedDuration::from_secs(secs),
            poll_interval_secs: 10,
            started_by: StartedBy::Start,
            slurm_job_id: None,
        };
        assert!(at(0).is_fresh(now));
        assert!(at(30).is_fresh(now), "a little skew");
        assert!(at(-30).is_fresh(now));
        assert!(
            !at(86_400).is_fresh(now),
            "a day ahead is not a live daemon"
        );
        assert!(!at(-61).is_fresh(now));
    }

    #[test]
    fn only_a_daemon_command_line_for_this_state_dir_counts() {
        let root = Path::new("/home/u/.slurm_shepherd");
        let cl = |args: &[&str]| {
            let mut v = args.join("\0").into_bytes();
            v.push(0);
            daemon_cmdline_for(&v, root)
        };
        assert!(cl(&[
            "/bin/shepherd",
            "--state-dir",
            "/home/u/.slurm_shepherd",
            "--slurm-timeout",
            "30s",
            "daemon",
            "run",
            "--poll-interval",
            "10s"
        ]));
        assert!(
            cl(&["shepherd", "daemon", "run"]),
            "state dir from the environment"
        );
        assert!(cl(&[
            "shepherd",
            "--state-dir=/home/u/.slurm_shepherd",
            "daemon",
            "run"
        ]));
        assert!(!cl(&["shepherd", "--state-dir", "/other", "daemon", "run"]));
        assert!(!cl(&["sleep", "100"]));
        assert!(!cl(&["shepherd", "daemon", "stop"]));
        assert!(!cl(&["vim", "daemon", "runbook"]));
        // This test process is no daemon.
        assert!(!is_daemon_process(std::process::id(), root));
        assert!(!is_daemon_process(u32::MAX, root));
    }

    #[test]
    fn the_lock_probe_sees_a_holder_and_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!lock_is_held(dir.path()), "no lock file yet");
        let held = acq(dir.path(), Timestamp::now()).unwrap();
        assert!(lock_is_held(dir.path()));
        drop(held);
        assert!(!lock_is_held(dir.path()));
        // The probe left the lock free.
        acq(dir.path(), Timestamp::now()).unwrap();
    }

    #[test]
    fn a_lease_taken_over_is_noticed_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let held = acq(dir.path(), now).unwrap();
        assert_eq!(held.taken_over(), None);
        let other = Lease {
            host: "login-2".into(),
            pid: 4242,
            ..held.lease().clone()
        };
        atomic::write_json(&lease_path(dir.path()), &other).unwrap();
        assert_eq!(held.taken_over(), Some(other.clone()));
        drop(held);
        assert_eq!(read_lease(dir.path()), Some(other), "not removed on drop");
    }

    #[test]
    fn a_released_lease_frees_the_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let mut held = acq(dir.path(), now).unwrap();
        assert!(lock_is_held(dir.path()));
        held.release();
        assert!(!lock_is_held(dir.path()), "the lock goes with the lease");
        assert!(read_lease(dir.path()).is_none());
        // Another daemon takes both while the released one still lives.
        let other = acq(dir.path(), now).expect("free to take");
        drop(held);
        assert!(
            read_lease(dir.path()).is_some(),
            "the old one's drop touches nothing"
        );
        drop(other);
    }

    #[test]
    fn second_acquire_is_refused_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let held = acq(dir.path(), now).unwrap();
        assert_eq!(read_lease(dir.path()).unwrap().pid, std::process::id());
        let err = acq(dir.path(), now).err().unwrap();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(held);
        assert!(read_lease(dir.path()).is_none());
        acq(dir.path(), now).unwrap();
    }

    #[test]
    fn a_fresh_lease_from_another_host_blocks_a_stale_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let other = Lease {
            version: 1,
            host: "login-2".into(),
            pid: 4242,
            started_at: now,
            heartbeat_at: now,
            poll_interval_secs: 10,
            started_by: StartedBy::Start,
            slurm_job_id: None,
        };
        atomic::write_json(&lease_path(dir.path()), &other).unwrap();
        let err = acq(dir.path(), now).err().unwrap();
        assert!(err.to_string().contains("login-2"), "{err}");
        let later = now + jiff::SignedDuration::from_secs(120);
        acq(dir.path(), later).expect("stale lease is taken over");
    }

    #[test]
    fn a_stale_lease_of_another_host_renewed_while_watched_is_not_taken() {
        // Its host's clock lags ours (or we read a cached copy): it looks
        // stale, but its daemon renews it while we watch.
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let old = now - jiff::SignedDuration::from_secs(300);
        let other = Lease {
            version: 1,
            host: "login-2".into(),
            pid: 4242,
            started_at: old,
            heartbeat_at: old,
            poll_interval_secs: 10,
            started_by: StartedBy::Ensure,
            slurm_job_id: None,
        };
        atomic::write_json(&lease_path(dir.path()), &other).unwrap();
        let path = dir.path().to_path_buf();
        let renewed = Lease {
            heartbeat_at: old + jiff::SignedDuration::from_secs(10),
            ..other.clone()
        };
        let err = Held::acquire_with(
            dir.path(),
            Duration::from_secs(10),
            now,
            StartedBy::Ensure,
            |seen| {
                assert_eq!(seen, &other);
                atomic::write_json(&lease_path(&path), &renewed).unwrap();
                Duration::ZERO
            },
        )
        .err()
        .expect("a renewed lease is not taken over");
        assert!(err.to_string().contains("login-2"), "{err}");
        assert_eq!(read_lease(dir.path()), Some(renewed.clone()));
        // Left as it was, it is taken over, and says what started the new one.
        let held = acq(dir.path(), now).expect("a lease nobody renews is taken over");
        assert_eq!(held.lease().started_by, StartedBy::Foreground);
        assert_eq!(confirm_wait(&other), Duration::from_secs(20));
    }

    #[test]
    fn an_older_lease_without_started_by_reads_as_unknown() {
        let json = r#"{"version":1,"host":"h","pid":1,"started_at":"2026-12-01T00:00:00Z","heartbeat_at":"2026-12-01T00:00:00Z","poll_interval_secs":10}"#;
        let l: Lease = serde_json::from_str(json).unwrap();
        assert_eq!(l.started_by, StartedBy::Unknown);
        let l: Lease =
            serde_json::from_str(&json.replace('}', r#","started_by":"sidecar"}"#)).unwrap();
        assert_eq!(l.started_by, StartedBy::Unknown, "a newer build's word");
        assert_eq!("ensure".parse::<StartedBy>(), Ok(StartedBy::Ensure));
        assert!("unknown".parse::<StartedBy>().is_err());
    }
}
