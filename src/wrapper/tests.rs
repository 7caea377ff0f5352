//! End-to-end tests of [`run_attempt`]: a real child script in a temporary
//! run directory, with the identity Slurm would give it and signals raised
//! through the wrapper's own flags.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use super::*;
use crate::model::{Mode, Policy, Resources, RunSpec};

const JOB: JobId = JobId(4242);

struct Fixture {
    _root: tempfile::TempDir,
    run_dir: RunDir,
    /// Scratch space for markers.
    scratch: PathBuf,
    /// Where the workload's stderr is copied.
    stderr_copy: PathBuf,
}

impl Fixture {
    /// A run `myrun` whose script is `#!/bin/sh` + `body`. `body` may use
    /// `$S` for the scratch directory.
    fn new(body: &str, gpus: Option<u32>) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let run_path = root.path().join("runs").join("myrun");
        let run_dir = RunDir::at(&run_path);
        fs::create_dir_all(run_dir.attempt(1).path()).unwrap();
        let scratch = root.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let spec = RunSpec {
            run_id: "myrun".parse().unwrap(),
            script_path: "/home/u/train.sh".into(),
            workdir: root.path().to_path_buf(),
            created_at: Timestamp::now(),
            mode: Mode::RunOnce,
            resources: Resources {
                gpus,
                ..Resources::default()
            },
            policy: Policy {
                heartbeat_interval: Duration::from_secs(1),
                ..Policy::default()
            },
            sbatch_lines: vec![],
            user_output: false,
            user_error: false,
            setup: None,
            notify: None,
        };
        let file = SpecFile {
            version: SPEC_VERSION,
            spec,
        };
        atomic::write_json(&run_dir.spec(), &file).unwrap();
        write_script(
            &run_dir.script(),
            &format!("#!/bin/sh\nS={}\n{body}\n", scratch.display()),
        );
        Fixture {
            stderr_copy: root.path().join("stderr-copy"),
            _root: root,
            run_dir,
            scratch,
        }
    }

    fn context(&self) -> Context {
        Context {
            run_dir: self.run_dir.clone(),
            attempt: 1,
            job: JOB,
            restarts: 0,
            node: "gpu-node-7".into(),
            cuda_visible_devices: None,
            skip_probes: vec![],
            nvidia_smi: "/nonexistent/nvidia-smi".into(),
            probe_timeout: Duration::from_secs(10),
            python: "/nonexistent/python3".into(),
            cuda_timeout: Duration::from_secs(10),
            // Short, so that a failing test does not wait long (see Rescue).
            kill_grace: Duration::from_secs(5),
            output_paths: vec![],
            stderr_copy: Box::new(fs::File::create(&self.stderr_copy).unwrap()),
        }
    }

    fn attempt(&self) -> AttemptDir {
        self.run_dir.attempt(1)
    }

    fn outcome(&self) -> Outcome {
        atomic::read_json(&self.attempt().outcome(JOB, 0, 0), OUTCOME_VERSION).unwrap()
    }

    fn heartbeat(&self) -> Option<Heartbeat> {
        atomic::read_json(&self.attempt().heartbeat(JOB, 0), HEARTBEAT_VERSION).ok()
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    fn rescue<'a>(&self, signals: &'a Signals) -> Rescue<'a> {
        Rescue {
            signals,
            go: self.marker("go"),
            ready: self.marker("ready"),
        }
    }

    /// Rewrites the spec's `policy.probes`.
    fn set_probes(&self, probes: Option<&[&str]>) {
        let mut file: SpecFile = atomic::read_json(&self.run_dir.spec(), SPEC_VERSION).unwrap();
        file.spec.policy.probes = probes.map(|l| l.iter().map(|p| p.to_string()).collect());
        atomic::write_json(&self.run_dir.spec(), &file).unwrap();
    }

    fn fake_nvidia_smi_text(&self, text: &str) -> String {
        let path = self.scratch.join("nvidia-smi");
        write_script(&path, text);
        path.to_string_lossy().into_owned()
    }

    fn fake_nvidia_smi(&self, body: &str) -> String {
        let path = self.scratch.join("nvidia-smi");
        write_script(&path, &format!("#!/bin/sh\n{body}\n"));
        path.to_string_lossy().into_owned()
    }
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When a test fails while `run_attempt` runs in a scoped thread, the scope
/// waits for that thread: end the workload so that the failure is reported
/// instead of hanging (the "go" marker, then SIGKILL to the group of the pid
/// the script wrote into "ready").
struct Rescue<'a> {
    signals: &'a Signals,
    go: PathBuf,
    ready: PathBuf,
}

impl Drop for Rescue<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = fs::write(&self.go, "");
            self.signals.raise(SIGTERM);
            let pid = fs::read_to_string(&self.ready).ok();
            if let Some(pid) = pid.and_then(|p| p.trim().parse::<i32>().ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// Joins `run`, failing (instead of hanging) when it takes longer than 20 s.
fn join<T>(run: std::thread::ScopedJoinHandle<'_, T>) -> T {
    poll("run_attempt to return", || run.is_finished().then_some(()));
    run.join().unwrap()
}

fn exists(p: &Path) -> Option<()> {
    p.exists().then_some(())
}

#[test]
fn exit_code_outcome_and_stderr_tail() {
    let f = Fixture::new(
        "echo to-stdout\ni=1\nwhile [ $i -le 60 ]; do echo \"line $i\" >&2; i=$((i + 1)); done\nexit 7",
        None,
    );
    let signals = Signals::new().unwrap();
    let finished = run_attempt(f.context(), &signals);
    assert_eq!(finished.exit_code, 7);

    let o = f.outcome();
    assert_eq!(Some(&o), finished.outcome.as_ref());
    assert_eq!(o.verdict, Verdict::Exited { code: 7 });
    assert_eq!(o.exit_code, 7);
    assert_eq!(o.run_id.as_str(), "myrun");
    assert_eq!((o.attempt, o.job_id, o.restarts), (1, JOB, 0));
    assert_eq!(o.node, "gpu-node-7");
    assert!(
        o.probes.is_empty(),
        "a CPU job has no probes: {:?}",
        o.probes
    );
    assert!(!o.terminated && !o.warned);
    assert!(o.ended_at >= o.started_at);
    let want: Vec<String> = (11..=60).map(|i| format!("line {i}")).collect();
    assert_eq!(o.stderr_tail.lines().collect::<Vec<_>>(), want);

    // Every byte of stderr was copied, in order; stdout was not piped.
    let copy = fs::read_to_string(&f.stderr_copy).unwrap();
    let all: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(copy, all);
    assert!(f.heartbeat().is_some());
}

#[test]
fn killed_by_a_signal_exits_128_plus_signal() {
    let f = Fixture::new("echo dying >&2\nkill -KILL $$", None);
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 137);
    let o = f.outcome();
    assert_eq!(o.verdict, Verdict::Signaled { signal: 9 });
    assert_eq!(o.exit_code, 137);
    assert_eq!(o.stderr_tail, "dying");
}

#[test]
fn workload_environment_stdin_and_process_group() {
    let f = Fixture::new(
        r#"env | grep '^SHEPHERD_' | sort > "$S/env"
if read -r line; then echo "stdin: $line" > "$S/stdin"; else echo eof > "$S/stdin"; fi
# own process group: pgrp (field 5 of /proc/PID/stat) equals the pid
set -- $(cat /proc/$$/stat)
[ "$5" = "$$" ] && echo own > "$S/pgrp"
exit 0"#,
        None,
    );
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 0);
    let env = fs::read_to_string(f.marker("env")).unwrap();
    let run_dir = f.run_dir.path().display();
    let progress = f.attempt().progress(JOB, 0, 0);
    for want in [
        "SHEPHERD_ATTEMPT=1".to_string(),
        format!("SHEPHERD_JOB_ID={JOB}"),
        format!("SHEPHERD_PROGRESS_FILE={}", progress.display()),
        "SHEPHERD_RESTARTS=0".to_string(),
        format!("SHEPHERD_RUN_DIR={run_dir}"),
        "SHEPHERD_RUN_ID=myrun".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in:\n{env}");
    }
    assert_eq!(fs::read_to_string(f.marker("stdin")).unwrap(), "eof\n");
    assert_eq!(fs::read_to_string(f.marker("pgrp")).unwrap(), "own\n");
}

#[test]
fn heartbeats_name_identity_and_increasing_seq() {
    let f = Fixture::new(
        r#"echo $$ > "$S/ready"
while [ ! -e "$S/go" ]; do sleep 0.05; done
exit 0"#,
        None,
    );
    let out_a = f.marker("out-a");
    let out_b = f.marker("out-b");
    fs::write(&out_a, "0123456789").unwrap();
    fs::write(&out_b, "abc").unwrap();
    let mut ctx = f.context();
    ctx.output_paths = vec![out_a.clone(), out_b, out_a];
    let signals = Signals::new().unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(ctx, &signals));
        let _rescue = f.rescue(&signals);
        poll("the workload", || exists(&f.marker("ready")));
        let first = poll("a running heartbeat", || {
            f.heartbeat().filter(|h| h.phase == Phase::Running)
        });
        // Named heartbeat-JOB-RESTARTS.json, with the attempt's identity.
        assert!(f.attempt().path().join("heartbeat-4242-0.json").exists());
        assert_eq!(first.run_id.as_str(), "myrun");
        assert_eq!((first.attempt, first.job_id, first.restarts), (1, JOB, 0));
        assert_eq!(first.node, "gpu-node-7");
        assert_eq!(first.pid, std::process::id());
        assert_eq!(first.output_bytes, Some(13));
        // The policy's interval (1 s) brings new ones.
        let later = poll("two more heartbeats", || {
            f.heartbeat().filter(|h| h.seq >= first.seq + 2)
        });
        assert!(later.time > first.time);
        assert_eq!(later.started_at, first.started_at);
        fs::write(f.marker("go"), "").unwrap();
        assert_eq!(join(run).exit_code, 0);
    });
    assert!(f.outcome().stderr_tail.is_empty());
}

#[test]
fn sigterm_is_forwarded_to_the_group_and_the_workload_may_finish() {
    let f = Fixture::new(
        r#"trap 'echo term > "$S/term"; while [ ! -e "$S/go" ]; do sleep 0.05; done; echo checkpointed >&2; exit 0' TERM
echo $$ > "$S/ready"
while :; do sleep 0.05; done"#,
        None,
    );
    let signals = Signals::new().unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(f.context(), &signals));
        let _rescue = f.rescue(&signals);
        poll("the workload", || exists(&f.marker("ready")));
        signals.raise(SIGTERM);
        poll("the workload's TERM trap", || exists(&f.marker("term")));
        let hb = poll("a stopping heartbeat", || {
            f.heartbeat().filter(|h| h.phase == Phase::Stopping)
        });
        assert!(hb.seq >= 2);
        fs::write(f.marker("go"), "").unwrap();
        let finished = join(run);
        assert_eq!(finished.exit_code, 0);
    });
    let o = f.outcome();
    assert!(o.terminated);
    assert!(!o.warned);
    assert_eq!(o.verdict, Verdict::Exited { code: 0 });
    // (dash also reports its sleep child "Terminated" by the forwarded signal.)
    assert!(o.stderr_tail.ends_with("checkpointed"), "{}", o.stderr_tail);
}

#[test]
fn a_workload_ignoring_sigterm_is_killed_after_the_grace() {
    let f = Fixture::new(
        r#"trap '' TERM
echo $$ > "$S/ready"
while :; do sleep 0.05; done"#,
        None,
    );
    let signals = Signals::new().unwrap();
    let mut ctx = f.context();
    ctx.kill_grace = Duration::from_millis(300);
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(ctx, &signals));
        let _rescue = f.rescue(&signals);
        poll("the workload", || exists(&f.marker("ready")));
        let t = Instant::now();
        signals.raise(SIGINT);
        let finished = join(run);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "killed before the grace"
        );
        assert_eq!(finished.exit_code, 137);
    });
    let o = f.outcome();
    assert!(o.terminated);
    assert_eq!(o.verdict, Verdict::Signaled { signal: 9 });
}

#[test]
fn sigusr1_is_forwarded_and_the_workload_keeps_running() {
    let f = Fixture::new(
        r#"trap 'echo usr1 >> "$S/usr1"' USR1
echo $$ > "$S/ready"
while [ ! -e "$S/go" ]; do sleep 0.05; done
exit 3"#,
        None,
    );
    let signals = Signals::new().unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(f.context(), &signals));
        let _rescue = f.rescue(&signals);
        poll("the workload", || exists(&f.marker("ready")));
        signals.raise(SIGUSR1);
        poll("the workload's USR1 trap", || exists(&f.marker("usr1")));
        assert!(!run.is_finished(), "the warning stopped the workload");
        fs::write(f.marker("go"), "").unwrap();
        assert_eq!(join(run).exit_code, 3);
    });
    let o = f.outcome();
    assert!(o.warned);
    assert!(!o.terminated);
    assert_eq!(o.verdict, Verdict::Exited { code: 3 });
}

#[test]
fn terminated_before_the_workload_starts() {
    let f = Fixture::new(r#"echo ran > "$S/ran""#, None);
    let signals = Signals::new().unwrap();
    signals.raise(SIGTERM);
    let finished = run_attempt(f.context(), &signals);
    assert_eq!(finished.exit_code, 143);
    let o = f.outcome();
    assert!(o.terminated);
    assert_eq!(o.verdict, Verdict::Signaled { signal: 15 });
    assert!(!f.marker("ran").exists());
}

#[test]
fn gpu_probe_failures_blame_the_node_and_skip_the_workload() {
    // CUDA_VISIBLE_DEVICES unset while 2 GPUs were asked for.
    let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
    let t = Instant::now();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_PROBE_FAILED);
    assert!(t.elapsed() < Duration::from_secs(10));
    let o = f.outcome();
    match &o.verdict {
        Verdict::ProbeFailed { probe, detail } => {
            assert_eq!(probe, "visibility");
            assert!(
                detail.contains("CUDA_VISIBLE_DEVICES is not set"),
                "{detail}"
            );
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(o.exit_code, EXIT_PROBE_FAILED);
    assert_eq!(o.probes.len(), 1);
    assert!(!o.probes[0].ok);
    assert!(!f.marker("ran").exists());
    assert_eq!(f.heartbeat().unwrap().phase, Phase::Probing);

    // nvidia-smi lists one GPU fewer than Slurm handed out.
    let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("0,1".into());
    ctx.nvidia_smi = f.fake_nvidia_smi("echo 'GPU 0: NVIDIA RTX A6000 (UUID: GPU-aaaa)'");
    let finished = run_attempt(ctx, &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_PROBE_FAILED);
    match f.outcome().verdict {
        Verdict::ProbeFailed { detail, .. } => {
            assert!(detail.contains("lists 1 GPU(s)"), "{detail}")
        }
        v => panic!("{v:?}"),
    }
    assert!(!f.marker("ran").exists());

    // nvidia-smi missing: no evidence either way (inconclusive), the
    // workload runs, and the outcome says what could not be checked.
    let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(1));
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("0".into());
    assert_eq!(run_attempt(ctx, &Signals::new().unwrap()).exit_code, 0);
    assert!(f.marker("ran").exists());
    let o = f.outcome();
    assert_eq!(o.verdict, Verdict::Exited { code: 0 });
    assert!(
        o.probes
            .iter()
            .all(|p| p.status == ProbeStatus::Inconclusive && p.ok),
        "{:?}",
        o.probes
    );
    assert!(o.probes[0].detail.contains("cannot run"), "{:?}", o.probes);
}

#[test]
fn inconclusive_probes_are_recorded_and_the_workload_runs() {
    for (mode, sign) in [
        ("refuse", "refused -d ECC,PAGE_RETIREMENT,ROW_REMAPPER"),
        ("odd", "no GPU section"),
    ] {
        let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
        let mut ctx = f.context();
        ctx.cuda_visible_devices = Some("0,1".into());
        ctx.nvidia_smi = f.fake_nvidia_smi_text(&probe::fake_nvidia_smi(mode));
        let finished = run_attempt(ctx, &Signals::new().unwrap());
        assert_eq!(finished.exit_code, 0, "{mode}");
        assert!(f.marker("ran").exists(), "{mode}");
        let o = f.outcome();
        let health = o.probes.iter().find(|p| p.name == "health").unwrap();
        assert!(health.detail.contains(sign), "{mode}: {health:?}");
        let want = if mode == "refuse" {
            // The older display types still got the ECC checked.
            ProbeStatus::Healthy
        } else {
            ProbeStatus::Inconclusive
        };
        assert_eq!(health.status, want, "{mode}: {health:?}");
        assert!(o.probes.iter().all(|p| !p.is_faulty()), "{:?}", o.probes);
    }

    // While the workload runs, its heartbeat carries the probes (so that
    // `status` shows an inconclusive one before the attempt ends).
    let f = Fixture::new(
        r#"hb="$SHEPHERD_RUN_DIR/attempts/1/heartbeat-$SHEPHERD_JOB_ID-0.json"
for i in $(seq 200); do
    grep -q '"inconclusive"' "$hb" 2>/dev/null && { echo ran > "$S/ran"; exit 0; }
    sleep 0.05
done
exit 7"#,
        Some(2),
    );
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("0,1".into());
    ctx.nvidia_smi = f.fake_nvidia_smi_text(&probe::fake_nvidia_smi("odd"));
    assert_eq!(run_attempt(ctx, &Signals::new().unwrap()).exit_code, 0);
    let hb = f.heartbeat().unwrap();
    assert_eq!(hb.phase, Phase::Running);
    let health = hb.probes.iter().find(|p| p.name == "health").unwrap();
    assert_eq!(health.status, ProbeStatus::Inconclusive, "{hb:?}");
}

#[test]
fn a_workload_that_cannot_be_executed_is_a_launch_failure() {
    for (script, sign) in [
        ("#!/bin/sh\r\necho ran\r\n", "CRLF"),
        (
            "#!/bin/no-such-shell\necho ran\n",
            "/bin/no-such-shell does not exist",
        ),
    ] {
        let f = Fixture::new("exit 0", None);
        write_script(&f.run_dir.script(), script);
        let finished = run_attempt(f.context(), &Signals::new().unwrap());
        assert_eq!(finished.exit_code, EXIT_LAUNCH_FAILED, "{script:?}");
        match f.outcome().verdict {
            Verdict::LaunchFailed { detail } => {
                assert!(detail.contains("No such file or directory"), "{detail}");
                assert!(detail.contains(sign), "{detail}");
            }
            v => panic!("{script:?}: {v:?}"),
        }
    }
    // Not executable.
    let f = Fixture::new("exit 0", None);
    fs::set_permissions(f.run_dir.script(), fs::Permissions::from_mode(0o644)).unwrap();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_LAUNCH_FAILED);
    match f.outcome().verdict {
        Verdict::LaunchFailed { detail } => {
            assert!(detail.contains("Permission denied"), "{detail}")
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_passing_gpu_probe_is_recorded_and_the_workload_runs() {
    let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("2,3".into());
    ctx.nvidia_smi = f.fake_nvidia_smi(
        r#"[ "$1" = -L ] || exec sh -c 'echo "unexpected: $*" >&2; exit 2' sh "$@"
for i in 0 1 2 3; do echo "GPU $i: NVIDIA A100-SXM4-80GB (UUID: GPU-$i)"; done"#,
    );
    // Only the listing: the other probes are not selected.
    f.set_probes(Some(&["visibility"]));
    let finished = run_attempt(ctx, &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 0);
    let o = f.outcome();
    assert_eq!(o.probes.len(), 1);
    assert!(o.probes[0].ok, "{:?}", o.probes);
    assert!(o.probes[0].detail.contains("NVIDIA A100-SXM4-80GB"));
    assert!(f.marker("ran").exists());
}

#[test]
fn every_probe_is_recorded_when_all_pass() {
    let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("0,1".into());
    ctx.nvidia_smi = f.fake_nvidia_smi_text(&probe::fake_nvidia_smi("healthy"));
    let finished = run_attempt(ctx, &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 0);
    let o = f.outcome();
    let names: Vec<&str> = o.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, probe::ALL);
    assert!(o.probes.iter().all(|p| p.ok), "{:?}", o.probes);
    // No python3 at the context's path: the cuda probe is skipped.
    assert!(o.probes[3].detail.starts_with(probe::CUDA_SKIPPED));
    assert!(f.marker("ran").exists());
}

#[test]
fn health_and_process_probes_blame_the_node() {
    for (mode, probe_name, sign) in [
        ("ecc", "health", "volatile uncorrectable ECC errors"),
        ("busy", "processes", "foreign compute process"),
    ] {
        let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
        let mut ctx = f.context();
        ctx.cuda_visible_devices = Some("0,1".into());
        ctx.nvidia_smi = f.fake_nvidia_smi_text(&probe::fake_nvidia_smi(mode));
        let finished = run_attempt(ctx, &Signals::new().unwrap());
        assert_eq!(finished.exit_code, probe_exit_code(probe_name), "{mode}");
        assert_ne!(
            finished.exit_code, EXIT_PROBE_FAILED,
            "each probe its own code"
        );
        let o = f.outcome();
        match &o.verdict {
            Verdict::ProbeFailed { probe, detail } => {
                assert_eq!(probe, probe_name);
                assert!(detail.contains(sign), "{detail}");
            }
            v => panic!("{mode}: {v:?}"),
        }
        // The passed probes before it are recorded too.
        assert!(o.probes.len() >= 2, "{:?}", o.probes);
        assert!(o.probes[0].ok && !o.probes.last().unwrap().ok);
        assert!(!f.marker("ran").exists());

        // Turned off: the workload runs.
        let f = Fixture::new(r#"echo ran > "$S/ran""#, Some(2));
        f.set_probes(Some(&[]));
        let mut ctx = f.context();
        ctx.cuda_visible_devices = Some("0,1".into());
        ctx.nvidia_smi = f.fake_nvidia_smi_text(&probe::fake_nvidia_smi(mode));
        assert_eq!(run_attempt(ctx, &Signals::new().unwrap()).exit_code, 0);
        assert!(f.outcome().probes.is_empty());
        assert!(f.marker("ran").exists());
    }
}

#[test]
fn setup_failures_exit_98_with_an_outcome() {
    // No spec: the run id comes from the directory name.
    let f = Fixture::new("exit 0", None);
    fs::remove_file(f.run_dir.spec()).unwrap();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_SETUP_FAILED);
    let o = f.outcome();
    assert_eq!(o.run_id.as_str(), "myrun");
    match &o.verdict {
        Verdict::SetupFailed { detail } => assert!(detail.contains("spec.json"), "{detail}"),
        v => panic!("{v:?}"),
    }

    // A corrupt spec.
    let f = Fixture::new("exit 0", None);
    fs::write(f.run_dir.spec(), "{\"version\": 1, \"sp").unwrap();
    assert_eq!(
        run_attempt(f.context(), &Signals::new().unwrap()).exit_code,
        EXIT_SETUP_FAILED
    );
    assert!(matches!(f.outcome().verdict, Verdict::SetupFailed { .. }));

    // No script.
    let f = Fixture::new("exit 0", None);
    fs::remove_file(f.run_dir.script()).unwrap();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_SETUP_FAILED);
    match f.outcome().verdict {
        Verdict::SetupFailed { detail } => {
            assert!(
                detail.contains("cannot read the script snapshot"),
                "{detail}"
            )
        }
        v => panic!("{v:?}"),
    }

    // An attempt directory that does not exist: no outcome, still 98.
    let f = Fixture::new("exit 0", None);
    fs::remove_file(f.run_dir.spec()).unwrap();
    let mut ctx = f.context();
    ctx.attempt = 9;
    let finished = run_attempt(ctx, &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_SETUP_FAILED);
    assert!(!f.run_dir.attempt(9).path().exists());
}

#[test]
fn identity_comes_from_slurm_variables() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let id = Identity::from_lookup(env(&[
        ("SLURM_JOB_ID", "123"),
        ("SLURM_RESTART_COUNT", "2"),
        ("SLURMD_NODENAME", "a100-1"),
    ]))
    .unwrap();
    assert_eq!(
        id,
        Identity {
            job: JobId(123),
            restarts: 2,
            node: "a100-1".into()
        }
    );
    let id = Identity::from_lookup(env(&[("SLURM_JOB_ID", "77")])).unwrap();
    assert_eq!(id.restarts, 0);
    assert!(!id.node.is_empty(), "falls back to the host name");

    let err = Identity::from_lookup(env(&[])).unwrap_err();
    assert!(err.contains("not inside a Slurm job"), "{err}");
    let err = Identity::from_lookup(env(&[("SLURM_JOB_ID", "x1")])).unwrap_err();
    assert!(err.contains("SLURM_JOB_ID"), "{err}");
    let err = Identity::from_lookup(env(&[("SLURM_JOB_ID", "1"), ("SLURM_RESTART_COUNT", "-1")]))
        .unwrap_err();
    assert!(err.contains("SLURM_RESTART_COUNT"), "{err}");
}

#[test]
fn progress_is_written_atomically_or_refused_outside_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("progress-1-0.json");
    write_progress(Some(&path), Some(42), Some("epoch 3".into())).unwrap();
    let p: Progress = atomic::read_json(&path, PROGRESS_VERSION).unwrap();
    assert_eq!(p.step, Some(42));
    assert_eq!(p.message.as_deref(), Some("epoch 3"));
    write_progress(Some(&path), None, Some("é".repeat(5000))).unwrap();
    let p: Progress = atomic::read_json(&path, PROGRESS_VERSION).unwrap();
    assert_eq!(p.step, None);
    assert!(p.message.unwrap().len() <= MAX_PROGRESS_MESSAGE);

    let err = write_progress(None, Some(1), None).unwrap_err().to_string();
    assert!(err.contains("not inside a Shepherd job"), "{err}");
    assert!(err.contains(PROGRESS_FILE_VAR), "{err}");
    let err = write_progress(Some(&dir.path().join("no/such/dir/p.json")), None, None).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot report progress"),
        "{err:#}"
    );
}

impl Fixture {
    /// Sets `--restart-in-place` and writes the run's state (the wrapper
    /// reads its charged failures from it).
    fn restart_in_place(&self, n: u32, failures: u32) {
        let mut file: SpecFile = atomic::read_json(&self.run_dir.spec(), SPEC_VERSION).unwrap();
        file.spec.policy.restart_in_place = n;
        atomic::write_json(&self.run_dir.spec(), &file).unwrap();
        let mut st = crate::policy::RunState::new(Timestamp::now());
        st.workload_failures = failures;
        self.run_dir.save_state(&st).unwrap();
    }

    /// How many times the workload ran (each run appends a line to `runs`).
    fn runs(&self) -> usize {
        fs::read_to_string(self.marker("runs")).map_or(0, |r| r.lines().count())
    }

    /// A workload that fails with a different code each run (`$S/n` counts
    /// them), restartable in place 3 times: the second restart waits
    /// `--backoff-base`. `policy` adjusts the run's policy.
    fn crashing_differently(policy: impl FnOnce(&mut Policy)) -> Fixture {
        let f = Fixture::new(
            r#"n=$(cat "$S/n" 2>/dev/null || echo 0); echo $((n + 1)) > "$S/n"; exit $((n + 1))"#,
            None,
        );
        let mut file: SpecFile = atomic::read_json(&f.run_dir.spec(), SPEC_VERSION).unwrap();
        policy(&mut file.spec.policy);
        atomic::write_json(&f.run_dir.spec(), &file).unwrap();
        f.restart_in_place(3, 0);
        f
    }

    fn outcome_in_place(&self, k: u32) -> Option<Outcome> {
        atomic::read_json(&self.attempt().outcome(JOB, 0, k), OUTCOME_VERSION).ok()
    }
}

#[test]
fn a_crash_is_restarted_in_place_at_once_as_the_next_attempt_of_the_job() {
    // Fails the first time, succeeds the second; each run says who it is.
    let f = Fixture::new(
        r#"echo "$SHEPHERD_ATTEMPT $SHEPHERD_IN_PLACE $SHEPHERD_PROGRESS_FILE" >> "$S/runs"
[ -e "$S/crashed" ] && exit 0
touch "$S/crashed"; echo "ValueError: boom" >&2; exit 3"#,
        None,
    );
    f.restart_in_place(2, 0);
    let t = Instant::now();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 0);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no backoff before the first restart"
    );
    let first = f.outcome_in_place(0).unwrap();
    assert_eq!(first.verdict, Verdict::Exited { code: 3 });
    assert!(first.restarted_in_place);
    assert_eq!((first.attempt, first.in_place), (1, 0));
    assert!(first.stderr_tail.contains("ValueError: boom"));
    let second = f.outcome_in_place(1).unwrap();
    assert_eq!(second.verdict, Verdict::Exited { code: 0 });
    assert!(!second.restarted_in_place);
    assert_eq!((second.attempt, second.in_place), (2, 1));
    assert!(second.started_at >= first.ended_at);
    assert_eq!(finished.outcome.as_ref(), Some(&second));
    assert_eq!(f.heartbeat().unwrap().in_place, 1);
    let runs = fs::read_to_string(f.marker("runs")).unwrap();
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 2, "{runs}");
    let progress = |k| f.attempt().progress(JOB, 0, k).display().to_string();
    assert_eq!(lines[0], format!("1 0 {}", progress(0)));
    assert_eq!(lines[1], format!("2 1 {}", progress(1)));
    assert_ne!(progress(0), progress(1));
}

#[test]
fn the_same_crash_twice_leaves_the_node_and_off_means_never() {
    let f = Fixture::new(
        r#"echo x >> "$S/runs"; echo "KeyError: 'lr'" >&2; exit 1"#,
        None,
    );
    f.restart_in_place(5, 0);
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 1);
    assert_eq!(f.runs(), 2);
    assert!(f.outcome_in_place(0).unwrap().restarted_in_place);
    let last = f.outcome_in_place(1).unwrap();
    assert!(
        !last.restarted_in_place,
        "the same failure again: the job ends"
    );
    assert_eq!(finished.outcome.as_ref(), Some(&last));
    assert!(f.outcome_in_place(2).is_none());

    // Off by default; and no retries left means none either.
    for (n, failures) in [(0, 0), (2, 3)] {
        let f = Fixture::new(r#"echo x >> "$S/runs"; exit 1"#, None);
        f.restart_in_place(n, failures);
        assert_eq!(
            run_attempt(f.context(), &Signals::new().unwrap()).exit_code,
            1
        );
        assert_eq!(f.runs(), 1);
        assert!(!f.outcome().restarted_in_place);
    }
}

#[test]
fn a_node_failing_its_probes_after_a_crash_is_left() {
    // The listing works once (before the first run), then shows a GPU
    // missing: the crash broke the node, and the job leaves it.
    let f = Fixture::new(r#"echo x >> "$S/runs"; exit 1"#, Some(2));
    let mut ctx = f.context();
    ctx.cuda_visible_devices = Some("0,1".into());
    ctx.nvidia_smi = f.fake_nvidia_smi(&format!(
        r#"if [ -e {calls} ]; then echo 'GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-0)'; exit 0; fi
touch {calls}
for i in 0 1; do echo "GPU $i: NVIDIA A100-SXM4-80GB (UUID: GPU-$i)"; done"#,
        calls = f.marker("listed").display()
    ));
    f.set_probes(Some(&["visibility"]));
    f.restart_in_place(2, 0);
    let finished = run_attempt(ctx, &Signals::new().unwrap());
    assert_eq!(finished.exit_code, EXIT_PROBE_FAILED);
    assert_eq!(f.runs(), 1);
    assert!(f.outcome_in_place(0).unwrap().restarted_in_place);
    let probed = f.outcome_in_place(1).unwrap();
    assert!(
        matches!(probed.verdict, Verdict::ProbeFailed { .. }),
        "{:?}",
        probed.verdict
    );
}

#[test]
fn a_stop_during_the_backoff_before_a_restart_ends_the_job() {
    let f = Fixture::crashing_differently(|p| p.backoff_base = Duration::from_secs(600));
    let signals = Signals::new().unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(f.context(), &signals));
        poll("the second run's outcome", || f.outcome_in_place(1));
        signals.raise(SIGTERM);
        let finished = join(run);
        assert_eq!(finished.exit_code, 128 + SIGTERM);
        let o = f.outcome_in_place(2).unwrap();
        assert!(o.terminated);
        assert_eq!(o.verdict, Verdict::Signaled { signal: SIGTERM });
    });
    assert_eq!(fs::read_to_string(f.marker("n")).unwrap().trim(), "2");
}

#[test]
fn the_same_crash_as_the_jobs_before_is_not_restarted_in_place() {
    let f = Fixture::new(
        r#"echo x >> "$S/runs"; echo "KeyError: 'lr'" >&2; exit 1"#,
        None,
    );
    f.restart_in_place(2, 1);
    // What the daemon recorded of the attempt before (its fingerprint).
    let mut st = f.run_dir.load_state().unwrap().unwrap();
    let mut before = crate::policy::state::Attempt::new(1, Timestamp::now());
    before.phase = crate::policy::state::AttemptPhase::Ended;
    let now = Timestamp::now();
    let o = Outcome {
        version: OUTCOME_VERSION,
        run_id: "myrun".parse().unwrap(),
        attempt: 1,
        job_id: JobId(1),
        restarts: 0,
        node: "elsewhere".into(),
        started_at: now,
        ended_at: now,
        verdict: Verdict::Exited { code: 1 },
        probes: vec![],
        terminated: false,
        warned: false,
        stderr_tail: "KeyError: 'lr'\n".into(),
        exit_code: 1,
        in_place: 0,
        restarted_in_place: false,
    };
    before.end = Some(crate::policy::state::AttemptEnd {
        class: crate::policy::state::FailureClass::WorkloadFailure,
        blame: crate::policy::state::Blame::Workload,
        slurm_state: Some("FAILED".into()),
        exit: None,
        detail: "exit 1".into(),
        signature: None,
        fingerprint: crate::policy::verdicts::fingerprint(&o),
        probes: vec![],
    });
    st.attempts.push(before);
    f.run_dir.save_state(&st).unwrap();
    assert_eq!(
        run_attempt(f.context(), &Signals::new().unwrap()).exit_code,
        1
    );
    assert_eq!(f.runs(), 1);
    assert!(!f.outcome().restarted_in_place);
}

#[test]
fn a_crash_that_leaves_processes_behind_is_not_restarted_in_place() {
    let f = Fixture::new(
        r#"echo x >> "$S/runs"; (trap '' TERM; sleep 3) >/dev/null 2>&1 & exit 1"#,
        None,
    );
    f.restart_in_place(2, 0);
    assert_eq!(
        run_attempt(f.context(), &Signals::new().unwrap()).exit_code,
        1
    );
    assert_eq!(f.runs(), 1);
    assert!(!f.outcome().restarted_in_place);
}

#[test]
fn the_time_limit_warning_before_a_restart_ends_the_job_as_slurm_stops_it() {
    // The warning comes during the second backoff.
    let f = Fixture::crashing_differently(|p| {
        p.backoff_base = Duration::from_secs(3);
        p.signal_before = Some(Duration::from_secs(600));
    });
    let signals = Signals::new().unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| run_attempt(f.context(), &signals));
        poll("the second run's outcome", || f.outcome_in_place(1));
        signals.raise(SIGUSR1);
        // Past the backoff (the restart would have run by now): the wrapper
        // holds instead, waiting for Slurm's stop.
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(fs::read_to_string(f.marker("n")).unwrap().trim(), "2");
        signals.raise(SIGTERM);
        let finished = join(run);
        assert_eq!(finished.exit_code, 128 + SIGTERM);
        let o = f.outcome_in_place(2).unwrap();
        assert!(o.terminated && o.warned, "{o:?}");
        assert_eq!(o.verdict, Verdict::Signaled { signal: SIGTERM });
    });
    assert_eq!(fs::read_to_string(f.marker("n")).unwrap().trim(), "2");
}

#[test]
fn a_crash_whose_outcome_cannot_be_recorded_is_not_restarted_in_place() {
    let f = Fixture::new(r#"echo x >> "$S/runs"; exit 1"#, None);
    f.restart_in_place(2, 0);
    // A directory where the outcome goes: every write of it fails.
    fs::create_dir_all(f.attempt().outcome(JOB, 0, 0)).unwrap();
    let finished = run_attempt(f.context(), &Signals::new().unwrap());
    assert_eq!(finished.exit_code, 1);
    assert_eq!(f.runs(), 1, "no restart the daemon could not follow");
    assert!(!finished.outcome.unwrap().restarted_in_place);
    assert!(f.outcome_in_place(1).is_none());
}
