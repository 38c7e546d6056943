//! A wheel's core metadata (`{name}-{version}.dist-info/METADATA`) read out of its zip without
//! reading the whole zip: the end of central directory from the file's tail, the central
//! directory, then the one entry's local header and data. The steps take byte slices, so the
//! same code serves a wheel on disk and one read by ranged GETs from an upstream.
//!
//! Everything in a zip is data from an upstream and may be hostile, so every size and offset
//! is checked against the file's length and against caps before anything is read or
//! allocated: a central directory at most [`MAX_DIRECTORY_BYTES`], METADATA at most
//! [`MAX_METADATA_BYTES`] both compressed and inflated (a compression bomb stops there, and
//! the inflated size and CRC-32 must be what the directory says). Zip64 is read where wheels
//! need it (sizes and offsets past 4 GiB) and refused where its records disagree. The wheel
//! spec's rule holds: exactly one `.dist-info` directory, matching the file's name and version.

use std::io::Read;

use crate::pypi::ProjectName;

/// Largest METADATA accepted (real ones are a few KiB; the longest on PyPI are under 1 MiB).
pub const MAX_METADATA_BYTES: u64 = 8 << 20;
/// Largest central directory accepted (a wheel with 100,000 files has about 10 MiB).
pub const MAX_DIRECTORY_BYTES: u64 = 64 << 20;
/// The end of central directory record with the longest comment: read this much of the tail.
pub const TAIL_BYTES: u64 = 22 + 65_535 + 20;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("not a zip file: {0}")]
    NotAZip(&'static str),
    #[error("the zip is malformed: {0}")]
    Malformed(&'static str),
    #[error("the wheel has no .dist-info directory")]
    NoDistInfo,
    #[error("the wheel has {0} .dist-info directories; a wheel has exactly one")]
    ManyDistInfo(usize),
    #[error("the wheel's .dist-info directory {0:?} does not match its file name")]
    WrongDistInfo(String),
    #[error("the wheel has no METADATA in {0:?}")]
    NoMetadata(String),
    #[error("METADATA is larger than {MAX_METADATA_BYTES} bytes")]
    TooLarge,
    #[error("METADATA uses compression method {0}; only stored and deflate are read")]
    Method(u16),
    #[error("METADATA does not inflate: {0}")]
    Inflate(String),
    #[error("METADATA inflates to other bytes than the zip says (size or CRC-32)")]
    Corrupt,
}

/// Where the central directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directory {
    pub offset: u64,
    pub size: u64,
    pub entries: u64,
}

/// One central directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub method: u16,
    pub crc: u32,
    pub compressed: u64,
    pub uncompressed: u64,
    pub local_offset: u64,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Finds the central directory from `tail`, the last bytes of a file of `file_size` bytes
/// (at most [`TAIL_BYTES`] of them are needed).
pub fn find_directory(tail: &[u8], file_size: u64) -> Result<Directory, MetadataError> {
    let tail_start =
        file_size.checked_sub(tail.len() as u64).ok_or(MetadataError::Malformed("tail longer than file"))?;
    // The record is 22 bytes plus a comment that must reach exactly to the end.
    let at = (0..=tail.len().saturating_sub(22))
        .rev()
        .find(|&at| {
            u32_at(tail, at) == Some(EOCD)
                && u16_at(tail, at + 20).is_some_and(|comment| at + 22 + usize::from(comment) == tail.len())
        })
        .ok_or(MetadataError::NotAZip("no end of central directory record"))?;
    let entries = u64::from(u16_at(tail, at + 10).expect("in record"));
    let size = u64::from(u32_at(tail, at + 12).expect("in record"));
    let offset = u64::from(u32_at(tail, at + 16).expect("in record"));
    let eocd_start = tail_start + at as u64;
    let directory = if entries == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
        zip64_directory(tail, at, tail_start)?
    } else {
        Directory { offset, size, entries }
    };
    // The directory lies before the record(s) that point at it, and holds 46 bytes an entry.
    let end = directory
        .offset
        .checked_add(directory.size)
        .ok_or(MetadataError::Malformed("directory past the end"))?;
    if end > eocd_start || directory.size > MAX_DIRECTORY_BYTES {
        return Err(MetadataError::Malformed("the central directory is out of bounds"));
    }
    if directory.entries.checked_mul(46).is_none_or(|least| least > directory.size) {
        return Err(MetadataError::Malformed("more entries than the central directory can hold"));
    }
    Ok(directory)
}

/// The zip64 end of central directory, which the locator 20 bytes before the classic record
/// points at; it must lie in `tail` right before the locator.
fn zip64_directory(tail: &[u8], eocd_at: usize, tail_start: u64) -> Result<Directory, MetadataError> {
    let locator = eocd_at.checked_sub(20).ok_or(MetadataError::Malformed("zip64 locator missing"))?;
    if u32_at(tail, locator) != Some(ZIP64_LOCATOR) {
        return Err(MetadataError::Malformed("zip64 locator missing"));
    }
    let record = u64_at(tail, locator + 8).expect("in locator");
    let at = record.checked_sub(tail_start).and_then(|a| usize::try_from(a).ok());
    let at =
        at.filter(|&a| a + 56 <= locator).ok_or(MetadataError::Malformed("zip64 record out of bounds"))?;
    if u32_at(tail, at) != Some(ZIP64_EOCD) {
        return Err(MetadataError::Malformed("zip64 record missing"));
    }
    Ok(Directory {
        entries: u64_at(tail, at + 32).expect("in record"),
        size: u64_at(tail, at + 40).expect("in record"),
        offset: u64_at(tail, at + 48).expect("in record"),
    })
}

/// Reads the central directory (`bytes` is exactly `directory.size` bytes at its offset).
pub fn parse_directory(
    bytes: &[u8],
    directory: &Directory,
    file_size: u64,
) -> Result<Vec<Entry>, MetadataError> {
    if bytes.len() as u64 != directory.size {
        return Err(MetadataError::Malformed("central directory of the wrong size"));
    }
    let mut entries = Vec::new();
    let mut at = 0;
    for _ in 0..directory.entries {
        let malformed = MetadataError::Malformed("truncated central directory entry");
        if u32_at(bytes, at) != Some(CENTRAL) {
            return Err(MetadataError::Malformed("bad central directory entry"));
        }
        let method = u16_at(bytes, at + 10).ok_or(malformed.clone())?;
        let crc = u32_at(bytes, at + 16).ok_or(malformed.clone())?;
        let mut compressed = u64::from(u32_at(bytes, at + 20).ok_or(malformed.clone())?);
        let mut uncompressed = u64::from(u32_at(bytes, at + 24).ok_or(malformed.clone())?);
        let name_len = usize::from(u16_at(bytes, at + 28).ok_or(malformed.clone())?);
        let extra_len = usize::from(u16_at(bytes, at + 30).ok_or(malformed.clone())?);
        let comment_len = usize::from(u16_at(bytes, at + 32).ok_or(malformed.clone())?);
        let mut local_offset = u64::from(u32_at(bytes, at + 42).ok_or(malformed.clone())?);
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or(malformed.clone())?;
        let extra = bytes.get(at + 46 + name_len..at + 46 + name_len + extra_len).ok_or(malformed.clone())?;
        // Zip64 extended information: the 64-bit values of the fields that are all ones, in order.
        let mut wanted: Vec<&mut u64> = Vec::new();
        let (u, c, o) = (uncompressed == 0xFFFF_FFFF, compressed == 0xFFFF_FFFF, local_offset == 0xFFFF_FFFF);
        if u {
            wanted.push(&mut uncompressed);
        }
        if c {
            wanted.push(&mut compressed);
        }
        if o {
            wanted.push(&mut local_offset);
        }
        if !wanted.is_empty() {
            let values = zip64_extra(extra).ok_or(MetadataError::Malformed("zip64 sizes missing"))?;
            if values.len() < wanted.len() {
                return Err(MetadataError::Malformed("zip64 sizes missing"));
            }
            for (slot, value) in wanted.into_iter().zip(values) {
                *slot = value;
            }
        }
        if local_offset.checked_add(30 + compressed).is_none_or(|end| end > directory.offset.min(file_size)) {
            return Err(MetadataError::Malformed("an entry reaches past its bounds"));
        }
        entries.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            crc,
            compressed,
            uncompressed,
            local_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// The 64-bit values of the zip64 extra field (header id 1), if there is one.
fn zip64_extra(extra: &[u8]) -> Option<Vec<u64>> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at)?;
        let len = usize::from(u16_at(extra, at + 2)?);
        let data = extra.get(at + 4..at + 4 + len)?;
        if id == 1 {
            return Some(
                data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            );
        }
        at += 4 + len;
    }
    None
}

/// The METADATA entry of the wheel of `project` at `version`: the one `.dist-info` directory
/// must be `{name}-{version}.dist-info` (the name compared normalized, as the spec allows
/// `_`, `.` and case to differ).
pub fn metadata_entry<'a>(
    entries: &'a [Entry],
    project: &ProjectName,
    version: &str,
) -> Result<&'a Entry, MetadataError> {
    let mut dirs: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    let dir = match dirs.as_slice() {
        [] => return Err(MetadataError::NoDistInfo),
        [one] => *one,
        many => return Err(MetadataError::ManyDistInfo(many.len())),
    };
    let stem = dir.strip_suffix(".dist-info").expect("filtered above");
    let matches = stem.rsplit_once('-').is_some_and(|(name, dir_version)| {
        dir_version == version && ProjectName::new(name).is_ok_and(|n| n == *project)
    });
    if !matches {
        return Err(MetadataError::WrongDistInfo(dir.to_owned()));
    }
    let wanted = format!("{dir}/METADATA");
    let entry =
        entries.iter().find(|e| e.name == wanted).ok_or_else(|| MetadataError::NoMetadata(dir.to_owned()))?;
    if entry.uncompressed > MAX_METADATA_BYTES || entry.compressed > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge);
    }
    Ok(entry)
}

/// How many bytes from `entry.local_offset` hold its local header and data, assuming a local
/// extra field of at most `extra` bytes (read more if [`extract`] says so).
pub fn local_span(entry: &Entry, extra: u64) -> u64 {
    30 + entry.name.len() as u64 + extra + entry.compressed
}

/// What [`extract`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Extracted {
    Metadata(Vec<u8>),
    /// The local header's extra field is longer than guessed: read this many bytes instead.
    NeedBytes(u64),
}

/// Inflates `entry` from `local`, the bytes starting at its local header, and checks its size
/// and CRC-32 against the central directory's.
pub fn extract(local: &[u8], entry: &Entry) -> Result<Extracted, MetadataError> {
    if u32_at(local, 0) != Some(LOCAL) {
        return Err(MetadataError::Malformed("bad local header"));
    }
    let name_len = u64::from(u16_at(local, 26).ok_or(MetadataError::Malformed("truncated local header"))?);
    let extra_len = u64::from(u16_at(local, 28).ok_or(MetadataError::Malformed("truncated local header"))?);
    let start = 30 + name_len + extra_len;
    let end = start + entry.compressed;
    if (local.len() as u64) < end {
        return Ok(Extracted::NeedBytes(end));
    }
    let data = &local[start as usize..end as usize];
    let inflated = match entry.method {
        0 => data.to_vec(),
        8 => {
            let mut out = Vec::with_capacity(entry.uncompressed.min(MAX_METADATA_BYTES) as usize);
            flate2::read::DeflateDecoder::new(data)
                .take(MAX_METADATA_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| MetadataError::Inflate(e.to_string()))?;
            if out.len() as u64 > MAX_METADATA_BYTES {
                return Err(MetadataError::TooLarge);
            }
            out
        }
        other => return Err(MetadataError::Method(other)),
    };
    let mut crc = flate2::Crc::new();
    crc.update(&inflated);
    if inflated.len() as u64 != entry.uncompressed || crc.sum() != entry.crc {
        return Err(MetadataError::Corrupt);
    }
    Ok(Extracted::Metadata(inflated))
}

/// METADATA of a whole wheel held in memory (or any source that can hand out the ranges
/// asked for): the three steps above in order.
pub fn from_wheel(wheel: &[u8], project: &ProjectName, version: &str) -> Result<Vec<u8>, MetadataError> {
    let size = wheel.len() as u64;
    let tail = &wheel[wheel.len().saturating_sub(TAIL_BYTES as usize)..];
    let directory = find_directory(tail, size)?;
    let dir_bytes = &wheel[directory.offset as usize..(directory.offset + directory.size) as usize];
    let entries = parse_directory(dir_bytes, &directory, size)?;
    let entry = metadata_entry(&entries, project, version)?;
    let local = &wheel[entry.local_offset as usize..];
    match extract(local, entry)? {
        Extracted::Metadata(bytes) => Ok(bytes),
        Extracted::NeedBytes(_) => Err(MetadataError::Malformed("an entry reaches past the end")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip(files: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in files {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default().compression_method(method))
                .unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn name(n: &str) -> ProjectName {
        ProjectName::new(n).unwrap()
    }

    const METADATA: &[u8] = b"Metadata-Version: 2.1\nName: Acme_Core\nVersion: 1.0\nRequires-Dist: six\n";

    #[test]
    fn metadata_is_read_from_stored_and_deflated_wheels() {
        for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
            let wheel = zip(
                &[
                    ("acme_core/__init__.py", b"x = 1\n"),
                    ("Acme_Core-1.0.dist-info/METADATA", METADATA),
                    ("Acme_Core-1.0.dist-info/RECORD", b""),
                ],
                method,
            );
            assert_eq!(from_wheel(&wheel, &name("acme-core"), "1.0").unwrap(), METADATA);
        }
    }

    #[test]
    fn ranged_steps_need_only_the_tail_the_directory_and_one_entry() {
        let padding = vec![7u8; 200_000];
        let wheel = zip(
            &[("acme_core/big.bin", &padding), ("acme_core-1.0.dist-info/METADATA", METADATA)],
            zip::CompressionMethod::Stored,
        );
        let size = wheel.len() as u64;
        let tail = &wheel[wheel.len() - 1024..];
        let directory = find_directory(tail, size).unwrap();
        let dir = &wheel[directory.offset as usize..(directory.offset + directory.size) as usize];
        let entries = parse_directory(dir, &directory, size).unwrap();
        let entry = metadata_entry(&entries, &name("acme-core"), "1.0").unwrap();
        let short = &wheel[entry.local_offset as usize..][..30];
        let Ok(Extracted::NeedBytes(n)) = extract(short, entry) else { panic!("asks for more") };
        let local = &wheel[entry.local_offset as usize..][..n as usize];
        assert_eq!(extract(local, entry).unwrap(), Extracted::Metadata(METADATA.to_vec()));
        assert!(1024 + directory.size + n < size / 100, "a small fraction of the wheel is read");
    }

    #[test]
    fn the_wheel_spec_rules_hold() {
        let two = zip(
            &[("a-1.0.dist-info/METADATA", METADATA), ("b-1.0.dist-info/METADATA", METADATA)],
            zip::CompressionMethod::Stored,
        );
        assert_eq!(from_wheel(&two, &name("a"), "1.0"), Err(MetadataError::ManyDistInfo(2)));
        let other = zip(&[("evil-1.0.dist-info/METADATA", METADATA)], zip::CompressionMethod::Stored);
        assert!(matches!(
            from_wheel(&other, &name("acme-core"), "1.0"),
            Err(MetadataError::WrongDistInfo(_))
        ));
        let version = zip(&[("acme_core-2.0.dist-info/METADATA", METADATA)], zip::CompressionMethod::Stored);
        assert!(matches!(
            from_wheel(&version, &name("acme-core"), "1.0"),
            Err(MetadataError::WrongDistInfo(_))
        ));
        let none = zip(&[("acme_core-1.0.dist-info/RECORD", b"")], zip::CompressionMethod::Stored);
        assert!(matches!(from_wheel(&none, &name("acme-core"), "1.0"), Err(MetadataError::NoMetadata(_))));
        let bare = zip(&[("acme_core/x.py", b"")], zip::CompressionMethod::Stored);
        assert_eq!(from_wheel(&bare, &name("acme-core"), "1.0"), Err(MetadataError::NoDistInfo));
    }

    #[test]
    fn hostile_zips_are_errors_not_hangs_or_huge_allocations() {
        // A compression bomb: 64 MiB of zeros deflate to a few KiB.
        let bomb = vec![0u8; 64 << 20];
        let wheel = zip(&[("acme_core-1.0.dist-info/METADATA", &bomb)], zip::CompressionMethod::Deflated);
        assert_eq!(from_wheel(&wheel, &name("acme-core"), "1.0"), Err(MetadataError::TooLarge));
        // The directory lies about the size: a small entry claimed to inflate to 4 KiB.
        let mut wheel =
            zip(&[("acme_core-1.0.dist-info/METADATA", METADATA)], zip::CompressionMethod::Deflated);
        let tail = &wheel[wheel.len().saturating_sub(TAIL_BYTES as usize)..];
        let directory = find_directory(tail, wheel.len() as u64).unwrap();
        let at = directory.offset as usize + 24;
        wheel[at..at + 4].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(from_wheel(&wheel, &name("acme-core"), "1.0"), Err(MetadataError::Corrupt));
        // A flipped byte in the data: the CRC-32 catches it.
        let mut wheel =
            zip(&[("acme_core-1.0.dist-info/METADATA", METADATA)], zip::CompressionMethod::Stored);
        let data = 30 + usize::from(u16_at(&wheel, 26).unwrap()) + usize::from(u16_at(&wheel, 28).unwrap());
        wheel[data + 3] ^= 1;
        assert_eq!(from_wheel(&wheel, &name("acme-core"), "1.0"), Err(MetadataError::Corrupt));
        // A directory that claims to start past the end, or to be huge, or a zip64 marker
        // without its records.
        let good = zip(&[("acme_core-1.0.dist-info/METADATA", METADATA)], zip::CompressionMethod::Stored);
        let eocd = good.len() - 22;
        for (at, value) in
            [(eocd + 16, 0x7fff_0000u32), (eocd + 12, 0x7fff_0000u32), (eocd + 16, 0xFFFF_FFFFu32)]
        {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            assert!(
                matches!(from_wheel(&bad, &name("acme-core"), "1.0"), Err(MetadataError::Malformed(_))),
                "{at} {value}"
            );
        }
        assert!(matches!(
            from_wheel(b"not a zip at all", &name("acme-core"), "1.0"),
            Err(MetadataError::NotAZip(_))
        ));
        assert!(matches!(
            from_wheel(&good[..good.len() - 5], &name("acme-core"), "1.0"),
            Err(MetadataError::NotAZip(_))
        ));
    }
}
