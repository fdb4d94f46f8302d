//! What the network team can apply: proposed bypass-list entries for apps
//! whose pinning is approved, block candidates for the others, written in the
//! forms inspection products take (docs/report.md, Actions).
//!
//! Entries are the hosts seen, exactly. A wildcard (`*.domain`, strict
//! subdomains) is written only where a reviewer approved one for the app in
//! `--approved-baselines`, and never for a public suffix (`*.co.uk`,
//! `*.s3.amazonaws.com`: the public suffix list, via `psl`), so no entry is
//! broader than the evidence or the reviewer's decision. Sessions to bare
//! addresses (no SNI) cannot go in a domain list and are listed apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::baseline::{host_matches, Approvals};
use super::model::{Model, NO_APP};

/// What the network team is asked to do with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Put it on the inspection bypass list: the app's pinning is approved.
    Bypass,
    /// Block it: an app whose pinning is not approved went around or refused the inspection there.
    Block,
}

impl Action {
    /// `bypass` or `block`, as the lists and CSV write it.
    pub fn word(self) -> &'static str {
        match self {
            Action::Bypass => "bypass",
            Action::Block => "block",
        }
    }
}

/// One proposed entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Bypass or block.
    pub action: Action,
    /// `api.example.com`, or `*.example.com` (strict subdomains).
    pub entry: String,
    /// The registrable domain of the entry (public suffix plus one label).
    pub registrable_domain: String,
    /// The apps whose sessions made the entry.
    pub apps: BTreeSet<String>,
    /// The hosts seen that the entry covers.
    pub hosts: BTreeSet<String>,
    /// Sessions that made the entry.
    pub sessions: u64,
    /// Of those, sessions that rejected the inspection (inspected path, `client_rejected`).
    pub rejected_under_inspection: u64,
    /// Of those, sessions that went around the inspection (path `direct` or `tunnel`).
    pub around_inspection: u64,
    /// Why the entry is proposed, in words.
    pub why: String,
}

/// Everything the report proposes to the network team.
#[derive(Debug, Default, Serialize)]
pub struct Proposals {
    /// The proposed bypass and block entries, by host (or approved wildcard).
    pub entries: Vec<Entry>,
    /// Destinations with no name (no SNI): address only, for an address object.
    pub addresses: Vec<(String, Action, BTreeSet<String>)>,
    /// Hosts proposed for bypass (an approved app needs them) that another,
    /// unapproved app also reached: not put on the block list.
    pub conflicts: Vec<String>,
    /// Reviewer wildcards refused because they name a public suffix.
    pub refused_wildcards: Vec<String>,
}

/// The registrable domain (public suffix + one label) of a host, or the host.
pub fn registrable(host: &str) -> String {
    psl::domain_str(host).map_or_else(|| host.to_string(), str::to_string)
}

fn is_public_suffix(domain: &str) -> bool {
    psl::suffix_str(domain) == Some(domain)
}

/// The proposals from the sessions: a host where an app rejected the inspection or went around it
/// becomes a bypass entry (pinning approved) or a block candidate (otherwise); see the module
/// documentation.
pub fn propose(m: &Model, approvals: &Approvals) -> Proposals {
    #[derive(Default)]
    struct Acc {
        apps: BTreeSet<String>,
        sessions: u64,
        rejected: u64,
        around: u64,
    }
    let mut per: BTreeMap<(Action, String), Acc> = BTreeMap::new();
    let mut addr: BTreeMap<(String, Action), BTreeSet<String>> = BTreeMap::new();
    for s in &m.sessions {
        let inspected = matches!(s.path.as_str(), "intercepted" | "explicit_proxy") && s.intercepted != Some(false);
        let rejected = inspected && s.rejected();
        let around = matches!(s.path.as_str(), "direct" | "tunnel");
        // A session of no known app counts only when it rejected the
        // inspection (evidence of own trust logic); a direct session alone is
        // a routing matter, not a list entry.
        if !rejected && (!around || s.app.is_none()) {
            continue;
        }
        let app = s.app_name().to_string();
        let action = if s.app.is_some() && approvals.pinning_approved(&app) { Action::Bypass } else { Action::Block };
        let Some(host) = s.sni.as_deref().filter(|h| !h.is_empty() && h.parse::<std::net::IpAddr>().is_err()) else {
            addr.entry((s.dest_ip.clone(), action)).or_default().insert(app);
            continue;
        };
        // An approved app that went around the inspection to a host it never
        // tried through it needs no bypass entry for that host.
        if action == Action::Bypass && !rejected {
            continue;
        }
        let a = per.entry((action, host.to_ascii_lowercase())).or_default();
        a.apps.insert(app);
        a.sessions += 1;
        a.rejected += u64::from(rejected);
        a.around += u64::from(around);
    }
    let mut out = Proposals::default();
    let bypass_hosts: BTreeSet<String> = per.keys().filter(|(a, _)| *a == Action::Bypass).map(|(_, h)| h.clone()).collect();
    // Group into entries: a reviewer's wildcard for every app of the host, else the host.
    let mut entries: BTreeMap<(Action, String), Entry> = BTreeMap::new();
    for ((action, host), acc) in per {
        if action == Action::Block && bypass_hosts.contains(&host) {
            out.conflicts.push(host);
            continue;
        }
        let mut entry = host.clone();
        for app in &acc.apps {
            for w in approvals.wildcards(app) {
                let domain = w.trim_start_matches("*.");
                if host_matches(w, &host) {
                    if is_public_suffix(domain) {
                        if !out.refused_wildcards.contains(w) {
                            out.refused_wildcards.push(w.clone());
                        }
                    } else {
                        entry = w.clone();
                    }
                }
            }
        }
        let e = entries.entry((action, entry.clone())).or_insert_with(|| Entry {
            action,
            registrable_domain: registrable(entry.trim_start_matches("*.")),
            entry: entry.clone(),
            apps: BTreeSet::new(),
            hosts: BTreeSet::new(),
            sessions: 0,
            rejected_under_inspection: 0,
            around_inspection: 0,
            why: String::new(),
        });
        e.apps.extend(acc.apps.iter().cloned());
        e.hosts.insert(host);
        e.sessions += acc.sessions;
        e.rejected_under_inspection += acc.rejected;
        e.around_inspection += acc.around;
    }
    for e in entries.values_mut() {
        e.why = match e.action {
            Action::Bypass => {
                format!("pinning approved ({}); {} session(s) rejected the inspection", join(&e.apps), e.rejected_under_inspection)
            }
            Action::Block => format!(
                "pinning not approved ({}); {} rejected under inspection, {} around it",
                join(&e.apps),
                e.rejected_under_inspection,
                e.around_inspection
            ),
        };
    }
    out.entries = entries.into_values().collect();
    out.entries.sort_by(|a, b| (a.action, &a.registrable_domain, &a.entry).cmp(&(b.action, &b.registrable_domain, &b.entry)));
    out.addresses = addr.into_iter().map(|((ip, a), apps)| (ip, a, apps)).collect();
    out
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().map(|a| if a == NO_APP { "no app attributed" } else { a.as_str() }).collect::<Vec<_>>().join(", ")
}

/// Every export file: (file name, contents).
pub fn render(p: &Proposals) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for action in [Action::Bypass, Action::Block] {
        let list: Vec<&Entry> = p.entries.iter().filter(|e| e.action == action).collect();
        let w = action.word();
        let head = |comment: &str| {
            let mut s = format!("{comment} pinwatch report: proposed {w} entries ({} entries). Review before use.\n", list.len());
            for e in &list {
                s.push_str(&format!("{comment}   {}: {}\n", e.entry, e.why));
            }
            s
        };
        // Squid: dstdomain for exact hosts (no leading dot: a leading dot
        // would add every subdomain), dstdom_regex for strict-subdomain entries.
        let mut squid = head("#");
        for e in &list {
            match e.entry.strip_prefix("*.") {
                Some(d) => squid.push_str(&format!("acl pinwatch_{w}_sub dstdom_regex -i \\.{}$\n", regex_escape(d))),
                None => squid.push_str(&format!("acl pinwatch_{w} dstdomain {}\n", e.entry)),
            }
        }
        squid.push_str(match action {
            Action::Bypass => "# ssl_bump splice pinwatch_bypass\n# ssl_bump splice pinwatch_bypass_sub\n",
            Action::Block => "# http_access deny pinwatch_block\n# http_access deny pinwatch_block_sub\n",
        });
        files.push((format!("squid-{w}.conf"), squid));
        // HAProxy: exact names for map_str, strict-subdomain suffixes (".domain") for map_end.
        let mut ha = head("#");
        let mut ha_sfx = head("#");
        for e in &list {
            match e.entry.strip_prefix("*.") {
                Some(d) => ha_sfx.push_str(&format!(".{d} {w}\n")),
                None => ha.push_str(&format!("{} {w}\n", e.entry)),
            }
        }
        files.push((format!("haproxy-{w}.map"), ha));
        files.push((format!("haproxy-{w}-suffix.map"), ha_sfx));
        // nginx: a map block with `hostnames` (its `*.domain` is strict subdomains).
        let mut ng = head("#");
        ng.push_str(&format!("map $ssl_preread_server_name $pinwatch_{w} {{\n    hostnames;\n    default 0;\n"));
        for e in &list {
            ng.push_str(&format!("    {} 1;\n", e.entry));
        }
        ng.push_str("}\n");
        files.push((format!("nginx-{w}.map"), ng));
        // Palo Alto Networks external dynamic list, URL list type: one entry a
        // line, no comments; the trailing slash stops `host` from also matching
        // `host.other.tld`, `*.domain` is their subdomain wildcard.
        let mut pan = String::new();
        for e in &list {
            pan.push_str(&format!("{}/\n", e.entry));
        }
        files.push((format!("paloalto-edl-{w}.txt"), pan));
        // Zscaler ZIA custom URL category: lowercase hosts without a scheme;
        // a leading dot stands for the domain and its subdomains (a strict
        // subdomain entry has no exact form there: `.domain` also covers domain).
        let mut z = String::from("url,description\n");
        for e in &list {
            let u = e.entry.strip_prefix('*').unwrap_or(&e.entry);
            z.push_str(&format!("{},{}\n", csv_field(u), csv_field(&format!("pinwatch {w}: {}", e.why))));
        }
        files.push((format!("zscaler-{w}.csv"), z));
        // Fortinet FortiGate external threat feed, Domain Name type: one
        // domain a line, `*` as a wildcard.
        let mut fg = String::new();
        for e in &list {
            fg.push_str(&format!("{}\n", e.entry));
        }
        files.push((format!("fortinet-{w}.txt"), fg));
    }
    let mut a = String::from("address,action,apps\n");
    for (ip, act, apps) in &p.addresses {
        a.push_str(&format!("{},{},{}\n", csv_field(ip), act.word(), csv_field(&join(apps))));
    }
    files.push(("addresses.csv".into(), a));
    files
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '-' { vec![c] } else { vec!['\\', c] }).collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_suffixes_are_known() {
        assert!(is_public_suffix("co.uk"));
        assert!(is_public_suffix("s3.amazonaws.com"));
        assert!(!is_public_suffix("example.co.uk"));
        assert_eq!(registrable("api.eu.example.co.uk"), "example.co.uk");
    }

    #[test]
    fn approved_apps_get_bypass_entries_others_block_candidates() {
        use crate::report::model::Builder;
        let mut b = Builder::default();
        let rec = |id: u64, app: &str, sni: &str, path: &str, outcome: &str| {
            let mobile =
                if app.is_empty() { String::new() } else { format!(r#","mobile":{{"device_id":"d","app":{{"package":"{app}"}}}}"#) };
            serde_json::from_str(&format!(
                r#"{{"event_type":"tls","flow_id":{id},"src_ip":"10.0.0.2","dest_ip":"192.0.2.1","tls":{{"sni":"{sni}"}},"tls_failure":{{"outcome":"{outcome}","class":"A"}},"path":{{"kind":"{path}"}}{mobile}}}"#
            ))
            .unwrap()
        };
        b.add(rec(1, "p", "a.example.com", "explicit_proxy", "client_rejected"));
        b.add(rec(2, "p", "only-direct.example.com", "direct", "established"));
        b.add(rec(3, "q", "a.example.com", "explicit_proxy", "client_rejected"));
        b.add(rec(4, "q", "b.example.com", "direct", "established"));
        b.add(rec(5, "", "c.example.com", "direct", "established"));
        b.add(rec(6, "", "d.example.com", "intercepted", "client_rejected"));
        let approvals = Approvals::parse(r#"{"format":"pinwatch-baselines/1","apps":[{"package":"p","pinning_approved":true}]}"#).unwrap();
        let m = b.finish(&approvals, Default::default());
        let p = propose(&m, &approvals);
        let list = |a: Action| p.entries.iter().filter(|e| e.action == a).map(|e| e.entry.as_str()).collect::<Vec<_>>();
        assert_eq!(list(Action::Bypass), ["a.example.com"]);
        assert_eq!(list(Action::Block), ["b.example.com", "d.example.com"]);
        assert_eq!(p.conflicts, ["a.example.com"]);
    }

    #[test]
    fn squid_regex_is_escaped() {
        assert_eq!(regex_escape("a.b-c.test"), "a\\.b-c\\.test");
    }
}
