//! What we keep about one TLS session while its flow is alive, built from the
//! parser's events. Everything here is capped; see the `MAX_*` constants.

use pinwatch_parsers::hello::{ClientHello, ServerHello};
use pinwatch_parsers::tls::{content, hs, Dir, RecordInfo, TlsEvent, TlsParser};

/// Record headers kept per session (both directions together).
pub const MAX_RECORD_LOG: usize = 48;
/// Records parsed per direction before the session stops needing bytes.
pub const RECORDS_PER_DIRECTION: u64 = 24;
/// ClientHellos kept (a HelloRetryRequest gives two).
pub const MAX_HELLOS: usize = 4;
/// Alerts kept.
pub const MAX_ALERTS: usize = 16;
/// Certificates kept from one chain.
pub const MAX_CHAIN: usize = 10;
/// Letters kept in the history string.
pub const MAX_HISTORY: usize = 96;

/// An alert as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSeen {
    /// Side that sent the alert.
    pub from: Dir,
    /// 1 (warning) or 2 (fatal); `None` when encrypted.
    pub level: Option<u8>,
    /// Alert description code; `None` when encrypted.
    pub description: Option<u8>,
    /// The body was encrypted, so level and description are unknown.
    pub encrypted: bool,
    /// Length of the alert's record.
    pub record_len: u16,
    /// Packet time of the alert, ns since the Unix epoch.
    pub ts_ns: i64,
}

/// The client's certificates: how many, and those that parse (at most
/// [`MAX_CHAIN`]; Suricata's `tls.client`, its fields from the first).
#[derive(Debug, Default)]
pub struct ClientCerts {
    /// Certificates in the client's Certificate message.
    pub count: usize,
    /// Those that parse, in message order (at most [`MAX_CHAIN`]).
    pub chain: Vec<std::sync::Arc<crate::flow::certs::Cert>>,
}

/// Per-direction counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct SideStats {
    /// Records seen in this direction.
    pub records: u64,
    /// application_data records seen.
    pub app_records: u64,
    /// Body bytes of those records.
    pub app_bytes: u64,
    /// A ChangeCipherSpec was seen.
    pub ccs: bool,
    /// A Finished was seen (TLS <= 1.2: the first handshake record after CCS).
    pub finished: bool,
    /// Packet time of the first application_data record, ns since the Unix epoch.
    pub first_app_ts: Option<i64>,
}

/// Anomaly of a session whose server sent a handshake message over the
/// parser's cap (it also has `handshake_message_too_long`).
pub const SERVER_MESSAGE_TOO_LONG: &str = "server_handshake_message_too_long";

/// One TLS session: the parser and what its events said, each log capped.
#[derive(Debug, Default)]
pub struct TlsSession {
    /// The record parser of both directions.
    pub parser: TlsParser,
    /// ClientHellos with their packet times (at most [`MAX_HELLOS`]).
    pub client_hellos: Vec<(ClientHello, i64)>,
    /// The first ServerHello that is not a HelloRetryRequest, with its packet time.
    pub server_hello: Option<(ServerHello, i64)>,
    /// Boxed, as `rare`: rare, and inline they made a `Flow` 1,088 bytes,
    /// which the allocator rounds to 1,280; boxed it fits in 1,024.
    pub hello_retry: Option<Box<ServerHello>>,
    /// Shared with every session that carried the same DER ([`crate::flow::certs`]).
    pub server_chain: Vec<std::sync::Arc<crate::flow::certs::Cert>>,
    /// Server certificates that did not parse.
    pub server_chain_errors: u16,
    /// The certificates the client sent: rare, so boxed (a `Flow` must fit
    /// in 1,024 bytes).
    pub client_certs: Option<Box<ClientCerts>>,
    /// Alerts, readable or not (at most [`MAX_ALERTS`]).
    pub alerts: Vec<AlertSeen>,
    /// Zeek-style history: a letter per handshake message, alert, CCS and
    /// application data run, upper case from the client, lower case from the
    /// server (at most [`MAX_HISTORY`] letters).
    pub history: String,
    /// Record headers in arrival order (at most [`MAX_RECORD_LOG`]).
    pub record_log: Vec<RecordInfo>,
    /// Per-direction counters, indexed by [`Dir::idx`].
    pub side: [SideStats; 2],
    /// Parser problems: stable names, deduplicated.
    pub anomalies: Vec<&'static str>,
    /// Handshake messages longer than the cap were skipped.
    pub overflows: u16,
    /// Bytes lost in TCP holes per direction.
    pub gap_bytes: [u64; 2],
    /// Per direction: how many records the log held when that direction's
    /// first hole was given up (meaningful when `gap_bytes` is not 0).
    /// Records logged from this index on may come after the lost bytes.
    pub gap_at: [u8; 2],
    /// Time of the last server handshake record (end of the server's flight so far).
    pub last_server_handshake_ts: Option<i64>,
    /// What few sessions have (an HTTP `CONNECT` tunnel, OpenVPN framing),
    /// boxed together: a `Flow` must fit in 1,024 bytes.
    pub rare: Option<Box<Rare>>,
}

/// Rare per-session state ([`TlsSession::rare`]).
#[derive(Debug, Default)]
pub struct Rare {
    /// HTTP `CONNECT` target and the proxy's status code, when the TLS ran
    /// inside an explicit-proxy tunnel.
    pub connect: Option<(String, Option<u16>)>,
    /// The TLS rides in OpenVPN's TCP control channel: its unwrapper
    /// (boxed again: a CONNECT session need not carry its room).
    pub openvpn: Option<Box<pinwatch_parsers::openvpn::OpenVpnTcp>>,
}

/// Make room for one more entry in a log of at most `max`: room for
/// `first` at first, then doubling, never past `max`. A `Vec` grows to 4
/// entries at its first push and doubles after that, so a session with one
/// 256-byte ClientHello held room for four, and a record log of 48 entries
/// room for 64, for the flow's whole life.
pub(crate) fn grow_exact<T>(v: &mut Vec<T>, first: usize, max: usize) {
    if v.len() == v.capacity() && v.len() < max {
        v.reserve_exact(v.len().max(first).max(1).min(max - v.len()));
    }
}

fn letter(dir: Dir, upper: char) -> char {
    match dir {
        Dir::Client => upper,
        Dir::Server => upper.to_ascii_lowercase(),
    }
}

/// The history letter of a handshake message type (Zeek's letters; upper
/// case, [`letter`] makes it lower case for the server).
#[inline]
fn handshake_letter(msg_type: u8) -> char {
    match msg_type {
        0 => 'H',
        hs::CLIENT_HELLO => 'C',
        hs::SERVER_HELLO => 'S',
        3 => 'V',
        hs::NEW_SESSION_TICKET => 'T',
        5 => 'E',
        6 => 'J',
        8 => 'O',
        hs::CERTIFICATE => 'X',
        hs::SERVER_KEY_EXCHANGE => 'K',
        hs::CERTIFICATE_REQUEST => 'R',
        hs::SERVER_HELLO_DONE => 'N',
        hs::CERTIFICATE_VERIFY => 'Y',
        hs::CLIENT_KEY_EXCHANGE => 'G',
        hs::FINISHED => 'F',
        21 => 'W',
        22 => 'U',
        23 => 'A',
        24 => 'P',
        254 => 'M',
        _ => 'Z',
    }
}

impl TlsSession {
    /// True while the session still wants stream bytes.
    pub fn wants_bytes(&self, dir: Dir) -> bool {
        !self.parser.is_dead(dir) && self.parser.records(dir) < RECORDS_PER_DIRECTION
    }

    fn push_history(&mut self, c: char) {
        // Consecutive application data collapses to one letter.
        if (c == 'D' || c == 'd') && self.history.ends_with(c) {
            return;
        }
        if self.history.len() < MAX_HISTORY {
            self.history.push(c);
        }
    }

    /// Record an anomaly found outside the parser (e.g. by the flow table).
    pub fn note_anomaly(&mut self, what: &'static str) {
        self.anomaly(what);
    }

    fn anomaly(&mut self, what: &'static str) {
        if !self.anomalies.contains(&what) {
            self.anomalies.push(what);
        }
    }

    /// Apply parser events.
    pub fn apply(&mut self, events: &mut Vec<TlsEvent>) {
        for ev in events.drain(..) {
            match ev {
                TlsEvent::Record(r) => self.record(r),
                TlsEvent::Handshake { dir, msg_type, .. } => self.push_history(letter(dir, handshake_letter(msg_type))),
                TlsEvent::ClientHello { hello, ts_ns } => {
                    if self.client_hellos.len() < MAX_HELLOS {
                        grow_exact(&mut self.client_hellos, 1, MAX_HELLOS);
                        self.client_hellos.push((*hello, ts_ns));
                    }
                }
                TlsEvent::ServerHello { hello, ts_ns } => {
                    if hello.hello_retry_request {
                        // Zeek logs a HelloRetryRequest as 'j'.
                        self.history.pop();
                        self.push_history('j');
                        self.hello_retry = Some(hello);
                    } else if self.server_hello.is_none() {
                        self.server_hello = Some((*hello, ts_ns));
                    }
                }
                TlsEvent::Certificates { dir: Dir::Server, chain } => self.server_certificates(&chain),
                TlsEvent::Certificates { dir: Dir::Client, chain } => {
                    let c = self.client_certs.get_or_insert_with(Box::default);
                    c.count = chain.len();
                    if c.chain.is_empty() {
                        c.chain = chain.iter().take(MAX_CHAIN).filter_map(|der| crate::flow::certs::summary(der).ok()).collect();
                    }
                }
                TlsEvent::Alert { dir, level, description, ts_ns } => {
                    let rec_len = self.record_log.last().map(|r| r.len).unwrap_or(2);
                    self.push_history(letter(dir, 'L'));
                    if self.alerts.len() < MAX_ALERTS {
                        self.alerts.push(AlertSeen {
                            from: dir,
                            level: Some(level),
                            description: Some(description),
                            encrypted: false,
                            record_len: rec_len,
                            ts_ns,
                        });
                    }
                }
                TlsEvent::EncryptedAlert { dir, len, ts_ns } => {
                    self.push_history(letter(dir, 'L'));
                    if self.alerts.len() < MAX_ALERTS {
                        self.alerts.push(AlertSeen { from: dir, level: None, description: None, encrypted: true, record_len: len, ts_ns });
                    }
                }
                TlsEvent::ChangeCipherSpec { dir, .. } => {
                    self.side[dir.idx()].ccs = true;
                    self.push_history(letter(dir, 'I'));
                }
                TlsEvent::Malformed { what, .. } => self.anomaly(what),
                TlsEvent::Overflow { dir, .. } => {
                    self.overflows = self.overflows.saturating_add(1);
                    self.anomaly("handshake_message_too_long");
                    if dir == Dir::Server {
                        // No verdict may rest on it (classify::dropped_by_sensor).
                        self.anomaly(SERVER_MESSAGE_TOO_LONG);
                    }
                }
            }
        }
    }

    /// One TLS record: its direction's counters, the history letters of
    /// application data ('D'), a TLS 1.2 Finished after the CCS ('F') and a
    /// heartbeat ('B'), and the record log (first [`MAX_RECORD_LOG`]).
    #[inline]
    fn record(&mut self, r: RecordInfo) {
        let side = &mut self.side[r.dir.idx()];
        side.records += 1;
        if r.content_type == content::APPLICATION_DATA {
            side.app_records += 1;
            side.app_bytes += u64::from(r.len);
            side.first_app_ts.get_or_insert(r.ts_ns);
            self.push_history(letter(r.dir, 'D'));
        } else if r.content_type == content::HANDSHAKE && side.ccs && !self.parser.is_tls13() {
            side.finished = true;
            self.push_history(letter(r.dir, 'F'));
        } else if r.content_type == content::HEARTBEAT {
            self.push_history(letter(r.dir, 'B'));
        }
        if r.dir == Dir::Server && r.content_type == content::HANDSHAKE {
            self.last_server_handshake_ts = Some(r.ts_ns);
        }
        if self.record_log.len() < MAX_RECORD_LOG {
            grow_exact(&mut self.record_log, 8, MAX_RECORD_LOG);
            self.record_log.push(r);
        }
    }

    /// The server's chain, the first time it is seen: a summary of each
    /// certificate (the first [`MAX_CHAIN`]), counting those that do not parse.
    fn server_certificates(&mut self, chain: &[Vec<u8>]) {
        if self.server_chain.is_empty() {
            for der in chain.iter().take(MAX_CHAIN) {
                match crate::flow::certs::summary(der) {
                    Ok(c) => self.server_chain.push(c),
                    Err(_) => self.server_chain_errors = self.server_chain_errors.saturating_add(1),
                }
            }
        }
    }

    /// HTTP `CONNECT` target and the proxy's status code, when the TLS ran
    /// inside an explicit-proxy tunnel.
    pub fn connect(&self) -> Option<&(String, Option<u16>)> {
        self.rare.as_ref()?.connect.as_ref()
    }

    /// The OpenVPN unwrapper, when the TLS rides in OpenVPN over TCP.
    pub fn openvpn(&mut self) -> Option<&mut pinwatch_parsers::openvpn::OpenVpnTcp> {
        self.rare.as_mut()?.openvpn.as_deref_mut()
    }

    /// Look at plaintext that preceded the TLS (an explicit proxy's
    /// `CONNECT host:port HTTP/1.1` and its `HTTP/1.1 200` answer).
    pub fn note_preamble(&mut self, dir: Dir, bytes: &[u8]) {
        let line = bytes.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or(&[]);
        let line = String::from_utf8_lossy(&line[..line.len().min(512)]);
        match dir {
            Dir::Client => {
                if let Some(rest) = line.strip_prefix("CONNECT ") {
                    let target = rest.split(' ').next().unwrap_or("").to_string();
                    if self.connect().is_none() && !target.is_empty() {
                        self.rare.get_or_insert_with(Box::default).connect = Some((target, None));
                    }
                }
            }
            Dir::Server => {
                if let (Some((_, status)), Some(rest)) = (self.rare.as_mut().and_then(|r| r.connect.as_mut()), line.strip_prefix("HTTP/1."))
                {
                    if status.is_none() {
                        *status = rest.get(2..5).and_then(|c| c.parse().ok());
                    }
                }
            }
        }
    }

    /// True when the session is worth a `tls` record: some TLS was parsed.
    pub fn is_tls(&self) -> bool {
        !self.client_hellos.is_empty() || self.server_hello.is_some() || self.side.iter().any(|s| s.records > 0)
    }
}

#[cfg(test)]
mod grow_tests {
    #[test]
    fn logs_grow_exactly_to_their_cap() {
        let mut v: Vec<u64> = Vec::new();
        let mut caps = Vec::new();
        for i in 0..48 {
            super::grow_exact(&mut v, 8, 48);
            v.push(i);
            if caps.last() != Some(&v.capacity()) {
                caps.push(v.capacity());
            }
        }
        assert_eq!(caps, [8, 16, 32, 48]);
        let mut one: Vec<[u8; 256]> = Vec::new();
        super::grow_exact(&mut one, 1, 4);
        one.push([0; 256]);
        assert_eq!(one.capacity(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_letters_and_alerts() {
        let mut s = TlsSession::default();
        let mut ev = vec![
            TlsEvent::Handshake { dir: Dir::Client, msg_type: 1, len: 100, ts_ns: 0 },
            TlsEvent::Handshake { dir: Dir::Server, msg_type: 2, len: 80, ts_ns: 1 },
            TlsEvent::Handshake { dir: Dir::Server, msg_type: 11, len: 800, ts_ns: 1 },
            TlsEvent::Alert { dir: Dir::Client, level: 2, description: 48, ts_ns: 2 },
        ];
        s.apply(&mut ev);
        assert_eq!(s.history, "CsxL");
        assert_eq!(s.alerts.len(), 1);
        assert_eq!(s.alerts[0].description, Some(48));
        assert!(ev.is_empty());
    }
}
