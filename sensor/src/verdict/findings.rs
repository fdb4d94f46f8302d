//! Findings: EVE `alert` records (gid 1725) raised from classified sessions.
//! The signature table is documented in `docs/output.md#signatures`.
//!
//! | sid | finding |
//! |---|---|
//! | 1725001 | inspection failure: the client rejected an intercepted session |
//! | 1725002 | direct TLS from a managed network around the inspection |
//! | 1725003 | opaque direct session (ECH, no SNI to a raw IP, TLS on an unusual port, non-TLS on 443) |
//! | 1725004 | fallback: rejections under inspection, then a direct or bypassed session to the same name |
//! | 1725006 | an attributed app contacted a destination outside its baseline (with `--feed`) |
//! | 1725005 | the AN1725 join: a session with one of the findings above, attributed to a device and app by the MDM feed, scored high/medium/low |
//!
//! The correlator sees sessions in output order (at their verdict, or when
//! they end: `crate::flow::decision`); the
//! fallback window is measured on session *start* times, so a long direct
//! session that ends late still matches the rejections that preceded it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use pinwatch_parsers::time::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::verdict::classify::{Confidence, Outcome, PathKind, PathOut, Policy, TlsFailure};

/// Generator id of every pinwatch alert (`alert.gid`).
pub const GID: u32 = 1725;
/// Signature 1725001: the client rejected a session under inspection.
pub const SID_INSPECTION_FAILURE: u32 = 1_725_001;
/// Signature 1725002: direct TLS from a managed network around the inspection.
pub const SID_DIRECT: u32 = 1_725_002;
/// Signature 1725003: an opaque direct encrypted session (ECH, no SNI, an
/// unusual port, QUIC where UDP/443 should be blocked, non-TLS bytes on
/// TCP/443).
pub const SID_OPAQUE: u32 = 1_725_003;
/// Signature 1725004: rejections under inspection, then a direct or bypassed
/// session to the same server name.
pub const SID_FALLBACK: u32 = 1_725_004;
/// Signature 1725005: a session with a finding, attributed to a device and app
/// by the feed (carries `mobile` and `an1725`).
pub const SID_AN1725: u32 = 1_725_005;
/// Signature 1725006: an attributed app contacted a destination outside its
/// baseline.
pub const SID_BASELINE: u32 = 1_725_006;

/// (sid, severity, signature, category)
pub const SIGNATURES: [(u32, u8, &str, &str); 6] = [
    (
        SID_INSPECTION_FAILURE,
        2,
        "AN1725 client rejected a TLS session under enterprise inspection",
        "Potential Corporate Privacy Violation",
    ),
    (SID_DIRECT, 3, "AN1725 direct TLS from a managed network around the inspection", "Potential Corporate Privacy Violation"),
    (SID_OPAQUE, 3, "AN1725 opaque direct encrypted session", "Potential Corporate Privacy Violation"),
    (
        SID_FALLBACK,
        1,
        "AN1725 rejected enterprise TLS inspection, then went around it to the same server name",
        "Potential Corporate Privacy Violation",
    ),
    (SID_AN1725, 1, "AN1725 attributed app failed under or went around enterprise TLS inspection", "Potential Corporate Privacy Violation"),
    (SID_BASELINE, 2, "AN1725 attributed app contacted a destination outside its baseline", "Potential Corporate Privacy Violation"),
];

/// EVE `alert.metadata`: the confidence and the MITRE references, each a
/// one-element list as Suricata writes metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// How sure the finding is: `low`, `medium`, `high` (it caps the severity).
    pub confidence: [&'static str; 1],
    /// `mitre_technique_id`: always `T1521.003`.
    pub mitre_technique_id: [&'static str; 1],
    /// `mitre_technique_name`: always `SSL Pinning`.
    pub mitre_technique_name: [&'static str; 1],
    /// `mitre_detection_strategy`: always `DET0646`.
    pub mitre_detection_strategy: [&'static str; 1],
    /// `mitre_analytic`: always `AN1725`.
    pub mitre_analytic: [&'static str; 1],
}

const META: Metadata = Metadata {
    confidence: ["high"],
    mitre_technique_id: ["T1521.003"],
    mitre_technique_name: ["SSL Pinning"],
    mitre_detection_strategy: ["DET0646"],
    mitre_analytic: ["AN1725"],
};

/// EVE `alert` object, in Suricata's layout.
#[derive(Debug, Clone, Serialize)]
pub struct AlertBody {
    /// `alert.action`: always `allowed` (pinwatch is passive).
    pub action: &'static str,
    /// `alert.gid`: [`GID`].
    pub gid: u32,
    /// `alert.signature_id`: one of the `SID_*` constants.
    pub signature_id: u32,
    /// `alert.rev`: the signature's revision, always 1.
    pub rev: u32,
    /// `alert.signature`: the signature's text from [`SIGNATURES`].
    pub signature: &'static str,
    /// `alert.category`: the signature's category from [`SIGNATURES`]
    /// ("Potential Corporate Privacy Violation").
    pub category: &'static str,
    /// `alert.severity`: 1 (most severe) to 3, the signature's base severity
    /// capped by the confidence ([`severity_for`]).
    pub severity: u8,
    /// `alert.metadata`.
    pub metadata: Metadata,
}

/// The one mapping from confidence to severity: a finding is never more
/// severe than its confidence allows. `high` keeps the signature's base
/// severity, `medium` is at most 2, `low` is 3 (Suricata: 1 most severe).
pub fn severity_for(base: u8, confidence: Confidence) -> u8 {
    let floor = match confidence {
        Confidence::High => 1,
        Confidence::Medium => 2,
        Confidence::Low => 3,
    };
    base.max(floor)
}

/// Stable lower-case name of a confidence.
pub fn confidence_name(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "high",
        Confidence::Medium => "medium",
        Confidence::Low => "low",
    }
}

impl AlertBody {
    /// The alert body of signature `sid` at `confidence`, its severity from
    /// [`severity_for`]. A sid not in [`SIGNATURES`] gets base severity 3,
    /// signature "AN1725" and category "Unknown".
    pub fn new(sid: u32, confidence: Confidence) -> Self {
        let (sid, base, signature, category) = SIGNATURES.iter().copied().find(|s| s.0 == sid).unwrap_or((sid, 3, "AN1725", "Unknown"));
        let metadata = Metadata { confidence: [confidence_name(confidence)], ..META };
        AlertBody {
            action: "allowed",
            gid: GID,
            signature_id: sid,
            rev: 1,
            signature,
            category,
            severity: severity_for(base, confidence),
            metadata,
        }
    }
}

/// Why an alert fired, and which sessions support it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// `evidence.reasons`: what made the finding, one string each
    /// (`client_rejected:class_A`, `path:direct:high`, ...).
    pub reasons: Vec<String>,
    /// `evidence.flow_ids`: every session that makes the finding (for a
    /// fallback, the rejections and then the session around the inspection).
    pub flow_ids: Vec<u64>,
}

/// What the correlator needs to know about one session.
#[derive(Debug, Clone)]
pub struct SessionFacts<'a> {
    /// The session's `flow_id`.
    pub flow_id: u64,
    /// The session's start, ns since the Unix epoch (packet time); the fallback
    /// window is measured on it.
    pub start_ns: i64,
    /// The client's address (`src_ip`).
    pub client: IpAddr,
    /// The server's address (`dest_ip`).
    pub server: IpAddr,
    /// The server's port (`dest_port`).
    pub server_port: u16,
    /// The first ClientHello's server name, if any; sessions without one are not
    /// correlated for fallbacks.
    pub sni: Option<&'a str>,
    /// The client offered Encrypted Client Hello or ESNI.
    pub ech: bool,
    /// A QUIC session (UDP), not TLS over TCP.
    pub quic: bool,
    /// The session's path verdict.
    pub path: &'a PathOut,
    /// The session's outcome verdict.
    pub failure: &'a TlsFailure,
    /// The app the device feed attributed the session to, if known:
    /// rejections and fallbacks are then counted per app, never across the
    /// apps of one client.
    pub app: Option<&'a str>,
}

/// A finding about one session.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The signature raised, one of the `SID_*` constants.
    pub sid: u32,
    /// How sure the finding is; caps the alert's severity.
    pub confidence: Confidence,
    /// The reasons and the sessions behind it.
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Copy)]
struct Rejection {
    flow_id: u64,
    start_ns: i64,
    confidence: Confidence,
}

#[derive(Debug, Clone, Copy)]
struct Around {
    flow_id: u64,
    start_ns: i64,
    confidence: Confidence,
    direct: bool,
    quic: bool,
    /// A fallback finding was already raised for it.
    alerted: bool,
}

/// A client, a server name (lower case, no trailing dot) and the app when
/// the feed names it (sessions of unknown app share the `None` key). The
/// strings are shared between the maps and the expiry queue, not copied
/// into each.
type Key = (IpAddr, Arc<str>, Option<Arc<str>>);

/// Keyed with aHash (random per process, like the flow table: the names
/// come off the wire) rather than SipHash, which cost more than the rest of
/// a session's correlation.
type KeyMap<V> = HashMap<Key, V, ahash::RandomState>;

fn path_name(k: PathKind) -> &'static str {
    match k {
        PathKind::Intercepted => "intercepted",
        PathKind::ExplicitProxy => "explicit_proxy",
        PathKind::SanctionedBypass => "sanctioned_bypass",
        PathKind::Direct => "direct",
        PathKind::Internal => "internal",
        PathKind::Tunnel => "tunnel",
        PathKind::Unknown => "unknown",
    }
}

/// Keeps recent rejections under inspection per (client, server name),
/// bounded in entries and age.
pub struct Correlator {
    cfg: Config,
    rejections: KeyMap<VecDeque<Rejection>>,
    /// Direct or bypassed sessions already seen, for rejections reported
    /// after them (sessions are reported when they end, not when they start).
    arounds: KeyMap<VecDeque<Around>>,
    order: VecDeque<(i64, Key)>,
    /// Most (client, name) keys tracked; older ones are dropped (counted).
    pub max_keys: usize,
    /// Most sessions remembered in all (the expiry queue, and so the
    /// rejections and sessions around the inspection it holds): a window
    /// full of traffic cannot grow it further; the oldest go first (counted).
    pub max_sessions: usize,
    /// Sessions forgotten before their window ended because a cap was reached
    /// (`stats.correlator_dropped`).
    pub dropped: u64,
}

/// What a [`Correlator`] holds, for its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorHeld {
    /// (client, name, app) keys, rejections and sessions around the inspection
    /// counted apart.
    pub keys: usize,
    /// Sessions remembered under those keys.
    pub sessions: usize,
    /// Entries in the expiry queue.
    pub queued: usize,
}

const MAX_PER_KEY: usize = 16;

impl Correlator {
    /// An empty correlator with the default caps (100,000 keys, 200,000
    /// sessions).
    pub fn new(cfg: Config) -> Self {
        Correlator {
            cfg,
            rejections: KeyMap::default(),
            arounds: KeyMap::default(),
            order: VecDeque::new(),
            max_keys: 100_000,
            max_sessions: 200_000,
            dropped: 0,
        }
    }

    /// Keys, remembered sessions and expiry-queue entries held now: at most
    /// `2 * max_keys + 2`, `max_sessions + 2` and `max_sessions + 2`.
    pub fn held(&self) -> CorrelatorHeld {
        CorrelatorHeld {
            keys: self.rejections.len() + self.arounds.len(),
            sessions: self.rejections.values().map(VecDeque::len).sum::<usize>() + self.arounds.values().map(VecDeque::len).sum::<usize>(),
            queued: self.order.len(),
        }
    }

    /// Replace the configuration (live reload); remembered sessions stay.
    pub fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
    }

    fn inspection_deployed(&self) -> bool {
        self.cfg.deployment != crate::config::Deployment::None
    }

    fn expire(&mut self, now: i64) {
        let now = Timestamp::from_ns(now);
        while let Some(&(t, _)) = self.order.front() {
            let in_window = now - Timestamp::from_ns(t) <= self.cfg.fallback_window_ns;
            let full = self.rejections.len() > self.max_keys || self.arounds.len() > self.max_keys || self.order.len() > self.max_sessions;
            if in_window && !full {
                break;
            }
            if in_window {
                self.dropped += 1;
            }
            let Some((_, key)) = self.order.pop_front() else { break };
            if let Some(q) = self.rejections.get_mut(&key) {
                while q.front().is_some_and(|r| r.start_ns <= t) {
                    q.pop_front();
                }
                if q.is_empty() {
                    self.rejections.remove(&key);
                }
            }
            if let Some(q) = self.arounds.get_mut(&key) {
                while q.front().is_some_and(|r| r.start_ns <= t) {
                    q.pop_front();
                }
                if q.is_empty() {
                    self.arounds.remove(&key);
                }
            }
        }
    }

    /// Findings for one session, in sid order.
    pub fn observe(&mut self, s: &SessionFacts<'_>) -> Vec<Finding> {
        self.expire(s.start_ns);
        let mut out = Vec::new();
        let kind = s.path.kind;
        let rejected = s.failure.outcome == Outcome::ClientRejected;
        let under_inspection = s.path.under_inspection();
        let key: Option<Key> = s.sni.map(|n| (s.client, Arc::from(n.trim_end_matches('.').to_ascii_lowercase()), s.app.map(Arc::from)));
        // How sure the rejection itself is (a readable alert is high; a
        // close soon after the handshake medium; a slow close or a stall low).
        let rejection_conf = s.failure.confidence.unwrap_or(Confidence::Low);

        if rejected && under_inspection {
            out.extend(inspection_failure(s, rejection_conf));
            if let Some(key) = &key {
                self.remember_rejection(key, s, rejection_conf);
            }
        }

        let around =
            matches!(kind, PathKind::Direct | PathKind::SanctionedBypass) && (!s.quic || s.failure.outcome == Outcome::Established);
        // `direct` is only ever claimed on positive evidence that the
        // session did not traverse the inspector (classify::path).
        if kind == PathKind::Direct && self.inspection_deployed() && !s.quic {
            out.push(Finding {
                sid: SID_DIRECT,
                confidence: s.path.confidence,
                evidence: Evidence { reasons: s.path.evidence.clone(), flow_ids: vec![s.flow_id] },
            });
        }
        out.extend(self.opaque(s));
        if let Some(key) = key {
            if around {
                self.remember_around(&key, s);
            }
            self.fallbacks(&key, &mut out);
        }
        out
    }

    /// A rejection under inspection, remembered for the fallback finding
    /// (the last [`MAX_PER_KEY`] per key).
    fn remember_rejection(&mut self, key: &Key, s: &SessionFacts<'_>, rejection_conf: Confidence) {
        let q = self.rejections.entry(key.clone()).or_default();
        q.push_back(Rejection { flow_id: s.flow_id, start_ns: s.start_ns, confidence: rejection_conf.min(s.path.confidence) });
        if q.len() > MAX_PER_KEY {
            q.pop_front();
            self.dropped += 1;
        }
        self.order.push_back((s.start_ns, key.clone()));
    }

    /// A direct or bypassed session, remembered for the fallback finding
    /// (the last [`MAX_PER_KEY`] per key).
    fn remember_around(&mut self, key: &Key, s: &SessionFacts<'_>) {
        let q = self.arounds.entry(key.clone()).or_default();
        q.push_back(Around {
            flow_id: s.flow_id,
            start_ns: s.start_ns,
            confidence: s.path.confidence,
            direct: s.path.kind == PathKind::Direct,
            quic: s.quic,
            alerted: false,
        });
        if q.len() > MAX_PER_KEY {
            q.pop_front();
            self.dropped += 1;
        }
        self.order.push_back((s.start_ns, key.clone()));
    }

    /// Opaque: a session that went straight out, or whose path nothing
    /// explains; not one the inline inspector was meant to see.
    fn opaque(&self, s: &SessionFacts<'_>) -> Option<Finding> {
        let kind = s.path.kind;
        if !(kind == PathKind::Direct || (kind == PathKind::Unknown && s.path.policy != Some(Policy::Inspect))) {
            return None;
        }
        let mut reasons = Vec::new();
        if s.ech {
            reasons.push("encrypted_client_hello".to_string());
        }
        if crate::verdict::classify::sni_is_ip_or_missing(s.sni) {
            reasons.push(format!("no_server_name_to_ip:{}", s.server));
        }
        if s.quic && self.cfg.udp_443_blocked && s.failure.outcome == Outcome::Established {
            reasons.push("quic_where_udp443_blocked".to_string());
        }
        if !s.quic && !self.cfg.usual_tls_ports.contains(&s.server_port) {
            reasons.push(format!("tls_on_unusual_port:{}", s.server_port));
        }
        if reasons.is_empty() {
            return None;
        }
        // What makes it opaque is in the hello itself; whether it
        // went around the inspection is the path's confidence.
        let confidence = if kind == PathKind::Direct { s.path.confidence } else { Confidence::Low };
        Some(Finding { sid: SID_OPAQUE, confidence, evidence: Evidence { reasons, flow_ids: vec![s.flow_id] } })
    }

    /// Whichever is reported last, rejections or the session around the
    /// inspection, the finding is the same: rejections that started before a
    /// direct/bypassed session, within the window; each session around is
    /// alerted once.
    fn fallbacks(&mut self, key: &Key, out: &mut Vec<Finding>) {
        let n = &*key.1;
        let window = self.cfg.fallback_window_ns;
        let min = self.cfg.fallback_min_rejections as usize;
        let (Some(rej), Some(arounds)) = (self.rejections.get(key), self.arounds.get_mut(key)) else { return };
        for a in arounds.iter_mut().filter(|a| !a.alerted) {
            let prior: Vec<&Rejection> = rej
                .iter()
                .filter(|r| r.start_ns <= a.start_ns && Timestamp::from_ns(a.start_ns) - Timestamp::from_ns(r.start_ns) <= window)
                .collect();
            if prior.len() < min {
                continue;
            }
            a.alerted = true;
            let mut flow_ids: Vec<u64> = prior.iter().map(|r| r.flow_id).collect();
            flow_ids.push(a.flow_id);
            let mut reasons = vec![
                format!("rejections_under_inspection:{}", prior.len()),
                format!("then_{}{}:{}", if a.quic { "quic_" } else { "" }, if a.direct { "direct" } else { "sanctioned_bypass" }, n),
                format!("window_s:{}", window / 1_000_000_000),
            ];
            if let Some(app) = &key.2 {
                reasons.push(format!("app:{app}"));
            }
            // The pattern corroborates its rejections: one level
            // surer than the surest of them, capped by the path around.
            let best = prior.iter().map(|r| r.confidence).max().unwrap_or(Confidence::Low);
            let corroborated = if best == Confidence::Low { Confidence::Medium } else { Confidence::High };
            let confidence = corroborated.min(a.confidence);
            out.push(Finding { sid: SID_FALLBACK, confidence, evidence: Evidence { reasons, flow_ids } });
        }
    }

    /// A flow on a TLS port whose bytes were not TLS (counted as opaque when
    /// it leaves a managed network directly).
    pub fn observe_not_tls(&mut self, flow_id: u64, client: IpAddr, server: IpAddr, port: u16) -> Option<Finding> {
        // A known tunnel endpoint (OpenVPN over TCP/443 to the concentrator)
        // is a tunnel by policy, not an opaque session.
        if port != 443 || self.cfg.is_internal(server) || !self.cfg.is_managed(client) || self.cfg.is_tunnel_endpoint(server, port) {
            return None;
        }
        Some(Finding {
            sid: SID_OPAQUE,
            confidence: Confidence::Medium,
            evidence: Evidence { reasons: vec![format!("non_tls_on_443:{server}")], flow_ids: vec![flow_id] },
        })
    }
}

/// The inspection-failure finding of a rejection under inspection. A
/// low-confidence rejection alone (the wire cannot tell it from a
/// connection left unused) raises none; it still counts towards a fallback,
/// which corroborates it.
fn inspection_failure(s: &SessionFacts<'_>, rejection_conf: Confidence) -> Option<Finding> {
    if rejection_conf <= Confidence::Low {
        return None;
    }
    let mut reasons = vec![format!("client_rejected:class_{}", s.failure.class.map(|c| format!("{c:?}")).unwrap_or_else(|| "?".into()))];
    if let Some(a) = &s.failure.alert {
        reasons.push(format!("client_alert:{a}"));
    }
    reasons.push(format!("rejection_confidence:{}", confidence_name(rejection_conf)));
    reasons.push(format!("path:{}:{}", path_name(s.path.kind), confidence_name(s.path.confidence)));
    reasons.extend(s.path.evidence.iter().cloned());
    let confidence = rejection_conf.min(s.path.confidence);
    Some(Finding { sid: SID_INSPECTION_FAILURE, confidence, evidence: Evidence { reasons, flow_ids: vec![s.flow_id] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_never_exceeds_what_the_confidence_allows() {
        for (sid, base, ..) in SIGNATURES {
            assert_eq!(severity_for(base, Confidence::High), base, "{sid}");
            assert!(severity_for(base, Confidence::Medium) >= 2, "{sid}");
            assert_eq!(severity_for(base, Confidence::Low), 3, "{sid}");
            let a = AlertBody::new(sid, Confidence::Low);
            assert_eq!((a.severity, a.metadata.confidence), (3, ["low"]), "{sid}");
        }
    }

    use crate::flow::CloseKind;
    use crate::verdict::classify::{FailureClass, PathKind, PathOut, TlsFailure};

    const SEC: i64 = 1_000_000_000;

    fn config(toml: &str) -> Config {
        Config::parse("test.toml", toml, std::path::Path::new(".")).expect("config")
    }

    /// An explicit-proxy deployment: direct sessions went around it.
    fn explicit() -> Config {
        config(
            "[inspection]\ndeployment = \"explicit\"\nexplicit_proxies = [\"10.0.0.3:3128\"]\n[thresholds]\nfallback_min_rejections = 2\n",
        )
    }

    fn rejected(conf: Confidence) -> TlsFailure {
        let mut f = TlsFailure::new(CloseKind::Fin);
        f.outcome = Outcome::ClientRejected;
        f.class = Some(FailureClass::A);
        f.confidence = Some(conf);
        f
    }

    fn facts<'a>(flow_id: u64, t: i64, path: &'a PathOut, failure: &'a TlsFailure, app: Option<&'a str>) -> SessionFacts<'a> {
        SessionFacts {
            flow_id,
            start_ns: t,
            client: "10.1.0.7".parse().expect("ip"),
            server: "203.0.113.5".parse().expect("ip"),
            server_port: 443,
            sni: Some("api.example.com"),
            ech: false,
            quic: false,
            path,
            failure,
            app,
        }
    }

    fn sids(f: &[Finding]) -> Vec<u32> {
        f.iter().map(|x| x.sid).collect()
    }

    #[test]
    fn rejections_then_a_direct_session_within_the_window_are_a_fallback() {
        let mut c = Correlator::new(explicit());
        let proxied = PathOut::test(PathKind::ExplicitProxy, Confidence::High);
        let direct = PathOut::test(PathKind::Direct, Confidence::High);
        let (rej, ok) = (rejected(Confidence::High), TlsFailure::new(CloseKind::Fin));
        assert_eq!(sids(&c.observe(&facts(1, 10 * SEC, &proxied, &rej, None))), [SID_INSPECTION_FAILURE]);
        assert_eq!(sids(&c.observe(&facts(2, 11 * SEC, &proxied, &rej, None))), [SID_INSPECTION_FAILURE]);
        let f = c.observe(&facts(3, 12 * SEC, &direct, &ok, None));
        assert_eq!(sids(&f), [SID_DIRECT, SID_FALLBACK]);
        let fallback = &f[1];
        assert_eq!(fallback.evidence.flow_ids, [1, 2, 3]);
        assert!(fallback.evidence.reasons.contains(&"rejections_under_inspection:2".to_string()), "{:?}", fallback.evidence.reasons);
        // High rejections corroborated by the pattern, capped by the path around: high.
        assert_eq!(fallback.confidence, Confidence::High);
        // Raised once: another direct session to the name does not repeat it
        // for the sessions already alerted, but is itself a new fallback.
        let again = c.observe(&facts(4, 13 * SEC, &direct, &ok, None));
        assert_eq!(sids(&again).iter().filter(|&&s| s == SID_FALLBACK).count(), 1);
    }

    #[test]
    fn one_rejection_short_of_the_minimum_or_outside_the_window_is_no_fallback() {
        let mut c = Correlator::new(explicit());
        let proxied = PathOut::test(PathKind::ExplicitProxy, Confidence::High);
        let direct = PathOut::test(PathKind::Direct, Confidence::High);
        let (rej, ok) = (rejected(Confidence::High), TlsFailure::new(CloseKind::Fin));
        c.observe(&facts(1, 10 * SEC, &proxied, &rej, None));
        assert_eq!(sids(&c.observe(&facts(2, 11 * SEC, &direct, &ok, None))), [SID_DIRECT], "one rejection, minimum two");
        c.observe(&facts(3, 20 * SEC, &proxied, &rej, None));
        // The window is 300 s by default: 10 s and 20 s are long gone at 400 s.
        assert_eq!(sids(&c.observe(&facts(4, 400 * SEC, &direct, &ok, None))), [SID_DIRECT]);
    }

    #[test]
    fn rejections_of_one_app_never_make_another_apps_fallback() {
        let mut c = Correlator::new(explicit());
        let proxied = PathOut::test(PathKind::ExplicitProxy, Confidence::High);
        let direct = PathOut::test(PathKind::Direct, Confidence::High);
        let (rej, ok) = (rejected(Confidence::High), TlsFailure::new(CloseKind::Fin));
        c.observe(&facts(1, 10 * SEC, &proxied, &rej, Some("com.example.pinned")));
        c.observe(&facts(2, 11 * SEC, &proxied, &rej, Some("com.example.pinned")));
        assert_eq!(sids(&c.observe(&facts(3, 12 * SEC, &direct, &ok, Some("com.example.other")))), [SID_DIRECT]);
        let f = c.observe(&facts(4, 13 * SEC, &direct, &ok, Some("com.example.pinned")));
        assert_eq!(sids(&f), [SID_DIRECT, SID_FALLBACK]);
        assert!(f[1].evidence.reasons.contains(&"app:com.example.pinned".to_string()));
    }

    #[test]
    fn a_low_confidence_rejection_alone_raises_nothing_but_still_counts() {
        let mut c = Correlator::new(explicit());
        let proxied = PathOut::test(PathKind::ExplicitProxy, Confidence::High);
        let direct = PathOut::test(PathKind::Direct, Confidence::High);
        let (low, ok) = (rejected(Confidence::Low), TlsFailure::new(CloseKind::Fin));
        assert!(c.observe(&facts(1, 10 * SEC, &proxied, &low, None)).is_empty());
        assert!(c.observe(&facts(2, 11 * SEC, &proxied, &low, None)).is_empty());
        let f = c.observe(&facts(3, 12 * SEC, &direct, &ok, None));
        assert_eq!(sids(&f), [SID_DIRECT, SID_FALLBACK]);
        // Low rejections, corroborated by the pattern: medium.
        assert_eq!(f[1].confidence, Confidence::Medium);
    }

    #[test]
    fn without_any_inspection_a_direct_session_is_no_finding() {
        let mut c = Correlator::new(config(""));
        let direct = PathOut::test(PathKind::Direct, Confidence::High);
        assert!(c.observe(&facts(1, SEC, &direct, &TlsFailure::new(CloseKind::Fin), None)).is_empty());
    }

    #[test]
    fn non_tls_on_443_is_opaque_except_to_a_tunnel_endpoint() {
        let mut c = Correlator::new(config("[networks]\ntunnel_endpoints = [\"198.51.100.1:443\"]\n"));
        let client = "10.1.0.7".parse().expect("ip");
        let f = c.observe_not_tls(9, client, "203.0.113.5".parse().expect("ip"), 443).expect("opaque");
        assert_eq!((f.sid, f.evidence.reasons[0].as_str()), (SID_OPAQUE, "non_tls_on_443:203.0.113.5"));
        assert!(c.observe_not_tls(9, client, "198.51.100.1".parse().expect("ip"), 443).is_none());
        assert!(c.observe_not_tls(9, client, "203.0.113.5".parse().expect("ip"), 8443).is_none());
    }
}
