//! The PEP 503 name normalizer: never panics; a name it accepts is normalized (lowercase ASCII
//! letters, digits and single `-`, no `-` at either end) and normalizes to itself again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::pypi::ProjectName;

fuzz_target!(|raw: &str| {
    if let Ok(name) = ProjectName::new(raw) {
        let s = name.as_str();
        assert!(!s.is_empty());
        assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{s:?}");
        assert!(!s.contains("--") && !s.starts_with('-') && !s.ends_with('-'), "{s:?}");
        assert_eq!(ProjectName::new(s).map(|n| n.as_str().to_owned()).as_deref(), Ok(s));
    }
});
