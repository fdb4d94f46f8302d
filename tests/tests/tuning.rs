//! Alert tuning (`[tuning]`, docs/tuning.md) on a testbed capture
//! (`pcaps/testbed-basic.pcap`, made by `scripts/testbed.sh`): a `suppress`
//! line, a `threshold` line, a `rate_filter` line and the allow list each
//! change the alerts written as documented, the rest of the output stays
//! byte for byte, `stats.tuning` counts what was withheld per signature,
//! the result is the same for any `--threads`, and bad lines of a
//! `threshold_file` are counted with their line numbers, never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pinwatch::run::pipeline::{replay, Input, Options};
use serde_json::Value;

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

const CAPTURE: &str = "testbed-basic";

/// The testbed's configuration with `extra` (a `[tuning]` section) added;
/// relative paths in it are taken from `base`.
fn config(extra: &str, base: &Path) -> pinwatch::config::Config {
    let text = std::fs::read_to_string(pcaps_dir().join("testbed.toml")).expect("testbed config");
    // The testbed file names its CA relative to pcaps/: make it absolute
    // for a config whose base is elsewhere.
    let ca = pcaps_dir().join("testbed-inspection-ca.pem");
    let text = text.replace("\"testbed-inspection-ca.pem\"", &format!("{:?}", ca.display().to_string()));
    pinwatch::config::Config::parse("tuned.toml", &format!("{text}\n{extra}\n"), base).expect("config loads")
}

fn run_with(config: pinwatch::config::Config, threads: usize) -> Vec<Value> {
    let opts = Options { config, progress: false, stats: true, threads, ..Default::default() };
    let mut out = Vec::new();
    replay(&[Input::File(pcaps_dir().join(format!("{CAPTURE}.pcap")))], &opts, &mut out).expect("replay");
    String::from_utf8_lossy(&out).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn run(extra: &str) -> Vec<Value> {
    run_with(config(extra, &pcaps_dir()), 1)
}

fn alerts(out: &[Value]) -> Vec<&Value> {
    out.iter().filter(|v| v["event_type"] == "alert").collect()
}

fn sid(v: &Value) -> u64 {
    v["alert"]["signature_id"].as_u64().unwrap_or(0)
}

fn stats(out: &[Value]) -> &Value {
    out.iter().rev().find(|v| v["event_type"] == "stats").map(|v| &v["stats"]).expect("a stats record")
}

/// Everything but the stats record, as text.
fn records(out: &[Value]) -> Vec<String> {
    out.iter().filter(|v| v["event_type"] != "stats").map(Value::to_string).collect()
}

const DIRECT: u64 = 1_725_002;

#[test]
fn suppress_withholds_a_signature_and_nothing_else() {
    let base = run("");
    let all = alerts(&base);
    let direct = all.iter().filter(|a| sid(a) == DIRECT).count();
    // README: the bundled run has 4 direct sessions among 13 alerts.
    assert!(direct >= 2, "the capture has {direct} direct-session alerts");
    assert!(stats(&base).get("tuning").is_none(), "no tuning, no stats.tuning");

    let out = run("[tuning]\nrules = [\"suppress gen_id 1, sig_id 1725002\"]");
    assert_eq!(alerts(&out).iter().filter(|a| sid(a) == DIRECT).count(), 0);
    let want: Vec<String> = base.iter().filter(|v| v["event_type"] != "stats" && sid(v) != DIRECT).map(Value::to_string).collect();
    assert_eq!(records(&out), want, "every other record is unchanged, in order");
    let st = stats(&out);
    assert_eq!(st["tuning"]["suppressed"]["1725002"], direct as u64);
    assert_eq!(st["tuning"]["rules"], 1);
    assert_eq!(st["alerts_logged"], alerts(&out).len() as u64, "alerts_logged counts the lines written");
}

#[test]
fn suppress_by_source_address() {
    let base = run("");
    let direct: Vec<&Value> = alerts(&base).into_iter().filter(|a| sid(a) == DIRECT).collect();
    let src = direct[0]["src_ip"].as_str().expect("src_ip").to_string();
    let from_src = direct.iter().filter(|a| a["src_ip"] == src.as_str()).count();
    let out = run(&format!("[tuning]\nrules = [\"suppress gen_id 1725, sig_id 1725002, track by_src, ip {src}/32\"]"));
    let left: Vec<&Value> = alerts(&out).into_iter().filter(|a| sid(a) == DIRECT).collect();
    assert_eq!(left.len(), direct.len() - from_src);
    assert!(left.iter().all(|a| a["src_ip"] != src.as_str()));
    assert_eq!(stats(&out)["tuning"]["suppressed"]["1725002"], from_src as u64);
}

/// `type limit, track by_src, count 1`: the first direct-session alert of
/// each client in output order, and no other.
#[test]
fn threshold_limit_keeps_the_first_per_source() {
    let base = run("");
    let mut first: BTreeMap<String, u64> = BTreeMap::new();
    let mut direct = 0;
    for a in alerts(&base).into_iter().filter(|a| sid(a) == DIRECT) {
        direct += 1;
        first.entry(a["src_ip"].as_str().unwrap_or("").to_string()).or_insert(a["flow_id"].as_u64().unwrap_or(0));
    }
    assert!(direct > first.len(), "a client with two direct sessions: {direct} alerts, {} clients", first.len());
    let rule = "[tuning]\nrules = [\"threshold gen_id 1, sig_id 1725002, type limit, track by_src, count 1, seconds 86400\"]";
    let out = run(rule);
    let kept: BTreeMap<String, u64> = alerts(&out)
        .into_iter()
        .filter(|a| sid(a) == DIRECT)
        .map(|a| (a["src_ip"].as_str().unwrap_or("").to_string(), a["flow_id"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(kept, first);
    assert_eq!(alerts(&out).iter().filter(|a| sid(a) == DIRECT).count(), first.len());
    assert_eq!(stats(&out)["tuning"]["thresholded"]["1725002"], (direct - first.len()) as u64);
    // Other signatures are untouched.
    let others = |o: &[Value]| alerts(o).into_iter().filter(|a| sid(a) != DIRECT).map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(others(&out), others(&base));
    // Time is packet time and the desk works in output order: the same
    // decisions with four flow-table threads.
    assert_eq!(records(&run_with(config(rule, &pcaps_dir()), 4)), records(&out));
}

/// `rate_filter ... count 1, new_action pass`: past one alert of the rule
/// within the window, the others are withheld while the timeout runs.
#[test]
fn rate_filter_pass_withholds_the_excess() {
    let base = run("");
    let direct = alerts(&base).iter().filter(|a| sid(a) == DIRECT).count();
    let out = run("[tuning]\nrules = [\"rate_filter gen_id 1, sig_id 1725002, track by_rule, count 1, seconds 86400, new_action pass, timeout 86400\"]");
    assert_eq!(alerts(&out).iter().filter(|a| sid(a) == DIRECT).count(), 1);
    assert_eq!(stats(&out)["tuning"]["rate_filtered"]["1725002"], (direct - 1) as u64);
}

#[test]
fn allow_list_by_destination() {
    let base = run("");
    let all = alerts(&base);
    let sni = all.iter().find_map(|a| a["tls"]["sni"].as_str()).expect("an alert with an SNI").to_string();
    let about = all.iter().filter(|a| a["tls"]["sni"] == sni.as_str()).count();
    let out = run(&format!("[tuning.allow]\ndestinations = [\"{sni}\"]"));
    assert_eq!(alerts(&out).len(), all.len() - about);
    assert!(alerts(&out).iter().all(|a| a["tls"]["sni"] != sni.as_str()));
    let allowed: u64 = stats(&out)["tuning"]["allowed"].as_object().expect("allowed").values().filter_map(Value::as_u64).sum();
    assert_eq!(allowed, about as u64);
}

/// A threshold file with bad lines: the good lines apply, the bad ones are
/// counted and named with their line numbers; a missing file is a problem,
/// not a failure.
#[test]
fn threshold_file_bad_lines_are_counted_not_fatal() {
    let dir = std::env::temp_dir().join(format!("pinwatch-tuning-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("threshold.config"), "# tuning\nsuppress gen_id 1, sig_id 1725002\nsuppress gen_id 1, sig_id 1725002, track by_src, ip $HOME_NET\nthreshold gen_id 1, sig_id 1725003, type often, track by_src, count 1, seconds 60\n").expect("write");
    let out = run_with(config("[tuning]\nthreshold_file = \"threshold.config\"", &dir), 1);
    assert_eq!(alerts(&out).iter().filter(|a| sid(a) == DIRECT).count(), 0, "the good line applies");
    let t = &stats(&out)["tuning"];
    assert_eq!(t["rules"], 1);
    assert_eq!(t["bad_lines"], 2);
    let problems: Vec<&str> = t["problems"].as_array().expect("problems").iter().filter_map(Value::as_str).collect();
    assert!(problems[0].contains("threshold.config:3:") && problems[0].contains("$HOME_NET"), "{problems:?}");
    assert!(problems[1].contains("threshold.config:4:") && problems[1].contains("often"), "{problems:?}");

    let missing = run_with(config("[tuning]\nthreshold_file = \"absent.config\"", &dir), 1);
    assert_eq!(alerts(&missing).len(), alerts(&run("")).len(), "nothing withheld");
    assert_eq!(stats(&missing)["tuning"]["bad_lines"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fallback capture with its device feed: findings carry the app
/// (`mobile.app.package`, `signing_cert_sha256`) and folded AN1725 alerts.
fn run_fallback(extra: &str, ocsf: bool) -> Vec<Value> {
    let opts = Options {
        config: config(extra, &pcaps_dir()),
        progress: false,
        stats: !ocsf,
        ocsf,
        feeds: vec![pcaps_dir().join("testbed-fallback.feed.jsonl")],
        ..Default::default()
    };
    let mut out = Vec::new();
    replay(&[Input::File(pcaps_dir().join("testbed-fallback.pcap"))], &opts, &mut out).expect("replay");
    String::from_utf8_lossy(&out).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn app(a: &Value) -> &str {
    a["mobile"]["app"]["package"].as_str().unwrap_or("")
}

#[test]
fn allow_list_by_app_and_signing_certificate() {
    let base = run_fallback("", false);
    let all = alerts(&base);
    let bank = all.iter().filter(|a| app(a) == "com.example.pinnedbank").count();
    let news = all.iter().filter(|a| app(a) == "com.example.news").count();
    assert!(bank >= 2 && news >= 2, "bank {bank}, news {news}");
    // The feed's inventory gives the bank app's signing certificate.
    assert!(all.iter().filter(|a| app(a) == "com.example.pinnedbank").all(|a| a["mobile"]["app"]["signing_cert_sha256"][0] == "9f2c41d0"));

    let by_cert = run_fallback("[tuning.allow]\napp_certs = [\"9F2C41D0\"]", false);
    assert_eq!(alerts(&by_cert).iter().filter(|a| app(a) == "com.example.pinnedbank").count(), 0);
    assert_eq!(alerts(&by_cert).len(), all.len() - bank);

    let by_app = run_fallback("[tuning.allow]\napps = [\"com.example.n*\"]", false);
    assert_eq!(alerts(&by_app).iter().filter(|a| app(a) == "com.example.news").count(), 0);
    assert_eq!(alerts(&by_app).len(), all.len() - news);
    let allowed: u64 = stats(&by_app)["tuning"]["allowed"].as_object().expect("allowed").values().filter_map(Value::as_u64).sum();
    assert_eq!(allowed, news as u64);
}

/// `limit 1` on 1725005: the first folded alert is written with all its
/// revisions, the second with none; in OCSF the written finding is one
/// Create and its Updates.
#[test]
fn revisions_of_a_folded_alert_share_its_fate() {
    let base = run_fallback("", false);
    let ids: Vec<String> = alerts(&base).iter().filter_map(|a| a["an1725"]["alert_id"].as_str().map(str::to_string)).collect();
    let mut distinct = ids.clone();
    distinct.dedup();
    assert!(distinct.len() >= 2 && ids.len() > distinct.len(), "folded alerts with revisions: {ids:?}");
    let rule = "[tuning]\nrules = [\"threshold gen_id 1, sig_id 1725005, type limit, track by_rule, count 1, seconds 86400\"]";
    let out = run_fallback(rule, false);
    let kept: Vec<String> = alerts(&out).iter().filter_map(|a| a["an1725"]["alert_id"].as_str().map(str::to_string)).collect();
    let first: Vec<String> = ids.iter().filter(|i| **i == distinct[0]).cloned().collect();
    assert_eq!(kept, first, "every revision of the first alert, none of the others");
    assert_eq!(stats(&out)["tuning"]["thresholded"]["1725005"], (ids.len() - first.len()) as u64);

    let findings = run_fallback(rule, true);
    let an: Vec<(String, u64)> = findings
        .iter()
        .filter(|f| f["unmapped"]["pinwatch"]["signature_id"] == 1_725_005)
        .map(|f| (f["finding_info"]["uid"].as_str().unwrap_or("").to_string(), f["activity_id"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(an.len(), first.len());
    assert!(an.iter().all(|(uid, _)| *uid == distinct[0]));
    assert_eq!(
        an.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        std::iter::once(1).chain(std::iter::repeat_n(2, first.len() - 1)).collect::<Vec<_>>()
    );
}
