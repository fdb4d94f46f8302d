//! What we keep about one QUIC connection while its UDP flow is alive: the
//! parser's connection state and the events it reported, capped.

use pinwatch_parsers::hello::{ClientHello, ServerHello};
use pinwatch_parsers::quic::gquic::{inspect_client_datagram, looks_like_gquic, GquicHello};
use pinwatch_parsers::quic::{QuicConn, QuicEvent};

/// Long-header datagrams fed per direction before the flow only counts.
pub const DATAGRAMS_PER_DIRECTION: u64 = 64;
/// CONNECTION_CLOSE frames kept.
pub const MAX_CLOSES: usize = 8;

/// A CONNECTION_CLOSE frame as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseSeen {
    /// True when the client sent it.
    pub from_client: bool,
    /// Error code as sent (transport or application).
    pub error_code: u64,
    /// Frame type that triggered the error (transport closes only).
    pub frame_type: Option<u64>,
    /// Reason phrase, lossy UTF-8, cut by the parser.
    pub reason: String,
    /// The TLS alert a CRYPTO_ERROR code carries.
    pub tls_alert: Option<u8>,
    /// Packet time of the datagram, ns since the Unix epoch.
    pub ts_ns: i64,
}

/// One QUIC connection: the parser and what its events said, each log capped.
#[derive(Debug, Default)]
pub struct QuicSession {
    /// The parser's connection state.
    pub conn: QuicConn,
    /// ClientHellos (IETF QUIC, or Google QUIC T05x) with their packet times, at most 4.
    pub client_hellos: Vec<(ClientHello, i64)>,
    /// The first ServerHello that is not a HelloRetryRequest, with its packet time.
    pub server_hello: Option<(ServerHello, i64)>,
    /// CONNECTION_CLOSE frames (at most [`MAX_CLOSES`]).
    pub closes: Vec<CloseSeen>,
    /// The server sent a Retry.
    pub retry: bool,
    /// Versions of the last Version Negotiation packet, if any.
    pub version_negotiation: Option<Vec<u32>>,
    /// Problems as stable counter names, deduplicated.
    pub anomalies: Vec<&'static str>,
    /// Packets the parser could not decrypt.
    pub undecryptable: u64,
    /// Datagrams fed to the parser, [client, server].
    pub fed: [u64; 2],
    /// Time of the first server datagram.
    pub first_server_ts: Option<i64>,
    /// Google QUIC client hellos (CHLO tags, or T05x TLS), up to 4.
    pub gquic: Vec<GquicHello>,
    /// Datagrams that start with a short (1-RTT) header, [client, server]:
    /// a client that finished its handshake sends them.
    pub short: [u64; 2],
    events: Vec<QuicEvent>,
}

impl QuicSession {
    /// Feed one datagram (only while the connection still has Initials to read).
    pub fn datagram(&mut self, from_client: bool, data: &[u8], ts: i64) {
        let i = usize::from(!from_client);
        if !from_client {
            self.first_server_ts.get_or_insert(ts);
        }
        // Short-header (1-RTT) packets carry nothing we can read: count them.
        if data.first().is_some_and(|b| b & 0x80 == 0) {
            self.short[i] += 1;
            return;
        }
        if self.fed[i] >= DATAGRAMS_PER_DIRECTION || data.is_empty() {
            return;
        }
        self.fed[i] += 1;
        if looks_like_gquic(data) {
            // Google QUIC: its own framing; report the hello's SNI, UAID and CYU.
            if from_client && self.gquic.len() < 4 {
                match inspect_client_datagram(data) {
                    Ok(h) => {
                        if !self.gquic.contains(&h) {
                            // T050/T051: a TLS ClientHello like an IETF
                            // QUIC one (JA3, JA4, ALPN, handshake.client_hellos).
                            if let Some(ch) = &h.client_hello {
                                if self.client_hellos.len() < 4 && !self.client_hellos.iter().any(|(c, _)| c == &**ch) {
                                    crate::flow::session::grow_exact(&mut self.client_hellos, 1, 4);
                                    self.client_hellos.push(((**ch).clone(), ts));
                                }
                            }
                            self.gquic.push(h);
                        }
                    }
                    Err("gquic_no_hello") | Err("gquic_not_initial") => {}
                    Err(why) => self.anomaly(why),
                }
            }
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        self.conn.datagram(from_client, data, &mut events);
        for ev in events.drain(..) {
            match ev {
                QuicEvent::ClientHello(h) => {
                    if self.client_hellos.len() < 4 {
                        crate::flow::session::grow_exact(&mut self.client_hellos, 1, 4);
                        self.client_hellos.push((*h, ts));
                    }
                }
                QuicEvent::ServerHello(h) => {
                    if self.server_hello.is_none() && !h.hello_retry_request {
                        self.server_hello = Some((*h, ts));
                    }
                }
                QuicEvent::ConnectionClose { from_client, error_code, frame_type, reason, tls_alert } => {
                    if self.closes.len() < MAX_CLOSES {
                        self.closes.push(CloseSeen { from_client, error_code, frame_type, reason, tls_alert, ts_ns: ts });
                    }
                }
                QuicEvent::Retry => self.retry = true,
                QuicEvent::VersionNegotiation { versions } => self.version_negotiation = Some(versions),
                QuicEvent::Undecryptable { why, .. } => {
                    self.undecryptable += 1;
                    self.anomaly(why);
                }
                QuicEvent::Malformed { what, .. } => self.anomaly(what),
                QuicEvent::Overflow { .. } => self.anomaly("quic_crypto_overflow"),
            }
        }
        self.events = events;
    }

    fn anomaly(&mut self, what: &'static str) {
        if !self.anomalies.contains(&what) && self.anomalies.len() < 16 {
            self.anomalies.push(what);
        }
    }

    /// Heap bytes held by the QUIC parser (the logs here are not counted).
    pub fn heap_bytes(&self) -> usize {
        self.conn.heap_bytes()
    }
}

/// QUIC version names exactly as Suricata's EVE `quic.version` writes them
/// (`impl From<QuicVersion> for String` in Suricata's
/// `rust/src/quic/parser.rs`): the gQUIC versions Suricata knows (`Q039`,
/// `Q043` to `Q046`) by name, QUIC v2 (RFC 9369) as `v2`, and every other
/// version as lower-case hex without leading zeros: v1 `1`, draft-29
/// `ff00001d`, T051 `54303531`, Q050 `51303530`.
pub fn version_name(v: u32) -> String {
    match v {
        0x5130_3339 | 0x5130_3433..=0x5130_3436 => String::from_utf8_lossy(&v.to_be_bytes()).into_owned(),
        0x6b33_43cf => "v2".to_string(),
        v => format!("{v:x}"),
    }
}

/// [`version_name`] of a gQUIC version given as its four ASCII bytes
/// (`"Q046"`); anything that is not four bytes is written as it is.
pub fn gquic_version_name(v: &str) -> String {
    match <[u8; 4]>::try_from(v.as_bytes()) {
        Ok(b) => version_name(u32::from_be_bytes(b)),
        Err(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suricata_quic_version_names() {
        assert_eq!(version_name(1), "1");
        assert_eq!(version_name(0x6b33_43cf), "v2");
        assert_eq!(version_name(0xff00_001d), "ff00001d");
        assert_eq!(version_name(0x5430_3531), "54303531");
        assert_eq!(version_name(0x5130_3530), "51303530");
        assert_eq!(version_name(0x0a0a_0a0a), "a0a0a0a");
        assert_eq!(gquic_version_name("Q046"), "Q046");
        assert_eq!(gquic_version_name("Q039"), "Q039");
        assert_eq!(gquic_version_name("T051"), "54303531");
    }
}
