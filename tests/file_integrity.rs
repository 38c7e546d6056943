//! A download that turns out wrong never reaches a client as a complete file and never enters
//! the cache (I3): a corrupt byte, a short body and a reset mid-body each end with an error
//! status or a broken stream, leave no file (and no temp file) in the cache dir, and the next
//! request fetches again. Both a small file (fails before the answer starts) and a large one
//! (fails mid-stream) are tried.

use crate::support;

use std::path::Path;

use bytes::Bytes;
use std::future::ready;
use support::fake_index::{FakeFile, FakeIndex, FileMode};

use support::{Pipgate, config_for, eventually, get, wheel};

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn big_file() -> FakeFile {
    let bytes: Vec<u8> =
        (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    FakeFile {
        filename: "acme_core-2.0.tar.gz".into(),
        bytes: Bytes::from(bytes),
        metadata: None,
        requires_python: None,
        yanked: None,
        omit_hash: false,
    }
}

#[tokio::test]
async fn corrupt_short_and_reset_downloads_fail_and_cache_nothing() {
    let small = FakeFile::from(wheel::build("acme-core", "1.0", "private"));
    for file in [small, big_file()] {
        for mode in [FileMode::CorruptByte, FileMode::ShortBody, FileMode::ResetMidBody] {
            let index = FakeIndex::start().await;
            index.add("acme-core", file.clone());
            let pipgate =
                Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
            index.set_file_mode(mode.clone());
            let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
            let case = format!("{mode:?} {} bytes", file.bytes.len());
            match get(&url, &[]).await {
                Err(error) => assert!(error.contains("body broke off"), "{case}: {error}"),
                Ok(answer) => {
                    assert!(answer.status.is_server_error(), "{case}: a clean {} answer", answer.status);
                    assert!(answer.text().contains("upstream \"corp\""), "{case}: {}", answer.text());
                }
            }
            // The fill task cleans up after the client saw the failure: wait for the temp file
            // to go, then nothing may be left anywhere.
            let tmp = pipgate.cache_dir.join("tmp");
            eventually(&format!("{case}: temp file removed"), || ready(files_under(&tmp).is_empty())).await;
            assert_eq!(files_under(&pipgate.cache_dir.join("files")), Vec::<String>::new(), "{case}");

            // The next request goes upstream again, and a good download is served and cached.
            index.set_file_mode(FileMode::Serve);
            let before = index.count("/files/");
            let answer = get(&url, &[]).await.unwrap();
            assert_eq!(answer.body, file.bytes, "{case}");
            assert_eq!(index.count("/files/"), before + 1, "{case}");
            // The commit (fsync and rename) may finish just after the client's last byte.
            let files = pipgate.cache_dir.join("files");
            eventually(&format!("{case}: committed"), || ready(files_under(&files).len() == 1)).await;
        }
    }
}

#[tokio::test]
async fn a_file_url_no_request_can_carry_fails_that_file_and_wedges_nothing() {
    let index = FakeIndex::start().await;
    let file = FakeFile::from(wheel::build("acme-core", "1.0", "private"));
    index.add("acme-core", file.clone());
    let pipgate = Pipgate::start(
        &config_for(&[("corp", &index.url())], "[cache]\nindex_ttl = \"0s\"\nmax_stale = \"0s\"\n"),
        Default::default(),
    )
    .await;
    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    for listed in ["data:text/plain,hello", "file:///etc/passwd"] {
        index.set_file_url(&file.filename, Some(listed));
        let answer = get(&url, &[]).await.unwrap();
        assert_eq!(answer.status, 502, "{listed}: {}", answer.text());
        assert!(answer.text().contains("listed or redirected to an unusable URL"), "{}", answer.text());
    }
    // The upstream fixes its page: the same file downloads, nothing was left behind.
    index.set_file_url(&file.filename, None);
    let answer = get(&url, &[]).await.unwrap();
    assert_eq!(answer.body, file.bytes);
}
