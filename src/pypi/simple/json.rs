//! PEP 691 JSON: parse upstream pages, render client pages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::{
    API_VERSION, AsIs, CoreMetadata, DistFile, FileView, ListedRef, PageError, ProjectList, ProjectPage,
    Yanked, absolute_url, json_text,
};

/// Parses a JSON project page fetched from `base`, resolving file URLs against it.
pub fn parse_project_json(body: &[u8], base: &Url, project: &str) -> Result<ProjectPage, PageError> {
    let mut page: ProjectPage = serde_json::from_str(utf8(body)?)?;
    check_api_version(&page.meta.api_version)?;
    for file in &mut page.files {
        let href = std::mem::take(&mut file.url);
        let (url, fragment_hash) =
            absolute_url(base, href).map_err(|bad| bad.of_file(file.filename.clone()))?;
        file.url = url;
        if let Some((name, digest)) = fragment_hash {
            file.hashes.insert_if_absent(&name, &digest);
        }
        if let Some(provenance) = &file.provenance {
            file.provenance = base.join(provenance).ok().map(|url| String::from(url).into());
        }
    }
    page.finish_parse(project);
    Ok(page)
}

/// The page as text, checked to be UTF-8 (as JSON must be) once, whole: read from bytes,
/// serde_json checks every string on its own, which was a twentieth of a large page's parse.
fn utf8(body: &[u8]) -> Result<&str, PageError> {
    std::str::from_utf8(body).map_err(|error| {
        PageError::Json(serde::de::Error::custom(format_args!("the page is not UTF-8: {error}")))
    })
}

/// Renders a project page as PEP 691 JSON with pipgate's api-version.
pub fn render_project_json(page: &ProjectPage) -> Vec<u8> {
    render_project_json_with(page, &AsIs)
}

/// Renders a project page as PEP 691 JSON, each file's URL and core metadata as `view` shows
/// them. Keys come in the model's order; unknown keys of the page and of each file follow.
/// Written directly (see [`json_text`]): this is most of a cold page's render.
pub fn render_project_json_with(page: &ProjectPage, view: &dyn FileView) -> Vec<u8> {
    let mut out = Vec::with_capacity(json_size_hint(page.files.len()));
    for piece in [JsonPiece::Head, JsonPiece::Files(0..page.files.len()), JsonPiece::Tail] {
        render_project_json_piece(&mut out, page, view, piece);
    }
    out
}

/// About how many bytes the JSON of a page of `files` files takes: what a PyPI entry takes (URL,
/// two digests, upload time) each, so a buffer sized by it grows rarely.
pub fn json_size_hint(files: usize) -> usize {
    512 + files * 768
}

/// A run of a page's JSON, so a large page can be written (and compressed) a few entries at a
/// time instead of whole: `Head`, then `Files` ranges that together cover the list in order,
/// then `Tail`, joined, are [`render_project_json_with`]'s bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPiece {
    /// From the opening brace to the files list's opening bracket.
    Head,
    /// These entries of `page.files`, each after a comma but the list's first.
    Files(std::ops::Range<usize>),
    /// From the files list's closing bracket to the end.
    Tail,
}

/// Appends `piece` of the page's JSON (as [`render_project_json_with`] writes it) to `out`.
pub fn render_project_json_piece(
    out: &mut Vec<u8>,
    page: &ProjectPage,
    view: &dyn FileView,
    piece: JsonPiece,
) {
    match piece {
        JsonPiece::Head => {
            out.extend_from_slice(b"{\"meta\":{\"api-version\":");
            json_text::string(out, API_VERSION);
            json_text::extra_entries(out, &page.meta.extra);
            out.extend_from_slice(b"},\"name\":");
            json_text::string(out, &page.name);
            out.extend_from_slice(b",\"files\":[");
        }
        JsonPiece::Files(range) => {
            let start = range.start;
            for (i, file) in page.files[range].iter().enumerate() {
                if start + i > 0 {
                    out.push(b',');
                }
                render_file(out, file, view);
            }
        }
        JsonPiece::Tail => {
            out.extend_from_slice(b"],\"versions\":");
            json_text::strings(out, &page.versions);
            if let Some(status) = &page.project_status {
                out.extend_from_slice(b",\"project-status\":");
                json_text::value(out, status);
            }
            if !page.tracks.is_empty() {
                out.extend_from_slice(b",\"tracks\":");
                json_text::strings(out, &page.tracks);
            }
            if !page.alternate_locations.is_empty() {
                out.extend_from_slice(b",\"alternate-locations\":");
                json_text::strings(out, &page.alternate_locations);
            }
            json_text::extra_entries(out, &page.extra);
            out.push(b'}');
        }
    }
}

/// One file entry, with the keys `DistFile`'s fields serialize to, and the view's URL and
/// metadata.
fn render_file(out: &mut Vec<u8>, f: &DistFile, view: &dyn FileView) {
    out.extend_from_slice(b"{\"filename\":");
    json_text::string(out, &f.filename);
    out.extend_from_slice(b",\"url\":");
    view.push_json_url(out, f);
    out.extend_from_slice(b",\"hashes\":");
    hashes(out, &f.hashes);
    if let Some(requires_python) = &f.requires_python {
        out.extend_from_slice(b",\"requires-python\":");
        json_text::string(out, requires_python);
    }
    match &f.yanked {
        Yanked::Flag(false) => {}
        Yanked::Flag(true) => out.extend_from_slice(b",\"yanked\":true"),
        Yanked::Reason(reason) => {
            out.extend_from_slice(b",\"yanked\":");
            json_text::string(out, reason);
        }
    }
    // Both spellings always hold the same value (PEP 714).
    if let Some(metadata) = view.core_metadata(f) {
        for key in [&b",\"core-metadata\":"[..], b",\"dist-info-metadata\":"] {
            out.extend_from_slice(key);
            core_metadata(out, &metadata);
        }
    }
    if let Some(gpg_sig) = f.gpg_sig {
        out.extend_from_slice(b",\"gpg-sig\":");
        json_text::boolean(out, gpg_sig);
    }
    if let Some(size) = f.size {
        out.extend_from_slice(b",\"size\":");
        json_text::number(out, size);
    }
    if let Some(upload_time) = &f.upload_time {
        out.extend_from_slice(b",\"upload-time\":");
        json_text::string(out, upload_time);
    }
    if let Some(provenance) = &f.provenance {
        out.extend_from_slice(b",\"provenance\":");
        json_text::string(out, provenance);
    }
    if let Some(listed) = f.data_dist_info_metadata() {
        out.extend_from_slice(b",\"data-dist-info-metadata\":");
        match listed {
            ListedRef::Known(metadata) => core_metadata(out, metadata),
            ListedRef::Other(value) => json_text::value(out, value),
        }
    }
    json_text::extra_entries(out, f.extra.iter());
    out.push(b'}');
}

/// A metadata value: `true`/`false`, or its table of hashes.
fn core_metadata(out: &mut Vec<u8>, metadata: &CoreMetadata) {
    match metadata {
        CoreMetadata::Flag(flag) => json_text::boolean(out, *flag),
        CoreMetadata::Hashes(listed) => hashes(out, listed),
    }
}

fn hashes(out: &mut Vec<u8>, hashes: &super::Hashes) {
    out.push(b'{');
    for (i, (name, digest)) in hashes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_text::key(out, name);
        json_text::string(out, digest);
    }
    out.push(b'}');
}

/// Parses a JSON root page (the list of projects).
pub fn parse_root_json(body: &[u8]) -> Result<ProjectList, PageError> {
    #[derive(Deserialize)]
    struct Root {
        #[serde(default)]
        meta: Option<super::Meta>,
        projects: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        name: String,
    }
    let root: Root = serde_json::from_slice(body)?;
    if let Some(meta) = &root.meta {
        check_api_version(&meta.api_version)?;
    }
    Ok(ProjectList { names: root.projects.into_iter().map(|p| p.name).collect() })
}

/// Renders the root page as PEP 691 JSON.
pub fn render_root_json(list: &ProjectList) -> Vec<u8> {
    #[derive(Serialize)]
    struct Root<'a> {
        meta: RenderedMeta<'a>,
        projects: Vec<Entry<'a>>,
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
    }
    let empty = Map::new();
    let root = Root {
        meta: RenderedMeta::new(&empty),
        projects: list.names.iter().map(|name| Entry { name }).collect(),
    };
    serde_json::to_vec(&root).expect("a project list always serializes")
}

#[derive(Serialize)]
struct RenderedMeta<'a> {
    #[serde(rename = "api-version")]
    api_version: &'static str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl<'a> RenderedMeta<'a> {
    fn new(extra: &'a Map<String, Value>) -> Self {
        RenderedMeta { api_version: API_VERSION, extra }
    }
}

/// PEP 629: a client must refuse a major version it does not know.
fn check_api_version(version: &str) -> Result<(), PageError> {
    match version.split('.').next() {
        Some("1") => Ok(()),
        _ => Err(PageError::UnsupportedVersion(version.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::simple::{CoreMetadata, Yanked};

    fn base() -> Url {
        Url::parse("https://upstream.test/simple/acme-core/").unwrap()
    }

    const PAGE: &str = r#"{
        "meta": {"api-version": "1.3", "_last-serial": 42},
        "name": "acme-core",
        "files": [
            {"filename": "acme_core-1.0-py3-none-any.whl", "url": "../../files/acme_core-1.0-py3-none-any.whl",
             "hashes": {"sha256": "aa"}, "requires-python": ">=3.8", "yanked": "broken build",
             "dist-info-metadata": {"sha256": "bb"}, "size": 10, "upload-time": "2024-01-01T00:00:00Z",
             "provenance": "https://upstream.test/prov/1", "future-file-key": [1, 2]},
            {"filename": "acme_core-1.1.tar.gz", "url": "https://files.test/acme_core-1.1.tar.gz#sha256=cc",
             "hashes": {}, "core-metadata": true, "gpg-sig": false, "yanked": false}
        ],
        "versions": ["1.0", "1.1"],
        "project-status": {"status": "archived", "reason": "moved"},
        "tracks": ["https://pypi.org/simple/acme-core/"],
        "future-project-key": {"x": 1}
    }"#;

    #[test]
    fn a_bad_file_url_is_reported_without_its_query_string() {
        let page = r#"{"meta": {"api-version": "1.0"}, "name": "acme-core", "files": [
            {"filename": "acme_core-1.0.tar.gz", "url": "https://[blob.test/a.tar.gz?sig=canary-sas", "hashes": {}}
        ]}"#;
        let error = parse_project_json(page.as_bytes(), &base(), "acme-core").unwrap_err().to_string();
        assert!(error.contains("https://[blob.test/a.tar.gz"), "{error}");
        assert!(!error.contains("canary-sas"), "{error}");
    }

    #[test]
    fn pypis_data_dist_info_metadata_passes_through_as_listed_in_every_form() {
        let listed = [
            serde_json::json!({"sha256": "aa", "md5": "bb"}),
            serde_json::json!(true),
            serde_json::json!("odd"),
            serde_json::json!({"sha256": {"nested": 1}}),
            serde_json::json!(null),
        ];
        let files: Vec<Value> = listed
            .iter()
            .enumerate()
            .map(|(i, value)| {
                serde_json::json!({"filename": format!("acme_core-1.{i}.tar.gz"), "url": "https://f.test/a", "data-dist-info-metadata": value})
            })
            .collect();
        let body = serde_json::json!({"meta": {"api-version": "1.1"}, "name": "acme-core", "files": files});
        let page = parse_project_json(body.to_string().as_bytes(), &base(), "acme-core").unwrap();
        assert!(page.files.iter().all(|f| f.extra.is_empty()), "modelled, not kept as an unknown key");
        assert_eq!(
            page.files[0].data_dist_info_metadata(),
            Some(ListedRef::Known(&CoreMetadata::Hashes(
                [("md5".to_owned(), "bb".to_owned()), ("sha256".to_owned(), "aa".to_owned())].into()
            )))
        );
        let rendered: Value = serde_json::from_slice(&render_project_json(&page)).unwrap();
        for (i, value) in listed.iter().enumerate() {
            assert_eq!(&rendered["files"][i]["data-dist-info-metadata"], value, "file {i}");
        }
    }

    /// Versions derived from file names come once each, in first-seen order, also when a
    /// version's files are not listed together.
    #[test]
    fn derived_versions_are_each_listed_once() {
        let names = [
            "acme_core-1.0-py3-none-any.whl",
            "acme_core-1.0.tar.gz",
            "acme_core-1.1-py3-none-any.whl",
            "acme_core-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
            "acme_core-1.2.tar.gz",
            "acme_core-1.1.tar.gz",
        ];
        let files: Vec<String> = names
            .iter()
            .map(|name| format!(r#"{{"filename":"{name}","url":"https://f.test/{name}"}}"#))
            .collect();
        let body =
            format!(r#"{{"meta":{{"api-version":"1.0"}},"name":"acme-core","files":[{}]}}"#, files.join(","));
        let page = parse_project_json(body.as_bytes(), &base(), "acme-core").unwrap();
        assert_eq!(page.versions, ["1.0", "1.1", "1.2"]);
    }

    /// PyPI's second spelling of the metadata, equal to `core-metadata`, is held once whichever
    /// key comes first, and still written as listed; a different value is held as its own.
    #[test]
    fn data_dist_info_metadata_equal_to_core_metadata_is_held_once() {
        let entry = |i: usize, first: &str, second: &str| {
            format!(
                r#"{{"filename":"acme_core-1.{i}.tar.gz","url":"https://f.test/a","hashes":{{"sha256":"{SHA}"}},{first},{second}}}"#
            )
        };
        const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let core = format!(r#""core-metadata":{{"sha256":"{SHA}"}}"#);
        let same = format!(r#""data-dist-info-metadata":{{"sha256":"{SHA}"}}"#);
        let other = r#""data-dist-info-metadata":{"sha256":"ff"}"#.to_owned();
        let files = [entry(0, &core, &same), entry(1, &same, &core), entry(2, &core, &other)];
        let body =
            format!(r#"{{"meta":{{"api-version":"1.1"}},"name":"acme-core","files":[{}]}}"#, files.join(","));
        let page = parse_project_json(body.as_bytes(), &base(), "acme-core").unwrap();
        let held: Vec<_> = page.files.iter().map(|f| f.data_dist_info.clone()).collect();
        assert_eq!(held[0], super::super::DataDistInfo::SameAsCore);
        assert_eq!(held[1], super::super::DataDistInfo::SameAsCore, "the order of the keys does not matter");
        assert!(matches!(held[2], super::super::DataDistInfo::Listed(_)));
        assert!(page.files[0].held_bytes() < page.files[2].held_bytes());

        let listed: Value = serde_json::from_str(&body).unwrap();
        let rendered: Value = serde_json::from_slice(&render_project_json(&page)).unwrap();
        let derived = serde_json::to_value(&page).unwrap();
        for i in 0..3 {
            let want = &listed["files"][i]["data-dist-info-metadata"];
            assert_eq!(&rendered["files"][i]["data-dist-info-metadata"], want, "rendered, file {i}");
            assert_eq!(&derived["files"][i]["data-dist-info-metadata"], want, "serialized, file {i}");
        }
    }

    #[test]
    fn hash_tables_read_alike_borrowed_or_with_escapes_and_a_page_must_be_utf8() {
        let page = |hashes: &str| {
            let body = format!(
                r#"{{"name":"acme-core","files":[{{"filename":"acme_core-1.0.tar.gz","url":"https://f.test/a",
                "hashes":{hashes},"core-metadata":{hashes},"data-dist-info-metadata":{hashes}}}]}}"#
            );
            parse_project_json(body.as_bytes(), &base(), "acme-core").unwrap()
        };
        let digest = "a".repeat(64);
        let plain = page(&format!(r#"{{"sha256":"{digest}","md5":"bb"}}"#));
        let escaped =
            page(&format!(r#"{{"sha\u0032\u00356":"\u0061{}","\u006dd5":"b\u0062"}}"#, &digest[1..]));
        assert_eq!(plain, escaped);
        assert_eq!(plain.files[0].hashes.get("sha256"), Some(digest.as_str()));
        assert_eq!(plain.files[0].hashes.get("md5"), Some("bb"));

        let mut body =
            br#"{"name":"acme-core","files":[{"filename":"acme_core-1.0.tar.gz","url":"https://f.test/"#
                .to_vec();
        body.extend_from_slice(b"\xff\"}]}");
        let error = parse_project_json(&body, &base(), "acme-core").unwrap_err().to_string();
        assert!(error.contains("not UTF-8"), "{error}");
    }

    #[test]
    fn parses_every_field_and_keeps_unknown_keys() {
        let page = parse_project_json(PAGE.as_bytes(), &base(), "acme-core").unwrap();
        let wheel = &page.files[0];
        assert_eq!(wheel.url, "https://upstream.test/files/acme_core-1.0-py3-none-any.whl");
        assert_eq!(wheel.yanked, Yanked::Reason("broken build".into()));
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        let bb = CoreMetadata::Hashes([("sha256".to_owned(), "bb".to_owned())].into());
        assert_eq!(wheel.core_metadata, Some(bb.clone()), "legacy spelling is read");
        let rendered: Value = serde_json::from_slice(&render_project_json(&page)).unwrap();
        assert_eq!(rendered["files"][0]["core-metadata"], serde_json::json!({"sha256": "bb"}));
        assert_eq!(
            rendered["files"][0]["dist-info-metadata"], rendered["files"][0]["core-metadata"],
            "both spellings"
        );
        assert_eq!(wheel.size, Some(10));
        assert_eq!(wheel.extra["future-file-key"], serde_json::json!([1, 2]));
        let sdist = &page.files[1];
        assert_eq!(&sdist.hashes["sha256"], "cc", "fragment hash moves into hashes");
        assert_eq!(sdist.url, "https://files.test/acme_core-1.1.tar.gz");
        assert_eq!(sdist.gpg_sig, Some(false));
        assert_eq!(page.project_status.as_ref().unwrap().status, "archived");
        assert_eq!(page.meta.extra["_last-serial"], 42);
        assert_eq!(page.extra["future-project-key"], serde_json::json!({"x": 1}));
    }

    #[test]
    fn round_trip_keeps_fields_and_speaks_1_4() {
        let page = parse_project_json(PAGE.as_bytes(), &base(), "acme-core").unwrap();
        let rendered: Value = serde_json::from_slice(&render_project_json(&page)).unwrap();
        assert_eq!(rendered["meta"]["api-version"], "1.4");
        assert_eq!(rendered["meta"]["_last-serial"], 42);
        assert_eq!(rendered["files"][0]["core-metadata"], serde_json::json!({"sha256": "bb"}));
        assert_eq!(rendered["files"][0]["dist-info-metadata"], serde_json::json!({"sha256": "bb"}));
        assert_eq!(rendered["files"][0]["yanked"], "broken build");
        assert_eq!(rendered["files"][0]["future-file-key"], serde_json::json!([1, 2]));
        assert!(rendered["files"][1].get("yanked").is_none(), "false yanked is omitted");
        assert_eq!(rendered["project-status"]["reason"], "moved");
        assert_eq!(rendered["future-project-key"], serde_json::json!({"x": 1}));
        let reparsed = parse_project_json(&render_project_json(&page), &base(), "acme-core").unwrap();
        assert_eq!(reparsed.files, page.files);
    }

    #[test]
    fn rejects_bodies_that_are_not_pages() {
        assert!(parse_project_json(b"<html></html>", &base(), "acme-core").is_err());
        assert!(parse_project_json(br#"{"meta":{"api-version":"1.0"},"name":"x"}"#, &base(), "x").is_err());
        let v2 = br#"{"meta":{"api-version":"2.0"},"name":"x","files":[]}"#;
        assert!(matches!(parse_project_json(v2, &base(), "x"), Err(PageError::UnsupportedVersion(_))));
    }

    #[test]
    fn files_with_path_like_names_are_dropped() {
        let body = br#"{"meta":{"api-version":"1.1"},"name":"x","files":[
            {"filename":"../../etc/passwd","url":"https://x.test/a","hashes":{}},
            {"filename":"a\u0000b.whl","url":"https://x.test/b","hashes":{}},
            {"filename":"x-1.0.tar.gz","url":"https://x.test/x-1.0.tar.gz","hashes":{}}]}"#;
        let page = parse_project_json(body, &base(), "x").unwrap();
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["x-1.0.tar.gz"]);
    }

    #[test]
    fn root_round_trip() {
        let list =
            parse_root_json(br#"{"meta":{"api-version":"1.0"},"projects":[{"name":"a"},{"name":"B_c"}]}"#)
                .unwrap();
        assert_eq!(list.names, ["a", "B_c"]);
        let rendered: Value = serde_json::from_slice(&render_root_json(&list)).unwrap();
        assert_eq!(rendered["projects"][1]["name"], "B_c");
    }
}
