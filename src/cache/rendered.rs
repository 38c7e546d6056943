//! A page rendered once per version into every representation pipgate serves, so a cache hit
//! is a copy of ready bytes: JSON and HTML, each plain and gzip-compressed, with their ETags.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::pypi::MediaType;

/// One representation: its bytes and its strong ETag.
#[derive(Debug, Clone)]
pub struct Variant {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// Every representation of one page version.
#[derive(Debug)]
pub struct Rendered {
    json: [Variant; 2],
    html: [Variant; 2],
    text_html: [Variant; 2],
}

impl Rendered {
    /// Renders from the two serialized forms. The ETag is derived from the JSON bytes, so it
    /// changes exactly when the page does, and differs per media type and encoding.
    pub fn new(json: Vec<u8>, html: Vec<u8>) -> Rendered {
        let digest = hex::encode(Sha256::digest(&json));
        let version = &digest[..20];
        let json_gz = gzip(&json);
        let json = Bytes::from(json);
        let html = Bytes::from(html);
        let html_gz = gzip(&html);
        let variant = |body: &Bytes, tag: &str| Variant {
            body: body.clone(),
            etag: HeaderValue::from_str(&format!("\"{version}-{tag}\"")).expect("hex and ASCII tags"),
        };
        Rendered {
            json: [variant(&json, "j"), variant(&json_gz, "j-gz")],
            html: [variant(&html, "h"), variant(&html_gz, "h-gz")],
            text_html: [variant(&html, "t"), variant(&html_gz, "t-gz")],
        }
    }

    pub fn variant(&self, media_type: MediaType, gzip: bool) -> &Variant {
        let pair = match media_type {
            MediaType::JsonV1 => &self.json,
            MediaType::HtmlV1 => &self.html,
            MediaType::TextHtml => &self.text_html,
        };
        &pair[usize::from(gzip)]
    }

    /// Bytes held, for the memory cache's weigher (the text/html variants share buffers).
    pub fn weight(&self) -> usize {
        self.json.iter().chain(self.html.iter()).map(|v| v.body.len()).sum()
    }
}

fn gzip(bytes: &[u8]) -> Bytes {
    // Level 6: most of the ratio of 9 at a fraction of the time; done once per page version.
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::new(6));
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn variants_have_distinct_etags_and_gzip_round_trips() {
        let rendered = Rendered::new(b"{\"a\":1}".to_vec(), b"<html></html>".to_vec());
        let mut etags: Vec<&HeaderValue> = Vec::new();
        for media in [MediaType::JsonV1, MediaType::HtmlV1, MediaType::TextHtml] {
            for gz in [false, true] {
                etags.push(&rendered.variant(media, gz).etag);
            }
        }
        let unique: std::collections::HashSet<_> = etags.iter().collect();
        assert_eq!(unique.len(), 6);
        let mut plain = String::new();
        let gz = &rendered.variant(MediaType::HtmlV1, true).body;
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut plain).unwrap();
        assert_eq!(plain, "<html></html>");
        let other = Rendered::new(b"{\"a\":2}".to_vec(), b"<html></html>".to_vec());
        assert_ne!(
            other.variant(MediaType::HtmlV1, false).etag,
            rendered.variant(MediaType::HtmlV1, false).etag
        );
    }
}
