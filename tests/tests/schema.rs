//! Every record of the testbed captures (`pcaps/*.pcap`, with
//! `pcaps/testbed.toml` or the capture's own `pcaps/<name>.toml`, and its
//! device feed where there is one) validates against pinwatch's schema
//! (`docs/eve-schema.json`) and, for the keys shared with Suricata,
//! against Suricata's (`../shared/peers/suricata/eve-schema.json`; when it
//! is absent the test prints SKIPPED for that half). The corpus run is
//! checked the same way in `tests/corpus.rs`.

mod schema_check;

use std::path::{Path, PathBuf};

use pinwatch::run::pipeline::{replay, Input, Options};
use schema_check::{check_output, Schemas};
use serde_json::json;

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

fn config_for(name: &str) -> pinwatch::config::Config {
    let own = format!("{name}.toml");
    let file = if pcaps_dir().join(&own).exists() { own } else { "testbed.toml".to_string() };
    let text = std::fs::read_to_string(pcaps_dir().join(&file)).expect("testbed config");
    pinwatch::config::Config::parse(&file, &text, &pcaps_dir()).expect("testbed config loads")
}

#[test]
fn every_testbed_record_validates() {
    let schemas = Schemas::load();
    let mut captures: Vec<PathBuf> = std::fs::read_dir(pcaps_dir())
        .expect("pcaps/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 6, "{captures:?}");
    let (mut records, mut problems, mut kinds, mut chains) = (0, Vec::new(), std::collections::BTreeSet::new(), 0);
    for pcap in &captures {
        let name = pcap.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let feed = pcaps_dir().join(format!("{name}.feed.jsonl"));
        let feeds = if feed.exists() { vec![feed] } else { Vec::new() };
        // With and without a sensor name: `host` is a shared key too.
        for sensor_name in [None, Some("sensor-1".to_string())] {
            let opts = Options {
                config: config_for(&name),
                progress: false,
                stats: true,
                feeds: feeds.clone(),
                sensor_name,
                ..Default::default()
            };
            let mut out = Vec::new();
            replay(&[Input::File(pcap.clone())], &opts, &mut out).expect("replay");
            for l in String::from_utf8_lossy(&out).lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                    kinds.insert(v["event_type"].as_str().unwrap_or("").to_string());
                    chains += check_chain(&v, &mut problems);
                }
            }
            records += check_output(&schemas, &name, &out, 50, &mut problems);
        }
    }
    println!(
        "{records} records of {} captures checked (Suricata's schema: {})",
        captures.len(),
        if schemas.has_suricata() { "yes" } else { "SKIPPED" }
    );
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["alert", "flow", "quic", "stats", "tls"], "every record kind is exercised");
    assert!(chains >= 10, "only {chains} certificates compared");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// `tls.chain` (base64 DER, Suricata's form) holds the certificates
/// `handshake.chain` describes: same count, and each DER's SHA-256 is the
/// `sha256` of the same entry. Returns the certificates compared.
fn check_chain(v: &serde_json::Value, problems: &mut Vec<String>) -> usize {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64: Vec<&str> = v["tls"]["chain"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let parsed = v["handshake"]["chain"].as_array().cloned().unwrap_or_default();
    if b64.len() != parsed.len() {
        problems.push(format!("flow {}: tls.chain has {} certificates, handshake.chain {}", v["flow_id"], b64.len(), parsed.len()));
        return 0;
    }
    for (der, p) in b64.iter().zip(&parsed) {
        let sha = base64::engine::general_purpose::STANDARD.decode(der).map(|d| hex::encode(sha2::Sha256::digest(&d)));
        if sha.as_deref().ok() != p["sha256"].as_str() {
            problems.push(format!("flow {}: a tls.chain entry is not the DER of handshake.chain's {}", v["flow_id"], p["sha256"]));
        }
    }
    b64.len()
}

/// The schemas catch what they are there for: an object chain, a
/// compressed IPv6 address, an old version string, a key of ours inside
/// `tls`.
#[test]
fn the_schemas_reject_the_old_forms() {
    let schemas = Schemas::load();
    let good = json!({
        "timestamp": "2026-08-21T09:14:03.512311+0000", "flow_id": 1, "event_type": "tls",
        "src_ip": "2001:0db8:0000:0000:0000:0000:0000:0001", "src_port": 5000, "dest_ip": "10.0.0.2", "dest_port": 443,
        "proto": "TCP", "app_proto": "tls", "community_id": "1:0oE+BBpugUV+SJKgbszJ/DbysK4=",
        "tls": {"version": "TLS 1.2", "chain": ["MIIB"]}, "handshake": {"history": "Cs"}, "flow": {"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 1, "bytes_toclient": 1, "start": "x", "end": "y"}
    });
    assert_eq!(schemas.check(&good), Vec::<String>::new());
    let mut objects = good.clone();
    objects["tls"]["chain"] = json!([{"subject": "CN=x"}]);
    assert!(!schemas.check(&objects).is_empty(), "chain objects");
    let mut v6 = good.clone();
    v6["src_ip"] = json!("2001:db8::1");
    assert!(!schemas.check(&v6).is_empty(), "compressed IPv6");
    let mut ours_in_tls = good.clone();
    ours_in_tls["tls"]["cipher_suite"] = json!("0x1301");
    assert!(!schemas.check(&ours_in_tls).is_empty(), "a pinwatch key inside tls");
}
