//! The report page: one self-contained HTML file (inline CSS, inline SVG
//! charts drawn here, no script, nothing fetched), rendered with `maud`,
//! which escapes every value. Key figures carry a `data-k` attribute so a
//! test can read them from the rendered DOM.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::actions::{Action, Proposals};
use super::model::{pct, top_findings, Cover, Model, Row};

/// Rows shown per table on the page (the CSV files hold every row).
pub const MAX_ROWS: usize = 300;
/// Findings shown in "Top findings".
pub const TOP_FINDINGS: usize = 50;

const CSS: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2a44;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c9d3e6}
main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:18px;margin:0 0 8px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e6e9ef;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f2f6;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:40px;font-weight:700;color:#b3261e}.figure{display:flex;gap:28px;align-items:center;flex-wrap:wrap}
.kpi{border-left:4px solid #1d2a44;padding:2px 10px}.kpi b{font-size:20px;display:block}
.muted{color:#667085}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
td.ev{max-width:420px}.nowrap{white-space:nowrap;font-size:12px}
.sev1{color:#b3261e;font-weight:600}.sev2{color:#b26a00;font-weight:600}.sev3{color:#475467}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
code{background:#f0f2f6;padding:0 3px;border-radius:3px}
nav a{color:#c9d3e6;margin-right:14px}
"#;

fn cover_color(c: Cover) -> &'static str {
    match c {
        Cover::Inspected => "#2e7d32",
        Cover::RefusedByClient => "#f9a825",
        Cover::InspectedOther => "#9ccc65",
        Cover::EscapedDirect => "#c62828",
        Cover::EscapedBypass => "#ef6c00",
        Cover::EscapedTunnel => "#6a1b9a",
        Cover::EscapedPassthrough => "#ad1457",
        Cover::Unknown => "#90a4ae",
        Cover::Excluded => "#cfd8dc",
    }
}

fn sig_color(sid: u64) -> &'static str {
    match sid {
        1725001 => "#f9a825",
        1725002 => "#c62828",
        1725003 => "#6a1b9a",
        1725004 => "#b3261e",
        1725005 => "#1565c0",
        1725006 => "#00897b",
        _ => "#78909c",
    }
}

fn sig_short(sid: u64) -> &'static str {
    match sid {
        1725001 => "inspection failure",
        1725002 => "direct TLS",
        1725003 => "opaque session",
        1725004 => "fallback",
        1725005 => "attributed app (AN1725)",
        1725006 => "outside baseline",
        _ => "other",
    }
}

fn ts_text(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).ok())
        .unwrap_or_default()
}

/// Stacked bars, one per bucket; `series` gives each layer's colour and label.
fn stacked(m: &Model, bars: &[Vec<u64>], series: &[(&str, &str)], title: &str) -> Markup {
    let (w, h, pad) = (900.0_f64, 180.0_f64, 28.0_f64);
    let max = bars.iter().map(|b| b.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let n = bars.len().max(1);
    let bw = (w - pad * 2.0) / n as f64;
    let mut rects = String::new();
    for (i, b) in bars.iter().enumerate() {
        let mut y = h - pad;
        for (j, v) in b.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            let hh = (*v as f64) * (h - pad * 2.0) / max as f64;
            y -= hh;
            rects.push_str(&format!(
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} ({})</title></rect>"#,
                pad + i as f64 * bw + 1.0,
                y,
                (bw - 2.0).max(1.0),
                hh,
                series[j].0,
                esc(series[j].1),
                v,
                esc(&ts_text(m.first_ns + m.bucket_ns * i as i64))
            ));
        }
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(title) {
            line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) stroke="#98a2b3" {}
            text x="2" y=(pad) font-size="11" fill="#667085" { (max) }
            text x=(pad) y=(h - 8.0) font-size="11" fill="#667085" { (ts_text(m.first_ns)) }
            text x=(w - pad) y=(h - 8.0) font-size="11" fill="#667085" text-anchor="end" { (ts_text(m.first_ns + m.bucket_ns * n as i64)) " (bucket " (m.bucket_ns / 1_000_000_000) " s)" }
            (PreEscaped(rects))
        }
        div.legend { @for (c, l) in series { span { i style=(format!("background:{c}")) {} (l) } } }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A small sparkline of sessions (grey) and rejections (red) per bucket.
fn spark(trend: &[(u64, u64)]) -> Markup {
    let (w, h) = (120.0_f64, 24.0_f64);
    let max = trend.iter().map(|t| t.0).max().unwrap_or(0).max(1);
    let bw = w / trend.len().max(1) as f64;
    let mut s = String::new();
    for (i, (n, r)) in trend.iter().enumerate() {
        let hn = *n as f64 * h / max as f64;
        let hr = *r as f64 * h / max as f64;
        if *n > 0 {
            s.push_str(&format!(
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#b0bec5"/>"##,
                i as f64 * bw,
                h - hn,
                bw.max(1.0),
                hn
            ));
        }
        if *r > 0 {
            s.push_str(&format!(
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#c62828"/>"##,
                i as f64 * bw,
                h - hr,
                bw.max(1.0),
                hr
            ));
        }
    }
    html! { svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) { (PreEscaped(s)) } }
}

fn num(k: String, v: u64) -> Markup {
    html! { td.n data-k=(k) { (v) } }
}

fn classes(prefix: &str, r: &Row) -> Markup {
    html! {
        @for c in ["A", "B", "C", "D", "E"] {
            (num(format!("{prefix}:{c}"), r.class.get(c).copied().unwrap_or(0)))
        }
    }
}

fn sorted_rows(map: &std::collections::BTreeMap<String, Row>) -> Vec<(&String, &Row)> {
    let mut v: Vec<(&String, &Row)> = map.iter().collect();
    v.sort_by(|a, b| (b.1.findings + b.1.rejected, b.1.sessions, a.0).cmp(&(a.1.findings + a.1.rejected, a.1.sessions, b.0)));
    v
}

fn more(total: usize, file: &str) -> Markup {
    html! {
        @if total > MAX_ROWS { p.muted { "Showing " (MAX_ROWS) " of " (total) " rows; every row is in " code { (file) } "." } }
    }
}

/// The report page (report.html): a header, then one section per part of
/// the report (coverage, top findings, apps, destinations, devices, the
/// timeline, the proposed actions) and how to read it. `approvals_used`:
/// an approvals file was given (the apps section says so).
pub fn page(m: &Model, p: &Proposals, approvals_used: bool) -> String {
    let sids: Vec<u64> = {
        let mut s: Vec<u64> = m.findings.iter().map(|f| f.signature_id).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "pinwatch visibility-gap report" }
                style { (PreEscaped(CSS)) }
            }
            body {
                (page_header(m))
                main {
                    (input_problems(m))
                    (coverage_section(m))
                    (findings_section(m, &sids))
                    (apps_section(m, approvals_used))
                    (destinations_section(m))
                    (devices_section(m))
                    (timeline_section(m, &sids))
                    (actions_section(p))
                    (notes_section())
                }
            }
        }
    };
    doc.into_string()
}

/// The page header: the time span, totals and the table of contents.
fn page_header(m: &Model) -> Markup {
    let (first, last) = (ts_text(m.first_ns), ts_text(m.last_ns));
    html! {
        header {
            h1 { "pinwatch visibility-gap report" }
            p { "Managed mobile TLS and inspection, " (first) " – " (last) " UTC · "
                span data-k="sessions-total" { (m.sessions.len()) } " sessions · "
                span data-k="findings-total" { (m.findings.len()) } " findings · "
                (m.read.files) " file(s), " (m.read.lines) " lines" }
            nav { a href="#coverage" { "Coverage" } a href="#findings" { "Top findings" } a href="#apps" { "Apps" } a href="#destinations" { "Destinations" } a href="#devices" { "Devices" } a href="#timeline" { "Timeline" } a href="#actions" { "Actions" } a href="#notes" { "How to read" } }
        }
    }
}

/// What could not be read (malformed or too long lines, duplicates, sessions past
/// the cap, errors), when there is any.
fn input_problems(m: &Model) -> Markup {
    html! {
        @if m.read.malformed + m.read.too_long + m.duplicates + m.sessions_dropped > 0 || !m.read.errors.is_empty() {
            section { h2 { "Input problems" }
                p { (m.read.malformed) " malformed line(s), " (m.read.too_long) " line(s) too long, " (m.duplicates) " duplicate session record(s) ignored, " (m.sessions_dropped) " session(s) past the cap." }
                @for e in &m.read.errors { p.mono { (e) } }
            }
        }
    }
}

/// How much managed mobile TLS escaped inspection: the figures, why, per network
/// and over time.
fn coverage_section(m: &Model) -> Markup {
    let cov = &m.coverage;
    let cov_series: Vec<(&str, &str)> =
        Cover::ALL.iter().filter(|c| **c != Cover::Excluded).map(|c| (cover_color(*c), c.label())).collect();
    let cov_bars: Vec<Vec<u64>> = cov
        .per_bucket
        .iter()
        .map(|b| Cover::ALL.iter().filter(|c| **c != Cover::Excluded).map(|c| b.get(c).copied().unwrap_or(0)).collect())
        .collect();
    let population = cov.population();
    html! {
        section id="coverage" {
            h2 { "Coverage: how much managed mobile TLS escaped inspection" }
            div.figure {
                div { div.big data-k="cov-escaped-pct" { (pct(cov.escaped(), cov.known())) }
                      div { "of managed mobile TLS sessions with a known path went " b { "around the inspection" }
                            " (" span data-k="cov-escaped" { (cov.escaped()) } " of " span data-k="cov-known" { (cov.known()) } ")" } }
                div.kpi { b data-k="cov-refused" { (cov.get(Cover::RefusedByClient)) } "refused by the client under inspection (no data sent; the app’s own trust logic)" }
                div.kpi { b data-k="cov-unknown" { (cov.get(Cover::Unknown)) } "path unknown (" (pct(cov.get(Cover::Unknown), population)) " of " span data-k="cov-population" { (population) } "): counted in neither figure" }
                div.kpi { b data-k="cov-seen-pct" { (pct(cov.seen(), cov.known())) } "seen by the inspector (" (cov.seen()) " of " (cov.known()) ")" }
            }
            p.muted { "Managed mobile TLS = sessions to which the device feed gave a managed device (sessions from runs without a feed: a client on a configured managed network)."
                " Internal destinations and unmanaged clients are outside the figure (" (cov.get(Cover::Excluded)) " sessions). "
                (cov.capture_gap_sessions) " session(s) whose verdict the capture could not support (capture gaps); stats records report "
                span data-k="stats-capturegap" { (cov.stats_outcomes.get("incomplete_capturegap").copied().unwrap_or(0)) } "." }
            h3 { "Why" }
            table { thead { tr { th { "path" } th.n { "sessions" } th.n { "share of known" } } }
                tbody { @for c in Cover::ALL { @if c != Cover::Excluded && c != Cover::Unknown {
                    tr { td { i style=(format!("display:inline-block;width:10px;height:10px;background:{}", cover_color(c))) {} " " (c.label()) }
                         (num(format!("cov:{}", serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()), cov.get(c)))
                         td.n { (pct(cov.get(c), cov.known())) } } } } } }
            h3 { "Per network" }
            table { thead { tr { th { "network" } th.n { "sessions" } th.n { "seen" } th.n { "escaped" } th.n { "escaped share" } th.n { "unknown" } } }
                tbody { @for (net, counts) in cov.per_network.iter().filter(|(_, c)| c.iter().any(|(k, v)| *k != Cover::Excluded && *v > 0)) {
                    @let g = |c: Cover| counts.get(&c).copied().unwrap_or(0);
                    @let seen: u64 = Cover::ALL.iter().filter(|c| c.seen()).map(|c| g(*c)).sum();
                    @let esc_n: u64 = Cover::ALL.iter().filter(|c| c.escaped()).map(|c| g(*c)).sum();
                    tr { td { (net) } td.n { (counts.values().sum::<u64>() - g(Cover::Excluded)) } (num(format!("net:{net}:seen"), seen)) (num(format!("net:{net}:escaped"), esc_n)) td.n { (pct(esc_n, seen + esc_n)) } (num(format!("net:{net}:unknown"), g(Cover::Unknown))) } } } }
            h3 { "Over time" }
            (stacked(m, &cov_bars, &cov_series, "sessions per path over time"))
        }
    }
}

/// The top findings (the first [`TOP_FINDINGS`]) and the count per signature
/// (`sids`: the signatures found, in order).
fn findings_section(m: &Model, sids: &[u64]) -> Markup {
    let findings = top_findings(m);
    html! {
        section id="findings" {
            h2 { "Top findings" }
            @if findings.is_empty() { p { "No findings." } }
            table { thead { tr { th { "severity" } th { "finding" } th { "confidence" } th { "app / device" } th { "destination" } th { "time" } th { "evidence" } th { "flow ids to pivot on" } } }
                tbody { @for f in findings.iter().take(TOP_FINDINGS) {
                    tr { td class=(format!("sev{}", f.severity)) { (f.severity) } td title=(f.signature) { (f.signature_id) br; (sig_short(f.signature_id)) }
                         td { (f.confidence) } td { (f.app.as_deref().unwrap_or("—")) br; span.muted { (f.device.as_deref().unwrap_or(&f.client)) } }
                         td { (f.dest) } td.nowrap { (ts_text(f.ts_ns)) }
                         td.mono.ev { @for r in f.reasons.iter().take(12) { (r) br; } @if f.reasons.len() > 12 { "… " (f.reasons.len() - 12) " more" } }
                         td.mono.nowrap { @for id in f.flow_ids.iter().take(20) { (id) br; } @if f.flow_ids.is_empty() { (f.flow_id) } } } } } }
            @if findings.len() > TOP_FINDINGS { p.muted { (findings.len()) " findings in all: " code { "findings.csv" } } }
            p { @for s in sids { span.kpi { b data-k=(format!("findings-{s}")) { (m.findings.iter().filter(|f| f.signature_id == *s).count()) } (s) " " (sig_short(*s)) } " " } }
        }
    }
}

/// One row per app (the first [`MAX_ROWS`]).
fn apps_section(m: &Model, approvals_used: bool) -> Markup {
    let apps = sorted_rows(&m.apps);
    html! {
        section id="apps" {
            h2 { "Per app" }
            table { thead { tr { th { "app (package · signing certificate)" } th.n { "devices" } th.n { "sessions" } th.n { "A" } th.n { "B" } th.n { "C" } th.n { "D" } th.n { "E" } th.n { "fallbacks" } th.n { "direct" } th.n { "bypassed" } th.n { "opaque" } th.n { "outside baseline" } th.n { "unattended" } th { "trend (sessions / rejections)" } } }
                tbody { @for (name, r) in apps.iter().take(MAX_ROWS) {
                    @let k = format!("app:{name}");
                    tr { td { b { (name) } @for c in &r.certs { br; span.mono.muted { (c) } } @if !r.unapproved_dests.is_empty() { br; span.muted { "outside baseline: " (r.unapproved_dests.iter().take(5).cloned().collect::<Vec<_>>().join(", ")) } } }
                         (num(format!("{k}:devices"), r.devices.len() as u64)) (num(format!("{k}:sessions"), r.sessions)) (classes(&k, r))
                         (num(format!("{k}:fallbacks"), r.fallbacks)) (num(format!("{k}:direct"), r.direct)) (num(format!("{k}:bypassed"), r.bypassed)) (num(format!("{k}:opaque"), r.opaque))
                         (num(format!("{k}:outside"), r.outside_baseline))
                         td.n data-k=(format!("{k}:unattended")) { @if r.state_known > 0 { (pct(r.unattended, r.state_known)) } @else { "unknown" } }
                         td { (spark(&r.trend)) } } } } }
            (more(apps.len(), "apps.csv"))
            p.muted { "A–E: inspection failures by class (docs/domain.md). Unattended: background, device locked, screen off or more than 60 s since the last user interaction, as a share of the sessions whose state the feed gave. Outside baseline: sessions to destinations outside the app’s approved baseline" @if approvals_used { " (after the approvals file)" } "." }
        }
    }
}

/// One row per destination (the first [`MAX_ROWS`]).
fn destinations_section(m: &Model) -> Markup {
    let dests = sorted_rows(&m.dests);
    html! {
        section id="destinations" {
            h2 { "Per destination" }
            table { thead { tr { th { "destination (SNI, else address)" } th.n { "sessions" } th.n { "rejected" } th.n { "direct" } th.n { "bypassed" } th.n { "opaque" } th.n { "findings" } th { "apps" } } }
                tbody { @for (name, r) in dests.iter().take(MAX_ROWS) {
                    @let k = format!("dest:{name}");
                    tr { td { (name) } (num(format!("{k}:sessions"), r.sessions)) (num(format!("{k}:rejected"), r.rejected)) (num(format!("{k}:direct"), r.direct)) (num(format!("{k}:bypassed"), r.bypassed)) (num(format!("{k}:opaque"), r.opaque)) (num(format!("{k}:findings"), r.findings))
                         td { (r.apps.iter().take(5).cloned().collect::<Vec<_>>().join(", ")) } } } } }
            (more(dests.len(), "destinations.csv"))
        }
    }
}

/// One row per device (the first [`MAX_ROWS`]).
fn devices_section(m: &Model) -> Markup {
    let devices = sorted_rows(&m.devices);
    html! {
        section id="devices" {
            h2 { "Per device" }
            table { thead { tr { th { "device" } th.n { "sessions" } th.n { "rejected" } th.n { "direct" } th.n { "findings" } th { "apps" } } }
                tbody { @for (name, r) in devices.iter().take(MAX_ROWS) {
                    @let k = format!("dev:{name}");
                    tr { td { (name) } (num(format!("{k}:sessions"), r.sessions)) (num(format!("{k}:rejected"), r.rejected)) (num(format!("{k}:direct"), r.direct)) (num(format!("{k}:findings"), r.findings))
                         td { (r.apps.iter().take(5).cloned().collect::<Vec<_>>().join(", ")) } } } } }
            (more(devices.len(), "devices.csv"))
        }
    }
}

/// The findings over time, one series per signature of `sids`.
fn timeline_section(m: &Model, sids: &[u64]) -> Markup {
    let tl_series: Vec<(&str, &str)> = sids.iter().map(|s| (sig_color(*s), sig_short(*s))).collect();
    let tl_bars: Vec<Vec<u64>> = m.timeline.iter().map(|b| sids.iter().map(|s| b.get(s).copied().unwrap_or(0)).collect()).collect();
    html! {
        section id="timeline" {
            h2 { "Timeline of findings" }
            (stacked(m, &tl_bars, &tl_series, "findings over time"))
        }
    }
}

/// The proposed bypass-list entries and block candidates, and what was not
/// proposed.
fn actions_section(p: &Proposals) -> Markup {
    html! {
        section id="actions" {
            h2 { "Actions for the network team" }
            p { "Proposed from the sessions above; review each before applying. Files in " code { "actions/" } ": Squid (" code { "squid-*.conf" } "), HAProxy maps (" code { "haproxy-*.map" } "), nginx maps (" code { "nginx-*.map" } "), Palo Alto EDL URL lists, Zscaler URL-category CSV, Fortinet threat-feed domain lists; see docs/report.md." }
            @for action in [Action::Bypass, Action::Block] {
                @let list: Vec<_> = p.entries.iter().filter(|e| e.action == action).collect();
                h3 { @match action { Action::Bypass => "Bypass-list entries (apps whose pinning is approved)", Action::Block => "Block candidates (pinning not approved)" } " — " span data-k=(format!("actions-{}", action.word())) { (list.len()) } }
                @if list.is_empty() { p.muted { @match action { Action::Bypass => "None: no app in the input has its pinning approved (set pinning_approved in the baselines file, --approved-baselines).", Action::Block => "None." } } }
                @else { table { thead { tr { th { "entry" } th { "registrable domain" } th { "apps" } th.n { "sessions" } th { "why" } } }
                    tbody { @for e in list.iter().take(MAX_ROWS) { tr { td.mono data-k=(format!("entry-{}", action.word())) { (e.entry) } td { (e.registrable_domain) } td { (e.apps.iter().cloned().collect::<Vec<_>>().join(", ")) } td.n { (e.sessions) } td { (e.why) } } } } } }
            }
            @if !p.addresses.is_empty() { p { (p.addresses.len()) " destination(s) had no server name (address only): see " code { "actions/addresses.csv" } "." } }
            @if !p.conflicts.is_empty() { p { "Not proposed for blocking because an approved app needs them: " (p.conflicts.join(", ")) } }
            @if !p.refused_wildcards.is_empty() { p { "Wildcards refused (a public suffix): " (p.refused_wildcards.join(", ")) } }
        }
    }
}

/// How to read the page.
fn notes_section() -> Markup {
    html! {
        section id="notes" {
            h2 { "How to read this page" }
            p { "Every figure is a count of EVE records (" code { "tls" } " and " code { "quic" } " sessions, " code { "alert" } " findings, " code { "stats" } "). A session counts as " b { "seen by the inspector" } " when its path is intercepted or through the explicit proxy (unless the proxy passed it through); as " b { "escaped" } " when it went direct, by the bypass list, to a tunnel endpoint or through the proxy untouched. Sessions whose path the capture could not tell are shown apart and never guessed. Learned baselines for review: " code { "baselines.json" } " (docs/report.md)." }
        }
    }
}
