//! `pinwatch live --metrics-listen`: scraped during a real capture on a veth
//! pair in two network namespaces (`pwfleet-m-*`), with curl talking TLS to
//! openssl s_server across it. The page is checked by a strict parser of
//! the Prometheus text exposition format written here, and by
//! `promtool check metrics` when it is installed (Debian: prometheus), and
//! its values against the `stats` record the same process writes.
//!
//! Needs root, `ip`, `openssl`, `curl`. When they are missing the test
//! prints `SKIPPED: <reason>` and passes, unless `PINWATCH_LIVE_REQUIRED=1`
//! (set by `.ci/run`), which makes it fail.
//!
//! Run: `cargo test -p pinwatch-tests --features live --test metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pinwatch_testkit::netns::{self, Lab};
use pinwatch_testkit::pki;
use pinwatch_testkit::sys::{have, is_root, skip};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pinwatch-live");

fn unavailable(reason: &str) -> Option<Lab> {
    skip("PINWATCH_LIVE_REQUIRED", "metrics test", reason);
    None
}

/// The client (`c`) and server (`s`) namespaces (`pwfleet-m-PID-N-*`)
/// joined by the veth pair `pwfleetm0` (10.97.0.1, client) – `pwfleetm1`
/// (10.97.0.2, server), IPv6 off, links up; `None` (after `SKIPPED`, or a
/// failure under `PINWATCH_LIVE_REQUIRED=1`) when this machine cannot.
fn metrics_lab() -> Option<Lab> {
    if !is_root() {
        return unavailable("not root (network namespaces and packet capture need root)");
    }
    for t in ["ip", "openssl", "curl"] {
        if !have(t) {
            return unavailable(&format!("{t} not installed"));
        }
    }
    netns::remove_stale("pwfleet-m");
    let mut lab = Lab::new("pwfleet-m", "metrics");
    let Ok(ns_c) = lab.add_ns("c") else {
        return unavailable("cannot create a network namespace");
    };
    let ns_s = lab.must_add_ns("s");
    lab.veth((&ns_c, "pwfleetm0"), (&ns_s, "pwfleetm1"));
    lab.endpoint(&ns_c, "pwfleetm0", "10.97.0.1/24");
    lab.endpoint(&ns_s, "pwfleetm1", "10.97.0.2/24");
    Some(lab)
}

/// `ARGS` run in the client namespace.
fn in_c(lab: &Lab, args: &[&str]) -> Output {
    lab.cmd(&lab.ns("c"), args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    family: String,
    value: f64,
}

/// A strict reader of the text exposition format 0.0.4: every line is a
/// HELP, a TYPE or a sample; names and label names are valid; label values
/// use only the three escapes; each family has at most one HELP and one
/// TYPE, given before its samples, and its samples are contiguous; no
/// series twice; counters are never negative. Series key: `name{l="v",…}`
/// with the labels sorted.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut out = BTreeMap::new();
    if !text.ends_with('\n') {
        return Err("the page must end with a newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
            match kw {
                "HELP" | "TYPE" => {
                    if !name_ok(name, true) {
                        return Err(at("bad metric name"));
                    }
                    if done.contains(name) || out.values().any(|s: &Sample| s.family == name) {
                        return Err(at("HELP/TYPE after the family's samples"));
                    }
                    if kw == "TYPE" {
                        let t = tail.ok_or_else(|| at("TYPE without a type"))?;
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                            return Err(at("unknown type"));
                        }
                        if types.insert(name.to_string(), t.to_string()).is_some() {
                            return Err(at("second TYPE"));
                        }
                    } else if !helps.insert(name.to_string()) {
                        return Err(at("second HELP"));
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // name[{labels}] value [timestamp]
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !name_ok(name, true) {
            return Err(at("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            (labels, rest) = parse_labels(r, &at)?;
        }
        let value = parse_value(rest, &at)?;
        let family = name.to_string();
        if current.as_deref() != Some(&family) {
            if done.contains(&family) {
                return Err(at("samples of one family are not together"));
            }
            if let Some(c) = current.take() {
                done.insert(c);
            }
            current = Some(family.clone());
        }
        if types.get(&family).is_some_and(|t| t == "counter") && value < 0.0 {
            return Err(at("negative counter"));
        }
        labels.sort();
        let key = if labels.is_empty() {
            family.clone()
        } else {
            format!("{family}{{{}}}", labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(","))
        };
        if out.insert(key, Sample { family, value }).is_some() {
            return Err(at("series given twice"));
        }
    }
    Ok(out)
}

/// A valid metric name (`colon`: colons allowed) or label name.
fn name_ok(n: &str, colon: bool) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A sample's labels: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// The labels of a sample, `r` starting after its `{`, and what follows the
/// `}`. `at` makes an error message of the line.
fn parse_labels<'l>(r: &'l str, at: &dyn Fn(&str) -> String) -> Result<(Labels, &'l str), String> {
    let mut r = r;
    let mut labels = Vec::new();
    loop {
        if let Some(after) = r.strip_prefix('}') {
            r = after;
            break;
        }
        let eq = r.find('=').ok_or_else(|| at("label without ="))?;
        let lname = &r[..eq];
        if !name_ok(lname, false) {
            return Err(at("bad label name"));
        }
        let mut chars = r[eq + 1..].char_indices();
        if chars.next().map(|c| c.1) != Some('"') {
            return Err(at("label value not quoted"));
        }
        let mut val = String::new();
        let mut end = None;
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|c| c.1) {
                    Some('\\') => val.push('\\'),
                    Some('"') => val.push('"'),
                    Some('n') => val.push('\n'),
                    _ => return Err(at("bad escape")),
                },
                '"' => {
                    end = Some(eq + 1 + j + 1);
                    break;
                }
                '\n' => return Err(at("newline in label value")),
                c => val.push(c),
            }
        }
        let end = end.ok_or_else(|| at("unterminated label value"))?;
        labels.push((lname.to_string(), val));
        r = &r[end..];
        if let Some(after) = r.strip_prefix(',') {
            r = after;
        }
    }
    Ok((labels, r))
}

/// The value of a sample (`rest`: what follows its name and labels), with
/// an optional integer timestamp after it and nothing else.
fn parse_value(rest: &str, at: &dyn Fn(&str) -> String) -> Result<f64, String> {
    let mut fields = rest.split(' ').filter(|f| !f.is_empty());
    let v = fields.next().ok_or_else(|| at("no value"))?;
    let value: f64 = match v {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => v.parse().map_err(|_| at("value is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| at("bad timestamp"))?;
    }
    if fields.next().is_some() {
        return Err(at("trailing fields"));
    }
    Ok(value)
}

#[test]
fn the_parser_is_strict() {
    assert!(parse_exposition("# TYPE a counter\na 1\n").is_ok());
    assert!(parse_exposition("a{x=\"1\",y=\"q\\\"\"} 2.5\na{x=\"2\"} NaN\n").is_ok());
    for bad in [
        "a 1",
        "1a 1\n",
        "a{x=1} 1\n",
        "a{x=\"1\"} one\n",
        "a 1\nb 1\na 2\n",
        "a 1\na 1\n",
        "# TYPE a counter\na -1\n",
        "a 1\n# TYPE a counter\n",
        "# TYPE a foo\na 1\n",
        "a{x=\"\\t\"} 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_endpoint_serves_the_stats_counters_during_a_live_run() {
    let Some(mut lab) = metrics_lab() else { return };
    let (ns_c, ns_s, dir) = (lab.ns("c"), lab.ns("s"), lab.dir.clone());
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    // A self-signed certificate: curl does not verify it (-k).
    pki::self_signed(&dir, "server", "/CN=metrics.test");
    let port = "44433";
    lab.spawn(
        &ns_s,
        &["openssl", "s_server", "-quiet", "-www", "-accept", port, "-key", &p("server.key"), "-cert", &p("server.pem")],
        "s_server",
    );
    let mport = "49425";
    let eve = dir.join("eve.json");
    let pid = lab.spawn(
        &ns_c,
        &[
            BIN,
            "-i",
            "pwfleetm0",
            "-o",
            &p("eve.json"),
            "--stats-interval",
            "0",
            "--sensor-name",
            "metrics-test",
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
        ],
        "pinwatch",
    );
    lab.wait_for_log("pinwatch.err", "capturing on", Duration::from_secs(20));
    let scrape = || {
        let o = in_c(&lab, &["curl", "-sS", "--max-time", "5", "-D", &p("headers.txt"), &format!("http://127.0.0.1:{mport}/metrics")]);
        assert!(o.status.success(), "scrape: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8 page")
    };
    // Before any traffic the page is there (maybe still empty) and well formed.
    std::thread::sleep(Duration::from_millis(1200));
    let first = parse_exposition(&scrape()).unwrap_or_else(|e| panic!("{e}"));
    let headers = std::fs::read_to_string(dir.join("headers.txt")).unwrap_or_default();
    assert!(headers.starts_with("HTTP/1.1 200") && headers.contains("text/plain; version=0.0.4"), "{headers}");

    let n = 4;
    tls_sessions(&lab, n, port);
    // The sessions end (FIN), their records are written, the page is republished.
    let t0 = Instant::now();
    let tls_in_file = || std::fs::read_to_string(&eve).unwrap_or_default().lines().filter(|l| l.contains("\"event_type\":\"tls\"")).count();
    while tls_in_file() < n {
        assert!(t0.elapsed() < Duration::from_secs(20), "{} tls records after 20 s", tls_in_file());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let page = scrape();
    std::fs::write(dir.join("metrics.txt"), &page).expect("save page");
    let m = parse_exposition(&page).unwrap_or_else(|e| panic!("{e}\n{page}"));
    let get = |k: &str| m.get(k).map(|s| s.value).unwrap_or_else(|| panic!("no series {k} in\n{page}"));
    assert_eq!(get("pinwatch_records_total{event_type=\"tls\"}"), tls_in_file() as f64);
    assert!(get("pinwatch_live_interfaces_received_total{interface=\"pwfleetm0\"}") >= (n * 8) as f64, "a TLS session is ≥ 8 packets");
    assert_eq!(get("pinwatch_live_interfaces_dropped_total{interface=\"pwfleetm0\"}"), 0.0);
    assert!(get("pinwatch_live_output_lines_written_total{kind=\"file\"}") >= n as f64);
    assert!(get("pinwatch_live_uptime_seconds") > 0.0);
    assert!(m.contains_key("pinwatch_live_output_lines_dropped_total{kind=\"file\"}"));
    assert!(m.keys().any(|k| k.starts_with("pinwatch_flow_")), "flow table counters");
    assert!(m.len() > first.len().max(10), "the page grew with the run: {} series", m.len());
    let types: BTreeSet<&str> = page.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert!(types.contains("pinwatch_records_total counter") && types.contains("pinwatch_live_uptime_seconds gauge"), "types");

    promtool_check(&page);

    // The same counters as the stats record (SIGUSR1 writes one now; no
    // traffic since the scrape).
    lab.signal(pid, "USR1");
    let stats = wait_stats_record(&eve);
    let s = &stats["stats"];
    assert_eq!(get("pinwatch_tls_records_logged_total"), s["tls_records_logged"].as_f64().expect("tls_records_logged"));
    assert_eq!(get("pinwatch_alerts_logged_total"), s["alerts_logged"].as_f64().expect("alerts_logged"));
    assert_eq!(
        get("pinwatch_live_interfaces_dropped_total{interface=\"pwfleetm0\"}"),
        s["live"]["interfaces"][0]["dropped"].as_f64().expect("dropped")
    );
    assert_flow_stats_exported(&m, s);
    lab.signal(pid, "TERM");
    drop(lab);
}

/// `n` TLS sessions from the client namespace to s_server on `port`
/// (SNI `m<i>.metrics.test`), each of which must succeed.
fn tls_sessions(lab: &Lab, n: usize, port: &str) {
    for i in 0..n {
        let sni = format!("m{i}.metrics.test");
        let o = in_c(
            lab,
            &[
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "--resolve",
                &format!("{sni}:{port}:10.97.0.2"),
                &format!("https://{sni}:{port}/"),
            ],
        );
        assert!(o.status.success(), "curl {sni}");
    }
}

/// `promtool check metrics` must accept the page, when promtool is installed.
fn promtool_check(page: &str) {
    if have("promtool") {
        let mut c = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        c.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("write");
        let o = c.wait_with_output().expect("promtool");
        assert!(
            o.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("promtool not installed: the page was checked by this test's parser only");
    }
}

/// The first stats record in the EVE file (waiting 10 s at most).
fn wait_stats_record(eve: &std::path::Path) -> Value {
    let t0 = Instant::now();
    loop {
        let found = std::fs::read_to_string(eve)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event_type"] == "stats");
        if let Some(s) = found {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no stats record after SIGUSR1");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every number of the stats record's `flow` part is exported, as
/// `pinwatch_flow_<k>` or `pinwatch_flow_<k>_total`, with the same value.
fn assert_flow_stats_exported(m: &BTreeMap<String, Sample>, s: &Value) {
    for (k, v) in s["flow"].as_object().expect("flow stats") {
        if let Some(x) = v.as_f64() {
            let (a, b) = (format!("pinwatch_flow_{k}"), format!("pinwatch_flow_{k}_total"));
            let got = m.get(&a).or_else(|| m.get(&b)).unwrap_or_else(|| panic!("flow.{k} not exported"));
            assert_eq!(got.value, x, "flow.{k}");
        }
    }
}
