//! The terminal: raw mode and the alternate screen on the way in, and the
//! terminal as it was on every way out — normal return, error, panic, or
//! SIGTERM/SIGHUP/SIGINT.

use std::io::{Stdout, Write, stdout};
use std::sync::Once;
use std::sync::mpsc::Sender;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
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
    let _ = execute!(
        out,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

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
    execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    let mut term = Terminal::new(AnsiBackend::new(stdout()))?;
    term.hide_cursor()?;
    term.clear()?;
    Ok((term, guard))
}

/// A panic restores the terminal before its message is printed, so the
/// message is readable and the shell usable. A panic on another thread (a
/// loader) ends the process too: a TUI that silently stopped refreshing, or
/// drew over a panic message, would be worse.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ui = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
            if std::thread::current().id() != ui {
                std::process::exit(101);
            }
        }));
    });
}

/// Turns SIGTERM, SIGHUP and SIGINT into a quit message: the loop ends and
/// the guard restores the terminal.
pub fn forward_signals(tx: Sender<Msg>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if tx.send(Msg::Quit).is_err() {
                // The UI is gone but the process is not: restore and go.
                restore();
                std::process::exit(1);
            }
        }
    });
    Ok(())
}
