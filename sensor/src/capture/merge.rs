//! Several capture files read as one, in timestamp order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use super::{CaptureError, CaptureFile, Item, Packet, PacketIter};

/// Several files read as one capture, in timestamp order: a k-way merge of
/// their [`PacketIter`]s keyed on `(ts_ns, file index)`, so ties go to the
/// lower index and each file keeps its record order. A file's error is
/// yielded once, right after that file's last good packet, and the other
/// files go on.
pub struct Merged<'a> {
    iters: Vec<PacketIter<'a>>,
    heads: Vec<Option<Item<'a>>>,
    /// Timestamp of each file's last yielded packet (the key of its error).
    last_ts: Vec<i64>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl fmt::Debug for Merged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merged").field("files", &self.iters.len()).field("pending", &self.heap.len()).finish()
    }
}

impl<'a> Merged<'a> {
    /// Merge `files`; packet `source` is the index in `files`.
    pub fn new(files: &[&'a CaptureFile]) -> Self {
        Self::from_iters(files.iter().map(|f| f.packets()))
    }

    /// Merge iterators; packet `source` is the position in `iters`.
    pub fn from_iters(iters: impl IntoIterator<Item = PacketIter<'a>>) -> Self {
        let iters: Vec<PacketIter<'a>> = iters.into_iter().enumerate().map(|(i, it)| it.with_source(i)).collect();
        let n = iters.len();
        let mut m = Merged { iters, heads: (0..n).map(|_| None).collect(), last_ts: vec![i64::MIN; n], heap: BinaryHeap::with_capacity(n) };
        // One file needs no merge: `next` hands its records on directly.
        if n > 1 {
            for i in 0..n {
                m.advance(i);
            }
        }
        m
    }

    /// Pull file `i`'s next item into its head slot and the heap.
    fn advance(&mut self, i: usize) {
        let next = self.iters.get_mut(i).and_then(Iterator::next);
        let key = match &next {
            Some(Ok(p)) => p.ts_ns,
            Some(Err(_)) => self.last_ts[i],
            None => return,
        };
        self.heads[i] = next;
        self.heap.push(Reverse((key, i)));
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let [only] = self.iters.as_mut_slice() {
            return only.next();
        }
        let Reverse((_, i)) = self.heap.pop()?;
        let item = self.heads.get_mut(i)?.take()?;
        if let Ok(p) = &item {
            self.last_ts[i] = p.ts_ns;
        }
        self.advance(i);
        Some(item)
    }
}

impl std::iter::FusedIterator for Merged<'_> {}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

    fn merged(files: &[&CaptureFile]) -> Vec<Result<(usize, Vec<u8>), String>> {
        Merged::new(files).map(|r| r.map(|p| (p.source, p.data.to_vec())).map_err(|e| e.to_string())).collect()
    }

    #[test]
    fn merge_orders_by_time_then_file_then_record() {
        let a = open("a", pcap(false, false, 1, &[(1, 0, b"a1"), (3, 0, b"a3"), (3, 0, b"a3'"), (5, 0, b"a5")]));
        let b = open("b", pcap(true, true, 1, &[(1, 0, b"b1"), (2, 0, b"b2"), (3, 0, b"b3")]));
        let mut ng = shb(false);
        ng.extend(idb(false, 1, 0, Some(9), None));
        ng.extend(epb(false, 0, 2 * S as u64, b"c2"));
        ng.extend(epb(false, 0, 4 * S as u64, b"c4"));
        let c = open("c", ng);
        let want: Vec<Result<(usize, Vec<u8>), String>> =
            [(0, "a1"), (1, "b1"), (1, "b2"), (2, "c2"), (0, "a3"), (0, "a3'"), (1, "b3"), (2, "c4"), (0, "a5")]
                .iter()
                .map(|(s, d)| Ok((*s, d.as_bytes().to_vec())))
                .collect();
        assert_eq!(merged(&[&a, &b, &c]), want);
        // Deterministic.
        assert_eq!(merged(&[&a, &b, &c]), want);
        assert_eq!(merged(&[]), vec![]);
    }

    #[test]
    fn merge_keeps_file_order_when_a_clock_steps_back() {
        let a = open("a", pcap(false, false, 1, &[(5, 0, b"a5"), (1, 0, b"a1")]));
        let b = open("b", pcap(false, false, 1, &[(3, 0, b"b3")]));
        let got: Vec<_> = merged(&[&a, &b]).into_iter().map(|r| r.expect("ok").1).collect();
        assert_eq!(got, vec![b"b3".to_vec(), b"a5".to_vec(), b"a1".to_vec()]);
    }

    #[test]
    fn merge_yields_an_error_in_place_and_goes_on() {
        let mut bad = pcap(false, false, 1, &[(1, 0, b"x1"), (4, 0, b"x4-cut")]);
        bad.truncate(bad.len() - 2);
        let x = open("x.pcap", bad);
        let y = open("y.pcap", pcap(false, false, 1, &[(2, 0, b"y2"), (3, 0, b"y3"), (5, 0, b"y5")]));
        let got = merged(&[&x, &y]);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], Ok((0, b"x1".to_vec())));
        let err = got[1].clone().expect_err("x's error right after x1");
        assert!(err.starts_with("x.pcap: truncated packet record at byte 42"), "{err}");
        assert_eq!(got[2..], [Ok((1, b"y2".to_vec())), Ok((1, b"y3".to_vec())), Ok((1, b"y5".to_vec()))]);
    }
}
