//! Capture files: the sensor's only source of packets.
//!
//! Heads up! Before working on this file read the two format specs:
//! draft-ietf-opsawg-pcap (classic pcap) and draft-ietf-opsawg-pcapng.
//!
//! # Contract
//!
//! * **Formats.** Classic pcap in both byte orders, with microsecond
//!   (`0xa1b2c3d4`) or nanosecond (`0xa1b23c4d`) timestamps, and the
//!   little-endian "modified" (Kuznetzov, `0xa1b2cd34`) variant. The FCS bits
//!   in the upper half of the header link type are masked off. pcapng with
//!   any number of sections (each with its own byte order) and interfaces
//!   (each with its own link type, `if_tsresol` in the power-of-10 or
//!   power-of-2 form, and `if_tsoffset`); packets come from Enhanced, Simple
//!   and the obsolete Packet Blocks, and every other block type is skipped.
//!   Either format may be gzip-compressed (decompressed into memory, capped at
//!   [`MAX_IN_MEMORY`]); stdin is read into memory under the same cap. The
//!   first four (decompressed) bytes of such a stream must be a capture
//!   magic before more is read, and the buffer never grows past the cap.
//! * **Zero-copy.** Files are memory-mapped; [`Packet::data`] borrows from the
//!   mapping (or the in-memory buffer), never from a copy.
//! * **Timestamps** are the record's own, in nanoseconds since the Unix
//!   epoch, saturated to `i64`. The pcap header's `thiszone` is ignored, as
//!   libpcap and Wireshark do. A Simple Packet Block has no timestamp and takes
//!   the previous packet's (0 when it is the first packet of the file).
//! * **Untrusted input never panics.** A file is read up to its first bad
//!   record: every packet before it has been yielded, then the error is
//!   yielded once and the iterator ends. A record that claims more than
//!   [`MAX_CAPLEN`] captured bytes is corrupt; one that claims more than the
//!   file holds is truncated. Every error names the file and, where there is
//!   one, the byte offset (for gzip input, an offset into the decompressed
//!   stream).
//! * **Merging.** [`Merged`] interleaves several files by timestamp; ties go
//!   to the lower file index, and each file's records keep their file order
//!   (a file whose clock steps back is not re-sorted). One file's error is
//!   yielded where that file stopped, and the other files go on.
//!
//! Record and block framing is parsed with `pcap-parser`; this module adds the
//! limits, the error positions, the timestamp arithmetic (the crate's
//! power-of-2 `if_tsresol` and big-endian `if_tsoffset` handling are wrong in
//! 0.17) and the obsolete Packet Block, which the crate does not know.
//!
//! Layout: this file opens files and detects the format; `pcap.rs` and
//! `pcapng.rs` read the records; `merge.rs` holds [`Merged`]. The tests
//! beside each part build small captures in memory (`testutil`); the corpus
//! test at the bottom of this file reads every capture in the shared
//! corpus (`PINWATCH_CORPUS`, else `../shared/corpus` beside the workspace)
//! and checks packet counts against capinfos (MANIFEST)
//! and packet times against tshark (the oracle TSVs).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use pcap_parser::pcap::parse_pcap_header;
use pcap_parser::pcapng::SHB_MAGIC;
use pcap_parser::PcapError;

/// Largest captured length accepted for one packet (256 KiB, libpcap's
/// `MAXIMUM_SNAPLEN`). A record claiming more is treated as corruption.
pub const MAX_CAPLEN: u32 = 256 * 1024;

/// Largest capture held in memory: a decompressed gzip file or a stream read
/// from stdin (4 GiB). Larger input is refused with
/// [`CaptureError::TooLarge`].
pub const MAX_IN_MEMORY: u64 = 4 << 30;

mod merge;
mod pcap;
mod pcapng;

pub use merge::Merged;
use pcapng::Iface;

/// One captured packet, borrowed from its capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch, from the packet record.
    pub ts_ns: i64,
    /// DLT/LINKTYPE value of this packet's interface.
    pub linktype: u32,
    /// Captured bytes, borrowed from the mapping; never copied.
    pub data: &'a [u8],
    /// Length of the packet on the wire (may exceed `data.len()`).
    pub orig_len: u32,
    /// Index of the input file (see [`PacketIter::with_source`], [`Merged`]).
    pub source: usize,
    /// Byte offset of this record (pcap record header, pcapng block) in its
    /// file.
    pub offset: u64,
}

/// The container format of a capture file (after any gzip layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic libpcap format (microsecond or nanosecond timestamps).
    Pcap,
    /// pcapng: blocks, several interfaces and link types in one file.
    PcapNg,
}

/// A capture file problem. Every variant names the file; those about the
/// content also give the byte offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The I/O error is part of the message, not a `source()`: shown with
    /// its chain (`{:#}`) it would otherwise be said twice.
    #[error("{file}: {error}")]
    Io {
        /// The file's name as given.
        file: String,
        /// The failed read or open.
        error: io::Error,
    },
    /// The file has no bytes at all.
    #[error("{file}: empty file (0 bytes)")]
    Empty {
        /// The file's name as given.
        file: String,
    },
    /// `magic` is the first four bytes in file order.
    #[error("{file}: unrecognised capture format (magic {magic:#010x} at byte 0){hint}")]
    UnknownFormat {
        /// The file's name as given.
        file: String,
        /// The first four bytes, read big-endian.
        magic: u32,
        /// What the magic looks like, when known (` (zstd-compressed: ...)`), or "".
        hint: &'static str,
    },
    /// A fixed-size header is cut short by the end of the file.
    #[error("{file}: truncated {what} at byte {offset} ({need} bytes needed, {have} remain)")]
    TruncatedHeader {
        /// The file's name as given.
        file: String,
        /// Byte offset of the header.
        offset: u64,
        /// Which header (for the message).
        what: &'static str,
        /// Bytes the header needs.
        need: u64,
        /// Bytes left in the file from `offset`.
        have: u64,
    },
    /// A record's length field claims more bytes than the file holds.
    #[error("{file}: truncated {what} at byte {offset} (header says {claimed} bytes, {have} remain)")]
    TruncatedRecord {
        /// The file's name as given.
        file: String,
        /// Byte offset of the record.
        offset: u64,
        /// Which record (for the message).
        what: &'static str,
        /// Length the record's header gives.
        claimed: u64,
        /// Bytes left in the file from `offset`.
        have: u64,
    },
    /// A header or block whose fields are inconsistent.
    #[error("{file}: corrupt {what} at byte {offset}: {reason}")]
    Corrupt {
        /// The file's name as given.
        file: String,
        /// Byte offset of the header or block.
        offset: u64,
        /// Which header or block (for the message).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gzip layer did not decompress.
    #[error("{file}: gzip decompression failed: {error}")]
    Gzip {
        /// The file's name as given.
        file: String,
        /// The decompressor's error.
        error: io::Error,
    },
    /// A stream (stdin, a FIFO, a gzip file) holds more capture than the cap.
    #[error("{file}: more than {limit} bytes {what}")]
    TooLarge {
        /// The file's name as given.
        file: String,
        /// The cap, in bytes.
        limit: u64,
        /// Where the cap applied (`read from the stream`, `once decompressed`).
        what: &'static str,
    },
}

impl CaptureError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            CaptureError::Io { file, .. }
            | CaptureError::Empty { file }
            | CaptureError::UnknownFormat { file, .. }
            | CaptureError::TruncatedHeader { file, .. }
            | CaptureError::TruncatedRecord { file, .. }
            | CaptureError::Corrupt { file, .. }
            | CaptureError::Gzip { file, .. }
            | CaptureError::TooLarge { file, .. } => file,
        }
    }

    /// Byte offset of the problem in the (decompressed) file, if it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::UnknownFormat { .. } => Some(0),
            CaptureError::TruncatedHeader { offset, .. }
            | CaptureError::TruncatedRecord { offset, .. }
            | CaptureError::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// How to read the records after the file header.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Pcap { big_endian: bool, nanos: bool, modified: bool, linktype: u32 },
    PcapNg,
}

/// An opened capture file: a name and its bytes (mapped, or in memory for
/// gzip and streams). The format is recognised when it is opened.
pub struct CaptureFile {
    name: String,
    bytes: Bytes,
    kind: Kind,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile").field("name", &self.name).field("len", &self.len()).field("format", &self.format()).finish()
    }
}

/// How far ahead of the current record the reader asks for cache lines.
/// Records are laid out one after the other, but where the next one starts
/// is only known once this one's header is loaded, so a plain walk waits for
/// memory once per record (the hardware prefetchers do not follow strides of
/// a thousand bytes across pages). Streaming the bytes ahead in, 8 KiB
/// before they are needed, made the bare record walk of a 2 GB capture 1.25
/// to 3 times faster on the benchmark machines (README, Throughput); 2 to 64
/// KiB all measured the same within noise. The lines are asked for into the
/// outer caches (`prefetcht2`), not L1: most of them are payload that only
/// the next record header shares a line with, and the walk took 153 ms
/// instead of 171 ms, a replay 2-3% less (2 GiB capture, medians of 7).
const PREFETCH_AHEAD: usize = 8 << 10;

/// One line in this many bytes of the stream ahead is asked for; the
/// hardware's own prefetchers, once a page is touched, bring in the lines
/// around it. Asking for every line kept the core's fill buffers full of
/// payload that a replay never reads: the instruction after the prefetch
/// was a fifth of a one-thread replay's samples, and the replay's own cache
/// misses (flow lookups) queued behind them. With one line in 512 bytes,
/// plus the next record's first two lines asked for as soon as its start
/// is known ([`prefetch_record`]), a one-thread replay of the 2 GiB
/// benchmark capture took 387 ms instead of 412 ms, the bare walk 176 ms
/// instead of 177 ms (medians of 9, taking turns); every line (64), every
/// other (128) and 256 measured in between, 1,024 and up slowed the walk.
const PREFETCH_STRIDE: usize = 512;

/// Ask the CPU to start loading one cache line in [`PREFETCH_STRIDE`] bytes
/// of `data[*ahead..until]` not yet asked for, and move `*ahead` past them.
/// A hint only: no architectural effect, cannot fault.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_to(data: &[u8], ahead: &mut usize, until: usize) {
    let until = until.min(data.len());
    #[cfg(target_arch = "x86_64")]
    while *ahead < until {
        // SAFETY: `*ahead < until <= data.len()`, so the pointer is in bounds
        // of a live slice; `prefetcht2` never dereferences architecturally
        // and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T2 }>(data.as_ptr().add(*ahead).cast());
        }
        *ahead += PREFETCH_STRIDE;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        *ahead = (*ahead).max(until);
    }
}

/// Ask for the first two cache lines at `data[pos..]` (the next record's
/// header and the packet headers after it) into L1: they are read within
/// a packet's time. A hint only.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_record(data: &[u8], pos: usize) {
    #[cfg(target_arch = "x86_64")]
    if pos.saturating_add(128) <= data.len() {
        // SAFETY: `pos + 128 <= data.len()`, so both pointers are in bounds
        // of a live slice; `prefetcht0` never dereferences architecturally
        // and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(data.as_ptr().add(pos).cast());
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(data.as_ptr().add(pos + 64).cast());
        }
    }
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the file is opened read-only and the mapping is only ever read,
    // through immutable byte slices that never outlive the `CaptureFile`.
    // Mapping is undefined behaviour only if another process modifies or
    // truncates the file while it is mapped; capture files are inputs that
    // nothing rewrites during a replay (the same assumption ripgrep and
    // Wireshark's mmap users make), and this is documented on `open`.
    unsafe { memmap2::Mmap::map(file) }
}

impl CaptureFile {
    /// Open a capture file: regular files are memory-mapped, other paths
    /// (FIFOs, `/dev/stdin`) are read into memory. Gzip files are
    /// decompressed into memory. The file must not be modified while the
    /// `CaptureFile` is alive.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let io_err = |error| CaptureError::Io { file: name.clone(), error };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Self::from_reader(name, file);
        }
        if meta.len() == 0 {
            return Err(CaptureError::Empty { file: name });
        }
        let map = map_file(&file).map_err(io_err)?;
        if is_gzip(&map) {
            let bytes = load(&name, &map[..], MAX_IN_MEMORY)?;
            return Self::new(name, Bytes::Owned(bytes));
        }
        Self::new(name, Bytes::Mapped(map))
    }

    /// A capture held in memory (gzip is recognised and decompressed).
    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Self, CaptureError> {
        Self::from_bytes_capped(name, bytes, MAX_IN_MEMORY)
    }

    /// Read a whole stream (stdin for `-`) into memory, capped at
    /// [`MAX_IN_MEMORY`]; gzip is recognised and decompressed.
    pub fn from_reader(name: String, r: impl Read) -> Result<Self, CaptureError> {
        Self::from_reader_capped(name, r, MAX_IN_MEMORY)
    }

    fn from_reader_capped(name: String, r: impl Read, cap: u64) -> Result<Self, CaptureError> {
        let bytes = load(&name, r, cap)?;
        Self::new(name, Bytes::Owned(bytes))
    }

    fn from_bytes_capped(name: String, bytes: Vec<u8>, cap: u64) -> Result<Self, CaptureError> {
        if is_gzip(&bytes) {
            let plain = load(&name, &bytes[..], cap)?;
            return Self::new(name, Bytes::Owned(plain));
        }
        Self::new(name, Bytes::Owned(bytes))
    }

    fn new(name: String, bytes: Bytes) -> Result<Self, CaptureError> {
        let kind = detect(&name, bytes.as_slice())?;
        Ok(CaptureFile { name, bytes, kind })
    }

    /// The name given at open (the path, `-` for stdin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes (after decompression).
    pub fn len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// Always false for an opened file (empty files are refused), kept for
    /// the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The container format (after any gzip layer).
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Pcap { .. } => Format::Pcap,
            Kind::PcapNg => Format::PcapNg,
        }
    }

    /// Drop this process's page-table entries for part `k` of `n` equal
    /// parts of a mapped file (`madvise(MADV_DONTNEED)`), for a thread that
    /// is done with it. Closing a mapped file drops the entry of every page
    /// that was read, one by one: for the 1 GiB benchmark capture that took
    /// 36–52 ms on one thread after the others had finished (`strace -T`),
    /// a tenth of a two-thread replay. Threads that have finished reading
    /// split that work between them instead, each with its own part, and
    /// the close is left with empty page tables. The bytes stay readable
    /// and unchanged: the mapping is shared and read-only, so a later read
    /// faults the page back in from the page cache. Nothing to do for
    /// bytes held in memory (gzip, stdin); an error is ignored (the close
    /// then does the work, as before).
    #[allow(unsafe_code)]
    pub fn release_part(&self, k: usize, n: usize) {
        let Bytes::Mapped(map) = &self.bytes else { return };
        let (len, n) = (map.len(), n.max(1));
        if k >= n {
            return;
        }
        // memmap2 aligns the start down to a page boundary, so the parts'
        // ranges meet without a gap.
        let from = len / n * k;
        let to = if k + 1 == n { len } else { len / n * (k + 1) };
        // SAFETY: `from..to` lies inside the mapping. MADV_DONTNEED on a
        // shared, read-only file mapping only drops page-table entries:
        // the pages stay in the page cache and any later read, through a
        // slice that is still borrowed, faults the same bytes back in. It
        // is the private and anonymous mappings whose contents it discards.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
    }

    /// The whole (decompressed) file.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The packets in file order, with `source` 0 (see
    /// [`PacketIter::with_source`]).
    pub fn packets(&self) -> PacketIter<'_> {
        PacketIter::new(&self.name, self.bytes.as_slice(), self.kind)
    }

    /// Classic pcap only: the packets from byte `offset` on, which must be
    /// where a record starts (see [`CaptureFile::record_boundary`]); `None`
    /// for pcapng, whose blocks depend on the interfaces declared before.
    pub fn packets_from(&self, offset: usize) -> Option<PacketIter<'_>> {
        match self.kind {
            Kind::Pcap { .. } => {
                let mut it = self.packets();
                it.pos = offset.max(it.pos);
                it.ahead = it.pos;
                Some(it)
            }
            Kind::PcapNg => None,
        }
    }

    /// Classic pcap only: the byte offset of the first record of the file.
    pub fn first_record(&self) -> Option<usize> {
        matches!(self.kind, Kind::Pcap { .. }).then_some(24)
    }

    /// Classic pcap only: the first offset at or after `from` (and before
    /// `from` + [`MAX_CAPLEN`] + 64 KiB; or, when that is a header misread a
    /// few bytes late, the real one up to a header's length before it) where
    /// a record plausibly starts:
    /// 16 (`pcap::CHAIN`) record headers in a row, each with a captured length
    /// within the limit and the file, a sub-second part below one second,
    /// and a time within a day of the one before, or fewer that end exactly
    /// at the end of the file. A guess, used to cut a file into chunks that
    /// threads read at once: the reader of the chunk before must land on it
    /// exactly, or the guess is thrown away ([`crate::run::sharded`]). `None`
    /// when nothing in the window qualifies (or at the end of the file).
    pub fn record_boundary(&self, from: usize) -> Option<usize> {
        match self.kind {
            Kind::Pcap { big_endian, nanos, modified, .. } => {
                pcap::record_boundary(self.bytes.as_slice(), from.max(24), big_endian, nanos, modified)
            }
            Kind::PcapNg => None,
        }
    }
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Read a capture stream (stdin, a FIFO, a gzip file's members) into
/// memory, decompressing gzip on the way, and refusing more than `cap` bytes
/// of capture before they are held: the first four (decompressed) bytes
/// must be a capture magic, so `/dev/zero` or a bomb of zeros stops at once,
/// and the buffer never grows past the cap (see [`crate::capped`]).
fn load(name: &str, mut r: impl Read, cap: u64) -> Result<Vec<u8>, CaptureError> {
    let io_err = |error| CaptureError::Io { file: name.to_string(), error };
    let head = crate::capped::read_head(&mut r, 2).map_err(io_err)?;
    if is_gzip(&head) {
        let gz_err = |error| CaptureError::Gzip { file: name.to_string(), error };
        let dec = flate2::read::MultiGzDecoder::new(io::Cursor::new(head).chain(r));
        return load_plain(name, dec, cap, "once decompressed", gz_err);
    }
    load_plain(name, io::Cursor::new(head).chain(r), cap, "read from the stream", io_err)
}

fn load_plain(
    name: &str,
    mut r: impl Read,
    cap: u64,
    what: &'static str,
    err: impl Fn(io::Error) -> CaptureError,
) -> Result<Vec<u8>, CaptureError> {
    let head = crate::capped::read_head(&mut r, 4).map_err(&err)?;
    if let Some(magic) = u32_at(&head, 0, true) {
        if !known_magic(magic) {
            return Err(CaptureError::UnknownFormat { file: name.to_string(), magic, hint: format_hint(magic) });
        }
    }
    let got = crate::capped::read_capped(io::Cursor::new(head).chain(r), cap).map_err(err)?;
    if got.over {
        return Err(CaptureError::TooLarge { file: name.to_string(), limit: cap, what });
    }
    Ok(got.bytes)
}

/// The magics [`detect`] reads (the first four bytes, big-endian).
fn known_magic(magic: u32) -> bool {
    matches!(magic, SHB_MAGIC | 0xd4c3_b2a1 | 0xa1b2_c3d4 | 0x4d3c_b2a1 | 0xa1b2_3c4d | 0x34cd_b2a1)
}

/// Recognise the format from the magic and check the fixed header.
fn detect(name: &str, d: &[u8]) -> Result<Kind, CaptureError> {
    let truncated = |what, need: usize| CaptureError::TruncatedHeader {
        file: name.to_string(),
        offset: 0,
        what,
        need: need as u64,
        have: d.len() as u64,
    };
    if d.is_empty() {
        return Err(CaptureError::Empty { file: name.to_string() });
    }
    let Some(magic) = u32_at(d, 0, true) else {
        return Err(truncated("capture file header", 4));
    };
    match magic {
        // The SHB type is a palindrome; the byte order comes from its BOM.
        SHB_MAGIC => {
            if d.len() < 28 {
                return Err(truncated("pcapng section header block", 28));
            }
            Ok(Kind::PcapNg)
        }
        0xd4c3_b2a1 | 0xa1b2_c3d4 | 0x4d3c_b2a1 | 0xa1b2_3c4d | 0x34cd_b2a1 => {
            match parse_pcap_header(d) {
                Ok((_, h)) => Ok(Kind::Pcap {
                    big_endian: h.is_bigendian(),
                    nanos: h.is_nanosecond_precision(),
                    modified: h.is_modified_format(),
                    // The low 16 bits are the link type; above them sit the FCS
                    // length and reserved bits (libpcap's LT_LINKTYPE).
                    linktype: (h.network.0 as u32) & 0xffff,
                }),
                Err(_) => Err(truncated("pcap file header", 24)),
            }
        }
        _ => Err(CaptureError::UnknownFormat { file: name.to_string(), magic, hint: format_hint(magic) }),
    }
}

fn format_hint(magic: u32) -> &'static str {
    match magic {
        0xa1b2_cd34 => " (big-endian modified pcap is not supported)",
        0x28b5_2ffd => " (zstd-compressed: decompress it first)",
        0xfd37_7a58 => " (xz-compressed: decompress it first)",
        0x0422_4d18 => " (lz4-compressed: decompress it first)",
        0x504b_0304 => " (a zip archive: extract it first)",
        m if m >> 8 == 0x42_5a68 => " (bzip2-compressed: decompress it first)",
        m if m >> 16 == 0x1f8b => " (gzip inside gzip)",
        _ => "",
    }
}

fn u32_at(b: &[u8], off: usize, big_endian: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
}

fn u16_at(b: &[u8], off: usize, big_endian: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
}

fn saturate(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// Why `pcap-parser` refused a block that our framing checks accepted.
fn nom_reason(e: &pcap_parser::nom::Err<PcapError<&[u8]>>) -> String {
    match e {
        pcap_parser::nom::Err::Incomplete(_) => "a field runs past the end of the block".to_string(),
        pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e) => match e {
            PcapError::NomError(_, kind) => format!("malformed ({kind:?})"),
            other => format!("malformed ({other})"),
        },
    }
}

#[derive(Debug)]
enum State {
    Pcap {
        big_endian: bool,
        nanos: bool,
        modified: bool,
        linktype: u32,
    },
    PcapNg {
        /// Byte order of the current section.
        big_endian: bool,
        /// Interfaces of the current section, by IDB order.
        ifaces: Vec<Iface>,
        /// Timestamp of the previous packet (for SPBs).
        last_ts: i64,
    },
}

/// The packets of one file, in file order. Yields `Err` at most once, for
/// the first bad record, and then ends.
pub struct PacketIter<'a> {
    name: &'a str,
    data: &'a [u8],
    pos: usize,
    /// Bytes before this offset have been asked for (see [`prefetch_to`]).
    ahead: usize,
    source: usize,
    done: bool,
    state: State,
}

impl fmt::Debug for PacketIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketIter")
            .field("name", &self.name)
            .field("pos", &self.pos)
            .field("source", &self.source)
            .field("done", &self.done)
            .finish()
    }
}

type Item<'a> = Result<Packet<'a>, CaptureError>;

impl<'a> PacketIter<'a> {
    fn new(name: &'a str, data: &'a [u8], kind: Kind) -> Self {
        let (pos, state) = match kind {
            Kind::Pcap { big_endian, nanos, modified, linktype } => (24, State::Pcap { big_endian, nanos, modified, linktype }),
            Kind::PcapNg => (0, State::PcapNg { big_endian: false, ifaces: Vec::new(), last_ts: 0 }),
        };
        PacketIter { name, data, pos, ahead: pos, source: 0, done: false, state }
    }

    /// Ask for the next record's first lines, and stream the bytes after it
    /// into the outer caches.
    #[inline(always)]
    fn prefetch_ahead(&mut self) {
        prefetch_record(self.data, self.pos);
        prefetch_to(self.data, &mut self.ahead, self.pos + PREFETCH_AHEAD);
    }

    /// Byte offset of the next record (the file's length when done).
    pub fn position(&self) -> usize {
        if self.done {
            self.data.len()
        } else {
            self.pos
        }
    }

    /// Set the [`Packet::source`] index given to every packet.
    pub fn with_source(mut self, source: usize) -> Self {
        self.source = source;
        self
    }

    /// The name of the file being read.
    pub fn name(&self) -> &'a str {
        self.name
    }

    fn corrupt(&self, offset: usize, what: &'static str, reason: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt { file: self.name.to_string(), offset: offset as u64, what, reason: reason.into() }
    }

    fn truncated_header(&self, offset: usize, what: &'static str, need: usize, have: usize) -> CaptureError {
        CaptureError::TruncatedHeader { file: self.name.to_string(), offset: offset as u64, what, need: need as u64, have: have as u64 }
    }

    fn truncated_record(&self, offset: usize, what: &'static str, claimed: u64, have: usize) -> CaptureError {
        CaptureError::TruncatedRecord { file: self.name.to_string(), offset: offset as u64, what, claimed, have: have as u64 }
    }

    fn packet(&self, ts_ns: i64, linktype: u32, data: &'a [u8], orig_len: u32, offset: usize) -> Packet<'a> {
        Packet { ts_ns, linktype, data, orig_len, source: self.source, offset: offset as u64 }
    }
}

impl<'a> Iterator for PacketIter<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.state {
            State::Pcap { big_endian, nanos, modified, linktype } => self.next_pcap(big_endian, nanos, modified, linktype),
            State::PcapNg { .. } => self.next_pcapng(),
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl std::iter::FusedIterator for PacketIter<'_> {}

#[cfg(test)]
mod testutil {
    //! Builders for small captures, shared by the tests of every submodule.

    use std::io::Write;

    use pcap_parser::pcapng::{EPB_MAGIC, IDB_MAGIC, SHB_MAGIC, SPB_MAGIC};

    use super::pcapng::PB_MAGIC;
    use super::CaptureFile;

    struct Endian(bool);

    impl Endian {
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn i64(&self, v: i64) -> [u8; 8] {
            if self.0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
    }

    pub(crate) fn pcap_header(be: bool, magic: u32, network: u32) -> Vec<u8> {
        let o = Endian(be);
        let mut b = Vec::new();
        b.extend(o.u32(magic));
        b.extend(o.u16(2));
        b.extend(o.u16(4));
        b.extend([0u8; 8]);
        b.extend(o.u32(65535));
        b.extend(o.u32(network));
        b
    }

    pub(crate) fn pcap_record(be: bool, sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let o = Endian(be);
        let mut b = Vec::new();
        b.extend(o.u32(sec));
        b.extend(o.u32(frac));
        b.extend(o.u32(data.len() as u32));
        b.extend(o.u32(data.len() as u32 + 100));
        b.extend(data);
        b
    }

    pub(crate) fn pcap(be: bool, nanos: bool, network: u32, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let magic = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut b = pcap_header(be, magic, network);
        for (s, f, d) in recs {
            b.extend(pcap_record(be, *s, *f, d));
        }
        b
    }

    pub(crate) fn block(be: bool, t: u32, body: &[u8]) -> Vec<u8> {
        let o = Endian(be);
        let mut body = body.to_vec();
        while body.len() & 3 != 0 {
            body.push(0);
        }
        let len = (12 + body.len()) as u32;
        let mut b = Vec::new();
        b.extend(o.u32(t));
        b.extend(o.u32(len));
        b.extend(&body);
        b.extend(o.u32(len));
        b
    }

    pub(crate) fn shb(be: bool) -> Vec<u8> {
        let o = Endian(be);
        let mut v = Vec::new();
        v.extend(o.u32(0x1a2b_3c4d));
        v.extend(o.u16(1));
        v.extend(o.u16(0));
        v.extend(o.i64(-1));
        block(be, SHB_MAGIC, &v)
    }

    pub(crate) fn idb(be: bool, linktype: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) -> Vec<u8> {
        let o = Endian(be);
        let mut v = Vec::new();
        v.extend(o.u16(linktype));
        v.extend(o.u16(0));
        v.extend(o.u32(snaplen));
        // if_name, to check options before ours are skipped.
        v.extend(o.u16(2));
        v.extend(o.u16(4));
        v.extend(b"eth0");
        if let Some(r) = tsresol {
            v.extend(o.u16(9));
            v.extend(o.u16(1));
            v.extend([r, 0, 0, 0]);
        }
        if let Some(off) = tsoffset {
            v.extend(o.u16(14));
            v.extend(o.u16(8));
            v.extend(o.i64(off));
        }
        v.extend([0u8; 4]); // opt_endofopt
        block(be, IDB_MAGIC, &v)
    }

    pub(crate) fn epb(be: bool, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let o = Endian(be);
        let mut v = Vec::new();
        v.extend(o.u32(iface));
        v.extend(o.u32((ts >> 32) as u32));
        v.extend(o.u32(ts as u32));
        v.extend(o.u32(data.len() as u32));
        v.extend(o.u32(data.len() as u32));
        v.extend(data);
        block(be, EPB_MAGIC, &v)
    }

    pub(crate) fn spb(be: bool, orig_len: u32, data: &[u8]) -> Vec<u8> {
        let o = Endian(be);
        let mut v = o.u32(orig_len).to_vec();
        v.extend(data);
        block(be, SPB_MAGIC, &v)
    }

    pub(crate) fn obsolete_pb(be: bool, iface: u16, ts: u64, data: &[u8]) -> Vec<u8> {
        let o = Endian(be);
        let mut v = Vec::new();
        v.extend(o.u16(iface));
        v.extend(o.u16(0));
        v.extend(o.u32((ts >> 32) as u32));
        v.extend(o.u32(ts as u32));
        v.extend(o.u32(data.len() as u32));
        v.extend(o.u32(data.len() as u32));
        v.extend(data);
        block(be, PB_MAGIC, &v)
    }

    pub(crate) type Got = Vec<Result<(i64, u32, Vec<u8>), String>>;

    pub(crate) fn all(f: &CaptureFile) -> Got {
        f.packets().map(|r| r.map(|p| (p.ts_ns, p.linktype, p.data.to_vec())).map_err(|e| e.to_string())).collect()
    }

    pub(crate) fn open(name: &str, bytes: Vec<u8>) -> CaptureFile {
        CaptureFile::from_bytes(name.into(), bytes).expect("capture opens")
    }

    pub(crate) fn open_err(name: &str, bytes: Vec<u8>) -> String {
        CaptureFile::from_bytes(name.into(), bytes).expect_err("capture is refused").to_string()
    }

    pub(crate) fn last_err(f: &CaptureFile) -> String {
        let got = all(f);
        got.last().expect("at least one item").clone().expect_err("last item is an error")
    }

    pub(crate) const S: i64 = 1_000_000_000;

    pub(crate) fn two_interfaces(be: bool) -> Vec<u8> {
        let mut b = shb(be);
        b.extend(idb(be, 1, 0, None, None)); // Ethernet, microseconds
        b.extend(idb(be, 101, 0, Some(9), None)); // raw IP, nanoseconds
        b.extend(block(be, 4, &[0u8; 8])); // NRB: skipped
        b.extend(epb(be, 0, 1_500_000, b"eth"));
        b.extend(epb(be, 1, 2_000_000_123, b"raw!!"));
        b.extend(block(be, 5, &[0u8; 16])); // ISB: skipped
        b.extend(block(be, 0x0a, &[0u8; 12])); // DSB: skipped
        b.extend(block(be, 0x0bad, &[0u8; 8])); // custom: skipped
        b.extend(block(be, 0x1234_5678, &[])); // unknown: skipped
        b.extend(spb(be, 2, b"sp"));
        b
    }

    pub(crate) fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(raw).expect("gzip");
        enc.finish().expect("gzip")
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn bad_file_headers_are_refused() {
        assert_eq!(
            open_err("x.pcap", vec![0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]),
            "x.pcap: unrecognised capture format (magic 0x12345678 at byte 0)"
        );
        assert_eq!(open_err("e.pcap", Vec::new()), "e.pcap: empty file (0 bytes)");
        assert_eq!(open_err("s.pcap", vec![0xd4, 0xc3]), "s.pcap: truncated capture file header at byte 0 (4 bytes needed, 2 remain)");
        let mut short = pcap(false, false, 1, &[]);
        short.truncate(10);
        assert_eq!(open_err("g.pcap", short), "g.pcap: truncated pcap file header at byte 0 (24 bytes needed, 10 remain)");
        assert!(open_err("z.zst", vec![0x28, 0xb5, 0x2f, 0xfd, 1]).ends_with("(zstd-compressed: decompress it first)"));
        let ng = shb(false);
        assert!(open_err("n.pcapng", ng[..20].to_vec()).contains("truncated pcapng section header block"));
        // A header with no records is a valid, empty capture.
        assert_eq!(all(&open("h.pcap", pcap(false, true, 1, &[]))), vec![]);
    }

    #[test]
    fn gzip_is_transparent_and_capped() {
        let raw = pcap(false, false, 1, &[(1, 0, b"zz")]);
        let f = open("t.pcap.gz", gzip(&raw));
        assert_eq!(f.len(), raw.len() as u64);
        assert_eq!(all(&f), vec![Ok((S, 1, b"zz".to_vec()))]);

        let err = CaptureFile::from_bytes_capped("big.gz".into(), gzip(&raw), 20).expect_err("over the cap");
        assert_eq!(err.to_string(), "big.gz: more than 20 bytes once decompressed");

        let mut bad = gzip(&raw);
        bad.truncate(bad.len() - 10);
        assert!(open_err("cut.gz", bad).starts_with("cut.gz: gzip decompression failed"));
    }

    /// A gzip bomb: 64 MiB of zeros in 64 KiB. The first decompressed bytes
    /// are not a capture magic, so it is refused before more is inflated;
    /// one with a pcap header in front is refused at the cap. A stream of
    /// zeros (`replay /dev/zero`, stdin) is refused at its first four bytes.
    #[test]
    fn gzip_bombs_and_endless_streams_are_refused_before_memory_is_spent() {
        let zeros = vec![0u8; 64 << 20];
        let err = CaptureFile::from_bytes("bomb.gz".into(), gzip(&zeros)).expect_err("not a capture");
        assert_eq!(err.to_string(), "bomb.gz: unrecognised capture format (magic 0x00000000 at byte 0)");
        let mut framed = pcap(false, false, 1, &[]);
        framed.extend_from_slice(&zeros);
        let err = CaptureFile::from_bytes_capped("bomb2.gz".into(), gzip(&framed), 1 << 20).expect_err("over the cap");
        assert_eq!(err.to_string(), "bomb2.gz: more than 1048576 bytes once decompressed");
        let err = CaptureFile::from_reader("-".into(), std::io::repeat(0)).expect_err("endless zeros");
        assert!(matches!(err, CaptureError::UnknownFormat { magic: 0, .. }), "{err}");
        let err = CaptureFile::open(std::path::Path::new("/dev/zero")).expect_err("endless zeros");
        assert_eq!(err.to_string(), "/dev/zero: unrecognised capture format (magic 0x00000000 at byte 0)");
        // gzip inside gzip is named as such, from its first bytes.
        let err = CaptureFile::from_bytes("gz.gz".into(), gzip(&gzip(&zeros))).expect_err("gzip in gzip");
        assert!(err.to_string().contains("gzip inside gzip"), "{err}");
    }

    #[test]
    fn from_reader_reads_whole_stream_with_cap() {
        let raw = pcap(true, false, 1, &[(1, 0, b"a"), (2, 0, b"b")]);
        let f = CaptureFile::from_reader("-".into(), &raw[..]).expect("opens");
        assert_eq!(f.name(), "-");
        assert_eq!(all(&f).len(), 2);
        let gz = CaptureFile::from_reader("-".into(), &gzip(&raw)[..]).expect("gz");
        assert_eq!(all(&gz).len(), 2);
        let err = CaptureFile::from_reader_capped("-".into(), &raw[..], 30).expect_err("over the cap");
        assert_eq!(err.to_string(), "-: more than 30 bytes read from the stream");
    }

    #[test]
    fn open_maps_files_and_refuses_empty_and_missing() {
        let dir = std::env::temp_dir().join(format!("pinwatch-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.pcap");
        let raw = pcap(false, true, 1, &[(1, 2, b"file")]);
        std::fs::write(&good, &raw).expect("write");
        let empty = dir.join("empty.pcap");
        std::fs::write(&empty, b"").expect("write");
        let gz = dir.join("good.pcap.gz");
        std::fs::write(&gz, gzip(&raw)).expect("write");

        let f = CaptureFile::open(&good).expect("opens");
        assert_eq!(f.name(), good.display().to_string());
        assert_eq!(all(&f), vec![Ok((S + 2, 1, b"file".to_vec()))]);
        let g = CaptureFile::open(&gz).expect("opens");
        assert_eq!(all(&g), all(&f));
        let e = CaptureFile::open(&empty).expect_err("empty");
        assert!(matches!(e, CaptureError::Empty { .. }), "{e}");
        let m = CaptureFile::open(&dir.join("missing.pcap")).expect_err("missing");
        assert!(matches!(m, CaptureError::Io { .. }), "{m}");
        assert!(m.to_string().contains("missing.pcap"), "{m}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Releasing the parts of a mapped file (as the replay threads do at the
    /// end) leaves every byte readable and unchanged, also through a slice
    /// borrowed before, whatever the part count; out-of-range parts and
    /// in-memory bytes are left alone.
    #[test]
    fn released_parts_of_a_mapped_file_read_the_same() {
        let dir = std::env::temp_dir().join(format!("pinwatch-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("big.pcap");
        // Several pages of records, with a payload that differs per record.
        let payloads: Vec<Vec<u8>> = (0u32..400).map(|i| i.to_le_bytes().repeat(100)).collect();
        let records: Vec<(u32, u32, &[u8])> = payloads.iter().enumerate().map(|(i, p)| (i as u32, 0, p.as_slice())).collect();
        let raw = pcap(false, false, 1, &records);
        assert!(raw.len() > 4 * 4096);
        std::fs::write(&path, &raw).expect("write");
        let f = CaptureFile::open(&path).expect("opens");
        let before = all(&f);
        let borrowed = f.bytes();
        for n in [1, 2, 3, 7] {
            for k in 0..=n {
                f.release_part(k, n);
            }
            assert_eq!(borrowed, &raw[..], "{n} parts");
            assert_eq!(all(&f), before, "{n} parts");
        }
        f.release_part(0, 0);
        let mem = CaptureFile::from_bytes("mem.pcap".into(), raw.clone()).expect("opens");
        mem.release_part(0, 2);
        assert_eq!(mem.bytes(), &raw[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // ---- robustness -------------------------------------------------------

    /// Drain a file; check the iterator's contract on the way.
    fn drain(f: &CaptureFile) -> usize {
        let mut it = f.packets();
        let mut n = 0usize;
        let mut last_offset = None;
        while let Some(item) = it.next() {
            n += 1;
            // Every item consumes at least 12 bytes.
            assert!(n <= f.bytes().len() / 12 + 1, "too many items");
            match item {
                Ok(p) => {
                    assert!(f.bytes().as_ptr_range().contains(&p.data.as_ptr()) || p.data.is_empty());
                    assert!(p.data.len() <= MAX_CAPLEN as usize);
                    if let Some(o) = last_offset {
                        assert!(p.offset > o);
                    }
                    last_offset = Some(p.offset);
                }
                Err(e) => {
                    assert!(e.to_string().starts_with(f.name()));
                    assert!(it.next().is_none(), "nothing after an error");
                    break;
                }
            }
        }
        assert!(it.next().is_none());
        n
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut ng = two_interfaces(false);
        ng.extend(obsolete_pb(false, 1, 99, b"pb"));
        ng.extend(shb(true));
        ng.extend(idb(true, 1, 0, Some(0x88), Some(3)));
        ng.extend(epb(true, 0, 1000, b"be"));
        vec![pcap(false, false, 1, &[(1, 0, b"abcdef"), (2, 0, b"ghij")]), pcap(true, true, 1, &[(1, 0, b"abcdef"), (2, 0, b"ghij")]), ng]
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            magic in 0usize..5,
        ) {
            let mut data = data;
            // Give the random bytes a real magic most of the time.
            let magics: [&[u8]; 5] = [
                &[0xd4, 0xc3, 0xb2, 0xa1], &[0xa1, 0xb2, 0x3c, 0x4d],
                &[0x0a, 0x0d, 0x0d, 0x0a], &[0x1f, 0x8b], &[],
            ];
            let m = magics[magic];
            if data.len() >= m.len() {
                data[..m.len()].copy_from_slice(m);
            }
            if data.len() >= 12 && magic == 2 {
                data[8..12].copy_from_slice(&[0x4d, 0x3c, 0x2b, 0x1a]);
            }
            if let Ok(f) = CaptureFile::from_bytes("r".into(), data) {
                drain(&f);
            }
        }

        #[test]
        fn mutated_captures_never_panic(
            seed in 0usize..3,
            edits in proptest::collection::vec(
                (proptest::num::usize::ANY, proptest::num::u8::ANY), 1..6),
            cut in proptest::num::usize::ANY,
        ) {
            let mut b = seeds().swap_remove(seed);
            for (pos, val) in edits {
                let p = pos % b.len();
                b[p] = val;
            }
            let keep = b.len() - cut % (b.len() / 4 + 1);
            b.truncate(keep);
            if let Ok(f) = CaptureFile::from_bytes("m".into(), b) {
                let n = drain(&f);
                let g = open("g", seeds().swap_remove(0));
                let total = Merged::new(&[&f, &g]).count();
                proptest::prop_assert_eq!(total, n + 2);
            }
        }
    }

    // ---- corpus -----------------------------------------------------------

    /// The shared corpus (`pinwatch_testkit::corpus::root`): `None` after a
    /// SKIPPED line, a failure under `PINWATCH_CORPUS_REQUIRED=1`.
    fn corpus_dir() -> Option<std::path::PathBuf> {
        pinwatch_testkit::corpus::root()
    }

    /// Expected link types for the capinfos encapsulation names in MANIFEST.
    fn linktypes(name: &str) -> &'static [u32] {
        match name {
            "ether" => &[1],
            "null" => &[0],
            "linux-sll" => &[113],
            "linux-sll2" => &[276],
            "ppp" => &[9],
            "rawip" => &[12, 14, 101],
            "rawip4" => &[228],
            _ => &[],
        }
    }

    /// `(frame, time_epoch in ns)` of every oracle row.
    fn oracle_frames(path: &Path) -> Vec<(usize, i64)> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let mut c = l.split('\t');
                let frame = c.next()?.parse().ok()?;
                let (s, f) = c.next()?.split_once('.')?;
                let frac = format!("{f:0<9}");
                let ns = s.parse::<i64>().ok()? * S + frac.get(..9)?.parse::<i64>().ok()?;
                Some((frame, ns))
            })
            .collect()
    }

    fn capture_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                if name != "oracle" {
                    capture_files(&p, out);
                }
            } else if [".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap"].iter().any(|s| name.ends_with(s)) {
                out.push(p);
            }
        }
    }

    #[test]
    fn corpus_files_read_and_match_capinfos_and_tshark() {
        let Some(dir) = corpus_dir() else { return };
        let corpus = dir.as_path();
        let rows = pinwatch_testkit::corpus::manifest(corpus);
        assert!(rows.len() > 400, "MANIFEST per-file table not found");
        let mut files = Vec::new();
        capture_files(corpus, &mut files);
        files.sort();
        let (mut packets, mut errors, mut checked_ts) = (0usize, Vec::new(), 0usize);
        let mut problems = Vec::new();
        for path in &files {
            let rel = path.strip_prefix(corpus).unwrap_or(path).display().to_string();
            let f = match CaptureFile::open(path) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("{rel}: does not open: {e}"));
                    continue;
                }
            };
            let mut got: Vec<Packet<'_>> = Vec::new();
            let mut err = None;
            for item in f.packets() {
                match item {
                    Ok(p) => got.push(p),
                    Err(e) => err = Some(e.to_string()),
                }
            }
            packets += got.len();
            if let Some(e) = &err {
                errors.push(format!("{rel}: {e} (after {} packets)", got.len()));
            }
            let Some(row) = rows.iter().find(|r| r.rel == rel) else {
                problems.push(format!("{rel}: not in MANIFEST"));
                continue;
            };
            // Packet count: capinfos, or "N+" for a damaged file.
            match row.packets.strip_suffix('+') {
                Some(min) => {
                    let min: usize = min.parse().unwrap_or(usize::MAX);
                    if got.len() < min || err.is_none() {
                        problems.push(format!("{rel}: {} packets, error {err:?}; MANIFEST {}", got.len(), row.packets));
                    }
                }
                None => {
                    if row.packets.parse::<usize>().ok() != Some(got.len()) || err.is_some() {
                        problems.push(format!("{rel}: {} packets, error {err:?}; capinfos {}", got.len(), row.packets));
                    }
                }
            }
            // Format and link type.
            let fl = row.format_link.split_whitespace().next().unwrap_or("");
            let (fmt, link) = fl.split_once('/').unwrap_or((fl, ""));
            let want_fmt = if fmt == "pcapng" { Format::PcapNg } else { Format::Pcap };
            let lts = linktypes(link);
            if f.format() != want_fmt || got.iter().any(|p| !lts.contains(&p.linktype)) {
                problems.push(format!(
                    "{rel}: format {:?} link types {:?}; MANIFEST {}",
                    f.format(),
                    got.iter().map(|p| p.linktype).collect::<std::collections::BTreeSet<_>>(),
                    row.format_link
                ));
            }
            // tshark: frame numbers are a lower bound, times must agree.
            if row.kinds.is_empty() {
                continue;
            }
            let tsv = corpus.join("oracle").join(format!("{}.tshark.tsv", row.oracle));
            for (frame, ns) in oracle_frames(&tsv) {
                match got.get(frame.wrapping_sub(1)) {
                    None => problems.push(format!("{rel}: tshark frame {frame}, we have {} packets", got.len())),
                    Some(p) if p.ts_ns != ns => problems.push(format!("{rel}: frame {frame} at {} ns, tshark says {ns}", p.ts_ns)),
                    Some(_) => checked_ts += 1,
                }
            }
        }
        eprintln!(
            "corpus: {} files, {packets} packets, {checked_ts} tshark frame times matched, {} files stopped at an error:",
            files.len(),
            errors.len()
        );
        for e in &errors {
            eprintln!("  {e}");
        }
        for p in &problems {
            eprintln!("PROBLEM {p}");
        }
        assert!(files.len() >= 400, "only {} capture files found", files.len());
        assert!(problems.is_empty(), "{} problems (see stderr)", problems.len());
        // The two damaged suricata-verify files stop after 6 packets.
        for name in ["bug-1450-04/tls_DER-incomplete-header.pcap", "bug-1450-05/tls_DER-incomplete-content.pcap"] {
            assert!(
                errors.iter().any(|e| e.contains(name) && e.contains("exceeds the 262144-byte limit (after 6 packets)")),
                "{name}: {errors:?}"
            );
        }
    }
}
