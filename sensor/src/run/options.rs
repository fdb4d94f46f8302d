//! What one run is asked to do: limits, configuration, inputs beside the
//! capture (feeds), output form and threads. Shared by replay and live.

use std::path::PathBuf;

use crate::config::Config;
use crate::flow::Limits;

/// What one run is asked to do (replay or live); `Default` is one thread, no feeds, EVE output and
/// the default limits and configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Flow-table limits: flow cap, buffer budget, timeouts.
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
    /// Flow-table threads; 0 or 1 runs everything on the calling thread.
    pub threads: usize,
    /// Bytes each thread reads per round when one pcap file is read in
    /// chunks ([`crate::run::sharded::run_chunked`]); 0: the default
    /// ([`crate::run::sharded::CHUNK_BYTES`]). The output does not depend on it.
    pub chunk_bytes: usize,
    /// With several threads: report on the calling thread while the shards
    /// work (`Some(true)`), or let shards waiting for the others report
    /// (`Some(false)`, see `sharded::Desk`); `None` picks the calling thread
    /// when the machine has a core beyond the shards'. The output does not
    /// depend on it.
    pub reporter_thread: Option<bool>,
    /// Written as every record's `host` (Suricata's `sensor-name`); none:
    /// no `host`.
    pub sensor_name: Option<String>,
    /// Live capture: the sources are interfaces, written as `in_iface`;
    /// otherwise capture files, written as `pcap_filename`.
    pub live: bool,
}
