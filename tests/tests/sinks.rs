//! The network sinks against the real servers: a `redis-server` and an
//! `rsyslogd` that each test starts itself on loopback, on free ports, with
//! its own files in a temp dir (never the system instances).
//!
//! The records are the sensor's own: the bundled captures (`pcaps/*.pcap`)
//! replayed through `pinwatch::run::pipeline::replay` into an
//! `pinwatch::output::Output` opened on the sink URL, exactly as `-o` does.
//! What the server holds is read back with the servers' own tools
//! (`redis-cli`, rsyslog's `omfile`) and compared with the same replay
//! written to memory.
//!
//! Needs `redis-server`/`redis-cli` and `rsyslogd` (Debian: redis-server,
//! rsyslog). Without them the tests print `SKIPPED: <why>` and pass, unless
//! `PINWATCH_SINKS_REQUIRED=1` (set by `.ci/run`), which makes them fail.
//!
//! Run: `cargo test -p pinwatch-tests --test sinks`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinwatch::output::{Output, OutputSpec, Rotation};
use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_testkit::sys::{have, scratch_dir, skip, KillOnDrop};
use serde_json::Value;

/// Fail when the sink tests are required, else say loudly that nothing was checked.
fn unavailable(reason: &str) -> bool {
    skip("PINWATCH_SINKS_REQUIRED", "sink test", reason);
    false
}

fn tmpdir(tag: &str) -> PathBuf {
    scratch_dir(&format!("sinks-{tag}"))
}

/// A port the kernel says is free now, for a server to bind.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn pcaps() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pcaps")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "bundled captures in {}", dir.display());
    v
}

fn opts() -> Options {
    Options { progress: false, stats: false, sensor_name: Some("fleet-sensor-1".into()), ..Options::default() }
}

/// Every bundled capture replayed (each on its own) into `out`.
fn replay_all(out: &mut (dyn Write + Send)) {
    for p in pcaps() {
        replay(&[Input::File(p.clone())], &opts(), out).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
    }
}

/// The lines the sink must deliver: the same replays, written to memory.
fn expected_lines() -> Vec<String> {
    let mut v = Vec::new();
    replay_all(&mut v);
    let lines: Vec<String> = String::from_utf8(v).expect("utf-8").lines().map(str::to_string).collect();
    assert!(lines.len() >= 20, "records to ship: {}", lines.len());
    lines
}

/// Replay into an output opened on `url`, wait for the sink to drain.
fn ship(url: &str) -> pinwatch::output::OutputStats {
    let spec = OutputSpec::parse(url);
    assert!(matches!(spec, OutputSpec::Sink(_)), "{url} is a sink: {spec:?}");
    let mut out = Output::open(&spec, Rotation::default()).expect("open sink");
    replay_all(&mut out);
    out.finish(Duration::from_secs(20));
    out.stats()
}

// ---------------------------------------------------------------- Redis

struct Redis {
    port: u16,
    dir: PathBuf,
    d: Option<KillOnDrop>,
}

impl Redis {
    fn start(tag: &str) -> Option<Redis> {
        for t in ["redis-server", "redis-cli"] {
            if !have(t) {
                unavailable(&format!("{t} not installed (Debian package redis-server)"));
                return None;
            }
        }
        let mut r = Redis { port: free_tcp_port(), dir: tmpdir(tag), d: None };
        r.launch();
        Some(r)
    }

    /// Append-only file, fsync on every write: a restart keeps everything
    /// the server acknowledged.
    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.d = Some(KillOnDrop(child));
        let t0 = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(t0.elapsed() < Duration::from_secs(15), "redis-server did not come up on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: redis-server writes its append-only file and exits.
    fn stop(&mut self) {
        if let Some(mut d) = self.d.take() {
            let _ = Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status();
            let _ = d.0.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        self.cli(args).lines().map(str::to_string).collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_no_loss(st: &pinwatch::output::OutputStats, n: usize) {
    assert_eq!(st.lines_dropped, 0, "{st:?}");
    assert_eq!(st.lines_written as usize, n, "{st:?}");
    assert_eq!(st.pending_lines, Some(0), "{st:?}");
}

#[test]
fn redis_list_rpush_and_lpush_deliver_every_record_in_order() {
    let Some(r) = Redis::start("list") else {
        return;
    };
    let want = expected_lines();
    let st = ship(&format!("redis://127.0.0.1:{}/?mode=rpush&key=eve-r&batch=7", r.port));
    check_no_loss(&st, want.len());
    assert_eq!(st.kind, "redis");
    assert_eq!(r.lines(&["LRANGE", "eve-r", "0", "-1"]), want, "RPUSH: the list is the records in order");

    // `list` is Suricata's default, LPUSH: the newest record at the head.
    let st = ship(&format!("redis://127.0.0.1:{}/?mode=list&key=eve-l", r.port));
    check_no_loss(&st, want.len());
    let mut got = r.lines(&["LRANGE", "eve-l", "0", "-1"]);
    got.reverse();
    assert_eq!(got, want, "LPUSH: the list read tail to head is the records in order");
    // Real records: each is an EVE object with the sensor name.
    for l in &got {
        let v: Value = serde_json::from_str(l).expect("json");
        assert_eq!(v["host"], "fleet-sensor-1");
    }
}

#[test]
fn redis_stream_delivers_every_record_in_order_and_trims() {
    let Some(r) = Redis::start("stream") else {
        return;
    };
    let want = expected_lines();
    let st = ship(&format!("redis://127.0.0.1:{}/?mode=stream&key=eve-s&field=eve&batch=16", r.port));
    check_no_loss(&st, want.len());
    // XRANGE --raw: id, field, value per entry.
    let raw = r.lines(&["XRANGE", "eve-s", "-", "+"]);
    assert_eq!(raw.len(), 3 * want.len(), "three lines per entry");
    let fields: Vec<&String> = raw.iter().skip(1).step_by(3).collect();
    assert!(fields.iter().all(|f| *f == "eve"), "field name");
    let values: Vec<String> = raw.iter().skip(2).step_by(3).cloned().collect();
    assert_eq!(values, want);

    // MAXLEN = 5, exact: only the last five are kept.
    let st = ship(&format!("redis://127.0.0.1:{}/?mode=xadd&key=eve-t&maxlen=5&trim_exact=true", r.port));
    check_no_loss(&st, want.len());
    assert_eq!(r.cli(&["XLEN", "eve-t"]).trim(), "5");
    let raw = r.lines(&["XRANGE", "eve-t", "-", "+"]);
    let values: Vec<String> = raw.iter().skip(2).step_by(3).cloned().collect();
    assert_eq!(values, want[want.len() - 5..].to_vec());
}

#[test]
fn redis_channel_publishes_every_record_in_order() {
    let Some(r) = Redis::start("channel") else {
        return;
    };
    let want = expected_lines();
    let mut sub = Command::new("redis-cli")
        .args(["-p", &r.port.to_string(), "--raw", "SUBSCRIBE", "eve-c"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli subscribe");
    let stdout = sub.stdout.take().expect("stdout");
    let n = want.len();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut got = Vec::new();
        // subscribe / eve-c / 1, then message / eve-c / payload per record.
        let head: Vec<String> = (0..3).filter_map(|_| lines.next().and_then(Result::ok)).collect();
        while got.len() < n {
            let kind = lines.next().and_then(Result::ok);
            let _chan = lines.next();
            let Some(Ok(payload)) = lines.next() else {
                break;
            };
            assert_eq!(kind.as_deref(), Some("message"));
            got.push(payload);
        }
        (head, got)
    });
    let t0 = Instant::now();
    while r.cli(&["PUBSUB", "NUMSUB", "eve-c"]).lines().nth(1) != Some("1") {
        assert!(t0.elapsed() < Duration::from_secs(10), "subscriber did not subscribe");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = ship(&format!("redis://127.0.0.1:{}/?mode=channel&key=eve-c&batch=1", r.port));
    check_no_loss(&st, n);
    let t0 = Instant::now();
    while !reader.is_finished() {
        assert!(t0.elapsed() < Duration::from_secs(20), "subscriber got fewer than {n} messages");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sub.kill();
    let _ = sub.wait();
    let (head, got) = reader.join().expect("reader");
    assert_eq!(head.first().map(String::as_str), Some("subscribe"));
    assert_eq!(got, want);
}

/// The server goes away mid-run and comes back: the sink keeps queueing
/// without blocking the writer, reconnects, and every record is either in
/// the list (in order; a batch in flight at the restart may be there
/// twice) or counted as dropped.
#[test]
fn redis_restart_mid_run_loses_nothing_uncounted() {
    let Some(mut r) = Redis::start("restart") else {
        return;
    };
    const N: usize = 3000;
    let url = format!("redis://127.0.0.1:{}/?mode=rpush&key=eve&batch=10", r.port);
    let mut out = Output::open(&OutputSpec::parse(&url), Rotation::default()).expect("open");
    let mut slowest = Duration::ZERO;
    for i in 0..N {
        if i == N / 3 {
            r.stop();
        }
        if i == N / 3 + 500 {
            // A second after the stop: the sink is in its back-off.
            r.launch();
        }
        let t = Instant::now();
        writeln!(out, r#"{{"timestamp":"2026-01-01T00:00:00.000000+0000","event_type":"test","seq":{i}}}"#).expect("write");
        out.flush_lines();
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    out.finish(Duration::from_secs(20));
    let st = out.stats();
    assert!(slowest < Duration::from_millis(200), "a write blocked for {slowest:?} while the server was away");
    assert!(st.connects >= 2 && st.disconnects >= 1 && st.write_errors >= 1, "the restart was seen: {st:?}");

    let got = r.lines(&["LRANGE", "eve", "0", "-1"]);
    let mut seen = std::collections::BTreeSet::new();
    let mut firsts = Vec::new();
    for l in &got {
        let v: Value = serde_json::from_str(l).expect("json");
        let seq = v["seq"].as_u64().expect("seq");
        if seen.insert(seq) {
            firsts.push(seq);
        }
    }
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "records in order");
    let duplicates = got.len() - seen.len();
    assert!(duplicates <= 2 * 10, "at most the batches in flight twice: {duplicates}");
    assert_eq!(seen.len() as u64 + st.lines_dropped, N as u64, "delivered + counted drops = all; {st:?}");
    // The queue (100,000 lines) holds a second of outage: nothing dropped.
    assert_eq!(st.lines_dropped, 0, "{st:?}");
    eprintln!("restart: {} delivered, {} duplicates, {} dropped, {:?}", seen.len(), duplicates, st.lines_dropped, st);
}

/// A full queue while the server is down: drops are counted, the rest arrives.
#[test]
fn redis_down_overflow_is_counted() {
    let Some(mut r) = Redis::start("overflow") else {
        return;
    };
    r.stop();
    let url = format!("redis://127.0.0.1:{}/?mode=rpush&key=eve&queue=100", r.port);
    let mut out = Output::open(&OutputSpec::parse(&url), Rotation::default()).expect("open");
    for i in 0..1000 {
        writeln!(out, r#"{{"event_type":"test","seq":{i}}}"#).expect("write");
    }
    out.flush_lines();
    r.launch();
    out.finish(Duration::from_secs(20));
    let st = out.stats();
    let got = r.lines(&["LRANGE", "eve", "0", "-1"]);
    assert!(st.queue_dropped.unwrap_or(0) >= 1000 - 100 - 10, "{st:?}");
    assert_eq!(got.len() as u64 + st.lines_dropped, 1000, "{st:?}");
    let first: Value = serde_json::from_str(&got[0]).expect("json");
    assert_eq!(first["seq"], 0, "the oldest records are kept, the newest dropped");
}

// ---------------------------------------------------------------- syslog

struct Rsyslog {
    udp: u16,
    tcp: u16,
    dir: PathBuf,
    _d: KillOnDrop,
}

impl Rsyslog {
    /// rsyslogd in the foreground with its own config, ports, pid file and
    /// work dir; UDP and TCP messages to their own files, one line each:
    /// the parsed RFC 5424 header fields, then the MSG.
    fn start(tag: &str) -> Option<Rsyslog> {
        if !have("rsyslogd") {
            unavailable("rsyslogd not installed (Debian package rsyslog)");
            return None;
        }
        let dir = tmpdir(tag);
        let (udp, tcp) = (free_udp_port(), free_tcp_port());
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="256k")
main_queue(queue.workerThreads="1")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}" rcvbufSize="16m" name="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp")
template(name="fields" type="string" string="%hostname%|%app-name%|%procid%|%msgid%|%syslogfacility%|%syslogseverity%|%timereported:::date-rfc3339%|%protocol-version%|%msg%\n")
if $inputname == "udp" then {{ action(type="omfile" file="{d}/udp.log" template="fields") stop }}
if $inputname == "tcp" then {{ action(type="omfile" file="{d}/tcp.log" template="fields") stop }}
"#,
            d = dir.display()
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("conf");
        let conf_ok = Command::new("rsyslogd").arg("-N1").arg("-f").arg(dir.join("rsyslog.conf")).output().expect("rsyslogd -N1");
        assert!(conf_ok.status.success(), "rsyslog config: {}", String::from_utf8_lossy(&conf_ok.stderr));
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).expect("err file"))
            .spawn()
            .expect("rsyslogd");
        let d = KillOnDrop(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "rsyslogd did not listen on {tcp}: {}",
                std::fs::read_to_string(dir.join("rsyslogd.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Rsyslog { udp, tcp, dir, _d: d })
    }

    /// The lines of `file` once it holds `n` (or after 30 s).
    fn wait_lines(&self, file: &str, n: usize) -> Vec<String> {
        let p = self.dir.join(file);
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || t0.elapsed() > Duration::from_secs(30) {
                // A little longer: nothing more may come.
                std::thread::sleep(Duration::from_millis(300));
                return std::fs::read_to_string(&p).unwrap_or_default().lines().map(str::to_string).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Received {
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    facility: String,
    severity: String,
    time: String,
    version: String,
    msg: String,
}

fn parse_received(l: &str) -> Received {
    let f: Vec<&str> = l.splitn(9, '|').collect();
    assert_eq!(f.len(), 9, "{l}");
    Received {
        hostname: f[0].into(),
        app: f[1].into(),
        procid: f[2].into(),
        msgid: f[3].into(),
        facility: f[4].into(),
        severity: f[5].into(),
        time: f[6].into(),
        version: f[7].into(),
        msg: f[8].trim_start().into(),
    }
}

fn check_header(r: &Received, want: &str) {
    let v: Value = serde_json::from_str(want).expect("json");
    assert_eq!(r.version, "1", "parsed as RFC 5424");
    assert_eq!(r.hostname, "fleet-sensor-1");
    assert_eq!(r.app, "pinwatch");
    assert_eq!(r.procid, std::process::id().to_string());
    assert_eq!(r.msgid, v["event_type"].as_str().expect("event_type"));
    assert_eq!(r.facility, "19", "local3");
    assert_eq!(r.severity, "5", "notice");
    let ts = v["timestamp"].as_str().expect("timestamp");
    assert_eq!(&r.time[..19], &ts[..19], "the record's own time");
}

#[test]
fn syslog_tcp_octet_counted_delivers_every_record_in_order() {
    let Some(s) = Rsyslog::start("tcp") else {
        return;
    };
    let want = expected_lines();
    let st = ship(&format!("syslog+tcp://127.0.0.1:{}?facility=local3&severity=notice&hostname=fleet-sensor-1", s.tcp));
    check_no_loss(&st, want.len());
    assert_eq!(st.kind, "syslog-tcp");
    let got = s.wait_lines("tcp.log", want.len());
    assert_eq!(got.len(), want.len());
    for (l, w) in got.iter().zip(&want) {
        let r = parse_received(l);
        check_header(&r, w);
        assert_eq!(&r.msg, w, "MSG is the EVE line");
    }
    // Records longer than the UDP test's datagram limit went through whole.
    assert!(want.iter().any(|w| w.len() > 2048), "some records are longer than a 2048-byte datagram");
}

#[test]
fn syslog_udp_delivers_every_record_and_truncates_as_documented() {
    let Some(s) = Rsyslog::start("udp") else {
        return;
    };
    let want = expected_lines();
    // max=2048: the long records are cut (and counted), the rest whole.
    let st = ship(&format!("syslog+udp://127.0.0.1:{}?facility=local3&severity=notice&hostname=fleet-sensor-1&max=2048", s.udp));
    assert_eq!(st.kind, "syslog-udp");
    assert_eq!(st.lines_dropped, 0, "{st:?}");
    assert_eq!(st.lines_written as usize, want.len(), "{st:?}");
    let got = s.wait_lines("udp.log", want.len());
    assert_eq!(got.len(), want.len(), "every datagram arrived");
    let mut cut = 0u64;
    for (l, w) in got.iter().zip(&want) {
        let r = parse_received(l);
        check_header(&r, w);
        if r.msg != *w {
            assert!(w.starts_with(&r.msg) && r.msg.len() < w.len() && r.msg.len() < 2048, "a cut record is a prefix of it");
            cut += 1;
        } else {
            assert!(w.len() < 2048);
        }
    }
    assert!(cut > 0, "some records are longer than 2048 bytes");
    assert_eq!(st.truncated, Some(cut), "every cut is counted");

    // oversize=drop: the long ones are not sent, and counted as dropped.
    let st =
        ship(&format!("syslog+udp://127.0.0.1:{}?facility=local3&severity=notice&hostname=fleet-sensor-1&max=2048&oversize=drop", s.udp));
    assert_eq!(st.lines_dropped, cut, "{st:?}");
    assert_eq!(st.lines_written as usize + cut as usize, want.len());
    let got2 = s.wait_lines("udp.log", 2 * want.len() - cut as usize);
    let second: Vec<String> = got2[want.len()..].iter().map(|l| parse_received(l).msg).collect();
    let whole: Vec<String> = got.iter().zip(&want).filter(|(l, w)| parse_received(l).msg == **w).map(|(_, w)| w.clone()).collect();
    assert_eq!(second, whole, "exactly the records that fit, in order");
}
