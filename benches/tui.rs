//! `cargo bench --bench tui`: what the TUI costs.
//!
//! - Frame time: drawing the runs screen (info and logs tabs) and the nodes
//!   screen with 1,000 runs into a 100×40 `TestBackend`, mean and p99 over
//!   200 frames. Target: at most 10 ms a frame.
//! - Memory: peak RSS (`VmHWM`) while the logs tab tails a 5 MB log, then a
//!   500 MB one (sparse, with real lines at its end), and follows appends:
//!   the two peaks should be the same, because only the end is ever read.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use shepherd::model::Mode;
use shepherd::store::logs::Stream;
use shepherd::tui::app::{App, Msg, update};
use shepherd::tui::data::{DetailUpdate, LogChunk, RunRow};
use shepherd::tui::loaders::LogFollower;
use shepherd::tui::render::render;
use shepherd::view::{AttemptDoc, RunDoc};

const FRAMES: usize = 200;

fn now() -> Timestamp {
    "2026-01-15T12:00:00Z".parse().unwrap()
}

fn rows(n: usize) -> Vec<RunRow> {
    let statuses = [
        "running",
        "pending",
        "completed",
        "failed",
        "paused",
        "queued",
    ];
    (0..n)
        .map(|i| {
            let t = now() - jiff::SignedDuration::from_secs(60 * i as i64);
            let attempts = (1..=(i % 4) as u32)
                .map(|k| AttemptDoc {
                    attempt: k,
                    job_id: Some(1000 + i as u64),
                    phase: "running".into(),
                    partition: Some("a100".into()),
                    node: Some(format!("a100-{}", i % 16)),
                    restarts: 0,
                    submitted_at: t,
                    running_since: Some(t),
                    ended_at: None,
                    outcome: None,
                    blame: None,
                    slurm_state: None,
                    exit_code: None,
                    detail: None,
                    fingerprint: None,
                    probes: vec![],
                    in_place: 0,
                    in_job_of: None,
                })
                .collect::<Vec<_>>();
            RunRow {
                doc: RunDoc {
                    run_id: format!("run-{i:04}"),
                    status: statuses[i % statuses.len()].into(),
                    reason: "bench".into(),
                    mode: Mode::RunOnce,
                    paused: false,
                    slurm_job_id: Some(1000 + i as u64),
                    node: Some(format!("a100-{}", i % 16)),
                    partition: Some("a100".into()),
                    workload_failures: 0,
                    max_retries: 3,
                    created_at: t,
                    updated_at: t,
                    run_dir: PathBuf::from(format!("/state/runs/run-{i:04}")),
                    attempts,
                    error: None,
                },
                heartbeat: Some(t),
            }
        })
        .collect()
}

fn frames(app: &App, label: &str) {
    let mut term = Terminal::new(TestBackend::new(100, 40)).unwrap();
    let mut times: Vec<Duration> = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        let t = Instant::now();
        term.draw(|f| render(app, f)).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / FRAMES as u32;
    let p99 = times[FRAMES * 99 / 100 - 1];
    println!(
        "frame {label:<28} mean {:>7.3} ms   p99 {:>7.3} ms   {}",
        mean.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p99 <= Duration::from_millis(10) {
            "ok (≤ 10 ms)"
        } else {
            "OVER 10 ms"
        }
    );
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A log of `size` bytes: a sparse hole, then 4 MB of real lines at the end.
fn make_log(path: &std::path::Path, size: u64) {
    let tail_bytes: u64 = 4 << 20;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size - tail_bytes).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut w = std::io::BufWriter::new(&mut f);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < tail_bytes {
        let line = format!(
            "step {i} loss 0.{:06} lr 3e-4 tokens/s 123456\n",
            i % 999_983
        );
        written += line.len() as u64;
        w.write_all(line.as_bytes()).unwrap();
        i += 1;
    }
}

/// Tails `path` into the app's logs tab like the detail loader does, follows
/// 50 appends, drawing each time; returns the peak RSS after.
fn tail_and_follow(app: &mut App, path: &std::path::Path) -> u64 {
    let req = app.detail_request().unwrap();
    let mut follower = LogFollower::default();
    let mut term = Terminal::new(TestBackend::new(100, 40)).unwrap();
    for round in 0..50 {
        let got = follower.poll(path).unwrap();
        update(
            app,
            Msg::Detail(
                req.clone(),
                DetailUpdate::Log(LogChunk {
                    attempt: None,
                    stream: Stream::Stdout,
                    path: Some(path.to_path_buf()),
                    reset: got.reset,
                    lines: got.lines,
                    partial: got.partial,
                    size: got.size,
                    note: None,
                }),
            ),
        );
        term.draw(|f| render(app, f)).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        writeln!(f, "appended line {round}").unwrap();
    }
    vm_hwm_kb()
}

fn main() {
    let mut app = App::new(now(), true);
    let t = Instant::now();
    update(&mut app, Msg::Runs(Ok(rows(1_000))));
    println!(
        "load 1,000 runs into the app (filter + sort): {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Select a run in the middle so the list scrolls.
    for _ in 0..500 {
        update(
            &mut app,
            Msg::Key(crossterm::event::KeyEvent::from(
                crossterm::event::KeyCode::Down,
            )),
        );
    }
    frames(&app, "runs, info tab, 1,000 runs");

    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.log");
    let big = dir.path().join("big.log");
    make_log(&small, 5 << 20);
    make_log(&big, 500 << 20);
    update(
        &mut app,
        Msg::Key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Char('5'),
        )),
    );
    let before = vm_hwm_kb();
    let small_peak = tail_and_follow(&mut app, &small);
    frames(&app, "runs, logs tab, 5,000 lines");
    // A different run, so the log starts over.
    update(
        &mut app,
        Msg::Key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Down,
        )),
    );
    let big_peak = tail_and_follow(&mut app, &big);
    println!(
        "peak RSS: {:.1} MB before tailing, {:.1} MB tailing 5 MB, {:.1} MB tailing 500 MB ({} lines held)",
        before as f64 / 1024.0,
        small_peak as f64 / 1024.0,
        big_peak as f64 / 1024.0,
        app.detail.log.lines.len()
    );
    println!(
        "growth from the 5 MB log to the 500 MB one: {:.1} MB",
        big_peak.saturating_sub(small_peak) as f64 / 1024.0
    );
}
