//! Azure managed identity through the crate's own configuration (`IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER`, the App Service protocol), against a fake identity endpoint that issues
//! short-lived tokens and a fake feed that accepts only tokens that are current:
//! - tokens are refreshed before they expire, under continuous load, with no failed request;
//! - 100 concurrent requests cost one token fetch; a feed 401 costs one forced refresh,
//!   however many requests hit it, and the requests then succeed;
//! - an identity endpoint outage after warm-up is ridden out on the current token;
//! - `/readyz` waits for the first token, `/healthz` does not;
//! - a 203 sign-in page is a 502 and never falls through to the public upstream;
//! - a download redirected to blob storage is fetched without the token;
//! - at the `trace` log level, no token and no identity secret appear in pipgate's output;
//! - the Azure CLI identity runs `az account get-access-token` (a stand-in `az` on PATH).

use crate::support;

use std::time::{Duration, Instant};

use base64::Engine;
use support::binary::RunningBinary;
use support::fake_index::{FakeIndex, PageMode, TokenBook};
use support::identity::IdentityEndpoint;
use support::{get, wheel};

const IDENTITY_SECRET: &str = "canary-identity-header-77";

struct Setup {
    book: TokenBook,
    feed: FakeIndex,
    public: FakeIndex,
    identity: IdentityEndpoint,
    pipgate: RunningBinary,
}

/// A feed behind managed identity, and a public index; pages are not cached, so every request
/// reaches the feed with the current token.
async fn setup(lifetime: Duration, identity_failing_at_start: bool) -> Setup {
    let book = TokenBook::default();
    let feed = FakeIndex::start().await;
    feed.require_tokens(book.clone());
    for i in 0..120 {
        let name = format!("acme-p{i}");
        feed.add(&name, wheel::build(&name, "1.0", "private"));
    }
    let public = FakeIndex::start().await;
    public.add("acme-p0", wheel::build("acme-p0", "99.0", "attacker"));
    let identity = IdentityEndpoint::start(book.clone(), lifetime, IDENTITY_SECRET, None).await;
    identity.set_failing(identity_failing_at_start);
    let config = format!(
        r#"[cache]
index_ttl = "0s"
max_stale = "0s"

[[upstream]]
name = "corp"
url = "{}"
auth = {{ azure = "managed-identity" }}

[[upstream]]
name = "pypi"
url = "{}"
"#,
        feed.url(),
        public.url()
    );
    let env = [
        ("IDENTITY_ENDPOINT", format!("http://{}/msi/token", identity.addr)),
        ("IDENTITY_HEADER", IDENTITY_SECRET.to_owned()),
    ];
    let pipgate = RunningBinary::start(&config, &env).await;
    Setup { book, feed, public, identity, pipgate }
}

fn assert_no_secrets(logs: &str, issued: usize) {
    assert!(!logs.contains(IDENTITY_SECRET), "the identity header secret was logged");
    for n in 1..=issued {
        let token = format!("canary-tok-{n}");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("pipgate:{token}"));
        assert!(!logs.contains(&token), "{token} was logged");
        assert!(!logs.contains(&basic), "the Basic header for {token} was logged");
    }
    assert!(logs.contains("upstream token acquired"), "token fetches are logged (without the token)");
}

async fn page_status(pipgate: &RunningBinary, project: &str) -> u16 {
    get(&format!("{}/simple/{project}/", pipgate.base), &[]).await.map_or(0, |a| a.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refresh_before_expiry_under_continuous_load() {
    let s = setup(Duration::from_secs(6), false).await;
    s.pipgate.wait_ready().await;
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    while started.elapsed() < Duration::from_secs(14) {
        match page_status(&s.pipgate, "acme-p1").await {
            200 => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failed, 0, "{ok} requests succeeded");
    assert!(ok > 100);
    // 14 s of 6 s tokens refreshed at half-life: at least four fetches, and the feed never had
    // to refuse a token.
    assert!(s.identity.issued() >= 4, "{} tokens", s.identity.issued());
    assert_eq!(s.feed.rejected_count(), 0);
    let issued = s.identity.issued();
    let logs = s.pipgate.stop().await;
    assert_no_secrets(&logs, issued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_a_feed_401_each_cost_one_token_fetch() {
    let s = setup(Duration::from_secs(3600), false).await;
    s.pipgate.wait_ready().await;
    let base = s.pipgate.base.clone();
    let burst = |range: std::ops::Range<usize>| {
        let base = base.clone();
        async move {
            let requests: Vec<_> = range
                .map(|i| {
                    let url = format!("{base}/simple/acme-p{i}/");
                    tokio::spawn(async move { get(&url, &[]).await.map(|a| a.status.as_u16()) })
                })
                .collect();
            let mut statuses = Vec::new();
            for request in requests {
                statuses.push(request.await.unwrap().unwrap());
            }
            statuses
        }
    };
    assert!(burst(0..100).await.iter().all(|s| *s == 200));
    assert_eq!(s.identity.issued(), 1, "100 concurrent requests, one token");

    // The feed stops trusting the token: every request in flight gets a 401, pipgate refreshes
    // once, retries, and the clients never see the failure.
    s.book.revoke_all();
    assert!(burst(100..120).await.iter().all(|s| *s == 200), "the clients never see the 401");
    assert!(s.feed.rejected_count() >= 1, "the feed did refuse the old token");
    assert_eq!(s.identity.issued(), 2, "one forced refresh for every request that hit the 401");
    let metrics = get(&format!("{}/metrics", s.pipgate.base), &[]).await.unwrap().text();
    assert!(metrics.contains(r#"pipgate_token_refreshes_total{result="ok",upstream="corp"} 2"#), "{metrics}");
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with(r#"pipgate_token_expiry_seconds{upstream="corp"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap())
        .unwrap();
    assert!(expiry > 3000.0 && expiry <= 3600.0, "{expiry}");
    assert!(!metrics.contains("canary"), "no token in metrics");
    s.pipgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_outage_after_warm_up_is_ridden_out() {
    let s = setup(Duration::from_secs(10), false).await;
    s.pipgate.wait_ready().await;
    s.identity.set_failing(true);
    let started = Instant::now();
    let mut failed = 0;
    while started.elapsed() < Duration::from_secs(13) {
        if started.elapsed() > Duration::from_secs(6) {
            s.identity.set_failing(false);
        }
        if page_status(&s.pipgate, "acme-p2").await != 200 {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed, 0);
    assert!(s.identity.issued() >= 2, "a new token arrived after the outage");
    s.pipgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_token_and_liveness_does_not() {
    let s = setup(Duration::from_secs(3600), true).await;
    let ready = get(&format!("{}/readyz", s.pipgate.base), &[]).await.unwrap();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("corp"), "{}", ready.text());
    assert_eq!(get(&format!("{}/healthz", s.pipgate.base), &[]).await.unwrap().status, 200);
    s.identity.set_failing(false);
    s.pipgate.wait_ready().await;
    assert_eq!(page_status(&s.pipgate, "acme-p3").await, 200);
    s.pipgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_page_fails_closed_without_falling_through() {
    let s = setup(Duration::from_secs(3600), false).await;
    s.pipgate.wait_ready().await;
    s.feed.set_page_mode(PageMode::SignIn203);
    let answer = get(&format!("{}/simple/acme-p0/", s.pipgate.base), &[]).await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(answer.text().contains("upstream \"corp\""), "{}", answer.text());
    assert_eq!(s.public.count("/simple/acme-p0/"), 0, "the attacker's public page was never asked for");
    s.pipgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_the_blob_host() {
    let s = setup(Duration::from_secs(3600), false).await;
    s.pipgate.wait_ready().await;
    let blob = FakeIndex::start().await;
    let wheel = wheel::build("acme-p5", "1.0", "private");
    blob.add("acme-p5", wheel.clone());
    s.feed.set_file_mode(support::fake_index::FileMode::RedirectTo(format!("http://{}/files/", blob.addr)));
    let answer = get(&format!("{}/files/acme-p5/{}", s.pipgate.base, wheel.filename), &[]).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body.as_ref(), wheel.bytes.as_slice());
    let to_blob = blob.seen();
    assert_eq!(to_blob.len(), 1);
    assert!(to_blob[0].headers.get("authorization").is_none(), "the Entra token reached the blob host");
    let to_feed = s.feed.seen().into_iter().find(|r| r.path.starts_with("/files/")).unwrap();
    assert!(to_feed.headers.get("authorization").is_some(), "the feed itself got the token");
    s.pipgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_cli_identity_uses_az_account_get_access_token() {
    // A stand-in `az` first on PATH, printing what `az account get-access-token` prints.
    let bin = tempfile::tempdir().unwrap();
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {calls}\necho '{{\"accessToken\": \"canary-cli-token\", \"expires_on\": {expires}, \"tokenType\": \"Bearer\"}}'\n",
        calls = bin.path().join("calls").display()
    );
    let az = bin.path().join("az");
    std::fs::write(&az, script).unwrap();
    std::fs::set_permissions(&az, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let book = TokenBook::default();
    book.issue("canary-cli-token", Duration::from_secs(3600));
    let feed = FakeIndex::start().await;
    feed.require_tokens(book);
    feed.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let config = format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"{}\"\nauth = {{ azure = \"azure-cli\" }}\n",
        feed.url()
    );
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let pipgate = RunningBinary::start(&config, &[("PATH", path)]).await;
    pipgate.wait_ready().await;
    let answer = get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let calls = std::fs::read_to_string(bin.path().join("calls")).unwrap();
    assert!(calls.contains("account get-access-token"), "{calls}");
    assert!(calls.contains("499b84ac-1321-427f-aa17-267ca6975798"), "the Azure DevOps resource: {calls}");
    let logs = pipgate.stop().await;
    assert!(!logs.contains("canary-cli-token"), "the CLI token was logged");
}
