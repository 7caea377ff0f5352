//! Shepherd keeps Slurm GPU jobs alive overnight.
//!
//! The crate is laid out by responsibility, from the outside in:
//!
//! - [`slurm`]: the adapter. One trait for everything Shepherd asks of Slurm, the
//!   real implementation that runs Slurm's commands with timeouts, and pure
//!   parsers of their output.
//! - [`store`]: the state directory on the shared filesystem (runs, attempts,
//!   heartbeats, the blacklist), written atomically and versioned.
//! - [`policy`]: pure decisions. Given what was observed and the time now, what to
//!   do with a run. No processes, files or clocks.
//! - [`daemon`]: the loop on the login node that observes, asks the policy and
//!   carries out its decisions.
//! - [`wrapper`]: the compute-side half, run inside the job around the workload.
//! - [`cli`] and [`tui`]: the user's interfaces; [`remote`] runs them on
//!   another cluster over ssh.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod model;
pub mod notify;
pub mod ops;
pub mod options;
pub mod placement;
pub mod policy;
pub mod proc;
pub mod records;
pub mod remote;
pub mod slurm;
pub mod store;
pub mod submit;
pub mod tui;
pub mod view;
pub mod wrapper;

#[cfg(test)]
mod untrusted_input;
