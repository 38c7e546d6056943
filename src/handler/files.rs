//! `/files/{project}/{filename}`: a file the owner's page lists, from the file cache or
//! streamed from the owner.
//!
//! The project in the path goes through the owner rule again (a page-cache hit), so a file can
//! only come from the upstream that owns the project: a public file cannot be fetched under a
//! private name. `{filename}.metadata` serves a PEP 658 metadata file when the page offers one.
//! Files whose index entry has a sha256 are cached and served with ranges and ETags; others
//! pass through, verified for length only.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};

use super::conditional::{RangeAsk, not_modified, range};
use super::{CACHE_HEADER, UPSTREAM_HEADER, decode_segment};
use crate::body::{ResponseBody, empty};
use crate::cache::files::{FileChunks, Fill, FillError, Phase, TempFile, file_chunks};
use crate::error::ServeError;
use crate::identity::Client;
use crate::index::{FileSource, ListedFile, Located, WheelMetadata};
use crate::pypi::ProjectName;
use crate::state::State;

/// Verified files never change under their name and hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn file(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    client: &Client,
    project_segment: &str,
    filename_segment: &str,
) -> Result<Response<ResponseBody>, ServeError> {
    let project = ProjectName::new(&decode_segment(project_segment).ok_or(ServeError::NotFound)?)?;
    if project.as_str() != project_segment {
        return Err(ServeError::NotFound);
    }
    let filename = decode_segment(filename_segment).ok_or(ServeError::NotFound)?;
    let listed = match state.index.file(&project, &filename, client).await? {
        Located::File(listed) => listed,
        Located::Metadata(wheel) => return synthesized_metadata(state, method, headers, &wheel).await,
    };
    let mut base = Answer::new(&listed);
    if let Some(etag) = &base.etag {
        if not_modified(headers, etag) {
            return Ok(base.finish(StatusCode::NOT_MODIFIED, None, None, empty()));
        }
        // Answered from the index when it gives the size: no upstream request, and Azure feeds
        // refuse HEAD anyway. Without a size, the source below answers it.
        if let (true, Some(size)) = (method == Method::HEAD, listed.expected.size) {
            return Ok(base.finish(StatusCode::OK, Some(size), None, empty()));
        }
    }
    match state.index.open(&listed).await {
        FileSource::Cached { file, size } => Ok(ranged(base, method, headers, size, |start, end| {
            file_chunks(TempFile::made(file.clone()), start, end, None)
        })),
        FileSource::Filling(fill) => {
            let mut missed = base.clone();
            missed.cache = "miss";
            if let Some(answer) = from_fill(missed, method, headers, &listed, &fill).await? {
                return Ok(answer);
            }
            // The cache disk failed under that fill: this request goes without it.
            base.cache = "bypass";
            pass_through(state, base, method, &listed).await
        }
        FileSource::PassThrough => {
            base.cache = "bypass";
            pass_through(state, base, method, &listed).await
        }
    }
}

/// The METADATA pipgate read out of a wheel whose owner offers none. Its ETag is its own
/// sha256, the one pages advertise once it is known.
async fn synthesized_metadata(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    wheel: &WheelMetadata,
) -> Result<Response<ResponseBody>, ServeError> {
    let metadata = state.index.metadata(wheel).await?;
    let base = Answer {
        upstream: wheel.wheel.owner.name_header().clone(),
        content_type: HeaderValue::from_static(guess_content_type(".metadata")),
        etag: Some(HeaderValue::from_str(&format!("\"{}\"", metadata.sha256)).expect("hex is header-safe")),
        cache: "hit",
    };
    let etag = base.etag.clone().expect("set above");
    if not_modified(headers, &etag) {
        return Ok(base.finish(StatusCode::NOT_MODIFIED, None, None, empty()));
    }
    let size = metadata.bytes.len() as u64;
    let body = if method == Method::HEAD { empty() } else { crate::body::full(metadata.bytes.clone()) };
    let mut response = base.finish(StatusCode::OK, Some(size), None, body);
    // Kilobytes, always sent whole.
    response.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    Ok(response)
}

/// A file being filled: a full download streams as soon as the upstream answers; a range
/// needs the whole file (uv asks for the end of a wheel first), so it waits for the commit.
/// `None` when the fill cannot serve this request because the cache disk failed under it (a
/// download that joined in time is relayed to the end instead).
async fn from_fill(
    base: Answer,
    method: &Method,
    headers: &HeaderMap,
    listed: &ListedFile,
    fill: &Fill,
) -> Result<Option<Response<ResponseBody>>, ServeError> {
    let wants_range = headers.contains_key(header::RANGE);
    let failed = |error| ServeError::fill_failed(listed.owner.name(), &listed.filename, error);
    // Joined before waiting, so that a relay that begins meanwhile includes this reader.
    let Some(feed) = fill.follow() else { return Ok(None) };
    let ready = fill
        .state
        .clone()
        .wait_for(|s| match s.phase {
            Phase::Connecting => false,
            Phase::Streaming => !wants_range,
            Phase::Done | Phase::Relaying | Phase::Relayed | Phase::Failed(_) => true,
        })
        .await
        .map(|s| s.clone())
        .map_err(|_| failed(FillError::Stream("the fill stopped".into())))?;
    match ready.phase {
        Phase::Failed(error) => Err(failed(error)),
        Phase::Done => Ok(Some(ranged(base, method, headers, ready.written, |start, end| {
            file_chunks(fill.file(), start, end, None)
        }))),
        // A range is served from a committed file only.
        Phase::Relaying | Phase::Relayed if wants_range => Ok(None),
        Phase::Streaming | Phase::Connecting | Phase::Relaying | Phase::Relayed => {
            let end = ready.total.unwrap_or(u64::MAX);
            let body = if method == Method::HEAD {
                empty()
            } else {
                stream_body(file_chunks(fill.file(), 0, end, Some(feed)))
            };
            Ok(Some(base.finish(StatusCode::OK, ready.total, ready.content_type, body)))
        }
    }
}

/// The headers every file answer carries.
#[derive(Clone)]
struct Answer {
    upstream: HeaderValue,
    content_type: HeaderValue,
    etag: Option<HeaderValue>,
    /// `X-Pipgate-Cache`: `hit` (also for answers from the index entry alone), `miss` for a
    /// fill, `bypass` for a pass-through.
    cache: &'static str,
}

impl Answer {
    fn new(listed: &ListedFile) -> Answer {
        Answer {
            upstream: listed.owner.name_header().clone(),
            content_type: HeaderValue::from_static(guess_content_type(&listed.filename)),
            etag: listed
                .sha256
                .as_ref()
                .map(|sha| HeaderValue::from_str(&format!("\"{sha}\"")).expect("hex is header-safe")),
            cache: "hit",
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
            .header(CACHE_HEADER, HeaderValue::from_static(self.cache))
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
    state: &State,
    base: Answer,
    method: &Method,
    listed: &ListedFile,
) -> Result<Response<ResponseBody>, ServeError> {
    if method == Method::HEAD {
        // Answered from the index alone: Azure feeds refuse HEAD.
        return Ok(base.finish(StatusCode::OK, listed.expected.size, None, empty()));
    }
    let response = state.index.pass_through(listed).await?;
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let length = listed.expected.size.or_else(|| {
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
