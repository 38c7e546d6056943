//! Content negotiation over any `Accept` header and `format` value: never panics, and with no
//! `format` a header that names no media type at all gets HTML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipgate::pypi::negotiate;

fuzz_target!(|input: (&str, Option<&str>)| {
    let (accept, format) = input;
    let chosen = negotiate(Some(accept), format);
    if format.is_none() && accept.trim().is_empty() {
        assert!(chosen.is_ok());
    }
    let _ = negotiate(None, format);
});
