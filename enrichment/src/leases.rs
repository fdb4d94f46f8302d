//! Time-aware interval map from (network context, IP) to device
//! (an interval per binding, see FEED.md).
//!
//! Semantics:
//! * each binding is a half-open interval `[from_ns, until_ns)`; an
//!   assign without `valid_until` uses [`LeaseConfig::default_lease_ns`];
//! * `renew` by the same device extends its lease; `release`/`expire` close
//!   it early (a close that arrives before its assign is kept pending and
//!   applied when the assign lands, so out-of-order feeds work);
//! * a binding of the same IP to another device truncates the earlier one at
//!   the later one's start (unless the earlier one has a strictly higher
//!   confidence, in which case both are kept and lookup prefers the higher);
//!   when they overlapped both are flagged `conflict`;
//! * lookup prefers confidence `authenticated > dhcp > self_reported`, then
//!   the latest start; if nothing covers the time, a lease that ended
//!   naturally or by `expire` still matches within the grace window;
//! * the total number of leases is capped; the oldest (by start) is evicted
//!   and counted;
//! * so is the number kept per (context, IP) ([`LeaseConfig::max_per_key`],
//!   256): past it the oldest-starting lease of that IP is dropped and
//!   counted (`evicted_per_key`), and so are pending closes past the same
//!   number per key (`pending_dropped`). Every operation on a key scans at
//!   most that many leases, so an IP bound to any number of devices costs a
//!   bounded time per event (an IP shared by 100k devices was quadratic).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use pinwatch_parsers::time::Timestamp;

use crate::feed::{BindingAction, BindingIdentity, Confidence, IpBinding, Source};

/// Where a binding came from (the feed event's `source` and `identity`), so
/// the record can say it (`mobile.binding.source`, docs/bindings.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseOrigin {
    /// `source.kind` of the binding event (e.g. `radius_accounting`, `dhcp`), if it had a source.
    pub kind: Option<String>,
    /// `source.vendor` of the binding event, if any.
    pub vendor: Option<String>,
    /// Who was bound (`identity` of the binding event), if sent.
    pub identity: Option<BindingIdentity>,
}

/// `ip` with every bit past `len` cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len >= 32 { u32::MAX } else { !(u32::MAX >> len) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len >= 128 { u128::MAX } else { !(u128::MAX >> len) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long after a natural end / expire a lease still matches late packets.
    pub grace_ns: i64,
    /// Lease length when an assign/renew carries no `valid_until`.
    pub default_lease_ns: i64,
    /// Maximum number of stored leases (all keys together).
    pub max_entries: usize,
    /// Maximum number of pending (not yet matched) release/expire records.
    pub max_pending: usize,
    /// Maximum number of leases (and of pending closes) kept per
    /// (context, IP); the oldest-starting are dropped past it.
    pub max_per_key: usize,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            grace_ns: 60 * 1_000_000_000,
            default_lease_ns: 24 * 3600 * 1_000_000_000,
            max_entries: 100_000,
            max_pending: 10_000,
            max_per_key: 256,
        }
    }
}

/// How a lease's end was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `valid_until` (or the default lease length) as announced.
    Natural,
    /// Closed early by a `release`.
    Released,
    /// Closed by an `expire`.
    Expired,
    /// Truncated by a binding of the same IP to another device.
    Superseded,
}

/// One stored binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The device holding the IP (`device.id` of the binding event).
    pub device_id: String,
    /// Start of the binding, ns since the Unix epoch (inclusive).
    pub from_ns: i64,
    /// End of the binding, ns since the Unix epoch (exclusive).
    pub until_ns: i64,
    /// Confidence of the binding event.
    pub confidence: Confidence,
    /// How [`until_ns`](Self::until_ns) was set.
    pub end: EndReason,
    /// Another device held the same IP over an overlapping interval, or the
    /// feed reported a `conflict`.
    pub conflict: bool,
    /// The source of the binding that created this lease (a renew by the
    /// same device keeps the first one).
    pub origin: Option<Box<LeaseOrigin>>,
    seq: u64,
}

/// Result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseMatch<'a> {
    /// The lease that matched.
    pub lease: &'a Lease,
    /// The time was past the lease end but within the grace window.
    pub in_grace: bool,
    /// Other devices' leases also cover the time (lower priority ones).
    pub contested: bool,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Leases stored (new bindings and restored leases).
    pub inserted: u64,
    /// Assigns that extended (or fell inside) a lease of the same device and confidence.
    pub renewed: u64,
    /// Releases and expires applied to a lease, on arrival or when their assign landed.
    pub closed: u64,
    /// Overlaps between two devices' bindings found on assign, plus `conflict` events.
    pub conflicts: u64,
    /// Leases dropped because the map held [`LeaseConfig::max_entries`] (oldest start first).
    pub evicted: u64,
    /// Leases dropped because their (context, IP) held
    /// [`LeaseConfig::max_per_key`] (oldest start first).
    pub evicted_per_key: u64,
    /// Leases examined by `assign` (renew search, overlap check, pending
    /// closes, the per-key cap): at most a few times `max_per_key` each.
    pub examined: u64,
    /// Releases and expires kept pending because no lease covered their time yet.
    pub pending_closes: u64,
    /// Releases and expires dropped because the pending caps were reached.
    pub pending_dropped: u64,
    /// Bindings without a usable time (no valid_from for assign, etc.).
    pub ignored: u64,
}

#[derive(Debug, Clone)]
struct PendingClose {
    device_id: Option<String>,
    at_ns: i64,
    reason: EndReason,
}

type Key = (String, IpAddr);

/// The interval map.
#[derive(Debug, Default)]
pub struct LeaseMap {
    cfg: LeaseConfig,
    map: HashMap<Key, Vec<Lease>>,
    /// Eviction index: (from_ns, seq) -> key.
    by_age: BTreeMap<(i64, u64), Key>,
    pending: HashMap<Key, Vec<PendingClose>>,
    pending_len: usize,
    next_seq: u64,
    stats: LeaseStats,
    /// Prefix lengths of the prefix bindings held ((is IPv6, length)),
    /// tried longest first when no address binding matches.
    prefixes: std::collections::BTreeSet<(bool, u8)>,
}

impl LeaseMap {
    /// An empty map with these tunables.
    pub fn new(cfg: LeaseConfig) -> Self {
        Self { cfg, ..Self::default() }
    }

    /// The tunables the map was made with.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &LeaseStats {
        &self.stats
    }

    /// Number of stored leases.
    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    /// True when no lease is stored.
    pub fn is_empty(&self) -> bool {
        self.by_age.is_empty()
    }

    /// Apply an `ip_binding` feed event. `device_id` is the envelope's
    /// `device.id`; `event_time_ns` is used when the binding has no
    /// `valid_from` (release/expire/conflict).
    pub fn apply(&mut self, b: &IpBinding, device_id: Option<&str>, event_time_ns: i64) {
        self.apply_from(b, device_id, event_time_ns, None);
    }

    /// [`LeaseMap::apply`], recording the event's `source` on the lease.
    pub fn apply_from(&mut self, b: &IpBinding, device_id: Option<&str>, event_time_ns: i64, source: Option<&Source>) {
        let ctx = b.network.context.as_str();
        let ip = match b.prefix_len {
            Some(len) => {
                let (v6, max) = (b.ip.is_ipv6(), if b.ip.is_ipv6() { 128 } else { 32 });
                if len > max {
                    self.stats.ignored += 1;
                    return;
                }
                if len < max {
                    self.prefixes.insert((v6, len));
                }
                mask(b.ip, len)
            }
            None => b.ip,
        };
        let origin = (source.is_some() || b.identity.is_some()).then(|| {
            Box::new(LeaseOrigin {
                kind: source.map(|s| s.kind.clone()),
                vendor: source.and_then(|s| s.vendor.clone()),
                identity: b.identity.clone(),
            })
        });
        match b.action {
            BindingAction::Assign | BindingAction::Renew => {
                let (Some(dev), Some(from)) = (device_id, b.valid_from_ns.or(Some(event_time_ns))) else {
                    self.stats.ignored += 1;
                    return;
                };
                let until = b.valid_until_ns.unwrap_or_else(|| (Timestamp::from_ns(from) + self.cfg.default_lease_ns).ns());
                self.assign_from(ctx, ip, dev, from, until, b.confidence, origin);
            }
            BindingAction::Release | BindingAction::Expire => {
                let at = b.valid_until_ns.or(b.valid_from_ns).unwrap_or(event_time_ns);
                let reason = if b.action == BindingAction::Release { EndReason::Released } else { EndReason::Expired };
                self.close(ctx, ip, device_id, at, reason);
            }
            BindingAction::Conflict => {
                let at = b.valid_from_ns.unwrap_or(event_time_ns);
                self.flag_conflict(ctx, ip, at);
            }
        }
    }

    /// Record that `device` holds `ip` in `ctx` over `[from_ns, until_ns)`.
    pub fn assign(&mut self, ctx: &str, ip: IpAddr, device: &str, from_ns: i64, until_ns: i64, confidence: Confidence) {
        self.assign_from(ctx, ip, device, from_ns, until_ns, confidence, None);
    }

    /// [`LeaseMap::assign`] with where the binding came from.
    #[allow(clippy::too_many_arguments)]
    pub fn assign_from(
        &mut self,
        ctx: &str,
        ip: IpAddr,
        device: &str,
        from_ns: i64,
        until_ns: i64,
        confidence: Confidence,
        origin: Option<Box<LeaseOrigin>>,
    ) {
        if until_ns <= from_ns {
            self.stats.ignored += 1;
            return;
        }
        let key: Key = (ctx.to_owned(), ip);
        let mut new = Lease {
            device_id: device.to_owned(),
            from_ns,
            until_ns,
            confidence,
            end: EndReason::Natural,
            conflict: false,
            origin,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let leases = self.map.entry(key.clone()).or_default();
        // Each scan below is over one key's leases: at most `max_per_key`.
        self.stats.examined += 2 * leases.len() as u64;

        // Renew: same device, same confidence, touching or overlapping.
        if let Some(l) = leases.iter_mut().find(|l| {
            l.device_id == device
                && l.confidence == confidence
                && l.from_ns <= until_ns
                && from_ns <= l.until_ns
                && !matches!(l.end, EndReason::Released | EndReason::Superseded)
        }) {
            if until_ns > l.until_ns {
                l.until_ns = until_ns;
                l.end = EndReason::Natural;
            }
            self.stats.renewed += 1;
            return;
        }

        let mut conflicts = 0u64;
        for old in leases.iter_mut().filter(|l| l.device_id != device) {
            let overlap = old.from_ns < new.until_ns && new.from_ns < old.until_ns;
            if !overlap {
                continue;
            }
            old.conflict = true;
            new.conflict = true;
            conflicts += 1;
            // The later-starting binding supersedes the earlier one unless the
            // earlier one has strictly higher confidence.
            let (earlier, later) = if old.from_ns <= new.from_ns { (&mut *old, &mut new) } else { (&mut new, &mut *old) };
            if later.confidence >= earlier.confidence && earlier.from_ns < later.from_ns {
                earlier.until_ns = later.from_ns;
                earlier.end = EndReason::Superseded;
            }
        }
        self.stats.conflicts += conflicts;

        // Out-of-order closes that arrived before this assign.
        if let Some(p) = self.pending.get_mut(&key) {
            self.stats.examined += p.len() as u64;
            let before = p.len();
            p.retain(|c| {
                let matches = c.device_id.as_deref().is_none_or(|d| d == device) && new.from_ns <= c.at_ns && c.at_ns < new.until_ns;
                if matches {
                    new.until_ns = c.at_ns.max(new.from_ns);
                    new.end = c.reason;
                }
                !matches
            });
            let applied = before - p.len();
            self.pending_len -= applied;
            self.stats.closed += applied as u64;
            if p.is_empty() {
                self.pending.remove(&key);
            }
        }

        self.by_age.insert((new.from_ns, new.seq), key);
        let at = leases.partition_point(|l| l.from_ns <= new.from_ns);
        leases.insert(at, new);
        self.stats.inserted += 1;
        while leases.len() > self.cfg.max_per_key.max(1) {
            let old = leases.remove(0);
            self.by_age.remove(&(old.from_ns, old.seq));
            self.stats.evicted_per_key += 1;
            self.stats.examined += leases.len() as u64;
        }
        self.evict();
    }

    /// Close the lease of `device` (or of whoever holds it, if `None`)
    /// covering `at_ns` at `at_ns`. If no lease covers it yet, the close is
    /// kept pending for a later-arriving assign.
    pub fn close(&mut self, ctx: &str, ip: IpAddr, device: Option<&str>, at_ns: i64, reason: EndReason) {
        let key: Key = (ctx.to_owned(), ip);
        if let Some(leases) = self.map.get_mut(&key) {
            // Latest-starting lease of the device that covers at_ns (or whose
            // end is within the grace window: an expire can arrive slightly late).
            let grace = self.cfg.grace_ns;
            if let Some(l) = leases.iter_mut().rev().find(|l| {
                device.is_none_or(|d| d == l.device_id)
                    && l.from_ns <= at_ns
                    && at_ns < (Timestamp::from_ns(l.until_ns) + if l.end == EndReason::Natural { grace } else { 0 }).ns()
            }) {
                if at_ns < l.until_ns || reason == EndReason::Expired {
                    l.until_ns = at_ns.min(l.until_ns).max(l.from_ns);
                    l.end = reason;
                }
                self.stats.closed += 1;
                return;
            }
        }
        let per_key = self.pending.get(&key).map_or(0, Vec::len);
        if self.pending_len >= self.cfg.max_pending || per_key >= self.cfg.max_per_key.max(1) {
            self.stats.pending_dropped += 1;
            return;
        }
        self.pending.entry(key).or_default().push(PendingClose { device_id: device.map(str::to_owned), at_ns, reason });
        self.pending_len += 1;
        self.stats.pending_closes += 1;
    }

    /// Mark every lease covering `at_ns` as conflicting.
    pub fn flag_conflict(&mut self, ctx: &str, ip: IpAddr, at_ns: i64) {
        self.stats.conflicts += 1;
        if let Some(leases) = self.map.get_mut(&(ctx.to_owned(), ip)) {
            for l in leases.iter_mut().filter(|l| l.from_ns <= at_ns && at_ns < l.until_ns) {
                l.conflict = true;
            }
        }
    }

    /// The binding in force at `ts_ns`.
    pub fn lookup(&self, ctx: &str, ip: IpAddr, ts_ns: i64) -> Option<LeaseMatch<'_>> {
        if let Some(m) = self.lookup_exact(ctx, ip, ts_ns) {
            return Some(m);
        }
        // Prefix bindings (RADIUS Framed-/Delegated-IPv6-Prefix), longest first.
        let v6 = ip.is_ipv6();
        self.prefixes.iter().rev().filter(|(p6, _)| *p6 == v6).find_map(|&(_, len)| self.lookup_exact(ctx, mask(ip, len), ts_ns))
    }

    fn lookup_exact(&self, ctx: &str, ip: IpAddr, ts_ns: i64) -> Option<LeaseMatch<'_>> {
        let leases = self.map.get(&(ctx.to_owned(), ip))?;
        let mut best: Option<&Lease> = None;
        for l in leases.iter().filter(|l| l.from_ns <= ts_ns && ts_ns < l.until_ns) {
            let better = match best {
                None => true,
                Some(b) => (l.confidence, l.from_ns, l.seq) > (b.confidence, b.from_ns, b.seq),
            };
            if better {
                best = Some(l);
            }
        }
        if let Some(lease) = best {
            let contested = leases.iter().any(|l| l.from_ns <= ts_ns && ts_ns < l.until_ns && l.device_id != lease.device_id);
            return Some(LeaseMatch { lease, in_grace: false, contested });
        }
        // Grace: latest-ending lease that ended naturally or by expire.
        leases
            .iter()
            .filter(|l| {
                matches!(l.end, EndReason::Natural | EndReason::Expired)
                    && l.until_ns <= ts_ns
                    && ts_ns < (Timestamp::from_ns(l.until_ns) + self.cfg.grace_ns).ns()
                    && l.from_ns <= ts_ns
            })
            .max_by_key(|l| (l.until_ns, l.confidence, l.seq))
            .map(|lease| LeaseMatch { lease, in_grace: true, contested: false })
    }

    /// All leases stored for a key, sorted by start.
    pub fn leases(&self, ctx: &str, ip: IpAddr) -> &[Lease] {
        self.map.get(&(ctx.to_owned(), ip)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every stored lease with its (context, IP), oldest start first: what
    /// a state file keeps across a restart ([`LeaseMap::restore`]).
    pub fn export(&self) -> Vec<(&str, IpAddr, &Lease)> {
        self.by_age
            .iter()
            .filter_map(|((_, seq), key)| {
                let l = self.map.get(key)?.iter().find(|l| l.seq == *seq)?;
                Some((key.0.as_str(), key.1, l))
            })
            .collect()
    }

    /// Put back a lease as [`LeaseMap::export`] gave it (end and conflict
    /// flag included), without the overlap rules of [`LeaseMap::assign`]:
    /// the exported map had already applied them. The caps hold (the
    /// oldest go first, counted as evictions); an exact duplicate is
    /// skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        ctx: &str,
        ip: IpAddr,
        device: &str,
        from_ns: i64,
        until_ns: i64,
        confidence: Confidence,
        end: EndReason,
        conflict: bool,
    ) {
        if until_ns < from_ns {
            self.stats.ignored += 1;
            return;
        }
        let key: Key = (ctx.to_owned(), ip);
        let leases = self.map.entry(key.clone()).or_default();
        if leases.iter().any(|l| l.device_id == device && l.from_ns == from_ns && l.until_ns == until_ns && l.confidence == confidence) {
            return;
        }
        let new = Lease { device_id: device.to_owned(), from_ns, until_ns, confidence, end, conflict, seq: self.next_seq, origin: None };
        self.next_seq += 1;
        self.by_age.insert((new.from_ns, new.seq), key);
        let at = leases.partition_point(|l| l.from_ns <= new.from_ns);
        leases.insert(at, new);
        self.stats.inserted += 1;
        while leases.len() > self.cfg.max_per_key.max(1) {
            let old = leases.remove(0);
            self.by_age.remove(&(old.from_ns, old.seq));
            self.stats.evicted_per_key += 1;
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.by_age.len() > self.cfg.max_entries {
            let Some(((_, seq), key)) = self.by_age.pop_first() else {
                return;
            };
            if let Some(v) = self.map.get_mut(&key) {
                v.retain(|l| l.seq != seq);
                if v.is_empty() {
                    self.map.remove(&key);
                }
            }
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::FeedReader;

    const S: i64 = 1_000_000_000;

    fn ip() -> IpAddr {
        "10.0.0.7".parse().expect("ip")
    }

    fn dev(m: &LeaseMap, t: i64) -> Option<String> {
        m.lookup("wifi", ip(), t).map(|x| x.lease.device_id.clone())
    }

    #[test]
    fn intervals_and_contexts() {
        let mut m = LeaseMap::default();
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        assert_eq!(dev(&m, 50 * S).as_deref(), Some("a"));
        assert_eq!(dev(&m, -1), None);
        assert!(m.lookup("vpn", ip(), 50 * S).is_none());
    }

    #[test]
    fn ip_reuse_between_devices_mid_capture() {
        let mut m = LeaseMap::default();
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        m.close("wifi", ip(), Some("a"), 40 * S, EndReason::Released);
        m.assign("wifi", ip(), "b", 50 * S, 200 * S, Confidence::Dhcp);
        assert_eq!(dev(&m, 30 * S).as_deref(), Some("a"));
        // released: no grace for a
        assert_eq!(dev(&m, 45 * S), None);
        assert_eq!(dev(&m, 60 * S).as_deref(), Some("b"));
        assert!(m.leases("wifi", ip()).iter().all(|l| !l.conflict));
        assert_eq!(m.stats().conflicts, 0);
    }

    #[test]
    fn overlapping_assign_closes_old_and_flags_conflict() {
        let mut m = LeaseMap::default();
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        m.assign("wifi", ip(), "b", 50 * S, 200 * S, Confidence::Dhcp);
        assert_eq!(dev(&m, 49 * S).as_deref(), Some("a"));
        assert_eq!(dev(&m, 50 * S).as_deref(), Some("b"));
        assert_eq!(dev(&m, 99 * S).as_deref(), Some("b"));
        let ls = m.leases("wifi", ip());
        assert!(ls.iter().all(|l| l.conflict));
        assert_eq!(ls[0].end, EndReason::Superseded);
        assert_eq!(m.stats().conflicts, 1);
        // superseded: no grace for a after b took over
        assert_eq!(dev(&m, 51 * S).as_deref(), Some("b"));
    }

    #[test]
    fn out_of_order_assigns_and_pending_close() {
        let mut m = LeaseMap::default();
        // b's assign arrives first, then a's earlier (overlapping) one.
        m.assign("wifi", ip(), "b", 50 * S, 200 * S, Confidence::Dhcp);
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        assert_eq!(dev(&m, 10 * S).as_deref(), Some("a"));
        assert_eq!(dev(&m, 60 * S).as_deref(), Some("b"));
        // a release for c arrives before c's assign.
        let ip2: IpAddr = "10.0.0.8".parse().expect("ip");
        m.close("wifi", ip2, Some("c"), 30 * S, EndReason::Released);
        assert_eq!(m.stats().pending_closes, 1);
        m.assign("wifi", ip2, "c", 0, 100 * S, Confidence::Dhcp);
        assert_eq!(m.lookup("wifi", ip2, 20 * S).map(|x| x.lease.device_id.as_str()), Some("c"));
        assert!(m.lookup("wifi", ip2, 31 * S).is_none());
    }

    #[test]
    fn grace_window_after_expiry() {
        let mut m = LeaseMap::new(LeaseConfig { grace_ns: 10 * S, ..LeaseConfig::default() });
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        let hit = m.lookup("wifi", ip(), 105 * S).expect("grace");
        assert!(hit.in_grace);
        assert_eq!(hit.lease.device_id, "a");
        assert!(m.lookup("wifi", ip(), 110 * S).is_none());
        // explicit expire earlier
        m.close("wifi", ip(), Some("a"), 50 * S, EndReason::Expired);
        assert!(m.lookup("wifi", ip(), 55 * S).expect("grace").in_grace);
        assert!(m.lookup("wifi", ip(), 61 * S).is_none());
        // renew extends
        m.assign("wifi", ip(), "a", 50 * S, 300 * S, Confidence::Dhcp);
        assert!(!m.lookup("wifi", ip(), 200 * S).expect("renewed").in_grace);
        assert_eq!(m.stats().renewed, 1);
    }

    #[test]
    fn source_priority_when_overlapping() {
        let mut m = LeaseMap::default();
        m.assign("wifi", ip(), "vpn-dev", 0, 100 * S, Confidence::Authenticated);
        m.assign("wifi", ip(), "agent-dev", 10 * S, 50 * S, Confidence::SelfReported);
        let hit = m.lookup("wifi", ip(), 20 * S).expect("hit");
        assert_eq!(hit.lease.device_id, "vpn-dev");
        assert!(hit.contested && hit.lease.conflict);
        // a later-starting dhcp binding outranks an earlier self-report
        m.assign("wifi", ip(), "dhcp-dev", 30 * S, 60 * S, Confidence::Dhcp);
        assert_eq!(dev(&m, 40 * S).as_deref(), Some("vpn-dev"));
        assert_eq!(dev(&m, 200 * S), None);
    }

    #[test]
    fn bounded_with_counted_eviction() {
        let mut m = LeaseMap::new(LeaseConfig { max_entries: 3, ..LeaseConfig::default() });
        for i in 0..5u8 {
            let a = IpAddr::from([10, 0, 0, i]);
            m.assign("wifi", a, "d", i64::from(i) * S, 1000 * S, Confidence::Dhcp);
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.stats().evicted, 2);
        assert!(m.lookup("wifi", IpAddr::from([10, 0, 0, 0]), 500 * S).is_none());
        assert!(m.lookup("wifi", IpAddr::from([10, 0, 0, 4]), 500 * S).is_some());
    }

    #[test]
    fn apply_feed_events() {
        let mut r = FeedReader::default();
        let mut m = LeaseMap::default();
        let lines = [
            r#"{"schema_version":1,"event_type":"ip_binding","action":"assign","ip":"10.0.0.7","network":{"context":"wifi"},"device":{"id":"a"},"valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-01-01T08:00:00Z","confidence":"dhcp","event_time":"2026-01-01T00:00:00Z","observed_time":"2026-01-01T00:00:01Z"}"#,
            r#"{"schema_version":1,"event_type":"ip_binding","action":"release","ip":"10.0.0.7","network":{"context":"wifi"},"device":{"id":"a"},"confidence":"dhcp","event_time":"2026-01-01T01:00:00Z","observed_time":"2026-01-01T01:00:01Z"}"#,
            r#"{"schema_version":1,"event_type":"ip_binding","action":"conflict","ip":"10.0.0.7","network":{"context":"wifi"},"confidence":"dhcp","event_time":"2026-01-01T00:30:00Z","observed_time":"2026-01-01T01:00:01Z"}"#,
        ];
        for (i, l) in lines.iter().enumerate() {
            let ev = r.push_line(l, i as u64).expect("event");
            let crate::feed::EventBody::IpBinding(b) = &ev.body else { panic!("type") };
            m.apply(b, ev.device_id.as_deref(), ev.event_time_ns);
        }
        let t0 = crate::feed::parse_rfc3339_ns("2026-01-01T00:30:00Z").expect("ts");
        let hit = m.lookup("wifi", ip(), t0).expect("hit");
        assert!(hit.lease.conflict);
        assert!(m.lookup("wifi", ip(), t0 + 3600 * S).is_none());
    }

    /// 100k devices bound to one IP in turn: each assign examines a bounded
    /// number of leases (it examined all earlier ones: 76 s for 100k), and
    /// the key keeps at most `max_per_key` of them, the latest.
    #[test]
    fn one_ip_bound_to_many_devices_is_linear_and_bounded() {
        let mut m = LeaseMap::default();
        let k = m.config().max_per_key;
        let n = 100_000u64;
        for i in 0..n {
            let from = i as i64 * S;
            m.assign("wifi", ip(), &format!("dev-{i}"), from, from + 3600 * S, Confidence::Dhcp);
            // A release for each, half of them before their assign.
            m.close("wifi", ip(), Some(&format!("dev-{}", i + 1)), from + S / 2, EndReason::Released);
        }
        let st = m.stats();
        assert_eq!(st.inserted, n);
        assert!(m.leases("wifi", ip()).len() <= k, "{}", m.leases("wifi", ip()).len());
        assert_eq!(m.len(), m.leases("wifi", ip()).len());
        assert_eq!(st.evicted_per_key, n - k as u64);
        assert!(st.examined <= n * (4 * k as u64 + 4), "examined {} leases for {n} assigns", st.examined);
        // The latest binding is still found, the dropped ones are not.
        assert_eq!(dev(&m, (n as i64 - 1) * S).as_deref(), Some(&*format!("dev-{}", n - 1)));
        assert!(m.lookup("wifi", ip(), 10 * S).is_none());
    }

    /// What export gives, restore puts back: the same lookups, flags and
    /// ends, in a fresh map (a restart).
    #[test]
    fn export_and_restore_round_trip() {
        let mut m = LeaseMap::default();
        m.assign("wifi", ip(), "a", 0, 100 * S, Confidence::Dhcp);
        m.assign("wifi", ip(), "b", 50 * S, 200 * S, Confidence::Dhcp);
        m.assign("vpn", ip(), "c", 10 * S, 20 * S, Confidence::Authenticated);
        m.close("vpn", ip(), Some("c"), 15 * S, EndReason::Released);
        let mut n = LeaseMap::default();
        for (ctx, a, l) in m.export() {
            n.restore(ctx, a, &l.device_id, l.from_ns, l.until_ns, l.confidence, l.end, l.conflict);
        }
        assert_eq!(n.len(), 3);
        for t in [5, 49, 50, 120, 199, 260] {
            assert_eq!(dev(&n, t * S), dev(&m, t * S), "t={t}");
        }
        let fields = |m: &LeaseMap| {
            m.leases("wifi", ip())
                .iter()
                .map(|l| (l.device_id.clone(), l.from_ns, l.until_ns, l.confidence, l.end, l.conflict))
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&n), fields(&m));
        assert!(fields(&n).iter().all(|f| f.5), "both wifi leases keep their conflict flag");
        assert!(n.lookup("vpn", ip(), 16 * S).is_none(), "released at 15 s");
        assert_eq!(n.lookup("vpn", ip(), 12 * S).map(|x| x.lease.device_id.as_str()), Some("c"));
        // Restoring twice adds nothing.
        for (ctx, a, l) in m.export() {
            n.restore(ctx, a, &l.device_id, l.from_ns, l.until_ns, l.confidence, l.end, l.conflict);
        }
        assert_eq!(n.len(), 3);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Arbitrary assigns, closes and lookups, with times anywhere in
        /// `i64` (the ends included): no overflow, and the map within its
        /// caps, in all and per key, after every step.
        #[test]
        fn the_map_stays_within_its_caps_at_any_time(ops in proptest::collection::vec((0u8..3, 0u8..4, 0u8..40, proptest::num::i64::ANY, proptest::num::i64::ANY), 1..400), max_entries in 1usize..64, max_per_key in 1usize..16) {
            let mut m = LeaseMap::new(LeaseConfig { max_entries, max_per_key, max_pending: 32, ..LeaseConfig::default() });
            for (op, ipn, devn, a, b) in ops {
                let ip = IpAddr::from([10, 0, 0, ipn]);
                let dev = format!("d{devn}");
                match op {
                    0 => m.assign("wifi", ip, &dev, a.min(b), a.max(b), Confidence::Dhcp),
                    1 => m.close("wifi", ip, Some(&dev), a, EndReason::Expired),
                    _ => {
                        let _ = m.lookup("wifi", ip, a);
                    }
                }
                proptest::prop_assert!(m.len() <= max_entries);
                for n in 0..4u8 {
                    proptest::prop_assert!(m.leases("wifi", IpAddr::from([10, 0, 0, n])).len() <= max_per_key);
                }
                let held: usize = (0..4u8).map(|n| m.leases("wifi", IpAddr::from([10, 0, 0, n])).len()).sum();
                proptest::prop_assert_eq!(held, m.len());
            }
        }
    }
    /// A prefix binding (RADIUS Framed-IPv6-Prefix) covers every address
    /// under it, an address binding wins over it, and the lease keeps where
    /// it came from.
    #[test]
    fn lease_prefix_binding_and_origin() {
        use crate::feed::{BindingIdentity, Network};
        let mut m = LeaseMap::default();
        let b = |ip: &str, prefix_len: Option<u8>| IpBinding {
            action: BindingAction::Assign,
            ip: ip.parse().expect("ip"),
            network: Network { context: "vpn".into(), kind: None },
            valid_from_ns: Some(0),
            valid_until_ns: Some(100 * S),
            confidence: Confidence::Authenticated,
            identity: Some(BindingIdentity { kind: "user".into(), value: "alice".into() }),
            prefix_len,
        };
        let src = Source { kind: "radius_accounting".into(), vendor: Some("vpn-1".into()), source_event_id: None };
        m.apply_from(&b("2001:db8:5:0:ffff::1", Some(64)), Some("dev-a"), 0, Some(&src));
        m.apply_from(&b("2001:db8:5::9", None), Some("dev-b"), 0, None);
        let hit = m.lookup("vpn", "2001:db8:5::1234".parse().expect("ip"), 5 * S).expect("covered by the /64");
        assert_eq!(hit.lease.device_id, "dev-a");
        let o = hit.lease.origin.as_deref().expect("origin");
        assert_eq!((o.kind.as_deref(), o.vendor.as_deref()), (Some("radius_accounting"), Some("vpn-1")));
        assert_eq!(o.identity.as_ref().map(|i| i.value.as_str()), Some("alice"));
        assert_eq!(m.lookup("vpn", "2001:db8:5::9".parse().expect("ip"), 5 * S).map(|h| h.lease.device_id.as_str()), Some("dev-b"));
        assert!(m.lookup("vpn", "2001:db8:6::1".parse().expect("ip"), 5 * S).is_none());
        assert!(m.lookup("vpn", "10.0.0.1".parse().expect("ip"), 5 * S).is_none());
    }
}
