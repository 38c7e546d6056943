//! The shared tier: verified files (and, with `pages`, parsed index pages) on object storage
//! (Azure Blob Storage, S3) that every replica and runner sidecar reads before asking an
//! upstream. Lookup order: local disk, then this tier, then the upstream.
//!
//! - Files are content-addressed: `{prefix}/files/{ab}/{sha256}`. A key names its bytes, so
//!   replicas never conflict, and an object is written only by a replica that verified the
//!   bytes (length and sha256) it fetched from the upstream, after they were committed locally,
//!   as a multipart upload streamed from the local file: never held in memory, never in the
//!   way of the client that started the fill.
//! - A read is verified while it streams, by the fill that reads it (see `files::fill`): an
//!   object that turns out wrong is deleted and counted, and its clients see the stream break
//!   off, never a clean end with wrong bytes. The next request goes to the upstream.
//! - Failure stays local. A store that errs or does not answer within `wait` is marked down:
//!   one log line, `pipgate_shared_store_up` 0, files served local-only; one background probe
//!   every `retry_interval` brings it back (one log line again). Nothing about the store can
//!   make pipgate serve a file the upstream would not: a file is only ever looked up by the
//!   sha256 the owner's page lists.
//! - Pages (optional) live under `{prefix}/pages/{fingerprint}/{project}.json`: trusted only
//!   under the same upstreams and routes, and revalidated like any stored page.

pub mod store;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::metrics::Metrics;
use crate::pypi::ProjectName;

/// Bytes read from the local file per multipart write.
const UPLOAD_READ: usize = 1 << 20;
/// Parts of one upload in flight at once.
const UPLOAD_PARALLEL: usize = 2;

/// A file found in the store, ready to stream.
pub struct SharedObject {
    pub size: u64,
    pub chunks: BoxStream<'static, object_store::Result<Bytes>>,
}

#[derive(Debug)]
pub struct SharedTier {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    wait: Duration,
    retry_interval: Duration,
    /// The ownership fingerprint, when pages are shared (`pages = true`).
    pages: Option<String>,
    /// `azure` or `s3`, the label of `pipgate_shared_store_up`.
    kind: &'static str,
    up: AtomicBool,
    /// A probe is running (the store is down).
    probing: AtomicBool,
    metrics: Arc<Metrics>,
}

/// What the tier needs besides the store itself.
#[derive(Debug, Clone)]
pub struct TierSettings {
    pub prefix: String,
    pub wait: Duration,
    pub retry_interval: Duration,
    /// Share pages under this ownership fingerprint; `None`: files only.
    pub pages: Option<String>,
    pub kind: &'static str,
}

impl SharedTier {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        settings: TierSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<SharedTier> {
        metrics.shared_store_up.with_label_values(&[settings.kind]).set(1);
        Arc::new(SharedTier {
            kind: settings.kind,
            store,
            prefix: settings.prefix,
            wait: settings.wait,
            retry_interval: settings.retry_interval,
            pages: settings.pages,
            up: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            metrics,
        })
    }

    fn file_path(&self, sha256: &str) -> Path {
        Path::from(format!("{}/files/{}/{sha256}", self.prefix, &sha256[..2]))
    }

    fn page_path(&self, fingerprint: &str, project: &ProjectName) -> Path {
        Path::from(format!("{}/pages/{fingerprint}/{project}.json", self.prefix))
    }

    /// Whether the store is in use now (not marked down).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn count_read(&self, result: &str) {
        self.metrics.shared_store_reads.with_label_values(&[result]).inc();
    }

    fn count_write(&self, result: &str) {
        self.metrics.shared_store_writes.with_label_values(&[result]).inc();
    }

    /// The file with `sha256`, if the store has it and starts answering within `wait`.
    pub async fn open_file(self: &Arc<Self>, sha256: &str) -> Option<SharedObject> {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(self.wait, self.store.get(&self.file_path(sha256))).await {
            Ok(Ok(found)) => {
                self.count_read("hit");
                Some(SharedObject { size: found.meta.size, chunks: found.into_stream() })
            }
            Ok(Err(object_store::Error::NotFound { .. })) => {
                self.count_read("miss");
                None
            }
            Ok(Err(error)) => {
                self.count_read("error");
                self.failed("read", &error);
                None
            }
            Err(_) => {
                self.count_read("error");
                self.failed("read", &format!("no answer within {:?}", self.wait));
                None
            }
        }
    }

    /// The object for `sha256` turned out not to be those bytes (or broke off): it is
    /// deleted, so the next request fetches the file from the upstream.
    pub fn reject(self: &Arc<Self>, sha256: &str, why: &str) {
        self.count_read("corrupt");
        tracing::warn!(sha256, why, "an object in the shared store is not the file it names: deleting it");
        let (tier, path) = (self.clone(), self.file_path(sha256));
        tokio::spawn(async move {
            if let Err(error) = tier.store.delete(&path).await {
                let error = without_queries(&error.to_string());
                tracing::warn!(%error, "cannot delete the bad object from the shared store");
            }
        });
    }

    /// Uploads the verified, committed file `file` (`size` bytes) as the object for `sha256`,
    /// in the background; an object already there is left alone.
    pub fn upload(self: &Arc<Self>, sha256: String, file: Arc<File>, size: u64) {
        if !self.is_up() {
            return;
        }
        let tier = self.clone();
        tokio::spawn(async move {
            let path = tier.file_path(&sha256);
            match tier.store.head(&path).await {
                Ok(meta) if meta.size == size => {
                    tier.count_write("exists");
                    return;
                }
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tier.count_write("error");
                    tier.failed("write", &error);
                    return;
                }
            }
            match tier.write_file(&path, file, size).await {
                Ok(()) => {
                    tier.count_write("ok");
                    tracing::debug!(%sha256, size, "file written to the shared store");
                }
                Err(error) => {
                    tier.count_write("error");
                    tier.failed("write", &error);
                }
            }
        });
    }

    async fn write_file(&self, path: &Path, file: Arc<File>, size: u64) -> object_store::Result<()> {
        let upload = self.store.put_multipart(path).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(UPLOAD_READ as u64) as usize;
            let reader = file.clone();
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0u8; len];
                reader.read_exact_at(&mut buffer, offset).map(|()| Bytes::from(buffer))
            })
            .await
            .map_err(|e| object_store::Error::Generic { store: "shared", source: Box::new(e) })?;
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(object_store::Error::Generic { store: "shared", source: Box::new(error) });
                }
            };
            writer.wait_for_capacity(UPLOAD_PARALLEL).await?;
            writer.put(chunk);
            offset += len as u64;
        }
        writer.finish().await.map(drop)
    }

    /// The stored page record of `project`, if pages are shared and the store has one under
    /// this fingerprint (checked again by the decoder).
    pub async fn page(self: &Arc<Self>, project: &ProjectName) -> Option<(String, Bytes)> {
        let fingerprint = self.pages.as_ref()?;
        if !self.is_up() {
            return None;
        }
        let path = self.page_path(fingerprint, project);
        let read = async { self.store.get(&path).await?.bytes().await };
        match tokio::time::timeout(self.wait, read).await {
            Ok(Ok(bytes)) => Some((fingerprint.clone(), bytes)),
            Ok(Err(object_store::Error::NotFound { .. })) => None,
            Ok(Err(error)) => {
                self.failed("read", &error);
                None
            }
            Err(_) => {
                self.failed("read", &format!("no answer within {:?}", self.wait));
                None
            }
        }
    }

    /// The fingerprint pages are shared under, if they are.
    pub fn page_fingerprint(&self) -> Option<&str> {
        self.pages.as_deref()
    }

    /// Stores the page record of `project` in the background.
    pub fn put_page(self: &Arc<Self>, project: &ProjectName, record: Vec<u8>) {
        let Some(fingerprint) = &self.pages else { return };
        if !self.is_up() {
            return;
        }
        let (tier, path) = (self.clone(), self.page_path(fingerprint, project));
        tokio::spawn(async move {
            if let Err(error) = tier.store.put(&path, record.into()).await {
                tier.failed("write", &error);
            }
        });
    }

    /// Marks the store down after a failure (logging once per state change) and starts the
    /// probe that brings it back.
    fn failed(self: &Arc<Self>, operation: &str, error: &dyn std::fmt::Display) {
        let error = without_queries(&error.to_string());
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.shared_store_up.with_label_values(&[self.kind]).set(0);
            tracing::warn!(operation, %error, retry_s = self.retry_interval.as_secs(), "the shared store is failing: serving from local disk and upstreams only");
        }
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let tier = self.clone();
        tokio::spawn(async move {
            let probe = Path::from(format!("{}/probe", tier.prefix));
            loop {
                tokio::time::sleep(tier.retry_interval).await;
                match tokio::time::timeout(tier.wait, tier.store.head(&probe)).await {
                    Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => break,
                    Ok(Err(error)) => {
                        let error = without_queries(&error.to_string());
                        tracing::debug!(%error, "the shared store still fails");
                    }
                    Err(_) => tracing::debug!("the shared store still does not answer"),
                }
            }
            tier.probing.store(false, Ordering::Relaxed);
            tier.up.store(true, Ordering::Relaxed);
            tier.metrics.shared_store_up.with_label_values(&[tier.kind]).set(1);
            tracing::info!("the shared store answers again: using it");
        });
    }
}

/// `message` with the query string of every URL in it removed: the store's errors quote the
/// request URL, and with a SAS credential its query holds the signature.
pub fn without_queries(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("http") {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        out.push_str(url.split('?').next().unwrap_or(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_lose_url_queries() {
        let error = "Error performing PUT https://acct.blob.core.windows.net/c/x?comp=block&sig=SECRET in 5ms - 404 (see http://h/p?sv=1&sig=S2)";
        let shown = without_queries(error);
        assert!(!shown.contains("SECRET") && !shown.contains("S2"), "{shown}");
        assert_eq!(
            shown,
            "Error performing PUT https://acct.blob.core.windows.net/c/x in 5ms - 404 (see http://h/p)"
        );
    }
}
