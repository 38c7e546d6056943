//! Request id and trace span: the outermost layer, so that every log line a request causes (in
//! any layer or handler below, and in the page refreshes and file fills it starts) carries its
//! id. The access line itself is written by the metrics layer's guard, inside this span, when
//! the body has been sent.
//!
//! The id is sent back in `X-Request-Id`, so a user who reports a failed install can quote it
//! and the operator can find every line of that request. With `server.trust_request_id`, an
//! incoming `X-Request-Id` (from the proxy in front) is kept, if it is a plain token.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tracing::Span;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Hands out request ids: a random per-process prefix (so replicas do not collide) and a
/// counter (so ids are cheap and sort in arrival order within one process).
#[derive(Debug)]
struct RequestIds {
    /// Lowercase hex of 4 random bytes.
    prefix: [u8; 8],
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use aws_lc_rs::rand::SecureRandom;
        let mut bytes = [0u8; 4];
        // A failing system RNG leaves the prefix zero: ids stay unique within the process.
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(hex::encode(bytes).as_bytes());
        RequestIds { prefix, next: AtomicU64::new(1) }
    }

    /// `{prefix}-{counter}`, written by hand: this runs for every request.
    fn next(&self) -> HeaderValue {
        let mut n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut id = [0u8; 29];
        id[..8].copy_from_slice(&self.prefix);
        id[8] = b'-';
        let len = 9 + digits.len() - at;
        id[9..len].copy_from_slice(&digits[at..]);
        HeaderValue::from_bytes(&id[..len]).expect("hex, a dash and digits")
    }
}

/// A request id a proxy sent, if it is a plain token: at most 128 of `A-Za-z0-9._:-`.
fn incoming_id(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let plain = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    plain.then(|| value.clone())
}

#[derive(Debug, Clone)]
pub struct TraceLayer {
    ids: Arc<RequestIds>,
    trust_incoming: bool,
}

impl TraceLayer {
    /// `trust_incoming`: keep a plain `X-Request-Id` that the request brings.
    pub fn new(trust_incoming: bool) -> Self {
        TraceLayer { ids: Arc::new(RequestIds::new()), trust_incoming }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, ids: self.ids.clone(), trust_incoming: self.trust_incoming }
    }
}

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    ids: Arc<RequestIds>,
    trust_incoming: bool,
}

impl<S, B, RB> tower::Service<Request<B>> for Trace<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = Traced<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let incoming = self.trust_incoming.then(|| request.headers().get(REQUEST_ID_HEADER)).flatten();
        let id = incoming.and_then(incoming_id).unwrap_or_else(|| self.ids.next());
        let shown = id.to_str().unwrap_or("-");
        let span = tracing::info_span!("request", id = shown, method = %request.method(), path = request.uri().path());
        let inner = span.in_scope(|| self.inner.call(request));
        Traced { inner, span, id: Some(id) }
    }
}

pin_project! {
    /// The inner answer, polled inside the request's span; on the way out it sets
    /// `X-Request-Id`.
    pub struct Traced<F> {
        #[pin]
        inner: F,
        span: Span,
        id: Option<HeaderValue>,
    }
}

impl<F, RB> Future for Traced<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
{
    type Output = Result<Response<RB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_incoming_ids_are_kept() {
        for (value, kept) in [
            ("req-42.a_b:c", true),
            ("", false),
            ("has space", false),
            ("quote\"", false),
            (&"x".repeat(129), false),
        ] {
            assert_eq!(incoming_id(&HeaderValue::from_str(value).unwrap()).is_some(), kept, "{value:?}");
        }
    }

    #[test]
    fn ids_are_unique_and_share_the_process_prefix() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        let prefix = |v: &HeaderValue| v.to_str().unwrap().split_once('-').unwrap().0.to_owned();
        assert_eq!(prefix(&a), prefix(&b));
        assert_eq!(prefix(&a).len(), 8);
        assert_eq!(a.to_str().unwrap().split_once('-').unwrap().1, "1");
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(ids.next().to_str().unwrap().split_once('-').unwrap().1, u64::MAX.to_string());
    }
}
