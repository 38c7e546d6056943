//! Request metrics: counts by route and status, latency to the response headers, bytes sent,
//! and the in-flight gauge.
//!
//! It sits under the trace layer and above the rescue, so it counts every answer with its real
//! status, errors included. Counting rides on a guard, not on the happy path: a request is in
//! flight until its body has been sent *or dropped*, so a client that hangs up mid-download, or
//! before the headers, still ends its in-flight count. A request dropped before its headers is
//! counted with status `499` (nginx's "client closed request") and its time so far; one whose
//! client leaves mid-body is counted in `pipgate_client_aborts_total`.
//!
//! The same guard writes the access line when it ends, inside the request's span (so with its
//! id): only then are the bytes sent and the whole duration known.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use prometheus::{Histogram, IntCounter};
use tracing::Span;

use crate::body::{BoxError, ResponseBody};
use crate::handler::{CACHE_HEADER, UPSTREAM_HEADER};
use crate::metrics::Metrics;

/// The bounded route labels: never a project or file name.
const ROUTES: [&str; 8] =
    ["simple_root", "simple_project", "files", "metrics", "health", "admin", "upload", "other"];

fn route_of(path: &str) -> usize {
    match path {
        "/simple/" => 0,
        "/metrics" => 3,
        "/healthz" | "/readyz" => 4,
        _ if path.starts_with("/simple/") => 1,
        _ if path.starts_with("/files/") => 2,
        _ if path.starts_with("/admin/") => 5,
        _ if path.starts_with("/upload/") => 6,
        _ => 7,
    }
}

/// One route's metric handles, resolved once: a request then costs no label lookup unless its
/// status is not 200.
#[derive(Debug)]
struct RouteMetrics {
    route: &'static str,
    ok: IntCounter,
    seconds: Histogram,
    bytes: IntCounter,
}

#[derive(Debug)]
struct Table {
    metrics: Arc<Metrics>,
    routes: Vec<RouteMetrics>,
}

#[derive(Debug, Clone)]
pub struct MetricsLayer {
    table: Arc<Table>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let routes = ROUTES
            .iter()
            .map(|&route| RouteMetrics {
                route,
                ok: metrics.requests.with_label_values(&[route, "200"]),
                seconds: metrics.request_seconds.with_label_values(&[route]),
                bytes: metrics.bytes_served.with_label_values(&[route]),
            })
            .collect();
        MetricsLayer { table: Arc::new(Table { metrics, routes }) }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner, table: self.table.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    table: Arc<Table>,
}

impl<S, B> tower::Service<Request<B>> for Metered<S>
where
    S: tower::Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut guard = InFlight::start(self.table.clone(), route_of(request.uri().path()));
        // The trace layer above calls this inside the request's span.
        let span = Span::current();
        if !span.is_disabled() {
            guard.access = Some(Box::new(Access { span, status: 0, upstream: None, cache: None }));
        }
        Counted { inner: self.inner.call(request), guard: Some(guard) }
    }
}

pin_project! {
    /// Counts the answer when it is ready, and hands the guard on to its body.
    pub struct Counted<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take().expect("polled after it was ready");
        guard.answered(response.status());
        guard.headers(&response);
        // An empty body (HEAD, 304) is over before it starts.
        guard.finished = response.body().is_end_stream();
        guard.promised = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| response.body().size_hint().exact());
        Poll::Ready(Ok(response.map(|body| MeteredBody { body, guard }.boxed_unsync())))
    }
}

/// What the access line says beyond the guard's own fields; kept only when the line will be
/// written (info level).
#[derive(Debug)]
struct Access {
    span: Span,
    status: u16,
    upstream: Option<HeaderValue>,
    cache: Option<HeaderValue>,
}

/// One request in flight: counted in on creation, counted out when dropped.
#[derive(Debug)]
pub struct InFlight {
    table: Arc<Table>,
    route: usize,
    started: Instant,
    answered: bool,
    /// The body ended (or was empty): a drop after this is no abort.
    finished: bool,
    bytes: u64,
    /// The length the headers promised: hyper stops polling a body once it has sent that many
    /// bytes, so reaching it counts as the end.
    promised: Option<u64>,
    access: Option<Box<Access>>,
}

impl InFlight {
    fn start(table: Arc<Table>, route: usize) -> Self {
        table.metrics.in_flight.inc();
        InFlight {
            table,
            route,
            started: Instant::now(),
            answered: false,
            finished: false,
            bytes: 0,
            promised: None,
            access: None,
        }
    }

    /// Notes what the access line needs from the answer's headers.
    fn headers(&mut self, response: &Response<ResponseBody>) {
        if let Some(access) = self.access.as_mut() {
            access.status = response.status().as_u16();
            access.upstream = response.headers().get(UPSTREAM_HEADER).cloned();
            access.cache = response.headers().get(CACHE_HEADER).cloned();
        }
    }

    fn handles(&self) -> &RouteMetrics {
        &self.table.routes[self.route]
    }

    /// The headers are ready: count the request by status, with its latency.
    fn answered(&mut self, status: StatusCode) {
        self.answered = true;
        if status == StatusCode::OK {
            self.handles().ok.inc();
        } else {
            self.count(status.as_str());
        }
        self.handles().seconds.observe(self.started.elapsed().as_secs_f64());
    }

    fn count(&self, status: &str) {
        self.table.metrics.requests.with_label_values(&[self.handles().route, status]).inc();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.count("499");
            self.handles().seconds.observe(self.started.elapsed().as_secs_f64());
        }
        let aborted = self.answered && !self.finished;
        if aborted {
            self.table.metrics.client_aborts.with_label_values(&[self.handles().route]).inc();
        }
        self.table.metrics.in_flight.dec();
        if let Some(access) = self.access.take() {
            let text =
                |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            let _entered = access.span.enter();
            tracing::info!(
                route = self.handles().route,
                status = if self.answered { access.status } else { 499 },
                ms = self.started.elapsed().as_millis() as u64,
                bytes = self.bytes,
                cache = text(&access.cache),
                upstream = text(&access.upstream),
                aborted,
                "request"
            );
        }
    }
}

/// A response body that counts the bytes it sends and holds the request's in-flight guard
/// until it is finished or dropped.
struct MeteredBody {
    body: ResponseBody,
    guard: InFlight,
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    self.guard.bytes += len;
                    self.guard.handles().bytes.inc_by(len);
                }
                if self.body.is_end_stream() || self.guard.promised.is_some_and(|len| self.guard.bytes >= len)
                {
                    self.guard.finished = true;
                }
            }
            Poll::Ready(None) => self.guard.finished = true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_label(path: &str) -> &'static str {
        ROUTES[route_of(path)]
    }

    #[test]
    fn route_labels_are_bounded() {
        for (path, label) in [
            ("/simple/", "simple_root"),
            ("/simple/acme-core/", "simple_project"),
            ("/files/acme-core/acme_core-1.0.tar.gz", "files"),
            ("/metrics", "metrics"),
            ("/readyz", "health"),
            ("/admin/shadowed", "admin"),
            ("/upload/corp/", "upload"),
            ("/favicon.ico", "other"),
        ] {
            assert_eq!(route_label(path), label, "{path}");
        }
    }
}
