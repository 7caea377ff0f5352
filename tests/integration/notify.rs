//! Notifications end to end: a run that fails once and recovers, and a run
//! that fails for good, send exactly the expected messages to a webhook on
//! loopback, a Slack-format webhook and a command hook; an endpoint that
//! hangs does not delay recovery.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);
const FAST: &str = "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s\n";

/// A tiny HTTP server on loopback that records each request's path and body.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok() {
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push((path, v));
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { port, got }
    }

    /// The kinds received on `path`, in order.
    fn kinds(&self, path: &str) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| match v["kind"].as_str() {
                Some(k) => k.to_string(),
                // Slack's format: the headline says what happened.
                None => v["text"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            })
            .collect()
    }
}

/// Accepts connections and never answers: an endpoint that hangs.
fn black_hole() -> (u16, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    (port, held)
}

#[test]
fn a_recovery_and_a_final_failure_send_exactly_their_messages() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let rx = Receiver::start();
    let (dead, _held) = black_hole();
    let hook = shep.work.join("hook.jsonl");
    std::fs::create_dir_all(&shep.state).unwrap();
    std::fs::write(
        shep.state.join("config.toml"),
        format!(
            "[[notify]]\nname = \"team\"\nslack = \"http://127.0.0.1:{p}/slack\"\n\n\
             [[notify]]\nname = \"json\"\nwebhook = \"http://127.0.0.1:{p}/json\"\n\n\
             [[notify]]\nname = \"hook\"\ncommand = \"cat >> {hook}; echo >> {hook}\"\n\n\
             [[notify]]\nname = \"hangs\"\nwebhook = \"http://127.0.0.1:{dead}/x\"\n",
            p = rx.port,
            hook = hook.display()
        ),
    )
    .unwrap();

    let flaky = shep.submit(
        "flaky.sh",
        &format!(
            "#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then exit 1; fi\nsleep 3\necho fine\n"
        ),
        &[],
    );
    let doomed = shep.submit(
        "doomed.sh",
        &format!("#!/bin/bash\n#SBATCH --partition=cpu\n{FAST}echo 'bad input' >&2; exit 3\n"),
        &["--max-retries", "0"],
    );
    let s = shep.wait_status(&flaky, &["completed"], LONG);
    assert_eq!(outcomes(&s), ["workload_failure", "success"], "{s}");
    // The hanging endpoint (15 s per try) did not hold recovery up.
    let ended: jiff::Timestamp = s["attempts"][0]["ended_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let resubmitted: jiff::Timestamp = s["attempts"][1]["submitted_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let gap = resubmitted.duration_since(ended).as_secs_f64();
    assert!(
        gap < 8.0,
        "attempt 2 submitted {gap:.1}s after attempt 1 ended"
    );
    shep.wait_status(&doomed, &["failed"], LONG);

    let expected_json = ["run_recovered", "run_completed", "run_failed"];
    poll(LONG, "every message delivered", || {
        let mut got = rx.kinds("/json");
        got.sort();
        let mut want = expected_json.to_vec();
        want.sort();
        let hook_lines = std::fs::read_to_string(&hook).unwrap_or_default();
        if got == want && rx.kinds("/slack").len() == 3 && hook_lines.lines().count() == 3 {
            Ok(())
        } else {
            Err(format!(
                "json {got:?}, slack {:?}, hook {hook_lines}",
                rx.kinds("/slack")
            ))
        }
    });
    // Within a run, order is kept.
    let json = rx.kinds("/json");
    let pos = |k: &str| json.iter().position(|j| j == k).unwrap();
    assert!(pos("run_recovered") < pos("run_completed"), "{json:?}");

    let got = rx.got.lock().unwrap().clone();
    let doc = |kind: &str| {
        got.iter()
            .find(|(p, v)| p == "/json" && v["kind"] == kind)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let recovered = doc("run_recovered");
    assert_eq!(recovered["schema_version"], 1);
    assert_eq!(recovered["run_id"], "flaky");
    assert_eq!(recovered["attempt"], 2);
    assert!(recovered["down_secs"].as_u64().is_some(), "{recovered}");
    assert!(
        recovered["details"][0]
            .as_str()
            .unwrap()
            .contains("attempt 1"),
        "{recovered}"
    );
    let failed = doc("run_failed");
    assert_eq!(failed["run_id"], "doomed");
    assert!(
        failed["summary"].as_str().unwrap().contains("max-retries"),
        "{failed}"
    );
    assert_eq!(failed["cluster"], "shepherd-test");
    let slack: Vec<String> = rx.kinds("/slack");
    assert!(
        slack
            .iter()
            .any(|t| t.starts_with("[shepherd] run flaky recovered")),
        "{slack:?}"
    );
    // The hook got the same documents on stdin.
    let hook_kinds: Vec<String> = std::fs::read_to_string(&hook)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(hook_kinds.len(), 3, "{hook_kinds:?}");
    // The hanging endpoint is retried and logged, not dropped silently.
    let log = std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap();
    assert!(log.contains("notify: hangs failed for"), "{log}");
    shep.assert_no_duplicates();
}
