//! File URLs on client pages point at pipgate, never at an upstream.
//!
//! A served page is the owner's page with every file URL replaced by
//! `../../files/{project}/{filename}`. The link is relative to `/simple/{project}/`, so it works
//! behind a reverse proxy that mounts pipgate under a path prefix, and it carries no upstream
//! host, path or query string (no SAS token or feed GUID can reach a client). PEP 658 metadata
//! URLs follow by rule: the file URL plus `.metadata`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::ProjectName;
use std::borrow::Cow;

use super::simple::{CoreMetadata, DistFile, FileView, ProjectPage};

/// Characters kept as they are in one path segment: RFC 3986 unreserved ones and `+` (common in
/// local version labels such as `1.0+cpu`). Everything else is percent-encoded.
pub const PATH_SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'+');

/// The URL of `filename` on the page of `project`, relative to that page.
pub fn client_file_url(project: &ProjectName, filename: &str) -> String {
    let mut url = Vec::with_capacity(FILES_PREFIX.len() + project.as_str().len() + 1 + filename.len());
    push_client_file_url(&mut url, project, filename);
    // Only ASCII was written: the prefix, a normalized name and percent-encoded text.
    String::from_utf8(url).unwrap_or_default()
}

const FILES_PREFIX: &str = "../../files/";

/// Appends [`client_file_url`] to `out`. Its text is ASCII that needs no escaping in a JSON
/// string or an HTML attribute: a page of thousands of files writes it straight into the page
/// rather than formatting a `String` per file.
pub fn push_client_file_url(out: &mut Vec<u8>, project: &ProjectName, filename: &str) {
    out.extend_from_slice(FILES_PREFIX.as_bytes());
    out.extend_from_slice(project.as_str().as_bytes());
    out.push(b'/');
    for piece in utf8_percent_encode(filename, PATH_SEGMENT) {
        out.extend_from_slice(piece.as_bytes());
    }
}

/// What pipgate offers for a wheel whose upstream offers no metadata, by the wheel's sha256:
/// `None` offers nothing.
pub type MetadataOffer<'a> = &'a dyn Fn(&str) -> Option<CoreMetadata>;

/// A [`MetadataOffer`] that can be kept (by a page whose HTML is rendered later).
pub type SharedOffer = std::sync::Arc<dyn Fn(&str) -> Option<CoreMetadata> + Send + Sync>;

/// The page as a client sees it: the owner's page with file URLs pointing at pipgate, and,
/// with `offer`, PEP 658 metadata advertised for wheels the owner lists without it (in both
/// spellings, so old and new clients agree; `yanked` and every other field stay as they are).
pub fn client_page(
    upstream_page: &ProjectPage,
    project: &ProjectName,
    offer: Option<MetadataOffer>,
) -> ProjectPage {
    // A copy, as `ClientView` shows it: served pages render through the view without copying.
    let view = ClientView { project, offer };
    let mut page = upstream_page.clone();
    for (file, listed) in page.files.iter_mut().zip(&upstream_page.files) {
        file.url = view.url(listed).into_owned();
        file.set_core_metadata(view.core_metadata(listed).map(Cow::into_owned));
    }
    page
}

/// The page as a client sees it, for the renderers: file URLs pointing at pipgate, and
/// metadata offered as [`client_page`] offers it, without copying the page.
pub struct ClientView<'a> {
    pub project: &'a ProjectName,
    pub offer: Option<MetadataOffer<'a>>,
}

impl FileView for ClientView<'_> {
    fn url<'f>(&self, file: &'f DistFile) -> Cow<'f, str> {
        Cow::Owned(client_file_url(self.project, &file.filename))
    }

    fn push_json_url(&self, out: &mut Vec<u8>, file: &DistFile) {
        out.push(b'"');
        push_client_file_url(out, self.project, &file.filename);
        out.push(b'"');
    }

    fn core_metadata<'f>(&self, file: &'f DistFile) -> Option<Cow<'f, CoreMetadata>> {
        if let Some(offer) = self.offer
            && let Some(sha256) = file.wheel_without_metadata()
        {
            return lowercase_then(sha256, offer).map(Cow::Owned);
        }
        file.core_metadata.as_ref().map(Cow::Borrowed)
    }
}

/// `f(text)` with `text` in lowercase, copied only when it is not lowercase already (listed
/// hashes almost always are; a page of thousands of wheels should not allocate for each).
fn lowercase_then<T>(text: &str, f: impl Fn(&str) -> T) -> T {
    if text.bytes().any(|b| b.is_ascii_uppercase()) { f(&text.to_ascii_lowercase()) } else { f(text) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::simple::parse_project_json;

    #[test]
    fn file_urls_point_at_pipgate_and_drop_upstream_secrets() {
        let body = br#"{"meta":{"api-version":"1.1"},"name":"acme-core","files":[
            {"filename":"acme_core-1.0+cpu-py3-none-any.whl","hashes":{"sha256":"aa"},"core-metadata":true,
             "url":"https://blob.test/x/acme_core-1.0+cpu-py3-none-any.whl?sv=2024&sig=SECRET"}]}"#;
        let base = url::Url::parse("https://feed.test/simple/acme-core/").unwrap();
        let upstream = parse_project_json(body, &base, "acme-core").unwrap();
        let project = ProjectName::new("acme-core").unwrap();
        let page = client_page(&upstream, &project, None);
        assert_eq!(page.files[0].url, "../../files/acme-core/acme_core-1.0+cpu-py3-none-any.whl");
        assert_eq!(page.files[0].hashes, upstream.files[0].hashes, "hashes survive the rewrite");
        let resolved = base.join(&page.files[0].url).unwrap();
        assert_eq!(resolved.path(), "/files/acme-core/acme_core-1.0+cpu-py3-none-any.whl");
        assert!(!page.files[0].url.contains("SECRET"));
    }

    #[test]
    fn metadata_is_offered_only_for_hashed_wheels_without_it() {
        let wheel_sha = "ab".repeat(32);
        let body = format!(
            r#"{{"meta":{{"api-version":"1.1"}},"name":"x","files":[
            {{"filename":"x-1.0-py3-none-any.whl","hashes":{{"sha256":"{wheel_sha}"}},"url":"https://f.test/a","yanked":"bad"}},
            {{"filename":"x-1.1-py3-none-any.whl","hashes":{{}},"url":"https://f.test/b"}},
            {{"filename":"x-1.2-py3-none-any.whl","hashes":{{"sha256":"{wheel_sha}"}},"core-metadata":{{"sha256":"cd"}},"url":"https://f.test/c"}},
            {{"filename":"x-1.0.tar.gz","hashes":{{"sha256":"{wheel_sha}"}},"url":"https://f.test/d"}}]}}"#
        );
        let base = url::Url::parse("https://f.test/simple/x/").unwrap();
        let upstream = parse_project_json(body.as_bytes(), &base, "x").unwrap();
        let project = ProjectName::new("x").unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let offer = |sha: &str| {
            asked.borrow_mut().push(sha.to_owned());
            Some(CoreMetadata::Flag(true))
        };
        let page = client_page(&upstream, &project, Some(&offer));
        assert_eq!(*asked.borrow(), [wheel_sha], "only the hashed wheel without metadata is asked about");
        assert_eq!(page.files[0].core_metadata, Some(CoreMetadata::Flag(true)));
        assert_eq!(page.files[0].yanked, super::super::simple::Yanked::Reason("bad".into()));
        assert_eq!(page.files[1].core_metadata, None, "no sha256: nothing to key or verify by");
        assert_eq!(
            page.files[2].core_metadata, upstream.files[2].core_metadata,
            "the upstream's own, untouched"
        );
        assert_eq!(page.files[3].core_metadata, None, "sdists are left alone");
        let refused = |_: &str| None;
        assert_eq!(client_page(&upstream, &project, Some(&refused)).files[0].core_metadata, None);
    }

    #[test]
    fn rendering_through_the_view_equals_rendering_the_rewritten_copy() {
        use crate::pypi::simple::{
            render_project_html, render_project_html_with, render_project_json, render_project_json_with,
        };
        let sha = "CD".repeat(32);
        let body = format!(
            r#"{{"meta":{{"api-version":"1.1","_last-serial":7}},"name":"x","project-status":{{"status":"active"}},
            "tracks":["https://t.test/x/"],"future-page-key":1,"files":[
            {{"filename":"x-1.0-py3-none-any.whl","hashes":{{"sha256":"{sha}"}},"url":"https://f.test/a?sig=S","yanked":"bad \"q\" \u0001\u00e9","future":[1],"esc\\key":"\t"}},
            {{"filename":"x-1.1-py3-none-any.whl","hashes":{{"sha256":"{sha}"}},"core-metadata":true,"url":"https://f.test/b","gpg-sig":false,"size":3,"upload-time":"2024-01-01T00:00:00Z","provenance":"https://p.test/1"}},
            {{"filename":"x-1.0.tar.gz","hashes":{{}},"requires-python":">=3.8","url":"https://f.test/c"}}]}}"#
        );
        let base = url::Url::parse("https://f.test/simple/x/").unwrap();
        let upstream = parse_project_json(body.as_bytes(), &base, "x").unwrap();
        let project = ProjectName::new("x").unwrap();
        let offer = |sha: &str| Some(CoreMetadata::Hashes([("sha256".to_owned(), sha.to_owned())].into()));
        for offer in [None, Some(&offer as MetadataOffer)] {
            let copy = client_page(&upstream, &project, offer);
            let view = ClientView { project: &project, offer };
            assert_eq!(
                String::from_utf8(render_project_json_with(&upstream, &view)).unwrap(),
                String::from_utf8(render_project_json(&copy)).unwrap()
            );
            assert_eq!(render_project_html_with(&upstream, &view), render_project_html(&copy));
            // And the same document as the model's own (derived) serialization, which holds
            // the metadata once: the renderers write it under both of its keys.
            let mut derived = serde_json::to_value(&copy).unwrap();
            derived["meta"] =
                serde_json::json!({"api-version": crate::pypi::simple::API_VERSION, "_last-serial": 7});
            for file in derived["files"].as_array_mut().unwrap() {
                if let Some(metadata) = file.get("core-metadata").cloned() {
                    file["dist-info-metadata"] = metadata;
                }
            }
            let rendered: serde_json::Value =
                serde_json::from_slice(&render_project_json_with(&upstream, &view)).unwrap();
            assert_eq!(rendered, derived);
        }
    }

    /// A wheel listed with `core-metadata: false` and PyPI's second spelling equal to it gets
    /// pipgate's offer as its core metadata, and the second spelling stays as listed.
    #[test]
    fn offered_metadata_leaves_the_second_spelling_as_listed() {
        let body = br#"{"meta":{"api-version":"1.1"},"name":"x","files":[
            {"filename":"x-1.0-py3-none-any.whl","url":"https://f.test/x-1.0-py3-none-any.whl",
             "hashes":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
             "core-metadata":false,"data-dist-info-metadata":false}]}"#;
        let base = url::Url::parse("https://feed.test/simple/x/").unwrap();
        let upstream = parse_project_json(body, &base, "x").unwrap();
        let project = ProjectName::new("x").unwrap();
        let offer = |sha: &str| Some(CoreMetadata::Hashes([("sha256".to_owned(), sha.to_owned())].into()));
        let copy = client_page(&upstream, &project, Some(&offer));
        let sha256 = upstream.files[0].hashes["sha256"].to_owned();
        assert_eq!(copy.files[0].core_metadata, offer(&sha256));
        assert_eq!(
            copy.files[0].data_dist_info_metadata(),
            Some(crate::pypi::simple::ListedRef::Known(&CoreMetadata::Flag(false)))
        );
        let rendered: serde_json::Value =
            serde_json::from_slice(&crate::pypi::simple::render_project_json(&copy)).unwrap();
        assert_eq!(rendered["files"][0]["data-dist-info-metadata"], serde_json::json!(false));
        assert_eq!(rendered["files"][0]["core-metadata"], serde_json::json!({ "sha256": sha256 }));
    }

    #[test]
    fn odd_file_names_stay_inside_one_segment() {
        let project = ProjectName::new("x").unwrap();
        assert_eq!(client_file_url(&project, "a b?c#d%.whl"), "../../files/x/a%20b%3Fc%23d%25.whl");
        // Written straight into a JSON page, the URL is the JSON string of the same text: no
        // character of a file name can end the string or need an escape.
        let view = ClientView { project: &project, offer: None };
        for name in ["x-1.0.whl", "q\"uote\\back\u{1}\u{7f}é\u{2028}.whl", "x-1.0+cpu.tar.gz"] {
            let file = DistFile::new(name.to_owned(), String::new());
            let mut written = Vec::new();
            view.push_json_url(&mut written, &file);
            let url = client_file_url(&project, name);
            assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&url).unwrap(), "{name:?}");
            assert!(url.is_ascii() && !url.contains(['"', '\\', '<', '>', '&']), "{url}");
        }
    }
}
