//! Inspection-aware classification of one ended TLS session: which path it
//! took relative to the enterprise's TLS inspection, and whether the client
//! accepted or rejected what it was shown, and how.
//!
//! Heads up! Read `docs/domain.md` before changing this file: the failure
//! classes A–E and the record sizes are explained there, corrected by
//! what the testbed's real stacks do on the wire (`pcaps/README.md`): Java's
//! TLS 1.3 stack pads every record with 16 bytes (alerts are 35, Finished
//! 69/85), so "alert-sized" means *shorter than the Finished the negotiated
//! suite implies*, never exactly 19.
//!
//! Everything here reads only the session's record log, alerts, flags and
//! close times: no payload, no clock.

use crate::timefmt::ms;
use std::net::IpAddr;

use serde::Serialize;

use pinwatch_parsers::tls::{content, Dir, RecordInfo};

use crate::config::Config;
use crate::flow::{CloseKind, Ended};

/// Path relative to the inspection deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// `intercepted`: the inline inspector terminated the TLS.
    Intercepted,
    /// `explicit_proxy`: the session went through a configured explicit proxy.
    ExplicitProxy,
    /// `sanctioned_bypass`: a bypass-list entry matches and the TLS was not
    /// terminated.
    SanctionedBypass,
    /// `direct`: positive evidence that the session left the managed network
    /// without traversing the inspector.
    Direct,
    /// `internal`: the server is on an internal network.
    Internal,
    /// A known tunnel endpoint (VPN concentrator): a tunnel by policy.
    Tunnel,
    /// `unknown`: nothing in the session or the configuration places it.
    Unknown,
}

/// How sure a verdict is: `high` rests on what the session itself shows
/// (an inspection CA in the chain, a readable alert, an abort in the same
/// flight as the Finished), `medium` on one indirect signal agreeing with
/// the policy, `low` on the policy or a timing alone. Alerts take their
/// severity from it (docs/output.md, Signatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// `low`: the policy or a timing alone.
    Low,
    /// `medium`: one indirect signal agreeing with the policy.
    Medium,
    /// `high`: what the session itself shows.
    High,
}

/// What the policy expected of a session (`path.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The deployment covers it: the inspector should have intercepted it.
    Inspect,
    /// A bypass-list entry matches: the inspector should have passed it through.
    Bypass,
}

/// The `path` object: the session's path relative to the inspection.
#[derive(Debug, Clone, Serialize)]
pub struct PathOut {
    /// `path.kind`.
    pub kind: PathKind,
    /// `path.confidence`: how sure the path verdict is.
    pub confidence: Confidence,
    /// Why: one entry per piece of evidence, e.g. `leaf_issuer:inspection_ca`.
    pub evidence: Vec<String>,
    /// `path.intercepted`: whether the inspector or proxy terminated the TLS
    /// (absent when the capture cannot tell, e.g. TLS 1.3 through an
    /// explicit proxy without a proxy fingerprint configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intercepted: Option<bool>,
    /// `path.connect`: the HTTP CONNECT that opened the tunnel, if the TLS ran
    /// inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectOut>,
    /// `path.bypass_rule`: the bypass-list entry that matched, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass_rule: Option<String>,
    /// `path.policy`: what the policy expected of the session, when it says
    /// (absent when no deployment covers it and no bypass entry matches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The server side's wire signals (TCP sessions with a server packet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireOut>,
    /// Left for the reporting desk to judge against the inspector's
    /// profile ([`crate::verdict::inspector`]): an inline deployment covers the
    /// session and nothing in it proves its path.
    #[serde(skip)]
    pub pending: bool,
}

impl PathOut {
    fn new(kind: PathKind, confidence: Confidence, evidence: Vec<String>) -> Self {
        PathOut {
            kind,
            confidence,
            evidence,
            intercepted: None,
            connect: None,
            bypass_rule: None,
            policy: None,
            wire: None,
            pending: false,
        }
    }

    /// A path with no evidence, for other modules' unit tests.
    #[cfg(test)]
    pub(crate) fn test(kind: PathKind, confidence: Confidence) -> Self {
        Self::new(kind, confidence, Vec::new())
    }

    /// The session should have been, or provably was, inspected: a client
    /// rejection on it is an inspection failure.
    pub fn under_inspection(&self) -> bool {
        match self.kind {
            PathKind::Intercepted => true,
            PathKind::ExplicitProxy => self.intercepted != Some(false),
            PathKind::Unknown => self.policy == Some(Policy::Inspect),
            _ => false,
        }
    }
}

/// The server side's wire signals (`path.wire`): where the box that
/// answered the SYN and the one that sent the ServerHello are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireOut {
    /// TTL / hop limit of the SYN-ACK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synack_ttl: Option<u8>,
    /// Hops from the server to the tap: the smallest usual initial value
    /// (32, 64, 128, 255) at or above the SYN-ACK's TTL, minus it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_hops: Option<u8>,
    /// TTL of the server's first packet with payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_ttl: Option<u8>,
    /// Hops from the server to the tap, computed as `server_hops` from
    /// `data_ttl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_hops: Option<u8>,
    /// Client SYN to server SYN-ACK at the tap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synack_ms: Option<f64>,
    /// Client's first ClientHello to the server's first record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_hello_ms: Option<f64>,
    /// The SYN-ACK's TCP signature, `TTL:WINDOW:MSS:WSCALE:OPTIONS`
    /// (options in order, p0f letters; WSCALE -1 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_signature: Option<String>,
}

impl WireOut {
    /// The ServerHello came a long time after the SYN-ACK: the box that
    /// answered the SYN had to reach someone else before it could answer
    /// the hello (an inspector fetching the origin's certificate).
    pub fn latency_split(&self) -> bool {
        match (self.synack_ms, self.server_hello_ms) {
            (Some(a), Some(h)) => h - a > (3.0 * a).max(2.0),
            _ => false,
        }
    }

    /// The hop count that best places the server: the SYN-ACK's, else
    /// the first data packet's.
    pub fn hops(&self) -> Option<u8> {
        self.server_hops.or(self.data_hops)
    }

    /// The SYN-ACK and the server's data came from boxes at different
    /// distances (an inspector that let the TCP handshake through to the
    /// origin and answered the ClientHello itself, or the reverse).
    pub fn hops_differ(&self) -> bool {
        matches!((self.server_hops, self.data_hops), (Some(a), Some(b)) if a.abs_diff(b) >= 2)
    }
}

/// Hops from a sender to the tap: the smallest usual initial TTL (32, 64,
/// 128, 255) at or above the one seen, minus it.
pub fn hops_of(ttl: u8) -> u8 {
    let init = [32u8, 64, 128, 255].into_iter().find(|&i| ttl <= i).unwrap_or(255);
    init - ttl
}

/// `path.connect`: the HTTP CONNECT request that opened an explicit-proxy
/// tunnel.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectOut {
    /// `target`: the CONNECT request's `host:port`.
    pub target: String,
    /// `status`: the proxy's HTTP status code, absent when its answer was not
    /// seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// `tls_failure.outcome`: how the session ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `established`: the client went on (or nothing showed a refusal).
    Established,
    /// `client_rejected`: the client refused what it was shown (classes A–E).
    ClientRejected,
    /// `server_rejected`: the server alerted or closed instead of going on.
    ServerRejected,
    /// The client closed before the server's flight reached it: it cannot
    /// have judged the certificate (browsers racing QUIC against TCP do this).
    Abandoned,
    /// `incomplete`: the capture does not show enough to decide; the kind says
    /// why.
    Incomplete,
}

/// Failure classes of docs/domain.md (client rejections only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureClass {
    /// A readable fatal client alert (not close_notify).
    A,
    /// One short protected client record where its Finished should be (an
    /// encrypted alert).
    B,
    /// The client's Finished, then no application data: an alert-sized
    /// record or a close soon after the handshake, with a second signal.
    C,
    /// Nothing after the server's flight (TLS ≤ 1.2: or a key exchange
    /// without Finished), then a client close.
    D,
    /// Nothing after the server's flight until the server or the idle
    /// timeout closed the flow.
    E,
}

/// `tls_failure.kind`: which rule decided the outcome (snake-case names in
/// the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// `alert_plain`: class A.
    AlertPlain,
    /// `alert_encrypted_pre_finished`: class B.
    AlertEncryptedPreFinished,
    /// `abort_post_handshake`: class C.
    AbortPostHandshake,
    /// `close_no_alert`: class D.
    CloseNoAlert,
    /// `stall`: class E.
    Stall,
    /// `server_alert`: a readable fatal server alert, or an alert-sized
    /// server record answering the client's Finished (QUIC: a server
    /// CONNECTION_CLOSE).
    ServerAlert,
    /// `server_close`: no ServerHello came, and the capture neither lost
    /// server bytes nor ended first.
    ServerClose,
    /// `client_closed_before_server_flight`: the outcome `abandoned`.
    ClientClosedBeforeServerFlight,
    /// `one_sided`: one side has no packets in the capture.
    OneSided,
    /// A QUIC client Initial that was never answered.
    NoResponse,
    /// `midstream`: no ClientHello was seen (the capture started inside the
    /// connection).
    Midstream,
    /// `capture_ended`: the capture (or the live run) ended before the session
    /// was decided.
    CaptureEnded,
    /// Bytes the verdict would rest on were lost in the capture (a TCP
    /// hole the peer acknowledged): no rejection is claimed.
    CaptureGap,
    /// The client's records could not be read (bytes that are not TLS
    /// where a record should start) before anything decided the session.
    Unreadable,
    /// TLS <= 1.2: the client sent its key exchange but no Finished was
    /// seen, and it neither alerted nor closed.
    HandshakeUnfinished,
    /// The sensor dropped part of the server's handshake (a message over
    /// its cap, or the buffer budget ran out): a client rejection is not
    /// claimed on what it never read.
    HandshakeDropped,
    /// Established: the client finished the handshake, never sent data,
    /// and closed at leisure (a pre-connect or pool connection it did not
    /// use), which the wire does not tell from a slow rejection.
    ClosedUnused,
}

/// The `tls_failure` object.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFailure {
    /// `tls_failure.outcome`.
    pub outcome: Outcome,
    /// `tls_failure.kind`: which rule decided it; absent for a plain
    /// `established`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// `tls_failure.class`: client rejections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    /// How sure a client rejection is (absent for other outcomes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// The signals a class C or D verdict rests on, e.g.
    /// `abort_within_3_rtt`, `closed_before_server_reply`, `client_rst`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<&'static str>,
    /// `tls_failure.alert`: IANA name of the readable alert that decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// `tls_failure.alert_code`: that alert's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_code: Option<u8>,
    /// `tls_failure.encrypted`: the deciding alert was a protected record.
    pub encrypted: bool,
    /// `tls_failure.record_len`: length of the deciding record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_len: Option<u16>,
    /// `tls_failure.expected_finished_len`: TLS 1.3, the client Finished length
    /// the ServerHello's suite implies ([`tls13_finished_len`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_finished_len: Option<u16>,
    /// `tls_failure.finished_seen`: the client's Finished was seen (QUIC: the
    /// server's Initials carried a ServerHello).
    pub finished_seen: bool,
    /// `tls_failure.client_app_bytes`: application-data record bytes the client
    /// sent among the records parsed.
    pub client_app_bytes: u64,
    /// `tls_failure.close`: how the flow ended (as `handshake.close`).
    pub close: CloseKind,
    /// Which side closed first (`client`/`server`), if either did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Dir>,
    /// `tls_failure.ms_after_server_flight`: ms from the server's last flight
    /// record to the client's rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_after_server_flight: Option<f64>,
    /// Class C: from the end of the handshake (TLS 1.3: the client's
    /// Finished; TLS <= 1.2: the later of the two Finished) to the abort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_after_handshake: Option<f64>,
}

/// TLS 1.3 client Finished record length for a cipher suite: 4-byte header +
/// hash-length verify_data + 1 inner type byte + AEAD tag (RFC 8446 §4.4.4,
/// §5.2).
pub fn tls13_finished_len(suite: u16) -> u16 {
    match suite {
        0x1302 => 4 + 48 + 1 + 16,
        0x1305 => 4 + 32 + 1 + 8,
        _ => 4 + 32 + 1 + 16,
    }
}

impl TlsFailure {
    /// An `established` session with nothing else known yet: where every
    /// classification starts.
    pub fn new(close: CloseKind) -> TlsFailure {
        TlsFailure {
            outcome: Outcome::Established,
            kind: None,
            class: None,
            confidence: None,
            signals: Vec::new(),
            alert: None,
            alert_code: None,
            encrypted: false,
            record_len: None,
            expected_finished_len: None,
            finished_seen: false,
            client_app_bytes: 0,
            close,
            closed_by: None,
            ms_after_server_flight: None,
            ms_after_handshake: None,
        }
    }

    fn set(&mut self, outcome: Outcome, kind: FailureKind) {
        self.outcome = outcome;
        self.kind = Some(kind);
    }

    fn reject(&mut self, kind: FailureKind, class: FailureClass, confidence: Confidence) {
        self.set(Outcome::ClientRejected, kind);
        self.class = Some(class);
        self.confidence = Some(confidence);
    }
}

/// The round-trip time the tap sees towards the server: SYN to SYN-ACK,
/// else the first ClientHello to the server's first record.
fn rtt_ns(f: &crate::flow::Flow) -> Option<i64> {
    let syn = (f.wire.synack_us > 0).then(|| i64::from(f.wire.synack_us) * 1000);
    let recs = &f.session.record_log;
    let hello = recs
        .iter()
        .find(|r| r.dir == Dir::Client)
        .zip(recs.iter().find(|r| r.dir == Dir::Server))
        .map(|(c, s)| s.ts_ns.saturating_sub(c.ts_ns))
        .filter(|&d| d > 0);
    match (syn, hello) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// "Immediately" after an event: within three round trips, and at least
/// 100 ms (an app's own check after the handshake is CPU time, not
/// network time; a connection left unused closes seconds later).
fn immediate_ns(f: &crate::flow::Flow) -> i64 {
    rtt_ns(f).map_or(100_000_000, |r| r.saturating_mul(3).max(100_000_000))
}

/// Classify the outcome of one ended TLS session: the first rule of
/// `OUTCOME_RULES` that decides wins. The rules are numbered as
/// docs/output.md (`tls_failure`) lists them, so doc and code read side by
/// side; a session no rule decides stays `established`.
pub fn outcome(e: &Ended, cfg: &Config) -> TlsFailure {
    let facts = Facts::of(e, cfg);
    let mut out = TlsFailure::new(e.close);
    out.expected_finished_len = facts.fin_len;
    out.client_app_bytes = facts.s.side[0].app_bytes;
    out.closed_by = facts.closed_by;
    for (_, rule) in OUTCOME_RULES {
        if rule(&facts, &mut out) == Decided::Yes {
            break;
        }
    }
    // A rejection is never claimed on a session whose server handshake the
    // sensor itself dropped: what the client judged (its certificate, most
    // likely) never reached the classifier. Say so instead of guessing; a
    // readable client alert stays in `alert` for the analyst.
    if out.outcome == Outcome::ClientRejected && dropped_by_sensor(e) {
        out.set(Outcome::Incomplete, FailureKind::HandshakeDropped);
        out.class = None;
        out.confidence = None;
        out.signals.clear();
    }
    out
}

/// The sensor, not the network, lost part of this session's handshake: a
/// server handshake message over the parser's cap
/// (`pinwatch_parsers::tls::MAX_HANDSHAKE_MESSAGE`, anomaly
/// `server_handshake_message_too_long`) or bytes refused by the shared
/// buffer budget (`buffer_budget_exhausted`).
pub fn dropped_by_sensor(e: &Ended) -> bool {
    let f = &e.flow;
    f.budget_dropped || f.session.anomalies.contains(&crate::flow::session::SERVER_MESSAGE_TOO_LONG)
}

/// Did a rule settle the outcome (later rules are not asked)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    Yes,
    No,
}

type Rule = fn(&Facts<'_>, &mut TlsFailure) -> Decided;

/// The outcome rules in the order they are tried, named as docs/output.md
/// numbers them.
const OUTCOME_RULES: [(&str, Rule); 5] = [
    ("1. one-sided and mid-stream captures", one_sided_or_midstream),
    ("2. A: a readable client alert", readable_client_alert),
    ("3. a readable server alert", readable_server_alert),
    ("4. no ServerHello", no_server_hello),
    ("5-12. after the server's flight", after_server_flight),
];

/// What the outcome rules read: the session, where the server's flight
/// ends in its record log, the alerts, and how the connection closed.
struct Facts<'a> {
    e: &'a Ended,
    f: &'a crate::flow::Flow,
    s: &'a crate::flow::session::TlsSession,
    cfg: &'a Config,
    recs: &'a [RecordInfo],
    tls13: bool,
    suite: Option<u16>,
    fin_len: Option<u16>,
    closed_by: Option<Dir>,
    /// Time of the server flight's last record (the flight after the last
    /// ClientHello, up to the first client record that answers it).
    flight_end: Option<i64>,
    /// Client records from the first one after the server's flight on.
    client_after: Vec<&'a RecordInfo>,
    /// Log index of the first client record after the flight.
    client_after_idx: Option<usize>,
    client_alert: Option<&'a crate::flow::session::AlertSeen>,
    server_alert: Option<&'a crate::flow::session::AlertSeen>,
}

impl<'a> Facts<'a> {
    fn of(e: &'a Ended, cfg: &'a Config) -> Self {
        let f = &e.flow;
        let s = &f.session;
        let close_ts = |d: Dir| f.dirs[d.idx()].close_ts;
        let (cd, sd) = (&f.dirs[Dir::Client.idx()], &f.dirs[Dir::Server.idx()]);
        let closed_by = match (close_ts(Dir::Client), close_ts(Dir::Server)) {
            // Both sent FINs and one acknowledged the other's: it answered,
            // the other closed first, whatever the time stamps (which two
            // capture sockets may put microseconds apart, either way round).
            (Some(_), Some(_)) if cd.fin_answers != sd.fin_answers => Some(if sd.fin_answers { Dir::Client } else { Dir::Server }),
            (Some(c), Some(sv)) => Some(if c <= sv { Dir::Client } else { Dir::Server }),
            (Some(_), None) => Some(Dir::Client),
            (None, Some(_)) => Some(Dir::Server),
            (None, None) => None,
        };
        let tls13 = s.parser.is_tls13();
        let suite = s.server_hello.as_ref().map(|(h, _)| h.cipher);
        let recs: &[RecordInfo] = &s.record_log;
        let (flight_end, client_after, client_after_idx) = server_flight(s, recs);
        Facts {
            e,
            f,
            s,
            cfg,
            recs,
            tls13,
            suite,
            fin_len: if tls13 { suite.map(tls13_finished_len) } else { None },
            closed_by,
            flight_end,
            client_after,
            client_after_idx,
            client_alert: s.alerts.iter().find(|a| a.from == Dir::Client && !a.encrypted && a.description != Some(0)),
            server_alert: s.alerts.iter().find(|a| a.from == Dir::Server && !a.encrypted && a.level == Some(2)),
        }
    }

    fn close_ts(&self, d: Dir) -> Option<i64> {
        self.f.dirs[d.idx()].close_ts
    }

    /// Milliseconds from the end of the server's flight to `ts`.
    fn after_flight(&self, ts: i64) -> Option<f64> {
        self.flight_end.map(|t| ms(t, ts))
    }

    /// Capture loss: did a direction's first hole come before record `idx`
    /// of the log (so the lost bytes may have been the evidence)?
    fn any_gap_before(&self, idx: usize) -> bool {
        let gap_before = |d: Dir| self.s.gap_bytes[d.idx()] > 0 && usize::from(self.s.gap_at[d.idx()]) <= idx;
        gap_before(Dir::Client) || gap_before(Dir::Server)
    }

    /// Index of `r` in the record log (the end of the log if it is not there).
    fn log_index(&self, r: &RecordInfo) -> usize {
        self.recs.iter().position(|x| std::ptr::eq(x, r)).unwrap_or(self.recs.len())
    }

    /// The largest protected record that can be an alert and no more: 2
    /// bytes, the inner type, the AEAD tag, and 16 bytes of padding.
    fn alert_max(&self) -> u16 {
        if self.suite == Some(0x1305) {
            2 + 1 + 8 + 16
        } else {
            2 + 1 + 16 + 16
        }
    }
}

/// The server's flight in the record log: its last record's time, the
/// client records from the first one that answers it, and that record's
/// index.
fn server_flight<'a>(s: &crate::flow::session::TlsSession, recs: &'a [RecordInfo]) -> (Option<i64>, Vec<&'a RecordInfo>, Option<usize>) {
    let Some(i) = recs.iter().position(|r| r.dir == Dir::Server) else {
        return (None, Vec::new(), None);
    };
    // Skip a HelloRetryRequest round: the flight that matters follows the last ClientHello.
    // (After a HRR every later client handshake record is protected, so
    // the last plaintext one is the second ClientHello.)
    let last_ch = recs.iter().rposition(|r| r.dir == Dir::Client && r.content_type == content::HANDSHAKE);
    let start = match (s.hello_retry.is_some(), last_ch) {
        (true, Some(j)) if j > i => j + 1,
        _ => i,
    };
    let first_client = recs[start..].iter().position(|r| r.dir == Dir::Client).map(|k| k + start);
    let end = match first_client {
        Some(k) => recs[start..k].iter().rev().find(|r| r.dir == Dir::Server).map(|r| r.ts_ns),
        None => recs[start..].iter().rev().find(|r| r.dir == Dir::Server).map(|r| r.ts_ns),
    };
    (end, first_client.map(|k| recs[k..].iter().filter(|r| r.dir == Dir::Client).collect()).unwrap_or_default(), first_client)
}

/// Rule 1: One-sided and mid-stream captures are reported as such, never as failures.
fn one_sided_or_midstream(x: &Facts<'_>, out: &mut TlsFailure) -> Decided {
    if x.f.dirs[Dir::Client.idx()].pkts == 0 || x.f.dirs[Dir::Server.idx()].pkts == 0 {
        out.set(Outcome::Incomplete, FailureKind::OneSided);
        return Decided::Yes;
    }
    if x.s.client_hellos.is_empty() {
        out.set(Outcome::Incomplete, FailureKind::Midstream);
        return Decided::Yes;
    }
    Decided::No
}

/// Rule 2: A: a readable client alert (any fatal one; close_notify is not a
/// rejection), unless the server's came first. The alert record itself was
/// seen, so capture loss elsewhere does not weaken it.
fn readable_client_alert(x: &Facts<'_>, out: &mut TlsFailure) -> Decided {
    let Some(a) = x.client_alert else { return Decided::No };
    if x.server_alert.is_some_and(|sa| sa.ts_ns < a.ts_ns) {
        return Decided::No;
    }
    out.reject(FailureKind::AlertPlain, FailureClass::A, Confidence::High);
    out.alert = a.description.map(pinwatch_parsers::tls::alert_name);
    out.alert_code = a.description;
    out.record_len = Some(a.record_len);
    out.ms_after_server_flight = x.after_flight(a.ts_ns);
    Decided::Yes
}

/// Rule 3: A server's readable fatal alert: the server refused. No class:
/// classes describe how a client rejected.
fn readable_server_alert(x: &Facts<'_>, out: &mut TlsFailure) -> Decided {
    let Some(a) = x.server_alert else { return Decided::No };
    out.set(Outcome::ServerRejected, FailureKind::ServerAlert);
    out.alert = a.description.map(pinwatch_parsers::tls::alert_name);
    out.alert_code = a.description;
    out.record_len = Some(a.record_len);
    Decided::Yes
}

/// Rule 4: The server never answered the ClientHello (or its answer was lost).
fn no_server_hello(x: &Facts<'_>, out: &mut TlsFailure) -> Decided {
    if x.s.server_hello.is_some() {
        return Decided::No;
    }
    if x.s.gap_bytes[Dir::Server.idx()] > 0 {
        out.set(Outcome::Incomplete, FailureKind::CaptureGap);
    } else if matches!((x.e.close, x.closed_by), (CloseKind::Eof | CloseKind::Shutdown, None)) {
        out.set(Outcome::Incomplete, FailureKind::CaptureEnded);
    } else {
        out.set(Outcome::ServerRejected, FailureKind::ServerClose);
    }
    Decided::Yes
}

/// Whether and where the client finished its handshake.
struct Finish<'a> {
    /// Time of the client's Finished, if one was recognised.
    ts: Option<i64>,
    /// A protected client record too short to be a Finished, sent instead
    /// of one (TLS 1.3), or an encrypted alert (TLS <= 1.2).
    small_before: Option<&'a RecordInfo>,
    /// Client application data records after the Finished.
    app_after: Vec<&'a RecordInfo>,
}

fn finish<'a>(x: &Facts<'a>) -> Finish<'a> {
    if x.tls13 {
        let fl = x.fin_len.unwrap_or(53);
        let prot: Vec<&RecordInfo> = x.client_after.iter().copied().filter(|r| r.content_type == content::APPLICATION_DATA).collect();
        match prot.iter().position(|r| r.len >= fl) {
            Some(k) => Finish {
                ts: Some(prot[k].ts_ns),
                small_before: None,
                app_after: prot[k + 1..].iter().copied().filter(|r| r.len > x.alert_max()).collect(),
            },
            None => Finish { ts: None, small_before: prot.first().copied(), app_after: Vec::new() },
        }
    } else {
        let fin = x.client_after.iter().find(|r| r.content_type == content::HANDSHAKE && x.s.side[0].ccs);
        let enc_alert = x.client_after.iter().copied().find(|r| r.content_type == content::ALERT && r.len > 2);
        let app: Vec<&RecordInfo> = x.client_after.iter().copied().filter(|r| r.content_type == content::APPLICATION_DATA).collect();
        match fin {
            Some(r) if x.s.side[0].finished => Finish { ts: Some(r.ts_ns), small_before: None, app_after: app },
            _ => Finish { ts: None, small_before: enc_alert, app_after: app },
        }
    }
}

/// 5-12: the server's flight arrived; what did the client do with it?
fn after_server_flight(x: &Facts<'_>, out: &mut TlsFailure) -> Decided {
    let fin = finish(x);
    out.finished_seen = fin.ts.is_some();
    match fin.ts {
        None => client_unfinished(x, &fin, out),
        Some(fin_ts) => client_finished(x, &fin, fin_ts, out),
    }
    Decided::Yes
}

/// 5-9: the client did not finish its handshake.
fn client_unfinished(x: &Facts<'_>, fin: &Finish<'_>, out: &mut TlsFailure) {
    // 5. Client application data after the server's flight, however the
    // records around it were cut by capture loss, means the client went on:
    // it accepted. (TLS <= 1.2 has no application data before the Finished:
    // a client record of that type means a protected Finished we did not
    // recognise, as in TLS 1.3 draft variants, and a client that went on.)
    if x.client_after.iter().any(|r| r.content_type == content::APPLICATION_DATA && r.len > x.alert_max()) {
        return;
    }
    // 6. Capture loss that may hold the evidence: no claim. With a short
    // protected record seen, a hole before it. Without one, every rule
    // below claims the client sent no Finished and no data after the
    // server's flight, so a hole anywhere in the client's bytes (its
    // Finished and request lost after a ChangeCipherSpec we did see), or a
    // server hole before the client's first answer.
    let lost = match fin.small_before {
        Some(r) => x.any_gap_before(x.log_index(r)),
        None => x.s.gap_bytes[Dir::Client.idx()] > 0 || x.any_gap_before(x.client_after_idx.unwrap_or(x.recs.len())),
    };
    if lost {
        out.set(Outcome::Incomplete, FailureKind::CaptureGap);
        return;
    }
    let client_dead = x.s.parser.is_dead(Dir::Client) && x.s.anomalies.contains(&"record_header");
    if let Some(r) = fin.small_before {
        // 7. B: a protected record too short to be a Finished, instead of one.
        out.reject(FailureKind::AlertEncryptedPreFinished, FailureClass::B, Confidence::High);
        out.encrypted = true;
        out.record_len = Some(r.len);
        out.ms_after_server_flight = x.after_flight(r.ts_ns);
    } else if client_dead {
        out.set(Outcome::Incomplete, FailureKind::Unreadable);
    } else if x.client_after.iter().all(|r| r.content_type == content::CHANGE_CIPHER_SPEC) {
        left_without_a_word(x, out);
    } else if !x.tls13 && matches!(x.closed_by, Some(Dir::Client)) {
        // TLS 1.2 client sent its key exchange but no Finished, then left.
        out.reject(FailureKind::CloseNoAlert, FailureClass::D, Confidence::Medium);
    } else if !x.tls13 {
        // Key exchange sent, no Finished, no alert, no close by the client:
        // nothing on the wire says it rejected anything.
        out.set(Outcome::Incomplete, FailureKind::HandshakeUnfinished);
    }
}

/// 8-9: the client wrote nothing after the server's flight (at most a
/// ChangeCipherSpec): it left (D), it stalled (E), or it left too early to
/// have read the flight.
fn left_without_a_word(x: &Facts<'_>, out: &mut TlsFailure) {
    let client_close = x.close_ts(Dir::Client);
    match x.closed_by {
        Some(Dir::Client) if client_close.zip(x.flight_end).is_some_and(|(c, f)| c < f) => {
            out.set(Outcome::Abandoned, FailureKind::ClientClosedBeforeServerFlight);
            out.ms_after_server_flight = client_close.and_then(|t| x.after_flight(t));
        }
        Some(Dir::Client) => {
            // 8. D: the client read the flight and left without a word.
            let soon = client_close.zip(x.flight_end).is_some_and(|(c, fl)| c.saturating_sub(fl) <= immediate_ns(x.f));
            out.reject(FailureKind::CloseNoAlert, FailureClass::D, if soon { Confidence::Medium } else { Confidence::Low });
            if soon {
                out.signals.push("close_within_3_rtt");
            }
            if x.f.dirs[Dir::Client.idx()].rst {
                out.signals.push("client_rst");
            }
            out.ms_after_server_flight = client_close.and_then(|t| x.after_flight(t));
        }
        Some(Dir::Server) | None if !capture_ended(x.e.close) || x.closed_by.is_some() => {
            // 9. E: the client stalled until the server or the timeout gave up.
            out.reject(FailureKind::Stall, FailureClass::E, Confidence::Low);
        }
        _ => out.set(Outcome::Incomplete, FailureKind::CaptureEnded),
    }
}

/// The records after the client's Finished, and the small (alert-sized)
/// ones among them.
struct AfterFinished<'a> {
    later: &'a [RecordInfo],
    client_small: Option<&'a RecordInfo>,
    small: Box<dyn Fn(&RecordInfo) -> bool + 'a>,
}

fn after_finished<'a>(x: &Facts<'a>, fin_ts: i64) -> AfterFinished<'a> {
    // After the Finished, "alert-sized" is an alert's 2 bytes, the inner
    // type byte, the AEAD tag and at most 16 bytes of padding (Java pads by
    // 16): 35 with 16-byte tags. A 52-byte record is a request, not an alert.
    let tag = if x.suite == Some(0x1305) { 8 } else { 16 };
    let tls13 = x.tls13;
    let small = move |r: &RecordInfo| {
        r.content_type == content::ALERT || (tls13 && r.content_type == content::APPLICATION_DATA && r.len <= 2 + 1 + tag + 16)
    };
    // Records after the client's Finished, by position in the log (several
    // records often share one packet and one timestamp).
    let is_fin = |r: &RecordInfo| {
        r.dir == Dir::Client
            && r.ts_ns == fin_ts
            && if tls13 { r.content_type == content::APPLICATION_DATA && !small(r) } else { r.content_type == content::HANDSHAKE }
    };
    let fin_idx = x.recs.iter().position(is_fin);
    let later = &x.recs[fin_idx.map_or(x.recs.len(), |i| i + 1)..];
    let client_small = later.iter().find(|r| r.dir == Dir::Client && small(r));
    AfterFinished { later, client_small, small: Box::new(small) }
}

/// 10-12: the client finished its handshake.
fn client_finished(x: &Facts<'_>, fin: &Finish<'_>, fin_ts: i64, out: &mut TlsFailure) {
    let af = after_finished(x, fin_ts);
    // The server answered the client's Finished with an alert-sized record
    // (not a session ticket or data) and left: it refused the client (e.g.
    // no client certificate), whatever the client wrote.
    if let Some(sr) = af.later.iter().find(|r| r.dir == Dir::Server).filter(|r| (af.small)(r)) {
        // The server's ticket or answer may be what the capture lost.
        if x.any_gap_before(x.log_index(sr)) {
            out.set(Outcome::Incomplete, FailureKind::CaptureGap);
            return;
        }
        if af.client_small.is_none_or(|c| sr.ts_ns <= c.ts_ns) && x.closed_by.is_some() {
            out.set(Outcome::ServerRejected, FailureKind::ServerAlert);
            out.encrypted = true;
            out.record_len = Some(sr.len);
            return;
        }
    }
    // 10. Client application data: established.
    if !fin.app_after.is_empty() || (!x.tls13 && x.s.side[0].app_records > 0) {
        return;
    }
    // The client finished but wrote nothing. Was that a rejection after the
    // handshake (class C: OkHttp's CertificatePinner, a hostname verifier)
    // or a connection it simply did not use?
    let abort_ts = match (af.client_small.map(|r| r.ts_ns), x.closed_by == Some(Dir::Client)) {
        (Some(t), _) => Some(t),
        (None, true) => x.close_ts(Dir::Client),
        (None, false) => None,
    };
    let Some(abort) = abort_ts else {
        if x.closed_by.is_none() && capture_ended(x.e.close) {
            // Finished, nothing written, and the capture ended before either
            // side left: too early to call.
            out.set(Outcome::Incomplete, FailureKind::CaptureEnded);
        }
        return;
    };
    // 11. Capture loss after the Finished: the data that would show the
    // client went on may be what was lost.
    if x.any_gap_before(af.client_small.map_or(x.recs.len(), |r| x.log_index(r))) {
        out.set(Outcome::Incomplete, FailureKind::CaptureGap);
        return;
    }
    post_handshake_abort(x, &af, fin_ts, abort, out);
}

/// 11 (C) or 12: the client ended a finished, unused session at `abort`.
/// Class C needs the abort soon after the handshake and a second signal;
/// otherwise the session was simply not used.
fn post_handshake_abort(x: &Facts<'_>, af: &AfterFinished<'_>, fin_ts: i64, abort: i64, out: &mut TlsFailure) {
    // The handshake is over at the client's Finished (TLS 1.3), or at the
    // later of the two Finished (TLS <= 1.2: a full handshake's server
    // Finished follows the client's).
    let done = if x.tls13 { fin_ts } else { x.s.last_server_handshake_ts.map_or(fin_ts, |t| t.max(fin_ts)) };
    let after = abort.saturating_sub(done);
    out.ms_after_handshake = Some(ms(done, abort));
    // Signals, each independent of the others.
    let prompt = after <= x.cfg.post_handshake_abort_ns;
    let immediate = after <= immediate_ns(x.f);
    let server_after = af.later.iter().find(|r| r.dir == Dir::Server && r.ts_ns > fin_ts);
    let before_reply = server_after.is_none_or(|r| abort <= r.ts_ns);
    let rst = x.f.dirs[Dir::Client.idx()].rst;
    if immediate {
        out.signals.push("abort_within_3_rtt");
    }
    if before_reply {
        out.signals.push("closed_before_server_reply");
    }
    if rst {
        out.signals.push("client_rst");
    }
    let strong = immediate as u8 + (before_reply || rst) as u8;
    if prompt && strong > 0 {
        out.reject(FailureKind::AbortPostHandshake, FailureClass::C, if strong == 2 { Confidence::High } else { Confidence::Medium });
        out.encrypted = af.client_small.is_some();
        out.record_len = af.client_small.map(|r| r.len);
        out.ms_after_server_flight = x.after_flight(abort);
        return;
    }
    // 12. Finished, nothing sent, closed at leisure: unused.
    out.kind = Some(FailureKind::ClosedUnused);
    out.signals.clear();
}

/// Decide the path of a session from what it shows itself and the
/// deployment. Rules in the order docs/output.md (`path`) lists them.
/// Sessions an inline deployment covers that carry no direct evidence
/// come out `pending`: the reporting desk judges them against the
/// inspector's profile ([`crate::verdict::inspector::Profile::judge`]).
pub fn path(e: &Ended, cfg: &Config, sni: Option<&str>, ja3s: Option<&str>) -> PathOut {
    let x = PathFacts::of(e, cfg, sni, ja3s);
    let mut ev = Vec::new();
    let mut p = PATH_RULES.iter().find_map(|(_, rule)| rule(&x, &mut ev)).unwrap_or_else(|| direct(&x, std::mem::take(&mut ev)));
    p.wire = if x.tcp { wire_out(&e.flow) } else { None };
    p
}

/// A path rule: a decision, or `None` to ask the next rule. A rule may
/// add evidence that later rules keep.
type PathRule = fn(&PathFacts<'_>, &mut Vec<String>) -> Option<PathOut>;

/// The path rules in the order they are tried, named as docs/output.md
/// numbers them; rule 10 ([`direct`]) decides what none of them does.
const PATH_RULES: [(&str, PathRule); 9] = [
    ("1. explicit proxy", explicit_proxy),
    ("2. the inspection CA signed the chain", inspection_ca),
    ("3. a declared transparent proxy", transparent_proxy),
    ("4. the proxy's ServerHello fingerprint", proxy_fingerprint),
    ("5. a tunnel endpoint", tunnel_endpoint),
    ("6. the bypass list", bypass_list),
    ("7. internal destinations", internal),
    ("8. clients we do not manage", unmanaged),
    ("9. an inline inspector covers it", inline_covered),
];

/// What the path rules read.
struct PathFacts<'a> {
    cfg: &'a Config,
    sni: Option<&'a str>,
    cip: IpAddr,
    sip: IpAddr,
    sport: u16,
    tcp: bool,
    /// The evidence that the inspection CA signed the chain, if it did.
    chain_ca: Option<String>,
    /// The origin's own certificate reached the client: whatever it
    /// traversed did not terminate the TLS.
    origin_chain: bool,
    /// The evidence that the ServerHello is the declared proxy's, if it is.
    proxy_fp: Option<String>,
    connect: Option<ConnectOut>,
    to_proxy: bool,
}

impl<'a> PathFacts<'a> {
    fn of(e: &'a Ended, cfg: &'a Config, sni: Option<&'a str>, ja3s: Option<&str>) -> Self {
        let f = &e.flow;
        let s = &f.session;
        let (cip, _) = f.client();
        let (sip, sport) = f.server();
        let chain_ca = s.server_chain.iter().enumerate().find_map(|(i, c)| {
            cfg.inspection_cas.iter().find_map(|ca| {
                if i == 0 && c.issuerdn == ca.subject {
                    Some(format!("leaf_issuer:inspection_ca:{}", ca.subject))
                } else if !ca.spki_sha256.is_empty() && c.spki_sha256 == ca.spki_sha256 {
                    // mitmproxy signs its leaves with the CA's own key pair.
                    Some(format!("chain[{i}]_spki:inspection_ca:{}", ca.subject))
                } else {
                    None
                }
            })
        });
        let origin_chain = chain_ca.is_none() && !s.server_chain.is_empty() && !cfg.inspection_cas.is_empty();
        PathFacts {
            cfg,
            sni,
            cip,
            sip,
            sport,
            tcp: f.key.proto == 6,
            chain_ca,
            origin_chain,
            proxy_fp: ja3s.filter(|h| cfg.proxy_ja3s.iter().any(|p| p == h)).map(|h| format!("ja3s:proxy:{h}")),
            connect: s.connect().map(|(t, st)| ConnectOut { target: t.clone(), status: *st }),
            to_proxy: cfg.explicit_proxies.iter().any(|p| p.ip() == sip && p.port() == sport),
        }
    }
}

fn intercepted(kind: PathKind, confidence: Confidence, ev: &mut Vec<String>) -> PathOut {
    let mut p = PathOut::new(kind, confidence, std::mem::take(ev));
    p.intercepted = Some(true);
    p
}

/// Rule 1: Explicit proxy: to its address, or inside an HTTP CONNECT. A CONNECT
/// to a bypass-listed name that the proxy did not terminate is the
/// sanctioned bypass (spliced), with the CONNECT target and the rule as
/// evidence; proven spliced (origin chain) is high, by policy alone (TLS
/// 1.3) medium. A terminated one stays `explicit_proxy`: the proxy did not
/// apply its bypass list.
fn explicit_proxy(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.to_proxy && x.connect.is_none() {
        return None;
    }
    if x.to_proxy {
        ev.push(format!("dest:explicit_proxy:{}:{}", x.sip, x.sport));
    }
    if let Some(c) = &x.connect {
        ev.push(format!("http_connect:{}", c.target));
    }
    let target = x
        .connect
        .as_ref()
        .map(|c| c.target.rsplit_once(':').map_or(c.target.as_str(), |(h, _)| h).trim_start_matches('[').trim_end_matches(']').to_string());
    let rule = target.as_deref().and_then(|t| x.cfg.bypass_match(Some(t), x.sip)).or_else(|| x.cfg.bypass_match(x.sni, x.sip));
    let (terminated, conf) = match (&x.chain_ca, &x.proxy_fp) {
        (Some(c), _) => {
            ev.push(c.clone());
            (Some(true), Confidence::High)
        }
        (None, Some(fp)) => {
            ev.push(fp.clone());
            (Some(true), Confidence::Medium)
        }
        // A TLS <= 1.2 chain we can read that is not the inspection CA's:
        // the proxy passed the origin's certificate through.
        _ if x.origin_chain => {
            ev.push("chain:origin_not_inspection_ca".into());
            (Some(false), Confidence::High)
        }
        _ => (None, Confidence::Medium),
    };
    if let Some(rule) = rule {
        ev.push(format!("bypass:{rule}"));
        if terminated != Some(true) {
            let mut p = PathOut::new(PathKind::SanctionedBypass, conf, std::mem::take(ev));
            p.intercepted = Some(false);
            p.connect = x.connect.clone();
            p.bypass_rule = Some(rule);
            p.policy = Some(Policy::Bypass);
            return Some(p);
        }
    }
    let mut p = PathOut::new(PathKind::ExplicitProxy, if terminated.is_some() { conf } else { Confidence::High }, std::mem::take(ev));
    p.intercepted = terminated;
    p.connect = x.connect.clone();
    Some(p)
}

/// Rule 2: The inspection CA signed the chain: intercepted, whatever the address.
fn inspection_ca(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    ev.push(x.chain_ca.clone()?);
    Some(intercepted(PathKind::Intercepted, Confidence::High, ev))
}

/// Rule 3: A declared transparent proxy address.
fn transparent_proxy(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.cfg.transparent_proxies.contains(&x.sip) {
        return None;
    }
    ev.push(format!("dest:transparent_proxy:{}", x.sip));
    Some(intercepted(PathKind::Intercepted, Confidence::High, ev))
}

/// Rule 4: The proxy's declared ServerHello fingerprint (weak alone: an OpenSSL
/// inspector and an OpenSSL origin share TLS 1.3 JA3S).
fn proxy_fingerprint(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    ev.push(x.proxy_fp.clone()?);
    Some(intercepted(PathKind::Intercepted, Confidence::Medium, ev))
}

/// Rule 5: A known tunnel endpoint (VPN concentrator).
fn tunnel_endpoint(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.cfg.is_tunnel_endpoint(x.sip, x.sport) {
        return None;
    }
    ev.push(format!("dest:tunnel_endpoint:{}:{}", x.sip, x.sport));
    Some(PathOut::new(PathKind::Tunnel, Confidence::High, std::mem::take(ev)))
}

/// Rule 6: The bypass list: the inspector should pass it through.
fn bypass_list(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    let rule = x.cfg.bypass_match(x.sni, x.sip)?;
    ev.push(format!("bypass:{rule}"));
    let conf = if x.origin_chain {
        ev.push("chain:origin_not_inspection_ca".into());
        Confidence::High
    } else {
        Confidence::Medium
    };
    let mut p = PathOut::new(PathKind::SanctionedBypass, conf, std::mem::take(ev));
    p.intercepted = Some(false);
    p.bypass_rule = Some(rule);
    p.policy = Some(Policy::Bypass);
    Some(p)
}

/// Rule 7: Internal destinations.
fn internal(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.cfg.is_internal(x.sip) {
        return None;
    }
    ev.push(format!("dest_internal:{}", x.sip));
    Some(PathOut::new(PathKind::Internal, Confidence::High, std::mem::take(ev)))
}

/// Rule 8: Clients we do not manage. A managed client's session goes on to 9
/// and 10 with the client and destination as evidence.
fn unmanaged(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.cfg.is_managed(x.cip) {
        ev.push(format!("client_not_managed:{}", x.cip));
        return Some(PathOut::new(PathKind::Unknown, Confidence::Low, std::mem::take(ev)));
    }
    ev.push(format!("client_managed:{}", x.cip));
    ev.push(format!("dest_external:{}", x.sip));
    None
}

/// Rule 9: An inline inspector covers this session: judge it on the wire. The
/// origin's certificate reaching the client shows the inspector did not
/// terminate it (TLS <= 1.2); otherwise the reporting desk judges it
/// against the inspector's profile (`pending`).
fn inline_covered(x: &PathFacts<'_>, ev: &mut Vec<String>) -> Option<PathOut> {
    if !x.tcp || !x.cfg.inline_covers(x.sip, x.sport) {
        return None;
    }
    if x.origin_chain {
        ev.push("chain:origin_not_inspection_ca".into());
        let mut p = PathOut::new(PathKind::Direct, Confidence::High, std::mem::take(ev));
        p.intercepted = Some(false);
        p.policy = Some(Policy::Inspect);
        return Some(p);
    }
    ev.push(format!("policy:inline_inspection_covers:tcp/{}", x.sport));
    let mut p = PathOut::new(PathKind::Unknown, Confidence::Low, std::mem::take(ev));
    p.policy = Some(Policy::Inspect);
    p.pending = true;
    Some(p)
}

/// Rule 10: Everything else from a managed client to the internet went straight
/// out: with an explicit proxy deployment the address says it did not use
/// the proxy; without inspection there is nothing to go around; an inline
/// deployment does not cover this port or address.
fn direct(x: &PathFacts<'_>, mut ev: Vec<String>) -> PathOut {
    match x.cfg.deployment {
        crate::config::Deployment::None => ev.push("deployment:none".into()),
        crate::config::Deployment::Explicit => ev.push("deployment:explicit:not_to_proxy".into()),
        _ if x.tcp => ev.push(format!("policy:not_covered:tcp/{}", x.sport)),
        _ => ev.push("policy:not_covered:udp".into()),
    }
    let mut p = PathOut::new(PathKind::Direct, Confidence::High, ev);
    p.intercepted = Some(false);
    p
}

/// The server side's wire signals of a TCP flow, if it saw any server packet.
pub fn wire_out(f: &crate::flow::Flow) -> Option<WireOut> {
    let w = &f.wire;
    if w.synack_ttl == 0 && w.data_ttl == 0 {
        return None;
    }
    let recs = &f.session.record_log;
    let hello = match (f.session.client_hellos.first(), recs.iter().find(|r| r.dir == Dir::Server)) {
        (Some((_, ch)), Some(sr)) if sr.ts_ns >= *ch => Some(ms(*ch, sr.ts_ns)),
        _ => None,
    };
    let ttl = (w.synack_ttl > 0).then_some(w.synack_ttl);
    let data = (w.data_ttl > 0).then_some(w.data_ttl);
    Some(WireOut {
        synack_ttl: ttl,
        server_hops: ttl.map(hops_of),
        data_ttl: data,
        data_hops: data.map(hops_of),
        synack_ms: (w.synack_us > 0).then(|| f64::from(w.synack_us) / 1000.0),
        server_hello_ms: hello,
        tcp_signature: ttl.map(|t| {
            format!(
                "{t}:{}:{}:{}:{}",
                w.synack_win,
                w.synack_mss,
                if w.synack_ws == 0xff { -1 } else { i32::from(w.synack_ws) },
                w.options()
            )
        }),
    })
}

/// Outcome of a QUIC connection, from what its Initial packets show: a
/// CONNECTION_CLOSE carrying a TLS alert (RFC 9001 §4.8: 0x100 + alert) from
/// the client is how a QUIC client rejects a certificate (class A: the alert
/// is readable in an Initial packet); from the server it is a refusal. A
/// client Initial that is never answered is `incomplete` (UDP/443 blocked
/// or a one-sided capture).
pub fn quic_outcome(e: &Ended) -> TlsFailure {
    let f = &e.flow;
    let mut out = TlsFailure::new(e.close);
    let Some(q) = f.quic.as_ref() else {
        out.outcome = Outcome::Incomplete;
        return out;
    };
    let first_close = |client: bool| q.closes.iter().find(|c| c.from_client == client);
    let server_answered = f.dirs[Dir::Server.idx()].pkts > 0;
    // A client that gives up on a server that never answered (and says so
    // with a CRYPTO_ERROR code, as some interop clients do) judged nothing.
    if let Some(c) = first_close(true).filter(|c| server_answered && c.tls_alert.is_some_and(|a| a != 0)) {
        out.reject(FailureKind::AlertPlain, FailureClass::A, Confidence::High);
        out.alert_code = c.tls_alert;
        out.alert = c.tls_alert.map(pinwatch_parsers::tls::alert_name);
        out.closed_by = Some(Dir::Client);
        out.ms_after_server_flight = q.first_server_ts.map(|t| ms(t, c.ts_ns));
        return out;
    }
    if let Some(c) = first_close(false) {
        out.outcome = Outcome::ServerRejected;
        out.kind = Some(FailureKind::ServerAlert);
        out.alert_code = c.tls_alert;
        out.alert = c.tls_alert.map(pinwatch_parsers::tls::alert_name);
        out.closed_by = Some(Dir::Server);
        return out;
    }
    if f.dirs[Dir::Server.idx()].pkts == 0 {
        out.outcome = Outcome::Incomplete;
        out.kind = Some(if f.dirs[Dir::Client.idx()].pkts == 0 { FailureKind::OneSided } else { FailureKind::NoResponse });
        return out;
    }
    if q.client_hellos.is_empty() && q.gquic.is_empty() {
        out.outcome = Outcome::Incomplete;
        out.kind = Some(FailureKind::Midstream);
        return out;
    }
    // The server answered; beyond the Initials QUIC is opaque, so a
    // connection that carried on is established.
    out.finished_seen = q.server_hello.is_some();
    out
}

/// True for an IP literal used as a server name (or no name at all).
pub fn sni_is_ip_or_missing(sni: Option<&str>) -> bool {
    sni.is_none_or(|s| s.parse::<IpAddr>().is_ok())
}

/// The sensor stopped watching a flow that was still open: the end of a
/// capture file (`eof`) or a live capture's shutdown (`shutdown`). Neither
/// says anything about the session, so both classify alike.
fn capture_ended(close: CloseKind) -> bool {
    matches!(close, CloseKind::Eof | CloseKind::Shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_lengths_follow_the_suite() {
        assert_eq!(tls13_finished_len(0x1301), 53);
        assert_eq!(tls13_finished_len(0x1303), 53);
        assert_eq!(tls13_finished_len(0x1302), 69);
        assert_eq!(tls13_finished_len(0x1305), 45);
    }
}
