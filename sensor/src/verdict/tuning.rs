//! Alert tuning: Suricata `threshold.config`-style `suppress`, `threshold`
//! (`event_filter`) and `rate_filter` lines per signature, and an allow
//! list of apps, devices and destinations whose findings are not written.
//! Documented in `docs/tuning.md` (example: `dist/threshold.config.example`).
//!
//! The rules are [`crate::config::tuning::Rules`], read with the
//! configuration (`[tuning]` and its `threshold_file`). [`Tuning`] holds the
//! counters of the threshold and rate windows and decides, for each alert
//! the reporting desk is about to write, whether it is written
//! ([`Tuning::admit`]). Time is the alert's `timestamp` (packet time), and
//! the desk sees the alerts in output order, so the decisions are the same
//! for any `--threads` and for a replay of a capture.
//!
//! Order of the checks, as in Suricata: allow list, then `suppress`, then
//! the `threshold` of the signature (one: the line for the sid, else the
//! one for every sid), then every `rate_filter`. The revisions of a folded
//! AN1725 alert (same `an1725.alert_id`) share the fate of its first
//! revision, so a consumer never sees an update of an alert it was not
//! given.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use crate::config::tuning::GID;
use crate::config::tuning::{Action, Allow, Kind, RateFilter, Rules, Threshold, Track, GLOB};

/// Tracker entries (threshold and rate windows) held at most.
pub const MAX_TRACKED: usize = 100_000;
/// AN1725 alert ids whose decision is remembered for their revisions.
pub const MAX_DECIDED: usize = 100_000;

/// What an alert is to the tuning: the fields it matches on.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    /// `alert.gid` (0 when absent); only gid 1725 alerts are suppressed,
    /// thresholded or rate-filtered.
    pub gid: u32,
    /// `alert.signature_id` (0 when absent).
    pub sid: u32,
    /// `src_ip`, if it parses.
    pub src: Option<IpAddr>,
    /// `dest_ip`, if it parses.
    pub dst: Option<IpAddr>,
    /// Packet time, ns.
    pub ts_ns: i64,
    /// `tls.sni`, if present.
    pub sni: Option<&'a str>,
    /// `mobile.app.package`, if the session was attributed to an app.
    pub app: Option<&'a str>,
    /// `mobile.app.signing_cert_sha256`: the app's signing certificate digests.
    pub app_certs: Vec<&'a str>,
    /// `mobile.device_id`, if the session was attributed to a device.
    pub device: Option<&'a str>,
    /// A folded AN1725 alert's id: its revisions share a decision.
    pub alert_id: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// The fields of an EVE alert record; `None` for another record.
    pub fn of(v: &'a Value) -> Option<Subject<'a>> {
        if v.get("event_type")?.as_str()? != "alert" {
            return None;
        }
        let ip = |k: &str| v.get(k).and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
        Some(Subject {
            gid: v.pointer("/alert/gid").and_then(Value::as_u64).unwrap_or(0) as u32,
            sid: v.pointer("/alert/signature_id").and_then(Value::as_u64).unwrap_or(0) as u32,
            src: ip("src_ip"),
            dst: ip("dest_ip"),
            ts_ns: v.get("timestamp").and_then(Value::as_str).and_then(crate::verdict::tuning::timestamp_ns).unwrap_or(0),
            sni: v.pointer("/tls/sni").and_then(Value::as_str),
            app: v.pointer("/mobile/app/package").and_then(Value::as_str),
            app_certs: v
                .pointer("/mobile/app/signing_cert_sha256")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            device: v.pointer("/mobile/device_id").and_then(Value::as_str),
            alert_id: v.pointer("/an1725/alert_id").and_then(Value::as_str).filter(|s| !s.is_empty()),
        })
    }
}

/// EVE's timestamp (`2026-08-21T09:14:03.512311+0000`) as ns since the epoch.
pub fn timestamp_ns(ts: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(
        ts.get(..26)?,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"),
    )
    .ok()?;
    i64::try_from(t.assume_utc().unix_timestamp_nanos()).ok()
}

/// The decision for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write the alert.
    Write,
    /// On the allow list (app, certificate, device or destination).
    Allowed,
    /// A `suppress` line matched.
    Suppressed,
    /// Its `threshold` line held it back.
    Thresholded,
    /// A `rate_filter` with a `new_action` other than `alert` is in force.
    RateFiltered,
}

/// Counters for `stats.tuning`, per signature id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TuningStats {
    /// Lines and allow entries in use.
    pub rules: u64,
    /// Lines and entries skipped as bad (and an unreadable file).
    pub bad_lines: u64,
    /// The first problems with the rules, each with its source and line
    /// number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Live mode: rule sets taken on after SIGHUP.
    pub reloads: u64,
    /// Alerts not written because of the allow list, per signature id.
    pub allowed: BTreeMap<String, u64>,
    /// Alerts a `suppress` line held back, per signature id.
    pub suppressed: BTreeMap<String, u64>,
    /// Alerts a `threshold` line held back, per signature id.
    pub thresholded: BTreeMap<String, u64>,
    /// Alerts a `rate_filter` held back, per signature id.
    pub rate_filtered: BTreeMap<String, u64>,
    /// Alerts decided without a tracker because the table held `MAX_TRACKED`.
    pub tracker_overflows: u64,
    /// AN1725 alert ids forgotten (cap): a later revision is judged afresh.
    pub decisions_dropped: u64,
}

impl TuningStats {
    /// Alerts not written, all reasons.
    pub fn withheld(&self) -> u64 {
        [&self.allowed, &self.suppressed, &self.thresholded, &self.rate_filtered].iter().flat_map(|m| m.values()).sum()
    }
}

/// A threshold or rate window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: i64,
    count: u64,
    /// rate_filter: the new action is in force since then.
    timeout_since: Option<i64>,
}

type TrackKey = (bool, usize, Option<(IpAddr, Option<IpAddr>)>);

/// The tuning rules and their state.
#[derive(Debug, Default)]
pub struct Tuning {
    rules: Arc<Rules>,
    windows: HashMap<TrackKey, Window>,
    decided: HashMap<String, Admit>,
    decided_order: VecDeque<String>,
    /// What was withheld, and why (`stats.tuning`).
    pub stats: TuningStats,
}

const NS: i64 = 1_000_000_000;

fn within(start: i64, now: i64, seconds: u64) -> bool {
    now.saturating_sub(start) < (seconds as i64).saturating_mul(NS)
}

impl Tuning {
    /// Tuning with `rules` and empty windows; `stats.reloads` starts at 0.
    pub fn new(rules: Arc<Rules>) -> Tuning {
        let mut t = Tuning::default();
        t.set_rules(rules);
        t.stats.reloads = 0;
        t
    }

    /// Take on a new rule set (SIGHUP): the windows and decisions start
    /// afresh, the counters go on.
    pub fn set_rules(&mut self, rules: Arc<Rules>) {
        self.stats.rules = rules.rules;
        self.stats.bad_lines = rules.bad_lines;
        self.stats.problems = rules.problems.clone();
        self.stats.reloads += 1;
        self.rules = rules;
        self.windows.clear();
        self.decided.clear();
        self.decided_order.clear();
    }

    /// Nothing configured: every alert is written.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decide whether an alert is written, and count it if it is not.
    pub fn admit(&mut self, a: &Subject<'_>) -> Admit {
        if self.rules.is_empty() {
            return Admit::Write;
        }
        let decision = match a.alert_id.and_then(|id| self.decided.get(id)) {
            Some(d) => *d,
            None => {
                let d = self.decide(a);
                if let Some(id) = a.alert_id {
                    if self.decided_order.len() >= MAX_DECIDED {
                        if let Some(old) = self.decided_order.pop_front() {
                            self.decided.remove(&old);
                            self.stats.decisions_dropped += 1;
                        }
                    }
                    self.decided.insert(id.to_string(), d);
                    self.decided_order.push_back(id.to_string());
                }
                d
            }
        };
        let counter = match decision {
            Admit::Write => return decision,
            Admit::Allowed => &mut self.stats.allowed,
            Admit::Suppressed => &mut self.stats.suppressed,
            Admit::Thresholded => &mut self.stats.thresholded,
            Admit::RateFiltered => &mut self.stats.rate_filtered,
        };
        *counter.entry(a.sid.to_string()).or_insert(0) += 1;
        decision
    }

    fn decide(&mut self, a: &Subject<'_>) -> Admit {
        let rules = Arc::clone(&self.rules);
        if allowed(&rules.allow, a) {
            return Admit::Allowed;
        }
        let ours = a.gid == GID;
        let applies = |sid: u32| ours && (sid == 0 || sid == a.sid);
        for s in &rules.suppress {
            if !applies(s.sid) {
                continue;
            }
            let hit = match &s.track {
                None => true,
                Some((t, nets)) => {
                    let any = |ip: Option<IpAddr>| ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
                    match t {
                        Track::BySrc => any(a.src),
                        Track::ByDst => any(a.dst),
                        _ => any(a.src) || any(a.dst),
                    }
                }
            };
            if hit {
                return Admit::Suppressed;
            }
        }
        // One threshold per signature: its own line, else the global one.
        let th = rules
            .thresholds
            .iter()
            .position(|t| ours && t.sid == a.sid)
            .or_else(|| rules.thresholds.iter().position(|t| ours && t.sid == 0));
        if let Some(i) = th {
            let t = &rules.thresholds[i];
            if !self.threshold(i, t, a) {
                return Admit::Thresholded;
            }
        }
        let mut verdict = Admit::Write;
        for (i, r) in rules.rates.iter().enumerate() {
            if applies(r.sid) && self.rate(i, r, a) && r.new_action != Action::Alert {
                verdict = Admit::RateFiltered;
            }
        }
        verdict
    }

    fn key(rate: bool, i: usize, track: Track, a: &Subject<'_>) -> TrackKey {
        let unspecified = IpAddr::from([0u8, 0, 0, 0]);
        let (s, d) = (a.src.unwrap_or(unspecified), a.dst.unwrap_or(unspecified));
        let who = match track {
            Track::BySrc => Some((s, None)),
            Track::ByDst => Some((d, None)),
            Track::ByRule => None,
            Track::ByBoth | Track::ByEither => Some((s.min(d), Some(s.max(d)))),
        };
        (rate, i, who)
    }

    /// The window of `key`, made if there is room: `None` when the table
    /// is full even after the closed windows are dropped.
    fn window(&mut self, key: TrackKey, now: i64) -> Option<&mut Window> {
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_TRACKED {
            let rules = Arc::clone(&self.rules);
            self.windows.retain(|(rate, i, _), w| {
                let (seconds, timeout) = if *rate {
                    rules.rates.get(*i).map_or((0, 0), |r| (r.seconds, r.timeout))
                } else {
                    rules.thresholds.get(*i).map_or((0, 0), |t| (t.seconds, 0))
                };
                within(w.start_ns, now, seconds) || w.timeout_since.is_some_and(|t| within(t, now, timeout))
            });
            if self.windows.len() >= MAX_TRACKED {
                self.stats.tracker_overflows += 1;
                return None;
            }
        }
        Some(self.windows.entry(key).or_insert(Window { start_ns: now, count: 0, timeout_since: None }))
    }

    /// Suricata's `threshold` types; true: the alert is written.
    fn threshold(&mut self, i: usize, t: &Threshold, a: &Subject<'_>) -> bool {
        let now = a.ts_ns;
        let Some(w) = self.window(Self::key(false, i, t.track, a), now) else {
            return true;
        };
        if w.count == 0 || !within(w.start_ns, now, t.seconds) {
            *w = Window { start_ns: now, count: 0, timeout_since: None };
        }
        w.count += 1;
        match t.kind {
            // The first `count` in each window.
            Kind::Limit => w.count <= t.count,
            // Every `count`-th within the window, then counting again.
            Kind::Threshold => {
                if w.count >= t.count {
                    w.count = 0;
                    w.start_ns = now;
                    true
                } else {
                    false
                }
            }
            // Once per window, at the `count`-th.
            Kind::Both => w.count == t.count,
        }
    }

    /// Suricata's `rate_filter`; true: the new action is in force.
    fn rate(&mut self, i: usize, r: &RateFilter, a: &Subject<'_>) -> bool {
        let now = a.ts_ns;
        let Some(w) = self.window(Self::key(true, i, r.track, a), now) else {
            return false;
        };
        if let Some(since) = w.timeout_since {
            if within(since, now, r.timeout) {
                return true;
            }
            *w = Window { start_ns: now, count: 0, timeout_since: None };
        }
        if w.count == 0 || !within(w.start_ns, now, r.seconds) {
            *w = Window { start_ns: now, count: 0, timeout_since: None };
        }
        w.count += 1;
        if w.count > r.count {
            w.timeout_since = Some(now);
            return true;
        }
        false
    }
}

fn allowed(allow: &Allow, a: &Subject<'_>) -> bool {
    if a.app.is_some_and(|p| allow.apps.iter().any(|g| g.matches_with(p, GLOB))) {
        return true;
    }
    if a.app_certs.iter().any(|c| allow.app_certs.iter().any(|x| x.eq_ignore_ascii_case(&c.replace(':', "")))) {
        return true;
    }
    if a.device.is_some_and(|d| allow.devices.iter().any(|g| g.matches_with(d, GLOB))) {
        return true;
    }
    if a.sni.is_some_and(|h| allow.hosts.iter().any(|g| g.matches_with(h.trim_end_matches('.'), GLOB))) {
        return true;
    }
    a.dst.is_some_and(|ip| allow.nets.iter().any(|n| n.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tuning::AllowConfig;

    fn alert(sid: u32, src: &str, dst: &str, secs: i64) -> Subject<'static> {
        Subject { gid: GID, sid, src: src.parse().ok(), dst: dst.parse().ok(), ts_ns: secs * NS, ..Default::default() }
    }

    fn tuning(text: &str) -> Tuning {
        let r = Rules::parse("t.config", text);
        assert_eq!(r.problems, Vec::<String>::new(), "{text}");
        Tuning::new(Arc::new(r))
    }

    /// Decisions for alerts of sid 1725002 from `src` at the given seconds.
    fn run(t: &mut Tuning, src: &str, at: &[i64]) -> Vec<bool> {
        at.iter().map(|s| t.admit(&alert(1_725_002, src, "198.51.100.1", *s)) == Admit::Write).collect()
    }

    #[test]
    fn suppress_all_or_by_address() {
        let mut t =
            tuning("suppress gen_id 1, sig_id 1725002\nsuppress gen_id 1725, sig_id 1725003, track by_src, ip [10.0.0.0/24, 10.9.9.9]\n");
        assert_eq!(t.admit(&alert(1_725_002, "10.1.1.1", "198.51.100.1", 0)), Admit::Suppressed);
        assert_eq!(t.admit(&alert(1_725_003, "10.0.0.7", "198.51.100.1", 0)), Admit::Suppressed);
        assert_eq!(t.admit(&alert(1_725_003, "10.9.9.9", "198.51.100.1", 0)), Admit::Suppressed);
        assert_eq!(t.admit(&alert(1_725_003, "10.0.1.7", "198.51.100.1", 0)), Admit::Write, "source outside the list");
        assert_eq!(t.admit(&alert(1_725_003, "198.51.100.1", "10.0.0.7", 0)), Admit::Write, "by_src does not look at the destination");
        assert_eq!(t.admit(&alert(1_725_001, "10.0.0.7", "198.51.100.1", 0)), Admit::Write, "another signature");
        assert_eq!(t.stats.suppressed.get("1725002"), Some(&1));
        assert_eq!(t.stats.suppressed.get("1725003"), Some(&2));
        assert_eq!(t.stats.withheld(), 3);
    }

    #[test]
    fn suppress_by_either_and_every_signature() {
        let mut t = tuning("suppress gen_id 0, sig_id 0, track by_either, ip 203.0.113.0/24\n");
        assert_eq!(t.admit(&alert(1_725_001, "203.0.113.5", "198.51.100.1", 0)), Admit::Suppressed);
        assert_eq!(t.admit(&alert(1_725_004, "10.0.0.1", "203.0.113.9", 0)), Admit::Suppressed);
        assert_eq!(t.admit(&alert(1_725_004, "10.0.0.1", "198.51.100.1", 0)), Admit::Write);
    }

    /// limit: the first `count` per window of `seconds`, per tracker.
    #[test]
    fn threshold_limit() {
        let mut t = tuning("threshold gen_id 1, sig_id 1725002, type limit, track by_src, count 2, seconds 60\n");
        assert_eq!(run(&mut t, "10.0.0.1", &[0, 1, 2, 59, 60, 61, 62]), [true, true, false, false, true, true, false]);
        assert_eq!(run(&mut t, "10.0.0.2", &[62]), [true], "another source has its own window");
        assert_eq!(t.stats.thresholded.get("1725002"), Some(&3));
    }

    /// threshold: every `count`-th within the window.
    #[test]
    fn threshold_every_nth() {
        let mut t = tuning("threshold gen_id 1, sig_id 1725002, type threshold, track by_rule, count 3, seconds 100\n");
        assert_eq!(run(&mut t, "10.0.0.1", &[0, 1, 2, 3, 4, 5]), [false, false, true, false, false, true]);
        // Two matches, then the window runs out: counting starts again.
        assert_eq!(run(&mut t, "10.0.0.1", &[10, 11, 200, 201, 202]), [false, false, false, false, true]);
    }

    /// both: once per window, at the `count`-th match.
    #[test]
    fn threshold_both() {
        let mut t = tuning("threshold gen_id 1, sig_id 1725002, type both, track by_dst, count 2, seconds 10\n");
        assert_eq!(run(&mut t, "10.0.0.1", &[0, 1, 2, 3, 10, 11, 12]), [false, true, false, false, false, true, false]);
    }

    /// A sid's own threshold line wins over the global one.
    #[test]
    fn own_threshold_before_global() {
        let mut t = tuning("threshold gen_id 0, sig_id 0, type limit, track by_rule, count 1, seconds 100\nthreshold gen_id 1, sig_id 1725002, type limit, track by_rule, count 3, seconds 100\n");
        assert_eq!(run(&mut t, "10.0.0.1", &[0, 1, 2, 3]), [true, true, true, false]);
        let other: Vec<bool> = [0, 1].iter().map(|s| t.admit(&alert(1_725_001, "10.0.0.1", "198.51.100.1", *s)) == Admit::Write).collect();
        assert_eq!(other, [true, false]);
    }

    /// rate_filter: past `count` in `seconds`, the new action for `timeout`.
    #[test]
    fn rate_filter_pass_for_timeout() {
        let mut t = tuning("rate_filter gen_id 1, sig_id 1725002, track by_src, count 2, seconds 10, new_action pass, timeout 30\n");
        // In force from the third (at 2 s) for 30 s: up to 31 s inclusive.
        assert_eq!(run(&mut t, "10.0.0.1", &[0, 1, 2, 3, 31, 33]), [true, true, false, false, false, true]);
        assert_eq!(t.stats.rate_filtered.get("1725002"), Some(&3));
        let mut keep = tuning("rate_filter gen_id 1, sig_id 1725002, track by_src, count 1, seconds 10, new_action alert, timeout 30\n");
        assert_eq!(run(&mut keep, "10.0.0.1", &[0, 1, 2]), [true, true, true], "new_action alert changes nothing");
    }

    #[test]
    fn allow_list_by_app_device_and_destination() {
        let mut r = Rules::default();
        r.add_allow(
            "c.toml",
            &AllowConfig {
                apps: vec!["com.example.*".into()],
                app_certs: vec!["9F:2C:41:D0".into()],
                devices: vec!["enterprises/LC0abc/devices/lab-*".into()],
                destinations: vec!["*.cdn.example".into(), "203.0.113.0/24".into()],
            },
        );
        assert_eq!(r.problems, Vec::<String>::new());
        let mut t = Tuning::new(Arc::new(r));
        let mut a = alert(1_725_005, "10.0.0.1", "198.51.100.1", 0);
        assert_eq!(t.admit(&a), Admit::Write);
        a.app = Some("com.example.bank");
        assert_eq!(t.admit(&a), Admit::Allowed);
        a.app = Some("org.other");
        a.app_certs = vec!["9f2c41d0"];
        assert_eq!(t.admit(&a), Admit::Allowed);
        a.app_certs = vec![];
        a.device = Some("enterprises/LC0abc/devices/lab-7");
        assert_eq!(t.admit(&a), Admit::Allowed);
        a.device = Some("enterprises/LC0abc/devices/prod-7");
        a.sni = Some("img.CDN.example");
        assert_eq!(t.admit(&a), Admit::Allowed);
        a.sni = Some("cdn.example.org");
        assert_eq!(t.admit(&a), Admit::Write);
        a.dst = "203.0.113.80".parse().ok();
        assert_eq!(t.admit(&a), Admit::Allowed);
        assert_eq!(t.stats.allowed.get("1725005"), Some(&5));
    }

    /// The revisions of a folded alert follow its first revision.
    #[test]
    fn revisions_share_the_first_decision() {
        let mut t = tuning("threshold gen_id 1, sig_id 1725005, type limit, track by_rule, count 1, seconds 1000\n");
        let mut a = alert(1_725_005, "10.0.0.1", "198.51.100.1", 0);
        a.alert_id = Some("an1725-1-1");
        assert_eq!(t.admit(&a), Admit::Write);
        a.ts_ns = 5 * NS;
        assert_eq!(t.admit(&a), Admit::Write, "revision 2 of a written alert");
        let mut b = a.clone();
        b.alert_id = Some("an1725-2-2");
        assert_eq!(t.admit(&b), Admit::Thresholded);
        assert_eq!(t.admit(&b), Admit::Thresholded, "revision 2 of a withheld alert");
    }

    #[test]
    fn bad_lines_are_counted_with_their_numbers() {
        let text = "# comment\n\nsuppress gen_id 1, sig_id 1725002\nthreshold gen_id 1, sig_id 1725002, type sometimes, track by_src, count 1, seconds 1\nsuppress gen_id 3, sig_id 1725002\nsuppress gen_id 1, sig_id 42\nsuppress gen_id 1, sig_id 1725002, track by_src, ip $HOME_NET\nrate_filter gen_id 1, sig_id 1725002, track by_src, count 1, seconds 1, new_action pass\nthreshold gen_id 1, \\\n  sig_id 1725001, type limit, track by_src, count 1, seconds 0\nsuppress gen_id 1, sig_id 1725001, colour blue\nbogus\n";
        let r = Rules::parse("t.config", text);
        assert_eq!(r.rules, 1);
        assert_eq!(r.bad_lines, 8);
        let lines: Vec<&str> = r.problems.iter().map(|p| p.split(':').nth(1).unwrap_or("")).collect();
        assert_eq!(lines, ["4", "5", "6", "7", "8", "9", "11", "12"]);
        assert!(r.problems[0].contains("type `sometimes`"), "{:?}", r.problems);
        assert!(r.problems[4].contains("`timeout` is missing"), "{:?}", r.problems);
        assert!(r.problems[5].contains("`seconds` must be at least 1"), "{:?}", r.problems);
    }

    #[test]
    fn the_example_file_loads() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/threshold.config.example");
        let r = Rules::parse("example", &std::fs::read_to_string(p).expect("example"));
        assert_eq!(r.problems, Vec::<String>::new());
        assert_eq!(r.rules, 5);
    }

    #[test]
    fn timestamps_are_packet_time() {
        assert_eq!(timestamp_ns("1970-01-01T00:00:01.500000+0000"), Some(1_500_000_000));
        assert_eq!(timestamp_ns("garbage"), None);
    }

    #[test]
    fn the_tracker_table_is_capped() {
        let mut t = tuning("threshold gen_id 1, sig_id 1725002, type limit, track by_src, count 1, seconds 1000\n");
        for i in 0..MAX_TRACKED as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            assert!(run(&mut t, &ip, &[0])[0]);
        }
        assert_eq!(t.windows.len(), MAX_TRACKED);
        assert_eq!(run(&mut t, "192.0.2.1", &[1]), [true], "no room: written, not tracked");
        assert_eq!(t.stats.tracker_overflows, 1);
        assert_eq!(t.windows.len(), MAX_TRACKED);
    }
}
