//! Signals the wrapper reacts to, as flags plus a wake-up socket.
//!
//! The handlers (installed by signal-hook) only set an atomic flag and write
//! one byte to a socket; the wrapper's main loop blocks on that socket with a
//! timeout, then reads the flags and acts outside signal context. SIGCHLD
//! wakes the loop too, so a workload's exit is noticed at once.
//!
//! Tests drive the same flags and socket through [`Signals::raise`], without
//! touching the test process's real signal dispositions.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use signal_hook::SigId;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// What a signal asks of the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM, SIGINT or SIGHUP: stop the workload (grace, then SIGKILL).
    Terminate,
    /// SIGUSR1: the time limit is near; pass the warning on.
    Warn,
}

/// Which request a signal number maps to.
pub fn request_for(signal: i32) -> Option<Request> {
    match signal {
        SIGTERM | SIGINT | SIGHUP => Some(Request::Terminate),
        SIGUSR1 => Some(Request::Warn),
        _ => None,
    }
}

pub struct Signals {
    /// The number of the last terminating signal; 0 when none is pending.
    terminate: Arc<AtomicUsize>,
    warn: Arc<AtomicBool>,
    wake_rx: UnixStream,
    wake_tx: UnixStream,
    ids: Vec<SigId>,
}

impl Signals {
    /// Flags and wake-up socket, with SIGCHLD registered (so a child's exit
    /// wakes [`Signals::wait`]) but no handler for the stop/warn signals.
    pub fn new() -> std::io::Result<Signals> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        let mut signals = Signals {
            terminate: Arc::new(AtomicUsize::new(0)),
            warn: Arc::new(AtomicBool::new(false)),
            wake_rx,
            wake_tx,
            ids: Vec::new(),
        };
        signals.register_wake(SIGCHLD)?;
        Ok(signals)
    }

    /// [`Signals::new`] plus real handlers for SIGTERM, SIGINT, SIGHUP and
    /// SIGUSR1. From here on those signals no longer end the process.
    pub fn install() -> std::io::Result<Signals> {
        let mut signals = Signals::new()?;
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] {
            // The flag first, then the wake-up: the loop reads the socket
            // first, then the flags, so no signal is lost.
            let id = match request_for(sig) {
                Some(Request::Terminate) => signal_hook::flag::register_usize(
                    sig,
                    Arc::clone(&signals.terminate),
                    signal_number(sig),
                )?,
                _ => signal_hook::flag::register(sig, Arc::clone(&signals.warn))?,
            };
            signals.ids.push(id);
            signals.register_wake(sig)?;
        }
        Ok(signals)
    }

    fn register_wake(&mut self, sig: i32) -> std::io::Result<()> {
        let tx = self.wake_tx.try_clone()?;
        self.ids
            .push(signal_hook::low_level::pipe::register(sig, tx)?);
        Ok(())
    }

    /// Acts as if `signal` had arrived (tests, and the wrapper's own use).
    pub fn raise(&self, signal: i32) {
        match request_for(signal) {
            Some(Request::Terminate) => self
                .terminate
                .store(signal_number(signal), Ordering::SeqCst),
            Some(Request::Warn) => self.warn.store(true, Ordering::SeqCst),
            None => {}
        }
        let _ = (&self.wake_tx).write(&[0]);
    }

    /// Blocks until a signal (or a child's exit) wakes us, or `timeout`.
    /// Spurious wake-ups are allowed: callers re-check their state.
    pub fn wait(&self, timeout: Duration) {
        let timeout = timeout.max(Duration::from_millis(1));
        let mut rx = &self.wake_rx;
        if rx.set_read_timeout(Some(timeout)).is_err() {
            std::thread::sleep(timeout.min(Duration::from_millis(100)));
            return;
        }
        let mut buf = [0u8; 64];
        match rx.read(&mut buf) {
            Ok(_) => {
                // Drain whatever else queued up, without blocking.
                let _ = rx.set_nonblocking(true);
                while matches!(rx.read(&mut buf), Ok(n) if n > 0) {}
                let _ = rx.set_nonblocking(false);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }

    /// Takes the pending requests (each reported once).
    pub fn take(&self) -> Pending {
        let terminate = self.terminate.swap(0, Ordering::SeqCst);
        Pending {
            terminate: (terminate != 0).then(|| i32::try_from(terminate).unwrap_or(SIGTERM)),
            warn: self.warn.swap(false, Ordering::SeqCst),
        }
    }
}

fn signal_number(sig: i32) -> usize {
    usize::try_from(sig).unwrap_or(1)
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// A terminating signal arrived: its number.
    pub terminate: Option<i32>,
    /// The warning signal arrived.
    pub warn: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn maps_signals_to_requests() {
        assert_eq!(request_for(SIGTERM), Some(Request::Terminate));
        assert_eq!(request_for(SIGINT), Some(Request::Terminate));
        assert_eq!(request_for(SIGHUP), Some(Request::Terminate));
        assert_eq!(request_for(SIGUSR1), Some(Request::Warn));
        assert_eq!(request_for(SIGCHLD), None);
    }

    #[test]
    fn raise_wakes_and_is_taken_once() {
        let s = Signals::new().unwrap();
        assert_eq!(s.take(), Pending::default());
        // (No check that a wait without cause times out: other tests'
        // children exiting wake it, which the contract allows.)
        s.raise(SIGUSR1);
        let t = Instant::now();
        s.wait(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            s.take(),
            Pending {
                terminate: None,
                warn: true
            }
        );
        assert_eq!(s.take(), Pending::default());
        s.raise(SIGHUP);
        assert_eq!(s.take().terminate, Some(SIGHUP));
        assert_eq!(s.take().terminate, None);
    }

    #[test]
    fn a_child_exit_wakes_the_wait() {
        let s = Signals::new().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2"])
            .spawn()
            .unwrap();
        let t = Instant::now();
        // Other tests' children wake us too: loop until ours has exited.
        while child.try_wait().unwrap().is_none() {
            s.wait(Duration::from_secs(30));
            assert!(t.elapsed() < Duration::from_secs(10), "no wake-up");
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
