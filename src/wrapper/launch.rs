//! Whether a script can be started, and why not: its `#!` line, its line
//! endings, its interpreter.
//!
//! The same reading serves twice: at submission ([`check_script`]), to
//! refuse a script that cannot start anywhere with a precise error and the
//! fix, and in the job ([`explain`]), to put the OS's words and the likely
//! cause into a `launch_failed` outcome when the kernel refused to execute
//! the script anyway (the nodes differ from the login node, or the check was
//! skipped).

use std::path::Path;

/// A script's `#!` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter as the kernel reads it (up to the first blank),
    /// including a trailing `\r` if the line has one.
    pub interpreter: String,
    /// The rest of the line (one argument to the kernel), if any.
    pub arg: Option<String>,
    /// The line ends in `\r` (CRLF line endings).
    pub carriage_return: bool,
}

/// The `#!` line of `bytes`: `None` when there is none, `Some(Err(()))` for
/// a bare `#!` that names no interpreter.
pub fn shebang(bytes: &[u8]) -> Option<Result<Shebang, ()>> {
    let rest = bytes.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let carriage_return = line.ends_with('\r');
    // The kernel splits at the first space or tab; a `\r` is part of a name.
    let trimmed = line.trim_start_matches([' ', '\t']);
    let (interpreter, arg) = match trimmed.split_once([' ', '\t']) {
        Some((i, a)) => {
            let a = a.trim_matches([' ', '\t']);
            (i, (!a.is_empty() && a != "\r").then(|| a.to_string()))
        }
        None => (trimmed, None),
    };
    if interpreter.trim_end_matches('\r').is_empty() {
        return Some(Err(()));
    }
    Some(Ok(Shebang {
        interpreter: interpreter.to_string(),
        arg,
        carriage_return,
    }))
}

/// What a submission check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The script cannot start: the run is not created.
    Refuse(String),
    /// It may not start on the nodes: said, not refused.
    Warn(String),
}

/// What the checks need to know about the login node.
pub trait Host {
    /// `path` exists and is an executable regular file.
    fn is_executable(&self, path: &Path) -> bool;
    /// `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// `program` is found on `PATH`.
    fn on_path(&self, program: &str) -> bool;
}

/// The login node itself.
pub struct ThisHost;

impl Host for ThisHost {
    fn is_executable(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn on_path(&self, program: &str) -> bool {
        let Some(path) = std::env::var_os("PATH") else {
            return false;
        };
        std::env::split_paths(&path).any(|dir| self.is_executable(&dir.join(program)))
    }
}

/// The fix for CRLF line endings, for messages.
fn crlf_fix(name: &str) -> String {
    format!("convert it with `sed -i 's/\\r$//' {name}` (or `dos2unix {name}`)")
}

/// Checks, at submission, that the script `name` (its bytes) can start:
///
/// - it starts with `#!` (as sbatch demands of a batch script) naming an
///   interpreter;
/// - its lines do not end in `\r` (CRLF): the kernel would look for an
///   interpreter called `/bin/bash\r`, bash would read `\r` into every word;
/// - the interpreter exists and is executable on this (login) node. Nodes
///   may differ, so this is a refusal with a way around it
///   (`--no-script-check`), not a guess about the nodes;
/// - for `#!/usr/bin/env PROGRAM`, PROGRAM is looked up on the node's `PATH`
///   at run time (modules, conda): one missing here is only a warning.
pub fn check_script(name: &str, bytes: &[u8], host: &dyn Host) -> Vec<Finding> {
    let mut found = Vec::new();
    let sb = match shebang(bytes) {
        None => {
            found.push(Finding::Refuse(format!(
                "{name} does not start with a #! line naming its interpreter \
                 (Slurm's sbatch refuses such scripts too); add one, e.g. `#!/bin/bash`"
            )));
            return found;
        }
        Some(Err(())) => {
            found.push(Finding::Refuse(format!(
                "{name}: its first line `#!` names no interpreter; write e.g. `#!/bin/bash`"
            )));
            return found;
        }
        Some(Ok(sb)) => sb,
    };
    let crlf_lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\r"))
        .count();
    if sb.carriage_return {
        found.push(Finding::Refuse(format!(
            "{name} has Windows (CRLF) line endings: its first line ends in a carriage \
             return, so the kernel looks for an interpreter named {:?}, which does not \
             exist; {}",
            sb.interpreter,
            crlf_fix(name)
        )));
        return found;
    }
    if crlf_lines > 0 {
        let first = bytes
            .split(|&b| b == b'\n')
            .position(|l| l.ends_with(b"\r"))
            .map_or(0, |i| i + 1);
        found.push(Finding::Refuse(format!(
            "{name} has Windows (CRLF) line endings on {crlf_lines} line(s), the first on \
             line {first}: the shell would read the carriage return into commands and \
             file names; {}",
            crlf_fix(name)
        )));
        return found;
    }
    let interpreter = Path::new(&sb.interpreter);
    if !interpreter.is_absolute() {
        found.push(Finding::Refuse(format!(
            "{name}: the interpreter {:?} in its #! line is not an absolute path, so the \
             kernel cannot find it; write e.g. `#!/usr/bin/env {}`",
            sb.interpreter, sb.interpreter
        )));
        return found;
    }
    if !host.is_executable(interpreter) {
        let what = if host.exists(interpreter) {
            "is not executable"
        } else {
            "does not exist"
        };
        found.push(Finding::Refuse(format!(
            "{name}: its interpreter {} {what} on this login node. Compute nodes may \
             differ from the login node: if it exists there, submit with \
             --no-script-check; otherwise fix the #! line",
            sb.interpreter
        )));
        return found;
    }
    if interpreter.file_name().is_some_and(|n| n == "env")
        && let Some(program) = env_program(sb.arg.as_deref())
        && !host.on_path(&program)
    {
        found.push(Finding::Warn(format!(
            "{name}: `{program}` (from `#!{} {}`) is not on PATH here; env looks it up \
             on the node when the job starts, so it must be on the job's PATH there \
             (a module or environment activated in --setup counts)",
            sb.interpreter,
            sb.arg.as_deref().unwrap_or_default()
        )));
    }
    found
}

/// The program `env` runs, from its one kernel argument (`python3`,
/// `-S python3 -u`).
fn env_program(arg: Option<&str>) -> Option<String> {
    let mut words = arg?.split_whitespace();
    loop {
        let w = words.next()?;
        match w {
            "-S" | "--split-string" | "-i" | "--ignore-environment" | "-" => continue,
            w if w.starts_with('-') || w.contains('=') => continue,
            w => return Some(w.to_string()),
        }
    }
}

/// Why the kernel refused to execute `script` (`error`, from the spawn), in
/// the OS's words and with the likely cause read from its `#!` line.
/// `original` is the user's script the snapshot was taken from: the fix
/// names it.
pub fn explain(script: &Path, original: &Path, error: &std::io::Error) -> String {
    let head = std::fs::read(script)
        .map(|b| b.into_iter().take(4096).collect::<Vec<u8>>())
        .unwrap_or_default();
    let name = original.display().to_string();
    let cause = match shebang(&head) {
        None => "it has no #! line naming an interpreter".to_string(),
        Some(Err(())) => "its #! line names no interpreter".to_string(),
        Some(Ok(sb)) if sb.carriage_return => format!(
            "it has Windows (CRLF) line endings: the kernel looked for the interpreter {:?}; {}",
            sb.interpreter,
            crlf_fix(&name)
        ),
        Some(Ok(sb)) => match error.raw_os_error() {
            // ENOENT: here the interpreter, since the script was opened.
            Some(2) if !Path::new(&sb.interpreter).exists() => {
                format!(
                    "its interpreter {} does not exist on this node",
                    sb.interpreter
                )
            }
            // EACCES.
            Some(13) => format!(
                "the script or its interpreter {} is not executable here (or lies on a \
                 noexec filesystem)",
                sb.interpreter
            ),
            _ => format!("its #! line names {}", sb.interpreter),
        },
    };
    format!(
        "cannot execute the workload {name} (its snapshot {}): {error}; {cause}",
        script.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Fake {
        executables: Vec<PathBuf>,
        files: Vec<PathBuf>,
        path: Vec<&'static str>,
    }

    impl Host for Fake {
        fn is_executable(&self, p: &Path) -> bool {
            self.executables.iter().any(|e| e == p)
        }
        fn exists(&self, p: &Path) -> bool {
            self.is_executable(p) || self.files.iter().any(|e| e == p)
        }
        fn on_path(&self, program: &str) -> bool {
            self.path.contains(&program)
        }
    }

    fn host() -> Fake {
        Fake {
            executables: vec!["/bin/bash".into(), "/usr/bin/env".into()],
            files: vec!["/opt/readonly/python".into()],
            path: vec!["bash"],
        }
    }

    fn check(text: &[u8]) -> Vec<Finding> {
        check_script("train.sh", text, &host())
    }

    fn refusal(text: &[u8]) -> String {
        match check(text).as_slice() {
            [Finding::Refuse(m)] => m.clone(),
            other => panic!("expected one refusal, got {other:?}"),
        }
    }

    #[test]
    fn shebangs_are_read_like_the_kernel_reads_them() {
        let sb = shebang(b"#!/bin/bash\necho").unwrap().unwrap();
        assert_eq!(
            (sb.interpreter.as_str(), sb.arg, sb.carriage_return),
            ("/bin/bash", None, false)
        );
        let sb = shebang(b"#! /usr/bin/env  python3 -u\n").unwrap().unwrap();
        assert_eq!(sb.interpreter, "/usr/bin/env");
        assert_eq!(sb.arg.as_deref(), Some("python3 -u"));
        let sb = shebang(b"#!/bin/bash\r\necho\r\n").unwrap().unwrap();
        assert_eq!(sb.interpreter, "/bin/bash\r");
        assert!(sb.carriage_return);
        let sb = shebang(b"#!/bin/bash -e\r\n").unwrap().unwrap();
        assert_eq!(
            (sb.interpreter.as_str(), sb.arg.as_deref()),
            ("/bin/bash", Some("-e\r"))
        );
        assert_eq!(shebang(b"#!\n"), Some(Err(())));
        assert_eq!(shebang(b"#!   \r\n"), Some(Err(())));
        assert_eq!(shebang(b"echo hi\n"), None);
        assert_eq!(shebang(b""), None);
    }

    #[test]
    fn a_good_script_passes() {
        assert!(check(b"#!/bin/bash\n#SBATCH -p a100\necho hi\n").is_empty());
        assert!(check(b"#!/usr/bin/env bash\necho hi\n").is_empty());
    }

    #[test]
    fn crlf_is_refused_with_the_fix() {
        let m = refusal(b"#!/bin/bash\r\necho hi\r\n");
        assert!(m.contains("Windows (CRLF) line endings"), "{m}");
        assert!(m.contains("\"/bin/bash\\r\""), "{m}");
        assert!(m.contains("sed -i 's/\\r$//' train.sh"), "{m}");
        assert!(m.contains("dos2unix train.sh"), "{m}");
        // A clean first line, CRLF further down.
        let m = refusal(b"#!/bin/bash\necho a\r\necho b\r\n");
        assert!(m.contains("on 2 line(s), the first on line 2"), "{m}");
    }

    #[test]
    fn a_missing_bare_or_relative_interpreter_is_refused() {
        let m = refusal(b"#!/bin/bsh\necho\n");
        assert!(
            m.contains("/bin/bsh does not exist on this login node"),
            "{m}"
        );
        assert!(m.contains("Compute nodes may differ"), "{m}");
        assert!(m.contains("--no-script-check"), "{m}");
        let m = refusal(b"#!/opt/readonly/python\n");
        assert!(m.contains("is not executable"), "{m}");
        let m = refusal(b"#!\necho\n");
        assert!(m.contains("names no interpreter"), "{m}");
        let m = refusal(b"echo no shebang\n");
        assert!(m.contains("does not start with a #! line"), "{m}");
        let m = refusal(b"#!python3\n");
        assert!(m.contains("not an absolute path"), "{m}");
    }

    #[test]
    fn a_program_env_cannot_find_here_is_only_a_warning() {
        match check(b"#!/usr/bin/env python3\nprint(1)\n").as_slice() {
            [Finding::Warn(m)] => {
                assert!(m.contains("`python3`"), "{m}");
                assert!(m.contains("env looks it up on the node"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check(b"#!/usr/bin/env -S bash -e\n").is_empty());
        assert_eq!(
            env_program(Some("-S python3 -u")).as_deref(),
            Some("python3")
        );
        assert_eq!(env_program(Some("A=1 python3")).as_deref(), Some("python3"));
        assert_eq!(env_program(None), None);
    }

    #[test]
    fn launch_failures_are_explained_in_the_os_words() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str, text: &[u8], mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = std::process::Command::new(&path).output().unwrap_err();
            explain(&path, Path::new("/home/u/train.sh"), &err)
        };
        let m = run("crlf.sh", b"#!/bin/sh\r\necho hi\r\n", 0o755);
        assert!(m.contains("No such file or directory (os error 2)"), "{m}");
        assert!(m.contains("CRLF"), "{m}");
        assert!(m.contains("dos2unix /home/u/train.sh"), "{m}");
        let m = run("typo.sh", b"#!/bin/nosuch-sh\necho hi\n", 0o755);
        assert!(
            m.contains("interpreter /bin/nosuch-sh does not exist on this node"),
            "{m}"
        );
        let m = run("noexec.sh", b"#!/bin/sh\necho hi\n", 0o644);
        assert!(m.contains("Permission denied (os error 13)"), "{m}");
        assert!(m.contains("not executable"), "{m}");
        let m = run("bare.sh", b"#!\necho hi\n", 0o755);
        assert!(m.starts_with("cannot execute the workload"), "{m}");
        assert!(m.contains("names no interpreter"), "{m}");
    }
}
