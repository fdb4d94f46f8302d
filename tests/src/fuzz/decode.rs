//! Target `decode`: link, network and tunnel decoding of one frame.
//!
//! A case is `[link type: u32][oracle: u32 length + Ethernet frame][frame]`.
//! Mutations wrap a seed frame the way real networks do — 802.1Q and
//! 802.1ad tags (QinQ), VXLAN, GRE (transparent Ethernet bridging and plain
//! IPv4), IP-in-IP, or re-frame it for another link type (raw IP, Linux
//! SLL and SLL2, BSD loopback) — and keep the original Ethernet frame as the
//! oracle; or they change bytes anywhere (no oracle).
//!
//! Checks: never allocates (the module's contract), the payload is a
//! sub-slice of the frame, and with an oracle at most three tunnels deep
//! the addresses, ports, protocol and payload are those of the oracle frame.

use pinwatch_parsers::decode::{decode, linktype};

use super::alloc::measure;
use super::{havoc, put_blob, Reader, Rng, Target};

pub struct Decode;

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

/// An IPv4 header (no options, checksum computed) around `payload`.
fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
    h[2..4].copy_from_slice(&be16(total));
    let mut sum: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&be16(!(sum as u16)));
    h.extend(payload);
    h
}

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend(be16(ethertype));
    f.extend(payload);
    f
}

/// Ethertype and payload of an untagged Ethernet frame.
fn split_ether(f: &[u8]) -> Option<(u16, &[u8])> {
    Some((u16::from_be_bytes([*f.get(12)?, *f.get(13)?]), f.get(14..)?))
}

/// VLAN tags at the start of an Ethernet frame's payload (802.1Q, 802.1ad, 9100).
fn tags(f: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 12;
    while let Some(et) = f.get(at..at + 2) {
        if !matches!(u16::from_be_bytes([et[0], et[1]]), 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        n += 1;
        at += 4;
    }
    n
}

/// The case's parts: (link type, oracle frame, frame).
pub fn parse_case(case: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let mut r = Reader(case);
    let lt = r.u32()?;
    let oracle = r.blob()?;
    Some((lt, oracle, r.0))
}

pub fn make_case(lt: u32, oracle: &[u8], frame: &[u8]) -> Vec<u8> {
    let mut v = lt.to_le_bytes().to_vec();
    put_blob(&mut v, oracle);
    v.extend(frame);
    v
}

impl Target for Decode {
    fn name(&self) -> &'static str {
        "decode"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        super::seeds::material().frames.iter().map(|(lt, f)| make_case(*lt, if *lt == linktype::ETHERNET { f } else { &[] }, f)).collect()
    }
    fn mutate(&self, seed: &[u8], _all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let Some((lt, _, frame)) = parse_case(seed) else {
            return seed.to_vec();
        };
        let (mut lt, mut f) = (lt, frame.to_vec());
        if lt != linktype::ETHERNET || rng.chance(4) {
            havoc(&mut f, rng);
            if rng.chance(8) {
                lt = [0, 1, 9, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276, 147][rng.below(14)];
            }
            return make_case(lt, &[], &f);
        }
        let oracle = f.clone();
        let mut tunnels = 0;
        for _ in 0..1 + rng.below(3) {
            let Some((et, pl)) = split_ether(&f) else {
                break;
            };
            let pl = pl.to_vec();
            f = wrap(f, et, pl, &mut tunnels, rng);
        }
        if tunnels == 0 && rng.chance(2) {
            relink(&mut lt, &mut f, rng);
        }
        // The oracle's own tunnels count towards MAX_TUNNEL_DEPTH too.
        let inner = decode(linktype::ETHERNET, &oracle).map(|d| d.tunnel.is_some()).unwrap_or(true);
        make_case(lt, if tunnels <= 3 && (!inner || tunnels <= 1) { &oracle } else { &[] }, &f)
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let Some((lt, oracle, frame)) = parse_case(case) else {
            return Ok(());
        };
        let (d, peak) = measure(|| decode(lt, frame));
        if peak > 0 {
            return Err(format!("decode allocated {peak} bytes"));
        }
        if let Ok(d) = &d {
            let (s, p) = (frame.as_ptr() as usize, d.payload.as_ptr() as usize);
            if !d.payload.is_empty() && (p < s || p + d.payload.len() > s + frame.len()) {
                return Err("payload is not inside the frame".into());
            }
        }
        if oracle.is_empty() {
            return Ok(());
        }
        // The oracle frame decodes on its own; the wrapped one must say the same.
        let Ok(want) = decode(linktype::ETHERNET, oracle) else {
            return Ok(());
        };
        let got = d.map_err(|e| format!("oracle frame decodes, wrapped one does not: {}", e.reason()))?;
        let a = (want.src, want.dst, want.sport, want.dport, want.proto, want.payload, want.tcp);
        let b = (got.src, got.dst, got.sport, got.dport, got.proto, got.payload, got.tcp);
        if a != b {
            return Err(format!(
                "wrapped frame decodes differently: {:?} vs {:?}",
                (b.0, b.1, b.2, b.3, b.4, b.5.len()),
                (a.0, a.1, a.2, a.3, a.4, a.5.len())
            ));
        }
        Ok(())
    }
}

/// Wrap an Ethernet frame `f` (EtherType `et`, payload `pl`) once, at
/// random: in a VLAN tag, a QinQ pair, VXLAN, GRE (Ethernet or IPv4), or
/// IP-in-IP; or leave it. Counts the tunnels added in `tunnels`.
fn wrap(f: Vec<u8>, et: u16, pl: Vec<u8>, tunnels: &mut i32, rng: &mut Rng) -> Vec<u8> {
    // Three tags in one Ethernet header at most (as Suricata): past
    // that the frame is not decoded, so do not go there.
    let room = 3usize.saturating_sub(tags(&f));
    match rng.below(7) {
        0 if room >= 1 => {
            let mut t = be16(0x2000 | (rng.below(4095) as u16 + 1)).to_vec();
            t.extend(be16(et));
            t.extend(&pl);
            ether(0x8100, &t)
        }
        1 if room >= 2 => {
            let mut t = be16(rng.below(4095) as u16 + 1).to_vec();
            t.extend(be16(0x8100));
            t.extend(be16(rng.below(4095) as u16 + 1));
            t.extend(be16(et));
            t.extend(&pl);
            ether(0x88a8, &t)
        }
        2 => {
            *tunnels += 1;
            let mut udp = be16(40000 + rng.below(1000) as u16).to_vec();
            udp.extend(be16(4789));
            udp.extend(be16((8 + 8 + f.len()) as u16));
            udp.extend([0, 0]);
            udp.extend([0x08, 0, 0, 0, 0, 0, rng.below(256) as u8, 0]);
            udp.extend(&f);
            ether(0x0800, &ipv4(17, &udp))
        }
        3 => {
            *tunnels += 1;
            let mut gre = vec![0, 0];
            gre.extend(be16(0x6558));
            gre.extend(&f);
            ether(0x0800, &ipv4(47, &gre))
        }
        4 if et == 0x0800 => {
            *tunnels += 1;
            let mut gre = vec![0x20, 0];
            gre.extend(be16(0x0800));
            gre.extend((rng.next() as u32).to_be_bytes());
            gre.extend(&pl);
            ether(0x0800, &ipv4(47, &gre))
        }
        5 if et == 0x0800 => {
            *tunnels += 1;
            ether(0x0800, &ipv4(4, &pl))
        }
        _ => f,
    }
}

/// Move a frame off Ethernet, at random: raw IP, Linux SLL or SLL2, or BSD
/// loopback (NULL); or leave it.
fn relink(lt: &mut u32, f: &mut Vec<u8>, rng: &mut Rng) {
    if let Some((et, pl)) = split_ether(f) {
        let ip = et == 0x0800 || et == 0x86dd;
        match rng.below(4) {
            0 if ip => {
                *lt = linktype::RAW;
                *f = pl.to_vec();
            }
            1 => {
                *lt = linktype::LINUX_SLL;
                let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
                h.extend(be16(et));
                h.extend(pl);
                *f = h;
            }
            2 => {
                *lt = linktype::LINUX_SLL2;
                let mut h = be16(et).to_vec();
                h.extend([0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
                h.extend(pl);
                *f = h;
            }
            _ if et == 0x0800 => {
                *lt = linktype::NULL;
                let mut h = 2u32.to_le_bytes().to_vec();
                h.extend(pl);
                *f = h;
            }
            _ => {}
        }
    }
}
