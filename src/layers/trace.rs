//! Request id, trace span and access log: the outermost layer, so that every log line a
//! request causes (in any layer or handler below) carries its id, and the access line sees the
//! final answer.
//!
//! The id is sent back in `X-Request-Id`, so a user who reports a failed install can quote it
//! and the operator can find every line of that request.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tracing::Instrument;

use super::BoxFuture;
use crate::handler::UPSTREAM_HEADER;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Hands out request ids: a random per-process prefix (so replicas do not collide) and a
/// counter (so ids are cheap and sort in arrival order within one process).
#[derive(Debug)]
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use aws_lc_rs::rand::SecureRandom;
        let mut bytes = [0u8; 4];
        // A failing system RNG leaves the prefix zero: ids stay unique within the process.
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
        RequestIds { prefix: u32::from_be_bytes(bytes), next: AtomicU64::new(1) }
    }

    fn next(&self) -> String {
        format!("{:08x}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Debug, Clone)]
pub struct TraceLayer {
    ids: Arc<RequestIds>,
}

impl TraceLayer {
    pub fn new() -> Self {
        TraceLayer { ids: Arc::new(RequestIds::new()) }
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, ids: self.ids.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    ids: Arc<RequestIds>,
}

impl<S, B, RB> tower::Service<Request<B>> for Trace<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = BoxFuture<Response<RB>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = self.ids.next();
        let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
        let started = Instant::now();
        let answer = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let Ok(mut response) = answer.await;
                let upstream = response.headers().get(UPSTREAM_HEADER).and_then(|v| v.to_str().ok());
                tracing::info!(
                    status = response.status().as_u16(),
                    upstream = upstream.unwrap_or("-"),
                    ms = started.elapsed().as_millis() as u64,
                    "request"
                );
                let id = HeaderValue::from_str(&id).expect("hex, a dash and digits");
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_share_the_process_prefix() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.split_once('-').unwrap().0, b.split_once('-').unwrap().0);
        assert!(HeaderValue::from_str(&a).is_ok());
    }
}
