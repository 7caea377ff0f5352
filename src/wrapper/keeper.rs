//! Asking for a keeper: when no daemon has renewed the lease for
//! `[keeper] after` (the job script's `SHEPHERD_KEEPER_AFTER`, in seconds),
//! the job itself notices and runs `shepherd daemon keeper`, which submits
//! the daemon as a small job (docs/daemon.md). A lease that is gone (a
//! `daemon stop`) is the user's choice and asks for nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::proc::Invocation;
use crate::records::lease::{LEASE_VERSION, Lease};
use crate::store::atomic;

/// Set by the job script when the keeper is on: seconds without a renewed
/// lease before the wrapper asks for one.
pub const KEEPER_AFTER_ENV: &str = "SHEPHERD_KEEPER_AFTER";

/// How long `shepherd daemon keeper` may take (it asks Slurm twice).
const ASK_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether to ask now: the lease exists and has not been renewed for
/// `after` by this host's clock, and this wrapper has not asked within
/// `after` (the command itself keeps every wrapper of the state directory
/// to one request).
pub fn due(
    lease: Option<&Lease>,
    now: Timestamp,
    after: Duration,
    since_asked: Option<Duration>,
) -> bool {
    let Some(l) = lease else {
        return false;
    };
    let age = now.duration_since(l.heartbeat_at);
    if age.is_negative() || age.unsigned_abs() < after {
        return false;
    }
    since_asked.is_none_or(|d| d >= after)
}

/// The watch, on a thread of its own for the wrapper's life: looks at the
/// lease every quarter of `after` (5 s to 1 min) and asks when [`due`].
pub fn watch(exe: PathBuf, state_root: PathBuf, after: Duration) {
    let every = (after / 4).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let lease_path = state_root.join("daemon").join("lease.json");
    let spawned = std::thread::Builder::new()
        .name("keeper-watch".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut asked: Option<Instant> = None;
            loop {
                std::thread::sleep(every);
                let lease = atomic::read_json::<Lease>(&lease_path, LEASE_VERSION).ok();
                if !due(
                    lease.as_ref(),
                    Timestamp::now(),
                    after,
                    asked.map(|t| t.elapsed()),
                ) {
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
        assert!(!due(None, now, after, None), "stopped by the user: nothing");
        assert!(!due(Some(&lease(5)), now, after, None), "renewed lately");
        assert!(due(Some(&lease(11)), now, after, None));
        assert!(
            !due(Some(&lease(11)), now, after, Some(Duration::from_secs(60))),
            "asked a minute ago"
        );
        assert!(due(Some(&lease(30)), now, after, Some(after)));
        assert!(
            !due(Some(&lease(-30)), now, after, None),
            "a lease from the future (clock skew) is no dead daemon"
        );
    }
}
