//! The login-node daemon: one batched Slurm query per tick for all runs, the
//! policy's decisions carried out, nothing submitted twice.
//!
//! Not built yet: the recovery-loop issue fills this in.
