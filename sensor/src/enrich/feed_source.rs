//! Feed *sources*: where the MDM/device feed's JSON lines come from
//! (schema: `enrichment/FEED.md`), and a [`FeedPump`] that reads one source on
//! a background thread and hands the lines to the packet path through a
//! bounded channel, never blocking it.
//!
//! The lines are delivered raw; the consumer feeds them to
//! `pinwatch_enrichment::feed::FeedReader::push_line(&text, line_no)`.
//! Blank lines are delivered too, so the reader's `blank` count matches what a
//! whole-file read would give.
//!
//! Sources:
//!
//! - [`FeedSource::File`]: every line of a file, then [`FeedMsg::CaughtUp`],
//!   then the pump's thread ends. A final line without `\n` is delivered.
//! - [`FeedSource::Follow`]: a file followed as it grows (`tail -F`), read
//!   from its beginning. Only complete lines (ending in `\n`) are delivered; a
//!   partial last line waits for its newline. Truncation (the size drops below
//!   the read position, e.g. `copytruncate`) restarts at offset 0 and drops a
//!   pending partial line (reported as an error); rotation (the path now names
//!   a different file: device/inode changed, Unix only) finishes the old file
//!   — its pending partial line is delivered, the file being final — and
//!   reopens the path. A missing file is waited for. Like `tail`, a
//!   truncate-and-rewrite that grows the file past the old position between
//!   two polls cannot be seen.
//! - [`FeedSource::Http`]: an HTTP(S) endpoint polled with a cursor; see
//!   [below](#http-cursor-protocol).
//!
//! Line numbers: for files, the 1-based line number in the file currently
//! being read (restarting at 1 after a truncation or rotation, so a problem
//! can be found with `sed -n`); for HTTP, a running count of lines received
//! since the pump started (across pages).
//!
//! # HTTP cursor protocol
//!
//! `GET <url>` (first request, unless [`PumpConfig::http_initial_cursor`] is
//! set) and then `GET <url>?since=<cursor>` (the `since` parameter is
//! form-urlencoded and appended to any query already in `url`).
//!
//! - `2xx` with a body holding at least one non-blank line: the body is JSON
//!   lines, and the **`X-Feed-Next` response header** carries the cursor for
//!   the next request. The lines are delivered and the next page is requested
//!   at once. A non-empty page *without* `X-Feed-Next` is rejected (reported,
//!   not delivered — delivering it would repeat it forever) and retried after
//!   [`PumpConfig::http_client_error_retry`].
//! - `2xx` with an empty (or all-whitespace) body: nothing new. The cursor is
//!   updated if `X-Feed-Next` is present, [`FeedMsg::CaughtUp`] is sent (once
//!   per catch-up), and the next poll is after [`PumpConfig::poll_interval`].
//! - connection errors, timeouts, and `5xx`: reported as [`FeedMsg::Error`],
//!   retried with exponential backoff ([`PumpConfig::backoff_initial`]
//!   doubling up to [`PumpConfig::backoff_max`]; 0.5 s → 30 s by default;
//!   each delay drawn in 75–100 % of its step, `crate::enrich::feed_http::jitter`),
//!   reset by the next success. The cursor is not advanced. Each failure is
//!   classified (`crate::enrich::feed_http::ErrorClass`) and the source's health
//!   ([`FeedPump::health`]) kept for the stats record.
//! - `4xx` (and any other unexpected status): reported, retried after
//!   [`PumpConfig::http_client_error_retry`] (30 s by default).
//!
//! Every request has a connect timeout and an overall timeout
//! ([`PumpConfig::http_connect_timeout`], [`PumpConfig::http_timeout`]); a
//! page's body is read whole (up to [`PumpConfig::http_max_body`]) before any
//! of its lines is delivered, so a failed read never delivers half a page.
//! `https://` URLs work (rustls, webpki roots); redirects are followed.
//!
//! # Threads and stopping
//!
//! [`FeedPump::start`] spawns one `std::thread`. Sends into the bounded channel
//! block that thread (backpressure) but never the consumer, which uses
//! [`FeedPump::try_recv`]. [`FeedPump::stop`] (and `Drop`) signal the thread
//! and join it; sleeps and full-channel waits end at once, an HTTP request in
//! flight ends at the latest at its timeout.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError};

/// Name of the response header carrying the next cursor.
pub const NEXT_CURSOR_HEADER: &str = "X-Feed-Next";
/// Name of the query parameter carrying the cursor.
pub const SINCE_PARAM: &str = "since";

/// Where feed lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// All lines of a file, once.
    File(PathBuf),
    /// A file followed as it grows (tail -F semantics).
    Follow(PathBuf),
    /// An HTTP(S) endpoint polled with a cursor.
    Http {
        /// The endpoint; a cursor, once known, goes in its `since` parameter.
        url: String,
    },
}

impl fmt::Display for FeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedSource::File(p) => write!(f, "file {}", p.display()),
            FeedSource::Follow(p) => write!(f, "followed file {}", p.display()),
            FeedSource::Http { url } => write!(f, "http feed {url}"),
        }
    }
}

/// A message from the pump's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedMsg {
    /// One line, without its `\n` / `\r\n`. Invalid UTF-8 is replaced
    /// (U+FFFD), so the feed reader reports it as malformed.
    Line {
        /// The line's text.
        text: String,
        /// Its number: in the file being read, from 1; for HTTP, a running
        /// count of the lines received (see the module doc).
        line_no: u64,
    },
    /// A non-fatal problem (the source keeps going, except `File` when it
    /// cannot be read at all).
    Error(String),
    /// Everything available now has been delivered. Sent once per catch-up
    /// (not on every idle poll).
    CaughtUp,
}

/// Tuning for a [`FeedPump`]. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct PumpConfig {
    /// Bounded channel capacity (messages).
    pub channel_capacity: usize,
    /// Idle poll interval (followed file growth; HTTP after an empty page).
    pub poll_interval: Duration,
    /// First retry delay after a connection error / 5xx.
    pub backoff_initial: Duration,
    /// Cap of the exponential backoff.
    pub backoff_max: Duration,
    /// Retry delay after a 4xx (or a page without `X-Feed-Next`).
    pub http_client_error_retry: Duration,
    /// TCP connect timeout of each request.
    pub http_connect_timeout: Duration,
    /// Overall timeout of each request (connect + headers + body).
    pub http_timeout: Duration,
    /// Largest page body accepted, bytes.
    pub http_max_body: u64,
    /// Cursor for the first request (`None`: the first request has no
    /// `since`).
    pub http_initial_cursor: Option<String>,
    /// Longest line accepted, bytes; longer ones are dropped and reported.
    pub max_line_bytes: usize,
    /// Headers, CA bundle and client certificate of HTTP sources
    /// (`[feed]` in the configuration, [`crate::enrich::feed_http`]).
    pub http: Option<std::sync::Arc<crate::config::http::HttpTransport>>,
}

impl Default for PumpConfig {
    fn default() -> Self {
        PumpConfig {
            channel_capacity: 4096,
            poll_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            http_client_error_retry: Duration::from_secs(30),
            http_connect_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(30),
            http_max_body: 64 << 20,
            http_initial_cursor: None,
            max_line_bytes: 4 << 20,
            http: None,
        }
    }
}

/// How [`FeedPump::drain_until_caught_up`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// A [`FeedMsg::CaughtUp`] was received (it is not in the drained list).
    CaughtUp,
    /// The source's thread ended (and everything it sent was drained).
    Finished,
    /// The timeout passed first.
    TimedOut,
}

/// Result of [`FeedPump::drain_until_caught_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The `Line` and `Error` messages received, in order.
    pub msgs: Vec<FeedMsg>,
    /// Why the drain stopped.
    pub end: DrainEnd,
}

/// Runs one [`FeedSource`] on a background thread.
pub struct FeedPump {
    rx: Receiver<FeedMsg>,
    health: crate::enrich::feed_http::Health,
    stop_tx: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl FeedPump {
    /// Start reading `source` with default tuning.
    pub fn start(source: FeedSource) -> io::Result<FeedPump> {
        FeedPump::start_with(source, PumpConfig::default())
    }

    /// Start reading `source`. Fails only if the thread cannot be spawned;
    /// every source problem arrives as [`FeedMsg::Error`].
    pub fn start_with(source: FeedSource, config: PumpConfig) -> io::Result<FeedPump> {
        let (tx, rx) = channel::bounded(config.channel_capacity.max(1));
        // Never sent on: dropping the sender disconnects the receiver, which
        // wakes the thread from any sleep.
        let (stop_tx, stop_rx) = channel::bounded::<()>(0);
        let sink = Sink { tx, stop: stop_rx };
        let health = crate::enrich::feed_http::Health::default();
        if let Ok(mut h) = health.lock() {
            h.source = source.to_string();
        }
        let h2 = health.clone();
        let handle = thread::Builder::new().name("feed-pump".into()).spawn(move || {
            let _ = run(source, &config, &sink, &h2);
            if let Ok(mut h) = h2.lock() {
                h.state = crate::enrich::feed_http::FeedState::Stopped;
            }
        })?;
        Ok(FeedPump { rx, health, stop_tx: Some(stop_tx), handle: Some(handle) })
    }

    /// How the source is doing (HTTP: state, last success, failures).
    pub fn health(&self) -> crate::enrich::feed_http::SourceHealth {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Next message if one is ready; never blocks.
    pub fn try_recv(&self) -> Option<FeedMsg> {
        self.rx.try_recv().ok()
    }

    /// The receiving end, e.g. for `select!`. Do not block on it on the
    /// packet path.
    pub fn receiver(&self) -> &Receiver<FeedMsg> {
        &self.rx
    }

    /// True once the thread has ended and all its messages were received
    /// (always the case after a `File` source is done).
    pub fn is_finished(&self) -> bool {
        self.rx.is_empty() && self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Replay mode: block until everything available now has been read — the
    /// source reports [`FeedMsg::CaughtUp`] or ends — or `timeout` passes.
    /// Returns the lines and errors received meanwhile.
    pub fn drain_until_caught_up(&self, timeout: Duration) -> Drained {
        let mut msgs = Vec::new();
        let end = self.drain_with(timeout, |m| msgs.push(m));
        Drained { msgs, end }
    }

    /// Like [`FeedPump::drain_until_caught_up`], handing each `Line` / `Error`
    /// to `f` instead of collecting them.
    pub fn drain_with(&self, timeout: Duration, mut f: impl FnMut(FeedMsg)) -> DrainEnd {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(FeedMsg::CaughtUp) => return DrainEnd::CaughtUp,
                Ok(m) => f(m),
                Err(RecvTimeoutError::Timeout) => return DrainEnd::TimedOut,
                Err(RecvTimeoutError::Disconnected) => return DrainEnd::Finished,
            }
        }
    }

    /// Tell the thread to stop and do not wait for it: it ends by itself,
    /// at the latest when a request in flight times out
    /// ([`PumpConfig::http_timeout`]). For a caller with a deadline.
    pub fn abandon(mut self) {
        self.stop_tx = None;
        self.handle = None;
    }

    /// Stop the thread and wait for it. Idempotent. Messages not yet received
    /// are discarded with the pump.
    pub fn stop(&mut self) {
        self.stop_tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FeedPump {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for FeedPump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedPump")
            .field("pending", &self.rx.len())
            .field("running", &self.handle.as_ref().is_some_and(|h| !h.is_finished()))
            .finish()
    }
}

/// The pump was stopped (or the consumer is gone).
struct Stopped;

struct Sink {
    tx: Sender<FeedMsg>,
    stop: Receiver<()>,
}

impl Sink {
    fn stopped(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    fn send(&self, mut msg: FeedMsg) -> Result<(), Stopped> {
        loop {
            if self.stopped() {
                return Err(Stopped);
            }
            match self.tx.send_timeout(msg, Duration::from_millis(50)) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(m)) => msg = m,
                Err(SendTimeoutError::Disconnected(_)) => return Err(Stopped),
            }
        }
    }

    fn send_all(&self, msgs: Vec<FeedMsg>) -> Result<(), Stopped> {
        msgs.into_iter().try_for_each(|m| self.send(m))
    }

    fn error(&self, e: impl Into<String>) -> Result<(), Stopped> {
        self.send(FeedMsg::Error(e.into()))
    }

    /// Sleep `d`, waking at once on stop.
    fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        match self.stop.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => Ok(()),
            _ => Err(Stopped),
        }
    }
}

fn run(source: FeedSource, cfg: &PumpConfig, sink: &Sink, health: &crate::enrich::feed_http::Health) -> Result<(), Stopped> {
    match source {
        FeedSource::File(path) => read_file(&path, cfg, sink),
        FeedSource::Follow(path) => Follower::new(path, cfg).run(sink),
        FeedSource::Http { url } => HttpPoller::new(url, cfg).run(sink, health),
    }
}

/// Splits a byte stream into lines, keeping a partial last line.
struct LineSplitter {
    partial: Vec<u8>,
    /// Dropping the rest of an over-long line.
    skipping: bool,
    max: usize,
    line_no: u64,
}

impl LineSplitter {
    fn new(max: usize) -> Self {
        LineSplitter { partial: Vec::new(), skipping: false, max: max.max(1), line_no: 0 }
    }

    fn reset(&mut self) {
        self.partial.clear();
        self.skipping = false;
        self.line_no = 0;
    }

    fn emit(&mut self, out: &mut Vec<FeedMsg>) {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        out.push(FeedMsg::Line { text, line_no: self.line_no });
    }

    fn push(&mut self, mut data: &[u8], out: &mut Vec<FeedMsg>) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if !self.skipping {
                if self.partial.len() + chunk.len() > self.max {
                    self.partial.clear();
                    self.skipping = true;
                    out.push(FeedMsg::Error(format!("line {}: longer than {} bytes, dropped", self.line_no + 1, self.max)));
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
            if complete {
                self.line_no += 1;
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.emit(out);
                }
            }
        }
    }

    /// End of input: deliver a pending unterminated line.
    fn finish(&mut self, out: &mut Vec<FeedMsg>) {
        if self.skipping {
            self.line_no += 1;
            self.skipping = false;
        } else if !self.partial.is_empty() {
            self.line_no += 1;
            self.emit(out);
        }
    }
}

const READ_CHUNK: usize = 64 * 1024;

fn read_file(path: &std::path::Path, cfg: &PumpConfig, sink: &Sink) -> Result<(), Stopped> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return sink.error(format!("feed file {}: {e}", path.display())),
    };
    let mut split = LineSplitter::new(cfg.max_line_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut out = Vec::new();
                split.push(&buf[..n], &mut out);
                sink.send_all(out)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                sink.error(format!("feed file {}: read: {e}", path.display()))?;
                break;
            }
        }
    }
    let mut out = Vec::new();
    split.finish(&mut out);
    sink.send_all(out)?;
    sink.send(FeedMsg::CaughtUp)
}

/// Replay: read a feed file on the calling thread, line by line, handing
/// `f` what a [`FeedSource::File`] pump would send (lines, with invalid
/// UTF-8 replaced so the feed reader counts them as malformed with their
/// line number; over-long lines reported as errors), so a file and an HTTP
/// feed treat the same bytes the same way. Memory is one line
/// ([`PumpConfig::max_line_bytes`]) and one read, whatever the file holds;
/// at most `max_bytes` of it are read (the rest is reported, not read:
/// `--feed /dev/zero` ends). `f` returns `false` to stop reading (e.g. when
/// the caller holds all the events it may). Only a file that cannot be
/// opened is an `Err`; every later problem is an [`FeedMsg::Error`].
pub fn read_file_lines(path: &std::path::Path, cfg: &PumpConfig, max_bytes: u64, mut f: impl FnMut(FeedMsg) -> bool) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("feed file {}: {e}", path.display()))?;
    let mut split = LineSplitter::new(cfg.max_line_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut read = 0u64;
    let mut out = Vec::new();
    loop {
        if read >= max_bytes {
            let mut probe = [0u8; 1];
            if matches!(file.read(&mut probe), Ok(n) if n > 0) {
                f(FeedMsg::Error(format!(
                    "feed file {}: larger than {max_bytes} bytes, the cap of a feed file; the rest is not read",
                    path.display()
                )));
            }
            break;
        }
        let want = usize::try_from(max_bytes - read).unwrap_or(usize::MAX).min(buf.len());
        match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                read += n as u64;
                split.push(&buf[..n], &mut out);
                for m in out.drain(..) {
                    if !f(name_file(path, m)) {
                        return Ok(());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                f(FeedMsg::Error(format!("feed file {}: read: {e}", path.display())));
                break;
            }
        }
    }
    split.finish(&mut out);
    for m in out {
        if !f(name_file(path, m)) {
            break;
        }
    }
    Ok(())
}

/// The splitter's errors ("line N: …") with the file they are about.
fn name_file(path: &std::path::Path, m: FeedMsg) -> FeedMsg {
    match m {
        FeedMsg::Error(e) => FeedMsg::Error(format!("feed file {}: {e}", path.display())),
        m => m,
    }
}

/// Identity of a file, to see rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

#[cfg(unix)]
fn file_id(m: &fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId(m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_m: &fs::Metadata) -> Option<FileId> {
    None
}

struct Follower<'a> {
    path: PathBuf,
    cfg: &'a PumpConfig,
    file: Option<(File, Option<FileId>)>,
    pos: u64,
    split: LineSplitter,
    /// Lines delivered since the last `CaughtUp` (or none sent yet).
    dirty: bool,
    last_error: Option<String>,
}

impl<'a> Follower<'a> {
    fn new(path: PathBuf, cfg: &'a PumpConfig) -> Self {
        Follower { path, cfg, file: None, pos: 0, split: LineSplitter::new(cfg.max_line_bytes), dirty: true, last_error: None }
    }

    /// Report an error unless it is the one reported last (a missing file is
    /// polled for, not reported every poll).
    fn report(&mut self, sink: &Sink, e: String) -> Result<(), Stopped> {
        if self.last_error.as_ref() != Some(&e) {
            self.last_error = Some(e.clone());
            sink.error(e)?;
        }
        Ok(())
    }

    fn run(mut self, sink: &Sink) -> Result<(), Stopped> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if sink.stopped() {
                return Err(Stopped);
            }
            let Some((file, id)) = self.file.as_mut() else {
                match File::open(&self.path) {
                    Ok(f) => {
                        let id = f.metadata().ok().as_ref().and_then(file_id);
                        self.file = Some((f, id));
                        self.pos = 0;
                        self.split.reset();
                        self.last_error = None;
                        continue;
                    }
                    Err(e) => {
                        let msg = format!("followed feed file {}: {e}", self.path.display());
                        self.report(sink, msg)?;
                        sink.sleep(self.cfg.poll_interval)?;
                        continue;
                    }
                }
            };
            let id = *id;
            // Truncated in place?
            if let Ok(m) = file.metadata() {
                if m.len() < self.pos {
                    let _ = file.seek(SeekFrom::Start(0));
                    self.pos = 0;
                    let pending = self.split.partial.len();
                    self.split.reset();
                    if pending > 0 {
                        sink.error(format!(
                            "followed feed file {}: truncated; dropped {pending} bytes of an incomplete line",
                            self.path.display()
                        ))?;
                    }
                }
            }
            // Read what is there.
            let mut read_err = None;
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.pos += n as u64;
                        let mut out = Vec::new();
                        self.split.push(&buf[..n], &mut out);
                        if !out.is_empty() {
                            self.dirty = true;
                        }
                        sink.send_all(out)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_err = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = read_err {
                // Keep the handle and position; retry after a poll.
                let msg = format!("followed feed file {}: read: {e}", self.path.display());
                self.report(sink, msg)?;
                sink.sleep(self.cfg.poll_interval)?;
                continue;
            }
            // At EOF of the open file: has the path been rotated to a new one?
            let rotated = match (id, fs::metadata(&self.path).ok().as_ref().and_then(file_id)) {
                (Some(old), Some(new)) => old != new,
                _ => false,
            };
            if rotated {
                // The old file is final: its unterminated last line is whole.
                let mut out = Vec::new();
                self.split.finish(&mut out);
                sink.send_all(out)?;
                self.file = None;
                continue;
            }
            if self.dirty {
                self.dirty = false;
                sink.send(FeedMsg::CaughtUp)?;
            }
            sink.sleep(self.cfg.poll_interval)?;
        }
    }
}

/// Exponential backoff.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, next: initial }
    }
    fn reset(&mut self) {
        self.next = self.initial;
    }
    fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// What one poll gave.
enum Poll {
    /// Lines of a page, and the cursor after it.
    Page(Vec<u8>, String),
    /// Nothing new; maybe a new cursor.
    Empty(Option<String>),
    /// Connection error, timeout, 5xx: back off.
    Transient(crate::enrich::feed_http::ErrorClass, String),
    /// 4xx, protocol error: retry slowly.
    Client(crate::enrich::feed_http::ErrorClass, String),
}

struct HttpPoller<'a> {
    url: String,
    cfg: &'a PumpConfig,
    agent: ureq::Agent,
    cursor: Option<String>,
    split: LineSplitter,
    dirty: bool,
}

impl<'a> HttpPoller<'a> {
    fn new(url: String, cfg: &'a PumpConfig) -> Self {
        let agent = crate::config::http::HttpTransport::agent(cfg.http.as_deref(), cfg.http_connect_timeout, cfg.http_timeout);
        HttpPoller { url, cfg, agent, cursor: cfg.http_initial_cursor.clone(), split: LineSplitter::new(cfg.max_line_bytes), dirty: true }
    }

    fn poll(&self) -> Poll {
        let mut req = crate::config::http::HttpTransport::apply(self.cfg.http.as_deref(), self.agent.get(&self.url));
        if let Some(c) = &self.cursor {
            req = req.query(SINCE_PARAM, c);
        }
        let what = format!("http feed {}", self.url);
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                let (class, text) = crate::enrich::feed_http::classify(&e);
                let msg = format!("{what}: {text}");
                return if matches!(e, ureq::Error::Status(..)) && class != crate::enrich::feed_http::ErrorClass::Server {
                    Poll::Client(class, msg)
                } else {
                    Poll::Transient(class, msg)
                };
            }
        };
        let next = resp.header(NEXT_CURSOR_HEADER).map(str::to_owned);
        let mut body = Vec::new();
        let limit = self.cfg.http_max_body;
        match resp.into_reader().take(limit.saturating_add(1)).read_to_end(&mut body) {
            Ok(_) if body.len() as u64 > limit => {
                return Poll::Client(crate::enrich::feed_http::ErrorClass::Protocol, format!("{what}: page larger than {limit} bytes"))
            }
            Ok(_) => {}
            Err(e) => return Poll::Transient(crate::enrich::feed_http::ErrorClass::Io, format!("{what}: reading body: {e}")),
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Poll::Empty(next);
        }
        match next {
            Some(n) => Poll::Page(body, n),
            None => Poll::Client(
                crate::enrich::feed_http::ErrorClass::Protocol,
                format!("{what}: page without {NEXT_CURSOR_HEADER} header, not delivered"),
            ),
        }
    }

    fn run(mut self, sink: &Sink, health: &crate::enrich::feed_http::Health) -> Result<(), Stopped> {
        use crate::enrich::feed_http::{jitter, note_err, note_ok};
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        loop {
            if sink.stopped() {
                return Err(Stopped);
            }
            match self.poll() {
                Poll::Page(body, next) => {
                    backoff.reset();
                    let mut out = Vec::new();
                    self.split.push(&body, &mut out);
                    self.split.finish(&mut out);
                    self.cursor = Some(next);
                    self.dirty = true;
                    note_ok(health, out.iter().filter(|m| matches!(m, FeedMsg::Line { .. })).count() as u64);
                    sink.send_all(out)?;
                }
                Poll::Empty(next) => {
                    backoff.reset();
                    note_ok(health, 0);
                    if next.is_some() {
                        self.cursor = next;
                    }
                    if self.dirty {
                        self.dirty = false;
                        sink.send(FeedMsg::CaughtUp)?;
                    }
                    sink.sleep(self.cfg.poll_interval)?;
                }
                // Every failure backs off exponentially, with jitter, up
                // to the cap; a 4xx waits at least the client-error delay.
                Poll::Transient(class, e) => {
                    let d = jitter(backoff.next_delay());
                    note_err(health, class, &e, d);
                    sink.error(format!("{e} [{}] (retry in {d:.1?})", class.as_str()))?;
                    sink.sleep(d)?;
                }
                Poll::Client(class, e) => {
                    let d = jitter(backoff.next_delay()).max(self.cfg.http_client_error_retry.min(self.cfg.backoff_max));
                    note_err(health, class, &e, d);
                    sink.error(format!("{e} [{}] (retry in {d:.1?})", class.as_str()))?;
                    sink.sleep(d)?;
                }
            }
        }
    }
}

/// Wait (until `deadline`) for the first answer of an HTTP pump. `Err`
/// when its first request failed in a way retrying will not fix (the
/// caller stops: exit status 2); a success, a failure retrying may fix
/// (timeout, 5xx, a page the cursor protocol cannot take), or the deadline
/// are `Ok` (the pump goes on retrying, and reports).
pub fn first_answer(pump: &FeedPump, url: &str, deadline: std::time::Instant) -> Result<(), crate::enrich::feed_http::StartError> {
    use crate::enrich::feed_http::{ErrorClass, FeedState, StartError};
    loop {
        let h = pump.health();
        match h.state {
            FeedState::Starting if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            FeedState::Retrying if h.last_success.is_none() => {
                let class = h.last_error_class.unwrap_or(ErrorClass::Io);
                if class.fatal_at_start() {
                    let detail = h.last_error.unwrap_or_default();
                    // The poller's text starts with "http feed URL: ".
                    let detail = detail.strip_prefix(&format!("http feed {url}: ")).map(str::to_string).unwrap_or(detail);
                    return Err(StartError { url: url.to_string(), class, detail });
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    fn tmp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pinwatch-feed-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("feed.jsonl")
    }

    fn fast() -> PumpConfig {
        PumpConfig {
            channel_capacity: 16,
            poll_interval: Duration::from_millis(10),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            http_client_error_retry: Duration::from_millis(50),
            http_connect_timeout: Duration::from_secs(1),
            http_timeout: Duration::from_secs(2),
            ..PumpConfig::default()
        }
    }

    fn line(text: &str, line_no: u64) -> FeedMsg {
        FeedMsg::Line { text: text.into(), line_no }
    }

    /// Receive until `n` lines arrived (errors collected), at most 3 s.
    fn lines(p: &FeedPump, n: usize) -> (Vec<FeedMsg>, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let (mut got, mut errs) = (Vec::new(), Vec::new());
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.receiver().recv_timeout(left) {
                Ok(m @ FeedMsg::Line { .. }) => got.push(m),
                Ok(FeedMsg::Error(e)) => errs.push(e),
                Ok(FeedMsg::CaughtUp) => {}
                Err(_) => break,
            }
        }
        (got, errs)
    }

    #[test]
    fn feed_source_plain_file() {
        let path = tmp_path("plain");
        fs::write(&path, "{\"a\":1}\r\n\n{\"b\":2}\nlast-no-newline").unwrap();
        let p = FeedPump::start_with(FeedSource::File(path.clone()), fast()).unwrap();
        let d = p.drain_until_caught_up(Duration::from_secs(3));
        assert_eq!(d.end, DrainEnd::CaughtUp);
        assert_eq!(d.msgs, vec![line("{\"a\":1}", 1), line("", 2), line("{\"b\":2}", 3), line("last-no-newline", 4)]);
        // Then the thread ends.
        assert_eq!(p.drain_until_caught_up(Duration::from_secs(3)).end, DrainEnd::Finished);
        assert!(p.is_finished());

        let missing = FeedPump::start_with(FeedSource::File(path.with_extension("nope")), fast()).unwrap();
        let d = missing.drain_until_caught_up(Duration::from_secs(3));
        assert_eq!(d.end, DrainEnd::Finished);
        assert!(matches!(&d.msgs[..], [FeedMsg::Error(_)]), "{:?}", d.msgs);
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn feed_source_long_line_dropped() {
        let path = tmp_path("long");
        fs::write(&path, format!("ok\n{}\nafter\n", "x".repeat(100))).unwrap();
        let cfg = PumpConfig { max_line_bytes: 10, ..fast() };
        let p = FeedPump::start_with(FeedSource::File(path.clone()), cfg).unwrap();
        let d = p.drain_until_caught_up(Duration::from_secs(3));
        assert_eq!(d.end, DrainEnd::CaughtUp);
        assert_eq!(d.msgs.len(), 3, "{:?}", d.msgs);
        assert_eq!(d.msgs[0], line("ok", 1));
        assert!(matches!(&d.msgs[1], FeedMsg::Error(e) if e.contains("line 2")));
        assert_eq!(d.msgs[2], line("after", 3));
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    /// Replay's synchronous read: the same lines, numbers and errors as the
    /// pump (invalid UTF-8 replaced, so the reader counts it with its number).
    #[test]
    fn read_file_lines_numbers_bad_and_long_lines() {
        let path = tmp_path("sync");
        fs::write(&path, b"ok\n0123456789abcdef\n{\"bad\":\"\xff\"}\nlast").unwrap();
        let cfg = PumpConfig { max_line_bytes: 12, ..fast() };
        let mut got = Vec::new();
        read_file_lines(&path, &cfg, u64::MAX, |m| {
            got.push(m);
            true
        })
        .unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], line("ok", 1));
        assert!(matches!(&got[1], FeedMsg::Error(e) if e.contains("line 2") && e.contains("feed.jsonl")), "{got:?}");
        assert_eq!(got[2], line("{\"bad\":\"\u{fffd}\"}", 3));
        assert_eq!(got[3], line("last", 4));
        // The byte cap: the rest is reported, not read.
        let mut got = Vec::new();
        read_file_lines(&path, &cfg, 3, |m| {
            got.push(m);
            true
        })
        .unwrap();
        assert_eq!(got[0], line("ok", 1));
        assert!(matches!(&got[1], FeedMsg::Error(e) if e.contains("larger than 3 bytes")), "{got:?}");
        assert!(read_file_lines(&path.with_extension("nope"), &cfg, 3, |_| true).is_err());
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn feed_source_follow_append_partial_truncate_rotate() {
        let path = tmp_path("follow");
        let append = |s: &str| {
            let mut f = fs::OpenOptions::new().append(true).create(true).open(&path).unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        // Starts before the file exists.
        let mut p = FeedPump::start_with(FeedSource::Follow(path.clone()), fast()).unwrap();
        thread::sleep(Duration::from_millis(50));
        append("first line one\nfirst line two\n");
        let (got, errs) = lines(&p, 2);
        assert_eq!(got, vec![line("first line one", 1), line("first line two", 2)]);
        assert_eq!(errs.len(), 1, "missing file reported once: {errs:?}");
        assert_eq!(p.drain_until_caught_up(Duration::from_secs(3)).end, DrainEnd::CaughtUp);

        // A partial line waits for its newline.
        append("{\"par");
        thread::sleep(Duration::from_millis(100));
        assert_eq!(p.try_recv(), None);
        append("tial\":1}\n");
        assert_eq!(lines(&p, 1).0, vec![line("{\"partial\":1}", 3)]);

        // Truncate in place (shorter content): restart at offset 0.
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        append("t1\n");
        let (got, errs) = lines(&p, 1);
        assert_eq!(got, vec![line("t1", 1)]);
        assert!(errs.is_empty(), "{errs:?}");

        // Rotation: rename away, the old file's unterminated line is final;
        // a new file at the path is read from its start.
        append("old-tail");
        thread::sleep(Duration::from_millis(50));
        fs::rename(&path, path.with_extension("1")).unwrap();
        append("new one\n");
        let (got, _) = lines(&p, 2);
        assert_eq!(got, vec![line("old-tail", 2), line("new one", 1)]);

        let t = Instant::now();
        p.stop();
        assert!(t.elapsed() < Duration::from_secs(1));
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    /// Percent/form decoding of a query value.
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }

    /// Serve one request; returns the `since` value seen (None: absent).
    fn serve_one(mut s: TcpStream, hits: &Mutex<Vec<Option<String>>>) {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut req = String::new();
        r.read_line(&mut req).unwrap();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                break;
            }
        }
        let target = req.split(' ').nth(1).unwrap_or("").to_owned();
        let since = target.split_once('?').and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("since=").map(decode)));
        let n = {
            let mut h = hits.lock().unwrap();
            h.push(since.clone());
            h.len()
        };
        let (status, next, body): (&str, Option<&str>, &str) = match (n, since.as_deref()) {
            (1, None) => ("503 Service Unavailable", None, "busy"),
            (2, None) => ("200 OK", Some("page 2/x&y"), "{\"l\":1}\n{\"l\":2}\n"),
            (_, Some("page 2/x&y")) => ("200 OK", Some("c3"), "{\"l\":3}"),
            (_, Some("c3")) => ("200 OK", Some("c3"), ""),
            _ => ("400 Bad Request", None, "unexpected since"),
        };
        let mut resp = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
        if let Some(n) = next {
            resp.push_str(&format!("X-Feed-Next: {n}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(body);
        let _ = s.write_all(resp.as_bytes());
    }

    #[test]
    fn feed_source_http_cursor_pages_and_retry() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = {
            let (hits, done) = (hits.clone(), done.clone());
            thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            serve_one(s, &hits);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        let url = format!("http://{addr}/feed");
        let mut p = FeedPump::start_with(FeedSource::Http { url }, fast()).unwrap();
        let d = p.drain_until_caught_up(Duration::from_secs(5));
        assert_eq!(d.end, DrainEnd::CaughtUp, "{:?}", d.msgs);
        let (errs, got): (Vec<_>, Vec<_>) = d.msgs.into_iter().partition(|m| matches!(m, FeedMsg::Error(_)));
        assert_eq!(got, vec![line("{\"l\":1}", 1), line("{\"l\":2}", 2), line("{\"l\":3}", 3)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(matches!(&errs[0], FeedMsg::Error(e) if e.contains("503")), "{errs:?}");
        // Keeps polling with the last cursor, without new CaughtUp noise.
        thread::sleep(Duration::from_millis(100));
        assert_eq!(p.try_recv(), None);
        p.stop();
        let seen = hits.lock().unwrap().clone();
        assert!(seen.len() >= 5, "{seen:?}");
        assert_eq!(seen[..4], [None, None, Some("page 2/x&y".into()), Some("c3".into())]);
        assert!(seen[4..].iter().all(|s| s.as_deref() == Some("c3")), "{seen:?}");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        server.join().unwrap();
    }

    #[test]
    fn feed_source_http_refused_backs_off_and_stops_promptly() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/feed");
        let mut p = FeedPump::start_with(FeedSource::Http { url }, fast()).unwrap();
        let d = p.drain_until_caught_up(Duration::from_millis(600));
        assert_eq!(d.end, DrainEnd::TimedOut);
        // 20, 40, 80, 160, 200, ... ms: a handful of attempts, not a spin.
        assert!((2..=8).contains(&d.msgs.len()), "{:?}", d.msgs);
        assert!(d.msgs.iter().all(|m| matches!(m, FeedMsg::Error(_))));
        let t = Instant::now();
        p.stop();
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn feed_source_backoff_doubles_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let v: Vec<_> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(v, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
