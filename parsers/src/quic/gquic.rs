//! Google QUIC (gQUIC) client hellos: the SNI, user agent and tag list of
//! the client's CHLO, and Suricata's CYU fingerprint of it.
//!
//! Heads up! Before working on this file read Suricata's `rust/src/quic/`
//! (`parser.rs`, `frames.rs`, `cyu.rs`), nDPI's `src/lib/protocols/quic.c`
//! and Wireshark's `packet-gquic.c`; the layouts below follow them.
//!
//! ## What a gQUIC client hello looks like
//! gQUIC versions are four ASCII bytes: `Q` + three digits (Google's crypto
//! handshake, CHLO) or `T` + three digits (TLS 1.3 over gQUIC framing).
//! - **Q043 and older** (public header): public flags (`0x01` version
//!   present, `0x08` 8-byte connection ID, `0x30` packet-number length
//!   1/2/4/6; `0x04` is the server's diversification nonce and is ignored
//!   from a client, which sets it in `0x0c` as the legacy 8-byte-CID code),
//!   CID, version, packet number, a 12-byte message-authentication hash, a
//!   private-flags byte up to Q033, then frames in plaintext. Integers in
//!   frames are little-endian before Q039 and big-endian from Q039.
//! - **Q044/Q045**: long header `0xff`, version, one byte of DCID/SCID
//!   lengths (a nibble each, `n + 3` bytes when non-zero), a 4-byte packet
//!   number, the 12-byte hash, frames.
//! - **Q046**: IETF-style long header (`0xc3`: Initial, 4-byte packet
//!   number), version, the nibble CID lengths, CIDs, packet number, the
//!   12-byte hash, frames.
//! - In all of these the CHLO is the start of a STREAM frame (type
//!   `0b1fdooo_ss`) on stream 1 at offset 0, or further into stream 1 when
//!   the client sends a new CHLO after the server's REJ (it then starts
//!   with the `CHLO` tag, which is how it is recognised).
//! - **Q050, T050, T051**: IETF invariant long header (one length byte per
//!   CID, token, Length), protected like an IETF QUIC Initial (RFC 9001
//!   key schedule, "quic key"/"quic iv"/"quic hp" labels) with
//!   version-specific salts (Q050 `5045 74ef ...`, T050 `7ff5 79e5 ...`,
//!   T051 `7a4e def4 ...`, as in Wireshark and nDPI). The plaintext holds
//!   gQUIC frames; the handshake travels in CRYPTO frames of type `0x08`
//!   (varint offset and length): a CHLO for Q050, a TLS ClientHello for
//!   T050/T051. Other versions from Q047 up and other T versions are
//!   recognised and reported as `gquic_encrypted_unsupported`.
//!
//! The CHLO itself (little-endian throughout): tag `CHLO`, a u16 number of
//! entries, two bytes of padding, that many (4-byte tag, u32 end offset)
//! pairs, then the values back to back (each ends at its end offset,
//! counted from the end of the table).
//!
//! ## CYU
//! As Suricata (`cyu.rs`) and Salesforce's Zeek analyser compute it:
//! `"<version number>,<tags joined with '-'>"` (e.g.
//! `46,PAD-SNI-VER-CCS-...`), hashed with MD5 (32 lowercase hex digits).
//! Tags are the four bytes with trailing NULs dropped (`PAD\0` → `PAD`),
//! in wire order, all of them. Differences from Suricata: Suricata only
//! emits CYU for Q043–Q046 (and labels Q045 "44"), and drops the whole tag
//! list when a CHLO holds a tag outside its list of 30 known tags; here
//! every Q version gets its own number (`25`, `39`, `50`, ...) and every
//! tag is kept (bytes that are not printable ASCII are written `\xNN`).
//! T050/T051 carry TLS, not a CHLO: their hello has the TLS SNI, no tags,
//! empty `cyu_string`/`cyu_hash`, and the parsed TLS ClientHello
//! (`client_hello`), from which the sensor computes JA3 and JA4 (`q`) as
//! tshark and FoxIO's ja4 do.
//!
//! ## Contract
//! Pure, no I/O, no clock, never panics. One UDP payload in; nothing is
//! kept between calls, so a CHLO split across datagrams only yields what
//! its first datagram holds (the tag table, SNI and UAID normally fit in
//! it; a CHLO whose tag table does not fit is `gquic_chlo_truncated`).
//! Client-side only: a server's long-header packets are
//! `gquic_server_initial`, a REJ/SHLO in a public-header packet is
//! `gquic_not_chlo`.
//! [`inspect_client_datagram`] returns why nothing was found as a stable
//! snake_case counter name.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use serde::Serialize;

use super::crypto::{unprotect_long, InitialKeys};
use super::header::{Reader, VersionParams};
use crate::tls::{self, hs};

/// What a gQUIC client hello told us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GquicHello {
    /// The version as its four ASCII bytes (`"Q046"`): from the packet
    /// header, or from the CHLO's `VER` tag when the header has none.
    pub version: String,
    /// `SNI` tag (TLS server_name for T050/T051); lossy UTF-8, `None` when
    /// absent, empty, or beyond this datagram.
    pub sni: Option<String>,
    /// `UAID` tag (the client's user agent); lossy UTF-8, `None` when
    /// absent, empty, or beyond this datagram.
    pub uaid: Option<String>,
    /// All CHLO tags in wire order, trailing NULs dropped (`"PAD"`, `"SNI"`).
    pub tags: Vec<String>,
    /// CYU pre-hash string: `"<version number>,<tags joined with '-'>"`.
    pub cyu_string: String,
    /// MD5 of `cyu_string`, 32 lowercase hex digits.
    pub cyu_hash: String,
    /// T050/T051: the TLS ClientHello itself (JA3 and JA4 are computed from
    /// it as from any other); `None` for a CHLO.
    #[serde(skip)]
    pub client_hello: Option<Box<crate::hello::ClientHello>>,
}

/// Initial salt of Q050 (Wireshark `handshake_salt_q050`, nDPI).
const SALT_Q050: [u8; 20] =
    [0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0, 0xd3, 0xb5, 0x6b, 0x45];
/// Initial salt of T050.
const SALT_T050: [u8; 20] =
    [0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c, 0x60, 0x48, 0x83, 0x10];
/// Initial salt of T051.
const SALT_T051: [u8; 20] =
    [0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc, 0xda, 0x6e, 0x03, 0x3d];

/// Longest connection ID accepted in a Q05x/T05x long header.
const MAX_IETF_CID: usize = 20;

/// The wire value of a gQUIC version (`Q`/`T`, then three ASCII digits).
fn is_gquic_version(v: &[u8]) -> bool {
    matches!(v, [b'Q' | b'T', d1, d2, d3] if d1.is_ascii_digit() && d2.is_ascii_digit() && d3.is_ascii_digit())
}

/// The number of a gQUIC version (`Q046` → 46); `None` for non-gQUIC bytes.
fn version_number(v: &[u8]) -> Option<u32> {
    if !is_gquic_version(v) {
        return None;
    }
    Some(v[1..].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

/// How a version lays out its first client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Q043 and older: public header (flags first).
    Public,
    /// Q044, Q045: long header `0xff`, nibble CID lengths, 4-byte PN.
    Long44,
    /// Q046: IETF-like long header, nibble CID lengths.
    Long46,
    /// Q050: protected Initial, CHLO in CRYPTO frames.
    ProtectedChlo(&'static [u8; 20]),
    /// T050/T051: protected Initial, TLS ClientHello in CRYPTO frames.
    ProtectedTls(&'static [u8; 20]),
    /// A gQUIC version we do not read.
    Unsupported,
}

fn layout(v: &[u8]) -> Layout {
    match (v.first(), version_number(v)) {
        (Some(b'Q'), Some(0..=43)) => Layout::Public,
        (Some(b'Q'), Some(44 | 45)) => Layout::Long44,
        (Some(b'Q'), Some(46)) => Layout::Long46,
        (Some(b'Q'), Some(50)) => Layout::ProtectedChlo(&SALT_Q050),
        (Some(b'T'), Some(50)) => Layout::ProtectedTls(&SALT_T050),
        (Some(b'T'), Some(51)) => Layout::ProtectedTls(&SALT_T051),
        _ => Layout::Unsupported,
    }
}

/// Cheap probe: does `udp_payload` start with a gQUIC packet that carries
/// a version (a client's first packets do) and may hold the client hello?
/// Matches a public header with the version and 8-byte-CID flags and a
/// `Q0xx` version up to Q043, or a long header with a `Q0xx`/`T0xx`
/// version whose type is Initial and whose destination connection ID is
/// not empty (a server's long-header packets go to the client's empty
/// ID). A gQUIC server's Version Negotiation packet also has the public
/// header's version flag, so the probe can match one. No allocation, no
/// decryption.
pub fn looks_like_gquic(udp_payload: &[u8]) -> bool {
    let Some(&first) = udp_payload.first() else {
        return false;
    };
    if first & 0x80 == 0 {
        // Public header: version present, CID present, no reset/multipath.
        if first & 0xc3 != 0x01 || first & 0x08 == 0 {
            return false;
        }
        return udp_payload.get(9..13).is_some_and(|v| layout(v) == Layout::Public && udp_payload.len() >= 13 + 1 + 12);
    }
    let Some(v) = udp_payload.get(1..5) else {
        return false;
    };
    let Some(&cid) = udp_payload.get(5) else {
        return false;
    };
    match layout(v) {
        Layout::Public => false,
        Layout::Long44 => first == 0xff && cid >> 4 != 0,
        Layout::Long46 => first & 0x30 == 0 && cid >> 4 != 0,
        Layout::ProtectedChlo(_) | Layout::ProtectedTls(_) | Layout::Unsupported => {
            is_gquic_version(v) && first & 0x30 == 0 && (1..=MAX_IETF_CID as u8).contains(&cid)
        }
    }
}

/// The client hello in one UDP payload, if it holds a readable one.
/// See [`inspect_client_datagram`] for why it may not.
pub fn parse_client_datagram(udp_payload: &[u8]) -> Option<GquicHello> {
    inspect_client_datagram(udp_payload).ok()
}

/// The client hello in one UDP payload, or why there is none, as a stable
/// counter name: `gquic_not_gquic` (no gQUIC header/version),
/// `gquic_not_initial` (long header of another packet type),
/// `gquic_server_initial` (long header to an empty connection ID: the
/// server's),
/// `gquic_header_truncated`, `gquic_encrypted_unsupported` (a gQUIC
/// version whose packets we cannot read), `gquic_packet_too_short` /
/// `gquic_initial_auth_failed` (Q050/T05x Initial that does not decrypt),
/// `gquic_unknown_frame` / `gquic_frame_truncated` (frames before the hello
/// that cannot be walked), `gquic_no_hello` (no stream-1/CRYPTO data at
/// offset 0), `gquic_not_chlo` (another handshake message, e.g. REJ),
/// `gquic_chlo_truncated` (tag table cut off), `gquic_chlo_malformed`
/// (decreasing end offsets), `gquic_no_version` (no version in the header
/// and no usable `VER` tag), `gquic_client_hello_malformed` (T05x TLS
/// ClientHello incomplete or unparsable).
pub fn inspect_client_datagram(udp_payload: &[u8]) -> Result<GquicHello, &'static str> {
    let first = *udp_payload.first().ok_or("gquic_not_gquic")?;
    if first & 0x80 == 0 {
        return public_header(udp_payload);
    }
    let v = udp_payload.get(1..5).ok_or("gquic_not_gquic")?;
    if !is_gquic_version(v) {
        return Err("gquic_not_gquic");
    }
    match layout(v) {
        // Q043 and older never use a long header.
        Layout::Public => Err("gquic_not_gquic"),
        Layout::Long44 | Layout::Long46 => {
            let pn_len = if layout(v) == Layout::Long44 {
                if first & 0x7f != 0x7f {
                    return Err("gquic_not_initial");
                }
                4
            } else {
                if first & 0x30 != 0 {
                    return Err("gquic_not_initial");
                }
                usize::from(first & 0x03) + 1
            };
            let mut r = Reader::new(udp_payload);
            r.bytes(5).ok_or("gquic_header_truncated")?;
            let lens = r.u8().ok_or("gquic_header_truncated")?;
            if lens >> 4 == 0 {
                return Err("gquic_server_initial");
            }
            let nib = |n: u8| if n == 0 { 0 } else { usize::from(n) + 3 };
            r.bytes(nib(lens >> 4) + nib(lens & 0x0f) + pn_len + 12).ok_or("gquic_header_truncated")?;
            let data = stream1_data(r.rest(), FrameCtx { le: false, pn_len })?;
            chlo_hello(data, Some(v))
        }
        Layout::ProtectedChlo(salt) | Layout::ProtectedTls(salt) => {
            if first & 0x30 != 0 {
                return Err("gquic_not_initial");
            }
            let plain = decrypt_initial(udp_payload, salt)?;
            if matches!(layout(v), Layout::ProtectedTls(_)) {
                tls_hello(&crypto_data(&plain, |d| d.first() == Some(&hs::CLIENT_HELLO))?, v)
            } else {
                chlo_hello(&crypto_data(&plain, |d| d.starts_with(b"CHLO"))?, Some(v))
            }
        }
        Layout::Unsupported => Err("gquic_encrypted_unsupported"),
    }
}

/// Q043 and older: the public header, then plaintext frames.
fn public_header(buf: &[u8]) -> Result<GquicHello, &'static str> {
    let flags = *buf.first().ok_or("gquic_not_gquic")?;
    // Reset (0x02) and multipath (0x40) never come with a CHLO; 0x80 would
    // be a long header. A client hello always names its connection.
    if flags & 0xc2 != 0 || flags & 0x08 == 0 {
        return Err("gquic_not_gquic");
    }
    let mut r = Reader::new(buf);
    r.bytes(1 + 8).ok_or("gquic_header_truncated")?;
    let version = if flags & 0x01 != 0 {
        let v = r.bytes(4).ok_or("gquic_header_truncated")?;
        if layout(v) != Layout::Public {
            return Err("gquic_not_gquic");
        }
        Some(v)
    } else {
        None
    };
    let pn_len = [1, 2, 4, 6][usize::from((flags >> 4) & 3)];
    r.bytes(pn_len + 12).ok_or("gquic_header_truncated")?;
    let body = r.rest();
    match version.and_then(version_number) {
        Some(n) => {
            // A private-flags byte precedes the frames up to Q033.
            let body = if n <= 33 { body.get(1..).ok_or("gquic_header_truncated")? } else { body };
            let data = stream1_data(body, FrameCtx { le: n < 39, pn_len })?;
            chlo_hello(data, version)
        }
        None => {
            // No version in the header (a later CHLO of the connection):
            // try the layouts in use, newest first; the CHLO's VER names it.
            let mut err = "gquic_no_hello";
            for (skip, le) in [(0, false), (0, true), (1, true)] {
                let Some(body) = body.get(skip..) else { continue };
                match stream1_data(body, FrameCtx { le, pn_len }).and_then(|d| chlo_hello(d, None)) {
                    Ok(h) => return Ok(h),
                    Err(e) => {
                        if err == "gquic_no_hello" {
                            err = e;
                        }
                    }
                }
            }
            Err(err)
        }
    }
}

/// How integers in pre-Q050 frames are written.
#[derive(Debug, Clone, Copy)]
struct FrameCtx {
    /// Little-endian (before Q039).
    le: bool,
    /// Packet-number length of the header (STOP_WAITING uses it).
    pn_len: usize,
}

fn uint(b: &[u8], le: bool) -> u64 {
    let fold = |n: u64, x: &u8| (n << 8) | u64::from(*x);
    if le {
        b.iter().rev().fold(0, fold)
    } else {
        b.iter().fold(0, fold)
    }
}

/// Walk pre-Q050 gQUIC frames to the STREAM frame of stream 1 that starts
/// a handshake message (offset 0, or data starting with `CHLO`) and return
/// its data.
fn stream1_data(payload: &[u8], ctx: FrameCtx) -> Result<&[u8], &'static str> {
    const TRUNC: &str = "gquic_frame_truncated";
    let mut r = Reader::new(payload);
    while let Some(t) = r.u8() {
        match t {
            0x80..=0xff => {
                let id_len = usize::from(t & 0x03) + 1;
                let off_len = match (t >> 2) & 0x07 {
                    0 => 0,
                    n => usize::from(n) + 1,
                };
                let id = uint(r.bytes(id_len).ok_or(TRUNC)?, ctx.le);
                let off = uint(r.bytes(off_len).ok_or(TRUNC)?, ctx.le);
                let data = if t & 0x20 != 0 {
                    let n = uint(r.bytes(2).ok_or(TRUNC)?, ctx.le);
                    r.bytes_u64(n).ok_or(TRUNC)?
                } else {
                    r.rest()
                };
                // The handshake stream starts with the first CHLO; a CHLO
                // sent again after a REJ starts further into the stream.
                if id == 1 && (off == 0 || data.starts_with(b"CHLO")) {
                    return Ok(data);
                }
            }
            0x40..=0x7f => skip_ack(&mut r, t).ok_or(TRUNC)?,
            // PADDING runs to the end of the packet.
            0x00 => break,
            // RST_STREAM: stream id, byte offset, error code.
            0x01 => skip(&mut r, 4 + 8 + 4)?,
            // CONNECTION_CLOSE: error code, reason.
            0x02 => {
                skip(&mut r, 4)?;
                let n = uint(r.bytes(2).ok_or(TRUNC)?, ctx.le);
                r.bytes_u64(n).ok_or(TRUNC)?;
            }
            // GOAWAY: error code, last good stream, reason.
            0x03 => {
                skip(&mut r, 8)?;
                let n = uint(r.bytes(2).ok_or(TRUNC)?, ctx.le);
                r.bytes_u64(n).ok_or(TRUNC)?;
            }
            // WINDOW_UPDATE, BLOCKED.
            0x04 => skip(&mut r, 4 + 8)?,
            0x05 => skip(&mut r, 4)?,
            // STOP_WAITING: least-unacked delta, as long as the header's PN.
            0x06 => skip(&mut r, ctx.pn_len)?,
            // PING.
            0x07 => {}
            _ => return Err("gquic_unknown_frame"),
        }
    }
    Err("gquic_no_hello")
}

fn skip(r: &mut Reader<'_>, n: usize) -> Result<(), &'static str> {
    r.bytes(n).map(|_| ()).ok_or("gquic_frame_truncated")
}

/// Skip a gQUIC ACK frame (Q034+ layout, type `0b01nullmm`): largest
/// acked (`ll`), delay, optional block count, first block, more blocks,
/// timestamps.
fn skip_ack(r: &mut Reader<'_>, t: u8) -> Option<()> {
    const LEN: [usize; 4] = [1, 2, 4, 6];
    let largest = LEN[usize::from((t >> 2) & 3)];
    let block = LEN[usize::from(t & 3)];
    r.bytes(largest + 2)?;
    let blocks = if t & 0x20 != 0 { usize::from(r.u8()?) } else { 0 };
    r.bytes(block)?;
    for _ in 0..blocks {
        r.bytes(1 + block)?;
    }
    let stamps = usize::from(r.u8()?);
    if stamps > 0 {
        r.bytes(1 + 4 + (stamps - 1) * (1 + 2))?;
    }
    Some(())
}

/// Remove the Initial protection of a Q050/T05x client packet.
fn decrypt_initial(buf: &[u8], salt: &'static [u8; 20]) -> Result<Vec<u8>, &'static str> {
    const TRUNC: &str = "gquic_header_truncated";
    let mut r = Reader::new(buf);
    r.bytes(5).ok_or(TRUNC)?;
    let dcid_len = usize::from(r.u8().ok_or(TRUNC)?);
    let dcid = r.bytes(dcid_len).ok_or(TRUNC)?;
    let scid_len = usize::from(r.u8().ok_or(TRUNC)?);
    r.bytes(scid_len).ok_or(TRUNC)?;
    if dcid_len > MAX_IETF_CID || scid_len > MAX_IETF_CID {
        return Err("gquic_not_gquic");
    }
    if dcid_len == 0 {
        return Err("gquic_server_initial");
    }
    let token_len = r.varint().ok_or(TRUNC)?;
    r.bytes_u64(token_len).ok_or(TRUNC)?;
    let len = r.varint().ok_or(TRUNC)?;
    let pn_offset = r.pos();
    let end =
        usize::try_from(len).ok().and_then(|l| pn_offset.checked_add(l)).filter(|e| *e <= buf.len()).ok_or("gquic_packet_too_short")?;
    let params = VersionParams { salt, alt_salt: None, v2: false };
    let keys = InitialKeys::derive(params, dcid).ok_or("gquic_initial_auth_failed")?;
    match unprotect_long(&keys.client, &buf[..end], pn_offset, None) {
        Ok(p) => Ok(p.payload),
        Err("quic_initial_auth_failed") => Err("gquic_initial_auth_failed"),
        Err(_) => Err("gquic_packet_too_short"),
    }
}

/// The CRYPTO (`0x08`) data of a decrypted Q050/T05x payload that starts a
/// handshake message (offset 0, or a piece for which `starts` holds: a CHLO
/// repeated after a REJ), with directly following pieces of the same packet
/// appended.
fn crypto_data(plain: &[u8], starts: fn(&[u8]) -> bool) -> Result<Vec<u8>, &'static str> {
    const TRUNC: &str = "gquic_frame_truncated";
    let mut pieces: Vec<(u64, &[u8])> = Vec::new();
    let mut r = Reader::new(plain);
    while let Some(t) = r.u8() {
        match t {
            0x00 | 0x07 => {}
            0x08 => {
                let off = r.varint().ok_or(TRUNC)?;
                let n = r.varint().ok_or(TRUNC)?;
                pieces.push((off, r.bytes_u64(n).ok_or(TRUNC)?));
            }
            0x40..=0x7f => skip_ack(&mut r, t).ok_or(TRUNC)?,
            _ if !pieces.is_empty() => break,
            _ => return Err("gquic_unknown_frame"),
        }
    }
    pieces.sort_by_key(|p| p.0);
    let Some(first) = pieces.iter().position(|(off, d)| *off == 0 || starts(d)) else {
        return Err("gquic_no_hello");
    };
    let mut next = pieces[first].0;
    let mut data = Vec::new();
    for &(off, piece) in &pieces[first..] {
        if off > next {
            break;
        }
        let skip = usize::try_from(next - off).unwrap_or(usize::MAX);
        if let Some(more) = piece.get(skip..) {
            data.extend_from_slice(more);
            next = next.saturating_add(more.len() as u64);
        }
    }
    if data.is_empty() {
        return Err("gquic_no_hello");
    }
    Ok(data)
}

/// A parsed CHLO: its tags in order and the values we report.
struct Chlo<'a> {
    tags: Vec<[u8; 4]>,
    sni: Option<&'a [u8]>,
    uaid: Option<&'a [u8]>,
    ver: Option<&'a [u8]>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn parse_chlo(data: &[u8]) -> Result<Chlo<'_>, &'static str> {
    match data.get(..4) {
        Some(b"CHLO") => {}
        Some(_) => return Err("gquic_not_chlo"),
        None => return Err("gquic_chlo_truncated"),
    }
    let n = usize::from(le16(data, 4).ok_or("gquic_chlo_truncated")?);
    let values = 8 + 8 * n;
    if data.len() < values {
        return Err("gquic_chlo_truncated");
    }
    let mut chlo = Chlo { tags: Vec::with_capacity(n), sni: None, uaid: None, ver: None };
    let mut prev = 0usize;
    for i in 0..n {
        let at = 8 + 8 * i;
        let tag: [u8; 4] = data.get(at..at + 4).and_then(|t| t.try_into().ok()).ok_or("gquic_chlo_truncated")?;
        let end = usize::try_from(le32(data, at + 4).ok_or("gquic_chlo_truncated")?).map_err(|_| "gquic_chlo_malformed")?;
        if end < prev {
            return Err("gquic_chlo_malformed");
        }
        let value = values.checked_add(prev).zip(values.checked_add(end)).and_then(|(s, e)| data.get(s..e));
        match &tag {
            b"SNI\0" => chlo.sni = value,
            b"UAID" => chlo.uaid = value,
            b"VER\0" => chlo.ver = value,
            _ => {}
        }
        chlo.tags.push(tag);
        prev = end;
    }
    Ok(chlo)
}

/// A tag as text: trailing NULs dropped, non-printable bytes as `\xNN`.
fn tag_name(tag: &[u8; 4]) -> String {
    let len = tag.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let mut s = String::with_capacity(4);
    for &b in &tag[..len] {
        if b.is_ascii_graphic() {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Suricata's CYU: `"<version number>,<tags joined with '-'>"` and its MD5.
pub fn cyu(version_number: u32, tags: &[String]) -> (String, String) {
    let string = format!("{version_number},{}", tags.join("-"));
    let hash = hex::encode(Md5::digest(string.as_bytes()));
    (string, hash)
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn chlo_hello(data: &[u8], header_version: Option<&[u8]>) -> Result<GquicHello, &'static str> {
    let chlo = parse_chlo(data)?;
    let version = header_version.or(chlo.ver).filter(|v| is_gquic_version(v)).ok_or("gquic_no_version")?;
    let number = version_number(version).ok_or("gquic_no_version")?;
    let tags: Vec<String> = chlo.tags.iter().map(tag_name).collect();
    let (cyu_string, cyu_hash) = cyu(number, &tags);
    Ok(GquicHello {
        version: String::from_utf8_lossy(version).into_owned(),
        sni: text(chlo.sni),
        uaid: text(chlo.uaid),
        tags,
        cyu_string,
        cyu_hash,
        client_hello: None,
    })
}

/// T050/T051: a TLS ClientHello handshake message in the CRYPTO data.
fn tls_hello(data: &[u8], version: &[u8]) -> Result<GquicHello, &'static str> {
    const BAD: &str = "gquic_client_hello_malformed";
    if data.first() != Some(&hs::CLIENT_HELLO) {
        return Err(BAD);
    }
    let len = data.get(1..4).map(|l| uint(l, false)).ok_or(BAD)?;
    let body = usize::try_from(len).ok().and_then(|l| data.get(4..4usize.checked_add(l)?)).ok_or(BAD)?;
    let ch = tls::parse_client_hello(body).ok_or(BAD)?;
    Ok(GquicHello {
        version: String::from_utf8_lossy(version).into_owned(),
        sni: ch.sni.clone().filter(|s| !s.is_empty()),
        uaid: None,
        tags: Vec::new(),
        cyu_string: String::new(),
        cyu_hash: String::new(),
        client_hello: Some(Box::new(ch)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::crypto::{protect_long, InitialKeys};
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A CHLO with `tags` (4-byte tags) and `values`, little-endian offsets.
    fn chlo(msg: &[u8; 4], entries: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut out = msg.to_vec();
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        let mut end = 0u32;
        for (tag, value) in entries {
            end += value.len() as u32;
            out.extend_from_slice(&tag[..]);
            out.extend_from_slice(&end.to_le_bytes());
        }
        for (_, value) in entries {
            out.extend_from_slice(value);
        }
        out
    }

    /// The tags of Suricata's `test cyu 2` (Q043) with plausible values.
    fn chlo_q043() -> Vec<u8> {
        chlo(
            b"CHLO",
            &[
                (b"PAD\0", &[0x2d; 20][..]),
                (b"SNI\0", b"www.example.com"),
                (b"VER\0", b"Q043"),
                (b"CCS\0", &[1; 16]),
                (b"PDMD", b"X509"),
                (b"ICSL", &[0x1e, 0, 0, 0]),
                (b"MIDS", &[0x64, 0, 0, 0]),
                (b"CFCW", &[0, 0xc0, 0, 0]),
                (b"SFCW", &[0, 0x80, 0, 0]),
            ],
        )
    }

    /// The 25 tags of Suricata's `test cyu 1` (Q046).
    const CYU1_TAGS: [&[u8; 4]; 25] = [
        b"PAD\0", b"SNI\0", b"STK\0", b"VER\0", b"CCS\0", b"NONC", b"AEAD", b"UAID", b"SCID", b"TCID", b"PDMD", b"SMHL", b"ICSL", b"NONP",
        b"PUBS", b"MIDS", b"SCLS", b"KEXS", b"XLCT", b"CSCT", b"COPT", b"CCRT", b"IRTT", b"CFCW", b"SFCW",
    ];

    fn chlo_q046() -> Vec<u8> {
        let entries: Vec<(&[u8; 4], &[u8])> = CYU1_TAGS
            .iter()
            .map(|t| {
                let v: &[u8] = match &t[..] {
                    b"SNI\0" => b"adservice.google.com",
                    b"UAID" => b"Chrome/79.0.3945.117 Linux x86_64",
                    b"VER\0" => b"Q046",
                    _ => &[0xab; 4],
                };
                (*t, v)
            })
            .collect();
        chlo(b"CHLO", &entries)
    }

    /// A gQUIC STREAM frame on stream 1, offset 0, with a 2-byte length.
    fn stream1(data: &[u8], le: bool) -> Vec<u8> {
        let mut f = vec![0xa0, 0x01];
        let n = data.len() as u16;
        f.extend_from_slice(&if le { n.to_le_bytes() } else { n.to_be_bytes() });
        f.extend_from_slice(data);
        f
    }

    fn pad_to(mut p: Vec<u8>, len: usize) -> Vec<u8> {
        p.resize(len.max(p.len()), 0);
        p
    }

    /// Q043 public header: flags, CID, version, 1-byte PN, 12-byte hash.
    fn q043_packet(flags: u8, version: &[u8; 4], frames: &[u8]) -> Vec<u8> {
        let mut p = vec![flags];
        p.extend_from_slice(&h("1122334455667788"));
        if flags & 1 != 0 {
            p.extend_from_slice(version);
        }
        p.push(0x01);
        p.extend_from_slice(&[0x5a; 12]);
        p.extend_from_slice(frames);
        pad_to(p, 1350)
    }

    /// Q046 long header: 0xc3, version, 0x50, CID, 4-byte PN, hash.
    fn q046_packet(frames: &[u8]) -> Vec<u8> {
        let mut p = vec![0xc3];
        p.extend_from_slice(b"Q046");
        p.push(0x50);
        p.extend_from_slice(&h("0102030405060708"));
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&[0x5a; 12]);
        p.extend_from_slice(frames);
        pad_to(p, 1350)
    }

    /// A protected Q050/T05x client Initial around `payload`.
    fn protected_packet(version: &[u8; 4], salt: &'static [u8; 20], payload: &[u8]) -> Vec<u8> {
        let dcid = h("c0ffee0123456789");
        let payload = pad_to(payload.to_vec(), 1200);
        let mut hdr = vec![0xc3];
        hdr.extend_from_slice(version);
        hdr.push(dcid.len() as u8);
        hdr.extend_from_slice(&dcid);
        hdr.push(0); // SCID
        hdr.push(0); // token
        let len = (4 + payload.len() + 16) as u16;
        hdr.extend_from_slice(&(0x4000 | len).to_be_bytes());
        hdr.extend_from_slice(&[0, 0, 0, 1]);
        let keys = InitialKeys::derive(VersionParams { salt, alt_salt: None, v2: false }, &dcid).unwrap();
        protect_long(&keys.client, &hdr, 1, &payload)
    }

    /// A gQUIC CRYPTO (0x08) frame.
    fn crypto_frame(offset: u16, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x08];
        f.extend_from_slice(&(0x4000 | offset).to_be_bytes());
        f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    // Suricata rust/src/quic/cyu.rs (from Salesforce's gQUIC fingerprinting
    // write-up): the four known answers.
    #[test]
    fn cyu_suricata_vectors() {
        let cases: [(u32, &str, &str); 4] = [
            (
                46,
                "PAD-SNI-STK-VER-CCS-NONC-AEAD-UAID-SCID-TCID-PDMD-SMHL-ICSL-NONP-PUBS-MIDS-SCLS-KEXS-XLCT-CSCT-COPT-CCRT-IRTT-CFCW-SFCW",
                "a46560d4548108cf99308319b3b85346",
            ),
            (43, "PAD-SNI-VER-CCS-PDMD-ICSL-MIDS-CFCW-SFCW", "e030dea1f2eea44ac7db5fe4de792acd"),
            (43, "PAD-SNI-STK-VER-CCS-SCID-PDMD-ICSL-MIDS-CFCW-SFCW", "0811fab28e41e8c8a33e220a15b964d9"),
            (43, "PAD-SNI-STK-VER-CCS-NONC-AEAD-SCID-PDMD-ICSL-PUBS-MIDS-KEXS-XLCT-CFCW-SFCW", "d8b208b236d176c89407500dbefb04c2"),
        ];
        for (v, tags, hash) in cases {
            let tags: Vec<String> = tags.split('-').map(String::from).collect();
            let (s, hh) = cyu(v, &tags);
            assert_eq!(s, format!("{v},{}", tags.join("-")));
            assert_eq!(hh, hash, "{s}");
        }
    }

    // suricata-verify quic-alerts/test.yaml: the two Q046 CYU strings/hashes.
    #[test]
    fn cyu_suricata_verify_vectors() {
        for (s, hash) in [
            ("46,PAD-SNI-VER-CCS-UAID-TCID-PDMD-SMHL-ICSL-NONP-MIDS-SCLS-CSCT-COPT-IRTT-CFCW-SFCW", "910a5e3a4d51593bd59a44611544f209"),
            ("46,PAD-SNI-STK-SNO-VER-CCS-NONC-AEAD-UAID-SCID-TCID-PDMD-SMHL-ICSL-NONP-PUBS-MIDS-SCLS-KEXS-XLCT-CSCT-COPT-CCRT-IRTT-CFCW-SFCW", "7b3ceb1adc974ad360cfa634e8d0a730"),
        ] {
            let (v, tags) = s.split_once(',').unwrap();
            let tags: Vec<String> = tags.split('-').map(String::from).collect();
            assert_eq!(cyu(v.parse().unwrap(), &tags), (s.to_string(), hash.to_string()));
        }
    }

    #[test]
    fn q043_public_header() {
        let p = q043_packet(0x09, b"Q043", &stream1(&chlo_q043(), false));
        assert!(looks_like_gquic(&p));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!(g.version, "Q043");
        assert_eq!(g.sni.as_deref(), Some("www.example.com"));
        assert_eq!(g.uaid, None);
        assert_eq!(g.tags, strings(&["PAD", "SNI", "VER", "CCS", "PDMD", "ICSL", "MIDS", "CFCW", "SFCW"]));
        assert_eq!(g.cyu_string, "43,PAD-SNI-VER-CCS-PDMD-ICSL-MIDS-CFCW-SFCW");
        assert_eq!(g.cyu_hash, "e030dea1f2eea44ac7db5fe4de792acd");
        // Chrome's flags 0x0d (legacy 8-byte CID code 0x0c) read the same.
        let p = q043_packet(0x0d, b"Q043", &stream1(&chlo_q043(), false));
        assert!(looks_like_gquic(&p));
        assert_eq!(parse_client_datagram(&p), Some(g.clone()));
        // A 2-byte packet number, and an ACK + STOP_WAITING + PING first.
        let mut frames = h("40 05 0000 01 00"); // ACK: largest 5, delay, 1 block, no timestamps
        frames.extend_from_slice(&h("06 0001 07")); // STOP_WAITING (2-byte PN), PING
        frames.extend_from_slice(&stream1(&chlo_q043(), false));
        let mut p = vec![0x19];
        p.extend_from_slice(&h("1122334455667788"));
        p.extend_from_slice(b"Q043");
        p.extend_from_slice(&[0, 2]);
        p.extend_from_slice(&[0x5a; 12]);
        p.extend_from_slice(&frames);
        assert_eq!(parse_client_datagram(&pad_to(p, 1350)), Some(g));
    }

    #[test]
    fn old_versions_little_endian_and_private_flags() {
        // Q035: little-endian data length.
        let p = q043_packet(0x0d, b"Q035", &stream1(&chlo_q043(), true));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!((g.version.as_str(), g.sni.as_deref()), ("Q035", Some("www.example.com")));
        assert!(g.cyu_string.starts_with("35,PAD-SNI-"));
        // Q025: a private-flags byte before the frames.
        let mut frames = vec![0x00];
        frames.extend_from_slice(&stream1(&chlo_q043(), true));
        let p = q043_packet(0x0d, b"Q025", &frames);
        assert_eq!(parse_client_datagram(&p).unwrap().version, "Q025");
    }

    #[test]
    fn versionless_public_header_takes_ver_tag() {
        // A later CHLO of a connection: flags 0x0c, no version field.
        let p = q043_packet(0x0c, b"????", &stream1(&chlo_q043(), false));
        assert!(!looks_like_gquic(&p));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!(g.version, "Q043");
        assert_eq!(g.cyu_hash, "e030dea1f2eea44ac7db5fe4de792acd");
        // Q035-style (little-endian) is found too.
        let p = q043_packet(0x0c, b"????", &stream1(&chlo_q043(), true));
        assert_eq!(parse_client_datagram(&p).unwrap().sni.as_deref(), Some("www.example.com"));
        // Without a VER tag there is no version to report.
        let no_ver = chlo(b"CHLO", &[(b"SNI\0", b"a.example")]);
        let p = q043_packet(0x0c, b"????", &stream1(&no_ver, false));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_no_version"));
    }

    #[test]
    fn q046_long_header() {
        let p = q046_packet(&stream1(&chlo_q046(), false));
        assert!(looks_like_gquic(&p));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!(g.version, "Q046");
        assert_eq!(g.sni.as_deref(), Some("adservice.google.com"));
        assert_eq!(g.uaid.as_deref(), Some("Chrome/79.0.3945.117 Linux x86_64"));
        assert_eq!(g.tags.len(), 25);
        assert_eq!(
            g.cyu_string,
            "46,PAD-SNI-STK-VER-CCS-NONC-AEAD-UAID-SCID-TCID-PDMD-SMHL-ICSL-NONP-PUBS-MIDS-SCLS-KEXS-XLCT-CSCT-COPT-CCRT-IRTT-CFCW-SFCW"
        );
        assert_eq!(g.cyu_hash, "a46560d4548108cf99308319b3b85346");
        // A 0-RTT (type 1) packet is not a client hello.
        let mut z = p.clone();
        z[0] = 0xd3;
        assert!(!looks_like_gquic(&z));
        assert_eq!(inspect_client_datagram(&z), Err("gquic_not_initial"));
    }

    // Suricata rust/src/quic/parser.rs `test_parse_gquic_q044`: a Q044
    // Initial whose CHLO has SNI "127.0.0.1" (911 bytes of PAD rebuilt).
    #[test]
    fn q044_suricata_packet() {
        let mut p = h("ff513034345005cad2cc06c4d0e400000001afac230bc5b56fb89800171b800143484c4f09000000\
                       504144008f030000534e490098030000564552009c03000043435300ac03000050444d44b0030000\
                       4943534cb40300004d494453b803000043464357bc03000053464357c0030000");
        p.extend_from_slice(&[0; 911]);
        p.extend_from_slice(&h("3132372e302e302e310000000001e8816092921ae87eed8086a215829158353039803a0900\
                                6400000000c0000000800000"));
        assert!(looks_like_gquic(&p));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!(g.version, "Q044");
        assert_eq!(g.sni.as_deref(), Some("127.0.0.1"));
        assert_eq!(g.cyu_string, "44,PAD-SNI-VER-CCS-PDMD-ICSL-MIDS-CFCW-SFCW");
    }

    #[test]
    fn q050_protected_chlo() {
        let mut payload = crypto_frame(0, &chlo_q046());
        payload.splice(0..0, [0u8; 3]);
        let p = protected_packet(b"Q050", &SALT_Q050, &payload);
        assert!(looks_like_gquic(&p));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!(g.version, "Q050");
        assert_eq!(g.sni.as_deref(), Some("adservice.google.com"));
        assert!(g.cyu_string.starts_with("50,PAD-SNI-STK-"));
        // The CHLO split over two CRYPTO frames of the same packet.
        let c = chlo_q046();
        let mut payload = crypto_frame(0, &c[..100]);
        payload.extend_from_slice(&crypto_frame(100, &c[100..]));
        let p2 = protected_packet(b"Q050", &SALT_Q050, &payload);
        assert_eq!(parse_client_datagram(&p2), Some(g));
        // Tampering breaks authentication.
        let mut bad = p.clone();
        bad[200] ^= 1;
        assert_eq!(inspect_client_datagram(&bad), Err("gquic_initial_auth_failed"));
        // The wrong salt (T050's) does not decrypt Q050.
        let p3 = protected_packet(b"Q050", &SALT_T050, &payload);
        assert_eq!(inspect_client_datagram(&p3), Err("gquic_initial_auth_failed"));
        // A CHLO repeated after a REJ sits further into the crypto stream.
        let p4 = protected_packet(b"Q050", &SALT_Q050, &crypto_frame(1300, &c));
        assert_eq!(parse_client_datagram(&p4), parse_client_datagram(&p));
        let p5 = protected_packet(b"Q050", &SALT_Q050, &crypto_frame(1300, &c[4..]));
        assert_eq!(inspect_client_datagram(&p5), Err("gquic_no_hello"));
    }

    /// A minimal TLS ClientHello handshake message with an SNI.
    fn tls_client_hello(sni: &str) -> Vec<u8> {
        let name = sni.as_bytes();
        let mut ext = vec![0x00, 0x00];
        let list_len = name.len() as u16 + 3;
        ext.extend_from_slice(&(list_len + 2).to_be_bytes());
        ext.extend_from_slice(&list_len.to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn t05x_protected_tls() {
        for (v, salt) in [(b"T050", &SALT_T050), (b"T051", &SALT_T051)] {
            let p = protected_packet(v, salt, &crypto_frame(0, &tls_client_hello("www.google.com")));
            assert!(looks_like_gquic(&p));
            let g = parse_client_datagram(&p).unwrap();
            assert_eq!(g.version.as_bytes(), v);
            assert_eq!(g.sni.as_deref(), Some("www.google.com"));
            assert!(g.tags.is_empty() && g.cyu_string.is_empty() && g.cyu_hash.is_empty());
            let ch = g.client_hello.as_deref().expect("the TLS ClientHello is kept");
            assert_eq!(ch.ciphers, vec![0x1301]);
            assert_eq!(ch.sni.as_deref(), Some("www.google.com"));
        }
        // A truncated ClientHello is reported, not guessed.
        let ch = tls_client_hello("www.google.com");
        let p = protected_packet(b"T051", &SALT_T051, &crypto_frame(0, &ch[..40]));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_client_hello_malformed"));
    }

    #[test]
    fn recognised_but_unsupported_versions() {
        for v in [b"Q051", b"T099", b"Q048"] {
            let p = protected_packet(v, &SALT_Q050, &crypto_frame(0, &chlo_q046()));
            assert!(looks_like_gquic(&p), "{v:?}");
            assert_eq!(inspect_client_datagram(&p), Err("gquic_encrypted_unsupported"));
        }
    }

    #[test]
    fn not_gquic_and_malformed() {
        // IETF QUIC v1 Initial, short headers, garbage.
        let mut v1 = vec![0xc0, 0, 0, 0, 1, 8];
        v1.extend_from_slice(&[0x83; 8]);
        v1 = pad_to(v1, 1200);
        assert!(!looks_like_gquic(&v1));
        assert_eq!(inspect_client_datagram(&v1), Err("gquic_not_gquic"));
        assert_eq!(inspect_client_datagram(&[]), Err("gquic_not_gquic"));
        assert_eq!(inspect_client_datagram(&[0x40; 50]), Err("gquic_not_gquic"));
        assert!(!looks_like_gquic(&[0x40; 50]));
        // A public reset.
        let p = q043_packet(0x0b, b"Q043", &[]);
        assert!(!looks_like_gquic(&p));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_not_gquic"));
        // Q046 version in a public header is not a gQUIC layout.
        let p = q043_packet(0x09, b"Q046", &stream1(&chlo_q043(), false));
        assert!(!looks_like_gquic(&p));
        // The server's REJ.
        let rej = chlo(b"REJ\0", &[(b"STK\0", b"token")]);
        let p = q043_packet(0x09, b"Q043", &stream1(&rej, false));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_not_chlo"));
        // Decreasing end offsets.
        let mut c = chlo_q043();
        c[12..16].copy_from_slice(&100u32.to_le_bytes());
        let p = q043_packet(0x09, b"Q043", &stream1(&c, false));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_chlo_malformed"));
        // A tag table longer than the stream data.
        let mut c = chlo_q043();
        c[4] = 200;
        let p = q043_packet(0x09, b"Q043", &stream1(&c, false));
        assert_eq!(inspect_client_datagram(&p), Err("gquic_chlo_truncated"));
        // Values beyond the data: the tags still count, the SNI is unknown.
        let c = chlo_q043();
        let p = q043_packet(0x09, b"Q043", &stream1(&c[..8 + 9 * 8 + 10], false));
        let g = parse_client_datagram(&p).unwrap();
        assert_eq!((g.sni, g.cyu_hash.as_str()), (None, "e030dea1f2eea44ac7db5fe4de792acd"));
        // Stream 3 is not the handshake stream.
        let mut f = stream1(&chlo_q043(), false);
        f[1] = 3;
        assert_eq!(inspect_client_datagram(&q043_packet(0x09, b"Q043", &f)), Err("gquic_no_hello"));
        // Stream 1 further in: a repeated CHLO counts, the rest of a
        // message does not.
        let mut f = vec![0xa4, 0x01, 0x04, 0x00];
        f.extend_from_slice(&stream1(&chlo_q043(), false)[2..]);
        let g = parse_client_datagram(&q043_packet(0x09, b"Q043", &f)).unwrap();
        assert_eq!(g.sni.as_deref(), Some("www.example.com"));
        let mut f = vec![0xa4, 0x01, 0x04, 0x00];
        f.extend_from_slice(&stream1(&chlo_q043()[4..], false)[2..]);
        assert_eq!(inspect_client_datagram(&q043_packet(0x09, b"Q043", &f)), Err("gquic_no_hello"));
        // Truncated headers.
        for n in 0..30 {
            let p = q046_packet(&stream1(&chlo_q046(), false));
            assert!(inspect_client_datagram(&p[..n]).is_err());
            let p = q043_packet(0x09, b"Q043", &stream1(&chlo_q043(), false));
            assert!(inspect_client_datagram(&p[..n]).is_err());
        }
    }

    #[test]
    fn tag_names() {
        assert_eq!(tag_name(b"PAD\0"), "PAD");
        assert_eq!(tag_name(b"SNI\0"), "SNI");
        assert_eq!(tag_name(b"UAID"), "UAID");
        assert_eq!(tag_name(b"\0\0\0\0"), "");
        assert_eq!(tag_name(b"A\0B\x01"), "A\\x00B\\x01");
    }

    fn valid_packets() -> Vec<Vec<u8>> {
        vec![
            q043_packet(0x0d, b"Q043", &stream1(&chlo_q043(), false)),
            q043_packet(0x0c, b"????", &stream1(&chlo_q043(), true)),
            q046_packet(&stream1(&chlo_q046(), false)),
            protected_packet(b"Q050", &SALT_Q050, &crypto_frame(0, &chlo_q046())),
        ]
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500)) {
            let _ = looks_like_gquic(&data);
            let _ = inspect_client_datagram(&data);
        }

        #[test]
        fn gquic_prefixed_bytes_never_panic(
            kind in 0usize..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            // Headers that get past the version checks, then noise.
            let mut p = match kind {
                0 => h("0d 1122334455667788 51303433 01"),
                1 => h("c3 51303436 50 0102030405060708 00000001"),
                2 => h("ff 51303434 50 0102030405060708 00000001"),
                _ => h("0c 1122334455667788 01"),
            };
            p.extend_from_slice(&[0; 12]);
            p.extend_from_slice(&tail);
            let _ = looks_like_gquic(&p);
            let _ = inspect_client_datagram(&p);
        }

        #[test]
        fn mutated_hellos_never_panic(
            which in 0usize..4,
            edits in proptest::collection::vec((0usize..1400, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..1400,
        ) {
            let mut p = valid_packets().swap_remove(which);
            for (at, b) in edits {
                if let Some(x) = p.get_mut(at) {
                    *x = b;
                }
            }
            p.truncate(cut.max(1));
            let _ = looks_like_gquic(&p);
            let _ = inspect_client_datagram(&p);
        }
    }

    /// Corpus checks: see `corpus` below.
    mod corpus {
        use std::collections::BTreeMap;
        use std::path::Path;

        use super::super::*;
        use crate::decode;
        use crate::quic::corpus_tests::{capture_frames as frames, corpus_dir};

        /// Minimal capture walker: classic pcap records, or pcapng
        /// enhanced/simple packet blocks. (link type, captured bytes).
        /// Frame number (1-based) → result, for every UDP datagram.
        fn results(f: &[u8]) -> BTreeMap<usize, Result<GquicHello, &'static str>> {
            let mut m = BTreeMap::new();
            for (i, (lt, frame)) in frames(f).into_iter().enumerate() {
                let Ok(d) = decode::decode(lt, frame) else { continue };
                if d.proto == 17 {
                    m.insert(i + 1, inspect_client_datagram(d.payload));
                }
            }
            m
        }

        /// (frame, expected SNI) from an oracle tshark.tsv: the `gquic_sni`
        /// column, and `sni` of client hellos in T05x packets.
        fn oracle_snis(tsv: &str) -> Vec<(usize, String)> {
            let mut lines = tsv.lines();
            let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
            let col = |n: &str| head.iter().position(|c| *c == n);
            let (Some(fr), Some(gs), Some(sn), Some(qv), Some(msgs)) =
                (col("frame"), col("gquic_sni"), col("sni"), col("quic_version"), col("msgs"))
            else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for l in lines {
                let c: Vec<&str> = l.split('\t').collect();
                let get = |i: usize| c.get(i).copied().unwrap_or_default();
                let Ok(frame) = get(fr).parse() else { continue };
                if !get(gs).is_empty() {
                    out.push((frame, get(gs).to_string()));
                } else if get(qv).starts_with("0x5430") && get(msgs).contains("client_hello") && !get(sn).is_empty() {
                    out.push((frame, get(sn).to_string()));
                }
            }
            out
        }

        /// (pcap_cnt, cyu hash, cyu string) from a suricata-verify test.yaml.
        fn yaml_cyus(yaml: &str) -> Vec<(usize, String, String)> {
            let mut out: Vec<(usize, String, String)> = Vec::new();
            let mut cnt = 0;
            for l in yaml.lines().map(str::trim) {
                let val = |l: &str| l.split_once(':').map(|x| x.1.trim().trim_matches('"').to_string());
                if l.starts_with("pcap_cnt:") {
                    cnt = val(l).and_then(|v| v.parse().ok()).unwrap_or(0);
                } else if l.starts_with("quic.cyu[0].hash:") {
                    out.push((cnt, val(l).unwrap_or_default(), String::new()));
                } else if l.starts_with("quic.cyu[0].string:") {
                    if let Some(last) = out.last_mut().filter(|x| x.0 == cnt) {
                        last.2 = val(l).unwrap_or_default();
                    }
                }
            }
            out
        }

        /// User agents nDPI reported for a capture (its `.pcap.out`).
        fn ndpi_user_agents(out: &str) -> Vec<String> {
            out.split("[User-Agent: ").skip(1).filter_map(|s| s.split_once(']').map(|x| x.0.to_string())).collect()
        }

        const CAPTURES: [(&str, Option<&str>); 10] = [
            ("suricata-verify/tests/quic-cyu/input.pcap", None),
            ("suricata-verify/tests/quic-alerts/input.pcap", Some("suricata-verify__quic-alerts__input.pcap")),
            ("ndpi/tests/cfgs/default/pcap/gquic.pcap", Some("ndpi__gquic.pcap")),
            ("ndpi/tests/cfgs/default/pcap/quic_q50.pcap", Some("ndpi__quic_q50.pcap")),
            ("ndpi/tests/cfgs/default/pcap/quic_t50.pcap", Some("ndpi__quic_t50.pcap")),
            ("ndpi/tests/cfgs/default/pcap/quic_t51.pcap", Some("ndpi__quic_t51.pcap")),
            ("ndpi/tests/cfgs/default/pcap/wechat.pcap", Some("ndpi__wechat.pcap")),
            ("ndpi/tests/cfgs/default/pcap/youtubeupload.pcap", Some("ndpi__youtubeupload.pcap")),
            ("ndpi/tests/cfgs/default/pcap/http_ipv6.pcap", Some("ndpi__http_ipv6.pcap")),
            ("arkime/tests/pcap/arkime_synthetic.pcap", Some("arkime__arkime_synthetic.pcap")),
        ];

        #[test]
        fn gquic_corpus_sni_cyu_uaid() {
            let Some(dir) = corpus_dir() else { return };
            let (mut sni_ok, mut sni_n, mut cyu_ok, mut cyu_n, mut ua_ok, mut ua_n) = (0, 0, 0, 0, 0, 0);
            let mut problems = Vec::new();
            for (path, oracle) in CAPTURES {
                let Ok(file) = std::fs::read(dir.join(path)) else {
                    println!("SKIPPED: {path} missing");
                    continue;
                };
                let res = results(&file);
                let found: Vec<_> = res.iter().filter_map(|(f, r)| Some((*f, r.as_ref().ok()?))).collect();
                println!("{path}: {} UDP datagrams, {} gQUIC hellos", res.len(), found.len());
                for (f, g) in &found {
                    println!("  frame {f}: {} sni={:?} cyu={} {}", g.version, g.sni, g.cyu_hash, g.cyu_string);
                }
                let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
                for r in res.values() {
                    if let Err(e) = r {
                        *reasons.entry(e).or_default() += 1;
                    }
                }
                println!("  not a hello: {reasons:?}");
                if let Some(name) = oracle {
                    let tsv = std::fs::read_to_string(dir.join("oracle").join(format!("{name}.tshark.tsv"))).unwrap_or_default();
                    let want = oracle_snis(&tsv);
                    for (frame, sni) in &want {
                        sni_n += 1;
                        let got = res.get(frame).cloned();
                        match &got {
                            Some(Ok(g)) if g.sni.as_deref() == Some(sni.as_str()) => sni_ok += 1,
                            _ => problems.push(format!("{path} frame {frame}: tshark SNI {sni}, got {got:?}")),
                        }
                    }
                    for (f, _) in &found {
                        if !want.iter().any(|(w, _)| w == f) {
                            problems.push(format!("{path} frame {f}: hello tshark does not show"));
                        }
                    }
                }
                let yaml = std::fs::read_to_string(dir.join(path).with_file_name("test.yaml")).unwrap_or_default();
                for (cnt, hash, string) in yaml_cyus(&yaml) {
                    cyu_n += 1;
                    match res.get(&cnt) {
                        Some(Ok(g)) if g.cyu_hash == hash && g.cyu_string == string => cyu_ok += 1,
                        other => problems.push(format!("{path} pcap_cnt {cnt}: CYU {hash} {string}, got {other:?}")),
                    }
                }
                if let Some(stem) = path.strip_prefix("ndpi/tests/cfgs/default/pcap/") {
                    let out = std::fs::read_to_string(dir.join(format!("ndpi/tests/cfgs/default/result/{stem}.out"))).unwrap_or_default();
                    let uas = ndpi_user_agents(&out);
                    for (f, g) in &found {
                        if let Some(ua) = &g.uaid {
                            ua_n += 1;
                            if uas.contains(ua) {
                                ua_ok += 1;
                            } else {
                                problems.push(format!("{path} frame {f}: UAID {ua:?} not in nDPI's {uas:?}"));
                            }
                        }
                    }
                }
            }
            println!("SNI agreement with tshark: {sni_ok}/{sni_n}");
            println!("CYU agreement with suricata-verify: {cyu_ok}/{cyu_n}");
            println!("UAID agreement with nDPI: {ua_ok}/{ua_n}");
            for p in &problems {
                println!("MISMATCH {p}");
            }
            assert!(problems.is_empty(), "{} mismatches", problems.len());
        }

        /// Oracle name → capture path, from the MANIFEST's per-file table
        /// (rows that name an oracle).
        fn manifest(dir: &Path) -> Vec<(String, String)> {
            pinwatch_testkit::corpus::manifest(dir).into_iter().filter(|r| !r.kinds.is_empty()).map(|r| (r.oracle, r.rel)).collect()
        }

        /// Every capture with a tshark oracle: the gQUIC hellos found are
        /// exactly the frames where tshark shows a gQUIC (or T05x) SNI, and
        /// the probe never claims an IETF QUIC Initial.
        #[test]
        fn gquic_corpus_sweep() {
            let Some(dir) = corpus_dir() else { return };
            let (mut files, mut datagrams, mut hellos, mut want_n, mut ok) = (0, 0, 0, 0, 0);
            let (mut probe_hits, mut probe_hellos, mut overlap) = (0, 0, 0);
            let mut problems = Vec::new();
            for (name, path) in manifest(&dir) {
                let Ok(tsv) = std::fs::read_to_string(dir.join("oracle").join(format!("{name}.tshark.tsv"))) else {
                    continue;
                };
                let Ok(file) = std::fs::read(dir.join(&path)) else {
                    continue;
                };
                files += 1;
                let want = oracle_snis(&tsv);
                want_n += want.len();
                let mut got = BTreeMap::new();
                for (i, (lt, frame)) in frames(&file).into_iter().enumerate() {
                    let Ok(d) = decode::decode(lt, frame) else { continue };
                    if d.proto != 17 {
                        continue;
                    }
                    datagrams += 1;
                    let probe = looks_like_gquic(d.payload);
                    if probe && super::super::super::looks_like_quic_initial(d.payload) {
                        overlap += 1;
                    }
                    let r = inspect_client_datagram(d.payload);
                    probe_hits += usize::from(probe);
                    probe_hellos += usize::from(probe && r.is_ok());
                    if let Ok(g) = r {
                        got.insert(i + 1, g);
                    }
                }
                hellos += got.len();
                for (frame, sni) in &want {
                    match got.get(frame) {
                        Some(g) if g.sni.as_deref() == Some(sni.as_str()) => ok += 1,
                        other => problems.push(format!("{path} frame {frame}: tshark {sni}, got {other:?}")),
                    }
                }
                for (frame, g) in &got {
                    if !want.iter().any(|(w, _)| w == frame) {
                        problems.push(format!("{path} frame {frame}: extra hello {g:?}"));
                    }
                }
            }
            println!(
                "{files} captures, {datagrams} UDP datagrams, {hellos} gQUIC hellos; \
                 tshark SNI reproduced {ok}/{want_n}; probe: {probe_hits} hits, {probe_hellos} of them hellos; \
                 probe/IETF-Initial overlap {overlap}"
            );
            for p in &problems {
                println!("MISMATCH {p}");
            }
            assert!(problems.is_empty() && overlap == 0);
        }
    }
}
