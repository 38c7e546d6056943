//! `POST /upload/{upstream}/` (and `/upload/` for `publish.default`): the legacy upload API
//! that twine, `uv publish`, `pdm publish`, poetry and the PyPI publish action speak,
//! forwarded to the upstream's `upload_url` with pipgate's own credential (I4, I10).
//!
//! The multipart body is read only as far as the `content` part's headers, to learn the
//! project, version and file name: enough to check the publish rules and the owner before a
//! single byte goes upstream. Then what was read and the rest of the body stream on to the
//! upstream as they arrive, under `publish.max_bytes`; nothing is stored, so a failed upload
//! leaves nothing behind. After a success the project's cached page and 404s are dropped, so the
//! next install sees the new file at once.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, StreamBody};

use super::text;
use crate::body::{BoxError, ResponseBody};
use crate::error::ServeError;
use crate::identity::Client;
use crate::pypi::ProjectName;
use crate::state::State;

/// Most bytes read before the `content` part starts (the metadata fields are a few KiB).
const MAX_FIELDS_BYTES: u64 = 1 << 20;

/// What the multipart fields before the file say.
#[derive(Debug, Default)]
struct Fields {
    action: Option<String>,
    name: Option<String>,
    version: Option<String>,
    filename: Option<String>,
}

pub async fn upload<B>(
    state: &State,
    request: &Parts,
    body: B,
    client: &Client,
    target: Option<&str>,
) -> Result<Response<ResponseBody>, ServeError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let publish = state.publish.as_ref().ok_or(ServeError::NotFound)?;
    let position = match target {
        Some(name) => state.index.upstream_position(name).ok_or(ServeError::NotFound)?,
        None => publish.default.ok_or_else(|| {
            ServeError::BadUpload("no default upstream for /upload/: use /upload/{upstream}/".into())
        })?,
    };
    let upstream = state.index.upstream(position).clone();
    if !upstream.takes_uploads() {
        return Err(ServeError::BadUpload(format!(
            "upstream {:?} takes no uploads (no upload_url)",
            upstream.name()
        )));
    }
    let refuse = |error: ServeError| {
        state.metrics.publishes.with_label_values(&[upstream.name(), "refused"]).inc();
        error
    };
    let content_type =
        request.headers.get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static(""));
    let boundary = content_type
        .to_str()
        .ok()
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| refuse(ServeError::BadUpload("the body is not multipart/form-data".into())))?;
    let length = request
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > publish.max_bytes) {
        return Err(refuse(ServeError::UploadTooLarge(publish.max_bytes)));
    }

    let tap = Tap::new(body);
    let fields = read_fields(&tap, boundary).await.map_err(|e| refuse(ServeError::BadUpload(e)))?;
    if fields.action.as_deref() != Some("file_upload") {
        return Err(refuse(ServeError::BadUpload(":action must be file_upload".into())));
    }
    let (Some(name), Some(version), Some(filename)) = (fields.name, fields.version, fields.filename) else {
        return Err(refuse(ServeError::BadUpload(
            "the upload needs name, version and a content file".into(),
        )));
    };
    let project = ProjectName::new(&name).map_err(|e| refuse(ServeError::BadName(e)))?;
    let rule =
        publish.rules.allow(client, position, upstream.name(), &project).map_err(|r| refuse(r.into()))?;
    state.index.check_publish_owner(&project, position).await.map_err(refuse)?;

    let over_cap = Arc::new(AtomicBool::new(false));
    let forwarded = tap.into_forward_body(publish.max_bytes, over_cap.clone());
    let answer = upstream.upload(content_type, length, forwarded, publish.timeout).await;
    let who = client.describe();
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) if over_cap.load(Ordering::Relaxed) => {
            return Err(refuse(ServeError::UploadTooLarge(publish.max_bytes)));
        }
        Err(error) => {
            state.metrics.publishes.with_label_values(&[upstream.name(), "failed"]).inc();
            return Err(ServeError::upstream(upstream.name(), error));
        }
    };
    let (status, result, message) = outcome(upstream.name(), &filename, answer.status, &answer.message);
    state.metrics.publishes.with_label_values(&[upstream.name(), result]).inc();
    if answer.status.is_success() {
        tracing::info!(client = %who, %project, %version, %filename, upstream = upstream.name(), rule, "published");
        state.index.published(&project, &filename);
    } else {
        tracing::warn!(client = %who, %project, %version, %filename, upstream = upstream.name(), status = answer.status.as_u16(), "upload refused by the upstream");
    }
    Ok(text(status, message))
}

/// The client's answer for the upstream's: its status where it means the same to the client,
/// and a short message that says what to do.
fn outcome(
    upstream: &str,
    filename: &str,
    status: StatusCode,
    said: &str,
) -> (StatusCode, &'static str, String) {
    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
    match status.as_u16() {
        200..=299 => (StatusCode::OK, "ok", format!("uploaded {filename} to upstream {upstream:?}\n")),
        409 => (
            StatusCode::CONFLICT,
            "rejected",
            format!("{filename} already exists on upstream {upstream:?}{said}\n"),
        ),
        400 | 422 => (
            StatusCode::BAD_REQUEST,
            "rejected",
            format!("upstream {upstream:?} refused {filename} (HTTP {}){said}\n", status.as_u16()),
        ),
        401 | 403 => (
            StatusCode::FORBIDDEN,
            "rejected",
            format!(
                "upstream {upstream:?} refused pipgate's own credential for uploads (HTTP {}){said}; on Azure Artifacts, pipgate's identity needs the Feed Publisher (Contributor) role on the feed\n",
                status.as_u16()
            ),
        ),
        413 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "rejected",
            format!("upstream {upstream:?} says {filename} is too large{said}\n"),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "failed",
            format!("upstream {upstream:?} answered the upload with HTTP {}{said}\n", status.as_u16()),
        ),
    }
}

/// Reads the multipart fields up to the `content` part's headers.
async fn read_fields<B>(tap: &Tap<B>, boundary: String) -> Result<Fields, String>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut multipart = multer::Multipart::new(tap.reader(), boundary);
    let mut fields = Fields::default();
    loop {
        let field =
            multipart.next_field().await.map_err(|e| format!("the multipart body is malformed: {e}"))?;
        let Some(field) = field else {
            return Err("the upload has no content part".into());
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "content" {
            fields.filename = field.file_name().map(str::to_owned);
            return Ok(fields);
        }
        let value = field.text().await.map_err(|e| format!("the multipart body is malformed: {e}"))?;
        match name.as_str() {
            ":action" => fields.action = Some(value),
            "name" => fields.name = Some(value),
            "version" => fields.version = Some(value),
            _ => {}
        }
    }
}

/// The client's body, read by the multipart parser through [`Tap::reader`] while every chunk
/// read is kept, so the whole body can be sent on afterwards: kept chunks first, then the rest.
struct Tap<B> {
    body: Arc<Mutex<Option<B>>>,
    kept: Arc<Mutex<Vec<Bytes>>>,
    read: Arc<AtomicU64>,
}

impl<B> Tap<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    fn new(body: B) -> Self {
        Tap { body: Arc::new(Mutex::new(Some(body))), kept: Arc::default(), read: Arc::default() }
    }

    fn reader(&self) -> TapReader<B> {
        TapReader { body: self.body.clone(), kept: self.kept.clone(), read: self.read.clone() }
    }

    /// The whole body again, for the upstream: what the parser read, then the rest as it
    /// arrives; past `max_bytes` it breaks off (and says so in `over_cap`).
    fn into_forward_body(self, max_bytes: u64, over_cap: Arc<AtomicBool>) -> crate::upstream::StreamingBody {
        let kept = std::mem::take(&mut *self.kept.lock().expect("tap lock"));
        let rest = self.body.lock().expect("tap lock").take();
        let sent = Arc::new(AtomicU64::new(0));
        let head = futures_util::stream::iter(kept.into_iter().map(Ok::<Bytes, BoxError>));
        let tail = futures_util::stream::unfold(rest, |body| async move {
            let mut body = body?;
            loop {
                match body.frame().await {
                    None => return None,
                    Some(Err(error)) => return Some((Err(error.into()), Some(body))),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            return Some((Ok(data), Some(body)));
                        }
                    }
                }
            }
        });
        let frames = head.chain(tail).map(move |chunk: Result<Bytes, BoxError>| {
            let chunk = chunk?;
            let total = sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if total > max_bytes {
                over_cap.store(true, Ordering::Relaxed);
                return Err(BoxError::from(format!("the upload is over {max_bytes} bytes")));
            }
            Ok(http_body::Frame::data(chunk))
        });
        BodyExt::boxed_unsync(StreamBody::new(frames))
    }
}

/// The parser's view of a [`Tap`]: data chunks, each kept as it passes, at most
/// [`MAX_FIELDS_BYTES`] of them.
struct TapReader<B> {
    body: Arc<Mutex<Option<B>>>,
    kept: Arc<Mutex<Vec<Bytes>>>,
    read: Arc<AtomicU64>,
}

impl<B> Stream for TapReader<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.read.load(Ordering::Relaxed) > MAX_FIELDS_BYTES {
            return Poll::Ready(Some(Err("no content part within the first MiB of the upload".into())));
        }
        let mut guard = self.body.lock().expect("tap lock");
        let Some(body) = guard.as_mut() else { return Poll::Ready(None) };
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.read.fetch_add(data.len() as u64, Ordering::Relaxed);
                        self.kept.lock().expect("tap lock").push(data.clone());
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
        }
    }
}
