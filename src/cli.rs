//! The command line: argument parsing, output (human or JSON), error rendering
//! and the exit-code contract.

mod args;
pub mod exit;
mod output;
mod slurm_cmd;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};

/// Entry point of the `shepherd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let result = match cli.command {
        Command::Slurm(cmd) => slurm_cmd::run(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) => {
            output::error(json, &err);
            ExitCode::from(exit::code_for(&err))
        }
    }
}
