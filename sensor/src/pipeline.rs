//! The replay pipeline: capture files → decode → flow table → EVE lines.
//!
//! Output order: a `tls` record is written when its flow ends (FIN/RST after
//! a short linger, idle timeout, eviction, or end of capture), in the order
//! of [`crate::flow::OrderKey`]: by the capture time at which the end became
//! certain, then flow id; flows still open at the end of the capture follow
//! in order of their close (else last packet) time, ties by flow id. The
//! `stats` record comes last. Everything is driven by packet timestamps, so
//! the same input gives the same bytes of output, whatever `--threads`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;


use crate::capture::{CaptureFile, Merged};
use crate::config::Config;
use crate::engine::{stats_of, write_stats, Engine, Reporter};
use crate::flow::{CloseKind, Limits, TableStats};

/// Where packets come from.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Stdin,
    /// A capture held in memory (the bundled default, tests).
    Bytes { name: String, bytes: &'static [u8] },
}

/// The capture bundled into the binary: made by `scripts/testbed.sh` with
/// real TLS stacks (see `pcaps/README.md`): pinned OkHttp and curl clients
/// rejecting an inspecting proxy, then going direct; opaque sessions.
/// `pinwatch replay` with no file replays it with [`BUNDLED_CONFIG`].
pub const BUNDLED_CAPTURE: (&str, &[u8]) =
    ("testbed-fallback.pcap", include_bytes!("../../pcaps/testbed-fallback.pcap"));

/// The configuration that goes with [`BUNDLED_CAPTURE`] (`pcaps/bundled.toml`).
pub const BUNDLED_CONFIG: &str = include_str!("../../pcaps/bundled.toml");

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    /// Networks, inspection deployment, bypass list, thresholds.
    pub config: Config,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Write the final stats record.
    pub stats: bool,
    /// MDM/device feed files (JSON lines, `enrichment/FEED.md`).
    pub feeds: Vec<PathBuf>,
    /// MDM/device feeds served over HTTP(S), cursor-paged (`feed_source`).
    pub feed_urls: Vec<String>,
    /// Write OCSF Detection Findings (alerts only) instead of EVE.
    pub ocsf: bool,
    /// Flow-table threads; 0 or 1 runs everything on the calling thread.
    pub threads: usize,
    /// Bytes each thread reads per round when one pcap file is read in
    /// chunks ([`crate::sharded::run_chunked`]); 0: the default
    /// ([`crate::sharded::CHUNK_BYTES`]). The output does not depend on it.
    pub chunk_bytes: usize,
    /// With several threads: report on the calling thread while the shards
    /// work (`Some(true)`), or let shards waiting for the others report
    /// (`Some(false)`, see `sharded::Desk`); `None` picks the calling thread
    /// when the machine has a core beyond the shards'. The output does not
    /// depend on it.
    pub reporter_thread: Option<bool>,
    /// Written as every record's `host` (Suricata's `sensor-name`); none:
    /// no `host`.
    pub sensor_name: Option<String>,
    /// Live capture: the sources are interfaces, written as `in_iface`;
    /// otherwise capture files, written as `pcap_filename`.
    pub live: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CaptureStats {
    pub files: usize,
    /// Packets more than an hour ahead of the capture clock that the next
    /// packet did not confirm (not used to expire flows).
    pub timestamp_jumps: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Written as `error_messages`: Suricata's `stats.capture.errors` is a
    /// count, and one key must not hold two types.
    #[serde(rename = "error_messages")]
    pub errors: Vec<String>,
    /// Chunks read by other threads and thrown away because the chunk
    /// before did not end where their start was guessed: a wrong guess (a
    /// capture with a capture file in its payload can fool it), or a chunk
    /// of tiny records cut short at [`crate::sharded::MAX_CHUNK_PACKETS`]
    /// (see [`crate::sharded`]). Costs time, never records.
    pub chunk_starts_rejected: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DecoderStats {
    pub tcp: u64,
    pub udp: u64,
    pub truncated: u64,
    pub tunnelled: u64,
    /// Frames that produced no TCP/UDP packet, per reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub capture: CaptureStats,
    pub decoder: DecoderStats,
    pub flow: TableStats,
    pub tls_records_logged: u64,
    pub quic_records_logged: u64,
    pub alerts_logged: u64,
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
    pub tuning: Option<crate::tuning::TuningStats>,
    pub memory: MemoryStats,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryStats {
    /// High-water mark of bytes held in per-flow reassembly and handshake buffers.
    pub flow_buffers_max: u64,
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

/// Result of a run.
#[derive(Debug)]
pub struct Summary {
    pub stats: Stats,
    /// The first capture error, if any (the run still reported everything before it).
    pub first_error: Option<String>,
}

/// Replay the inputs as one capture, writing EVE lines to `out`.
///
/// With `opts.threads` above one, `threads` shard threads own the flows of
/// whole partitions of the flow key (one pcap file is read in
/// chunks shared out among them, anything else is walked by each; see
/// [`crate::sharded`]), and the records are written from a reporting desk
/// that this thread or a waiting shard serves (`Options::reporter_thread`);
/// the records and their order are the same as with one thread (see
/// [`crate::flow::OrderKey`]).
pub fn replay(inputs: &[Input], opts: &Options, out: &mut (dyn Write + Send)) -> anyhow::Result<Summary> {
    let mut capture = CaptureStats::default();
    let mut first_error = None;
    let mut files = Vec::new();
    for input in inputs {
        let opened = match input {
            Input::File(p) => CaptureFile::open(p),
            Input::Stdin => CaptureFile::from_reader("-".to_string(), std::io::stdin().lock()),
            Input::Bytes { name, bytes } => CaptureFile::from_bytes(name.clone(), bytes.to_vec()),
        };
        match opened {
            Ok(f) => files.push(f),
            Err(e) => {
                let msg = e.to_string();
                capture.errors.push(msg.clone());
                first_error.get_or_insert(msg);
            }
        }
    }
    capture.files = files.len();
    let names: Vec<String> = files.iter().map(|f| f.name().to_string()).collect();
    let total: u64 = files.iter().map(|f| f.len()).sum();
    let bar = progress_bar(opts.progress, total);
    let refs: Vec<&CaptureFile> = files.iter().collect();
    let (stats, clock, write_err) = if opts.threads <= 1 {
        let mut engine = Engine::new(opts, names)?;
        engine.capture = capture;
        let mut seen_bytes = 0u64;
        for item in Merged::new(&refs) {
            match item {
                Ok(p) => {
                    seen_bytes += p.data.len() as u64 + 16;
                    if let Some(b) = &bar {
                        if engine.capture.packets % 4096 == 0 {
                            b.set_position(seen_bytes.min(total));
                        }
                    }
                    engine.packet(&p, out);
                }
                Err(e) => {
                    let msg = e.to_string();
                    engine.capture.errors.push(msg.clone());
                    first_error.get_or_insert(msg);
                }
            }
        }
        engine.finish(CloseKind::Eof, out);
        (engine.stats(), engine.clock.now(), engine.reporter.take_write_error())
    } else {
        let mut reporter = Reporter::new(opts, names)?;
        let (capture, clock, shards) = crate::sharded::run(&refs, opts, capture, bar.as_ref(), &mut reporter, out);
        let (decoder, table) = shards;
        if first_error.is_none() {
            first_error = capture.errors.first().cloned();
        }
        let stats = stats_of(&capture, &decoder, &table, &reporter, &opts.limits, opts.threads);
        (stats, clock, reporter.take_write_error())
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if opts.stats {
        write_stats(out, clock, &stats, opts.ocsf)?;
    }
    out.flush()?;
    Ok(Summary { stats, first_error })
}

fn progress_bar(wanted: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() || total < 8 * 1024 * 1024 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}
