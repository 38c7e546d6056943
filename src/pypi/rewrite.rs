//! File URLs on client pages point at pipgate, never at an upstream.
//!
//! A served page is the owner's page with every file URL replaced by
//! `../../files/{project}/{filename}`. The link is relative to `/simple/{project}/`, so it works
//! behind a reverse proxy that mounts pipgate under a path prefix, and it carries no upstream
//! host, path or query string (no SAS token or feed GUID can reach a client). PEP 658 metadata
//! URLs follow by rule: the file URL plus `.metadata`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::ProjectName;
use super::simple::{CoreMetadata, ProjectPage};

/// Characters kept as they are in one path segment: RFC 3986 unreserved ones and `+` (common in
/// local version labels such as `1.0+cpu`). Everything else is percent-encoded.
pub const PATH_SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'+');

/// The URL of `filename` on the page of `project`, relative to that page.
pub fn client_file_url(project: &ProjectName, filename: &str) -> String {
    format!("../../files/{project}/{}", utf8_percent_encode(filename, PATH_SEGMENT))
}

/// What pipgate offers for a wheel whose upstream offers no metadata, by the wheel's sha256:
/// `None` offers nothing.
pub type MetadataOffer<'a> = &'a dyn Fn(&str) -> Option<CoreMetadata>;

/// The page as a client sees it: the owner's page with file URLs pointing at pipgate, and,
/// with `offer`, PEP 658 metadata advertised for wheels the owner lists without it (in both
/// spellings, so old and new clients agree; `yanked` and every other field stay as they are).
pub fn client_page(
    upstream_page: &ProjectPage,
    project: &ProjectName,
    offer: Option<MetadataOffer>,
) -> ProjectPage {
    let mut page = upstream_page.clone();
    for file in &mut page.files {
        file.url = client_file_url(project, &file.filename);
        if let Some(offer) = offer
            && let Some(sha256) = file.wheel_without_metadata()
            && let Some(metadata) = offer(&sha256.to_ascii_lowercase())
        {
            file.core_metadata = Some(metadata.clone());
            file.dist_info_metadata = Some(metadata);
        }
    }
    page
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
    fn odd_file_names_stay_inside_one_segment() {
        let project = ProjectName::new("x").unwrap();
        assert_eq!(client_file_url(&project, "a b?c#d%.whl"), "../../files/x/a%20b%3Fc%23d%25.whl");
    }
}
