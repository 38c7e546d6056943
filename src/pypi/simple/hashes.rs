//! A file's hashes (`hashes`, and the hashes in `core-metadata`): hash name → hex digest.
//!
//! A file lists one or two hashes and a page lists thousands of files, each with two or three
//! hash tables (its own, its metadata's, and PyPI's second spelling of the metadata's). Nearly
//! every one of them is a lone sha256, so that case is held inline, without an allocation: as
//! a sorted list of boxed names and digests it cost three allocations and about 130 bytes a
//! table, which were a third of a large page's allocations and so of its parse. Any other set
//! is a short list sorted by name (a `BTreeMap` costs a node of over 500 bytes).

use serde::{Deserialize, Serialize};

use super::input_text::InputText;

/// Hash name → hex digest, sorted by name, each name once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes(Listed);

/// The two forms of a set of hashes. A set that is a lone sha256 of 64 bytes is always
/// held as [`Listed::Sha256`] (every change goes through [`Listed::from_entries`]), so the
/// derived equality compares sets, not forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Listed {
    #[default]
    Empty,
    /// A lone sha256 of 64 bytes (64 hex digits, as every index lists it), as listed.
    Sha256([u8; 64]),
    /// Any other set, sorted by name.
    Entries(Box<[Entry]>),
}

/// A hash name and its digest.
type Entry = (Box<str>, Box<str>);

const SHA256: &str = "sha256";

/// The bytes of `digest` if it can be held inline: a sha256 of 64 bytes. Not checked to be
/// hex (a digest is compared, never decoded, and a byte-wise check cost more than the
/// allocation it saves): any 64 bytes that were a whole `str` read back as one.
fn inline_sha256(name: &str, digest: &str) -> Option<[u8; 64]> {
    if name != SHA256 {
        return None;
    }
    digest.as_bytes().try_into().ok()
}

/// Inline bytes as text: they were a whole `str` when stored.
fn digits(inline: &[u8; 64]) -> &str {
    std::str::from_utf8(inline).unwrap_or_default()
}

impl Listed {
    fn from_entries(entries: Vec<Entry>) -> Listed {
        match entries.as_slice() {
            [] => Listed::Empty,
            [(name, digest)] => match inline_sha256(name, digest) {
                Some(inline) => Listed::Sha256(inline),
                None => Listed::Entries(entries.into_boxed_slice()),
            },
            _ => Listed::Entries(entries.into_boxed_slice()),
        }
    }

    fn into_entries(self) -> Vec<Entry> {
        match self {
            Listed::Empty => Vec::new(),
            Listed::Sha256(inline) => vec![(SHA256.into(), digits(&inline).into())],
            Listed::Entries(entries) => entries.into_vec(),
        }
    }
}

impl Hashes {
    pub fn new() -> Hashes {
        Hashes(Listed::Empty)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_key_value(name).map(|(_, digest)| digest)
    }

    pub fn get_key_value(&self, name: &str) -> Option<(&str, &str)> {
        self.iter().find(|(listed, _)| *listed == name)
    }

    /// Sets `name` to `digest`, replacing a digest already there (as a map's insert does,
    /// so a JSON object with a key twice keeps the last, as before).
    pub fn insert(&mut self, name: &str, digest: &str) {
        self.change(name, digest, true);
    }

    /// Adds `name` unless it is listed already (a URL fragment's hash never overrides `hashes`).
    pub fn insert_if_absent(&mut self, name: &str, digest: &str) {
        self.change(name, digest, false);
    }

    fn change(&mut self, name: &str, digest: &str, replace: bool) {
        // The common case, a sha256 into an empty set, allocates nothing.
        if let (Listed::Empty, Some(inline)) = (&self.0, inline_sha256(name, digest)) {
            self.0 = Listed::Sha256(inline);
            return;
        }
        let mut entries = std::mem::take(&mut self.0).into_entries();
        match entries.binary_search_by(|(listed, _)| (**listed).cmp(name)) {
            Ok(i) if replace => entries[i].1 = digest.into(),
            Ok(_) => {}
            Err(i) => entries.insert(i, (name.into(), digest.into())),
        }
        self.0 = Listed::from_entries(entries);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (lone, entries): (Option<(&str, &str)>, &[Entry]) = match &self.0 {
            Listed::Empty => (None, &[]),
            Listed::Sha256(inline) => (Some((SHA256, digits(inline))), &[]),
            Listed::Entries(entries) => (None, entries),
        };
        lone.into_iter().chain(entries.iter().map(|(name, digest)| (&**name, &**digest)))
    }

    /// Heap bytes held, for the page cache's weigher (with 16 bytes per allocation for the
    /// allocator's rounding). A lone sha256 holds none: it is part of the entry's own size.
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Listed::Empty | Listed::Sha256(_) => 0,
            Listed::Entries(entries) => {
                16 + entries.len() * size_of::<Entry>()
                    + entries.iter().map(|(name, digest)| name.len() + digest.len() + 32).sum::<usize>()
            }
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Hashes {
    fn from(pairs: [(String, String); N]) -> Hashes {
        let mut hashes = Hashes::new();
        for (name, digest) in &pairs {
            hashes.insert(name, digest);
        }
        hashes
    }
}

impl std::ops::Index<&str> for Hashes {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| panic!("no {name} hash"))
    }
}

impl Serialize for Hashes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HashesVisitor;
        impl<'de> serde::de::Visitor<'de> for HashesVisitor {
            type Value = Hashes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of hash names and hex digests")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Hashes, A::Error> {
                let mut hashes = Hashes::new();
                // Borrowed where the input allows (no escapes): no String per key and value.
                while let Some((InputText(name), InputText(digest))) = map.next_entry()? {
                    hashes.insert(&name, &digest);
                }
                Ok(hashes)
            }
        }
        deserializer.deserialize_map(HashesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_sorted_and_unique_and_the_last_value_wins() {
        let mut hashes = Hashes::new();
        hashes.insert("sha256", "aa");
        hashes.insert("md5", "bb");
        hashes.insert("sha256", "cc");
        hashes.insert_if_absent("sha256", "dd");
        hashes.insert_if_absent("blake2b", "ee");
        assert_eq!(hashes.iter().collect::<Vec<_>>(), [("blake2b", "ee"), ("md5", "bb"), ("sha256", "cc")]);
        assert_eq!(hashes.get("sha256"), Some("cc"));
        assert_eq!(hashes.get("sha512"), None);
        assert_eq!(&hashes["md5"], "bb");
    }

    #[test]
    fn a_lone_sha256_is_held_inline_and_equals_the_same_set_made_any_other_way() {
        let digest = "0123456789abcdef".repeat(4);
        let parsed: Hashes = serde_json::from_str(&format!(r#"{{"sha256": "{digest}"}}"#)).unwrap();
        assert_eq!(parsed.heap_bytes(), 0, "inline");
        assert_eq!(parsed.get("sha256"), Some(digest.as_str()));
        assert_eq!(parsed.iter().collect::<Vec<_>>(), [("sha256", digest.as_str())]);
        // The same set reached through the list form is the same value.
        let mut built = Hashes::new();
        built.insert("sha256", "short");
        built.insert("sha256", &digest);
        assert_eq!(built, parsed);
        assert_eq!(built.heap_bytes(), 0, "back to inline once it is a lone sha256 again");
        // A fragment's hash never overrides the listed one; an upstream's second key does.
        built.insert_if_absent("sha256", &"f".repeat(64));
        assert_eq!(built.get("sha256"), Some(digest.as_str()));
        built.insert("sha256", &"F".repeat(64));
        assert_eq!(built.get("sha256"), Some("F".repeat(64).as_str()), "kept as listed");
        // Anything else is listed in full, sorted, and weighed.
        built.insert("md5", "bb");
        assert_eq!(built.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["md5", "sha256"]);
        assert!(built.heap_bytes() > 64);
        for odd in [&digest[..63], "é".repeat(32).as_str()] {
            let mut hashes = Hashes::new();
            hashes.insert("sha256", odd);
            assert_eq!(
                hashes.get("sha256"),
                Some(odd),
                "a digest that is not 64 hex digits is kept as listed"
            );
            assert_eq!(hashes.heap_bytes() > 0, odd.len() != 64);
        }
        assert_eq!(Hashes::new().iter().count(), 0);
    }

    #[test]
    fn json_round_trip_keeps_escaped_values_and_the_last_duplicate() {
        let hashes: Hashes =
            serde_json::from_str(r#"{"sha256": "a\u0062", "md5": "x", "md5": "y"}"#).unwrap();
        assert_eq!(
            hashes,
            Hashes::from([("md5".to_owned(), "y".to_owned()), ("sha256".to_owned(), "ab".to_owned())])
        );
        assert_eq!(serde_json::to_string(&hashes).unwrap(), r#"{"md5":"y","sha256":"ab"}"#);
    }
}
