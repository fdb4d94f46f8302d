//! The inline inspector's profile, and the path verdict of sessions an
//! inline deployment covers that carry no direct evidence of their path.
//!
//! Behind a transparent proxy or an NGFW that decrypts, the tap sees the
//! origin's address whether or not the inspector terminated the session,
//! and TLS 1.3 hides the certificate that would tell. What is left is where
//! the box that answered sits and how it behaves (docs/domain.md, "Seeing
//! an inline inspector"):
//!
//! - **hop distance**: the inspector is near the tap, an origin usually far;
//! - **latency split**: an inspector answers the SYN at LAN speed but must
//!   reach the origin before it can answer the ClientHello;
//! - **TCP signature**: every session the inspector terminates carries its
//!   TCP stack's SYN-ACK (TTL, window, MSS, window scale, option order).
//!
//! The profile is declared (`inspection.inspector_max_hops`,
//! `inspection.inspector_tcp_signatures`) and learned from sessions whose
//! path is proven: the inspection CA in a TLS <= 1.2 chain, a declared
//! transparent proxy address, an explicit proxy that terminated the TLS
//! (the inspector's stack), and bypass-listed or origin-chain sessions (an
//! origin's). Learning runs at the reporting desk, in output order, so a
//! replay gives the same verdicts with any number of threads. Memory is
//! bounded: at most [`MAX_SIGNATURES`] signatures of each kind.

use crate::config::Config;
use crate::verdict::classify::{Confidence, PathKind, PathOut};

/// Most signatures kept per kind (inspector, origin); later new ones are
/// not learned (counted in [`Profile::unlearned`]).
pub const MAX_SIGNATURES: usize = 64;

/// What is known of the inline inspector and of origins seen without it.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    declared_max_hops: u8,
    declared_sigs: Vec<String>,
    /// Signatures of SYN-ACKs from sessions proven intercepted, with counts.
    inspector_sigs: Vec<(String, u32)>,
    /// Hop distances of proven-intercepted sessions (min, max).
    inspector_hops: Option<(u8, u8)>,
    /// Signatures of SYN-ACKs from sessions proven not intercepted.
    origin_sigs: Vec<(String, u32)>,
    /// Signatures not learned because the lists were full.
    pub unlearned: u64,
}

fn bump(list: &mut Vec<(String, u32)>, sig: &str, unlearned: &mut u64) {
    if let Some((_, n)) = list.iter_mut().find(|(s, _)| s == sig) {
        *n = n.saturating_add(1);
    } else if list.len() < MAX_SIGNATURES {
        list.push((sig.to_string(), 1));
    } else {
        *unlearned += 1;
    }
}

/// What was learned of the inspector and of origins: what a state file
/// keeps across a restart (`crate::state`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Learned {
    /// SYN-ACK signatures of sessions proven intercepted, each with the number
    /// of sessions that carried it.
    pub inspector_sigs: Vec<(String, u32)>,
    /// Least and most hops of the proven-intercepted sessions, if any.
    pub inspector_hops: Option<(u8, u8)>,
    /// SYN-ACK signatures of sessions proven not intercepted, with counts.
    pub origin_sigs: Vec<(String, u32)>,
}

impl Profile {
    /// What was learned so far.
    pub fn learned(&self) -> Learned {
        Learned { inspector_sigs: self.inspector_sigs.clone(), inspector_hops: self.inspector_hops, origin_sigs: self.origin_sigs.clone() }
    }

    /// Add what a state file kept (counts add up; the caps hold, counted
    /// in `unlearned`).
    pub fn restore(&mut self, l: &Learned) {
        for (sig, n) in &l.inspector_sigs {
            bump(&mut self.inspector_sigs, sig, &mut self.unlearned);
            if let Some(e) = self.inspector_sigs.iter_mut().find(|(s, _)| s == sig) {
                e.1 = e.1.saturating_add(n.saturating_sub(1));
            }
        }
        for (sig, n) in &l.origin_sigs {
            bump(&mut self.origin_sigs, sig, &mut self.unlearned);
            if let Some(e) = self.origin_sigs.iter_mut().find(|(s, _)| s == sig) {
                e.1 = e.1.saturating_add(n.saturating_sub(1));
            }
        }
        if let Some((a, b)) = l.inspector_hops.filter(|(a, b)| a <= b && *b <= 64) {
            self.inspector_hops = Some(self.inspector_hops.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }

    /// A profile with the configuration's declared parts and nothing learned.
    pub fn new(cfg: &Config) -> Self {
        let mut p = Profile::default();
        p.set_config(cfg);
        p
    }

    /// Take the declared parts of a new configuration; what was learned stays.
    pub fn set_config(&mut self, cfg: &Config) {
        self.declared_max_hops = cfg.inspector_max_hops;
        self.declared_sigs = cfg.inspector_tcp_signatures.clone();
    }

    /// The inspector is at most this many hops away: the farthest proven
    /// interception seen, else the declared bound.
    fn near_max(&self) -> u8 {
        self.inspector_hops.map_or(self.declared_max_hops, |(_, max)| max)
    }

    fn is_inspector_sig(&self, sig: &str) -> bool {
        self.declared_sigs.iter().any(|s| s == sig) || self.inspector_sigs.iter().any(|(s, _)| s == sig)
    }

    fn is_origin_sig(&self, sig: &str) -> bool {
        self.origin_sigs.iter().any(|(s, _)| s == sig)
    }

    /// Learn from a session whose path is proven (see the module doc).
    pub fn observe(&mut self, path: &PathOut) {
        let Some(w) = &path.wire else { return };
        let proven_in = match path.kind {
            PathKind::Intercepted => path.confidence == Confidence::High,
            PathKind::ExplicitProxy => path.intercepted == Some(true) && path.confidence == Confidence::High,
            _ => false,
        };
        let proven_out = match path.kind {
            PathKind::SanctionedBypass | PathKind::Direct => path.evidence.iter().any(|e| e == "chain:origin_not_inspection_ca"),
            _ => false,
        };
        if proven_in {
            if let Some(sig) = &w.tcp_signature {
                bump(&mut self.inspector_sigs, sig, &mut self.unlearned);
            }
            // Hops of a proven interception: only from sessions the tap
            // sees at the origin's address (an explicit proxy may sit
            // elsewhere than the inline inspector).
            if path.kind == PathKind::Intercepted {
                if let Some(h) = w.server_hops {
                    self.inspector_hops = Some(self.inspector_hops.map_or((h, h), |(a, b)| (a.min(h), b.max(h))));
                }
            }
        } else if proven_out {
            if let Some(sig) = &w.tcp_signature {
                bump(&mut self.origin_sigs, sig, &mut self.unlearned);
            }
        }
    }

    /// Decide a pending path (an inline deployment covers the session and
    /// nothing in it proves its path) from its wire signals. `direct`
    /// needs positive evidence that the session did not traverse the
    /// inspector; without it the verdict stays `unknown`, with the reason.
    pub fn judge(&self, path: &mut PathOut) {
        if !path.pending {
            return;
        }
        path.pending = false;
        let Some(w) = path.wire.clone() else {
            path.evidence.push("wire:no_server_packets".into());
            return;
        };
        let near_max = self.near_max();
        let hops = w.hops();
        let near = hops.is_some_and(|h| h <= near_max);
        // Beyond the inspector's known distance; "far" is clearly so.
        let farther = hops.is_some_and(|h| h > near_max);
        let far = hops.is_some_and(|h| h > near_max.saturating_add(2));
        let split = w.latency_split();
        let sig_in = w.tcp_signature.as_deref().is_some_and(|s| self.is_inspector_sig(s));
        let sig_origin = w.tcp_signature.as_deref().is_some_and(|s| !self.is_inspector_sig(s) && self.is_origin_sig(s));
        // A profile to compare with: a declared or learned signature.
        let sig_known = !self.declared_sigs.is_empty() || !self.inspector_sigs.is_empty();
        let sig_other = sig_known && !sig_in && w.tcp_signature.is_some();
        // The ServerHello came from a box nearer than the one that
        // answered the SYN: an inspector that let the TCP handshake through
        // and answered the TLS itself.
        let data_nearer = matches!((w.server_hops, w.data_hops), (Some(a), Some(b)) if b.saturating_add(2) <= a && b <= near_max);
        let ev = &mut path.evidence;
        if let Some(h) = hops {
            let place = if near {
                "near"
            } else if far {
                "far"
            } else {
                "beyond"
            };
            ev.push(format!("server_hops:{h}:{place}:inspector_max:{near_max}"));
        }
        if w.hops_differ() {
            ev.push(format!("hops_differ:synack:{}:data:{}", w.server_hops.unwrap_or(0), w.data_hops.unwrap_or(0)));
        }
        if let (Some(a), Some(h)) = (w.synack_ms, w.server_hello_ms) {
            ev.push(format!("latency:synack_ms:{a}:server_hello_ms:{h}:{}", if split { "split" } else { "even" }));
        }
        if let Some(sig) = &w.tcp_signature {
            let what = if sig_in {
                "inspector"
            } else if sig_origin {
                "origin"
            } else if sig_known {
                "not_inspector"
            } else {
                "no_profile"
            };
            ev.push(format!("tcp_signature:{sig}:{what}"));
        }
        // Intercepted: at the inspector's distance and one more sign of it.
        let signs_in = u8::from(split) + u8::from(sig_in) + u8::from(data_nearer);
        // Direct: beyond the inspector and nothing of it; clearly far, or
        // with a TCP stack that is not the inspector's.
        if (near || data_nearer) && signs_in >= 1 {
            path.kind = PathKind::Intercepted;
            path.intercepted = Some(true);
            path.confidence = if u8::from(near) + signs_in >= 3 { Confidence::High } else { Confidence::Medium };
        } else if !sig_in && !data_nearer && (far || (farther && sig_other && !split)) {
            // A slow ServerHello from a box that is itself far away is a
            // slow origin: the latency split only speaks for a near box.
            path.kind = PathKind::Direct;
            path.intercepted = Some(false);
            let sure = !split && ((far && (sig_other || sig_origin)) || (farther && sig_origin));
            path.confidence = if sure { Confidence::High } else { Confidence::Medium };
        } else {
            path.evidence.push("unknown:wire_evidence_inconclusive".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::classify::{Policy, WireOut};

    fn pending(wire: WireOut) -> PathOut {
        PathOut {
            kind: PathKind::Unknown,
            confidence: Confidence::Low,
            evidence: vec![],
            intercepted: None,
            connect: None,
            bypass_rule: None,
            policy: Some(Policy::Inspect),
            wire: Some(wire),
            pending: true,
        }
    }

    /// A session whose interception is proven (the inspection CA in its chain).
    fn proven(wire: WireOut) -> PathOut {
        let mut p = pending(wire);
        p.kind = PathKind::Intercepted;
        p.confidence = Confidence::High;
        p.pending = false;
        p
    }

    fn wire(ttl: u8, synack_ms: f64, hello_ms: f64, sig: &str) -> WireOut {
        WireOut {
            synack_ttl: Some(ttl),
            server_hops: Some(crate::verdict::classify::hops_of(ttl)),
            data_ttl: Some(ttl),
            data_hops: Some(crate::verdict::classify::hops_of(ttl)),
            synack_ms: Some(synack_ms),
            server_hello_ms: Some(hello_ms),
            tcp_signature: Some(sig.to_string()),
        }
    }

    #[test]
    fn a_near_inspector_with_a_latency_split_is_intercepted() {
        let p = Profile::new(&Config::default());
        let mut path = pending(wire(64, 0.1, 40.0, "64:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Intercepted, "{:?}", path.evidence);
        assert_eq!(path.confidence, Confidence::Medium);
    }

    #[test]
    fn a_far_origin_without_split_is_direct_and_nothing_else_is() {
        let p = Profile::new(&Config::default());
        let mut path = pending(wire(50, 30.0, 31.0, "50:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Direct, "{:?}", path.evidence);
        // Far, and the ServerHello came late from that far box: a slow
        // origin. Direct, but less sure.
        let mut path = pending(wire(50, 0.5, 80.0, "50:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Direct, "{:?}", path.evidence);
        assert_eq!(path.confidence, Confidence::Medium);
        // The SYN-ACK from far away, the ServerHello from next door: an
        // inspector that let the TCP handshake through.
        let mut w = wire(50, 30.0, 60.0, "50:65160:1460:7:MSTNW");
        w.data_ttl = Some(64);
        w.data_hops = Some(0);
        let mut path = pending(w);
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Intercepted, "{:?}", path.evidence);
        // Neither near nor far, and no inspector profile to compare with.
        let mut path = pending(wire(61, 1.0, 1.5, "61:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Unknown, "{:?}", path.evidence);
        assert!(path.evidence.iter().any(|e| e == "unknown:wire_evidence_inconclusive"));
    }

    #[test]
    fn near_alone_is_not_enough() {
        let p = Profile::new(&Config::default());
        let mut path = pending(wire(64, 0.1, 0.3, "64:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Unknown, "{:?}", path.evidence);
    }

    #[test]
    fn one_hop_beyond_a_known_inspector_with_another_stack_is_direct() {
        let mut p = Profile::new(&Config::default());
        p.observe(&proven(wire(64, 0.05, 30.0, "64:65160:1460:7:MSTNW")));
        let mut path = pending(wire(63, 0.1, 0.6, "63:65160:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Direct, "{:?}", path.evidence);
        assert_eq!(path.confidence, Confidence::Medium);
    }

    #[test]
    fn learning_moves_the_near_bound_and_knows_the_signature() {
        let mut p = Profile::new(&Config::default());
        p.observe(&proven(wire(60, 0.2, 30.0, "60:29200:1460:7:MSTNW")));
        // 4 hops was "between" with the declared bound of 2; the proven
        // interception at 4 hops makes it near, and its signature known.
        let mut path = pending(wire(60, 0.2, 0.4, "60:29200:1460:7:MSTNW"));
        p.judge(&mut path);
        assert_eq!(path.kind, PathKind::Intercepted, "{:?}", path.evidence);
        assert!(path.evidence.iter().any(|e| e.ends_with(":inspector")), "{:?}", path.evidence);
    }

    #[test]
    fn the_learned_lists_are_bounded() {
        let mut p = Profile::new(&Config::default());
        for i in 0..(MAX_SIGNATURES as u32 + 10) {
            p.observe(&proven(wire(64, 0.2, 30.0, &format!("64:{i}:1460:7:MSTNW"))));
        }
        assert_eq!(p.inspector_sigs.len(), MAX_SIGNATURES);
        assert_eq!(p.unlearned, 10);
    }
}
