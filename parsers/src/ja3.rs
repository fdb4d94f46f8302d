//! JA3 (client) and JA3S (server) TLS fingerprints.
//!
//! Heads up! Before working on this file read the Salesforce JA3 README
//! (<https://github.com/salesforce/ja3>, `README.md` and `python/ja3.py`,
//! `python/ja3s.py`).
//!
//! Contract:
//! - Computed from [`ClientHello`] / [`ServerHello`] only (never from raw
//!   bytes), so a hello reassembled from many segments fingerprints the same.
//! - JA3 string: `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`,
//!   every value in decimal, values inside a field joined with `-`.
//!   `SSLVersion` is the ClientHello `legacy_version` (not supported_versions).
//!   GREASE values (RFC 8701) are dropped from ciphers, extensions and curves
//!   (the spec's three lists); point formats are single bytes and cannot be
//!   GREASE. tshark drops GREASE from every list, which gives the same string.
//! - JA3S string: `SSLVersion,Cipher,Extensions` with the ServerHello
//!   `legacy_version` and GREASE dropped from the extensions (as tshark and
//!   Suricata do; real servers never send GREASE extensions).
//! - The hash is MD5 of the string, 32 lowercase hex digits.
//! - Pure and panic-free for any input. An SSLv2-format hello gets a string
//!   like any other (`2,...` or `769,...`); tshark and Salesforce's `ja3.py`
//!   compute no JA3 for those, so a caller that wants to match them should
//!   skip hellos with [`ClientHello::sslv2_format`] set.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use serde::Serialize;

use crate::hello::{is_grease, ClientHello, ServerHello};

/// A JA3 or JA3S fingerprint: the pre-hash string and its MD5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// The comma/dash-joined string that was hashed.
    pub string: String,
    /// MD5 of `string`, 32 lowercase hex digits.
    pub hash: String,
}

impl Fingerprint {
    fn from_string(string: String) -> Self {
        let hash = hex::encode(Md5::digest(string.as_bytes()));
        Fingerprint { string, hash }
    }
}

/// Appends `values` in decimal joined by `-` (itoa: `write!` through
/// `core::fmt` cost more than the hash for a hello's sixty numbers).
fn push_joined<T: itoa::Integer>(out: &mut String, values: impl IntoIterator<Item = T>) {
    let mut buf = itoa::Buffer::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(buf.format(v));
    }
}

/// JA3 of a ClientHello (Salesforce spec, GREASE removed).
pub fn ja3(ch: &ClientHello) -> Fingerprint {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{},", ch.legacy_version);
    push_joined(&mut s, ch.ciphers.iter().copied().filter(|v| !is_grease(*v)));
    s.push(',');
    push_joined(&mut s, ch.extensions.iter().copied().filter(|v| !is_grease(*v)));
    s.push(',');
    push_joined(&mut s, ch.supported_groups.iter().copied().filter(|v| !is_grease(*v)));
    s.push(',');
    push_joined(&mut s, ch.ec_point_formats.iter().copied());
    Fingerprint::from_string(s)
}

/// JA3S of a ServerHello: `legacy_version,cipher,extensions`.
pub fn ja3s(sh: &ServerHello) -> Fingerprint {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "{},{},", sh.legacy_version, sh.cipher);
    push_joined(&mut s, sh.extensions.iter().copied().filter(|v| !is_grease(*v)));
    Fingerprint::from_string(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a `-`-joined decimal list (test helper; empty → empty).
    fn list<T: std::str::FromStr>(field: &str) -> Vec<T>
    where
        T::Err: std::fmt::Debug,
    {
        if field.is_empty() {
            return Vec::new();
        }
        field.split('-').map(|v| v.parse().expect("decimal")).collect()
    }

    /// Builds the ClientHello a JA3 string describes (no GREASE).
    fn ch_from_ja3(s: &str) -> ClientHello {
        let f: Vec<&str> = s.split(',').collect();
        assert_eq!(f.len(), 5, "{s}");
        ClientHello {
            legacy_version: f[0].parse().expect("version"),
            ciphers: list(f[1]),
            extensions: list(f[2]),
            supported_groups: list(f[3]),
            ec_point_formats: list(f[4]),
            ..Default::default()
        }
    }

    // Vectors from jabedude/ja3-rs src/lib.rs tests @ a30d1bea (tabulated in
    // shared/corpus/ja3-rs/EXPECTED_JA3.tsv): Firefox single packet
    // (tests/test.pcap) and curl (tests/curl.pcap).
    const FIREFOX: (&str, &str) = (
        "771,49195-49199-52393-52392-49196-49200-49162-49161-49171-49172-51-57-47-53-10,0-23-65281-10-11-35-16-5-13-28,29-23-24-25,0",
        "839bbe3ed07fed922ded5aaf714d6842",
    );
    const CURL: (&str, &str) = (
        "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-13172-16-22-23-13-43-45-51-21,29-23-30-25-24,0-1-2",
        "456523fc94726331a4d5a2e1d40b2cd7",
    );
    // ja3-rs tests/ncat-port-4450.pcap (long cipher list, non-TLS port).
    const NCAT: (&str, &str) = (
        "771,4866-4867-4865-49196-49200-163-159-52393-52392-52394-49327-49325-49315-49311-49245-49249-49239-49235-49188-49192-107-106-49267-49271-196-195-49162-49172-57-56-136-135-157-49313-49309-49233-61-192-53-132-49195-49199-162-158-49326-49324-49314-49310-49244-49248-49238-49234-49187-49191-103-64-49266-49270-190-189-49161-49171-51-50-154-153-69-68-156-49312-49308-49232-60-186-47-150-65-255,0-11-10-35-22-23-13-43-45-51-21,29-23-30-25-24,0-1-2",
        "10a6b69a81bac09072a536ce9d35dd43",
    );

    #[test]
    fn known_answers_from_ja3_rs() {
        for (s, h) in [FIREFOX, CURL, NCAT] {
            let fp = ja3(&ch_from_ja3(s));
            assert_eq!(fp.string, s);
            assert_eq!(fp.hash, h, "{s}");
        }
    }

    #[test]
    fn firefox_built_by_hand() {
        // The FIREFOX vector above, typed out as the hello's fields.
        let ch = ClientHello {
            legacy_version: 0x0303,
            ciphers: vec![
                0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc00a, 0xc009, 0xc013, 0xc014, 0x0033, 0x0039, 0x002f, 0x0035, 0x000a,
            ],
            extensions: vec![0, 23, 0xff01, 10, 11, 35, 16, 5, 13, 28],
            supported_groups: vec![29, 23, 24, 25],
            ec_point_formats: vec![0],
            sni: Some("example.com".into()),
            ..Default::default()
        };
        assert_eq!(ja3(&ch), Fingerprint { string: FIREFOX.0.into(), hash: FIREFOX.1.into() });
    }

    #[test]
    fn grease_is_removed_from_ciphers_extensions_and_curves() {
        // ja3-rs tests/chrome-grease-single.pcap: the expected string has no
        // GREASE; Chrome puts one GREASE value first in ciphers, extensions
        // (and a second extension last) and groups. Adding them back must
        // not change the fingerprint.
        let (s, h) =
            ("771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53-10,0-23-65281-10-11-35-16-5-13-18-51-45-43-27-21,29-23-24,0", "66918128f1b9b03303d77c6f2eefd128");
        let mut ch = ch_from_ja3(s);
        assert_eq!(ja3(&ch).hash, h);
        ch.ciphers.insert(0, 0x2a2a);
        ch.extensions.insert(0, 0x8a8a);
        ch.extensions.push(0x1a1a);
        ch.supported_groups.insert(0, 0xbaba);
        ch.supported_versions = vec![0x7a7a, 0x0304, 0x0303];
        let fp = ja3(&ch);
        assert_eq!(fp.string, s);
        assert_eq!(fp.hash, h);
        // A value that only looks GREASE-like (bytes differ) is kept.
        ch.ciphers.push(0x0a1a);
        assert!(ja3(&ch).string.contains("-2586,"), "{}", ja3(&ch).string);
    }

    #[test]
    fn empty_lists_keep_their_commas() {
        // tshark ja3_full for an SSLv3 hello without extensions
        // (oracle ndpi__ossfuzz_seed_fake_traces_1.pcapng frame 19):
        // "769,52,0,," — the point-format and curve fields stay as empty.
        let ch = ClientHello { legacy_version: 769, ciphers: vec![52], extensions: vec![0], ..Default::default() };
        let fp = ja3(&ch);
        assert_eq!(fp.string, "769,52,0,,");
        assert_eq!(fp.hash, "5d9eb54dfeb9b4b50031e5f0cd0a479e");
        let empty = ClientHello { legacy_version: 768, ..Default::default() };
        // Same oracle, frame 21: "768,,,," → ba12b548d225aa7163af96c47205964e.
        assert_eq!(ja3(&empty).hash, "ba12b548d225aa7163af96c47205964e");
    }

    #[test]
    fn ja3s_known_answers() {
        // tshark 4.0.17 ja3s / ja3s_full, oracle
        // foxio-ja4__tls-non-ascii-alpn.pcapng.tshark.tsv frame 2.
        let sh = ServerHello {
            legacy_version: 0x0303,
            cipher: 0x1301,
            extensions: vec![51, 43],
            selected_version: Some(0x0304),
            ..Default::default()
        };
        let fp = ja3s(&sh);
        assert_eq!(fp.string, "771,4865,51-43");
        assert_eq!(fp.hash, "eb1d94daa7e0344597e756a1fb6e7054");
        // No extensions: trailing comma kept (tshark ja3s_full "769,47,").
        let sh = ServerHello { legacy_version: 0x0301, cipher: 47, ..Default::default() };
        let fp = ja3s(&sh);
        assert_eq!(fp.string, "769,47,");
        assert_eq!(fp.hash, "18e962e106761869a61045bed0e81c2c");
        // GREASE extensions do not count.
        let sh = ServerHello { legacy_version: 0x0303, cipher: 0x1301, extensions: vec![0x3a3a, 51, 43], ..Default::default() };
        assert_eq!(ja3s(&sh).hash, "eb1d94daa7e0344597e756a1fb6e7054");
    }

    fn any_client_hello() -> impl proptest::strategy::Strategy<Value = ClientHello> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        (any::<u16>(), vec(any::<u16>(), 0..40), vec(any::<u16>(), 0..30), vec(any::<u16>(), 0..10), vec(any::<u8>(), 0..4), any::<bool>())
            .prop_map(|(v, c, e, g, p, sslv2)| ClientHello {
                legacy_version: v,
                ciphers: c,
                extensions: e,
                supported_groups: g,
                ec_point_formats: p,
                sslv2_format: sslv2,
                ..Default::default()
            })
    }

    proptest::proptest! {
        #[test]
        fn ja3_shape_and_grease_free(ch in any_client_hello()) {
            let fp = ja3(&ch);
            proptest::prop_assert_eq!(fp.hash.len(), 32);
            proptest::prop_assert!(fp.hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            proptest::prop_assert_eq!(fp.string.matches(',').count(), 4);
            proptest::prop_assert_eq!(hex::encode(Md5::digest(fp.string.as_bytes())), fp.hash.clone());
            // Round trip: the string parses back to the GREASE-free lists.
            let back = ch_from_ja3(&fp.string);
            // GREASE (RFC 8701): 0x?a?a with both bytes equal; not the product's is_grease.
            let grease = |v: u16| v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff;
            let strip = |v: &[u16]| v.iter().copied().filter(|x| !grease(*x)).collect::<Vec<_>>();
            proptest::prop_assert_eq!(back.legacy_version, ch.legacy_version);
            proptest::prop_assert_eq!(back.ciphers, strip(&ch.ciphers));
            proptest::prop_assert_eq!(back.extensions, strip(&ch.extensions));
            proptest::prop_assert_eq!(back.supported_groups, strip(&ch.supported_groups));
            proptest::prop_assert_eq!(back.ec_point_formats, ch.ec_point_formats.clone());
        }

        #[test]
        fn ja3s_shape(v in proptest::num::u16::ANY, c in proptest::num::u16::ANY,
                      e in proptest::collection::vec(proptest::num::u16::ANY, 0..20)) {
            let sh = ServerHello { legacy_version: v, cipher: c, extensions: e.clone(), ..Default::default() };
            let fp = ja3s(&sh);
            proptest::prop_assert_eq!(fp.hash.len(), 32);
            proptest::prop_assert_eq!(fp.string.matches(',').count(), 2);
            let prefix = format!("{v},{c},");
            proptest::prop_assert!(fp.string.starts_with(&prefix));
            let n = e.iter().filter(|x| !is_grease(**x)).count();
            let tail = &fp.string[prefix.len()..];
            proptest::prop_assert_eq!(if tail.is_empty() { 0 } else { tail.split('-').count() }, n);
        }
    }
}
