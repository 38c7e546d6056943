//! Upstreams that misbehave, on purpose or not (issue: edge, hostile upstreams):
//! - a gzip page is inflated and served; a gzip bomb stops at the page cap and fails closed;
//! - a file whose name belongs to another project is dropped from a page and cannot be fetched
//!   through it (a public page cannot list a private project's wheel);
//! - a 200 page with any form (Entra's first sign-in step has no password field) fails closed;
//! - a redirect from https to plain http is refused, for pages and for files.

use crate::support;

use support::binary::RunningBinary;
use support::fake_index::{FakeIndex, FileMode, PageMode};
use support::tls::test_ca;
use support::{PIP_ACCEPT, Pipgate, config_for, get, wheel};

async fn behind_public(extra: &str) -> (FakeIndex, FakeIndex, Pipgate) {
    let corp = FakeIndex::start().await;
    corp.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let config = config_for(&[("corp", &corp.url()), ("pypi", &public.url())], extra);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    (corp, public, pipgate)
}

#[tokio::test]
async fn gzip_pages_are_served_and_a_gzip_bomb_stops_at_the_cap() {
    let (corp, public, pipgate) = behind_public("[server]\nmax_page_bytes = 1048576\n").await;
    corp.set_page_mode(PageMode::Gzip);
    let page = get(&format!("{}acme-core/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.filenames(), ["acme_core-1.0-py3-none-any.whl"]);
    let asked = corp.seen().into_iter().find(|s| s.path == "/simple/acme-core/").unwrap();
    assert_eq!(asked.headers["accept-encoding"], "gzip", "pages are asked for compressed");

    // 16 MiB of zeros in about 16 KiB, far under the cap compressed: inflated only to the cap.
    corp.set_page_mode(PageMode::GzipBomb(16 << 20));
    let bomb = get(&format!("{}acme-new/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(bomb.status, 502, "{}", bomb.text());
    assert!(
        bomb.text().contains("upstream \"corp\" sent a page larger than the 1048576-byte limit"),
        "{}",
        bomb.text()
    );
    assert_eq!(public.count("/simple/acme-new/"), 0, "fail closed, never fall through");
}

#[tokio::test]
async fn a_public_page_cannot_list_a_private_projects_file() {
    let (_corp, public, pipgate) = behind_public("").await;
    // The public page of `six` lists a wheel named for the private `acme-core`.
    let planted = wheel::build("acme-core", "99.0", "attacker");
    public.add("six", planted.clone());
    let page = get(&format!("{}six/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(page.filenames(), ["six-1.16.0-py3-none-any.whl"], "the foreign file is dropped");
    let file = get(&format!("{}/files/six/{}", pipgate.base, planted.filename), &[]).await.unwrap();
    assert_eq!(file.status, 404, "{}", file.text());
    assert_eq!(public.count("/files/"), 0);
}

#[tokio::test]
async fn a_form_on_a_200_page_is_a_sign_in_page() {
    let (corp, public, pipgate) = behind_public("").await;
    corp.set_page_mode(PageMode::EmailForm);
    let answer = get(&format!("{}six/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(answer.text().contains("sign-in form"), "{}", answer.text());
    assert_eq!(public.count("/simple/six/"), 0, "fail closed, never fall through");
}

#[tokio::test]
async fn https_upstreams_never_follow_a_redirect_to_plain_http() {
    let ca = test_ca();
    let corp = FakeIndex::start_tls(ca.acceptor.clone()).await;
    let wheel = wheel::build("acme-core", "1.0", "private");
    corp.add("acme-core", wheel.clone());
    let plain = FakeIndex::start().await;
    plain.add("acme-core", wheel.clone());
    plain.add("acme-new", wheel::build("acme-new", "1.0", "private"));
    let config = format!("[[upstream]]\nname = \"corp\"\nurl = \"{}\"\n", corp.url());
    let pipgate =
        RunningBinary::start(&config, &[("SSL_CERT_FILE", ca.ca_file.path().display().to_string())]).await;

    let page = get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    assert_eq!(page.status, 200, "the https upstream works: {}", page.text());
    // A download redirected to plain http (another "blob store").
    corp.set_file_mode(FileMode::RedirectTo(format!("http://{}/files/", plain.addr)));
    let file = get(&format!("{}/files/acme-core/{}", pipgate.base, wheel.filename), &[]).await.unwrap();
    assert_eq!(file.status, 502, "{}", file.text());
    assert!(file.text().contains("redirected from https to plain http"), "{}", file.text());
    // A page redirected to plain http.
    corp.set_page_mode(PageMode::RedirectTo(plain.url()));
    let page = get(&format!("{}/simple/acme-new/", pipgate.base), &[]).await.unwrap();
    assert_eq!(page.status, 502, "{}", page.text());
    assert!(page.text().contains("redirected from https to plain http"), "{}", page.text());
    assert_eq!(plain.count("/"), 0, "nothing was sent in the clear");
    pipgate.stop().await;
}

/// A plain page over `max_page_bytes` is refused by its `Content-Length` before it is read,
/// and fails closed like any upstream error.
#[tokio::test]
async fn a_plain_page_over_the_cap_fails_closed() {
    let (corp, public, pipgate) = behind_public("[server]\nmax_page_bytes = 4096\n").await;
    for i in 0..100 {
        corp.add("acme-big", support::fake_index::FakeFile::blob(&format!("acme_big-0.{i}"), 1, i));
    }
    let page = get(&format!("{}acme-big/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(page.status, 502, "{}", page.text());
    assert!(page.text().contains("sent a page larger than the 4096-byte limit"), "{}", page.text());
    assert_eq!(public.count("/simple/acme-big/"), 0, "fail closed, never fall through");
}
