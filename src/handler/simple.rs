//! `/simple/` and `/simple/{project}/`: pages rendered from the owner's parsed page.

use http::{HeaderValue, Request, Response, StatusCode, header};

use super::{UPSTREAM_HEADER, decode_segment, redirect};
use crate::app::App;
use crate::body::{ResponseBody, full};
use crate::error::ServeError;
use crate::pypi::rewrite::client_page;
use crate::pypi::simple::{
    ProjectList, render_project_html, render_project_json, render_root_html, render_root_json,
};
use crate::pypi::{MediaType, ProjectName, negotiate};

/// The media type a request asks for, by `format` parameter or `Accept` header.
fn media_type<B>(request: &Request<B>) -> Result<MediaType, ServeError> {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| pair.strip_prefix("format=")).and_then(decode_segment)
    });
    Ok(negotiate(accept, format.as_deref())?)
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
    let owned = app.resolver.resolve(&name).await?.ok_or(ServeError::ProjectNotFound(name.clone()))?;
    let page = client_page(&owned.page, &name);
    let body = if media_type.is_json() {
        render_project_json(&page)
    } else {
        render_project_html(&page).into_bytes()
    };
    let mut response = page_response(media_type, body);
    if let Ok(value) = HeaderValue::from_str(owned.upstream.name()) {
        response.headers_mut().insert(UPSTREAM_HEADER, value);
    }
    Ok(response)
}

/// The root page: the union of every upstream's projects, first spelling wins. A failing
/// upstream fails the page, so the list is never silently partial.
pub async fn root<B>(app: &App, request: &Request<B>) -> Result<Response<ResponseBody>, ServeError> {
    let media_type = media_type(request)?;
    let mut seen = std::collections::HashSet::new();
    let mut list = ProjectList::default();
    for upstream in app.resolver.upstreams() {
        let names = upstream.fetch_root().await.map_err(|e| ServeError::upstream(upstream.name(), e))?;
        for name in names.names {
            if let Ok(normalized) = ProjectName::new(&name) {
                if seen.insert(normalized) {
                    list.names.push(name);
                }
            }
        }
    }
    let body =
        if media_type.is_json() { render_root_json(&list) } else { render_root_html(&list).into_bytes() };
    Ok(page_response(media_type, body))
}

fn page_response(media_type: MediaType, body: Vec<u8>) -> Response<ResponseBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type.content_type())
        .header(header::VARY, "Accept")
        .body(full(body))
        .expect("static headers are valid")
}
