//! `pinwatch report`: the visibility-gap report (docs/report.md).
//!
//! Reads EVE lines (files, rotated sets, gzip) with serde, counts sessions,
//! findings and paths ([`model`]), and writes into one directory:
//! `report.html` (self-contained, [`html`]), CSV and JSON tables, the learned
//! baselines for review ([`baseline`]) and the network team's lists
//! ([`actions`]). Nothing here reads packets; `pinwatch replay --report DIR`
//! hands its own EVE lines over.

pub mod actions;
pub mod baseline;
pub mod html;
pub mod model;
pub mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use self::baseline::Approvals;
use self::model::{Builder, Cover, Model, Row};

/// Options of a report run.
#[derive(Debug, Default, Clone)]
pub struct ReportOptions {
    /// The directory the report is written to (created if missing).
    pub out_dir: PathBuf,
    /// `--approved-baselines`: a reviewed `baselines.json` ([`baseline::Approvals`]).
    pub approved_baselines: Option<PathBuf>,
    /// MDM feed files: their `app_inventory` lines give each app's signing certificates.
    pub feeds: Vec<PathBuf>,
}

/// What a report run wrote.
#[derive(Debug)]
pub struct Written {
    /// The path of `report.html`.
    pub html: PathBuf,
    /// Sessions read (duplicates and those over the cap left out).
    pub sessions: usize,
    /// Findings (AN1725 alerts folded to their highest revision).
    pub findings: usize,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// Report from EVE files (a directory stands for its rotated set).
pub fn from_files(inputs: &[PathBuf], opts: &ReportOptions) -> anyhow::Result<Written> {
    let mut b = Builder::default();
    let mut rs = read::ReadStats::default();
    for p in read::expand(inputs) {
        read::read_file(&p, &mut rs, &mut |r| b.add(r));
    }
    if rs.files == 0 {
        anyhow::bail!("no EVE file could be read ({})", rs.errors.join("; "));
    }
    b.model.read = rs;
    finish(b, opts)
}

/// Report from EVE lines already in memory (`pinwatch replay --report`).
pub fn from_bytes(eve: &[u8], opts: &ReportOptions) -> anyhow::Result<Written> {
    let mut b = Builder::default();
    let mut rs = read::ReadStats::default();
    read::read_stream(Box::new(eve), &mut rs, &mut |r| b.add(r))?;
    rs.files = 1;
    b.model.read = rs;
    finish(b, opts)
}

fn finish(b: Builder, opts: &ReportOptions) -> anyhow::Result<Written> {
    let approvals = match &opts.approved_baselines {
        Some(p) => Approvals::load(p)?,
        None => Approvals::default(),
    };
    let certs = feed_certs(&opts.feeds);
    let m = b.finish(&approvals, certs);
    let proposals = actions::propose(&m, &approvals);
    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir.join("actions")).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut put = |name: &str, body: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        files.push(p);
        Ok(())
    };
    let page = html::page(&m, &proposals, !approvals.is_empty());
    put("report.html", page.as_bytes())?;
    put("apps.csv", &rows_csv(&m.apps, "app", true)?)?;
    put("destinations.csv", &rows_csv(&m.dests, "destination", false)?)?;
    put("devices.csv", &rows_csv(&m.devices, "device", false)?)?;
    put("findings.csv", &findings_csv(&m)?)?;
    put("coverage.csv", &coverage_csv(&m)?)?;
    put("actions.csv", &actions_csv(&proposals)?)?;
    put("baselines.json", &serde_json::to_vec_pretty(&baseline::export(&m, &approvals))?)?;
    put("report.json", &serde_json::to_vec_pretty(&summary_json(&m, &proposals))?)?;
    for (name, body) in actions::render(&proposals) {
        put(&format!("actions/{name}"), body.as_bytes())?;
    }
    Ok(Written { html: dir.join("report.html"), sessions: m.sessions.len(), findings: m.findings.len(), files })
}

/// package → signing certificate digests, from the feed's `app_inventory` lines
/// (bad lines skipped: the replay reports them).
fn feed_certs(feeds: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in feeds {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        let r = std::io::BufReader::new(std::io::Read::take(file, 1 << 30));
        for line in r.split(b'\n').map_while(Result::ok) {
            if line.len() > read::MAX_LINE {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let pkg = v.pointer("/app/package").and_then(|p| p.as_str());
            let certs = v.pointer("/app/signing_cert_sha256").and_then(|c| c.as_array());
            if let (Some(pkg), Some(certs)) = (pkg, certs) {
                out.entry(pkg.to_string()).or_default().extend(certs.iter().filter_map(|c| c.as_str()).map(|c| c.to_ascii_lowercase()));
            }
        }
    }
    out
}

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(i: I) -> String {
    i.into_iter().map(|s| s.as_ref().to_string()).collect::<Vec<_>>().join(" ")
}

fn rows_csv(map: &BTreeMap<String, Row>, key: &str, app: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec![
        key,
        "sessions",
        "class_a",
        "class_b",
        "class_c",
        "class_d",
        "class_e",
        "rejected",
        "fallbacks",
        "direct",
        "bypassed",
        "opaque",
        "unknown_path",
        "outside_baseline",
        "unattended",
        "state_known",
        "findings",
        "devices",
        "apps",
        "destinations",
    ];
    if app {
        head.push("signing_cert_sha256");
        head.push("unapproved_destinations");
    }
    w.write_record(&head)?;
    for (k, r) in map {
        let c = |x: &str| r.class.get(x).copied().unwrap_or(0).to_string();
        let mut rec = vec![
            k.clone(),
            r.sessions.to_string(),
            c("A"),
            c("B"),
            c("C"),
            c("D"),
            c("E"),
            r.rejected.to_string(),
            r.fallbacks.to_string(),
            r.direct.to_string(),
            r.bypassed.to_string(),
            r.opaque.to_string(),
            r.unknown_path.to_string(),
            r.outside_baseline.to_string(),
            r.unattended.to_string(),
            r.state_known.to_string(),
            r.findings.to_string(),
            join(&r.devices),
            join(&r.apps),
            join(&r.dests),
        ];
        if app {
            rec.push(join(&r.certs));
            rec.push(join(&r.unapproved_dests));
        }
        w.write_record(&rec)?;
    }
    Ok(w.into_inner()?)
}

fn findings_csv(m: &Model) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "signature_id",
        "signature",
        "severity",
        "confidence",
        "timestamp_ns",
        "flow_id",
        "flow_ids",
        "app",
        "device",
        "client",
        "destination",
        "alert_id",
        "revision",
        "reasons",
    ])?;
    for f in model::top_findings(m) {
        w.write_record([
            f.signature_id.to_string(),
            f.signature.clone(),
            f.severity.to_string(),
            f.confidence.clone(),
            f.ts_ns.to_string(),
            f.flow_id.to_string(),
            join(f.flow_ids.iter().map(u64::to_string)),
            f.app.clone().unwrap_or_default(),
            f.device.clone().unwrap_or_default(),
            f.client.clone(),
            f.dest.clone(),
            f.alert_id.clone().unwrap_or_default(),
            f.revision.to_string(),
            join(&f.reasons),
        ])?;
    }
    Ok(w.into_inner()?)
}

fn cover_name(c: Cover) -> String {
    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn coverage_csv(m: &Model) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["scope".to_string(), "key".to_string()];
    head.extend(Cover::ALL.iter().map(|c| cover_name(*c)));
    w.write_record(&head)?;
    let row = |scope: &str, key: String, counts: &BTreeMap<Cover, u64>| {
        let mut r = vec![scope.to_string(), key];
        r.extend(Cover::ALL.iter().map(|c| counts.get(c).copied().unwrap_or(0).to_string()));
        r
    };
    w.write_record(row("all", String::new(), &m.coverage.counts))?;
    for (net, c) in &m.coverage.per_network {
        w.write_record(row("network", net.clone(), c))?;
    }
    for (i, c) in m.coverage.per_bucket.iter().enumerate() {
        w.write_record(row("bucket_start_ns", (m.first_ns + m.bucket_ns * i as i64).to_string(), c))?;
    }
    Ok(w.into_inner()?)
}

fn actions_csv(p: &actions::Proposals) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "action",
        "entry",
        "registrable_domain",
        "hosts",
        "apps",
        "sessions",
        "rejected_under_inspection",
        "around_inspection",
        "why",
    ])?;
    for e in &p.entries {
        w.write_record([
            e.action.word().to_string(),
            e.entry.clone(),
            e.registrable_domain.clone(),
            join(&e.hosts),
            join(&e.apps),
            e.sessions.to_string(),
            e.rejected_under_inspection.to_string(),
            e.around_inspection.to_string(),
            e.why.clone(),
        ])?;
    }
    Ok(w.into_inner()?)
}

fn summary_json(m: &Model, p: &actions::Proposals) -> serde_json::Value {
    let c = &m.coverage;
    serde_json::json!({
        "format": "pinwatch-report/1",
        "input": {"files": m.read.files, "lines": m.read.lines, "malformed": m.read.malformed, "too_long": m.read.too_long,
                  "duplicate_sessions": m.duplicates, "sessions_dropped": m.sessions_dropped, "alerts_dropped": m.alerts_dropped, "errors": m.read.errors},
        "sessions": m.sessions.len(),
        "findings": m.findings.len(),
        "device_feed": m.have_feed,
        "coverage": {
            "population": c.population(), "known_path": c.known(), "escaped": c.escaped(), "seen_by_inspector": c.seen(),
            "refused_by_client": c.get(Cover::RefusedByClient), "unknown_path": c.get(Cover::Unknown), "excluded": c.get(Cover::Excluded),
            "escaped_share": if c.known() > 0 { serde_json::json!(c.escaped() as f64 / c.known() as f64) } else { serde_json::Value::Null },
            "by_path": c.counts.iter().map(|(k, v)| (cover_name(*k), *v)).collect::<BTreeMap<_, _>>(),
            "capture_gap_sessions": c.capture_gap_sessions,
            "stats_outcomes": c.stats_outcomes,
        },
        "apps": m.apps, "destinations": m.dests, "devices": m.devices,
        "findings_by_signature": m.findings.iter().fold(BTreeMap::<u64, u64>::new(), |mut a, f| { *a.entry(f.signature_id).or_default() += 1; a }),
        "actions": p,
    })
}

/// A writer that passes everything on and keeps a copy (up to a cap) for
/// `pinwatch replay --report`.
pub struct Tee<W: Write> {
    /// The writer everything is passed on to.
    pub inner: W,
    /// The copy kept, at most `cap` bytes.
    pub copy: Vec<u8>,
    /// Most bytes kept in `copy`.
    pub cap: usize,
    /// More than `cap` bytes came: `copy` is incomplete.
    pub overflow: bool,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.copy.len() + n <= self.cap {
            self.copy.extend_from_slice(&buf[..n]);
        } else {
            self.overflow = true;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The most EVE bytes `replay --report` keeps in memory (beyond it: write
/// `-o FILE` and run `pinwatch report FILE`).
pub const MAX_TEE: usize = 2 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_passes_everything_on_and_keeps_a_capped_copy() {
        let mut t = Tee { inner: Vec::new(), copy: Vec::new(), cap: 8, overflow: false };
        t.write_all(b"abcd").unwrap();
        t.write_all(b"efgh").unwrap();
        assert!(!t.overflow);
        t.write_all(b"i").unwrap();
        assert_eq!(t.inner, b"abcdefghi");
        assert_eq!(t.copy, b"abcdefgh");
        assert!(t.overflow);
    }
}
