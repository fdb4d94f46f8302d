//! Inspection-aware classification of one ended TLS session: which path it
//! took relative to the enterprise's TLS inspection, and whether the client
//! accepted or rejected what it was shown, and how.
//!
//! Heads up! Read `shared/docs/domain.md` §1.1–1.3 before changing this file:
//! the failure classes A–E and the record sizes come from there, corrected by
//! what the testbed's real stacks do on the wire (`pcaps/README.md`): Java's
//! TLS 1.3 stack pads every record with 16 bytes (alerts are 35, Finished
//! 69/85), so "alert-sized" means *shorter than the Finished the negotiated
//! suite implies*, never exactly 19.
//!
//! Everything here reads only the session's record log, alerts, flags and
//! close times: no payload, no clock.

use std::net::IpAddr;

use serde::Serialize;

use pinwatch_parsers::tls::{content, Dir, RecordInfo};

use crate::config::Config;
use crate::flow::{CloseKind, Ended};

/// Path relative to the inspection deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    Intercepted,
    ExplicitProxy,
    SanctionedBypass,
    Direct,
    Internal,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathOut {
    pub kind: PathKind,
    /// Why: one entry per piece of evidence, e.g. `leaf_issuer:inspection_ca`.
    pub evidence: Vec<String>,
    /// For explicit-proxy sessions: whether the proxy terminated the TLS
    /// (`null` when the capture cannot tell, e.g. TLS 1.3 without a proxy
    /// fingerprint configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intercepted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass_rule: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectOut {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Established,
    ClientRejected,
    ServerRejected,
    /// The client closed before the server's flight reached it: it cannot
    /// have judged the certificate (browsers racing QUIC against TCP do this).
    Abandoned,
    Incomplete,
}

/// Failure classes of domain.md §1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureClass {
    A,
    B,
    C,
    D,
    E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    AlertPlain,
    AlertEncryptedPreFinished,
    AbortPostHandshake,
    CloseNoAlert,
    Stall,
    ServerAlert,
    ServerClose,
    ClientClosedBeforeServerFlight,
    OneSided,
    /// A QUIC client Initial that was never answered.
    NoResponse,
    Midstream,
    CaptureEnded,
}

/// The `tls_failure` object.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFailure {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_code: Option<u8>,
    pub encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_len: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_finished_len: Option<u16>,
    pub finished_seen: bool,
    pub client_app_bytes: u64,
    pub close: CloseKind,
    /// Which side closed first (`client`/`server`), if either did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Dir>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_after_server_flight: Option<f64>,
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

fn ms(a: i64, b: i64) -> f64 {
    ((b - a) as f64 / 1000.0).round() / 1000.0
}

/// Classify the outcome of one ended TLS session.
pub fn outcome(e: &Ended, cfg: &Config) -> TlsFailure {
    let f = &e.flow;
    let s = &f.session;
    let close_ts = |d: Dir| f.dirs[d.idx()].close_ts;
    let closed_by = match (close_ts(Dir::Client), close_ts(Dir::Server)) {
        (Some(c), Some(sv)) => Some(if c <= sv { Dir::Client } else { Dir::Server }),
        (Some(_), None) => Some(Dir::Client),
        (None, Some(_)) => Some(Dir::Server),
        (None, None) => None,
    };
    let tls13 = s.parser.is_tls13();
    let suite = s.server_hello.as_ref().map(|(h, _)| h.cipher);
    let fin_len = if tls13 { suite.map(tls13_finished_len) } else { None };
    let mut out = TlsFailure {
        outcome: Outcome::Established,
        kind: None,
        class: None,
        alert: None,
        alert_code: None,
        encrypted: false,
        record_len: None,
        expected_finished_len: fin_len,
        finished_seen: false,
        client_app_bytes: s.side[0].app_bytes,
        close: e.close,
        closed_by,
        ms_after_server_flight: None,
    };

    // One-sided and mid-stream captures are reported as such, never as failures.
    if f.dirs[Dir::Client.idx()].pkts == 0 || f.dirs[Dir::Server.idx()].pkts == 0 {
        out.outcome = Outcome::Incomplete;
        out.kind = Some(FailureKind::OneSided);
        return out;
    }
    if s.client_hellos.is_empty() {
        out.outcome = Outcome::Incomplete;
        out.kind = Some(FailureKind::Midstream);
        return out;
    }

    // The server's flight: server records after the last ClientHello, up to
    // the first client record that answers them.
    let recs: &[RecordInfo] = &s.record_log;
    let first_server = recs.iter().position(|r| r.dir == Dir::Server);
    let (flight_end, client_after): (Option<i64>, Vec<&RecordInfo>) = match first_server {
        None => (None, Vec::new()),
        Some(i) => {
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
            (end, first_client.map(|k| recs[k..].iter().filter(|r| r.dir == Dir::Client).collect()).unwrap_or_default())
        }
    };
    let after_flight = |ts: i64| flight_end.map(|t| ms(t, ts));

    let client_alert = s.alerts.iter().find(|a| a.from == Dir::Client && !a.encrypted && a.description != Some(0));
    let server_alert = s.alerts.iter().find(|a| a.from == Dir::Server && !a.encrypted && a.level == Some(2));

    // A: a readable client alert (any fatal one; close_notify is not a rejection).
    if let Some(a) = client_alert {
        let server_first = server_alert.is_some_and(|sa| sa.ts_ns < a.ts_ns);
        if !server_first {
            out.outcome = Outcome::ClientRejected;
            out.kind = Some(FailureKind::AlertPlain);
            out.class = Some(FailureClass::A);
            out.alert = a.description.map(crate::eve::alert_name);
            out.alert_code = a.description;
            out.record_len = Some(a.record_len);
            out.ms_after_server_flight = after_flight(a.ts_ns);
            return out;
        }
    }
    if let Some(a) = server_alert {
        out.outcome = Outcome::ServerRejected;
        out.kind = Some(FailureKind::ServerAlert);
        out.class = Some(FailureClass::A);
        out.alert = a.description.map(crate::eve::alert_name);
        out.alert_code = a.description;
        out.record_len = Some(a.record_len);
        return out;
    }
    if s.server_hello.is_none() {
        // The server never answered the ClientHello.
        match (e.close, closed_by) {
            (CloseKind::Eof | CloseKind::Shutdown, None) => {
                out.outcome = Outcome::Incomplete;
                out.kind = Some(FailureKind::CaptureEnded);
            }
            _ => {
                out.outcome = Outcome::ServerRejected;
                out.kind = Some(FailureKind::ServerClose);
            }
        }
        return out;
    }

    // Did the client finish its handshake, and where?
    let (finished_ts, small_before_finished, app_after): (Option<i64>, Option<&RecordInfo>, Vec<&RecordInfo>) = if tls13 {
        let fl = fin_len.unwrap_or(53);
        let prot: Vec<&RecordInfo> = client_after.iter().copied().filter(|r| r.content_type == content::APPLICATION_DATA).collect();
        match prot.iter().position(|r| r.len >= fl) {
            Some(k) => {
                let alert_max = if suite == Some(0x1305) { 2 + 1 + 8 + 16 } else { 2 + 1 + 16 + 16 };
                (Some(prot[k].ts_ns), None, prot[k + 1..].iter().copied().filter(|r| r.len > alert_max).collect())
            }
            None => (None, prot.first().copied(), Vec::new()),
        }
    } else {
        let fin = client_after.iter().find(|r| r.content_type == content::HANDSHAKE && s.side[0].ccs);
        let enc_alert = client_after.iter().copied().find(|r| r.content_type == content::ALERT && r.len > 2);
        let app: Vec<&RecordInfo> = client_after.iter().copied().filter(|r| r.content_type == content::APPLICATION_DATA).collect();
        match fin {
            Some(r) if s.side[0].finished => (Some(r.ts_ns), None, app),
            _ => (None, enc_alert, app),
        }
    };
    out.finished_seen = finished_ts.is_some();
    let client_close = close_ts(Dir::Client);

    match finished_ts {
        None => {
            if let Some(r) = small_before_finished {
                // B: a protected record too short to be a Finished, instead of one.
                out.outcome = Outcome::ClientRejected;
                out.kind = Some(FailureKind::AlertEncryptedPreFinished);
                out.class = Some(FailureClass::B);
                out.encrypted = true;
                out.record_len = Some(r.len);
                out.ms_after_server_flight = after_flight(r.ts_ns);
            } else if client_after.iter().all(|r| r.content_type == content::CHANGE_CIPHER_SPEC) {
                match closed_by {
                    Some(Dir::Client) if client_close.zip(flight_end).is_some_and(|(c, f)| c < f) => {
                        out.outcome = Outcome::Abandoned;
                        out.kind = Some(FailureKind::ClientClosedBeforeServerFlight);
                        out.ms_after_server_flight = client_close.and_then(after_flight);
                    }
                    Some(Dir::Client) => {
                        out.outcome = Outcome::ClientRejected;
                        out.kind = Some(FailureKind::CloseNoAlert);
                        out.class = Some(FailureClass::D);
                        out.ms_after_server_flight = client_close.and_then(after_flight);
                    }
                    Some(Dir::Server) | None if !capture_ended(e.close) || closed_by.is_some() => {
                        out.outcome = Outcome::ClientRejected;
                        out.kind = Some(FailureKind::Stall);
                        out.class = Some(FailureClass::E);
                    }
                    _ => {
                        out.outcome = Outcome::Incomplete;
                        out.kind = Some(FailureKind::CaptureEnded);
                    }
                }
            } else if !tls13 && matches!(closed_by, Some(Dir::Client)) {
                // TLS 1.2 client sent its key exchange but no Finished, then left.
                out.outcome = Outcome::ClientRejected;
                out.kind = Some(FailureKind::CloseNoAlert);
                out.class = Some(FailureClass::D);
            }
            out
        }
        Some(fin_ts) => {
            // The server answered the client's Finished with an alert-sized
            // record (not a session ticket or data) and left: it refused the
            // client (e.g. no client certificate), whatever the client wrote.
            // After the Finished, "alert-sized" is an alert's 2 bytes, the
            // inner type byte, the AEAD tag and at most 16 bytes of padding
            // (Java pads by 16): 35 with 16-byte tags. A 52-byte record is a
            // request, not an alert.
            let tag = if suite == Some(0x1305) { 8 } else { 16 };
            let small = |r: &RecordInfo| {
                r.content_type == content::ALERT || (tls13 && r.content_type == content::APPLICATION_DATA && r.len <= 2 + 1 + tag + 16)
            };
            // Records after the client's Finished, by position in the log
            // (several records often share one packet and one timestamp).
            let is_fin = |r: &RecordInfo| {
                r.dir == Dir::Client
                    && r.ts_ns == fin_ts
                    && if tls13 { r.content_type == content::APPLICATION_DATA && !small(r) } else { r.content_type == content::HANDSHAKE }
            };
            let fin_idx = s.record_log.iter().position(is_fin);
            let later = &s.record_log[fin_idx.map_or(s.record_log.len(), |i| i + 1)..];
            let first_server_after = later.iter().find(|r| r.dir == Dir::Server);
            let client_small = later.iter().find(|r| r.dir == Dir::Client && small(r));
            if let Some(sr) = first_server_after.filter(|r| small(r)) {
                if client_small.is_none_or(|c| sr.ts_ns <= c.ts_ns) && closed_by.is_some() {
                    out.outcome = Outcome::ServerRejected;
                    out.kind = Some(FailureKind::ServerAlert);
                    out.encrypted = true;
                    out.record_len = Some(sr.len);
                    return out;
                }
            }
            if !app_after.is_empty() || (!tls13 && s.side[0].app_records > 0) {
                return out;
            }
            // The client finished but wrote nothing. An alert-sized record
            // (close_notify or a fatal alert) or a close soon after its
            // Finished is the post-handshake abort of class C; whoever's FIN
            // comes first after that does not matter.
            let abort_ts = match (client_small.map(|r| r.ts_ns), closed_by == Some(Dir::Client)) {
                (Some(t), _) => Some(t),
                (None, true) => client_close,
                (None, false) => None,
            };
            if let Some(t) = abort_ts.filter(|t| t - fin_ts <= cfg.post_handshake_abort_ns) {
                out.outcome = Outcome::ClientRejected;
                out.kind = Some(FailureKind::AbortPostHandshake);
                out.class = Some(FailureClass::C);
                out.encrypted = client_small.is_some();
                out.record_len = client_small.map(|r| r.len);
                out.ms_after_server_flight = after_flight(t);
                return out;
            }
            if closed_by.is_none() && capture_ended(e.close) {
                // Finished, nothing written, and the capture ended before
                // either side left: too early to call.
                out.outcome = Outcome::Incomplete;
                out.kind = Some(FailureKind::CaptureEnded);
            }
            out
        }
    }
}

/// Decide the path of a session.
pub fn path(e: &Ended, cfg: &Config, sni: Option<&str>, ja3s: Option<&str>) -> PathOut {
    let f = &e.flow;
    let s = &f.session;
    let (cip, _) = f.client();
    let (sip, sport) = f.server();
    let mut ev = Vec::new();
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
    let proxy_fp = ja3s.filter(|h| cfg.proxy_ja3s.iter().any(|p| p == h)).map(|h| format!("ja3s:proxy:{h}"));
    let connect = s.connect.as_deref().map(|(t, st)| ConnectOut { target: t.clone(), status: *st });
    let to_proxy = cfg.explicit_proxies.iter().any(|p| p.ip() == sip && p.port() == sport);
    if to_proxy || connect.is_some() {
        if to_proxy {
            ev.push(format!("dest:explicit_proxy:{sip}:{sport}"));
        }
        if let Some(c) = &connect {
            ev.push(format!("http_connect:{}", c.target));
        }
        let intercepted = match (&chain_ca, &proxy_fp) {
            (Some(x), _) | (None, Some(x)) => {
                ev.push(x.clone());
                Some(true)
            }
            // A TLS <= 1.2 chain we can read that is not the inspection CA's:
            // the proxy passed the origin's certificate through.
            _ if !s.server_chain.is_empty() && !cfg.inspection_cas.is_empty() => Some(false),
            _ => None,
        };
        return PathOut { kind: PathKind::ExplicitProxy, evidence: ev, intercepted, connect, bypass_rule: None };
    }
    if let Some(x) = chain_ca {
        ev.push(x);
        return PathOut { kind: PathKind::Intercepted, evidence: ev, intercepted: Some(true), connect: None, bypass_rule: None };
    }
    if cfg.transparent_proxies.contains(&sip) {
        ev.push(format!("dest:transparent_proxy:{sip}"));
        return PathOut { kind: PathKind::Intercepted, evidence: ev, intercepted: Some(true), connect: None, bypass_rule: None };
    }
    if let Some(x) = proxy_fp {
        ev.push(x);
        return PathOut { kind: PathKind::Intercepted, evidence: ev, intercepted: Some(true), connect: None, bypass_rule: None };
    }
    if let Some(rule) = cfg.bypass_match(sni, sip) {
        ev.push(format!("bypass:{rule}"));
        return PathOut { kind: PathKind::SanctionedBypass, evidence: ev, intercepted: Some(false), connect: None, bypass_rule: Some(rule) };
    }
    if cfg.is_internal(sip) {
        ev.push(format!("dest_internal:{sip}"));
        return PathOut { kind: PathKind::Internal, evidence: ev, intercepted: None, connect: None, bypass_rule: None };
    }
    if cfg.is_managed(cip) {
        ev.push(format!("client_managed:{cip}"));
        ev.push(format!("dest_external:{sip}"));
        return PathOut { kind: PathKind::Direct, evidence: ev, intercepted: Some(false), connect: None, bypass_rule: None };
    }
    ev.push(format!("client_not_managed:{cip}"));
    PathOut { kind: PathKind::Unknown, evidence: ev, intercepted: None, connect: None, bypass_rule: None }
}

/// Outcome of a QUIC connection, from what its Initial packets show: a
/// CONNECTION_CLOSE carrying a TLS alert (RFC 9001 §4.8: 0x100 + alert) from
/// the client is how a QUIC client rejects a certificate (class A: the alert
/// is readable in an Initial packet); from the server it is a refusal. A
/// client Initial that is never answered is `incomplete` (UDP/443 blocked
/// or a one-sided capture).
pub fn quic_outcome(e: &Ended) -> TlsFailure {
    let f = &e.flow;
    let mut out = TlsFailure {
        outcome: Outcome::Established,
        kind: None,
        class: None,
        alert: None,
        alert_code: None,
        encrypted: false,
        record_len: None,
        expected_finished_len: None,
        finished_seen: false,
        client_app_bytes: 0,
        close: e.close,
        closed_by: None,
        ms_after_server_flight: None,
    };
    let Some(q) = f.quic.as_ref() else {
        out.outcome = Outcome::Incomplete;
        return out;
    };
    let first_close = |client: bool| q.closes.iter().find(|c| c.from_client == client);
    let server_answered = f.dirs[Dir::Server.idx()].pkts > 0;
    // A client that gives up on a server that never answered (and says so
    // with a CRYPTO_ERROR code, as some interop clients do) judged nothing.
    if let Some(c) = first_close(true).filter(|c| server_answered && c.tls_alert.is_some_and(|a| a != 0)) {
        out.outcome = Outcome::ClientRejected;
        out.kind = Some(FailureKind::AlertPlain);
        out.class = Some(FailureClass::A);
        out.alert_code = c.tls_alert;
        out.alert = c.tls_alert.map(crate::eve::alert_name);
        out.closed_by = Some(Dir::Client);
        out.ms_after_server_flight = q.first_server_ts.map(|t| ms(t, c.ts_ns));
        return out;
    }
    if let Some(c) = first_close(false) {
        out.outcome = Outcome::ServerRejected;
        out.kind = Some(FailureKind::ServerAlert);
        out.alert_code = c.tls_alert;
        out.alert = c.tls_alert.map(crate::eve::alert_name);
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
