//! `/files/{project}/{filename}`: a file the owner's page lists, from the file cache or
//! streamed from the owner.
//!
//! The project in the path goes through the owner rule again (a page-cache hit), so a file can
//! only come from the upstream that owns the project: a public file cannot be fetched under a
//! private name. `{filename}.metadata` serves a PEP 658 metadata file when the page offers one.
//! Files whose index entry has a sha256 are cached and served with ranges and ETags; others
//! pass through, verified for length only.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};

use super::conditional::{RangeAsk, not_modified, range};
use super::{UPSTREAM_HEADER, decode_segment};
use crate::app::App;
use crate::body::{ResponseBody, empty};
use crate::cache::entry::CachedProject;
use crate::cache::files::{FileChunks, FillError, Lookup, Phase, file_chunks, is_sha256};
use crate::error::ServeError;
use crate::pypi::ProjectName;
use crate::pypi::simple::CoreMetadata;
use crate::resolve::ResolveError;
use crate::upstream::{Expected, Upstream};

/// Verified files never change under their name and hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A file to serve: where it comes from and what it must be.
struct Located {
    url: String,
    expected: Expected,
    /// Lowercase hex, when the index gives one: the cache key and the ETag.
    sha256: Option<String>,
}

pub async fn file(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    project_segment: &str,
    filename_segment: &str,
) -> Result<Response<ResponseBody>, ServeError> {
    let project = ProjectName::new(&decode_segment(project_segment).ok_or(ServeError::NotFound)?)?;
    if project.as_str() != project_segment {
        return Err(ServeError::NotFound);
    }
    let filename = decode_segment(filename_segment).ok_or(ServeError::NotFound)?;
    let served = app.pages.get(&project, false).await?.ok_or(ServeError::ProjectNotFound(project.clone()))?;
    let upstream = app.pages.resolver().upstream(served.project.owner).clone();
    let located = locate(&filename, &served.project).ok_or_else(|| ServeError::FileNotListed {
        project: project.clone(),
        filename: filename.clone(),
        upstream: upstream.name().to_owned(),
    })?;
    let base = Answer::new(&upstream, &filename, located.sha256.as_deref());

    let Some(sha256) = located.sha256.clone() else {
        return pass_through(base, method, &upstream, located).await;
    };
    if not_modified(headers, base.etag.as_ref().expect("set with a sha256")) {
        return Ok(base.finish(StatusCode::NOT_MODIFIED, None, None, empty()));
    }
    if method == Method::HEAD {
        // Answered from the index when it gives the size: no upstream request, and Azure feeds
        // refuse HEAD anyway. Without a size, the lookup below answers it.
        if let Some(size) = located.expected.size {
            return Ok(base.finish(StatusCode::OK, Some(size), None, empty()));
        }
    }
    let lookup = app.files.get_or_fill(&sha256, &upstream, &located.url, located.expected.clone());
    let result = match lookup {
        Lookup::Hit { .. } => "hit",
        Lookup::Filling(_) => "miss",
        Lookup::Unavailable => "bypass",
    };
    app.metrics.cache_lookups.with_label_values(&["file", result]).inc();
    match lookup {
        Lookup::Unavailable => pass_through(base, method, &upstream, located).await,
        Lookup::Hit { file, size } => {
            Ok(ranged(base, method, headers, size, |start, end| file_chunks(file.clone(), start, end, None)))
        }
        Lookup::Filling(fill) => {
            let mut state = fill.state.clone();
            let wants_range = headers.contains_key(header::RANGE);
            // A range needs the whole file (uv asks for the end of a wheel first): wait for it.
            // A full download streams as soon as the upstream answers.
            let ready = state
                .wait_for(|s| match s.phase {
                    Phase::Connecting => false,
                    Phase::Streaming => !wants_range,
                    Phase::Done | Phase::Failed(_) => true,
                })
                .await
                .map(|s| s.clone())
                .map_err(|_| {
                    download_error(&upstream, &filename, FillError::Stream("the fill stopped".into()))
                })?;
            match ready.phase {
                Phase::Failed(FillError::Upstream(error)) => {
                    Err(ServeError::Upstream(ResolveError { upstream: upstream.name().to_owned(), error }))
                }
                Phase::Failed(error) => Err(download_error(&upstream, &filename, error)),
                Phase::Done => {
                    let size = ready.written;
                    Ok(ranged(base, method, headers, size, |start, end| {
                        file_chunks(fill.file.clone(), start, end, None)
                    }))
                }
                Phase::Streaming | Phase::Connecting => {
                    let content_type = ready.content_type.clone();
                    let end = ready.total.unwrap_or(u64::MAX);
                    let body = if method == Method::HEAD {
                        empty()
                    } else {
                        stream_body(file_chunks(fill.file.clone(), 0, end, Some(fill.state.clone())))
                    };
                    Ok(base.finish(StatusCode::OK, ready.total, content_type, body))
                }
            }
        }
    }
}

/// The headers every file answer carries.
struct Answer {
    upstream: HeaderValue,
    content_type: HeaderValue,
    etag: Option<HeaderValue>,
}

impl Answer {
    fn new(upstream: &Upstream, filename: &str, sha256: Option<&str>) -> Answer {
        Answer {
            upstream: HeaderValue::from_str(upstream.name()).expect("upstream names are header-safe"),
            content_type: HeaderValue::from_static(guess_content_type(filename)),
            etag: sha256.map(|sha| HeaderValue::from_str(&format!("\"{sha}\"")).expect("hex is header-safe")),
        }
    }

    fn finish(
        self,
        status: StatusCode,
        length: Option<u64>,
        content_type: Option<HeaderValue>,
        body: ResponseBody,
    ) -> Response<ResponseBody> {
        let mut builder = Response::builder()
            .status(status)
            .header(UPSTREAM_HEADER, self.upstream)
            .header(header::CONTENT_TYPE, content_type.unwrap_or(self.content_type));
        if let Some(etag) = self.etag {
            builder = builder
                .header(header::ETAG, etag)
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CACHE_CONTROL, IMMUTABLE);
        } else {
            builder = builder.header(header::ACCEPT_RANGES, "none");
        }
        if let Some(length) = length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        builder.body(body).expect("valid headers")
    }
}

/// A complete file of `size` bytes, whole or the requested range.
fn ranged(
    base: Answer,
    method: &Method,
    headers: &HeaderMap,
    size: u64,
    chunks: impl Fn(u64, u64) -> FileChunks,
) -> Response<ResponseBody> {
    let head = method == Method::HEAD;
    match range(headers, size) {
        RangeAsk::Full => {
            let body = if head { empty() } else { stream_body(chunks(0, size)) };
            base.finish(StatusCode::OK, Some(size), None, body)
        }
        RangeAsk::Part { start, end } => {
            let body = if head { empty() } else { stream_body(chunks(start, end)) };
            let mut response = base.finish(StatusCode::PARTIAL_CONTENT, Some(end - start), None, body);
            let content_range = format!("bytes {start}-{}/{size}", end - 1);
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ascii"));
            response
        }
        RangeAsk::Unsatisfiable => {
            let mut response = base.finish(StatusCode::RANGE_NOT_SATISFIABLE, Some(0), None, empty());
            let content_range = format!("bytes */{size}");
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ascii"));
            response
        }
    }
}

fn stream_body(chunks: FileChunks) -> ResponseBody {
    use futures_util::StreamExt;
    let frames = chunks
        .map(|chunk| chunk.map(http_body::Frame::data).map_err(|e| Box::new(e) as crate::body::BoxError));
    StreamBody::new(frames).boxed_unsync()
}

/// A file without a sha256 in the index, or any file while the cache disk is failing:
/// streamed through, checked as it streams, not cached.
async fn pass_through(
    base: Answer,
    method: &Method,
    upstream: &Arc<Upstream>,
    located: Located,
) -> Result<Response<ResponseBody>, ServeError> {
    if method == Method::HEAD {
        // Answered from the index alone: Azure feeds refuse HEAD.
        return Ok(base.finish(StatusCode::OK, located.expected.size, None, empty()));
    }
    let response = upstream
        .fetch_file(&located.url, located.expected.clone())
        .await
        .map_err(|e| ServeError::upstream(upstream.name(), e))?;
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let length = located.expected.size.or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    let body = response.into_body().map_err(Into::into).boxed_unsync();
    let mut answer = base.finish(StatusCode::OK, length, content_type, body);
    // Streamed through, so no ranges, even for a file the cache would otherwise hold.
    answer.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    Ok(answer)
}

fn download_error(upstream: &Upstream, filename: &str, error: FillError) -> ServeError {
    ServeError::Download { upstream: upstream.name().to_owned(), filename: filename.to_owned(), error }
}

/// The upstream URL and expectations for `filename`: a listed file, or the PEP 658 metadata
/// of a listed file that offers it.
fn locate(filename: &str, page: &CachedProject) -> Option<Located> {
    if let Some(file) = page.file(filename) {
        return Some(located(file.url.clone(), file.hashes.get("sha256"), file.size));
    }
    let stem = filename.strip_suffix(".metadata")?;
    let file = page.file(stem).filter(|f| f.has_metadata())?;
    let mut url = url::Url::parse(&file.url).ok()?;
    url.set_path(&format!("{}.metadata", url.path()));
    let sha256 = match &file.core_metadata {
        Some(CoreMetadata::Hashes(hashes)) => hashes.get("sha256"),
        _ => None,
    };
    Some(located(url.into(), sha256, None))
}

fn located(url: String, sha256: Option<&String>, size: Option<u64>) -> Located {
    let sha256 = sha256.map(|h| h.to_ascii_lowercase()).filter(|h| is_sha256(h));
    Located { url, expected: Expected::new(sha256.as_deref(), size), sha256 }
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
