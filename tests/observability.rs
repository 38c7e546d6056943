//! What an operator watches (issue: observability):
//! - with `server.admin_listen`, `/metrics` and `/admin/…` are served there and answer 404 on
//!   the index port, which still serves the index and health;
//! - exact counter and gauge values after a scripted sequence of hits, misses, stale serves,
//!   pass-throughs, aborted clients and upstream failures, and `X-Pipgate-Cache` saying the same;
//! - in JSON logs every line of one request carries its id, including the lines of the file
//!   fill it started, and the access line has route, status, bytes, cache and upstream; a trusted
//!   incoming `X-Request-Id` is kept; the text format writes no colour codes into a file.

use crate::support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::binary::RunningBinary;
use support::fake_index::{FakeFile, FakeIndex, FileMode, PageMode};
use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, wheel};

/// The value of the sample of `name` carrying every `label="value"` pair (0 when absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn the_admin_listener_serves_metrics_and_the_index_port_does_not() {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let extra = "[server]\nadmin_listen = \"127.0.0.1:0\"\n[admin]\ntoken = \"t\"\n";
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], extra), Default::default()).await;
    let admin = pipgate.admin_base.clone().expect("an admin listener");
    assert_ne!(admin, pipgate.base);

    assert_eq!(get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap().status, 200);
    for path in ["/metrics", "/admin/shadowed"] {
        let on_index =
            get(&format!("{}{path}", pipgate.base), &[("authorization", "Bearer t")]).await.unwrap();
        assert_eq!(on_index.status, 404, "{path} on the index port");
    }
    let metrics = get(&format!("{admin}/metrics"), &[]).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert_eq!(
        sample(&metrics.text(), "pipgate_requests_total", &[("route", "simple_project"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        get(&format!("{admin}/admin/shadowed"), &[("authorization", "Bearer t")]).await.unwrap().status,
        200
    );
    for health in ["/healthz", "/readyz"] {
        assert_eq!(get(&format!("{admin}{health}"), &[]).await.unwrap().status, 200, "{health} on admin");
        assert_eq!(
            get(&format!("{}{health}", pipgate.base), &[]).await.unwrap().status,
            200,
            "{health} on index"
        );
    }
    assert_eq!(
        get(&format!("{admin}/simple/acme-core/"), &[]).await.unwrap().status,
        404,
        "no index on admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_values_after_a_scripted_sequence() {
    let corp = FakeIndex::start().await;
    let cached = FakeFile::blob("acme_core-1.0", 300_000, 1);
    let unhashed = FakeFile::blob("acme_core-1.1", 50_000, 2).without_hash();
    let slow = FakeFile::blob("acme_core-1.2", 2_000_000, 3);
    for file in [&cached, &unhashed, &slow] {
        corp.add("acme-core", file.clone());
    }
    corp.add("acme-other", wheel::build("acme-other", "1.0", "private"));
    let extra = "[cache]\nindex_ttl = \"0s\"\nmax_stale = \"1h\"\nrevalidate_interval = \"1h\"\nmax_size = \"1GiB\"\nmemory_max_size = \"64MiB\"\n";
    let pipgate = Pipgate::start(&config_for(&[("corp", &corp.url())], extra), Default::default()).await;
    let page = format!("{}acme-core/", pipgate.index_url());
    let file = |f: &FakeFile| format!("{}/files/acme-core/{}", pipgate.base, f.filename);

    // Pages: a miss, then (index_ttl 0) a stale serve while the refresh runs.
    let miss = get(&page, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(miss.header("x-pipgate-cache"), "miss");
    let stale = get(&page, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(stale.header("x-pipgate-cache"), "stale");
    // Files: a miss (fill), then a hit; a file without a sha256 passes through.
    assert_eq!(get(&file(&cached), &[]).await.unwrap().header("x-pipgate-cache"), "miss");
    let metrics_url = format!("{}/metrics", pipgate.base);
    eventually("the fill was committed", || async {
        sample(&get(&metrics_url, &[]).await.unwrap().text(), "pipgate_file_fills_in_progress", &[]) == 0.0
    })
    .await;
    assert_eq!(get(&file(&cached), &[]).await.unwrap().header("x-pipgate-cache"), "hit");
    let passed = get(&file(&unhashed), &[]).await.unwrap();
    assert_eq!((passed.header("x-pipgate-cache"), passed.body.len()), ("bypass", 50_000));
    // A client that hangs up mid-download.
    corp.set_file_mode(FileMode::Slow(std::time::Duration::from_millis(30)));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.get(file(&slow).parse().unwrap()).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    // An upstream failure on a page never seen: fail closed.
    corp.set_page_mode(PageMode::Status(500));
    assert_eq!(get(&format!("{}acme-new/", pipgate.index_url()), &[]).await.unwrap().status, 502);

    // The abandoned fill finishes on its own; wait for it, so the gauges are at rest.
    eventually("the fill finished", || async {
        let text = get(&metrics_url, &[]).await.unwrap().text();
        sample(&text, "pipgate_file_fills_in_progress", &[]) == 0.0
            && sample(&text, "pipgate_requests_in_flight", &[]) == 1.0
    })
    .await;
    let text = get(&metrics_url, &[]).await.unwrap().text();
    let lookups =
        |cache, result| sample(&text, "pipgate_cache_lookups_total", &[("cache", cache), ("result", result)]);
    // Index: the page miss, the stale serve, acme-new's miss, and three file requests' page hits
    // (served stale: index_ttl is 0), plus the slow file's.
    assert_eq!(lookups("index", "miss"), 2.0, "{text}");
    assert_eq!(lookups("index", "stale"), 5.0, "{text}");
    assert_eq!((lookups("file", "miss"), lookups("file", "hit")), (2.0, 1.0), "{text}");
    assert_eq!(
        sample(&text, "pipgate_file_pass_through_total", &[("upstream", "corp"), ("reason", "no_hash")]),
        1.0
    );
    assert_eq!(sample(&text, "pipgate_client_aborts_total", &[("route", "files")]), 1.0, "{text}");
    assert_eq!(sample(&text, "pipgate_fail_closed_total", &[("upstream", "corp")]), 1.0);
    let upstream = |outcome| {
        sample(
            &text,
            "pipgate_upstream_requests_total",
            &[("upstream", "corp"), ("kind", "page"), ("outcome", outcome)],
        )
    };
    assert_eq!(upstream("status"), 1.0, "the 500");
    // Every file byte came from the upstream once: the cached file, the pass-through, and the
    // abandoned download, finished by its fill.
    let file_bytes = (cached.bytes.len() + unhashed.bytes.len() + slow.bytes.len()) as f64;
    assert_eq!(
        sample(&text, "pipgate_upstream_bytes_total", &[("upstream", "corp"), ("kind", "file")]),
        file_bytes
    );
    assert!(sample(&text, "pipgate_upstream_bytes_total", &[("upstream", "corp"), ("kind", "page")]) > 0.0);
    // Gauges: two files cached (sizes rounded up to KiB), one page, the caps as configured.
    assert_eq!(sample(&text, "pipgate_cache_entries", &[("cache", "file")]), 2.0);
    let kib = |n: usize| (n.div_ceil(1024) * 1024) as f64;
    assert_eq!(sample(&text, "pipgate_cache_bytes", &[("cache", "file")]), kib(300_000) + kib(2_000_000));
    assert_eq!(sample(&text, "pipgate_cache_entries", &[("cache", "index")]), 1.0);
    assert!(sample(&text, "pipgate_cache_bytes", &[("cache", "index")]) > 0.0);
    assert_eq!(sample(&text, "pipgate_cache_max_bytes", &[("cache", "file")]), (1u64 << 30) as f64);
    assert_eq!(sample(&text, "pipgate_cache_max_bytes", &[("cache", "index")]), (64u64 << 20) as f64);
    assert_eq!(sample(&text, "pipgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&text, "process_open_fds", &[]) > 0.0);
}

/// The JSON log lines whose request span carries `id`.
fn lines_of(log: &str, id: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["id"] == id))
                || line["span"]["id"] == id
        })
        .collect()
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let index = FakeIndex::start().await;
    let file = FakeFile::blob("acme_core-1.0", 100_000, 4);
    index.add("acme-core", file.clone());
    let config = format!("[[upstream]]\nname = \"corp\"\nurl = \"{}\"\n", index.url());
    let pipgate = RunningBinary::start(
        &config,
        &[("PIPGATE_LOG_FORMAT", "json".into()), ("PIPGATE_SERVER__TRUST_REQUEST_ID", "true".into())],
    )
    .await;
    let page = get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    let page_id = page.header("x-request-id").to_owned();
    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    let fetched = get(&url, &[("x-request-id", "ci-job-7.step-3")]).await.unwrap();
    assert_eq!(fetched.header("x-request-id"), "ci-job-7.step-3", "a trusted id is kept");
    let hit = get(&url, &[("x-request-id", "not a token")]).await.unwrap();
    assert_ne!(hit.header("x-request-id"), "not a token", "an id that is no plain token is replaced");
    // The fill logs "file cached" when it commits, which may be just after the last byte.
    eventually("the fill's line was written", || {
        let fill_logged = lines_of(&pipgate.log_so_far(), "ci-job-7.step-3")
            .iter()
            .any(|l| l["fields"]["message"] == "file cached");
        std::future::ready(fill_logged)
    })
    .await;
    let log = pipgate.stop().await;

    let of_page = lines_of(&log, &page_id);
    assert!(of_page.len() >= 2, "the page request logged more than its access line:\n{log}");
    let access: Vec<_> = of_page.iter().filter(|l| l["fields"]["message"] == "request").collect();
    assert_eq!(access.len(), 1, "{of_page:?}");
    let fields = &access[0]["fields"];
    assert_eq!((fields["route"].as_str(), fields["status"].as_u64()), (Some("simple_project"), Some(200)));
    assert_eq!((fields["cache"].as_str(), fields["upstream"].as_str()), (Some("miss"), Some("corp")));
    assert_eq!(fields["bytes"].as_u64(), Some(page.body.len() as u64));

    let of_file = lines_of(&log, "ci-job-7.step-3");
    assert!(
        of_file.iter().any(|l| l["fields"]["message"] == "file cached"),
        "the fill it started logs under its id:\n{of_file:?}"
    );
    let access = of_file.iter().find(|l| l["fields"]["message"] == "request").expect("an access line");
    assert_eq!(access["fields"]["bytes"].as_u64(), Some(100_000));
    assert_eq!(access["fields"]["cache"], "miss");
    assert!(!log.contains('\u{1b}'), "no escape codes in a log file");
}

#[tokio::test]
async fn the_text_format_writes_no_colour_into_a_file() {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let pipgate =
        RunningBinary::start(&format!("[[upstream]]\nname = \"corp\"\nurl = \"{}\"\n", index.url()), &[])
            .await;
    get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    let log = pipgate.stop().await;
    assert!(log.contains("request"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{log}");
}

/// `Server-Timing` on an answer that waited for its page: five named durations in
/// milliseconds, the upstream one covering at least the upstream's own delay. A hit, which
/// waited for nothing, has none.
#[tokio::test]
async fn a_cold_page_says_where_its_time_went_and_a_hit_says_nothing() {
    let corp = FakeIndex::start().await;
    for version in 0..50 {
        corp.add("acme-core", wheel::build("acme-core", &format!("1.{version}"), "private"));
    }
    corp.set_page_mode(PageMode::Hang(std::time::Duration::from_millis(300)));
    let pipgate = Pipgate::start(&config_for(&[("corp", &corp.url())], ""), Default::default()).await;
    let page = format!("{}acme-core/", pipgate.index_url());

    let miss = get(&page, &[("accept", PIP_ACCEPT), ("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!((miss.status.as_u16(), miss.header("x-pipgate-cache")), (200, "miss"));
    let timing: Vec<(String, f64)> = miss
        .header("server-timing")
        .split(", ")
        .map(|metric| {
            let (name, duration) = metric.split_once(";dur=").unwrap_or_else(|| panic!("{metric}"));
            (name.to_owned(), duration.parse().unwrap_or_else(|_| panic!("{metric}")))
        })
        .collect();
    let names: Vec<&str> = timing.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["upstream", "parse", "render", "gzip", "encode"]);
    assert!(timing[0].1 >= 300.0, "the upstream's delay is in its share: {timing:?}");

    let hit = get(&page, &[("accept", PIP_ACCEPT), ("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!(hit.header("x-pipgate-cache"), "hit");
    assert!(hit.headers.get("server-timing").is_none(), "a hit waited for nothing");
}
