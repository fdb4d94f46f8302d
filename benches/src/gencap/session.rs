//! One generated TCP session: a template's head (handshake, first request and
//! response) replayed with new addresses, ports, sequence numbers and times,
//! then bulk TLS application data, then the template's close (or an RST).
//!
//! Packets are produced lazily, a round trip at a time, into a small
//! per-session queue ordered by (time, order of generation); the generator
//! only ever pops a packet when no packet still to be generated can be
//! earlier (`watermark`).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::net::{self, be16, be32, rd32, ACK, FIN, PSH, RST};
use super::rng::Rng;
use super::template::{Template, C2S, S2C};

/// Application bytes per full TLS record, and its ciphertext overhead
/// (TLS 1.3: content type + 16-byte AEAD tag; the header is 5 more).
pub const RECORD_PLAIN: u64 = 16384;
pub const RECORD_OVERHEAD: u64 = 17;
pub const RECORD_WIRE: u64 = 5 + RECORD_PLAIN + RECORD_OVERHEAD;

/// Largest congestion window, in segments (about 1.5 MB).
const MAX_CWND: u32 = 1024;
/// Initial window (RFC 6928).
const INIT_CWND: u32 = 10;

pub const GATEWAY_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];

/// Wire length (record headers included) of `app` bytes sent as TLS records
/// of up to 16 KiB.
pub fn msg_wire_len(app: u64) -> u64 {
    let full = app / RECORD_PLAIN;
    let rem = app % RECORD_PLAIN;
    full * RECORD_WIRE + if rem > 0 { 5 + rem + RECORD_OVERHEAD } else { 0 }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Template packet `idx`; a tail packet is shifted by the bulk bytes.
    Tmpl { idx: u32, tail: bool },
    /// Bulk segment: `len` bytes of the message of `msg_len` bytes that
    /// starts at bulk offset `msg_start`.
    Data { len: u32, msg_start: u64, msg_len: u64, psh: bool },
    /// A bare segment with these flags (ACK, FIN|ACK, RST|ACK).
    Bare(u8),
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    t: i64,
    n: u64,
    dir: u8,
    kind: Kind,
    /// Bulk-stream offset of this direction (sequence number) …
    seq_off: u64,
    /// … and of the other direction (acknowledgment number).
    ack_off: u64,
}

impl PartialEq for Spec {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.n) == (o.t, o.n)
    }
}
impl Eq for Spec {}
impl PartialOrd for Spec {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Spec {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.t, self.n).cmp(&(o.t, o.n))
    }
}

/// One message of the bulk phase.
#[derive(Clone, Copy, Debug)]
pub struct Msg {
    pub dir: usize,
    /// Wire bytes (TLS record headers included).
    pub len: u64,
    /// Delay after the previous message's last segment.
    pub gap: i64,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    dir: usize,
    start: u64,
    len: u64,
    sent: u64,
    round_start: i64,
    unacked: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Head,
    Bulk,
    Close,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The template's own close (close_notify, FIN/ACK), or a synthesized
    /// FIN/ACK exchange when the template has none.
    Template,
    /// The client resets the connection.
    Rst,
    /// No close: the flow stays open (`--concurrent-flows`).
    None,
}

/// Addresses and per-path constants of a session.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub client: [u8; 4],
    pub server: [u8; 4],
    pub cport: u16,
    pub sport: u16,
    pub ttl: [u8; 2],
    /// Index in the generator's server pool.
    pub server_idx: usize,
}

pub struct Session {
    pub uid: u64,
    pub tmpl: usize,
    pub ep: Endpoints,
    pub started: bool,
    /// Packets taken from the session so far (written or, before the capture starts, not).
    pub popped: u64,
    rng: Rng,
    cmac: [u8; 6],
    ip_id: [u16; 2],
    delta: [u32; 2],
    ts_base: [u32; 2],
    last_tsval: [u32; 2],
    t0: i64,
    rtt: i64,
    ns_per_byte: f64,
    queue: BinaryHeap<Reverse<Spec>>,
    order: u64,
    stage: Stage,
    watermark: i64,
    last_t: i64,
    last_data_t: i64,
    last_ack_t: i64,
    linger: i64,
    plan: Vec<Msg>,
    plan_idx: usize,
    active: Option<Active>,
    cwnd: [u32; 2],
    bulk_off: [u64; 2],
    close: Close,
}

/// What a session does after its head.
pub struct Plan {
    pub msgs: Vec<Msg>,
    pub close: Close,
    /// Idle time between the last data and the close (keep-alive).
    pub linger: i64,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(uid: u64, tmpl: usize, ep: Endpoints, t0: i64, rtt: i64, bps: f64, plan: Plan, mut rng: Rng) -> Session {
        let cmac = [0x02, 0x00, ep.client[0], ep.client[1], ep.client[2], ep.client[3]];
        let delta = [rng.next_u32(), rng.next_u32()];
        let ts_base = [rng.next_u32(), rng.next_u32()];
        let ip_id = [rng.next_u32() as u16, rng.next_u32() as u16];
        Session {
            uid,
            tmpl,
            ep,
            started: false,
            popped: 0,
            rng,
            cmac,
            ip_id,
            delta,
            ts_base,
            last_tsval: [0; 2],
            t0,
            rtt,
            ns_per_byte: 8e9 / bps,
            queue: BinaryHeap::new(),
            order: 0,
            stage: Stage::Head,
            watermark: t0,
            last_t: t0,
            last_data_t: t0,
            last_ack_t: t0,
            linger: plan.linger,
            plan: plan.msgs,
            plan_idx: 0,
            active: None,
            cwnd: [INIT_CWND; 2],
            bulk_off: [0; 2],
            close: plan.close,
        }
    }

    fn push(&mut self, t: i64, dir: usize, kind: Kind, seq_off: u64, ack_off: u64) {
        self.order += 1;
        self.last_t = self.last_t.max(t);
        self.queue.push(Reverse(Spec { t, n: self.order, dir: dir as u8, kind, seq_off, ack_off }));
    }

    /// Template packets `range`, the first at `start`, then the template's
    /// gaps, plus one RTT whenever the server answers the client (the tap
    /// is at the client side of the path).
    fn push_template(&mut self, tm: &Template, range: std::ops::Range<usize>, start: i64, tail: bool) -> i64 {
        let mut t = start;
        for i in range.clone() {
            if i > range.start {
                let (q, p) = (&tm.pkts[i - 1], &tm.pkts[i]);
                let mut gap = p.t_ns - q.t_ns;
                if q.dir == C2S && p.dir == S2C {
                    gap += self.rtt;
                }
                t += gap.max(0);
            }
            let (so, ao) = (self.bulk_off[tm.pkts[i].dir], self.bulk_off[1 - tm.pkts[i].dir]);
            self.push(t, tm.pkts[i].dir, Kind::Tmpl { idx: i as u32, tail }, so, ao);
        }
        t
    }

    /// Generate more packets: the head, one round trip of bulk data, or the close.
    fn produce(&mut self, tm: &Template) {
        match self.stage {
            Stage::Head => {
                // established templates: up to the close; others: all of it
                let last = self.push_template(tm, 0..tm.split, self.t0, false);
                self.last_data_t = last;
                self.watermark = last;
                self.stage = if self.plan.is_empty() && self.close == Close::None { Stage::Done } else { Stage::Bulk };
            }
            Stage::Bulk => {
                if self.active.is_none() {
                    match self.plan.get(self.plan_idx).copied() {
                        Some(m) => {
                            self.plan_idx += 1;
                            self.active = Some(Active {
                                dir: m.dir,
                                start: self.bulk_off[m.dir],
                                len: m.len,
                                sent: 0,
                                round_start: self.last_data_t + m.gap,
                                unacked: 0,
                            });
                        }
                        None => {
                            self.stage = Stage::Close;
                            return;
                        }
                    }
                }
                self.round(tm);
            }
            Stage::Close => {
                let start = self.last_t + self.linger;
                let (c, s) = (self.bulk_off[C2S], self.bulk_off[S2C]);
                match self.close {
                    Close::Rst => self.push(start, C2S, Kind::Bare(RST | ACK), c, s),
                    Close::Template if tm.split < tm.pkts.len() => {
                        self.push_template(tm, tm.split..tm.pkts.len(), start, true);
                    }
                    Close::Template => {
                        let d = self.rng.range(20_000, 250_000) as i64;
                        self.push(start, S2C, Kind::Bare(FIN | ACK), s, c);
                        self.push(start + d, C2S, Kind::Bare(FIN | ACK), c, s + 1);
                        self.push(start + d + self.rtt, S2C, Kind::Bare(ACK), s + 1, c + 1);
                    }
                    Close::None => {}
                }
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }

    /// One round trip of the active message: up to a congestion window of
    /// segments at the path's rate, the receiver acknowledging every second
    /// segment (and the last).
    fn round(&mut self, tm: &Template) {
        let Some(mut a) = self.active else { return };
        let mss = tm.seg_payload as u64;
        let d = a.dir;
        let r = 1 - d;
        let mut t = a.round_start;
        let mut k = 0;
        let mut last_seg_t = t;
        while k < self.cwnd[d] && a.sent < a.len {
            let len = mss.min(a.len - a.sent);
            let off = a.start + a.sent;
            a.sent += len;
            let psh = a.sent == a.len || a.sent % RECORD_WIRE < len;
            let ack_to = self.bulk_off[r];
            self.push(t, d, Kind::Data { len: len as u32, msg_start: a.start, msg_len: a.len, psh }, off, ack_to);
            last_seg_t = t;
            a.unacked += 1;
            // the last segment of a request is acknowledged by the reply itself
            let replied = a.sent == a.len && self.plan.get(self.plan_idx).is_some_and(|m| m.dir == r);
            if a.unacked >= 2 || (a.sent == a.len && !replied) {
                // client ACKs appear just after the data (tap near the client);
                // server ACKs one RTT after the client's data; in order
                let delay = if r == C2S { self.rng.range(20_000, 250_000) as i64 } else { self.rtt + self.rng.range(0, 100_000) as i64 };
                let at = (t + delay).max(self.last_ack_t);
                self.last_ack_t = at;
                self.push(at, r, Kind::Bare(ACK), ack_to, off + len);
                a.unacked = 0;
            }
            t += ((len + 66) as f64 * self.ns_per_byte) as i64;
            k += 1;
        }
        self.cwnd[d] = (self.cwnd[d] * 2).min(MAX_CWND);
        if a.sent >= a.len {
            self.bulk_off[d] = a.start + a.len;
            self.active = None;
            self.last_data_t = last_seg_t;
            self.watermark = last_seg_t;
        } else {
            a.round_start += (t - a.round_start).max(self.rtt);
            self.watermark = a.round_start;
            self.active = Some(a);
        }
    }

    /// Time of the next packet, generating as needed; None when finished.
    pub fn peek(&mut self, tm: &Template) -> Option<i64> {
        while self.stage != Stage::Done {
            match self.queue.peek() {
                Some(Reverse(s)) if s.t < self.watermark => break,
                _ => self.produce(tm),
            }
        }
        self.queue.peek().map(|Reverse(s)| s.t)
    }

    fn tsopt(&mut self, dir: usize, t: i64, keep_zero_ecr: bool) -> (u32, u32) {
        let tsval = self.ts_base[dir].wrapping_add(((t - self.t0) / 1_000_000) as u32);
        let tsecr = if keep_zero_ecr { 0 } else { self.last_tsval[1 - dir] };
        self.last_tsval[dir] = tsval;
        (tsval, tsecr)
    }

    /// Pop the next packet and write its frame into `buf`. Returns its time
    /// and whether it is a template (handshake) packet. Packets before
    /// the capture starts (`t < 0`, warm-up) only advance the session's state.
    pub fn pop(&mut self, tm: &Template, pool: &[u8], buf: &mut Vec<u8>) -> Option<(i64, bool)> {
        let Reverse(s) = self.queue.pop()?;
        let d = s.dir as usize;
        let o = 1 - d;
        self.ip_id[d] = self.ip_id[d].wrapping_add(1);
        if s.t < 0 {
            let has_ts = match s.kind {
                Kind::Tmpl { idx, .. } => tm.pkts[idx as usize].ts_off.is_some(),
                _ => tm.has_ts,
            };
            if has_ts {
                self.tsopt(d, s.t, false);
            }
            return Some((s.t, matches!(s.kind, Kind::Tmpl { .. })));
        }
        match s.kind {
            Kind::Tmpl { idx, tail } => {
                let (src, dst, sport, dport) = if d == C2S {
                    (self.ep.client, self.ep.server, self.ep.cport, self.ep.sport)
                } else {
                    (self.ep.server, self.ep.client, self.ep.sport, self.ep.cport)
                };
                let (src_mac, dst_mac) = if d == C2S { (self.cmac, GATEWAY_MAC) } else { (GATEWAY_MAC, self.cmac) };
                let p = &tm.pkts[idx as usize];
                buf.clear();
                buf.extend_from_slice(&p.frame);
                buf[0..6].copy_from_slice(&dst_mac);
                buf[6..12].copy_from_slice(&src_mac);
                let (ip, tcp) = (p.ip_off, p.tcp_off);
                be16(buf, ip + 4, self.ip_id[d]);
                buf[ip + 8] = self.ep.ttl[d];
                buf[ip + 12..ip + 16].copy_from_slice(&src);
                buf[ip + 16..ip + 20].copy_from_slice(&dst);
                be16(buf, tcp, sport);
                be16(buf, tcp + 2, dport);
                let (shift_s, shift_a) = if tail { (s.seq_off as u32, s.ack_off as u32) } else { (0, 0) };
                be32(buf, tcp + 4, p.seq.wrapping_add(self.delta[d]).wrapping_add(shift_s));
                if p.flags & ACK != 0 {
                    be32(buf, tcp + 8, p.ack.wrapping_add(self.delta[o]).wrapping_add(shift_a));
                }
                if let Some(ts) = p.ts_off {
                    let (v, e) = self.tsopt(d, s.t, rd32(&p.frame, ts + 4) == 0);
                    be32(buf, ts, v);
                    be32(buf, ts + 4, e);
                }
                net::fix_checksums(buf, ip, tcp);
                Some((s.t, true))
            }
            Kind::Data { len, msg_start, msg_len, psh } => {
                let len = len as usize;
                let mut payload = [0u8; 9000];
                let at = self.rng.below((pool.len() - len) as u64) as usize;
                payload[..len].copy_from_slice(&pool[at..at + len]);
                // TLS application-data record headers that fall in this segment
                let rel = s.seq_off - msg_start;
                let mut k = rel / RECORD_WIRE;
                loop {
                    let hstart = k * RECORD_WIRE;
                    if hstart >= rel + len as u64 || hstart >= msg_len {
                        break;
                    }
                    let rec_len = (msg_len - hstart).min(RECORD_WIRE) - 5;
                    let hdr = [0x17, 0x03, 0x03, (rec_len >> 8) as u8, rec_len as u8];
                    for (j, &b) in hdr.iter().enumerate() {
                        let pos = hstart + j as u64;
                        if pos >= rel && pos < rel + len as u64 {
                            payload[(pos - rel) as usize] = b;
                        }
                    }
                    k += 1;
                }
                let ts = if tm.has_ts { Some(self.tsopt(d, s.t, false)) } else { None };
                self.build(tm, buf, d, s, ACK | if psh { PSH } else { 0 }, ts, &payload[..len]);
                Some((s.t, false))
            }
            Kind::Bare(flags) => {
                let ts = if tm.has_ts { Some(self.tsopt(d, s.t, false)) } else { None };
                self.build(tm, buf, d, s, flags, ts, &[]);
                Some((s.t, false))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(&self, tm: &Template, buf: &mut Vec<u8>, d: usize, s: Spec, flags: u8, ts: Option<(u32, u32)>, payload: &[u8]) {
        let o = 1 - d;
        let (src, dst, sport, dport) = if d == C2S {
            (self.ep.client, self.ep.server, self.ep.cport, self.ep.sport)
        } else {
            (self.ep.server, self.ep.client, self.ep.sport, self.ep.cport)
        };
        let (src_mac, dst_mac) = if d == C2S { (self.cmac, GATEWAY_MAC) } else { (GATEWAY_MAC, self.cmac) };
        net::build(
            buf,
            &net::Seg {
                src_mac,
                dst_mac,
                src,
                dst,
                sport,
                dport,
                ttl: self.ep.ttl[d],
                ip_id: self.ip_id[d],
                seq: tm.next_seq[d].wrapping_add(self.delta[d]).wrapping_add(s.seq_off as u32),
                ack: tm.next_seq[o].wrapping_add(self.delta[o]).wrapping_add(s.ack_off as u32),
                flags,
                window: tm.window[d],
                ts,
                payload,
            },
        );
    }
}
