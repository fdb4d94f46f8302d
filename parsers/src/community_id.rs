//! Community ID v1 flow hashes.
//!
//! Heads up! Before working on this file read the spec,
//! <https://github.com/corelight/community-id-spec> (`README.md` and the
//! reference implementation `community-id.py`).
//!
//! `"1:" + base64(SHA-1(seed ‖ addr_a ‖ addr_b ‖ proto ‖ 0 ‖ port_a ‖ port_b))`,
//! all integers in network byte order: seed is 2 bytes, addresses 4 or 16
//! bytes, proto 1 byte, one zero padding byte, ports 2 bytes each. The
//! endpoints are ordered so that both directions of a flow hash the same:
//! `a` is the endpoint with the smaller address (compared as network-order
//! bytes), or on equal addresses the smaller port.
//!
//! Ports are hashed only for TCP (6), UDP (17), SCTP (132), ICMP (1) and
//! ICMPv6 (58); for every other protocol they are left out of the hash, as
//! the spec says. For ICMP/ICMPv6 the "ports" are the type/code-derived
//! port equivalents: [`community_id_v1`] takes them as given and orders them
//! like ports, while [`community_id_v1_icmp`] derives them from the ICMP
//! type and code the way the reference implementation does (including the
//! one-way messages that are never reordered).
//!
//! Pure and panic-free for any input (an IPv4/IPv6 mix is hashed as given).

use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// IANA protocol numbers that carry ports in the hash.
const PORT_PROTOS: [u8; 5] = [1, 6, 17, 58, 132];

fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

fn hash(seed: u16, (a, alen): ([u8; 16], usize), (b, blen): ([u8; 16], usize), proto: u8, ports: Option<(u16, u16)>) -> String {
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(&a[..alen]);
    h.update(&b[..blen]);
    h.update([proto, 0]);
    if let Some((pa, pb)) = ports {
        h.update(pa.to_be_bytes());
        h.update(pb.to_be_bytes());
    }
    format!("1:{}", base64::engine::general_purpose::STANDARD.encode(h.finalize()))
}

fn compute(seed: u16, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16, one_way: bool) -> String {
    let (s, d) = (octets(src), octets(dst));
    let with_ports = PORT_PROTOS.contains(&proto);
    let (sp, dp) = if with_ports { (sport, dport) } else { (0, 0) };
    // `is_lt` of the reference implementation: smaller address, then port.
    let src_first = one_way || (&s.0[..s.1], sp) <= (&d.0[..d.1], dp);
    let (a, pa, b, pb) = if src_first { (s, sp, d, dp) } else { (d, dp, s, sp) };
    hash(seed, a, b, proto, with_ports.then_some((pa, pb)))
}

/// Community ID v1 of a flow: `"1:"` + base64 of the SHA-1.
///
/// `proto` is the IANA protocol number. Ports are ignored for protocols
/// other than TCP, UDP, SCTP, ICMP and ICMPv6; for ICMP/ICMPv6 pass the port
/// equivalents (or use [`community_id_v1_icmp`]).
pub fn community_id_v1(seed: u16, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
    compute(seed, src, dst, proto, sport, dport, false)
}

/// Community ID v1 of an ICMP (`src`/`dst` IPv4) or ICMPv6 (IPv6) packet
/// from its type and code, mapping request/reply pairs to port equivalents
/// like the spec's reference implementation (`ICMPHelper` in
/// `community-id.py`, after Zeek's `ICMP4_counterpart`).
pub fn community_id_v1_icmp(seed: u16, src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8) -> String {
    let v6 = src.is_ipv6();
    let (sp, dp, one_way) = icmp_port_equivalents(v6, icmp_type, icmp_code);
    compute(seed, src, dst, if v6 { 58 } else { 1 }, sp, dp, one_way)
}

/// Port equivalents `(sport, dport, one_way)` of an ICMP(v6) message: a
/// message with a counterpart gets `(type, counterpart_type, false)`, any
/// other `(type, code, true)`.
pub fn icmp_port_equivalents(v6: bool, icmp_type: u8, icmp_code: u8) -> (u16, u16, bool) {
    let counterpart = if v6 {
        match icmp_type {
            128 => Some(129), // echo request -> reply
            129 => Some(128),
            133 => Some(134), // router solicitation -> advertisement
            134 => Some(133),
            135 => Some(136), // neighbor solicitation -> advertisement
            136 => Some(135),
            130 => Some(131), // MLD query -> report
            131 => Some(130),
            139 => Some(140), // node information query -> response ("who are you")
            140 => Some(139),
            144 => Some(145), // home agent address discovery request -> reply
            145 => Some(144),
            _ => None,
        }
    } else {
        match icmp_type {
            8 => Some(0), // echo -> echo reply
            0 => Some(8),
            13 => Some(14), // timestamp
            14 => Some(13),
            15 => Some(16), // information
            16 => Some(15),
            10 => Some(9),  // router solicitation -> advertisement
            17 => Some(18), // address mask
            18 => Some(17),
            _ => None,
        }
    };
    match counterpart {
        Some(c) => (u16::from(icmp_type), c, false),
        None => (u16::from(icmp_type), u16::from(icmp_code), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// corelight/community-id-spec `baseline/baseline_deflt.json` (seed 0)
    /// and `baseline/baseline_seed1.json` (seed 1) @ c4ec2bc: proto, saddr,
    /// daddr, sport, dport (Zeek port equivalents for ICMP; none for RSVP),
    /// id with seed 0, id with seed 1.
    const BASELINE: &[(u8, &str, &str, u16, u16, &str, &str)] = &[
        (
            58,
            "fe80::200:86ff:fe05:80da",
            "fe80::260:97ff:fe07:69ea",
            135,
            136,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            58,
            "fe80::260:97ff:fe07:69ea",
            "fe80::200:86ff:fe05:80da",
            136,
            135,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            58,
            "fe80::260:97ff:fe07:69ea",
            "fe80::200:86ff:fe05:80da",
            135,
            136,
            "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        ),
        (
            58,
            "fe80::200:86ff:fe05:80da",
            "fe80::260:97ff:fe07:69ea",
            136,
            135,
            "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        ),
        (
            58,
            "3ffe:501:1800:2345::2",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            3,
            0,
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            "1:lVEtCZpYu84Xqaa++3lXFyuu2n4=",
        ),
        (
            58,
            "3ffe:501:410:0:2c0:dfff:fe47:33e",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            1,
            4,
            "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8=",
        ),
        (
            58,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            "3ffe:501:0:1001::2",
            128,
            129,
            "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        ),
        (
            58,
            "3ffe:501:0:1001::2",
            "3ffe:507:0:1:200:86ff:fe05:80da",
            129,
            128,
            "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        ),
        (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
        (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
        (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
        (
            6,
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            "2607:f8b0:400c:c03::1a",
            63943,
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
        (
            6,
            "2607:f8b0:400c:c03::1a",
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            25,
            63943,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
        (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
        (46, "10.1.12.2", "10.1.12.1", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    ];

    #[test]
    fn spec_baseline_vectors() {
        for &(proto, s, d, sp, dp, id0, id1) in BASELINE {
            assert_eq!(community_id_v1(0, ip(s), ip(d), proto, sp, dp), id0, "{proto} {s} {d} {sp} {dp}");
            assert_eq!(community_id_v1(1, ip(s), ip(d), proto, sp, dp), id1, "seed 1: {proto} {s} {d}");
        }
    }

    #[test]
    fn ports_ignored_for_portless_protocols() {
        // RSVP row of the baseline: the ports given do not matter.
        let a = community_id_v1(0, ip("10.1.12.1"), ip("10.1.12.2"), 46, 1234, 80);
        assert_eq!(a, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=");
    }

    #[test]
    fn icmp_from_type_and_code() {
        // Same baseline rows, now from the raw ICMP type/code of each packet.
        // Echo request (8/0) and its reply (0/0): one flow.
        assert_eq!(community_id_v1_icmp(0, ip("192.168.0.89"), ip("192.168.0.1"), 8, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        assert_eq!(community_id_v1_icmp(0, ip("192.168.0.1"), ip("192.168.0.89"), 0, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        // Time exceeded (11/0): one-way, port equivalents are type/code.
        assert_eq!(community_id_v1_icmp(0, ip("10.0.0.1"), ip("10.0.0.2"), 11, 0), "1:YHxtAirCG//0OzkcVAukqKQN9xM=");
        // ICMPv6 neighbor solicitation (135) / advertisement (136).
        assert_eq!(
            community_id_v1_icmp(0, ip("fe80::200:86ff:fe05:80da"), ip("fe80::260:97ff:fe07:69ea"), 135, 0),
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="
        );
        assert_eq!(
            community_id_v1_icmp(1, ip("fe80::260:97ff:fe07:69ea"), ip("fe80::200:86ff:fe05:80da"), 136, 0),
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="
        );
        // ICMPv6 time exceeded (3/0) and destination unreachable (1/4).
        assert_eq!(
            community_id_v1_icmp(0, ip("3ffe:501:1800:2345::2"), ip("3ffe:507:0:1:200:86ff:fe05:80da"), 3, 0),
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="
        );
        assert_eq!(
            community_id_v1_icmp(0, ip("3ffe:501:410:0:2c0:dfff:fe47:33e"), ip("3ffe:507:0:1:200:86ff:fe05:80da"), 1, 4),
            "1:hLZd0XGWojozrvxqE0dWB1iM6R0="
        );
        // A one-way message is never reordered, even from the larger address.
        let fwd = community_id_v1_icmp(0, ip("10.0.0.2"), ip("10.0.0.1"), 3, 1);
        let rev = community_id_v1_icmp(0, ip("10.0.0.1"), ip("10.0.0.2"), 3, 1);
        assert_ne!(fwd, rev);
    }

    fn any_ip() -> impl proptest::strategy::Strategy<Value = IpAddr> {
        use proptest::prelude::*;
        prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from),]
    }

    proptest::proptest! {
        #[test]
        fn direction_independent_and_well_formed(
            seed in proptest::num::u16::ANY, a in any_ip(), b in any_ip(),
            proto in proptest::num::u8::ANY, pa in proptest::num::u16::ANY, pb in proptest::num::u16::ANY,
        ) {
            let x = community_id_v1(seed, a, b, proto, pa, pb);
            let y = community_id_v1(seed, b, a, proto, pb, pa);
            proptest::prop_assert_eq!(&x, &y);
            proptest::prop_assert!(x.starts_with("1:"));
            // base64 of 20 bytes is 28 characters with one '=' of padding.
            proptest::prop_assert_eq!(x.len(), 30);
            let raw = base64::engine::general_purpose::STANDARD.decode(&x[2..]);
            proptest::prop_assert_eq!(raw.map(|r| r.len()).ok(), Some(20));
        }

        #[test]
        fn icmp_never_panics(seed in proptest::num::u16::ANY, a in any_ip(), b in any_ip(),
                             t in proptest::num::u8::ANY, c in proptest::num::u8::ANY) {
            let x = community_id_v1_icmp(seed, a, b, t, c);
            proptest::prop_assert_eq!(x.len(), 30);
        }
    }
}
