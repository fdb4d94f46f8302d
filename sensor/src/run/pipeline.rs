//! The replay pipeline: capture files → decode → flow table → EVE lines.
//!
//! Output order: a `tls` record is written at the session's verdict while
//! its flow is open ([`crate::flow::decision`]) or when its flow ends (FIN/RST
//! after a short linger, idle timeout, eviction, or end of capture), in the
//! order of [`crate::flow::OrderKey`]: by the capture time at which it
//! became due, then flow id; flows still open at the end of the capture follow
//! in order of their close (else last packet) time, ties by flow id. The
//! `stats` record comes last. Everything is driven by packet timestamps, so
//! the same input gives the same bytes of output, whatever `--threads`.

use std::io::Write;
use std::path::PathBuf;

use crate::capture::{CaptureFile, Merged};
use crate::flow::CloseKind;
use crate::run::engine::{stats_of, write_stats, Engine, Reporter};
pub use crate::run::options::Options;
pub use crate::run::stats::{CaptureStats, DecoderStats, MemoryStats, Stats};

/// Where packets come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A capture file (pcap, pcapng, gzip'd or not).
    File(PathBuf),
    /// A capture read from standard input (`-`).
    Stdin,
    /// A capture held in memory (the bundled default, tests).
    Bytes {
        /// Its name, written as `pcap_filename`.
        name: String,
        /// The capture's bytes.
        bytes: &'static [u8],
    },
}

/// The capture bundled into the binary: made by `scripts/testbed.sh` with
/// real TLS stacks (see `pcaps/README.md`): pinned OkHttp and curl clients
/// rejecting an inspecting proxy, then going direct; opaque sessions.
/// `pinwatch replay` with no file replays it with [`BUNDLED_CONFIG`].
pub const BUNDLED_CAPTURE: (&str, &[u8]) = ("testbed-fallback.pcap", include_bytes!("../../../pcaps/testbed-fallback.pcap"));

/// The configuration that goes with [`BUNDLED_CAPTURE`] (`pcaps/bundled.toml`).
pub const BUNDLED_CONFIG: &str = include_str!("../../../pcaps/bundled.toml");

/// Result of a run.
#[derive(Debug)]
pub struct Summary {
    /// The counters of the stats record (also when it was not written).
    pub stats: Stats,
    /// The first capture error, if any (the run still reported everything before it).
    pub first_error: Option<String>,
}

/// Replay the inputs as one capture, writing EVE lines to `out`.
///
/// With `opts.threads` above one, `threads` shard threads own the flows of
/// whole partitions of the flow key (one pcap file is read in
/// chunks shared out among them, anything else is walked by each; see
/// [`crate::run::sharded`]), and the records are written from a reporting desk
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
        let (capture, clock, shards) = crate::run::sharded::run(&refs, opts, capture, bar.as_ref(), &mut reporter, out);
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
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} eta {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}
