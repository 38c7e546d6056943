//! Project names, normalized once at the edge (PEP 503).
//!
//! A [`ProjectName`] can only exist in normalized form: lowercase ASCII, with every run of
//! `-`, `_` and `.` folded into one `-`. Anything that is not a valid PEP 508 name (non-ASCII,
//! control characters, `/`, a leading or trailing separator) is rejected rather than folded:
//! Unicode look-alikes must never normalize onto a private name.

use std::fmt;
use std::str::FromStr;

/// A normalized, valid Python project name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

/// Why a string is not a project name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("a project name may not be empty")]
    Empty,
    #[error("a project name may only hold ASCII letters, digits, '-', '_' and '.'")]
    BadCharacter,
    #[error("a project name must start and end with a letter or digit")]
    BadEnds,
}

impl ProjectName {
    /// Validates and normalizes `raw`.
    pub fn new(raw: &str) -> Result<Self, InvalidName> {
        validate(raw)?;
        if is_normalized(raw) {
            return Ok(Self(raw.to_owned()));
        }
        Ok(Self(normalize_valid(raw)))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Normalizes a name that may also contain `*` wildcards (route patterns). The same folding as
/// [`ProjectName::new`], so a pattern and a name agree on spelling.
pub fn normalize_pattern(raw: &str) -> Result<String, InvalidName> {
    if raw.is_empty() {
        return Err(InvalidName::Empty);
    }
    if !raw.bytes().all(|b| is_name_byte(b) || b == b'*') {
        return Err(InvalidName::BadCharacter);
    }
    Ok(normalize_valid(raw))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn validate(raw: &str) -> Result<(), InvalidName> {
    let bytes = raw.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(InvalidName::Empty);
    };
    if !bytes.iter().copied().all(is_name_byte) {
        return Err(InvalidName::BadCharacter);
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(InvalidName::BadEnds);
    }
    Ok(())
}

/// Fast path: most requests already use the normalized spelling.
fn is_normalized(raw: &str) -> bool {
    let mut previous_dash = false;
    for b in raw.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => previous_dash = false,
            b'-' if !previous_dash => previous_dash = true,
            _ => return false,
        }
    }
    true
}

/// Whether `raw` is a valid name that normalizes to `normalized`: what
/// `ProjectName::new(raw)` would hold, compared without making it (a page checks the name in
/// every one of its thousands of file names).
pub fn normalizes_to(raw: &str, normalized: &str) -> bool {
    if validate(raw).is_err() {
        return false;
    }
    let mut expected = normalized.bytes();
    let mut in_separator_run = false;
    for b in raw.bytes() {
        let folded = if matches!(b, b'-' | b'_' | b'.') {
            if in_separator_run {
                continue;
            }
            in_separator_run = true;
            b'-'
        } else {
            in_separator_run = false;
            b.to_ascii_lowercase()
        };
        if expected.next() != Some(folded) {
            return false;
        }
    }
    expected.next().is_none()
}

fn normalize_valid(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_separator_run = false;
    for c in raw.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    out
}

impl FromStr for ProjectName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectName({:?})", self.0)
    }
}

impl AsRef<str> for ProjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_compared_in_place_agrees_with_its_normalized_form() {
        let spellings = [
            "acme-core",
            "Acme.Core",
            "acme__core",
            "ACME-._core",
            "acme-core-",
            "-acme",
            "acme core",
            "acmecore",
            "acme-cor",
            "acme-coree",
            "",
            "a",
            "A",
            "ä-core",
            "acme/core",
            "acme-core2",
        ];
        for raw in spellings {
            for normalized in ["acme-core", "acmecore", "a", "", "acme-core2", "acme-cor"] {
                let made = ProjectName::new(raw).is_ok_and(|name| name.as_str() == normalized);
                assert_eq!(normalizes_to(raw, normalized), made, "{raw:?} as {normalized:?}");
            }
        }
    }

    #[test]
    fn spellings_of_one_name_normalize_alike() {
        for spelling in [
            "acme-core",
            "Acme_Core",
            "acme.core",
            "ACME--core",
            "acme_.-core",
            "Acme.Core",
            "acme__core",
            "aCmE-CoRe",
        ] {
            assert_eq!(ProjectName::new(spelling).unwrap().as_str(), "acme-core", "{spelling}");
        }
    }

    #[test]
    fn invalid_names_are_rejected_not_folded() {
        for (raw, expected) in [
            ("", InvalidName::Empty),
            ("acme/core", InvalidName::BadCharacter),
            ("..", InvalidName::BadEnds),
            ("-acme", InvalidName::BadEnds),
            ("acme-", InvalidName::BadEnds),
            ("acme core", InvalidName::BadCharacter),
            ("acme\u{0}core", InvalidName::BadCharacter),
            // Cyrillic 'а' looks like Latin 'a': never fold it onto a private name.
            ("\u{0430}cme-core", InvalidName::BadCharacter),
            ("ﬁle", InvalidName::BadCharacter),
        ] {
            assert_eq!(ProjectName::new(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn single_character_names_are_valid() {
        assert_eq!(ProjectName::new("A").unwrap().as_str(), "a");
    }

    #[test]
    fn patterns_fold_like_names() {
        assert_eq!(normalize_pattern("Acme_*").unwrap(), "acme-*");
        assert!(normalize_pattern("acme/*").is_err());
    }
}
