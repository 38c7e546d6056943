//! A file's hashes (`hashes`, and the hashes in `core-metadata`): hash name → hex digest.
//!
//! A file lists one or two hashes and a page lists thousands of files, so this is a short list
//! sorted by name rather than a map: a `BTreeMap` costs a node of over 500 bytes per file,
//! which made a parsed page several times larger than its JSON, and its allocations were a
//! large part of the parse.

use serde::{Deserialize, Serialize};

/// Hash name → hex digest, sorted by name, each name once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes(Vec<(Box<str>, Box<str>)>);

impl Hashes {
    pub fn new() -> Hashes {
        Hashes(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_key_value(name).map(|(_, digest)| digest)
    }

    pub fn get_key_value(&self, name: &str) -> Option<(&str, &str)> {
        let i = self.position(name).ok()?;
        let (name, digest) = &self.0[i];
        Some((name, digest))
    }

    /// Sets `name` to `digest`, replacing a digest already there (as a map's insert does,
    /// so a JSON object with a key twice keeps the last, as before).
    pub fn insert(&mut self, name: &str, digest: &str) {
        match self.position(name) {
            Ok(i) => self.0[i].1 = digest.into(),
            Err(i) => self.0.insert(i, (name.into(), digest.into())),
        }
    }

    /// Adds `name` unless it is listed already (a URL fragment's hash never overrides `hashes`).
    pub fn insert_if_absent(&mut self, name: &str, digest: &str) {
        if let Err(i) = self.position(name) {
            self.0.insert(i, (name.into(), digest.into()));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, digest)| (&**name, &**digest))
    }

    /// Heap bytes held, for the page cache's weigher (with 16 bytes per allocation for the
    /// allocator's rounding).
    pub fn heap_bytes(&self) -> usize {
        if self.0.capacity() == 0 {
            return 0;
        }
        16 + self.0.capacity() * size_of::<(Box<str>, Box<str>)>()
            + self.0.iter().map(|(name, digest)| name.len() + digest.len() + 32).sum::<usize>()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(listed, _)| (**listed).cmp(name))
    }
}

impl<const N: usize> From<[(String, String); N]> for Hashes {
    fn from(pairs: [(String, String); N]) -> Hashes {
        let mut hashes = Hashes(Vec::with_capacity(N));
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
                let mut hashes = Hashes(Vec::with_capacity(map.size_hint().unwrap_or(1).min(8)));
                // Borrowed where the input allows (no escapes): no String per key and value.
                while let Some((name, digest)) =
                    map.next_entry::<std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>>()?
                {
                    hashes.insert(&name, &digest);
                }
                hashes.0.shrink_to_fit();
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
