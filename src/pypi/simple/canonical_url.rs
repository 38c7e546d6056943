//! Recognizes an absolute URL that URL parsing would return exactly as it is.
//!
//! Every file URL on an upstream page is resolved against the page's URL, and that parse was a
//! fifth of a large page's parse time. PyPI and most indexes list absolute `https` URLs with
//! plain host names and paths, which parsing leaves unchanged: those are kept as they are,
//! and anything else (relative, a port, user info, an IP address, non-ASCII, a `.` segment, a
//! character that would be percent-encoded) takes the full parse. The rule is conservative:
//! it may send a canonical URL to the parser, never a non-canonical one past it (the test
//! below checks that against the parser on generated URLs).

/// Whether `href` is an absolute `http`/`https` URL without fragment that `url::Url::parse`
/// returns unchanged.
pub fn is_canonical_absolute(href: &str) -> bool {
    let Some(rest) = href.strip_prefix("https://").or_else(|| href.strip_prefix("http://")) else {
        return false;
    };
    let Some(slash) = rest.find('/') else { return false };
    let (host, path_and_query) = rest.split_at(slash);
    plain_host(host) && plain_path_and_query(path_and_query.as_bytes())
}

/// A whole fragment that parsing leaves unchanged (a `#sha256=…` hash, as pages list them).
pub fn is_plain_fragment(fragment: &str) -> bool {
    fragment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'-' | b'_' | b'.'))
}

/// Lowercase ASCII DNS labels, the last starting with a letter (a host ending in a number is
/// an IPv4 address, which parsing rewrites), none a punycode or hyphen-edged label (the IDNA
/// mapping checks those).
fn plain_host(host: &str) -> bool {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
            && !(bytes.len() >= 4 && &bytes[2..4] == b"--")
    };
    host.split('.').all(label_ok)
        && host.rsplit('.').next().is_some_and(|last| last.as_bytes()[0].is_ascii_lowercase())
}

/// A path of plain segments (no `.` or `..` segment, which parsing removes), then perhaps a
/// `?` and a plain query.
fn plain_path_and_query(bytes: &[u8]) -> bool {
    simply_plain_path(bytes) || plain_path_and_query_byte_by_byte(bytes)
}

/// The usual case, checked in two passes that the compiler vectorizes: only plain path bytes,
/// no `%` or `?`, and no `/.`, which every dot segment starts with. Anything else is checked
/// byte by byte. A page lists thousands of URLs, and checking each byte by byte was 12% of a
/// large page's parse (in instructions).
fn simply_plain_path(bytes: &[u8]) -> bool {
    let odd = bytes.iter().fold(0u8, |odd, &b| odd | u8::from(!is_plain_path_byte(b)));
    let pairs = bytes.iter().zip(bytes.iter().skip(1));
    let dot_after_slash = pairs.fold(0u8, |found, (&a, &b)| found | u8::from((a == b'/') & (b == b'.')));
    odd == 0 && dot_after_slash == 0
}

/// `PATH`'s bytes, as comparisons rather than a table lookup, so that a pass vectorizes.
fn is_plain_path_byte(b: u8) -> bool {
    is_plain_byte(b) | (b == b'/')
}

/// [`plain_path_and_query`] for any path, one byte at a time.
fn plain_path_and_query_byte_by_byte(bytes: &[u8]) -> bool {
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    let mut plain = &PATH;
    let mut in_path = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if plain[b as usize] {
            if b == b'.' && in_path && is_dot_segment_at(bytes, i) {
                return false;
            }
            i += 1;
        } else if b == b'%'
            && hex(i + 1)
            && hex(i + 2)
            // No encoded dot either (`%2e`, which parsing may treat as a dot in a `..` segment).
            && !(bytes[i + 1] == b'2' && bytes[i + 2] | 0x20 == b'e')
        {
            i += 3;
        } else if b == b'?' && in_path {
            (plain, in_path) = (&QUERY, false);
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Whether the `.` at `at` of a path starts a `.` or `..` segment: one after a `/` that
/// ends at the next `/`, the query or the end.
fn is_dot_segment_at(path: &[u8], at: usize) -> bool {
    let ends_segment = |i: usize| path.get(i).is_none_or(|&b| b == b'/' || b == b'?');
    at > 0
        && path[at - 1] == b'/'
        && (ends_segment(at + 1) || (path.get(at + 1) == Some(&b'.') && ends_segment(at + 2)))
}

/// A byte kept as it is: an RFC 3986 unreserved or sub-delimiter character, `:` or `@`.
/// Nothing that parsing percent-encodes, decodes or treats as a separator.
const fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        | matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// A table of the plain bytes and `extra`.
const fn plain_bytes(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_plain_byte(b as u8);
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

static PATH: [bool; 256] = plain_bytes(b"/");
static QUERY: [bool; 256] = plain_bytes(b"/?");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_style_urls_are_recognized() {
        for url in [
            "https://files.pythonhosted.org/packages/ab/cd/0123abcd/numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl",
            "https://pkgs.dev.azure.com/org/_packaging/feed/pypi/download/acme/1.0/acme-1.0.tar.gz?sig=a%2Fb&se=2025",
            "http://127.0.0.1.nip.io/files/x-1.0+cpu.tar.gz",
        ] {
            assert!(is_canonical_absolute(url), "{url}");
            assert_eq!(url::Url::parse(url).unwrap().as_str(), url);
        }
        for url in [
            "../../files/x.whl",
            "HTTPS://files.example/x.whl",
            "https://Files.example/x.whl",
            "https://files.example",
            "https://files.example:443/x.whl",
            "https://user@files.example/x.whl",
            "https://127.0.0.1/x.whl",
            "https://xn--nxasmq6b.example/x.whl",
            "https://files.example/a/../x.whl",
            "https://files.example/a/%2e%2E/x.whl",
            "https://files.example/a b.whl",
            "https://files.example/a\\b.whl",
            "https://files.example/caf\u{e9}.whl",
            "https://files.example/x.whl#sha256=ab",
            "https://files.example/x%zz.whl",
            "https://files.example/x%2",
        ] {
            assert!(!is_canonical_absolute(url), "{url}");
        }
    }

    /// The comparisons of the vectorized pass accept exactly the table's path bytes (its
    /// plain bytes and its extra `/`).
    #[test]
    fn plain_path_bytes_are_the_table() {
        for b in 0..=255u8 {
            assert_eq!(is_plain_path_byte(b), PATH[b as usize], "{b:#x}");
        }
    }

    /// Generated URLs over an alphabet of the characters parsing treats specially: every one
    /// recognized must parse to itself.
    #[test]
    fn every_recognized_url_parses_to_itself() {
        let alphabet: Vec<char> =
            "aZ09-._~!$&'()*+,;=:@/?#%2eE \\\"<>`{}|^[]\u{e9}\u{1}\u{7f}".chars().collect();
        let hosts = ["files.example", "a-b.example", "1.example", "example.1a", "x--y.example", "a.b.c"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut recognized = 0;
        for _ in 0..200_000 {
            let host = hosts[next(hosts.len())];
            let length = next(12);
            let path: String = (0..length).map(|_| alphabet[next(alphabet.len())]).collect();
            let url = format!("https://{host}/{path}");
            let path = &url.as_bytes()[8 + host.len()..];
            if simply_plain_path(path) {
                assert!(plain_path_and_query_byte_by_byte(path), "{url:?}: the fast check is a subset");
            }
            if is_canonical_absolute(&url) {
                recognized += 1;
                let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
                assert_eq!(parsed.as_str(), url);
            }
        }
        assert!(recognized > 10_000, "the generator reaches the fast path ({recognized})");
    }
}
