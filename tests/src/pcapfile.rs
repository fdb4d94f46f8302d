//! Classic pcap files for tests that build captures from the testbed ones:
//! read and write (little-endian, microseconds, Ethernet) and the IPv4/TCP
//! fields of a frame, with lengths and checksums fixed after a rewrite.

use std::path::Path;

/// One record of a classic pcap (microseconds, as the testbed writes them).
#[derive(Clone)]
pub struct Rec {
    pub ts_us: u64,
    pub frame: Vec<u8>,
}

/// The records of a testbed capture (read by [`crate::pcapio::Pcap`]),
/// which must be little-endian, microseconds, Ethernet.
pub fn read_pcap(path: &Path) -> Vec<Rec> {
    let p = crate::pcapio::Pcap::read(path).expect("read testbed capture");
    assert_eq!(&p.header[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond pcap");
    assert_eq!(p.linktype, 1, "Ethernet");
    let u = |h: &[u8; 16], i: usize| u64::from(u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")));
    p.records.into_iter().map(|r| Rec { ts_us: u(&r.header, 0) * 1_000_000 + u(&r.header, 4), frame: r.frame }).collect()
}

pub fn write_pcap(recs: &[Rec]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0xa1b2_c3d4u32.to_le_bytes());
    v.extend(2u16.to_le_bytes());
    v.extend(4u16.to_le_bytes());
    v.extend([0u8; 8]);
    v.extend(262_144u32.to_le_bytes());
    v.extend(1u32.to_le_bytes());
    for r in recs {
        v.extend(((r.ts_us / 1_000_000) as u32).to_le_bytes());
        v.extend(((r.ts_us % 1_000_000) as u32).to_le_bytes());
        v.extend((r.frame.len() as u32).to_le_bytes());
        v.extend((r.frame.len() as u32).to_le_bytes());
        v.extend(&r.frame);
    }
    v
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

