//! The index-page cache (I5, I7):
//! - pip's `Cache-Control: max-age=0` does not turn every request into an upstream round trip,
//!   and a due revalidation is a conditional request the upstream answers with 304;
//! - stale-while-revalidate: a stale page is served at once while the refresh runs;
//! - stale-on-error: the last good page is served, marked stale, until `max_stale` ends; then
//!   the failure reaches the client;
//! - an upstream's 404 is remembered (negative cache), so a public project does not cost a
//!   private round trip on every lookup;
//! - ETag/304 and gzip for clients.

use crate::support;

use std::future::ready;
use std::io::Read;
use std::time::Duration;

use support::fake_index::{FakeIndex, PageMode};
use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, wheel};

async fn one(extra_cache: &str) -> (FakeIndex, Pipgate) {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let config = config_for(&[("corp", &index.url())], &format!("[cache]\n{extra_cache}\n"));
    let pipgate = Pipgate::start(&config, Default::default()).await;
    (index, pipgate)
}

const PIP: [(&str, &str); 2] = [("accept", PIP_ACCEPT), ("cache-control", "max-age=0")];

async fn wait_for_count(index: &FakeIndex, path: &str, at_least: usize) {
    eventually(&format!("{at_least} upstream requests for {path}"), || ready(index.count(path) >= at_least))
        .await;
}

#[tokio::test]
async fn pips_max_age_zero_is_not_a_round_trip_per_request() {
    let (index, pipgate) = one("revalidate_interval = \"1h\"").await;
    let url = format!("{}acme-core/", pipgate.index_url());
    for _ in 0..10 {
        let answer = get(&url, &PIP).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("cache-control"), "max-age=60, public");
    }
    assert_eq!(index.count("/simple/acme-core/"), 1);
}

#[tokio::test]
async fn due_revalidation_is_conditional_and_costs_a_304() {
    let (index, pipgate) = one("revalidate_interval = \"0s\"").await;
    let url = format!("{}acme-core/", pipgate.index_url());
    let first = get(&url, &PIP).await.unwrap();
    get(&url, &PIP).await.unwrap();
    wait_for_count(&index, "/simple/acme-core/", 2).await;
    eventually("the upstream answered 304", || ready(index.not_modified_count() >= 1)).await;
    assert_eq!(index.not_modified_count(), 1, "the upstream answered the revalidation with 304");
    let revalidation = index.seen().into_iter().filter(|s| s.path == "/simple/acme-core/").nth(1).unwrap();
    assert!(revalidation.headers.contains_key("if-none-match"));
    let third = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(third.body, first.body, "a 304 keeps the page");
    assert_eq!(third.header("etag"), first.header("etag"));
}

#[tokio::test]
async fn a_stale_page_is_served_at_once_while_the_refresh_runs() {
    let (index, pipgate) = one("index_ttl = \"0s\"\nmax_stale = \"1h\"").await;
    let url = format!("{}acme-core/", pipgate.index_url());
    let warm = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    index.set_page_mode(PageMode::Hang(Duration::from_secs(20)));
    // The upstream now takes 20 s; the cached page must come back without waiting for it.
    let answer = tokio::time::timeout(Duration::from_secs(5), get(&url, &[("accept", PIP_ACCEPT)]))
        .await
        .expect("served without waiting for the upstream")
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, warm.body);
    assert_eq!(answer.header("x-pipgate-stale"), "true");
    assert_eq!(answer.header("cache-control"), "max-age=0, must-revalidate");
    wait_for_count(&index, "/simple/acme-core/", 2).await;
}

#[tokio::test]
async fn stale_on_error_lasts_until_max_stale_then_fails_closed() {
    let (index, pipgate) = one("index_ttl = \"0s\"\nmax_stale = \"2s\"\nrevalidate_interval = \"0s\"").await;
    let url = format!("{}acme-core/", pipgate.index_url());
    get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    index.set_page_mode(PageMode::Status(500));
    let stale = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-pipgate-stale"), "true");
    assert!(stale.header("warning").contains("Stale"));
    // Until `max_stale` runs out every answer is the stale page; then the failure shows.
    eventually("the stale window ended", || async {
        get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap().status != 200
    })
    .await;
    let failed = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert!(failed.text().contains("upstream \"corp\""));
    // The upstream recovers: a fresh page again.
    index.set_page_mode(PageMode::Json);
    let fresh = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!((fresh.status.as_u16(), fresh.header("x-pipgate-stale")), (200, ""));
}

#[tokio::test]
async fn an_upstreams_404_is_remembered() {
    let private = FakeIndex::start().await;
    let public = FakeIndex::start().await;
    public.add("six", wheel::build("six", "1.16.0", "public"));
    // No page caching at all, so every lookup runs the owner rule again.
    let extra = "[cache]\nindex_ttl = \"0s\"\nmax_stale = \"0s\"\nnegative_ttl = \"1h\"\n";
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], extra);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    for _ in 0..3 {
        let answer = get(&format!("{}six/", pipgate.index_url()), &[]).await.unwrap();
        assert_eq!(answer.status, 200);
    }
    assert_eq!(public.count("/simple/six/"), 3);
    assert_eq!(private.count("/simple/six/"), 1, "the private 404 was remembered");
}

#[tokio::test]
async fn clients_get_etags_304s_and_gzip() {
    let (_index, pipgate) = one("").await;
    let url = format!("{}acme-core/", pipgate.index_url());
    let plain = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    let etag = plain.header("etag").to_owned();
    assert!(etag.starts_with('"'));
    assert_eq!(plain.header("vary"), "Accept, Accept-Encoding");
    let unchanged = get(&url, &[("accept", PIP_ACCEPT), ("if-none-match", &etag)]).await.unwrap();
    assert_eq!((unchanged.status.as_u16(), unchanged.body.len()), (304, 0));
    let html = get(&url, &[("accept", "text/html"), ("if-none-match", &etag)]).await.unwrap();
    assert_eq!(html.status, 200, "another representation has another ETag");

    let gzipped = get(&url, &[("accept", PIP_ACCEPT), ("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!(gzipped.header("content-encoding"), "gzip");
    assert_ne!(gzipped.header("etag"), etag);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped.body[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, plain.body);
}

/// `pipgate_cache_bytes{cache="index"}` now.
async fn index_cache_bytes(pipgate: &Pipgate) -> f64 {
    let text = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    let line =
        text.lines().find(|l| l.starts_with("pipgate_cache_bytes{cache=\"index\"}")).expect("the gauge");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The memory cap counts what a page holds: after a JSON answer at least the JSON and its
/// gzip, and when a client first asks for HTML (made then) the HTML too.
#[tokio::test]
async fn the_page_cache_weighs_every_form_it_holds() {
    let index = FakeIndex::start().await;
    for i in 0..400 {
        index.add("acme-core", support::fake_index::FakeFile::blob(&format!("acme_core-0.{i}"), 1, i));
    }
    let config = config_for(&[("corp", &index.url())], "");
    let pipgate = Pipgate::start(&config, Default::default()).await;
    let url = format!("{}acme-core/", pipgate.index_url());

    let gzip = get(&url, &[("accept", PIP_ACCEPT), ("accept-encoding", "gzip")]).await.unwrap();
    let json = get(&url, &[("accept", PIP_ACCEPT)]).await.unwrap();
    let after_json = index_cache_bytes(&pipgate).await;
    assert!(
        after_json >= (json.body.len() + gzip.body.len()) as f64,
        "{after_json} for {} + {}",
        json.body.len(),
        gzip.body.len()
    );

    let html = get(&url, &[("accept", "text/html")]).await.unwrap();
    assert!(String::from_utf8_lossy(&html.body).contains("acme_core-0.399.tar.gz"));
    let after_html = index_cache_bytes(&pipgate).await;
    assert!(
        after_html >= after_json + html.body.len() as f64,
        "{after_html} after {after_json} and {} of HTML",
        html.body.len()
    );
}
