//! The layers every request passes through, as `app.rs` stacks them:
//! - every answer, errors included, carries an `X-Request-Id` unique to its request;
//! - the in-flight gauge returns to zero (bar the scrape itself) after 100 clients hang up
//!   mid-download, and a request dropped before its headers is counted with status 499;
//! - a request that outlives `server.request_timeout` is answered 504 by the error table and
//!   counted as such, while the upstream work it joined goes on.

use crate::support;

use std::collections::HashSet;
use std::future::ready;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::fake_index::{FakeFile, FakeIndex, FileMode, PageMode};
use support::{Pipgate, config_for, eventually, get, wheel};

/// The value of an unlabelled metric, or of the sample carrying `label`.
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .find(|line| line.contains(label))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

async fn scrape(pipgate: &Pipgate) -> String {
    get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text()
}

#[tokio::test]
async fn every_answer_carries_its_own_request_id() {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
    let mut ids = HashSet::new();
    for path in ["/simple/acme-core/", "/simple/acme-core/", "/healthz", "/nowhere", "/simple/no-such/"] {
        let answer = get(&format!("{}{path}", pipgate.base), &[]).await.unwrap();
        let id = answer.header("x-request-id").to_owned();
        assert!(!id.is_empty(), "{path} ({}) has no request id", answer.status);
        assert!(ids.insert(id), "{path}: a request id was handed out twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_leave_nothing_in_flight() {
    let index = FakeIndex::start().await;
    let file = FakeFile::blob("acme_core-1.0", 2 * 1024 * 1024, 5);
    index.add("acme-core", file.clone());
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
    get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    // A slow upstream, so the download is still running when the clients leave.
    index.set_file_mode(FileMode::Slow(Duration::from_millis(50)));

    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
                let response = client.get(url.parse().unwrap()).await.unwrap();
                assert_eq!(response.status(), 200);
                let mut body = response.into_body();
                // The first bytes arrive, then the client hangs up.
                body.frame().await.unwrap().unwrap();
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    eventually("every aborted download left the in-flight gauge", || async {
        // The scrape itself is in flight while it renders.
        metric(&scrape(&pipgate).await, "pipgate_requests_in_flight", "") == 1.0
    })
    .await;
    let text = scrape(&pipgate).await;
    assert_eq!(metric(&text, "pipgate_requests_total", r#"route="files",status="200""#), 100.0, "{text}");
    assert_eq!(metric(&text, "pipgate_client_aborts_total", r#"route="files""#), 100.0, "{text}");

    // A request dropped before its headers: counted as 499 (client closed), not left in flight.
    index.set_page_mode(PageMode::Hang(Duration::from_secs(5)));
    let page = format!("{}acme-other/", pipgate.index_url());
    let waiting = tokio::spawn(async move { get(&page, &[]).await });
    eventually("the page request reached the upstream", || ready(index.count("/simple/acme-other/") == 1))
        .await;
    waiting.abort();
    eventually("the dropped request was counted", || async {
        let text = scrape(&pipgate).await;
        metric(&text, "pipgate_requests_total", r#"route="simple_project",status="499""#) == 1.0
            && metric(&text, "pipgate_requests_in_flight", "") == 1.0
    })
    .await;
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_a_504_from_the_error_table() {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let config = config_for(&[("corp", &index.url())], "[server]\nrequest_timeout = \"300ms\"\n");
    let pipgate = Pipgate::start(&config, Default::default()).await;
    // The upstream answers after 2 s, inside its own 3 s deadline but past the request's.
    index.set_page_mode(PageMode::Hang(Duration::from_secs(2)));
    let answer = get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert_eq!(answer.text(), "pipgate did not answer within 300ms\n");
    assert!(!answer.header("x-request-id").is_empty());
    let text = scrape(&pipgate).await;
    assert_eq!(metric(&text, "pipgate_requests_total", r#"route="simple_project",status="504""#), 1.0);

    // The refresh it started was not cancelled with it: it completes and fills the cache.
    index.set_page_mode(PageMode::Json);
    eventually("the abandoned refresh filled the cache", || async {
        get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap().status == 200
    })
    .await;
    assert_eq!(index.count("/simple/acme-core/"), 1, "served from the refresh the first request started");
}
