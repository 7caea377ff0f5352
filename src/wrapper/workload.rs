//! The workload: started in its own process group, its stderr copied through
//! the wrapper (with a bounded tail kept for the outcome), signals passed on
//! to its whole group, and its end awaited.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use super::signals::Signals;

/// Bytes of the workload's stderr kept for the outcome.
pub const TAIL_BYTES: usize = 64 * 1024;
/// Lines of it that go into the outcome's `stderr_tail`.
pub const TAIL_LINES: usize = 50;

/// How long to wait, after the workload exited, for its stderr to reach
/// end-of-file: a background process it left behind may hold the pipe open.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// How often the supervision loop looks at the workload when no signal or
/// child exit woke it (a safety net; SIGCHLD normally wakes it at once).
const TICK: Duration = Duration::from_secs(1);

/// The last [`TAIL_BYTES`] bytes of a stream.
#[derive(Debug)]
pub struct Tail {
    buf: VecDeque<u8>,
    truncated: bool,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            buf: VecDeque::with_capacity(TAIL_BYTES),
            truncated: false,
        }
    }
}

impl Tail {
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > TAIL_BYTES {
            self.truncated = true;
            self.buf.clear();
            &bytes[bytes.len() - TAIL_BYTES..]
        } else {
            bytes
        };
        let excess = (self.buf.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        if excess > 0 {
            self.truncated = true;
            self.buf.drain(..excess);
        }
        self.buf.extend(bytes);
    }

    /// The last `max_lines` lines, as text (invalid UTF-8 replaced). A line
    /// cut by the byte bound is dropped.
    pub fn text(&self, max_lines: usize) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let mut text: &[u8] = &bytes;
        if self.truncated
            && let Some(nl) = text.iter().position(|&c| c == b'\n')
        {
            text = &text[nl + 1..];
        }
        let text = String::from_utf8_lossy(text);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let lines: Vec<&str> = text.split('\n').collect();
        let start = lines.len().saturating_sub(max_lines);
        lines[start..].join("\n")
    }
}

/// A started workload.
pub struct Workload {
    child: Child,
    tail: Arc<Mutex<Tail>>,
    /// Says when the stderr copy reached end-of-file.
    pump_done: mpsc::Receiver<()>,
}

/// Starts `program` in its own process group with `env` added, stdin from
/// `/dev/null`, stdout inherited and stderr copied to `stderr_copy` as it
/// arrives.
pub fn spawn(
    program: &Path,
    env: &[(&str, OsString)],
    stderr_copy: Box<dyn Write + Send>,
) -> std::io::Result<Workload> {
    let mut cmd = Command::new(program);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn_retrying(&mut cmd)?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = Arc::new(Mutex::new(Tail::default()));
    let (done_tx, pump_done) = mpsc::channel();
    let pump = std::thread::Builder::new()
        .name("stderr".into())
        .stack_size(128 * 1024)
        .spawn({
            let tail = Arc::clone(&tail);
            move || {
                pump_stderr(stderr, stderr_copy, &tail);
                let _ = done_tx.send(());
            }
        });
    if let Err(e) = pump {
        // Without the copy the workload would block on a full pipe.
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Workload {
        child,
        tail,
        pump_done,
    })
}

/// `ETXTBSY` happens when another thread forked while the script was open for
/// writing (its snapshot was just written, or a test wrote it): retry briefly.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut delay = Duration::from_millis(10);
    for _ in 0..6 {
        match cmd.spawn() {
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

fn pump_stderr(mut from: ChildStderr, mut to: Box<dyn Write + Send>, tail: &Mutex<Tail>) {
    let mut buf = [0u8; 8192];
    let mut copy_ok = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        // A failing copy (stderr closed) must not stop the draining: the
        // workload would block on a full pipe.
        if copy_ok && to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
            copy_ok = false;
        }
        tail.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(&buf[..n]);
    }
}

/// What happened while the workload ran.
#[derive(Debug, Clone)]
pub struct Ended {
    pub status: ExitStatus,
    /// The terminating signal the wrapper received, if any.
    pub terminated_by: Option<i32>,
    pub warned: bool,
    /// The last [`TAIL_LINES`] lines of its stderr.
    pub stderr_tail: String,
    /// Processes of the workload's group outlived it (background ranks, a
    /// stuck child). Checked right after the leader was reaped: while any
    /// member lives, the kernel does not hand the group's id to another
    /// process.
    pub leftovers: bool,
}

/// What the supervision loop tells its caller as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A terminating signal was passed on; SIGKILL follows after the grace.
    Terminating,
    /// The warning signal was passed on.
    Warned,
}

impl Workload {
    /// Waits for the workload to end, passing signals on to its process
    /// group: a terminating signal as SIGTERM (then SIGKILL after `grace`),
    /// the warning as SIGUSR1. `warned` says the warning came before the
    /// workload started (it is then not passed on).
    pub fn supervise(
        mut self,
        signals: &Signals,
        grace: Duration,
        warned: bool,
        mut on_event: impl FnMut(Event),
    ) -> std::io::Result<Ended> {
        let mut terminated_by = None;
        let mut warned = warned;
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        let status = loop {
            // The group is signalled only before the workload is reaped: until
            // then its id cannot be reused, even if the workload has exited.
            let pending = signals.take();
            if let Some(sig) = pending.terminate
                && terminated_by.is_none()
            {
                terminated_by = Some(sig);
                eprintln!(
                    "shepherd wrap: got {}; sending SIGTERM to the workload, SIGKILL in {}s",
                    signal_name(sig),
                    grace.as_secs_f32()
                );
                self.signal_group(Signal::TERM);
                kill_at = Some(Instant::now() + grace);
                on_event(Event::Terminating);
            }
            if pending.warn {
                warned = true;
                eprintln!(
                    "shepherd wrap: got SIGUSR1 (time limit near); passing it on to the workload"
                );
                self.signal_group(Signal::USR1);
                on_event(Event::Warned);
            }
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            let now = Instant::now();
            if let Some(at) = kill_at
                && !killed
                && now >= at
            {
                eprintln!("shepherd wrap: the workload outlived its grace period; sending SIGKILL");
                self.signal_group(Signal::KILL);
                killed = true;
            }
            let timeout = match kill_at {
                Some(at) if !killed => TICK.min(at.saturating_duration_since(now)),
                _ => TICK,
            };
            signals.wait(timeout);
        };
        // Let the stderr copy finish, unless something left behind holds the
        // pipe open.
        let _ = self.pump_done.recv_timeout(PIPE_DRAIN);
        let stderr_tail = self
            .tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .text(TAIL_LINES);
        let leftovers = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            // Anything but "no such group" (EPERM: a member we may not
            // signal) counts as a leftover: restarting is what needs evidence.
            .is_some_and(|pid| {
                rustix::process::test_kill_process_group(pid) != Err(rustix::io::Errno::SRCH)
            });
        Ok(Ended {
            status,
            terminated_by,
            warned,
            stderr_tail,
            leftovers,
        })
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            // ESRCH: the group is gone already; nothing to do.
            let _ = kill_process_group(pid, signal);
        }
    }
}

/// The wrapper's exit code for a workload's exit status: its code, or
/// 128 + the signal that killed it.
pub fn exit_code(status: &ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => super::EXIT_INTERNAL,
    }
}

/// `SIGTERM` for 15, for messages.
pub fn signal_name(sig: i32) -> String {
    use signal_hook::consts::*;
    let name = match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        SIGKILL => "SIGKILL",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 1..=60 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text(TAIL_LINES);
        let lines: Vec<&str> = text.lines().collect();
        let want: Vec<String> = (11..=60).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, want);
        assert_eq!(Tail::default().text(5), "");
        let mut t = Tail::default();
        t.push(b"no newline at the end");
        assert_eq!(t.text(5), "no newline at the end");
    }

    #[test]
    fn tail_is_bounded_and_drops_the_cut_line() {
        let mut t = Tail::default();
        t.push(&vec![b'x'; 1000]);
        t.push(b"\n");
        for _ in 0..100 {
            t.push(&vec![b'y'; 1023]);
            t.push(b"\n");
        }
        assert_eq!(t.buf.len(), TAIL_BYTES);
        t.push(b"last\n");
        let text = t.text(1000);
        assert!(!text.contains('x'));
        assert!(
            text.lines().all(|l| l == "last" || l.len() == 1023),
            "a cut line was kept"
        );
        assert!(text.ends_with("last"));
        // One huge write.
        let mut t = Tail::default();
        t.push(&vec![b'z'; 3 * TAIL_BYTES]);
        assert_eq!(t.buf.len(), TAIL_BYTES);
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let st = |raw| ExitStatus::from_raw(raw);
        assert_eq!(exit_code(&st(0)), 0);
        assert_eq!(exit_code(&st(3 << 8)), 3);
        assert_eq!(exit_code(&st(9)), 137);
        assert_eq!(exit_code(&st(15)), 143);
    }
}
