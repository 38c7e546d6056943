//! Reading a stored file, or one still filling, as a stream of chunks.
//!
//! A reader of a filling file that has caught up with the fill sends the fill's last write as
//! it is (the same shared bytes the fill wrote), without reading it back from the temp file:
//! a cold file's first client costs no read and no buffer of its own. A reader behind the
//! fill, or one of a herd, reads from the file.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{FillError, FillFeed, FillState, Phase, TempFile};
use bytes::Bytes;
use futures_util::Stream;

/// Bytes per read, and so the most a client holds in flight, while few files are being sent:
/// at the static file server's throughput on a hot file (`benches/load.sh`, 4 clients), and
/// 100 clients of a cold 100 MiB file peaked at 29 MiB RSS against 62 MiB with 256 KiB reads.
const CHUNK: usize = 64 * 1024;

/// Bytes per read while more than [`MANY_STREAMS`] files are being sent. jemalloc keeps
/// buffers up to 32 KiB in its thread caches; a 64 KiB one is a large allocation whose freed
/// pages stay mapped, dirty, for seconds. 500 clients on one cold file (`benches/herd.sh`)
/// peaked at 116-128 MiB with 64 KiB reads and 50-61 MiB with 32 KiB ones.
const HERD_CHUNK: usize = 32 * 1024;

/// Past this many file streams at once, reads are [`HERD_CHUNK`]: so at most a few MiB are in
/// 64 KiB buffers, and a few clients still get the larger reads' throughput.
const MANY_STREAMS: usize = 64;

/// File streams open now, in the whole process.
static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// The read size now.
fn chunk() -> u64 {
    (if OPEN_STREAMS.load(Ordering::Relaxed) > MANY_STREAMS { HERD_CHUNK } else { CHUNK }) as u64
}

/// Counts one open stream for as long as it lives (it ends, or its client goes).
struct OpenStream;

impl OpenStream {
    fn open() -> OpenStream {
        OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream of a file's bytes from `start` to `end` (exclusive).
pub type FileChunks = Pin<Box<dyn Stream<Item = Result<Bytes, FillError>> + Send>>;

/// Streams `file[start..end]`. With `fill`, waits for bytes that are not written yet, takes
/// them from the relay once the fill relays past a failed disk, and breaks off with the
/// fill's error if it fails; `end` may then be `u64::MAX` (length unknown). A fill's file is
/// looked up when bytes are read: the fill makes it with its first write.
pub fn file_chunks(file: TempFile, start: u64, end: u64, fill: Option<FillFeed>) -> FileChunks {
    let state = (file, start, end, fill, Some(OpenStream::open()));
    Box::pin(futures_util::stream::unfold(state, |(file, position, end, mut fill, open)| async move {
        // A broken stream's last state: at its end, no longer counted as open.
        let broken = |error| Some((Err(error), (file.clone(), end, end, None, None)));
        loop {
            if position >= end {
                return None;
            }
            let available = match &mut fill {
                None => end,
                Some(feed) => {
                    let state = feed.state.borrow_and_update().clone();
                    match state.phase {
                        Phase::Failed(error) => return broken(error),
                        Phase::Done if position >= state.written => return None,
                        _ if position < state.written => {
                            if let Some(bytes) = last_written(&state, position, end) {
                                let next = position + bytes.len() as u64;
                                return Some((Ok(bytes), (file, next, end, fill, open)));
                            }
                            state.written.min(end)
                        }
                        Phase::Relaying | Phase::Relayed => {
                            return match relayed(feed, position).await {
                                Ok(Some(bytes)) => {
                                    let next = position + bytes.len() as u64;
                                    Some((Ok(bytes), (file, next, end, fill, open)))
                                }
                                Ok(None) => None,
                                Err(error) => broken(error),
                            };
                        }
                        _ => {
                            if feed.state.changed().await.is_err() {
                                return broken(FillError::Stream("the fill stopped".into()));
                            }
                            continue;
                        }
                    }
                }
            };
            let len = (available - position).min(chunk()) as usize;
            let Some(reader) = file.get().cloned() else {
                return broken(FillError::Io("the fill's temp file could not be made".into()));
            };
            // Allocated here, on a runtime worker, where hyper later frees it: a buffer made on a
            // blocking-pool thread would come from (and keep alive) that thread's malloc arena.
            let mut buffer = vec![0u8; len];
            let read = tokio::task::spawn_blocking(move || {
                reader.read_exact_at(&mut buffer, position).map(|()| Bytes::from(buffer))
            })
            .await;
            return match read {
                Ok(Ok(bytes)) => Some((Ok(bytes), (file, position + len as u64, end, fill, open))),
                Ok(Err(e)) => broken(FillError::Io(e.to_string().into())),
                Err(e) => broken(FillError::Io(e.to_string().into())),
            };
        }
    }))
}

/// The fill's last write from `position` up to `end`, if `position` is in it, and unless more
/// than [`MANY_STREAMS`] files are being sent: readers of a herd that spread out would each
/// keep another write buffer alive, where reads of [`HERD_CHUNK`] bound what each holds.
fn last_written(state: &FillState, position: u64, end: u64) -> Option<Bytes> {
    let (start, bytes) = state.last_written.as_ref()?;
    let from = usize::try_from(position.checked_sub(*start)?).ok()?;
    if from >= bytes.len() || OPEN_STREAMS.load(Ordering::Relaxed) > MANY_STREAMS {
        return None;
    }
    let to = usize::try_from(end - start).map_or(bytes.len(), |to| to.min(bytes.len()));
    Some(bytes.slice(from..to))
}

/// The next relayed chunk at `position`, or `None` at the verified end of the file. A relay
/// that closes anywhere else (the fill failed, or let this reader go) is an error, never a
/// short file.
async fn relayed(feed: &mut FillFeed, position: u64) -> Result<Option<Bytes>, FillError> {
    match feed.relayed.recv().await {
        Some((offset, bytes)) if offset == position => Ok(Some(bytes)),
        Some((offset, _)) => {
            Err(FillError::Stream(format!("the relay skipped from byte {position} to {offset}").into()))
        }
        None => {
            let state = feed.state.borrow().clone();
            match state.phase {
                Phase::Failed(error) => Err(error),
                Phase::Relayed if state.total == Some(position) => Ok(None),
                _ => Err(FillError::Stream("the relay stopped before the end of the file".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;

    use super::*;

    /// Held by the tests that depend on how many streams are open in the process.
    static COUNTED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn reads_get_smaller_while_many_files_are_being_sent() {
        let _counted = COUNTED.lock().await;
        let mut temp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut temp, &vec![7u8; 256 * 1024]).unwrap();
        let file = Arc::new(temp);
        let first_chunk = || async {
            file_chunks(TempFile::made(file.clone()), 0, 256 * 1024, None)
                .next()
                .await
                .unwrap()
                .unwrap()
                .len()
        };
        assert_eq!(first_chunk().await, CHUNK);

        let herd: Vec<FileChunks> = (0..=MANY_STREAMS)
            .map(|_| file_chunks(TempFile::made(file.clone()), 0, 256 * 1024, None))
            .collect();
        assert_eq!(first_chunk().await, HERD_CHUNK, "with {} other streams open", herd.len());
        drop(herd);
        assert_eq!(first_chunk().await, CHUNK, "a stream that is dropped is no longer counted");
    }

    #[tokio::test]
    async fn a_reader_that_caught_up_sends_the_fills_last_write_and_one_behind_reads_the_file() {
        let _counted = COUNTED.lock().await;
        // The temp file's bytes and the fill's last write (the same range) are told apart by
        // their content, so each read shows where it came from.
        let mut temp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut temp, &[1u8; 1000]).unwrap();
        let file = Arc::new(temp);
        let state = FillState {
            phase: Phase::Streaming,
            written: 1000,
            total: Some(1000),
            content_type: None,
            last_written: Some((600, Bytes::from(vec![2u8; 400]))),
        };
        let (_sender, receiver) = tokio::sync::watch::channel(state);
        let feed = || Some(FillFeed { state: receiver.clone(), relayed: tokio::sync::mpsc::channel(1).1 });
        let read = |start, end| {
            let stream = file_chunks(TempFile::made(file.clone()), start, end, feed());
            async move { stream.map(|chunk| chunk.unwrap()).collect::<Vec<Bytes>>().await }
        };

        assert_eq!(read(600, 1000).await, [vec![2u8; 400]], "caught up: the last write, whole");
        assert_eq!(read(700, 900).await, [vec![2u8; 200]], "its part from the position to the end");
        assert_eq!(read(0, 1000).await, [vec![1u8; 1000]], "behind: read from the file");

        let herd: Vec<FileChunks> =
            (0..=MANY_STREAMS).map(|_| file_chunks(TempFile::made(file.clone()), 0, 1, None)).collect();
        assert_eq!(read(600, 1000).await, [vec![1u8; 400]], "in a herd each reader reads");
        drop(herd);
    }
}
