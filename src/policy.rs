//! Pure decisions: given a run, what Slurm and the wrapper reported, and the time
//! now, what to do next (wait, submit, cancel, give up).
//!
//! Everything here is free of processes, files and clocks, so it is tested
//! exhaustively with plain data. The daemon is the shell that observes, calls
//! [`decide::step`], carries out the actions and records the result.

pub mod blacklist;
pub mod breaker;
pub mod classify;
pub mod decide;
pub mod notices;
pub mod signatures;
pub mod state;
pub mod strikes;
pub mod verdicts;

pub use decide::{
    Action, Control, Event, JobView, Observation, Step, SubmitResult, step, submitted,
};
pub use state::{RunState, RunStatus};

#[cfg(test)]
mod tests;
