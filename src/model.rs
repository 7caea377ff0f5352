//! The domain's vocabulary: what a run is and what the user asked of it.
//!
//! These types are shared by the CLI (which creates runs), the daemon (which
//! drives them), the policy (which decides for them) and the wrapper (which runs
//! their attempts). They are plain data, serialized into the state directory.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A run's id: also a directory name and part of Slurm job names, so it is
/// restricted to `[A-Za-z0-9._-]`, must not start with a dot or dash, and is at
/// most [`RunId::MAX_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Derives an id from a script's file name: `train.sh` → `train`, with
    /// characters outside the allowed set replaced by `-`.
    pub fn from_script_name(name: &str) -> Result<RunId, String> {
        let stem = name
            .rsplit_once('.')
            .filter(|(stem, _)| !stem.is_empty())
            .map_or(name, |(stem, _)| stem);
        let cleaned: String = stem
            .chars()
            .map(|c| if allowed(c) { c } else { '-' })
            .collect();
        let cleaned = cleaned.trim_start_matches(['.', '-']);
        let cleaned: String = cleaned.chars().take(Self::MAX_LEN).collect();
        cleaned.parse()
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a run id cannot be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "run id {s:?} is {} characters long; the limit is {}",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err(format!("run id {s:?} must not start with '.' or '-'"));
        }
        if let Some(c) = s.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "run id {s:?} contains {c:?}; use letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(RunId(s.to_string()))
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Done when the workload exits 0.
    #[default]
    RunOnce,
    /// Kept alive (resubmitted whenever it ends) until `keep_alive` elapses.
    Indefinite,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "run_once" | "run-once" | "once" => Ok(Mode::RunOnce),
            "indefinite" => Ok(Mode::Indefinite),
            _ => Err(format!("unknown mode {s:?}; use run_once or indefinite")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    /// Smallest sufficient GPU first, leaving big GPUs to others.
    #[default]
    Min,
    /// Biggest GPU first.
    Max,
}

impl FromStr for Prefer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "min" => Ok(Prefer::Min),
            "max" => Ok(Prefer::Max),
            _ => Err(format!("unknown preference {s:?}; use min or max")),
        }
    }
}

/// What the job needs from a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// GPUs per job; `None` for a CPU job.
    pub gpus: Option<u32>,
    pub min_vram_gb: Option<u32>,
    pub max_vram_gb: Option<u32>,
    pub gpu_type: Option<String>,
    pub prefer: Prefer,
    /// Partitions pinned by the user, in preference order; empty = any that fits.
    pub partitions: Vec<String>,
}

/// How the run is watched and recovered. Durations are stored in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Workload failures tolerated before the run fails for good.
    pub max_retries: u32,
    /// For `indefinite` runs: how long to keep the run alive.
    #[serde(with = "secs_opt")]
    pub keep_alive: Option<Duration>,
    #[serde(with = "secs")]
    pub heartbeat_interval: Duration,
    /// A heartbeat older than this (after the startup grace) means a hang.
    #[serde(with = "secs")]
    pub heartbeat_grace: Duration,
    /// No progress report and no output growth for this long means a hang.
    #[serde(with = "secs_opt")]
    pub progress_stall: Option<Duration>,
    #[serde(with = "secs")]
    pub backoff_base: Duration,
    #[serde(with = "secs")]
    pub backoff_max: Duration,
    #[serde(with = "secs")]
    pub blacklist_ttl: Duration,
    pub blacklist: bool,
    /// Send the workload SIGUSR1 this long before the time limit.
    #[serde(with = "secs_opt")]
    pub signal_before: Option<Duration>,
    /// A job pending this long is moved to a partition that can start it now.
    #[serde(with = "secs_opt", default)]
    pub pending_timeout: Option<Duration>,
    /// GPU probes the wrapper runs before the workload: only these
    /// (`visibility`, `health`, `processes`, `cuda`); `None`: all applicable;
    /// empty: none.
    #[serde(default)]
    pub probes: Option<Vec<String>>,
    /// The same workload failure (its fingerprint) in this many attempts on
    /// at least two nodes ends the run `failed`; 0 turns the rule off.
    #[serde(default = "default_same_failure_limit")]
    pub same_failure_limit: u32,
    /// After a workload failure on a node that passes its probes again, the
    /// wrapper restarts the workload in the same allocation up to this many
    /// times per job ([`crate::wrapper::in_place`]); 0: never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_in_place: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Runs created before `same_failure_limit` existed get the default.
fn default_same_failure_limit() -> u32 {
    3
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_retries: 3,
            keep_alive: None,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_grace: Duration::from_secs(300),
            progress_stall: None,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            blacklist_ttl: Duration::from_secs(3600),
            blacklist: true,
            signal_before: None,
            pending_timeout: Some(Duration::from_secs(1800)),
            probes: None,
            same_failure_limit: default_same_failure_limit(),
            restart_in_place: 0,
        }
    }
}

/// Everything fixed when the run is created. Written once by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub run_id: RunId,
    /// The script as the user named it (absolute); the run uses its snapshot.
    pub script_path: PathBuf,
    /// Where the job runs: the submit directory or the script's `--chdir`.
    pub workdir: PathBuf,
    pub created_at: Timestamp,
    pub mode: Mode,
    pub resources: Resources,
    pub policy: Policy,
    /// The script's own `#SBATCH` lines, verbatim, in order.
    pub sbatch_lines: Vec<String>,
    /// The user set `--output`/`--error` themselves: Shepherd must not override.
    pub user_output: bool,
    pub user_error: bool,
    /// Shell commands the job runs before the wrapper starts the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// `--notify`: channel names, URLs, `mailto:` addresses or `none`;
    /// `None`: the configured default channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
}

impl RunSpec {
    /// A run of `workdir/ID.sh` with every option at its default and no
    /// `#SBATCH` lines: what tests and benchmarks start from.
    pub fn with_defaults(
        run_id: RunId,
        workdir: &std::path::Path,
        created_at: Timestamp,
    ) -> RunSpec {
        RunSpec {
            script_path: workdir.join(format!("{run_id}.sh")),
            run_id,
            workdir: workdir.to_path_buf(),
            created_at,
            mode: Mode::RunOnce,
            resources: Resources::default(),
            policy: Policy::default(),
            sbatch_lines: vec![],
            user_output: false,
            user_error: false,
            setup: None,
            notify: None,
        }
    }
}

/// The names of the GPU probes (`--probes`), which the wrapper runs
/// (`wrapper::probe`) and records name: one list for the options, the
/// wrapper and the records.
pub mod probes {
    /// The probe's name in `ProbeResult::name` and `Verdict::ProbeFailed`.
    pub const VISIBILITY: &str = "visibility";
    /// ECC errors, page retirement, row remapping.
    pub const HEALTH: &str = "health";
    /// Foreign compute processes on the job's GPUs.
    pub const PROCESSES: &str = "processes";
    /// A CUDA kernel launch through PyTorch.
    pub const CUDA: &str = "cuda";
    /// Every probe, in the order they run.
    pub const ALL: &[&str] = &[VISIBILITY, HEALTH, PROCESSES, CUDA];

    /// Checks probe names (`--probes`): each must be one of [`ALL`].
    pub fn check_names(names: &[String]) -> Result<(), String> {
        match names.iter().find(|n| !ALL.contains(&n.as_str())) {
            Some(bad) => Err(format!(
                "unknown probe {bad:?}; use {} (or none)",
                ALL.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// Serde helpers: durations as whole seconds.
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

pub mod secs_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_validated() {
        assert!("train".parse::<RunId>().is_ok());
        assert!("exp-1.2_b".parse::<RunId>().is_ok());
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "../x",
            "x;y",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn run_id_from_script_name() {
        assert_eq!(
            RunId::from_script_name("train.sh").unwrap().as_str(),
            "train"
        );
        assert_eq!(
            RunId::from_script_name("my job.sbatch").unwrap().as_str(),
            "my-job"
        );
        assert_eq!(RunId::from_script_name(".env.sh").unwrap().as_str(), "env");
        assert_eq!(RunId::from_script_name("run").unwrap().as_str(), "run");
        assert!(RunId::from_script_name("...").is_err());
    }
}
