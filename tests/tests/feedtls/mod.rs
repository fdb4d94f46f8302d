//! Shared by `feed_transport.rs` and `feedops_live.rs`: a throwaway PKI
//! (openssl) and an HTTPS feed server (Python `http.server` + `ssl`) that
//! requires a bearer token and a client certificate.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

pub fn must(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A CA, a server leaf for 127.0.0.1, a client CA and client leaf, and an
/// unrelated CA, in `dir`.
pub fn make_pki(dir: &Path) {
    let d = |n: &str| dir.join(n).to_string_lossy().into_owned();
    for ca in ["ca", "clientca", "wrongca"] {
        must(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/O=pinwatch feed test/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            &d(&format!("{ca}.key")),
            "-out",
            &d(&format!("{ca}.pem")),
        ]);
    }
    for (leaf, ca, ext) in [
        ("server", "ca", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", "clientca", "extendedKeyUsage=clientAuth\n"),
    ] {
        must(&[
            "openssl",
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN=pinwatch {leaf}"),
            "-keyout",
            &d(&format!("{leaf}.key")),
            "-out",
            &d(&format!("{leaf}.csr")),
        ]);
        std::fs::write(dir.join(format!("{leaf}.ext")), format!("basicConstraints=CA:FALSE\n{ext}")).expect("ext");
        must(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &d(&format!("{leaf}.csr")),
            "-CA",
            &d(&format!("{ca}.pem")),
            "-CAkey",
            &d(&format!("{ca}.key")),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &d(&format!("{leaf}.ext")),
            "-out",
            &d(&format!("{leaf}.pem")),
        ]);
    }
}

/// The feed server: HTTPS, client certificate required, bearer token
/// required, cursor paging (`since` = line offset, `X-Feed-Next`) over the
/// lines of a file.
pub const SERVER_PY: &str = r#"
import http.server, ssl, sys, urllib.parse
cert, key, clientca, token, port, served = sys.argv[1:7]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if self.headers.get('Authorization') != 'Bearer ' + token:
            self.send_response(401); self.send_header('Content-Length', '0'); self.end_headers(); return
        if u.path != '/feed':
            self.send_response(404); self.send_header('Content-Length', '0'); self.end_headers(); return
        since = int(urllib.parse.parse_qs(u.query).get('since', ['0'])[0])
        try:
            lines = open(served).readlines()
        except FileNotFoundError:
            lines = []
        page = lines[since:since + 100]
        body = ''.join(page).encode()
        self.send_response(200)
        self.send_header('X-Feed-Next', str(since + len(page)))
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        print(self.requestline, flush=True)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(clientca)
ctx.verify_mode = ssl.CERT_REQUIRED
s = http.server.ThreadingHTTPServer(('127.0.0.1', int(port)), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print('ready', s.server_address[1], flush=True)
s.serve_forever()
"#;
