//! Clock offset of each feed source, estimated from sessions.
//!
//! A feed event's `event_time` is the clock of whoever stamped it (the
//! device for DPM network logs, an agent, an MTD server), and that clock can
//! be seconds off the sensor's packet clock. Attribution compares event
//! times with session start times, so a source that runs 2.5 s ahead makes
//! the wrong one of two apps reaching the same destination look nearer.
//!
//! The offset is learnt from sessions of the device to a destination IP
//! and port that the source reports with an *exact* event (a `net_connect`,
//! or an `app_tls_trust` carrying the destination IP and port). For each
//! session, every exact event of the source within the search window gives
//! a candidate offset, `event_time − session start`. The right offset is
//! among the candidates of every session the source logged, the wrong ones
//! scatter, so:
//! * an offset that more sessions agree on (within the tolerance) than any
//!   other is the estimate (the median of the agreeing candidates);
//! * while no two sessions agree, a pair that matches unambiguously (the
//!   session's only candidate, an event no other session sees) is the
//!   estimate;
//! * a tie between offsets that disagree gives no estimate.
//!
//! A source is `(device.id, source.kind, source.vendor)`: `event_time` is the
//! device's clock for device-side sources, and each device keeps its own.
//!
//! Sans-IO and deterministic: sessions are passed in with their start times
//! (packet time), nothing reads a clock, and no decision depends on hash
//! order. Memory is bounded: sessions kept per source, candidates per
//! session and sources are all capped.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::attribution::SessionQuery;
use crate::feed::{Event, EventBody};

/// Tunables, times in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockConfig {
    /// Largest offset looked for: an event is a candidate for a session only
    /// when `|event_time − session start|` is within it.
    pub search_ns: i64,
    /// Candidates within this of each other agree.
    pub tolerance_ns: i64,
    /// Sessions kept per source (the newest).
    pub max_sessions: usize,
    /// A session with more candidates than this (a burst of connects to the
    /// same destination) says nothing about the offset and is not kept.
    pub max_candidates: usize,
    /// Most sources tracked; further sources get no estimate (counted).
    pub max_sources: usize,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self { search_ns: 30 * 1_000_000_000, tolerance_ns: 20_000_000, max_sessions: 16, max_candidates: 8, max_sources: 10_000 }
    }
}

/// Who stamped an event: `(device.id, source.kind, source.vendor)`, empty
/// strings when absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// `device.id` of the event ("" when absent).
    pub device: String,
    /// `source.kind` of the event ("" when absent).
    pub kind: String,
    /// `source.vendor` of the event ("" when absent).
    pub vendor: String,
}

impl SourceKey {
    /// The source that stamped `e`.
    pub fn of(e: &Event) -> SourceKey {
        SourceKey {
            device: e.device_id.clone().unwrap_or_default(),
            kind: e.source.as_ref().map(|s| s.kind.clone()).unwrap_or_default(),
            vendor: e.source.as_ref().and_then(|s| s.vendor.clone()).unwrap_or_default(),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// Session observations that gave a source candidates.
    pub observations: u64,
    /// Observations skipped: too many candidates (a burst).
    pub bursts: u64,
    /// Observations not kept because `max_sources` sources were tracked.
    pub sources_dropped: u64,
}

/// An event's identity: (line number, event time).
type EventId = (u64, i64);

/// One session as a source saw it.
#[derive(Debug, Clone)]
struct Obs {
    /// (destination IP, port, session start).
    session: (IpAddr, u16, i64),
    /// `(offset, event)`, sorted.
    candidates: Vec<(i64, EventId)>,
}

#[derive(Debug, Clone, Default)]
struct SourceClock {
    obs: VecDeque<Obs>,
    estimate: Option<(i64, usize)>,
}

impl SourceClock {
    /// Re-estimate from the kept sessions (see the module doc).
    fn update(&mut self, tolerance: i64) {
        let mut all: Vec<(i64, usize)> =
            self.obs.iter().enumerate().flat_map(|(i, o)| o.candidates.iter().map(move |c| (c.0, i))).collect();
        all.sort_unstable();
        // For each candidate, the sessions with a candidate in [d, d + tol].
        let mut best: Option<(usize, usize)> = None; // (support, start index)
        let mut tie_far = false;
        for i in 0..all.len() {
            let mut seen: Vec<usize> = all[i..].iter().take_while(|c| c.0 - all[i].0 <= tolerance).map(|c| c.1).collect();
            seen.sort_unstable();
            seen.dedup();
            let n = seen.len();
            match best {
                Some((b, _)) if n < b => {}
                Some((b, j)) if n == b => {
                    if all[i].0 - all[j].0 > tolerance {
                        tie_far = true;
                    }
                }
                _ => {
                    best = Some((n, i));
                    tie_far = false;
                }
            }
        }
        self.estimate = match best {
            None => None,
            Some(_) if tie_far => None,
            Some((n, i)) if n >= 2 => {
                let lo = all[i].0;
                // The candidate of each agreeing session nearest the window.
                let mut agree: Vec<i64> =
                    self.obs.iter().filter_map(|o| o.candidates.iter().map(|c| c.0).find(|d| *d >= lo && *d - lo <= tolerance)).collect();
                agree.sort_unstable();
                // Lower median: an even count never averages two samples.
                agree.get((agree.len() - 1) / 2).map(|m| (*m, agree.len()))
            }
            Some(_) => {
                // No two sessions agree: an unambiguous pair, if there is
                // exactly one, is the estimate.
                let pairs: Vec<i64> = self
                    .obs
                    .iter()
                    .filter(|o| o.candidates.len() == 1)
                    .filter(|o| {
                        let ev = o.candidates[0].1;
                        self.obs.iter().filter(|p| p.candidates.iter().any(|c| c.1 == ev)).count() == 1
                    })
                    .map(|o| o.candidates[0].0)
                    .collect();
                match pairs.as_slice() {
                    [d] => Some((*d, 1)),
                    _ => None,
                }
            }
        };
    }
}

/// Offsets per source, learnt from sessions ([`ClockOffsets::observe`]).
#[derive(Debug, Default)]
pub struct ClockOffsets {
    cfg: ClockConfig,
    sources: HashMap<SourceKey, SourceClock>,
    /// The estimates by device, then (kind, vendor): looked up per event
    /// without building a key.
    by_device: HashMap<String, Vec<(String, String, i64)>>,
    stats: ClockStats,
}

/// An event that names the destination IP and port exactly.
pub fn is_exact(e: &Event, dst_ip: IpAddr, dst_port: u16) -> bool {
    match &e.body {
        EventBody::NetConnect(x) => x.dst_ip == dst_ip && x.dst_port == dst_port,
        EventBody::AppTlsTrust(x) => x.dst_ip == Some(dst_ip) && x.dst_port == Some(dst_port),
        _ => false,
    }
}

impl ClockOffsets {
    /// No source known yet, with these tunables.
    pub fn new(cfg: ClockConfig) -> Self {
        Self { cfg, ..Self::default() }
    }

    /// The tunables this was made with.
    pub fn config(&self) -> &ClockConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &ClockStats {
        &self.stats
    }

    /// The estimated offset (`event_time − packet time`) of the source that
    /// stamped `e`, if it has one.
    pub fn offset_ns(&self, e: &Event) -> Option<i64> {
        if self.by_device.is_empty() {
            return None;
        }
        let kind = e.source.as_ref().map_or("", |s| s.kind.as_str());
        let vendor = e.source.as_ref().and_then(|s| s.vendor.as_deref()).unwrap_or("");
        self.by_device.get(e.device_id.as_deref().unwrap_or(""))?.iter().find(|(k, v, _)| k == kind && v == vendor).map(|x| x.2)
    }

    /// The estimate of a source, and how many sessions it rests on.
    pub fn estimate(&self, key: &SourceKey) -> Option<(i64, usize)> {
        self.sources.get(key).and_then(|s| s.estimate)
    }

    /// Every source with an estimate, sorted: `(source, offset, sessions)`.
    pub fn estimates(&self) -> Vec<(SourceKey, i64, usize)> {
        let mut v: Vec<_> = self.sources.iter().filter_map(|(k, s)| s.estimate.map(|(m, n)| (k.clone(), m, n))).collect();
        v.sort();
        v
    }

    /// Put back an estimate a state file kept (a restart): it stands until
    /// the source's sessions after the restart give their own. Past
    /// `max_sources` it is not kept (counted in `sources_dropped`).
    pub fn restore_estimate(&mut self, key: SourceKey, offset_ns: i64, sessions: usize) {
        if !self.sources.contains_key(&key) && self.sources.len() >= self.cfg.max_sources {
            self.stats.sources_dropped += 1;
            return;
        }
        let src = self.sources.entry(key.clone()).or_default();
        if src.estimate.is_some() {
            return;
        }
        src.estimate = Some((offset_ns, sessions));
        let list = self.by_device.entry(key.device).or_default();
        list.retain(|(k, v, _)| *k != key.kind || *v != key.vendor);
        list.push((key.kind, key.vendor, offset_ns));
    }

    /// Take in a session the device `q.device_id` made (its feed events in
    /// `events`, any order): each source with exact events for the session's
    /// destination within the search window keeps the session's candidate
    /// offsets and re-estimates. Observing the same session again (same
    /// device, destination and start) replaces what it gave: a late batch
    /// may have brought its events.
    pub fn observe(&mut self, events: &[Event], q: &SessionQuery<'_>) {
        let w = self.cfg.search_ns.unsigned_abs();
        let t = q.session_start_ns;
        let session = (q.dst_ip, q.dst_port, t);
        let mut near: Vec<(SourceKey, i64, EventId)> = events
            .iter()
            .filter(|e| e.device_id.as_deref() == Some(q.device_id))
            .filter(|e| e.event_time_ns.abs_diff(t) <= w && is_exact(e, q.dst_ip, q.dst_port))
            .map(|e| (SourceKey::of(e), e.event_time_ns.saturating_sub(t), (e.line_no, e.event_time_ns)))
            .collect();
        near.sort();
        let mut i = 0;
        while i < near.len() {
            let key = near[i].0.clone();
            let n = near[i..].iter().take_while(|x| x.0 == key).count();
            let candidates: Vec<(i64, EventId)> = near[i..i + n].iter().map(|x| (x.1, x.2)).collect();
            i += n;
            if candidates.len() > self.cfg.max_candidates {
                self.stats.bursts += 1;
                continue;
            }
            if !self.sources.contains_key(&key) && self.sources.len() >= self.cfg.max_sources {
                self.stats.sources_dropped += 1;
                continue;
            }
            self.stats.observations += 1;
            let src = self.sources.entry(key.clone()).or_default();
            src.obs.retain(|o| o.session != session);
            src.obs.push_back(Obs { session, candidates });
            while src.obs.len() > self.cfg.max_sessions {
                src.obs.pop_front();
            }
            src.update(self.cfg.tolerance_ns);
            let estimate = src.estimate.map(|x| x.0);
            let list = self.by_device.entry(key.device).or_default();
            list.retain(|(k, v, _)| *k != key.kind || *v != key.vendor);
            if let Some(off) = estimate {
                list.push((key.kind, key.vendor, off));
            }
            if list.is_empty() {
                self.by_device.remove(q.device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{parse_rfc3339_ns, FeedReader};

    const MS: i64 = 1_000_000;

    fn at(ms: i64) -> String {
        // 2026-08-21T09:14:00Z + ms
        let base = parse_rfc3339_ns("2026-08-21T09:14:00Z").expect("t");
        let t = base + ms * MS;
        let secs = (t - base) / 1_000_000_000;
        let frac = (t - base) % 1_000_000_000;
        format!("2026-08-21T09:{:02}:{:02}.{:09}Z", 14 + secs / 60, secs % 60, frac)
    }

    fn connect(line: u64, ms: i64, port: u16, source: &str) -> Event {
        let l = format!(
            r#"{{"schema_version":1,"event_type":"net_connect","event_time":"{}","observed_time":"2026-08-21T10:40:02Z","device":{{"id":"dev1"}},"source":{{"kind":"{source}"}},"app":{{"package":"p"}},"dst_ip":"203.0.113.5","dst_port":{port}}}"#,
            at(ms)
        );
        FeedReader::default().push_line(&l, line).expect("line")
    }

    fn session(ms: i64, port: u16) -> SessionQuery<'static> {
        SessionQuery {
            device_id: "dev1",
            dst_ip: "203.0.113.5".parse().expect("ip"),
            dst_port: port,
            sni: None,
            session_start_ns: parse_rfc3339_ns("2026-08-21T09:14:00Z").expect("t") + ms * MS,
        }
    }

    fn key(kind: &str) -> SourceKey {
        SourceKey { device: "dev1".into(), kind: kind.into(), vendor: String::new() }
    }

    #[test]
    fn an_unambiguous_pair_is_an_estimate() {
        let evs = vec![connect(1, 2_500, 4443, "dpm"), connect(2, 100, 443, "agent")];
        let mut c = ClockOffsets::default();
        c.observe(&evs, &session(0, 4443));
        assert_eq!(c.estimate(&key("dpm")), Some((2_500 * MS, 1)));
        assert_eq!(c.offset_ns(&evs[0]), Some(2_500 * MS));
        // The agent's event is for another port: not a candidate.
        assert_eq!(c.estimate(&key("agent")), None);
        // Observing the same session again changes nothing.
        c.observe(&evs, &session(0, 4443));
        assert_eq!(c.estimate(&key("dpm")), Some((2_500 * MS, 1)));
        assert_eq!(c.stats().observations, 2);
    }

    #[test]
    fn a_pair_another_session_makes_ambiguous_is_withdrawn() {
        let evs = vec![connect(1, 2_500, 443, "dpm")];
        let mut c = ClockOffsets::default();
        c.observe(&evs, &session(0, 443));
        assert_eq!(c.estimate(&key("dpm")), Some((2_500 * MS, 1)));
        // A second session to the same destination also sees the event:
        // which one it belongs to is unknown.
        c.observe(&evs, &session(600, 443));
        assert_eq!(c.estimate(&key("dpm")), None);
    }

    /// Interleaved sessions to two destinations, the source 1.2 s ahead
    /// and logging each connect 3–7 ms before the SYN: no pair is
    /// unambiguous, but the sessions agree on the offset.
    #[test]
    fn sessions_agree_on_the_offset_in_a_burst() {
        let starts = [(0, 443), (75, 443), (92, 8080), (380, 443), (395, 8080)];
        let jitter = [-5, -3, -7, -4, -6];
        let evs: Vec<Event> =
            starts.iter().zip(jitter).enumerate().map(|(i, ((s, p), j))| connect(i as u64 + 1, s + 1_200 + j, *p, "dpm")).collect();
        let mut c = ClockOffsets::default();
        c.observe(&evs, &session(0, 443));
        assert_eq!(c.estimate(&key("dpm")), None, "three candidates, one session");
        c.observe(&evs, &session(75, 443));
        let (off, n) = c.estimate(&key("dpm")).expect("two sessions agree");
        assert_eq!(n, 2);
        assert!((1_190 * MS..=1_200 * MS).contains(&off), "{off}");
        for (s, p) in &starts[2..] {
            c.observe(&evs, &session(*s, *p));
        }
        let (off, n) = c.estimate(&key("dpm")).expect("estimate");
        assert_eq!((off, n), (1_195 * MS, 5), "the median of the five agreeing candidates");
    }

    #[test]
    fn disagreeing_sessions_give_no_estimate_and_bursts_are_skipped() {
        // Two sessions, each with one candidate, 1 s apart in offset.
        let evs = vec![connect(1, 500, 443, "dpm"), connect(2, 61_500, 443, "dpm")];
        let mut c = ClockOffsets::default();
        c.observe(&evs, &session(0, 443));
        c.observe(&evs, &session(60_000, 443));
        // Each is an unambiguous pair, but they disagree (+0.5 s, +1.5 s).
        assert_eq!(c.estimate(&key("dpm")), None);

        let burst: Vec<Event> = (0..9).map(|i| connect(i, i as i64 * 10, 443, "dpm")).collect();
        let mut c = ClockOffsets::default();
        c.observe(&burst, &session(0, 443));
        assert_eq!((c.stats().bursts, c.estimate(&key("dpm"))), (1, None));
    }

    #[test]
    fn memory_is_bounded() {
        let cfg = ClockConfig { max_sessions: 4, max_sources: 2, ..ClockConfig::default() };
        let mut c = ClockOffsets::new(cfg);
        let evs: Vec<Event> = (0..10).map(|i| connect(i, i as i64 * 60_000 + 300, 443, "dpm")).collect();
        for i in 0..10 {
            c.observe(&evs, &session(i * 60_000, 443));
        }
        assert_eq!(c.sources[&key("dpm")].obs.len(), 4);
        assert_eq!(c.estimate(&key("dpm")), Some((300 * MS, 4)));
        for kind in ["a", "b", "c"] {
            c.observe(&[connect(99, 0, 80, kind)], &session(0, 80));
        }
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.stats().sources_dropped, 2);
    }
}
