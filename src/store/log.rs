//! The daemon's log, `daemon/daemon.log` in the state directory: what the
//! daemon and its helpers (the notification sender) did, one timestamped
//! line each, for `shepherd daemon status` and for people.

use std::io::Write;
use std::path::PathBuf;

use jiff::Timestamp;

use super::StateDir;

/// Appends timestamped lines to `daemon/daemon.log`.
pub struct Log {
    path: PathBuf,
}

impl Log {
    pub fn new(state_dir: &StateDir) -> Log {
        Log {
            path: state_dir.daemon().join("daemon.log"),
        }
    }

    pub fn line(&self, msg: &str) {
        let line = format!(
            "{} {msg}\n",
            Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
