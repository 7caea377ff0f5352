//! Text from jobs and Slurm made safe for the terminal: logs, scripts,
//! journal messages and reasons can hold colour codes (tqdm, rich), carriage
//! returns, tabs, or escape sequences that would move the cursor, set the
//! clipboard (OSC 52) or retitle the window. The loaders clean every such
//! string before it reaches the UI thread; the backend has a last check of
//! its own (`ansi.rs`).
//!
//! Why not `ansi-to-tui`: it turns colour codes into styled text and keeps
//! them; here every sequence is dropped, since a job's colours mean nothing
//! in the TUI's own colour scheme and each kept sequence is one more way for
//! a job's output to reach the user's terminal. A stripper is what this
//! needs, and it has no such crate to lean on that also handles `\r` and tabs
//! as a terminal would.

/// Longest line kept, in bytes: a longer one is cut and ends in `…`.
pub const LINE_MAX: usize = 4 * 1024;

/// Columns between tab stops.
const TAB: usize = 8;

/// One line as the terminal should see it: escape sequences (CSI, OSC, DCS
/// and the other string sequences, two-byte escapes) removed, only what
/// follows the last carriage return kept (what a terminal would show of a
/// progress bar), tabs expanded to spaces, any other control character
/// replaced by `�`, and at most [`LINE_MAX`] bytes.
pub fn line(s: &str) -> String {
    let s = s.trim_end_matches('\r');
    let s = match s.rfind('\r') {
        Some(i) => &s[i + 1..],
        None => s,
    };
    // What can be kept once escapes are gone: a huge line costs no more
    // than a short one.
    let mut end = s.len().min(8 * LINE_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let precut = end < s.len();
    let s = strip_escapes(&s[..end]);
    let mut out = String::with_capacity(s.len().min(LINE_MAX + 4));
    let mut col = 0;
    for c in s.chars() {
        if out.len() >= LINE_MAX {
            cut(&mut out);
            return out;
        }
        match c {
            '\t' => {
                let n = TAB - col % TAB;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            c if c.is_control() => {
                out.push('\u{fffd}');
                col += 1;
            }
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    if out.len() > LINE_MAX || precut {
        cut(&mut out);
    }
    out
}

/// Text of several lines (a script, an error): each line cleaned, joined by
/// `\n`.
pub fn text(s: &str) -> String {
    s.split('\n').map(line).collect::<Vec<_>>().join("\n")
}

/// Cleans an optional string in place.
/// A word from a newer Shepherd is free text too.
pub fn word<T>(w: &mut crate::view::Word<T>) {
    if let crate::view::Word::Unknown(s) = w {
        *s = line(s);
    }
}

pub fn opt_word<T>(w: &mut Option<crate::view::Word<T>>) {
    if let Some(w) = w {
        word(w);
    }
}

pub fn opt(s: &mut Option<String>) {
    if let Some(v) = s {
        *v = line(v);
    }
}

/// Cuts `out` to at most [`LINE_MAX`] bytes (on a character boundary) and
/// marks the cut.
fn cut(out: &mut String) {
    let mut end = LINE_MAX.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.push('…');
}

/// Whether `s` holds anything [`line`] would change (other than length).
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `s` without terminal escape sequences. An unterminated sequence at the
/// end is dropped too.
fn strip_escapes(s: &str) -> std::borrow::Cow<'_, str> {
    if !has_control(s) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                // CSI: parameters and intermediates, then a final byte.
                Some('[') => skip_csi(&mut it),
                // String sequences: OSC, DCS, SOS, PM, APC, up to BEL or ST.
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut it),
                // nF sequences (`ESC ( B`): intermediates then a final byte.
                Some(c) if ('\x20'..='\x2f').contains(&c) => {
                    while it.next_if(|c| ('\x20'..='\x2f').contains(c)).is_some() {}
                    it.next();
                }
                // Two-byte escapes (`ESC 7`, `ESC M`, …).
                Some(_) | None => {}
            },
            '\u{9b}' => skip_csi(&mut it),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut it),
            c => out.push(c),
        }
    }
    out.into()
}

fn skip_csi(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in it.by_ref() {
        if ('\x40'..='\x7e').contains(&c) {
            return;
        }
        if !('\x20'..='\x3f').contains(&c) {
            // Not a CSI after all: stop without eating more.
            return;
        }
    }
}

fn skip_string(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = it.next() {
        match c {
            '\x07' | '\u{9c}' => return,
            '\x1b' if it.peek() == Some(&'\\') => {
                it.next();
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tui_clean_strips_escapes_and_keeps_the_last_progress_state() {
        assert_eq!(line("\x1b[1;32mok\x1b[0m done"), "ok done");
        assert_eq!(line(" 10%|█  \r 50%|██ \r100%|███\r"), "100%|███");
        assert_eq!(line("a\tb"), "a       b");
        assert_eq!(line("abcdefgh\tx"), "abcdefgh        x");
        assert_eq!(line("clip\x1b]52;c;aGk=\x07board"), "clipboard");
        assert_eq!(line("title\x1b]0;pwned\x1b\\ end"), "title end");
        assert_eq!(
            line("bell\x07 and \x08back"),
            "bell\u{fffd} and \u{fffd}back"
        );
        assert_eq!(line("\x1b(Bcharset\x1b7"), "charset");
        assert_eq!(line("c1 \u{9b}31mred"), "c1 red");
        assert_eq!(line("crlf\r"), "crlf");
        assert_eq!(line("cut \x1b["), "cut ");
        let long = line(&"é".repeat(5000));
        assert!(long.len() <= LINE_MAX + '…'.len_utf8());
        assert!(long.ends_with('…'));
        assert_eq!(text("a\x1b[2J\nb\tc"), "a\nb       c");
        let colours = format!("{}x", "\x1b[31m".repeat(10_000));
        assert_eq!(line(&colours), "…");
        for s in ["\x1b[31m\r\t\x00\x7f\u{85}x", &"\x1b]".repeat(100)] {
            assert!(!line(s).chars().any(char::is_control), "{s:?}");
        }
    }
}
