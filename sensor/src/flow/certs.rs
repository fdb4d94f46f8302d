//! Server certificates, summarised once per distinct DER.
//!
//! The same chains come back again and again on a network: every session to
//! one CDN edge, every session through the inspection proxy, carries the
//! same few certificates. Parsing one (x509-parser, two SHA-256 and a SHA-1,
//! a dozen strings) was about 3% of a one-thread replay of the benchmark
//! capture (README, Throughput). [`CertMemo`] keeps the summary of each DER
//! it parsed, shared (`Arc`) by every session that carried it, so a repeat
//! costs a hash of the bytes and a comparison, and the sessions hold one
//! copy of the strings between them instead of one each.
//!
//! Each entry also holds the DER in base64, Suricata's `tls.chain` form,
//! encoded once per distinct certificate and shared like the summary: a
//! session pays a pointer per certificate, not a copy. A certificate's
//! base64 lives as long as the memo or a session still holds it, so the
//! most one flow can pin is its chain (at most [`crate::flow::session::MAX_CHAIN`]
//! certificates of one handshake message, itself capped at 512 KiB), about
//! 4/3 of the DER; the usual cost is nothing, as the chain is shared.
//!
//! Bounded: at most [`MAX_ENTRIES`] certificates and [`MAX_DER_BYTES`] of
//! kept DER and base64; when either is full, the memo is emptied and fills again. The
//! output never depends on it: the DER is compared in full, so a hash
//! collision costs a parse, never a wrong summary. Certificates that do not
//! parse are not kept (the error is worked out again).

use std::sync::Arc;

use ahash::{HashMap, HashMapExt};
use base64::Engine as _;
use pinwatch_parsers::cert::{parse_certificate, CertError, CertSummary};

/// Most certificates remembered.
pub const MAX_ENTRIES: usize = 4096;
/// Most DER and base64 bytes kept (16 MiB).
pub const MAX_DER_BYTES: usize = 16 << 20;

/// One certificate as sessions keep it: its summary, and its DER in
/// standard base64 with padding (Suricata's `tls.chain` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The parsed summary.
    pub summary: CertSummary,
    /// The DER in standard base64 with padding.
    pub der_base64: Box<str>,
}

impl std::ops::Deref for Cert {
    type Target = CertSummary;
    fn deref(&self) -> &CertSummary {
        &self.summary
    }
}

/// Parse one DER certificate into a [`Cert`].
pub fn parse(der: &[u8]) -> Result<Cert, CertError> {
    let summary = parse_certificate(der)?;
    Ok(Cert { summary, der_base64: base64::engine::general_purpose::STANDARD.encode(der).into_boxed_str() })
}

/// Bytes an entry keeps: the DER and its base64.
fn kept_bytes(der: &[u8]) -> usize {
    der.len() + der.len().div_ceil(3) * 4
}

/// A kept DER and its certificate.
type Kept = (Box<[u8]>, Arc<Cert>);

/// DER hash to the certificates with that hash.
pub struct CertMemo {
    hasher: ahash::RandomState,
    entries: HashMap<u64, Vec<Kept>>,
    len: usize,
    der_bytes: usize,
    /// Certificates answered from the memo.
    pub hits: u64,
    /// Certificates parsed (not in the memo).
    pub misses: u64,
}

impl Default for CertMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl CertMemo {
    /// An empty memo.
    pub fn new() -> Self {
        CertMemo { hasher: ahash::RandomState::new(), entries: HashMap::new(), len: 0, der_bytes: 0, hits: 0, misses: 0 }
    }

    /// The summary and base64 of one DER certificate ([`parse`]).
    pub fn get(&mut self, der: &[u8]) -> Result<Arc<Cert>, CertError> {
        let hash = self.hasher.hash_one(der);
        if let Some((_, c)) = self.entries.get(&hash).and_then(|b| b.iter().find(|(k, _)| **k == *der)) {
            self.hits += 1;
            return Ok(Arc::clone(c));
        }
        self.misses += 1;
        let c = Arc::new(parse(der)?);
        let kept = kept_bytes(der);
        if kept > MAX_DER_BYTES {
            return Ok(c);
        }
        if self.len >= MAX_ENTRIES || self.der_bytes + kept > MAX_DER_BYTES {
            self.entries.clear();
            self.len = 0;
            self.der_bytes = 0;
        }
        self.entries.entry(hash).or_default().push((der.into(), Arc::clone(&c)));
        self.len += 1;
        self.der_bytes += kept;
        Ok(c)
    }

    /// Certificates held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no certificate is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// DER and base64 bytes held.
    pub fn der_bytes(&self) -> usize {
        self.der_bytes
    }
}

thread_local! {
    static MEMO: std::cell::RefCell<CertMemo> = std::cell::RefCell::new(CertMemo::new());
}

/// [`CertMemo::get`] on this thread's memo (each flow-table thread keeps its
/// own: no lock on the packet path).
pub fn summary(der: &[u8]) -> Result<Arc<Cert>, CertError> {
    MEMO.with_borrow_mut(|m| m.get(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three real certificates (`parsers/testdata`, made with openssl), and
    /// a fourth that differs from the first in the last byte of its
    /// signature: it parses, and is another certificate to the memo.
    fn ders() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            include_bytes!("../../../parsers/testdata/rsa-leaf.der").to_vec(),
            include_bytes!("../../../parsers/testdata/ec-san.der").to_vec(),
            include_bytes!("../../../parsers/testdata/ec-v1.der").to_vec(),
        ];
        let mut other = v[0].clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        v.push(other);
        v
    }

    #[test]
    fn the_memo_gives_what_the_parser_gives_and_hits_on_repeats() {
        let ders = ders();
        let mut memo = CertMemo::new();
        for round in 0..3 {
            for der in &ders {
                let got = memo.get(der).map(|c| (*c).clone());
                assert_eq!(got.as_ref().map(|c| &c.summary), parse_certificate(der).as_ref(), "round {round}");
                let b64 = base64::engine::general_purpose::STANDARD.encode(der);
                assert_eq!(got.map(|c| c.der_base64.to_string()), Ok(b64), "round {round}");
            }
        }
        assert_eq!((memo.hits, memo.misses), (8, 4));
        assert_eq!(memo.len(), 4);
        assert_eq!(
            memo.der_bytes(),
            ders.iter().map(|d| d.len() + base64::engine::general_purpose::STANDARD.encode(d).len()).sum::<usize>()
        );
    }

    #[test]
    fn errors_are_not_kept() {
        let mut memo = CertMemo::new();
        let junk = [0x30u8, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(memo.get(&junk).map(|c| c.summary.clone()), parse_certificate(&junk));
        assert!(memo.get(&junk).is_err());
        assert_eq!((memo.hits, memo.misses, memo.len()), (0, 2, 0));
    }

    #[test]
    fn a_full_memo_starts_again() {
        let der = ders().remove(0);
        let mut memo = CertMemo::new();
        memo.len = MAX_ENTRIES;
        assert!(memo.get(&der).is_ok());
        assert_eq!(memo.len(), 1);
        memo.der_bytes = MAX_DER_BYTES;
        assert!(memo.get(&der).is_ok(), "a hit does not need room");
        assert_eq!(memo.hits, 1);
    }
}
