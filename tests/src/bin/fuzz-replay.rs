//! A seeded, structure-aware mutation runner over classic pcap captures (the
//! testbed captures in `pcaps/` by default), on stable Rust: each case takes
//! a seed capture, applies 1–4 mutations that know the record and
//! Ethernet/IPv4/TCP framing (split a TCP segment in two, or in 1–4-byte
//! pieces; overlap a segment with different bytes; swap, drop or duplicate
//! records; step a timestamp back or to the ends of time; flip payload
//! bytes; cut a record's length; truncate the file), replays it with one
//! thread and with two, and checks: no panic, every line valid JSON, and
//! the same records (all lines but the `stats` one) with both. Findings are
//! written to `--out DIR` (default `target/fuzz-replay`) as the mutated
//! capture, to be kept as regression inputs.
//!
//! `cargo run --release -p pinwatch-tests --bin fuzz-replay -- --seconds 300 --seed 1`
//!
//! Prints one JSON line of figures at the end; exits 1 on any panic or
//! invalid line (a 1-vs-2-thread difference is counted and kept, and fails
//! the run only with `--strict-threads`).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pinwatch::run::pipeline::{replay, Input, Options};

/// xorshift64*: deterministic from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A classic pcap, cut into its records (header fields kept as raw bytes).
struct Capture {
    header: Vec<u8>,
    big_endian: bool,
    records: Vec<Record>,
}

#[derive(Clone)]
struct Record {
    sec: u32,
    frac: u32,
    orig_len: u32,
    data: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize, be: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
}

impl Capture {
    fn parse(b: &[u8]) -> Option<Capture> {
        let magic = u32_at(b, 0, false)?;
        let big_endian = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d => false,
            0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
            _ => return None,
        };
        let mut records = Vec::new();
        let mut pos = 24;
        while pos + 16 <= b.len() {
            let caplen = u32_at(b, pos + 8, big_endian)? as usize;
            let data = b.get(pos + 16..pos + 16 + caplen)?.to_vec();
            records.push(Record {
                sec: u32_at(b, pos, big_endian)?,
                frac: u32_at(b, pos + 4, big_endian)?,
                orig_len: u32_at(b, pos + 12, big_endian)?,
                data,
            });
            pos += 16 + caplen;
        }
        Some(Capture { header: b.get(..24)?.to_vec(), big_endian, records })
    }

    fn write(&self) -> Vec<u8> {
        let mut v = self.header.clone();
        let w = |v: &mut Vec<u8>, x: u32| v.extend(if self.big_endian { x.to_be_bytes() } else { x.to_le_bytes() });
        for r in &self.records {
            w(&mut v, r.sec);
            w(&mut v, r.frac);
            w(&mut v, r.data.len() as u32);
            w(&mut v, r.orig_len);
            v.extend(&r.data);
        }
        v
    }
}

/// Ethernet/IPv4/TCP: (IP header offset, TCP header offset, payload offset).
fn tcp_offsets(f: &[u8]) -> Option<(usize, usize, usize)> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = 14;
    let ihl = usize::from(f.get(ip)? & 0x0f) * 4;
    if f.get(ip + 9)? != &6 || ihl < 20 {
        return None;
    }
    let tcp = ip + ihl;
    let doff = usize::from(f.get(tcp + 12)? >> 4) * 4;
    let payload = tcp + doff;
    (payload <= f.len()).then_some((ip, tcp, payload))
}

/// A copy of a TCP frame carrying `payload` at `seq_delta` bytes after the
/// original sequence number (IP total length fixed; checksums not).
fn tcp_piece(f: &[u8], offs: (usize, usize, usize), seq_delta: u32, payload: &[u8]) -> Vec<u8> {
    let (ip, tcp, p) = offs;
    let mut g = f[..p].to_vec();
    g.extend(payload);
    let total = (g.len() - ip) as u16;
    g[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    let seq = u32::from_be_bytes([g[tcp + 4], g[tcp + 5], g[tcp + 6], g[tcp + 7]]).wrapping_add(seq_delta);
    g[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    g
}

const KINDS: [&str; 12] = [
    "split_segment",
    "tiny_segments",
    "overlap_different",
    "swap_records",
    "drop_record",
    "duplicate_record",
    "time_back",
    "time_extreme",
    "flip_bytes",
    "cut_caplen",
    "truncate_file",
    "reverse_window",
];

fn mutate(c: &mut Capture, rng: &mut Rng, kind: usize) {
    let n = c.records.len();
    if n == 0 {
        return;
    }
    // Records with TCP payload: the interesting ones.
    let with_payload: Vec<usize> =
        (0..n).filter(|&i| tcp_offsets(&c.records[i].data).is_some_and(|o| o.2 < c.records[i].data.len())).collect();
    let pick_payload = |rng: &mut Rng| if with_payload.is_empty() { rng.below(n) } else { with_payload[rng.below(with_payload.len())] };
    match KINDS[kind] {
        "split_segment" | "tiny_segments" | "overlap_different" => {
            let i = pick_payload(rng);
            resegment(c, i, KINDS[kind], rng);
        }
        "swap_records" if n > 1 => {
            let i = rng.below(n - 1);
            c.records.swap(i, i + 1);
        }
        "drop_record" => {
            c.records.remove(rng.below(n));
        }
        "duplicate_record" => {
            let i = rng.below(n);
            let r = c.records[i].clone();
            c.records.insert(i + 1, r);
        }
        "time_back" => {
            let i = rng.below(n);
            c.records[i].sec = c.records[i].sec.saturating_sub(1 + rng.below(7200) as u32);
        }
        "time_extreme" => {
            let i = rng.below(n);
            c.records[i].sec = [0, u32::MAX, 1 << 31, c.records[i].sec.wrapping_add(3601)][rng.below(4)];
        }
        "flip_bytes" => {
            let i = pick_payload(rng);
            let d = &mut c.records[i].data;
            if !d.is_empty() {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(d.len());
                    d[at] ^= 1 << rng.below(8);
                }
            }
        }
        "cut_caplen" => {
            let i = rng.below(n);
            let len = c.records[i].data.len();
            c.records[i].data.truncate(rng.below(len + 1));
        }
        "truncate_file" => {
            c.records.truncate(rng.below(n + 1));
        }
        "reverse_window" => {
            let i = rng.below(n);
            let j = (i + 2 + rng.below(16)).min(n);
            c.records[i..j].reverse();
        }
        _ => {}
    }
}

/// Replace record `i` (a TCP segment) by pieces of its payload, per `kind`:
/// two halves (`split_segment`), segments of 1-4 bytes (`tiny_segments`),
/// or the segment then an overlapping copy of part of it with other bytes
/// (`overlap_different`). A record without TCP payload stays.
fn resegment(c: &mut Capture, i: usize, kind: &str, rng: &mut Rng) {
    let r = c.records[i].clone();
    let Some(offs) = tcp_offsets(&r.data) else { return };
    let payload = r.data[offs.2..].to_vec();
    if payload.is_empty() {
        return;
    }
    let mut pieces = Vec::new();
    match kind {
        "split_segment" => {
            let at = 1 + rng.below(payload.len().max(2) - 1);
            let at = at.min(payload.len());
            pieces.push((0, payload[..at].to_vec()));
            pieces.push((at, payload[at..].to_vec()));
        }
        "tiny_segments" => {
            let size = 1 + rng.below(4);
            let mut at = 0;
            while at < payload.len() && pieces.len() < 4096 {
                let end = (at + size).min(payload.len());
                pieces.push((at, payload[at..end].to_vec()));
                at = end;
            }
            if at < payload.len() {
                pieces.push((at, payload[at..].to_vec()));
            }
        }
        _ => {
            // The segment, then an overlapping copy of part of it with other bytes.
            let from = rng.below(payload.len());
            let len = 1 + rng.below(payload.len() - from);
            let other: Vec<u8> = payload[from..from + len].iter().map(|b| b ^ 0x5a).collect();
            pieces.push((0, payload.clone()));
            pieces.push((from, other));
        }
    }
    let new: Vec<Record> = pieces
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(at, p)| {
            let data = tcp_piece(&r.data, offs, at as u32, &p);
            Record { orig_len: data.len() as u32, data, ..r }
        })
        .collect();
    c.records.splice(i..=i, new);
}

struct Run {
    records: Vec<String>,
    invalid: usize,
}

fn run(path: &Path, threads: usize) -> Result<Run, String> {
    let opts = Options { progress: false, stats: true, threads, ..Options::default() };
    let mut out = Vec::new();
    match catch_unwind(AssertUnwindSafe(|| replay(&[Input::File(path.to_path_buf())], &opts, &mut out))) {
        Err(p) => Err(p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()),
        Ok(Err(e)) => Ok(Run { records: vec![format!("error: {e:#}")], invalid: 0 }),
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&out);
            let mut invalid = 0;
            let mut records = Vec::new();
            for line in text.lines() {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(v) if v["event_type"] == "stats" => {}
                    Ok(_) => records.push(line.to_string()),
                    Err(_) => invalid += 1,
                }
            }
            Ok(Run { records, invalid })
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seed: u64 = flag("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds: u64 = flag("--seconds").and_then(|s| s.parse().ok()).unwrap_or(60);
    let max_cases: u64 = flag("--cases").and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let strict_threads = args.iter().any(|a| a == "--strict-threads");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = flag("--out").map(PathBuf::from).unwrap_or_else(|| root.join("target/fuzz-replay"));
    let seeds_dir = flag("--seeds").map(PathBuf::from).unwrap_or_else(|| root.join("pcaps"));
    let mut seeds: Vec<(String, Capture)> = std::fs::read_dir(&seeds_dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "pcap")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), Capture::parse(&std::fs::read(&p).ok()?)?)))
        .collect();
    seeds.sort_by(|a, b| a.0.cmp(&b.0));
    if seeds.is_empty() {
        eprintln!("fuzz-replay: no classic pcap seeds in {}", seeds_dir.display());
        std::process::exit(2);
    }
    std::fs::create_dir_all(&out_dir).expect("output directory");
    // A panic is a result here; keep the default hook's message quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let work = out_dir.join(format!("case-{}.pcap", std::process::id()));
    let mut rng = Rng(seed.max(1));
    let started = Instant::now();
    let (mut cases, mut panics, mut invalid, mut differ) = (0u64, 0u64, 0u64, 0u64);
    let mut per_kind = [0u64; KINDS.len()];
    let mut differ_kind = [0u64; KINDS.len()];
    while started.elapsed() < Duration::from_secs(seconds) && cases < max_cases {
        let (name, seed_cap) = &seeds[rng.below(seeds.len())];
        let mut c = Capture { header: seed_cap.header.clone(), big_endian: seed_cap.big_endian, records: seed_cap.records.clone() };
        let mut kinds = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let k = rng.below(KINDS.len());
            kinds.push(k);
            per_kind[k] += 1;
            mutate(&mut c, &mut rng, k);
        }
        let bytes = c.write();
        std::fs::write(&work, &bytes).expect("write case");
        cases += 1;
        let keep = |what: &str| {
            let p = out_dir.join(format!("{what}-{seed}-{cases}-{}.pcap", name.trim_end_matches(".pcap")));
            let _ = std::fs::write(&p, &bytes);
            p
        };
        let kind_names: Vec<&str> = kinds.iter().map(|&k| KINDS[k]).collect();
        match (run(&work, 1), run(&work, 2)) {
            (Ok(a), Ok(b)) => {
                if a.invalid + b.invalid > 0 {
                    invalid += 1;
                    eprintln!("invalid JSON line: {} {kind_names:?}", keep("invalid").display());
                }
                if a.records != b.records {
                    differ += 1;
                    for &k in &kinds {
                        differ_kind[k] += 1;
                    }
                    if differ <= 20 {
                        eprintln!("1 thread != 2 threads: {} {kind_names:?}", keep("threads").display());
                    }
                }
            }
            (a, b) => {
                panics += 1;
                let msg = a.err().or(b.err()).unwrap_or_default();
                eprintln!("panic: {msg}: {} {kind_names:?}", keep("panic").display());
            }
        }
    }
    let _ = std::fs::remove_file(&work);
    let kinds: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), serde_json::json!({"applied": per_kind[i], "in_thread_differences": differ_kind[i]})))
        .collect();
    let summary = serde_json::json!({"seed": seed, "seconds": started.elapsed().as_secs_f64(), "seeds": seeds.len(), "cases": cases, "panics": panics, "invalid_json": invalid, "thread_differences": differ, "kinds": kinds});
    let _ = writeln!(std::io::stdout(), "{summary}");
    if panics > 0 || invalid > 0 || (strict_threads && differ > 0) {
        std::process::exit(1);
    }
}
