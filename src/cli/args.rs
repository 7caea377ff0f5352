//! Command-line arguments.

use std::ffi::OsString;
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
    pub command: Option<Command>,
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

    /// Where Shepherd keeps its runs [default: ~/.slurm_shepherd]
    #[arg(long, global = true, value_name = "DIR", env = "SHEPHERD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Colour in human output: auto (a terminal without NO_COLOR), always, never
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Run the command on HOST over ssh: a name from `shepherd remotes`, or an ssh destination
    #[arg(long, global = true, value_name = "HOST")]
    pub remote: Option<String>,

    /// With --remote: where scripts are copied on the remote [default: ~/shepherd-runs]
    #[arg(long, global = true, value_name = "DIR")]
    pub remote_dir: Option<String>,

    /// With `shepherd SCRIPT --remote`: also copy this file or directory (relative to here) next to the script; repeatable
    #[arg(long, global = true, value_name = "PATH")]
    pub remote_copy: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlOp {
    Stop,
    Pause,
    Unpause,
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour output going to a stream that is (or is not) a
    /// terminal. `NO_COLOR` (any non-empty value) turns `auto` off.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// How often the daemon looks at Slurm.
#[derive(Debug, Clone, Args)]
pub struct PollArgs {
    /// Time between two daemon ticks
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration,
          env = "SHEPHERD_POLL_INTERVAL")]
    pub poll_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a batch script as a run that Shepherd keeps alive (also: `shepherd SCRIPT`)
    Run(Box<RunArgs>),
    /// List runs
    List,
    /// Show a run: status, current job, attempts
    Status {
        /// The run id
        run: String,
    },
    /// Block until a run ends; the exit code says how it ended (docs/exit-codes.md)
    Wait {
        /// The run id
        run: String,
        /// Give up after this long (exit 9); without it, wait as long as the run lives
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Show a run's decision journal
    Events {
        /// The run id
        run: String,
    },
    /// Show a run's output (newest attempt by default), optionally following it
    Logs(LogsArgs),
    /// Stop a run: cancel its job and end it as stopped
    Stop {
        /// The run id
        run: String,
    },
    /// Pause a run: its job goes on, but no new attempt is submitted
    Pause {
        /// The run id
        run: String,
    },
    /// Let a paused run submit again
    Unpause {
        /// The run id
        run: String,
    },
    /// Cancel a run's job and submit a new attempt now (also revives an ended run)
    Restart {
        /// The run id
        run: String,
    },
    /// `control stop|pause|unpause|restart RUN`: the same as `shepherd OP RUN`
    Control {
        op: ControlOp,
        /// The run id
        run: String,
    },
    /// Delete an ended run's records (state, journal, Shepherd's copies of its logs)
    Rm {
        /// The run id
        run: String,
        /// Stop the run first if it is still active
        #[arg(long)]
        force: bool,
        /// With --force: how long to wait for the daemon to stop it
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Print a shell completion script: `shepherd completions bash > ~/.local/share/bash-completion/completions/shepherd`
    Completions { shell: clap_complete::Shell },
    /// Nodes: state, GPUs, bans (`nodes ban|unban` to manage the blacklist)
    Nodes {
        #[command(subcommand)]
        command: Option<NodesCommand>,
    },
    /// GPU availability per partition: type, memory, free GPUs, largest request that starts now
    Gpus {
        /// Refresh the table in place until interrupted
        #[arg(short, long)]
        interactive: bool,
        /// How often `-i` refreshes
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
        every: Duration,
    },
    /// Open the terminal interface (also: `shepherd` with no arguments on a terminal)
    Tui {
        /// Also show the runs of these named remotes (`shepherd remotes
        /// list`), labelled by remote; without names, of every named remote
        #[arg(long, value_name = "NAME,...", value_delimiter = ',', num_args = 0..=1)]
        remotes: Option<Vec<String>>,
    },
    /// Start, stop or inspect the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Report progress from inside a job: `shepherd progress --step 1200 "epoch 3"`
    Progress {
        /// Step number (e.g. training step)
        #[arg(long)]
        step: Option<u64>,
        /// Free-text message
        message: Option<String>,
    },
    /// Run an attempt inside a Slurm job (used by the batch scripts Shepherd submits)
    #[command(hide = true)]
    Wrap {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        attempt: u32,
    },
    /// Ask Slurm directly through Shepherd's adapter (what Shepherd sees)
    #[command(subcommand)]
    Slurm(SlurmCommand),
    /// Named remote clusters for --remote: `remotes list|add NAME --host H|rm NAME`
    Remotes {
        #[command(subcommand)]
        command: Option<RemotesCommand>,
    },
    /// `shepherd SCRIPT [OPTIONS]`: the same as `shepherd run SCRIPT [OPTIONS]`
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id
    pub run: String,
    /// Keep printing new output, across attempts, until the run ends
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end to show first (0: everything)
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub lines: usize,
    /// Show standard error instead of standard output
    #[arg(long)]
    pub stderr: bool,
    /// Show this attempt (1 is the first) instead of the newest
    #[arg(long, value_name = "K")]
    pub attempt: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The batch script (#SHEPHERD lines give options, #SBATCH lines go to Slurm)
    pub script: PathBuf,
    #[command(flatten)]
    pub options: crate::options::RunOptions,
    /// Skip the checks of the script's #! line and interpreter (for an
    /// interpreter that exists only on the compute nodes)
    #[arg(long)]
    pub no_script_check: bool,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// `shepherd SCRIPT …` re-read as `shepherd run SCRIPT …`.
#[derive(Debug, Parser)]
#[command(name = "shepherd")]
pub struct ExternalRun {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Every node with state, partitions, GPUs, switch and ban (the default)
    List,
    /// Ban a node for all your runs on this cluster
    Ban {
        node: String,
        /// How long (e.g. 6h); without it the ban lasts until `unban`
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Why, for the record
        #[arg(long, default_value = "banned by hand")]
        reason: String,
    },
    /// Lift a node's ban and forget its strikes
    Unban { node: String },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start the daemon in the background (no-op if one runs)
    Start(PollArgs),
    /// Stop the daemon
    Stop,
    /// Show whether a daemon runs, where, since when, what started it, and what brings it back
    Status,
    /// Run the daemon in the foreground (for debugging or your own supervisor)
    Run {
        #[command(flatten)]
        poll: PollArgs,
        /// What started this daemon, shown by `daemon status`
        #[arg(long, hide = true, default_value = "foreground")]
        started_by: crate::daemon::lease::StartedBy,
    },
    /// Start a daemon unless one holds a fresh lease (from any login node); silent when one does. For cron and timers
    Ensure(PollArgs),
    /// Keep the daemon alive: add `daemon ensure` at boot and every few minutes to your crontab
    Install {
        /// Minutes between two `daemon ensure` runs (1 to 59)
        #[arg(long, value_name = "MINUTES", default_value_t = 5,
              value_parser = clap::value_parser!(u32).range(1..=59))]
        every: u32,
        /// Print the crontab block instead of installing it
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        poll: PollArgs,
    },
    /// Remove what `daemon install` added to your crontab (a running daemon is left running)
    Uninstall,
    /// Submit a keeper job (the daemon inside Slurm) unless a daemon runs or a keeper is coming; what a run's job does when no daemon renews the lease. Needs `[keeper] enabled = true`
    Keeper(PollArgs),
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

#[derive(Debug, clap::Subcommand)]
pub enum RemotesCommand {
    /// Every named remote (the default)
    List,
    /// Name a cluster: `shepherd remotes add a100 --host login.a100.example.org`
    Add {
        /// The name to use with --remote
        name: String,
        /// The ssh destination: a Host of ~/.ssh/config, or [user@]hostname
        #[arg(long)]
        host: String,
        /// Where scripts go on the remote [default: ~/shepherd-runs]
        #[arg(long, value_name = "DIR")]
        remote_dir: Option<String>,
        /// Shell commands run on the remote before every shepherd command
        /// (e.g. `module load slurm`)
        #[arg(long, value_name = "SNIPPET")]
        setup: Option<String>,
    },
    /// Forget a named remote
    Rm { name: String },
    /// The runs of every named remote, in one list labelled by remote
    Runs,
}
