//! One coalesced download of a file into the store.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::FileStore;
use crate::upstream::{Expected, Upstream, UpstreamError};

/// Bytes gathered before a write to the temp file: few syscalls, bounded memory (I6).
const WRITE_BUFFER: usize = 256 * 1024;

/// Where a fill is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for the upstream's answer.
    Connecting,
    /// Bytes are arriving; `written` grows.
    Streaming,
    /// Verified and committed.
    Done,
    Failed(FillError),
}

/// Why a fill failed. Cloned to every reader.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FillError {
    /// The upstream did not answer with the file (nothing was streamed yet).
    #[error("{0}")]
    Upstream(Arc<UpstreamError>),
    /// The body broke off, or turned out wrong (length or sha256).
    #[error("{0}")]
    Stream(Arc<str>),
    #[error("cannot write to the cache: {0}")]
    Io(Arc<str>),
}

/// What readers watch.
#[derive(Debug, Clone)]
pub struct FillState {
    pub phase: Phase,
    /// Bytes in the temp file that readers may send.
    pub written: u64,
    /// The file's length, when the index or the upstream said it.
    pub total: Option<u64>,
    pub content_type: Option<HeaderValue>,
}

#[derive(Debug)]
pub struct Fill {
    /// The temp file (and, after commit, the same inode under its final name): readers use
    /// positioned reads on it, so they share one descriptor without sharing an offset.
    pub file: Arc<File>,
    pub state: watch::Receiver<FillState>,
}

impl Fill {
    pub(super) fn start(
        store: Arc<FileStore>,
        sha256: String,
        upstream: Arc<Upstream>,
        url: String,
        expected: Expected,
    ) -> std::io::Result<Arc<Fill>> {
        let temp_path = store.temp_path(&sha256);
        let file = Arc::new(File::options().read(true).write(true).create_new(true).open(&temp_path)?);
        let initial =
            FillState { phase: Phase::Connecting, written: 0, total: expected.size, content_type: None };
        let (sender, state) = watch::channel(initial);
        let fill = Arc::new(Fill { file: file.clone(), state });
        // The fill logs under the request that started it.
        let fill_task = async move {
            let ended = std::sync::atomic::AtomicBool::new(false);
            let task = FillTask { store, sha256, upstream, file, temp_path, sender, ended };
            task.run(url, expected).await;
        };
        tokio::spawn(tracing::Instrument::in_current_span(fill_task));
        Ok(fill)
    }
}

struct FillTask {
    store: Arc<FileStore>,
    sha256: String,
    upstream: Arc<Upstream>,
    file: Arc<File>,
    temp_path: PathBuf,
    sender: watch::Sender<FillState>,
    /// Set once the fill has ended (committed or failed) and said so.
    ended: std::sync::atomic::AtomicBool,
}

/// However the task ends without saying so (a panic, the runtime shutting down), the fill
/// leaves the fill map and its readers see a failure: a dead fill must not hold its file's
/// entry until a restart.
impl Drop for FillTask {
    fn drop(&mut self) {
        if !self.ended.load(std::sync::atomic::Ordering::Relaxed) {
            self.fail(FillError::Stream("the fill stopped unexpectedly".into()));
        }
    }
}

/// Where a fill's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Shared,
    Upstream,
}

/// Longest pause between two chunks of an object from the shared store.
const SHARED_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

impl FillTask {
    async fn run(self, url: String, expected: Expected) {
        let result = match self.read_shared(&expected).await {
            Some(result) => result.map(|size| (size, Source::Shared)),
            None => self.download(&url, expected).await.map(|size| (size, Source::Upstream)),
        };
        match result {
            Ok((size, source)) => {
                let committed = {
                    let (store, sha, temp, file) =
                        (self.store.clone(), self.sha256.clone(), self.temp_path.clone(), self.file.clone());
                    tokio::task::spawn_blocking(move || {
                        file.sync_data()?;
                        store.commit(&sha, &temp, size)
                    })
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                };
                match committed {
                    Ok(()) => {
                        tracing::debug!(upstream = %self.upstream.name(), sha256 = %self.sha256, size, ?source, "file cached");
                        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.store.end_fill(&self.sha256);
                        self.sender.send_modify(|s| s.phase = Phase::Done);
                        if let (Source::Upstream, Some(shared)) = (source, &self.store.shared) {
                            shared.upload(self.sha256.clone(), self.file.clone(), size);
                        }
                    }
                    Err(error) => self.fail(FillError::Io(error.to_string().into())),
                }
            }
            Err(error) => self.fail(error),
        }
    }

    fn fail(&self, error: FillError) {
        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        if let FillError::Io(message) = &error {
            self.store.degrade(message);
        }
        let _ = std::fs::remove_file(&self.temp_path);
        self.store.end_fill(&self.sha256);
        self.sender.send_modify(|s| s.phase = Phase::Failed(error));
    }

    /// The file from the shared tier, if it has it: streamed into the temp file like an
    /// upstream body, checked against the length and sha256 as it arrives, the last chunk held
    /// back until both match. `None` sends the fill to the upstream: the store has no such
    /// object, does not answer in time, or failed before any byte reached a reader. An object
    /// that turns out wrong is deleted.
    async fn read_shared(&self, expected: &Expected) -> Option<Result<u64, FillError>> {
        use futures_util::StreamExt;
        use sha2::{Digest, Sha256};
        let shared = self.store.shared.as_ref()?;
        let object = shared.open_file(&self.sha256).await?;
        if expected.size.is_some_and(|size| size != object.size) {
            shared.reject(&self.sha256, "its length is not the index's");
            return None;
        }
        self.sender.send_modify(|s| {
            s.phase = Phase::Streaming;
            s.total = Some(object.size);
        });
        let mut chunks = object.chunks;
        let mut hasher = Sha256::new();
        let mut buffer = BytesMut::with_capacity(WRITE_BUFFER);
        let mut offset = 0u64;
        // Nothing reached a reader yet: the upstream can still take over unseen.
        let broken = |offset: u64, why: String| (offset > 0).then(|| Err(FillError::Stream(why.into())));
        loop {
            match tokio::time::timeout(SHARED_IDLE, chunks.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(bytes))) => {
                    hasher.update(&bytes);
                    buffer.extend_from_slice(&bytes);
                    if buffer.len() >= WRITE_BUFFER && offset + (buffer.len() as u64) < object.size {
                        offset = match self.write(buffer.split().freeze(), offset).await {
                            Ok(offset) => offset,
                            Err(error) => return Some(Err(error)),
                        };
                    }
                }
                Ok(Some(Err(error))) => {
                    let error = super::super::shared::without_queries(&error.to_string());
                    tracing::warn!(sha256 = %self.sha256, %error, "reading from the shared store broke off");
                    return broken(offset, format!("the shared store broke off: {error}"));
                }
                Err(_) => {
                    tracing::warn!(sha256 = %self.sha256, "the shared store stalled");
                    return broken(offset, format!("the shared store sent nothing for {SHARED_IDLE:?}"));
                }
            }
        }
        let length = offset + buffer.len() as u64;
        let digest: [u8; 32] = hasher.finalize().into();
        if length != object.size || expected.sha256.is_some_and(|sha| sha != digest) {
            shared.reject(
                &self.sha256,
                if length == object.size { "its sha256 differs" } else { "it ended short" },
            );
            return broken(offset, "the shared store's copy is not the file".to_owned());
        }
        if !buffer.is_empty() {
            offset = match self.write(buffer.freeze(), offset).await {
                Ok(offset) => offset,
                Err(error) => return Some(Err(error)),
            };
        }
        Some(Ok(offset))
    }

    /// Streams the upstream body into the temp file; returns its verified length.
    async fn download(&self, url: &str, expected: Expected) -> Result<u64, FillError> {
        let response = self
            .upstream
            .fetch_file(url, expected.clone())
            .await
            .map_err(|e| FillError::Upstream(Arc::new(e)))?;
        let upstream_length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        self.sender.send_modify(|s| {
            s.phase = Phase::Streaming;
            s.total = expected.size.or(upstream_length);
            s.content_type = content_type;
        });
        let mut body = response.into_body();
        let mut buffer = BytesMut::with_capacity(WRITE_BUFFER);
        let mut offset = 0u64;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(error)) => return Err(FillError::Stream(error.to_string().into())),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    buffer.extend_from_slice(&data);
                    if buffer.len() >= WRITE_BUFFER {
                        offset = self.write(buffer.split().freeze(), offset).await?;
                    }
                }
            }
        }
        // The body ended cleanly, so it was verified: the last bytes may now reach readers.
        if !buffer.is_empty() {
            offset = self.write(buffer.freeze(), offset).await?;
        }
        Ok(offset)
    }

    async fn write(&self, bytes: Bytes, offset: u64) -> Result<u64, FillError> {
        let file = self.file.clone();
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || file.write_all_at(&bytes, offset))
            .await
            .map_err(|e| FillError::Io(e.to_string().into()))?
            .map_err(|e| FillError::Io(e.to_string().into()))?;
        let written = offset + len;
        self.sender.send_modify(|s| s.written = written);
        Ok(written)
    }
}
