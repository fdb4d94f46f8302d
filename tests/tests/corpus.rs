//! The shared corpus (`../shared/corpus`, or `PINWATCH_CORPUS`) against its
//! independent oracles (tshark 4.0.17, FoxIO rust ja4, python
//! `cryptography`). `scripts/conformance.sh` runs this with `--nocapture` and
//! prints the per-field table; the full lists go to `target/conformance/`:
//!
//! - `summary.txt`: the per-field table and the largest disagreement groups;
//! - `disagreements.tsv`: every disagreement (capture, frame, stream, field,
//!   oracle value, ours, known reason, context);
//! - `per_capture.tsv`: one line per capture;
//! - `all_files.tsv`: the no-panic run over every capture file.
//!
//! `corpus_no_panic_all_files` also validates every record of every capture
//! against `docs/eve-schema.json` and, for the keys shared with Suricata,
//! Suricata's schema (`tests/schema_check`).
//!
//! When the corpus is not there both tests print `SKIPPED: corpus not found
//! at ...` and pass.

mod schema_check;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pinwatch_tests::compare::{compare_capture, render_disagreements, render_table, totals, CaptureReport, Oracle, FIELDS};
use pinwatch_tests::corpus::{all_capture_files, captures_with_tshark_oracle, rel_path, root, Capture};
use pinwatch_tests::eve::parse_all;
use pinwatch_tests::known::capture_error_expected;
use pinwatch_tests::oracle::{parse_certs_tsv, parse_ja4rs, parse_tshark_tsv};
use pinwatch_tests::run::{default_threads, par_map, report_dir, run_capture, RunResult};

/// Minimum agreement per field, in percent of the comparisons that are not
/// known differences. Each is a little under what the sensor reached when it
/// was set (measured value in the comment), so a regression fails the test;
/// raise them as bugs get fixed.
const THRESHOLDS: &[(&str, f64)] = &[
    ("session", 99.8),            // 99.89: CAPWAP (802.11 in UDP 5247) left
    ("our_session", 99.3),        // 99.56: late retransmissions after close become separate records
    ("direction", 99.9),          // 100
    ("client_hello_count", 99.9), // 100
    ("sni", 99.9),                // 100
    ("ja3", 99.9),                // 100
    ("client_alpn", 99.9),        // 100
    ("ja4", 99.7),                // 99.89: CAPWAP (802.11 in UDP 5247) not decoded
    ("version", 99.9),            // 100: tshark's misreading of a draft-14 ServerHello known
    ("ja3s", 99.9),               // 100: same
    ("cipher", 99.9),             // 100: same
    ("server_alpn", 99.9),        // 100
    ("alert", 99.9),              // 100
    ("chain_len", 99.3),          // 99.60: a certificate x509-parser rejects is left out of the chain
    ("cert_sha256", 99.5),        // 99.79: same
    ("cert_serial", 99.9),        // 100
    ("cert_subject", 99.9),       // 100
    ("cert_issuer", 99.9),        // 100
    ("cert_validity", 99.9),      // 100
    ("cert_san", 99.9),           // 100
    ("client_cert_count", 98.0),  // 100 (71 compared: one miss is 1.4 points)
    // QUIC (275 streams; one miss is 0.36 points, on quic_server_hello 2):
    ("quic_session", 99.9),            // 100: Google QUIC T050/T051 known
    ("quic_our_session", 99.9),        // 100
    ("quic_client_hello_count", 99.9), // 100: ClientHello after a HelloRetryRequest known (deduplicated)
    ("quic_sni", 99.9),                // 100
    ("quic_ja3", 99.9),                // 100
    ("quic_alpn", 99.9),               // 100
    ("quic_version", 99.9),            // 100: first Initial before Version Negotiation known
    ("quic_ja4", 99.9),                // 100 (183 of 275 with rust ja4's `t` letter taken as `q`)
    ("quic_server_hello", 99.9),       // 100 (51 compared)
];

/// High-water mark of per-flow buffers allowed on any corpus capture.
const FLOW_BUFFERS_MAX: u64 = 4 << 20;

/// One capture can take this long before the run is called a hang.
const PER_CAPTURE: Duration = Duration::from_secs(300);

/// The corpus, or `None` after a SKIPPED line (a failure under
/// `PINWATCH_CORPUS_REQUIRED=1`).
fn corpus_or_skip(test: &str) -> Option<PathBuf> {
    println!("{test}: needs the shared corpus");
    root()
}

fn write_report(name: &str, text: &str) -> PathBuf {
    let dir = report_dir();
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, text) {
        eprintln!("could not write {}: {e}", p.display());
    }
    p
}

fn load_oracle(corpus: &Path, c: &Capture) -> Result<Oracle, String> {
    let read = |kind: &str| -> Result<Option<String>, String> {
        match c.oracle_file(corpus, kind) {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(&p).map(Some).map_err(|e| format!("{}: {e}", p.display())),
        }
    };
    let rows = parse_tshark_tsv(&read("tshark.tsv")?.ok_or("no tshark.tsv")?)?;
    let ja4rs = match read("ja4rs.json")? {
        Some(t) => parse_ja4rs(&t)?,
        None => Vec::new(),
    };
    let certs = match read("certs.tsv")? {
        Some(t) => parse_certs_tsv(&t)?,
        None => Vec::new(),
    };
    Ok(Oracle { rows, ja4rs, certs })
}

struct Done {
    capture: Capture,
    run: RunResult,
    report: Option<CaptureReport>,
    problem: Option<String>,
}

#[test]
fn corpus_conformance() {
    let Some(corpus) = corpus_or_skip("corpus_conformance") else { return };
    let captures = captures_with_tshark_oracle(&corpus);
    assert!(!captures.is_empty(), "no capture with a tshark oracle under {}", corpus.display());
    let threads = default_threads();
    println!("corpus: {} — {} captures with a tshark oracle, {threads} threads", corpus.display(), captures.len());

    let c2 = corpus.clone();
    let done = par_map(captures.clone(), threads, PER_CAPTURE, move |c: &Capture| {
        let run = run_capture(&c.path);
        let (report, problem) = match (&run, load_oracle(&c2, c)) {
            (_, Err(e)) => (None, Some(format!("oracle: {e}"))),
            (RunResult::Ok(out), Ok(oracle)) => match parse_all(&out.eve) {
                Ok(o) => (Some(compare_capture(&c.oracle, &c.rel, &oracle, &o.tls, &o.quic)), None),
                Err(e) => (None, Some(format!("output: {e}"))),
            },
            _ => (None, None),
        };
        Done { capture: c.clone(), run, report, problem }
    });
    let done = match done {
        Ok(d) => d,
        Err(stuck) => panic!("pinwatch did not finish within {PER_CAPTURE:?} on: {:?}", stuck.iter().map(|c| &c.rel).collect::<Vec<_>>()),
    };

    let mut panicked = Vec::new();
    let mut errors = Vec::new();
    let mut unexpected_read_errors = Vec::new();
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    let mut per_capture = String::from(
        "capture\tpath\tpackets\tour_sessions\toracle_tcp_streams\tour_quic_sessions\toracle_quic_streams\tquic_rows\tgquic_rows_out_of_scope\tudp_rows_out_of_scope\ttunnel_rows\tours_data_only\tcompared\tagreed\tknown\tdiffer\tfirst_error\tms\n",
    );
    for (i, d) in done.into_iter().enumerate() {
        let Some(d) = d else {
            problems.push(format!("{}: worker died", captures[i].rel));
            continue;
        };
        let (packets, first_error, ms) = match &d.run {
            RunResult::Ok(o) => (o.packets, o.first_error.clone(), o.elapsed.as_millis()),
            RunResult::Err(e) => {
                errors.push(format!("{}: {e}", d.capture.rel));
                (0, None, 0)
            }
            RunResult::Panicked(m) => {
                panicked.push(format!("{}: {m}", d.capture.rel));
                (0, None, 0)
            }
        };
        if let Some(e) = &first_error {
            if capture_error_expected(&d.capture.rel).is_none() {
                unexpected_read_errors.push(format!("{}: {e}", d.capture.rel));
            }
        }
        if let Some(p) = d.problem {
            problems.push(format!("{}: {p}", d.capture.rel));
        }
        if let Some(r) = d.report {
            per_capture_row(&mut per_capture, &r, packets, first_error, ms);
            reports.push(r);
        }
    }

    let tot = totals(&reports);
    let mut summary = String::new();
    let _ = writeln!(summary, "pinwatch vs corpus oracles: {} captures ({} compared)\n", captures.len(), reports.len());
    summary.push_str(&render_table(&tot));
    scope_notes(&mut summary, &reports);

    disagreement_groups(&mut summary, &reports);
    for (what, list) in [
        ("panicked", &panicked),
        ("replay errors", &errors),
        ("unexpected capture read errors", &unexpected_read_errors),
        ("problems", &problems),
    ] {
        let _ = writeln!(summary, "{what}: {}", list.len());
        for x in list.iter() {
            let _ = writeln!(summary, "  {x}");
        }
    }
    let dis = write_report("disagreements.tsv", &render_disagreements(&reports));
    let pc = write_report("per_capture.tsv", &per_capture);
    let sp = write_report("summary.txt", &summary);
    println!("{summary}");
    println!("reports: {}\n         {}\n         {}", sp.display(), dis.display(), pc.display());

    assert!(panicked.is_empty(), "pinwatch panicked on {} captures:\n{}", panicked.len(), panicked.join("\n"));
    assert!(errors.is_empty(), "replay returned an error on {} captures:\n{}", errors.len(), errors.join("\n"));
    assert!(
        unexpected_read_errors.is_empty(),
        "capture read errors on captures not listed in known::EXPECTED_CAPTURE_ERRORS:\n{}",
        unexpected_read_errors.join("\n")
    );
    assert!(problems.is_empty(), "oracle/output problems:\n{}", problems.join("\n"));
    let below = below_thresholds(&tot);
    assert!(FIELDS.iter().all(|(f, _)| THRESHOLDS.iter().any(|(t, _)| t == f)), "every field has a threshold");
    assert!(below.is_empty(), "agreement below threshold (see {}):\n{}", dis.display(), below.join("\n"));
}

/// One line of `per_capture.tsv`.
fn per_capture_row(per_capture: &mut String, r: &CaptureReport, packets: u64, first_error: Option<String>, ms: u128) {
    let mut t = pinwatch_tests::compare::Tally::default();
    r.tallies.values().for_each(|x| t.add(x));
    let _ = writeln!(
        per_capture,
        "{}\t{}\t{packets}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{ms}",
        r.capture,
        r.rel,
        r.our_sessions,
        r.oracle_streams,
        r.our_quic_sessions,
        r.oracle_quic_streams,
        r.quic_rows,
        r.gquic_rows,
        r.udp_rows,
        r.tunnel_rows,
        r.our_data_only,
        t.compared,
        t.agreed,
        t.known,
        t.unexplained(),
        first_error.unwrap_or_default().replace('\t', " ")
    );
}

/// The summary's notes on what was compared and what is out of scope, with
/// the row and capture counts.
fn scope_notes(summary: &mut String, reports: &[CaptureReport]) {
    let sum =
        |f: fn(&CaptureReport) -> usize| -> (usize, usize) { (reports.iter().map(f).sum(), reports.iter().filter(|r| f(r) > 0).count()) };
    let (q, qc) = sum(|r| r.quic_rows);
    let (g, gc) = sum(|r| r.gquic_rows);
    let (qn, qnc) = sum(|r| r.our_quic_no_hello);
    let (ql, qlc) = sum(|r| r.ja4_quic_letter_normalised);
    let (u, uc) = sum(|r| r.udp_rows);
    let (t, tc) = sum(|r| r.tunnel_rows);
    let (d, dc) = sum(|r| r.our_data_only);
    let (p, pc) = sum(|r| r.skipped_oracle_parse_errors);
    let _ = writeln!(
        summary,
        "\nQUIC (IETF; tshark decrypted the Initial ClientHello/ServerHello): {q} oracle rows in {qc} captures, compared (quic_* fields)"
    );
    let _ = writeln!(
        summary,
        "out of scope: Google QUIC with its own crypto (gQUIC CHLO tags, Q0xx; not decoded) — {g} oracle rows (transport gquic, or quic with a CHLO SNI and no TLS hello) in {gc} captures, not compared"
    );
    let _ = writeln!(summary, "quic records of ours without a ClientHello that no oracle stream claimed (nothing decrypted either side): {qn} in {qnc} captures, not compared");
    let _ = writeln!(summary, "FoxIO rust ja4 `t`-lettered QUIC JA4s (ClientHello without extension 57, draft code point 0xffa5 only) compared as `q`: {ql} in {qlc} captures");
    let _ = writeln!(summary, "out of scope: TLS over plain UDP (OpenVPN-UDP, RDP-UDP) — {u} oracle rows in {uc} captures, not compared");
    let _ = writeln!(
        summary,
        "TCP in UDP tunnels (GTP-U/GENEVE/VXLAN/CAPWAP rows re-attached to their TCP connection): {t} rows in {tc} captures, compared"
    );
    let _ = writeln!(
        summary,
        "records of ours with application data only (mid-stream; no oracle row can show them): {d} in {dc} captures, not compared"
    );
    let _ =
        writeln!(summary, "certificates python `cryptography` could not parse (PARSE_ERROR; only sha256 compared): {p} in {pc} captures");
}

/// The summary's largest groups of unexplained disagreements (by field and
/// capture), and the number of known differences.
fn disagreement_groups(summary: &mut String, reports: &[CaptureReport]) {
    let mut groups: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut known_n = 0;
    for r in reports {
        for d in &r.disagreements {
            if d.known.is_some() {
                known_n += 1;
            } else {
                *groups.entry((d.field, r.capture.as_str())).or_default() += 1;
            }
        }
    }
    let mut g: Vec<_> = groups.into_iter().collect();
    g.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let _ = writeln!(summary, "\nlargest unexplained disagreement groups (field, capture: count):");
    for ((f, c), n) in g.iter().take(25) {
        let _ = writeln!(summary, "  {n:>5}  {f:<18} {c}");
    }
    let _ = writeln!(summary, "\nknown differences (explained in tests/src/known.rs, not counted): {known_n}");
}

/// The fields whose agreement is under their [`THRESHOLDS`] entry (or with
/// nothing compared outside the known differences), described.
fn below_thresholds(tot: &BTreeMap<&'static str, pinwatch_tests::compare::Tally>) -> Vec<String> {
    let mut below = Vec::new();
    for (f, min) in THRESHOLDS {
        let t = tot.get(f).copied().unwrap_or_default();
        match t.percent() {
            None => below.push(format!("{f}: nothing compared outside the known differences ({} compared, {} known)", t.compared, t.known)),
            Some(p) if p < *min => below.push(format!("{f}: {p:.2}% < {min}% ({} of {} disagree)", t.unexplained(), t.compared - t.known)),
            Some(_) => {}
        }
    }
    below
}

#[test]
fn corpus_no_panic_all_files() {
    let Some(corpus) = corpus_or_skip("corpus_no_panic_all_files") else { return };
    let files = all_capture_files(&corpus);
    assert!(files.len() >= 100, "expected the ~416 corpus captures, found {}", files.len());
    let threads = default_threads();
    println!("corpus: {} capture files, {threads} threads", files.len());
    let done = match par_map(files.clone(), threads, PER_CAPTURE, |p: &PathBuf| run_capture(p)) {
        Ok(d) => d,
        Err(stuck) => panic!("pinwatch did not finish within {PER_CAPTURE:?} on: {stuck:?}"),
    };
    let mut panicked = Vec::new();
    let mut errors = Vec::new();
    let mut unexpected = Vec::new();
    let mut too_big = Vec::new();
    let mut max_buf = (0u64, String::new());
    let schemas = schema_check::Schemas::load();
    let (mut checked, mut invalid) = (0usize, Vec::new());
    let mut tsv = String::from("path\tresult\tpackets\ttls_records\tflow_buffers_max\tflows_max\tms\tfirst_error\n");
    for (p, r) in files.iter().zip(done) {
        let rel = rel_path(&corpus, p);
        match r {
            None => panicked.push(format!("{rel}: worker died")),
            Some(RunResult::Panicked(m)) => {
                let _ = writeln!(tsv, "{rel}\tpanic\t\t\t\t\t\t{}", m.replace(['\t', '\n'], " "));
                panicked.push(format!("{rel}: {m}"));
            }
            Some(RunResult::Err(e)) => {
                let _ = writeln!(tsv, "{rel}\terror\t\t\t\t\t\t{}", e.replace(['\t', '\n'], " "));
                errors.push(format!("{rel}: {e}"));
            }
            Some(RunResult::Ok(o)) => {
                checked += schema_check::check_output(&schemas, &rel, &o.eve, 50, &mut invalid);
                let fe = o.first_error.clone().unwrap_or_default();
                let _ = writeln!(
                    tsv,
                    "{rel}\tok\t{}\t{}\t{}\t{}\t{}\t{}",
                    o.packets,
                    o.tls_records,
                    o.flow_buffers_max,
                    o.flows_max,
                    o.elapsed.as_millis(),
                    fe.replace(['\t', '\n'], " ")
                );
                if o.first_error.is_some() && capture_error_expected(&rel).is_none() {
                    unexpected.push(format!("{rel}: {fe}"));
                }
                if o.flow_buffers_max > FLOW_BUFFERS_MAX {
                    too_big.push(format!("{rel}: {} bytes", o.flow_buffers_max));
                }
                if o.flow_buffers_max >= max_buf.0 {
                    max_buf = (o.flow_buffers_max, rel.clone());
                }
            }
        }
    }
    let p = write_report("all_files.tsv", &tsv);
    println!(
        "{} files: {} panicked, {} errors, {} unexpected read errors; largest flow_buffers_max {} bytes ({}); list: {}",
        files.len(),
        panicked.len(),
        errors.len(),
        unexpected.len(),
        max_buf.0,
        max_buf.1,
        p.display()
    );
    assert!(panicked.is_empty(), "pinwatch panicked on {} files:\n{}", panicked.len(), panicked.join("\n"));
    assert!(errors.is_empty(), "replay returned an error on:\n{}", errors.join("\n"));
    assert!(unexpected.is_empty(), "capture read errors not in known::EXPECTED_CAPTURE_ERRORS:\n{}", unexpected.join("\n"));
    assert!(too_big.is_empty(), "flow buffers above {FLOW_BUFFERS_MAX} bytes:\n{}", too_big.join("\n"));
    println!("schemas: {checked} records checked (Suricata's schema: {})", if schemas.has_suricata() { "yes" } else { "SKIPPED" });
    assert!(invalid.is_empty(), "records that do not validate:\n{}", invalid.join("\n"));
}
