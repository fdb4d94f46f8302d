//! Replay over several flow-table threads.
//!
//! ```text
//!   shard 0: walk, clock, decode, hash ─ keeps its flows ─┐
//!   shard 1: walk, clock, decode, hash ─ keeps its flows ─┼─ended flows + clock──▶ reporter (caller's thread)
//!   shard N: walk, clock, decode, hash ─ keeps its flows ─┘
//! ```
//!
//! - Every shard walks the mapped captures itself (the walk is cheap: the
//!   bytes are streamed in ahead of it, see `capture::prefetch_to`), keeps
//!   the capture clock, decodes each frame's headers and keeps the frames
//!   that a symmetric hash of the flow key gives to it. Both directions of a
//!   flow have the same key, so they meet in the same shard, and each shard
//!   owns its flow table outright: no lock, no queue and no copy on the
//!   packet path. A first design had one reader thread decode and send
//!   batches of packets to the shards; that reader was the bottleneck at two
//!   threads (1.3x one thread on the benchmark capture).
//! - Every shard sees every packet's time, so its clock, and the timeouts
//!   it fires, are exactly those of a single-threaded run.
//! - The reporter holds ended flows until the slowest shard's clock has
//!   passed their [`crate::flow::OrderKey`], then classifies, enriches,
//!   correlates and writes them in key order: the same records in the same
//!   order as one thread (`tests/tests/threads.rs`).
//! - Shard 0 keeps the capture counters and errors, the progress bar, and
//!   the frames that decode to nothing (counted in its decoder stats).
//!
//! Caps (`max_flows`, `max_buffer_bytes`) apply per shard.

use std::io::Write;
use std::net::IpAddr;

use crossbeam::channel::{bounded, Sender};

use pinwatch_parsers::decode::decode;

use crate::capture::{CaptureFile, Merged};
use crate::engine::{add_decoder_stats, add_table_stats, Clock, Reporter, Shard};
use crate::flow::{CloseKind, Ended, FlowKey, TableStats};
use crate::pipeline::{CaptureStats, DecoderStats, Options};

/// Every this many packets walked, a shard reports its clock (with the
/// flows that ended since, if any).
const REPORT_EVERY: u64 = 4096;
/// Messages in flight per shard.
const QUEUE: usize = 16;

struct FromShard {
    shard: usize,
    ended: Vec<Ended>,
    /// Everything this shard will still send has a key at or above this clock.
    watermark: i64,
    done: Option<(DecoderStats, TableStats)>,
}

/// The shard of a flow: a fixed (not per-process) hash of the normalised
/// key, made of a few wide words and a multiply-xorshift finaliser
/// (splitmix64's): fast, and good enough to spread flows. An attacker who
/// aims all flows at one shard only slows that shard; the caps still hold.
pub fn shard_of(key: &FlowKey, shards: usize) -> usize {
    let wide = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let fold = |w: u128| (w as u64) ^ ((w >> 64) as u64).rotate_left(29);
    let ports = (u64::from(key.lo.1) << 16) | u64::from(key.hi.1) | (u64::from(key.proto) << 32);
    let mut x = fold(wide(key.lo.0)) ^ fold(wide(key.hi.0)).rotate_left(32) ^ ports.rotate_left(11) ^ key.context.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((u128::from(x) * shards as u128) >> 64) as usize
}

/// Replay `files` over `opts.threads` shards; the reporter writes to `out`.
/// Returns the capture counters (with `capture` as the starting point), the
/// final clock and the shards' summed counters.
pub fn run(
    files: &[&CaptureFile],
    opts: &Options,
    capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    reporter: &mut Reporter,
    out: &mut dyn Write,
) -> (CaptureStats, i64, (DecoderStats, TableStats)) {
    let n = opts.threads.max(1);
    std::thread::scope(|s| {
        let (to_rep, from_shards) = bounded::<FromShard>(n * QUEUE);
        let mut capture = Some(capture);
        let mut shards = Vec::with_capacity(n);
        for i in 0..n {
            let to_rep = to_rep.clone();
            let limits = opts.limits;
            // Shard 0 keeps the capture counters and the progress bar.
            let (cap, bar) = if i == 0 { (capture.take(), bar) } else { (None, None) };
            let h = std::thread::Builder::new()
                .name(format!("pinwatch-shard-{i}"))
                .spawn_scoped(s, move || shard_loop(i, n, files, Shard::new(limits), cap, bar, to_rep))
                .expect("spawn a shard thread");
            shards.push(h);
        }
        drop(to_rep);

        // The reporter, on this thread: write what every shard has passed.
        let mut marks = vec![i64::MIN; n];
        let mut table = TableStats::default();
        let mut decoder = DecoderStats::default();
        for mut msg in from_shards.iter() {
            reporter.push(&mut msg.ended);
            marks[msg.shard] = marks[msg.shard].max(msg.watermark);
            if let Some((d, t)) = msg.done {
                add_decoder_stats(&mut decoder, &d);
                add_table_stats(&mut table, &t);
            }
            let low = marks.iter().copied().min().unwrap_or(i64::MIN);
            reporter.release(low, out);
        }
        reporter.release_all(out);
        let mut result = (CaptureStats::default(), i64::MIN);
        for h in shards {
            match h.join() {
                Ok((Some(capture), clock)) => result = (capture, clock),
                Ok((None, _)) => {}
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        (result.0, result.1, (decoder, table))
    })
}

/// One shard: walk everything, keep this shard's flows. Returns the capture
/// counters (shard 0 only) and the final clock.
fn shard_loop(
    index: usize,
    shards: usize,
    files: &[&CaptureFile],
    mut shard: Shard,
    mut capture: Option<CaptureStats>,
    bar: Option<&indicatif::ProgressBar>,
    to_rep: Sender<FromShard>,
) -> (Option<CaptureStats>, i64) {
    let total: u64 = files.iter().map(|f| f.len()).sum();
    let mut clock = Clock::default();
    let mut ended = Vec::new();
    let mut walked = 0u64;
    let mut seen_bytes = 0u64;
    for item in Merged::new(files) {
        let p = match item {
            Ok(p) => p,
            Err(e) => {
                if let Some(c) = capture.as_mut() {
                    c.errors.push(e.to_string());
                }
                continue;
            }
        };
        walked += 1;
        if let Some(c) = capture.as_mut() {
            c.packets += 1;
            c.bytes += p.data.len() as u64;
            seen_bytes += p.data.len() as u64 + 16;
        }
        if let Some(now) = clock.observe(p.ts_ns) {
            shard.advance(now, &mut ended);
        }
        let d = decode(p.linktype, p.data);
        let mine = match &d {
            Ok(d) => shard_of(&FlowKey::new(d), shards) == index,
            Err(_) => index == 0,
        };
        if mine {
            shard.decoded(d.as_ref().map_err(|e| *e), p.ts_ns, p.orig_len, p.source, &mut ended);
        }
        if walked.is_multiple_of(REPORT_EVERY) {
            if let Some(b) = bar {
                b.set_position(seen_bytes.min(total));
            }
            let msg = FromShard { shard: index, ended: std::mem::take(&mut ended), watermark: clock.now(), done: None };
            if to_rep.send(msg).is_err() {
                // The reporter is gone (it panicked); the join reports it.
                return (capture, clock.now());
            }
        }
    }
    shard.table.drain(CloseKind::Eof, &mut ended);
    let done = Some((std::mem::take(&mut shard.decoder), shard.table.stats));
    let _ = to_rep.send(FromShard { shard: index, ended, watermark: i64::MAX, done });
    if let Some(c) = capture.as_mut() {
        c.timestamp_jumps = clock.jumps;
    }
    (capture, clock.now())
}
