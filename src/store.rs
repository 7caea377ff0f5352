//! The state directory: runs, their attempts and events, heartbeats and the node
//! blacklist, kept on the shared filesystem so that the login-node daemon and the
//! compute-side wrapper can both reach it.
//!
//! Not built yet: the recovery-loop issue fills this in (atomic writes, a format
//! version in every file, locks with timeouts).
