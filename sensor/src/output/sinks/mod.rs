//! Network sinks for EVE lines: Redis ([`redis`]) and syslog RFC 5424 over
//! UDP or TCP ([`syslog`]). Documented for operators in `docs/operations.md`.
//!
//! A [`Sink`] never blocks the thread that writes records. Lines go into a
//! bounded queue ([`SinkOptions::queue_lines`] lines and
//! [`SinkOptions::queue_bytes`] bytes); a line that does not fit is dropped
//! and counted (`queue_dropped`). One shipper thread per sink takes up to
//! [`SinkOptions::batch`] lines at a time and hands them to its
//! [`Transport`] (one pipelined round trip to Redis, one write to a TCP
//! syslog receiver). When the server is away the batch is kept, the
//! connection is retried with a doubling back-off (from
//! [`BACKOFF_MIN`] to [`BACKOFF_MAX`]) and the same batch sent again once
//! it is back: delivery is at least once (a batch the server had applied
//! just before the connection broke is sent twice) and in order. Meanwhile
//! the queue fills, and past its bounds new lines are dropped and counted.
//! At the end of the run [`Sink::finish`] waits a bounded time for the
//! queue to drain; what is still queued then is counted as dropped.
//!
//! Every line is therefore either delivered (`lines_written`) or counted in
//! `lines_dropped` (queue overflow, end-of-run leftovers, a UDP datagram the
//! socket refused, a line too long for the transport under `oversize=drop`).

pub mod redis;
pub mod syslog;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// First wait before reconnecting to a server that went away.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Connect, read and write timeout of one attempt.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a sink ships its lines, parsed from `-o` (`redis://…`,
/// `syslog+udp://…`, `syslog+tcp://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Which server, and how its lines are sent.
    pub kind: SinkKind,
    /// Queue and batching.
    pub options: SinkOptions,
    /// The text given, for messages.
    pub text: String,
}

/// The kind of server a sink ships to, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// Redis (`redis://HOST[:PORT]`, port 6379 by default).
    Redis(redis::RedisConfig),
    /// Syslog (`syslog+udp://` or `syslog+tcp://HOST[:PORT]`, port 514 by default).
    Syslog(syslog::SyslogConfig),
}

/// Queue and batching of one sink (query keys `queue`, `queue_bytes`, `batch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Most lines waiting for the server.
    pub queue_lines: usize,
    /// Most bytes waiting for the server.
    pub queue_bytes: usize,
    /// Most lines handed to the transport at once (Redis pipelining batch).
    pub batch: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions { queue_lines: 100_000, queue_bytes: 64 << 20, batch: 64 }
    }
}

/// Upper bounds of the options (a typo must not allocate the machine away).
const QUEUE_LINES_MAX: usize = 10_000_000;
const QUEUE_BYTES_MAX: usize = 4 << 30;
const BATCH_MAX: usize = 10_000;

impl SinkSpec {
    /// `Ok(None)` when `s` is not a sink URL (a file path, `-`, `unix:`).
    pub fn parse(s: &str) -> Result<Option<SinkSpec>, String> {
        let (scheme, rest) = match s.split_once("://") {
            Some((sc, r)) if matches!(sc, "redis" | "syslog+udp" | "syslog+tcp") => (sc, r),
            _ => return Ok(None),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, q),
            None => (rest, ""),
        };
        let authority = authority.trim_end_matches('/');
        let mut params = Params::parse(query)?;
        let mut options = SinkOptions::default();
        if let Some(v) = params.take_num("queue", 1, QUEUE_LINES_MAX)? {
            options.queue_lines = v;
        }
        if let Some(v) = params.take_size("queue_bytes", 1024, QUEUE_BYTES_MAX)? {
            options.queue_bytes = v;
        }
        let kind = match scheme {
            "redis" => {
                let (host, port) = host_port(authority, 6379)?;
                let cfg = redis::RedisConfig::from_params(host, port, &mut params)?;
                // Suricata's pipelining batch-size; without pipelining, one command a round trip.
                options.batch = params.take_num("batch", 1, BATCH_MAX)?.unwrap_or(cfg.default_batch());
                SinkKind::Redis(cfg)
            }
            _ => {
                let (host, port) = host_port(authority, 514)?;
                let cfg = syslog::SyslogConfig::from_params(scheme == "syslog+tcp", host, port, &mut params)?;
                options.batch = params.take_num("batch", 1, BATCH_MAX)?.unwrap_or(64);
                SinkKind::Syslog(cfg)
            }
        };
        params.finish()?;
        Ok(Some(SinkSpec { kind, options, text: s.to_string() }))
    }

    /// `host` for the syslog header: the sensor name (live sets it).
    pub fn set_sensor_name(&mut self, name: &str) {
        if let SinkKind::Syslog(c) = &mut self.kind {
            if c.hostname.is_none() {
                c.hostname = Some(name.to_string());
            }
        }
    }

    /// `redis`, `syslog-tcp` or `syslog-udp`: the output's `kind` in the stats record.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SinkKind::Redis(_) => "redis",
            SinkKind::Syslog(c) if c.tcp => "syslog-tcp",
            SinkKind::Syslog(_) => "syslog-udp",
        }
    }
}

fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("a sink URL needs a host".into());
    }
    // [v6]:port, host:port, host
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
            None if tail.is_empty() => default_port,
            None => return Err(format!("`{authority}` is not host:port")),
        };
        return Ok((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| format!("`{p}` is not a port"))?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

/// The `key=value&…` query of a sink URL; every key must be used.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: &str) -> Result<Params, String> {
        let mut v = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, val) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected key=value"))?;
            v.push((k.to_string(), val.to_string()));
        }
        Ok(Params(v))
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    pub(crate) fn take_num(&mut self, key: &str, min: usize, max: usize) -> Result<Option<usize>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{key}={v}: expected a number from {min} to {max}")),
            },
        }
    }

    fn take_size(&mut self, key: &str, min: usize, max: usize) -> Result<Option<usize>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => {
                let (num, mul) = match v.chars().last().map(|c| c.to_ascii_uppercase()) {
                    Some('K') => (&v[..v.len() - 1], 1usize << 10),
                    Some('M') => (&v[..v.len() - 1], 1 << 20),
                    Some('G') => (&v[..v.len() - 1], 1 << 30),
                    _ => (v.as_str(), 1),
                };
                match num.parse::<usize>().ok().and_then(|n| n.checked_mul(mul)) {
                    Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(format!("{key}={v}: expected a size from {min} to {max} bytes")),
                }
            }
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!("unknown sink option `{k}`")),
        }
    }
}

/// One way of getting a batch of lines to a server.
pub trait Transport: Send {
    /// Deliver every line of `batch` (no trailing newline), in order.
    /// `Ok(n)`: all were handed over, `n` of them are counted as dropped by
    /// the transport itself (e.g. too long for UDP under `oversize=drop`).
    /// `Err`: the connection is broken; the whole batch is sent again after
    /// [`Transport::reset`] and a back-off.
    fn send(&mut self, batch: &[Vec<u8>], counters: &SinkCounters) -> Result<u64, String>;
    /// Forget the connection (the next `send` reconnects).
    fn reset(&mut self);
}

/// Counters shared between the writer and the shipper thread.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Lines delivered (not counting those the transport dropped).
    pub lines_written: AtomicU64,
    /// Bytes of the batches handed over, newlines included.
    pub bytes_written: AtomicU64,
    /// Lines dropped because the queue was full.
    pub queue_dropped: AtomicU64,
    /// Lines dropped otherwise (end-of-run leftovers, refused or oversize datagrams).
    pub other_dropped: AtomicU64,
    /// Bytes of every dropped line, newlines included.
    pub bytes_dropped: AtomicU64,
    /// Lines cut to the transport's size limit (syslog over UDP).
    pub truncated: AtomicU64,
    /// Failed sends, connections and error replies.
    pub write_errors: AtomicU64,
    /// Connections made (the first included; TCP and Redis only).
    pub connects: AtomicU64,
    /// Connections lost after they had delivered.
    pub disconnects: AtomicU64,
    /// Batches sent again after a reconnect (their lines may arrive twice).
    pub resent_batches: AtomicU64,
    /// The last error (connection, error reply), for the stats record.
    pub last_error: Mutex<Option<String>>,
}

struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// No more lines will come; drain until `deadline`, then count the rest.
    closing: Option<Instant>,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    stop: AtomicBool,
    counters: SinkCounters,
    /// Lines taken from the queue but not yet delivered or dropped.
    in_flight: AtomicU64,
    in_flight_bytes: AtomicU64,
}

/// A running sink: the queue and its shipper thread.
pub struct Sink {
    shared: Arc<Shared>,
    options: SinkOptions,
    kind: &'static str,
    handle: Option<JoinHandle<()>>,
}

impl Sink {
    /// Start the shipper thread. The first connection is made there, so a
    /// server that is down at start only delays delivery.
    pub fn start(spec: &SinkSpec) -> std::io::Result<Sink> {
        let transport: Box<dyn Transport> = match &spec.kind {
            SinkKind::Redis(c) => Box::new(redis::RedisTransport::new(c.clone())),
            SinkKind::Syslog(c) => Box::new(syslog::SyslogTransport::new(c.clone())?),
        };
        Self::with_transport(transport, spec.options.clone(), spec.kind_name())
    }

    /// A sink over any transport (tests).
    pub fn with_transport(transport: Box<dyn Transport>, options: SinkOptions, kind: &'static str) -> std::io::Result<Sink> {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue { lines: VecDeque::new(), bytes: 0, closing: None }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: SinkCounters::default(),
            in_flight: AtomicU64::new(0),
            in_flight_bytes: AtomicU64::new(0),
        });
        let s2 = Arc::clone(&shared);
        let batch = options.batch.max(1);
        let handle = std::thread::Builder::new().name(format!("sink-{kind}")).spawn(move || ship(s2, transport, batch))?;
        Ok(Sink { shared, options, kind, handle: Some(handle) })
    }

    /// `redis`, `syslog-tcp` or `syslog-udp` (see [`SinkSpec::kind_name`]).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Queue one line (without its newline). Never blocks; a line that
    /// does not fit is dropped and counted.
    pub fn push(&self, line: &[u8]) {
        let c = &self.shared.counters;
        let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
        if q.closing.is_some() || q.lines.len() >= self.options.queue_lines || q.bytes + line.len() > self.options.queue_bytes {
            c.queue_dropped.fetch_add(1, Relaxed);
            c.bytes_dropped.fetch_add(line.len() as u64 + 1, Relaxed);
            return;
        }
        q.bytes += line.len();
        q.lines.push_back(line.to_vec());
        drop(q);
        self.shared.cv.notify_one();
    }

    /// The sink's counters, shared with its shipper thread.
    pub fn counters(&self) -> &SinkCounters {
        &self.shared.counters
    }

    /// Lines and bytes waiting (queue and the batch being sent).
    pub fn pending(&self) -> (u64, u64) {
        let q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
        (q.lines.len() as u64 + self.shared.in_flight.load(Relaxed), q.bytes as u64 + self.shared.in_flight_bytes.load(Relaxed))
    }

    /// Stop taking lines, wait at most `wait` for the queue to drain, count
    /// what is left as dropped, and end the shipper thread.
    pub fn finish(&mut self, wait: Duration) {
        {
            let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
            if q.closing.is_none() {
                q.closing = Some(Instant::now() + wait);
            }
        }
        self.shared.cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.finish(Duration::ZERO);
    }
}

/// The sink's counters in the output part of the stats record.
pub fn fill_stats(sink: &Sink, s: &mut crate::output::OutputStats) {
    let c = sink.counters();
    let (lines, bytes) = sink.pending();
    s.lines_written = c.lines_written.load(Relaxed);
    s.bytes_written = c.bytes_written.load(Relaxed);
    s.lines_dropped = c.queue_dropped.load(Relaxed) + c.other_dropped.load(Relaxed);
    s.bytes_dropped = c.bytes_dropped.load(Relaxed);
    s.write_errors = c.write_errors.load(Relaxed);
    s.connects = c.connects.load(Relaxed);
    s.disconnects = c.disconnects.load(Relaxed);
    s.pending_bytes = bytes;
    s.pending_lines = Some(lines);
    s.queue_dropped = Some(c.queue_dropped.load(Relaxed));
    s.truncated = Some(c.truncated.load(Relaxed));
    s.resent_batches = Some(c.resent_batches.load(Relaxed));
    s.last_error = c.last_error.lock().ok().and_then(|e| e.clone());
}

fn note_error(c: &SinkCounters, e: String) {
    c.write_errors.fetch_add(1, Relaxed);
    *c.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
}

/// The shipper thread: batches out of the queue, to the transport, with
/// reconnects and back-off; see the module documentation.
fn ship(shared: Arc<Shared>, mut transport: Box<dyn Transport>, batch_max: usize) {
    let c = &shared.counters;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(batch_max);
    let mut backoff = BACKOFF_MIN;
    let mut connected = false;
    loop {
        // Fill the batch.
        let deadline;
        {
            let mut q = shared.q.lock().unwrap_or_else(|e| e.into_inner());
            while batch.is_empty() && q.lines.is_empty() && q.closing.is_none() {
                q = shared.cv.wait_timeout(q, Duration::from_millis(200)).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
            }
            while batch.len() < batch_max {
                match q.lines.pop_front() {
                    Some(l) => {
                        q.bytes -= l.len();
                        shared.in_flight.fetch_add(1, Relaxed);
                        shared.in_flight_bytes.fetch_add(l.len() as u64, Relaxed);
                        batch.push(l);
                    }
                    None => break,
                }
            }
            deadline = q.closing;
            if batch.is_empty() && deadline.is_some() {
                return;
            }
        }
        let out_of_time = |d: Option<Instant>| shared.stop.load(Relaxed) || d.is_some_and(|d| Instant::now() >= d);
        // Send it, retrying until it goes through or the run is over.
        loop {
            match transport.send(&batch, c) {
                Ok(dropped) => {
                    if !connected {
                        connected = true;
                    }
                    let bytes: u64 = batch.iter().map(|l| l.len() as u64 + 1).sum();
                    c.lines_written.fetch_add(batch.len() as u64 - dropped.min(batch.len() as u64), Relaxed);
                    c.bytes_written.fetch_add(bytes, Relaxed);
                    if dropped > 0 {
                        c.other_dropped.fetch_add(dropped, Relaxed);
                    }
                    backoff = BACKOFF_MIN;
                    break;
                }
                Err(e) => {
                    note_error(c, e);
                    if connected {
                        connected = false;
                        c.disconnects.fetch_add(1, Relaxed);
                    }
                    transport.reset();
                    if out_of_time(deadline) || out_of_time(shared.q.lock().unwrap_or_else(|e| e.into_inner()).closing) {
                        let bytes: u64 = batch.iter().map(|l| l.len() as u64 + 1).sum();
                        c.other_dropped.fetch_add(batch.len() as u64, Relaxed);
                        c.bytes_dropped.fetch_add(bytes, Relaxed);
                        break;
                    }
                    // Back off, but wake up for the end of the run.
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !shared.stop.load(Relaxed) {
                        let closing = shared.q.lock().unwrap_or_else(|e| e.into_inner()).closing;
                        if out_of_time(closing) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20).min(backoff));
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    c.resent_batches.fetch_add(1, Relaxed);
                }
            }
        }
        shared.in_flight.store(0, Relaxed);
        shared.in_flight_bytes.store(0, Relaxed);
        batch.clear();
        // Out of time with lines still queued: count them and stop.
        let mut q = shared.q.lock().unwrap_or_else(|e| e.into_inner());
        if out_of_time(q.closing) {
            let n = q.lines.len() as u64;
            let bytes = q.bytes as u64 + n;
            q.lines.clear();
            q.bytes = 0;
            c.other_dropped.fetch_add(n, Relaxed);
            c.bytes_dropped.fetch_add(bytes, Relaxed);
            return;
        }
    }
}

/// The first value of a top-level string key in an EVE line, found by a
/// plain scan (pinwatch writes `"key":"value"` with no spaces); used for
/// the syslog header. `None` when absent or escaped.
pub(crate) fn json_str_field<'a>(line: &'a [u8], key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = line.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let rest = &line[at..];
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that fails while `down` is set and records what it got.
    struct Flaky {
        down: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Transport for Flaky {
        fn send(&mut self, batch: &[Vec<u8>], _: &SinkCounters) -> Result<u64, String> {
            if self.down.load(Relaxed) {
                return Err("down".into());
            }
            self.got.lock().unwrap().extend(batch.iter().cloned());
            Ok(0)
        }
        fn reset(&mut self) {}
    }

    #[test]
    fn spec_parse() {
        assert_eq!(SinkSpec::parse("eve.json"), Ok(None));
        assert_eq!(SinkSpec::parse("unix:/x"), Ok(None));
        let s = SinkSpec::parse("redis://127.0.0.1:7000/?mode=stream&key=k&maxlen=10&batch=5&queue=7").unwrap().unwrap();
        assert_eq!(s.options.batch, 5);
        assert_eq!(s.options.queue_lines, 7);
        let SinkKind::Redis(r) = &s.kind else { panic!() };
        assert_eq!((r.host.as_str(), r.port, r.key.as_str()), ("127.0.0.1", 7000, "k"));
        assert_eq!(r.mode, redis::Mode::Stream);
        assert_eq!(r.maxlen, 10);
        let s = SinkSpec::parse("syslog+tcp://[::1]:6514?facility=local3&severity=notice").unwrap().unwrap();
        let SinkKind::Syslog(c) = &s.kind else { panic!() };
        assert!(c.tcp);
        assert_eq!((c.host.as_str(), c.port, c.facility, c.severity), ("::1", 6514, 19, 5));
        assert!(SinkSpec::parse("redis://h?mode=nope").is_err());
        assert!(SinkSpec::parse("redis://h?bogus=1").is_err());
        assert!(SinkSpec::parse("redis://h:99999").is_err());
        assert!(SinkSpec::parse("syslog+udp://h?facility=kernel9").is_err());
        assert!(SinkSpec::parse("redis://h?queue=0").is_err());
        assert!(SinkSpec::parse("redis://").is_err());
    }

    #[test]
    fn overflow_is_counted_and_outage_loses_nothing_else() {
        let down = Arc::new(AtomicBool::new(true));
        let got = Arc::new(Mutex::new(Vec::new()));
        let t = Flaky { down: Arc::clone(&down), got: Arc::clone(&got) };
        let mut s = Sink::with_transport(Box::new(t), SinkOptions { queue_lines: 50, queue_bytes: 1 << 20, batch: 8 }, "test").unwrap();
        for i in 0..200 {
            s.push(format!("{i}").as_bytes());
        }
        // The shipper holds one batch of 8 and the queue 50: the rest are counted.
        std::thread::sleep(Duration::from_millis(300));
        down.store(false, Relaxed);
        s.finish(Duration::from_secs(10));
        let c = s.counters();
        let got = got.lock().unwrap();
        let written = c.lines_written.load(Relaxed);
        let dropped = c.queue_dropped.load(Relaxed) + c.other_dropped.load(Relaxed);
        assert_eq!(written as usize, got.len());
        assert_eq!(written + dropped, 200, "every line delivered or counted");
        assert!(dropped >= 200 - 58, "the queue is bounded: {dropped}");
        // Delivered in order, no gaps before the overflow started.
        let nums: Vec<u32> = got.iter().map(|l| std::str::from_utf8(l).unwrap().parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
        assert_eq!(nums[0], 0);
        assert!(c.write_errors.load(Relaxed) >= 1);
    }

    #[test]
    fn leftovers_at_the_deadline_are_counted() {
        let down = Arc::new(AtomicBool::new(true));
        let t = Flaky { down, got: Arc::new(Mutex::new(Vec::new())) };
        let mut s = Sink::with_transport(Box::new(t), SinkOptions { queue_lines: 1000, queue_bytes: 1 << 20, batch: 4 }, "test").unwrap();
        for i in 0..100 {
            s.push(format!("{i}").as_bytes());
        }
        let t0 = Instant::now();
        s.finish(Duration::from_millis(300));
        assert!(t0.elapsed() < Duration::from_secs(3));
        let c = s.counters();
        assert_eq!(c.lines_written.load(Relaxed), 0);
        assert_eq!(c.queue_dropped.load(Relaxed) + c.other_dropped.load(Relaxed), 100);
        assert_eq!(s.pending(), (0, 0));
    }

    #[test]
    fn json_fields_for_headers() {
        let l = br#"{"timestamp":"2024-01-02T03:04:05.123456+0000","event_type":"tls","x":{"event_type":"no"}}"#;
        assert_eq!(json_str_field(l, "event_type"), Some("tls"));
        assert_eq!(json_str_field(l, "timestamp"), Some("2024-01-02T03:04:05.123456+0000"));
        assert_eq!(json_str_field(br#"{"a":"b\"c"}"#, "a"), None);
        assert_eq!(json_str_field(b"{}", "a"), None);
    }
}
