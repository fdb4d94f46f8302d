//! Batches of packets from the interface readers, and the merge that hands
//! them to the engine in time order.
//!
//! Each reader delivers its own packets in the order libpcap gives them
//! (capture order) with a *frontier*: a time it promises not to deliver
//! anything older than (its newest packet, or, on an idle link, the wall
//! clock less the read timeout). A packet is released when it is the oldest
//! head among the readers and no reader with nothing queued could still
//! deliver an older one (its frontier has passed the packet), or when it has
//! waited `max_hold` of wall-clock time (a stalled reader does not stall the
//! others). With one interface every packet is released as it arrives.

use std::collections::VecDeque;

/// One captured packet within a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct PktMeta {
    /// Capture time, ns since the Unix epoch.
    pub ts_ns: i64,
    /// Offset of its bytes in [`Batch::data`].
    pub start: u32,
    /// Bytes captured.
    pub caplen: u32,
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

/// Packets of one interface, copied out of libpcap's ring.
#[derive(Debug, Default)]
pub struct Batch {
    /// Index of the interface (reader) the packets came from.
    pub source: usize,
    /// The interface's link type (DLT).
    pub linktype: u32,
    /// The packets, in capture order.
    pub pkts: Vec<PktMeta>,
    /// Their bytes, one after the other.
    pub data: Vec<u8>,
    /// The reader delivers nothing older than this from now on.
    pub frontier: i64,
}

impl Batch {
    /// An empty batch of interface `source` (frontier: none yet).
    pub fn new(source: usize, linktype: u32) -> Self {
        Batch { source, linktype, pkts: Vec::new(), data: Vec::new(), frontier: i64::MIN }
    }

    /// Append a packet (its bytes copied); the frontier moves up to its time.
    pub fn push(&mut self, ts_ns: i64, data: &[u8], orig_len: u32) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(data);
        self.pkts.push(PktMeta { ts_ns, start, caplen: data.len() as u32, orig_len });
        self.frontier = self.frontier.max(ts_ns);
    }

    /// Packet `i` and its bytes.
    pub fn packet(&self, i: usize) -> (&PktMeta, &[u8]) {
        let m = &self.pkts[i];
        (m, &self.data[m.start as usize..(m.start + m.caplen) as usize])
    }
}

/// From a reader to the engine thread.
#[derive(Debug)]
pub enum Msg {
    /// Packets (or none: a heartbeat carrying only the frontier).
    Batch(Batch),
    /// The reader stopped (shutdown, count reached, or an error).
    Done(usize),
}

struct Source {
    queue: VecDeque<(Batch, usize)>,
    frontier: i64,
    done: bool,
}

/// The k-way merge of the readers' batches.
pub struct Merger {
    sources: Vec<Source>,
    /// Packets held here.
    pub held_packets: usize,
    /// Bytes of packet data held here.
    pub held_bytes: usize,
}

/// A batch fully handed to the engine: its size, for the queue accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// Packets in the batches consumed.
    pub packets: usize,
    /// Their bytes of packet data.
    pub bytes: usize,
}

impl Merger {
    /// A merge of `n` readers, nothing held.
    pub fn new(n: usize) -> Self {
        Merger {
            sources: (0..n).map(|_| Source { queue: VecDeque::new(), frontier: i64::MIN, done: false }).collect(),
            held_packets: 0,
            held_bytes: 0,
        }
    }

    /// Take a reader's message: queue its packets (a heartbeat only moves the
    /// frontier), or mark the reader done.
    pub fn push(&mut self, m: Msg) {
        match m {
            Msg::Batch(b) => {
                let Some(s) = self.sources.get_mut(b.source) else { return };
                s.frontier = s.frontier.max(b.frontier);
                if !b.pkts.is_empty() {
                    self.held_packets += b.pkts.len();
                    self.held_bytes += b.data.len();
                    s.queue.push_back((b, 0));
                }
            }
            Msg::Done(i) => {
                if let Some(s) = self.sources.get_mut(i) {
                    s.done = true;
                }
            }
        }
    }

    /// Every reader has said it is done.
    pub fn all_done(&self) -> bool {
        self.sources.iter().all(|s| s.done)
    }

    /// No packet is held.
    pub fn is_empty(&self) -> bool {
        self.held_packets == 0
    }

    /// No reader can deliver anything older than this.
    pub fn watermark(&self) -> i64 {
        self.sources.iter().filter(|s| !s.done && s.queue.is_empty()).map(|s| s.frontier).min().unwrap_or(i64::MAX)
    }

    /// The next packet to process, if one may go: `(source, batch index)`.
    /// `force_before`: packets older than this go whatever the watermark.
    fn next_ready(&self, force_before: i64) -> Option<usize> {
        let mut best: Option<(i64, usize)> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if let Some((b, cur)) = s.queue.front() {
                let ts = b.pkts[*cur].ts_ns;
                if best.is_none_or(|(t, _)| ts < t) {
                    best = Some((ts, i));
                }
            }
        }
        let (ts, i) = best?;
        (ts <= self.watermark() || ts < force_before).then_some(i)
    }

    /// Hand every packet that may go to `f` in time order; returns what was
    /// freed (whole batches consumed).
    pub fn release(&mut self, force_before: i64, mut f: impl FnMut(&Batch, usize)) -> Freed {
        let mut freed = Freed { packets: 0, bytes: 0 };
        while let Some(i) = self.next_ready(force_before) {
            let s = &mut self.sources[i];
            let Some((b, cur)) = s.queue.front_mut() else { break };
            f(b, *cur);
            *cur += 1;
            if *cur == b.pkts.len() {
                freed.packets += b.pkts.len();
                freed.bytes += b.data.len();
                s.queue.pop_front();
            }
        }
        self.held_packets -= freed.packets;
        self.held_bytes -= freed.bytes;
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(source: usize, ts: &[i64]) -> Msg {
        let mut b = Batch::new(source, 1);
        for &t in ts {
            b.push(t, &[t as u8], 60);
        }
        Msg::Batch(b)
    }

    fn drain(m: &mut Merger, force: i64) -> Vec<(usize, i64)> {
        let mut got = Vec::new();
        m.release(force, |b, i| got.push((b.source, b.pkts[i].ts_ns)));
        got
    }

    #[test]
    fn one_source_passes_through() {
        let mut m = Merger::new(1);
        m.push(batch(0, &[5, 3, 9]));
        // capture order, even when a timestamp steps back
        assert_eq!(drain(&mut m, i64::MIN), vec![(0, 5), (0, 3), (0, 9)]);
        assert!(m.is_empty());
    }

    #[test]
    fn two_sources_merge_by_time_and_wait_for_the_slow_one() {
        let mut m = Merger::new(2);
        m.push(batch(0, &[10, 20, 30]));
        // source 1 has said nothing: nothing may go yet
        assert!(drain(&mut m, i64::MIN).is_empty());
        m.push(batch(1, &[15, 25]));
        // source 1 is empty again after 25: up to 25 may go, 30 waits
        assert_eq!(drain(&mut m, i64::MIN), vec![(0, 10), (1, 15), (0, 20), (1, 25)]);
        // a heartbeat from source 1 lets 30 go
        let mut hb = Batch::new(1, 1);
        hb.frontier = 40;
        m.push(Msg::Batch(hb));
        assert_eq!(drain(&mut m, i64::MIN), vec![(0, 30)]);
        assert!(m.is_empty());
    }

    #[test]
    fn a_stalled_or_finished_source_does_not_hold_the_others() {
        let mut m = Merger::new(2);
        m.push(batch(0, &[10, 20]));
        assert_eq!(drain(&mut m, 15), vec![(0, 10)]);
        m.push(Msg::Done(1));
        assert_eq!(drain(&mut m, i64::MIN), vec![(0, 20)]);
        assert_eq!((m.held_packets, m.held_bytes), (0, 0));
    }
}
