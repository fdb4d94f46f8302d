//! Capture loss must never make a rejection. At a SPAN port segments go
//! missing; a lost segment that carried the client's Finished or its first
//! request used to make the next protected record look like a rejection.
//!
//! Each real testbed capture (`pcaps/`, and a fresh run when CI made one)
//! is replayed as captured and with a share of its payload-carrying TCP
//! segments dropped (and, in a second test, swapped with the next packet
//! or captured twice) (0.5%, 2% and 5%, three seeds each unless
//! `PINWATCH_LOSS_SEEDS` says more, chosen by a hash of
//! the packet's index so every run drops the same ones). A session that
//! was not a rejection in the lossless capture must not become one: it may
//! stay what it was or become `incomplete` (`capture_gap`), which is what
//! the sensor says when the evidence is gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_testkit::pcap::Pcap;
use serde_json::Value;

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

/// The captures to check: every testbed capture of a directory.
fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        n.starts_with("testbed-") && n.ends_with(".pcap")
    });
    v.sort();
    v
}

/// The sensor config for a capture: `<group>.toml` beside it, else the
/// repo's own for that group, else `pcaps/testbed.toml`; CA files are looked
/// up beside the capture (a fresh run writes its own CA).
fn config_for(capture: &Path) -> pinwatch::config::Config {
    let dir = capture.parent().expect("dir");
    let stem = capture.file_stem().and_then(|s| s.to_str()).expect("name");
    let cfg = [dir.join(format!("{stem}.toml")), pcaps_dir().join(format!("{stem}.toml")), pcaps_dir().join("testbed.toml")]
        .into_iter()
        .find(|p| p.exists())
        .expect("a testbed config");
    let text = std::fs::read_to_string(&cfg).expect("config readable");
    pinwatch::config::Config::parse(&cfg.display().to_string(), &text, dir).expect("config loads")
}

/// Every `tls` record of a capture's bytes, replayed with `config`.
fn tls_records(name: &str, bytes: &[u8], config: &pinwatch::config::Config) -> Vec<Value> {
    // One file per call: the tests run in parallel, and a capture must not
    // change under a replay that has it mapped (README, "No copies").
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pinwatch-loss-{}-{k}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("write capture");
    let opts = Options { config: config.clone(), progress: false, stats: false, ..Default::default() };
    let mut out = Vec::new();
    replay(&[Input::File(path.clone())], &opts, &mut out).expect("replay");
    let _ = std::fs::remove_file(&path);
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|v| v["event_type"] == "tls")
        .collect()
}

/// Outcome per flow id of every `tls` record of a capture's bytes.
fn outcomes(name: &str, bytes: &[u8], config: &pinwatch::config::Config) -> HashMap<u64, (String, String)> {
    tls_records(name, bytes, config)
        .into_iter()
        .map(|v| {
            let f = &v["tls_failure"];
            let o = f["outcome"].as_str().unwrap_or("?").to_string();
            let k = f["kind"].as_str().unwrap_or("-").to_string();
            (v["flow_id"].as_u64().expect("flow id"), (o, k))
        })
        .collect()
}

/// Deterministic choice: drop packet `i` at `rate` under `seed`.
fn dropped(seed: u64, i: usize, rate: f64) -> bool {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    (x % 1_000_000) as f64 / 1_000_000.0 < rate
}

fn is_rejection(o: &str) -> bool {
    o == "client_rejected" || o == "server_rejected"
}

/// What the capture does to the chosen payload-carrying segments.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Harm {
    /// Lost (a SPAN port's drops).
    Drop,
    /// Captured after the packet that follows it (two paths, two queues).
    Swap,
    /// Captured twice (a retransmission, or a port mirrored twice).
    Duplicate,
}

/// `pcap` with `harm` done to the payload-carrying packets `chosen` picks;
/// returns it and how many packets were harmed.
fn harmed(pcap: &Pcap, payload: &[bool], harm: Harm, chosen: impl Fn(usize) -> bool) -> (Pcap, usize) {
    let mut out = pcap.clone();
    let mut n = 0;
    let recs = &pcap.records;
    out.records = Vec::with_capacity(recs.len());
    let mut i = 0;
    while i < recs.len() {
        let pick = payload[i] && chosen(i);
        n += usize::from(pick);
        match harm {
            Harm::Drop if pick => {}
            Harm::Duplicate if pick => {
                out.records.push(recs[i].clone());
                out.records.push(recs[i].clone());
            }
            Harm::Swap if pick && i + 1 < recs.len() => {
                // The capture time stays in order: the later packet takes
                // the earlier one's time, as a capture that queued it would.
                let (mut first, mut second) = (recs[i + 1].clone(), recs[i].clone());
                let t = first.header;
                first.header[..8].copy_from_slice(&second.header[..8]);
                second.header[..8].copy_from_slice(&t[..8]);
                out.records.push(first);
                out.records.push(second);
                i += 1;
            }
            _ => out.records.push(recs[i].clone()),
        }
        i += 1;
    }
    (out, n)
}

/// Replays every testbed capture as captured and with `harm` done to a
/// share of its payload-carrying segments, and lists the sessions that
/// became rejections. Returns (sessions compared, packets harmed,
/// capture_gap verdicts, problems).
fn check(harm: Harm) -> (usize, usize, usize, Vec<String>) {
    let mut dirs = vec![pcaps_dir()];
    if let Some(d) = std::env::var_os("PINWATCH_TESTBED_DIR") {
        dirs.push(PathBuf::from(d));
    }
    // More seeds for a deeper local run: PINWATCH_LOSS_SEEDS=50.
    let seeds: u64 = std::env::var("PINWATCH_LOSS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (mut checked_sessions, mut harmed_total, mut gaps) = (0usize, 0usize, 0usize);
    let mut problems = Vec::new();
    for dir in &dirs {
        let caps = captures(dir);
        assert!(caps.len() >= 3, "{}: expected the testbed captures, found {}", dir.display(), caps.len());
        for cap in caps {
            let name = cap.file_name().and_then(|n| n.to_str()).expect("name").to_string();
            let pcap = Pcap::read(&cap).expect("testbed captures are classic pcap");
            let config = config_for(&cap);
            let base = outcomes(&name, &pcap.to_bytes(), &config);
            // Payload-carrying TCP segments: the ones a SPAN port loses
            // that matter (losing a SYN changes the flow, not the verdict).
            let payload: Vec<bool> = pcap
                .records
                .iter()
                .map(|r| {
                    pinwatch_parsers::decode::decode(pcap.linktype, &r.frame)
                        .map(|d| d.tcp.is_some() && !d.payload.is_empty())
                        .unwrap_or(false)
                })
                .collect();
            for rate in [0.005, 0.02, 0.05] {
                for seed in 1..=seeds {
                    let (lossy, n) = harmed(&pcap, &payload, harm, |i| dropped(seed, i, rate));
                    harmed_total += n;
                    let got = outcomes(&name, &lossy.to_bytes(), &config);
                    for (id, (o, k)) in &got {
                        if k == "capture_gap" {
                            gaps += 1;
                        }
                        let Some((bo, bk)) = base.get(id) else { continue };
                        checked_sessions += 1;
                        if is_rejection(o) && !is_rejection(bo) {
                            problems.push(format!(
                                "{}: flow {id}: {bo}/{bk} as captured, {o}/{k} with {:.1}% {harm:?} (seed {seed}, {n} packets)",
                                cap.display(),
                                rate * 100.0
                            ));
                        }
                    }
                }
            }
            // The benign capture has no rejection even as captured.
            if name == "testbed-benign.pcap" {
                let rej: Vec<_> = base.values().filter(|(o, _)| is_rejection(o)).collect();
                assert!(rej.is_empty(), "{}: rejections in a benign capture: {rej:?}", cap.display());
                assert!(base.len() >= 300, "{}: {} sessions", cap.display(), base.len());
            }
        }
    }
    println!("{harm:?}: {checked_sessions} session replays compared, {harmed_total} segments harmed, {gaps} capture_gap verdicts");
    assert!(harmed_total > 50, "{harm:?}: only {harmed_total} segments harmed: the test checked too little");
    (checked_sessions, harmed_total, gaps, problems)
}

#[test]
fn dropped_segments_never_make_a_rejection() {
    let (_, _, gaps, problems) = check(Harm::Drop);
    assert!(gaps > 0, "no capture_gap verdict at all: the loss did not reach any deciding record");
    assert!(problems.is_empty(), "{} rejections made by capture loss:\n{}", problems.len(), problems.join("\n"));
}

/// Segments captured out of order or twice lose nothing: a session keeps
/// its verdict or, at worst, is not called a rejection it was not.
#[test]
fn reordered_or_duplicated_segments_never_make_a_rejection() {
    for harm in [Harm::Swap, Harm::Duplicate] {
        let (_, _, _, problems) = check(harm);
        assert!(problems.is_empty(), "{} rejections made by {harm:?}:\n{}", problems.len(), problems.join("\n"));
    }
}

/// Sessions the deeper run (`PINWATCH_LOSS_SEEDS=40`) turned into
/// rejections, kept as single-flow captures in `tests/regressions/loss/`:
/// a TLS 1.3 client's Finished and request lost after the ChangeCipherSpec
/// that was seen; a TLS 1.2 request whose only ACK was the server's FIN; a
/// lost tail shown only by the sequence numbers of FIN and pure-ACK
/// segments. Each must be `incomplete/capture_gap`, with its hole counted.
#[test]
fn kept_lossy_sessions_are_capture_gaps() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/loss");
    let config = config_for(&pcaps_dir().join("testbed-benign.pcap"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("regressions/loss").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    assert!(files.len() >= 3, "kept lossy sessions missing: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        let got = outcomes(&f.file_name().expect("name").to_string_lossy(), &bytes, &config);
        assert_eq!(got.len(), 1, "{}: one session expected, got {got:?}", f.display());
        for (o, k) in got.values() {
            assert_eq!((o.as_str(), k.as_str()), ("incomplete", "capture_gap"), "{}", f.display());
        }
    }
}

/// Who closed first does not hang on microseconds of capture time. Two
/// capture sockets stamp a host's own packets apart (a live sensor and
/// tcpdump on one interface disagreed in CI), so a FIN that answers the
/// peer's FIN can carry the earlier time. Every such answering FIN of the
/// benign capture is stamped 1 µs before the FIN it answers: `closed_by`
/// must stay what it was.
#[test]
fn an_answering_fin_stamped_first_does_not_change_who_closed() {
    let cap = pcaps_dir().join("testbed-benign.pcap");
    let pcap = Pcap::read(&cap).expect("classic pcap");
    let config = config_for(&cap);
    let closed_by = |bytes: &[u8]| -> HashMap<u64, String> {
        tls_records("close-order.pcap", bytes, &config)
            .into_iter()
            .map(|v| (v["flow_id"].as_u64().expect("id"), v["tls_failure"]["closed_by"].as_str().unwrap_or("-").to_string()))
            .collect()
    };
    let u32_at = |h: &[u8], at: usize| {
        let a: [u8; 4] = h[at..at + 4].try_into().expect("4 bytes");
        if pcap.little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let put = |h: &mut [u8], at: usize, v: u32| {
        h[at..at + 4].copy_from_slice(&if pcap.little_endian { v.to_le_bytes() } else { v.to_be_bytes() })
    };
    // First FIN per (sender, receiver) endpoint pair: its record and the
    // sequence number just past it.
    type Endpoint = (std::net::IpAddr, u16);
    let mut fins: HashMap<(Endpoint, Endpoint), (usize, u32)> = HashMap::new();
    let mut moved = 0;
    let mut stamped = pcap.clone();
    for (i, r) in pcap.records.iter().enumerate() {
        let Ok(d) = pinwatch_parsers::decode::decode(pcap.linktype, &r.frame) else { continue };
        let Some(tcp) = d.tcp else { continue };
        if !tcp.has(pinwatch_parsers::decode::TcpInfo::FIN) {
            continue;
        }
        let (src, dst) = ((d.src, d.sport), (d.dst, d.dport));
        let end = tcp.seq.wrapping_add(d.payload.len() as u32).wrapping_add(1);
        if fins.contains_key(&(src, dst)) {
            continue;
        }
        fins.insert((src, dst), (i, end));
        if let Some(&(j, peer_end)) = fins.get(&(dst, src)) {
            let (sec, frac) = (u32_at(&pcap.records[j].header, 0), u32_at(&pcap.records[j].header, 4));
            if tcp.has(pinwatch_parsers::decode::TcpInfo::ACK) && tcp.ack == peer_end && frac > 0 {
                let h = &mut stamped.records[i].header;
                put(h, 0, sec);
                put(h, 4, frac - 1);
                moved += 1;
            }
        }
    }
    assert!(moved >= 100, "only {moved} answering FINs in the benign capture");
    let (before, after) = (closed_by(&pcap.to_bytes()), closed_by(&stamped.to_bytes()));
    assert_eq!(before.len(), after.len());
    let changed: Vec<_> = before.iter().filter(|(id, c)| after.get(id) != Some(c)).collect();
    assert!(changed.is_empty(), "{} of {moved} sessions changed closed_by, e.g. {:?}", changed.len(), &changed[..changed.len().min(5)]);
}
