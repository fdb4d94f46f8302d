//! The reporting desk, sans I/O: classified sessions in, records out.
//!
//! In the style of quinn-proto: what comes in is handed to `handle_*`
//! methods — flows that ended ([`Reporter::handle_ended`], or
//! [`Reporter::handle_prepared`] when another thread prepared them, and
//! open sessions whose verdict is due, [`crate::flow::decision`]), the capture
//! clock every input has reached ([`Reporter::handle_time`],
//! [`Reporter::handle_watermark`], [`Reporter::handle_end_of_input`]),
//! device feed lines ([`Reporter::handle_feed_line`],
//! [`Reporter::handle_feed_apply`]) — and the records come out of
//! [`Reporter::poll_record`], one line each, in the order of
//! [`crate::flow::OrderKey`] whatever order the inputs arrived in. The
//! desk enriches (the device feed's `mobile`), judges what the flows'
//! threads could not (an inline inspector's profile), correlates the
//! findings (the fallback pattern, AN1725) and renders the alerts; the
//! writer is outside (`crate::run::engine::WriteOut`).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use crate::flow::{Ended, OrderKey, Proto};
use crate::output::eve;
use crate::run::options::Options;
use crate::verdict::classify;
use crate::verdict::findings::{AlertBody, Correlator, SessionFacts};

/// An ended flow waiting for its turn in the output.
struct Pending(Prepared);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // A session reported while open comes before its flow's end at the
        // same key (a new SYN on its tuple at the clock of its verdict).
        (self.0.order, self.0.end).cmp(&(other.0.order, other.0.end))
    }
}

/// Counters of the output stage.
#[derive(Debug, Default, Clone)]
pub struct ReportStats {
    /// `tls` records made.
    pub tls_records_logged: u64,
    /// `quic` records made.
    pub quic_records_logged: u64,
    /// Alerts raised, those the tuning withheld included (the stats record counts the ones
    /// written).
    pub alerts_logged: u64,
    /// `flow` records: ends of sessions reported while open.
    pub flow_records_logged: u64,
    /// Sessions per outcome, lower case: `established`, `clientrejected_c` (outcome and class),
    /// `incomplete_capturegap` (incomplete by kind); QUIC ones prefixed `quic_`.
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Most ended flows held at once, waiting for slower shards.
    pub pending_max: u64,
    /// AN1725 alerts written again because a late feed batch changed them.
    pub late_enrichment_updates: u64,
    /// Sessions with findings dropped from the late-enrichment window (cap).
    pub late_enrichment_dropped: u64,
}

/// A session with network findings, kept while a late feed batch could
/// still change its AN1725 verdict (live mode).
struct Revisit {
    header: eve::Header<'static>,
    pcap: Option<String>,
    iface: Option<String>,
    host: Option<String>,
    brief: Brief,
    failure: classify::TlsFailure,
    path: classify::PathOut,
    start_ns: i64,
    sids: Vec<u32>,
    /// The confidence of the surest network finding.
    net_conf: classify::Confidence,
    flow_ids: Vec<u64>,
    /// The verdict last written: confidence and reasons.
    last: Option<(&'static str, Vec<String>)>,
}

/// Feed lines that arrive while packets flow (live mode).
struct Streaming {
    reader: pinwatch_enrichment::feed::FeedReader,
    line_no: u64,
    batch: Vec<pinwatch_enrichment::feed::Event>,
    revisit: std::collections::VecDeque<Revisit>,
    window_ns: i64,
}

/// Sessions kept for late enrichment at most.
const MAX_REVISIT: usize = 100_000;

/// Classification, enrichment, findings and output of ended flows, written
/// in [`crate::flow::OrderKey`] order.
pub struct Reporter {
    config: crate::config::Config,
    ocsf: bool,
    names: Naming,
    pub(crate) correlator: Correlator,
    /// The device feed's enricher; `None` without a feed.
    pub enricher: Option<crate::enrich::Enricher>,
    pub(crate) folder: crate::enrich::Folder,
    pending: BinaryHeap<Reverse<Pending>>,
    /// The counters of the output stage.
    pub stats: ReportStats,
    /// Records out, in order, for [`Reporter::poll_record`].
    outbox: VecDeque<Vec<u8>>,
    /// The first error of the writer that polls this reporter (the
    /// reporter itself does no I/O): kept for the run's summary.
    output_error: Option<std::io::Error>,
    streaming: Option<Streaming>,
    /// The inline inspector's profile ([`crate::verdict::inspector`]).
    profile: crate::verdict::inspector::Profile,
    /// Sessions reported while open, until their `flow` record: the
    /// digest of the verdict reported ([`crate::output::flow_end::digest`]) and
    /// whether the report raised an alert (`flow.alerted`). At most one
    /// per open flow, so the flow cap bounds it.
    open: std::collections::HashMap<u64, (u32, bool)>,
    /// The key of the last [`Reporter::handle_drained`] flow (a check).
    last_drained: Option<OrderKey>,
    /// Alert tuning: which alerts are written ([`crate::verdict::tuning`]).
    pub tuning: crate::verdict::tuning::Tuning,
}

impl Reporter {
    /// `names`: the capture file names, indexed by a flow's `source`.
    pub fn new(opts: &Options, names: Vec<String>) -> anyhow::Result<Self> {
        let mut enricher = if opts.feeds.is_empty() && opts.feed_urls.is_empty() {
            None
        } else {
            let (mut en, errors) = crate::enrich::Enricher::load_sources_via(
                &opts.feeds,
                &opts.feed_urls,
                std::time::Duration::from_secs(60),
                opts.config.feed.http.clone(),
            )?;
            en.stats.source_errors = errors;
            Some(en)
        };
        if let Some(en) = enricher.as_mut() {
            en.config_baselines = opts.config.baselines.clone();
            en.context_map = opts.config.feed.contexts.clone();
        }
        Ok(Reporter {
            config: opts.config.clone(),
            ocsf: opts.ocsf,
            names: Naming { names, live: opts.live, host: opts.sensor_name.clone() },
            correlator: Correlator::new(opts.config.clone()),
            enricher,
            folder: crate::enrich::Folder::new(opts.config.fallback_window_ns),
            pending: BinaryHeap::new(),
            stats: ReportStats::default(),
            outbox: VecDeque::new(),
            output_error: None,
            streaming: None,
            profile: crate::verdict::inspector::Profile::new(&opts.config),
            open: Default::default(),
            last_drained: None,
            tuning: crate::verdict::tuning::Tuning::new(opts.config.tuning.clone()),
        })
    }

    /// Live mode: device feed lines arrive while packets flow, up to
    /// `window_ns` of capture time late. An AN1725 alert is written at once
    /// with what is known; when a late batch changes a session's verdict
    /// (a device or app found, a higher confidence) the alert is written
    /// again with the same `alert_id` and a higher `revision`.
    pub fn enable_streaming_feed(&mut self, window_ns: i64) {
        if self.enricher.is_none() {
            let mut en = crate::enrich::Enricher::from_events(Vec::new(), &Default::default());
            en.config_baselines = self.config.baselines.clone();
            en.context_map = self.config.feed.contexts.clone();
            self.enricher = Some(en);
        }
        self.streaming =
            Some(Streaming { reader: Default::default(), line_no: 0, batch: Vec::new(), revisit: Default::default(), window_ns });
    }

    /// One feed line (JSON, `enrichment/FEED.md`), numbered in arrival
    /// order; applied by [`Reporter::handle_feed_apply`].
    pub fn handle_feed_line(&mut self, text: &str) {
        let n = self.streaming.as_ref().map_or(0, |st| st.line_no + 1);
        self.handle_feed_line_at(text, n);
    }

    /// One feed line with the line number its source gives it (a followed
    /// file's own line number), which reasons and problems then cite.
    pub fn handle_feed_line_at(&mut self, text: &str, line_no: u64) {
        if let Some(st) = self.streaming.as_mut() {
            st.line_no = line_no;
            match st.reader.push_line(text, line_no) {
                Some(ev) => st.batch.push(ev),
                // Not an event (malformed, an unknown type, ...): nothing to
                // apply, but the stats must count it now, not whenever the
                // next good line lands (a bad line alone was never counted).
                None => {
                    if let Some(en) = self.enricher.as_mut() {
                        en.note_feed_report(st.reader.report());
                    }
                }
            }
        }
    }

    /// Feed lines taken by [`Reporter::handle_feed_line`] and not applied yet.
    pub fn feed_pending(&self) -> usize {
        self.streaming.as_ref().map_or(0, |st| st.batch.len())
    }

    /// Apply the feed lines taken so far; the AN1725 alerts they change
    /// are records out.
    pub fn handle_feed_apply(&mut self) {
        let (Some(st), Some(en)) = (self.streaming.as_mut(), self.enricher.as_mut()) else { return };
        if st.batch.is_empty() {
            return;
        }
        en.add_events(std::mem::take(&mut st.batch), st.reader.report());
        let (ocsf, outbox, tuning) = (self.ocsf, &mut self.outbox, &mut self.tuning);
        for r in st.revisit.iter_mut() {
            let vlans: Vec<u16> = r.header.vlan.ids().collect();
            let Some(m) = en.re_enrich_at(
                r.iface.as_deref(),
                &vlans,
                r.header.src_ip,
                r.header.dest_ip,
                r.header.dest_port,
                r.brief.sni.as_deref(),
                r.start_ns,
            ) else {
                continue;
            };
            let Some(v) = crate::enrich::an1725(&m, &r.sids, r.header.flow_id) else { continue };
            if r.last.as_ref().is_some_and(|(c, reasons)| *c == v.confidence && *reasons == v.reasons) {
                continue;
            }
            let header =
                eve::Header { pcap_filename: r.pcap.as_deref(), in_iface: r.iface.as_deref(), host: r.host.as_deref(), ..r.header.clone() };
            let brief = r.brief.lend();
            let mut write = |v: &dyn erased::Json| emit(ocsf, outbox, tuning, v);
            if let Some(written) = an1725_alert(
                &header,
                brief,
                &r.failure,
                &r.path,
                &m,
                &r.sids,
                r.net_conf,
                &r.flow_ids,
                r.start_ns,
                &mut self.folder,
                &mut self.stats,
                &mut write,
            ) {
                self.stats.late_enrichment_updates += 1;
                r.last = Some((v.confidence, v.reasons));
                let _ = written;
            }
        }
    }
}

/// Keep a session with findings for late enrichment (live mode).
fn keep_for_late_feed(
    streaming: &mut Option<Streaming>,
    stats: &mut ReportStats,
    l: &Logged<'_>,
    (sids, net_conf, flow_ids): (Vec<u32>, classify::Confidence, Vec<u64>),
    verdict: Option<&crate::enrich::An1725>,
) {
    let Some(st) = streaming.as_mut() else { return };
    let (Some(failure), Some(path)) = (l.failure, l.path) else { return };
    if sids.is_empty() {
        return;
    }
    while st.revisit.front().is_some_and(|r| r.start_ns < l.start_ns.saturating_sub(st.window_ns)) {
        st.revisit.pop_front();
    }
    if st.revisit.len() >= MAX_REVISIT {
        st.revisit.pop_front();
        stats.late_enrichment_dropped += 1;
    }
    st.revisit.push_back(Revisit {
        header: eve::Header { pcap_filename: None, in_iface: None, host: None, event_type: "alert", ..l.header.clone() },
        pcap: l.header.pcap_filename.map(str::to_string),
        iface: l.header.in_iface.map(str::to_string),
        host: l.header.host.map(str::to_string),
        brief: Brief::keep(&l.brief),
        failure: failure.clone(),
        path: path.clone(),
        start_ns: l.start_ns,
        sids,
        net_conf,
        flow_ids,
        last: verdict.map(|v| (v.confidence, v.reasons.clone())),
    });
}

impl Reporter {
    /// The inline inspector's profile (the state file keeps what it learned).
    pub fn profile_mut(&mut self) -> &mut crate::verdict::inspector::Profile {
        &mut self.profile
    }

    /// The inline inspector's profile learned so far.
    pub fn profile(&self) -> &crate::verdict::inspector::Profile {
        &self.profile
    }

    /// Replace the configuration (live reload); flows keep their state.
    pub fn set_config(&mut self, config: crate::config::Config) {
        if let Some(en) = self.enricher.as_mut() {
            en.config_baselines = config.baselines.clone();
            en.context_map = config.feed.contexts.clone();
        }
        self.correlator.set_config(config.clone());
        self.profile.set_config(&config);
        self.tuning.set_rules(config.tuning.clone());
        self.config = config;
    }

    /// What the threads that end flows need to prepare them for this
    /// reporter ([`Reporter::handle_prepared`]).
    pub fn preparer(&self) -> Preparer {
        Preparer { config: self.config.clone(), names: self.names.clone(), ocsf: self.ocsf }
    }

    /// Ended flows: held until their turn (prepared on this thread).
    pub fn handle_ended(&mut self, ended: &mut Vec<Ended>) {
        for e in ended.drain(..) {
            let p = prepare(&e, &self.config, &self.names, self.ocsf);
            self.pending.push(Reverse(Pending(p)));
        }
        self.stats.pending_max = self.stats.pending_max.max(self.pending.len() as u64);
    }

    /// Ended flows and open sessions whose verdict is due, prepared by
    /// another thread with [`Reporter::preparer`]: held until their turn.
    pub fn handle_prepared(&mut self, prepared: &mut Vec<Prepared>) {
        for p in prepared.drain(..) {
            self.pending.push(Reverse(Pending(p)));
        }
        self.stats.pending_max = self.stats.pending_max.max(self.pending.len() as u64);
    }

    /// The capture clock reached `watermark` everywhere: every held flow
    /// that ended before it (phase 0) is reported.
    pub fn handle_time(&mut self, watermark: i64) {
        self.handle_watermark(OrderKey::at(watermark));
    }

    /// No flow below `key` can come any more: every held one is reported.
    pub fn handle_watermark(&mut self, key: OrderKey) {
        while let Some(Reverse(Pending(e))) = self.pending.peek() {
            if e.order >= key {
                break;
            }
            if let Some(Reverse(Pending(e))) = self.pending.pop() {
                self.report(e);
            }
        }
    }

    /// A flow of a table's drain at the end of input (phase 1, sorted):
    /// everything held is reported, then it. Taking them one at a time, each
    /// polled before the next, lets a record's memory serve the next one's
    /// instead of a fresh record for every flow still open being held.
    pub fn handle_drained(&mut self, e: Ended) {
        self.handle_end_of_input();
        debug_assert!(self.last_drained.is_none_or(|l| l <= e.order), "flows out of order");
        self.last_drained = Some(e.order);
        let p = prepare(&e, &self.config, &self.names, self.ocsf);
        drop(e);
        self.report(p);
    }

    /// The end of input: everything held is reported.
    pub fn handle_end_of_input(&mut self) {
        while let Some(Reverse(Pending(e))) = self.pending.pop() {
            self.report(e);
        }
    }

    /// The next record out (one EVE or OCSF line, with its newline), in
    /// output order.
    pub fn poll_record(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The writer that polls this reporter failed: the first error is kept
    /// for [`Reporter::take_write_error`].
    pub fn note_write_error(&mut self, e: std::io::Error) {
        self.output_error.get_or_insert(e);
    }

    /// Did the writer fail ([`Reporter::note_write_error`])?
    pub fn write_failed(&self) -> bool {
        self.output_error.is_some()
    }

    /// The first write error, if any; writing stops at it.
    pub fn take_write_error(&mut self) -> Option<std::io::Error> {
        self.output_error.take()
    }

    /// The findings of a logged session: correlate, write the alerts, keep
    /// the session for late feed batches.
    fn findings(&mut self, logged: &Logged<'_>) {
        let (ocsf, outbox, tuning) = (self.ocsf, &mut self.outbox, &mut self.tuning);
        let (sids, net_conf, flow_ids, verdict) = correlate(
            logged,
            &mut self.correlator,
            &mut self.folder,
            self.enricher.as_mut(),
            &mut self.stats,
            &mut |v: &dyn erased::Json| emit(ocsf, outbox, tuning, v),
        );
        keep_for_late_feed(&mut self.streaming, &mut self.stats, logged, (sids, net_conf, flow_ids), verdict.as_ref());
    }

    fn report(&mut self, p: Prepared) {
        // The names are lent out for the call, so that the records can
        // borrow them while the reporter's state is updated.
        let names = std::mem::take(&mut self.names);
        self.report_with(p, &names);
        self.names = names;
    }

    fn report_with(&mut self, p: Prepared, names: &Naming) {
        let source = p.source;
        match p.body {
            Body::Nothing => {}
            Body::NotTls(header) => {
                let header = names.header(source, header);
                if let Some(f) = self.correlator.observe_not_tls(header.flow_id, header.src_ip, header.dest_ip, header.dest_port) {
                    let a = eve::AlertEvent::new(&header, AlertBody::new(f.sid, f.confidence), None, None, None, f.evidence);
                    self.stats.alerts_logged += 1;
                    emit(self.ocsf, &mut self.outbox, &mut self.tuning, &a);
                }
            }
            Body::Session(s) => {
                let Session { header, quic, start_ns, ech, brief, failure, mut path, record } = *s;
                // The desk decides what the flow's thread could not: the
                // path of a session an inline inspector covers, against
                // the inspector's profile learned so far (in output order).
                let open_digest = (failure.close == crate::flow::CloseKind::Open).then(|| crate::output::flow_end::digest(&failure, &path));
                let rejudged = path.pending;
                self.profile.judge(&mut path);
                self.profile.observe(&path);
                let header = names.header(source, header);
                if quic {
                    self.stats.quic_records_logged += 1;
                } else {
                    self.stats.tls_records_logged += 1;
                }
                let vlans: Vec<u16> = header.vlan.ids().collect();
                let mobile = self.enricher.as_mut().and_then(|en| {
                    en.enrich_at(header.in_iface, &vlans, header.src_ip, header.dest_ip, header.dest_port, brief.sni.as_deref(), start_ns)
                });
                if let Record::Line { line, mobile_at, path_at } = record {
                    let new_path = rejudged.then_some(&path);
                    self.outbox.push_back(spliced(line, mobile_at, path_at, new_path, mobile.as_ref()));
                }
                let brief = brief.lend();
                let logged = Logged {
                    header: &header,
                    start_ns,
                    brief,
                    failure: Some(&failure),
                    path: Some(&path),
                    mobile: mobile.as_ref(),
                    ech,
                    quic,
                };
                let alerts_before = self.stats.alerts_logged;
                self.findings(&logged);
                if let Some(d) = open_digest {
                    self.open.insert(header.flow_id, (d, self.stats.alerts_logged > alerts_before));
                }
            }
            Body::FlowEnd(f) => {
                let header = names.header(source, f.header.clone());
                let (digest, alerted) = self.open.remove(&header.flow_id).unwrap_or_default();
                let revised = digest != crate::output::flow_end::digest(&f.verdict.0, &f.verdict.1);
                self.stats.flow_records_logged += 1;
                let rec = f.record(header, alerted, revised);
                emit(self.ocsf, &mut self.outbox, &mut self.tuning, &rec);
            }
        }
    }
}

/// The capture sources and the sensor name, as every record's header
/// carries them: replay writes a source as `pcap_filename`, live capture as
/// `in_iface` (as Suricata does), and `host` is the sensor name if one was
/// given.
#[derive(Clone, Default)]
pub struct Naming {
    /// The capture sources' names (files or interfaces), indexed by a flow's `source`.
    pub names: Vec<String>,
    /// Live capture: names are written as `in_iface`, else as `pcap_filename`.
    pub live: bool,
    /// The sensor name, written as `host`; none: no `host`.
    pub host: Option<String>,
}

impl Naming {
    /// `h` with the source and sensor names of a flow from `source`.
    pub fn header<'a>(&'a self, source: usize, h: eve::Header<'a>) -> eve::Header<'a> {
        let name = self.names.get(source).map(String::as_str);
        let (pcap_filename, in_iface) = if self.live { (None, name) } else { (name, None) };
        eve::Header { pcap_filename, in_iface, host: self.host.as_deref(), ..h }
    }
}

/// What a thread that ends flows needs to prepare them for the output
/// ([`Reporter::preparer`]): the configuration (classification), the
/// capture names (the records' `pcap_filename` or `in_iface`, and `host`)
/// and the output format.
#[derive(Clone)]
pub struct Preparer {
    config: crate::config::Config,
    names: Naming,
    ocsf: bool,
}

impl Preparer {
    /// The decision timeout of the configuration ([`crate::flow::decision`]).
    pub fn decision_timeout_ns(&self) -> i64 {
        self.config.decision_timeout_ns
    }

    /// Classify an ended flow and render its record (see [`Prepared`]).
    pub fn prepare(&self, e: Ended) -> Prepared {
        prepare(&e, &self.config, &self.names, self.ocsf)
    }

    /// An open session whose verdict is due ([`crate::flow::decision`]), and
    /// whether it is a session (else its end is written as usual).
    pub fn snapshot(&self, e: &Ended) -> (Prepared, bool) {
        let mut p = prepare(e, &self.config, &self.names, self.ocsf);
        p.end = false;
        let session = matches!(p.body, Body::Session(_));
        (p, session)
    }
}

/// An ended flow made ready for the output by the thread that ended it:
/// classified, its record rendered, what the findings need taken out, and
/// the flow dropped. With several flow-table threads this work is spread
/// over them, and the reporter, which must take the records one at a time
/// in output order, only enriches, correlates and writes.
pub struct Prepared {
    /// Where it goes in the output order.
    pub order: OrderKey,
    /// A flow's end (else an open session reported at its verdict).
    end: bool,
    /// Index of the capture (for `pcap_filename`).
    source: usize,
    body: Body,
}

/// The headers below have the client as source; `pcap_filename` comes from
/// the reporter.
enum Body {
    /// A flow that gets no record (its protocol was never made out).
    Nothing,
    /// Not TLS: the correlator may call it opaque (on port 443).
    NotTls(eve::Header<'static>),
    Session(Box<Session>),
    /// The end of a flow whose session was reported while open.
    FlowEnd(Box<crate::output::flow_end::FlowEnd>),
}

/// A TLS or QUIC session, classified and rendered.
struct Session {
    header: eve::Header<'static>,
    quic: bool,
    start_ns: i64,
    ech: bool,
    brief: Brief,
    failure: classify::TlsFailure,
    path: classify::PathOut,
    record: Record,
}

/// The `tls` fields alerts repeat from their session ([`eve::TlsBrief`]), kept.
struct Brief {
    sni: Option<String>,
    version: String,
    ja4: Option<String>,
    ja3: Option<eve::Fp>,
    issuerdn: Option<String>,
}

impl Brief {
    fn keep(b: &eve::TlsBrief<'_>) -> Brief {
        Brief {
            sni: b.sni.map(str::to_string),
            version: b.version.to_string(),
            ja4: b.ja4.map(str::to_string),
            ja3: b.ja3.cloned(),
            issuerdn: b.issuerdn.map(str::to_string),
        }
    }

    fn lend(&self) -> eve::TlsBrief<'_> {
        eve::TlsBrief {
            sni: self.sni.as_deref(),
            version: &self.version,
            ja4: self.ja4.as_deref(),
            ja3: self.ja3.as_ref(),
            issuerdn: self.issuerdn.as_deref(),
        }
    }
}

enum Record {
    /// OCSF output: it carries alerts only.
    Omitted,
    /// The EVE line, rendered without `mobile`. The device feed's `mobile`
    /// object depends on the reporter's state (the enricher learns app
    /// baselines from the sessions in output order), so the reporter
    /// splices it in at `mobile_at`: before `"flow"`, the record's last
    /// field, where serde would have written it ([`spliced`]).
    Line { line: Vec<u8>, mobile_at: usize, path_at: usize },
}

/// Classify an ended flow, render its record and take out what the output
/// needs.
fn prepare(e: &Ended, cfg: &crate::config::Config, names: &Naming, ocsf: bool) -> Prepared {
    let order = e.order;
    let source = e.flow.source as usize;
    if e.flow.reported {
        // Reported while open: its end is a `flow` record, with the
        // verdict as it stands now if it changed.
        let (app_proto, verdict, handshake) = if e.flow.proto == Proto::Quic {
            let ev = eve::quic_event(e, None);
            ("quic", (classify::quic_outcome(e), classify::path(e, cfg, ev.quic.sni.as_deref(), None)), None)
        } else {
            let ev = eve::tls_event(e, None);
            let alerts = serde_json::to_value(&ev.handshake.alerts).unwrap_or_default();
            (
                "tls",
                (classify::outcome(e, cfg), classify::path(e, cfg, ev.tls.sni, ev.tls.ja3s.as_ref().map(|f| f.hash.as_str()))),
                Some((ev.handshake.history, alerts)),
            )
        };
        // (OCSF carries alerts only: the record renders to nothing there.)
        return Prepared {
            order,
            end: true,
            source,
            body: Body::FlowEnd(Box::new(crate::output::flow_end::FlowEnd::new(e, app_proto, verdict, handshake))),
        };
    }
    let session = match e.flow.proto {
        Proto::NotTls => {
            let h = eve::Header::of(&e.flow, None, "alert", "failed");
            return Prepared { order, end: true, source, body: Body::NotTls(h) };
        }
        Proto::Quic => {
            let mut ev = eve::quic_event(e, None);
            ev.header = names.header(source, ev.header);
            let failure = classify::quic_outcome(e);
            let path = classify::path(e, cfg, ev.quic.sni.as_deref(), None);
            let hello = e.flow.quic.as_ref().and_then(|q| q.client_hellos.first()).map(|(h, _)| h);
            let brief = Brief::keep(&eve::TlsBrief {
                sni: ev.quic.sni.as_deref(),
                version: ev.quic.version.as_deref().unwrap_or("UNDETERMINED"),
                ja4: ev.quic.ja4.as_deref(),
                ja3: ev.quic.ja3.as_ref(),
                issuerdn: None,
            });
            let header = eve::Header { pcap_filename: None, in_iface: None, host: None, ..ev.header.clone() };
            ev.tls_failure = Some(&failure);
            ev.path = Some(&path);
            let record = render(ocsf, &ev);
            drop(ev);
            Session {
                header,
                quic: true,
                start_ns: e.flow.first_ts,
                ech: hello.is_some_and(|h| h.offers_ech()),
                brief,
                failure,
                path,
                record,
            }
        }
        Proto::Tls if e.flow.session.is_tls() => {
            let mut ev = eve::tls_event(e, None);
            ev.header = names.header(source, ev.header);
            let failure = classify::outcome(e, cfg);
            let path = classify::path(e, cfg, ev.tls.sni, ev.tls.ja3s.as_ref().map(|f| f.hash.as_str()));
            let hello = e.flow.session.client_hellos.first().map(|(h, _)| h);
            let brief = Brief::keep(&eve::TlsBrief {
                sni: ev.tls.sni,
                version: &ev.tls.version,
                ja4: ev.tls.ja4.as_deref(),
                ja3: ev.tls.ja3.as_ref(),
                issuerdn: ev.tls.issuerdn,
            });
            let header = eve::Header { pcap_filename: None, in_iface: None, host: None, ..ev.header.clone() };
            ev.tls_failure = Some(&failure);
            ev.path = Some(&path);
            let record = render(ocsf, &ev);
            drop(ev);
            Session {
                header,
                quic: false,
                start_ns: e.flow.first_ts,
                ech: hello.is_some_and(|h| h.offers_ech()),
                brief,
                failure,
                path,
                record,
            }
        }
        _ => return Prepared { order, end: true, source, body: Body::Nothing },
    };
    Prepared { order, end: true, source, body: Body::Session(Box::new(session)) }
}

/// Render a session's record, classified (EVE; nothing for OCSF).
fn render<T: serde::Serialize>(ocsf: bool, ev: &T) -> Record {
    if ocsf {
        return Record::Omitted;
    }
    let mut line = Vec::with_capacity(4096);
    // Writing into memory cannot fail, and the records hold nothing serde
    // refuses (no maps with non-string keys).
    let _ = serde_json::to_writer(&mut line, ev);
    line.push(b'\n');
    let mobile_at = line.windows(FLOW_KEY.len()).rposition(|w| w == FLOW_KEY).unwrap_or(line.len().saturating_sub(2));
    let path_at = line[..mobile_at].windows(PATH_KEY.len()).rposition(|w| w == PATH_KEY).unwrap_or(mobile_at);
    Record::Line { line, mobile_at, path_at }
}

/// The `path` field, which comes right before `mobile` and `flow`.
const PATH_KEY: &[u8] = b",\"path\":{";

/// The last field of a TLS or QUIC record, as serde_json writes its key.
const FLOW_KEY: &[u8] = b",\"flow\":{";

/// A rendered line with the `mobile` object spliced in at `mobile_at`:
/// the bytes serde_json writes for the record with `mobile` set (`tests`:
/// `a_spliced_record_is_what_serde_writes`). A `path` decided at the desk
/// replaces the one rendered, between `path_at` and `mobile_at`.
fn spliced(
    line: Vec<u8>,
    mobile_at: usize,
    path_at: usize,
    path: Option<&classify::PathOut>,
    mobile: Option<&crate::enrich::MobileOut>,
) -> Vec<u8> {
    if mobile.is_none() && path.is_none() {
        return line;
    }
    let mobile_at = mobile_at.min(line.len());
    let (head, tail) = line.split_at(mobile_at);
    let head = match path {
        Some(_) => &head[..path_at.min(mobile_at)],
        None => head,
    };
    let mut out = Vec::with_capacity(line.len() + 1024);
    out.extend_from_slice(head);
    // Writing into memory cannot fail, and these hold nothing serde refuses.
    if let Some(p) = path {
        out.extend_from_slice(b",\"path\":");
        let _ = serde_json::to_writer(&mut out, p);
    }
    if let Some(m) = mobile {
        out.extend_from_slice(b",\"mobile\":");
        let _ = serde_json::to_writer(&mut out, m);
    }
    out.extend_from_slice(tail);
    out
}

/// One record out: its EVE line, or its OCSF form (alerts only); an alert
/// the tuning withholds is not written.
fn emit(ocsf: bool, outbox: &mut VecDeque<Vec<u8>>, tuning: &mut crate::verdict::tuning::Tuning, v: &dyn erased::Json) {
    if !tuning.is_empty() {
        let value = v.value();
        if crate::verdict::tuning::Subject::of(&value).is_some_and(|s| tuning.admit(&s) != crate::verdict::tuning::Admit::Write) {
            return;
        }
    }
    let line = if ocsf { v.ocsf_line() } else { Some(v.line()) };
    if let Some(line) = line {
        outbox.push_back(line);
    }
}

/// A logged TLS or QUIC session, as the findings see it.
struct Logged<'a> {
    header: &'a eve::Header<'a>,
    mobile: Option<&'a crate::enrich::MobileOut>,
    start_ns: i64,
    brief: eve::TlsBrief<'a>,
    failure: Option<&'a classify::TlsFailure>,
    path: Option<&'a classify::PathOut>,
    ech: bool,
    quic: bool,
}

/// Count the session's outcome and raise its findings.
fn correlate(
    l: &Logged<'_>,
    correlator: &mut Correlator,
    folder: &mut crate::enrich::Folder,
    enricher: Option<&mut crate::enrich::Enricher>,
    stats: &mut ReportStats,
    write: &mut dyn FnMut(&dyn erased::Json),
) -> (Vec<u32>, classify::Confidence, Vec<u64>, Option<crate::enrich::An1725>) {
    let mut enricher = enricher;
    let (Some(failure), Some(path)) = (l.failure, l.path) else { return (Vec::new(), classify::Confidence::Low, Vec::new(), None) };
    let mut key = match (failure.class, failure.kind) {
        (Some(c), _) => format!("{}{:?}_{c:?}", if l.quic { "quic_" } else { "" }, failure.outcome),
        // Incomplete sessions by why: capture loss (`capture_gap`) is the
        // figure a SPAN port's health shows in.
        (None, Some(k)) if failure.outcome == classify::Outcome::Incomplete => {
            format!("{}incomplete_{k:?}", if l.quic { "quic_" } else { "" })
        }
        (None, _) => format!("{}{:?}", if l.quic { "quic_" } else { "" }, failure.outcome),
    };
    key.make_ascii_lowercase();
    match stats.outcomes.get_mut(&key) {
        Some(n) => *n += 1,
        None => {
            stats.outcomes.insert(key, 1);
        }
    }
    let facts = SessionFacts {
        flow_id: l.header.flow_id,
        start_ns: l.start_ns,
        client: l.header.src_ip,
        server: l.header.dest_ip,
        server_port: l.header.dest_port,
        sni: l.brief.sni,
        ech: l.ech,
        quic: l.quic,
        path,
        failure,
        app: l.mobile.and_then(|m| m.app.package.as_deref()),
    };
    let brief =
        || eve::TlsBrief { sni: l.brief.sni, version: l.brief.version, ja4: l.brief.ja4, ja3: l.brief.ja3, issuerdn: l.brief.issuerdn };
    let mut findings = correlator.observe(&facts);
    // Baselines: an attributed session outside its app's approved
    // destinations is a finding; one that succeeded under inspection
    // teaches the baseline.
    if let (Some(m), Some(en)) = (l.mobile, enricher.as_mut()) {
        if let (Some(pkg), Some(host)) = (m.app.package.as_deref(), l.brief.sni) {
            let under_inspection = matches!(path.kind, classify::PathKind::Intercepted | classify::PathKind::ExplicitProxy);
            if under_inspection && failure.outcome == classify::Outcome::Established {
                en.learn(pkg, host);
            }
        }
        if m.baseline.as_ref().is_some_and(|b| !b.approved) {
            let sources = m.baseline.as_ref().map(|b| b.sources.join("+")).unwrap_or_default();
            findings.push(crate::verdict::findings::Finding {
                sid: crate::verdict::findings::SID_BASELINE,
                confidence: classify::Confidence::Medium,
                evidence: crate::verdict::findings::Evidence {
                    reasons: vec![format!("destination_outside_baseline:{}:baseline:{sources}", l.brief.sni.unwrap_or("?"))],
                    flow_ids: vec![l.header.flow_id],
                },
            });
        }
    }
    let sids: Vec<u32> = findings.iter().map(|f| f.sid).collect();
    // The AN1725 join is never surer than the network findings it joins.
    let net_conf = findings.iter().map(|f| f.confidence).max().unwrap_or(classify::Confidence::Low);
    let mut flow_ids: Vec<u64> = Vec::new();
    for f in findings {
        flow_ids.extend(f.evidence.flow_ids.iter().copied());
        let mut a =
            eve::AlertEvent::new(l.header, AlertBody::new(f.sid, f.confidence), Some(brief()), Some(failure), Some(path), f.evidence);
        a.mobile = l.mobile;
        stats.alerts_logged += 1;
        write(&a);
    }
    // The AN1725 join: the network findings of an enriched session, with
    // the device and app evidence that makes them an app's behaviour.
    flow_ids.sort_unstable();
    flow_ids.dedup();
    let verdict = l
        .mobile
        .and_then(|m| an1725_alert(l.header, brief(), failure, path, m, &sids, net_conf, &flow_ids, l.start_ns, folder, stats, write));
    (sids, net_conf, flow_ids, verdict)
}

/// Score an enriched session's network findings and write the AN1725
/// alert, folded with repeats (same device, app, destination).
#[allow(clippy::too_many_arguments)]
fn an1725_alert(
    header: &eve::Header<'_>,
    brief: eve::TlsBrief<'_>,
    failure: &classify::TlsFailure,
    path: &classify::PathOut,
    m: &crate::enrich::MobileOut,
    sids: &[u32],
    net_conf: classify::Confidence,
    flow_ids: &[u64],
    start_ns: i64,
    folder: &mut crate::enrich::Folder,
    stats: &mut ReportStats,
    write: &mut dyn FnMut(&dyn erased::Json),
) -> Option<crate::enrich::An1725> {
    let mut verdict = crate::enrich::an1725(m, sids, header.flow_id)?;
    let cap = crate::verdict::findings::confidence_name(net_conf);
    let rank = |c: &str| match c {
        "high" => 2,
        "medium" => 1,
        _ => 0,
    };
    if rank(cap) < rank(verdict.confidence) {
        verdict.confidence = cap;
        verdict.reasons.push(format!("capped_by_network_confidence:{cap}"));
    }
    let dest = brief.sni.map(str::to_string).unwrap_or_else(|| header.dest_ip.to_string());
    let (verdict, flow_ids) = folder.fold(verdict, m, &dest, start_ns, header.flow_id, flow_ids);
    let evidence = crate::verdict::findings::Evidence { reasons: verdict.reasons.clone(), flow_ids };
    let confidence = match verdict.confidence {
        "high" => classify::Confidence::High,
        "medium" => classify::Confidence::Medium,
        _ => classify::Confidence::Low,
    };
    let mut a = eve::AlertEvent::new(
        header,
        AlertBody::new(crate::verdict::findings::SID_AN1725, confidence),
        Some(brief),
        Some(failure),
        Some(path),
        evidence,
    );
    a.mobile = Some(m);
    a.an1725 = Some(verdict.clone());
    stats.alerts_logged += 1;
    write(&a);
    Some(verdict)
}

/// One JSON line, whatever the record type.
mod erased {
    pub trait Json {
        /// The EVE line, with its newline.
        fn line(&self) -> Vec<u8>;
        /// The OCSF form of an alert; `None` for other records.
        fn ocsf_line(&self) -> Option<Vec<u8>>;
        /// The record as a JSON value (what the tuning matches on).
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn line(&self) -> Vec<u8> {
            let mut line = Vec::with_capacity(2048);
            // Into memory: cannot fail, and no record holds what serde refuses.
            let _ = serde_json::to_writer(&mut line, self);
            line.push(b'\n');
            line
        }
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
        fn ocsf_line(&self) -> Option<Vec<u8>> {
            let v = serde_json::to_value(self).ok()?;
            let f = crate::output::ocsf::detection_finding(&v)?;
            let mut line = serde_json::to_vec(&f).ok()?;
            line.push(b'\n');
            Some(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CloseKind, Limits};
    use crate::run::engine::Shard;
    use std::path::Path;

    /// The ended flows of one of the project's testbed captures.
    fn ended_of(name: &str) -> Vec<Ended> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps").join(name);
        let file = crate::capture::CaptureFile::open(&path).expect("testbed capture opens");
        let mut shard = Shard::new(Limits::default());
        let mut ended = Vec::new();
        for p in file.packets() {
            let p = p.expect("testbed capture reads");
            shard.advance(p.ts_ns, &mut ended);
            shard.packet(p.linktype, p.data, p.ts_ns, p.orig_len, 0, &mut ended);
        }
        shard.table.drain(CloseKind::Eof, &mut ended);
        ended
    }

    /// A record rendered early with `mobile` spliced in by the reporter is,
    /// byte for byte, the record serde writes with `mobile` set: TLS and
    /// QUIC sessions of the testbed, enriched from the testbed's device feed
    /// (real `mobile` objects), and the same sessions without one.
    #[test]
    fn a_spliced_record_is_what_serde_writes() {
        let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
        let cfg = crate::config::Config::load(&pcaps.join("testbed.toml")).expect("testbed config loads");
        let (mut en, errors) =
            crate::enrich::Enricher::load_sources(&[pcaps.join("testbed-fallback.feed.jsonl")], &[], std::time::Duration::from_secs(1))
                .expect("testbed feed loads");
        assert!(errors.is_empty(), "{errors:?}");
        let names = vec!["testbed.pcap".to_string()];
        let (mut sessions, mut enriched) = (0, 0);
        for capture in ["testbed-fallback.pcap", "testbed-quic.pcap"] {
            for e in ended_of(capture) {
                let quic = e.flow.proto == Proto::Quic;
                if !(quic || (e.flow.proto == Proto::Tls && e.flow.session.is_tls())) {
                    continue;
                }
                let pcap = Some(names[0].as_str());
                let (expected_plain, expected_mobile, mobile) = if quic {
                    let mut ev = eve::quic_event(&e, pcap);
                    let (f, p) = (classify::quic_outcome(&e), classify::path(&e, &cfg, ev.quic.sni.as_deref(), None));
                    let m = en.enrich(ev.header.src_ip, ev.header.dest_ip, ev.header.dest_port, ev.quic.sni.as_deref(), e.flow.first_ts);
                    ev.tls_failure = Some(&f);
                    ev.path = Some(&p);
                    let plain = serde_json::to_vec(&ev).expect("serialises");
                    ev.mobile = m.as_ref();
                    (plain, serde_json::to_vec(&ev).expect("serialises"), m.clone())
                } else {
                    let mut ev = eve::tls_event(&e, pcap);
                    let (f, p) =
                        (classify::outcome(&e, &cfg), classify::path(&e, &cfg, ev.tls.sni, ev.tls.ja3s.as_ref().map(|f| f.hash.as_str())));
                    let m = en.enrich(ev.header.src_ip, ev.header.dest_ip, ev.header.dest_port, ev.tls.sni, e.flow.first_ts);
                    ev.tls_failure = Some(&f);
                    ev.path = Some(&p);
                    let plain = serde_json::to_vec(&ev).expect("serialises");
                    ev.mobile = m.as_ref();
                    (plain, serde_json::to_vec(&ev).expect("serialises"), m.clone())
                };
                let p = prepare(&e, &cfg, &Naming { names: names.clone(), ..Naming::default() }, false);
                let Body::Session(s) = p.body else { panic!("a session is prepared as one") };
                let Record::Line { line, mobile_at, path_at } = &s.record else { panic!("EVE records are rendered") };
                let mut plain = Vec::new();
                plain.extend(spliced(line.clone(), *mobile_at, *path_at, None, None));
                assert_eq!(String::from_utf8_lossy(&plain), String::from_utf8_lossy(&[expected_plain, b"\n".to_vec()].concat()));
                let mut spliced_line = Vec::new();
                spliced_line.extend(spliced(line.clone(), *mobile_at, *path_at, None, mobile.as_ref()));
                assert_eq!(String::from_utf8_lossy(&spliced_line), String::from_utf8_lossy(&[expected_mobile, b"\n".to_vec()].concat()));
                sessions += 1;
                enriched += usize::from(mobile.is_some());
            }
        }
        assert!(sessions >= 10, "{sessions} sessions");
        assert!(enriched >= 3, "only {enriched} of {sessions} sessions enriched: the test would not see a splice");
    }

    /// OCSF output carries alerts only: nothing is rendered for a session.
    #[test]
    fn ocsf_sessions_are_not_rendered() {
        let cfg = crate::config::Config::default();
        let e = ended_of("testbed-basic.pcap").into_iter().find(|e| e.flow.proto == Proto::Tls).expect("a TLS session");
        let p = prepare(&e, &cfg, &Naming::default(), true);
        assert!(matches!(p.body, Body::Session(ref s) if matches!(s.record, Record::Omitted)));
    }

    // --- The desk as a state machine: what comes in, when records come out.

    use pinwatch_parsers::decode::{decode, Decoded, TcpInfo};
    use serde_json::Value;

    const S: i64 = 1_000_000_000;
    const MS: i64 = 1_000_000;

    /// Nanoseconds since the epoch of an EVE time (`2026-08-21T09:14:03.512311+0000`).
    fn eve_ns(s: &str) -> i64 {
        let t = time::PrimitiveDateTime::parse(
            s.trim_end_matches("+0000"),
            &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        )
        .expect("an EVE time");
        (t.assume_utc().unix_timestamp_nanos()) as i64
    }

    /// A testbed capture through a shard and the desk as the engine runs
    /// them, packet by packet (the verdicts and ended flows handed in, the
    /// capture clock as the watermark), keeping the packets `keep` accepts,
    /// then the clock moved to each of `then` without a packet, then the
    /// end of input. Every record, with the clock at which it came out
    /// (`i64::MAX`: at the end of input).
    fn run(name: &str, keep: impl Fn(&Decoded<'_>, i64) -> bool, then: &[i64]) -> Vec<(i64, Value)> {
        let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
        let config = crate::config::Config::load(&pcaps.join("testbed.toml")).expect("testbed config loads");
        let opts = Options { config, ..Default::default() };
        let mut desk = Reporter::new(&opts, vec![name.to_string()]).expect("reporter");
        let mut shard = Shard::new(opts.limits);
        shard.set_preparer(desk.preparer());
        let mut clock = crate::run::engine::Clock::default();
        let (mut ended, mut out) = (Vec::new(), Vec::new());
        fn poll(desk: &mut Reporter, now: i64, out: &mut Vec<(i64, Value)>) {
            while let Some(line) = desk.poll_record() {
                assert_eq!(line.last(), Some(&b'\n'), "one line per record");
                out.push((now, serde_json::from_slice(&line).expect("a JSON line")));
            }
        }
        let file = crate::capture::CaptureFile::open(&pcaps.join(name)).expect("testbed capture opens");
        for p in file.packets() {
            let p = p.expect("testbed capture reads");
            if !decode(p.linktype, p.data).is_ok_and(|d| keep(&d, p.ts_ns)) {
                continue;
            }
            if let Some(now) = clock.observe(p.ts_ns) {
                shard.advance(now, &mut ended);
            }
            shard.packet(p.linktype, p.data, p.ts_ns, p.orig_len, 0, &mut ended);
            desk.handle_prepared(&mut shard.verdicts);
            desk.handle_ended(&mut ended);
            desk.handle_time(clock.now());
            poll(&mut desk, clock.now(), &mut out);
        }
        for &t in then {
            assert!(clock.force(t), "the clock moves forward");
            shard.advance(t, &mut ended);
            desk.handle_prepared(&mut shard.verdicts);
            desk.handle_ended(&mut ended);
            desk.handle_time(t);
            poll(&mut desk, t, &mut out);
        }
        shard.table.drain(CloseKind::Eof, &mut ended);
        for e in ended.drain(..) {
            desk.handle_drained(e);
        }
        desk.handle_end_of_input();
        poll(&mut desk, i64::MAX, &mut out);
        out
    }

    fn port_of(d: &Decoded<'_>) -> [u16; 2] {
        [d.sport, d.dport]
    }

    /// Testbed-inline's sessions that stay open to the end of the capture
    /// (the client aborts after its Finished, class C, and half-closes; the
    /// server never closes) are reported while open, one linger (5 s) after
    /// the client's first record after its Finished, in packet time; their
    /// end is a `flow` record that points back by `flow_id`, with the same
    /// verdict.
    #[test]
    fn an_open_session_is_reported_before_its_flow_ends_and_its_end_points_back() {
        let records = run("testbed-inline.pcap", |_, _| true, &[]);
        let open: Vec<&(i64, Value)> =
            records.iter().filter(|(_, r)| r["event_type"] == "tls" && r["handshake"]["close"] == "open").collect();
        assert!(open.len() >= 3, "{} sessions reported while open", open.len());
        for (at, r) in open {
            assert!(*at < i64::MAX, "reported while packets were read, not at the end: {r}");
            assert_eq!(r["tls_failure"]["close"], "open");
            // TLS 1.3: the client's second protected record is its first data.
            let start = eve_ns(r["timestamp"].as_str().expect("timestamp"));
            let data = r["handshake"]["records"]
                .as_array()
                .expect("records")
                .iter()
                .filter(|x| x["dir"] == "client" && x["type"] == 23)
                .nth(1)
                .expect("client data");
            let due = start + (data["ts_offset_ms"].as_f64().expect("offset") * MS as f64) as i64 + 5 * S;
            assert!(*at >= due - MS, "reported at {at}, before its data + 5 s ({due})");
            let id = &r["flow_id"];
            let flow: Vec<&(i64, Value)> = records.iter().filter(|(_, f)| f["event_type"] == "flow" && &f["flow_id"] == id).collect();
            assert_eq!(flow.len(), 1, "one flow record for {id}");
            let (end_at, f) = flow[0];
            assert!(end_at > at, "the flow record comes after the session's");
            assert_eq!(f["flow_end"]["close"], "eof");
            assert_eq!(f["flow_end"]["revised"], false, "the verdict at the end is the one reported: {f}");
            assert!(f.get("tls_failure").is_none());
            assert_eq!(f["flow"]["start"], r["flow"]["start"]);
            assert!(f["flow"]["pkts_toserver"].as_u64() >= r["flow"]["pkts_toserver"].as_u64());
            assert_eq!(f["flow"]["alerted"], records.iter().any(|(_, a)| a["event_type"] == "alert" && &a["flow_id"] == id));
            assert_eq!(
                records.iter().filter(|(_, t)| t["event_type"] == "tls" && &t["flow_id"] == id).count(),
                1,
                "one tls record per session"
            );
        }
    }

    /// A client rejection whose flow does not close (its FIN/RST lost) is
    /// reported one linger after the alert, not at the end of input.
    #[test]
    fn a_rejection_is_reported_at_the_rejection() {
        let name = "testbed-basic.pcap";
        let full = run(name, |_, _| true, &[]);
        let (_, rejected) = full
            .iter()
            .find(|(_, r)| {
                r["event_type"] == "tls" && r["tls_failure"]["kind"] == "alert_plain" && r["handshake"]["alerts"][0]["from"] == "client"
            })
            .expect("a client rejection with an alert");
        let port = rejected["src_port"].as_u64().expect("port") as u16;
        let alert_at = eve_ns(rejected["timestamp"].as_str().expect("timestamp"))
            + (rejected["handshake"]["alerts"][0]["ts_offset_ms"].as_f64().expect("offset") * MS as f64) as i64;
        // Only that session, and neither side ever closes it.
        let keep = |d: &Decoded<'_>, _| port_of(d).contains(&port) && !d.tcp.is_some_and(|t| t.has(TcpInfo::FIN) || t.has(TcpInfo::RST));
        let records = run(name, keep, &[alert_at + 5 * S - 10 * MS, alert_at + 5 * S + 10 * MS]);
        let (at, r) = records.iter().find(|(_, r)| r["event_type"] == "tls").expect("the session is reported");
        assert_eq!(*at, alert_at + 5 * S + 10 * MS, "reported when the clock passed the alert + 5 s");
        assert_eq!(r["tls_failure"]["outcome"], "client_rejected");
        assert_eq!(r["tls_failure"]["alert"], rejected["tls_failure"]["alert"]);
        assert_eq!(r["handshake"]["close"], "open");
        assert!(
            records.iter().any(|(at, f)| f["event_type"] == "flow" && f["flow_id"] == r["flow_id"] && *at == i64::MAX),
            "its end at the end of input"
        );
    }

    /// A session with no verdict (the server's flight, then nothing from the
    /// client) is reported at the decision timeout, 10 s of packet time
    /// after its ClientHello, whatever the wall clock.
    #[test]
    fn the_decision_timeout_fires_in_packet_time() {
        let name = "testbed-basic.pcap";
        let hello = std::cell::Cell::new(None::<(u16, i64)>);
        let server_spoke = std::cell::Cell::new(false);
        // The first TLS session to 443, cut after the server's first payload.
        let keep = |d: &Decoded<'_>, ts: i64| {
            if hello.get().is_none() && d.dport == 443 && !d.payload.is_empty() {
                hello.set(Some((d.sport, ts)));
                return true;
            }
            let Some((port, _)) = hello.get() else { return d.dport == 443 || d.sport == 443 };
            if !port_of(d).contains(&port) || server_spoke.get() {
                return false;
            }
            if d.sport == 443 && !d.payload.is_empty() {
                server_spoke.set(true);
            }
            true
        };
        let records = run(name, keep, &[]);
        let (port, ch) = hello.get().expect("a ClientHello");
        assert!(server_spoke.get(), "the server answered");
        assert!(records.iter().filter(|(_, r)| r["event_type"] == "tls").all(|(at, _)| *at == i64::MAX), "no verdict without time passing");
        // Again, with the clock moved past the timeout without a packet.
        hello.set(None);
        server_spoke.set(false);
        let records = run(name, keep, &[ch + 10 * S - 10 * MS, ch + 10 * S + 10 * MS]);
        let (at, r) = records.iter().find(|(_, r)| r["event_type"] == "tls" && r["src_port"] == port).expect("the session is reported");
        assert_eq!(*at, ch + 10 * S + 10 * MS, "reported when the clock passed the ClientHello + 10 s");
        assert_eq!(r["handshake"]["close"], "open");
        let (_, f) = records.iter().find(|(_, f)| f["event_type"] == "flow").expect("its end");
        assert_eq!(f["flow_id"], r["flow_id"]);
        // Revised or not, a flow record carries a verdict only when it changed.
        assert_eq!(f["flow_end"]["revised"] == true, f.get("tls_failure").is_some(), "{f}");
    }

    /// Every record prepared for a capture, open sessions' and ended flows'
    /// alike, in the order the shard produced them.
    fn prepared_of(name: &str) -> (Reporter, Vec<Prepared>) {
        let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
        let config = crate::config::Config::load(&pcaps.join("testbed.toml")).expect("testbed config loads");
        let opts = Options { config, ..Default::default() };
        let desk = Reporter::new(&opts, vec![name.to_string()]).expect("reporter");
        let preparer = desk.preparer();
        let mut shard = Shard::new(opts.limits);
        shard.set_preparer(desk.preparer());
        let file = crate::capture::CaptureFile::open(&pcaps.join(name)).expect("testbed capture opens");
        let (mut ended, mut all) = (Vec::new(), Vec::new());
        for p in file.packets() {
            let p = p.expect("testbed capture reads");
            shard.advance(p.ts_ns, &mut ended);
            shard.packet(p.linktype, p.data, p.ts_ns, p.orig_len, 0, &mut ended);
            all.append(&mut shard.verdicts);
            all.extend(ended.drain(..).map(|e| preparer.prepare(e)));
        }
        shard.table.drain(CloseKind::Eof, &mut ended);
        all.extend(ended.drain(..).map(|e| preparer.prepare(e)));
        (desk, all)
    }

    fn drain(desk: &mut Reporter) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(l) = desk.poll_record() {
            out.extend(l);
        }
        out
    }

    /// The records and their order depend on the records' keys only, not
    /// on the order they reach the desk (shards deliver in any interleaving).
    #[test]
    fn order_is_independent_of_arrival_interleaving() {
        for name in ["testbed-inline.pcap"] {
            let (mut a, mut in_order) = prepared_of(name);
            let n = in_order.len();
            assert!(in_order.iter().any(|p| !p.end), "{name}: open sessions among the inputs");
            a.handle_prepared(&mut in_order);
            a.handle_end_of_input();
            let expected = drain(&mut a);
            // Reversed, and interleaved in two halves with watermarks between.
            let (mut b, mut reversed) = prepared_of(name);
            reversed.reverse();
            b.handle_prepared(&mut reversed);
            b.handle_end_of_input();
            assert_eq!(String::from_utf8_lossy(&drain(&mut b)), String::from_utf8_lossy(&expected), "{name}: reversed arrival");
            let (mut c, all) = prepared_of(name);
            let (mut odd, mut even): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
            for (i, p) in all.into_iter().enumerate() {
                if i % 2 == 1 {
                    odd.push(p)
                } else {
                    even.push(p)
                }
            }
            c.handle_prepared(&mut odd);
            c.handle_watermark(OrderKey::MIN);
            let early = drain(&mut c);
            assert!(early.is_empty(), "{name}: nothing is written below the watermark's minimum");
            c.handle_prepared(&mut even);
            c.handle_end_of_input();
            assert_eq!(String::from_utf8_lossy(&drain(&mut c)), String::from_utf8_lossy(&expected), "{name}: interleaved arrival");
            let lines = expected.iter().filter(|&&b| b == b'\n').count();
            assert!(lines >= n.min(10), "{name}: {lines} records of {n} inputs");
        }
    }
}
