//! The output does not depend on the thread count: every corpus capture and
//! every testbed capture, replayed with 1, 2 and 3 flow-table threads, gives
//! the same records in the same order (the stats record aside, whose
//! high-water marks are per-shard sums; its counters must agree).

use std::path::Path;

use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_testkit::pcap::{payload, rewrite, tcp};
use pinwatch_tests::corpus;
use serde_json::Value;

/// Replay with `threads`; the lines other than stats, and the stats record.
fn run(inputs: &[Input], opts: &Options, threads: usize) -> (Vec<String>, Value) {
    let opts = Options { threads, stats: true, ..opts.clone() };
    let mut out = Vec::new();
    replay(inputs, &opts, &mut out).expect("replay");
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let stats = lines.pop().map(|l| serde_json::from_str::<Value>(&l).expect("stats json")).unwrap_or(Value::Null);
    assert_eq!(stats["event_type"], "stats", "the last line is the stats record");
    (lines, stats["stats"].clone())
}

/// Counters that must not depend on sharding.
const SAME: &[&[&str]] = &[
    &["capture", "packets"],
    &["capture", "bytes"],
    &["capture", "error_messages"],
    &["capture", "timestamp_jumps"],
    &["decoder", "tcp"],
    &["decoder", "udp"],
    &["decoder", "skipped"],
    &["flow", "flows_created"],
    &["flow", "flows_ended"],
    &["flow", "flows_evicted"],
    &["flow", "flows_timed_out"],
    &["flow", "tls_flows"],
    &["flow", "quic_flows"],
    &["flow", "bypassed_flows"],
    &["flow", "bypassed_packets"],
    &["flow", "late_packets_after_close"],
    &["tls_records_logged"],
    &["quic_records_logged"],
    &["alerts_logged"],
    &["outcomes"],
];

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// Compare 1 thread against 2 and 3 (a single pcap file is read in chunks,
/// the default size and a small one that puts chunk boundaries all over
/// the file), with the reporter on a thread of its own and at the shards'
/// desk; a description of each difference.
fn compare(name: &str, inputs: &[Input], opts: &Options) -> (Vec<String>, Value) {
    compare_with(name, inputs, opts, &[(2, 0, false), (3, 0, true), (2, 4096, true), (3, 1500, false)])
}

/// Compare 1 thread against each (threads, chunk bytes, reporter thread) in `runs`.
fn compare_with(name: &str, inputs: &[Input], opts: &Options, runs: &[(usize, usize, bool)]) -> (Vec<String>, Value) {
    let (one, s1) = run(inputs, opts, 1);
    let mut diffs = Vec::new();
    for &(n, chunk, reporter_thread) in runs {
        let opts = Options { chunk_bytes: chunk, reporter_thread: Some(reporter_thread), ..opts.clone() };
        let (many, sn) = run(inputs, &opts, n);
        if one != many {
            let i = one.iter().zip(&many).position(|(a, b)| a != b).unwrap_or(one.len().min(many.len()));
            diffs.push(format!(
                "{name}: {n} threads ({chunk}-byte chunks) differ from 1 at line {} ({} vs {} lines)\n  1: {}\n  {n}: {}",
                i + 1,
                one.len(),
                many.len(),
                one.get(i).map_or("<none>", |s| s.as_str()),
                many.get(i).map_or("<none>", |s| s.as_str())
            ));
        }
        for p in SAME {
            if at(&s1, p) != at(&sn, p) {
                diffs.push(format!(
                    "{name}: stats {} is {} with 1 thread, {} with {n} ({chunk}-byte chunks)",
                    p.join("."),
                    at(&s1, p),
                    at(&sn, p)
                ));
            }
        }
        assert_eq!(at(&sn, &["memory", "shards"]), &Value::from(n as u64), "{name}: shards reported");
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    (one, s1)
}

#[test]
fn testbed_captures_do_not_depend_on_threads() {
    let root = corpus::workspace_root();
    let pcaps = root.join("pcaps");
    let config = pinwatch::config::Config::load(&pcaps.join("testbed.toml")).expect("testbed config");
    let mut records = 0;
    for name in ["testbed-basic.pcap", "testbed-inspection.pcap", "testbed-fallback.pcap", "testbed-quic.pcap"] {
        let opts = Options { config: config.clone(), ..Options::default() };
        let (lines, _) = compare(name, &[Input::File(pcaps.join(name))], &opts);
        records += lines.len();
    }
    // The fallback capture with its device feed: enrichment and the AN1725
    // join run in the output stage, in the same order.
    let opts = Options { config, feeds: vec![pcaps.join("testbed-fallback.feed.jsonl")], ..Options::default() };
    let (lines, _) = compare("testbed-fallback + feed", &[Input::File(pcaps.join("testbed-fallback.pcap"))], &opts);
    assert!(lines.iter().any(|l| l.contains("\"signature_id\":1725005")), "the AN1725 alert is among the compared records");
    // All four testbed captures as one merged replay.
    let all: Vec<Input> = ["testbed-basic.pcap", "testbed-inspection.pcap", "testbed-fallback.pcap", "testbed-quic.pcap"]
        .iter()
        .map(|n| Input::File(pcaps.join(n)))
        .collect();
    compare("all testbed captures merged", &all, &Options::default());
    assert!(records > 60, "compared {records} records");
}

#[test]
fn corpus_captures_do_not_depend_on_threads() {
    let Some(dir) = corpus::root() else { return };
    let files = corpus::all_capture_files(&dir);
    assert!(files.len() > 300, "corpus has {} captures", files.len());
    let (mut records, mut bypassed) = (0usize, 0u64);
    for f in &files {
        let rel = corpus::rel_path(&dir, f);
        let (lines, stats) = compare(&rel, &[Input::File(f.clone())], &Options::default());
        records += lines.len();
        bypassed += at(&stats, &["flow", "bypassed_flows"]).as_u64().unwrap_or(0);
    }
    eprintln!("{} captures, {records} records identical with 1, 2 and 3 threads; {bypassed} flows bypassed", files.len());
    assert!(records > 1000, "compared {records} records");
    assert!(bypassed > 0, "some corpus flows reach early bypass");
}

#[test]
fn stats_counters_are_sums_over_shards() {
    let pcaps = corpus::workspace_root().join("pcaps");
    let input = [Input::File(pcaps.join("testbed-basic.pcap"))];
    let (_, s1) = run(&input, &Options::default(), 1);
    let (_, s2) = run(&input, &Options::default(), 2);
    assert_eq!(at(&s1, &["memory", "shards"]), 1);
    assert_eq!(at(&s2, &["memory", "shards"]), 2);
    // A sum of per-shard peaks is at least the single table's peak.
    assert!(at(&s2, &["memory", "flows_max"]).as_u64() >= at(&s1, &["memory", "flows_max"]).as_u64());
    assert!(Path::new(&pcaps).is_dir());
}

/// A pcap record: its 16-byte header and its frame.
type Record = ([u8; 16], Vec<u8>);

/// A testbed capture (`pcaps/NAME`): its bytes and its records.
fn testbed(name: &str) -> (Vec<u8>, Vec<Record>) {
    let bytes = std::fs::read(corpus::workspace_root().join("pcaps").join(name)).expect("testbed capture");
    let records = pcap_records(&bytes);
    (bytes, records)
}

/// Write a capture a test made to `NAME` in this process's temp folder.
fn temp_capture(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pinwatch-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write capture");
    path
}

/// The records of a classic little-endian pcap: (header, frame) pairs.
fn pcap_records(bytes: &[u8]) -> Vec<Record> {
    let p = pinwatch_testkit::pcap::Pcap::parse(bytes).expect("a classic pcap");
    assert!(p.little_endian, "a little-endian microsecond pcap");
    p.records.into_iter().map(|r| (r.header, r.frame)).collect()
}

/// One record's bytes (header and frame), to splice into a capture.
fn record(sec: u32, usec: u32, frame: &[u8]) -> Vec<u8> {
    let mut w = pinwatch_testkit::pcap::Writer(Vec::new());
    w.record(sec, usec, frame);
    w.0
}

/// An Ethernet/IPv4/TCP frame from 192.0.2.9:40000 to 192.0.2.10:9999.
fn frame_with(payload: &[u8]) -> Vec<u8> {
    use pinwatch_testkit::frames::{tcp_v4, ACK, PSH};
    tcp_v4([192, 0, 2, 9].into(), 40000, [192, 0, 2, 10].into(), 9999, 1, PSH | ACK, payload)
}

/// Reading a pcap in chunks guesses where each chunk's first record
/// starts and trusts a guess only when the reader of the chunk before lands
/// on it. A capture that carries a capture file in a packet's payload fools
/// the guess, and one with a bad timestamp far in the future makes a
/// thread's clock shortcut invalid: with chunk boundaries swept across the
/// file, the records must still be those of one thread, and the wrong
/// guesses must have been caught (counted) rather than believed.
#[test]
fn chunked_reading_survives_false_starts_and_clock_jumps() {
    let pcaps = corpus::workspace_root().join("pcaps");
    let (original, records) = testbed("testbed-fallback.pcap");
    assert!(records.len() > 40, "{} records", records.len());
    let sec = |h: &[u8; 16]| u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    // A payload that is a run of pcap records (a capture being downloaded).
    let mut inner = Vec::new();
    for i in 0..40u32 {
        inner.extend(record(sec(&records[3].0), i, &[0x11; 60]));
    }
    let mut bytes = original[..24].to_vec();
    let mut inner_at = 0;
    for (i, (h, f)) in records.iter().enumerate() {
        bytes.extend(h);
        bytes.extend(f);
        if i == 3 {
            inner_at = bytes.len() + 16 + 54;
            bytes.extend(record(sec(h), 0, &frame_with(&inner)));
        }
        if i == 20 {
            // Three hours ahead, once: not believed, counted as a jump.
            bytes.extend(record(sec(h) + 3 * 3600, 0, &frame_with(b"late")));
        }
        if i == records.len() - 5 {
            // Five hours ahead, twice: believed, every open flow times out.
            bytes.extend(record(sec(h) + 5 * 3600, 0, &frame_with(b"jump")));
            bytes.extend(record(sec(h) + 5 * 3600, 1, &frame_with(b"jump")));
        }
    }
    let path = temp_capture("fooled.pcap", &bytes);
    let input = [Input::File(path.clone())];
    let config = pinwatch::config::Config::load(&pcaps.join("testbed.toml")).expect("testbed config");
    let opts = Options { config, ..Options::default() };
    // Chunk sizes that put the second chunk's guess inside the embedded
    // capture, and a sweep that puts boundaries everywhere else.
    let mut runs: Vec<(usize, usize, bool)> = (0..8).map(|d| (2, inner_at - 24 + d * 76, d % 2 == 0)).collect();
    runs.extend((300..6000).step_by(487).flat_map(|c| [(2, c, false), (3, c, true)]));
    let (lines, s1) = compare_with("testbed-fallback with a capture inside", &input, &opts, &runs);
    assert!(lines.len() > 10, "{} records", lines.len());
    assert_eq!(at(&s1, &["capture", "timestamp_jumps"]), 2, "one unconfirmed jump, one confirmed (counted when first seen)");
    let mut rejected = 0;
    for n in [2, 3] {
        for d in 0..8 {
            let opts = Options { chunk_bytes: inner_at - 24 + d * 76, ..opts.clone() };
            let (_, s) = run(&input, &opts, n);
            rejected += at(&s, &["capture", "chunk_starts_rejected"]).as_u64().unwrap_or(0);
            assert_eq!(at(&s, &["capture", "timestamp_jumps"]), at(&s1, &["capture", "timestamp_jumps"]));
        }
    }
    assert!(rejected > 0, "a chunk start guessed inside the embedded capture was caught");
    let _ = std::fs::remove_file(&path);
}

/// A capture cut short, and one with a corrupt record in the middle: every
/// thread count and chunk size stops at the same record, reports the same
/// error and the same sessions before it.
#[test]
fn chunked_reading_stops_at_the_same_bad_record() {
    let (original, records) = testbed("testbed-basic.pcap");
    let mut offsets = Vec::new();
    let mut pos = 24;
    for (_, f) in &records {
        offsets.push(pos);
        pos += 16 + f.len();
    }
    // Cut inside a record two thirds in; and a record two thirds in that
    // claims 16 MB (corrupt), with the rest of the file after it.
    let mid = offsets[offsets.len() * 2 / 3];
    let cut = original[..mid + 40].to_vec();
    let mut corrupt = original.clone();
    corrupt[mid + 8..mid + 12].copy_from_slice(&(16u32 << 20).to_le_bytes());
    let runs: Vec<(usize, usize, bool)> = [0usize, 700, 1500, 4096, 20000].iter().flat_map(|&c| [(2, c, false), (3, c, true)]).collect();
    for (name, bytes) in [("cut.pcap", cut), ("corrupt.pcap", corrupt)] {
        let path = temp_capture(name, &bytes);
        let (lines, stats) = compare_with(name, &[Input::File(path.clone())], &Options::default(), &runs);
        let errors = at(&stats, &["capture", "error_messages"]).as_array().cloned().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{name}: one error: {errors:?}");
        assert!(
            errors[0].as_str().is_some_and(|e| e.contains(&format!("byte {mid}"))),
            "{name}: the error names the record's offset: {errors:?}"
        );
        assert!(!lines.is_empty(), "{name}: the sessions before the bad record are reported");
        let _ = std::fs::remove_file(&path);
    }
}

/// A capture of 300,000 empty records (16 bytes each) between real ones:
/// the chunks of tiny records are cut at their packet limit, and the
/// records and counters are still those of one thread.
#[test]
fn chunks_of_tiny_records_are_cut_short_and_lose_nothing() {
    let (original, records) = testbed("testbed-basic.pcap");
    let sec = u32::from_le_bytes(records[0].0[0..4].try_into().expect("4 bytes"));
    let mut bytes = original[..24].to_vec();
    for (i, (h, f)) in records.iter().enumerate() {
        bytes.extend(h);
        bytes.extend(f);
        if i == 2 {
            for k in 0..300_000u32 {
                bytes.extend(record(sec, k % 1_000_000, &[]));
            }
        }
    }
    let path = temp_capture("tiny.pcap", &bytes);
    let input = [Input::File(path.clone())];
    // 24 MiB a thread per round, in chunks of 3 MiB (sharded.rs,
    // CHUNKS_PER_THREAD): the first holds more than the packet limit (2 MiB
    // of empty records), so it is cut and the second chunk's read is wasted.
    let (lines, s1) = compare_with("tiny records", &input, &Options::default(), &[(2, 0, false), (3, 0, true), (2, 24 << 20, true)]);
    assert!(!lines.is_empty(), "the real sessions are reported");
    assert!(at(&s1, &["capture", "packets"]).as_u64() > Some(300_000));
    let (_, s2) = run(&input, &Options { chunk_bytes: 24 << 20, ..Options::default() }, 2);
    assert!(at(&s2, &["capture", "chunk_starts_rejected"]).as_u64() >= Some(1), "a chunk was cut at its packet limit");
    let _ = std::fs::remove_file(&path);
}

/// `records` with their times moved by `shift_us` (which may be negative).
fn shifted(records: &[Record], shift_us: i64) -> Vec<Record> {
    records
        .iter()
        .map(|(h, f)| {
            let sec = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
            let usec = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
            let t = (i64::from(sec) * 1_000_000 + i64::from(usec) + shift_us).max(0);
            let mut h = *h;
            h[0..4].copy_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
            h[4..8].copy_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
            (h, f.clone())
        })
        .collect()
}

fn capture_of(header: &[u8], records: &[Record]) -> Vec<u8> {
    let mut bytes = header[..24].to_vec();
    for (h, f) in records {
        bytes.extend(h);
        bytes.extend(f);
    }
    bytes
}

fn time_us(r: &Record) -> i64 {
    let sec = u32::from_le_bytes(r.0[0..4].try_into().expect("4 bytes"));
    let usec = u32::from_le_bytes(r.0[4..8].try_into().expect("4 bytes"));
    i64::from(sec) * 1_000_000 + i64::from(usec)
}

/// Captures whose timestamps go backwards (files merged by concatenation,
/// reordered packets): records, their order and the counters are those of
/// one thread, for every thread count and chunk size, run after run.
#[test]
fn timestamps_going_backwards_do_not_depend_on_threads() {
    let (basic_bytes, basic) = testbed("testbed-basic.pcap");
    let (_, fallback) = testbed("testbed-fallback.pcap");
    let (_, inspection) = testbed("testbed-inspection.pcap");
    let span = |r: &[Record]| time_us(r.last().expect("records")) - time_us(&r[0]);
    let start = time_us(&basic[0]);
    let mut captures: Vec<(&str, Vec<Record>)> = Vec::new();
    // Concatenated: the second file starts halfway through the first, and
    // the third 40 s before the second ends (linger, idle timeouts and a
    // closed tuple's memory all see time go back).
    let mut cat = basic.clone();
    cat.extend(shifted(&fallback, start + span(&basic) / 2 - time_us(&fallback[0])));
    cat.extend(shifted(&inspection, start + span(&basic) / 2 + span(&fallback) - 40_000_000 - time_us(&inspection[0])));
    captures.push(("concatenated", cat.clone()));
    // Blocks of 7 packets in reverse order: time goes back by a few ms,
    // segments come out of order, SYN-ACKs before SYNs.
    let mut blocks: Vec<Record> = Vec::new();
    for b in cat.chunks(7) {
        blocks.extend(b.iter().rev().cloned());
    }
    captures.push(("blocks reversed", blocks));
    // Everything interleaved with a copy from 10 minutes earlier, and the
    // second half two hours back (a confirmed backward jump): flows cut by
    // the idle timeout on one side of the jump, revived mid-stream on the
    // other.
    let mut mixed: Vec<Record> = Vec::new();
    let early = shifted(&cat, -600_000_000);
    for (a, b) in cat.iter().zip(&early) {
        mixed.push(a.clone());
        mixed.push(b.clone());
    }
    let half = mixed.len() / 2;
    let back = shifted(&mixed[half..], -7_200_000_000);
    mixed.truncate(half);
    mixed.extend(back);
    captures.push(("interleaved with an earlier copy, then two hours back", mixed));
    let runs: Vec<(usize, usize, bool)> = [0usize, 1500, 4096, 20_000].iter().flat_map(|&c| [(2, c, false), (3, c, true)]).collect();
    for (name, records) in &captures {
        let path = temp_capture(&format!("{}.pcap", name.replace(' ', "-")), &capture_of(&basic_bytes, records));
        let input = [Input::File(path.clone())];
        let (lines, _) = compare_with(name, &input, &Options::default(), &runs);
        assert!(lines.len() > 30, "{name}: {} records", lines.len());
        // Run after run (the thread a flow lands on changes every run).
        for _ in 0..3 {
            compare_with(name, &input, &Options::default(), &[(2, 0, false), (2, 3000, true)]);
        }
        // Several files merged by time (every thread walks them all).
        let half = records.len() / 2;
        let a = temp_capture(&format!("{}-a.pcap", name.replace(' ', "-")), &capture_of(&basic_bytes, &records[..half]));
        let b = temp_capture(&format!("{}-b.pcap", name.replace(' ', "-")), &capture_of(&basic_bytes, &records[half..]));
        compare_with(
            &format!("{name}, as two files"),
            &[Input::File(a.clone()), Input::File(b.clone())],
            &Options::default(),
            &[(2, 0, false), (3, 0, true)],
        );
        for p in [path, a, b] {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// More flows than `--max-flows`: which flows are evicted, when, and what
/// their records say, is the same with any thread count (the cap is not per
/// thread).
#[test]
fn a_flood_past_the_flow_cap_does_not_depend_on_threads() {
    let (basic_bytes, basic) = testbed("testbed-basic.pcap");
    // The first ClientHello of the capture, sent half-open from 3,000 ports.
    let (hello_hdr, hello) = basic
        .iter()
        .find(|(_, f)| payload(f).starts_with(&[0x16, 0x03]) && payload(f).get(5) == Some(&0x01))
        .cloned()
        .expect("a ClientHello");
    let t = tcp(&hello).expect("tcp");
    let t0 = time_us(&(hello_hdr, hello.clone()));
    let mut flood: Vec<Record> = Vec::new();
    let at_time = |f: Vec<u8>, t: i64| {
        let mut h = shifted(&[(hello_hdr, Vec::new())], t - t0).remove(0).0;
        h[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        (h, f)
    };
    for i in 0..3_000u32 {
        let port = (10_000 + i) as u16;
        let mut syn = hello.clone();
        syn[t.tcp + 13] = 0x02;
        let syn = rewrite(&syn, (t.sport, port), Some(t.seq.wrapping_sub(1)), Some(&[]));
        let h = rewrite(&hello, (t.sport, port), None, None);
        let at = t0 + i64::from(i) * 1_000;
        flood.push(at_time(syn, at));
        flood.push(at_time(h, at + 10));
        if i % 500 == 0 {
            // The real sessions in between, so that evictions hit them too.
            flood.extend(shifted(&basic, at - time_us(&basic[0])));
        }
    }
    let path = temp_capture("flood.pcap", &capture_of(&basic_bytes, &flood));
    let input = [Input::File(path.clone())];
    for max_flows in [50usize, 700] {
        let opts = Options { limits: pinwatch::flow::Limits { max_flows, ..Default::default() }, ..Options::default() };
        let (lines, s1) =
            compare_with(&format!("flood, --max-flows {max_flows}"), &input, &opts, &[(2, 0, false), (3, 1500, true), (2, 4096, true)]);
        let evicted = lines.iter().filter(|l| l.contains("\"close\":\"evicted\"")).count();
        assert!(evicted > 1000, "--max-flows {max_flows}: {evicted} evicted records");
        assert!(at(&s1, &["memory", "flows_max"]).as_u64() <= Some(max_flows as u64), "the cap holds: {s1}");
    }
    let _ = std::fs::remove_file(&path);
}
