//! Names across upstreams (I9):
//! - a private project that turns 404 is held on its owner: its last page is served stale, the
//!   public project of the same name never is, and after `max_stale` the lookup fails closed
//!   with an error naming the project, both upstreams and the way to release it;
//! - the hold survives a restart; `[[release]]` and `POST /admin/release/{project}` release it;
//!   a move to a higher upstream is followed at once;
//! - a feed whose root answers 404 or 401 stops private-name resolution, even for names never
//!   seen before and even on a fresh start, and recovers when the root does;
//! - names owned privately and also public are found, counted and listed; tracked names (PEP
//!   708) are listed as such; a public name that goes away leaves the list;
//! - exact metric values for holds, releases, health and shadows.

use crate::support;

use serde_json::Value;
use support::fake_index::FakeIndex;
use support::{PIP_ACCEPT, Pipgate, eventually, get, request, wheel};

const ADMIN: &str = "admin-canary-77";

/// A private and a public index that both hold `acme-core` (1.0 privately, 99.0 publicly).
async fn indexes() -> (FakeIndex, FakeIndex) {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("acme-core", wheel::build("acme-core", "99.0", "attacker"));
    public.add("acme-new", wheel::build("acme-new", "99.0", "attacker"));
    public.add("six", wheel::build("six", "1.16.0", "public"));
    (private, public)
}

/// corp (with `corp_extra` in its table) above pypi, then `extra`.
fn config(private: &FakeIndex, public: &FakeIndex, corp_extra: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"{}\"\ntimeout = \"3s\"\n{corp_extra}\n\n[[upstream]]\nname = \"pypi\"\nurl = \"{}\"\ntimeout = \"3s\"\n\n[admin]\ntoken = \"{ADMIN}\"\n\n{extra}",
        private.url(),
        public.url()
    )
}

async fn page(pipgate: &Pipgate, project: &str) -> support::Answer {
    get(&format!("{}{project}/", pipgate.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap()
}

/// The value of the sample of `name` carrying every `label="value"` pair (0 when absent).
async fn metric(pipgate: &Pipgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

async fn admin(pipgate: &Pipgate, method: &str, path: &str, token: Option<&str>) -> support::Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    request(method, &format!("{}/admin/{path}", pipgate.base), &headers).await.unwrap()
}

#[tokio::test]
async fn a_private_project_that_turns_404_is_held_then_fails_closed() {
    let (private, public) = indexes().await;
    let extra = "[cache]\nindex_ttl = \"0s\"\nmax_stale = \"3s\"\nrevalidate_interval = \"0s\"\n";
    let pipgate = Pipgate::start(&config(&private, &public, "", extra), Default::default()).await;
    let first = page(&pipgate, "acme-core").await;
    assert_eq!((first.status.as_u16(), first.header("x-pipgate-upstream")), (200, "corp"));

    // The private feed loses the project; the public one has a higher version of the name.
    private.remove("acme-core");
    let held = page(&pipgate, "acme-core").await;
    assert_eq!(held.status, 200, "{}", held.text());
    assert_eq!(held.header("x-pipgate-upstream"), "corp");
    assert_eq!(held.header("x-pipgate-stale"), "true");
    assert_eq!(held.filenames(), ["acme_core-1.0-py3-none-any.whl"], "the old owner's page, whole");

    // Past max_stale the lookup fails closed, and says why and what to do.
    eventually("the stale window ended", || async { page(&pipgate, "acme-core").await.status != 200 }).await;
    let failed = page(&pipgate, "acme-core").await;
    assert_eq!(failed.status, 502);
    let text = failed.text();
    for part in [
        "project acme-core is held on upstream \"corp\"",
        "the lower upstream \"pypi\" does",
        "[[release]]",
        "POST /admin/release/acme-core",
    ] {
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }
    let attacker = wheel::build("acme-core", "99.0", "attacker");
    let file = get(&format!("{}/files/acme-core/{}", pipgate.base, attacker.filename), &[]).await.unwrap();
    assert_eq!(file.status, 502, "the public file is not served under a held name");
    assert_eq!(public.count("/files/"), 0);

    // Logged and counted once, however many requests saw the hold.
    let holds = [("owner", "corp"), ("lower", "pypi")];
    assert_eq!(metric(&pipgate, "pipgate_owner_holds_total", &holds).await, 1.0);
    assert_eq!(metric(&pipgate, "pipgate_held_projects", &[("owner", "corp")]).await, 1.0);

    // The project comes back privately: the hold ends.
    private.add("acme-core", wheel::build("acme-core", "1.1", "private"));
    eventually("the owner answers again", || async { page(&pipgate, "acme-core").await.status == 200 }).await;
    assert_eq!(page(&pipgate, "acme-core").await.filenames(), ["acme_core-1.1-py3-none-any.whl"]);
    assert_eq!(metric(&pipgate, "pipgate_held_projects", &[("owner", "corp")]).await, 0.0);
}

#[tokio::test]
async fn a_hold_survives_a_restart_and_a_release_in_the_config_lets_the_name_move() {
    let (private, public) = indexes().await;
    let dir = tempfile::tempdir().unwrap();
    let cache =
        format!("[cache]\ndir = \"{}\"\nindex_ttl = \"0s\"\nmax_stale = \"0s\"\n", dir.path().display());
    let held_config = config(&private, &public, "", &cache);
    let first = Pipgate::start(&held_config, Default::default()).await;
    assert_eq!(page(&first, "acme-core").await.header("x-pipgate-upstream"), "corp");
    first.server.shutdown().await;

    private.remove("acme-core");
    let second = Pipgate::start(&held_config, Default::default()).await;
    let answer = page(&second, "acme-core").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(answer.text().contains("is held on upstream \"corp\""), "{}", answer.text());
    second.server.shutdown().await;

    let released = format!("{held_config}\n[[release]]\nprojects = [\"Acme_*\"]\n");
    let third = Pipgate::start(&released, Default::default()).await;
    let moved = page(&third, "acme-core").await;
    assert_eq!((moved.status.as_u16(), moved.header("x-pipgate-upstream")), (200, "pypi"));
    let via = [("owner", "corp"), ("via", "config")];
    assert_eq!(metric(&third, "pipgate_owner_releases_total", &via).await, 1.0);
}

#[tokio::test]
async fn an_operator_releases_a_name_through_the_admin_endpoint() {
    let (private, public) = indexes().await;
    let pipgate = Pipgate::start(&config(&private, &public, "", ""), Default::default()).await;
    assert_eq!(page(&pipgate, "acme-core").await.header("x-pipgate-upstream"), "corp");
    private.remove("acme-core");

    for token in [None, Some("wrong")] {
        let refused = admin(&pipgate, "POST", "release/acme-core", token).await;
        assert_eq!(refused.status, 401, "{token:?}");
        assert_eq!(refused.header("www-authenticate"), "Bearer realm=\"pipgate-admin\"");
    }
    let wrong_method = admin(&pipgate, "GET", "release/acme-core", Some(ADMIN)).await;
    assert_eq!((wrong_method.status.as_u16(), wrong_method.header("allow")), (405, "POST"));
    let released = admin(&pipgate, "POST", "release/acme-core", Some(ADMIN)).await;
    assert_eq!(released.status, 200, "{}", released.text());
    assert_eq!(released.json()["released_from"], "corp");
    assert!(!released.text().contains(ADMIN));

    // The cached page was dropped with the owner: the next lookup follows the owner rule.
    let moved = page(&pipgate, "acme-core").await;
    assert_eq!((moved.status.as_u16(), moved.header("x-pipgate-upstream")), (200, "pypi"));
    let via = [("owner", "corp"), ("via", "admin")];
    assert_eq!(metric(&pipgate, "pipgate_owner_releases_total", &via).await, 1.0);
    assert_eq!(
        admin(&pipgate, "POST", "release/acme-core", Some(ADMIN)).await.status,
        404,
        "nothing left to release"
    );
}

#[tokio::test]
async fn admin_endpoints_are_off_without_a_token() {
    let (private, public) = indexes().await;
    let text = config(&private, &public, "", "").replace(&format!("[admin]\ntoken = \"{ADMIN}\"\n"), "");
    let pipgate = Pipgate::start(&text, Default::default()).await;
    let answer = admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await;
    assert_eq!(answer.status, 403);
    assert!(answer.text().contains("set a token in [admin]"), "{}", answer.text());
}

#[tokio::test]
async fn a_move_to_a_higher_upstream_is_followed_at_once() {
    let (private, public) = indexes().await;
    let extra = "[cache]\nindex_ttl = \"0s\"\nnegative_ttl = \"1ms\"\n";
    let pipgate = Pipgate::start(&config(&private, &public, "", extra), Default::default()).await;
    assert_eq!(page(&pipgate, "six").await.header("x-pipgate-upstream"), "pypi");
    private.add("six", wheel::build("six", "2.0", "private"));
    // The next refresh (the first answer after the change is the stale page, by design).
    eventually("the name moved up", || async {
        page(&pipgate, "six").await.header("x-pipgate-upstream") == "corp"
    })
    .await;
    let answer = page(&pipgate, "six").await;
    assert_eq!(answer.filenames(), ["six-2.0-py3-none-any.whl"]);
}

#[tokio::test]
async fn a_feed_whose_root_breaks_stops_private_names_even_unseen_ones() {
    let (private, public) = indexes().await;
    let corp = "health_check = true";
    let ownership = "[ownership]\nhealth_interval = \"200ms\"\n";
    let pipgate = Pipgate::start(&config(&private, &public, corp, ownership), Default::default()).await;
    assert_eq!(page(&pipgate, "six").await.status, 200, "healthy: a public name passes through");
    assert_eq!(metric(&pipgate, "pipgate_upstream_healthy", &[("upstream", "corp")]).await, 1.0);

    private.set_root_status(Some(404));
    let readyz = format!("{}/readyz", pipgate.base);
    eventually("readiness reports the broken feed", || async {
        get(&readyz, &[]).await.unwrap().text().contains("upstream \"corp\" is unhealthy")
    })
    .await;
    let ready = get(&readyz, &[]).await.unwrap();
    assert_eq!(ready.status, 200, "pipgate itself is ready: it fails closed for what corp may own");
    assert!(ready.text().contains("its index root answered HTTP 404"), "{}", ready.text());
    assert_eq!(metric(&pipgate, "pipgate_upstream_healthy", &[("upstream", "corp")]).await, 0.0);

    let answer = page(&pipgate, "acme-new").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(answer.text().starts_with("upstream \"corp\" is unhealthy"), "{}", answer.text());
    assert_eq!(
        public.count("/simple/acme-new/"),
        0,
        "a name never seen before is not handed to the public index"
    );

    private.set_root_status(None);
    eventually("the feed recovers", || async { page(&pipgate, "acme-new").await.status == 200 }).await;
    assert_eq!(page(&pipgate, "acme-new").await.header("x-pipgate-upstream"), "pypi");
}

#[tokio::test]
async fn a_fresh_pipgate_whose_feed_is_already_broken_hands_nothing_on() {
    for status in [404, 401] {
        let (private, public) = indexes().await;
        private.set_root_status(Some(status));
        // A long interval: only the probe at start, or the one a 404 asks for, can tell.
        let text =
            config(&private, &public, "health_check = true", "[ownership]\nhealth_interval = \"1h\"\n");
        let pipgate = Pipgate::start(&text, Default::default()).await;
        let answer = page(&pipgate, "acme-new").await;
        assert_eq!(answer.status, 502, "root {status}: {}", answer.text());
        assert!(answer.text().contains("upstream \"corp\" is unhealthy"), "{}", answer.text());
        assert_eq!(public.count("/simple/"), 0, "root {status}: the public index was never asked");
    }
}

#[tokio::test]
async fn shadowed_names_are_counted_listed_and_dropped_when_the_shadow_goes() {
    let (private, public) = indexes().await;
    let ownership =
        "[ownership]\nshadow_check = true\nshadow_recheck = \"300ms\"\nshadow_checks_per_second = 50\n";
    let pipgate = Pipgate::start(&config(&private, &public, "", ownership), Default::default()).await;
    assert_eq!(page(&pipgate, "acme-core").await.header("x-pipgate-upstream"), "corp");
    page(&pipgate, "six").await;
    eventually("the shadow was found", || async {
        admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await.json().as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let list = admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let entry = &list[0];
    assert_eq!(entry["project"], "acme-core");
    assert_eq!(entry["owner"], "corp");
    assert_eq!(entry["shadowing_upstream"], "pypi");
    assert_eq!(entry["owner_versions"], serde_json::json!(["1.0"]));
    assert_eq!(entry["shadow_versions"], serde_json::json!(["99.0"]));
    assert_eq!(entry["tracked"], false);
    assert!(entry["first_seen"].as_str().unwrap().ends_with('Z'));

    let gauge = [("owner", "corp"), ("shadow", "pypi"), ("tracked", "false")];
    assert_eq!(metric(&pipgate, "pipgate_shadowed_projects", &gauge).await, 1.0);
    let kept = [("owner", "corp"), ("shadow", "pypi")];
    let before = metric(&pipgate, "pipgate_shadow_kept_total", &kept).await;
    for _ in 0..3 {
        assert_eq!(page(&pipgate, "acme-core").await.header("x-pipgate-upstream"), "corp");
    }
    assert_eq!(metric(&pipgate, "pipgate_shadow_kept_total", &kept).await, before + 3.0);
    // A download looks the page up too, but is no page request.
    let wheel = wheel::build("acme-core", "1.0", "private");
    let file = get(&format!("{}/files/acme-core/{}", pipgate.base, wheel.filename), &[]).await.unwrap();
    assert_eq!(file.status, 200);
    assert_eq!(metric(&pipgate, "pipgate_shadow_kept_total", &kept).await, before + 3.0);

    // The public project goes away: the periodic re-check notices.
    public.remove("acme-core");
    eventually("the shadow left the list", || async {
        admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await.json() == serde_json::json!([])
    })
    .await;
    assert_eq!(metric(&pipgate, "pipgate_shadowed_projects", &gauge).await, 0.0);
}

#[tokio::test]
async fn a_name_whose_page_tracks_the_public_one_is_listed_as_tracked() {
    let (private, public) = indexes().await;
    private.set_tracks("acme-core", &[format!("{}acme-core/", public.url())]);
    let ownership = "[ownership]\nshadow_check = true\nshadow_checks_per_second = 50\n";
    let pipgate = Pipgate::start(&config(&private, &public, "", ownership), Default::default()).await;
    let served = page(&pipgate, "acme-core").await;
    assert_eq!(
        served.json()["tracks"],
        serde_json::json!([format!("{}acme-core/", public.url())]),
        "tracks is served"
    );
    eventually("the tracked name was listed", || async {
        admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await.json().as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let list: Value = admin(&pipgate, "GET", "shadowed", Some(ADMIN)).await.json();
    assert_eq!(list[0]["tracked"], true, "{list}");
    let tracked = [("owner", "corp"), ("shadow", "pypi"), ("tracked", "true")];
    assert_eq!(metric(&pipgate, "pipgate_shadowed_projects", &tracked).await, 1.0);
    let untracked = [("owner", "corp"), ("shadow", "pypi"), ("tracked", "false")];
    assert_eq!(metric(&pipgate, "pipgate_shadowed_projects", &untracked).await, 0.0);
    page(&pipgate, "acme-core").await;
    let kept = [("owner", "corp"), ("shadow", "pypi")];
    assert_eq!(
        metric(&pipgate, "pipgate_shadow_kept_total", &kept).await,
        0.0,
        "a sanctioned name is no attack"
    );
}
