//! Credentials stay with their origin (I4):
//! - the upstream's credential reaches the upstream, and a client's own `Authorization` header
//!   never does;
//! - a download redirected to another origin (Azure's blob storage) is followed without the
//!   credential, and the SAS query string never reaches the client;
//! - error answers never carry the credential.

use crate::support;

use pipgate::config::MapEnv;
use support::fake_index::FakeIndex;
use support::fake_index::{FileMode, PageMode};
use support::{Pipgate, get, wheel};

const PASSWORD: &str = "canary-pw-5e1f";

async fn private_with_basic_auth() -> (FakeIndex, Pipgate) {
    let private = FakeIndex::start().await;
    private.require_basic("ci", PASSWORD);
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let config = format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"{}\"\nauth = {{ basic = {{ username = \"ci\", password_env = \"CORP_PASSWORD\" }} }}\n",
        private.url()
    );
    let pipgate = Pipgate::start(&config, MapEnv::new([("CORP_PASSWORD", PASSWORD)])).await;
    (private, pipgate)
}

#[tokio::test]
async fn the_upstream_gets_its_credential_and_never_the_clients() {
    let (private, pipgate) = private_with_basic_auth().await;
    let answer =
        get(&format!("{}acme-core/", pipgate.index_url()), &[("authorization", "Bearer client-token")])
            .await
            .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = private.seen();
    assert!(!seen.is_empty());
    for request in seen {
        let auth = request.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("Basic "), "{auth}");
        assert!(!auth.contains("client-token"));
        assert_eq!(request.headers.get("x-tfs-fedauthredirect").unwrap(), "Suppress");
    }
}

#[tokio::test]
async fn a_wrong_credential_is_an_error_that_does_not_show_it() {
    let (private, pipgate) = private_with_basic_auth().await;
    private.require_basic("ci", "another-password");
    let answer = get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(answer.status, 502);
    // The page lookup or the background health probe, whichever saw the 401 first, tells it.
    let text = answer.text();
    assert!(text.starts_with("upstream \"corp\" "), "{text}");
    assert!(text.trim_end().ends_with("rejected the credential (HTTP 401 Unauthorized)"), "{text}");
    assert!(!text.contains(PASSWORD));
}

#[tokio::test]
async fn redirected_downloads_lose_the_credential_and_the_sas_stays_inside() {
    let (private, pipgate) = private_with_basic_auth().await;
    let blob = FakeIndex::start().await;
    let wheel = wheel::build("acme-core", "1.0", "private");
    blob.add("acme-core", wheel.clone());
    private.set_file_mode(FileMode::RedirectTo(format!("http://{}/files/", blob.addr)));

    let url = format!("{}/files/acme-core/{}", pipgate.base, wheel.filename);
    let answer = get(&url, &[]).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body.as_ref(), wheel.bytes.as_slice());
    for (name, value) in &answer.headers {
        assert!(!value.to_str().unwrap_or("").contains("SAS-SECRET"), "{name}");
    }
    let blob_requests = blob.seen();
    assert_eq!(blob_requests.len(), 1);
    assert!(blob_requests[0].headers.get("authorization").is_none(), "the credential reached another origin");
    let to_private = private.seen().into_iter().filter(|s| s.path.starts_with("/files/")).count();
    assert_eq!(to_private, 1);
}

#[tokio::test]
async fn a_page_redirect_to_a_sign_in_page_fails_closed() {
    let (private, pipgate) = private_with_basic_auth().await;
    private.set_page_mode(PageMode::SignInRedirect);
    let answer = get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(answer.status, 502);
    assert!(answer.text().contains("sign-in"), "{}", answer.text());
}

#[tokio::test]
async fn a_page_redirect_to_another_origin_fails_closed_and_is_not_followed() {
    let (private, pipgate) = private_with_basic_auth().await;
    // Another index on another port (another origin) that would happily serve the name.
    let elsewhere = FakeIndex::start().await;
    elsewhere.add("acme-core", wheel::build("acme-core", "99.0", "attacker"));
    private.set_page_mode(PageMode::RedirectTo(elsewhere.url()));
    let answer = get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    let text = answer.text();
    let origin = format!("http://{}", elsewhere.addr);
    assert!(
        text.contains(&format!("upstream \"corp\" redirected an index page to another origin ({origin})")),
        "{text}"
    );
    assert!(!text.contains(PASSWORD));
    assert_eq!(
        elsewhere.count("/simple/"),
        0,
        "the redirect was not followed, so the credential stayed home"
    );
    assert_eq!(private.count("/simple/acme-core/"), 1);
}
