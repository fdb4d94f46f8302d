//! Segmentation evasion (issue 17, item 1): a real ClientHello, taken from a
//! testbed capture, sent again in TCP segments of every size from 1 byte to
//! its length, overlapping (with the same and with different bytes) and out
//! of order, must give the same `tls` record as the hello in one segment,
//! and no 1725003 (`non_tls_on_443`).
//!
//! The capture is built here from `pcaps/testbed-basic.pcap`: the first TLS
//! session on port 443 is copied once per variant (its own client port and
//! time), with the client's first segment cut as the variant says, sequence
//! numbers and checksums fixed. `PINWATCH_KEEP_SEGMENTED=path` writes it out
//! (tshark 4.0, default settings, reads the SNI of 534 of its 566 sessions:
//! not those delivered out of order).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pinwatch::flow::Limits;
use pinwatch::run::pipeline::{replay, Input, Options, Summary};
use pinwatch_testkit::pcap::{payload, read_pcap, rewrite, tcp, write_pcap, Rec};
use pinwatch_tests::corpus;
use serde_json::Value;

/// One segment of the client's first flight: offset into the hello, and
/// its bytes (garbage where the variant sends a lying copy).
type Seg = (usize, Vec<u8>);

/// The ways the hello is cut.
fn variants(hello: &[u8]) -> Vec<(String, Vec<Seg>)> {
    let n = hello.len();
    let piece = |a: usize, b: usize| (a, hello[a..b.min(n)].to_vec());
    let cut = |k: usize| (0..n).step_by(k).map(|a| piece(a, a + k)).collect::<Vec<_>>();
    let lie = |s: &Seg| (s.0, s.1.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>());
    let mut v = Vec::new();
    // Every size, in order.
    for k in 1..=n {
        v.push((format!("in order, {k}-byte segments"), cut(k)));
    }
    for k in [1, 2, 3, 4, 5, 6, 7, 13, 100, 300] {
        // Each pair of segments swapped: one segment held at a time.
        let mut s = cut(k);
        for p in s.chunks_mut(2) {
            p.reverse();
        }
        v.push((format!("pairs swapped, {k}-byte segments"), s));
        // Overlapping copies with the same bytes: each segment reaches over
        // the next one's first bytes.
        v.push((format!("overlapping, same bytes, {k}-byte steps"), (0..n).step_by(k).map(|a| piece(a, a + k + k.div_ceil(2))).collect()));
        // Each segment followed by a copy that starts one byte earlier and
        // lies about that byte (already delivered: the first copy wins).
        let mut s = Vec::new();
        for (a, bytes) in cut(k) {
            s.push((a, bytes.clone()));
            if a > 0 {
                let mut liar = piece(a - 1, a + k);
                liar.1[0] ^= 0xff;
                s.push(liar);
            }
        }
        v.push((format!("retransmissions lying about a delivered byte, {k}-byte segments"), s));
        // Out of order, and a lying copy of a held segment at the same
        // start (the held, first copy wins) before the hole is filled.
        let mut s = Vec::new();
        for p in cut(k).chunks(2) {
            if let [a, b] = p {
                s.push(b.clone());
                s.push(lie(b));
                s.push(a.clone());
            } else {
                s.extend(p.iter().cloned());
            }
        }
        v.push((format!("held segments followed by lying copies, {k}-byte segments"), s));
    }
    // Everything backwards (within the out-of-order caps: 64 segments).
    for k in [9, 16, 50, 200] {
        let mut s = cut(k);
        s.reverse();
        v.push((format!("all backwards, {k}-byte segments"), s));
    }
    // The record header alone, split 1+4, 2+3, 3+2, 4+1, then the rest.
    for h in 1..5 {
        v.push((format!("header split at {h}"), vec![piece(0, h), piece(h, 5), piece(5, n)]));
    }
    v
}

struct Built {
    capture: Vec<u8>,
    /// Client port -> variant name.
    names: BTreeMap<u16, String>,
}

/// The first session to port 443 whose client's first data segment is a
/// ClientHello: its packets, the client port, and that segment's index.
fn pick_session(recs: &[Rec]) -> (Vec<Rec>, u16, usize) {
    let first = recs
        .iter()
        .find(|r| tcp(&r.frame).is_some_and(|t| t.dport == 443 && payload(&r.frame).starts_with(&[0x16, 0x03])))
        .expect("a ClientHello to port 443");
    let port = tcp(&first.frame).expect("a TCP frame").sport;
    let session: Vec<Rec> = recs
        .iter()
        .filter(|r| tcp(&r.frame).is_some_and(|t| (t.sport == port && t.dport == 443) || (t.dport == port && t.sport == 443)))
        .cloned()
        .collect();
    let hello_at = session.iter().position(|r| payload(&r.frame).starts_with(&[0x16, 0x03])).expect("the ClientHello");
    (session, port, hello_at)
}

fn build(testbed: &Path) -> (Built, Vec<u8>) {
    let recs = read_pcap(testbed);
    let (session, port, hello_at) = pick_session(&recs);
    let hello = payload(&session[hello_at].frame).to_vec();
    assert!(hello.len() > 300, "a real ClientHello: {} bytes", hello.len());
    let seq0 = tcp(&session[hello_at].frame).expect("a TCP frame").seq;
    let t0 = session[0].ts_us;
    let span = session.last().expect("packets").ts_us - t0;
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    // The untouched session first (its own port), then one copy per variant.
    let mut all = vec![("whole".to_string(), vec![(0usize, hello.clone())])];
    all.extend(variants(&hello));
    for (i, (name, segs)) in all.into_iter().enumerate() {
        let cport = 20_000 + i as u16;
        let shift = (i as u64) * (span + 1_000_000);
        names.insert(cport, name);
        for (j, r) in session.iter().enumerate() {
            let ts_us = r.ts_us - t0 + 1_700_000_000_000_000 + shift;
            if j == hello_at {
                for (a, bytes) in &segs {
                    let f = rewrite(&r.frame, (port, cport), Some(seq0.wrapping_add(*a as u32)), Some(bytes));
                    out.push(Rec { ts_us, frame: f });
                }
            } else {
                out.push(Rec { ts_us, frame: rewrite(&r.frame, (port, cport), None, None) });
            }
        }
    }
    (Built { capture: write_pcap(&out), names }, hello)
}

fn run(name: &str, bytes: &[u8], threads: usize) -> (Summary, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("pinwatch-segmented-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join(name);
    std::fs::File::create(&path).and_then(|mut f| f.write_all(bytes)).expect("write capture");
    let mut out = Vec::new();
    let opts = Options { limits: Limits::default(), progress: false, stats: true, threads, ..Default::default() };
    let summary = replay(&[Input::File(path.clone())], &opts, &mut out).expect("replay runs");
    let _ = std::fs::remove_file(&path);
    let lines = String::from_utf8(out).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    (summary, lines)
}

/// What must not depend on how the hello was cut: the whole `tls` object,
/// and the handshake's history, close, record headers and outcome.
fn essence(l: &Value) -> Value {
    let h = &l["handshake"];
    serde_json::json!({
        "tls": l["tls"],
        "history": h["history"],
        "close": h["close"],
        "missing": h["missing"],
        "alerts": h["alerts"],
        "records": h["records"],
        "outcome": l["tls_failure"],
    })
}

#[test]
fn a_client_hello_cut_any_way_gives_the_same_record() {
    let testbed = corpus::workspace_root().join("pcaps/testbed-basic.pcap");
    let (built, hello) = build(&testbed);
    if let Ok(keep) = std::env::var("PINWATCH_KEEP_SEGMENTED") {
        std::fs::write(&keep, &built.capture).expect("write the capture");
    }
    let (summary, lines) = run("segmented.pcap", &built.capture, 1);
    assert!(summary.first_error.is_none(), "{:?}", summary.first_error);
    let mut by_port: BTreeMap<u16, &Value> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["event_type"] == "tls") {
        let p = l["src_port"].as_u64().expect("a port") as u16;
        assert!(by_port.insert(p, l).is_none(), "one tls record per session ({p})");
    }
    let whole = by_port.get(&20_000).map(|l| essence(l)).expect("the untouched session's record");
    assert!(whole["tls"]["sni"].is_string() && whole["tls"]["ja4"].is_string(), "{whole}");
    let mut wrong = Vec::new();
    for (port, name) in &built.names {
        match by_port.get(port) {
            None => wrong.push(format!("{name}: no tls record")),
            Some(l) if essence(l) != whole => wrong.push(format!("{name}: {}", essence(l))),
            Some(_) => {}
        }
    }
    let false_alarms: Vec<&Value> =
        lines.iter().filter(|l| l["event_type"] == "alert" && l["alert"]["signature_id"] == 1_725_003).collect();
    assert!(
        wrong.is_empty() && false_alarms.is_empty(),
        "{} of {} variants differ from the hello in one piece ({} bytes), {} false 1725003:\n{}",
        wrong.len(),
        built.names.len(),
        hello.len(),
        false_alarms.len(),
        wrong.join("\n")
    );
    let flow = &lines.last().expect("stats")["stats"]["flow"];
    assert_eq!(flow["not_tls_flows"], 0, "{flow}");
    assert!(flow["reassembly_overlap_diff_data"].as_u64().expect("a port") > 0, "lying copies are counted: {flow}");
    // The same records with two threads (the stats record's high-water
    // marks are per thread).
    let (_, two) = run("segmented.pcap", &built.capture, 2);
    assert!(lines[..lines.len() - 1] == two[..two.len() - 1], "two threads write the same records");
}

/// A one-sided session (SYN, then the client's bytes as `segs` of
/// (offset, bytes) from the byte after the SYN) from client port `port`.
fn one_sided(hello_frame: &[u8], port: u16, ts_us: u64, segs: &[(usize, Vec<u8>)]) -> Vec<Rec> {
    let t = tcp(hello_frame).expect("tcp");
    let isn = t.seq.wrapping_sub(1);
    let mut syn = hello_frame.to_vec();
    syn[t.tcp + 13] = 0x02;
    let mut out = vec![Rec { ts_us, frame: rewrite(&syn, (t.sport, port), Some(isn), Some(&[])) }];
    for (i, (a, bytes)) in segs.iter().enumerate() {
        let f = rewrite(hello_frame, (t.sport, port), Some(isn.wrapping_add(1 + *a as u32)), Some(bytes));
        out.push(Rec { ts_us: ts_us + 10 + i as u64, frame: f });
    }
    out
}

/// Preambles before the hello, themselves in tiny segments: a PROXY v1 line
/// and a PROXY v2 header (HAProxy), and a STARTTLS-style exchange with junk after it, a byte a
/// segment. The hello after them is read as in one piece.
#[test]
fn preambles_in_tiny_segments_are_still_skipped() {
    let testbed = corpus::workspace_root().join("pcaps/testbed-basic.pcap");
    let recs = read_pcap(&testbed);
    let (session, _, hello_at) = pick_session(&recs);
    let frame = session[hello_at].frame.clone();
    let hello = payload(&frame).to_vec();
    let bytes_of = |pre: &[u8], k_pre: usize, k: usize| {
        let mut segs: Vec<(usize, Vec<u8>)> = pre.chunks(k_pre).enumerate().map(|(i, c)| (i * k_pre, c.to_vec())).collect();
        segs.extend(hello.chunks(k).enumerate().map(|(i, c)| (pre.len() + i * k, c.to_vec())));
        segs
    };
    let proxy = b"PROXY TCP4 192.0.2.1 198.51.100.7 51000 443\r\n".to_vec();
    // PROXY v2 (binary), TCP over IPv4, field by field from HAProxy's
    // proxy-protocol.txt 2.2: signature, version 2 / PROXY, AF_INET +
    // STREAM, 12 address bytes; and the same with a 40-byte TLV (type 0xE0,
    // custom) after the addresses.
    let mut proxy2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    proxy2.extend([0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 7, 0xc7, 0x38, 0x01, 0xbb]);
    let mut proxy2_tlv = proxy2.clone();
    proxy2_tlv[15] = 0x0c + 43;
    proxy2_tlv.extend([0xe0, 0x00, 40]);
    proxy2_tlv.extend([b'v'; 40]);
    let mut starttls = b"EHLO client.example\r\nSTARTTLS\r\n".to_vec();
    starttls.extend([0x16, 0x03, b'x', b'y', b'z', b'!']);
    starttls.extend(std::iter::repeat_n(b'.', 40));
    let cases: Vec<(&str, Vec<Seg>)> = vec![
        ("whole", bytes_of(b"", 1, hello.len())),
        ("PROXY line with the hello", vec![(0, [proxy.clone(), hello.clone()].concat())]),
        ("PROXY line a byte a segment, hello in 2-byte segments", bytes_of(&proxy, 1, 2)),
        ("PROXY line in 7-byte segments, hello in 3-byte segments", bytes_of(&proxy, 7, 3)),
        ("PROXY v2 header with the hello", vec![(0, [proxy2.clone(), hello.clone()].concat())]),
        ("PROXY v2 header in its own segment", bytes_of(&proxy2, proxy2.len(), hello.len())),
        ("PROXY v2 header a byte a segment, hello in 2-byte segments", bytes_of(&proxy2, 1, 2)),
        ("PROXY v2 header with a TLV in 5-byte segments, hello in 3-byte segments", bytes_of(&proxy2_tlv, 5, 3)),
        ("STARTTLS exchange and junk a byte a segment, hello a byte a segment", bytes_of(&starttls, 1, 1)),
        ("STARTTLS exchange and junk in 4-byte segments, hello in 4-byte segments", bytes_of(&starttls, 4, 4)),
    ];
    let mut out = Vec::new();
    for (i, (_, segs)) in cases.iter().enumerate() {
        out.extend(one_sided(&frame, 30_000 + i as u16, 1_700_000_000_000_000 + i as u64 * 1_000_000, segs));
    }
    let (_, lines) = run("preambles.pcap", &write_pcap(&out), 1);
    let tls: BTreeMap<u64, &Value> =
        lines.iter().filter(|l| l["event_type"] == "tls").map(|l| (l["src_port"].as_u64().expect("a port"), l)).collect();
    let whole = &tls.get(&30_000).expect("the whole hello's record")["tls"];
    assert!(whole["sni"].is_string(), "{whole}");
    for (i, (name, _)) in cases.iter().enumerate() {
        let got = tls.get(&(30_000 + i as u64)).map(|l| &l["tls"]);
        assert_eq!(got, Some(whole), "{name}");
    }
    assert!(!lines.iter().any(|l| l["alert"]["signature_id"] == 1_725_003), "no false 1725003");
}
