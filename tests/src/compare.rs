//! Matching oracle streams to our `tls` records, and the per-field comparison.
//!
//! ## Matching (TLS over TCP)
//! `transport == tcp` oracle rows (and TCP rows from inside UDP tunnels) are
//! compared with our `tls` records; QUIC rows separately (below); gQUIC and
//! TLS-over-plain-UDP rows are counted as out of scope. Rows are grouped by
//! tshark's `tcp.stream`. A
//! stream's client is the source of its first ClientHello row (else the
//! destination of its first ServerHello row). It is matched to the unused
//! record of ours with the same (client, server) whose flow
//! `[start, end]` (±2 s) contains the stream's first hello, nearest start
//! first; failing that, the same with client and server swapped (then the
//! `direction` field disagrees). Within a stream, the k-th ClientHello row is
//! compared with `handshake.client_hellos[k]`, the last ServerHello row
//! (after a HelloRetryRequest, the real one) with the `tls` fields.
//!
//! ## Matching (QUIC)
//! `transport == quic` rows with a ClientHello or ServerHello (tshark
//! decrypted the Initial) are grouped by `udp.stream`; the client is the
//! sender of the first ClientHello. A stream is matched to the unused `quic`
//! record of ours with the same (client, server), by time as above. The k-th
//! ClientHello row is compared with `handshake.client_hellos[k]` (and the
//! first also with the top-level `quic.sni` / `quic.ja3` /
//! `handshake.client_alpns`, which must say the same), the stream's first
//! ClientHello row's `quic_version` with `quic.version`, the last ServerHello
//! row with `handshake.cipher_suite` + `handshake.negotiated_version`, and
//! FoxIO rust ja4's `transport: udp` entry of the stream (same `stream` and
//! endpoints) with `quic.ja4`. Rust ja4 picks the JA4 protocol letter from
//! the presence of extension 57 (quic_transport_parameters, RFC 9001), so a
//! ClientHello carrying only the draft code point 0xffa5 (drafts, gQUIC
//! T05x) gets `t`; JA4.md says `q` for any QUIC, so for those the letter is
//! taken as `q` (counted in the summary) and the rest is compared as is.
//! gQUIC rows (transport `gquic`, or a `quic` row with a CHLO SNI and no TLS
//! hello: Q0xx crypto) are out of scope.
//!
//! ## Counting
//! A field is compared only where both sides exist: a missing record counts
//! once, under `session`; a missing ClientHello under `client_hello_count`;
//! a missing certificate under `cert_sha256`, and the other certificate
//! fields are compared only for certificates whose SHA-256 agrees. So each
//! row of the table measures one thing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use serde_json::Value;

use crate::eve::{get, str_list, Session};
use crate::known;
use crate::oracle::{dn_pairs_string, normalize_serial, parse_rfc4514, parse_suricata_dn, version_name, CertRow, Ja4rsRec, TsharkRow};

/// The compared fields, in table order, with what each compares.
pub const FIELDS: &[(&str, &str)] = &[
    ("session", "tshark TCP stream with a hello -> one tls record of ours"),
    ("our_session", "tls record of ours with a hello/cert/alert -> a tshark TCP stream"),
    ("direction", "client/server the same way round (client = ClientHello sender)"),
    ("client_hello_count", "ClientHellos in the stream vs handshake.client_hellos"),
    ("sni", "client_hellos[k].sni vs tshark sni"),
    ("ja3", "client_hellos[k].ja3.hash vs tshark ja3"),
    ("client_alpn", "client_hellos[k].alpn vs tshark alpn (ClientHello row)"),
    ("ja4", "tls.ja4 vs FoxIO rust ja4 (ja4rs.json, tcp)"),
    ("version", "tls.version vs ServerHello selected/legacy version (UNDETERMINED without one)"),
    ("ja3s", "tls.ja3s.hash vs tshark ja3s"),
    ("cipher", "handshake.cipher_suite vs tshark sh_cipher"),
    ("server_alpn", "tls.server_alpns vs tshark alpn (ServerHello row)"),
    ("alert", "handshake.alerts (from, level:description | encrypted) vs tshark alerts"),
    ("chain_len", "len(handshake.chain) vs certificates in the server's first Certificate message"),
    ("cert_sha256", "handshake.chain[i].sha256 vs certs.tsv sha256"),
    ("cert_serial", "handshake.chain[i].serial vs certs.tsv serial (hex, normalised)"),
    ("cert_subject", "handshake.chain[i].subject vs certs.tsv subject (as attribute sets)"),
    ("cert_issuer", "handshake.chain[i].issuerdn vs certs.tsv issuer (as attribute sets)"),
    ("cert_validity", "handshake.chain[i].notbefore/notafter vs certs.tsv not_before/not_after"),
    ("cert_san", "handshake.chain[i].subjectaltname (DNS names only: IP and `Type(...)` entries dropped) vs certs.tsv san_dns (as sets)"),
    ("client_cert_count", "handshake.client_certificates vs certificates sent by the client"),
    ("quic_session", "tshark QUIC stream (decrypted Initial hello) -> one quic record of ours, client = Initial sender"),
    ("quic_our_session", "quic record of ours with a ClientHello -> a tshark QUIC stream"),
    ("quic_client_hello_count", "ClientHellos in the QUIC stream vs handshake.client_hellos"),
    ("quic_sni", "client_hellos[k].sni (and quic.sni for k=0) vs tshark sni"),
    ("quic_ja3", "client_hellos[k].ja3.hash (and quic.ja3.hash for k=0) vs tshark ja3"),
    ("quic_alpn", "client_hellos[k].alpn (and handshake.client_alpns for k=0) vs tshark alpn"),
    ("quic_version", "quic.version vs tshark quic_version of the first ClientHello packet (Suricata form: 0x00000001 -> \"1\", 0xff00001d -> \"ff00001d\", 0x6b3343cf -> \"v2\")"),
    ("quic_ja4", "quic.ja4 vs FoxIO rust ja4 (ja4rs.json, udp entry of the stream)"),
    ("quic_server_hello", "handshake.cipher_suite + negotiated_version vs the ServerHello row's sh_cipher + selected version"),
];

/// Certificates we log per chain (docs/output.md: chain cap 10).
pub const CHAIN_CAP: usize = 10;
/// ClientHellos we log per connection (docs/output.md: cap 4).
pub const CLIENT_HELLO_CAP: usize = 4;

#[derive(Debug, Clone)]
pub struct Disagreement {
    pub capture: String,
    pub frame: Option<u64>,
    pub stream: Option<u64>,
    pub field: &'static str,
    pub oracle: String,
    pub ours: String,
    /// Set when the disagreement is in the known-differences table.
    pub known: Option<&'static str>,
    pub context: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub compared: u64,
    pub agreed: u64,
    /// Disagreements explained in the known-differences table.
    pub known: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.compared += o.compared;
        self.agreed += o.agreed;
        self.known += o.known;
    }
    /// Agreement in percent over the comparisons that are not known
    /// differences; `None` when there are none (every comparison a known
    /// difference, or nothing compared): no figure, rather than 100%.
    pub fn percent(&self) -> Option<f64> {
        let n = self.compared - self.known;
        (n > 0).then(|| 100.0 * self.agreed as f64 / n as f64)
    }
    pub fn unexplained(&self) -> u64 {
        self.compared - self.agreed - self.known
    }
}

#[derive(Debug, Clone, Default)]
pub struct CaptureReport {
    /// Oracle name (unique per distinct capture content).
    pub capture: String,
    pub rel: String,
    pub tallies: BTreeMap<&'static str, Tally>,
    pub disagreements: Vec<Disagreement>,
    /// Oracle rows of IETF QUIC (transport quic with a TLS hello): compared.
    pub quic_rows: usize,
    /// Oracle rows of Google QUIC with its own crypto (transport gquic, or
    /// quic with a CHLO SNI and no TLS hello): out of scope, not decoded.
    pub gquic_rows: usize,
    /// QUIC streams of the oracle with a hello.
    pub oracle_quic_streams: usize,
    /// Our `quic` records.
    pub our_quic_sessions: usize,
    /// Our `quic` records with no ClientHello that no oracle stream claimed
    /// (nothing decrypted on either side): not compared.
    pub our_quic_no_hello: usize,
    /// Rust ja4 `t`-lettered JA4s of QUIC ClientHellos without extension 57,
    /// compared as `q` (see the module docs).
    pub ja4_quic_letter_normalised: usize,
    /// Oracle rows of TLS over plain UDP (OpenVPN-UDP, RDP-UDP): out of scope.
    pub udp_rows: usize,
    /// Oracle rows of TCP inside a UDP tunnel (GTP-U, GENEVE, VXLAN, CAPWAP),
    /// re-attached to their TCP connection and compared.
    pub tunnel_rows: usize,
    /// Records of ours with application data only (mid-stream), which the
    /// oracle's frame filter cannot show: not compared.
    pub our_data_only: usize,
    pub oracle_streams: usize,
    pub our_sessions: usize,
    /// Certificates the oracle could not parse (`PARSE_ERROR` in certs.tsv):
    /// only their SHA-256 is compared.
    pub skipped_oracle_parse_errors: usize,
}

impl CaptureReport {
    #[allow(clippy::too_many_arguments)]
    fn check(
        &mut self,
        field: &'static str,
        frame: Option<u64>,
        stream: Option<u64>,
        oracle: String,
        ours: String,
        agree: bool,
        ctx: impl FnOnce() -> String,
    ) {
        let t = self.tallies.entry(field).or_default();
        t.compared += 1;
        if agree {
            t.agreed += 1;
            return;
        }
        let k = known::lookup(&self.capture, field, frame, &ours);
        if k.is_some() {
            t.known += 1;
        }
        self.disagreements.push(Disagreement {
            capture: self.capture.clone(),
            frame,
            stream,
            field,
            oracle,
            ours,
            known: k,
            context: ctx(),
        });
    }

    fn eq(
        &mut self,
        field: &'static str,
        frame: Option<u64>,
        stream: Option<u64>,
        oracle: String,
        ours: String,
        ctx: impl FnOnce() -> String,
    ) {
        let agree = oracle == ours;
        self.check(field, frame, stream, oracle, ours, agree, ctx);
    }
}

/// What the oracle files of one capture hold.
#[derive(Debug, Default)]
pub struct Oracle {
    pub rows: Vec<TsharkRow>,
    pub ja4rs: Vec<Ja4rsRec>,
    pub certs: Vec<CertRow>,
}

struct Stream<'a> {
    id: u64,
    rows: Vec<&'a TsharkRow>,
    client: SocketAddr,
    server: SocketAddr,
    has_hello: bool,
    t0: f64,
}

/// Group oracle rows by stream; client and server come from the stream's
/// ClientHello (else its ServerHello, else its first row).
fn oracle_streams<'a>(rows: impl Iterator<Item = &'a TsharkRow>) -> Vec<Stream<'a>> {
    let mut by_stream: BTreeMap<u64, Vec<&TsharkRow>> = BTreeMap::new();
    for r in rows {
        by_stream.entry(r.stream).or_default().push(r);
    }
    let mut streams = Vec::new();
    for (id, rows) in by_stream {
        let ch = rows.iter().find(|r| r.is_client_hello());
        let sh = rows.iter().find(|r| r.is_server_hello());
        let (client, server, has_hello, t0) = match (ch, sh) {
            (Some(c), _) => (c.src, c.dst, true, c.time),
            (None, Some(s)) => (s.dst, s.src, true, s.time),
            (None, None) => (rows[0].src, rows[0].dst, false, rows[0].time),
        };
        let (Some(client), Some(server)) = (client, server) else { continue };
        streams.push(Stream { id, rows, client, server, has_hello, t0 });
    }
    streams
}

fn opt_str(v: Option<&Value>) -> String {
    v.and_then(|x| x.as_str()).unwrap_or("").to_string()
}

fn absent() -> String {
    "<absent>".to_string()
}

/// Pick the record of ours for one oracle stream.
fn pick(
    sessions: &[Session],
    used: &HashSet<usize>,
    by_key: &HashMap<(SocketAddr, SocketAddr), Vec<usize>>,
    c: SocketAddr,
    s: SocketAddr,
    t0: f64,
) -> Option<usize> {
    let cands = by_key.get(&(c, s))?;
    let free = cands.iter().copied().filter(|i| !used.contains(i));
    let inside = free.clone().filter(|&i| sessions[i].start - 2.0 <= t0 && t0 <= sessions[i].end + 2.0);
    let nearest =
        |it: &mut dyn Iterator<Item = usize>| it.min_by(|&a, &b| (sessions[a].start - t0).abs().total_cmp(&(sessions[b].start - t0).abs()));
    nearest(&mut inside.into_iter()).or_else(|| nearest(&mut free.filter(|&i| (sessions[i].start - t0).abs() < 120.0)))
}

fn alert_token(from: &str, a: &str) -> String {
    if a == "encrypted_alert" {
        format!("{from}:encrypted")
    } else {
        format!("{from}:{a}")
    }
}

fn our_alert_token(a: &Value) -> String {
    let from = a.get("from").and_then(|x| x.as_str()).unwrap_or("?");
    if a.get("encrypted").and_then(|x| x.as_bool()).unwrap_or(false) {
        format!("{from}:encrypted")
    } else {
        let level = a.get("level").and_then(|x| x.as_str()).unwrap_or("?");
        let desc = a
            .get("description")
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .or_else(|| a.get("code").map(|c| c.to_string()))
            .unwrap_or_else(|| "?".into());
        format!("{from}:{level}:{desc}")
    }
}

/// A subjectAltName entry of ours that is a DNS name (not an IP address,
/// not `DirectoryName(...)`, `URI(...)`, `Email(...)` and the like).
fn is_dns_san(x: &str) -> bool {
    let typed = x.ends_with(')') && x.find('(').is_some_and(|i| i > 0 && x[..i].bytes().all(|c| c.is_ascii_alphanumeric()));
    !typed && x.parse::<std::net::IpAddr>().is_err()
}

fn first19(s: &str) -> &str {
    s.get(..19).unwrap_or(s)
}

/// UDP ports of the tunnels that carry TCP (GTP-U, GENEVE, VXLAN, CAPWAP
/// data). tshark writes such a row as `transport=udp` with the inner IP
/// addresses but the outer UDP ports, so it has to be re-attached to its TCP
/// connection.
pub const TUNNEL_UDP_PORTS: &[u16] = &[2152, 6081, 4789, 5247];

fn is_tunnel_row(r: &TsharkRow) -> bool {
    r.transport == "udp" && [r.src, r.dst].iter().flatten().any(|a| TUNNEL_UDP_PORTS.contains(&a.port()))
}

/// A tunnelled row, re-attached: the (client, server) of a record of ours
/// with a record of the same direction within 2 ms of the row's time. Rows
/// with the same timestamp are told apart by preferring a record not yet
/// claimed by another row, then one whose JA3 (ClientHello rows) or JA3S
/// (ServerHello rows) is the row's.
fn attach_tunnel_row(r: &TsharkRow, sessions: &[Session], claimed: &mut HashSet<(usize, bool)>) -> Option<(SocketAddr, SocketAddr)> {
    let (src, dst) = (r.src?.ip(), r.dst?.ip());
    let mut cands: Vec<(usize, bool)> = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let from_client = if s.client.ip() == src && s.server.ip() == dst {
            true
        } else if s.server.ip() == src && s.client.ip() == dst {
            false
        } else {
            continue;
        };
        let dir = if from_client { "client" } else { "server" };
        let recs = get(&s.v, &["handshake", "records"]).and_then(|x| x.as_array()).map(Vec::as_slice).unwrap_or(&[]);
        let hit = recs.iter().any(|x| {
            x.get("dir").and_then(|d| d.as_str()) == Some(dir)
                && x.get("ts_offset_ms").and_then(|t| t.as_f64()).is_some_and(|t| (s.start + t / 1000.0 - r.time).abs() < 0.002)
        });
        if hit {
            cands.push((i, from_client));
        }
    }
    let fp_match = |&(i, from_client): &(usize, bool)| {
        let s = &sessions[i];
        if from_client {
            !r.ja3.is_empty() && s.client_hellos().iter().any(|h| get(h, &["ja3", "hash"]).and_then(|x| x.as_str()) == Some(r.ja3.as_str()))
        } else {
            !r.ja3s.is_empty() && s.str_at(&["tls", "ja3s", "hash"]).as_deref() == Some(r.ja3s.as_str())
        }
    };
    let free: Vec<(usize, bool)> = cands.iter().copied().filter(|c| !claimed.contains(c)).collect();
    let pool = if free.is_empty() { &cands } else { &free };
    let best = pool.iter().copied().find(fp_match).or_else(|| pool.first().copied())?;
    claimed.insert(best);
    let s = &sessions[best.0];
    Some(if best.1 { (s.client, s.server) } else { (s.server, s.client) })
}

/// Does a record of ours hold anything the oracle's frame filter selects
/// (a hello, a certificate, an alert)? Records of mid-stream application
/// data only have no counterpart in the tshark rows.
fn comparable(s: &Session) -> bool {
    !s.client_hellos().is_empty()
        || s.str_at(&["tls", "version"]).is_some_and(|v| v != "UNDETERMINED")
        || !s.chain().is_empty()
        || !s.alerts().is_empty()
}

/// A row of Google QUIC with its own crypto (CHLO tags), which we do not
/// decode: tshark's `gquic` rows, and `quic` rows (Q050 has the IETF
/// long-header invariants, so tshark's quic dissector takes it) that carry
/// a CHLO SNI and no TLS hello.
pub fn is_gquic_row(r: &TsharkRow) -> bool {
    r.transport == "gquic" || (r.transport == "quic" && !r.is_client_hello() && !r.is_server_hello() && !r.gquic_sni.is_empty())
}

/// Compare one capture's records (`tls` in `sessions`, `quic` in `quic`)
/// with its oracle.
pub fn compare_capture(capture: &str, rel: &str, oracle: &Oracle, sessions: &[Session], quic: &[Session]) -> CaptureReport {
    let mut rep = CaptureReport {
        capture: capture.to_string(),
        rel: rel.to_string(),
        our_sessions: sessions.len(),
        our_quic_sessions: quic.len(),
        ..Default::default()
    };

    // TCP rows, with tunnelled TCP rows re-attached to their connection.
    let (mut tcp_rows, tunnelled, quic_rows) = split_rows(&mut rep, oracle);
    rep.quic_rows = quic_rows.len();
    compare_quic(&mut rep, &quic_rows, &oracle.ja4rs, quic);
    attach_tunnelled(&mut rep, tunnelled, sessions, &mut tcp_rows);
    tcp_rows.sort_by_key(|r| r.frame);

    // Oracle TCP streams.
    let mut streams = oracle_streams(tcp_rows.iter());
    rep.oracle_streams = streams.iter().filter(|s| s.has_hello).count();

    let mut by_key: HashMap<(SocketAddr, SocketAddr), Vec<usize>> = HashMap::new();
    for (i, s) in sessions.iter().enumerate() {
        by_key.entry((s.client, s.server)).or_default().push(i);
    }
    let mut used = HashSet::new();
    let mut stream_session: HashMap<u64, usize> = HashMap::new();

    // Hello streams first (in time order), then the rest only to claim records.
    streams.sort_by(|a, b| (!a.has_hello, a.t0).partial_cmp(&(!b.has_hello, b.t0)).unwrap_or(std::cmp::Ordering::Equal));
    let frame_stream: HashMap<u64, u64> = tcp_rows.iter().map(|r| (r.frame, r.stream)).collect();
    let mut certs_by_frame: BTreeMap<u64, Vec<&CertRow>> = BTreeMap::new();
    for c in &oracle.certs {
        certs_by_frame.entry(c.frame).or_default().push(c);
    }

    for st in &streams {
        let straight = pick(sessions, &used, &by_key, st.client, st.server, st.t0);
        let (found, reversed) = match straight {
            Some(i) => (Some(i), false),
            None => (pick(sessions, &used, &by_key, st.server, st.client, st.t0), true),
        };
        if let Some(i) = found {
            used.insert(i);
            stream_session.insert(st.id, i);
        }
        if !st.has_hello {
            continue;
        }
        let Some(ours) = compare_stream_session(&mut rep, st, sessions, &by_key, found, reversed) else { continue };
        let sid = Some(st.id);
        compare_hellos(&mut rep, st, ours, sid);
        compare_alerts(&mut rep, st, ours, sid);
        compare_server_chain(&mut rep, st, ours, sid, &certs_by_frame, &frame_stream);
        // Client certificates: what the client sent in Certificate messages.
        let client_certs: u32 =
            st.rows.iter().filter(|r| r.src == Some(st.client) && r.has_msg("certificate")).map(|r| r.n_certs.iter().sum::<u32>()).sum();
        let ours_cc = get(&ours.v, &["handshake", "client_certificates"]).and_then(|x| x.as_u64()).unwrap_or(0);
        if client_certs > 0 || ours_cc > 0 {
            let fr = st.rows.iter().find(|r| r.src == Some(st.client) && r.has_msg("certificate")).map(|r| r.frame);
            rep.eq("client_cert_count", fr, sid, client_certs.to_string(), ours_cc.to_string(), || ours.label());
        }
    }
    compare_tcp_ja4(&mut rep, oracle, sessions, &by_key, &stream_session, &tcp_rows, &streams);
    compare_unclaimed(&mut rep, sessions, &used);
    rep
}

/// Sort the oracle's rows: TCP rows, tunnelled TCP rows (to re-attach) and
/// QUIC rows; Google QUIC and other UDP rows are only counted.
fn split_rows<'o>(rep: &mut CaptureReport, oracle: &'o Oracle) -> (Vec<TsharkRow>, Vec<TsharkRow>, Vec<&'o TsharkRow>) {
    let mut tcp_rows: Vec<TsharkRow> = Vec::new();
    let mut tunnelled: Vec<TsharkRow> = Vec::new();
    let mut quic_rows: Vec<&TsharkRow> = Vec::new();
    for r in &oracle.rows {
        if r.is_tcp() {
            tcp_rows.push(r.clone());
        } else if is_tunnel_row(r) {
            tunnelled.push(r.clone());
        } else if is_gquic_row(r) {
            rep.gquic_rows += 1;
        } else if r.transport == "quic" {
            quic_rows.push(r);
        } else {
            rep.udp_rows += 1;
        }
    }
    (tcp_rows, tunnelled, quic_rows)
}

/// Re-attach tunnelled TCP rows to their connection: the stream of the TCP
/// rows with the endpoints of the record they belong to, else a synthetic one.
fn attach_tunnelled(rep: &mut CaptureReport, tunnelled: Vec<TsharkRow>, sessions: &[Session], tcp_rows: &mut Vec<TsharkRow>) {
    let mut next_synthetic = 1u64 << 40;
    let mut claimed = HashSet::new();
    for mut r in tunnelled {
        rep.tunnel_rows += 1;
        match attach_tunnel_row(&r, sessions, &mut claimed) {
            Some((src, dst)) => {
                let existing =
                    tcp_rows.iter().find(|t| (t.src, t.dst) == (Some(src), Some(dst)) || (t.src, t.dst) == (Some(dst), Some(src)));
                r.stream = match existing {
                    Some(t) => t.stream,
                    None => {
                        next_synthetic += 1;
                        next_synthetic
                    }
                };
                r.src = Some(src);
                r.dst = Some(dst);
            }
            None => {
                next_synthetic += 1;
                r.stream = next_synthetic;
            }
        }
        r.transport = "tcp".into();
        tcp_rows.push(r);
    }
}

/// Whether an oracle stream with a hello has a record of ours (`found`;
/// `reversed`: with client and server swapped), and in which direction.
/// Returns the record.
fn compare_stream_session<'s>(
    rep: &mut CaptureReport,
    st: &Stream<'_>,
    sessions: &'s [Session],
    by_key: &HashMap<(SocketAddr, SocketAddr), Vec<usize>>,
    found: Option<usize>,
    reversed: bool,
) -> Option<&'s Session> {
    let first_frame = st.rows.first().map(|r| r.frame);
    let sid = Some(st.id);
    let label = format!("{} -> {}", st.client, st.server);
    let missing = || {
        // Say so when a record with the same endpoints exists but its
        // flow times do not cover the stream.
        let others: Vec<String> = [(st.client, st.server), (st.server, st.client)]
            .iter()
            .filter_map(|k| by_key.get(k))
            .flatten()
            .map(|&i| format!("{} .. {:.6}", sessions[i].label(), sessions[i].end))
            .collect();
        if others.is_empty() {
            absent()
        } else {
            format!("<no record at t={:.6}; same endpoints: {}>", st.t0, others.join(" | "))
        }
    };
    rep.check(
        "session",
        first_frame,
        sid,
        label.clone(),
        found.map(|i| sessions[i].label()).unwrap_or_else(missing),
        found.is_some(),
        String::new,
    );
    let ours = &sessions[found?];
    let ctx = || ours.label();
    rep.eq(
        "direction",
        first_frame,
        sid,
        label,
        if reversed { format!("{} -> {}", ours.client, ours.server) } else { format!("{} -> {}", st.client, st.server) },
        ctx,
    );

    Some(ours)
}

/// The stream's ClientHellos (SNI, JA3, ALPN) and ServerHello (version,
/// JA3S, cipher, ALPN; without one, the version the client's hello names).
fn compare_hellos(rep: &mut CaptureReport, st: &Stream<'_>, ours: &Session, sid: Option<u64>) {
    let ctx = || ours.label();
    // ClientHellos.
    // Hellos in the direction they belong to (an SSLv2 CLIENT-MASTER-KEY,
    // message type 2, shows up as a `server_hello` row from the client).
    let chs: Vec<&&TsharkRow> = st.rows.iter().filter(|r| r.is_client_hello() && r.src == Some(st.client)).collect();
    let our_chs = ours.client_hellos();
    if !chs.is_empty() {
        let agree = our_chs.len() == chs.len() || (chs.len() > CLIENT_HELLO_CAP && our_chs.len() == CLIENT_HELLO_CAP);
        let frames = chs.iter().map(|r| r.frame.to_string()).collect::<Vec<_>>().join(",");
        rep.check(
            "client_hello_count",
            chs.first().map(|r| r.frame),
            sid,
            format!("{} (frames {frames})", chs.len()),
            our_chs.len().to_string(),
            agree,
            ctx,
        );
    }
    for (k, ch) in chs.iter().enumerate() {
        let Some(o) = our_chs.get(k) else { break };
        let f = Some(ch.frame);
        rep.eq("sni", f, sid, ch.sni.clone(), opt_str(o.get("sni")), ctx);
        let our_ja3 = opt_str(get(o, &["ja3", "hash"]));
        let our_ja3s = opt_str(get(o, &["ja3", "string"]));
        rep.eq("ja3", f, sid, ch.ja3.clone(), our_ja3, || format!("{} oracle={} ours={}", ours.label(), ch.ja3_full, our_ja3s));
        rep.eq("client_alpn", f, sid, ch.alpn.join(","), str_list(o.get("alpn")).join(","), ctx);
    }

    // ServerHello.
    let sh = st.rows.iter().rev().find(|r| r.is_server_hello() && r.src == Some(st.server));
    let our_version = ours.str_at(&["tls", "version"]).unwrap_or_default();
    match sh {
        Some(sh) => {
            let f = Some(sh.frame);
            let v = sh
                .sh_selected_version
                .last()
                .filter(|x| !x.is_empty())
                .or(sh.hs_legacy_version.last())
                .map(|x| version_name(x))
                .unwrap_or_default();
            rep.eq("version", f, sid, v, our_version, ctx);
            let ja3s = opt_str(get(&ours.v, &["tls", "ja3s", "hash"]));
            let ja3s_s = opt_str(get(&ours.v, &["tls", "ja3s", "string"]));
            rep.eq("ja3s", f, sid, sh.ja3s.clone(), ja3s, || format!("{} oracle={} ours={}", ours.label(), sh.ja3s_full, ja3s_s));
            let cipher = sh.sh_cipher.last().cloned().unwrap_or_default().to_lowercase();
            rep.eq("cipher", f, sid, cipher, opt_str(get(&ours.v, &["handshake", "cipher_suite"])).to_lowercase(), ctx);
            rep.eq("server_alpn", f, sid, sh.alpn.join(","), str_list(get(&ours.v, &["tls", "server_alpns"])).join(","), ctx);
        }
        None => {
            // No ServerHello: the client hello's legacy_version, SSLv2 for
            // an SSLv2-format hello, UNDETERMINED without a hello
            // (docs/output.md; Suricata does the same, see
            // tests/tests/suricata_verify.rs).
            let sslv2 = chs.first().is_some_and(|r| r.record_versions.first().map(String::as_str) == Some("0x0002"));
            let v = if sslv2 {
                "SSLv2".to_string()
            } else {
                chs.first().and_then(|r| r.hs_legacy_version.first()).map(|x| version_name(x)).unwrap_or_else(|| "UNDETERMINED".into())
            };
            rep.eq("version", chs.first().map(|r| r.frame), sid, v, our_version, ctx)
        }
    }
}

/// The stream's alerts, in order, as a multiset.
fn compare_alerts(rep: &mut CaptureReport, st: &Stream<'_>, ours: &Session, sid: Option<u64>) {
    // Alerts, in order, as a multiset.
    let mut our_alerts: Vec<(String, bool)> = ours.alerts().iter().map(|a| (our_alert_token(a), false)).collect();
    let rec_ctx = || {
        format!(
            "{} records c/s={}/{} history={}",
            ours.label(),
            get(&ours.v, &["handshake", "client", "records"]).map(|x| x.to_string()).unwrap_or_default(),
            get(&ours.v, &["handshake", "server", "records"]).map(|x| x.to_string()).unwrap_or_default(),
            opt_str(get(&ours.v, &["handshake", "history"]))
        )
    };
    for r in st.rows.iter().filter(|r| !r.alerts.is_empty()) {
        let from = if r.src == Some(st.client) { "client" } else { "server" };
        for a in &r.alerts {
            let tok = alert_token(from, a);
            let hit = our_alerts.iter_mut().find(|(t, u)| !*u && *t == tok);
            let agree = match hit {
                Some(h) => {
                    h.1 = true;
                    true
                }
                None => false,
            };
            let rest = our_alerts.iter().filter(|(_, u)| !*u).map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(",");
            rep.check(
                "alert",
                Some(r.frame),
                sid,
                tok,
                if rest.is_empty() { "<none>".into() } else { format!("<not matched; unmatched ours: {rest}>") },
                agree,
                rec_ctx,
            );
        }
    }
    let extra: Vec<String> = our_alerts.iter().filter(|(_, u)| !*u).map(|(t, _)| t.clone()).collect();
    for t in extra {
        rep.check("alert", None, sid, "<none>".into(), t, false, rec_ctx);
    }
}

/// The server's chain: the first Certificate message of the stream from the
/// server, certificate by certificate.
fn compare_server_chain(
    rep: &mut CaptureReport,
    st: &Stream<'_>,
    ours: &Session,
    sid: Option<u64>,
    certs_by_frame: &BTreeMap<u64, Vec<&CertRow>>,
    frame_stream: &HashMap<u64, u64>,
) {
    let ctx = || ours.label();
    // Certificates: the server's first Certificate message of this stream.
    let stream_frames: Vec<u64> = certs_by_frame.keys().copied().filter(|f| frame_stream.get(f) == Some(&st.id)).collect();
    let server_frame = stream_frames.iter().copied().find(|f| certs_by_frame[f].first().and_then(|c| c.src) == Some(st.server));
    if let Some(fr) = server_frame {
        let mut rows = certs_by_frame[&fr].clone();
        rows.sort_by_key(|c| c.chain_idx);
        let chain = ours.chain();
        let f = Some(fr);
        let agree = chain.len() == rows.len() || (rows.len() > CHAIN_CAP && chain.len() == CHAIN_CAP);
        rep.check("chain_len", f, sid, rows.len().to_string(), chain.len().to_string(), agree, ctx);
        for c in rows.iter().take(CHAIN_CAP) {
            let Some(o) = chain.get(c.chain_idx) else {
                rep.check("cert_sha256", f, sid, format!("[{}] {}", c.chain_idx, c.sha256), absent(), false, ctx);
                continue;
            };
            let our_sha = opt_str(o.get("sha256")).to_lowercase();
            let same = our_sha == c.sha256;
            rep.check(
                "cert_sha256",
                f,
                sid,
                format!("[{}] {}", c.chain_idx, c.sha256),
                format!("[{}] {}", c.chain_idx, our_sha),
                same,
                ctx,
            );
            if !same {
                continue;
            }
            let cctx = || format!("{} chain[{}]", ours.label(), c.chain_idx);
            if c.subject.starts_with("PARSE_ERROR") {
                // python `cryptography` refused this certificate: the
                // oracle has its hash and nothing else.
                rep.skipped_oracle_parse_errors += 1;
                continue;
            }
            let (a, b) = (normalize_serial(&c.serial), normalize_serial(&opt_str(o.get("serial"))));
            let agree = a == b;
            rep.check("cert_serial", f, sid, c.serial.clone(), opt_str(o.get("serial")), agree, cctx);
            for (field, odn, key) in [("cert_subject", &c.subject, "subject"), ("cert_issuer", &c.issuer, "issuerdn")] {
                let ours_dn = opt_str(o.get(key));
                let (a, b) = (parse_rfc4514(odn), parse_suricata_dn(&ours_dn));
                let agree = a == b;
                rep.check(field, f, sid, odn.clone(), ours_dn, agree, || {
                    format!("{} oracle_set=[{}] ours_set=[{}]", cctx(), dn_pairs_string(&a), dn_pairs_string(&b))
                });
            }
            let ov = format!("{}/{}", first19(&c.not_before), first19(&c.not_after));
            let uv = format!("{}/{}", first19(&opt_str(o.get("notbefore"))), first19(&opt_str(o.get("notafter"))));
            rep.eq("cert_validity", f, sid, ov, uv, cctx);
            let mut a = c.san_dns.clone();
            a.sort();
            a.dedup();
            // The oracle lists DNS names only; we also log IP addresses
            // (plain) and other name types as `Type(value)`.
            let mut b: Vec<String> = str_list(o.get("subjectaltname")).into_iter().filter(|x| is_dns_san(x)).collect();
            b.sort();
            b.dedup();
            rep.eq("cert_san", f, sid, a.join(";"), b.join(";"), cctx);
        }
    }
}

/// JA4 (FoxIO rust ja4), TCP streams only.
fn compare_tcp_ja4(
    rep: &mut CaptureReport,
    oracle: &Oracle,
    sessions: &[Session],
    by_key: &HashMap<(SocketAddr, SocketAddr), Vec<usize>>,
    stream_session: &HashMap<u64, usize>,
    tcp_rows: &[TsharkRow],
    streams: &[Stream<'_>],
) {
    for j in oracle.ja4rs.iter().filter(|j| j.transport == "tcp") {
        let Some(ja4) = &j.ja4 else { continue };
        let sid = Some(j.stream);
        let idx = stream_session.get(&j.stream).copied().or_else(|| {
            let (c, s) = (j.src?, j.dst?);
            by_key.get(&(c, s)).and_then(|v| v.first().copied())
        });
        match idx {
            Some(i) => {
                let ours = &sessions[i];
                let frame = tcp_rows.iter().find(|r| r.stream == j.stream && r.is_client_hello()).map(|r| r.frame);
                rep.eq("ja4", frame, sid, ja4.clone(), ours.str_at(&["tls", "ja4"]).unwrap_or_default(), || ours.label());
            }
            None => {
                // Already counted under `session` when the tsv has the stream.
                let in_tsv = streams.iter().any(|s| s.id == j.stream && s.has_hello);
                if !in_tsv {
                    let l = format!("{:?} -> {:?}", j.src, j.dst);
                    rep.check("ja4", None, sid, ja4.clone(), "<no session>".into(), false, || l);
                }
            }
        }
    }
}

/// Records of ours that no oracle stream claimed.
fn compare_unclaimed(rep: &mut CaptureReport, sessions: &[Session], used: &HashSet<usize>) {
    for (i, s) in sessions.iter().enumerate() {
        let matched = used.contains(&i);
        if !matched && !comparable(s) {
            rep.our_data_only += 1;
            continue;
        }
        rep.check("our_session", None, None, if matched { s.label() } else { "<no tshark TLS stream>".into() }, s.label(), matched, || {
            format!(
                "sni={} version={} history={} midstream={}",
                s.str_at(&["tls", "sni"]).unwrap_or_default(),
                s.str_at(&["tls", "version"]).unwrap_or_default(),
                s.str_at(&["handshake", "history"]).unwrap_or_default(),
                get(&s.v, &["handshake", "midstream"]).map(|x| x.to_string()).unwrap_or_default()
            )
        });
    }
}

/// The QUIC part of [`compare_capture`] (see the module docs).
fn compare_quic(rep: &mut CaptureReport, rows: &[&TsharkRow], ja4rs: &[Ja4rsRec], quic: &[Session]) {
    let mut streams = oracle_streams(rows.iter().copied());
    streams.sort_by(|a, b| (!a.has_hello, a.t0).partial_cmp(&(!b.has_hello, b.t0)).unwrap_or(std::cmp::Ordering::Equal));
    rep.oracle_quic_streams = streams.iter().filter(|s| s.has_hello).count();

    let mut by_key: HashMap<(SocketAddr, SocketAddr), Vec<usize>> = HashMap::new();
    for (i, s) in quic.iter().enumerate() {
        by_key.entry((s.client, s.server)).or_default().push(i);
    }
    let mut used = HashSet::new();
    let mut stream_session: HashMap<u64, usize> = HashMap::new();

    for st in &streams {
        if !st.has_hello {
            continue;
        }
        let first_frame = st.rows.first().map(|r| r.frame);
        let sid = Some(st.id);
        let straight = pick(quic, &used, &by_key, st.client, st.server, st.t0);
        let (found, reversed) = match straight {
            Some(i) => (Some(i), false),
            None => (pick(quic, &used, &by_key, st.server, st.client, st.t0), true),
        };
        let label = format!("{} -> {}", st.client, st.server);
        let ours_label = match found {
            Some(i) if reversed => format!("<reversed: client {} server {}> {}", quic[i].client, quic[i].server, quic[i].label()),
            Some(i) => quic[i].label(),
            None => {
                let others: Vec<String> = [(st.client, st.server), (st.server, st.client)]
                    .iter()
                    .filter_map(|k| by_key.get(k))
                    .flatten()
                    .map(|&i| format!("{} .. {:.6}", quic[i].label(), quic[i].end))
                    .collect();
                if others.is_empty() {
                    absent()
                } else {
                    format!("<no record at t={:.6}; same endpoints: {}>", st.t0, others.join(" | "))
                }
            }
        };
        rep.check("quic_session", first_frame, sid, label, ours_label, found.is_some() && !reversed, String::new);
        let Some(i) = found else { continue };
        used.insert(i);
        stream_session.insert(st.id, i);
        let ours = &quic[i];
        compare_quic_client_hellos(rep, st, ours, sid);
        compare_quic_server_hello(rep, st, ours, sid);
    }
    compare_quic_ja4(rep, ja4rs, &streams, &by_key, &stream_session, quic);
    compare_quic_unclaimed(rep, quic, &used);
}

/// A QUIC stream's ClientHellos (SNI, JA3, ALPN, also at the top level for
/// the first) and version.
fn compare_quic_client_hellos(rep: &mut CaptureReport, st: &Stream<'_>, ours: &Session, sid: Option<u64>) {
    let ctx = || ours.label();
    // ClientHellos.
    let chs: Vec<&&TsharkRow> = st.rows.iter().filter(|r| r.is_client_hello() && r.src == Some(st.client)).collect();
    let our_chs = ours.client_hellos();
    if !chs.is_empty() {
        let agree = our_chs.len() == chs.len() || (chs.len() > CLIENT_HELLO_CAP && our_chs.len() == CLIENT_HELLO_CAP);
        let frames = chs.iter().map(|r| r.frame.to_string()).collect::<Vec<_>>().join(",");
        let why = || {
            format!(
                "{} undecryptable={} anomalies={} datagrams_read={} retry={}",
                ours.label(),
                get(&ours.v, &["handshake", "undecryptable"]).map(|x| x.to_string()).unwrap_or_default(),
                get(&ours.v, &["handshake", "anomalies"]).map(|x| x.to_string()).unwrap_or_default(),
                get(&ours.v, &["handshake", "datagrams_read"]).map(|x| x.to_string()).unwrap_or_default(),
                get(&ours.v, &["handshake", "retry"]).map(|x| x.to_string()).unwrap_or_default(),
            )
        };
        rep.check(
            "quic_client_hello_count",
            chs.first().map(|r| r.frame),
            sid,
            format!("{} (frames {frames})", chs.len()),
            our_chs.len().to_string(),
            agree,
            why,
        );
    }
    for (k, ch) in chs.iter().enumerate() {
        let Some(o) = our_chs.get(k) else { break };
        let f = Some(ch.frame);
        // For the first ClientHello the top-level quic.* value must say
        // the same as client_hellos[0]; ours shows both when they do not.
        let both = |hello: String, top: Option<String>| -> String {
            match top {
                Some(t) if t != hello => format!("<quic.*={t} client_hellos[0]={hello}>"),
                _ => hello,
            }
        };
        let top = |path: &[&str]| (k == 0).then(|| opt_str(get(&ours.v, path)));
        let sni = both(opt_str(o.get("sni")), top(&["quic", "sni"]));
        rep.eq("quic_sni", f, sid, ch.sni.clone(), sni, ctx);
        let ja3_s = opt_str(get(o, &["ja3", "string"]));
        let ja3 = both(opt_str(get(o, &["ja3", "hash"])), top(&["quic", "ja3", "hash"]));
        rep.eq("quic_ja3", f, sid, ch.ja3.clone(), ja3, || format!("{} oracle={} ours={}", ours.label(), ch.ja3_full, ja3_s));
        let top_alpn = (k == 0).then(|| str_list(get(&ours.v, &["handshake", "client_alpns"])).join(","));
        let alpn = both(str_list(o.get("alpn")).join(","), top_alpn);
        rep.eq("quic_alpn", f, sid, ch.alpn.join(","), alpn, ctx);
    }

    // Version: of the packets of the first ClientHello row (the first
    // Initial), else of the first row.
    let vrow = chs.first().copied().copied().or_else(|| st.rows.first().copied());
    if let Some(vr) = vrow {
        let v = vr.quic_version.split(',').next().unwrap_or("").trim();
        if !v.is_empty() {
            let ours_v = ours.str_at(&["quic", "version"]).unwrap_or_else(absent);
            rep.eq("quic_version", Some(vr.frame), sid, crate::oracle::quic_version_name(v), ours_v, || {
                format!("{} oracle_versions={}", ours.label(), vr.quic_version)
            });
        }
    }
}

/// A QUIC stream's ServerHello (the last one: after a HelloRetryRequest,
/// the real one): cipher and version.
fn compare_quic_server_hello(rep: &mut CaptureReport, st: &Stream<'_>, ours: &Session, sid: Option<u64>) {
    if let Some(sh) = st.rows.iter().rev().find(|r| r.is_server_hello() && r.src == Some(st.server)) {
        let cipher = sh.sh_cipher.last().cloned().unwrap_or_default().to_lowercase();
        let v = sh
            .sh_selected_version
            .last()
            .filter(|x| !x.is_empty())
            .or(sh.hs_legacy_version.last())
            .map(|x| version_name(x))
            .unwrap_or_default();
        let our_cipher = opt_str(get(&ours.v, &["handshake", "cipher_suite"])).to_lowercase();
        let our_v = opt_str(get(&ours.v, &["handshake", "negotiated_version"]));
        let ours_s = if our_cipher.is_empty() && our_v.is_empty() { absent() } else { format!("cipher={our_cipher} version={our_v}") };
        rep.eq("quic_server_hello", Some(sh.frame), sid, format!("cipher={cipher} version={v}"), ours_s, || {
            format!(
                "{} datagrams_read={} undecryptable={} anomalies={} oracle_ja3s={}",
                ours.label(),
                get(&ours.v, &["handshake", "datagrams_read"]).map(|x| x.to_string()).unwrap_or_default(),
                get(&ours.v, &["handshake", "undecryptable"]).map(|x| x.to_string()).unwrap_or_default(),
                get(&ours.v, &["handshake", "anomalies"]).map(|x| x.to_string()).unwrap_or_default(),
                sh.ja3s_full
            )
        });
    }
}

/// JA4 (FoxIO rust ja4): its `udp` entries that belong to a QUIC stream.
fn compare_quic_ja4(
    rep: &mut CaptureReport,
    ja4rs: &[Ja4rsRec],
    streams: &[Stream<'_>],
    by_key: &HashMap<(SocketAddr, SocketAddr), Vec<usize>>,
    stream_session: &HashMap<u64, usize>,
    quic: &[Session],
) {
    for j in ja4rs.iter().filter(|j| j.transport == "udp") {
        let Some(ja4) = &j.ja4 else { continue };
        let eps = |st: &&Stream| j.src == Some(st.client) && j.dst == Some(st.server);
        let st = streams
            .iter()
            .filter(|s| s.has_hello)
            .find(|s| s.id == j.stream && eps(s))
            .or_else(|| streams.iter().filter(|s| s.has_hello).find(eps));
        let sid = Some(j.stream);
        let Some(st) = st else {
            // Not a QUIC stream of the tsv: DTLS / OpenVPN-UDP (letter `t`
            // or `d`) are out of scope; a `q` one is a QUIC stream tshark's
            // rows lack, so look for a record of ours directly.
            if ja4.starts_with('q') {
                let hit = j.src.zip(j.dst).and_then(|k| by_key.get(&k)).and_then(|v| v.first().copied());
                match hit {
                    Some(i) => rep.eq("quic_ja4", None, sid, ja4.clone(), quic[i].str_at(&["quic", "ja4"]).unwrap_or_else(absent), || {
                        quic[i].label()
                    }),
                    None => rep
                        .check("quic_ja4", None, sid, ja4.clone(), "<no session>".into(), false, || format!("{:?} -> {:?}", j.src, j.dst)),
                }
            }
            continue;
        };
        // A stream without a record of ours is counted under quic_session,
        // one without a ClientHello of ours under quic_client_hello_count.
        let Some(&i) = stream_session.get(&st.id) else { continue };
        let ours = &quic[i];
        if ours.client_hellos().is_empty() {
            continue;
        }
        let ch = st.rows.iter().find(|r| r.is_client_hello() && r.src == Some(st.client));
        let mut oracle_ja4 = ja4.clone();
        if let (Some(rest), Some(ch)) = (ja4.strip_prefix('t'), ch) {
            if !ch.ch_ext_types.contains(&57) {
                oracle_ja4 = format!("q{rest}");
                rep.ja4_quic_letter_normalised += 1;
            }
        }
        let frame = ch.map(|r| r.frame);
        rep.eq("quic_ja4", frame, sid, oracle_ja4, ours.str_at(&["quic", "ja4"]).unwrap_or_else(absent), || {
            format!("{} rust_ja4={ja4}", ours.label())
        });
    }
}

/// QUIC records of ours that no oracle stream claimed.
fn compare_quic_unclaimed(rep: &mut CaptureReport, quic: &[Session], used: &HashSet<usize>) {
    for (i, s) in quic.iter().enumerate() {
        let matched = used.contains(&i);
        if !matched && s.client_hellos().is_empty() {
            rep.our_quic_no_hello += 1;
            continue;
        }
        rep.check(
            "quic_our_session",
            None,
            None,
            if matched { s.label() } else { "<no tshark QUIC stream>".into() },
            s.label(),
            matched,
            || {
                format!(
                    "sni={} version={} undecryptable={} anomalies={}",
                    s.str_at(&["quic", "sni"]).unwrap_or_default(),
                    s.str_at(&["quic", "version"]).unwrap_or_default(),
                    get(&s.v, &["handshake", "undecryptable"]).map(|x| x.to_string()).unwrap_or_default(),
                    get(&s.v, &["handshake", "anomalies"]).map(|x| x.to_string()).unwrap_or_default(),
                )
            },
        );
    }
}

/// Sum of the per-field tallies of many captures.
pub fn totals(reports: &[CaptureReport]) -> BTreeMap<&'static str, Tally> {
    let mut t: BTreeMap<&'static str, Tally> = BTreeMap::new();
    for r in reports {
        for (f, x) in &r.tallies {
            t.entry(f).or_default().add(x);
        }
    }
    t
}

/// The per-field summary table (fields in [`FIELDS`] order).
pub fn render_table(t: &BTreeMap<&'static str, Tally>) -> String {
    let mut s = String::new();
    s.push_str(&format!("{:<24} {:>9} {:>9} {:>7} {:>8} {:>9}\n", "field", "compared", "agreed", "known", "differ", "agree%"));
    for (f, _) in FIELDS {
        let x = t.get(f).copied().unwrap_or_default();
        let pct = x.percent().map_or_else(|| "-".to_string(), |p| format!("{p:.2}%"));
        s.push_str(&format!("{:<24} {:>9} {:>9} {:>7} {:>8} {:>9}\n", f, x.compared, x.agreed, x.known, x.unexplained(), pct));
    }
    s
}

/// One TSV cell: control characters (a NUL inside a certificate name, tabs)
/// written as `\xNN`.
fn tsv_cell(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

/// Every disagreement as TSV (header first).
pub fn render_disagreements(reports: &[CaptureReport]) -> String {
    let mut s = String::from("capture\tframe\tstream\tfield\toracle\tours\tknown_reason\tcontext\n");
    for r in reports {
        for d in &r.disagreements {
            s.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                tsv_cell(&d.capture),
                d.frame.map(|x| x.to_string()).unwrap_or_default(),
                d.stream.map(|x| x.to_string()).unwrap_or_default(),
                d.field,
                tsv_cell(&d.oracle),
                tsv_cell(&d.ours),
                d.known.unwrap_or(""),
                tsv_cell(&d.context)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eve::parse_all;
    use crate::oracle::{parse_ja4rs, parse_tshark_tsv};

    const HDR: &str = "frame\ttime_epoch\ttransport\tstream\tsrc\tdst\tmsgs\ths_legacy_version\tsni\tsh_selected_version\tsh_cipher\talpn\tja3\tja3_full\tquic_version\tgquic_sni\tch_ext_types\n";

    #[test]
    fn quic_streams_match_quic_records() {
        let tsv = format!(
            "{HDR}1\t100.0\tquic\t0\t10.0.0.1:5000\t10.0.0.2:443\tclient_hello\t0x0303\tex.org\t\t\th3-29\tabc\t771,..\t0xff00001d,0xff00001d\t\t0,65445\n\
             2\t100.1\tquic\t0\t10.0.0.2:443\t10.0.0.1:5000\tserver_hello\t0x0303\t\t0x0304\t0x1301\t\t\t\t0xff00001d\t\t\n\
             3\t100.2\tquic\t1\t10.0.0.1:5001\t10.0.0.3:443\t\t\t\t\t\t\t\t\t0x51303530\twww.example.com\t\n"
        );
        let rows = parse_tshark_tsv(&tsv).expect("tsv");
        let ja4rs = parse_ja4rs(
            r#"{"stream":0,"transport":"udp","src":"10.0.0.1","dst":"10.0.0.2","src_port":5000,"dst_port":443,"ja4":"t13d0102h9_x_y"}"#,
        )
        .expect("ja4rs");
        let eve = br#"{"event_type":"quic","src_ip":"10.0.0.1","src_port":5000,"dest_ip":"10.0.0.2","dest_port":443,"flow":{"start":"1970-01-01T00:01:40.000000+0000","end":"1970-01-01T00:01:41.000000+0000"},"quic":{"version":"ff00001d","sni":"ex.org","ja3":{"hash":"abc"},"ja4":"q13d0102h9_x_y"},"handshake":{"client_alpns":["h3-29"],"cipher_suite":"0x1301","negotiated_version":"TLS 1.3","client_hellos":[{"sni":"ex.org","ja3":{"hash":"abc"},"alpn":["h3-29"]}]}}
"#;
        let out = parse_all(eve).expect("eve");
        assert_eq!((out.tls.len(), out.quic.len()), (0, 1));
        let rep = compare_capture("t", "t", &Oracle { rows, ja4rs, certs: Vec::new() }, &out.tls, &out.quic);
        assert_eq!((rep.quic_rows, rep.gquic_rows), (2, 1));
        assert_eq!(rep.ja4_quic_letter_normalised, 1);
        for f in [
            "quic_session",
            "quic_our_session",
            "quic_client_hello_count",
            "quic_sni",
            "quic_ja3",
            "quic_alpn",
            "quic_version",
            "quic_ja4",
            "quic_server_hello",
        ] {
            let t = rep.tallies.get(f).copied().unwrap_or_default();
            assert_eq!((t.compared, t.agreed), (1, 1), "{f}: {:?}", rep.disagreements);
        }
    }
}
