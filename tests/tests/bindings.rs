//! IP bindings from real systems (issue 18), each against the real daemon
//! in network namespaces made here (docs/bindings.md):
//!
//! * `radius_radclient_*`: FreeRADIUS's `radclient`, in one namespace,
//!   sends accounting (Start / Interim-Update / Stop, and one request with
//!   the wrong secret) to `pinwatch bindings` in another; the bindings it
//!   writes are replayed with the testbed's fallback capture, and every
//!   session is attributed to the device the inventory names;
//! * `radius_freeradius_proxy_*`: a FreeRADIUS server, configured here,
//!   proxies accounting from `radclient` to `pinwatch bindings` as its home
//!   server — FreeRADIUS checks pinwatch's Accounting-Response
//!   authenticators before it answers `radclient`;
//! * `kea_dhclient_*`: `kea-dhcp4` serves a `dhclient` across a veth pair;
//!   lease, renewal (across Kea's lease file cleanup), release and expiry
//!   in its memfile lease file become bindings.
//!
//! They need root, `ip netns`, and Debian's `freeradius`, `freeradius-utils`,
//! `kea-dhcp4-server` and `isc-dhcp-client` (installed by `.ci/run`). When
//! any is missing they print `SKIPPED: <reason>` and pass, unless
//! `PINWATCH_BINDINGS_REQUIRED=1` (set by `.ci/run`), which makes them fail.
//! Namespaces are named `pwbindings-PID-N-*` and their interfaces
//! `pwbindings-*`; both are removed at the end, with the temp dir (kept when
//! the test fails).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_enrichment::feed::{EventBody, FeedReader};
use pinwatch_enrichment::leases::LeaseMap;
use pinwatch_testkit::netns::{self, Lab};
use pinwatch_testkit::sys::{self, have, is_root, must};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pinwatch-bindings");

fn skip(reason: &str) {
    sys::skip("PINWATCH_BINDINGS_REQUIRED", "bindings test", reason);
}

/// Why this machine cannot run the test, if it cannot (a namespace that
/// cannot be made is found by [`pair`]).
fn cannot_run(progs: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for p in progs {
        if !have(p) {
            return Some(format!("{p} not installed (Debian: freeradius freeradius-utils kea-dhcp4-server isc-dhcp-client)"));
        }
    }
    None
}

/// The interface of namespace `side` ("a" or "b") of a [`pair`].
fn dev(tag: &str, side: &str) -> String {
    format!("pwbindings-{tag}{side}")
}

/// Namespaces `a` and `b` (`pwbindings-PID-N-a`, `…-b`) joined by a veth
/// pair, `a`'s end ([`dev`]) .1 of `net` (a /24 given as its first three
/// octets), `b`'s end with MAC `mac_b` if given and no address; `None`
/// (after [`skip`]) if no namespace can be made. All removed on drop, with
/// the temp dir (kept if the test fails); those left by test processes
/// that were killed are removed first.
fn pair(tag: &str, net: &str, mac_b: Option<&str>) -> Option<Lab> {
    netns::remove_stale("pwbindings");
    let mut lab = Lab::new("pwbindings", &format!("bindings-{tag}"));
    lab.keep_dir_on_panic();
    let a = match lab.add_ns("a") {
        Ok(ns) => ns,
        Err(e) => {
            skip(&format!("cannot create a network namespace: {e}"));
            return None;
        }
    };
    let b = lab.must_add_ns("b");
    let (dev_a, dev_b) = (dev(tag, "a"), dev(tag, "b"));
    lab.veth((&a, &dev_a), (&b, &dev_b));
    if let Some(m) = mac_b {
        lab.ip(&b, &["link", "set", "dev", &dev_b, "address", m]);
    }
    lab.ip(&a, &["addr", "add", &format!("{net}.1/24"), "dev", &dev_a]);
    lab.ip(&a, &["link", "set", &dev_a, "up"]);
    lab.ip(&a, &["link", "set", "lo", "up"]);
    lab.ip(&b, &["link", "set", &dev_b, "up"]);
    lab.ip(&b, &["link", "set", "lo", "up"]);
    Some(lab)
}

/// Give `b`'s end of a [`pair`] address .2 of `net`.
fn address_b(lab: &Lab, tag: &str, net: &str) {
    lab.ip(&lab.ns("b"), &["addr", "add", &format!("{net}.2/24"), "dev", &dev(tag, "b")]);
}

/// Start `prog ARGS` in namespace `ns`, stdout and stderr to `log` in the
/// lab's dir; killed when the lab is dropped.
fn in_ns(lab: &mut Lab, ns: &str, prog: &str, args: &[&str], log: &str) {
    let f = fs::File::create(lab.path(log)).expect("log");
    let mut all = vec![prog];
    all.extend_from_slice(args);
    let child = lab.cmd(ns, &all).stdout(f.try_clone().expect("log")).stderr(f).spawn().expect("spawn");
    lab.keep(child);
}

/// `pinwatch bindings` in namespace `ns`, answering RADIUS accounting on
/// `listen` from `client` (`IP=CONTEXT`), with its secret, inventory,
/// output and stats files.
fn radius_bindings(lab: &mut Lab, ns: &str, listen: &str, client: &str, [secret, inv, feed, st]: [&Path; 4]) {
    let p = |f: &Path| f.to_str().expect("path").to_string();
    let (secret, inv, feed, st) = (p(secret), p(inv), p(feed), p(st));
    let args = [
        "--radius-listen",
        listen,
        "--radius-secret-file",
        &secret,
        "--radius-client",
        client,
        "--inventory",
        &inv,
        "-o",
        &feed,
        "--stats-file",
        &st,
    ];
    in_ns(lab, ns, BIN, &args, "pinwatch.log");
}

fn read_lines(p: &Path) -> Vec<Value> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("feed line is JSON"))
        .collect()
}

/// Wait until `p` holds `n` lines (or the timeout).
fn wait_lines(p: &Path, n: usize, secs: u64) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = read_lines(p);
        if v.len() >= n || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Wait until the stats file's `bindings.KEY` reaches `n`.
fn wait_stat(p: &Path, key: &str, n: u64, secs: u64) -> Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = stats(p);
        if s["bindings"][key].as_u64().unwrap_or(0) >= n || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run radclient in `ns` with `attrs` (one `Attr = value` per line).
fn radclient(ns: &str, server: &str, secret: &str, attrs: &str) -> bool {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, "radclient", "-r", "2", "-t", "2", server, "acct", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("radclient");
    c.stdin.take().expect("stdin").write_all(attrs.as_bytes()).expect("write");
    c.wait().expect("radclient").success()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a record timestamp `2026-11-25T10:47:13.509556+0000`.
fn record_secs(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().expect("digits");
    assert!(ts.ends_with("+0000"), "UTC timestamps: {ts}");
    days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

fn replay_fallback(feeds: Vec<PathBuf>) -> Vec<Value> {
    let text = fs::read_to_string(pcaps_dir().join("testbed.toml")).expect("testbed config");
    let config = pinwatch::config::Config::parse("testbed.toml", &text, &pcaps_dir()).expect("config");
    let opts = Options { config, progress: false, stats: true, feeds, threads: 1, ..Default::default() };
    let mut out = Vec::new();
    replay(&[Input::File(pcaps_dir().join("testbed-fallback.pcap"))], &opts, &mut out).expect("replay");
    String::from_utf8(out).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// The feed lines as a lease map (what the enricher builds from them).
fn lease_map(lines: &[Value]) -> LeaseMap {
    let mut rd = FeedReader::new(8);
    let mut m = LeaseMap::default();
    for (i, l) in lines.iter().enumerate() {
        let ev = rd.push_line(&l.to_string(), i as u64 + 1).expect("a valid feed line");
        if let EventBody::IpBinding(b) = &ev.body {
            m.apply_from(b, ev.device_id.as_deref(), ev.event_time_ns, ev.source.as_ref());
        }
    }
    m
}

const DEV_A: &str = "enterprises/corp/devices/old-phone";
const DEV_B: &str = "enterprises/corp/devices/pixel-7";
const MAC_A: &str = "02-00-00-0A-00-01";
const MAC_B: &str = "02-00-00-0B-00-02";

fn write_inventory(dir: &Path) -> PathBuf {
    // An Intune-like CSV export: its own column names, a quoted cell.
    let p = dir.join("inventory.csv");
    fs::write(
        &p,
        format!(
            "Device name,Device ID,Wi-Fi MAC,Primary user UPN\n\"Old phone, spare\",{DEV_A},{},carol@corp.example\nPixel 7,{DEV_B},{},alice@corp.example\n",
            MAC_A.replace('-', ":").to_lowercase(),
            MAC_B.replace('-', "")
        ),
    )
    .expect("inventory");
    p
}

/// The accounting sequence: device A holds the capture's client address
/// and stops 120 s before the first session; device B starts 30 s before
/// it, sends an Interim-Update, and stops 30 s after the last session.
fn accounting(client_ip: &str, first: i64, last: i64) -> Vec<String> {
    let req = |status: &str, mac: &str, user: &str, sess: &str, at: i64| {
        format!(
            "Acct-Status-Type = {status}\nUser-Name = \"{user}\"\nFramed-IP-Address = {client_ip}\nCalling-Station-Id = \"{mac}\"\nAcct-Session-Id = \"{sess}\"\nNAS-Identifier = \"wlc-hq-1\"\nEvent-Timestamp = {at}\n"
        )
    };
    vec![
        req("Start", MAC_A, "carol@corp.example", "sess-a", first - 600),
        req("Stop", MAC_A, "carol@corp.example", "sess-a", first - 120),
        req("Start", MAC_B, "alice@corp.example", "sess-b", first - 30),
        req("Interim-Update", MAC_B, "alice@corp.example", "sess-b", first - 10),
        req("Stop", MAC_B, "alice@corp.example", "sess-b", last + 30),
    ]
}

/// The TLS sessions of the capture: client address and start seconds.
fn capture_sessions() -> (String, i64, i64, usize) {
    let plain = replay_fallback(Vec::new());
    let tls: Vec<&Value> = plain.iter().filter(|e| e["event_type"] == "tls").collect();
    assert!(tls.len() >= 4, "the fallback capture has TLS sessions");
    let ips: BTreeSet<&str> = tls.iter().map(|e| e["src_ip"].as_str().expect("src_ip")).collect();
    assert_eq!(ips.len(), 1, "one client in the capture");
    let secs: Vec<i64> = tls.iter().map(|e| record_secs(e["timestamp"].as_str().expect("ts"))).collect();
    let first = *secs.iter().min().expect("sessions");
    let last = *secs.iter().max().expect("sessions");
    let ip = ips.into_iter().next().expect("ip").to_string();
    (ip, first, last, tls.len())
}

/// Every TLS session of the replay with these bindings is device B's, by
/// RADIUS, from the NAS, by its MAC.
fn assert_attributed(feed: &Path, n_sessions: usize) {
    let out = replay_fallback(vec![feed.to_path_buf()]);
    let tls: Vec<&Value> = out.iter().filter(|e| e["event_type"] == "tls").collect();
    assert_eq!(tls.len(), n_sessions);
    for e in tls {
        let m = &e["mobile"];
        assert_eq!(m["device_id"], DEV_B, "session {} attributed via RADIUS: {m}", e["flow_id"]);
        assert_eq!(m["binding"]["source"], "radius_accounting", "{m}");
        assert_eq!(m["binding"]["vendor"], "wlc-hq-1", "{m}");
        assert_eq!(m["binding"]["confidence"], "authenticated", "{m}");
        assert_eq!(m["binding"]["identity"]["kind"], "mac", "{m}");
        assert_eq!(m["binding"]["identity"]["value"], "02:00:00:0b:00:02", "{m}");
    }
}

#[test]
fn radius_radclient_accounting_binds_and_attributes_capture() {
    if let Some(why) = cannot_run(&["radclient"]) {
        return skip(&why);
    }
    let Some(mut lab) = pair("r1", "10.231.61", None) else { return };
    let dir = lab.dir.clone();
    let (client_ip, first, last, n) = capture_sessions();
    address_b(&lab, "r1", "10.231.61");
    let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
    let secret = dir.join("secret");
    fs::write(&secret, "radclient-test-secret\n").expect("secret");
    let (feed, st) = (dir.join("feed.jsonl"), dir.join("stats.json"));
    let inv = write_inventory(&dir);
    radius_bindings(&mut lab, &ns_a, "10.231.61.1:41813", "10.231.61.2=hq-wifi", [&secret, &inv, &feed, &st]);
    // The listener is up once the stats file exists.
    wait_stat(&st, "radius_packets", 0, 10);
    std::thread::sleep(Duration::from_millis(300));
    for (i, a) in accounting(&client_ip, first, last).iter().enumerate() {
        assert!(
            radclient(&ns_b, "10.231.61.1:41813", "radclient-test-secret", a),
            "request {i}: radclient got an Accounting-Response it accepted"
        );
    }
    // The wrong secret: no answer (radclient fails), counted.
    assert!(!radclient(&ns_b, "10.231.61.1:41813", "not-the-secret", &accounting(&client_ip, first, last)[0]));
    let s = wait_stat(&st, "radius_bad_authenticator", 1, 10);
    let lines = wait_lines(&feed, 5, 5);
    let b = &s["bindings"];
    assert_eq!(b["radius_accepted"], 5, "{s}");
    assert_eq!(b["radius_responses"], 5, "{s}");
    // radclient sends an unanswered request again (`-r 2`): every copy is
    // dropped as a bad authenticator, none answered.
    let bad = b["radius_bad_authenticator"].as_u64().unwrap_or(0);
    assert!(bad >= 1, "{s}");
    assert_eq!(b["radius_packets"].as_u64(), Some(5 + bad), "{s}");
    assert_eq!(b["inventory_hits"], 5, "{s}");
    assert_eq!(b["inventory_misses"], 0, "{s}");
    let actions: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["action"].as_str().unwrap_or(""), l["device"]["id"].as_str().unwrap_or(""))).collect();
    assert_eq!(actions, vec![("assign", DEV_A), ("release", DEV_A), ("assign", DEV_B), ("renew", DEV_B), ("release", DEV_B)]);
    // Between A's Stop and B's Start nobody holds the address; A's session
    // is over, B's holds through the capture and ends at its Stop.
    let m = lease_map(&lines);
    let ip = client_ip.parse().expect("ip");
    let ns = |s: i64| s * 1_000_000_000;
    assert_eq!(m.lookup("hq-wifi", ip, ns(first - 300)).map(|l| l.lease.device_id.clone()), Some(DEV_A.to_string()));
    assert!(m.lookup("hq-wifi", ip, ns(first - 60)).is_none(), "A's Stop ended its binding");
    assert_eq!(m.lookup("hq-wifi", ip, ns(first)).map(|l| l.lease.device_id.clone()), Some(DEV_B.to_string()));
    assert!(m.lookup("hq-wifi", ip, ns(last + 31)).is_none(), "B's Stop ended its binding");
    assert_attributed(&feed, n);
}

const FREERADIUS_CONF: &str = r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = @DIR@
raddbdir = @DIR@
radacctdir = @DIR@
name = freeradius
confdir = ${raddbdir}
modconfdir = ${confdir}/mods-config
run_dir = @DIR@
db_dir = ${raddbdir}
libdir = /usr/lib/freeradius
pidfile = ${run_dir}/${name}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {
  destination = stderr
}
security {
  allow_core_dumps = no
}
proxy_requests = yes
proxy server {
  default_fallback = no
}
home_server pinwatch {
  type = acct
  ipaddr = 127.0.0.1
  port = 41815
  secret = proxy-to-pinwatch-secret
  response_window = 5
}
home_server_pool pinwatch_pool {
  type = fail-over
  home_server = pinwatch
}
realm pinwatch {
  acct_pool = pinwatch_pool
}
client nas {
  ipaddr = 10.231.62.2
  secret = nas-to-freeradius-secret
}
thread pool {
  start_servers = 1
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 4
  max_requests_per_server = 0
}
modules {
  always ok {
    rcode = ok
  }
}
server default {
  listen {
    type = acct
    ipaddr = 10.231.62.1
    port = 41816
  }
  preacct {
    update control {
      &Proxy-To-Realm := "pinwatch"
    }
  }
  accounting {
    ok
  }
}
"#;

#[test]
fn radius_freeradius_proxy_to_pinwatch_binds_and_attributes_capture() {
    if let Some(why) = cannot_run(&["radclient", "freeradius"]) {
        return skip(&why);
    }
    let Some(mut lab) = pair("r2", "10.231.62", None) else { return };
    let dir = lab.dir.clone();
    let (client_ip, first, last, n) = capture_sessions();
    address_b(&lab, "r2", "10.231.62");
    let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
    fs::write(dir.join("radiusd.conf"), FREERADIUS_CONF.replace("@DIR@", dir.to_str().expect("path"))).expect("conf");
    let secret = dir.join("secret");
    fs::write(&secret, "proxy-to-pinwatch-secret\n").expect("secret");
    let (feed, st) = (dir.join("feed.jsonl"), dir.join("stats.json"));
    let inv = write_inventory(&dir);
    radius_bindings(&mut lab, &ns_a, "127.0.0.1:41815", "127.0.0.1=hq-wifi", [&secret, &inv, &feed, &st]);
    in_ns(&mut lab, &ns_a, "freeradius", &["-f", "-X", "-d", dir.to_str().expect("path")], "freeradius.log");
    wait_stat(&st, "radius_packets", 0, 10);
    // FreeRADIUS is up once its log says so.
    let end = Instant::now() + Duration::from_secs(15);
    while !fs::read_to_string(dir.join("freeradius.log")).unwrap_or_default().contains("Ready to process requests") {
        assert!(Instant::now() < end, "freeradius did not start: {}", fs::read_to_string(dir.join("freeradius.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, a) in accounting(&client_ip, first, last).iter().enumerate() {
        // FreeRADIUS answers radclient only after pinwatch's answer, whose
        // authenticator it checks, came back.
        assert!(radclient(&ns_b, "10.231.62.1:41816", "nas-to-freeradius-secret", a), "request {i} proxied and answered");
    }
    let s = wait_stat(&st, "radius_accepted", 5, 10);
    let lines = wait_lines(&feed, 5, 5);
    assert_eq!(s["bindings"]["radius_responses"], 5, "{s}");
    assert_eq!(s["bindings"]["radius_bad_authenticator"], 0, "{s}");
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, vec!["assign", "release", "assign", "renew", "release"]);
    assert_attributed(&feed, n);
}

const KEA_CONF: &str = r#"{"Dhcp4": {
  "interfaces-config": {"interfaces": ["@IFACE@"], "dhcp-socket-type": "raw"},
  "lease-database": {"type": "memfile", "persist": true, "name": "@DIR@/leases4.csv", "lfc-interval": 2},
  "valid-lifetime": 8, "renew-timer": 100, "rebind-timer": 200,
  "expired-leases-processing": {"reclaim-timer-wait-time": 1, "hold-reclaimed-time": 1, "flush-reclaimed-timer-wait-time": 1},
  "subnet4": [{"id": 63, "subnet": "10.231.63.0/24", "pools": [{"pool": "10.231.63.100 - 10.231.63.150"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "@DIR@/kea.log"}], "severity": "INFO"}]
}}"#;

/// dhclient's script: set or clear the address, nothing else (no resolv.conf).
const DHCLIENT_SCRIPT: &str = "#!/bin/sh\ncase \"$reason\" in\n  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev \"$interface\"; ip addr add \"$new_ip_address/24\" dev \"$interface\" ;;\n  RELEASE|EXPIRE|STOP|FAIL) ip addr flush dev \"$interface\" ;;\nesac\nexit 0\n";

#[test]
fn kea_dhclient_lease_renew_release_expire_become_bindings() {
    if let Some(why) = cannot_run(&["kea-dhcp4", "dhclient"]) {
        return skip(&why);
    }
    let mac = "02:00:00:63:00:07";
    let device = "enterprises/corp/devices/kea-client";
    let Some(mut lab) = pair("k1", "10.231.63", Some(mac)) else { return };
    let dir = lab.dir.clone();
    let (ns_a, ns_b, dev_b) = (lab.ns("a"), lab.ns("b"), dev("k1", "b"));
    let d = dir.to_str().expect("path");
    fs::write(dir.join("kea.json"), KEA_CONF.replace("@DIR@", d).replace("@IFACE@", &dev("k1", "a"))).expect("conf");
    let script = dir.join("dhscript");
    fs::write(&script, DHCLIENT_SCRIPT).expect("script");
    must(&["chmod", "+x", script.to_str().expect("path")]);
    // The inventory as JSON lines, MAC in another spelling.
    let inv = dir.join("inventory.jsonl");
    fs::write(&inv, format!("{{\"device_id\":\"{device}\",\"macs\":[\"0200.0063.0007\"]}}\n")).expect("inventory");
    let (feed, st) = (dir.join("feed.jsonl"), dir.join("stats.json"));
    let leases = dir.join("leases4.csv");
    let kea_env = format!("KEA_PIDFILE_DIR={d} KEA_LOCKFILE_DIR={d}");
    in_ns(&mut lab, &ns_a, "sh", &["-c", &format!("{kea_env} exec kea-dhcp4 -c {d}/kea.json")], "kea.out");
    let end = Instant::now() + Duration::from_secs(10);
    while !leases.exists() {
        assert!(Instant::now() < end, "kea did not start: {}", fs::read_to_string(dir.join("kea.out")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.keep(
        Command::new(BIN)
            .args(["--kea-lease-file", leases.to_str().expect("p"), "--kea-context", "lab-lan", "--inventory", inv.to_str().expect("p")])
            .args(["-o", feed.to_str().expect("p"), "--stats-file", st.to_str().expect("p")])
            .stderr(fs::File::create(dir.join("pinwatch.log")).expect("log"))
            .spawn()
            .expect("pinwatch-bindings"),
    );
    let dh = |extra: &str| dhclient(&dir, &script, &ns_b, &dev_b, extra);
    // Lease.
    dh("-1");
    let l1 = wait_lines(&feed, 1, 10);
    assert_eq!(l1.len(), 1, "lease → one binding: {l1:?}");
    let ip = l1[0]["ip"].as_str().expect("ip").to_string();
    assert!(ip.starts_with("10.231.63."), "{ip}");
    assert_eq!((l1[0]["action"].as_str(), l1[0]["device"]["id"].as_str()), (Some("assign"), Some(device)));
    // Renewal after Kea's lease file cleanup (every 2 s) renamed the file.
    std::thread::sleep(Duration::from_millis(3_500));
    dh("-1");
    let l2 = wait_lines(&feed, 2, 10);
    assert_eq!(l2.len(), 2, "renewal → a second binding: {l2:?}");
    assert_eq!(l2[1]["ip"], ip.as_str());
    assert!(l2[1]["valid_until"].as_str() > l1[0]["valid_until"].as_str(), "the renewal extends the lease");
    let s = stats(&st);
    assert!(s["bindings"]["kea_files_opened"].as_u64().unwrap_or(0) >= 2, "the renamed lease file was followed into the new one: {s}");
    // Release.
    std::thread::sleep(Duration::from_millis(1_100));
    dh("-r");
    let l3 = wait_lines(&feed, 3, 10);
    assert_eq!(l3.len(), 3, "release → a third line: {l3:?}");
    assert_eq!((l3[2]["action"].as_str(), l3[2]["device"]["id"].as_str()), (Some("release"), Some(device)));
    let release_s = record_like(l3[2]["valid_until"].as_str().expect("until"));
    // Lease again (after a gap, so the release shows), then let it
    // expire: Kea reclaims it (state 2).
    std::thread::sleep(Duration::from_millis(2_500));
    dh("-1");
    let l4 = wait_lines(&feed, 5, 25);
    let actions: Vec<&str> = l4.iter().map(|l| l["action"].as_str().unwrap_or("")).collect();
    assert_eq!(&actions[..5], &["assign", "assign", "release", "assign", "expire"], "{l4:?}");
    // As a lease map: held after the lease, free after the release, held
    // again, and free after the expiry (past the grace window).
    let m = lease_map(&l4);
    let ipa = ip.parse().expect("ip");
    let from1 = record_like(l1[0]["valid_from"].as_str().expect("from"));
    let held = |s: i64| m.lookup("lab-lan", ipa, s * 1_000_000_000).map(|l| l.lease.device_id.clone());
    assert_eq!(held(from1), Some(device.to_string()));
    assert_eq!(held(release_s + 1), None, "released");
    let expire_s = record_like(l4[4]["valid_until"].as_str().expect("until"));
    assert_eq!(held(expire_s - 1), Some(device.to_string()));
    assert_eq!(held(expire_s + 61), None, "expired, past the grace window");
    let s = stats(&st);
    assert_eq!(s["bindings"]["inventory_misses"], 0, "{s}");
    assert!(s["bindings"]["kea_leases"].as_u64().unwrap_or(0) >= 5, "{s}");
}

/// Run dhclient once in namespace `ns` on interface `iface` with `extra`
/// (`-1`: get or renew a lease, `-r`: release it), with its files in `dir`
/// and `script` as its script.
fn dhclient(dir: &Path, script: &Path, ns: &str, iface: &str, extra: &str) {
    let d = dir.to_str().expect("path");
    let cmd = format!("dhclient {extra} -sf {} -lf {d}/dh.leases -pf {d}/dh.pid {iface}", script.display());
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", &cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dhclient");
    assert!(st.success(), "{cmd}");
    // dhclient stays to renew on its own: stop it, the test renews. Its
    // pid file is written by the background process, maybe a moment later.
    if extra != "-r" {
        let end = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            match fs::read_to_string(dir.join("dh.pid")) {
                Ok(p) if !p.trim().is_empty() => break p,
                _ if Instant::now() > end => panic!("dhclient wrote no pid file"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let _ = Command::new("kill").arg(pid.trim()).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = fs::remove_file(dir.join("dh.pid"));
}

/// Unix seconds of an RFC 3339 `…Z` time as `pinwatch bindings` writes it.
fn record_like(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().expect("digits");
    assert!(t.ends_with('Z'), "{t}");
    days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}
