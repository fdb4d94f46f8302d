//! The packet engine, in three parts that replay and live capture share:
//!
//! - [`Clock`]: the capture clock, driven by packet timestamps only.
//! - [`Shard`]: decode and one flow table. Replay with `--threads N` runs N
//!   shards, each owning the flows of whole partitions of the flow key
//!   ([`crate::flow::partition`]), so the packet path takes no lock and the
//!   caps, which are per partition, act as with one shard.
//! - [`Reporter`] ([`crate::run::reporter`], sans I/O): classification,
//!   enrichment, findings and records, in the order of
//!   [`crate::flow::OrderKey`], whatever the number of shards; [`WriteOut`]
//!   is its writer.
//!
//! [`Engine`] is one clock, one shard and one reporter on the caller's thread
//! (replay with one thread, live capture).

use std::io::Write;

use pinwatch_parsers::decode::{decode, Decoded, Skip};
use pinwatch_parsers::time::Timestamp;

use crate::capture::Packet;
use crate::flow::{CloseKind, Ended, FlowKey, FlowTable, Limits, OrderKey, TableStats};
use crate::output::eve;
use crate::run::options::Options;
use crate::run::stats::{CaptureStats, DecoderStats, MemoryStats, Stats};

pub use crate::run::reporter::{Naming, Prepared, Preparer, ReportStats, Reporter};

/// The writer side of the [`Reporter`]: each call hands the reporter its
/// input (`handle_*`), then writes the records it polls to `out`. After a
/// write error nothing more is written (the reporter keeps the error,
/// [`Reporter::take_write_error`]), but the reporter still takes its input.
pub trait WriteOut {
    /// [`Reporter::handle_time`], then write.
    fn release(&mut self, watermark: i64, out: &mut dyn Write);
    /// [`Reporter::handle_watermark`], then write.
    fn release_below(&mut self, key: OrderKey, out: &mut dyn Write);
    /// [`Reporter::handle_end_of_input`], then write.
    fn release_all(&mut self, out: &mut dyn Write);
    /// [`Reporter::handle_drained`] for each of a table's drain, in order,
    /// each written before the next.
    fn write_in_order(&mut self, ended: &mut Vec<Ended>, out: &mut dyn Write);
    /// [`Reporter::handle_feed_apply`], then write.
    fn apply_feed(&mut self, out: &mut dyn Write);
    /// Write every record the reporter has ready.
    fn write_records(&mut self, out: &mut dyn Write);
}

impl WriteOut for Reporter {
    fn release(&mut self, watermark: i64, out: &mut dyn Write) {
        self.handle_time(watermark);
        self.write_records(out);
    }
    fn release_below(&mut self, key: OrderKey, out: &mut dyn Write) {
        self.handle_watermark(key);
        self.write_records(out);
    }
    fn release_all(&mut self, out: &mut dyn Write) {
        self.handle_end_of_input();
        self.write_records(out);
    }
    fn write_in_order(&mut self, ended: &mut Vec<Ended>, out: &mut dyn Write) {
        self.release_all(out);
        for e in ended.drain(..) {
            self.handle_drained(e);
            self.write_records(out);
        }
    }
    fn apply_feed(&mut self, out: &mut dyn Write) {
        self.handle_feed_apply();
        self.write_records(out);
    }
    fn write_records(&mut self, out: &mut dyn Write) {
        while let Some(line) = self.poll_record() {
            if self.write_failed() {
                continue;
            }
            if let Err(e) = out.write_all(&line) {
                self.note_write_error(e);
            }
        }
    }
}

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
    /// The flow table of the flows this shard owns.
    pub table: FlowTable,
    /// Counters of the frames this shard decoded.
    pub decoder: DecoderStats,
    /// The clock of the last [`Shard::advance`].
    advanced: i64,
    /// With a preparer, open sessions are reported at their verdict
    /// ([`crate::flow::decision`]) into [`Shard::verdicts`].
    preparer: Option<Preparer>,
    /// Open sessions reported at their verdict, prepared, for the reporter.
    pub verdicts: Vec<Prepared>,
}

impl Shard {
    /// A shard with a flow table of `limits`, its hash keys random.
    pub fn new(limits: Limits) -> Self {
        Self::with_hasher(limits, ahash::RandomState::new())
    }

    /// A shard whose flow table hashes keys with `hasher` (shared by the
    /// shards of one run, so that a reader thread can hash for them).
    pub fn with_hasher(limits: Limits, hasher: ahash::RandomState) -> Self {
        Shard {
            table: FlowTable::with_hasher(limits, hasher),
            decoder: DecoderStats::default(),
            advanced: i64::MIN,
            preparer: None,
            verdicts: Vec::new(),
        }
    }

    /// Report open sessions at their verdict, prepared with `p` (the
    /// reporter's [`Reporter::preparer`]; again after a configuration reload).
    pub fn set_preparer(&mut self, p: Preparer) {
        self.table.report_open(p.decision_timeout_ns());
        self.preparer = Some(p);
    }

    /// Prepare the open sessions whose verdict came due at the last expiry,
    /// before any other packet touches them.
    fn report_due(&mut self) {
        let due = self.table.take_due();
        let Some(p) = self.preparer.as_ref() else { return };
        for (key, order) in due {
            if let Some(v) = self.table.lend(&key, order, |e| p.snapshot(e)) {
                self.verdicts.push(v);
            }
        }
    }

    /// Expire what is due if the clock moved since the last call. (A flow
    /// can be created with its deadline behind the clock, by a packet from
    /// before a clock jump: it lives until the clock moves again.)
    pub fn advance(&mut self, clock: i64, out: &mut Vec<Ended>) {
        if clock > self.advanced {
            self.advanced = clock;
            while self.table.expire(clock, out) {
                self.report_due();
            }
            self.report_due();
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

/// Add another shard's decoder counters to `a`.
pub fn add_decoder_stats(a: &mut DecoderStats, b: &DecoderStats) {
    a.tcp += b.tcp;
    a.udp += b.udp;
    a.truncated += b.truncated;
    a.tunnelled += b.tunnelled;
    for (k, v) in &b.skipped {
        *a.skipped.entry(k).or_default() += v;
    }
}

/// Assemble the stats record from the parts.
pub fn stats_of(
    capture: &CaptureStats,
    decoder: &DecoderStats,
    table: &TableStats,
    report: &Reporter,
    limits: &Limits,
    shards: usize,
) -> Stats {
    Stats {
        capture: capture.clone(),
        decoder: decoder.clone(),
        flow: *table,
        tls_records_logged: report.stats.tls_records_logged,
        quic_records_logged: report.stats.quic_records_logged,
        alerts_logged: report.stats.alerts_logged.saturating_sub(report.tuning.stats.withheld()),
        flow_records_logged: report.stats.flow_records_logged,
        enrichment: report.enricher.as_ref().map(|e| e.stats_out()),
        outcomes: report.stats.outcomes.clone(),
        late_enrichment_updates: report.stats.late_enrichment_updates,
        late_enrichment_dropped: report.stats.late_enrichment_dropped,
        correlator_dropped: report.correlator.dropped,
        an1725_folds_dropped: report.folder.dropped,
        tuning: {
            let t = &report.tuning.stats;
            (t.rules + t.bad_lines + t.reloads + t.withheld() > 0).then(|| t.clone())
        },
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
    /// The capture clock.
    pub clock: Clock,
    /// Decode and the flow table.
    pub shard: Shard,
    /// Classification, enrichment, findings and records.
    pub reporter: Reporter,
    /// Capture counters: packets and bytes seen, file count and errors.
    pub capture: CaptureStats,
    limits: Limits,
    ocsf: bool,
    ended: Vec<Ended>,
}

impl Engine {
    /// `names`: the capture sources (files or interfaces), indexed by `Packet::source`.
    pub fn new(opts: &Options, names: Vec<String>) -> anyhow::Result<Self> {
        let reporter = Reporter::new(opts, names)?;
        let mut shard = Shard::new(opts.limits);
        shard.set_preparer(reporter.preparer());
        Ok(Engine {
            clock: Clock::default(),
            shard,
            reporter,
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
        if !self.ended.is_empty() || !self.shard.verdicts.is_empty() {
            self.reporter.handle_prepared(&mut self.shard.verdicts);
            self.reporter.handle_ended(&mut self.ended);
            self.reporter.release(self.clock.now(), out);
        }
    }

    /// Time passes without packets (live capture on a quiet link).
    pub fn advance(&mut self, now: i64, out: &mut dyn Write) {
        if self.clock.force(now) {
            self.shard.advance(now, &mut self.ended);
            self.reporter.handle_prepared(&mut self.shard.verdicts);
            self.reporter.handle_ended(&mut self.ended);
            self.reporter.release(now, out);
        }
    }

    /// End every open flow with `kind` (end of capture, shutdown) and write them.
    pub fn finish(&mut self, kind: CloseKind, out: &mut dyn Write) {
        self.reporter.handle_prepared(&mut self.shard.verdicts);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
