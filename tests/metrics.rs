//! `/metrics`: what pipgate counts, exactly, for a known sequence of requests, with labels
//! that never carry a project name or a URL.

mod support;

use support::fake_index::{FakeIndex, FileMode, PageMode};
use support::{PIP_ACCEPT, Pipgate, config_for, get, wheel};

/// The value of the sample of `name` whose labels include every `label="value"` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .and_then(|line| line.rsplit(' ').next())
        .map(|value| value.parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counts_lookups_upstream_outcomes_mismatches_and_fail_closed_decisions() {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], "");
    let pipgate = Pipgate::start(&config, Default::default()).await;
    let page = |name: &str| format!("{}{name}/", pipgate.index_url());

    get(&page("acme-core"), &[("accept", PIP_ACCEPT)]).await.unwrap(); // index miss
    get(&page("acme-core"), &[("accept", PIP_ACCEPT)]).await.unwrap(); // index hit
    get(&page("six"), &[]).await.unwrap(); // corp 404, pypi 200
    private.set_file_mode(FileMode::CorruptByte);
    let wheel = wheel::build("acme-core", "1.0", "private");
    let _ = get(&format!("{}/files/acme-core/{}", pipgate.base, wheel.filename), &[]).await; // mismatch
    private.set_page_mode(PageMode::Status(500));
    let failed = get(&page("acme-new"), &[]).await.unwrap(); // fail closed at corp
    assert_eq!(failed.status, 502);

    let metrics = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    let index =
        |result| sample(&text, "pipgate_cache_lookups_total", &[("cache", "index"), ("result", result)]);
    // acme-core miss, six miss, acme-new miss; acme-core hit, and the file request's page hit.
    assert_eq!((index("miss"), index("hit")), (3.0, 2.0), "{text}");
    assert_eq!(sample(&text, "pipgate_cache_lookups_total", &[("cache", "file"), ("result", "miss")]), 1.0);
    let upstream = |name, outcome| {
        sample(
            &text,
            "pipgate_upstream_requests_total",
            &[("upstream", name), ("kind", "page"), ("outcome", outcome)],
        )
    };
    assert_eq!(upstream("corp", "ok"), 1.0);
    assert_eq!(upstream("corp", "not_found"), 1.0);
    assert_eq!(upstream("pypi", "ok"), 1.0);
    assert_eq!(upstream("corp", "status"), 1.0, "the 500, by reason");
    assert_eq!(sample(&text, "pipgate_hash_mismatches_total", &[("upstream", "corp")]), 1.0);
    assert_eq!(sample(&text, "pipgate_fail_closed_total", &[("upstream", "corp")]), 1.0);
    assert_eq!(
        sample(&text, "pipgate_requests_total", &[("route", "simple_project"), ("status", "200")]),
        3.0
    );
    assert_eq!(
        sample(&text, "pipgate_requests_total", &[("route", "simple_project"), ("status", "502")]),
        1.0
    );
    assert!(sample(&text, "pipgate_response_bytes_total", &[("route", "simple_project")]) > 0.0);
    assert!(text.contains("pipgate_request_duration_seconds_bucket"));
    for unbounded in ["acme", "six", "127.0.0.1", ".whl"] {
        assert!(!text.contains(unbounded), "a label carries {unbounded:?}:\n{text}");
    }
}
