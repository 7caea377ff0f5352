//! Atomic, versioned JSON files.
//!
//! A file is written to a temporary name in the same directory, flushed to
//! disk, then renamed over the old one, so readers (possibly on another node
//! of a shared filesystem) see either the old or the new content, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path} was written by a newer Shepherd (format {found}, this one reads up to {supported}); upgrade shepherd"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Files Shepherd keeps for one user: readable and writable by the owner only
/// (`env.json` holds the submitting shell's environment, tokens included).
pub const PRIVATE: u32 = 0o600;
/// Files in a directory a lab shares on purpose (`[blacklist] shared_dir`):
/// readable by the lab, replaced (never modified) by any member through a
/// rename in the group-writable directory.
pub const SHARED: u32 = 0o644;

/// Replaces `path` with `bytes` atomically, as a [`PRIVATE`] file.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_bytes_mode(path, bytes, PRIVATE)
}

/// Replaces `path` with `bytes` atomically, with permissions `mode`.
///
/// The temporary file gets an unpredictable name and is created with
/// `O_CREAT|O_EXCL` (the `tempfile` crate), so another user of a shared
/// directory cannot plant a file or a symlink under its name and have this
/// write go through it. A `path` that is itself a symbolic link is refused:
/// Shepherd never writes through links it did not make.
pub fn write_bytes_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(err(std::io::Error::other(
            "it is a symbolic link, and Shepherd does not write through links; \
             remove the link (or find out who made it)",
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(err)?;
    // tempfile's mode is filtered by the umask; a shared file must be
    // readable by the lab whatever the writer's umask (077 is common).
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    // On failure the temporary file is removed when `PersistError` drops.
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename itself must reach the disk before we report success.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `value` as pretty JSON, atomically, as a [`PRIVATE`] file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    write_json_mode(path, value, PRIVATE)
}

/// Writes `value` as pretty JSON, atomically, with permissions `mode`.
pub fn write_json_mode<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_bytes_mode(path, &bytes, mode)
}

/// Reads a JSON file whose top-level `version` must not exceed `supported`.
///
/// Like writes, reads never follow a symbolic link at `path`: in a shared
/// directory a link is another user's doing.
pub fn read_json<T: DeserializeOwned>(path: &Path, supported: u32) -> Result<T, StoreError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                err(std::io::Error::other(
                    "it is a symbolic link, and Shepherd does not read through links; \
                     remove the link (or find out who made it)",
                ))
            } else {
                err(e)
            }
        })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(err)?;
    parse_json(path, &bytes, supported)
}

/// Parses a versioned document. The version is checked first, so a newer
/// file is reported as such rather than as corrupt.
pub fn parse_json<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    supported: u32,
) -> Result<T, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let found = leading_version(bytes).ok_or_else(|| corrupt("no format version".to_string()))?;
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
}

/// The value of the first `"version":` key. Shepherd writes `version` as the
/// first field of every document, so this avoids parsing the file twice (the
/// daemon reads thousands of these per tick).
fn leading_version(bytes: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"version\"";
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &bytes[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits: Vec<u8> = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Appends one line to a journal. Lines are small and written with one
/// `write` call in append mode, so concurrent readers see whole lines.
pub fn append_line(path: &Path, line: &str) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(err)?;
    let mut buf = line.trim_end_matches('\n').as_bytes().to_vec();
    buf.push(b'\n');
    f.write_all(&buf).map_err(err)?;
    f.sync_data().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        version: u32,
        name: String,
    }

    #[test]
    fn round_trip_and_no_temp_files_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("doc.json");
        let doc = Doc {
            version: 1,
            name: "a".into(),
        };
        write_json(&p, &doc).unwrap();
        write_json(&p, &doc).unwrap();
        assert_eq!(read_json::<Doc>(&p, 1).unwrap(), doc);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn newer_and_corrupt_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("doc.json");
        fs::write(&p, r#"{"version": 7, "name": "x"}"#).unwrap();
        let err = read_json::<Doc>(&p, 1).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 7, .. }), "{err}");
        assert!(err.to_string().contains("upgrade"));
        fs::write(&p, "{\"version\": 1, \"na").unwrap();
        let err = read_json::<Doc>(&p, 1).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let missing = read_json::<Doc>(&dir.path().join("nope.json"), 1).unwrap_err();
        assert!(missing.is_not_found());
    }

    #[test]
    fn writes_are_private_and_never_follow_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        // The old, predictable temporary name, planted as a link.
        let p = dir.path().join("doc.json");
        std::os::unix::fs::symlink(
            &victim,
            dir.path()
                .join(format!(".doc.json.tmp.{}", std::process::id())),
        )
        .unwrap();
        let doc = Doc {
            version: 1,
            name: "a".into(),
        };
        write_json(&p, &doc).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A shared file is readable by the lab whatever the writer's umask.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let shared = write_json_mode(&p, &doc, SHARED);
        rustix::process::umask(old);
        shared.unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // A target that is a link is refused, and its target left alone.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write_json(&link, &doc).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = read_json::<Doc>(&link, 1).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = append_line(&link, "x").unwrap_err();
        assert!(matches!(e, StoreError::Write { .. }), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        // Nothing left behind but the files named.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".doc.json.tmp."))
            .collect();
        names.sort();
        assert_eq!(names, ["doc.json", "link.json", "victim"]);
    }

    #[test]
    fn journal_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        append_line(&p, "{\"a\":1}").unwrap();
        append_line(&p, "{\"a\":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
