//! `/simple/` and `/simple/{project}/`: ready bytes from the page cache.

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::conditional::{accepts_gzip, not_modified};
use std::sync::Arc;

use super::{CACHE_HEADER, SERVER_TIMING_HEADER, STALE_HEADER, UPSTREAM_HEADER, decode_segment, redirect};
use crate::body::{ResponseBody, empty, full};
use crate::cache::rendered::{FirstForm, Rendered, Variant};
use crate::cache::{BuildTimes, CacheResult};
use crate::error::ServeError;
use crate::identity::Client;
use crate::pypi::{MediaType, ProjectName, negotiate};
use crate::state::State;

/// The media type a request asks for, by `format` parameter or `Accept` header.
fn media_type(request: &Parts) -> Result<MediaType, ServeError> {
    let accept = request.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = request.uri.query().and_then(|query| {
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

pub async fn project(
    state: &State,
    request: &Parts,
    client: &Client,
    segment: &str,
    has_slash: bool,
) -> Result<Response<ResponseBody>, ServeError> {
    let raw = decode_segment(segment).ok_or(ServeError::BadName(crate::pypi::InvalidName::BadCharacter))?;
    let name = ProjectName::new(&raw)?;
    if name.as_str() != segment || !has_slash {
        // Send the client to the one canonical URL, so caches and logs see one spelling.
        let location = if has_slash { format!("../{name}/") } else { format!("{name}/") };
        return Ok(redirect(&location, request.uri.query()));
    }
    let media_type = media_type(request)?;
    let forces = client_forces_revalidation(&request.headers);
    let gzip = accepts_gzip(&request.headers);
    let answer = state.index.page(&name, forces, client, FirstForm { media_type, gzip }).await?;
    // Timed only for an answer that reports it (a miss): a hit reads no clock here.
    let encoding = answer.built.is_some().then(std::time::Instant::now);
    let (variant, made) = variant(&answer.project.rendered, media_type, gzip).await;
    if made {
        state.index.reweigh(&name, &answer);
    }
    let mut response = page_response(
        &request.headers,
        media_type,
        gzip,
        &variant,
        answer.cache == CacheResult::Stale,
        &state.fresh_cache_control,
    );
    let headers = response.headers_mut();
    headers.insert(UPSTREAM_HEADER, answer.owner.name_header().clone());
    headers.insert(CACHE_HEADER, HeaderValue::from_static(answer.cache.as_str()));
    if let (Some(built), Some(encoding)) = (answer.built, encoding) {
        headers.insert(SERVER_TIMING_HEADER, server_timing(&built, encoding.elapsed()));
    }
    Ok(response)
}

/// The representation the client asked for, and whether it was made now: at once when it is
/// ready (a cache hit), else made on the blocking pool (the HTML rendered, or its first gzip,
/// take milliseconds for a large page and would hold a runtime thread).
async fn variant(rendered: &Arc<Rendered>, media_type: MediaType, gzip: bool) -> (Variant, bool) {
    if let Some(ready) = rendered.ready(media_type, gzip) {
        return (ready, false);
    }
    let making = rendered.clone();
    let variant = match tokio::task::spawn_blocking(move || making.variant(media_type, gzip)).await {
        Ok(variant) => variant,
        // The blocking pool is shutting down: make it here.
        Err(_) => rendered.variant(media_type, gzip),
    };
    (variant, true)
}

/// `Server-Timing` for an answer that waited for its page to be made (W3C Server Timing):
/// milliseconds asking the upstreams, parsing the owner's page, rendering the client JSON and
/// its first gzip, and making this answer's form if it was another (HTML, or plain).
fn server_timing(built: &BuildTimes, encode: std::time::Duration) -> HeaderValue {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let value = format!(
        "upstream;dur={:.2}, parse;dur={:.2}, render;dur={:.2}, gzip;dur={:.2}, encode;dur={:.2}",
        ms(built.upstream),
        ms(built.parse),
        ms(built.render),
        ms(built.gzip),
        ms(encode)
    );
    HeaderValue::from_str(&value).expect("digits and ASCII")
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
    // The hot path of a cache hit: static and ready header values only (no parsing, no
    // allocation per header), in a map sized for them and for what the layers above add.
    let unchanged = not_modified(request, &variant.etag);
    let body = if unchanged { empty() } else { full(variant.body.clone()) };
    let mut response = Response::new(body);
    if unchanged {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let headers = response.headers_mut();
    headers.reserve(10);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type.content_type()));
    headers.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    headers.insert(header::ETAG, variant.etag.clone());
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if stale {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0, must-revalidate"));
        headers.insert(header::WARNING, HeaderValue::from_static("110 pipgate \"Response is Stale\""));
        headers.insert(STALE_HEADER, HeaderValue::from_static("true"));
    } else {
        headers.insert(header::CACHE_CONTROL, fresh_cache_control.clone());
    }
    response
}

pub async fn root(
    state: &State,
    request: &Parts,
    client: &Client,
) -> Result<Response<ResponseBody>, ServeError> {
    let media_type = media_type(request)?;
    let (rendered, cache) = state.index.root(client).await?;
    let gzip = accepts_gzip(&request.headers);
    let (variant, _) = variant(&rendered, media_type, gzip).await;
    let mut response =
        page_response(&request.headers, media_type, gzip, &variant, false, &state.fresh_cache_control);
    response.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(cache));
    Ok(response)
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
