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
//! writes a `flow` record (`crate::output::flow_end::FlowEnd`) that points back by `flow_id`, with
//! Suricata's flow counters and, when the verdict changed, the revised
//! `tls_failure` and `path`.
//!
//! Everything here is a function of the flow's packets and their
//! timestamps, so the records and their order are the same for any thread
//! count (the flow table wakes the flow at [`due`], see
//! `FlowTable::take_due`).

use crate::flow::session::TlsSession;
use crate::flow::{Flow, Limits, Proto};

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
    if known {
        timeout.min(ts.saturating_add(hold))
    } else {
        timeout
    }
}

/// An alert was seen, or the client sent application data after the
/// handshake: the verdict will not wait for the flow's end.
fn tls_verdict_known(s: &TlsSession) -> bool {
    !s.alerts.is_empty() || client_data_after_handshake(s)
}

/// The client sent application data after the handshake (TLS ≤ 1.2: a
/// data record after its Finished; TLS 1.3: a second protected record, the
/// first being its Finished).
pub fn client_data_after_handshake(s: &TlsSession) -> bool {
    let client = &s.side[0];
    if s.parser.is_tls13() {
        client.app_records >= 2
    } else {
        client.finished && client.app_records >= 1
    }
}
