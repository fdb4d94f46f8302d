//! Late enrichment (live mode): device logs arrive in batches up to ~90
//! minutes late. The AN1725 alert is written at once with what is known,
//! and written again — same `alert_id`, higher `revision` — when a late
//! batch changes it. The testbed's fallback capture (pinned OkHttp and curl
//! clients rejecting the inspecting proxy, then going direct) with its feed:
//! the bindings and inventories are known at once, the app and device state
//! (observed 90 minutes after the fact) arrive after the sessions ended.

use std::collections::BTreeMap;

use pinwatch::capture::CaptureFile;
use pinwatch::flow::CloseKind;
use pinwatch::run::engine::{Engine, WriteOut};
use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_tests::corpus;
use serde_json::Value;

fn an1725(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["alert"]["signature_id"] == 1_725_005)
        .collect()
}

/// Final confidence per alert id (the highest revision wins).
fn finals(alerts: &[Value]) -> BTreeMap<String, (u64, String)> {
    let mut m: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for a in alerts {
        let id = a["an1725"]["alert_id"].as_str().unwrap_or_default().to_string();
        let rev = a["an1725"]["revision"].as_u64().unwrap_or(0);
        let conf = a["an1725"]["confidence"].as_str().unwrap_or_default().to_string();
        let e = m.entry(id).or_insert((0, String::new()));
        if rev > e.0 {
            *e = (rev, conf);
        }
    }
    m
}

#[test]
fn a_late_batch_revises_the_an1725_alert_under_the_same_id() {
    let pcaps = corpus::workspace_root().join("pcaps");
    let config = pinwatch::config::Config::load(&pcaps.join("testbed.toml")).expect("config");
    let feed_path = pcaps.join("testbed-fallback.feed.jsonl");
    let feed = std::fs::read_to_string(&feed_path).expect("feed");
    let lines: Vec<&str> = feed.lines().collect();
    let late = |l: &&str| l.contains("\"event_type\":\"app_state\"") || l.contains("\"event_type\":\"device_state\"");
    assert_eq!(lines.iter().filter(|l| late(l)).count(), 2, "the feed has the app and device state lines");

    // Everything known up front (replay): the reference verdicts.
    let mut reference = Vec::new();
    let opts = Options { config: config.clone(), feeds: vec![feed_path.clone()], ..Options::default() };
    replay(&[Input::File(pcaps.join("testbed-fallback.pcap"))], &opts, &mut reference).expect("replay");
    let want = finals(&an1725(&reference));
    assert!(want.values().any(|(_, c)| c == "high"), "the reference has a high-confidence alert: {want:?}");

    // Streaming: bindings and inventories first, packets, then the late batch.
    let opts = Options { config, ..Options::default() };
    let file = CaptureFile::open(&pcaps.join("testbed-fallback.pcap")).expect("capture");
    let mut engine = Engine::new(&opts, vec![file.name().to_string()]).expect("engine");
    engine.reporter.enable_streaming_feed(2 * 3600 * 1_000_000_000);
    let mut out = Vec::new();
    for l in lines.iter().filter(|l| !late(l)) {
        engine.reporter.handle_feed_line(l);
    }
    engine.reporter.apply_feed(&mut out);
    for p in file.packets().flatten() {
        engine.packet(&p, &mut out);
    }
    engine.finish(CloseKind::Eof, &mut out);
    let before = an1725(&out);
    let at_once = finals(&before);
    assert!(!before.is_empty(), "AN1725 alerts are written at once, before the late batch");
    assert!(!at_once.values().any(|(_, c)| c == "high"), "without app and device state nothing is high yet: {at_once:?}");
    let n_before = out.len();
    for l in lines.iter().filter(|l| late(l)) {
        engine.reporter.handle_feed_line(l);
    }
    engine.reporter.apply_feed(&mut out);
    let updates = an1725(&out[n_before..]);
    assert!(!updates.is_empty(), "the late batch wrote updated alerts");
    for u in &updates {
        let id = u["an1725"]["alert_id"].as_str().expect("alert id");
        let earlier = before.iter().filter(|a| a["an1725"]["alert_id"] == id).count();
        assert!(earlier > 0, "an update keeps an alert id written before: {id}");
        let max_before = before.iter().filter(|a| a["an1725"]["alert_id"] == id).filter_map(|a| a["an1725"]["revision"].as_u64()).max();
        assert!(u["an1725"]["revision"].as_u64() > max_before, "higher revision: {u}");
        // The reasons point at the flows and at the feed lines, the late
        // ones included (the device state says locked).
        let reasons = u["an1725"]["reasons"].to_string();
        assert!(reasons.contains("flow:"), "{reasons}");
        assert!(reasons.contains("feed_lines:") && reasons.contains("device_locked"), "{reasons}");
    }
    // After the late batch, every alert ends where the up-front run ends.
    let got = finals(&an1725(&out));
    let conf = |m: &BTreeMap<String, (u64, String)>| m.values().map(|(_, c)| c.clone()).collect::<Vec<_>>();
    let (mut g, mut w) = (conf(&got), conf(&want));
    g.sort();
    w.sort();
    assert_eq!(g, w, "final confidences: streaming {got:?} vs up front {want:?}");
    assert_eq!(engine.stats().enrichment.map(|e| e.feed.malformed), Some(1), "the bad feed line is counted");
    assert!(engine.reporter.stats.late_enrichment_updates >= updates.len() as u64);
}

/// A bad line that arrives alone, with no good line to apply with it, is
/// counted at once (it used to wait for the next good line, so a live run
/// that stopped first never reported it).
#[test]
fn a_lone_bad_feed_line_is_counted_at_once() {
    let mut engine = Engine::new(&Options::default(), Vec::new()).expect("engine");
    engine.reporter.enable_streaming_feed(3600 * 1_000_000_000);
    let mut out = Vec::new();
    let binding = r#"{"schema_version":1,"event_type":"ip_binding","event_time":"2026-01-05T09:00:00Z","observed_time":"2026-01-05T09:00:00Z","source":{"kind":"dhcp"},"device":{"id":"d1"},"action":"assign","ip":"10.0.0.7","network":{"kind":"wifi","context":"lab"},"valid_from":"2026-01-05T09:00:00Z","valid_until":"2026-01-06T09:00:00Z","confidence":"dhcp"}"#;
    engine.reporter.handle_feed_line(binding);
    engine.reporter.apply_feed(&mut out);
    let feed = |e: &Engine| e.stats().enrichment.map(|s| s.feed).expect("enrichment stats");
    assert_eq!(feed(&engine).malformed, 0);
    engine.reporter.handle_feed_line("not json, must be counted");
    assert_eq!(engine.reporter.feed_pending(), 0, "nothing to apply");
    let f = feed(&engine);
    assert_eq!(f.malformed, 1, "{f:?}");
    assert!(format!("{:?}", f.problems).contains("line 2"), "the problem names its line: {f:?}");
}
