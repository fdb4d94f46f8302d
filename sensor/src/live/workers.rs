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
use crate::run::pipeline::{CaptureStats, DecoderStats, Stats};

use super::afpacket::{self, Fanout, RingSpec};
use super::reader::{wall_ns, IfaceStats};
use super::{privs, Feeds, LiveArgs, LiveStats, LiveSummary, QueueStats, SignalStats, Signals, ADVANCE_EVERY, ADVANCE_LAG_NS};

/// A worker sends what it ended at least this often (and its watermark).
const SEND_EVERY: Duration = Duration::from_millis(20);
/// Records per message at most.
const SEND_BATCH: usize = 256;
/// How often a worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Messages in flight from all workers to the desk.
const DESK_QUEUE: usize = 256;

/// One ring in the `live.rings` part of a stats record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RingStats {
    pub interface: String,
    pub worker: usize,
    /// The kernel's `PACKET_STATISTICS` for the ring: packets received
    /// (dropped ones included) and dropped because the ring was full.
    pub received: u64,
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
}

impl Worker {
    fn run(self) {
        let Worker { index, mut cap, linktype, snaplen, limits, preparer: shared, to_desk, stop, processed, count, published } = self;
        let mut shard = Shard::new(limits);
        let mut clock = Clock::default();
        let mut ended: Vec<Ended> = Vec::new();
        let mut ready: Vec<Prepared> = Vec::new();
        let mut generation = shared.generation.load(Relaxed);
        let mut preparer = shared.preparer.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (mut packets, mut bytes, mut captured) = (0u64, 0u64, 0u64);
        let (mut last_send, mut last_publish, mut last_advance) = (Instant::now(), Instant::now(), Instant::now());
        let mut error = None;
        let mut counted_out = false;

        // One batch (a retired ring block): every packet straight from the ring.
        macro_rules! take_batch {
            ($batch:expr) => {
                for p in $batch.iter() {
                    captured += 1;
                    if let Some(c) = count {
                        if processed.fetch_add(1, Relaxed) >= c {
                            counted_out = true;
                            continue;
                        }
                    }
                    let t = p.timestamp();
                    let ts = i64::from(t.sec) * 1_000_000_000 + i64::from(t.nsec);
                    let data = p.data();
                    let data = &data[..data.len().min(snaplen)];
                    let orig_len = u32::try_from(p.original_len()).unwrap_or(u32::MAX);
                    packets += 1;
                    bytes += data.len() as u64;
                    if let Some(now) = clock.observe(ts) {
                        shard.advance(now, &mut ended);
                    }
                    shard.packet(linktype, data, ts, orig_len, 0, &mut ended);
                    if !ended.is_empty() {
                        ready.extend(ended.drain(..).map(|e| preparer.prepare(e)));
                    }
                }
            };
        }

        let publish =
            |cap: &netring::Capture, shard: &Shard, packets: u64, bytes: u64, captured: u64, jumps: u64, error: &Option<String>| {
                let mut p = published.lock().unwrap_or_else(|e| e.into_inner());
                if let Ok(s) = cap.cumulative_stats() {
                    p.ring.received = u64::from(s.packets);
                    p.ring.drops = u64::from(s.drops);
                    p.ring.freezes = u64::from(s.freeze_count);
                }
                p.ring.captured = captured;
                p.decoder = shard.decoder.clone();
                p.table = shard.table.stats;
                p.packets = packets;
                p.bytes = bytes;
                p.jumps = jumps;
                p.error.clone_from(error);
            };

        while !stop.load(Relaxed) && !counted_out {
            match cap.next_batch_blocking(afpacket::POLL) {
                Ok(Some(batch)) => take_batch!(batch),
                Ok(None) => {}
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
            if shared.generation.load(Relaxed) != generation {
                generation = shared.generation.load(Relaxed);
                preparer = shared.preparer.read().unwrap_or_else(|e| e.into_inner()).clone();
            }
            // Time passes on an idle ring too (timeouts, the watermark).
            if last_advance.elapsed() >= ADVANCE_EVERY {
                last_advance = Instant::now();
                let target = wall_ns() - ADVANCE_LAG_NS;
                if clock.force(target) {
                    shard.advance(target, &mut ended);
                    ready.extend(ended.drain(..).map(|e| preparer.prepare(e)));
                }
            }
            if ready.len() >= SEND_BATCH || last_send.elapsed() >= SEND_EVERY {
                last_send = Instant::now();
                let watermark = OrderKey::at(clock.now());
                if to_desk.send(ToDesk::Flows { worker: index, ended: std::mem::take(&mut ready), watermark }).is_err() {
                    break;
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                last_publish = Instant::now();
                publish(&cap, &shard, packets, bytes, captured, clock.jumps, &error);
            }
        }
        // What the ring still holds, then every open flow.
        while error.is_none() && !counted_out {
            let Some(batch) = cap.next_batch() else { break };
            take_batch!(batch);
        }
        shard.table.drain(CloseKind::Shutdown, &mut ended);
        publish(&cap, &shard, packets, bytes, captured, clock.jumps, &error);
        let mut rest = ended.drain(..).peekable();
        loop {
            ready.extend(rest.by_ref().take(SEND_BATCH).map(|e| preparer.prepare(e)));
            let watermark = rest.peek().map_or(OrderKey::MAX, |n| n.order);
            if to_desk.send(ToDesk::Flows { worker: index, ended: std::mem::take(&mut ready), watermark }).is_err()
                || watermark == OrderKey::MAX
            {
                break;
            }
        }
        let _ = to_desk.send(ToDesk::Done);
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
    let signals = Signals::register()?;
    let privs = privs::drop_privileges(args.user.as_deref())?;
    let fanout = match group {
        Some((g, f)) => format!(", fanout group {g} ({})", if f == Fanout::Hash { "hash" } else { "client" }),
        None => String::new(),
    };
    eprintln!("pinwatch: capturing on {iface} (linktype {linktype}, AF_PACKET, {workers} worker(s){fanout}); {privs}");

    // 2. Output and reporter, as the unprivileged user.
    let mut out = Output::open(&spec, rotation).with_context(|| format!("output {}", args.output))?;
    let names = args.interfaces.clone();
    let mut reporter = Reporter::new(&opts, names.clone())?;
    let ocsf = opts.ocsf;
    // State kept from the last run (bindings, learned profile): before the
    // feeds, so that what they say now overrides it.
    let mut state = opts.config.state_file.as_ref().map(|p| {
        let mut en = reporter.enricher.take().unwrap_or_else(|| {
            let mut en = crate::enrich::Enricher::from_events(Vec::new(), &Default::default());
            en.config_baselines = opts.config.baselines.clone();
            en.context_map = opts.config.feed.contexts.clone();
            en
        });
        let sf = super::state::StateFile::load(p, &mut en, reporter.profile_mut());
        reporter.enricher = Some(en);
        sf
    });
    let state_every = Duration::from_secs(opts.config.state_interval_s.max(1));
    let mut last_state = Instant::now();
    let mut feeds = Feeds::start(args, opts.config.feed.http.clone())?;
    if !feeds.is_empty() {
        let window = i64::try_from(args.late_window.as_nanos()).unwrap_or(i64::MAX / 2);
        reporter.enable_streaming_feed(window);
        feeds.catch_up(&mut reporter, &mut out, args.feed_wait);
    }

    // 3. Workers.
    let shared = Arc::new(SharedPreparer { generation: AtomicU64::new(0), preparer: RwLock::new(reporter.preparer()) });
    let (to_desk, from_workers): (Sender<ToDesk>, Receiver<ToDesk>) = bounded(DESK_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let processed = Arc::new(AtomicU64::new(0));
    let mut published = Vec::new();
    let mut handles = Vec::new();
    for (index, cap) in caps.into_iter().enumerate() {
        let p = Arc::new(Mutex::new(Published {
            ring: RingStats { interface: iface.clone(), worker: index, ..RingStats::default() },
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
        };
        handles.push(std::thread::Builder::new().name(format!("afp-{index}")).spawn(move || w.run())?);
    }
    drop(to_desk);

    // 4. The desk.
    let started = Instant::now();
    let stats_every = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let mut next_stats = stats_every.map(|d| started + d);
    let mut marks = vec![OrderKey::MIN; workers];
    let (mut reloads, mut reload_errors) = (0u64, 0u64);
    let mut sig = SignalStats::default();
    let mut stopping = false;
    let limits = opts.limits;

    let live_stats =
        |rings: Vec<RingStats>, out: &Output, feeds: &Feeds, final_record: bool, reloads: u64, reload_errors: u64, sig: SignalStats| {
            let iface_stats = IfaceStats {
                name: iface.clone(),
                linktype,
                received: rings.iter().map(|r| r.received).sum(),
                dropped: rings.iter().map(|r| r.drops).sum(),
                if_dropped: 0,
                captured: rings.iter().map(|r| r.captured).sum(),
                queue_dropped: 0,
                queue_dropped_bytes: 0,
                error: published.iter().find_map(|p| p.lock().ok().and_then(|p| p.error.clone())),
            };
            LiveStats {
                uptime_s: started.elapsed().as_secs_f64(),
                final_record,
                received: iface_stats.received,
                dropped: iface_stats.dropped,
                if_dropped: 0,
                reader_queue_drops: 0,
                interfaces: vec![iface_stats],
                backend: "afpacket",
                workers,
                fanout_group: group.map(|(g, _)| g),
                rings,
                queue: QueueStats { packets_limit: 0, bytes_limit: 0, packets_max: 0, bytes_max: 0, packets_now: 0 },
                output: out.stats(),
                config_reloads: reloads,
                config_reload_errors: reload_errors,
                signals: sig,
                feeds: feeds.stats(),
                feed: feeds.health(),
                state: None,
            }
        };

    loop {
        if signals.term.load(Relaxed)
            || args.duration.is_some_and(|d| started.elapsed() >= d)
            || args.count.is_some_and(|c| processed.load(Relaxed) >= c)
            || out.closed()
        {
            if !stopping {
                // The last feed lines first, so the flushed sessions are enriched with them.
                feeds.poll(&mut reporter, &mut out, true);
            }
            stopping = true;
        }
        if stopping {
            stop.store(true, Relaxed);
        }
        if signals.hup.swap(false, Relaxed) {
            sig.sighup += 1;
            out.reopen();
            if let Some(p) = &args.config {
                match crate::config::Config::load(p) {
                    Ok(cfg) => {
                        reporter.set_config(cfg);
                        *shared.preparer.write().unwrap_or_else(|e| e.into_inner()) = reporter.preparer();
                        shared.generation.fetch_add(1, Relaxed);
                        reloads += 1;
                        eprintln!("pinwatch: SIGHUP: output reopened, {} reloaded", p.display());
                    }
                    Err(e) => {
                        reload_errors += 1;
                        eprintln!("pinwatch: SIGHUP: output reopened; keeping the old configuration: {e:#}");
                    }
                }
            } else {
                eprintln!("pinwatch: SIGHUP: output reopened");
            }
        }

        let mut take = |m: ToDesk, reporter: &mut Reporter, out: &mut Output| match m {
            ToDesk::Flows { worker, mut ended, watermark } => {
                reporter.handle_prepared(&mut ended);
                if let Some(mk) = marks.get_mut(worker) {
                    *mk = (*mk).max(watermark);
                }
                if let Some(low) = marks.iter().copied().min() {
                    reporter.release_below(low, out);
                }
            }
            // The channel closing is what ends the desk.
            ToDesk::Done => {}
        };
        let mut all_gone = false;
        match from_workers.recv_timeout(super::RECV_WAIT) {
            Ok(m) => {
                take(m, &mut reporter, &mut out);
                for _ in 0..256 {
                    match from_workers.try_recv() {
                        Ok(m) => take(m, &mut reporter, &mut out),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => all_gone = true,
        }
        feeds.poll(&mut reporter, &mut out, false);
        out.maintain();
        if let Some(sf) = state.as_mut().filter(|_| last_state.elapsed() >= state_every) {
            sf.save(reporter.enricher.as_ref(), reporter.profile());
            last_state = Instant::now();
        }
        if let Some(m) = metrics.as_ref().filter(|m| m.due()) {
            let (st, rings) = engine_stats(&published, &reporter, &limits);
            m.publish(&super::metrics::stats_body(
                &st,
                &super::with_state(live_stats(rings, &out, &feeds, false, reloads, reload_errors, sig), state.as_ref()),
            ));
        }

        let usr1 = signals.usr1.swap(false, Relaxed);
        if usr1 {
            sig.sigusr1 += 1;
        }
        let due = next_stats.is_some_and(|t| Instant::now() >= t);
        if usr1 || due {
            let (st, rings) = engine_stats(&published, &reporter, &limits);
            super::write_stats_of(
                &st,
                &super::with_state(live_stats(rings, &out, &feeds, false, reloads, reload_errors, sig), state.as_ref()),
                &mut out,
                ocsf,
            );
        }
        if let (true, Some(t)) = (due, next_stats) {
            let every = stats_every.unwrap_or(Duration::from_secs(60));
            let mut n = t + every;
            while n <= Instant::now() {
                n += every;
            }
            next_stats = Some(n);
        }
        if all_gone {
            // Every worker has ended (stop, or every ring failed).
            break;
        }
        if !stopping && handles.iter().all(|h| h.is_finished()) {
            stopping = true;
        }
    }

    let mut failed = Vec::new();
    for h in handles {
        if h.join().is_err() {
            failed.push(iface.clone());
        }
    }
    for (i, p) in published.iter().enumerate() {
        if let Some(e) = p.lock().ok().and_then(|p| p.error.clone()) {
            eprintln!("pinwatch: {iface} (worker {i}): {e}");
            if !failed.contains(iface) {
                failed.push(iface.clone());
            }
        }
    }
    feeds.poll(&mut reporter, &mut out, true);
    feeds.stop();
    reporter.release_all(&mut out);
    if let Some(sf) = state.as_mut() {
        sf.save(reporter.enricher.as_ref(), reporter.profile());
    }
    let (st, rings) = engine_stats(&published, &reporter, &limits);
    let ls = super::with_state(live_stats(rings, &out, &feeds, true, reloads, reload_errors, sig), state.as_ref());
    if let Some(m) = &metrics {
        m.publish(&super::metrics::stats_body(&st, &ls));
    }
    let stats = super::write_stats_of(&st, &ls, &mut out, ocsf);
    out.finish(Duration::from_secs(5));
    let o = out.stats();
    eprintln!(
        "pinwatch: stopped after {:.1} s: {} packets over {workers} worker(s), {} dropped by the kernel; {} lines written, {} lost",
        started.elapsed().as_secs_f64(),
        st.capture.packets,
        ls.dropped,
        o.lines_written,
        o.lines_dropped
    );
    Ok(LiveSummary { stats, failed_interfaces: failed })
}
