//! Session templates: the TCP sessions of the testbed captures (real curl,
//! OpenSSL, Python, OkHttp, nginx and mitmproxy stacks), split by 5-tuple
//! starting at the client's SYN.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pcap_parser::PcapCapture;

use super::net::{rd16, rd32, ACK, FIN, RST, SYN};

/// Client → server.
pub const C2S: usize = 0;
/// Server → client.
pub const S2C: usize = 1;

/// One packet of a template session.
#[derive(Clone, Debug)]
pub struct TPkt {
    /// Nanoseconds since the session's first packet (its SYN).
    pub t_ns: i64,
    pub dir: usize,
    /// The Ethernet frame, without any link-layer trailer.
    pub frame: Vec<u8>,
    pub ip_off: usize,
    pub tcp_off: usize,
    pub payload_off: usize,
    /// Offset in `frame` of the timestamp option's TSval (TSecr follows).
    pub ts_off: Option<usize>,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
}

impl TPkt {
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_off..]
    }
}

/// One TCP session of a testbed capture.
#[derive(Clone, Debug)]
pub struct Template {
    /// `file:row-label (stack)`.
    pub name: String,
    /// Expected outcome from the capture's `.expected.tsv` (`established`,
    /// `client_rejected`, `server_rejected`, `not_tls`), or `heuristic:…`.
    pub outcome: String,
    pub sni: String,
    /// The TLS handshake completed and data flowed: bulk data can follow it.
    pub established: bool,
    pub pkts: Vec<TPkt>,
    /// `pkts[..split]` is the head (handshake and the first request and
    /// response); `pkts[split..]` is the tail (close_notify, FIN/RST), which
    /// is replayed after the bulk data.
    pub split: usize,
    /// Per direction: the sequence number following the head's last byte.
    pub next_seq: [u32; 2],
    /// Per direction: the last TCP window field in the head.
    pub window: [u16; 2],
    /// Payload bytes per full-sized segment (MSS minus options in use).
    pub seg_payload: usize,
    /// Both SYNs carried the timestamp option.
    pub has_ts: bool,
    pub server_port: u16,
    pub head_bytes: u64,
}

struct Raw {
    t_ns: i64,
    frame: Vec<u8>,
    ip_off: usize,
    tcp_off: usize,
    payload_off: usize,
    ts_off: Option<usize>,
    mss: Option<u16>,
    flags: u8,
    seq: u32,
    ack: u32,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
}

/// Parse one Ethernet/IPv4/TCP frame; None for anything else.
fn parse_frame(data: &[u8], t_ns: i64) -> Option<Raw> {
    let mut off = 12;
    let mut ethertype = rd16(data.get(..off + 2)?, off);
    off += 2;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = rd16(data.get(..off + 4)?, off + 2);
        off += 4;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = off;
    let ip_hdr = data.get(ip..ip + 20)?;
    if ip_hdr[0] >> 4 != 4 || ip_hdr[9] != 6 || rd16(ip_hdr, 6) & 0x3fff != 0 {
        return None; // not IPv4, not TCP, or a fragment
    }
    let ihl = ((ip_hdr[0] & 0x0f) as usize) * 4;
    let total = rd16(ip_hdr, 2) as usize;
    let end = ip + total;
    if end > data.len() || ihl < 20 || total < ihl + 20 {
        return None; // truncated by the snap length
    }
    let tcp = ip + ihl;
    let doff = ((data[tcp + 12] >> 4) as usize) * 4;
    if doff < 20 || tcp + doff > end {
        return None;
    }
    let mut ts_off = None;
    let mut mss = None;
    let mut o = tcp + 20;
    while o < tcp + doff {
        match data[o] {
            0 => break,
            1 => o += 1,
            kind => {
                let len = *data.get(o + 1)? as usize;
                if len < 2 || o + len > tcp + doff {
                    break;
                }
                if kind == 8 && len == 10 {
                    ts_off = Some(o + 2);
                }
                if kind == 2 && len == 4 {
                    mss = Some(rd16(data, o + 2));
                }
                o += len;
            }
        }
    }
    let ip4 = |o: usize| [data[o], data[o + 1], data[o + 2], data[o + 3]];
    Some(Raw {
        t_ns,
        frame: data[..end].to_vec(),
        ip_off: ip,
        tcp_off: tcp,
        payload_off: tcp + doff,
        ts_off,
        mss,
        flags: data[tcp + 13],
        seq: rd32(data, tcp + 4),
        ack: rd32(data, tcp + 8),
        src: (ip4(ip + 12), rd16(data, tcp)),
        dst: (ip4(ip + 16), rd16(data, tcp + 2)),
    })
}

/// A TCP session in capture order: the client endpoint and its packets.
struct RawSession {
    client: ([u8; 4], u16),
    syn_seq: u32,
    closed: bool,
    pkts: Vec<Raw>,
}

type Key = (([u8; 4], u16), ([u8; 4], u16));

fn key(r: &Raw) -> Key {
    if r.src <= r.dst {
        (r.src, r.dst)
    } else {
        (r.dst, r.src)
    }
}

fn split_sessions(bytes: &[u8]) -> Result<Vec<RawSession>> {
    let cap = PcapCapture::from_file(bytes).map_err(|e| anyhow::anyhow!("not a classic pcap: {e:?}"))?;
    if cap.header.network.0 != 1 {
        bail!("link type {} is not Ethernet", cap.header.network.0);
    }
    if cap.header.is_bigendian() {
        bail!("big-endian pcap is not supported");
    }
    let nanos = cap.header.is_nanosecond_precision();
    let mut sessions: Vec<RawSession> = Vec::new();
    let mut current: BTreeMap<Key, usize> = BTreeMap::new();
    for b in &cap.blocks {
        let frac = if nanos { b.ts_usec as i64 } else { b.ts_usec as i64 * 1000 };
        let t = b.ts_sec as i64 * 1_000_000_000 + frac;
        let Some(r) = parse_frame(b.data, t) else { continue };
        let k = key(&r);
        let is_syn = r.flags & (SYN | ACK) == SYN;
        let idx = match current.get(&k) {
            Some(&i) if !(is_syn && sessions[i].closed && sessions[i].syn_seq != r.seq) => Some(i),
            _ if is_syn => {
                sessions.push(RawSession { client: r.src, syn_seq: r.seq, closed: false, pkts: Vec::new() });
                current.insert(k, sessions.len() - 1);
                Some(sessions.len() - 1)
            }
            _ => None, // no SYN seen for this 5-tuple: not a template
        };
        if let Some(i) = idx {
            if r.flags & (FIN | RST) != 0 {
                sessions[i].closed = true;
            }
            sessions[i].pkts.push(r);
        }
    }
    Ok(sessions)
}

/// TLS records (type, length) at the start of one direction's in-order stream.
fn records(pkts: &[TPkt], dir: usize) -> Vec<(u8, usize)> {
    let mut stream = Vec::new();
    let mut next: Option<u32> = None;
    for p in pkts.iter().filter(|p| p.dir == dir) {
        let pl = p.payload();
        if p.flags & SYN != 0 {
            next = Some(p.seq.wrapping_add(1));
            continue;
        }
        if pl.is_empty() || next != Some(p.seq) {
            continue; // retransmission or hole
        }
        stream.extend_from_slice(pl);
        next = Some(p.seq.wrapping_add(pl.len() as u32));
    }
    let mut out = Vec::new();
    let mut o = 0;
    while o + 5 <= stream.len() {
        let len = rd16(&stream, o + 3) as usize;
        out.push((stream[o], len));
        o += 5 + len;
    }
    out
}

/// A payload made only of small alert or encrypted-alert-sized records
/// (close_notify, user_canceled): part of the close.
fn is_close_payload(pl: &[u8]) -> bool {
    let mut o = 0;
    while o + 5 <= pl.len() {
        let (ty, ver, len) = (pl[o], rd16(pl, o + 1), rd16(pl, o + 3) as usize);
        if !(ty == 0x15 || ty == 0x17) || !(0x0301..=0x0304).contains(&ver) || len > 48 {
            return false;
        }
        o += 5 + len;
    }
    o == pl.len() && o > 0
}

struct TsvRow {
    label: String,
    sni: String,
    stack: String,
    outcome: String,
}

fn read_tsv(path: &Path) -> Option<Vec<TsvRow>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 6 {
            continue;
        }
        rows.push(TsvRow { label: f[0].into(), sni: f[3].into(), stack: f[4].into(), outcome: f[5].into() });
    }
    Some(rows)
}

/// A session's outcome from its records when no `.expected.tsv` names it:
/// not TLS, established (no alert, application data both ways), or failed.
fn outcome_from_records(pkts: &[TPkt]) -> &'static str {
    let c = records(pkts, C2S);
    let sv = records(pkts, S2C);
    let alert = c.iter().chain(sv.iter()).any(|r| r.0 == 0x15);
    let tls = c.first().map(|r| r.0 == 0x16).unwrap_or(false);
    let appdata = |v: &[(u8, usize)]| v.iter().filter(|r| r.0 == 0x17 && r.1 > 48).count();
    let est = tls && !alert && appdata(&c) >= 2 && appdata(&sv) >= 1;
    if !tls {
        "heuristic:not_tls"
    } else if est {
        "established"
    } else {
        "heuristic:failed"
    }
}

/// Head/tail split of an established session: the tail starts at the first
/// FIN/RST, taking with it the pure ACKs and close_notify-sized records just
/// before it. Returns where the tail starts (the length without a FIN/RST).
fn head_end(pkts: &[TPkt]) -> usize {
    let Some(f) = pkts.iter().position(|p| p.flags & (FIN | RST) != 0) else { return pkts.len() };
    let mut j = f;
    while j > 0 {
        let p = &pkts[j - 1];
        if p.flags & SYN == 0 && (p.payload().is_empty() || is_close_payload(p.payload())) {
            j -= 1;
        } else {
            break;
        }
    }
    j
}

/// Each direction's state at the end of the head: the next sequence number,
/// the last window, and whether it sent anything.
fn head_state(head: &[TPkt]) -> ([u32; 2], [u16; 2], [bool; 2]) {
    let mut next_seq = [0u32; 2];
    let mut window = [0u16; 2];
    let mut seen = [false; 2];
    for p in head {
        let mut end = p.seq.wrapping_add(p.payload().len() as u32);
        if p.flags & (SYN | FIN) != 0 {
            end = end.wrapping_add(1);
        }
        // later in sequence space (wrapping compare)
        if !seen[p.dir] || (end.wrapping_sub(next_seq[p.dir]) as i32) > 0 {
            next_seq[p.dir] = end;
            seen[p.dir] = true;
        }
        window[p.dir] = rd16(&p.frame, p.tcp_off + 14);
    }
    (next_seq, window, seen)
}

/// Templates of one capture file. The outcome of each session comes from the
/// `.expected.tsv` beside it (rows are in capture order), or from the records
/// on the wire when that file is missing or does not match.
pub fn load_file(path: &Path) -> Result<Vec<Template>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw = split_sessions(&bytes).with_context(|| format!("{}", path.display()))?;
    let file = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".pcap").unwrap_or(&file);
    let tsv = read_tsv(&path.with_file_name(format!("{stem}.expected.tsv")));
    let tsv = match tsv {
        Some(rows) if rows.len() == raw.len() => Some(rows),
        Some(rows) => {
            eprintln!("gencap: {}: {} TCP sessions but {} .tsv rows; classifying from the records instead", file, raw.len(), rows.len());
            None
        }
        None => None,
    };
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let t0 = s.pkts.first().map(|p| p.t_ns).unwrap_or(0);
        let mut mss = [1460u16; 2];
        let mut syn_ts = [false; 2];
        let mut last_t = 0;
        let pkts: Vec<TPkt> = s
            .pkts
            .into_iter()
            .map(|r| {
                let dir = if r.src == s.client { C2S } else { S2C };
                if r.flags & SYN != 0 {
                    if let Some(m) = r.mss {
                        mss[dir] = m;
                    }
                    syn_ts[dir] = r.ts_off.is_some();
                }
                // merged captures can step back by a microsecond: keep the order
                last_t = (r.t_ns - t0).max(last_t);
                TPkt {
                    t_ns: last_t,
                    dir,
                    frame: r.frame,
                    ip_off: r.ip_off,
                    tcp_off: r.tcp_off,
                    payload_off: r.payload_off,
                    ts_off: r.ts_off,
                    flags: r.flags,
                    seq: r.seq,
                    ack: r.ack,
                }
            })
            .collect();
        let (name, sni, outcome) = match &tsv {
            Some(rows) => {
                let r = &rows[i];
                (format!("{stem}:{} ({})", r.label, r.stack), r.sni.clone(), r.outcome.clone())
            }
            None => (format!("{stem}:session{}", i + 1), "-".to_string(), outcome_from_records(&pkts).to_string()),
        };
        let established = outcome == "established";
        let split = if established { head_end(&pkts) } else { pkts.len() };
        let (next_seq, window, seen) = head_state(&pkts[..split]);
        let has_ts = syn_ts[C2S] && syn_ts[S2C];
        let server_port = pkts.first().map(|p| rd16(&p.frame, p.tcp_off + 2)).unwrap_or(443);
        let head_bytes = pkts[..split].iter().map(|p| p.frame.len() as u64).sum();
        let seg_payload = (mss[C2S].min(mss[S2C]) as usize).saturating_sub(if has_ts { 12 } else { 0 }).clamp(536, 8948);
        out.push(Template {
            name,
            outcome,
            sni,
            established: established && seen[S2C] && split > 3,
            pkts,
            split,
            next_seq,
            window,
            seg_payload,
            has_ts,
            server_port,
            head_bytes,
        });
    }
    Ok(out)
}

/// FNV-1a over the template frames: names the template set in the summary.
pub fn digest(tmpls: &[Template]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tmpls {
        for p in &t.pkts {
            for &b in p.frame.iter().chain(p.t_ns.to_le_bytes().iter()) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}
