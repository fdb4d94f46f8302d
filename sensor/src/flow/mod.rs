//! The flow table: bidirectional TCP flows keyed on the 5-tuple plus VLAN and
//! tunnel context, TCP state from SYN/SYN-ACK/FIN/RST, idle timeouts driven by
//! packet time, a cap on tracked flows, and the TLS session of each flow.
//!
//! Time is only ever the packet timestamp passed in, so a replay is
//! deterministic. Memory is bounded by [`Limits`]: flows beyond `max_flows`
//! evict the flow closest to its timeout (counted; per partition of the
//! flow key, see [`PARTITIONS`], so that N threads evict as one does), and
//! per-flow buffers are capped by the reassembler and the TLS parser.

pub mod certs;
pub mod decision;
pub mod key;
pub mod map;
pub mod offload;
pub mod openvpn_tcp;
pub mod proxy_protocol;
pub mod quic_session;
pub mod reassembly;
pub mod session;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;

use pinwatch_parsers::decode::{Decoded, TcpInfo};
use pinwatch_parsers::quic::gquic::looks_like_gquic;
use pinwatch_parsers::quic::looks_like_quic_initial;
use pinwatch_parsers::tls::{looks_like_client_hello, looks_like_tls, may_start_tls, Dir, TlsEvent};

use crate::flow::reassembly::{Chunk, Reassembler};
use key::from_lo;
pub use key::FlowKey;
use map::{FlowMap, Keyed};

use crate::flow::quic_session::QuicSession;
use crate::flow::session::TlsSession;

const NS: i64 = 1_000_000_000;

/// Table limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most flows tracked at once (`--max-flows`), shared out over the
    /// partitions.
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
    /// Per-direction reassembly caps.
    pub reassembly: reassembly::Limits,
    /// Bytes all flows together may hold in reassembly and handshake buffers.
    pub max_buffer_bytes: usize,
    /// A session still open this long after its first ClientHello (packet
    /// time) is reported with what is known then (`thresholds.decision_timeout_s`,
    /// [`decision`]); 0 reports every session at its flow's end only.
    pub decision_timeout_ns: i64,
}

/// Partitions the flow cap, the buffer budget and the memory of closed
/// tuples are split in (fewer when `max_flows` is smaller). A flow's
/// partition is a fixed function of its key ([`partition`]), and a thread
/// owns whole partitions, so each cap is enforced where the partition's
/// flows are and the same flows are evicted, and when, whatever the thread
/// count (`tests/tests/threads.rs`).
pub const PARTITIONS: usize = 64;

impl Limits {
    /// Partitions in use: [`PARTITIONS`], or `max_flows` if fewer.
    pub fn partitions(&self) -> usize {
        PARTITIONS.min(self.max_flows.max(1))
    }

    /// Flows partition `p` may hold: `max_flows` shared out, the
    /// remainder to the first ones (at least one each).
    pub fn flows_in_partition(&self, p: usize) -> usize {
        let n = self.partitions();
        (self.max_flows / n + usize::from(p < self.max_flows % n)).max(1)
    }

    /// Buffer bytes the flows of one partition may hold together.
    pub fn buffer_bytes_in_partition(&self) -> usize {
        self.max_buffer_bytes / self.partitions()
    }
}

/// The partition of a flow key, out of `parts`: a fixed mix of the key (the
/// same in every run, so that replays are identical; unlike the flow map's
/// keyed hash, crafted tuples can aim at one partition, which buys an
/// attacker evictions with 1/64 of the flows a full table needs, and the
/// work of one thread).
#[inline]
pub fn partition(key: &FlowKey, parts: usize) -> usize {
    #[inline(always)]
    fn fold(ip: IpAddr) -> u64 {
        match ip {
            IpAddr::V4(v) => u64::from(u32::from(v)),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64).rotate_left(29)
            }
        }
    }
    let ports = (u64::from(key.lo.1) << 16) | u64::from(key.hi.1);
    let mut h = fold(key.lo.0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ fold(key.hi.0).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ ports.wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ key.context.wrapping_mul(0x27d4_eb2f_1656_67c5)
        ^ u64::from(key.proto);
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (((h >> 32) * parts as u64) >> 32) as usize
}

/// Timer entries: (deadline, flow id, key).
type Timer = Reverse<(i64, u64, FlowKey)>;

/// Flow deadlines, in one heap for expiry and mirrored in one heap per
/// partition for eviction (the flow of a full partition nearest its
/// timeout). A partition heap holds a subset of the main heap's entries:
/// an entry popped from the main one is popped from its partition's when it
/// is on top there, and an eviction pops from the partition heap only.
struct Timers {
    all: BinaryHeap<Timer>,
    parts: Vec<BinaryHeap<Timer>>,
}

impl Timers {
    fn new(parts: usize) -> Self {
        Timers { all: BinaryHeap::new(), parts: (0..parts).map(|_| BinaryHeap::new()).collect() }
    }

    #[inline]
    fn push(&mut self, part: usize, t: (i64, u64, FlowKey)) {
        self.all.push(Reverse(t));
        if let Some(h) = self.parts.get_mut(part) {
            h.push(Reverse(t));
        }
    }

    /// Pop the main heap's first entry (and its copy on top of its partition's heap).
    fn pop(&mut self, parts: usize) -> Option<(i64, u64, FlowKey)> {
        let Reverse(t) = self.all.pop()?;
        if let Some(h) = self.parts.get_mut(partition(&t.2, parts)) {
            if h.peek() == Some(&Reverse(t)) {
                h.pop();
            }
        }
        Some(t)
    }

    /// A timer that only wakes the flow (a verdict due,
    /// [`decision`]): in the main heap only, so that eviction, which
    /// reads the partition heaps, still picks the flow nearest its timeout.
    fn push_wake(&mut self, t: (i64, u64, FlowKey)) {
        self.all.push(Reverse(t));
    }

    fn clear(&mut self) {
        self.all.clear();
        for h in &mut self.parts {
            h.clear();
        }
    }
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
            decision_timeout_ns: 10 * NS,
        }
    }
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseKind {
    /// `fin`: both sides sent a FIN.
    Fin,
    /// `rst`: either side sent a RST.
    Rst,
    /// `timeout`: idle past its timeout.
    Timeout,
    /// `eof`: the capture ended with the flow open.
    Eof,
    /// `evicted`: ended to make room in a full flow table.
    Evicted,
    /// `shutdown`: a live capture stopped with the flow open.
    Shutdown,
    /// Not ended: a session reported while its flow is still open (at its
    /// verdict, [`decision`]); its `flow` record says how it ended.
    Open,
}

/// Is the flow TLS, not TLS, or still undecided?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Not decided yet: no payload has shown whether it is TLS.
    Unknown,
    /// TLS was found in its bytes (on any port).
    Tls,
    /// Payload that never started a TLS record: written off as not TLS.
    NotTls,
    /// A UDP flow that began with a QUIC client Initial.
    Quic,
}

/// Counters of one direction of a flow.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirCounters {
    /// Time of this side's first FIN or RST.
    pub close_ts: Option<i64>,
    /// Packets sent by this side.
    pub pkts: u64,
    /// Their bytes on the wire (the captured packets' original lengths).
    pub bytes: u64,
    /// Their transport payload bytes.
    pub payload_bytes: u64,
    /// This side sent a FIN.
    pub fin: bool,
    /// This side sent a RST.
    pub rst: bool,
    /// This side sent a SYN (or a SYN-ACK).
    pub syn: bool,
    /// The sequence number just past this side's first FIN (its ACK by
    /// the peer), once it sent one.
    pub fin_end: u32,
    /// This side's first close was a FIN that acknowledged the peer's FIN:
    /// it answered a close, whatever the capture's time stamps say (two
    /// capture sockets stamp a host's own packets apart by microseconds).
    pub fin_answers: bool,
}

/// [`Flow`]'s `quiet` bit: a packet without payload changes nothing.
const QUIET_EMPTY: u8 = 1;
/// [`Flow`]'s `quiet` bit: a packet with payload changes nothing.
const QUIET_PAYLOAD: u8 = 2;
/// A flow is handed to the kernel ([`offload`]) from this many packets on,
/// checked on every packet that goes through the parsers and on every
/// this-many-th quiet one. (On `pcaps/testbed-benign.pcap`, whose sessions
/// are short, handing over every settled flow cost more in system calls
/// than the kernel saved: README, Live capture.)
const OFFLOAD_MIN_PACKETS: u64 = 64;
/// [`Flow::offloaded`]: both directions' drop-all entries.
const OFFLOADED_ALL: u8 = 0b1010;
/// [`Flow`]'s `quiet` bit: the direction's parser still reads bytes.
const WATCH_TAIL: u8 = 4;

/// One tracked flow.
#[derive(Debug)]
#[repr(C)]
pub struct Flow {
    // The fields a packet of a bypassed or quiet flow touches come first, so
    // that such a packet reads two or three cache lines of its flow, not
    // six scattered ones (`repr(C)` keeps this order).
    /// [client, server]
    pub dirs: [DirCounters; 2],
    /// Time of the latest packet, ns since the Unix epoch.
    pub last_ts: i64,
    /// When the flow closed: the first RST, or the FIN that completed both
    /// sides' FINs.
    pub close_ts: Option<i64>,
    /// Deterministic id (51 bits) from the key and the first packet's time:
    /// EVE `flow_id`.
    pub flow_id: u64,
    /// True when the client is the `lo` endpoint of the key.
    pub client_is_lo: bool,
    /// Nothing more is read from this flow's bytes (its handshake parse is
    /// over in both directions, or it is not TLS): later packets only move
    /// counters, close state and time.
    pub bypass: bool,
    /// The kernel entries of this flow ([`offload`]; bits 0 and 1: the
    /// client's drop-empty and drop-all, bits 2 and 3: the server's): what
    /// the kernel counted is added when the flow ends.
    pub offloaded: u8,
    /// How it closed ([`CloseKind::Rst`] or [`CloseKind::Fin`]), once it did.
    pub close: Option<CloseKind>,
    /// `quiet[dir]`, bits [`QUIET_EMPTY`], [`QUIET_PAYLOAD`]: a packet from
    /// `dir` (without SYN), without or with payload, cannot change anything
    /// but counters and close state; [`WATCH_TAIL`]: `dir`'s parser still
    /// reads bytes, so an ACK from the other side, or an empty segment from
    /// `dir`, beyond the bytes captured reveals a trailing hole even on a
    /// quiet packet. Worked out after every packet that went through the
    /// parsers (see [`Flow::refresh_quiet`]); bits, so a `Flow` stays small.
    quiet: [u8; 2],
    /// Whether it is TLS, QUIC, not TLS, or not known yet.
    pub proto: Proto,
    /// The flow's key.
    pub key: FlowKey,
    /// Time of the first packet, ns since the Unix epoch.
    pub first_ts: i64,
    /// Index of the capture source (u32: a `Flow` must fit in 1,024 bytes).
    pub source: u32,
    /// The VLAN ids of the flow's first packet (Suricata's `vlan`).
    pub vlans: pinwatch_parsers::decode::Vlans,
    /// Segment starts found not to be TLS so far; at
    /// [`Limits::probe_segments`] the flow is not TLS.
    pub probes: u8,
    /// Role of the endpoints is known from SYN/SYN-ACK or a ClientHello
    /// (beside the other small fields: `repr(C)` pads each run of them).
    pub roles_known: bool,
    /// TLS bytes are being fed for [client, server].
    pub started: [bool; 2],
    /// The first bytes of a direction too short yet to decide whether TLS
    /// starts there (see [`Head`]); `None` unless a stream came in tiny pieces.
    pub head: Option<Box<[Head; 2]>>,
    /// Reassembly of each direction, [client, server].
    pub reasm: [Reassembler; 2],
    /// The TLS session parsed from the flow's bytes.
    pub session: TlsSession,
    /// QUIC state, for UDP flows that began with a client Initial.
    pub quic: Option<Box<QuicSession>>,
    /// First segment seen mid-stream (no SYN from the client).
    pub midstream: bool,
    /// A SYN-ACK was seen.
    pub synack: bool,
    /// The shared buffer budget was exhausted while this flow asked for more.
    pub budget_dropped: bool,
    /// The session was reported while open ([`decision`]): its end
    /// writes a `flow` record.
    pub reported: bool,
    /// What the server side's packets say about where it is ([`ServerWire`]).
    pub wire: ServerWire,
    /// When this open session's record is due ([`decision::due`]),
    /// in ms after `first_ts` (rounded up; 4 bytes, which the padding after
    /// `wire` had room for); [`NO_VERDICT`] while nothing is scheduled.
    verdict_ms: u32,
}

/// [`Flow::verdict_ms`]: nothing scheduled.
const NO_VERDICT: u32 = u32::MAX;

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

impl Keyed for Flow {
    fn key(&self) -> &FlowKey {
        &self.key
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
            head: None,
            dirs: Default::default(),
            reasm: Default::default(),
            session: TlsSession::default(),
            quic: None,
            close: None,
            close_ts: None,
            midstream: false,
            synack: false,
            bypass: false,
            offloaded: 0,
            quiet: [0; 2],
            budget_dropped: false,
            wire: ServerWire::default(),
            reported: false,
            verdict_ms: NO_VERDICT,
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
            let wants = self.proto == Proto::Tls && self.session.wants_bytes(dir);
            let payload = empty && self.proto == Proto::Tls && !wants;
            let bit = |on: bool, b: u8| if on { b } else { 0 };
            self.quiet[dir.idx()] = bit(empty, QUIET_EMPTY) | bit(payload, QUIET_PAYLOAD) | bit(wants, WATCH_TAIL);
        }
    }

    /// What the kernel may drop of each direction `[client, server]`
    /// ([`offload`]): nothing before the verdict is settled (the parse is
    /// over, or the client sent data after the handshake); then all of a
    /// direction whose packets change nothing but counters, or only its
    /// packets without payload.
    fn kernel_modes(&self) -> [u8; 2] {
        if self.bypass {
            return [offload::DROP_ALL; 2];
        }
        if self.proto != Proto::Tls || !decision::client_data_after_handshake(&self.session) {
            return [0; 2];
        }
        self.quiet.map(|q| {
            if q & QUIET_EMPTY == 0 {
                0
            } else if q & QUIET_PAYLOAD != 0 {
                offload::DROP_ALL
            } else {
                offload::DROP_EMPTY
            }
        })
    }

    /// Whether a quiet packet from `dir` still reveals a trailing hole (see
    /// [`Reassembler::acked_tail`]): its ACK beyond the other direction's
    /// captured bytes, or, without payload, its own sequence number beyond
    /// `dir`'s.
    #[inline]
    fn reveals_tail(&self, dir: Dir, tcp: &TcpInfo, empty: bool) -> bool {
        let other = usize::from(dir == Dir::Client);
        let d = dir.idx();
        (self.quiet[other] & WATCH_TAIL != 0
            && tcp.has(TcpInfo::ACK)
            && self.reasm[other].tail_hole(tcp.ack, self.dirs[other].fin).is_some())
            || (empty
                && self.quiet[d] & WATCH_TAIL != 0
                && !tcp.has(TcpInfo::RST)
                && self.reasm[d].tail_hole(tcp.seq, self.dirs[d].fin).is_some())
    }

    /// When this open session's record is due; `i64::MAX` when unscheduled.
    pub fn verdict_due(&self) -> i64 {
        if self.verdict_ms == NO_VERDICT {
            i64::MAX
        } else {
            self.first_ts.saturating_add(i64::from(self.verdict_ms) * 1_000_000)
        }
    }

    /// Bring the record due at `due` (packet time) if that is sooner than
    /// scheduled; the new due time (whole ms after the flow's start) if so.
    fn lower_verdict_due(&mut self, due: i64) -> Option<i64> {
        if due == i64::MAX {
            return None;
        }
        let ms = due.saturating_sub(self.first_ts).max(0).saturating_add(999_999) / 1_000_000;
        let ms = u32::try_from(ms).unwrap_or(NO_VERDICT - 1).min(NO_VERDICT - 1);
        if ms >= self.verdict_ms {
            return None;
        }
        self.verdict_ms = ms;
        Some(self.verdict_due())
    }

    /// The client's address and port.
    pub fn client(&self) -> (IpAddr, u16) {
        if self.client_is_lo {
            self.key.lo
        } else {
            self.key.hi
        }
    }
    /// The server's address and port.
    pub fn server(&self) -> (IpAddr, u16) {
        if self.client_is_lo {
            self.key.hi
        } else {
            self.key.lo
        }
    }
    fn deadline(&self, lim: &Limits) -> i64 {
        if let Some(t) = self.close_ts {
            return t.saturating_add(lim.closed_linger_ns);
        }
        let payload = self.dirs[0].payload_bytes + self.dirs[1].payload_bytes;
        self.last_ts.saturating_add(if payload == 0 { lim.new_timeout_ns } else { lim.established_timeout_ns })
    }
    /// Heap bytes held by this flow's buffers.
    pub fn heap_bytes(&self) -> usize {
        self.reasm[0].heap_bytes()
            + self.reasm[1].heap_bytes()
            + self.session.parser.heap_bytes()
            + self.session.rare.as_ref().and_then(|r| r.openvpn.as_ref()).map_or(0, |o| o.heap_bytes())
            + self.quic.as_ref().map_or(0, |q| q.heap_bytes())
            + self.head.as_ref().map_or(0, |h| std::mem::size_of::<[Head; 2]>() + h[0].bytes.capacity() + h[1].bytes.capacity())
    }
}

/// What the lookup of a TCP packet's flow found ([`FlowTable::packet_hashed`]).
enum TcpLookup {
    /// A tracked flow, and the packet has been handled (early bypass).
    Done,
    /// A tracked flow that the packet may change.
    Known,
    /// No flow for the packet (or a closed one and a new SYN).
    Unknown,
}

/// Who is the client of a new TCP flow: the SYN sender, the SYN-ACK
/// receiver, the ClientHello sender, else the lower port is the server, else
/// the first sender. Returns (the client is the lower address of the key,
/// the roles are known rather than guessed).
#[inline]
fn tcp_roles(d: &Decoded<'_>, key: &FlowKey, tcp: TcpInfo, syn_only: bool) -> (bool, bool) {
    let lo_sent = from_lo(key, d);
    let synack = tcp.has(TcpInfo::SYN) && tcp.has(TcpInfo::ACK);
    if syn_only {
        (lo_sent, true)
    } else if synack {
        (!lo_sent, true)
    } else if looks_like_client_hello(d.payload) {
        (lo_sent, true)
    } else if d.sport != d.dport && (d.sport < 1024) != (d.dport < 1024) {
        (if lo_sent { d.dport < 1024 } else { d.sport < 1024 }, false)
    } else {
        (lo_sent, false)
    }
}

/// A flow that has ended, handed to the output stage.
#[derive(Debug)]
pub struct Ended {
    /// The flow, with everything parsed from it.
    pub flow: Box<Flow>,
    /// How it ended ([`CloseKind::Open`] for a session reported while open).
    pub close: CloseKind,
    /// When it ended, ns: its close (the RST, or the FIN that completed both
    /// sides'), else its idle deadline on a timeout, else its last packet.
    pub end_ts: i64,
    /// Where this record goes in the output (see [`OrderKey`]).
    pub order: OrderKey,
}

/// The output order of ended flows, the same whatever the thread count.
///
/// While packets are read (`phase` 0), a flow is placed at the packet time at
/// which its end became certain: its deadline (idle timeout, or the linger
/// after FIN/RST) when it times out (but not below the clock the table was
/// at before the clock move that ends it: a flow last touched by a packet
/// older than the clock), or the capture clock when a new SYN reuses its
/// tuple or it is evicted. At the end of input (`phase` 1) the
/// remaining flows follow in order of their close (else last packet) time.
/// Ties go by flow id. A shard that has processed the capture up to clock
/// `t` never again produces a phase-0 key below `t`, so records below the
/// slowest shard's clock can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    /// 0 while packets are read, 1 for flows ended at the end of input.
    pub phase: u8,
    /// Packet time the record is placed at, ns.
    pub ts: i64,
    /// The flow's id, to break ties.
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
    /// `flows_created`: flows started (TCP, or UDP that began with a QUIC
    /// or Google QUIC client Initial).
    pub flows_created: u64,
    /// `flows_ended`: flows ended, however.
    pub flows_ended: u64,
    /// `flows_evicted`: flows ended to make room in a full partition.
    pub flows_evicted: u64,
    /// `flows_timed_out`: flows that ended at their idle timeout without a
    /// FIN/RST close.
    pub flows_timed_out: u64,
    /// `flows_active_max`: most flows tracked at once.
    pub flows_active_max: u64,
    /// `tls_flows`: ended flows found to be TLS.
    pub tls_flows: u64,
    /// `quic_flows`: ended QUIC flows.
    pub quic_flows: u64,
    /// `not_tls_flows`: ended flows that carried payload but no TLS.
    pub not_tls_flows: u64,
    /// `midstream_flows`: ended flows whose first packet was not a bare SYN.
    pub midstream_flows: u64,
    /// `udp_packets_ignored`: UDP datagrams neither of a tracked flow nor a
    /// QUIC or Google QUIC client Initial.
    pub udp_packets_ignored: u64,
    /// `reassembly_retransmitted_bytes`: payload bytes received again after
    /// they were delivered (dropped).
    pub reassembly_retransmitted_bytes: u64,
    /// `reassembly_gaps`: TCP holes given up on.
    pub reassembly_gaps: u64,
    /// `reassembly_gap_bytes`: bytes lost in those holes.
    pub reassembly_gap_bytes: u64,
    /// `reassembly_overflows`: times an out-of-order buffer was full and its
    /// oldest hole was given up on.
    pub reassembly_overflows: u64,
    /// `reassembly_out_of_order`: segments that arrived ahead of the stream.
    pub reassembly_out_of_order: u64,
    /// Segments carrying other bytes than the copy already received of the
    /// same sequence numbers (an evasion attempt; the first copy is kept).
    pub reassembly_overlap_diff_data: u64,
    /// `tls_handshake_overflows`: handshake messages skipped for being over the
    /// parser's cap.
    pub tls_handshake_overflows: u64,
    /// QUIC Initial packets that did not decrypt (sum over connections).
    pub quic_undecryptable: u64,
    /// `heap_bytes_max`: high-water mark of bytes in all flows' buffers.
    pub heap_bytes_max: u64,
    /// Flows whose handshake needed nothing more: later packets only counted.
    pub bypassed_flows: u64,
    /// `bypassed_packets`: packets that only moved counters, close state and
    /// time (of bypassed flows, or that could change nothing else).
    pub bypassed_packets: u64,
    /// Flows whose buffers were dropped because all flows together held
    /// `max_buffer_bytes` (their handshake parse stops there).
    pub buffer_budget_drops: u64,
    /// Packets on the tuple of a recently closed flow (not a new SYN), dropped.
    pub late_packets_after_close: u64,
}

/// The flow table: tracks flows, feeds their bytes to the TLS and QUIC
/// parsers, and hands out the flows that end ([`Ended`]).
pub struct FlowTable {
    lim: Limits,
    /// Open addressing with prefetch for batches ([`crate::flow::map`]).
    map: FlowMap<Flow>,
    /// (deadline, key) entries; stale ones are re-checked when popped.
    timers: Timers,
    /// [`Limits::partitions`].
    parts: usize,
    /// Flows and buffer bytes per partition (see [`PARTITIONS`]).
    part_flows: Vec<usize>,
    part_bytes: Vec<usize>,
    /// Counters for the stats record.
    pub stats: TableStats,
    events: Vec<TlsEvent>,
    /// Bytes currently held in per-flow buffers.
    heap_bytes: usize,
    /// The capture clock of the last [`FlowTable::expire`].
    clock: i64,
    /// Open sessions whose verdict came due at the last [`FlowTable::expire`],
    /// with their place in the output ([`FlowTable::take_due`]).
    due: Vec<(FlowKey, OrderKey)>,
    /// The clock before the move an [`FlowTable::expire`] stopped early in,
    /// for the call that resumes it.
    resume_before: Option<i64>,
    /// Report open sessions at their verdict ([`decision`]); set by
    /// whoever takes [`FlowTable::take_due`] ([`FlowTable::report_open`]).
    report_open: bool,
    /// Tuples of flows written after FIN/RST, until when they are remembered
    /// (while both the packet time and the clock are before it; at most
    /// the partition's flow cap per partition, oldest forgotten first).
    closed: HashMap<FlowKey, i64, ahash::RandomState>,
    /// Per partition, in the order they were written.
    closed_order: Vec<VecDeque<(i64, FlowKey)>>,
    /// Kernel-side bypass (live capture only; see [`offload`]).
    offload: Option<Box<dyn offload::Offload>>,
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
    /// An empty table with these limits and a random hasher.
    pub fn new(lim: Limits) -> Self {
        Self::with_hasher(lim, ahash::RandomState::new())
    }

    /// A table whose [`FlowTable::hash`] is `hasher`'s (see [`FlowMap::with_hasher`]).
    pub fn with_hasher(lim: Limits, hasher: ahash::RandomState) -> Self {
        let parts = lim.partitions();
        FlowTable {
            lim,
            map: FlowMap::with_hasher(hasher),
            timers: Timers::new(parts),
            parts,
            part_flows: vec![0; parts],
            part_bytes: vec![0; parts],
            stats: TableStats::default(),
            events: Vec::new(),
            heap_bytes: 0,
            clock: i64::MIN,
            due: Vec::new(),
            resume_before: None,
            report_open: false,
            closed: HashMap::default(),
            closed_order: (0..parts).map(|_| VecDeque::new()).collect(),
            offload: None,
        }
    }

    /// Hand the TCP flows that have nothing left to read to the kernel
    /// (live capture with `--kernel-bypass`; see [`offload`]).
    pub fn set_offload(&mut self, offload: Box<dyn offload::Offload>) {
        self.offload = Some(offload);
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Flow partitions of this table ([`Limits::partitions`]).
    pub fn partitions(&self) -> usize {
        self.parts
    }

    /// No flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Expire flows whose deadline is at or before `now`.
    ///
    /// Returns `true` when it stopped early at an open session whose verdict
    /// came due and whose flow ends in the same move: the caller reports the
    /// due verdicts ([`FlowTable::take_due`]) and calls again with the same
    /// `now` until it returns `false`.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Ended>) -> bool {
        // The clock this table was advanced to before: records up to it may
        // be written already, so no key goes below it (see below).
        // (After an early stop, the clock before the move that stopped.)
        let before = self.resume_before.take().unwrap_or(self.clock);
        self.clock = self.clock.max(now);
        while let Some(Reverse((deadline, _, key))) = self.timers.all.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop(self.parts);
            let hash = self.map.hash(&key);
            let Some(flow) = self.map.get_mut(hash, &key) else { continue };
            if flow.offloaded != 0 && flow.close.is_none() {
                // Packets the kernel dropped for it are its activity too.
                if let Some(t) = self.offload.as_mut().and_then(|o| o.seen(&key, false)).and_then(|k| k.last_ts) {
                    flow.last_ts = flow.last_ts.max(t);
                }
            }
            let verdict_due = flow.verdict_due();
            let actual = flow.deadline(&self.lim);
            // (An unscheduled verdict reads `i64::MAX`, which a clock at the
            // end of time would otherwise reach.)
            if flow.verdict_ms != NO_VERDICT && verdict_due <= now {
                // Its verdict is due while it is open: reported by the
                // caller ([`FlowTable::take_due`]), placed like an end.
                flow.verdict_ms = NO_VERDICT;
                if flow.close.is_none() && !flow.reported {
                    self.due.push((key, OrderKey { phase: 0, ts: verdict_due.max(before), flow_id: flow.flow_id }));
                    if actual <= now {
                        // It also ends in this move: stop here so that the
                        // caller reports the verdict first, as it would
                        // have had the clock moved in smaller steps (with
                        // more flows, or with one thread), then expire
                        // again: the flow then ends as a reported one.
                        let id = flow.flow_id;
                        self.timers.push(partition(&key, self.parts), (actual, id, key));
                        self.resume_before = Some(before);
                        return true;
                    }
                }
            }
            if actual > now {
                let id = flow.flow_id;
                self.timers.push(partition(&key, self.parts), (actual, id, key));
                continue;
            }
            if let Some(flow) = self.map.remove(hash, &key) {
                self.forget(&key);
                let (close, end) = match flow.close {
                    Some(c) => (c, flow.close_ts.unwrap_or(flow.last_ts)),
                    None => {
                        self.stats.flows_timed_out += 1;
                        (CloseKind::Timeout, actual)
                    }
                };
                // A flow whose deadline was behind the clock when it was last
                // touched (a packet from before the clock: merged or
                // reordered files) ends at the next clock move, so its key
                // is the clock before that move, not its deadline: below
                // that, records may be written already, and where this one
                // would then land would depend on the thread count.
                let order = OrderKey { phase: 0, ts: actual.max(before), flow_id: flow.flow_id };
                self.finish(flow, close, end, order, out);
            }
        }
        false
    }

    /// Report open sessions at their verdict, `decision_timeout_ns` after
    /// their first ClientHello at the latest (0: at their flow's end only):
    /// the caller then takes [`FlowTable::take_due`] after every expiry.
    pub fn report_open(&mut self, decision_timeout_ns: i64) {
        self.lim.decision_timeout_ns = decision_timeout_ns;
        self.report_open = decision_timeout_ns > 0;
    }

    /// The open sessions whose verdict came due at the last
    /// [`FlowTable::expire`], in order; each is reported with
    /// [`FlowTable::lend`] before another packet touches the table.
    pub fn take_due(&mut self) -> Vec<(FlowKey, OrderKey)> {
        std::mem::take(&mut self.due)
    }

    /// `f` on a flow that stays open, seen as if it ended now with
    /// [`CloseKind::Open`] at `order`; when `f` says it reported a session,
    /// the flow is marked so ([`Flow::reported`]). `None` when the flow is
    /// gone (it ended in the same expiry).
    pub fn lend<R>(&mut self, key: &FlowKey, order: OrderKey, f: impl FnOnce(&Ended) -> (R, bool)) -> Option<R> {
        let hash = self.map.hash(key);
        let mut flow = self.map.remove(hash, key)?;
        // What the kernel counted so far is in the record (taken back after:
        // the flow's end adds it all).
        let kernel = if flow.offloaded != 0 { self.offload.as_mut().and_then(|o| o.seen(key, false)) } else { None };
        if let Some(k) = &kernel {
            Self::add_seen(&mut flow, k, true);
        }
        let end_ts = flow.last_ts;
        let e = Ended { flow, close: CloseKind::Open, end_ts, order };
        let (r, reported) = f(&e);
        let mut flow = e.flow;
        if let Some(k) = &kernel {
            Self::add_seen(&mut flow, k, false);
        }
        flow.reported = reported;
        self.map.insert(hash, flow);
        Some(r)
    }

    /// Schedule the record of an open session when its state makes a
    /// verdict due sooner than scheduled ([`decision::due`]).
    #[inline]
    fn schedule_verdict(flow: &mut Flow, ts: i64, lim: &Limits, key: &FlowKey, timers: &mut Timers) {
        if let Some(due) = flow.lower_verdict_due(decision::due(flow, ts, lim)) {
            timers.push_wake((due, flow.flow_id, *key));
        }
    }

    /// End every flow (end of capture or shutdown), in deadline order.
    pub fn drain(&mut self, kind: CloseKind, out: &mut Vec<Ended>) {
        let mut flows: Vec<Box<Flow>> = self.map.drain();
        self.timers.clear();
        self.part_flows.iter_mut().for_each(|n| *n = 0);
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

    /// A flow with this key left the map.
    fn forget(&mut self, key: &FlowKey) {
        if let Some(n) = self.part_flows.get_mut(partition(key, self.parts)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Account a flow's buffer bytes going from `before` to `after`.
    fn heap_moved(&mut self, part: usize, before: usize, after: usize) {
        self.heap_bytes = (self.heap_bytes + after).saturating_sub(before);
        if let Some(b) = self.part_bytes.get_mut(part) {
            *b = (*b + after).saturating_sub(before);
        }
        self.stats.heap_bytes_max = self.stats.heap_bytes_max.max(self.heap_bytes as u64);
    }

    fn finish(&mut self, mut flow: Box<Flow>, close: CloseKind, mut end_ts: i64, order: OrderKey, out: &mut Vec<Ended>) {
        let part = partition(&flow.key, self.parts);
        if flow.offloaded != 0 {
            if let Some(k) = self.offload.as_mut().and_then(|o| o.seen(&flow.key, true)) {
                let before = flow.last_ts;
                Self::add_seen(&mut flow, &k, true);
                if end_ts == before {
                    end_ts = flow.last_ts;
                }
            }
        }
        self.heap_moved(part, flow.heap_bytes(), 0);
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
            // Per partition: forget the tuples whose time is over as of this
            // flow's place in the output (the same in every mode), then the
            // oldest if the partition's share is full.
            let cap = self.lim.flows_in_partition(part);
            if let Some(q) = self.closed_order.get_mut(part) {
                while let Some(&(until, key)) = q.front() {
                    if until > order.ts && q.len() < cap {
                        break;
                    }
                    q.pop_front();
                    if self.closed.get(&key) == Some(&until) {
                        self.closed.remove(&key);
                    }
                }
                let until = t.saturating_add(self.lim.closed_memory_ns);
                self.closed.insert(flow.key, until);
                q.push_back((until, flow.key));
            }
        }
        out.push(Ended { flow, close, end_ts, order });
    }

    fn account(&mut self, flow: &Flow) {
        for r in &flow.reasm {
            let c = r.counters;
            self.stats.reassembly_retransmitted_bytes += c.retransmitted_bytes;
            self.stats.reassembly_gaps += u64::from(c.gaps);
            self.stats.reassembly_gap_bytes += c.gap_bytes;
            self.stats.reassembly_overflows += u64::from(c.overflows);
            self.stats.reassembly_out_of_order += u64::from(c.out_of_order);
            self.stats.reassembly_overlap_diff_data += u64::from(c.overlap_diff_data);
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
        let Flow { reasm, session, proto, probes, started, head, .. } = flow;
        if *proto != Proto::Tls {
            reasm[dir.idx()].release();
            return;
        }
        let mut sink = Sink { session, proto, probes, started, head, max_probes: u8::MAX, dir, ts, events };
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
    pub fn packet_hashed(
        &mut self,
        d: &Decoded<'_>,
        key: &FlowKey,
        hash: u64,
        ts: i64,
        wire_len: u32,
        source: usize,
        out: &mut Vec<Ended>,
    ) {
        let key = *key;
        let Some(tcp) = d.tcp else {
            self.udp(d, key, hash, ts, wire_len, source, out);
            return;
        };
        let syn_only = tcp.has(TcpInfo::SYN) && !tcp.has(TcpInfo::ACK);
        match self.tcp_lookup(d, &key, hash, tcp, ts, wire_len, syn_only) {
            TcpLookup::Done => return,
            TcpLookup::Known => {}
            TcpLookup::Unknown => {
                if !self.tcp_new_flow(d, key, hash, tcp, ts, wire_len, source, syn_only, out) {
                    return;
                }
            }
        }
        self.tcp_on_flow(d, &key, hash, tcp, ts);
    }

    /// One lookup for a packet of a tracked flow (the common case), and
    /// for most of them nothing more: early bypass is a lookup, counters
    /// and the close state only, for a flow that is done, and for a
    /// packet that cannot change anything: no SYN, nothing held out of
    /// order in the other direction (which this packet's ACK could
    /// release), and no payload, or payload that its direction's parser
    /// no longer reads. A SYN on a closed flow's tuple is not its packet.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn tcp_lookup(&mut self, d: &Decoded<'_>, key: &FlowKey, hash: u64, tcp: TcpInfo, ts: i64, wire_len: u32, syn_only: bool) -> TcpLookup {
        match self.map.get_mut(hash, key) {
            Some(flow) if !(flow.close.is_some() && syn_only) => {
                let dir = Self::count(flow, key, d, ts, wire_len);
                let empty = d.payload.is_empty();
                if flow.bypass
                    || (!tcp.has(TcpInfo::SYN)
                        && flow.quiet[dir.idx()] & (if empty { QUIET_EMPTY } else { QUIET_PAYLOAD }) != 0
                        && !flow.reveals_tail(dir, &tcp, empty))
                {
                    self.stats.bypassed_packets += 1;
                    // An ACK can still free the other direction's copy of
                    // delivered bytes (see `Reassembler::ack_seen`).
                    let other = usize::from(dir == Dir::Client);
                    let freed = if !flow.bypass && tcp.has(TcpInfo::ACK) { flow.reasm[other].ack_seen(tcp.ack) } else { 0 };
                    Self::close_state(flow, dir, tcp, d.payload.len(), ts, &self.lim, key, self.parts, &mut self.timers);
                    if let Some(o) = self.offload.as_mut() {
                        // A long flow that went quiet: hand it over now.
                        if (flow.dirs[0].pkts + flow.dirs[1].pkts) % OFFLOAD_MIN_PACKETS == 0 {
                            Self::offload_more(flow, key, d, o.as_mut());
                        }
                    }
                    if freed > 0 {
                        self.heap_moved(partition(key, self.parts), freed, 0);
                    }
                    return TcpLookup::Done;
                }
                TcpLookup::Known
            }
            _ => TcpLookup::Unknown,
        }
    }

    /// A TCP packet of no tracked flow: end the closed flow on its tuple (a
    /// new SYN is a new connection: port reuse), and start a flow (evicting
    /// one if its partition is full). Returns false for a late packet of a
    /// recently closed flow, which is counted and dropped.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn tcp_new_flow(
        &mut self,
        d: &Decoded<'_>,
        key: FlowKey,
        hash: u64,
        tcp: TcpInfo,
        ts: i64,
        wire_len: u32,
        source: usize,
        syn_only: bool,
        out: &mut Vec<Ended>,
    ) -> bool {
        // A new SYN on a closed flow's tuple is a new connection (port reuse).
        if let Some(old) = self.map.remove(hash, &key) {
            self.forget(&key);
            let end = old.close_ts.unwrap_or(old.last_ts);
            let close = old.close.unwrap_or(CloseKind::Fin);
            let order = OrderKey { phase: 0, ts: self.clock, flow_id: old.flow_id };
            self.finish(old, close, end, order, out);
        }
        if !syn_only && self.closed.get(&key).is_some_and(|&until| ts < until && self.clock < until) {
            self.stats.late_packets_after_close += 1;
            return false;
        }
        let part = partition(&key, self.parts);
        if self.part_flows[part] >= self.lim.flows_in_partition(part) {
            self.evict_one(part, out);
        }
        let (client_is_lo, roles_known) = tcp_roles(d, &key, tcp, syn_only);
        let mut flow = Flow::new(key, ts, source, client_is_lo, Proto::Unknown);
        flow.vlans = d.vlans;
        flow.roles_known = roles_known;
        flow.midstream = !syn_only;
        Self::count(&mut flow, &key, d, ts, wire_len);
        self.stats.flows_created += 1;
        self.timers.push(part, (ts.saturating_add(self.lim.new_timeout_ns), flow.flow_id, key));
        self.map.insert(hash, flow);
        self.part_flows[part] += 1;
        self.stats.flows_active_max = self.stats.flows_active_max.max(self.map.len() as u64);
        true
    }

    /// A TCP packet that may change its (tracked) flow: handshake flags,
    /// reassembly and the TLS parse, the close state, the verdict timer, the
    /// shared buffer budget, and early bypass once nothing is left to read.
    #[inline]
    fn tcp_on_flow(&mut self, d: &Decoded<'_>, key: &FlowKey, hash: u64, tcp: TcpInfo, ts: i64) {
        let lim = self.lim;
        let part = partition(key, self.parts);
        let Some(flow) = self.map.get_mut(hash, key) else { return };
        let dir = if from_lo(key, d) == flow.client_is_lo { Dir::Client } else { Dir::Server };
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
        Self::close_state(flow, dir, tcp, d.payload.len(), ts, &lim, key, self.parts, &mut self.timers);
        if self.report_open {
            Self::schedule_verdict(flow, ts, &lim, key, &mut self.timers);
        }
        let mut heap_after = flow.heap_bytes();
        if self.part_bytes[part] + heap_after > lim.buffer_bytes_in_partition() + heap_before && heap_after > heap_before {
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
        if let Some(o) = self.offload.as_mut() {
            Self::offload_more(flow, key, d, o.as_mut());
        }
        self.heap_moved(part, heap_before, heap_after);
    }

    /// Add (or take back) what the kernel counted for an offloaded flow;
    /// its latest packet's time stays.
    fn add_seen(flow: &mut Flow, k: &offload::KernelSeen, add: bool) {
        let (c, s) = if flow.client_is_lo { (k.from_lo, k.from_hi) } else { (k.from_hi, k.from_lo) };
        for (d, seen) in flow.dirs.iter_mut().zip([c, s]) {
            if add {
                d.pkts += seen.pkts;
                d.bytes += seen.bytes;
                d.payload_bytes += seen.payload;
            } else {
                d.pkts -= seen.pkts;
                d.bytes -= seen.bytes;
                d.payload_bytes -= seen.payload;
            }
        }
        if let Some(t) = k.last_ts {
            flow.last_ts = flow.last_ts.max(t);
        }
    }

    /// Hand the kernel what more it may drop of this flow ([`offload`]):
    /// a direction's drop-empty entry, later its drop-all entry (an entry is
    /// added, never rewritten: that would race the kernel's counting). Not
    /// before the flow has [`OFFLOAD_MIN_PACKETS`] packets: the entries cost
    /// system calls, which a short session does not pay back.
    /// Nothing for a flow whose both directions are already dropped in
    /// full, nor for a tunnelled one (the kernel's filter sees the outer
    /// addresses).
    fn offload_more(flow: &mut Flow, key: &FlowKey, d: &Decoded<'_>, o: &mut dyn offload::Offload) {
        if flow.offloaded & OFFLOADED_ALL == OFFLOADED_ALL
            || d.tunnel.is_some()
            || flow.dirs[0].pkts + flow.dirs[1].pkts < OFFLOAD_MIN_PACKETS
        {
            return;
        }
        let mut ask = [0u8; 2];
        let mut bits = 0u8;
        for (i, mode) in flow.kernel_modes().into_iter().enumerate() {
            let have = flow.offloaded >> (2 * i) & 3;
            if mode == offload::DROP_ALL && have & 2 == 0 {
                (ask[i], bits) = (mode, bits | 2 << (2 * i));
            } else if mode == offload::DROP_EMPTY && have == 0 {
                (ask[i], bits) = (mode, bits | 1 << (2 * i));
            }
        }
        if bits != 0 && o.offload(key, if flow.client_is_lo { ask } else { [ask[1], ask[0]] }) {
            flow.offloaded |= bits;
        }
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
    #[allow(clippy::too_many_arguments)]
    fn close_state(
        flow: &mut Flow,
        dir: Dir,
        tcp: TcpInfo,
        payload_len: usize,
        ts: i64,
        lim: &Limits,
        key: &FlowKey,
        parts: usize,
        timers: &mut Timers,
    ) {
        if tcp.has(TcpInfo::FIN) && !flow.dirs[dir.idx()].fin {
            // Read only here: this runs for every packet, bypassed ones too.
            let peer = &flow.dirs[usize::from(dir == Dir::Client)];
            let answers = peer.fin && tcp.has(TcpInfo::ACK) && tcp.ack == peer.fin_end;
            let c = &mut flow.dirs[dir.idx()];
            c.fin_end = tcp.seq.wrapping_add(payload_len as u32).wrapping_add(1);
            // Only a FIN that is this side's first close (no RST before it).
            c.fin_answers = c.close_ts.is_none() && answers;
        }
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
            timers.push(partition(key, parts), (flow.deadline(lim), flow.flow_id, *key));
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
            let Flow { reasm, session, proto, probes, started, head, .. } = flow;
            let wants = *proto != Proto::Tls || session.wants_bytes(other);
            let mut sink = Sink { session, proto, probes, started, head, max_probes: lim.probe_segments, dir: other, ts, events };
            reasm[other.idx()].acked(tcp.ack, &mut |c| sink.chunk(c));
            // Bytes the peer acknowledged that the capture never had: a
            // trailing hole (a lost last segment, e.g. a client's Finished).
            if wants {
                reasm[other.idx()].acked_tail(tcp.ack, fin, &mut |c| sink.chunk(c));
            }
            Self::spent(flow, other);
        }
        if payload.is_empty() {
            // An empty segment's sequence number is the sender's next byte:
            // past what was captured, the bytes between were lost (a FIN
            // after a lost Finished and request, with the peer's ACKs lost
            // too). Not a SYN's, and not a RST's, which may be anywhere in
            // the window.
            if !tcp.has(TcpInfo::SYN) && !tcp.has(TcpInfo::RST) && (flow.proto != Proto::Tls || flow.session.wants_bytes(dir)) {
                // After its FIN, the sender's next sequence number is one past it.
                let fin = flow.dirs[dir.idx()].fin;
                let Flow { reasm, session, proto, probes, started, head, .. } = flow;
                let mut sink = Sink { session, proto, probes, started, head, max_probes: lim.probe_segments, dir, ts, events };
                reasm[dir.idx()].acked_tail(tcp.seq, fin, &mut |c| sink.chunk(c));
            }
            return;
        }
        if flow.proto == Proto::Unknown && !flow.roles_known && dir == Dir::Server && looks_like_client_hello(payload) {
            // We guessed the roles of a mid-stream flow wrong: the
            // ClientHello sender is the client.
            flow.client_is_lo = !flow.client_is_lo;
            flow.dirs.swap(0, 1);
            flow.reasm.swap(0, 1);
            if let Some(h) = flow.head.as_mut() {
                h.swap(0, 1);
            }
            flow.roles_known = true;
            // What was taken for the server's was the client's.
            flow.wire = ServerWire::default();
            return Self::stream(flow, Dir::Client, tcp, payload, ts, lim, events);
        }
        if flow.proto == Proto::Tls && !flow.session.wants_bytes(dir) {
            flow.reasm[dir.idx()].release();
            return;
        }
        let Flow { reasm, session, proto, probes, started, head, .. } = flow;
        let r = &mut reasm[dir.idx()];
        // Data on a SYN (TCP Fast Open) starts after the SYN's sequence number.
        let seq = if tcp.has(TcpInfo::SYN) { tcp.seq.wrapping_add(1) } else { tcp.seq };
        r.sync(seq);
        let mut sink = Sink { session, proto, probes, started, head, max_probes: lim.probe_segments, dir, ts, events };
        r.segment(seq, payload, &lim.reassembly, &mut |c| sink.chunk(c));
        if *proto == Proto::NotTls {
            reasm[0].release();
            reasm[1].release();
            flow.head = None;
        }
        Self::spent(flow, dir);
    }

    /// Once a direction's parser reads no more, its reassembler's copy of
    /// delivered bytes (kept to compare retransmissions) goes, so that a
    /// finished flow holds no buffer and can be bypassed as before.
    #[inline]
    fn spent(flow: &mut Flow, dir: Dir) {
        if flow.proto == Proto::Tls && !flow.session.wants_bytes(dir) {
            flow.reasm[dir.idx()].forget_seen();
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
            let part = partition(&key, self.parts);
            if self.part_flows[part] >= self.lim.flows_in_partition(part) {
                self.evict_one(part, out);
            }
            let mut flow = Flow::new(key, ts, source, from_lo(&key, d), Proto::Quic);
            flow.vlans = d.vlans;
            flow.roles_known = true;
            flow.quic = Some(Box::default());
            self.stats.flows_created += 1;
            self.timers.push(part, (ts.saturating_add(self.lim.new_timeout_ns), flow.flow_id, key));
            self.map.insert(hash, flow);
            self.part_flows[part] += 1;
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
        if self.report_open {
            Self::schedule_verdict(flow, ts, &self.lim, &key, &mut self.timers);
        }
        let heap_after = flow.heap_bytes();
        self.heap_moved(partition(&key, self.parts), heap_before, heap_after);
    }

    /// Make room in partition `part`: end its flow nearest its timeout (as
    /// far as the timers know: the first entry of the partition's heap
    /// whose flow is still there).
    fn evict_one(&mut self, part: usize, out: &mut Vec<Ended>) {
        let Some(heap) = self.timers.parts.get_mut(part) else { return };
        while let Some(Reverse((_, _, key))) = heap.pop() {
            let hash = self.map.hash(&key);
            if let Some(flow) = self.map.remove(hash, &key) {
                self.forget(&key);
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
/// TLS starts: a direction is fed to the parser from the first captured
/// segment start at which the stream looks like a TLS record (so STARTTLS
/// preambles and mid-stream starts are skipped); a flow whose first
/// `max_probes` segment starts are not TLS is written off as not TLS.
///
/// The decision is made on the reassembled stream, however it was cut: a
/// segment start too short to decide (fewer than 5 bytes that could begin a
/// record, or a PROXY line not yet ended) is held in the flow's [`Head`] and
/// the bytes that follow are added until the record header is complete. A
/// segment that carries a whole header (the common case) is decided on its
/// own, without a copy.
struct Sink<'a> {
    session: &'a mut TlsSession,
    proto: &'a mut Proto,
    probes: &'a mut u8,
    started: &'a mut [bool; 2],
    head: &'a mut Option<Box<[Head; 2]>>,
    max_probes: u8,
    dir: Dir,
    ts: i64,
    events: &'a mut Vec<TlsEvent>,
}

/// Bytes held from a segment start until the TLS decision can be made: at
/// most [`HEAD_CAP`] bytes a direction (a PROXY v1 line is at most 116
/// bytes, a record header 5), so a flow holds at most 2 × 128 bytes here.
#[derive(Debug, Default)]
pub struct Head {
    bytes: Vec<u8>,
    /// Bit `i` set: a captured segment starts at `bytes[i]` (bit 0 always).
    marks: u128,
}

/// Bytes a [`Head`] holds at most.
pub const HEAD_CAP: usize = 128;

/// Where TLS starts in the bytes that follow a segment start.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// At this offset (past a PROXY protocol line, if any).
    Tls(usize),
    /// Not here: a preamble, whose text begins at this offset.
    NotTls(usize),
    /// Too few bytes to tell.
    More,
}

/// Decide where TLS starts in `b`, the stream from a segment start on.
fn tls_start(b: &[u8]) -> Start {
    // A PROXY protocol v1 line (HAProxy) may share the segment with the
    // ClientHello; it is at most 107 bytes before its CRLF. A v2 header
    // (binary) is stepped over by its length (crate::flow::proxy_protocol).
    let mut off = 0;
    match crate::flow::proxy_protocol::v2_len(b, HEAD_CAP) {
        crate::flow::proxy_protocol::V2::Header(n) => off = n,
        crate::flow::proxy_protocol::V2::More => return Start::More,
        crate::flow::proxy_protocol::V2::TooLong => return Start::NotTls(0),
        crate::flow::proxy_protocol::V2::No => {}
    }
    if off > 0 {
        // v2: fall through to the TLS test on what follows the header.
    } else if let Some(rest) = b.strip_prefix(b"PROXY ".as_slice()) {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) if i < 108 => off = 6 + i + 2,
            Some(_) => {}
            None if rest.len() < 109 => return Start::More,
            None => {}
        }
    } else if b.len() < 6 && b"PROXY ".starts_with(b) {
        return Start::More;
    }
    let body = &b[off..];
    if body.len() < 5 {
        return if may_start_tls(body) { Start::More } else { Start::NotTls(off) };
    }
    if looks_like_tls(body) {
        Start::Tls(off)
    } else {
        Start::NotTls(off)
    }
}

impl Sink<'_> {
    fn chunk(&mut self, c: Chunk<'_>) {
        let d = self.dir.idx();
        match c {
            Chunk::Data { bytes, segment_start } => {
                if !self.started[d] {
                    if *self.proto == Proto::NotTls {
                        return;
                    }
                    let held = self.head.as_ref().is_some_and(|h| !h[d].bytes.is_empty());
                    if !held {
                        if !segment_start {
                            return;
                        }
                        if crate::flow::openvpn_tcp::starts(self.session, self.dir, bytes) {
                            return self.start(bytes);
                        }
                        match tls_start(bytes) {
                            Start::Tls(off) => return self.start(&bytes[off..]),
                            Start::NotTls(off) => return self.preamble(&bytes[off..]),
                            Start::More => {}
                        }
                    }
                    return self.hold(bytes, segment_start);
                }
                self.feed(bytes);
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
                if let Some(o) = self.session.openvpn() {
                    // The OpenVPN framing is lost with the bytes.
                    o.kill(self.dir);
                }
                if self.started[d] {
                    self.session.parser.gap(self.dir, u64::from(n));
                } else if let Some(h) = self.head.as_mut() {
                    // The held bytes and what follows are no longer one stream.
                    h[d] = Head::default();
                }
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && self.session.wants_bytes(self.dir) {
            if self.session.rare.as_ref().is_some_and(|r| r.openvpn.is_some()) {
                return crate::flow::openvpn_tcp::feed(self.session, self.dir, bytes, self.ts, self.events);
            }
            self.session.parser.feed(self.dir, bytes, self.ts, self.events);
        }
    }

    /// TLS starts with `bytes`.
    fn start(&mut self, bytes: &[u8]) {
        self.started[self.dir.idx()] = true;
        *self.proto = Proto::Tls;
        self.feed(bytes);
    }

    /// A segment start that is not TLS: a STARTTLS or proxy preamble, or a
    /// capture that begins mid-stream. It counts towards `max_probes` when
    /// it is a header's length or more, or ends a line: a preamble sent a
    /// byte a segment counts a probe a line, as it does in one piece, so
    /// that junk in tiny segments cannot write a flow off before its hello.
    fn preamble(&mut self, bytes: &[u8]) {
        self.session.note_preamble(self.dir, bytes);
        if *self.proto == Proto::Unknown && (bytes.len() >= 5 || bytes.contains(&b'\n')) {
            *self.probes += 1;
            if *self.probes >= self.max_probes {
                *self.proto = Proto::NotTls;
            }
        }
    }

    /// Add the next bytes to the held start and decide once enough are in.
    /// A held start found not to be TLS is retried from each later segment
    /// start among the held bytes, as if they had come in one piece each.
    fn hold(&mut self, bytes: &[u8], segment_start: bool) {
        let d = self.dir.idx();
        let mut heads = self.head.take().unwrap_or_default();
        let h = &mut heads[d];
        if segment_start && h.bytes.len() < HEAD_CAP {
            h.marks |= 1u128 << h.bytes.len();
        }
        let mut rest = bytes;
        loop {
            let take = rest.len().min(HEAD_CAP - h.bytes.len());
            h.bytes.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            match tls_start(&h.bytes) {
                Start::More => {
                    // Only fewer than HEAD_CAP bytes can leave it open.
                    debug_assert!(rest.is_empty());
                    break;
                }
                Start::Tls(off) => {
                    let held = std::mem::take(h);
                    self.start(&held.bytes[off..]);
                    self.feed(rest);
                    break;
                }
                Start::NotTls(off) => {
                    // This candidate's segment ends at the next segment start.
                    let next = (h.marks & !1).trailing_zeros() as usize;
                    let end = next.min(h.bytes.len());
                    self.preamble(&h.bytes[off.min(end)..end]);
                    if next >= h.bytes.len() || *self.proto == Proto::NotTls {
                        // The rest of this segment is skipped.
                        *h = Head::default();
                        break;
                    }
                    h.bytes.drain(..next);
                    h.marks >>= next;
                }
            }
        }
        if !heads[0].bytes.is_empty() || !heads[1].bytes.is_empty() {
            *self.head = Some(heads);
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
                    assert_eq!(super::key::endpoint_le((a, pa), (b, pb)), (a, pa) <= (b, pb), "{a}:{pa} {b}:{pb}");
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
    /// rare fields boxed (`TlsSession::hello_retry`, `rare`).
    #[test]
    fn a_flow_fits_in_1024_bytes() {
        assert!(std::mem::size_of::<super::Flow>() <= 1024, "Flow is {} bytes", std::mem::size_of::<super::Flow>());
    }
}
