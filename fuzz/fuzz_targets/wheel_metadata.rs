//! The wheel METADATA reader over any bytes as a "wheel": never panics, never allocates past
//! its caps, and what it returns is within them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::pypi::ProjectName;
use pipgate::pypi::wheel_metadata::{MAX_METADATA_BYTES, from_wheel};

fuzz_target!(|wheel: &[u8]| {
    let project = ProjectName::new("acme-core").unwrap();
    if let Ok(metadata) = from_wheel(wheel, &project, "1.0") {
        assert!(metadata.len() as u64 <= MAX_METADATA_BYTES);
    }
});
