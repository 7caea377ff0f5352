//! The terminal interface (`shepherd` with no arguments, or `shepherd tui`).

use std::time::Duration;

use crate::store::StateDir;

/// What the TUI needs from the command line.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub state_dir: StateDir,
    /// Deadline for each Slurm command the TUI runs (off the UI thread).
    pub slurm_timeout: Duration,
    /// Use colours (false: monochrome, for NO_COLOR or `--color never`).
    pub color: bool,
}

/// Runs the TUI until the user quits.
pub fn run(_opts: TuiOptions) -> anyhow::Result<()> {
    anyhow::bail!("the terminal interface is not built yet; use `shepherd list`")
}
