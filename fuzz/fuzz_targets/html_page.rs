//! The upstream HTML parser (project and root pages) over any bytes: never panics; a page it
//! accepts renders to HTML and JSON, and the rendered JSON parses back with the same files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::pypi::simple::{parse_project_html, parse_project_json, parse_root_html, render_project_html, render_project_json};

fuzz_target!(|body: &[u8]| {
    let base = url::Url::parse("https://upstream.example/simple/demo/").unwrap();
    if let Ok(page) = parse_project_html(body, &base, "demo") {
        let html = render_project_html(&page);
        assert!(!html.to_ascii_lowercase().contains("<script"), "upstream markup reached the page");
        let json = render_project_json(&page);
        let again = parse_project_json(&json, &base, "demo").expect("a rendered page parses");
        assert_eq!(again.files.len(), page.files.len());
    }
    let _ = parse_root_html(body, &base);
});
