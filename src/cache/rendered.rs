//! A page rendered once per version into every representation pipgate serves, so a cache hit
//! is a copy of ready bytes: JSON and HTML, each plain and gzip-compressed, with their ETags.
//!
//! A page is made in the form its first client asked for ([`FirstForm`]). For gzip JSON, what
//! pip, uv, poetry and pdm ask for, the JSON is compressed as it is rendered (see
//! [`super::gzip`]) and its plain bytes are made only if a client asks for them uncompressed;
//! for any other form the JSON is rendered plainly. The HTML is rendered when a client first
//! asks for it. A cold answer's gzip is level 1 (a few milliseconds, on two threads for a
//! large page); the same form at level 6 (tens of milliseconds for thousands of files) is
//! made in the background once the form is asked for a second time, so a page asked for once
//! never pays for it and the CPU it takes never competes with the cold answer. Each encoding
//! has its own strong ETag, so a client never sees two byte sequences under one tag.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http::HeaderValue;

use super::gzip::{Source, compress, compress_source, exact};
use crate::pypi::MediaType;

/// One representation: its bytes and its strong ETag.
#[derive(Debug, Clone)]
pub struct Variant {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// Renders the HTML form when it is first asked for.
type LaterHtml = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// Writes a page's client JSON in pieces, for compressing without holding it whole.
pub type JsonSource = std::sync::Arc<dyn Source + Send>;

/// A serialized form (JSON or HTML) and its compressed versions, as they are made.
struct Form {
    plain: OnceLock<Bytes>,
    /// How to make `plain` when it is not made yet (HTML, until a client asks for it).
    make: std::sync::Mutex<Option<LaterHtml>>,
    /// What writes the form in pieces (a page's client JSON): its compressed versions are made
    /// from it, and `plain` only for a client that asks for the form uncompressed.
    source: Option<JsonSource>,
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
    /// How long the JSON form's first gzip took, rendering and compressing, when it was made
    /// with the page: for the `Server-Timing` of the answers that waited for it.
    pub made_in: Option<MadeIn>,
}

/// The form a page's first answer needs, made with the page; the others are made when a
/// client asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstForm {
    pub media_type: MediaType,
    pub gzip: bool,
}

impl FirstForm {
    /// What pip, uv, poetry and pdm ask for, and so what a page made without a client waiting
    /// for it (a background refresh, a re-render, a page read from disk) is made in.
    pub const CLIENTS: FirstForm = FirstForm { media_type: MediaType::JsonV1, gzip: true };
}

/// Where the time of a page's first form went.
#[derive(Debug, Clone, Copy)]
pub struct MadeIn {
    pub render: std::time::Duration,
    pub gzip: std::time::Duration,
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
        let version = (crc.sum(), json.len() as u64);
        let json = Form::new(Some(exact(json)), None, None);
        Rendered::with_forms(version, json, html, None)
    }

    /// Like [`Rendered::new`], for a page's client JSON written by `json`: made now straight
    /// into its level-1 gzip (what a cold answer needs, and whose CRC gives the ETag), and
    /// rendered plain only if a client asks for that.
    pub fn streamed(json: JsonSource, html: impl FnOnce() -> Vec<u8> + Send + 'static) -> Rendered {
        let fast = compress_source(&*json, 1, true);
        let made_in = MadeIn { render: fast.writing, gzip: fast.deflating };
        let form = Form::new(None, None, Some(json));
        let _ = form.fast.set(fast.body);
        Rendered::with_forms((fast.crc, fast.len), form, html, Some(made_in))
    }

    /// The ETags from the JSON form's CRC-32 and length, and the HTML form made later.
    fn with_forms(
        (crc, len): (u32, u64),
        json: std::sync::Arc<Form>,
        html: impl FnOnce() -> Vec<u8> + Send + 'static,
        made_in: Option<MadeIn>,
    ) -> Rendered {
        let version = format!("{crc:08x}{len:x}");
        let tag = |t: &str| HeaderValue::from_str(&format!("\"{version}-{t}\"")).expect("hex and ASCII tags");
        let tags = |t: &str| Tags([tag(t), tag(&format!("{t}-gz1")), tag(&format!("{t}-gz"))]);
        Rendered {
            json,
            html: Form::new(None, Some(Box::new(html)), None),
            tags: [tags("j"), tags("h"), tags("t")],
            made_in,
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
        if gzip {
            form.fast.get_or_init(|| form.compressed(1, true));
        } else {
            form.plain();
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
    fn new(
        plain: Option<Bytes>,
        make: Option<LaterHtml>,
        source: Option<JsonSource>,
    ) -> std::sync::Arc<Form> {
        let ready = OnceLock::new();
        if let Some(plain) = plain {
            let _ = ready.set(plain);
        }
        std::sync::Arc::new(Form {
            plain: ready,
            make: std::sync::Mutex::new(make),
            source,
            fast: OnceLock::new(),
            best: OnceLock::new(),
            fast_answers: AtomicU32::new(0),
        })
    }

    /// The form gzipped at `level`: from the plain bytes if they are made, else as its source
    /// writes it (never making them), else from the plain bytes made now.
    fn compressed(&self, level: u32, parallel: bool) -> Bytes {
        match (self.plain.get(), &self.source) {
            (None, Some(source)) => compress_source(&**source, level, parallel).body,
            _ => compress(self.plain(), level, parallel),
        }
    }

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
            let _ = form.best.set(form.compressed(6, false));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(make_best)),
            Err(_) => make_best(),
        }
    }

    /// The plain bytes, made now if they are made on demand.
    fn plain(&self) -> &Bytes {
        self.plain.get_or_init(|| {
            if let Some(source) = &self.source {
                return exact(source.to_vec());
            }
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
