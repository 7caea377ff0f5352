//! Named remotes: `shepherd remotes add|list|rm`, kept in
//! `$XDG_CONFIG_HOME/shepherd/remotes.json` (`~/.config/shepherd/remotes.json`).
//!
//! JSON rather than TOML because the file is written by Shepherd, not by hand,
//! and the `toml` dependency is built without its writer. The file carries a
//! format version: a newer file is refused rather than overwritten.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The format this binary reads and writes.
const VERSION: u32 = 1;

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

/// Names a cluster (or changes where the name points); whether a remote of
/// that name was replaced. The caller checks the host (`ssh::Ssh::new`),
/// whose error has a kind of its own.
pub fn add(new: Remote) -> anyhow::Result<bool> {
    check_name(&new.name)?;
    let mut remotes = load()?;
    let replaced = match remotes.iter_mut().find(|r| r.name == new.name) {
        Some(r) => {
            *r = new;
            true
        }
        None => {
            remotes.push(new);
            false
        }
    };
    save(remotes)?;
    Ok(replaced)
}

/// Forgets the remote `name`.
pub fn remove(name: &str) -> anyhow::Result<()> {
    let mut remotes = load()?;
    let before = remotes.len();
    remotes.retain(|r| r.name != name);
    if remotes.len() == before {
        bail!("no remote named {name:?}; `shepherd remotes list` shows them");
    }
    save(remotes)
}
