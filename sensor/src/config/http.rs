//! The transport of `--feed-url`, as `[feed]` configures it (docs/config.md):
//! extra request headers read from a file (a bearer token or any header:
//! secrets never go on the command line, where `ps` shows them), a CA
//! bundle that replaces the built-in web PKI roots, and a client
//! certificate and key (mTLS). Read when the configuration loads, so a bad
//! file stops the sensor at start with the key named; the feed pumps
//! ([`crate::enrich::feed_source`]) use it for every request.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
}
