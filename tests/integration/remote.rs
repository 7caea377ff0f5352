//! `--remote HOST` end to end, over a real `sshd` on loopback (no mocks).
//!
//! Each test starts its own sshd on a free port with a fresh host key and
//! user key, and a private client: `HOME` is a temporary directory (so the
//! control sockets and the checksum cache are the test's own), and
//! `SHEPHERD_SSH_CONFIG` hands ssh a config file (`ssh -F`) naming the test
//! host, since ssh reads `~/.ssh/config` from the password database, not
//! from `HOME`. The remote side's environment comes from sshd's `SetEnv`:
//! a remote `HOME` of its own (where the binary gets installed), and for the
//! cluster tests `SLURM_CONF`, the state directory and the fake GPU tools on
//! `PATH`, as a login node's profile would set them. The client has none of
//! these, so whatever works did run on the remote.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::recovery_support::Shepherd;
use crate::support::{Mode, TestCluster, poll};

const HOST: &str = "testhost";
const LONG: Duration = Duration::from_secs(120);

/// A private sshd, killed with every session it forked when dropped.
struct Sshd {
    child: Child,
    dir: PathBuf,
}

impl Sshd {
    /// Starts sshd for `dir` (keys, configs and both homes go there) with
    /// `remote_env` set in every session.
    fn start(dir: &Path, remote_env: &[(&str, String)]) -> Sshd {
        // sshd refuses to start without its privilege separation directory,
        // which a machine that never ran sshd lacks.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        std::fs::create_dir_all(dir).unwrap();
        let keygen = |name: &str| {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .output()
                .expect("ssh-keygen (install openssh-client)");
            assert!(out.status.success(), "{out:?}");
        };
        keygen("host_key");
        keygen("user_key");
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        for home in ["h", "rh"] {
            std::fs::create_dir_all(dir.join(home)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = vec![("HOME", dir.join("rh").display().to_string())];
        env.extend(remote_env.iter().cloned());
        let setenv: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin yes\n\
                 SetEnv {}\n",
                setenv.join(" ")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("ssh_config"),
            format!(
                "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n\
                 IdentityFile {d}/user_key\n  IdentitiesOnly yes\n\
                 UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (install openssh-server)");
        let sshd = Sshd {
            child,
            dir: dir.to_path_buf(),
        };
        poll(Duration::from_secs(10), "sshd to listen", || {
            TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| format!("{e}; {}", sshd.log()))
        });
        sshd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// `shepherd` as the client: its own HOME and ssh config, and nothing
    /// of the cluster in its environment.
    fn shepherd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shepherd"));
        c.env("HOME", self.dir.join("h"))
            .env("SHEPHERD_SSH_CONFIG", self.dir.join("ssh_config"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("SLURM_CONF")
            .env_remove("SHEPHERD_STATE_DIR")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .current_dir(&self.dir);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.shepherd().args(args).output().expect("run shepherd")
    }

    /// The remote home's installed binaries.
    fn installed(&self) -> Vec<String> {
        let dir = self.dir.join("rh/.local/share/shepherd/bin");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("shepherd-"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Kills sshd and every session process it forked (as if the host went
    /// down).
    fn kill_all(&mut self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sshd log:\n{}", self.log());
        }
        // The client's control master outlives its commands by design.
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(self.dir.join("ssh_config"))
            .arg("-o")
            .arg(format!(
                "ControlPath={}/h/.ssh/shepherd/%C",
                self.dir.display()
            ))
            .args(["-O", "exit", HOST])
            .stderr(Stdio::null())
            .status();
        self.kill_all();
    }
}

/// `pid` and its descendants, children first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = std::collections::HashMap::<u32, Vec<u32>>::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces and parentheses.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.entry(ppid).or_default().push(child);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for &c in parents.get(&p).into_iter().flatten() {
            stack.push(c);
            out.push(c);
        }
    }
    out.reverse();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The remote environment of a login node of `cluster`.
fn cluster_env(shep: &Shepherd) -> Vec<(&'static str, String)> {
    vec![
        ("SLURM_CONF", shep.cluster.conf().display().to_string()),
        ("SHEPHERD_STATE_DIR", shep.state.display().to_string()),
        ("SHEPHERD_POLL_INTERVAL", "1s".to_string()),
        ("SHEPHERD_SLURM_TIMEOUT", "10s".to_string()),
        (
            "PATH",
            format!(
                "{}:{}",
                shep.cluster.dir().join("gpu-bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
    ]
}

#[test]
fn runs_are_submitted_followed_and_stopped_over_ssh() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let sshd = Sshd::start(&cluster.dir().join("ssh"), &cluster_env(&shep));

    // First use: the binary is copied, checked, and named by its checksum.
    assert!(sshd.installed().is_empty());
    let first = sshd.run(&["--remote", HOST, "list", "--json"]);
    let list: Value = serde_json::from_str(&ok(&first)).unwrap();
    assert_eq!(list, serde_json::json!({"schema_version": 1, "runs": []}));
    let stderr = text(&first.stderr);
    assert!(stderr.contains("installing shepherd"), "{stderr}");
    assert!(stderr.contains("checked on testhost"), "{stderr}");
    let installed = sshd.installed();
    let local_sha = sha256sum(Path::new(env!("CARGO_BIN_EXE_shepherd")));
    assert_eq!(
        installed,
        [format!(
            "shepherd-{}-{}",
            env!("CARGO_PKG_VERSION"),
            &local_sha[..16]
        )]
    );
    let remote_bin = sshd
        .dir
        .join("rh/.local/share/shepherd/bin")
        .join(&installed[0]);
    assert_eq!(sha256sum(&remote_bin), local_sha);
    // Second use: nothing copied.
    let second = sshd.run(&["list", "--remote", HOST]);
    assert_eq!(
        ok(&second),
        "no runs yet; submit one with `shepherd SCRIPT`\n"
    );
    assert_eq!(text(&second.stderr), "");

    // A script whose name needs quoting, submitted the short way, goes to
    // the remote directory (only the script), and runs there.
    let name = "we ird $x;`'\".sh";
    let script = sshd.dir.join(name);
    std::fs::write(
        &script,
        "#!/bin/bash\n#SBATCH --partition=cpu\n\
         #SHEPHERD --heartbeat-interval 1s --backoff-base 1s\n\
         echo \"pwd=$PWD\"\nfor i in 1 2 3 4 5 6; do echo \"tick $i\"; sleep 0.5; done\n",
    )
    .unwrap();
    let out = sshd.run(&[
        script.to_str().unwrap(),
        "--run-id",
        "q1",
        "--remote",
        HOST,
        "--remote-dir",
        "~/my runs",
        "--json",
    ]);
    let created: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(created["run"]["run_id"], "q1");
    let remote_dir = sshd.dir.join("rh/my runs");
    assert_eq!(
        std::fs::read(remote_dir.join(name)).unwrap(),
        std::fs::read(&script).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(&remote_dir).unwrap().count(),
        1,
        "only the script is copied"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("to testhost:{}/{name}", remote_dir.display())),
        "{stderr}"
    );

    // `logs -f` streams while the job runs and returns when the run ends.
    let mut follow = sshd
        .shepherd()
        .args(["--remote", HOST, "logs", "-f", "q1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut streamed = false;
    let deadline = Instant::now() + LONG;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "tick 1" {
            // The first tick arrived while the job still had ticks to print.
            streamed = follow.try_wait().unwrap().is_none();
        }
        seen.push(line);
        assert!(Instant::now() < deadline, "logs -f did not end: {seen:?}");
    }
    let status = follow.wait().unwrap();
    assert!(status.success(), "{status}: {seen:?}");
    assert!(streamed, "{seen:?}");
    assert_eq!(
        seen.first().map(String::as_str),
        Some(&*format!("pwd={}", remote_dir.display()))
    );
    assert_eq!(
        &seen[1..],
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "tick 6"]
    );
    let s = shep.wait_status("q1", &["completed"], LONG);
    assert_eq!(s["run_id"], "q1");

    // Reading commands: the same documents as on the login node itself.
    let remote: Value =
        serde_json::from_str(&ok(&sshd.run(&["--remote", HOST, "status", "q1", "--json"])))
            .unwrap();
    let local: Value = serde_json::from_str(&shep.ok(&["status", "q1", "--json"])).unwrap();
    assert_eq!(remote["run"]["run_id"], local["run"]["run_id"]);
    assert_eq!(remote["run"]["status"], local["run"]["status"]);
    assert_eq!(remote["run"]["attempts"], local["run"]["attempts"]);
    let list = ok(&sshd.run(&["--remote", HOST, "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("q1 ") && l.contains("completed")),
        "{list}"
    );

    // Exit codes and error output come back unchanged: an unknown run whose
    // id needs every kind of quoting (5), an unknown partition.
    let weird = "a b$HOME;`id`'\"\nz";
    let remote = sshd.run(&["--remote", HOST, "status", weird]);
    let local = shep.run(&["status", weird]);
    assert_eq!(remote.status.code(), Some(5));
    assert_eq!(text(&remote.stderr), text(&local.stderr));
    assert!(
        text(&remote.stderr).contains("a b$HOME;`id`'\\\"\\nz"),
        "{}",
        text(&remote.stderr)
    );
    let remote = sshd.run(&["--remote", HOST, "status", weird, "--json"]);
    let local = shep.run(&["status", weird, "--json"]);
    assert_eq!(remote.status.code(), Some(5));
    assert_eq!(text(&remote.stdout), text(&local.stdout));
    let args = [
        "run",
        script.to_str().unwrap(),
        "--run-id",
        "nope",
        "--partitions",
        "nosuch",
    ];
    let local = shep.run(&args);
    let remote = sshd.run(&[&["--remote", HOST][..], &args].concat());
    assert_eq!(remote.status.code(), local.status.code());
    assert_ne!(remote.status.code(), Some(0));
    assert!(
        text(&remote.stderr).ends_with(&text(&local.stderr)),
        "{}",
        text(&remote.stderr)
    );

    // An argument with spaces, quotes, `$`, `;`, backticks and a newline
    // arrives byte for byte.
    let reason = "it's \"bad\"; $(id) `x` $HOME\nsecond line";
    ok(&sshd.run(&[
        "--remote", HOST, "nodes", "ban", "cpu-2", "--ttl", "1h", "--reason", reason,
    ]));
    let nodes = shep.ok(&["nodes", "--json"]);
    assert!(
        nodes.contains(&serde_json::to_string(reason).unwrap()),
        "{nodes}"
    );
    ok(&sshd.run(&["--remote", HOST, "nodes", "unban", "cpu-2"]));

    // Asked-for files travel with the script and keep their place.
    std::fs::create_dir_all(sshd.dir.join("conf")).unwrap();
    std::fs::write(sshd.dir.join("conf/params.txt"), "lr=3e-4\n").unwrap();
    std::fs::write(
        sshd.dir.join("withconf.sh"),
        "#!/bin/bash\n#SBATCH --partition=cpu\ncat conf/params.txt\n",
    )
    .unwrap();
    let out = sshd.run(&[
        "withconf.sh",
        "--remote",
        HOST,
        "--remote-dir",
        "~/with conf",
        "--remote-copy",
        "conf",
    ]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("copied withconf.sh and conf to testhost:"),
        "{}",
        text(&out.stderr)
    );
    shep.wait_status("withconf", &["completed"], LONG);
    assert_eq!(shep.ok(&["logs", "withconf"]), "lr=3e-4\n");

    // stop: the run ends as stopped.
    let long = sshd.dir.join("long.sh");
    std::fs::write(
        &long,
        "#!/bin/bash\n#SBATCH --partition=cpu\n#SHEPHERD --heartbeat-interval 1s\nwhile true; do sleep 1; done\n",
    )
    .unwrap();
    ok(&sshd.run(&["--remote", HOST, "run", long.to_str().unwrap()]));
    shep.wait_status("long", &["running"], LONG);
    ok(&sshd.run(&["--remote", HOST, "stop", "long"]));
    shep.wait_status("long", &["stopped"], LONG);

    // Every named remote's runs in one list; one that cannot be reached is
    // reported, not fatal.
    ok(&sshd.run(&["remotes", "add", "lab", "--host", HOST]));
    ok(&sshd.run(&["remotes", "add", "gone", "--host", "no-such-host.invalid"]));
    let all: Value = serde_json::from_str(&ok(&sshd.run(&["remotes", "runs", "--json"]))).unwrap();
    let lab = &all["remotes"][0];
    assert_eq!(lab["remote"], "lab", "{all}");
    let ids: Vec<&str> = lab["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"long") && ids.contains(&"q1"), "{ids:?}");
    assert_eq!(all["remotes"][1]["runs"], Value::Null, "{all}");
    assert!(
        all["remotes"][1]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-host.invalid"),
        "{all}"
    );
    let table = ok(&sshd.run(&["remotes", "runs"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lab ") && l.contains("long") && l.contains("stopped")),
        "{table}"
    );
    assert!(
        table.contains("not reached:\ngone (no-such-host.invalid)"),
        "{table}"
    );
    // Every command reused the one connection made by the first.
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        1,
        "{}",
        sshd.log()
    );
    shep.assert_no_duplicates();
}

#[test]
fn a_lost_connection_is_a_clear_error_and_never_a_hang() {
    let dir = scratch();
    let state = dir.path().join("state");
    let mut sshd = Sshd::start(
        &dir.path().join("ssh"),
        &[("SHEPHERD_STATE_DIR", state.display().to_string())],
    );
    // A named remote whose setup keeps the remote command busy.
    ok(&sshd.run(&[
        "remotes", "add", "slow", "--host", HOST, "--setup", "sleep 60",
    ]));
    ok(&sshd.run(&["--remote", HOST, "list"]));

    let busy = sshd
        .shepherd()
        .args(["--remote", "slow", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the remote command runs, then kill the control master.
    let (master, remote) = poll(Duration::from_secs(20), "the remote sleep", || {
        let remote = descendants(sshd.child.id());
        let sleeping = remote.iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x0060\x00")
        });
        if !sleeping {
            return Err("not yet".into());
        }
        let master = master_pid(&sshd.dir).ok_or_else(|| "no master".to_string())?;
        Ok((master, remote))
    });
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &master.to_string()])
        .status()
        .unwrap();
    let out = busy.wait_with_output().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: the ssh connection to testhost failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check that `ssh testhost true` works"),
        "{stderr}"
    );

    // The remote side of the cut connection (orphaned, as on a real host).
    for pid in remote {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }

    // The next command opens a new connection.
    assert_eq!(
        ok(&sshd.run(&["--remote", HOST, "list", "--json"])),
        "{\"schema_version\":1,\"runs\":[]}\n"
    );

    // The host goes down: exit 6 at once, in JSON too.
    sshd.kill_all();
    let started = Instant::now();
    let out = sshd.run(&["--remote", HOST, "list", "--json"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(6));
    let err: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(err["error"]["kind"], "remote");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("testhost"),
        "{err}"
    );
}

/// A short directory for a test without a cluster (control socket paths
/// must fit in 104 bytes), swept by `scripts/test` like the clusters.
fn scratch() -> tempfile::TempDir {
    let root = crate::support::clusters_root();
    std::fs::create_dir_all(&root).unwrap();
    tempfile::Builder::new()
        .prefix("r")
        .tempdir_in(root)
        .unwrap()
}

/// The pid of the client's control master, as `ssh -O check` reports it.
fn master_pid(dir: &Path) -> Option<u32> {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(dir.join("ssh_config"))
        .arg("-o")
        .arg(format!("ControlPath={}/h/.ssh/shepherd/%C", dir.display()))
        .args(["-O", "check", HOST])
        .output()
        .ok()?;
    let t = text(&out.stderr);
    let pid = t.split("pid=").nth(1)?;
    pid.trim_end_matches(|c: char| !c.is_ascii_digit())
        .split(')')
        .next()?
        .parse()
        .ok()
}

#[test]
fn named_remotes_are_added_listed_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shepherd"))
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(ok(&run(&["remotes"])).starts_with("no remotes"));
    assert_eq!(
        ok(&run(&[
            "remotes",
            "add",
            "a100",
            "--host",
            "me@login.a100",
            "--remote-dir",
            "/scratch/me"
        ])),
        "added remote a100: me@login.a100\n"
    );
    ok(&run(&[
        "remotes",
        "add",
        "h100",
        "--host",
        "h100-login",
        "--setup",
        "module load slurm",
    ]));
    let list = ok(&run(&["remotes", "list"]));
    assert_eq!(
        list,
        "NAME  HOST           REMOTE-DIR                 SETUP\n\
         a100  me@login.a100  /scratch/me                -\n\
         h100  h100-login     ~/shepherd-runs (default)  module load slurm\n"
    );
    let json: Value = serde_json::from_str(&ok(&run(&["remotes", "list", "--json"]))).unwrap();
    assert_eq!(json["remotes"][1]["setup"], "module load slurm");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(home.path().join(".config/shepherd/remotes.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file["version"], 1);
    assert_eq!(file["remotes"][0]["host"], "me@login.a100");
    assert_eq!(
        ok(&run(&["remotes", "add", "a100", "--host", "other"])),
        "updated remote a100: other\n"
    );
    assert_eq!(
        ok(&run(&["remotes", "rm", "a100"])),
        "removed remote a100\n"
    );
    let out = run(&["remotes", "rm", "a100"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no remote named \"a100\""));
    // A file written by a newer shepherd is refused, not overwritten.
    let file = home.path().join(".config/shepherd/remotes.json");
    std::fs::write(&file, r#"{"version": 2, "remotes": [], "new": true}"#).unwrap();
    let out = run(&["remotes", "add", "x", "--host", "h"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("format version 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"new\""));
    std::fs::remove_file(&file).unwrap();
    // Host names that ssh would read as options are refused.
    let out = run(&["remotes", "add", "x", "--host", "-oProxyCommand=sh"]);
    assert!(!out.status.success());
    let out = run(&["--remote", "-oProxyCommand=sh", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// A private tmux server, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"]);
        c
    }

    fn screen(&self) -> String {
        text(
            &self
                .cmd()
                .args(["capture-pane", "-p"])
                .output()
                .unwrap()
                .stdout,
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

#[test]
fn the_tui_runs_in_a_terminal_on_the_remote() {
    let dir = scratch();
    let state = dir.path().join("state");
    let sshd = Sshd::start(
        &dir.path().join("ssh"),
        &[("SHEPHERD_STATE_DIR", state.display().to_string())],
    );
    // The setup shows what the remote command's stdin is.
    ok(&sshd.run(&[
        "remotes",
        "add",
        "t",
        "--host",
        HOST,
        "--setup",
        "tty >&2 || true",
    ]));
    let client = sshd.dir.join("tui.sh");
    std::fs::write(
        &client,
        format!(
            "export HOME='{}' SHEPHERD_SSH_CONFIG='{}' NO_COLOR=1\nunset XDG_CONFIG_HOME XDG_RUNTIME_DIR\n\
             '{}' --remote t\necho \"exit=$?\"\nsleep 600\n",
            sshd.dir.join("h").display(),
            sshd.dir.join("ssh_config").display(),
            env!("CARGO_BIN_EXE_shepherd"),
        ),
    )
    .unwrap();
    let tmux = Tmux(format!("shep-remote-{}", std::process::id()));
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-x", "100", "-y", "30", "sh"])
        .arg(&client)
        .status()
        .unwrap();
    assert!(started.success());
    // `shepherd` alone on a terminal is the TUI, run through `ssh -t`: it
    // draws in this terminal, and quits on `q`.
    poll(Duration::from_secs(60), "the remote TUI", || {
        let screen = tmux.screen();
        if screen.contains("runs   nodes") || screen.contains("exit=") {
            Ok(())
        } else {
            Err(screen)
        }
    });
    tmux.cmd().args(["send-keys", "q"]).status().unwrap();
    let screen = poll(Duration::from_secs(30), "the remote TUI to end", || {
        let screen = tmux.screen();
        if screen.contains("exit=") {
            Ok(screen)
        } else {
            Err(screen)
        }
    });
    // The remote side had a terminal of its own (the setup's `tty`, shown
    // again once the TUI leaves the alternate screen).
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert!(screen.contains("exit=0"), "{screen}");
}

#[test]
fn installs_are_refused_for_another_platform_and_checked_by_checksum() {
    let dir = scratch();
    let fakes = dir.path().join("fakes");
    std::fs::create_dir_all(&fakes).unwrap();
    let path = format!(
        "{}:{}",
        fakes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sshd = Sshd::start(
        &dir.path().join("ssh"),
        &[
            (
                "SHEPHERD_STATE_DIR",
                dir.path().join("state").display().to_string(),
            ),
            ("PATH", path),
        ],
    );
    let fake = |name: &str, body: Option<&str>| {
        use std::os::unix::fs::PermissionsExt;
        let p = fakes.join(name);
        match body {
            Some(b) => {
                std::fs::write(&p, format!("#!/bin/sh\n{b}\n")).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            None => std::fs::remove_file(&p).unwrap(),
        }
    };
    let bin_dir = sshd.dir.join("rh/.local/share/shepherd/bin");
    let leftovers = || std::fs::read_dir(&bin_dir).map_or(0, |d| d.count());

    // Another architecture: nothing is copied, and the error says which
    // build the remote needs.
    fake("uname", Some("echo Linux aarch64"));
    let out = sshd.run(&["--remote", HOST, "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "testhost runs linux aarch64, but this shepherd is built for linux {}",
            std::env::consts::ARCH
        )),
        "{stderr}"
    );
    assert!(stderr.contains("aarch64-unknown-linux-musl"), "{stderr}");
    assert_eq!(leftovers(), 0);
    fake("uname", None);

    // A copy that arrives damaged is not installed, and nothing is left.
    fake(
        "sha256sum",
        Some(
            "cat >/dev/null; echo 0000000000000000000000000000000000000000000000000000000000000000 -",
        ),
    );
    let out = sshd.run(&["--remote", HOST, "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot install shepherd on testhost"),
        "{stderr}"
    );
    assert!(stderr.contains("corrupted on the way"), "{stderr}");
    assert_eq!(
        leftovers(),
        0,
        "{:?}",
        std::fs::read_dir(&bin_dir).unwrap().collect::<Vec<_>>()
    );
    fake("sha256sum", None);

    // The real thing.
    ok(&sshd.run(&["--remote", HOST, "list"]));
    assert_eq!(sshd.installed().len(), 1);
}

/// The line of `screen` that shows `run`, as words.
fn row_of(screen: &str, run: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == run))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
}

#[test]
fn the_tui_shows_remote_runs_and_reconnects_after_a_lost_connection() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let shep = Shepherd::new(&cluster);
    let sshd = Sshd::start(&cluster.dir().join("ssh"), &cluster_env(&shep));
    ok(&sshd.run(&["remotes", "add", "far", "--host", HOST]));
    // A run on the remote cluster, submitted there over ssh.
    let script = sshd.dir.join("far.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\n#SBATCH --partition=cpu\n\
         #SHEPHERD --heartbeat-interval 1s\n\
         echo hello-from-far\nsleep 600\n",
    )
    .unwrap();
    ok(&sshd.run(&[
        script.to_str().unwrap(),
        "--run-id",
        "farjob",
        "--remote",
        "far",
    ]));

    // The client: its own HOME (and so no local runs), no cluster.
    let client = sshd.dir.join("multi.sh");
    std::fs::write(
        &client,
        format!(
            "export HOME='{}' SHEPHERD_SSH_CONFIG='{}' NO_COLOR=1\n\
             unset XDG_CONFIG_HOME XDG_RUNTIME_DIR SLURM_CONF SHEPHERD_STATE_DIR\n\
             '{}' tui --remotes\necho \"exit=$?\"\nsleep 600\n",
            sshd.dir.join("h").display(),
            sshd.dir.join("ssh_config").display(),
            env!("CARGO_BIN_EXE_shepherd"),
        ),
    )
    .unwrap();
    let tmux = Tmux(format!("shep-multi-{}", std::process::id()));
    assert!(
        tmux.cmd()
            .args(["new-session", "-d", "-x", "120", "-y", "30", "sh"])
            .arg(&client)
            .status()
            .unwrap()
            .success()
    );
    let wait = |limit: Duration, what: &str, test: &dyn Fn(&str) -> bool| {
        poll(limit, what, || {
            let s = tmux.screen();
            if test(&s) { Ok(s) } else { Err(s) }
        })
    };
    // The remote's run, labelled by its remote.
    wait(LONG, "the remote run", &|s| {
        row_of(s, "farjob").is_some_and(|w| w.get(1).map(String::as_str) == Some("far"))
    });
    // Its log, asked for over ssh while it is selected.
    tmux.cmd().args(["send-keys", "5"]).status().unwrap();
    wait(LONG, "the remote run's log", &|s| {
        s.contains("hello-from-far")
    });

    // The connection is lost and the host stops answering: the listener
    // is stopped (new connections time out) and the control master killed.
    let listener = sshd.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &listener])
            .status()
            .unwrap()
            .success()
    );
    let master = poll(Duration::from_secs(20), "the control master", || {
        master_pid(&sshd.dir).ok_or_else(|| "no master".to_string())
    });
    Command::new("kill")
        .args(["-9", &master.to_string()])
        .status()
        .unwrap();
    // A banner naming the remote, and the stale rows stay, marked by age;
    // the screen keeps answering meanwhile (the tab switches at once).
    let lost = wait(
        Duration::from_secs(90),
        "the banner of the lost remote",
        &|s| s.contains("far unreachable: the ssh connection to testhost failed"),
    );
    let row = row_of(&lost, "farjob").unwrap_or_default();
    assert!(
        row.get(2)
            .is_some_and(|w| w.starts_with('(') && w.ends_with(')')),
        "{lost}"
    );
    tmux.cmd().args(["send-keys", "1"]).status().unwrap();
    wait(Duration::from_secs(5), "the info tab", &|s| {
        s.contains("files      far:")
    });

    // The host answers again: the next ask reconnects by itself.
    assert!(
        Command::new("kill")
            .args(["-CONT", &listener])
            .status()
            .unwrap()
            .success()
    );
    wait(Duration::from_secs(90), "the reconnection", &|s| {
        !s.contains("far unreachable")
            && row_of(s, "farjob").is_some_and(|w| w.get(1).map(String::as_str) == Some("far"))
            && row_of(s, "farjob").is_some_and(|w| !w[2].starts_with('('))
    });

    // An action on the remote run goes to the remote: stop it.
    tmux.cmd().args(["send-keys", "s"]).status().unwrap();
    wait(SCREEN_WAIT, "the confirmation", &|s| {
        s.contains("Stop run far/farjob?")
    });
    tmux.cmd().args(["send-keys", "y"]).status().unwrap();
    // The remote's own answer (its JSON document) is the status line.
    wait(SCREEN_WAIT, "the remote's answer", &|s| {
        s.contains("far: stop requested for run farjob")
    });
    shep.wait_status("farjob", &["stopped"], LONG);
    wait(LONG, "the stopped run", &|s| {
        row_of(s, "farjob").is_some_and(|w| w.iter().any(|x| x == "stopped"))
    });
    // Removed there too, and gone from the list.
    tmux.cmd().args(["send-keys", "x"]).status().unwrap();
    wait(SCREEN_WAIT, "the confirmation", &|s| {
        s.contains("Remove run far/farjob?")
    });
    tmux.cmd().args(["send-keys", "y"]).status().unwrap();
    wait(SCREEN_WAIT, "the removal", &|s| {
        s.contains("far: removed run farjob")
    });
    wait(LONG, "the run gone", &|s| row_of(s, "farjob").is_none());
    assert!(!shep.run(&["status", "farjob"]).status.success());

    tmux.cmd().args(["send-keys", "q"]).status().unwrap();
    let end = wait(Duration::from_secs(30), "the TUI to end", &|s| {
        s.contains("exit=")
    });
    assert!(end.contains("exit=0"), "{end}");
}

const SCREEN_WAIT: Duration = Duration::from_secs(10);
