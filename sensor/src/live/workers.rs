//! `pinwatch live` on AF_PACKET (the default backend on Linux): N worker
//! threads, each with its own TPACKET_V3 ring ([`super::afpacket`]), all in
//! one `PACKET_FANOUT` group, so the kernel shares the packets out by flow
//! (`--fanout hash`) or by client (`--fanout client`). Each worker owns a
//! [`Shard`] (decode and a flow table) and its own [`Clock`], reads its ring
//! in place (no copy), and prepares the flows it ends for the output
//! ([`Preparer`]: classified, rendered).
//!
//! The prepared records go to the *desk* on the calling thread, which holds
//! the one [`Reporter`] of the process, as in a sharded replay
//! (`crate::run::sharded`): each worker sends its clock as a watermark with its
//! records, and the desk writes every record whose
//! [`OrderKey`] is below every worker's watermark, in key order, so the
//! findings that join several flows of one client (the fallback, the AN1725
//! join) see them all, whichever worker ended them. A worker with an idle
//! ring moves its clock with the wall clock (less a lag), so its watermark
//! does not hold the others' records back.
//!
//! The desk also follows the feeds, answers the signals, writes the stats
//! records (with the kernel's `PACKET_STATISTICS` of every ring) and rotates
//! the output, as the libpcap loop in `super` does. A worker blocked on the
//! desk (its queue is full) stops reading its ring; the kernel then drops
//! and counts, per ring (`live.rings[].drops`).
//!
//! Stop (signal, `--duration`, `--count`): every worker reads what its ring
//! still holds, ends its open flows (close kind `shutdown`) and sends them
//! in output order; the desk writes everything, then the final stats record.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use crate::flow::{CloseKind, Ended, Limits, OrderKey, TableStats};
use crate::output::{Output, OutputSpec, Rotation};
use crate::run::engine::{add_decoder_stats, add_table_stats, stats_of, Clock, Prepared, Preparer, Reporter, Shard, WriteOut};
use crate::run::pipeline::{CaptureStats, DecoderStats, Options, Stats};

use super::afpacket::{self, Fanout, RingSpec};
use super::ebpf_bypass::{BypassStats, KernelBypass};
use super::reader::{wall_ns, IfaceStats};
use super::{
    load_state, privs, start_feeds, Feeds, LiveArgs, LiveStats, LiveSummary, QueueStats, Reloads, SignalStats, Signals, ADVANCE_EVERY,
    ADVANCE_LAG_NS,
};
use crate::flow::offload::Offload;

/// A worker sends what it ended at least this often (and its watermark).
const SEND_EVERY: Duration = Duration::from_millis(20);
/// Records per message at most.
const SEND_BATCH: usize = 256;
/// How often a worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Messages in flight from all workers to the desk.
const DESK_QUEUE: usize = 256;
/// How long a stopping worker still reads its ring: the kernel's block
/// timeout, and a margin for the kernel's timer.
const STOP_WAIT: Duration = Duration::from_millis(afpacket::BLOCK_TIMEOUT_MS as u64 + 50);

/// One ring in the `live.rings` part of a stats record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RingStats {
    /// `interface`: the interface the ring captures on.
    pub interface: String,
    /// `worker`: the worker's index, from 0.
    pub worker: usize,
    /// `received`: the kernel's `PACKET_STATISTICS` count of packets the
    /// ring received (dropped ones included).
    pub received: u64,
    /// `drops`: the kernel's count of packets dropped because the ring was
    /// full.
    pub drops: u64,
    /// Times the ring was frozen (all blocks held by the worker).
    pub freezes: u64,
    /// Packets the worker read from the ring.
    pub captured: u64,
}

/// What a worker publishes for the stats records.
#[derive(Default)]
struct Published {
    ring: RingStats,
    decoder: DecoderStats,
    table: TableStats,
    packets: u64,
    bytes: u64,
    jumps: u64,
    error: Option<String>,
}

enum ToDesk {
    Flows { worker: usize, ended: Vec<Prepared>, watermark: OrderKey },
    Done,
}

/// The preparer of the current configuration, swapped on SIGHUP.
struct SharedPreparer {
    generation: AtomicU64,
    preparer: RwLock<Preparer>,
}

struct Worker {
    index: usize,
    cap: netring::Capture,
    linktype: u32,
    snaplen: usize,
    limits: Limits,
    preparer: Arc<SharedPreparer>,
    to_desk: Sender<ToDesk>,
    stop: Arc<AtomicBool>,
    processed: Arc<AtomicU64>,
    count: Option<u64>,
    published: Arc<Mutex<Published>>,
    offload: Option<Box<dyn Offload>>,
}

impl Worker {
    fn run(self) {
        let Worker { index, mut cap, linktype, snaplen, limits, preparer: shared, to_desk, stop, processed, count, published, offload } =
            self;
        let mut w = WorkerLoop {
            linktype,
            snaplen,
            count,
            processed,
            shard: Shard::new(limits),
            clock: Clock::default(),
            ended: Vec::new(),
            ready: Vec::new(),
            generation: shared.generation.load(Relaxed),
            preparer: shared.preparer.read().unwrap_or_else(|e| e.into_inner()).clone(),
            packets: 0,
            bytes: 0,
            captured: 0,
            error: None,
            counted_out: false,
        };
        // Open sessions are written at their verdict (`crate::flow::decision`).
        w.shard.set_preparer(w.preparer.clone());
        if let Some(o) = offload {
            w.shard.table.set_offload(o);
        }
        let (mut last_send, mut last_publish, mut last_advance) = (Instant::now(), Instant::now(), Instant::now());

        while !stop.load(Relaxed) && !w.counted_out {
            match cap.next_batch_blocking(afpacket::POLL) {
                Ok(Some(batch)) => w.take_batch(&batch),
                Ok(None) => {}
                Err(e) => {
                    w.error = Some(e.to_string());
                    break;
                }
            }
            w.follow_config(&shared);
            // Time passes on an idle ring too (timeouts, the watermark).
            if last_advance.elapsed() >= ADVANCE_EVERY {
                last_advance = Instant::now();
                w.advance_with_wall_clock();
            }
            if w.ready.len() >= SEND_BATCH || last_send.elapsed() >= SEND_EVERY {
                last_send = Instant::now();
                let watermark = OrderKey::at(w.clock.now());
                if to_desk.send(ToDesk::Flows { worker: index, ended: std::mem::take(&mut w.ready), watermark }).is_err() {
                    break;
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                last_publish = Instant::now();
                w.publish(&cap, &published);
            }
        }
        // What the ring still holds, then every open flow. The kernel hands
        // a partly filled block over only at its timeout: wait that long, so
        // that the packets that came just before the stop are not left in it.
        let handed_over = Instant::now() + STOP_WAIT;
        while w.error.is_none() && !w.counted_out {
            let left = handed_over.saturating_duration_since(Instant::now());
            let batch = if left.is_zero() { Ok(cap.next_batch()) } else { cap.next_batch_blocking(left) };
            match batch {
                Ok(Some(batch)) => w.take_batch(&batch),
                Ok(None) if left.is_zero() => break,
                Ok(None) => {}
                Err(e) => w.error = Some(e.to_string()),
            }
        }
        if !w.ready.is_empty() {
            let watermark = OrderKey::at(w.clock.now());
            let _ = to_desk.send(ToDesk::Flows { worker: index, ended: std::mem::take(&mut w.ready), watermark });
        }
        w.shard.table.drain(CloseKind::Shutdown, &mut w.ended);
        w.publish(&cap, &published);
        w.send_ended(index, &to_desk);
        let _ = to_desk.send(ToDesk::Done);
    }
}

/// A worker's flow table, clock, preparer and counters, from one batch to
/// the next.
struct WorkerLoop {
    linktype: u32,
    snaplen: usize,
    /// `--count`, shared by the workers through `processed`.
    count: Option<u64>,
    processed: Arc<AtomicU64>,
    shard: Shard,
    clock: Clock,
    ended: Vec<Ended>,
    ready: Vec<Prepared>,
    /// The generation of the [`SharedPreparer`] that `preparer` is a copy of.
    generation: u64,
    preparer: Preparer,
    packets: u64,
    bytes: u64,
    captured: u64,
    error: Option<String>,
    /// `--count` was reached: the worker stops reading.
    counted_out: bool,
}

impl WorkerLoop {
    /// One batch (a retired ring block): every packet straight from the ring.
    #[inline]
    fn take_batch(&mut self, batch: &netring::PacketBatch<'_>) {
        for p in batch.iter() {
            self.captured += 1;
            if let Some(c) = self.count {
                if self.processed.fetch_add(1, Relaxed) >= c {
                    self.counted_out = true;
                    continue;
                }
            }
            let t = p.timestamp();
            let ts = i64::from(t.sec) * 1_000_000_000 + i64::from(t.nsec);
            let data = p.data();
            let data = &data[..data.len().min(self.snaplen)];
            let orig_len = u32::try_from(p.original_len()).unwrap_or(u32::MAX);
            self.packets += 1;
            self.bytes += data.len() as u64;
            if let Some(now) = self.clock.observe(ts) {
                self.shard.advance(now, &mut self.ended);
            }
            self.shard.packet(self.linktype, data, ts, orig_len, 0, &mut self.ended);
            self.collect();
        }
    }

    /// Move what is ready for the desk into `ready`: the open sessions whose
    /// verdict came due, then the flows that ended (prepared here).
    #[inline]
    fn collect(&mut self) {
        if !self.shard.verdicts.is_empty() {
            self.ready.append(&mut self.shard.verdicts);
        }
        if !self.ended.is_empty() {
            let preparer = &self.preparer;
            self.ready.extend(self.ended.drain(..).map(|e| preparer.prepare(e)));
        }
    }

    /// Take the desk's new preparer after a SIGHUP reload.
    fn follow_config(&mut self, shared: &SharedPreparer) {
        if shared.generation.load(Relaxed) != self.generation {
            self.generation = shared.generation.load(Relaxed);
            self.preparer = shared.preparer.read().unwrap_or_else(|e| e.into_inner()).clone();
            self.shard.set_preparer(self.preparer.clone());
        }
    }

    /// Move the clock with the wall clock (less a lag) when the ring has
    /// been idle, ending the flows that timed out.
    fn advance_with_wall_clock(&mut self) {
        let target = wall_ns() - ADVANCE_LAG_NS;
        if self.clock.force(target) {
            self.shard.advance(target, &mut self.ended);
            self.collect();
        }
    }

    /// Publish the ring's and the worker's counters for the stats records.
    fn publish(&self, cap: &netring::Capture, published: &Mutex<Published>) {
        let mut p = published.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(s) = cap.cumulative_stats() {
            p.ring.received = u64::from(s.packets);
            p.ring.drops = u64::from(s.drops);
            p.ring.freezes = u64::from(s.freeze_count);
        }
        p.ring.captured = self.captured;
        p.decoder = self.shard.decoder.clone();
        p.table = self.shard.table.stats;
        p.packets = self.packets;
        p.bytes = self.bytes;
        p.jumps = self.clock.jumps;
        p.error.clone_from(&self.error);
    }

    /// At the end: send the ended flows in batches, each with the order of
    /// the next as its watermark, the last with [`OrderKey::MAX`].
    fn send_ended(&mut self, index: usize, to_desk: &Sender<ToDesk>) {
        let preparer = &self.preparer;
        let mut rest = self.ended.drain(..).peekable();
        loop {
            self.ready.extend(rest.by_ref().take(SEND_BATCH).map(|e| preparer.prepare(e)));
            let watermark = rest.peek().map_or(OrderKey::MAX, |n| n.order);
            if to_desk.send(ToDesk::Flows { worker: index, ended: std::mem::take(&mut self.ready), watermark }).is_err()
                || watermark == OrderKey::MAX
            {
                break;
            }
        }
    }
}

/// The sum of the workers' counters, as the engine part of a stats record.
fn engine_stats(published: &[Arc<Mutex<Published>>], reporter: &Reporter, limits: &Limits) -> (Stats, Vec<RingStats>) {
    let mut capture = CaptureStats::default();
    let mut decoder = DecoderStats::default();
    let mut table = TableStats::default();
    let mut rings = Vec::new();
    for p in published {
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        capture.packets += p.packets;
        capture.bytes += p.bytes;
        capture.timestamp_jumps += p.jumps;
        add_decoder_stats(&mut decoder, &p.decoder);
        add_table_stats(&mut table, &p.table);
        rings.push(p.ring.clone());
    }
    (stats_of(&capture, &decoder, &table, reporter, limits, published.len()), rings)
}

/// The fanout group of this run: `--fanout-group`, else one of its own
/// when there are several workers (from the process id), else none.
fn group_of(args: &LiveArgs, workers: usize) -> Option<(u16, Fanout)> {
    match args.fanout_group {
        Some(g) => Some((g, args.fanout)),
        None if workers > 1 => Some(((std::process::id() & 0xffff) as u16, args.fanout)),
        None => None,
    }
}

/// `--kernel-bypass`: the program on every socket, or why not (`Err(None)`:
/// not asked for). A kernel that refuses is reported, and the capture runs
/// without it.
fn kernel_bypass(args: &LiveArgs, caps: &[netring::Capture]) -> Result<KernelBypass, Option<String>> {
    if !args.kernel_bypass {
        return Err(None);
    }
    let kb = KernelBypass::new(args.kernel_bypass_flows).map_err(|e| e.to_string());
    let attached = kb.and_then(|kb| {
        for c in caps {
            use std::os::fd::AsFd;
            kb.attach(c.as_fd()).map_err(|e| format!("attaching the bypass program: {e}"))?;
        }
        Ok(kb)
    });
    attached.map_err(|e| {
        eprintln!("pinwatch: --kernel-bypass is off: {e}");
        Some(e)
    })
}

/// Capture with AF_PACKET until a signal, `--duration` or `--count`; see the
/// module documentation.
pub fn run(args: &LiveArgs) -> anyhow::Result<LiveSummary> {
    let [iface] = args.interfaces.as_slice() else {
        anyhow::bail!(
            "the AF_PACKET backend captures on one interface; for several, or `any`, use --backend pcap (a build with feature `live`)"
        );
    };
    let workers = args.workers.max(1);
    let opts = super::options(args)?;
    let mut spec = OutputSpec::parse(&args.output);
    if let (OutputSpec::Sink(s), Some(name)) = (&mut spec, &opts.sensor_name) {
        s.set_sensor_name(name); // the syslog HOSTNAME
    }
    // Bound before the privileges go, so any port will do.
    let metrics = args.metrics_listen.as_deref().map(super::metrics::MetricsServer::start).transpose()?;
    let rotation = Rotation { size: args.rotate_size, interval: args.rotate_interval, keep: args.rotate_keep };
    if rotation != Rotation::default() && !matches!(spec, OutputSpec::File(_)) {
        anyhow::bail!("--rotate-* apply to a file output only");
    }

    // 1. Sockets (needs the privileges), then drop them.
    let linktype = afpacket::interface_linktype(iface)?;
    let group = group_of(args, workers);
    let ring = RingSpec { interface: iface.clone(), ring_bytes: args.buffer_size, promisc: !args.no_promisc, group };
    let mut caps = Vec::new();
    for _ in 0..workers {
        caps.push(afpacket::open(&ring)?);
    }
    let bypass = kernel_bypass(args, &caps);
    let signals = Signals::register()?;
    let privs = privs::drop_privileges(args.user.as_deref())?;
    let fanout = match group {
        Some((g, f)) => format!(", fanout group {g} ({})", if f == Fanout::Hash { "hash" } else { "client" }),
        None => String::new(),
    };
    eprintln!("pinwatch: capturing on {iface} (linktype {linktype}, AF_PACKET, {workers} worker(s){fanout}); {privs}");

    // 2. Output and reporter, as the unprivileged user.
    let mut out = Output::open(&spec, rotation).with_context(|| format!("output {}", args.output))?;
    let mut reporter = Reporter::new(&opts, args.interfaces.clone())?;
    let state = load_state(&opts, &mut reporter);
    let state_every = Duration::from_secs(opts.config.state_interval_s.max(1));
    let last_state = Instant::now();
    let feeds = start_feeds(args, &opts, &mut reporter, &mut out)?;

    // 3. Workers.
    let crew = Crew::spawn(caps, iface, linktype, args, &opts, &reporter, bypass.as_ref().ok())?;

    // 4. The desk.
    let started = Instant::now();
    let stats_every = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let mut desk = Desk {
        args,
        iface,
        linktype,
        workers,
        group,
        ocsf: opts.ocsf,
        limits: opts.limits,
        reporter,
        out,
        feeds,
        state,
        state_every,
        last_state,
        crew,
        started,
        stats_every,
        next_stats: stats_every.map(|d| started + d),
        marks: vec![OrderKey::MIN; workers],
        reloads: Reloads::default(),
        sig: SignalStats::default(),
        stopping: false,
        bypass,
    };
    loop {
        desk.check_stop(&signals);
        if signals.hup.swap(false, Relaxed) {
            desk.on_sighup();
        }
        let all_gone = desk.take_flows();
        desk.feeds.poll(&mut desk.reporter, &mut desk.out, false);
        desk.out.maintain();
        desk.periodic(&signals, metrics.as_ref());
        if all_gone {
            // Every worker has ended (stop, or every ring failed).
            break;
        }
        if !desk.stopping && desk.crew.handles.iter().all(|h| h.is_finished()) {
            desk.stopping = true;
        }
    }
    Ok(desk.finish(metrics.as_ref()))
}

/// The worker threads and what the desk shares with them.
struct Crew {
    shared: Arc<SharedPreparer>,
    from_workers: Receiver<ToDesk>,
    stop: Arc<AtomicBool>,
    /// Packets taken by all workers (for `--count`).
    processed: Arc<AtomicU64>,
    published: Vec<Arc<Mutex<Published>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Crew {
    /// One [`Worker`] thread per opened ring, with the reporter's preparer.
    fn spawn(
        caps: Vec<netring::Capture>,
        iface: &str,
        linktype: u32,
        args: &LiveArgs,
        opts: &Options,
        reporter: &Reporter,
        bypass: Option<&KernelBypass>,
    ) -> anyhow::Result<Crew> {
        let shared = Arc::new(SharedPreparer { generation: AtomicU64::new(0), preparer: RwLock::new(reporter.preparer()) });
        let (to_desk, from_workers): (Sender<ToDesk>, Receiver<ToDesk>) = bounded(DESK_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let processed = Arc::new(AtomicU64::new(0));
        let mut published = Vec::new();
        let mut handles = Vec::new();
        for (index, cap) in caps.into_iter().enumerate() {
            let p = Arc::new(Mutex::new(Published {
                ring: RingStats { interface: iface.to_string(), worker: index, ..RingStats::default() },
                ..Published::default()
            }));
            published.push(Arc::clone(&p));
            let w = Worker {
                index,
                cap,
                linktype,
                snaplen: usize::try_from(args.snaplen).unwrap_or(usize::MAX).max(1),
                limits: opts.limits,
                preparer: Arc::clone(&shared),
                to_desk: to_desk.clone(),
                stop: Arc::clone(&stop),
                processed: Arc::clone(&processed),
                count: args.count,
                published: p,
                offload: bypass.map(KernelBypass::offload),
            };
            handles.push(std::thread::Builder::new().name(format!("afp-{index}")).spawn(move || w.run())?);
        }
        drop(to_desk);
        Ok(Crew { shared, from_workers, stop, processed, published, handles })
    }
}

/// The desk: the one [`Reporter`] of the process and everything its loop
/// keeps from one turn to the next.
struct Desk<'a> {
    args: &'a LiveArgs,
    iface: &'a String,
    linktype: u32,
    workers: usize,
    group: Option<(u16, Fanout)>,
    ocsf: bool,
    limits: Limits,
    reporter: Reporter,
    out: Output,
    feeds: Feeds,
    state: Option<super::state::StateFile>,
    state_every: Duration,
    last_state: Instant,
    crew: Crew,
    started: Instant,
    stats_every: Option<Duration>,
    next_stats: Option<Instant>,
    /// Each worker's watermark: what it sends from now on is at or above it.
    marks: Vec<OrderKey>,
    reloads: Reloads,
    sig: SignalStats,
    stopping: bool,
    /// `--kernel-bypass`: the program and map, or why not (see [`kernel_bypass`]).
    bypass: Result<KernelBypass, Option<String>>,
}

impl Desk<'_> {
    /// Signals and limits: once stopping, the last feed lines first (so the
    /// flushed sessions are enriched with them), then tell the workers.
    fn check_stop(&mut self, signals: &Signals) {
        if signals.term.load(Relaxed)
            || self.args.duration.is_some_and(|d| self.started.elapsed() >= d)
            || self.args.count.is_some_and(|c| self.crew.processed.load(Relaxed) >= c)
            || self.out.closed()
        {
            if !self.stopping {
                self.feeds.poll(&mut self.reporter, &mut self.out, true);
            }
            self.stopping = true;
        }
        if self.stopping {
            self.crew.stop.store(true, Relaxed);
        }
    }

    /// SIGHUP: reopen the output and reload `--config` (the workers take the
    /// new preparer), keeping the old configuration if the new one does not
    /// load.
    fn on_sighup(&mut self) {
        self.sig.sighup += 1;
        if self.reloads.on_sighup(self.args.config.as_deref(), &mut self.out, &mut self.reporter) {
            *self.crew.shared.preparer.write().unwrap_or_else(|e| e.into_inner()) = self.reporter.preparer();
            self.crew.shared.generation.fetch_add(1, Relaxed);
        }
    }

    /// Take what the workers sent (waiting up to `RECV_WAIT` for the first
    /// message). Returns whether every worker has gone (the channel closed).
    fn take_flows(&mut self) -> bool {
        match self.crew.from_workers.recv_timeout(super::RECV_WAIT) {
            Ok(m) => {
                self.take(m);
                for _ in 0..256 {
                    match self.crew.from_workers.try_recv() {
                        Ok(m) => self.take(m),
                        Err(_) => break,
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// One message of a worker: its records to the reporter, its watermark
    /// noted, and every record below all the watermarks written.
    fn take(&mut self, m: ToDesk) {
        match m {
            ToDesk::Flows { worker, mut ended, watermark } => {
                self.reporter.handle_prepared(&mut ended);
                if let Some(mk) = self.marks.get_mut(worker) {
                    *mk = (*mk).max(watermark);
                }
                if let Some(low) = self.marks.iter().copied().min() {
                    self.reporter.release_below(low, &mut self.out);
                }
            }
            // The channel closing is what ends the desk.
            ToDesk::Done => {}
        }
    }

    /// What is due this turn: the state file, the metrics page, a stats
    /// record on SIGUSR1 and every `--stats-interval`.
    fn periodic(&mut self, signals: &Signals, metrics: Option<&super::metrics::MetricsServer>) {
        if let Some(sf) = self.state.as_mut().filter(|_| self.last_state.elapsed() >= self.state_every) {
            sf.save(self.reporter.enricher.as_ref(), self.reporter.profile());
            self.last_state = Instant::now();
        }
        if let Some(m) = metrics.filter(|m| m.due()) {
            let (st, ls) = self.stats(false);
            m.publish(&super::metrics::stats_body(&st, &ls));
        }

        let usr1 = signals.usr1.swap(false, Relaxed);
        if usr1 {
            self.sig.sigusr1 += 1;
        }
        let due = self.next_stats.is_some_and(|t| Instant::now() >= t);
        if usr1 || due {
            let (st, ls) = self.stats(false);
            super::write_stats_of(&st, &ls, &mut self.out, self.ocsf);
        }
        if let (true, Some(t)) = (due, self.next_stats) {
            let every = self.stats_every.unwrap_or(Duration::from_secs(60));
            let mut n = t + every;
            while n <= Instant::now() {
                n += every;
            }
            self.next_stats = Some(n);
        }
    }

    /// The engine part of a stats record (the workers' counters summed) and
    /// the `live` part, with the state file's counters.
    fn stats(&self, final_record: bool) -> (Stats, LiveStats) {
        let (st, rings) = engine_stats(&self.crew.published, &self.reporter, &self.limits);
        (st, super::with_state(self.live_stats(rings, final_record), self.state.as_ref()))
    }

    /// The `live` part of a stats record (without the state file's counters).
    fn live_stats(&self, rings: Vec<RingStats>, final_record: bool) -> LiveStats {
        let iface_stats = IfaceStats {
            name: self.iface.clone(),
            linktype: self.linktype,
            received: rings.iter().map(|r| r.received).sum(),
            dropped: rings.iter().map(|r| r.drops).sum(),
            if_dropped: 0,
            captured: rings.iter().map(|r| r.captured).sum(),
            queue_dropped: 0,
            queue_dropped_bytes: 0,
            error: self.crew.published.iter().find_map(|p| p.lock().ok().and_then(|p| p.error.clone())),
        };
        LiveStats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            final_record,
            received: iface_stats.received,
            dropped: iface_stats.dropped,
            if_dropped: 0,
            reader_queue_drops: 0,
            interfaces: vec![iface_stats],
            backend: "afpacket",
            workers: self.workers,
            fanout_group: self.group.map(|(g, _)| g),
            rings,
            queue: QueueStats { packets_limit: 0, bytes_limit: 0, packets_max: 0, bytes_max: 0, packets_now: 0 },
            output: self.out.stats(),
            config_reloads: self.reloads.ok,
            config_reload_errors: self.reloads.refused,
            signals: self.sig,
            feeds: self.feeds.stats(),
            feed: self.feeds.health(),
            state: None,
            kernel_bypass: match &self.bypass {
                Ok(kb) => Some(kb.stats()),
                Err(Some(e)) => Some(BypassStats { error: Some(e.clone()), ..BypassStats::default() }),
                Err(None) => None,
            },
        }
    }

    /// After the loop: join the workers (one that panicked or reported an
    /// error fails the interface), take the last feed lines, write every
    /// record left, save the state, write the final stats record and close
    /// the output.
    fn finish(mut self, metrics: Option<&super::metrics::MetricsServer>) -> LiveSummary {
        let iface = self.iface;
        let mut failed = Vec::new();
        for h in std::mem::take(&mut self.crew.handles) {
            if h.join().is_err() {
                failed.push(iface.clone());
            }
        }
        for (i, p) in self.crew.published.iter().enumerate() {
            if let Some(e) = p.lock().ok().and_then(|p| p.error.clone()) {
                eprintln!("pinwatch: {iface} (worker {i}): {e}");
                if !failed.contains(iface) {
                    failed.push(iface.clone());
                }
            }
        }
        self.feeds.poll(&mut self.reporter, &mut self.out, true);
        self.feeds.stop();
        self.reporter.release_all(&mut self.out);
        if let Some(sf) = self.state.as_mut() {
            sf.save(self.reporter.enricher.as_ref(), self.reporter.profile());
        }
        let (st, ls) = self.stats(true);
        if let Some(m) = metrics {
            m.publish(&super::metrics::stats_body(&st, &ls));
        }
        let stats = super::write_stats_of(&st, &ls, &mut self.out, self.ocsf);
        self.out.finish(Duration::from_secs(5));
        let o = self.out.stats();
        eprintln!(
            "pinwatch: stopped after {:.1} s: {} packets over {} worker(s), {} dropped by the kernel; {} lines written, {} lost",
            self.started.elapsed().as_secs_f64(),
            st.capture.packets,
            self.workers,
            ls.dropped,
            o.lines_written,
            o.lines_dropped
        );
        LiveSummary { stats, failed_interfaces: failed }
    }
}
