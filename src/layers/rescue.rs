//! The error rescue: the one place where an error becomes an HTTP answer.
//!
//! Everything below it (the timeout, the concurrency limit, the router and its handlers)
//! returns `Result<_, ServeError>`; this layer hands the error to [`ServeError::into_response`],
//! the single table from errors to statuses and short, redacted messages. Everything above it
//! sees only answers, so metrics and the access log count every error with its real status.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};

use super::BoxFuture;
use crate::body::ResponseBody;
use crate::error::ServeError;

#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl<S> tower::Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for Rescue<S>
where
    S: tower::Service<Request<B>, Response = Response<ResponseBody>, Error = ServeError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<Response<ResponseBody>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The services below are always ready (the concurrency limit waits inside `call`);
        // should one ever refuse, it is answered per request, in `call`.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move { Ok(answer.await.unwrap_or_else(ServeError::into_response)) })
    }
}
