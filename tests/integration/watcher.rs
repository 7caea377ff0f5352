//! The watcher survives the login node: a daemon killed and never restarted
//! by hand is brought back by `daemon ensure` run as cron runs it, the lease
//! decides between login nodes racing to start one, and `daemon install`
//! edits the user's real crontab (Debian's `crontab`) and nothing else in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::{Shepherd, outcomes};
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);

const FAST: &str =
    "#SHEPHERD --heartbeat-interval 1s --heartbeat-grace 5m --backoff-base 1s --backoff-max 2s\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a crontab line's command as Debian's cron does: `/bin/sh -c` in an
/// environment of HOME, LOGNAME, SHELL and PATH=/usr/bin:/bin only, with
/// `\%` read as `%` (crontab(5)).
fn as_cron_runs(line: &str) -> Output {
    let command = line
        .strip_prefix("*/5 * * * * ")
        .unwrap_or_else(|| panic!("not an every-5-minutes line: {line}"))
        .replace("\\%", "%");
    Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", "/root")
        .env("LOGNAME", "root")
        .env("SHELL", "/bin/sh")
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run /bin/sh")
}

/// A run whose first attempt runs until its node fails, on `partition`;
/// not requeueable: after the node crash Slurm ends the job (NODE_FAIL),
/// and only a daemon submits the next attempt. Returns it running.
fn run_that_waits_for_a_daemon(shep: &Shepherd, script: &str, partition: &str) -> (String, Value) {
    let run = shep.submit(
        script,
        &format!(
            "#!/bin/bash\n#SBATCH --partition={partition} --no-requeue\n{FAST}\
             if [ \"$SHEPHERD_ATTEMPT\" = 1 ]; then sleep 600; fi\necho fine\n"
        ),
        &[],
    );
    let s = shep.wait_status(&run, &["running"], LONG);
    (run, s)
}

/// SIGKILLs the live daemon, as a login node's reaper or the OOM killer
/// would (no clean exit: its lease stays); returns its pid and what had
/// started it, once it is gone.
fn kill_the_daemon(shep: &Shepherd) -> (u64, String) {
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    let pid = d["daemon"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no daemon: {d}"));
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    poll(LONG, "the daemon to die", || {
        match Path::new(&format!("/proc/{pid}")).exists() {
            true => Err(format!("pid {pid} still alive")),
            false => Ok(()),
        }
    });
    (
        pid,
        d["daemon"]["started_by"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_killed_daemon_comes_back_through_ensure_as_cron_runs_it_and_the_run_recovers() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let (run, s) = run_that_waits_for_a_daemon(&shep, "overnight.sh", "cpu");
    let node = s["node"].as_str().unwrap().to_string();
    let job = s["slurm_job_id"].as_u64().unwrap().to_string();

    // The login node's reaper (or the OOM killer) kills the daemon: no
    // clean exit, its lease left behind.
    let (pid, how) = kill_the_daemon(&shep);
    assert_eq!(how, "command");
    // Nothing watches the run now, and list says since when.
    let out = shep.run(&["list"]);
    let note = text(&out.stderr);
    assert!(
        note.contains("no daemon since ") && note.contains("1 active run(s) not watched"),
        "{note}"
    );
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    assert_eq!(d["daemon"], Value::Null);
    assert!(d["last_seen"].is_string(), "{d}");

    // The node crashes under the run; Slurm ends the job, nobody acts.
    cluster.inject(&["crash", &node]);
    poll(LONG, "Slurm to end the job with its node", || {
        let s = cluster.slurm_ok("scontrol", &["-o", "show", "job", &job]);
        match s.contains("JobState=NODE_FAIL") {
            true => Ok(()),
            false => Err(s),
        }
    });
    assert_eq!(
        shep.status(&run)["status"],
        "running",
        "no daemon: nothing acted"
    );

    // Cron's line, as `daemon install` writes it, run as cron runs it.
    let block = shep.ok(&["daemon", "install", "--dry-run"]);
    let line = block
        .lines()
        .find(|l| l.starts_with("*/5 "))
        .unwrap_or_else(|| panic!("no periodic line in:\n{block}"));
    assert!(block.lines().any(|l| l.starts_with("@reboot ")), "{block}");
    let first = as_cron_runs(line);
    assert!(first.status.success(), "{first:?}");
    assert!(
        text(&first.stdout).contains("no daemon was running")
            && text(&first.stdout).contains("started one"),
        "{first:?}"
    );
    // Run again (cron every 5 minutes): a no-op, and silent (cron mails
    // whatever a job prints).
    let again = as_cron_runs(line);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        (text(&again.stdout), text(&again.stderr)),
        (String::new(), String::new())
    );

    let s = shep.wait_status(&run, &["completed"], Duration::from_secs(180));
    assert_eq!(outcomes(&s), ["node_fault", "success"]);
    assert_eq!(s["attempts"][0]["node"], node.as_str());
    assert_ne!(s["attempts"][1]["node"], node.as_str());
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    assert_eq!(d["daemon"]["started_by"], "ensure", "{d}");
    assert_ne!(d["daemon"]["pid"].as_u64(), Some(pid));
    // One daemon at a time: the log shows the second start after the first,
    // and the killed daemon never logged again.
    let log = std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("daemon started"))
        .collect();
    assert_eq!(starts.len(), 2, "{log}");
    assert!(starts[1].contains("`daemon ensure`"), "{log}");
    shep.assert_no_duplicates();

    // Stopped by the user: cron leaves it stopped, silently, until a user
    // starts one.
    shep.ok(&["daemon", "stop"]);
    let quiet = as_cron_runs(line);
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(text(&quiet.stdout), "", "{quiet:?}");
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    assert_eq!(d["daemon"], Value::Null, "{d}");
    assert!(d["stopped_at"].is_string(), "{d}");
    assert!(
        shep.ok(&["daemon", "status"])
            .contains("stopped with `shepherd daemon stop`"),
        "the human status says why"
    );
    shep.ok(&["daemon", "start"]);
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
    assert_eq!(d["daemon"]["started_by"], "start", "{d}");
    assert_eq!(d["stopped_at"], Value::Null, "{d}");
    let said = shep.ok(&["daemon", "status"]);
    assert!(said.contains("started by `daemon start`"), "{said}");
    assert!(said.contains("keeper: off"), "{said}");
}

/// `shepherd ARGS` on a login node called `host` (its own UTS namespace:
/// the lease names the host the daemon runs on), with no Slurm: the daemon
/// runs and finds Slurm unavailable, which is all these tests need.
fn on_host(host: &str, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--uts", "/bin/sh", "-c"])
        .arg(format!(
            "echo {host} > /proc/sys/kernel/hostname && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_shepherd"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("SHEPHERD_POLL_INTERVAL", "1s")
        .env_remove("SHEPHERD_STATE_DIR")
        .env_remove("SLURM_CONF")
        .stdin(Stdio::null());
    c
}

/// The pids of `daemon run` processes for this state directory.
fn daemons_of(state: &Path) -> Vec<u32> {
    let want = state.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cl) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cl.split(|b| *b == 0).collect();
            args.windows(2).any(|w| w == [&b"daemon"[..], &b"run"[..]]) && args.contains(&want)
        })
        .collect()
}

#[test]
fn two_login_nodes_racing_daemon_ensure_leave_one_daemon_and_the_other_host_defers() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let spawn = |host: &str| {
        on_host(host, &state, &["daemon", "ensure", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("login-1"), spawn("login-2"));
    let answers: Vec<Value> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let started: Vec<bool> = answers
        .iter()
        .map(|a| a["started"].as_bool().unwrap())
        .collect();
    assert_eq!(
        started.iter().filter(|s| **s).count(),
        1,
        "exactly one started a daemon: {answers:?}"
    );
    // Both name the one daemon (read at different ticks).
    let who = |a: &Value| (a["daemon"]["host"].clone(), a["daemon"]["pid"].clone());
    assert_eq!(who(&answers[0]), who(&answers[1]), "{answers:?}");
    let winner = answers[0]["daemon"]["host"].as_str().unwrap().to_string();
    let loser = if winner == "login-1" {
        "login-2"
    } else {
        "login-1"
    };
    let pids = daemons_of(&state);
    assert_eq!(pids.len(), 1, "one daemon process: {pids:?}");

    // Cron on the other login node, minutes later: the fresh lease of a
    // daemon on another host is left alone, silently.
    let out = on_host(loser, &state, &["daemon", "ensure"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "", "{out:?}");
    assert_eq!(daemons_of(&state), pids);
    let status: Value = serde_json::from_slice(
        &on_host(loser, &state, &["daemon", "status", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(status["daemon"]["host"], winner.as_str(), "{status}");
    assert_eq!(status["daemon"]["started_by"], "ensure");

    // Only its own host stops it.
    let out = on_host(loser, &state, &["daemon", "stop"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("runs on {winner}")),
        "{out:?}"
    );
    let out = on_host(&winner, &state, &["daemon", "stop"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(daemons_of(&state).is_empty());
}

/// Runs `cmd` as the user `nobody` (a user of the machine with no crontab
/// of its own, so the test never touches root's).
fn as_nobody(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env_remove("SHEPHERD_STATE_DIR")
        .current_dir("/")
        .output()
        .expect("run setpriv")
}

fn crontab(args: &[&str], input: Option<&str>) -> Output {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "crontab",
    ])
    .args(args)
    .current_dir("/");
    match input {
        None => c.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

/// A copy of the binary that `nobody` can run (the build directory may be
/// in root's home).
fn binary_for_nobody(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("shepherd");
    std::fs::copy(env!("CARGO_BIN_EXE_shepherd"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// Restores /etc/cron.deny as it was, whatever the test does to it.
struct CronDeny(Option<Vec<u8>>);

impl Drop for CronDeny {
    fn drop(&mut self) {
        match &self.0 {
            Some(old) => std::fs::write("/etc/cron.deny", old).unwrap(),
            None => {
                let _ = std::fs::remove_file("/etc/cron.deny");
            }
        }
    }
}

#[test]
fn install_and_uninstall_edit_the_real_crontab_and_keep_the_users_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = binary_for_nobody(tmp.path());
    // Owned by `nobody` (install keeps a copy of the crontab there); a
    // space in its path, to be quoted in the crontab line.
    let state = tmp.path().join("my state");
    std::fs::create_dir(&state).unwrap();
    assert!(
        Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(&state)
            .status()
            .unwrap()
            .success()
    );
    let state = state.as_path();
    let shepherd = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.arg("--state-dir").arg(state).args(args);
        as_nobody(&mut c)
    };
    // The user's own crontab, which must come back byte for byte.
    let _ = crontab(&["-r"], None);
    let mine = "MAILTO=\"\"\n# nightly backup\n0 3 * * * true\n";
    assert!(crontab(&["-"], Some(mine)).status.success());

    let out = shepherd(&["daemon", "install", "--every", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).starts_with("installed in your crontab"),
        "{out:?}"
    );
    let installed = text(&crontab(&["-l"], None).stdout);
    assert!(installed.starts_with(mine), "{installed}");
    let rest = &installed[mine.len()..];
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 4, "{installed}");
    assert!(lines[1].starts_with("@reboot "), "{installed}");
    assert!(lines[2].starts_with("*/2 * * * * "), "{installed}");
    assert!(
        lines[2].contains(&format!(
            "{} --state-dir '{}'",
            exe.display(),
            state.display()
        )),
        "{installed}"
    );
    // Idempotent; and `daemon status` knows cron keeps it alive.
    let out = shepherd(&["daemon", "install", "--every", "2"]);
    assert!(
        text(&out.stdout).starts_with("already in your crontab"),
        "{out:?}"
    );
    assert_eq!(text(&crontab(&["-l"], None).stdout), installed);
    let status: Value =
        serde_json::from_slice(&shepherd(&["daemon", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["crontab"], true, "{status}");

    let out = shepherd(&["daemon", "uninstall"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&crontab(&["-l"], None).stdout), mine);
    // The crontab as it was before each change is kept, privately.
    assert_eq!(
        std::fs::read_to_string(state.join("daemon/crontab.before")).unwrap(),
        installed
    );
    let out = shepherd(&["daemon", "uninstall"]);
    assert!(text(&out.stdout).contains("nothing changed"), "{out:?}");

    // A user cron refuses: a clear error naming the way out, nothing changed.
    let _restore = CronDeny(std::fs::read("/etc/cron.deny").ok());
    std::fs::write("/etc/cron.deny", "nobody\n").unwrap();
    let out = shepherd(&["daemon", "install"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read your crontab")
            && err.contains("not allowed")
            && err.contains("--dry-run"),
        "{err}"
    );
    drop(_restore);
    assert_eq!(text(&crontab(&["-l"], None).stdout), mine);
    let _ = crontab(&["-r"], None);
}

#[test]
fn with_no_daemon_a_keeper_inside_slurm_recovers_the_run_and_hands_back_to_a_login_daemon() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    std::fs::create_dir_all(&shep.state).unwrap();
    std::fs::write(
        shep.state.join("config.toml"),
        "[keeper]\nenabled = true\nafter = \"5s\"\npartition = \"cpu\"\ntime_limit = \"10m\"\n",
    )
    .unwrap();
    let keeper_name =
        shepherd::daemon::keeper::job_name(&shepherd::store::StateDir::new(shep.state.clone()));
    let keepers = |states: &str| -> Vec<String> {
        cluster
            .slurm_ok(
                "squeue",
                &["-h", "-n", &keeper_name, "-t", states, "-o", "%i %T"],
            )
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (run, s) = run_that_waits_for_a_daemon(&shep, "unwatched.sh", "a6000");
    let node = s["node"].as_str().unwrap().to_string();
    let (pid, _) = kill_the_daemon(&shep);

    // The run's own job notices the lease going stale and asks for a keeper.
    let d = poll(LONG, "a keeper job to hold the lease", || {
        let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
        match d["daemon"]["started_by"].as_str() {
            Some("keeper") => Ok(d),
            _ => Err(d.to_string()),
        }
    });
    assert_ne!(d["daemon"]["pid"].as_u64(), Some(pid));
    assert_eq!(keepers("RUNNING").len(), 1, "one keeper runs");
    let said = shep.ok(&["daemon", "status"]);
    assert!(
        said.contains("a keeper job inside Slurm")
            && said.contains("keeper: on: a job that finds no daemon for 5s asks for one on cpu"),
        "{said}"
    );
    poll(LONG, "the keeper to queue its successor", || {
        let pending = keepers("PENDING");
        match pending.len() {
            1 => Ok(()),
            _ => Err(format!("{pending:?}")),
        }
    });

    // The node crashes under the run: the keeper recovers it.
    cluster.inject(&["crash", &node]);
    let s = shep.wait_status(&run, &["completed"], Duration::from_secs(180));
    assert_eq!(outcomes(&s), ["node_fault", "success"]);
    assert_ne!(s["attempts"][1]["node"], node.as_str());

    // A login node can run the daemon again (cron's `daemon ensure`): the
    // keeper hands the lease back, cancels its successor and ends.
    let d: Value = serde_json::from_str(&shep.ok(&["daemon", "ensure", "--json"])).unwrap();
    assert_eq!(d["started"], true, "{d}");
    assert_eq!(d["daemon"]["started_by"], "ensure", "{d}");
    poll(LONG, "the keeper and its successor to be gone", || {
        let left = keepers("PENDING,RUNNING");
        match left.is_empty() {
            true => Ok(()),
            false => Err(format!("{left:?}")),
        }
    });
    // Never two daemons at once: the keeper let go before the login-node
    // daemon started.
    let log = std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap();
    let at = |what: &str| {
        log.lines()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"))
    };
    assert!(
        at("handing it back") < at("started by `daemon ensure`"),
        "{log}"
    );
    assert!(
        at("a keeper job inside Slurm") < at("handing it back"),
        "{log}"
    );
    // Every keeper ended as it should: its successor cancelled, not
    // started; none of them failed (a panic in the hand-back once let the
    // successor take the lease from the login-node daemon).
    assert_eq!(log.matches("a keeper job inside Slurm").count(), 1, "{log}");
    for f in std::fs::read_dir(shep.state.join("daemon")).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("keeper-") && name.ends_with(".out") {
            let out = std::fs::read_to_string(&f).unwrap();
            assert!(out.trim().is_empty(), "{}: {out}", f.display());
        }
    }
    shep.assert_no_duplicates();

    // Killed again, with no run to notice: a keeper asked for by hand, then
    // `daemon stop` ends it for good (no successor, no lease left to go
    // stale and make a job ask for another).
    kill_the_daemon(&shep);
    let asked: Value = serde_json::from_str(&shep.ok(&["daemon", "keeper", "--json"])).unwrap();
    let job = asked["keeper"]["submitted"]
        .as_u64()
        .unwrap_or_else(|| panic!("{asked}"));
    let d = poll(LONG, "the keeper to hold the lease", || {
        let d: Value = serde_json::from_str(&shep.ok(&["daemon", "status", "--json"])).unwrap();
        match d["daemon"]["started_by"].as_str() {
            Some("keeper") => Ok(d),
            _ => Err(format!(
                "{d}; keeper {job}: {}; its output: {}",
                cluster.slurm_ok("scontrol", &["-o", "show", "job", &job.to_string()]),
                std::fs::read_to_string(shep.state.join(format!("daemon/keeper-{job}.out")))
                    .unwrap_or_default(),
            ) + &format!(
                "; daemon log:\n{}\nprocesses: {}",
                std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap_or_default(),
                text(
                    &Command::new("ps")
                        .args(["-eo", "pid,ppid,lstart,args"])
                        .output()
                        .unwrap()
                        .stdout
                )
                .lines()
                .filter(|l| l.contains("daemon run"))
                .collect::<Vec<_>>()
                .join("\n")
            )),
        }
    });
    assert_eq!(d["daemon"]["slurm_job_id"].as_u64(), Some(job), "{d}");
    let out = shep.ok(&["daemon", "stop"]);
    assert!(out.contains(&format!("in job {job}")), "{out}");
    poll(
        LONG,
        "the stopped keeper and its successor to be gone",
        || {
            let left = keepers("PENDING,RUNNING");
            match left.is_empty() {
                true => Ok(()),
                false => Err(format!("{left:?}")),
            }
        },
    );
    assert!(
        !shep.state.join("daemon/lease.json").exists(),
        "no lease left to go stale"
    );
    let log = std::fs::read_to_string(shep.state.join("daemon/daemon.log")).unwrap();
    assert!(log.contains("stopping without a successor"), "{log}");
}
