//! Everything the CLI prints goes through here, so that JSON and human output
//! stay consistent and a closed pipe (`shepherd … | head`) ends quietly.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use serde::Serialize;
use serde_json::json;

use crate::ops::{Error, Kind};

/// Version of every JSON document the CLI prints. Bumped only on incompatible
/// changes; new fields may appear without a bump.
pub const SCHEMA_VERSION: u32 = 1;

/// Prints `value` as `{"schema_version": 1, "<key>": value}` in JSON mode, or
/// the human rendering otherwise.
pub fn emit<T: Serialize>(json: bool, key: &str, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        // Pretty for people at a terminal, compact (and faster) for programs.
        let body = if io::stdout().is_terminal() {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        };
        let key = serde_json::to_string(key).unwrap_or_default();
        print(&format!(
            "{{\"schema_version\":{SCHEMA_VERSION},{key}:{}}}\n",
            body.unwrap_or_default()
        ));
    } else {
        print(&terminal_safe(&human(value)));
    }
}

/// A JSON document of several top-level fields, in this order after
/// `schema_version` (for documents that grew a field beside their one key).
pub fn emit_fields(fields: &[(&str, serde_json::Value)]) {
    let pretty = io::stdout().is_terminal();
    let mut out = format!("{{\"schema_version\":{SCHEMA_VERSION}");
    for (k, v) in fields {
        let v = if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        };
        out.push_str(&format!(
            ",{}:{}",
            serde_json::to_string(k).unwrap_or_default(),
            v.unwrap_or_default()
        ));
    }
    out.push_str("}\n");
    print(&out);
}

/// [`emit`]'s JSON for a list of documents already serialized (compact,
/// by `serde_json::to_string`): the same bytes as `emit` would write for
/// them, without parsing them back. At a terminal, where `emit` is pretty,
/// they are parsed back (as `T`, which keeps the fields' order) and
/// pretty-printed.
pub fn emit_serialized<'a, T: Serialize + serde::de::DeserializeOwned>(
    key: &str,
    docs: impl Iterator<Item = &'a str>,
) {
    if io::stdout().is_terminal() {
        let values: Vec<T> = docs.filter_map(|d| serde_json::from_str(d).ok()).collect();
        return emit(true, key, &values, |_| String::new());
    }
    let key = serde_json::to_string(key).unwrap_or_default();
    let mut out = format!("{{\"schema_version\":{SCHEMA_VERSION},{key}:[");
    for (i, d) in docs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(d);
    }
    out.push_str("]}\n");
    print(&out);
}

/// Human output with every control character but newline and tab made
/// visible (`\x1b` becomes `^[`, `\r` `^M`), except the colour escapes this
/// module makes (`ESC [ digits m`). Ban reasons are shared between users,
/// run reasons quote Slurm and job output: none of them may move the cursor,
/// retitle the terminal or write its clipboard (OSC 52) when printed.
/// (`logs` prints the job's own output as it is: that is the user's.)
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    // Most output is printable ASCII and our colours: no copy then.
    let printable = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\n' || *b == b'\t';
    if !text.bytes().any(|b| !printable(&b)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        // Printable ASCII, the bulk of any table, in one copy.
        let plain = rest.bytes().take_while(printable).count();
        if plain > 0 {
            out.push_str(&rest[..plain]);
            rest = &rest[plain..];
            continue;
        }
        if c == '\x1b' {
            if let Some(sgr) = own_sgr(rest) {
                out.push_str(&rest[..sgr]);
                rest = &rest[sgr..];
                continue;
            }
        }
        match c {
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\x7f' => out.push_str("^?"),
            // C1 controls (U+0080–U+009F): some terminals obey them too;
            // bidirectional overrides reorder what the line seems to say.
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// The length of a colour escape as [`paint::paint`] writes it at the start
/// of `s` (`ESC [`, one of its codes, `m`), if there is one. Only those
/// codes: `ESC[8m` (conceal) in a stored string could hide what follows.
fn own_sgr(s: &str) -> Option<usize> {
    let body = s.strip_prefix("\x1b[")?;
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    let code = &body[..digits];
    let ours = [
        "0",
        paint::RED,
        paint::GREEN,
        paint::YELLOW,
        paint::BLUE,
        paint::DIM,
    ];
    (ours.contains(&code) && body.as_bytes().get(digits) == Some(&b'm')).then_some(2 + digits + 1)
}

/// Writes to stdout; a broken pipe exits 0 at once, like other Unix filters.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Renders an error: `error: …`, `caused by: …` lines and a hint, or a JSON
/// object on stdout in JSON mode. The JSON `kind` and the hint come from the
/// error's kind; a full or read-only disk names its own fix first.
pub fn error(json: bool, err: &Error) {
    if err.kind() == Kind::Reported {
        return;
    }
    let hint = io_hint(err).or(err.hint());
    if json {
        let doc = json!({
            "schema_version": SCHEMA_VERSION,
            "error": {
                "kind": err.kind().json_name(),
                "message": err.to_string(),
                "causes": causes(err),
                "hint": hint,
            }
        });
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
        return;
    }
    let mut text = format!("error: {err}\n");
    for cause in causes(err) {
        text.push_str(&format!("caused by: {cause}\n"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!("hint: {hint}\n"));
    }
    let _ = io::stderr().write_all(terminal_safe(&text).as_bytes());
}

/// The causes worth printing: one whose text the previous message already
/// includes ("cannot write X: Permission denied", then "Permission denied")
/// is left out.
fn causes(err: &Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut previous = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push(text.clone());
        }
        previous = text;
    }
    out
}

/// The state directory's filesystem refusing, whatever the operation was.
fn io_hint(err: &Error) -> Option<&'static str> {
    let io = err.chain().find_map(|c| c.downcast_ref::<io::Error>())?;
    match io.kind() {
        io::ErrorKind::PermissionDenied => Some(
            "Shepherd cannot write its state directory: fix its permissions, or use another with --state-dir or SHEPHERD_STATE_DIR",
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Some(
            "the filesystem of the state directory is full (or over quota): free space; nothing was half-written",
        ),
        io::ErrorKind::ReadOnlyFilesystem => Some(
            "the state directory is on a read-only filesystem: use another with --state-dir or SHEPHERD_STATE_DIR",
        ),
        _ => None,
    }
}

/// A plain text table with aligned columns. Cells may borrow (`list` over
/// 10,000 runs makes 80,000 of them; copying each was a third of its time).
pub struct Table<'a> {
    rows: Vec<Vec<Cow<'a, str>>>,
}

impl<'a> Table<'a> {
    pub fn new(header: &[&'a str]) -> Self {
        Table {
            rows: vec![header.iter().map(|s| Cow::Borrowed(*s)).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(Cow::Owned).collect());
    }

    /// A row of cells that may borrow.
    pub fn row_of(&mut self, cells: Vec<Cow<'a, str>>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| visible_width(s))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::with_capacity(self.rows.len() * (widths.iter().sum::<usize>() + 16));
        for row in &self.rows {
            let start = out.len();
            for (c, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if c + 1 < row.len() {
                    let mut pad = widths[c] - visible_width(cell) + 2;
                    const SPACES: &str = "                                ";
                    while pad > 0 {
                        let n = pad.min(SPACES.len());
                        out.push_str(&SPACES[..n]);
                        pad -= n;
                    }
                }
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
            out.push('\n');
        }
        out
    }
}

/// Width of a cell on screen: characters, not counting colour escapes.
fn visible_width(s: &str) -> usize {
    // Plain ASCII, most cells: one byte a column.
    if s.is_ascii() && !s.as_bytes().contains(&0x1b) {
        return s.len();
    }
    let mut width = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI … final byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

/// ANSI colours, only the basic eight (every terminal has them).
pub mod paint {
    use crate::view::{DocStatus, Word};
    pub const RED: &str = "31";
    pub const GREEN: &str = "32";
    pub const YELLOW: &str = "33";
    pub const BLUE: &str = "34";
    pub const DIM: &str = "2";

    /// `text` in `code` when `on`, plain otherwise.
    pub fn paint(on: bool, code: &str, text: &str) -> String {
        if on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A run status, coloured by what it asks of the user.
    pub fn status(on: bool, status: &Word<DocStatus>) -> String {
        use crate::policy::state::RunStatus as S;
        let code = match status.known() {
            Some(DocStatus::Run(S::Running | S::Completed)) => GREEN,
            Some(DocStatus::Run(S::Failed) | DocStatus::Error) => RED,
            Some(DocStatus::Run(
                S::Pending | S::Queued | S::Submitting | S::Stopping | S::Expiring,
            )) => YELLOW,
            Some(DocStatus::Run(S::Paused)) => BLUE,
            Some(DocStatus::Run(S::Stopped | S::Expired)) | None => DIM,
        };
        paint(on, code, status.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_cannot_drive_the_terminal() {
        let hostile = "ban\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[1;1H\r\x08\u{9b}31m\x7f";
        let safe = terminal_safe(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(safe, "ban^[]52;c;ZXZpbA==^G ^[[2J^[[1;1H^M^H\\u{9b}31m^?");
        // Not every SGR: conceal (8) would hide the rest; bidi overrides
        // would reorder it.
        assert_eq!(
            terminal_safe("a\x1b[8mhidden\u{202e}x"),
            "a^[[8mhidden\\u{202e}x"
        );
        // Our own colours, newlines and tabs pass.
        let ours = format!("{}\tx\n", paint::status(true, &"failed".into()));
        assert_eq!(terminal_safe(&ours), ours);
    }

    proptest::proptest! {
        #[test]
        fn no_control_character_but_ours_survives(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a\\[0-9m]*") {
            let safe = terminal_safe(&s);
            let mut rest = &*safe;
            while let Some(c) = rest.chars().next() {
                if c == '\x1b' {
                    let n = own_sgr(rest).expect("only our colour escapes keep ESC");
                    rest = &rest[n..];
                    continue;
                }
                proptest::prop_assert!(!c.is_control() || c == '\n' || c == '\t', "{:?}", safe);
                rest = &rest[c.len_utf8()..];
            }
        }
    }

    #[test]
    fn colour_escapes_do_not_break_alignment() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec![paint::status(true, &"running".into()), "x".into()]);
        t.row(vec!["failed-long".into(), "y".into()]);
        let text = t.render();
        let plain: String = {
            let mut out = String::new();
            let mut it = text.chars();
            while let Some(c) = it.next() {
                if c == '\x1b' {
                    for c in it.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        assert_eq!(plain, "A            B\nrunning      x\nfailed-long  y\n");
    }
}
