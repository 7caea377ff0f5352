//! The command line as users meet it: every command in human and JSON mode,
//! and the errors (unknown run, Slurm missing or unreachable, state directory
//! not writable, daemon not running, closed pipe).
//!
//! Runs in several states are made without a cluster by driving the daemon's
//! tick against the in-memory Slurm; commands that need Slurm run against a
//! real test cluster.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use shepherd::daemon::tick::Ticker;
use shepherd::model::RunSpec;
use shepherd::slurm::sim::{Behaviour, SimCluster, SimSlurm};
use shepherd::store::StateDir;

use crate::recovery_support::Shepherd;
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);

fn spec(id: &str, now: Timestamp, work: &Path) -> RunSpec {
    let mut s = RunSpec::with_defaults(id.parse().unwrap(), work, now);
    s.policy.max_retries = 0;
    s.policy.heartbeat_grace = Duration::from_secs(3600);
    s
}

/// A state directory with runs `done` (completed), `busy` (running),
/// `broken` (failed), and `mangled` (a corrupt state file), made by the
/// daemon's own tick against the simulated Slurm.
struct Fixture {
    _tmp: tempfile::TempDir,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_extra_runs(0)
    }

    fn with_extra_runs(extra: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let sd = StateDir::new(&state);
        let slurm = SimSlurm::new(SimCluster::test_cluster());
        slurm.on_start(|job| {
            if job.name.starts_with("shepherd.done.") {
                Behaviour::Exit {
                    after: Duration::from_secs(1),
                    code: 0,
                }
            } else if job.name.starts_with("shepherd.broken.") {
                Behaviour::Exit {
                    after: Duration::from_secs(1),
                    code: 3,
                }
            } else {
                Behaviour::RunForever
            }
        });
        let now = slurm.now();
        for id in ["done", "busy", "broken", "mangled"] {
            sd.create_run(&spec(id, now, &work), b"#!/bin/bash\ntrue\n", vec![])
                .unwrap();
        }
        let ticker = Ticker::new(&slurm, &sd, "/bin/shepherd".into());
        for _ in 0..4 {
            ticker.tick(slurm.now());
            slurm.advance(Duration::from_secs(10));
        }
        // Runs no daemon has seen yet: only there to make output long.
        for i in 0..extra {
            let id = format!("extra-{i:04}");
            sd.create_run(&spec(&id, now, &work), b"#!/bin/bash\ntrue\n", vec![])
                .unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("empty-bin")).unwrap();
        let mangled = sd.run(&"mangled".parse().unwrap());
        std::fs::write(mangled.state(), "{\"version\": 1, \"status\": ").unwrap();
        Fixture { _tmp: tmp, state }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shepherd"));
        c.env("SHEPHERD_STATE_DIR", &self.state)
            .env_remove("NO_COLOR")
            // No Slurm here: a command that needs it must say so, not hang.
            .env("PATH", self.state.parent().unwrap().join("empty-bin"))
            .env_remove("SLURM_CONF");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

#[track_caller]
fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "{:?}\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

#[test]
fn runs_are_listed_and_shown_in_human_and_json_mode() {
    let f = Fixture::new();
    let list = f.run(&["list"]);
    ok(&list);
    let text = stdout(&list);
    assert!(text.starts_with("RUN "), "{text}");
    for (run, status) in [
        ("done", "completed"),
        ("busy", "running"),
        ("broken", "failed"),
        ("mangled", "error"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(run) && l.contains(status)),
            "{run} {status}:\n{text}"
        );
    }
    // Piped output is plain, and one daemon-less warning goes to stderr.
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        stderr(&list).contains("note: no daemon has run yet: 1 active run(s) not watched"),
        "{}",
        stderr(&list)
    );

    // --json before or after the subcommand; the same document.
    let a = json(&f.run(&["--json", "list"]));
    let b = json(&f.run(&["list", "--json"]));
    assert_eq!(a, b);
    assert_eq!(a["schema_version"], 1);
    let runs = a["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let mangled = runs.iter().find(|r| r["run_id"] == "mangled").unwrap();
    assert!(
        mangled["error"].as_str().unwrap().contains("corrupt"),
        "{mangled}"
    );

    let s = f.run(&["status", "broken"]);
    ok(&s);
    let text = stdout(&s);
    assert!(
        text.contains("status    failed") && text.contains("exit 3"),
        "{text}"
    );
    let s = json(&f.run(&["status", "busy", "--json"]));
    assert_eq!(s["run"]["status"], "running");
    assert_eq!(s["run"]["attempts"][0]["phase"], "running");
    // A quarantined run: its document, and a non-zero exit.
    let m = f.run(&["status", "mangled"]);
    assert_eq!(m.status.code(), Some(1), "{}", stderr(&m));
    assert!(stderr(&m).contains("cannot be read"), "{}", stderr(&m));
    // With --json: exactly one document, the run's, and still exit 1.
    let m = f.run(&["status", "mangled", "--json"]);
    assert_eq!(m.status.code(), Some(1), "{}", stderr(&m));
    let doc = json(&m);
    assert_eq!(doc["run"]["status"], "error");
    assert!(doc["run"]["error"].as_str().unwrap().contains("corrupt"));

    let e = f.run(&["events", "done"]);
    ok(&e);
    assert!(stdout(&e).contains("submitted"), "{}", stdout(&e));
    let e = json(&f.run(&["events", "done", "--json"]));
    let kinds: Vec<&str> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"submit") && kinds.contains(&"attempt_ended"),
        "{kinds:?}"
    );

    // Without a terminal, `shepherd` alone prints the list.
    let bare = f.run(&[]);
    ok(&bare);
    assert_eq!(stdout(&bare), text_of_list(&f));
}

fn text_of_list(f: &Fixture) -> String {
    stdout(&f.run(&["list"]))
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    let f = Fixture::new();
    let always = stdout(&f.run(&["list", "--color", "always"]));
    assert!(always.contains("\x1b[32mrunning\x1b[0m"), "{always:?}");
    // Columns stay aligned around the escapes.
    let plain = stdout(&f.run(&["list", "--color", "never"]));
    let strip = |s: &str| {
        s.replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[0m", "")
    };
    let strip_all = |s: &str| {
        let mut s = strip(s);
        for code in ["\x1b[33m", "\x1b[34m", "\x1b[2m"] {
            s = s.replace(code, "");
        }
        s
    };
    assert_eq!(strip_all(&always), plain);
    // auto: never on a pipe, whatever NO_COLOR says.
    let auto = stdout(&f.run(&["list", "--color", "auto"]));
    assert!(!auto.contains('\x1b'));
    let bad = f.run(&["list", "--color", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn an_unknown_run_suggests_close_ids_in_both_modes() {
    let f = Fixture::new();
    for cmd in [
        &["status", "bsy"][..],
        &["events", "bsy"],
        &["logs", "bsy"],
        &["stop", "bsy"],
        &["control", "pause", "bsy"],
        &["rm", "bsy"],
    ] {
        let o = f.run(cmd);
        assert_eq!(o.status.code(), Some(5), "{cmd:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no run named \"bsy\"; did you mean busy?"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }
    let o = f.run(&["status", "nothing-like-it", "--json"]);
    assert_eq!(o.status.code(), Some(5));
    let e = json(&o);
    assert_eq!(e["schema_version"], 1);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`shepherd list` shows the runs"),
        "{e}"
    );
}

#[test]
fn rm_removes_ended_runs_and_refuses_active_ones() {
    let f = Fixture::new();
    let o = f.run(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is running") && stderr(&o).contains("rm --force busy"),
        "{}",
        stderr(&o)
    );
    ok(&f.run(&["rm", "done"]));
    let r = json(&f.run(&["rm", "broken", "--json"]));
    assert_eq!(r["removed"], "broken");
    // A quarantined run is not removed blind: its job might still run.
    let o = f.run(&["rm", "mangled"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("rm --force mangled"), "{}", stderr(&o));
    // --force looks for its jobs first; without Slurm nothing is removed.
    let o = f.run(&["rm", "--force", "mangled"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was removed"), "{}", stderr(&o));
    assert!(f.state.join("runs/mangled").exists());
    std::fs::remove_dir_all(f.state.join("runs/mangled")).unwrap();
    let ids: Vec<String> = json(&f.run(&["list", "--json"]))["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["busy"]);
    assert!(!f.state.join("runs/done").exists());
    let again = f.run(&["rm", "done"]);
    assert_eq!(again.status.code(), Some(5));
}

#[test]
fn json_mode_prints_one_document_even_for_usage_errors() {
    let f = Fixture::new();
    for args in [
        &["--json", "list", "--bogus"][..],
        &["status", "--json"],
        &["wait", "done", "--timeout", "soon", "--json"],
        &["--json", "nodes", "frobnicate"],
    ] {
        let o = f.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let doc = json(&o);
        assert_eq!(doc["error"]["kind"], "usage", "{args:?}: {doc}");
        assert!(!doc["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(stdout(&o).lines().count(), 1, "{args:?}");
    }
    // Without --json (or with it only after `--`), clap's own text on stderr.
    let o = f.run(&["list", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty() && stderr(&o).contains("--bogus"));
    // --help is not an error, JSON or not.
    let o = f.run(&["--json", "--help"]);
    ok(&o);
    assert!(stdout(&o).contains("Usage"));
}

#[test]
fn daemon_stop_never_signals_a_process_it_has_not_verified() {
    use shepherd::daemon::lease::{Lease, hostname, lease_path};
    let f = Fixture::new();
    let daemon_dir = f.state.join("daemon");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let write_lease = |pid: u32, heartbeat: Timestamp| {
        let lease = Lease {
            version: 1,
            host: hostname(),
            pid,
            started_at: heartbeat,
            heartbeat_at: heartbeat,
            poll_interval_secs: 10,
            started_by: shepherd::daemon::lease::StartedBy::Start,
            slurm_job_id: None,
        };
        std::fs::write(lease_path(&daemon_dir), serde_json::to_vec(&lease).unwrap()).unwrap();
    };
    // An unrelated process of ours, and one whose command line looks like a
    // daemon's but that holds no lock.
    use std::os::unix::process::CommandExt;
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut sleeper = quiet(Command::new("sleep").arg("60"));
    let mut lookalike = quiet(Command::new("sh").args(["-c", "sleep 60; :", "daemon", "run"]));
    let future = Timestamp::now() + jiff::SignedDuration::from_hours(24);
    for (pid, at, says) in [
        (sleeper.id(), Timestamp::now(), "no daemon was running"),
        (lookalike.id(), future, "no daemon was running"),
        (lookalike.id(), Timestamp::now(), "no daemon holds"),
    ] {
        write_lease(pid, at);
        let o = f.run(&["daemon", "stop"]);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(text.contains(says), "pid {pid} at {at}: {text}");
        assert_eq!(sleeper.try_wait().unwrap(), None, "not signalled");
        assert_eq!(lookalike.try_wait().unwrap(), None, "not signalled");
    }
    // A lease from a clock a day ahead is no live daemon for `run` either.
    write_lease(lookalike.id(), future);
    let o = f.run(&["daemon", "status"]);
    assert!(stdout(&o).contains("no daemon running"), "{}", stdout(&o));
    for p in [&sleeper, &lookalike] {
        let group = rustix::process::Pid::from_raw(p.id() as i32).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    }
    let _ = (sleeper.wait(), lookalike.wait());
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs (it runs as root in CI): {}",
            stderr(&o)
        );
        SmallDisk { dir }
    }

    /// Fills the filesystem to the last byte.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut small = vec![0u8; 512];
        loop {
            use std::io::Write;
            match f.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        while std::io::Write::write(&mut f, &small).is_ok_and(|n| n > 0) {}
        small.truncate(1);
        while std::io::Write::write(&mut f, &small).is_ok_and(|n| n > 0) {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_daemon_that_cannot_renew_its_lease_stops_acting_and_exits() {
    let disk = SmallDisk::mount("2m");
    let state = disk.dir.path().join("state");
    let empty_bin = disk.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let shepherd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shepherd"))
            .env("SHEPHERD_STATE_DIR", &state)
            .env("PATH", &empty_bin)
            .env_remove("SLURM_CONF")
            .args(args)
            .output()
            .unwrap()
    };
    let started = json(&shepherd(&[
        "daemon",
        "start",
        "--poll-interval",
        "1s",
        "--json",
    ]));
    let pid = started["daemon"]["pid"].as_u64().unwrap() as u32;
    assert!(stdout(&shepherd(&["daemon", "status"])).contains("daemon running"));
    let filler = disk.fill();
    // It gives up within three polls of the first failed renewal.
    poll(Duration::from_secs(20), "the daemon to exit", || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            Err(format!("pid {pid} still runs"))
        } else {
            Ok(())
        }
    });
    std::fs::remove_file(filler).unwrap();
    let o = shepherd(&["daemon", "status"]);
    assert!(stdout(&o).contains("no daemon running"), "{}", stdout(&o));
    // And a new one starts once there is room again.
    ok(&shepherd(&["daemon", "start", "--poll-interval", "1s"]));
    ok(&shepherd(&["daemon", "stop"]));
}

#[test]
fn wait_exits_with_the_runs_end() {
    let f = Fixture::new();
    let o = f.run(&["wait", "done"]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("run done completed"),
        "{}",
        stdout(&o)
    );
    let o = f.run(&["wait", "broken", "--json"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(json(&o)["run"]["status"], "failed");
    // Still running when the timeout passes: 9, and the run as it stands.
    let o = f.run(&["wait", "busy", "--timeout", "1s", "--json"]);
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert_eq!(json(&o)["run"]["status"], "running");
    // No daemon watches the fixture's runs: said once, on stderr.
    assert_eq!(
        stderr(&o).matches("not being watched").count(),
        1,
        "{}",
        stderr(&o)
    );
    // A run whose end cannot be known is an error, not a hang.
    let o = f.run(&["wait", "mangled", "--timeout", "1m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot be read"), "{}", stderr(&o));
    assert_eq!(f.run(&["wait", "nope"]).status.code(), Some(5));
    let o = f.run(&["wait", "busy", "--timeout", "99999d"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "durations are bounded at parse time"
    );

    // A waiting `wait` returns as soon as the run ends.
    let mut waiting = f
        .command()
        .args(["wait", "busy", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = StateDir::new(&f.state).run(&"busy".parse().unwrap());
    let mut st = run.load_state().unwrap().unwrap();
    st.status = shepherd::policy::state::RunStatus::Stopped;
    run.save_state(&st).unwrap();
    let status = poll(Duration::from_secs(10), "wait to return", || {
        waiting
            .try_wait()
            .unwrap()
            .ok_or("still waiting".to_string())
    });
    assert_eq!(status.code(), Some(8));
    let mut out = String::new();
    waiting
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["run"]["status"], "stopped");
}

#[test]
fn slurm_missing_or_unreachable_is_a_clear_error_not_a_hang() {
    let f = Fixture::new();
    // No Slurm commands on PATH.
    for cmd in [&["nodes"][..], &["gpus"], &["nodes", "ban", "x"]] {
        let o = f.run(cmd);
        assert_eq!(o.status.code(), Some(3), "{cmd:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("install the Slurm client tools"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }
    let e = json(&f.run(&["gpus", "--json"]));
    assert_eq!(e["error"]["kind"], "not_found", "{e}");

    // Slurm installed, SLURM_CONF wrong: said at once, not after a timeout.
    let o = f
        .command()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("SLURM_CONF", "/nonexistent/slurm.conf")
        .args(["nodes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("SLURM_CONF is /nonexistent/slurm.conf, which does not exist"),
        "{}",
        stderr(&o)
    );

    // Slurm installed, but its controller does not answer.
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("slurm.conf");
    std::fs::write(
        &conf,
        "ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=1\n\
         AuthType=auth/none\nCredType=cred/none\n",
    )
    .unwrap();
    let o = f
        .command()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("SLURM_CONF", &conf)
        .args(["nodes", "--slurm-timeout", "5s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("scontrol ping") || stderr(&o).contains("SLURM_CONF"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unwritable_state_directory_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("x.sh");
    std::fs::write(&script, "#!/bin/bash\ntrue\n").unwrap();
    // Not writable even by root.
    let o = Command::new(env!("CARGO_BIN_EXE_shepherd"))
        .args(["--state-dir", "/sys/shepherd-state", "run"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("cannot create the run") && err.contains("state directory"),
        "{err}"
    );
    // The operating system's words are said once, not twice.
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // More output than a pipe holds (64 KiB).
    let f = Fixture::with_extra_runs(1000);
    let mut child = f
        .command()
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let err = stderr(&out);
    assert!(!err.contains("error") && !err.contains("panick"), "{err}");
}

#[test]
fn version_help_and_completions() {
    let f = Fixture::new();
    let v = f.run(&["--version"]);
    ok(&v);
    assert!(
        stdout(&v).starts_with(&format!("shepherd {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&v)
    );
    let h = f.run(&["--help"]);
    ok(&h);
    for cmd in [
        "run",
        "list",
        "status",
        "rm",
        "control",
        "completions",
        "tui",
    ] {
        assert!(stdout(&h).contains(cmd), "{cmd}: {}", stdout(&h));
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let c = f.run(&["completions", shell]);
        ok(&c);
        assert!(
            stdout(&c).contains("shepherd") && stdout(&c).contains("unpause"),
            "{shell}"
        );
    }
    // The bash completion loads in bash and completes subcommands.
    let c = stdout(&f.run(&["completions", "bash"]));
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{c}\nCOMP_WORDS=(shepherd unp); COMP_CWORD=1; _shepherd shepherd unp shepherd; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "unpause", "{}", stderr(&o));
}

#[test]
fn every_run_command_against_the_test_cluster() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let fast = "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s\n";
    let path = shep.work.join("loop.sh");
    std::fs::write(
        &path,
        format!("#!/bin/bash\n#SBATCH --partition=cpu\n{fast}for i in $(seq 1000); do echo tick $i; sleep 1; done\n"),
    )
    .unwrap();
    let r: Value = serde_json::from_str(&shep.ok(&[path.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(r["run"]["run_id"], "loop", "{r}");
    let s = shep.wait_status("loop", &["running"], LONG);
    let job = s["slurm_job_id"].as_u64().unwrap().to_string();
    poll(LONG, "two lines of output", || {
        let out = shep.ok(&["logs", "loop", "-n", "1"]);
        out.contains("tick ")
            .then_some(())
            .filter(|()| !out.contains("tick 1\n"))
            .ok_or(out)
    });

    // Logs as JSON Lines: one object per output line.
    let lines: Vec<Value> = shep
        .ok(&["logs", "loop", "-n", "2", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert_eq!(l["run_id"], "loop");
        assert_eq!(l["attempt"], 1);
        assert_eq!(l["stream"], "stdout");
        assert!(l["line"].as_str().unwrap().starts_with("tick "), "{l}");
    }

    // Controls, through `control OP` and the plain verbs, human and JSON.
    let p: Value = serde_json::from_str(&shep.ok(&["control", "pause", "loop", "--json"])).unwrap();
    assert_eq!(p["requested"]["control"], "pause");
    shep.wait_until("loop", "paused", LONG, |s| s["paused"] == true);
    assert!(
        shep.ok(&["unpause", "loop"])
            .contains("unpause requested for run loop")
    );
    shep.wait_until("loop", "unpaused", LONG, |s| s["paused"] == false);
    shep.ok(&["restart", "loop"]);
    let s = shep.wait_until("loop", "restarted", LONG, |s| {
        s["attempts"].as_array().map(Vec::len) == Some(2) && s["status"] == "running"
    });
    let second = s["slurm_job_id"].as_u64().unwrap().to_string();
    assert_ne!(second, job);

    // The daemon is running: no warning.
    let out = shep.run(&["list"]);
    assert!(!stderr(&out).contains("no daemon"), "{}", stderr(&out));
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    assert!(d["daemon"]["pid"].as_u64().is_some(), "{d}");

    // rm --force stops the run (its job is cancelled), then removes it.
    let removed = shep.ok(&["rm", "--force", "loop"]);
    assert_eq!(removed, "removed run loop\n");
    let q = cluster.slurm_ok("squeue", &["-h", "-j", &second, "-o", "%T"]);
    assert!(!q.contains("RUNNING") && !q.contains("PENDING"), "{q}");
    let l: Value = serde_json::from_str(&shep.ok(&["list", "--json"])).unwrap();
    assert_eq!(l["runs"], Value::Array(vec![]));

    // A run whose state a newer Shepherd wrote, with a live job: plain `rm`
    // refuses (its job could not be cancelled), `rm --force` finds the job
    // by name and cancels it.
    shep.ok(&[path.to_str().unwrap(), "--run-id", "newer"]);
    let s = shep.wait_status("newer", &["running"], LONG);
    let live = s["slurm_job_id"].as_u64().unwrap().to_string();
    let state = shep.state.join("runs/newer/state.json");
    std::fs::write(&state, "{\"version\": 99, \"status\": \"hyperspace\"}").unwrap();
    let o = shep.run(&["rm", "newer"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot be read") && stderr(&o).contains("rm --force newer"),
        "{}",
        stderr(&o)
    );
    let q = cluster.slurm_ok("squeue", &["-h", "-j", &live, "-o", "%T"]);
    assert!(q.contains("RUNNING"), "refused, and the job untouched: {q}");
    let o = shep.run(&["rm", "--force", "newer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("cancelled job(s) {live}")),
        "{}",
        stderr(&o)
    );
    poll(LONG, "the job to end", || {
        let q = cluster.slurm_ok("squeue", &["-h", "-j", &live, "-o", "%T"]);
        (!q.contains("RUNNING") && !q.contains("PENDING"))
            .then_some(())
            .ok_or(q)
    });

    // Ban reasons are shared between users: printed, they cannot drive the
    // terminal.
    shep.ok(&[
        "nodes",
        "ban",
        "cpu-1",
        "--ttl",
        "1h",
        "--reason",
        "x\x1b]52;c;ZXZpbA==\x07\x1b[2J",
    ]);
    let text = shep.ok(&["nodes"]);
    let line = text.lines().find(|l| l.starts_with("cpu-1")).unwrap();
    assert!(
        !line.contains('\x1b') && line.contains("x^[]52;c;ZXZpbA==^G^[[2J"),
        "{line:?}"
    );
    shep.ok(&["nodes", "unban", "cpu-1"]);

    // Nodes and GPUs, both modes.
    let n: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    assert_eq!(n["nodes"]["nodes"].as_array().unwrap().len(), 8, "{n}");
    assert!(shep.ok(&["nodes"]).starts_with("NODE "));
    let b: Value = serde_json::from_str(&shep.ok(&[
        "nodes", "ban", "cpu-2", "--ttl", "1h", "--reason", "flaky", "--json",
    ]))
    .unwrap();
    assert_eq!(b["banned"], "cpu-2");
    assert!(
        shep.ok(&["nodes"])
            .lines()
            .any(|l| l.starts_with("cpu-2") && l.contains("flaky"))
    );
    assert_eq!(shep.ok(&["nodes", "unban", "cpu-2"]), "unbanned cpu-2\n");
    let g: Value = serde_json::from_str(&shep.ok(&["gpus", "--json"])).unwrap();
    assert!(g["partitions"].as_array().unwrap().len() >= 3, "{g}");
    assert!(shep.ok(&["gpus"]).contains("PARTITION"));

    assert!(shep.ok(&["daemon", "stop"]).starts_with("daemon stopped"));
    shep.assert_no_duplicates();
}
