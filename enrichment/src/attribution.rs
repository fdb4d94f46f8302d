//! Per-session app attribution from a device's feed events.
//!
//! Evidence, best first:
//! 1. `runtime_trust_event`: an `app_tls_trust` event for the destination
//!    (dst ip and port, or host == SNI) within the skew tolerance;
//! 2. `net_connect`: a connect to the dst ip/port within the skew tolerance;
//! 3. `dns_lookup`: a lookup of the SNI, or resolving to the dst ip, within
//!    the DNS window before the session (plus the skew after it);
//! 4. `expected_endpoint`: an inventoried app whose `expected_endpoints` or
//!    NSC pin-set domains match the SNI;
//! 5. `candidate`: otherwise, the apps known on the device.
//!
//! Within a level the event closest in time wins (ties: the earlier index).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::feed::{AppStateKind, Event, EventBody, InventoryApp};

/// Tolerances, all in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionConfig {
    /// |event_time − session start| allowed for trust and connect events
    /// (device clock skew plus logging delay).
    pub skew_ns: i64,
    /// How long before the session a DNS lookup still counts.
    pub dns_window_ns: i64,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            skew_ns: 5 * 1_000_000_000,
            dns_window_ns: 300 * 1_000_000_000,
        }
    }
}

/// The session to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionQuery<'a> {
    /// Device the session was mapped to (e.g. by [`crate::LeaseMap`]).
    pub device_id: &'a str,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub sni: Option<&'a str>,
    pub session_start_ns: i64,
}

/// How the package was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    RuntimeTrustEvent,
    NetConnect,
    DnsLookup,
    ExpectedEndpoint,
    Candidate,
}

impl Method {
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

/// Device context at the session time (latest `device_state` at or before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceContext {
    pub device_locked: Option<bool>,
    pub screen_interactive: Option<bool>,
    /// Whole seconds from the last user interaction to the session start.
    pub secs_since_interaction: Option<i64>,
    pub event_index: Option<usize>,
}

/// Attribution result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The chosen app; `None` when only an ambiguous candidate set is known.
    pub package: Option<String>,
    pub method: Method,
    /// event_time − session start of the supporting event, in ms.
    pub skew_ms: Option<i64>,
    /// Index (into the slice passed to [`attribute`]) of the supporting event.
    pub event_index: Option<usize>,
    /// Packages that fit equally well at the chosen level (sorted); for
    /// `candidate`, all apps known on the device.
    pub candidates: Vec<String>,
    /// State of the chosen app at the session time.
    pub app_state: Option<AppStateKind>,
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

/// Attribute a session to an app using `events` (any order; events whose
/// `device.id` differs from the query's are ignored).
pub fn attribute(events: &[Event], q: &SessionQuery<'_>, cfg: &AttributionConfig) -> Attribution {
    let t = q.session_start_ns;
    let sni = q.sni.map(norm_host);
    let mine = || {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.device_id.as_deref() == Some(q.device_id))
    };
    let within = |e: &Event| e.event_time_ns.abs_diff(t) <= cfg.skew_ns.unsigned_abs();

    // (level, |skew|, index) — lower is better.
    let mut best: Option<(Method, u64, usize)> = None;
    let mut consider = |m: Method, i: usize, e: &Event| {
        let cand = (m, e.event_time_ns.abs_diff(t), i);
        if best.is_none_or(|b| cand < b) {
            best = Some(cand);
        }
    };
    for (i, e) in mine() {
        match &e.body {
            EventBody::AppTlsTrust(x) if within(e) => {
                let ip_match =
                    x.dst_ip == Some(q.dst_ip) && x.dst_port.is_none_or(|p| p == q.dst_port);
                let host_match =
                    matches!((&x.host, &sni), (Some(h), Some(s)) if norm_host(h) == *s);
                if ip_match || host_match {
                    consider(Method::RuntimeTrustEvent, i, e);
                }
            }
            EventBody::NetConnect(x)
                if within(e) && x.dst_ip == q.dst_ip && x.dst_port == q.dst_port =>
            {
                consider(Method::NetConnect, i, e);
            }
            EventBody::DnsLookup(x) => {
                let in_window = e.event_time_ns <= t.saturating_add(cfg.skew_ns)
                    && e.event_time_ns >= t.saturating_sub(cfg.dns_window_ns);
                let name = sni.as_deref().is_some_and(|s| norm_host(&x.hostname) == s);
                if in_window && (name || x.resolved_ips.contains(&q.dst_ip)) {
                    consider(Method::DnsLookup, i, e);
                }
            }
            _ => {}
        }
    }

    // Latest inventory snapshot per package (at or before the session if any).
    let mut inventory: BTreeMap<&str, (usize, &Event, &InventoryApp)> = BTreeMap::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for (i, e) in mine() {
        if let Some(p) = e.package() {
            known.insert(p.to_owned());
        }
        if let EventBody::AppInventory(inv) = &e.body {
            let replace = match inventory.get(inv.app.package.as_str()) {
                None => true,
                Some((_, old, _)) => {
                    // Prefer snapshots at or before the session (latest
                    // first), else the earliest one after it.
                    let rank = |x: &Event| {
                        let before = x.event_time_ns <= t;
                        (
                            before,
                            if before {
                                x.event_time_ns
                            } else {
                                x.event_time_ns.saturating_neg()
                            },
                        )
                    };
                    rank(e) > rank(old)
                }
            };
            if replace {
                inventory.insert(&inv.app.package, (i, e, &inv.app));
            }
        }
    }

    let mut out = match best {
        Some((method, _, i)) => {
            let e = &events[i];
            let pkg = e.package().map(str::to_owned);
            Attribution {
                candidates: pkg.iter().cloned().collect(),
                package: pkg,
                method,
                skew_ms: Some((e.event_time_ns.saturating_sub(t)) / 1_000_000),
                event_index: Some(i),
                app_state: None,
                device: DeviceContext::default(),
            }
        }
        None => {
            let scored: Vec<(u8, usize, &str)> = match &sni {
                Some(s) => inventory
                    .iter()
                    .map(|(p, (i, _, app))| (endpoint_score(app, s), *i, *p))
                    .filter(|(sc, _, _)| *sc > 0)
                    .collect(),
                None => Vec::new(),
            };
            let top = scored.iter().map(|x| x.0).max().unwrap_or(0);
            let tops: Vec<&(u8, usize, &str)> = scored.iter().filter(|x| x.0 == top).collect();
            if !tops.is_empty() {
                let unique = tops.len() == 1;
                Attribution {
                    package: unique.then(|| tops[0].2.to_owned()),
                    method: Method::ExpectedEndpoint,
                    skew_ms: None,
                    event_index: unique.then_some(tops[0].1),
                    candidates: tops.iter().map(|x| x.2.to_owned()).collect(),
                    app_state: None,
                    device: DeviceContext::default(),
                }
            } else {
                let candidates: Vec<String> = known.into_iter().collect();
                Attribution {
                    package: (candidates.len() == 1).then(|| candidates[0].clone()),
                    method: Method::Candidate,
                    skew_ms: None,
                    event_index: None,
                    candidates,
                    app_state: None,
                    device: DeviceContext::default(),
                }
            }
        }
    };

    // App state of the chosen package and device state at the session time.
    let mut app_state: Option<(i64, usize, AppStateKind)> = None;
    let mut dev_state: Option<(i64, usize)> = None;
    for (i, e) in mine().filter(|(_, e)| e.event_time_ns <= t) {
        match &e.body {
            EventBody::AppState(s)
                if out.package.as_deref() == Some(s.app.package.as_str())
                    && app_state.is_none_or(|(ts, j, _)| (e.event_time_ns, i) > (ts, j)) =>
            {
                app_state = Some((e.event_time_ns, i, s.state));
            }
            EventBody::DeviceState(_)
                if dev_state.is_none_or(|(ts, j)| (e.event_time_ns, i) > (ts, j)) =>
            {
                dev_state = Some((e.event_time_ns, i));
            }
            _ => {}
        }
    }
    out.app_state = app_state.map(|x| x.2);
    if let Some((_, i)) = dev_state {
        if let EventBody::DeviceState(d) = &events[i].body {
            out.device = DeviceContext {
                device_locked: d.device_locked,
                screen_interactive: d.screen_interactive,
                secs_since_interaction: d
                    .last_user_interaction_ns
                    .map(|u| t.saturating_sub(u) / 1_000_000_000),
                event_index: Some(i),
            };
        }
    }
    out
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
        FeedReader::default()
            .push_line(&l, 1)
            .unwrap_or_else(|| panic!("bad test line {l}"))
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
            ev(
                "app_inventory",
                "2026-08-21T08:00:00Z",
                r#""app":{"package":"com.chat","expected_endpoints":["chat.example.org"]}"#,
            ),
        ]
    }

    #[test]
    fn priority_trust_over_connect_over_dns_over_endpoint() {
        let mut evs = inventory();
        evs.push(ev("dns_lookup", "2026-08-21T09:13:00Z", r#""app":{"package":"com.dns"},"hostname":"api.bank.com","resolved_ips":["203.0.113.5"]"#));
        let a = attribute(
            &evs,
            &q(Some("API.bank.com.")),
            &AttributionConfig::default(),
        );
        assert_eq!(
            (a.package.as_deref(), a.method),
            (Some("com.dns"), Method::DnsLookup)
        );
        assert_eq!(a.skew_ms, Some(-60_000));
        assert_eq!(a.event_index, Some(2));

        evs.push(ev(
            "net_connect",
            "2026-08-21T09:14:01.5Z",
            r#""app":{"package":"com.conn"},"dst_ip":"203.0.113.5","dst_port":443"#,
        ));
        evs.push(ev(
            "net_connect",
            "2026-08-21T09:14:00.2Z",
            r#""app":{"package":"com.wrongport"},"dst_ip":"203.0.113.5","dst_port":80"#,
        ));
        let a = attribute(
            &evs,
            &q(Some("api.bank.com")),
            &AttributionConfig::default(),
        );
        assert_eq!(
            (a.package.as_deref(), a.method, a.skew_ms),
            (Some("com.conn"), Method::NetConnect, Some(1500))
        );

        evs.push(ev("app_tls_trust", "2026-08-21T09:13:58Z", r#""app":{"package":"com.trust"},"trust_event":"pin_check_failed","host":"api.bank.com""#));
        let a = attribute(
            &evs,
            &q(Some("api.bank.com")),
            &AttributionConfig::default(),
        );
        assert_eq!(
            (a.package.as_deref(), a.method, a.skew_ms),
            (Some("com.trust"), Method::RuntimeTrustEvent, Some(-2000))
        );
        assert_eq!(a.method.as_str(), "runtime_trust_event");
    }

    #[test]
    fn skew_tolerance_and_dns_window() {
        let evs = vec![
            ev(
                "net_connect",
                "2026-08-21T09:14:10Z",
                r#""app":{"package":"late"},"dst_ip":"203.0.113.5","dst_port":443"#,
            ),
            ev(
                "dns_lookup",
                "2026-08-21T09:00:00Z",
                r#""app":{"package":"old"},"hostname":"x.test","resolved_ips":["203.0.113.5"]"#,
            ),
            ev(
                "dns_lookup",
                "2026-08-21T09:12:00Z",
                r#""app":{"package":"byip"},"hostname":"other.test","resolved_ips":["203.0.113.5"]"#,
            ),
        ];
        let a = attribute(&evs, &q(None), &AttributionConfig::default());
        assert_eq!(
            (a.package.as_deref(), a.method),
            (Some("byip"), Method::DnsLookup)
        );
        let wide = AttributionConfig {
            skew_ns: 20_000_000_000,
            ..AttributionConfig::default()
        };
        let a = attribute(&evs, &q(None), &wide);
        assert_eq!(
            (a.package.as_deref(), a.method),
            (Some("late"), Method::NetConnect)
        );
    }

    #[test]
    fn expected_endpoint_and_candidates() {
        let evs = inventory();
        let a = attribute(
            &evs,
            &q(Some("eu.api.bank.com")),
            &AttributionConfig::default(),
        );
        assert_eq!(
            (a.package.as_deref(), a.method),
            (Some("com.bank"), Method::ExpectedEndpoint)
        );
        let a = attribute(
            &evs,
            &q(Some("img.bankcdn.net")),
            &AttributionConfig::default(),
        );
        assert_eq!(a.package.as_deref(), Some("com.bank"));
        let a = attribute(&evs, &q(Some("bankcdn.net")), &AttributionConfig::default());
        assert_eq!(a.method, Method::Candidate);
        assert_eq!(a.package, None);
        assert_eq!(
            a.candidates,
            vec!["com.bank".to_owned(), "com.chat".to_owned()]
        );
        // other devices' events are ignored
        let mut other = ev(
            "net_connect",
            T,
            r#""app":{"package":"x"},"dst_ip":"203.0.113.5","dst_port":443"#,
        );
        other.device_id = Some("dev2".into());
        let a = attribute(&[other], &q(None), &AttributionConfig::default());
        assert_eq!((a.method, a.candidates.len()), (Method::Candidate, 0));
    }

    #[test]
    fn app_and_device_state_out_of_order() {
        let evs = vec![
            ev(
                "app_state",
                "2026-08-21T09:15:00Z",
                r#""app":{"package":"com.conn"},"state":"foreground""#,
            ),
            ev(
                "device_state",
                "2026-08-21T09:13:00Z",
                r#""screen_interactive":false,"device_locked":true,"last_user_interaction_time":"2026-08-21T09:04:00Z""#,
            ),
            ev(
                "net_connect",
                T,
                r#""app":{"package":"com.conn"},"dst_ip":"203.0.113.5","dst_port":443"#,
            ),
            ev(
                "app_state",
                "2026-08-21T09:10:00Z",
                r#""app":{"package":"com.conn"},"state":"background""#,
            ),
            ev(
                "app_state",
                "2026-08-21T09:05:00Z",
                r#""app":{"package":"com.conn"},"state":"foreground""#,
            ),
            ev(
                "device_state",
                "2026-08-21T09:20:00Z",
                r#""device_locked":false"#,
            ),
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
