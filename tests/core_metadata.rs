//! PEP 658 metadata for an upstream that offers none (as Azure Artifacts): pipgate advertises it
//! for wheels with a known sha256, reads METADATA out of the wheel by range requests (or from
//! the cached wheel, or by filling the wheel when ranges are refused), serves it byte for byte,
//! and advertises its hash once known. Resolvers that backtrack then read kilobytes.

use crate::support;

use pipgate::config::MapEnv;
use support::fake_index::{FakeFile, FakeIndex, FileMode};
use support::wheel::{build_with, sha256_hex};
use support::{Pipgate, config_for, eventually, get};

const JSON: (&str, &str) = ("accept", "application/vnd.pypi.simple.v1+json");
const MIB: usize = 1 << 20;

fn entry<'a>(page: &'a serde_json::Value, filename: &str) -> &'a serde_json::Value {
    page["files"].as_array().unwrap().iter().find(|f| f["filename"] == filename).unwrap()
}

#[tokio::test]
async fn metadata_is_offered_read_by_ranges_and_served_byte_for_byte() {
    let feed = FakeIndex::start().await;
    feed.set_file_mode(FileMode::Ranges);
    let big = build_with("big", "1.0", "feed", &["dep>=2"], 4 * MIB);
    let mut yanked = FakeFile::from(build_with("big", "0.9", "feed", &[], 64 * 1024)).without_metadata();
    yanked.yanked = Some("broken".into());
    feed.add("big", FakeFile::from(big.clone()).without_metadata());
    feed.add("big", yanked);
    feed.add("big", FakeFile::blob("big-1.0", 1000, 1));
    let pipgate = Pipgate::start(&config_for(&[("feed", &feed.url())], ""), MapEnv::default()).await;

    let page = get(&format!("{}big/", pipgate.index_url()), &[JSON]).await.unwrap().json();
    let wheel = entry(&page, &big.filename);
    assert_eq!(wheel["core-metadata"], true, "offered before pipgate knows its hash: {wheel}");
    assert_eq!(wheel["dist-info-metadata"], true);
    let old = entry(&page, "big-0.9-py3-none-any.whl");
    assert_eq!(old["yanked"], "broken", "a yanked wheel keeps its reason");
    let sdist = entry(&page, "big-1.0.tar.gz");
    assert!(sdist.get("core-metadata").is_none(), "sdists are left alone: {sdist}");

    let before = feed.file_bytes_sent();
    let url = format!("{}/files/big/{}.metadata", pipgate.base, big.filename);
    let served = get(&url, &[]).await.unwrap();
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(&served.body[..], &big.metadata[..], "the wheel's own METADATA, byte for byte");
    let fetched = feed.file_bytes_sent() - before;
    assert!(fetched * 20 < big.bytes.len() as u64, "{fetched} bytes of a {}-byte wheel", big.bytes.len());
    let metadata_sha = sha256_hex(&big.metadata);
    assert_eq!(served.header("etag"), format!("\"{metadata_sha}\""));

    // Again: from memory, the upstream is not asked.
    let again = get(&url, &[]).await.unwrap();
    assert_eq!(again.body, served.body);
    assert_eq!(feed.file_bytes_sent() - before, fetched);

    // The page learns the hash, in both formats and both spellings.
    let page_url = format!("{}big/", pipgate.index_url());
    eventually("the page advertises the metadata's sha256", || async {
        let page = get(&page_url, &[JSON]).await.unwrap().json();
        entry(&page, &big.filename)["core-metadata"] == serde_json::json!({"sha256": metadata_sha})
    })
    .await;
    let page = get(&page_url, &[JSON]).await.unwrap().json();
    assert_eq!(
        entry(&page, &big.filename)["dist-info-metadata"],
        serde_json::json!({"sha256": metadata_sha})
    );
    let html = get(&page_url, &[]).await.unwrap().text();
    let line = html.lines().find(|l| l.contains(&big.filename)).unwrap();
    assert!(line.contains(&format!("data-core-metadata=\"sha256={metadata_sha}\"")), "{line}");
    assert!(line.contains(&format!("data-dist-info-metadata=\"sha256={metadata_sha}\"")), "{line}");

    let metrics = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    assert!(
        metrics.contains("pipgate_core_metadata_total{source=\"ranges\",upstream=\"feed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pipgate_core_metadata_total{source=\"memory\",upstream=\"feed\"} 1"));
}

#[tokio::test]
async fn without_ranges_the_wheel_is_filled_once_and_cached() {
    let feed = FakeIndex::start().await;
    let wheel = build_with("plain", "2.0", "feed", &[], 256 * 1024);
    feed.add("plain", FakeFile::from(wheel.clone()).without_metadata());
    let pipgate = Pipgate::start(&config_for(&[("feed", &feed.url())], ""), MapEnv::default()).await;
    let url = format!("{}/files/plain/{}", pipgate.base, wheel.filename);
    let metadata = get(&format!("{url}.metadata"), &[]).await.unwrap();
    assert_eq!(metadata.status, 200, "{}", metadata.text());
    assert_eq!(&metadata.body[..], &wheel.metadata[..]);
    let file = get(&url, &[]).await.unwrap();
    assert_eq!(file.header("x-pipgate-cache"), "hit", "the fill for the metadata cached the wheel");
    assert_eq!(&file.body[..], &wheel.bytes[..]);
    assert_eq!(feed.count(&format!("/files/{}", wheel.filename)), 2, "one refused range, one fill");
}

#[tokio::test]
async fn a_cached_wheel_is_read_from_disk_and_extracted_metadata_survives_a_restart() {
    let feed = FakeIndex::start().await;
    feed.set_file_mode(FileMode::Ranges);
    let wheel = build_with("kept", "1.0", "feed", &[], 128 * 1024);
    feed.add("kept", FakeFile::from(wheel.clone()).without_metadata());
    let cache = tempfile::tempdir().unwrap();
    let toml = config_for(&[("feed", &feed.url())], &format!("[cache]\ndir = {:?}\n", cache.path()));
    let pipgate = Pipgate::start(&toml, MapEnv::default()).await;
    let url = format!("{}/files/kept/{}", pipgate.base, wheel.filename);
    assert_eq!(get(&url, &[]).await.unwrap().body.len(), wheel.bytes.len());
    eventually("the wheel is committed to the cache", || async {
        get(&url, &[]).await.unwrap().header("x-pipgate-cache") == "hit"
    })
    .await;
    let sent = feed.file_bytes_sent();
    assert_eq!(&get(&format!("{url}.metadata"), &[]).await.unwrap().body[..], &wheel.metadata[..]);
    assert_eq!(feed.file_bytes_sent(), sent, "read from the cached wheel, not the upstream");
    pipgate.server.shutdown().await;
    // Give the background write a moment to land, then restart on the same directory.
    eventually("the extracted metadata is on disk", || async {
        walk(cache.path()).iter().filter(|len| **len == wheel.metadata.len() as u64).count() == 1
    })
    .await;
    let feed_requests = feed.count("/files/");
    let pipgate = Pipgate::start(&toml, MapEnv::default()).await;
    let url = format!("{}/files/kept/{}.metadata", pipgate.base, wheel.filename);
    assert_eq!(&get(&url, &[]).await.unwrap().body[..], &wheel.metadata[..]);
    assert_eq!(feed.count("/files/"), feed_requests, "served from the disk cache after the restart");
}

fn walk(dir: &std::path::Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sizes.extend(walk(&path));
        } else {
            sizes.push(entry.metadata().unwrap().len());
        }
    }
    sizes
}

#[tokio::test]
async fn ranges_follow_the_redirect_to_blob_storage_without_the_credential() {
    let blob = FakeIndex::start().await;
    blob.set_file_mode(FileMode::Ranges);
    let feed = FakeIndex::start().await;
    feed.require_basic("ci", "feed-secret");
    feed.set_file_mode(FileMode::RedirectTo(format!("http://{}/files/", blob.addr)));
    let wheel = build_with("corp-lib", "3.1", "feed", &[], 512 * 1024);
    feed.add("corp-lib", FakeFile::from(wheel.clone()).without_metadata());
    blob.add("corp-lib", FakeFile::from(wheel.clone()).without_metadata());
    let toml = format!(
        "[[upstream]]\nname = \"feed\"\nurl = \"{}\"\nauth = {{ basic = {{ username = \"ci\", password = \"feed-secret\" }} }}\n",
        feed.url()
    );
    let pipgate = Pipgate::start(&toml, MapEnv::default()).await;
    let url = format!("{}/files/corp-lib/{}.metadata", pipgate.base, wheel.filename);
    let served = get(&url, &[]).await.unwrap();
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(&served.body[..], &wheel.metadata[..]);
    let ranged: Vec<_> = blob.seen().into_iter().filter(|s| s.path.starts_with("/files/")).collect();
    assert!(!ranged.is_empty());
    for seen in &ranged {
        assert!(seen.headers.contains_key("range"), "{seen:?}");
        assert!(!seen.headers.contains_key("authorization"), "the credential stays on the feed's origin");
    }
    assert!(blob.file_bytes_sent() * 10 < wheel.bytes.len() as u64);
}

#[tokio::test]
async fn a_hostile_wheel_is_refused_counted_and_no_longer_offered() {
    let feed = FakeIndex::start().await;
    feed.set_file_mode(FileMode::Ranges);
    // A wheel whose .dist-info names another version than its file name.
    let liar = build_with("liar", "1.0", "feed", &[], 0);
    let mut file = FakeFile::from(build_with("liar", "6.6", "feed", &[], 0)).without_metadata();
    file.filename = liar.filename.clone();
    feed.add("liar", file);
    // Not a zip at all.
    let mut junk = FakeFile::blob("junk", 5000, 3).without_metadata();
    junk.filename = "liar-2.0-py3-none-any.whl".into();
    feed.add("liar", junk);
    let pipgate = Pipgate::start(&config_for(&[("feed", &feed.url())], ""), MapEnv::default()).await;
    for filename in [liar.filename.as_str(), "liar-2.0-py3-none-any.whl"] {
        let answer = get(&format!("{}/files/liar/{filename}.metadata", pipgate.base), &[]).await.unwrap();
        assert_eq!(answer.status, 502, "{}", answer.text());
        assert!(answer.text().contains("upstream \"feed\""), "{}", answer.text());
    }
    let page_url = format!("{}liar/", pipgate.index_url());
    eventually("the page stops offering metadata it cannot serve", || async {
        let page = get(&page_url, &[JSON]).await.unwrap().json();
        page["files"].as_array().unwrap().iter().all(|f| f.get("core-metadata").is_none())
    })
    .await;
    let metrics = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    assert!(
        metrics.contains("pipgate_core_metadata_failures_total{reason=\"wheel\",upstream=\"feed\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_with_synthesis_off_is_passed_through_as_it_is() {
    let feed = FakeIndex::start().await;
    feed.set_file_mode(FileMode::Ranges);
    let wheel = build_with("bare", "1.0", "feed", &[], 0);
    feed.add("bare", FakeFile::from(wheel.clone()).without_metadata());
    let toml =
        config_for(&[("feed", &feed.url())], "").replace("timeout = \"3s\"", "synthesize_metadata = false");
    let pipgate = Pipgate::start(&toml, MapEnv::default()).await;
    let page = get(&format!("{}bare/", pipgate.index_url()), &[JSON]).await.unwrap().json();
    assert!(entry(&page, &wheel.filename).get("core-metadata").is_none());
    let answer = get(&format!("{}/files/bare/{}.metadata", pipgate.base, wheel.filename), &[]).await.unwrap();
    assert_eq!(answer.status, 404);
}
