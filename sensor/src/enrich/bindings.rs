//! `pinwatch bindings`: the I/O around `pinwatch_enrichment::bindings` — a
//! RADIUS accounting listener (UDP), a follower of Kea's DHCPv4 lease file,
//! an MDM inventory export read at start — writing `ip_binding` lines of the
//! device feed (`enrichment/FEED.md`) to a file that `pinwatch live
//! --feed-follow` or `pinwatch replay --feed` reads. Documented in
//! `docs/bindings.md`.
//!
//! One thread: the UDP socket is read with a short timeout and, between
//! datagrams, the lease-file follower's lines are taken
//! ([`crate::enrich::feed_source::FeedPump`] with [`FeedSource::Follow`], which
//! handles appends, truncation and Kea's renaming of the file at lease file
//! cleanup). At start the cleanup's leftovers are read first, in the order
//! Kea itself loads them: `FILE.completed` if it exists, else `FILE.2` then
//! `FILE.1`; then `FILE` is followed from its beginning.
//!
//! Every feed line is written and flushed when it is made. Counters go to
//! `--stats-file` (JSON, replaced atomically, at most every 200 ms while
//! they change, and at exit).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Parser};
use pinwatch_enrichment::bindings::inventory::{ColumnMap, Inventory};
use pinwatch_enrichment::bindings::{parse_client_net, Bindings, BindingsConfig, RadiusClient};
use serde_json::json;

use crate::enrich::feed_source::{read_file_lines, FeedMsg, FeedPump, FeedSource, PumpConfig};

/// Largest shared-secret file read (RADIUS secrets are short).
const MAX_SECRET_BYTES: u64 = 4096;
/// Largest lease-file leftover read at start.
const MAX_KEA_FILE_BYTES: u64 = 1 << 30;

/// `pinwatch bindings` options.
#[derive(Args, Debug, Clone)]
pub struct BindingsArgs {
    /// Listen for RADIUS Accounting-Requests on this UDP address (e.g. 0.0.0.0:1813).
    #[arg(long, value_name = "ADDR")]
    pub radius_listen: Option<SocketAddr>,
    /// File holding the RADIUS shared secret (trailing newline ignored).
    #[arg(long, value_name = "FILE")]
    pub radius_secret_file: Option<PathBuf>,
    /// An allowed RADIUS client: ADDR or ADDR/LEN, with `=CONTEXT` for the
    /// network context of its bindings (default `radius`). Repeatable;
    /// requests from any other address are dropped.
    #[arg(long = "radius-client", value_name = "NET[=CONTEXT]")]
    pub radius_clients: Vec<String>,
    /// How long a Start / Interim-Update binding holds without a later
    /// update or a Stop, seconds.
    #[arg(long, default_value_t = 8 * 3600, value_name = "SECS")]
    pub radius_session_ttl: u64,
    /// Kea's DHCPv4 memfile lease file to follow (e.g. /var/lib/kea/kea-leases4.csv).
    #[arg(long, value_name = "FILE")]
    pub kea_lease_file: Option<PathBuf>,
    /// Network context of the Kea bindings.
    #[arg(long, default_value = "dhcp", value_name = "NAME")]
    pub kea_context: String,
    /// MDM inventory export mapping MACs, user names and certificate CNs to
    /// device ids: CSV, or JSON (array or lines) when the name ends in .json/.jsonl.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Column names per role, replacing the defaults:
    /// `ROLE=NAME[|NAME…]` with ROLE one of device_id, mac, user, cert_cn. Repeatable.
    #[arg(long = "inventory-column", value_name = "ROLE=NAMES")]
    pub inventory_columns: Vec<String>,
    /// Drop bindings whose identity the inventory does not know, instead of
    /// binding them to `mac:…` / `user:…`.
    #[arg(long)]
    pub drop_unknown: bool,
    /// Append the feed lines here (default: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the counters here as JSON (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub stats_file: Option<PathBuf>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long, value_name = "SECS")]
    pub run_for: Option<u64>,
}

#[derive(Parser)]
#[command(name = "pinwatch-bindings")]
struct Cli {
    #[command(flatten)]
    args: BindingsArgs,
}

/// Entry point for a program that is only `pinwatch bindings` (the tests' binary).
pub fn main_from_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    match Cli::try_parse_from(args) {
        Ok(c) => main(c.args),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}

/// `pinwatch bindings`: exit 0 after `--run-for`, 2 on a bad option or a
/// file/socket that cannot be opened.
pub fn main(args: BindingsArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinwatch bindings: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("radius secret file {}", path.display()))?;
    if meta.len() > MAX_SECRET_BYTES {
        bail!("radius secret file {}: larger than {MAX_SECRET_BYTES} bytes", path.display());
    }
    let mut s = fs::read(path).with_context(|| format!("radius secret file {}", path.display()))?;
    while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        s.pop();
    }
    if s.is_empty() {
        bail!("radius secret file {}: empty", path.display());
    }
    Ok(s)
}

fn column_map(specs: &[String]) -> anyhow::Result<ColumnMap> {
    let mut m = ColumnMap::default();
    for s in specs {
        let Some((role, names)) = s.split_once('=') else {
            bail!("--inventory-column {s}: expected ROLE=NAME[|NAME…]");
        };
        let names: Vec<String> =
            names.split('|').map(pinwatch_enrichment::bindings::inventory::norm_col).filter(|n| !n.is_empty()).collect();
        match role.trim() {
            "device_id" => m.device_id = names,
            "mac" => m.mac = names,
            "user" => m.user = names,
            "cert_cn" => m.cert_cn = names,
            r => bail!("--inventory-column: unknown role {r} (device_id, mac, user, cert_cn)"),
        }
    }
    Ok(m)
}

fn load_inventory(path: &Path, cols: &ColumnMap) -> anyhow::Result<Inventory> {
    let meta = fs::metadata(path).with_context(|| format!("inventory {}", path.display()))?;
    if meta.len() > pinwatch_enrichment::bindings::inventory::MAX_BYTES as u64 {
        bail!("inventory {}: larger than {} bytes", path.display(), pinwatch_enrichment::bindings::inventory::MAX_BYTES);
    }
    let data = fs::read(path).with_context(|| format!("inventory {}", path.display()))?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    let inv = if name.ends_with(".json") || name.ends_with(".jsonl") {
        Inventory::from_json(&data, cols)
    } else {
        Inventory::from_csv(&data, cols)
    };
    let r = inv.report();
    if r.devices == 0 {
        bail!("inventory {}: no device read ({})", path.display(), r.error.as_deref().unwrap_or("no rows with a device id"));
    }
    if let Some(e) = &r.error {
        eprintln!("pinwatch bindings: inventory {}: {e}", path.display());
    }
    Ok(inv)
}

/// The files Kea's lease file cleanup leaves, in the order Kea loads them.
fn kea_leftovers(path: &Path) -> Vec<PathBuf> {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let completed = with(".completed");
    if completed.exists() {
        return vec![completed];
    }
    [with(".2"), with(".1")].into_iter().filter(|p| p.exists()).collect()
}

struct Out {
    w: Box<dyn Write>,
}

impl Out {
    fn lines(&mut self, lines: &[String]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        for l in lines {
            self.w.write_all(l.as_bytes())?;
            self.w.write_all(b"\n")?;
        }
        self.w.flush()
    }
}

fn write_stats(path: &Path, b: &Bindings, kea_errors: &[String]) -> io::Result<()> {
    let inv = b.inventory().report();
    let v = json!({
        "bindings": b.stats(),
        "inventory": {
            "devices": inv.devices,
            "rows_skipped": inv.rows_skipped,
            "bad_macs": inv.bad_macs,
            "ambiguous": inv.ambiguous,
            "truncated": inv.truncated,
        },
        "kea_errors": kea_errors,
    });
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{v}\n"))?;
    fs::rename(&tmp, path)
}

fn run(a: &BindingsArgs) -> anyhow::Result<()> {
    if a.radius_listen.is_none() && a.kea_lease_file.is_none() {
        bail!("nothing to do: give --radius-listen and/or --kea-lease-file");
    }
    let mut cfg = BindingsConfig {
        radius_session_ttl_ns: i64::try_from(a.radius_session_ttl.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX),
        kea_context: a.kea_context.clone(),
        unknown_as_identity: !a.drop_unknown,
        ..BindingsConfig::default()
    };
    let socket = match a.radius_listen {
        Some(addr) => Some(radius_socket(a, addr, &mut cfg)?),
        None => None,
    };
    let cols = column_map(&a.inventory_columns)?;
    let inventory = match &a.inventory {
        Some(p) => load_inventory(p, &cols)?,
        None => Inventory::default(),
    };
    let mut out = Out {
        w: match &a.output {
            Some(p) => Box::new(io::BufWriter::new(
                OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("output {}", p.display()))?,
            )),
            None => Box::new(io::BufWriter::new(io::stdout())),
        },
    };
    let mut b = Bindings::new(cfg, inventory);
    let mut kea_errors: Vec<String> = Vec::new();

    // Kea: the cleanup's leftovers once, then the lease file followed.
    let pump_cfg = PumpConfig {
        poll_interval: Duration::from_millis(100),
        max_line_bytes: pinwatch_enrichment::bindings::kea::MAX_LINE,
        ..PumpConfig::default()
    };
    let kea_pump = match &a.kea_lease_file {
        Some(path) => {
            for f in kea_leftovers(path) {
                read_kea_leftover(&f, &pump_cfg, &mut b, &mut kea_errors, &mut out)?;
            }
            Some(FeedPump::start_with(FeedSource::Follow(path.clone()), pump_cfg.clone())?)
        }
        None => None,
    };

    let started = Instant::now();
    let mut last_stats = Instant::now();
    let mut dirty = true;
    let mut kea_live = false;
    let mut buf = vec![0u8; 65_536];
    loop {
        if a.run_for.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        if let Some(s) = &socket {
            dirty |= take_radius_datagram(s, &mut buf, &mut b, &mut out)?;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(p) = &kea_pump {
            dirty |= take_kea_lines(p, &mut b, &mut kea_errors, &mut kea_live, &mut out)?;
        }
        if dirty && last_stats.elapsed() >= Duration::from_millis(200) {
            if let Some(p) = &a.stats_file {
                write_stats(p, &b, &kea_errors).with_context(|| format!("stats file {}", p.display()))?;
            }
            dirty = false;
            last_stats = Instant::now();
        }
    }
    if let Some(p) = &a.stats_file {
        write_stats(p, &b, &kea_errors).with_context(|| format!("stats file {}", p.display()))?;
    }
    Ok(())
}

/// The RADIUS accounting socket on `addr` (`--radius-listen`), with every
/// `--radius-client` added to `cfg` with the secret of `--radius-secret-file`.
fn radius_socket(a: &BindingsArgs, addr: SocketAddr, cfg: &mut BindingsConfig) -> anyhow::Result<UdpSocket> {
    let Some(secret_path) = &a.radius_secret_file else {
        bail!("--radius-listen needs --radius-secret-file");
    };
    if a.radius_clients.is_empty() {
        bail!("--radius-listen needs at least one --radius-client");
    }
    let secret = read_secret(secret_path)?;
    for c in &a.radius_clients {
        let (net, ctx) = c.split_once('=').unwrap_or((c.as_str(), "radius"));
        let Some((net, prefix_len)) = parse_client_net(net) else {
            bail!("--radius-client {c}: expected ADDR[/LEN][=CONTEXT]");
        };
        cfg.radius_clients.push(RadiusClient { net, prefix_len, secret: secret.clone(), context: ctx.to_owned() });
    }
    let s = UdpSocket::bind(addr).with_context(|| format!("radius listen {addr}"))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Keep a Kea error for the stats file (the first 64).
fn note_err(errs: &mut Vec<String>, e: String) {
    if errs.len() < 64 {
        errs.push(e);
    }
}

/// One file of Kea's cleanup leftovers, read whole (as the leases of a new
/// file, not live ones); writes the binding lines it yields.
fn read_kea_leftover(f: &Path, pump_cfg: &PumpConfig, b: &mut Bindings, kea_errors: &mut Vec<String>, out: &mut Out) -> anyhow::Result<()> {
    b.kea_new_file();
    let mut lines = Vec::new();
    let r = read_file_lines(f, pump_cfg, MAX_KEA_FILE_BYTES, |m| {
        match m {
            FeedMsg::Line { text, .. } => lines.extend(b.kea_line(&text, now_ns(), false)),
            FeedMsg::Error(e) => note_err(kea_errors, e),
            FeedMsg::CaughtUp => {}
        }
        true
    });
    if let Err(e) = r {
        note_err(kea_errors, e);
    }
    out.lines(&lines)?;
    Ok(())
}

/// Wait (up to the socket's read timeout) for one RADIUS datagram, answer
/// it and write the binding lines it yields. Returns whether one came.
fn take_radius_datagram(s: &UdpSocket, buf: &mut [u8], b: &mut Bindings, out: &mut Out) -> anyhow::Result<bool> {
    match s.recv_from(buf) {
        Ok((n, peer)) => {
            let o = b.radius_datagram(&buf[..n], peer.ip(), now_ns());
            if let Some(resp) = o.response {
                // A lost answer makes the NAS retransmit; nothing to do here.
                let _ = s.send_to(&resp, peer);
            }
            out.lines(&o.lines)?;
            Ok(true)
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => Ok(false),
        Err(e) => Err(e).context("radius socket"),
    }
}

/// Take what the followed lease file's pump has read and write the binding
/// lines it yields. Returns whether a line or an error came.
fn take_kea_lines(
    p: &FeedPump,
    b: &mut Bindings,
    kea_errors: &mut Vec<String>,
    kea_live: &mut bool,
    out: &mut Out,
) -> anyhow::Result<bool> {
    let mut dirty = false;
    let mut lines = Vec::new();
    while let Some(m) = p.try_recv() {
        match m {
            FeedMsg::Line { text, line_no } => {
                if line_no == 1 {
                    b.kea_new_file();
                }
                lines.extend(b.kea_line(&text, now_ns(), *kea_live));
                dirty = true;
            }
            FeedMsg::Error(e) => {
                note_err(kea_errors, e);
                dirty = true;
            }
            // Everything in the file when it was opened has been
            // read: later lines are appended as they happen.
            FeedMsg::CaughtUp => *kea_live = true,
        }
    }
    out.lines(&lines)?;
    Ok(dirty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leftovers of Kea's lease file cleanup, in Kea's own load order.
    #[test]
    fn bindings_kea_leftovers_order() {
        let dir = std::env::temp_dir().join(format!("pinwatch-kea-leftovers-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("kea-leases4.csv");
        assert!(kea_leftovers(&f).is_empty());
        fs::write(dir.join("kea-leases4.csv.1"), "").expect("write");
        fs::write(dir.join("kea-leases4.csv.2"), "").expect("write");
        let names = |v: Vec<PathBuf>| {
            v.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect::<Vec<_>>()
        };
        assert_eq!(names(kea_leftovers(&f)), vec!["kea-leases4.csv.2", "kea-leases4.csv.1"]);
        // A finished cleanup not yet renamed wins over both.
        fs::write(dir.join("kea-leases4.csv.completed"), "").expect("write");
        assert_eq!(names(kea_leftovers(&f)), vec!["kea-leases4.csv.completed"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bindings_inventory_column_option() {
        let m = column_map(&["mac=WLAN MAC|LAN-MAC".into()]).expect("valid");
        assert_eq!(m.mac, vec!["wlanmac".to_string(), "lanmac".to_string()]);
        assert_eq!(m.device_id, ColumnMap::default().device_id);
        assert!(column_map(&["serial=SN".into()]).is_err());
        assert!(column_map(&["mac".into()]).is_err());
    }
}
