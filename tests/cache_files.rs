//! The file cache (I3, I5, I6):
//! - N concurrent requests for one cold file make exactly one upstream request, and all N get
//!   identical, correct bytes while the file is still arriving;
//! - a client that disconnects mid-download does not cancel the fill for the cache;
//! - a restart with the same cache dir serves pages and files without the upstream;
//! - ETag/304, Range (206, 416), HEAD and Cache-Control on cached files;
//! - least-recently-used eviction under `max_size`; leftover temp files are removed at start;
//! - a file listed without a sha256 is passed through and not cached.

use crate::support;

use std::time::Duration;

use std::future::ready;
use support::fake_index::{FakeFile, FakeIndex, FileMode, Gate};

use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, request};

/// A fake index holding `file` under acme-core, and pipgate in front of it.
async fn serving(file: &FakeFile) -> (FakeIndex, Pipgate) {
    let index = FakeIndex::start().await;
    index.add("acme-core", file.clone());
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
    (index, pipgate)
}

fn file_url(pipgate: &Pipgate, filename: &str) -> String {
    format!("{}/files/acme-core/{filename}", pipgate.base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_share_one_upstream_download() {
    let file = FakeFile::blob("acme_core-1.0", 2 * 1024 * 1024, 7);
    let (index, pipgate) = serving(&file).await;
    // Warm the page, so only the file is cold; then make the download slow enough to overlap.
    get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap();
    index.set_file_mode(FileMode::Slow(Duration::from_millis(10)));

    let url = file_url(&pipgate, &file.filename);
    let clients: Vec<_> = (0..20).map(|_| tokio::spawn(get_owned(url.clone()))).collect();
    for client in clients {
        let answer = client.await.unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, file.bytes, "every client gets the exact bytes");
    }
    assert_eq!(index.count("/files/"), 1, "one upstream download for 20 clients");
    // And later requests are hits.
    let again = get(&url, &[]).await.unwrap();
    assert_eq!(again.body, file.bytes);
    assert_eq!(index.count("/files/"), 1);
}

async fn get_owned(url: String) -> Result<support::Answer, String> {
    get(&url, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_does_not_cancel_the_fill() {
    let file = FakeFile::blob("acme_core-1.0", 1024 * 1024, 11);
    let (index, pipgate) = serving(&file).await;
    index.set_file_mode(FileMode::Slow(Duration::from_millis(20)));
    let url = file_url(&pipgate, &file.filename);
    let leaving = tokio::spawn(get_owned(url.clone()));
    eventually("the download started", || ready(index.count("/files/") == 1)).await;
    leaving.abort();
    let stored = pipgate.cache_dir.join("files").join(&sha(&file)[..2]).join(sha(&file));
    eventually("the abandoned fill was committed", || ready(stored.exists())).await;
    index.set_file_mode(FileMode::Serve);
    let answer = get(&url, &[]).await.unwrap();
    assert_eq!(answer.body, file.bytes);
    assert_eq!(index.count("/files/"), 1, "the abandoned download was finished and reused");
}

fn sha(file: &FakeFile) -> String {
    support::wheel::sha256_hex(&file.bytes)
}

#[tokio::test]
async fn a_restart_serves_pages_and_files_from_the_cache_dir() {
    let index = FakeIndex::start().await;
    let file = FakeFile::blob("acme_core-1.0", 300 * 1024, 3);
    index.add("acme-core", file.clone());
    let dir = tempfile::tempdir().unwrap();
    let config =
        config_for(&[("corp", &index.url())], &format!("[cache]\ndir = \"{}\"\n", dir.path().display()));
    let first = Pipgate::start(&config, Default::default()).await;
    let page = get(&format!("{}acme-core/", first.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(get(&file_url(&first, &file.filename), &[]).await.unwrap().body, file.bytes);
    let page_file = dir.path().join("pages/acme-core.json");
    eventually("the page reached the disk", || ready(page_file.exists())).await;
    // The fill commits (fsync, rename) just after the client's last byte.
    let stored = dir.path().join("files").join(&sha(&file)[..2]).join(sha(&file));
    eventually("the file was committed", || ready(stored.exists())).await;
    first.server.shutdown().await;

    index.stop();
    std::fs::write(dir.path().join("tmp/leftover.part"), b"half a download").unwrap();
    let second = Pipgate::start(&config, Default::default()).await;
    assert!(!dir.path().join("tmp/leftover.part").exists(), "temp files are cleaned at start");
    let again = get(&format!("{}acme-core/", second.index_url()), &[("accept", PIP_ACCEPT)]).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["files"], page.json()["files"]);
    let answer = get(&file_url(&second, &file.filename), &[]).await.unwrap();
    assert_eq!(answer.body, file.bytes);
}

#[tokio::test]
async fn cached_files_answer_conditional_ranged_and_head_requests() {
    let file = FakeFile::blob("acme_core-1.0", 100_000, 5);
    let (index, pipgate) = serving(&file).await;
    let url = file_url(&pipgate, &file.filename);

    // A range on a cold file waits for the whole file, then answers the range.
    let tail = get(&url, &[("range", "bytes=-1000")]).await.unwrap();
    assert_eq!(tail.status, 206);
    assert_eq!(tail.header("content-range"), "bytes 99000-99999/100000");
    assert_eq!(tail.body, file.bytes.slice(99_000..));

    let full = get(&url, &[]).await.unwrap();
    let etag = full.header("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", sha(&file)));
    assert_eq!(full.header("cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert_eq!(full.header("content-length"), "100000");

    let middle = get(&url, &[("range", "bytes=10-19")]).await.unwrap();
    assert_eq!((middle.status.as_u16(), middle.body.clone()), (206, file.bytes.slice(10..20)));
    let beyond = get(&url, &[("range", "bytes=100000-")]).await.unwrap();
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), "bytes */100000");
    let unchanged = get(&url, &[("if-none-match", &etag)]).await.unwrap();
    assert_eq!((unchanged.status.as_u16(), unchanged.body.len()), (304, 0));
    let head = request("HEAD", &url, &[]).await.unwrap();
    assert_eq!((head.status.as_u16(), head.header("content-length")), (200, "100000"));
    assert_eq!(index.count("/files/"), 1, "one download served all of these");
}

#[tokio::test]
async fn least_recently_used_files_are_evicted_under_the_size_cap() {
    let index = FakeIndex::start().await;
    let files: Vec<FakeFile> =
        (0..3).map(|i| FakeFile::blob(&format!("acme_core-1.{i}"), 400 * 1024, 13 + i)).collect();
    for file in &files {
        index.add("acme-core", file.clone());
    }
    let extra = "[cache]\nmax_size = \"900KiB\"\n";
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], extra), Default::default()).await;
    let fetch = |i: usize| get_owned(file_url(&pipgate, &files[i].filename));
    let stored = |i: usize| pipgate.cache_dir.join("files").join(&sha(&files[i])[..2]).join(sha(&files[i]));
    // Each download is committed (fsync, rename) just after its client's last byte: wait for
    // it, so the next request of the same file is a cache hit that counts as a use.
    for i in [0, 1, 0, 2] {
        fetch(i).await.unwrap();
        eventually("the file was committed", || ready(stored(i).exists())).await;
    }
    // 0 was used after 1, so going over the cap with 2 evicts 1.
    eventually("the least recently used file was evicted", || ready(!stored(1).exists())).await;
    assert!(stored(0).exists() && stored(2).exists());
    let before = index.count("/files/");
    assert_eq!(fetch(0).await.unwrap().body, files[0].bytes);
    assert_eq!(index.count("/files/"), before, "file 0 was still cached");
    assert_eq!(fetch(1).await.unwrap().body, files[1].bytes);
    assert_eq!(index.count("/files/"), before + 1, "file 1 had been evicted");
}

#[tokio::test]
async fn a_file_without_a_sha256_passes_through_uncached() {
    let mut file = FakeFile::blob("acme_core-1.0", 50_000, 17);
    file.omit_hash = true;
    let (index, pipgate) = serving(&file).await;
    let url = file_url(&pipgate, &file.filename);
    for _ in 0..2 {
        let answer = get(&url, &[]).await.unwrap();
        assert_eq!(answer.body, file.bytes);
        assert_eq!(answer.header("accept-ranges"), "none");
        assert!(answer.headers.get("etag").is_none());
    }
    assert_eq!(index.count("/files/"), 2, "each request went upstream");
}

#[tokio::test]
async fn a_failing_cache_disk_slows_installs_down_instead_of_failing_them() {
    let file = FakeFile::blob("acme_core-1.0", 200_000, 19);
    let (index, pipgate) = serving(&file).await;
    // The temp directory becomes unusable (as a full or read-only disk would be).
    let tmp = pipgate.cache_dir.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let url = file_url(&pipgate, &file.filename);
    // The first request's fill finds it cannot make its temp file and relays every byte to
    // its clients; the store then steps aside, and the next request is passed through.
    for cache in ["miss", "bypass"] {
        let answer = get(&url, &[]).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.body, file.bytes);
        assert_eq!(answer.header("x-pipgate-cache"), cache);
        if cache == "bypass" {
            assert_eq!(answer.header("accept-ranges"), "none");
        }
    }
    assert_eq!(index.count("/files/"), 2, "streamed through each time");
    let metrics = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    for counted in [
        r#"pipgate_cache_lookups_total{cache="file",result="bypass"} 1"#,
        r#"pipgate_file_pass_through_total{reason="disk_during_fill",upstream="corp"} 1"#,
    ] {
        assert!(metrics.contains(counted), "{counted} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_disk_that_fills_during_a_fill_still_gives_its_clients_the_whole_file() {
    let file = FakeFile::blob("acme_core-1.0", 3 * 1024 * 1024, 23);
    let index = FakeIndex::start().await;
    index.add("acme-core", file.clone());
    // Any file pipgate writes may grow to 1 MiB: the fill's temp file reaches that a third of
    // the way through the file, after every client has joined the fill.
    let env = [("PIPGATE_LOG", "info".to_owned())];
    let pipgate = support::binary::RunningBinary::start_with_file_size_limit(
        &config_for(&[("corp", &index.url())], ""),
        &env,
        1024,
    )
    .await;
    get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    let gate = Gate::closed();
    index.set_file_mode(FileMode::Gated { after: 512 * 1024, gate: gate.clone() });

    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    let clients: Vec<_> = (0..10).map(|_| tokio::spawn(get_owned(url.clone()))).collect();
    let metrics = format!("{}/metrics", pipgate.base);
    eventually("all ten clients joined the fill", || {
        let metrics = metrics.clone();
        async move {
            let text = get(&metrics, &[]).await.map(|a| a.text()).unwrap_or_default();
            text.contains(r#"pipgate_cache_lookups_total{cache="file",result="miss"} 10"#)
        }
    })
    .await;
    gate.open();
    for client in clients {
        let answer = client.await.unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-pipgate-cache"), "miss");
        assert!(answer.body == file.bytes, "a client got {} bytes, not the whole file", answer.body.len());
    }
    assert_eq!(index.count("/files/"), 1, "the ten clients shared one upstream download");
    let log = pipgate.log_so_far();
    assert!(log.contains("the cache disk failed during a fill"), "{log}");
    assert!(log.contains("file relayed past the failed cache disk"), "{log}");

    // Nothing half-written was kept: the next request passes through, whole.
    let again = get(&url, &[]).await.unwrap();
    assert!(again.body == file.bytes);
    assert_eq!(again.header("x-pipgate-cache"), "bypass");
    assert_eq!(index.count("/files/"), 2);
    let metrics = get(&metrics, &[]).await.unwrap().text();
    for counted in [
        r#"pipgate_file_pass_through_total{reason="disk_during_fill",upstream="corp"} 1"#,
        r#"pipgate_file_pass_through_total{reason="disk",upstream="corp"} 1"#,
    ] {
        assert!(metrics.contains(counted), "{counted} in {metrics}");
    }
}

/// When the whole file is in and verified but the cache cannot take it (here a directory sits
/// where the file belongs, so the move into place fails), the client still gets the whole
/// file, nothing is cached, and the store passes files through for a while.
#[tokio::test]
async fn a_verified_file_the_cache_cannot_commit_still_reaches_its_client_whole() {
    let file = FakeFile::blob("acme_core-1.0", 1024 * 1024, 29);
    let index = FakeIndex::start().await;
    index.add("acme-core", file.clone());
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
    let sha256 = support::wheel::sha256_hex(&file.bytes);
    let taken = pipgate.cache_dir.join("files").join(&sha256[..2]).join(&sha256);
    std::fs::create_dir_all(taken.join("in-the-way")).unwrap();

    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    let answer = get(&url, &[]).await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.header("x-pipgate-cache")), (200, "miss"));
    assert!(answer.body == file.bytes, "the client got {} bytes, not the whole file", answer.body.len());
    assert!(taken.is_dir(), "nothing replaced what was in the way");

    let metrics = format!("{}/metrics", pipgate.base);
    eventually("the fill ended", || {
        let metrics = metrics.clone();
        async move {
            let text = get(&metrics, &[]).await.map(|a| a.text()).unwrap_or_default();
            text.lines().any(|l| l == "pipgate_file_fills_in_progress 0")
        }
    })
    .await;
    let again = get(&url, &[]).await.unwrap();
    assert!(again.body == file.bytes);
    assert_eq!(again.header("x-pipgate-cache"), "bypass", "a degraded store passes files through");
    let text = get(&metrics, &[]).await.unwrap().text();
    let counted = r#"pipgate_file_pass_through_total{reason="disk",upstream="corp"} 1"#;
    assert!(text.contains(counted), "{counted} in {text}");
}
