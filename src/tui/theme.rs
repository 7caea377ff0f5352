//! Colours: only the 8 basic ANSI colours (every terminal has them), or none
//! at all (`NO_COLOR`, `--color never`), where emphasis falls back to bold and
//! reverse video.

use ratatui::style::{Color, Modifier, Style};

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

    /// The status icon and its style.
    pub fn status(self, status: &str) -> (&'static str, Style) {
        match status {
            "running" => ("▶", self.good()),
            "pending" | "queued" | "submitting" => ("…", self.warn()),
            "paused" => ("‖", self.info()),
            "stopping" | "expiring" => ("■", self.accent()),
            "completed" => ("✓", self.good()),
            "failed" => ("✗", self.bad()),
            "error" => ("!", self.bad()),
            // stopped, expired
            _ => ("□", self.plain()),
        }
    }
}

/// The status icons, for the help screen and `docs/tui.md`.
pub const ICONS: &[(&str, &str)] = &[
    ("▶", "running"),
    ("…", "queued, submitting or pending in Slurm"),
    (
        "‖",
        "paused (the current job goes on; nothing new is submitted)",
    ),
    (
        "■",
        "stopping or expiring: waiting for Slurm to end the job",
    ),
    ("✓", "completed"),
    ("✗", "failed: retries exhausted or unrecoverable"),
    ("□", "stopped by you, or expired (indefinite runs)"),
    ("!", "unreadable: the run's files cannot be read"),
];
