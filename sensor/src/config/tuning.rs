//! Alert tuning rules, as configured: Suricata `threshold.config`-style
//! `suppress`, `threshold` (`event_filter`) and `rate_filter` lines per
//! signature, and an allow list of apps, devices and destinations whose
//! findings are not written. Documented in `docs/tuning.md` (example:
//! `dist/threshold.config.example`).
//!
//! [`Rules`] is the parsed `[tuning]` table of the TOML file, plus its
//! `threshold_file`: parsing never fails, a bad line is skipped, counted and
//! reported with its line number. The decisions, with the counters of the
//! threshold and rate windows, are [`crate::verdict::tuning::Tuning`]'s.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Largest `threshold_file` read, bytes.
pub const MAX_THRESHOLD_FILE_BYTES: u64 = 1 << 20;
/// Problems kept for the stats record (all are counted).
pub(crate) const MAX_PROBLEMS: usize = 20;

/// pinwatch's generator id (`alert.gid`). `gen_id 1`, Suricata's rule gid,
/// is accepted for it; `gen_id 0, sig_id 0` means every signature.
pub const GID: u32 = 1725;

/// Where the matches of a line are counted or matched (Suricata's names).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Track {
    BySrc,
    ByDst,
    ByRule,
    /// The pair of addresses, whichever way round.
    ByBoth,
    /// `suppress` only: source or destination.
    ByEither,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Limit,
    Threshold,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Alert,
    Pass,
    Drop,
    Reject,
}

#[derive(Debug, Clone)]
pub(crate) struct Suppress {
    pub(crate) sid: u32,
    pub(crate) track: Option<(Track, Vec<IpNet>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    pub(crate) sid: u32,
    pub(crate) kind: Kind,
    pub(crate) track: Track,
    pub(crate) count: u64,
    pub(crate) seconds: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RateFilter {
    pub(crate) sid: u32,
    pub(crate) track: Track,
    pub(crate) count: u64,
    pub(crate) seconds: u64,
    pub(crate) new_action: Action,
    pub(crate) timeout: u64,
}

/// The allow list: findings about these apps, devices or destinations are
/// not written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allow {
    pub(crate) apps: Vec<glob::Pattern>,
    pub(crate) app_certs: Vec<String>,
    pub(crate) devices: Vec<glob::Pattern>,
    pub(crate) hosts: Vec<glob::Pattern>,
    pub(crate) nets: Vec<IpNet>,
}

/// Parsed tuning rules. Never fails to build: bad lines are in `problems`.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub(crate) suppress: Vec<Suppress>,
    pub(crate) thresholds: Vec<Threshold>,
    pub(crate) rates: Vec<RateFilter>,
    pub(crate) allow: Allow,
    /// Lines and allow entries in use.
    pub rules: u64,
    /// Lines (and allow entries, and an unreadable file) skipped.
    pub bad_lines: u64,
    /// The first problems, each with its source and line number.
    pub problems: Vec<String>,
}

/// The allow list as the TOML file writes it (`[tuning.allow]`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// App packages (globs: `com.example.*`).
    #[serde(default)]
    pub apps: Vec<String>,
    /// App signing certificate SHA-256 digests (hex), as the feed's
    /// `app.signing_cert_sha256[]` and `mobile.app.signing_cert_sha256`.
    #[serde(default)]
    pub app_certs: Vec<String>,
    /// Device ids (globs), as `mobile.device_id`.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Destinations: server name globs (`*.example.com`), IP addresses or CIDRs.
    #[serde(default)]
    pub destinations: Vec<String>,
}

pub(crate) const GLOB: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: false, require_literal_separator: false, require_literal_leading_dot: false };

fn parse_nets(s: &str) -> Result<Vec<IpNet>, String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    for part in inner.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
        let n = part
            .parse::<IpNet>()
            .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("`{part}` is not an IP address or CIDR (variables are not supported)"))?;
        out.push(n);
    }
    if out.is_empty() {
        return Err("`ip` is empty".into());
    }
    Ok(out)
}

/// Split `a b, c [d, e], f` at the commas outside brackets.
fn split_fields(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

impl Rules {
    /// Parse `threshold.config` text. `source` names it in problems.
    pub fn parse(source: &str, text: &str) -> Rules {
        let mut r = Rules::default();
        r.add_lines(source, text);
        r
    }

    /// Add the lines of `text` (a `\` at the end of a line continues it).
    pub fn add_lines(&mut self, source: &str, text: &str) {
        let mut pending = String::new();
        let mut first_line = 0u64;
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            if pending.is_empty() {
                first_line = n;
            }
            let t = line.trim();
            if let Some(body) = t.strip_suffix('\\') {
                pending.push_str(body);
                pending.push(' ');
                continue;
            }
            pending.push_str(t);
            let whole = std::mem::take(&mut pending);
            self.add_line(source, first_line, &whole);
        }
        if !pending.is_empty() {
            self.add_line(source, first_line, &pending);
        }
    }

    /// Note a problem (counted; the first ones kept).
    pub fn problem(&mut self, msg: String) {
        self.bad_lines += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(msg);
        }
    }

    fn add_line(&mut self, source: &str, n: u64, line: &str) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        match parse_line(line) {
            Ok(Line::Suppress(s)) => self.suppress.push(s),
            Ok(Line::Threshold(t)) => self.thresholds.push(t),
            Ok(Line::Rate(t)) => self.rates.push(t),
            Err(e) => {
                self.problem(format!("{source}:{n}: {e}"));
                return;
            }
        }
        self.rules += 1;
    }

    /// Add the allow list; bad entries are problems.
    pub fn add_allow(&mut self, source: &str, a: &AllowConfig) {
        let globs = |what: &str, list: &[String], into: fn(&mut Allow) -> &mut Vec<glob::Pattern>, r: &mut Rules| {
            for p in list {
                match glob::Pattern::new(p.trim()) {
                    Ok(g) if !p.trim().is_empty() => {
                        into(&mut r.allow).push(g);
                        r.rules += 1;
                    }
                    Ok(_) => r.problem(format!("{source}: tuning.allow.{what}: an empty entry")),
                    Err(e) => r.problem(format!("{source}: tuning.allow.{what}: `{p}`: {e}")),
                }
            }
        };
        globs("apps", &a.apps, |a| &mut a.apps, self);
        globs("devices", &a.devices, |a| &mut a.devices, self);
        for c in &a.app_certs {
            let c = c.trim().to_ascii_lowercase().replace(':', "");
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.problem(format!("{source}: tuning.allow.app_certs: `{c}` is not a hex digest"));
            } else {
                self.allow.app_certs.push(c);
                self.rules += 1;
            }
        }
        for d in &a.destinations {
            let d = d.trim();
            if let Ok(n) = d.parse::<IpNet>().or_else(|_| d.parse::<IpAddr>().map(IpNet::from)) {
                self.allow.nets.push(n);
                self.rules += 1;
                continue;
            }
            match glob::Pattern::new(&d.trim_end_matches('.').to_ascii_lowercase()) {
                Ok(g) if !d.is_empty() => {
                    self.allow.hosts.push(g);
                    self.rules += 1;
                }
                Ok(_) => self.problem(format!("{source}: tuning.allow.destinations: an empty entry")),
                Err(e) => self.problem(format!("{source}: tuning.allow.destinations: `{d}`: {e}")),
            }
        }
    }

    /// Tell the operator about the skipped lines (stderr), at start and reload.
    pub fn warn(&self) {
        for p in &self.problems {
            eprintln!("pinwatch: tuning: skipped {p}");
        }
        if self.bad_lines > self.problems.len() as u64 {
            eprintln!("pinwatch: tuning: {} more skipped (stats.tuning.bad_lines)", self.bad_lines - self.problems.len() as u64);
        }
    }

    /// Nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.suppress.is_empty()
            && self.thresholds.is_empty()
            && self.rates.is_empty()
            && self.allow.apps.is_empty()
            && self.allow.app_certs.is_empty()
            && self.allow.devices.is_empty()
            && self.allow.hosts.is_empty()
            && self.allow.nets.is_empty()
    }
}

enum Line {
    Suppress(Suppress),
    Threshold(Threshold),
    Rate(RateFilter),
}

fn parse_line(line: &str) -> Result<Line, String> {
    let (verb, rest) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{line}`: expected `suppress`, `threshold`, `event_filter` or `rate_filter` and its fields"))?;
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for f in split_fields(rest) {
        let (k, v) = f.split_once(char::is_whitespace).ok_or_else(|| format!("`{f}`: expected `key value`"))?;
        if fields.insert(k.trim(), v.trim()).is_some() {
            return Err(format!("`{k}` given twice"));
        }
    }
    let mut take = |k: &str| fields.remove(k);
    let num = |k: &str, v: Option<&str>| -> Result<u64, String> {
        v.ok_or_else(|| format!("`{k}` is missing"))?.parse::<u64>().map_err(|_| format!("`{k}` is not a number"))
    };
    let gid = num("gen_id", take("gen_id"))?;
    let sid = u32::try_from(num("sig_id", take("sig_id"))?).map_err(|_| "`sig_id` is too large".to_string())?;
    match (gid, sid) {
        (0, 0) => {}
        (0, _) => return Err("`gen_id 0` goes with `sig_id 0` (every signature)".into()),
        (1, _) | (1725, _) => {}
        (g, _) => return Err(format!("gen_id {g}: pinwatch's signatures have gid {GID} (Suricata's 1 is accepted for it)")),
    }
    const SIDS: [u32; 6] = [1_725_001, 1_725_002, 1_725_003, 1_725_004, 1_725_005, 1_725_006];
    if sid != 0 && !SIDS.contains(&sid) {
        return Err(format!("sig_id {sid} is not a pinwatch signature (1725001..=1725006, or 0 for every one)"));
    }
    let track = |v: Option<&str>, allowed: &[(&str, Track)]| -> Result<Track, String> {
        let v = v.ok_or("`track` is missing")?;
        allowed
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("track `{v}`: use {}", allowed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")))
    };
    const COUNTED: [(&str, Track); 4] =
        [("by_src", Track::BySrc), ("by_dst", Track::ByDst), ("by_rule", Track::ByRule), ("by_both", Track::ByBoth)];
    let positive = |k: &str, v: Option<&str>| -> Result<u64, String> {
        match num(k, v)? {
            0 => Err(format!("`{k}` must be at least 1")),
            n => Ok(n),
        }
    };
    let line = match verb {
        "suppress" => {
            let t = match (take("track"), take("ip")) {
                (None, None) => None,
                (Some(t), Some(ip)) => Some((
                    track(Some(t), &[("by_src", Track::BySrc), ("by_dst", Track::ByDst), ("by_either", Track::ByEither)])?,
                    parse_nets(ip)?,
                )),
                (Some(_), None) => return Err("`track` needs `ip`".into()),
                (None, Some(_)) => return Err("`ip` needs `track`".into()),
            };
            Line::Suppress(Suppress { sid, track: t })
        }
        "threshold" | "event_filter" => {
            let kind = match take("type") {
                Some("limit") => Kind::Limit,
                Some("threshold") => Kind::Threshold,
                Some("both") => Kind::Both,
                Some(o) => return Err(format!("type `{o}`: use limit, threshold or both")),
                None => return Err("`type` is missing".into()),
            };
            let tr = track(take("track"), &COUNTED)?;
            Line::Threshold(Threshold {
                sid,
                kind,
                track: tr,
                count: positive("count", take("count"))?,
                seconds: positive("seconds", take("seconds"))?,
            })
        }
        "rate_filter" => {
            let tr = track(take("track"), &COUNTED)?;
            let new_action = match take("new_action") {
                Some("alert") => Action::Alert,
                Some("pass") => Action::Pass,
                Some("drop") => Action::Drop,
                Some("reject") => Action::Reject,
                Some(o) => return Err(format!("new_action `{o}`: use alert, pass, drop or reject")),
                None => return Err("`new_action` is missing".into()),
            };
            Line::Rate(RateFilter {
                sid,
                track: tr,
                count: positive("count", take("count"))?,
                seconds: positive("seconds", take("seconds"))?,
                new_action,
                timeout: positive("timeout", take("timeout"))?,
            })
        }
        other => return Err(format!("`{other}`: expected suppress, threshold, event_filter or rate_filter")),
    };
    if let Some((k, _)) = fields.into_iter().next() {
        return Err(format!("`{k}` is not a field of `{verb}`"));
    }
    Ok(line)
}
