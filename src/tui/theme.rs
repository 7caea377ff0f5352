//! Colours: only the 8 basic ANSI colours (every terminal has them), or none
//! at all (`NO_COLOR`, `--color never`), where emphasis falls back to bold and
//! reverse video.

use ratatui::style::{Color, Modifier, Style};

use crate::policy::state::RunStatus;
use crate::view::{DocStatus, Word};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn plain(self) -> Style {
        Style::new()
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::Blue)
        } else {
            Style::new()
        }
    }

    pub fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bad(self) -> Style {
        self.fg(Color::Red)
    }

    pub fn info(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn accent(self) -> Style {
        self.fg(Color::Magenta)
    }

    /// The selected row.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Table headers.
    pub fn header(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// A banner about something wrong (Slurm unreachable).
    pub fn banner(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// A search match.
    pub fn hit(self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// The status icon and its style; a status from a newer Shepherd is
    /// drawn plainly.
    pub fn status(self, status: &Word<DocStatus>) -> (&'static str, Style) {
        match status.known() {
            Some(s) => self.known_status(s),
            None => ("?", self.plain()),
        }
    }

    pub fn known_status(self, status: DocStatus) -> (&'static str, Style) {
        use RunStatus as S;
        let DocStatus::Run(status) = status else {
            return ("!", self.bad());
        };
        match status {
            S::Running => ("▶", self.good()),
            S::Pending | S::Queued | S::Submitting => ("…", self.warn()),
            S::Paused => ("‖", self.info()),
            S::Stopping | S::Expiring => ("■", self.accent()),
            S::Completed => ("✓", self.good()),
            S::Failed => ("✗", self.bad()),
            S::Stopped | S::Expired => ("□", self.plain()),
        }
    }
}

/// The status icons for the help screen (and `docs/tui.md`): one status
/// of each kind, drawn with [`Theme::known_status`], so icon and colour
/// cannot drift from the list.
pub const ICONS: &[(DocStatus, &str)] = {
    use RunStatus as S;
    &[
        (DocStatus::Run(S::Running), "running"),
        (
            DocStatus::Run(S::Pending),
            "queued, submitting or pending in Slurm",
        ),
        (
            DocStatus::Run(S::Paused),
            "paused (the current job goes on; nothing new is submitted)",
        ),
        (
            DocStatus::Run(S::Stopping),
            "stopping or expiring: waiting for Slurm to end the job",
        ),
        (DocStatus::Run(S::Completed), "completed"),
        (
            DocStatus::Run(S::Failed),
            "failed: retries exhausted or unrecoverable",
        ),
        (
            DocStatus::Run(S::Stopped),
            "stopped by you, or expired (indefinite runs)",
        ),
        (
            DocStatus::Error,
            "unreadable: the run's files cannot be read",
        ),
    ]
};
