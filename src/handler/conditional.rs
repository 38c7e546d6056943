//! Conditional and partial requests (RFC 9110 §13 and §14) and `Accept-Encoding`.

use http::{HeaderMap, HeaderValue, header};

/// Whether `If-None-Match` names `etag` (weak comparison, as §13.1.2 asks for GET).
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = strip_weak(etag.to_str().unwrap_or(""));
    value.trim() == "*" || value.split(',').any(|candidate| strip_weak(candidate.trim()) == ours)
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether the client takes gzip (`Accept-Encoding: gzip` or `*`, with q > 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
            .next()
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// What a `Range` header asks of a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: send everything (also for multiple ranges, which §14.2 allows).
    Full,
    /// Bytes `start..end` (end exclusive).
    Part { start: u64, end: u64 },
    /// A syntactically valid range beyond the end: 416.
    Unsatisfiable,
}

pub fn range(headers: &HeaderMap, size: u64) -> RangeAsk {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAsk::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeAsk::Unsatisfiable,
            Ok(_) if size == 0 => RangeAsk::Unsatisfiable,
            Ok(n) => RangeAsk::Part { start: size.saturating_sub(n), end: size },
            Err(_) => RangeAsk::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else { return RangeAsk::Full };
    let end = match last {
        "" => size,
        last => match last.parse::<u64>() {
            Ok(last) if last >= start => (last + 1).min(size),
            _ => return RangeAsk::Full,
        },
    };
    if start >= size { RangeAsk::Unsatisfiable } else { RangeAsk::Part { start, end } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn ranges() {
        for (value, expected) in [
            ("bytes=0-99", RangeAsk::Part { start: 0, end: 100 }),
            ("bytes=900-", RangeAsk::Part { start: 900, end: 1000 }),
            ("bytes=-100", RangeAsk::Part { start: 900, end: 1000 }),
            ("bytes=-5000", RangeAsk::Part { start: 0, end: 1000 }),
            ("bytes=990-2000", RangeAsk::Part { start: 990, end: 1000 }),
            ("bytes=1000-", RangeAsk::Unsatisfiable),
            ("bytes=-0", RangeAsk::Unsatisfiable),
            ("bytes=5-1", RangeAsk::Full),
            ("bytes=0-1,5-6", RangeAsk::Full),
            ("items=0-1", RangeAsk::Full),
        ] {
            assert_eq!(range(&headers(header::RANGE, value), 1000), expected, "{value}");
        }
    }

    #[test]
    fn etags_and_encodings() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "\"x\", W/\"abc\""), &etag));
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "*"), &etag));
        assert!(!not_modified(&headers(header::IF_NONE_MATCH, "\"abcd\""), &etag));
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip, deflate, br")));
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "*")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0, br")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
    }
}
