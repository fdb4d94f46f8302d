//! TLS record-stream parser: reassembled bytes of one direction in, handshake
//! summaries, alerts and record headers out.
//!
//! Heads up! Before working on this file read RFC 8446 §5 (record layer) and
//! §4 (handshake), RFC 5246 §6.2 and §7.4, and `docs/domain.md` (record sizes)
//! (which records a sensor can see and how long they are).
//!
//! Contract:
//! - Sans-IO and deterministic: the caller passes each direction's bytes in
//!   stream order (from its TCP reassembler) and the packet timestamp.
//! - Records may span calls and handshake messages may span records.
//!   Record *bodies* are never buffered: handshake bodies are streamed into one
//!   per-direction message buffer capped at [`MAX_HANDSHAKE_MESSAGE`]; a longer
//!   message is skipped and reported as [`TlsEvent::Overflow`].
//!   Everything else is only counted from its header.
//! - Never panics. A record header that cannot be TLS stops that direction
//!   ([`TlsEvent::Malformed`]); a lost TCP segment is reported with
//!   [`TlsParser::gap`] and the parser resynchronises on the next record
//!   boundary it can trust.
//! - Record framing, ClientHello/ServerHello bodies, extensions and Certificate
//!   messages are parsed with `tls-parser`; only what it does not cover (the
//!   SSLv2-compatible hello, pre-draft-22 TLS 1.3 ServerHellos) is done here.

use serde::Serialize;
use tls_parser::{
    parse_tls_extension, parse_tls_handshake_client_hello, parse_tls_handshake_msg_certificate, parse_tls_handshake_server_hello, SNIType,
    TlsExtension, TlsMessageHandshake,
};

use crate::hello::{ext, session_id_hash, ClientHello, ServerHello};

/// Largest handshake message we assemble. TLS allows 16 MiB, which we refuse
/// to hold; everyday chains are 2-8 KiB, but real ones reach far beyond 64
/// KiB (certificates with thousands of SAN names; Zeek's
/// `tls-fragmented-handshake` capture carries one 332 KiB certificate over 21
/// records). Only the message being assembled is held, and every flow's
/// buffers count against the sensor's shared buffer budget
/// (`--max-buffer-bytes`), so one hostile flow cannot hold more than that.
/// A longer message is skipped, reported as [`TlsEvent::Overflow`], and a
/// session that lost its server's certificate this way gets no rejection
/// verdict (docs/output.md).
pub const MAX_HANDSHAKE_MESSAGE: usize = 512 * 1024;
/// Largest record length we accept as TLS (2^14 + 2048, RFC 5246 §6.2.3).
pub const MAX_RECORD_LEN: usize = 16384 + 2048;

/// Record content types (RFC 8446 §5.1).
pub mod content {
    /// change_cipher_spec (20): in TLS <= 1.2 the sender encrypts from the next
    /// record on; in TLS 1.3 only sent for middlebox compatibility.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert (21): level and description pairs, or an encrypted body.
    pub const ALERT: u8 = 21;
    /// handshake (22): handshake messages, possibly split across records.
    pub const HANDSHAKE: u8 = 22;
    /// application_data (23): protected payload, and the outer type of every
    /// protected TLS 1.3 record.
    pub const APPLICATION_DATA: u8 = 23;
    /// heartbeat (24, RFC 6520).
    pub const HEARTBEAT: u8 = 24;
}

/// Handshake message types (RFC 8446 §4).
pub mod hs {
    /// ClientHello (1): the client's offer.
    pub const CLIENT_HELLO: u8 = 1;
    /// ServerHello (2): the server's choice; also a HelloRetryRequest, told by
    /// [`HRR_RANDOM`](super::HRR_RANDOM).
    pub const SERVER_HELLO: u8 = 2;
    /// NewSessionTicket (4): a resumption ticket from the server.
    pub const NEW_SESSION_TICKET: u8 = 4;
    /// Certificate (11): a certificate chain, leaf first (encrypted in TLS 1.3).
    pub const CERTIFICATE: u8 = 11;
    /// ServerKeyExchange (12, TLS <= 1.2): the server's key exchange parameters.
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    /// CertificateRequest (13): the server asks for a client certificate.
    pub const CERTIFICATE_REQUEST: u8 = 13;
    /// ServerHelloDone (14, TLS <= 1.2): the end of the server's first flight.
    pub const SERVER_HELLO_DONE: u8 = 14;
    /// CertificateVerify (15): a signature by the key of the certificate just sent.
    pub const CERTIFICATE_VERIFY: u8 = 15;
    /// ClientKeyExchange (16, TLS <= 1.2): the client's key exchange share.
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    /// Finished (20): a MAC over the handshake so far; each side's last handshake message.
    pub const FINISHED: u8 = 20;
}

/// The random value that marks a ServerHello as a HelloRetryRequest (RFC 8446 §4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
    0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// The version reported for a TLS 1.3 draft before draft-16 whose
/// ServerHello says 0x0304 (Suricata's `TLS_VERSION_13_PRE_DRAFT16`).
pub const TLS13_PRE_DRAFT16: u16 = 0x7f01;

/// Which side sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// The client: the side that sends the ClientHello.
    Client,
    /// The server.
    Server,
}

impl Dir {
    /// Array index for per-direction state: 0 for the client, 1 for the server.
    pub fn idx(self) -> usize {
        match self {
            Dir::Client => 0,
            Dir::Server => 1,
        }
    }
}

/// One record header as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordInfo {
    /// Side that sent the record.
    pub dir: Dir,
    /// Content type (see [`content`]); 0x80 for an SSLv2-format ClientHello.
    pub content_type: u8,
    /// Record-layer version as sent (0x0301 on many ClientHellos, 0x0303 for
    /// TLS 1.2 and 1.3); 2 for the SSLv2 format.
    pub version: u16,
    /// Body length from the header (at most [`MAX_RECORD_LEN`] for a TLS record).
    pub len: u16,
    /// Packet time (ns since the Unix epoch) passed with the bytes that
    /// completed the header.
    pub ts_ns: i64,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    /// A record header (every record, plaintext or not).
    Record(RecordInfo),
    /// A complete plaintext handshake message (type and body length).
    Handshake {
        /// Side that sent the message.
        dir: Dir,
        /// Handshake type (see [`hs`]).
        msg_type: u8,
        /// Body length from the 4-byte message header (the SSLv2 record length for an SSLv2-format hello).
        len: u32,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// A parsed ClientHello (also from the SSLv2 format), sent by the client.
    ClientHello {
        /// What the ClientHello offered.
        hello: Box<ClientHello>,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// A parsed ServerHello or HelloRetryRequest, sent by the server.
    ServerHello {
        /// What the server chose.
        hello: Box<ServerHello>,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// DER certificates of a plaintext Certificate message, leaf first.
    Certificates {
        /// Side that sent the chain (a client's own certificate when `Client`).
        dir: Dir,
        /// The DER certificates in message order.
        chain: Vec<Vec<u8>>,
    },
    /// A readable alert.
    Alert {
        /// Side that sent the alert.
        dir: Dir,
        /// 1 (warning) or 2 (fatal).
        level: u8,
        /// Alert description code (see [`alert_name`]).
        description: u8,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// An alert record whose body is encrypted (TLS <= 1.2 after CCS).
    EncryptedAlert {
        /// Side that sent the alert.
        dir: Dir,
        /// Record body length.
        len: u16,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// A ChangeCipherSpec record.
    ChangeCipherSpec {
        /// Side that sent it.
        dir: Dir,
        /// Packet time (ns since the Unix epoch) passed with the bytes that completed it.
        ts_ns: i64,
    },
    /// A message that could not be parsed; `what` is a stable counter name.
    Malformed {
        /// Direction the bytes came from.
        dir: Dir,
        /// `record_header`, `client_hello`, `server_hello`, `certificate` or `sslv2_client_hello`.
        what: &'static str,
    },
    /// A handshake message longer than [`MAX_HANDSHAKE_MESSAGE`] was skipped.
    Overflow {
        /// Direction the message came from.
        dir: Dir,
        /// Body length the message header announced.
        declared_len: u32,
    },
}

/// Direction state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a 5-byte record header (`hdr_len` bytes so far).
    Header,
    /// Inside a record body.
    Body,
    /// Lost alignment (gap or garbage); waiting for a trustworthy header at a
    /// segment boundary.
    Lost,
    /// Not TLS, or given up.
    Dead,
}

#[derive(Debug, Clone)]
struct Side {
    state: State,
    hdr: [u8; 5],
    hdr_len: usize,
    rec: RecordInfo,
    body_left: usize,
    /// Plaintext handshake bytes being assembled into messages.
    hs: Vec<u8>,
    /// Bytes of an oversized handshake message still to discard.
    hs_skip: usize,
    /// Handshake reassembly is unusable (after a gap inside it).
    hs_broken: bool,
    /// Small buffer for alert / CCS / SSLv2 bodies.
    small: Vec<u8>,
    /// ChangeCipherSpec seen: later handshake/alert records are encrypted
    /// (TLS <= 1.2 and pre-1.3 semantics).
    after_ccs: bool,
    /// Bytes consumed so far (stream offset of the next byte).
    offset: u64,
    records: u64,
}

impl Side {
    fn new(dir: Dir) -> Self {
        Side {
            state: State::Header,
            hdr: [0; 5],
            hdr_len: 0,
            rec: RecordInfo { dir, content_type: 0, version: 0, len: 0, ts_ns: 0 },
            body_left: 0,
            hs: Vec::new(),
            hs_skip: 0,
            hs_broken: false,
            small: Vec::new(),
            after_ccs: false,
            offset: 0,
            records: 0,
        }
    }
}

/// Parser for both directions of one TLS connection.
#[derive(Debug, Clone)]
pub struct TlsParser {
    sides: [Side; 2],
    /// TLS 1.3 (or a draft) was negotiated: every later record but CCS and a
    /// second ClientHello is protected.
    tls13: bool,
}

impl Default for TlsParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Does `b` start like a TLS record (or an SSLv2-compatible ClientHello)?
/// Used to decide, by content rather than port, that a stream is TLS.
pub fn looks_like_tls(b: &[u8]) -> bool {
    plausible_header(b).is_some() || sslv2_hello_len(b).is_some()
}

/// Could `b`, fewer than 5 bytes, be the start of bytes that [`looks_like_tls`]
/// accepts? (A stream split in tiny segments is decided once 5 bytes are in.)
/// From 5 bytes on, the same as [`looks_like_tls`].
pub fn may_start_tls(b: &[u8]) -> bool {
    if b.len() >= 5 {
        return looks_like_tls(b);
    }
    let at = |i: usize, ok: &dyn Fn(u8) -> bool| b.get(i).is_none_or(|&v| ok(v));
    let tls = at(0, &|v| (content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT).contains(&v))
        && at(1, &|v| v == 3)
        && at(2, &|v| v <= 4)
        && at(3, &|v| usize::from(v) << 8 <= MAX_RECORD_LEN);
    let sslv2 = at(0, &|v| v & 0x80 != 0) && at(2, &|v| v == 1) && at(3, &|v| v == 0 || v == 3);
    tls || sslv2
}

/// Does `b` start with a TLS handshake record carrying a ClientHello?
pub fn looks_like_client_hello(b: &[u8]) -> bool {
    (b.len() >= 6 && b[0] == content::HANDSHAKE && b[1] == 3 && b[2] <= 4 && b[5] == hs::CLIENT_HELLO) || sslv2_hello_len(b).is_some()
}

fn plausible_header(b: &[u8]) -> Option<(u8, u16, usize)> {
    if b.len() < 5 {
        return None;
    }
    let ct = b[0];
    let version = u16::from_be_bytes([b[1], b[2]]);
    let len = usize::from(u16::from_be_bytes([b[3], b[4]]));
    let ok_type = (content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT).contains(&ct);
    let ok_version = b[1] == 3 && b[2] <= 4;
    (ok_type && ok_version && len <= MAX_RECORD_LEN).then_some((ct, version, len))
}

/// SSLv2 record header with a CLIENT-HELLO (RFC 6101 App. E.2): returns the
/// body length.
fn sslv2_hello_len(b: &[u8]) -> Option<usize> {
    if b.len() < 5 || b[0] & 0x80 == 0 || b[2] != 1 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[0] & 0x7f, b[1]]));
    // version 0x0002, 0x0300..=0x0303
    let ok_version = (b[3] == 0 && b[4] == 2) || (b[3] == 3 && b[4] <= 3);
    (len >= 9 && ok_version).then_some(len)
}

impl TlsParser {
    /// A parser with both directions expecting a record header.
    pub fn new() -> Self {
        TlsParser { sides: [Side::new(Dir::Client), Side::new(Dir::Server)], tls13: false }
    }

    /// True once a direction was given up on (not TLS or corrupt).
    pub fn is_dead(&self, dir: Dir) -> bool {
        self.sides[dir.idx()].state == State::Dead
    }

    /// Bytes of this direction consumed so far.
    pub fn offset(&self, dir: Dir) -> u64 {
        self.sides[dir.idx()].offset
    }

    /// Records seen in this direction.
    pub fn records(&self, dir: Dir) -> u64 {
        self.sides[dir.idx()].records
    }

    /// Heap bytes held by this parser (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.hs.capacity() + s.small.capacity()).sum()
    }

    /// True when TLS 1.3 or a 1.3 draft was negotiated.
    pub fn is_tls13(&self) -> bool {
        self.tls13
    }

    /// Give up on a direction (e.g. the stream turned out not to be TLS).
    pub fn kill(&mut self, dir: Dir) {
        let s = &mut self.sides[dir.idx()];
        s.state = State::Dead;
        s.hs = Vec::new();
        s.small = Vec::new();
    }

    /// Tell the parser that `len` bytes of this direction were lost. Returns
    /// true when alignment survived (the gap fell inside a record body that is
    /// not being assembled).
    pub fn gap(&mut self, dir: Dir, len: u64) -> bool {
        let s = &mut self.sides[dir.idx()];
        s.offset += len;
        match s.state {
            State::Body if (len as usize) <= s.body_left && len <= MAX_RECORD_LEN as u64 => {
                s.body_left -= len as usize;
                let assembling = s.rec.content_type == content::HANDSHAKE && !s.after_ccs || s.rec.content_type == content::ALERT;
                if assembling {
                    s.hs_broken = true;
                    s.hs.clear();
                    s.small.clear();
                }
                if s.body_left == 0 {
                    s.state = State::Header;
                }
                true
            }
            State::Dead => false,
            _ => {
                s.state = State::Lost;
                s.hdr_len = 0;
                s.hs.clear();
                s.hs_broken = true;
                false
            }
        }
    }

    /// Feed the next in-order bytes of one direction, with the timestamp of
    /// the packet they came in. A direction lost after a [`gap`](Self::gap)
    /// resynchronises only at the start of a call whose bytes begin with a
    /// plausible handshake or application_data record header, so a call
    /// should start at a TCP segment boundary.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts_ns: i64, out: &mut Vec<TlsEvent>) {
        let mut i = 0;
        if self.sides[dir.idx()].state == State::Lost {
            match plausible_header(data) {
                Some((ct, _, _)) if ct == content::APPLICATION_DATA || ct == content::HANDSHAKE => {
                    let s = &mut self.sides[dir.idx()];
                    s.state = State::Header;
                    s.hdr_len = 0;
                }
                _ => {
                    self.sides[dir.idx()].offset += data.len() as u64;
                    return;
                }
            }
        }
        // An SSLv2-format ClientHello can only be the very first thing a client sends.
        if dir == Dir::Client && self.sides[0].offset == 0 && self.sides[0].hdr_len == 0 {
            if let Some(len) = sslv2_hello_len(data) {
                let s = &mut self.sides[0];
                s.small.clear();
                s.rec = RecordInfo { dir, content_type: 0x80, version: 2, len: len as u16, ts_ns };
                s.body_left = len;
                s.state = State::Body;
                s.records += 1;
                out.push(TlsEvent::Record(s.rec));
                i = 2;
            }
        }
        while i < data.len() {
            let state = self.sides[dir.idx()].state;
            match state {
                State::Dead | State::Lost => {
                    break;
                }
                State::Header => {
                    let s = &mut self.sides[dir.idx()];
                    let take = (5 - s.hdr_len).min(data.len() - i);
                    s.hdr[s.hdr_len..s.hdr_len + take].copy_from_slice(&data[i..i + take]);
                    s.hdr_len += take;
                    i += take;
                    if s.hdr_len < 5 {
                        break;
                    }
                    s.hdr_len = 0;
                    let hdr = s.hdr;
                    match plausible_header(&hdr) {
                        Some((ct, version, len)) => {
                            s.rec = RecordInfo { dir, content_type: ct, version, len: len as u16, ts_ns };
                            s.records += 1;
                            s.body_left = len;
                            s.state = State::Body;
                            s.small.clear();
                            out.push(TlsEvent::Record(s.rec));
                            if len == 0 {
                                s.state = State::Header;
                                self.record_done(dir, ts_ns, out);
                            }
                        }
                        None => {
                            out.push(TlsEvent::Malformed { dir, what: "record_header" });
                            s.offset += data.len() as u64;
                            self.kill(dir);
                            return;
                        }
                    }
                }
                State::Body => {
                    let take = self.sides[dir.idx()].body_left.min(data.len() - i);
                    let chunk = &data[i..i + take];
                    i += take;
                    self.body_bytes(dir, chunk, ts_ns, out);
                    let s = &mut self.sides[dir.idx()];
                    s.body_left -= take;
                    if s.body_left == 0 && s.state == State::Body {
                        s.state = State::Header;
                        self.record_done(dir, ts_ns, out);
                    }
                }
            }
        }
        let s = &mut self.sides[dir.idx()];
        s.offset += data.len() as u64;
        // Nothing is half-assembled: give the buffers back. A session keeps
        // its parser for its whole life, and the few KB a certificate
        // message needed would otherwise stay with every flow (and count
        // against the buffer budget) long after its handshake.
        if s.hs.is_empty() {
            s.hs = Vec::new();
        }
        if s.small.is_empty() {
            s.small = Vec::new();
        }
    }

    fn body_bytes(&mut self, dir: Dir, chunk: &[u8], ts_ns: i64, out: &mut Vec<TlsEvent>) {
        let tls13 = self.tls13;
        let s = &mut self.sides[dir.idx()];
        match s.rec.content_type {
            content::HANDSHAKE if !s.after_ccs || (tls13 && dir == Dir::Client) => {
                // In TLS 1.3 the only plaintext client handshake after the
                // compat CCS is a second ClientHello (after HRR).
                if s.hs_broken {
                    return;
                }
                let mut c = chunk;
                if s.hs_skip > 0 {
                    let n = s.hs_skip.min(c.len());
                    s.hs_skip -= n;
                    c = &c[n..];
                }
                s.hs.extend_from_slice(c);
                self.drain_handshake(dir, ts_ns, out);
            }
            content::ALERT | content::CHANGE_CIPHER_SPEC | 0x80 => {
                // Alerts are 2 bytes a piece; keep a little more to tell an
                // encrypted body. SSLv2 hellos are bounded by their record.
                let cap = if s.rec.content_type == 0x80 { MAX_RECORD_LEN } else { 256 };
                let n = chunk.len().min(cap.saturating_sub(s.small.len()));
                s.small.extend_from_slice(&chunk[..n]);
            }
            _ => {}
        }
    }

    fn drain_handshake(&mut self, dir: Dir, ts_ns: i64, out: &mut Vec<TlsEvent>) {
        loop {
            let s = &mut self.sides[dir.idx()];
            if s.hs.len() < 4 {
                return;
            }
            let msg_type = s.hs[0];
            let len = u32::from_be_bytes([0, s.hs[1], s.hs[2], s.hs[3]]);
            if len as usize > MAX_HANDSHAKE_MESSAGE {
                out.push(TlsEvent::Overflow { dir, declared_len: len });
                let have = s.hs.len() - 4;
                s.hs_skip = (len as usize).saturating_sub(have);
                s.hs.clear();
                continue;
            }
            if s.hs.len() < 4 + len as usize {
                return;
            }
            let msg: Vec<u8> = s.hs.drain(..4 + len as usize).collect();
            out.push(TlsEvent::Handshake { dir, msg_type, len, ts_ns });
            self.handshake_message(dir, msg_type, &msg[4..], ts_ns, out);
        }
    }

    fn handshake_message(&mut self, dir: Dir, msg_type: u8, body: &[u8], ts_ns: i64, out: &mut Vec<TlsEvent>) {
        match (dir, msg_type) {
            (Dir::Client, hs::CLIENT_HELLO) => match parse_client_hello(body) {
                Some(hello) => out.push(TlsEvent::ClientHello { hello: Box::new(hello), ts_ns }),
                None => out.push(TlsEvent::Malformed { dir, what: "client_hello" }),
            },
            (Dir::Server, hs::SERVER_HELLO) => match parse_server_hello(body) {
                Some(hello) => {
                    let v = hello.version();
                    if hello.hello_retry_request {
                        // HRR exists only in TLS 1.3: compat CCSs that follow
                        // do not switch to encryption, and a second plaintext
                        // ClientHello and ServerHello are coming.
                        self.tls13 = true;
                    } else if v == 0x0304 || v >> 8 == 0x7f || v >> 8 == 0xfb {
                        self.tls13 = true;
                        // From here on the server's handshake is encrypted.
                        self.sides[1].after_ccs = true;
                    }
                    out.push(TlsEvent::ServerHello { hello: Box::new(hello), ts_ns });
                }
                None => out.push(TlsEvent::Malformed { dir, what: "server_hello" }),
            },
            (_, hs::CERTIFICATE) => {
                // tls-parser wants the whole message (header included) only for
                // the dispatcher; the `msg_certificate` entry takes the body.
                match parse_tls_handshake_msg_certificate(body) {
                    Ok((_, TlsMessageHandshake::Certificate(c))) => {
                        let chain = c.cert_chain.iter().map(|r| r.data.to_vec()).collect();
                        out.push(TlsEvent::Certificates { dir, chain });
                    }
                    _ => {
                        // TLS 1.3 drafts carried a context byte; an empty
                        // body is legal for a client without a certificate.
                        if !body.is_empty() && !self.tls13 {
                            out.push(TlsEvent::Malformed { dir, what: "certificate" });
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn record_done(&mut self, dir: Dir, ts_ns: i64, out: &mut Vec<TlsEvent>) {
        let tls13 = self.tls13;
        let s = &mut self.sides[dir.idx()];
        let rec = s.rec;
        match rec.content_type {
            content::CHANGE_CIPHER_SPEC => {
                if !tls13 {
                    s.after_ccs = true;
                }
                out.push(TlsEvent::ChangeCipherSpec { dir, ts_ns });
            }
            content::ALERT => {
                let body = std::mem::take(&mut s.small);
                let readable = (!s.after_ccs || tls13)
                    && !body.is_empty()
                    && body.len() == usize::from(rec.len)
                    && body.len().is_multiple_of(2)
                    && body.chunks(2).all(|a| a[0] == 1 || a[0] == 2);
                if readable {
                    for a in body.chunks(2) {
                        out.push(TlsEvent::Alert { dir, level: a[0], description: a[1], ts_ns });
                    }
                } else {
                    out.push(TlsEvent::EncryptedAlert { dir, len: rec.len, ts_ns });
                }
                s.small = body;
                s.small.clear();
            }
            0x80 => {
                let body = std::mem::take(&mut s.small);
                match parse_sslv2_client_hello(&body) {
                    Some(h) => {
                        // The SSLv2 CLIENT-HELLO is a ClientHello like any
                        // other for the handshake history (Zeek and tshark
                        // list it as one).
                        out.push(TlsEvent::Handshake { dir, msg_type: hs::CLIENT_HELLO, len: u32::from(rec.len), ts_ns });
                        out.push(TlsEvent::ClientHello { hello: Box::new(h), ts_ns });
                    }
                    None => out.push(TlsEvent::Malformed { dir, what: "sslv2_client_hello" }),
                }
            }
            _ => {}
        }
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// tls-parser's name of a version (`Tls13`, `Ssl30`, and
/// `TlsVersion(2570 / 0xa0a)` for one it does not know): what Suricata's
/// QUIC logger writes for supported_versions values.
pub fn tls_parser_version_name(v: u16) -> String {
    tls_parser::TlsVersion(v).to_string()
}

/// IANA alert description names (RFC 8446 §6 and the TLS registry).
pub fn alert_name(code: u8) -> String {
    let n = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        other => return format!("unknown_{other}"),
    };
    n.to_string()
}

/// Walk an extensions block: `(type, full TLV bytes, data)` for each entry.
/// Stops at the first truncated entry.
fn walk_extensions(mut b: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let t = be16(b);
        let l = usize::from(be16(&b[2..]));
        if b.len() < 4 + l {
            break;
        }
        v.push((t, &b[..4 + l], &b[4..4 + l]));
        b = &b[4 + l..];
    }
    v
}

/// Parse a ClientHello body (after the 4-byte handshake header).
pub fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let (_, ch) = parse_tls_handshake_client_hello(body).ok()?;
    let mut out = ClientHello {
        legacy_version: ch.version.0,
        ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
        compression: ch.comp.iter().map(|c| c.0).collect(),
        session_id_len: ch.session_id.map(|s| s.len() as u8).unwrap_or(0),
        session_id_hash: ch.session_id.map(session_id_hash).unwrap_or(0),
        ..Default::default()
    };
    if let Some(exts) = ch.ext {
        for (t, tlv, data) in walk_extensions(exts) {
            out.extensions.push(t);
            match t {
                ext::SUPPORTED_VERSIONS => {
                    // Client form: 1-byte length, then 2-byte versions.
                    if let Some((&n, rest)) = data.split_first() {
                        let n = usize::from(n).min(rest.len());
                        out.supported_versions = rest[..n].chunks_exact(2).map(be16).collect();
                    }
                }
                ext::ALPN => {
                    if let Ok((_, TlsExtension::ALPN(list))) = parse_tls_extension(tlv) {
                        out.alpn_first_raw = list.first().map(|p| p.to_vec());
                        out.alpn = list.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                    }
                }
                _ => match parse_tls_extension(tlv) {
                    Ok((_, TlsExtension::SNI(names))) => {
                        out.sni = names.iter().find(|(t, _)| *t == SNIType::HostName).map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                    }
                    Ok((_, TlsExtension::EllipticCurves(g))) => {
                        out.supported_groups = g.iter().map(|g| g.0).collect();
                    }
                    Ok((_, TlsExtension::EcPointFormats(f))) => out.ec_point_formats = f.to_vec(),
                    Ok((_, TlsExtension::SignatureAlgorithms(s))) => out.signature_algorithms = s,
                    _ => {}
                },
            }
        }
    }
    Some(out)
}

/// Parse a ServerHello body; handles HelloRetryRequest and the TLS 1.3 drafts
/// (`0x7fXX`, `0xfbXX`) whose ServerHello had no session id or compression.
///
/// Drafts 1 to 15 wrote 0x0304 itself in the ServerHello's version (later
/// drafts and RFC 8446 write 0x0303 there and the real version in
/// supported_versions), with the same draft layout. Such a ServerHello is
/// read in that layout and its version reported as [`TLS13_PRE_DRAFT16`],
/// as Suricata does (`TLS 1.3 draft-<16`): the exact draft is not on the wire.
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let version = be16(body.get(..2)?);
    let (legacy_version, random, cipher, compression, exts, sid) = match version {
        0x0300..=0x0303 => {
            let (_, sh) = parse_tls_handshake_server_hello(body).ok()?;
            // tls-parser 0.12 drops SSLv3 ServerHello extensions; they sit
            // after version, random, session id, cipher and compression.
            let ext = sh.ext.or_else(|| {
                let sid = usize::from(*body.get(34)?);
                let at = 35 + sid + 3;
                let r = body.get(at..)?;
                let l = usize::from(be16(r.get(..2)?));
                r.get(2..2 + l)
            });
            (sh.version.0, sh.random, sh.cipher.0, sh.compression.0, ext, sh.session_id.unwrap_or(&[]))
        }
        v if v >> 8 == 0x7f || v >> 8 == 0xfb || v == 0x0304 => {
            // version(2) random(32) cipher(2) extensions<0..2^16-1>
            let random = body.get(2..34)?;
            let cipher = be16(body.get(34..36)?);
            let exts = body.get(36..).and_then(|r| {
                let l = usize::from(be16(r.get(..2)?));
                r.get(2..2 + l)
            });
            (v, random, cipher, 0, exts, &[][..])
        }
        _ => return None,
    };
    let mut out = ServerHello {
        legacy_version,
        cipher,
        compression,
        session_id_hash: session_id_hash(sid),
        hello_retry_request: random == HRR_RANDOM,
        ..Default::default()
    };
    for (t, tlv, data) in walk_extensions(exts.unwrap_or(&[])) {
        out.extensions.push(t);
        match t {
            ext::SUPPORTED_VERSIONS if data.len() == 2 => out.selected_version = Some(be16(data)),
            ext::ALPN => {
                if let Ok((_, TlsExtension::ALPN(list))) = parse_tls_extension(tlv) {
                    out.alpn = list.first().map(|p| String::from_utf8_lossy(p).into_owned());
                }
            }
            _ => {}
        }
    }
    if version >> 8 == 0x7f || version >> 8 == 0xfb {
        out.selected_version.get_or_insert(version);
    } else if version == 0x0304 {
        out.selected_version = Some(TLS13_PRE_DRAFT16);
    }
    Some(out)
}

/// SSLv2-compatible CLIENT-HELLO body (after the 2-byte record header):
/// msg type, version, cipher-spec length, session-id length, challenge
/// length, then 3-byte cipher specs.
fn parse_sslv2_client_hello(b: &[u8]) -> Option<ClientHello> {
    if b.len() < 9 || b[0] != 1 {
        return None;
    }
    let version = be16(&b[1..]);
    let spec_len = usize::from(be16(&b[3..]));
    let sid_len = usize::from(be16(&b[5..]));
    let specs = b.get(9..9 + spec_len)?;
    let ciphers =
        specs.chunks_exact(3).map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]])).filter(|c| *c <= 0xffff).map(|c| c as u16).collect();
    Some(ClientHello { legacy_version: version, ciphers, session_id_len: sid_len.min(255) as u8, sslv2_format: true, ..Default::default() })
}

#[cfg(test)]
mod tests {
    /// Codes from the IANA TLS Alert registry (RFC 8446 §6).
    #[test]
    fn alert_names() {
        assert_eq!(super::alert_name(46), "certificate_unknown");
        assert_eq!(super::alert_name(48), "unknown_ca");
        assert_eq!(super::alert_name(200), "unknown_200");
    }

    /// Every prefix of a header `looks_like_tls` accepts may start TLS.
    #[test]
    fn prefixes_of_accepted_headers_may_start_tls() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for b2 in [0u8, 1, 2, 3, 4, 5, 0x80, 0xff] {
                    for b3 in [0u8, 3, 0x47, 0x48, 0x49, 0xff] {
                        for b4 in [0u8, 1, 2, 3, 4, 0xff] {
                            let h = [b0, b1, b2, b3, b4];
                            if super::looks_like_tls(&h) {
                                for k in 0..5 {
                                    assert!(super::may_start_tls(&h[..k]), "{h:02x?} at {k}");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(!super::may_start_tls(b"EH"));
        assert!(!super::may_start_tls(b"\x16\x02"));
    }

    use super::*;

    /// A minimal TLS 1.2 ClientHello record with SNI "a.example" and ALPN h2.
    fn client_hello_record() -> Vec<u8> {
        let sni_name = b"a.example";
        let mut sni = vec![0, 0]; // type
        let list_len = 3 + sni_name.len();
        sni.extend(((list_len + 2) as u16).to_be_bytes());
        sni.extend((list_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend((sni_name.len() as u16).to_be_bytes());
        sni.extend(sni_name);
        let alpn = [0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2'];
        let groups = [0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x0a, 0x0a, 0x00, 0x1d];
        let mut exts = Vec::new();
        exts.extend(&sni);
        exts.extend(alpn);
        exts.extend(groups);
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend([0x01, 0x00]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![1, 0, 0, body.len() as u8];
        msg.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01, 0, msg.len() as u8];
        rec.extend(msg);
        rec
    }

    fn collect(p: &mut TlsParser, dir: Dir, chunks: &[&[u8]]) -> Vec<TlsEvent> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(dir, c, 0, &mut out);
        }
        out
    }

    fn hellos(ev: &[TlsEvent]) -> Vec<&ClientHello> {
        ev.iter()
            .filter_map(|e| match e {
                TlsEvent::ClientHello { hello, .. } => Some(hello.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn client_hello_whole_and_byte_by_byte() {
        let rec = client_hello_record();
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[&rec]);
        let ch = hellos(&ev);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].sni.as_deref(), Some("a.example"));
        assert_eq!(ch[0].alpn, vec!["h2".to_string()]);
        assert_eq!(ch[0].ciphers, vec![0x1301, 0xc02f]);
        assert_eq!(ch[0].extensions, vec![0, 0x10, 0x0a]);
        assert_eq!(ch[0].supported_groups, vec![0x0a0a, 0x001d]);

        let mut p2 = TlsParser::new();
        let bytes: Vec<&[u8]> = rec.chunks(1).collect();
        let ev2 = collect(&mut p2, Dir::Client, &bytes);
        assert_eq!(hellos(&ev2), ch, "byte-at-a-time feeding gives the same hello");
    }

    /// The buffers a handshake message was assembled in are given back once
    /// nothing is half-assembled, and kept while something is.
    #[test]
    fn buffers_are_given_back_between_messages() {
        let rec = client_hello_record();
        let mut p = TlsParser::new();
        let mut out = Vec::new();
        // Header and half the message: it is being assembled.
        p.feed(Dir::Client, &rec[..30], 0, &mut out);
        assert!(p.heap_bytes() > 0, "a half message is held");
        p.feed(Dir::Client, &rec[30..], 0, &mut out);
        assert_eq!(hellos(&out).len(), 1);
        assert_eq!(p.heap_bytes(), 0, "nothing held once the message is parsed");
    }

    #[test]
    fn handshake_message_split_over_two_records() {
        let rec = client_hello_record();
        let msg = &rec[5..];
        let (a, b) = msg.split_at(20);
        let mut two = vec![0x16, 0x03, 0x01, 0, a.len() as u8];
        two.extend(a);
        two.extend([0x16, 0x03, 0x01, 0, b.len() as u8]);
        two.extend(b);
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[&two]);
        assert_eq!(hellos(&ev).len(), 1);
        assert_eq!(ev.iter().filter(|e| matches!(e, TlsEvent::Record(_))).count(), 2);
    }

    #[test]
    fn plaintext_and_encrypted_alerts() {
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x2e]]);
        assert!(ev.contains(&TlsEvent::Alert { dir: Dir::Client, level: 2, description: 46, ts_ns: 0 }));
        // After CCS (TLS 1.2) an alert record is encrypted.
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01], &[0x15, 0x03, 0x03, 0x00, 0x1a], &[0u8; 26]]);
        assert!(ev.contains(&TlsEvent::EncryptedAlert { dir: Dir::Client, len: 26, ts_ns: 0 }));
    }

    #[test]
    fn garbage_kills_direction_and_gap_inside_appdata_keeps_alignment() {
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[b"GET / HTTP/1.1\r\n"]);
        assert!(ev.contains(&TlsEvent::Malformed { dir: Dir::Client, what: "record_header" }));
        assert!(p.is_dead(Dir::Client));

        let mut p = TlsParser::new();
        let mut out = Vec::new();
        p.feed(Dir::Server, &[0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4], 0, &mut out);
        assert!(p.gap(Dir::Server, 10));
        p.feed(Dir::Server, &[5, 6, 0x17, 0x03, 0x03, 0x00, 0x01, 9], 0, &mut out);
        assert_eq!(p.records(Dir::Server), 2);
        assert!(!p.is_dead(Dir::Server));
    }

    #[test]
    fn oversized_handshake_message_is_skipped_not_buffered() {
        let mut p = TlsParser::new();
        let mut out = Vec::new();
        // A certificate message claiming 1 MiB, delivered in max-size records.
        let mut first = vec![0x16, 0x03, 0x03, 0x40, 0x00, 11, 0x10, 0x00, 0x00];
        first.extend(vec![0u8; 0x4000 - 4]);
        p.feed(Dir::Server, &first, 0, &mut out);
        assert!(out.contains(&TlsEvent::Overflow { dir: Dir::Server, declared_len: 0x100000 }));
        assert!(p.heap_bytes() <= 2 * MAX_HANDSHAKE_MESSAGE);
    }

    #[test]
    fn sslv2_client_hello_is_recognised() {
        // 2-byte header (len 0x1f), CLIENT-HELLO v3.1, 6 bytes of specs, 16-byte challenge.
        let mut b = vec![0x80, 0x1f, 0x01, 0x03, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x10];
        b.extend([0x00, 0x00, 0x2f, 0x07, 0x00, 0xc0]);
        b.extend([0xaa; 16]);
        assert!(looks_like_tls(&b));
        let mut p = TlsParser::new();
        let ev = collect(&mut p, Dir::Client, &[&b]);
        let ch = hellos(&ev);
        assert_eq!(ch.len(), 1);
        assert!(ch[0].sslv2_format);
        assert_eq!(ch[0].legacy_version, 0x0301);
        assert_eq!(ch[0].ciphers, vec![0x002f]);
        assert!(ev.contains(&TlsEvent::Handshake { dir: Dir::Client, msg_type: hs::CLIENT_HELLO, len: 0x1f, ts_ns: 0 }));
    }

    #[test]
    fn server_hello_tls13_and_hrr() {
        let mut body = vec![0x03, 0x03];
        body.extend(HRR_RANDOM);
        body.push(0);
        body.extend([0x13, 0x01, 0x00]);
        body.extend([0x00, 0x06, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        let sh = parse_server_hello(&body).expect("hrr parses");
        assert!(sh.hello_retry_request);
        assert_eq!(sh.version(), 0x0304);
        assert_eq!(sh.cipher, 0x1301);
        // draft-16 form
        let mut d = vec![0x7f, 0x10];
        d.extend([1u8; 32]);
        d.extend([0x13, 0x01, 0x00, 0x00]);
        let sh = parse_server_hello(&d).expect("draft parses");
        assert_eq!(sh.version(), 0x7f10);
        // draft-14 form: version 0x0304, random, cipher, extensions (key_share 0x0028)
        let mut d = vec![0x03, 0x04];
        d.extend([2u8; 32]);
        d.extend([0xc0, 0x2b, 0x00, 0x06, 0x00, 0x28, 0x00, 0x02, 0x00, 0x17]);
        let sh = parse_server_hello(&d).expect("draft-14 parses");
        assert_eq!(sh.version(), TLS13_PRE_DRAFT16);
        assert_eq!(sh.legacy_version, 0x0304);
        assert_eq!(sh.cipher, 0xc02b);
        assert_eq!(sh.extensions, vec![0x0028]);
        assert!(!sh.hello_retry_request);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_bounded(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20)) {
            let mut p = TlsParser::new();
            let mut out = Vec::new();
            let mut total = 0u64;
            for (n, c) in chunks.iter().enumerate() {
                let dir = if n % 3 == 0 { Dir::Server } else { Dir::Client };
                p.feed(dir, c, 0, &mut out);
                if dir == Dir::Client { total += c.len() as u64; }
                if n % 7 == 6 { p.gap(Dir::Client, 13); total += 13; }
            }
            proptest::prop_assert_eq!(p.offset(Dir::Client), total);
            proptest::prop_assert!(p.heap_bytes() <= 2 * (MAX_HANDSHAKE_MESSAGE + MAX_RECORD_LEN));
        }

        #[test]
        fn mutated_client_hello_never_panics(pos in 0usize..80, val in proptest::num::u8::ANY, cut in 0usize..80) {
            let mut rec = client_hello_record();
            let p = pos % rec.len();
            rec[p] = val;
            rec.truncate(rec.len() - cut % rec.len());
            let mut parser = TlsParser::new();
            let mut out = Vec::new();
            parser.feed(Dir::Client, &rec, 0, &mut out);
        }
    }
}
