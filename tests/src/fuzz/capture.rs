//! Target `capture`: the capture reader (classic pcap, pcapng, either one
//! gzip-compressed), and every fourth case the whole replay pipeline with
//! one thread and with two.
//!
//! A case is the capture file's bytes. Mutations know the framing: they
//! set a pcap record header field, a pcapng block's type or length (one or
//! both copies), a pcapng option (`if_tsresol`, `if_tsoffset`) or a
//! timestamp to a value that breaks arithmetic; splice records of two
//! seeds; then maybe compress the result with gzip (one member or several,
//! maybe cut short).
//!
//! Checks: the reader yields at most one error and then ends, never more
//! items than the file could hold records, no packet larger than
//! `MAX_CAPLEN`; heap while opening at most twice the decompressed size
//! plus the input plus 1 MiB (the buffer doubles up to its cap; the gzip
//! decoder's window), heap while iterating at most 64 KiB plus the
//! decompressed size (pcapng interface tables); replay lines are JSON
//! objects, and the records (all but `stats`) are the same with 1 and 2
//! threads.

use std::io::Write;
use std::path::PathBuf;

use pinwatch::capture::{CaptureFile, MAX_CAPLEN};
use pinwatch::run::pipeline::{replay, Input, Options};

use super::alloc::measure;
use super::{havoc, Rng, Target};

#[derive(Debug)]
pub struct Capture {
    /// Where the replay step writes its case (one file per process).
    work: PathBuf,
    /// Replay every n-th case (0: never).
    pub replay_every: u64,
    n: std::cell::Cell<u64>,
}

impl Default for Capture {
    fn default() -> Self {
        let work = super::temp_path("capture.pcap");
        Capture { work, replay_every: 4, n: std::cell::Cell::new(0) }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.work);
    }
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Record / block start offsets of a plain capture (and whether pcapng, and its byte order).
fn boundaries(b: &[u8]) -> (bool, bool, Vec<usize>) {
    let mut v = Vec::new();
    let rd = |o: usize, be: bool| {
        b.get(o..o + 4)
            .map(|x| if be { u32::from_be_bytes([x[0], x[1], x[2], x[3]]) } else { u32::from_le_bytes([x[0], x[1], x[2], x[3]]) })
    };
    if b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let be = b.get(8..12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d]);
        let mut pos = 0;
        while let Some(len) = rd(pos + 4, be) {
            v.push(pos);
            if len < 12 || v.len() > 100_000 {
                break;
            }
            pos += len as usize;
        }
        return (true, be, v);
    }
    let be = matches!(b.get(..4), Some([0xa1, 0xb2, ..]));
    let mut pos = 24;
    while let Some(caplen) = rd(pos + 8, be) {
        v.push(pos);
        if v.len() > 100_000 {
            break;
        }
        pos += 16 + caplen as usize;
    }
    (false, be, v)
}

fn put32(b: &mut [u8], at: usize, v: u32, be: bool) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }
}

fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(b).take(8 << 20), &mut v);
    v
}

use std::io::Read as _;

impl Target for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }
    fn ext(&self) -> &'static str {
        "cap"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let m = super::seeds::material();
        let mut v: Vec<Vec<u8>> = m.files.iter().filter(|(_, b)| b.len() <= 512 << 10).map(|(_, b)| b.clone()).collect();
        // Shorter seeds fuzz faster: the first records of the bigger ones.
        for (_, b) in m.files.iter().filter(|(_, b)| b.len() > 512 << 10 && !is_gzip(b)) {
            let (_, _, bounds) = boundaries(b);
            if let Some(&end) = bounds.get(200) {
                v.push(b[..end].to_vec());
            }
        }
        v
    }
    fn mutate(&self, seed: &[u8], all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let mut b = if is_gzip(seed) { gunzip(seed) } else { seed.to_vec() };
        for _ in 0..1 + rng.below(3) {
            let (ng, be, bounds) = boundaries(&b);
            let at = if bounds.is_empty() { 0 } else { bounds[rng.below(bounds.len())] };
            match rng.below(9) {
                // A record/block header field.
                0 | 1 => {
                    let field = if ng { [0, 4, 8, 12, 16, 20, 24][rng.below(7)] } else { [0, 4, 8, 12][rng.below(4)] };
                    let v = rng.interesting_u64() as u32;
                    put32(&mut b, at + field, v, be);
                }
                // A pcapng block type.
                2 if ng => {
                    let t = [1u32, 2, 3, 5, 6, 0x0a0d0d0a, 0x80000001, 0xdeadbeef][rng.below(8)];
                    put32(&mut b, at, t, be);
                }
                // An interface description with hostile options (pcapng).
                3 if ng => {
                    let mut idb = Vec::new();
                    let mut opts = Vec::new();
                    let resol = [0u8, 3, 6, 9, 19, 20, 0x80, 0x8a, 0xbf, 0xff][rng.below(10)];
                    opts.extend(if be { 9u16.to_be_bytes() } else { 9u16.to_le_bytes() });
                    opts.extend(if be { 1u16.to_be_bytes() } else { 1u16.to_le_bytes() });
                    opts.extend([resol, 0, 0, 0]);
                    let off = [i64::MAX, i64::MIN, -1, 1 << 40, 0][rng.below(5)];
                    opts.extend(if be { 14u16.to_be_bytes() } else { 14u16.to_le_bytes() });
                    opts.extend(if be { 8u16.to_be_bytes() } else { 8u16.to_le_bytes() });
                    opts.extend(if be { off.to_be_bytes() } else { off.to_le_bytes() });
                    opts.extend([0, 0, 0, 0]);
                    let total = 20 + opts.len() as u32;
                    idb.extend(if be { 1u32.to_be_bytes() } else { 1u32.to_le_bytes() });
                    idb.extend(if be { total.to_be_bytes() } else { total.to_le_bytes() });
                    let lt = [1u16, 0, 101, 113, 276, 228, 229, 12345][rng.below(8)];
                    idb.extend(if be { lt.to_be_bytes() } else { lt.to_le_bytes() });
                    idb.extend([0, 0]);
                    idb.extend(if be { 0u32.to_be_bytes() } else { 0u32.to_le_bytes() });
                    idb.extend(opts);
                    idb.extend(if be { total.to_be_bytes() } else { total.to_le_bytes() });
                    let at = bounds.get(1).copied().unwrap_or(b.len()).min(b.len());
                    b.splice(at..at, idb);
                }
                // A timestamp to the ends of time or back in time.
                4 => {
                    let field = if ng { 12 + 4 * rng.below(2) } else { 0 };
                    let v = [0u32, u32::MAX, 0x8000_0000, 1][rng.below(4)];
                    put32(&mut b, at + field, v, be);
                }
                // Splice: the records of another seed after this one's.
                5 => {
                    let other = &all[rng.below(all.len())];
                    let other = if is_gzip(other) { gunzip(other) } else { other.clone() };
                    let (ong, _, ob) = boundaries(&other);
                    if let (Some(&from), true) = (ob.get(rng.below(ob.len().max(1))), ong == ng) {
                        let to = ob.get(rng.below(ob.len()) + 1).copied().unwrap_or(other.len()).max(from).min(other.len());
                        let cut = bounds.get(rng.below(bounds.len().max(1))).copied().unwrap_or(b.len()).min(b.len());
                        b.splice(cut..cut, other[from..to].iter().copied());
                    }
                }
                // Drop or duplicate a record.
                6 if bounds.len() > 2 => {
                    let i = 1 + rng.below(bounds.len() - 1);
                    let (s, e) = (bounds[i].min(b.len()), bounds.get(i + 1).copied().unwrap_or(b.len()).min(b.len()));
                    if s < e {
                        if rng.chance(2) {
                            b.drain(s..e);
                        } else {
                            let r = b[s..e].to_vec();
                            b.splice(e..e, r);
                        }
                    }
                }
                _ => havoc(&mut b, rng),
            }
        }
        match rng.below(6) {
            0 => gzip(&b, 1 + rng.below(9) as u32),
            1 => {
                // Several members, maybe the last one cut short.
                let mid = rng.below(b.len() + 1);
                let mut g = gzip(&b[..mid], 1);
                let mut h = gzip(&b[mid..], 6);
                if rng.chance(2) {
                    h.truncate(rng.below(h.len() + 1));
                }
                g.append(&mut h);
                g
            }
            _ => b,
        }
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let n = self.n.get() + 1;
        self.n.set(n);
        let input_len = case.len() as u64;
        let (opened, open_peak) = measure(|| CaptureFile::from_bytes("case".into(), case.to_vec()));
        let Ok(f) = opened else { return Ok(()) };
        let plain = f.len();
        // The input copy (`to_vec`) is counted as well: input_len of it.
        let open_cap = 2 * input_len + 2 * plain + (1 << 20);
        if open_peak > open_cap {
            return Err(format!("open: heap peak {open_peak} B > {open_cap} B ({input_len} B in, {plain} B of capture)"));
        }
        let (r, iter_peak) = measure(|| {
            let (mut items, mut errors, mut after_error) = (0u64, 0u64, 0u64);
            for p in f.packets() {
                items += 1;
                match p {
                    Ok(p) => {
                        if errors > 0 {
                            after_error += 1;
                        }
                        if p.data.len() > MAX_CAPLEN as usize {
                            return Err(format!("packet of {} bytes > MAX_CAPLEN", p.data.len()));
                        }
                    }
                    Err(_) => errors += 1,
                }
                if items > plain / 12 + 2 {
                    return Err(format!("{items} items from {plain} bytes"));
                }
            }
            if errors > 1 || after_error > 0 {
                return Err(format!("{errors} errors, {after_error} packets after an error"));
            }
            Ok(())
        });
        r?;
        let iter_cap = (64 << 10) + plain;
        if iter_peak > iter_cap {
            return Err(format!("iterate: heap peak {iter_peak} B > {iter_cap} B"));
        }
        if self.replay_every > 0 && n.is_multiple_of(self.replay_every) && plain <= 1 << 20 {
            std::fs::write(&self.work, case).map_err(|e| format!("write case: {e}"))?;
            let one = replay_records(&self.work, 1)?;
            let two = replay_records(&self.work, 2)?;
            if one != two {
                let i = one.iter().zip(&two).position(|(a, b)| a != b).unwrap_or(one.len().min(two.len()));
                return Err(format!("1 thread != 2 threads: {} vs {} records, first difference at {i}", one.len(), two.len()));
            }
        }
        Ok(())
    }
}

/// Replay `path`; the records other than `stats`, each checked to be a JSON object.
pub fn replay_records(path: &std::path::Path, threads: usize) -> Result<Vec<String>, String> {
    let opts = Options { progress: false, stats: true, threads, ..Options::default() };
    let mut out = Vec::new();
    if let Err(e) = replay(&[Input::File(path.to_path_buf())], &opts, &mut out) {
        return Ok(vec![format!("error: {e:#}")]);
    }
    let text = std::str::from_utf8(&out).map_err(|e| format!("output not UTF-8: {e}"))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let j: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON line ({e}): {}", line.chars().take(200).collect::<String>()))?;
        if !j.is_object() || !j["event_type"].is_string() {
            return Err(format!("not an EVE record: {}", line.chars().take(200).collect::<String>()));
        }
        if j["event_type"] != "stats" {
            v.push(line.to_string());
        }
    }
    Ok(v)
}
