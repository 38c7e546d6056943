//! Part of a file by an HTTP range request: how pipgate reads a wheel's metadata out of a zip
//! it has not downloaded (its tail, its central directory, one entry).
//!
//! The redirect rules are the file rules (a feed's redirect to blob storage is followed
//! without the credential). An answer counts only when it is a `206` whose `Content-Range`
//! is exactly the span asked for: a `200` (the upstream ignores ranges) is [`RangeAnswer::Refused`]
//! and its body is not read, so a server without ranges costs one request, not one download.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use url::Url;

use super::{Purpose, Upstream, UpstreamError, page};

/// Longest range pipgate asks for: a central directory may be this large (see
/// `pypi::wheel_metadata`), and nothing else it reads is larger.
const MAX_RANGE_BYTES: u64 = 64 << 20;

/// The bytes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The last `n` bytes (all of them, for a shorter file).
    Suffix(u64),
    /// `len` bytes from `start`.
    Span { start: u64, len: u64 },
}

/// What a range request got.
#[derive(Debug)]
pub enum RangeAnswer {
    Part {
        bytes: Bytes,
        /// Offset of `bytes` in the file.
        start: u64,
        /// The file's whole length, from `Content-Range`.
        total: u64,
        /// Where the bytes came from after redirects: later ranges of the same file go there
        /// directly (a blob URL with its signature, fetched without the credential).
        url: Url,
    },
    /// The upstream answered the whole file (`200`): it does not serve ranges.
    Refused,
}

impl ByteRange {
    fn header(self) -> HeaderValue {
        let text = match self {
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
            ByteRange::Span { start, len } => format!("bytes={start}-{}", start + len - 1),
        };
        HeaderValue::from_str(&text).expect("digits are header-safe")
    }

    fn len(self) -> u64 {
        match self {
            ByteRange::Suffix(n) | ByteRange::Span { len: n, .. } => n,
        }
    }
}

impl Upstream {
    /// Fetches `range` of the file at `url` (from this upstream's page, or a URL an earlier
    /// range answer gave).
    pub async fn fetch_range(&self, url: &Url, range: ByteRange) -> Result<RangeAnswer, UpstreamError> {
        if range.len() == 0 || range.len() > MAX_RANGE_BYTES {
            return Err(UpstreamError::Body(format!("a range of {} bytes is out of bounds", range.len())));
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, self.fetch_range_now(url, range))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.timeout)));
        let outcome = match &result {
            Ok(RangeAnswer::Part { .. }) => Ok("ok"),
            Ok(RangeAnswer::Refused) => Ok("refused"),
            Err(error) => Err(error),
        };
        self.record("range", started, outcome);
        result
    }

    async fn fetch_range_now(&self, url: &Url, range: ByteRange) -> Result<RangeAnswer, UpstreamError> {
        let header = range.header();
        let (response, final_url) = self.send(url.clone(), "*/*", Purpose::File, None, Some(&header)).await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            // Dropped unread: the connection closes instead of carrying the whole file.
            StatusCode::OK => return Ok(RangeAnswer::Refused),
            status => return Err(page::status_error(status, response.headers())),
        }
        let (start, end, total) = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .ok_or_else(|| UpstreamError::Body("a 206 without a usable Content-Range".into()))?;
        let expected_start = match range {
            ByteRange::Suffix(n) => total.saturating_sub(n),
            ByteRange::Span { start, .. } => start,
        };
        let expected_end = match range {
            ByteRange::Suffix(_) => total,
            ByteRange::Span { start, len } => (start + len).min(total),
        };
        if start != expected_start || end != expected_end {
            return Err(UpstreamError::Body(format!(
                "answered bytes {start}-{end} of {total} for {}",
                header.to_str().unwrap_or("?")
            )));
        }
        let length = end - start;
        let body = http_body_util::Limited::new(response.into_body(), length as usize + 1);
        let bytes = body
            .collect()
            .await
            .map_err(|error| UpstreamError::Body(crate::error_chain::display_chain(error.as_ref())))?
            .to_bytes();
        if bytes.len() as u64 != length {
            return Err(UpstreamError::Body(format!("sent {} bytes for a {length}-byte range", bytes.len())));
        }
        self.count_received("range", &bytes);
        Ok(RangeAnswer::Part { bytes, start, total, url: final_url })
    }
}

/// `bytes {first}-{last}/{total}` as `(first, last + 1, total)`; `None` for anything else
/// (an unknown total, a span past the end).
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total): (u64, u64, u64) =
        (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, last + 1, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_only_when_whole_and_inside_the_file() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 10, 100)));
        assert_eq!(parse_content_range("bytes 90-99/100"), Some((90, 100, 100)));
        for bad in ["bytes 0-9/*", "bytes 5-4/100", "bytes 0-100/100", "items 0-9/100", "bytes x-9/100", ""] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn range_headers_are_inclusive() {
        assert_eq!(ByteRange::Suffix(22).header(), "bytes=-22");
        assert_eq!(ByteRange::Span { start: 10, len: 5 }.header(), "bytes=10-14");
    }
}
