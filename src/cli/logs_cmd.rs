//! `shepherd logs RUN [-f] [-n N] [--stderr] [--attempt K]`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::args::{GlobalArgs, LogsArgs};
use super::output::print;
use super::runs_cmd::state_dir;
use crate::model::RunSpec;
use crate::policy::state::{Attempt, RunState};
use crate::store::RunDir;
use crate::store::logs::{Stream, attempt_file, tail};
use crate::view::find_run;

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
        attempt_file(spec, run, a.attempt, job, a.node.as_deref(), stream),
    ))
}

fn load(run: &RunDir, spec: &RunSpec) -> anyhow::Result<RunState> {
    Ok(run
        .load_state()?
        .unwrap_or_else(|| RunState::new(spec.created_at)))
}

pub fn logs(global: &GlobalArgs, args: &LogsArgs) -> anyhow::Result<()> {
    if global.json {
        bail!(
            "`logs` prints the job's own output; it has no --json form (use `status --json` for the files' paths)"
        );
    }
    let sd = state_dir(global)?;
    let id = find_run(&sd, &args.run)?;
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
        bail!(
            "run {id} has no attempt {k} (it has {})",
            state.attempts.len()
        );
    }
    let mut current = pick(&spec, &run, &state, args.attempt, stream);
    let mut offset = 0u64;
    match &current {
        Some((_, path)) => match tail(path, args.lines) {
            Ok((text, len)) => {
                print(&String::from_utf8_lossy(&text));
                offset = len;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !args.follow {
                    bail!(
                        "no output yet at {} (the job may not have started)",
                        path.display()
                    );
                }
            }
            Err(e) => bail!("cannot read {}: {e}", path.display()),
        },
        None if !args.follow => bail!("run {id} has no job yet; nothing to show"),
        None => {}
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        if let Some((_, path)) = &current {
            offset = copy_new(path, offset);
        }
        state = load(&run, &spec)?;
        let next = pick(&spec, &run, &state, args.attempt, stream);
        if next.as_ref().map(|n| n.0) != current.as_ref().map(|c| c.0) {
            // A newer attempt: finish the old file, then switch.
            if let Some((_, path)) = &current {
                copy_new(path, offset);
            }
            if let Some((k, path)) = &next {
                print(&format!("==> attempt {k}: {} <==\n", path.display()));
            }
            current = next;
            offset = 0;
            continue;
        }
        if state.status.is_terminal() {
            if let Some((_, path)) = &current {
                copy_new(path, offset);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints what was appended to `path` since `offset`; returns the new offset.
fn copy_new(path: &PathBuf, offset: u64) -> u64 {
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
    print(&String::from_utf8_lossy(&buf));
    offset + buf.len() as u64
}
