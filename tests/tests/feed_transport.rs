//! `--feed-url` against a real HTTPS server started by the test: Python's
//! `http.server` behind `ssl`, with a throwaway PKI made by `openssl`, that
//! requires a bearer token and a client certificate (`CERT_REQUIRED`, as
//! nginx's `ssl_verify_client on`). The sensor is configured through a real
//! configuration file (`[feed]` keys, docs/config.md) and loads the feed
//! as replay does (`Enricher::load_sources_via`). Checked: the right token,
//! CA and certificate load every event; a wrong token, a wrong CA, a
//! missing client certificate and a wrong path each stop the start at
//! once with their class (`auth`, `tls`, `tls`, `not_found`).
//!
//! Needs python3 (with `ssl`) and openssl. When missing the test prints
//! `SKIPPED: <reason>` and passes, unless `PINWATCH_FEED_TLS_REQUIRED=1`
//! (set by `.ci/run`), which makes it fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinwatch::enrich::feed_http::{ErrorClass, StartError};
use pinwatch_testkit::sys::{have, scratch_dir, skip, KillOnDrop};

mod feedtls;
use feedtls::{make_pki, SERVER_PY};

/// The feed server, killed on drop, and the port it listens on.
struct Server {
    _child: KillOnDrop,
    port: u16,
}

fn start_server(dir: &Path, token: &str, served: &Path) -> Server {
    std::fs::write(dir.join("server.py"), SERVER_PY).expect("script");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let out = std::fs::File::create(dir.join("server.out")).expect("log");
    let err = std::fs::File::create(dir.join("server.err")).expect("log");
    let child = KillOnDrop(
        Command::new("python3")
            .args([&p("server.py"), &p("server.pem"), &p("server.key"), &p("clientca.pem"), token, "0", &served.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("python3"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("server.out")).unwrap_or_default();
        if let Some(port) = text.lines().find_map(|l| l.strip_prefix("ready ")).and_then(|p| p.trim().parse().ok()) {
            return Server { _child: child, port };
        }
        if Instant::now() >= deadline {
            drop(child);
            panic!("feed server did not start: {}", std::fs::read_to_string(dir.join("server.err")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn binding(ip: &str, dev: &str, ctx: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_type":"ip_binding","event_time":"2026-01-01T00:00:00Z","observed_time":"2026-01-01T00:00:00Z","device":{{"id":"{dev}"}},"action":"assign","ip":"{ip}","network":{{"context":"{ctx}"}},"valid_from":"2026-01-01T00:00:00Z","valid_until":"2099-01-01T00:00:00Z","confidence":"authenticated"}}"#
    )
}

/// Load `url` with a configuration made of `feed_keys` (the `[feed]` table).
fn load(dir: &Path, feed_keys: &str, url: &str) -> (anyhow::Result<(pinwatch::enrich::Enricher, Vec<String>)>, Duration) {
    let cfg = pinwatch::config::Config::parse("feed-test.toml", &format!("[feed]\n{feed_keys}"), dir).expect("config loads");
    let t = Instant::now();
    let r =
        pinwatch::enrich::Enricher::load_sources_via(&[] as &[PathBuf], &[url.to_string()], Duration::from_secs(20), cfg.feed.http.clone());
    (r, t.elapsed())
}

fn class_of(r: &anyhow::Result<(pinwatch::enrich::Enricher, Vec<String>)>) -> Option<ErrorClass> {
    r.as_ref().err().and_then(|e| e.downcast_ref::<StartError>()).map(|e| e.class)
}

#[test]
fn feed_url_with_token_ca_and_client_certificate() {
    for tool in ["python3", "openssl"] {
        if !have(tool) {
            return skip("PINWATCH_FEED_TLS_REQUIRED", "feed TLS test", &format!("{tool} not installed"));
        }
    }
    let dir = scratch_dir("feed-tls");
    make_pki(&dir);
    let token = "t0ken-4f9a2c";
    std::fs::write(dir.join("token"), format!("{token}\n")).expect("token");
    std::fs::write(dir.join("wrong-token"), "nope\n").expect("token");
    let served = dir.join("served.jsonl");
    let events: Vec<String> =
        (1..=150).map(|i| binding(&format!("10.44.{}.{}", i / 200, i % 200 + 1), &format!("dev-{i}"), "vpn1")).collect();
    std::fs::write(&served, events.join("\n") + "\n").expect("feed");
    let server = start_server(&dir, token, &served);
    let url = format!("https://127.0.0.1:{}/feed", server.port);
    let good =
        "http_header_file = \"token\"\nhttp_ca_file = \"ca.pem\"\nhttp_client_cert = \"client.pem\"\nhttp_client_key = \"client.key\"\n";

    // Everything right: both pages (100 + 50 lines) arrive.
    let (r, _) = load(&dir, good, &url);
    let (en, errors) = r.expect("loads");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(en.stats.feed.events, 150);
    assert_eq!(en.leases().len(), 150);

    // Each wrong part: an error at once, with its class.
    let cases = [
        ("wrong token", good.replace("\"token\"", "\"wrong-token\""), url.clone(), ErrorClass::Auth),
        ("no token", good.replace("http_header_file = \"token\"\n", ""), url.clone(), ErrorClass::Auth),
        ("wrong CA", good.replace("\"ca.pem\"", "\"wrongca.pem\""), url.clone(), ErrorClass::Tls),
        (
            "no client certificate",
            good.replace("http_client_cert = \"client.pem\"\nhttp_client_key = \"client.key\"\n", ""),
            url.clone(),
            ErrorClass::Tls,
        ),
        (
            "client certificate of another CA",
            good.replace("\"client.pem\"", "\"server.pem\"").replace("\"client.key\"", "\"server.key\""),
            url.clone(),
            ErrorClass::Tls,
        ),
        ("wrong path", good.to_string(), url.replace("/feed", "/nofeed"), ErrorClass::NotFound),
    ];
    for (what, keys, u, want) in cases {
        let (r, took) = load(&dir, &keys, &u);
        eprintln!("{what}: {:?} after {took:?}", class_of(&r));
        assert_eq!(class_of(&r), Some(want), "{what}: {:?}", r.as_ref().err());
        assert!(took < Duration::from_secs(5), "{what}: reported after {took:?}, not at once");
        let msg = format!("{:#}", r.err().expect("error"));
        assert!(msg.contains(&u) && msg.contains(want.as_str()), "{what}: the message names the URL and the class: {msg}");
        assert!(!msg.contains(token), "{what}: the token is never in a message: {msg}");
    }
    // Nothing listening any more: refused, at once.
    let port = server.port;
    drop(server);
    let (r, took) = load(&dir, good, &format!("https://127.0.0.1:{port}/feed"));
    assert_eq!(class_of(&r), Some(ErrorClass::Refused), "{:?}", r.as_ref().err());
    assert!(took < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}
