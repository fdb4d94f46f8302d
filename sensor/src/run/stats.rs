//! The `stats` record's counters: capture, decoder, flow table, records
//! written, enrichment and memory high-water marks.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::flow::TableStats;

/// `stats.capture`: what was read.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CaptureStats {
    /// `files`: capture files opened (replay).
    pub files: usize,
    /// Packets more than an hour ahead of the capture clock that the next
    /// packet did not confirm (not used to expire flows).
    pub timestamp_jumps: u64,
    /// `packets`: packets read.
    pub packets: u64,
    /// `bytes`: bytes of the packets as captured (snap length, link layer included).
    pub bytes: u64,
    /// Written as `error_messages`: Suricata's `stats.capture.errors` is a
    /// count, and one key must not hold two types.
    #[serde(rename = "error_messages")]
    pub errors: Vec<String>,
    /// Chunks read by other threads and thrown away because the chunk
    /// before did not end where their start was guessed: a wrong guess (a
    /// capture with a capture file in its payload can fool it), or a chunk
    /// of tiny records cut short at [`crate::run::sharded::MAX_CHUNK_PACKETS`]
    /// (see [`crate::run::sharded`]). Costs time, never records.
    pub chunk_starts_rejected: u64,
}

/// `stats.decoder`: what the frames decoded to.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DecoderStats {
    /// `tcp`: TCP packets decoded.
    pub tcp: u64,
    /// `udp`: UDP packets decoded.
    pub udp: u64,
    /// `truncated`: packets cut short by the snap length.
    pub truncated: u64,
    /// `tunnelled`: packets decoded from inside a tunnel.
    pub tunnelled: u64,
    /// Frames that produced no TCP/UDP packet, per reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

/// The `stats` record, the last line of a run (docs/output.md).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// `capture`: what was read.
    pub capture: CaptureStats,
    /// `decoder`: what the frames decoded to.
    pub decoder: DecoderStats,
    /// `flow`: the flow table's counters.
    pub flow: TableStats,
    /// `tls_records_logged`: `tls` lines written.
    pub tls_records_logged: u64,
    /// `quic_records_logged`: `quic` lines written.
    pub quic_records_logged: u64,
    /// `alerts_logged`: `alert` lines written, after tuning.
    pub alerts_logged: u64,
    /// `flow` records: the ends of sessions reported while open.
    pub flow_records_logged: u64,
    /// `enrichment`: the device feed's counters; absent without a feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<crate::enrich::EnrichStats>,
    /// Sessions per outcome and per failure class.
    pub outcomes: BTreeMap<String, u64>,
    /// Live mode: AN1725 alerts written again after a late feed batch.
    pub late_enrichment_updates: u64,
    /// Live mode: sessions dropped from the late-enrichment window (cap).
    pub late_enrichment_dropped: u64,
    /// Sessions the fallback correlator forgot before their window ended
    /// because it held its cap (100,000 keys, 200,000 sessions; or 16 per
    /// client and name).
    pub correlator_dropped: u64,
    /// AN1725 alert folds closed before their window ended because 100,000
    /// were open (a repeat then starts a new `alert_id`).
    pub an1725_folds_dropped: u64,
    /// Alert tuning (`[tuning]`): rules, bad lines, reloads and the alerts
    /// not written, per signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::verdict::tuning::TuningStats>,
    /// `memory`: caps and high-water marks.
    pub memory: MemoryStats,
}

/// `stats.memory`: the caps and how close the run came to them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryStats {
    /// High-water mark of bytes held in per-flow reassembly and handshake buffers.
    pub flow_buffers_max: u64,
    /// High-water mark of flows tracked at once (with several shards, the sum of their peaks).
    pub flows_max: u64,
    /// Most flows tracked at once, whatever the thread count (shared out
    /// over the flow partitions, [`crate::flow::PARTITIONS`]).
    pub flow_cap: u64,
    /// Bytes all flows may hold in buffers (`max_buffer_bytes`, shared out
    /// over the flow partitions).
    pub buffer_budget: u64,
    /// Flow tables (threads) the packets were spread over; with more than
    /// one, the `_max` figures are sums of per-shard peaks.
    pub shards: u64,
    /// Most ended flows held for the output order at once.
    pub pending_records_max: u64,
}
