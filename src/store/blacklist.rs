//! The blacklist on disk: one file per cluster, shared by every run of the
//! user (and by both the daemon and the CLI), changed under an exclusive lock.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use super::StateDir;
use super::atomic::{self, StoreError};
use crate::policy::blacklist::{BLACKLIST_VERSION, Blacklist};

/// How long a writer waits for another one.
const LOCK_WAIT: Duration = Duration::from_secs(10);

impl StateDir {
    fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.blacklists().join(super::safe_file_name(cluster))
    }

    pub fn blacklist_path(&self, cluster: &str) -> PathBuf {
        self.cluster_dir(cluster).join("blacklist.json")
    }

    pub fn load_blacklist(&self, cluster: &str) -> Result<Blacklist, StoreError> {
        match atomic::read_json(&self.blacklist_path(cluster), BLACKLIST_VERSION) {
            Ok(b) => Ok(b),
            Err(e) if e.is_not_found() => Ok(Blacklist::new(cluster)),
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write of the cluster's blacklist under its lock.
    pub fn update_blacklist<T>(
        &self,
        cluster: &str,
        change: impl FnOnce(&mut Blacklist) -> T,
    ) -> Result<T, StoreError> {
        let dir = self.cluster_dir(cluster);
        let io = |source| StoreError::Write {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("blacklist.lock"))
            .map_err(io)?;
        let deadline = Instant::now() + LOCK_WAIT;
        while flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            if Instant::now() > deadline {
                return Err(io(std::io::Error::other(format!(
                    "the blacklist is locked by another Shepherd process for more than {}s",
                    LOCK_WAIT.as_secs()
                ))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut bl = self.load_blacklist(cluster)?;
        let out = change(&mut bl);
        atomic::write_json(&self.blacklist_path(cluster), &bl)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        std::thread::scope(|s| {
            for i in 0..8 {
                let sd = &sd;
                s.spawn(move || {
                    sd.update_blacklist("c1", |bl| {
                        bl.ban(&format!("n{i}"), "test", None, Timestamp::UNIX_EPOCH)
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(sd.load_blacklist("c1").unwrap().nodes.len(), 8);
        assert!(sd.load_blacklist("other").unwrap().nodes.is_empty());
    }
}
