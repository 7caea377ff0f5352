//! Whether anything watches the runs: the daemon's lease, or when a daemon
//! was last seen, and the banner `list`, `status` and the TUI show while
//! active runs have no daemon.

use jiff::Timestamp;

use crate::daemon::lease::Lease;
use crate::daemon::service;
use crate::store::StateDir;

/// The daemon as seen from here.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// The live daemon's lease (fresh; on this host, its pid checked).
    pub live: Option<Lease>,
    /// When a daemon last acted, if none is live now.
    pub last_seen: Option<Timestamp>,
    /// When the user stopped it (`daemon stop`), if it is off by choice.
    pub stopped: Option<Timestamp>,
}

impl Watch {
    /// Reads the lease (and, with none live, the daemon log's time): two
    /// small file reads, no Slurm call.
    pub fn of(sd: &StateDir) -> Watch {
        let live = service::status(sd);
        let (last_seen, stopped) = match live {
            Some(_) => (None, None),
            None => (service::last_seen(sd), crate::daemon::keeper::stopped(sd)),
        };
        Watch {
            live,
            last_seen,
            stopped,
        }
    }
}

/// The banner while `active` runs are not watched; `None` while a daemon
/// runs or nothing is active.
pub fn unwatched(active: usize, w: &Watch, now: Timestamp) -> Option<String> {
    if active == 0 || w.live.is_some() {
        return None;
    }
    if let Some(at) = w.stopped {
        return Some(format!(
            "the daemon was stopped with `shepherd daemon stop` at {}: {active} active run(s) not watched; \
             `shepherd daemon start` starts it again",
            at.strftime("%Y-%m-%d %H:%M UTC")
        ));
    }
    let since = match w.last_seen {
        Some(t) => {
            let ago = now.duration_since(t).unsigned_abs();
            let ago = std::time::Duration::from_secs(ago.as_secs());
            format!(
                "no daemon since {} ({} ago)",
                t.strftime("%Y-%m-%d %H:%M UTC"),
                crate::duration::format(ago)
            )
        }
        None => "no daemon has run yet".to_string(),
    };
    Some(format!(
        "{since}: {active} active run(s) not watched; start one with `shepherd daemon start` \
         (`shepherd daemon install` keeps one running)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(at: Timestamp) -> Lease {
        Lease {
            version: 1,
            host: "login-1".into(),
            pid: 7,
            started_at: at,
            heartbeat_at: at,
            poll_interval_secs: 10,
            started_by: crate::daemon::lease::StartedBy::Ensure,
            slurm_job_id: None,
        }
    }

    #[test]
    fn the_banner_says_since_when_and_what_to_do_only_when_runs_are_unwatched() {
        let now: Timestamp = "2026-12-08T09:00:00Z".parse().unwrap();
        let seen: Timestamp = "2026-12-08T02:13:00Z".parse().unwrap();
        let gone = Watch {
            live: None,
            last_seen: Some(seen),
            stopped: None,
        };
        assert_eq!(
            unwatched(2, &gone, now).unwrap(),
            "no daemon since 2026-12-08 02:13 UTC (6h47m ago): 2 active run(s) not watched; \
             start one with `shepherd daemon start` (`shepherd daemon install` keeps one running)"
        );
        assert_eq!(unwatched(0, &gone, now), None, "nothing to watch");
        let live = Watch {
            live: Some(lease(now)),
            last_seen: None,
            stopped: None,
        };
        assert_eq!(unwatched(2, &live, now), None);
        let never = Watch {
            live: None,
            last_seen: None,
            stopped: None,
        };
        assert!(
            unwatched(1, &never, now)
                .unwrap()
                .starts_with("no daemon has run yet: 1 active")
        );
        let off = Watch {
            stopped: Some(seen),
            ..gone
        };
        let said = unwatched(1, &off, now).unwrap();
        assert!(
            said.starts_with(
                "the daemon was stopped with `shepherd daemon stop` at 2026-12-08 02:13 UTC"
            ),
            "{said}"
        );
    }

    #[test]
    fn a_killed_daemons_lease_says_when_it_last_acted() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        assert_eq!(
            Watch::of(&sd),
            Watch {
                live: None,
                last_seen: None,
                stopped: None
            }
        );
        std::fs::create_dir_all(sd.daemon()).unwrap();
        let at: Timestamp = "2026-12-08T02:13:00Z".parse().unwrap();
        // A lease left behind by a daemon that was killed: its pid is no
        // daemon of ours (this test process).
        let mut l = lease(at);
        l.host = crate::daemon::lease::hostname();
        l.pid = std::process::id();
        crate::store::atomic::write_json(&crate::daemon::lease::lease_path(&sd.daemon()), &l)
            .unwrap();
        assert_eq!(
            Watch::of(&sd),
            Watch {
                live: None,
                last_seen: Some(at),
                stopped: None
            }
        );
    }
}
