//! `--format ocsf` output against OCSF 1.4.0: every Detection Finding the
//! testbed captures (`pcaps/`) and the shared corpus (`PINWATCH_CORPUS`,
//! default `../shared/corpus`) give validates against the vendored JSON
//! Schema of the class (`tests/ocsf/detection_finding-1.4.0.schema.json`,
//! made by `scripts/ocsf-schema.sh` from the PyPI package
//! `ocsf-json-schema`; see `tests/ocsf/README.md`), every enumerated id
//! agrees with its caption in the OCSF 1.4.0 dictionary
//! (`tests/ocsf/detection_finding-1.4.0.captions.json`), `type_uid` is
//! `class_uid * 100 + activity_id`, and the revisions of a finding are one
//! Create followed by Updates of the same `finding_info.uid`.
//!
//! Without the corpus the corpus test prints `SKIPPED: ...` and passes,
//! unless `PINWATCH_CORPUS_REQUIRED=1` (set by `.ci/run`), which makes it fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pinwatch::run::pipeline::{replay, Input, Options};
use serde_json::{json, Value};

const VERSION: &str = "1.4.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The OCSF 1.4.0 Detection Finding schema and its dictionary captions.
struct Ocsf {
    validator: jsonschema::Validator,
    schema: Value,
    captions: Value,
}

impl Ocsf {
    fn load() -> Ocsf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ocsf");
        let schema = load(&dir.join(format!("detection_finding-{VERSION}.schema.json")));
        let captions = load(&dir.join(format!("detection_finding-{VERSION}.captions.json")));
        let validator = jsonschema::validator_for(&schema).expect("the OCSF schema compiles");
        Ocsf { validator, schema, captions }
    }

    /// Every problem of one finding (empty: valid).
    fn check(&self, f: &Value) -> Vec<String> {
        let mut out: Vec<String> = self.validator.iter_errors(f).map(|e| format!("schema: {e} at {}", e.instance_path)).collect();
        if f["metadata"]["version"] != VERSION {
            out.push(format!("metadata.version is {}, not {VERSION}", f["metadata"]["version"]));
        }
        let (class, activity, type_uid) = (f["class_uid"].as_u64(), f["activity_id"].as_u64(), f["type_uid"].as_u64());
        if let (Some(c), Some(a)) = (class, activity) {
            if type_uid != Some(c * 100 + a) {
                out.push(format!("type_uid {type_uid:?} is not class_uid {c} * 100 + activity_id {a}"));
            }
        }
        self.check_captions(f, &self.captions["class"]["captions"], &self.schema, "", &mut out);
        out
    }

    /// Walk `v` along `node` (a schema node): each `X_id` with an enum in
    /// `caps` must have its sibling (`X`, `activity_name`...) equal to the
    /// dictionary's caption for that id.
    fn check_captions(&self, v: &Value, caps: &Value, node: &Value, at: &str, out: &mut Vec<String>) {
        let node = self.resolve(node);
        if let Value::Object(m) = v {
            if let Some(c) = caps.as_object() {
                for (attr, spec) in c {
                    let (Some(id), Some(sibling)) = (m.get(attr).and_then(Value::as_u64), spec["sibling"].as_str()) else {
                        continue;
                    };
                    let want = &spec["enum"][id.to_string()];
                    match m.get(sibling) {
                        // 99 Other: the sibling names the source's own value.
                        Some(_) if id == 99 => {}
                        Some(got) if want.is_string() && got != want => {
                            out.push(format!("{at}/{sibling} is {got} where {attr} {id} is {want}"))
                        }
                        None if want.is_string() && id != 0 && id != 99 => out.push(format!("{at}/{attr} {id} has no {sibling} ({want})")),
                        _ => {}
                    }
                }
            }
            for (k, child) in m {
                let Some(sub) = node.get("properties").and_then(|p| p.get(k)) else {
                    continue;
                };
                let sub_node = self.resolve(sub);
                let item =
                    if sub_node.get("type") == Some(&json!("array")) { sub_node.get("items").map(|i| self.resolve(i)) } else { None };
                let target = item.unwrap_or(sub_node);
                let def = self.def_name(sub).or_else(|| sub_node.get("items").and_then(|i| self.def_name(i)));
                let sub_caps = def.map(|d| self.captions["objects"][d].clone()).unwrap_or(Value::Null);
                match child {
                    Value::Array(a) => {
                        for (i, x) in a.iter().enumerate() {
                            self.check_captions(x, &sub_caps, target, &format!("{at}/{k}/{i}"), out);
                        }
                    }
                    _ => self.check_captions(child, &sub_caps, target, &format!("{at}/{k}"), out),
                }
            }
        }
    }

    fn def_name<'a>(&self, node: &'a Value) -> Option<&'a str> {
        node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/"))
    }

    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(d) => &self.schema["$defs"][d],
            None => node,
        }
    }
}

/// Check a run's OCSF lines; returns the findings, keyed by uid in order.
fn check_run(ocsf: &Ocsf, label: &str, out: &[u8], problems: &mut Vec<String>) -> BTreeMap<String, Vec<u64>> {
    let mut by_uid: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (n, line) in String::from_utf8_lossy(out).lines().enumerate() {
        let f: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{label}:{}: not JSON: {e}", n + 1));
                continue;
            }
        };
        for p in ocsf.check(&f) {
            if problems.len() < 50 {
                problems.push(format!("{label}:{}: {p}", n + 1));
            }
        }
        let uid = f["finding_info"]["uid"].as_str().unwrap_or("").to_string();
        by_uid.entry(uid).or_default().push(f["activity_id"].as_u64().unwrap_or(0));
    }
    // One Create, then Updates of the same finding.
    for (uid, acts) in &by_uid {
        if acts.first() != Some(&1) || acts.iter().skip(1).any(|a| *a != 2) {
            problems.push(format!("{label}: finding {uid} has activities {acts:?}, not one Create then Updates"));
        }
    }
    by_uid
}

fn pcaps_dir() -> PathBuf {
    root().join("pcaps")
}

fn config_for(name: &str) -> pinwatch::config::Config {
    let own = format!("{name}.toml");
    let file = if pcaps_dir().join(&own).exists() { own } else { "testbed.toml".to_string() };
    let text = std::fs::read_to_string(pcaps_dir().join(&file)).expect("testbed config");
    pinwatch::config::Config::parse(&file, &text, &pcaps_dir()).expect("testbed config loads")
}

fn run(pcap: &Path, config: pinwatch::config::Config, feeds: Vec<PathBuf>, ocsf: bool) -> Vec<u8> {
    let opts = Options { config, progress: false, stats: !ocsf, feeds, ocsf, ..Default::default() };
    let mut out = Vec::new();
    replay(&[Input::File(pcap.to_path_buf())], &opts, &mut out).expect("replay");
    out
}

#[test]
fn every_testbed_finding_validates_against_ocsf_1_4_0() {
    let ocsf = Ocsf::load();
    let mut captures: Vec<PathBuf> = std::fs::read_dir(pcaps_dir())
        .expect("pcaps/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 6, "{captures:?}");
    let (mut findings, mut updates, mut problems, mut sids) = (0usize, 0usize, Vec::new(), std::collections::BTreeSet::new());
    for pcap in &captures {
        let name = pcap.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let feed = pcaps_dir().join(format!("{name}.feed.jsonl"));
        let feeds = if feed.exists() { vec![feed] } else { Vec::new() };
        let out = run(pcap, config_for(&name), feeds.clone(), true);
        let by_uid = check_run(&ocsf, &name, &out, &mut problems);
        let lines = by_uid.values().map(Vec::len).sum::<usize>();
        findings += lines;
        updates += by_uid.values().map(|a| a.len() - 1).sum::<usize>();
        // One finding line per EVE alert, of the same signatures.
        let eve = run(pcap, config_for(&name), feeds, false);
        let alerts: Vec<Value> = String::from_utf8_lossy(&eve)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event_type"] == "alert")
            .collect();
        assert_eq!(lines, alerts.len(), "{name}: OCSF findings vs EVE alerts");
        for a in &alerts {
            sids.insert(a["alert"]["signature_id"].as_u64().unwrap_or(0));
        }
    }
    println!(
        "{findings} OCSF findings ({updates} updates) of {} captures checked against OCSF {VERSION}; signatures {sids:?}",
        captures.len()
    );
    assert!(findings >= 10, "only {findings} findings");
    assert!(sids.contains(&1725005), "an AN1725 finding is exercised: {sids:?}");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The checks catch the mistakes they are there for.
#[test]
fn the_ocsf_checks_reject_the_old_mapping() {
    let ocsf = Ocsf::load();
    let eve = json!({
        "timestamp": "2026-08-21T09:14:03.512311+0000", "flow_id": 7, "event_type": "alert",
        "src_ip": "10.0.0.1", "src_port": 5000, "dest_ip": "198.51.100.2", "dest_port": 443, "proto": "TCP",
        "community_id": "1:x", "alert": {"gid": 1725, "signature_id": 1725005, "severity": 1, "signature": "s", "category": "c", "metadata": {"confidence": ["high"]}},
        "tls": {"sni": "api.example.com", "version": "TLS 1.3", "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1", "ja3": {"hash": "e7d705a3286e19ea42f587b344ee6865", "string": "x"}},
        "tls_failure": {"alert_code": 46}, "an1725": {"confidence": "high", "alert_id": "an1725-1-7", "revision": 2, "count": 2},
        "mobile": {"device_id": "dev-1", "app": {"package": "com.example"}},
        "evidence": {"reasons": [], "flow_ids": [7]}
    });
    let good = pinwatch::output::ocsf::detection_finding(&eve).expect("maps");
    assert_eq!(ocsf.check(&good), Vec::<String>::new());
    let mut ja4 = good.clone();
    ja4["evidences"][0]["ja4_fingerprint_list"][0]["type_id"] = json!(0);
    assert!(!ocsf.check(&ja4).is_empty(), "JA4 with type_id 0");
    let mut md5 = good.clone();
    md5["evidences"][0]["tls"]["ja3_hash"]["algorithm_id"] = json!(0);
    assert!(!ocsf.check(&md5).is_empty(), "JA3 MD5 with algorithm_id 0");
    let mut create = good.clone();
    create["type_uid"] = json!(200401);
    assert!(!ocsf.check(&create).is_empty(), "an Update with Create's type_uid");
    let mut old = good.clone();
    old["metadata"]["version"] = json!("1.3.0");
    assert!(!ocsf.check(&old).is_empty(), "another version claimed");
    let mut unknown = good.clone();
    unknown["finding_info"]["pinwatch_key"] = json!(1);
    assert!(!ocsf.check(&unknown).is_empty(), "an attribute OCSF does not have");
    let mut no_direction = good.clone();
    no_direction["evidences"][0]["connection_info"].as_object_mut().expect("object").remove("direction_id");
    assert!(!ocsf.check(&no_direction).is_empty(), "connection_info without its required direction_id");
}

#[test]
fn corpus_findings_validate_against_ocsf_1_4_0() {
    let Some(corpus) = pinwatch_tests::corpus::root() else { return };
    let ocsf = Ocsf::load();
    let files = pinwatch_tests::corpus::all_capture_files(&corpus);
    assert!(files.len() >= 100, "expected the ~416 corpus captures, found {}", files.len());
    // Every client managed, behind an explicit proxy that none of them
    // uses, so that the corpus sessions raise findings.
    let text = "[networks]\nmanaged = [\"0.0.0.0/0\", \"::/0\"]\ninternal = []\n[inspection]\ndeployment = \"explicit\"\nexplicit_proxies = [\"192.0.2.1:8080\"]\n";
    let config = pinwatch::config::Config::parse("corpus.toml", text, &root()).expect("corpus config");
    let threads = pinwatch_tests::run::default_threads();
    let done = pinwatch_tests::run::par_map(files.clone(), threads, std::time::Duration::from_secs(300), move |p: &PathBuf| {
        let opts = Options { config: config.clone(), progress: false, stats: false, ocsf: true, ..Default::default() };
        let mut out = Vec::new();
        let _ = replay(&[Input::File(p.clone())], &opts, &mut out);
        out
    })
    .unwrap_or_else(|stuck| panic!("pinwatch did not finish on: {stuck:?}"));
    let (mut findings, mut problems) = (0usize, Vec::new());
    for (p, out) in files.iter().zip(done) {
        let rel = pinwatch_tests::corpus::rel_path(&corpus, p);
        let Some(out) = out else {
            problems.push(format!("{rel}: worker died"));
            continue;
        };
        findings += check_run(&ocsf, &rel, &out, &mut problems).values().map(Vec::len).sum::<usize>();
    }
    println!("corpus: {findings} OCSF findings of {} captures checked against OCSF {VERSION}", files.len());
    assert!(findings > 0, "the corpus raised no finding to check");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
