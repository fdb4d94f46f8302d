//! Target `config`: [`Config::load`] on a TOML file (docs/config.md), and
//! for every fourth case that loads, a replay of
//! `pcaps/testbed-inspection.pcap` with it, with one thread and two.
//!
//! A case is the file's bytes, loaded from a directory that holds copies of
//! the `pcaps/*.pem` files (so relative `ca_certificates` paths resolve).
//! Mutations parse the TOML and replace one value — CIDRs and addresses
//! that are nearly right, ports and durations out of range, negative and
//! huge numbers, long strings, arrays where strings go, absolute paths of
//! special files that end (`/dev/null`, `/dev/zero`, a directory) — or drop
//! a key, add an unknown one, then maybe change bytes.
//!
//! Checks: no panic; an error message at most 4 KiB (a long line is not
//! copied whole into it); heap at most 64 times the file plus 3 MiB (a CA
//! file is read up to its 1 MiB cap); replay lines are JSON objects and
//! the records equal for 1 and 2 threads.

use std::path::PathBuf;

use pinwatch::config::Config;
use pinwatch::run::pipeline::{replay, Input, Options};
use toml::Value;

use super::alloc::measure;
use super::{havoc, Rng, Target};

#[derive(Debug)]
pub struct ConfigTarget {
    dir: PathBuf,
    pub replay_every: u64,
    n: std::cell::Cell<u64>,
}

impl Default for ConfigTarget {
    fn default() -> Self {
        let dir = super::temp_path("config");
        let _ = std::fs::create_dir_all(&dir);
        for p in super::files_in(&crate::corpus::workspace_root().join("pcaps")) {
            if p.extension().is_some_and(|x| x == "pem") {
                if let Some(name) = p.file_name() {
                    let _ = std::fs::copy(&p, dir.join(name));
                }
            }
        }
        ConfigTarget { dir, replay_every: 4, n: std::cell::Cell::new(0) }
    }
}

impl Drop for ConfigTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wild(rng: &mut Rng) -> Value {
    let s = |x: &str| Value::String(x.to_string());
    match rng.below(16) {
        0 => s([
            "10.0.0.0/33",
            "0.0.0.0/0",
            "::/0",
            "10.1.2.3",
            "300.1.1.1/8",
            "fe80::1%eth0/64",
            "10.0.0.0/8 ",
            "",
            "10.0.0.1:99999",
            "[::1]:3128",
            "10.9.9.9:3128",
        ][rng.below(11)]),
        1 => Value::Integer(i64::MAX),
        2 => Value::Integer(i64::MIN),
        3 => Value::Integer(-1),
        4 => Value::Integer(0),
        5 => Value::Integer(65536),
        6 => Value::Float(f64::NAN),
        7 => Value::Float(1e300),
        8 => s(&"a".repeat(1 + rng.below(100_000))),
        9 => s(["/dev/null", "/dev/zero", "/", ".", "missing.pem", "testbed-inspection-ca.pem", "../../../../etc/hostname"][rng.below(7)]),
        10 => Value::Array(vec![s("*.example.com"), s("*"), s(""), s("..")]),
        11 => Value::Boolean(rng.chance(2)),
        12 => s(["inline", "span", "tap", "explicit_proxy", "INLINE", "\u{0}"][rng.below(6)]),
        13 => Value::Table(toml::map::Map::new()),
        14 => Value::Array(Vec::new()),
        _ => Value::Integer(rng.next() as i64),
    }
}

fn poke(v: &mut Value, rng: &mut Rng, depth: usize) {
    let descend = depth < 5 && !rng.chance(4);
    match v {
        Value::Table(m) if !m.is_empty() && descend => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = keys[rng.below(keys.len())].clone();
            match rng.below(10) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(format!("{k}_unknown"), wild(rng));
                }
                _ => {
                    if let Some(c) = m.get_mut(&k) {
                        poke(c, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && descend => {
            let i = rng.below(a.len());
            if rng.chance(4) {
                let c = a[i].clone();
                let most = if rng.chance(8) { 5000 } else { 3 };
                for _ in 0..1 + rng.below(most) {
                    a.push(c.clone());
                }
            } else {
                poke(&mut a[i], rng, depth + 1);
            }
        }
        _ => *v = wild(rng),
    }
}

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }
    fn ext(&self) -> &'static str {
        "toml"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let root = crate::corpus::workspace_root();
        let mut v: Vec<PathBuf> =
            super::files_in(&root.join("pcaps")).into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        v.push(root.join("pinwatch.example.toml"));
        v.push(root.join("dist/pinwatch-live.example.toml"));
        v.into_iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }
    fn mutate(&self, seed: &[u8], _all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let text = String::from_utf8_lossy(seed);
        let mut out = match toml::from_str::<Value>(&text) {
            Ok(mut v) => {
                for _ in 0..1 + rng.below(3) {
                    poke(&mut v, rng, 0);
                }
                toml::to_string(&v).unwrap_or_else(|_| text.into_owned()).into_bytes()
            }
            Err(_) => seed.to_vec(),
        };
        if rng.chance(4) {
            havoc(&mut out, rng);
        }
        out
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let path = self.dir.join("case.toml");
        std::fs::write(&path, case).map_err(|e| format!("write case: {e}"))?;
        let (r, peak) = measure(|| Config::load(&path));
        let cap = 64 * case.len() as u64 + (3 << 20);
        if peak > cap {
            return Err(format!("heap peak {peak} B > {cap} B for a {} B file", case.len()));
        }
        let cfg = match r {
            Err(e) => {
                let msg = format!("{e:#}");
                if msg.len() > 4096 {
                    return Err(format!("error message of {} bytes: {:.200}", msg.len(), msg));
                }
                return Ok(());
            }
            Ok(c) => c,
        };
        let n = self.n.get() + 1;
        self.n.set(n);
        if self.replay_every > 0 && n.is_multiple_of(self.replay_every) {
            let one = self.replay(&cfg, 1)?;
            let two = self.replay(&cfg, 2)?;
            if one != two {
                return Err(format!("1 thread != 2 threads: {} vs {} records", one.len(), two.len()));
            }
        }
        Ok(())
    }
}

impl ConfigTarget {
    fn replay(&self, cfg: &Config, threads: usize) -> Result<Vec<String>, String> {
        let root = crate::corpus::workspace_root();
        let opts = Options { progress: false, stats: true, threads, config: cfg.clone(), ..Options::default() };
        let mut out = Vec::new();
        if let Err(e) = replay(&[Input::File(root.join("pcaps/testbed-inspection.pcap"))], &opts, &mut out) {
            return Ok(vec![format!("error: {e:#}")]);
        }
        let text = std::str::from_utf8(&out).map_err(|e| format!("output not UTF-8: {e}"))?;
        let mut v = Vec::new();
        for line in text.lines() {
            let j: serde_json::Value = serde_json::from_str(line)
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
