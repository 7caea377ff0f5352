//! The real adapter: runs Slurm's command-line tools.
//!
//! Each method is one command (never one per job), run with a deadline by
//! [`Invocation`], and its failure is classified from Slurm's own words into
//! [`SlurmError`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use jiff::tz::TimeZone;

use super::api::{PendingUpdate, Slurm};
use super::commands;
use super::error::{self, Rejection, SlurmError};
use super::parse::{sacct, sbatch, scontrol, squeue};
use crate::proc::{Invocation, Output};

use super::types::{
    AccountingSource, ClusterInfo, JobId, JobInfo, JobRecord, NodeInfo, PartitionInfo,
    ScriptSource, StartEstimate, SubmitRequest, Switch,
};

/// How to reach Slurm's commands.
#[derive(Debug, Clone)]
pub struct SlurmCliConfig {
    /// Deadline for each command. Slurm clients retry for seconds when the
    /// controller is down; this bounds the total.
    pub timeout: Duration,
    /// Directory holding `sbatch`, `squeue`, …; `None` searches `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Extra environment for every command (e.g. `SLURM_CONF`).
    pub env: Vec<(OsString, OsString)>,
}

impl Default for SlurmCliConfig {
    fn default() -> Self {
        SlurmCliConfig {
            timeout: Duration::from_secs(30),
            bin_dir: None,
            env: Vec::new(),
        }
    }
}

pub struct SlurmCli {
    config: SlurmCliConfig,
    tz: TimeZone,
    /// Learnt once: the cluster's identity and which accounting it has.
    cluster: Mutex<Option<ClusterInfo>>,
}

impl SlurmCli {
    pub fn new(config: SlurmCliConfig) -> Self {
        SlurmCli {
            config,
            // Slurm's clients print local times; they run with our environment,
            // so they use the same zone.
            tz: TimeZone::system(),
            cluster: Mutex::new(None),
        }
    }

    fn argv(&self, argv: commands::Argv) -> Invocation {
        self.invocation(argv.program).args(argv.args)
    }

    fn invocation(&self, program: &str) -> Invocation {
        let path = match &self.config.bin_dir {
            Some(dir) => dir.join(program).to_string_lossy().into_owned(),
            None => program.to_string(),
        };
        let mut inv = Invocation::new(path, self.config.timeout);
        inv.env = self.config.env.clone();
        inv
    }

    /// Runs a Slurm command; a `SLURM_CONF` that names a missing file is
    /// refused first, since every Slurm client would wait for its whole
    /// timeout on it and then say nothing useful.
    fn exec(&self, inv: Invocation) -> Result<Output, SlurmError> {
        let conf = inv
            .env
            .iter()
            .find(|(k, _)| k == "SLURM_CONF")
            .map(|(_, v)| v.clone())
            .or_else(|| {
                (!inv.env_clear)
                    .then(|| std::env::var_os("SLURM_CONF"))
                    .flatten()
            });
        if let Some(conf) = conf.filter(|c| !c.is_empty())
            && !std::path::Path::new(&conf).exists()
        {
            return Err(SlurmError::Misconfigured {
                message: format!(
                    "SLURM_CONF is {}, which does not exist",
                    std::path::Path::new(&conf).display()
                ),
            });
        }
        Ok(inv.run()?)
    }

    /// Runs and turns a non-zero exit into a classified error.
    fn run_checked(&self, inv: Invocation) -> Result<Output, SlurmError> {
        let out = self.exec(inv)?;
        if out.success() {
            Ok(out)
        } else {
            Err(classify_failure(&out))
        }
    }

    fn parse_error(out: &Output, detail: String) -> SlurmError {
        SlurmError::Parse {
            command: out.command.clone(),
            detail,
        }
    }

    fn submit_invocation(&self, request: &SubmitRequest, mode: &str) -> Invocation {
        let mut inv = self.invocation("sbatch").arg(mode).args(&request.args);
        if let Some(env) = &request.env {
            // The submitter's environment, then our own settings (SLURM_CONF)
            // on top so the command reaches the same cluster as the others.
            let mut vars: Vec<(OsString, OsString)> =
                env.iter().map(|(k, v)| (k.into(), v.into())).collect();
            vars.append(&mut inv.env);
            inv.env = vars;
            inv.env_clear = true;
        }
        match &request.script {
            ScriptSource::File(path) => inv.arg(path.as_os_str()),
            ScriptSource::Text(text) => inv.stdin(text.as_bytes()),
        }
    }

    fn cluster_cached(&self) -> Result<ClusterInfo, SlurmError> {
        let mut cached = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(info) = cached.as_ref() {
            return Ok(info.clone());
        }
        let out = self.run_checked(self.argv(commands::config()))?;
        let info = scontrol::config(&out.stdout).map_err(|e| Self::parse_error(&out, e))?;
        *cached = Some(info.clone());
        Ok(info)
    }

    /// Which accounting this cluster has, from its configuration.
    fn accounting_source(&self) -> Result<AccountingSource, SlurmError> {
        let info = self.cluster_cached()?;
        Ok(if info.accounting_storage.ends_with("slurmdbd") {
            AccountingSource::Slurmdbd
        } else if !info.job_comp.is_empty() && !info.job_comp.ends_with("none") {
            AccountingSource::JobComp
        } else {
            AccountingSource::Controller
        })
    }

    fn sacct(&self, ids: &[JobId], source: AccountingSource) -> Result<Vec<JobRecord>, SlurmError> {
        let out = self.exec(self.argv(commands::sacct(source, ids)))?;
        if !out.success() {
            if sacct::is_storage_disabled(&out.stderr) {
                return Err(SlurmError::AccountingUnavailable {
                    message: out.message(),
                });
            }
            return Err(classify_failure(&out));
        }
        sacct::parse(&out.stdout, source, &self.tz).map_err(|e| Self::parse_error(&out, e))
    }

    fn controller_records(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, SlurmError> {
        // One call for every job the controller holds, filtered here, rather
        // than one `scontrol show job N` per id.
        let out = self.run_checked(self.argv(commands::controller_jobs()))?;
        let records =
            scontrol::job_records(&out.stdout, &self.tz).map_err(|e| Self::parse_error(&out, e))?;
        Ok(records
            .into_iter()
            .filter(|r| ids.contains(&r.id))
            .collect())
    }
}

/// Turns a failed command's output into the most specific error Slurm's words
/// allow. "Unreachable" is checked first: sbatch wraps it in the same
/// "Batch job submission failed" sentence as a real rejection.
pub fn classify_failure(out: &Output) -> SlurmError {
    let message = out.message();
    if error::is_unreachable_message(&message) {
        SlurmError::Unreachable {
            command: out.command.clone(),
            message,
        }
    } else if error::is_unknown_job_message(&message) {
        SlurmError::UnknownJob {
            command: out.command.clone(),
            message,
        }
    } else if let Some(kind) = Rejection::classify(&message) {
        SlurmError::Rejected {
            command: out.command.clone(),
            kind,
            message,
        }
    } else {
        SlurmError::Failed {
            command: out.command.clone(),
            status: out.status_text(),
            message,
        }
    }
}

impl Slurm for SlurmCli {
    fn cluster(&self) -> Result<ClusterInfo, SlurmError> {
        self.cluster_cached()
    }

    fn submit(&self, request: &SubmitRequest) -> Result<JobId, SlurmError> {
        let out = self.run_checked(self.submit_invocation(request, "--parsable"))?;
        sbatch::job_id(&out.stdout).map_err(|e| Self::parse_error(&out, e))
    }

    fn estimate_start(&self, request: &SubmitRequest) -> Result<StartEstimate, SlurmError> {
        let out = self.run_checked(self.submit_invocation(request, "--test-only"))?;
        sbatch::start_estimate(&out.stderr, &self.tz).map_err(|e| Self::parse_error(&out, e))
    }

    fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobInfo>, SlurmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.exec(self.argv(commands::squeue(ids)))?;
        if !out.success() {
            // squeue drops unknown ids from a list silently, but fails when
            // *every* id is unknown. Both mean the same: none is held.
            if error::is_unknown_job_message(&out.stderr) {
                return Ok(Vec::new());
            }
            return Err(classify_failure(&out));
        }
        squeue::parse(&out.stdout, &self.tz).map_err(|e| Self::parse_error(&out, e))
    }

    fn jobs_by_name(&self, names: &[String]) -> Result<Vec<JobInfo>, SlurmError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run_checked(self.argv(commands::squeue_by_name(names)))?;
        squeue::parse(&out.stdout, &self.tz).map_err(|e| Self::parse_error(&out, e))
    }

    fn accounting(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, SlurmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records = match self.accounting_source()? {
            AccountingSource::Controller => self.controller_records(ids)?,
            source => self.sacct(ids, source)?,
        };
        // slurmdbd also holds pending and running jobs; only ended runs
        // (including requeued ones) are records.
        Ok(records
            .into_iter()
            .filter(|r| r.end_time.is_some())
            .collect())
    }

    fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let inv = self
            .invocation("scancel")
            .args(ids.iter().map(|id| id.to_string()));
        self.run_checked(inv).map(drop)
    }

    fn requeue(&self, id: JobId) -> Result<(), SlurmError> {
        let inv = self
            .invocation("scontrol")
            .args(["requeue".to_string(), id.to_string()]);
        self.run_checked(inv).map(drop)
    }

    fn update_pending(&self, id: JobId, update: &PendingUpdate) -> Result<(), SlurmError> {
        let mut args = vec!["update".to_string(), format!("JobId={id}")];
        if let Some(exclude) = &update.exclude {
            args.push(format!("ExcNodeList={}", exclude.join(",")));
        }
        if let Some(partition) = &update.partition {
            args.push(format!("Partition={partition}"));
        }
        if update.start_now {
            args.push("StartTime=now".to_string());
        }
        if args.len() == 2 {
            return Ok(());
        }
        self.run_checked(self.invocation("scontrol").args(args))
            .map(drop)
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>, SlurmError> {
        let out = self.run_checked(self.argv(commands::nodes()))?;
        scontrol::nodes(&out.stdout).map_err(|e| Self::parse_error(&out, e))
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SlurmError> {
        let out = self.run_checked(self.argv(commands::partitions()))?;
        scontrol::partitions(&out.stdout).map_err(|e| Self::parse_error(&out, e))
    }

    fn topology(&self) -> Result<Vec<Switch>, SlurmError> {
        let out = self.exec(self.argv(commands::topology()))?;
        if out.stderr.contains("No topology information available") {
            return Ok(Vec::new());
        }
        if !out.success() {
            return Err(classify_failure(&out));
        }
        scontrol::topology(&out.stdout).map_err(|e| Self::parse_error(&out, e))
    }
}
