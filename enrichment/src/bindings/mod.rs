//! IP bindings from the systems an enterprise already runs — RADIUS
//! accounting ([`radius`]) and Kea's DHCPv4 lease file ([`kea`]) — mapped
//! to MDM device ids with an inventory export ([`inventory`]), and written
//! as `ip_binding` lines of the device feed (`enrichment/FEED.md`), so they
//! land in the same lease map as any other feed binding.
//!
//! Sans-IO: [`Bindings::radius_datagram`] takes a datagram, the sender's
//! address and the receive time; [`Bindings::kea_line`] a lease-file line
//! and the time it was read. Each returns the feed lines to write (and, for
//! RADIUS, the Accounting-Response to send). Sockets, files and clocks are
//! the caller's (`sensor/src/bindings/`). Documented in `docs/bindings.md`.

pub mod inventory;
pub mod kea;
pub mod radius;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;
use serde_json::{json, Map, Value};

use inventory::{IdentityKind, Inventory};
use kea::{KeaLease, KeaReader, LeaseKind};
use radius::{AcctRecord, StatusType};

const NS: i64 = 1_000_000_000;

/// One allowed RADIUS client: its address range, shared secret and the
/// network context its bindings belong to.
#[derive(Debug, Clone)]
pub struct RadiusClient {
    /// Network address of the clients' range.
    pub net: IpAddr,
    /// Prefix length of the range (32 or 128 for a single host).
    pub prefix_len: u8,
    /// Shared secret the Request Authenticator is checked with.
    pub secret: Vec<u8>,
    /// Network context (`network.context`) of the bindings its requests give.
    pub context: String,
}

impl RadiusClient {
    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            }
        };
        // An IPv4 client seen as ::ffff:a.b.c.d on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((n, w), (a, w2)) = (bits(self.net), bits(ip));
        if w != w2 || self.prefix_len > w {
            return false;
        }
        let shift = u32::from(w - self.prefix_len);
        if shift >= 128 {
            return true;
        }
        (n >> shift) == (a >> shift)
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct BindingsConfig {
    /// RADIUS clients accepted; datagrams from anyone else are dropped.
    pub radius_clients: Vec<RadiusClient>,
    /// How long a Start / Interim-Update binding lasts unless a Stop or a
    /// later update comes (8 h).
    pub radius_session_ttl_ns: i64,
    /// Network context of the Kea lease bindings.
    pub kea_context: String,
    /// Bind an identity the inventory does not know under a device id made
    /// from the identity itself (`mac:…`, `user:…`) rather than dropping it.
    pub unknown_as_identity: bool,
}

impl Default for BindingsConfig {
    fn default() -> Self {
        Self { radius_clients: Vec::new(), radius_session_ttl_ns: 8 * 3600 * NS, kea_context: "dhcp".into(), unknown_as_identity: true }
    }
}

/// Counters (the `bindings` stats object, docs/bindings.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindingsStats {
    /// Datagrams received.
    pub radius_packets: u64,
    /// Accounting-Requests that verified with their client's secret.
    pub radius_accepted: u64,
    /// Accounting-Responses returned to send.
    pub radius_responses: u64,
    /// Datagrams whose Request Authenticator did not verify.
    pub radius_bad_authenticator: u64,
    /// Datagrams whose framing is broken.
    pub radius_malformed: u64,
    /// Datagrams from an address no RADIUS client covers.
    pub radius_unknown_client: u64,
    /// Datagrams that are not an Accounting-Request.
    pub radius_not_accounting: u64,
    /// Verified requests that bind nothing (no address, or Accounting-On/Off).
    pub radius_no_binding: u64,
    /// Lease file lines read.
    pub kea_lines: u64,
    /// Lines that gave a lease.
    pub kea_leases: u64,
    /// Lines that did not parse, or came before a usable header.
    pub kea_malformed: u64,
    /// Lease files started ([`Bindings::kea_new_file`]).
    pub kea_files_opened: u64,
    /// Feed lines returned.
    pub bindings_written: u64,
    /// Lookups (a MAC and/or user name) the inventory answered with a device.
    pub inventory_hits: u64,
    /// Lookups it could not answer (identities unknown or ambiguous).
    pub inventory_misses: u64,
    /// Bindings dropped because the identity was unknown and
    /// `unknown_as_identity` is off.
    pub dropped_unknown_identity: u64,
    /// Accounting-On/Off received (the NAS restarted; its sessions released).
    pub radius_nas_restarts: u64,
    /// Sessions not tracked for Accounting-On/Off because the table was full.
    pub radius_tracking_full: u64,
}

/// The result of one RADIUS datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RadiusOutcome {
    /// Accounting-Response to send back to the sender, if the request verified.
    pub response: Option<Vec<u8>>,
    /// Feed lines (JSON, no newline).
    pub lines: Vec<String>,
}

/// The converter: config, inventory, Kea reader state and counters.
#[derive(Debug, Default)]
pub struct Bindings {
    cfg: BindingsConfig,
    inventory: Inventory,
    kea: KeaReader,
    /// End (s) of the newest active lease seen per address, to place
    /// releases and flushes of reclaimed leases (at most [`MAX_KEA_TRACKED`]).
    kea_until: HashMap<Ipv4Addr, i64>,
    /// Addresses each NAS holds bound (NAS → (address, prefix) → device,
    /// identity, context), so an Accounting-On/Off (the NAS restarted: all
    /// its sessions are gone) releases them; at most [`MAX_RADIUS_TRACKED`].
    radius_held: HashMap<String, HashMap<(IpAddr, Option<u8>), Held>>,
    radius_held_len: usize,
    stats: BindingsStats,
}

#[derive(Debug, Clone)]
struct Held {
    device: String,
    identity: (String, String),
    context: String,
}

/// Sessions tracked for Accounting-On/Off, all NASes together.
pub const MAX_RADIUS_TRACKED: usize = 1 << 20;

/// Addresses whose lease end is remembered.
pub const MAX_KEA_TRACKED: usize = 1 << 20;

/// RFC 3339 UTC with nanoseconds, from ns since the epoch.
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NS);
    let frac = ns.rem_euclid(NS);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

struct Binding<'a> {
    action: &'static str,
    ip: IpAddr,
    prefix_len: Option<u8>,
    context: &'a str,
    network_kind: &'static str,
    confidence: &'static str,
    event_ns: i64,
    observed_ns: i64,
    from_ns: Option<i64>,
    until_ns: Option<i64>,
    source_kind: &'static str,
    vendor: Option<String>,
    source_event_id: Option<String>,
    device: Option<String>,
    identity: Option<(String, String)>,
}

fn line(b: Binding<'_>) -> String {
    let mut o = Map::new();
    o.insert("schema_version".into(), json!(1));
    o.insert("event_type".into(), json!("ip_binding"));
    o.insert("event_time".into(), json!(rfc3339(b.event_ns)));
    o.insert("observed_time".into(), json!(rfc3339(b.observed_ns)));
    let mut src = Map::new();
    src.insert("kind".into(), json!(b.source_kind));
    if let Some(v) = b.vendor {
        src.insert("vendor".into(), json!(v));
    }
    if let Some(v) = b.source_event_id {
        src.insert("source_event_id".into(), json!(v));
    }
    o.insert("source".into(), Value::Object(src));
    if let Some(d) = b.device {
        o.insert("device".into(), json!({ "id": d }));
    }
    o.insert("action".into(), json!(b.action));
    o.insert("ip".into(), json!(b.ip.to_string()));
    if let Some(p) = b.prefix_len {
        o.insert("prefix_len".into(), json!(p));
    }
    o.insert("network".into(), json!({ "context": b.context, "kind": b.network_kind }));
    if let Some(f) = b.from_ns {
        o.insert("valid_from".into(), json!(rfc3339(f)));
    }
    if let Some(u) = b.until_ns {
        o.insert("valid_until".into(), json!(rfc3339(u)));
    }
    o.insert("confidence".into(), json!(b.confidence));
    if let Some((k, v)) = b.identity {
        o.insert("identity".into(), json!({ "kind": k, "value": v }));
    }
    Value::Object(o).to_string()
}

impl Bindings {
    /// A converter with these tunables and this inventory.
    pub fn new(cfg: BindingsConfig, inventory: Inventory) -> Self {
        Self {
            cfg,
            inventory,
            kea: KeaReader::new(),
            kea_until: HashMap::new(),
            radius_held: HashMap::new(),
            radius_held_len: 0,
            stats: BindingsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &BindingsStats {
        &self.stats
    }

    /// The inventory identities are mapped with.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Device id and identity for a MAC / user name; `None` to drop.
    fn device_for(&mut self, mac: Option<&str>, user: Option<&str>) -> Option<(String, (String, String))> {
        if let Some((d, kind, v)) = self.inventory.resolve(mac, user) {
            self.stats.inventory_hits += 1;
            return Some((d.to_owned(), (kind.as_str().to_owned(), v)));
        }
        self.stats.inventory_misses += 1;
        if !self.cfg.unknown_as_identity {
            self.stats.dropped_unknown_identity += 1;
            return None;
        }
        let mac = mac.and_then(inventory::normalize_mac);
        let user = user.map(str::trim).filter(|u| !u.is_empty());
        let (kind, v) = match (mac, user) {
            (Some(m), _) => (IdentityKind::Mac, m),
            (None, Some(u)) => (IdentityKind::User, u.to_owned()),
            (None, None) => {
                self.stats.dropped_unknown_identity += 1;
                return None;
            }
        };
        Some((format!("{}:{v}", kind.as_str()), (kind.as_str().to_owned(), v)))
    }

    /// One datagram from `peer`, received at `received_ns`.
    pub fn radius_datagram(&mut self, pkt: &[u8], peer: IpAddr, received_ns: i64) -> RadiusOutcome {
        self.stats.radius_packets += 1;
        let Some(client) = self.cfg.radius_clients.iter().find(|c| c.contains(peer)).cloned() else {
            self.stats.radius_unknown_client += 1;
            return RadiusOutcome::default();
        };
        let acc = match radius::handle(pkt, &client.secret) {
            Ok(a) => a,
            Err(radius::Drop::BadAuthenticator) => {
                self.stats.radius_bad_authenticator += 1;
                return RadiusOutcome::default();
            }
            Err(radius::Drop::Malformed) => {
                self.stats.radius_malformed += 1;
                return RadiusOutcome::default();
            }
            Err(radius::Drop::NotAccountingRequest) => {
                self.stats.radius_not_accounting += 1;
                return RadiusOutcome::default();
            }
        };
        self.stats.radius_accepted += 1;
        self.stats.radius_responses += 1;
        let lines = self.radius_lines(&acc.record, &client.context, peer, received_ns);
        if lines.is_empty() {
            self.stats.radius_no_binding += 1;
        }
        self.stats.bindings_written += lines.len() as u64;
        RadiusOutcome { response: Some(acc.response), lines }
    }

    fn radius_lines(&mut self, r: &AcctRecord, context: &str, peer: IpAddr, received_ns: i64) -> Vec<String> {
        let vendor = r.nas_identifier.clone().or_else(|| r.nas_ip.map(|a| a.to_string()));
        let nas_key = vendor.clone().unwrap_or_else(|| peer.to_string());
        let action = match r.status {
            Some(StatusType::Start) => "assign",
            Some(StatusType::InterimUpdate) => "renew",
            Some(StatusType::Stop) => "release",
            Some(StatusType::AccountingOn | StatusType::AccountingOff) => {
                return self.radius_nas_restart(&nas_key, vendor, r, received_ns);
            }
            _ => return Vec::new(),
        };
        let mut addrs: Vec<(IpAddr, Option<u8>)> = Vec::new();
        if let Some(a) = r.framed_ip {
            addrs.push((IpAddr::V4(a), None));
        }
        addrs.extend(r.framed_ipv6.iter().map(|a| (IpAddr::V6(*a), None)));
        addrs.extend(r.framed_ipv6_prefix.iter().chain(&r.delegated_ipv6_prefix).map(|p| (IpAddr::V6(p.addr), Some(p.len))));
        if addrs.is_empty() {
            return Vec::new();
        }
        let Some((device, identity)) = self.device_for(r.calling_station_id.as_deref(), r.user_name.as_deref()) else {
            return Vec::new();
        };
        let event_ns = r.event_time_ns(received_ns);
        for a in &addrs {
            self.track(&nas_key, *a, action == "release", || Held {
                device: device.clone(),
                identity: identity.clone(),
                context: context.to_owned(),
            });
        }
        let (from, until) = if action == "release" {
            (None, Some(event_ns))
        } else {
            (Some(event_ns), Some(event_ns.saturating_add(self.cfg.radius_session_ttl_ns)))
        };
        addrs
            .into_iter()
            .map(|(ip, prefix_len)| {
                line(Binding {
                    action,
                    ip,
                    prefix_len,
                    context,
                    network_kind: "radius",
                    confidence: "authenticated",
                    event_ns,
                    observed_ns: received_ns,
                    from_ns: from,
                    until_ns: until,
                    source_kind: "radius_accounting",
                    vendor: vendor.clone(),
                    source_event_id: r.acct_session_id.clone(),
                    device: Some(device.clone()),
                    identity: Some(identity.clone()),
                })
            })
            .collect()
    }

    fn track(&mut self, nas: &str, addr: (IpAddr, Option<u8>), release: bool, held: impl FnOnce() -> Held) {
        if release {
            if let Some(m) = self.radius_held.get_mut(nas) {
                if m.remove(&addr).is_some() {
                    self.radius_held_len -= 1;
                }
                if m.is_empty() {
                    self.radius_held.remove(nas);
                }
            }
            return;
        }
        let m = self.radius_held.entry(nas.to_owned()).or_default();
        if m.contains_key(&addr) || self.radius_held_len < MAX_RADIUS_TRACKED {
            if m.insert(addr, held()).is_none() {
                self.radius_held_len += 1;
            }
        } else {
            self.stats.radius_tracking_full += 1;
        }
    }

    /// Accounting-On/Off: the NAS restarted, every session it had is over.
    fn radius_nas_restart(&mut self, nas: &str, vendor: Option<String>, r: &AcctRecord, received_ns: i64) -> Vec<String> {
        self.stats.radius_nas_restarts += 1;
        let Some(held) = self.radius_held.remove(nas) else {
            return Vec::new();
        };
        self.radius_held_len -= held.len();
        let event_ns = r.event_time_ns(received_ns);
        let mut held: Vec<_> = held.into_iter().collect();
        held.sort_by_key(|a| a.0);
        held.into_iter()
            .map(|((ip, prefix_len), h)| {
                line(Binding {
                    action: "release",
                    ip,
                    prefix_len,
                    context: &h.context,
                    network_kind: "radius",
                    confidence: "authenticated",
                    event_ns,
                    observed_ns: received_ns,
                    from_ns: None,
                    until_ns: Some(event_ns),
                    source_kind: "radius_accounting",
                    vendor: vendor.clone(),
                    source_event_id: None,
                    device: Some(h.device),
                    identity: Some(h.identity),
                })
            })
            .collect()
    }

    /// A new lease file starts (forget the header of the previous one).
    pub fn kea_new_file(&mut self) {
        self.kea.reset();
        self.stats.kea_files_opened += 1;
    }

    /// One line of Kea's lease file, read at `read_ns`; `live` when the line
    /// was appended while it was followed (not read back from history).
    ///
    /// Kea writes a deleted lease (a DHCPRELEASE, or the flush of a
    /// reclaimed lease) with `valid_lifetime` 0 and `expire` = the client's
    /// last transmission time, not the time of the deletion. A release is
    /// therefore placed at the time the line was read when it was read live
    /// (bounded by the lease's end), else at that last transmission time
    /// (the latest time the lease is known to have been held); the flush of
    /// a lease already reclaimed (state 2) is an expiry at the lease's end,
    /// or nothing when that end is unknown.
    pub fn kea_line(&mut self, text: &str, read_ns: i64, live: bool) -> Vec<String> {
        self.stats.kea_lines += 1;
        let l: KeaLease = match self.kea.push_line(text) {
            Ok(l) => l,
            Err(kea::Skip::Malformed) | Err(kea::Skip::NoHeader) => {
                self.stats.kea_malformed += 1;
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        self.stats.kea_leases += 1;
        let known_until = self.kea_until.get(&l.address).copied();
        match l.kind {
            LeaseKind::Active => {
                if self.kea_until.len() < MAX_KEA_TRACKED || known_until.is_some() {
                    self.kea_until.insert(l.address, l.until_s);
                }
            }
            _ => {
                self.kea_until.remove(&l.address);
            }
        }
        let (action, event_s, from_s, until_s) = match l.kind {
            LeaseKind::Active => ("assign", l.from_s, Some(l.from_s), Some(l.until_s)),
            LeaseKind::Released if l.reclaimed => match known_until {
                Some(u) => ("expire", u, None, Some(u)),
                None => return Vec::new(),
            },
            LeaseKind::Released => {
                let read_s = read_ns.div_euclid(NS);
                let at = if live && read_s > l.until_s { known_until.map_or(read_s, |u| read_s.min(u)).max(l.until_s) } else { l.until_s };
                ("release", at, None, Some(at))
            }
            LeaseKind::Expired => ("expire", l.until_s, None, Some(l.until_s)),
            LeaseKind::Declined => ("conflict", l.from_s, Some(l.from_s), None),
        };
        // A release, expiry or decline of an unknown client still closes
        // whoever held the address (device.id is optional there).
        let who = if l.hwaddr.is_some() || l.hostname.is_some() { self.device_for(l.hwaddr.as_deref(), None) } else { None };
        if who.is_none() && action == "assign" {
            return Vec::new();
        }
        let (device, identity) = match who {
            Some((d, i)) => (Some(d), Some(i)),
            None => (None, None),
        };
        let context = self.cfg.kea_context.clone();
        let out = line(Binding {
            action,
            ip: IpAddr::V4(l.address),
            prefix_len: None,
            context: &context,
            network_kind: "dhcp",
            confidence: "dhcp",
            event_ns: event_s * NS,
            observed_ns: read_ns,
            from_ns: from_s.map(|s| s * NS),
            until_ns: until_s.map(|s| s * NS),
            source_kind: "dhcp",
            vendor: Some("kea".into()),
            source_event_id: l.subnet_id.map(|s| format!("subnet-{s}")),
            device,
            identity,
        });
        self.stats.bindings_written += 1;
        vec![out]
    }
}

/// Parse `ADDR[/LEN]` into a client range.
pub fn parse_client_net(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = a.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match l {
        Some(l) => l.trim().parse::<u8>().ok().filter(|&l| l <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// The unspecified IPv4 address (for callers that need a placeholder peer).
pub const NO_PEER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{BindingAction, EventBody, FeedReader};

    #[test]
    fn bindings_rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-08-21T08:02:11Z = 1787299331 s (date -u -d @1787299331).
        assert_eq!(rfc3339(1_787_299_331 * NS + 5), "2026-08-21T08:02:11.000000005Z");
        assert_eq!(rfc3339(951_782_400 * NS), "2000-02-29T00:00:00.000000000Z");
    }

    fn attr(t: u8, v: &[u8]) -> Vec<u8> {
        let mut a = vec![t, (v.len() + 2) as u8];
        a.extend_from_slice(v);
        a
    }

    fn request(id: u8, attrs: &[u8], secret: &[u8]) -> Vec<u8> {
        let auth = radius::request_authenticator(id, attrs, secret).unwrap();
        let mut p = vec![4, id];
        p.extend_from_slice(&((20 + attrs.len()) as u16).to_be_bytes());
        p.extend_from_slice(&auth);
        p.extend_from_slice(attrs);
        p
    }

    /// RADIUS Start and Stop → feed lines the feed reader accepts, with the
    /// inventory's device id, the NAS as vendor and the MAC as identity.
    #[test]
    fn bindings_radius_to_feed_lines() {
        let inv = Inventory::from_csv(b"device_id,mac\nenterprises/x/devices/7,02:00:00:00:00:07\n", &Default::default());
        let cfg = BindingsConfig {
            radius_clients: vec![RadiusClient {
                net: "192.0.2.0".parse().unwrap(),
                prefix_len: 24,
                secret: b"k".to_vec(),
                context: "wifi".into(),
            }],
            ..Default::default()
        };
        let mut b = Bindings::new(cfg, inv);
        let mut attrs = attr(40, &1u32.to_be_bytes());
        attrs.extend(attr(8, &[10, 1, 2, 3]));
        attrs.extend(attr(31, b"02-00-00-00-00-07"));
        attrs.extend(attr(32, b"wlc-a"));
        attrs.extend(attr(55, &1_787_299_331u32.to_be_bytes()));
        let o = b.radius_datagram(&request(9, &attrs, b"k"), "192.0.2.10".parse().unwrap(), 1_787_299_335 * NS);
        assert!(o.response.is_some());
        assert_eq!(o.lines.len(), 1);
        let mut rd = FeedReader::new(8);
        let ev = rd.push_line(&o.lines[0], 1).expect("a valid feed line");
        assert_eq!(ev.device_id.as_deref(), Some("enterprises/x/devices/7"));
        assert_eq!(ev.event_time_ns, 1_787_299_331 * NS);
        assert_eq!(ev.source.as_ref().and_then(|s| s.vendor.as_deref()), Some("wlc-a"));
        let EventBody::IpBinding(ib) = &ev.body else { panic!("not a binding") };
        assert_eq!((ib.action, ib.ip), (BindingAction::Assign, "10.1.2.3".parse().unwrap()));
        assert_eq!(ib.network.context, "wifi");
        assert_eq!(ib.identity.as_ref().map(|i| (i.kind.as_str(), i.value.as_str())), Some(("mac", "02:00:00:00:00:07")));
        // From an address outside the allowed range: dropped, no answer.
        let o = b.radius_datagram(&request(9, &attrs, b"k"), "198.51.100.1".parse().unwrap(), 0);
        assert_eq!(o, RadiusOutcome::default());
        // Wrong secret: dropped, counted.
        let o = b.radius_datagram(&request(9, &attrs, b"x"), "192.0.2.10".parse().unwrap(), 0);
        assert_eq!(o, RadiusOutcome::default());
        // Accounting-On from the same NAS (it restarted): the session it
        // had is released at the restart's time.
        let mut on = attr(40, &7u32.to_be_bytes());
        on.extend(attr(32, b"wlc-a"));
        on.extend(attr(55, &1_787_300_000u32.to_be_bytes()));
        let o = b.radius_datagram(&request(10, &on, b"k"), "192.0.2.10".parse().unwrap(), 0);
        assert!(o.response.is_some());
        assert_eq!(o.lines.len(), 1);
        let ev = rd.push_line(&o.lines[0], 2).expect("a valid feed line");
        let EventBody::IpBinding(ib) = &ev.body else { panic!("not a binding") };
        assert_eq!((ib.action, ib.ip, ib.valid_until_ns), (BindingAction::Release, "10.1.2.3".parse().unwrap(), Some(1_787_300_000 * NS)));
        assert_eq!(ev.device_id.as_deref(), Some("enterprises/x/devices/7"));
        // A second restart has nothing left to release.
        let o = b.radius_datagram(&request(11, &on, b"k"), "192.0.2.10".parse().unwrap(), 0);
        assert!(o.lines.is_empty());
        assert_eq!(b.stats().radius_nas_restarts, 2);
        let s = b.stats();
        assert_eq!(
            (s.radius_packets, s.radius_accepted, s.radius_unknown_client, s.radius_bad_authenticator, s.inventory_hits),
            (5, 3, 1, 1, 1)
        );
    }

    #[test]
    fn bindings_kea_lines() {
        let mut b = Bindings::new(BindingsConfig::default(), Inventory::default());
        b.kea_new_file();
        assert!(b
            .kea_line("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context", 0, false)
            .is_empty());
        let l = b.kea_line("192.0.2.50,02:00:00:00:00:09,,4000,1787004000,1,0,0,,0,", 0, false);
        let mut rd = FeedReader::new(8);
        let ev = rd.push_line(&l[0], 1).expect("valid");
        assert_eq!(ev.device_id.as_deref(), Some("mac:02:00:00:00:00:09"));
        let EventBody::IpBinding(ib) = &ev.body else { panic!() };
        assert_eq!((ib.valid_from_ns, ib.valid_until_ns), (Some(1_787_000_000 * NS), Some(1_787_004_000 * NS)));
        // A release read live 30 s after the last renewal is placed when read;
        // read back from history, at the last renewal (all Kea wrote).
        let l = b.kea_line("192.0.2.50,02:00:00:00:00:09,,0,1787001000,1,0,0,,0,", 1_787_001_030 * NS, true);
        let ev = rd.push_line(&l[0], 2).expect("valid");
        let EventBody::IpBinding(ib) = &ev.body else { panic!() };
        assert_eq!((ib.action, ib.valid_until_ns), (BindingAction::Release, Some(1_787_001_030 * NS)));
        b.kea_line("192.0.2.50,02:00:00:00:00:09,,4000,1787004000,1,0,0,,0,", 0, false);
        let l = b.kea_line("192.0.2.50,02:00:00:00:00:09,,0,1787001000,1,0,0,,0,", 1_787_001_030 * NS, false);
        let ev = rd.push_line(&l[0], 3).expect("valid");
        let EventBody::IpBinding(ib) = &ev.body else { panic!() };
        assert_eq!(ib.valid_until_ns, Some(1_787_001_000 * NS));
        // The flush of a reclaimed lease is its expiry at the lease's end.
        b.kea_line("192.0.2.50,02:00:00:00:00:09,,4000,1787004000,1,0,0,,0,", 0, false);
        let l = b.kea_line("192.0.2.50,02:00:00:00:00:09,,0,1787000000,1,0,0,,2,", 0, false);
        let ev = rd.push_line(&l[0], 4).expect("valid");
        let EventBody::IpBinding(ib) = &ev.body else { panic!() };
        assert_eq!((ib.action, ib.valid_until_ns), (BindingAction::Expire, Some(1_787_004_000 * NS)));
        assert_eq!(b.stats().inventory_misses, 6);
    }

    #[test]
    fn bindings_client_ranges() {
        let c = |s: &str| {
            let (net, prefix_len) = parse_client_net(s).unwrap();
            RadiusClient { net, prefix_len, secret: vec![], context: String::new() }
        };
        assert!(c("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("10.0.0.5").contains("::ffff:10.0.0.5".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!c("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(parse_client_net("10.0.0.0/33").is_none());
    }
}
