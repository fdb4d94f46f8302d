//! JA3 and JA4 of client hellos, remembered by what they are computed from.
//!
//! A network sees few distinct client stacks: every session of one app build
//! on one OS sends the same cipher, extension, group and signature lists, and
//! only the server name, random, session id and key shares change. Working
//! out JA3 (a string and an MD5) and JA4 (sorted lists and two SHA-256) for
//! each session was 3.6 µs of the 17 µs a session record cost (2 GiB
//! benchmark capture, README, Throughput). [`HelloPrints`] keys the two
//! fingerprints by exactly the fields they read, so a hit gives the values
//! the functions would have computed, and a miss computes them.
//!
//! Bounded: at most [`MAX_ENTRIES`] entries; when full, the memo is emptied
//! and fills again (the output never depends on it, only the cost does).

use std::hash::Hash;

use ahash::{HashMap, HashMapExt};
use pinwatch_parsers::hello::{ClientHello, Transport};
use pinwatch_parsers::ja3::{ja3, Fingerprint};
use pinwatch_parsers::ja4::ja4;

/// Most client hello shapes remembered.
pub const MAX_ENTRIES: usize = 4096;

/// JA3 (`None` for an SSLv2-format hello, where it is not defined) and JA4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prints {
    /// JA3; `None` for an SSLv2-format hello.
    pub ja3: Option<Fingerprint>,
    /// JA4 (`t`, `q` or `d` prefix by transport).
    pub ja4: String,
}

/// Compute the fingerprints of one hello without the memo.
pub fn compute(ch: &ClientHello, transport: Transport) -> Prints {
    Prints { ja3: (!ch.sslv2_format).then(|| ja3(ch)), ja4: ja4(ch, transport) }
}

/// The fields of a client hello that JA3 and JA4 read, borrowed.
#[derive(Hash, PartialEq, Eq)]
struct Inputs<'a> {
    transport: u8,
    legacy_version: u16,
    sslv2_format: bool,
    /// JA4's `d`/`i` looks at whether a server name was sent, not at it.
    has_sni: bool,
    ciphers: &'a [u16],
    extensions: &'a [u16],
    supported_groups: &'a [u16],
    ec_point_formats: &'a [u8],
    signature_algorithms: &'a [u16],
    supported_versions: &'a [u16],
    /// JA4's ALPN characters come from the first protocol's raw bytes.
    alpn_first: Option<&'a [u8]>,
}

impl<'a> Inputs<'a> {
    fn of(ch: &'a ClientHello, transport: Transport) -> Self {
        Inputs {
            transport: match transport {
                Transport::Tcp => 0,
                Transport::Quic => 1,
                Transport::Dtls => 2,
            },
            legacy_version: ch.legacy_version,
            sslv2_format: ch.sslv2_format,
            has_sni: ch.sni.is_some(),
            ciphers: &ch.ciphers,
            extensions: &ch.extensions,
            supported_groups: &ch.supported_groups,
            ec_point_formats: &ch.ec_point_formats,
            signature_algorithms: &ch.signature_algorithms,
            supported_versions: &ch.supported_versions,
            alpn_first: ch.alpn_first_raw.as_deref().or_else(|| ch.alpn.first().map(|s| s.as_bytes())),
        }
    }

    fn owned(&self) -> OwnedInputs {
        OwnedInputs {
            transport: self.transport,
            legacy_version: self.legacy_version,
            sslv2_format: self.sslv2_format,
            has_sni: self.has_sni,
            ciphers: self.ciphers.into(),
            extensions: self.extensions.into(),
            supported_groups: self.supported_groups.into(),
            ec_point_formats: self.ec_point_formats.into(),
            signature_algorithms: self.signature_algorithms.into(),
            supported_versions: self.supported_versions.into(),
            alpn_first: self.alpn_first.map(Into::into),
        }
    }
}

/// [`Inputs`], kept.
struct OwnedInputs {
    transport: u8,
    legacy_version: u16,
    sslv2_format: bool,
    has_sni: bool,
    ciphers: Box<[u16]>,
    extensions: Box<[u16]>,
    supported_groups: Box<[u16]>,
    ec_point_formats: Box<[u8]>,
    signature_algorithms: Box<[u16]>,
    supported_versions: Box<[u16]>,
    alpn_first: Option<Box<[u8]>>,
}

impl OwnedInputs {
    fn view(&self) -> Inputs<'_> {
        Inputs {
            transport: self.transport,
            legacy_version: self.legacy_version,
            sslv2_format: self.sslv2_format,
            has_sni: self.has_sni,
            ciphers: &self.ciphers,
            extensions: &self.extensions,
            supported_groups: &self.supported_groups,
            ec_point_formats: &self.ec_point_formats,
            signature_algorithms: &self.signature_algorithms,
            supported_versions: &self.supported_versions,
            alpn_first: self.alpn_first.as_deref(),
        }
    }
}

/// The memo: hash of the inputs to the entries with that hash (the inputs
/// are compared in full, so a hash collision costs a computation, never a
/// wrong value).
pub struct HelloPrints {
    hasher: ahash::RandomState,
    entries: HashMap<u64, Vec<(OwnedInputs, Prints)>>,
    len: usize,
    /// Lookups answered from the memo.
    pub hits: u64,
    /// Lookups computed (and then remembered).
    pub misses: u64,
}

impl Default for HelloPrints {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloPrints {
    /// An empty memo, its hash keys fixed (the same buckets in every run).
    pub fn new() -> Self {
        // Fixed keys: which hellos share a bucket must not depend on the run.
        HelloPrints { hasher: ahash::RandomState::with_seeds(1, 2, 3, 4), entries: HashMap::new(), len: 0, hits: 0, misses: 0 }
    }

    /// The fingerprints of `ch` sent over `transport`.
    pub fn get(&mut self, ch: &ClientHello, transport: Transport) -> Prints {
        let inputs = Inputs::of(ch, transport);
        let hash = self.hasher.hash_one(&inputs);
        if let Some(found) = self.entries.get(&hash).and_then(|b| b.iter().find(|(k, _)| k.view() == inputs)) {
            self.hits += 1;
            return found.1.clone();
        }
        self.misses += 1;
        let prints = compute(ch, transport);
        if self.len >= MAX_ENTRIES {
            self.entries.clear();
            self.len = 0;
        }
        self.entries.entry(hash).or_default().push((inputs.owned(), prints.clone()));
        self.len += 1;
        prints
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entry held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Hellos drawn from small alphabets, so that many share their inputs,
    /// and fields JA3/JA4 ignore (server name text, session id) vary freely.
    fn hello() -> impl Strategy<Value = ClientHello> {
        let small_u16 = prop_oneof![Just(0x0a0a_u16), Just(0x1301), Just(0xc02b), Just(0x0000), Just(0x0010), Just(0x002b)];
        (
            prop_oneof![Just(0x0303_u16), Just(0x0301)],
            vec(small_u16.clone(), 0..3),
            vec(small_u16.clone(), 0..3),
            vec(small_u16.clone(), 0..2),
            vec(0u8..2, 0..2),
            vec(small_u16.clone(), 0..2),
            vec(prop_oneof![Just(0x0304_u16), Just(0x0303), Just(0x7a7a)], 0..2),
            proptest::option::of(prop_oneof![Just("a.example".to_string()), Just("b.example".to_string())]),
            proptest::option::of(prop_oneof![Just(b"h2".to_vec()), Just(b"\x00x".to_vec())]),
            vec(prop_oneof![Just("h2".to_string()), Just("http/1.1".to_string())], 0..2),
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(|(v, c, e, g, p, s, sv, sni, raw, alpn, sslv2, sid)| ClientHello {
                legacy_version: v,
                ciphers: c,
                extensions: e,
                supported_groups: g,
                ec_point_formats: p,
                signature_algorithms: s,
                supported_versions: sv,
                sni,
                alpn_first_raw: raw,
                alpn,
                sslv2_format: sslv2,
                session_id_len: sid,
                ..Default::default()
            })
    }

    fn transport() -> impl Strategy<Value = Transport> {
        prop_oneof![Just(Transport::Tcp), Just(Transport::Quic)]
    }

    proptest! {
        /// Whatever the order of hellos, the memo gives what the functions
        /// compute, and hits on repeats.
        #[test]
        fn memo_gives_what_is_computed(hellos in vec((hello(), transport()), 1..200)) {
            let mut memo = HelloPrints::new();
            for (ch, t) in &hellos {
                prop_assert_eq!(memo.get(ch, *t), compute(ch, *t));
            }
            prop_assert_eq!(memo.hits + memo.misses, hellos.len() as u64);
            prop_assert_eq!(memo.misses as usize, memo.len());
        }
    }

    #[test]
    fn server_name_text_and_session_id_do_not_matter_but_its_presence_does() {
        let a = ClientHello {
            ciphers: vec![0x1301],
            extensions: vec![0x0000, 0x002b],
            sni: Some("a.example".into()),
            session_id_len: 32,
            ..Default::default()
        };
        let b = ClientHello { sni: Some("b.example".into()), session_id_len: 0, ..a.clone() };
        let c = ClientHello { sni: None, ..a.clone() };
        let mut memo = HelloPrints::new();
        memo.get(&a, Transport::Tcp);
        assert_eq!(memo.get(&b, Transport::Tcp), compute(&b, Transport::Tcp));
        assert_eq!((memo.hits, memo.misses), (1, 1));
        assert_eq!(memo.get(&c, Transport::Tcp), compute(&c, Transport::Tcp));
        assert_eq!(memo.get(&a, Transport::Quic), compute(&a, Transport::Quic));
        assert_eq!((memo.hits, memo.misses), (1, 3));
    }

    #[test]
    fn full_memo_starts_again() {
        let mut memo = HelloPrints::new();
        for i in 0..=MAX_ENTRIES as u16 {
            let ch = ClientHello { ciphers: vec![i], ..Default::default() };
            assert_eq!(memo.get(&ch, Transport::Tcp), compute(&ch, Transport::Tcp));
        }
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.misses, MAX_ENTRIES as u64 + 1);
    }
}
