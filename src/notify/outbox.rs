//! The outbox: notices waiting to be sent, one file each under
//! `STATE/notify/outbox/`, moved to `STATE/notify/sent/` once every channel
//! took it (or gave up). Files are written atomically; the daemon's tick only
//! adds files, the sender only updates and moves them.

use std::fs;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::channels::{Channel, Target};
use crate::policy::notices::Notice;
use crate::store::StateDir;
use crate::store::atomic::{self, StoreError};

pub const ENTRY_VERSION: u32 = 1;

/// How long a notice is retried before the sender gives up on a channel.
pub const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Sent notices are kept this long, for the record and for de-duplication.
pub const KEEP_SENT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One channel's progress with one notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub channel: String,
    pub target: Target,
    pub tries: u32,
    pub next_at: Timestamp,
    pub last_error: Option<String>,
    /// `sent`, `gave_up`, or `null` while pending.
    pub outcome: Option<String>,
}

impl Delivery {
    pub fn pending(&self) -> bool {
        self.outcome.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    /// Slurm's cluster name, when known.
    pub cluster: Option<String>,
    pub notice: Notice,
    pub deliveries: Vec<Delivery>,
}

/// A notice id as a file name.
fn file_name(id: &str) -> String {
    format!("{}.json", crate::store::safe_file_name(id))
}

pub struct Outbox {
    root: PathBuf,
}

impl Outbox {
    pub fn new(state_dir: &StateDir) -> Outbox {
        Outbox {
            root: state_dir.root().join("notify"),
        }
    }

    pub fn pending_dir(&self) -> PathBuf {
        self.root.join("outbox")
    }

    pub fn sent_dir(&self) -> PathBuf {
        self.root.join("sent")
    }

    /// Queues a notice for the channels that want it. A notice already
    /// queued or sent (same id) is not queued again. Returns whether it was
    /// queued.
    pub fn enqueue(
        &self,
        notice: &Notice,
        channels: &[Channel],
        cluster: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let deliveries: Vec<Delivery> = channels
            .iter()
            .filter(|c| c.wants(notice.kind))
            .map(|c| Delivery {
                channel: c.name.clone(),
                target: c.target.clone(),
                tries: 0,
                next_at: now,
                last_error: None,
                outcome: None,
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(false);
        }
        let name = file_name(&notice.id);
        // Outbox first, then sent: the sender moves files in that direction.
        if self.pending_dir().join(&name).exists() || self.sent_dir().join(&name).exists() {
            return Ok(false);
        }
        let dir = self.pending_dir();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        atomic::write_json(
            &dir.join(name),
            &Entry {
                version: ENTRY_VERSION,
                cluster: cluster.map(str::to_string),
                notice: notice.clone(),
                deliveries,
            },
        )?;
        Ok(true)
    }

    /// The queued entries, oldest notice first. Unreadable files are
    /// returned as errors so the sender can log them.
    pub fn pending(&self) -> Vec<(PathBuf, Result<Entry, StoreError>)> {
        let Ok(dir) = fs::read_dir(self.pending_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, Result<Entry, StoreError>)> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let e = atomic::read_json::<Entry>(&p, ENTRY_VERSION);
                (p, e)
            })
            .collect();
        out.sort_by_key(|(p, e)| (e.as_ref().ok().map(|e| e.notice.time), p.clone()));
        out
    }

    pub fn update(&self, path: &std::path::Path, entry: &Entry) -> Result<(), StoreError> {
        atomic::write_json(path, entry)
    }

    /// Moves a finished entry to `sent/`.
    pub fn finish(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let sent = self.sent_dir();
        fs::create_dir_all(&sent).map_err(|source| StoreError::Write {
            path: sent.clone(),
            source,
        })?;
        let to = sent.join(path.file_name().unwrap_or_default());
        fs::rename(path, &to).map_err(|source| StoreError::Write { path: to, source })
    }

    /// Forgets sent notices older than [`KEEP_SENT`].
    pub fn prune(&self, now: std::time::SystemTime) {
        let Ok(dir) = fs::read_dir(self.sent_dir()) else {
            return;
        };
        for e in dir.filter_map(Result::ok) {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > KEEP_SENT);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// When to try a channel again after `tries` failures: 10 s, doubling, at
/// most 15 minutes apart.
pub fn backoff(tries: u32) -> std::time::Duration {
    let secs = 10u64.saturating_mul(1u64 << tries.saturating_sub(1).min(10));
    std::time::Duration::from_secs(secs.min(900))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::notices::NoticeKind;

    fn notice(id: &str, kind: NoticeKind) -> Notice {
        Notice {
            id: id.into(),
            kind,
            time: Timestamp::UNIX_EPOCH,
            run_id: Some("train".into()),
            status: None,
            summary: "s".into(),
            details: vec![],
            down_secs: None,
            attempt: None,
            node: None,
            partition: None,
            nodes: vec![],
        }
    }

    fn channel(name: &str, events: Vec<NoticeKind>) -> Channel {
        Channel {
            name: name.into(),
            target: Target::Command("true".into()),
            events,
            default: true,
        }
    }

    #[test]
    fn a_notice_is_queued_once_even_after_it_was_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(&StateDir::new(tmp.path()));
        let now = Timestamp::UNIX_EPOCH;
        let all = [channel("a", NoticeKind::ALL.to_vec())];
        let n = notice("train.2.banned.gpu-1,gpu-2", NoticeKind::NodeBanned);
        assert!(ob.enqueue(&n, &all, Some("c"), now).unwrap());
        assert!(!ob.enqueue(&n, &all, Some("c"), now).unwrap());
        let pending = ob.pending();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].0.ends_with("train.2.banned.gpu-1_gpu-2.json"));
        ob.finish(&pending[0].0).unwrap();
        assert!(ob.pending().is_empty());
        assert!(!ob.enqueue(&n, &all, Some("c"), now).unwrap());
        // No channel wants it: nothing queued.
        let picky = [channel("b", vec![NoticeKind::RunFailed])];
        assert!(
            !ob.enqueue(&notice("x", NoticeKind::RunCompleted), &picky, None, now)
                .unwrap()
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s: Vec<u64> = (1..=9).map(|t| backoff(t).as_secs()).collect();
        assert_eq!(s, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
    }
}
