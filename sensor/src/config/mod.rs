//! Sensor configuration (`--config FILE`, TOML). Every key is documented in
//! `docs/config.md` and shown in `pinwatch.example.toml`. Bad values are
//! rejected at start with the key named. Without a file the defaults apply:
//! RFC 1918 / ULA / loopback destinations are internal, every client is
//! treated as managed, nothing is a proxy and nothing is bypassed.

pub mod contexts;
pub mod feed;
pub mod http;
pub mod tuning;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// Raw file contents, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// Live mode: where state is kept across restarts (`crate::state`).
    state_file: Option<PathBuf>,
    state_interval_s: Option<u64>,
    #[serde(default)]
    feed: crate::config::feed::RawFeed,
    #[serde(default)]
    networks: RawNetworks,
    #[serde(default)]
    inspection: RawInspection,
    #[serde(default)]
    bypass: RawBypass,
    #[serde(default)]
    thresholds: RawThresholds,
    /// Approved destinations per app package (`name` or `*.domain`).
    #[serde(default)]
    baselines: std::collections::HashMap<String, Vec<String>>,
    /// Alert tuning (`crate::config::tuning`, docs/tuning.md).
    #[serde(default)]
    tuning: RawTuning,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTuning {
    /// A Suricata-style `threshold.config` (relative to this file).
    threshold_file: Option<PathBuf>,
    /// Lines in the same syntax, inline.
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    allow: crate::config::tuning::AllowConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetworks {
    managed: Option<Vec<String>>,
    internal: Option<Vec<String>>,
    #[serde(default)]
    tunnel_endpoints: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspection {
    #[serde(default)]
    explicit_proxies: Vec<String>,
    #[serde(default)]
    transparent_proxies: Vec<String>,
    #[serde(default)]
    ca_certificates: Vec<PathBuf>,
    #[serde(default)]
    ca_subjects: Vec<String>,
    #[serde(default)]
    proxy_ja3s: Vec<String>,
    #[serde(default)]
    udp_443_blocked: bool,
    #[serde(default)]
    usual_tls_ports: Option<Vec<u16>>,
    deployment: Option<String>,
    covered_ports: Option<Vec<u16>>,
    #[serde(default)]
    not_covered: Vec<String>,
    inspector_max_hops: Option<u8>,
    #[serde(default)]
    inspector_tcp_signatures: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBypass {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    cidrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    post_handshake_abort_ms: Option<u64>,
    fallback_window_s: Option<u64>,
    decision_timeout_s: Option<u64>,
    fallback_min_rejections: Option<u32>,
}

/// How the TLS inspection is deployed (`inspection.deployment`): what the
/// sensor may expect of a session that carries no direct evidence of its
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// No inspection: nothing is expected to be intercepted.
    None,
    /// Clients must use an explicit (CONNECT) proxy; a session to an
    /// external address that is not to the proxy went around it.
    Explicit,
    /// An inline inspector (transparent proxy by policy routing or
    /// REDIRECT, NGFW decryption, a cloud proxy over a tunnel) sees the
    /// covered traffic; the tap sees the origin's address either way.
    Transparent,
    /// Both: explicit proxy users, and an inline inspector for the rest.
    Both,
}

impl Deployment {
    /// An inline inspector is in the path of covered sessions.
    pub fn inline(self) -> bool {
        matches!(self, Deployment::Transparent | Deployment::Both)
    }
}

/// An inspection CA, matched by SPKI and by subject name.
#[derive(Debug, Clone)]
pub struct InspectionCa {
    /// The CA's subject, as `tls.issuerdn` writes a name; a leaf issued under it
    /// is intercepted.
    pub subject: String,
    /// SHA-256 of the CA's SubjectPublicKeyInfo, hex; empty for an
    /// `inspection.ca_subjects` entry.
    pub spki_sha256: String,
    /// The PEM file it was read from, or `inspection.ca_subjects`.
    pub source: PathBuf,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client networks we watch; `None` = every client is managed.
    pub managed: Option<Vec<IpNet>>,
    /// Destinations that are not "direct to the internet".
    pub internal: Vec<IpNet>,
    /// `inspection.explicit_proxies`: explicit (CONNECT) proxy endpoints.
    pub explicit_proxies: Vec<SocketAddr>,
    /// `inspection.transparent_proxies`: transparent inspection proxies'
    /// addresses as the tap sees them.
    pub transparent_proxies: Vec<IpAddr>,
    /// The inspection CAs, from `inspection.ca_certificates` and
    /// `inspection.ca_subjects`.
    pub inspection_cas: Vec<InspectionCa>,
    /// JA3S hashes of the inspection proxy's TLS server.
    pub proxy_ja3s: Vec<String>,
    /// `inspection.udp_443_blocked`: QUIC should be blocked, so a QUIC session
    /// that works is opaque.
    pub udp_443_blocked: bool,
    /// `inspection.usual_tls_ports`: TLS to another port is an opaque-session
    /// reason.
    pub usual_tls_ports: Vec<u16>,
    /// `bypass.domains`, lower case without a trailing dot: `name` or `*.name`
    /// (which matches `name` too).
    pub bypass_domains: Vec<String>,
    /// `bypass.cidrs`: destinations the inspection passes through.
    pub bypass_cidrs: Vec<IpNet>,
    /// How the inspection is deployed (declared, or inferred from the
    /// other `inspection` keys: see [`Config::parse`]).
    pub deployment: Deployment,
    /// TCP destination ports the inline inspector intercepts.
    pub covered_ports: Vec<u16>,
    /// Destinations the inline inspector never sees (routed around it).
    pub not_covered: Vec<IpNet>,
    /// The inline inspector is at most this many hops from the tap.
    pub inspector_max_hops: u8,
    /// Declared TCP signatures of the inline inspector's SYN-ACKs, as
    /// `path.wire.tcp_signature` writes them.
    pub inspector_tcp_signatures: Vec<String>,
    /// Known tunnel endpoints (VPN concentrators): sessions to them are
    /// tunnels by policy, never opaque sessions. A port of 0 matches any.
    pub tunnel_endpoints: Vec<SocketAddr>,
    /// `thresholds.post_handshake_abort_ms`, in ns: how soon after the end of
    /// the handshake an abort may be class C.
    pub post_handshake_abort_ns: i64,
    /// `thresholds.fallback_window_s`, in ns: how long after a rejection under
    /// inspection a session around it is a fallback.
    pub fallback_window_ns: i64,
    /// An open session is reported this long after its first ClientHello
    /// if no verdict came sooner; 0: at its flow's end only (`crate::flow::decision`).
    pub decision_timeout_ns: i64,
    /// `thresholds.fallback_min_rejections`: rejections needed before a
    /// fallback fires.
    pub fallback_min_rejections: u32,
    /// Approved destinations per app package, from `[baselines]`.
    pub baselines: std::collections::HashMap<String, Vec<String>>,
    /// Alert tuning from `[tuning]` (its bad lines are counted, never fatal).
    pub tuning: std::sync::Arc<crate::config::tuning::Rules>,
    /// `[feed]`: binding namespaces and the feed URLs' transport.
    pub feed: crate::config::feed::FeedConfig,
    /// Live mode: the state file (`state_file`), and how often it is written.
    pub state_file: Option<PathBuf>,
    /// `state_interval_s`: seconds between writes of the state file.
    pub state_interval_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        let internal = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
            "fe80::/10",
            "::1/128",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        Config {
            managed: None,
            internal,
            explicit_proxies: Vec::new(),
            transparent_proxies: Vec::new(),
            inspection_cas: Vec::new(),
            proxy_ja3s: Vec::new(),
            udp_443_blocked: false,
            usual_tls_ports: vec![443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 5061, 8443],
            bypass_domains: Vec::new(),
            bypass_cidrs: Vec::new(),
            deployment: Deployment::None,
            covered_ports: vec![443],
            not_covered: Vec::new(),
            inspector_max_hops: 2,
            inspector_tcp_signatures: Vec::new(),
            tunnel_endpoints: Vec::new(),
            post_handshake_abort_ns: 500_000_000,
            fallback_window_ns: 300_000_000_000,
            decision_timeout_ns: 10_000_000_000,
            fallback_min_rejections: 1,
            baselines: std::collections::HashMap::new(),
            tuning: Default::default(),
            feed: Default::default(),
            state_file: None,
            state_interval_s: 60,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is part of the message (an I/O error, or the size cap),
    /// not a `source()`, so that a `{:#}` chain does not say it twice.
    #[error("{message}")]
    Read {
        /// The configuration file.
        path: String,
        /// What went wrong, the file named in it.
        message: String,
    },
    /// The TOML did not parse, or has an unknown key.
    #[error("{path}: {message}")]
    Syntax {
        /// The configuration file.
        path: String,
        /// The TOML parser's message (long lines cut).
        message: String,
    },
    /// The value is quoted in `message`; a long one (a config file is up
    /// to 1 MiB) is cut like a TOML error's line.
    #[error("{path}: key `{}`: {}", clip_lines(.key, MAX_ERROR_LINE_CHARS), clip_lines(.message, MAX_ERROR_LINE_CHARS))]
    Value {
        /// The configuration file.
        path: String,
        /// The key, e.g. `inspection.explicit_proxies`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

/// Longest line of a TOML error message shown: the parser quotes the
/// offending line, which may be a whole file on one line.
const MAX_ERROR_LINE_CHARS: usize = 200;

/// Each line of `s` cut to `max` characters, with an ellipsis where cut.
fn clip_lines(s: &str, max: usize) -> String {
    let clipped: Vec<String> = s
        .lines()
        .map(|l| match l.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &l[..i]),
            None => l.to_string(),
        })
        .collect();
    clipped.join("\n")
}

fn nets(path: &str, key: &str, v: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    v.iter()
        .map(|s| {
            s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| ConfigError::Value {
                path: path.into(),
                key: key.into(),
                message: format!("`{s}` is not a CIDR or IP address"),
            })
        })
        .collect()
}

/// The `[tuning]` section: inline rules, the threshold file (bounded
/// read) and the allow list. A problem is counted and kept, never fatal.
fn tuning_rules(p: &str, t: &RawTuning, base: &Path) -> crate::config::tuning::Rules {
    let mut r = crate::config::tuning::Rules::default();
    for (i, line) in t.rules.iter().enumerate() {
        r.add_lines(&format!("{p}: tuning.rules[{i}]"), line);
    }
    if let Some(f) = &t.threshold_file {
        let full = if f.is_absolute() { f.clone() } else { base.join(f) };
        match crate::capped::read_file(&full, crate::config::tuning::MAX_THRESHOLD_FILE_BYTES, "threshold file") {
            Ok(bytes) => r.add_lines(&full.display().to_string(), &String::from_utf8_lossy(&bytes)),
            Err(message) => r.problem(format!("{p}: tuning.threshold_file: {message}")),
        }
    }
    r.add_allow(p, &t.allow);
    r
}

/// `inspection.deployment`, declared or, when absent, what the other keys
/// imply.
fn deployment(p: &str, ri: &RawInspection, c: &Config) -> Result<Deployment, ConfigError> {
    Ok(match ri.deployment.as_deref() {
        Some("none") => Deployment::None,
        Some("explicit") => Deployment::Explicit,
        Some("transparent") => Deployment::Transparent,
        Some("both") => Deployment::Both,
        Some(other) => {
            return Err(ConfigError::Value {
                path: p.into(),
                key: "inspection.deployment".into(),
                message: format!("`{other}`: use none, explicit, transparent or both"),
            });
        }
        // Not declared: what the other keys imply. An inspection CA or
        // proxy fingerprint without a proxy address means an inline
        // inspector, as does a transparent proxy address.
        None => {
            let inline = !c.transparent_proxies.is_empty()
                || !c.proxy_ja3s.is_empty()
                || (c.explicit_proxies.is_empty() && !c.inspection_cas.is_empty());
            match (c.explicit_proxies.is_empty(), inline) {
                (true, false) => Deployment::None,
                (false, false) => Deployment::Explicit,
                (true, true) => Deployment::Transparent,
                (false, true) => Deployment::Both,
            }
        }
    })
}

impl Config {
    /// Load and validate a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let bytes = crate::capped::read_file(path, crate::capped::MAX_CONFIG_BYTES, "configuration file")
            .map_err(|message| ConfigError::Read { path: p.clone(), message })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Read {
            path: p.clone(),
            message: format!("{p}: not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        Self::parse(&p, &text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parse TOML text; relative CA paths are resolved against `base`. The
    /// tables are checked in the order below, and the first bad value is
    /// the error.
    pub fn parse(p: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { path: p.into(), message: clip_lines(&e.to_string(), MAX_ERROR_LINE_CHARS) })?;
        let mut c = Config::default();
        c.networks(p, &raw.networks)?;
        c.inspection(p, &raw.inspection, base)?;
        c.deployment = deployment(p, &raw.inspection, &c)?;
        c.inline_inspector(p, &raw.inspection)?;
        c.tunnels_and_ports(p, &raw)?;
        c.bypass_and_baselines(p, &raw)?;
        c.feed = crate::config::feed::parse(p, &raw.feed, base)?;
        c.state(p, &raw, base)?;
        c.thresholds(p, &raw.thresholds)?;
        c.tuning = std::sync::Arc::new(tuning_rules(p, &raw.tuning, base));
        Ok(c)
    }

    /// `[networks]`: managed and internal ranges.
    fn networks(&mut self, p: &str, n: &RawNetworks) -> Result<(), ConfigError> {
        let c = self;
        if let Some(m) = &n.managed {
            c.managed = Some(nets(p, "networks.managed", m)?);
        }
        if let Some(i) = &n.internal {
            c.internal = nets(p, "networks.internal", i)?;
        }
        Ok(())
    }

    /// `[inspection]`: the proxies, the inspection CAs and fingerprints.
    fn inspection(&mut self, p: &str, ri: &RawInspection, base: &Path) -> Result<(), ConfigError> {
        let c = self;
        for s in &ri.explicit_proxies {
            c.explicit_proxies.push(s.parse().map_err(|_| ConfigError::Value {
                path: p.into(),
                key: "inspection.explicit_proxies".into(),
                message: format!("`{s}` is not IP:port"),
            })?);
        }
        for s in &ri.transparent_proxies {
            c.transparent_proxies.push(s.parse().map_err(|_| ConfigError::Value {
                path: p.into(),
                key: "inspection.transparent_proxies".into(),
                message: format!("`{s}` is not an IP address"),
            })?);
        }
        for f in &ri.ca_certificates {
            let full = if f.is_absolute() { f.clone() } else { base.join(f) };
            c.inspection_cas.extend(load_cas(p, &full)?);
        }
        for subj in &ri.ca_subjects {
            if subj.trim().is_empty() || !subj.contains('=') {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "inspection.ca_subjects".into(),
                    message: format!("`{subj}` is not a distinguished name like \"O=Corp, CN=Inspection CA\""),
                });
            }
            c.inspection_cas.push(InspectionCa {
                subject: subj.trim().to_string(),
                spki_sha256: String::new(),
                source: PathBuf::from("inspection.ca_subjects"),
            });
        }
        for h in &ri.proxy_ja3s {
            if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "inspection.proxy_ja3s".into(),
                    message: format!("`{h}` is not an MD5 hex string"),
                });
            }
            c.proxy_ja3s.push(h.to_ascii_lowercase());
        }
        c.udp_443_blocked = ri.udp_443_blocked;
        Ok(())
    }

    /// `[inspection]` of an inline inspector: the ports it covers, what it
    /// does not see, how far it is and its TCP signatures.
    fn inline_inspector(&mut self, p: &str, ri: &RawInspection) -> Result<(), ConfigError> {
        let c = self;
        if let Some(ports) = &ri.covered_ports {
            if ports.is_empty() || ports.contains(&0) {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "inspection.covered_ports".into(),
                    message: "a non-empty list of ports 1..=65535".into(),
                });
            }
            c.covered_ports = ports.clone();
        }
        c.not_covered = nets(p, "inspection.not_covered", &ri.not_covered)?;
        if let Some(h) = ri.inspector_max_hops {
            if h > 30 {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "inspection.inspector_max_hops".into(),
                    message: "must be 0..=30".into(),
                });
            }
            c.inspector_max_hops = h;
        }
        for sig in &ri.inspector_tcp_signatures {
            let parts: Vec<&str> = sig.split(':').collect();
            let ok =
                parts.len() == 5 && parts[..4].iter().all(|x| x.parse::<u32>().is_ok()) && parts[4].chars().all(|ch| "MNWST?".contains(ch));
            if !ok {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "inspection.inspector_tcp_signatures".into(),
                    message: format!("`{sig}` is not TTL:WINDOW:MSS:WSCALE:OPTIONS as `path.wire.tcp_signature` writes it"),
                });
            }
            c.inspector_tcp_signatures.push(sig.clone());
        }
        Ok(())
    }

    /// `networks.tunnel_endpoints` and `inspection.usual_tls_ports`.
    fn tunnels_and_ports(&mut self, p: &str, raw: &Raw) -> Result<(), ConfigError> {
        let c = self;
        for s in &raw.networks.tunnel_endpoints {
            let a = s.parse::<SocketAddr>().or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0))).map_err(|_| {
                ConfigError::Value {
                    path: p.into(),
                    key: "networks.tunnel_endpoints".into(),
                    message: format!("`{s}` is not IP or IP:port"),
                }
            })?;
            c.tunnel_endpoints.push(a);
        }
        if let Some(ports) = &raw.inspection.usual_tls_ports {
            c.usual_tls_ports = ports.clone();
        }
        Ok(())
    }

    /// `[bypass]` and `[baselines]`.
    fn bypass_and_baselines(&mut self, p: &str, raw: &Raw) -> Result<(), ConfigError> {
        let c = self;
        for d in &raw.bypass.domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let body = d.strip_prefix("*.").unwrap_or(&d);
            if body.is_empty() || body.contains('*') || body.contains(' ') {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "bypass.domains".into(),
                    message: format!("`{d}`: use `name` or `*.name`"),
                });
            }
            c.bypass_domains.push(d);
        }
        c.bypass_cidrs = nets(p, "bypass.cidrs", &raw.bypass.cidrs)?;
        for (pkg, hosts) in &raw.baselines {
            if hosts.iter().any(|h| h.trim().is_empty() || h.contains(' ')) {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: format!("baselines.{pkg}"),
                    message: "destinations are `name` or `*.domain`".into(),
                });
            }
        }
        c.baselines = raw.baselines.clone();
        Ok(())
    }

    /// `state_file` and `state_interval_s` (live mode).
    fn state(&mut self, p: &str, raw: &Raw, base: &Path) -> Result<(), ConfigError> {
        let c = self;
        c.state_file = raw.state_file.as_ref().map(|f| if f.is_absolute() { f.clone() } else { base.join(f) });
        if let Some(s) = raw.state_interval_s {
            if s == 0 || s > 86_400 {
                return Err(ConfigError::Value { path: p.into(), key: "state_interval_s".into(), message: "must be 1..=86400".into() });
            }
            c.state_interval_s = s;
        }
        Ok(())
    }

    /// `[thresholds]`.
    fn thresholds(&mut self, p: &str, t: &RawThresholds) -> Result<(), ConfigError> {
        let c = self;
        if let Some(ms) = t.post_handshake_abort_ms {
            if ms == 0 || ms > 600_000 {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "thresholds.post_handshake_abort_ms".into(),
                    message: "must be 1..=600000".into(),
                });
            }
            c.post_handshake_abort_ns = ms as i64 * 1_000_000;
        }
        if let Some(s) = t.decision_timeout_s {
            if s > 3600 {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "thresholds.decision_timeout_s".into(),
                    message: "must be 0..=3600".into(),
                });
            }
            c.decision_timeout_ns = s as i64 * 1_000_000_000;
        }
        if let Some(s) = t.fallback_window_s {
            if s == 0 || s > 86_400 {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "thresholds.fallback_window_s".into(),
                    message: "must be 1..=86400".into(),
                });
            }
            c.fallback_window_ns = s as i64 * 1_000_000_000;
        }
        if let Some(n) = t.fallback_min_rejections {
            if n == 0 {
                return Err(ConfigError::Value {
                    path: p.into(),
                    key: "thresholds.fallback_min_rejections".into(),
                    message: "must be at least 1".into(),
                });
            }
            c.fallback_min_rejections = n;
        }
        Ok(())
    }

    /// The address is in `networks.internal` (not "direct to the internet").
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.internal.iter().any(|n| n.contains(&ip))
    }

    /// A known tunnel endpoint (VPN concentrator), by address and port.
    pub fn is_tunnel_endpoint(&self, ip: IpAddr, port: u16) -> bool {
        self.tunnel_endpoints.iter().any(|t| t.ip() == ip && (t.port() == 0 || t.port() == port))
    }

    /// Does the inline inspector cover a TCP session to this destination
    /// (an inline deployment, a covered port, not routed around it)? The
    /// client's network and the bypass list are checked by the caller.
    pub fn inline_covers(&self, dst: IpAddr, port: u16) -> bool {
        self.deployment.inline() && self.covered_ports.contains(&port) && !self.not_covered.iter().any(|n| n.contains(&dst))
    }

    /// The address is in `networks.managed`; every address is when that key is
    /// not set.
    pub fn is_managed(&self, ip: IpAddr) -> bool {
        self.managed.as_ref().is_none_or(|m| m.iter().any(|n| n.contains(&ip)))
    }

    /// The bypass entry matching this SNI or destination, if any.
    pub fn bypass_match(&self, sni: Option<&str>, dst: IpAddr) -> Option<String> {
        if let Some(sni) = sni {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            for d in &self.bypass_domains {
                let hit = match d.strip_prefix("*.") {
                    Some(base) => sni.ends_with(&format!(".{base}")) || sni == base,
                    None => sni == *d,
                };
                if hit {
                    return Some(format!("domain:{d}"));
                }
            }
        }
        self.bypass_cidrs.iter().find(|n| n.contains(&dst)).map(|n| format!("cidr:{n}"))
    }
}

fn load_cas(p: &str, file: &Path) -> Result<Vec<InspectionCa>, ConfigError> {
    let key = "inspection.ca_certificates".to_string();
    let data = crate::capped::read_file(file, crate::capped::MAX_CA_FILE_BYTES, "CA file").map_err(|message| ConfigError::Value {
        path: p.into(),
        key: key.clone(),
        message,
    })?;
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
        let pem =
            pem.map_err(|e| ConfigError::Value { path: p.into(), key: key.clone(), message: format!("{}: bad PEM: {e}", file.display()) })?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let c = pinwatch_parsers::cert::parse_certificate(&pem.contents).map_err(|e| ConfigError::Value {
            path: p.into(),
            key: key.clone(),
            message: format!("{}: {e}", file.display()),
        })?;
        out.push(InspectionCa { subject: c.subject, spki_sha256: c.spki_sha256, source: file.to_path_buf() });
    }
    if out.is_empty() {
        return Err(ConfigError::Value { path: p.into(), key, message: format!("{}: no CERTIFICATE in it", file.display()) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values_name_the_key() {
        let c = Config::parse("t", "", Path::new(".")).expect("empty is fine");
        assert!(c.is_internal("10.1.2.3".parse().expect("ip")));
        assert!(!c.is_internal("8.8.8.8".parse().expect("ip")));
        assert!(c.is_managed("8.8.8.8".parse().expect("ip")));
        let e = Config::parse("t", "[inspection]\nexplicit_proxies = [\"nope\"]", Path::new(".")).expect_err("bad");
        assert!(e.to_string().contains("inspection.explicit_proxies"), "{e}");
        let e = Config::parse("t", "[networks]\nmanaged = [\"10.0.0.0/33\"]", Path::new(".")).expect_err("bad");
        assert!(e.to_string().contains("networks.managed"), "{e}");
        let e = Config::parse("t", "[thresholds]\npost_handshake_abort_ms = 0", Path::new(".")).expect_err("bad");
        assert!(e.to_string().contains("post_handshake_abort_ms"), "{e}");
        let e = Config::parse("t", "[nosuch]\nx = 1", Path::new(".")).expect_err("unknown table");
        assert!(e.to_string().contains("nosuch"), "{e}");
    }

    #[test]
    fn shipped_configs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let ex = Config::load(&root.join("pinwatch.example.toml")).expect("example loads");
        assert_eq!(ex.explicit_proxies.len(), 1);
        assert_eq!((ex.tuning.rules, ex.tuning.bad_lines), (1, 0), "{:?}", ex.tuning.problems);
        let tb = Config::load(&root.join("pcaps/testbed.toml")).expect("testbed config loads");
        assert_eq!(tb.inspection_cas.len(), 1, "the testbed CA is read from its PEM");
        assert!(tb.managed.is_some());
    }

    #[test]
    fn bypass_patterns() {
        let c =
            Config::parse("t", "[bypass]\ndomains = [\"*.bank.example\", \"pinned.test\"]\ncidrs = [\"203.0.113.0/24\"]", Path::new("."))
                .expect("ok");
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(c.bypass_match(Some("api.bank.example"), ip).as_deref(), Some("domain:*.bank.example"));
        assert_eq!(c.bypass_match(Some("PINNED.test."), ip).as_deref(), Some("domain:pinned.test"));
        assert_eq!(c.bypass_match(Some("notbank.example"), ip), None);
        assert_eq!(c.bypass_match(None, "203.0.113.9".parse().expect("ip")).as_deref(), Some("cidr:203.0.113.0/24"));
    }

    #[test]
    fn endless_or_huge_config_and_ca_files_are_refused_by_their_caps() {
        let e = Config::load(Path::new("/dev/zero")).expect_err("endless").to_string();
        assert!(e.contains("/dev/zero") && e.contains("1048576"), "names the file and the cap: {e}");
        let toml = "[inspection]\nca_certificates = [\"/dev/zero\"]\n";
        let e = Config::parse("t.toml", toml, Path::new(".")).expect_err("endless CA").to_string();
        assert!(e.contains("/dev/zero") && e.contains("1048576") && e.contains("CA file"), "{e}");
        let e = Config::load(Path::new("/nonexistent/pinwatch.toml")).expect_err("missing").to_string();
        assert_eq!(e.matches("No such file").count(), 1, "said once: {e}");
    }

    #[test]
    fn a_huge_toml_line_is_not_copied_whole_into_the_error() {
        let text = format!("bogus = \"{}", "x".repeat(500_000));
        let e = Config::parse("big.toml", &text, Path::new(".")).expect_err("bad").to_string();
        assert!(e.len() < 2_000, "{} bytes of error", e.len());
        assert!(e.contains('…') && e.starts_with("big.toml"), "{e}");
    }

    #[test]
    fn a_huge_bad_value_is_not_copied_whole_into_the_error() {
        // Found by the `config` fuzz target (tests/regressions/config/):
        // a value error quoted the whole value.
        let text = format!("[networks]\nmanaged = [\"{}\"]", "a".repeat(20_000));
        let e = Config::parse("big.toml", &text, Path::new(".")).expect_err("bad").to_string();
        assert!(e.len() < 500, "{} bytes of error", e.len());
        assert!(e.contains("networks.managed") && e.contains('…'), "{e}");
    }
}
