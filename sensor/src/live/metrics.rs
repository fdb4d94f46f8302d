//! A Prometheus metrics endpoint (`pinwatch live --metrics-listen ADDR`):
//! the counters of the `stats` record, in the Prometheus text exposition
//! format (version 0.0.4), served by a small HTTP/1.1 server on its own
//! thread. Documented for operators in `docs/operations.md`.
//!
//! There is no second set of counters: the engine thread hands the same
//! stats body that a `stats` record carries ([`stats_body`]) to
//! [`MetricsServer::publish`] about once a second, which renders it
//! ([`render`]); a scrape returns the last rendering. The mapping is
//! mechanical, so every counter of the stats record (new ones included)
//! is exported under a predictable name:
//!
//! - every number or boolean (as 0/1) at path `a.b.c` of the stats body
//!   becomes `pinwatch_a_b_c`, a final `_s` spelled `_seconds`; a counter
//!   gets `_total` appended;
//! - a value is a gauge when its last key names a level rather than a
//!   running count (see [`is_gauge`]: `uptime_s`, `*_max`, `*_limit`,
//!   `*_now`, `pending_*`, `caught_up`, …), a counter otherwise;
//! - an array of objects becomes one label: the element's `name`,
//!   `interface`, `source`, `ring` or `id` (label named after the array:
//!   `interfaces` → `interface`, `feeds` → `feed`, `rings` → `ring`, else
//!   `index`);
//! - the `outcomes` map becomes the label `outcome`;
//! - strings are not exported, except `live.output.kind` as the `kind` label
//!   of the output metrics.
//!
//! Besides, `pinwatch_records_total{event_type=…}` gathers the records
//! written per event type (`tls`, `quic`, `alert`) from the same counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest request head read from a scraper.
const REQUEST_MAX: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The engine publishes at most this often.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The stats body of a `stats` record: the engine's counters with `live` beside them.
pub fn stats_body(engine: &crate::run::pipeline::Stats, live: &impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(engine).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("live".into(), serde_json::to_value(live).unwrap_or(Value::Null));
    }
    v
}

/// True for keys whose value is a level (gauge), not a running count.
pub fn is_gauge(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "uptime_s",
        "final",
        "caught_up",
        "flow_cap",
        "buffer_budget",
        "shards",
        "active",
        "flows_active",
        "packets_now",
        "pending_bytes",
        "pending_lines",
    ];
    EXACT.contains(&key)
        || key.ends_with("_max")
        || key.ends_with("_limit")
        || key.ends_with("_now")
        || key.starts_with("pending_")
        || key.ends_with("_active")
        || key.starts_with("active_")
}

#[derive(Default)]
struct Family {
    gauge: bool,
    samples: Vec<(Vec<(String, String)>, String)>,
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn number(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Number(n) => Some(if let Some(u) = n.as_u64() {
            u.to_string()
        } else if let Some(i) = n.as_i64() {
            i.to_string()
        } else {
            let f = n.as_f64()?;
            if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if f > 0.0 { "+Inf" } else { "-Inf" }.into()
            } else {
                format!("{f}")
            }
        }),
        _ => None,
    }
}

fn label_for_array(key: &str) -> &str {
    match key {
        "interfaces" => "interface",
        "feeds" => "feed",
        "rings" => "ring",
        "workers" => "worker",
        _ => "index",
    }
}

fn walk(v: &Value, path: &mut Vec<String>, labels: &mut Vec<(String, String)>, out: &mut BTreeMap<String, Family>) {
    match v {
        Value::Object(m) => {
            let pushed_kind = if path.last().is_some_and(|k| k == "output") {
                m.get("kind").and_then(Value::as_str).map(|k| labels.push(("kind".into(), k.to_string()))).is_some()
            } else {
                false
            };
            let is_map = path.last().is_some_and(|k| k == "outcomes");
            for (k, x) in m {
                if is_map {
                    labels.push(("outcome".into(), k.clone()));
                    walk(x, path, labels, out);
                    labels.pop();
                } else {
                    path.push(k.clone());
                    walk(x, path, labels, out);
                    path.pop();
                }
            }
            if pushed_kind {
                labels.pop();
            }
        }
        Value::Array(items) => {
            let label = label_for_array(path.last().map_or("", String::as_str)).to_string();
            for (i, item) in items.iter().enumerate() {
                let id = ["name", "interface", "source", "ring", "id"]
                    .iter()
                    .find_map(|k| item.get(*k))
                    .and_then(|x| x.as_str().map(str::to_string).or_else(|| number(x)))
                    .unwrap_or_else(|| i.to_string());
                labels.push((label.clone(), id));
                walk(item, path, labels, out);
                labels.pop();
            }
        }
        _ => {
            let Some(val) = number(v) else { return };
            let Some(last) = path.last() else { return };
            let gauge = is_gauge(last);
            let mut name = format!("pinwatch_{}", sanitize(&path.join("_")));
            // Base units, spelled out (Prometheus naming): `uptime_s` → `uptime_seconds`.
            if let Some(stem) = name.strip_suffix("_s") {
                name = format!("{stem}_seconds");
            }
            if !gauge && !name.ends_with("_total") {
                name.push_str("_total");
            }
            let f = out.entry(name).or_insert_with(|| Family { gauge, ..Default::default() });
            f.samples.push((labels.clone(), val));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The stats body in the Prometheus text exposition format.
pub fn render(stats: &Value) -> String {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    walk(stats, &mut Vec::new(), &mut Vec::new(), &mut fams);
    let records = fams.entry("pinwatch_records_total".into()).or_default();
    for (et, key) in [("tls", "tls_records_logged"), ("quic", "quic_records_logged"), ("alert", "alerts_logged")] {
        if let Some(v) = stats.get(key).and_then(number) {
            records.samples.push((vec![("event_type".into(), et.into())], v));
        }
    }
    let mut s = String::new();
    for (name, f) in &fams {
        if f.samples.is_empty() {
            continue;
        }
        let help = if name == "pinwatch_records_total" {
            "records written per event type".to_string()
        } else {
            format!("stats record field {}", name.trim_start_matches("pinwatch_"))
        };
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {}", if f.gauge { "gauge" } else { "counter" });
        for (labels, v) in &f.samples {
            if labels.is_empty() {
                let _ = writeln!(s, "{name} {v}");
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = writeln!(s, "{name}{{{}}} {v}", l.join(","));
            }
        }
    }
    s
}

/// The HTTP endpoint; see the module documentation.
pub struct MetricsServer {
    page: Arc<Mutex<Arc<String>>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    last: Mutex<Option<Instant>>,
    /// Scrapes answered.
    pub scrapes: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listen on `addr` (`127.0.0.1:9425`, `[::]:9425`).
    pub fn start(addr: &str) -> std::io::Result<MetricsServer> {
        let l = TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("--metrics-listen {addr}: {e}")))?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let page = Arc::new(Mutex::new(Arc::new(String::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (p2, s2, n2) = (Arc::clone(&page), Arc::clone(&stop), Arc::clone(&scrapes));
        let handle = std::thread::Builder::new().name("metrics".into()).spawn(move || serve(l, p2, s2, n2))?;
        Ok(MetricsServer { page, stop, addr, last: Mutex::new(None), scrapes, handle: Some(handle) })
    }

    /// The address the server listens on (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when the last publication is [`PUBLISH_EVERY`] old.
    pub fn due(&self) -> bool {
        self.last.lock().map(|l| l.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY)).unwrap_or(true)
    }

    /// Render `stats` (a stats body) for the next scrapes.
    pub fn publish(&self, stats: &Value) {
        let page = Arc::new(render(stats));
        if let Ok(mut p) = self.page.lock() {
            *p = page;
        }
        if let Ok(mut l) = self.last.lock() {
            *l = Some(Instant::now());
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(l: TcpListener, page: Arc<Mutex<Arc<String>>>, stop: Arc<AtomicBool>, scrapes: Arc<AtomicU64>) {
    while !stop.load(Relaxed) {
        match l.accept() {
            Ok((c, _)) => {
                let body = page.lock().map(|p| Arc::clone(&p)).unwrap_or_default();
                if answer(c, &body) {
                    scrapes.fetch_add(1, Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One request, one answer, then close. True when metrics were served.
fn answer(mut c: TcpStream, body: &str) -> bool {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = c.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_MAX {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, text, ok) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, true),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain; charset=utf-8", "metrics are at /metrics\n", false),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET /metrics\n", false),
    };
    let mut resp =
        format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", text.len()).into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(text.as_bytes());
    }
    c.write_all(&resp).is_ok() && ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let v = serde_json::json!({
            "capture": {"packets": 10, "bytes": 1500},
            "tls_records_logged": 3, "quic_records_logged": 1, "alerts_logged": 2,
            "outcomes": {"established": 2, "client_rejected": 1},
            "memory": {"flows_max": 4},
            "live": {"uptime_s": 1.5, "final": false,
                     "interfaces": [{"name": "eth\"1", "received": 7, "dropped": 0}],
                     "output": {"kind": "redis", "lines_written": 5, "pending_lines": 0},
                     "feeds": [{"source": "f.jsonl", "caught_up": true, "errors": 0, "last_error": null}]}
        });
        let t = render(&v);
        for want in [
            "# TYPE pinwatch_capture_packets_total counter\npinwatch_capture_packets_total 10\n",
            "pinwatch_outcomes_total{outcome=\"client_rejected\"} 1\n",
            "# TYPE pinwatch_memory_flows_max gauge\n",
            "pinwatch_live_uptime_seconds 1.5\n",
            "pinwatch_live_interfaces_received_total{interface=\"eth\\\"1\"} 7\n",
            "pinwatch_live_output_lines_written_total{kind=\"redis\"} 5\n",
            "# TYPE pinwatch_live_output_pending_lines gauge\npinwatch_live_output_pending_lines{kind=\"redis\"} 0\n",
            "pinwatch_live_feeds_caught_up{feed=\"f.jsonl\"} 1\n",
            "pinwatch_records_total{event_type=\"tls\"} 3\npinwatch_records_total{event_type=\"quic\"} 1\npinwatch_records_total{event_type=\"alert\"} 2\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        // One TYPE line per family.
        assert_eq!(t.matches("# TYPE pinwatch_records_total ").count(), 1);
    }

    #[test]
    fn serves_over_http() {
        let m = MetricsServer::start("127.0.0.1:0").expect("bind");
        m.publish(&serde_json::json!({"capture": {"packets": 5}}));
        let get = |req: &str| {
            let mut c = TcpStream::connect(m.local_addr()).expect("connect");
            c.write_all(req.as_bytes()).expect("send");
            let mut s = String::new();
            c.read_to_string(&mut s).expect("read");
            s
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(r.ends_with("pinwatch_capture_packets_total 5\n"), "{r}");
        assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // A scraper that sends nothing does not hold the server for long.
        let _idle = TcpStream::connect(m.local_addr()).expect("connect");
        let t0 = Instant::now();
        assert!(get("GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(t0.elapsed() < REQUEST_TIMEOUT * 2);
        // Counted once the answer is written (the client may see it first).
        let t1 = Instant::now();
        while m.scrapes.load(Relaxed) < 2 && t1.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(m.scrapes.load(Relaxed), 2);
    }
}
