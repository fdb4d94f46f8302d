//! Replay over several flow-table threads.
//!
//! Each of the N threads owns the flows of whole partitions of the flow key
//! ([`crate::flow::partition`], a fixed mix of the normalised key: both
//! directions of a flow have the same key, so they meet in the same thread): its flow table takes no lock, and no packet bytes
//! are copied. When a flow ends, its thread prepares it for the output
//! ([`Preparer`]: classified, its record rendered, the flow dropped). The
//! reporter holds the prepared records until every thread's watermark has
//! passed their [`crate::flow::OrderKey`], then splices in the device
//! feed's enrichment, correlates and writes them in key order, so the
//! records and their order are those of one thread
//! (`tests/tests/threads.rs`). It sits at a desk (`Desk`): the calling thread
//! reports when the machine has a core beyond the shards'; otherwise a
//! shard waiting for the others at the end of a round reports meanwhile,
//! so no third thread competes for the cores. At the end of input each
//! thread sends the flows still open, in order, a batch at a time, so the
//! desk writes them while the others still drain. The caps (`max_flows`,
//! `max_buffer_bytes`, the memory of closed tuples) apply per flow
//! partition ([`crate::flow::PARTITIONS`]), and a thread owns whole
//! partitions, so they act as with one thread.
//!
//! Two ways to spread the packets:
//!
//! - **Chunks** ([`run_chunked`]; one classic pcap file, the usual replay).
//!   The file is read in rounds of N x [`Options::chunk_bytes`] bytes, cut
//!   in N x [`CHUNKS_PER_THREAD`] chunks: the threads take the chunks of a
//!   round from a shared counter, read and decode them and sort their
//!   packets, already hashed, into one list per thread. Once every chunk
//!   of the round is read, each thread processes the packets of its own
//!   lists in file order, its clock moving exactly as one thread's would
//!   (from the chunk-local clock the reader noted at each packet, or
//!   through every packet time of a chunk that had a time jump), asking
//!   for its flows' cache lines a few packets ahead; then it takes chunks
//!   of the next round, so a thread that is done early reads more. A
//!   chunk's start is found by looking for a run of plausible record
//!   headers ([`CaptureFile::record_boundary`]) and is only believed when
//!   the reader of the chunk before lands on it exactly; when it does not
//!   (a capture carrying a capture file in its payload can fool the
//!   guess), the rest of the round is thrown away and the next round starts
//!   where that reader stopped. So every byte is read by one thread once,
//!   and the guess can cost time but never change a record.
//! - **Every thread walks everything** ([`run_walk_all`]; several files
//!   merged by time, pcapng): each thread walks the captures, keeps the
//!   clock, decodes every frame and keeps those that hash to it. The
//!   duplicated walk and decode bound the speed-up (about 1.3x with two
//!   threads), but nothing has to be cut.
//!
//! ```text
//!                 round r                                       round r+1
//!   thread 0:  process own packets of round r-1 ─ take, read chunks ─┐
//!   thread 1:  process own packets of round r-1 ─ take, read chunks ─┼─▶ ...
//!   thread N-1: process own packets of round r-1 ─ take, read chunks ─┘
//!        └─ prepared records + watermark ─▶ desk (enrich, correlate, write)
//! ```

use std::io::Write;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, TryLockError};

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};

use pinwatch_parsers::decode::{decode, Decoded, Skip};

use crate::capture::{CaptureFile, Merged};
use crate::flow::{CloseKind, Ended, FlowKey, OrderKey, TableStats};
use crate::run::engine::{add_decoder_stats, add_table_stats, Clock, Prepared, Preparer, Reporter, Shard, WriteOut};
use crate::run::options::Options;
use crate::run::stats::{CaptureStats, DecoderStats};

/// Every this many packets walked, a shard reports its clock (with the
/// flows that ended since, if any).
const REPORT_EVERY: u64 = 4096;
/// Messages in flight per shard.
const QUEUE: usize = 16;

struct FromShard {
    shard: usize,
    /// Ended flows, prepared for the output by the shard ([`Preparer`]).
    ended: Vec<Prepared>,
    /// Everything this shard will still send has a key at or above this one.
    watermark: OrderKey,
    done: Option<(DecoderStats, TableStats)>,
}

/// Prepare a shard's ended flows for the desk (on the shard's thread).
fn prepared(preparer: &Preparer, shard: &mut Shard, ended: &mut Vec<Ended>) -> Vec<Prepared> {
    // With the open sessions reported at their verdict (`crate::flow::decision`).
    let mut out = std::mem::take(&mut shard.verdicts);
    out.extend(ended.drain(..).map(|e| preparer.prepare(e)));
    out
}

/// Flows a drained shard prepares per message at the end of input.
const DRAIN_BATCH: usize = 64;

/// Send a shard's drained flows (end of input: phase 1, in output order)
/// in batches, each with the key of the next as the watermark, and the
/// shard's counters with the last. The desk can write them while the
/// others still drain, so neither the preparing nor the rendered records
/// pile up: one batch in flight per shard, not every flow that was open.
fn send_drained(
    desk: &Desk<'_>,
    to_rep: &Sender<FromShard>,
    preparer: &Preparer,
    shard: usize,
    mut ended: Vec<Ended>,
    done: Option<(DecoderStats, TableStats)>,
) {
    debug_assert!(ended.windows(2).all(|w| w[0].order <= w[1].order), "a drain is in output order");
    let mut rest = ended.drain(..).peekable();
    loop {
        let batch: Vec<Prepared> = rest.by_ref().take(DRAIN_BATCH).map(|e| preparer.prepare(e)).collect();
        let Some(next) = rest.peek() else {
            desk.send(to_rep, FromShard { shard, ended: batch, watermark: OrderKey::MAX, done });
            return;
        };
        let watermark = next.order;
        desk.send(to_rep, FromShard { shard, ended: batch, watermark, done: None });
        desk.help();
    }
}

/// Replay `files` over `opts.threads` shards; the reporter writes to `out`.
/// Returns the capture counters (with `capture` as the starting point), the
/// final clock and the shards' summed counters. One classic pcap file is
/// read in chunks ([`run_chunked`]), anything else by every thread
/// ([`run_walk_all`]).
pub fn run(
    files: &[&CaptureFile],
    opts: &Options,
    capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    reporter: &mut Reporter,
    out: &mut (dyn Write + Send),
) -> (CaptureStats, i64, (DecoderStats, TableStats)) {
    match files {
        [one] if one.first_record().is_some() => run_chunked(one, opts, capture, bar, reporter, out),
        _ => run_walk_all(files, opts, capture, bar, reporter, out),
    }
}

/// The reporter's desk: what the shards send waits in a bounded queue, and
/// whichever thread has nothing better to do takes it and reports it. On a
/// machine with a core to spare the calling thread sits at the desk; where
/// the shards take every core, a shard waiting for the others at the end of
/// a round reports instead of spinning, so the reporting fills the time the
/// shards would otherwise wait and no third thread competes for the cores.
/// Who takes a message never changes what is written: the reporter holds
/// prepared records until every shard's watermark has passed their order
/// key.
struct Desk<'r> {
    from_shards: Receiver<FromShard>,
    state: Mutex<DeskState<'r>>,
}

struct DeskState<'r> {
    reporter: &'r mut Reporter,
    out: &'r mut (dyn Write + Send),
    /// Every shard's watermark so far.
    marks: Vec<OrderKey>,
    decoder: DecoderStats,
    table: TableStats,
}

impl DeskState<'_> {
    fn take(&mut self, mut msg: FromShard) {
        self.reporter.handle_prepared(&mut msg.ended);
        if let Some(m) = self.marks.get_mut(msg.shard) {
            *m = (*m).max(msg.watermark);
        }
        if let Some((d, t)) = msg.done {
            add_decoder_stats(&mut self.decoder, &d);
            add_table_stats(&mut self.table, &t);
        }
        if let Some(low) = self.marks.iter().copied().min() {
            self.reporter.release_below(low, &mut *self.out);
        }
    }
}

impl<'r> Desk<'r> {
    fn new(n: usize, from_shards: Receiver<FromShard>, reporter: &'r mut Reporter, out: &'r mut (dyn Write + Send)) -> Self {
        let state =
            DeskState { reporter, out, marks: vec![OrderKey::MIN; n], decoder: DecoderStats::default(), table: TableStats::default() };
        Desk { from_shards, state: Mutex::new(state) }
    }

    /// Report one waiting message, unless another thread is at the desk or
    /// nothing waits. True when it did.
    fn help(&self) -> bool {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        match self.from_shards.try_recv() {
            Ok(msg) => {
                st.take(msg);
                true
            }
            Err(_) => false,
        }
    }

    /// Sit at the desk until every shard has hung up (the calling thread,
    /// when a core is spare). A message is taken from the queue and
    /// reported under one hold of the lock, here as in [`Desk::help`], so
    /// messages are reported in the order they were sent.
    fn serve(&self) {
        loop {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match self.from_shards.recv() {
                Ok(msg) => st.take(msg),
                Err(_) => return,
            }
        }
    }

    /// Hand a message in. A full queue is emptied by the sender itself when
    /// nobody else is at the desk, so no shard waits on another's reporting.
    /// (The queue's receiving end is the desk's own, so it outlives every
    /// sender: a send cannot find it gone.)
    fn send(&self, to_rep: &Sender<FromShard>, mut msg: FromShard) {
        loop {
            match to_rep.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    if !self.help() {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    /// Everything the shards left, then every held flow (all shards done).
    fn close(self) -> (DecoderStats, TableStats) {
        let mut st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        while let Ok(msg) = self.from_shards.try_recv() {
            st.take(msg);
        }
        st.reporter.release_all(&mut *st.out);
        (st.decoder, st.table)
    }
}

/// Every thread walks all of `files` and keeps its own flows (see the module doc).
pub fn run_walk_all(
    files: &[&CaptureFile],
    opts: &Options,
    capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    reporter: &mut Reporter,
    out: &mut (dyn Write + Send),
) -> (CaptureStats, i64, (DecoderStats, TableStats)) {
    let n = opts.threads.max(1);
    let hasher = ahash::RandomState::new();
    let preparer = &reporter.preparer();
    with_shards(n, opts.reporter_thread, capture, bar, reporter, out, |i, cap, bar, desk, to_rep| {
        shard_loop(i, n, files, Shard::with_hasher(opts.limits, hasher.clone()), preparer, cap, bar, desk, to_rep)
    })
}

/// Run `n` shard threads, `body(k, capture, bar, desk, to_reporter)` each
/// (thread 0 gets the capture counters and the progress bar, and returns
/// them), with the reporter at the [`Desk`]. Returns the capture counters,
/// the final clock and the shards' summed counters.
fn with_shards<F>(
    n: usize,
    reporter_thread: Option<bool>,
    capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    reporter: &mut Reporter,
    out: &mut (dyn Write + Send),
    body: F,
) -> (CaptureStats, i64, (DecoderStats, TableStats))
where
    F: Fn(usize, Option<CaptureStats>, Option<&indicatif::ProgressBar>, &Desk<'_>, Sender<FromShard>) -> (Option<CaptureStats>, i64) + Sync,
{
    let body = &body;
    let (to_rep, from_shards) = bounded::<FromShard>(n * QUEUE);
    let desk = Desk::new(n, from_shards, reporter, out);
    // A core beyond the shards' is the desk's; otherwise the shards report.
    let spare_core = reporter_thread.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |c| c.get()) > n);
    let result = std::thread::scope(|s| {
        let desk = &desk;
        let mut capture = Some(capture);
        let mut shards = Vec::with_capacity(n);
        for k in 0..n {
            let to_rep = to_rep.clone();
            let (cap, bar) = if k == 0 { (capture.take(), bar) } else { (None, None) };
            let h = std::thread::Builder::new()
                .name(format!("pinwatch-shard-{k}"))
                .spawn_scoped(s, move || body(k, cap, bar, desk, to_rep))
                .expect("spawn a shard thread");
            shards.push(h);
        }
        drop(to_rep);
        if spare_core {
            desk.serve();
        }
        let mut result = (CaptureStats::default(), i64::MIN);
        for h in shards {
            match h.join() {
                Ok((Some(capture), clock)) => result = (capture, clock),
                Ok((None, _)) => {}
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        result
    });
    (result.0, result.1, desk.close())
}

/// One shard: walk everything, keep this shard's flows. Returns the capture
/// counters (shard 0 only) and the final clock.
#[allow(clippy::too_many_arguments)]
fn shard_loop(
    index: usize,
    shards: usize,
    files: &[&CaptureFile],
    mut shard: Shard,
    preparer: &Preparer,
    mut capture: Option<CaptureStats>,
    bar: Option<&indicatif::ProgressBar>,
    desk: &Desk<'_>,
    to_rep: Sender<FromShard>,
) -> (Option<CaptureStats>, i64) {
    let total: u64 = files.iter().map(|f| f.len()).sum();
    shard.set_preparer(preparer.clone());
    let mut clock = Clock::default();
    let mut ended = Vec::new();
    let mut walked = 0u64;
    let mut seen_bytes = 0u64;
    let parts = shard.table.partitions();
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
        match decode(p.linktype, p.data) {
            Ok(d) => {
                // Every shard's table hashes with the same keys.
                let key = FlowKey::new(&d);
                let hash = shard.table.hash(&key);
                if owner(&key, parts, shards) == index {
                    shard.hashed(Ok(&d), hash, p.ts_ns, p.orig_len, p.source, &mut ended);
                }
            }
            // Frames that decode to nothing are counted by shard 0.
            Err(skip) if index == 0 => shard.decoded(Err(skip), p.ts_ns, p.orig_len, p.source, &mut ended),
            Err(_) => {}
        }
        if walked.is_multiple_of(REPORT_EVERY) {
            if let Some(b) = bar {
                b.set_position(seen_bytes.min(total));
            }
            let msg = FromShard {
                shard: index,
                ended: prepared(preparer, &mut shard, &mut ended),
                watermark: OrderKey::at(clock.now()),
                done: None,
            };
            desk.send(&to_rep, msg);
            desk.help();
        }
    }
    // Flows that ended since the last message go first: the drained ones
    // are sent in order, each batch promising that nothing below it follows.
    if !ended.is_empty() || !shard.verdicts.is_empty() {
        let msg =
            FromShard { shard: index, ended: prepared(preparer, &mut shard, &mut ended), watermark: OrderKey::at(clock.now()), done: None };
        desk.send(&to_rep, msg);
    }
    shard.table.drain(CloseKind::Eof, &mut ended);
    let done = Some((std::mem::take(&mut shard.decoder), shard.table.stats));
    send_drained(desk, &to_rep, preparer, index, ended, done);
    if let Some(c) = capture.as_mut() {
        c.timestamp_jumps = clock.jumps;
    }
    (capture, clock.now())
}

/// Bytes each thread reads per round, on average, when
/// [`Options::chunk_bytes`] is 0: big enough that the per-round hand-over
/// costs little, small enough that a round's packet lists stay in the
/// caches (about 130 bytes a packet).
pub const CHUNK_BYTES: usize = 8 << 20;

/// Packets one chunk holds at most. A chunk of tiny records (a capture of
/// empty frames has 16-byte records) ends there, as if its reader had
/// landed off the next chunk's start: the round is cut and the next one
/// starts at that record. So the lists of a round hold at most
/// [`CHUNKS_PER_THREAD`] times this many entries per thread (16 MB: about
/// 120 bytes an entry), whatever the file; a 1 MiB chunk of the smallest
/// Ethernet frames (76-byte records) holds 13,800.
pub const MAX_CHUNK_PACKETS: usize = 131_072 / CHUNKS_PER_THREAD;

/// The thread that owns a flow: the owner of its partition
/// ([`crate::flow::partition`] out of `parts`, [`crate::flow::Limits::partitions`]).
/// A thread owns whole partitions, so the caps that are per partition (flows,
/// buffer bytes, closed tuples) are enforced by one thread each, the same way
/// whatever the thread count. Where a flow goes never changes a record.
fn owner(key: &FlowKey, parts: usize, shards: usize) -> usize {
    crate::flow::partition(key, parts) % shards.max(1)
}

/// A packet as the reader of a chunk leaves it for its owner: decoded, its
/// flow key hashed, and the capture clock after it as far as the chunk
/// alone tells (see [`ChunkOut::fresh_clock`]).
struct Entry<'a> {
    /// Index of the packet in its chunk (into [`ChunkOut::ts`]).
    idx: u32,
    orig_len: u32,
    hash: u64,
    ts: i64,
    /// [`Clock::now`] after this packet, for a clock that started with the chunk.
    clock: i64,
    d: Result<Decoded<'a>, Skip>,
}

/// What reading one chunk produced.
#[derive(Default)]
struct ChunkOut<'a> {
    /// Where the reader started; `None` when no record start was found for
    /// this chunk (the reader of the chunk before covers it).
    start: Option<usize>,
    /// Where the reader stopped: the first record start at or past its end
    /// target, or where an error stopped it.
    end: usize,
    /// It stopped exactly on its end target.
    exact: bool,
    /// Every packet's time, in file order.
    ts: Vec<i64>,
    /// A clock that started with this chunk saw no unconfirmed forward jump
    /// after the first packet: then the capture clock after packet i is the
    /// larger of its value before the chunk and the entry's `clock`, and a
    /// thread need not look at the other threads' packets to keep it
    /// (see [`process_chunk`]).
    fresh_clock: bool,
    /// The packets, per owning thread.
    lists: Vec<Vec<Entry<'a>>>,
    bytes: u64,
    error: Option<String>,
}

impl ChunkOut<'_> {
    /// Empty, keeping the lists' memory for the next round.
    fn clear(&mut self, n: usize) {
        self.start = None;
        self.end = 0;
        self.exact = false;
        self.ts.clear();
        self.fresh_clock = true;
        self.lists.resize_with(n, Vec::new);
        for l in &mut self.lists {
            l.clear();
        }
        self.bytes = 0;
        self.error = None;
    }
}

/// Where chunk `k` of a round that begins at `start` starts: the round's
/// start for chunk 0, else the first plausible record start in the chunk's
/// own byte range ([`CaptureFile::record_boundary`]), `None` if it has none
/// (the chunk before then reaches over it). Every thread finds the same.
fn chunk_start(file: &CaptureFile, start: usize, k: usize, chunk: usize) -> Option<usize> {
    if k == 0 {
        return Some(start);
    }
    let from = start.checked_add(k.checked_mul(chunk)?)?;
    file.record_boundary(from).filter(|&b| b < from.saturating_add(chunk))
}

/// Read chunk `k` of the `chunks` of the round into `out` (whose lists are
/// reused): decode, hash and sort its packets by owner, one list per thread.
/// `start_of(j)` is [`chunk_start`] of chunk `j` of the round.
#[allow(clippy::too_many_arguments)]
fn read_chunk<'a>(
    out: &mut ChunkOut<'a>,
    file: &'a CaptureFile,
    k: usize,
    chunks: usize,
    threads: usize,
    parts: usize,
    hasher: &ahash::RandomState,
    start_of: impl Fn(usize) -> Option<usize>,
) {
    out.clear(threads);
    let len = file.len() as usize;
    let Some(from) = start_of(k) else { return };
    // Up to the next chunk that has a start, or the end of the file.
    let target = (k + 1..=chunks).find_map(&start_of).unwrap_or(len);
    out.start = Some(from);
    let Some(mut it) = file.packets_from(from) else { return };
    let mut clock = Clock::default();
    while it.position() < target && out.ts.len() < MAX_CHUNK_PACKETS {
        match it.next() {
            Some(Ok(p)) => {
                let idx = out.ts.len() as u32;
                out.ts.push(p.ts_ns);
                out.bytes += p.data.len() as u64;
                clock.observe(p.ts_ns);
                let d = decode(p.linktype, p.data);
                // Frames that decode to nothing are counted by thread 0.
                let (hash, to) = match &d {
                    Ok(d) => {
                        // The hashing of every shard's table (they share the hasher).
                        let key = crate::flow::FlowKey::new(d);
                        let hash = crate::flow::map::key_hash(hasher, &key);
                        (hash, owner(&key, parts, threads))
                    }
                    Err(_) => (0, 0),
                };
                if let Some(list) = out.lists.get_mut(to) {
                    list.push(Entry { idx, orig_len: p.orig_len, hash, ts: p.ts_ns, clock: clock.now(), d });
                }
            }
            Some(Err(e)) => {
                out.error = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    out.fresh_clock = clock.jumps == 0;
    out.end = it.position();
    out.exact = out.error.is_none() && out.end == target;
}

/// What a round is once all its chunks are read: which chunks count, and
/// where the next round starts.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// The chunks whose start is confirmed, in file order.
    verified: Vec<usize>,
    /// Where the next round starts (a confirmed record start).
    next: usize,
    /// Nothing is left to read (end of file, or an error).
    stop: bool,
    /// Chunks read for nothing: the chunk before them did not end where
    /// their start was guessed (a wrong guess, or a chunk cut short at
    /// [`MAX_CHUNK_PACKETS`]).
    rejected: u64,
}

fn plan<'a, O: std::ops::Deref<Target = ChunkOut<'a>>>(outs: &[O], start: usize, file_len: usize) -> Plan {
    let mut p = Plan { next: start, ..Default::default() };
    for (k, o) in outs.iter().enumerate() {
        match o.start {
            None => continue,
            Some(s) if s != p.next => break,
            Some(_) => {}
        }
        p.verified.push(k);
        p.next = o.end;
        if o.error.is_some() {
            p.stop = true;
            break;
        }
        if !o.exact {
            p.rejected = outs.iter().skip(k + 1).filter(|o| o.start.is_some()).count() as u64;
            break;
        }
    }
    p.stop |= p.next >= file_len;
    p
}

/// Add a round's confirmed chunks to the capture counters.
fn count<'a, O: std::ops::Deref<Target = ChunkOut<'a>>>(capture: &mut CaptureStats, outs: &[O], p: &Plan) {
    for o in p.verified.iter().filter_map(|&i| outs.get(i)) {
        capture.packets += o.ts.len() as u64;
        capture.bytes += o.bytes;
        capture.errors.extend(o.error.iter().cloned());
    }
    capture.chunk_starts_rejected += p.rejected;
}

/// Packets ahead of the one being processed whose map slot, and (half as
/// far) whose flow, a thread asks for (see [`crate::flow::map`]).
const PREFETCH: usize = 8;

/// Thread `k`'s part of one chunk. The clock moves as with one thread: from
/// the entries' chunk-local clock when the chunk allows it, else through
/// every packet time of the chunk. The flow table expires what is due when
/// the clock has moved, checked before each of this thread's packets and at
/// the end of the chunk rather than at every packet: that ends the same
/// flows, with the same order keys, since nothing else touches this
/// thread's flows in between. It takes this thread's packets, asking for
/// their flows' cache lines a few packets ahead.
fn process_chunk(o: &ChunkOut<'_>, k: usize, clock: &mut Clock, shard: &mut Shard, ended: &mut Vec<crate::flow::Ended>) {
    let mine = o.lists.get(k).map_or(&[][..], |l| l.as_slice());
    let fast = o.fresh_clock && o.ts.first().is_none_or(|&t| clock.believes(t));
    let mut seen = 0;
    for (j, e) in mine.iter().enumerate() {
        if let Some(a) = mine.get(j + PREFETCH) {
            shard.table.prefetch_slot(a.hash);
        }
        if let Some(a) = mine.get(j + PREFETCH / 2) {
            shard.table.prefetch_flow(a.hash);
        }
        if fast {
            clock.settle(e.clock);
        } else {
            let upto = e.idx as usize + 1;
            for &ts in o.ts.get(seen..upto).unwrap_or_default() {
                clock.observe(ts);
            }
            seen = upto;
        }
        shard.advance(clock.now(), ended);
        shard.hashed(e.d.as_ref().map_err(|s| *s), e.hash, e.ts, e.orig_len, 0, ended);
    }
    if fast {
        if let Some(last) = o.lists.iter().filter_map(|l| l.last()).map(|e| e.clock).max() {
            clock.settle(last);
        }
    } else {
        for &ts in o.ts.get(seen..).unwrap_or_default() {
            clock.observe(ts);
        }
    }
    shard.advance(clock.now(), ended);
}

/// Where the threads of [`run_chunked`] meet once per round. Rounds take a
/// millisecond or so, and a thread put to sleep by a blocking barrier takes
/// a good part of that to wake, so a thread that arrives first spins a
/// little, then yields its core until the last one comes. A thread that
/// panics breaks the barrier ([`BreakOnPanic`]): the others panic at it
/// rather than wait for ever, and the join reports the first panic.
struct RoundBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    broken: AtomicBool,
}

impl RoundBarrier {
    fn new(n: usize) -> Self {
        RoundBarrier { n, arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0), broken: AtomicBool::new(false) }
    }

    fn wait(&self) {
        self.wait_with(|| false);
    }

    /// [`RoundBarrier::wait`], reporting a message at a time at the desk
    /// while the others are not there yet.
    fn wait_helping(&self, desk: &Desk<'_>) {
        self.wait_with(|| desk.help());
    }

    /// Wait for the others, calling `idle` meanwhile (true: it did some
    /// work, call it again at once).
    fn wait_with(&self, mut idle: impl FnMut() -> bool) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let backoff = crossbeam::utils::Backoff::new();
        while self.generation.load(Ordering::Acquire) == generation {
            if self.broken.load(Ordering::Acquire) {
                panic!("another replay thread panicked");
            }
            if idle() {
                backoff.reset();
            } else {
                backoff.snooze();
            }
        }
    }
}

/// Held by each thread of [`run_chunked`]: breaks the barrier if the thread
/// unwinds.
struct BreakOnPanic<'b>(&'b RoundBarrier);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Release);
        }
    }
}

/// The shared state of a round, for reading. A lock that a panicking
/// holder poisoned is still good: its panic is re-raised by the join.
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

/// A round's number and the start found for one of its chunks.
type KnownStart = (usize, Option<usize>);

/// State the threads of [`run_chunked`] share.
struct Rounds<'a> {
    /// Chunk outputs of the round being processed (read by every thread at
    /// once) and of the one being read (each chunk by the thread that took it).
    outs: [Vec<RwLock<ChunkOut<'a>>>; 2],
    /// For each of the two rounds in flight: the round's number (high half)
    /// and its next chunk to take (low half).
    taken: [AtomicU64; 2],
    /// Chunks per round.
    chunks: usize,
    /// Flow partitions ([`crate::flow::Limits::partitions`]).
    parts: usize,
    /// For each of the two rounds in flight, the chunk starts worked out so
    /// far, with the round they are of: the reader of a chunk and the reader
    /// of the chunk before (whose end it is) both need it, and looking for a
    /// start costs a few microseconds.
    starts: [Mutex<Vec<Option<KnownStart>>>; 2],
    barrier: RoundBarrier,
}

impl<'a> Rounds<'a> {
    /// Take the next chunk of round `r` to read, if one is left. Round `r`
    /// shares its counter with rounds `r ± 2`, which no thread is in while
    /// any is in `r` (the barrier comes between).
    fn take(&self, r: usize) -> Option<usize> {
        let slot = &self.taken[r % 2];
        let tag = (r as u64 & 0xffff_ffff) << 32;
        let mut v = slot.load(Ordering::Acquire);
        loop {
            let next = if v & !0xffff_ffff == tag { v & 0xffff_ffff } else { 0 };
            if next as usize >= self.chunks {
                return None;
            }
            match slot.compare_exchange_weak(v, tag | (next + 1), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(next as usize),
                Err(now) => v = now,
            }
        }
    }

    /// Read every chunk of round `r` (which begins at `start`) that no other
    /// thread has taken yet.
    fn read_round(&self, r: usize, start: usize, file: &'a CaptureFile, chunk: usize, threads: usize, hasher: &ahash::RandomState) {
        let start_of = |j: usize| self.chunk_start(r, start, j, file, chunk);
        while let Some(j) = self.take(r) {
            if let Some(slot) = self.outs[r % 2].get(j) {
                let mut o = slot.write().unwrap_or_else(|e| e.into_inner());
                read_chunk(&mut o, file, j, self.chunks, threads, self.parts, hasher, start_of);
            }
        }
    }

    /// [`chunk_start`] of chunk `j` of round `r`, worked out once.
    fn chunk_start(&self, r: usize, start: usize, j: usize, file: &CaptureFile, chunk: usize) -> Option<usize> {
        let memo = &self.starts[r % 2];
        let known = memo.lock().unwrap_or_else(|e| e.into_inner()).get(j).copied().flatten();
        if let Some((round, s)) = known {
            if round == r {
                return s;
            }
        }
        // Two threads may both work it out: they find the same.
        let s = chunk_start(file, start, j, chunk);
        if let Some(slot) = memo.lock().unwrap_or_else(|e| e.into_inner()).get_mut(j) {
            *slot = Some((r, s));
        }
        s
    }

    /// The chunk outputs of round `r`, for reading.
    fn outputs(&self, r: usize) -> Vec<std::sync::RwLockReadGuard<'_, ChunkOut<'a>>> {
        self.outs[r % 2].iter().map(read).collect()
    }
}

/// Chunks a round has per thread. A round's bytes are cut in `threads ×
/// CHUNKS_PER_THREAD` chunks that the threads take in turn, so a thread
/// that is done early (fewer or simpler packets in its chunks, a
/// descheduled vCPU) reads more instead of waiting at the barrier: with one
/// fixed chunk per thread, the waits were a fifth of a two-thread replay of
/// the 2 GiB benchmark capture, most of them from differences in reading
/// time.
pub const CHUNKS_PER_THREAD: usize = 8;

/// One classic pcap file, read in chunks by `opts.threads` threads (see the
/// module doc).
pub fn run_chunked(
    file: &CaptureFile,
    opts: &Options,
    capture: CaptureStats,
    bar: Option<&indicatif::ProgressBar>,
    reporter: &mut Reporter,
    out: &mut (dyn Write + Send),
) -> (CaptureStats, i64, (DecoderStats, TableStats)) {
    let n = opts.threads.max(1);
    let chunk = if opts.chunk_bytes == 0 { CHUNK_BYTES } else { opts.chunk_bytes };
    let hasher = ahash::RandomState::new();
    let first = file.first_record().unwrap_or(24);
    let chunks = n * CHUNKS_PER_THREAD;
    let chunk = chunk.div_ceil(CHUNKS_PER_THREAD).max(1);
    let slots = || (0..chunks).map(|_| RwLock::new(ChunkOut::default())).collect();
    let memo = || Mutex::new(vec![None; chunks + 1]);
    let rounds = Rounds {
        outs: [slots(), slots()],
        taken: [AtomicU64::new(0), AtomicU64::new(0)],
        chunks,
        parts: opts.limits.partitions(),
        starts: [memo(), memo()],
        barrier: RoundBarrier::new(n),
    };
    let rounds = &rounds;
    let preparer = &reporter.preparer();
    with_shards(n, opts.reporter_thread, capture, bar, reporter, out, |k, cap, bar, desk, to_rep| {
        let shard = Shard::with_hasher(opts.limits, hasher.clone());
        chunk_loop(k, n, chunk, first, file, &hasher, shard, preparer, rounds, cap, bar, desk, to_rep)
    })
}

/// Thread `k` of [`run_chunked`]: process its own packets of each round,
/// then take and read chunks of the next one ([`Rounds::read_round`]).
/// Returns the capture counters (thread 0 only) and the final clock.
#[allow(clippy::too_many_arguments)]
fn chunk_loop<'a>(
    k: usize,
    n: usize,
    chunk: usize,
    first: usize,
    file: &'a CaptureFile,
    hasher: &ahash::RandomState,
    mut shard: Shard,
    preparer: &Preparer,
    rounds: &Rounds<'a>,
    mut capture: Option<CaptureStats>,
    bar: Option<&indicatif::ProgressBar>,
    desk: &Desk<'_>,
    to_rep: Sender<FromShard>,
) -> (Option<CaptureStats>, i64) {
    let _break_on_panic = BreakOnPanic(&rounds.barrier);
    let len = file.len() as usize;
    shard.set_preparer(preparer.clone());
    let mut clock = Clock::default();
    let mut ended = Vec::new();
    rounds.read_round(0, first, file, chunk, n, hasher);
    rounds.barrier.wait();
    // Every thread works the plan of a round out for itself, from the same
    // chunk outputs, once all of them are read.
    let mut p = plan(&rounds.outputs(0), first, len);
    let mut r = 0;
    loop {
        {
            let outs = rounds.outputs(r);
            if let Some(c) = capture.as_mut() {
                count(c, &outs, &p);
                if let Some(b) = bar {
                    b.set_position(p.next as u64);
                }
            }
            for o in p.verified.iter().filter_map(|&i| outs.get(i)) {
                process_chunk(o, k, &mut clock, &mut shard, &mut ended);
            }
        }
        let msg =
            FromShard { shard: k, ended: prepared(preparer, &mut shard, &mut ended), watermark: OrderKey::at(clock.now()), done: None };
        desk.send(&to_rep, msg);
        // Then the chunks of the next round that are left: a thread that
        // processed its packets early reads more of them.
        if !p.stop {
            rounds.read_round(r + 1, p.next, file, chunk, n, hasher);
        }
        // Everyone has processed round r (its outputs may be overwritten)
        // and round r + 1 is read. Whoever is early reports meanwhile.
        rounds.barrier.wait_helping(desk);
        if p.stop {
            break;
        }
        p = plan(&rounds.outputs(r + 1), p.next, len);
        r += 1;
    }
    // Every round's ended flows went with its message: `ended` holds the
    // drain only.
    shard.table.drain(crate::flow::CloseKind::Eof, &mut ended);
    let done = Some((std::mem::take(&mut shard.decoder), shard.table.stats));
    send_drained(desk, &to_rep, preparer, k, ended, done);
    // Every thread is past the last round's barrier: nobody reads the file
    // any more, so the threads share out the unmapping of its pages
    // (5.5% less time for two threads on the 1 GiB benchmark capture in
    // tmpfs, 4.2% on ext4: medians of 21 paired runs).
    file.release_part(k, n);
    if let Some(c) = capture.as_mut() {
        c.timestamp_jumps = clock.jumps;
    }
    (capture, clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that panics between rounds makes the one waiting for it at
    /// the next barrier panic too, instead of hanging the replay.
    #[test]
    fn a_panicking_thread_breaks_the_barrier() {
        let barrier = RoundBarrier::new(2);
        let b = &barrier;
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(move || {
                let _guard = BreakOnPanic(b);
                b.wait();
                panic!("a shard fails after round 1");
            });
            let second = s.spawn(move || {
                let _guard = BreakOnPanic(b);
                b.wait();
                b.wait();
            });
            (first.join(), second.join())
        });
        assert!(first.is_err());
        let msg = second.expect_err("the waiting thread gives up");
        assert_eq!(msg.downcast_ref::<&str>().copied(), Some("another replay thread panicked"));
    }
}
