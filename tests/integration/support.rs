//! A real Slurm cluster per test, and helpers to wait on it by polling.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shepherd::slurm::{
    JobId, JobInfo, ScriptSource, Slurm, SlurmCli, SlurmCliConfig, SubmitRequest,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Like many real clusters: no slurmdbd, `sacct -c` reads the jobcomp file.
    NoAccounting,
    /// Private MariaDB + slurmdbd: `sacct` works.
    Accounting,
}

/// Generates one test per accounting mode from `fn name(mode: Mode)`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::support::Mode;
            #[test]
            fn without_accounting() {
                super::$name(Mode::NoAccounting)
            }
            #[test]
            fn with_accounting() {
                super::$name(Mode::Accounting)
            }
        }
    )*};
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where test clusters live. Short on purpose: Slurm's unix sockets live in the
/// cluster directory and their paths must fit in 107 bytes. `scripts/test`
/// sweeps this directory after the run, so a test killed by a timeout leaves
/// nothing running.
pub fn clusters_root() -> PathBuf {
    std::env::var_os("SHEPHERD_TEST_CLUSTERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/shep-tests"))
}

pub struct TestCluster {
    dir: tempfile::TempDir,
}

impl TestCluster {
    pub fn start(mode: Mode) -> TestCluster {
        let root = clusters_root();
        std::fs::create_dir_all(&root).expect("create test cluster root");
        let dir = tempfile::Builder::new()
            .prefix("c")
            .tempdir_in(&root)
            .expect("create test cluster directory");
        let mut args = vec!["up"];
        if mode == Mode::Accounting {
            args.push("--accounting");
        }
        let cluster = TestCluster { dir };
        let out = cluster.testcluster(&args);
        assert!(
            out.status.success(),
            "testcluster up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf(&self) -> PathBuf {
        self.dir().join("etc/slurm.conf")
    }

    /// A directory for job output files.
    pub fn workdir(&self) -> PathBuf {
        let w = self.dir().join("work");
        std::fs::create_dir_all(&w).unwrap();
        w
    }

    pub fn slurm(&self) -> SlurmCli {
        self.slurm_with_timeout(Duration::from_secs(20))
    }

    pub fn slurm_with_timeout(&self, timeout: Duration) -> SlurmCli {
        SlurmCli::new(SlurmCliConfig {
            timeout,
            env: vec![("SLURM_CONF".into(), self.conf().into())],
            ..SlurmCliConfig::default()
        })
    }

    /// Runs `scripts/testcluster ARGS --dir DIR` (fault injection and friends).
    pub fn testcluster(&self, args: &[&str]) -> std::process::Output {
        Command::new(repo_root().join("scripts/testcluster"))
            .args(args)
            .arg("--dir")
            .arg(self.dir())
            .output()
            .expect("run scripts/testcluster")
    }

    /// Like [`testcluster`](Self::testcluster), asserting success.
    pub fn inject(&self, args: &[&str]) {
        let out = self.testcluster(args);
        assert!(
            out.status.success(),
            "testcluster {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Submits a bash script given as text, with sbatch arguments. Output goes
    /// to `workdir/%j.out`.
    pub fn submit(&self, slurm: &SlurmCli, args: &[&str], body: &str) -> JobId {
        let mut all: Vec<String> = vec![
            format!("--output={}/%j.out", self.workdir().display()),
            format!("--chdir={}", self.workdir().display()),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        slurm
            .submit(&SubmitRequest {
                script: ScriptSource::Text(format!("#!/bin/bash\n{body}\n")),
                args: all,
                env: None,
            })
            .unwrap_or_else(|e| panic!("submit {args:?} failed: {e}"))
    }

    /// Runs a Slurm command (`scontrol`, `scancel`, …) against this cluster,
    /// asserting success; returns its stdout.
    pub fn slurm_ok(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .env("SLURM_CONF", self.conf())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Submits a plain Slurm job (not a Shepherd run) that runs `command`,
    /// output discarded; returns its job id.
    pub fn sbatch(&self, args: &[&str], command: &str) -> String {
        let out = Command::new("sbatch")
            .env("SLURM_CONF", self.conf())
            .args(["--parsable", "-o", "/dev/null"])
            .args(args)
            .args(["--wrap", command])
            .output()
            .expect("run sbatch");
        assert!(out.status.success(), "sbatch {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn job_output(&self, id: JobId) -> String {
        std::fs::read_to_string(self.workdir().join(format!("{id}.out"))).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let out = self.testcluster(&["down"]);
        if !out.status.success() {
            eprintln!(
                "testcluster down failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test where the developer can read them.
            let kept = self.dir().with_extension("failed");
            let _ = std::fs::remove_dir_all(&kept);
            if std::fs::rename(self.dir(), &kept).is_ok() {
                eprintln!("cluster logs kept in {}", kept.display());
            }
        }
    }
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics after
/// `timeout` with `what` and the last observation.
pub fn poll<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the controller reports job `id` in a state accepted by `done`.
pub fn wait_job(
    slurm: &SlurmCli,
    id: JobId,
    timeout: Duration,
    what: &str,
    done: impl Fn(&JobInfo) -> bool,
) -> JobInfo {
    poll(timeout, &format!("job {id}: {what}"), || {
        let jobs = slurm.jobs(&[id]).map_err(|e| e.to_string())?;
        match jobs.into_iter().find(|j| j.id == id) {
            Some(j) if done(&j) => Ok(j),
            Some(j) => Err(format!("{j:?}")),
            None => Err("job unknown to the controller".to_string()),
        }
    })
}
