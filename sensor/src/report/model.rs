//! The report's figures, computed from EVE records: sessions, findings,
//! per-app / per-destination / per-device tables, coverage and the timeline.
//! Every figure is a count of records; docs/report.md defines each one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::baseline::Approvals;
use super::read::{parse_ts, ReadStats, Rec};

/// Most sessions kept (beyond it they are counted, not kept).
pub const MAX_SESSIONS: usize = 5_000_000;
/// Most alerts kept (beyond it they are counted, not kept).
pub const MAX_ALERTS: usize = 2_000_000;

/// Sessions whose app is unknown are grouped under this name.
pub const NO_APP: &str = "(no app attributed)";
/// Sessions without a device.
pub const NO_DEVICE: &str = "(no device)";

/// One TLS or QUIC session, as the report needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// `flow_id` of the record.
    pub flow_id: u64,
    /// Session start (`timestamp`), ns since the Unix epoch; 0 when unreadable.
    pub ts_ns: i64,
    /// A `quic` record (else `tls`).
    pub quic: bool,
    /// The client address (`src_ip`).
    pub client: String,
    /// `dest_ip`.
    pub dest_ip: String,
    /// `dest_port`.
    pub dest_port: u16,
    /// The server name (`tls.sni` or `quic.sni`).
    pub sni: Option<String>,
    /// `tls_failure.outcome`; `unknown` when absent.
    pub outcome: String,
    /// `tls_failure.kind`; empty when absent.
    pub kind: String,
    /// `tls_failure.class` (client rejections).
    pub class: Option<String>,
    /// `path.kind`; `unknown` when absent.
    pub path: String,
    /// `path.confidence`; empty when absent.
    pub path_confidence: String,
    /// `path.policy`.
    pub policy: Option<String>,
    /// `path.intercepted`.
    pub intercepted: Option<bool>,
    /// The path evidence names the client as not managed (`client_not_managed:IP`).
    pub client_not_managed: bool,
    /// `mobile.device_id`.
    pub device: Option<String>,
    /// The network: the binding's context, else the client's /24 (IPv4) or /64 (IPv6).
    pub network: String,
    /// `mobile.app.package`.
    pub app: Option<String>,
    /// Background, device locked, screen off or more than 60 s since the last
    /// interaction; `None` when the feed says nothing of the state.
    pub unattended: Option<bool>,
    /// `mobile.baseline.approved`, after the approvals file.
    pub baseline_approved: Option<bool>,
    /// The record has a `mobile` object (the run had a device feed).
    pub has_mobile: bool,
}

impl Session {
    /// The destination's name: the SNI, else the address.
    pub fn dest(&self) -> &str {
        self.sni.as_deref().filter(|s| !s.is_empty()).unwrap_or(&self.dest_ip)
    }
    /// The app's package, or [`NO_APP`].
    pub fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or(NO_APP)
    }
    /// The device id, or [`NO_DEVICE`].
    pub fn device_name(&self) -> &str {
        self.device.as_deref().unwrap_or(NO_DEVICE)
    }
    /// The client rejected the session (`client_rejected`).
    pub fn rejected(&self) -> bool {
        self.outcome == "client_rejected"
    }
}

/// Where a session stands relative to the inspection (docs/report.md, Coverage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cover {
    /// The inspector terminated it and the client went on.
    Inspected,
    /// The inspector terminated it and the client refused (no data sent).
    RefusedByClient,
    /// The inspector terminated it; the server refused, or the session did not finish.
    InspectedOther,
    /// Around the inspector: a direct path from a managed network.
    EscapedDirect,
    /// Not inspected by the bypass list.
    EscapedBypass,
    /// To a tunnel endpoint (VPN): the inspector sees only the tunnel.
    EscapedTunnel,
    /// Through the explicit proxy, which passed the TLS through untouched.
    EscapedPassthrough,
    /// The capture cannot tell the path.
    Unknown,
    /// Internal destination or unmanaged client: outside the figure.
    Excluded,
}

impl Cover {
    /// A session is in the figure's population when it is managed mobile
    /// TLS: with a `mobile` object (the run had a device feed), when the feed
    /// placed a device on the client address; without one, when the client is
    /// on a managed network (no `client_not_managed` path evidence).
    pub fn of(s: &Session) -> Cover {
        let managed = if s.has_mobile { s.device.is_some() } else { !s.client_not_managed };
        if !managed || s.path == "internal" {
            return Cover::Excluded;
        }
        match s.path.as_str() {
            "intercepted" | "explicit_proxy" if s.intercepted == Some(false) => Cover::EscapedPassthrough,
            "intercepted" | "explicit_proxy" => match s.outcome.as_str() {
                "established" => Cover::Inspected,
                "client_rejected" => Cover::RefusedByClient,
                _ => Cover::InspectedOther,
            },
            "direct" => Cover::EscapedDirect,
            "sanctioned_bypass" => Cover::EscapedBypass,
            "tunnel" => Cover::EscapedTunnel,
            _ => Cover::Unknown,
        }
    }
    /// Around the inspector: direct, bypass, tunnel or passed through.
    pub fn escaped(self) -> bool {
        matches!(self, Cover::EscapedDirect | Cover::EscapedBypass | Cover::EscapedTunnel | Cover::EscapedPassthrough)
    }
    /// Terminated by the inspector, whatever the client did.
    pub fn seen(self) -> bool {
        matches!(self, Cover::Inspected | Cover::RefusedByClient | Cover::InspectedOther)
    }
    /// The label the page shows.
    pub fn label(self) -> &'static str {
        match self {
            Cover::Inspected => "inspected (client went on)",
            Cover::RefusedByClient => "refused by the client under inspection",
            Cover::InspectedOther => "inspected, not finished",
            Cover::EscapedDirect => "escaped: direct, around the inspector",
            Cover::EscapedBypass => "escaped: bypass list",
            Cover::EscapedTunnel => "escaped: tunnel endpoint",
            Cover::EscapedPassthrough => "escaped: proxy passed it through",
            Cover::Unknown => "path unknown",
            Cover::Excluded => "outside (internal or unmanaged)",
        }
    }
    /// Every place, in the order the tables list them.
    pub const ALL: [Cover; 9] = [
        Cover::Inspected,
        Cover::RefusedByClient,
        Cover::InspectedOther,
        Cover::EscapedDirect,
        Cover::EscapedBypass,
        Cover::EscapedTunnel,
        Cover::EscapedPassthrough,
        Cover::Unknown,
        Cover::Excluded,
    ];
}

/// One finding (an `alert` record; AN1725 alerts folded to their highest revision).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `alert.signature_id`.
    pub signature_id: u64,
    /// `alert.signature`.
    pub signature: String,
    /// `alert.severity` (1 most severe; 3 when absent).
    pub severity: u8,
    /// The confidence: `an1725.confidence`, else `alert.metadata.confidence`.
    pub confidence: String,
    /// `flow_id` of the session that raised it.
    pub flow_id: u64,
    /// Time of the alert, ns since the Unix epoch.
    pub ts_ns: i64,
    /// The destination: the SNI, else `dest_ip`.
    pub dest: String,
    /// The client address (`src_ip`).
    pub client: String,
    /// `evidence.reasons`, with the AN1725 reasons added.
    pub reasons: Vec<String>,
    /// `evidence.flow_ids`: every session that makes the finding.
    pub flow_ids: Vec<u64>,
    /// `an1725.alert_id` (AN1725 alerts).
    pub alert_id: Option<String>,
    /// `an1725.revision`; 0 for other alerts.
    pub revision: u64,
    /// `an1725.count`: sessions folded into it; 1 for other alerts.
    pub count: u64,
    /// The app: the alert's `mobile.app.package`, else its session's.
    pub app: Option<String>,
    /// The device: the alert's `mobile.device_id`, else its session's.
    pub device: Option<String>,
}

/// Counts for one row of the per-app, per-destination or per-device table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// Sessions.
    pub sessions: u64,
    /// Client rejections per class (`A`-`E`; `?` when unclassified).
    pub class: BTreeMap<String, u64>,
    /// Sessions the client rejected (`client_rejected`).
    pub rejected: u64,
    /// Fallback findings (1725004).
    pub fallbacks: u64,
    /// Sessions on a `direct` path.
    pub direct: u64,
    /// Sessions on a `sanctioned_bypass` path.
    pub bypassed: u64,
    /// Sessions an opaque-session finding (1725003) names.
    pub opaque: u64,
    /// Sessions whose path is `unknown`.
    pub unknown_path: u64,
    /// Sessions outside the app's baseline (`mobile.baseline.approved` false, not approved in the
    /// approvals file).
    pub outside_baseline: u64,
    /// The destinations of those sessions.
    pub unapproved_dests: BTreeSet<String>,
    /// Sessions whose device or app was unattended.
    pub unattended: u64,
    /// Sessions whose attendance the feed told (the denominator of `unattended`).
    pub state_known: u64,
    /// Findings on this row.
    pub findings: u64,
    /// Apps seen ([`NO_APP`] for sessions without one).
    pub apps: BTreeSet<String>,
    /// Devices seen ([`NO_DEVICE`] for sessions without one).
    pub devices: BTreeSet<String>,
    /// Destinations seen.
    pub dests: BTreeSet<String>,
    /// Per-app table: the app's signing certificate digests from the feed inventories.
    pub certs: BTreeSet<String>,
    /// Sessions and rejections per time bucket (the trend).
    pub trend: Vec<(u64, u64)>,
}

/// Where the sessions stand relative to the inspection ([`Cover`]), overall, per network and per
/// time bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Sessions per place.
    pub counts: BTreeMap<Cover, u64>,
    /// Per network (feed context, else the client's /24 or /64).
    pub per_network: BTreeMap<String, BTreeMap<Cover, u64>>,
    /// Per time bucket.
    pub per_bucket: Vec<BTreeMap<Cover, u64>>,
    /// `stats.outcomes` summed over the stats records read.
    pub stats_outcomes: BTreeMap<String, u64>,
    /// Sessions whose verdict was withheld because the capture lost the deciding bytes
    /// (`capture_gap`).
    pub capture_gap_sessions: u64,
}

impl Coverage {
    /// Sessions in place `c`.
    pub fn get(&self, c: Cover) -> u64 {
        self.counts.get(&c).copied().unwrap_or(0)
    }
    /// Sessions in the figure's population: managed, not internal.
    pub fn population(&self) -> u64 {
        Cover::ALL.iter().filter(|c| **c != Cover::Excluded).map(|c| self.get(*c)).sum()
    }
    /// Sessions of the population whose path is known.
    pub fn known(&self) -> u64 {
        self.population() - self.get(Cover::Unknown)
    }
    /// Sessions that went around the inspector.
    pub fn escaped(&self) -> u64 {
        Cover::ALL.iter().filter(|c| c.escaped()).map(|c| self.get(*c)).sum()
    }
    /// Sessions the inspector terminated.
    pub fn seen(&self) -> u64 {
        Cover::ALL.iter().filter(|c| c.seen()).map(|c| self.get(*c)).sum()
    }
}

/// Share as a percentage string with one decimal (`—` for 0 of 0).
pub fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "—".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

/// Everything the report shows, computed from the records read.
#[derive(Debug, Default, Serialize)]
pub struct Model {
    /// What reading found (files, lines, bad lines, errors).
    pub read: ReadStats,
    /// The sessions, in time order (at most [`MAX_SESSIONS`]).
    pub sessions: Vec<Session>,
    /// The findings (AN1725 alerts folded to their highest revision).
    pub findings: Vec<Finding>,
    /// Session records of a `flow_id` already read, skipped.
    pub duplicates: u64,
    /// Sessions over [`MAX_SESSIONS`], counted and not kept.
    pub sessions_dropped: u64,
    /// Alerts over [`MAX_ALERTS`], counted and not kept.
    pub alerts_dropped: u64,
    /// Some session has a `mobile` object (the run had a device feed).
    pub have_feed: bool,
    /// Start of the first time bucket, ns since the Unix epoch.
    pub first_ns: i64,
    /// Time of the last session or finding, ns since the Unix epoch.
    pub last_ns: i64,
    /// Width of a time bucket, ns (a round width, about 24 buckets over the span).
    pub bucket_ns: i64,
    /// Number of time buckets (1 to 512).
    pub buckets: usize,
    /// Per-app table, by package ([`NO_APP`] for sessions without one).
    pub apps: BTreeMap<String, Row>,
    /// Per-destination table, by SNI (else address).
    pub dests: BTreeMap<String, Row>,
    /// Per-device table, by device id ([`NO_DEVICE`] for sessions without one).
    pub devices: BTreeMap<String, Row>,
    /// Coverage: where the sessions stand relative to the inspection.
    pub coverage: Coverage,
    /// Findings per bucket per signature id.
    pub timeline: Vec<BTreeMap<u64, u64>>,
    /// package → signing certificate digests, from `--feed` inventories.
    pub certs: BTreeMap<String, BTreeSet<String>>,
}

/// Collects records as they are read.
#[derive(Default)]
pub struct Builder {
    /// The model so far; [`Builder::finish`] completes it.
    pub model: Model,
    seen: HashMap<u64, ()>,
    alerts: Vec<(Rec, i64)>,
    stats_outcomes: BTreeMap<String, u64>,
}

impl Builder {
    /// Take one record: `tls` and `quic` records become sessions (the first per `flow_id`), alerts
    /// are kept for folding, `stats` records give their outcomes; others are ignored.
    pub fn add(&mut self, rec: Rec) {
        match rec.event_type.as_str() {
            "tls" | "quic" => self.add_session(rec),
            "alert" => {
                if self.alerts.len() >= MAX_ALERTS {
                    self.model.alerts_dropped += 1;
                } else {
                    let ts = parse_ts(&rec.timestamp).unwrap_or(0);
                    self.alerts.push((rec, ts));
                }
            }
            "stats" => {
                if let Some(o) = rec.stats.and_then(|s| s.outcomes) {
                    for (k, v) in o {
                        *self.stats_outcomes.entry(k).or_default() += v.as_u64().unwrap_or(0);
                    }
                }
            }
            _ => {}
        }
    }

    fn add_session(&mut self, rec: Rec) {
        let Some(flow_id) = rec.flow_id else { return };
        if self.seen.insert(flow_id, ()).is_some() {
            self.model.duplicates += 1;
            return;
        }
        if self.model.sessions.len() >= MAX_SESSIONS {
            self.model.sessions_dropped += 1;
            return;
        }
        let quic = rec.event_type == "quic";
        let sni = if quic { rec.quic.and_then(|q| q.sni) } else { rec.tls.and_then(|t| t.sni) };
        let f = rec.tls_failure.unwrap_or_default();
        let p = rec.path.unwrap_or_default();
        let client = rec.src_ip.unwrap_or_default();
        let has_mobile = rec.mobile.is_some();
        let m = rec.mobile.unwrap_or_default();
        let network = m.binding.as_ref().and_then(|b| b.context.clone()).unwrap_or_else(|| subnet_of(&client));
        let state_bits = [
            m.app_state.as_deref().map(|s| s == "background" || s == "stopped"),
            m.device_locked,
            m.screen_interactive.map(|x| !x),
            m.secs_since_user_interaction.map(|s| s > 60.0),
        ];
        let unattended = if state_bits.iter().all(Option::is_none) { None } else { Some(state_bits.contains(&Some(true))) };
        self.model.sessions.push(Session {
            flow_id,
            ts_ns: parse_ts(&rec.timestamp).unwrap_or(0),
            quic,
            dest_ip: rec.dest_ip.unwrap_or_default(),
            dest_port: rec.dest_port.unwrap_or(0),
            sni,
            outcome: f.outcome.unwrap_or_else(|| "unknown".into()),
            kind: f.kind.unwrap_or_default(),
            class: f.class,
            path: p.kind.unwrap_or_else(|| "unknown".into()),
            path_confidence: p.confidence.unwrap_or_default(),
            policy: p.policy,
            intercepted: p.intercepted,
            client_not_managed: p.evidence.iter().any(|e| e.starts_with("client_not_managed:")),
            device: m.device_id,
            network,
            app: m.app.and_then(|a| a.package),
            unattended,
            baseline_approved: m.baseline.and_then(|b| b.approved),
            has_mobile,
            client,
        });
    }

    /// Compute every table. `approvals` makes approved destinations count as approved.
    pub fn finish(mut self, approvals: &Approvals, certs: BTreeMap<String, BTreeSet<String>>) -> Model {
        let mut m = std::mem::take(&mut self.model);
        m.certs = certs;
        m.sessions.sort_by_key(|s| (s.ts_ns, s.flow_id));
        m.have_feed = m.sessions.iter().any(|s| s.has_mobile);
        for s in &mut m.sessions {
            if s.baseline_approved == Some(false) && approvals.approves(s.app_name(), s.dest()) {
                s.baseline_approved = Some(true);
            }
        }
        let by_flow: HashMap<u64, usize> = m.sessions.iter().enumerate().map(|(i, s)| (s.flow_id, i)).collect();
        m.findings = fold_alerts(std::mem::take(&mut self.alerts), &m.sessions, &by_flow);
        // Baseline alerts whose destination the approvals file approves no longer count.
        m.findings.retain(|f| !(f.signature_id == 1725006 && approvals.approves(f.app.as_deref().unwrap_or(NO_APP), &f.dest)));
        m.coverage.stats_outcomes = self.stats_outcomes;

        set_time_buckets(&mut m);

        // Which sessions are named by fallback / opaque findings.
        let mut opaque: BTreeSet<u64> = BTreeSet::new();
        for f in &m.findings {
            if f.signature_id == 1725003 {
                opaque.insert(f.flow_id);
            }
        }
        let nb = m.buckets;
        let mut apps: BTreeMap<String, Row> = BTreeMap::new();
        let mut dests: BTreeMap<String, Row> = BTreeMap::new();
        let mut devices: BTreeMap<String, Row> = BTreeMap::new();
        m.coverage.per_bucket = vec![BTreeMap::new(); nb];
        for s in &m.sessions {
            let b = bucket_of(s.ts_ns, &m);
            let cover = Cover::of(s);
            *m.coverage.counts.entry(cover).or_default() += 1;
            *m.coverage.per_network.entry(s.network.clone()).or_default().entry(cover).or_default() += 1;
            *m.coverage.per_bucket[b].entry(cover).or_default() += 1;
            if s.kind == "capture_gap" {
                m.coverage.capture_gap_sessions += 1;
            }
            for (map, key) in [(&mut apps, s.app_name()), (&mut dests, s.dest()), (&mut devices, s.device_name())] {
                add_session(map.entry(key.to_string()).or_default(), s, b, nb, opaque.contains(&s.flow_id));
            }
        }
        m.timeline = vec![BTreeMap::new(); nb];
        for f in &m.findings {
            let b = bucket_of(f.ts_ns, &m);
            *m.timeline[b].entry(f.signature_id).or_default() += 1;
            let app = f.app.clone().unwrap_or_else(|| NO_APP.into());
            let dev = f.device.clone().unwrap_or_else(|| NO_DEVICE.into());
            for (map, key) in [(&mut apps, app), (&mut dests, f.dest.clone()), (&mut devices, dev)] {
                if let Some(r) = map.get_mut(&key) {
                    r.findings += 1;
                    if f.signature_id == 1725004 {
                        r.fallbacks += 1;
                    }
                }
            }
        }
        for (pkg, r) in &mut apps {
            if let Some(c) = m.certs.get(pkg) {
                r.certs = c.clone();
            }
        }
        m.apps = apps;
        m.dests = dests;
        m.devices = devices;
        m
    }
}

/// Time buckets: about 24 over the span of the sessions and findings, a
/// round width ([`bucket_width`]), at most 512.
fn set_time_buckets(m: &mut Model) {
    let ts: Vec<i64> = m.sessions.iter().map(|s| s.ts_ns).chain(m.findings.iter().map(|f| f.ts_ns)).filter(|t| *t > 0).collect();
    m.first_ns = ts.iter().copied().min().unwrap_or(0);
    m.last_ns = ts.iter().copied().max().unwrap_or(0);
    m.bucket_ns = bucket_width(m.last_ns.saturating_sub(m.first_ns));
    m.first_ns -= m.first_ns.rem_euclid(m.bucket_ns);
    m.buckets = usize::try_from(m.last_ns.saturating_sub(m.first_ns) / m.bucket_ns + 1).unwrap_or(1).clamp(1, 512);
}

/// The time bucket of `t` (those before the first go to the first, those
/// after the last to the last).
fn bucket_of(t: i64, m: &Model) -> usize {
    usize::try_from(t.max(m.first_ns).saturating_sub(m.first_ns) / m.bucket_ns).unwrap_or(0).min(m.buckets - 1)
}

/// Count one session in a row of a table (per app, destination or device):
/// `b` is its time bucket of `nb`, `opaque` whether an opaque finding names it.
fn add_session(r: &mut Row, s: &Session, b: usize, nb: usize, opaque: bool) {
    if r.trend.is_empty() {
        r.trend = vec![(0, 0); nb];
    }
    r.sessions += 1;
    r.trend[b].0 += 1;
    if s.rejected() {
        r.rejected += 1;
        r.trend[b].1 += 1;
        *r.class.entry(s.class.clone().unwrap_or_else(|| "?".into())).or_default() += 1;
    }
    match s.path.as_str() {
        "direct" => r.direct += 1,
        "sanctioned_bypass" => r.bypassed += 1,
        "unknown" => r.unknown_path += 1,
        _ => {}
    }
    if opaque {
        r.opaque += 1;
    }
    if s.baseline_approved == Some(false) {
        r.outside_baseline += 1;
        r.unapproved_dests.insert(s.dest().to_string());
    }
    if let Some(u) = s.unattended {
        r.state_known += 1;
        r.unattended += u64::from(u);
    }
    r.apps.insert(s.app_name().to_string());
    r.devices.insert(s.device_name().to_string());
    r.dests.insert(s.dest().to_string());
}

/// A client address's network when the feed names none: its /24 (IPv4) or /64 (IPv6).
fn subnet_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => "(unknown network)".into(),
    }
}

/// A round bucket width giving at most ~24 buckets over `span_ns`.
fn bucket_width(span_ns: i64) -> i64 {
    const S: i64 = 1_000_000_000;
    let steps = [S, 5 * S, 10 * S, 30 * S, 60 * S, 300 * S, 900 * S, 3600 * S, 4 * 3600 * S, 86_400 * S, 7 * 86_400 * S, 30 * 86_400 * S];
    for w in steps {
        if span_ns / w < 24 {
            return w;
        }
    }
    365 * 86_400 * S
}

/// Alerts to findings: an AN1725 alert (1725005) is kept at its highest
/// revision per `alert_id`; any other alert once per (signature, flow).
fn fold_alerts(alerts: Vec<(Rec, i64)>, sessions: &[Session], by_flow: &HashMap<u64, usize>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (rec, ts) in alerts {
        let a = rec.alert.unwrap_or_default();
        let sid = a.signature_id.unwrap_or(0);
        let flow_id = rec.flow_id.unwrap_or(0);
        let ev = rec.evidence.unwrap_or_default();
        let an = rec.an1725;
        let sess = by_flow.get(&flow_id).map(|i| &sessions[*i]);
        let mobile = rec.mobile.unwrap_or_default();
        let app = mobile.app.and_then(|a| a.package).or_else(|| sess.and_then(|s| s.app.clone()));
        let device = mobile.device_id.or_else(|| sess.and_then(|s| s.device.clone()));
        let sni = rec.tls.and_then(|t| t.sni).or_else(|| rec.quic.and_then(|q| q.sni)).filter(|s| !s.is_empty());
        let dest = sni.or(rec.dest_ip).unwrap_or_default();
        let mut reasons = ev.reasons;
        let (alert_id, revision, count, confidence) = match &an {
            Some(x) => {
                for r in &x.reasons {
                    if !reasons.contains(r) {
                        reasons.push(r.clone());
                    }
                }
                (x.alert_id.clone(), x.revision.unwrap_or(0), x.count.unwrap_or(1), x.confidence.clone())
            }
            None => (None, 0, 1, None),
        };
        let f = Finding {
            signature_id: sid,
            signature: a.signature.unwrap_or_default(),
            severity: a.severity.unwrap_or(3),
            confidence: confidence.or_else(|| a.metadata.and_then(|m| m.confidence.into_iter().next())).unwrap_or_default(),
            flow_id,
            ts_ns: ts,
            dest,
            client: rec.src_ip.unwrap_or_default(),
            reasons,
            flow_ids: ev.flow_ids,
            alert_id: alert_id.clone(),
            revision,
            count,
            app,
            device,
        };
        let key = match &alert_id {
            Some(id) => format!("an:{id}"),
            None => format!("{sid}:{flow_id}"),
        };
        match index.get(&key) {
            Some(&i) => {
                if f.revision >= out[i].revision && alert_id.is_some() {
                    out[i] = f;
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(f);
            }
        }
    }
    out
}

/// Confidence as a rank (high first).
pub fn conf_rank(c: &str) -> u8 {
    match c {
        "high" => 0,
        "medium" => 1,
        "low" => 2,
        _ => 3,
    }
}

/// Findings in the order the page lists them: severity, confidence, sessions, time.
pub fn top_findings(m: &Model) -> Vec<&Finding> {
    let mut v: Vec<&Finding> = m.findings.iter().collect();
    v.sort_by(|a, b| {
        (a.severity, conf_rank(&a.confidence), std::cmp::Reverse(a.flow_ids.len().max(a.count as usize)), a.ts_ns, a.flow_id).cmp(&(
            b.severity,
            conf_rank(&b.confidence),
            std::cmp::Reverse(b.flow_ids.len().max(b.count as usize)),
            b.ts_ns,
            b.flow_id,
        ))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Rec {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn coverage_counts_paths_and_keeps_unknown_apart() {
        let mut b = Builder::default();
        b.add(rec(r#"{"event_type":"tls","flow_id":1,"timestamp":"2026-01-01T00:00:00+0000","src_ip":"10.0.0.2","tls":{"sni":"a.test"},"tls_failure":{"outcome":"client_rejected","class":"A"},"path":{"kind":"explicit_proxy","intercepted":true}}"#));
        b.add(rec(r#"{"event_type":"tls","flow_id":2,"timestamp":"2026-01-01T00:00:01+0000","src_ip":"10.0.0.2","tls":{"sni":"a.test"},"tls_failure":{"outcome":"established"},"path":{"kind":"direct"}}"#));
        b.add(rec(r#"{"event_type":"tls","flow_id":3,"timestamp":"2026-01-01T00:00:02+0000","src_ip":"10.0.0.2","tls":{"sni":"b.test"},"tls_failure":{"outcome":"established"},"path":{"kind":"unknown"}}"#));
        b.add(rec(r#"{"event_type":"tls","flow_id":3,"timestamp":"2026-01-01T00:00:02+0000"}"#));
        b.add(rec(
            r#"{"event_type":"tls","flow_id":4,"timestamp":"2026-01-01T00:00:02+0000","src_ip":"10.0.0.2","path":{"kind":"internal"}}"#,
        ));
        let m = b.finish(&Approvals::default(), BTreeMap::new());
        assert_eq!(m.duplicates, 1);
        assert_eq!(m.coverage.population(), 3);
        assert_eq!(m.coverage.known(), 2);
        assert_eq!(m.coverage.escaped(), 1);
        assert_eq!(m.coverage.get(Cover::RefusedByClient), 1);
        assert_eq!(m.coverage.get(Cover::Excluded), 1);
        assert_eq!(m.dests["a.test"].class.get("A"), Some(&1));
        assert_eq!(m.dests["a.test"].direct, 1);
    }

    #[test]
    fn an1725_alerts_fold_to_their_highest_revision() {
        let mut b = Builder::default();
        for rev in [1, 3, 2] {
            b.add(rec(&format!(r#"{{"event_type":"alert","flow_id":9,"alert":{{"signature_id":1725005,"severity":1}},"an1725":{{"alert_id":"x","revision":{rev},"confidence":"high"}}}}"#)));
        }
        b.add(rec(r#"{"event_type":"alert","flow_id":9,"alert":{"signature_id":1725001,"severity":2}}"#));
        let m = b.finish(&Approvals::default(), BTreeMap::new());
        assert_eq!(m.findings.len(), 2);
        assert_eq!(m.findings.iter().find(|f| f.signature_id == 1725005).map(|f| f.revision), Some(3));
    }
}
