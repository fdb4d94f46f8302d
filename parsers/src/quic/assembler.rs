//! Bounded reassembly of one direction's Initial CRYPTO stream into TLS
//! handshake messages.
//!
//! CRYPTO frames carry `(offset, bytes)` pieces of the TLS handshake and may
//! arrive in any order, duplicated or overlapping (Chrome splits and shuffles
//! its ClientHello on purpose). We keep the contiguous prefix not yet
//! consumed as messages (`buf`, starting at stream offset `base`) plus the
//! pieces that start past it (`pending`).
//!
//! Limits and overflow action: at most [`MAX_CRYPTO_BYTES`] bytes are held
//! (`buf` plus `pending`), no piece may end more than that past `base`, and
//! at most [`MAX_FRAGMENTS`] pieces wait in `pending`. Breaking a limit
//! frees everything and stops the direction ([`Insert::Overflow`], reported
//! once by the caller). On overlap the bytes that arrived first win.

/// Most bytes held per direction.
pub const MAX_CRYPTO_BYTES: usize = 64 * 1024;
/// Most out-of-order pieces held per direction.
pub const MAX_FRAGMENTS: usize = 256;

/// Outcome of [`CryptoStream::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    Ok,
    /// A limit was broken just now; the stream is dead from here on.
    Overflow,
    /// The stream had already overflowed; the data was dropped.
    Dead,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CryptoStream {
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Contiguous bytes from `base` that do not yet form a whole message.
    buf: Vec<u8>,
    /// Pieces starting after `base + buf.len()`.
    pending: Vec<(u64, Vec<u8>)>,
    /// Bytes in `pending`.
    held: usize,
    dead: bool,
}

impl CryptoStream {
    /// Stream offset just past the contiguous data.
    fn contiguous_end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    #[cfg(test)]
    fn is_dead(&self) -> bool {
        self.dead
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity()
            + self.pending.capacity() * std::mem::size_of::<(u64, Vec<u8>)>()
            + self.pending.iter().map(|(_, d)| d.capacity()).sum::<usize>()
    }

    fn kill(&mut self) -> Insert {
        *self = CryptoStream { dead: true, ..Default::default() };
        Insert::Overflow
    }

    /// Add the piece `data` at stream `offset`.
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) -> Insert {
        if self.dead {
            return Insert::Dead;
        }
        let end = offset.saturating_add(data.len() as u64);
        let cur = self.contiguous_end();
        if data.is_empty() || end <= cur {
            return Insert::Ok; // nothing new
        }
        if end - self.base > MAX_CRYPTO_BYTES as u64 {
            return self.kill();
        }
        if offset <= cur {
            // Extends the contiguous prefix (end - base <= MAX keeps buf bounded).
            let skip = (cur - offset) as usize;
            self.buf.extend_from_slice(&data[skip..]);
            self.drain_pending();
        } else {
            if self.pending.iter().any(|(o, d)| *o <= offset && o + d.len() as u64 >= end) {
                return Insert::Ok; // a retransmission of a piece we hold
            }
            if self.pending.len() >= MAX_FRAGMENTS || self.buf.len() + self.held + data.len() > MAX_CRYPTO_BYTES {
                return self.kill();
            }
            self.held += data.len();
            self.pending.push((offset, data.to_vec()));
        }
        Insert::Ok
    }

    /// Move pieces that now touch the contiguous prefix into it.
    fn drain_pending(&mut self) {
        loop {
            let cur = self.contiguous_end();
            let Some(i) = self.pending.iter().position(|(o, _)| *o <= cur) else {
                break;
            };
            let (o, d) = self.pending.swap_remove(i);
            self.held -= d.len();
            let end = o + d.len() as u64;
            if end > cur {
                self.buf.extend_from_slice(&d[(cur - o) as usize..]);
            }
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Hand every complete handshake message of the contiguous prefix to
    /// `f(msg_type, body)` and drop it. A message declaring more than
    /// [`MAX_CRYPTO_BYTES`] kills the stream (returns [`Insert::Overflow`]).
    pub(crate) fn messages(&mut self, mut f: impl FnMut(u8, &[u8])) -> Insert {
        if self.dead {
            return Insert::Dead;
        }
        let mut at = 0usize;
        while let Some(h) = self.buf.get(at..at + 4) {
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if len + 4 > MAX_CRYPTO_BYTES {
                return self.kill();
            }
            let Some(body) = self.buf.get(at + 4..at + 4 + len) else {
                break;
            };
            f(h[0], body);
            at += 4 + len;
        }
        if at > 0 {
            self.base += at as u64;
            if at == self.buf.len() {
                self.buf = Vec::new();
            } else {
                self.buf.drain(..at);
            }
        }
        Insert::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(s: &mut CryptoStream) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        s.messages(|t, b| v.push((t, b.to_vec())));
        v
    }

    #[test]
    fn out_of_order_overlapping_pieces() {
        let msg = [1u8, 0, 0, 6, b'a', b'b', b'c', b'd', b'e', b'f'];
        let mut s = CryptoStream::default();
        assert_eq!(s.insert(7, &msg[7..]), Insert::Ok);
        assert_eq!(s.insert(2, &msg[2..6]), Insert::Ok);
        assert!(msgs(&mut s).is_empty());
        assert_eq!(s.insert(5, &msg[5..9]), Insert::Ok); // overlaps both
        assert!(msgs(&mut s).is_empty());
        assert_eq!(s.insert(0, &msg[..3]), Insert::Ok);
        assert_eq!(msgs(&mut s), vec![(1, b"abcdef".to_vec())]);
        assert_eq!(s.heap_bytes(), 0);
        // Retransmissions of consumed data are ignored.
        assert_eq!(s.insert(0, &msg), Insert::Ok);
        assert!(msgs(&mut s).is_empty());
        // A second message continues at offset 10.
        assert_eq!(s.insert(10, &[2, 0, 0, 0]), Insert::Ok);
        assert_eq!(msgs(&mut s), vec![(2, vec![])]);
    }

    #[test]
    fn limits() {
        let mut s = CryptoStream::default();
        assert_eq!(s.insert(MAX_CRYPTO_BYTES as u64, &[1]), Insert::Overflow);
        assert!(s.is_dead());
        assert_eq!(s.insert(0, &[1]), Insert::Dead);
        let mut s = CryptoStream::default();
        for i in 0..MAX_FRAGMENTS as u64 {
            assert_eq!(s.insert(10 + 2 * i, &[0]), Insert::Ok);
        }
        assert_eq!(s.insert(5000, &[0]), Insert::Overflow);
        let mut s = CryptoStream::default();
        assert_eq!(s.insert(u64::MAX - 1, &[0, 0, 0]), Insert::Overflow);
        // A message declaring 16 MiB.
        let mut s = CryptoStream::default();
        assert_eq!(s.insert(0, &[1, 0xff, 0xff, 0xff]), Insert::Ok);
        assert_eq!(s.messages(|_, _| {}), Insert::Overflow);
    }

    proptest::proptest! {
        /// Against an obviously correct model: a byte map of the stream where
        /// the first write wins, read as messages from offset 0.
        #[test]
        fn matches_naive_model(
            stream in proptest::collection::vec(proptest::num::u8::ANY, 1..600),
            cuts in proptest::collection::vec((0usize..600, 1usize..80), 1..60),
        ) {
            let mut s = CryptoStream::default();
            let mut got = Vec::new();
            for (at, len) in &cuts {
                let at = at % stream.len();
                let end = (at + len).min(stream.len());
                s.insert(at as u64, &stream[at..end]);
                s.messages(|t, b| got.push((t, b.to_vec())));
            }
            // Model: which bytes were covered; messages from the covered prefix.
            let mut covered = vec![false; stream.len()];
            for (at, len) in &cuts {
                let at = at % stream.len();
                for c in covered.iter_mut().take((at + len).min(stream.len())).skip(at) { *c = true; }
            }
            let prefix = covered.iter().position(|c| !c).unwrap_or(stream.len());
            let mut want = Vec::new();
            let mut at = 0;
            while at + 4 <= prefix {
                let len = ((stream[at + 1] as usize) << 16) | ((stream[at + 2] as usize) << 8) | stream[at + 3] as usize;
                if at + 4 + len > prefix { break; }
                want.push((stream[at], stream[at + 4..at + 4 + len].to_vec()));
                at += 4 + len;
            }
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(s.heap_bytes() <= 4 * MAX_CRYPTO_BYTES);
        }
    }
}
