//! The body of a file download, checked as it streams.
//!
//! Bytes are hashed on the way through, and the last chunk is held back until the upstream's
//! stream has ended and both length and sha256 match the index. So a client whose download
//! turns out short, long or corrupt never receives a complete body: it sees the stream break
//! off instead of a clean end (I3). Each read has a deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::time::{Instant, Sleep};

/// What a file must turn out to be, from its index entry.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub sha256: Option<[u8; 32]>,
    pub size: Option<u64>,
}

impl Expected {
    /// From index values; a sha256 that is not 64 hex digits counts as absent.
    pub fn new(sha256_hex: Option<&str>, size: Option<u64>) -> Self {
        let sha256 = sha256_hex.and_then(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).ok().map(|()| out)
        });
        Expected { sha256, size }
    }
}

/// Why a download was cut off.
#[derive(Debug, thiserror::Error)]
pub enum FileStreamError {
    #[error("upstream {upstream:?} broke off the download: {reason}")]
    Broken { upstream: Arc<str>, reason: String },
    #[error("upstream {upstream:?} stalled for {idle:?}")]
    Stalled { upstream: Arc<str>, idle: Duration },
    #[error("upstream {upstream:?} sent {got} bytes where the index says {expected}")]
    WrongLength { upstream: Arc<str>, got: u64, expected: u64 },
    #[error("upstream {upstream:?} sent bytes whose sha256 does not match the index")]
    HashMismatch { upstream: Arc<str> },
}

pub struct VerifiedBody {
    inner: Incoming,
    upstream: Arc<str>,
    expected: Expected,
    hasher: Sha256,
    seen: u64,
    held: Option<Bytes>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    finished: bool,
    metrics: Arc<crate::metrics::Metrics>,
    /// `pipgate_upstream_bytes_total{upstream, kind="file"}`, resolved once.
    received: prometheus::IntCounter,
}

impl VerifiedBody {
    pub fn new(
        inner: Incoming,
        upstream: Arc<str>,
        expected: Expected,
        idle: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        VerifiedBody {
            inner,
            upstream: upstream.clone(),
            expected,
            hasher: Sha256::new(),
            seen: 0,
            held: None,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            finished: false,
            received: metrics.upstream_bytes.with_label_values(&[&upstream, "file"]),
            metrics,
        }
    }

    fn fail(&mut self, error: FileStreamError) -> Poll<Option<Result<Frame<Bytes>, FileStreamError>>> {
        tracing::warn!(upstream = %self.upstream, error = %error, "download aborted");
        if let FileStreamError::HashMismatch { .. } = error {
            self.metrics.hash_mismatches.with_label_values(&[&self.upstream]).inc();
        }
        self.finished = true;
        self.held = None;
        Poll::Ready(Some(Err(error)))
    }

    fn verify_end(&mut self) -> Result<(), FileStreamError> {
        if let Some(expected) = self.expected.size
            && self.seen != expected
        {
            return Err(FileStreamError::WrongLength {
                upstream: self.upstream.clone(),
                got: self.seen,
                expected,
            });
        }
        if let Some(expected) = self.expected.sha256 {
            let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            if digest != expected {
                return Err(FileStreamError::HashMismatch { upstream: self.upstream.clone() });
            }
        }
        Ok(())
    }
}

impl Body for VerifiedBody {
    type Data = Bytes;
    type Error = FileStreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(this.held.take().map(|b| Ok(Frame::data(b))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    ready!(this.deadline.as_mut().poll(cx));
                    let idle = this.idle;
                    return this.fail(FileStreamError::Stalled { upstream: this.upstream.clone(), idle });
                }
                Poll::Ready(Some(Err(e))) => {
                    let reason = e.to_string();
                    return this.fail(FileStreamError::Broken { upstream: this.upstream.clone(), reason });
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.deadline.as_mut().reset(Instant::now() + this.idle);
                    this.seen += data.len() as u64;
                    this.received.inc_by(data.len() as u64);
                    if let Some(expected) = this.expected.size.filter(|&e| this.seen > e) {
                        let got = this.seen;
                        return this.fail(FileStreamError::WrongLength {
                            upstream: this.upstream.clone(),
                            got,
                            expected,
                        });
                    }
                    if this.expected.sha256.is_some() {
                        this.hasher.update(&data);
                    }
                    if let Some(previous) = this.held.replace(data) {
                        return Poll::Ready(Some(Ok(Frame::data(previous))));
                    }
                }
                Poll::Ready(None) => {
                    if let Err(error) = this.verify_end() {
                        return this.fail(error);
                    }
                    this.finished = true;
                    return Poll::Ready(this.held.take().map(|b| Ok(Frame::data(b))));
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.expected.size {
            Some(size) => SizeHint::with_exact(size),
            None => self.inner.size_hint(),
        }
    }
}
