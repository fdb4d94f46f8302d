//! `pinwatch report` as a person sees it: the testbed's captures are
//! replayed (with the device feed), their EVE lines written as a rotated set
//! (one file gzip'd), the report made from them, and the page rendered in
//! headless Chromium. The key numbers in the rendered DOM are checked against
//! counts this test computes from the EVE lines itself, with serde_json and
//! the definitions of docs/report.md, not with the report's code. A
//! screenshot is saved.
//!
//! Needs Debian's `chromium` (or `$PINWATCH_CHROMIUM`) for the rendering
//! test; without it that test prints `SKIPPED` and passes, unless
//! `PINWATCH_REPORT_REQUIRED=1` (set in `.ci/run`), where it fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use pinwatch::report::{from_files, ReportOptions};
use pinwatch::run::pipeline::{replay, Input, Options};
use serde_json::Value;

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

fn testbed_dirs() -> Vec<PathBuf> {
    let mut v = vec![pcaps_dir()];
    if let Some(d) = std::env::var_os("PINWATCH_TESTBED_DIR") {
        v.push(PathBuf::from(d));
    }
    v
}

fn options(dir: &Path, config: &str, feeds: Vec<PathBuf>) -> Options {
    let text = std::fs::read_to_string(pcaps_dir().join(config)).expect("testbed config");
    let config = pinwatch::config::Config::parse(config, &text, dir).expect("config loads");
    Options { config, progress: false, stats: true, feeds, ..Default::default() }
}

fn replay_bytes(capture: &Path, opts: &Options) -> Vec<u8> {
    let mut out = Vec::new();
    replay(&[Input::File(capture.to_path_buf())], opts, &mut out).expect("replay");
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The feed of the fallback group plus a `net_connect` that puts the
/// port-4443 session on com.example.pinnedbank: a destination outside its
/// baseline (as in tests/testbed.rs), so the baseline figures are not all zero.
fn feed_with_unapproved(dir: &Path, out: &Path) -> PathBuf {
    let plain = replay_bytes(&dir.join("testbed-fallback.pcap"), &options(dir, "testbed.toml", Vec::new()));
    let odd: Value = String::from_utf8(plain)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|e| e["event_type"] == "tls" && e["dest_port"] == 4443)
        .expect("the port-4443 session");
    let ts = odd["timestamp"].as_str().expect("timestamp");
    let when = format!("{}Z", &ts[..26]);
    let base = std::fs::read_to_string(dir.join("testbed-fallback.feed.jsonl"))
        .or_else(|_| std::fs::read_to_string(pcaps_dir().join("testbed-fallback.feed.jsonl")))
        .expect("feed");
    let connect = format!(
        r#"{{"schema_version":1,"event_type":"net_connect","event_time":"{when}","observed_time":"{when}","source":{{"kind":"dpm_network_log"}},"device":{{"id":"enterprises/testbed/devices/pixel-7"}},"app":{{"package":"com.example.pinnedbank"}},"dst_ip":"10.77.2.4","dst_port":4443}}"#
    );
    let feed = out.join("feed.jsonl");
    std::fs::write(&feed, format!("{base}{connect}\n")).expect("write feed");
    feed
}

/// Replay the fallback group (with the feed), the inspection group and the
/// QUIC group into a rotated EVE set in `out/eve/`: `eve.json` and
/// `eve.json.2` plain, `eve.json.1.gz` gzip'd.
fn eve_set(dir: &Path, out: &Path, feed: &Path) -> (PathBuf, Vec<Value>) {
    let eve = out.join("eve");
    std::fs::create_dir_all(&eve).expect("eve dir");
    let fallback = replay_bytes(&dir.join("testbed-fallback.pcap"), &options(dir, "testbed.toml", vec![feed.to_path_buf()]));
    let inspection = replay_bytes(&dir.join("testbed-inspection.pcap"), &options(dir, "testbed.toml", Vec::new()));
    let quic = replay_bytes(&dir.join("testbed-quic.pcap"), &options(dir, "testbed.toml", Vec::new()));
    let mut gz = gzip(&fallback);
    std::fs::write(eve.join("eve.json.1.gz"), &mut gz).expect("write gz");
    std::fs::write(eve.join("eve.json"), &inspection).expect("write eve");
    std::fs::write(eve.join("eve.json.2"), &quic).expect("write eve");
    let lines = [fallback, inspection, quic]
        .iter()
        .flat_map(|b| {
            String::from_utf8(b.clone()).expect("utf8").lines().map(|l| serde_json::from_str::<Value>(l).expect("json")).collect::<Vec<_>>()
        })
        .collect();
    (eve, lines)
}

/// gzip with the system's `gzip` (the test does not share the report's zlib code).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child =
        Command::new("gzip").arg("-c").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("gzip runs");
    child.stdin.take().expect("stdin").write_all(bytes).expect("to gzip");
    let out = child.wait_with_output().expect("gzip output");
    assert!(out.status.success());
    out.stdout
}

/// The figures docs/report.md defines, computed here from the EVE lines.
struct Expected {
    sessions: usize,
    per_app: BTreeMap<String, BTreeMap<&'static str, u64>>,
    per_dest: BTreeMap<String, u64>,
    findings: BTreeMap<u64, usize>,
    escaped: u64,
    known: u64,
    unknown: u64,
    refused: u64,
}

fn expected(lines: &[Value]) -> Expected {
    let mut seen = BTreeSet::new();
    let sessions: Vec<&Value> =
        lines.iter().filter(|l| (l["event_type"] == "tls" || l["event_type"] == "quic") && seen.insert(l["flow_id"].as_u64())).collect();
    let mut per_app: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut per_dest: BTreeMap<String, u64> = BTreeMap::new();
    let (mut escaped, mut known, mut unknown, mut refused) = (0, 0, 0, 0);
    let opaque: BTreeSet<u64> = lines
        .iter()
        .filter(|l| l["event_type"] == "alert" && l["alert"]["signature_id"] == 1_725_003)
        .filter_map(|l| l["flow_id"].as_u64())
        .collect();
    for s in &sessions {
        let app = s["mobile"]["app"]["package"].as_str().unwrap_or("(no app attributed)").to_string();
        let sni = s["tls"]["sni"].as_str().or(s["quic"]["sni"].as_str()).filter(|x| !x.is_empty());
        let dest = sni.unwrap_or(s["dest_ip"].as_str().unwrap_or("")).to_string();
        *per_dest.entry(dest).or_default() += 1;
        let row = per_app.entry(app).or_default();
        *row.entry("sessions").or_default() += 1;
        if s["tls_failure"]["outcome"] == "client_rejected" {
            let class = s["tls_failure"]["class"].as_str().expect("a rejection has a class");
            *row.entry(match class {
                "A" => "A",
                "B" => "B",
                "C" => "C",
                "D" => "D",
                _ => "E",
            })
            .or_default() += 1;
        }
        let kind = s["path"]["kind"].as_str().unwrap_or("unknown");
        *row.entry("direct").or_default() += u64::from(kind == "direct");
        *row.entry("bypassed").or_default() += u64::from(kind == "sanctioned_bypass");
        *row.entry("opaque").or_default() += u64::from(s["flow_id"].as_u64().is_some_and(|f| opaque.contains(&f)));
        *row.entry("outside").or_default() += u64::from(s["mobile"]["baseline"]["approved"] == false);
        // Coverage, as docs/report.md defines it.
        let managed = if s.get("mobile").is_some() {
            s["mobile"]["device_id"].is_string()
        } else {
            !s["path"]["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x.as_str().is_some_and(|x| x.starts_with("client_not_managed:"))))
        };
        if !managed || kind == "internal" {
            continue;
        }
        let passed_through = s["path"]["intercepted"] == false;
        match kind {
            "intercepted" | "explicit_proxy" if !passed_through => {
                known += 1;
                refused += u64::from(s["tls_failure"]["outcome"] == "client_rejected");
            }
            "intercepted" | "explicit_proxy" | "direct" | "sanctioned_bypass" | "tunnel" => {
                known += 1;
                escaped += 1;
            }
            _ => unknown += 1,
        }
    }
    // Findings: AN1725 alerts once per alert_id, the others once per (signature, flow).
    let mut keys: BTreeSet<(u64, String)> = BTreeSet::new();
    for a in lines.iter().filter(|l| l["event_type"] == "alert") {
        let sid = a["alert"]["signature_id"].as_u64().expect("signature id");
        let key = match a["an1725"]["alert_id"].as_str() {
            Some(id) => format!("an:{id}"),
            None => format!("flow:{}", a["flow_id"]),
        };
        keys.insert((sid, key));
    }
    let mut findings = BTreeMap::new();
    for (sid, _) in keys {
        *findings.entry(sid).or_default() += 1;
    }
    Expected { sessions: sessions.len(), per_app, per_dest, findings, escaped, known, unknown, refused }
}

/// `data-k` → text, from the rendered DOM.
fn dom_values(dom: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = dom;
    while let Some(i) = rest.find("data-k=\"") {
        rest = &rest[i + 8..];
        let Some(end) = rest.find('"') else { break };
        let key = rest[..end].replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">");
        let Some(open) = rest.find('>') else { break };
        let text_end = rest[open + 1..].find('<').map_or(rest.len(), |e| open + 1 + e);
        out.insert(key, rest[open + 1..text_end].trim().to_string());
        rest = &rest[open + 1..];
    }
    out
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PINWATCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("chromium")).find(|p| p.is_file()))
}

fn required() -> bool {
    std::env::var("PINWATCH_REPORT_REQUIRED").is_ok_and(|v| v == "1")
}

fn headless(chrome: &Path, profile: &Path, args: &[String]) -> std::process::Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn report_page_in_chromium_matches_the_eve_records() {
    let Some(chrome) = chromium() else {
        assert!(!required(), "PINWATCH_REPORT_REQUIRED=1 but no chromium in PATH (Debian package `chromium`)");
        println!("SKIPPED: no chromium in PATH (apt-get install chromium); the page was not rendered");
        return;
    };
    for dir in testbed_dirs() {
        let out = scratch("dom");
        let feed = feed_with_unapproved(&dir, &out);
        let (eve, lines) = eve_set(&dir, &out, &feed);
        let want = expected(&lines);
        assert!(want.sessions >= 10, "the testbed runs have sessions ({})", want.sessions);
        let report_dir = out.join("report");
        let written = from_files(&[eve], &ReportOptions { out_dir: report_dir.clone(), feeds: vec![feed.clone()], ..Default::default() })
            .expect("report");
        let page = std::fs::read_to_string(&written.html).expect("page");
        // Self-contained: nothing fetched, no script.
        for bad in ["<script", "src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!page.contains(bad), "page holds {bad}");
        }
        let dom = headless(&chrome, &out.join("profile"), &["--dump-dom".into(), format!("file://{}", written.html.display())]);
        assert!(dom.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&dom.stderr));
        let dom = String::from_utf8(dom.stdout).expect("dom utf8");
        let got = dom_values(&dom);
        let get = |k: &str| got.get(k).unwrap_or_else(|| panic!("{k} not in the rendered page")).clone();
        let mut checked = 0;
        assert_eq!(get("sessions-total"), want.sessions.to_string());
        assert_eq!(get("findings-total"), want.findings.values().sum::<usize>().to_string());
        for (sid, n) in &want.findings {
            assert_eq!(get(&format!("findings-{sid}")), n.to_string(), "findings of {sid}");
            checked += 1;
        }
        assert_eq!(get("cov-escaped"), want.escaped.to_string());
        assert_eq!(get("cov-known"), want.known.to_string());
        assert_eq!(get("cov-unknown"), want.unknown.to_string());
        assert_eq!(get("cov-refused"), want.refused.to_string());
        assert_eq!(get("cov-escaped-pct"), format!("{:.1}%", want.escaped as f64 * 100.0 / want.known as f64));
        assert!(want.escaped > 0 && want.refused > 0, "the testbed has escaped and refused sessions");
        for (app, row) in &want.per_app {
            for (col, n) in row {
                assert_eq!(get(&format!("app:{app}:{col}")), n.to_string(), "{app} {col}");
                checked += 1;
            }
        }
        // The testbed's apps: both pinned apps rejected the proxy (class C, twice) and fell back.
        for app in ["com.example.pinnedbank", "com.example.news"] {
            let rejected: u64 =
                ["A", "B", "C", "D", "E"].iter().map(|c| get(&format!("app:{app}:{c}")).parse::<u64>().expect("a count")).sum();
            assert_eq!(rejected, 2, "{app}");
            assert_eq!(get(&format!("app:{app}:fallbacks")), "1", "{app}");
        }
        assert_eq!(get("app:com.example.pinnedbank:outside"), "1");
        for (dest, n) in &want.per_dest {
            assert_eq!(get(&format!("dest:{dest}:sessions")), n.to_string(), "{dest}");
            checked += 1;
        }
        assert!(checked >= 20, "{checked} figures checked");
        // The screenshot a person would see.
        let shot = out.join("report.png");
        let r = headless(
            &chrome,
            &out.join("profile"),
            &["--window-size=1400,2200".into(), format!("--screenshot={}", shot.display()), format!("file://{}", written.html.display())],
        );
        assert!(r.status.success(), "chromium --screenshot");
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot ({} bytes)", png.len());
        // Keep the screenshot, drop the rest (the Chromium profile is tens of MB).
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("report-screenshot-{}.png", if dir == pcaps_dir() { "stored" } else { "fresh" }));
        std::fs::copy(&shot, &kept).expect("keep the screenshot");
        let _ = std::fs::remove_dir_all(&out);
        println!("checked {checked} figures; screenshot {}", kept.display());
    }
}

/// The approval step, on the same testbed run: approving the port-4443
/// destination for com.example.pinnedbank takes it out of "outside
/// baseline" (and drops its 1725006 finding); approving the app's pinning
/// turns its block candidate into a bypass-list entry in every export, and
/// a reviewer's wildcard for a public suffix is refused.
#[test]
fn approved_baselines_change_counts_and_lists() {
    let dir = pcaps_dir();
    let out = scratch("approve");
    let feed = feed_with_unapproved(&dir, &out);
    let (eve, lines) = eve_set(&dir, &out, &feed);
    let before_dir = out.join("before");
    from_files(std::slice::from_ref(&eve), &ReportOptions { out_dir: before_dir.clone(), feeds: vec![feed.clone()], ..Default::default() })
        .expect("report");
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let json = |p: PathBuf| serde_json::from_str::<Value>(&read(p)).expect("json");
    let before = json(before_dir.join("report.json"));
    let outside_before = before["apps"]["com.example.pinnedbank"]["outside_baseline"].as_u64().expect("figure");
    assert_eq!(outside_before, 1);
    assert!(before["findings_by_signature"]["1725006"].as_u64().is_some_and(|n| n >= 1));
    // The exported baselines list the destination as not approved, with the certificate from the feed.
    let baselines = json(before_dir.join("baselines.json"));
    assert_eq!(baselines["format"], "pinwatch-baselines/1");
    let bank = baselines["apps"].as_array().expect("apps").iter().find(|a| a["package"] == "com.example.pinnedbank").expect("bank").clone();
    assert_eq!(bank["signing_cert_sha256"][0], "9f2c41d0");
    let odd = bank["destinations"].as_array().expect("dests").iter().find(|d| d["host"] == "oddport.origin.test").expect("oddport").clone();
    assert_eq!(odd["approved"], false);
    assert_eq!(odd["seen"]["feed_baseline"], "outside");
    // Before approval: the bank's hosts are block candidates in every format.
    let squid = read(before_dir.join("actions/squid-block.conf"));
    assert!(squid.lines().any(|l| l == "acl pinwatch_block dstdomain fallback.origin.test"), "{squid}");
    assert!(!read(before_dir.join("actions/squid-bypass.conf")).contains("dstdomain fallback.origin.test"));

    // The reviewer's decisions.
    let mut reviewed = baselines.clone();
    for app in reviewed["apps"].as_array_mut().expect("apps") {
        if app["package"] == "com.example.pinnedbank" {
            app["pinning_approved"] = Value::Bool(true);
            for d in app["destinations"].as_array_mut().expect("dests") {
                d["approved"] = Value::Bool(true);
            }
            app["destinations"].as_array_mut().expect("dests").push(serde_json::json!({"host": "*.test", "approved": true}));
        }
    }
    let approvals = out.join("approved.json");
    std::fs::write(&approvals, serde_json::to_vec_pretty(&reviewed).expect("json")).expect("write approvals");
    let after_dir = out.join("after");
    from_files(&[eve], &ReportOptions { out_dir: after_dir.clone(), feeds: vec![feed], approved_baselines: Some(approvals) })
        .expect("report");
    let after = json(after_dir.join("report.json"));
    assert_eq!(after["apps"]["com.example.pinnedbank"]["outside_baseline"], 0);
    assert!(after["findings_by_signature"].get("1725006").is_none(), "{}", after["findings_by_signature"]);
    // Bypass entries now, exact hosts: the "*.test" wildcard names a public suffix and is refused.
    let bypass = read(after_dir.join("actions/squid-bypass.conf"));
    assert!(bypass.lines().any(|l| l == "acl pinwatch_bypass dstdomain fallback.origin.test"), "{bypass}");
    assert!(!bypass.contains("test$"), "no public-suffix wildcard: {bypass}");
    assert!(after["actions"]["refused_wildcards"].as_array().is_some_and(|w| w.iter().any(|x| x == "*.test")));
    assert!(!read(after_dir.join("actions/squid-block.conf")).contains("dstdomain fallback.origin.test"));
    assert!(read(after_dir.join("actions/haproxy-bypass.map")).lines().any(|l| l == "fallback.origin.test bypass"));
    assert!(read(after_dir.join("actions/nginx-bypass.map")).contains("    fallback.origin.test 1;"));
    assert!(read(after_dir.join("actions/paloalto-edl-bypass.txt")).lines().any(|l| l == "fallback.origin.test/"));
    assert!(read(after_dir.join("actions/zscaler-bypass.csv")).lines().any(|l| l.starts_with("fallback.origin.test,")));
    assert!(read(after_dir.join("actions/fortinet-bypass.txt")).lines().any(|l| l == "fallback.origin.test"));
    // The other app is still a block candidate.
    assert!(read(after_dir.join("actions/fortinet-block.txt")).lines().any(|l| l == "fallback-curl.origin.test"));
    // Sessions did not change: approvals only change verdicts.
    assert_eq!(after["sessions"], before["sessions"]);
    assert_eq!(after["sessions"].as_u64(), Some(expected(&lines).sessions as u64));
    let _ = std::fs::remove_dir_all(&out);
}
