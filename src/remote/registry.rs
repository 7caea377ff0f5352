//! Named remotes: `shepherd remotes add|list|rm`, kept in
//! `$XDG_CONFIG_HOME/shepherd/remotes.json` (`~/.config/shepherd/remotes.json`).
//!
//! JSON rather than TOML because the file is written by Shepherd, not by hand,
//! and the `toml` dependency is built without its writer. The file carries a
//! format version: a newer file is refused rather than overwritten.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::cli::output::{Table, emit};

/// The format this binary reads and writes.
const VERSION: u32 = 1;

#[derive(Debug, Subcommand)]
pub enum RemotesCommand {
    /// Every named remote (the default)
    List,
    /// Name a cluster: `shepherd remotes add a100 --host login.a100.example.org`
    Add {
        /// The name to use with --remote
        name: String,
        /// The ssh destination: a Host of ~/.ssh/config, or [user@]hostname
        #[arg(long)]
        host: String,
        /// Where scripts go on the remote [default: ~/shepherd-runs]
        #[arg(long, value_name = "DIR")]
        remote_dir: Option<String>,
        /// Shell commands run on the remote before every shepherd command
        /// (e.g. `module load slurm`)
        #[arg(long, value_name = "SNIPPET")]
        setup: Option<String>,
    },
    /// Forget a named remote
    Rm { name: String },
    /// The runs of every named remote, in one list labelled by remote
    Runs,
}

/// One named cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    pub name: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    remotes: Vec<Remote>,
}

pub fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .context("HOME is not set")?,
        )
        .join(".config"),
    };
    Ok(base.join("shepherd/remotes.json"))
}

/// Every named remote; none when the file does not exist.
pub fn load() -> anyhow::Result<Vec<Remote>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: File =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    if file.version > VERSION {
        bail!(
            "{} has format version {}, newer than this shepherd understands ({VERSION}); update shepherd",
            path.display(),
            file.version
        );
    }
    Ok(file.remotes)
}

fn save(remotes: Vec<Remote>) -> anyhow::Result<()> {
    let path = path()?;
    let dir = path.parent().expect("the path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&File {
        version: VERSION,
        remotes,
    })?;
    // Atomic: a reader sees the old file or the new one, never half of one.
    let tmp = dir.join(format!(".remotes.json.{}", std::process::id()));
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// The named remote `name`, if there is one.
pub fn find(name: &str) -> anyhow::Result<Option<Remote>> {
    Ok(load()?.into_iter().find(|r| r.name == name))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        bail!("invalid remote name {name:?}: use letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

pub fn command(json: bool, command: Option<RemotesCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(RemotesCommand::List) {
        RemotesCommand::List => {
            let remotes = load()?;
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
                            .unwrap_or_else(|| format!("{} (default)", super::DEFAULT_REMOTE_DIR)),
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
            check_name(&name)?;
            super::ssh::Ssh::new(&host)?;
            let mut remotes = load()?;
            let new = Remote {
                name: name.clone(),
                host,
                remote_dir,
                setup,
            };
            let replaced = match remotes.iter_mut().find(|r| r.name == name) {
                Some(r) => {
                    *r = new.clone();
                    true
                }
                None => {
                    remotes.push(new.clone());
                    false
                }
            };
            save(remotes)?;
            emit(json, "remote", &new, |r| {
                format!(
                    "{} remote {}: {}\n",
                    if replaced { "updated" } else { "added" },
                    r.name,
                    r.host
                )
            });
        }
        RemotesCommand::Runs => super::runs_everywhere(json, load()?)?,
        RemotesCommand::Rm { name } => {
            let mut remotes = load()?;
            let before = remotes.len();
            remotes.retain(|r| r.name != name);
            if remotes.len() == before {
                bail!("no remote named {name:?}; `shepherd remotes list` shows them");
            }
            save(remotes)?;
            emit(json, "removed", &name, |n| format!("removed remote {n}\n"));
        }
    }
    Ok(())
}
