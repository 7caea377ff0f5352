//! Putting this very binary on the remote.
//!
//! The remote copy lives at `~/.local/share/shepherd/bin/shepherd-VERSION-SHA`
//! (SHA: the first 16 hex digits of its SHA-256), with a `shepherd` link to
//! the newest. Because the name carries the checksum, "is the right build
//! there?" is a `test -x` folded into each command's own round trip, and a
//! different build (a new version, or a rebuilt one) gets its own file. Old
//! files are kept: a remote daemon and its jobs' wrappers may still run them.
//!
//! Installing: check that the remote's OS and architecture are this binary's
//! (`uname -sm`), stream the binary through the same ssh connection into a
//! temporary file, compare the remote's `sha256sum` with the digest computed
//! here, and only then `chmod` and `mv` it into place (atomic: a concurrent
//! command sees the old state or the complete binary).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::RemoteError;
use super::quote::quote;
use super::ssh::{Io, Ssh};

/// The exit status of a remote command that did not find the binary (the
/// shell's own "command not found", which the remote shepherd never uses).
pub const MISSING: i32 = 127;

/// Where the binaries go, relative to the remote home.
pub const REMOTE_BIN_DIR: &str = ".local/share/shepherd/bin";

/// This binary: where it is and what it hashes to.
#[derive(Debug, Clone)]
pub struct LocalBinary {
    path: PathBuf,
    size: u64,
    sha256: String,
}

impl LocalBinary {
    /// The running executable. Its digest is cached in
    /// `~/.cache/shepherd/binary.sha256`, keyed by path, size and mtime, so it
    /// is computed once per build rather than on every command.
    pub fn current() -> Result<LocalBinary, RemoteError> {
        let local = |what: String| move |e| RemoteError::Local { what, source: e };
        let path =
            std::env::current_exe().map_err(local("cannot locate the shepherd binary".into()))?;
        let meta =
            std::fs::metadata(&path).map_err(local(format!("cannot read {}", path.display())))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = format!("{}\n{}\n{mtime}\n", path.display(), meta.len());
        let cache = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/shepherd/binary.sha256"));
        if let Some(cached) = cache
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .and_then(|text| text.strip_prefix(&key).map(|s| s.trim().to_string()))
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Ok(LocalBinary {
                path,
                size: meta.len(),
                sha256: cached,
            });
        }
        let file = File::open(&path).map_err(local(format!("cannot read {}", path.display())))?;
        let sha256 = super::sha256::hex_digest(std::io::BufReader::new(file))
            .map_err(local(format!("cannot read {}", path.display())))?;
        if let Some(cache) = cache {
            // Best effort: without the cache the digest is just recomputed.
            let _ = cache
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| write_atomic(&cache, &format!("{key}{sha256}\n")));
        }
        Ok(LocalBinary {
            path,
            size: meta.len(),
            sha256,
        })
    }

    /// A binary with this digest, for tests of the scripts that name it.
    #[cfg(test)]
    pub fn fake(sha256: &str) -> LocalBinary {
        LocalBinary {
            path: PathBuf::from("/nonexistent"),
            size: 0,
            sha256: sha256.to_string(),
        }
    }

    /// The remote binary's file name: version and checksum.
    pub fn remote_name(&self) -> String {
        format!(
            "shepherd-{}-{}",
            env!("CARGO_PKG_VERSION"),
            &self.sha256[..16]
        )
    }

    /// The remote binary's path as a remote shell expression.
    pub fn remote_path_expr(&self) -> String {
        format!("\"$HOME\"/{REMOTE_BIN_DIR}/{}", self.remote_name())
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// `uname -s`/`-m` words in Rust's spelling (`std::env::consts`).
fn rust_platform(uname: &str) -> (String, String) {
    let mut words = uname.split_whitespace();
    let os = words.next().unwrap_or("").to_ascii_lowercase();
    let arch = match words.next().unwrap_or("") {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "ppc64le" => "powerpc64",
        a if a.len() == 4 && a.starts_with('i') && a.ends_with("86") => "x86",
        a => a,
    };
    let os = if os == "darwin" { "macos".into() } else { os };
    (os, arch.to_string())
}

/// Copies this binary to the remote, checked, atomically.
pub fn install(ssh: &Ssh, local: &LocalBinary) -> Result<(), RemoteError> {
    let host = ssh.host.clone();
    let failed = |detail: String| RemoteError::Install {
        host: host.clone(),
        detail,
    };
    let unreachable = |stderr: &[u8]| RemoteError::Unreachable {
        host: host.clone(),
        detail: super::last_ssh_line(stderr),
    };
    let probe = ssh.run("uname -sm", Io::Capture(None))?;
    if probe.code == super::ssh::SSH_FAILED {
        return Err(unreachable(&probe.stderr));
    }
    let uname = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let (os, arch) = rust_platform(&uname);
    if (os.as_str(), arch.as_str()) != (std::env::consts::OS, std::env::consts::ARCH) {
        return Err(RemoteError::WrongPlatform {
            host: host.clone(),
            remote: format!("{os} {arch}"),
            local: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        });
    }
    eprintln!(
        "shepherd: installing shepherd {} on {host} (~/{REMOTE_BIN_DIR}/{}, {:.1} MiB)",
        env!("CARGO_PKG_VERSION"),
        local.remote_name(),
        local.size as f64 / (1024.0 * 1024.0)
    );
    let name = quote(&local.remote_name());
    let script = format!(
        r#"set -e
d="$HOME"/{REMOTE_BIN_DIR}
mkdir -p "$d"
t="$d/.upload.$$"
trap 'rm -f "$t"' EXIT
cat > "$t"
if command -v sha256sum >/dev/null 2>&1; then s=$(sha256sum < "$t"); else s=$(shasum -a 256 < "$t"); fi
s=${{s%% *}}
if [ "$s" != {sha} ]; then echo "the copy's SHA-256 is $s, not {sha}: it was corrupted on the way" >&2; exit 1; fi
chmod 755 "$t"
mv -f "$t" "$d"/{name}
trap - EXIT
ln -sfn {name} "$d"/shepherd 2>/dev/null || true
echo "$s"
"#,
        sha = local.sha256,
    );
    let file = File::open(&local.path).map_err(|e| RemoteError::Local {
        what: format!("cannot read {}", local.path.display()),
        source: e,
    })?;
    let done = ssh.run(&script, Io::Capture(Some(file)))?;
    if done.code == super::ssh::SSH_FAILED {
        return Err(unreachable(&done.stderr));
    }
    let echoed = String::from_utf8_lossy(&done.stdout).trim().to_string();
    if done.code != 0 || echoed != local.sha256 {
        let stderr = String::from_utf8_lossy(&done.stderr).trim().to_string();
        return Err(failed(if stderr.is_empty() {
            format!("the upload exited with status {}", done.code)
        } else {
            stderr
        }));
    }
    eprintln!(
        "shepherd: installed; SHA-256 {} checked on {host}",
        &local.sha256[..16]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_words_map_to_rust_names() {
        assert_eq!(
            rust_platform("Linux x86_64"),
            ("linux".into(), "x86_64".into())
        );
        assert_eq!(
            rust_platform("Linux aarch64"),
            ("linux".into(), "aarch64".into())
        );
        assert_eq!(
            rust_platform("Darwin arm64"),
            ("macos".into(), "aarch64".into())
        );
        assert_eq!(rust_platform("Linux i686"), ("linux".into(), "x86".into()));
    }
}
