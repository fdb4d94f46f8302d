//! Suricata's own expectations as an oracle for EVE parity.
//!
//! suricata-verify (in the shared corpus) states, test by test, the EVE
//! events Suricata must write for a capture: `checks: - filter: {count, match:
//! {event_type: tls, src_ip…, tls.version: "TLS 1.2", tls.sni: …}}`. Those
//! values were written by Suricata's authors, so they are independent of
//! pinwatch's code and of this crate's own oracle tables (`tests/src/oracle.rs`
//! names versions after docs/output.md). For every check that expects at
//! least one `tls` event, this test replays the capture and looks for a
//! pinwatch `tls` record of the same endpoints; every `tls.*` key of the
//! check that pinwatch writes too must hold the same value, in the same
//! form. Keys pinwatch does not write are counted and listed, not judged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_tests::corpus::{at_least, root};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// One `filter` of a test.yaml that expects `tls` events.
struct Check {
    test: String,
    pcap: PathBuf,
    /// The `match` map, keys as written (`tls.version`, `src_ip`).
    want: BTreeMap<String, String>,
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The checks of one test.yaml that expect at least one `tls` event.
fn checks(dir: &Path) -> Vec<Check> {
    let Ok(text) = std::fs::read_to_string(dir.join("test.yaml")) else { return Vec::new() };
    let Ok(docs) = YamlLoader::load_from_str(&text) else { return Vec::new() };
    let Some(doc) = docs.first() else { return Vec::new() };
    let pcap = match doc["pcap"].as_str() {
        Some(p) => dir.join(p),
        None => dir.join("input.pcap"),
    };
    if !pcap.is_file() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in doc["checks"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
        let f = &c["filter"];
        let count = f["count"].as_i64().unwrap_or(1);
        let Some(m) = f["match"].as_hash() else { continue };
        let want: BTreeMap<String, String> = m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?))).collect();
        if count < 1 || want.get("event_type").map(String::as_str) != Some("tls") {
            continue;
        }
        out.push(Check { test: dir.file_name().unwrap_or_default().to_string_lossy().into_owned(), pcap: pcap.clone(), want });
    }
    out
}

fn tls_records(pcap: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let opts = Options { progress: false, stats: false, threads: 1, ..Default::default() };
    let _ = replay(&[Input::File(pcap.to_path_buf())], &opts, &mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event_type"] == "tls")
        .collect()
}

/// A record's value at a dotted key (`tls.client_alpns[0]` indexes a
/// list), as the YAML scalar would print it.
fn value_at(v: &Value, dotted: &str) -> Option<String> {
    let mut x = v;
    for part in dotted.split('.') {
        match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, i)) => x = x.get(name)?.get(i.parse::<usize>().ok()?)?,
            None => x = x.get(part)?,
        }
    }
    match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Differences that were looked at: (test, key, why). Each is still
/// compared; a listed one is reported instead of failing the test.
const KNOWN: [(&str, &str, &str); 2] = [
    (
        "bug-5713-02-ja4",
        "tls.ja4",
        "FoxIO's own JA4 implementations (python ja4.py and rust ja4, corpus oracles ja4py and ja4rs) give c39ab67fec8e for this hello, as pinwatch does; Suricata's differs",
    ),
    (
        "tcp-fastopen-10-syn-data-ignore",
        "tls.version",
        "the test configures Suricata to ignore data on SYNs (TCP Fast Open); pinwatch reads the hello carried on the SYN and sees the ServerHello's TLS 1.3",
    ),
];

const ENDPOINT_KEYS: [&str; 4] = ["src_ip", "src_port", "dest_ip", "dest_port"];

#[test]
fn pinwatch_agrees_with_suricata_verify_on_every_shared_tls_key() {
    let Some(corpus) = root() else { return };
    let tests = corpus.join("suricata-verify").join("tests");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&tests).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    dirs.sort();
    let all: Vec<Check> = dirs.iter().flat_map(|d| checks(d)).collect();
    at_least(all.len(), 20, "suricata-verify checks that expect tls events");

    let mut cache: BTreeMap<PathBuf, Vec<Value>> = BTreeMap::new();
    let (mut compared, mut matched) = (0usize, 0usize);
    let mut per_key: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // key -> (compared, not written)
    let mut mismatches = Vec::new();
    let mut unmatched = Vec::new();
    for c in &all {
        let recs = cache.entry(c.pcap.clone()).or_insert_with(|| tls_records(&c.pcap));
        let same_endpoints = |r: &&Value| ENDPOINT_KEYS.iter().all(|k| c.want.get(*k).is_none_or(|w| value_at(r, k).as_deref() == Some(w)));
        let candidates: Vec<&Value> = recs.iter().filter(same_endpoints).collect();
        if candidates.is_empty() {
            unmatched.push(format!(
                "{}: no tls record for {:?}",
                c.test,
                ENDPOINT_KEYS.map(|k| c.want.get(k).cloned().unwrap_or_default())
            ));
            continue;
        }
        matched += 1;
        for (k, want) in c.want.iter().filter(|(k, _)| k.starts_with("tls.")) {
            let got: Vec<Option<String>> = candidates.iter().map(|r| value_at(r, k)).collect();
            let e = per_key.entry(k.clone()).or_default();
            if got.iter().all(Option::is_none) {
                e.1 += 1;
                continue;
            }
            e.0 += 1;
            compared += 1;
            if !got.iter().any(|g| g.as_deref() == Some(want.as_str())) {
                let line = format!("{}: {k}: suricata-verify {want:?}, pinwatch {:?}", c.test, got);
                match KNOWN.iter().find(|(t, key, _)| *t == c.test && key == k) {
                    Some((_, _, why)) => println!("  known: {line} ({why})"),
                    None => mismatches.push(line),
                }
            }
        }
    }
    println!("{} checks expecting tls events, {matched} matched to a pinwatch record, {compared} values compared", all.len());
    for (k, (n, absent)) in &per_key {
        println!("  {k:<24} compared {n:>3}  not written by pinwatch {absent:>3}");
    }
    for u in &unmatched {
        println!("  unmatched: {u}");
    }
    at_least(compared, 40, "tls values compared with suricata-verify");
    for key in ["tls.version", "tls.sni", "tls.subject", "tls.issuerdn", "tls.fingerprint", "tls.serial"] {
        assert!(per_key.get(key).is_some_and(|(n, _)| *n > 0), "{key} was never compared");
    }
    assert!(mismatches.is_empty(), "{} disagreements with suricata-verify:\n{}", mismatches.len(), mismatches.join("\n"));
    // Every tls session Suricata's tests expect, pinwatch logs too.
    assert!(unmatched.is_empty(), "{} expected tls events without a pinwatch record:\n{}", unmatched.len(), unmatched.join("\n"));
}
