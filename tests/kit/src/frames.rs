//! Frames built from their fields, for unit tests of edge cases (real
//! traffic comes from the testbed captures). IP and TCP checksums are left
//! zero: the sensor does not check them, as a tap sees offloaded checksums.

use std::net::Ipv4Addr;

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// An Ethernet header (zero MACs) with `ethertype`, then `body`.
pub fn ethernet(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(ethertype.to_be_bytes());
    f.extend(body);
    f
}

/// An IPv4 header (no options, TTL 64, id 1, DF) of protocol `proto` from
/// `src` to `dst`, then `body`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, body: &[u8]) -> Vec<u8> {
    let total = 20 + body.len();
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0];
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(body);
    p
}

/// A TCP header (no options, window 65535, ack 0) then `payload`.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    t.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

/// A UDP header (checksum 0) then `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend((len as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// Ethernet/IPv4/TCP.
pub fn tcp_v4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(0x0800, &ipv4(src, dst, 6, &tcp(sport, dport, seq, flags, payload)))
}

/// Ethernet/IPv4/UDP.
pub fn udp_v4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(0x0800, &ipv4(src, dst, 17, &udp(sport, dport, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field offsets as RFC 791 / RFC 9293 place them.
    #[test]
    fn fields_where_the_rfcs_put_them() {
        let f = tcp_v4(Ipv4Addr::new(10, 0, 0, 1), 1234, Ipv4Addr::new(10, 0, 0, 2), 443, 7, SYN | ACK, b"hi");
        assert_eq!(f.len(), 14 + 20 + 20 + 2);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 42, "IPv4 total length");
        assert_eq!(f[23], 6, "protocol");
        assert_eq!(&f[26..30], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 1234);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 443);
        assert_eq!(u32::from_be_bytes([f[38], f[39], f[40], f[41]]), 7);
        assert_eq!(f[47], 0x12, "SYN|ACK");
        assert_eq!(&f[54..], b"hi");
        let u = udp_v4(Ipv4Addr::new(10, 0, 0, 1), 5353, Ipv4Addr::new(10, 0, 0, 2), 443, &[0; 4]);
        assert_eq!(u[23], 17);
        assert_eq!(u16::from_be_bytes([u[38], u[39]]), 12, "UDP length");
    }
}
