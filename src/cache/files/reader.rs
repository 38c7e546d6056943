//! Reading a stored file, or one still filling, as a stream of chunks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use super::{FillError, FillState, Phase};

/// Bytes per read: large enough for few syscalls, small enough to bound memory per client.
const CHUNK: u64 = 256 * 1024;

/// A stream of a file's bytes from `start` to `end` (exclusive).
pub type FileChunks = Pin<Box<dyn Stream<Item = Result<Bytes, FillError>> + Send>>;

/// Streams `file[start..end]`. With `fill`, waits for bytes that are not written yet and
/// breaks off with the fill's error if it fails; `end` may then be `u64::MAX` (length unknown).
pub fn file_chunks(
    file: Arc<File>,
    start: u64,
    end: u64,
    fill: Option<watch::Receiver<FillState>>,
) -> FileChunks {
    let state = (file, start, end, fill);
    Box::pin(futures_util::stream::unfold(state, |(file, position, end, mut fill)| async move {
        loop {
            if position >= end {
                return None;
            }
            let available = match &mut fill {
                None => end,
                Some(receiver) => {
                    let state = receiver.borrow_and_update().clone();
                    match state.phase {
                        Phase::Failed(error) => return Some((Err(error), (file, end, end, None))),
                        Phase::Done if position >= state.written => return None,
                        _ if position < state.written => state.written.min(end),
                        _ => {
                            if receiver.changed().await.is_err() {
                                let error = FillError::Stream("the fill stopped".into());
                                return Some((Err(error), (file, end, end, None)));
                            }
                            continue;
                        }
                    }
                }
            };
            let len = (available - position).min(CHUNK) as usize;
            let reader = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0u8; len];
                reader.read_exact_at(&mut buffer, position).map(|()| Bytes::from(buffer))
            })
            .await;
            return match read {
                Ok(Ok(bytes)) => Some((Ok(bytes), (file, position + len as u64, end, fill))),
                Ok(Err(e)) => Some((Err(FillError::Io(e.to_string().into())), (file, end, end, None))),
                Err(e) => Some((Err(FillError::Io(e.to_string().into())), (file, end, end, None))),
            };
        }
    }))
}
