//! The output does not depend on the thread count: every corpus capture and
//! every testbed capture, replayed with 1, 2 and 3 flow-table threads, gives
//! the same records in the same order (the stats record aside, whose
//! high-water marks are per-shard sums; its counters must agree).

use std::path::Path;

use pinwatch::pipeline::{replay, Input, Options};
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
    &["decoder", "tcp"],
    &["decoder", "udp"],
    &["flow", "flows_created"],
    &["flow", "flows_ended"],
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

/// Compare 1 thread against 2 and 3; a description of each difference.
fn compare(name: &str, inputs: &[Input], opts: &Options) -> (Vec<String>, Value) {
    let (one, s1) = run(inputs, opts, 1);
    let mut diffs = Vec::new();
    for n in [2, 3] {
        let (many, sn) = run(inputs, opts, n);
        if one != many {
            let i = one.iter().zip(&many).position(|(a, b)| a != b).unwrap_or(one.len().min(many.len()));
            diffs.push(format!(
                "{name}: {n} threads differ from 1 at line {} ({} vs {} lines)\n  1: {}\n  {n}: {}",
                i + 1,
                one.len(),
                many.len(),
                one.get(i).map_or("<none>", |s| s.as_str()),
                many.get(i).map_or("<none>", |s| s.as_str())
            ));
        }
        for p in SAME {
            if at(&s1, p) != at(&sn, p) {
                diffs.push(format!("{name}: stats {} is {} with 1 thread, {} with {n}", p.join("."), at(&s1, p), at(&sn, p)));
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
    let dir = match corpus::corpus_dir() {
        Ok(d) => d,
        Err(looked) => {
            eprintln!("SKIPPED: corpus not found at {} (CI has it)", looked.display());
            return;
        }
    };
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
