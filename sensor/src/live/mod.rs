//! `pinwatch live`: capture from network interfaces, for SPAN ports, TAPs
//! and VPN concentrators. Operations are documented in `docs/live.md`.
//!
//! Two backends:
//!
//! - **AF_PACKET** (default on Linux, in every build): TPACKET_V3 rings,
//!   `--workers N` threads in one `PACKET_FANOUT` group, each with its own
//!   flow table, one reporting desk ([`workers`]); `--fanout-group` shares
//!   the group with other pinwatch processes.
//! - **libpcap** (`--backend pcap`, feature `live`): BPF capture filters,
//!   `-i any`, several interfaces merged in time order; one flow table.
//!
//! libpcap threads: one reader per interface ([`reader`]) copies packets out of
//! libpcap into batches and hands them to the engine thread through a queue
//! bounded in packets and bytes; when it is full the reader drops and counts
//! (it never blocks, and memory never grows without bound). The engine thread
//! merges the interfaces in time order (`merge`), runs the same engine as
//! replay ([`crate::run::engine::Engine`], one flow table), writes the
//! records, moves the clock on an idle link with the wall clock (so flows
//! time out), writes a `stats` record every `--stats-interval`, and reacts
//! to signals:
//!
//! - SIGINT, SIGTERM: stop the readers, process what they captured, end every
//!   open flow with close kind `shutdown`, write the final stats record,
//!   exit 0. A second one exits at once (status 1).
//! - SIGHUP: reopen the output file (logrotate) and reload `--config`
//!   (bypass list included); flows keep their state. A config that does not
//!   load is reported and the old one kept.
//! - SIGUSR1: write a stats record now.

// Without libpcap, the pieces only its loop uses are unused.
#![cfg_attr(not(feature = "live"), allow(unused_imports, dead_code))]

pub mod afpacket;
pub mod ebpf_bypass;
pub mod fanout_cbpf;
#[cfg(feature = "live")]
pub mod merge;
pub mod metrics;
pub mod privs;
pub mod reader;
pub mod state;
pub mod workers;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;

#[cfg(feature = "live")]
use crate::capture::Packet;
use crate::enrich::feed_source::{DrainEnd, FeedMsg, FeedPump, FeedSource, PumpConfig};
use crate::flow::{CloseKind, Limits};
use crate::output::{Output, OutputSpec, OutputStats, Rotation};
#[cfg(feature = "live")]
use crate::run::engine::Engine;
use crate::run::engine::{Reporter, WriteOut};
use crate::run::pipeline::Options;
#[cfg(feature = "live")]
use merge::{Merger, Msg};
use reader::{wall_ns, IfaceStats};
#[cfg(feature = "live")]
use reader::{IfaceCounters, Queue, Reader, POKE_AFTER_NS, READ_TIMEOUT_MS};

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// AF_PACKET for one named interface without `-f`; libpcap otherwise.
    Auto,
    /// AF_PACKET TPACKET_V3 rings (Linux).
    Afpacket,
    /// libpcap (a build with feature `live`).
    Pcap,
}

/// Flags of `pinwatch live`.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// Interface to capture on (`any` for all); repeatable: several interfaces
    /// are one capture, merged in time order (e.g. the two ports of a TAP).
    #[arg(short = 'i', long = "interface", required = true)]
    pub interfaces: Vec<String>,
    /// Capture backend: `afpacket` (one interface; --workers, --fanout-group),
    /// `pcap` (BPF filters, `any`, several interfaces; a build with feature
    /// `live`), or `auto`: afpacket unless a filter, `any` or several
    /// interfaces ask for libpcap.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// AF_PACKET: worker threads, each with its own ring and flow table, in
    /// one fanout group; the findings see every worker's flows.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// AF_PACKET: join this fanout group (0-65535), shared with the other
    /// pinwatch processes on the interface that name the same group and
    /// --fanout mode. Default: a group of this process's own.
    #[arg(long)]
    pub fanout_group: Option<u16>,
    /// AF_PACKET: how the group shares packets out: `hash` (the kernel's flow
    /// hash) or `client` (every flow of one client to one socket: needed for
    /// the fallback finding across processes; see docs/live.md).
    #[arg(long, value_enum, default_value_t = afpacket::Fanout::Hash)]
    pub fanout: afpacket::Fanout,
    /// AF_PACKET: drop the later packets of the flows whose handshake has
    /// been read in the kernel, before they reach the ring (an eBPF socket
    /// filter; SYN, FIN and RST still come through), and count them there
    /// for the flow records (see docs/live.md, Kernel bypass). Needs root or
    /// CAP_BPF at start; when the kernel refuses, the capture runs without it
    /// and the stats record says why.
    #[arg(long)]
    pub kernel_bypass: bool,
    /// AF_PACKET: flows the kernel bypass table holds at most (up to four
    /// entries of about 200 bytes of kernel memory each, allocated as used);
    /// beyond it flows are not bypassed (counted in
    /// `live.kernel_bypass.refused`).
    #[arg(long, default_value_t = 65536)]
    pub kernel_bypass_flows: u32,
    /// Written as every record's `host` (Suricata's `sensor-name`). Default:
    /// the machine's host name.
    #[arg(long)]
    pub sensor_name: Option<String>,
    /// BPF capture filter (tcpdump syntax), applied to every interface.
    #[arg(short = 'f', long)]
    pub filter: Option<String>,
    /// Bytes captured per packet.
    #[arg(long, default_value_t = 65535)]
    pub snaplen: u32,
    /// Do not put the interfaces in promiscuous mode.
    #[arg(long)]
    pub no_promisc: bool,
    /// Kernel capture buffer per interface (libpcap) or per worker ring
    /// (AF_PACKET), bytes (K/M/G suffixes).
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    pub buffer_size: u64,
    /// libpcap immediate mode: packets are delivered as they arrive, not in
    /// blocks (lower latency, more wake-ups).
    #[arg(long)]
    pub immediate: bool,
    /// Configuration file (TOML; see docs/config.md); reloaded on SIGHUP.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// MDM/device feed (JSON lines, enrichment/FEED.md), read once at start; repeatable.
    #[arg(long = "feed")]
    pub feeds: Vec<PathBuf>,
    /// MDM/device feed file followed as it grows for the whole run (tail -F:
    /// truncation and rotation are followed); repeatable.
    #[arg(long = "feed-follow")]
    pub feed_follow: Vec<PathBuf>,
    /// MDM/device feed over HTTP(S), polled with a cursor (`since`,
    /// `X-Feed-Next`) for the whole run, with retries and backoff; repeatable.
    #[arg(long = "feed-url")]
    pub feed_urls: Vec<String>,
    /// How often a followed feed file is checked for growth, and a caught-up
    /// HTTP feed polled again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub feed_poll: Duration,
    /// At start, the longest wait for the followed and polled feeds to deliver
    /// what they already hold before packets are processed (the interfaces are
    /// open; the kernel ring holds the packets meanwhile).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub feed_wait: Duration,
    /// How long, in capture time, a session with findings is kept so that a
    /// late feed batch can revise its AN1725 alert (same alert_id, higher revision).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub late_window: Duration,
    /// Where EVE lines go: `-` (stdout), a file path, or `unix:PATH` (a listening Unix stream socket).
    #[arg(short = 'o', long, default_value = "-")]
    pub output: String,
    /// Rotate the output file at this size (K/M/G suffixes).
    #[arg(long, value_parser = parse_size)]
    pub rotate_size: Option<u64>,
    /// Rotate the output file on multiples of this interval since the epoch (`3600`, `30m`, `1h`, `1d`).
    #[arg(long, value_parser = parse_duration)]
    pub rotate_interval: Option<Duration>,
    /// Keep at most this many rotated files.
    #[arg(long)]
    pub rotate_keep: Option<usize>,
    /// Seconds between stats records (0: only the final one).
    #[arg(long, default_value_t = 60.0)]
    pub stats_interval: f64,
    /// After opening the interfaces, become this user (`NAME` or `NAME:GROUP`); needs root.
    #[arg(long)]
    pub user: Option<String>,
    /// Packets the queue between the readers and the engine may hold; beyond it they are dropped and counted.
    #[arg(long, default_value_t = 65536)]
    pub queue_packets: usize,
    /// Bytes the queue between the readers and the engine may hold (K/M/G).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub queue_bytes: u64,
    /// With several interfaces, the longest a packet waits for a quiet
    /// interface before it is processed out of the time order, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub reorder_ms: u64,
    /// Most flows tracked at once; beyond it the flow nearest its timeout is evicted (counted).
    #[arg(long, default_value_t = Limits::default().max_flows)]
    pub max_flows: usize,
    /// Idle timeout in seconds for flows that exchanged data.
    #[arg(long, default_value_t = 600)]
    pub tcp_timeout: u64,
    /// Idle timeout in seconds for flows with no payload yet.
    #[arg(long, default_value_t = 30)]
    pub new_timeout: u64,
    /// Out-of-order bytes held per direction while waiting for a hole to fill.
    #[arg(long, default_value_t = 64 * 1024)]
    pub reassembly_cap: usize,
    /// Bytes all tracked flows may hold in reassembly and handshake buffers.
    #[arg(long, default_value_t = Limits::default().max_buffer_bytes)]
    pub buffer_budget: usize,
    /// Output format: `eve` (default) or `ocsf` (alerts only, no stats records).
    #[arg(long, default_value = "eve", value_parser = ["eve", "ocsf"])]
    pub format: String,
    /// Serve the stats counters in the Prometheus text format at
    /// `http://ADDR/metrics` (e.g. `127.0.0.1:9425`); see docs/operations.md.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Stop after this many seconds (as on SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many packets (as on SIGTERM).
    #[arg(long)]
    pub count: Option<u64>,
}

/// `pinwatch-live ARGS` as its own program (the tests' binary).
#[derive(Parser, Debug)]
#[command(name = "pinwatch live", about = "Capture from interfaces and write EVE JSON lines (see docs/live.md)")]
struct Standalone {
    #[command(flatten)]
    args: LiveArgs,
}

/// Parse `args` (program name first) as `pinwatch live` flags and run.
pub fn main_from_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let s = Standalone::parse_from(args);
    main(s.args)
}

/// Run and map the outcome to an exit status: 0 done, 1 an interface failed
/// during the run (everything captured was reported), 2 nothing could be run.
pub fn main(args: LiveArgs) -> ExitCode {
    match run(&args) {
        Ok(summary) => {
            if summary.failed_interfaces.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("pinwatch: capture failed on {}", summary.failed_interfaces.join(", "));
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("pinwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The machine's host name (Linux), for `host` when no `--sensor-name`
/// is given; `unknown` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Sizes: `1048576`, `64K`, `32M`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("`{s}`: size suffix must be K, M or G")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok().and_then(|n| n.checked_mul(mul)).ok_or_else(|| format!("`{s}` is not a size"))
}

/// Durations: seconds (`90`, `0.5`), or with `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86400.0),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a duration"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("`{s}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

/// What a run ended with.
#[derive(Debug)]
pub struct LiveSummary {
    /// The final stats record, as written.
    pub stats: serde_json::Value,
    /// Interfaces whose capture failed during the run.
    pub failed_interfaces: Vec<String>,
}

/// The `live` part of a stats record.
#[derive(Debug, Serialize)]
pub struct LiveStats {
    /// Seconds since the capture started.
    pub uptime_s: f64,
    /// The last record of the run.
    #[serde(rename = "final")]
    pub final_record: bool,
    /// `interfaces[]`: each interface and its counters.
    pub interfaces: Vec<IfaceStats>,
    /// `afpacket` or `pcap`.
    pub backend: &'static str,
    /// AF_PACKET worker threads (1 with libpcap).
    pub workers: usize,
    /// AF_PACKET: the fanout group ID, when there is one (several workers, or
    /// `--fanout-group`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout_group: Option<u16>,
    /// AF_PACKET: every worker's ring, with the kernel's counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<workers::RingStats>,
    /// Sums over the interfaces: libpcap's received/dropped/if_dropped.
    pub received: u64,
    /// Sum of the interfaces' `dropped`.
    pub dropped: u64,
    /// Sum of the interfaces' `if_dropped`.
    pub if_dropped: u64,
    /// Packets dropped because the engine's queue was full, over all interfaces.
    pub reader_queue_drops: u64,
    /// `queue`: the readers' queue to the engine.
    pub queue: QueueStats,
    /// `output`: the sink's counters.
    pub output: OutputStats,
    /// SIGHUP configuration reloads that worked.
    pub config_reloads: u64,
    /// SIGHUP configuration reloads that were refused (the old one kept).
    pub config_reload_errors: u64,
    /// `signals`: signals received.
    pub signals: SignalStats,
    /// `--feed-follow` and `--feed-url` sources: lines taken, errors.
    pub feeds: Vec<FeedSourceStats>,
    /// The state file (`state_file`): loads, writes, what was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<state::StateStats>,
    /// AF_PACKET with `--kernel-bypass`: flows and packets the kernel took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_bypass: Option<ebpf_bypass::BypassStats>,
    /// Written as `stats.feed`: the health of each `--feed-url`.
    #[serde(skip)]
    pub feed: FeedHealthOut,
}

/// `stats.feed`: the health of each `--feed-url` ([`crate::enrich::feed_http`]).
#[derive(Debug, Default, Serialize)]
pub struct FeedHealthOut {
    /// `sources[]`: one entry per `--feed-url`.
    pub sources: Vec<crate::enrich::feed_http::SourceHealth>,
}

/// `stats.live.queue`: the queue between the readers and the engine.
#[derive(Debug, Serialize)]
pub struct QueueStats {
    /// `--queue-packets`: most packets queued.
    pub packets_limit: usize,
    /// `--queue-bytes`: most bytes queued.
    pub bytes_limit: usize,
    /// High-water mark of packets queued.
    pub packets_max: usize,
    /// High-water mark of bytes queued.
    pub bytes_max: usize,
    /// Packets waiting now (queue and merge).
    pub packets_now: usize,
}

/// `stats.live.signals`: signals received during the run.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct SignalStats {
    /// SIGHUPs received.
    pub sighup: u64,
    /// SIGUSR1s received.
    pub sigusr1: u64,
}

struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let s = Signals {
            term: Arc::new(AtomicBool::new(false)),
            hup: Arc::new(AtomicBool::new(false)),
            usr1: Arc::new(AtomicBool::new(false)),
        };
        for sig in [SIGINT, SIGTERM] {
            // The second one ends the process at once.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&s.term))?;
            signal_hook::flag::register(sig, Arc::clone(&s.term))?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&s.hup))?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&s.usr1))?;
        Ok(s)
    }
}

/// The engine options of a live run (the config file loaded).
pub fn options(args: &LiveArgs) -> anyhow::Result<Options> {
    let mut limits = Limits { max_flows: args.max_flows.max(1), max_buffer_bytes: args.buffer_budget, ..Limits::default() };
    limits.established_timeout_ns = (args.tcp_timeout as i64).saturating_mul(1_000_000_000);
    limits.new_timeout_ns = (args.new_timeout as i64).saturating_mul(1_000_000_000);
    limits.reassembly.max_bytes = args.reassembly_cap;
    let config = match &args.config {
        Some(p) => crate::config::Config::load(p)?,
        None => crate::config::Config::default(),
    };
    config.tuning.warn();
    // `--feed-url` is polled for the whole run (`Feeds`), not pulled once as in replay.
    Ok(Options {
        limits,
        config,
        progress: false,
        stats: true,
        feeds: args.feeds.clone(),
        feed_urls: Vec::new(),
        ocsf: args.format == "ocsf",
        threads: 1,
        chunk_bytes: 0,
        reporter_thread: None,
        sensor_name: Some(args.sensor_name.clone().unwrap_or_else(hostname)),
        live: true,
    })
}

/// The feed sources followed for the whole run, each on its own pump thread
/// (`feed_source`): lines are taken without ever blocking the packet path.
struct Feeds {
    pumps: Vec<(FeedSource, FeedPump, FeedSourceStats)>,
    last_apply: Instant,
}

/// One streaming feed source in the `live.feeds` part of a stats record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedSourceStats {
    /// `source`: the followed file or the URL.
    pub source: String,
    /// `lines`: lines taken from it.
    pub lines: u64,
    /// `errors`: errors it reported.
    pub errors: u64,
    /// `last_error`: the text of its last error, if any.
    pub last_error: Option<String>,
    /// The source delivered everything it held at least once.
    pub caught_up: bool,
}

/// Batches of feed lines are applied (and the kept sessions re-enriched) at most this often.
const FEED_APPLY_EVERY: Duration = Duration::from_millis(500);
/// Messages taken from one source per engine-loop turn, at most.
const FEED_TAKE_MAX: usize = 8192;

impl Feeds {
    /// Start every source. A `--feed-url` whose first request fails in a
    /// way retrying cannot fix (DNS, refused, TLS, 401/403, 404) is an
    /// error at once (exit status 2); later failures are retried.
    fn start(args: &LiveArgs, http: Option<Arc<crate::config::http::HttpTransport>>) -> anyhow::Result<Feeds> {
        let config = PumpConfig { poll_interval: args.feed_poll.max(Duration::from_millis(10)), http, ..PumpConfig::default() };
        let deadline = Instant::now() + args.feed_wait;
        let sources = args
            .feed_follow
            .iter()
            .map(|p| FeedSource::Follow(p.clone()))
            .chain(args.feed_urls.iter().map(|u| FeedSource::Http { url: u.clone() }));
        let mut pumps = Vec::new();
        for src in sources {
            let pump = FeedPump::start_with(src.clone(), config.clone()).with_context(|| format!("feed {src}"))?;
            if let FeedSource::Http { url } = &src {
                crate::enrich::feed_source::first_answer(&pump, url, deadline)?;
            }
            let st = FeedSourceStats { source: src.to_string(), ..Default::default() };
            pumps.push((src, pump, st));
        }
        Ok(Feeds { pumps, last_apply: Instant::now() })
    }

    fn is_empty(&self) -> bool {
        self.pumps.is_empty()
    }

    fn take(reporter: &mut Reporter, st: &mut FeedSourceStats, m: FeedMsg) {
        match m {
            FeedMsg::Line { text, line_no } => {
                st.lines += 1;
                reporter.handle_feed_line_at(&text, line_no);
            }
            FeedMsg::Error(e) => {
                st.errors += 1;
                eprintln!("pinwatch: feed {}: {e}", st.source);
                st.last_error = Some(e);
            }
            FeedMsg::CaughtUp => st.caught_up = true,
        }
    }

    /// Before capture: what every source holds now, up to `wait` in all.
    fn catch_up(&mut self, reporter: &mut Reporter, out: &mut Output, wait: Duration) {
        let deadline = Instant::now() + wait;
        for (src, pump, st) in &mut self.pumps {
            let left = deadline.saturating_duration_since(Instant::now());
            let end = pump.drain_with(left, |m| Self::take(reporter, st, m));
            match end {
                DrainEnd::CaughtUp => st.caught_up = true,
                DrainEnd::Finished => {}
                DrainEnd::TimedOut => eprintln!(
                    "pinwatch: feed {src}: not caught up after {:.1} s; going on, later lines revise the alerts",
                    wait.as_secs_f64()
                ),
            }
        }
        reporter.apply_feed(out);
        self.last_apply = Instant::now();
    }

    /// In the loop: take what has arrived; apply it when a batch is due
    /// (`force`: now, e.g. before the shutdown flush).
    fn poll(&mut self, reporter: &mut Reporter, out: &mut Output, force: bool) {
        for (_, pump, st) in &mut self.pumps {
            for _ in 0..FEED_TAKE_MAX {
                let Some(m) = pump.try_recv() else { break };
                Self::take(reporter, st, m);
            }
        }
        if reporter.feed_pending() > 0 && (force || self.last_apply.elapsed() >= FEED_APPLY_EVERY) {
            reporter.apply_feed(out);
            self.last_apply = Instant::now();
        }
    }

    fn stats(&self) -> Vec<FeedSourceStats> {
        self.pumps.iter().map(|(_, _, st)| st.clone()).collect()
    }

    fn health(&self) -> FeedHealthOut {
        FeedHealthOut {
            sources: self.pumps.iter().filter(|(src, _, _)| matches!(src, FeedSource::Http { .. })).map(|(_, p, _)| p.health()).collect(),
        }
    }

    fn stop(&mut self) {
        for (_, pump, _) in &mut self.pumps {
            pump.stop();
        }
    }
}

#[cfg(feature = "live")]
/// What to add to libpcap's reason for not opening an interface: the
/// privilege hint only when it is a privilege problem (a missing interface
/// is not one, and root has the privileges anyway).
fn open_hint(pcap_error: &str) -> &'static str {
    let m = pcap_error.to_ascii_lowercase();
    if m.contains("no such device") || m.contains("doesn't exist") || m.contains("does not exist") {
        " (no such interface; `ip link` lists them)"
    } else if m.contains("permission") || m.contains("not permitted") {
        " (needs root or CAP_NET_RAW)"
    } else {
        ""
    }
}

/// Open one interface as the flags say.
#[cfg(feature = "live")]
fn open_interface(name: &str, args: &LiveArgs) -> anyhow::Result<pcap::Capture<pcap::Active>> {
    let to_i32 = |v: u64, what: &str| i32::try_from(v).with_context(|| format!("{what} {v} is too large"));
    let mut cap = pcap::Capture::from_device(name)
        .with_context(|| format!("interface {name}"))?
        .snaplen(to_i32(u64::from(args.snaplen), "--snaplen")?)
        .promisc(!args.no_promisc)
        .buffer_size(to_i32(args.buffer_size, "--buffer-size")?)
        .immediate_mode(args.immediate)
        .timeout(READ_TIMEOUT_MS)
        .precision(pcap::Precision::Nano)
        .open()
        .map_err(|e| {
            let msg = e.to_string();
            anyhow::anyhow!("cannot capture on {name}: {msg}{}", open_hint(&msg))
        })?;
    if let Some(f) = &args.filter {
        cap.filter(f, true).with_context(|| format!("{name}: BPF filter `{f}`"))?;
    }
    Ok(cap)
}

/// Engine-thread timing.
const RECV_WAIT: Duration = Duration::from_millis(50);
/// The clock is moved on an idle link at most this often...
const ADVANCE_EVERY: Duration = Duration::from_millis(200);
/// ... to the wall clock less this (packets still on their way are not
/// overtaken; timeouts fire at most this late).
const ADVANCE_LAG_NS: i64 = 500_000_000;

/// The backend a run uses (`--backend auto` resolved).
pub fn backend_of(args: &LiveArgs) -> anyhow::Result<Backend> {
    let pcap_built = cfg!(feature = "live");
    let build = "a build with feature `live` (libpcap): cargo build --release -p pinwatch --features live";
    let needs_pcap = if args.interfaces.len() > 1 {
        Some("several interfaces")
    } else if args.interfaces.iter().any(|i| i == "any") {
        Some("`-i any`")
    } else if args.filter.is_some() {
        Some("a BPF filter (-f)")
    } else {
        None
    };
    let b = match (args.backend, needs_pcap) {
        (Backend::Afpacket, Some(what)) => bail!("{what} needs --backend pcap ({build})"),
        (Backend::Afpacket, None) | (Backend::Auto, None) => Backend::Afpacket,
        (Backend::Pcap, _) | (Backend::Auto, Some(_)) if pcap_built => Backend::Pcap,
        (Backend::Pcap, _) => bail!("--backend pcap needs {build}"),
        (Backend::Auto, Some(what)) => bail!("{what} needs the libpcap backend, {build}"),
    };
    if b == Backend::Pcap && (args.workers > 1 || args.fanout_group.is_some() || args.kernel_bypass) {
        bail!("--workers, --fanout-group and --kernel-bypass are AF_PACKET options (--backend afpacket)");
    }
    Ok(b)
}

/// Capture until a signal, `--duration` or `--count`, with the backend
/// [`backend_of`] picks; see the module documentation.
pub fn run(args: &LiveArgs) -> anyhow::Result<LiveSummary> {
    if args.interfaces.is_empty() {
        bail!("no interface given (-i)");
    }
    if !(args.stats_interval.is_finite() && args.stats_interval >= 0.0) {
        bail!("--stats-interval must be a number of seconds");
    }
    match backend_of(args)? {
        Backend::Pcap => run_pcap(args),
        _ => workers::run(args),
    }
}

/// The libpcap loop (one flow table).
#[cfg(not(feature = "live"))]
fn run_pcap(_args: &LiveArgs) -> anyhow::Result<LiveSummary> {
    bail!("this build has no libpcap backend")
}

/// The libpcap loop (one flow table): open the interfaces and drop the
/// privileges, then output, engine, state and feeds as the unprivileged
/// user, then one reader thread per interface and the engine loop
/// ([`PcapRun`]) on this thread until a signal, `--duration` or `--count`.
#[cfg(feature = "live")]
fn run_pcap(args: &LiveArgs) -> anyhow::Result<LiveSummary> {
    let opts = options(args)?;
    let (spec, rotation) = output_of(args, &opts)?;

    // 1. Interfaces (needs the privileges), then drop them.
    let mut caps = Vec::new();
    for name in &args.interfaces {
        let cap = open_interface(name, args)?;
        let linktype = reader::linktype_of_dlt(cap.get_datalink().0);
        caps.push((name.clone(), linktype, cap));
    }
    let signals = Signals::register()?;
    // Bound before the privileges go, so any port will do.
    let metrics = args.metrics_listen.as_deref().map(metrics::MetricsServer::start).transpose()?;
    let privs = privs::drop_privileges(args.user.as_deref())?;
    let described: Vec<String> = caps.iter().map(|(n, lt, _)| format!("{n} (linktype {lt})")).collect();
    eprintln!("pinwatch: capturing on {}; {privs}", described.join(", "));

    // 2. Output and engine, as the unprivileged user.
    let mut out = Output::open(&spec, rotation).with_context(|| format!("output {}", args.output))?;
    let names: Vec<String> = args.interfaces.clone();
    let mut engine = Engine::new(&opts, names.clone())?;
    let state = load_state(&opts, &mut engine.reporter);
    let state_every = Duration::from_secs(opts.config.state_interval_s.max(1));
    let last_state = Instant::now();
    let feeds = start_feeds(args, &opts, &mut engine.reporter, &mut out)?;

    // 3. Readers, then 4. the engine loop.
    let readers = PcapReaders::spawn(caps, args)?;
    let started = Instant::now();
    let stats_every = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let mut run = PcapRun {
        args,
        ocsf: opts.ocsf,
        merger: Merger::new(names.len()),
        names,
        engine,
        out,
        feeds,
        state,
        state_every,
        last_state,
        readers,
        started,
        stats_every,
        next_stats: stats_every.map(|d| started + d),
        last_advance: Instant::now(),
        max_hold_ns: i64::try_from(args.reorder_ms).unwrap_or(i64::MAX / 2).saturating_mul(1_000_000),
        reloads: Reloads::default(),
        sig: SignalStats::default(),
        processed: 0,
        stopping: false,
    };
    loop {
        run.check_stop(&signals);
        run.poke_readers();
        if signals.hup.swap(false, Relaxed) {
            run.on_sighup();
        }
        let got = run.take_packets();
        // Feed lines that arrived meanwhile.
        run.feeds.poll(&mut run.engine.reporter, &mut run.out, false);
        run.advance_idle(got);
        run.out.maintain();
        run.periodic(&signals, metrics.as_ref());
        if run.stopping && run.merger.all_done() && run.readers.rx.is_empty() && run.merger.is_empty() {
            break;
        }
        if let Some(e) = run.engine.reporter.take_write_error() {
            // Output never fails towards the engine; kept for completeness.
            eprintln!("pinwatch: output: {e}");
        }
    }
    Ok(run.finish(metrics.as_ref()))
}

/// `--output` as an output spec (a sink is named after the sensor: the
/// syslog HOSTNAME) and `--rotate-*`, which apply to a file output only.
#[cfg(feature = "live")]
fn output_of(args: &LiveArgs, opts: &Options) -> anyhow::Result<(OutputSpec, Rotation)> {
    let mut spec = OutputSpec::parse(&args.output);
    if let (OutputSpec::Sink(s), Some(name)) = (&mut spec, &opts.sensor_name) {
        s.set_sensor_name(name); // the syslog HOSTNAME
    }
    let rotation = Rotation { size: args.rotate_size, interval: args.rotate_interval, keep: args.rotate_keep };
    if rotation != Rotation::default() && !matches!(spec, OutputSpec::File(_)) {
        bail!("--rotate-* apply to a file output only");
    }
    Ok((spec, rotation))
}

/// State kept from the last run (bindings, learned profile), loaded into the
/// reporter's enricher (one made for it if the run has none). Called before
/// the feeds start, so that what they say now overrides it. Both backends.
fn load_state(opts: &Options, reporter: &mut Reporter) -> Option<state::StateFile> {
    opts.config.state_file.as_ref().map(|p| {
        let mut en = reporter.enricher.take().unwrap_or_else(|| {
            let mut en = crate::enrich::Enricher::from_events(Vec::new(), &Default::default());
            en.config_baselines = opts.config.baselines.clone();
            en.context_map = opts.config.feed.contexts.clone();
            en
        });
        let sf = state::StateFile::load(p, &mut en, reporter.profile_mut());
        reporter.enricher = Some(en);
        sf
    })
}

/// Start the feeds; if there are any, switch the reporter to a streaming
/// feed (`--late-window`) and take what they hold now (up to `--feed-wait`).
/// Both backends.
fn start_feeds(args: &LiveArgs, opts: &Options, reporter: &mut Reporter, out: &mut Output) -> anyhow::Result<Feeds> {
    let mut feeds = Feeds::start(args, opts.config.feed.http.clone())?;
    if !feeds.is_empty() {
        let window = i64::try_from(args.late_window.as_nanos()).unwrap_or(i64::MAX / 2);
        reporter.enable_streaming_feed(window);
        feeds.catch_up(reporter, out, args.feed_wait);
    }
    Ok(feeds)
}

/// Configuration reloads on SIGHUP, counted for the stats record.
#[derive(Debug, Default, Clone, Copy)]
struct Reloads {
    ok: u64,
    refused: u64,
}

impl Reloads {
    /// SIGHUP, for both backends: reopen the output and reload `--config`
    /// into `reporter`, keeping the old configuration if the new one does
    /// not load. Returns true when a new one was loaded: the caller hands
    /// the reporter's new preparer to whatever prepares sessions.
    fn on_sighup(&mut self, config: Option<&std::path::Path>, out: &mut Output, reporter: &mut Reporter) -> bool {
        out.reopen();
        let Some(p) = config else {
            eprintln!("pinwatch: SIGHUP: output reopened");
            return false;
        };
        match crate::config::Config::load(p) {
            Ok(cfg) => {
                cfg.tuning.warn();
                reporter.set_config(cfg);
                self.ok += 1;
                eprintln!("pinwatch: SIGHUP: output reopened, {} reloaded", p.display());
                true
            }
            Err(e) => {
                self.refused += 1;
                eprintln!("pinwatch: SIGHUP: output reopened; keeping the old configuration: {e:#}");
                false
            }
        }
    }
}

/// The reader threads of a libpcap run (one per interface) and what the
/// engine loop shares with them.
#[cfg(feature = "live")]
struct PcapReaders {
    queue: Arc<Queue>,
    rx: crossbeam::channel::Receiver<Msg>,
    stop: Arc<AtomicBool>,
    counters: Vec<Arc<IfaceCounters>>,
    linktypes: Vec<u32>,
    handles: Vec<std::thread::JoinHandle<()>>,
    /// Per reader: its wake-up handle, its last message, our last wake-up.
    pokes: Vec<(pcap::BreakLoop, Arc<AtomicI64>, i64)>,
}

#[cfg(feature = "live")]
impl PcapReaders {
    /// One [`Reader`] thread per opened interface, all sending to one
    /// channel through one queue bounded by `--queue-packets`/`--queue-bytes`.
    fn spawn(caps: Vec<(String, u32, pcap::Capture<pcap::Active>)>, args: &LiveArgs) -> anyhow::Result<PcapReaders> {
        let queue = Arc::new(Queue::new(args.queue_packets.max(1), usize::try_from(args.queue_bytes).unwrap_or(usize::MAX).max(1)));
        let (tx, rx) = crossbeam::channel::bounded::<Msg>(4096);
        let stop = Arc::new(AtomicBool::new(false));
        let idle_lag_ns = i64::from(READ_TIMEOUT_MS) * 1_000_000 + 50_000_000;
        let mut readers =
            PcapReaders { queue, rx, stop, counters: Vec::new(), linktypes: Vec::new(), handles: Vec::new(), pokes: Vec::new() };
        for (source, (name, linktype, mut cap)) in caps.into_iter().enumerate() {
            let c = Arc::new(IfaceCounters::default());
            readers.counters.push(Arc::clone(&c));
            readers.linktypes.push(linktype);
            let activity = Arc::new(AtomicI64::new(wall_ns()));
            readers.pokes.push((cap.breakloop_handle(), Arc::clone(&activity), i64::MIN));
            let r = Reader {
                source,
                linktype,
                cap,
                tx: tx.clone(),
                queue: Arc::clone(&readers.queue),
                counters: c,
                stop: Arc::clone(&readers.stop),
                activity,
                idle_lag_ns,
            };
            readers.handles.push(std::thread::Builder::new().name(format!("pcap-{name}")).spawn(move || r.run())?);
        }
        drop(tx);
        Ok(readers)
    }
}

/// The engine loop of a libpcap run: everything it keeps from one turn to
/// the next.
#[cfg(feature = "live")]
struct PcapRun<'a> {
    args: &'a LiveArgs,
    names: Vec<String>,
    ocsf: bool,
    engine: Engine,
    out: Output,
    feeds: Feeds,
    state: Option<state::StateFile>,
    state_every: Duration,
    last_state: Instant,
    readers: PcapReaders,
    merger: Merger,
    started: Instant,
    stats_every: Option<Duration>,
    next_stats: Option<Instant>,
    last_advance: Instant,
    /// `--reorder-ms` in nanoseconds: the longest a packet waits for a quiet
    /// interface before it is processed out of the time order.
    max_hold_ns: i64,
    reloads: Reloads,
    sig: SignalStats,
    processed: u64,
    stopping: bool,
}

#[cfg(feature = "live")]
impl PcapRun<'_> {
    /// Signals and limits: once stopping, tell the readers (and wake them).
    fn check_stop(&mut self, signals: &Signals) {
        if signals.term.load(Relaxed)
            || self.args.duration.is_some_and(|d| self.started.elapsed() >= d)
            || self.args.count.is_some_and(|c| self.processed >= c)
            || self.out.closed()
        {
            self.stopping = true;
        }
        if self.stopping && !self.readers.stop.load(Relaxed) {
            self.readers.stop.store(true, Relaxed);
            for (b, _, _) in &self.readers.pokes {
                b.breakloop();
            }
        }
    }

    /// Wake readers blocked on an idle link, so their frontier moves on
    /// (and a stopping reader sees the stop).
    fn poke_readers(&mut self) {
        let now = wall_ns();
        for (b, activity, last) in &mut self.readers.pokes {
            let quiet = now.saturating_sub(activity.load(Relaxed).max(*last));
            if quiet >= POKE_AFTER_NS {
                *last = now;
                b.breakloop();
            }
        }
    }

    /// SIGHUP: reopen the output and reload `--config`, keeping the old
    /// configuration if the new one does not load.
    fn on_sighup(&mut self) {
        self.sig.sighup += 1;
        if self.reloads.on_sighup(self.args.config.as_deref(), &mut self.out, &mut self.engine.reporter) {
            self.engine.shard.set_preparer(self.engine.reporter.preparer());
        }
    }

    /// Take what the readers sent (waiting up to [`RECV_WAIT`] for the
    /// first message) and run every packet the merger releases in time order
    /// through the engine. Returns whether a message came.
    fn take_packets(&mut self) -> bool {
        let mut got = false;
        match self.readers.rx.recv_timeout(RECV_WAIT) {
            Ok(m) => {
                got = true;
                self.merger.push(m);
                for _ in 0..256 {
                    match self.readers.rx.try_recv() {
                        Ok(m) => self.merger.push(m),
                        Err(_) => break,
                    }
                }
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => {
                // Every reader has ended (stop, or all interfaces failed).
                self.stopping = true;
            }
        }
        let force_before = if self.stopping && self.merger.all_done() { i64::MAX } else { wall_ns().saturating_sub(self.max_hold_ns) };
        let count = self.args.count;
        let (engine, out, processed) = (&mut self.engine, &mut self.out, &mut self.processed);
        let freed = self.merger.release(force_before, |b, i| {
            if count.is_some_and(|c| *processed >= c) {
                return;
            }
            let (m, data) = b.packet(i);
            let p = Packet { ts_ns: m.ts_ns, linktype: b.linktype, data, orig_len: m.orig_len, source: b.source, offset: 0 };
            engine.packet(&p, out);
            *processed += 1;
        });
        self.readers.queue.release(freed.packets, freed.bytes);
        got
    }

    /// An idle link: time still passes (the wall clock less a lag, never
    /// past what the merger still holds).
    fn advance_idle(&mut self, got: bool) {
        if (!got || self.merger.is_empty()) && self.last_advance.elapsed() >= ADVANCE_EVERY {
            self.last_advance = Instant::now();
            let target = (wall_ns() - ADVANCE_LAG_NS).min(self.merger.watermark());
            if target != i64::MAX {
                self.engine.advance(target, &mut self.out);
            }
        }
    }

    /// What is due this turn: the state file, the metrics page, a stats
    /// record on SIGUSR1 and every `--stats-interval`.
    fn periodic(&mut self, signals: &Signals, metrics: Option<&metrics::MetricsServer>) {
        if let Some(sf) = self.state.as_mut().filter(|_| self.last_state.elapsed() >= self.state_every) {
            sf.save(self.engine.reporter.enricher.as_ref(), self.engine.reporter.profile());
            self.last_state = Instant::now();
        }
        if let Some(m) = metrics.filter(|m| m.due()) {
            m.publish(&metrics::stats_body(&self.engine.stats(), &self.live_stats(false)));
        }
        if signals.usr1.swap(false, Relaxed) {
            self.sig.sigusr1 += 1;
            self.write_stats();
        }
        if let Some(t) = self.next_stats {
            if Instant::now() >= t {
                self.write_stats();
                let every = self.stats_every.unwrap_or(Duration::from_secs(60));
                let mut n = t + every;
                while n <= Instant::now() {
                    n += every;
                }
                self.next_stats = Some(n);
            }
        }
    }

    /// A (not final) stats record, with the state file's counters.
    fn write_stats(&mut self) {
        let ls = with_state(self.live_stats(false), self.state.as_ref());
        write_stats_record(&self.engine, &ls, &mut self.out, self.ocsf);
    }

    /// The `live` part of a stats record (without the state file's counters).
    fn live_stats(&self, final_record: bool) -> LiveStats {
        let r = &self.readers;
        let interfaces: Vec<IfaceStats> =
            r.counters.iter().zip(&self.names).zip(&r.linktypes).map(|((c, n), lt)| c.snapshot(n, *lt)).collect();
        LiveStats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            final_record,
            received: interfaces.iter().map(|i| i.received).sum(),
            dropped: interfaces.iter().map(|i| i.dropped).sum(),
            if_dropped: interfaces.iter().map(|i| i.if_dropped).sum(),
            reader_queue_drops: interfaces.iter().map(|i| i.queue_dropped).sum(),
            interfaces,
            backend: "pcap",
            workers: 1,
            fanout_group: None,
            rings: Vec::new(),
            queue: QueueStats {
                packets_limit: r.queue.max_packets,
                bytes_limit: r.queue.max_bytes,
                packets_max: r.queue.packets_hwm.load(Relaxed),
                bytes_max: r.queue.bytes_hwm.load(Relaxed),
                packets_now: r.queue.packets.load(Relaxed).max(self.merger.held_packets),
            },
            output: self.out.stats(),
            config_reloads: self.reloads.ok,
            config_reload_errors: self.reloads.refused,
            signals: self.sig,
            feeds: self.feeds.stats(),
            state: None,
            kernel_bypass: None,
            feed: self.feeds.health(),
        }
    }

    /// After the loop: join the readers (a reader that panicked or reported
    /// an error is a failed interface), take the last feed lines, end every
    /// open flow, save the state, write the final stats record and close the
    /// output.
    fn finish(mut self, metrics: Option<&metrics::MetricsServer>) -> LiveSummary {
        let mut failed = Vec::new();
        for (h, name) in std::mem::take(&mut self.readers.handles).into_iter().zip(&self.names) {
            if h.join().is_err() {
                failed.push(name.clone());
            }
        }
        for (c, name) in self.readers.counters.iter().zip(&self.names) {
            if let Some(e) = c.error.lock().ok().and_then(|e| e.clone()) {
                eprintln!("pinwatch: {name}: {e}");
                if !failed.contains(name) {
                    failed.push(name.clone());
                }
            }
        }
        // The last feed lines first, so the flushed sessions are enriched with them.
        self.feeds.poll(&mut self.engine.reporter, &mut self.out, true);
        self.feeds.stop();
        self.engine.finish(CloseKind::Shutdown, &mut self.out);
        if let Some(sf) = self.state.as_mut() {
            sf.save(self.engine.reporter.enricher.as_ref(), self.engine.reporter.profile());
        }
        let ls = with_state(self.live_stats(true), self.state.as_ref());
        let stats = write_stats_record(&self.engine, &ls, &mut self.out, self.ocsf);
        self.out.finish(Duration::from_secs(5));
        if let Some(m) = metrics {
            m.publish(&metrics::stats_body(&self.engine.stats(), &self.live_stats(true)));
        }
        let o = self.out.stats();
        eprintln!(
            "pinwatch: stopped after {:.1} s: {} packets, {} dropped by the kernel, {} by the queue; {} lines written, {} lost",
            self.started.elapsed().as_secs_f64(),
            self.processed,
            ls.dropped,
            ls.reader_queue_drops,
            o.lines_written,
            o.lines_dropped
        );
        LiveSummary { stats, failed_interfaces: failed }
    }
}

/// The stats with the state file's counters.
fn with_state(mut ls: LiveStats, state: Option<&state::StateFile>) -> LiveStats {
    ls.state = state.map(|s| s.stats.clone());
    ls
}

/// `{"timestamp", "event_type":"stats", "stats": {<engine stats>, "live": {...}}}`,
/// stamped with the wall clock. EVE only (OCSF carries alerts only).
#[cfg(feature = "live")]
fn write_stats_record(engine: &Engine, live: &LiveStats, out: &mut Output, ocsf: bool) -> serde_json::Value {
    write_stats_of(&engine.stats(), live, out, ocsf)
}

/// [`write_stats_record`] from the engine counters.
fn write_stats_of(engine_stats: &crate::run::pipeline::Stats, live: &LiveStats, out: &mut Output, ocsf: bool) -> serde_json::Value {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(flatten)]
        engine: &'a crate::run::pipeline::Stats,
        #[serde(skip_serializing_if = "Option::is_none")]
        feed: Option<&'a FeedHealthOut>,
        live: &'a LiveStats,
    }
    #[derive(Serialize)]
    struct Record<'a> {
        timestamp: String,
        event_type: &'static str,
        stats: Body<'a>,
    }
    let rec = Record {
        timestamp: crate::output::eve::timestamp(wall_ns()),
        event_type: "stats",
        stats: Body { engine: engine_stats, feed: (!live.feed.sources.is_empty()).then_some(&live.feed), live },
    };
    if !ocsf && serde_json::to_writer(&mut *out, &rec).is_ok() {
        let _ = std::io::Write::write_all(out, b"\n");
        out.flush_lines();
    }
    serde_json::to_value(&rec.stats).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "live")]
    #[test]
    fn a_missing_interface_is_not_called_a_privilege_problem() {
        let missing = super::open_hint("nosuch0: SIOCETHTOOL(ETHTOOL_GET_TS_INFO) ioctl failed: No such device");
        assert!(missing.contains("no such interface") && !missing.contains("root"), "{missing}");
        assert!(super::open_hint("socket: Operation not permitted").contains("CAP_NET_RAW"));
        assert_eq!(super::open_hint("something else"), "");
    }

    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("32m"), Ok(32 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("3X").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("-1").is_err());
    }

    /// The shipped unit's command line is one `pinwatch live` accepts, and the
    /// shipped config loads.
    #[test]
    fn dist_files_are_usable() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
        crate::config::Config::load(&dist.join("pinwatch-live.example.toml")).expect("example config loads");
        let unit = std::fs::read_to_string(dist.join("pinwatch.service")).expect("unit");
        let env = std::fs::read_to_string(dist.join("pinwatch.env")).expect("env");
        let var = |name: &str| {
            env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(|v| v.trim_matches('"').to_string()).unwrap_or_default()
        };
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
        let line = exec.replace("$PINWATCH_INTERFACES", &var("PINWATCH_INTERFACES")).replace("$PINWATCH_OPTS", &var("PINWATCH_OPTS"));
        let mut words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(1), Some(&"live"), "{line}");
        words.remove(1);
        let s = Standalone::try_parse_from(words).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(s.args.interfaces, vec!["eth1"]);
        assert_eq!(s.args.rotate_interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn flags_parse() {
        let s =
            Standalone::try_parse_from(["x", "-i", "eth0", "-i", "tun0", "-f", "tcp", "--rotate-size", "100M", "--stats-interval", "1"])
                .expect("parses");
        assert_eq!(s.args.interfaces, vec!["eth0", "tun0"]);
        assert_eq!(s.args.rotate_size, Some(100 << 20));
        assert!(Standalone::try_parse_from(["x"]).is_err(), "an interface is required");
    }

    #[test]
    fn backend_choice() {
        let parse = |a: &[&str]| Standalone::try_parse_from(std::iter::once("x").chain(a.iter().copied())).expect("parses").args;
        assert_eq!(backend_of(&parse(&["-i", "eth0"])).ok(), Some(Backend::Afpacket));
        assert_eq!(
            backend_of(&parse(&["-i", "eth0", "--workers", "4", "--fanout-group", "7", "--fanout", "client"])).ok(),
            Some(Backend::Afpacket)
        );
        let e = backend_of(&parse(&["-i", "eth0", "-f", "tcp", "--backend", "afpacket"])).expect_err("a filter needs libpcap");
        assert!(e.to_string().contains("--backend pcap"), "{e}");
        let auto = backend_of(&parse(&["-i", "eth0", "-i", "eth1"]));
        if cfg!(feature = "live") {
            assert_eq!(auto.ok(), Some(Backend::Pcap));
            assert!(backend_of(&parse(&["-i", "any", "--workers", "2"])).is_err(), "--workers is AF_PACKET only");
        } else {
            assert!(auto.expect_err("no libpcap").to_string().contains("feature `live`"));
        }
        assert!(Standalone::try_parse_from(["x", "-i", "eth0", "--fanout-group", "70000"]).is_err());
    }
}
