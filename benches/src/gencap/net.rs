//! Ethernet/IPv4/TCP header writing and checksums.

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const ETH_LEN: usize = 14;
pub const IP_LEN: usize = 20;

/// One's-complement sum of `data` (big-endian 16-bit words), unfolded.
pub fn sum_be(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    acc
}

pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn be16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

pub fn be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

pub fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

pub fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Recompute the IPv4 header checksum (header at `ip`, length from IHL) and
/// the TCP checksum (segment from `tcp` to the end of the IP datagram).
pub fn fix_checksums(frame: &mut [u8], ip: usize, tcp: usize) {
    let ihl = ((frame[ip] & 0x0f) as usize) * 4;
    let total = rd16(frame, ip + 2) as usize;
    be16(frame, ip + 10, 0);
    let c = fold(sum_be(0, &frame[ip..ip + ihl]));
    be16(frame, ip + 10, c);
    let seg_len = total - (tcp - ip);
    be16(frame, tcp + 16, 0);
    let mut acc = sum_be(0, &frame[ip + 12..ip + 20]); // src + dst
    acc += 6 + seg_len as u64;
    acc = sum_be(acc, &frame[tcp..tcp + seg_len]);
    let c = fold(acc);
    be16(frame, tcp + 16, c);
}

/// Fields of a synthesized TCP segment.
pub struct Seg<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub ip_id: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// (TSval, TSecr) when the connection negotiated timestamps.
    pub ts: Option<(u32, u32)>,
    pub payload: &'a [u8],
}

/// Append an Ethernet/IPv4/TCP frame to `out` (cleared first), checksums included.
pub fn build(out: &mut Vec<u8>, s: &Seg) {
    out.clear();
    let tcp_hlen = if s.ts.is_some() { 32 } else { 20 };
    let ip_total = IP_LEN + tcp_hlen + s.payload.len();
    out.extend_from_slice(&s.dst_mac);
    out.extend_from_slice(&s.src_mac);
    out.extend_from_slice(&[0x08, 0x00]);
    // IPv4, DF
    out.extend_from_slice(&[0x45, 0x00]);
    out.extend_from_slice(&(ip_total as u16).to_be_bytes());
    out.extend_from_slice(&s.ip_id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0x00, s.ttl, 6, 0, 0]);
    out.extend_from_slice(&s.src);
    out.extend_from_slice(&s.dst);
    // TCP
    out.extend_from_slice(&s.sport.to_be_bytes());
    out.extend_from_slice(&s.dport.to_be_bytes());
    out.extend_from_slice(&s.seq.to_be_bytes());
    out.extend_from_slice(&s.ack.to_be_bytes());
    out.push(((tcp_hlen / 4) as u8) << 4);
    out.push(s.flags);
    out.extend_from_slice(&s.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    if let Some((tsval, tsecr)) = s.ts {
        out.extend_from_slice(&[1, 1, 8, 10]);
        out.extend_from_slice(&tsval.to_be_bytes());
        out.extend_from_slice(&tsecr.to_be_bytes());
    }
    out.extend_from_slice(s.payload);
    fix_checksums(out, ETH_LEN, ETH_LEN + IP_LEN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let mut f = Vec::new();
        build(
            &mut f,
            &Seg {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                src: [10, 0, 0, 1],
                dst: [192, 0, 2, 7],
                sport: 40000,
                dport: 443,
                ttl: 64,
                ip_id: 9,
                seq: 1,
                ack: 2,
                flags: ACK | PSH,
                window: 500,
                ts: Some((5, 6)),
                payload: b"hello, odd length",
            },
        );
        // A correct checksum sums (with itself) to 0xffff, i.e. folds to 0.
        assert_eq!(fold(sum_be(0, &f[14..34])), 0);
        let seg_len = f.len() - 34;
        let mut acc = sum_be(0, &f[26..34]) + 6 + seg_len as u64;
        acc = sum_be(acc, &f[34..]);
        assert_eq!(fold(acc), 0);
    }
}
