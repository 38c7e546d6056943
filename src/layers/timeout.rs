//! A deadline for the whole request, up to its response headers (`server.request_timeout`).
//!
//! Upstream requests have deadlines of their own; this one bounds what they do not: waiting
//! for a concurrency slot, for a shared page refresh or for a fill that a range request needs
//! whole. It sits above the concurrency limit so that the wait for a slot counts. The body is
//! not covered: a large file may stream for longer, bounded by per-read deadlines instead. A
//! request that runs out stops waiting; work it shares with others (a refresh, a fill) goes
//! on in its own task.
//!
//! The timer starts the first time the request has to wait: a cache hit, answered in its first
//! poll, never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::ServeError;

#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
    /// For `/upload/…`, whose answer waits for the whole body to reach the upstream.
    uploads: Duration,
}

impl TimeoutLayer {
    pub fn new(after: Duration, uploads: Duration) -> Self {
        TimeoutLayer { after, uploads }
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, after: self.after, uploads: self.uploads }
    }
}

#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
    uploads: Duration,
}

impl<S, B> tower::Service<Request<B>> for Timeout<S>
where
    S: tower::Service<Request<B>, Error = ServeError>,
{
    type Response = S::Response;
    type Error = ServeError;
    type Future = Deadline<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let after = if request.uri().path().starts_with("/upload/") { self.uploads } else { self.after };
        Deadline { inner: self.inner.call(request), after, sleep: None }
    }
}

pin_project! {
    /// The inner answer, or `RequestTimeout` once `after` has passed since it first waited.
    pub struct Deadline<F> {
        #[pin]
        inner: F,
        after: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F, T> Future for Deadline<F>
where
    F: Future<Output = Result<T, ServeError>>,
{
    type Output = Result<T, ServeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        let after = *this.after;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(ServeError::RequestTimeout(after)))
    }
}
