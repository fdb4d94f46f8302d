//! Where a long-running sensor writes its EVE lines: stdout, a file (rotated
//! by size or time, reopened on request for logrotate), or a Unix stream
//! socket (a client of a listening `SOCK_STREAM` socket, as Suricata's
//! `unix_stream` output).
//!
//! [`Output`] is a [`Write`] that only ever hands whole lines to its target:
//! bytes are buffered and written up to the last `\n` (when the buffer passes
//! [`FLUSH_AT`], or on [`Output::flush_lines`]). Rotation and reopening happen
//! in [`Output::maintain`] and [`Output::reopen`], which the caller calls
//! between records. Writing never fails towards the engine: a target that
//! cannot take the bytes loses whole lines and counts them
//! ([`OutputStats::lines_dropped`]), so one full disk or one dead socket
//! reader never stops the sensor or silently ends its output.
//!
//! - **stdout**: blocking writes (a slow consumer slows the engine, whose
//!   input queue then drops and counts packets). A closed pipe ends the
//!   output: [`Output::closed`] turns true.
//! - **file**: opened for append (a restart never clobbers a log). With
//!   `size`, the file is rotated at the first record boundary at or past that
//!   many bytes; with `interval`, at the first boundary past each multiple of
//!   the interval since the Unix epoch (so `3600` rotates on the hour, UTC).
//!   The full file is renamed `PATH.YYYYmmddTHHMMSSZ` (`.1`, `.2`, … on a
//!   clash) and a new `PATH` is opened; with `keep`, only that many rotated
//!   files are kept. [`Output::reopen`] (SIGHUP) writes what is buffered to
//!   the file as it is now — renamed by logrotate or not — and opens `PATH`
//!   afresh. A write error drops the lines of that write (counted) and the
//!   file is reopened at most once a second until it works again.
//! - **unix socket**: non-blocking. Lines wait in a bounded buffer
//!   ([`SOCKET_BUFFER`]) while the reader is slow or away; past it whole lines
//!   are dropped and counted. When the reader goes away the line it was in
//!   the middle of is dropped (counted) and the rest wait for the next
//!   connection, tried at most once a second. At the end,
//!   [`Output::finish`] waits a bounded time for the reader.
//! - **network sinks** (`redis://…`, `syslog+udp://…`, `syslog+tcp://…`):
//!   each line goes to a bounded queue that a shipper thread empties
//!   ([`crate::output::sinks`]); overflow and end-of-run leftovers are counted.

pub mod eve;
pub mod fingerprints;
pub mod flow_end;
pub mod ocsf;
pub mod sinks;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Buffered bytes past which whole lines are written out.
pub const FLUSH_AT: usize = 256 * 1024;
/// Most bytes held for a slow or absent socket reader.
pub const SOCKET_BUFFER: usize = 16 * 1024 * 1024;
/// Least time between two attempts to reopen a file or reconnect a socket.
const RETRY: Duration = Duration::from_secs(1);

/// Where to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// Standard output, blocking.
    Stdout,
    /// A file, opened for append, rotated per [`Rotation`].
    File(PathBuf),
    /// Connect to a listening Unix stream socket at this path.
    Unix(PathBuf),
    /// A network sink (Redis, syslog); see [`crate::output::sinks`].
    Sink(crate::output::sinks::SinkSpec),
    /// A sink URL that does not parse: [`Output::open`] reports why.
    Invalid(String),
}

impl OutputSpec {
    /// `-` is stdout, `unix:PATH` a Unix socket, anything else a file.
    pub fn parse(s: &str) -> OutputSpec {
        if s == "-" {
            OutputSpec::Stdout
        } else if let Some(r) = crate::output::sinks::SinkSpec::parse(s).transpose() {
            r.map_or_else(|e| OutputSpec::Invalid(format!("{s}: {e}")), OutputSpec::Sink)
        } else if let Some(p) = s.strip_prefix("unix:") {
            OutputSpec::Unix(PathBuf::from(p))
        } else {
            OutputSpec::File(PathBuf::from(s))
        }
    }
}

/// File rotation policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate at the first record boundary at or past this many bytes.
    pub size: Option<u64>,
    /// Rotate at the first record boundary past each multiple of this since the epoch.
    pub interval: Option<Duration>,
    /// Keep at most this many rotated files (oldest removed first).
    pub keep: Option<usize>,
}

/// Counters of the output, for the stats record.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutputStats {
    /// `stdout`, `file` or `unix`; for a network sink `redis`, `syslog-tcp`
    /// or `syslog-udp`; `memory` in tests.
    pub kind: &'static str,
    /// Lines handed to the target (for a socket or sink: sent).
    pub lines_written: u64,
    /// Bytes of those lines, newlines included.
    pub bytes_written: u64,
    /// Whole lines lost (write errors, socket reader away or too slow).
    pub lines_dropped: u64,
    /// Bytes of the dropped lines.
    pub bytes_dropped: u64,
    /// Failed writes, opens, renames and syncs; lost connections and failed sends.
    pub write_errors: u64,
    /// Files rotated by size or time.
    pub rotations: u64,
    /// Files reopened on request (SIGHUP) or after an error.
    pub reopens: u64,
    /// Socket connections made (the first included) and lost.
    pub connects: u64,
    /// Socket or sink connections lost.
    pub disconnects: u64,
    /// Bytes waiting for the socket reader (or a sink's server) now.
    pub pending_bytes: u64,
    /// Network sinks: lines waiting in the queue now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_lines: Option<u64>,
    /// Network sinks: lines dropped because the queue was full (part of `lines_dropped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_dropped: Option<u64>,
    /// Syslog over UDP: lines cut to the message size limit (still written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<u64>,
    /// Network sinks: batches sent again after a reconnect (their lines may arrive twice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resent_batches: Option<u64>,
    /// Network sinks: the last error (connection, error reply), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A line-preserving, never-failing writer; see the module documentation.
pub struct Output {
    target: Target,
    buf: Vec<u8>,
    stats: OutputStats,
    closed: bool,
}

enum Target {
    Stdout(io::Stdout),
    File(FileTarget),
    Unix(SocketTarget),
    Sink(crate::output::sinks::Sink),
    /// Tests: every whole line lands here.
    Memory(Vec<u8>),
}

impl Output {
    /// Open the output. A file that cannot be created, or a socket path
    /// whose parent does not exist, is an error here (at start), not later.
    pub fn open(spec: &OutputSpec, rotation: Rotation) -> io::Result<Output> {
        let (target, kind) = match spec {
            OutputSpec::Stdout => (Target::Stdout(io::stdout()), "stdout"),
            OutputSpec::File(p) => (Target::File(FileTarget::open(p.clone(), rotation)?), "file"),
            OutputSpec::Unix(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.is_dir() {
                        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: no such directory", dir.display())));
                    }
                }
                (Target::Unix(SocketTarget::new(p.clone())), "unix")
            }
            OutputSpec::Sink(s) => {
                let sink = crate::output::sinks::Sink::start(s).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", s.text)))?;
                let kind = sink.kind();
                (Target::Sink(sink), kind)
            }
            OutputSpec::Invalid(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e.clone())),
        };
        let mut out = Output {
            target,
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            stats: OutputStats { kind, ..Default::default() },
            closed: false,
        };
        if let Target::Unix(s) = &mut out.target {
            s.connect(&mut out.stats);
        }
        Ok(out)
    }

    /// An in-memory output (tests).
    pub fn memory() -> Output {
        Output {
            target: Target::Memory(Vec::new()),
            buf: Vec::new(),
            stats: OutputStats { kind: "memory", ..Default::default() },
            closed: false,
        }
    }

    /// The lines written so far to an in-memory output.
    pub fn memory_contents(&self) -> &[u8] {
        match &self.target {
            Target::Memory(v) => v,
            _ => &[],
        }
    }

    /// Stdout was closed by its reader: nothing more can be written.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The counters so far, with what is waiting now (socket buffer, sink queue).
    pub fn stats(&self) -> OutputStats {
        let mut s = self.stats.clone();
        if let Target::Unix(t) = &self.target {
            s.pending_bytes = t.pending.len() as u64;
        }
        if let Target::Sink(k) = &self.target {
            crate::output::sinks::fill_stats(k, &mut s);
        }
        s
    }

    /// Hand every whole buffered line to the target.
    pub fn flush_lines(&mut self) {
        let Some(end) = self.buf.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else { return };
        let lines = count_lines(&self.buf[..end]);
        let chunk = &self.buf[..end];
        let st = &mut self.stats;
        match &mut self.target {
            Target::Memory(v) => {
                v.extend_from_slice(chunk);
                st.lines_written += lines;
                st.bytes_written += chunk.len() as u64;
            }
            Target::Stdout(s) => {
                if self.closed {
                    st.lines_dropped += lines;
                    st.bytes_dropped += chunk.len() as u64;
                } else {
                    let mut lock = s.lock();
                    match lock.write_all(chunk).and_then(|()| lock.flush()) {
                        Ok(()) => {
                            st.lines_written += lines;
                            st.bytes_written += chunk.len() as u64;
                        }
                        Err(e) => {
                            if e.kind() == io::ErrorKind::BrokenPipe {
                                self.closed = true;
                            }
                            st.write_errors += 1;
                            st.lines_dropped += lines;
                            st.bytes_dropped += chunk.len() as u64;
                        }
                    }
                }
            }
            Target::File(f) => f.write_lines(chunk, lines, st),
            Target::Unix(s) => {
                s.queue(chunk, st);
                s.pump(st);
            }
            Target::Sink(k) => chunk.split(|&b| b == b'\n').take(lines as usize).for_each(|l| k.push(l)),
        }
        self.buf.drain(..end);
    }

    /// Between records: write out whole lines, rotate the file when due,
    /// retry a lost file or socket.
    pub fn maintain(&mut self) {
        self.flush_lines();
        let st = &mut self.stats;
        match &mut self.target {
            Target::File(f) => f.maintain(SystemTime::now(), st),
            Target::Unix(s) => s.pump(st),
            _ => {}
        }
    }

    /// Reopen the file (SIGHUP, after logrotate renamed it); what was
    /// buffered goes to the file as it was. A socket that lost its reader
    /// tries to reconnect at once; stdout stays.
    pub fn reopen(&mut self) {
        self.flush_lines();
        let st = &mut self.stats;
        match &mut self.target {
            Target::File(f) => f.reopen(st),
            Target::Unix(s) => {
                // A lost reader is retried now rather than after the back-off.
                s.next_try = None;
                s.pump(st);
            }
            _ => {}
        }
    }

    /// End of the run: write everything, waiting at most `wait` for a socket reader.
    pub fn finish(&mut self, wait: Duration) {
        // A last line without its newline is still a line.
        if self.buf.last().is_some_and(|&b| b != b'\n') {
            self.buf.push(b'\n');
        }
        self.flush_lines();
        let st = &mut self.stats;
        match &mut self.target {
            Target::File(f) => {
                if let Some(file) = f.file.as_mut() {
                    if file.sync_data().is_err() {
                        st.write_errors += 1;
                    }
                }
            }
            Target::Unix(s) => {
                let deadline = Instant::now() + wait;
                loop {
                    s.pump(st);
                    if s.pending.is_empty() || Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let left = &s.pending;
                if !left.is_empty() {
                    st.lines_dropped += count_lines(left);
                    st.bytes_dropped += left.len() as u64;
                    s.pending.clear();
                }
            }
            Target::Sink(k) => k.finish(wait),
            _ => {}
        }
    }
}

impl Write for Output {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= FLUSH_AT {
            self.flush_lines();
        }
        Ok(b.len())
    }

    /// Writes whole lines only: a partial line stays buffered until its end.
    fn flush(&mut self) -> io::Result<()> {
        self.flush_lines();
        Ok(())
    }
}

fn count_lines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

struct FileTarget {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// Next time-rotation boundary, epoch seconds.
    next_boundary: Option<u64>,
    rotation: Rotation,
    next_try: Option<Instant>,
}

impl FileTarget {
    fn open(path: PathBuf, rotation: Rotation) -> io::Result<FileTarget> {
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut t = FileTarget { path, file: Some(file), size, next_boundary: None, rotation, next_try: None };
        t.next_boundary = t.boundary_after(SystemTime::now());
        Ok(t)
    }

    fn boundary_after(&self, now: SystemTime) -> Option<u64> {
        let iv = self.rotation.interval?.as_secs().max(1);
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Some((secs / iv + 1) * iv)
    }

    fn write_lines(&mut self, chunk: &[u8], lines: u64, st: &mut OutputStats) {
        if self.file.is_none() {
            self.retry(st);
        }
        let Some(f) = self.file.as_mut() else {
            st.lines_dropped += lines;
            st.bytes_dropped += chunk.len() as u64;
            return;
        };
        match f.write_all(chunk) {
            Ok(()) => {
                self.size += chunk.len() as u64;
                st.lines_written += lines;
                st.bytes_written += chunk.len() as u64;
            }
            Err(_) => {
                // Part of the chunk may be on disk; the file may now end in a
                // partial line. Start a fresh line before anything else.
                st.write_errors += 1;
                st.lines_dropped += lines;
                st.bytes_dropped += chunk.len() as u64;
                if f.write_all(b"\n").is_err() {
                    self.file = None;
                    self.next_try = Some(Instant::now() + RETRY);
                }
            }
        }
    }

    fn retry(&mut self, st: &mut OutputStats) {
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match open_append(&self.path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                self.next_try = None;
                st.reopens += 1;
            }
            Err(_) => {
                st.write_errors += 1;
                self.next_try = Some(Instant::now() + RETRY);
            }
        }
    }

    fn maintain(&mut self, now: SystemTime, st: &mut OutputStats) {
        if self.file.is_none() {
            self.retry(st);
            return;
        }
        let by_size = self.rotation.size.is_some_and(|s| self.size >= s.max(1));
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let by_time = self.next_boundary.is_some_and(|b| secs >= b);
        if by_time {
            self.next_boundary = self.boundary_after(now);
        }
        if (by_size || by_time) && self.size > 0 {
            self.rotate(now, st);
        }
    }

    fn rotate(&mut self, now: SystemTime, st: &mut OutputStats) {
        let target = rotated_name(&self.path, now);
        if let Some(f) = self.file.take() {
            drop(f);
        }
        if std::fs::rename(&self.path, &target).is_err() {
            st.write_errors += 1;
        } else {
            st.rotations += 1;
        }
        match open_append(&self.path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
            }
            Err(_) => {
                st.write_errors += 1;
                self.next_try = Some(Instant::now() + RETRY);
            }
        }
        if let Some(keep) = self.rotation.keep {
            prune_rotated(&self.path, keep);
        }
    }

    fn reopen(&mut self, st: &mut OutputStats) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        self.file = None;
        self.next_try = None;
        self.retry(st);
    }
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p).map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display())))
}

/// `PATH.YYYYmmddTHHMMSSZ`, with `.N` added until the name is free.
pub fn rotated_name(path: &Path, now: SystemTime) -> PathBuf {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let stamp = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).ok())
        .unwrap_or_else(|| secs.to_string());
    let base = format!("{}.{stamp}", path.display());
    let mut p = PathBuf::from(&base);
    let mut n = 1;
    while p.exists() {
        p = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    p
}

/// Remove the oldest rotated files of `path` beyond `keep`.
fn prune_rotated(path: &Path, keep: usize) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut rotated: Vec<(String, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let rest = n.strip_prefix(&prefix)?;
            let (stamp, suffix) = rest.split_at(rest.len().min(16));
            let ok = stamp.len() == 16
                && stamp.as_bytes()[8] == b'T'
                && stamp.ends_with('Z')
                && stamp[..8].bytes().all(|b| b.is_ascii_digit())
                && stamp[9..15].bytes().all(|b| b.is_ascii_digit());
            let seq = if suffix.is_empty() { Some(0) } else { suffix.strip_prefix('.').and_then(|s| s.parse().ok()) };
            match (ok, seq) {
                (true, Some(seq)) => Some((stamp.to_string(), seq, e.path())),
                _ => None,
            }
        })
        .collect();
    rotated.sort();
    let excess = rotated.len().saturating_sub(keep);
    for (_, _, p) in rotated.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}

struct SocketTarget {
    path: PathBuf,
    stream: Option<std::os::unix::net::UnixStream>,
    /// Bytes for the reader: starts with the unsent rest of a line when `partial > 0`.
    pending: Vec<u8>,
    /// Bytes of `pending`'s first line already sent on this connection.
    partial: usize,
    next_try: Option<Instant>,
}

impl SocketTarget {
    fn new(path: PathBuf) -> Self {
        SocketTarget { path, stream: None, pending: Vec::new(), partial: 0, next_try: None }
    }

    fn connect(&mut self, st: &mut OutputStats) {
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match std::os::unix::net::UnixStream::connect(&self.path).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(s) => {
                self.stream = Some(s);
                self.next_try = None;
                st.connects += 1;
            }
            Err(_) => self.next_try = Some(Instant::now() + RETRY),
        }
    }

    /// Take whole lines, dropping (and counting) those that do not fit.
    fn queue(&mut self, chunk: &[u8], st: &mut OutputStats) {
        let room = SOCKET_BUFFER.saturating_sub(self.pending.len());
        if chunk.len() <= room {
            self.pending.extend_from_slice(chunk);
            return;
        }
        // Keep the lines that fit, drop the rest.
        let cut = chunk[..room].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.pending.extend_from_slice(&chunk[..cut]);
        st.lines_dropped += count_lines(&chunk[cut..]);
        st.bytes_dropped += (chunk.len() - cut) as u64;
    }

    /// Send what the socket takes without blocking.
    fn pump(&mut self, st: &mut OutputStats) {
        if self.stream.is_none() {
            if self.pending.is_empty() {
                return;
            }
            self.connect(st);
        }
        let Some(s) = self.stream.as_mut() else { return };
        let mut sent = 0usize;
        let mut lost = false;
        while sent < self.pending.len() {
            match s.write(&self.pending[sent..]) {
                Ok(0) => {
                    lost = true;
                    break;
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    lost = true;
                    break;
                }
            }
        }
        // Account whole lines sent.
        let done = &self.pending[..sent];
        let mut line_start = 0usize;
        let first_line_offset = self.partial;
        for (i, &b) in done.iter().enumerate() {
            if b == b'\n' {
                st.lines_written += 1;
                line_start = i + 1;
            }
        }
        st.bytes_written += sent as u64;
        // What is left of the current line was partly sent.
        self.partial = if line_start == 0 { first_line_offset + sent } else { sent - line_start };
        self.pending.drain(..sent);
        if lost {
            self.stream = None;
            st.disconnects += 1;
            st.write_errors += 1;
            self.next_try = Some(Instant::now() + RETRY);
            if self.partial > 0 {
                // The reader saw the start of this line: drop its rest.
                let end = self.pending.iter().position(|&b| b == b'\n').map_or(self.pending.len(), |i| i + 1);
                st.lines_dropped += 1;
                st.bytes_dropped += end as u64;
                self.pending.drain(..end);
                self.partial = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pinwatch-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp dir");
        d
    }

    #[test]
    fn spec_parse() {
        assert_eq!(OutputSpec::parse("-"), OutputSpec::Stdout);
        assert_eq!(OutputSpec::parse("unix:/run/x.sock"), OutputSpec::Unix("/run/x.sock".into()));
        assert_eq!(OutputSpec::parse("eve.json"), OutputSpec::File("eve.json".into()));
    }

    #[test]
    fn only_whole_lines_reach_the_target() {
        let mut o = Output::memory();
        o.write_all(b"{\"a\":1}\n{\"b\"").expect("write");
        o.flush().expect("flush");
        assert_eq!(o.memory_contents(), b"{\"a\":1}\n");
        o.write_all(b":2}\n").expect("write");
        o.maintain();
        assert_eq!(o.memory_contents(), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(o.stats().lines_written, 2);
    }

    #[test]
    fn size_rotation_and_keep() {
        let d = tmpdir("rot");
        let p = d.join("eve.json");
        let rot = Rotation { size: Some(100), interval: None, keep: Some(2) };
        let mut o = Output::open(&OutputSpec::File(p.clone()), rot).expect("open");
        for i in 0..40 {
            writeln!(o, "{{\"n\":{i},\"pad\":\"0123456789\"}}").expect("write");
            o.maintain();
        }
        o.finish(Duration::ZERO);
        let st = o.stats();
        assert!(st.rotations >= 3, "{st:?}");
        let mut names: Vec<String> =
            std::fs::read_dir(&d).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        // the live file and at most `keep` rotated ones
        assert_eq!(names.len(), 3, "{names:?}");
        // every kept file holds whole lines only
        for n in &names {
            let text = std::fs::read_to_string(d.join(n)).expect("read");
            assert!(text.is_empty() || text.ends_with('\n'));
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).expect("json line");
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reopen_after_rename_loses_nothing() {
        let d = tmpdir("reopen");
        let p = d.join("eve.json");
        let mut o = Output::open(&OutputSpec::File(p.clone()), Rotation::default()).expect("open");
        writeln!(o, "1").expect("w");
        o.maintain();
        std::fs::rename(&p, d.join("eve.json.old")).expect("rename");
        writeln!(o, "2").expect("w"); // buffered: goes to the renamed file on reopen
        o.reopen();
        writeln!(o, "3").expect("w");
        o.finish(Duration::ZERO);
        assert_eq!(std::fs::read_to_string(d.join("eve.json.old")).expect("old"), "1\n2\n");
        assert_eq!(std::fs::read_to_string(&p).expect("new"), "3\n");
        assert_eq!(o.stats().reopens, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn time_rotation_on_interval_boundaries() {
        let d = tmpdir("time");
        let p = d.join("eve.json");
        let rot = Rotation { size: None, interval: Some(Duration::from_secs(3600)), keep: None };
        let mut f = FileTarget::open(p.clone(), rot).expect("open");
        let mut st = OutputStats::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 22:13:20
        f.next_boundary = f.boundary_after(t0);
        assert_eq!(f.next_boundary, Some(1_700_002_800), "the next full hour");
        f.write_lines(b"1\n", 1, &mut st);
        f.maintain(t0 + Duration::from_secs(60), &mut st);
        assert_eq!(st.rotations, 0);
        f.maintain(UNIX_EPOCH + Duration::from_secs(1_700_002_800), &mut st);
        assert_eq!(st.rotations, 1);
        assert_eq!(std::fs::read_to_string(d.join("eve.json.20231114T230000Z")).expect("rotated"), "1\n");
        // an empty file is not rotated
        f.maintain(UNIX_EPOCH + Duration::from_secs(1_700_006_400), &mut st);
        assert_eq!(st.rotations, 1);
        assert_eq!(f.next_boundary, Some(1_700_010_000));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotated_names_do_not_clash() {
        let d = tmpdir("names");
        let p = d.join("x.json");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = rotated_name(&p, t);
        assert!(a.to_string_lossy().ends_with("x.json.20231114T221320Z"), "{}", a.display());
        std::fs::write(&a, "").expect("w");
        let b = rotated_name(&p, t);
        assert!(b.to_string_lossy().ends_with("x.json.20231114T221320Z.1"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn socket_reader_away_then_back() {
        use std::os::unix::net::UnixListener;
        let d = tmpdir("sock");
        let sp = d.join("eve.sock");
        // No reader yet: lines wait.
        let mut o = Output::open(&OutputSpec::Unix(sp.clone()), Rotation::default()).expect("open");
        writeln!(o, "a").expect("w");
        o.maintain();
        assert_eq!(o.stats().pending_bytes, 2);
        let l = UnixListener::bind(&sp).expect("bind");
        std::thread::sleep(RETRY + Duration::from_millis(50));
        writeln!(o, "b").expect("w");
        o.maintain();
        let (mut c, _) = l.accept().expect("accept");
        o.finish(Duration::from_secs(2));
        drop(o);
        let mut got = String::new();
        c.read_to_string(&mut got).expect("read");
        assert_eq!(got, "a\nb\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn socket_reader_gone_counts_drops_and_never_blocks() {
        use std::os::unix::net::UnixListener;
        let d = tmpdir("sockgone");
        let sp = d.join("eve.sock");
        let l = UnixListener::bind(&sp).expect("bind");
        let mut o = Output::open(&OutputSpec::Unix(sp.clone()), Rotation::default()).expect("open");
        let (c, _) = l.accept().expect("accept");
        drop(c);
        drop(l);
        let line = format!("{{\"x\":\"{}\"}}\n", "y".repeat(1000));
        let started = Instant::now();
        for _ in 0..40_000 {
            o.write_all(line.as_bytes()).expect("w");
        }
        o.finish(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(10));
        let st = o.stats();
        assert_eq!(st.lines_written + st.lines_dropped, 40_000, "{st:?}");
        assert!(st.lines_dropped > 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
