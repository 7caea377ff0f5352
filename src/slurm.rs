//! The Slurm adapter: the [`Slurm`] trait, its real implementation [`SlurmCli`],
//! and the pure parsers of Slurm's output.

pub mod api;
pub mod cli;
pub mod commands;
pub mod error;
pub mod hostlist;
pub mod parse;
pub mod reasons;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod types;

pub use api::{PendingUpdate, Slurm};
pub use cli::{SlurmCli, SlurmCliConfig};
pub use error::{Rejection, SlurmError};
pub use types::*;
