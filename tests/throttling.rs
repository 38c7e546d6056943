//! A 429 from an upstream backs off that whole upstream for its `Retry-After`: a CI fleet
//! behind pipgate is one identity to the feed, so pipgate stops asking instead of extending the
//! throttle. Clients get 503 with `Retry-After`, never a fall-through to the public index.

use crate::support;

use support::fake_index::{FakeIndex, PageMode};
use support::{Pipgate, config_for, eventually, get, wheel};

#[tokio::test]
async fn a_429_backs_off_the_whole_upstream() {
    let feed = FakeIndex::start().await;
    let public = FakeIndex::start().await;
    for name in ["acme-a", "acme-b"] {
        feed.add(name, wheel::build(name, "1.0", "private"));
        public.add(name, wheel::build(name, "99.0", "attacker"));
    }
    let config = config_for(&[("corp", &feed.url()), ("pypi", &public.url())], "");
    let pipgate = Pipgate::start(&config, Default::default()).await;
    feed.set_page_mode(PageMode::Throttle(2));

    let first = get(&format!("{}acme-a/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(first.status, 503, "{}", first.text());
    assert!(first.text().contains("upstream \"corp\" is throttling"), "{}", first.text());
    assert!(!first.header("retry-after").is_empty());
    assert_eq!(feed.count("/simple/"), 1);

    // Another project during the back-off: answered at once, the feed is not asked.
    let second = get(&format!("{}acme-b/", pipgate.index_url()), &[]).await.unwrap();
    assert_eq!(second.status, 503);
    assert_eq!(feed.count("/simple/"), 1, "no request during the back-off");
    assert_eq!(public.count("/simple/"), 0, "never a fall-through");

    // After Retry-After the feed is asked again; until then every answer is a 503 that does
    // not reach the feed.
    feed.set_page_mode(PageMode::Json);
    let url = format!("{}acme-b/", pipgate.index_url());
    eventually("the back-off ended", || async { get(&url, &[]).await.unwrap().status == 200 }).await;
    assert_eq!(feed.count("/simple/"), 2, "one request after the back-off, none during it");
    assert_eq!(public.count("/simple/"), 0);
}
