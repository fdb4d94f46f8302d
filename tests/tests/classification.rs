//! Classification of the corpus's real failures (issue: inspection-aware
//! classification). The captures are public and labelled by their upstream
//! descriptions (see `shared/corpus/MANIFEST.md`, "Top picks (b)"):
//! - real client rejections must come out as `client_rejected` with the
//!   right class and alert;
//! - server-side failures and one-sided captures must never be called client
//!   rejections;
//! - and the whole corpus gets an outcome table, printed for the record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pinwatch::config::Config;
use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_tests::corpus::{all_capture_files, root};
use serde_json::Value;

/// The corpus, or `None` after a SKIPPED line (a failure under
/// `PINWATCH_CORPUS_REQUIRED=1`).
fn corpus() -> Option<PathBuf> {
    root()
}

fn run(path: &Path, cfg: Config) -> Vec<Value> {
    let mut out = Vec::new();
    let opts = Options { config: cfg, progress: false, stats: true, ..Default::default() };
    replay(&[Input::File(path.to_path_buf())], &opts, &mut out).expect("replay runs");
    String::from_utf8(out).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

fn tls(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["event_type"] == "tls").collect()
}

fn outcome(e: &Value) -> (String, String, String) {
    let f = &e["tls_failure"];
    (
        f["outcome"].as_str().unwrap_or("?").to_string(),
        f["class"].as_str().unwrap_or("-").to_string(),
        f["alert"].as_str().unwrap_or("-").to_string(),
    )
}

#[test]
fn cisco_umbrella_interception_rejected_by_client() {
    let Some(c) = corpus() else { return };
    // The inspection CA named by subject, as an operator who knows the product would.
    let cfg = Config::parse(
        "umbrella.toml",
        "[inspection]\nca_subjects = [\"O=Cisco, CN=Cisco Umbrella Secondary SubCA ash-SG\"]\n",
        Path::new("."),
    )
    .expect("config");
    let lines = run(&c.join("mercury/unit_tests/pcaps/quic_reordered_frames.pcap"), cfg);
    let umbrella: Vec<&Value> = tls(&lines).into_iter().filter(|e| e["tls"]["sni"] == "ext.surfshark.com").collect();
    assert_eq!(umbrella.len(), 2, "two sessions to the Umbrella block page");
    for e in &umbrella {
        assert_eq!(outcome(e), ("client_rejected".into(), "A".into(), "certificate_unknown".into()));
        assert_eq!(e["path"]["kind"], "intercepted", "{}", e["path"]);
    }
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["event_type"] == "alert" && l["alert"]["signature_id"] == 1_725_001).collect();
    assert_eq!(alerts.len(), 2, "one inspection-failure finding per rejected session");
    // The Google sessions in the same capture are not rejections of anything:
    // those that closed before the server's flight arrived are `abandoned`.
    for e in tls(&lines).into_iter().filter(|e| e["tls"]["sni"] == "www.google.com") {
        let (o, class, _) = outcome(e);
        assert!(o != "client_rejected" || class == "C", "{}: {o}/{class}", e["flow_id"]);
    }
}

#[test]
fn curveball_forged_chain_rejected_by_client() {
    let Some(c) = corpus() else { return };
    let lines = run(&c.join("arkime/tests/pcap/badcurveball.pcap"), Config::default());
    let t = tls(&lines);
    assert_eq!(t.len(), 1);
    assert_eq!(outcome(t[0]), ("client_rejected".into(), "A".into(), "certificate_unknown".into()));
}

#[test]
fn firefox_draft16_unknown_ca_then_retry() {
    let Some(c) = corpus() else { return };
    let lines = run(&c.join("zeek/testing/btest/Traces/tls/tls13draft16-ff52.a01.pcap"), Config::default());
    let got: Vec<(String, String, String)> = tls(&lines).into_iter().map(outcome).collect();
    assert_eq!(got, vec![("client_rejected".into(), "A".into(), "unknown_ca".into()), ("established".into(), "-".into(), "-".into())]);
}

#[test]
fn server_failures_and_one_sided_captures_are_not_client_rejections() {
    let Some(c) = corpus() else { return };
    let cases: [(&str, &str); 9] = [
        ("zeek/testing/btest/Traces/tls/tls-1.2-handshake-failure.pcap", "server_rejected"),
        ("zeek/testing/btest/Traces/tls/certificate-request-failed.pcap", "server_rejected"),
        ("suricata-verify/tests/tls-extra-alert/input.pcap", "server_rejected"),
        ("ndpi/tests/cfgs/default/pcap/tls_alert.pcap", "not_client"),
        ("zeek/testing/btest/Traces/tls/tls13draft16-chrome55.0.2879.0-canary-aborted.pcap", "not_client"),
        ("zeek/testing/btest/Traces/tls/tls13draft16-ff52.a01-aborted.pcap", "not_client"),
        ("ndpi/tests/cfgs/default/pcap/tls_1.2_unidirectional_client.pcapng", "incomplete"),
        ("ndpi/tests/cfgs/default/pcap/tls_1.2_unidirectional_client_no_cert.pcapng", "incomplete"),
        ("ndpi/tests/cfgs/default/pcap/tls_1.3_unidirectional_client.pcapng", "incomplete"),
    ];
    let mut problems = Vec::new();
    for (rel, want) in cases {
        let lines = run(&c.join(rel), Config::default());
        let t = tls(&lines);
        if t.is_empty() {
            problems.push(format!("{rel}: no tls record"));
        }
        for e in t {
            let (o, class, alert) = outcome(e);
            let ok = match want {
                "not_client" => o != "client_rejected",
                w => o == w,
            };
            if !ok {
                problems.push(format!("{rel}: {o}/{class}/{alert}, want {want}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every capture of the corpus, classified: prints the outcome table and
/// asserts the invariants that hold whatever the labels: a session with a
/// side missing is never a rejection, and every client rejection names its
/// class.
#[test]
fn corpus_outcome_table() {
    let Some(c) = corpus() else { return };
    let mut table: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in all_capture_files(&c) {
        let lines = run(&path, Config::default());
        for e in tls(&lines) {
            let (o, class, _) = outcome(e);
            *table.entry(format!("{o}/{class}")).or_default() += 1;
            let missing = e["handshake"]["missing"].as_str().unwrap_or("?");
            // A side with no packets is never judged; lost bytes allow only a
            // rejection whose deciding record was itself seen (a readable alert).
            let one_sided = missing == "client" || missing == "server";
            if one_sided && o != "incomplete" {
                problems.push(format!("{}: side {missing} missing but outcome {o}", path.display()));
            }
            if missing.ends_with("_bytes") && o == "client_rejected" && class != "A" {
                problems.push(format!("{}: {missing} lost but outcome {o}/{class}", path.display()));
            }
            if o == "server_rejected" && class != "-" {
                problems.push(format!("{}: a server rejection with client class {class}", path.display()));
            }
            if o == "client_rejected" && class == "-" {
                problems.push(format!("{}: client rejection without a class", path.display()));
            }
        }
    }
    println!("corpus outcomes (outcome/class: sessions):");
    for (k, v) in &table {
        println!("  {k:28} {v}");
    }
    assert!(table.values().sum::<u64>() > 800, "the corpus has more than 800 TLS sessions");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Google QUIC (CHLO tags): SNI, user agent and Suricata's CYU fingerprint,
/// checked against suricata-verify's quic-cyu expectation.
#[test]
fn google_quic_hello_sni_and_cyu() {
    let Some(c) = corpus() else { return };
    let lines = run(&c.join("suricata-verify/tests/quic-cyu/input.pcap"), Config::default());
    let q: Vec<&Value> = lines.iter().filter(|l| l["event_type"] == "quic").collect();
    assert!(!q.is_empty(), "a quic record");
    assert_eq!(q[0]["quic"]["version"], "Q046");
    assert_eq!(q[0]["quic"]["sni"], "accounts.google.com");
    assert_eq!(q[0]["quic"]["cyu"][0]["hash"], "a46560d4548108cf99308319b3b85346");
    assert_eq!(
        q[0]["quic"]["cyu"][0]["string"],
        "46,PAD-SNI-STK-VER-CCS-NONC-AEAD-UAID-SCID-TCID-PDMD-SMHL-ICSL-NONP-PUBS-MIDS-SCLS-KEXS-XLCT-CSCT-COPT-CCRT-IRTT-CFCW-SFCW"
    );
}
