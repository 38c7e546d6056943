//! The owner rule over real sockets (I1, I2):
//! - the first upstream that has a project owns it, whole, even when a later one holds a
//!   higher version; names spelled differently resolve the same;
//! - every failure of a higher upstream (5xx, 401/403, 429, 203 sign-in page, redirect to a
//!   sign-in page, a body that is not a page, a timeout, a refused connection) fails closed
//!   with an answer naming it, and the public upstream is never asked for that project;
//! - a route pins a pattern to one upstream even before the project exists there;
//! - a file request applies the same rule, so a public file cannot be fetched under a
//!   private name.

use crate::support;

use std::time::Duration;

use support::fake_index::{FakeIndex, PageMode};
use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, wheel};

struct Setup {
    private: FakeIndex,
    public: FakeIndex,
    pipgate: Pipgate,
}

async fn setup(extra: &str) -> Setup {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("acme-core", wheel::build("acme-core", "99.0", "attacker"));
    public.add("acme-new", wheel::build("acme-new", "1.0", "attacker"));
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], extra);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    Setup { private, public, pipgate }
}

async fn filenames(pipgate: &Pipgate, project: &str) -> (u16, Vec<String>, String) {
    let answer = get(&format!("{}{project}/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    if answer.status != 200 {
        return (answer.status.as_u16(), Vec::new(), answer.text());
    }
    let names = answer.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_owned())
        .collect();
    (200, names, answer.header("x-pipgate-upstream").to_owned())
}

#[tokio::test]
async fn the_first_upstream_that_has_a_project_owns_it_whole() {
    let s = setup("").await;
    let (status, files, owner) = filenames(&s.pipgate, "acme-core").await;
    assert_eq!((status, owner.as_str()), (200, "corp"));
    assert_eq!(files, ["acme_core-1.0-py3-none-any.whl"], "no attacker file mixed in");
    let (status, files, owner) = filenames(&s.pipgate, "six").await;
    assert_eq!((status, files.len(), owner.as_str()), (200, 1, "pypi"));
    assert_eq!(s.public.count("/simple/acme-core/"), 0, "the public index is never asked for an owned name");
}

#[tokio::test]
async fn every_failure_of_a_higher_upstream_fails_closed() {
    let cases = [
        (PageMode::Status(500), 502, "HTTP 500"),
        (PageMode::Status(503), 502, "HTTP 503"),
        (PageMode::Status(401), 502, "rejected the credential"),
        (PageMode::Status(403), 502, "rejected the credential"),
        (PageMode::Status(429), 503, "throttling"),
        (PageMode::Status(400), 502, "HTTP 400"),
        (PageMode::SignIn203, 502, "sign-in page"),
        (PageMode::SignInRedirect, 502, "sign-in page"),
        (PageMode::Garbage, 502, "does not parse"),
        (PageMode::Hang(Duration::from_secs(10)), 504, "no answer within"),
    ];
    for (mode, status, reason) in cases {
        let s = setup("").await;
        s.private.set_page_mode(mode.clone());
        for name in ["acme-core", "six"] {
            let (got, _, text) = filenames(&s.pipgate, name).await;
            assert_eq!(got, status, "{mode:?} {name}: {text}");
            assert!(text.starts_with("upstream \"corp\""), "{mode:?}: {text}");
            assert!(text.contains(reason), "{mode:?}: {text}");
        }
        assert_eq!(s.public.count("/simple/"), 0, "{mode:?}: never fall through to the public index");
    }
}

#[tokio::test]
async fn a_refused_connection_fails_closed() {
    let s = setup("").await;
    s.private.stop();
    let addr = s.private.addr;
    eventually("the private index stopped listening", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let (status, _, text) = filenames(&s.pipgate, "acme-core").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("upstream \"corp\" cannot connect"), "{text}");
    assert_eq!(s.public.count("/simple/"), 0);
}

#[tokio::test]
async fn a_route_pins_names_even_before_they_exist_privately() {
    let s = setup("[[route]]\nprojects = [\"acme-*\"]\nupstream = \"corp\"\n").await;
    for spelling in ["acme-new", "Acme_New", "acme.new"] {
        let answer = get(&format!("{}{spelling}/", s.pipgate.index_url()), &[]).await.unwrap();
        let final_status = if answer.status == 301 {
            get(&format!("{}acme-new/", s.pipgate.index_url()), &[]).await.unwrap().status
        } else {
            answer.status
        };
        assert_eq!(final_status, 404, "{spelling}");
    }
    assert_eq!(s.public.count("/simple/acme-new/"), 0, "a routed name is never looked up publicly");
    let (status, _, owner) = filenames(&s.pipgate, "six").await;
    assert_eq!((status, owner.as_str()), (200, "pypi"), "other names still resolve in order");
}

#[tokio::test]
async fn a_public_file_cannot_be_fetched_under_a_private_name() {
    let s = setup("").await;
    let attacker = wheel::build("acme-core", "99.0", "attacker");
    let url = format!("{}/files/acme-core/{}", s.pipgate.base, attacker.filename);
    let answer = get(&url, &[]).await.unwrap();
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert!(answer.text().contains("upstream \"corp\""), "{}", answer.text());
    assert_eq!(s.public.count("/files/"), 0);
    // With the private upstream failing (and no page cached), the file route fails closed.
    let s = setup("").await;
    s.private.set_page_mode(PageMode::Status(500));
    let cold = format!("{}/files/acme-core/{}", s.pipgate.base, attacker.filename);
    let answer = get(&cold, &[]).await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(s.public.count("/"), 0);
}
