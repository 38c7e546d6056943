//! Content negotiation for the simple API (PEP 691).
//!
//! pipgate offers three media types: `application/vnd.pypi.simple.v1+json`,
//! `application/vnd.pypi.simple.v1+html` and `text/html` (an alias of v1 HTML). The client's
//! `Accept` header is read by q-value, never by order; for each offer the most specific matching
//! range decides its q (RFC 9110 §12.5.1). The `latest` aliases name the v1 types, and the answer
//! always carries the concrete v1 type. A `format` query parameter, when present, wins over
//! `Accept`. No `Accept` at all means HTML; nothing acceptable is a 406.

/// A media type pipgate can answer a simple-API request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    JsonV1,
    HtmlV1,
    TextHtml,
}

pub const JSON_V1: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_V1: &str = "application/vnd.pypi.simple.v1+html";
const JSON_LATEST: &str = "application/vnd.pypi.simple.latest+json";
const HTML_LATEST: &str = "application/vnd.pypi.simple.latest+html";
const TEXT_HTML: &str = "text/html";

/// The `Accept` header pipgate sends upstream: JSON first, HTML understood as well.
pub const UPSTREAM_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// Offers in tie-break order: on equal q the earlier wins. HTML first, so that `*/*` (curl, a
/// browser) gets a page a person can read, as from PyPI itself; pip and uv rank JSON highest.
const OFFERS: [MediaType; 3] = [MediaType::TextHtml, MediaType::HtmlV1, MediaType::JsonV1];

/// The client accepts none of the simple API's media types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("none of the offered media types is acceptable: {JSON_V1}, {HTML_V1}, {TEXT_HTML}")]
pub struct NotAcceptable;

impl MediaType {
    /// The `Content-Type` of an answer in this media type.
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::JsonV1 => JSON_V1,
            MediaType::HtmlV1 => HTML_V1,
            MediaType::TextHtml => "text/html; charset=utf-8",
        }
    }

    pub fn is_json(self) -> bool {
        self == MediaType::JsonV1
    }

    /// Parses a concrete media type (the `format` parameter, or an upstream `Content-Type`).
    pub fn from_essence(raw: &str) -> Option<MediaType> {
        let essence = raw.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(JSON_V1) || essence.eq_ignore_ascii_case(JSON_LATEST) {
            Some(MediaType::JsonV1)
        } else if essence.eq_ignore_ascii_case(HTML_V1) || essence.eq_ignore_ascii_case(HTML_LATEST) {
            Some(MediaType::HtmlV1)
        } else if essence.eq_ignore_ascii_case(TEXT_HTML) {
            Some(MediaType::TextHtml)
        } else {
            None
        }
    }

    /// The (type, subtype) pairs that name this offer exactly.
    fn exact_names(self) -> &'static [&'static str] {
        match self {
            MediaType::JsonV1 => &[JSON_V1, JSON_LATEST],
            MediaType::HtmlV1 => &[HTML_V1, HTML_LATEST],
            MediaType::TextHtml => &[TEXT_HTML],
        }
    }

    fn main_type(self) -> &'static str {
        match self {
            MediaType::JsonV1 | MediaType::HtmlV1 => "application",
            MediaType::TextHtml => "text",
        }
    }
}

/// Chooses the media type for a request from its `format` query value and `Accept` header.
pub fn negotiate(accept: Option<&str>, format: Option<&str>) -> Result<MediaType, NotAcceptable> {
    if let Some(format) = format {
        return MediaType::from_essence(format).ok_or(NotAcceptable);
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(MediaType::TextHtml);
    };
    let ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(MediaRange::parse).collect();
    let mut best: Option<(MediaType, u16)> = None;
    for offer in OFFERS {
        let q = quality_of(offer, &ranges);
        if q > 0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((offer, q));
        }
    }
    best.map(|(offer, _)| offer).ok_or(NotAcceptable)
}

/// One element of an `Accept` header. `q` is in thousandths, as RFC 9110 allows three decimals.
struct MediaRange<'a> {
    essence: &'a str,
    q: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(raw: &'a str) -> Option<Self> {
        let mut parts = raw.split(';');
        let essence = parts.next()?.trim();
        if essence.is_empty() || !essence.contains('/') {
            return None;
        }
        let mut q = 1000;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("q") {
                q = parse_qvalue(value.trim())?;
            }
        }
        Some(MediaRange { essence, q })
    }

    /// How specifically this range names `offer`: 3 exact, 2 `type/*`, 1 `*/*`, 0 not at all.
    fn specificity(&self, offer: MediaType) -> u8 {
        if offer.exact_names().iter().any(|name| self.essence.eq_ignore_ascii_case(name)) {
            3
        } else if self.essence.len() == offer.main_type().len() + 2
            && self.essence[..offer.main_type().len()].eq_ignore_ascii_case(offer.main_type())
            && self.essence.ends_with("/*")
        {
            2
        } else if self.essence == "*/*" {
            1
        } else {
            0
        }
    }
}

/// The q of the most specific range that matches `offer`; 0 when none does.
fn quality_of(offer: MediaType, ranges: &[MediaRange<'_>]) -> u16 {
    let mut best_specificity = 0;
    let mut q = 0;
    for range in ranges {
        let specificity = range.specificity(offer);
        if specificity > best_specificity
            || (specificity == best_specificity && specificity > 0 && range.q > q)
        {
            best_specificity = specificity;
            q = range.q;
        }
    }
    q
}

fn parse_qvalue(raw: &str) -> Option<u16> {
    let value: f32 = raw.parse().ok()?;
    if !(0.0..=1.0).contains(&value) {
        return None;
    }
    Some((value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIP: &str =
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    const UV: &str =
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

    #[test]
    fn negotiation_table() {
        use MediaType::*;
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<MediaType, NotAcceptable>);
        let cases: &[Case<'_>] = &[
            (Some(PIP), None, Ok(JsonV1)),
            (Some(UV), None, Ok(JsonV1)),
            (None, None, Ok(TextHtml)),
            (Some(""), None, Ok(TextHtml)),
            (Some("*/*"), None, Ok(TextHtml)),
            (Some("text/html"), None, Ok(TextHtml)),
            // Order is meaningless; q decides.
            (Some("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9"), None, Ok(JsonV1)),
            (Some("application/vnd.pypi.simple.v1+json;q=0.1, text/html"), None, Ok(TextHtml)),
            (Some("application/vnd.pypi.simple.latest+json"), None, Ok(JsonV1)),
            (Some("application/vnd.pypi.simple.latest+html"), None, Ok(HtmlV1)),
            (Some("application/json"), None, Err(NotAcceptable)),
            (Some("application/vnd.pypi.simple.v2+json"), None, Err(NotAcceptable)),
            // A specific q=0 excludes the offer even though */* allows everything.
            (Some("*/*, text/html;q=0, application/vnd.pypi.simple.v1+html;q=0"), None, Ok(JsonV1)),
            (Some("application/*;q=0.5, text/*;q=0.4"), None, Ok(HtmlV1)),
            (Some("text/html; q=2"), None, Err(NotAcceptable)),
            // The format parameter wins over Accept.
            (Some(PIP), Some("text/html"), Ok(TextHtml)),
            (Some("text/html"), Some("application/vnd.pypi.simple.latest+json"), Ok(JsonV1)),
            (None, Some("application/xml"), Err(NotAcceptable)),
        ];
        for (accept, format, expected) in cases {
            assert_eq!(negotiate(*accept, *format), *expected, "accept={accept:?} format={format:?}");
        }
    }

    #[test]
    fn answers_carry_concrete_types() {
        assert_eq!(MediaType::JsonV1.content_type(), JSON_V1);
        assert_eq!(
            MediaType::from_essence("Application/VND.pypi.simple.v1+JSON; charset=utf-8"),
            Some(MediaType::JsonV1)
        );
    }
}
