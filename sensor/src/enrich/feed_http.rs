//! How `--feed-url` is reached, and how it is doing.
//!
//! - [`HttpTransport`]: extra request headers read from a file (a bearer
//!   token or any header: secrets never go on the command line, where `ps`
//!   shows them), a CA bundle that replaces the built-in web PKI roots, and
//!   a client certificate and key (mTLS). Configured in `[feed]`
//!   (docs/config.md) and read when the configuration loads.
//! - [`ErrorClass`]: every failed request is put in one class (`dns`,
//!   `refused`, `timeout`, `tls`, `auth`, `not_found`, `client`, `server`,
//!   `protocol`, `io`). At start ([`first_answer`]) the classes that retrying
//!   cannot fix (`dns`, `refused`, `tls`, `auth`, `not_found`, `client`)
//!   stop the sensor at once (exit status 2); during a live run every class
//!   is retried with capped exponential backoff and jitter.
//! - [`SourceHealth`]: what the stats record shows of each URL
//!   (`stats.feed.sources[]`): state, last success (wall clock), consecutive
//!   failures, last error class and text, lines received.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Largest header file, CA bundle, certificate or key read.
pub const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;
/// Most headers taken from a header file.
pub const MAX_HEADERS: usize = 32;

/// Headers, CA bundle and client certificate for the feed URLs.
#[derive(Clone)]
pub struct HttpTransport {
    headers: Vec<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// What is configured, for messages (never a secret).
    pub described: String,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are secrets: only their names are shown.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpTransport").field("headers", &names).field("described", &self.described).finish()
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("{}: larger than {MAX_SECRET_FILE_BYTES} bytes", path.display()));
    }
    Ok(buf)
}

/// The headers of a header file: `Name: value` lines (blank lines and `#`
/// comments skipped), or a single line without a colon, which is a bearer
/// token (`Authorization: Bearer <line>`).
pub fn parse_header_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if let [token] = lines[..] {
        if !token.contains(':') {
            if token.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err("a bearer token must be one word".into());
            }
            return Ok(vec![("Authorization".into(), format!("Bearer {token}"))]);
        }
    }
    if lines.is_empty() {
        return Err("empty: write a bearer token, or `Name: value` lines".into());
    }
    if lines.len() > MAX_HEADERS {
        return Err(format!("more than {MAX_HEADERS} headers"));
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (n, v) = l.split_once(':').ok_or_else(|| format!("line {}: not `Name: value`", i + 1))?;
            let (n, v) = (n.trim(), v.trim());
            let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if n.is_empty() || !n.bytes().all(token_char) {
                return Err(format!("line {}: `{n}` is not a header name", i + 1));
            }
            if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(format!("line {}: control character in the value", i + 1));
            }
            Ok((n.to_string(), v.to_string()))
        })
        .collect()
}

impl HttpTransport {
    /// Read the configured files. The error names the key
    /// (`http_ca_file`, ...) and says what is wrong.
    pub fn load(
        header_file: Option<&Path>,
        ca_file: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<HttpTransport, (&'static str, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut described = Vec::new();
        let headers = match header_file {
            Some(p) => {
                let bytes = read_small(p).map_err(|e| ("http_header_file", e))?;
                let text = String::from_utf8(bytes).map_err(|_| ("http_header_file", format!("{}: not UTF-8", p.display())))?;
                let h = parse_header_file(&text).map_err(|e| ("http_header_file", format!("{}: {e}", p.display())))?;
                described.push(format!("headers {}", h.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")));
                h
            }
            None => Vec::new(),
        };
        if client_cert.is_some() != client_key.is_some() {
            let k = if client_cert.is_some() { "http_client_key" } else { "http_client_cert" };
            return Err((k, "a client certificate needs both `http_client_cert` and `http_client_key`".into()));
        }
        let tls = if ca_file.is_some() || client_cert.is_some() {
            let mut roots = rustls::RootCertStore::empty();
            match ca_file {
                Some(p) => {
                    let pem = read_small(p).map_err(|e| ("http_ca_file", e))?;
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                        .collect::<Result<_, _>>()
                        .map_err(|e| ("http_ca_file", format!("{}: {e:?}", p.display())))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(("http_ca_file", format!("{}: no usable CA certificate (PEM)", p.display())));
                    }
                    described.push(format!("CA bundle {} ({added} certificates)", p.display()));
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ("http_ca_file", format!("TLS set-up: {e}")))?
                .with_root_certificates(roots);
            let cfg = match (client_cert, client_key) {
                (Some(c), Some(k)) => {
                    let pem = read_small(c).map_err(|e| ("http_client_cert", e))?;
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                        .collect::<Result<_, _>>()
                        .map_err(|e| ("http_client_cert", format!("{}: {e:?}", c.display())))?;
                    if chain.is_empty() {
                        return Err(("http_client_cert", format!("{}: no certificate (PEM)", c.display())));
                    }
                    let kpem = read_small(k).map_err(|e| ("http_client_key", e))?;
                    let key = PrivateKeyDer::from_pem_slice(&kpem)
                        .map_err(|e| ("http_client_key", format!("{}: no private key (PEM): {e:?}", k.display())))?;
                    described.push(format!("client certificate {}", c.display()));
                    builder.with_client_auth_cert(chain, key).map_err(|e| ("http_client_key", format!("{}: {e}", k.display())))?
                }
                _ => builder.with_no_client_auth(),
            };
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(HttpTransport { headers, tls, described: described.join("; ") })
    }

    /// An agent with these TLS settings.
    pub fn agent(t: Option<&HttpTransport>, connect: Duration, timeout: Duration) -> ureq::Agent {
        let mut b =
            ureq::AgentBuilder::new().timeout_connect(connect).timeout(timeout).user_agent(concat!("pinwatch/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = t.and_then(|t| t.tls.clone()) {
            b = b.tls_config(tls);
        }
        b.build()
    }

    /// `req` with the configured headers.
    pub fn apply(t: Option<&HttpTransport>, mut req: ureq::Request) -> ureq::Request {
        for (n, v) in t.map(|t| t.headers.as_slice()).unwrap_or(&[]) {
            req = req.set(n, v);
        }
        req
    }
}

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
    pub source: String,
    pub state: FeedState,
    /// Wall-clock time of the last successful request (RFC 3339).
    pub last_success: Option<String>,
    pub consecutive_failures: u64,
    pub failures: u64,
    pub last_error_class: Option<ErrorClass>,
    pub last_error: Option<String>,
    /// Lines received: one event each (bad ones are counted in
    /// `stats.enrichment.feed`).
    pub events_received: u64,
    /// Delay before the next retry, ms (while retrying).
    pub retry_in_ms: Option<u64>,
}

/// Shared between a pump's thread and the stats.
pub type Health = Arc<Mutex<SourceHealth>>;

pub fn wall_time() -> String {
    let ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    crate::output::eve::timestamp(ns)
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
    pub url: String,
    pub class: ErrorClass,
    pub detail: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feed URL {}: {} ({}): {}", self.url, self.class.hint(), self.class.as_str(), self.detail)
    }
}

impl std::error::Error for StartError {}

/// Wait (until `deadline`) for the first answer of an HTTP pump. `Err`
/// when its first request failed in a way retrying will not fix (the
/// caller stops: exit status 2); a success, a failure retrying may fix
/// (timeout, 5xx, a page the cursor protocol cannot take), or the deadline
/// are `Ok` (the pump goes on retrying, and reports).
pub fn first_answer(pump: &crate::enrich::feed_source::FeedPump, url: &str, deadline: std::time::Instant) -> Result<(), StartError> {
    loop {
        let h = pump.health();
        match h.state {
            FeedState::Starting if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            FeedState::Retrying if h.last_success.is_none() => {
                let class = h.last_error_class.unwrap_or(ErrorClass::Io);
                if class.fatal_at_start() {
                    let detail = h.last_error.unwrap_or_default();
                    // The poller's text starts with "http feed URL: ".
                    let detail = detail.strip_prefix(&format!("http feed {url}: ")).map(str::to_string).unwrap_or(detail);
                    return Err(StartError { url: url.to_string(), class, detail });
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_files() {
        assert_eq!(
            parse_header_file("s3cr3t-token\n").expect("token"),
            vec![("Authorization".to_string(), "Bearer s3cr3t-token".to_string())]
        );
        assert_eq!(
            parse_header_file("# feed\nX-Api-Key: abc\n\nAuthorization: Basic Zm9vOmJhcg==\n").expect("headers"),
            vec![("X-Api-Key".to_string(), "abc".to_string()), ("Authorization".to_string(), "Basic Zm9vOmJhcg==".to_string())]
        );
        assert!(parse_header_file("").is_err());
        assert!(parse_header_file("two words").is_err());
        assert!(parse_header_file("Bad Name: x\nOther: y").is_err());
    }

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
        use crate::enrich::feed_source::{FeedPump, FeedSource, PumpConfig};
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
