//! Asking for a keeper: when no daemon has renewed the lease for
//! `[keeper] after` (the job script's `SHEPHERD_KEEPER_AFTER`, in seconds),
//! the job itself notices and runs `shepherd daemon keeper`, which submits
//! the daemon as a small job (docs/daemon.md). A daemon stopped with
//! `daemon stop` (its mark, `STATE/daemon/stopped`) is the user's choice
//! and asks for nothing; a lease that is gone without that mark (a daemon
//! ended by SIGTERM: a reboot, a reaper) counts from when it was first
//! seen gone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::proc::Invocation;
use crate::records::lease::{LEASE_FILE, LEASE_VERSION, Lease, STOPPED_FILE};
use crate::store::atomic;

/// Set by the job script when the keeper is on: seconds without a renewed
/// lease before the wrapper asks for one.
pub const KEEPER_AFTER_ENV: &str = "SHEPHERD_KEEPER_AFTER";

/// How long `shepherd daemon keeper` may take (it asks Slurm twice).
const ASK_TIMEOUT: Duration = Duration::from_secs(120);

/// What the wrapper saw of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A lease, renewed last at its `heartbeat_at`.
    Lease(Lease),
    /// No lease, for this long (as far as this wrapper has looked).
    Gone(Duration),
    /// Stopped by the user (`daemon stop`).
    Stopped,
}

/// Whether to ask now: the daemon has not renewed its lease for `after`
/// by this host's clock (or the lease has been gone that long), it was not
/// stopped by the user, and this wrapper has not asked within `after` (the
/// command itself keeps every wrapper of the state directory to one
/// request).
pub fn due(seen: &Seen, now: Timestamp, after: Duration, since_asked: Option<Duration>) -> bool {
    let unwatched_for = match seen {
        Seen::Stopped => return false,
        Seen::Gone(d) => *d,
        Seen::Lease(l) => {
            let age = now.duration_since(l.heartbeat_at);
            if age.is_negative() {
                return false;
            }
            age.unsigned_abs()
        }
    };
    unwatched_for >= after && since_asked.is_none_or(|d| d >= after)
}

/// The watch, on a thread of its own for the wrapper's life: looks at the
/// lease every quarter of `after` (5 s to 1 min) and asks when [`due`].
pub fn watch(exe: PathBuf, state_root: PathBuf, after: Duration) {
    let every = (after / 4).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let lease_path = state_root.join("daemon").join(LEASE_FILE);
    let stopped_path = state_root.join("daemon").join(STOPPED_FILE);
    let spawned = std::thread::Builder::new()
        .name("keeper-watch".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut asked: Option<Instant> = None;
            let mut gone_since: Option<Instant> = None;
            loop {
                std::thread::sleep(every);
                let seen = if stopped_path.exists() {
                    Seen::Stopped
                } else {
                    match atomic::read_json::<Lease>(&lease_path, LEASE_VERSION) {
                        Ok(l) => Seen::Lease(l),
                        Err(e) if e.is_not_found() => {
                            Seen::Gone(gone_since.get_or_insert_with(Instant::now).elapsed())
                        }
                        // Unreadable (a stale NFS handle, a newer format):
                        // no evidence either way; look again later.
                        Err(_) => continue,
                    }
                };
                if !matches!(seen, Seen::Gone(_)) {
                    gone_since = None;
                }
                if !due(&seen, Timestamp::now(), after, asked.map(|t| t.elapsed())) {
                    continue;
                }
                asked = Some(Instant::now());
                let said = Invocation::new(exe.to_string_lossy(), ASK_TIMEOUT)
                    .arg("--state-dir")
                    .arg(&state_root)
                    .args(["daemon", "keeper"])
                    .run();
                match said {
                    Ok(out) if out.success() => eprintln!(
                        "shepherd: no daemon renewed its lease for {}; {}",
                        crate::duration::format(after),
                        out.stdout.trim()
                    ),
                    Ok(out) => eprintln!(
                        "shepherd: no daemon renewed its lease; asking for a keeper failed ({}): {}",
                        out.status_text(),
                        out.message()
                    ),
                    Err(e) => eprintln!(
                        "shepherd: no daemon renewed its lease; cannot ask for a keeper: {e}"
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("shepherd: cannot watch the daemon's lease (no keeper will be asked for): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::lease::StartedBy;

    #[test]
    fn a_keeper_is_due_only_for_a_lease_left_unrenewed_and_not_twice_at_once() {
        let now: Timestamp = "2026-12-08T03:00:00Z".parse().unwrap();
        let lease = |mins: i64| Lease {
            version: 1,
            host: "login-1".into(),
            pid: 7,
            started_at: now - jiff::SignedDuration::from_secs(86_400),
            heartbeat_at: now - jiff::SignedDuration::from_secs(mins * 60),
            poll_interval_secs: 10,
            started_by: StartedBy::Command,
            slurm_job_id: None,
        };
        let after = Duration::from_secs(600);
        let l = |mins| Seen::Lease(lease(mins));
        assert!(
            !due(&Seen::Stopped, now, after, None),
            "stopped by the user: nothing"
        );
        assert!(!due(&l(5), now, after, None), "renewed lately");
        assert!(due(&l(11), now, after, None));
        assert!(
            !due(&l(11), now, after, Some(Duration::from_secs(60))),
            "asked a minute ago"
        );
        assert!(due(&l(30), now, after, Some(after)));
        assert!(
            !due(&l(-30), now, after, None),
            "a lease from the future (clock skew) is no dead daemon"
        );
        // Gone without `daemon stop` (SIGTERM at a reboot): from when first
        // seen gone.
        assert!(!due(&Seen::Gone(Duration::from_secs(60)), now, after, None));
        assert!(due(&Seen::Gone(after), now, after, None));
    }
}
