//! Deterministic generator of a large, realistic egress capture for the
//! throughput run (`gencap` binary; design and distributions in
//! `benches/README.md`).
//!
//! The handshakes are real: TCP sessions of the testbed captures (curl,
//! OpenSSL s_client, Python ssl, OkHttp/JSSE, nginx, mitmproxy), replayed as
//! templates with new client and server addresses, ports, sequence numbers,
//! TCP timestamps and times. After the handshake comes synthetic bulk TLS
//! application data with a heavy-tailed size mix, then the template's own
//! close. Everything random comes from one seed; nothing reads the clock or
//! depends on hash iteration order, so the same arguments give the same bytes.

pub mod net;
pub mod rng;
pub mod session;
pub mod template;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Result};

use rng::Rng;
use session::{msg_wire_len, Close, Endpoints, Msg, Plan, Session};
use template::{Template, C2S, S2C};

/// First packet time: 2026-01-05T09:00:00Z (fixed, so output is reproducible).
pub const BASE_EPOCH_S: i64 = 1_767_603_600;

/// Template captures read from the templates directory (TCP sessions).
pub const TEMPLATE_FILES: [&str; 3] = ["testbed-basic.pcap", "testbed-inspection.pcap", "testbed-fallback.pcap"];

// Independent random streams.
const STREAM_SESSION: u64 = 1;
const STREAM_ARRIVAL: u64 = 2;
const STREAM_SERVERS: u64 = 3;
const STREAM_POOL: u64 = 4;
const STREAM_ESTIMATE: u64 = 5;
const STREAM_PORTS: u64 = 6;

#[derive(Clone, Debug)]
pub struct Config {
    /// Stop before the file would exceed this many bytes.
    pub size_limit: u64,
    pub seed: u64,
    pub clients: u32,
    pub servers: u32,
    /// `--concurrent-flows N`: N sessions that open and stay open.
    pub concurrent_flows: Option<u64>,
    /// Target aggregate bit rate of the bulk mix (sets the session arrival rate).
    pub rate_bps: f64,
    /// Session openings per second in `--concurrent-flows` mode.
    pub open_rate: f64,
    /// Share of sessions replaying a template whose handshake failed
    /// (rejections, aborts, stalls, not TLS): no bulk data.
    pub fail_share: f64,
    /// Share of established sessions whose bulk data goes client → server.
    pub upload_share: f64,
    /// Share of established sessions closed by a client RST instead of the
    /// template's close.
    pub rst_share: f64,
    /// Share of established sessions that stay idle (keep-alive) for 1–60 s
    /// after their last data before closing; the others close 0.2–20 ms after.
    pub keepalive_share: f64,
    /// Seconds of traffic simulated before the capture starts (not written):
    /// the capture then opens in steady state, with transfers already in
    /// progress (mid-stream flows, as on a real tap). 0 = start empty.
    pub warmup_s: f64,
    /// Nanosecond-resolution pcap (magic a1b23c4d) instead of microseconds.
    pub nanos: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            size_limit: u64::MAX,
            seed: 1,
            clients: 20_000,
            servers: 5_000,
            concurrent_flows: None,
            rate_bps: 2e9,
            open_rate: 50_000.0,
            fail_share: 0.03,
            upload_share: 0.10,
            rst_share: 0.05,
            keepalive_share: 0.5,
            warmup_s: 0.0,
            nanos: false,
        }
    }
}

/// Parse `2G`, `500M`, `64K`, `123` (binary multiples: K = 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => bail!("bad size suffix in {s:?} (K, M, G or T)"),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("bad size {s:?}"))?;
    if n.is_nan() || n <= 0.0 {
        bail!("size must be positive: {s:?}");
    }
    Ok((n * mult as f64) as u64)
}

/// Load the TCP templates of the testbed captures in `dir`.
pub fn load_templates(dir: &Path) -> Result<Vec<Template>> {
    let mut all = Vec::new();
    for f in TEMPLATE_FILES {
        all.extend(template::load_file(&dir.join(f))?);
    }
    if !all.iter().any(|t| t.established) {
        bail!("no established TLS session among the templates in {}", dir.display());
    }
    Ok(all)
}

/// Bulk application bytes of one established session (the main direction).
///
/// | share | what | size |
/// |---|---|---|
/// | 80 %  | API calls, telemetry, small pages | log-normal, median 3 KiB, sigma 1.2, 200 B – 256 KiB |
/// | 17 %  | pages, images, app data | log-uniform 32 KiB – 2 MiB |
/// | 2.8 % | downloads, video segments | log-uniform 2 – 32 MiB |
/// | 0.2 % | elephants: updates, backups, video | log-uniform 32 – 512 MiB |
pub fn sample_bulk_bytes(rng: &mut Rng) -> u64 {
    const K: f64 = 1024.0;
    const M: f64 = 1024.0 * 1024.0;
    let u = rng.f64();
    let b = if u < 0.80 {
        rng.log_normal(3.0 * K, 1.2).clamp(200.0, 256.0 * K)
    } else if u < 0.97 {
        rng.log_uniform(32.0 * K, 2.0 * M)
    } else if u < 0.998 {
        rng.log_uniform(2.0 * M, 32.0 * M)
    } else {
        rng.log_uniform(32.0 * M, 512.0 * M)
    };
    b as u64
}

/// The message plan of an established session: request/response exchanges
/// (HTTP-like), the big direction split into chunks of 64 KiB – 8 MiB.
fn plan_messages(rng: &mut Rng, bulk: u64, upload: bool, rtt: i64) -> Vec<Msg> {
    let mut msgs = Vec::new();
    let mut left = bulk;
    let mut first = true;
    while left > 0 {
        let chunk = if left <= 1 << 20 { left } else { (rng.log_uniform(65536.0, 8388608.0) as u64).min(left) };
        left -= chunk;
        let small = rng.log_uniform(60.0, 1200.0) as u64;
        let think = if first { rng.range(0, 2_000_000) } else { rng.log_uniform(1e6, 2e8) as u64 } as i64;
        let server_time = rng.range(100_000, 5_000_000) as i64;
        first = false;
        let (req, resp) = if upload { (chunk, small) } else { (small, chunk) };
        msgs.push(Msg { dir: C2S, len: msg_wire_len(req), gap: think });
        msgs.push(Msg { dir: S2C, len: msg_wire_len(resp), gap: rtt + server_time });
    }
    msgs
}

/// `10.b.c.d` for client number `i` (host part never .0 or .255).
pub fn client_ip(i: u32) -> [u8; 4] {
    let d = (i % 254) as u8 + 1;
    let n = i / 254;
    [10, (n >> 8) as u8, n as u8, d]
}

fn is_reserved(a: [u8; 4]) -> bool {
    matches!(
        a,
        [0, ..]
            | [10, ..]
            | [127, ..]
            | [169, 254, ..]
            | [192, 168, ..]
            | [192, 0, 0 | 2, _]
            | [192, 88, 99, _]
            | [198, 18 | 19, ..]
            | [198, 51, 100, _]
            | [203, 0, 113, _]
    ) || (a[0] == 100 && (64..128).contains(&a[1]))
        || (a[0] == 172 && (16..32).contains(&a[1]))
        || a[0] >= 224
}

/// The summary printed as one JSON line.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub mode: &'static str,
    pub seed: u64,
    pub packets: u64,
    pub bytes: u64,
    pub sessions: u64,
    pub sessions_midstream: u64,
    pub sessions_closed: u64,
    pub sessions_open_at_end: u64,
    pub handshake_sessions_failed: u64,
    pub clients: u64,
    pub servers: u64,
    pub template_packets: u64,
    pub templates: usize,
    pub templates_established: usize,
    pub template_digest: u64,
    pub first_ts: f64,
    pub last_ts: f64,
    pub size_limit_reached: bool,
}

impl Summary {
    pub fn to_json(&self) -> String {
        let dur = (self.last_ts - self.first_ts).max(0.0);
        format!(
            concat!(
                "{{\"mode\":\"{}\",\"seed\":{},\"packets\":{},\"bytes\":{},\"sessions\":{},\"sessions_midstream\":{},\"sessions_closed\":{},",
                "\"sessions_open_at_end\":{},\"sessions_handshake_failed\":{},\"clients\":{},\"servers\":{},",
                "\"template_packets\":{},\"template_packet_share\":{:.4},\"templates\":{},\"templates_established\":{},",
                "\"template_digest\":\"{:016x}\",\"capture_seconds\":{:.3},\"capture_gbit_per_s\":{:.3},\"size_limit_reached\":{}}}"
            ),
            self.mode,
            self.seed,
            self.packets,
            self.bytes,
            self.sessions,
            self.sessions_midstream,
            self.sessions_closed,
            self.sessions_open_at_end,
            self.handshake_sessions_failed,
            self.clients,
            self.servers,
            self.template_packets,
            if self.packets > 0 { self.template_packets as f64 / self.packets as f64 } else { 0.0 },
            self.templates,
            self.templates_established,
            self.template_digest,
            dur,
            if dur > 0.0 { self.bytes as f64 * 8.0 / dur / 1e9 } else { 0.0 },
            self.size_limit_reached,
        )
    }
}

/// Classic pcap writer that refuses a record that would take the file past the limit.
struct PcapOut<W: Write> {
    w: W,
    written: u64,
    limit: u64,
    nanos: bool,
}

impl<W: Write> PcapOut<W> {
    fn new(mut w: W, limit: u64, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&h)?;
        Ok(PcapOut { w, written: 24, limit, nanos })
    }

    /// Write one record at `t_ns` (relative to the base epoch); false when it does not fit.
    fn write(&mut self, t_ns: i64, frame: &[u8]) -> io::Result<bool> {
        let rec = 16 + frame.len() as u64;
        if self.written + rec > self.limit {
            return Ok(false);
        }
        let sec = BASE_EPOCH_S + t_ns.div_euclid(1_000_000_000);
        let ns = t_ns.rem_euclid(1_000_000_000);
        let frac = if self.nanos { ns } else { ns / 1000 };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(sec as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)?;
        self.written += rec;
        Ok(true)
    }
}

/// Generate the capture into `out`. `tmpls` from [`load_templates`].
pub fn generate<W: Write>(cfg: &Config, tmpls: &[Template], out: W) -> Result<(Summary, W)> {
    if cfg.clients == 0 || cfg.clients > 254 * 65536 {
        bail!("--clients must be between 1 and {}", 254 * 65536);
    }
    if cfg.servers == 0 {
        bail!("--servers must be at least 1");
    }
    let established: Vec<usize> = (0..tmpls.len()).filter(|&i| tmpls[i].established).collect();
    let failed: Vec<usize> = (0..tmpls.len()).filter(|&i| !tmpls[i].established).collect();
    if established.is_empty() {
        bail!("no established template");
    }
    let concurrent = cfg.concurrent_flows;
    let servers = ServerPool::new(cfg);

    // Random payload pool (ciphertext looks random).
    let mut prng = Rng::derive(cfg.seed, STREAM_POOL, 0);
    let pool: Vec<u8> = (0..(256 * 1024 / 8)).flat_map(|_| prng.next_u64().to_le_bytes()).collect();
    let arrival_mean_ns = arrival_mean_ns(cfg, tmpls, &established);

    let w = PcapOut::new(out, cfg.size_limit, cfg.nanos)?;
    let sum = Summary {
        mode: if concurrent.is_some() { "concurrent-flows" } else { "bulk" },
        seed: cfg.seed,
        templates: tmpls.len(),
        templates_established: established.len(),
        template_digest: template::digest(tmpls),
        ..Summary::default()
    };
    let mut g = Gen {
        cfg,
        tmpls,
        established,
        failed,
        used_server: vec![false; servers.addrs.len()],
        servers,
        pool,
        arrival_mean_ns,
        w,
        sum,
        arng: Rng::derive(cfg.seed, STREAM_ARRIVAL, 0),
        used_client: vec![false; cfg.clients as usize],
        next_port: vec![0u16; cfg.clients as usize],
        tuples: HashSet::new(),
        slab: Vec::new(),
        free: Vec::new(),
        heap: BinaryHeap::new(),
        next_arrival: match concurrent {
            Some(_) => 0,
            None => -(cfg.warmup_s.max(0.0) * 1e9) as i64,
        },
        created: 0,
        buf: Vec::with_capacity(16384),
        first_ts: None,
        last_ts: 0,
    };
    loop {
        let arrivals_left = concurrent.is_none_or(|n| g.created < n);
        let next_pkt = g.heap.peek().map(|Reverse((t, _, _))| *t);
        if arrivals_left && next_pkt.is_none_or(|t| g.next_arrival <= t) {
            g.arrive()?;
            continue;
        }
        if !g.next_packet()? {
            break;
        }
    }
    g.finish()
}

/// The server pool: public unicast addresses, Zipf(1) popularity, a TTL each.
struct ServerPool {
    /// Address and TTL of each server.
    addrs: Vec<([u8; 4], u8)>,
    /// The cumulative popularity of the servers, in order; `acc` in all.
    cdf: Vec<f64>,
    acc: f64,
}

impl ServerPool {
    fn new(cfg: &Config) -> ServerPool {
        let mut srng = Rng::derive(cfg.seed, STREAM_SERVERS, 0);
        let mut addrs: Vec<([u8; 4], u8)> = Vec::with_capacity(cfg.servers as usize);
        let mut seen_addr = HashSet::new();
        while addrs.len() < cfg.servers as usize {
            let a = srng.next_u32().to_be_bytes();
            if is_reserved(a) || !seen_addr.insert(a) {
                continue;
            }
            let init = [64u8, 64, 64, 128, 255][srng.below(5) as usize];
            addrs.push((a, init - srng.range(6, 22) as u8));
        }
        let mut cdf = Vec::with_capacity(addrs.len());
        let mut acc = 0.0;
        for i in 0..addrs.len() {
            acc += 1.0 / (i as f64 + 1.0);
            cdf.push(acc);
        }
        ServerPool { addrs, cdf, acc }
    }
}

/// Mean time between session arrivals: `--open-rate` with
/// `--concurrent-flows`, else for the target bit rate, from the mean wire
/// size of a session, estimated from the same distributions.
fn arrival_mean_ns(cfg: &Config, tmpls: &[Template], established: &[usize]) -> f64 {
    let mut erng = Rng::derive(cfg.seed, STREAM_ESTIMATE, 0);
    let head_mean = established.iter().map(|&i| tmpls[i].head_bytes as f64).sum::<f64>() / established.len() as f64;
    let n_est = 200_000;
    let mut sum = 0.0;
    for _ in 0..n_est {
        sum += sample_bulk_bytes(&mut erng) as f64 * 1.075 + head_mean + 2000.0;
    }
    let mean_session = sum / n_est as f64;
    match cfg.concurrent_flows {
        Some(_) => 1e9 / cfg.open_rate,
        None => 1e9 * mean_session * 8.0 / cfg.rate_bps,
    }
}

/// The 5-tuple of a session as one number, for the set of open tuples.
fn tuple_key(client: [u8; 4], cport: u16, server: [u8; 4], sport: u16) -> u128 {
    (u32::from_be_bytes(client) as u128) << 96 | (cport as u128) << 80 | (u32::from_be_bytes(server) as u128) << 16 | sport as u128
}

/// A generation run: the sessions open (a slab, and a heap of their next
/// packets' times), what is left to arrive, and the counters.
struct Gen<'a, W: Write> {
    cfg: &'a Config,
    tmpls: &'a [Template],
    established: Vec<usize>,
    failed: Vec<usize>,
    servers: ServerPool,
    /// Random bytes the sessions' payloads are cut from.
    pool: Vec<u8>,
    arrival_mean_ns: f64,
    w: PcapOut<W>,
    sum: Summary,
    arng: Rng,
    used_client: Vec<bool>,
    used_server: Vec<bool>,
    /// Per client, its last ephemeral port (0: none yet).
    next_port: Vec<u16>,
    tuples: HashSet<u128>,
    slab: Vec<Option<Session>>,
    free: Vec<usize>,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    next_arrival: i64,
    created: u64,
    buf: Vec<u8>,
    first_ts: Option<i64>,
    last_ts: i64,
}

impl<W: Write> Gen<'_, W> {
    /// A new session: its template, client, server (by popularity), port,
    /// RTT, bit rate and plan, drawn from its own random stream; then the
    /// time of the next arrival.
    fn arrive(&mut self) -> Result<()> {
        let (cfg, concurrent) = (self.cfg, self.cfg.concurrent_flows);
        let uid = self.created;
        self.created += 1;
        let mut r = Rng::derive(cfg.seed, STREAM_SESSION, uid);
        let fail = concurrent.is_none() && !self.failed.is_empty() && r.chance(cfg.fail_share);
        let tmpl = if fail {
            self.failed[r.below(self.failed.len() as u64) as usize]
        } else {
            self.established[r.below(self.established.len() as u64) as usize]
        };
        let tmpls = self.tmpls;
        let tm = &tmpls[tmpl];
        let c = r.below(cfg.clients as u64) as usize;
        let u = r.f64() * self.servers.acc;
        let s = self.servers.cdf.partition_point(|&x| x < u).min(self.servers.addrs.len() - 1);
        let (client, server) = (client_ip(c as u32), self.servers.addrs[s].0);
        let port = self.ephemeral_port(&mut r, c, client, server, tm.server_port)?;
        let rtt = r.log_uniform(4e6, 160e6) as i64;
        let bps = r.log_uniform(2e6, 200e6);
        let plan = if concurrent.is_some() || fail {
            Plan { msgs: Vec::new(), close: Close::None, linger: 0 }
        } else {
            let bulk = sample_bulk_bytes(&mut r);
            let upload = r.chance(cfg.upload_share);
            let close = if r.chance(cfg.rst_share) { Close::Rst } else { Close::Template };
            let linger = if r.chance(cfg.keepalive_share) { r.log_uniform(1e9, 60e9) } else { r.log_uniform(2e5, 2e7) } as i64;
            Plan { msgs: plan_messages(&mut r, bulk, upload, rtt), close, linger }
        };
        let ep = Endpoints { client, server, cport: port, sport: tm.server_port, ttl: [64, self.servers.addrs[s].1], server_idx: s };
        let mut sess = Session::new(uid, tmpl, ep, self.next_arrival, rtt, bps, plan, r);
        if let Some(t) = sess.peek(tm) {
            let slot = match self.free.pop() {
                Some(i) => {
                    self.slab[i] = Some(sess);
                    i
                }
                None => {
                    self.slab.push(Some(sess));
                    self.slab.len() - 1
                }
            };
            self.heap.push(Reverse((t, uid, slot)));
        }
        self.next_arrival += self.arng.exponential(self.arrival_mean_ns).max(1.0) as i64;
        Ok(())
    }

    /// The ephemeral port of client `c`'s new session: per client, moving up
    /// by small random steps, unique among open tuples.
    fn ephemeral_port(&mut self, r: &mut Rng, c: usize, client: [u8; 4], server: [u8; 4], sport: u16) -> Result<u16> {
        let mut port = self.next_port[c];
        if port == 0 {
            port = 32768 + (rng::splitmix64(self.cfg.seed ^ (STREAM_PORTS << 56) ^ c as u64) % 28232) as u16;
        }
        let mut tries = 0u32;
        loop {
            port = if port >= 60999 { 32768 } else { port + 1 + r.below(4) as u16 };
            if self.tuples.insert(tuple_key(client, port, server, sport)) {
                break;
            }
            tries += 1;
            if tries > 65536 {
                bail!("no free 5-tuple for client {}: raise --clients or --servers", c);
            }
        }
        self.next_port[c] = port;
        Ok(port)
    }

    /// Write the earliest next packet of the open sessions. Returns false
    /// when there is none left, or the size limit is reached.
    fn next_packet(&mut self) -> Result<bool> {
        let Some(Reverse((_, _, slot))) = self.heap.pop() else { return Ok(false) };
        let Some(sess) = self.slab[slot].as_mut() else { bail!("internal: empty session slot") };
        let tm = &self.tmpls[sess.tmpl];
        let Some((t, is_tmpl)) = sess.pop(tm, &self.pool, &mut self.buf) else { bail!("internal: session with no packet") };
        sess.popped += 1;
        let sum = &mut self.sum;
        if t >= 0 {
            if !self.w.write(t, &self.buf)? {
                sum.size_limit_reached = true;
                return Ok(false);
            }
            self.first_ts.get_or_insert(t);
            self.last_ts = t;
            sum.packets += 1;
            if is_tmpl {
                sum.template_packets += 1;
            }
        }
        if !sess.started && t >= 0 {
            sess.started = true;
            if sess.popped > 1 {
                sum.sessions_midstream += 1;
            } else {
                sum.sessions += 1;
                if !tm.established {
                    sum.handshake_sessions_failed += 1;
                }
            }
            let ci = client_index(sess.ep.client);
            if let Some(u) = self.used_client.get_mut(ci) {
                *u = true;
            }
            self.used_server[sess.ep.server_idx] = true;
        }
        match sess.peek(tm) {
            Some(t2) => self.heap.push(Reverse((t2, sess.uid, slot))),
            None => {
                let concurrent = self.cfg.concurrent_flows;
                if concurrent.is_none() && sess.started {
                    sum.sessions_closed += 1;
                }
                if concurrent.is_none() {
                    let ep = &sess.ep;
                    self.tuples.remove(&tuple_key(ep.client, ep.cport, ep.server, ep.sport));
                }
                self.slab[slot] = None;
                self.free.push(slot);
            }
        }
        Ok(true)
    }

    /// The summary, and the output flushed.
    fn finish(self) -> Result<(Summary, W)> {
        let Gen { cfg, mut sum, mut w, used_client, used_server, first_ts, last_ts, .. } = self;
        sum.sessions_open_at_end = match cfg.concurrent_flows {
            Some(_) => sum.sessions,
            None => (sum.sessions + sum.sessions_midstream).saturating_sub(sum.sessions_closed),
        };
        if cfg.concurrent_flows.is_some() {
            sum.sessions_closed = 0;
        }
        sum.clients = used_client.iter().filter(|&&u| u).count() as u64;
        sum.servers = used_server.iter().filter(|&&u| u).count() as u64;
        sum.bytes = w.written;
        sum.first_ts = first_ts.unwrap_or(0) as f64 / 1e9;
        sum.last_ts = last_ts as f64 / 1e9;
        w.w.flush()?;
        Ok((sum, w.w))
    }
}

fn client_index(a: [u8; 4]) -> usize {
    ((a[1] as usize) << 8 | a[2] as usize) * 254 + a[3] as usize - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Vec<Template> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
        load_templates(&dir).expect("testbed captures")
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G").ok(), Some(2 << 30));
        assert_eq!(parse_size("50m").ok(), Some(50 << 20));
        assert_eq!(parse_size("1000").ok(), Some(1000));
        assert!(parse_size("2X").is_err());
    }

    #[test]
    fn client_addresses_round_trip() {
        for i in [0u32, 1, 253, 254, 20_000, 254 * 65536 - 1] {
            assert_eq!(client_index(client_ip(i)), i as usize);
        }
    }

    #[test]
    fn same_seed_same_bytes_and_valid_records() {
        let t = templates();
        let cfg = Config { size_limit: 3 << 20, seed: 9, ..Config::default() };
        let (s1, a) = generate(&cfg, &t, Vec::new()).expect("generate");
        let (_, b) = generate(&cfg, &t, Vec::new()).expect("generate");
        assert_eq!(a, b);
        assert!(s1.size_limit_reached && a.len() as u64 <= cfg.size_limit);
        let other = Config { seed: 10, ..cfg };
        let (_, c) = generate(&other, &t, Vec::new()).expect("generate");
        assert_ne!(a, c);
        // timestamps non-decreasing, checksums valid
        let mut o = 24;
        let mut last = 0u64;
        while o + 16 <= a.len() {
            let ts = u32::from_le_bytes([a[o], a[o + 1], a[o + 2], a[o + 3]]) as u64 * 1_000_000
                + u32::from_le_bytes([a[o + 4], a[o + 5], a[o + 6], a[o + 7]]) as u64;
            assert!(ts >= last);
            last = ts;
            let len = u32::from_le_bytes([a[o + 8], a[o + 9], a[o + 10], a[o + 11]]) as usize;
            let f = &a[o + 16..o + 16 + len];
            assert_eq!(net::fold(net::sum_be(0, &f[14..34])), 0);
            let ip_total = net::rd16(f, 16) as usize;
            let seg = &f[34..14 + ip_total];
            let acc = net::sum_be(net::sum_be(0, &f[26..34]) + 6 + seg.len() as u64, seg);
            assert_eq!(net::fold(acc), 0);
            o += 16 + len;
        }
        assert_eq!(o, a.len());
    }
}
