//! Bounded, in-order TCP byte delivery for one direction of one flow.
//!
//! Heads up! Sequence arithmetic is modulo 2^32 (RFC 793 §3.3, RFC 1982).
//!
//! We only reassemble what the TLS parser still needs (the handshake and the
//! first record headers); the flow stops feeding the reassembler once the
//! session is classified. Policy, in the terms Suricata and Zeek use:
//! - **Retransmissions and overlaps:** the first copy of a byte wins; later
//!   copies are trimmed and counted (`retransmitted_bytes`).
//! - **Out of order:** segments ahead of the next expected byte wait in a
//!   buffer capped by [`Limits`] (bytes and segment count).
//! - **Lost segments:** a hole is given up on (reported to the consumer as a
//!   [`Chunk::Gap`] of the hole's length, counted in `gaps`) when the peer
//!   acknowledges data beyond it, when the buffer cap would be exceeded
//!   (`overflows`), or when the flow ends.
//!
//! Memory per direction is at most `max_bytes` of payload plus
//! `max_segments` small headers, whatever the input.

/// Caps for one direction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Out-of-order payload bytes held.
    pub max_bytes: usize,
    /// Out-of-order segments held.
    pub max_segments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 64 * 1024, max_segments: 64 }
    }
}

/// What the reassembler hands to its consumer, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the stream; `segment_start` when the chunk begins at
    /// the start of a captured segment.
    Data { bytes: &'a [u8], segment_start: bool },
    /// This many bytes were never seen and will not be.
    Gap(u32),
}

/// Counters, summed into the stats record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub retransmitted_bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub overflows: u64,
    pub out_of_order: u64,
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Next expected sequence number, once known.
    next: Option<u32>,
    /// Out-of-order segments: (seq, bytes), not necessarily disjoint.
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    pub counters: Counters,
}

fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Reassembler {
    /// Start the stream at `seq` (ISN + 1 after a SYN, or the first data seen).
    pub fn sync(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq);
        }
    }

    /// Out-of-order segments are held, waiting for a hole to fill.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn is_synced(&self) -> bool {
        self.next.is_some()
    }

    pub fn next_seq(&self) -> Option<u32> {
        self.next
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.pending_bytes + self.pending.capacity() * std::mem::size_of::<(u32, Vec<u8>)>()
    }

    /// Drop all buffered data (the consumer needs no more bytes).
    pub fn release(&mut self) {
        self.pending = Vec::new();
        self.pending_bytes = 0;
    }

    /// Add a segment; deliver whatever became contiguous.
    pub fn segment(&mut self, seq: u32, data: &[u8], lim: &Limits, out: &mut dyn FnMut(Chunk<'_>)) {
        if data.is_empty() {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let rel = seq.wrapping_sub(next) as i32;
        if rel <= 0 {
            let skip = rel.unsigned_abs() as usize;
            if skip >= data.len() {
                self.counters.retransmitted_bytes += data.len() as u64;
                return;
            }
            self.counters.retransmitted_bytes += skip as u64;
            let fresh = &data[skip..];
            self.next = Some(next.wrapping_add(fresh.len() as u32));
            out(Chunk::Data { bytes: fresh, segment_start: skip == 0 });
            self.drain(out);
            return;
        }
        // Ahead of the stream: hold it, within the caps.
        self.counters.out_of_order += 1;
        if data.len() > lim.max_bytes {
            // Can never fit: give up on the hole now and deliver.
            self.skip_to(seq, out);
            self.segment(seq, data, lim, out);
            return;
        }
        while self.pending_bytes + data.len() > lim.max_bytes || self.pending.len() >= lim.max_segments {
            self.counters.overflows += 1;
            if !self.skip_hole(out) {
                break;
            }
        }
        let next = self.next.unwrap_or(seq);
        if !after(seq, next) {
            // Skipping holes caught up with this segment.
            self.segment(seq, data, lim, out);
            return;
        }
        let at = self.pending.partition_point(|(s, _)| !after(*s, seq));
        self.pending.insert(at, (seq, data.to_vec()));
        self.pending_bytes += data.len();
    }

    /// The peer acknowledged up to `ack`: a hole below it will never be filled.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Chunk<'_>)) {
        while let (Some(next), Some((first, _))) = (self.next, self.pending.first()) {
            if after(ack, next) && after(ack, *first) && after(*first, next) {
                self.skip_hole(out);
            } else {
                break;
            }
        }
    }

    /// The peer acknowledged up to `ack` with nothing held out of order:
    /// bytes beyond the last one delivered (less one sequence number for
    /// this direction's FIN, if it sent one) were sent and received, but
    /// the capture lost them. Report them as a gap (a trailing hole that no
    /// later segment would reveal). Call it only while the consumer still
    /// wants this direction's bytes: once it stops feeding segments, `next`
    /// stays behind.
    pub fn acked_tail(&mut self, ack: u32, fin: bool, out: &mut dyn FnMut(Chunk<'_>)) {
        if !self.pending.is_empty() {
            return;
        }
        let Some(next) = self.next else { return };
        let ahead = ack.wrapping_sub(next).wrapping_sub(u32::from(fin)) as i32;
        // A window's worth at most: anything larger is not an ACK of this stream.
        if ahead > 0 && ahead < (1 << 30) {
            let hole = ahead as u32;
            self.counters.gaps += 1;
            self.counters.gap_bytes += u64::from(hole);
            out(Chunk::Gap(hole));
            self.next = Some(next.wrapping_add(hole));
        }
    }

    /// End of stream: deliver everything held, reporting holes as gaps.
    pub fn flush(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        while self.skip_hole(out) {}
    }

    /// Give up on the first hole: report it and deliver what follows.
    fn skip_hole(&mut self, out: &mut dyn FnMut(Chunk<'_>)) -> bool {
        let Some(&(seq, _)) = self.pending.first() else {
            return false;
        };
        self.skip_to(seq, out);
        self.drain(out);
        true
    }

    fn skip_to(&mut self, seq: u32, out: &mut dyn FnMut(Chunk<'_>)) {
        if let Some(next) = self.next {
            if after(seq, next) {
                let hole = seq.wrapping_sub(next);
                self.counters.gaps += 1;
                self.counters.gap_bytes += u64::from(hole);
                out(Chunk::Gap(hole));
                self.next = Some(seq);
            }
        }
    }

    fn drain(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(next) = self.next {
            let Some((seq, _)) = self.pending.first() else { break };
            if after(*seq, next) {
                break;
            }
            let (seq, bytes) = self.pending.remove(0);
            self.pending_bytes -= bytes.len();
            let skip = next.wrapping_sub(seq) as usize;
            if skip >= bytes.len() {
                self.counters.retransmitted_bytes += bytes.len() as u64;
                continue;
            }
            self.counters.retransmitted_bytes += skip as u64;
            self.next = Some(next.wrapping_add((bytes.len() - skip) as u32));
            out(Chunk::Data { bytes: &bytes[skip..], segment_start: skip == 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed segments; return the delivered stream with gaps as '?' bytes.
    fn run(segs: &[(u32, &[u8])], lim: Limits) -> (Vec<u8>, Counters) {
        let mut r = Reassembler::default();
        let mut got = Vec::new();
        for (seq, d) in segs {
            r.segment(*seq, d, &lim, &mut |c| match c {
                Chunk::Data { bytes, .. } => got.extend_from_slice(bytes),
                Chunk::Gap(n) => got.extend(std::iter::repeat_n(b'?', n as usize)),
            });
        }
        r.flush(&mut |c| match c {
            Chunk::Data { bytes, .. } => got.extend_from_slice(bytes),
            Chunk::Gap(n) => got.extend(std::iter::repeat_n(b'?', n as usize)),
        });
        (got, r.counters)
    }

    #[test]
    fn in_order_retransmit_overlap_out_of_order() {
        let (s, c) = run(&[(100, b"abc"), (103, b"def"), (101, b"bcdXY"), (110, b"kl"), (106, b"ghij")], Limits::default());
        assert_eq!(s, b"abcdefghijkl");
        assert!(c.retransmitted_bytes >= 4);
        assert_eq!(c.gaps, 0);
    }

    #[test]
    fn an_ack_past_the_last_byte_is_a_trailing_hole() {
        let mut r = Reassembler::default();
        let mut gaps = Vec::new();
        let lim = Limits::default();
        r.sync(100);
        r.segment(100, b"abcd", &lim, &mut |_| {});
        // The ACK of what was seen, and of a FIN right after it: no hole.
        r.acked_tail(104, false, &mut |c| if let Chunk::Gap(n) = c { gaps.push(n) });
        r.acked_tail(105, true, &mut |c| if let Chunk::Gap(n) = c { gaps.push(n) });
        assert!(gaps.is_empty(), "{gaps:?}");
        // Six more bytes acknowledged that the capture never had.
        r.acked_tail(110, false, &mut |c| if let Chunk::Gap(n) = c { gaps.push(n) });
        assert_eq!(gaps, [6]);
        assert_eq!((r.counters.gaps, r.counters.gap_bytes, r.next_seq()), (1, 6, Some(110)));
        // An old ACK, or one from another universe, is nothing.
        r.acked_tail(90, false, &mut |_| panic!("no gap"));
        r.acked_tail(110u32.wrapping_add(1 << 31), false, &mut |_| panic!("no gap"));
    }

    #[test]
    fn lost_segment_becomes_gap_at_flush() {
        let (s, c) = run(&[(1, b"ab"), (5, b"ef")], Limits::default());
        assert_eq!(s, b"ab??ef");
        assert_eq!((c.gaps, c.gap_bytes), (1, 2));
    }

    #[test]
    fn sequence_wraparound() {
        let (s, _) = run(&[(u32::MAX - 1, b"ab"), (0, b"cd")], Limits::default());
        assert_eq!(s, b"abcd");
    }

    #[test]
    fn ack_past_hole_releases() {
        let mut r = Reassembler::default();
        let mut got = Vec::new();
        let lim = Limits::default();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data { bytes, .. } => got.extend_from_slice(bytes),
            Chunk::Gap(n) => got.extend(std::iter::repeat_n(b'?', n as usize)),
        };
        r.segment(10, b"aa", &lim, &mut sink);
        r.segment(14, b"cc", &lim, &mut sink);
        r.acked(16, &mut sink);
        assert_eq!(got, b"aa??cc");
    }

    #[test]
    fn ten_thousand_overlapping_segments_stay_bounded() {
        let lim = Limits { max_bytes: 4096, max_segments: 16 };
        let mut r = Reassembler::default();
        let mut delivered = 0usize;
        r.segment(0, b"x", &lim, &mut |_| {});
        for i in 0..10_000u32 {
            r.segment(1000 + (i % 50), &[7u8; 100], &lim, &mut |c| {
                if let Chunk::Data { bytes, .. } = c {
                    delivered += bytes.len();
                }
            });
            assert!(r.pending_bytes <= lim.max_bytes);
            assert!(r.pending.len() <= lim.max_segments);
        }
        assert!(r.counters.overflows > 0 || r.counters.retransmitted_bytes > 0);
    }

    /// Compare with an obviously-correct model: a byte map filled first-wins.
    #[test]
    fn matches_naive_model_on_random_orders() {
        use proptest::prelude::*;
        proptest!(|(cuts in proptest::collection::vec(1usize..40, 1..20), order in proptest::collection::vec(0usize..1000, 1..40))| {
            let stream: Vec<u8> = (0..cuts.iter().sum::<usize>()).map(|i| (i % 251) as u8).collect();
            let mut segs = Vec::new();
            let mut at = 0;
            for c in &cuts { segs.push((at as u32 + 5000, &stream[at..at + c])); at += c; }
            // Deliver the first segment first (it defines the start), then a shuffled
            // selection with duplicates; then everything once more in order.
            let mut plan = vec![segs[0]];
            for o in &order { plan.push(segs[o % segs.len()]); }
            plan.extend(segs.iter().copied());
            let (got, c) = run(&plan, Limits { max_bytes: 1 << 20, max_segments: 1 << 10 });
            prop_assert_eq!(c.gaps, 0);
            prop_assert_eq!(got, stream);
        });
    }
}
