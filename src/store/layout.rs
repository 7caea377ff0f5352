//! Where things live in the state directory.
//!
//! ```text
//! STATE/
//!   daemon/                 lock, lease.json, daemon.log
//!   runs/RUN/
//!     spec.json             RunSpec (CLI, once)
//!     state.json            the daemon's view of the run (daemon)
//!     events.jsonl          the decision journal (daemon, append-only)
//!     script                snapshot of the user's script (CLI, once)
//!     env.json              environment captured at submission (CLI, once)
//!     control/             requests: stop, pause, restart… (CLI; daemon consumes)
//!     attempts/N/
//!       job.sh              the batch script submitted for attempt N (daemon)
//!       heartbeat-J-R.json  wrapper of job J, Slurm restart R
//!       progress-J-R.json   the workload's progress reports
//!       outcome-J-R.json    the wrapper's final record
//!       slurm-J.out/.err    output, unless the script sets --output/--error
//! ```

use std::path::{Path, PathBuf};

use crate::model::RunId;
use crate::slurm::JobId;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// Where blacklists live when a lab shares them; `root/clusters` if not.
    shared_blacklists: Option<PathBuf>,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            shared_blacklists: None,
        }
    }

    /// Keeps the per-cluster blacklists in a directory a lab shares.
    pub fn with_shared_blacklists(mut self, dir: Option<PathBuf>) -> StateDir {
        self.shared_blacklists = dir;
        self
    }

    /// The directory holding one subdirectory per cluster's blacklist.
    pub fn blacklists(&self) -> PathBuf {
        self.shared_blacklists
            .clone()
            .unwrap_or_else(|| self.root.join("clusters"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether blacklists live in a directory a lab shares (written
    /// [`SHARED`](super::atomic::SHARED), not private).
    pub fn blacklists_are_shared(&self) -> bool {
        self.shared_blacklists.is_some()
    }

    /// Creates the state directory, private (0700), or makes an existing one
    /// private: it holds the submitting shell's environment (`env.json`).
    /// A directory that belongs to someone else is refused, not used.
    pub fn ensure_private_root(&self) -> Result<(), super::atomic::StoreError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let err = |source| super::atomic::StoreError::Write {
            path: self.root.clone(),
            source,
        };
        match std::fs::metadata(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(err),
            Err(e) => Err(err(e)),
            Ok(m) if !m.is_dir() => Err(err(std::io::Error::other(
                "it is not a directory; pass --state-dir (or SHEPHERD_STATE_DIR) naming a directory",
            ))),
            Ok(m) if m.uid() != rustix::process::getuid().as_raw() => {
                Err(err(std::io::Error::other(format!(
                    "it belongs to another user (uid {}); Shepherd keeps your runs only in a \
                     directory of your own: pass --state-dir (or SHEPHERD_STATE_DIR)",
                    m.uid()
                ))))
            }
            Ok(m) if m.mode() & 0o077 != 0 => {
                std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                    .map_err(err)
            }
            Ok(_) => Ok(()),
        }
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run(&self, id: &RunId) -> RunDir {
        RunDir {
            path: self.runs().join(id.as_str()),
            id: Some(id.clone()),
        }
    }

    pub fn daemon(&self) -> PathBuf {
        self.root.join("daemon")
    }

    /// Copies kept for speed only (`view::listing`): safe to delete.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
}

#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    /// The run id its place in the state directory gives it; its spec must
    /// name the same (a copied or renamed run directory does not).
    id: Option<RunId>,
}

impl RunDir {
    pub(super) fn expected_id(&self) -> Option<&RunId> {
        self.id.as_ref()
    }

    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir {
            path: path.into(),
            id: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }

    pub fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }

    pub fn events(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    pub fn script(&self) -> PathBuf {
        self.path.join("script")
    }

    pub fn env(&self) -> PathBuf {
        self.path.join("env.json")
    }

    pub fn control(&self) -> PathBuf {
        self.path.join("control")
    }

    pub fn attempt(&self, attempt: u32) -> AttemptDir {
        AttemptDir {
            path: self.path.join("attempts").join(attempt.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptDir {
    path: PathBuf,
}

impl AttemptDir {
    pub fn at(path: impl Into<PathBuf>) -> AttemptDir {
        AttemptDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn job_script(&self) -> PathBuf {
        self.path.join("job.sh")
    }

    /// Keyed by job id *and* Slurm's restart count: after Slurm requeues a job
    /// whose node only lost its slurmd, the orphaned first instance may still
    /// run and write; it must never pass for the live one.
    pub fn heartbeat(&self, job: JobId, restarts: u32) -> PathBuf {
        self.path.join(format!("heartbeat-{job}-{restarts}.json"))
    }

    /// `in_place`: the workload's restart in place within this instance
    /// (0: its first run), so each restart has its own progress and outcome.
    pub fn progress(&self, job: JobId, restarts: u32, in_place: u32) -> PathBuf {
        self.path
            .join(instance_file("progress", job, restarts, in_place))
    }

    pub fn outcome(&self, job: JobId, restarts: u32, in_place: u32) -> PathBuf {
        self.path
            .join(instance_file("outcome", job, restarts, in_place))
    }

    /// Slurm file patterns for the attempt's output when the user set none.
    pub fn stdout_pattern(&self) -> PathBuf {
        self.path.join("slurm-%j.out")
    }

    pub fn stderr_pattern(&self) -> PathBuf {
        self.path.join("slurm-%j.err")
    }
}

/// `KIND-JOB-RESTARTS.json`, with `-IN_PLACE` before `.json` for a restart in
/// place (the first run keeps the name older versions wrote).
fn instance_file(kind: &str, job: JobId, restarts: u32, in_place: u32) -> String {
    match in_place {
        0 => format!("{kind}-{job}-{restarts}.json"),
        k => format!("{kind}-{job}-{restarts}-{k}.json"),
    }
}

/// `name` as one safe file name: letters, digits, `.`, `_` and `-` kept,
/// anything else (a `/`, a space, a comma) replaced by `_`.
pub fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
