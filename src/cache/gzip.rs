//! gzip for the rendered page forms, with a large form's first compression split over two
//! threads.
//!
//! The first gzip answer of a large page waits for its compression (about 8 ms at level 1 for
//! an 8,000-file page). Split in two halves on two threads, each half is a raw deflate stream
//! of its own: the first ends with a sync flush (byte-aligned, not final), the second is
//! final, and the two joined are one valid deflate stream, inside one gzip member whose CRC is
//! combined from the halves' (as pigz does). Clients read it as any gzip body. The second half
//! starts without the first's 32 KiB window, which costs a fraction of a percent of size.

use std::io::Write;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Below this a form is compressed on one thread: the second thread would cost more than it
/// saves.
const SPLIT_FROM: usize = 1 << 20;

/// `bytes` as one gzip member at `level`; on two threads when `parallel` and large.
pub fn compress(bytes: &[u8], level: u32, parallel: bool) -> Bytes {
    if !parallel || bytes.len() < SPLIT_FROM {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(estimate(bytes.len())), Compression::new(level));
        encoder.write_all(bytes).expect("writing to a Vec cannot fail");
        return exact(encoder.finish().expect("writing to a Vec cannot fail"));
    }
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let ((head, head_crc), (tail, tail_crc)) = std::thread::scope(|scope| {
        let tail = scope.spawn(|| (deflate(second, level, true), crc(second)));
        let head = (deflate(first, level, false), crc(first));
        (head, tail.join().expect("compressing does not panic"))
    });
    let mut sum = head_crc;
    sum.combine(&tail_crc);
    let mut out = Vec::with_capacity(10 + head.len() + tail.len() + 8);
    // ID1 ID2, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952).
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&head);
    out.extend_from_slice(&tail);
    out.extend_from_slice(&sum.sum().to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    exact(out)
}

/// `bytes` without the room left over: `Bytes::from` a `Vec` keeps its whole allocation for as
/// long as the bytes live (a cached form: until the page leaves the cache), and the cache
/// weighs a form by its length.
pub fn exact(mut bytes: Vec<u8>) -> Bytes {
    bytes.shrink_to_fit();
    Bytes::from(bytes)
}

/// About what a page compresses to (its digests are random hex, which halves at best), so the
/// output grows rarely.
fn estimate(len: usize) -> usize {
    len / 3 + 1024
}

fn crc(bytes: &[u8]) -> Crc {
    let mut crc = Crc::new();
    crc.update(bytes);
    crc
}

/// A raw deflate stream of `input`: final when `last`, else ending with a sync flush so that
/// another stream can follow it.
fn deflate(input: &[u8], level: u32, last: bool) -> Vec<u8> {
    let mut compress = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(estimate(input.len()));
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() / 4 + 1024);
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("deflate on memory does not fail");
        let done = match status {
            Status::StreamEnd => true,
            // A flush is complete when all input is in and the output was not filled.
            Status::Ok | Status::BufError => {
                !last && compress.total_in() as usize == input.len() && out.len() < out.capacity()
            }
        };
        if done {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_kept_form_holds_its_length_not_the_room_it_was_written_in() {
        let mut written = Vec::with_capacity(64 * 1024);
        written.extend_from_slice(b"a page");
        let kept = Vec::from(exact(written));
        assert_eq!((kept.len(), kept.capacity()), (6, 6));
        let page: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gzipped = Vec::from(compress(&page, 1, false));
        assert_eq!(gzipped.capacity(), gzipped.len());
    }

    /// Text shaped like a page: repeated keys and random hex.
    fn page_like(len: usize) -> Vec<u8> {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            write!(
                out,
                "{{\"filename\":\"x-1.0.whl\",\"hashes\":{{\"sha256\":\"{seed:016x}{:016x}\"}}}},",
                seed.rotate_left(7)
            )
            .unwrap();
        }
        out.truncate(len);
        out
    }

    fn gunzip_one_member(body: &[u8]) -> Vec<u8> {
        // GzDecoder reads exactly one member, and checks its CRC and length.
        let mut decoder = flate2::read::GzDecoder::new(body);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        let mut rest = Vec::new();
        decoder.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes after the member", rest.len());
        out
    }

    #[test]
    fn a_split_compression_is_one_member_that_inflates_to_the_input() {
        for len in [SPLIT_FROM, 3 * SPLIT_FROM + 17] {
            let input = page_like(len);
            for level in [1, 6] {
                let split = compress(&input, level, true);
                assert_eq!(gunzip_one_member(&split), input, "{len} bytes at level {level}");
                let single = compress(&input, level, false);
                assert_eq!(gunzip_one_member(&single), input);
                assert!(
                    split.len() < single.len() + single.len() / 100,
                    "{} vs {}",
                    split.len(),
                    single.len()
                );
            }
        }
    }

    #[test]
    fn small_and_empty_forms_compress_on_one_thread() {
        for input in [Vec::new(), page_like(1000)] {
            assert_eq!(gunzip_one_member(&compress(&input, 1, true)), input);
        }
    }
}
