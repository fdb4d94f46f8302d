//! Shared by `feed_transport.rs` and `feedops_live.rs`: a throwaway PKI
//! (openssl) and an HTTPS feed server (Python `http.server` + `ssl`) that
//! requires a bearer token and a client certificate.
#![allow(dead_code)]

use std::path::Path;

use pinwatch_testkit::pki;

/// A CA, a server leaf for 127.0.0.1, a client CA and client leaf, and an
/// unrelated CA, in `dir`.
pub fn make_pki(dir: &Path) {
    for ca in ["ca", "clientca", "wrongca"] {
        pki::ca(dir, ca, &format!("/O=pinwatch feed test/CN={ca}"));
    }
    pki::leaf(dir, "ca", "server", "/CN=pinwatch server", "serverAuth", &["IP:127.0.0.1", "DNS:localhost"]);
    pki::leaf(dir, "clientca", "client", "/CN=pinwatch client", "clientAuth", &[]);
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
