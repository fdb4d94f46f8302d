//! Bounded, in-order TCP byte delivery for one direction of one flow.
//!
//! Heads up! Sequence arithmetic is modulo 2^32 (RFC 793 §3.3, RFC 1982).
//!
//! We only reassemble what the TLS parser still needs (the handshake and the
//! first record headers); the flow stops feeding the reassembler once the
//! session is classified. Policy, in the terms Suricata and Zeek use:
//! - **Retransmissions and overlaps:** bytes already delivered are never
//!   revised: a later copy of them is trimmed and counted
//!   (`retransmitted_bytes`), as a receiving stack has already handed them
//!   to its application. Among segments held out of order, the one that
//!   starts lower wins the bytes they share, and at the same start the one
//!   that came first: Suricata's default (`bsd`) overlap policy. A trimmed
//!   copy whose bytes differ from the winner's is counted
//!   (`overlap_diff_data`, Suricata's `tcp.overlap_diff_data`), compared
//!   against a copy of the first [`SEEN_BYTES`] bytes of the direction,
//!   kept until the peer acknowledges them (then any copy is a duplicate
//!   to the receiver too) or the consumer reads no more.
//! - **Out of order:** segments ahead of the next expected byte wait in a
//!   buffer capped by [`Limits`] (bytes and segment count).
//! - **Lost segments:** a hole is given up on (reported to the consumer as a
//!   [`Chunk::Gap`] of the hole's length, counted in `gaps`) when the peer
//!   acknowledges data beyond it, when the buffer cap would be exceeded
//!   (`overflows`), or when the flow ends.
//!
//! Memory per direction is at most `max_bytes` of payload plus
//! `max_segments` small headers, plus the [`SEEN_BYTES`] copy, whatever the
//! input.

/// Bytes at the start of a direction kept, once delivered, to tell a
/// retransmission that carries different bytes (an evasion attempt) from an
/// honest one: enough for the record header and a ClientHello (the copy is
/// one 2 KiB allocation, with its header).
pub const SEEN_BYTES: usize = 2048 - 8;

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
    /// The next bytes of the stream.
    Data {
        /// The bytes, in stream order.
        bytes: &'a [u8],
        /// The chunk begins at the start of a captured segment.
        segment_start: bool,
    },
    /// This many bytes were never seen and will not be.
    Gap(u32),
}

/// Counters, summed into the stats record. Those that count segments are
/// 32-bit (saturating), so that a flow stays within its allocation size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes received again after they were delivered (dropped).
    pub retransmitted_bytes: u64,
    /// Bytes of the holes given up on.
    pub gap_bytes: u64,
    /// Holes given up on (each one a [`Chunk::Gap`]).
    pub gaps: u32,
    /// Times the out-of-order buffer was full and a hole was given up on to make room.
    pub overflows: u32,
    /// Segments that arrived ahead of the stream.
    pub out_of_order: u32,
    /// Segments whose copy of bytes already received differed from the
    /// copy that won (within the first [`SEEN_BYTES`] of the direction).
    pub overlap_diff_data: u32,
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Next expected sequence number, once known.
    next: Option<u32>,
    /// Out-of-order segments: (seq, bytes), not necessarily disjoint.
    pending: Vec<(u32, Vec<u8>)>,
    /// (At most `max_segments` segments of at most 64 KiB.)
    pending_bytes: u32,
    /// [`Reassembler::forget_seen`] was called: no copy is kept any more.
    seen_over: bool,
    /// The first bytes delivered, kept to compare later copies with
    /// (allocated at the first delivery, so a flow without payload has none).
    seen: Option<Box<Seen>>,
    /// This direction's counters.
    pub counters: Counters,
}

/// A copy of the bytes delivered from the first delivery on, up to
/// [`SEEN_BYTES`] and the first hole: one fixed allocation, so that keeping
/// it costs one allocation a direction, not a growing buffer's several.
#[derive(Debug)]
struct Seen {
    /// Sequence number of `bytes[0]`.
    base: u32,
    len: u32,
    bytes: [u8; SEEN_BYTES],
}

impl Seen {
    fn kept(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
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

    /// The peer acknowledged up to `ack`: once the receiver has all the
    /// kept bytes, a later copy of them is a duplicate to it too, whatever
    /// it carries, so the copy goes (an idle flow holds no buffer). Returns
    /// the heap bytes freed. Cheap enough for every packet.
    #[inline]
    pub fn ack_seen(&mut self, ack: u32) -> usize {
        let Some(seen) = self.seen.as_deref() else { return 0 };
        if seen.len == 0 || after(seen.base.wrapping_add(seen.len), ack) {
            return 0;
        }
        let freed = std::mem::size_of::<Seen>();
        self.forget_seen();
        freed
    }

    /// True once the stream's start is known ([`Reassembler::sync`] or the first data).
    pub fn is_synced(&self) -> bool {
        self.next.is_some()
    }

    /// The next sequence number expected, once known.
    pub fn next_seq(&self) -> Option<u32> {
        self.next
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.pending_bytes as usize
            + self.pending.capacity() * std::mem::size_of::<(u32, Vec<u8>)>()
            + self.seen.as_ref().map_or(0, |_| std::mem::size_of::<Seen>())
    }

    /// Drop all buffered data (the consumer needs no more bytes).
    pub fn release(&mut self) {
        self.pending = Vec::new();
        self.pending_bytes = 0;
        self.forget_seen();
    }

    /// Drop the copy of delivered bytes (the consumer reads no more, so
    /// which copy of a byte wins no longer matters).
    pub fn forget_seen(&mut self) {
        self.seen = None;
        self.seen_over = true;
    }

    /// Hand the next bytes to the consumer, keeping the first of them.
    #[inline]
    fn deliver(&mut self, next: u32, bytes: &[u8], segment_start: bool, out: &mut dyn FnMut(Chunk<'_>)) {
        if self.seen.is_none() && !self.seen_over {
            self.seen = Some(Box::new(Seen { base: next, len: 0, bytes: [0; SEEN_BYTES] }));
        }
        if let Some(seen) = self.seen.as_deref_mut() {
            let have = seen.len as usize;
            if have < SEEN_BYTES && next.wrapping_sub(seen.base) as usize == have {
                let take = bytes.len().min(SEEN_BYTES - have);
                seen.bytes[have..have + take].copy_from_slice(&bytes[..take]);
                seen.len += take as u32;
            }
        }
        self.next = Some(next.wrapping_add(bytes.len() as u32));
        out(Chunk::Data { bytes, segment_start });
    }

    /// `old` (at `seq`) is a copy of bytes already delivered: count it if
    /// it differs from the delivered copy, as far as that is kept.
    fn compare_seen(&mut self, seq: u32, old: &[u8]) {
        let Some(seen) = self.seen.as_deref() else { return };
        let off = seq.wrapping_sub(seen.base) as i32;
        let (from, old) = if off < 0 {
            let cut = off.unsigned_abs() as usize;
            if cut >= old.len() {
                return;
            }
            (0, &old[cut..])
        } else {
            (off as usize, old)
        };
        let Some(kept) = seen.kept().get(from..) else { return };
        let n = kept.len().min(old.len());
        if kept[..n] != old[..n] {
            self.counters.overlap_diff_data = self.counters.overlap_diff_data.saturating_add(1);
        }
    }

    /// Add a segment; deliver whatever became contiguous.
    pub fn segment(&mut self, seq: u32, data: &[u8], lim: &Limits, out: &mut dyn FnMut(Chunk<'_>)) {
        if data.is_empty() {
            return;
        }
        let next = match self.next {
            Some(n) => n,
            None => {
                self.sync(seq);
                seq
            }
        };
        let rel = seq.wrapping_sub(next) as i32;
        if rel <= 0 {
            let skip = rel.unsigned_abs() as usize;
            if skip > 0 {
                self.compare_seen(seq, &data[..skip.min(data.len())]);
            }
            if skip >= data.len() {
                self.counters.retransmitted_bytes += data.len() as u64;
                return;
            }
            self.counters.retransmitted_bytes += skip as u64;
            self.deliver(next, &data[skip..], skip == 0, out);
            self.drain(out);
            return;
        }
        // Ahead of the stream: hold it, within the caps.
        self.counters.out_of_order = self.counters.out_of_order.saturating_add(1);
        if data.len() > lim.max_bytes {
            // Can never fit: give up on the hole now and deliver.
            self.skip_to(seq, out);
            self.segment(seq, data, lim, out);
            return;
        }
        while self.pending_bytes as usize + data.len() > lim.max_bytes || self.pending.len() >= lim.max_segments {
            self.counters.overflows = self.counters.overflows.saturating_add(1);
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
        self.pending_bytes = self.pending_bytes.saturating_add(data.len() as u32);
    }

    /// The peer acknowledged up to `ack`: a hole below it will never be filled.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Chunk<'_>)) {
        self.ack_seen(ack);
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
        let Some(hole) = self.tail_hole(ack, fin) else { return };
        self.counters.gaps += 1;
        self.counters.gap_bytes += u64::from(hole);
        out(Chunk::Gap(hole));
        self.next = self.next.map(|n| n.wrapping_add(hole));
    }

    /// The trailing hole that [`Reassembler::acked_tail`] would report for
    /// `ack` (also a sender's own next sequence number), if any. Cheap
    /// enough for every packet.
    #[inline]
    pub fn tail_hole(&self, ack: u32, fin: bool) -> Option<u32> {
        let next = self.next?;
        if !self.pending.is_empty() {
            return None;
        }
        let ahead = ack.wrapping_sub(next).wrapping_sub(u32::from(fin)) as i32;
        // A window's worth at most: anything larger is not an ACK of this
        // stream. Before this direction's FIN was captured, one sequence
        // number ahead is that FIN, captured after a packet that follows it
        // (seen on real captures), not a lost byte.
        let least = if fin { 1 } else { 2 };
        (ahead >= least && ahead < (1 << 30)).then_some(ahead as u32)
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
                self.counters.gaps = self.counters.gaps.saturating_add(1);
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
            self.pending_bytes = self.pending_bytes.saturating_sub(bytes.len() as u32);
            let skip = next.wrapping_sub(seq) as usize;
            if skip > 0 {
                self.compare_seen(seq, &bytes[..skip.min(bytes.len())]);
            }
            if skip >= bytes.len() {
                self.counters.retransmitted_bytes += bytes.len() as u64;
                continue;
            }
            self.counters.retransmitted_bytes += skip as u64;
            self.deliver(next, &bytes[skip..], skip == 0, out);
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

    /// Bytes delivered are never revised; among held segments the lower
    /// start wins, and at the same start the first to come (Suricata's
    /// `bsd` policy). Copies that differ from the winner are counted.
    #[test]
    fn overlap_policy_and_different_data() {
        // A retransmission lying about delivered bytes: trimmed, counted.
        let (s, c) = run(&[(100, b"abcd"), (102, b"XYef")], Limits::default());
        assert_eq!(s, b"abcdef");
        assert_eq!(c.overlap_diff_data, 1);
        // The same bytes again: not counted.
        let (s, c) = run(&[(100, b"abcd"), (102, b"cdef")], Limits::default());
        assert_eq!((s.as_slice(), c.overlap_diff_data), (b"abcdef".as_slice(), 0));
        // Held at the same start: the first copy wins.
        let (s, c) = run(&[(100, b"a"), (102, b"cd"), (102, b"XY"), (101, b"b")], Limits::default());
        assert_eq!((s.as_slice(), c.overlap_diff_data), (b"abcd".as_slice(), 1));
        // A held segment reached over by a later one that starts lower: the
        // lower start wins the shared bytes (bsd), and the difference counts.
        let (s, c) = run(&[(100, b"a"), (103, b"dd"), (102, b"cXe"), (101, b"b")], Limits::default());
        assert_eq!((s.as_slice(), c.overlap_diff_data), (b"abcXe".as_slice(), 1));
        // Past the kept copy nothing is compared, and nothing breaks.
        let long = vec![7u8; SEEN_BYTES + 10];
        let (s, c) = run(&[(0, &long), (SEEN_BYTES as u32 + 5, b"zz")], Limits::default());
        assert_eq!((s.len(), c.overlap_diff_data), (SEEN_BYTES + 10, 0));
    }

    #[test]
    fn one_ahead_before_the_fin_is_the_fin_and_two_ahead_is_a_hole() {
        let mut r = Reassembler::default();
        r.sync(100);
        r.segment(100, b"abcd", &Limits::default(), &mut |_| {});
        // A packet sent after the FIN, captured before it: seq/ack 105.
        assert_eq!(r.tail_hole(105, false), None);
        assert_eq!(r.tail_hole(106, false), Some(2));
        assert_eq!(r.tail_hole(106, true), Some(1));
        assert_eq!(r.tail_hole(104, true), None);
    }

    #[test]
    fn an_ack_past_the_last_byte_is_a_trailing_hole() {
        let mut r = Reassembler::default();
        let mut gaps = Vec::new();
        let lim = Limits::default();
        r.sync(100);
        r.segment(100, b"abcd", &lim, &mut |_| {});
        // The ACK of what was seen, and of a FIN right after it: no hole.
        r.acked_tail(104, false, &mut |c| {
            if let Chunk::Gap(n) = c {
                gaps.push(n)
            }
        });
        r.acked_tail(105, true, &mut |c| {
            if let Chunk::Gap(n) = c {
                gaps.push(n)
            }
        });
        assert!(gaps.is_empty(), "{gaps:?}");
        // Six more bytes acknowledged that the capture never had.
        r.acked_tail(110, false, &mut |c| {
            if let Chunk::Gap(n) = c {
                gaps.push(n)
            }
        });
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
            assert!(r.pending_bytes as usize <= lim.max_bytes);
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
