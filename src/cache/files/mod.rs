//! Artifacts on disk, content-addressed by sha256 (I3, I5, I6).
//!
//! Layout under the cache dir: `files/{first two hex}/{sha256}` for committed files and
//! `tmp/` for fills in progress (emptied at start, so a crash leaves nothing half-trusted).
//!
//! A file is fetched once however many clients want it: the first request starts a [`Fill`]
//! in its own task, which streams the upstream body into a temp file while later requests
//! join it and read the same temp file as it grows. Bytes are checked against the index's
//! length and sha256 as they arrive, and the last chunk is only written after both match, so
//! no reader can finish a corrupt file; on a mismatch every reader's stream breaks off, the temp
//! file is deleted and nothing is cached. A verified file is synced and renamed into place.
//!
//! The committed files are indexed in memory (sha256 → size) with least-recently-used eviction
//! under `max_size`; the index is rebuilt from the directory at start, oldest files first, on a
//! thread of its own while pipgate already serves (a file not indexed yet is found on disk).

mod fill;
mod reader;

pub use fill::{Fill, FillError, FillFeed, FillState, Phase, TempFile};
pub use reader::{FileChunks, file_chunks};

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::shared::SharedTier;
use crate::upstream::{Expected, Upstream};

/// What the store has for a sha256.
pub enum Lookup {
    /// A committed, verified file.
    Hit { file: Arc<File>, size: u64 },
    /// A fill in progress (possibly just started by this call).
    Filling(Arc<Fill>),
    /// The cache disk is failing (full, read-only, gone): serve without it for now.
    Unavailable,
}

/// How long the store stays out of the way after a disk error before trying again.
const DEGRADED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
pub struct FileStore {
    files: PathBuf,
    tmp: PathBuf,
    index: moka::sync::Cache<String, u64>,
    fills: Mutex<HashMap<String, Arc<Fill>>>,
    /// Set by a disk error: until then new fills are not started and files pass through, so
    /// a full cache disk slows installs down instead of failing them.
    degraded_until: Mutex<Option<std::time::Instant>>,
    /// Set while the files already on disk at start are being indexed.
    indexing: AtomicBool,
    /// The shared tier fills read before the upstream, and write verified files to.
    shared: Option<Arc<SharedTier>>,
}

impl FileStore {
    /// Opens (creating) the store under `dir`, cleans leftover temp files and indexes what
    /// is already there.
    pub fn open(
        dir: &Path,
        max_size: u64,
        shared: Option<Arc<SharedTier>>,
    ) -> std::io::Result<Arc<FileStore>> {
        let files = dir.join("files");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&files)?;
        std::fs::create_dir_all(&tmp)?;
        let mut leftovers = 0;
        for entry in std::fs::read_dir(&tmp)? {
            if std::fs::remove_file(entry?.path()).is_ok() {
                leftovers += 1;
            }
        }
        let evicted_dir = files.clone();
        let index = moka::sync::Cache::builder()
            // Weighed in KiB so a weight fits u32 for any file size.
            .max_capacity(max_size.div_ceil(1024))
            .weigher(|_: &String, size: &u64| u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |sha: Arc<String>, _size, cause| {
                if cause != moka::notification::RemovalCause::Replaced {
                    let _ = std::fs::remove_file(path_in(&evicted_dir, &sha));
                    tracing::debug!(sha256 = %sha, ?cause, "file evicted from the cache");
                }
            })
            .build();
        let store = Arc::new(FileStore {
            files,
            tmp,
            index,
            fills: Mutex::new(HashMap::new()),
            degraded_until: Mutex::new(None),
            indexing: AtomicBool::new(true),
            shared,
        });
        tracing::info!(removed_temp_files = leftovers, dir = %dir.display(), "file cache opened");
        // Indexing 100,000 files takes about half a second: pipgate serves meanwhile, and a
        // lookup the index cannot answer yet looks on the disk (see `hit`).
        let indexer = store.clone();
        std::thread::Builder::new().name("pipgate-index".into()).spawn(move || {
            let started = std::time::Instant::now();
            match indexer.index_existing() {
                Ok((count, bytes)) => {
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(files = count, bytes, ms, "file cache indexed");
                }
                Err(error) => tracing::warn!(%error, "indexing the file cache failed: files not yet indexed are fetched again"),
            }
            indexer.indexing.store(false, Ordering::Release);
            indexer.make_shards();
        })?;
        Ok(store)
    }

    /// Creates the 256 shard directories a fresh cache lacks, so a fill's commit is a rename
    /// and not also a directory's creation: on ext4 a directory cost about as much CPU as the
    /// fill's temp file, and a fresh cache (a sidecar's, every CI job) made one for most of its
    /// first few hundred files. A failure is left to the commit, which creates its
    /// shard itself.
    fn make_shards(&self) {
        let mut created = 0;
        for shard in 0..=255u8 {
            let path = self.files.join(format!("{shard:02x}"));
            if std::fs::create_dir(&path).is_ok() {
                created += 1;
            }
        }
        tracing::debug!(created, "file cache shards made");
    }

    fn index_existing(&self) -> std::io::Result<(usize, u64)> {
        let mut found = Vec::new();
        for shard in std::fs::read_dir(&self.files)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let metadata = entry.metadata()?;
                if is_sha256(&name) && metadata.is_file() {
                    found.push((metadata.modified().ok(), name, metadata.len()));
                }
            }
        }
        found.sort();
        let bytes = found.iter().map(|(_, _, size)| size).sum();
        let count = found.len();
        for (_, sha, size) in found {
            // A lookup during indexing may have put it in already, more recently used.
            if !self.index.contains_key(&sha) {
                self.index.insert(sha, size);
            }
        }
        self.index.run_pending_tasks();
        Ok((count, bytes))
    }

    /// The committed file for `sha256`, or the fill that will produce it (starting one from
    /// `upstream` if none runs). Opening a committed file, and making a fill's temp file,
    /// happen on the blocking pool and outside the fills lock: the lock only guards the map.
    pub async fn get_or_fill(
        self: &Arc<Self>,
        sha256: &str,
        upstream: &Arc<Upstream>,
        url: &str,
        expected: Expected,
    ) -> Lookup {
        if let Some(hit) = self.hit(sha256).await {
            return hit;
        }
        let fill = {
            let mut fills = self.fills.lock().expect("fills lock");
            if let Some(fill) = fills.get(sha256) {
                return Lookup::Filling(fill.clone());
            }
            // A fill may have committed between the first look and taking the lock: open it
            // below, after the lock is released.
            if self.index.contains_key(sha256) {
                None
            } else if self.is_degraded() {
                return Lookup::Unavailable;
            } else {
                let fill = Fill::start(
                    self.clone(),
                    sha256.to_owned(),
                    upstream.clone(),
                    url.to_owned(),
                    expected.clone(),
                );
                fills.insert(sha256.to_owned(), fill.clone());
                Some(fill)
            }
        };
        match fill {
            Some(fill) => Lookup::Filling(fill),
            // Committed meanwhile; if it is gone again, start over (once: a file deleted twice
            // in a row behind our back is served without the cache).
            None => match self.hit(sha256).await {
                Some(hit) => hit,
                None => Lookup::Unavailable,
            },
        }
    }

    /// `(bytes, files, fills in progress)` now; bytes are rounded up to KiB per file, as the
    /// size cap counts them.
    pub fn usage(&self) -> (u64, u64, usize) {
        self.index.run_pending_tasks();
        let fills = self.fills.lock().expect("fills lock").len();
        (self.index.weighted_size() * 1024, self.index.entry_count(), fills)
    }

    fn is_degraded(&self) -> bool {
        self.degraded_until
            .lock()
            .expect("degraded lock")
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    /// Steps aside for a while after a disk error, logging why.
    fn degrade(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(%error, seconds = DEGRADED_FOR.as_secs(), "the file cache cannot write: passing files through");
        *self.degraded_until.lock().expect("degraded lock") = Some(std::time::Instant::now() + DEGRADED_FOR);
    }

    /// The committed file for `sha256`, if the store holds it (no fill is started).
    pub async fn cached(&self, sha256: &str) -> Option<(Arc<File>, u64)> {
        match self.hit(sha256).await? {
            Lookup::Hit { file, size } => Some((file, size)),
            _ => None,
        }
    }

    /// Stores `bytes` under `key` (a sha256-shaped name) as a committed file: for small
    /// derived files such as a wheel's extracted metadata, which then share the store's size
    /// cap and eviction with the files they came from. Blocking: run off the reactor.
    pub fn put_small(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        debug_assert!(is_sha256(key));
        let temp = self.temp_path(key);
        let written = std::fs::write(&temp, bytes).and_then(|()| self.commit(key, &temp, bytes.len() as u64));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// The committed file for `sha256`, opened on the blocking pool. While the files found at
    /// start are still being indexed, one the index does not know yet is looked for on disk.
    async fn hit(&self, sha256: &str) -> Option<Lookup> {
        let known = self.index.get(sha256);
        if known.is_none() && !self.indexing.load(Ordering::Acquire) {
            return None;
        }
        let path = self.path(sha256);
        let opened = tokio::task::spawn_blocking(move || {
            let file = File::open(path)?;
            let size = match known {
                Some(size) => size,
                // Not indexed yet: only a regular file counts (a directory opens too).
                None => match file.metadata()? {
                    metadata if metadata.is_file() => metadata.len(),
                    _ => return Err(std::io::Error::other("not a regular file")),
                },
            };
            Ok::<_, std::io::Error>((file, size))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match opened {
            Ok((file, size)) => {
                if known.is_none() {
                    self.index.insert(sha256.to_owned(), size);
                }
                Some(Lookup::Hit { file: Arc::new(file), size })
            }
            Err(_) => {
                if known.is_some() {
                    // Deleted behind our back: forget it and fetch again.
                    self.index.invalidate(sha256);
                }
                None
            }
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        path_in(&self.files, sha256)
    }

    fn temp_path(&self, sha256: &str) -> PathBuf {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp.join(format!("{sha256}.{}.{n}.part", std::process::id()))
    }

    /// Moves a verified temp file into place and indexes it. Called by the fill task.
    fn commit(&self, sha256: &str, temp: &Path, size: u64) -> std::io::Result<()> {
        let path = self.path(sha256);
        std::fs::create_dir_all(path.parent().expect("sharded path"))?;
        std::fs::rename(temp, &path)?;
        self.index.insert(sha256.to_owned(), size);
        self.index.run_pending_tasks();
        Ok(())
    }

    /// Forgets a finished fill, so the next request sees the committed file (or starts over).
    fn end_fill(&self, sha256: &str) {
        self.fills.lock().expect("fills lock").remove(sha256);
    }
}

fn path_in(files: &Path, sha256: &str) -> PathBuf {
    files.join(&sha256[..2]).join(sha256)
}

/// Whether `text` is a lowercase hex sha256: the only names the store accepts as keys.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_store_makes_its_shards_so_a_commit_only_renames() {
        let dir = tempfile::tempdir().unwrap();
        let _store = FileStore::open(dir.path(), 1 << 20, None).unwrap();
        let shards = || std::fs::read_dir(dir.path().join("files")).unwrap().count();
        for _ in 0..1000 {
            if shards() == 256 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(shards(), 256);
        assert!(dir.path().join("files/00").is_dir() && dir.path().join("files/ff").is_dir());
    }

    #[tokio::test]
    async fn a_file_not_indexed_yet_is_found_on_disk_while_indexing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), 1 << 20, None).unwrap();
        while store.indexing.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Files on disk the indexer has not reached (written behind the store's back).
        let put = |sha256: &str| {
            let path = store.path(sha256);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"twelve bytes").unwrap();
        };
        let (early, late) = ("cd".repeat(32), "ef".repeat(32));
        put(&early);
        put(&late);

        store.indexing.store(true, Ordering::Release);
        let (_, size) = store.cached(&early).await.expect("found on disk while indexing");
        assert_eq!(size, 12);
        assert_eq!(store.index.get(&early), Some(12), "and indexed");
        // A directory where a file would be is not a cached file (it opens, but cannot be read).
        let directory = "ab".repeat(32);
        std::fs::create_dir_all(store.path(&directory)).unwrap();
        assert!(store.cached(&directory).await.is_none(), "a directory is not a hit");
        assert_eq!(store.index.get(&directory), None);

        // Once indexing is over, the index alone answers.
        store.indexing.store(false, Ordering::Release);
        assert!(store.cached(&late).await.is_none());
    }
}
