//! The command line: argument parsing, output (human or JSON), error rendering
//! and the exit-code contract.

mod args;
pub mod exit;
mod logs_cmd;
mod nodes_cmd;
pub(crate) mod output;
mod runs_cmd;
mod slurm_cmd;

use std::process::ExitCode;

use std::io::IsTerminal;

use clap::Parser;

pub use crate::view::{RunDoc, UnknownRun};
pub use args::{Cli, ColorChoice, Command, ExternalRun};

use crate::policy::decide::Control;

/// Entry point of the `shepherd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `--remote HOST`: the whole invocation runs on HOST (docs/remote.md).
    if let Some(code) = crate::remote::dispatch(&cli) {
        return code;
    }
    let json = cli.global.json;
    let result = match cli.command {
        // Without a subcommand: the TUI on a terminal, the run list otherwise
        // (so `shepherd | grep` and cron jobs get text).
        None if !json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            tui(&cli.global, None)
        }
        None => runs_cmd::list(&cli.global),
        Some(Command::Tui { remotes }) => tui(&cli.global, remotes),
        Some(Command::External(words)) => {
            // `shepherd SCRIPT …` is `shepherd run SCRIPT …`.
            let argv = std::iter::once("shepherd".into()).chain(words);
            let ext = args::ExternalRun::parse_from(argv);
            runs_cmd::run(&ext.global, ext.run)
        }
        Some(Command::Run(args)) => runs_cmd::run(&cli.global, *args),
        Some(Command::List) => runs_cmd::list(&cli.global),
        Some(Command::Status { run }) => runs_cmd::status(&cli.global, &run),
        Some(Command::Events { run }) => runs_cmd::events(&cli.global, &run),
        Some(Command::Logs(args)) => logs_cmd::logs(&cli.global, &args),
        Some(Command::Stop { run }) => runs_cmd::control(&cli.global, &run, Control::Stop),
        Some(Command::Pause { run }) => runs_cmd::control(&cli.global, &run, Control::Pause),
        Some(Command::Unpause { run }) => runs_cmd::control(&cli.global, &run, Control::Unpause),
        Some(Command::Restart { run }) => runs_cmd::control(&cli.global, &run, Control::Restart),
        Some(Command::Control { op, run }) => {
            let control = match op {
                args::ControlOp::Stop => Control::Stop,
                args::ControlOp::Pause => Control::Pause,
                args::ControlOp::Unpause => Control::Unpause,
                args::ControlOp::Restart => Control::Restart,
            };
            runs_cmd::control(&cli.global, &run, control)
        }
        Some(Command::Rm { run, force, wait }) => runs_cmd::rm(&cli.global, &run, force, wait),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shepherd", &mut out);
            output::print(&String::from_utf8_lossy(&out));
            Ok(())
        }
        Some(Command::Daemon(cmd)) => runs_cmd::daemon(&cli.global, cmd),
        Some(Command::Nodes { command }) => nodes_cmd::run(&cli.global, command),
        Some(Command::Gpus { interactive, every }) => {
            nodes_cmd::gpus(&cli.global, interactive, every)
        }
        Some(Command::Progress { step, message }) => runs_cmd::progress(step, message),
        Some(Command::Wrap { run_dir, attempt }) => {
            let code = crate::wrapper::wrap(&crate::wrapper::WrapArgs { run_dir, attempt });
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Some(Command::Slurm(cmd)) => slurm_cmd::run(&cli.global, cmd),
        Some(Command::Remotes { command }) => crate::remote::registry::command(json, command),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) => {
            output::error(json, &err);
            ExitCode::from(exit::code_for(&err))
        }
    }
}

fn tui(global: &args::GlobalArgs, remotes: Option<Vec<String>>) -> anyhow::Result<()> {
    let remotes = match remotes {
        None => Vec::new(),
        Some(names) => crate::tui::remotes::pick(crate::remote::registry::load()?, &names)?,
    };
    crate::tui::run(crate::tui::TuiOptions {
        state_dir: runs_cmd::state_dir(global)?,
        remotes,
        slurm_timeout: global.slurm_timeout,
        color: global.color.enabled(true),
    })
}
