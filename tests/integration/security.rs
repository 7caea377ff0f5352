//! Shared-machine security with real Unix users (docs/security.md): a lab
//! member cannot make another member's Shepherd write through a link planted
//! in the shared blacklist directory, and the shared blacklist still works
//! for both. The test runs as root (as CI does) and creates its users.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Mode, TestCluster};

const LAB: &str = "shep-lab";

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// A system user in the lab group, created when missing; its uid.
fn user(name: &str) -> u32 {
    if !sh(&["getent", "group", LAB]).status.success() {
        // Two tests may race to create it: either way it exists after.
        let _ = sh(&["groupadd", LAB]);
    }
    if !sh(&["id", "-u", name]).status.success() {
        let o = sh(&["useradd", "-M", "-N", "-g", LAB, "-s", "/bin/sh", name]);
        assert!(
            o.status.success() || sh(&["id", "-u", name]).status.success(),
            "useradd {name}: {o:?}"
        );
    }
    String::from_utf8(sh(&["id", "-u", name]).stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

struct Member<'a> {
    name: &'static str,
    home: PathBuf,
    cluster: &'a TestCluster,
}

impl Member<'_> {
    fn new<'a>(
        name: &'static str,
        root: &Path,
        shared: &Path,
        cluster: &'a TestCluster,
    ) -> Member<'a> {
        let uid = user(name);
        let home = root.join(name);
        let state = home.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("config.toml"),
            format!(
                "[blacklist]\nshared_dir = {:?}\n",
                shared.display().to_string()
            ),
        )
        .unwrap();
        for p in [&home, &state, &state.join("config.toml")] {
            rustix::fs::chown(p, Some(rustix::fs::Uid::from_raw(uid)), None).unwrap();
        }
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        Member {
            name,
            home,
            cluster,
        }
    }

    fn shepherd(&self, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", self.name, "--", "env"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!(
                "SHEPHERD_STATE_DIR={}",
                self.home.join("state").display()
            ))
            .arg(format!("SLURM_CONF={}", self.cluster.conf().display()))
            .arg(env!("CARGO_BIN_EXE_shepherd"))
            .args(args)
            .output()
            .unwrap()
    }

    fn run_as(&self, script: &str) -> Output {
        Command::new("runuser")
            .args(["-u", self.name, "--", "sh", "-c", script])
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_lab_member_cannot_make_another_write_through_a_planted_link() {
    let cluster = TestCluster::start(Mode::NoAccounting);
    // Other users must reach the cluster's slurm.conf.
    std::fs::set_permissions(cluster.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tempfile::Builder::new()
        .prefix("shep-sec")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared = root.path().join("lab-bans");
    std::fs::create_dir(&shared).unwrap();
    let victim = Member::new("shep-victim", root.path(), &shared, &cluster);
    let attacker = Member::new("shep-attacker", root.path(), &shared, &cluster);
    assert!(
        sh(&["chgrp", LAB, shared.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
    let precious = victim.home.join("precious");
    std::fs::write(&precious, "the victim's data\n").unwrap();
    let uid = user("shep-victim");
    rustix::fs::chown(&precious, Some(rustix::fs::Uid::from_raw(uid)), None).unwrap();

    // The attacker prepares the cluster's directory with links into the
    // victim's home where the blacklist and its lock would be.
    let cdir = shared.join("shepherd-test");
    let plant = format!(
        "mkdir -m 2775 {d} && ln -s {p} {d}/blacklist.json && ln -s {p} {d}/blacklist.lock",
        d = cdir.display(),
        p = precious.display()
    );
    let o = attacker.run_as(&plant);
    assert!(o.status.success(), "{}", text(&o));
    let victim_bans = || {
        victim.shepherd(&[
            "nodes",
            "ban",
            "a100-1",
            "--ttl",
            "1h",
            "--reason",
            "victim's ban",
        ])
    };
    let intact = || {
        assert_eq!(
            std::fs::read_to_string(&precious).unwrap(),
            "the victim's data\n",
            "the victim's file was written through a link"
        )
    };

    let ban = victim_bans();
    assert!(
        !ban.status.success(),
        "a link is never written through: {}",
        text(&ban)
    );
    intact();
    std::fs::remove_file(cdir.join("blacklist.lock")).unwrap();
    let ban = victim_bans();
    assert!(!ban.status.success(), "{}", text(&ban));
    assert!(text(&ban).contains("symbolic link"), "{}", text(&ban));
    intact();

    // Without the links the lab's blacklist works for both of them: the
    // victim's file is readable by the lab and replaced by the attacker's
    // ban through the group-writable directory.
    std::fs::remove_file(cdir.join("blacklist.json")).unwrap();
    // The old attack: links at the temporary names of the next few thousand
    // pids (Shepherd once named its temporary file `.blacklist.json.tmp.PID`).
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let attacker_uid = rustix::fs::Uid::from_raw(user("shep-attacker"));
    for pid in last..last + 3000 {
        let link = cdir.join(format!(".blacklist.json.tmp.{pid}"));
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            &link,
            Some(attacker_uid),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    let ban = victim_bans();
    assert!(ban.status.success(), "{}", text(&ban));
    intact();
    let meta = std::fs::metadata(cdir.join("blacklist.json")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o644));
    let ban = attacker.shepherd(&[
        "nodes",
        "ban",
        "a100-2",
        "--ttl",
        "1h",
        "--reason",
        "attacker's ban",
    ]);
    assert!(ban.status.success(), "{}", text(&ban));
    let nodes = text(&victim.shepherd(&["nodes"]));
    for n in ["a100-1", "a100-2"] {
        assert!(
            nodes.lines().any(|l| l.starts_with(n) && l.contains("ban")),
            "{n}: {nodes}"
        );
    }
}
