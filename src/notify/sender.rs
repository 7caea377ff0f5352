//! The daemon's sending thread: delivers queued notices, retries failing
//! channels with backoff, gives up after a day. It runs beside the tick, so a
//! slow or dead endpoint never delays recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use super::deliver;
use super::outbox::{GIVE_UP_AFTER, Outbox, backoff};
use crate::store::StateDir;

/// Sends what is due now; returns how many deliveries succeeded. `log`
/// receives one line per failure and per give-up.
pub fn send_due(outbox: &Outbox, now: Timestamp, log: &dyn Fn(&str)) -> usize {
    let mut sent = 0;
    for (path, entry) in outbox.pending() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                log(&format!(
                    "notify: dropping unreadable {}: {e}",
                    path.display()
                ));
                let _ = outbox.finish(&path);
                continue;
            }
        };
        let mut changed = false;
        for i in 0..entry.deliveries.len() {
            let d = &entry.deliveries[i];
            if !d.pending() || d.next_at > now {
                continue;
            }
            let result = deliver::send(&d.target, &entry);
            let d = &mut entry.deliveries[i];
            d.tries += 1;
            changed = true;
            match result {
                Ok(()) => {
                    d.outcome = Some("sent".into());
                    d.last_error = None;
                    sent += 1;
                }
                Err(e) => {
                    let age = now.duration_since(entry.notice.time).unsigned_abs();
                    if age >= GIVE_UP_AFTER {
                        d.outcome = Some("gave_up".into());
                        log(&format!(
                            "notify: gave up on {} for {} after {} tries: {e}",
                            d.channel, entry.notice.id, d.tries
                        ));
                    } else {
                        let wait = backoff(d.tries);
                        d.next_at = now
                            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                            .unwrap_or(now);
                        log(&format!(
                            "notify: {} failed for {} (try {}, next in {}): {e}",
                            d.channel,
                            entry.notice.id,
                            d.tries,
                            crate::duration::format(wait)
                        ));
                    }
                    d.last_error = Some(e);
                }
            }
        }
        if !changed {
            continue;
        }
        let done = entry.deliveries.iter().all(|d| !d.pending());
        let saved = outbox
            .update(&path, &entry)
            .and_then(|()| if done { outbox.finish(&path) } else { Ok(()) });
        if let Err(e) = saved {
            log(&format!(
                "notify: cannot record delivery of {}: {e}",
                entry.notice.id
            ));
        }
    }
    sent
}

/// Starts the sending thread; it checks the outbox every `every` until
/// `stop` is set.
pub fn spawn(
    state_dir: StateDir,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let outbox = Outbox::new(&state_dir);
            let log = crate::store::log::Log::new(&state_dir);
            outbox.prune(std::time::SystemTime::now());
            while !stop.load(Ordering::Relaxed) {
                send_due(&outbox, Timestamp::now(), &|line| log.line(line));
                let mut slept = Duration::ZERO;
                while slept < every && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    slept += Duration::from_millis(100);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::notify::channels::{Channel, Target};
    use crate::policy::notices::{Notice, NoticeKind};

    fn notice() -> Notice {
        Notice {
            id: "train.1.failed".into(),
            kind: NoticeKind::RunFailed,
            time: Timestamp::from_second(1_800_000_000).unwrap(),
            run_id: Some("train".into()),
            status: Some("failed".into()),
            summary: "run train failed: it's broken; $HOME `x`".into(),
            details: vec!["last attempt 1".into()],
            down_secs: None,
            attempt: Some(1),
            node: None,
            partition: None,
            nodes: vec![],
        }
    }

    fn cmd(name: &str, command: String) -> Channel {
        Channel {
            name: name.into(),
            target: Target::Command(command),
            events: NoticeKind::ALL.to_vec(),
            default: true,
        }
    }

    #[test]
    fn a_failing_channel_is_retried_with_backoff_and_the_others_are_sent_once() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(&StateDir::new(tmp.path()));
        let got = tmp.path().join("got");
        let flag = tmp.path().join("healthy");
        let good = cmd(
            "good",
            format!(
                "cat > {0}.json; printf '%s|%s' \"$SHEPHERD_NOTICE_KIND\" \"$SHEPHERD_NOTICE_SUMMARY\" >> {0}",
                got.display()
            ),
        );
        let flaky = cmd("flaky", format!("test -e {}", flag.display()));
        let n = notice();
        let t0 = n.time;
        assert!(ob.enqueue(&n, &[good, flaky], Some("lab"), t0).unwrap());
        let lines = RefCell::new(Vec::new());
        let log = |l: &str| lines.borrow_mut().push(l.to_string());
        assert_eq!(send_due(&ob, t0, &log), 1);
        assert_eq!(
            std::fs::read_to_string(&got).unwrap(),
            "run_failed|run train failed: it's broken; $HOME `x`"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(got.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["cluster"], "lab");
        assert_eq!(doc["kind"], "run_failed");
        assert!(lines.borrow()[0].contains("flaky failed for train.1.failed (try 1, next in 10s)"));
        // Not due yet: nothing is tried, the good channel is not sent again.
        assert_eq!(
            send_due(&ob, t0 + jiff::SignedDuration::from_secs(5), &log),
            0
        );
        assert_eq!(lines.borrow().len(), 1);
        std::fs::write(&flag, "").unwrap();
        assert_eq!(
            send_due(&ob, t0 + jiff::SignedDuration::from_secs(11), &log),
            1
        );
        assert!(ob.pending().is_empty(), "finished entries move to sent/");
        assert_eq!(
            std::fs::read_to_string(&got)
                .unwrap()
                .matches("run_failed")
                .count(),
            1
        );
    }

    #[test]
    fn after_a_day_a_channel_is_given_up_and_the_notice_leaves_the_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(&StateDir::new(tmp.path()));
        let n = notice();
        ob.enqueue(&n, &[cmd("dead", "exit 7".into())], None, n.time)
            .unwrap();
        let lines = RefCell::new(Vec::new());
        let log = |l: &str| lines.borrow_mut().push(l.to_string());
        let later = n.time + jiff::SignedDuration::from_hours(25);
        assert_eq!(send_due(&ob, later, &log), 0);
        assert!(
            lines.borrow()[0].contains("gave up on dead"),
            "{:?}",
            lines.borrow()
        );
        assert!(ob.pending().is_empty());
    }
}
