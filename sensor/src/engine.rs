//! The packet engine, in three parts that replay and live capture share:
//!
//! - [`Clock`]: the capture clock, driven by packet timestamps only.
//! - [`Shard`]: decode and one flow table. Replay with `--threads N` runs N
//!   shards, each owning the flows of whole partitions of the flow key
//!   ([`crate::flow::partition`]), so the packet path takes no lock and the
//!   caps, which are per partition, act as with one shard.
//! - [`Reporter`]: classification, enrichment, findings and output, in the
//!   order of [`crate::flow::OrderKey`], whatever the number of shards.
//!
//! [`Engine`] is one clock, one shard and one reporter on the caller's thread
//! (replay with one thread, live capture).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::Write;

use pinwatch_parsers::decode::{decode, Decoded, Skip};
use pinwatch_parsers::time::Timestamp;

use crate::capture::Packet;
use crate::classify;
use crate::eve;
use crate::findings::{AlertBody, Correlator, SessionFacts};
use crate::flow::{CloseKind, Ended, FlowKey, FlowTable, Limits, OrderKey, Proto, TableStats};
use crate::pipeline::{CaptureStats, DecoderStats, MemoryStats, Options, Stats};

/// A forward time jump larger than this needs a second packet to confirm it.
const MAX_UNCONFIRMED_JUMP_NS: i64 = 3_600 * 1_000_000_000;

/// The capture clock. Packet time only moves it forward; a packet that steps
/// back in time (merged files, clock jumps) does not un-expire anything. A
/// single packet far in the future (a bad timestamp) must not time out every
/// flow: a jump of more than an hour is believed only when the next packet
/// confirms it.
///
/// Time is a [`Timestamp`]: capture timestamps span the whole `i64` range
/// (pcapng `if_tsoffset`), and every distance here saturates, so a packet
/// at the end of time is a (large) jump, never an overflow.
#[derive(Debug, Clone)]
pub struct Clock {
    now: Timestamp,
    jump_candidate: Option<Timestamp>,
    /// Unconfirmed jumps ignored.
    pub jumps: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { now: Timestamp::MIN, jump_candidate: None, jumps: 0 }
    }
}

impl Clock {
    /// Observe a packet time; the new clock when it moved forward.
    pub fn observe(&mut self, ts: i64) -> Option<i64> {
        let ts = Timestamp::from_ns(ts);
        if ts <= self.now {
            self.jump_candidate = None;
            return None;
        }
        let jump = self.now != Timestamp::MIN && ts - self.now > MAX_UNCONFIRMED_JUMP_NS;
        let confirmed = self.jump_candidate.is_some_and(|c| ts.within(c, MAX_UNCONFIRMED_JUMP_NS));
        if jump && !confirmed {
            self.jump_candidate = Some(ts);
            self.jumps += 1;
            None
        } else {
            self.jump_candidate = None;
            self.now = ts;
            Some(ts.ns())
        }
    }

    /// Would [`Clock::observe`] take `ts` at its word (not an unconfirmed
    /// forward jump)?
    pub fn believes(&self, ts: i64) -> bool {
        self.now == Timestamp::MIN || Timestamp::from_ns(ts) - self.now <= MAX_UNCONFIRMED_JUMP_NS
    }

    /// Catch up with packets whose times this clock was told of elsewhere:
    /// `now` is what a clock started with them reads, and none of them was
    /// an unconfirmed jump for it, nor the first one for this clock (see
    /// [`Clock::believes`]); the result is what observing them would give.
    pub fn settle(&mut self, now: i64) {
        self.jump_candidate = None;
        self.now = self.now.max(Timestamp::from_ns(now));
    }

    /// Move the clock to `now` without a packet (live capture, idle link).
    pub fn force(&mut self, now: i64) -> bool {
        let now = Timestamp::from_ns(now);
        if now > self.now {
            self.now = now;
            true
        } else {
            false
        }
    }

    /// The current clock; `i64::MIN` before the first packet.
    pub fn now(&self) -> i64 {
        self.now.ns()
    }
}

/// Decode and one flow table.
pub struct Shard {
    pub table: FlowTable,
    pub decoder: DecoderStats,
    /// The clock of the last [`Shard::advance`].
    advanced: i64,
}

impl Shard {
    pub fn new(limits: Limits) -> Self {
        Self::with_hasher(limits, ahash::RandomState::new())
    }

    /// A shard whose flow table hashes keys with `hasher` (shared by the
    /// shards of one run, so that a reader thread can hash for them).
    pub fn with_hasher(limits: Limits, hasher: ahash::RandomState) -> Self {
        Shard { table: FlowTable::with_hasher(limits, hasher), decoder: DecoderStats::default(), advanced: i64::MIN }
    }

    /// Expire what is due if the clock moved since the last call. (A flow
    /// can be created with its deadline behind the clock, by a packet from
    /// before a clock jump: it lives until the clock moves again.)
    pub fn advance(&mut self, clock: i64, out: &mut Vec<Ended>) {
        if clock > self.advanced {
            self.advanced = clock;
            self.table.expire(clock, out);
        }
    }

    /// One packet, already decoded (or the reason it could not be).
    pub fn decoded(&mut self, d: Result<&Decoded<'_>, Skip>, ts: i64, orig_len: u32, source: usize, out: &mut Vec<Ended>) {
        match d {
            Ok(d) => {
                self.count_decoded(d);
                self.table.packet(d, ts, orig_len, source, out);
            }
            Err(skip) => *self.decoder.skipped.entry(skip.reason()).or_default() += 1,
        }
    }

    /// One captured frame.
    pub fn packet(&mut self, linktype: u32, data: &[u8], ts: i64, orig_len: u32, source: usize, out: &mut Vec<Ended>) {
        let d = decode(linktype, data);
        self.decoded(d.as_ref().map_err(|e| *e), ts, orig_len, source, out);
    }

    /// One packet decoded, with the hash of its flow key in this shard's
    /// table (computed by another thread with the same hasher), or the
    /// reason it could not be decoded.
    pub fn hashed(&mut self, d: Result<&Decoded<'_>, Skip>, hash: u64, ts: i64, orig_len: u32, source: usize, out: &mut Vec<Ended>) {
        match d {
            Ok(d) => {
                self.count_decoded(d);
                self.table.packet_hashed(d, &FlowKey::new(d), hash, ts, orig_len, source, out);
            }
            Err(skip) => *self.decoder.skipped.entry(skip.reason()).or_default() += 1,
        }
    }

    fn count_decoded(&mut self, d: &Decoded<'_>) {
        let s = &mut self.decoder;
        s.truncated += u64::from(d.truncated);
        s.tunnelled += u64::from(d.tunnel.is_some());
        if d.proto == 6 {
            s.tcp += 1;
        } else {
            s.udp += 1;
        }
    }
}

/// Add another shard's counters. High-water marks add up too, so with
/// several shards they bound the real peak from above.
pub fn add_table_stats(a: &mut TableStats, b: &TableStats) {
    let TableStats {
        flows_created,
        flows_ended,
        flows_evicted,
        flows_timed_out,
        flows_active_max,
        tls_flows,
        quic_flows,
        not_tls_flows,
        midstream_flows,
        udp_packets_ignored,
        reassembly_retransmitted_bytes,
        reassembly_gaps,
        reassembly_gap_bytes,
        reassembly_overflows,
        reassembly_out_of_order,
        reassembly_overlap_diff_data,
        tls_handshake_overflows,
        quic_undecryptable,
        heap_bytes_max,
        bypassed_flows,
        bypassed_packets,
        buffer_budget_drops,
        late_packets_after_close,
    } = *b;
    a.flows_created += flows_created;
    a.flows_ended += flows_ended;
    a.flows_evicted += flows_evicted;
    a.flows_timed_out += flows_timed_out;
    a.flows_active_max += flows_active_max;
    a.tls_flows += tls_flows;
    a.quic_flows += quic_flows;
    a.not_tls_flows += not_tls_flows;
    a.midstream_flows += midstream_flows;
    a.udp_packets_ignored += udp_packets_ignored;
    a.reassembly_retransmitted_bytes += reassembly_retransmitted_bytes;
    a.reassembly_gaps += reassembly_gaps;
    a.reassembly_gap_bytes += reassembly_gap_bytes;
    a.reassembly_overflows += reassembly_overflows;
    a.reassembly_out_of_order += reassembly_out_of_order;
    a.reassembly_overlap_diff_data += reassembly_overlap_diff_data;
    a.tls_handshake_overflows += tls_handshake_overflows;
    a.quic_undecryptable += quic_undecryptable;
    a.heap_bytes_max += heap_bytes_max;
    a.bypassed_flows += bypassed_flows;
    a.bypassed_packets += bypassed_packets;
    a.buffer_budget_drops += buffer_budget_drops;
    a.late_packets_after_close += late_packets_after_close;
}

pub fn add_decoder_stats(a: &mut DecoderStats, b: &DecoderStats) {
    a.tcp += b.tcp;
    a.udp += b.udp;
    a.truncated += b.truncated;
    a.tunnelled += b.tunnelled;
    for (k, v) in &b.skipped {
        *a.skipped.entry(k).or_default() += v;
    }
}

/// An ended flow waiting for its turn in the output.
struct Pending(Prepared);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.0.order == other.0.order
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
        self.0.order.cmp(&other.0.order)
    }
}

/// Counters of the output stage.
#[derive(Debug, Default, Clone)]
pub struct ReportStats {
    pub tls_records_logged: u64,
    pub quic_records_logged: u64,
    pub alerts_logged: u64,
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
    correlator: Correlator,
    pub enricher: Option<crate::enrich::Enricher>,
    folder: crate::enrich::Folder,
    pending: BinaryHeap<Reverse<Pending>>,
    pub stats: ReportStats,
    write_err: Option<std::io::Error>,
    streaming: Option<Streaming>,
    /// The inline inspector's profile ([`crate::inspector`]).
    profile: crate::inspector::Profile,
}

impl Reporter {
    /// `names`: the capture file names, indexed by a flow's `source`.
    pub fn new(opts: &Options, names: Vec<String>) -> anyhow::Result<Self> {
        let mut enricher = if opts.feeds.is_empty() && opts.feed_urls.is_empty() {
            None
        } else {
            let (mut en, errors) = crate::enrich::Enricher::load_sources_via(&opts.feeds, &opts.feed_urls, std::time::Duration::from_secs(60), opts.config.feed.http.clone())?;
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
            write_err: None,
            streaming: None,
            profile: crate::inspector::Profile::new(&opts.config),
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
        self.streaming = Some(Streaming {
            reader: Default::default(),
            line_no: 0,
            batch: Vec::new(),
            revisit: Default::default(),
            window_ns,
        });
    }

    /// One feed line (JSON, `enrichment/FEED.md`), numbered in arrival
    /// order; applied by [`Reporter::apply_feed`].
    pub fn feed_line(&mut self, text: &str) {
        let n = self.streaming.as_ref().map_or(0, |st| st.line_no + 1);
        self.feed_line_at(text, n);
    }

    /// One feed line with the line number its source gives it (a followed
    /// file's own line number), which reasons and problems then cite.
    pub fn feed_line_at(&mut self, text: &str, line_no: u64) {
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

    /// Feed lines taken by [`Reporter::feed_line`] and not applied yet.
    pub fn feed_pending(&self) -> usize {
        self.streaming.as_ref().map_or(0, |st| st.batch.len())
    }

    /// Apply the feed lines taken so far and write the AN1725 alerts they change.
    pub fn apply_feed(&mut self, out: &mut dyn Write) {
        let (Some(st), Some(en)) = (self.streaming.as_mut(), self.enricher.as_mut()) else { return };
        if st.batch.is_empty() {
            return;
        }
        en.add_events(std::mem::take(&mut st.batch), st.reader.report());
        let (ocsf, err) = (self.ocsf, &mut self.write_err);
        for r in st.revisit.iter_mut() {
            let vlans: Vec<u16> = r.header.vlan.ids().collect();
            let Some(m) = en.re_enrich_at(r.iface.as_deref(), &vlans, r.header.src_ip, r.header.dest_ip, r.header.dest_port, r.brief.sni.as_deref(), r.start_ns) else { continue };
            let Some(v) = crate::enrich::an1725(&m, &r.sids, r.header.flow_id) else { continue };
            if r.last.as_ref().is_some_and(|(c, reasons)| *c == v.confidence && *reasons == v.reasons) {
                continue;
            }
            let header = eve::Header { pcap_filename: r.pcap.as_deref(), in_iface: r.iface.as_deref(), host: r.host.as_deref(), ..r.header.clone() };
            let brief = r.brief.lend();
            let mut write = |v: &dyn erased::Json| write_to(ocsf, err, v, out);
            if let Some(written) = an1725_alert(&header, brief, &r.failure, &r.path, &m, &r.sids, r.net_conf, &r.flow_ids, r.start_ns, &mut self.folder, &mut self.stats, &mut write) {
                self.stats.late_enrichment_updates += 1;
                r.last = Some((v.confidence, v.reasons));
                let _ = written;
            }
        }
    }

}

/// Keep a session with findings for late enrichment (live mode).
fn keep_for_late_feed(streaming: &mut Option<Streaming>, stats: &mut ReportStats, l: &Logged<'_>, (sids, net_conf, flow_ids): (Vec<u32>, classify::Confidence, Vec<u64>), verdict: Option<&crate::enrich::An1725>) {
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
    pub fn profile_mut(&mut self) -> &mut crate::inspector::Profile {
        &mut self.profile
    }

    pub fn profile(&self) -> &crate::inspector::Profile {
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
        self.config = config;
    }

    /// What the threads that end flows need to prepare them for this
    /// reporter ([`Reporter::push_prepared`]).
    pub fn preparer(&self) -> Preparer {
        Preparer { config: self.config.clone(), names: self.names.clone(), ocsf: self.ocsf }
    }

    /// Hold ended flows until their turn (prepared on this thread).
    pub fn push(&mut self, ended: &mut Vec<Ended>) {
        for e in ended.drain(..) {
            let p = prepare(e, &self.config, &self.names, self.ocsf);
            self.pending.push(Reverse(Pending(p)));
        }
        self.stats.pending_max = self.stats.pending_max.max(self.pending.len() as u64);
    }

    /// Hold ended flows that another thread prepared with [`Reporter::preparer`].
    pub fn push_prepared(&mut self, prepared: &mut Vec<Prepared>) {
        for p in prepared.drain(..) {
            self.pending.push(Reverse(Pending(p)));
        }
        self.stats.pending_max = self.stats.pending_max.max(self.pending.len() as u64);
    }

    /// Write every held flow that ended before clock `watermark` (phase 0).
    pub fn release(&mut self, watermark: i64, out: &mut dyn Write) {
        self.release_below(OrderKey::at(watermark), out);
    }

    /// Write every held flow whose key is below `key`.
    pub fn release_below(&mut self, key: OrderKey, out: &mut dyn Write) {
        while let Some(Reverse(Pending(e))) = self.pending.peek() {
            if e.order >= key {
                break;
            }
            if let Some(Reverse(Pending(e))) = self.pending.pop() {
                self.report(e, out);
            }
        }
    }

    /// Write everything held, then `ended`, which must come after it in
    /// output order, in turn (a table's drain at the end of input: phase 1,
    /// sorted). Each is prepared and written before the next, so its
    /// record's memory serves the next one's, instead of a fresh record
    /// for every flow that was still open being held at once.
    pub fn write_in_order(&mut self, ended: &mut Vec<Ended>, out: &mut dyn Write) {
        self.release_all(out);
        let mut last: Option<OrderKey> = None;
        for e in ended.drain(..) {
            debug_assert!(last.is_none_or(|l| l <= e.order), "flows out of order");
            last = Some(e.order);
            let p = prepare(e, &self.config, &self.names, self.ocsf);
            self.report(p, out);
        }
    }

    /// Write everything held (end of input).
    pub fn release_all(&mut self, out: &mut dyn Write) {
        while let Some(Reverse(Pending(e))) = self.pending.pop() {
            self.report(e, out);
        }
    }

    /// The first write error, if any; writing stops at it.
    pub fn take_write_error(&mut self) -> Option<std::io::Error> {
        self.write_err.take()
    }

    /// The findings of a logged session: correlate, write the alerts, keep
    /// the session for late feed batches.
    fn findings(&mut self, logged: &Logged<'_>, out: &mut dyn Write) {
        let (ocsf, err) = (self.ocsf, &mut self.write_err);
        let (sids, net_conf, flow_ids, verdict) = correlate(logged, &mut self.correlator, &mut self.folder, self.enricher.as_mut(), &mut self.stats, &mut |v: &dyn erased::Json| write_to(ocsf, err, v, out));
        keep_for_late_feed(&mut self.streaming, &mut self.stats, logged, (sids, net_conf, flow_ids), verdict.as_ref());
    }

    fn report(&mut self, p: Prepared, out: &mut dyn Write) {
        // The names are lent out for the call, so that the records can
        // borrow them while the reporter's state is updated.
        let names = std::mem::take(&mut self.names);
        self.report_with(p, &names, out);
        self.names = names;
    }

    fn report_with(&mut self, p: Prepared, names: &Naming, out: &mut dyn Write) {
        let source = p.source;
        match p.body {
            Body::Nothing => {}
            Body::NotTls(header) => {
                let header = names.header(source, header);
                if let Some(f) = self.correlator.observe_not_tls(header.flow_id, header.src_ip, header.dest_ip, header.dest_port) {
                    let a = eve::AlertEvent::new(&header, AlertBody::new(f.sid, f.confidence), None, None, None, f.evidence);
                    self.stats.alerts_logged += 1;
                    let (ocsf, err) = (self.ocsf, &mut self.write_err);
                    write_to(ocsf, err, &a, out);
                }
            }
            Body::Session(s) => {
                let Session { header, quic, start_ns, ech, brief, failure, mut path, record } = *s;
                // The desk decides what the flow's thread could not: the
                // path of a session an inline inspector covers, against
                // the inspector's profile learned so far (in output order).
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
                let mobile = self.enricher.as_mut().and_then(|en| en.enrich_at(header.in_iface, &vlans, header.src_ip, header.dest_ip, header.dest_port, brief.sni.as_deref(), start_ns));
                if let (Record::Line { line, mobile_at, path_at }, None) = (&record, &self.write_err) {
                    let new_path = rejudged.then_some(&path);
                    if let Err(e) = write_spliced(out, line, *mobile_at, *path_at, new_path, mobile.as_ref()) {
                        self.write_err = Some(e);
                    }
                }
                drop(record);
                let brief = brief.lend();
                let logged = Logged { header: &header, start_ns, brief, failure: Some(&failure), path: Some(&path), mobile: mobile.as_ref(), ech, quic };
                self.findings(&logged, out);
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
    pub names: Vec<String>,
    pub live: bool,
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
    pub fn prepare(&self, e: Ended) -> Prepared {
        prepare(e, &self.config, &self.names, self.ocsf)
    }
}

/// An ended flow made ready for the output by the thread that ended it:
/// classified, its record rendered, what the findings need taken out, and
/// the flow dropped. With several flow-table threads this work is spread
/// over them, and the reporter, which must take the records one at a time
/// in output order, only enriches, correlates and writes.
pub struct Prepared {
    pub order: OrderKey,
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
        eve::TlsBrief { sni: self.sni.as_deref(), version: &self.version, ja4: self.ja4.as_deref(), ja3: self.ja3.as_ref(), issuerdn: self.issuerdn.as_deref() }
    }
}

enum Record {
    /// OCSF output: it carries alerts only.
    Omitted,
    /// The EVE line, rendered without `mobile`. The device feed's `mobile`
    /// object depends on the reporter's state (the enricher learns app
    /// baselines from the sessions in output order), so the reporter
    /// splices it in at `mobile_at`: before `"flow"`, the record's last
    /// field, where serde would have written it ([`write_spliced`]).
    Line { line: Vec<u8>, mobile_at: usize, path_at: usize },
}

/// Classify an ended flow, render its record and take out what the output
/// needs.
fn prepare(e: Ended, cfg: &crate::config::Config, names: &Naming, ocsf: bool) -> Prepared {
    let order = e.order;
    let source = e.flow.source as usize;
    let session = match e.flow.proto {
        Proto::NotTls => {
            let h = eve::Header::of(&e.flow, None, "alert", "failed");
            return Prepared { order, source, body: Body::NotTls(h) };
        }
        Proto::Quic => {
            let mut ev = eve::quic_event(&e, None);
            ev.header = names.header(source, ev.header);
            let failure = classify::quic_outcome(&e);
            let path = classify::path(&e, cfg, ev.quic.sni.as_deref(), None);
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
            Session { header, quic: true, start_ns: e.flow.first_ts, ech: hello.is_some_and(|h| h.offers_ech()), brief, failure, path, record }
        }
        Proto::Tls if e.flow.session.is_tls() => {
            let mut ev = eve::tls_event(&e, None);
            ev.header = names.header(source, ev.header);
            let failure = classify::outcome(&e, cfg);
            let path = classify::path(&e, cfg, ev.tls.sni, ev.tls.ja3s.as_ref().map(|f| f.hash.as_str()));
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
            Session { header, quic: false, start_ns: e.flow.first_ts, ech: hello.is_some_and(|h| h.offers_ech()), brief, failure, path, record }
        }
        _ => return Prepared { order, source, body: Body::Nothing },
    };
    Prepared { order, source, body: Body::Session(Box::new(session)) }
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

/// Write a rendered line with the `mobile` object spliced in at
/// `mobile_at`: the bytes serde_json writes for the record with `mobile`
/// set (`tests`: `a_spliced_record_is_what_serde_writes`).
/// A `path` decided at the desk replaces the one rendered, between
/// `path_at` and `mobile_at`.
fn write_spliced(out: &mut dyn Write, line: &[u8], mobile_at: usize, path_at: usize, path: Option<&classify::PathOut>, mobile: Option<&crate::enrich::MobileOut>) -> std::io::Result<()> {
    if mobile.is_none() && path.is_none() {
        return out.write_all(line);
    }
    let mobile_at = mobile_at.min(line.len());
    let (head, tail) = line.split_at(mobile_at);
    let head = match path {
        Some(_) => &head[..path_at.min(mobile_at)],
        None => head,
    };
    let mut mid = Vec::with_capacity(1024);
    if let Some(p) = path {
        mid.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut mid, p)?;
    }
    if let Some(m) = mobile {
        mid.extend_from_slice(b",\"mobile\":");
        serde_json::to_writer(&mut mid, m)?;
    }
    out.write_all(head)?;
    out.write_all(&mid)?;
    out.write_all(tail)
}

fn write_to(ocsf: bool, err: &mut Option<std::io::Error>, v: &dyn erased::Json, out: &mut dyn Write) {
    if err.is_none() {
        let r = if ocsf { v.write_ocsf(out) } else { v.write_line(out) };
        if let Err(e) = r {
            *err = Some(e);
        }
    }
}

/// Assemble the stats record from the parts.
pub fn stats_of(capture: &CaptureStats, decoder: &DecoderStats, table: &TableStats, report: &Reporter, limits: &Limits, shards: usize) -> Stats {
    Stats {
        capture: capture.clone(),
        decoder: decoder.clone(),
        flow: *table,
        tls_records_logged: report.stats.tls_records_logged,
        quic_records_logged: report.stats.quic_records_logged,
        alerts_logged: report.stats.alerts_logged,
        enrichment: report.enricher.as_ref().map(|e| e.stats_out()),
        outcomes: report.stats.outcomes.clone(),
        late_enrichment_updates: report.stats.late_enrichment_updates,
        late_enrichment_dropped: report.stats.late_enrichment_dropped,
        correlator_dropped: report.correlator.dropped,
        an1725_folds_dropped: report.folder.dropped,
        memory: MemoryStats {
            flow_buffers_max: table.heap_bytes_max,
            flows_max: table.flows_active_max,
            flow_cap: limits.max_flows as u64,
            buffer_budget: limits.max_buffer_bytes as u64,
            shards: shards as u64,
            pending_records_max: report.stats.pending_max,
        },
    }
}

/// Write a stats record (EVE only; OCSF carries alerts only).
pub fn write_stats(out: &mut dyn Write, clock: i64, stats: &Stats, ocsf: bool) -> std::io::Result<()> {
    if ocsf {
        return Ok(());
    }
    #[derive(serde::Serialize)]
    struct StatsEvent<'a> {
        timestamp: String,
        event_type: &'static str,
        stats: &'a Stats,
    }
    let ev = StatsEvent { timestamp: eve::timestamp(if clock == i64::MIN { 0 } else { clock }), event_type: "stats", stats };
    serde_json::to_writer(&mut *out, &ev)?;
    out.write_all(b"\n")
}

/// One clock, one shard and one reporter on the caller's thread.
pub struct Engine {
    pub clock: Clock,
    pub shard: Shard,
    pub reporter: Reporter,
    pub capture: CaptureStats,
    limits: Limits,
    ocsf: bool,
    ended: Vec<Ended>,
}

impl Engine {
    /// `names`: the capture sources (files or interfaces), indexed by `Packet::source`.
    pub fn new(opts: &Options, names: Vec<String>) -> anyhow::Result<Self> {
        Ok(Engine {
            clock: Clock::default(),
            shard: Shard::new(opts.limits),
            reporter: Reporter::new(opts, names)?,
            capture: CaptureStats::default(),
            limits: opts.limits,
            ocsf: opts.ocsf,
            ended: Vec::new(),
        })
    }

    /// One captured packet.
    pub fn packet(&mut self, p: &Packet<'_>, out: &mut dyn Write) {
        self.capture.packets += 1;
        self.capture.bytes += p.data.len() as u64;
        if let Some(now) = self.clock.observe(p.ts_ns) {
            self.shard.advance(now, &mut self.ended);
        }
        self.shard.packet(p.linktype, p.data, p.ts_ns, p.orig_len, p.source, &mut self.ended);
        if !self.ended.is_empty() {
            self.reporter.push(&mut self.ended);
            self.reporter.release(self.clock.now(), out);
        }
    }

    /// Time passes without packets (live capture on a quiet link).
    pub fn advance(&mut self, now: i64, out: &mut dyn Write) {
        if self.clock.force(now) {
            self.shard.advance(now, &mut self.ended);
            self.reporter.push(&mut self.ended);
            self.reporter.release(now, out);
        }
    }

    /// End every open flow with `kind` (end of capture, shutdown) and write them.
    pub fn finish(&mut self, kind: CloseKind, out: &mut dyn Write) {
        self.shard.table.drain(kind, &mut self.ended);
        self.reporter.write_in_order(&mut self.ended, out);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let mut capture = self.capture.clone();
        capture.timestamp_jumps = self.clock.jumps;
        stats_of(&capture, &self.shard.decoder, &self.shard.table.stats, &self.reporter, &self.limits, 1)
    }

    /// Write a stats record stamped with the capture clock.
    pub fn write_stats(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        write_stats(out, self.clock.now(), &self.stats(), self.ocsf)
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
        (None, Some(k)) if failure.outcome == classify::Outcome::Incomplete => format!("{}incomplete_{k:?}", if l.quic { "quic_" } else { "" }),
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
    let brief = || eve::TlsBrief { sni: l.brief.sni, version: l.brief.version, ja4: l.brief.ja4, ja3: l.brief.ja3, issuerdn: l.brief.issuerdn };
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
            findings.push(crate::findings::Finding {
                sid: crate::findings::SID_BASELINE,
                confidence: classify::Confidence::Medium,
                evidence: crate::findings::Evidence {
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
        let mut a = eve::AlertEvent::new(l.header, AlertBody::new(f.sid, f.confidence), Some(brief()), Some(failure), Some(path), f.evidence);
        a.mobile = l.mobile;
        stats.alerts_logged += 1;
        write(&a);
    }
    // The AN1725 join: the network findings of an enriched session, with
    // the device and app evidence that makes them an app's behaviour.
    flow_ids.sort_unstable();
    flow_ids.dedup();
    let verdict = l.mobile.and_then(|m| an1725_alert(l.header, brief(), failure, path, m, &sids, net_conf, &flow_ids, l.start_ns, folder, stats, write));
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
    let cap = crate::findings::confidence_name(net_conf);
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
    let evidence = crate::findings::Evidence { reasons: verdict.reasons.clone(), flow_ids };
    let confidence = match verdict.confidence {
        "high" => classify::Confidence::High,
        "medium" => classify::Confidence::Medium,
        _ => classify::Confidence::Low,
    };
    let mut a = eve::AlertEvent::new(header, AlertBody::new(crate::findings::SID_AN1725, confidence), Some(brief), Some(failure), Some(path), evidence);
    a.mobile = Some(m);
    a.an1725 = Some(verdict.clone());
    stats.alerts_logged += 1;
    write(&a);
    Some(verdict)
}

/// One JSON line, whatever the record type.
mod erased {
    pub trait Json {
        fn write_line(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
        /// The OCSF form of an alert; other records write nothing.
        fn write_ocsf(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }
    impl<T: serde::Serialize> Json for T {
        fn write_line(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            // Into a buffer first: serde_json writes every token separately,
            // and through `dyn Write` each of those is a virtual call. One
            // buffer per thread, kept: a fresh one per record cost an
            // allocation and fresh pages every time.
            thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(8192)));
            LINE.with_borrow_mut(|line| {
                line.clear();
                serde_json::to_writer(&mut *line, self)?;
                line.push(b'\n');
                let r = out.write_all(line);
                // A rare huge record does not keep its memory.
                if line.capacity() > 1 << 20 {
                    *line = Vec::with_capacity(8192);
                }
                r
            })
        }
        fn write_ocsf(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            let v = serde_json::to_value(self)?;
            match crate::ocsf::detection_finding(&v) {
                Some(f) => {
                    serde_json::to_writer(&mut *out, &f)?;
                    out.write_all(b"\n")
                }
                None => Ok(()),
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Packet times at the ends of the `i64` range (pcapng `if_tsoffset`):
    /// every distance saturates (this panicked with overflow checks on, in
    /// `ts - now` and `(ts - c).abs()`), and a jump is still a jump.
    #[test]
    fn clock_at_the_ends_of_time_does_not_overflow() {
        let mut c = Clock::default();
        assert_eq!(c.observe(i64::MIN + 1), Some(i64::MIN + 1));
        assert!(!c.believes(i64::MAX));
        assert_eq!(c.observe(i64::MAX), None, "an unconfirmed jump");
        assert_eq!(c.observe(-5), None, "not within an hour of the candidate: a new candidate");
        assert_eq!(c.observe(-4), Some(-4), "confirmed");
        assert_eq!(c.observe(i64::MAX), None);
        assert_eq!(c.observe(i64::MAX), Some(i64::MAX), "confirmed at the end of time");
        assert_eq!(c.jumps, 3);
    }

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
        let (mut en, errors) = crate::enrich::Enricher::load_sources(&[pcaps.join("testbed-fallback.feed.jsonl")], &[], std::time::Duration::from_secs(1)).expect("testbed feed loads");
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
                    let (f, p) = (classify::outcome(&e, &cfg), classify::path(&e, &cfg, ev.tls.sni, ev.tls.ja3s.as_ref().map(|f| f.hash.as_str())));
                    let m = en.enrich(ev.header.src_ip, ev.header.dest_ip, ev.header.dest_port, ev.tls.sni, e.flow.first_ts);
                    ev.tls_failure = Some(&f);
                    ev.path = Some(&p);
                    let plain = serde_json::to_vec(&ev).expect("serialises");
                    ev.mobile = m.as_ref();
                    (plain, serde_json::to_vec(&ev).expect("serialises"), m.clone())
                };
                let p = prepare(e, &cfg, &Naming { names: names.clone(), ..Naming::default() }, false);
                let Body::Session(s) = p.body else { panic!("a session is prepared as one") };
                let Record::Line { line, mobile_at, path_at } = &s.record else { panic!("EVE records are rendered") };
                let mut plain = Vec::new();
                write_spliced(&mut plain, line, *mobile_at, *path_at, None, None).expect("writes");
                assert_eq!(String::from_utf8_lossy(&plain), String::from_utf8_lossy(&[expected_plain, b"\n".to_vec()].concat()));
                let mut spliced = Vec::new();
                write_spliced(&mut spliced, line, *mobile_at, *path_at, None, mobile.as_ref()).expect("writes");
                assert_eq!(String::from_utf8_lossy(&spliced), String::from_utf8_lossy(&[expected_mobile, b"\n".to_vec()].concat()));
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
        let p = prepare(e, &cfg, &Naming::default(), true);
        assert!(matches!(p.body, Body::Session(ref s) if matches!(s.record, Record::Omitted)));
    }
}
