//! The operations layer: everything a user can ask of Shepherd about runs
//! and nodes, as one trait over typed documents, wherever the runs are.
//!
//! - [`Local`]: this login node's state directory, its daemon and Slurm.
//! - [`Remote`]: another cluster's, over the user's ssh (`crate::remote` is
//!   the transport): the remote `shepherd` answers with the same documents in
//!   JSON, which are read back into the same types.
//!
//! The CLI renders what an operation returns (human or `--json`); the TUI's
//! effects call the operations directly and show the same sentences. Errors
//! are one type with kinds ([`Error`], [`Kind`]), one table of exit codes in
//! `cli::exit`.

mod error;
pub mod local;
pub mod remote;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{Context, Error, Kind, Result};
pub use local::{Local, Submission};
pub use remote::Remote;

use crate::policy::decide::Control;
use crate::store::runs::JournalEntry;
use crate::view::RunDoc;
use crate::view::nodes::NodesDoc;

/// A control request filed (`stop`, `pause`, `unpause`, `restart`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requested {
    pub run_id: String,
    pub control: Control,
    pub daemon_pid: u32,
}

impl Requested {
    pub fn sentence(&self) -> String {
        format!(
            "{} requested for run {}; the daemon applies it within one tick",
            crate::view::snake(&self.control),
            self.run_id
        )
    }
}

/// A run created by `shepherd SCRIPT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub daemon_pid: u32,
    pub daemon_started: bool,
}

impl Created {
    pub fn sentence(&self) -> String {
        format!("created run {}", self.run_id)
    }
}

/// A ban filed by hand.
#[derive(Debug, Clone)]
pub struct Banned {
    pub node: String,
    /// The cluster whose blacklist has it (`None`: a remote's, unnamed).
    pub cluster: Option<String>,
    pub ttl: Option<Duration>,
}

impl Banned {
    pub fn sentence(&self) -> String {
        let n = &self.node;
        let on = self
            .cluster
            .as_ref()
            .map(|c| format!(" on cluster {c}"))
            .unwrap_or_default();
        match self.ttl {
            Some(t) => format!("banned {n} for {}{on}", crate::duration::format(t)),
            None => format!("banned {n}{on} until `shepherd nodes unban {n}`"),
        }
    }
}

/// A ban lifted by hand.
#[derive(Debug, Clone)]
pub struct Unbanned {
    pub node: String,
    /// Whether there was a ban to lift (`None`: the place did not say).
    pub was_banned: Option<bool>,
}

impl Unbanned {
    pub fn sentence(&self) -> String {
        let n = &self.node;
        match self.was_banned {
            Some(true) | None => format!("unbanned {n}"),
            Some(false) => format!("{n} was not banned"),
        }
    }
}

/// A run removed (`rm`), and the jobs of it that were cancelled on the way
/// (an unreadable run's, found by name).
#[derive(Debug, Clone)]
pub struct Removed {
    pub run_id: String,
    pub cancelled: Vec<u64>,
}

/// What the operations of a place (this cluster, a remote) are.
pub trait Ops {
    /// Every run, in id order.
    fn list(&self) -> Result<Vec<RunDoc>>;
    /// One run (an unknown id is [`Kind::UnknownRun`], with close ids).
    fn status(&self, run: &str) -> Result<RunDoc>;
    /// A run's journal.
    fn events(&self, run: &str) -> Result<Vec<JournalEntry>>;
    /// Files a control request and makes sure a daemon applies it.
    fn control(&self, run: &str, control: Control) -> Result<Requested>;
    /// Removes an ended run; with `force`, stops it first (waiting up to
    /// `wait`).
    fn remove(&self, run: &str, force: bool, wait: Duration) -> Result<Removed>;
    /// Bans a node for all the user's runs on the cluster.
    fn ban(&self, node: &str, ttl: Option<Duration>, reason: &str) -> Result<Banned>;
    /// Lifts a ban.
    fn unban(&self, node: &str) -> Result<Unbanned>;
    /// The cluster's nodes with Shepherd's bans and incidents.
    fn nodes(&self) -> Result<NodesDoc>;
}
