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
use serde::{Deserialize, Serialize};

use crate::store::atomic::{self, StoreError};

pub const LEASE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub version: u32,
    pub host: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    pub poll_interval_secs: u64,
}

impl Lease {
    /// A lease not renewed for three polls (and at least a minute) is stale.
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs((self.poll_interval_secs * 3).max(60))
    }

    pub fn is_fresh(&self, now: Timestamp) -> bool {
        let age = now.duration_since(self.heartbeat_at);
        age.is_negative() || age.unsigned_abs() < self.stale_after()
    }

    pub fn describe(&self) -> String {
        format!(
            "pid {} on {} since {}",
            self.pid,
            self.host,
            self.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

pub fn lease_path(daemon_dir: &Path) -> PathBuf {
    daemon_dir.join("lease.json")
}

/// The current lease, if any and readable.
pub fn read_lease(daemon_dir: &Path) -> Option<Lease> {
    atomic::read_json(&lease_path(daemon_dir), LEASE_VERSION).ok()
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
    _lock: File,
    dir: PathBuf,
    lease: Lease,
}

impl Held {
    pub fn acquire(daemon_dir: &Path, poll: Duration, now: Timestamp) -> Result<Held, LeaseError> {
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
        if let Some(other) = read_lease(daemon_dir)
            && other.is_fresh(now)
            && (other.host != host || process_alive(other.pid))
            && !(other.host == host && other.pid == pid)
        {
            return Err(LeaseError::Held(other.describe()));
        }
        let lease = Lease {
            version: LEASE_VERSION,
            host,
            pid,
            started_at: now,
            heartbeat_at: now,
            poll_interval_secs: poll.as_secs(),
        };
        atomic::write_json(&lease_path(daemon_dir), &lease)?;
        Ok(Held {
            _lock: lock,
            dir: daemon_dir.to_path_buf(),
            lease,
        })
    }

    pub fn renew(&mut self, now: Timestamp) -> Result<(), StoreError> {
        self.lease.heartbeat_at = now;
        atomic::write_json(&lease_path(&self.dir), &self.lease)
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only remove the lease if it is still ours.
        if read_lease(&self.dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let held = Held::acquire(dir.path(), Duration::from_secs(10), now).unwrap();
        assert_eq!(read_lease(dir.path()).unwrap().pid, std::process::id());
        let err = Held::acquire(dir.path(), Duration::from_secs(10), now)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(held);
        assert!(read_lease(dir.path()).is_none());
        Held::acquire(dir.path(), Duration::from_secs(10), now).unwrap();
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
        };
        atomic::write_json(&lease_path(dir.path()), &other).unwrap();
        let err = Held::acquire(dir.path(), Duration::from_secs(10), now)
            .err()
            .unwrap();
        assert!(err.to_string().contains("login-2"), "{err}");
        let later = now + jiff::SignedDuration::from_secs(120);
        Held::acquire(dir.path(), Duration::from_secs(10), later)
            .expect("stale lease is taken over");
    }
}
