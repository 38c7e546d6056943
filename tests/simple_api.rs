//! The simple API as clients see it through pipgate:
//! - HTML and JSON answers for one project carry the same files and fields, whichever format
//!   the upstream speaks, and every file URL points at pipgate;
//! - content negotiation (q-values, `format`, 406) and `Vary: Accept`;
//! - non-normalized names redirect, invalid names are 400, unknown routes 404;
//! - PEP 658 metadata is served through pipgate;
//! - the root page lists every upstream's projects.

use crate::support;

use support::fake_index::{FakeFile, FakeIndex, PageMode};
use support::{HTML_ACCEPT, PIP_ACCEPT, Pipgate, config_for, get, request, wheel};

async fn one_upstream(mode: PageMode) -> (FakeIndex, Pipgate) {
    let index = FakeIndex::start().await;
    index.set_page_mode(mode);
    let mut old = FakeFile::from(wheel::build("acme-core", "0.9", "public"));
    old.yanked = Some("broken <build>".into());
    old.requires_python = Some(">=3.8, <4".into());
    index.add("acme-core", old);
    index.add("acme-core", wheel::build("acme-core", "1.0", "public"));
    let pipgate = Pipgate::start(&config_for(&[("pypi", &index.url())], ""), Default::default()).await;
    (index, pipgate)
}

/// The fields both formats can carry, per file, from a JSON page.
/// (filename, url, sha256, requires-python, yanked reason, metadata in both spellings)
type Fields = Vec<(String, String, String, String, String, bool)>;

fn fields_from_json(page: &serde_json::Value) -> Fields {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_owned(),
                f["url"].as_str().unwrap().to_owned(),
                f["hashes"]["sha256"].as_str().unwrap().to_owned(),
                f["requires-python"].as_str().unwrap_or("").to_owned(),
                match &f["yanked"] {
                    serde_json::Value::String(reason) => reason.clone(),
                    serde_json::Value::Bool(true) => "yanked".into(),
                    _ => String::new(),
                },
                f["core-metadata"].is_object() && f["dist-info-metadata"] == f["core-metadata"],
            )
        })
        .collect()
}

fn fields_from_html(html: &str) -> Fields {
    let base = url::Url::parse("http://pipgate.test/simple/acme-core/").unwrap();
    let page = pipgate::pypi::simple::parse_project_html(html.as_bytes(), &base, "acme-core").unwrap();
    page.files
        .iter()
        .map(|f| {
            let relative = f.url.strip_prefix("http://pipgate.test/").map(|p| format!("../../{p}")).unwrap();
            (
                f.filename.clone(),
                relative,
                f.hashes["sha256"].to_owned(),
                f.requires_python.as_deref().unwrap_or_default().to_owned(),
                match &f.yanked {
                    pipgate::pypi::simple::Yanked::Reason(r) => r.to_string(),
                    pipgate::pypi::simple::Yanked::Flag(true) => "yanked".into(),
                    _ => String::new(),
                },
                f.core_metadata.is_some(),
            )
        })
        .collect()
}

#[tokio::test]
async fn html_and_json_carry_the_same_files_whatever_the_upstream_speaks() {
    for mode in [PageMode::Json, PageMode::Html] {
        let (_index, pipgate) = one_upstream(mode.clone()).await;
        let url = format!("{}acme-core/", pipgate.index_url());
        let json = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
        assert_eq!(json.header("content-type"), "application/vnd.pypi.simple.v1+json");
        assert_eq!(json.header("vary"), "Accept, Accept-Encoding");
        let json = json.json();
        assert_eq!(json["meta"]["api-version"], "1.4");
        assert_eq!(json["versions"], serde_json::json!(["0.9", "1.0"]), "{mode:?}");
        let html = get(&url, &[("accept", HTML_ACCEPT)]).await.unwrap();
        assert_eq!(html.header("content-type"), "text/html; charset=utf-8");
        assert!(html.text().contains(r#"<meta name="pypi:repository-version" content="1.4">"#));

        let from_json = fields_from_json(&json);
        assert_eq!(from_json, fields_from_html(&html.text()), "{mode:?}");
        assert_eq!(from_json.len(), 2);
        let (filename, url, _, requires_python, yanked, metadata) = &from_json[0];
        assert_eq!(url, &format!("../../files/acme-core/{filename}"), "file URLs point at pipgate");
        assert_eq!(requires_python, ">=3.8, <4");
        assert_eq!(yanked, "broken <build>");
        assert!(metadata, "core-metadata in both spellings");
    }
}

#[tokio::test]
async fn json_only_fields_pass_through() {
    let (_index, pipgate) = one_upstream(PageMode::Json).await;
    let json =
        get(&format!("{}acme-core/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap().json();
    let file = &json["files"][1];
    assert!(file["size"].as_u64().unwrap() > 100);
    assert_eq!(file["upload-time"], "2025-01-02T03:04:05.000000Z");
}

#[tokio::test]
async fn negotiation_and_name_handling() {
    let (_index, pipgate) = one_upstream(PageMode::Json).await;
    let base = pipgate.index_url();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case<'_>] = &[
        ("acme-core/", &[("accept", "application/json")], 406, ""),
        ("acme-core/", &[], 200, "text/html; charset=utf-8"),
        (
            "acme-core/?format=application/vnd.pypi.simple.v1+json",
            &[("accept", "text/html")],
            200,
            "application/vnd.pypi.simple.v1+json",
        ),
        (
            "acme-core/",
            &[("accept", "application/vnd.pypi.simple.latest+html")],
            200,
            "application/vnd.pypi.simple.v1+html",
        ),
        ("Acme_Core/", &[], 301, ""),
        ("acme.core", &[], 301, ""),
        ("acme-core", &[], 301, ""),
        ("%D0%B0cme-core/", &[], 400, ""),
        ("..%2f..%2fetc/", &[], 400, ""),
        ("acme%00core/", &[], 400, ""),
        ("no-such-project/", &[], 404, ""),
    ];
    for (path, headers, status, content_type) in cases {
        let answer = get(&format!("{base}{path}"), headers).await.unwrap();
        assert_eq!(answer.status.as_u16(), *status, "{path}: {}", answer.text());
        if !content_type.is_empty() {
            assert_eq!(answer.header("content-type"), *content_type, "{path}");
        }
    }
    let moved = get(&format!("{base}Acme_Core/?format=text/html"), &[]).await.unwrap();
    assert_eq!(moved.header("location"), "../acme-core/?format=text/html");
    let moved = get(&format!("{base}acme.core"), &[]).await.unwrap();
    assert_eq!(moved.header("location"), "acme-core/");
    for path in ["/", "/files/", "/simple/acme-core/extra/", "/admin"] {
        let answer = get(&format!("{}{path}", pipgate.base), &[]).await.unwrap();
        assert_eq!(answer.status, 404, "{path}");
    }
    let post = request("POST", &format!("{base}acme-core/"), &[]).await.unwrap();
    assert_eq!((post.status.as_u16(), post.header("allow")), (405, "GET, HEAD"));
}

#[tokio::test]
async fn files_and_metadata_come_through_pipgate_verified() {
    let (index, pipgate) = one_upstream(PageMode::Json).await;
    let page =
        get(&format!("{}acme-core/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap().json();
    let expected = wheel::build("acme-core", "1.0", "public");
    let url = format!("{}/files/acme-core/{}", pipgate.base, expected.filename);
    let file = get(&url, &[]).await.unwrap();
    assert_eq!(file.status, 200);
    assert_eq!(file.body.as_ref(), expected.bytes.as_slice());
    assert_eq!(wheel::sha256_hex(&file.body), page["files"][1]["hashes"]["sha256"].as_str().unwrap());
    assert_eq!(file.header("content-length"), expected.bytes.len().to_string());

    let metadata = get(&format!("{url}.metadata"), &[]).await.unwrap();
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.body.as_ref(), expected.metadata.as_slice());

    // HEAD is answered from the index: no download from the upstream.
    let before = index.count("/files/");
    let head = request("HEAD", &url, &[]).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), expected.bytes.len().to_string());
    assert_eq!(index.count("/files/"), before);

    // A file the page does not list is not fetched, whatever its name.
    let other =
        get(&format!("{}/files/acme-core/evil-1.0-py3-none-any.whl", pipgate.base), &[]).await.unwrap();
    assert_eq!(other.status, 404);
    assert_eq!(index.count("/files/evil"), 0);
}

#[tokio::test]
async fn the_root_page_lists_every_upstreams_projects() {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("six", wheel::build("six", "1.0", "public"));
    public.add("acme-core", wheel::build("acme-core", "9.0", "attacker"));
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], "");
    let pipgate = Pipgate::start(&config, Default::default()).await;
    let json = get(&pipgate.index_url(), &[("accept", PIP_ACCEPT)]).await.unwrap().json();
    let names: Vec<&str> =
        json["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme-core", "six"]);
    let html = get(&pipgate.index_url(), &[]).await.unwrap().text();
    assert!(html.contains(r#"<a href="six/">six</a>"#), "{html}");
}
