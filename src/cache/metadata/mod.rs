//! PEP 658 metadata for wheels whose upstream offers none (Azure Artifacts serves no
//! `.metadata` files): pipgate reads `METADATA` out of the wheel itself, so a resolver that
//! backtracks through versions fetches kilobytes instead of whole wheels.
//!
//! Where the bytes come from, cheapest first:
//! 1. memory, keyed by the wheel's sha256 (a wheel's bytes, so its METADATA, never change);
//! 2. the file store, where extracted metadata is kept under a key derived from the wheel's
//!    sha256 (so it shares the cache's size cap, eviction and restart survival);
//! 3. the wheel in the file store, when a client already installed it;
//! 4. range requests to the upstream: the zip's tail, its central directory, one entry;
//! 5. only when the upstream ignores ranges: the normal verified fill of the whole wheel,
//!    which then also caches the wheel.
//!
//! Concurrent requests for one wheel share one extraction. A wheel that turns out malformed
//! or hostile is remembered as refused, and pages stop offering its metadata; an upstream
//! error is not remembered (the next request tries again). Served bytes are the zip entry's,
//! checked against the CRC-32 and size its central directory records, or against the wheel's
//! sha256 when they come from a verified file.

mod zip_source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::files::{FileStore, Lookup, Phase};
use crate::pypi::ProjectName;
use crate::pypi::simple::CoreMetadata;
use crate::pypi::wheel_metadata::MetadataError;
use crate::upstream::{Expected, Upstream, UpstreamError};
use zip_source::{OnDisk, Ranged, read_metadata};

/// Wheels remembered as refused (malformed): enough for every wheel of a large index page.
const REFUSED_ENTRIES: u64 = 100_000;

/// A wheel's METADATA as pipgate serves it.
#[derive(Debug)]
pub struct CoreMetadataFile {
    pub bytes: Bytes,
    /// Lowercase hex: what pages advertise and the ETag.
    pub sha256: String,
}

/// The wheel to read METADATA from, as its owner's page lists it.
#[derive(Debug, Clone, Copy)]
pub struct WheelRef<'a> {
    pub owner: &'a Arc<Upstream>,
    pub url: &'a str,
    pub expected: &'a Expected,
    /// Lowercase hex.
    pub sha256: &'a str,
    pub project: &'a ProjectName,
    pub version: &'a str,
}

/// Why METADATA could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetadataFailure {
    /// The wheel is malformed or hostile: remembered, and no longer offered.
    #[error("the wheel is unusable: {0}")]
    Wheel(#[from] MetadataError),
    #[error("{0}")]
    Upstream(Arc<UpstreamError>),
    /// The upstream ignores ranges; internal, answered by a fill.
    #[error("the upstream does not serve ranges")]
    NoRanges,
    #[error("{0}")]
    Cache(String),
}

impl MetadataFailure {
    /// The `reason` label of `pipgate_core_metadata_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            MetadataFailure::Wheel(_) => "wheel",
            MetadataFailure::Upstream(_) | MetadataFailure::NoRanges => "upstream",
            MetadataFailure::Cache(_) => "cache",
        }
    }
}

impl From<UpstreamError> for MetadataFailure {
    fn from(error: UpstreamError) -> Self {
        MetadataFailure::Upstream(Arc::new(error))
    }
}

type Shared = Arc<OnceCell<Result<(Arc<CoreMetadataFile>, &'static str), MetadataFailure>>>;

#[derive(Debug)]
pub struct MetadataStore {
    files: Arc<FileStore>,
    memory: moka::sync::Cache<String, Arc<CoreMetadataFile>>,
    refused: moka::sync::Cache<String, MetadataError>,
    inflight: Mutex<HashMap<String, Shared>>,
}

impl MetadataStore {
    /// A store over `files`, keeping up to `memory_bytes` of metadata in memory.
    pub fn new(files: Arc<FileStore>, memory_bytes: u64) -> MetadataStore {
        let memory = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_: &String, m: &Arc<CoreMetadataFile>| {
                u32::try_from(m.bytes.len() + 160).unwrap_or(u32::MAX)
            })
            .build();
        MetadataStore {
            files,
            memory,
            refused: moka::sync::Cache::new(REFUSED_ENTRIES),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// What a page offers for the wheel with `sha256` whose upstream offers no metadata: its
    /// hash once known, `true` until then (it can always be served: from the wheel, whose
    /// own hash is known), nothing once the wheel turned out unusable.
    pub fn offer(&self, sha256: &str) -> Option<CoreMetadata> {
        if let Some(known) = self.memory.get(sha256) {
            return Some(CoreMetadata::Hashes([("sha256".to_owned(), known.sha256.clone())].into()));
        }
        (!self.refused.contains_key(sha256)).then_some(CoreMetadata::Flag(true))
    }

    /// METADATA of `wheel` and where it came from (`memory`, `disk`, `wheel`, `ranges` or
    /// `fill`: the `source` label of `pipgate_core_metadata_total`; anything but `memory` is
    /// new to the pages, which may now carry its hash).
    pub async fn get(
        &self,
        wheel: WheelRef<'_>,
    ) -> Result<(Arc<CoreMetadataFile>, &'static str), MetadataFailure> {
        if let Some(known) = self.memory.get(wheel.sha256) {
            return Ok((known, "memory"));
        }
        if let Some(error) = self.refused.get(wheel.sha256) {
            return Err(MetadataFailure::Wheel(error));
        }
        let shared = {
            let mut inflight = self.inflight.lock().expect("metadata inflight lock");
            inflight.entry(wheel.sha256.to_owned()).or_default().clone()
        };
        // The first caller runs the extraction; others wait for it. If the first caller goes
        // away (its client hung up), a waiter runs it instead.
        let result = shared.get_or_init(|| self.extract(wheel)).await.clone();
        self.inflight.lock().expect("metadata inflight lock").remove(wheel.sha256);
        if let Err(MetadataFailure::Wheel(error)) = &result {
            self.refused.insert(wheel.sha256.to_owned(), error.clone());
        }
        result
    }

    async fn extract(
        &self,
        wheel: WheelRef<'_>,
    ) -> Result<(Arc<CoreMetadataFile>, &'static str), MetadataFailure> {
        let key = derived_key(wheel.sha256);
        if let Some((file, size)) = self.files.cached(&key).await
            && let Ok(bytes) = (OnDisk { file, size }).read_all().await
        {
            return Ok((self.remember(wheel.sha256, bytes), "disk"));
        }
        let (bytes, source) = self.read(wheel).await?;
        let bytes = Bytes::from(bytes);
        let (files, stored) = (self.files.clone(), bytes.clone());
        // Kept for the next restart; a write that fails costs only a later re-read.
        tokio::task::spawn_blocking(move || {
            if let Err(error) = files.put_small(&key, &stored) {
                tracing::debug!(%error, "extracted metadata not kept on disk");
            }
        });
        Ok((self.remember(wheel.sha256, bytes), source))
    }

    /// The METADATA bytes of `wheel`, from its cached file, by ranges, or by a fill.
    async fn read(&self, wheel: WheelRef<'_>) -> Result<(Vec<u8>, &'static str), MetadataFailure> {
        if let Some((file, size)) = self.files.cached(wheel.sha256).await {
            let bytes = read_metadata(&mut OnDisk { file, size }, wheel.project, wheel.version).await?;
            return Ok((bytes, "wheel"));
        }
        let url =
            url::Url::parse(wheel.url).map_err(|_| UpstreamError::UnsupportedUrl("not a URL".into()))?;
        let mut ranged = Ranged { upstream: wheel.owner, url, size: wheel.expected.size };
        match read_metadata(&mut ranged, wheel.project, wheel.version).await {
            Err(MetadataFailure::NoRanges) => {}
            other => return other.map(|bytes| (bytes, "ranges")),
        }
        tracing::debug!(upstream = %wheel.owner.name(), sha256 = wheel.sha256, "the upstream ignores ranges: filling the wheel to read its metadata");
        let (file, size) = self.fill(wheel).await?;
        Ok((read_metadata(&mut OnDisk { file, size }, wheel.project, wheel.version).await?, "fill"))
    }

    /// The whole wheel through the file store's verified fill (joining one that runs).
    async fn fill(&self, wheel: WheelRef<'_>) -> Result<(Arc<std::fs::File>, u64), MetadataFailure> {
        match self.files.get_or_fill(wheel.sha256, wheel.owner, wheel.url, wheel.expected.clone()).await {
            Lookup::Hit { file, size } => Ok((file, size)),
            Lookup::Unavailable => Err(MetadataFailure::Cache(
                "the upstream ignores ranges and the cache disk is unavailable to fill the wheel into".into(),
            )),
            Lookup::Filling(fill) => {
                let state = fill
                    .state
                    .clone()
                    .wait_for(|s| !matches!(s.phase, Phase::Connecting | Phase::Streaming))
                    .await
                    .map(|s| s.clone())
                    .map_err(|_| MetadataFailure::Cache("the fill stopped".into()))?;
                match state.phase {
                    // A fill is done only once its temp file was committed.
                    Phase::Done => match fill.file().get().cloned() {
                        Some(file) => Ok((file, state.written)),
                        None => Err(MetadataFailure::Cache("the fill kept no file".into())),
                    },
                    Phase::Failed(error) => {
                        Err(MetadataFailure::Cache(format!("filling the wheel failed: {error}")))
                    }
                    Phase::Relaying | Phase::Relayed => Err(MetadataFailure::Cache(
                        "the cache disk failed while the wheel was filling".into(),
                    )),
                    Phase::Connecting | Phase::Streaming => unreachable!("waited for an end"),
                }
            }
        }
    }

    fn remember(&self, wheel_sha256: &str, bytes: Bytes) -> Arc<CoreMetadataFile> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let file = Arc::new(CoreMetadataFile { bytes, sha256 });
        self.memory.insert(wheel_sha256.to_owned(), file.clone());
        file
    }
}

impl OnDisk {
    async fn read_all(mut self) -> Result<Bytes, MetadataFailure> {
        let size = self.size;
        if size > crate::pypi::wheel_metadata::MAX_METADATA_BYTES {
            return Err(MetadataFailure::Cache("a stored metadata file is too large".into()));
        }
        zip_source::ZipBytes::read(&mut self, 0, size).await
    }
}

/// The file-store key of the metadata extracted from the wheel with `wheel_sha256`: a hash,
/// so it looks like every other key and can never be a real file's.
fn derived_key(wheel_sha256: &str) -> String {
    hex::encode(Sha256::digest(format!("pipgate core-metadata of {wheel_sha256}")))
}
