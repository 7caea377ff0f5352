//! The key map: which key does what, in one place, with the help text drawn
//! from the same table as `docs/tui.md`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Screen, Tab};

/// What a key asks for in normal mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Esc: out of fullscreen, the detail focus, the filter; never quits
    /// (an escape sequence split over a slow link starts with a bare Esc).
    Back,
    /// `g` typed; the next key completes it.
    PendingG,
    Up,
    Down,
    HalfPageUp,
    HalfPageDown,
    Top,
    Bottom,
    FocusDetail,
    FocusList,
    Screen(Screen),
    Tab(Tab),
    NextTab(isize),
    Help,
    Filter,
    Sort,
    Fullscreen,
    Restart,
    Stop,
    Pause,
    Ban,
    Unban,
    NewRun,
    Remove,
    /// Logs: follow the end on or off.
    Follow,
    /// Logs: search.
    Search,
    /// Logs: next (true) or previous match.
    SearchNext(bool),
    /// Logs: stdout or stderr.
    Stream,
    /// Logs: an earlier (-1) or later (+1) attempt.
    Attempt(isize),
    /// Nodes: smoke-test the selected node, or every usable one (true).
    Smoke(bool),
}

/// The key map, for the help screen: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("j k ↓ ↑ wheel", "move / scroll"),
    (
        "C-d C-u C-f C-b",
        "half a page down / up; gg G: first / last",
    ),
    (
        "Enter l, h Esc",
        "focus the detail pane / back (Esc: also the filter)",
    ),
    ("gr gn gp, F2-F4", "screens: runs, nodes, GPUs"),
    ("Tab S-Tab, 1-5", "tabs: info attempts events script logs"),
    ("f, ?", "fullscreen detail, this help"),
    ("/, o", "filter runs, sort (status, newest, name)"),
    ("r, p", "restart, pause / unpause the run"),
    ("s", "stop the run (asks first)"),
    ("b, u", "ban the node (asks first), unban (nodes)"),
    ("nodes: t, T", "smoke-test the node, every usable node"),
    ("n, x", "new run (asks for a script), remove an ended run"),
    ("logs: F, e", "follow the end on / off, stdout / stderr"),
    ("logs: [ ]", "previous / next attempt"),
    ("logs: / n N", "search, next / previous match"),
    ("q C-c", "quit (q first leaves fullscreen; Esc never quits)"),
];

/// The action for `key` in normal mode. `after_g`: the previous key was `g`.
pub fn action_for(key: KeyEvent, after_g: bool, screen: Screen, tab: Tab) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if after_g {
        return match key.code {
            KeyCode::Char('g') => Some(Action::Top),
            KeyCode::Char('r') => Some(Action::Screen(Screen::Runs)),
            KeyCode::Char('n') => Some(Action::Screen(Screen::Nodes)),
            KeyCode::Char('p') => Some(Action::Screen(Screen::Gpus)),
            _ => None,
        };
    }
    let logs = screen == Screen::Runs && tab == Tab::Logs;
    Some(match key.code {
        KeyCode::Char('d') if ctrl => Action::HalfPageDown,
        KeyCode::Char('u') if ctrl => Action::HalfPageUp,
        KeyCode::Char('f') if ctrl => Action::HalfPageDown,
        KeyCode::Char('b') if ctrl => Action::HalfPageUp,
        _ if ctrl => return None,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('g') => Action::PendingG,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Home => Action::Top,
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::PageDown => Action::HalfPageDown,
        KeyCode::PageUp => Action::HalfPageUp,
        KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => Action::FocusDetail,
        KeyCode::Char('h') | KeyCode::Left => Action::FocusList,
        KeyCode::F(2) => Action::Screen(Screen::Runs),
        KeyCode::F(3) => Action::Screen(Screen::Nodes),
        KeyCode::F(4) => Action::Screen(Screen::Gpus),
        KeyCode::Tab => Action::NextTab(1),
        KeyCode::BackTab => Action::NextTab(-1),
        KeyCode::Char(c @ '1'..='5') => Action::Tab(Tab::ALL[(c as u8 - b'1') as usize]),
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('/') if logs => Action::Search,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('o') => Action::Sort,
        KeyCode::Char('f') => Action::Fullscreen,
        KeyCode::Char('r') => Action::Restart,
        KeyCode::Char('s') => Action::Stop,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('b') => Action::Ban,
        KeyCode::Char('u') if screen == Screen::Nodes => Action::Unban,
        KeyCode::Char('t') if screen == Screen::Nodes => Action::Smoke(false),
        KeyCode::Char('T') if screen == Screen::Nodes => Action::Smoke(true),
        KeyCode::Char('n') if logs => Action::SearchNext(true),
        KeyCode::Char('N') if logs => Action::SearchNext(false),
        KeyCode::Char('n') => Action::NewRun,
        KeyCode::Char('x') => Action::Remove,
        KeyCode::Char('F') if logs => Action::Follow,
        KeyCode::Char('e') if logs => Action::Stream,
        KeyCode::Char('[') if logs => Action::Attempt(-1),
        KeyCode::Char(']') if logs => Action::Attempt(1),
        _ => return None,
    })
}
