//! Routing: which handler answers which path.
//!
//! | path                            | answer                                          |
//! |---------------------------------|-------------------------------------------------|
//! | `/simple/`                      | the root page: every upstream's projects        |
//! | `/simple/{project}/`            | the owner's project page, HTML or JSON          |
//! | `/files/{project}/{filename}`   | a file listed on the owner's page (I8)          |
//! | `/healthz`, `/readyz`           | liveness and readiness                          |
//! | `/metrics`                      | Prometheus metrics                              |
//! | `/admin/…`                      | operator endpoints, behind the admin token      |
//! | `POST /upload/[{upstream}/]`    | an upload, forwarded with pipgate's credential  |
//!
//! Nothing else is served: no route fetches a URL that a client supplies. Handlers return
//! `Result<_, ServeError>`; the rescue layer (see [`crate::app`]) turns errors into answers.

mod admin;
mod conditional;
mod files;
mod simple;
mod upload;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Method, Request, Response, StatusCode, header};

use crate::body::{ResponseBody, full};
use crate::error::ServeError;
use crate::identity::{Client, Refusal};
use crate::state::State;

/// Names the upstream that owns what a response carries, for people debugging resolution.
pub const UPSTREAM_HEADER: &str = "x-pipgate-upstream";
/// Says how the cache answered: `hit`, `miss`, `stale`, `revalidated` or `bypass`.
pub const CACHE_HEADER: &str = "x-pipgate-cache";
/// Marks answers served past their freshness (stale-while-revalidate or stale-on-error).
pub const STALE_HEADER: &str = "x-pipgate-stale";
/// W3C Server Timing, on a page answer that waited for its page to be made.
pub const SERVER_TIMING_HEADER: &str = "server-timing";

/// Which paths one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything on one port (no `server.admin_listen`).
    All,
    /// The index port beside an admin listener: the simple API, files and health; `/metrics`
    /// and `/admin/…` answer 404 here.
    Index,
    /// The admin listener: `/metrics`, `/admin/…` and health; everything else answers 404.
    Admin,
}

impl Surface {
    fn serves_index(self) -> bool {
        self != Surface::Admin
    }

    fn serves_admin(self) -> bool {
        self != Surface::Index
    }
}

/// The innermost service: routes a request to its handler.
#[derive(Debug, Clone)]
pub struct Router {
    state: Arc<State>,
    surface: Surface,
    max_url_bytes: usize,
}

impl Router {
    pub fn new(state: Arc<State>, surface: Surface, max_url_bytes: usize) -> Self {
        Router { state, surface, max_url_bytes }
    }
}

impl<B> tower::Service<Request<B>> for Router
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<crate::body::BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = ServeError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ServeError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let state = self.state.clone();
        let surface = self.surface;
        // Only uploads read the body; no read route takes one.
        let (request, body) = request.into_parts();
        let url_bytes = request.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if url_bytes > self.max_url_bytes {
            return Box::pin(std::future::ready(Err(ServeError::UriTooLong(self.max_url_bytes))));
        }
        if let Some(method) = body_on_read(&request) {
            return Box::pin(std::future::ready(Err(ServeError::UnexpectedBody(method))));
        }
        Box::pin(async move {
            if let Some(rest) = request.uri.path().strip_prefix("/upload/") {
                if !surface.serves_index() {
                    return Err(ServeError::NotFound);
                }
                if request.method != Method::POST {
                    return Err(ServeError::MethodNotAllowed("POST"));
                }
                let target = match rest.strip_suffix('/').unwrap_or(rest) {
                    "" => None,
                    name if !name.contains('/') => Some(name.to_owned()),
                    _ => return Err(ServeError::NotFound),
                };
                let client = client(&state, &request)?;
                return upload::upload(&state, &request, body, client, target.as_deref()).await;
            }
            route(&state, surface, &request).await
        })
    }
}

/// A GET or HEAD that comes with body framing (`Transfer-Encoding`, or a `Content-Length`
/// other than 0). No read route takes a body, and such a request is how a smuggled second
/// request would hide (with both headers, hyper keeps only `Transfer-Encoding`, RFC 9112
/// §6.3), so it is refused outright; hyper closes the connection after the answer.
fn body_on_read(request: &Parts) -> Option<&'static str> {
    let method = match request.method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => return None,
    };
    let chunked = request.headers.contains_key(header::TRANSFER_ENCODING);
    let sized = request.headers.get_all(header::CONTENT_LENGTH).iter().any(|v| v.as_bytes() != b"0");
    (chunked || sized).then_some(method)
}

/// The client the identity layer recorded; everyone when client authentication is off. With it
/// on, a request without a recorded client is refused (the stack is wrong, and refusing is the
/// safe way to be wrong).
fn client<'a>(state: &State, request: &'a Parts) -> Result<&'a Client, ServeError> {
    static EVERYONE: Client = Client::EVERYONE;
    if state.access.is_none() {
        return Ok(&EVERYONE);
    }
    request.extensions.get::<Client>().ok_or(ServeError::Access(Refusal::Missing))
}

async fn route(
    state: &State,
    surface: Surface,
    request: &Parts,
) -> Result<Response<ResponseBody>, ServeError> {
    let path = request.uri.path();
    if let Some(rest) = path.strip_prefix("/admin/") {
        return if surface.serves_admin() {
            admin::route(state, request, rest).await
        } else {
            Err(ServeError::NotFound)
        };
    }
    if request.method != Method::GET && request.method != Method::HEAD {
        return Err(ServeError::MethodNotAllowed("GET or HEAD"));
    }
    match path {
        // Liveness never depends on an upstream or on Azure.
        "/healthz" => return Ok(text(StatusCode::OK, "ok\n".into())),
        "/readyz" => return Ok(readiness(state)),
        "/metrics" if surface.serves_admin() => {
            state.index.record_gauges();
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(full(state.metrics.render()))
                .expect("static headers are valid"));
        }
        _ if !surface.serves_index() => return Err(ServeError::NotFound),
        "/simple" => return Ok(redirect("simple/", request.uri.query())),
        "/simple/" => return simple::root(state, request, client(state, request)?).await,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/simple/") {
        let (segment, slash) = match rest.strip_suffix('/') {
            Some(segment) => (segment, true),
            None => (rest, false),
        };
        if segment.contains('/') {
            return Err(ServeError::NotFound);
        }
        return simple::project(state, request, client(state, request)?, segment, slash).await;
    }
    if let Some(rest) = path.strip_prefix("/files/") {
        let Some((project, filename)) = rest.split_once('/') else {
            return Err(ServeError::NotFound);
        };
        if filename.contains('/') {
            return Err(ServeError::NotFound);
        }
        let client = client(state, request)?;
        return files::file(state, &request.method, &request.headers, client, project, filename).await;
    }
    Err(ServeError::NotFound)
}

/// Ready when every authenticated upstream holds a credential it can use (a first token).
/// An unhealthy feed does not make pipgate unready (it still serves everything else, and fails
/// closed for what that feed may own); it is listed in the answer.
fn readiness(state: &State) -> Response<ResponseBody> {
    let waiting = state.index.waiting_for_credentials();
    let mut body = if waiting.is_empty() {
        "ok\n".to_owned()
    } else {
        format!("not ready: no token yet for upstream {}\n", waiting.join(", "))
    };
    for (upstream, reason, since) in state.index.unhealthy() {
        let since = humantime::format_rfc3339_seconds(since);
        body.push_str(&format!(
            "upstream {upstream:?} is unhealthy since {since}: its index root {reason}\n"
        ));
    }
    let status = if waiting.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    text(status, body)
}

/// Percent-decodes one path segment; bytes that are not UTF-8 make it invalid.
fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned())
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static headers are valid")
}

/// A permanent redirect to a location relative to the request path, keeping the query.
fn redirect(location: &str, query: Option<&str>) -> Response<ResponseBody> {
    let location = match query {
        Some(q) => format!("{location}?{q}"),
        None => location.to_owned(),
    };
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, location)
        .body(crate::body::empty())
        .expect("a location built from a normalized name is a valid header")
}
