//! The flow table: bidirectional TCP flows keyed on the 5-tuple plus VLAN and
//! tunnel context, TCP state from SYN/SYN-ACK/FIN/RST, idle timeouts driven by
//! packet time, a cap on tracked flows, and the TLS session of each flow.
//!
//! Time is only ever the packet timestamp passed in, so a replay is
//! deterministic. Memory is bounded by [`Limits`]: flows beyond `max_flows`
//! evict the flow closest to its timeout (counted), and per-flow buffers are
//! capped by the reassembler and the TLS parser.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;

use pinwatch_parsers::decode::{Decoded, TcpInfo};
use pinwatch_parsers::quic::gquic::looks_like_gquic;
use pinwatch_parsers::quic::looks_like_quic_initial;
use pinwatch_parsers::tls::{looks_like_client_hello, looks_like_tls, Dir, TlsEvent};

use crate::flowmap::FlowMap;
use crate::reassembly::{self, Chunk, Reassembler};

use crate::quic_session::QuicSession;
use crate::session::TlsSession;

const NS: i64 = 1_000_000_000;

/// Table limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_flows: usize,
    /// Idle timeout of a flow that has exchanged data.
    pub established_timeout_ns: i64,
    /// Idle timeout of a flow with no payload yet (SYN floods, scans).
    pub new_timeout_ns: i64,
    /// How long a closed flow lingers for trailing packets before it is emitted.
    pub closed_linger_ns: i64,
    /// After a flow closed with FIN/RST is written, how long packets on its
    /// tuple (other than a new SYN) are counted as late and dropped, instead
    /// of starting a mid-stream flow (retransmitted FINs to a vanished peer).
    pub closed_memory_ns: i64,
    /// Payload segments inspected for a TLS start before a flow is written off as not TLS.
    pub probe_segments: u8,
    pub reassembly: reassembly::Limits,
    /// Bytes all flows together may hold in reassembly and handshake buffers.
    pub max_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_flows: 262_144,
            established_timeout_ns: 600 * NS,
            new_timeout_ns: 30 * NS,
            closed_linger_ns: 5 * NS,
            closed_memory_ns: 120 * NS,
            probe_segments: 16,
            reassembly: reassembly::Limits::default(),
            max_buffer_bytes: 1 << 30,
        }
    }
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseKind {
    Fin,
    Rst,
    Timeout,
    Eof,
    Evicted,
    Shutdown,
}

/// Normalised flow key: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub context: u64,
    pub proto: u8,
    pub lo: (IpAddr, u16),
    pub hi: (IpAddr, u16),
}

impl FlowKey {
    pub fn new(d: &Decoded<'_>) -> Self {
        let a = (d.src, d.sport);
        let b = (d.dst, d.dport);
        let (lo, hi) = if endpoint_le(a, b) { (a, b) } else { (b, a) };
        FlowKey { context: d.context, proto: d.proto, lo, hi }
    }
}

/// `a <= b` as the derived `Ord` of `(IpAddr, u16)` has it (IPv4 before
/// IPv6, then address, then port), in integer compares: the generic tuple
/// and enum comparison was a visible share of every packet's cost.
#[inline(always)]
fn endpoint_le(a: (IpAddr, u16), b: (IpAddr, u16)) -> bool {
    let addr = |ip: IpAddr| match ip {
        IpAddr::V4(v) => (0u8, u128::from(u32::from(v))),
        IpAddr::V6(v) => (1u8, u128::from(v)),
    };
    let ((fa, xa), (fb, xb)) = (addr(a.0), addr(b.0));
    (fa, xa, a.1) <= (fb, xb, b.1)
}

/// Does the packet travel lo -> hi?
fn from_lo(key: &FlowKey, d: &Decoded<'_>) -> bool {
    (d.src, d.sport) == key.lo && (d.dst, d.dport) == key.hi
}

/// Is the flow TLS, not TLS, or still undecided?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Unknown,
    Tls,
    NotTls,
    /// A UDP flow that began with a QUIC client Initial.
    Quic,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct DirCounters {
    /// Time of this side's first FIN or RST.
    pub close_ts: Option<i64>,
    pub pkts: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    pub fin: bool,
    pub rst: bool,
    pub syn: bool,
}

/// One tracked flow.
#[derive(Debug)]
#[repr(C)]
pub struct Flow {
    // The fields a packet of a bypassed or quiet flow touches come first, so
    // that such a packet reads two or three cache lines of its flow, not
    // six scattered ones (`repr(C)` keeps this order).
    /// [client, server]
    pub dirs: [DirCounters; 2],
    pub last_ts: i64,
    pub close_ts: Option<i64>,
    pub flow_id: u64,
    /// True when the client is the `lo` endpoint of the key.
    pub client_is_lo: bool,
    /// Nothing more is read from this flow's bytes (its handshake parse is
    /// over in both directions, or it is not TLS): later packets only move
    /// counters, close state and time.
    pub bypass: bool,
    pub close: Option<CloseKind>,
    /// `quiet[dir][has_payload]`: a packet from `dir` (without SYN) cannot
    /// change anything but counters and close state. Worked out after every
    /// packet that went through the parsers (see [`Flow::refresh_quiet`]).
    quiet: [[bool; 2]; 2],
    pub proto: Proto,
    pub key: FlowKey,
    /// Role of the endpoints is known from SYN/SYN-ACK or a ClientHello.
    pub roles_known: bool,
    pub first_ts: i64,
    /// Index of the capture source (u32: a `Flow` must fit in 1,024 bytes).
    pub source: u32,
    /// The VLAN ids of the flow's first packet (Suricata's `vlan`).
    pub vlans: pinwatch_parsers::decode::Vlans,
    pub probes: u8,
    /// TLS bytes are being fed for [client, server].
    pub started: [bool; 2],
    pub reasm: [Reassembler; 2],
    pub session: TlsSession,
    /// QUIC state, for UDP flows that began with a client Initial.
    pub quic: Option<Box<QuicSession>>,
    /// First segment seen mid-stream (no SYN from the client).
    pub midstream: bool,
    /// A SYN-ACK was seen.
    pub synack: bool,
    /// The shared buffer budget was exhausted while this flow asked for more.
    pub budget_dropped: bool,
    /// What the server side's packets say about where it is ([`ServerWire`]).
    pub wire: ServerWire,
}

/// Where the server side of a flow is, as its packets show it: the
/// evidence that tells an inline inspector near the tap from a distant
/// origin when the certificate is hidden (TLS 1.3) or absent
/// (`classify::wire_evidence`, docs/output.md `path`). 16 bytes, so a
/// [`Flow`] stays within its allocator size class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerWire {
    /// Client SYN to server SYN-ACK at the tap, in µs (saturating);
    /// 0 when either was not seen.
    pub synack_us: u32,
    /// The SYN-ACK's option kinds in order, 4 bits each (first in the low
    /// bits, at most 8; see [`ServerWire::options`]).
    pub synack_opts: u32,
    /// The SYN-ACK's window as on the wire.
    pub synack_win: u16,
    /// The SYN-ACK's MSS option (0: none).
    pub synack_mss: u16,
    /// The SYN-ACK's TTL / hop limit (0: no SYN-ACK seen).
    pub synack_ttl: u8,
    /// The SYN-ACK's window scale (0xff: none).
    pub synack_ws: u8,
    /// TTL / hop limit of the server's first packet with payload (its
    /// first flight; 0: none seen).
    pub data_ttl: u8,
}

impl ServerWire {
    /// Record a SYN-ACK from the server.
    fn synack(&mut self, d: &Decoded<'_>, window: u16, syn_ts: Option<i64>, ts: i64) {
        self.synack_ttl = d.ttl.max(1);
        self.synack_win = window;
        self.synack_us = syn_ts.map_or(0, |s| u32::try_from(ts.saturating_sub(s).max(0) / 1000).unwrap_or(u32::MAX).max(1));
        self.synack_ws = 0xff;
        self.synack_mss = 0;
        self.synack_opts = 0;
        let o = d.tcp_options;
        let (mut i, mut n) = (0usize, 0u32);
        while i < o.len() && n < 8 {
            let kind = o[i];
            if kind == 0 {
                break;
            }
            // Kinds packed as 4 bits: the common ones keep their number
            // (1 NOP, 2 MSS, 3 WS, 4 SACK-permitted, 8 timestamps), others are 15.
            let nib = if matches!(kind, 1..=4 | 8) { u32::from(kind) } else { 15 };
            self.synack_opts |= nib << (4 * n);
            n += 1;
            if kind == 1 {
                i += 1;
                continue;
            }
            let Some(&len) = o.get(i + 1) else { break };
            let len = usize::from(len);
            if len < 2 || i + len > o.len() {
                break;
            }
            match (kind, len) {
                (2, 4) => self.synack_mss = u16::from_be_bytes([o[i + 2], o[i + 3]]),
                (3, 3) => self.synack_ws = o[i + 2],
                _ => {}
            }
            i += len;
        }
    }

    /// The SYN-ACK's option kinds in order, as p0f writes them: `M` MSS,
    /// `N` NOP, `W` window scale, `S` SACK permitted, `T` timestamps, `?`
    /// other.
    pub fn options(&self) -> String {
        (0..8)
            .map(|n| (self.synack_opts >> (4 * n)) & 0xf)
            .take_while(|&k| k != 0)
            .map(|k| match k {
                1 => 'N',
                2 => 'M',
                3 => 'W',
                4 => 'S',
                8 => 'T',
                _ => '?',
            })
            .collect()
    }
}

impl Flow {
    /// A new flow that starts at `ts`; roles not known, not mid-stream.
    fn new(key: FlowKey, ts: i64, source: usize, client_is_lo: bool, proto: Proto) -> Box<Flow> {
        Box::new(Flow {
            key,
            flow_id: flow_id(&key, ts),
            client_is_lo,
            roles_known: false,
            first_ts: ts,
            last_ts: ts,
            source: u32::try_from(source).unwrap_or(u32::MAX),
            vlans: Default::default(),
            proto,
            probes: 0,
            started: [false; 2],
            dirs: Default::default(),
            reasm: Default::default(),
            session: TlsSession::default(),
            quic: None,
            close: None,
            close_ts: None,
            midstream: false,
            synack: false,
            bypass: false,
            quiet: [[false; 2]; 2],
            budget_dropped: false,
            wire: ServerWire::default(),
        })
    }

    /// Recompute [`Flow::quiet`] from the reassembly and parser state: a
    /// packet without SYN is quiet when nothing is held out of order in the
    /// other direction (its ACK could release it) and the flow's protocol is
    /// decided, and, if it carries payload, when its direction's TLS parser
    /// no longer reads bytes.
    fn refresh_quiet(&mut self) {
        for dir in [Dir::Client, Dir::Server] {
            let other = match dir {
                Dir::Client => Dir::Server,
                Dir::Server => Dir::Client,
            };
            let empty = self.proto != Proto::Unknown && !self.reasm[other.idx()].has_pending();
            let payload = empty && self.proto == Proto::Tls && !self.session.wants_bytes(dir);
            self.quiet[dir.idx()] = [empty, payload];
        }
    }

    pub fn client(&self) -> (IpAddr, u16) {
        if self.client_is_lo { self.key.lo } else { self.key.hi }
    }
    pub fn server(&self) -> (IpAddr, u16) {
        if self.client_is_lo { self.key.hi } else { self.key.lo }
    }
    fn deadline(&self, lim: &Limits) -> i64 {
        if let Some(t) = self.close_ts {
            return t + lim.closed_linger_ns;
        }
        let payload = self.dirs[0].payload_bytes + self.dirs[1].payload_bytes;
        self.last_ts + if payload == 0 { lim.new_timeout_ns } else { lim.established_timeout_ns }
    }
    /// Heap bytes held by this flow's buffers.
    pub fn heap_bytes(&self) -> usize {
        self.reasm[0].heap_bytes()
            + self.reasm[1].heap_bytes()
            + self.session.parser.heap_bytes()
            + self.quic.as_ref().map_or(0, |q| q.heap_bytes())
    }
}

/// A flow that has ended, handed to the output stage.
#[derive(Debug)]
pub struct Ended {
    pub flow: Box<Flow>,
    pub close: CloseKind,
    pub end_ts: i64,
    /// Where this record goes in the output (see [`OrderKey`]).
    pub order: OrderKey,
}

/// The output order of ended flows, the same whatever the thread count.
///
/// While packets are read (`phase` 0), a flow is placed at the packet time at
/// which its end became certain: its deadline (idle timeout, or the linger
/// after FIN/RST) when it times out, or the capture clock when a new SYN
/// reuses its tuple or it is evicted. At the end of input (`phase` 1) the
/// remaining flows follow in order of their close (else last packet) time.
/// Ties go by flow id. A shard that has processed the capture up to clock
/// `t` never again produces a phase-0 key below `t`, so records below the
/// slowest shard's clock can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    pub phase: u8,
    pub ts: i64,
    pub flow_id: u64,
}

impl OrderKey {
    /// Below every key.
    pub const MIN: OrderKey = OrderKey { phase: 0, ts: i64::MIN, flow_id: 0 };
    /// Above every key.
    pub const MAX: OrderKey = OrderKey { phase: u8::MAX, ts: i64::MAX, flow_id: u64::MAX };

    /// The lowest key a flow that ends at clock `ts` or later while packets
    /// are read can have.
    pub fn at(ts: i64) -> OrderKey {
        OrderKey { phase: 0, ts, flow_id: 0 }
    }
}

/// Table counters for the stats record.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TableStats {
    pub flows_created: u64,
    pub flows_ended: u64,
    pub flows_evicted: u64,
    pub flows_timed_out: u64,
    pub flows_active_max: u64,
    pub tls_flows: u64,
    pub quic_flows: u64,
    pub not_tls_flows: u64,
    pub midstream_flows: u64,
    pub udp_packets_ignored: u64,
    pub reassembly_retransmitted_bytes: u64,
    pub reassembly_gaps: u64,
    pub reassembly_gap_bytes: u64,
    pub reassembly_overflows: u64,
    pub reassembly_out_of_order: u64,
    pub tls_handshake_overflows: u64,
    /// QUIC Initial packets that did not decrypt (sum over connections).
    pub quic_undecryptable: u64,
    pub heap_bytes_max: u64,
    /// Flows whose handshake needed nothing more: later packets only counted.
    pub bypassed_flows: u64,
    pub bypassed_packets: u64,
    /// Flows whose buffers were dropped because all flows together held
    /// `max_buffer_bytes` (their handshake parse stops there).
    pub buffer_budget_drops: u64,
    /// Packets on the tuple of a recently closed flow (not a new SYN), dropped.
    pub late_packets_after_close: u64,
}

pub struct FlowTable {
    lim: Limits,
    /// Open addressing with prefetch for batches ([`crate::flowmap`]).
    map: FlowMap,
    /// (deadline, key) entries; stale ones are re-checked when popped.
    timers: BinaryHeap<Reverse<(i64, u64, FlowKey)>>,
    pub stats: TableStats,
    events: Vec<TlsEvent>,
    /// Bytes currently held in per-flow buffers.
    heap_bytes: usize,
    /// The capture clock of the last [`FlowTable::expire`].
    clock: i64,
    /// Tuples of flows written after FIN/RST, until when they are remembered
    /// (at most `max_flows`, oldest forgotten first).
    closed: HashMap<FlowKey, i64, ahash::RandomState>,
    closed_order: VecDeque<(i64, FlowKey)>,
}

/// Deterministic flow id from the key and start time (51 bits, so JSON
/// consumers that read numbers as doubles keep every digit).
fn flow_id(key: &FlowKey, ts: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    // FNV-1a over a stable encoding; std's SipHash keys are random per process.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut h);
    ts.hash(&mut h);
    h.finish() & ((1u64 << 51) - 1)
}

impl FlowTable {
    pub fn new(lim: Limits) -> Self {
        Self::with_hasher(lim, ahash::RandomState::new())
    }

    /// A table whose [`FlowTable::hash`] is `hasher`'s (see [`FlowMap::with_hasher`]).
    pub fn with_hasher(lim: Limits, hasher: ahash::RandomState) -> Self {
        FlowTable {
            lim,
            map: FlowMap::with_hasher(hasher),
            timers: BinaryHeap::new(),
            stats: TableStats::default(),
            events: Vec::new(),
            heap_bytes: 0,
            clock: i64::MIN,
            closed: HashMap::default(),
            closed_order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Expire flows whose deadline is at or before `now`.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Ended>) {
        self.clock = self.clock.max(now);
        while let Some(&(until, key)) = self.closed_order.front() {
            if until > now {
                break;
            }
            self.closed_order.pop_front();
            if self.closed.get(&key) == Some(&until) {
                self.closed.remove(&key);
            }
        }
        while let Some(Reverse((deadline, _, key))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let hash = self.map.hash(&key);
            let Some(flow) = self.map.get(hash, &key) else { continue };
            let actual = flow.deadline(&self.lim);
            if actual > now {
                self.timers.push(Reverse((actual, flow.flow_id, key)));
                continue;
            }
            if let Some(flow) = self.map.remove(hash, &key) {
                let (close, end) = match flow.close {
                    Some(c) => (c, flow.close_ts.unwrap_or(flow.last_ts)),
                    None => {
                        self.stats.flows_timed_out += 1;
                        (CloseKind::Timeout, actual)
                    }
                };
                let order = OrderKey { phase: 0, ts: actual, flow_id: flow.flow_id };
                self.finish(flow, close, end, order, out);
            }
        }
    }

    /// End every flow (end of capture or shutdown), in deadline order.
    pub fn drain(&mut self, kind: CloseKind, out: &mut Vec<Ended>) {
        let mut flows: Vec<Box<Flow>> = self.map.drain();
        self.timers.clear();
        flows.sort_by_key(|f| (f.close_ts.unwrap_or(f.last_ts), f.flow_id));
        for f in flows {
            let (close, end) = match f.close {
                Some(c) => (c, f.close_ts.unwrap_or(f.last_ts)),
                None => (kind, f.last_ts),
            };
            let order = OrderKey { phase: 1, ts: f.close_ts.unwrap_or(f.last_ts), flow_id: f.flow_id };
            self.finish(f, close, end, order, out);
        }
    }

    fn finish(&mut self, mut flow: Box<Flow>, close: CloseKind, end_ts: i64, order: OrderKey, out: &mut Vec<Ended>) {
        self.heap_bytes = self.heap_bytes.saturating_sub(flow.heap_bytes());
        // Deliver whatever the reassemblers still hold (holes become gaps).
        for dir in [Dir::Client, Dir::Server] {
            Self::flush_dir(&mut flow, dir, &mut self.events);
        }
        flow.session.apply(&mut self.events);
        if flow.proto == Proto::Unknown && flow.dirs.iter().any(|d| d.payload_bytes > 0) {
            // Payload, but never a TLS record: not TLS (a short plaintext exchange).
            flow.proto = Proto::NotTls;
        }
        self.account(&flow);
        self.stats.flows_ended += 1;
        if let (Some(CloseKind::Fin | CloseKind::Rst), Some(t)) = (flow.close, flow.close_ts) {
            if self.closed.len() >= self.lim.max_flows {
                if let Some((until, key)) = self.closed_order.pop_front() {
                    if self.closed.get(&key) == Some(&until) {
                        self.closed.remove(&key);
                    }
                }
            }
            let until = t.saturating_add(self.lim.closed_memory_ns);
            self.closed.insert(flow.key, until);
            self.closed_order.push_back((until, flow.key));
        }
        out.push(Ended { flow, close, end_ts, order });
    }

    fn account(&mut self, flow: &Flow) {
        for r in &flow.reasm {
            let c = r.counters;
            self.stats.reassembly_retransmitted_bytes += c.retransmitted_bytes;
            self.stats.reassembly_gaps += c.gaps;
            self.stats.reassembly_gap_bytes += c.gap_bytes;
            self.stats.reassembly_overflows += c.overflows;
            self.stats.reassembly_out_of_order += c.out_of_order;
        }
        self.stats.tls_handshake_overflows += u64::from(flow.session.overflows);
        if let Some(q) = &flow.quic {
            self.stats.quic_undecryptable += q.undecryptable;
        }
        match flow.proto {
            Proto::Tls => self.stats.tls_flows += 1,
            Proto::Quic => self.stats.quic_flows += 1,
            Proto::NotTls => self.stats.not_tls_flows += 1,
            Proto::Unknown => {}
        }
        if flow.midstream {
            self.stats.midstream_flows += 1;
        }
    }

    fn flush_dir(flow: &mut Flow, dir: Dir, events: &mut Vec<TlsEvent>) {
        let ts = flow.last_ts;
        let Flow { reasm, session, proto, probes, started, .. } = flow;
        if *proto != Proto::Tls {
            reasm[dir.idx()].release();
            return;
        }
        let mut sink = Sink { session, proto, probes, started, max_probes: u8::MAX, dir, ts, events };
        reasm[dir.idx()].flush(&mut |c| sink.chunk(c));
    }

    /// The hash of a flow key in this table (see [`FlowTable::packet_hashed`]).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.map.hash(key)
    }

    /// Start loading the map slot of a key's hash (first stage of a batch).
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u64) {
        self.map.prefetch_slot(hash);
    }

    /// Start loading the flow a key's hash leads to (second stage of a batch).
    #[inline(always)]
    pub fn prefetch_flow(&self, hash: u64) {
        self.map.prefetch_flow(hash);
    }

    /// Process one decoded TCP or UDP packet.
    pub fn packet(&mut self, d: &Decoded<'_>, ts: i64, wire_len: u32, source: usize, out: &mut Vec<Ended>) {
        let key = FlowKey::new(d);
        let hash = self.map.hash(&key);
        self.packet_hashed(d, &key, hash, ts, wire_len, source, out);
    }

    /// [`FlowTable::packet`] with the flow key and its [`FlowTable::hash`]
    /// already computed.
    #[allow(clippy::too_many_arguments)]
    pub fn packet_hashed(&mut self, d: &Decoded<'_>, key: &FlowKey, hash: u64, ts: i64, wire_len: u32, source: usize, out: &mut Vec<Ended>) {
        let key = *key;
        let Some(tcp) = d.tcp else {
            self.udp(d, key, hash, ts, wire_len, source, out);
            return;
        };
        let syn_only = tcp.has(TcpInfo::SYN) && !tcp.has(TcpInfo::ACK);
        // One lookup for a packet of a tracked flow (the common case), and
        // for most of them nothing more: early bypass is a lookup, counters
        // and the close state only, for a flow that is done, and for a
        // packet that cannot change anything: no SYN, nothing held out of
        // order in the other direction (which this packet's ACK could
        // release), and no payload, or payload that its direction's parser
        // no longer reads.
        let known = match self.map.get_mut(hash, &key) {
            Some(flow) if !(flow.close.is_some() && syn_only) => {
                let dir = Self::count(flow, &key, d, ts, wire_len);
                if flow.bypass || (!tcp.has(TcpInfo::SYN) && flow.quiet[dir.idx()][usize::from(!d.payload.is_empty())]) {
                    self.stats.bypassed_packets += 1;
                    Self::close_state(flow, dir, tcp, ts, &self.lim, &key, &mut self.timers);
                    return;
                }
                true
            }
            _ => false,
        };
        if !known {
            // A new SYN on a closed flow's tuple is a new connection (port reuse).
            if let Some(old) = self.map.remove(hash, &key) {
                let end = old.close_ts.unwrap_or(old.last_ts);
                let close = old.close.unwrap_or(CloseKind::Fin);
                let order = OrderKey { phase: 0, ts: self.clock, flow_id: old.flow_id };
                self.finish(old, close, end, order, out);
            }
            if !syn_only && self.closed.get(&key).is_some_and(|&until| ts < until) {
                self.stats.late_packets_after_close += 1;
                return;
            }
            if self.map.len() >= self.lim.max_flows {
                self.evict_one(out);
            }
            let lo_sent = from_lo(&key, d);
            let synack = tcp.has(TcpInfo::SYN) && tcp.has(TcpInfo::ACK);
            // Who is the client: SYN sender, SYN-ACK receiver, ClientHello
            // sender, else the lower port is the server, else the first sender.
            let (client_is_lo, roles_known) = if syn_only {
                (lo_sent, true)
            } else if synack {
                (!lo_sent, true)
            } else if looks_like_client_hello(d.payload) {
                (lo_sent, true)
            } else if d.sport != d.dport && (d.sport < 1024) != (d.dport < 1024) {
                (if lo_sent { d.dport < 1024 } else { d.sport < 1024 }, false)
            } else {
                (lo_sent, false)
            };
            let mut flow = Flow::new(key, ts, source, client_is_lo, Proto::Unknown);
            flow.vlans = d.vlans;
            flow.roles_known = roles_known;
            flow.midstream = !syn_only;
            Self::count(&mut flow, &key, d, ts, wire_len);
            self.stats.flows_created += 1;
            self.timers.push(Reverse((ts + self.lim.new_timeout_ns, flow.flow_id, key)));
            self.map.insert(hash, flow);
            self.stats.flows_active_max = self.stats.flows_active_max.max(self.map.len() as u64);
        }
        let lim = self.lim;
        let Some(flow) = self.map.get_mut(hash, &key) else { return };
        let dir = if from_lo(&key, d) == flow.client_is_lo { Dir::Client } else { Dir::Server };
        let heap_before = flow.heap_bytes();
        if tcp.has(TcpInfo::SYN) {
            flow.dirs[dir.idx()].syn = true;
            if tcp.has(TcpInfo::ACK) {
                flow.synack = true;
                if dir == Dir::Server && flow.wire.synack_ttl == 0 {
                    let syn_ts = (!flow.midstream && flow.dirs[Dir::Client.idx()].syn).then_some(flow.first_ts);
                    flow.wire.synack(d, tcp.window, syn_ts, ts);
                }
            }
            flow.reasm[dir.idx()].sync(tcp.seq.wrapping_add(1));
        }
        if dir == Dir::Server && flow.wire.data_ttl == 0 && !d.payload.is_empty() {
            flow.wire.data_ttl = d.ttl.max(1);
        }
        // Keep parsing while a closed flow lingers: a certificate or an alert
        // can still arrive after the first RST, and it is the evidence.
        Self::stream(flow, dir, tcp, d.payload, ts, &lim, &mut self.events);
        flow.session.apply(&mut self.events);
        Self::close_state(flow, dir, tcp, ts, &lim, &key, &mut self.timers);
        let mut heap_after = flow.heap_bytes();
        if self.heap_bytes + heap_after > lim.max_buffer_bytes + heap_before && heap_after > heap_before {
            // Over the shared budget: this flow, the one asking for more,
            // gives up its buffers and its handshake parse (counted; its
            // record says so in `anomalies`).
            for r in &mut flow.reasm {
                r.release();
            }
            flow.session.parser.kill(Dir::Client);
            flow.session.parser.kill(Dir::Server);
            if !flow.budget_dropped {
                flow.budget_dropped = true;
                flow.session.note_anomaly("buffer_budget_exhausted");
                self.stats.buffer_budget_drops += 1;
            }
            heap_after = flow.heap_bytes();
        }
        self.heap_bytes = (self.heap_bytes + heap_after).saturating_sub(heap_before);
        self.stats.heap_bytes_max = self.stats.heap_bytes_max.max(self.heap_bytes as u64);
        let done = match flow.proto {
            Proto::NotTls => true,
            Proto::Tls => !flow.session.wants_bytes(Dir::Client) && !flow.session.wants_bytes(Dir::Server),
            Proto::Unknown | Proto::Quic => false,
        };
        if done && heap_after == 0 {
            flow.bypass = true;
            self.stats.bypassed_flows += 1;
        }
        flow.refresh_quiet();
    }

    /// Count one packet on its flow; returns the direction it travelled.
    #[inline(always)]
    fn count(flow: &mut Flow, key: &FlowKey, d: &Decoded<'_>, ts: i64, wire_len: u32) -> Dir {
        let dir = if from_lo(key, d) == flow.client_is_lo { Dir::Client } else { Dir::Server };
        flow.last_ts = flow.last_ts.max(ts);
        let c = &mut flow.dirs[dir.idx()];
        c.pkts += 1;
        c.bytes += u64::from(wire_len);
        c.payload_bytes += d.payload.len() as u64;
        dir
    }

    /// FIN/RST bookkeeping of one packet.
    fn close_state(flow: &mut Flow, dir: Dir, tcp: TcpInfo, ts: i64, lim: &Limits, key: &FlowKey, timers: &mut BinaryHeap<Reverse<(i64, u64, FlowKey)>>) {
        let c = &mut flow.dirs[dir.idx()];
        if tcp.has(TcpInfo::RST) || tcp.has(TcpInfo::FIN) {
            c.close_ts.get_or_insert(ts);
        }
        let was_open = flow.close.is_none();
        if tcp.has(TcpInfo::RST) {
            c.rst = true;
            if flow.close.is_none() {
                flow.close = Some(CloseKind::Rst);
                flow.close_ts = Some(ts);
            }
        } else if tcp.has(TcpInfo::FIN) {
            c.fin = true;
            if flow.close.is_none() && flow.dirs[0].fin && flow.dirs[1].fin {
                flow.close = Some(CloseKind::Fin);
                flow.close_ts = Some(ts);
            }
        }
        if was_open && flow.close.is_some() {
            // Closing brings the deadline forward to the linger's end; the
            // flow must leave at that time, not at its old idle deadline.
            timers.push(Reverse((flow.deadline(lim), flow.flow_id, *key)));
        }
    }

    fn stream(flow: &mut Flow, dir: Dir, tcp: TcpInfo, payload: &[u8], ts: i64, lim: &Limits, events: &mut Vec<TlsEvent>) {
        if flow.proto == Proto::NotTls {
            return;
        }
        // The peer's ACK tells us holes in the other direction are final.
        if tcp.has(TcpInfo::ACK) {
            let other = match dir {
                Dir::Client => Dir::Server,
                Dir::Server => Dir::Client,
            };
            let fin = flow.dirs[other.idx()].fin;
            let Flow { reasm, session, proto, probes, started, .. } = flow;
            let wants = *proto != Proto::Tls || session.wants_bytes(other);
            let mut sink = Sink { session, proto, probes, started, max_probes: lim.probe_segments, dir: other, ts, events };
            reasm[other.idx()].acked(tcp.ack, &mut |c| sink.chunk(c));
            // Bytes the peer acknowledged that the capture never had: a
            // trailing hole (a lost last segment, e.g. a client's Finished).
            if wants {
                reasm[other.idx()].acked_tail(tcp.ack, fin, &mut |c| sink.chunk(c));
            }
        }
        if payload.is_empty() {
            return;
        }
        if flow.proto == Proto::Unknown
            && !flow.roles_known
            && dir == Dir::Server
            && looks_like_client_hello(payload)
        {
            // We guessed the roles of a mid-stream flow wrong: the
            // ClientHello sender is the client.
            flow.client_is_lo = !flow.client_is_lo;
            flow.dirs.swap(0, 1);
            flow.reasm.swap(0, 1);
            flow.roles_known = true;
            // What was taken for the server's was the client's.
            flow.wire = ServerWire::default();
            return Self::stream(flow, Dir::Client, tcp, payload, ts, lim, events);
        }
        if flow.proto == Proto::Tls && !flow.session.wants_bytes(dir) {
            flow.reasm[dir.idx()].release();
            return;
        }
        let Flow { reasm, session, proto, probes, started, .. } = flow;
        let r = &mut reasm[dir.idx()];
        // Data on a SYN (TCP Fast Open) starts after the SYN's sequence number.
        let seq = if tcp.has(TcpInfo::SYN) { tcp.seq.wrapping_add(1) } else { tcp.seq };
        r.sync(seq);
        let mut sink = Sink { session, proto, probes, started, max_probes: lim.probe_segments, dir, ts, events };
        r.segment(seq, payload, &lim.reassembly, &mut |c| sink.chunk(c));
        if *proto == Proto::NotTls {
            reasm[0].release();
            reasm[1].release();
        }
    }

    /// A UDP datagram: QUIC flows start at a client Initial (content, not
    /// port, decides); every other UDP datagram is only counted.
    #[allow(clippy::too_many_arguments)]
    fn udp(&mut self, d: &Decoded<'_>, key: FlowKey, hash: u64, ts: i64, wire_len: u32, source: usize, out: &mut Vec<Ended>) {
        if !self.map.contains(hash, &key) {
            if !looks_like_quic_initial(d.payload) && !looks_like_gquic(d.payload) {
                self.stats.udp_packets_ignored += 1;
                return;
            }
            if self.map.len() >= self.lim.max_flows {
                self.evict_one(out);
            }
            let mut flow = Flow::new(key, ts, source, from_lo(&key, d), Proto::Quic);
            flow.vlans = d.vlans;
            flow.roles_known = true;
            flow.quic = Some(Box::default());
            self.stats.flows_created += 1;
            self.timers.push(Reverse((ts + self.lim.new_timeout_ns, flow.flow_id, key)));
            self.map.insert(hash, flow);
            self.stats.flows_active_max = self.stats.flows_active_max.max(self.map.len() as u64);
        }
        let Some(flow) = self.map.get_mut(hash, &key) else { return };
        let heap_before = flow.heap_bytes();
        let from_client = from_lo(&key, d) == flow.client_is_lo;
        let dir = if from_client { Dir::Client } else { Dir::Server };
        flow.last_ts = flow.last_ts.max(ts);
        let c = &mut flow.dirs[dir.idx()];
        c.pkts += 1;
        c.bytes += u64::from(wire_len);
        c.payload_bytes += d.payload.len() as u64;
        if let Some(q) = flow.quic.as_mut() {
            q.datagram(from_client, d.payload, ts);
        }
        let heap_after = flow.heap_bytes();
        self.heap_bytes = (self.heap_bytes + heap_after).saturating_sub(heap_before);
        self.stats.heap_bytes_max = self.stats.heap_bytes_max.max(self.heap_bytes as u64);
    }

    fn evict_one(&mut self, out: &mut Vec<Ended>) {
        while let Some(Reverse((_, _, key))) = self.timers.pop() {
            let hash = self.map.hash(&key);
            if let Some(flow) = self.map.remove(hash, &key) {
                self.stats.flows_evicted += 1;
                let end = flow.last_ts;
                let order = OrderKey { phase: 0, ts: self.clock, flow_id: flow.flow_id };
                self.finish(flow, CloseKind::Evicted, end, order, out);
                return;
            }
        }
    }

    /// Bytes currently held in per-flow buffers.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }
}

/// Receives one direction's in-order bytes and decides, by content, where
/// TLS starts: a direction is fed to the parser from the first chunk that
/// begins a captured segment and looks like a TLS record (so STARTTLS
/// preambles and mid-stream starts are skipped); a flow whose first
/// `max_probes` segment starts are not TLS is written off as not TLS.
struct Sink<'a> {
    session: &'a mut TlsSession,
    proto: &'a mut Proto,
    probes: &'a mut u8,
    started: &'a mut [bool; 2],
    max_probes: u8,
    dir: Dir,
    ts: i64,
    events: &'a mut Vec<TlsEvent>,
}

impl Sink<'_> {
    fn chunk(&mut self, c: Chunk<'_>) {
        let d = self.dir.idx();
        match c {
            Chunk::Data { bytes, segment_start } => {
                if !self.started[d] {
                    if !segment_start || *self.proto == Proto::NotTls {
                        return;
                    }
                    // A PROXY protocol v1 line (HAProxy) may share the
                    // segment with the ClientHello.
                    let bytes = match bytes.strip_prefix(b"PROXY ".as_slice()) {
                        Some(rest) => match rest.windows(2).position(|w| w == b"\r\n") {
                            Some(i) if i < 108 => &rest[i + 2..],
                            _ => bytes,
                        },
                        None => bytes,
                    };
                    if bytes.is_empty() {
                        return;
                    }
                    if !looks_like_tls(bytes) {
                        self.session.note_preamble(self.dir, bytes);
                        if *self.proto == Proto::Unknown {
                            *self.probes += 1;
                            if *self.probes >= self.max_probes {
                                *self.proto = Proto::NotTls;
                            }
                        }
                        return;
                    }
                    self.started[d] = true;
                    *self.proto = Proto::Tls;
                }
                if self.session.wants_bytes(self.dir) {
                    self.session.parser.feed(self.dir, bytes, self.ts, self.events);
                }
            }
            Chunk::Gap(n) => {
                // Counted before TLS starts too: a lost first segment (the
                // ServerHello) is the hole that matters most.
                if *self.proto != Proto::NotTls {
                    if self.session.gap_bytes[d] == 0 {
                        self.session.gap_at[d] = u8::try_from(self.session.record_log.len()).unwrap_or(u8::MAX);
                    }
                    self.session.gap_bytes[d] += u64::from(n);
                }
                if self.started[d] {
                    self.session.parser.gap(self.dir, u64::from(n));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh flow with this key (for the map's tests).
    pub(crate) fn flow_with_key(key: FlowKey) -> Box<Flow> {
        Flow::new(key, 0, 0, true, Proto::Unknown)
    }

    #[test]
    fn endpoint_order_matches_the_derived_one() {
        let ips: [IpAddr; 5] = [
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ];
        for a in ips {
            for b in ips {
                for (pa, pb) in [(1u16, 2u16), (2, 1), (443, 443)] {
                    assert_eq!(endpoint_le((a, pa), (b, pb)), (a, pa) <= (b, pb), "{a}:{pa} {b}:{pb}");
                }
            }
        }
    }
}
#[cfg(test)]
mod size {
    /// A flow is one allocation of `size_of::<Flow>()` bytes, which the
    /// allocator (mimalloc) rounds up to its next size class: 1,024 bytes
    /// up to 1,024, then 1,280. At 1,088 bytes every flow wasted 192; keep
    /// rare fields boxed (`TlsSession::hello_retry`, `connect`).
    #[test]
    fn a_flow_fits_in_1024_bytes() {
        assert!(std::mem::size_of::<super::Flow>() <= 1024, "Flow is {} bytes", std::mem::size_of::<super::Flow>());
    }
}
