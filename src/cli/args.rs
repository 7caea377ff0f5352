//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shepherd",
    version,
    about = "Keep Slurm GPU jobs alive overnight",
    long_about = "Shepherd submits Slurm batch jobs, watches them, and recovers them when nodes, \
                  GPUs or partitions fail.\n\nExit codes are documented in docs/exit-codes.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON (documented in docs/json.md)
    #[arg(long, global = true)]
    pub json: bool,

    /// Deadline for each Slurm command, e.g. 30s or 2m
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration, env = "SHEPHERD_SLURM_TIMEOUT")]
    pub slurm_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask Slurm directly through Shepherd's adapter (what Shepherd sees)
    #[command(subcommand)]
    Slurm(SlurmCommand),
}

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Show the cluster's name and the settings Shepherd depends on
    Cluster,
    /// List nodes with state, GPUs free/total and reason
    Nodes,
    /// List partitions
    Partitions,
    /// Show the switch topology (empty without a topology plugin)
    Topology,
    /// Show jobs as the controller sees them (pending, running, recently ended)
    Jobs {
        /// Slurm job ids
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<crate::slurm::JobId>,
    },
    /// Show final accounting records of ended jobs
    Accounting {
        /// Slurm job ids
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<crate::slurm::JobId>,
    },
    /// Submit a batch script with sbatch (no recovery: a plain submission)
    Submit(SubmitArgs),
    /// Estimate when and where a script would start (sbatch --test-only)
    Estimate(SubmitArgs),
    /// Cancel jobs
    Cancel {
        /// Slurm job ids
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<crate::slurm::JobId>,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The batch script
    pub script: PathBuf,
    /// Wait until the job ends and report its final state
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// Arguments passed to sbatch before the script (after `--`)
    #[arg(last = true, value_name = "SBATCH_ARGS")]
    pub sbatch_args: Vec<String>,
}
