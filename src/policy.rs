//! Pure decisions: given a run, what Slurm and the wrapper reported, and the time
//! now, what to do next (wait, resubmit, fail over, ban a node, give up).
//!
//! Not built yet: the recovery-loop, node-health and placement issues fill this in.
//! Everything here stays free of processes, files and clocks so it can be tested
//! exhaustively. The Slurm-side classification it will build on already exists:
//! [`crate::slurm::Rejection`] and [`crate::slurm::reasons`].
