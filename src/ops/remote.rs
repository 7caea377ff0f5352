//! The operations on a named remote: the remote `shepherd` is asked over the
//! user's ssh (`crate::remote`, the transport) with `--json`, and its
//! documents are read back into the same types [`super::Local`] returns.
//! Its errors keep the remote's message, hint and exit code.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Banned, Context, Error, Kind, Ops, Removed, Requested, Result, Unbanned};
use crate::policy::decide::Control;
use crate::remote::registry;
use crate::store::runs::JournalEntry;
use crate::view::RunDoc;
use crate::view::nodes::NodesDoc;

/// A named remote's runs.
pub struct Remote {
    remote: registry::Remote,
    /// The remote `shepherd`'s `--slurm-timeout`.
    slurm_timeout: Duration,
}

impl Remote {
    pub fn new(remote: registry::Remote, slurm_timeout: Duration) -> Remote {
        Remote {
            remote,
            slurm_timeout,
        }
    }

    pub fn name(&self) -> &str {
        &self.remote.name
    }

    /// `shepherd WORDS --json` there; the value of `key` of its answer.
    fn ask<T: DeserializeOwned>(&self, words: &[&str], key: &str) -> Result<T> {
        let timeout = format!("{}s", self.slurm_timeout.as_secs().max(1));
        let mut all: Vec<&str> = vec!["--slurm-timeout", &timeout];
        all.extend_from_slice(words);
        all.push("--json");
        let name = &self.remote.name;
        let mut doc = crate::remote::remote_json(&self.remote, &all).context(name.clone())?;
        let value = doc
            .get_mut(key)
            .map(serde_json::Value::take)
            .ok_or_else(|| {
                Error::new(
                    Kind::Remote,
                    anyhow::anyhow!("{name}: unreadable answer: no {key}"),
                )
            })?;
        serde_json::from_value(value).map_err(|e| {
            Error::new(
                Kind::Remote,
                anyhow::anyhow!("{name}: unreadable answer: {e}"),
            )
        })
    }
}

impl Ops for Remote {
    fn list(&self) -> Result<Vec<RunDoc>> {
        self.ask(&["list"], "runs")
    }

    fn status(&self, run: &str) -> Result<RunDoc> {
        self.ask(&["status", run], "run")
    }

    fn events(&self, run: &str) -> Result<Vec<JournalEntry>> {
        self.ask(&["events", run], "events")
    }

    fn control(&self, run: &str, control: Control) -> Result<Requested> {
        self.ask(&[&crate::view::snake(&control), run], "requested")
    }

    fn remove(&self, run: &str, force: bool, wait: Duration) -> Result<Removed> {
        let wait = format!("{}s", wait.as_secs().max(1));
        let mut words = vec!["rm", run];
        if force {
            words.extend(["--force", "--wait", &wait]);
        }
        let run_id: String = self.ask(&words, "removed")?;
        // What the remote cancelled on the way it said on its stderr only.
        Ok(Removed {
            run_id,
            cancelled: Vec::new(),
        })
    }

    fn ban(&self, node: &str, ttl: Option<Duration>, reason: &str) -> Result<Banned> {
        let ttl_word = ttl.map(|t| format!("{}s", t.as_secs().max(1)));
        let mut words = vec!["nodes", "ban", node, "--reason", reason];
        if let Some(t) = &ttl_word {
            words.extend(["--ttl", t]);
        }
        let node: String = self.ask(&words, "banned")?;
        Ok(Banned {
            node,
            // The remote's `--json` answer names the node only.
            cluster: None,
            ttl,
        })
    }

    fn unban(&self, node: &str) -> Result<Unbanned> {
        let node: String = self.ask(&["nodes", "unban", node], "unbanned")?;
        Ok(Unbanned {
            node,
            // Its `--json` answer does not say whether the node was banned.
            was_banned: None,
        })
    }

    fn nodes(&self) -> Result<NodesDoc> {
        self.ask(&["nodes"], "nodes")
    }
}
