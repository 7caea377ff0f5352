//! The state directory: runs, their attempts and events, heartbeats and (later)
//! the node blacklist, kept on the shared filesystem so that the login-node
//! daemon and the compute-side wrapper can both reach it.
//!
//! Every file has one writer: the CLI writes a run's spec and its control
//! requests, the daemon its state and journal, the wrapper its heartbeats and
//! outcomes. Files are replaced atomically and carry a format version, so a
//! reader never sees half a file and an older binary refuses newer data.

pub mod atomic;
pub mod blacklist;
pub mod layout;
pub mod log;
pub mod logs;
pub mod runs;

pub use layout::{AttemptDir, RunDir, StateDir, safe_file_name};
