//! QUIC packet headers: the version-independent invariants (RFC 8999 §5)
//! and the long-header layouts of v1 (RFC 9000 §17.2), v2 (RFC 9369 §3.2)
//! and the drafts and vendor versions whose Initial salts are public.
//!
//! Only what a passive observer needs: connection IDs, the packet type, the
//! Initial token and where each coalesced packet ends. Nothing here decrypts.

/// A cursor over untrusted bytes: every read is checked and returns `None`
/// instead of panicking when the input is short.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    /// `n` bytes where `n` came off the wire as a u64.
    pub(crate) fn bytes_u64(&mut self, n: u64) -> Option<&'a [u8]> {
        self.bytes(usize::try_from(n).ok()?)
    }

    /// A variable-length integer (RFC 9000 §16): the two high bits of the
    /// first byte give the length (1, 2, 4 or 8 bytes).
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let first = self.peek()?;
        let len = 1usize << (first >> 6);
        let b = self.bytes(len)?;
        let mut v = u64::from(first & 0x3f);
        for &x in &b[1..] {
            v = (v << 8) | u64::from(x);
        }
        Some(v)
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let r = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        r
    }
}

/// QUIC version numbers we act on (the wire value, kept as an integer so
/// unknown versions survive into the output).
pub mod version {
    /// Version Negotiation packets carry version 0.
    pub const NEGOTIATION: u32 = 0x0000_0000;
    /// QUIC v1, RFC 9000.
    pub const V1: u32 = 0x0000_0001;
    /// QUIC v2, RFC 9369.
    pub const V2: u32 = 0x6b33_43cf;
    /// draft-ietf-quic-transport-29 (the most widely deployed draft).
    pub const DRAFT_29: u32 = 0xff00_001d;
    /// Facebook mvfst, draft-22 based.
    pub const MVFST_D22: u32 = 0xface_b001;
    /// Facebook mvfst, draft-27 based.
    pub const MVFST_D27: u32 = 0xface_b002;
    /// Facebook mvfst's experimental version.
    pub const MVFST_EXPERIMENTAL: u32 = 0xface_b00e;
}

// Initial salts: RFC 9001 §5.2 (v1), RFC 9369 §3.3.1 (v2), and the
// draft-ietf-quic-tls-{22,23,29} values, also used by Wireshark and nDPI.
const SALT_V1: [u8; 20] =
    [0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a];
const SALT_V2: [u8; 20] =
    [0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9];
const SALT_DRAFT_29: [u8; 20] =
    [0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99];
const SALT_DRAFT_23: [u8; 20] =
    [0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02];
const SALT_DRAFT_22: [u8; 20] =
    [0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd, 0x7a, 0x02, 0x64, 0x4a];
/// What a version changes for Initial packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionParams {
    /// Initial salt for HKDF-Extract.
    pub salt: &'static [u8; 20],
    /// Salt to try when `salt` does not authenticate (reserved versions).
    pub alt_salt: Option<&'static [u8; 20]>,
    /// RFC 9369: "quicv2 " key labels and the rotated packet-type bits.
    pub v2: bool,
}

/// True for the versions reserved to exercise version negotiation
/// (RFC 9000 §15: `0x?a?a?a?a`).
pub fn is_reserved(version: u32) -> bool {
    version & 0x0f0f_0f0f == 0x0a0a_0a0a
}

/// Initial-key parameters of `version`, or `None` when we cannot decrypt
/// its Initials (unknown versions, gQUIC Q0xx/T0xx).
///
/// A client that opens with a reserved version (to force Version
/// Negotiation) still protects that Initial with some real version's keys:
/// we try the draft-29 salt (what Wireshark and nDPI assume) and then v1's.
pub(crate) fn params(version: u32) -> Option<VersionParams> {
    if is_reserved(version) {
        return Some(VersionParams { salt: &SALT_DRAFT_29, alt_salt: Some(&SALT_V1), v2: false });
    }
    let salt = match version {
        version::V1 => &SALT_V1,
        version::V2 => return Some(VersionParams { salt: &SALT_V2, alt_salt: None, v2: true }),
        // draft-33 and draft-34 already use the v1 salt.
        0xff00_0021..=0xff00_0022 => &SALT_V1,
        0xff00_001d..=0xff00_0020 => &SALT_DRAFT_29,
        0xff00_0017..=0xff00_001c => &SALT_DRAFT_23,
        version::MVFST_D27 | version::MVFST_EXPERIMENTAL => &SALT_DRAFT_23,
        0xff00_0016 | version::MVFST_D22 => &SALT_DRAFT_22,
        _ => return None,
    };
    Some(VersionParams { salt, alt_salt: None, v2: false })
}

/// Largest connection ID of QUIC v1/v2 (RFC 9000 §17.2). The invariants
/// allow 255 for other versions.
pub const MAX_CID_LEN: usize = 20;

/// Long-header packet types, normalised: v2 rotates the wire bits
/// (RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl PacketType {
    fn from_bits(bits: u8, v2: bool) -> Self {
        let bits = if v2 { bits.wrapping_sub(1) & 3 } else { bits & 3 };
        match bits {
            0 => PacketType::Initial,
            1 => PacketType::ZeroRtt,
            2 => PacketType::Handshake,
            _ => PacketType::Retry,
        }
    }
}

/// One long-header packet of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LongPacket<'a> {
    /// The whole packet, first byte to the end given by its Length field
    /// (to the end of the datagram for Retry, Version Negotiation and
    /// unknown versions).
    pub bytes: &'a [u8],
    pub version: u32,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    pub body: Body<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// Initial: the token, and where the protected packet number starts
    /// (an offset into [`LongPacket::bytes`]).
    Initial {
        token: &'a [u8],
        pn_offset: usize,
    },
    ZeroRtt,
    Handshake,
    /// Retry: the token, without the 16-byte integrity tag.
    Retry {
        token: &'a [u8],
    },
    /// Version Negotiation: the supported-version list (4 bytes each).
    VersionNegotiation {
        versions: &'a [u8],
    },
    /// A version whose layout after the connection IDs is unknown.
    UnknownVersion,
}

/// Parse the long-header packet at the start of `buf` (first byte has the
/// high bit set). The error is a stable counter name.
pub(crate) fn parse_long(buf: &[u8]) -> Result<LongPacket<'_>, &'static str> {
    const TRUNCATED: &str = "quic_header_truncated";
    let mut r = Reader::new(buf);
    let first = r.u8().ok_or(TRUNCATED)?;
    let version = r.u32().ok_or(TRUNCATED)?;
    let dcid_len = usize::from(r.u8().ok_or(TRUNCATED)?);
    let dcid = r.bytes(dcid_len).ok_or(TRUNCATED)?;
    let scid_len = usize::from(r.u8().ok_or(TRUNCATED)?);
    let scid = r.bytes(scid_len).ok_or(TRUNCATED)?;
    let whole = |body| Ok(LongPacket { bytes: buf, version, dcid, scid, body });
    if version == version::NEGOTIATION {
        return whole(Body::VersionNegotiation { versions: r.rest() });
    }
    let Some(p) = params(version) else {
        return whole(Body::UnknownVersion);
    };
    if dcid.len() > MAX_CID_LEN || scid.len() > MAX_CID_LEN {
        return Err("quic_cid_too_long");
    }
    let ty = PacketType::from_bits((first >> 4) & 3, p.v2);
    let token = match ty {
        PacketType::Retry => {
            let rest = r.rest();
            let token = rest.get(..rest.len().saturating_sub(16)).unwrap_or(&[]);
            if rest.len() < 16 {
                return Err("quic_retry_truncated");
            }
            return whole(Body::Retry { token });
        }
        PacketType::Initial => {
            let n = r.varint().ok_or(TRUNCATED)?;
            Some(r.bytes_u64(n).ok_or(TRUNCATED)?)
        }
        PacketType::ZeroRtt | PacketType::Handshake => None,
    };
    let len = r.varint().ok_or(TRUNCATED)?;
    let pn_offset = r.pos();
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| pn_offset.checked_add(l))
        .filter(|e| *e <= buf.len())
        .ok_or("quic_length_exceeds_datagram")?;
    let bytes = &buf[..end];
    let body = match (ty, token) {
        (PacketType::Initial, Some(token)) => Body::Initial { token, pn_offset },
        (PacketType::ZeroRtt, _) => Body::ZeroRtt,
        _ => Body::Handshake,
    };
    Ok(LongPacket { bytes, version, dcid, scid, body })
}

/// Cheap probe: does `udp_payload` start with a client's first Initial
/// packet of a version we can try to decrypt (reserved `0x?a?a?a?a`
/// versions included)? Checks the long-header and fixed bits, a known
/// version, the Initial type, a client-chosen DCID of 8..=20 bytes
/// (RFC 9000 §7.2) and a Length that fits the datagram with room for the
/// header-protection sample. No decryption, no allocation. (A client that
/// greases the fixed bit in its first Initial, RFC 9287, is not matched.)
pub fn looks_like_quic_initial(udp_payload: &[u8]) -> bool {
    if udp_payload.first().is_none_or(|b| b & 0xc0 != 0xc0) {
        return false;
    }
    match parse_long(udp_payload) {
        Ok(LongPacket { dcid, bytes, body: Body::Initial { pn_offset, .. }, .. }) => dcid.len() >= 8 && bytes.len() >= pn_offset + 4 + 16,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_rfc9000_a1() {
        // RFC 9000 §A.1 examples.
        for (hex, v) in
            [("c2197c5eff14e88c", 151_288_809_941_952_652u64), ("9d7f3e7d", 494_878_333), ("7bbd", 15_293), ("25", 37), ("4025", 37)]
        {
            let b = hex::decode(hex).unwrap();
            let mut r = Reader::new(&b);
            assert_eq!(r.varint(), Some(v), "{hex}");
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0x40]).varint(), None);
        assert_eq!(Reader::new(&[]).varint(), None);
    }

    #[test]
    fn v2_type_bits() {
        assert_eq!(PacketType::from_bits(0b01, true), PacketType::Initial);
        assert_eq!(PacketType::from_bits(0b10, true), PacketType::ZeroRtt);
        assert_eq!(PacketType::from_bits(0b11, true), PacketType::Handshake);
        assert_eq!(PacketType::from_bits(0b00, true), PacketType::Retry);
        assert_eq!(PacketType::from_bits(0b00, false), PacketType::Initial);
        assert_eq!(PacketType::from_bits(0b11, false), PacketType::Retry);
    }

    #[test]
    fn salts_by_version() {
        assert_eq!(params(version::V1).unwrap().salt, &SALT_V1);
        assert_eq!(params(0xff00_0022).unwrap().salt, &SALT_V1);
        assert_eq!(params(0xff00_0021).unwrap().salt, &SALT_V1);
        assert_eq!(params(0xff00_0020).unwrap().salt, &SALT_DRAFT_29);
        assert_eq!(params(version::DRAFT_29).unwrap().salt, &SALT_DRAFT_29);
        assert_eq!(params(0xff00_001c).unwrap().salt, &SALT_DRAFT_23);
        assert!(params(version::V2).unwrap().v2);
        assert!(!params(version::V1).unwrap().v2);
        let r = params(0x1a2a_3a4a).unwrap();
        assert_eq!((r.salt, r.alt_salt), (&SALT_DRAFT_29, Some(&SALT_V1)));
        assert_eq!(params(0x1a2a_3a4b), None);
        assert_eq!(params(0x5130_3530), None); // Q050: not TLS
        assert_eq!(params(0x5430_3531), None); // T051: TLS, but gQUIC frames
    }

    #[test]
    fn version_negotiation_and_retry() {
        // VN: version 0, DCID 1 byte, SCID 2 bytes, two versions.
        let vn = hex::decode("80000000000101020a0b00000001ff00001d").unwrap();
        let p = parse_long(&vn).unwrap();
        assert_eq!(p.dcid, [1]);
        assert_eq!(p.scid, [0x0a, 0x0b]);
        assert_eq!(p.body, Body::VersionNegotiation { versions: &vn[10..] });
        // RFC 9001 §A.4 Retry.
        let retry = hex::decode("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba").unwrap();
        let p = parse_long(&retry).unwrap();
        assert_eq!(p.scid, hex::decode("f067a5502a4262b5").unwrap());
        assert_eq!(p.body, Body::Retry { token: b"token" });
        assert_eq!(parse_long(&retry[..20]), Err("quic_retry_truncated"));
    }

    #[test]
    fn truncated_headers() {
        let a2 = hex::decode("c300000001088394c8f03e5157080000449e00000002").unwrap();
        for n in 0..a2.len() {
            assert!(parse_long(&a2[..n]).is_err(), "{n}");
        }
        // Length 0x049e = 1182 does not fit.
        assert_eq!(parse_long(&a2), Err("quic_length_exceeds_datagram"));
        assert!(!looks_like_quic_initial(&a2));
    }
}
