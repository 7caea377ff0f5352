//! The transport: the user's own `ssh`, one shared connection per host.
//!
//! Every call goes through the user's OpenSSH client, so `~/.ssh/config`,
//! keys, agents and jump hosts work as they do for `ssh HOST`; Shepherd holds
//! no credentials. The first call opens a control master that later calls
//! reuse for ten minutes (`ControlPersist`), so a command costs one round
//! trip instead of a new login. `BatchMode` turns every prompt into a failure
//! and `ConnectTimeout`/`ServerAliveInterval` bound how long a dead network
//! can hold a command: it fails with exit status 255, never hangs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::RemoteError;

/// Exit status of `ssh` when it, not the remote command, failed.
pub const SSH_FAILED: i32 = 255;

/// Test-only override: an ssh configuration file passed as `ssh -F FILE`
/// (the integration tests point it at a private sshd). Unset, `ssh` reads
/// `~/.ssh/config` as usual.
pub const CONFIG_ENV: &str = "SHEPHERD_SSH_CONFIG";

/// How long a dead connection may go unnoticed: keepalives every 5 s, three
/// missed ones end it.
const ALIVE_INTERVAL_S: u32 = 5;
const ALIVE_COUNT: u32 = 3;
const CONNECT_TIMEOUT_S: u32 = 15;

/// After `ssh` exits, how long to wait for the last bytes of its output.
/// A control master started by this call keeps a copy of the pipe open for
/// ten minutes, so end-of-file cannot be waited for.
const DRAIN_IDLE: Duration = Duration::from_millis(150);

/// How much of a streamed stderr is kept, for the error message.
const STDERR_KEPT: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Ssh {
    pub host: String,
    config: Option<PathBuf>,
    control_dir: PathBuf,
}

/// How the remote command's standard streams are wired.
pub enum Io {
    /// Output captured (stdin from the file, or empty).
    Capture(Option<File>),
    /// Output streamed to ours as it comes (stdin from the file, or empty).
    Stream(Option<File>),
    /// An interactive terminal (`ssh -t`): all three streams are ours.
    Terminal,
}

/// How the remote command ended.
#[derive(Debug)]
pub struct Finished {
    /// The remote command's exit status, or `SSH_FAILED`.
    pub code: i32,
    /// Captured standard output (`Io::Capture` only).
    pub stdout: Vec<u8>,
    /// Standard error (with `Io::Stream`: already shown, and only its end kept).
    pub stderr: Vec<u8>,
}

impl Ssh {
    pub fn new(host: &str) -> Result<Ssh, RemoteError> {
        if host.is_empty()
            || host.starts_with('-')
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RemoteError::BadHost(host.to_string()));
        }
        Ok(Ssh {
            host: host.to_string(),
            config: std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            control_dir: control_dir()?,
        })
    }

    /// `ssh` with our options, ready for the remote command.
    fn command(&self, tty: bool) -> Result<Command, RemoteError> {
        create_private_dir(&self.control_dir).map_err(|e| RemoteError::Local {
            what: format!("cannot create {}", self.control_dir.display()),
            source: e,
        })?;
        let mut c = Command::new("ssh");
        if let Some(config) = &self.config {
            c.arg("-F").arg(config);
        }
        let control_path = self.control_dir.join("%C");
        c.args(["-o", "BatchMode=yes"])
            .args(["-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_S}")])
            .args(["-o", &format!("ServerAliveInterval={ALIVE_INTERVAL_S}")])
            .args(["-o", &format!("ServerAliveCountMax={ALIVE_COUNT}")])
            .args(["-o", "ControlMaster=auto"])
            .arg("-o")
            .arg(format!("ControlPath={}", control_path.display()))
            .args(["-o", "ControlPersist=10m"])
            .arg(if tty { "-t" } else { "-T" })
            .arg("--")
            .arg(&self.host);
        Ok(c)
    }

    /// Runs `script` in the remote user's login shell.
    pub fn run(&self, script: &str, io: Io) -> Result<Finished, RemoteError> {
        let tty = matches!(io, Io::Terminal);
        let mut cmd = self.command(tty)?;
        cmd.arg(script);
        let stdin = |f: Option<File>| f.map_or_else(Stdio::null, Stdio::from);
        match io {
            Io::Terminal => {
                let status = cmd.status().map_err(|e| RemoteError::NoSsh { source: e })?;
                Ok(Finished {
                    code: status.code().unwrap_or(SSH_FAILED),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                })
            }
            Io::Stream(input) => {
                let mut child = cmd
                    .stdin(stdin(input))
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| RemoteError::NoSsh { source: e })?;
                let err = pump(
                    child.stderr.take(),
                    Some(Box::new(io::stderr())),
                    Some(STDERR_KEPT),
                );
                finish(&mut child, None, Some(err))
            }
            Io::Capture(input) => {
                let mut child = cmd
                    .stdin(stdin(input))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| RemoteError::NoSsh { source: e })?;
                let out = pump(child.stdout.take(), None, None);
                let err = pump(child.stderr.take(), None, None);
                finish(&mut child, Some(out), Some(err))
            }
        }
    }
}

/// The longest control socket path: `sun_path` holds 107 bytes, and ssh
/// first binds a temporary name 17 bytes longer than the `%C` hash's 40.
const MAX_CONTROL_DIR: usize = 107 - 17 - 41;

/// Where the control sockets go: `~/.ssh/shepherd`, unless the home
/// directory's path is too long for a socket path, then
/// `$XDG_RUNTIME_DIR/shepherd`, then `/tmp/shepherd-ssh-UID`.
fn control_dir() -> Result<PathBuf, RemoteError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(RemoteError::NoHome)?;
    let fits = |p: &PathBuf| p.as_os_str().len() <= MAX_CONTROL_DIR;
    let dir = PathBuf::from(home).join(".ssh/shepherd");
    if fits(&dir) {
        return Ok(dir);
    }
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(run).join("shepherd");
        if fits(&dir) {
            return Ok(dir);
        }
    }
    Ok(PathBuf::from(format!(
        "/tmp/shepherd-ssh-{}",
        rustix::process::getuid().as_raw()
    )))
}

/// `mkdir -p` with mode 0700 for the last component: control sockets let
/// anyone who can reach them use the connection.
fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        // In a shared place like /tmp, someone else's directory (or a link)
        // would hand them our connections.
        if !meta.is_dir() || meta.uid() != rustix::process::getuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not a directory of this user", dir.display()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a pump thread has read so far.
struct Pumped {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Copies a child's pipe into a buffer, echoing it to `echo` as it comes (so
/// `logs -f` streams). With `keep`, only the last `keep` bytes are kept (an
/// echoed stream is kept only for the error message).
fn pump(
    src: Option<impl Read + Send + 'static>,
    echo: Option<Box<dyn Write + Send>>,
    keep: Option<usize>,
) -> Pumped {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let thread = src.map(|mut src| {
        let buf = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut echo = echo;
            let mut chunk = [0u8; 8192];
            loop {
                match src.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Some(w) = echo.as_mut() {
                            let _ = w.write_all(&chunk[..n]).and_then(|()| w.flush());
                        }
                        let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                        b.extend_from_slice(&chunk[..n]);
                        if let Some(keep) = keep
                            && b.len() > keep
                        {
                            let cut = b.len() - keep;
                            b.drain(..cut);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
    });
    Pumped { buf, thread }
}

/// Everything a pump has read once it reaches end-of-file, or once it has
/// read nothing new for `DRAIN_IDLE` (a control master holds the pipe).
fn drain(p: Pumped) -> Vec<u8> {
    let len = || p.buf.lock().map_or(0, |b| b.len());
    let mut last = (len(), Instant::now());
    while p.thread.as_ref().is_some_and(|t| !t.is_finished()) && last.1.elapsed() < DRAIN_IDLE {
        std::thread::sleep(Duration::from_millis(10));
        let now = len();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    std::mem::take(&mut *p.buf.lock().unwrap_or_else(|e| e.into_inner()))
}

fn finish(
    child: &mut Child,
    out: Option<Pumped>,
    err: Option<Pumped>,
) -> Result<Finished, RemoteError> {
    let status = child.wait().map_err(|e| RemoteError::Local {
        what: "cannot wait for ssh".to_string(),
        source: e,
    })?;
    Ok(Finished {
        code: status.code().unwrap_or(SSH_FAILED),
        stdout: out.map(drain).unwrap_or_default(),
        stderr: err.map(drain).unwrap_or_default(),
    })
}
