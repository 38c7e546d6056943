//! A project as the page cache holds it: the owner, its page, and the rendered answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gzip::{Part, Source};
use super::rendered::{FirstForm, Rendered};
use crate::pypi::ProjectName;
use crate::pypi::rewrite::{ClientView, MetadataOffer, SharedOffer};
use crate::pypi::simple::{
    DistFile, JsonPiece, ProjectPage, json_size_hint, render_project_html_with, render_project_json_piece,
};
use crate::upstream::Validators;

/// A resolved project: who owns it, its page (upstream URLs), and what clients get.
#[derive(Debug)]
pub struct CachedProject {
    /// Index of the owning upstream.
    pub owner: usize,
    pub page: Arc<ProjectPage>,
    pub validators: Validators,
    /// When the owner last confirmed this page (a 200 or a 304).
    pub fetched_at: SystemTime,
    pub rendered: Arc<Rendered>,
    /// File name → position in `page.files`, so a file request finds its entry without a
    /// scan of a page that may list thousands of files. Built after the page is served (or
    /// by the first file request, if that comes first): a cold page answer does not wait
    /// for it.
    by_filename: Arc<OnceLock<HashMap<Box<str>, u32>>>,
    /// When a background refresh last started (ms since the epoch), so that a failing
    /// upstream is not asked again on every request.
    last_attempt_ms: AtomicU64,
}

impl CachedProject {
    /// Renders `page` for clients, offering metadata for wheels that lack it when `offer`
    /// is given, `first` now. Costs milliseconds for large pages: run off the reactor.
    pub fn new(
        project: &ProjectName,
        owner: usize,
        page: ProjectPage,
        validators: Validators,
        fetched_at: SystemTime,
        offer: Option<SharedOffer>,
        first: FirstForm,
    ) -> CachedProject {
        let page = Arc::new(page);
        let rendered = render(project, &page, offer, first);
        CachedProject {
            owner,
            page,
            validators,
            fetched_at,
            rendered: Arc::new(rendered),
            by_filename: Arc::new(OnceLock::new()),
            last_attempt_ms: AtomicU64::new(0),
        }
    }

    /// The same page, confirmed again now (after a 304).
    pub fn confirmed(&self, at: SystemTime) -> CachedProject {
        CachedProject {
            owner: self.owner,
            page: self.page.clone(),
            validators: self.validators.clone(),
            fetched_at: at,
            rendered: self.rendered.clone(),
            by_filename: self.by_filename.clone(),
            last_attempt_ms: AtomicU64::new(0),
        }
    }

    /// The same page version rendered again, for what pipgate now knows about the metadata
    /// it offers (a hash learned, a wheel refused).
    pub fn rerendered(&self, project: &ProjectName, offer: Option<SharedOffer>) -> CachedProject {
        CachedProject {
            owner: self.owner,
            page: self.page.clone(),
            validators: self.validators.clone(),
            fetched_at: self.fetched_at,
            rendered: Arc::new(render(project, &self.page, offer, FirstForm::CLIENTS)),
            by_filename: self.by_filename.clone(),
            last_attempt_ms: AtomicU64::new(self.last_attempt_ms.load(Ordering::Relaxed)),
        }
    }

    /// The file this page lists under `filename`.
    pub fn file(&self, filename: &str) -> Option<&DistFile> {
        self.files_by_name().get(filename).map(|&i| &self.page.files[i as usize])
    }

    /// The file-name index, built now if it is not yet (a millisecond for thousands of files).
    pub fn files_by_name(&self) -> &HashMap<Box<str>, u32> {
        self.by_filename.get_or_init(|| {
            let mut by_filename = HashMap::with_capacity(self.page.files.len());
            for (i, file) in self.page.files.iter().enumerate() {
                // The first listing of a name wins, as it would for a client reading the page.
                by_filename.entry(file.filename.as_str().into()).or_insert(i as u32);
            }
            by_filename
        })
    }

    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fetched_at).unwrap_or_default()
    }

    /// Claims the right to start a background refresh: true at most once per `interval`.
    pub fn claim_refresh(&self, now: SystemTime, interval: Duration) -> bool {
        let now_ms = millis(now);
        let last = self.last_attempt_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < interval.as_millis() as u64 {
            return false;
        }
        self.last_attempt_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Bytes held: the parsed page, the forms rendered so far, and the file-name index (built
    /// for every page after its answer). Estimated from the sizes of what is held, so the
    /// cache's memory cap is a cap on all of it.
    pub fn weight(&self) -> u32 {
        let index: usize =
            self.page.files.iter().map(|file| file.filename.len() + size_of::<(Box<str>, u32)>() + 24).sum();
        let held = self.page.held_bytes() + self.rendered.weight() + index + size_of::<CachedProject>();
        u32::try_from(held).unwrap_or(u32::MAX)
    }
}

/// The JSON now: for gzip JSON (what pip and uv ask for) straight into its first gzip, else
/// plain (its ETag is the plain bytes' CRC either way). The HTML when a client first asks for
/// it.
fn render(
    project: &ProjectName,
    page: &Arc<ProjectPage>,
    offer: Option<SharedOffer>,
    first: FirstForm,
) -> Rendered {
    let json = ClientJson { project: project.clone(), page: page.clone(), offer: offer.clone() };
    let (project, page) = (project.clone(), page.clone());
    let html = move || {
        render_project_html_with(&page, &ClientView { project: &project, offer: borrowed(&offer) })
            .into_bytes()
    };
    if first == FirstForm::CLIENTS {
        return Rendered::streamed(Arc::new(json), html);
    }
    Rendered::new(json.to_vec(), html)
}

/// A page's client JSON gzipped as a cold page makes it: rendered a few dozen entries at a
/// time into its level-1 compression, a large page's halves on two threads (for the benches).
pub fn cold_json_gzip(project: &ProjectName, page: Arc<ProjectPage>) -> bytes::Bytes {
    let json = ClientJson { project: project.clone(), page, offer: None };
    super::gzip::compress_source(&json, 1, true).body
}

/// A page's client JSON, written a few dozen entries at a time for [`super::gzip`]. A form made
/// from it later (the plain bytes, the level-6 gzip) is rendered again, with what the metadata
/// store offers then, as the HTML always was; each form keeps its own strong ETag, and a page
/// is rendered again under a new version soon after the store learns something
/// ([`super::PageCache::rerender_soon`]).
struct ClientJson {
    project: ProjectName,
    page: Arc<ProjectPage>,
    offer: Option<SharedOffer>,
}

/// Entries rendered per chunk: about 45 KiB of a PyPI page, so the buffer stays in the CPU's
/// cache between the render and the compression.
const ENTRIES_PER_CHUNK: usize = 64;

impl Source for ClientJson {
    fn write(&self, part: Part, sink: &mut dyn FnMut(&[u8])) {
        let view = ClientView { project: &self.project, offer: borrowed(&self.offer) };
        let files = self.page.files.len();
        let (range, head, tail) = match part {
            Part::Whole => (0..files, true, true),
            Part::First => (0..files / 2, true, false),
            Part::Second => (files / 2..files, false, true),
        };
        // A small page's whole JSON, else a chunk's worth.
        let mut chunk = Vec::with_capacity(self.size_hint().min(json_size_hint(ENTRIES_PER_CHUNK)));
        if head {
            render_project_json_piece(&mut chunk, &self.page, &view, JsonPiece::Head);
        }
        let mut start = range.start;
        while start < range.end {
            let end = (start + ENTRIES_PER_CHUNK).min(range.end);
            render_project_json_piece(&mut chunk, &self.page, &view, JsonPiece::Files(start..end));
            sink(&chunk);
            chunk.clear();
            start = end;
        }
        if tail {
            render_project_json_piece(&mut chunk, &self.page, &view, JsonPiece::Tail);
        }
        if !chunk.is_empty() {
            sink(&chunk);
        }
    }

    fn size_hint(&self) -> usize {
        json_size_hint(self.page.files.len())
    }
}

fn borrowed(offer: &Option<SharedOffer>) -> Option<MetadataOffer<'_>> {
    offer.as_deref().map(|offer| offer as MetadataOffer)
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// What the page cache remembers about a project name.
#[derive(Debug, Clone)]
pub enum Entry {
    Found(Arc<CachedProject>),
    /// Every candidate upstream answered 404/410 at this time.
    Missing {
        at: SystemTime,
    },
}

impl Entry {
    pub fn weight(&self) -> u32 {
        match self {
            Entry::Found(project) => project.weight(),
            Entry::Missing { .. } => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::pypi::MediaType;
    use crate::pypi::simple::{parse_project_json, render_project_json_with};

    fn page(files: usize) -> ProjectPage {
        let entries: Vec<String> = (0..files)
            .map(|i| {
                format!(
                    r#"{{"filename":"demo-1.{i}.tar.gz","url":"https://f.example/demo-1.{i}.tar.gz","hashes":{{"sha256":"{i:064x}"}},"yanked":"reason \"{i}\""}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"meta":{{"api-version":"1.1","_last-serial":7}},"name":"demo","files":[{}],"tracks":["https://t.example/"],"x-odd":{{"k":[1]}}}}"#,
            entries.join(",")
        );
        let base = url::Url::parse("https://f.example/simple/demo/").unwrap();
        parse_project_json(json.as_bytes(), &base, "demo").unwrap()
    }

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_json_written_in_pieces_and_halves_is_the_json_rendered_whole() {
        let project = ProjectName::new("demo").unwrap();
        // No file, fewer than a chunk, a chunk's edges, and halves of many chunks each.
        for files in [0, 1, ENTRIES_PER_CHUNK, ENTRIES_PER_CHUNK + 1, 2 * ENTRIES_PER_CHUNK + 1, 3001] {
            let page = Arc::new(page(files));
            let whole = render_project_json_with(&page, &ClientView { project: &project, offer: None });
            let json = ClientJson { project: project.clone(), page: page.clone(), offer: None };
            let written = |part| {
                let mut out = Vec::new();
                json.write(part, &mut |chunk| out.extend_from_slice(chunk));
                out
            };
            assert_eq!(written(Part::Whole), whole, "{files} files");
            assert_eq!([written(Part::First), written(Part::Second)].concat(), whole, "{files} files");
            serde_json::from_slice::<serde_json::Value>(&whole).unwrap();

            // What a cached page serves: the same bytes gzipped and plain, under the ETags a
            // page made from the whole bytes has.
            let rendered = render(&project, &page, None, FirstForm::CLIENTS);
            let made_whole = Rendered::new(whole.clone(), Vec::new);
            for gzip in [true, false] {
                let variant = rendered.variant(MediaType::JsonV1, gzip);
                let body = if gzip { gunzip(&variant.body) } else { variant.body.to_vec() };
                assert_eq!(body, whole, "{files} files, gzip {gzip}");
                assert_eq!(variant.etag, made_whole.variant(MediaType::JsonV1, gzip).etag);
            }
        }
    }

    #[test]
    fn a_page_first_asked_for_plain_is_made_plain_under_the_same_tags() {
        let project = ProjectName::new("demo").unwrap();
        let page = Arc::new(page(3000));
        let plain_first =
            render(&project, &page, None, FirstForm { media_type: MediaType::JsonV1, gzip: false });
        let plain = plain_first.ready(MediaType::JsonV1, false).expect("made with the page");
        assert_eq!(plain_first.weight(), plain.body.len(), "no gzip made for a client that did not ask");
        let gzip_first = render(&project, &page, None, FirstForm::CLIENTS);
        for (media, gzip) in
            [(MediaType::JsonV1, false), (MediaType::JsonV1, true), (MediaType::HtmlV1, true)]
        {
            assert_eq!(plain_first.variant(media, gzip).etag, gzip_first.variant(media, gzip).etag);
        }
    }

    #[test]
    fn a_page_served_gzipped_never_holds_its_plain_json() {
        let project = ProjectName::new("demo").unwrap();
        let page = Arc::new(page(3000));
        let rendered = render(&project, &page, None, FirstForm::CLIENTS);
        let gzipped = rendered.variant(MediaType::JsonV1, true).body.len();
        assert_eq!(rendered.weight(), 2 * gzipped, "the level-1 form, and the level-6 form it leads to");
        let plain = rendered.variant(MediaType::JsonV1, false).body.len();
        assert_eq!(rendered.weight(), plain + 2 * gzipped, "made for the client that asked for it");
    }
}
