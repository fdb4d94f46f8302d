//! `pinwatch` command line. Thin: parse flags, build options, run, map the
//! outcome to an exit code.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pinwatch::flow::Limits;
use pinwatch::run::pipeline::{replay, Input, Options};

/// mimalloc instead of glibc's malloc: every ended session builds and drops
/// a few dozen small strings and vectors for its EVE record, and glibc's
/// allocator was a tenth of a one-thread replay (README, Throughput).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pinwatch: find mobile apps whose own TLS trust logic fails under, or goes
/// around, enterprise TLS inspection (MITRE ATT&CK AN1725 / T1521.003).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Cmd {
    /// Read capture files (pcap, pcapng, gzip'd either; `-` for a pcap stream
    /// on stdin) as one capture in timestamp order and write EVE JSON lines.
    Replay {
        /// Capture files; `-` reads stdin. None: the capture bundled in the binary.
        captures: Vec<String>,
        /// Configuration file (TOML; see docs/config.md). Without one the defaults apply.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        /// MDM/device feed (JSON lines, schema in enrichment/FEED.md); repeatable.
        #[arg(long = "feed")]
        feeds: Vec<PathBuf>,
        /// MDM/device feed over HTTP(S): GET URL?since=CURSOR, JSON lines in the body,
        /// the next cursor in the X-Feed-Next header; pulled until caught up; repeatable.
        #[arg(long = "feed-url")]
        feed_urls: Vec<String>,
        /// Write EVE lines here instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Most flows tracked at once, whatever --threads: shared out over 64 partitions of the
        /// flow key; a new flow in a full partition evicts that partition's flow nearest its timeout (counted).
        #[arg(long, default_value_t = Limits::default().max_flows)]
        max_flows: usize,
        /// Idle timeout in seconds for flows that exchanged data.
        #[arg(long, default_value_t = 600)]
        tcp_timeout: u64,
        /// Idle timeout in seconds for flows with no payload yet.
        #[arg(long, default_value_t = 30)]
        new_timeout: u64,
        /// Out-of-order bytes held per direction while waiting for a hole to fill.
        #[arg(long, default_value_t = 64 * 1024)]
        reassembly_cap: usize,
        /// Output format: `eve` (default) or `ocsf` (alerts as OCSF Detection Findings only).
        #[arg(long, default_value = "eve", value_parser = ["eve", "ocsf"])]
        format: String,
        /// Do not write the final stats record.
        #[arg(long)]
        no_stats: bool,
        /// Never show a progress bar.
        #[arg(long)]
        quiet: bool,
        /// Flow-table threads: each keeps its share of the flows (one pcap file is
        /// read in chunks shared out among them; several files or pcapng are
        /// walked by each); each renders the records of its flows, and they are
        /// written in order by the calling thread when a core is spare, else by
        /// whichever thread waits for the others. The output is the same for any
        /// value. Default: the cores available.
        #[arg(long)]
        threads: Option<usize>,
        /// With several threads and one pcap file: bytes each thread reads per
        /// round, on average (a round is cut in 8 chunks per thread, which the
        /// threads take in turn once they have processed their flows' packets
        /// of the round before). The output does not depend on it, the time
        /// does: a chunk holds at most 16,384 packets, and one that reaches
        /// that ends the round early, so the chunks after it are read again
        /// (`stats.capture.chunk_starts_rejected`). That happens when records
        /// average under CHUNK_BYTES / 131,072 bytes: 64 at the default, less
        /// than the record of a whole minimal Ethernet frame (76); 1 KiB at
        /// 128 MiB, so most captures, which made two threads 4x slower.
        #[arg(long, default_value_t = pinwatch::run::sharded::CHUNK_BYTES)]
        chunk_bytes: usize,
        /// Bytes all tracked flows may hold in reassembly and handshake buffers, whatever
        /// --threads (a 64th per partition of the flow key); beyond it the flow that asks for
        /// more stops being parsed (counted).
        #[arg(long, default_value_t = Limits::default().max_buffer_bytes)]
        buffer_budget: usize,
        /// Written as every record's `host` (Suricata's `sensor-name`). Replay
        /// writes no `host` without it, so that a replay's output depends
        /// on the capture only.
        #[arg(long)]
        sensor_name: Option<String>,
        /// After the replay, write the visibility-gap report (report.html, tables,
        /// actions) into this directory, as `pinwatch report` would. See docs/report.md.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// With --report: the reviewed baselines file (docs/report.md).
        #[arg(long, value_name = "FILE", requires = "report")]
        approved_baselines: Option<PathBuf>,
    },
    /// Write the visibility-gap report from EVE files (plain or gzip; a directory
    /// reads its rotated set): report.html, CSV/JSON tables, proposed bypass and
    /// block lists, learned baselines. See docs/report.md.
    Report {
        /// EVE files or directories.
        #[arg(required = true)]
        eve: Vec<PathBuf>,
        /// Output directory (created).
        #[arg(short = 'o', long, default_value = "pinwatch-report")]
        output: PathBuf,
        /// Reviewed baselines (the baselines.json format with decisions): approved
        /// destinations stop counting as outside the baseline; apps with
        /// `pinning_approved` get bypass entries instead of block candidates.
        #[arg(long, value_name = "FILE")]
        approved_baselines: Option<PathBuf>,
        /// MDM feed files, for each app's signing certificates (app_inventory).
        #[arg(long = "feed")]
        feeds: Vec<PathBuf>,
    },
    /// Capture from network interfaces (AF_PACKET rings, or libpcap) until
    /// SIGINT/SIGTERM and write EVE JSON lines, with periodic stats records;
    /// SIGHUP reopens the output and reloads the config. See docs/live.md.
    #[cfg(target_os = "linux")]
    Live(pinwatch::live::LiveArgs),
    /// IP bindings from RADIUS accounting and Kea's lease file, mapped to MDM
    /// device ids, written as device-feed lines. See docs/bindings.md.
    Bindings(pinwatch::enrich::bindings::BindingsArgs),
    /// Live capture (not in this build: it has no capture backend).
    #[cfg(not(target_os = "linux"))]
    Live {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Walk the captures' packet records and touch every packet, doing nothing
    /// else: the baseline that throughput figures are measured against. Prints
    /// one JSON line: packets, bytes, seconds.
    Walk { captures: Vec<PathBuf> },
}

/// Output buffer: EVE records are a few KB each; writing them in 1 MiB
/// pieces costs a system call per few hundred records, not per two.
const OUT_BUFFER: usize = 1 << 20;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`pinwatch replay x | head`) is not an error.
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("pinwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        #[cfg(target_os = "linux")]
        Cmd::Live(args) => Ok(pinwatch::live::main(args)),
        Cmd::Bindings(args) => Ok(pinwatch::enrich::bindings::main(args)),
        #[cfg(not(target_os = "linux"))]
        Cmd::Live { .. } => {
            eprintln!("pinwatch: this build has no live capture backend: AF_PACKET is Linux only, and libpcap needs a build with feature `live` on Linux (see docs/live.md); `pinwatch replay` reads capture files");
            Ok(ExitCode::from(2))
        }
        Cmd::Walk { captures } => walk(&captures),
        Cmd::Report { eve, output, approved_baselines, feeds } => {
            let opts = pinwatch::report::ReportOptions { out_dir: output, approved_baselines, feeds };
            let w = pinwatch::report::from_files(&eve, &opts)?;
            eprintln!("pinwatch: report of {} sessions and {} findings in {}", w.sessions, w.findings, w.html.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay {
            captures,
            config,
            feeds,
            feed_urls,
            format,
            output,
            max_flows,
            tcp_timeout,
            new_timeout,
            reassembly_cap,
            no_stats,
            quiet,
            threads,
            chunk_bytes,
            buffer_budget,
            sensor_name,
            report,
            approved_baselines,
        } => {
            let report_feeds = feeds.clone();
            let mut limits = Limits { max_flows: max_flows.max(1), max_buffer_bytes: buffer_budget, ..Limits::default() };
            limits.established_timeout_ns = (tcp_timeout as i64).saturating_mul(1_000_000_000);
            limits.new_timeout_ns = (new_timeout as i64).saturating_mul(1_000_000_000);
            limits.reassembly.max_bytes = reassembly_cap;
            let config = replay_config(config.as_ref(), captures.is_empty())?;
            let opts = Options {
                limits,
                config,
                progress: !quiet,
                stats: !no_stats,
                feeds,
                feed_urls,
                ocsf: format == "ocsf",
                threads: threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                chunk_bytes: chunk_bytes.max(1),
                reporter_thread: None,
                sensor_name,
                live: false,
            };
            let inputs = replay_inputs(&captures);
            let report = report.map(|dir| pinwatch::report::ReportOptions { out_dir: dir, approved_baselines, feeds: report_feeds });
            let summary = replay_to(&inputs, &opts, output.as_ref(), report)?;
            Ok(exit_code_of(summary))
        }
    }
}

/// `pinwatch walk`: touch every packet of the captures (their first and last
/// captured byte) and print one JSON line: packets, bytes, seconds.
fn walk(captures: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let files = captures.iter().map(|p| pinwatch::capture::CaptureFile::open(p)).collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&pinwatch::capture::CaptureFile> = files.iter().collect();
    let (mut packets, mut bytes, mut touch) = (0u64, 0u64, 0u64);
    for p in pinwatch::capture::Merged::new(&refs).flatten() {
        packets += 1;
        bytes += u64::from(p.orig_len);
        // Read the first and the last captured byte, as any consumer must.
        touch = touch.wrapping_add(u64::from(p.data.first().copied().unwrap_or(0)) + u64::from(p.data.last().copied().unwrap_or(0)));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"packets": packets, "bytes": bytes, "seconds": seconds, "touch": touch}));
    Ok(ExitCode::SUCCESS)
}

/// The replay's configuration: `--config`, else the bundled one when the
/// bundled capture is replayed, else the defaults.
fn replay_config(config: Option<&PathBuf>, bundled: bool) -> anyhow::Result<pinwatch::config::Config> {
    let config = match config {
        Some(p) => pinwatch::config::Config::load(p)?,
        None if bundled => {
            pinwatch::config::Config::parse("bundled.toml", pinwatch::run::pipeline::BUNDLED_CONFIG, std::path::Path::new("."))?
        }
        None => pinwatch::config::Config::default(),
    };
    config.tuning.warn();
    Ok(config)
}

/// The replay's inputs: files, `-` for stdin, or (none given) the capture
/// bundled in the binary.
fn replay_inputs(captures: &[String]) -> Vec<Input> {
    let mut inputs: Vec<Input> = captures.iter().map(|c| if c == "-" { Input::Stdin } else { Input::File(PathBuf::from(c)) }).collect();
    if inputs.is_empty() {
        let (name, bytes) = pinwatch::run::pipeline::BUNDLED_CAPTURE;
        eprintln!("pinwatch: no capture given; replaying the bundled {name} with pcaps/bundled.toml (see pcaps/README.md)");
        inputs.push(Input::Bytes { name: format!("bundled:{name}"), bytes });
    }
    inputs
}

/// Replay into `-o` (or stdout) and, with `--report`, write the report from
/// a copy of the lines (capped at [`pinwatch::report::MAX_TEE`]).
fn replay_to(
    inputs: &[Input],
    opts: &Options,
    output: Option<&PathBuf>,
    report: Option<pinwatch::report::ReportOptions>,
) -> anyhow::Result<pinwatch::run::pipeline::Summary> {
    let mut out: Box<dyn Write + Send> = match output {
        Some(p) => Box::new(BufWriter::with_capacity(
            OUT_BUFFER,
            std::fs::File::create(p).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(OUT_BUFFER, std::io::stdout())),
    };
    // An output error names the output (`-o /dev/full`: "No space
    // left on device" alone does not say where).
    let out_name = output.map_or_else(|| "standard output".to_string(), |p| p.display().to_string());
    let name_output =
        |e: anyhow::Error| if e.downcast_ref::<std::io::Error>().is_some() { e.context(format!("writing {out_name}")) } else { e };
    let Some(ropts) = report else {
        let summary = replay(inputs, opts, &mut out).map_err(name_output)?;
        out.flush().map_err(|e| name_output(e.into()))?;
        return Ok(summary);
    };
    // Keep a copy of the lines for the report (capped).
    let mut tee = pinwatch::report::Tee { inner: out, copy: Vec::new(), cap: pinwatch::report::MAX_TEE, overflow: false };
    let summary = replay(inputs, opts, &mut tee).map_err(name_output)?;
    tee.flush().map_err(|e| name_output(e.into()))?;
    if tee.overflow {
        anyhow::bail!("--report: more than {} bytes of EVE; write them with -o and run `pinwatch report`", pinwatch::report::MAX_TEE);
    }
    let w = pinwatch::report::from_bytes(&tee.copy, &ropts)?;
    eprintln!("pinwatch: report of {} sessions and {} findings in {}", w.sessions, w.findings, w.html.display());
    Ok(summary)
}

/// The exit status of a replay: 2 when nothing could be run (no capture
/// could be read at all: missing, empty, a directory, not a capture), 1 when
/// some of it was read and reported (README), else 0.
fn exit_code_of(summary: pinwatch::run::pipeline::Summary) -> ExitCode {
    if let Some(err) = summary.first_error {
        if summary.stats.capture.packets == 0 {
            eprintln!("pinwatch: {err} (no packet could be read)");
            return ExitCode::from(2);
        }
        eprintln!("pinwatch: {err} (everything read before it was reported)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
