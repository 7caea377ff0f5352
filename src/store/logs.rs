//! Where an attempt's output went, and reading its end without reading it all.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::model::RunSpec;
use crate::options::directives::sbatch_files;
use crate::policy::decide::job_name;
use crate::slurm::JobId;
use crate::store::RunDir;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a Slurm filename pattern needs to be expanded.
pub struct PatternContext<'a> {
    pub job: JobId,
    pub job_name: &'a str,
    pub node: Option<&'a str>,
    pub user: &'a str,
}

/// Expands Slurm's filename pattern (`%j`, `%x`, `%N`, `%u`, `%A`, `%a`,
/// `%%`, with optional zero-padding width like `%5j`), as sbatch does for
/// `--output` and `--error`.
pub fn expand_pattern(pattern: &str, cx: &PatternContext<'_>) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        let width: usize = width.parse().unwrap_or(0);
        let pad = |v: String| format!("{v:0>width$}");
        match chars.next() {
            Some('%') => out.push('%'),
            Some('j' | 'A' | 'J') => out.push_str(&pad(cx.job.to_string())),
            // Not an array job: Slurm prints its "no value" 4294967294.
            Some('a') => out.push_str(&pad("4294967294".to_string())),
            Some('x') => out.push_str(cx.job_name),
            Some('N') => out.push_str(cx.node.unwrap_or("")),
            Some('n' | 't') => out.push_str(&pad("0".to_string())),
            Some('s') => out.push_str("batch"),
            Some('u') => out.push_str(cx.user),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The file holding `stream` of the given attempt's job.
pub fn attempt_file(
    spec: &RunSpec,
    run: &RunDir,
    attempt: u32,
    job: JobId,
    node: Option<&str>,
    stream: Stream,
) -> PathBuf {
    let files = sbatch_files(&spec.sbatch_lines);
    let dir = run.attempt(attempt);
    let user_pattern = match stream {
        Stream::Stdout => files.output,
        // Without --error, Slurm writes stderr where stdout goes; Shepherd
        // always sets --error unless the script does.
        Stream::Stderr => files.error,
    };
    let Some(pattern) = user_pattern else {
        let name = match stream {
            Stream::Stdout => format!("slurm-{job}.out"),
            Stream::Stderr => format!("slurm-{job}.err"),
        };
        return dir.path().join(name);
    };
    let user = std::env::var("USER").unwrap_or_default();
    let name = job_name(spec, attempt);
    let expanded = expand_pattern(
        &pattern,
        &PatternContext {
            job,
            job_name: &name,
            node,
            user: &user,
        },
    );
    let path = Path::new(&expanded);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        spec.workdir.join(path)
    }
}

/// The last `lines` lines of a file (all of it for 0), reading backwards in
/// blocks so a log of hundreds of MB costs only what is shown. Returns the
/// text and the file's length (where following continues).
pub fn tail(path: &Path, lines: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if lines == 0 {
        let mut all = Vec::new();
        f.read_to_end(&mut all)?;
        return Ok((all, len));
    }
    const BLOCK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // A trailing newline ends the last line; it does not start another.
        let newlines =
            buf.iter().filter(|b| **b == b'\n').count() - usize::from(buf.last() == Some(&b'\n'));
        if newlines >= lines || start == 0 {
            break;
        }
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let cut = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(0, |(i, _)| i + 1);
    Ok((buf[cut..].to_vec(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_slurm_patterns() {
        let cx = PatternContext {
            job: JobId(42),
            job_name: "shepherd.train.2",
            node: Some("a100-1"),
            user: "ada",
        };
        assert_eq!(
            expand_pattern("logs/%x-%j.out", &cx),
            "logs/shepherd.train.2-42.out"
        );
        assert_eq!(expand_pattern("%u/%N/%5j%%", &cx), "ada/a100-1/00042%");
        assert_eq!(expand_pattern("plain.txt", &cx), "plain.txt");
        assert_eq!(expand_pattern("odd%q%", &cx), "odd%q%");
    }

    #[test]
    fn tails_without_reading_everything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &text).unwrap();
        let (t, len) = tail(&p, 3).unwrap();
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "line 49997\nline 49998\nline 49999\n"
        );
        assert_eq!(len, text.len() as u64);
        let (t, _) = tail(&p, 0).unwrap();
        assert_eq!(t.len(), text.len());
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail(&p, 1).unwrap().0, b"b");
        assert_eq!(tail(&p, 5).unwrap().0, b"a\nb");
        std::fs::write(&p, "").unwrap();
        assert_eq!(tail(&p, 5).unwrap().0, b"");
    }
}
