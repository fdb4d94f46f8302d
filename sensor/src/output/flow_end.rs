//! The `flow` record: the end of a flow whose session was reported while
//! open ([`crate::flow::decision`]), pointing back by `flow_id`, with
//! Suricata's flow counters and, when the verdict changed, the revised
//! `tls_failure` and `path`.

use serde::Serialize;

use crate::flow::{CloseKind, Ended};
use crate::output::eve::Header;
use crate::verdict::classify::{PathOut, TlsFailure};

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
    /// The flow's header, `event_type` `flow`, without the source and sensor names (the reporter
    /// adds them).
    pub header: Header<'static>,
    /// Packets from the client, the whole flow.
    pub pkts_toserver: u64,
    /// Packets from the server, the whole flow.
    pub pkts_toclient: u64,
    /// Bytes from the client (lengths on the wire), the whole flow.
    pub bytes_toserver: u64,
    /// Bytes from the server (lengths on the wire), the whole flow.
    pub bytes_toclient: u64,
    /// Time of the flow's first packet, ns since the Unix epoch.
    pub start_ns: i64,
    /// Time the flow ended (its last packet, or its close), ns since the Unix epoch.
    pub end_ns: i64,
    /// How the flow ended.
    pub close: CloseKind,
    /// Suricata's `flow.state`: `closed` after FIN/RST, `established` when both sides sent packets,
    /// else `new`.
    pub state: &'static str,
    /// The session classified again at its end: written when it differs
    /// from the verdict reported ([`digest`], compared by the reporter).
    pub verdict: (TlsFailure, PathOut),
    /// TLS: the session's `handshake.history` and `handshake.alerts` at
    /// the end (alerts such as a close_notify often come after the record).
    pub history: Option<String>,
    /// The session's `handshake.alerts` at the end, as JSON (TLS only).
    pub alerts: Option<serde_json::Value>,
}

impl FlowEnd {
    /// `verdict`: the session classified again at its end.
    pub fn new(
        e: &Ended,
        app_proto: &'static str,
        verdict: (TlsFailure, PathOut),
        handshake: Option<(&str, serde_json::Value)>,
    ) -> FlowEnd {
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
                start: crate::output::eve::timestamp(self.start_ns),
                end: crate::output::eve::timestamp(self.end_ns),
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
    /// The flow's header (flattened), `event_type` `flow`.
    #[serde(flatten)]
    pub header: Header<'a>,
    /// `flow`: Suricata's flow object.
    pub flow: SuricataFlow,
    /// `flow_end`: how the flow ended and whether the verdict changed.
    pub flow_end: FlowEndOut<'a>,
    /// `tls_failure`: the outcome at the flow's end; only when `flow_end.revised`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<&'a TlsFailure>,
    /// `path`: the path at the flow's end; only when `flow_end.revised`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a PathOut>,
}

/// Suricata's `flow` object, its names and types.
#[derive(Serialize)]
pub struct SuricataFlow {
    /// `pkts_toserver`: packets from the client, the whole flow.
    pub pkts_toserver: u64,
    /// `pkts_toclient`: packets from the server, the whole flow.
    pub pkts_toclient: u64,
    /// `bytes_toserver`: bytes from the client (lengths on the wire), the whole flow.
    pub bytes_toserver: u64,
    /// `bytes_toclient`: bytes from the server (lengths on the wire), the whole flow.
    pub bytes_toclient: u64,
    /// `start`: time of the flow's first packet.
    pub start: String,
    /// `end`: time the flow ended (its last packet, or its close).
    pub end: String,
    /// `age`: whole seconds from `start` to `end`.
    pub age: i64,
    /// `state`: `closed` after FIN/RST, `established` when both sides sent packets, else `new`.
    pub state: &'static str,
    /// `reason`: `timeout` for FIN/RST and idle ends, `forced` for an eviction, `shutdown` at the
    /// end of the capture or of a live run.
    pub reason: &'static str,
    /// `alerted`: the session's record raised an alert on this `flow_id`.
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
    /// `alerts`: TLS: `handshake.alerts` as it stands at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<&'a serde_json::Value>,
}
