//! Routing: which handler answers which path.
//!
//! | path                            | answer                                          |
//! |---------------------------------|-------------------------------------------------|
//! | `/simple/`                      | the root page: every upstream's projects        |
//! | `/simple/{project}/`            | the owner's project page, HTML or JSON          |
//! | `/files/{project}/{filename}`   | a file listed on the owner's page (I8)          |
//! | `/healthz`, `/readyz`           | liveness and readiness                          |
//! | `/metrics`                      | Prometheus metrics                              |
//!
//! Nothing else is served: no route fetches a URL that a client supplies.

mod conditional;
mod files;
pub mod simple;

use std::convert::Infallible;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode, header};

use crate::app::App;
use crate::body::{ResponseBody, full};
use crate::error::ServeError;

/// Answers one request. Errors become responses here, so the service never fails.
pub async fn handle<B>(app: &App, request: Request<B>) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    app.metrics.in_flight.inc();
    let response = route(app, &request).await.unwrap_or_else(ServeError::into_response);
    app.metrics.in_flight.dec();
    record(app, &path, &response, started);
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        upstream = response.headers().get(UPSTREAM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-"),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(response)
}

/// A bounded route label for metrics: never the project or file name.
fn route_label(path: &str) -> &'static str {
    match path {
        "/simple/" => "simple_root",
        "/metrics" => "metrics",
        "/healthz" | "/readyz" => "health",
        _ if path.starts_with("/simple/") => "simple_project",
        _ if path.starts_with("/files/") => "files",
        _ => "other",
    }
}

/// Counts an answer: by route and status, its latency to headers, and its length when known.
fn record(app: &App, path: &str, response: &Response<ResponseBody>, started: Instant) {
    let route = route_label(path);
    let metrics = &app.metrics;
    metrics.requests.with_label_values(&[route, response.status().as_str()]).inc();
    metrics.request_seconds.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(length) = declared.or_else(|| http_body::Body::size_hint(response.body()).exact()) {
        metrics.bytes_served.with_label_values(&[route]).inc_by(length);
    }
}

/// Names the upstream that owns what a response carries, for people debugging resolution.
pub const UPSTREAM_HEADER: &str = "x-pipgate-upstream";

async fn route<B>(app: &App, request: &Request<B>) -> Result<Response<ResponseBody>, ServeError> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Err(ServeError::MethodNotAllowed);
    }
    let path = request.uri().path();
    let query = request.uri().query();
    match path {
        // Liveness never depends on an upstream or on Azure.
        "/healthz" => return Ok(text(StatusCode::OK, "ok\n")),
        "/readyz" => return Ok(readiness(app)),
        "/metrics" => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(full(app.metrics.render()))
                .expect("static headers are valid"));
        }
        "/simple" => return Ok(redirect("simple/", query)),
        "/simple/" => return simple::root(app, request).await,
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
        return simple::project(app, request, segment, slash).await;
    }
    if let Some(rest) = path.strip_prefix("/files/") {
        let Some((project, filename)) = rest.split_once('/') else {
            return Err(ServeError::NotFound);
        };
        if filename.contains('/') {
            return Err(ServeError::NotFound);
        }
        return files::file(app, request.method(), request.headers(), project, filename).await;
    }
    Err(ServeError::NotFound)
}

/// Ready when every authenticated upstream holds a credential it can use (a first token).
fn readiness(app: &App) -> Response<ResponseBody> {
    let waiting: Vec<&str> =
        app.pages.resolver().upstreams().iter().filter(|u| !u.is_ready()).map(|u| u.name()).collect();
    if waiting.is_empty() {
        return text(StatusCode::OK, "ok\n");
    }
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("not ready: no token yet for upstream {}\n", waiting.join(", "))))
        .expect("static headers are valid")
}

/// Percent-decodes one path segment; bytes that are not UTF-8 make it invalid.
fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned())
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
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
