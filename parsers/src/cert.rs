//! X.509 certificate summaries in Suricata's EVE `tls` formats, parsed with
//! `x509-parser`.
//!
//! Heads up! Before working on this file read Suricata's
//! `rust/src/x509/mod.rs` and `rust/src/x509/time.rs` (how each field is
//! rendered) and `src/output-json-tls.c` (which EVE key holds it), and
//! RFC 4514 §2.4 for the escaping of [`rfc4514`].
//!
//! Field formats (Suricata EVE `tls.*` in brackets):
//! - `subject` \[`subject`\], `issuerdn` \[`issuerdn`\]: x509-parser's `X509Name`
//!   display, RDNs in certificate order joined by `", "`, multi-valued RDNs
//!   by `" + "`, no escaping: `C=US, O=Let's Encrypt, CN=R3`.
//! - `subject_rfc4514` / `issuer_rfc4514`: RFC 4514 as python
//!   `cryptography`'s `Name.rfc4514_string()` prints it (the corpus oracle):
//!   last RDN first, `,`-joined, `+` inside an RDN, only CN L ST O OU C
//!   STREET DC UID get short names (others print as dotted OIDs), special
//!   characters backslash-escaped.
//! - `serial` \[`serial`\]: the raw DER serial bytes (leading `00` kept) as
//!   upper-case hex joined by `:` (`00:8A:07:E0:8D:4A:B5:0A:7B`).
//! - `notbefore`/`notafter` \[`notbefore`/`notafter`\]: UTC
//!   `%Y-%m-%dT%H:%M:%S`, pre-1970 dates included (`1969-12-31T00:00:00`).
//! - `fingerprint` \[`fingerprint`\]: SHA-1 of the DER, lower-case hex joined
//!   by `:`; `sha256`, `spki_sha256`: plain lower-case hex of SHA-256 over the
//!   DER and over the SubjectPublicKeyInfo.
//! - `subjectaltname` \[`subjectaltname`\]: subjectAltName entries in order:
//!   DNS names as is, IP addresses as text (`192.0.2.1`, `2001:db8::1`),
//!   anything else in x509-parser's `GeneralName` display
//!   (`RFC822Name(a@b)`, `URI(https://x/)`).
//!
//! Pure and panic-free: any byte string gives a summary or a [`CertError`].

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid2sn, oid_registry};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

/// One certificate, summarised as the EVE log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject in Suricata's format (`C=US, O=Let's Encrypt, CN=R3`).
    pub subject: String,
    /// Issuer in Suricata's format.
    pub issuerdn: String,
    /// Subject as RFC 4514 (`CN=R3,O=Let's Encrypt,C=US`).
    pub subject_rfc4514: String,
    /// Issuer as RFC 4514.
    pub issuer_rfc4514: String,
    /// Raw serial bytes, upper-case hex joined by `:`.
    pub serial: String,
    /// Validity start, UTC `%Y-%m-%dT%H:%M:%S`.
    pub notbefore: String,
    /// Validity end, UTC `%Y-%m-%dT%H:%M:%S`.
    pub notafter: String,
    /// subjectAltName entries in certificate order.
    pub subjectaltname: Vec<String>,
    /// The same entries as Suricata writes them (`SCGeneralName` in its
    /// `rust/src/x509/mod.rs`), when that differs: IP addresses as the
    /// bytes' debug form (`[10, 77, 2, 3]`), URIs bare. `None` when every
    /// entry is written alike (DNS names only, the usual case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjectaltname_suricata: Option<Vec<String>>,
    /// SHA-1 of the DER, lower-case hex bytes joined by `:`.
    pub fingerprint: String,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo (what key pins hash), hex.
    pub spki_sha256: String,
    /// Subject and issuer are the same name.
    pub self_issued: bool,
    /// X.509 version as people say it: 1, 2 or 3.
    pub version: u32,
    /// Signature algorithm (`sha256WithRSAEncryption`, `ecdsa-with-SHA256`, or a dotted OID).
    pub sig_alg: String,
    /// Public key type and size: `RSA 2048`, `EC P-256`, `DSA 1024`, `Ed25519`, ...
    pub key: String,
}

/// Why a byte string is not a certificate we can summarise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The input ends inside the certificate.
    #[error("certificate truncated")]
    Incomplete,
    /// The input is not a DER X.509 certificate.
    #[error("invalid certificate: {0}")]
    Invalid(String),
}

/// Summarises one DER certificate (as carried in a TLS Certificate message).
///
/// Bytes after the certificate's outer SEQUENCE are ignored; the hashes
/// cover the certificate only.
pub fn parse_certificate(der: &[u8]) -> Result<CertSummary, CertError> {
    if outer_len(der).is_some_and(|n| n > der.len()) {
        return Err(CertError::Incomplete);
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
        x509_parser::nom::Err::Incomplete(_) => CertError::Incomplete,
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => CertError::Invalid(e.to_string()),
    })?;
    let der = der.get(..der.len().saturating_sub(rest.len())).unwrap_or(der);
    let tbs = &cert.tbs_certificate;
    let subject_rfc4514 = rfc4514(tbs.subject());
    let issuer_rfc4514 = rfc4514(tbs.issuer());
    Ok(CertSummary {
        subject: tbs.subject().to_string(),
        issuerdn: tbs.issuer().to_string(),
        self_issued: tbs.subject().as_raw() == tbs.issuer().as_raw() || subject_rfc4514 == issuer_rfc4514,
        subject_rfc4514,
        issuer_rfc4514,
        serial: colon_hex(tbs.raw_serial(), true),
        notbefore: utc_time(tbs.validity().not_before.timestamp()),
        notafter: utc_time(tbs.validity().not_after.timestamp()),
        subjectaltname: subject_alt_names(&cert),
        subjectaltname_suricata: suricata_alt_names(&cert),
        fingerprint: colon_hex(&Sha1::digest(der), false),
        sha256: hex::encode(Sha256::digest(der)),
        spki_sha256: hex::encode(Sha256::digest(tbs.subject_pki.raw)),
        version: tbs.version().0.saturating_add(1),
        sig_alg: sig_alg_name(&cert.signature_algorithm.algorithm.to_id_string()),
        key: describe_key(tbs.public_key()),
    })
}

/// Total length (header + contents) the outer DER SEQUENCE declares, if
/// the input starts with one.
fn outer_len(der: &[u8]) -> Option<usize> {
    if *der.first()? != 0x30 {
        return None;
    }
    let l0 = *der.get(1)?;
    if l0 < 0x80 {
        return Some(2 + usize::from(l0));
    }
    let n = usize::from(l0 & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = der.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    len.checked_add(2 + n)
}

/// A name in RFC 4514 form, as python `cryptography`'s
/// `Name.rfc4514_string()` prints it: last RDN first, `,` between RDNs, `+`
/// inside one, values escaped per RFC 4514 §2.4.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            out.push_str(rfc4514_key(&oid).unwrap_or(&oid));
            out.push('=');
            match attr_text(atv.attr_value()) {
                Some(text) => out.push_str(&rfc4514_escape(&text)),
                // RFC 4514 §2.4: '#' + hex of the BER encoding.
                None => {
                    out.push('#');
                    out.push_str(&hex::encode(der_of(atv.attr_value())));
                }
            }
        }
    }
    out
}

/// Short names python `cryptography` uses (`_NAMEOID_TO_NAME`); RFC 4514
/// §3 has the same list.
fn rfc4514_key(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The text of a string-typed attribute value (lossy for bad encodings);
/// `None` for non-string types.
fn attr_text(v: &Any<'_>) -> Option<String> {
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::TeletexString
        | Tag::VideotexString
        | Tag::GraphicString
        | Tag::GeneralString => Some(String::from_utf8_lossy(data).into_owned()),
        Tag::BmpString => {
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
            Some(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
        }
        Tag::UniversalString => Some(
            data.chunks(4)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b[..c.len()].copy_from_slice(c);
                    char::from_u32(u32::from_be_bytes(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Re-encodes an `Any` as DER (tag, length, contents) for the `#hex` form.
fn der_of(v: &Any<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.data.len() + 6);
    // Low-tag-number form covers every universal tag used in names.
    let constructed = if v.header.is_constructed() { 0x20 } else { 0 };
    let class = (v.class() as u8) << 6;
    out.push(class | constructed | (v.tag().0.min(30) as u8));
    let len = v.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(v.data);
    out
}

/// RFC 4514 §2.4 escaping, exactly as python `cryptography`'s
/// `_escape_dn_value` does it.
fn rfc4514_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    if out.starts_with('#') || (out.starts_with(' ') && out.len() > 1) {
        out.insert(0, '\\');
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

fn colon_hex(b: &[u8], upper: bool) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = if upper { write!(s, "{x:02X}") } else { write!(s, "{x:02x}") };
    }
    s
}

/// Seconds since the epoch (negative before 1970) as UTC `%Y-%m-%dT%H:%M:%S`,
/// the format of Suricata's `x509::time::format_timestamp`.
fn utc_time(ts: i64) -> String {
    // Days-to-civil (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else { continue };
        for gn in &san.general_names {
            out.push(match gn {
                GeneralName::DNSName(s) => (*s).to_owned(),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        Ipv6Addr::from(a).to_string()
                    }
                    _ => gn.to_string(),
                },
                other => other.to_string(),
            });
        }
    }
    out
}

/// subjectAltName entries as Suricata writes them, if any is written
/// otherwise than by [`subject_alt_names`].
fn suricata_alt_names(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut differs = false;
    for ext in cert.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else { continue };
        for gn in &san.general_names {
            out.push(match gn {
                GeneralName::DNSName(s) => (*s).to_owned(),
                GeneralName::URI(s) => {
                    differs = true;
                    (*s).to_owned()
                }
                GeneralName::IPAddress(b) => {
                    differs = true;
                    format!("{b:?}")
                }
                other => other.to_string(),
            });
        }
    }
    differs.then_some(out)
}

/// Signature algorithm names as python `cryptography` (and OpenSSL) spell
/// them; other OIDs through x509-parser's registry, else dotted.
fn sig_alg_name(oid: &str) -> String {
    let known = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10040.4.3" => "dsa-with-sha1",
        "2.16.840.1.101.3.4.3.1" => "dsa-with-sha224",
        "2.16.840.1.101.3.4.3.2" => "dsa-with-sha256",
        "1.3.101.112" => "ed25519",
        "1.3.101.113" => "ed448",
        // FIPS 204 (python cryptography 48 still says "Unknown OID").
        "2.16.840.1.101.3.4.3.17" => "ML-DSA-44",
        "2.16.840.1.101.3.4.3.18" => "ML-DSA-65",
        "2.16.840.1.101.3.4.3.19" => "ML-DSA-87",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    registry_name(oid).unwrap_or_else(|| oid.to_owned())
}

fn registry_name(dotted: &str) -> Option<String> {
    let oid: x509_parser::asn1_rs::Oid<'static> = dotted.parse().ok()?;
    oid2sn(&oid, oid_registry()).ok().map(str::to_owned)
}

/// Bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn bit_len(b: &[u8]) -> usize {
    let b = &b[b.iter().take_while(|x| **x == 0).count()..];
    match b.first() {
        Some(f) => (b.len() - 1) * 8 + (8 - f.leading_zeros() as usize),
        None => 0,
    }
}

/// `DSA p` from the algorithm parameters `SEQUENCE { p, q, g }` (contents only).
fn first_der_integer(data: &[u8]) -> Option<&[u8]> {
    if *data.first()? != 0x02 {
        return None;
    }
    let l0 = *data.get(1)?;
    let (len, start) = if l0 < 0x80 {
        (usize::from(l0), 2)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = data.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    data.get(start..start.checked_add(len)?)
}

/// Key type and size: `RSA 2048`, `EC P-256`, `DSA 1024`, `Ed25519`, or the
/// algorithm's name/OID when unknown.
fn describe_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        // rsaEncryption, RSASSA-PSS
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let name = if alg.ends_with(".1") { "RSA" } else { "RSASSA-PSS" };
            // parsed() only knows rsaEncryption; PSS keys hold the same RSAPublicKey.
            let key = x509_parser::public_key::RSAPublicKey::from_der(&spki.subject_public_key.data);
            match (spki.parsed(), key) {
                (Ok(PublicKey::RSA(k)), _) | (_, Ok((_, k))) => format!("{name} {}", bit_len(k.modulus)),
                _ => name.to_owned(),
            }
        }
        "1.2.840.10045.2.1" => {
            let curve =
                spki.algorithm.parameters.as_ref().and_then(|p| x509_parser::asn1_rs::Oid::try_from(p).ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC P-256".to_owned(),
                Some("1.3.132.0.34") => "EC P-384".to_owned(),
                Some("1.3.132.0.35") => "EC P-521".to_owned(),
                Some("1.2.840.10045.3.1.1") => "EC P-192".to_owned(),
                Some("1.3.132.0.33") => "EC P-224".to_owned(),
                Some("1.3.132.0.10") => "EC secp256k1".to_owned(),
                Some("1.3.36.3.3.2.8.1.1.7") => "EC brainpoolP256r1".to_owned(),
                Some("1.3.36.3.3.2.8.1.1.11") => "EC brainpoolP384r1".to_owned(),
                Some("1.3.36.3.3.2.8.1.1.13") => "EC brainpoolP512r1".to_owned(),
                Some(other) => format!("EC {other}"),
                None => "EC".to_owned(),
            }
        }
        "1.2.840.10040.4.1" => {
            let p = spki.algorithm.parameters.as_ref().and_then(|p| first_der_integer(p.data));
            match p {
                Some(p) => format!("DSA {}", bit_len(p)),
                None => "DSA".to_owned(),
            }
        }
        "1.3.101.110" => "X25519".to_owned(),
        "1.3.101.111" => "X448".to_owned(),
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "2.16.840.1.101.3.4.3.17" => "ML-DSA-44".to_owned(),
        "2.16.840.1.101.3.4.3.18" => "ML-DSA-65".to_owned(),
        "2.16.840.1.101.3.4.3.19" => "ML-DSA-87".to_owned(),
        _ => registry_name(&alg).unwrap_or(alg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    // parsers/testdata/*.der were made for these tests with OpenSSL 3.0.19:
    //   openssl ecparam -name prime256v1 -genkey -noout -out ec.key
    //   openssl req -new -x509 -key ec.key -sha256 -days 3650 -utf8 -multivalue-rdn \
    //     -set_serial 0x8a07e08d4ab50a7b \
    //     -subj '/C=US/ST=Some-State/O=Acme, Inc./OU=R&D+CN=multi/CN=#test <www> "q"; x\+y /emailAddress=admin@example.com' \
    //     -addext "subjectAltName=DNS:example.com,DNS:*.example.com,IP:192.0.2.1,IP:2001:db8::1,email:admin@example.com,URI:https://example.com/" \
    //     -outform DER -out ec-san.der
    //   (rsa-leaf.der: RSA-1024 leaf "/C=CH/L=Zürich/O=Pinwatch/CN=leaf.pinwatch.test",
    //    serial 5, SAN DNS:leaf.pinwatch.test, issued by "/O=Pinwatch/CN=Pinwatch Test CA"
    //    with `openssl x509 -req -CA ... -sha256 -extfile`;
    //    ec-v1.der: P-384 "/CN=v1 cert" self-signed by `openssl x509 -req -signkey`, no
    //    extensions, so X.509 v1, serial 0x00ff.)
    // Expected values come from python cryptography 48 (rfc4514_string,
    // fingerprint(SHA1/SHA256), SPKI hash, serial, dates) and
    // `openssl x509 -noout -fingerprint -sha1`, not from this code.

    #[test]
    fn generated_ec_cert_with_every_escaping_rule() {
        let c = parse_certificate(&testdata("ec-san.der")).expect("parses");
        assert_eq!(
            c.subject_rfc4514,
            r#"1.2.840.113549.1.9.1=admin@example.com,CN=\#test \<www\> \"q\"\; x\+y\ ,OU=R&D+CN=multi,O=Acme\, Inc.,ST=Some-State,C=US"#
        );
        assert_eq!(c.issuer_rfc4514, c.subject_rfc4514);
        assert!(c.self_issued);
        // Suricata form: x509-parser display, certificate order, no escaping.
        assert_eq!(c.subject, r#"C=US, ST=Some-State, O=Acme, Inc., OU=R&D + CN=multi, CN=#test <www> "q"; x+y , Email=admin@example.com"#);
        assert_eq!(c.serial, "00:8A:07:E0:8D:4A:B5:0A:7B");
        assert_eq!(c.fingerprint, "52:ed:cd:e7:0f:80:ee:4d:8a:75:d4:ab:10:26:06:3a:19:94:49:1b");
        assert_eq!(c.sha256, "992e892001381a274923b0011900c57b12a2c3d9f9f82c88195985e7dd3ef948");
        assert_eq!(c.spki_sha256, "99d03d5bb750c6683b555e35db198e1d3a61d2c874bef505a8cf757b9e822384");
        assert_eq!(c.notbefore, "2026-11-25T10:12:39");
        assert_eq!(c.notafter, "2036-11-22T10:12:39");
        assert_eq!(
            c.subjectaltname,
            ["example.com", "*.example.com", "192.0.2.1", "2001:db8::1", "RFC822Name(admin@example.com)", "URI(https://example.com/)"]
        );
        // Suricata's form for tls.subjectaltname: IP addresses as their
        // bytes' debug form, URIs bare, other names as x509-parser shows them.
        assert_eq!(
            c.subjectaltname_suricata.as_deref().expect("differs"),
            [
                "example.com",
                "*.example.com",
                "[192, 0, 2, 1]",
                "[32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]",
                "RFC822Name(admin@example.com)",
                "https://example.com/"
            ]
        );
        assert_eq!((c.version, c.sig_alg.as_str(), c.key.as_str()), (3, "ecdsa-with-SHA256", "EC P-256"));
    }

    #[test]
    fn generated_rsa_leaf_issued_by_a_ca() {
        let c = parse_certificate(&testdata("rsa-leaf.der")).expect("parses");
        assert_eq!(c.subject_rfc4514, "CN=leaf.pinwatch.test,O=Pinwatch,L=Zürich,C=CH");
        assert_eq!(c.issuer_rfc4514, "CN=Pinwatch Test CA,O=Pinwatch");
        assert_eq!(c.subject, "C=CH, L=Zürich, O=Pinwatch, CN=leaf.pinwatch.test");
        assert_eq!(c.issuerdn, "O=Pinwatch, CN=Pinwatch Test CA");
        assert!(!c.self_issued);
        assert_eq!(c.serial, "05");
        assert_eq!(c.fingerprint, "cd:4f:d9:da:74:ae:74:7d:69:bd:70:9d:29:55:34:86:27:84:ef:30");
        assert_eq!(c.sha256, "71821fd686d167ba1beb591e992ff45b9c247943968e9e2fe9517438764dc503");
        assert_eq!(c.spki_sha256, "072d4e63deb5a8c7eb6cab730754c8aaf670364f670597772e004f19d6ab2093");
        assert_eq!((c.notbefore.as_str(), c.notafter.as_str()), ("2026-11-25T10:12:39", "2029-02-27T10:12:39"));
        assert_eq!(c.subjectaltname, ["leaf.pinwatch.test"]);
        assert_eq!(c.subjectaltname_suricata, None, "DNS names only: written alike");
        assert_eq!((c.version, c.sig_alg.as_str(), c.key.as_str()), (3, "sha256WithRSAEncryption", "RSA 1024"));
    }

    #[test]
    fn generated_v1_cert_without_extensions() {
        let c = parse_certificate(&testdata("ec-v1.der")).expect("parses");
        assert_eq!(c.subject_rfc4514, "CN=v1 cert");
        assert_eq!(c.serial, "00:FF");
        assert_eq!(c.fingerprint, "1c:ca:0b:15:3f:c0:14:6d:78:e5:31:de:b8:94:c0:7f:14:ef:d5:90");
        assert_eq!(c.sha256, "66b994d37208eb247b1119780750101ee753f4b4d6dee0c50f1e5e4e02936e16");
        assert_eq!(c.spki_sha256, "58957011fcea4b816f5e37ef5ea09485c98ec93de98b3c6b4d93c6145214c54e");
        assert!(c.subjectaltname.is_empty());
        assert_eq!((c.version, c.sig_alg.as_str(), c.key.as_str()), (1, "ecdsa-with-SHA384", "EC P-384"));
    }

    #[test]
    fn trailing_bytes_are_not_hashed() {
        let mut der = testdata("ec-v1.der");
        let plain = parse_certificate(&der).expect("parses");
        der.extend_from_slice(b"junk");
        assert_eq!(parse_certificate(&der).expect("parses"), plain);
    }

    #[test]
    fn errors() {
        assert!(parse_certificate(&[]).is_err());
        let der = testdata("ec-v1.der");
        assert_eq!(parse_certificate(&der[..100]), Err(CertError::Incomplete));
        assert!(matches!(parse_certificate(&[0x04, 0x00]), Err(CertError::Invalid(_))));
        assert_eq!(outer_len(&[0x30, 0x82, 0x01, 0x00]), Some(260));
        assert_eq!(outer_len(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn utc_time_format() {
        // Suricata rust/src/x509/time.rs test_format_timestamp vectors.
        assert_eq!(utc_time(-86_400), "1969-12-31T00:00:00");
        assert_eq!(utc_time(2_177_367_003), "2038-12-31T00:10:03");
        assert_eq!(utc_time(0), "1970-01-01T00:00:00");
        assert_eq!(utc_time(253_402_300_799), "9999-12-31T23:59:59");
        assert_eq!(utc_time(-631_152_000), "1950-01-01T00:00:00");
    }

    #[test]
    fn rfc4514_escape_rules() {
        // python cryptography x509/name.py _escape_dn_value, case by case.
        assert_eq!(rfc4514_escape(""), "");
        assert_eq!(rfc4514_escape(" "), "\\ ");
        assert_eq!(rfc4514_escape("  "), "\\ \\ ");
        assert_eq!(rfc4514_escape(" a"), "\\ a");
        assert_eq!(rfc4514_escape("#a#"), "\\#a#");
        assert_eq!(rfc4514_escape("a\0b"), "a\\00b");
        assert_eq!(rfc4514_escape(r#"\"+,;<>="#), r#"\\\"\+\,\;\<\>="#);
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01]), 1);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(first_der_integer(&[0x02, 0x81, 0x02, 0x00, 0x80, 0xff]), Some(&[0x00, 0x80][..]));
        assert_eq!(first_der_integer(&[0x02, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(first_der_integer(&[0x02, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    /// Minimal capture reader for the corpus tests: classic pcap and pcapng,
    /// Ethernet (+VLAN), BSD null, raw IP; IPv4/IPv6 + TCP. Reassembles each
    /// TCP direction by sequence number and pulls the DER certificates out
    /// of cleartext TLS Certificate messages.
    mod capture {
        use std::collections::BTreeMap;

        type Dir = (Vec<u8>, u16, Vec<u8>, u16);

        fn u16be(b: &[u8], i: usize) -> Option<u16> {
            Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
        }
        fn u32be(b: &[u8], i: usize) -> Option<u32> {
            Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
        }
        fn u24be(b: &[u8], i: usize) -> Option<usize> {
            Some((usize::from(*b.get(i)?) << 16) | (usize::from(*b.get(i + 1)?) << 8) | usize::from(*b.get(i + 2)?))
        }

        /// (linktype, frame) of every packet.
        fn frames(file: &[u8]) -> Vec<(u32, Vec<u8>)> {
            let mut out = Vec::new();
            let Some(magic) = file.get(0..4) else { return out };
            if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
                // pcapng
                let mut le = true;
                let mut links = Vec::new();
                let mut i = 0;
                while i + 12 <= file.len() {
                    if file[i..i + 4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                        le = file[i + 8..i + 12] == [0x4d, 0x3c, 0x2b, 0x1a];
                        links.clear();
                    }
                    let rd = |o: usize| -> u32 {
                        let b: [u8; 4] = file[o..o + 4].try_into().unwrap_or([0; 4]);
                        if le {
                            u32::from_le_bytes(b)
                        } else {
                            u32::from_be_bytes(b)
                        }
                    };
                    let (ty, len) = (rd(i), rd(i + 4) as usize);
                    if len < 12 || i + len > file.len() {
                        break;
                    }
                    match ty {
                        1 => {
                            let lt = if le {
                                u16::from_le_bytes([file[i + 8], file[i + 9]])
                            } else {
                                u16::from_be_bytes([file[i + 8], file[i + 9]])
                            };
                            links.push(u32::from(lt));
                        }
                        6 if len >= 28 => {
                            let (iface, cap) = (rd(i + 8) as usize, rd(i + 20) as usize);
                            if let (Some(lt), Some(data)) = (links.get(iface), file.get(i + 28..i + 28 + cap)) {
                                out.push((*lt, data.to_vec()));
                            }
                        }
                        _ => {}
                    }
                    i += len;
                }
                return out;
            }
            let le = match magic {
                [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
                [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
                _ => return out,
            };
            let rd = |o: usize| -> Option<u32> {
                let b: [u8; 4] = file.get(o..o + 4)?.try_into().ok()?;
                Some(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
            };
            let Some(lt) = rd(20) else { return out };
            let mut i = 24;
            while let Some(cap) = rd(i + 8) {
                let Some(data) = file.get(i + 16..i + 16 + cap as usize) else { break };
                out.push((lt & 0xffff, data.to_vec()));
                i += 16 + cap as usize;
            }
            out
        }

        /// (direction, seq, payload) of a TCP segment in a frame.
        fn tcp(lt: u32, f: &[u8]) -> Option<(Dir, u32, Vec<u8>)> {
            let ip = match lt {
                1 => {
                    let mut o = 12;
                    let mut et = u16be(f, o)?;
                    while et == 0x8100 || et == 0x88a8 {
                        o += 4;
                        et = u16be(f, o)?;
                    }
                    f.get(o + 2..)?
                }
                0 => f.get(4..)?,
                101 | 228 | 229 | 12 | 14 => f,
                113 => f.get(16..)?,
                _ => return None,
            };
            let (src, dst, l4) = match ip.first()? >> 4 {
                4 if *ip.get(9)? == 6 => {
                    let ihl = usize::from(ip[0] & 0x0f) * 4;
                    let total = usize::from(u16be(ip, 2)?);
                    (ip.get(12..16)?.to_vec(), ip.get(16..20)?.to_vec(), ip.get(ihl..total.min(ip.len()))?)
                }
                6 if *ip.get(6)? == 6 => {
                    let plen = usize::from(u16be(ip, 4)?);
                    (ip.get(8..24)?.to_vec(), ip.get(24..40)?.to_vec(), ip.get(40..(40 + plen).min(ip.len()))?)
                }
                _ => return None,
            };
            let off = usize::from(l4.get(12)? >> 4) * 4;
            let payload = l4.get(off..)?.to_vec();
            Some(((src, u16be(l4, 0)?, dst, u16be(l4, 2)?), u32be(l4, 4)?, payload))
        }

        /// The contiguous byte stream of each direction from its lowest sequence number.
        fn streams(file: &[u8]) -> Vec<Vec<u8>> {
            let mut segs: BTreeMap<Dir, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
            for (lt, f) in frames(file) {
                if let Some((d, seq, p)) = tcp(lt, &f) {
                    if !p.is_empty() {
                        segs.entry(d).or_default().push((seq, p));
                    }
                }
            }
            let mut out = Vec::new();
            for (_, mut v) in segs {
                let base = v.iter().map(|(s, _)| *s).min().unwrap_or(0);
                v.sort_by_key(|(s, _)| s.wrapping_sub(base));
                let mut stream: Vec<u8> = Vec::new();
                for (s, p) in v {
                    let rel = s.wrapping_sub(base) as usize;
                    if rel > stream.len() {
                        break; // gap
                    }
                    if rel + p.len() > stream.len() {
                        stream.extend_from_slice(&p[stream.len() - rel..]);
                    }
                }
                out.push(stream);
            }
            out
        }

        /// DER certificates of every cleartext TLS Certificate message.
        pub fn certificates(file: &[u8]) -> Vec<Vec<u8>> {
            let mut certs = Vec::new();
            for s in streams(file) {
                // Find the first handshake record (skips STARTTLS preambles).
                let Some(start) = (0..s.len()).find(|&i| s[i] == 0x16 && s.get(i + 1) == Some(&3) && s.get(i + 2).is_some_and(|v| *v <= 4))
                else {
                    continue;
                };
                let mut hs = Vec::new();
                let mut i = start;
                while let (Some(&ty), Some(len)) = (s.get(i), u16be(&s, i + 3)) {
                    let Some(body) = s.get(i + 5..i + 5 + usize::from(len)) else { break };
                    match ty {
                        22 => hs.extend_from_slice(body),
                        20 | 21 => {}
                        _ => break,
                    }
                    if ty == 20 {
                        break; // ChangeCipherSpec: the rest is encrypted
                    }
                    i += 5 + usize::from(len);
                }
                let mut j = 0;
                while let (Some(&ty), Some(len)) = (hs.get(j), u24be(&hs, j + 1)) {
                    let Some(body) = hs.get(j + 4..j + 4 + len) else { break };
                    if ty == 11 {
                        let mut k = 3;
                        while let Some(cl) = u24be(body, k) {
                            let Some(der) = body.get(k + 3..k + 3 + cl) else { break };
                            certs.push(der.to_vec());
                            k += 3 + cl;
                        }
                    }
                    j += 4 + len;
                }
            }
            certs
        }
    }

    /// The shared corpus (`pinwatch_testkit::corpus::root`): `None` after a
    /// SKIPPED line, a failure under `PINWATCH_CORPUS_REQUIRED=1`.
    fn corpus_dir() -> Option<std::path::PathBuf> {
        pinwatch_testkit::corpus::root()
    }

    fn corpus_certs(path: &str) -> Option<Vec<CertSummary>> {
        let full = corpus_dir()?.join(path);
        match std::fs::read(&full) {
            Ok(b) => Some(capture::certificates(&b).iter().filter_map(|d| parse_certificate(d).ok()).collect()),
            Err(_) => {
                println!("SKIPPED: {} not present", full.display());
                None
            }
        }
    }

    fn find<'a>(certs: &'a [CertSummary], serial: &str) -> &'a CertSummary {
        certs.iter().find(|c| c.serial == serial).unwrap_or_else(|| panic!("no cert with serial {serial} in {certs:#?}"))
    }

    /// Suricata's own expected EVE values (suricata-verify test.yaml files).
    #[test]
    fn suricata_verify_expected_eve_fields() {
        // tests/bug-2646-02/test.yaml (same leaf as bug-2646-01).
        if let Some(certs) = corpus_certs("suricata-verify/tests/bug-2646-02/input.pcap") {
            let c = find(&certs, "08:3A:84:59:2F:77:F2:E7:95:1B:F8:87:CE:DE:C9:66");
            assert_eq!(c.fingerprint, "cc:aa:48:48:66:46:0e:91:53:2c:9c:7c:23:2a:b1:74:4d:29:9d:33");
            assert_eq!(c.issuerdn, "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert SHA2 High Assurance Server CA");
            assert_eq!(c.subject, "C=US, ST=California, L=San Francisco, O=GitHub, Inc., CN=www.github.com");
            assert_eq!((c.notbefore.as_str(), c.notafter.as_str()), ("2017-03-23T00:00:00", "2020-05-13T12:00:00"));
            // Oracle suricata-verify__bug-2646-02__input.pcap.certs.tsv frame 8 chain 0.
            assert_eq!(c.subject_rfc4514, r"CN=www.github.com,O=GitHub\, Inc.,L=San Francisco,ST=California,C=US");
            assert_eq!(c.sha256, "d25d74b6e9af00715a4e5db82670492a0a6b910dc2febaf6bfa860c71437548f");
            assert_eq!(c.subjectaltname[..3], ["www.github.com", "*.github.com", "github.com"]);
            assert_eq!((c.sig_alg.as_str(), c.key.as_str()), ("sha256WithRSAEncryption", "RSA 2048"));
        }
        // tests/tls/tls-pre-1970/test.yaml: notbefore before the epoch; raw IP link.
        if let Some(certs) = corpus_certs("suricata-verify/tests/tls/tls-pre-1970/input.pcap") {
            let c = find(&certs, "32");
            assert_eq!(c.fingerprint, "71:cd:fe:08:7f:3d:2a:18:32:69:38:fa:bd:64:7b:c6:cf:cc:44:8e");
            assert_eq!(c.issuerdn, "C=KR, ST=Kyunggido, L=Suwon, O=Samsung Electronics, OU=SW2 SISC, CN=ROOT CA SISC FKP2_PLUS");
            assert_eq!(c.subject, "OU=vd, CN=fkp.samsungcloudsolution.com");
            assert_eq!((c.notbefore.as_str(), c.notafter.as_str()), ("1969-12-31T00:00:00", "2038-12-31T00:10:03"));
        }
        // tests/tls/tls-eve-custom-fields/test.yaml on tls-store-02/tls-client-auth.pcap
        // (null link, IPv6; server and client certificates).
        if let Some(certs) = corpus_certs("suricata-verify/tests/tls/tls-store-02/tls-client-auth.pcap") {
            let c = find(&certs, "00:C7:D4:28:8B:80:E0:1E:25");
            assert_eq!(c.subject, "C=HU, ST=Budapest, L=Budapest, O=TLSClientAuthSampleServer, CN=SampleServer");
            assert_eq!(c.issuerdn, "C=HU, ST=Budapest, L=Budapest, O=TLSClientAuthSampleCA, CN=SampleRoot");
            assert_eq!(c.subjectaltname[0], "localhost");
            assert_eq!(c.fingerprint, "06:39:f9:5d:fe:81:53:c4:9d:f0:ac:80:3e:2d:42:07:e8:96:de:09");
            assert_eq!((c.notbefore.as_str(), c.notafter.as_str()), ("2018-04-14T20:55:27", "2018-05-14T20:55:27"));
            let client = find(&certs, "00:C7:D4:28:8B:80:E0:1E:27");
            assert_eq!((client.notbefore.as_str(), client.notafter.as_str()), ("2018-04-14T20:55:27", "2018-05-14T20:55:27"));
        }
        // tests/ldap-starttls/test.yaml: TLS after an LDAP StartTLS exchange, IPv6.
        if let Some(certs) = corpus_certs("suricata-verify/tests/ldap-starttls/input.pcap") {
            let c = find(&certs, "00:8A:07:E0:8D:4A:B5:0A:7B");
            assert_eq!((c.subject.as_str(), c.issuerdn.as_str()), ("CN=LDAP SSL test", "CN=LDAP SSL test"));
            assert_eq!((c.notbefore.as_str(), c.notafter.as_str()), ("2015-01-31T02:18:29", "2025-01-28T02:18:29"));
            assert!(c.self_issued);
        }
    }

    /// Compares every certificate we can pull out of a corpus capture with
    /// the python-cryptography oracle row of the same SHA-256
    /// (`shared/corpus/oracle/<name>.certs.tsv`, see oracle/README.md).
    #[test]
    fn corpus_certs_tsv_oracle() {
        let Some(corpus) = corpus_dir() else { return };
        let Ok(dir) = std::fs::read_dir(corpus.join("oracle")) else { return };
        // MANIFEST.md rows: | `<capture path>` | ... | `<oracle name>`: tshark.tsv, certs, ...
        // MANIFEST rows that name a `certs` oracle: oracle name -> capture path.
        let mut captures = std::collections::HashMap::new();
        for row in pinwatch_testkit::corpus::manifest(&corpus) {
            if row.kinds.iter().any(|k| k == "certs") {
                captures.entry(row.oracle).or_insert(row.rel);
            }
        }
        let (mut compared, mut files) = (0usize, 0usize);
        let mut failures = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".certs.tsv") else { continue };
            let Some(path) = captures.get(stem) else { continue };
            let capture = corpus.join(path);
            let (Ok(tsv), Ok(bytes)) = (std::fs::read_to_string(e.path()), std::fs::read(&capture)) else { continue };
            let mut rows = std::collections::HashMap::new();
            for line in tsv.lines().skip(1) {
                let f: Vec<&str> = line.split('\t').collect();
                if f.len() >= 14 {
                    rows.insert(f[11].to_owned(), f);
                }
            }
            files += 1;
            for der in capture::certificates(&bytes) {
                let Ok(c) = parse_certificate(&der) else { continue };
                let Some(f) = rows.get(&c.sha256) else { continue };
                if f[4].starts_with("PARSE_ERROR") {
                    continue; // python cryptography could not parse it; we can
                }
                compared += 1;
                let mut check = |what: &str, ours: String, theirs: &str| {
                    if ours != theirs {
                        failures.push(format!("{stem} {what}: ours {ours:?} oracle {theirs:?}"));
                    }
                };
                check("subject", c.subject_rfc4514.clone(), f[4]);
                check("issuer", c.issuer_rfc4514.clone(), f[5]);
                check("self_issued", if c.self_issued { "True" } else { "False" }.into(), f[6]);
                let serial = c.serial.replace(':', "").trim_start_matches('0').to_lowercase();
                if !f[7].starts_with('-') {
                    check("serial", if serial.is_empty() { "0".into() } else { serial }, f[7]);
                }
                check("not_before", format!("{}+00:00", c.notbefore), f[8]);
                check("not_after", format!("{}+00:00", c.notafter), f[9]);
                let dns: Vec<String> =
                    c.subjectaltname.iter().filter(|s| s.parse::<std::net::IpAddr>().is_err() && !s.contains('(')).cloned().collect();
                // python cryptography refuses these two leaf certificates'
                // extensions (BasicConstraints encodes the DEFAULT cA=FALSE),
                // so the oracle has no SANs for them.
                let strict_der_refusal = ["ndpi__pop3_stls.pcap", "zeek__tls__tls-early-alert.pcap"];
                if !(strict_der_refusal.contains(&stem) && f[10].is_empty()) {
                    check("san_dns", dns.join(";"), f[10]);
                }
                if !f[12].is_empty() && f[12] != "Unknown OID" {
                    check("sig_alg", c.sig_alg.clone(), f[12]);
                }
                let key = f[13]
                    .replace("RSAPublicKey", "RSA ")
                    .replace("DSAPublicKey", "DSA ")
                    .replace("ECPublicKey256", "EC P-256")
                    .replace("ECPublicKey384", "EC P-384")
                    .replace("ECPublicKey521", "EC P-521")
                    .replace("MLDSA44PublicKey", "ML-DSA-44");
                if !key.is_empty() && key != "unparsed" {
                    check("key", c.key.clone(), &key);
                }
            }
        }
        println!("certs.tsv oracle: {compared} certificates compared over {files} captures");
        assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
        assert!(compared >= 100, "only {compared} certificates compared");
    }

    fn mutate(base: Vec<u8>, edits: Vec<(usize, u8)>, cut: usize) -> Vec<u8> {
        let mut d = base;
        for (pos, val) in edits {
            if !d.is_empty() {
                let i = pos % d.len();
                d[i] = val;
            }
        }
        d.truncate(cut.max(1));
        d
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..800)) {
            let _ = parse_certificate(&data);
        }

        #[test]
        fn never_panics_on_mutated_certificates(
            which in 0usize..3,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..8),
            cut in 0usize..800,
        ) {
            let base = testdata(["ec-san.der", "rsa-leaf.der", "ec-v1.der"][which]);
            let d = mutate(base, edits, cut);
            if let Ok(c) = parse_certificate(&d) {
                // Whatever parses keeps the documented shapes.
                proptest::prop_assert_eq!(c.sha256.len(), 64);
                proptest::prop_assert_eq!(c.fingerprint.len(), 59);
                proptest::prop_assert!(c.serial.split(':').all(|b| b.len() == 2 || b.is_empty()));
                proptest::prop_assert_eq!(c.notbefore.len(), 19);
                proptest::prop_assert!((1..=3).contains(&c.version) || c.version > 3);
            }
        }
    }
}
