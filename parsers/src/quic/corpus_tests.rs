//! Real captures from the shared corpus (`shared/corpus`, see its
//! MANIFEST.md and oracle/README.md): QUIC flows are cut out of pcap/pcapng
//! files with a minimal test-only reader and [`crate::decode::decode`], fed
//! to [`QuicConn`], and the SNI/JA4 compared with FoxIO's rust `ja4` oracle
//! (`oracle/<name>.ja4rs.json`). Tests print SKIPPED and pass when the
//! corpus is absent; corpus files are read in place, never copied.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::decode;
use crate::hello::Transport;
use crate::ja4::ja4;

/// The shared corpus (`pinwatch_testkit::corpus::root`): `None` after a
/// SKIPPED line, a failure under `PINWATCH_CORPUS_REQUIRED=1`.
pub(super) fn corpus_dir() -> Option<PathBuf> {
    pinwatch_testkit::corpus::root()
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) })
}

/// Frames of a classic pcap or a pcapng file: (link type, captured bytes).
/// `(linktype, frame)` of every record of a classic pcap or pcapng file.
pub(super) fn capture_frames(f: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    match f.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0x4d, 0x3c, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0xa1, 0xb2, 0x3c, 0x4d]) => {
            let le = f[0] != 0xa1;
            let Some(linktype) = u32_at(f, 20, le) else { return out };
            let mut at = 24;
            while let Some(incl) = u32_at(f, at + 8, le) {
                let start = at + 16;
                let Some(data) = f.get(start..start + incl as usize) else {
                    break;
                };
                out.push((linktype & 0x0fff_ffff, data));
                at = start + incl as usize;
            }
        }
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => {
            let mut le = true;
            let mut links: Vec<u32> = Vec::new();
            let mut at = 0;
            while let Some(ty) = u32_at(f, at, le) {
                if ty == 0x0a0d_0d0a {
                    le = f.get(at + 8..at + 12) == Some(&[0x4d, 0x3c, 0x2b, 0x1a]);
                    links.clear();
                }
                let Some(len) = u32_at(f, at + 4, le).map(|l| l as usize) else {
                    break;
                };
                if len < 12 || at + len > f.len() {
                    break;
                }
                let body = &f[at + 8..at + len - 4];
                match ty {
                    1 => {
                        if let Some(&[a, b]) = body.get(..2) {
                            links.push(u32::from(if le { u16::from_le_bytes([a, b]) } else { u16::from_be_bytes([a, b]) }));
                        }
                    }
                    6 => {
                        if let (Some(iface), Some(cap)) = (u32_at(body, 0, le), u32_at(body, 12, le)) {
                            if let (Some(&lt), Some(d)) = (links.get(iface as usize), body.get(20..20 + cap as usize)) {
                                out.push((lt, d));
                            }
                        }
                    }
                    3 => {
                        if let (Some(&lt), Some(orig)) = (links.first(), u32_at(body, 0, le)) {
                            let cap = (orig as usize).min(body.len() - 4);
                            out.push((lt, &body[4..4 + cap]));
                        }
                    }
                    _ => {}
                }
                at += len;
            }
        }
        _ => {}
    }
    out
}

type Endpoint = (IpAddr, u16);

/// One QUIC flow as the sensor would track it.
struct Flow {
    client: Endpoint,
    server: Endpoint,
    conn: QuicConn,
    /// ClientHellos in the order reported.
    hellos: Vec<ClientHello>,
    server_hellos: usize,
    events: Vec<QuicEvent>,
}

/// Split a capture into UDP flows, starting a flow at a datagram that
/// [`looks_like_quic_initial`] (its sender is the client), and run each
/// through a [`QuicConn`].
fn quic_flows(file: &[u8]) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    let mut index: HashMap<(u64, Endpoint, Endpoint), usize> = HashMap::new();
    for (lt, frame) in capture_frames(file) {
        let Ok(d) = decode::decode(lt, frame) else { continue };
        if d.proto != 17 {
            continue;
        }
        let (a, b) = ((d.src, d.sport), (d.dst, d.dport));
        let key = (d.context, a.min(b), a.max(b));
        let i = match index.get(&key) {
            Some(&i) => i,
            None if looks_like_quic_initial(d.payload) => {
                flows.push(Flow { client: a, server: b, conn: QuicConn::new(), hellos: Vec::new(), server_hellos: 0, events: Vec::new() });
                index.insert(key, flows.len() - 1);
                flows.len() - 1
            }
            None => continue,
        };
        let f = &mut flows[i];
        let mut out = Vec::new();
        f.conn.datagram(a == f.client, d.payload, &mut out);
        for e in out {
            match &e {
                QuicEvent::ClientHello(ch) => f.hellos.push((**ch).clone()),
                QuicEvent::ServerHello(_) => f.server_hellos += 1,
                _ => {}
            }
            f.events.push(e);
        }
    }
    flows
}

/// The value of `"key":"..."` or `"key":123` in one JSON line (enough for
/// the oracle files, which are flat objects).
fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        let mut v = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(v),
                '\\' => v.push(chars.next()?),
                c => v.push(c),
            }
        }
        None
    } else {
        Some(rest.chars().take_while(|c| c.is_ascii_digit()).collect())
    }
}

/// Oracle name → corpus path, from the MANIFEST's per-file table (rows
/// that name an oracle; the first copy of duplicated bytes wins, as the
/// oracle names the first copy).
fn manifest(corpus: &Path) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for r in pinwatch_testkit::corpus::manifest(corpus).into_iter().filter(|r| !r.kinds.is_empty()) {
        m.entry(r.oracle).or_insert(r.rel);
    }
    m
}

/// Our flows compared with the oracles of one or more captures.
#[derive(Debug, Default)]
struct Tally {
    /// Flows where tshark decrypted a ClientHello in an Initial.
    flows: usize,
    no_flow: usize,
    no_hello: usize,
    /// tshark's SNI is among our ClientHellos' (both absent counts).
    sni_ok: usize,
    /// Flows with a ja4rs row, and those where our JA4 equals it.
    ja4_rows: usize,
    ja4_ok: usize,
    /// ja4 0.18.6 printed `t` for a QUIC flow (drafts, greased versions);
    /// the rest of the fingerprint agrees.
    ja4_ok_but_transport: usize,
    /// Flows where tshark saw a ServerHello, and those where we saw one
    /// with the same cipher suite.
    sh_rows: usize,
    sh_ok: usize,
    /// Our flows with a ClientHello that tshark did not decrypt.
    extra: usize,
    /// Flows where we reported more ClientHellos than tshark decrypted.
    duplicates: usize,
    mismatches: Vec<String>,
}

impl Tally {
    fn all_agree(&self) -> bool {
        self.no_flow == 0
            && self.no_hello == 0
            && self.duplicates == 0
            && self.sni_ok == self.flows
            && self.ja4_ok + self.ja4_ok_but_transport == self.ja4_rows
            && self.sh_ok == self.sh_rows
    }
}

/// `ip:port` or `[ipv6]:port` as tshark prints them.
fn endpoint(s: &str) -> Option<Endpoint> {
    let (ip, port) = s.rsplit_once(':')?;
    Some((ip.trim_matches(|c| c == '[' || c == ']').parse().ok()?, port.parse().ok()?))
}

/// A QUIC connection of the oracle: (client, server), the SNIs of its
/// decrypted ClientHellos, the cipher suites of its ServerHellos.
type Want = ((Endpoint, Endpoint), Vec<Option<String>>, Vec<u16>);

/// The QUIC connections of `oracle/<name>.tshark.tsv` with a TLS hello (not
/// gQUIC CHLOs), in first-seen order.
fn oracle_hellos(tshark: &str) -> Vec<Want> {
    let mut want: Vec<Want> = Vec::new();
    for row in tshark.lines().skip(1) {
        let c: Vec<&str> = row.split('\t').collect();
        if c.get(2) != Some(&"quic") || c.len() < 13 {
            continue;
        }
        let (Some(src), Some(dst)) = (endpoint(c[4]), endpoint(c[5])) else {
            continue;
        };
        let is_ch = c[6].contains("client_hello");
        if !is_ch && !c[6].contains("server_hello") {
            continue; // gQUIC CHLO: no TLS in it
        }
        let key = if is_ch { (src, dst) } else { (dst, src) };
        let i = match want.iter().position(|w| w.0 == key) {
            Some(i) => i,
            None => {
                want.push((key, Vec::new(), Vec::new()));
                want.len() - 1
            }
        };
        if is_ch {
            want[i].1.push(Some(c[9]).filter(|s| !s.is_empty()).map(str::to_string));
        }
        if c[6].contains("server_hello") {
            if let Ok(cs) = u16::from_str_radix(c[12].trim_start_matches("0x"), 16) {
                want[i].2.push(cs);
            }
        }
    }
    want
}

/// JA4 of the flow from `client` to `server` in `oracle/<name>.ja4rs.json`
/// (a `udp` row).
fn ja4rs_of(ja4rs: &str, client: Endpoint, server: Endpoint) -> Option<String> {
    let row = ja4rs.lines().find(|l| {
        l.contains("\"transport\":\"udp\"")
            && json_field(l, "src").and_then(|s| s.parse().ok()) == Some(client.0)
            && json_field(l, "src_port").and_then(|s| s.parse().ok()) == Some(client.1)
            && json_field(l, "dst").and_then(|s| s.parse().ok()) == Some(server.0)
            && json_field(l, "dst_port").and_then(|s| s.parse().ok()) == Some(server.1)
    });
    row.and_then(|l| json_field(l, "ja4"))
}

/// Compare the capture's QUIC flows with `oracle/<name>.tshark.tsv` (which
/// flows carry a decryptable ClientHello, its SNI, the ServerHello cipher)
/// and `oracle/<name>.ja4rs.json` (JA4 per flow).
fn compare_with_oracle(corpus: &Path, name: &str, path: &str, t: &mut Tally) {
    let oracle = corpus.join("oracle");
    let Ok(tshark) = std::fs::read_to_string(oracle.join(format!("{name}.tshark.tsv"))) else {
        return;
    };
    let ja4rs = std::fs::read_to_string(oracle.join(format!("{name}.ja4rs.json"))).unwrap_or_default();
    let Ok(file) = std::fs::read(corpus.join(path)) else {
        println!("SKIPPED: {path} not present");
        return;
    };
    let flows = quic_flows(&file);
    let want = oracle_hellos(&tshark);
    for ((client, server), snis, ciphers) in &want {
        let flow = flows.iter().find(|f| f.client == *client && f.server == *server);
        if !snis.is_empty() {
            t.flows += 1;
        }
        if !ciphers.is_empty() {
            t.sh_rows += 1;
        }
        let Some(flow) = flow else {
            t.no_flow += 1;
            t.mismatches.push(format!("{path}: {client:?} -> {server:?}: no QUIC flow found"));
            continue;
        };
        if !ciphers.is_empty() {
            if flow.conn.server_hello().is_some_and(|sh| ciphers.contains(&sh.cipher)) {
                t.sh_ok += 1;
            } else {
                let ev: Vec<_> = flow.events.iter().filter(|e| !matches!(e, QuicEvent::ClientHello(_))).take(4).collect();
                t.mismatches.push(format!(
                    "{path}: {client:?}: ServerHello {:?} oracle ciphers {ciphers:x?}; events {ev:?}",
                    flow.conn.server_hello().map(|s| s.cipher)
                ));
            }
        }
        if snis.is_empty() {
            continue;
        }
        if flow.hellos.is_empty() {
            t.no_hello += 1;
            let ev: Vec<_> = flow.events.iter().take(4).collect();
            t.mismatches.push(format!("{path}: {client:?}: no ClientHello (version {:08x?}, events {ev:?})", flow.conn.version()));
            continue;
        }
        if flow.hellos.len() > snis.len() {
            t.mismatches.push(format!("{path}: {client:?}: {} ClientHellos reported, tshark saw {}", flow.hellos.len(), snis.len()));
            t.duplicates += 1;
        }
        if snis.iter().all(|s| flow.hellos.iter().any(|ch| &ch.sni == s)) {
            t.sni_ok += 1;
        } else {
            let got: Vec<_> = flow.hellos.iter().map(|c| c.sni.clone()).collect();
            t.mismatches.push(format!("{path}: {client:?}: sni {got:?} oracle {snis:?}"));
        }
        let Some(want_ja4) = ja4rs_of(&ja4rs, *client, *server) else {
            continue;
        };
        t.ja4_rows += 1;
        let fps: Vec<String> = flow.hellos.iter().map(|ch| ja4(ch, Transport::Quic)).collect();
        if fps.contains(&want_ja4) {
            t.ja4_ok += 1;
        } else if fps.iter().any(|fp| fp.get(1..) == want_ja4.get(1..)) {
            t.ja4_ok_but_transport += 1;
        } else {
            t.mismatches.push(format!("{path}: {client:?}: ja4 {fps:?} oracle {want_ja4}"));
        }
    }
    t.extra +=
        flows.iter().filter(|f| !f.hellos.is_empty() && !want.iter().any(|w| w.0 == (f.client, f.server) && !w.1.is_empty())).count();
}

fn load(path: &str) -> Option<Vec<Flow>> {
    let corpus = corpus_dir()?;
    match std::fs::read(corpus.join(path)) {
        Ok(b) => Some(quic_flows(&b)),
        Err(_) => {
            println!("SKIPPED: {path} not present");
            None
        }
    }
}

/// The illustrated-quic capture (quic.xargs.org explains every byte):
/// NULL link type, port 8400, SNI example.ulfheim.net.
#[test]
fn corpus_illustrated_quic() {
    let Some(flows) = load("illustrated-quic/captures/capture.pcap") else {
        return;
    };
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(f.hellos.len(), 1, "{:?}", f.events);
    let ch = &f.hellos[0];
    assert_eq!(ch.sni.as_deref(), Some("example.ulfheim.net"));
    // The page's ClientHello: x25519 key share, ALPN "ping/1.0".
    assert_eq!(ch.alpn, vec!["ping/1.0".to_string()]);
    assert_eq!(f.server_hellos, 1);
    let sh = f.conn.server_hello().unwrap();
    assert_eq!((sh.cipher, sh.selected_version), (0x1301, Some(0x0304)));
    assert_eq!(f.conn.original_dcid(), Some(&[0, 1, 2, 3, 4, 5, 6, 7][..]));
    // Oracle illustrated-quic__captures__capture.pcap.ja4rs.json.
    let mut t = Tally::default();
    compare_with_oracle(
        &corpus_dir().unwrap_or_default(),
        "illustrated-quic__captures__capture.pcap",
        "illustrated-quic/captures/capture.pcap",
        &mut t,
    );
    assert_eq!((t.flows, t.sni_ok, t.ja4_ok, t.sh_rows, t.sh_ok), (1, 1, 1, 1, 1), "{t:#?}");
}

/// The captures named in the issue, against their oracles.
#[test]
fn corpus_named_quic_captures() {
    let Some(corpus) = corpus_dir() else { return };
    for (name, path, min_rows) in [
        // 11 v1 Initials with Suricata's own JA4/SNI expectations.
        ("suricata-verify__ja4-quic__input.pcap", "suricata-verify/tests/ja4-quic/input.pcap", 11),
        // IPv6, ClientHello split over several Initials.
        (
            "zeek__quic__chromium-115.0.5790.110-google-de-fragmented.pcap",
            "zeek/testing/btest/Traces/quic/chromium-115.0.5790.110-google-de-fragmented.pcap",
            1,
        ),
        // Retry: two ClientHellos per connection.
        ("retina__quic_retry.pcapng", "retina/traces/quic_retry.pcapng", 2),
        // The server sends two Retries; the client follows the first.
        ("suricata-verify__quic-retry__input.pcap", "suricata-verify/tests/quic-retry/input.pcap", 1),
        // QUIC v2.
        ("zeek__quic__quicv2-http3-443.pcap", "zeek/testing/btest/Traces/quic/quicv2-http3-443.pcap", 1),
        // Chrome draft-29 with CRYPTO frames shuffled inside each packet.
        (
            "ndpi__quic_frags_ch_out_of_order_same_packet_craziness.pcapng",
            "ndpi/tests/cfgs/default/pcap/quic_frags_ch_out_of_order_same_packet_craziness.pcapng",
            100,
        ),
    ] {
        let mut t = Tally::default();
        compare_with_oracle(&corpus, name, path, &mut t);
        if !corpus.join(path).exists() {
            continue;
        }
        println!("{path}: {t:?}");
        assert!(t.flows >= min_rows, "{path}: {t:#?}");
        assert!(t.all_agree(), "{path}: {t:#?}");
    }
}

/// Chrome 124 with a Kyber key share: the ClientHello needs two datagrams.
/// No oracle file for it; check what the MANIFEST says.
#[test]
fn corpus_quic_kyber_two_datagram_client_hello() {
    let Some(flows) = load("retina/traces/quic_kyber.pcapng") else {
        return;
    };
    let hellos: Vec<_> = flows.iter().flat_map(|f| &f.hellos).collect();
    assert_eq!(hellos.len(), 1, "{:?}", flows.iter().map(|f| &f.events).collect::<Vec<_>>());
    let ch = hellos[0];
    assert!(ch.offers_ech(), "ECH GREASE expected");
    assert!(ch.supported_groups.contains(&0x6399), "X25519Kyber768 expected: {:x?}", ch.supported_groups);
    println!("quic_kyber: sni {:?} ja4 {}", ch.sni, ja4(ch, Transport::Quic));
}

/// Every capture with QUIC rows in its ja4rs oracle.
#[test]
fn corpus_all_quic_oracles() {
    let Some(corpus) = corpus_dir() else { return };
    let names = manifest(&corpus);
    let mut oracles: Vec<String> = std::fs::read_dir(corpus.join("oracle"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    oracles.sort();
    // Google T050/T051: TLS in Initials with public salts, but gQUIC frame
    // types (CRYPTO is 0x08, gQUIC ACKs); not supported.
    const UNSUPPORTED: [&str; 2] = ["ndpi__quic_t50.pcap", "ndpi__quic_t51.pcap"];
    let mut total = Tally::default();
    let mut unsupported = Tally::default();
    let mut files = 0;
    for o in oracles {
        let Some(name) = o.strip_suffix(".tshark.tsv") else {
            continue;
        };
        let text = std::fs::read_to_string(corpus.join("oracle").join(&o)).unwrap_or_default();
        if !text.lines().any(|l| l.split('\t').nth(2) == Some("quic")) {
            continue;
        }
        let Some(path) = names.get(name) else {
            println!("no MANIFEST entry for {name}");
            continue;
        };
        files += 1;
        if UNSUPPORTED.contains(&name) {
            compare_with_oracle(&corpus, name, path, &mut unsupported);
        } else {
            compare_with_oracle(&corpus, name, path, &mut total);
        }
    }
    for m in &total.mismatches {
        println!("MISMATCH {m}");
    }
    println!(
        "QUIC flows with a ClientHello in tshark: {} in {files} captures; no flow {}, no ClientHello {}; \
         SNI agree {}; JA4 agree {}/{} (+{} where ja4 printed 't'); ServerHello cipher agree {}/{}; \
         ClientHellos tshark did not decrypt: {}",
        total.flows,
        total.no_flow,
        total.no_hello,
        total.sni_ok,
        total.ja4_ok,
        total.ja4_rows,
        total.ja4_ok_but_transport,
        total.sh_ok,
        total.sh_rows,
        total.extra
    );
    println!("unsupported (T050/T051): {} flows, {} with a ClientHello from us", unsupported.flows, unsupported.sni_ok);
    assert!(files > 0);
    assert!(total.flows > 0 && total.all_agree(), "{:#?}", total.mismatches);
    assert_eq!(total.extra, 0);
}

/// Over every capture in the corpus: the flows the probe starts are QUIC
/// flows we can read. A flow where no Initial decrypts at all is either a
/// capture that starts mid-connection or a probe false positive; there must
/// be few.
#[test]
fn corpus_probe_starts_readable_flows() {
    let Some(corpus) = corpus_dir() else { return };
    let rows = pinwatch_testkit::corpus::manifest(&corpus);
    let mut paths: Vec<&str> = rows.iter().map(|r| r.rel.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let (mut flows, mut unread) = (0usize, Vec::new());
    for path in &paths {
        let Ok(file) = std::fs::read(corpus.join(path)) else {
            continue;
        };
        for f in quic_flows(&file) {
            flows += 1;
            if f.conn.decrypted_initials(true) + f.conn.decrypted_initials(false) == 0 {
                let ev: Vec<_> = f.events.iter().take(2).collect();
                unread.push(format!("{path}: {:?} -> {:?}: {ev:?}", f.client, f.server));
            }
        }
    }
    println!("probe: {flows} flows in {} captures, {} without any decryptable Initial", paths.len(), unread.len());
    for u in &unread {
        println!("UNREAD {u}");
    }
    assert!(flows > 0);
    assert!(unread.len() * 20 <= flows, "{unread:#?}");
}
