//! EVE JSON serialisation types. The wire format is documented once, in
//! `docs/output.md`; keep that file in step with these structs.
//!
//! Suricata's key names are kept exactly (`tls.sni`, `tls.ja3.hash`,
//! `community_id`, ...). Nothing of ours goes inside `tls`: sensor-specific
//! data lives in the top-level `handshake` object.

use crate::timefmt::ms;
use std::net::IpAddr;

use serde::Serialize;

use pinwatch_parsers::cert::CertSummary;
use pinwatch_parsers::community_id::community_id_v1;
use pinwatch_parsers::decode::Vlans;
use pinwatch_parsers::hello::{version_name, ClientHello, ServerHello, Transport};
use pinwatch_parsers::ja3::ja3s;
use pinwatch_parsers::tls::{Dir, RecordInfo};

use crate::enrich::{An1725, MobileOut};
use crate::flow::session::TlsSession;
use crate::flow::{CloseKind, Ended, Flow};
use crate::output::fingerprints::HelloPrints;
use crate::verdict::classify::{PathOut, TlsFailure};
use crate::verdict::findings::{AlertBody, Evidence};
use pinwatch_parsers::tls::alert_name;

pub use crate::timefmt::timestamp;

/// An address as Suricata writes it (`PrintInet` in Suricata's
/// `src/util-print.c`): IPv4 dotted, IPv6 in full, eight groups of four
/// lower-case hex digits with no `::` compression
/// (`2001:0db8:0000:0000:0000:0000:0000:0001`). Every address under a
/// Suricata-shared key (`src_ip`, `dest_ip`) is written this way.
pub fn ip_text(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
        }
    }
}

fn ser_vlans<S: serde::Serializer>(v: &Vlans, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.ids())
}

fn ser_ip<S: serde::Serializer>(ip: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    match ip {
        IpAddr::V4(_) => s.collect_str(ip),
        IpAddr::V6(_) => s.serialize_str(&ip_text(ip)),
    }
}

/// A fingerprint as Suricata writes it (`tls.ja3`, `tls.ja3s`, `quic.cyu[]`, ...): the MD5 and the
/// string it is the MD5 of.
#[derive(Serialize, Clone)]
pub struct Fp {
    /// `hash`: the MD5 of `string`, lower-case hex.
    pub hash: String,
    /// `string`: the fingerprint's input string (JA3:
    /// `version,ciphers,extensions,groups,point_formats`, GREASE left out).
    pub string: String,
}

/// Borrows from the ended flow it describes: a record is built, written and
/// dropped while the flow is at hand, and copying the strings was a fifth of
/// building it.
#[derive(Serialize)]
pub struct Tls<'a> {
    /// `tls.subject`: the leaf certificate's subject (`C=US, O=Org, CN=name`); absent without a
    /// readable server certificate (TLS 1.3, resumption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    /// `tls.issuerdn`: the leaf certificate's issuer, in the form of `subject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuerdn: Option<&'a str>,
    /// `tls.serial`: the leaf certificate's serial number, `0A:1B:...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<&'a str>,
    /// `tls.fingerprint`: SHA-1 of the leaf certificate's DER, `aa:bb:...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<&'a str>,
    /// `tls.sni`: server_name of the first ClientHello; absent when it sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<&'a str>,
    /// `tls.version`: the negotiated version in Suricata's words (`TLS 1.3`, ...); without a
    /// ServerHello, the client hello's legacy version, `SSLv2` or `UNDETERMINED` (docs/output.md).
    pub version: String,
    /// `tls.notbefore`: start of the leaf certificate's validity, `2016-03-11T00:00:00`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notbefore: Option<&'a str>,
    /// `tls.notafter`: end of the leaf certificate's validity, in the form of `notbefore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notafter: Option<&'a str>,
    /// `tls.ja3`: JA3 of the first ClientHello; absent for an SSLv2-format hello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<Fp>,
    /// `tls.ja3s`: JA3S of the ServerHello (or of a HelloRetryRequest no ServerHello followed);
    /// absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<Fp>,
    /// `tls.ja4`: JA4 of the first ClientHello; absent without a ClientHello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// `tls.subjectaltname`: the leaf certificate's SAN entries as Suricata writes them (IP
    /// addresses as their bytes, `[10, 77, 2, 3]`); left out when empty.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub subjectaltname: &'a [String],
    /// `tls.client_alpns`: ALPN protocols the first ClientHello offered; left out when none.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub client_alpns: &'a [String],
    /// `tls.server_alpns`: the ALPN protocol the server selected (at most one); left out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_alpns: Vec<&'a str>,
    /// `"http"` for TLS inside an HTTP CONNECT tunnel, as Suricata writes
    /// the protocol the flow started with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_proto: Option<&'static str>,
    /// The server's certificates as base64 DER, as Suricata logs them (the
    /// parsed fields are in `handshake.chain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<&'a str>,
    /// Suricata writes it only when true: a TLS <= 1.2 ServerHello that
    /// resumed the session (no server certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_resumed: Option<bool>,
    /// `tls.client_handshake`: the first ClientHello in Suricata's form; absent without one, or for
    /// an SSLv2-format hello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_handshake: Option<ClientHandshakeOut>,
    /// `tls.server_handshake`: the ServerHello in Suricata's form; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_handshake: Option<ServerHandshakeOut>,
    /// The client's certificate, Suricata's fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<TlsClientOut<'a>>,
}

/// Suricata's `tls.client_handshake`: the first ClientHello's version (the
/// highest of its legacy version and the first known supported_versions
/// entry), cipher suites, extension types and signature algorithms as
/// integers, GREASE left out.
#[derive(Serialize)]
pub struct ClientHandshakeOut {
    /// `version`: the version name; left out when Suricata has no name for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `ciphers`: the offered cipher suites.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<u16>,
    /// `exts`: the extension types, in wire order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exts: Vec<u16>,
    /// `sig_algs`: the signature_algorithms entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sig_algs: Vec<u16>,
}

/// Suricata's `tls.server_handshake`: the ServerHello's legacy version
/// (`"TLS 1.2"` for TLS 1.3, as Suricata writes it), its cipher suite as an
/// integer and its extension types, GREASE left out.
#[derive(Serialize)]
pub struct ServerHandshakeOut {
    /// `version`: the legacy version's name; left out when Suricata has no name for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `cipher`: the chosen cipher suite.
    pub cipher: u16,
    /// `exts`: the extension types, in wire order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exts: Vec<u16>,
}

/// Suricata's `tls.client`: the client certificate's subject, issuer,
/// fingerprint, serial and validity (Suricata logs no SAN here), and the
/// client's certificates as base64 DER (`client_chain` in Suricata's
/// config).
#[derive(Serialize)]
pub struct TlsClientOut<'a> {
    /// `subject` of the client's first certificate.
    pub subject: &'a str,
    /// `issuerdn` of the client's first certificate.
    pub issuerdn: &'a str,
    /// `fingerprint` (SHA-1, `aa:bb:...`) of the client's first certificate.
    pub fingerprint: &'a str,
    /// `serial` of the client's first certificate.
    pub serial: &'a str,
    /// `notbefore` of the client's first certificate.
    pub notbefore: &'a str,
    /// `notafter` of the client's first certificate.
    pub notafter: &'a str,
    /// `chain`: every client certificate that parses (at most 10), base64 DER.
    pub chain: Vec<&'a str>,
}

/// A version name only if Suricata has one for it (`SCTlsVersion`):
/// Suricata leaves `client_handshake.version` out otherwise.
fn known_version(v: u16) -> Option<String> {
    let n = version_name(v);
    (!n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

fn not_grease<T: Copy + Into<u16>>(v: &[T]) -> Vec<u16> {
    v.iter().map(|&x| x.into()).filter(|&x| !pinwatch_parsers::hello::is_grease(x)).collect()
}

/// `tls.client_handshake` of a ClientHello (none for SSLv2-format hellos,
/// which Suricata does not read into one).
pub fn client_handshake(c: &ClientHello) -> Option<ClientHandshakeOut> {
    if c.sslv2_format {
        return None;
    }
    let first_sv = c.supported_versions.iter().copied().find(|&v| known_version(v).is_some() && v != 0x0002 && v != 0x0200);
    let version = first_sv.map_or(c.legacy_version, |v| v.max(c.legacy_version));
    let out = ClientHandshakeOut {
        version: known_version(version),
        ciphers: not_grease(&c.ciphers),
        exts: not_grease(&c.extensions),
        sig_algs: not_grease(&c.signature_algorithms),
    };
    Some(out)
}

/// `tls.server_handshake` of a ServerHello.
pub fn server_handshake(h: &ServerHello) -> ServerHandshakeOut {
    ServerHandshakeOut { version: known_version(h.legacy_version), cipher: h.cipher, exts: not_grease(&h.extensions) }
}

/// Suricata's `session_resumed`: the client offered a session ticket or
/// its session id came back in the ServerHello, the server sent no
/// certificate, and the version is not TLS 1.3 (or a draft of it).
fn session_resumed(s: &crate::flow::session::TlsSession) -> Option<bool> {
    let (sh, _) = s.server_hello.as_ref()?;
    let (ch, _) = s.client_hellos.first()?;
    let ticket = ch.extensions.contains(&pinwatch_parsers::hello::ext::SESSION_TICKET);
    let echoed = ch.session_id_len > 0 && sh.session_id_hash == ch.session_id_hash;
    let tls13 = sh.version() == 0x0304 || sh.version() >> 8 == 0x7f || sh.version() >> 8 == 0xfb || sh.legacy_version == 0x0304;
    ((ticket || echoed) && s.server_chain.is_empty() && !tls13).then_some(true)
}

/// One certificate of the chain, parsed (`handshake.chain`; Suricata's
/// `tls.chain` holds the same certificates as base64 DER).
#[derive(Serialize)]
pub struct CertOut<'a> {
    /// `subject`, as `tls.subject`.
    pub subject: &'a str,
    /// `issuerdn`, as `tls.issuerdn`.
    pub issuerdn: &'a str,
    /// `serial`, as `tls.serial`.
    pub serial: &'a str,
    /// `fingerprint`: SHA-1 of the DER, as `tls.fingerprint`.
    pub fingerprint: &'a str,
    /// `sha256`: SHA-256 of the DER, hex.
    pub sha256: &'a str,
    /// `spki_sha256`: SHA-256 of the SubjectPublicKeyInfo, hex (what pin sets and the inspection CA
    /// list match).
    pub spki_sha256: &'a str,
    /// `notbefore`, as `tls.notbefore`.
    pub notbefore: &'a str,
    /// `notafter`, as `tls.notafter`.
    pub notafter: &'a str,
    /// `subjectaltname`: SAN entries in readable form (IP addresses as `10.77.2.3`); left out when
    /// empty.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub subjectaltname: &'a [String],
    /// `self_issued`: subject and issuer are the same name.
    pub self_issued: bool,
}

impl<'a> From<&'a CertSummary> for CertOut<'a> {
    fn from(c: &'a CertSummary) -> Self {
        CertOut {
            subject: &c.subject,
            issuerdn: &c.issuerdn,
            serial: &c.serial,
            fingerprint: &c.fingerprint,
            sha256: &c.sha256,
            spki_sha256: &c.spki_sha256,
            notbefore: &c.notbefore,
            notafter: &c.notafter,
            subjectaltname: &c.subjectaltname,
            self_issued: c.self_issued,
        }
    }
}

/// One entry of `handshake.alerts`: a TLS alert record of either side (TLS 1.3 alerts are protected
/// application-data records and are not listed).
#[derive(Serialize)]
pub struct AlertOut {
    /// `from`: `client` or `server`.
    pub from: Dir,
    /// `level`: `fatal` or `warning`; absent when the body was not readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<&'static str>,
    /// `description`: the IANA name of the alert; absent when the body was not readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `code`: the alert's description code; absent when the body was not readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// `encrypted`: the alert body was protected (not readable).
    pub encrypted: bool,
    /// `record_len`: length of the alert record, bytes.
    pub record_len: u16,
    /// `ts_offset_ms`: milliseconds from the flow's first packet (microsecond precision).
    pub ts_offset_ms: f64,
}

/// `handshake.client` / `handshake.server`: what one direction sent, among the records parsed.
#[derive(Serialize)]
pub struct SideOut {
    /// `records`: TLS records parsed in this direction.
    pub records: u64,
    /// `app_data_records`: records of type 23 (application data) among them.
    pub app_data_records: u64,
    /// `app_data_bytes`: the lengths of those records, summed.
    pub app_data_bytes: u64,
    /// `change_cipher_spec`: a ChangeCipherSpec record was seen.
    pub change_cipher_spec: bool,
    /// `null` when not visible (TLS 1.3 hides Finished inside encrypted records).
    pub finished: Option<bool>,
    /// TCP holes given up in this direction (segments the capture lost).
    pub gaps: u64,
    /// `gap_bytes`: bytes lost in those holes.
    pub gap_bytes: u64,
}

/// One entry of `handshake.records`: a record header, in stream order.
#[derive(Serialize)]
pub struct RecordOut {
    /// `dir`: `client` or `server`.
    pub dir: Dir,
    /// `type`: the record's content type (20 CCS, 21 alert, 22 handshake, 23 application data).
    #[serde(rename = "type")]
    pub content_type: u8,
    /// `len`: the record's length field, bytes.
    pub len: u16,
    /// `ts_offset_ms`: milliseconds from the flow's first packet (microsecond precision).
    pub ts_offset_ms: f64,
}

/// One entry of `handshake.client_hellos`: a ClientHello of the connection (a HelloRetryRequest
/// gives two).
#[derive(Serialize)]
pub struct HelloOut<'a> {
    /// `sni`: its server_name; absent when it sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<&'a str>,
    /// Absent for SSLv2-format hellos, as in `tls.ja3` (JA3 is not defined for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<Fp>,
    /// `ja4`: its JA4 (`q` prefix over QUIC).
    pub ja4: String,
    /// `version`: the highest version it offers (supported_versions, else legacy_version), by name.
    pub version: String,
    /// `supported_versions`: its supported_versions entries as numbers; left out when it has none.
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    pub supported_versions: &'a [u16],
    /// `alpn`: the ALPN protocols it offers; left out when none.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub alpn: &'a [String],
    /// `ech`: it offers Encrypted Client Hello (or ESNI).
    pub ech: bool,
    /// `sslv2_format`: it came in SSLv2 record format.
    pub sslv2_format: bool,
    /// `ts_offset_ms`: milliseconds from the flow's first packet (microsecond precision).
    pub ts_offset_ms: f64,
}

/// The `handshake` object of a `tls` record: pinwatch's view of the TLS handshake (Suricata's names
/// stay in `tls`).
#[derive(Serialize)]
pub struct Handshake<'a> {
    /// Zeek `ssl_history` letters: client upper case, server lower case.
    pub history: &'a str,
    /// `alerts`: every alert record, up to 16; left out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertOut>,
    /// `client`: what the client sent.
    pub client: SideOut,
    /// `server`: what the server sent.
    pub server: SideOut,
    /// `cipher_suite`: the server's cipher suite as `0x1301`; absent without a ServerHello (or
    /// HelloRetryRequest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// `hello_retry_request`: a HelloRetryRequest was seen.
    pub hello_retry_request: bool,
    /// `client_hellos`: every ClientHello of the connection.
    pub client_hellos: Vec<HelloOut<'a>>,
    /// `client_certificates`: certificates the client sent (TLS <= 1.2).
    pub client_certificates: usize,
    /// `close`: how the flow ended (`fin`, `rst`, `timeout`, `eof`, `evicted`, `shutdown`), or
    /// `open` for a session written at its verdict.
    pub close: CloseKind,
    /// `missing`: `none`; `client` or `server`, a side with no packets in the
    /// capture; `client_bytes`, `server_bytes` or `both_bytes`, TCP holes in
    /// that side's handshake bytes.
    pub missing: &'static str,
    /// No SYN from the client was seen: the capture started mid-connection.
    pub midstream: bool,
    /// `records`: the first 48 record headers, in stream order.
    pub records: Vec<RecordOut>,
    /// `anomalies`: parser problems (`record_header`, `client_hello`, ...); left out when none.
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    pub anomalies: &'a [&'static str],
    /// Every certificate of the server's chain, parsed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<CertOut<'a>>,
}

/// Suricata's `flow` counters of a `tls` or `quic` record (client to server is `toserver`).
#[derive(Serialize)]
pub struct FlowOut {
    /// `pkts_toserver`: packets from the client.
    pub pkts_toserver: u64,
    /// `pkts_toclient`: packets from the server.
    pub pkts_toclient: u64,
    /// `bytes_toserver`: bytes from the client, the packets' lengths on the wire (link layer
    /// included).
    pub bytes_toserver: u64,
    /// `bytes_toclient`: bytes from the server, the packets' lengths on the wire (link layer
    /// included).
    pub bytes_toclient: u64,
    /// `start`: time of the flow's first packet.
    pub start: String,
    /// `end`: time of the flow's last packet (so far, for a record written while the flow was
    /// open).
    pub end: String,
}

/// The header every record starts with (Suricata's names). Flattened into
/// each record type, so it is written once per line, first.
#[derive(Serialize, Clone)]
pub struct Header<'a> {
    /// `timestamp`: time of the flow's first packet, Suricata's format
    /// (`2026-08-21T09:14:03.512311+0000`, UTC).
    pub timestamp: String,
    /// `flow_id`: deterministic id (51 bits) from the flow key and start time; the same for every
    /// record of a flow.
    pub flow_id: u64,
    /// The sensor name (`--sensor-name`), as Suricata's `sensor-name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a str>,
    /// Live capture: the interface the flow's first packet came from
    /// (Suricata writes no `in_iface` for pcap files, nor do we).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<&'a str>,
    /// Replay: the capture file the flow's first packet came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap_filename: Option<&'a str>,
    /// `event_type`: `tls`, `quic`, `flow` or `alert`.
    pub event_type: &'static str,
    /// VLAN ids of the flow's first packet, outermost first (at most 3).
    #[serde(skip_serializing_if = "Vlans::is_empty", serialize_with = "ser_vlans")]
    pub vlan: Vlans,
    /// `src_ip`: the client (SYN or ClientHello sender).
    #[serde(serialize_with = "ser_ip")]
    pub src_ip: IpAddr,
    /// `src_port`: the client's port.
    pub src_port: u16,
    /// `dest_ip`: the server.
    #[serde(serialize_with = "ser_ip")]
    pub dest_ip: IpAddr,
    /// `dest_port`: the server's port.
    pub dest_port: u16,
    /// `proto`: `TCP` or `UDP`.
    pub proto: &'static str,
    /// `app_proto`: `tls` or `quic`; `failed` for an alert on a flow whose bytes were not TLS.
    pub app_proto: &'static str,
    /// `community_id`: Community ID v1 (seed 0) of the flow.
    pub community_id: String,
}

impl<'a> Header<'a> {
    /// Header of an ended flow: client as source, server as destination.
    pub fn of(f: &Flow, pcap_filename: Option<&'a str>, event_type: &'static str, app_proto: &'static str) -> Self {
        let (cip, cport) = f.client();
        let (sip, sport) = f.server();
        let (proto, num) = if f.key.proto == 17 { ("UDP", 17) } else { ("TCP", 6) };
        Header {
            timestamp: timestamp(f.first_ts),
            flow_id: f.flow_id,
            host: None,
            in_iface: None,
            pcap_filename,
            event_type,
            vlan: f.vlans,
            src_ip: cip,
            src_port: cport,
            dest_ip: sip,
            dest_port: sport,
            proto,
            app_proto,
            community_id: community_id_v1(0, cip, sip, num, cport, sport),
        }
    }
}

fn flow_out(f: &Flow, end_ts: i64) -> FlowOut {
    FlowOut {
        pkts_toserver: f.dirs[0].pkts,
        pkts_toclient: f.dirs[1].pkts,
        bytes_toserver: f.dirs[0].bytes,
        bytes_toclient: f.dirs[1].bytes,
        start: timestamp(f.first_ts),
        end: timestamp(end_ts),
    }
}

/// `none`, `client` or `server`: a side with no packets in the capture.
fn missing(f: &Flow) -> &'static str {
    let g = &f.session.gap_bytes;
    match (f.dirs[0].pkts, f.dirs[1].pkts) {
        (_, 0) => "server",
        (0, _) => "client",
        _ => match (g[0] > 0, g[1] > 0) {
            (false, false) => "none",
            (true, false) => "client_bytes",
            (false, true) => "server_bytes",
            (true, true) => "both_bytes",
        },
    }
}

thread_local! {
    /// Each reporting thread's memo of client hello fingerprints.
    static HELLO_PRINTS: std::cell::RefCell<HelloPrints> = std::cell::RefCell::new(HelloPrints::new());
}

fn hello_out(c: &ClientHello, ts: i64, start: i64, transport: Transport) -> HelloOut<'_> {
    let prints = HELLO_PRINTS.with_borrow_mut(|m| m.get(c, transport));
    HelloOut {
        sni: c.sni.as_deref(),
        ja3: prints.ja3.map(|f| Fp { hash: f.hash, string: f.string }),
        ja4: prints.ja4,
        version: version_name(c.max_version()),
        supported_versions: &c.supported_versions,
        alpn: &c.alpn,
        ech: c.offers_ech(),
        sslv2_format: c.sslv2_format,
        ts_offset_ms: ms(start, ts),
    }
}

/// An EVE `tls` record: one per TLS session (docs/output.md). `tls_failure`, `path` and `mobile`
/// are filled in by the reporter.
#[derive(Serialize)]
pub struct TlsEvent<'a> {
    /// The header (flattened: its keys are top-level).
    #[serde(flatten)]
    pub header: Header<'a>,
    /// `tls`: Suricata's fields.
    pub tls: Tls<'a>,
    /// `handshake`: pinwatch's view of the handshake.
    pub handshake: Handshake<'a>,
    /// `tls_failure`: the session's outcome; absent until it is classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<&'a TlsFailure>,
    /// `path`: the path relative to the inspection; absent until it is classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a PathOut>,
    /// `mobile`: the device and app behind the session, with a device feed; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<&'a MobileOut>,
    /// `flow`: Suricata's flow counters.
    pub flow: FlowOut,
}

/// An EVE `alert` record: the header of the session that raised it, the
/// alert body, the session's `tls`, `tls_failure` and `path`, and the
/// evidence (reasons and the flow ids of every session involved).
#[derive(Serialize)]
pub struct AlertEvent<'a> {
    /// The header of the session (flattened), with `event_type` `alert`.
    #[serde(flatten)]
    pub header: Header<'a>,
    /// `alert`: Suricata's alert object (signature, severity, metadata).
    pub alert: AlertBody,
    /// `tls`: the session's `sni`, `version`, `ja4`, `ja3` and `issuerdn`; absent for an alert on a
    /// flow that was not TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsBrief<'a>>,
    /// `tls_failure`: the session's outcome; absent for a flow that was not TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<&'a TlsFailure>,
    /// `path`: the session's path; absent for a flow that was not TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a PathOut>,
    /// `mobile`: the device and app (AN1725 alerts, with a device feed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<&'a MobileOut>,
    /// `an1725`: confidence, reasons and fold (`alert_id`, `revision`, `count`) of an AN1725 alert
    /// (1725005).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub an1725: Option<An1725>,
    /// `evidence`: the reasons and the `flow_ids` of every session that makes the finding.
    pub evidence: Evidence,
}

/// The `tls` fields an alert repeats from its session.
#[derive(Serialize)]
pub struct TlsBrief<'a> {
    /// `sni`, as the session's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<&'a str>,
    /// `version`: the session's `tls.version` (QUIC: `quic.version`).
    pub version: &'a str,
    /// `ja4`, as the session's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<&'a str>,
    /// `ja3`, as the session's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<&'a Fp>,
    /// `issuerdn` of the leaf certificate (TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuerdn: Option<&'a str>,
}

impl<'a> AlertEvent<'a> {
    /// An alert with the header of the session it is about.
    pub fn new(
        header: &Header<'a>,
        alert: AlertBody,
        tls: Option<TlsBrief<'a>>,
        failure: Option<&'a TlsFailure>,
        path: Option<&'a PathOut>,
        evidence: Evidence,
    ) -> Self {
        let mut header = header.clone();
        header.event_type = "alert";
        AlertEvent { header, alert, tls, tls_failure: failure, path, mobile: None, an1725: None, evidence }
    }
}

/// Build the `tls` event for an ended TLS flow.
pub fn tls_event<'a>(e: &'a Ended, pcap_filename: Option<&'a str>) -> TlsEvent<'a> {
    let f = &e.flow;
    let s = &f.session;
    let start = f.first_ts;
    let first_ch = s.client_hellos.first().map(|(h, _)| h);
    // A HelloRetryRequest that no ServerHello followed (the client gave up
    // after it) still names the version and cipher the server chose, as
    // tshark and Suricata report them.
    let sh = s.server_hello.as_ref().map(|(h, _)| h).or(s.hello_retry.as_deref());
    // Fingerprints are made once per hello; `tls.ja3`/`tls.ja4` are the
    // first hello's.
    let hellos: Vec<HelloOut> = s.client_hellos.iter().map(|(c, ts)| hello_out(c, *ts, start, Transport::Tcp)).collect();
    let tls = tls_out(s, first_ch, sh, &hellos);
    let handshake = handshake_out(e, sh, hellos);
    TlsEvent {
        header: Header::of(f, pcap_filename, "tls", "tls"),
        tls,
        handshake,
        tls_failure: None,
        path: None,
        mobile: None,
        flow: flow_out(f, e.end_ts),
    }
}

/// The Suricata-compatible `tls` object of a session: the server's leaf
/// certificate, the version, SNI, fingerprints, ALPNs and handshakes.
fn tls_out<'a>(s: &'a TlsSession, first_ch: Option<&'a ClientHello>, sh: Option<&'a ServerHello>, hellos: &[HelloOut<'a>]) -> Tls<'a> {
    let leaf = s.server_chain.first();
    // Suricata's `tls.version`: the ServerHello's version; without one, the
    // version the client's hello carries (its legacy_version field, as
    // Suricata's `client_handshake.version`); UNDETERMINED with neither.
    let version = match (sh, first_ch) {
        (Some(sh), _) => version_name(sh.version()),
        (None, Some(ch)) if ch.sslv2_format => "SSLv2".to_string(),
        (None, Some(ch)) => version_name(ch.legacy_version),
        _ => "UNDETERMINED".to_string(),
    };
    Tls {
        subject: leaf.map(|c| c.subject.as_str()),
        issuerdn: leaf.map(|c| c.issuerdn.as_str()),
        serial: leaf.map(|c| c.serial.as_str()),
        fingerprint: leaf.map(|c| c.fingerprint.as_str()),
        sni: first_ch.and_then(|c| c.sni.as_deref()),
        version,
        notbefore: leaf.map(|c| c.notbefore.as_str()),
        notafter: leaf.map(|c| c.notafter.as_str()),
        ja3: hellos.first().and_then(|h| h.ja3.clone()),
        ja3s: sh.map(|h| {
            let f = ja3s(h);
            Fp { hash: f.hash, string: f.string }
        }),
        ja4: hellos.first().map(|h| h.ja4.clone()),
        // Suricata's form (IP addresses as `[10, 77, 2, 3]`); the readable
        // one is in `handshake.chain`.
        subjectaltname: leaf.map_or(&[][..], |c| c.subjectaltname_suricata.as_deref().unwrap_or(&c.subjectaltname)),
        client_alpns: first_ch.map_or(&[][..], |c| &c.alpn),
        server_alpns: sh.and_then(|h| h.alpn.as_deref()).into_iter().collect(),
        chain: s.server_chain.iter().map(|c| &*c.der_base64).collect(),
        from_proto: s.connect().is_some().then_some("http"),
        session_resumed: session_resumed(s),
        client_handshake: first_ch.and_then(client_handshake),
        server_handshake: sh.map(server_handshake),
        client: tls_client_out(s),
    }
}

/// `tls.client`: the client's certificate (the first of its chain), if it
/// sent one that parsed.
fn tls_client_out(s: &TlsSession) -> Option<TlsClientOut<'_>> {
    let cc = s.client_certs.as_ref()?;
    let c = cc.chain.first()?;
    Some(TlsClientOut {
        subject: &c.subject,
        issuerdn: &c.issuerdn,
        fingerprint: &c.fingerprint,
        serial: &c.serial,
        notbefore: &c.notbefore,
        notafter: &c.notafter,
        chain: cc.chain.iter().map(|c| &*c.der_base64).collect(),
    })
}

/// pinwatch's `handshake` object of a session: history, alerts, each side's
/// records, the hellos, how it closed, the record log and the parsed chain.
fn handshake_out<'a>(e: &'a Ended, sh: Option<&ServerHello>, hellos: Vec<HelloOut<'a>>) -> Handshake<'a> {
    let f = &e.flow;
    let s = &f.session;
    let start = f.first_ts;
    Handshake {
        history: &s.history,
        alerts: s
            .alerts
            .iter()
            .map(|a| AlertOut {
                from: a.from,
                level: a.level.map(|l| if l == 2 { "fatal" } else { "warning" }),
                description: a.description.map(alert_name),
                code: a.description,
                encrypted: a.encrypted,
                record_len: a.record_len,
                ts_offset_ms: ms(start, a.ts_ns),
            })
            .collect(),
        client: side_out(f, Dir::Client),
        server: side_out(f, Dir::Server),
        cipher_suite: sh.map(|h| format!("0x{:04x}", h.cipher)),
        hello_retry_request: s.hello_retry.is_some(),
        client_hellos: hellos,
        client_certificates: s.client_certs.as_ref().map_or(0, |c| c.count),
        close: e.close,
        missing: missing(f),
        midstream: f.midstream,
        records: s
            .record_log
            .iter()
            .map(|r: &RecordInfo| RecordOut { dir: r.dir, content_type: r.content_type, len: r.len, ts_offset_ms: ms(start, r.ts_ns) })
            .collect(),
        anomalies: &s.anomalies,
        chain: s.server_chain.iter().map(|c| CertOut::from(&c.summary)).collect(),
    }
}

/// One direction's part of `handshake`: its records, application data,
/// CCS, Finished (TLS 1.2 and older only: encrypted in 1.3) and gaps.
fn side_out(f: &Flow, d: Dir) -> SideOut {
    let s = &f.session;
    let x = &s.side[d.idx()];
    SideOut {
        records: x.records,
        app_data_records: x.app_records,
        app_data_bytes: x.app_bytes,
        change_cipher_spec: x.ccs,
        finished: if s.parser.is_tls13() { None } else { Some(x.finished) },
        gaps: u64::from(f.reasm[d.idx()].counters.gaps),
        gap_bytes: s.gap_bytes[d.idx()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suricata_timestamp_format() {
        assert_eq!(timestamp(1_466_768_565_123_456_789), "2016-06-24T11:42:45.123456+0000");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(timestamp(-1), "1969-12-31T23:59:59.999999+0000");
        assert_eq!(timestamp(i64::MAX), "2262-04-11T23:47:16.854775+0000");
        assert_eq!(timestamp(i64::MIN), "1677-09-21T00:12:43.145224+0000");
    }

    proptest::proptest! {
        /// The digits written in place are what `format!` writes.
        #[test]
        fn timestamp_digits_match_format(ts in proptest::num::i64::ANY) {
            let secs = ts.div_euclid(1_000_000_000);
            let micros = ts.rem_euclid(1_000_000_000) / 1000;
            if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) {
                let expected = format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
                    t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), micros
                );
                proptest::prop_assert_eq!(timestamp(ts), expected);
            }
        }
    }

    #[test]
    fn ipv6_is_written_in_full_as_suricata_does() {
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(ip_text(&v6), "2001:0db8:0000:0000:0000:0000:0000:0001");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(ip_text(&mapped), "0000:0000:0000:0000:0000:ffff:0a00:0001");
        let v4: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(ip_text(&v4), "10.0.0.1");
        let mut line = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut line);
        ser_ip(&v6, &mut ser).expect("serialises");
        assert_eq!(line, br#""2001:0db8:0000:0000:0000:0000:0000:0001""#);
    }
}

/// Suricata's `quic` object names, plus nothing of ours (ours go in
/// `handshake`, `tls_failure`, `path`).
#[derive(Serialize)]
pub struct Quic {
    /// `quic.version`: the QUIC version as Suricata writes it (`1`, `v2`, `ff00001d`, `Q046`, ...);
    /// absent when none was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `quic.sni`: server_name of the first ClientHello (Google QUIC: of its CHLO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `quic.ja3`: JA3 of the first ClientHello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<Fp>,
    /// JA3S of the ServerHello in the server's Initials (Suricata writes it
    /// in the server packet's record; pinwatch's one record has both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<Fp>,
    /// `quic.ja4`: JA4 of the first ClientHello (`q` prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// The first ClientHello's extensions, as Suricata lists them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<QuicExtOut>,
    /// Google QUIC user agent (UAID tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ua: Option<String>,
    /// Google QUIC CYU fingerprints, one per CHLO.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cyu: Vec<Fp>,
}

/// One entry of Suricata's `quic.extensions`.
#[derive(Serialize)]
pub struct QuicExtOut {
    /// `name`: Suricata's name of the extension; left out for GREASE and unknown types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// `type`: the extension type.
    #[serde(rename = "type")]
    pub ext_type: u16,
    /// `values`: for server_name, signature_algorithms, alpn and supported_versions; left out
    /// otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Extension names as Suricata's QUIC logger writes them
/// (`quic_tls_extension_name` in its `rust/src/quic/logger.rs`).
pub fn quic_extension_name(e: u16) -> Option<&'static str> {
    Some(match e {
        0 => "server_name",
        1 => "max_fragment_length",
        2 => "client_certificate_url",
        3 => "trusted_ca_keys",
        4 => "truncated_hmac",
        5 => "status_request",
        6 => "user_mapping",
        7 => "client_authz",
        8 => "server_authz",
        9 => "cert_type",
        10 => "supported_groups",
        11 => "ec_point_formats",
        12 => "srp",
        13 => "signature_algorithms",
        14 => "use_srtp",
        15 => "heartbeat",
        16 => "alpn",
        17 => "status_request_v2",
        18 => "signed_certificate_timestamp",
        19 => "client_certificate_type",
        20 => "server_certificate_type",
        21 => "padding",
        22 => "encrypt_then_mac",
        23 => "extended_master_secret",
        24 => "token_binding",
        25 => "cached_info",
        26 => "tls_lts",
        27 => "compress_certificate",
        28 => "record_size_limit",
        29 => "pwd_protect",
        30 => "pwd_clear",
        31 => "password_salt",
        32 => "ticket_pinning",
        33 => "tls_cert_with_extern_psk",
        34 => "delegated_credentials",
        35 => "session_ticket",
        36 => "tlmsp",
        37 => "tlmsp_proxying",
        38 => "tlmsp_delegate",
        39 => "supported_ekt_ciphers",
        41 => "pre_shared_key",
        42 => "early_data",
        43 => "supported_versions",
        44 => "cookie",
        45 => "psk_key_exchange_modes",
        47 => "certificate_authorities",
        48 => "oid_filters",
        49 => "post_handshake_auth",
        50 => "signature_algorithms_cert",
        51 => "key_share",
        52 => "transparency_info",
        53 => "connection_id_deprecated",
        54 => "connection_id",
        55 => "external_id_hash",
        56 => "external_session_id",
        57 => "quic_transport_parameters",
        58 => "ticket_request",
        59 => "dnssec_chain",
        13172 => "next_protocol_negotiation",
        65281 => "renegotiation_info",
        _ => return None,
    })
}

/// Suricata's `quic.extensions` of a ClientHello: every extension in wire
/// order (GREASE too, without a name), with values for server_name (the
/// host name), signature_algorithms (decimal), alpn and supported_versions
/// (tls-parser's names: `Tls13`, GREASE as `TlsVersion(2570 / 0xa0a)`).
pub fn quic_extensions(c: &ClientHello) -> Vec<QuicExtOut> {
    use pinwatch_parsers::hello::ext;
    c.extensions
        .iter()
        .map(|&t| {
            let values = match t {
                0 => c.sni.iter().cloned().collect(),
                ext::SIGNATURE_ALGORITHMS => c.signature_algorithms.iter().map(u16::to_string).collect(),
                ext::ALPN => c.alpn.clone(),
                ext::SUPPORTED_VERSIONS => {
                    c.supported_versions.iter().map(|&v| pinwatch_parsers::tls::tls_parser_version_name(v)).collect()
                }
                _ => Vec::new(),
            };
            QuicExtOut { name: quic_extension_name(t), ext_type: t, values }
        })
        .collect()
}

/// One entry of `handshake.connection_close` (QUIC): a CONNECTION_CLOSE seen in an Initial packet.
#[derive(Serialize)]
pub struct QuicCloseOut {
    /// `from`: `client` or `server`.
    pub from: Dir,
    /// `error_code`: the frame's error code (0x100 + alert for a CRYPTO_ERROR).
    pub error_code: u64,
    /// `frame_type`: the frame type that caused the error; absent in an application
    /// CONNECTION_CLOSE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_type: Option<u64>,
    /// `reason`: the reason phrase; left out when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The TLS alert a CRYPTO_ERROR code carries (0x100 + alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_alert: Option<String>,
    /// `ts_offset_ms`: milliseconds from the flow's first packet (microsecond precision).
    pub ts_offset_ms: f64,
}

/// The `handshake` object of a `quic` record: what pinwatch read from the Initial packets.
#[derive(Serialize)]
pub struct QuicHandshake<'a> {
    /// ALPN offered in the first ClientHello and selected by the server.
    /// Suricata's `quic` object has no such keys (its `extensions` list
    /// the offered ones), so they are ours.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_alpns: Vec<String>,
    /// `server_alpn`: the ALPN protocol the ServerHello selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_alpn: Option<String>,
    /// `cipher_suite`: the ServerHello's cipher suite as `0x1301`; absent without a ServerHello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// `negotiated_version`: the TLS version the ServerHello chose, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negotiated_version: Option<String>,
    /// `client_hellos`: every ClientHello of the connection, as for `tls`.
    pub client_hellos: Vec<HelloOut<'a>>,
    /// `connection_close`: every CONNECTION_CLOSE seen in an Initial; left out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connection_close: Vec<QuicCloseOut>,
    /// `retry`: a Retry packet was seen.
    pub retry: bool,
    /// `version_negotiation`: the versions a Version Negotiation packet listed; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_negotiation: Option<Vec<String>>,
    /// Long-header datagrams read, [client, server].
    pub datagrams_read: [u64; 2],
    /// Short-header (1-RTT) datagrams seen, [client, server].
    pub short_header_datagrams: [u64; 2],
    /// `undecryptable`: Initial packets that did not decrypt.
    pub undecryptable: u64,
    /// `close`: how the flow ended, as `handshake.close` of a `tls` record.
    pub close: CloseKind,
    /// `missing`: as `handshake.missing` of a `tls` record.
    pub missing: &'static str,
    /// `anomalies`: why Initials did not decrypt or parse (`quic_initial_auth_failed`, ...); left
    /// out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<&'static str>,
}

/// An EVE `quic` record: one per QUIC connection (docs/output.md).
#[derive(Serialize)]
pub struct QuicEvent<'a> {
    /// The header (flattened: its keys are top-level).
    #[serde(flatten)]
    pub header: Header<'a>,
    /// `quic`: Suricata's fields.
    pub quic: Quic,
    /// `handshake`: pinwatch's view of the Initials.
    pub handshake: QuicHandshake<'a>,
    /// `tls_failure`: the connection's outcome; absent until it is classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_failure: Option<&'a TlsFailure>,
    /// `path`: the path relative to the inspection; absent until it is classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a PathOut>,
    /// `mobile`: the device and app behind the connection, with a device feed; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<&'a MobileOut>,
    /// `flow`: Suricata's flow counters.
    pub flow: FlowOut,
}

/// Build the `quic` event for an ended QUIC flow.
pub fn quic_event<'a>(e: &'a Ended, pcap_filename: Option<&'a str>) -> QuicEvent<'a> {
    let f = &e.flow;
    let start = f.first_ts;
    let q = f.quic.as_deref();
    let ch = q.and_then(|q| q.client_hellos.first()).map(|(h, _)| h);
    let sh = q.and_then(|q| q.server_hello.as_ref()).map(|(h, _)| h);
    let g = q.and_then(|q| q.gquic.first());
    let hellos: Vec<HelloOut> =
        q.map(|q| q.client_hellos.iter().map(|(c, ts)| hello_out(c, *ts, start, Transport::Quic)).collect()).unwrap_or_default();
    let quic = Quic {
        version: q
            .and_then(|q| q.conn.version())
            .map(crate::flow::quic_session::version_name)
            .or_else(|| g.map(|g| crate::flow::quic_session::gquic_version_name(&g.version))),
        sni: ch.and_then(|c| c.sni.clone()).or_else(|| g.and_then(|g| g.sni.clone())),
        ua: g.and_then(|g| g.uaid.clone()),
        cyu: q
            .map(|q| {
                q.gquic
                    .iter()
                    .filter(|g| !g.tags.is_empty())
                    .map(|g| Fp { hash: g.cyu_hash.clone(), string: g.cyu_string.clone() })
                    .collect()
            })
            .unwrap_or_default(),
        ja3: hellos.first().and_then(|h| h.ja3.clone()),
        ja3s: sh.map(|h| {
            let f = ja3s(h);
            Fp { hash: f.hash, string: f.string }
        }),
        ja4: hellos.first().map(|h| h.ja4.clone()),
        extensions: ch.map(quic_extensions).unwrap_or_default(),
    };
    let handshake = QuicHandshake {
        client_alpns: ch.map(|c| c.alpn.clone()).unwrap_or_default(),
        server_alpn: sh.and_then(|h| h.alpn.clone()),
        cipher_suite: sh.map(|h| format!("0x{:04x}", h.cipher)),
        negotiated_version: sh.map(|h| version_name(h.version())),
        client_hellos: hellos,
        connection_close: q
            .map(|q| {
                q.closes
                    .iter()
                    .map(|c| QuicCloseOut {
                        from: if c.from_client { Dir::Client } else { Dir::Server },
                        error_code: c.error_code,
                        frame_type: c.frame_type,
                        reason: c.reason.clone(),
                        tls_alert: c.tls_alert.map(alert_name),
                        ts_offset_ms: ms(start, c.ts_ns),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        retry: q.is_some_and(|q| q.retry),
        version_negotiation: q
            .and_then(|q| q.version_negotiation.as_ref())
            .map(|v| v.iter().map(|x| crate::flow::quic_session::version_name(*x)).collect()),
        datagrams_read: q.map(|q| q.fed).unwrap_or_default(),
        short_header_datagrams: q.map(|q| q.short).unwrap_or_default(),
        undecryptable: q.map_or(0, |q| q.undecryptable),
        close: e.close,
        missing: missing(f),
        anomalies: q.map(|q| q.anomalies.clone()).unwrap_or_default(),
    };
    QuicEvent {
        header: Header::of(f, pcap_filename, "quic", "quic"),
        quic,
        handshake,
        tls_failure: None,
        path: None,
        mobile: None,
        flow: flow_out(f, e.end_ts),
    }
}
