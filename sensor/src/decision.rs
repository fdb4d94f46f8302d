//! When a session is reported: at its verdict, not only at its flow's end.
//!
//! A pinned app's session that stays open (a push channel, a long poll) used
//! to be reported when its flow ended, minutes to hours late. Now an open
//! session's `tls`/`quic` record and its findings are written as soon as its
//! verdict is known, in packet time:
//!
//! - one linger ([`Limits::closed_linger_ns`], 5 s) after the client's first
//!   application data following the handshake (TLS ≤ 1.2: a data record
//!   after its Finished; TLS 1.3: a second protected record, the first being
//!   its Finished), or after the first alert of either side; QUIC: after
//!   the server's Initial ServerHello or a CONNECTION_CLOSE;
//! - else at the decision timeout ([`Limits::decision_timeout_ns`], 10 s)
//!   after the first ClientHello (QUIC: the client's first Initial).
//!
//! The linger lets a session that closes at once (a rejection is followed
//! by a RST or FIN within milliseconds) be reported once, complete, at its
//! end, as before: a flow closed (both FINs or a RST) before its record is
//! due is written at its end only. A session reported while open is
//! classified as it stands (`handshake.close` and `tls_failure.close`
//! `"open"`, which the rules treat like an idle timeout); its end then
//! writes a `flow` record ([`FlowEnd`]) that points back by `flow_id`, with
//! Suricata's flow counters and, when the verdict changed, the revised
//! `tls_failure` and `path`.
//!
//! Everything here is a function of the flow's packets and their
//! timestamps, so the records and their order are the same for any thread
//! count (the flow table wakes the flow at [`due`], see
//! `FlowTable::take_due`).

use serde::Serialize;

use crate::classify::{PathOut, TlsFailure};
use crate::eve::Header;
use crate::flow::{CloseKind, Ended, Flow, Limits, Proto};
use crate::session::TlsSession;

/// When an open session's record is due, as its state stands after a
/// packet at `ts`; `i64::MAX` when it is not (yet) due, or is written at
/// its end only (closed, already reported, not a TLS or QUIC session, or
/// the decision timeout is 0).
pub fn due(f: &Flow, ts: i64, lim: &Limits) -> i64 {
    if lim.decision_timeout_ns <= 0 || f.close.is_some() || f.reported {
        return i64::MAX;
    }
    let hold = lim.closed_linger_ns.max(0);
    let (start, known) = match f.proto {
        Proto::Tls => {
            let s = &f.session;
            let Some(&(_, hello_ts)) = s.client_hellos.first() else { return i64::MAX };
            (hello_ts, tls_verdict_known(s))
        }
        Proto::Quic => {
            let Some(q) = f.quic.as_deref() else { return i64::MAX };
            let start = q.client_hellos.first().map_or(f.first_ts, |&(_, t)| t);
            (start, q.server_hello.is_some() || !q.closes.is_empty())
        }
        Proto::Unknown | Proto::NotTls => return i64::MAX,
    };
    let timeout = start.saturating_add(lim.decision_timeout_ns);
    if known { timeout.min(ts.saturating_add(hold)) } else { timeout }
}

/// An alert was seen, or the client sent application data after the
/// handshake: the verdict will not wait for the flow's end.
fn tls_verdict_known(s: &TlsSession) -> bool {
    let client = &s.side[0];
    let data_after_handshake = if s.parser.is_tls13() { client.app_records >= 2 } else { client.finished && client.app_records >= 1 };
    !s.alerts.is_empty() || data_after_handshake
}

/// A digest of what a verdict says (outcome, kind, class, path kind): the
/// flow-end record compares it to tell a revision.
pub fn digest(failure: &TlsFailure, path: &PathOut) -> u32 {
    let text = format!("{:?}|{:?}|{:?}|{:?}", failure.outcome, failure.kind, failure.class, path.kind);
    // FNV-1a: stable across runs and builds.
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The end of a flow whose session was reported while open, made ready for
/// the `flow` record (the reporter adds `alerted` and the source names).
pub struct FlowEnd {
    pub header: Header<'static>,
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub close: CloseKind,
    pub state: &'static str,
    /// The session classified again at its end: written when it differs
    /// from the verdict reported ([`digest`], compared by the reporter).
    pub verdict: (TlsFailure, PathOut),
    /// TLS: the session's `handshake.history` and `handshake.alerts` at
    /// the end (alerts such as a close_notify often come after the record).
    pub history: Option<String>,
    pub alerts: Option<serde_json::Value>,
}

impl FlowEnd {
    /// `verdict`: the session classified again at its end.
    pub fn new(e: &Ended, app_proto: &'static str, verdict: (TlsFailure, PathOut), handshake: Option<(&str, serde_json::Value)>) -> FlowEnd {
        let f = &e.flow;
        let state = match e.close {
            CloseKind::Fin | CloseKind::Rst => "closed",
            _ if f.dirs.iter().all(|d| d.pkts > 0) => "established",
            _ => "new",
        };
        FlowEnd {
            header: Header::of(f, None, "flow", app_proto),
            pkts_toserver: f.dirs[0].pkts,
            pkts_toclient: f.dirs[1].pkts,
            bytes_toserver: f.dirs[0].bytes,
            bytes_toclient: f.dirs[1].bytes,
            start_ns: f.first_ts,
            end_ns: e.end_ts,
            close: e.close,
            state,
            verdict,
            history: handshake.as_ref().map(|h| h.0.to_string()),
            alerts: handshake.map(|h| h.1),
        }
    }

    /// The record, with the names the reporter gives the header, whether
    /// the session's own report raised an alert, and whether the verdict
    /// changed since it was reported.
    pub fn record<'a>(&'a self, header: Header<'a>, alerted: bool, revised: bool) -> FlowEvent<'a> {
        let reason = match self.close {
            CloseKind::Evicted => "forced",
            CloseKind::Eof | CloseKind::Shutdown => "shutdown",
            CloseKind::Fin | CloseKind::Rst | CloseKind::Timeout | CloseKind::Open => "timeout",
        };
        FlowEvent {
            header,
            flow: SuricataFlow {
                pkts_toserver: self.pkts_toserver,
                pkts_toclient: self.pkts_toclient,
                bytes_toserver: self.bytes_toserver,
                bytes_toclient: self.bytes_toclient,
                start: crate::eve::timestamp(self.start_ns),
                end: crate::eve::timestamp(self.end_ns),
                age: self.end_ns.saturating_sub(self.start_ns).max(0) / 1_000_000_000,
                state: self.state,
                reason,
                alerted,
            },
            flow_end: FlowEndOut { close: self.close, revised, history: self.history.as_deref(), alerts: self.alerts.as_ref() },
            tls_failure: revised.then_some(&self.verdict.0),
            path: revised.then_some(&self.verdict.1),
        }
    }
}

/// `event_type: "flow"`: Suricata's flow record, plus `flow_end`.
#[derive(Serialize)]
pub struct FlowEvent<'a> {
    #[serde(flatten)]
    pub header: Header<'a>,
    pub flow: SuricataFlow,
    pub flow_end: FlowEndOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<&'a TlsFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a PathOut>,
}

/// Suricata's `flow` object, its names and types.
#[derive(Serialize)]
pub struct SuricataFlow {
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub start: String,
    pub end: String,
    pub age: i64,
    pub state: &'static str,
    pub reason: &'static str,
    pub alerted: bool,
}

/// pinwatch's part of the `flow` record.
#[derive(Serialize)]
pub struct FlowEndOut<'a> {
    /// How the flow ended (as `handshake.close`).
    pub close: CloseKind,
    /// The verdict at the end differs from the one reported while the flow
    /// was open: `tls_failure` and `path` carry the new one.
    pub revised: bool,
    /// TLS: `handshake.history` and `handshake.alerts` as they stand at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<&'a serde_json::Value>,
}
