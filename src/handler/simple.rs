//! `/simple/` and `/simple/{project}/`: ready bytes from the page cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

use super::conditional::{accepts_gzip, not_modified};
use super::{UPSTREAM_HEADER, decode_segment, redirect};
use crate::app::App;
use crate::body::{ResponseBody, empty, full};
use crate::cache::rendered::{Rendered, Variant};
use crate::error::ServeError;
use crate::pypi::simple::{ProjectList, render_root_html, render_root_json};
use crate::pypi::{MediaType, ProjectName, negotiate};

/// Marks answers served past their freshness (stale-while-revalidate or stale-on-error).
pub const STALE_HEADER: &str = "x-pipgate-stale";

/// The media type a request asks for, by `format` parameter or `Accept` header.
fn media_type<B>(request: &Request<B>) -> Result<MediaType, ServeError> {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| pair.strip_prefix("format=")).and_then(decode_segment)
    });
    Ok(negotiate(accept, format.as_deref())?)
}

/// Whether the client asks to revalidate (`Cache-Control: max-age=0` or `no-cache`, which pip
/// sends on every index request).
fn client_forces_revalidation(headers: &HeaderMap) -> bool {
    let directives =
        headers.get_all(header::CACHE_CONTROL).iter().chain(headers.get_all(header::PRAGMA).iter());
    directives.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "no-cache" || d == "max-age=0"
    })
}

pub async fn project<B>(
    app: &App,
    request: &Request<B>,
    segment: &str,
    has_slash: bool,
) -> Result<Response<ResponseBody>, ServeError> {
    let raw = decode_segment(segment).ok_or(ServeError::BadName(crate::pypi::InvalidName::BadCharacter))?;
    let name = ProjectName::new(&raw)?;
    if name.as_str() != segment || !has_slash {
        // Send the client to the one canonical URL, so caches and logs see one spelling.
        let location = if has_slash { format!("../{name}/") } else { format!("{name}/") };
        return Ok(redirect(&location, request.uri().query()));
    }
    let media_type = media_type(request)?;
    let forces = client_forces_revalidation(request.headers());
    let served = app.pages.get(&name, forces).await?.ok_or(ServeError::ProjectNotFound(name.clone()))?;
    let owner = app.pages.resolver().upstream(served.project.owner).name();
    let gzip = accepts_gzip(request.headers());
    let variant = served.project.rendered.variant(media_type, gzip);
    let mut response =
        page_response(request.headers(), media_type, gzip, variant, served.stale, &app.fresh_cache_control);
    if let Ok(value) = HeaderValue::from_str(owner) {
        response.headers_mut().insert(UPSTREAM_HEADER, value);
    }
    Ok(response)
}

/// A page answer: 200 with the variant's bytes, or 304 when the client holds them already.
fn page_response(
    request: &HeaderMap,
    media_type: MediaType,
    gzip: bool,
    variant: &Variant,
    stale: bool,
    fresh_cache_control: &HeaderValue,
) -> Response<ResponseBody> {
    let unchanged = not_modified(request, &variant.etag);
    let mut builder = Response::builder()
        .status(if unchanged { StatusCode::NOT_MODIFIED } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, media_type.content_type())
        .header(header::VARY, "Accept, Accept-Encoding")
        .header(header::ETAG, variant.etag.clone());
    if gzip {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
    }
    builder = if stale {
        builder
            .header(header::CACHE_CONTROL, "max-age=0, must-revalidate")
            .header(header::WARNING, "110 pipgate \"Response is Stale\"")
            .header(STALE_HEADER, "true")
    } else {
        builder.header(header::CACHE_CONTROL, fresh_cache_control.clone())
    };
    let body = if unchanged { empty() } else { full(variant.body.clone()) };
    builder.body(body).expect("valid headers")
}

/// The root page, rendered and kept for `index_ttl`. It lists every upstream's projects; a
/// failing upstream fails the page, so the list is never silently partial.
#[derive(Debug)]
pub struct RootCache {
    ttl: Duration,
    cached: Mutex<Option<(Instant, Arc<Rendered>)>>,
}

impl RootCache {
    pub fn new(ttl: Duration) -> Self {
        RootCache { ttl, cached: Mutex::new(None) }
    }
}

pub async fn root<B>(app: &App, request: &Request<B>) -> Result<Response<ResponseBody>, ServeError> {
    let media_type = media_type(request)?;
    let cached = app.root.cached.lock().expect("root lock").clone();
    let rendered = match cached.filter(|(at, _)| at.elapsed() < app.root.ttl) {
        Some((_, rendered)) => rendered,
        None => {
            let rendered = Arc::new(render_root(app).await?);
            *app.root.cached.lock().expect("root lock") = Some((Instant::now(), rendered.clone()));
            rendered
        }
    };
    let gzip = accepts_gzip(request.headers());
    let variant = rendered.variant(media_type, gzip);
    Ok(page_response(request.headers(), media_type, gzip, variant, false, &app.fresh_cache_control))
}

async fn render_root(app: &App) -> Result<Rendered, ServeError> {
    let mut seen = std::collections::HashSet::new();
    let mut list = ProjectList::default();
    for upstream in app.pages.resolver().upstreams() {
        let names = upstream.fetch_root().await.map_err(|e| ServeError::upstream(upstream.name(), e))?;
        for name in names.names {
            if let Ok(normalized) = ProjectName::new(&name) {
                if seen.insert(normalized) {
                    list.names.push(name);
                }
            }
        }
    }
    Ok(tokio::task::spawn_blocking(move || {
        Rendered::new(render_root_json(&list), render_root_html(&list).into_bytes())
    })
    .await
    .expect("rendering does not panic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_and_no_cache_force_revalidation() {
        let mut headers = HeaderMap::new();
        assert!(!client_forces_revalidation(&headers));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
        assert!(client_forces_revalidation(&headers));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, No-Cache"));
        assert!(client_forces_revalidation(&headers));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
        assert!(!client_forces_revalidation(&headers));
    }
}
