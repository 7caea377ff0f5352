//! The login-node daemon: one batched Slurm query per tick for all runs, the
//! policy's decisions carried out, nothing submitted twice.
//!
//! - [`tick`]: one pass over every run (observe, decide, act, record).
//! - [`placing`]: where a run's next job may go (exclude list, partitions).
//! - [`health`]: strikes, bans and switch incidents from runs' failures.
//! - [`attempt`]: the batch script and sbatch arguments of an attempt.
//! - [`lease`]: one daemon per state directory, across login nodes.
//! - [`service`]: the process: run loop, start, stop, status, ensure.
//! - [`keeper`]: the daemon as a job inside Slurm while none runs on a
//!   login node, and the hand-back through the lease.
//! - [`install`]: the crontab block that runs `daemon ensure` at boot and
//!   every few minutes.

pub mod attempt;
mod cluster;
mod health;
pub mod install;
pub mod keeper;
pub mod lease;
mod placing;
pub mod service;
pub mod tick;
