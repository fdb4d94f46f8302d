//! `gencap`: write a large, realistic, deterministic egress capture for the
//! throughput run (see benches/README.md).
//!
//! ```sh
//! cargo run --release -p pinwatch-benches --bin gencap -- --out /tmp/egress.pcap --size 2G
//! cargo run --release -p pinwatch-benches --bin gencap -- --out /tmp/flows.pcap --concurrent-flows 1000000
//! ```

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use pinwatch_benches::gencap::{self, Config};

/// Generate a deterministic egress capture (classic pcap, Ethernet): real TLS
/// handshakes from the testbed captures, replayed for many clients and
/// servers, followed by heavy-tailed bulk TLS application data.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Output file (classic pcap).
    #[arg(long)]
    out: PathBuf,
    /// Stop before the file exceeds this size (K, M, G, T = powers of 1024).
    /// Required unless --concurrent-flows is given.
    #[arg(long)]
    size: Option<String>,
    /// Seed of every random choice: same arguments, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of client addresses (10.b.c.d).
    #[arg(long, default_value_t = 20_000)]
    clients: u32,
    /// Number of server addresses (public unicast, Zipf popularity).
    #[arg(long, default_value_t = 5_000)]
    servers: u32,
    /// Instead of the bulk mix: N TLS sessions that open (handshake from the
    /// templates) and stay open to the end of the capture.
    #[arg(long)]
    concurrent_flows: Option<u64>,
    /// Target aggregate rate of the bulk mix in Mbit/s (sets the session arrival rate).
    #[arg(long, default_value_t = 2000.0)]
    rate_mbps: f64,
    /// Seconds of traffic simulated before the capture starts (not written),
    /// so that it opens in steady state with transfers in progress, as a real
    /// tap does (those flows have no handshake in the file).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Session openings per second with --concurrent-flows.
    #[arg(long, default_value_t = 50_000.0)]
    open_rate: f64,
    /// Share of sessions replaying a failed handshake (no bulk data).
    #[arg(long, default_value_t = 0.03)]
    fail_share: f64,
    /// Directory with testbed-{basic,inspection,fallback}.pcap and their .expected.tsv.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../pcaps"))]
    templates: PathBuf,
    /// Nanosecond timestamps (pcap magic a1b23c4d) instead of microseconds.
    #[arg(long)]
    nanos: bool,
    /// List the templates (name, outcome, packets, head/tail split) and exit.
    #[arg(long)]
    list_templates: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gencap: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    let tmpls = gencap::load_templates(&a.templates)?;
    if a.list_templates {
        for t in &tmpls {
            println!(
                "{}\t{}\tsni={}\testablished={}\tpackets={}\thead={}\tseg={}\tts={}",
                t.name,
                t.outcome,
                t.sni,
                t.established,
                t.pkts.len(),
                t.split,
                t.seg_payload,
                t.has_ts
            );
        }
        return Ok(());
    }
    let size_limit = match (&a.size, a.concurrent_flows) {
        (Some(s), _) => gencap::parse_size(s)?,
        (None, Some(_)) => u64::MAX,
        (None, None) => anyhow::bail!("--size is required (e.g. --size 2G) unless --concurrent-flows is given"),
    };
    if a.concurrent_flows == Some(0) {
        anyhow::bail!("--concurrent-flows must be at least 1");
    }
    if !(a.rate_mbps > 0.0 && a.open_rate > 0.0 && (0.0..=1.0).contains(&a.fail_share) && (0.0..=3600.0).contains(&a.warmup)) {
        anyhow::bail!("--rate-mbps and --open-rate must be positive, --fail-share in [0, 1], --warmup in [0, 3600]");
    }
    let cfg = Config {
        size_limit,
        seed: a.seed,
        clients: a.clients,
        servers: a.servers,
        concurrent_flows: a.concurrent_flows,
        rate_bps: a.rate_mbps * 1e6,
        open_rate: a.open_rate,
        fail_share: a.fail_share,
        nanos: a.nanos,
        warmup_s: a.warmup,
        ..Config::default()
    };
    let file = std::fs::File::create(&a.out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.out.display()))?;
    let (summary, _) = gencap::generate(&cfg, &tmpls, BufWriter::with_capacity(4 << 20, file))?;
    if let Some(n) = a.concurrent_flows.filter(|&n| summary.sessions_open_at_end < n) {
        eprintln!("gencap: warning: only {} of {n} flows fit in --size", summary.sessions_open_at_end);
    }
    eprintln!("{}", summary.to_json());
    Ok(())
}
