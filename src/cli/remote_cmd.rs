//! `--remote HOST` (the whole invocation, run on another cluster) and
//! `shepherd remotes …`: the command line's side of [`crate::remote`], which
//! is only the transport.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use super::args::{Cli, ColorChoice, Command, ExternalRun, RemotesCommand};
use super::output::{Table, emit};
use super::{exit, output};
use crate::fail;
use crate::ops::{Error, Result};
use crate::remote::{self, Plan, RemoteError, Target, registry};

/// The early branch of [`super::main`]: when `--remote` is given anywhere, runs
/// the whole invocation on the remote and returns its exit status.
pub fn dispatch(cli: &Cli) -> Option<ExitCode> {
    let mut json = cli.global.json;
    let mut remote = cli.global.remote.clone();
    let mut remote_dir = cli.global.remote_dir.clone();
    let mut copy = cli.global.remote_copy.clone();
    let mut script = None;
    // `shepherd SCRIPT --remote H`: clap sees the words after SCRIPT only
    // when it re-reads them as `run`.
    if let Some(Command::External(words)) = &cli.command {
        use clap::Parser;
        let argv = std::iter::once("shepherd".into()).chain(words.iter().cloned());
        let ext = ExternalRun::parse_from(argv);
        json |= ext.global.json;
        remote = remote.or(ext.global.remote);
        remote_dir = remote_dir.or(ext.global.remote_dir);
        copy.extend(ext.global.remote_copy);
        script = Some(ext.run.script);
    }
    let remote = remote?;
    if let Some(Command::Run(args)) = &cli.command {
        script = Some(args.script.clone());
    }
    let local_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let terminal = match &cli.command {
        Some(Command::Tui { .. }) => true,
        None => !json && local_terminal,
        Some(Command::Gpus { interactive, .. }) => *interactive && local_terminal,
        _ => false,
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let result = remote::argv::strip_local(&args).and_then(|mut words| {
        // The remote's output is a pipe: carry over our `--color auto` choice.
        let colour = !terminal
            && cli.global.color == ColorChoice::Auto
            && cli.global.color.enabled(std::io::stdout().is_terminal())
            && !words.iter().any(|w| w.starts_with("--color"));
        let script = match script {
            Some(path) => {
                // `shepherd run run`: the script comes after the subcommand.
                let from = match &cli.command {
                    Some(Command::Run(_)) => {
                        words.iter().position(|w| w == "run").map_or(0, |i| i + 1)
                    }
                    _ => 0,
                };
                let at = words
                    .iter()
                    .skip(from)
                    .position(|w| Path::new(w) == path)
                    .map(|i| i + from)
                    .ok_or_else(|| {
                        RemoteError::Config("cannot find the script's argument".into())
                    })?;
                Some((path, at))
            }
            None => None,
        };
        if colour {
            // After the script for `shepherd SCRIPT` (whose options clap reads
            // after it), before everything else otherwise.
            let at = match (&cli.command, &script) {
                (Some(Command::External(_)), Some((_, i))) => i + 1,
                _ => 0,
            };
            words.splice(at..at, ["--color".to_string(), "always".to_string()]);
        }
        let mut target = Target::resolve(&remote, remote_dir.as_deref())?;
        if !copy.is_empty() && script.is_none() {
            return Err(RemoteError::Config(
                "--remote-copy only applies to `shepherd SCRIPT --remote HOST`".into(),
            ));
        }
        target.copy = copy;
        remote::run(
            &target,
            Plan {
                words,
                script,
                terminal,
                capture: false,
            },
        )
        .map(|done| done.code)
    });
    Some(match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(exit::FAILURE)),
        Err(err) => {
            let err = Error::from(err);
            output::error(json, &err);
            ExitCode::from(exit::code(err.kind()))
        }
    })
}

/// `shepherd remotes [list | add | rm | runs]`.
pub fn remotes(json: bool, command: Option<RemotesCommand>) -> Result<()> {
    match command.unwrap_or(RemotesCommand::List) {
        RemotesCommand::List => {
            let remotes = registry::load()?;
            emit(json, "remotes", &remotes, |rs| {
                if rs.is_empty() {
                    return "no remotes; add one with `shepherd remotes add NAME --host HOST`\n"
                        .to_string();
                }
                let mut t = Table::new(&["NAME", "HOST", "REMOTE-DIR", "SETUP"]);
                for r in rs {
                    t.row(vec![
                        r.name.clone(),
                        r.host.clone(),
                        r.remote_dir
                            .clone()
                            .unwrap_or_else(|| format!("{} (default)", remote::DEFAULT_REMOTE_DIR)),
                        r.setup.as_deref().unwrap_or("-").replace('\n', "; "),
                    ]);
                }
                t.render()
            });
        }
        RemotesCommand::Add {
            name,
            host,
            remote_dir,
            setup,
        } => {
            remote::ssh::Ssh::new(&host)?;
            let new = registry::Remote {
                name,
                host,
                remote_dir,
                setup,
            };
            let replaced = registry::add(new.clone())?;
            emit(json, "remote", &new, |r| {
                format!(
                    "{} remote {}: {}\n",
                    if replaced { "updated" } else { "added" },
                    r.name,
                    r.host
                )
            });
        }
        RemotesCommand::Runs => runs_everywhere(json, registry::load()?)?,
        RemotesCommand::Rm { name } => {
            registry::remove(&name)?;
            emit(json, "removed", &name, |n| format!("removed remote {n}\n"));
        }
    }
    Ok(())
}

/// `shepherd remotes runs`: `list --json` on every named remote at once (one
/// thread each, over each remote's shared connection), shown as one list
/// with a REMOTE column. A remote that cannot be reached is a line of the
/// output, not the end of it.
fn runs_everywhere(json: bool, remotes: Vec<registry::Remote>) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Of {
        remote: String,
        host: String,
        /// The remote's `list --json` runs; `null` when it could not be asked.
        runs: Option<serde_json::Value>,
        error: Option<String>,
    }
    if remotes.is_empty() {
        fail!("no remotes; add one with `shepherd remotes add NAME --host HOST`");
    }
    let ask = |r: &registry::Remote| -> Result<serde_json::Value, String> {
        let doc = remote::remote_json(r, &["list", "--json"]).map_err(|e| e.to_string())?;
        doc.get("runs")
            .cloned()
            .ok_or_else(|| "unreadable answer: no runs".to_string())
    };
    let all: Vec<Of> = std::thread::scope(|scope| {
        let handles: Vec<_> = remotes
            .iter()
            .map(|r| (r, scope.spawn(move || ask(r))))
            .collect();
        handles
            .into_iter()
            .map(|(r, h)| {
                let answer = h.join().unwrap_or_else(|_| Err("internal error".into()));
                Of {
                    remote: r.name.clone(),
                    host: r.host.clone(),
                    error: answer.as_ref().err().cloned(),
                    runs: answer.ok(),
                }
            })
            .collect()
    });
    emit(json, "remotes", &all, |all| {
        let mut t = Table::new(&[
            "REMOTE", "RUN", "STATUS", "JOB", "NODE", "ATTEMPTS", "REASON",
        ]);
        let mut unreachable = String::new();
        for of in all {
            if let Some(e) = &of.error {
                unreachable.push_str(&format!("{} ({}): {e}\n", of.remote, of.host));
            }
            for r in of
                .runs
                .as_ref()
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                t.row(vec![
                    of.remote.clone(),
                    s("run_id"),
                    s("status"),
                    r["slurm_job_id"]
                        .as_u64()
                        .map_or("-".into(), |j| j.to_string()),
                    s("node"),
                    r["attempts"].as_array().map_or(0, Vec::len).to_string(),
                    s("reason"),
                ]);
            }
        }
        let mut out = t.render();
        if !unreachable.is_empty() {
            out.push_str("\nnot reached:\n");
            out.push_str(&unreachable);
        }
        out
    });
    Ok(())
}
