//! How a `--feed-url` is doing. (How it is reached, headers, CA and client
//! certificate, is [`crate::config::http::HttpTransport`].)
//!
//! - [`ErrorClass`]: every failed request is put in one class (`dns`,
//!   `refused`, `timeout`, `tls`, `auth`, `not_found`, `client`, `server`,
//!   `protocol`, `io`). At start ([`crate::enrich::feed_source::first_answer`]) the classes that retrying
//!   cannot fix (`dns`, `refused`, `tls`, `auth`, `not_found`, `client`)
//!   stop the sensor at once (exit status 2); during a live run every class
//!   is retried with capped exponential backoff and jitter.
//! - [`SourceHealth`]: what the stats record shows of each URL
//!   (`stats.feed.sources[]`): state, last success (wall clock), consecutive
//!   failures, last error class and text, lines received.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The name did not resolve.
    Dns,
    /// Nothing listens (connection refused, host unreachable).
    Refused,
    /// Connect or request timeout.
    Timeout,
    /// TLS handshake: server certificate not trusted (CA), name mismatch,
    /// client certificate refused, or any other TLS alert.
    Tls,
    /// HTTP 401 or 403: the token or client certificate is not accepted.
    Auth,
    /// HTTP 404: wrong URL.
    NotFound,
    /// Another 4xx, or a URL that cannot be used.
    Client,
    /// HTTP 5xx.
    Server,
    /// A page the cursor protocol cannot take (no `X-Feed-Next`, too large).
    Protocol,
    /// Any other I/O error (connection reset mid-page, ...).
    Io,
}

impl ErrorClass {
    /// The class's name as the stats record writes it (`dns`, `not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Dns => "dns",
            ErrorClass::Refused => "refused",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Tls => "tls",
            ErrorClass::Auth => "auth",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Client => "client",
            ErrorClass::Server => "server",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Io => "io",
        }
    }

    /// Retrying will not fix it: at start, the sensor stops.
    pub fn fatal_at_start(self) -> bool {
        matches!(
            self,
            ErrorClass::Dns | ErrorClass::Refused | ErrorClass::Tls | ErrorClass::Auth | ErrorClass::NotFound | ErrorClass::Client
        )
    }

    /// What to check, for the start-up message.
    pub fn hint(self) -> &'static str {
        match self {
            ErrorClass::Dns => "the host name does not resolve",
            ErrorClass::Refused => "nothing accepts connections there",
            ErrorClass::Timeout => "no answer in time",
            ErrorClass::Tls => {
                "TLS failed: check `feed.http_ca_file` (the server's CA) and `feed.http_client_cert`/`http_client_key` (mTLS)"
            }
            ErrorClass::Auth => "not authorised: check the token or header in `feed.http_header_file`, or the client certificate",
            ErrorClass::NotFound => "no feed at this URL (HTTP 404)",
            ErrorClass::Client => "the request was refused",
            ErrorClass::Server => "the feed server failed",
            ErrorClass::Protocol => "the answer is not a feed page",
            ErrorClass::Io => "the connection failed",
        }
    }
}

/// The text of an error and of every error behind it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Class and text of a failed request.
pub fn classify(e: &ureq::Error) -> (ErrorClass, String) {
    match e {
        ureq::Error::Status(code, r) => {
            let class = match code {
                401 | 403 => ErrorClass::Auth,
                404 => ErrorClass::NotFound,
                500..=599 => ErrorClass::Server,
                _ => ErrorClass::Client,
            };
            (class, format!("HTTP {code} {}", r.status_text()))
        }
        ureq::Error::Transport(t) => {
            let text = chain(t);
            let low = text.to_ascii_lowercase();
            let io_kind = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
            let class = if low.contains("tls") || low.contains("certificate") || low.contains("alert") || low.contains("handshake") {
                ErrorClass::Tls
            } else if t.kind() == ureq::ErrorKind::Dns {
                ErrorClass::Dns
            } else if matches!(io_kind, Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)) || low.contains("timed out") {
                ErrorClass::Timeout
            } else if matches!(io_kind, Some(std::io::ErrorKind::ConnectionRefused))
                || low.contains("refused")
                || low.contains("unreachable")
            {
                ErrorClass::Refused
            } else if matches!(t.kind(), ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme) {
                ErrorClass::Client
            } else {
                ErrorClass::Io
            };
            (class, text)
        }
    }
}

/// State of one URL in the stats record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// No answer yet.
    #[default]
    Starting,
    /// The last request succeeded.
    Ok,
    /// The last request failed; the next one is scheduled (backoff).
    Retrying,
    /// The pump stopped.
    Stopped,
}

/// One feed URL's health (`stats.feed.sources[]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceHealth {
    /// `source`: the feed URL.
    pub source: String,
    /// `state`: how its last request went.
    pub state: FeedState,
    /// Wall-clock time of the last successful request, in Suricata's
    /// timestamp format.
    pub last_success: Option<String>,
    /// `consecutive_failures`: failed requests since the last success.
    pub consecutive_failures: u64,
    /// `failures`: failed requests in all.
    pub failures: u64,
    /// `last_error_class`: the class of the last failure, if any.
    pub last_error_class: Option<ErrorClass>,
    /// `last_error`: the text of the last failure (at most 300 characters).
    pub last_error: Option<String>,
    /// Lines received: one event each (bad ones are counted in
    /// `stats.enrichment.feed`).
    pub events_received: u64,
    /// Delay before the next retry, ms (while retrying).
    pub retry_in_ms: Option<u64>,
}

/// Shared between a pump's thread and the stats.
pub type Health = Arc<Mutex<SourceHealth>>;

/// The wall clock now, in Suricata's timestamp format (UTC).
pub fn wall_time() -> String {
    let ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    crate::timefmt::timestamp(ns)
}

/// Record a success (`lines` delivered).
pub fn note_ok(h: &Health, lines: u64) {
    if let Ok(mut h) = h.lock() {
        h.state = FeedState::Ok;
        h.last_success = Some(wall_time());
        h.consecutive_failures = 0;
        h.events_received += lines;
        h.retry_in_ms = None;
    }
}

/// Record a failure, retried after `retry`.
pub fn note_err(h: &Health, class: ErrorClass, text: &str, retry: Duration) {
    if let Ok(mut h) = h.lock() {
        h.state = FeedState::Retrying;
        h.consecutive_failures += 1;
        h.failures += 1;
        h.last_error_class = Some(class);
        h.last_error = Some(text.chars().take(300).collect());
        h.retry_in_ms = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
    }
}

/// A backoff step with jitter: uniform in 75–100 % of `d`, so that sensors
/// restarted together do not retry in step. Never above `d` (the cap holds).
pub fn jitter(d: Duration) -> Duration {
    let quarter = d / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX);
    d - quarter + Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// A start-up failure of a feed URL.
#[derive(Debug, Clone)]
pub struct StartError {
    /// The feed URL.
    pub url: String,
    /// Why its first request failed.
    pub class: ErrorClass,
    /// The error's text.
    pub detail: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feed URL {}: {} ({}): {}", self.url, self.class.hint(), self.class.as_str(), self.detail)
    }
}

impl std::error::Error for StartError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_step() {
        let d = Duration::from_millis(800);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(j >= Duration::from_millis(600) && j <= d, "{j:?}");
        }
    }

    #[test]
    fn refused_dns_and_bad_files_are_classified() {
        use crate::config::http::HttpTransport;
        use crate::enrich::feed_source::{first_answer, FeedPump, FeedSource, PumpConfig};
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let cfg =
            PumpConfig { http_connect_timeout: Duration::from_secs(2), http_timeout: Duration::from_secs(2), ..PumpConfig::default() };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for (url, class) in [
            (format!("http://127.0.0.1:{port}/feed"), ErrorClass::Refused),
            ("http://no-such-host.invalid/feed".to_string(), ErrorClass::Dns),
        ] {
            let t = std::time::Instant::now();
            let pump = FeedPump::start_with(FeedSource::Http { url: url.clone() }, cfg.clone()).expect("pump");
            let e = first_answer(&pump, &url, deadline).expect_err("fatal at start");
            assert_eq!(e.class, class, "{e}");
            assert!(t.elapsed() < Duration::from_secs(5), "reported at once, not after a wait: {:?}", t.elapsed());
            let h = pump.health();
            assert_eq!((h.state, h.consecutive_failures, h.last_success.clone()), (FeedState::Retrying, 1, None), "{h:?}");
        }
        let dir = std::env::temp_dir().join(format!("pinwatch-feedhttp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("notpem"), "hello").expect("write");
        let (k, _) = HttpTransport::load(None, Some(&dir.join("notpem")), None, None).expect_err("not a CA");
        assert_eq!(k, "http_ca_file");
        let (k, _) = HttpTransport::load(None, None, Some(&dir.join("notpem")), None).expect_err("cert without key");
        assert_eq!(k, "http_client_key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
