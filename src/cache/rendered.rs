//! A page rendered once per version into every representation pipgate serves, so a cache hit
//! is a copy of ready bytes: JSON and HTML, each plain and gzip-compressed, with their ETags.
//!
//! The plain forms are rendered when the page is; compression waits until a client asks for
//! it, because it is most of a cold page's cost (tens of milliseconds for a page of thousands
//! of files at level 6). The first gzip answer of a form is compressed at level 1 (a few
//! milliseconds), and the same form at level 6 is made in the background for every answer
//! after it. Each encoding has its own strong ETag, so a client never sees two byte sequences
//! under one tag.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::HeaderValue;

use crate::pypi::MediaType;

/// One representation: its bytes and its strong ETag.
#[derive(Debug, Clone)]
pub struct Variant {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// Renders the HTML form when it is first asked for.
type LaterHtml = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// A serialized form (JSON or HTML) and its compressed versions, as they are made.
struct Form {
    plain: OnceLock<Bytes>,
    /// How to make `plain` when it is not made yet (HTML, until a client asks for it).
    make: std::sync::Mutex<Option<LaterHtml>>,
    /// Level 1: made on the first gzip request, in its path.
    fast: OnceLock<Bytes>,
    /// Level 6: made in the background after the first gzip request.
    best: OnceLock<Bytes>,
    best_started: AtomicBool,
}

/// The ETags of one media type: plain, fast gzip, best gzip.
#[derive(Debug)]
struct Tags([HeaderValue; 3]);

/// Every representation of one page version.
#[derive(Debug)]
pub struct Rendered {
    json: std::sync::Arc<Form>,
    html: std::sync::Arc<Form>,
    tags: [Tags; 3],
}

impl Rendered {
    /// Holds `json` and makes the HTML form with `html` when a client first asks for it (pip
    /// and uv ask for JSON). The ETag is derived from the JSON bytes (CRC-32 and length: it
    /// only has to change when the page does, and a cryptographic hash of a large page cost
    /// more than rendering it; both forms show the same model, so the HTML changes with it),
    /// and differs per media type and encoding.
    pub fn new(json: Vec<u8>, html: impl FnOnce() -> Vec<u8> + Send + 'static) -> Rendered {
        let mut crc = flate2::Crc::new();
        crc.update(&json);
        let version = format!("{:08x}{:x}", crc.sum(), json.len());
        let tag = |t: &str| HeaderValue::from_str(&format!("\"{version}-{t}\"")).expect("hex and ASCII tags");
        let tags = |t: &str| Tags([tag(t), tag(&format!("{t}-gz1")), tag(&format!("{t}-gz"))]);
        let form = |plain: Option<Vec<u8>>, make: Option<LaterHtml>| {
            let ready = OnceLock::new();
            if let Some(plain) = plain {
                let _ = ready.set(Bytes::from(plain));
            }
            std::sync::Arc::new(Form {
                plain: ready,
                make: std::sync::Mutex::new(make),
                fast: OnceLock::new(),
                best: OnceLock::new(),
                best_started: AtomicBool::new(false),
            })
        };
        Rendered {
            json: form(Some(json), None),
            html: form(None, Some(Box::new(html))),
            tags: [tags("j"), tags("h"), tags("t")],
        }
    }

    pub fn variant(&self, media_type: MediaType, gzip: bool) -> Variant {
        let (form, tags) = match media_type {
            MediaType::JsonV1 => (&self.json, &self.tags[0]),
            MediaType::HtmlV1 => (&self.html, &self.tags[1]),
            MediaType::TextHtml => (&self.html, &self.tags[2]),
        };
        let plain = form.plain();
        if !gzip {
            return Variant { body: plain.clone(), etag: tags.0[0].clone() };
        }
        if let Some(best) = form.best.get() {
            return Variant { body: best.clone(), etag: tags.0[2].clone() };
        }
        let fast = form.fast.get_or_init(|| compress(plain, 1)).clone();
        if !form.best_started.swap(true, Ordering::Relaxed) {
            let form = form.clone();
            let make_best = move || {
                let _ = form.best.set(compress(form.plain(), 6));
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(make_best)),
                Err(_) => make_best(),
            }
        }
        Variant { body: fast, etag: tags.0[1].clone() }
    }

    /// Bytes held, for the memory cache's weigher, counting what may be made later too: the
    /// JSON, the HTML (about as large), and an eighth of both for the compressed forms (pages
    /// compress about tenfold).
    pub fn weight(&self) -> usize {
        let json = self.json.plain().len();
        let plain = json + self.html.plain.get().map_or(json, Bytes::len);
        plain + plain / 8
    }
}

impl Form {
    /// The plain bytes, made now if they are made on demand.
    fn plain(&self) -> &Bytes {
        self.plain.get_or_init(|| {
            let make = self.make.lock().expect("render lock").take();
            Bytes::from(make.map(|make| make()).unwrap_or_default())
        })
    }
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form").field("plain", &self.plain.get().map(Bytes::len)).finish_non_exhaustive()
    }
}

fn compress(bytes: &[u8], level: u32) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 8), Compression::new(level));
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn variants_have_distinct_etags_and_gzip_round_trips() {
        let rendered = Rendered::new(b"{\"a\":1}".to_vec(), || b"<html></html>".to_vec());
        let mut etags: Vec<HeaderValue> = Vec::new();
        for media in [MediaType::JsonV1, MediaType::HtmlV1, MediaType::TextHtml] {
            for gz in [false, true] {
                etags.push(rendered.variant(media, gz).etag);
            }
        }
        let unique: std::collections::HashSet<_> = etags.iter().collect();
        assert_eq!(unique.len(), 6);
        let mut plain = String::new();
        let gz = rendered.variant(MediaType::HtmlV1, true).body;
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut plain).unwrap();
        assert_eq!(plain, "<html></html>");
        let other = Rendered::new(b"{\"a\":2}".to_vec(), || b"<html></html>".to_vec());
        assert_ne!(
            other.variant(MediaType::HtmlV1, false).etag,
            rendered.variant(MediaType::HtmlV1, false).etag
        );
    }

    #[test]
    fn html_is_rendered_once_and_only_when_asked_for() {
        let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = made.clone();
        let rendered = Rendered::new(b"{}".to_vec(), move || {
            counter.fetch_add(1, Ordering::Relaxed);
            b"<html></html>".to_vec()
        });
        rendered.variant(MediaType::JsonV1, true);
        assert_eq!(made.load(Ordering::Relaxed), 0, "JSON clients cost no HTML");
        for media in [MediaType::HtmlV1, MediaType::TextHtml, MediaType::HtmlV1] {
            assert_eq!(&rendered.variant(media, false).body[..], b"<html></html>");
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_first_gzip_answer_is_fast_and_later_ones_are_small_under_their_own_tag() {
        let json: Vec<u8> =
            (0..20_000).flat_map(|i| format!("{{\"file\":\"f-{i}.whl\"}},").into_bytes()).collect();
        let rendered = Rendered::new(json.clone(), || b"<html></html>".to_vec());
        // Without a runtime the best form is made at once: the first answer is level 1, every
        // later one level 6.
        let first = rendered.variant(MediaType::JsonV1, true);
        let later = rendered.variant(MediaType::JsonV1, true);
        assert_ne!(first.etag, later.etag, "other bytes, another tag");
        assert!(later.body.len() < first.body.len());
        for variant in [first, later] {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&variant.body[..]).read_to_end(&mut out).unwrap();
            assert_eq!(out, json);
        }
        assert_eq!(
            rendered.variant(MediaType::JsonV1, true).etag,
            rendered.variant(MediaType::JsonV1, true).etag
        );
    }
}
