//! `--remote HOST`: any command, run on another cluster's login node over the
//! user's own `ssh` ([docs/remote.md](../docs/remote.md)).
//!
//! The whole invocation is handed over: the same words, less `--remote` and
//! `--remote-dir`, run by a `shepherd` binary on the remote whose standard
//! output, standard error and exit status come back unchanged. That binary is
//! this one: copied on first use to a name that contains its checksum
//! (`bootstrap`), so a remote never runs a different build than the one the
//! user typed. `shepherd SCRIPT` copies the script (only the script) to the
//! remote directory first, and submits it from there.

pub mod argv;
mod bootstrap;
pub mod quote;
pub mod registry;
mod sha256;
pub mod ssh;

use std::path::{Path, PathBuf};

use ssh::{Io, SSH_FAILED, Ssh};

/// Where `shepherd SCRIPT --remote HOST` puts the script without
/// `--remote-dir`: a directory of the remote user's home.
pub const DEFAULT_REMOTE_DIR: &str = "~/shepherd-runs";

/// Failures of the remote machinery itself (the remote command's own errors
/// come back as its output and exit status).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("invalid remote host {0:?}")]
    BadHost(String),
    #[error("HOME is not set")]
    NoHome,
    #[error("cannot run ssh")]
    NoSsh { source: std::io::Error },
    #[error("an argument is not valid UTF-8 and cannot be sent over ssh: {0:?}")]
    NotUtf8(String),
    #[error("{what}")]
    Local {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("the ssh connection to {host} failed{}", detail_suffix(.detail))]
    Unreachable { host: String, detail: String },
    #[error(
        "{host} runs {remote}, but this shepherd is built for {local}: it cannot be copied there"
    )]
    WrongPlatform {
        host: String,
        remote: String,
        local: String,
    },
    #[error("cannot install shepherd on {host}{}", detail_suffix(.detail))]
    Install { host: String, detail: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RemoteError {
    /// What the user can do about it, when that is known.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RemoteError::BadHost(_) => {
                "give a Host of ~/.ssh/config, [user@]hostname, or a name from `shepherd remotes list`".into()
            }
            RemoteError::NoSsh { .. } => "install the OpenSSH client (`ssh`) or put it on PATH".into(),
            RemoteError::Unreachable { host, detail } => {
                let d = detail.to_ascii_lowercase();
                if d.contains("permission denied") {
                    format!("`ssh {host}` must log in without a prompt: load your key into ssh-agent or set IdentityFile in ~/.ssh/config")
                } else if d.contains("host key verification failed") {
                    format!("connect once with `ssh {host}` to check and accept its host key")
                } else if d.contains("could not resolve") {
                    "check the host name, or name the cluster with `shepherd remotes add NAME --host HOST`".into()
                } else {
                    format!("check that `ssh {host} true` works; the next command opens a new connection")
                }
            }
            RemoteError::WrongPlatform { host, remote, .. } => format!(
                "build shepherd for {remote} (e.g. `cargo build --release --target {}-unknown-linux-musl`) and run it on {host} directly",
                remote.split_whitespace().last().unwrap_or("ARCH")
            ),
            RemoteError::Install { .. } => {
                "check the remote's free space and that ~/.local/share/shepherd/bin is writable".into()
            }
            _ => return None,
        })
    }
}

/// Where and how to run: a named remote's settings, or a bare ssh host.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub remote_dir: String,
    pub setup: Option<String>,
    /// `--remote-copy`: more files for the remote dir, beside the script.
    pub copy: Vec<PathBuf>,
}

impl Target {
    /// `--remote VALUE`: a named remote first, else an ssh host.
    pub fn resolve(value: &str, remote_dir: Option<&str>) -> Result<Target, RemoteError> {
        let named = registry::find(value).map_err(|e| RemoteError::Config(format!("{e:#}")))?;
        let (host, dir, setup) = match named {
            Some(r) => (r.host, r.remote_dir, r.setup),
            None => (value.to_string(), None, None),
        };
        Ok(Target {
            host,
            remote_dir: remote_dir
                .map(str::to_string)
                .or(dir)
                .unwrap_or_else(|| DEFAULT_REMOTE_DIR.to_string()),
            setup,
            copy: Vec::new(),
        })
    }
}

/// What the invocation asks of the remote.
pub struct Plan {
    /// The words after `shepherd`.
    pub words: Vec<String>,
    /// `run`: the local script and the index of its word.
    pub script: Option<(PathBuf, usize)>,
    /// An interactive terminal is needed (the TUI).
    pub terminal: bool,
    /// Keep the output instead of showing it.
    pub capture: bool,
}

/// How a remote command ended: its exit status and, when captured, output.
pub struct Done {
    /// The remote command's exit status (0–255).
    pub code: i32,
    pub stdout: Vec<u8>,
}

/// Runs the plan on the target, installing shepherd there first if needed.
pub fn run(target: &Target, plan: Plan) -> Result<Done, RemoteError> {
    let ssh = Ssh::new(&target.host)?;
    let local = bootstrap::LocalBinary::current()?;
    let mut installed = false;
    loop {
        let (script, io) = remote_script(target, &plan, &local)?;
        let done = ssh.run(&script, io)?;
        match done.code {
            bootstrap::MISSING if !installed => {
                bootstrap::install(&ssh, &local)?;
                installed = true;
            }
            SSH_FAILED => {
                return Err(RemoteError::Unreachable {
                    host: target.host.clone(),
                    detail: last_ssh_line(&done.stderr),
                });
            }
            bootstrap::MISSING => {
                return Err(RemoteError::Install {
                    host: target.host.clone(),
                    detail: "the binary just installed is not executable there (is the home directory mounted noexec?)".into(),
                });
            }
            code => {
                return Ok(Done {
                    code,
                    stdout: done.stdout,
                });
            }
        }
    }
}

/// How asking a named remote for a JSON answer went wrong.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// ssh, or the remote machinery (install, copy), failed.
    #[error(transparent)]
    Transport(#[from] RemoteError),
    /// The remote `shepherd` answered with an error: its `--json` error
    /// document (or only its exit status).
    #[error("{message}")]
    Refused {
        code: i32,
        message: String,
        hint: Option<String>,
    },
    /// The answer is not the JSON asked for.
    #[error("unreadable answer (exit {code}): {detail}")]
    Unreadable { code: i32, detail: String },
}

impl AskError {
    fn refused(code: i32, doc: Option<&serde_json::Value>) -> AskError {
        let error = doc.map(|d| &d["error"]);
        AskError::Refused {
            code,
            message: error
                .and_then(|e| e["message"].as_str())
                .map_or_else(|| format!("exit {code}"), str::to_string),
            hint: error.and_then(|e| e["hint"].as_str()).map(str::to_string),
        }
    }
}

/// Runs `shepherd WORDS` on a named remote over its shared connection
/// (installing shepherd there first if needed) and returns its exit status
/// and standard output; a failure of the connection is an error that names
/// the host.
fn remote_capture(remote: &registry::Remote, words: &[&str]) -> Result<Done, RemoteError> {
    let target = Target {
        host: remote.host.clone(),
        remote_dir: remote
            .remote_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_REMOTE_DIR.to_string()),
        setup: remote.setup.clone(),
        copy: Vec::new(),
    };
    let plan = Plan {
        words: words.iter().map(|w| w.to_string()).collect(),
        script: None,
        terminal: false,
        capture: true,
    };
    run(&target, plan)
}

/// `shepherd WORDS` on a named remote, whose answer is one JSON document
/// (the words should include `--json`): the document when the command
/// succeeded, else its error.
pub fn remote_json(
    remote: &registry::Remote,
    words: &[&str],
) -> Result<serde_json::Value, AskError> {
    let Done { code, stdout } = remote_capture(remote, words)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| AskError::Unreadable {
            code,
            detail: e.to_string(),
        })?;
    if code == 0 && doc.get("error").is_none() {
        Ok(doc)
    } else {
        Err(AskError::refused(code, Some(&doc)))
    }
}

/// The same for a command whose `--json` answer is JSON Lines (`logs`):
/// one value per line.
pub fn remote_json_lines(
    remote: &registry::Remote,
    words: &[&str],
) -> Result<Vec<serde_json::Value>, AskError> {
    let Done { code, stdout } = remote_capture(remote, words)?;
    let values: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| AskError::Unreadable {
            code,
            detail: e.to_string(),
        })?;
    if code == 0 {
        Ok(values)
    } else {
        Err(AskError::refused(code, values.first()))
    }
}

/// The remote shell script for `plan`, and how to wire its streams.
fn remote_script(
    target: &Target,
    plan: &Plan,
    local: &bootstrap::LocalBinary,
) -> Result<(String, Io), RemoteError> {
    let mut s = String::new();
    // The check costs nothing: the name carries the checksum, so a binary of
    // that name is this build (install verified it).
    s.push_str(&format!(
        "b={}; [ -x \"$b\" ] || exit {}\n",
        local.remote_path_expr(),
        bootstrap::MISSING
    ));
    if let Some(setup) = &target.setup {
        // The setup's own output goes to stderr: stdout is the command's
        // (and may be JSON).
        s.push_str(&format!(
            "if ! {{ {setup}\n}} >&2; then echo 'shepherd: the remote setup failed (see `shepherd remotes list`)' >&2; exit 1; fi\n"
        ));
    }
    let mut words: Vec<String> = plan.words.iter().map(|w| quote::quote(w)).collect();
    let mut input = None;
    if let Some((path, at)) = &plan.script {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| RemoteError::Config(format!("{} has no file name", path.display())))?;
        let dir = argv::remote_dir_expr(&target.remote_dir);
        let q = quote::quote(name);
        let shown = quote::quote(&path.display().to_string());
        let host = quote::quote(&target.host);
        let file = if target.copy.is_empty() {
            let part = quote::quote(&format!(".{name}.part"));
            // Written whole, then renamed: a run created meanwhile never
            // reads half a script. The run's working directory is the
            // remote dir.
            s.push_str(&format!(
                "mkdir -p {dir} && cd {dir} && cat > {part} && mv -f {part} {q} || exit 1\n\
                 printf 'shepherd: copied %s to %s:%s/%s\\n' {shown} {host} \"$PWD\" {q} >&2\n",
            ));
            std::fs::File::open(path).map_err(|e| RemoteError::Local {
                what: format!("cannot read the script {}", path.display()),
                source: e,
            })?
        } else {
            // The script and the extra files travel as one tar stream.
            s.push_str(&format!(
                "mkdir -p {dir} && cd {dir} && tar -xf - || exit 1\n\
                 printf 'shepherd: copied %s and %s to %s:%s\\n' {shown} {} {host} \"$PWD\" >&2\n",
                quote::quote(
                    &target
                        .copy
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            archive(path, name, &target.copy)?
        };
        words[*at] = q;
        input = Some(file);
    }
    s.push_str("exec \"$b\"");
    for w in &words {
        s.push(' ');
        s.push_str(w);
    }
    s.push('\n');
    let io = if plan.terminal {
        Io::Terminal
    } else if plan.capture {
        Io::Capture(input)
    } else {
        Io::Stream(input)
    };
    Ok((s, io))
}

/// A tar archive of the script (under its file name) and `extra` (paths
/// relative to here, kept relative), as an open file that is already
/// unlinked: nothing to clean up, whatever happens next.
fn archive(script: &Path, name: &str, extra: &[PathBuf]) -> Result<std::fs::File, RemoteError> {
    for p in extra {
        let inside = p.is_relative()
            && p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if !inside {
            return Err(RemoteError::Config(format!(
                "--remote-copy {}: give a path inside the current directory (it is copied to the same place under the remote dir)",
                p.display()
            )));
        }
        if !p.exists() {
            return Err(RemoteError::Config(format!(
                "--remote-copy {}: no such file or directory",
                p.display()
            )));
        }
    }
    let tmp = std::env::temp_dir().join(format!("shepherd-copy-{}.tar", std::process::id()));
    let script_dir = script
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tmp)
        .arg("-C")
        .arg(script_dir)
        // `./` keeps a name that starts with `-` from reading as an option
        // (`--` would also end the options, and `-C` is one).
        .arg(Path::new(".").join(name))
        .arg("-C")
        .arg(std::env::current_dir().map_err(|e| RemoteError::Local {
            what: "cannot read the current directory".into(),
            source: e,
        })?)
        .args(extra.iter().map(|p| Path::new(".").join(p)))
        .output()
        .map_err(|e| RemoteError::Local {
            what: "cannot run tar to pack --remote-copy".into(),
            source: e,
        })?;
    let file = std::fs::File::open(&tmp);
    let _ = std::fs::remove_file(&tmp);
    if !out.status.success() {
        return Err(RemoteError::Config(format!(
            "tar could not pack the files to copy: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    file.map_err(|e| RemoteError::Local {
        what: format!("cannot read {}", tmp.display()),
        source: e,
    })
}

/// The line of ssh's own complaint (the last of its stderr that looks like
/// one), for the error message.
fn last_ssh_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| {
            l.starts_with("ssh:")
                || l.contains("Connection")
                || l.contains("connection")
                || l.contains("Permission denied")
                || l.contains("Host key")
                || l.contains("mux_client")
                || l.contains("client_loop")
        })
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| {
            "the connection ended without an exit status (lost, or the remote command was killed)"
                .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Runs the remote script locally with `sh`, as sshd would, in a home
    /// where the "installed binary" prints its working directory and its
    /// arguments, one per NUL.
    fn run_locally(target: &Target, plan: &Plan, home: &Path) -> (i32, Vec<String>, String) {
        let local = bootstrap::LocalBinary::fake(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        );
        let (script, io) = remote_script(target, plan, &local).unwrap();
        let bin = home.join(bootstrap::REMOTE_BIN_DIR);
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join(local.remote_name());
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\0' \"$PWD\" \"$@\"\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let stdin = match io {
            Io::Stream(Some(f)) => std::process::Stdio::from(f),
            _ => std::process::Stdio::null(),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("HOME", home)
            .current_dir(home)
            .stdin(stdin)
            .output()
            .unwrap();
        let mut words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        words.pop();
        (
            out.status.code().unwrap_or(-1),
            words,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn target(dir: &str, setup: Option<&str>) -> Target {
        Target {
            host: "h".into(),
            remote_dir: dir.into(),
            copy: Vec::new(),
            setup: setup.map(str::to_string),
        }
    }

    #[test]
    fn the_remote_gets_exactly_the_words_typed() {
        let home = tempfile::tempdir().unwrap();
        let words: Vec<String> = ["status", "a b$HOME;`id`'\"\nz", "--json"]
            .map(String::from)
            .to_vec();
        let plan = Plan {
            words: words.clone(),
            script: None,
            terminal: false,
            capture: false,
        };
        let (code, got, _) = run_locally(&target("~/r", None), &plan, home.path());
        assert_eq!(code, 0);
        assert_eq!(got[0], home.path().display().to_string());
        assert_eq!(&got[1..], &words[..]);
    }

    #[test]
    fn a_missing_binary_is_exit_127_before_anything_runs() {
        let home = tempfile::tempdir().unwrap();
        let local = bootstrap::LocalBinary::fake(&"f".repeat(64));
        let plan = Plan {
            words: vec!["list".into()],
            script: None,
            terminal: false,
            capture: false,
        };
        let (script, _) = remote_script(&target("~/r", Some("touch ran")), &plan, &local).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("HOME", home.path())
            .current_dir(home.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(bootstrap::MISSING));
        assert!(!home.path().join("ran").exists());
    }

    #[test]
    fn files_asked_for_travel_with_the_script_and_keep_their_place() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("-train.sh");
        std::fs::write(&path, "#!/bin/bash\necho hi\n").unwrap();
        let plan = Plan {
            words: vec!["run".into(), path.display().to_string()],
            script: Some((path.clone(), 1)),
            terminal: false,
            capture: false,
        };
        // Tests run in the package root: these paths are relative to it.
        let mut t = target("runs", None);
        t.copy = vec!["docs/config.md".into(), "examples".into()];
        let (code, got, stderr) = run_locally(&t, &plan, home.path());
        assert_eq!(code, 0, "{stderr}");
        let dir = home.path().join("runs");
        assert_eq!(got[1..], ["run".to_string(), "-train.sh".to_string()]);
        assert!(dir.join("-train.sh").is_file());
        assert_eq!(
            std::fs::read(dir.join("docs/config.md")).unwrap(),
            std::fs::read("docs/config.md").unwrap()
        );
        assert!(dir.join("examples/train.sh").is_file());
        assert!(
            stderr.contains("and docs/config.md, examples to h:"),
            "{stderr}"
        );

        for bad in ["../outside", "/etc/hostname", "no/such/file"] {
            let mut t = target("runs", None);
            t.copy = vec![bad.into()];
            let fake = bootstrap::LocalBinary::fake(&"0".repeat(64));
            let err = remote_script(&t, &plan, &fake)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with(&format!("--remote-copy {bad}: ")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_script_is_copied_to_the_remote_dir_and_run_from_there() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("my $job's.sh");
        std::fs::write(&path, "#!/bin/bash\necho hi\n").unwrap();
        let plan = Plan {
            words: vec![
                "run".into(),
                path.display().to_string(),
                "--gpus".into(),
                "1".into(),
            ],
            script: Some((path.clone(), 1)),
            terminal: false,
            capture: false,
        };
        let (code, got, stderr) = run_locally(
            &target("~/my runs", Some("echo setting up")),
            &plan,
            home.path(),
        );
        assert_eq!(code, 0, "{stderr}");
        let dir = home.path().join("my runs");
        assert_eq!(
            got,
            [
                dir.display().to_string(),
                "run".into(),
                "my $job's.sh".into(),
                "--gpus".into(),
                "1".into()
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("my $job's.sh")).unwrap(),
            "#!/bin/bash\necho hi\n"
        );
        // Only the script: no temporary file is left.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // The setup's output goes to stderr; so does where the script went.
        assert!(stderr.contains("setting up\n"), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "copied {} to h:{}/my $job's.sh",
                path.display(),
                dir.display()
            )),
            "{stderr}"
        );
    }

    #[test]
    fn a_failing_setup_stops_the_command() {
        let home = tempfile::tempdir().unwrap();
        let plan = Plan {
            words: vec!["list".into()],
            script: None,
            terminal: false,
            capture: false,
        };
        let (code, got, stderr) = run_locally(&target("~/r", Some("false")), &plan, home.path());
        assert_eq!(code, 1);
        assert!(got.is_empty());
        assert!(stderr.contains("remote setup failed"), "{stderr}");
    }

    #[test]
    fn ssh_complaints_are_picked_out_of_stderr() {
        assert_eq!(
            last_ssh_line(b"remote noise\nssh: connect to host x port 22: Connection refused\n"),
            "ssh: connect to host x port 22: Connection refused"
        );
        assert_eq!(
            last_ssh_line(b"root@x: Permission denied (publickey).\n"),
            "root@x: Permission denied (publickey)."
        );
        assert!(last_ssh_line(b"").contains("without an exit status"));
    }

    #[test]
    fn hints_follow_the_complaint() {
        let e = |d: &str| {
            RemoteError::Unreachable {
                host: "h".into(),
                detail: d.into(),
            }
            .hint()
            .unwrap()
        };
        assert!(e("Permission denied (publickey)").contains("ssh-agent"));
        assert!(e("Host key verification failed.").contains("host key"));
        assert!(e("Could not resolve hostname h").contains("remotes add"));
        assert!(e("Connection refused").contains("ssh h true"));
    }
}
