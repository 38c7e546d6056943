//! `/metrics`: what pipgate counts, exactly, for a known sequence of requests, with labels
//! that never carry a project name or a URL.

use crate::support;

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

    private.add("acme-slow", wheel::build("acme-slow", "1.0", "private"));
    let mut page_bytes = 0;
    for (name, accept) in [("acme-core", PIP_ACCEPT), ("acme-core", PIP_ACCEPT), ("six", "")] {
        // An index miss, an index hit, then corp 404 and pypi 200.
        page_bytes += get(&page(name), &[("accept", accept)]).await.unwrap().body.len();
    }
    // One slow page: the upstream takes 1.5 s, so its latency lands above the 1 s bucket.
    private.set_page_mode(PageMode::Hang(std::time::Duration::from_millis(1500)));
    page_bytes += get(&page("acme-slow"), &[]).await.unwrap().body.len();
    private.set_file_mode(FileMode::CorruptByte);
    let wheel = wheel::build("acme-core", "1.0", "private");
    let _ = get(&format!("{}/files/acme-core/{}", pipgate.base, wheel.filename), &[]).await; // mismatch
    private.set_page_mode(PageMode::Status(500));
    let failed = get(&page("acme-new"), &[]).await.unwrap(); // fail closed at corp
    assert_eq!(failed.status, 502);
    page_bytes += failed.body.len();

    let metrics = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    let index =
        |result| sample(&text, "pipgate_cache_lookups_total", &[("cache", "index"), ("result", result)]);
    // acme-core, six, acme-slow and acme-new miss; acme-core hits, and so does the file
    // request's page lookup.
    assert_eq!((index("miss"), index("hit")), (4.0, 2.0), "{text}");
    assert_eq!(sample(&text, "pipgate_cache_lookups_total", &[("cache", "file"), ("result", "miss")]), 1.0);
    let upstream = |name, outcome| {
        sample(
            &text,
            "pipgate_upstream_requests_total",
            &[("upstream", name), ("kind", "page"), ("outcome", outcome)],
        )
    };
    assert_eq!(upstream("corp", "ok"), 2.0);
    assert_eq!(upstream("corp", "not_found"), 1.0);
    assert_eq!(upstream("pypi", "ok"), 1.0);
    assert_eq!(upstream("corp", "status"), 1.0, "the 500, by reason");
    assert_eq!(sample(&text, "pipgate_hash_mismatches_total", &[("upstream", "corp")]), 1.0);
    assert_eq!(sample(&text, "pipgate_fail_closed_total", &[("upstream", "corp")]), 1.0);
    assert_eq!(
        sample(&text, "pipgate_requests_total", &[("route", "simple_project"), ("status", "200")]),
        4.0
    );
    assert_eq!(
        sample(&text, "pipgate_requests_total", &[("route", "simple_project"), ("status", "502")]),
        1.0
    );
    // Bytes are counted as they are sent: exactly what the clients received.
    assert_eq!(
        sample(&text, "pipgate_response_bytes_total", &[("route", "simple_project")]),
        page_bytes as f64
    );
    // Five page requests: four answered at loopback speed, the slow one after 1.5 s.
    let bucket = |le| {
        sample(&text, "pipgate_request_duration_seconds_bucket", &[("route", "simple_project"), ("le", le)])
    };
    assert_eq!((bucket("0.5"), bucket("1"), bucket("5"), bucket("+Inf")), (4.0, 4.0, 5.0, 5.0), "{text}");
    assert_eq!(sample(&text, "pipgate_request_duration_seconds_count", &[("route", "simple_project")]), 5.0);
    assert!(sample(&text, "pipgate_request_duration_seconds_sum", &[("route", "simple_project")]) >= 1.5);
    for unbounded in ["acme", "six", "127.0.0.1", ".whl"] {
        assert!(!text.contains(unbounded), "a label carries {unbounded:?}:\n{text}");
    }
}
