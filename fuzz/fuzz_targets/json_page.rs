//! The upstream JSON parser (PEP 691 project and root pages) over any bytes: never panics; a
//! page it accepts renders, and its rendering parses back with the same files and versions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::pypi::simple::{parse_project_html, parse_project_json, parse_root_json, render_project_html, render_project_json};

fuzz_target!(|body: &[u8]| {
    let base = url::Url::parse("https://upstream.example/simple/demo/").unwrap();
    if let Ok(page) = parse_project_json(body, &base, "demo") {
        let json = render_project_json(&page);
        let again = parse_project_json(&json, &base, "demo").expect("a rendered page parses");
        assert_eq!(again.files.len(), page.files.len());
        assert_eq!(again.versions, page.versions);
        let html = render_project_html(&page);
        assert!(parse_project_html(html.as_bytes(), &base, "demo").is_ok(), "rendered HTML parses");
    }
    let _ = parse_root_json(body);
});
