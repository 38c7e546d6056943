//! PEP 503 HTML: parse upstream pages with a real HTML tokenizer, render client pages.
//!
//! Parsing keeps only what the model holds (links and their `data-*` attributes, the `pypi:*`
//! meta tags, `<base href>`); everything else in upstream markup is dropped. Rendering writes
//! every value through attribute or text escaping, so no upstream markup reaches a client.

use std::fmt::Write;

use html_escape::{decode_html_entities, encode_double_quoted_attribute, encode_text};
use lol_html::{HtmlRewriter, Settings, element};
use url::Url;

use super::{
    API_VERSION, CoreMetadata, DistFile, Hashes, PageError, ProjectList, ProjectPage, ProjectStatus, Yanked,
    absolute_url, filename_from_url, preferred_hash,
};

/// An `<a>` element's attributes, entity-decoded.
#[derive(Default)]
struct RawLink {
    href: String,
    requires_python: Option<String>,
    yanked: Option<String>,
    core_metadata: Option<String>,
    dist_info_metadata: Option<String>,
    gpg_sig: Option<String>,
    provenance: Option<String>,
}

/// What the tokenizer pulls out of a page.
#[derive(Default)]
struct RawPage {
    base_href: Option<String>,
    links: Vec<RawLink>,
    metas: Vec<(String, String)>,
    has_form: bool,
}

fn attribute(el: &lol_html::html_content::Element<'_, '_>, name: &str) -> Option<String> {
    el.get_attribute(name).map(|v| decode_html_entities(&v).into_owned())
}

fn tokenize(body: &[u8]) -> Result<RawPage, PageError> {
    let mut links = Vec::new();
    let mut metas = Vec::new();
    let mut base_href = None;
    let mut has_form = false;
    let settings = Settings::new()
        .append_element_content_handler(element!("a[href]", |el| {
            links.push(RawLink {
                href: attribute(el, "href").unwrap_or_default(),
                requires_python: attribute(el, "data-requires-python"),
                yanked: attribute(el, "data-yanked"),
                core_metadata: attribute(el, "data-core-metadata"),
                dist_info_metadata: attribute(el, "data-dist-info-metadata"),
                gpg_sig: attribute(el, "data-gpg-sig"),
                provenance: attribute(el, "data-provenance"),
            });
            Ok(())
        }))
        .append_element_content_handler(element!("meta[name]", |el| {
            if let (Some(name), Some(content)) = (attribute(el, "name"), attribute(el, "content")) {
                metas.push((name, content));
            }
            Ok(())
        }))
        .append_element_content_handler(element!("base[href]", |el| {
            base_href.get_or_insert_with(|| attribute(el, "href").unwrap_or_default());
            Ok(())
        }))
        .append_element_content_handler(element!("form", |_| {
            has_form = true;
            Ok(())
        }));
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    rewriter.write(body).map_err(|e| PageError::Html(e.to_string()))?;
    rewriter.end().map_err(|e| PageError::Html(e.to_string()))?;
    Ok(RawPage { base_href, links, metas, has_form })
}

/// Parses an HTML project page fetched from `base`.
pub fn parse_project_html(body: &[u8], base: &Url, project: &str) -> Result<ProjectPage, PageError> {
    let raw = tokenize(body)?;
    if raw.has_form {
        // A proxy or feed that answers 200 with a form (a login page: Entra's first step asks for
        // an e-mail address, with no password field) must not look like an empty project.
        // Simple pages never hold forms.
        return Err(PageError::Html("the page is a sign-in form, not a simple page".to_owned()));
    }
    let base = match &raw.base_href {
        Some(href) => base.join(href).unwrap_or_else(|_| base.clone()),
        None => base.clone(),
    };
    let mut page = ProjectPage {
        name: project.to_owned(),
        files: Vec::with_capacity(raw.links.len()),
        versions: Vec::new(),
        project_status: None,
        tracks: Vec::new(),
        alternate_locations: Vec::new(),
        meta: super::Meta::default(),
        extra: Default::default(),
    };
    let mut status_reason = None;
    for (name, content) in raw.metas {
        match name.as_str() {
            "pypi:repository-version" => page.meta.api_version = content,
            "pypi:project-status" => {
                page.project_status = Some(ProjectStatus { status: content, reason: None });
            }
            "pypi:project-status-reason" => status_reason = Some(content),
            "pypi:tracks" => page.tracks.push(content),
            "pypi:alternate-locations" => page.alternate_locations.push(content),
            _ => {}
        }
    }
    if let Some(status) = &mut page.project_status {
        status.reason = status_reason;
    }
    if !page.meta.api_version.starts_with("1.") && page.meta.api_version != "1" {
        return Err(PageError::UnsupportedVersion(page.meta.api_version));
    }
    for link in raw.links {
        let (url, fragment_hash) =
            absolute_url(&base, link.href).map_err(|bad| bad.of_file(String::new()))?;
        let Some(filename) = filename_from_url(&url) else {
            tracing::debug!(href = super::shown_href(&url), "skipping a link that names no file");
            continue;
        };
        let mut hashes = Hashes::new();
        if let Some((name, digest)) = fragment_hash {
            hashes.insert(&name, &digest);
        }
        page.files.push(DistFile {
            filename,
            url,
            hashes,
            requires_python: link.requires_python.map(String::into_boxed_str),
            yanked: match link.yanked {
                None => Yanked::Flag(false),
                Some(reason) if reason.is_empty() => Yanked::Flag(true),
                Some(reason) => Yanked::Reason(reason.into_boxed_str()),
            },
            // PEP 714: the new attribute wins over the legacy one.
            core_metadata: link
                .core_metadata
                .as_deref()
                .and_then(parse_metadata_attribute)
                .or_else(|| link.dist_info_metadata.as_deref().and_then(parse_metadata_attribute)),
            gpg_sig: link.gpg_sig.map(|v| v == "true"),
            size: None,
            upload_time: None,
            provenance: link.provenance.and_then(|p| base.join(&p).ok()).map(|url| String::from(url).into()),
            data_dist_info: super::DataDistInfo::Absent,
            extra: Default::default(),
        });
    }
    page.finish_parse(project);
    Ok(page)
}

/// `data-core-metadata`: `true`, or `hashname=digest` (PEP 658/714).
fn parse_metadata_attribute(value: &str) -> Option<CoreMetadata> {
    match value.split_once('=') {
        Some((name, digest)) => {
            Some(CoreMetadata::Hashes([(name.to_ascii_lowercase(), digest.to_ascii_lowercase())].into()))
        }
        None if value == "false" => None,
        None => Some(CoreMetadata::Flag(true)),
    }
}

fn metadata_attribute(metadata: &CoreMetadata) -> Option<String> {
    match metadata {
        CoreMetadata::Flag(false) => None,
        CoreMetadata::Flag(true) => Some("true".to_owned()),
        CoreMetadata::Hashes(hashes) => match preferred_hash(hashes) {
            Some((name, digest)) => Some(format!("{name}={digest}")),
            None => Some("true".to_owned()),
        },
    }
}

/// Renders a project page as PEP 503 HTML with pipgate's api-version.
pub fn render_project_html(page: &ProjectPage) -> String {
    render_project_html_with(page, &super::AsIs)
}

/// Renders a project page as HTML, each file's URL and core metadata as `view` shows them.
pub fn render_project_html_with(page: &ProjectPage, view: &dyn super::FileView) -> String {
    let name = encode_text(&page.name);
    let mut out = String::with_capacity(256 + page.files.len() * 256);
    out.push_str("<!DOCTYPE html>\n<html>\n  <head>\n");
    let _ = writeln!(out, "    <meta name=\"pypi:repository-version\" content=\"{API_VERSION}\">");
    if let Some(status) = &page.project_status {
        meta_tag(&mut out, "pypi:project-status", &status.status);
        if let Some(reason) = &status.reason {
            meta_tag(&mut out, "pypi:project-status-reason", reason);
        }
    }
    for url in &page.tracks {
        meta_tag(&mut out, "pypi:tracks", url);
    }
    for url in &page.alternate_locations {
        meta_tag(&mut out, "pypi:alternate-locations", url);
    }
    let _ = write!(
        out,
        "    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
    );
    for file in &page.files {
        out.push_str("    <a href=\"");
        let url = view.url(file);
        let href = match preferred_hash(&file.hashes) {
            Some((hash, digest)) => format!("{url}#{hash}={digest}"),
            None => url.into_owned(),
        };
        out.push_str(&encode_double_quoted_attribute(&href));
        out.push('"');
        if let Some(requires_python) = &file.requires_python {
            data_attribute(&mut out, "data-requires-python", requires_python);
        }
        match &file.yanked {
            Yanked::Flag(false) => {}
            Yanked::Flag(true) => data_attribute(&mut out, "data-yanked", ""),
            Yanked::Reason(reason) => data_attribute(&mut out, "data-yanked", reason),
        }
        if let Some(value) = view.core_metadata(file).as_deref().and_then(metadata_attribute) {
            data_attribute(&mut out, "data-core-metadata", &value);
            data_attribute(&mut out, "data-dist-info-metadata", &value);
        }
        if let Some(gpg_sig) = file.gpg_sig {
            data_attribute(&mut out, "data-gpg-sig", if gpg_sig { "true" } else { "false" });
        }
        if let Some(provenance) = &file.provenance {
            data_attribute(&mut out, "data-provenance", provenance);
        }
        out.push('>');
        out.push_str(&encode_text(&file.filename));
        out.push_str("</a><br>\n");
    }
    out.push_str("  </body>\n</html>\n");
    out
}

fn meta_tag(out: &mut String, name: &str, content: &str) {
    let _ =
        writeln!(out, "    <meta name=\"{name}\" content=\"{}\">", encode_double_quoted_attribute(content));
}

fn data_attribute(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, " {name}=\"{}\"", encode_double_quoted_attribute(value));
}

/// Parses an HTML root page: project names are the last path segment of each link.
pub fn parse_root_html(body: &[u8], base: &Url) -> Result<ProjectList, PageError> {
    let raw = tokenize(body)?;
    if raw.has_form {
        return Err(PageError::Html("the page is a sign-in form, not a simple page".to_owned()));
    }
    let names = raw
        .links
        .iter()
        .filter_map(|link| {
            let url = base.join(&link.href).ok()?;
            let segment = url.path_segments()?.rfind(|s| !s.is_empty())?;
            let name = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
            Some(name.into_owned())
        })
        .collect();
    Ok(ProjectList { names })
}

/// Renders the root page as PEP 503 HTML, with links relative to `/simple/`.
pub fn render_root_html(list: &ProjectList) -> String {
    let mut out = String::with_capacity(128 + list.names.len() * 64);
    out.push_str("<!DOCTYPE html>\n<html>\n  <head>\n");
    let _ = writeln!(out, "    <meta name=\"pypi:repository-version\" content=\"{API_VERSION}\">");
    out.push_str("    <title>Simple index</title>\n  </head>\n  <body>\n");
    for name in &list.names {
        let href =
            format!("{}/", percent_encoding::utf8_percent_encode(name, crate::pypi::rewrite::PATH_SEGMENT));
        let _ = writeln!(
            out,
            "    <a href=\"{}\">{}</a><br>",
            encode_double_quoted_attribute(&href),
            encode_text(name)
        );
    }
    out.push_str("  </body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://feed.test/org/_packaging/feed/pypi/simple/acme-core/").unwrap()
    }

    // Upstream markup as Azure, pypiserver and older indexes write it: entities in attributes,
    // unquoted values, a script and extra markup that must never reach a client.
    const PAGE: &str = r#"<!DOCTYPE html><html><head>
        <meta name="pypi:repository-version" content="1.1">
        <meta name="pypi:project-status" content="quarantined">
        <meta name="pypi:project-status-reason" content="malware &amp; more">
        <meta name="pypi:tracks" content="https://pypi.org/simple/acme-core/">
        <script>alert(1)</script><title>Links for acme-core</title></head><body>
        <a href="https://feed.test/org/_packaging/0000-guid/pypi/download/acme-core/1.0/acme_core-1.0-py3-none-any.whl#sha256=ABCD"
           data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=ef01">acme_core-1.0-py3-none-any.whl</a><br/>
        <a href=../../packages/acme_core-1.1.tar.gz data-yanked="" data-gpg-sig=true>acme_core-1.1.tar.gz</a>
        <a href="/packages/acme_core-1.2.tar.gz?a=1&amp;b=2" data-yanked="bad &quot;release&quot;" data-core-metadata="true">x</a>
        <a href="../">parent</a>
        </body></html>"#;

    #[test]
    fn parses_links_attributes_and_meta_tags() {
        let page = parse_project_html(PAGE.as_bytes(), &base(), "acme-core").unwrap();
        assert_eq!(page.files.len(), 3, "the parent link names no file");
        let wheel = &page.files[0];
        assert_eq!(wheel.filename, "acme_core-1.0-py3-none-any.whl");
        assert_eq!(&wheel.hashes["sha256"], "abcd");
        assert!(!wheel.url.contains('#'));
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(
            wheel.core_metadata,
            Some(CoreMetadata::Hashes([("sha256".into(), "ef01".into())].into()))
        );
        let sdist = &page.files[1];
        assert_eq!(sdist.url, "https://feed.test/org/_packaging/feed/pypi/packages/acme_core-1.1.tar.gz");
        assert_eq!(sdist.yanked, Yanked::Flag(true));
        assert_eq!(sdist.gpg_sig, Some(true));
        let third = &page.files[2];
        assert_eq!(third.url, "https://feed.test/packages/acme_core-1.2.tar.gz?a=1&b=2");
        assert_eq!(third.yanked, Yanked::Reason("bad \"release\"".into()));
        assert_eq!(page.project_status.unwrap().reason.as_deref(), Some("malware & more"));
        assert_eq!(page.tracks, ["https://pypi.org/simple/acme-core/"]);
        assert_eq!(page.versions, ["1.0", "1.1", "1.2"]);
    }

    #[test]
    fn rendered_page_reparses_to_the_same_model_and_carries_no_upstream_markup() {
        let page = parse_project_html(PAGE.as_bytes(), &base(), "acme-core").unwrap();
        let html = render_project_html(&page);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("content=\"1.4\""));
        assert!(html.contains("data-requires-python=\"&gt;=3.8\""), "{html}");
        let reparsed = parse_project_html(html.as_bytes(), &base(), "acme-core").unwrap();
        assert_eq!(reparsed.files, page.files);
        assert_eq!(reparsed.project_status, page.project_status);
    }

    #[test]
    fn hostile_values_are_escaped() {
        let mut page = parse_project_html(PAGE.as_bytes(), &base(), "acme-core").unwrap();
        page.files[0].requires_python = Some("\"><script>alert(1)</script>".into());
        page.files[0].filename = "<b>x</b>".into();
        let html = render_project_html(&page);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn a_sign_in_form_is_not_an_empty_project() {
        let login = br#"<html><body><form action="/_signin"><input name="u"><input type="password" name="p"></form></body></html>"#;
        assert!(parse_project_html(login, &base(), "acme-core").is_err());
        // Entra's first sign-in step: an e-mail field, no password field.
        let email =
            br#"<html><body><form method="post"><input type="email" name="loginfmt"></form></body></html>"#;
        assert!(parse_project_html(email, &base(), "acme-core").is_err());
        assert!(parse_root_html(email, &base()).is_err());
    }

    #[test]
    fn root_page_names() {
        let html =
            br#"<html><body><a href="/simple/acme-core/">acme-core</a><a href="six/">six</a></body></html>"#;
        let list = parse_root_html(html, &Url::parse("https://x.test/simple/").unwrap()).unwrap();
        assert_eq!(list.names, ["acme-core", "six"]);
        let again = parse_root_html(
            render_root_html(&list).as_bytes(),
            &Url::parse("https://p.test/simple/").unwrap(),
        );
        assert_eq!(again.unwrap(), list);
    }
}
