//! `cargo bench --bench recovery_loop`: the recovery loop's costs, printed as
//! figures (not asserted; targets from the recovery-loop issue in brackets).
//!
//! - daemon tick CPU time and Slurm commands per tick with 1,000 active runs,
//!   against the in-memory simulated Slurm [≤ 20 ms, ≤ 2 query commands];
//! - `shepherd list` wall time over 1,000 runs [≤ 15 ms];
//! - the same with 10,000 ended runs beside the 1,000 active ones: tick CPU
//!   [≤ 20 ms] and `list` over all 11,000 (no target: the active runs'
//!   files are read, ~16 µs a run);
//! - `list` over the 10,000 ended runs alone [≤ 20 ms];
//! - the wrapper's peak RSS and CPU time around a 2-second workload [≤ 4 MiB].
//!
//! Recovery latency on the real test cluster is measured separately by
//! `scripts/bench-recovery`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use shepherd::daemon::tick::Ticker;
use shepherd::model::RunSpec;
use shepherd::policy::state::{AttemptEnd, AttemptPhase, Blame, FailureClass, RunState, RunStatus};
use shepherd::slurm::sim::{Behaviour, SimCluster, SimSlurm};
use shepherd::store::StateDir;

const RUNS: usize = 1000;
const ENDED: usize = 10_000;

fn spec(i: usize, now: Timestamp, workdir: &Path) -> RunSpec {
    let mut s = RunSpec::with_defaults(format!("run-{i:04}").parse().unwrap(), workdir, now);
    s.resources.gpus = Some(1);
    s.policy.heartbeat_grace = Duration::from_secs(3600);
    s
}

/// Time this (main) thread has spent on a CPU, in nanoseconds resolution
/// (`/proc/self/schedstat`; `/proc/self/stat` counts in 10 ms ticks).
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

fn clock_ticks() -> u64 {
    100 // sysconf(_SC_CLK_TCK) on Linux
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    // BENCH_KEEP=1 keeps the state directory, to profile a command on it.
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("keeping {}", tmp.path().display());
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let slurm = SimSlurm::new(SimCluster::uniform(RUNS / 4 + 10, 4));
    slurm.on_start(|_| Behaviour::RunForever);
    let now = slurm.now();
    for i in 0..RUNS {
        state
            .create_run(&spec(i, now, &work), b"#!/bin/bash\nsleep 1\n", vec![])
            .unwrap();
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_shepherd"));
    let ticker = Ticker::new(&slurm, &state, exe.clone());

    // First tick submits every run; then Slurm starts them.
    let t = Instant::now();
    let first = ticker.tick(slurm.now());
    let submit_wall = t.elapsed();
    slurm.advance(Duration::from_secs(5));
    ticker.tick(slurm.now());
    assert_eq!(first.submitted, RUNS, "{:?}", first.problems);

    // Steady state: every run active, nothing to do but observe.
    let (wall, cpu, queries, commands) = {
        let mut commands = Vec::new();
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        let mut queries = Vec::new();
        for _ in 0..20 {
            let (w, c, q, n) = one_tick(&ticker, &slurm, RUNS);
            wall.push(w);
            cpu.push(c);
            queries.push(q);
            commands.push(n);
        }
        (wall, cpu, queries, commands)
    };
    println!("daemon tick, {RUNS} active runs (simulated Slurm):");
    println!(
        "  first tick (submits all {RUNS}): {:.1} ms wall",
        submit_wall.as_secs_f64() * 1e3
    );
    println!(
        "  steady tick: median {:.1} ms wall, median {:.1} ms CPU (mean {:.1} ms CPU)   [target <= 20 ms]",
        median(wall.clone()).as_secs_f64() * 1e3,
        median(cpu.clone()).as_secs_f64() * 1e3,
        cpu.iter().sum::<Duration>().as_secs_f64() * 1e3 / cpu.len() as f64,
    );
    println!(
        "  Slurm query commands per tick: max {}; all commands per tick: max {}   [target <= 2]",
        queries.iter().max().unwrap(),
        commands.iter().max().unwrap()
    );

    // `shepherd list` over the same 1,000 runs, as a user would run it.
    list_times(&exe, &state, RUNS, 15);

    // 10,000 ended runs beside them: a user's history after some months.
    let template = state
        .run(&"run-0000".parse().unwrap())
        .load_state()
        .unwrap()
        .unwrap();
    let ended_state = ended(template, slurm.now());
    for i in 0..ENDED {
        let mut s = spec(i, now, &work);
        s.run_id = format!("old-{i:05}").parse().unwrap();
        let dir = state
            .create_run(&s, b"#!/bin/bash\nsleep 1\n", vec![])
            .unwrap();
        dir.save_state(&ended_state).unwrap();
    }
    let (wall, cpu, queries) = steady_ticks(&ticker, &slurm, RUNS);
    println!("daemon tick, {RUNS} active and {ENDED} ended runs (simulated Slurm):");
    println!(
        "  steady tick: median {:.1} ms wall, median {:.1} ms CPU   [target <= 20 ms]; Slurm queries per tick: max {queries}",
        median(wall).as_secs_f64() * 1e3,
        median(cpu).as_secs_f64() * 1e3,
    );
    list_times(&exe, &state, RUNS + ENDED, 9);
    // The TUI's run list, read every 2 seconds: every document, the ended
    // ones from the list cache, against reading every run's files.
    let (mut cached, mut files) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let docs = shepherd::view::listing::run_docs(&state).unwrap();
        cached.push(t.elapsed());
        let t = Instant::now();
        let read = shepherd::view::run_docs(&state, &state.run_ids().unwrap());
        files.push(t.elapsed());
        assert_eq!(docs.len(), read.len());
    }
    println!(
        "TUI run list over {} runs: median {:.1} ms from the cache, {:.1} ms reading every run's files",
        RUNS + ENDED,
        median(cached).as_secs_f64() * 1e3,
        median(files).as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let status = Command::new(&exe)
            .env("SHEPHERD_STATE_DIR", state.root())
            .args(["status", "old-04242", "--json"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        times.push(t.elapsed());
        assert!(status.success());
    }
    println!(
        "shepherd status RUN --json among {} runs: median {:.1} ms wall",
        RUNS + ENDED,
        median(times).as_secs_f64() * 1e3
    );

    // The figure: `list` over 10,000 runs, the ended ones alone
    // (a user's history once the active runs are gone).
    for i in 0..RUNS {
        state
            .remove_run(&format!("run-{i:04}").parse().unwrap())
            .unwrap();
    }
    list_times(&exe, &state, ENDED, 9);

    wrapper_footprint(&exe, tmp.path());
    // The wrapper as deployed: the static musl build, when one was made.
    let musl = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/shepherd");
    if musl.exists() {
        print!("static musl build: ");
        wrapper_footprint(&musl, tmp.path());
    }
    if std::env::var_os("BENCH_KEEP").is_some() {
        let _ = tmp.keep();
    }
}

/// One steady tick: wall, CPU, Slurm queries and all Slurm commands.
fn one_tick(
    ticker: &Ticker<SimSlurm>,
    slurm: &SimSlurm,
    active: usize,
) -> (Duration, Duration, u64, u64) {
    slurm.advance(Duration::from_secs(10));
    slurm.reset_calls();
    let (c0, w0) = (cpu_time(), Instant::now());
    let r = ticker.tick(slurm.now());
    let wall = w0.elapsed();
    let cpu = cpu_time().saturating_sub(c0);
    let calls = slurm.calls();
    assert_eq!(r.active, active);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    (wall, cpu, calls.queries(), calls.commands)
}

fn steady_ticks(
    ticker: &Ticker<SimSlurm>,
    slurm: &SimSlurm,
    active: usize,
) -> (Vec<Duration>, Vec<Duration>, u64) {
    // The first tick after the new runs appeared reads them once.
    one_tick(ticker, slurm, active);
    let (mut wall, mut cpu, mut queries) = (Vec::new(), Vec::new(), 0);
    for _ in 0..20 {
        let (w, c, q, _) = one_tick(ticker, slurm, active);
        wall.push(w);
        cpu.push(c);
        queries = queries.max(q);
    }
    (wall, cpu, queries)
}

/// `shepherd list` (and `--json`) over the state directory, as a user runs it.
fn list_times(exe: &Path, state: &StateDir, runs: usize, rounds: usize) {
    for json in [false, true] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let mut cmd = Command::new(exe);
            cmd.env("SHEPHERD_STATE_DIR", state.root()).arg("list");
            if json {
                cmd.arg("--json");
            }
            cmd.stdout(std::process::Stdio::null());
            let status = cmd.status().unwrap();
            times.push(t.elapsed());
            assert!(status.success());
        }
        println!(
            "shepherd list{} over {runs} runs: median {:.1} ms wall   [{}]",
            if json { " --json" } else { "" },
            median(times).as_secs_f64() * 1e3,
            match runs {
                ENDED => "target <= 20 ms",
                RUNS => "target <= 15 ms",
                _ => "no target",
            }
        );
    }
}

/// The state of a run that completed: `template`'s one attempt, ended.
fn ended(mut st: RunState, now: Timestamp) -> RunState {
    st.status = RunStatus::Completed;
    st.reason = "the workload exited with code 0".into();
    let a = st.attempts.last_mut().unwrap();
    a.phase = AttemptPhase::Ended;
    a.ended_at = Some(now);
    a.end = Some(AttemptEnd {
        class: FailureClass::Success,
        blame: Blame::None,
        slurm_state: Some("COMPLETED".into()),
        exit: None,
        detail: "the workload exited with code 0".into(),
        signature: None,
        fingerprint: None,
        probes: Vec::new(),
    });
    st
}

/// Runs `shepherd wrap` around a 2-second CPU-idle workload and samples its
/// peak RSS (VmHWM) and CPU time from /proc until it exits.
fn wrapper_footprint(exe: &Path, tmp: &Path) {
    let state = StateDir::new(tmp.join(format!("wrap-state-{}", exe.to_string_lossy().len())));
    let mut s = spec(0, Timestamp::now(), tmp);
    s.resources.gpus = None;
    s.policy.heartbeat_interval = Duration::from_secs(1);
    let run = state
        .create_run(&s, b"#!/bin/bash\nsleep 2\n", vec![])
        .unwrap();
    std::fs::create_dir_all(run.attempt(1).path()).unwrap();
    let mut child = Command::new(exe)
        .args(["wrap", "--run-dir"])
        .arg(run.path())
        .args(["--attempt", "1"])
        .env("SLURM_JOB_ID", "4242")
        .env("SLURMD_NODENAME", "bench-node")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut hwm_kib, mut cpu_ticks) = (0u64, 0u64);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            hwm_kib = hwm_kib.max(line.split_whitespace().nth(1).unwrap().parse().unwrap());
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            if f.len() > 13 {
                cpu_ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    println!(
        "wrapper around a {:.1} s workload: peak RSS {:.2} MiB   [target <= 4 MiB]; CPU {} ms ({:.2} % of wall)",
        wall.as_secs_f64(),
        hwm_kib as f64 / 1024.0,
        cpu_ticks * 1000 / clock_ticks(),
        cpu_ticks as f64 * 1000.0 / clock_ticks() as f64 / (wall.as_secs_f64() * 1e3) * 100.0
    );
}
