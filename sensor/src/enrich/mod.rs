//! Device and app enrichment: the MDM/device feed (schema v1,
//! `enrichment/FEED.md`) held by an [`Enricher`], then a lookup per
//! session at its start time: IP → device (leases), session → app
//! (attribution), the app's trust profile and state, the device's state.
//! [`an1725`] scores an enriched session that raised findings, and a
//! [`Folder`] folds its repeats into one alert id.
//!
//! Replay reads the whole feed before the capture ([`Enricher::load_sources`]).
//! Live mode takes feed lines while packets flow: a late batch goes in with
//! [`Enricher::add_events`] and the sessions kept for it are looked up again
//! ([`Enricher::re_enrich_at`]). Either way correlation is on event time,
//! whatever order the events came in.
//!
//! Where the lines come from is [`feed_source`] (files, followed files,
//! HTTP with a cursor) and [`feed_http`] (the health of a feed URL);
//! [`bindings`] is `pinwatch bindings`, a producer of `ip_binding` lines.

pub mod bindings;
pub mod feed_http;
pub mod feed_source;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use pinwatch_parsers::time::Timestamp;
use serde::Serialize;

use pinwatch_enrichment::attribution::{attribute_with, host_matches, AttributionConfig, SessionQuery};
use pinwatch_enrichment::clock::ClockOffsets;
use pinwatch_enrichment::feed::{Event, EventBody, FeedReader, FeedReport, InventoryApp};
use pinwatch_enrichment::leases::{LeaseConfig, LeaseMap};

/// Most feed events kept per device (older ones are dropped, counted).
pub const MAX_EVENTS_PER_DEVICE: usize = 100_000;

/// Most feed events held in replay, all sources together (about 0.5 KB
/// each: a feed URL that keeps paging cannot hold more than this).
pub const MAX_FEED_EVENTS: usize = 1_000_000;

/// Most bytes read of one `--feed` file (`--feed /dev/zero` ends).
pub const MAX_FEED_FILE_BYTES: u64 = 1 << 30;

/// Feed source errors kept with their text; the rest are counted.
pub const MAX_SOURCE_ERRORS: usize = 64;

/// The first [`MAX_SOURCE_ERRORS`] errors, then a count.
#[derive(Default)]
struct SourceErrors {
    kept: Vec<String>,
    more: u64,
}

impl SourceErrors {
    fn push(&mut self, e: String) {
        if self.kept.len() < MAX_SOURCE_ERRORS {
            self.kept.push(e);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.kept.push(format!("… and {} more errors", self.more));
        }
        self.kept
    }
}

/// `mobile.binding`: the IP lease that tied the session's client address to
/// the device.
#[derive(Debug, Clone, Serialize)]
pub struct BindingOut {
    /// `confidence`: the binding event's confidence, as the feed names it:
    /// `authenticated`, `dhcp` or `self_reported`.
    pub confidence: String,
    /// `conflict`: another device held the IP over an overlapping interval.
    pub conflict: bool,
    /// `in_grace`: the session started just after the lease ended, within the
    /// grace window.
    pub in_grace: bool,
    /// `contested`: other devices' leases also cover the session's start.
    pub contested: bool,
    /// `context`: the binding namespace the lease was found in.
    pub context: String,
    /// Where the binding came from (docs/bindings.md): the feed event's
    /// `source.kind` / `source.vendor` and the bound `identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `vendor`: the binding event's `source.vendor`, e.g. the NAS or `kea`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// `identity`: who the producer bound, when its event said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityOut>,
}

/// `mobile.binding.identity`.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityOut {
    /// `kind`: `mac`, `user`, `cert_cn`, ... as the feed sent it.
    pub kind: String,
    /// `value`: the MAC address, user name, certificate CN, ... as sent.
    pub value: String,
}

/// `mobile.app.trust_profile`: the app's TLS trust setup, from its newest
/// inventory.
#[derive(Debug, Clone, Serialize)]
pub struct TrustOut {
    /// `pin_sets`: how many pin sets the app declares.
    pub pin_sets: usize,
    /// `trusts_user_cas`: the app opts in to user-installed CAs, if the
    /// inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusts_user_cas: Option<bool>,
    /// `custom_trust_manager`: the app has its own TrustManager, if the
    /// inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_trust_manager: Option<bool>,
    /// `trust_all`: the app trusts any certificate, if the inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_all: Option<bool>,
    /// `hostname_verifier_override`: the app overrides hostname verification,
    /// if the inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname_verifier_override: Option<bool>,
    /// `okhttp_certificate_pinner`: the app uses OkHttp's `CertificatePinner`,
    /// if the inventory says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub okhttp_certificate_pinner: Option<bool>,
    /// The app has trust logic of its own (pins, custom TrustManager,
    /// OkHttp pinner, trust-all or hostname-verifier override).
    pub own_trust_logic: bool,
    /// Targets API 24+ and does not opt in to user CAs: it fails under
    /// inspection by platform default, pinning or not (docs/domain.md, user-installed CAs).
    pub platform_default: bool,
}

/// The best evidence of another app than the chosen one.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerUpOut {
    /// `package`: the other app's package.
    pub package: String,
    /// `attribution`: the kind of record its best evidence came from.
    pub attribution: &'static str,
    /// `attribution_evidence`: the level of that evidence.
    pub attribution_evidence: &'static str,
    /// `skew_ms`: event time − session start of that evidence, ms (after its
    /// source's clock offset); absent for evidence that is not an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
}

/// `mobile.app`: the app the session was attributed to, and why.
#[derive(Debug, Clone, Serialize)]
pub struct AppOut {
    /// `package`: the chosen app; absent when several fit equally
    /// (`ambiguous`) or no app is known on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// `attribution`: the kind of record the evidence came from:
    /// `net_connect`, `dns_lookup`, `runtime_trust_event`, `expected_endpoint`,
    /// `candidate`.
    pub attribution: &'static str,
    /// How strong the evidence is: `exact`, `dns`, `host`, `endpoint`, `candidate`.
    pub attribution_evidence: &'static str,
    /// Why this app and not the runner-up.
    pub attribution_reason: &'static str,
    /// Event time − session start of the evidence, ms, after taking off its
    /// source's clock offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution_skew_ms: Option<i64>,
    /// The estimated clock offset of the evidence's source, taken off its time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution_clock_offset_ms: Option<i64>,
    /// The best evidence of another app; absent when no other app has evidence
    /// above `candidate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_up: Option<RunnerUpOut>,
    /// Packages that fit equally well at the chosen level (sorted); for
    /// `candidate`, every app known on the device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// `version_code` from the newest inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_code: Option<i64>,
    /// The app's signing certificate digests, from the newest inventory
    /// (what the tuning's `allow.app_certs` matches).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_cert_sha256: Vec<String>,
    /// `target_sdk` from the newest inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_sdk: Option<u32>,
    /// The trust profile from the newest inventory; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_profile: Option<TrustOut>,
}

/// Whether the destination is in the app's baseline of approved destinations.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineOut {
    /// The session's server name matches one of the baseline's destinations.
    pub approved: bool,
    /// Where the baseline came from: `expected_endpoints` (inventory),
    /// `config`, `learned` (sessions of the app that succeeded under inspection).
    pub sources: Vec<&'static str>,
}

/// The `mobile` object.
#[derive(Debug, Clone, Serialize)]
pub struct MobileOut {
    /// `device_id`: the device whose lease covered the client IP.
    pub device_id: String,
    /// `binding`: that lease.
    pub binding: BindingOut,
    /// `app`: the app behind the session.
    pub app: AppOut,
    /// `app_state` of the app at the session's start, if the feed told it,
    /// as the feed names it (`foreground`, `background`,
    /// `foreground_service`, `stopped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_state: Option<String>,
    /// `device_locked` at the session's start, from the latest `device_state`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_locked: Option<bool>,
    /// `screen_interactive` at the session's start, from the latest
    /// `device_state`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen_interactive: Option<bool>,
    /// `secs_since_user_interaction`: whole seconds from the last user
    /// interaction to the session's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secs_since_user_interaction: Option<i64>,
    /// `baseline`: whether the destination is approved; absent when the app
    /// has no baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineOut>,
    /// Feed line numbers of the events behind this enrichment.
    pub feed_lines: Vec<u64>,
}

/// Counters for the stats record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnrichStats {
    /// `feed`: what the feed reader made of the lines.
    pub feed: FeedReportOut,
    /// Problems reaching a feed source (HTTP errors, retries, timeouts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_errors: Vec<String>,
    /// `sessions_enriched`: sessions tied to a device.
    pub sessions_enriched: u64,
    /// `sessions_without_device`: sessions whose client IP no lease covered
    /// (or whose namespace was ambiguous).
    pub sessions_without_device: u64,
    /// `events_dropped`: feed events not kept because their device held
    /// [`MAX_EVENTS_PER_DEVICE`].
    pub events_dropped: u64,
    /// `leases`: the IP lease map's counters.
    pub leases: LeasesOut,
    /// Clock offsets of the feed sources, learnt from the sessions.
    pub clock: ClockOut,
    /// Which binding namespace sessions were looked up in (`[feed]` contexts).
    pub contexts: crate::config::contexts::ContextStats,
}

/// Most sources listed in [`ClockOut::sources`] (the rest are counted).
pub const MAX_CLOCK_SOURCES_SHOWN: usize = 64;

/// `stats.enrichment.clock`: the clock offsets of the feed sources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClockOut {
    /// Session observations that gave a source candidate offsets.
    pub observations: u64,
    /// Observations skipped: a burst of connects to one destination.
    pub bursts: u64,
    /// Sources with an estimate, sorted by device, kind and vendor (at most 64).
    pub sources: Vec<ClockSourceOut>,
    /// Sources with an estimate not listed.
    pub sources_not_shown: u64,
    /// Observations not kept because the clock tracked its cap of sources.
    pub sources_dropped: u64,
}

/// One feed source with an estimated clock offset.
#[derive(Debug, Clone, Serialize)]
pub struct ClockSourceOut {
    /// `device_id`: the device whose events the source logged.
    pub device_id: String,
    /// `kind`: the source's `source.kind`.
    pub kind: String,
    /// `vendor`: the source's `source.vendor` (absent when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// event_time − packet time.
    pub offset_ms: i64,
    /// Sessions the estimate rests on.
    pub sessions: usize,
}

/// `stats.enrichment.leases`: the IP lease map's counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeasesOut {
    /// `held`: leases held now.
    pub held: u64,
    /// `inserted`: leases stored (new bindings and restored leases).
    pub inserted: u64,
    /// `renewed`: assigns that extended (or fell inside) a lease of the same
    /// device and confidence.
    pub renewed: u64,
    /// `closed`: releases and expires applied to a lease.
    pub closed: u64,
    /// `conflicts`: overlaps between two devices' bindings, plus `conflict`
    /// events.
    pub conflicts: u64,
    /// Leases dropped because the map was full (oldest first).
    pub evicted: u64,
    /// Leases dropped because their (context, IP) held 256 (oldest first).
    pub evicted_per_key: u64,
    /// `ignored`: bindings without a usable time.
    pub ignored: u64,
}

/// `stats.enrichment.feed`: the feed reader's counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedReportOut {
    /// `lines`: lines read.
    pub lines: u64,
    /// `events`: lines that gave an event.
    pub events: u64,
    /// `malformed`: lines that are not JSON objects, miss a required field
    /// or carry an ill-typed or unknown value.
    pub malformed: u64,
    /// `unknown_event_type`: lines whose `event_type` is none of the v1 types.
    pub unknown_event_type: u64,
    /// `bad_timestamp`: lines with a time field that is not an RFC 3339
    /// string in range.
    pub bad_timestamp: u64,
    /// `unsupported_version`: lines of another `schema_version`.
    pub unsupported_version: u64,
    /// The first problems, with line numbers.
    pub problems: Vec<String>,
}

impl From<&FeedReport> for FeedReportOut {
    fn from(r: &FeedReport) -> Self {
        FeedReportOut {
            lines: r.lines,
            events: r.events,
            malformed: r.malformed,
            unknown_event_type: r.unknown_event_type,
            bad_timestamp: r.bad_timestamp,
            unsupported_version: r.unsupported_version,
            problems: r.problems.iter().map(|p| format!("line {}: {:?}: {}", p.line_no, p.kind, p.detail)).collect(),
        }
    }
}

/// The feed, loaded and indexed.
pub struct Enricher {
    leases: LeaseMap,
    /// Approved destinations per app from the configuration.
    pub config_baselines: HashMap<String, Vec<String>>,
    /// Destinations learned per app from sessions that succeeded under inspection.
    learned: HashMap<String, Vec<String>>,
    contexts: Vec<String>,
    events: HashMap<String, Vec<Event>>,
    attribution: AttributionConfig,
    /// Clock offset of each feed source, learnt from the sessions.
    clock: ClockOffsets,
    /// Counters for `stats.enrichment`; see [`Enricher::stats_out`].
    pub stats: EnrichStats,
    /// Binding namespaces by interface, VLAN or pool (`[[feed.contexts]]`).
    pub context_map: crate::config::contexts::ContextMap,
}

impl Enricher {
    /// Read feed files (JSON lines). Bad lines are counted, never fatal; an
    /// unreadable file is an error. See [`Enricher::load_sources`].
    pub fn load(paths: &[impl AsRef<Path>]) -> anyhow::Result<Self> {
        let (mut en, errors) = Self::load_sources(paths, &[], std::time::Duration::from_secs(60))?;
        en.stats.source_errors = errors;
        Ok(en)
    }

    /// Read feed files and pull HTTP feeds (cursor-paged, until caught up;
    /// all URLs together at most `http_timeout`). A feed that reports errors
    /// is still read as far as it goes; its errors are returned for the
    /// caller to show (the first [`MAX_SOURCE_ERRORS`], then a count). Files
    /// are streamed line by line exactly as an HTTP page is split: a bad line
    /// (invalid UTF-8 included) is counted with its line number, an
    /// over-long one ([`crate::enrich::feed_source::PumpConfig::max_line_bytes`]) is
    /// reported; only a file that cannot be opened is an error. At most
    /// [`MAX_FEED_FILE_BYTES`] are read of a file and [`MAX_FEED_EVENTS`]
    /// events are held in all: past it, a file's or a URL's further events
    /// are not read (counted in `events_dropped`, reported).
    pub fn load_sources(
        files: &[impl AsRef<Path>],
        urls: &[String],
        http_timeout: std::time::Duration,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        Self::load_sources_via(files, urls, http_timeout, None)
    }

    /// [`Enricher::load_sources`] with the URLs reached through `http`
    /// (headers, CA bundle, client certificate). When a URL's first request
    /// fails in a way retrying cannot fix (DNS, refused, TLS, 401/403, 404,
    /// other 4xx), that is the error, at once
    /// ([`crate::enrich::feed_source::first_answer`]).
    pub fn load_sources_via(
        files: &[impl AsRef<Path>],
        urls: &[String],
        http_timeout: std::time::Duration,
        http: Option<std::sync::Arc<crate::config::http::HttpTransport>>,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        use crate::enrich::feed_source::{read_file_lines, FeedMsg, FeedPump, FeedSource, PumpConfig};

        let mut reader = FeedReader::default();
        let mut all = Vec::new();
        let mut line_no = 0u64;
        let mut errors = SourceErrors::default();
        let mut full = false;
        let cfg = PumpConfig { http, ..PumpConfig::default() };
        for p in files {
            let p = p.as_ref();
            if full {
                break;
            }
            // Numbers run on across sources (as before); within a file they
            // are the splitter's, so a dropped over-long line keeps its number.
            let base = line_no;
            read_file_lines(p, &cfg, MAX_FEED_FILE_BYTES, |m| {
                match m {
                    FeedMsg::Line { text, line_no: n } => {
                        line_no = base + n;
                        all.extend(reader.push_line(&text, line_no));
                    }
                    FeedMsg::Error(e) => errors.push(e),
                    FeedMsg::CaughtUp => {}
                }
                full = all.len() >= MAX_FEED_EVENTS;
                !full
            })
            .map_err(|e| anyhow::anyhow!(e))?;
        }
        // One deadline for all URLs: the documented wait is the whole wait.
        let deadline = std::time::Instant::now() + http_timeout;
        for url in urls {
            if full {
                break;
            }
            let pump = FeedPump::start_with(FeedSource::Http { url: url.clone() }, cfg.clone())?;
            crate::enrich::feed_source::first_answer(&pump, url, deadline)?;
            let mut caught_up = false;
            let base = line_no;
            while !full {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match pump.receiver().recv_timeout(left) {
                    Ok(FeedMsg::Line { text, line_no: n }) => {
                        line_no = base + n;
                        all.extend(reader.push_line(&text, line_no));
                        full = all.len() >= MAX_FEED_EVENTS;
                    }
                    Ok(FeedMsg::Error(e)) => errors.push(format!("{url}: {e}")),
                    Ok(FeedMsg::CaughtUp) | Err(crossbeam::channel::RecvTimeoutError::Disconnected) => {
                        caught_up = true;
                        break;
                    }
                    Err(crossbeam::channel::RecvTimeoutError::Timeout) => break,
                }
            }
            // Not joined: a request in flight would hold the wait past its
            // deadline; the thread ends at that request's timeout.
            pump.abandon();
            if !caught_up && !full {
                errors.push(format!("{url}: not caught up within {} s; using what arrived", http_timeout.as_secs()));
            }
        }
        let en = Self::from_events(all, reader.report());
        if full {
            errors.push(format!("feed: {MAX_FEED_EVENTS} events held, the cap; later events were not read"));
        }
        Ok((en, errors.into_vec()))
    }

    /// An enricher holding these events, with `report`'s counts in its stats.
    pub fn from_events(all: Vec<Event>, report: &FeedReport) -> Self {
        let mut en = Enricher {
            leases: LeaseMap::new(LeaseConfig::default()),
            config_baselines: HashMap::new(),
            learned: HashMap::new(),
            contexts: Vec::new(),
            events: HashMap::new(),
            attribution: AttributionConfig::default(),
            clock: ClockOffsets::default(),
            stats: EnrichStats::default(),
            context_map: Default::default(),
        };
        en.add_events(all, report);
        en
    }

    /// Take in a batch of events (the whole feed, or a late batch in live
    /// mode): correlation is on event time, whatever order they came in.
    pub fn add_events(&mut self, mut batch: Vec<Event>, report: &FeedReport) {
        batch.sort_by_key(|e| (e.event_time_ns, e.line_no));
        let mut touched: Vec<String> = Vec::new();
        for ev in batch {
            if let EventBody::IpBinding(b) = &ev.body {
                self.leases.apply_from(b, ev.device_id.as_deref(), ev.event_time_ns, ev.source.as_ref());
                if !self.contexts.contains(&b.network.context) {
                    self.contexts.push(b.network.context.clone());
                }
                continue;
            }
            if let Some(d) = ev.device_id.clone() {
                let v = self.events.entry(d.clone()).or_default();
                if v.len() < MAX_EVENTS_PER_DEVICE {
                    if v.last().is_some_and(|l| (l.event_time_ns, l.line_no) > (ev.event_time_ns, ev.line_no)) && !touched.contains(&d) {
                        touched.push(d);
                    }
                    v.push(ev);
                } else {
                    self.stats.events_dropped += 1;
                }
            }
        }
        // A late batch may hold events older than ones already held.
        for d in touched {
            if let Some(v) = self.events.get_mut(&d) {
                v.sort_by_key(|e| (e.event_time_ns, e.line_no));
            }
        }
        let ls = self.leases.stats();
        self.stats.leases = LeasesOut {
            held: self.leases.len() as u64,
            inserted: ls.inserted,
            renewed: ls.renewed,
            closed: ls.closed,
            conflicts: ls.conflicts,
            evicted: ls.evicted,
            evicted_per_key: ls.evicted_per_key,
            ignored: ls.ignored,
        };
        self.note_feed_report(report);
    }

    /// The counters for the stats record, with the clock offsets as they
    /// stand.
    pub fn stats_out(&self) -> EnrichStats {
        let mut st = self.stats.clone();
        let est = self.clock.estimates();
        let cs = self.clock.stats();
        st.clock = ClockOut {
            observations: cs.observations,
            bursts: cs.bursts,
            sources_not_shown: est.len().saturating_sub(MAX_CLOCK_SOURCES_SHOWN) as u64,
            sources_dropped: cs.sources_dropped,
            sources: est
                .into_iter()
                .take(MAX_CLOCK_SOURCES_SHOWN)
                .map(|(k, off, n)| ClockSourceOut {
                    device_id: k.device,
                    kind: k.kind,
                    vendor: k.vendor,
                    offset_ms: off / 1_000_000,
                    sessions: n,
                })
                .collect(),
        };
        st
    }

    /// The feed reader's counts (lines, malformed, unknown types, problems)
    /// as the stats record shows them.
    pub fn note_feed_report(&mut self, report: &FeedReport) {
        self.stats.feed = report.into();
    }

    /// [`Enricher::enrich`] again for a session already counted (a late batch landed).
    pub fn re_enrich(&mut self, client: IpAddr, dst: IpAddr, dst_port: u16, sni: Option<&str>, start_ns: i64) -> Option<MobileOut> {
        self.re_enrich_at(None, &[], client, dst, dst_port, sni, start_ns)
    }

    /// [`Enricher::enrich_at`] again for a session already counted.
    #[allow(clippy::too_many_arguments)]
    pub fn re_enrich_at(
        &mut self,
        iface: Option<&str>,
        vlans: &[u16],
        client: IpAddr,
        dst: IpAddr,
        dst_port: u16,
        sni: Option<&str>,
        start_ns: i64,
    ) -> Option<MobileOut> {
        let (with, without, ctx) = (self.stats.sessions_enriched, self.stats.sessions_without_device, self.stats.contexts.clone());
        let m = self.enrich_at(iface, vlans, client, dst, dst_port, sni, start_ns);
        self.stats.sessions_enriched = with;
        self.stats.sessions_without_device = without;
        self.stats.contexts = ctx;
        m
    }

    /// Enrich one session by its client IP at its start time, where it was
    /// seen unknown (replay without VLANs: only `[[feed.contexts]]` by
    /// `cidrs` can match).
    pub fn enrich(&mut self, client: IpAddr, dst: IpAddr, dst_port: u16, sni: Option<&str>, start_ns: i64) -> Option<MobileOut> {
        self.enrich_at(None, &[], client, dst, dst_port, sni, start_ns)
    }

    /// The binding of `place.client` at `ts_ns` in the namespace the
    /// session's place selects ([`crate::config::contexts`]): context, device,
    /// and the binding's flags.
    fn binding_at(&mut self, place: &crate::config::contexts::Place<'_>, ts_ns: i64) -> Option<(String, String, BindingOut)> {
        use crate::config::contexts::Resolved;
        let out = |ctx: &str, m: &pinwatch_enrichment::leases::LeaseMatch<'_>| {
            (
                ctx.to_string(),
                m.lease.device_id.clone(),
                BindingOut {
                    confidence: m.lease.confidence.as_str().to_string(),
                    conflict: m.lease.conflict,
                    in_grace: m.in_grace,
                    contested: m.contested,
                    context: ctx.to_string(),
                    source: m.lease.origin.as_ref().and_then(|o| o.kind.clone()),
                    vendor: m.lease.origin.as_ref().and_then(|o| o.vendor.clone()),
                    identity: m
                        .lease
                        .origin
                        .as_ref()
                        .and_then(|o| o.identity.as_ref())
                        .map(|i| IdentityOut { kind: i.kind.clone(), value: i.value.clone() }),
                },
            )
        };
        match self.context_map.resolve(place) {
            Resolved::Context(c) => {
                self.stats.contexts.matched += 1;
                self.leases.lookup(&c, place.client, ts_ns).map(|m| out(&c, &m))
            }
            Resolved::Default(c) => {
                self.stats.contexts.default += 1;
                self.leases.lookup(&c, place.client, ts_ns).map(|m| out(&c, &m))
            }
            Resolved::Ambiguous => {
                self.stats.contexts.ambiguous_config += 1;
                None
            }
            Resolved::Any => {
                self.stats.contexts.any += 1;
                let hits: Vec<(String, String, BindingOut)> =
                    self.contexts.iter().filter_map(|c| self.leases.lookup(c, place.client, ts_ns).map(|m| out(c, &m))).collect();
                let first = hits.first()?;
                if hits.iter().any(|h| h.1 != first.1) {
                    // Bound to different devices in several namespaces and
                    // nothing says which one this session is in: no guess.
                    self.stats.contexts.ambiguous_feed += 1;
                    return None;
                }
                hits.into_iter().next()
            }
        }
    }

    /// Enrich one session by its client IP at its start time, looked up in
    /// the binding namespace of where it was seen: capture interface
    /// (`in_iface`, live), VLAN ids, client address.
    #[allow(clippy::too_many_arguments)]
    pub fn enrich_at(
        &mut self,
        iface: Option<&str>,
        vlans: &[u16],
        client: IpAddr,
        dst: IpAddr,
        dst_port: u16,
        sni: Option<&str>,
        start_ns: i64,
    ) -> Option<MobileOut> {
        let place = crate::config::contexts::Place { iface, vlans, client };
        let Some((_context, device_id, binding)) = self.binding_at(&place, start_ns) else {
            self.stats.sessions_without_device += 1;
            return None;
        };
        let empty = Vec::new();
        let events = self.events.get(&device_id).unwrap_or(&empty);
        let q = SessionQuery { device_id: &device_id, dst_ip: dst, dst_port, sni, session_start_ns: start_ns };
        // The session teaches the clock offsets of the sources that logged
        // it (a repeat of the same session replaces what it taught), then
        // is attributed with them.
        self.clock.observe(events, &q);
        let a = attribute_with(events, &q, &self.attribution, Some(&self.clock));
        let mut feed_lines: Vec<u64> = Vec::new();
        if let Some(i) = a.event_index {
            feed_lines.extend(events.get(i).map(|e| e.line_no));
        }
        if let Some(i) = a.device.event_index {
            feed_lines.extend(events.get(i).map(|e| e.line_no));
        }
        // The newest inventory entry of the chosen app (inventories are snapshots).
        let inventory: Option<(&InventoryApp, u64)> = a.package.as_deref().and_then(|pkg| {
            events
                .iter()
                .filter_map(|e| match &e.body {
                    EventBody::AppInventory(inv) if inv.app.package == pkg => Some((&inv.app, e.line_no)),
                    _ => None,
                })
                .next_back()
        });
        if let Some((_, line)) = inventory {
            feed_lines.push(line);
        }
        feed_lines.sort_unstable();
        feed_lines.dedup();
        let trust_profile = inventory.map(|(app, _)| {
            let t = &app.trust_profile;
            let own = !t.pin_sets.is_empty()
                || t.custom_trust_manager == Some(true)
                || t.okhttp_certificate_pinner == Some(true)
                || t.trust_all == Some(true)
                || t.hostname_verifier_override == Some(true);
            TrustOut {
                pin_sets: t.pin_sets.len(),
                trusts_user_cas: t.trusts_user_cas,
                custom_trust_manager: t.custom_trust_manager,
                trust_all: t.trust_all,
                hostname_verifier_override: t.hostname_verifier_override,
                okhttp_certificate_pinner: t.okhttp_certificate_pinner,
                own_trust_logic: own,
                platform_default: !own && app.target_sdk.is_some_and(|s| s >= 24) && t.trusts_user_cas != Some(true),
            }
        });
        let baseline = match (a.package.as_deref(), sni) {
            (Some(pkg), Some(host)) => self.baseline(pkg, inventory.map(|(app, _)| app), host),
            _ => None,
        };
        self.stats.sessions_enriched += 1;
        Some(MobileOut {
            device_id,
            binding,
            app: AppOut {
                package: a.package.clone(),
                attribution: a.method.as_str(),
                attribution_evidence: a.strength.as_str(),
                attribution_reason: a.reason.as_str(),
                attribution_skew_ms: a.skew_ms,
                attribution_clock_offset_ms: a.clock_offset_ms,
                runner_up: a.runner_up.as_ref().map(|r| RunnerUpOut {
                    package: r.package.clone(),
                    attribution: r.method.as_str(),
                    attribution_evidence: r.strength.as_str(),
                    skew_ms: r.skew_ms,
                }),
                candidates: a.candidates.clone(),
                version_code: inventory.and_then(|(app, _)| app.version_code),
                signing_cert_sha256: inventory.map(|(app, _)| app.signing_cert_sha256.clone()).unwrap_or_default(),
                target_sdk: inventory.and_then(|(app, _)| app.target_sdk),
                trust_profile,
            },
            app_state: a.app_state.map(|s| s.as_str().to_string()),
            device_locked: a.device.device_locked,
            screen_interactive: a.device.screen_interactive,
            secs_since_user_interaction: a.device.secs_since_interaction,
            baseline,
            feed_lines,
        })
    }

    /// The app's baseline verdict for `host`, if the app has any baseline.
    fn baseline(&self, pkg: &str, inv: Option<&InventoryApp>, host: &str) -> Option<BaselineOut> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut sources = Vec::new();
        let mut approved = false;
        let mut check = |name: &'static str, list: &[String]| {
            if !list.is_empty() {
                sources.push(name);
                approved |= list.iter().any(|p| host_matches(p, &host));
            }
        };
        if let Some(app) = inv {
            let mut eps = app.expected_endpoints.clone();
            eps.extend(app.trust_profile.pin_sets.iter().flat_map(|p| {
                p.domains.iter().flat_map(move |d| {
                    let mut v = vec![d.clone()];
                    if p.include_subdomains {
                        v.push(format!("*.{d}"));
                    }
                    v
                })
            }));
            check("expected_endpoints", &eps);
        }
        if let Some(list) = self.config_baselines.get(pkg) {
            check("config", list);
        }
        if let Some(list) = self.learned.get(pkg) {
            check("learned", list);
        }
        (!sources.is_empty()).then_some(BaselineOut { approved, sources })
    }

    /// The IP → device map (a state file keeps it).
    pub fn leases(&self) -> &LeaseMap {
        &self.leases
    }

    /// Put back a lease a state file kept ([`LeaseMap::restore`]); its
    /// context becomes one the session lookup tries.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_lease(
        &mut self,
        ctx: &str,
        ip: IpAddr,
        device: &str,
        from_ns: i64,
        until_ns: i64,
        confidence: pinwatch_enrichment::feed::Confidence,
        end: pinwatch_enrichment::leases::EndReason,
        conflict: bool,
    ) {
        self.leases.restore(ctx, ip, device, from_ns, until_ns, confidence, end, conflict);
        if !self.contexts.iter().any(|c| c == ctx) {
            self.contexts.push(ctx.to_string());
        }
        self.refresh_lease_stats();
    }

    fn refresh_lease_stats(&mut self) {
        let ls = self.leases.stats();
        self.stats.leases = LeasesOut {
            held: self.leases.len() as u64,
            inserted: ls.inserted,
            renewed: ls.renewed,
            closed: ls.closed,
            conflicts: ls.conflicts,
            evicted: ls.evicted,
            evicted_per_key: ls.evicted_per_key,
            ignored: ls.ignored,
        };
    }

    /// Destinations learned per app (a state file keeps them).
    pub fn learned(&self) -> &HashMap<String, Vec<String>> {
        &self.learned
    }

    /// Clock offsets learnt so far: `(source, offset ns, sessions)`.
    pub fn clock_estimates(&self) -> Vec<(pinwatch_enrichment::clock::SourceKey, i64, usize)> {
        self.clock.estimates()
    }

    /// Put back a clock offset a state file kept.
    pub fn restore_clock(&mut self, key: pinwatch_enrichment::clock::SourceKey, offset_ns: i64, sessions: usize) {
        self.clock.restore_estimate(key, offset_ns, sessions);
    }

    /// Learn a destination for an app from a session that succeeded under inspection.
    pub fn learn(&mut self, pkg: &str, host: &str) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let v = self.learned.entry(pkg.to_string()).or_default();
        if !v.contains(&host) && v.len() < 1024 {
            v.push(host);
        }
    }
}

/// The AN1725 verdict joining device evidence to a session's network findings.
#[derive(Debug, Clone, Serialize)]
pub struct An1725 {
    /// `an1725.confidence`: `high`, `medium` or `low` (for a folded alert, the
    /// strongest so far).
    pub confidence: &'static str,
    /// `an1725.reasons`: each names its source (`network:fallback:flow:ID`,
    /// `trust:own_trust_logic`, `app_state:background`, ...).
    pub reasons: Vec<String>,
    /// Stable id of the folded alert: repeats for the same device, app and
    /// destination within the fold window update it (higher `revision`).
    pub alert_id: String,
    /// Revision of the folded alert: 1 for the first, higher for each update
    /// (0 until [`Folder::fold`] sets it); consumers keep the highest.
    pub revision: u32,
    /// Sessions folded into this alert so far.
    pub count: u32,
}

#[derive(Debug, Clone)]
struct Folded {
    alert_id: String,
    first_ns: i64,
    revision: u32,
    count: u32,
    confidence: &'static str,
    flow_ids: Vec<u64>,
}

type FoldKey = (String, String, String);

/// Folds repeated AN1725 alerts for the same (device, app, destination)
/// within a window into one alert id with increasing revisions. An alert
/// never lists sessions of two apps: flows the folder has seen as another
/// app's sessions are left out of an alert's flow ids, and a session whose
/// app changed (a late batch re-attributed it) leaves the alert of its old
/// app (its later revisions no longer list it).
/// At most `max_keys` folds are open and `max_keys` sessions placed: past
/// it, those older than the window are closed, and if the window itself
/// holds more, the older half of them (amortised O(1) per fold; counted in
/// `dropped`: a later repeat of a dropped fold starts a new alert id).
pub struct Folder {
    window_ns: i64,
    open: HashMap<FoldKey, Folded>,
    /// The key each session was last folded under, and its start.
    placed: HashMap<u64, (FoldKey, i64)>,
    /// Most open folds and placed sessions (100,000 by default).
    pub max_keys: usize,
    /// Open folds (and placed sessions) closed early because the window
    /// held `max_keys`.
    pub dropped: u64,
}

fn rank(c: &str) -> u8 {
    match c {
        "high" => 3,
        "medium" => 2,
        _ => 1,
    }
}

impl Folder {
    /// A folder with no open folds, folding repeats within `window_ns`.
    pub fn new(window_ns: i64) -> Self {
        Folder { window_ns, open: HashMap::new(), placed: HashMap::new(), max_keys: 100_000, dropped: 0 }
    }

    /// Open folds and placed sessions, the larger: at most `max_keys`.
    pub fn held(&self) -> usize {
        self.open.len().max(self.placed.len())
    }

    /// Fold the verdict of session `flow_id` in (`flow_ids`: its evidence):
    /// returns it with its alert id, revision, count and the flow ids of
    /// every folded session (the strongest confidence wins).
    pub fn fold(
        &mut self,
        mut v: An1725,
        m: &MobileOut,
        destination: &str,
        start_ns: i64,
        flow_id: u64,
        flow_ids: &[u64],
    ) -> (An1725, Vec<u64>) {
        let key: FoldKey = (m.device_id.clone(), m.app.package.clone().unwrap_or_default(), destination.to_ascii_lowercase());
        let max = self.max_keys.max(1);
        if (self.open.len() >= max && !self.open.contains_key(&key)) || (self.placed.len() >= max && !self.placed.contains_key(&flow_id)) {
            let cutoff = Timestamp::from_ns(start_ns) - self.window_ns;
            self.open.retain(|_, f| Timestamp::from_ns(f.first_ns) >= cutoff);
            self.placed.retain(|_, (_, t)| Timestamp::from_ns(*t) >= cutoff);
            // The window itself is full: close the older half.
            if self.open.len() >= max {
                let mut starts: Vec<i64> = self.open.values().map(|f| f.first_ns).collect();
                let mid = starts.len() / 2;
                let (_, &mut median, _) = starts.select_nth_unstable(mid);
                let before = self.open.len();
                self.open.retain(|_, f| f.first_ns > median);
                self.dropped += (before - self.open.len()) as u64;
            }
            if self.placed.len() >= max {
                let mut starts: Vec<i64> = self.placed.values().map(|(_, t)| *t).collect();
                let mid = starts.len() / 2;
                let (_, &mut median, _) = starts.select_nth_unstable(mid);
                let before = self.placed.len();
                self.placed.retain(|_, (_, t)| *t > median);
                self.dropped += (before - self.placed.len()) as u64;
            }
        }
        // Re-attributed to another app: out of the old app's alert.
        if let Some((old, _)) = self.placed.get(&flow_id).filter(|(k, _)| k.1 != key.1) {
            if let Some(f) = self.open.get_mut(old) {
                if let Some(i) = f.flow_ids.iter().position(|id| *id == flow_id) {
                    f.flow_ids.remove(i);
                    f.count = f.count.saturating_sub(1);
                }
            }
        }
        self.placed.insert(flow_id, (key.clone(), start_ns));
        // Evidence the folder knows as another app's sessions stays out.
        let placed = &self.placed;
        let flow_ids: Vec<u64> =
            flow_ids.iter().copied().filter(|id| *id == flow_id || placed.get(id).is_none_or(|(k, _)| k.1 == key.1)).collect();
        let flow_ids = flow_ids.as_slice();
        let fresh = |v: &An1725| Folded {
            alert_id: format!("an1725-{}-{}", start_ns, flow_ids.first().copied().unwrap_or(0)),
            first_ns: start_ns,
            revision: 0,
            count: 0,
            confidence: v.confidence,
            flow_ids: Vec::new(),
        };
        let f = self.open.entry(key).or_insert_with(|| fresh(&v));
        if Timestamp::from_ns(start_ns) - Timestamp::from_ns(f.first_ns) > self.window_ns {
            *f = fresh(&v);
        }
        f.revision += 1;
        // A session seen again (its enrichment changed) is not a repeat.
        if flow_ids.is_empty() || flow_ids.iter().any(|id| !f.flow_ids.contains(id)) {
            f.count += 1;
        }
        if rank(v.confidence) > rank(f.confidence) {
            f.confidence = v.confidence;
        }
        for id in flow_ids {
            if !f.flow_ids.contains(id) && f.flow_ids.len() < 256 {
                f.flow_ids.push(*id);
            }
        }
        v.alert_id = f.alert_id.clone();
        v.revision = f.revision;
        v.count = f.count;
        v.confidence = f.confidence;
        (v, f.flow_ids.clone())
    }
}

/// Score an enriched session that raised network findings (`sids`).
pub fn an1725(m: &MobileOut, sids: &[u32], flow_id: u64) -> Option<An1725> {
    use crate::verdict::findings::{SID_DIRECT, SID_FALLBACK, SID_INSPECTION_FAILURE, SID_OPAQUE};
    let network: Vec<String> = sids
        .iter()
        .filter_map(|s| match *s {
            SID_INSPECTION_FAILURE => Some(format!("network:inspection_failure:flow:{flow_id}")),
            SID_FALLBACK => Some(format!("network:fallback:flow:{flow_id}")),
            SID_DIRECT => Some(format!("network:direct_tls:flow:{flow_id}")),
            SID_OPAQUE => Some(format!("network:opaque_session:flow:{flow_id}")),
            _ => None,
        })
        .collect();
    let mut network = network;
    if sids.contains(&crate::verdict::findings::SID_BASELINE) {
        network.push(format!("network:unapproved_destination:flow:{flow_id}"));
    }
    if network.is_empty() || m.app.package.is_none() {
        return None;
    }
    let mut reasons = network;
    let lines = m.feed_lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",");
    reasons.push(format!("app:{}:attribution:{}:feed_lines:{lines}", m.app.package.as_deref().unwrap_or("?"), m.app.attribution));
    let tp = m.app.trust_profile.as_ref();
    let own = tp.is_some_and(|t| t.own_trust_logic);
    let platform_default = tp.is_some_and(|t| t.platform_default);
    if own {
        reasons.push("trust:own_trust_logic".to_string());
    }
    if platform_default {
        reasons.push("trust:platform_default_api24_no_user_cas".to_string());
    }
    let unattended = m.app_state.as_deref().is_some_and(|s| s == "background")
        || m.device_locked == Some(true)
        || m.secs_since_user_interaction.is_some_and(|s| s > 60);
    if let Some(s) = &m.app_state {
        reasons.push(format!("app_state:{s}"));
    }
    if m.device_locked == Some(true) {
        reasons.push("device_locked".to_string());
    }
    if let Some(s) = m.secs_since_user_interaction {
        reasons.push(format!("secs_since_user_interaction:{s}"));
    }
    let strong_network =
        sids.contains(&SID_INSPECTION_FAILURE) || sids.contains(&SID_FALLBACK) || sids.contains(&crate::verdict::findings::SID_BASELINE);
    let confidence = if own && strong_network && unattended {
        "high"
    } else if own && strong_network {
        "medium"
    } else {
        "low"
    };
    Some(An1725 { confidence, reasons, alert_id: String::new(), revision: 0, count: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mobile(app: &str) -> MobileOut {
        MobileOut {
            device_id: "dev".into(),
            binding: BindingOut {
                confidence: "dhcp".into(),
                conflict: false,
                in_grace: false,
                contested: false,
                context: "lan".into(),
                source: None,
                vendor: None,
                identity: None,
            },
            app: AppOut {
                package: Some(app.into()),
                attribution: "net_connect",
                attribution_evidence: "exact",
                attribution_reason: "sole_evidence",
                attribution_skew_ms: Some(0),
                attribution_clock_offset_ms: None,
                runner_up: None,
                candidates: vec![app.into()],
                version_code: None,
                signing_cert_sha256: Vec::new(),
                target_sdk: None,
                trust_profile: None,
            },
            app_state: None,
            device_locked: None,
            screen_interactive: None,
            secs_since_user_interaction: None,
            baseline: None,
            feed_lines: Vec::new(),
        }
    }

    fn verdict() -> An1725 {
        An1725 { confidence: "medium", reasons: Vec::new(), alert_id: String::new(), revision: 0, count: 0 }
    }

    /// Another app's sessions never enter an alert, even when the evidence
    /// handed in names them; a session re-attributed to another app leaves
    /// its old app's alert.
    #[test]
    fn an_alert_never_holds_two_apps() {
        let mut f = Folder::new(300_000_000_000);
        let (a1, ids) = f.fold(verdict(), &mobile("a"), "h", 0, 1, &[1]);
        assert_eq!((ids, a1.count), (vec![1], 1));
        // B's session comes with evidence that lists A's session 1.
        let (b2, ids) = f.fold(verdict(), &mobile("b"), "h", 10, 2, &[1, 2]);
        assert_eq!(ids, vec![2]);
        assert_ne!(b2.alert_id, a1.alert_id);
        // A's second session joins A's alert.
        let (a3, ids) = f.fold(verdict(), &mobile("a"), "h", 20, 3, &[2, 3]);
        assert_eq!((a3.alert_id.as_str(), ids, a3.count), (a1.alert_id.as_str(), vec![1, 3], 2));
        // A late batch shows session 1 was B's: it moves to B's alert and
        // A's next revision no longer lists it.
        let (b1, ids) = f.fold(verdict(), &mobile("b"), "h", 0, 1, &[1, 3]);
        assert_eq!((b1.alert_id.as_str(), ids), (b2.alert_id.as_str(), vec![2, 1]));
        let (a3, ids) = f.fold(verdict(), &mobile("a"), "h", 20, 3, &[3]);
        assert_eq!((ids, a3.count), (vec![3], 1));
    }
}
