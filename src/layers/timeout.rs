//! A deadline for the whole request, up to its response headers (`server.request_timeout`).
//!
//! Upstream requests have deadlines of their own; this one bounds what they do not: waiting
//! for a concurrency slot, for a shared page refresh or for a fill that a range request needs
//! whole. It sits above the concurrency limit so that the wait for a slot counts. The body is
//! not covered: a large file may stream for longer, bounded by per-read deadlines instead. A
//! request that runs out stops waiting; work it shares with others (a refresh, a fill) goes
//! on in its own task.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;

use super::BoxFuture;
use crate::error::ServeError;

#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    pub fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, after: self.after }
    }
}

#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
}

impl<S, B> tower::Service<Request<B>> for Timeout<S>
where
    S: tower::Service<Request<B>, Error = ServeError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = ServeError;
    type Future = BoxFuture<S::Response, ServeError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let after = self.after;
        let answer = self.inner.call(request);
        Box::pin(async move {
            tokio::time::timeout(after, answer).await.unwrap_or(Err(ServeError::RequestTimeout(after)))
        })
    }
}
