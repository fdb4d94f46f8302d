//! Seeded, structure-aware mutation fuzzing, one target per entry point of
//! the sensor, on stable Rust (README, "Fuzzing"):
//!
//! | target | entry point | seeds |
//! | --- | --- | --- |
//! | `capture` | `CaptureFile::from_bytes` + `packets()` (pcap, pcapng, gzip), and `pipeline::replay` with 1 and 2 threads | `pcaps/`, corpus captures |
//! | `decode` | `decode::decode` (link types, VLAN/QinQ, tunnels) | frames of those captures |
//! | `tls_stream` | `reassembly::Reassembler` → `tls::TlsParser` | TCP streams of those captures |
//! | `quic` | `quic::QuicConn::datagram` (Initial decryption, CRYPTO frames) | ClientHellos of those streams, sealed here |
//! | `certificate` | `cert::parse_certificate` | certificates of those streams, `pcaps/*.pem` |
//! | `feed` | `feed_source::read_file_lines` → `FeedReader::push_line` | `pcaps/*.feed.jsonl`, made-up events |
//! | `config` | `Config::load` | `pcaps/*.toml`, the example configs |
//!
//! Every target is a [`Target`]: it loads its seeds, mutates one into a
//! case (the case is self-contained bytes, so a finding is kept as a file
//! and replayed by `tests/tests/fuzz.rs`), and checks the case: no panic
//! (caught here), the heap the entry point allocates on the checking thread
//! stays under the target's documented bound ([`alloc`]), and the target's
//! own invariants (valid JSON lines and one thread = two threads for
//! `capture`; a segmented or reordered stream yields the hellos of the
//! whole one for `tls_stream`, `quic` and `decode`).

pub mod alloc;
pub mod capture;
pub mod cert;
pub mod config;
pub mod decode;
pub mod feed;
pub mod quic;
pub mod seeds;
pub mod tls_stream;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic from the seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix the seed so nearby seeds diverge at once.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    #[allow(clippy::should_implement_trait)] // an endless generator, not an iterator
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A value that breaks arithmetic more often than a random one does.
    pub fn interesting_u64(&mut self) -> u64 {
        const V: [u64; 16] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            i64::MAX as u64,
            u64::MAX,
        ];
        if self.chance(4) {
            self.next()
        } else {
            V[self.below(V.len())]
        }
    }
}

/// Byte-level mutations, for every target after its structural ones.
pub fn havoc(b: &mut Vec<u8>, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                b[i] = [0, 0xff, 0x7f, 0x80, b'\n', b'"', 0x16, 0xc0][rng.below(8)];
            }
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = rng.interesting_u64() as u32;
                let v = if rng.chance(2) { v.to_le_bytes() } else { v.to_be_bytes() };
                b[i..i + 4].copy_from_slice(&v);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                b.drain(i..i + n);
            }
            5 => {
                let i = rng.below(len + 1);
                let ins = if rng.chance(2) && len > 0 {
                    let from = rng.below(len);
                    b[from..(from + 1 + rng.below(64)).min(len)].to_vec()
                } else {
                    let n = 1 + rng.below(16);
                    rng.bytes(n)
                };
                b.splice(i..i, ins);
            }
            6 if len > 0 => b.truncate(rng.below(len)),
            _ if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            _ => b.push(rng.next() as u8),
        }
    }
}

/// One fuzz target: seeds, a structure-aware mutator, a check.
pub trait Target {
    fn name(&self) -> &'static str;
    /// File extension of kept cases (`tests/regressions/<name>/*.<ext>`).
    fn ext(&self) -> &'static str {
        "bin"
    }
    /// The seed cases (each a valid case for [`Target::check`]).
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// A new case made from `seed`.
    fn mutate(&self, seed: &[u8], all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8>;
    /// Check one case; `Err` says what failed. A panic is caught by the runner.
    fn check(&self, case: &[u8]) -> Result<(), String>;
}

/// Every target, by name.
pub fn targets() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(capture::Capture::default()),
        Box::new(decode::Decode),
        Box::new(tls_stream::TlsStream),
        Box::new(quic::Quic),
        Box::new(cert::Certificate),
        Box::new(feed::Feed::default()),
        Box::new(config::ConfigTarget::default()),
    ]
}

pub fn target(name: &str) -> Option<Box<dyn Target>> {
    targets().into_iter().find(|t| t.name() == name)
}

/// Run `check` with panics caught and turned into `Err`.
pub fn check_caught(t: &dyn Target, case: &[u8]) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| t.check(case))) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
        )),
    }
}

/// Figures of one run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub target: String,
    pub seed: u64,
    pub seeds: usize,
    pub cases: u64,
    pub wall_seconds: f64,
    /// CPU time of this process (user + system), from `/proc/self/stat`.
    pub cpu_seconds: f64,
    pub execs_per_cpu_second: f64,
    pub findings: u64,
    /// The first findings' messages and where their cases were written.
    pub found: Vec<String>,
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    pub cases: u64,
    pub duration: Duration,
    /// Where findings are written (`None`: not written).
    pub out: Option<PathBuf>,
}

/// Mutate and check until the case count or the duration runs out.
pub fn run(t: &dyn Target, o: &RunOptions) -> Report {
    let seeds = t.seeds();
    let mut r = Report { target: t.name().to_string(), seed: o.seed, seeds: seeds.len(), ..Report::default() };
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    if seeds.is_empty() {
        r.findings = 1;
        r.found.push("no seeds".into());
        return r;
    }
    let mut rng = Rng::new(o.seed);
    while r.cases < o.cases && started.elapsed() < o.duration {
        let seed = &seeds[rng.below(seeds.len())];
        // The first cases are seeds as they are (the reference behaviour).
        let case = if r.cases < seeds.len() as u64 && r.cases < 4 { seed.clone() } else { t.mutate(seed, &seeds, &mut rng) };
        r.cases += 1;
        if let Err(msg) = check_caught(t, &case) {
            r.findings += 1;
            let mut line = msg.chars().take(300).collect::<String>();
            if let Some(dir) = &o.out {
                let _ = std::fs::create_dir_all(dir);
                let p = dir.join(format!("{}-{}-{}.{}", t.name(), o.seed, r.cases, t.ext()));
                if std::fs::write(&p, &case).is_ok() {
                    line = format!("{line} ({})", p.display());
                }
            }
            if r.found.len() < 20 {
                r.found.push(line);
            }
        }
    }
    r.wall_seconds = started.elapsed().as_secs_f64();
    r.cpu_seconds = cpu_seconds() - cpu0;
    r.execs_per_cpu_second = if r.cpu_seconds > 0.0 { r.cases as f64 / r.cpu_seconds } else { 0.0 };
    r
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`; 0
/// elsewhere).
pub fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses).
    let Some(rest) = s.rsplit_once(')').map(|x| x.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// The kept cases of a target: `tests/regressions/<target>/`.
pub fn regression_dir(target: &str) -> PathBuf {
    crate::corpus::workspace_root().join("tests").join("regressions").join(target)
}

/// Every file under `dir` (sorted; none when it does not exist).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// A path in the temporary directory unique to this target instance (the
/// same target may run twice at once in one test process).
pub(crate) fn temp_path(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("pinwatch-fuzz-{what}-{}-{n}", std::process::id()))
}

/// Little-endian framing helpers for the self-contained case formats.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    /// A `u32` length, then that many bytes (or all that is left).
    pub fn blob(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let n = n.min(self.0.len());
        self.take(n)
    }
}

pub(crate) fn put_blob(v: &mut Vec<u8>, b: &[u8]) {
    v.extend((b.len() as u32).to_le_bytes());
    v.extend(b);
}
