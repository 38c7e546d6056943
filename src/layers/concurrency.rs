//! A bound on the requests being worked on at once (`server.max_concurrent_requests`, I6).
//!
//! Requests past the limit wait for a slot instead of opening ever more upstream connections
//! and buffers. The wait happens inside `call` (not in `poll_ready`, as tower's own limit
//! does), so the timeout layer above counts it. A slot is held until the response headers are
//! ready; streaming a body needs no slot, since bodies are bounded by their own buffers. With a
//! slot free, the request goes straight through without an allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    type Future = Slotted<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // A free slot (the usual case): call straight through.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Slotted::Running { inner: self.inner.call(request), _slot: slot };
        }
        // Past the limit: wait for a slot inside the future, with the service that was made
        // ready, leaving a clone behind (tower's pattern for services used across an await).
        let slots = self.slots.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Slotted::Waiting {
            wait: Box::pin(async move {
                let _slot = slots.acquire_owned().await.expect("the semaphore is never closed");
                inner.call(request).await
            }),
        }
    }
}

pin_project! {
    /// The inner answer, produced while holding a slot.
    #[project = SlottedProjection]
    pub enum Slotted<F, T, E> {
        Running { #[pin] inner: F, _slot: OwnedSemaphorePermit },
        Waiting { wait: Pin<Box<dyn Future<Output = Result<T, E>> + Send>> },
    }
}

impl<F, T, E> Future for Slotted<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SlottedProjection::Running { inner, .. } => inner.poll(cx),
            SlottedProjection::Waiting { wait } => wait.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;
    use tower::{Layer, Service};

    use super::*;

    #[tokio::test]
    async fn a_request_past_the_limit_waits_for_a_slot_inside_call() {
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (s, r) = (started.clone(), release.clone());
        let inner = tower::service_fn(move |_: Request<()>| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.notified().await;
                Ok::<_, std::convert::Infallible>(())
            }
        });
        let mut limited = ConcurrencyLimitLayer::new(1).layer(inner);
        let first = tokio::spawn(limited.call(Request::new(())));
        let second = tokio::spawn(limited.call(Request::new(())));
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 1, "the second request waits for the slot");
        release.notify_one();
        first.await.unwrap().unwrap();
        // The slot is free again: the second request runs.
        for _ in 0..1000 {
            if started.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 2);
        release.notify_one();
        second.await.unwrap().unwrap();
    }
}
