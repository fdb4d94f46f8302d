//! Classic pcap files, read and written whole: enough for tests that make
//! variants of real captures (drop, reorder or split packets). Both byte
//! orders and both timestamp resolutions are read; a file is written back
//! with the header it was read with. [`Writer`] builds a little-endian
//! microsecond capture from frames, and [`tcp`], [`payload`] and
//! [`rewrite`] read and change the TCP fields of an Ethernet/IPv4 frame,
//! with lengths and checksums fixed after a rewrite.

use std::path::Path;

/// One packet record: its 16-byte header as in the file (byte order of the
/// file) and the captured frame.
#[derive(Debug, Clone)]
pub struct Record {
    pub header: [u8; 16],
    pub frame: Vec<u8>,
}

/// A classic pcap file: its 24-byte header, whether it is little-endian,
/// its link type, and its records.
#[derive(Debug, Clone)]
pub struct Pcap {
    pub header: [u8; 24],
    pub little_endian: bool,
    pub linktype: u32,
    pub records: Vec<Record>,
}

impl Pcap {
    /// Parse a classic pcap (not pcapng). `Err` names what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Pcap, String> {
        let header: [u8; 24] = bytes.get(..24).ok_or("shorter than a pcap header")?.try_into().map_err(|_| "header")?;
        let little_endian = match header[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => return Err("not a classic pcap".into()),
        };
        let u32_at = |b: &[u8], at: usize| {
            let a: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
            if little_endian {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let linktype = u32_at(&header, 20);
        let mut records = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let h: [u8; 16] = bytes[at..at + 16].try_into().expect("16 bytes");
            let caplen = u32_at(&h, 8) as usize;
            let frame = bytes.get(at + 16..at + 16 + caplen).ok_or_else(|| format!("record at byte {at} is cut short"))?;
            records.push(Record { header: h, frame: frame.to_vec() });
            at += 16 + caplen;
        }
        Ok(Pcap { header, little_endian, linktype, records })
    }

    /// Read and parse a file.
    pub fn read(path: &Path) -> Result<Pcap, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Pcap::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The file's bytes, with these records.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for r in &self.records {
            out.extend_from_slice(&r.header);
            out.extend_from_slice(&r.frame);
        }
        out
    }
}

/// A little-endian microsecond classic pcap under construction. The bytes
/// are public so that a hostile-input test can append what no writer would.
#[derive(Debug, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// An empty capture of `linktype` (1: Ethernet) with snaplen 262144.
    pub fn new(linktype: u32) -> Self {
        let mut v = Vec::new();
        v.extend(0xa1b2_c3d4u32.to_le_bytes());
        v.extend(2u16.to_le_bytes());
        v.extend(4u16.to_le_bytes());
        v.extend([0u8; 8]);
        v.extend(262_144u32.to_le_bytes());
        v.extend(linktype.to_le_bytes());
        Writer(v)
    }

    /// Append a record captured whole at `sec.usec`.
    pub fn record(&mut self, sec: u32, usec: u32, frame: &[u8]) -> &mut Self {
        self.record_cut(sec, usec, frame, frame.len() as u32)
    }

    /// Append a record captured whole at `ts_us` microseconds.
    pub fn record_us(&mut self, ts_us: u64, frame: &[u8]) -> &mut Self {
        self.record((ts_us / 1_000_000) as u32, (ts_us % 1_000_000) as u32, frame)
    }

    /// Append a record whose original length was `orig_len` (a snaplen cut).
    pub fn record_cut(&mut self, sec: u32, usec: u32, frame: &[u8], orig_len: u32) -> &mut Self {
        for v in [sec, usec, frame.len() as u32, orig_len] {
            self.0.extend(v.to_le_bytes());
        }
        self.0.extend(frame);
        self
    }

    /// The capture's bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// One record of a classic pcap (microseconds, as the testbed writes them).
#[derive(Clone)]
pub struct Rec {
    pub ts_us: u64,
    pub frame: Vec<u8>,
}

/// The records of a testbed capture (read by [`Pcap`]),
/// which must be little-endian, microseconds, Ethernet.
pub fn read_pcap(path: &Path) -> Vec<Rec> {
    let p = Pcap::read(path).expect("read testbed capture");
    assert_eq!(&p.header[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond pcap");
    assert_eq!(p.linktype, 1, "Ethernet");
    let u = |h: &[u8; 16], i: usize| u64::from(u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")));
    p.records.into_iter().map(|r| Rec { ts_us: u(&r.header, 0) * 1_000_000 + u(&r.header, 4), frame: r.frame }).collect()
}

/// An Ethernet capture of these records ([`Writer`]).
pub fn write_pcap(recs: &[Rec]) -> Vec<u8> {
    let mut w = Writer::new(1);
    for r in recs {
        w.record_us(r.ts_us, &r.frame);
    }
    w.into_bytes()
}

/// An Ethernet/IPv4/TCP frame's fields.
pub struct Tcp {
    pub ip: usize,
    pub tcp: usize,
    pub data: usize,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
}

pub fn tcp(f: &[u8]) -> Option<Tcp> {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[14 + 9] != 6 {
        return None;
    }
    let ip = 14;
    let tcp = ip + usize::from(f[ip] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[ip + 2], f[ip + 3]]));
    let data = tcp + usize::from(f[tcp + 12] >> 4) * 4;
    let end = (ip + total).min(f.len());
    let be16 = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    (data <= end).then(|| Tcp {
        ip,
        tcp,
        data,
        sport: be16(tcp),
        dport: be16(tcp + 2),
        seq: u32::from_be_bytes(f[tcp + 4..tcp + 8].try_into().expect("4 bytes")),
        flags: f[tcp + 13],
    })
}

pub fn payload(f: &[u8]) -> &[u8] {
    let t = tcp(f).expect("tcp");
    let total = usize::from(u16::from_be_bytes([f[t.ip + 2], f[t.ip + 3]]));
    &f[t.data..(t.ip + total).min(f.len())]
}

pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in *c {
            match odd.take() {
                Some(h) => sum += u32::from(u16::from_be_bytes([h, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(h) = odd {
        sum += u32::from(h) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `f` with another client port (`from` is the client's port), sequence
/// number and payload; lengths and checksums fixed.
pub fn rewrite(f: &[u8], client_port: (u16, u16), seq: Option<u32>, data: Option<&[u8]>) -> Vec<u8> {
    let t = tcp(f).expect("tcp");
    let old = payload(f).to_vec();
    let data = data.unwrap_or(&old);
    let mut g = f[..t.data].to_vec();
    g.extend_from_slice(data);
    let (from, to) = client_port;
    if t.sport == from {
        g[t.tcp..t.tcp + 2].copy_from_slice(&to.to_be_bytes());
    }
    if t.dport == from {
        g[t.tcp + 2..t.tcp + 4].copy_from_slice(&to.to_be_bytes());
    }
    if let Some(s) = seq {
        g[t.tcp + 4..t.tcp + 8].copy_from_slice(&s.to_be_bytes());
    }
    let total = (g.len() - t.ip) as u16;
    g[t.ip + 2..t.ip + 4].copy_from_slice(&total.to_be_bytes());
    g[t.ip + 10..t.ip + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&[&g[t.ip..t.tcp]]);
    g[t.ip + 10..t.ip + 12].copy_from_slice(&c.to_be_bytes());
    g[t.tcp + 16..t.tcp + 18].copy_from_slice(&[0, 0]);
    let tcp_len = (g.len() - t.tcp) as u16;
    let pseudo: Vec<u8> = [&g[t.ip + 12..t.ip + 20], &[0, 6], &tcp_len.to_be_bytes()[..]].concat();
    let c = checksum(&[&pseudo, &g[t.tcp..]]);
    g[t.tcp + 16..t.tcp + 18].copy_from_slice(&c.to_be_bytes());
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the writer writes, the reader reads back, header fields as
    /// libpcap defines them (magic a1b2c3d4 little-endian, version 2.4).
    #[test]
    fn writer_and_reader_agree() {
        let mut w = Writer::new(1);
        w.record(7, 42, &[1, 2, 3]).record_cut(8, 0, &[4], 60);
        let p = Pcap::parse(w.bytes()).expect("parses");
        assert_eq!(&p.header[..8], &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
        assert!(p.little_endian);
        assert_eq!(p.linktype, 1);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].frame, [1, 2, 3]);
        assert_eq!(&p.records[1].header[12..], &60u32.to_le_bytes());
        assert_eq!(p.to_bytes(), w.into_bytes());
    }

    #[test]
    fn a_cut_record_is_an_error() {
        let mut w = Writer::new(1);
        w.record(1, 0, &[0; 10]);
        let b = w.into_bytes();
        assert!(Pcap::parse(&b[..b.len() - 1]).unwrap_err().contains("cut short"));
    }

    /// RFC 1071's example: words 0001 f203 f4f5 f6f7 sum to ddf2, so the
    /// checksum is its complement 220d.
    #[test]
    fn internet_checksum_of_rfc_1071_example() {
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]), 0x220d);
    }
}
