//! TLS inside OpenVPN's TCP control channel: reassembled bytes of one
//! direction in, the TLS record stream that the control packets carry out.
//!
//! Heads up! Before working on this file read OpenVPN's `doc/protocol.txt`
//! ("Protocol overview", packet layout) and Wireshark's
//! `epan/dissectors/packet-openvpn.c` (how a sensor without the keys tells a
//! `tls-auth` HMAC is there).
//!
//! ## Layout
//! Over TCP every OpenVPN packet is prefixed with its 16-bit big-endian
//! length. The packet starts with one byte: opcode (high 5 bits) and key id
//! (low 3). Control packets (`P_CONTROL_*`, `P_ACK_V1`) go on with the
//! sender's 8-byte session id, then, with `--tls-auth`, an HMAC (16, 20, 32,
//! 48 or 64 bytes: the digest is configured, not announced), a 4-byte
//! replay packet id and a 4-byte time, then an ack array (1-byte count, at
//! most 8 four-byte packet ids, and the peer's 8-byte session id when the
//! count is not 0); `P_CONTROL_V1` then has its own 4-byte message packet id
//! and a piece of the TLS stream. Data packets (`P_DATA_*`) and
//! `--tls-crypt` control packets are encrypted and give nothing.
//!
//! ## What is done here
//! - The first bytes of the client's stream decide that a TCP stream is
//!   OpenVPN ([`looks_like_client_reset`]): a length, then a
//!   `P_CONTROL_HARD_RESET_CLIENT_V2/V3` opcode with key id 0.
//! - Whether an HMAC is there, and its length, is found per direction from
//!   its v2 hard reset, which has no payload: the one candidate length
//!   under which its fields end exactly at its end. Failing that (a reset
//!   not captured, a v3 reset), from the first `P_CONTROL_V1` whose payload
//!   starts like a TLS handshake record (`16 03 0x`) under a candidate
//!   length (no HMAC first: with an ack array, two readings can land on the
//!   same payload, which is why the reset is asked first). Before that, no
//!   payload is passed on.
//! - Message packet ids put the pieces in order: a piece whose id was
//!   already passed on (a retransmission) is dropped.
//! - Packets are buffered only up to [`MAX_CONTROL_PACKET`] bytes (control
//!   packets are bounded by `--tls-mtu`, 1250 by default); longer packets
//!   (data) are skipped by their length without being held. A length that
//!   cannot be OpenVPN stops the direction.
//!
//! Pure, no I/O, never panics.

use crate::tls::Dir;

/// Longest packet buffered; a longer one is skipped unread.
pub const MAX_CONTROL_PACKET: usize = 2048;

/// Opcodes (OpenVPN `ssl_pkt.h`).
pub mod op {
    /// Client hard reset, key method 1 (obsolete).
    pub const P_CONTROL_HARD_RESET_CLIENT_V1: u8 = 1;
    /// Control channel packet carrying TLS bytes.
    pub const P_CONTROL_V1: u8 = 4;
    /// Acknowledgement only, no payload.
    pub const P_ACK_V1: u8 = 5;
    /// Client hard reset, key method 2: the first packet of a client's stream.
    pub const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
    /// Server hard reset, key method 2: the server's answer.
    pub const P_CONTROL_HARD_RESET_SERVER_V2: u8 = 8;
    /// Client hard reset with a tls-crypt-v2 client key (OpenVPN 2.5+).
    pub const P_CONTROL_HARD_RESET_CLIENT_V3: u8 = 10;
}

/// tls-auth HMAC lengths tried, no HMAC first: MD5, SHA-1 (the default),
/// SHA-256, SHA-384, SHA-512.
const HMAC_LENGTHS: [usize; 6] = [0, 20, 32, 16, 48, 64];

/// Most acknowledgements one packet carries (OpenVPN `RELIABLE_ACK_SIZE`).
const MAX_ACKS: usize = 8;

/// Does the client's stream start like OpenVPN over TCP: a plausible packet
/// length and a client hard-reset opcode with key id 0?
pub fn looks_like_client_reset(b: &[u8]) -> bool {
    if b.len() < 3 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let (opcode, key_id) = (b[2] >> 3, b[2] & 7);
    (14..=MAX_CONTROL_PACKET).contains(&len)
        && key_id == 0
        && matches!(opcode, op::P_CONTROL_HARD_RESET_CLIENT_V2 | op::P_CONTROL_HARD_RESET_CLIENT_V3)
}

#[derive(Debug, Clone, Default)]
struct Side {
    /// Length prefix bytes read so far.
    len_buf: [u8; 2],
    len_have: u8,
    /// Bytes of the current packet still to come.
    left: usize,
    /// The current packet is being skipped, not buffered.
    skipping: bool,
    packet: Vec<u8>,
    /// The HMAC length once found.
    hmac: Option<u8>,
    /// Next message packet id expected.
    next_pid: u32,
    dead: bool,
}

/// Unwrapper for both directions of one OpenVPN-over-TCP connection.
#[derive(Debug, Clone, Default)]
pub struct OpenVpnTcp {
    sides: [Side; 2],
    /// Control packets whose TLS payload was passed on, per direction.
    pub control_packets: [u32; 2],
}

impl OpenVpnTcp {
    /// An unwrapper with both directions waiting for their first packet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a direction was given up on (not OpenVPN, or a hole in it).
    pub fn is_dead(&self, dir: Dir) -> bool {
        self.sides[dir.idx()].dead
    }

    /// Give up on a direction (e.g. after a TCP hole: the framing is lost).
    pub fn kill(&mut self, dir: Dir) {
        let s = &mut self.sides[dir.idx()];
        s.dead = true;
        s.packet = Vec::new();
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.packet.capacity()).sum()
    }

    /// Feed the next in-order bytes of one direction; the TLS bytes found
    /// are appended to `tls`.
    pub fn feed(&mut self, dir: Dir, mut data: &[u8], tls: &mut Vec<u8>) {
        let s = &mut self.sides[dir.idx()];
        while !data.is_empty() && !s.dead {
            if s.left == 0 {
                // Length prefix.
                s.len_buf[usize::from(s.len_have)] = data[0];
                s.len_have += 1;
                data = &data[1..];
                if s.len_have < 2 {
                    continue;
                }
                s.len_have = 0;
                let len = usize::from(u16::from_be_bytes(s.len_buf));
                if len == 0 {
                    s.dead = true;
                    break;
                }
                s.left = len;
                s.skipping = len > MAX_CONTROL_PACKET;
                s.packet.clear();
                if !s.skipping {
                    s.packet.reserve_exact(len);
                }
                continue;
            }
            let take = s.left.min(data.len());
            if !s.skipping {
                s.packet.extend_from_slice(&data[..take]);
            }
            s.left -= take;
            data = &data[take..];
            if s.left == 0 && !s.skipping {
                let packet = std::mem::take(&mut s.packet);
                if s.hmac.is_none() {
                    // A hard reset carries no payload: the one HMAC length
                    // under which its fields end exactly at its end is it.
                    if let Some((h, pid)) = reset_hmac(&packet) {
                        s.hmac = Some(h as u8);
                        s.next_pid = pid.saturating_add(1);
                    }
                }
                if let Some((hmac, pid, payload)) = control_payload(&packet, s.hmac) {
                    if s.hmac.is_none() {
                        s.hmac = Some(hmac as u8);
                        s.next_pid = pid;
                    }
                    if pid >= s.next_pid {
                        tls.extend_from_slice(payload);
                        s.next_pid = pid.saturating_add(1);
                        self.control_packets[dir.idx()] = self.control_packets[dir.idx()].saturating_add(1);
                    }
                }
                s.packet = packet;
                s.packet.clear();
            }
        }
        if s.packet.is_empty() {
            s.packet = Vec::new();
        }
    }
}

/// Past the session id, optional HMAC block and ack array: the message
/// packet id and what follows it, for an HMAC of `h` bytes (0: none).
fn after_header(p: &[u8], h: usize) -> Option<(u32, &[u8])> {
    let mut at = 1 + 8;
    if h > 0 {
        at += h + 8;
    }
    let acks = usize::from(*p.get(at)?);
    if acks > MAX_ACKS {
        return None;
    }
    at += 1 + 4 * acks + if acks > 0 { 8 } else { 0 };
    let pid = p.get(at..at + 4)?;
    Some((u32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]), p.get(at + 4..)?))
}

/// The HMAC length and message packet id of a v2 hard reset (client or
/// server) whose fields end exactly at the packet's end under exactly one
/// candidate length.
fn reset_hmac(p: &[u8]) -> Option<(usize, u32)> {
    let opcode = p.first()? >> 3;
    if !matches!(opcode, op::P_CONTROL_HARD_RESET_CLIENT_V2 | op::P_CONTROL_HARD_RESET_SERVER_V2) {
        return None;
    }
    let mut fits = HMAC_LENGTHS.iter().filter_map(|&h| after_header(p, h).filter(|(_, rest)| rest.is_empty()).map(|(pid, _)| (h, pid)));
    let first = fits.next()?;
    fits.next().is_none().then_some(first)
}

/// The HMAC length, message packet id and TLS payload of a `P_CONTROL_V1`
/// packet. With `hmac` unknown, the first candidate length under which the
/// payload starts a TLS handshake record is taken.
fn control_payload(p: &[u8], hmac: Option<u8>) -> Option<(usize, u32, &[u8])> {
    if p.first().map(|b| b >> 3) != Some(op::P_CONTROL_V1) {
        return None;
    }
    let one = |h: usize| after_header(p, h).map(|(pid, payload)| (h, pid, payload));
    match hmac {
        Some(h) => one(usize::from(h)),
        None => HMAC_LENGTHS
            .iter()
            .filter_map(|&h| one(h))
            .find(|(_, _, payload)| payload.len() >= 3 && payload[0] == 0x16 && payload[1] == 3 && payload[2] <= 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The first packets of ndpi openvpn_nohmac_tcp.pcapng, stream 0 (no
    /// tls-auth), as tshark shows their TCP payloads: the client's hard
    /// reset, its ACK, then the P_CONTROL_V1 that starts the ClientHello.
    #[test]
    fn no_hmac_stream() {
        let reset = hex("000e38507a28a78275788d0000000000");
        assert!(looks_like_client_reset(&reset));
        let ack = hex("001628507a28a78275788d01000000009ad747beb24d8a1b");
        // len 0x0072: opcode 0x20, session id, 0 acks, message pid 1, then TLS.
        let mut ctl = hex("007220507a28a78275788d0000000001");
        ctl.extend(hex("16030100dd"));
        ctl.extend(vec![0xab; 0x72 - 14 - 5]);
        let mut o = OpenVpnTcp::new();
        let mut tls = Vec::new();
        let all = [reset, ack, ctl.clone()].concat();
        // Whole, and a byte at a time: the same TLS bytes.
        o.feed(Dir::Client, &all, &mut tls);
        assert_eq!(&tls[..5], &hex("16030100dd")[..]);
        assert_eq!(tls.len(), 0x72 - 14);
        let mut o2 = OpenVpnTcp::new();
        let mut tls2 = Vec::new();
        for b in &all {
            o2.feed(Dir::Client, std::slice::from_ref(b), &mut tls2);
        }
        assert_eq!(tls, tls2);
        // A retransmission of the same message packet id adds nothing.
        o.feed(Dir::Client, &ctl, &mut tls);
        assert_eq!(tls.len(), 0x72 - 14);
        assert_eq!(o.control_packets[0], 1);
    }

    /// mercury openvpn_tcp_multi.pcap, frame 10: tls-auth with a 20-byte
    /// HMAC, replay id 3, time 0x50ff20fd, no acks, message pid 1.
    #[test]
    fn sha1_hmac_found_from_the_tls_record() {
        let mut ctl = hex("008e2028e1328a7185e6ca8f544d9ebda4a3d8b00e73c15a8d3704ca342f9b0000000350ff20fd0000000001");
        ctl.extend(hex("16030100dd010000d9"));
        ctl.resize(2 + 0x8e, 0xcd);
        let mut o = OpenVpnTcp::new();
        let mut tls = Vec::new();
        o.feed(Dir::Client, &ctl, &mut tls);
        assert_eq!(&tls[..9], &hex("16030100dd010000d9")[..]);
        assert_eq!(tls.len(), 0x8e - 42);
    }

    /// mercury openvpn_tcp_multi.pcap, server side of stream 0: its hard
    /// reset (frame 6) fixes the 20-byte HMAC; its first P_CONTROL_V1
    /// (frame 16) carries one ack, and read without an HMAC the same bytes
    /// would give an 8-entry ack array ending at the same place, so only
    /// the reset tells the two readings apart.
    #[test]
    fn the_hard_reset_decides_the_hmac() {
        let reset = hex("003640593c3c23232bb90a81031ac1c7fa0bc64c2e29e4a732947a6084f5aa0000000150ff20fc010000000028e1328a7185e6ca00000000");
        let mut first = hex(
            "009a20593c3c23232bb90a0857ecb68bb549332bd05e2ed7471791fb1de1a60000000450ff20fc010000000328e1328a7185e6ca00000001160301003a",
        );
        first.resize(2 + 0x9a, 0x11);
        // The next one, with no ack: a 20-byte HMAC read as none gives junk.
        let mut second = hex("008e20593c3c23232bb90a");
        second.extend([0x5a; 20]); // HMAC
        second.extend(hex("0000000550ff20fc")); // replay id 5, time
        second.extend(hex("0000000002")); // no acks, message pid 2
        second.extend([0x22; 0x8e - 42]);
        assert_eq!(second.len(), 2 + 0x8e);
        let mut o = OpenVpnTcp::new();
        let mut tls = Vec::new();
        o.feed(Dir::Server, &[reset, first, second].concat(), &mut tls);
        assert_eq!(&tls[..5], &hex("160301003a")[..]);
        assert_eq!(tls.len(), (0x9a - 54) + (0x8e - 42));
        assert!(tls[0x9a - 54..].iter().all(|b| *b == 0x22));
    }

    #[test]
    fn data_packets_are_skipped_and_junk_never_panics() {
        let mut o = OpenVpnTcp::new();
        let mut tls = Vec::new();
        // A 3000-byte data packet (opcode 9) is skipped without buffering.
        let mut d = vec![0x0b, 0xb8, 0x48];
        d.extend(vec![0u8; 2999]);
        o.feed(Dir::Server, &d, &mut tls);
        assert!(tls.is_empty());
        assert!(o.heap_bytes() <= MAX_CONTROL_PACKET);
        assert!(!o.is_dead(Dir::Server));
        // A zero length is not OpenVPN.
        o.feed(Dir::Server, &[0, 0, 1, 2], &mut tls);
        assert!(o.is_dead(Dir::Server));
        for seed in 0u32..200 {
            let junk: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(seed).wrapping_add(seed >> 1) % 251) as u8).collect();
            let mut o = OpenVpnTcp::new();
            o.feed(Dir::Client, &junk, &mut tls);
            assert!(o.heap_bytes() <= MAX_CONTROL_PACKET.next_power_of_two());
        }
        assert!(!looks_like_client_reset(&[0x16, 0x03, 0x01, 0x00, 0x05]));
        assert!(!looks_like_client_reset(&[0x00, 0x0e]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_bounded(chunks in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..400)), 0..20)) {
            let mut o = OpenVpnTcp::new();
            let mut tls = Vec::new();
            let mut fed = 0;
            for (server, c) in &chunks {
                o.feed(if *server { Dir::Server } else { Dir::Client }, c, &mut tls);
                fed += c.len();
                proptest::prop_assert!(o.heap_bytes() <= 2 * MAX_CONTROL_PACKET.next_power_of_two());
            }
            proptest::prop_assert!(tls.len() <= fed);
        }
    }
}
