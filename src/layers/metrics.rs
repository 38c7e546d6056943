//! Request metrics: counts by route and status, latency to the response headers, bytes sent,
//! and the in-flight gauge.
//!
//! It sits under the trace layer and above the rescue, so it counts every answer with its real
//! status, errors included. Counting rides on a guard, not on the happy path: a request is in
//! flight until its body has been sent *or dropped*, so a client that hangs up mid-download, or
//! before the headers, still ends its in-flight count. A request dropped before its headers is
//! counted with status `499` (nginx's "client closed request") and its time so far.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::BoxFuture;
use crate::body::{BoxError, ResponseBody};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<Request<B>> for Metered<S>
where
    S: tower::Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<Response<ResponseBody>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut guard = InFlight::start(self.metrics.clone(), route_label(request.uri().path()));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Ok(response) = answer.await;
            guard.answered(response.status());
            Ok(response.map(|body| MeteredBody { body, guard }.boxed_unsync()))
        })
    }
}

/// A bounded route label: never the project or file name.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/simple/" => "simple_root",
        "/metrics" => "metrics",
        "/healthz" | "/readyz" => "health",
        _ if path.starts_with("/simple/") => "simple_project",
        _ if path.starts_with("/files/") => "files",
        _ => "other",
    }
}

/// One request in flight: counted in on creation, counted out when dropped.
struct InFlight {
    metrics: Arc<Metrics>,
    route: &'static str,
    started: Instant,
    answered: bool,
}

impl InFlight {
    fn start(metrics: Arc<Metrics>, route: &'static str) -> Self {
        metrics.in_flight.inc();
        InFlight { metrics, route, started: Instant::now(), answered: false }
    }

    /// The headers are ready: count the request by status, with its latency.
    fn answered(&mut self, status: StatusCode) {
        self.answered = true;
        self.record(status.as_str());
    }

    fn record(&self, status: &str) {
        self.metrics.requests.with_label_values(&[self.route, status]).inc();
        self.metrics
            .request_seconds
            .with_label_values(&[self.route])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.record("499");
        }
        self.metrics.in_flight.dec();
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
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let guard = &self.guard;
                guard.metrics.bytes_served.with_label_values(&[guard.route]).inc_by(data.len() as u64);
            }
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
