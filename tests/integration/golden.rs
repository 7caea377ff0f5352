//! The `--json` documents, byte for byte, for one fixed state directory
//! (`tests/fixtures/state`): the contract scripts depend on, pinned so that a
//! change in how documents are built or rendered cannot alter them unseen.
//! Human output of `status` and `events` (absolute times only) is pinned too.
//!
//! The fixture was written by the daemon's own tick against the simulated
//! Slurm (runs completed, running, failed, killed, requeued by Slurm, paused,
//! stopped, banned-everywhere and waiting, and one corrupt); see its README.
//! It is copied before each use, so commands that write never touch it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::repo_root;

const RUNS: [&str; 10] = [
    "broken",
    "busy",
    "done",
    "mangled",
    "nodefault",
    "oom",
    "paused",
    "silent",
    "stopped",
    "nope",
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        copy_tree(&repo_root().join("tests/fixtures/state"), &state);
        std::fs::create_dir_all(tmp.path().join("empty-bin")).unwrap();
        Fixture { tmp, state }
    }

    /// `$ shepherd ARGS`, the exit status and stdout, with the copy's path
    /// written as `$STATE`.
    fn transcript(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_shepherd"))
            .env("SHEPHERD_STATE_DIR", &self.state)
            .env("NO_COLOR", "1")
            // No Slurm here: these documents come from the state directory.
            .env("PATH", self.tmp.path().join("empty-bin"))
            .env_remove("SLURM_CONF")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        // The only value that differs between runs: the daemon's pid.
        let stdout = match stdout.split_once("\"daemon_pid\":") {
            Some((head, tail)) => {
                let digits = tail.chars().take_while(char::is_ascii_digit).count();
                format!("{head}\"daemon_pid\":PID{}", &tail[digits..])
            }
            None => stdout,
        };
        format!(
            "$ shepherd {}\nexit {:?}\n{}\n",
            args.join(" "),
            out.status.code(),
            stdout.replace(self.state.to_str().unwrap(), "$STATE")
        )
    }
}

#[test]
fn json_documents_are_byte_identical_for_the_fixture_state() {
    let f = Fixture::new();
    let mut all = f.transcript(&["list", "--json"]);
    for run in RUNS {
        all += &f.transcript(&["status", run, "--json"]);
        all += &f.transcript(&["events", run, "--json"]);
    }
    // Errors and actions, in an order whose effects are fixed.
    for args in [
        &["logs", "done", "--json"][..],
        &["wait", "done", "--json"],
        &["rm", "busy", "--json"],
        &["status", "--json"],
        &["bogus-flag", "--json", "--no-such-flag"],
        &["rm", "done", "--json"],
        &["list", "--json"],
        // These start a daemon (last, so that it changes nothing above).
        &["stop", "broken", "--json"],
        &["pause", "busy", "--json"],
    ] {
        all += &f.transcript(args);
    }
    f.transcript(&["daemon", "stop"]);
    insta::assert_snapshot!("json_documents", all);
}

#[test]
fn human_status_and_events_are_unchanged_for_the_fixture_state() {
    let f = Fixture::new();
    let mut all = String::new();
    for run in RUNS {
        all += &f.transcript(&["status", run]);
        all += &f.transcript(&["events", run]);
    }
    insta::assert_snapshot!("human_documents", all);
}
