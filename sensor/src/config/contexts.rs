//! Binding namespaces tied to where a session was seen (`[[feed.contexts]]`
//! in the configuration, docs/config.md).
//!
//! A feed `ip_binding` names its lookup namespace in `network.context`
//! (`vpn1`, `hq-wifi`). Two networks may hand out the same private address
//! (two VPN concentrators, VPN and Wi-Fi on one RFC 1918 range), so the
//! context a session's client IP is looked up in must follow from where the
//! session was seen: the capture interface (`in_iface`), the VLAN, or the
//! client's address pool. This module decides it, per session:
//!
//! - A configured context **matches** a session when every kind of criterion
//!   it sets matches (`interfaces`, `vlans`, `cidrs`; any entry of a list).
//! - Among matching contexts, the **most specific** wins: the one that sets
//!   more kinds of criteria; then one that sets `interfaces`, then one that
//!   sets `vlans`; then the longest matching `cidrs` prefix. Two
//!   matching contexts that tie are **ambiguous**: counted, and the session
//!   gets no device (never a guess).
//! - A session that matches no context is looked up in `feed.default_context`
//!   when it is set; when it is not, in every feed context, and the IP must
//!   be bound in exactly one of them to one device (else ambiguous, counted).
//! - Without any `[[feed.contexts]]` every session is looked up that way.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// One `[[feed.contexts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRule {
    /// The feed's `network.context` this rule selects.
    pub name: String,
    /// Capture interfaces (live: `in_iface`).
    pub interfaces: Vec<String>,
    /// VLAN ids (any id of the session's VLAN stack).
    pub vlans: Vec<u16>,
    /// Client address pools.
    pub cidrs: Vec<IpNet>,
}

/// Where a session was seen.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The capture interface (live mode); `None` in replay.
    pub iface: Option<&'a str>,
    /// VLAN ids of the flow's first packet, outermost first.
    pub vlans: &'a [u16],
    /// The client's address.
    pub client: IpAddr,
}

/// The lookup namespaces a session's client IP may be found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A configured context matched.
    Context(String),
    /// No context matched: `feed.default_context`.
    Default(String),
    /// No context matched and no default is set: every feed context, the
    /// IP bound in exactly one.
    Any,
    /// Configured contexts tie: no lookup.
    Ambiguous,
}

/// Counters of the context decision (`stats.enrichment.contexts`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ContextStats {
    /// Sessions a configured context matched.
    pub matched: u64,
    /// Sessions that matched none and used `feed.default_context`.
    pub default: u64,
    /// Sessions that matched none and were looked up in every context.
    pub any: u64,
    /// Sessions two configured contexts matched equally (no device given).
    pub ambiguous_config: u64,
    /// Sessions whose IP was bound in several feed contexts to different
    /// devices, with no context configured for them (no device given).
    pub ambiguous_feed: u64,
}

/// How specific a matching context is: (kinds of criteria set, sets
/// `interfaces`, sets `vlans`, longest matching prefix); larger wins.
type Specificity = (u8, bool, bool, u8);

/// The configured contexts and the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextMap {
    /// The `[[feed.contexts]]` entries, in file order.
    pub rules: Vec<ContextRule>,
    /// `feed.default_context`: the namespace of a session no entry matches.
    pub default: Option<String>,
}

impl ContextMap {
    /// Which namespace `place` is looked up in (see the module doc).
    pub fn resolve(&self, place: &Place<'_>) -> Resolved {
        let mut best: Option<(Specificity, &ContextRule)> = None;
        let mut tie = false;
        for r in &self.rules {
            let mut kinds = 0u8;
            if !r.interfaces.is_empty() {
                if !place.iface.is_some_and(|i| r.interfaces.iter().any(|x| x == i)) {
                    continue;
                }
                kinds += 1;
            }
            if !r.vlans.is_empty() {
                if !place.vlans.iter().any(|v| r.vlans.contains(v)) {
                    continue;
                }
                kinds += 1;
            }
            let mut prefix = 0u8;
            if !r.cidrs.is_empty() {
                let Some(p) = r.cidrs.iter().filter(|n| n.contains(&place.client)).map(IpNet::prefix_len).max() else {
                    continue;
                };
                prefix = p;
                kinds += 1;
            }
            if kinds == 0 {
                continue;
            }
            let key = (kinds, !r.interfaces.is_empty(), !r.vlans.is_empty(), prefix);
            match best {
                Some((k, b)) if k == key => {
                    if b.name != r.name {
                        tie = true;
                    }
                }
                Some((k, _)) if k > key => {}
                _ => {
                    best = Some((key, r));
                    tie = false;
                }
            }
        }
        match (best, tie) {
            (Some(_), true) => Resolved::Ambiguous,
            (Some((_, r)), false) => Resolved::Context(r.name.clone()),
            (None, _) => match &self.default {
                Some(d) => Resolved::Default(d.clone()),
                None => Resolved::Any,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, ifs: &[&str], vlans: &[u16], cidrs: &[&str]) -> ContextRule {
        ContextRule {
            name: name.into(),
            interfaces: ifs.iter().map(|s| s.to_string()).collect(),
            vlans: vlans.to_vec(),
            cidrs: cidrs.iter().map(|s| s.parse().expect("cidr")).collect(),
        }
    }

    fn at<'a>(iface: Option<&'a str>, vlans: &'a [u16], ip: &str) -> Place<'a> {
        Place { iface, vlans, client: ip.parse().expect("ip") }
    }

    #[test]
    fn interface_vlan_and_cidr_select_their_context() {
        let m = ContextMap {
            rules: vec![
                rule("vpn1", &["tun0"], &[], &[]),
                rule("vpn2", &["tun1"], &[], &[]),
                rule("wifi", &[], &[20], &[]),
                rule("guest", &[], &[], &["10.9.0.0/16"]),
            ],
            default: None,
        };
        assert_eq!(m.resolve(&at(Some("tun0"), &[], "10.0.0.5")), Resolved::Context("vpn1".into()));
        assert_eq!(m.resolve(&at(Some("tun1"), &[], "10.0.0.5")), Resolved::Context("vpn2".into()));
        assert_eq!(m.resolve(&at(Some("eth0"), &[20], "10.0.0.5")), Resolved::Context("wifi".into()));
        assert_eq!(m.resolve(&at(None, &[], "10.9.3.4")), Resolved::Context("guest".into()));
        assert_eq!(m.resolve(&at(Some("eth0"), &[30], "10.0.0.5")), Resolved::Any);
        let with_default = ContextMap { default: Some("lan".into()), ..m };
        assert_eq!(with_default.resolve(&at(None, &[], "192.0.2.1")), Resolved::Default("lan".into()));
    }

    #[test]
    fn more_criteria_then_longer_prefix_win_and_ties_are_ambiguous() {
        let m = ContextMap {
            rules: vec![
                rule("any-eth1", &["eth1"], &[], &[]),
                rule("eth1-vlan10", &["eth1"], &[10], &[]),
                rule("pool16", &[], &[], &["10.8.0.0/16"]),
                rule("pool24", &[], &[], &["10.8.1.0/24"]),
                rule("tie-a", &[], &[77], &[]),
                rule("tie-b", &[], &[77], &[]),
            ],
            default: Some("lan".into()),
        };
        // Interface and VLAN beat the interface alone.
        assert_eq!(m.resolve(&at(Some("eth1"), &[10], "192.0.2.1")), Resolved::Context("eth1-vlan10".into()));
        assert_eq!(m.resolve(&at(Some("eth1"), &[11], "192.0.2.1")), Resolved::Context("any-eth1".into()));
        // The longer prefix wins between pools.
        assert_eq!(m.resolve(&at(None, &[], "10.8.1.9")), Resolved::Context("pool24".into()));
        assert_eq!(m.resolve(&at(None, &[], "10.8.2.9")), Resolved::Context("pool16".into()));
        // Two contexts on one VLAN: not guessed.
        assert_eq!(m.resolve(&at(None, &[77], "192.0.2.1")), Resolved::Ambiguous);
        // One kind each: the interface comes before the pool.
        assert_eq!(m.resolve(&at(Some("eth1"), &[], "10.8.1.9")), Resolved::Context("any-eth1".into()));
    }
}
