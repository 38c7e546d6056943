//! One coalesced download of a file into the store.
//!
//! Readers follow a fill through its temp file. If the cache disk fails during the fill (full,
//! read-only, gone), the fill does not abort them: it goes on downloading and hands the rest
//! of the bytes to the readers it has (the [`Relay`]), verified as before, and only the cache
//! copy is dropped. A request that arrives after that is served without the fill.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};

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
    /// The cache disk failed: bytes past `written` reach readers through their relay.
    Relaying,
    /// Every byte was verified and relayed (`total` is the length); nothing was cached.
    Relayed,
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
    /// The bytes written last, and where in the file they start: a reader that has caught up
    /// sends them as they are (shared, not copied) instead of reading them back from the temp
    /// file on the blocking pool. Dropped when the fill ends.
    pub last_written: Option<(u64, Bytes)>,
}

#[derive(Debug)]
pub struct Fill {
    /// The temp file (and, after commit, the same inode under its final name): readers use
    /// positioned reads on it, so they share one descriptor without sharing an offset. Made
    /// by the fill task on the blocking pool together with its first write (so never on the
    /// runtime or under the fills lock, and without a trip of its own), and set before any
    /// byte is counted as written: a reader looks it up when it reads. Unset only if it could
    /// not be made: the fill then relays every byte, and no reader reads the file.
    file: TempFile,
    pub state: watch::Receiver<FillState>,
    relay: Arc<Relay>,
}

/// What a reader follows a fill by: its state, and the channel the rest of the bytes arrive
/// on if the cache disk fails under the fill.
#[derive(Debug)]
pub struct FillFeed {
    pub state: watch::Receiver<FillState>,
    pub relayed: mpsc::Receiver<RelayedChunk>,
}

/// Bytes from `offset` on, handed over by the fill once the disk failed.
pub type RelayedChunk = (u64, Bytes);

/// Chunks a relay holds per reader. The chunks are shared (`Bytes`), so however many readers
/// follow, a relaying fill holds a few write buffers, and the slowest reader sets the pace, as
/// it would on a pass-through.
const RELAY_DEPTH: usize = 4;

/// How long a relaying fill waits for a reader that takes nothing before it drops that reader.
const RELAY_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The readers a fill would relay to. Each takes its place before it reads anything, so none
/// can miss a relayed byte; once relaying has begun, no one new can join.
#[derive(Debug, Default)]
struct Relay {
    readers: Mutex<Readers>,
}

#[derive(Debug, Default)]
struct Readers {
    closed: bool,
    senders: Vec<mpsc::Sender<RelayedChunk>>,
}

impl Relay {
    fn join(&self) -> Option<mpsc::Receiver<RelayedChunk>> {
        let mut readers = self.readers.lock().expect("relay lock");
        if readers.closed {
            return None;
        }
        let (sender, receiver) = mpsc::channel(RELAY_DEPTH);
        readers.senders.retain(|s| !s.is_closed());
        readers.senders.push(sender);
        Some(receiver)
    }

    /// Closes the relay to newcomers and hands over the readers it has.
    fn close(&self) -> Vec<mpsc::Sender<RelayedChunk>> {
        let mut readers = self.readers.lock().expect("relay lock");
        readers.closed = true;
        std::mem::take(&mut readers.senders)
    }
}

impl Fill {
    pub(super) fn start(
        store: Arc<FileStore>,
        sha256: String,
        upstream: Arc<Upstream>,
        url: String,
        expected: Expected,
    ) -> Arc<Fill> {
        let temp_path = store.temp_path(&sha256);
        let initial = FillState {
            phase: Phase::Connecting,
            written: 0,
            total: expected.size,
            content_type: None,
            last_written: None,
        };
        let (sender, state) = watch::channel(initial);
        let relay = Arc::new(Relay::default());
        let file = TempFile::default();
        let fill = Arc::new(Fill { file: file.clone(), state, relay: relay.clone() });
        // The fill logs under the request that started it.
        let fill_task = async move {
            let end = FillEnd { store, sha256, temp_path, sender, ended: false };
            let task = FillTask { end, upstream, file, relay, relaying: None };
            task.run(url, expected).await;
        };
        tokio::spawn(tracing::Instrument::in_current_span(fill_task));
        fill
    }

    /// The temp file, for readers: made by the time any byte is written.
    pub fn file(&self) -> TempFile {
        self.file.clone()
    }

    /// Follows the fill from its first byte; `None` once it relays past a failed disk (a
    /// newcomer would have missed bytes: it must be served without the fill).
    pub fn follow(&self) -> Option<FillFeed> {
        let relayed = self.relay.join()?;
        Some(FillFeed { state: self.state.clone(), relayed })
    }
}

struct FillTask {
    end: FillEnd,
    upstream: Arc<Upstream>,
    file: TempFile,
    relay: Arc<Relay>,
    /// Set once the cache disk failed: the readers the rest of the bytes go to.
    relaying: Option<Vec<mpsc::Sender<RelayedChunk>>>,
}

/// A fill's temp file, once made; shared by the fill task and its readers. A committed file
/// is one made already ([`TempFile::made`]).
#[derive(Debug, Clone, Default)]
pub struct TempFile(Arc<OnceLock<Arc<File>>>);

impl TempFile {
    pub fn made(file: Arc<File>) -> TempFile {
        TempFile(Arc::new(OnceLock::from(file)))
    }

    pub fn get(&self) -> Option<&Arc<File>> {
        self.0.get()
    }

    fn set(&self, file: Arc<File>) {
        let _ = self.0.set(file);
    }
}

/// The fill's temp file: `made` if a write made it already, else made now at `path` (blocking;
/// the first write does it, or the commit of an empty file).
fn made_or_create(made: Option<Arc<File>>, path: &std::path::Path) -> std::io::Result<Arc<File>> {
    match made {
        Some(file) => Ok(file),
        None => File::options().read(true).write(true).create_new(true).open(path).map(Arc::new),
    }
}

/// How a fill leaves the store: removed from the fill map and its readers told, exactly once.
/// However the task ends without saying so (a panic, the runtime shutting down), the drop does
/// it with a failure: a dead fill must not hold its file's entry until a restart.
struct FillEnd {
    store: Arc<FileStore>,
    sha256: String,
    temp_path: PathBuf,
    sender: watch::Sender<FillState>,
    ended: bool,
}

impl FillEnd {
    fn fail(&mut self, error: FillError) {
        self.ended = true;
        if let FillError::Io(message) = &error {
            self.store.degrade(message);
        }
        let _ = std::fs::remove_file(&self.temp_path);
        self.store.end_fill(&self.sha256);
        self.sender.send_modify(|s| {
            s.phase = Phase::Failed(error);
            s.last_written = None;
        });
    }

    fn committed(&mut self) {
        self.ended = true;
        self.store.end_fill(&self.sha256);
        self.sender.send_modify(|s| {
            s.phase = Phase::Done;
            s.last_written = None;
        });
    }

    /// Every byte reached the readers, but the store keeps no copy.
    fn relayed(&mut self, size: u64) {
        self.ended = true;
        let _ = std::fs::remove_file(&self.temp_path);
        self.store.end_fill(&self.sha256);
        self.sender.send_modify(|s| {
            s.phase = Phase::Relayed;
            s.total = Some(size);
            s.last_written = None;
        });
    }
}

impl Drop for FillEnd {
    fn drop(&mut self) {
        if !self.ended {
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
    async fn run(mut self, url: String, expected: Expected) {
        let result = match self.read_shared(&expected).await {
            Some(result) => result.map(|size| (size, Source::Shared)),
            None => self.download(&url, expected).await.map(|size| (size, Source::Upstream)),
        };
        let (size, source) = match result {
            Ok(done) => done,
            Err(error) => return self.end.fail(error),
        };
        if self.relaying.take().is_some() {
            // Dropping the senders closes each reader's relay after its last chunk.
            tracing::info!(upstream = %self.upstream.name(), sha256 = %self.end.sha256, size, "file relayed past the failed cache disk, not cached");
            return self.end.relayed(size);
        }
        let committed = {
            let (store, sha, temp, made) = (
                self.end.store.clone(),
                self.end.sha256.clone(),
                self.end.temp_path.clone(),
                self.file.get().cloned(),
            );
            tokio::task::spawn_blocking(move || {
                // An empty file had no write to make it.
                let file = made_or_create(made, &temp)?;
                file.sync_data()?;
                store.commit(&sha, &temp, size)?;
                Ok(file)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        // No one joins a fill that has ended: the relay's readers are let go either way (a
        // reader reads the whole file from the temp file, which its descriptor keeps).
        drop(self.relay.close());
        match committed {
            Ok(file) => {
                self.file.set(file.clone());
                tracing::debug!(upstream = %self.upstream.name(), sha256 = %self.end.sha256, size, ?source, "file cached");
                self.end.committed();
                if let (Source::Upstream, Some(shared)) = (source, &self.end.store.shared) {
                    shared.upload(self.end.sha256.clone(), file, size);
                }
            }
            Err(error) => {
                // The readers have every byte in the temp file already: only the copy is lost.
                self.end.store.degrade(&error);
                tracing::warn!(upstream = %self.upstream.name(), sha256 = %self.end.sha256, %error, "a verified file could not be committed to the cache");
                self.end.relayed(size);
            }
        }
    }

    /// The file from the shared tier, if it has it: streamed into the temp file like an
    /// upstream body, checked against the length and sha256 as it arrives, the last chunk held
    /// back until both match. `None` sends the fill to the upstream: the store has no such
    /// object, does not answer in time, or failed before any byte reached a reader. An object
    /// that turns out wrong is deleted.
    async fn read_shared(&mut self, expected: &Expected) -> Option<Result<u64, FillError>> {
        use futures_util::StreamExt;
        use sha2::{Digest, Sha256};
        let shared = self.end.store.shared.clone()?;
        let object = shared.open_file(&self.end.sha256).await?;
        if expected.size.is_some_and(|size| size != object.size) {
            shared.reject(&self.end.sha256, "its length is not the index's");
            return None;
        }
        self.end.sender.send_modify(|s| {
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
                    tracing::warn!(sha256 = %self.end.sha256, %error, "reading from the shared store broke off");
                    return broken(offset, format!("the shared store broke off: {error}"));
                }
                Err(_) => {
                    tracing::warn!(sha256 = %self.end.sha256, "the shared store stalled");
                    return broken(offset, format!("the shared store sent nothing for {SHARED_IDLE:?}"));
                }
            }
        }
        let length = offset + buffer.len() as u64;
        let digest: [u8; 32] = hasher.finalize().into();
        if length != object.size || expected.sha256.is_some_and(|sha| sha != digest) {
            shared.reject(
                &self.end.sha256,
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
    async fn download(&mut self, url: &str, expected: Expected) -> Result<u64, FillError> {
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
        self.end.sender.send_modify(|s| {
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

    /// Writes verified bytes at `offset` for the readers: into the temp file, or, once the disk
    /// has failed, through the relay.
    async fn write(&mut self, bytes: Bytes, offset: u64) -> Result<u64, FillError> {
        let len = bytes.len() as u64;
        if self.relaying.is_none() {
            let (made, temp, chunk) = (self.file.get().cloned(), self.end.temp_path.clone(), bytes.clone());
            let written = tokio::task::spawn_blocking(move || {
                // The first write makes the file, in the same trip.
                let file = made_or_create(made, &temp)?;
                file.write_all_at(&chunk, offset).map(|()| file)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match written {
                Ok(file) => {
                    // Before the bytes count as written: a reader that sees them finds the file.
                    self.file.set(file);
                    self.end.sender.send_modify(|s| {
                        s.written = offset + len;
                        s.last_written = Some((offset, bytes));
                    });
                    return Ok(offset + len);
                }
                Err(error) => self.begin_relay(offset, &error),
            }
        }
        self.relay_chunk(offset, bytes).await?;
        Ok(offset + len)
    }

    /// The disk failed at `offset`: the readers get the rest through the relay, new fills
    /// pass through for a while, and the temp file goes (its descriptor keeps what readers
    /// still read from it).
    fn begin_relay(&mut self, offset: u64, error: &std::io::Error) {
        self.end.store.degrade(error);
        let readers = self.relay.close();
        tracing::warn!(
            upstream = %self.upstream.name(), sha256 = %self.end.sha256, offset, readers = readers.len(), %error,
            "the cache disk failed during a fill: its clients get the rest straight from the upstream"
        );
        let _ = std::fs::remove_file(&self.end.temp_path);
        self.upstream.count_pass_through("disk_during_fill");
        self.relaying = Some(readers);
        self.end.sender.send_modify(|s| s.phase = Phase::Relaying);
    }

    /// Hands one chunk to every reader still there, at the pace of the slowest; a reader that
    /// takes nothing for [`RELAY_STALL`] is let go. With no reader left, the fill has no one to
    /// download for.
    async fn relay_chunk(&mut self, offset: u64, bytes: Bytes) -> Result<(), FillError> {
        let readers = self.relaying.take().unwrap_or_default();
        let kept = relay_to(readers, offset, bytes).await;
        if kept.is_empty() {
            return Err(FillError::Io("the cache disk failed and no client is left to relay to".into()));
        }
        self.relaying = Some(kept);
        Ok(())
    }
}

/// Sends one chunk to each reader, all at once; returns the readers that took it within
/// [`RELAY_STALL`] (a reader gone, or stalled that long, is dropped, which ends its answer).
async fn relay_to(
    readers: Vec<mpsc::Sender<RelayedChunk>>,
    offset: u64,
    bytes: Bytes,
) -> Vec<mpsc::Sender<RelayedChunk>> {
    let sends = readers.into_iter().map(|reader| {
        let chunk = (offset, bytes.clone());
        async move {
            match tokio::time::timeout(RELAY_STALL, reader.send(chunk)).await {
                Ok(Ok(())) => Some(reader),
                _ => None,
            }
        }
    });
    futures_util::future::join_all(sends).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that takes nothing holds the relay up for [`RELAY_STALL`] at most, then is
    /// dropped (its answer ends), and the reader that keeps reading gets every chunk.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_reader_is_dropped_after_the_stall_and_the_others_get_every_chunk() {
        let (reading, mut read) = mpsc::channel(RELAY_DEPTH);
        let (stalled, mut never_read) = mpsc::channel(RELAY_DEPTH);
        let consumer = tokio::spawn(async move {
            let mut offsets = Vec::new();
            while let Some((offset, _)) = read.recv().await {
                offsets.push(offset);
            }
            offsets
        });
        let started = tokio::time::Instant::now();
        let mut readers = vec![reading, stalled];
        for offset in 0..(RELAY_DEPTH as u64 + 3) {
            readers = relay_to(readers, offset, Bytes::from_static(b"chunk")).await;
        }
        // The stalled reader's channel filled after RELAY_DEPTH chunks; the next send waited
        // out the stall (in paused time) and let it go.
        assert_eq!(readers.len(), 1, "only the reading reader is left");
        assert!(started.elapsed() >= RELAY_STALL, "it was waited for: {:?}", started.elapsed());
        assert!(started.elapsed() < RELAY_STALL * 2, "once: {:?}", started.elapsed());
        drop(readers);
        assert_eq!(consumer.await.unwrap(), (0..(RELAY_DEPTH as u64 + 3)).collect::<Vec<_>>());
        // The dropped reader saw what fit in its channel, then the end of the relay.
        let mut seen = 0;
        while never_read.recv().await.is_some() {
            seen += 1;
        }
        assert_eq!(seen, RELAY_DEPTH);
    }

    #[tokio::test]
    async fn a_fill_task_that_panics_leaves_the_fill_map_and_fails_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), 1 << 20, None).unwrap();
        let sha256 = "ab".repeat(32);
        let temp_path = store.temp_path(&sha256);
        let file =
            Arc::new(File::options().read(true).write(true).create_new(true).open(&temp_path).unwrap());
        let streaming = FillState {
            phase: Phase::Streaming,
            written: 0,
            total: None,
            content_type: None,
            last_written: None,
        };
        let (sender, state) = watch::channel(streaming);
        let fill = Arc::new(Fill { file: TempFile::made(file), state: state.clone(), relay: Arc::default() });
        store.fills.lock().unwrap().insert(sha256.clone(), fill);
        let end =
            FillEnd { store: store.clone(), sha256, temp_path: temp_path.clone(), sender, ended: false };

        let task = tokio::spawn(async move {
            let _end = end;
            panic!("a bug in the fill");
        });
        assert!(task.await.unwrap_err().is_panic());
        // The next request for the file finds no fill and starts a new one.
        assert!(store.fills.lock().unwrap().is_empty(), "the dead fill left the map");
        assert!(matches!(state.borrow().phase, Phase::Failed(_)), "its readers were told");
        assert!(!temp_path.exists(), "its temp file is gone");
    }
}
