//! One thread per interface: read libpcap, copy packets into batches, hand
//! them to the engine thread through the bounded queue. The reader never
//! blocks on the engine: when the queue is full (in packets, bytes or
//! batches) the batch is dropped and counted, so a slow engine shows up as
//! `queue_dropped`, and a slow reader as libpcap's `dropped`.

#![cfg_attr(not(feature = "live"), allow(unused_imports, dead_code))]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[cfg(feature = "live")]
use crossbeam::channel::{Sender, TrySendError};
use serde::Serialize;

#[cfg(feature = "live")]
use super::merge::{Batch, Msg};

/// libpcap read timeout. On Linux (TPACKET_V3) it is the kernel's block
/// timeout: a partly filled block is handed over after this long. A read on
/// an idle link may block for ever, so the engine thread wakes a reader
/// that has been silent for [`POKE_AFTER_NS`] with `pcap_breakloop`
/// (libpcap ≥ 1.10 wakes a blocked read for it); the reader then reports
/// its frontier and reads on.
pub const READ_TIMEOUT_MS: i32 = 100;
/// How long a stopping reader still reads: the read timeout, and a margin
/// for the kernel's timer.
const STOP_WAIT: Duration = Duration::from_millis(READ_TIMEOUT_MS as u64 + 50);
/// A reader silent this long is woken to report its frontier.
pub const POKE_AFTER_NS: i64 = 100_000_000;
/// A batch goes to the engine at this many packets, bytes, or this age.
const BATCH_PACKETS: usize = 256;
const BATCH_BYTES: usize = 512 * 1024;
const BATCH_AGE: Duration = Duration::from_millis(20);
/// How often libpcap's counters are read.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Counters of one interface, shared with the engine thread.
#[derive(Debug, Default)]
pub struct IfaceCounters {
    /// libpcap `ps_recv` (on Linux: packets that passed the filter). This
    /// and the two below are 64-bit: libpcap's 32-bit counters are followed
    /// across wrap-around.
    pub received: AtomicU64,
    /// `ps_drop`: dropped by the kernel because the ring was full.
    pub dropped: AtomicU64,
    /// `ps_ifdrop`: dropped by the interface.
    pub if_dropped: AtomicU64,
    /// Packets the reader took from libpcap.
    pub captured: AtomicU64,
    /// Packets dropped because the engine's queue was full.
    pub queue_dropped: AtomicU64,
    /// Bytes of those packets.
    pub queue_dropped_bytes: AtomicU64,
    /// Why the capture on this interface stopped, if it did.
    pub error: Mutex<Option<String>>,
}

/// One interface in the stats record.
#[derive(Debug, Clone, Serialize)]
pub struct IfaceStats {
    /// `name`: the interface.
    pub name: String,
    /// `linktype`: its LINKTYPE value (1 Ethernet, 101 raw IP, ...).
    pub linktype: u32,
    /// `received`: libpcap's `ps_recv` (64-bit).
    pub received: u64,
    /// `dropped`: libpcap's `ps_drop`, dropped by the kernel (ring full).
    pub dropped: u64,
    /// `if_dropped`: libpcap's `ps_ifdrop`, the interface's own drops.
    pub if_dropped: u64,
    /// `captured`: packets the reader took from libpcap.
    pub captured: u64,
    /// `queue_dropped`: packets dropped because the engine's queue was full.
    pub queue_dropped: u64,
    /// `queue_dropped_bytes`: their bytes.
    pub queue_dropped_bytes: u64,
    /// `error`: why the capture on this interface stopped, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IfaceCounters {
    /// The counters as they stand, for interface `name`.
    pub fn snapshot(&self, name: &str, linktype: u32) -> IfaceStats {
        IfaceStats {
            name: name.to_string(),
            linktype,
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            if_dropped: self.if_dropped.load(Relaxed),
            captured: self.captured.load(Relaxed),
            queue_dropped: self.queue_dropped.load(Relaxed),
            queue_dropped_bytes: self.queue_dropped_bytes.load(Relaxed),
            error: self.error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// The queue between readers and the engine, bounded in packets and bytes.
#[derive(Debug)]
pub struct Queue {
    /// Packets queued now.
    pub packets: AtomicUsize,
    /// Bytes queued now.
    pub bytes: AtomicUsize,
    /// Most packets queued (`--queue-packets`).
    pub max_packets: usize,
    /// Most bytes queued (`--queue-bytes`).
    pub max_bytes: usize,
    /// High-water marks.
    pub packets_hwm: AtomicUsize,
    /// High-water mark of bytes queued.
    pub bytes_hwm: AtomicUsize,
}

impl Queue {
    /// An empty queue with these bounds.
    pub fn new(max_packets: usize, max_bytes: usize) -> Self {
        Queue {
            packets: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_packets,
            max_bytes,
            packets_hwm: AtomicUsize::new(0),
            bytes_hwm: AtomicUsize::new(0),
        }
    }

    /// Reserve room for a batch; false when it does not fit.
    fn reserve(&self, packets: usize, bytes: usize) -> bool {
        let p = self.packets.fetch_add(packets, Relaxed) + packets;
        let b = self.bytes.fetch_add(bytes, Relaxed) + bytes;
        if p > self.max_packets || b > self.max_bytes {
            self.release(packets, bytes);
            return false;
        }
        self.packets_hwm.fetch_max(p, Relaxed);
        self.bytes_hwm.fetch_max(b, Relaxed);
        true
    }

    /// Give back the room of `packets` and `bytes` taken off the queue.
    pub fn release(&self, packets: usize, bytes: usize) {
        self.packets.fetch_sub(packets, Relaxed);
        self.bytes.fetch_sub(bytes, Relaxed);
    }
}

/// Follows a 32-bit counter across wrap-around.
#[derive(Default)]
struct Wide {
    last: u32,
    total: u64,
}

impl Wide {
    fn update(&mut self, v: u32) -> u64 {
        self.total += u64::from(v.wrapping_sub(self.last));
        self.last = v;
        self.total
    }
}

/// The wall clock now, ns since the Unix epoch (0 before 1970).
pub fn wall_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// DLT value (what libpcap reports for a live handle) to LINKTYPE value
/// (what capture files and the decoder use). They differ for raw IP.
pub fn linktype_of_dlt(dlt: i32) -> u32 {
    match dlt {
        12 | 14 => 101, // DLT_RAW (12 on Linux, 14 on OpenBSD) = LINKTYPE_RAW
        other => other as u32,
    }
}

/// One interface's reader thread (libpcap).
#[cfg(feature = "live")]
pub struct Reader {
    /// Index of the interface.
    pub source: usize,
    /// The interface's LINKTYPE value.
    pub linktype: u32,
    /// The libpcap handle.
    pub cap: pcap::Capture<pcap::Active>,
    /// To the engine thread.
    pub tx: Sender<Msg>,
    /// The queue's bounds and occupancy, shared with the engine.
    pub queue: Arc<Queue>,
    /// This interface's counters, shared with the engine.
    pub counters: Arc<IfaceCounters>,
    /// Set by the engine: stop reading.
    pub stop: Arc<AtomicBool>,
    /// Wall-clock time of the reader's last message to the engine.
    pub activity: Arc<AtomicI64>,
    /// How far behind the wall clock an idle reader's frontier is.
    pub idle_lag_ns: i64,
}

#[cfg(feature = "live")]
impl Reader {
    /// Read until stopped or an error: packets go out in batches, a silent link
    /// sends its frontier, libpcap's counters are read every 250 ms. Ends with
    /// [`Msg::Done`].
    pub fn run(mut self) {
        let mut batch = Batch::new(self.source, self.linktype);
        let mut first_at = Instant::now();
        let mut last_packet_at = Instant::now();
        let mut last_stats = Instant::now();
        let (mut recv, mut drop, mut ifdrop) = (Wide::default(), Wide::default(), Wide::default());
        let mut stopped_at = None;
        loop {
            // Stopping: libpcap hands a partly filled ring block over only
            // at the read timeout, so read on that long (the engine's pokes
            // wake a read on an idle link): the packets that came just
            // before the stop are not left in the ring.
            if self.stop.load(Relaxed) && stopped_at.get_or_insert_with(Instant::now).elapsed() >= STOP_WAIT {
                break;
            }
            match self.cap.next_packet() {
                Ok(p) => {
                    let h = p.header;
                    // time_t and suseconds_t are 32-bit on some targets. With
                    // nanosecond precision `tv_usec` holds nanoseconds.
                    #[allow(clippy::useless_conversion)]
                    let ts = i64::from(h.ts.tv_sec).saturating_mul(1_000_000_000).saturating_add(i64::from(h.ts.tv_usec));
                    if batch.pkts.is_empty() {
                        first_at = Instant::now();
                    }
                    batch.push(ts, p.data, h.len);
                    last_packet_at = Instant::now();
                    self.counters.captured.fetch_add(1, Relaxed);
                    if batch.pkts.len() >= BATCH_PACKETS || batch.data.len() >= BATCH_BYTES || first_at.elapsed() >= BATCH_AGE {
                        self.send(&mut batch);
                    }
                }
                // A read timeout, or the engine woke the reader (`pcap_breakloop`).
                Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => {
                    // Idle link: the frontier moves with the clock. Woken
                    // while packets are still coming (a backlog in the ring),
                    // the last packet's time stays the frontier.
                    if last_packet_at.elapsed() >= Duration::from_nanos(POKE_AFTER_NS as u64) {
                        batch.frontier = batch.frontier.max(wall_ns() - self.idle_lag_ns);
                    }
                    self.send(&mut batch);
                }
                Err(e) => {
                    if let Ok(mut slot) = self.counters.error.lock() {
                        *slot = Some(e.to_string());
                    }
                    break;
                }
            }
            if last_stats.elapsed() >= STATS_EVERY {
                last_stats = Instant::now();
                self.read_stats(&mut recv, &mut drop, &mut ifdrop);
            }
        }
        self.send(&mut batch);
        self.read_stats(&mut recv, &mut drop, &mut ifdrop);
        // Blocking is fine here: the engine drains the queue until every reader is done.
        let _ = self.tx.send_timeout(Msg::Done(self.source), Duration::from_secs(5));
    }

    fn read_stats(&mut self, recv: &mut Wide, drop: &mut Wide, ifdrop: &mut Wide) {
        if let Ok(s) = self.cap.stats() {
            self.counters.received.store(recv.update(s.received), Relaxed);
            self.counters.dropped.store(drop.update(s.dropped), Relaxed);
            self.counters.if_dropped.store(ifdrop.update(s.if_dropped), Relaxed);
        }
    }

    /// Hand the batch over, or drop and count it; a batch without packets is
    /// a heartbeat, sent only when there is room.
    fn send(&mut self, batch: &mut Batch) {
        self.activity.store(wall_ns(), Relaxed);
        let frontier = batch.frontier;
        let full = std::mem::replace(batch, Batch::new(self.source, self.linktype));
        batch.frontier = frontier;
        let (n, bytes) = (full.pkts.len(), full.data.len());
        if n == 0 {
            let _ = self.tx.try_send(Msg::Batch(full));
            return;
        }
        if self.queue.reserve(n, bytes) {
            match self.tx.try_send(Msg::Batch(full)) {
                Ok(()) => return,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.queue.release(n, bytes),
            }
        }
        self.counters.queue_dropped.fetch_add(n as u64, Relaxed);
        self.counters.queue_dropped_bytes.fetch_add(bytes as u64, Relaxed);
        // The frontier still holds: the dropped packets are gone, not late.
        let _ = self.tx.try_send(Msg::Batch(Batch { frontier, ..Batch::new(self.source, self.linktype) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_counters_follow_wraparound() {
        let mut w = Wide::default();
        assert_eq!(w.update(10), 10);
        assert_eq!(w.update(u32::MAX), u64::from(u32::MAX));
        assert_eq!(w.update(4), u64::from(u32::MAX) + 5);
    }

    #[test]
    fn queue_bounds() {
        let q = Queue::new(10, 1000);
        assert!(q.reserve(6, 100));
        assert!(!q.reserve(6, 100));
        assert!(!q.reserve(1, 901));
        assert!(q.reserve(4, 900));
        q.release(10, 1000);
        assert_eq!(q.packets.load(Relaxed), 0);
        assert_eq!(q.packets_hwm.load(Relaxed), 10);
    }

    #[test]
    fn raw_ip_dlt_maps_to_linktype_raw() {
        assert_eq!(linktype_of_dlt(12), 101);
        assert_eq!(linktype_of_dlt(1), 1);
        assert_eq!(linktype_of_dlt(113), 113);
    }
}
