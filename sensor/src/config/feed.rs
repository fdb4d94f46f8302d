//! The `[feed]` table of the configuration (docs/config.md): binding
//! namespaces by capture interface, VLAN or address pool
//! ([`crate::config::contexts`]), and the transport of `--feed-url`
//! ([`crate::enrich::feed_http`]: a header file, a CA bundle, a client
//! certificate). Paths are relative to the configuration file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::contexts::{ContextMap, ContextRule};
use crate::config::http::HttpTransport;
use crate::config::ConfigError;

/// Most `[[feed.contexts]]` entries.
pub const MAX_CONTEXTS: usize = 4096;

/// The `[feed]` table as written in the file, before [`parse`] checks and
/// resolves it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    #[serde(default)]
    contexts: Vec<RawContext>,
    default_context: Option<String>,
    http_header_file: Option<PathBuf>,
    http_ca_file: Option<PathBuf>,
    http_client_cert: Option<PathBuf>,
    http_client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    name: String,
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    vlans: Vec<u16>,
    #[serde(default)]
    cidrs: Vec<String>,
}

/// The resolved `[feed]` table.
#[derive(Debug, Clone, Default)]
pub struct FeedConfig {
    /// `[[feed.contexts]]` and `feed.default_context`: the binding namespaces.
    pub contexts: ContextMap,
    /// How `--feed-url` is reached: `None` when no transport key is set
    /// (plain request, the built-in web PKI roots).
    pub http: Option<Arc<HttpTransport>>,
}

impl PartialEq for FeedConfig {
    fn eq(&self, other: &Self) -> bool {
        self.contexts == other.contexts && self.http.is_some() == other.http.is_some()
    }
}

fn value(p: &str, key: &str, message: String) -> ConfigError {
    ConfigError::Value { path: p.into(), key: key.into(), message }
}

/// Resolve `[feed]` (`base`: the configuration file's directory).
pub fn parse(p: &str, raw: &RawFeed, base: &Path) -> Result<FeedConfig, ConfigError> {
    if raw.contexts.len() > MAX_CONTEXTS {
        return Err(value(p, "feed.contexts", format!("at most {MAX_CONTEXTS} contexts")));
    }
    let mut rules = Vec::new();
    for (i, c) in raw.contexts.iter().enumerate() {
        let key = format!("feed.contexts[{i}]");
        if c.name.trim().is_empty() {
            return Err(value(p, &format!("{key}.name"), "a context name (the feed's `network.context`) is required".into()));
        }
        if c.interfaces.is_empty() && c.vlans.is_empty() && c.cidrs.is_empty() {
            return Err(value(p, &key, format!("context `{}` matches nothing: set `interfaces`, `vlans` or `cidrs`", c.name)));
        }
        if let Some(v) = c.vlans.iter().find(|v| **v > 4095) {
            return Err(value(p, &format!("{key}.vlans"), format!("{v} is not a VLAN id (0..=4095)")));
        }
        let mut cidrs = Vec::new();
        for s in &c.cidrs {
            let n = s
                .parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| value(p, &format!("{key}.cidrs"), format!("`{s}` is not a CIDR or IP address")))?;
            cidrs.push(n.trunc());
        }
        rules.push(ContextRule { name: c.name.clone(), interfaces: c.interfaces.clone(), vlans: c.vlans.clone(), cidrs });
    }
    if raw.default_context.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return Err(value(p, "feed.default_context", "an empty name".into()));
    }
    let file = |f: &Option<PathBuf>| f.as_ref().map(|f| if f.is_absolute() { f.clone() } else { base.join(f) });
    let (header, ca, cert, key) =
        (file(&raw.http_header_file), file(&raw.http_ca_file), file(&raw.http_client_cert), file(&raw.http_client_key));
    let http = if header.is_some() || ca.is_some() || cert.is_some() || key.is_some() {
        let t = HttpTransport::load(header.as_deref(), ca.as_deref(), cert.as_deref(), key.as_deref())
            .map_err(|(k, m)| value(p, &format!("feed.{k}"), m))?;
        Some(Arc::new(t))
    } else {
        None
    };
    Ok(FeedConfig { contexts: ContextMap { rules, default: raw.default_context.clone() }, http })
}
