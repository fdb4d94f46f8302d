//! The replay pipeline: capture files → decode → flow table → EVE lines.
//!
//! Output order: a `tls` record is written when its flow ends (FIN/RST after
//! a short linger, idle timeout, eviction, or end of capture); flows that end
//! at the end of the capture are written in order of their last packet, ties
//! broken by flow id. The `stats` record comes last. Everything is driven by
//! packet timestamps, so the same input gives the same bytes of output.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use pinwatch_parsers::decode::decode;

use crate::capture::{CaptureError, CaptureFile, Merged};
use crate::classify;
use crate::config::Config;
use crate::eve;
use crate::findings::{AlertBody, Correlator, SessionFacts};
use crate::flow::{CloseKind, Ended, FlowTable, Limits, Proto, TableStats};

/// Where packets come from.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Stdin,
    /// A capture held in memory (the bundled default, tests).
    Bytes { name: String, bytes: &'static [u8] },
}

/// The capture bundled into the binary: made by `scripts/testbed.sh` with
/// real TLS stacks (see `pcaps/README.md`): pinned OkHttp and curl clients
/// rejecting an inspecting proxy, then going direct; opaque sessions.
/// `pinwatch replay` with no file replays it with [`BUNDLED_CONFIG`].
pub const BUNDLED_CAPTURE: (&str, &[u8]) =
    ("testbed-fallback.pcap", include_bytes!("../../pcaps/testbed-fallback.pcap"));

/// The configuration that goes with [`BUNDLED_CAPTURE`] (`pcaps/bundled.toml`).
pub const BUNDLED_CONFIG: &str = include_str!("../../pcaps/bundled.toml");

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    /// Networks, inspection deployment, bypass list, thresholds.
    pub config: Config,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Write the final stats record.
    pub stats: bool,
    /// MDM/device feed files (JSON lines, `enrichment/FEED.md`).
    pub feeds: Vec<PathBuf>,
    /// MDM/device feeds served over HTTP(S), cursor-paged (`feed_source`).
    pub feed_urls: Vec<String>,
    /// Write OCSF Detection Findings (alerts only) instead of EVE.
    pub ocsf: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CaptureStats {
    pub files: usize,
    /// Packets more than an hour ahead of the capture clock that the next
    /// packet did not confirm (not used to expire flows).
    pub timestamp_jumps: u64,
    pub packets: u64,
    pub bytes: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DecoderStats {
    pub tcp: u64,
    pub udp: u64,
    pub truncated: u64,
    pub tunnelled: u64,
    /// Frames that produced no TCP/UDP packet, per reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub capture: CaptureStats,
    pub decoder: DecoderStats,
    pub flow: TableStats,
    pub tls_records_logged: u64,
    pub quic_records_logged: u64,
    pub alerts_logged: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<crate::enrich::EnrichStats>,
    /// Sessions per outcome and per failure class.
    pub outcomes: BTreeMap<String, u64>,
    pub memory: MemoryStats,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryStats {
    /// High-water mark of bytes held in per-flow reassembly and handshake buffers.
    pub flow_buffers_max: u64,
    pub flows_max: u64,
    pub flow_cap: u64,
}

#[derive(Serialize)]
struct StatsEvent<'a> {
    timestamp: String,
    event_type: &'static str,
    stats: &'a Stats,
}

/// A forward time jump larger than this needs a second packet to confirm it.
const MAX_UNCONFIRMED_JUMP_NS: i64 = 3_600 * 1_000_000_000;

/// Result of a run.
#[derive(Debug)]
pub struct Summary {
    pub stats: Stats,
    /// The first capture error, if any (the run still reported everything before it).
    pub first_error: Option<String>,
}

/// Replay the inputs as one capture, writing EVE lines to `out`.
pub fn replay(inputs: &[Input], opts: &Options, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let mut stats = Stats::default();
    let mut first_error = None;
    let mut files = Vec::new();
    for input in inputs {
        let opened = match input {
            Input::File(p) => CaptureFile::open(p),
            Input::Stdin => CaptureFile::from_reader("-".to_string(), std::io::stdin().lock()),
            Input::Bytes { name, bytes } => CaptureFile::from_bytes(name.clone(), bytes.to_vec()),
        };
        match opened {
            Ok(f) => files.push(f),
            Err(e) => {
                let msg = e.to_string();
                stats.capture.errors.push(msg.clone());
                first_error.get_or_insert(msg);
            }
        }
    }
    stats.capture.files = files.len();
    let names: Vec<String> = files.iter().map(|f| f.name().to_string()).collect();
    let total: u64 = files.iter().map(|f| f.len()).sum();
    let bar = progress_bar(opts.progress, total);

    let mut table = FlowTable::new(opts.limits);
    let mut ended: Vec<Ended> = Vec::new();
    let mut last_ts = i64::MIN;
    let mut jump_candidate: Option<i64> = None;
    let mut seen_bytes = 0u64;
    let mut write_err: Option<std::io::Error> = None;
    let mut correlator = Correlator::new(opts.config.clone());
    let mut enricher = if opts.feeds.is_empty() && opts.feed_urls.is_empty() {
        None
    } else {
        let (mut en, errors) = crate::enrich::Enricher::load_sources(&opts.feeds, &opts.feed_urls, std::time::Duration::from_secs(60))?;
        en.stats.source_errors = errors;
        Some(en)
    };
    if let Some(en) = enricher.as_mut() {
        en.config_baselines = opts.config.baselines.clone();
    }
    let mut folder = crate::enrich::Folder::new(opts.config.fallback_window_ns);
    let cfg = &opts.config;
    let mut emit = |ended: &mut Vec<Ended>, stats: &mut Stats, out: &mut dyn Write| {
        let ocsf = opts.ocsf;
        let mut write = |v: &dyn erased::Json, out: &mut dyn Write| {
            if write_err.is_none() {
                let r = if ocsf { v.write_ocsf(out) } else { v.write_line(out) };
                if let Err(err) = r {
                    write_err = Some(err);
                }
            }
        };
        for e in ended.drain(..) {
            let pcap = names.get(e.flow.source).map(|s| s.as_str());
            match e.flow.proto {
                Proto::NotTls => {
                    let (cip, _) = e.flow.client();
                    let (sip, sport) = e.flow.server();
                    if let Some(f) = correlator.observe_not_tls(e.flow.flow_id, cip, sip, sport) {
                        let header = eve::Header::of(&e.flow, pcap, "alert", "failed");
                        let a = eve::AlertEvent::new(&header, AlertBody::new(f.sid), None, None, None, f.evidence);
                        stats.alerts_logged += 1;
                        write(&a, out);
                    }
                }
                Proto::Quic => {
                    let mut ev = eve::quic_event(&e, pcap);
                    ev.tls_failure = Some(classify::quic_outcome(&e));
                    ev.path = Some(classify::path(&e, cfg, ev.quic.sni.as_deref(), None));
                    if let Some(en) = enricher.as_mut() {
                        ev.mobile = en.enrich(ev.header.src_ip, ev.header.dest_ip, ev.header.dest_port, ev.quic.sni.as_deref(), e.flow.first_ts);
                    }
                    stats.quic_records_logged += 1;
                    write(&ev, out);
                    let brief = eve::TlsBrief {
                        sni: ev.quic.sni.as_deref(),
                        version: ev.quic.version.as_deref().unwrap_or("UNDETERMINED"),
                        ja4: ev.quic.ja4.as_deref(),
                        ja3: ev.quic.ja3.as_ref(),
                        issuerdn: None,
                    };
                    let hello = e.flow.quic.as_ref().and_then(|q| q.client_hellos.first()).map(|(h, _)| h);
                    let logged = Logged { header: &ev.header, start_ns: e.flow.first_ts, brief, failure: ev.tls_failure.as_ref(), path: ev.path.as_ref(), mobile: ev.mobile.as_ref(), ech: hello.is_some_and(|h| h.offers_ech()), quic: true };
                    correlate(&logged, &mut correlator, &mut folder, enricher.as_mut(), stats, &mut |v: &dyn erased::Json| write(v, out));
                }
                Proto::Tls if e.flow.session.is_tls() => {
                    let mut ev = eve::tls_event(&e, pcap);
                    ev.tls_failure = Some(classify::outcome(&e, cfg));
                    ev.path = Some(classify::path(&e, cfg, ev.tls.sni.as_deref(), ev.tls.ja3s.as_ref().map(|f| f.hash.as_str())));
                    if let Some(en) = enricher.as_mut() {
                        ev.mobile = en.enrich(ev.header.src_ip, ev.header.dest_ip, ev.header.dest_port, ev.tls.sni.as_deref(), e.flow.first_ts);
                    }
                    stats.tls_records_logged += 1;
                    write(&ev, out);
                    let brief = eve::TlsBrief {
                        sni: ev.tls.sni.as_deref(),
                        version: &ev.tls.version,
                        ja4: ev.tls.ja4.as_deref(),
                        ja3: ev.tls.ja3.as_ref(),
                        issuerdn: ev.tls.issuerdn.as_deref(),
                    };
                    let hello = e.flow.session.client_hellos.first().map(|(h, _)| h);
                    let logged = Logged { header: &ev.header, start_ns: e.flow.first_ts, brief, failure: ev.tls_failure.as_ref(), path: ev.path.as_ref(), mobile: ev.mobile.as_ref(), ech: hello.is_some_and(|h| h.offers_ech()), quic: false };
                    correlate(&logged, &mut correlator, &mut folder, enricher.as_mut(), stats, &mut |v: &dyn erased::Json| write(v, out));
                }
                _ => {}
            }
        }
    };

    let refs: Vec<&CaptureFile> = files.iter().collect();
    for item in Merged::new(&refs) {
        let pkt = match item {
            Ok(p) => p,
            Err(e) => {
                let msg = describe(&e);
                stats.capture.errors.push(msg.clone());
                first_error.get_or_insert(msg);
                continue;
            }
        };
        stats.capture.packets += 1;
        stats.capture.bytes += pkt.data.len() as u64;
        seen_bytes += pkt.data.len() as u64 + 16;
        if let Some(b) = &bar {
            if stats.capture.packets % 4096 == 0 {
                b.set_position(seen_bytes.min(total));
            }
        }
        // Packet time only moves forward for expiry; a packet that steps back
        // in time (merged files, clock jumps) does not un-expire anything. A
        // single packet far in the future (a bad timestamp) must not time out
        // every flow: a jump of more than an hour is believed only when the
        // next packet confirms it.
        if pkt.ts_ns > last_ts {
            let jump = last_ts != i64::MIN && pkt.ts_ns - last_ts > MAX_UNCONFIRMED_JUMP_NS;
            let confirmed = jump_candidate.is_some_and(|c| (pkt.ts_ns - c).abs() <= MAX_UNCONFIRMED_JUMP_NS);
            if jump && !confirmed {
                jump_candidate = Some(pkt.ts_ns);
                stats.capture.timestamp_jumps += 1;
            } else {
                jump_candidate = None;
                last_ts = pkt.ts_ns;
                table.expire(last_ts, &mut ended);
                emit(&mut ended, &mut stats, out);
            }
        } else {
            jump_candidate = None;
        }
        match decode(pkt.linktype, pkt.data) {
            Ok(d) => {
                if d.truncated {
                    stats.decoder.truncated += 1;
                }
                if d.tunnel.is_some() {
                    stats.decoder.tunnelled += 1;
                }
                if d.proto == 6 {
                    stats.decoder.tcp += 1;
                } else {
                    stats.decoder.udp += 1;
                }
                table.packet(&d, pkt.ts_ns, pkt.orig_len, pkt.source, &mut ended);
                emit(&mut ended, &mut stats, out);
            }
            Err(skip) => *stats.decoder.skipped.entry(skip.reason()).or_default() += 1,
        }
    }
    table.drain(CloseKind::Eof, &mut ended);
    emit(&mut ended, &mut stats, out);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    stats.flow = table.stats;
    stats.enrichment = enricher.map(|e| e.stats);
    stats.memory = MemoryStats {
        flow_buffers_max: table.stats.heap_bytes_max,
        flows_max: table.stats.flows_active_max,
        flow_cap: opts.limits.max_flows as u64,
    };
    if opts.stats && !opts.ocsf {
        let ev = StatsEvent {
            timestamp: eve::timestamp(if last_ts == i64::MIN { 0 } else { last_ts }),
            event_type: "stats",
            stats: &stats,
        };
        if write_err.is_none() {
            serde_json::to_writer(&mut *out, &ev)?;
            out.write_all(b"\n")?;
        }
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    Ok(Summary { stats, first_error })
}

/// A logged TLS or QUIC session, as the findings see it.
struct Logged<'a> {
    header: &'a eve::Header<'a>,
    mobile: Option<&'a crate::enrich::MobileOut>,
    start_ns: i64,
    brief: eve::TlsBrief<'a>,
    failure: Option<&'a classify::TlsFailure>,
    path: Option<&'a classify::PathOut>,
    ech: bool,
    quic: bool,
}

/// Count the session's outcome and raise its findings.
fn correlate(
    l: &Logged<'_>,
    correlator: &mut Correlator,
    folder: &mut crate::enrich::Folder,
    enricher: Option<&mut crate::enrich::Enricher>,
    stats: &mut Stats,
    write: &mut dyn FnMut(&dyn erased::Json),
) {
    let mut enricher = enricher;
    let (Some(failure), Some(path)) = (l.failure, l.path) else { return };
    let key = match failure.class {
        Some(c) => format!("{}{:?}_{c:?}", if l.quic { "quic_" } else { "" }, failure.outcome),
        None => format!("{}{:?}", if l.quic { "quic_" } else { "" }, failure.outcome),
    };
    *stats.outcomes.entry(key.to_ascii_lowercase()).or_default() += 1;
    let facts = SessionFacts {
        flow_id: l.header.flow_id,
        start_ns: l.start_ns,
        client: l.header.src_ip,
        server: l.header.dest_ip,
        server_port: l.header.dest_port,
        sni: l.brief.sni,
        ech: l.ech,
        quic: l.quic,
        path,
        failure,
    };
    let brief = || eve::TlsBrief { sni: l.brief.sni, version: l.brief.version, ja4: l.brief.ja4, ja3: l.brief.ja3, issuerdn: l.brief.issuerdn };
    let mut findings = correlator.observe(&facts);
    // Baselines: an attributed session outside its app's approved
    // destinations is a finding; one that succeeded under inspection
    // teaches the baseline.
    if let (Some(m), Some(en)) = (l.mobile, enricher.as_mut()) {
        if let (Some(pkg), Some(host)) = (m.app.package.as_deref(), l.brief.sni) {
            let under_inspection = matches!(path.kind, classify::PathKind::Intercepted | classify::PathKind::ExplicitProxy);
            if under_inspection && failure.outcome == classify::Outcome::Established {
                en.learn(pkg, host);
            }
        }
        if m.baseline.as_ref().is_some_and(|b| !b.approved) {
            let sources = m.baseline.as_ref().map(|b| b.sources.join("+")).unwrap_or_default();
            findings.push(crate::findings::Finding {
                sid: crate::findings::SID_BASELINE,
                evidence: crate::findings::Evidence {
                    reasons: vec![format!("destination_outside_baseline:{}:baseline:{sources}", l.brief.sni.unwrap_or("?"))],
                    flow_ids: vec![l.header.flow_id],
                },
            });
        }
    }
    let sids: Vec<u32> = findings.iter().map(|f| f.sid).collect();
    let mut flow_ids: Vec<u64> = Vec::new();
    for f in findings {
        flow_ids.extend(f.evidence.flow_ids.iter().copied());
        let mut a = eve::AlertEvent::new(l.header, AlertBody::new(f.sid), Some(brief()), Some(failure), Some(path), f.evidence);
        a.mobile = l.mobile;
        stats.alerts_logged += 1;
        write(&a);
    }
    // The AN1725 join: the network findings of an enriched session, with
    // the device and app evidence that makes them an app's behaviour.
    if let Some(m) = l.mobile {
        if let Some(verdict) = crate::enrich::an1725(m, &sids, l.header.flow_id) {
            flow_ids.sort_unstable();
            flow_ids.dedup();
            let dest = l.brief.sni.map(str::to_string).unwrap_or_else(|| l.header.dest_ip.to_string());
            let (verdict, flow_ids) = folder.fold(verdict, m, &dest, l.start_ns, &flow_ids);
            let evidence = crate::findings::Evidence { reasons: verdict.reasons.clone(), flow_ids };
            let mut a = eve::AlertEvent::new(l.header, AlertBody::new(crate::findings::SID_AN1725), Some(brief()), Some(failure), Some(path), evidence);
            a.mobile = Some(m);
            a.an1725 = Some(verdict);
            stats.alerts_logged += 1;
            write(&a);
        }
    }
}

/// One JSON line, whatever the record type.
mod erased {
    pub trait Json {
        fn write_line(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
        /// The OCSF form of an alert; other records write nothing.
        fn write_ocsf(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }
    impl<T: serde::Serialize> Json for T {
        fn write_line(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, self)?;
            out.write_all(b"\n")
        }
        fn write_ocsf(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            let v = serde_json::to_value(self)?;
            match crate::ocsf::detection_finding(&v) {
                Some(f) => {
                    serde_json::to_writer(&mut *out, &f)?;
                    out.write_all(b"\n")
                }
                None => Ok(()),
            }
        }
    }
}

fn describe(e: &CaptureError) -> String {
    e.to_string()
}

fn progress_bar(wanted: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() || total < 8 * 1024 * 1024 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}
