//! Runs on disk: creation, listing, loading, the daemon's state and journal,
//! and control requests from the CLI.

use std::fs;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::atomic::{self, StoreError};
use super::layout::{RunDir, StateDir};
use crate::model::{RunId, RunSpec};
use crate::policy::decide::{Control, Event};
use crate::policy::state::{RunState, STATE_VERSION};
use crate::records::{SPEC_VERSION, SpecFile};

pub const ENV_VERSION: u32 = 1;
pub const CONTROL_VERSION: u32 = 1;

/// `env.json`: the environment the user submitted from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvFile {
    pub version: u32,
    pub vars: Vec<(String, String)>,
}

/// One request in `control/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlFile {
    pub version: u32,
    pub control: Control,
    pub requested_at: Timestamp,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    pub time: Timestamp,
    pub kind: String,
    pub attempt: Option<u32>,
    pub job_id: Option<crate::slurm::JobId>,
    pub message: String,
    /// The run's status after the decision.
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "a run named {id} already exists ({path}); choose another --run-id, or remove the old run"
    )]
    Exists { id: RunId, path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StateDir {
    /// Creates a run directory with its spec, script snapshot and environment.
    /// The directory appears complete or not at all: it is built under a
    /// temporary name and renamed into place, which also makes a clash with
    /// a concurrent creation of the same id an error, never a mix.
    pub fn create_run(
        &self,
        spec: &RunSpec,
        script: &[u8],
        env: Vec<(String, String)>,
    ) -> Result<RunDir, CreateError> {
        let runs = self.runs();
        let final_dir = self.run(&spec.run_id);
        if final_dir.path().exists() {
            return Err(CreateError::Exists {
                id: spec.run_id.clone(),
                path: final_dir.path().to_path_buf(),
            });
        }
        let write_err = |path: &Path, source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        };
        self.ensure_private_root()?;
        fs::create_dir_all(&runs).map_err(|e| write_err(&runs, e))?;
        let tmp = RunDir::at(runs.join(format!(".new-{}-{}", spec.run_id, std::process::id())));
        let _ = fs::remove_dir_all(tmp.path());
        let build = || -> Result<(), StoreError> {
            fs::create_dir_all(tmp.control()).map_err(|e| write_err(&tmp.control(), e))?;
            atomic::write_json(
                &tmp.spec(),
                &SpecFile {
                    version: SPEC_VERSION,
                    spec: spec.clone(),
                },
            )?;
            atomic::write_bytes(&tmp.script(), script)?;
            set_executable(&tmp.script()).map_err(|e| write_err(&tmp.script(), e))?;
            atomic::write_json(
                &tmp.env(),
                &EnvFile {
                    version: ENV_VERSION,
                    vars: env,
                },
            )
        };
        if let Err(e) = build() {
            let _ = fs::remove_dir_all(tmp.path());
            return Err(e.into());
        }
        // rename(2) refuses to replace a non-empty directory: a concurrent
        // creation of the same id loses cleanly.
        if let Err(e) = fs::rename(tmp.path(), final_dir.path()) {
            let _ = fs::remove_dir_all(tmp.path());
            if final_dir.path().exists() {
                return Err(CreateError::Exists {
                    id: spec.run_id.clone(),
                    path: final_dir.path().to_path_buf(),
                });
            }
            return Err(write_err(final_dir.path(), e).into());
        }
        note_change(&runs);
        Ok(final_dir)
    }

    /// Deletes a run's directory (spec, state, journal, Shepherd's copies of
    /// its logs). The directory is first renamed out of the run list, so a
    /// half-deleted run is never seen as a run.
    pub fn remove_run(&self, id: &RunId) -> Result<(), StoreError> {
        let dir = self.run(id);
        let trash = self.runs().join(format!(".rm-{id}-{}", std::process::id()));
        fs::rename(dir.path(), &trash).map_err(|source| StoreError::Write {
            path: dir.path().to_path_buf(),
            source,
        })?;
        // Gone from the list already: the daemon may look.
        note_change(&self.runs());
        fs::remove_dir_all(&trash).map_err(|source| StoreError::Write {
            path: trash.clone(),
            source,
        })
    }

    /// Notes a change of an ended run that is not a control request or a
    /// creation or removal (those note themselves): the daemon's, when it
    /// acts on an ended run.
    pub fn note_change(&self) {
        note_change(&self.runs());
    }

    /// How many changes to the run list (a run created or removed, a
    /// control request) were noted: the size of `runs/.changes`, to which
    /// each appends a byte. The daemon reads ended runs again only when it
    /// grows (a size is exact where a coarse or cached mtime is not).
    pub fn changes_noted(&self) -> Option<u64> {
        fs::symlink_metadata(self.runs().join(CHANGES))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// The ids of all runs, sorted. Entries that are not valid run ids
    /// (temporary directories, stray files) are skipped.
    pub fn run_ids(&self) -> Result<Vec<RunId>, StoreError> {
        let dir = self.runs();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Read { path: dir, source }),
        };
        let mut ids: Vec<RunId> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The file in `runs/` that counts changes (see [`StateDir::changes_noted`]).
const CHANGES: &str = ".changes";

/// Appends a byte to `runs/.changes`. Best effort: the request it follows
/// is on disk already, and the daemon's periodic full scan finds it even
/// when this append is lost (a full disk).
fn note_change(runs: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(runs.join(CHANGES));
    if let Ok(mut f) = file {
        let _ = f.write_all(b".");
    }
}

/// The script snapshot runs as the job: executable, by its owner only.
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

impl RunDir {
    pub fn load_spec(&self) -> Result<RunSpec, StoreError> {
        let spec = atomic::read_json::<SpecFile>(&self.spec(), SPEC_VERSION)?.spec;
        // A run directory copied or renamed by hand still names its old run
        // id: two runs would share one Slurm job name, and each would take
        // the other's jobs for its own.
        if let Some(id) = self.expected_id()
            && *id != spec.run_id
        {
            return Err(StoreError::Corrupt {
                path: self.spec(),
                detail: format!(
                    "it names run {:?} but lives in the directory of run {id:?} (copied or renamed?); \
                     rename the directory back, or remove it with `shepherd rm --force {id}`",
                    spec.run_id.as_str()
                ),
            });
        }
        Ok(spec)
    }

    /// The daemon's state, or `None` before the daemon first saw the run.
    pub fn load_state(&self) -> Result<Option<RunState>, StoreError> {
        match atomic::read_json::<RunState>(&self.state(), STATE_VERSION) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save_state(&self, state: &RunState) -> Result<(), StoreError> {
        atomic::write_json(&self.state(), state)
    }

    pub fn load_env(&self) -> Result<Vec<(String, String)>, StoreError> {
        atomic::read_json::<EnvFile>(&self.env(), ENV_VERSION).map(|f| f.vars)
    }

    pub fn append_events(
        &self,
        events: &[Event],
        status: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        for e in events {
            let entry = JournalEntry {
                time: now,
                kind: e.kind.to_string(),
                attempt: e.attempt,
                job_id: e.job_id,
                message: e.message.clone(),
                status: status.to_string(),
            };
            let line = serde_json::to_string(&entry).unwrap_or_default();
            atomic::append_line(&self.events(), &line)?;
        }
        Ok(())
    }

    /// The journal; lines that cannot be read (a torn last line) are skipped.
    pub fn read_events(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let text = match fs::read_to_string(self.events()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.events(),
                    source,
                });
            }
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Files a control request for the daemon.
    pub fn request_control(&self, control: Control, now: Timestamp) -> Result<(), StoreError> {
        let dir = self.control();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        // Names sort in request order; the pid keeps two requests in the same
        // nanosecond apart.
        let name = format!(
            "{:020}-{}.json",
            now.as_nanosecond().max(0),
            std::process::id()
        );
        atomic::write_json(
            &dir.join(name),
            &ControlFile {
                version: CONTROL_VERSION,
                control,
                requested_at: now,
            },
        )?;
        // An ended run's controls (restart, rm) are looked for only after a
        // noted change: the run directory's parent is the run list.
        if let Some(runs) = self.path().parent() {
            note_change(runs);
        }
        Ok(())
    }

    /// Pending control requests in the order they were made, with their files
    /// (to remove once applied). Unreadable requests are returned as errors
    /// so the daemon can journal and drop them.
    pub fn pending_controls(&self) -> Vec<(PathBuf, Result<Control, StoreError>)> {
        let Ok(entries) = fs::read_dir(self.control()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let c = atomic::read_json::<ControlFile>(&p, CONTROL_VERSION).map(|f| f.control);
                (p, c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> RunSpec {
        RunSpec::with_defaults(id.parse().unwrap(), Path::new("/x"), Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn state_is_private_and_a_foreign_directory_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/state");
        let sd = StateDir::new(&root);
        let run = sd
            .create_run(
                &spec("r"),
                b"#!/bin/bash\n",
                vec![("TOKEN".into(), "s3cret".into())],
            )
            .unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&run.env()), 0o600, "env.json holds secrets");
        assert_eq!(mode(&run.spec()), 0o600);
        assert_eq!(mode(&run.script()), 0o700);
        // A state directory made by an older Shepherd (0755) is tightened.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        sd.create_run(&spec("s"), b"#!/bin/bash\n", vec![]).unwrap();
        assert_eq!(mode(&root), 0o700);
        // Someone else's directory is never used (only root can make one here).
        let foreign = dir.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        if rustix::fs::chown(&foreign, Some(rustix::fs::Uid::from_raw(65534)), None).is_ok() {
            assert_eq!(fs::metadata(&foreign).unwrap().uid(), 65534);
            let e = StateDir::new(&foreign)
                .create_run(&spec("r"), b"", vec![])
                .unwrap_err();
            assert!(e.to_string().contains("another user"), "{e}");
            assert!(!foreign.join("runs").exists());
        }
    }

    #[test]
    fn a_renamed_run_directory_is_quarantined_not_taken_for_another_run() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        sd.create_run(&spec("r"), b"#!/bin/bash\n", vec![]).unwrap();
        fs::rename(sd.runs().join("r"), sd.runs().join("s")).unwrap();
        let s: RunId = "s".parse().unwrap();
        assert_eq!(sd.run_ids().unwrap(), std::slice::from_ref(&s));
        let e = sd.run(&s).load_spec().unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("copied or renamed"), "{e}");
        // Read by its own path (the wrapper does), it is what it says.
        assert_eq!(
            RunDir::at(sd.runs().join("s"))
                .load_spec()
                .unwrap()
                .run_id
                .as_str(),
            "r"
        );
    }

    #[test]
    fn create_list_load_and_clash() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let run = sd
            .create_run(
                &spec("a"),
                b"#!/bin/bash\necho hi\n",
                vec![("K".into(), "V".into())],
            )
            .unwrap();
        assert_eq!(run.load_spec().unwrap(), spec("a"));
        assert_eq!(
            run.load_env().unwrap(),
            [("K".to_string(), "V".to_string())]
        );
        assert!(run.load_state().unwrap().is_none());
        let err = sd.create_run(&spec("a"), b"", vec![]).unwrap_err();
        assert!(matches!(err, CreateError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--run-id"));
        sd.create_run(&spec("b"), b"", vec![]).unwrap();
        let ids: Vec<String> = sd
            .run_ids()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn controls_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let run = sd.create_run(&spec("a"), b"", vec![]).unwrap();
        let t0 = Timestamp::UNIX_EPOCH;
        run.request_control(Control::Pause, t0).unwrap();
        run.request_control(Control::Stop, t0 + jiff::SignedDuration::from_secs(1))
            .unwrap();
        let got: Vec<Control> = run
            .pending_controls()
            .into_iter()
            .map(|(_, c)| c.unwrap())
            .collect();
        assert_eq!(got, [Control::Pause, Control::Stop]);
    }
}
