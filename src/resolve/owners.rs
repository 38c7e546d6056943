//! Owner memory: which upstream owned each project, and since when, kept on disk.
//!
//! The owner rule alone lets a *definite 404* from a private feed hand a name to a lower
//! upstream: a package deleted by mistake, a feed view changed, an identity that lost its
//! permission (Azure answers 404 for a feed the caller may not see). The memory closes that
//! door: a project that an upstream other than the last one has owned stays with it (see
//! [`super::Resolver`] for the hold), across restarts, until an operator releases it.
//!
//! Only owners that have a lower upstream below them are remembered (a name owned by the last
//! upstream cannot move down), so the memory holds about as many names as the private feeds
//! serve. It is bounded all the same: past `max_entries` the oldest record is forgotten, with a
//! warning.
//!
//! On disk: `{cache}/owners/{fingerprint}.jsonl`, one JSON record per line, appended and synced
//! as ownership is recorded or released, replayed at start and compacted when it has grown to
//! twice its live size. The fingerprint of the upstream list and routes is in the file name, so
//! a changed upstream list starts with an empty memory rather than trusting stale ownership.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::pypi::ProjectName;

/// A remembered owner: an upstream (by name, as configured) and since when it owns the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub upstream: String,
    pub since: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Record {
    project: String,
    /// The owner, or `None` for a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default)]
    since_ms: u64,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<ProjectName, Owned>,
    file: Option<File>,
}

#[derive(Debug, Clone)]
pub struct OwnerMemory {
    inner: Arc<Mutex<Inner>>,
    path: Option<PathBuf>,
    max_entries: usize,
}

impl OwnerMemory {
    /// Opens the memory for `fingerprint` under `dir`, replaying (and compacting) its log.
    pub fn open(dir: &Path, fingerprint: &str, max_entries: usize) -> std::io::Result<OwnerMemory> {
        let dir = dir.join("owners");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{fingerprint}.jsonl"));
        let mut entries = HashMap::new();
        let mut lines = 0usize;
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line?;
                lines += 1;
                // A torn last line (a crash mid-append) is skipped, not fatal.
                let Ok(record) = serde_json::from_str::<Record>(&line) else { continue };
                let Ok(project) = ProjectName::new(&record.project) else { continue };
                match record.owner {
                    Some(upstream) => {
                        entries.insert(project, Owned { upstream, since: from_ms(record.since_ms) });
                    }
                    None => {
                        entries.remove(&project);
                    }
                }
            }
        }
        let memory = OwnerMemory {
            inner: Arc::new(Mutex::new(Inner { entries, file: None })),
            path: Some(path.clone()),
            max_entries,
        };
        if lines > 2 * memory.len() + 16 {
            memory.compact()?;
        }
        let file = File::options().create(true).append(true).open(&path)?;
        memory.inner.lock().expect("owners lock").file = Some(file);
        tracing::info!(projects = memory.len(), file = %path.display(), "owner memory opened");
        Ok(memory)
    }

    /// A memory that is not kept on disk (unit tests).
    #[cfg(test)]
    pub fn in_memory(max_entries: usize) -> OwnerMemory {
        OwnerMemory {
            inner: Arc::new(Mutex::new(Inner { entries: HashMap::new(), file: None })),
            path: None,
            max_entries,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("owners lock").entries.len()
    }

    pub fn get(&self, project: &ProjectName) -> Option<Owned> {
        self.inner.lock().expect("owners lock").entries.get(project).cloned()
    }

    /// Records `upstream` as the owner of `project` (nothing happens when it already is).
    /// Synced to disk before it returns: run it off the async runtime.
    pub fn record(&self, project: &ProjectName, upstream: &str, now: SystemTime) {
        let mut inner = self.inner.lock().expect("owners lock");
        if inner.entries.get(project).is_some_and(|owned| owned.upstream == upstream) {
            return;
        }
        if inner.entries.len() >= self.max_entries && !inner.entries.contains_key(project) {
            let oldest =
                inner.entries.iter().min_by_key(|(_, owned)| owned.since).map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                tracing::warn!(project = %oldest, max = self.max_entries, "owner memory is full: forgetting its oldest record");
                inner.entries.remove(&oldest);
                append(&mut inner, &Record { project: oldest.to_string(), owner: None, since_ms: 0 });
            }
        }
        inner.entries.insert(project.clone(), Owned { upstream: upstream.to_owned(), since: now });
        let record =
            Record { project: project.to_string(), owner: Some(upstream.to_owned()), since_ms: to_ms(now) };
        append(&mut inner, &record);
    }

    /// Forgets the owner of `project` (an operator's release). Returns what was remembered.
    pub fn forget(&self, project: &ProjectName) -> Option<Owned> {
        let mut inner = self.inner.lock().expect("owners lock");
        let owned = inner.entries.remove(project)?;
        append(&mut inner, &Record { project: project.to_string(), owner: None, since_ms: 0 });
        Some(owned)
    }

    /// Rewrites the log with the live records only.
    fn compact(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let inner = self.inner.lock().expect("owners lock");
        let temp = path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(File::create(&temp)?);
        for (project, owned) in &inner.entries {
            let record = Record {
                project: project.to_string(),
                owner: Some(owned.upstream.clone()),
                since_ms: to_ms(owned.since),
            };
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, path)
    }
}

/// Appends one record and syncs it: a hold must survive a crash right after it was learnt.
/// A disk error is logged; the in-memory record still holds for this process's life.
fn append(inner: &mut Inner, record: &Record) {
    let Some(file) = inner.file.as_mut() else { return };
    let mut line = serde_json::to_vec(record).expect("a record serializes");
    line.push(b'\n');
    if let Err(error) = file.write_all(&line).and_then(|()| file.sync_data()) {
        tracing::warn!(%error, project = %record.project, "cannot write the owner memory to disk");
    }
}

fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ProjectName {
        ProjectName::new(text).unwrap()
    }

    #[test]
    fn records_survive_a_reopen_and_releases_too() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        {
            let memory = OwnerMemory::open(dir.path(), "fp1", 100).unwrap();
            memory.record(&name("acme-core"), "corp", now);
            memory.record(&name("acme-old"), "corp", now);
            memory.record(&name("acme-core"), "corp", now + Duration::from_secs(5));
            assert_eq!(memory.forget(&name("acme-old")).unwrap().upstream, "corp");
        }
        let memory = OwnerMemory::open(dir.path(), "fp1", 100).unwrap();
        assert_eq!(memory.get(&name("acme-core")).unwrap().upstream, "corp");
        assert_eq!(
            to_ms(memory.get(&name("acme-core")).unwrap().since),
            to_ms(now),
            "an unchanged owner keeps its date"
        );
        assert_eq!(memory.get(&name("acme-old")), None);
        // Another fingerprint (another upstream list) starts empty.
        assert_eq!(OwnerMemory::open(dir.path(), "fp2", 100).unwrap().len(), 0);
    }

    #[test]
    fn the_log_is_compacted_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let memory = OwnerMemory::open(dir.path(), "fp", 100).unwrap();
            for i in 0..40 {
                memory.record(
                    &name("acme-core"),
                    if i % 2 == 0 { "corp" } else { "mirror" },
                    SystemTime::now(),
                );
            }
        }
        let path = dir.path().join("owners/fp.jsonl");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"project\": \"acme-")
            .unwrap();
        let memory = OwnerMemory::open(dir.path(), "fp", 100).unwrap();
        assert_eq!(memory.get(&name("acme-core")).unwrap().upstream, "mirror");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            1,
            "compacted to the live record"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let memory = OwnerMemory::in_memory(2);
        let start = SystemTime::now();
        for (i, project) in ["a", "b", "c"].iter().enumerate() {
            memory.record(&name(project), "corp", start + Duration::from_secs(i as u64));
        }
        assert_eq!(memory.len(), 2);
        assert_eq!(memory.get(&name("a")), None, "the oldest record went first");
    }
}
