//! The shared tier on object storage, against real emulators on 127.0.0.1: Azurite (Azure Blob
//! Storage) and moto (S3). Two pipgate replicas with disks of their own share one container:
//! what one fetched, the other serves without asking the upstream; a corrupt object is
//! detected, deleted and fetched again; a store that stops degrades to local-only and comes
//! back; a herd across both replicas costs at most one upstream GET each.

use crate::support;

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use pipgate::config::MapEnv;
use support::fake_index::{FakeFile, FakeIndex, FileMode};
use support::python::{installed_origin, uv_install};
use support::storage::{Emulator, Kind};
use support::wheel::{build_with, sha256_hex};
use support::{Pipgate, config_for, eventually, get};

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

async fn metrics(pipgate: &Pipgate) -> String {
    get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text()
}

async fn replica(feed: &FakeIndex, store: &Emulator, extra: &str) -> Pipgate {
    Pipgate::start(&config_for(&[("feed", &feed.url())], &store.config(extra)), MapEnv::default()).await
}

async fn written(pipgate: &Pipgate, count: f64) {
    let series = "pipgate_shared_store_writes_total{result=\"ok\"}";
    for _ in 0..500 {
        if metric(&metrics(pipgate).await, series) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{count} verified files were not written to the shared store:\n{}", metrics(pipgate).await);
}

/// Requests for exactly `path` (a file, not its `.metadata`).
fn requests(feed: &FakeIndex, path: &str) -> usize {
    feed.seen().iter().filter(|s| s.path == path).count()
}

/// What the first replica fetched, the second serves from the store: to a real client, with no
/// file request to the upstream.
async fn replicas_share_files(kind: Kind) {
    let store = Emulator::start(kind).await;
    let feed = FakeIndex::start().await;
    let wheel = build_with("acme-core", "1.0.0", "private", &[], 512 * 1024);
    feed.add("acme-core", FakeFile::from(wheel.clone()));
    let first = replica(&feed, &store, "").await;
    let second = replica(&feed, &store, "").await;

    let target = tempfile::tempdir().unwrap();
    let run = uv_install(&first.index_url(), target.path(), &["acme-core"]).await;
    assert!(run.success, "{}", run.output);
    let wheel_path = "/files/acme_core-1.0.0-py3-none-any.whl";
    assert_eq!(requests(&feed, wheel_path), 1);
    // The wheel and its metadata file (listed with its own sha256, so cached like a file).
    written(&first, 2.0).await;
    let key = format!("pipgate/files/{}/{}", &sha256_hex(&wheel.bytes)[..2], sha256_hex(&wheel.bytes));
    let object = store.client().get(&Path::from(key)).await.unwrap().bytes().await.unwrap();
    assert_eq!(&object[..], &wheel.bytes[..], "the object is the verified file, content-addressed");

    let target = tempfile::tempdir().unwrap();
    let run = uv_install(&second.index_url(), target.path(), &["acme-core"]).await;
    assert!(run.success, "{}", run.output);
    assert_eq!(installed_origin(target.path(), "acme_core").as_deref(), Some("private"));
    assert_eq!(requests(&feed, wheel_path), 1, "the second replica asked the store");
    assert_eq!(requests(&feed, &format!("{wheel_path}.metadata")), 1);
    let text = metrics(&second).await;
    assert_eq!(metric(&text, "pipgate_shared_store_reads_total{result=\"hit\"}"), 2.0, "{text}");
    assert_eq!(metric(&text, &format!("pipgate_shared_store_up{{store=\"{}\"}}", store_label(kind))), 1.0);
    // The second replica does not write back what it read from the store.
    assert_eq!(metric(&text, "pipgate_shared_store_writes_total{result=\"ok\"}"), 0.0);
}

fn store_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Azurite => "azure",
        Kind::Moto => "s3",
    }
}

#[tokio::test]
async fn replicas_share_files_through_azure_blob_storage() {
    replicas_share_files(Kind::Azurite).await;
}

#[tokio::test]
async fn replicas_share_files_through_s3() {
    replicas_share_files(Kind::Moto).await;
}

#[tokio::test]
async fn a_corrupt_object_is_detected_deleted_and_fetched_again() {
    let store = Emulator::start(Kind::Moto).await;
    let feed = FakeIndex::start().await;
    let blob = FakeFile::blob("big-1.0", 1 << 20, 7);
    let (name, bytes) = (blob.filename.clone(), blob.bytes.clone());
    feed.add("big", blob);
    let first = replica(&feed, &store, "").await;
    let url = format!("{}/files/big/{name}", first.base);
    assert_eq!(get(&url, &[]).await.unwrap().body, bytes);
    written(&first, 1.0).await;

    // Same length, one byte flipped near the end: only the hash can tell.
    let key = Path::from(format!("pipgate/files/{}/{}", &sha256_hex(&bytes)[..2], sha256_hex(&bytes)));
    let mut bad = bytes.to_vec();
    let last = bad.len() - 10;
    bad[last] ^= 0xff;
    store.client().put(&key, bad.into()).await.unwrap();

    let second = replica(&feed, &store, "").await;
    let url = format!("{}/files/big/{name}", second.base);
    let broken = get(&url, &[]).await;
    assert!(
        broken.as_ref().is_err()
            || broken.as_ref().is_ok_and(|a| a.body != bytes && a.body.len() < bytes.len()),
        "a wrong object never reaches a client as a complete answer"
    );
    let client = store.client();
    eventually("the bad object is deleted", || {
        let (client, key) = (client.clone(), key.clone());
        async move { matches!(client.head(&key).await, Err(object_store::Error::NotFound { .. })) }
    })
    .await;
    assert_eq!(get(&url, &[]).await.unwrap().body, bytes, "fetched from the upstream again");
    assert_eq!(requests(&feed, &format!("/files/{name}")), 2);
    let text = metrics(&second).await;
    assert_eq!(metric(&text, "pipgate_shared_store_reads_total{result=\"corrupt\"}"), 1.0, "{text}");
}

#[tokio::test]
async fn a_store_that_stops_degrades_to_local_only_and_comes_back() {
    let mut store = Emulator::start(Kind::Azurite).await;
    let feed = FakeIndex::start().await;
    for i in 0..3 {
        feed.add("pkg", FakeFile::blob(&format!("pkg-1.{i}"), 64 * 1024, i));
    }
    let pipgate = replica(&feed, &store, "wait = \"500ms\"\nretry_interval = \"200ms\"").await;
    let fetch = |i: u32| {
        let url = format!("{}/files/pkg/pkg-1.{i}.tar.gz", pipgate.base);
        async move { get(&url, &[]).await.unwrap() }
    };
    assert_eq!(fetch(0).await.status, 200);
    written(&pipgate, 1.0).await;

    store.stop().await;
    let answer = fetch(1).await;
    assert_eq!(answer.status, 200, "a store that is down never fails a client");
    assert_eq!(answer.body.len(), 64 * 1024);
    let up = "pipgate_shared_store_up{store=\"azure\"}";
    eventually("the store is marked down", || async { metric(&metrics(&pipgate).await, up) == 0.0 }).await;

    store.restart().await;
    eventually("the store is used again", || async { metric(&metrics(&pipgate).await, up) == 1.0 }).await;
    assert_eq!(fetch(2).await.status, 200);
    written(&pipgate, 2.0).await;
}

#[tokio::test]
async fn a_herd_across_two_replicas_costs_at_most_two_upstream_gets() {
    let store = Emulator::start(Kind::Moto).await;
    let feed = FakeIndex::start().await;
    // Sent in 64 KiB pieces 20 ms apart (~320 ms for 1 MiB): the fills overlap.
    feed.set_file_mode(FileMode::Slow(Duration::from_millis(20)));
    let blob = FakeFile::blob("herd-1.0", 1 << 20, 9);
    let (name, bytes) = (blob.filename.clone(), blob.bytes.clone());
    feed.add("herd", blob);
    let replicas = [replica(&feed, &store, "").await, replica(&feed, &store, "").await];
    let mut clients = Vec::new();
    for i in 0..100 {
        let url = format!("{}/files/herd/{name}", replicas[i % 2].base);
        clients.push(tokio::spawn(async move { get(&url, &[]).await.unwrap().body }));
    }
    for client in clients {
        assert_eq!(client.await.unwrap(), bytes);
    }
    let gets = requests(&feed, &format!("/files/{name}"));
    assert!((1..=2).contains(&gets), "{gets} upstream GETs for 100 clients on two replicas");
}

#[tokio::test]
async fn shared_pages_let_a_new_replica_serve_while_the_upstream_is_down() {
    let store = Emulator::start(Kind::Moto).await;
    let feed = FakeIndex::start().await;
    let wheel = build_with("acme-core", "2.0.0", "private", &[], 0);
    feed.add("acme-core", FakeFile::from(wheel.clone()));
    let first = replica(&feed, &store, "pages = true").await;
    let target = tempfile::tempdir().unwrap();
    let run = uv_install(&first.index_url(), target.path(), &["acme-core"]).await;
    assert!(run.success, "{}", run.output);
    written(&first, 2.0).await;
    let client = store.client();
    eventually("the page is in the store", || {
        let client = client.clone();
        async move {
            use futures_util::StreamExt;
            client.list(Some(&Path::from("pipgate/pages"))).next().await.is_some()
        }
    })
    .await;

    feed.stop();
    let second = replica(&feed, &store, "pages = true").await;
    let target = tempfile::tempdir().unwrap();
    let run = uv_install(&second.index_url(), target.path(), &["acme-core"]).await;
    assert!(run.success, "a new replica installs from the store while the upstream is down: {}", run.output);
    assert_eq!(installed_origin(target.path(), "acme_core").as_deref(), Some("private"));
}
