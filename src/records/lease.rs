//! The daemon's lease (`STATE/daemon/lease.json`): which daemon acts for a
//! state directory, from where, and when it last did. Written by the daemon;
//! read by the CLI, by other login nodes' daemons and by the wrapper (which
//! asks for a keeper when no daemon renews it).

use std::time::Duration;

/// `STATE/daemon/lease.json`: the lease, in the daemon directory.
pub const LEASE_FILE: &str = "lease.json";

/// `STATE/daemon/stopped`: written by `shepherd daemon stop` and removed by
/// the next daemon a user starts. While it is there, the daemon is off by
/// the user's choice: neither `daemon ensure` (cron) nor a keeper brings
/// one back. A lease that is merely gone (a daemon that ended on SIGTERM:
/// a reboot, a reaper) is no such choice.
pub const STOPPED_FILE: &str = "stopped";

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub const LEASE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub version: u32,
    pub host: String,
    pub pid: u32,
    pub started_at: Timestamp,
    /// When the daemon last renewed its lease: the start of its last tick.
    pub heartbeat_at: Timestamp,
    pub poll_interval_secs: u64,
    /// What started it (absent in the leases of older builds).
    #[serde(default)]
    pub started_by: StartedBy,
    /// The Slurm job it runs in (a keeper), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<u64>,
}

/// How a daemon came to run, so `daemon status` can say who brings it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartedBy {
    /// `shepherd daemon run`: by hand, or under the user's own supervisor.
    Foreground,
    /// `shepherd daemon start`.
    Start,
    /// A command that needed one (`shepherd SCRIPT`, `stop`, `restart`, …).
    Command,
    /// `shepherd daemon ensure`: the crontab entry of `daemon install`, or
    /// anything else the user runs it from.
    Ensure,
    /// A keeper job inside Slurm, asked for by a run's wrapper when no
    /// daemon renewed the lease for a while (docs/daemon.md).
    Keeper,
    /// An older build's lease, or a word of a newer one.
    #[default]
    #[serde(other)]
    Unknown,
}

impl StartedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            StartedBy::Foreground => "foreground",
            StartedBy::Start => "start",
            StartedBy::Command => "command",
            StartedBy::Ensure => "ensure",
            StartedBy::Keeper => "keeper",
            StartedBy::Unknown => "unknown",
        }
    }

    /// In words, for `daemon status`.
    pub fn describe(self) -> &'static str {
        match self {
            StartedBy::Foreground => "run in the foreground (`daemon run`)",
            StartedBy::Start => "started by `daemon start`",
            StartedBy::Command => "started by a shepherd command",
            StartedBy::Ensure => "started by `daemon ensure` (cron or your own timer)",
            StartedBy::Keeper => "a keeper job inside Slurm (no daemon on a login node)",
            StartedBy::Unknown => "started by an older shepherd",
        }
    }
}

impl std::str::FromStr for StartedBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            StartedBy::Foreground,
            StartedBy::Start,
            StartedBy::Command,
            StartedBy::Ensure,
            StartedBy::Keeper,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
        .ok_or_else(|| format!("unknown value {s:?}: foreground, start, command, ensure or keeper"))
    }
}

impl Lease {
    /// A lease not renewed for three polls (and at least a minute) is stale.
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs((self.poll_interval_secs * 3).max(60))
    }

    /// Renewed within [`stale_after`](Self::stale_after). A heartbeat from
    /// the future is accepted up to the same margin (the clocks of two login
    /// nodes differ a little); beyond it the lease is not believed, or a
    /// lease written by a host whose clock runs a day ahead would count as
    /// fresh for a day after its daemon died.
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        let age = now.duration_since(self.heartbeat_at);
        age.unsigned_abs() < self.stale_after()
    }

    pub fn describe(&self) -> String {
        format!(
            "pid {} on {}{} since {}",
            self.pid,
            self.host,
            self.slurm_job_id
                .map_or(String::new(), |j| format!(" in job {j}")),
            self.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}
