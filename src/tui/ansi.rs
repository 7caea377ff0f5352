//! A terminal backend that writes colours as the 8 basic ANSI codes
//! (`SGR 30–37`, `40–47`). crossterm writes even those as 256-colour
//! sequences (`38;5;N`), which a terminal without 256 colours reads as
//! blink and underline; this backend draws with the oldest codes there are
//! and leaves everything else (cursor, size, clearing) to crossterm.
//!
//! Why not ratatui's own `CrosstermBackend`: it writes colours through
//! crossterm, and so as `38;5;N`, which is what this backend exists to
//! avoid; everything else it would do, this one delegates to crossterm too.

use std::fmt::Write as _;
use std::io::{self, Write};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::execute;
use crossterm::terminal::{Clear, ClearType as CClear};
use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::style::{Color, Modifier};

pub struct AnsiBackend<W: Write> {
    out: W,
}

impl<W: Write> AnsiBackend<W> {
    pub fn new(out: W) -> Self {
        AnsiBackend { out }
    }
}

/// The basic colour's number (0–7), bright variants folded onto theirs.
fn basic(c: Color) -> Option<u8> {
    Some(match c {
        Color::Black | Color::DarkGray => 0,
        Color::Red | Color::LightRed => 1,
        Color::Green | Color::LightGreen => 2,
        Color::Yellow | Color::LightYellow => 3,
        Color::Blue | Color::LightBlue => 4,
        Color::Magenta | Color::LightMagenta => 5,
        Color::Cyan | Color::LightCyan => 6,
        Color::Gray | Color::White => 7,
        Color::Reset | Color::Rgb(..) | Color::Indexed(_) => return None,
    })
}

/// The full SGR sequence for a cell's style, from a reset.
pub fn sgr(fg: Color, bg: Color, m: Modifier) -> String {
    let mut s = String::from("\x1b[0");
    for (flag, code) in [
        (Modifier::BOLD, "1"),
        (Modifier::DIM, "2"),
        (Modifier::ITALIC, "3"),
        (Modifier::UNDERLINED, "4"),
        (Modifier::REVERSED, "7"),
        (Modifier::CROSSED_OUT, "9"),
    ] {
        if m.contains(flag) {
            s.push(';');
            s.push_str(code);
        }
    }
    if let Some(n) = basic(fg) {
        let _ = write!(s, ";3{n}");
    }
    if let Some(n) = basic(bg) {
        let _ = write!(s, ";4{n}");
    }
    s.push('m');
    s
}

impl<W: Write> Backend for AnsiBackend<W> {
    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut style = (Color::Reset, Color::Reset, Modifier::empty());
        let mut last: Option<(u16, u16)> = None;
        let mut out = String::new();
        out.push_str("\x1b[0m");
        for (x, y, cell) in content {
            if !matches!(last, Some((lx, ly)) if x == lx + 1 && y == ly) {
                let _ = write!(out, "\x1b[{};{}H", y + 1, x + 1);
            }
            last = Some((x, y));
            let s = (cell.fg, cell.bg, cell.modifier);
            if s != style {
                out.push_str(&sgr(s.0, s.1, s.2));
                style = s;
            }
            // Loaders clean what they read; this is the last line of
            // defence: no control byte from a cell ever reaches the terminal.
            let sym = cell.symbol();
            if sym.chars().any(char::is_control) {
                out.push(' ');
            } else {
                out.push_str(sym);
            }
        }
        out.push_str("\x1b[0m");
        self.out.write_all(out.as_bytes())
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        execute!(self.out, Hide)
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        execute!(self.out, Show)
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        let (x, y) = crossterm::cursor::position()?;
        Ok(Position { x, y })
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let Position { x, y } = position.into();
        execute!(self.out, MoveTo(x, y))
    }

    fn clear(&mut self) -> io::Result<()> {
        self.clear_region(ClearType::All)
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        let t = match clear_type {
            ClearType::All => CClear::All,
            ClearType::AfterCursor => CClear::FromCursorDown,
            ClearType::BeforeCursor => CClear::FromCursorUp,
            ClearType::CurrentLine => CClear::CurrentLine,
            ClearType::UntilNewLine => CClear::UntilNewLine,
        };
        execute!(self.out, Clear(t))
    }

    fn size(&self) -> io::Result<Size> {
        let (width, height) = crossterm::terminal::size()?;
        Ok(Size { width, height })
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        let w = crossterm::terminal::window_size()?;
        Ok(WindowSize {
            columns_rows: Size {
                width: w.columns,
                height: w.rows,
            },
            pixels: Size {
                width: w.width,
                height: w.height,
            },
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::style::Style;
    use ratatui::text::Span;

    #[test]
    fn tui_writes_only_basic_sgr_codes() {
        assert_eq!(
            sgr(Color::White, Color::Red, Modifier::BOLD),
            "\x1b[0;1;37;41m"
        );
        assert_eq!(
            sgr(Color::Reset, Color::Reset, Modifier::REVERSED),
            "\x1b[0;7m"
        );
        let mut t = Terminal::new(AnsiBackend::new(Vec::new())).unwrap_or_else(|_| {
            // No terminal to ask the size of: draw into a fixed viewport.
            Terminal::with_options(
                AnsiBackend::new(Vec::new()),
                ratatui::TerminalOptions {
                    viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 10, 1)),
                },
            )
            .unwrap()
        });
        t.draw(|f| {
            f.render_widget(
                Span::styled("ok", Style::new().fg(Color::Green)),
                ratatui::layout::Rect::new(0, 0, 2, 1),
            )
        })
        .unwrap();
        let out = String::from_utf8_lossy(&t.backend().out).into_owned();
        assert!(out.contains("\x1b[0;32mok"), "{out:?}");
        assert!(!out.contains("38;5"), "{out:?}");
    }

    #[test]
    fn tui_backend_never_writes_control_bytes_from_cells() {
        let mut t = Terminal::with_options(
            AnsiBackend::new(Vec::new()),
            ratatui::TerminalOptions {
                viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 8, 1)),
            },
        )
        .unwrap();
        t.draw(|f| {
            let b = f.buffer_mut();
            for (x, sym) in [
                "\x1b",
                "\r",
                "\t",
                "\x07",
                "\x1b]52;c;aGk=\x07",
                "\u{9b}",
                "a",
                "é",
            ]
            .into_iter()
            .enumerate()
            {
                b[(x as u16, 0)].set_symbol(sym);
            }
        })
        .unwrap();
        let out = String::from_utf8(t.backend().out.clone()).unwrap();
        // Take away the backend's own sequences (cursor moves, SGR): what
        // is left is cell content, and holds no control character.
        let mut rest = String::new();
        let mut it = out.chars();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                assert_eq!(it.next(), Some('['), "{out:?}");
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                rest.push(c);
            }
        }
        assert!(!rest.chars().any(char::is_control), "{rest:?}");
        assert!(rest.ends_with("aé"), "{rest:?}");
    }
}
