//! gzip for the rendered page forms, with a large form's first compression split over two
//! threads, and deflate states kept for the next form.
//!
//! The first gzip answer of a large page waits for its compression (about 8 ms at level 1 for
//! an 8,000-file page). Split in two halves on two threads, each half is a raw deflate stream
//! of its own: the first ends with a sync flush (byte-aligned, not final), the second is
//! final, and the two joined are one valid deflate stream, inside one gzip member whose CRC is
//! combined from the halves' (as pigz does). Clients read it as any gzip body. The second half
//! starts without the first's 32 KiB window, which costs a fraction of a percent of size.
//!
//! A form is compressed as its [`Source`] writes it: a page's client JSON is rendered a few
//! dozen entries at a time into a buffer that stays in the CPU's cache, each run compressed
//! at once, so the plain form (5.7 MB for 8,000 files) is never written whole to fresh memory
//! nor held, and each half's render runs on its half's thread.
//!
//! A deflate state is a few hundred KiB that zlib allocates and clears: for a page of a few
//! hundred files, making one cost as much as the compression itself, most of it in page faults
//! on fresh memory (perf of `benches/cold_install.sh`). So states are reset and reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Below this a form is compressed on one thread: the second thread would cost more than it
/// saves.
const SPLIT_FROM: usize = 1 << 20;

/// The levels pipgate compresses at (a cold answer's, and the background's), whose deflate
/// states are kept.
const KEPT_LEVELS: [u32; 2] = [1, 6];

/// Deflate states kept per level: what a split form's two halves use. Compressions beyond that
/// at one time make their own states, which go when they are done, so the kept ones hold a
/// little over a MiB in all.
const KEPT_PER_LEVEL: usize = 2;

/// Reset deflate states, by level in [`KEPT_LEVELS`].
static KEPT: [Mutex<Vec<Compress>>; KEPT_LEVELS.len()] =
    [const { Mutex::new(Vec::new()) }; KEPT_LEVELS.len()];

/// A form to compress, written in order by whatever makes it: already made bytes, or a page
/// rendered a few entries at a time, so that its plain bytes are never held whole.
pub trait Source: Sync {
    /// Calls `sink` with the bytes of `part`, in order, in chunks of any size.
    fn write(&self, part: Part, sink: &mut dyn FnMut(&[u8]));
    /// About how many bytes the whole form holds.
    fn size_hint(&self) -> usize;

    /// The whole form, made plainly (for a client that asks for it uncompressed).
    fn to_vec(&self) -> Vec<u8> {
        let mut plain = Vec::with_capacity(self.size_hint());
        self.write(Part::Whole, &mut |chunk| plain.extend_from_slice(chunk));
        plain
    }
}

/// Which bytes of a [`Source`]: all, or one of two halves that joined are all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    First,
    Second,
}

/// Bytes already made, split in half by length.
impl Source for [u8] {
    fn write(&self, part: Part, sink: &mut dyn FnMut(&[u8])) {
        let (first, second) = self.split_at(self.len() / 2);
        sink(match part {
            Part::Whole => self,
            Part::First => first,
            Part::Second => second,
        });
    }

    fn size_hint(&self) -> usize {
        self.len()
    }
}

/// A compressed form, with what a form's ETag and `Server-Timing` need.
#[derive(Debug)]
pub struct Compressed {
    pub body: Bytes,
    /// CRC-32 of the plain bytes.
    pub crc: u32,
    /// Length of the plain bytes.
    pub len: u64,
    /// Time the source took to write its bytes, and time compressing them: each the longer
    /// of the two threads' when the form was split.
    pub writing: Duration,
    pub deflating: Duration,
}

/// `bytes` as one gzip member at `level`; on two threads when `parallel` and large.
pub fn compress(bytes: &[u8], level: u32, parallel: bool) -> Bytes {
    compress_source(bytes, level, parallel).body
}

/// What `source` writes, as one gzip member at `level`, compressed as it is written; on two
/// threads (a half each) when `parallel` and large.
pub fn compress_source(source: &(impl Source + ?Sized), level: u32, parallel: bool) -> Compressed {
    let size = source.size_hint();
    let mut out = Vec::with_capacity(10 + estimate(size) + 8);
    // ID1 ID2, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952).
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let (head, tail) = if !parallel || size < SPLIT_FROM {
        (Stream::run(source, Part::Whole, level, out), None)
    } else {
        std::thread::scope(|scope| {
            let tail = scope
                .spawn(|| Stream::run(source, Part::Second, level, Vec::with_capacity(estimate(size / 2))));
            let head = Stream::run(source, Part::First, level, out);
            (head, Some(tail.join().expect("compressing does not panic")))
        })
    };
    let (mut sum, mut out, mut len) = (head.crc, head.out, head.len);
    let (mut writing, mut deflating) = (head.writing, head.deflating);
    if let Some(tail) = tail {
        sum.combine(&tail.crc);
        len += tail.len;
        out.extend_from_slice(&tail.out);
        writing = writing.max(tail.writing);
        deflating = deflating.max(tail.deflating);
    }
    let crc = sum.sum();
    out.extend_from_slice(&crc.to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    Compressed { body: exact(out), crc, len, writing, deflating }
}

/// One raw deflate stream of a source's part, compressed chunk by chunk as it is written.
struct Stream {
    out: Vec<u8>,
    crc: Crc,
    len: u64,
    writing: Duration,
    deflating: Duration,
}

impl Stream {
    /// Compresses `part` onto `out`: final for the whole or the second half; the first half
    /// ends with a sync flush, so the second's stream can follow it.
    fn run(source: &(impl Source + ?Sized), part: Part, level: u32, out: Vec<u8>) -> Stream {
        let started = Instant::now();
        let mut kept = Kept::take(level);
        let mut stream =
            Stream { out, crc: Crc::new(), len: 0, writing: Duration::ZERO, deflating: Duration::ZERO };
        source.write(part, &mut |chunk| {
            let deflating = Instant::now();
            stream.crc.update(chunk);
            stream.len += chunk.len() as u64;
            deflate(kept.state(), chunk, FlushCompress::None, &mut stream.out);
            stream.deflating += deflating.elapsed();
        });
        let ending = Instant::now();
        let flush = if part == Part::First { FlushCompress::Sync } else { FlushCompress::Finish };
        deflate(kept.state(), &[], flush, &mut stream.out);
        stream.deflating += ending.elapsed();
        stream.writing = started.elapsed().saturating_sub(stream.deflating);
        stream
    }
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

/// Feeds `input` to `compress`, appending what it makes to `out`, then flushes as `flush` asks:
/// `None` keeps what deflate holds back for the next input, `Sync` ends on a byte boundary (so
/// another stream can follow), `Finish` ends the stream.
fn deflate(compress: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let start = compress.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() / 4 + 1024);
        }
        let consumed = (compress.total_in() - start) as usize;
        let status =
            compress.compress_vec(&input[consumed..], out, flush).expect("deflate on memory does not fail");
        let all_in = (compress.total_in() - start) as usize == input.len();
        let done = match (status, flush) {
            (Status::StreamEnd, _) => true,
            (_, FlushCompress::Finish) => false,
            (_, FlushCompress::None) => all_in,
            // A flush is complete when all input is in and the output was not filled.
            _ => all_in && out.len() < out.capacity(),
        };
        if done {
            return;
        }
    }
}

/// A deflate state at one level, taken from those kept (or made), and reset and kept again
/// when dropped if fewer than [`KEPT_PER_LEVEL`] are kept.
struct Kept {
    state: Option<Compress>,
    /// Where it is kept: its level's place in [`KEPT_LEVELS`].
    slot: Option<usize>,
}

impl Kept {
    fn take(level: u32) -> Kept {
        let slot = KEPT_LEVELS.iter().position(|&kept| kept == level);
        let reused = slot.and_then(|slot| kept(slot).pop());
        Kept { state: Some(reused.unwrap_or_else(|| Compress::new(Compression::new(level), false))), slot }
    }

    fn state(&mut self) -> &mut Compress {
        self.state.as_mut().expect("held until dropped")
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let (Some(slot), Some(mut state)) = (self.slot, self.state.take()) else { return };
        let mut kept = kept(slot);
        if kept.len() < KEPT_PER_LEVEL {
            state.reset();
            kept.push(state);
        }
    }
}

/// The states kept at one level. The lock guards only reset states, so one poisoned by a panic
/// elsewhere is still sound to use.
fn kept(slot: usize) -> std::sync::MutexGuard<'static, Vec<Compress>> {
    KEPT[slot].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

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

    /// A form written in runs of uneven length, as a page's render writes it.
    struct Runs(Vec<u8>);

    impl Source for Runs {
        fn write(&self, part: Part, sink: &mut dyn FnMut(&[u8])) {
            let half = self.0.len() / 2;
            let bytes = match part {
                Part::Whole => &self.0[..],
                Part::First => &self.0[..half],
                Part::Second => &self.0[half..],
            };
            for (i, run) in bytes.chunks(40_000).enumerate() {
                let (a, b) = run.split_at(run.len().min(i % 7 * 1000));
                sink(a);
                sink(&[]);
                sink(b);
            }
        }

        fn size_hint(&self) -> usize {
            self.0.len()
        }
    }

    #[test]
    fn a_form_compressed_as_it_is_written_is_its_bytes_with_their_crc_and_length() {
        for len in [0, 1000, SPLIT_FROM + 1, 3 * SPLIT_FROM + 17] {
            let input = page_like(len);
            for (level, parallel) in [(1, true), (1, false), (6, false)] {
                let made = compress_source(&Runs(input.clone()), level, parallel);
                assert_eq!(gunzip_one_member(&made.body), input, "{len} bytes at level {level}");
                let mut crc = Crc::new();
                crc.update(&input);
                assert_eq!((made.crc, made.len), (crc.sum(), len as u64));
            }
        }
    }

    #[test]
    fn small_and_empty_forms_compress_on_one_thread() {
        for input in [Vec::new(), page_like(1000)] {
            assert_eq!(gunzip_one_member(&compress(&input, 1, true)), input);
        }
    }

    #[test]
    fn a_kept_state_compresses_as_a_fresh_one_does() {
        let (before, page) = (page_like(300_000), page_like(70_000));
        for level in KEPT_LEVELS {
            // A state used for another page (and one left mid-stream by a split's first half).
            compress(&before, level, false);
            compress(&page_like(3 * SPLIT_FROM), level, true);
            let reused = compress(&page, level, false);
            // A fresh state fed the same way: the input, then the end of the stream.
            let mut fresh = Compress::new(Compression::new(level), false);
            let mut stream = Vec::with_capacity(2 * page.len());
            deflate(&mut fresh, &page, FlushCompress::None, &mut stream);
            deflate(&mut fresh, &[], FlushCompress::Finish, &mut stream);
            // The same deflate stream between the header and the CRC.
            assert_eq!(reused[10..reused.len() - 8], stream[..], "level {level}");
            assert_eq!(gunzip_one_member(&reused), page);
        }
    }
}
