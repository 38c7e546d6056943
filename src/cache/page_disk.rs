//! Index pages on disk, so a restart starts warm and stale pages survive an upstream outage.
//!
//! One file per project, `{dir}/pages/{project}.json`, written to a temp file and renamed into
//! place. Each file records the owner by name and a fingerprint of the upstream list and
//! routes: after a config change that could alter ownership, old files are ignored rather
//! than trusted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::pypi::ProjectName;
use crate::pypi::simple::{ProjectPage, parse_project_json, render_project_json};
use crate::upstream::Validators;

const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    format: u32,
    fingerprint: String,
    owner: String,
    fetched_at_ms: u64,
    validators: Validators,
    #[serde(borrow)]
    page: &'a RawValue,
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
}

impl PageDisk {
    pub fn open(dir: &Path, fingerprint: String) -> std::io::Result<PageDisk> {
        let dir = dir.join("pages");
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(PageDisk { dir, fingerprint })
    }

    fn path(&self, project: &ProjectName) -> PathBuf {
        // A normalized name is [a-z0-9-]: safe as a file name.
        self.dir.join(format!("{project}.json"))
    }

    /// Removes the page of `project`, if stored.
    pub fn remove(&self, project: &ProjectName) {
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
        if let Err(error) = result {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(%project, %error, "cannot write the page to the disk cache");
        }
    }

    /// Reads the page of `project`, if one was stored under the current fingerprint.
    pub fn load(&self, project: &ProjectName) -> Option<Stored> {
        let bytes = std::fs::read(self.path(project)).ok()?;
        decode(&self.fingerprint, project, &bytes)
    }
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
    let page_json = render_project_json(page);
    let raw = serde_json::from_slice::<&RawValue>(&page_json).ok()?;
    let record = Record {
        format: FORMAT_VERSION,
        fingerprint: fingerprint.to_owned(),
        owner: owner.to_owned(),
        fetched_at_ms: fetched_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        validators: validators.clone(),
        page: raw,
    };
    serde_json::to_vec(&record).ok()
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
