//! JSON text written directly, for the project page's renderer.
//!
//! A page of thousands of files is written on every cold request, and serde's serializer,
//! which checks each byte of each string against its escape table, was a third of that
//! render. Strings here are checked a chunk at a time and copied whole when nothing in them
//! needs escaping (file names, URLs and digests never do); anything else, and every value
//! pipgate does not model (`extra` keys), goes through serde_json, so the output is the same
//! JSON serde_json would write.

use serde_json::Value;

/// Writes `text` as a JSON string.
pub fn string(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Writes `"key":`.
pub fn key(out: &mut Vec<u8>, key: &str) {
    string(out, key);
    out.push(b':');
}

/// Writes any value pipgate keeps without modelling it.
pub fn value(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    serde_json::to_writer(&mut *out, value).expect("a JSON value always serializes");
}

pub fn number(out: &mut Vec<u8>, number: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
}

pub fn boolean(out: &mut Vec<u8>, flag: bool) {
    out.extend_from_slice(if flag { b"true" } else { b"false" });
}

/// `[..]` of strings.
pub fn strings(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item);
    }
    out.push(b']');
}

/// `,"key":value` for each entry of a map of unmodelled keys.
pub fn extra_entries<'a>(out: &mut Vec<u8>, extra: impl IntoIterator<Item = (&'a String, &'a Value)>) {
    for (name, item) in extra {
        out.push(b',');
        key(out, name);
        value(out, item);
    }
}

/// Whether JSON needs an escape in `bytes`: a control character, a quote or a backslash
/// (serde_json escapes exactly these). Each chunk is folded without an early exit, which the
/// compiler turns into vector instructions.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes
        .chunks(32)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | (b < 0x20) | (b == b'"') | (b == b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let long_clean = "a".repeat(100);
        let late_quote = format!("{}\"", "b".repeat(70));
        for text in [
            "",
            "plain",
            "quote\"",
            "back\\slash",
            "tab\tnewline\n",
            "\u{1}",
            "caf\u{e9} \u{2028}",
            "\u{7f}",
            &long_clean,
            &late_quote,
        ] {
            let mut out = Vec::new();
            string(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }
}
