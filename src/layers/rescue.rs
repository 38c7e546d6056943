//! The error rescue: the one place where an error becomes an HTTP answer.
//!
//! Everything below it (the timeout, the concurrency limit, the router and its handlers)
//! returns `Result<_, ServeError>`; this layer hands the error to [`ServeError::into_response`],
//! the single table from errors to statuses and short, redacted messages. Everything above it
//! sees only answers, so metrics and the access log count every error with its real status.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;

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
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Rescued<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The services below are always ready (the concurrency limit waits inside `call`).
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Rescued { inner: self.inner.call(request) }
    }
}

pin_project! {
    /// The answer, or the error table's answer for the error.
    pub struct Rescued<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Future for Rescued<F>
where
    F: Future<Output = Result<Response<ResponseBody>, ServeError>>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = ready!(self.project().inner.poll(cx));
        Poll::Ready(Ok(answer.unwrap_or_else(ServeError::into_response)))
    }
}
