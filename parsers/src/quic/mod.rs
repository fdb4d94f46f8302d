//! QUIC Initial analyser: UDP payloads of one QUIC connection in, the
//! ClientHello/ServerHello summaries and Initial-level CONNECTION_CLOSEs out.
//!
//! Heads up! Before working on this module read RFC 8999 (invariants),
//! RFC 9000 §17 (packet formats), §19 (frames) and §A.3 (packet numbers),
//! RFC 9001 §5 (packet protection) and Appendix A (the test vectors used
//! below), RFC 9369 §3 (what v2 changes) and `docs/domain.md` (QUIC alerts).
//!
//! Initial packets are encrypted with keys anyone can derive from the
//! client's first Destination Connection ID, so a passive sensor can read
//! them: that is where the TLS ClientHello and ServerHello travel (in CRYPTO
//! frames), and where an endpoint that gives up early sends its
//! CONNECTION_CLOSE (a TLS alert becomes error code `0x100 + alert`).
//! Handshake, 0-RTT and 1-RTT packets are only recognised, never decrypted.
//!
//! ## Contract
//! - **Sans-IO and deterministic.** The caller feeds each UDP payload of one
//!   connection, in capture order, to [`QuicConn::datagram`] with its
//!   direction (the client is whoever sent the first Initial;
//!   [`looks_like_quic_initial`] is the probe for that). Nothing reads the
//!   clock; a datagram is processed completely within the call.
//! - **Never panics, bounded memory.** CRYPTO data is reassembled per
//!   direction within [`MAX_CRYPTO_BYTES`] bytes and [`MAX_FRAGMENTS`]
//!   out-of-order pieces; breaking a limit drops that direction's stream and
//!   is reported once ([`QuicEvent::Overflow`]). Each datagram is decrypted
//!   into a temporary copy that is freed before the call returns.
//!   [`QuicConn::heap_bytes`] reports what is held between calls.
//! - **Counted outcomes, not errors.** Bytes that cannot be read come back
//!   as [`QuicEvent::Malformed`] or [`QuicEvent::Undecryptable`] with a
//!   stable snake_case counter name; processing goes on with the next
//!   datagram.
//!
//! ## Versions
//! Initial keys are derived for QUIC v1 (`0x00000001`), v2 (`0x6b3343cf`,
//! with its own salt, `quicv2` labels and rotated packet-type bits), the
//! IETF drafts 22–34 (`0xff000016..=0xff000022`; draft-33/34 already use the
//! v1 salt, 29–32 the draft-29 one, 23–28 the draft-23 one) and Facebook
//! mvfst (`0xfaceb001/2/e`). An Initial with a reserved version
//! (`0x?a?a?a?a`, sent to force Version Negotiation) is tried with the
//! draft-29 and then the v1 salt. Other versions (gQUIC Q0xx and T050/T051 — see [`gquic`] for their client hellos —
//! whose salts are public but whose frames are gQUIC's) are reported as
//! [`QuicEvent::Undecryptable`] (`quic_unsupported_version`).
//!
//! ## Keys, Retry and Version Negotiation
//! Client and server Initials are protected with keys derived from the
//! Destination Connection ID of the client's *first* Initial, which the
//! connection remembers ([`QuicConn::original_dcid`]); later client Initials
//! carry the server's connection ID but keep those keys. After a Retry (its
//! integrity tag is checked for v1 and v2, RFC 9001 §5.8; of several, the
//! client follows the first) the client's next Initial goes to the Retry's
//! Source Connection ID and both directions switch to keys from that ID.
//! After a Version Negotiation packet CRYPTO reassembly starts over. A
//! client Initial that only decrypts with its own DCID is a new attempt on
//! the same 5-tuple: the keys move to that DCID, reassembly starts over and
//! the stored hellos are forgotten, so the new connection's are reported.
//! A ClientHello or ServerHello whose summary equals the last one reported
//! (a retransmission after Retry, or a second ClientHello after a
//! HelloRetryRequest that changed only the key share) is not reported again.
//!
//! ## Not covered
//! Handshake/1-RTT decryption (needs the TLS secrets), gQUIC, Retry and
//! Version Negotiation sent by the client side (reported as
//! `quic_unexpected_direction`), IP fragments (the caller's decoder drops
//! them), and a server Initial seen before any client Initial.

mod assembler;
mod crypto;
mod frames;
pub mod gquic;
mod header;

#[cfg(test)]
mod corpus_tests;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit};

pub use assembler::{MAX_CRYPTO_BYTES, MAX_FRAGMENTS};
pub use header::{is_reserved, looks_like_quic_initial, version, MAX_CID_LEN};

use crate::hello::{ClientHello, ServerHello};
use crate::tls::{self, hs};
use assembler::{CryptoStream, Insert};
use crypto::InitialKeys;
use frames::Frame;
use header::{Body, LongPacket, VersionParams};

/// Longest CONNECTION_CLOSE reason phrase kept (bytes; longer ones are cut).
pub const MAX_REASON_LEN: usize = 256;
/// Most versions kept from one Version Negotiation packet.
pub const MAX_NEGOTIATION_VERSIONS: usize = 64;

/// What [`QuicConn::datagram`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicEvent {
    /// A ClientHello reassembled from Initial CRYPTO frames (use
    /// `Transport::Quic` for JA4).
    ClientHello(Box<ClientHello>),
    /// A ServerHello (or HelloRetryRequest) from the server's Initials.
    ServerHello(Box<ServerHello>),
    /// A CONNECTION_CLOSE frame in a decrypted Initial packet.
    ConnectionClose {
        /// True when the client sent the frame.
        from_client: bool,
        /// Error code as sent: a transport error code (frame type 0x1c) or
        /// an application's own code (0x1d).
        error_code: u64,
        /// Frame type that triggered the error (transport variant 0x1c only).
        frame_type: Option<u64>,
        /// Reason phrase, lossy UTF-8, cut at [`MAX_REASON_LEN`] bytes.
        reason: String,
        /// The TLS alert for a transport close with a CRYPTO_ERROR code
        /// (`0x100..=0x1ff`, RFC 9001 §4.8): `error_code - 0x100`.
        tls_alert: Option<u8>,
    },
    /// The server asked the client to retry with a token (address validation).
    Retry,
    /// The server does not support the client's version.
    VersionNegotiation {
        /// Versions the server listed (at most [`MAX_NEGOTIATION_VERSIONS`]).
        versions: Vec<u32>,
    },
    /// A packet that could not be decrypted; `why` is a stable counter name:
    /// `quic_unsupported_version`, `quic_no_client_initial` (a server Initial
    /// before any client Initial), `quic_initial_auth_failed`,
    /// `quic_packet_too_short`, `quic_key_derivation`.
    Undecryptable {
        /// True when the packet came from the client.
        from_client: bool,
        /// Stable counter name, one of the list above.
        why: &'static str,
    },
    /// Bytes that are not valid QUIC; `what` is a stable counter name
    /// (`quic_header_truncated`, `quic_length_exceeds_datagram`,
    /// `quic_cid_too_long`, `quic_retry_truncated`, `quic_retry_integrity`,
    /// `quic_unexpected_direction`, `quic_unknown_frame`,
    /// `quic_frame_truncated`, `quic_client_hello`, `quic_server_hello`).
    Malformed {
        /// True when the bytes came from the client.
        from_client: bool,
        /// Stable counter name, one of the list above.
        what: &'static str,
    },
    /// A CRYPTO reassembly limit was broken; that direction's handshake
    /// messages are no longer extracted.
    Overflow {
        /// True for the client's CRYPTO stream.
        from_client: bool,
    },
}

/// A connection ID of at most [`MAX_CID_LEN`] bytes, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cid {
    len: u8,
    bytes: [u8; MAX_CID_LEN],
}

impl Cid {
    fn new(b: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; MAX_CID_LEN];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Cid { len: b.len() as u8, bytes })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(MAX_CID_LEN)]
    }
}

/// Derived keys, cached for the (version, salt, connection ID) they belong to.
#[derive(Debug, Clone)]
struct KeyCache {
    version: u32,
    salt: &'static [u8; 20],
    cid: Cid,
    keys: InitialKeys,
}

const CLIENT: usize = 0;
const SERVER: usize = 1;

fn dir(from_client: bool) -> usize {
    if from_client {
        CLIENT
    } else {
        SERVER
    }
}

/// State for one QUIC connection, both directions.
#[derive(Debug, Clone, Default)]
pub struct QuicConn {
    /// Version of the last decrypted Initial, else of the first long header.
    version: Option<u32>,
    /// The DCID the Initial keys come from.
    key_cid: Option<Cid>,
    /// SCID of the Retry the client will follow: its next DCID.
    retry_scid: Option<Cid>,
    /// The client followed a Retry (it follows one at most, RFC 9000 §17.2.5.2).
    retried: bool,
    keys: Option<Box<KeyCache>>,
    largest_pn: [Option<u64>; 2],
    crypto: [CryptoStream; 2],
    decrypted: [u64; 2],
    client_hello: Option<Box<ClientHello>>,
    server_hello: Option<Box<ServerHello>>,
}

impl QuicConn {
    /// A connection that has seen no datagram yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest ClientHello seen (after a HelloRetryRequest or a Version
    /// Negotiation, the client's second one).
    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client_hello.as_deref()
    }

    /// The latest ServerHello seen (the real one after a HelloRetryRequest).
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server_hello.as_deref()
    }

    /// QUIC version of the last decrypted Initial, else of the first long
    /// header seen (Version Negotiation excluded).
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// The client DCID the Initial keys are derived from (after a Retry, the
    /// client's new one).
    pub fn original_dcid(&self) -> Option<&[u8]> {
        self.key_cid.as_ref().map(Cid::as_slice)
    }

    /// Initial packets decrypted so far from the client or the server.
    pub fn decrypted_initials(&self, from_client: bool) -> u64 {
        self.decrypted[dir(from_client)]
    }

    /// Heap bytes held between calls (for memory accounting): reassembly
    /// buffers, cached keys (dropped once both hellos are seen) and the
    /// stored hellos.
    pub fn heap_bytes(&self) -> usize {
        self.crypto.iter().map(CryptoStream::heap_bytes).sum::<usize>()
            + self.keys.as_ref().map_or(0, |_| std::mem::size_of::<KeyCache>())
            + self.client_hello.as_deref().map_or(0, client_hello_heap)
            + self.server_hello.as_deref().map_or(0, server_hello_heap)
    }

    /// Process one UDP payload (which may hold several coalesced packets).
    pub fn datagram(&mut self, from_client: bool, data: &[u8], out: &mut Vec<QuicEvent>) {
        let mut rest = data;
        // A packet without the long-header bit is a short-header (1-RTT)
        // packet, or padding after the last coalesced packet: either way it
        // runs to the end of the datagram.
        while rest.first().is_some_and(|b| b & 0x80 != 0) {
            let pkt = match header::parse_long(rest) {
                Ok(p) => p,
                Err(what) => {
                    out.push(QuicEvent::Malformed { from_client, what });
                    return;
                }
            };
            rest = rest.get(pkt.bytes.len()..).unwrap_or(&[]);
            if pkt.version != version::NEGOTIATION && self.version.is_none() {
                self.version = Some(pkt.version);
            }
            match pkt.body {
                Body::Initial { pn_offset, .. } => self.initial(from_client, &pkt, pn_offset, out),
                Body::ZeroRtt | Body::Handshake => {}
                Body::Retry { .. } => self.retry(from_client, &pkt, out),
                Body::VersionNegotiation { versions } => {
                    if from_client {
                        out.push(QuicEvent::Malformed { from_client, what: "quic_unexpected_direction" });
                        continue;
                    }
                    let versions = versions
                        .chunks_exact(4)
                        .take(MAX_NEGOTIATION_VERSIONS)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    // The client starts a new attempt: new CRYPTO streams.
                    self.crypto = Default::default();
                    self.largest_pn = [None; 2];
                    out.push(QuicEvent::VersionNegotiation { versions });
                }
                Body::UnknownVersion => {
                    out.push(QuicEvent::Undecryptable { from_client, why: "quic_unsupported_version" });
                }
            }
        }
    }

    fn retry(&mut self, from_client: bool, pkt: &LongPacket<'_>, out: &mut Vec<QuicEvent>) {
        if from_client {
            out.push(QuicEvent::Malformed { from_client, what: "quic_unexpected_direction" });
            return;
        }
        if let Some(odcid) = self.key_cid {
            if retry_integrity_ok(pkt.version, odcid.as_slice(), pkt.bytes) == Some(false) {
                out.push(QuicEvent::Malformed { from_client, what: "quic_retry_integrity" });
                return;
            }
        }
        // A client acts on the first Retry only; later ones are reported
        // but do not change which DCID we expect.
        if self.retry_scid.is_none() && !self.retried {
            self.retry_scid = Cid::new(pkt.scid);
        }
        out.push(QuicEvent::Retry);
    }

    /// Keys for (version, salt, cid), from the cache or freshly derived.
    fn keys_for(&mut self, version: u32, p: VersionParams, cid: Cid) -> Option<&InitialKeys> {
        let hit = self.keys.as_ref().is_some_and(|k| k.version == version && k.salt == p.salt && k.cid == cid);
        if !hit {
            let keys = InitialKeys::derive(p, cid.as_slice())?;
            self.keys = Some(Box::new(KeyCache { version, salt: p.salt, cid, keys }));
        }
        self.keys.as_deref().map(|k| &k.keys)
    }

    /// Decrypt an Initial with keys from `cid`; for reserved versions try
    /// the alternative salt too (the one that worked last time first).
    fn decrypt(&mut self, from_client: bool, cid: Cid, pkt: &LongPacket<'_>, pn_offset: usize) -> Result<crypto::Plaintext, &'static str> {
        let p = header::params(pkt.version).ok_or("quic_unsupported_version")?;
        let mut salts = [Some(p.salt), p.alt_salt];
        if let (Some(k), Some(alt)) = (&self.keys, p.alt_salt) {
            if k.version == pkt.version && k.cid == cid && k.salt == alt {
                salts.swap(0, 1);
            }
        }
        let largest = self.largest_pn[dir(from_client)];
        let mut result = Err("quic_key_derivation");
        for salt in salts.into_iter().flatten() {
            let Some(keys) = self.keys_for(pkt.version, VersionParams { salt, ..p }, cid) else {
                continue;
            };
            let k = if from_client { &keys.client } else { &keys.server };
            result = crypto::unprotect_long(k, pkt.bytes, pn_offset, largest);
            if result.is_ok() {
                break;
            }
        }
        result
    }

    /// Make `cid` the key connection ID and start CRYPTO reassembly over.
    fn rekey(&mut self, cid: Cid) {
        self.key_cid = Some(cid);
        self.crypto = Default::default();
    }

    /// Decrypt a client Initial: with the keys of the connection's key
    /// connection ID (after a Retry, its source connection ID), else of the
    /// packet's own DCID, which then starts a new connection. `None` (and an
    /// `Undecryptable` event if it had a DCID) when neither works.
    #[inline]
    fn client_initial(&mut self, pkt: &LongPacket<'_>, pn_offset: usize, out: &mut Vec<QuicEvent>) -> Option<crypto::Plaintext> {
        let dcid = Cid::new(pkt.dcid)?;
        if self.retry_scid == Some(dcid) {
            self.retry_scid = None;
            self.retried = true;
            self.rekey(dcid);
        }
        let key_cid = *self.key_cid.get_or_insert(dcid);
        match self.decrypt(true, key_cid, pkt, pn_offset) {
            Ok(p) => Some(p),
            // A new attempt with a fresh DCID (after Version Negotiation,
            // or a reused 5-tuple): its own DCID gives the keys.
            Err(why) => match (key_cid != dcid).then(|| self.decrypt(true, dcid, pkt, pn_offset)) {
                Some(Ok(p)) => {
                    // A new connection (unless we missed the Retry the
                    // client followed): its hellos are reported afresh.
                    if self.retry_scid.is_none() && !self.retried {
                        self.client_hello = None;
                        self.server_hello = None;
                    }
                    self.retry_scid = None;
                    self.retried = false;
                    self.rekey(dcid);
                    self.largest_pn = [None; 2];
                    Some(p)
                }
                _ => {
                    out.push(QuicEvent::Undecryptable { from_client: true, why });
                    None
                }
            },
        }
    }

    /// One Initial packet: decrypt it, take its CRYPTO frames (the hellos)
    /// and CONNECTION_CLOSE frames.
    fn initial(&mut self, from_client: bool, pkt: &LongPacket<'_>, pn_offset: usize, out: &mut Vec<QuicEvent>) {
        let d = dir(from_client);
        let plain = if from_client {
            let Some(p) = self.client_initial(pkt, pn_offset, out) else { return };
            p
        } else {
            let Some(key_cid) = self.key_cid else {
                out.push(QuicEvent::Undecryptable { from_client, why: "quic_no_client_initial" });
                return;
            };
            match self.decrypt(false, key_cid, pkt, pn_offset) {
                Ok(p) => p,
                Err(why) => {
                    out.push(QuicEvent::Undecryptable { from_client, why });
                    return;
                }
            }
        };
        self.largest_pn[d] = Some(self.largest_pn[d].map_or(plain.pn, |l| l.max(plain.pn)));
        self.version = Some(pkt.version);
        self.decrypted[d] += 1;

        let stream = &mut self.crypto[d];
        let mut overflow = false;
        let res = frames::parse_frames(&plain.payload, |f| match f {
            Frame::Crypto { offset, data } => overflow |= stream.insert(offset, data) == Insert::Overflow,
            Frame::Close { error_code, frame_type, reason } => {
                let reason = reason.get(..MAX_REASON_LEN).unwrap_or(reason);
                out.push(QuicEvent::ConnectionClose {
                    from_client,
                    error_code,
                    frame_type,
                    reason: String::from_utf8_lossy(reason).into_owned(),
                    tls_alert: match (frame_type, error_code) {
                        (Some(_), 0x100..=0x1ff) => Some((error_code - 0x100) as u8),
                        _ => None,
                    },
                });
            }
            Frame::Padding | Frame::Ping | Frame::Ack => {}
        });
        if let Err(what) = res {
            out.push(QuicEvent::Malformed { from_client, what });
        }
        let (ch_slot, sh_slot) = (&mut self.client_hello, &mut self.server_hello);
        overflow |= stream.messages(|ty, body| match ty {
            hs::CLIENT_HELLO => match tls::parse_client_hello(body) {
                Some(ch) if ch_slot.as_deref() != Some(&ch) => {
                    out.push(QuicEvent::ClientHello(Box::new(ch.clone())));
                    *ch_slot = Some(Box::new(ch));
                }
                Some(_) => {}
                None => out.push(QuicEvent::Malformed { from_client, what: "quic_client_hello" }),
            },
            hs::SERVER_HELLO => match tls::parse_server_hello(body) {
                Some(sh) if sh_slot.as_deref() != Some(&sh) => {
                    out.push(QuicEvent::ServerHello(Box::new(sh.clone())));
                    *sh_slot = Some(Box::new(sh));
                }
                Some(_) => {}
                None => out.push(QuicEvent::Malformed { from_client, what: "quic_server_hello" }),
            },
            _ => {}
        }) == Insert::Overflow;
        if overflow {
            out.push(QuicEvent::Overflow { from_client });
        }
        if self.client_hello.is_some() && self.server_hello.is_some() {
            // Handshake seen: later Initials (ACKs, a CONNECTION_CLOSE) are
            // rare, so re-derive for them rather than hold ~3 KiB of keys.
            self.keys = None;
        }
    }
}

/// The fixed Retry integrity key and nonce (RFC 9001 §5.8, RFC 9369
/// §3.3.3); `None` for versions whose Retry key we do not carry.
fn retry_aead(version: u32) -> Option<(Aes128Gcm, [u8; 12])> {
    const V1: ([u8; 16], [u8; 12]) = (
        [0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e],
        [0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb],
    );
    const V2: ([u8; 16], [u8; 12]) = (
        [0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2, 0x60, 0xfb, 0xcb, 0xce, 0xad, 0x7c, 0xcc, 0x92],
        [0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c, 0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a],
    );
    let (key, nonce) = match version {
        version::V1 => V1,
        version::V2 => V2,
        _ => return None,
    };
    Some((Aes128Gcm::new_from_slice(&key).ok()?, nonce))
}

/// The Retry pseudo-packet: ODCID length, ODCID, the Retry packet without its tag.
fn retry_pseudo_packet(odcid: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut aad = Vec::with_capacity(1 + odcid.len() + body.len());
    aad.push(u8::try_from(odcid.len()).ok()?);
    aad.extend_from_slice(odcid);
    aad.extend_from_slice(body);
    Some(aad)
}

/// Check a Retry packet's integrity tag: AES-128-GCM over the pseudo-packet
/// with the version's fixed key and nonce. `None` when it cannot be checked.
fn retry_integrity_ok(version: u32, odcid: &[u8], retry: &[u8]) -> Option<bool> {
    let (aead, nonce) = retry_aead(version)?;
    let split = retry.len().checked_sub(crypto::TAG_LEN)?;
    let (body, tag) = retry.split_at(split);
    let tag: [u8; crypto::TAG_LEN] = tag.try_into().ok()?;
    let aad = retry_pseudo_packet(odcid, body)?;
    Some(aead.decrypt_in_place_detached(&nonce.into(), &aad, &mut [], &tag.into()).is_ok())
}

fn client_hello_heap(ch: &ClientHello) -> usize {
    std::mem::size_of::<ClientHello>()
        + ch.ciphers.capacity() * 2
        + ch.compression.capacity()
        + ch.extensions.capacity() * 2
        + ch.sni.as_ref().map_or(0, String::capacity)
        + ch.alpn.capacity() * std::mem::size_of::<String>()
        + ch.alpn.iter().map(String::capacity).sum::<usize>()
        + ch.alpn_first_raw.as_ref().map_or(0, Vec::capacity)
        + ch.supported_groups.capacity() * 2
        + ch.ec_point_formats.capacity()
        + ch.signature_algorithms.capacity() * 2
        + ch.supported_versions.capacity() * 2
}

fn server_hello_heap(sh: &ServerHello) -> usize {
    std::mem::size_of::<ServerHello>() + sh.extensions.capacity() * 2 + sh.alpn.as_ref().map_or(0, String::capacity)
}

#[cfg(test)]
mod tests;
