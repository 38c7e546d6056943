//! `/files/{project}/{filename}`: a file the owner's page lists, streamed from the owner.
//!
//! The project in the path goes through the owner rule again, so a file can only come from
//! the upstream that owns the project: a public file cannot be fetched under a private name.
//! `{filename}.metadata` serves a PEP 658 metadata file when the page offers one.

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::{UPSTREAM_HEADER, decode_segment};
use crate::app::App;
use crate::body::{ResponseBody, empty};
use crate::error::ServeError;
use crate::pypi::ProjectName;
use crate::pypi::simple::{CoreMetadata, DistFile};
use crate::upstream::Expected;

pub async fn file(
    app: &App,
    method: &Method,
    project_segment: &str,
    filename_segment: &str,
) -> Result<Response<ResponseBody>, ServeError> {
    let project = ProjectName::new(&decode_segment(project_segment).ok_or(ServeError::NotFound)?)?;
    if project.as_str() != project_segment {
        return Err(ServeError::NotFound);
    }
    let filename = decode_segment(filename_segment).ok_or(ServeError::NotFound)?;
    let owned = app.resolver.resolve(&project).await?.ok_or(ServeError::ProjectNotFound(project.clone()))?;
    let upstream_name = owned.upstream.name().to_owned();
    let (url, expected) =
        locate(owned.page.file(&filename), &filename, &owned.page.files).ok_or_else(|| {
            ServeError::FileNotListed {
                project: project.clone(),
                filename: filename.clone(),
                upstream: upstream_name.clone(),
            }
        })?;

    let builder = Response::builder()
        .header(
            UPSTREAM_HEADER,
            HeaderValue::from_str(&upstream_name).expect("upstream names are header-safe"),
        )
        .header(header::ACCEPT_RANGES, "none");
    if method == Method::HEAD {
        // Answered from the index alone: Azure feeds refuse HEAD, and a HEAD must not cost a
        // download.
        let mut builder =
            builder.status(StatusCode::OK).header(header::CONTENT_TYPE, guess_content_type(&filename));
        if let Some(size) = expected.size {
            builder = builder.header(header::CONTENT_LENGTH, size);
        }
        return Ok(builder.body(empty()).expect("valid headers"));
    }

    let upstream_response = owned
        .upstream
        .fetch_file(&url, expected)
        .await
        .map_err(|e| ServeError::upstream(&upstream_name, e))?;
    let content_type = upstream_response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(guess_content_type(&filename)));
    let body = upstream_response.into_body().map_err(Into::into).boxed_unsync();
    Ok(builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("valid headers"))
}

/// The upstream URL and expectations for `filename`: the file itself, or the PEP 658
/// metadata of a listed file that offers it.
fn locate(direct: Option<&DistFile>, filename: &str, files: &[DistFile]) -> Option<(String, Expected)> {
    if let Some(file) = direct {
        return Some((
            file.url.clone(),
            Expected::new(file.hashes.get("sha256").map(String::as_str), file.size),
        ));
    }
    let stem = filename.strip_suffix(".metadata")?;
    let file = files.iter().find(|f| f.filename == stem && f.has_metadata())?;
    let mut url = url::Url::parse(&file.url).ok()?;
    url.set_path(&format!("{}.metadata", url.path()));
    let sha256 = match &file.core_metadata {
        Some(CoreMetadata::Hashes(hashes)) => hashes.get("sha256").map(String::as_str),
        _ => None,
    };
    Some((url.into(), Expected::new(sha256, None)))
}

fn guess_content_type(filename: &str) -> &'static str {
    if filename.ends_with(".metadata") {
        "text/plain; charset=utf-8"
    } else if filename.ends_with(".tar.gz") || filename.ends_with(".tgz") {
        "application/gzip"
    } else if filename.ends_with(".whl") || filename.ends_with(".zip") || filename.ends_with(".egg") {
        "application/zip"
    } else {
        "application/octet-stream"
    }
}
