//! Reading EVE lines for the report: plain or gzip'd files (by content, not
//! name), rotated sets (a directory reads every `*.json*` file in it, in name
//! order), each line parsed with serde into the few fields the report uses.
//! Bad lines are counted, never fatal; every read is capped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Longest line read (a record with a 10-certificate chain is some 30 KB).
pub const MAX_LINE: usize = 16 << 20;
/// Most bytes read from one file (decompressed).
pub const MAX_FILE: u64 = 64 << 30;

/// One EVE record, only the fields the report reads. Every field is
/// optional so that records of other sensors (or later versions) parse.
#[derive(Debug, Default, Deserialize)]
pub struct Rec {
    /// `event_type`; empty when absent.
    #[serde(default)]
    pub event_type: String,
    /// `timestamp`; empty when absent.
    #[serde(default)]
    pub timestamp: String,
    /// `flow_id`; `None` when absent.
    pub flow_id: Option<u64>,
    /// `src_ip`; `None` when absent.
    pub src_ip: Option<String>,
    /// `dest_ip`; `None` when absent.
    pub dest_ip: Option<String>,
    /// `dest_port`; `None` when absent.
    pub dest_port: Option<u16>,
    /// `tls`; `None` when absent.
    pub tls: Option<Hello>,
    /// `quic`; `None` when absent.
    pub quic: Option<Hello>,
    /// `tls_failure`; `None` when absent.
    pub tls_failure: Option<Failure>,
    /// `path`; `None` when absent.
    pub path: Option<PathRec>,
    /// `mobile`; `None` when absent.
    pub mobile: Option<Mobile>,
    /// `alert`; `None` when absent.
    pub alert: Option<AlertRec>,
    /// `evidence`; `None` when absent.
    pub evidence: Option<Evidence>,
    /// `an1725`; `None` when absent.
    pub an1725: Option<An1725>,
    /// `stats`; `None` when absent.
    pub stats: Option<StatsRec>,
}

/// The `tls` or `quic` object: its server name.
#[derive(Debug, Default, Deserialize)]
pub struct Hello {
    /// `tls.sni` / `quic.sni`; `None` when absent.
    pub sni: Option<String>,
}

/// The `tls_failure` object, the fields the report reads.
#[derive(Debug, Default, Deserialize)]
pub struct Failure {
    /// `tls_failure.outcome`; `None` when absent.
    pub outcome: Option<String>,
    /// `tls_failure.kind`; `None` when absent.
    pub kind: Option<String>,
    /// `tls_failure.class`; `None` when absent.
    pub class: Option<String>,
    /// `tls_failure.confidence`; `None` when absent.
    pub confidence: Option<String>,
}

/// The `path` object, the fields the report reads.
#[derive(Debug, Default, Deserialize)]
pub struct PathRec {
    /// `path.kind`; `None` when absent.
    pub kind: Option<String>,
    /// `path.confidence`; `None` when absent.
    pub confidence: Option<String>,
    /// `path.policy`; `None` when absent.
    pub policy: Option<String>,
    /// `path.intercepted`; `None` when absent.
    pub intercepted: Option<bool>,
    /// `path.evidence`; empty when absent.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// `path.bypass_rule`; `None` when absent.
    pub bypass_rule: Option<String>,
}

/// The `mobile` object, the fields the report reads.
#[derive(Debug, Default, Deserialize)]
pub struct Mobile {
    /// `mobile.device_id`; `None` when absent.
    pub device_id: Option<String>,
    /// `mobile.binding`; `None` when absent.
    pub binding: Option<Binding>,
    /// `mobile.app`; `None` when absent.
    pub app: Option<App>,
    /// `mobile.app_state`; `None` when absent.
    pub app_state: Option<String>,
    /// `mobile.device_locked`; `None` when absent.
    pub device_locked: Option<bool>,
    /// `mobile.screen_interactive`; `None` when absent.
    pub screen_interactive: Option<bool>,
    /// `mobile.secs_since_user_interaction`; `None` when absent.
    pub secs_since_user_interaction: Option<f64>,
    /// `mobile.baseline`; `None` when absent.
    pub baseline: Option<Baseline>,
}

/// `mobile.binding`: the network context.
#[derive(Debug, Default, Deserialize)]
pub struct Binding {
    /// `mobile.binding.context`; `None` when absent.
    pub context: Option<String>,
}

/// `mobile.app`: the package and its trust profile.
#[derive(Debug, Default, Deserialize)]
pub struct App {
    /// `mobile.app.package`; `None` when absent.
    pub package: Option<String>,
    /// `mobile.app.trust_profile`; `None` when absent.
    pub trust_profile: Option<serde_json::Value>,
}

/// `mobile.baseline`.
#[derive(Debug, Default, Deserialize)]
pub struct Baseline {
    /// `mobile.baseline.approved`; `None` when absent.
    pub approved: Option<bool>,
    /// `mobile.baseline.sources`; empty when absent.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// The `alert` object, the fields the report reads.
#[derive(Debug, Default, Deserialize)]
pub struct AlertRec {
    /// `alert.signature_id`; `None` when absent.
    pub signature_id: Option<u64>,
    /// `alert.signature`; `None` when absent.
    pub signature: Option<String>,
    /// `alert.severity`; `None` when absent.
    pub severity: Option<u8>,
    /// `alert.metadata`; `None` when absent.
    pub metadata: Option<AlertMeta>,
}

/// `alert.metadata`: the confidence.
#[derive(Debug, Default, Deserialize)]
pub struct AlertMeta {
    /// `alert.metadata.confidence`; empty when absent.
    #[serde(default)]
    pub confidence: Vec<String>,
}

/// The `evidence` object of an alert.
#[derive(Debug, Default, Deserialize)]
pub struct Evidence {
    /// `evidence.reasons`; empty when absent.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// `evidence.flow_ids`; empty when absent.
    #[serde(default)]
    pub flow_ids: Vec<u64>,
}

/// The `an1725` object of an AN1725 alert (1725005).
#[derive(Debug, Default, Deserialize)]
pub struct An1725 {
    /// `an1725.alert_id`; `None` when absent.
    pub alert_id: Option<String>,
    /// `an1725.revision`; `None` when absent.
    pub revision: Option<u64>,
    /// `an1725.count`; `None` when absent.
    pub count: Option<u64>,
    /// `an1725.confidence`; `None` when absent.
    pub confidence: Option<String>,
    /// `an1725.reasons`; empty when absent.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// The `stats` object: the session outcomes.
#[derive(Debug, Default, Deserialize)]
pub struct StatsRec {
    /// `stats.outcomes`; `None` when absent.
    pub outcomes: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// What reading found besides records.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReadStats {
    /// Files read (an input that could not be opened is not counted).
    pub files: u64,
    /// Lines read (too long ones not included).
    pub lines: u64,
    /// Lines that are not a JSON record.
    pub malformed: u64,
    /// Lines over [`MAX_LINE`], skipped.
    pub too_long: u64,
    /// Files that could not be opened or read, with why.
    pub errors: Vec<String>,
}

/// Expand the inputs: a directory stands for its `*.json*` / `*.log*` files,
/// in name order (a rotated set: `eve.json`, `eve.json.1`, `eve.json.2.gz`).
pub fn expand(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    let n = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    f.is_file() && (n.contains(".json") || n.contains(".log"))
                })
                .collect();
            names.sort();
            out.extend(names);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Read one source (a file path, or bytes already in memory) line by line,
/// handing each parsed record to `each`.
pub fn read_file(path: &Path, stats: &mut ReadStats, each: &mut dyn FnMut(Rec)) {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            stats.errors.push(format!("{}: {e}", path.display()));
            return;
        }
    };
    read_stream(Box::new(f), stats, each).unwrap_or_else(|e| stats.errors.push(format!("{}: {e}", path.display())));
    stats.files += 1;
}

/// Read EVE lines from any reader; gzip is recognised by its magic bytes.
pub fn read_stream(r: Box<dyn Read + '_>, stats: &mut ReadStats, each: &mut dyn FnMut(Rec)) -> std::io::Result<()> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let gz = br.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read> = if gz { Box::new(flate2::bufread::MultiGzDecoder::new(br)) } else { Box::new(br) };
    let mut lines = BufReader::with_capacity(1 << 20, inner.take(MAX_FILE));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read at most MAX_LINE + 1 bytes of a line; a longer line is skipped to its end.
        let n = (&mut lines).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            stats.too_long += 1;
            // Skip the rest of the line.
            loop {
                buf.clear();
                let m = (&mut lines).take(1 << 20).read_until(b'\n', &mut buf)?;
                if m == 0 || buf.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let line = trim(&buf);
        if line.is_empty() {
            continue;
        }
        stats.lines += 1;
        match serde_json::from_slice::<Rec>(line) {
            Ok(rec) => each(rec),
            Err(_) => stats.malformed += 1,
        }
    }
    Ok(())
}

fn trim(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

/// EVE timestamp (`2026-08-21T09:14:03.512311+0000`, also `Z` and `+00:00`)
/// to Unix nanoseconds; `None` when it does not parse.
pub fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    let t = time::Time::from_hms(u8::try_from(h).ok()?, u8::try_from(mi).ok()?, u8::try_from(se).ok()?).ok()?;
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000i64;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac_ns += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset_s = match b.get(i) {
        None | Some(b'Z') | Some(b'z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest: String = s[i + 1..].chars().filter(|c| *c != ':').collect();
            if rest.len() != 4 || !rest.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let hh: i64 = rest[0..2].parse().ok()?;
            let mm: i64 = rest[2..4].parse().ok()?;
            let o = hh * 3600 + mm * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp() - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_eve_forms() {
        assert_eq!(parse_ts("1970-01-01T00:00:01.5+0000"), Some(1_500_000_000));
        assert_eq!(parse_ts("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ts("1970-01-01T00:00:00-00:30"), Some(1_800_000_000_000));
        assert_eq!(parse_ts("garbage"), None);
        assert_eq!(parse_ts("1970-13-01T00:00:00Z"), None);
    }

    #[test]
    fn bad_lines_are_counted_and_gzip_is_read() {
        let text = b"{\"event_type\":\"tls\",\"flow_id\":1}\nnot json\n\n{\"event_type\":\"alert\",\"flow_id\":\"x\"}\n";
        let mut st = ReadStats::default();
        let mut n = 0;
        read_stream(Box::new(&text[..]), &mut st, &mut |_| n += 1).unwrap();
        assert_eq!((n, st.lines, st.malformed), (1, 3, 2));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text).unwrap();
        let z = gz.finish().unwrap();
        let mut st2 = ReadStats::default();
        let mut m = 0;
        read_stream(Box::new(&z[..]), &mut st2, &mut |_| m += 1).unwrap();
        assert_eq!((m, st2.malformed), (1, 2));
    }
}
