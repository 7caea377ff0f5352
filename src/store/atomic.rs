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

/// Replaces `path` with `bytes` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself must reach the disk before we report success.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_bytes(path, &bytes)
}

/// Reads a JSON file whose top-level `version` must not exceed `supported`.
pub fn read_json<T: DeserializeOwned>(path: &Path, supported: u32) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
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
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
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
    fn journal_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        append_line(&p, "{\"a\":1}").unwrap();
        append_line(&p, "{\"a\":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
