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
        if self.blacklists_are_shared() {
            create_shared_dir(&dir).map_err(io)?;
        } else {
            self.ensure_private_root()?;
            std::fs::create_dir_all(&dir).map_err(io)?;
        }
        let lock = open_lock(&dir.join("blacklist.lock")).map_err(io)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                // Held by another Shepherd process: wait for it.
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                // Anything else (NFS refusing the lock, a bad descriptor)
                // will not pass by waiting: say so at once.
                Err(e) => {
                    return Err(io(std::io::Error::other(format!(
                        "cannot lock the blacklist: {e}"
                    ))));
                }
            }
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
        let mode = if self.blacklists_are_shared() {
            atomic::SHARED
        } else {
            atomic::PRIVATE
        };
        atomic::write_json_mode(&self.blacklist_path(cluster), &bl, mode)?;
        Ok(out)
    }
}

/// A cluster's directory under a lab's shared blacklist directory: writable
/// by the group (so every member can replace the blacklist), whatever the
/// creator's umask, and of the shared directory's group when it is setgid.
fn create_shared_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o775).create(dir) {
        Ok(()) => {
            let setgid = dir
                .parent()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.permissions().mode() & 0o2000);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o775 | setgid))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The lock file beside a blacklist, never through a link. Another member
/// of a shared directory may own it: a read-only descriptor locks as well.
fn open_lock(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o664)
        .custom_flags(nofollow)
        .open(path)
        .and_then(|f| {
            // The creator makes it writable by the lab whatever its umask,
            // so that others lock it read-write too (NFS refuses an
            // exclusive lock on a read-only descriptor).
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let m = f.metadata()?;
            if m.uid() == rustix::process::getuid().as_raw() && m.mode() & 0o777 != 0o664 {
                f.set_permissions(std::fs::Permissions::from_mode(0o664))?;
            }
            Ok(f)
        }) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(nofollow)
            .open(path),
        r => r,
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
