//! Per-session app attribution from a device's feed events.
//!
//! Evidence, strongest first (its [`Strength`]):
//! 1. `exact`: a `net_connect` to the destination IP and port, or an
//!    `app_tls_trust` event carrying both, within a tight window of the
//!    session start ([`AttributionConfig::exact_window_ns`] once the event's
//!    source has a clock offset estimate, [`AttributionConfig::skew_ns`]
//!    before);
//! 2. `dns`: a `dns_lookup` of the SNI, or resolving to the destination IP,
//!    within the DNS window before the session (plus the skew after it);
//! 3. `host`: an `app_tls_trust` event for the SNI (or the destination IP
//!    without a port) within the skew tolerance: it says which app trusted a
//!    certificate for that *name*, not which one opened this connection;
//! 4. `endpoint`: an inventoried app whose `expected_endpoints` or NSC
//!    pin-set domains match the SNI (an exact name before a wildcard);
//! 5. `candidate`: otherwise, the apps known on the device (one: chosen;
//!    several: none chosen, all listed).
//!
//! A stronger level always wins; within a level the event nearest in time
//! wins (then the earlier index). Event times are corrected by the clock
//! offset of the source that stamped them ([`crate::clock`]) when one is
//! known. The best evidence of another app is kept as the runner-up, and the
//! reason the chosen app beat it is reported ([`Reason`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::clock::{is_exact, ClockOffsets};
use crate::feed::{AppStateKind, Event, EventBody, InventoryApp};

/// Tolerances, all in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionConfig {
    /// |event_time − session start| allowed for hostname-level trust
    /// events, and for exact events whose source has no clock offset
    /// estimate yet (device clock skew plus logging delay).
    pub skew_ns: i64,
    /// |corrected event_time − session start| allowed for exact events
    /// (destination IP and port) whose source's clock offset is estimated.
    pub exact_window_ns: i64,
    /// How long before the session a DNS lookup still counts.
    pub dns_window_ns: i64,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self { skew_ns: 5 * 1_000_000_000, exact_window_ns: 2 * 1_000_000_000, dns_window_ns: 300 * 1_000_000_000 }
    }
}

/// The session to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionQuery<'a> {
    /// Device the session was mapped to (e.g. by [`crate::LeaseMap`]).
    pub device_id: &'a str,
    /// Server IP of the session.
    pub dst_ip: IpAddr,
    /// Server port of the session.
    pub dst_port: u16,
    /// Server name from the ClientHello, if any.
    pub sni: Option<&'a str>,
    /// Session start on the packet clock, ns since the Unix epoch.
    pub session_start_ns: i64,
}

/// Which kind of feed record the package came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// A `net_connect` event (level `exact`).
    NetConnect,
    /// A `dns_lookup` event (level `dns`).
    DnsLookup,
    /// An `app_tls_trust` event (level `exact` with destination IP and port, else `host`).
    RuntimeTrustEvent,
    /// An `app_inventory` snapshot whose expected endpoints or pin-set domains match the SNI.
    ExpectedEndpoint,
    /// No evidence: the apps known on the device.
    Candidate,
}

impl Method {
    /// Name written in the record (`mobile.app.attribution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::RuntimeTrustEvent => "runtime_trust_event",
            Method::NetConnect => "net_connect",
            Method::DnsLookup => "dns_lookup",
            Method::ExpectedEndpoint => "expected_endpoint",
            Method::Candidate => "candidate",
        }
    }
}

/// How strong the evidence is; ordered strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Same device, destination IP and port, within the tight window.
    Exact,
    /// A DNS answer for the SNI or resolving to the destination IP.
    Dns,
    /// A trust event for the server name only.
    Host,
    /// The app's expected endpoints or pin-set domains.
    Endpoint,
    /// The app is known on the device, nothing more.
    Candidate,
}

impl Strength {
    /// Name written in the record (`mobile.app.attribution_evidence`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Exact => "exact",
            Strength::Dns => "dns",
            Strength::Host => "host",
            Strength::Endpoint => "endpoint",
            Strength::Candidate => "candidate",
        }
    }
}

/// Why the chosen app was chosen (over the runner-up, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No other app has any evidence for the session.
    SoleEvidence,
    /// The runner-up's best evidence is of a weaker level.
    StrongerEvidence,
    /// Same level; the chosen app's event is nearer the session start.
    NearerInTime,
    /// Both match by expected endpoint; the chosen one by exact name.
    MoreSpecificEndpoint,
    /// Same level and distance: the first in feed order was taken.
    EqualEvidenceFirstInFeed,
    /// No evidence, but only one app is known on the device.
    OnlyAppOnDevice,
    /// No app chosen: several fit equally (listed in `candidates`).
    Ambiguous,
    /// No app is known on the device.
    NoAppKnown,
}

impl Reason {
    /// Name written in the record (`mobile.app.attribution_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SoleEvidence => "sole_evidence",
            Reason::StrongerEvidence => "stronger_evidence",
            Reason::NearerInTime => "nearer_in_time",
            Reason::MoreSpecificEndpoint => "more_specific_endpoint",
            Reason::EqualEvidenceFirstInFeed => "equal_evidence_first_in_feed",
            Reason::OnlyAppOnDevice => "only_app_on_device",
            Reason::Ambiguous => "ambiguous",
            Reason::NoAppKnown => "no_app_known",
        }
    }
}

/// The best evidence of an app other than the chosen one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerUp {
    /// The other app's package.
    pub package: String,
    /// Kind of record its best evidence came from.
    pub method: Method,
    /// Level of its best evidence.
    pub strength: Strength,
    /// Corrected event time − session start, in ms (events only).
    pub skew_ms: Option<i64>,
    /// Index of its supporting event (into the slice passed to [`attribute`]), for time-based evidence only.
    pub event_index: Option<usize>,
}

/// Device context at the session time (latest `device_state` at or before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceContext {
    /// `device_locked` of that `device_state`, as sent.
    pub device_locked: Option<bool>,
    /// `screen_interactive` of that `device_state`, as sent.
    pub screen_interactive: Option<bool>,
    /// Whole seconds from the last user interaction to the session start.
    pub secs_since_interaction: Option<i64>,
    /// Index of that `device_state` event (into the slice passed to [`attribute`]); `None` when there is none.
    pub event_index: Option<usize>,
}

/// Attribution result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The chosen app; `None` when several fit equally (`ambiguous`) or
    /// no app is known on the device.
    pub package: Option<String>,
    /// Kind of record the evidence came from.
    pub method: Method,
    /// Level of the evidence.
    pub strength: Strength,
    /// Why this app (or none) was chosen.
    pub reason: Reason,
    /// Corrected event_time − session start of the supporting event, in ms.
    pub skew_ms: Option<i64>,
    /// The clock offset (ms) of the supporting event's source that was
    /// taken off its event time, when one was estimated.
    pub clock_offset_ms: Option<i64>,
    /// Index (into the slice passed to [`attribute`]) of the supporting event.
    pub event_index: Option<usize>,
    /// Packages that fit equally well at the chosen level (sorted); for
    /// `candidate`, all apps known on the device.
    pub candidates: Vec<String>,
    /// The best evidence of another app (levels `exact` to `endpoint`).
    pub runner_up: Option<RunnerUp>,
    /// State of the chosen app at the session time.
    pub app_state: Option<AppStateKind>,
    /// Device state at the session time.
    pub device: DeviceContext,
}

fn norm_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// `pattern` is a host, or `*.domain` matching strict subdomains.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let p = norm_host(pattern);
    match p.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => p == host,
    }
}

/// Score of an inventory entry against the SNI: 2 exact, 1 wildcard/subdomain.
fn endpoint_score(app: &InventoryApp, sni: &str) -> u8 {
    let mut best = 0;
    for e in &app.expected_endpoints {
        if host_matches(e, sni) {
            best = best.max(if e.starts_with("*.") { 1 } else { 2 });
        }
    }
    for ps in &app.trust_profile.pin_sets {
        for d in &ps.domains {
            let d = norm_host(d);
            if d == sni {
                best = best.max(2);
            } else if ps.include_subdomains && sni.ends_with(&format!(".{d}")) {
                best = best.max(1);
            }
        }
    }
    best
}

/// One piece of evidence for a package; ordered best first by
/// `(strength, distance, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Scored {
    strength: Strength,
    /// |corrected skew| in ns for events; 2 − score for endpoints.
    distance: u64,
    index: usize,
    method: Method,
    /// Corrected skew (ns) for events.
    skew_ns: Option<i64>,
}

/// Attribute a session to an app using `events` (any order; events whose
/// `device.id` differs from the query's are ignored), without clock offsets.
pub fn attribute(events: &[Event], q: &SessionQuery<'_>, cfg: &AttributionConfig) -> Attribution {
    attribute_with(events, q, cfg, None)
}

/// [`attribute`], with event times corrected by the estimated clock offset
/// of each event's source. Evidence is gathered per package (feed events,
/// then inventory endpoints), the best of each package is ranked, and the
/// app and device state at the session time are added.
pub fn attribute_with(events: &[Event], q: &SessionQuery<'_>, cfg: &AttributionConfig, clock: Option<&ClockOffsets>) -> Attribution {
    let cx = Ctx { events, q, cfg, clock, t: q.session_start_ns, sni: q.sni.map(norm_host) };
    let mut per_pkg: BTreeMap<&str, Scored> = BTreeMap::new();
    for (i, e) in cx.mine() {
        if let Some((pkg, s)) = cx.event_evidence(i, e) {
            consider(&mut per_pkg, pkg, s);
        }
    }
    let known = cx.inventory_evidence(&mut per_pkg);
    let mut ranked: Vec<(Scored, &str)> = per_pkg.iter().map(|(p, s)| (*s, *p)).collect();
    ranked.sort();
    let mut out = cx.choose(&ranked, known);
    cx.add_states(&mut out);
    out
}

/// Keep the better of two pieces of evidence for one package.
fn consider<'e>(per_pkg: &mut BTreeMap<&'e str, Scored>, pkg: &'e str, s: Scored) {
    let e = per_pkg.entry(pkg).or_insert(s);
    if s < *e {
        *e = s;
    }
}

fn ms(ns: i64) -> i64 {
    ns / 1_000_000
}

/// One attribution's inputs.
struct Ctx<'a> {
    events: &'a [Event],
    q: &'a SessionQuery<'a>,
    cfg: &'a AttributionConfig,
    clock: Option<&'a ClockOffsets>,
    /// The session's start (sensor clock).
    t: i64,
    sni: Option<String>,
}

impl<'a> Ctx<'a> {
    /// The query device's events, with their index in the feed.
    fn mine(&self) -> impl Iterator<Item = (usize, &'a Event)> + '_ {
        self.events.iter().enumerate().filter(|(_, e)| e.device_id.as_deref() == Some(self.q.device_id))
    }

    /// The estimated clock offset of the event's source, if known.
    fn offset(&self, e: &Event) -> Option<i64> {
        self.clock.and_then(|c| c.offset_ns(e))
    }

    /// Event time on the sensor's clock, as far as it is known.
    fn corrected(&self, e: &Event) -> i64 {
        e.event_time_ns.saturating_sub(self.offset(e).unwrap_or(0))
    }

    /// What one feed event says about which package made the session: an
    /// exact connect or trust event (device, destination IP and port, tight
    /// window), a host-level trust event, or a DNS answer.
    fn event_evidence(&self, i: usize, e: &'a Event) -> Option<(&'a str, Scored)> {
        if !matches!(e.body, EventBody::NetConnect(_) | EventBody::AppTlsTrust(_) | EventBody::DnsLookup(_)) {
            return None;
        }
        let (t, q, cfg) = (self.t, self.q, self.cfg);
        let ct = self.corrected(e);
        let dist = ct.abs_diff(t);
        let within = |w: i64| dist <= w.unsigned_abs();
        let exact_window = if self.offset(e).is_some() { cfg.exact_window_ns } else { cfg.skew_ns };
        let ev = |strength, method| Scored { strength, distance: dist, index: i, method, skew_ns: Some(ct.saturating_sub(t)) };
        let pkg = e.package()?;
        let scored = match &e.body {
            EventBody::NetConnect(_) if is_exact(e, q.dst_ip, q.dst_port) && within(exact_window) => {
                ev(Strength::Exact, Method::NetConnect)
            }
            EventBody::AppTlsTrust(_) if is_exact(e, q.dst_ip, q.dst_port) && within(exact_window) => {
                ev(Strength::Exact, Method::RuntimeTrustEvent)
            }
            EventBody::AppTlsTrust(x) if within(cfg.skew_ns) => {
                let ip_only = x.dst_ip == Some(q.dst_ip) && x.dst_port.is_none();
                let host_match = matches!((&x.host, &self.sni), (Some(h), Some(s)) if norm_host(h) == *s);
                // A trust event for another port of the same IP is about
                // another connection, whatever its host.
                let other_port = x.dst_ip == Some(q.dst_ip) && x.dst_port.is_some_and(|p| p != q.dst_port);
                if !(ip_only || host_match) || other_port {
                    return None;
                }
                ev(Strength::Host, Method::RuntimeTrustEvent)
            }
            EventBody::DnsLookup(x) => {
                let in_window = ct <= t.saturating_add(cfg.skew_ns) && ct >= t.saturating_sub(cfg.dns_window_ns);
                let name = self.sni.as_deref().is_some_and(|s| norm_host(&x.hostname) == s);
                if !(in_window && (name || x.resolved_ips.contains(&q.dst_ip))) {
                    return None;
                }
                ev(Strength::Dns, Method::DnsLookup)
            }
            _ => return None,
        };
        Some((pkg, scored))
    }

    /// Expected endpoints from each package's latest inventory snapshot (at
    /// or before the session if any, else the earliest after it). Returns
    /// every package the device's events name.
    fn inventory_evidence(&self, per_pkg: &mut BTreeMap<&'a str, Scored>) -> BTreeSet<String> {
        let t = self.t;
        let mut inventory: BTreeMap<&str, (usize, &Event, &InventoryApp)> = BTreeMap::new();
        let mut known: BTreeSet<String> = BTreeSet::new();
        // Snapshots at or before the session rank first (latest first), then
        // those after it (earliest first).
        let rank = |x: &Event| {
            let before = x.event_time_ns <= t;
            (before, if before { x.event_time_ns } else { x.event_time_ns.saturating_neg() })
        };
        for (i, e) in self.mine() {
            if let Some(p) = e.package() {
                known.insert(p.to_owned());
            }
            if let EventBody::AppInventory(inv) = &e.body {
                if inventory.get(inv.app.package.as_str()).is_none_or(|(_, old, _)| rank(e) > rank(old)) {
                    inventory.insert(&inv.app.package, (i, e, &inv.app));
                }
            }
        }
        if let Some(s) = &self.sni {
            for (p, (i, _, app)) in &inventory {
                let score = endpoint_score(app, s);
                if score > 0 {
                    let scored = Scored {
                        strength: Strength::Endpoint,
                        distance: u64::from(2 - score),
                        index: *i,
                        method: Method::ExpectedEndpoint,
                        skew_ns: None,
                    };
                    consider(per_pkg, p, scored);
                }
            }
        }
        known
    }

    /// The app the ranked evidence names, with the reason and the runner-up.
    fn choose(&self, ranked: &[(Scored, &str)], known: BTreeSet<String>) -> Attribution {
        match ranked.first().copied() {
            // Expected endpoints that fit equally well: no app chosen.
            Some((best, _))
                if best.strength == Strength::Endpoint
                    && ranked.get(1).is_some_and(|(s, _)| s.strength == Strength::Endpoint && s.distance == best.distance) =>
            {
                let tied = ranked.iter().take_while(|(s, _)| s.strength == best.strength && s.distance == best.distance);
                Attribution {
                    reason: Reason::Ambiguous,
                    candidates: tied.map(|(_, p)| (*p).to_owned()).collect(),
                    ..Attribution::none(Method::ExpectedEndpoint, Strength::Endpoint)
                }
            }
            Some((best, pkg)) => self.chosen(best, pkg, ranked.get(1)),
            None => {
                let candidates: Vec<String> = known.into_iter().collect();
                let reason = match candidates.len() {
                    0 => Reason::NoAppKnown,
                    1 => Reason::OnlyAppOnDevice,
                    _ => Reason::Ambiguous,
                };
                Attribution {
                    package: (candidates.len() == 1).then(|| candidates[0].clone()),
                    reason,
                    candidates,
                    ..Attribution::none(Method::Candidate, Strength::Candidate)
                }
            }
        }
    }

    /// The best-ranked package, and why it beat the runner-up.
    fn chosen(&self, best: Scored, pkg: &str, second: Option<&(Scored, &str)>) -> Attribution {
        let reason = match second {
            None => Reason::SoleEvidence,
            Some((s, _)) if s.strength != best.strength => Reason::StrongerEvidence,
            Some((s, _)) if s.distance != best.distance && best.strength == Strength::Endpoint => Reason::MoreSpecificEndpoint,
            Some((s, _)) if s.distance != best.distance => Reason::NearerInTime,
            Some(_) => Reason::EqualEvidenceFirstInFeed,
        };
        Attribution {
            package: Some(pkg.to_owned()),
            reason,
            skew_ms: best.skew_ns.map(ms),
            clock_offset_ms: best.skew_ns.and_then(|_| self.offset(&self.events[best.index])).map(ms),
            event_index: Some(best.index),
            candidates: vec![pkg.to_owned()],
            runner_up: second.map(|(s, p)| RunnerUp {
                package: (*p).to_owned(),
                method: s.method,
                strength: s.strength,
                skew_ms: s.skew_ns.map(ms),
                event_index: s.skew_ns.map(|_| s.index),
            }),
            ..Attribution::none(best.method, best.strength)
        }
    }

    /// App state of the chosen package and device state at the session time
    /// (on the sensor's clock, as far as the sources' offsets are known).
    fn add_states(&self, out: &mut Attribution) {
        let t = self.t;
        let mut app_state: Option<(i64, usize, AppStateKind)> = None;
        let mut dev_state: Option<(i64, usize)> = None;
        for (i, e) in self.mine() {
            if !matches!(e.body, EventBody::AppState(_) | EventBody::DeviceState(_)) {
                continue;
            }
            let ct = self.corrected(e);
            if ct > t {
                continue;
            }
            match &e.body {
                EventBody::AppState(s)
                    if out.package.as_deref() == Some(s.app.package.as_str()) && app_state.is_none_or(|(ts, j, _)| (ct, i) > (ts, j)) =>
                {
                    app_state = Some((ct, i, s.state));
                }
                EventBody::DeviceState(_) if dev_state.is_none_or(|(ts, j)| (ct, i) > (ts, j)) => {
                    dev_state = Some((ct, i));
                }
                _ => {}
            }
        }
        out.app_state = app_state.map(|x| x.2);
        if let Some((_, i)) = dev_state {
            if let EventBody::DeviceState(d) = &self.events[i].body {
                let off = self.offset(&self.events[i]).unwrap_or(0);
                out.device = DeviceContext {
                    device_locked: d.device_locked,
                    screen_interactive: d.screen_interactive,
                    secs_since_interaction: d.last_user_interaction_ns.map(|u| t.saturating_sub(u.saturating_sub(off)) / 1_000_000_000),
                    event_index: Some(i),
                };
            }
        }
    }
}

impl Attribution {
    /// No app, no event: the fields every attribution starts from.
    fn none(method: Method, strength: Strength) -> Self {
        Attribution {
            package: None,
            method,
            strength,
            reason: Reason::NoAppKnown,
            skew_ms: None,
            clock_offset_ms: None,
            event_index: None,
            candidates: Vec::new(),
            runner_up: None,
            app_state: None,
            device: DeviceContext::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::FeedReader;

    const T: &str = "2026-08-21T09:14:00Z";

    fn ev(ty: &str, time: &str, body: &str) -> Event {
        let l = format!(
            r#"{{"schema_version":1,"event_type":"{ty}","event_time":"{time}","observed_time":"2026-08-21T10:40:02Z","device":{{"id":"dev1"}},{body}}}"#
        );
        FeedReader::default().push_line(&l, 1).unwrap_or_else(|| panic!("bad test line {l}"))
    }

    fn q(sni: Option<&'static str>) -> SessionQuery<'static> {
        SessionQuery {
            device_id: "dev1",
            dst_ip: "203.0.113.5".parse().expect("ip"),
            dst_port: 443,
            sni,
            session_start_ns: crate::feed::parse_rfc3339_ns(T).expect("t"),
        }
    }

    fn inventory() -> Vec<Event> {
        vec![
            ev(
                "app_inventory",
                "2026-08-21T08:00:00Z",
                r#""app":{"package":"com.bank","expected_endpoints":["*.bankcdn.net"],"trust_profile":{"pin_sets":[{"domains":["api.bank.com"],"include_subdomains":true}]}}"#,
            ),
            ev("app_inventory", "2026-08-21T08:00:00Z", r#""app":{"package":"com.chat","expected_endpoints":["chat.example.org"]}"#),
        ]
    }

    #[test]
    fn priority_connect_over_dns_over_trust_over_endpoint() {
        let mut evs = inventory();
        evs.push(ev(
            "dns_lookup",
            "2026-08-21T09:13:00Z",
            r#""app":{"package":"com.dns"},"hostname":"api.bank.com","resolved_ips":["203.0.113.5"]"#,
        ));
        let a = attribute(&evs, &q(Some("API.bank.com.")), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.method, a.strength), (Some("com.dns"), Method::DnsLookup, Strength::Dns));
        assert_eq!(a.skew_ms, Some(-60_000));
        assert_eq!(a.event_index, Some(2));
        // The pin-set domain of com.bank is weaker evidence than the answer.
        assert_eq!(a.reason, Reason::StrongerEvidence);
        let r = a.runner_up.expect("runner-up");
        assert_eq!((r.package.as_str(), r.method, r.skew_ms), ("com.bank", Method::ExpectedEndpoint, None));

        // A hostname-level trust event is weaker than the DNS answer.
        evs.push(ev(
            "app_tls_trust",
            "2026-08-21T09:13:58Z",
            r#""app":{"package":"com.trust"},"trust_event":"pin_check_failed","host":"api.bank.com""#,
        ));
        let a = attribute(&evs, &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!(a.package.as_deref(), Some("com.dns"));
        let r = a.runner_up.expect("runner-up");
        assert_eq!(
            (r.package.as_str(), r.method, r.strength, r.skew_ms),
            ("com.trust", Method::RuntimeTrustEvent, Strength::Host, Some(-2000))
        );

        // An exact connect beats them all; another port is no evidence.
        evs.push(ev("net_connect", "2026-08-21T09:14:01.5Z", r#""app":{"package":"com.conn"},"dst_ip":"203.0.113.5","dst_port":443"#));
        evs.push(ev("net_connect", "2026-08-21T09:14:00.2Z", r#""app":{"package":"com.wrongport"},"dst_ip":"203.0.113.5","dst_port":80"#));
        let a = attribute(&evs, &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!(
            (a.package.as_deref(), a.method, a.strength, a.skew_ms),
            (Some("com.conn"), Method::NetConnect, Strength::Exact, Some(1500))
        );
        assert_eq!(a.reason.as_str(), "stronger_evidence");
        assert_eq!(a.runner_up.expect("runner-up").package, "com.dns");

        // A trust event carrying the destination IP and port is exact too,
        // and nearer in time than the connect.
        evs.push(ev(
            "app_tls_trust",
            "2026-08-21T09:14:00.3Z",
            r#""app":{"package":"com.trust2"},"trust_event":"pin_check_failed","dst_ip":"203.0.113.5","dst_port":443"#,
        ));
        let a = attribute(&evs, &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!(
            (a.package.as_deref(), a.method, a.strength, a.reason),
            (Some("com.trust2"), Method::RuntimeTrustEvent, Strength::Exact, Reason::NearerInTime)
        );
        assert_eq!(a.runner_up.expect("runner-up").package, "com.conn");
    }

    /// The issue's failure: another app's `app_tls_trust` for the same
    /// hostname 1.2 s after the SYN outranked the right app's exact
    /// `net_connect` 5 ms before it.
    #[test]
    fn exact_connect_beats_a_later_hostname_trust_event_of_another_app() {
        let evs = vec![
            ev(
                "app_tls_trust",
                "2026-08-21T09:14:01.2Z",
                r#""source":{"kind":"mtd"},"app":{"package":"com.other"},"trust_event":"pin_check_failed","host":"api.bank.com""#,
            ),
            ev(
                "net_connect",
                "2026-08-21T09:13:59.995Z",
                r#""source":{"kind":"dpm_network_log"},"app":{"package":"com.bank"},"dst_ip":"203.0.113.5","dst_port":443"#,
            ),
        ];
        let a = attribute(&evs, &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!(
            (a.package.as_deref(), a.method, a.skew_ms, a.reason),
            (Some("com.bank"), Method::NetConnect, Some(-5), Reason::StrongerEvidence)
        );
        assert_eq!(
            a.runner_up,
            Some(RunnerUp {
                package: "com.other".into(),
                method: Method::RuntimeTrustEvent,
                strength: Strength::Host,
                skew_ms: Some(1200),
                event_index: Some(0)
            })
        );
        // Alone, the trust event still names its app.
        let a = attribute(&evs[..1], &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.reason), (Some("com.other"), Reason::SoleEvidence));
    }

    /// Two apps reach the same destination within a second: the nearer
    /// connect wins, the other is the runner-up.
    #[test]
    fn nearer_connect_wins_between_two_apps() {
        let evs = vec![
            ev("net_connect", "2026-08-21T09:14:00.300Z", r#""app":{"package":"com.b"},"dst_ip":"203.0.113.5","dst_port":443"#),
            ev("net_connect", "2026-08-21T09:13:59.995Z", r#""app":{"package":"com.a"},"dst_ip":"203.0.113.5","dst_port":443"#),
        ];
        let a = attribute(&evs, &q(Some("api.bank.com")), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.reason), (Some("com.a"), Reason::NearerInTime));
        let r = a.runner_up.expect("runner-up");
        assert_eq!((r.package.as_str(), r.skew_ms), ("com.b", Some(300)));
        // Same distance: the first in feed order, and said so.
        let evs = vec![
            ev("net_connect", "2026-08-21T09:14:00.1Z", r#""app":{"package":"com.b"},"dst_ip":"203.0.113.5","dst_port":443"#),
            ev("net_connect", "2026-08-21T09:13:59.9Z", r#""app":{"package":"com.a"},"dst_ip":"203.0.113.5","dst_port":443"#),
        ];
        let a = attribute(&evs, &q(None), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.reason), (Some("com.b"), Reason::EqualEvidenceFirstInFeed));
    }

    /// A source whose clock runs 1.2 s ahead: uncorrected, app A's connect
    /// 75 ms before B's looks nearer to B's session; with the offset the
    /// sessions estimated, each session gets its own app, and the exact
    /// window tightens.
    #[test]
    fn clock_offset_is_estimated_and_applied() {
        use crate::clock::{ClockOffsets, SourceKey};
        let at = |s: &str| crate::feed::parse_rfc3339_ns(s).expect("t");
        let connect = |time: &str, pkg: &str| {
            ev(
                "net_connect",
                time,
                &format!(
                    r#""source":{{"kind":"dpm_network_log","vendor":"amapi"}},"app":{{"package":"{pkg}"}},"dst_ip":"203.0.113.5","dst_port":443"#
                ),
            )
        };
        // Sessions (packet clock) at :00.000 (A) and :00.075 (B); the
        // device logs them 1.2 s late, 5 ms before each SYN.
        let evs = vec![connect("2026-08-21T09:14:01.195Z", "com.a"), connect("2026-08-21T09:14:01.270Z", "com.b")];
        let sa = q(None);
        let sb = SessionQuery { session_start_ns: at("2026-08-21T09:14:00.075Z"), ..q(None) };
        let cfg = AttributionConfig::default();
        let b = attribute(&evs, &sb, &cfg);
        assert_eq!(b.package.as_deref(), Some("com.a"), "uncorrected, the wrong app is nearer");

        let mut clock = ClockOffsets::default();
        clock.observe(&evs, &sa);
        let key = SourceKey { device: "dev1".into(), kind: "dpm_network_log".into(), vendor: "amapi".into() };
        assert_eq!(clock.estimate(&key), None, "one session with two candidates says nothing yet");
        clock.observe(&evs, &sb);
        assert_eq!(clock.estimate(&key), Some((1_195_000_000, 2)), "both sessions agree on +1.195 s");
        for (s, want) in [(&sa, "com.a"), (&sb, "com.b")] {
            let a = attribute_with(&evs, s, &cfg, Some(&clock));
            assert_eq!(a.package.as_deref(), Some(want));
            assert_eq!((a.skew_ms, a.clock_offset_ms, a.reason), (Some(0), Some(1195), Reason::NearerInTime));
        }
        // Once the offset is known, the exact window is the tight one: a
        // connect 3 s off (corrected) is no longer evidence.
        let far = SessionQuery { session_start_ns: at("2026-08-21T09:14:03.2Z"), ..q(None) };
        assert_eq!(attribute_with(&evs, &far, &cfg, Some(&clock)).method, Method::Candidate);
        assert_eq!(attribute(&evs, &far, &cfg).method, Method::NetConnect);
        // Another source of the same device is not corrected.
        let other = ev(
            "net_connect",
            "2026-08-21T09:14:00.010Z",
            r#""source":{"kind":"agent"},"app":{"package":"com.c"},"dst_ip":"203.0.113.5","dst_port":443"#,
        );
        assert_eq!(clock.offset_ns(&other), None);
    }

    #[test]
    fn skew_tolerance_and_dns_window() {
        let evs = vec![
            ev("net_connect", "2026-08-21T09:14:10Z", r#""app":{"package":"late"},"dst_ip":"203.0.113.5","dst_port":443"#),
            ev("dns_lookup", "2026-08-21T09:00:00Z", r#""app":{"package":"old"},"hostname":"x.test","resolved_ips":["203.0.113.5"]"#),
            ev("dns_lookup", "2026-08-21T09:12:00Z", r#""app":{"package":"byip"},"hostname":"other.test","resolved_ips":["203.0.113.5"]"#),
        ];
        let a = attribute(&evs, &q(None), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.method), (Some("byip"), Method::DnsLookup));
        // The connect 10 s after the session is outside the skew; the
        // lookup 14 minutes before is outside the DNS window.
        assert_eq!(a.runner_up, None);
        let wide = AttributionConfig { skew_ns: 20_000_000_000, ..AttributionConfig::default() };
        let a = attribute(&evs, &q(None), &wide);
        assert_eq!((a.package.as_deref(), a.method), (Some("late"), Method::NetConnect));
    }

    #[test]
    fn expected_endpoint_and_candidates() {
        let evs = inventory();
        let a = attribute(&evs, &q(Some("eu.api.bank.com")), &AttributionConfig::default());
        assert_eq!((a.package.as_deref(), a.method), (Some("com.bank"), Method::ExpectedEndpoint));
        let a = attribute(&evs, &q(Some("img.bankcdn.net")), &AttributionConfig::default());
        assert_eq!(a.package.as_deref(), Some("com.bank"));
        let a = attribute(&evs, &q(Some("bankcdn.net")), &AttributionConfig::default());
        assert_eq!(a.method, Method::Candidate);
        assert_eq!(a.package, None);
        assert_eq!(a.candidates, vec!["com.bank".to_owned(), "com.chat".to_owned()]);
        // other devices' events are ignored
        let mut other = ev("net_connect", T, r#""app":{"package":"x"},"dst_ip":"203.0.113.5","dst_port":443"#);
        other.device_id = Some("dev2".into());
        let a = attribute(&[other], &q(None), &AttributionConfig::default());
        assert_eq!((a.method, a.candidates.len()), (Method::Candidate, 0));
    }

    #[test]
    fn app_and_device_state_out_of_order() {
        let evs = vec![
            ev("app_state", "2026-08-21T09:15:00Z", r#""app":{"package":"com.conn"},"state":"foreground""#),
            ev(
                "device_state",
                "2026-08-21T09:13:00Z",
                r#""screen_interactive":false,"device_locked":true,"last_user_interaction_time":"2026-08-21T09:04:00Z""#,
            ),
            ev("net_connect", T, r#""app":{"package":"com.conn"},"dst_ip":"203.0.113.5","dst_port":443"#),
            ev("app_state", "2026-08-21T09:10:00Z", r#""app":{"package":"com.conn"},"state":"background""#),
            ev("app_state", "2026-08-21T09:05:00Z", r#""app":{"package":"com.conn"},"state":"foreground""#),
            ev("device_state", "2026-08-21T09:20:00Z", r#""device_locked":false"#),
        ];
        let a = attribute(&evs, &q(None), &AttributionConfig::default());
        assert_eq!(a.package.as_deref(), Some("com.conn"));
        assert_eq!(a.app_state, Some(AppStateKind::Background));
        assert_eq!(a.device.device_locked, Some(true));
        assert_eq!(a.device.screen_interactive, Some(false));
        assert_eq!(a.device.secs_since_interaction, Some(600));
        assert_eq!(a.device.event_index, Some(1));
    }
}
