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
const GQUIC_TLS: &str = "Google QUIC T05x: a TLS 1.3 ClientHello inside gQUIC framing (tshark: CRYPTO frame type 0x08, gQUIC 'special' ACK; version 0x5430353x); the sensor reads the client's T05x hello (parsers quic::gquic: SNI, JA3 and JA4 equal tshark's and FoxIO's, tests/tests/parser_gaps.rs) but not the server's T05x Initial, whose ServerHello is in gQUIC framing too";
const SSLV2_JA4: &str = "oracle implementation vs spec: an SSLv2-format ClientHello; FoxIO rust ja4 0.18.6 (driven by tshark, which files SSLv2 cipher specs under tls.handshake.cipherspec) counts no ciphers; the spec counts the hello's cipher suites, and we count its TLS suites (cipher specs with first byte 0; tshark -e tls.handshake.cipherspec lists them), as ja4 gives for a TLS-format hello with the same suites (ssl_version_negated: port 1661)";
const DRAFT14: &str = "oracle: a TLS 1.3 draft-14 ServerHello (version 0x0304, random, cipher c0 2b, extensions: the pre-RFC layout without session id and compression); tshark 4.0 reads it in the final layout (session id of 192 bytes taken from the cipher and extensions, cipher 0xacad from further on); Suricata's own test (tls13-draft14/test.yaml) expects tls.version \"TLS 1.3 draft-<16\", which we write; the cipher is 0xc02b in the bytes (frame 6, right after the 32-byte random)";

/// Write at verdict time (docs/output.md, "When a session is written"):
/// the server answered 14.8 s after the ClientHello, past the 10 s decision
/// timeout, so the `tls` record was written before the ServerHello existed.
const LATE_SERVER_HELLO: &str = "verdict time: the ServerHello (frame 1094) came 14.8 s after the ClientHello (frame 238), past the 10 s decision timeout; the tls record was written at the timeout without it, and the flow record at its end carries the final history; Suricata writes at handshake end";

pub const KNOWN: &[Known] = &[
    k("suricata-verify__base64-decode-5885__input.pcap", "version", &[1094], LATE_SERVER_HELLO),
    k("suricata-verify__base64-decode-5885__input.pcap", "ja3s", &[1094], LATE_SERVER_HELLO),
    k("suricata-verify__base64-decode-5885__input.pcap", "cipher", &[1094], LATE_SERVER_HELLO),
    k("ndpi__pop3_stls.pcap", "cert_san", &[18], PYTHON_EXT),
    k("zeek__tls__tls-early-alert.pcap", "cert_san", &[10], PYTHON_EXT),
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
    Known { capture: "ndpi__openvpn.pcap", field: "our_session", frames: &[], ours_contains: ":60140 ->", reason: "OpenVPN over TCP on port 443 (tls-auth): tshark's openvpn dissector claims only port 1194, so the oracle has no TLS here; with decode-as tcp.port==443,openvpn tshark reads the ClientHello in frame 226 with JA3 a0813e7a9441e927000427452ad684ce, ours" },
    k("ndpi__443-opvn.pcap", "client_cert_count", &[], "oracle: tshark (also with decode-as tcp.port==1194,openvpn) reassembles the OpenVPN control channel only up to the ServerHello (frame 12) and shows no later handshake message, so it counts no client certificate; we read the server's Certificate (CN=server, CN=Registro.it CA), CertificateRequest and the client's Certificate of 2 certificates, each parsed by x509-parser, then its Finished and data (history CsxkrnXGYIFifDdDd)"),
    k("retina__tls_ciphers.pcap", "ja4", &[964, 1069, 1084], SSLV2_JA4),
    k("suricata-verify__ssl_version_negated__input.pcap", "ja4", &[7], SSLV2_JA4),
    k("suricata-verify__tls__tls13-draft14__tls13_draft14.pcap", "version", &[6], DRAFT14),
    k("suricata-verify__tls__tls13-draft14__tls13_draft14.pcap", "ja3s", &[6], DRAFT14),
    k("suricata-verify__tls__tls13-draft14__tls13_draft14.pcap", "cipher", &[6], DRAFT14),
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
