//! `shepherd logs RUN [-f] [-n N] [--stderr] [--attempt K]`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use crate::fail;

use super::args::{GlobalArgs, LogsArgs};
use super::output::print;
use super::runs_cmd::local;
use crate::model::RunSpec;
use crate::policy::state::{Attempt, RunState};
use crate::store::RunDir;
use crate::store::logs::{Stream, attempt_file, tail};

/// The attempt to show and its output file, once it has a job.
fn pick(
    spec: &RunSpec,
    run: &RunDir,
    state: &RunState,
    want: Option<u32>,
    stream: Stream,
) -> Option<(u32, PathBuf)> {
    let a: &Attempt = match want {
        Some(k) => state.attempts.iter().find(|a| a.attempt == k)?,
        None => state.attempts.iter().rev().find(|a| a.job_id.is_some())?,
    };
    let job = a.job_id?;
    Some((
        a.attempt,
        attempt_file(spec, run, a.dir_attempt(), job, a.node.as_deref(), stream),
    ))
}

fn load(run: &RunDir, spec: &RunSpec) -> crate::ops::Result<RunState> {
    Ok(run
        .load_state()?
        .unwrap_or_else(|| RunState::new(spec.created_at)))
}

/// Where output goes: as it is, or in JSON mode one JSON object per line
/// (JSON Lines), each naming its run, attempt and stream.
struct Sink {
    json: bool,
    run_id: String,
    stream: &'static str,
    /// JSON mode: the end of the last chunk, until its line is complete.
    partial: Vec<u8>,
    attempt: u32,
}

impl Sink {
    fn write(&mut self, attempt: u32, bytes: &[u8]) {
        if !self.json {
            print(&String::from_utf8_lossy(bytes));
            return;
        }
        if attempt != self.attempt {
            self.flush();
            self.attempt = attempt;
        }
        self.partial.extend_from_slice(bytes);
        let mut lines = String::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            lines.push_str(&self.doc(&line[..line.len() - 1]));
        }
        if !lines.is_empty() {
            print(&lines);
        }
    }

    fn doc(&self, line: &[u8]) -> String {
        let doc = serde_json::json!({
            "schema_version": super::output::SCHEMA_VERSION,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "stream": self.stream,
            "line": String::from_utf8_lossy(line),
        });
        format!("{doc}\n")
    }

    /// A last line without a newline is still a line.
    fn flush(&mut self) {
        if self.json && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            print(&self.doc(&line));
        }
    }

    fn header(&self, attempt: u32, path: &std::path::Path) {
        if !self.json {
            print(&format!("==> attempt {attempt}: {} <==\n", path.display()));
        }
    }
}

pub fn logs(global: &GlobalArgs, args: &LogsArgs) -> crate::ops::Result<()> {
    let local = local(global)?;
    let sd = local.state_dir();
    let id = local.find_run(&args.run)?;
    let run = sd.run(&id);
    let spec = run.load_spec()?;
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let mut state = load(&run, &spec)?;
    if let Some(k) = args.attempt
        && !state.attempts.iter().any(|a| a.attempt == k)
    {
        fail!(
            "run {id} has no attempt {k} (it has {})",
            state.attempts.len()
        );
    }
    let mut out = Sink {
        json: global.json,
        run_id: id.to_string(),
        stream: if args.stderr { "stderr" } else { "stdout" },
        partial: Vec::new(),
        attempt: 0,
    };
    let mut current = pick(&spec, &run, &state, args.attempt, stream);
    let mut offset = 0u64;
    match &current {
        Some((k, path)) => match tail(path, args.lines) {
            Ok((text, len)) => {
                out.write(*k, &text);
                offset = len;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !args.follow {
                    fail!(
                        "no output yet at {} (the job may not have started)",
                        path.display()
                    );
                }
            }
            Err(e) => fail!("cannot read {}: {e}", path.display()),
        },
        None if !args.follow => fail!("run {id} has no job yet; nothing to show"),
        None => {}
    }
    if !args.follow {
        out.flush();
        return Ok(());
    }
    loop {
        if let Some((k, path)) = &current {
            offset = copy_new(path, offset, |b| out.write(*k, b));
        }
        state = load(&run, &spec)?;
        let next = pick(&spec, &run, &state, args.attempt, stream);
        if next.as_ref().map(|n| n.0) != current.as_ref().map(|c| c.0) {
            // A newer attempt: finish the old file, then switch.
            if let Some((k, path)) = &current {
                copy_new(path, offset, |b| out.write(*k, b));
            }
            // A header marks the switch between two attempts' output; the
            // first attempt to appear needs none.
            if let (Some(_), Some((k, path))) = (&current, &next) {
                out.header(*k, path);
            }
            current = next;
            offset = 0;
            continue;
        }
        if state.status.is_terminal() {
            if let Some((k, path)) = &current {
                copy_new(path, offset, |b| out.write(*k, b));
            }
            out.flush();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Hands what was appended to `path` since `offset` to `emit`; returns the
/// new offset.
fn copy_new(path: &PathBuf, offset: u64, mut emit: impl FnMut(&[u8])) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return offset;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Truncated (a fresh file under the same name): start over.
    let offset = if len < offset { 0 } else { offset };
    if len == offset || f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut buf = Vec::new();
    if f.take(len - offset).read_to_end(&mut buf).is_err() {
        return offset;
    }
    emit(&buf);
    offset + buf.len() as u64
}
