//! Asking an upstream for a project page, and reading its answer under the fail-closed rule:
//! only a definite 404 or 410 means "not here"; every other non-page answer is an error.

use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use url::Url;

use super::{Purpose, Upstream, UpstreamError, header_text};
use crate::pypi::ProjectName;
use crate::pypi::media::{MediaType, UPSTREAM_ACCEPT};
use crate::pypi::simple::{
    ProjectList, ProjectPage, parse_project_html, parse_project_json, parse_root_html, parse_root_json,
};

/// An upstream's answer for one project.
#[derive(Debug)]
pub enum PageAnswer {
    Found(Box<FetchedPage>),
    /// The page has not changed since the validators were taken (a 304).
    NotModified,
    /// A definite 404 or 410: the upstream does not hold the project.
    NotFound,
}

/// A parsed page and what it takes to revalidate it.
#[derive(Debug)]
pub struct FetchedPage {
    pub page: ProjectPage,
    pub validators: Validators,
    /// How long the parse took (for the `Server-Timing` of the answer that waited for it).
    pub parse_time: std::time::Duration,
}

/// An upstream page's `ETag` and `Last-Modified`, for conditional requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text =
            |name| headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok()).map(str::to_owned);
        Validators { etag: text(header::ETAG), last_modified: text(header::LAST_MODIFIED) }
    }

    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |name, value: &Option<String>| {
            if let Some(value) = value.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        };
        set(header::IF_NONE_MATCH, &self.etag);
        set(header::IF_MODIFIED_SINCE, &self.last_modified);
    }
}

/// A successful answer before parsing.
struct Body {
    kind: MediaType,
    bytes: bytes::Bytes,
    final_url: Url,
    validators: Validators,
}

/// What [`Upstream::fetch_body`] can get back.
enum Fetched {
    Body(Body),
    NotModified,
    NotFound,
}

impl Upstream {
    /// Fetches and parses the page of `project`; with `validators`, conditionally.
    pub async fn fetch_page(
        &self,
        project: &ProjectName,
        validators: Option<&Validators>,
    ) -> Result<PageAnswer, UpstreamError> {
        let url = self.project_url(project);
        let started = std::time::Instant::now();
        let fetched = self.fetch_body(url, validators).await;
        let parsed = match fetched {
            Err(error) => Err(error),
            Ok(Fetched::NotFound) => Ok(PageAnswer::NotFound),
            Ok(Fetched::NotModified) => Ok(PageAnswer::NotModified),
            Ok(Fetched::Body(body)) => {
                self.count_received("page", &body.bytes);
                parse_page(project.clone(), body).await
            }
        };
        let outcome = match &parsed {
            Ok(PageAnswer::Found(_)) => Ok("ok"),
            Ok(PageAnswer::NotFound) => Ok("not_found"),
            Ok(PageAnswer::NotModified) => Ok("not_modified"),
            Err(error) => Err(error),
        };
        self.record("page", started, outcome);
        parsed
    }

    pub(super) fn count_received(&self, kind: &str, bytes: &[u8]) {
        self.metrics.upstream_bytes.with_label_values(&[&self.name, kind]).inc_by(bytes.len() as u64);
    }

    /// Fetches and parses the root page (the list of projects).
    pub async fn fetch_root(&self) -> Result<ProjectList, UpstreamError> {
        let started = std::time::Instant::now();
        let result = match self.fetch_body(self.base.clone(), None).await {
            Err(error) => Err(error),
            Ok(Fetched::NotFound | Fetched::NotModified) => Err(UpstreamError::Status(StatusCode::NOT_FOUND)),
            Ok(Fetched::Body(body)) => {
                self.count_received("root", &body.bytes);
                match body.kind {
                    MediaType::JsonV1 => Ok(parse_root_json(&body.bytes)?),
                    _ => Ok(parse_root_html(&body.bytes, &body.final_url)?),
                }
            }
        };
        self.record("root", started, result.as_ref().map(|_| "ok"));
        result
    }

    /// GETs a simple-API URL within the upstream's deadline, size-capped, remembering the URL
    /// it finally came from (for relative links).
    async fn fetch_body(&self, url: Url, validators: Option<&Validators>) -> Result<Fetched, UpstreamError> {
        let fetch = async {
            let (response, final_url) =
                self.send(url, UPSTREAM_ACCEPT, Purpose::Page, validators, None).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(Fetched::NotFound);
            }
            if status == StatusCode::NOT_MODIFIED && validators.is_some() {
                return Ok(Fetched::NotModified);
            }
            if status != StatusCode::OK {
                return Err(status_error(status, response.headers()));
            }
            let validators = Validators::from_headers(response.headers());
            let content_type = header_text(response.headers().get(header::CONTENT_TYPE));
            let kind = MediaType::from_essence(&content_type)
                .ok_or_else(|| UpstreamError::WrongContentType(content_type.clone()))?;
            let encoding = header_text(response.headers().get(header::CONTENT_ENCODING)).to_ascii_lowercase();
            let gzipped = match encoding.trim() {
                "" | "identity" => false,
                "gzip" | "x-gzip" => true,
                other => return Err(UpstreamError::WrongContentEncoding(other.to_owned())),
            };
            let length = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let bytes = read_capped(response.into_body(), length, self.max_page_bytes).await?;
            let bytes = if gzipped { inflate(&bytes, self.max_page_bytes)? } else { bytes };
            Ok(Fetched::Body(Body { kind, bytes, final_url, validators }))
        };
        tokio::time::timeout(self.timeout, fetch).await.map_err(|_| UpstreamError::Timeout(self.timeout))?
    }
}

/// Reads a page body of at most `cap` bytes into one buffer, sized by the `Content-Length`
/// when there is one: each chunk is copied once, as it arrives, instead of a list of chunks
/// being joined at the end (which held a large page twice).
async fn read_capped(
    mut body: hyper::body::Incoming,
    length: Option<u64>,
    cap: u64,
) -> Result<bytes::Bytes, UpstreamError> {
    if length.is_some_and(|length| length > cap) {
        return Err(UpstreamError::PageTooLarge(cap));
    }
    let mut buffer = bytes::BytesMut::with_capacity(length.unwrap_or(64 * 1024) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpstreamError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buffer.len() + data.len()) as u64 > cap {
                return Err(UpstreamError::PageTooLarge(cap));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Inflates a gzip page, stopping at `cap` bytes: the compressed body is capped as it arrives,
/// and this caps what it inflates to, so a gzip bomb costs at most `cap` bytes of memory.
fn inflate(compressed: &[u8], cap: u64) -> Result<bytes::Bytes, UpstreamError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(cap as usize));
    flate2::read::GzDecoder::new(compressed)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| UpstreamError::Body(format!("the gzip page does not inflate: {e}")))?;
    if out.len() as u64 > cap {
        return Err(UpstreamError::PageTooLarge(cap));
    }
    Ok(out.into())
}

/// Pages up to this size parse on the reactor; larger ones (a page of thousands of files takes
/// milliseconds) on the blocking pool, so they hold no runtime thread.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

async fn parse_page(project: ProjectName, body: Body) -> Result<PageAnswer, UpstreamError> {
    let inline = body.bytes.len() <= PARSE_INLINE_BYTES;
    let started = std::time::Instant::now();
    let parse = move || {
        let page = match body.kind {
            MediaType::JsonV1 => parse_project_json(&body.bytes, &body.final_url, project.as_str())?,
            MediaType::HtmlV1 | MediaType::TextHtml => {
                parse_project_html(&body.bytes, &body.final_url, project.as_str())?
            }
        };
        let parse_time = started.elapsed();
        Ok(PageAnswer::Found(Box::new(FetchedPage { page, validators: body.validators, parse_time })))
    };
    if inline {
        return parse();
    }
    tokio::task::spawn_blocking(parse)
        .await
        .unwrap_or_else(|_| Err(UpstreamError::Body("parsing the page failed".to_owned())))
}

/// The error for a non-200, non-404 answer.
pub(super) fn status_error(status: StatusCode, headers: &HeaderMap) -> UpstreamError {
    match status {
        StatusCode::NON_AUTHORITATIVE_INFORMATION => UpstreamError::SignInPage,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::AuthRejected(status),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::Throttled {
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        },
        _ => UpstreamError::Status(status),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_pages_inflate_under_the_cap_and_a_bomb_stops_at_it() {
        let page = br#"{"meta": {"api-version": "1.0"}, "name": "x", "files": []}"#;
        assert_eq!(&inflate(&gzip(page), 1024).unwrap()[..], &page[..]);
        // 64 MiB of zeros in about 64 KiB: the inflation stops one byte past a 1 MiB cap.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        assert!(matches!(inflate(&bomb, 1 << 20), Err(UpstreamError::PageTooLarge(cap)) if cap == 1 << 20));
        assert!(matches!(inflate(b"not gzip", 1024), Err(UpstreamError::Body(_))));
    }
}
