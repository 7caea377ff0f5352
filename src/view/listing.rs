//! `list` over thousands of runs: the ended ones from a cache.
//!
//! Reading every run's spec and state costs ~15 µs a run (two files, two
//! JSON documents), 160 ms for 11,000 runs. An ended run's documents never
//! change unless a noted change ([`StateDir::changes_noted`]: a control
//! request such as a restart, which the daemon notes again when it acts on
//! an ended run) says so; so its list row and its `--json` document, as
//! serialized, are kept in `STATE/cache/list` (the rows) and
//! `STATE/cache/list.docs` (the documents, read only for `--json`), and a
//! `list` reads only the active runs' files:
//!
//! - the changes counter unchanged since the cache was written, less than
//!   5 minutes ago: ended runs come from the cache without a system call;
//! - changed, or older: each cached run's `state.json` is compared with the stamp
//!   kept (inode, size, modification and change times), and read again
//!   when it differs;
//! - a run not in the cache (new, active, or quarantined) is read.
//!
//! The cache is only ever a copy: a file that is missing, unreadable,
//! corrupt, of another format, for another state directory path or another
//! shape of the documents is ignored and written anew; a write that fails
//! (a full disk) costs the next `list` its speed, nothing else.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::runs::{RunDoc, run_doc};
use super::words::{DocStatus, Word};
use crate::model::Mode;
use crate::store::StateDir;

/// Every run, in run id order, as `list` shows it.
#[derive(Debug)]
pub struct Listing {
    /// The documents file as read (when documents were asked for):
    /// cached entries' JSON are ranges of it.
    docs: String,
    pub entries: Vec<Entry>,
}

/// What `list` shows of a run, and where its `--json` document is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub row: Row,
    json: Json,
}

/// A run's [`RunDoc`] as compact JSON (`serde_json::to_string`).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    /// This range of the documents file.
    Cached(std::ops::Range<usize>),
    Fresh(String),
    /// Not made: the listing was asked for rows only.
    Skipped,
}

impl Listing {
    /// The entry's document, serialized; empty for a listing made without
    /// documents.
    pub fn json<'a>(&'a self, e: &'a Entry) -> &'a str {
        match &e.json {
            Json::Cached(r) => self.docs.get(r.clone()).unwrap_or_default(),
            Json::Fresh(s) => s,
            Json::Skipped => "",
        }
    }
}

/// The columns of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub run_id: String,
    pub status: Word<DocStatus>,
    pub mode: Mode,
    pub slurm_job_id: Option<u64>,
    pub node: Option<String>,
    pub attempts: usize,
    pub created_at: Timestamp,
    pub reason: String,
    /// The run is quarantined (its files cannot be read).
    pub error: bool,
}

impl Row {
    pub fn of(doc: &RunDoc) -> Row {
        Row {
            run_id: doc.run_id.clone(),
            status: doc.status.clone(),
            mode: doc.mode,
            slurm_job_id: doc.slurm_job_id,
            node: doc.node.clone(),
            attempts: doc.attempts.len(),
            created_at: doc.created_at,
            reason: doc.reason.clone(),
            error: doc.error.is_some(),
        }
    }

    pub fn is_ended(&self) -> bool {
        self.status.known().is_some_and(DocStatus::is_ended)
    }
}

/// How long a cache is trusted without checking the stamps of the states
/// behind it (the daemon's full scan comes round as often).
const TRUST_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Every run, in run id order, as `list` shows it; with `documents`, each
/// run's `--json` document too (rows alone need no JSON for active runs).
pub fn listing(
    sd: &StateDir,
    documents: bool,
) -> Result<Listing, crate::store::atomic::StoreError> {
    // Read before any state: a change noted while this list reads is seen
    // by the next one.
    let changes = sd.changes_noted();
    let path = cache_path(sd);
    let rows = std::fs::read_to_string(&path).unwrap_or_default();
    let mut cache = parse(&rows, &header(sd));
    // The documents only when asked for, and only from the file written
    // with these rows (its first line is their generation).
    let mut docs = String::new();
    if documents && let Some(c) = &cache {
        docs = read_docs(sd, c);
        if docs.is_empty() {
            cache = None;
        }
    }
    // Trusted without a look at the states only while young: a change that
    // was not noted (an older daemon acting on an ended run, a full disk)
    // shows within TRUST_FOR, as the daemon's own full scan finds it.
    let young = |at: Timestamp| {
        let age = Timestamp::now().duration_since(at);
        !age.is_negative() && age.unsigned_abs() < TRUST_FOR
    };
    let (trusted, mut cached, others) = match cache {
        Some(c) => (c.noted == changes && young(c.written), c.entries, c.others),
        None => (false, Vec::new(), Vec::new()),
    };
    // Trusted, the cache knows every run: a run created or removed notes a
    // change. Otherwise the directory says.
    let ids = match trusted {
        true => {
            let mut ids: Vec<crate::model::RunId> = cached
                .iter()
                .map(|c| c.entry.row.run_id.as_str())
                .chain(others.iter().map(String::as_str))
                .filter_map(|id| id.parse().ok())
                .collect();
            ids.sort();
            ids
        }
        false => sd.run_ids()?,
    };
    let mut dirty = !trusted;
    let mut entries = Vec::with_capacity(ids.len());
    // Indices into `entries` of the ended runs the cache keeps, and their stamps.
    let mut keep: Vec<(usize, Stamp)> = Vec::new();
    // Both lists are sorted by run id: one pass over each.
    let mut next = cached.drain(..).peekable();
    for id in &ids {
        while next
            .peek()
            .is_some_and(|c| c.entry.row.run_id.as_str() < id.as_str())
        {
            next.next();
            dirty = true; // a run removed since
        }
        // Trusted: not even the path of its state is made.
        match next.next_if(|c| c.entry.row.run_id.as_str() == id.as_str()) {
            Some(c) if trusted || stamp(&sd.run(id).state()) == Some(c.stamp) => {
                keep.push((entries.len(), c.stamp));
                entries.push(c.entry);
                continue;
            }
            _ => {}
        }
        let state_file = sd.run(id).state();
        // Stamp first: a state written while it is read looks changed next
        // time, never unchanged.
        let before = stamp(&state_file);
        let doc = run_doc(sd, id);
        let row = Row::of(&doc);
        let cacheable = before.is_some() && row.is_ended() && !row.error;
        let json = if documents || cacheable {
            Json::Fresh(serde_json::to_string(&doc).unwrap_or_default())
        } else {
            Json::Skipped
        };
        if let (true, Some(stamp)) = (cacheable, before) {
            keep.push((entries.len(), stamp));
            dirty = true;
        }
        entries.push(Entry { row, json });
    }
    dirty |= next.next().is_some();
    let mut listing = Listing { docs, entries };
    if dirty {
        if !documents
            && keep
                .iter()
                .any(|&(i, _)| matches!(listing.entries[i].json, Json::Cached(_)))
        {
            // Rewriting needs the cached documents too.
            listing.docs = parse(&rows, &header(sd))
                .map(|c| read_docs(sd, &c))
                .unwrap_or_default();
        }
        write(sd, changes, &listing, &keep);
    }
    Ok(listing)
}

/// Every run's document, in run id order, the ended ones from the cache
/// (parsed back from their JSON: ~3 µs a run, where reading a run's files
/// costs ~15 µs). For the TUI, which lists every 2 seconds.
pub fn run_docs(sd: &StateDir) -> Result<Vec<RunDoc>, crate::store::atomic::StoreError> {
    let listing = listing(sd, true)?;
    Ok(listing
        .entries
        .iter()
        .map(|e| {
            // A document that does not parse back (it cannot, under the
            // header's check of the build) is read from the run's files.
            serde_json::from_str(listing.json(e)).unwrap_or_else(|_| match e.row.run_id.parse() {
                Ok(id) => run_doc(sd, &id),
                Err(_) => {
                    RunDoc::quarantined(&e.row.run_id, "not a valid run id".into(), PathBuf::new())
                }
            })
        })
        .collect())
}

/// The documents file of the cache `c`, checked: empty when it is not the
/// one written with `c`'s rows or a range falls outside it.
fn read_docs(sd: &StateDir, c: &CacheFile) -> String {
    let Ok(docs) = std::fs::read_to_string(docs_path(sd)) else {
        return String::new();
    };
    let first = docs.split('\n').next().unwrap_or_default();
    let fits = c.entries.iter().all(|e| match &e.entry.json {
        Json::Cached(r) => docs.get(r.clone()).is_some(),
        _ => false,
    });
    if first != c.generation || !fits {
        return String::new();
    }
    docs
}

/// `state.json`'s identity: inode, size, mtime and ctime in nanoseconds.
/// Each atomic write is a new inode and a new change time.
type Stamp = (u64, u64, i128, i128);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some((
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ))
}

/// An entry of the cache file.
#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    entry: Entry,
}

fn cache_path(sd: &StateDir) -> PathBuf {
    sd.cache().join("list")
}

fn docs_path(sd: &StateDir) -> PathBuf {
    sd.cache().join("list.docs")
}

/// A cache's rows as read.
#[derive(Debug)]
struct CacheFile {
    /// [`StateDir::changes_noted`] when it was written.
    noted: Option<u64>,
    /// The first line of the documents file written with these rows.
    generation: String,
    /// When it was written.
    written: Timestamp,
    entries: Vec<Cached>,
    /// The ids of the runs it does not hold (active or quarantined then).
    others: Vec<String>,
}

/// The cache's first line: its format, the state directory (documents name
/// their run directory), and the build that wrote it (the executable's
/// size and modification time, and the shape of a document), so that a
/// build whose `RunDoc` differs never serves another's documents.
fn header(sd: &StateDir) -> String {
    let sample = RunDoc::quarantined("sample", "why".into(), PathBuf::new());
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| stamp(&p))
        .map_or("-".into(), |(_, size, mtime, _)| format!("{size}@{mtime}"));
    format!(
        "shepherd list cache 4\t{}\t{exe}\t{}",
        escape(&sd.root().to_string_lossy()),
        serde_json::to_string(&sample).unwrap_or_default()
    )
}

fn write(sd: &StateDir, changes: Option<u64>, listing: &Listing, keep: &[(usize, Stamp)]) {
    // The documents first, then the rows that point into them: a reader
    // that finds rows of another generation than the documents ignores both.
    let generation = format!(
        "{}-{}",
        Timestamp::now().as_nanosecond(),
        std::process::id()
    );
    let mut docs = format!("{generation}\n");
    let mut rows = header(sd);
    let _ = write!(
        rows,
        "\n{}\t{generation}\t{}",
        changes.map_or("-".into(), |c| c.to_string()),
        Timestamp::now().as_nanosecond()
    );
    // Entries without a document are not written as rows below.
    let mut kept = keep
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| !listing.json(&listing.entries[i]).is_empty())
        .peekable();
    for (i, e) in listing.entries.iter().enumerate() {
        if kept.next_if_eq(&i).is_none() {
            let _ = write!(rows, "\t{}", escape(&e.row.run_id));
        }
    }
    rows.push('\n');
    for &(i, (ino, size, mtime, ctime)) in keep {
        let e = &listing.entries[i];
        let json = listing.json(e);
        if json.is_empty() {
            continue;
        }
        let start = docs.len();
        docs.push_str(json);
        docs.push('\n');
        let r = &e.row;
        let _ = writeln!(
            rows,
            "{}\t{ino}\t{size}\t{mtime}\t{ctime}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{start}\t{}",
            escape(&r.run_id),
            escape(r.status.as_str()),
            if r.mode == Mode::Indefinite {
                "indefinite"
            } else {
                "run_once"
            },
            r.slurm_job_id.map_or("-".into(), |j| j.to_string()),
            r.node
                .as_deref()
                .map_or("-".into(), |n| format!("={}", escape(n))),
            r.attempts,
            r.created_at.as_nanosecond(),
            escape(&r.reason),
            json.len(),
        );
    }
    // Inside the private state directory (0700): nobody else can reach it.
    use std::os::unix::fs::DirBuilderExt;
    if sd.ensure_private_root().is_err() {
        return;
    }
    let made = std::fs::DirBuilder::new().mode(0o700).create(sd.cache());
    if made.is_err_and(|e| e.kind() != std::io::ErrorKind::AlreadyExists) {
        return;
    }
    use crate::store::atomic::write_bytes;
    if write_bytes(&docs_path(sd), docs.as_bytes()).is_ok() {
        let _ = write_bytes(&cache_path(sd), rows.as_bytes());
    }
}

/// The rows of a cache file written for `header` (in run id order);
/// `None` for anything else.
fn parse(text: &str, header: &str) -> Option<CacheFile> {
    let mut lines = text.split_inclusive('\n');
    if lines.next()?.strip_suffix('\n')? != header {
        return None;
    }
    let mut second = lines.next()?.strip_suffix('\n')?.split('\t');
    let (noted, generation) = (second.next()?, second.next()?);
    let written = Timestamp::from_nanosecond(second.next()?.parse().ok()?).ok()?;
    // The runs not cached (active, quarantined), by id.
    let others = second.map(unescape).collect::<Option<Vec<String>>>()?;
    let noted = match noted {
        "-" => None,
        n => Some(n.parse().ok()?),
    };
    let mut entries: Vec<Cached> = Vec::new();
    for line in lines {
        // A line cut short (a cache written by a process that died) is no
        // cache.
        let line = line.strip_suffix('\n')?;
        let mut f = line.split('\t');
        let mut field = || f.next();
        let run_id = unescape(field()?)?;
        if entries.last().is_some_and(|p| p.entry.row.run_id >= run_id) {
            return None;
        }
        let stamp = (
            field()?.parse().ok()?,
            field()?.parse().ok()?,
            field()?.parse().ok()?,
            field()?.parse().ok()?,
        );
        let row = Row {
            run_id,
            status: Word::from(unescape(field()?)?.as_str()),
            mode: field()?.parse().ok()?,
            slurm_job_id: match field()? {
                "-" => None,
                j => Some(j.parse().ok()?),
            },
            node: match field()? {
                "-" => None,
                n => Some(unescape(n.strip_prefix('=')?)?),
            },
            attempts: field()?.parse().ok()?,
            created_at: Timestamp::from_nanosecond(field()?.parse().ok()?).ok()?,
            reason: unescape(field()?)?,
            error: false,
        };
        let start: usize = field()?.parse().ok()?;
        let len: usize = field()?.parse().ok()?;
        if field().is_some() {
            return None;
        }
        entries.push(Cached {
            stamp,
            entry: Entry {
                row,
                json: Json::Cached(start..start.checked_add(len)?),
            },
        });
    }
    Some(CacheFile {
        noted,
        generation: generation.to_string(),
        written,
        entries,
        others,
    })
}

/// Tabs, newlines and backslashes as `\t`, `\n`, `\\`: one entry a line.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

/// The ids as `list` orders them, for tests.
#[cfg(test)]
fn ids(l: &Listing) -> Vec<&str> {
    l.entries.iter().map(|e| e.row.run_id.as_str()).collect()
}

/// Rows and documents, comparable, for tests.
#[cfg(test)]
fn shown(l: &Listing) -> Vec<(Row, String)> {
    l.entries
        .iter()
        .map(|e| (e.row.clone(), l.json(e).to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::state::{RunState, RunStatus};
    use crate::view::run_docs;

    fn run(sd: &StateDir, id: &str, status: Option<RunStatus>) -> crate::store::RunDir {
        let spec = crate::model::RunSpec::with_defaults(
            id.parse().unwrap(),
            Path::new("/w"),
            Timestamp::UNIX_EPOCH,
        );
        let dir = sd.create_run(&spec, b"#!/bin/sh\n", vec![]).unwrap();
        if let Some(status) = status {
            let mut st = RunState::new(Timestamp::UNIX_EPOCH);
            st.status = status;
            st.reason = "why\twith a tab\nand a line".into();
            dir.save_state(&st).unwrap();
        }
        dir
    }

    /// What `list` would show without any cache.
    fn uncached(sd: &StateDir) -> Vec<(Row, String)> {
        run_docs(sd, &sd.run_ids().unwrap())
            .iter()
            .map(|d| (Row::of(d), serde_json::to_string(d).unwrap()))
            .collect()
    }

    fn list(sd: &StateDir) -> Vec<(Row, String)> {
        shown(&listing(sd, true).unwrap())
    }

    #[test]
    fn the_cache_serves_ended_runs_as_they_are() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        run(&sd, "done", Some(RunStatus::Completed));
        run(&sd, "live", Some(RunStatus::Running));
        run(&sd, "new", None);
        let first = listing(&sd, true).unwrap();
        assert_eq!(shown(&first), uncached(&sd));
        assert_eq!(ids(&first), ["done", "live", "new"]);
        let text = std::fs::read_to_string(cache_path(&sd)).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "header, counter, one ended run: {text}"
        );
        // Served from the cache, identical to reading the files.
        let again = listing(&sd, true).unwrap();
        assert!(matches!(again.entries[0].json, Json::Cached(_)));
        assert_eq!(shown(&again), uncached(&sd));
        // Rows alone: no document made for the active runs.
        let rows = listing(&sd, false).unwrap();
        assert_eq!(rows.entries[1].json, Json::Skipped);
        assert_eq!(rows.entries[0].row, again.entries[0].row);
        // The TUI's documents, the ended one parsed back from the cache,
        // are the documents read from the files.
        let json = |docs: Vec<RunDoc>| -> Vec<String> {
            docs.iter()
                .map(|d| serde_json::to_string(d).unwrap())
                .collect()
        };
        assert_eq!(
            json(super::run_docs(&sd).unwrap()),
            json(run_docs(&sd, &sd.run_ids().unwrap()))
        );
    }

    #[test]
    fn a_noted_change_or_a_new_state_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        let done = run(&sd, "done", Some(RunStatus::Completed));
        list(&sd);
        // The daemon restarts the ended run after a control request (a
        // noted change): the list shows it queued, not completed.
        done.request_control(crate::policy::decide::Control::Restart, Timestamp::now())
            .unwrap();
        let mut st = done.load_state().unwrap().unwrap();
        st.status = RunStatus::Queued;
        done.save_state(&st).unwrap();
        let l = list(&sd);
        assert_eq!(
            l[0].0.status,
            Word::Known(DocStatus::Run(RunStatus::Queued))
        );
        assert_eq!(l, uncached(&sd));

        // Without a noted change, an unchanged counter is trusted; a state
        // rewritten with the counter moved on is read again by its stamp.
        st.status = RunStatus::Failed;
        done.save_state(&st).unwrap();
        sd.create_run(
            &crate::model::RunSpec::with_defaults(
                "other".parse().unwrap(),
                Path::new("/w"),
                Timestamp::UNIX_EPOCH,
            ),
            b"#!/bin/sh\n",
            vec![],
        )
        .unwrap();
        let l = list(&sd);
        assert_eq!(l, uncached(&sd));
        assert_eq!(
            l[0].0.status,
            Word::Known(DocStatus::Run(RunStatus::Failed))
        );
    }

    #[test]
    fn an_old_cache_is_checked_against_the_states() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        let done = run(&sd, "done", Some(RunStatus::Completed));
        list(&sd);
        // A change nobody noted (an older daemon restarting the run): the
        // young cache is trusted...
        let mut st = done.load_state().unwrap().unwrap();
        st.status = RunStatus::Queued;
        done.save_state(&st).unwrap();
        assert_eq!(
            list(&sd)[0].0.status,
            Word::Known(DocStatus::Run(RunStatus::Completed))
        );
        // ...until it is TRUST_FOR old: then the states' stamps are checked.
        let path = cache_path(&sd);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let old =
            Timestamp::now() - jiff::SignedDuration::from_secs(TRUST_FOR.as_secs() as i64 + 1);
        let mut f: Vec<String> = lines[1].split('\t').map(str::to_string).collect();
        f[2] = old.as_nanosecond().to_string();
        lines[1] = f.join("\t");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(list(&sd), uncached(&sd));
        assert_eq!(
            list(&sd)[0].0.status,
            Word::Known(DocStatus::Run(RunStatus::Queued))
        );
    }

    #[test]
    fn a_removed_run_leaves_the_list_and_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        run(&sd, "a", Some(RunStatus::Completed));
        run(&sd, "b", Some(RunStatus::Failed));
        list(&sd);
        sd.remove_run(&"a".parse().unwrap()).unwrap();
        assert_eq!(ids(&listing(&sd, true).unwrap()), ["b"]);
        let text = std::fs::read_to_string(cache_path(&sd)).unwrap();
        assert!(!text.contains("\na\t"), "{text}");
    }

    #[test]
    fn a_bad_cache_is_ignored_and_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path());
        run(&sd, "done", Some(RunStatus::Completed));
        list(&sd);
        let path = cache_path(&sd);
        // The rows without their generation (a new one each write).
        let rows = || {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines[1] = lines[1].split('\t').next().unwrap().to_string();
            lines
        };
        let good_rows = rows();
        let good = std::fs::read_to_string(&path).unwrap();
        for bad in [
            "garbage".to_string(),
            String::new(),
            good.replace("shepherd list cache 4", "shepherd list cache 3"),
            good.lines().take(2).collect::<Vec<_>>().join("\n") + "\ndone\t1\t2\n",
            // Cut short by a writer that died (atomic writes prevent it;
            // a copy by hand may not).
            good[..good.len() - 1].to_string(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(list(&sd), uncached(&sd), "{bad:?}");
            assert_eq!(rows(), good_rows, "rewritten");
        }
        // Documents of another generation than the rows (or cut short) are
        // not theirs: the documents are made again from the files.
        let docs = docs_path(&sd);
        let good_docs = std::fs::read_to_string(&docs).unwrap();
        for bad in [
            good_docs.replacen('-', "+", 1),
            good_docs[..good_docs.len() / 2].to_string(),
        ] {
            std::fs::write(&docs, &bad).unwrap();
            assert_eq!(list(&sd), uncached(&sd), "{bad:?}");
        }
        // A cache for another state directory path is not this one's.
        let moved = StateDir::new(tmp.path().join("elsewhere"));
        assert_ne!(header(&moved), header(&sd));
        // An intact cache is trusted as written (so it is what list reads,
        // and it must be right: the counter and the stamps above).
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, good.replace("\tcompleted\t", "\trunning\t")).unwrap();
        assert_eq!(
            list(&sd)[0].0.status,
            Word::Known(DocStatus::Run(RunStatus::Running))
        );
    }

    #[test]
    fn escaping_round_trips() {
        for s in ["", "plain", "a\tb\nc\\d\re", "\\t literally"] {
            assert_eq!(unescape(&escape(s)).as_deref(), Some(s));
            assert!(!escape(s).contains(['\t', '\n']));
        }
        assert_eq!(unescape("bad\\x"), None);
    }
}
