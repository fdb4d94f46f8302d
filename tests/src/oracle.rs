//! Parsers for the oracle files (see the corpus's `oracle/README.md`).
//!
//! Written from the README's column definitions only; nothing here is shared
//! with the sensor's parsers, so an agreement is two independent answers.

use std::collections::HashMap;
use std::net::SocketAddr;

/// One row of `<name>.tshark.tsv`: a frame with ClientHello / ServerHello /
/// Certificate / CertificateRequest / alert records (or a gQUIC SNI).
#[derive(Debug, Clone, Default)]
pub struct TsharkRow {
    pub frame: u64,
    pub time: f64,
    /// `tcp`, `quic`, `gquic` or `udp`.
    pub transport: String,
    pub stream: u64,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub src_raw: String,
    pub dst_raw: String,
    /// Handshake messages of the frame (`client_hello`, `server_hello`, ...; `alert`).
    pub msgs: Vec<String>,
    pub record_versions: Vec<String>,
    pub hs_legacy_version: Vec<String>,
    pub sni: String,
    pub supported_versions: Vec<String>,
    pub sh_selected_version: Vec<String>,
    pub sh_cipher: Vec<String>,
    pub alpn: Vec<String>,
    pub ja3: String,
    pub ja3_full: String,
    pub ja3s: String,
    pub ja3s_full: String,
    /// `level:description` per cleartext alert record, `encrypted_alert` otherwise.
    pub alerts: Vec<String>,
    pub n_certs: Vec<u32>,
    pub quic_version: String,
    pub gquic_sni: String,
    pub ch_ext_types: Vec<u16>,
}

impl TsharkRow {
    pub fn has_msg(&self, m: &str) -> bool {
        self.msgs.iter().any(|x| x == m)
    }
    pub fn is_client_hello(&self) -> bool {
        self.has_msg("client_hello")
    }
    pub fn is_server_hello(&self) -> bool {
        self.has_msg("server_hello")
    }
    pub fn is_tcp(&self) -> bool {
        self.transport == "tcp"
    }
}

fn list(s: &str, sep: char) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(sep).map(|x| x.to_string()).collect()
    }
}

/// `1.2.3.4:443` or `[2001:db8::1]:443`.
pub fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

/// Parse a whole `tshark.tsv` file. Columns are found by the header line,
/// so a reordered or extended oracle still parses.
pub fn parse_tshark_tsv(text: &str) -> Result<Vec<TsharkRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty tshark.tsv")?.split('\t').collect();
    let col: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    for need in ["frame", "transport", "stream", "src", "dst", "msgs"] {
        if !col.contains_key(need) {
            return Err(format!("tshark.tsv header lacks column {need}: {header:?}"));
        }
    }
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        let get = |name: &str| -> &str { col.get(name).and_then(|&i| cells.get(i)).copied().unwrap_or("") };
        let frame = get("frame").parse().map_err(|_| format!("line {}: bad frame {:?}", n + 2, get("frame")))?;
        rows.push(TsharkRow {
            frame,
            time: get("time_epoch").parse().unwrap_or(0.0),
            transport: get("transport").to_string(),
            stream: get("stream").split(',').next().unwrap_or("").parse().unwrap_or(u64::MAX),
            src: parse_endpoint(get("src")),
            dst: parse_endpoint(get("dst")),
            src_raw: get("src").to_string(),
            dst_raw: get("dst").to_string(),
            msgs: list(get("msgs"), '+'),
            record_versions: list(get("record_versions"), ','),
            hs_legacy_version: list(get("hs_legacy_version"), ','),
            sni: get("sni").to_string(),
            supported_versions: list(get("supported_versions"), ','),
            sh_selected_version: list(get("sh_selected_version"), ','),
            sh_cipher: list(get("sh_cipher"), ','),
            alpn: list(get("alpn"), ','),
            ja3: get("ja3").to_string(),
            ja3_full: get("ja3_full").to_string(),
            ja3s: get("ja3s").to_string(),
            ja3s_full: get("ja3s_full").to_string(),
            alerts: list(get("alerts"), ','),
            n_certs: list(get("n_certs"), ',').iter().filter_map(|x| x.parse().ok()).collect(),
            quic_version: get("quic_version").to_string(),
            gquic_sni: get("gquic_sni").to_string(),
            ch_ext_types: list(get("ch_ext_types"), ',').iter().filter_map(|x| x.parse().ok()).collect(),
        });
    }
    Ok(rows)
}

/// One object of `<name>.ja4rs.json` (FoxIO rust ja4, one per stream).
#[derive(Debug, Clone, Default)]
pub struct Ja4rsRec {
    pub stream: u64,
    pub transport: String,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub ja4: Option<String>,
    pub ja4s: Option<String>,
    pub sni: Option<String>,
}

pub fn parse_ja4rs(text: &str) -> Result<Vec<Ja4rsRec>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("ja4rs line {}: {e}", n + 1))?;
        let ep = |ip: &str, port: &str| -> Option<SocketAddr> {
            let ip: std::net::IpAddr = v.get(ip)?.as_str()?.parse().ok()?;
            let port = u16::try_from(v.get(port)?.as_u64()?).ok()?;
            Some(SocketAddr::new(ip, port))
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        out.push(Ja4rsRec {
            stream: v.get("stream").and_then(|x| x.as_u64()).unwrap_or(u64::MAX),
            transport: s("transport").unwrap_or_default(),
            src: ep("src", "src_port"),
            dst: ep("dst", "dst_port"),
            ja4: s("ja4"),
            ja4s: s("ja4s"),
            sni: s("tls_server_name"),
        });
    }
    Ok(out)
}

/// One row of `<name>.certs.tsv`.
#[derive(Debug, Clone, Default)]
pub struct CertRow {
    pub frame: u64,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub chain_idx: usize,
    /// RFC 4514 (most specific RDN first).
    pub subject: String,
    pub issuer: String,
    pub self_issued: bool,
    /// Lower-case hex without separators.
    pub serial: String,
    /// `2018-03-24T07:15:42+00:00`.
    pub not_before: String,
    pub not_after: String,
    pub san_dns: Vec<String>,
    pub sha256: String,
}

pub fn parse_certs_tsv(text: &str) -> Result<Vec<CertRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty certs.tsv")?.split('\t').collect();
    let col: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    for need in ["frame", "src", "dst", "chain_idx", "sha256"] {
        if !col.contains_key(need) {
            return Err(format!("certs.tsv header lacks column {need}: {header:?}"));
        }
    }
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        let get = |name: &str| -> &str { col.get(name).and_then(|&i| cells.get(i)).copied().unwrap_or("") };
        out.push(CertRow {
            frame: get("frame").parse().map_err(|_| format!("certs line {}: bad frame", n + 2))?,
            src: parse_endpoint(get("src")),
            dst: parse_endpoint(get("dst")),
            chain_idx: get("chain_idx").parse().unwrap_or(0),
            subject: get("subject").to_string(),
            issuer: get("issuer").to_string(),
            self_issued: get("self_issued") == "True",
            serial: get("serial").to_lowercase(),
            not_before: get("not_before").to_string(),
            not_after: get("not_after").to_string(),
            san_dns: list(get("san_dns"), ';'),
            sha256: get("sha256").to_lowercase(),
        });
    }
    Ok(out)
}

/// Our names for a protocol version given as tshark writes it (`0x0303`).
/// This mirrors the output documentation (`docs/output.md`), independently
/// of the sensor's own table.
pub fn version_name(hex: &str) -> String {
    let Ok(v) = u16::from_str_radix(hex.trim().trim_start_matches("0x"), 16) else {
        return hex.to_string();
    };
    match v {
        0x0002 | 0x0200 => "SSLv2".into(),
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v if (0x7f01..0x7f10).contains(&v) => "TLS 1.3 draft-<16".into(),
        v if (0x7f10..=0x7f1c).contains(&v) => format!("TLS 1.3 draft-{}", v & 0xff),
        0xfb14 | 0xfb15 | 0xfb16 | 0xfb17 | 0xfb1a => format!("TLS 1.3 draft-{}-fb", v & 0xff),
        v => v.to_string(),
    }
}

/// Our name for a QUIC version given as tshark writes it (`0x00000001`),
/// from the output documentation (`docs/output.md`: Suricata's form),
/// independently of the sensor's table: `Q039` and `Q043`–`Q046` by name,
/// v2 (RFC 9369, 0x6b3343cf) as `v2`, anything else as lower-case hex
/// without leading zeros (`1`, `ff00001d`, `54303531`).
pub fn quic_version_name(hex: &str) -> String {
    let Ok(v) = u32::from_str_radix(hex.trim().trim_start_matches("0x"), 16) else {
        return hex.to_string();
    };
    match v {
        0x5130_3339 | 0x5130_3433 | 0x5130_3434 | 0x5130_3435 | 0x5130_3436 => String::from_utf8_lossy(&v.to_be_bytes()).into_owned(),
        0x6b33_43cf => "v2".into(),
        v => format!("{v:x}"),
    }
}

// ---------------------------------------------------------------------------
// Distinguished names: the oracle writes RFC 4514 (`CN=x,O=Acme\, Inc.,C=US`,
// most specific first, unknown types as dotted OIDs with `#hex` DER values);
// we write Suricata's `C=US, O=Acme, Inc., CN=x` (DER order). Both are
// reduced to a sorted list of (canonical attribute, value).

/// Canonical attribute name for a short name, long name or dotted OID.
pub fn canonical_attr(k: &str) -> String {
    let l = k.trim().to_ascii_lowercase();
    let c = match l.as_str() {
        "cn" | "commonname" | "2.5.4.3" => "CN",
        "c" | "countryname" | "2.5.4.6" => "C",
        "o" | "organizationname" | "2.5.4.10" => "O",
        "ou" | "organizationalunitname" | "2.5.4.11" => "OU",
        "l" | "localityname" | "2.5.4.7" => "L",
        "st" | "s" | "stateorprovincename" | "2.5.4.8" => "ST",
        "street" | "streetaddress" | "2.5.4.9" => "STREET",
        "serialnumber" | "2.5.4.5" => "serialNumber",
        "postalcode" | "2.5.4.17" => "postalCode",
        "businesscategory" | "2.5.4.15" => "businessCategory",
        "title" | "2.5.4.12" => "title",
        "sn" | "surname" | "2.5.4.4" => "SN",
        "gn" | "givenname" | "2.5.4.42" => "GN",
        "initials" | "2.5.4.43" => "initials",
        "generationqualifier" | "2.5.4.44" => "generationQualifier",
        "dnqualifier" | "2.5.4.46" => "dnQualifier",
        "pseudonym" | "2.5.4.65" => "pseudonym",
        "organizationidentifier" | "2.5.4.97" => "organizationIdentifier",
        "description" | "2.5.4.13" => "description",
        "name" | "2.5.4.41" => "name",
        "dc" | "domaincomponent" | "0.9.2342.19200300.100.1.25" => "DC",
        "uid" | "userid" | "0.9.2342.19200300.100.1.1" => "UID",
        "e" | "email" | "emailaddress" | "1.2.840.113549.1.9.1" => "emailAddress",
        "unstructuredname" | "1.2.840.113549.1.9.2" => "unstructuredName",
        "jurisdictionc" | "jurisdictioncountryname" | "msjurisdictioncountry" | "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        "jurisdictionst" | "jurisdictionstateorprovincename" | "msjurisdictionstateorprovince" | "1.3.6.1.4.1.311.60.2.1.2" => {
            "jurisdictionST"
        }
        "jurisdictionl" | "jurisdictionlocalityname" | "msjurisdictionlocality" | "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        _ => return k.trim().to_string(),
    };
    c.to_string()
}

/// Decode an RFC 4514 `#hex` value: the DER of a string type.
fn der_string(hex: &str) -> Option<String> {
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<_>>()?;
    let (&tag, rest) = bytes.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, body) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        let len = rest.get(..n)?.iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, rest.get(n..)?)
    };
    let body = body.get(..len)?;
    Some(match tag {
        0x1e => {
            let u: Vec<u16> = body.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
            String::from_utf16_lossy(&u)
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    })
}

/// RFC 4514 string → sorted (attribute, value) pairs.
pub fn parse_rfc4514(dn: &str) -> Vec<(String, String)> {
    let mut avas: Vec<String> = Vec::new();
    let mut cur = Vec::<u8>::new();
    let b = dn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                let hexpair = b.get(i + 1..i + 3).filter(|p| p.iter().all(u8::is_ascii_hexdigit));
                if let Some(p) = hexpair {
                    // an escaped byte: keep it as a marker-free byte
                    if let Ok(v) = u8::from_str_radix(std::str::from_utf8(p).unwrap_or("zz"), 16) {
                        cur.push(v);
                        i += 3;
                        continue;
                    }
                }
                cur.push(b[i + 1]);
                i += 2;
                continue;
            }
            b',' | b'+' => {
                avas.push(String::from_utf8_lossy(&cur).into_owned());
                cur.clear();
            }
            c => cur.push(c),
        }
        i += 1;
    }
    if !cur.is_empty() {
        avas.push(String::from_utf8_lossy(&cur).into_owned());
    }
    let mut out: Vec<(String, String)> = avas
        .iter()
        .filter_map(|a| {
            let (k, v) = a.split_once('=')?;
            let v = match v.strip_prefix('#') {
                Some(h) if h.len() >= 4 && h.bytes().all(|c| c.is_ascii_hexdigit()) => der_string(h).unwrap_or_else(|| v.to_string()),
                _ => v.to_string(),
            };
            Some((canonical_attr(k), v.trim().to_string()))
        })
        .collect();
    out.sort();
    out
}

fn is_attr_start(s: &str) -> bool {
    let Some((k, _)) = s.split_once('=') else { return false };
    !k.is_empty()
        && (k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && k.as_bytes()[0].is_ascii_alphabetic()
            || k.bytes().all(|c| c.is_ascii_digit() || c == b'.') && k.contains('.'))
}

/// Suricata-style `C=US, O=Acme, Inc., CN=x` → sorted (attribute, value)
/// pairs. A `, ` splits only where an `attr=` follows, so values with commas
/// survive.
pub fn parse_suricata_dn(dn: &str) -> Vec<(String, String)> {
    let mut parts: Vec<String> = Vec::new();
    for piece in dn.split(", ") {
        match parts.last_mut() {
            Some(last) if !is_attr_start(piece) => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => parts.push(piece.to_string()),
        }
    }
    let mut out: Vec<(String, String)> = parts
        .iter()
        .filter_map(|a| {
            let (k, v) = a.split_once('=')?;
            Some((canonical_attr(k), v.trim().to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Render sorted pairs for a report.
pub fn dn_pairs_string(p: &[(String, String)]) -> String {
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

/// Serial number: lower-case hex of the DER INTEGER's value bytes, no
/// separators, no leading zeros. A negative serial as python writes it
/// (`-7505589ffffb3eff`) becomes its two's complement (`8afaa7600004c101`),
/// which is what the certificate's bytes hold.
pub fn normalize_serial(s: &str) -> String {
    let s = s.trim();
    if let Some(neg) = s.strip_prefix('-') {
        return normalize_serial(&twos_complement(neg));
    }
    let h: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_lowercase();
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// Two's complement of a magnitude given in hex, in the fewest bytes whose
/// top bit is set.
fn twos_complement(mag_hex: &str) -> String {
    let h: String = mag_hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h };
    let mut b: Vec<u8> = (0..h.len() / 2).filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()).collect();
    // x - 1
    for byte in b.iter_mut().rev() {
        let (v, borrow) = byte.overflowing_sub(1);
        *byte = v;
        if !borrow {
            break;
        }
    }
    let mut out: Vec<u8> = b.iter().map(|x| !x).collect();
    if !matches!(out.first(), Some(x) if x & 0x80 != 0) {
        out.insert(0, 0xff);
    }
    out.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4514_and_suricata_forms_meet() {
        let a =
            parse_rfc4514("CN=github.com,O=GitHub\\, Inc.,L=San Francisco,ST=California,C=US,2.5.4.17=94107,2.5.4.15=Private Organization");
        let b = parse_suricata_dn(
            "businessCategory=Private Organization, C=US, ST=California, L=San Francisco, O=GitHub, Inc., CN=github.com, postalCode=94107",
        );
        assert_eq!(a, b);
        let e = parse_rfc4514("1.2.840.113549.1.9.1=#161161646d696e406578616d706c652e6f7267,CN=x");
        assert!(e.contains(&("emailAddress".into(), "admin@example.org".into())), "{e:?}");
    }

    #[test]
    fn versions_and_serials() {
        assert_eq!(version_name("0x0303"), "TLS 1.2");
        assert_eq!(version_name("0x7f10"), "TLS 1.3 draft-16");
        assert_eq!(quic_version_name("0x00000001"), "1");
        assert_eq!(quic_version_name("0x6b3343cf"), "v2");
        assert_eq!(quic_version_name("0xff00001d"), "ff00001d");
        assert_eq!(quic_version_name("0x54303531"), "54303531");
        assert_eq!(quic_version_name("0x51303436"), "Q046");
        assert_eq!(quic_version_name("0x0a0a0a0a"), "a0a0a0a");
        assert_eq!(normalize_serial("00:5E:CB"), "5ecb");
        assert_eq!(normalize_serial("5ecb"), "5ecb");
        assert_eq!(normalize_serial("-7505589ffffb3eff"), normalize_serial("8A:FA:A7:60:00:04:C1:01"));
        assert_eq!(normalize_serial("-1"), "ff");
        assert_eq!(normalize_serial("-80"), "80");
        assert_eq!(normalize_serial("-81"), "ff7f");
    }

    #[test]
    fn tsv_by_header() {
        let t =
            "frame\ttime_epoch\ttransport\tstream\tsrc\tdst\tmsgs\talpn\n4\t1.5\ttcp\t0\t[::1]:5\t1.2.3.4:443\tclient_hello\th2,http/1.1\n";
        let r = parse_tshark_tsv(t).expect("parses");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].alpn, vec!["h2", "http/1.1"]);
        assert!(r[0].src.is_some() && r[0].is_client_hello());
    }
}
