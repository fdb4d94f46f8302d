//! Per-app baselines with an approval step (docs/report.md, Baselines).
//!
//! `pinwatch report` writes `baselines.json`: per app, every destination it
//! reached, with what the sensor saw there. A reviewer sets `approved` on the
//! destinations the app may reach and `pinning_approved` on apps whose
//! pinning the organisation accepts, and passes the file back with
//! `--approved-baselines`: approved destinations then stop counting as
//! outside the baseline, and the network-team lists follow the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::model::{Model, NO_APP};

/// The `format` value of a baselines file, written and required when read back.
pub const FORMAT: &str = "pinwatch-baselines/1";
/// Largest approvals file read.
pub const MAX_FILE: u64 = 16 << 20;

/// `baselines.json`: per app, the destinations it reached.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct File {
    /// `format`: must be [`FORMAT`].
    pub format: String,
    /// `apps`: one entry per app seen (sessions without an app are left out).
    #[serde(default)]
    pub apps: Vec<AppBaseline>,
}

/// One app's baseline.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AppBaseline {
    /// `package`: the app's package name.
    pub package: String,
    /// `signing_cert_sha256`: the app's signing certificate digests from the feed inventories
    /// (informational).
    #[serde(default)]
    pub signing_cert_sha256: Vec<String>,
    /// The organisation accepts this app's own trust logic: its destinations
    /// are proposed for the inspection bypass list instead of for blocking.
    #[serde(default)]
    pub pinning_approved: bool,
    /// `destinations`: every destination the app reached.
    #[serde(default)]
    pub destinations: Vec<Destination>,
}

/// One destination of an app.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Destination {
    /// A host name (exact), `*.domain` (strict subdomains of domain), or an address.
    pub host: String,
    /// `approved`: the app may reach it (set by the reviewer).
    #[serde(default)]
    pub approved: bool,
    /// What the sensor saw (informational; ignored when read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// What the sensor saw of an app at one destination.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// Sessions of the app to the destination.
    pub sessions: u64,
    /// Sessions terminated by the inspector in which the client went on.
    pub established_inspected: u64,
    /// Sessions terminated by the inspector that the client rejected.
    pub rejected_under_inspection: u64,
    /// Sessions on a `direct` or `sanctioned_bypass` path.
    pub direct_or_bypassed: u64,
    /// `approved` / `outside` / `none`: the feed's baseline verdict in the EVE records.
    pub feed_baseline: String,
    /// Time of the first session, UTC.
    pub first_seen: String,
    /// Time of the last session, UTC.
    pub last_seen: String,
}

/// The decisions read from `--approved-baselines`.
#[derive(Debug, Default)]
pub struct Approvals {
    apps: BTreeMap<String, (bool, Vec<String>)>,
}

impl Approvals {
    /// Read an approvals file (at most [`MAX_FILE`] bytes); errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Approvals> {
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("--approved-baselines {}: {e}", path.display()))?;
        if meta.len() > MAX_FILE {
            anyhow::bail!("--approved-baselines {}: larger than {MAX_FILE} bytes", path.display());
        }
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--approved-baselines {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("--approved-baselines {}: {e}", path.display()))
    }

    /// Parse an approvals file's text: a [`File`] of format [`FORMAT`]; only destinations with
    /// `approved` count.
    pub fn parse(text: &str) -> anyhow::Result<Approvals> {
        let f: File = serde_json::from_str(text)?;
        if f.format != FORMAT {
            anyhow::bail!("format is {:?}, expected {FORMAT:?}", f.format);
        }
        let mut apps = BTreeMap::new();
        for a in f.apps {
            let hosts = a.destinations.into_iter().filter(|d| d.approved).map(|d| d.host.to_ascii_lowercase()).collect();
            apps.insert(a.package, (a.pinning_approved, hosts));
        }
        Ok(Approvals { apps })
    }

    /// The app may reach `dest` (exact host, or a `*.domain` entry covering it).
    pub fn approves(&self, app: &str, dest: &str) -> bool {
        let dest = dest.to_ascii_lowercase();
        self.apps.get(app).is_some_and(|(_, hosts)| hosts.iter().any(|h| host_matches(h, &dest)))
    }

    /// The reviewer accepts the app's own trust logic (`pinning_approved`).
    pub fn pinning_approved(&self, app: &str) -> bool {
        self.apps.get(app).is_some_and(|(p, _)| *p)
    }

    /// The app's approved `*.domain` entries.
    pub fn wildcards<'a>(&'a self, app: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.apps.get(app).into_iter().flat_map(|(_, h)| h.iter()).filter(|h| h.starts_with("*."))
    }

    /// No app in the file.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// `pattern` is a host (exact) or `*.domain` (strict subdomains only).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host.len() > domain.len() + 1 && host.ends_with(domain) && host.as_bytes()[host.len() - domain.len() - 1] == b'.',
        None => pattern == host,
    }
}

fn ts_text(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The learned baselines, for review: one entry per attributed app, one
/// destination per host it reached. Decisions already in `approvals` are kept.
pub fn export(m: &Model, approvals: &Approvals) -> File {
    let mut per: BTreeMap<&str, BTreeMap<String, Seen>> = BTreeMap::new();
    let mut feed: BTreeMap<(&str, String), BTreeSet<&'static str>> = BTreeMap::new();
    for s in &m.sessions {
        let Some(app) = s.app.as_deref() else {
            continue;
        };
        let d = per.entry(app).or_default().entry(s.dest().to_ascii_lowercase()).or_default();
        d.sessions += 1;
        let inspected = matches!(s.path.as_str(), "intercepted" | "explicit_proxy") && s.intercepted != Some(false);
        if inspected && s.outcome == "established" {
            d.established_inspected += 1;
        }
        if inspected && s.rejected() {
            d.rejected_under_inspection += 1;
        }
        if matches!(s.path.as_str(), "direct" | "sanctioned_bypass") {
            d.direct_or_bypassed += 1;
        }
        let t = ts_text(s.ts_ns);
        if d.first_seen.is_empty() || t < d.first_seen {
            d.first_seen = t.clone();
        }
        if t > d.last_seen {
            d.last_seen = t;
        }
        feed.entry((app, s.dest().to_ascii_lowercase())).or_default().insert(match s.baseline_approved {
            Some(true) => "approved",
            Some(false) => "outside",
            None => "none",
        });
    }
    let apps = per
        .into_iter()
        .filter(|(app, _)| *app != NO_APP)
        .map(|(app, dests)| AppBaseline {
            package: app.to_string(),
            signing_cert_sha256: m.certs.get(app).map(|c| c.iter().cloned().collect()).unwrap_or_default(),
            pinning_approved: approvals.pinning_approved(app),
            destinations: dests
                .into_iter()
                .map(|(host, mut seen)| {
                    let verdicts = feed.get(&(app, host.clone())).cloned().unwrap_or_default();
                    seen.feed_baseline = if verdicts.contains("outside") {
                        "outside"
                    } else if verdicts.contains("approved") {
                        "approved"
                    } else {
                        "none"
                    }
                    .into();
                    let approved = approvals.approves(app, &host) || seen.feed_baseline == "approved";
                    Destination { host, approved, seen: Some(seen) }
                })
                .collect(),
        })
        .collect();
    File { format: FORMAT.into(), apps }
}

/// First and last session time of the model, for the page header.
pub fn span_text(m: &Model) -> (String, String) {
    (ts_text(m.first_ns), ts_text(m.last_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_entries_cover_strict_subdomains_only() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(host_matches("api.example.com", "api.example.com"));
    }

    #[test]
    fn only_approved_entries_count() {
        let a = Approvals::parse(r#"{"format":"pinwatch-baselines/1","apps":[{"package":"p","pinning_approved":true,"destinations":[{"host":"A.test","approved":true},{"host":"b.test","approved":false}]}]}"#).unwrap();
        assert!(a.approves("p", "a.test"));
        assert!(!a.approves("p", "b.test"));
        assert!(!a.approves("q", "a.test"));
        assert!(a.pinning_approved("p"));
        assert!(Approvals::parse(r#"{"format":"other","apps":[]}"#).is_err());
    }
}
