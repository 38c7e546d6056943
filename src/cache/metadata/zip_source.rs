//! Reading a wheel's METADATA from wherever its bytes are: a file on disk (the cache holds the
//! wheel) or an upstream that serves ranges. The steps are `pypi::wheel_metadata`'s; this
//! module only fetches the byte spans they ask for, reusing bytes it already has.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use url::Url;

use super::MetadataFailure;
use crate::pypi::ProjectName;
use crate::pypi::wheel_metadata::{
    Extracted, MetadataError, TAIL_BYTES, extract, find_directory, local_span, metadata_entry,
    parse_directory,
};
use crate::upstream::{ByteRange, RangeAnswer, Upstream, UpstreamError};

/// The first read from the end: the end record and, for a wheel of up to a hundred or so
/// files, its central directory and `.dist-info` entries too.
const FIRST_TAIL_BYTES: u64 = 16 * 1024;

/// Guess at a local header's extra field: most are empty or a few dozen bytes; a longer one
/// costs one more read.
const LOCAL_EXTRA_GUESS: u64 = 256;

/// Where the bytes of a wheel come from.
pub(super) trait ZipBytes {
    /// The last `n` bytes (fewer for a shorter file) and the file's length.
    async fn tail(&mut self, n: u64) -> Result<(Bytes, u64), MetadataFailure>;
    /// `len` bytes from `start`, all inside the file.
    async fn read(&mut self, start: u64, len: u64) -> Result<Bytes, MetadataFailure>;
}

/// A wheel on disk: the cache's committed file, or a fill's finished temp file.
pub(super) struct OnDisk {
    pub file: Arc<File>,
    pub size: u64,
}

impl ZipBytes for OnDisk {
    async fn tail(&mut self, n: u64) -> Result<(Bytes, u64), MetadataFailure> {
        let len = n.min(self.size);
        Ok((self.read(self.size - len, len).await?, self.size))
    }

    async fn read(&mut self, start: u64, len: u64) -> Result<Bytes, MetadataFailure> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; usize::try_from(len).expect("spans are capped far below usize")];
            file.read_exact_at(&mut buffer, start).map(|()| Bytes::from(buffer))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| MetadataFailure::Cache(format!("cannot read the cached wheel: {e}")))
    }
}

/// A wheel on its upstream, read by range requests. After the first answer, later ranges go
/// to the URL it came from (the blob URL after a feed's redirect), and every answer must
/// agree on the file's length, which must be the index's when the index gives one.
pub(super) struct Ranged<'a> {
    pub upstream: &'a Upstream,
    pub url: Url,
    pub size: Option<u64>,
}

impl Ranged<'_> {
    async fn fetch(&mut self, range: ByteRange) -> Result<(Bytes, u64), MetadataFailure> {
        match self.upstream.fetch_range(&self.url, range).await? {
            RangeAnswer::Refused => Err(MetadataFailure::NoRanges),
            RangeAnswer::Part { bytes, start, total, url } => {
                if self.size.is_some_and(|size| size != total) {
                    return Err(UpstreamError::Body(format!(
                        "the file is {total} bytes where the index says {}",
                        self.size.unwrap_or_default()
                    ))
                    .into());
                }
                self.size = Some(total);
                self.url = url;
                Ok((bytes, start))
            }
        }
    }
}

impl ZipBytes for Ranged<'_> {
    async fn tail(&mut self, n: u64) -> Result<(Bytes, u64), MetadataFailure> {
        let (bytes, _) = self.fetch(ByteRange::Suffix(n)).await?;
        Ok((bytes, self.size.expect("set by the answer")))
    }

    async fn read(&mut self, start: u64, len: u64) -> Result<Bytes, MetadataFailure> {
        Ok(self.fetch(ByteRange::Span { start, len }).await?.0)
    }
}

/// METADATA of the wheel of `project` at `version` from `source`: the tail, then the central
/// directory and the METADATA entry, each read only if the tail does not already hold it (for
/// most wheels the `.dist-info` files sit just before the directory, so a small wheel costs one
/// read and a large one two or three).
pub(super) async fn read_metadata(
    source: &mut impl ZipBytes,
    project: &ProjectName,
    version: &str,
) -> Result<Vec<u8>, MetadataFailure> {
    let (mut tail, size) = source.tail(FIRST_TAIL_BYTES).await?;
    let directory = match find_directory(&tail, size) {
        Ok(directory) => directory,
        // A zip comment can hide the end record further back: look at the longest tail that
        // can hold it before calling the file malformed.
        Err(_) if (tail.len() as u64) < size => {
            tail = source.tail(TAIL_BYTES).await?.0;
            find_directory(&tail, size)?
        }
        Err(error) => return Err(error.into()),
    };
    let tail_start = size - tail.len() as u64;
    let known = |start: u64, len: u64| {
        (start >= tail_start && start + len <= size)
            .then(|| tail.slice((start - tail_start) as usize..(start - tail_start + len) as usize))
    };
    let listing = match known(directory.offset, directory.size) {
        Some(bytes) => bytes,
        None => source.read(directory.offset, directory.size).await?,
    };
    let entries = parse_directory(&listing, &directory, size)?;
    let entry = metadata_entry(&entries, project, version)?;
    let room = size - entry.local_offset;
    let mut want = local_span(entry, LOCAL_EXTRA_GUESS).min(room);
    loop {
        let local = match known(entry.local_offset, want) {
            Some(bytes) => bytes,
            None => source.read(entry.local_offset, want).await?,
        };
        match extract(&local, entry)? {
            Extracted::Metadata(bytes) => return Ok(bytes),
            Extracted::NeedBytes(needed) if needed > want && needed <= room => want = needed,
            Extracted::NeedBytes(_) => {
                return Err(MetadataError::Malformed("an entry reaches past the end").into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A wheel in memory, counting the bytes read from it.
    struct Counted {
        bytes: Vec<u8>,
        reads: usize,
        read_bytes: u64,
    }

    impl ZipBytes for Counted {
        async fn tail(&mut self, n: u64) -> Result<(Bytes, u64), MetadataFailure> {
            let size = self.bytes.len() as u64;
            let len = n.min(size);
            Ok((self.read(size - len, len).await?, size))
        }

        async fn read(&mut self, start: u64, len: u64) -> Result<Bytes, MetadataFailure> {
            self.reads += 1;
            self.read_bytes += len;
            Ok(Bytes::copy_from_slice(&self.bytes[start as usize..(start + len) as usize]))
        }
    }

    /// A wheel whose large payload comes first and whose `.dist-info` comes last, as wheel
    /// builders write them.
    fn wheel(payload: usize) -> (Vec<u8>, Vec<u8>) {
        let metadata = b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\nRequires-Dist: dep>=2\n\n".to_vec();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let deflated =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("big/payload.bin", stored).unwrap();
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..payload)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        zip.write_all(&noise).unwrap();
        zip.start_file("big-1.0.dist-info/METADATA", deflated).unwrap();
        zip.write_all(&metadata).unwrap();
        zip.start_file("big-1.0.dist-info/RECORD", deflated).unwrap();
        zip.write_all(b"").unwrap();
        (zip.finish().unwrap().into_inner(), metadata)
    }

    #[tokio::test]
    async fn a_large_wheel_costs_one_tail_read() {
        let (bytes, metadata) = wheel(4 << 20);
        let total = bytes.len() as u64;
        let mut source = Counted { bytes, reads: 0, read_bytes: 0 };
        let project = ProjectName::new("big").unwrap();
        assert_eq!(read_metadata(&mut source, &project, "1.0").await.unwrap(), metadata);
        assert_eq!(source.reads, 1, "directory and METADATA sit inside the tail");
        assert!(source.read_bytes <= FIRST_TAIL_BYTES && source.read_bytes * 200 < total);
    }

    #[tokio::test]
    async fn a_long_zip_comment_costs_one_longer_tail() {
        let (bytes, metadata) = wheel(1000);
        let mut zip = zip::ZipWriter::new_append(std::io::Cursor::new(bytes)).unwrap();
        zip.set_comment("c".repeat(40_000)).unwrap();
        let commented = zip.finish().unwrap().into_inner();
        let mut source = Counted { bytes: commented, reads: 0, read_bytes: 0 };
        let project = ProjectName::new("big").unwrap();
        assert_eq!(read_metadata(&mut source, &project, "1.0").await.unwrap(), metadata);
        assert_eq!(source.reads, 2, "the short tail, then the longest one");
    }

    #[tokio::test]
    async fn spans_outside_the_tail_are_read_and_errors_name_the_wheel() {
        let (bytes, metadata) = wheel(1000);
        // A METADATA entry far from the end: payload after it.
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("big-1.0.dist-info/METADATA", stored).unwrap();
        zip.write_all(&metadata).unwrap();
        zip.start_file("big/payload.bin", stored).unwrap();
        zip.write_all(&vec![7u8; 200_000]).unwrap();
        let early = zip.finish().unwrap().into_inner();
        let mut source = Counted { bytes: early, reads: 0, read_bytes: 0 };
        let project = ProjectName::new("big").unwrap();
        assert_eq!(read_metadata(&mut source, &project, "1.0").await.unwrap(), metadata);
        assert_eq!(source.reads, 2, "the tail, then the METADATA entry");

        let mut source = Counted { bytes, reads: 0, read_bytes: 0 };
        let wrong = read_metadata(&mut source, &project, "2.0").await.unwrap_err();
        assert!(matches!(wrong, MetadataFailure::Wheel(MetadataError::WrongDistInfo(_))), "{wrong:?}");
        let mut source = Counted { bytes: b"not a zip at all".to_vec(), reads: 0, read_bytes: 0 };
        assert!(matches!(
            read_metadata(&mut source, &project, "1.0").await.unwrap_err(),
            MetadataFailure::Wheel(MetadataError::NotAZip(_))
        ));
    }
}
