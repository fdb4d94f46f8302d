//! Target `feed`: a feed file (JSON lines, `enrichment/FEED.md`) read as
//! `--feed` reads it ([`read_file_lines`], then
//! [`FeedReader::push_line`]), and every fourth case a replay of
//! `pcaps/testbed-fallback.pcap` with that feed, with one thread and two.
//!
//! A case is the feed file's bytes. Mutations parse a line as JSON and
//! replace one value — numbers at the ends of `i64`/`u64` and beyond,
//! RFC 3339 times at the ends of the calendar or invalid, long strings,
//! other types — or drop a key, duplicate or reorder lines (a device
//! bound to many IPs, an IP to many devices), then maybe change bytes
//! (invalid UTF-8, cut lines, NULs).
//!
//! Checks: no panic; problems kept within `DEFAULT_MAX_PROBLEMS`; every
//! line counted once; heap at most 64 KiB (one read) plus 16 times the
//! longest line plus 256 KiB; replay lines are JSON objects and the
//! records equal for 1 and 2 threads.

use std::path::PathBuf;

use pinwatch::enrich::feed_source::{read_file_lines, FeedMsg, PumpConfig};
use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_enrichment::feed::{FeedReader, DEFAULT_MAX_PROBLEMS};
use serde_json::Value;

use super::alloc::measure;
use super::{havoc, Rng, Target};

#[derive(Debug)]
pub struct Feed {
    work: PathBuf,
    pub replay_every: u64,
    n: std::cell::Cell<u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed { work: super::temp_path("feed.jsonl"), replay_every: 4, n: std::cell::Cell::new(0) }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.work);
    }
}

fn wild(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => serde_json::json!(i64::MAX),
        3 => serde_json::json!(i64::MIN),
        4 => serde_json::json!(u64::MAX),
        5 => serde_json::from_str("1e400").unwrap_or(Value::Null),
        6 => serde_json::json!(-1),
        7 => Value::String(
            [
                "9999-12-31T23:59:59.999999999Z",
                "0000-01-01T00:00:00Z",
                "1677-09-21T00:12:43Z",
                "2262-04-11T23:47:17Z",
                "2026-02-30T25:61:61Z",
                "2026-01-01T00:00:00+23:59",
                "2026-01-01T00:00:00-99:99",
                "2026-01-01T00:00:00.0000000000000000001Z",
            ][rng.below(8)]
            .to_string(),
        ),
        8 => Value::String("x".repeat(1 + rng.below(70_000))),
        9 => Value::String(
            ["10.77.1.2", "::", "::ffff:10.77.1.2", "255.255.255.255", "300.1.1.1", "10.77.1.2/0", ""][rng.below(7)].to_string(),
        ),
        10 => Value::String("\u{0}\u{fffd}\u{202e}é".into()),
        11 => serde_json::json!([]),
        12 => serde_json::json!({}),
        _ => serde_json::json!(rng.next() as i64),
    }
}

/// Replace a random value inside `v` (or `v` itself).
fn poke(v: &mut Value, rng: &mut Rng, depth: usize) {
    let descend = depth < 6 && rng.chance(3).then_some(()).is_none();
    match v {
        Value::Object(m) if !m.is_empty() && descend => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            if rng.chance(8) {
                m.remove(k);
            } else if let Some(c) = m.get_mut(k) {
                poke(c, rng, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && descend => {
            let i = rng.below(a.len());
            poke(&mut a[i], rng, depth + 1);
        }
        _ => *v = wild(rng),
    }
}

impl Target for Feed {
    fn name(&self) -> &'static str {
        "feed"
    }
    fn ext(&self) -> &'static str {
        "jsonl"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let root = crate::corpus::workspace_root();
        super::files_in(&root.join("pcaps"))
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    }
    fn mutate(&self, seed: &[u8], all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let text = String::from_utf8_lossy(seed);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for _ in 0..1 + rng.below(4) {
            if lines.is_empty() {
                break;
            }
            let i = rng.below(lines.len());
            match rng.below(6) {
                0 => {
                    let l = lines[i].clone();
                    let most = if rng.chance(8) { 2000 } else { 4 };
                    for _ in 0..1 + rng.below(most) {
                        lines.insert(i, l.clone());
                    }
                }
                1 if lines.len() > 1 => {
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
                2 => {
                    let other = String::from_utf8_lossy(&all[rng.below(all.len())]).into_owned();
                    if let Some(l) = other.lines().nth(rng.below(other.lines().count().max(1))) {
                        lines.insert(i, l.to_string());
                    }
                }
                _ => {
                    if let Ok(mut v) = serde_json::from_str::<Value>(&lines[i]) {
                        poke(&mut v, rng, 0);
                        lines[i] = v.to_string();
                    }
                }
            }
        }
        let mut b = lines.join(if rng.chance(8) { "\r\n" } else { "\n" }).into_bytes();
        if rng.chance(2) {
            b.push(b'\n');
        }
        if rng.chance(4) {
            havoc(&mut b, rng);
        }
        b
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let n = self.n.get() + 1;
        self.n.set(n);
        std::fs::write(&self.work, case).map_err(|e| format!("write case: {e}"))?;
        let cfg = PumpConfig::default();
        let (r, peak) = measure(|| {
            let mut reader = FeedReader::new(DEFAULT_MAX_PROBLEMS);
            let mut lines = 0u64;
            let res = read_file_lines(&self.work, &cfg, 1 << 30, |m| {
                if let FeedMsg::Line { text, line_no } = m {
                    lines += 1;
                    let _ = reader.push_line(&text, line_no);
                }
                true
            });
            (res, lines, reader.into_report())
        });
        let (res, lines, report) = r;
        res?;
        let longest = case.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0) as u64;
        let cap = (64 << 10) + 16 * longest + (256 << 10);
        if peak > cap {
            return Err(format!("heap peak {peak} B > {cap} B (longest line {longest} B)"));
        }
        if report.problems.len() > DEFAULT_MAX_PROBLEMS {
            return Err(format!("{} problems kept", report.problems.len()));
        }
        if report.lines != lines {
            return Err(format!("{lines} lines delivered, {} counted", report.lines));
        }
        if self.replay_every > 0 && n.is_multiple_of(self.replay_every) {
            let one = self.replay(1)?;
            let two = self.replay(2)?;
            if one != two {
                return Err(format!("1 thread != 2 threads: {} vs {} records", one.len(), two.len()));
            }
        }
        Ok(())
    }
}

impl Feed {
    fn replay(&self, threads: usize) -> Result<Vec<String>, String> {
        let root = crate::corpus::workspace_root();
        let opts = Options { progress: false, stats: true, threads, feeds: vec![self.work.clone()], ..Options::default() };
        let mut out = Vec::new();
        if let Err(e) = replay(&[Input::File(root.join("pcaps/testbed-fallback.pcap"))], &opts, &mut out) {
            return Ok(vec![format!("error: {e:#}")]);
        }
        let text = std::str::from_utf8(&out).map_err(|e| format!("output not UTF-8: {e}"))?;
        let mut v = Vec::new();
        for line in text.lines() {
            let j: Value = serde_json::from_str(line)
                .map_err(|e| format!("invalid JSON line ({e}): {}", line.chars().take(200).collect::<String>()))?;
            if !j.is_object() {
                return Err("a line is not an object".into());
            }
            if j["event_type"] != "stats" {
                v.push(line.to_string());
            }
        }
        Ok(v)
    }
}
