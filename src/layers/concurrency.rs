//! A bound on the requests being worked on at once (`server.max_concurrent_requests`, I6).
//!
//! Requests past the limit wait for a slot instead of opening ever more upstream connections
//! and buffers. The wait happens inside `call` (not in `poll_ready`, as tower's own limit
//! does), so the timeout layer above counts it. A slot is held until the response headers are
//! ready; streaming a body needs no slot, since bodies are bounded by their own buffers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::BoxFuture;

#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    slots: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    pub fn new(max: usize) -> Self {
        ConcurrencyLimitLayer { slots: Arc::new(Semaphore::new(max)) }
    }
}

impl<S> tower::Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;
    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, slots: self.slots.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S, B> tower::Service<Request<B>> for ConcurrencyLimit<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let slots = self.slots.clone();
        // Take the service that `call` was made ready for, leaving a clone behind (tower's
        // pattern for services used across an await).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let _slot = slots.acquire_owned().await.expect("the semaphore is never closed");
            inner.oneshot(request).await
        })
    }
}
