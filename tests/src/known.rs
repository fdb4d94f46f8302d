//! Disagreements with the oracles that were looked at and explained.
//!
//! Every entry names the capture (oracle name), the field, the frames (empty
//! = every frame of that field in the capture) and the reason, checked on the
//! capture itself. Entries here are reported separately and do not count
//! against the agreement thresholds. Do not add an entry without looking at
//! the bytes.

pub struct Known {
    /// Oracle name, e.g. `ndpi__ookla.pcap`.
    pub capture: &'static str,
    pub field: &'static str,
    /// Frame numbers (tshark's) the entry covers; empty = any frame.
    pub frames: &'static [u64],
    /// A substring that must occur in our value (e.g. `:56886 ->` to name
    /// one record of ours); empty = no condition.
    pub ours_contains: &'static str,
    pub reason: &'static str,
}

const fn k(capture: &'static str, field: &'static str, frames: &'static [u64], reason: &'static str) -> Known {
    Known { capture, field, frames, ours_contains: "", reason }
}

/// The 24-records-per-direction parse cap of docs/output.md ("records
/// parsed per direction: 24; later records are not parsed").
const RECORD_CAP: &str =
    "alert after the 24th record of its direction: docs/output.md caps parsed records at 24 per direction (ours: records c/s shows 24+)";
const PYTHON_EXT: &str = "oracle: python cryptography refuses the certificate's extensions (BasicConstraints encodes DEFAULT FALSE: ParseError EncodedDefault), so san_dns is empty; openssl x509 -ext subjectAltName on the DER shows the same DNS names as ours";
const PARTIAL_RECORD: &str = "the capture holds only the start of the server's first handshake record (ServerHello + Certificate in one record, its tail never captured); the ServerHello inside is complete and we parse it, tshark waits for the whole record and shows no ServerHello";
const GQUIC_TLS: &str = "Google QUIC T05x: a TLS 1.3 ClientHello inside gQUIC framing (tshark: CRYPTO frame type 0x08, gQUIC 'special' ACK; version 0x5430353x); tshark decrypts the Initial, the sensor does not decode Google QUIC versions (parsers/src/quic/mod.rs: T050/T051 frames are gQUIC's) and writes no quic record";
const OPENVPN: &str = "out of scope: TLS inside OpenVPN's TCP control channel (each TLS fragment behind a 2-byte length + P_CONTROL opcode/session-id header), not a TLS record stream; tshark's openvpn dissector unwraps it";

pub const KNOWN: &[Known] = &[
    k("ndpi__pop3_stls.pcap", "cert_san", &[18], PYTHON_EXT),
    k("zeek__tls__tls-early-alert.pcap", "cert_san", &[10], PYTHON_EXT),
    k("ndpi__tumblr.pcap", "version", &[165], "oracle: frame 165 is a HelloRetryRequest (random = SHA-256(\"HelloRetryRequest\") cf21ad74...), listed by tshark 4.0 as server_hello; the client then resets, so there is no ServerHello (we: hello_retry_request=true, UNDETERMINED)"),
    k("ndpi__tumblr.pcap", "ja3s", &[165], "oracle: HelloRetryRequest listed as server_hello (see version)"),
    k("ndpi__tumblr.pcap", "cipher", &[165], "oracle: HelloRetryRequest listed as server_hello (see version)"),
    k("arkime__arkime_synthetic.pcap", "version", &[904], "oracle: synthetic ServerHello with an empty supported_versions extension; tshark reads 2 bytes past it (the next extension's type, 0x002c) and flags 'Dissector processed too much data'; we ignore the empty extension and use legacy_version 0x0303"),
    k("mercury__test__afl_data__corner-cases.pcap", "version", &[3], "oracle: fuzzed ServerHello with handshake length 0; tshark parses a body from the following bytes (version 0x0000, cipher 0x2175); we reject a zero-length ServerHello"),
    k("mercury__test__afl_data__corner-cases.pcap", "ja3s", &[3], "oracle: fuzzed zero-length ServerHello (see version)"),
    k("mercury__test__afl_data__corner-cases.pcap", "cipher", &[3], "oracle: fuzzed zero-length ServerHello (see version)"),
    Known { capture: "mercury__test__afl_data__corner-cases.pcap", field: "our_session", frames: &[], ours_contains: ":53875 ->", reason: PARTIAL_RECORD },
    Known { capture: "mercury__test__afl_data__corner-cases.pcap", field: "our_session", frames: &[], ours_contains: ":53832 ->", reason: PARTIAL_RECORD },
    k("ndpi__4in6tunnel.pcap", "version", &[3], PARTIAL_RECORD),
    k("ndpi__KakaoTalk_chat.pcap", "version", &[345], PARTIAL_RECORD),
    k("ndpi__KakaoTalk_chat.pcap", "version", &[44], "oracle: stream 2 has a second SYN-ACK with another ISN (tshark: 'port numbers reused') and tshark then takes the server's ServerHello (frame 91, 16 03 01 00 59 02 ...) for a retransmission and does not dissect it; we parse it (TLS 1.0)"),
    k("ndpi__tls_invalid_reads.pcap", "ja3", &[4], "oracle: fuzzed ClientHello without compression methods or extensions; tshark's JA3 string drops the empty trailing fields ('769,...,'); salesforce ja3.py (oracle ja3ref.json) gives '769,...,,,' = af67bec8..., the same as ours"),
    k("ndpi__tls_invalid_reads.pcap", "ja3", &[12], "oracle: fuzzed GTP-tunnelled ClientHello whose ALPN vector claims 47241 bytes; tshark stops at the malformed extension before computing JA3; we compute it from the extension list"),
    k("ndpi__smtp-starttls.pcap", "alert", &[], "oracle: the client stream has a hole before frame 60 (tshark: 'Previous segment not captured') and tshark parses no client record after it; frame 65 (31 bytes = 5 + 26) is the client's encrypted alert, which we parse after resynchronising on the next record header"),
    k("ndpi__443-curl.pcap", "alert", &[103], RECORD_CAP),
    k("ndpi__443-firefox.pcap", "alert", &[658, 662], RECORD_CAP),
    k("ndpi__443-git.pcap", "alert", &[65], RECORD_CAP),
    k("ndpi__gnutella.pcap", "alert", &[3883], RECORD_CAP),
    k("ndpi__tls_long_cert.pcap", "alert", &[177], RECORD_CAP),
    k("ndpi__whatsappfiles.pcap", "alert", &[306], RECORD_CAP),
    k("ndpi__tunnelbear.pcap", "alert", &[137], RECORD_CAP),
    k("foxio-ja4__tls-non-ascii-alpn.pcapng", "ja4", &[1], "oracle implementation vs spec: the first ALPN is 0xba 0xad; FoxIO's JA4.md ('ALPN Extension Value': non-alphanumeric -> first and last characters of the hex representation) gives 'bd' (ours, and Suricata's ja4.rs); FoxIO rust ja4 0.18.6, ja4.py and the Wireshark plugin at 0e54bc8 still print '99'"),
    Known { capture: "ndpi__anyconnect-vpn.pcap", field: "our_session", frames: &[], ours_contains: ":56886 ->", reason: "capture starts at the client's FIN; the server's 53-byte segment (frame 378: 15 03 03 00 30 ...) is an encrypted alert record; tshark does not recognise TLS mid-stream on port 5223" },
    k("mercury__unit_tests__pcaps__openvpn_tcp_multi.pcap", "session", &[10, 170], OPENVPN),
    k("ndpi__443-opvn.pcap", "session", &[10], OPENVPN),
    k("ndpi__openvpn.pcap", "session", &[31], OPENVPN),
    k("ndpi__openvpn_nohmac_tcp.pcapng", "session", &[10], OPENVPN),
    k("ndpi__quic_t50.pcap", "quic_session", &[1], GQUIC_TLS),
    k("ndpi__quic_t51.pcap", "quic_session", &[1], GQUIC_TLS),
    // If the sensor writes a record for the flow (version T050/T051, nothing decrypted):
    k("ndpi__quic_t50.pcap", "quic_client_hello_count", &[1], GQUIC_TLS),
    k("ndpi__quic_t51.pcap", "quic_client_hello_count", &[1], GQUIC_TLS),
    // The sensor reads the T05x client hello (parsers quic::gquic), not the
    // server's T05x Initial, whose TLS ServerHello is in gQUIC framing:
    k("ndpi__quic_t50.pcap", "quic_server_hello", &[2], GQUIC_TLS),
    k("ndpi__quic_t51.pcap", "quic_server_hello", &[2], GQUIC_TLS),
    k("ndpi__quic-28.pcap", "quic_version", &[1], "version negotiation: the client's first Initial (frame 1, tshark's ClientHello row) is draft-28 (0xff00001c); the server answers with Version Negotiation offering 0xff00001b (frame 2), the client resends its ClientHello in draft-27 (frame 3, same CRYPTO offset 0, so tshark lists no second ClientHello) and the server's Initials (frames 4-5) are draft-27; our quic.version is the version of the last decrypted Initial (draft-27) and handshake.version_negotiation says [draft-27]"),
    k("ndpi__quic-29.pcap", "quic_client_hello_count", &[1], "HelloRetryRequest inside QUIC: frame 4 is a server Initial whose ServerHello has the HRR random (cf21ad74...), frame 5 the client's second ClientHello (CRYPTO offset 301, key_share group 23 -> 29, same JA3 b3e43d74...); the QUIC parser reports a ClientHello only when its summary differs from the last one (parsers/src/quic/mod.rs, 'a second ClientHello after a HelloRetryRequest that changed only the key share'), so handshake.client_hellos has 1; TLS over TCP lists both (zeek hrr.pcap)"),
];

/// The reason a disagreement is known, if it is.
pub fn lookup(capture: &str, field: &str, frame: Option<u64>, ours: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|k| {
            k.capture == capture
                && k.field == field
                && (k.frames.is_empty() || frame.is_some_and(|f| k.frames.contains(&f)))
                && (k.ours_contains.is_empty() || ours.contains(k.ours_contains))
        })
        .map(|k| k.reason)
}

/// Captures (path inside the corpus) whose read error is expected:
/// `Summary.first_error` is allowed for these and only these.
pub const EXPECTED_CAPTURE_ERRORS: &[(&str, &str)] = &[
    ("suricata-verify/tests/bug-1450-04/tls_DER-incomplete-header.pcap", "MANIFEST: file damaged, record length 4325376 after packet 6"),
    ("suricata-verify/tests/bug-1450-05/tls_DER-incomplete-content.pcap", "MANIFEST: file damaged, record length 4325376 after packet 6"),
];

pub fn capture_error_expected(rel: &str) -> Option<&'static str> {
    EXPECTED_CAPTURE_ERRORS.iter().find(|(p, _)| *p == rel).map(|(_, r)| *r)
}
