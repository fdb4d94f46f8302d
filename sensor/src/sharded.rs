//! Replay over several flow-table threads.
//!
//! ```text
//!   reader ──batches──▶ shard 0 ─┐
//!   (walk, clock,   ──▶ shard 1 ─┼─ended flows + clock──▶ reporter (caller's thread)
//!    decode, hash)  ──▶ shard N ─┘
//! ```
//!
//! - The reader walks the mapped captures, keeps the capture clock, decodes
//!   each frame and sends it, borrowed from the mapping (never copied), to
//!   the shard that a symmetric hash of its flow key picks. Both directions
//!   of a flow have the same key, so they meet in the same shard, and each
//!   shard owns its flow table outright: no lock on the packet path.
//! - Packets travel in batches; every [`TICK`] packets every shard gets the
//!   clock (in a batch, empty if need be), so timeouts fire on capture time
//!   in every shard, and the slowest shard's clock is known.
//! - The reporter holds ended flows until the slowest shard's clock has
//!   passed their [`crate::flow::OrderKey`], then classifies, enriches,
//!   correlates and writes them in key order: the same records in the same
//!   order as one thread (`tests/tests/threads.rs`).
//!
//! Caps (`max_flows`, `max_buffer_bytes`) apply per shard.

use std::io::Write;
use std::net::IpAddr;

use crossbeam::channel::{bounded, unbounded, Receiver, Sender};

use pinwatch_parsers::decode::{decode, Decoded, Skip};

use crate::capture::{CaptureFile, Merged};
use crate::engine::{add_decoder_stats, add_table_stats, Clock, Reporter, Shard};
use crate::flow::{CloseKind, Ended, FlowKey, TableStats};
use crate::pipeline::{CaptureStats, DecoderStats, Options};

/// Packets per batch sent to one shard.
const BATCH: usize = 256;
/// Every this many packets, every shard is sent the clock.
const TICK: u64 = 8192;
/// Batches in flight per shard.
const QUEUE: usize = 16;

/// One packet for a shard: decoded in the reader, bytes still in the mapping.
struct Item<'a> {
    clock: i64,
    ts: i64,
    orig_len: u32,
    source: u32,
    d: Result<Decoded<'a>, Skip>,
}

struct Batch<'a> {
    items: Vec<Item<'a>>,
    /// The reader's clock when the batch was sent.
    clock: i64,
}

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
        let (recycle_tx, recycle_rx) = unbounded::<Vec<Item<'_>>>();
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = bounded::<Batch<'_>>(QUEUE);
            senders.push(tx);
            let to_rep = to_rep.clone();
            let recycle = recycle_tx.clone();
            let limits = opts.limits;
            std::thread::Builder::new()
                .name(format!("pinwatch-shard-{i}"))
                .spawn_scoped(s, move || shard_loop(i, Shard::new(limits), rx, to_rep, recycle))
                .expect("spawn a shard thread");
        }
        drop(to_rep);
        drop(recycle_tx);
        let reader = std::thread::Builder::new()
            .name("pinwatch-reader".into())
            .spawn_scoped(s, move || read_loop(files, capture, bar, senders, recycle_rx))
            .expect("spawn the reader thread");

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
        let (capture, clock) = match reader.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        };
        (capture, clock, (decoder, table))
    })
}

fn read_loop<'a>(
    files: &[&'a CaptureFile],
    mut capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    senders: Vec<Sender<Batch<'a>>>,
    recycle: Receiver<Vec<Item<'a>>>,
) -> (CaptureStats, i64) {
    let n = senders.len();
    let total: u64 = files.iter().map(|f| f.len()).sum();
    let mut clock = Clock::default();
    let mut batches: Vec<Vec<Item<'a>>> = (0..n).map(|_| Vec::with_capacity(BATCH)).collect();
    let fresh = |recycle: &Receiver<Vec<Item<'a>>>| recycle.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
    let mut seen_bytes = 0u64;
    let mut alive = true;
    'walk: for item in Merged::new(files) {
        let p = match item {
            Ok(p) => p,
            Err(e) => {
                capture.errors.push(e.to_string());
                continue;
            }
        };
        capture.packets += 1;
        capture.bytes += p.data.len() as u64;
        seen_bytes += p.data.len() as u64 + 16;
        clock.observe(p.ts_ns);
        let d = decode(p.linktype, p.data);
        let shard = match &d {
            Ok(d) => shard_of(&FlowKey::new(d), n),
            Err(_) => 0,
        };
        let source = u32::try_from(p.source).unwrap_or(u32::MAX);
        batches[shard].push(Item { clock: clock.now(), ts: p.ts_ns, orig_len: p.orig_len, source, d });
        if batches[shard].len() >= BATCH {
            let items = std::mem::replace(&mut batches[shard], fresh(&recycle));
            if senders[shard].send(Batch { items, clock: clock.now() }).is_err() {
                alive = false;
                break 'walk;
            }
        }
        if capture.packets % TICK == 0 {
            if let Some(b) = bar {
                b.set_position(seen_bytes.min(total));
            }
            for (i, tx) in senders.iter().enumerate() {
                let items = std::mem::replace(&mut batches[i], fresh(&recycle));
                if tx.send(Batch { items, clock: clock.now() }).is_err() {
                    alive = false;
                    break 'walk;
                }
            }
        }
    }
    if alive {
        for (i, tx) in senders.iter().enumerate() {
            let items = std::mem::take(&mut batches[i]);
            // A shard that is gone has panicked; the join reports it.
            let _ = tx.send(Batch { items, clock: clock.now() });
        }
    }
    capture.timestamp_jumps = clock.jumps;
    (capture, clock.now())
}

fn shard_loop<'a>(
    index: usize,
    mut shard: Shard,
    rx: Receiver<Batch<'a>>,
    to_rep: Sender<FromShard>,
    recycle: Sender<Vec<Item<'a>>>,
) {
    let mut clock = i64::MIN;
    let mut ended = Vec::new();
    for mut batch in rx.iter() {
        for item in batch.items.drain(..) {
            if item.clock > clock {
                clock = item.clock;
                shard.advance(clock, &mut ended);
            }
            shard.decoded(item.d.as_ref().map_err(|e| *e), item.ts, item.orig_len, item.source as usize, &mut ended);
        }
        if batch.clock > clock {
            clock = batch.clock;
            shard.advance(clock, &mut ended);
        }
        let _ = recycle.send(batch.items);
        if to_rep.send(FromShard { shard: index, ended: std::mem::take(&mut ended), watermark: clock, done: None }).is_err() {
            return;
        }
    }
    shard.table.drain(CloseKind::Eof, &mut ended);
    let done = Some((std::mem::take(&mut shard.decoder), shard.table.stats));
    let _ = to_rep.send(FromShard { shard: index, ended, watermark: i64::MAX, done });
}
