//! Capture files: classic pcap (both byte orders, micro- and nanosecond, the
//! "modified" Kuznetzov variant) and pcapng (any number of sections and
//! interfaces, each with its own link type, `if_tsresol` and `if_tsoffset`),
//! optionally gzip-compressed, or a pcap stream on stdin.
//!
//! Files are memory-mapped (`memmap2`) and packets are lent to the caller as
//! slices of the mapping: no packet byte is copied. Record and block framing
//! is parsed with `pcap-parser`. Several files are merged into one capture in
//! timestamp order ([`Merged`]; ties keep file order, then record order).
//!
//! Errors never panic and always name the file and the byte offset. A corrupt
//! or truncated file stops at the first bad record: every packet before it has
//! already been yielded, the error is yielded once, and the other files of a
//! merge go on.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header};
use pcap_parser::pcapng::{parse_block_be, parse_block_le, Block};
use pcap_parser::PcapError;

/// Largest captured length we accept for one record: 256 KiB (jumbo frames
/// and TSO captures are below 64 KiB; anything larger is corruption).
pub const MAX_RECORD: usize = 256 * 1024;
/// Largest decompressed gzip capture or stdin stream held in memory.
pub const MAX_IN_MEMORY: u64 = 4 << 30;

/// One captured packet, borrowed from its file.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch, from the record.
    pub ts_ns: i64,
    /// LINKTYPE_* of the packet's interface.
    pub linktype: u32,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Index of the input file.
    pub source: usize,
    /// Byte offset of the record in its file.
    pub offset: u64,
}

/// A capture problem: always names the file and the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: unrecognised capture format (magic {magic:#010x} at byte 0)")]
    Format { file: String, magic: u32 },
    #[error("{file}: {what} at byte {offset}")]
    Corrupt { file: String, offset: u64, what: String },
    #[error("{file}: larger than {limit} bytes once decompressed")]
    TooLarge { file: String, limit: u64 },
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

/// An opened capture file.
pub struct CaptureFile {
    name: String,
    bytes: Bytes,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaptureFile({}, {} bytes)", self.name, self.len())
    }
}

#[allow(unsafe_code)]
fn map(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the file is opened read-only and the mapping is only ever read
    // as an immutable byte slice. If another process truncates the file while
    // we read it, the OS may raise SIGBUS; that is the documented limit of
    // mapping files (Suricata, Wireshark and pcap-parser users share it).
    unsafe { memmap2::Mmap::map(file) }
}

impl CaptureFile {
    /// Open and map a file; gzip-compressed files are decompressed into memory.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let io = |source| CaptureError::Io { file: name.clone(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bytes = if len == 0 { Bytes::Owned(Vec::new()) } else { Bytes::Mapped(map(&file).map_err(io)?) };
        if bytes.as_slice().starts_with(&[0x1f, 0x8b]) {
            let gz = flate2::read::GzDecoder::new(bytes.as_slice());
            return Self::from_reader(name, gz);
        }
        Ok(CaptureFile { name, bytes })
    }

    /// A capture already in memory.
    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Self, CaptureError> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let gz = flate2::read::GzDecoder::new(bytes.as_slice());
            return Self::from_reader(name, gz);
        }
        Ok(CaptureFile { name, bytes: Bytes::Owned(bytes) })
    }

    /// Read a whole stream (stdin, a gzip decoder) into memory, capped at
    /// [`MAX_IN_MEMORY`].
    pub fn from_reader(name: String, r: impl Read) -> Result<Self, CaptureError> {
        let mut v = Vec::new();
        let n = r
            .take(MAX_IN_MEMORY + 1)
            .read_to_end(&mut v)
            .map_err(|source| CaptureError::Io { file: name.clone(), source })?;
        if n as u64 > MAX_IN_MEMORY {
            return Err(CaptureError::TooLarge { file: name, limit: MAX_IN_MEMORY });
        }
        Self::from_bytes(name, v)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packets of this file, in file order. `source` is the index given to
    /// each packet.
    pub fn packets(&self, source: usize) -> PacketIter<'_> {
        PacketIter::new(&self.name, self.bytes.as_slice(), source)
    }
}

#[derive(Clone, Copy)]
enum Format {
    Pcap { big_endian: bool, nanos: bool, modified: bool, linktype: u32 },
    PcapNg { big_endian: bool },
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Units per second.
    resolution: u64,
    offset_s: i64,
}

/// Iterator over one file's packets.
pub struct PacketIter<'a> {
    name: &'a str,
    data: &'a [u8],
    pos: usize,
    source: usize,
    format: Option<Format>,
    ifaces: Vec<Iface>,
    last_ts: i64,
    done: bool,
    pending_error: Option<CaptureError>,
}

fn nom_what(e: &pcap_parser::nom::Err<PcapError<&[u8]>>) -> String {
    match e {
        pcap_parser::nom::Err::Incomplete(_) => "truncated record".to_string(),
        pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e) => match e {
            PcapError::Incomplete(n) => format!("truncated record ({n} more bytes needed)"),
            other => format!("malformed record ({other})"),
        },
    }
}

impl<'a> PacketIter<'a> {
    fn new(name: &'a str, data: &'a [u8], source: usize) -> Self {
        let mut it = PacketIter {
            name,
            data,
            pos: 0,
            source,
            format: None,
            ifaces: Vec::new(),
            last_ts: 0,
            done: false,
            pending_error: None,
        };
        it.read_header();
        it
    }

    fn corrupt(&self, offset: usize, what: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt { file: self.name.to_string(), offset: offset as u64, what: what.into() }
    }

    fn read_header(&mut self) {
        let d = self.data;
        if d.len() < 4 {
            self.pending_error = Some(if d.is_empty() {
                self.corrupt(0, "empty file")
            } else {
                self.corrupt(0, "truncated file header")
            });
            return;
        }
        let magic = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        match magic {
            0x0a0d_0d0a => {
                // pcapng: the byte order is in the byte-order magic of the SHB.
                let big_endian = d.get(8..12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d]);
                self.format = Some(Format::PcapNg { big_endian });
            }
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 | 0xa1b2_cd34 | 0x34cd_b2a1 => {
                match parse_pcap_header(d) {
                    Ok((rest, h)) => {
                        self.pos = d.len() - rest.len();
                        self.format = Some(Format::Pcap {
                            big_endian: h.is_bigendian(),
                            nanos: h.is_nanosecond_precision(),
                            modified: h.is_modified_format(),
                            // The upper bits may carry FCS length information.
                            linktype: (h.network.0 as u32) & 0x0fff_ffff,
                        });
                    }
                    Err(_) => self.pending_error = Some(self.corrupt(0, "truncated pcap file header")),
                }
            }
            _ => self.pending_error = Some(CaptureError::Format { file: self.name.to_string(), magic }),
        }
    }

    fn next_pcap(&mut self, big_endian: bool, nanos: bool, modified: bool, linktype: u32) -> Option<Result<Packet<'a>, CaptureError>> {
        let start = self.pos;
        let rest = &self.data[start..];
        if rest.is_empty() {
            return None;
        }
        // Check the claimed length ourselves first: a record claiming 16 MB
        // is corruption, not a reason to wait for more bytes.
        if rest.len() >= 16 {
            let b = &rest[8..12];
            let caplen = if big_endian {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            } else {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            } as usize;
            if caplen > MAX_RECORD {
                return Some(Err(self.corrupt(start, format!("record claims {caplen} captured bytes (limit {MAX_RECORD})"))));
            }
            let need = 16 + caplen + if modified { 8 } else { 0 };
            if need > rest.len() {
                return Some(Err(self.corrupt(
                    start,
                    format!("truncated packet record (header says {caplen} bytes, {} remain)", rest.len() - 16),
                )));
            }
        }
        let parsed = if modified {
            parse_pcap_frame_modified(rest)
        } else if big_endian {
            parse_pcap_frame_be(rest)
        } else {
            parse_pcap_frame(rest)
        };
        match parsed {
            Ok((left, b)) => {
                self.pos = self.data.len() - left.len();
                let frac = i64::from(b.ts_usec);
                let ts_ns = i64::from(b.ts_sec) * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
                Some(Ok(Packet {
                    ts_ns,
                    linktype,
                    data: b.data,
                    orig_len: b.origlen,
                    source: self.source,
                    offset: start as u64,
                }))
            }
            Err(e) => Some(Err(self.corrupt(start, nom_what(&e)))),
        }
    }

    fn next_pcapng(&mut self, big_endian: bool) -> Option<Result<Packet<'a>, CaptureError>> {
        let mut big_endian = big_endian;
        loop {
            let start = self.pos;
            let rest = &self.data[start..];
            if rest.is_empty() {
                return None;
            }
            if rest.len() >= 12 {
                let be = if rest[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                    // A new section may switch byte order.
                    rest[8..12] == [0x1a, 0x2b, 0x3c, 0x4d]
                } else {
                    big_endian
                };
                let l = &rest[4..8];
                let len = if be { u32::from_be_bytes([l[0], l[1], l[2], l[3]]) } else { u32::from_le_bytes([l[0], l[1], l[2], l[3]]) } as usize;
                if len < 12 || len % 4 != 0 || len > MAX_RECORD + 64 {
                    return Some(Err(self.corrupt(start, format!("bad pcapng block length {len}"))));
                }
                if len > rest.len() {
                    return Some(Err(self.corrupt(start, format!("truncated pcapng block (length {len}, {} remain)", rest.len()))));
                }
            }
            let parsed = if big_endian { parse_block_be(rest) } else { parse_block_le(rest) };
            let (left, block) = match parsed {
                Ok(x) => x,
                Err(e) => return Some(Err(self.corrupt(start, nom_what(&e)))),
            };
            self.pos = self.data.len() - left.len();
            match block {
                Block::SectionHeader(shb) => {
                    big_endian = shb.big_endian();
                    self.format = Some(Format::PcapNg { big_endian });
                    self.ifaces.clear();
                }
                Block::InterfaceDescription(idb) => {
                    let resolution = match idb.ts_resolution() {
                        Some(r) if r > 0 => r,
                        _ => return Some(Err(self.corrupt(start, format!("bad if_tsresol {:#x}", idb.if_tsresol)))),
                    };
                    self.ifaces.push(Iface {
                        linktype: (idb.linktype.0 as u32) & 0x0fff_ffff,
                        resolution,
                        offset_s: idb.if_tsoffset,
                    });
                }
                Block::EnhancedPacket(epb) => {
                    let Some(iface) = self.ifaces.get(epb.if_id as usize).copied() else {
                        return Some(Err(self.corrupt(start, format!("packet for undeclared interface {}", epb.if_id))));
                    };
                    let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let r = u128::from(iface.resolution);
                    let ns = u128::from(units) / r * 1_000_000_000 + u128::from(units) % r * 1_000_000_000 / r;
                    let ts_ns = i64::try_from(ns).unwrap_or(i64::MAX).saturating_add(iface.offset_s.saturating_mul(1_000_000_000));
                    self.last_ts = ts_ns;
                    let caplen = (epb.caplen as usize).min(epb.data.len());
                    return Some(Ok(Packet {
                        ts_ns,
                        linktype: iface.linktype,
                        data: &epb.data[..caplen],
                        orig_len: epb.origlen,
                        source: self.source,
                        offset: start as u64,
                    }));
                }
                Block::SimplePacket(spb) => {
                    // No timestamp: it happened no earlier than the previous packet.
                    let Some(iface) = self.ifaces.first().copied() else {
                        return Some(Err(self.corrupt(start, "simple packet block before any interface")));
                    };
                    return Some(Ok(Packet {
                        ts_ns: self.last_ts,
                        linktype: iface.linktype,
                        data: spb.data,
                        orig_len: spb.origlen,
                        source: self.source,
                        offset: start as u64,
                    }));
                }
                _ => {}
            }
        }
    }
}

impl<'a> Iterator for PacketIter<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        let item = match self.format? {
            Format::Pcap { big_endian, nanos, modified, linktype } => self.next_pcap(big_endian, nanos, modified, linktype),
            Format::PcapNg { big_endian } => self.next_pcapng(big_endian),
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Several files as one capture, in timestamp order.
pub struct Merged<'a> {
    iters: Vec<PacketIter<'a>>,
    heads: Vec<Option<Result<Packet<'a>, CaptureError>>>,
}

impl<'a> Merged<'a> {
    pub fn new(files: &[&'a CaptureFile]) -> Self {
        let mut iters: Vec<PacketIter<'a>> = files.iter().enumerate().map(|(i, f)| f.packets(i)).collect();
        let heads = iters.iter_mut().map(|it| it.next()).collect();
        Merged { iters, heads }
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Errors first (they belong where the file stopped), then the earliest
        // packet; ties go to the lower file index. The number of files is
        // small, so a linear scan beats a heap.
        let mut best: Option<usize> = None;
        for (i, h) in self.heads.iter().enumerate() {
            match h {
                Some(Err(_)) => {
                    best = Some(i);
                    break;
                }
                Some(Ok(p)) => {
                    let better = match best.and_then(|b| self.heads[b].as_ref()) {
                        Some(Ok(q)) => p.ts_ns < q.ts_ns,
                        _ => true,
                    };
                    if better {
                        best = Some(i);
                    }
                }
                None => {}
            }
        }
        let i = best?;
        let out = self.heads[i].take();
        self.heads[i] = self.iters[i].next();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(be: bool, nanos: bool, linktype: u32, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut b = Vec::new();
        b.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        b.extend(w16(2));
        b.extend(w16(4));
        b.extend([0u8; 8]);
        b.extend(w32(65535));
        b.extend(w32(linktype));
        for (s, f, d) in recs {
            b.extend(w32(*s));
            b.extend(w32(*f));
            b.extend(w32(d.len() as u32));
            b.extend(w32(d.len() as u32));
            b.extend(*d);
        }
        b
    }

    fn pcapng_le(blocks: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (t, body) in blocks {
            let mut body = body.clone();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            let len = (12 + body.len()) as u32;
            b.extend(t.to_le_bytes());
            b.extend(len.to_le_bytes());
            b.extend(&body);
            b.extend(len.to_le_bytes());
        }
        b
    }

    fn shb() -> (u32, Vec<u8>) {
        let mut v = Vec::new();
        v.extend(0x1a2b_3c4du32.to_le_bytes());
        v.extend(1u16.to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend((-1i64).to_le_bytes());
        (0x0a0d_0d0a, v)
    }

    fn idb(linktype: u16, tsresol: Option<u8>) -> (u32, Vec<u8>) {
        let mut v = Vec::new();
        v.extend(linktype.to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend(0u32.to_le_bytes());
        if let Some(r) = tsresol {
            v.extend(9u16.to_le_bytes());
            v.extend(1u16.to_le_bytes());
            v.extend([r, 0, 0, 0]);
            v.extend([0u8; 4]);
        }
        (1, v)
    }

    fn epb(iface: u32, ts: u64, data: &[u8]) -> (u32, Vec<u8>) {
        let mut v = Vec::new();
        v.extend(iface.to_le_bytes());
        v.extend(((ts >> 32) as u32).to_le_bytes());
        v.extend((ts as u32).to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.extend(data);
        (6, v)
    }

    fn all(f: &CaptureFile) -> Vec<Result<(i64, u32, Vec<u8>), String>> {
        f.packets(0).map(|r| r.map(|p| (p.ts_ns, p.linktype, p.data.to_vec())).map_err(|e| e.to_string())).collect()
    }

    #[test]
    fn pcap_both_orders_and_resolutions() {
        for be in [false, true] {
            for nanos in [false, true] {
                let bytes = pcap(be, nanos, 101, &[(10, 5, b"ab"), (11, 7, b"cde")]);
                let f = CaptureFile::from_bytes("t.pcap".into(), bytes).expect("opens");
                let got = all(&f);
                let mul = if nanos { 1 } else { 1000 };
                assert_eq!(
                    got,
                    vec![Ok((10_000_000_000 + 5 * mul, 101, b"ab".to_vec())), Ok((11_000_000_000 + 7 * mul, 101, b"cde".to_vec()))],
                    "be={be} nanos={nanos}"
                );
            }
        }
    }

    #[test]
    fn pcapng_interfaces_with_own_linktype_and_resolution() {
        let bytes = pcapng_le(&[
            shb(),
            idb(1, None),
            idb(101, Some(9)),
            epb(0, 1_500_000, b"eth"),
            epb(1, 2_000_000_123, b"raw"),
        ]);
        let f = CaptureFile::from_bytes("t.pcapng".into(), bytes).expect("opens");
        assert_eq!(
            all(&f),
            vec![Ok((1_500_000_000, 1, b"eth".to_vec())), Ok((2_000_000_123, 101, b"raw".to_vec()))]
        );
    }

    #[test]
    fn truncated_tail_after_good_packets() {
        let mut bytes = pcap(false, false, 1, &[(1, 0, b"good"), (2, 0, b"cut-short")]);
        bytes.truncate(bytes.len() - 3);
        let f = CaptureFile::from_bytes("t.pcap".into(), bytes).expect("opens");
        let got = all(&f);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        let err = got[1].as_ref().expect_err("second is an error");
        assert!(err.contains("t.pcap") && err.contains("at byte 44"), "{err}");
    }

    #[test]
    fn wrong_magic_empty_and_huge_caplen() {
        let f = CaptureFile::from_bytes("x.bin".into(), b"GIF89a....".to_vec()).expect("opens");
        let got = all(&f);
        assert!(got[0].as_ref().expect_err("error").contains("unrecognised capture format"));
        let f = CaptureFile::from_bytes("e.pcap".into(), Vec::new()).expect("opens");
        assert!(all(&f)[0].as_ref().expect_err("error").contains("empty"));
        let mut bytes = pcap(false, false, 1, &[]);
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend((16u32 << 20).to_le_bytes());
        bytes.extend((16u32 << 20).to_le_bytes());
        let f = CaptureFile::from_bytes("h.pcap".into(), bytes).expect("opens");
        assert!(all(&f)[0].as_ref().expect_err("error").contains("claims 16777216"));
    }

    #[test]
    fn merge_is_by_time_then_file() {
        let a = CaptureFile::from_bytes("a".into(), pcap(false, false, 1, &[(1, 0, b"a1"), (3, 0, b"a3")])).expect("a");
        let b = CaptureFile::from_bytes("b".into(), pcap(true, true, 1, &[(1, 0, b"b1"), (2, 0, b"b2")])).expect("b");
        let got: Vec<(usize, Vec<u8>)> = Merged::new(&[&a, &b]).map(|p| p.map(|p| (p.source, p.data.to_vec())).expect("ok")).collect();
        assert_eq!(got, vec![(0, b"a1".to_vec()), (1, b"b1".to_vec()), (1, b"b2".to_vec()), (0, b"a3".to_vec())]);
    }

    #[test]
    fn gzip_is_transparent() {
        use std::io::Write;
        let raw = pcap(false, false, 1, &[(1, 0, b"zz")]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).expect("gzip");
        let f = CaptureFile::from_bytes("t.pcap.gz".into(), enc.finish().expect("gzip")).expect("opens");
        assert_eq!(all(&f), vec![Ok((1_000_000_000, 1, b"zz".to_vec()))]);
    }

    proptest::proptest! {
        #[test]
        fn random_and_mutated_bytes_terminate(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400), pos in 0usize..200, val in proptest::num::u8::ANY) {
            let f = CaptureFile::from_bytes("r".into(), data).expect("opens");
            proptest::prop_assert!(f.packets(0).count() <= 400);
            let mut good = pcapng_le(&[shb(), idb(1, Some(6)), epb(0, 5, b"abcdef"), epb(0, 6, b"ghij")]);
            let p = pos % good.len();
            good[p] = val;
            let f = CaptureFile::from_bytes("m".into(), good).expect("opens");
            proptest::prop_assert!(f.packets(0).count() <= 4);
        }
    }
}
