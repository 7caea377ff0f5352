//! The compute-side wrapper: GPU probes before the workload, heartbeats during it,
//! signal forwarding, and a structured outcome with a documented exit code.
//!
//! `shepherd wrap --run-dir RUNDIR --attempt N` is the last line of the batch
//! script the daemon submits, so the wrapper *is* the job's batch shell. It
//! runs the user's script (the run's snapshot) as its child and reports on it
//! through the attempt directory. See docs/wrapper.md for the contract.
//!
//! [`wrap`] reads the environment and installs signal handlers, then hands
//! everything to [`run_attempt`], which takes its inputs explicitly (a
//! [`Context`] and a [`Signals`]) so that tests can drive it.

mod heartbeat;
pub mod in_place;
pub mod keeper;
pub mod launch;
pub mod probe;
mod signals;
mod workload;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;

use crate::model::RunId;
use crate::records::{
    HEARTBEAT_VERSION, Heartbeat, OUTCOME_VERSION, Outcome, PROGRESS_VERSION, Phase, ProbeResult,
    ProbeStatus, Progress, SPEC_VERSION, SpecFile, Verdict,
};
use crate::slurm::JobId;
use crate::store::atomic;
use crate::store::{AttemptDir, RunDir};

use heartbeat::Heartbeats;
pub use signals::Signals;
use workload::Event;

pub use crate::records::{
    EXIT_INTERNAL, EXIT_LAUNCH_FAILED, EXIT_PROBE_CODES, EXIT_PROBE_CUDA, EXIT_PROBE_FAILED,
    EXIT_PROBE_HEALTH, EXIT_PROBE_PROCESSES, EXIT_SETUP_FAILED, probe_exit_code,
};

/// How long the workload may take to stop after SIGTERM before its process
/// group gets SIGKILL. Slurm's own KillWait (30 s by default) ends everything
/// anyway; this leaves the wrapper time to write the outcome first.
pub const KILL_GRACE: Duration = Duration::from_secs(25);

/// `SHEPHERD_PROGRESS_FILE`: where `shepherd progress` writes.
pub const PROGRESS_FILE_VAR: &str = "SHEPHERD_PROGRESS_FILE";

/// Progress messages longer than this are cut.
const MAX_PROGRESS_MESSAGE: usize = 4096;

/// `shepherd wrap` arguments.
#[derive(Debug, Clone)]
pub struct WrapArgs {
    pub run_dir: PathBuf,
    pub attempt: u32,
}

/// Runs the attempt; returns the process exit code (see docs/wrapper.md).
pub fn wrap(args: &WrapArgs) -> i32 {
    let ident = match Identity::from_lookup(|k| std::env::var(k).ok()) {
        Ok(ident) => ident,
        Err(msg) => {
            eprintln!("shepherd wrap: {msg}");
            return EXIT_SETUP_FAILED;
        }
    };
    // Before anything else: from here on SIGTERM no longer kills the wrapper
    // without an outcome.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shepherd wrap: internal error: cannot install signal handlers: {e}");
            return EXIT_INTERNAL;
        }
    };
    let run_dir = std::path::absolute(&args.run_dir).unwrap_or_else(|_| args.run_dir.clone());
    // STATE/runs/RUN: the state directory holds the daemon's lease.
    if let Some(after) = std::env::var(KEEPER_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && let (Ok(exe), Some(state_root)) = (std::env::current_exe(), run_dir.ancestors().nth(2))
    {
        keeper::watch(
            exe,
            state_root.to_path_buf(),
            Duration::from_secs(after.max(1)),
        );
    }
    let ctx = Context {
        run_dir: RunDir::at(run_dir),
        attempt: args.attempt,
        job: ident.job,
        restarts: ident.restarts,
        node: ident.node,
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        skip_probes: std::env::var(SKIP_PROBES_ENV)
            .map(|v| {
                v.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        nvidia_smi: "nvidia-smi".to_string(),
        probe_timeout: probe::NVIDIA_SMI_TIMEOUT,
        python: "python3".to_string(),
        cuda_timeout: probe::CUDA_TIMEOUT,
        kill_grace: KILL_GRACE,
        output_paths: heartbeat::OUTPUT_FDS.iter().map(PathBuf::from).collect(),
        stderr_copy: Box::new(std::io::stderr()),
    };
    match catch_unwind(AssertUnwindSafe(|| run_attempt(ctx, &signals))) {
        Ok(finished) => finished.exit_code,
        Err(_) => {
            eprintln!("shepherd wrap: internal error (a bug in Shepherd); see the message above");
            EXIT_INTERNAL
        }
    }
}

/// Who this attempt is, from Slurm's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub job: JobId,
    pub restarts: u32,
    pub node: String,
}

impl Identity {
    /// `SLURM_JOB_ID` (required), `SLURM_RESTART_COUNT` (0 if unset),
    /// `SLURMD_NODENAME` (else the host name).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Identity, String> {
        let job = match get("SLURM_JOB_ID") {
            None => {
                return Err(
                    "not inside a Slurm job (SLURM_JOB_ID is not set); `shepherd wrap` \
                            runs as the batch script of a job that Shepherd submitted"
                        .to_string(),
                );
            }
            Some(v) => v
                .parse::<JobId>()
                .map_err(|_| format!("SLURM_JOB_ID={v:?} is not a Slurm job id"))?,
        };
        let restarts = match get("SLURM_RESTART_COUNT") {
            None => 0,
            Some(v) if v.trim().is_empty() => 0,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("SLURM_RESTART_COUNT={v:?} is not a number"))?,
        };
        let node = get("SLURMD_NODENAME")
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_string());
        Ok(Identity {
            job,
            restarts,
            node,
        })
    }
}

/// The spawn errors that are the node's state, not the script's.
mod libc_errno {
    pub const EAGAIN: i32 = rustix::io::Errno::AGAIN.raw_os_error();
    pub const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
}

/// Set by the job script to the probes whose circuit breaker is open
/// ([`crate::policy::breaker`]), comma-separated.
pub const SKIP_PROBES_ENV: &str = "SHEPHERD_SKIP_PROBES";

pub use keeper::KEEPER_AFTER_ENV;

/// Everything [`run_attempt`] needs, explicitly.
pub struct Context {
    pub run_dir: RunDir,
    pub attempt: u32,
    pub job: JobId,
    pub restarts: u32,
    pub node: String,
    pub cuda_visible_devices: Option<String>,
    /// Probes not to run: their circuit breaker is open (the daemon says so
    /// in the job script, [`SKIP_PROBES_ENV`]).
    pub skip_probes: Vec<String>,
    /// The `nvidia-smi` to run (found on `PATH` unless a path).
    pub nvidia_smi: String,
    /// Per `nvidia-smi` call of a probe.
    pub probe_timeout: Duration,
    /// The `python3` of the `cuda` probe (found on `PATH` unless a path).
    pub python: String,
    /// How long the `cuda` probe may take.
    pub cuda_timeout: Duration,
    /// SIGTERM → SIGKILL grace for the workload's group.
    pub kill_grace: Duration,
    /// Files whose sizes make the heartbeat's `output_bytes`.
    pub output_paths: Vec<PathBuf>,
    /// Where the workload's stderr is copied (the wrapper's stderr).
    pub stderr_copy: Box<dyn Write + Send>,
}

/// How [`run_attempt`] ended.
#[derive(Debug)]
pub struct Finished {
    pub exit_code: i32,
    /// The outcome recorded (also when writing it failed); `None` when the
    /// run could not even be named.
    pub outcome: Option<Outcome>,
}

/// Runs one attempt: spec, heartbeats, probes, workload, outcome.
pub fn run_attempt(mut ctx: Context, signals: &Signals) -> Finished {
    let stderr_copy = std::mem::replace(&mut ctx.stderr_copy, Box::new(std::io::sink()));
    let report = Report {
        ctx: &ctx,
        attempt_dir: ctx.run_dir.attempt(ctx.attempt),
        started_at: Timestamp::now(),
    };

    let spec = match atomic::read_json::<SpecFile>(&ctx.run_dir.spec(), SPEC_VERSION) {
        Ok(f) => f.spec,
        Err(e) => {
            let detail = format!("cannot read the run's spec: {e}");
            return report.setup_failed(run_id_of_dir(ctx.run_dir.path()), detail, vec![]);
        }
    };
    let run_id = spec.run_id.clone();

    let base = Heartbeat {
        version: HEARTBEAT_VERSION,
        run_id: run_id.clone(),
        attempt: ctx.attempt,
        job_id: ctx.job,
        restarts: ctx.restarts,
        node: ctx.node.clone(),
        pid: std::process::id(),
        phase: Phase::Probing,
        started_at: report.started_at,
        time: report.started_at,
        seq: 0,
        output_bytes: None,
        probes: Vec::new(),
        in_place: 0,
    };
    let heartbeats = match Heartbeats::start(
        report.attempt_dir.heartbeat(ctx.job, ctx.restarts),
        base,
        spec.policy.heartbeat_interval,
        ctx.output_paths.clone(),
    ) {
        Ok(h) => h,
        Err(e) => {
            let detail = format!("cannot start the heartbeat thread: {e}");
            return report.setup_failed(Some(run_id), detail, vec![]);
        }
    };

    // Probes. A CPU job has none; `--probes` may select fewer.
    let mut probes = probe_node(&ctx, &spec);
    if let Some(failed) = faulty_probe(&probes) {
        heartbeats.stop();
        return report.finish(run_id, probe_failed(&ctx, failed, probes.clone()));
    }

    // A stop request while probing: the workload is not started at all.
    let early = signals.take();
    if let Some(signal) = early.terminate {
        heartbeats.stop();
        return report.finish(run_id, not_started(signal, early.warn, probes));
    }

    let script = ctx.run_dir.script();
    let stderr_copy = SharedWriter(std::sync::Arc::new(std::sync::Mutex::new(stderr_copy)));
    // Read once: the restarts this job may make (see in_place::allowed), and
    // the run's last failure, so that the same failure as the job before
    // this one is not restarted here either (the daemon's same-failure rule
    // then sees it on two nodes).
    let state = ctx.run_dir.load_state().ok().flatten();
    let allowed = in_place::allowed(&spec.policy, state.as_ref());
    let mut previous = state.as_ref().and_then(in_place::last_fingerprint);
    let signatures = crate::policy::signatures::SignatureSet::builtin();
    let mut k = 0; // restarts in place so far
    let mut started_at = report.started_at;
    let mut warned = early.warn;
    loop {
        let env = workload_env(&ctx, &run_id, &report.attempt_dir, k);
        let workload = match workload::spawn(&script, &env, Box::new(stderr_copy.clone())) {
            Ok(w) => w,
            Err(e) => {
                heartbeats.stop();
                let mut end = match spawn_failure(&ctx, &script, &spec.script_path, e) {
                    Ok(end) => end,
                    Err(detail) => {
                        eprintln!("shepherd wrap: {detail}");
                        Ending::new(Verdict::SetupFailed { detail }, EXIT_SETUP_FAILED, vec![])
                    }
                };
                end.probes = probes;
                end.in_place = k;
                end.started_at = Some(started_at);
                return report.finish(run_id, end);
            }
        };
        if probes.is_empty() {
            heartbeats.set_phase(Phase::Running);
        } else {
            heartbeats.set_phase_with_probes(Phase::Running, probes.clone());
        }

        let result = workload.supervise(signals, ctx.kill_grace, warned, |event| match event {
            Event::Terminating | Event::Warned => heartbeats.set_phase(Phase::Stopping),
        });
        let ended = match result {
            Ok(ended) => ended,
            Err(e) => {
                heartbeats.stop();
                eprintln!("shepherd wrap: internal error: lost track of the workload: {e}");
                return Finished {
                    exit_code: EXIT_INTERNAL,
                    outcome: None,
                };
            }
        };
        let exit_code = workload::exit_code(&ended.status);
        let verdict = match (ended.status.code(), ended.status.signal()) {
            (Some(code), _) => Verdict::Exited { code },
            (None, Some(signal)) => Verdict::Signaled { signal },
            _ => Verdict::Exited { code: exit_code },
        };
        let mut end = Ending::new(verdict, exit_code, probes.clone());
        end.terminated = ended.terminated_by.is_some();
        end.warned = ended.warned;
        end.stderr_tail = ended.stderr_tail;
        end.in_place = k;
        end.started_at = Some(started_at);
        let mut outcome = report.outcome(run_id.clone(), end);
        let decision = match in_place::next(
            &spec.policy,
            &outcome,
            k,
            allowed,
            previous.as_ref(),
            &signatures,
        ) {
            // Its leftovers would hold the GPUs (and pass for a foreign
            // process in the probe): the job ends, and Slurm's cleanup
            // ends them.
            in_place::Next::Restart { .. } if ended.leftovers => in_place::Next::Stop {
                why: Some("processes of the failed run are still alive".into()),
            },
            d => d,
        };
        let (fingerprint, wait) = match decision {
            in_place::Next::Stop { why } => {
                if let Some(why) = why {
                    eprintln!("shepherd wrap: not restarting the workload in place: {why}");
                }
                heartbeats.stop();
                return report.write(outcome);
            }
            in_place::Next::Restart { wait, fingerprint } => {
                eprintln!(
                    "shepherd wrap: the workload failed ({}) on {}; restarting it in place{} (restart {} of {allowed})",
                    verdict_words(&outcome.verdict),
                    ctx.node,
                    match wait.is_zero() {
                        true => String::new(),
                        false => format!(" in {}", crate::duration::format(wait)),
                    },
                    k + 1,
                );
                (fingerprint, wait)
            }
        };
        // This run's outcome first, then the heartbeat naming the next: the
        // daemon follows the chain of outcomes marked restarted_in_place.
        outcome.restarted_in_place = true;
        if let Err(e) = report.try_write(&outcome) {
            // Without this record the daemon cannot follow the runs (it
            // would judge the next run's end as this one's): no restart.
            eprintln!(
                "shepherd wrap: cannot record the outcome ({e}); not restarting the workload in place"
            );
            outcome.restarted_in_place = false;
            heartbeats.stop();
            return report.write(outcome);
        }
        k += 1;
        started_at = Timestamp::now();
        heartbeats.restart_in_place(k);
        match between_runs(&ctx, &spec, signals, wait, &mut warned) {
            Ok(again) => probes = again,
            Err(end) => {
                let mut end = *end;
                heartbeats.stop();
                end.in_place = k;
                end.started_at = Some(started_at);
                return report.finish(run_id, end);
            }
        }
        previous = fingerprint;
    }
}

/// Between a failed run and its restart in place: the wait, then the probes
/// again (a failure that broke the GPU is the node's, and the job leaves
/// it). `Err` with how the job ends instead: stopped, or the node faulty.
///
/// The time-limit warning (SIGUSR1) meanwhile means the allocation ends in
/// `--signal-before`: a restart then has no time to run, and would not be
/// told to checkpoint (the warning came before it started). The wrapper
/// waits for Slurm's stop instead, so the job ends as a time limit (the
/// daemon resubmits at once) rather than as another failure.
fn between_runs(
    ctx: &Context,
    spec: &crate::model::RunSpec,
    signals: &Signals,
    wait: Duration,
    warned: &mut bool,
) -> Result<Vec<ProbeResult>, Box<Ending>> {
    // A warning no stop followed still counts: the restarted run's outcome
    // says so (a time limit that comes later than the slack then resubmits
    // rather than failing the run), and it is not restarted again.
    let mut stopped = |pending: signals::Pending| {
        *warned |= pending.warn;
        let terminate = match (pending.terminate, pending.warn) {
            (Some(signal), _) => Some(signal),
            (None, true) => hold_for_time_limit(spec, signals),
            (None, false) => None,
        };
        match terminate {
            Some(signal) => Err(Box::new(not_started(signal, *warned, vec![]))),
            None => Ok(()),
        }
    };
    let pending = wait_unless_stopped(signals, wait);
    stopped(pending)?;
    let probes = probe_node(ctx, spec);
    if let Some(failed) = faulty_probe(&probes) {
        return Err(Box::new(probe_failed(ctx, failed, probes.clone())));
    }
    match stopped(signals.take()) {
        Ok(()) => Ok(probes),
        Err(mut end) => {
            end.probes = probes;
            Err(end)
        }
    }
}

/// After a time-limit warning between runs: waits for the stop that ends
/// the allocation (`--signal-before` later; Slurm may send the warning up
/// to a minute early) and returns its signal. `None` when none came, or no
/// warning was asked for: the SIGUSR1 was not Slurm's, and the restart goes
/// ahead.
fn hold_for_time_limit(spec: &crate::model::RunSpec, signals: &Signals) -> Option<i32> {
    const SLACK: Duration = Duration::from_secs(120);
    let before = spec.policy.signal_before?;
    eprintln!(
        "shepherd wrap: got SIGUSR1 (time limit near) before the restart; not restarting, waiting for the job to end"
    );
    let pending = wait_unless_stopped(signals, before.saturating_add(SLACK));
    if pending.terminate.is_none() {
        eprintln!(
            "shepherd wrap: no time limit followed the SIGUSR1 within {}; restarting after all",
            crate::duration::format(before.saturating_add(SLACK))
        );
    }
    pending.terminate
}

/// Sleeps `wait`, returning early with the stop request if one arrives; the
/// requests seen (a warning does not end the wait).
fn wait_unless_stopped(signals: &Signals, wait: Duration) -> signals::Pending {
    let until = std::time::Instant::now() + wait;
    let mut seen = signals::Pending::default();
    loop {
        let p = signals.take();
        seen.warn |= p.warn;
        if p.terminate.is_some() {
            seen.terminate = p.terminate;
            return seen;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return seen;
        }
        signals.wait(left.min(Duration::from_secs(1)));
    }
}

/// `exit 1`, `signal 11`.
fn verdict_words(v: &Verdict) -> String {
    match v {
        Verdict::Exited { code } => format!("exit {code}"),
        Verdict::Signaled { signal } => format!("signal {signal}"),
        other => format!("{other:?}"),
    }
}

/// Runs the probes the spec asks for (none for a CPU job) and says which
/// were inconclusive.
fn probe_node(ctx: &Context, spec: &crate::model::RunSpec) -> Vec<ProbeResult> {
    let Some(gpus) = spec.resources.gpus else {
        return Vec::new();
    };
    let probes = probe::run_all(&probe::Probing {
        nvidia_smi: &ctx.nvidia_smi,
        python: &ctx.python,
        cuda_visible_devices: ctx.cuda_visible_devices.as_deref(),
        requested: gpus,
        timeout: ctx.probe_timeout,
        cuda_timeout: ctx.cuda_timeout,
        only: spec.policy.probes.as_deref(),
        skip: &ctx.skip_probes,
    });
    for p in probes
        .iter()
        .filter(|p| p.status == ProbeStatus::Inconclusive)
    {
        eprintln!(
            "shepherd wrap: GPU probe '{}' inconclusive on {}: {}; the node is not judged on it",
            p.name, ctx.node, p.detail
        );
    }
    probes
}

fn probe_failed(ctx: &Context, failed: &ProbeResult, probes: Vec<ProbeResult>) -> Ending {
    eprintln!(
        "shepherd wrap: GPU probe '{}' failed on {}: {}; the workload does not run on this node",
        failed.name, ctx.node, failed.detail
    );
    let verdict = Verdict::ProbeFailed {
        probe: failed.name.clone(),
        detail: failed.detail.clone(),
    };
    Ending::new(verdict, probe_exit_code(&failed.name), probes)
}

/// A stop request before the workload (re)started.
fn not_started(signal: i32, warned: bool, probes: Vec<ProbeResult>) -> Ending {
    eprintln!(
        "shepherd wrap: got {} before the workload started; not starting it",
        workload::signal_name(signal)
    );
    let mut end = Ending::new(Verdict::Signaled { signal }, 128 + signal, probes);
    end.terminated = true;
    end.warned = warned;
    end
}

/// Why the workload could not be spawned: `Ok` with the launch failure (the
/// script's fault), or `Err` with the detail of a setup failure (the node's).
fn spawn_failure(
    ctx: &Context,
    script: &Path,
    script_path: &Path,
    e: std::io::Error,
) -> Result<Ending, String> {
    // Positive evidence against the node only when it cannot read the
    // snapshot the login node wrote; anything else is the script's (its
    // shebang, its line endings, its permissions).
    if let Err(read) = std::fs::File::open(script) {
        return Err(format!(
            "cannot read the script snapshot {} on {}: {read}",
            script.display(),
            ctx.node
        ));
    }
    // EAGAIN and ENOMEM (no process or memory left) are this node's state,
    // not the script's: positive evidence against the node. Everything else
    // (ENOENT, ENOEXEC, EACCES from the shebang or the mode, E2BIG from the
    // environment) would be the same on every node: the submission's.
    if matches!(
        e.raw_os_error(),
        Some(libc_errno::EAGAIN | libc_errno::ENOMEM)
    ) {
        return Err(format!(
            "cannot start the workload on {}: {e} (the node, not the script: it has no process or memory to spare)",
            ctx.node
        ));
    }
    let detail = launch::explain(script, script_path, &e);
    eprintln!("shepherd wrap: {detail}");
    Ok(Ending::new(
        Verdict::LaunchFailed { detail },
        EXIT_LAUNCH_FAILED,
        vec![],
    ))
}

/// The workload's stderr copy, shared by the runs of a job restarted in place.
#[derive(Clone)]
struct SharedWriter(std::sync::Arc<std::sync::Mutex<Box<dyn Write + Send>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .flush()
    }
}

/// The probe that ends the attempt: the first faulty one. Inconclusive and
/// healthy probes never do.
pub fn faulty_probe(probes: &[ProbeResult]) -> Option<&ProbeResult> {
    probes.iter().find(|p| p.is_faulty())
}

/// The environment the workload gets on top of the wrapper's.
fn workload_env(
    ctx: &Context,
    run_id: &RunId,
    attempt_dir: &AttemptDir,
    in_place: u32,
) -> Vec<(&'static str, OsString)> {
    vec![
        ("SHEPHERD_RUN_ID", run_id.as_str().into()),
        ("SHEPHERD_RUN_DIR", ctx.run_dir.path().into()),
        // A restart in place is the next attempt of the same job.
        (
            "SHEPHERD_ATTEMPT",
            (ctx.attempt + in_place).to_string().into(),
        ),
        ("SHEPHERD_IN_PLACE", in_place.to_string().into()),
        ("SHEPHERD_RESTARTS", ctx.restarts.to_string().into()),
        ("SHEPHERD_JOB_ID", ctx.job.to_string().into()),
        (
            PROGRESS_FILE_VAR,
            attempt_dir.progress(ctx.job, ctx.restarts, in_place).into(),
        ),
    ]
}

/// A run directory is named after its run id.
fn run_id_of_dir(dir: &Path) -> Option<RunId> {
    dir.file_name()?.to_str()?.parse().ok()
}

/// How the attempt ended, before it is written down.
struct Ending {
    verdict: Verdict,
    exit_code: i32,
    probes: Vec<ProbeResult>,
    terminated: bool,
    warned: bool,
    stderr_tail: String,
    /// Which run of the workload in this job (restarts in place before it).
    in_place: u32,
    /// When this run began, if not when the wrapper started.
    started_at: Option<Timestamp>,
}

impl Ending {
    fn new(verdict: Verdict, exit_code: i32, probes: Vec<ProbeResult>) -> Ending {
        Ending {
            verdict,
            exit_code,
            probes,
            terminated: false,
            warned: false,
            stderr_tail: String::new(),
            in_place: 0,
            started_at: None,
        }
    }
}

/// Writes the outcome.
struct Report<'a> {
    ctx: &'a Context,
    attempt_dir: AttemptDir,
    started_at: Timestamp,
}

impl Report<'_> {
    fn setup_failed(
        &self,
        run_id: Option<RunId>,
        detail: String,
        probes: Vec<ProbeResult>,
    ) -> Finished {
        eprintln!("shepherd wrap: {detail}");
        match run_id {
            Some(run_id) => self.finish(
                run_id,
                Ending::new(Verdict::SetupFailed { detail }, EXIT_SETUP_FAILED, probes),
            ),
            None => {
                eprintln!(
                    "shepherd wrap: no outcome recorded: {} is not named like a run",
                    self.ctx.run_dir.path().display()
                );
                Finished {
                    exit_code: EXIT_SETUP_FAILED,
                    outcome: None,
                }
            }
        }
    }

    fn finish(&self, run_id: RunId, end: Ending) -> Finished {
        self.write(self.outcome(run_id, end))
    }

    fn outcome(&self, run_id: RunId, end: Ending) -> Outcome {
        let ctx = self.ctx;
        Outcome {
            version: OUTCOME_VERSION,
            run_id,
            attempt: ctx.attempt + end.in_place,
            job_id: ctx.job,
            restarts: ctx.restarts,
            node: ctx.node.clone(),
            started_at: end.started_at.unwrap_or(self.started_at),
            ended_at: Timestamp::now(),
            verdict: end.verdict,
            probes: end.probes,
            terminated: end.terminated,
            warned: end.warned,
            stderr_tail: end.stderr_tail,
            exit_code: end.exit_code,
            in_place: end.in_place,
            restarted_in_place: false,
        }
    }

    fn write(&self, outcome: Outcome) -> Finished {
        if let Err(e) = self.try_write(&outcome) {
            eprintln!("shepherd wrap: cannot record the outcome: {e}");
        }
        Finished {
            exit_code: outcome.exit_code,
            outcome: Some(outcome),
        }
    }

    fn try_write(&self, outcome: &Outcome) -> Result<(), atomic::StoreError> {
        let ctx = self.ctx;
        let path = self
            .attempt_dir
            .outcome(ctx.job, ctx.restarts, outcome.in_place);
        atomic::write_json(&path, outcome)
    }
}

/// `shepherd progress [--step N] [MESSAGE]`: writes the progress record at
/// `$SHEPHERD_PROGRESS_FILE`. Err with a clear message when not inside a
/// Shepherd job.
pub fn report_progress(step: Option<u64>, message: Option<String>) -> anyhow::Result<()> {
    let path = std::env::var_os(PROGRESS_FILE_VAR);
    write_progress(path.as_deref().map(Path::new), step, message)
}

/// [`report_progress`] with the progress file given.
pub fn write_progress(
    path: Option<&Path>,
    step: Option<u64>,
    message: Option<String>,
) -> anyhow::Result<()> {
    let path = path.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "not inside a Shepherd job: {PROGRESS_FILE_VAR} is not set (`shepherd progress` \
             works in the script of a run started by Shepherd)"
        )
    })?;
    let message = message.map(|mut m| {
        if m.len() > MAX_PROGRESS_MESSAGE {
            let mut cut = MAX_PROGRESS_MESSAGE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        m
    });
    let record = Progress {
        version: PROGRESS_VERSION,
        step,
        message,
        time: Timestamp::now(),
    };
    atomic::write_json(path, &record)
        .with_context(|| format!("cannot report progress to {}", path.display()))
}
