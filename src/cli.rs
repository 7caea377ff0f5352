//! The command line: argument parsing, output (human or JSON), error rendering
//! and the exit-code contract.

mod args;
mod daemon_cmd;
pub mod exit;
mod logs_cmd;
mod nodes_cmd;
pub(crate) mod output;
mod remote_cmd;
mod runs_cmd;
mod slurm_cmd;

use std::process::ExitCode;

use std::io::IsTerminal;

pub use args::{Cli, ColorChoice, Command, ExternalRun};

use crate::policy::decide::Control;

/// Whether the command line asks for JSON, read before clap has parsed it
/// (for its own errors). `--json` after `--` belongs to sbatch.
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Parses the command line; with `--json`, a usage error is a JSON error
/// document on stdout (exit 2) like every other error ([docs/json.md]).
fn parse_or_exit<T: clap::Parser>(argv: impl IntoIterator<Item = std::ffi::OsString>) -> T {
    match T::try_parse_from(argv) {
        Ok(v) => v,
        Err(e) if wants_json() && e.use_stderr() => {
            let doc = serde_json::json!({
                "schema_version": output::SCHEMA_VERSION,
                "error": {
                    "kind": "usage",
                    "message": e.to_string().lines().next().unwrap_or_default()
                        .trim_start_matches("error: "),
                    "causes": [],
                    "hint": "see `shepherd --help` or `shepherd COMMAND --help`",
                }
            });
            output::print(&format!("{doc}\n"));
            std::process::exit(i32::from(exit::USAGE));
        }
        Err(e) => e.exit(),
    }
}

/// Entry point of the `shepherd` binary.
pub fn main() -> ExitCode {
    let cli: Cli = parse_or_exit(std::env::args_os());
    // `--remote HOST`: the whole invocation runs on HOST (docs/remote.md).
    if let Some(code) = remote_cmd::dispatch(&cli) {
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
            let ext: args::ExternalRun = parse_or_exit(argv);
            runs_cmd::run(&ext.global, ext.run)
        }
        Some(Command::Run(args)) => runs_cmd::run(&cli.global, *args),
        Some(Command::List) => runs_cmd::list(&cli.global),
        Some(Command::Status { run }) => runs_cmd::status(&cli.global, &run),
        Some(Command::Wait { run, timeout }) => match runs_cmd::wait(&cli.global, &run, timeout) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
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
        Some(Command::Daemon(cmd)) => daemon_cmd::daemon(&cli.global, cmd),
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
        Some(Command::Remotes { command }) => remote_cmd::remotes(json, command),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) => {
            output::error(json, &err);
            ExitCode::from(exit::code(err.kind()))
        }
    }
}

fn tui(global: &args::GlobalArgs, remotes: Option<Vec<String>>) -> crate::ops::Result<()> {
    let remotes = match remotes {
        None => Vec::new(),
        Some(names) => crate::tui::remotes::pick(crate::remote::registry::load()?, &names)?,
    };
    Ok(crate::tui::run(crate::tui::TuiOptions {
        state_dir: runs_cmd::state_dir(global)?,
        remotes,
        slurm_timeout: global.slurm_timeout,
        color: global.color.enabled(true),
    })?)
}
