//! Driving the real `shepherd` binary (CLI, daemon, wrapper) against a test
//! cluster, and watching Slurm for duplicate jobs while it works.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{TestCluster, poll};

pub struct Shepherd<'a> {
    pub cluster: &'a TestCluster,
    pub state: PathBuf,
    pub work: PathBuf,
    monitor: Option<Monitor>,
}

impl<'a> Shepherd<'a> {
    pub fn new(cluster: &'a TestCluster) -> Shepherd<'a> {
        let state = cluster.dir().join("shep");
        let work = cluster.workdir();
        let monitor = Monitor::start(cluster.conf());
        Shepherd {
            cluster,
            state,
            work,
            monitor: Some(monitor),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shepherd"));
        let path = format!(
            "{}:{}",
            self.cluster.dir().join("gpu-bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("SLURM_CONF", self.cluster.conf())
            .env("SHEPHERD_STATE_DIR", &self.state)
            .env("SHEPHERD_POLL_INTERVAL", "1s")
            .env("SHEPHERD_SLURM_TIMEOUT", "10s")
            .env("PATH", path)
            .current_dir(&self.work);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run shepherd")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "shepherd {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a script into the work directory and submits it.
    pub fn submit(&self, name: &str, body: &str, args: &[&str]) -> String {
        let path = self.work.join(name);
        std::fs::write(&path, body).unwrap();
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(args);
        self.ok(&all);
        Path::new(name)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn status(&self, run: &str) -> Value {
        let out = self.ok(&["status", run, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["run"].clone()
    }

    /// Waits until the run's status is one of `want`.
    pub fn wait_status(&self, run: &str, want: &[&str], timeout: Duration) -> Value {
        self.wait_until(run, &format!("{want:?}"), timeout, |s| {
            want.contains(&s["status"].as_str().unwrap_or(""))
        })
    }

    /// Waits until the run's `status --json` document satisfies `done`.
    pub fn wait_until(
        &self,
        run: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        poll(timeout, &format!("run {run} to become {what}"), || {
            let s = self.status(run);
            if done(&s) {
                Ok(s)
            } else {
                Err(format!(
                    "{} ({}); attempts: {}",
                    s["status"], s["reason"], s["attempts"]
                ))
            }
        })
    }

    /// Fails if Slurm ever held two live jobs for one run.
    pub fn assert_no_duplicates(&mut self) {
        if let Some(m) = self.monitor.take() {
            m.finish();
        }
    }
}

impl Drop for Shepherd<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["daemon", "stop"]);
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.state.join("daemon/daemon.log")).unwrap_or_default();
            eprintln!("daemon log:\n{log}");
        }
        if let Some(m) = self.monitor.take()
            && !std::thread::panicking()
        {
            m.finish();
        }
    }
}

pub fn outcomes(status: &Value) -> Vec<String> {
    status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Samples `squeue` for Shepherd's jobs and records any moment at which one
/// run had two live jobs.
struct Monitor {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(conf: PathBuf) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&violations));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = Command::new("squeue")
                    .env("SLURM_CONF", &conf)
                    .args(["-h", "-o", "%i %j %T"])
                    .output();
                if let Ok(out) = out {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let mut live: std::collections::HashMap<String, Vec<String>> =
                        Default::default();
                    for line in text.lines() {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        if let [id, name, state] = f.as_slice()
                            && let Some(rest) = name.strip_prefix("shepherd.")
                            && !matches!(*state, "COMPLETED" | "FAILED" | "CANCELLED")
                        {
                            let run = rest.rsplit_once('.').map_or(rest, |(r, _)| r);
                            live.entry(run.to_string())
                                .or_default()
                                .push(format!("{id}:{state}"));
                        }
                    }
                    for (run, jobs) in live {
                        // A job being requeued may show COMPLETING next to nothing
                        // else; two distinct ids alive at once is the violation.
                        if jobs.len() > 1 {
                            v.lock().unwrap().push(format!("run {run}: {jobs:?}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Monitor {
            stop,
            violations,
            handle,
        }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "Slurm had two live jobs for one run: {v:?}");
    }
}
