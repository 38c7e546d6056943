//! Index pages on disk, so a restart starts warm and stale pages survive an upstream outage.
//!
//! One file per project, `{dir}/pages/{project}.json`, written to a temp file and renamed into
//! place. Each file records the owner by name and a fingerprint of the upstream list and
//! routes: after a config change that could alter ownership, old files are ignored rather
//! than trusted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::pypi::ProjectName;
use crate::pypi::simple::{ProjectPage, parse_project_json, render_project_json};
use crate::upstream::Validators;

const FORMAT_VERSION: u32 = 1;

/// A stored record as read: the header's fields and the page, borrowed from the bytes.
#[derive(Deserialize)]
struct Record<'a> {
    format: u32,
    fingerprint: String,
    owner: String,
    fetched_at_ms: u64,
    validators: Validators,
    #[serde(borrow)]
    page: &'a RawValue,
}

/// A stored record as written: the same fields but the page, which [`encode`] appends as
/// rendered. It is pipgate's own JSON: reading it back as a `RawValue` to serialize it inside
/// the record cost a second scan of the whole page.
#[derive(Serialize)]
struct Header<'a> {
    format: u32,
    fingerprint: &'a str,
    owner: &'a str,
    fetched_at_ms: u64,
    validators: &'a Validators,
}

/// A page read back from disk.
pub struct Stored {
    pub owner: String,
    pub fetched_at: SystemTime,
    pub validators: Validators,
    pub page: ProjectPage,
}

#[derive(Debug, Clone)]
pub struct PageDisk {
    dir: PathBuf,
    fingerprint: String,
    /// The projects with a page file, read from the directory at start and kept as pages are
    /// stored and removed (one pipgate per cache directory, as for the file cache's index). A
    /// project never stored is answered from here, without a trip to the blocking pool for a
    /// read that fails: a cold install asks for every one of its projects once.
    held: Arc<Mutex<HashSet<ProjectName>>>,
}

impl PageDisk {
    pub fn open(dir: &Path, fingerprint: String) -> std::io::Result<PageDisk> {
        let dir = dir.join("pages");
        std::fs::create_dir_all(&dir)?;
        let mut held = HashSet::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(path);
            } else if let Some(project) = stored_project(&path) {
                held.insert(project);
            }
        }
        Ok(PageDisk { dir, fingerprint, held: Arc::new(Mutex::new(held)) })
    }

    /// Whether a page of `project` is on disk (under any fingerprint: [`PageDisk::load`]
    /// checks that).
    pub fn holds(&self, project: &ProjectName) -> bool {
        self.held().contains(project)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<ProjectName>> {
        // A set of names has no invariant a panic could break.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, project: &ProjectName) -> PathBuf {
        // A normalized name is [a-z0-9-]: safe as a file name.
        self.dir.join(format!("{project}.json"))
    }

    /// Removes the page of `project`, if stored.
    pub fn remove(&self, project: &ProjectName) {
        self.held().remove(project);
        let _ = std::fs::remove_file(self.path(project));
    }

    /// Writes the page of `project`. Errors are logged, not returned: the disk copy is a
    /// convenience for restarts, never needed to answer a request.
    pub fn store(
        &self,
        project: &ProjectName,
        owner: &str,
        fetched_at: SystemTime,
        validators: &Validators,
        page: &ProjectPage,
    ) {
        let Some(bytes) = encode(&self.fingerprint, owner, fetched_at, validators, page) else { return };
        let path = self.path(project);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
        match result {
            Ok(()) => {
                self.held().insert(project.clone());
            }
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(%project, %error, "cannot write the page to the disk cache");
            }
        }
    }

    /// Reads the page of `project`, if one was stored under the current fingerprint.
    pub fn load(&self, project: &ProjectName) -> Option<Stored> {
        let bytes = std::fs::read(self.path(project)).ok()?;
        decode(&self.fingerprint, project, &bytes)
    }
}

/// The project a page file is named for: `{project}.json`, the name in its normalized form.
fn stored_project(path: &Path) -> Option<ProjectName> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".json")?;
    ProjectName::new(stem).ok().filter(|project| project.as_str() == stem)
}

/// A page as a stored record (the disk cache's file, the shared tier's object), tagged with
/// `fingerprint` so that it is trusted only under the same upstreams and routes.
pub fn encode(
    fingerprint: &str,
    owner: &str,
    fetched_at: SystemTime,
    validators: &Validators,
    page: &ProjectPage,
) -> Option<Vec<u8>> {
    let header = Header {
        format: FORMAT_VERSION,
        fingerprint,
        owner,
        fetched_at_ms: fetched_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        validators,
    };
    let mut record = serde_json::to_vec(&header).ok()?;
    // `{…}` becomes `{…,"page":PAGE}`.
    record.pop();
    record.extend_from_slice(b",\"page\":");
    record.extend_from_slice(&render_project_json(page));
    record.push(b'}');
    Some(record)
}

/// The page of `project` in a stored record, if it was stored under `fingerprint`.
pub fn decode(fingerprint: &str, project: &ProjectName, bytes: &[u8]) -> Option<Stored> {
    let record: Record<'_> = match serde_json::from_slice(bytes) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(%project, %error, "ignoring an unreadable stored page");
            return None;
        }
    };
    if record.format != FORMAT_VERSION || record.fingerprint != fingerprint {
        return None;
    }
    // URLs in a stored page are absolute; the base is never used.
    let base = url::Url::parse("http://stored.invalid/").expect("valid");
    let page = parse_project_json(record.page.get().as_bytes(), &base, project.as_str()).ok()?;
    Some(Stored {
        owner: record.owner,
        fetched_at: UNIX_EPOCH + Duration::from_millis(record.fetched_at_ms),
        validators: record.validators,
        page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_under_its_fingerprint_only() {
        let base = url::Url::parse("https://files.example/simple/demo/").unwrap();
        let upstream = br#"{"meta":{"api-version":"1.1"},"name":"demo","files":[
            {"filename":"demo-1.0-py3-none-any.whl","url":"../../f/demo-1.0-py3-none-any.whl#sha256=ab",
             "hashes":{},"core-metadata":{"sha256":"cd"},"upload-time":"2024-01-01T00:00:00Z"}]}"#;
        let page = parse_project_json(upstream, &base, "demo").unwrap();
        let validators = Validators { etag: Some("\"v1\"".into()), last_modified: None };
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let record = encode("fp1", "corp \"feed\"", at, &validators, &page).unwrap();
        serde_json::from_slice::<serde_json::Value>(&record).expect("one JSON object");

        let name = ProjectName::new("demo").unwrap();
        let stored = decode("fp1", &name, &record).expect("read back");
        // As rendered for clients, so with pipgate's api-version.
        assert_eq!(
            (&stored.page.name, &stored.page.files, &stored.page.versions),
            (&page.name, &page.files, &page.versions)
        );
        assert_eq!(stored.owner, "corp \"feed\"");
        assert_eq!(stored.fetched_at, at);
        assert_eq!(stored.validators, validators);
        assert!(decode("fp2", &name, &record).is_none(), "another fingerprint is not trusted");
    }

    #[test]
    fn the_pages_on_disk_are_known_at_start_and_kept_as_pages_are_stored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let base = url::Url::parse("https://files.example/simple/demo/").unwrap();
        let body = br#"{"meta":{"api-version":"1.1"},"name":"demo","files":[]}"#;
        let page = parse_project_json(body, &base, "demo").unwrap();
        let (demo, other) = (ProjectName::new("demo").unwrap(), ProjectName::new("other").unwrap());
        let disk = PageDisk::open(dir.path(), "fp".into()).unwrap();
        assert!(!disk.holds(&demo));
        disk.store(&demo, "feed", UNIX_EPOCH, &Validators::default(), &page);
        assert!(disk.holds(&demo) && !disk.holds(&other));
        // Files that are not a normalized project's page are not taken for one.
        std::fs::write(dir.path().join("pages/Other.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("pages/notes.txt"), b"").unwrap();
        let restarted = PageDisk::open(dir.path(), "fp".into()).unwrap();
        assert!(restarted.holds(&demo), "read from the directory at start");
        assert!(!restarted.holds(&other));
        assert!(restarted.load(&demo).is_some());
        restarted.remove(&demo);
        assert!(!restarted.holds(&demo));
        assert!(!PageDisk::open(dir.path(), "fp".into()).unwrap().holds(&demo), "and from the disk");
    }
}
