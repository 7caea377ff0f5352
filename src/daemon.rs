//! The login-node daemon: one batched Slurm query per tick for all runs, the
//! policy's decisions carried out, nothing submitted twice.
//!
//! - [`tick`]: one pass over every run (observe, decide, act, record).
//! - [`attempt`]: the batch script and sbatch arguments of an attempt.
//! - [`lease`]: one daemon per state directory, across login nodes.
//! - [`service`]: the process: run loop, start, stop, status.

pub mod attempt;
pub mod lease;
pub mod service;
pub mod tick;
