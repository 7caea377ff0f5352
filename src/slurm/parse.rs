//! Pure parsers of Slurm's command output. No processes here: each function takes
//! the text a command printed (and, for times, the time zone it printed them in)
//! and returns typed data or a precise complaint.
//!
//! They are tested on verbatim outputs captured from the project's test cluster
//! (`tests/fixtures/slurm/`, refreshed by `scripts/capture-fixtures`).

pub mod kv;
pub mod sacct;
pub mod sbatch;
pub mod scontrol;
pub mod squeue;
pub mod values;
