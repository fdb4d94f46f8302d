//! The `pinwatch` binary against hostile and careless input: what it exits
//! with, what it says, and that reads the user names are capped before the
//! memory is spent. (Cargo gives the path of a package's own binary only to
//! that package's integration tests, so these live here rather than in
//! `tests/tests/hostile.rs`, which drives the library.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pinwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinwatch")).args(args).stdin(Stdio::null()).output().expect("pinwatch runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dir(name: &str) -> PathBuf {
    pinwatch_testkit::sys::scratch_dir(&format!("cli-{name}"))
}

/// A little-endian microsecond pcap with one Ethernet/IPv4/TCP SYN.
fn one_packet_pcap() -> Vec<u8> {
    use pinwatch_testkit::frames::{tcp_v4, SYN};
    let mut w = pinwatch_testkit::pcap::Writer::new(1);
    w.record(1, 0, &tcp_v4([10, 0, 0, 1].into(), 40000, [10, 0, 0, 2].into(), 443, 1, SYN, &[]));
    w.into_bytes()
}

/// README: "2 when nothing could be run"; 1 when a capture was partly read.
#[test]
fn nothing_readable_exits_2_partly_read_exits_1() {
    let d = dir("exit");
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    let garbage = d.join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").expect("write");
    let missing = d.join("missing.pcap");
    for (what, path) in [("missing", &missing), ("empty", &empty), ("directory", &d), ("garbage", &garbage)] {
        let o = pinwatch(&["replay", "--quiet", path.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(path.to_str().expect("utf-8")), "{what}: the error names the file: {}", stderr(&o));
    }
    // Some of it read: a good packet, then a cut record.
    let mut cut = one_packet_pcap();
    cut.extend([1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, 1, 2, 3]);
    let cut_path = d.join("cut.pcap");
    std::fs::write(&cut_path, &cut).expect("write");
    let o = pinwatch(&["replay", "--quiet", cut_path.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // A good file next to a missing one: something ran.
    let good = d.join("good.pcap");
    std::fs::write(&good, one_packet_pcap()).expect("write");
    let o = pinwatch(&["replay", "--quiet", good.to_str().expect("utf-8"), missing.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn errors_do_not_repeat_themselves() {
    for args in [
        vec!["replay", "--quiet", "/nonexistent/x.pcap"],
        vec!["replay", "--quiet", "-c", "/nonexistent/x.toml", "/nonexistent/x.pcap"],
        vec!["walk", "/nonexistent/x.pcap"],
    ] {
        let o = pinwatch(&args);
        let e = stderr(&o);
        assert_eq!(e.matches("No such file or directory").count(), 1, "{args:?}: {e}");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
    }
}

#[test]
fn a_full_output_is_named() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let d = dir("full");
    let good = d.join("good.pcap");
    std::fs::write(&good, one_packet_pcap()).expect("write");
    let o = pinwatch(&["replay", "--quiet", "-o", "/dev/full", good.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn endless_inputs_end_with_an_error_naming_them() {
    // Each of these read without end before; now each is refused at once
    // (not a capture magic) or at its cap.
    let d = dir("endless");
    let good = d.join("good.pcap");
    std::fs::write(&good, one_packet_pcap()).expect("write");
    let g = good.to_str().expect("utf-8");
    let ca = d.join("ca.toml");
    std::fs::write(&ca, "[inspection]\nca_certificates = [\"/dev/zero\"]\n").expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["replay", "--quiet", "/dev/zero"], "/dev/zero"),
        (vec!["replay", "--quiet", "-c", "/dev/zero", g], "1048576"),
        (vec!["replay", "--quiet", "-c", ca.to_str().expect("utf-8"), g], "1048576"),
    ];
    for (args, says) in cases {
        let o = pinwatch(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    // A feed of zeros is read to its cap in pieces of one line's cap,
    // reported, and the capture still runs.
    let o = pinwatch(&["replay", "--quiet", "--feed", "/dev/zero", g]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stats = String::from_utf8_lossy(&o.stdout).lines().last().map(str::to_string).unwrap_or_default();
    assert!(stats.contains("the cap of a feed file") && stats.contains("longer than"), "{stats}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn stdin_of_zeros_is_refused_at_once() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinwatch"))
        .args(["replay", "--quiet", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // The reader stops after four bytes; the rest may not be wanted.
    let _ = stdin.write_all(&[0u8; 1 << 16]);
    drop(stdin);
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unrecognised capture format"), "{}", stderr(&o));
}

/// A feed file line that is not UTF-8 is a counted, numbered bad line, as
/// the same bytes over `--feed-url` are, never a fatal error.
#[test]
fn an_invalid_utf8_feed_line_is_counted_with_its_number() {
    let d = dir("utf8");
    let good = d.join("good.pcap");
    std::fs::write(&good, one_packet_pcap()).expect("write");
    let feed = d.join("feed.jsonl");
    let ok = br#"{"schema_version":1,"event_type":"ip_binding","event_time":"2026-01-01T00:00:00Z","observed_time":"2026-01-01T00:00:00Z","device":{"id":"d"},"action":"assign","ip":"10.0.0.1","network":{"context":"wifi"},"confidence":"dhcp"}"#;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(ok);
    bytes.extend_from_slice(b"\n{\"schema_version\":1,\"bad\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(ok);
    bytes.push(b'\n');
    std::fs::write(&feed, &bytes).expect("write");
    let o = pinwatch(&["replay", "--quiet", "--feed", feed.to_str().expect("utf-8"), good.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().expect("stats")).expect("json");
    let feed = &stats["stats"]["enrichment"]["feed"];
    assert_eq!(feed["lines"], 3, "{feed}");
    assert_eq!(feed["events"], 2, "{feed}");
    assert_eq!(feed["malformed"], 1, "{feed}");
    assert!(feed["problems"][0].as_str().is_some_and(|p| p.starts_with("line 2:")), "{feed}");
    let _ = std::fs::remove_dir_all(&d);
}
