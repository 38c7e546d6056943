//! Client identity: who sent the request, recorded in its extensions as a
//! [`Client`](crate::identity::Client) for the router and the index, or a refusal (401, 403,
//! 429) before any handler runs.
//!
//! Only in the stack when `[access]` is configured. The health endpoints stay open (a kubelet
//! presents nothing), `/admin/…` has its own token, and everything else needs a client that
//! [`Access`] admits; `/metrics` needs a credential even where anonymous clients may read.
//! A token or a remembered password is decided in the first poll, without an allocation of
//! this layer; bcrypt and JWKS fetches run in a boxed future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;

use crate::error::ServeError;
use crate::identity::{Access, Attempt, Client, ClientAddr, Refusal};

#[derive(Debug, Clone)]
pub struct IdentityLayer {
    access: Arc<Access>,
}

impl IdentityLayer {
    pub fn new(access: Arc<Access>) -> Self {
        IdentityLayer { access }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = Identify<S>;
    fn layer(&self, inner: S) -> Identify<S> {
        Identify { inner, access: self.access.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Identify<S> {
    inner: S,
    access: Arc<Access>,
}

/// Paths answered without a client identity.
fn is_open(path: &str) -> bool {
    path == "/healthz" || path == "/readyz" || path.starts_with("/admin/")
}

impl<S, B> tower::Service<Request<B>> for Identify<S>
where
    S: tower::Service<Request<B>, Error = ServeError> + Clone,
{
    type Response = S::Response;
    type Error = ServeError;
    type Future = Identified<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if is_open(path) {
            return Identified::Inner { inner: self.inner.call(request) };
        }
        let needs_identity = path == "/metrics";
        let peer = request.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        match self.access.authenticate(request.headers(), peer, needs_identity) {
            Attempt::Done(Ok(client)) => {
                request.extensions_mut().insert(client);
                Identified::Inner { inner: self.inner.call(request) }
            }
            Attempt::Done(Err(refusal)) => Identified::Refused { refusal: Some(refusal) },
            Attempt::Pending(check) => {
                // The ready service goes with the request; a fresh clone stays here.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Identified::Checking { check, request: Some(request), service: inner }
            }
        }
    }
}

pin_project! {
    /// The inner answer once the client is known, or the refusal.
    #[project = IdentifiedProjection]
    pub enum Identified<S: tower::Service<Request<B>>, B> {
        Inner { #[pin] inner: S::Future },
        Refused { refusal: Option<Refusal> },
        Checking {
            check: Pin<Box<dyn Future<Output = Result<Client, Refusal>> + Send>>,
            request: Option<Request<B>>,
            service: S,
        },
    }
}

impl<S, B> Future for Identified<S, B>
where
    S: tower::Service<Request<B>, Error = ServeError>,
{
    type Output = Result<S::Response, ServeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                IdentifiedProjection::Inner { inner } => return inner.poll(cx),
                IdentifiedProjection::Refused { refusal } => {
                    let refusal = refusal.take().expect("polled after completion");
                    return Poll::Ready(Err(ServeError::Access(refusal)));
                }
                IdentifiedProjection::Checking { check, request, service } => {
                    match ready!(check.as_mut().poll(cx)) {
                        Ok(client) => {
                            let mut request = request.take().expect("polled after completion");
                            request.extensions_mut().insert(client);
                            Identified::Inner { inner: service.call(request) }
                        }
                        Err(refusal) => Identified::Refused { refusal: Some(refusal) },
                    }
                }
            };
            self.set(next);
        }
    }
}
