//! Feed operations on real traffic: `pinwatch live` (the `pinwatch-live`
//! program of this package) captures in a namespace `cap` holding two
//! bridges, each joining one client namespace to one server namespace.
//! Both clients have the **same** address, 10.66.0.2, and both servers
//! 10.66.0.1 (two VPN pools on one private range); the capture interfaces
//! are the bridge ports of the clients, `pwfeedopsA` and `pwfeedopsB`.
//!
//! - `contexts_follow_the_capture_interface`: the feed binds 10.66.0.2 to
//!   `device-A` in context `vpnA` and to `device-B` in `vpnB`; with
//!   `[[feed.contexts]]` by interface each session gets its own context's
//!   device; without, neither is guessed (counted as ambiguous).
//! - `state_survives_a_restart`: bindings learnt from a followed feed are
//!   written to `state_file` (periodically, and at SIGTERM); the feed then
//!   loses them, the sensor is restarted, and a session after the restart
//!   is attributed from the binding learnt before it. A corrupt state file
//!   is set aside and the sensor starts.
//! - `feed_url_health_and_server_restart`: `--feed-url` over HTTPS with a
//!   bearer token and a client certificate (Python `http.server` + `ssl`,
//!   `CERT_REQUIRED`): `stats.feed` shows `ok`, then `retrying` with class
//!   `refused` while the server is down, then `ok` again with the lines
//!   served after its restart, which enrich the next session; a wrong token
//!   stops the start at once with exit status 2.
//!
//! Needs root, network namespaces, ip, openssl, curl, python3. When they
//! are missing the tests print `SKIPPED: <reason>` and pass, unless
//! `PINWATCH_LIVE_REQUIRED=1` (set by `.ci/run`), which makes them fail.
//!
//! Run: `cargo test -p pinwatch-tests --features live --test feedops_live`.

mod feedtls;

use std::path::Path;
use std::time::{Duration, Instant};

use pinwatch_testkit::netns::{self, Lab};
use pinwatch_testkit::pki;
use pinwatch_testkit::sys::{have, is_root, skip};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pinwatch-live");

fn unavailable(reason: &str) -> Option<Lab> {
    skip("PINWATCH_LIVE_REQUIRED", "live test", reason);
    None
}

const SIDES: [&str; 2] = ["A", "B"];

/// Namespaces `cap`, `a`, `b`, `sa`, `sb` (`pwfeedops-PID-N-*`), a CA and
/// a leaf for `*.live.test` for the two TLS servers; removed on drop with
/// every process started in them (the temp dir is kept when the test fails).
fn new_lab(tag: &str) -> Option<Lab> {
    if !is_root() {
        return unavailable("not root (network namespaces and packet capture need root)");
    }
    for tool in ["ip", "openssl", "curl", "python3", "kill"] {
        if !have(tool) {
            return unavailable(&format!("{tool} not installed"));
        }
    }
    netns::remove_stale("pwfeedops");
    let mut lab = Lab::new("pwfeedops", &format!("feedops-{tag}"));
    lab.keep_dir_on_panic();
    let cap = match lab.add_ns("cap") {
        Ok(ns) => ns,
        Err(e) => return unavailable(&format!("cannot create a network namespace: {e}")),
    };
    lab.sysctl(&cap, "net.ipv6.conf.all.disable_ipv6=1");
    lab.ip(&cap, &["link", "set", "lo", "up"]);
    for side in SIDES {
        let client = lab.must_add_ns(&side.to_lowercase());
        let server = lab.must_add_ns(&format!("s{}", side.to_lowercase()));
        let br = format!("pwfeedopsbr{side}");
        lab.ip(&cap, &["link", "add", &br, "type", "bridge"]);
        lab.veth((&client, "pwfeedopsc"), (&cap, &format!("pwfeedops{side}")));
        lab.veth((&server, "pwfeedopss"), (&cap, &format!("pwfeedopsS{side}")));
        for port in [format!("pwfeedops{side}"), format!("pwfeedopsS{side}")] {
            lab.ip(&cap, &["link", "set", &port, "master", &br]);
            lab.ip(&cap, &["link", "set", &port, "up"]);
        }
        lab.ip(&cap, &["link", "set", &br, "up"]);
        for (ns, dev, ip) in [(&client, "pwfeedopsc", "10.66.0.2"), (&server, "pwfeedopss", "10.66.0.1")] {
            lab.sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1");
            lab.endpoint(ns, dev, &format!("{ip}/24"));
        }
    }
    pki::ca(&lab.dir, "origin-ca", "/CN=pinwatch feedops origin CA");
    pki::leaf(&lab.dir, "origin-ca", "leaf", "/CN=live.test", "serverAuth", &["DNS:*.live.test"]);
    Some(lab)
}

/// What these tests do in their lab.
trait FeedopsLab {
    /// openssl s_server on 10.66.0.1:443 in both server namespaces.
    fn tls_servers(&mut self);
    /// `pinwatch live ARGS` in `cap`; waits until it captures.
    fn pinwatch(&mut self, args: &[&str], log: &str) -> u32;
    /// curl from client namespace `side` ("a"/"b") to `https://SNI/`.
    fn curl(&self, side: &str, sni: &str) -> bool;
}

impl FeedopsLab for Lab {
    fn tls_servers(&mut self) {
        for side in ["sa", "sb"] {
            let ns = self.ns(side);
            let (cert, key) = (self.p("leaf.pem"), self.p("leaf.key"));
            self.spawn(
                &ns,
                &["openssl", "s_server", "-quiet", "-accept", "443", "-cert", &cert, "-key", &key, "-www"],
                &format!("s_server-{side}"),
            );
            assert!(self.wait_listening(&ns, 443, Duration::from_secs(10)), "s_server in {side} did not start");
        }
    }

    fn pinwatch(&mut self, args: &[&str], log: &str) -> u32 {
        let mut all = vec![BIN];
        all.extend_from_slice(args);
        let ns = self.ns("cap");
        let pid = self.spawn(&ns, &all, log);
        self.wait_for_log(&format!("{log}.err"), "pinwatch: capturing on", Duration::from_secs(30));
        pid
    }

    fn curl(&self, side: &str, sni: &str) -> bool {
        let resolve = format!("{sni}:443:10.66.0.1");
        let url = format!("https://{sni}/");
        let ca = self.p("origin-ca.pem");
        self.cmd(&self.ns(side), &["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", &ca, "--resolve", &resolve, &url])
            .output()
            .expect("curl")
            .status
            .success()
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()))).collect()
}

fn lines_so_far(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..=i]);
    whole.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn tls_by_sni<'a>(v: &'a [Value], sni: &str) -> Vec<&'a Value> {
    v.iter().filter(|r| r["event_type"] == "tls" && r["tls"]["sni"] == sni).collect()
}

fn binding(dev: &str, ctx: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_type":"ip_binding","event_time":"2026-01-01T00:00:00Z","observed_time":"2026-01-01T00:00:00Z","source":{{"kind":"vpn_concentrator"}},"device":{{"id":"{dev}"}},"action":"assign","ip":"10.66.0.2","network":{{"context":"{ctx}"}},"valid_from":"2026-01-01T00:00:00Z","valid_until":"2099-01-01T00:00:00Z","confidence":"authenticated"}}"#
    )
}

const CONTEXTS: &str = "[[feed.contexts]]\nname = \"vpnA\"\ninterfaces = [\"pwfeedopsA\"]\n\n[[feed.contexts]]\nname = \"vpnB\"\ninterfaces = [\"pwfeedopsB\"]\n";

/// Wait until the output holds a `tls` record for `sni`.
fn wait_tls(out: &Path, sni: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tls_by_sni(&lines_so_far(out), sni).is_empty() {
        assert!(Instant::now() < deadline, "no tls record for {sni}:\n{}", std::fs::read_to_string(out).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn contexts_follow_the_capture_interface() {
    let Some(mut lab) = new_lab("ctx") else {
        return;
    };
    lab.tls_servers();
    std::fs::write(lab.path("feed.jsonl"), [binding("device-A", "vpnA"), binding("device-B", "vpnB")].join("\n") + "\n").expect("feed");
    std::fs::write(lab.path("ctx.toml"), CONTEXTS).expect("config");
    let (feed, cfg, out_ctx, out_any) = (lab.p("feed.jsonl"), lab.p("ctx.toml"), lab.p("eve-ctx.json"), lab.p("eve-any.json"));
    let with = lab.pinwatch(
        &["-i", "pwfeedopsA", "-i", "pwfeedopsB", "-o", &out_ctx, "-c", &cfg, "--feed", &feed, "--stats-interval", "0"],
        "pw-ctx",
    );
    let without =
        lab.pinwatch(&["-i", "pwfeedopsA", "-i", "pwfeedopsB", "-o", &out_any, "--feed", &feed, "--stats-interval", "0"], "pw-any");
    assert!(lab.curl("a", "a.live.test"), "client A reaches its server");
    assert!(lab.curl("b", "b.live.test"), "client B reaches its server");
    for out in [&out_ctx, &out_any] {
        for sni in ["a.live.test", "b.live.test"] {
            wait_tls(Path::new(out), sni, Duration::from_secs(30));
        }
    }
    for pid in [with, without] {
        lab.signal(pid, "TERM");
        assert_eq!(lab.wait_up_to(pid, Duration::from_secs(20)), Some(0));
    }
    let all = lines(Path::new(&out_ctx));
    for (sni, iface, dev, ctx) in [("a.live.test", "pwfeedopsA", "device-A", "vpnA"), ("b.live.test", "pwfeedopsB", "device-B", "vpnB")] {
        let recs = tls_by_sni(&all, sni);
        assert_eq!(recs.len(), 1, "{sni}: {recs:?}");
        let r = recs[0];
        assert_eq!(r["src_ip"], "10.66.0.2", "{r}");
        assert_eq!(r["in_iface"], iface, "{r}");
        assert_eq!(r["mobile"]["device_id"], dev, "{sni} seen on {iface} gets {ctx}'s device: {r}");
        assert_eq!(r["mobile"]["binding"]["context"], ctx, "{r}");
    }
    let st = &all.last().expect("stats")["stats"]["enrichment"]["contexts"];
    assert_eq!(st["matched"], 2, "{st}");
    assert_eq!(st["ambiguous_feed"], 0, "{st}");
    // Without contexts: the same IP is bound to two devices; neither is guessed.
    let all = lines(Path::new(&out_any));
    for sni in ["a.live.test", "b.live.test"] {
        let r = tls_by_sni(&all, sni)[0];
        assert!(r.get("mobile").is_none(), "{sni}: no device guessed: {r}");
    }
    let st = &all.last().expect("stats")["stats"]["enrichment"]["contexts"];
    assert_eq!(st["ambiguous_feed"], 2, "{st}");
}

#[test]
fn state_survives_a_restart() {
    let Some(mut lab) = new_lab("state") else {
        return;
    };
    lab.tls_servers();
    let state = lab.path("pinwatch.state");
    std::fs::write(lab.path("state.toml"), format!("state_file = \"pinwatch.state\"\nstate_interval_s = 1\n\n{CONTEXTS}")).expect("config");
    let follow = lab.path("follow.jsonl");
    std::fs::write(&follow, [binding("device-A", "vpnA"), binding("device-B", "vpnB")].join("\n") + "\n").expect("feed");
    let (cfg, fol) = (lab.p("state.toml"), follow.to_string_lossy().into_owned());
    let args = |out: &str| -> Vec<String> {
        ["-i", "pwfeedopsA", "-i", "pwfeedopsB", "-o", out, "-c", &cfg, "--feed-follow", &fol, "--stats-interval", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };

    // Run 1: learns both bindings from the followed feed.
    let out1 = lab.p("eve1.json");
    let a1: Vec<String> = args(&out1);
    let pw = lab.pinwatch(&a1.iter().map(String::as_str).collect::<Vec<_>>(), "pw1");
    assert!(lab.curl("a", "before.live.test"));
    wait_tls(Path::new(&out1), "before.live.test", Duration::from_secs(30));
    // The periodic write, before any signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let periodic = loop {
        if let Ok(text) = std::fs::read_to_string(&state) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["leases"].as_array().is_some_and(|l| l.len() == 2) {
                    break v;
                }
            }
        }
        assert!(Instant::now() < deadline, "no periodic state write: {:?}", std::fs::read_to_string(&state));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(periodic["format"], "pinwatch-state");
    assert_eq!(periodic["version"], 1);
    lab.signal(pw, "TERM");
    assert_eq!(lab.wait_up_to(pw, Duration::from_secs(20)), Some(0));
    let r1 = tls_by_sni(&lines(Path::new(&out1)), "before.live.test")[0].clone();
    assert_eq!(r1["mobile"]["device_id"], "device-A", "{r1}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("state at shutdown")).expect("JSON");
    let leases = saved["leases"].as_array().expect("leases");
    let has =
        |ls: &[Value], ctx: &str, dev: &str| ls.iter().any(|l| l["context"] == ctx && l["device_id"] == dev && l["ip"] == "10.66.0.2");
    assert!(has(leases, "vpnA", "device-A") && has(leases, "vpnB", "device-B"), "{saved}");
    assert!(!lab.path("pinwatch.state.tmp").exists(), "no temporary file left");

    // The feed no longer holds the bindings (rotated away); restart.
    std::fs::write(&follow, "").expect("empty feed");
    let out2 = lab.p("eve2.json");
    let a2 = args(&out2);
    let pw = lab.pinwatch(&a2.iter().map(String::as_str).collect::<Vec<_>>(), "pw2");
    lab.wait_for_log("pw2.err", "2 bindings", Duration::from_secs(5));
    assert!(lab.curl("a", "after-a.live.test"));
    assert!(lab.curl("b", "after-b.live.test"));
    wait_tls(Path::new(&out2), "after-a.live.test", Duration::from_secs(30));
    wait_tls(Path::new(&out2), "after-b.live.test", Duration::from_secs(30));
    lab.signal(pw, "TERM");
    assert_eq!(lab.wait_up_to(pw, Duration::from_secs(20)), Some(0));
    let all = lines(Path::new(&out2));
    for (sni, dev, ctx) in [("after-a.live.test", "device-A", "vpnA"), ("after-b.live.test", "device-B", "vpnB")] {
        let r = tls_by_sni(&all, sni)[0];
        assert_eq!(r["mobile"]["device_id"], dev, "a session after the restart is attributed from the binding learnt before it: {r}");
        assert_eq!(r["mobile"]["binding"]["context"], ctx, "{r}");
    }
    let st = &all.last().expect("stats")["stats"]["live"]["state"];
    assert_eq!(st["loaded"], true, "{st}");
    assert_eq!(st["leases_loaded"], 2, "{st}");
    assert!(st["writes"].as_u64() >= Some(1), "{st}");
    // No binding lost across the restart.
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("JSON");
    let leases = again["leases"].as_array().expect("leases");
    assert!(has(leases, "vpnA", "device-A") && has(leases, "vpnB", "device-B"), "{again}");

    // Run 3: a corrupt state file is set aside; the sensor starts anyway.
    std::fs::write(&state, "{\"format\":\"pinwatch-state\",\"version\":1,\"leases\":[{\"con").expect("corrupt");
    let out3 = lab.p("eve3.json");
    let a3 = args(&out3);
    let pw = lab.pinwatch(&a3.iter().map(String::as_str).collect::<Vec<_>>(), "pw3");
    lab.signal(pw, "TERM");
    assert_eq!(lab.wait_up_to(pw, Duration::from_secs(20)), Some(0));
    let err = std::fs::read_to_string(lab.path("pw3.err")).unwrap_or_default();
    assert!(err.contains("cut short") && err.contains("set aside as"), "{err}");
    let all3 = lines(Path::new(&out3));
    let st = &all3.last().expect("stats")["stats"]["live"]["state"];
    assert_eq!(st["set_aside"], "corrupt", "{st}");
    let aside = st["set_aside_as"].as_str().expect("where");
    assert!(Path::new(aside).exists() && aside.contains(".bad-"), "{st}");
}

#[test]
fn feed_url_health_and_server_restart() {
    let Some(mut lab) = new_lab("url") else {
        return;
    };
    lab.tls_servers();
    feedtls::make_pki(&lab.dir);
    let token = "live-t0ken-93b1";
    std::fs::write(lab.path("token"), format!("{token}\n")).expect("token");
    std::fs::write(lab.path("bad-token"), "nope\n").expect("token");
    std::fs::write(lab.path("server.py"), feedtls::SERVER_PY).expect("script");
    let served = lab.path("served.jsonl");
    std::fs::write(&served, binding("device-A", "vpnA") + "\n").expect("feed");
    let port = (40000 + std::process::id() % 20000).to_string();
    let cap = lab.ns("cap");
    let server_args = [
        lab.p("server.py"),
        lab.p("server.pem"),
        lab.p("server.key"),
        lab.p("clientca.pem"),
        token.to_string(),
        port.clone(),
        served.to_string_lossy().into_owned(),
    ];
    let start_server = |lab: &mut Lab, log: &str| -> u32 {
        let mut a = vec!["python3"];
        a.extend(server_args.iter().map(String::as_str));
        let pid = lab.spawn(&cap, &a, log);
        lab.wait_for_log(&format!("{log}.out"), "ready", Duration::from_secs(10));
        pid
    };
    let server = start_server(&mut lab, "feed1");
    let tls = "http_ca_file = \"ca.pem\"\nhttp_client_cert = \"client.pem\"\nhttp_client_key = \"client.key\"\n";
    std::fs::write(lab.path("url.toml"), format!("[feed]\nhttp_header_file = \"token\"\n{tls}\n{CONTEXTS}")).expect("config");
    std::fs::write(lab.path("bad.toml"), format!("[feed]\nhttp_header_file = \"bad-token\"\n{tls}")).expect("config");
    let url = format!("https://127.0.0.1:{port}/feed");

    wrong_token_exits_at_once(&mut lab, &cap, &url);

    let (cfg, out) = (lab.p("url.toml"), lab.p("eve.json"));
    let pw = lab.pinwatch(
        &[
            "-i",
            "pwfeedopsA",
            "-i",
            "pwfeedopsB",
            "-o",
            &out,
            "-c",
            &cfg,
            "--feed-url",
            &url,
            "--feed-poll",
            "0.2",
            "--stats-interval",
            "0.5",
        ],
        "pw",
    );
    let wait_health = |what: &str, f: &dyn Fn(&Value) -> bool| -> Value { wait_feed_health(&out, what, f) };
    let h = wait_health("ok with the first line", &|h| h["state"] == "ok" && h["events_received"] == 1);
    assert_eq!(h["consecutive_failures"], 0, "{h}");
    assert!(h["last_success"].as_str().is_some_and(|t| t.len() > 20), "{h}");

    // The server goes away: retried with backoff, shown as failing.
    lab.kill_child(server);
    let h =
        wait_health("retrying after the server stopped", &|h| h["state"] == "retrying" && h["consecutive_failures"].as_u64() >= Some(2));
    assert_eq!(h["last_error_class"], "refused", "{h}");
    assert!(h["retry_in_ms"].as_u64().is_some_and(|ms| ms <= 30_000), "{h}");
    // A new binding while it is down; then it comes back on the same port.
    std::fs::write(&served, [binding("device-A", "vpnA"), binding("device-B", "vpnB")].join("\n") + "\n").expect("feed");
    let _server = start_server(&mut lab, "feed2");
    let h = wait_health("ok again after the restart", &|h| h["state"] == "ok" && h["events_received"] == 2);
    assert_eq!(h["consecutive_failures"], 0, "{h}");
    assert!(h["failures"].as_u64() >= Some(2), "{h}");
    // The binding served after the restart enriches the next session.
    assert!(lab.curl("b", "b-after.live.test"));
    wait_tls(Path::new(&out), "b-after.live.test", Duration::from_secs(30));
    lab.signal(pw, "TERM");
    assert_eq!(lab.wait_up_to(pw, Duration::from_secs(20)), Some(0));
    let r = tls_by_sni(&lines(Path::new(&out)), "b-after.live.test")[0].clone();
    assert_eq!(r["mobile"]["device_id"], "device-B", "{r}");
}

/// A wrong token (`bad.toml`): exit status 2 at once, the class named, the
/// token not.
fn wrong_token_exits_at_once(lab: &mut Lab, cap: &str, url: &str) {
    let t = Instant::now();
    let (bad_cfg, bad_out) = (lab.p("bad.toml"), lab.p("eve-bad.json"));
    let pid = lab.spawn(cap, &[BIN, "-i", "pwfeedopsA", "-o", &bad_out, "-c", &bad_cfg, "--feed-url", url], "pw-bad");
    assert_eq!(
        lab.wait_up_to(pid, Duration::from_secs(15)),
        Some(2),
        "{}",
        std::fs::read_to_string(lab.path("pw-bad.err")).unwrap_or_default()
    );
    assert!(t.elapsed() < Duration::from_secs(10), "reported after {:?}", t.elapsed());
    let err = std::fs::read_to_string(lab.path("pw-bad.err")).unwrap_or_default();
    assert!(err.contains("(auth)") && err.contains("HTTP 401") && !err.contains("nope"), "{err}");
}

/// The feed URL's health in the latest stats record of `out` for which `f`
/// holds, waiting 30 s at most (then failing with `what` and every health seen).
fn wait_feed_health(out: &str, what: &str, f: &dyn Fn(&Value) -> bool) -> Value {
    let health = |out: &str| -> Vec<Value> {
        lines_so_far(Path::new(out))
            .into_iter()
            .filter(|r| r["event_type"] == "stats")
            .map(|r| r["stats"]["feed"]["sources"][0].clone())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = health(out).into_iter().rev().find(|h| f(h)) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", health(out));
        std::thread::sleep(Duration::from_millis(100));
    }
}
