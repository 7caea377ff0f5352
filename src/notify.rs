//! Telling the user what happened: notices decided by the policy
//! ([`crate::policy::notices`]) go to the channels the user configured.
//!
//! - [`channels`]: the `[[notify]]` entries of the configuration file and a
//!   run's `--notify`, resolved to where each notice goes.
//! - [`outbox`]: a durable queue in the state directory, so a notice outlives
//!   a daemon restart and is sent once.
//! - [`deliver`]: one notice to one channel (webhook with curl, a command,
//!   sendmail), time-bounded.
//! - [`sender`]: the daemon's sending thread: retries with backoff, never
//!   blocks the recovery loop.

pub mod channels;
pub mod deliver;
pub mod outbox;
pub mod sender;

pub use channels::{Channel, NotifyConfig, Target};
