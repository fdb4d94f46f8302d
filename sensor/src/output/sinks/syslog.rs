//! Syslog sink: each EVE line is the MSG of one RFC 5424 message,
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME pinwatch PROCID MSGID - MSG
//! ```
//!
//! - PRI = facility × 8 + severity (`facility`, default `local5`;
//!   `severity`, default `info`: Suricata's defaults);
//! - TIMESTAMP = the record's own `timestamp` (packet time) in RFC 3339
//!   form, `-` when the line has none;
//! - HOSTNAME = the sensor name (`host` of the records; `hostname=` overrides);
//! - PROCID = the process id, MSGID = the record's `event_type`;
//! - no structured data; MSG is the line as is, without a BOM (RFC 5424
//!   `MSG-ANY`).
//!
//! Over TCP (`syslog+tcp://`) messages are framed by octet counting
//! (RFC 6587 §3.4.1: `LEN SP MESSAGE`) and have no size limit. Over UDP
//! (`syslog+udp://`, RFC 5426) one datagram carries one message of at most
//! `max` bytes (default 8192, rsyslog's default `maxMessageSize`; at most
//! 65000): a longer one is cut to `max` bytes (`oversize=truncate`, the
//! default, counted as `truncated`; the cut MSG is no longer valid JSON) or
//! not sent (`oversize=drop`, counted as dropped). A datagram the socket
//! refuses (e.g. the receiver's port answered ICMP unreachable) is counted
//! as dropped; UDP gives no other word of loss.
//!
//! The RFC 5424 header is written here (about thirty lines) rather than
//! through a crate: the syslog crates format the header from the wall clock
//! and the local host name, and pinwatch needs the record's packet time and
//! the sensor name.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;

use super::{json_str_field, Params, SinkCounters, Transport, IO_TIMEOUT};

/// Largest UDP message accepted for `max`.
pub const UDP_MAX: usize = 65_000;
/// Default UDP message limit (rsyslog's default `maxMessageSize`).
pub const UDP_DEFAULT_MAX: usize = 8192;

/// A syslog sink's settings, from the URL and its query keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    /// `syslog+tcp://` (octet-counted framing); else UDP, one message a datagram.
    pub tcp: bool,
    /// Receiver host name or address.
    pub host: String,
    /// Receiver port (514 by default).
    pub port: u16,
    /// 0–23.
    pub facility: u8,
    /// 0–7.
    pub severity: u8,
    /// HOSTNAME; `None` until the sensor name is known (then the machine's).
    pub hostname: Option<String>,
    /// UDP: most bytes in one message.
    pub max: usize,
    /// UDP: drop (not truncate) a longer message.
    pub drop_oversize: bool,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

fn by_name(v: &str, names: &[&str], aliases: &[(&str, usize)]) -> Option<u8> {
    if let Ok(n) = v.parse::<usize>() {
        return (n < names.len()).then_some(n as u8);
    }
    let v = v.to_ascii_lowercase();
    names.iter().position(|n| *n == v).or_else(|| aliases.iter().find(|(a, _)| *a == v).map(|(_, i)| *i)).map(|i| i as u8)
}

impl SyslogConfig {
    pub(crate) fn from_params(tcp: bool, host: String, port: u16, p: &mut Params) -> Result<SyslogConfig, String> {
        let facility = match p.take("facility") {
            None => 21,
            Some(v) => by_name(&v, &FACILITIES, &[("security", 4)])
                .ok_or_else(|| format!("facility={v}: expected a syslog facility name or 0-23"))?,
        };
        let severity = match p.take("severity") {
            None => 6,
            Some(v) => by_name(&v, &SEVERITIES, &[("emergency", 0), ("critical", 2), ("error", 3), ("warn", 4), ("informational", 6)])
                .ok_or_else(|| format!("severity={v}: expected a syslog severity name or 0-7"))?,
        };
        let hostname = p.take("hostname");
        let max = p.take_num("max", 480, UDP_MAX)?.unwrap_or(UDP_DEFAULT_MAX);
        let drop_oversize = match p.take("oversize").as_deref() {
            None | Some("truncate") => false,
            Some("drop") => true,
            Some(v) => return Err(format!("oversize={v}: expected truncate or drop")),
        };
        Ok(SyslogConfig { tcp, host, port, facility, severity, hostname, max, drop_oversize })
    }
}

/// RFC 5424 HOSTNAME: 1–255 printable US-ASCII, no space; `-` if empty.
fn header_name(s: &str, max: usize) -> String {
    let v: String = s.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v
    }
}

/// EVE's `2024-01-02T03:04:05.123456+0000` as RFC 3339 `…+00:00`; `-` otherwise.
fn header_time(line: &[u8]) -> String {
    let Some(ts) = json_str_field(line, "timestamp") else {
        return "-".into();
    };
    let b = ts.as_bytes();
    let ok = b.len() == 31
        && b[19] == b'.'
        && (b[26] == b'+' || b[26] == b'-')
        && b[..19].iter().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16) || c.is_ascii_digit())
        && b[27..].iter().all(u8::is_ascii_digit);
    if !ok {
        return "-".into();
    }
    format!("{}{}:{}", &ts[..26], &ts[26..29], &ts[29..])
}

/// One RFC 5424 message (without framing) for `line`.
pub fn format_message(cfg: &SyslogConfig, hostname: &str, procid: u32, line: &[u8]) -> Vec<u8> {
    let pri = u32::from(cfg.facility) * 8 + u32::from(cfg.severity);
    let msgid = json_str_field(line, "event_type").map_or_else(|| "-".to_string(), |e| header_name(e, 32));
    let mut m = format!("<{pri}>1 {} {} pinwatch {procid} {msgid} - ", header_time(line), header_name(hostname, 255)).into_bytes();
    m.extend_from_slice(line);
    m
}

enum Conn {
    Udp(UdpSocket),
    Tcp(Option<TcpStream>),
}

/// The syslog [`Transport`]: one RFC 5424 message per line, over UDP (one datagram each) or TCP
/// (octet-counted, connected on first use and again after [`Transport::reset`]).
pub struct SyslogTransport {
    cfg: SyslogConfig,
    hostname: String,
    procid: u32,
    conn: Conn,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl SyslogTransport {
    /// Resolve the receiver (an unknown host is an error at start) and,
    /// for UDP, open the socket.
    pub fn new(cfg: SyslogConfig) -> std::io::Result<SyslogTransport> {
        let addr = (cfg.host.as_str(), cfg.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("syslog receiver {}: no address", cfg.host)))?;
        let conn = if cfg.tcp {
            Conn::Tcp(None)
        } else {
            let s = UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            s.connect(addr)?;
            Conn::Udp(s)
        };
        let hostname = cfg.hostname.clone().unwrap_or_else(machine_hostname);
        Ok(SyslogTransport { cfg, hostname, procid: std::process::id(), conn, addr, buf: Vec::new() })
    }
}

/// The machine's host name (Linux), `-` when unknown.
fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

impl Transport for SyslogTransport {
    fn send(&mut self, batch: &[Vec<u8>], c: &SinkCounters) -> Result<u64, String> {
        match &mut self.conn {
            Conn::Udp(s) => {
                let mut dropped = 0;
                for line in batch {
                    let mut m = format_message(&self.cfg, &self.hostname, self.procid, line);
                    if m.len() > self.cfg.max {
                        if self.cfg.drop_oversize {
                            dropped += 1;
                            c.bytes_dropped.fetch_add(line.len() as u64 + 1, Relaxed);
                            continue;
                        }
                        m.truncate(self.cfg.max);
                        c.truncated.fetch_add(1, Relaxed);
                    }
                    if let Err(e) = s.send(&m) {
                        dropped += 1;
                        c.write_errors.fetch_add(1, Relaxed);
                        c.bytes_dropped.fetch_add(line.len() as u64 + 1, Relaxed);
                        *c.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("syslog udp {}: {e}", self.addr));
                    }
                }
                Ok(dropped)
            }
            Conn::Tcp(stream) => {
                if stream.is_none() {
                    let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).map_err(|e| format!("syslog tcp {}: {e}", self.addr))?;
                    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                    let _ = s.set_nodelay(true);
                    c.connects.fetch_add(1, Relaxed);
                    *stream = Some(s);
                }
                self.buf.clear();
                for line in batch {
                    let m = format_message(&self.cfg, &self.hostname, self.procid, line);
                    // RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG.
                    self.buf.extend_from_slice(m.len().to_string().as_bytes());
                    self.buf.push(b' ');
                    self.buf.extend_from_slice(&m);
                }
                let s = stream.as_mut().ok_or("no connection")?;
                s.write_all(&self.buf).and_then(|()| s.flush()).map_err(|e| format!("syslog tcp {}: {e}", self.addr))?;
                Ok(0)
            }
        }
    }

    fn reset(&mut self) {
        if let Conn::Tcp(s) = &mut self.conn {
            *s = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SyslogConfig {
        SyslogConfig {
            tcp: false,
            host: "127.0.0.1".into(),
            port: 514,
            facility: 21,
            severity: 6,
            hostname: None,
            max: 8192,
            drop_oversize: false,
        }
    }

    #[test]
    fn rfc5424_header() {
        let line = br#"{"timestamp":"2024-01-02T03:04:05.123456+0000","flow_id":1,"event_type":"tls","host":"s1"}"#;
        let m = format_message(&cfg(), "sensor-a", 42, line);
        let want = format!("<174>1 2024-01-02T03:04:05.123456+00:00 sensor-a pinwatch 42 tls - {}", std::str::from_utf8(line).unwrap());
        assert_eq!(String::from_utf8(m).unwrap(), want);
        // No timestamp, odd host name, negative offset.
        let m = format_message(&SyslogConfig { facility: 0, severity: 0, ..cfg() }, "a b", 1, b"{}");
        assert_eq!(m, b"<0>1 - a_b pinwatch 1 - - {}");
        let m = format_message(&cfg(), "", 1, br#"{"timestamp":"2024-01-02T03:04:05.000001-0530"}"#);
        assert!(m.starts_with(b"<174>1 2024-01-02T03:04:05.000001-05:30 - pinwatch"), "{}", String::from_utf8_lossy(&m));
        let m = format_message(&cfg(), "h", 1, br#"{"timestamp":"garbage"}"#);
        assert!(m.starts_with(b"<174>1 - h "));
    }

    #[test]
    fn names() {
        assert_eq!(by_name("local7", &FACILITIES, &[]), Some(23));
        assert_eq!(by_name("3", &FACILITIES, &[]), Some(3));
        assert_eq!(by_name("24", &FACILITIES, &[]), None);
        assert_eq!(by_name("WARN", &SEVERITIES, &[("warn", 4)]), Some(4));
    }
}
