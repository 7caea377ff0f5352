//! The terminal: raw mode and the alternate screen on the way in, and the
//! terminal as it was on every way out — normal return, error, panic, or
//! SIGTERM/SIGHUP/SIGINT.

use std::io::{Stdout, Write, stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;

use super::ansi::AnsiBackend;
use super::app::Msg;

pub type Term = Terminal<AnsiBackend<Stdout>>;

/// Puts the terminal back. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let mut out = stdout();
    let _ = out.write_all(MOUSE_OFF.as_bytes());
    let _ = execute!(out, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = out.flush();
}

/// Mouse reporting for buttons and the wheel only (`?1000`), in SGR form
/// (`?1006`): not every motion (`?1003`, what crossterm enables), which
/// floods a slow link with a report per cell the pointer crosses.
pub const MOUSE_ON: &str = "\x1b[?1000h\x1b[?1006h";
/// Turns off what [`MOUSE_ON`] turned on.
pub const MOUSE_OFF: &str = "\x1b[?1006l\x1b[?1000l";

/// Restores the terminal when dropped, whatever ends the TUI.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Enters the TUI's terminal mode. The returned guard restores it.
pub fn enter() -> anyhow::Result<(Term, Guard)> {
    install_panic_hook();
    enable_raw_mode()?;
    let guard = Guard;
    execute!(stdout(), EnterAlternateScreen)?;
    let mut out = stdout();
    out.write_all(MOUSE_ON.as_bytes())?;
    out.flush()?;
    let mut term = Terminal::new(AnsiBackend::new(stdout()))?;
    term.hide_cursor()?;
    term.clear()?;
    Ok((term, guard))
}

/// Set by the panic hook: the loop draws no more (a draw after the hook
/// restored the terminal would paint over the message).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Whether a thread panicked.
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

/// A panic restores the terminal before its message is printed, so the
/// message is readable and the shell usable. A panic on another thread (a
/// loader) ends the process too: a TUI that silently stopped refreshing, or
/// drew over a panic message, would be worse. Installed first thing, before
/// any thread starts.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ui = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            restore();
            previous(info);
            if std::thread::current().id() != ui {
                std::process::exit(101);
            }
        }));
    });
}

/// The first signal received (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

/// The signal that ended the TUI, if one did: it exits with 128 + its
/// number, as a shell reports a process killed by it.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// How long the UI has to end by itself after a signal.
const GRACE: Duration = Duration::from_secs(2);

/// Turns SIGTERM, SIGHUP and SIGINT into a quit message: the loop ends and
/// the guard restores the terminal. A UI that does not end within
/// [`GRACE`] (blocked writing to a terminal that stopped reading), or a
/// second signal, ends the process from here.
pub fn forward_signals(tx: Sender<Msg>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first = SIGNALLED
                    .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if first && tx.send(Msg::Quit).is_ok() {
                    let timer = std::thread::Builder::new().spawn(move || {
                        std::thread::sleep(GRACE);
                        force_exit(sig);
                    });
                    if timer.is_ok() {
                        continue;
                    }
                }
                // A second signal, or the UI is gone but the process is not.
                force_exit(signalled().unwrap_or(sig));
            }
        })?;
    Ok(())
}

/// Restores what can be restored without waiting on the terminal, and
/// exits with 128 + `sig`.
fn force_exit(sig: i32) -> ! {
    let _ = disable_raw_mode();
    // The rest is written to the terminal, which may be the very thing that
    // stalled (and the UI thread may hold stdout): try, briefly.
    let (done, wait) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new().spawn(move || {
        restore();
        let _ = done.send(());
    });
    if writer.is_ok() {
        let _ = wait.recv_timeout(Duration::from_millis(500));
    }
    std::process::exit(128 + sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tui_mouse_capture_is_buttons_and_wheel_only() {
        for mode in ["1002", "1003", "1015"] {
            assert!(!MOUSE_ON.contains(mode) && !MOUSE_OFF.contains(mode));
        }
        for mode in ["1000", "1006"] {
            assert!(MOUSE_ON.contains(&format!("?{mode}h")));
            assert!(MOUSE_OFF.contains(&format!("?{mode}l")));
        }
    }
}
