//! Heartbeats: the attempt's heartbeat file is written once when the wrapper
//! starts, then by a thread every interval and whenever the phase changes.
//!
//! A failed write is reported on stderr once (and once more when writes work
//! again) and retried at the next beat; it never stops the workload.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;

use crate::records::{Heartbeat, Phase, ProbeResult};
use crate::store::atomic;

/// The files whose sizes make `output_bytes` outside tests: the wrapper's own
/// stdout and stderr (Slurm's output files; the workload's stdout goes there
/// directly, its stderr through the wrapper).
pub const OUTPUT_FDS: [&str; 2] = ["/proc/self/fd/1", "/proc/self/fd/2"];

/// Heartbeats never come more often than this, whatever the policy says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

struct State {
    phase: Phase,
    /// Write now (the phase changed).
    kick: bool,
    stop: bool,
    /// Heartbeats attempted so far (written or not).
    attempts: u64,
    /// Probe results to carry from the next heartbeat on.
    probes: Option<Vec<ProbeResult>>,
    /// A restart in place to name from the next heartbeat on.
    in_place: Option<u32>,
}

pub struct Heartbeats {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeats {
    /// Writes the first heartbeat (with `base.phase`) before returning, then
    /// starts the thread. `base` supplies every field but `phase`, `time`,
    /// `seq` and `output_bytes`.
    pub fn start(
        path: PathBuf,
        base: Heartbeat,
        interval: Duration,
        output_paths: Vec<PathBuf>,
    ) -> std::io::Result<Heartbeats> {
        let shared = Arc::new((
            Mutex::new(State {
                phase: base.phase,
                kick: false,
                stop: false,
                attempts: 0,
                probes: None,
                in_place: None,
            }),
            Condvar::new(),
        ));
        let interval = interval.max(MIN_INTERVAL);
        let mut writer = Writer {
            path,
            hb: base,
            output_paths,
            interval,
            failing: false,
        };
        let phase = writer.hb.phase;
        writer.write(phase);
        lock_state(&shared.0).attempts = writer.hb.seq;
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .stack_size(256 * 1024)
            .spawn({
                let shared = Arc::clone(&shared);
                move || beat(&shared, writer)
            })?;
        Ok(Heartbeats {
            shared,
            thread: Some(thread),
        })
    }

    /// Changes the phase; the next heartbeat is written at once.
    pub fn set_phase(&self, phase: Phase) {
        let (lock, cvar) = &*self.shared;
        let mut state = lock_state(lock);
        if state.phase != phase {
            state.phase = phase;
            state.kick = true;
            cvar.notify_one();
        }
    }

    /// Changes the phase and records the probes' results in every heartbeat
    /// from now on; the next heartbeat is written at once.
    pub fn set_phase_with_probes(&self, phase: Phase, probes: Vec<ProbeResult>) {
        let (lock, cvar) = &*self.shared;
        let mut state = lock_state(lock);
        state.phase = phase;
        state.probes = Some(probes);
        state.kick = true;
        cvar.notify_one();
    }

    /// The workload is restarted in place for the `k`-th time: heartbeats
    /// name run `k`, in the probing phase until the workload runs again; the
    /// next heartbeat is written at once.
    pub fn restart_in_place(&self, k: u32) {
        let (lock, cvar) = &*self.shared;
        let mut state = lock_state(lock);
        state.phase = Phase::Probing;
        state.in_place = Some(k);
        state.kick = true;
        cvar.notify_one();
    }

    /// How many heartbeats were attempted so far, successful or not.
    #[cfg(test)]
    pub fn attempts(&self) -> u64 {
        lock_state(&self.shared.0).attempts
    }

    /// Stops the thread after the write in progress, if any. No heartbeat is
    /// written after this returns.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (lock, cvar) = &*self.shared;
        lock_state(lock).stop = true;
        cvar.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.halt();
    }
}

fn lock_state(lock: &Mutex<State>) -> MutexGuard<'_, State> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Writer {
    path: PathBuf,
    hb: Heartbeat,
    output_paths: Vec<PathBuf>,
    interval: Duration,
    /// The last write failed (and that was reported).
    failing: bool,
}

impl Writer {
    fn write(&mut self, phase: Phase) {
        let hb = &mut self.hb;
        hb.phase = phase;
        hb.seq += 1;
        hb.time = Timestamp::now();
        hb.output_bytes = output_bytes(&self.output_paths);
        match atomic::write_json(&self.path, hb) {
            Ok(()) if self.failing => {
                eprintln!(
                    "shepherd wrap: heartbeats are written again ({})",
                    self.path.display()
                );
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                eprintln!(
                    "shepherd wrap: {e}; the workload goes on, retrying every {}s",
                    self.interval.as_secs()
                );
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The thread: a heartbeat every interval, or at once when the phase changes.
fn beat(shared: &(Mutex<State>, Condvar), mut writer: Writer) {
    let (lock, cvar) = shared;
    loop {
        let (phase, probes, in_place) = {
            let state = lock_state(lock);
            let (mut state, _) = cvar
                .wait_timeout_while(state, writer.interval, |s| !s.stop && !s.kick)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.stop {
                return;
            }
            state.kick = false;
            (state.phase, state.probes.take(), state.in_place.take())
        };
        if let Some(probes) = probes {
            writer.hb.probes = probes;
        }
        if let Some(k) = in_place {
            writer.hb.in_place = k;
        }
        writer.write(phase);
        lock_state(lock).attempts = writer.hb.seq;
    }
}

/// The summed sizes of those of `paths` that are regular files, each file
/// counted once (stdout and stderr often are the same file). `None` when none
/// is a regular file (a terminal, a pipe).
pub fn output_bytes(paths: &[PathBuf]) -> Option<u64> {
    let mut seen = HashSet::new();
    let mut total = None;
    for p in paths {
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            *total.get_or_insert(0) += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunId;
    use crate::records::HEARTBEAT_VERSION;
    use crate::slurm::JobId;
    use std::path::Path;
    use std::time::Instant;

    fn base() -> Heartbeat {
        let now = Timestamp::now();
        Heartbeat {
            version: HEARTBEAT_VERSION,
            run_id: "hb".parse::<RunId>().unwrap(),
            attempt: 1,
            job_id: JobId(7),
            restarts: 0,
            node: "n1".into(),
            pid: std::process::id(),
            phase: Phase::Probing,
            started_at: now,
            time: now,
            seq: 0,
            output_bytes: None,
            probes: Vec::new(),
            in_place: 0,
        }
    }

    fn read(path: &Path) -> Option<Heartbeat> {
        atomic::read_json(path, HEARTBEAT_VERSION).ok()
    }

    fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn output_bytes_sums_regular_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "0123456789").unwrap();
        std::fs::write(&b, "01234").unwrap();
        assert_eq!(output_bytes(&[a.clone(), b.clone(), a.clone()]), Some(15));
        assert_eq!(output_bytes(&[dir.path().to_path_buf()]), None);
        assert_eq!(output_bytes(&[dir.path().join("missing")]), None);
        assert_eq!(output_bytes(&["/dev/null".into(), b]), Some(5));
    }

    #[test]
    fn writes_at_once_on_phase_change_and_not_after_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heartbeat-7-0.json");
        let out = dir.path().join("out");
        std::fs::write(&out, "abc").unwrap();
        // A long interval: every write below is caused by start or a phase change.
        let hb = Heartbeats::start(
            path.clone(),
            base(),
            Duration::from_secs(3600),
            vec![out.clone()],
        )
        .unwrap();
        let first = poll("first heartbeat", || read(&path));
        assert_eq!(first.seq, 1);
        assert_eq!(first.phase, Phase::Probing);
        assert_eq!(first.output_bytes, Some(3));
        assert_eq!(first.pid, std::process::id());

        hb.set_phase(Phase::Running);
        let second = poll("running heartbeat", || {
            read(&path).filter(|h| h.phase == Phase::Running)
        });
        assert_eq!(second.seq, 2);
        assert!(second.time >= first.time);
        hb.stop();
        let last = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!path.exists(), "heartbeat written after stop");
        assert_eq!(last.seq, 2);
    }

    #[test]
    fn a_failed_write_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("later");
        let path = sub.join("heartbeat-7-0.json");
        // MIN_INTERVAL applies: beats every second.
        let hb = Heartbeats::start(path.clone(), base(), Duration::ZERO, vec![]).unwrap();
        poll("a failed attempt", || (hb.attempts() >= 1).then_some(()));
        assert!(!path.exists());
        std::fs::create_dir(&sub).unwrap();
        let h = poll("heartbeat after the directory appeared", || read(&path));
        assert!(h.seq >= 2, "{h:?}");
        hb.stop();
    }
}
