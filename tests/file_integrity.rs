//! A download that turns out wrong never reaches a client as a complete file (I3): a corrupt
//! byte, a short body and a reset mid-body each end the client's stream with an error.

mod support;

use support::fake_index::{FakeIndex, FileMode};
use support::{Pipgate, config_for, get, wheel};

#[tokio::test]
async fn corrupt_short_and_reset_downloads_abort_the_client_stream() {
    for mode in [FileMode::CorruptByte, FileMode::ShortBody, FileMode::ResetMidBody] {
        let index = FakeIndex::start().await;
        let wheel = wheel::build("acme-core", "1.0", "private");
        index.add("acme-core", wheel.clone());
        let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
        index.set_file_mode(mode.clone());
        let url = format!("{}/files/acme-core/{}", pipgate.base, wheel.filename);
        let result = get(&url, &[]).await;
        match result {
            Err(error) => {
                assert!(error.contains("body broke off") || error.contains("Incomplete"), "{mode:?}: {error}")
            }
            Ok(answer) => panic!(
                "{mode:?}: the client got a clean end: {} ({} bytes)",
                answer.status,
                answer.body.len()
            ),
        }
        // A correct download of the same file still works afterwards.
        index.set_file_mode(FileMode::Serve);
        let answer = get(&url, &[]).await.unwrap();
        assert_eq!(answer.body.as_ref(), wheel.bytes.as_slice(), "{mode:?}");
    }
}
