//! The config loader over any text: never panics; every refusal names where it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::config::{ConfigSource, MapEnv, load_text};

fuzz_target!(|text: &str| {
    let source = ConfigSource::File("fuzz.toml".into());
    if let Err(error) = load_text(text, &source, &MapEnv::default()) {
        assert!(error.to_string().starts_with("fuzz.toml"), "{error}");
    }
});
