//! JA4 TLS client fingerprint (FoxIO, BSD 3-Clause). Only the client
//! fingerprint lives here: JA4S/JA4X/JA4H/... are JA4+ and under a
//! different licence.
//!
//! Heads up! Before working on this file read FoxIO's spec,
//! `technical_details/JA4.md` in <https://github.com/FoxIO-LLC/ja4>, and
//! compare with their Rust tool (`rust/ja4/src/tls.rs`), which made the
//! corpus oracles (`shared/corpus/oracle/*.ja4rs.json`, ja4 0.18.6).
//!
//! `JA4 = a_b_c`:
//! - `a` = transport (`t` TCP, `q` QUIC, `d` DTLS) + version code + `d`/`i`
//!   (SNI extension present or not) + 2-digit cipher count + 2-digit
//!   extension count + 2 ALPN characters.
//!   - Version: the highest non-GREASE `supported_versions` entry if the
//!     extension was sent, else `legacy_version`: 0x0304 `13`, 0x0303 `12`,
//!     0x0302 `11`, 0x0301 `10`, 0x0300 `s3`, 0x0002 `s2`, 0xfeff `d1`,
//!     0xfefd `d2`, 0xfefc `d3`, anything else (TLS 1.3 drafts too) `00`.
//!   - Counts ignore GREASE, include SNI and ALPN, and are capped at 99.
//!   - ALPN: first and last byte of the first ALPN value; `00` without
//!     ALPN or with an empty first value; a one-byte value is used as both
//!     first and last; if either byte is not ASCII alphanumeric, the first
//!     and last characters of the lowercase hex of the whole value are used
//!     instead (spec: `0x30 0xAB` → `3b`).
//! - `b` = first 12 hex digits of SHA-256 over the non-GREASE ciphers as
//!   4-digit lowercase hex, sorted, comma-joined; `000000000000` if none.
//! - `c` = the same over the sorted non-GREASE extensions minus SNI (0000)
//!   and ALPN (0010), then `_` and the non-GREASE signature algorithms in
//!   wire order (no `_` when there are none); `000000000000` if that
//!   extension list is empty (signature algorithms alone do not count).
//!
//! `_r` ("raw") prints the lists instead of hashing them; `_o` keeps the
//! original order and keeps SNI and ALPN in the extension list (spec
//! "Raw Output"); `_ro` is both. As in FoxIO's ja4.py, `_o`'s section `c`
//! is still zeros when SNI and ALPN are the only extensions.
//!
//! Where FoxIO's tool differs from the spec we follow the spec. An
//! SSLv2-format ClientHello ([`ClientHello::sslv2_format`]) counts and hashes
//! the TLS cipher suites among its 3-byte cipher specs (those whose first
//! byte is 0, as RFC 5246 App. E.2 maps them; SSLv2-only kinds such as
//! `0x010080` are not TLS cipher suites), so it gets the JA4 of a TLS-format
//! hello with the same suites and no extensions. FoxIO's ja4 0.18.6 (driven
//! by tshark, which files SSLv2 cipher specs under another field) counts
//! none there (`ts2i000000_000000000000_000000000000`). Other known
//! differences from ja4 0.18.6: it prints a non-ASCII ALPN byte as `9`
//! (`0xBA 0xAD` → `99`, spec → `bd`) and a one-byte ALPN `h` as `h0` (spec
//! `hh`).
//!
//! Pure and panic-free for any input.

use sha2::{Digest, Sha256};

use crate::hello::{ext, is_grease, ClientHello, Transport};

const ZERO_HASH: &str = "000000000000";

/// The JA4 fingerprint (`t13d1516h2_8daaf6152771_e5627efa2ab1`).
pub fn ja4(ch: &ClientHello, transport: Transport) -> String {
    Parts::new(ch, transport, false).hashed()
}

/// The raw JA4 (`ja4_r`): sorted lists printed instead of hashed.
pub fn ja4_raw(ch: &ClientHello, transport: Transport) -> String {
    Parts::new(ch, transport, false).raw()
}

/// JA4 over the original order (`ja4_o`): unsorted, SNI and ALPN kept.
pub fn ja4_original(ch: &ClientHello, transport: Transport) -> String {
    Parts::new(ch, transport, true).hashed()
}

/// Raw JA4 in original order (`ja4_ro`).
pub fn ja4_original_raw(ch: &ClientHello, transport: Transport) -> String {
    Parts::new(ch, transport, true).raw()
}

/// The two-letter version code of section `a`.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The two ALPN characters of section `a` for the first ALPN value.
fn alpn_code(first: Option<&[u8]>) -> [char; 2] {
    let Some(v) = first else { return ['0', '0'] };
    let (Some(&f), Some(&l)) = (v.first(), v.last()) else { return ['0', '0'] };
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        [char::from(f), char::from(l)]
    } else {
        // First character of the hex of the whole value is the high nibble
        // of the first byte, the last one the low nibble of the last byte.
        [nibble(f >> 4), nibble(l & 0x0f)]
    }
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n & 0x0f), 16).unwrap_or('0')
}

/// `values` as 4-digit lowercase hex, comma-joined (written digit by digit:
/// this runs for every session, and `format!` per value was most of JA4's
/// cost).
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for shift in [12, 8, 4, 0] {
            s.push(nibble((v >> shift) as u8));
        }
    }
    s
}

fn hash12(s: &str) -> String {
    let mut h = hex::encode(Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

struct Parts {
    a: String,
    /// Section `b` before hashing.
    ciphers: String,
    /// Section `c` before hashing: `exts` + optional `_sigs`.
    exts_sigs: String,
    /// No extension other than GREASE, SNI and ALPN: section `c` is zeros
    /// (in the `_o` form too, as FoxIO's ja4.py does).
    no_exts: bool,
}

impl Parts {
    fn new(ch: &ClientHello, transport: Transport, original_order: bool) -> Self {
        let mut ciphers: Vec<u16> = ch.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
        let all_exts: Vec<u16> = ch.extensions.iter().copied().filter(|e| !is_grease(*e)).collect();
        let sigs: Vec<u16> = ch.signature_algorithms.iter().copied().filter(|s| !is_grease(*s)).collect();

        let transport = match transport {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        };
        let sni = if all_exts.contains(&ext::SERVER_NAME) || ch.sni.is_some() { 'd' } else { 'i' };
        let first_alpn = ch.alpn_first_raw.as_deref().or_else(|| ch.alpn.first().map(|s| s.as_bytes()));
        let [a1, a2] = alpn_code(first_alpn);
        let a =
            format!("{transport}{}{sni}{:02}{:02}{a1}{a2}", version_code(ch.max_version()), ciphers.len().min(99), all_exts.len().min(99),);

        let mut exts = all_exts;
        let no_exts = exts.iter().all(|e| *e == ext::SERVER_NAME || *e == ext::ALPN);
        if !original_order {
            exts.retain(|e| *e != ext::SERVER_NAME && *e != ext::ALPN);
            ciphers.sort_unstable();
            exts.sort_unstable();
        }
        let ciphers = hex_list(&ciphers);
        let exts = hex_list(&exts);
        let exts_sigs = if sigs.is_empty() { exts } else { format!("{exts}_{}", hex_list(&sigs)) };
        Parts { a, ciphers, exts_sigs, no_exts }
    }

    fn hashed(&self) -> String {
        let b = if self.ciphers.is_empty() { ZERO_HASH.to_owned() } else { hash12(&self.ciphers) };
        let c = if self.no_exts { ZERO_HASH.to_owned() } else { hash12(&self.exts_sigs) };
        format!("{}_{b}_{c}", self.a)
    }

    fn raw(&self) -> String {
        format!("{}_{}_{}", self.a, self.ciphers, self.exts_sigs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hello of FoxIO's `technical_details/JA4.md` example (also in
    /// `rust/ja4/src/tls.rs::test_client_stats_into_out`).
    fn spec_example() -> ClientHello {
        ClientHello {
            legacy_version: 0x0303,
            ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a,
                0x0015,
            ],
            sni: Some("example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            alpn_first_raw: Some(b"h2".to_vec()),
            signature_algorithms: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
            supported_versions: vec![0x0304, 0x0303],
            ..Default::default()
        }
    }

    #[test]
    fn spec_example_all_four_forms() {
        // Expected values: FoxIO technical_details/JA4.md ("Example" and
        // "Raw Output").
        let ch = spec_example();
        assert_eq!(ja4(&ch, Transport::Tcp), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            ja4_raw(&ch, Transport::Tcp),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(ja4_original(&ch, Transport::Tcp), "t13d1516h2_acb858a92679_18f69afefd3d");
        assert_eq!(
            ja4_original_raw(&ch, Transport::Tcp),
            "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    #[test]
    fn spec_example_without_signature_algorithms() {
        // JA4.md: "0005,...,ff01 = 6d807ffa2a79" (no trailing underscore).
        let mut ch = spec_example();
        ch.signature_algorithms.clear();
        assert_eq!(ja4(&ch, Transport::Tcp), "t13d1516h2_8daaf6152771_6d807ffa2a79");
        assert!(ja4_raw(&ch, Transport::Tcp).ends_with(",4469,ff01"));
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let mut ch = spec_example();
        ch.ciphers.insert(0, 0x4a4a);
        ch.extensions.insert(0, 0xdada);
        ch.extensions.push(0x0a0a);
        ch.signature_algorithms.insert(2, 0x2a2a);
        ch.supported_versions.insert(0, 0xfafa);
        ch.supported_groups = vec![0x5a5a, 29];
        assert_eq!(ja4(&ch, Transport::Tcp), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn transport_and_version_codes() {
        let mut ch = spec_example();
        assert!(ja4(&ch, Transport::Quic).starts_with("q13d"));
        assert!(ja4(&ch, Transport::Dtls).starts_with("d13d"));
        for (v, code) in [
            (0x0303u16, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0xfeff, "d1"),
            (0xfefd, "d2"),
            (0xfefc, "d3"),
            (0x7f1c, "00"),
            (0x0200, "00"),
        ] {
            ch.supported_versions = vec![0x3a3a, v];
            assert_eq!(&ja4(&ch, Transport::Tcp)[1..3], code, "{v:04x}");
            // Without supported_versions the legacy version counts.
            let old = ClientHello { legacy_version: v, ..Default::default() };
            assert_eq!(&ja4(&old, Transport::Tcp)[1..3], code, "legacy {v:04x}");
        }
        // supported_versions holding only GREASE falls back to legacy_version.
        ch.supported_versions = vec![0x3a3a];
        assert_eq!(&ja4(&ch, Transport::Tcp)[1..3], "12");
    }

    #[test]
    fn counts_capped_at_99() {
        // Same case as Suricata rust/src/ja4.rs test_get_hash_limit_numbers.
        let ch = ClientHello { ciphers: (1..200).collect(), extensions: (1..200).collect(), ..Default::default() };
        assert!(ja4(&ch, Transport::Tcp).starts_with("t00i999900_"), "{}", ja4(&ch, Transport::Tcp));
    }

    #[test]
    fn alpn_rules() {
        // FoxIO JA4.md "ALPN Extension Value", examples verbatim.
        assert_eq!(alpn_code(Some(&[0xab])), ['a', 'b']);
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), ['a', 'd']);
        assert_eq!(alpn_code(Some(&[0x30, 0xab])), ['3', 'b']);
        assert_eq!(alpn_code(Some(&[0x30, 0x31, 0xab, 0xcd])), ['3', 'd']);
        assert_eq!(alpn_code(Some(&[0x30, 0xab, 0xcd, 0x31])), ['0', '1']);
        assert_eq!(alpn_code(Some(b"h2")), ['h', '2']);
        assert_eq!(alpn_code(Some(b"http/1.1")), ['h', '1']);
        assert_eq!(alpn_code(Some(b"h3-29")), ['h', '9']);
        // Single character: used as first and last.
        assert_eq!(alpn_code(Some(b"h")), ['h', 'h']);
        // Case is kept (oracle arkime__badcurveball.pcap: ALPN "H2" → "H2").
        assert_eq!(alpn_code(Some(b"H2")), ['H', '2']);
        assert_eq!(alpn_code(Some(b"")), ['0', '0']);
        assert_eq!(alpn_code(None), ['0', '0']);

        // The raw bytes win over the lossy string, and no ALPN gives "00".
        let mut ch = spec_example();
        ch.alpn = vec!["\u{fffd}\u{fffd}".into()];
        ch.alpn_first_raw = Some(vec![0xba, 0xad]);
        assert_eq!(&ja4(&ch, Transport::Tcp)[8..10], "bd");
        ch.alpn_first_raw = None;
        ch.alpn = vec!["http/1.1".into()];
        assert_eq!(&ja4(&ch, Transport::Tcp)[8..10], "h1");
        ch.alpn.clear();
        assert_eq!(&ja4(&ch, Transport::Tcp)[8..10], "00");
    }

    #[test]
    fn empty_sections_are_zeros() {
        // SSLv2 hello of zeek tls/ssl-v2.pcap: ja4rs oracle
        // "ts2i000000_000000000000_000000000000", raw "ts2i000000__".
        // Its seven cipher specs are all SSLv2 kinds (0x0700c0 ...), none a
        // TLS cipher suite, so the parser keeps no ciphers.
        let ch = ClientHello { legacy_version: 0x0002, sslv2_format: true, ..Default::default() };
        assert_eq!(ja4(&ch, Transport::Tcp), "ts2i000000_000000000000_000000000000");
        assert_eq!(ja4_raw(&ch, Transport::Tcp), "ts2i000000__");
        // Only SNI as extension: oracle raw "t12d020100_1301,1302_".
        let ch = ClientHello { legacy_version: 0x0303, ciphers: vec![0x1301, 0x1302], extensions: vec![0], ..Default::default() };
        assert_eq!(ja4(&ch, Transport::Tcp), "t12d020100_62ed6f6ca7ad_000000000000");
        assert_eq!(ja4_raw(&ch, Transport::Tcp), "t12d020100_1301,1302_");
    }

    #[test]
    fn sslv2_hello_counts_its_tls_cipher_suites() {
        // suricata-verify ssl_version_negated: the SSLv2-format hello of port
        // 1660 carries (tshark, cipherspec) six SSLv2 kinds and then the 20
        // TLS suites that the TLS-format hello of port 1661 offers; FoxIO
        // rust ja4 gives that one t10i200000_6c5778701a4a_000000000000, raw
        // t10i200000_0003,0004,...,feff_ (oracle *.ja4rs.json).
        let suites =
            [0x39, 0x38, 0x35, 0x33, 0x32, 0x04, 0x05, 0x2f, 0x16, 0x13, 0xfeff, 0x0a, 0x15, 0x12, 0xfefe, 0x09, 0x64, 0x62, 0x03, 0x06];
        let ch = ClientHello { legacy_version: 0x0301, ciphers: suites.to_vec(), sslv2_format: true, ..Default::default() };
        assert_eq!(ja4(&ch, Transport::Tcp), "t10i200000_6c5778701a4a_000000000000");
        assert_eq!(
            ja4_raw(&ch, Transport::Tcp),
            "t10i200000_0003,0004,0005,0006,0009,000a,0012,0013,0015,0016,002f,0032,0033,0035,0038,0039,0062,0064,fefe,feff_"
        );
    }

    #[test]
    fn non_ascii_alpn_capture_follows_the_spec() {
        // foxio-ja4 pcap/tls-non-ascii-alpn.pcapng: first ALPN is 0xBA 0xAD.
        // FoxIO python ja4.py (oracle *.ja4.json) gives
        //   JA4_o  = t13d151699_acb858a92679_8fc3c02244b2
        //   JA4_ro = t13d151699_1301,...,0035_ff01,0033,...,0015_0403,...,0601
        // and ja4 0.18.6 ja4 = t13d151699_8daaf6152771_e5627efa2ab1. Sections
        // b and c must match; section a follows the spec's hex rule ("bd"),
        // where the tools print "99".
        let ch = ClientHello {
            legacy_version: 0x0303,
            ciphers: vec![
                0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f,
                0x0035,
            ],
            extensions: vec![
                0x9a9a, 0xff01, 0x0033, 0x002d, 0x0005, 0x4469, 0x000d, 0x0010, 0x0023, 0x001b, 0x002b, 0x0000, 0x0012, 0x000a, 0x0017,
                0x000b, 0x6a6a, 0x0015,
            ],
            sni: Some("clientservices.googleapis.com".into()),
            alpn: vec!["\u{fffd}\u{fffd}".into(), "http/1.1".into()],
            alpn_first_raw: Some(vec![0xba, 0xad]),
            signature_algorithms: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
            supported_versions: vec![0x0a0a, 0x0304, 0x0303],
            ..Default::default()
        };
        assert_eq!(ja4(&ch, Transport::Tcp), "t13d1516bd_8daaf6152771_e5627efa2ab1");
        assert_eq!(ja4_original(&ch, Transport::Tcp), "t13d1516bd_acb858a92679_8fc3c02244b2");
        assert!(ja4_original_raw(&ch, Transport::Tcp).ends_with(
            "_ff01,0033,002d,0005,4469,000d,0010,0023,001b,002b,0000,0012,000a,0017,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601"
        ));
    }

    /// Rebuilds the ClientHello a raw JA4 string describes, or None when the
    /// string holds something we cannot invert (a non-alphanumeric ALPN code,
    /// a count that does not match the lists). `original` is true for the
    /// `_ro` form, whose extension list is complete and in wire order.
    fn hello_from_raw(raw: &str, original: bool) -> Option<(ClientHello, Transport)> {
        let mut it = raw.splitn(3, '_');
        let (a, b, c) = (it.next()?, it.next()?, it.next()?);
        let a = a.as_bytes();
        if a.len() != 10 {
            return None;
        }
        let transport = match a[0] {
            b't' => Transport::Tcp,
            b'q' => Transport::Quic,
            b'd' => Transport::Dtls,
            _ => return None,
        };
        let version = match &a[1..3] {
            b"13" => 0x0304,
            b"12" => 0x0303,
            b"11" => 0x0302,
            b"10" => 0x0301,
            b"s3" => 0x0300,
            b"s2" => 0x0002,
            b"d1" => 0xfeff,
            b"d2" => 0xfefd,
            b"d3" => 0xfefc,
            b"00" => 0x7f17,
            _ => return None,
        };
        let parse = |s: &str| -> Option<Vec<u16>> {
            if s.is_empty() {
                return Some(Vec::new());
            }
            s.split(',').map(|h| u16::from_str_radix(h, 16).ok()).collect()
        };
        let ciphers = parse(b)?;
        let (exts, sigs) = match c.split_once('_') {
            Some((e, s)) => (parse(e)?, parse(s)?),
            None => (parse(c)?, Vec::new()),
        };
        let (al1, al2) = (a[8], a[9]);
        let alpn = if (al1, al2) == (b'0', b'0') {
            None
        } else if al1.is_ascii_alphanumeric() && al2.is_ascii_alphanumeric() && !(al1 == b'9' && al2 == b'9') {
            Some(vec![al1, al2])
        } else {
            return None;
        };
        let want: usize = std::str::from_utf8(&a[6..8]).ok()?.parse().ok()?;
        let mut extensions = exts;
        if !original {
            if a[3] == b'd' {
                extensions.push(ext::SERVER_NAME);
            }
            if alpn.is_some() || (want < 99 && want == extensions.len() + 1) {
                extensions.push(ext::ALPN);
            }
        }
        if extensions.len().min(99) != want || (a[3] == b'd') != extensions.contains(&ext::SERVER_NAME) {
            return None;
        }
        let ch = ClientHello {
            legacy_version: if version > 0x0303 && version != 0xfeff && version != 0xfefd && version != 0xfefc { 0x0303 } else { version },
            supported_versions: vec![version],
            ciphers,
            extensions,
            alpn_first_raw: alpn,
            signature_algorithms: sigs,
            ..Default::default()
        };
        Some((ch, transport))
    }

    /// The shared corpus (`pinwatch_testkit::corpus::root`): `None` after a
    /// SKIPPED line, a failure under `PINWATCH_CORPUS_REQUIRED=1`.
    fn corpus_dir() -> Option<std::path::PathBuf> {
        pinwatch_testkit::corpus::root()
    }

    /// All four forms FoxIO's python ja4.py printed (`-r -o`) for the
    /// corpus (`shared/corpus/oracle/*.ja4.json`): rebuild the hello from
    /// the original-order raw string (`JA4_ro`) and compare every form.
    #[test]
    fn corpus_ja4py_oracle_all_forms() {
        let Some(corpus) = corpus_dir() else { return };
        let Ok(entries) = std::fs::read_dir(corpus.join("oracle")) else { return };
        let (mut checked, mut skipped) = (0, 0);
        let mut seen = std::collections::BTreeSet::new();
        for e in entries.flatten() {
            let path = e.path();
            if !path.to_string_lossy().ends_with(".ja4.json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Pretty-printed: one `"KEY.N": "value",` per line, one object per stream.
            let mut obj: std::collections::BTreeMap<String, String> = Default::default();
            for line in text.lines().chain(std::iter::once("}")) {
                let line = line.trim();
                if line.starts_with('}') {
                    for (k, ro) in obj.iter().filter(|(k, _)| k.starts_with("JA4_ro.")) {
                        let n = &k["JA4_ro.".len()..];
                        let get = |key: &str| obj.get(&format!("{key}.{n}")).cloned().unwrap_or_default();
                        let (h, r, o) = (get("JA4"), get("JA4_r"), get("JA4_o"));
                        if !seen.insert(ro.clone()) {
                            continue;
                        }
                        let Some((ch, t)) = hello_from_raw(ro, true) else {
                            skipped += 1;
                            continue;
                        };
                        let what = format!("{} {k}", path.display());
                        assert_eq!(&ja4_original_raw(&ch, t), ro, "{what}");
                        assert_eq!(ja4_original(&ch, t), o, "{what}");
                        assert_eq!(ja4_raw(&ch, t), r, "{what}");
                        assert_eq!(ja4(&ch, t), h, "{what}");
                        checked += 1;
                    }
                    obj.clear();
                    continue;
                }
                let mut parts = line.splitn(2, "\": \"");
                if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                    obj.insert(k.trim_start_matches('"').to_owned(), v.trim_end_matches(',').trim_end_matches('"').to_owned());
                }
            }
        }
        println!("ja4.json oracle: {checked} distinct hellos checked in all four forms, {skipped} skipped");
        assert!(checked >= 50, "only {checked} oracle hellos checked");
    }

    /// Every (ja4, ja4_r) pair FoxIO's rust ja4 0.18.6 printed for the
    /// corpus (`shared/corpus/oracle/*.ja4rs.json`): rebuild the hello from
    /// the raw string and check that we print the same raw string and hash.
    #[test]
    fn corpus_ja4rs_oracle_round_trip() {
        let Some(corpus) = corpus_dir() else { return };
        let Ok(entries) = std::fs::read_dir(corpus.join("oracle")) else { return };
        let mut seen = std::collections::BTreeSet::new();
        let (mut checked, mut skipped) = (0, 0);
        for e in entries.flatten() {
            let path = e.path();
            if !path.to_string_lossy().ends_with(".ja4rs.json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                let (Some(h), Some(r)) = (json_field(line, "ja4"), json_field(line, "ja4_r")) else { continue };
                if !seen.insert((h.clone(), r.clone())) {
                    continue;
                }
                let Some((ch, t)) = hello_from_raw(&r, false) else {
                    skipped += 1;
                    continue;
                };
                assert_eq!(ja4_raw(&ch, t), r, "{}", path.display());
                assert_eq!(ja4(&ch, t), h, "{} raw {r}", path.display());
                checked += 1;
            }
        }
        println!("ja4rs oracle: {checked} distinct fingerprints checked, {skipped} skipped");
        assert!(checked >= 50, "only {checked} oracle fingerprints checked");
    }

    /// `"key":"value"` from one JSON line (values here never hold quotes).
    fn json_field(line: &str, key: &str) -> Option<String> {
        let pat = format!("\"{key}\":\"");
        let start = line.find(&pat)? + pat.len();
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    }

    fn any_client_hello() -> impl proptest::strategy::Strategy<Value = ClientHello> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        let codes = prop_oneof![any::<u16>(), Just(0u16), Just(0x0010), Just(0x0a0a), Just(0x0304)];
        (
            any::<u16>(),
            vec(any::<u16>(), 0..120),
            vec(codes, 0..120),
            vec(any::<u16>(), 0..20),
            vec(any::<u16>(), 0..5),
            proptest::option::of(vec(any::<u8>(), 0..8)),
            vec("[ -~]{0,6}", 0..3),
            any::<bool>(),
            proptest::option::of("[a-z.]{0,10}"),
        )
            .prop_map(|(lv, ciphers, extensions, sigs, sv, raw, alpn, sslv2, sni)| ClientHello {
                legacy_version: lv,
                ciphers,
                extensions,
                signature_algorithms: sigs,
                supported_versions: sv,
                alpn_first_raw: raw,
                alpn,
                sslv2_format: sslv2,
                sni,
                ..Default::default()
            })
    }

    fn any_transport() -> impl proptest::strategy::Strategy<Value = Transport> {
        use proptest::prelude::*;
        prop_oneof![Just(Transport::Tcp), Just(Transport::Quic), Just(Transport::Dtls)]
    }

    /// `^[tqd][0-9sd]{2}[di][0-9]{2}[0-9]{2}[0-9A-Za-z]{2}$` without a regex crate.
    fn valid_a(a: &str) -> bool {
        let b = a.as_bytes();
        b.len() == 10
            && b"tqd".contains(&b[0])
            && b[1..3].iter().all(|c| c.is_ascii_digit() || *c == b's' || *c == b'd')
            && b"di".contains(&b[3])
            && b[4..8].iter().all(u8::is_ascii_digit)
            && b[8..10].iter().all(u8::is_ascii_alphanumeric)
    }

    fn lower_hex12(s: &str) -> bool {
        s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    }

    proptest::proptest! {
        #[test]
        fn ja4_shape(ch in any_client_hello(), t in any_transport()) {
            for fp in [ja4(&ch, t), ja4_original(&ch, t)] {
                let parts: Vec<&str> = fp.split('_').collect();
                proptest::prop_assert_eq!(parts.len(), 3, "{}", fp);
                proptest::prop_assert!(valid_a(parts[0]), "{}", fp);
                proptest::prop_assert!(lower_hex12(parts[1]) && lower_hex12(parts[2]), "{}", fp);
            }
        }

        #[test]
        fn raw_forms_hash_to_the_fingerprint(ch in any_client_hello(), t in any_transport()) {
            for (raw, hashed) in [(ja4_raw(&ch, t), ja4(&ch, t)), (ja4_original_raw(&ch, t), ja4_original(&ch, t))] {
                let mut it = raw.splitn(3, '_');
                let (a, b, c) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
                let exts = c.split('_').next().unwrap_or("");
                let only_sni_alpn = exts.split(',').all(|e| e.is_empty() || e == "0000" || e == "0010");
                // FoxIO's definition, computed here with sha2 directly: the
                // first 12 hex digits of SHA-256, or twelve zeros for an empty list.
                let h12 = |t: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()))[..12].to_owned();
                let hb = if b.is_empty() { "000000000000".to_owned() } else { h12(b) };
                let hc = if only_sni_alpn { "000000000000".to_owned() } else { h12(c) };
                proptest::prop_assert_eq!(format!("{a}_{hb}_{hc}"), hashed);
                // Sorted raw lists really are sorted and GREASE-free.
                // GREASE (RFC 8701): 0x?a?a with both bytes equal.
                let grease = |v: u16| v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff;
                proptest::prop_assert!(!raw.split(['_', ',']).skip(1).any(|v| {
                    u16::from_str_radix(v, 16).map(grease).unwrap_or(false)
                }), "{}", raw);
            }
            // Order never matters for the sorted form.
            let mut shuffled = ch.clone();
            shuffled.ciphers.reverse();
            shuffled.extensions.reverse();
            proptest::prop_assert_eq!(ja4(&shuffled, t), ja4(&ch, t));
        }
    }
}
