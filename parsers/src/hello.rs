//! The one handshake summary that both TLS-over-TCP and (later) QUIC fill.
//!
//! Fingerprints (JA3, JA3S, JA4) are computed from these types only, never
//! from raw bytes, so a ClientHello reassembled from many TCP segments or
//! from many QUIC CRYPTO frames gives the same answer as one that arrived in
//! a single packet.
//!
//! Code points are kept as integers exactly as sent, GREASE included: the
//! fingerprint functions drop GREASE where their specs say so, and the raw
//! summary keeps it for analysts (style convention 3: unknown values survive).

use serde::Serialize;

/// Transport that carried the handshake; JA4's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TLS over TCP (`t`).
    Tcp,
    /// TLS inside QUIC CRYPTO frames (`q`).
    Quic,
    /// DTLS (`d`).
    Dtls,
}

/// Extension code points we look at by number.
pub mod ext {
    /// server_name (SNI, RFC 6066 §3).
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups, formerly elliptic_curves (RFC 8422, RFC 7919).
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// ec_point_formats (RFC 8422 §5.1.2).
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    /// signature_algorithms (RFC 8446 §4.2.3).
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation (RFC 7301).
    pub const ALPN: u16 = 0x0010;
    /// session_ticket (RFC 5077).
    pub const SESSION_TICKET: u16 = 0x0023;
    /// pre_shared_key (RFC 8446 §4.2.11): TLS 1.3 resumption or external PSK.
    pub const PRE_SHARED_KEY: u16 = 0x0029;
    /// early_data (RFC 8446 §4.2.10): 0-RTT data follows.
    pub const EARLY_DATA: u16 = 0x002a;
    /// supported_versions (RFC 8446 §4.2.1): the TLS 1.3 version negotiation.
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    /// key_share (RFC 8446 §4.2.8).
    pub const KEY_SHARE: u16 = 0x0033;
    /// encrypted_client_hello (ECH, draft-ietf-tls-esni; the outer hello carries it).
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
    /// Draft ESNI extension (Firefox/Cloudflare 2018-2020).
    pub const ENCRYPTED_SERVER_NAME: u16 = 0xffce;
}

/// True for the reserved GREASE values of RFC 8701 (0x?A?A with equal bytes).
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// What a ClientHello offered, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientHello {
    /// `legacy_version` of the ClientHello body (0x0303 for TLS 1.2/1.3).
    pub legacy_version: u16,
    /// Cipher suites in wire order, GREASE included.
    pub ciphers: Vec<u16>,
    /// Compression methods in wire order.
    pub compression: Vec<u8>,
    /// Extension types in wire order, GREASE included.
    pub extensions: Vec<u16>,
    /// server_name (host_name entry), if present and valid UTF-8 (lossy otherwise).
    pub sni: Option<String>,
    /// ALPN protocol names in wire order (lossy UTF-8), GREASE included.
    pub alpn: Vec<String>,
    /// First ALPN value as raw bytes (JA4 needs the bytes, not the lossy string).
    pub alpn_first_raw: Option<Vec<u8>>,
    /// supported_groups (elliptic curves) in wire order, GREASE included.
    pub supported_groups: Vec<u16>,
    /// ec_point_formats in wire order.
    pub ec_point_formats: Vec<u8>,
    /// signature_algorithms in wire order, GREASE included.
    pub signature_algorithms: Vec<u16>,
    /// supported_versions in wire order, GREASE included.
    pub supported_versions: Vec<u16>,
    /// Length of the legacy session id.
    pub session_id_len: u8,
    /// [`session_id_hash`] of the legacy session id: a ServerHello that
    /// echoes it resumes the session (Suricata's `session_resumed`).
    pub session_id_hash: u32,
    /// True when this came from an SSLv2-compatible (v2 record format) hello.
    pub sslv2_format: bool,
}

impl ClientHello {
    /// The highest non-GREASE version offered: supported_versions if present,
    /// else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(self.legacy_version)
    }

    /// Encrypted Client Hello (or the draft ESNI) offered.
    pub fn offers_ech(&self) -> bool {
        self.extensions.iter().any(|e| *e == ext::ENCRYPTED_CLIENT_HELLO || *e == ext::ENCRYPTED_SERVER_NAME)
    }
}

/// What a ServerHello (or HelloRetryRequest) chose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerHello {
    /// `legacy_version` of the ServerHello body.
    pub legacy_version: u16,
    /// Selected cipher suite.
    pub cipher: u16,
    /// Selected compression method.
    pub compression: u8,
    /// [`session_id_hash`] of the legacy session id (of an empty one in
    /// the TLS 1.3 drafts that dropped it). 32 bits: a `Flow` holds its
    /// ServerHello inline and has no room for more.
    pub session_id_hash: u32,
    /// Extension types in wire order.
    pub extensions: Vec<u16>,
    /// supported_versions selection (TLS 1.3 and its drafts).
    pub selected_version: Option<u16>,
    /// Selected ALPN protocol.
    pub alpn: Option<String>,
    /// True when the random is the HelloRetryRequest magic (RFC 8446 4.1.3).
    pub hello_retry_request: bool,
}

impl ServerHello {
    /// Negotiated version: supported_versions selection if present, else legacy_version.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// A session id folded into 32 bits (FNV-1a, its length included): enough
/// to tell whether a ServerHello echoes the client's id without keeping 32
/// bytes per hello.
pub fn session_id_hash(id: &[u8]) -> u32 {
    let len = [id.len() as u8];
    len.iter().chain(id).fold(0x811c_9dc5, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Version names exactly as Suricata's EVE `tls.version` prints them
/// (`SCTlsVersion::as_str` and `SSLVersionToString` in Suricata's
/// `rust/src/tls_version.rs`): `"TLSv1"` but `"TLS 1.1"`/`"TLS 1.2"`/`"TLS
/// 1.3"`, drafts 16 to 28 as `"TLS 1.3 draft-N"` (earlier ones all
/// `"TLS 1.3 draft-<16"`), Facebook's as `"TLS 1.3 draft-N-fb"`, 0 as
/// `"UNDETERMINED"`, and any other value (DTLS, later drafts, junk) as its
/// decimal number. An SSLv2-format hello's 0x0002 is `"SSLv2"`, as
/// Suricata's 0x0200.
pub fn version_name(v: u16) -> String {
    let name = match v {
        0x0000 => "UNDETERMINED",
        0x0002 | 0x0200 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        0x7f01..=0x7f0f => "TLS 1.3 draft-<16",
        0x7f10..=0x7f1c => return format!("TLS 1.3 draft-{}", v & 0xff),
        0xfb14..=0xfb17 | 0xfb1a => return format!("TLS 1.3 draft-{}-fb", v & 0xff),
        v => return v.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values() {
        for v in [0x0a0au16, 0x1a1a, 0x2a2a, 0xfafa] {
            assert!(is_grease(v), "{v:04x}");
        }
        for v in [0x0a1au16, 0x0000, 0x1301, 0xaaaa + 1] {
            assert!(!is_grease(v), "{v:04x}");
        }
    }

    #[test]
    fn max_version_ignores_grease() {
        let ch = ClientHello { legacy_version: 0x0303, supported_versions: vec![0x7a7a, 0x0304, 0x0303], ..Default::default() };
        assert_eq!(ch.max_version(), 0x0304);
        let old = ClientHello { legacy_version: 0x0301, ..Default::default() };
        assert_eq!(old.max_version(), 0x0301);
    }

    #[test]
    fn version_names() {
        assert_eq!(version_name(0x0301), "TLSv1");
        assert_eq!(version_name(0x0302), "TLS 1.1");
        assert_eq!(version_name(0x0303), "TLS 1.2");
        assert_eq!(version_name(0x7f10), "TLS 1.3 draft-16");
        assert_eq!(version_name(0x7f1c), "TLS 1.3 draft-28");
        assert_eq!(version_name(0x7f1d), "32541");
        assert_eq!(version_name(0x7f0e), "TLS 1.3 draft-<16");
        assert_eq!(version_name(0xfb17), "TLS 1.3 draft-23-fb");
        assert_eq!(version_name(0xfb18), "64280");
        assert_eq!(version_name(0xfefd), "65277");
        assert_eq!(version_name(0x1234), "4660");
    }
}
