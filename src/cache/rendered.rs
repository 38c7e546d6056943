//! A page rendered once per version into every representation pipgate serves, so a cache hit
//! is a copy of ready bytes: JSON and HTML, each plain and gzip-compressed, with their ETags.
//!
//! The JSON form is rendered when the page is, and the HTML when a client first asks for it.
//! A cold answer's gzip is level 1 (a few milliseconds, on two threads for a large page); the
//! same form at level 6 (tens of milliseconds for thousands of files) is made in the
//! background once the form is asked for a second time, so a page asked for once never pays
//! for it and the CPU it takes never competes with the cold answer. Each encoding has its own
//! strong ETag, so a client never sees two byte sequences under one tag.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http::HeaderValue;

use super::gzip::{compress, exact};
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
    /// Level 1: made for the first gzip answer, in its path.
    fast: OnceLock<Bytes>,
    /// Level 6: made in the background once `fast` was served twice.
    best: OnceLock<Bytes>,
    /// Answers served from `fast`: the second starts making `best`.
    fast_answers: AtomicU32,
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
                let _ = ready.set(exact(plain));
            }
            std::sync::Arc::new(Form {
                plain: ready,
                make: std::sync::Mutex::new(make),
                fast: OnceLock::new(),
                best: OnceLock::new(),
                fast_answers: AtomicU32::new(0),
            })
        };
        Rendered {
            json: form(Some(json), None),
            html: form(None, Some(Box::new(html))),
            tags: [tags("j"), tags("h"), tags("t")],
        }
    }

    /// The representation, if it is made already: what a cache hit costs (no rendering, no
    /// compression), so it can be served on the runtime.
    pub fn ready(&self, media_type: MediaType, gzip: bool) -> Option<Variant> {
        let (form, tags) = self.form(media_type);
        if !gzip {
            return form.plain.get().map(|plain| Variant { body: plain.clone(), etag: tags.0[0].clone() });
        }
        if let Some(best) = form.best.get() {
            return Some(Variant { body: best.clone(), etag: tags.0[2].clone() });
        }
        let fast = form.fast.get()?;
        if form.fast_answers.fetch_add(1, Ordering::Relaxed) == 1 {
            form.start_best();
        }
        Some(Variant { body: fast.clone(), etag: tags.0[1].clone() })
    }

    /// Makes the representation if it is not made yet (rendering the HTML, the level-1 gzip)
    /// without answering with it: milliseconds for a large page, so off the runtime.
    pub fn prepare(&self, media_type: MediaType, gzip: bool) {
        let (form, _) = self.form(media_type);
        let plain = form.plain();
        if gzip {
            form.fast.get_or_init(|| compress(plain, 1, true));
        }
    }

    /// The representation, made now if it is not yet: [`Rendered::prepare`], then
    /// [`Rendered::ready`]. Off the runtime unless `ready` had it.
    pub fn variant(&self, media_type: MediaType, gzip: bool) -> Variant {
        self.prepare(media_type, gzip);
        self.ready(media_type, gzip).expect("a prepared form is ready")
    }

    fn form(&self, media_type: MediaType) -> (&std::sync::Arc<Form>, &Tags) {
        match media_type {
            MediaType::JsonV1 => (&self.json, &self.tags[0]),
            MediaType::HtmlV1 => (&self.html, &self.tags[1]),
            MediaType::TextHtml => (&self.html, &self.tags[2]),
        }
    }

    /// Bytes held, for the memory cache's weigher: every form made so far, and the level-6
    /// form a made level-1 form leads to. A form made later (the HTML, for the first client
    /// that asks for it) is counted when the cache weighs the page again.
    pub fn weight(&self) -> usize {
        self.json.weight() + self.html.weight()
    }
}

impl Form {
    fn weight(&self) -> usize {
        let made = |form: &OnceLock<Bytes>| form.get().map_or(0, Bytes::len);
        let best = match (self.best.get(), self.fast.get()) {
            (Some(best), _) => best.len(),
            // About as large: level 6 saves a tenth to a fifth.
            (None, Some(fast)) => fast.len(),
            (None, None) => 0,
        };
        made(&self.plain) + made(&self.fast) + best
    }

    /// Makes the level-6 form in the background, on one thread (leaving the other to answers).
    fn start_best(self: &std::sync::Arc<Self>) {
        let form = self.clone();
        let make_best = move || {
            let _ = form.best.set(compress(form.plain(), 6, false));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(make_best)),
            Err(_) => make_best(),
        }
    }

    /// The plain bytes, made now if they are made on demand.
    fn plain(&self) -> &Bytes {
        self.plain.get_or_init(|| {
            let make = self.make.lock().expect("render lock").take();
            exact(make.map(|make| make()).unwrap_or_default())
        })
    }
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form").field("plain", &self.plain.get().map(Bytes::len)).finish_non_exhaustive()
    }
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
    fn a_form_asked_for_again_is_made_small_under_its_own_tag() {
        let json: Vec<u8> =
            (0..20_000).flat_map(|i| format!("{{\"file\":\"f-{i}.whl\"}},").into_bytes()).collect();
        let rendered = Rendered::new(json.clone(), || b"<html></html>".to_vec());
        // Prepared (as a cold page is) without an answer; then the first two answers are
        // level 1, and the second makes the best form (without a runtime, at once) for every
        // later one.
        rendered.prepare(MediaType::JsonV1, true);
        let first = rendered.variant(MediaType::JsonV1, true);
        let second = rendered.variant(MediaType::JsonV1, true);
        assert_eq!(first.etag, second.etag, "asked for once more: still the fast form");
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
