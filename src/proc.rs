//! Runs one program with a deadline: Slurm's clients, nvidia-smi and the
//! CUDA check in the wrapper, curl and sendmail for notices, `bash -n`.
//!
//! Slurm clients block for seconds when the controller is down, and forever
//! when it hangs half-way through a reply; nvidia-smi hangs on a wedged GPU.
//! Every program therefore runs in its own process group; on expiry the whole
//! group gets SIGTERM, a short grace period, then SIGKILL, so no orphan keeps
//! a pipe open or a login node busy.
//!
//! A program that ran and exited non-zero is *not* an error here ([`Output`]
//! carries its status): only the caller knows what its failures mean, and
//! classifies them in its own terms (`slurm::SlurmError` for Slurm,
//! a probe's inconclusive evidence for nvidia-smi). [`ProcError`] is only
//! "could not be run": not started, no answer in time, not waited for.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// Why a program gave no [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The program could not be started (missing, not executable).
    #[error("cannot run `{program}`: {source}")]
    NotFound {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// The program did not finish in time; its process group was killed.
    #[error("`{command}` did not answer within {:.0?}", .after)]
    TimedOut { command: String, after: Duration },

    /// Waiting for the started program failed (the OS refused `wait`).
    #[error("`{command}`: cannot wait for it: {source}")]
    Wait {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long a killed command's group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// How long to wait for the pipes to reach end-of-file once the command exited.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// The result of a command that ran to completion (whatever its exit status).
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `exit 3` or `signal 9`, for messages.
    pub fn status_text(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".to_string(),
        }
    }

    /// stderr, or stdout when stderr is empty, trimmed: what Slurm said.
    pub fn message(&self) -> String {
        let err = self.stderr.trim();
        if err.is_empty() {
            self.stdout.trim().to_string()
        } else {
            err.to_string()
        }
    }
}

/// A command to run: program, arguments, extra environment, optional stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment instead of inheriting ours.
    pub env_clear: bool,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Invocation {
    pub fn new(program: impl Into<String>, timeout: Duration) -> Self {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            stdin: None,
            timeout,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// The command line as a user could paste it into a shell.
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            let a = a.to_string_lossy();
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:%@+".contains(c))
                && !a.is_empty()
            {
                s.push_str(&a);
            } else {
                s.push('\'');
                s.push_str(&a.replace('\'', r"'\''"));
                s.push('\'');
            }
        }
        s
    }

    /// Runs the command to completion or until its deadline.
    ///
    /// A non-zero exit is *not* an error here: the caller classifies it, since
    /// only the caller knows what the command's failures mean.
    pub fn run(&self) -> Result<Output, ProcError> {
        let started = Instant::now();
        let command = self.display();
        let mut cmd = Command::new(&self.program);
        if self.env_clear {
            cmd.env_clear();
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| ProcError::NotFound {
            program: self.program.clone(),
            source,
        })?;
        let pid = child.id();

        // Readers drain the pipes concurrently so a chatty command never blocks on
        // a full pipe while we wait for it to exit.
        let stdout = spawn_reader(child.stdout.take());
        let stderr = spawn_reader(child.stderr.take());
        if let (Some(mut pipe), Some(data)) = (child.stdin.take(), self.stdin.clone()) {
            // A command that exits without reading its input gives EPIPE: its
            // exit status says what went wrong, so the write error is dropped.
            thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }

        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });

        let status = match rx.recv_timeout(self.timeout) {
            Ok(status) => status,
            Err(_) => {
                kill_group(pid, Signal::TERM);
                if rx.recv_timeout(KILL_GRACE).is_err() {
                    kill_group(pid, Signal::KILL);
                    let _ = rx.recv_timeout(KILL_GRACE);
                }
                return Err(ProcError::TimedOut {
                    command,
                    after: self.timeout,
                });
            }
        };
        let status = status.map_err(|source| ProcError::Wait {
            command: command.clone(),
            source,
        })?;
        // The group is not killed here: its id may already be recycled. A
        // grandchild that still holds a pipe only costs us a bounded wait.
        let stdout = stdout.recv_timeout(PIPE_DRAIN).unwrap_or_default();
        let stderr = stderr.recv_timeout(PIPE_DRAIN).unwrap_or_default();
        Ok(Output {
            command,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

fn kill_group(pid: u32, signal: Signal) {
    // The group may already be gone (ESRCH); nothing to do then.
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Invocation {
        Invocation::new("sh", timeout).arg("-c").arg(script)
    }

    #[test]
    fn captures_stdout_stderr_and_status() {
        let out = sh("echo out; echo err >&2; exit 3", Duration::from_secs(10))
            .run()
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.status_text(), "exit 3");
    }

    #[test]
    fn passes_stdin() {
        let out = Invocation::new("cat", Duration::from_secs(10))
            .stdin("line with 'quotes' and $vars\n")
            .run()
            .unwrap();
        assert_eq!(out.stdout, "line with 'quotes' and $vars\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild.pid");
        // The grandchild ignores nothing special; it must die with the group.
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let started = Instant::now();
        let err = sh(&script, Duration::from_millis(300)).run().unwrap_err();
        assert!(matches!(err, ProcError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Poll: the kernel reaps the killed grandchild asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(Instant::now() < deadline, "grandchild {pid} survived");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn timeout_escalates_to_sigkill() {
        let started = Instant::now();
        let err = sh(
            "trap '' TERM; while :; do sleep 0.05; done",
            Duration::from_millis(200),
        )
        .run()
        .unwrap_err();
        assert!(matches!(err, ProcError::TimedOut { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = Invocation::new("shepherd-no-such-program", Duration::from_secs(1))
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcError::NotFound { .. }));
        assert!(err.to_string().contains("shepherd-no-such-program"));
    }

    #[test]
    fn display_quotes_for_a_shell() {
        let inv = Invocation::new("squeue", Duration::from_secs(1))
            .arg("-o")
            .arg("%i|%T")
            .arg("it's");
        assert_eq!(inv.display(), r"squeue -o '%i|%T' 'it'\''s'");
    }
}
