//! The TUI end to end: the real binary in a detached tmux session (100×30)
//! against a test cluster, driven by keys, read back with `capture-pane`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::recovery_support::Shepherd;
use crate::support::{Mode, TestCluster, poll};

const LONG: Duration = Duration::from_secs(120);
const SCREEN: Duration = Duration::from_secs(30);

/// A private tmux server (its own socket, no user configuration), killed on
/// drop even when the test panics.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn start(cwd: &Path, env: &[(String, String)], program: &str, args: &[&str]) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let mut line = String::from("env");
        for (k, v) in env {
            line.push(' ');
            line.push_str(&shlex::try_quote(&format!("{k}={v}")).unwrap());
        }
        line.push(' ');
        line.push_str(&shlex::try_quote(program).unwrap());
        for a in args {
            line.push(' ');
            line.push_str(&shlex::try_quote(a).unwrap());
        }
        // After the TUI: its exit status, then a shell that stays, so the
        // pane (and the state the TUI left the terminal in) can be read.
        let script = format!("{line}; echo TUI-EXITED $?; exec sleep 600");
        let t = Tmux { socket, _dir: dir };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "100",
            "-y",
            "30",
            "-c",
            cwd.to_str().unwrap(),
            &script,
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-f")
            .arg("/dev/null")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "tui"]).stdout)
            .into_owned()
    }

    /// Waits until the screen shows all of `texts`.
    fn wait_for(&self, texts: &[&str]) -> String {
        self.wait_for_within(SCREEN, texts)
    }

    /// Waits up to `limit` until the screen shows all of `texts` (a real
    /// Slurm job has to run first).
    fn wait_for_within(&self, limit: Duration, texts: &[&str]) -> String {
        poll(limit, &format!("the screen to show {texts:?}"), || {
            let s = self.screen();
            if texts.iter().all(|t| s.contains(t)) {
                Ok(s)
            } else {
                Err(format!("\n{s}"))
            }
        })
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    fn type_text(&self, text: &str) {
        assert!(
            self.tmux(&["send-keys", "-t", "tui", "-l", text])
                .status
                .success()
        );
    }

    fn pane(&self, format: &str) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["display-message", "-p", "-t", "tui", format])
                .stdout,
        )
        .trim()
        .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("last screen:\n{}", self.screen());
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The environment `Shepherd::command` gives the binary.
fn env_of(shep: &Shepherd<'_>) -> Vec<(String, String)> {
    let cmd = shep.command();
    cmd.get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

fn attempts(s: &Value) -> usize {
    s["attempts"].as_array().map_or(0, Vec::len)
}

#[test]
fn tui_end_to_end_in_tmux() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    let mut shep = Shepherd::new(&cluster);
    let run = shep.submit(
        "talker.sh",
        "#!/bin/bash\n#SBATCH --partition=cpu\n\
         #SHEPHERD --heartbeat-interval 1s --heartbeat-grace 20s --backoff-base 1s\n\
         i=0; while true; do echo \"talk $SHEPHERD_ATTEMPT tick $i\"; i=$((i+1)); sleep 1; done\n",
        &[],
    );
    shep.wait_status(&run, &["running"], LONG);

    let tmux = Tmux::start(
        &shep.work,
        &env_of(&shep),
        env!("CARGO_BIN_EXE_shepherd"),
        &["tui"],
    );
    tmux.wait_for(&["talker", "running", "1 info"]);
    assert_eq!(tmux.pane("#{alternate_on}"), "1");

    // The live log: lines keep arriving.
    tmux.keys(&["5"]);
    tmux.wait_for(&["talk 1 tick 2", "following"]);
    tmux.wait_for(&["talk 1 tick 4"]);

    // Restart: a second attempt appears, and the log follows it.
    tmux.keys(&["r"]);
    tmux.wait_for(&["restart requested"]);
    poll(LONG, "a second attempt running", || {
        let s = shep.status(&run);
        if attempts(&s) == 2 && s["status"] == "running" {
            Ok(())
        } else {
            Err(format!("{} {}", s["status"], s["attempts"]))
        }
    });
    tmux.wait_for(&["talk 2 tick 1"]);

    // Ban the run's node: duration, reason, then confirmation.
    let node = shep.status(&run)["node"].as_str().unwrap().to_string();
    tmux.keys(&["b"]);
    tmux.wait_for(&[&format!("ban {node} for")]);
    tmux.keys(&["C-u"]);
    tmux.type_text("2h");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&[&format!("reason to ban {node}")]);
    tmux.type_text("tui e2e");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&[&format!("Ban node {node} for 2h")]);
    tmux.keys(&["y"]);
    tmux.wait_for(&[&format!("banned {node} for 2h")]);
    let nodes: Value = serde_json::from_str(&shep.ok(&["nodes", "--json"])).unwrap();
    let banned = nodes["nodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str())
        .map(|n| n["banned"].clone())
        .unwrap();
    assert_eq!(banned["reason"], "tui e2e", "{nodes}");

    // The nodes screen shows the ban.
    tmux.type_text("gn");
    tmux.wait_for(&["PARTITIONS", "tui e2e"]);

    // Smoke-test the first node: a probe job pinned to it ends well.
    tmux.keys(&["t"]);
    tmux.wait_for_within(LONG, &["ok in"]);

    // Quit: the process ends and the terminal is back as it was.
    tmux.keys(&["q"]);
    tmux.wait_for(&["TUI-EXITED 0"]);
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1");
    assert_eq!(tmux.pane("#{mouse_any_flag}"), "0");

    shep.ok(&["stop", &run]);
    shep.wait_status(&run, &["stopped"], LONG);
    shep.assert_no_duplicates();
}

/// The TUI's own process: the pane runs `sh -c 'env … shepherd tui; …'`,
/// and `env` becomes shepherd.
fn tui_pid(tmux: &Tmux) -> u32 {
    let sh = tmux.pane("#{pane_pid}");
    poll(SCREEN, "the TUI's pid", || {
        let children = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children"))
            .map_err(|e| e.to_string())?;
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| "no child yet".to_string())
    })
}

#[test]
fn tui_restores_the_terminal_on_sigterm_and_sighup() {
    // No cluster: Slurm is unreachable, which the TUI shows as a banner.
    let state = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "SHEPHERD_STATE_DIR".to_string(),
            state.path().to_string_lossy().into_owned(),
        ),
        (
            "SLURM_CONF".to_string(),
            "/nonexistent/slurm.conf".to_string(),
        ),
        ("SHEPHERD_SLURM_TIMEOUT".to_string(), "2s".to_string()),
    ];
    for (signal, status) in [("TERM", 143), ("HUP", 129)] {
        let tmux = Tmux::start(state.path(), &env, env!("CARGO_BIN_EXE_shepherd"), &["tui"]);
        tmux.wait_for(&["no runs yet", "Slurm unreachable"]);
        assert_eq!(tmux.pane("#{alternate_on}"), "1");
        let pid = tui_pid(&tmux);
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        // Ended by the signal, and says so: 128 + its number.
        tmux.wait_for(&[&format!("TUI-EXITED {status}")]);
        assert_eq!(tmux.pane("#{alternate_on}"), "0", "SIG{signal}");
        assert_eq!(tmux.pane("#{cursor_flag}"), "1", "SIG{signal}");
        assert_eq!(tmux.pane("#{mouse_any_flag}"), "0", "SIG{signal}");
    }
}

/// Runs the TUI on a pseudo-terminal that stops being read (a stalled SSH
/// connection), makes it redraw until its writes block, then sends SIGTERM:
/// prints `EXITED <status> <seconds>` or `STUCK`.
const STALLED_TERMINAL: &str = r#"
import fcntl, os, pty, select, signal, struct, sys, termios, time
exe, state = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ.update(SHEPHERD_STATE_DIR=state, SLURM_CONF="/nonexistent/slurm.conf",
                      SHEPHERD_SLURM_TIMEOUT="2s", TERM="xterm")
    os.execv(exe, [exe, "tui"])
def size(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.kill(pid, signal.SIGWINCH)
time.sleep(0.3)
size(30, 100)
seen = b""
end = time.time() + 30
while b"unreachable" not in seen and time.time() < end:
    if select.select([fd], [], [], 0.5)[0]:
        seen += os.read(fd, 65536)
if b"unreachable" not in seen:
    print("NO-SCREEN"); sys.exit(1)
# Read no more; every resize redraws the whole screen (about 13 KB) until
# the terminal's buffer is full and the TUI blocks in a write.
for i in range(40):
    size(60, 200 - i % 2)
    time.sleep(0.05)
time.sleep(1)
os.kill(pid, signal.SIGTERM)
t = time.time()
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.time() - t > 15:
        os.kill(pid, signal.SIGKILL)
        print("STUCK"); sys.exit(1)
    time.sleep(0.05)
print("EXITED", os.waitstatus_to_exitcode(status), round(time.time() - t, 1))
"#;

#[test]
fn tui_sigterm_ends_a_tui_blocked_on_a_stalled_terminal() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(STALLED_TERMINAL)
        .arg(env!("CARGO_BIN_EXE_shepherd"))
        .arg(state.path())
        .output()
        .expect("run python3");
    let said = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"EXITED"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(words[1], "143", "{said}");
    let secs: f64 = words[2].parse().unwrap();
    // Blocked (else this tests nothing), so it ended after its grace time,
    // not at once; and not much later.
    assert!((1.5..8.0).contains(&secs), "{said}");
}
