//! Our side of the comparison: the EVE `tls` and `quic` lines of one run.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

/// One `tls` or `quic` record.
#[derive(Debug, Clone)]
pub struct Session {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Flow start / end, seconds since the epoch (packet time).
    pub start: f64,
    pub end: f64,
    pub v: Value,
}

impl Session {
    pub fn str_at(&self, path: &[&str]) -> Option<String> {
        get(&self.v, path).and_then(|x| x.as_str()).map(str::to_string)
    }
    pub fn client_hellos(&self) -> &[Value] {
        get(&self.v, &["handshake", "client_hellos"]).and_then(|x| x.as_array()).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn alerts(&self) -> &[Value] {
        get(&self.v, &["handshake", "alerts"]).and_then(|x| x.as_array()).map(Vec::as_slice).unwrap_or(&[])
    }
    /// The server's chain, parsed (`handshake.chain`; `tls.chain` is the
    /// same certificates as base64 DER, Suricata's form).
    pub fn chain(&self) -> &[Value] {
        get(&self.v, &["handshake", "chain"]).and_then(|x| x.as_array()).map(Vec::as_slice).unwrap_or(&[])
    }
    /// A short label for reports: `client -> server @start`.
    pub fn label(&self) -> String {
        format!("{} -> {} @{:.6}", self.client, self.server, self.start)
    }
}

pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// A JSON list of strings as a Rust list (missing → empty).
pub fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|x| x.as_array())
        .map(|a| a.iter().map(|s| s.as_str().map(str::to_string).unwrap_or_else(|| s.to_string())).collect())
        .unwrap_or_default()
}

/// `2016-06-01T08:02:45.123456+0000` → seconds since the epoch (UTC).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let date = s.get(0..10)?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let hh: i64 = s.get(11..13)?.parse().ok()?;
    let mm: i64 = s.get(14..16)?.parse().ok()?;
    let ss: i64 = s.get(17..19)?.parse().ok()?;
    let frac: f64 = match s.get(19..20) {
        Some(".") => {
            let digits: String = s[20..].chars().take_while(|c| c.is_ascii_digit()).collect();
            format!("0.{digits}").parse().unwrap_or(0.0)
        }
        _ => 0.0,
    };
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// The `tls` records (and the `stats` record) of an EVE output.
pub fn parse_output(out: &[u8]) -> Result<(Vec<Session>, Option<Value>), String> {
    let all = parse_all(out)?;
    Ok((all.tls, all.stats))
}

/// Everything the comparison reads from one run.
#[derive(Debug, Default)]
pub struct Output {
    /// `event_type: "tls"` records.
    pub tls: Vec<Session>,
    /// `event_type: "quic"` records (one per QUIC connection; `src` is the
    /// client, the sender of the first Initial).
    pub quic: Vec<Session>,
    pub stats: Option<Value>,
}

/// The `tls` and `quic` records and the `stats` record of an EVE output.
pub fn parse_all(out: &[u8]) -> Result<Output, String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("output is not UTF-8: {e}"))?;
    let mut o = Output::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("output line {} is not JSON: {e}", n + 1))?;
        let kind = v.get("event_type").and_then(|x| x.as_str()).unwrap_or("").to_string();
        match kind.as_str() {
            "tls" | "quic" => {
                let ep = |ip: &str, port: &str| -> Option<SocketAddr> {
                    let ip: IpAddr = v.get(ip)?.as_str()?.parse().ok()?;
                    Some(SocketAddr::new(ip, u16::try_from(v.get(port)?.as_u64()?).ok()?))
                };
                let (Some(client), Some(server)) = (ep("src_ip", "src_port"), ep("dest_ip", "dest_port")) else {
                    return Err(format!("output line {}: {kind} record without src/dest: {line}", n + 1));
                };
                let ts = |p: &[&str]| get(&v, p).and_then(|x| x.as_str()).and_then(parse_timestamp);
                let start = ts(&["flow", "start"]).or_else(|| ts(&["timestamp"])).unwrap_or(0.0);
                let end = ts(&["flow", "end"]).unwrap_or(start);
                let s = Session { client, server, start, end, v };
                if kind == "tls" {
                    o.tls.push(s);
                } else {
                    o.quic.push(s);
                }
            }
            // The end of a session written while open: its final alerts,
            // history and end time belong to the session (docs/output.md).
            "flow" => {
                let id = v.get("flow_id").cloned();
                let Some(s) = o.tls.iter_mut().chain(o.quic.iter_mut()).rev().find(|s| s.v.get("flow_id") == id.as_ref()) else { continue };
                if let Some(h) = s.v.get_mut("handshake").and_then(|h| h.as_object_mut()) {
                    for k in ["alerts", "history"] {
                        if let Some(x) = get(&v, &["flow_end", k]) {
                            h.insert(k.to_string(), x.clone());
                        }
                    }
                    if let Some(c) = get(&v, &["flow_end", "close"]) {
                        h.insert("close".to_string(), c.clone());
                    }
                }
                if let Some(end) = get(&v, &["flow", "end"]).and_then(|x| x.as_str()).and_then(parse_timestamp) {
                    s.end = end;
                }
            }
            "stats" => o.stats = Some(v),
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000000+0000"), Some(0.0));
        let t = parse_timestamp("2016-06-24T11:42:45.123456+0000").expect("parses");
        assert!((t - 1_466_768_565.123_456).abs() < 1e-5, "{t}");
    }
}
