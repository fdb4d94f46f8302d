//! A throwaway PKI made with `openssl` (which must be installed): CAs,
//! leaves signed by them, self-signed certificates. Every key is EC P-256
//! without a passphrase and every certificate is valid for 2 days. Files
//! are named after the `name` given: `NAME.key` and `NAME.pem` in `dir`
//! (a leaf also leaves `NAME.csr` and `NAME.ext`, and its CA `CA.srl`).

use std::path::Path;

use crate::sys::must;

fn file(dir: &Path, name: &str, ext: &str) -> String {
    dir.join(format!("{name}.{ext}")).to_string_lossy().into_owned()
}

/// `openssl req` arguments for a new EC P-256 key without a passphrase.
const NEW_KEY: [&str; 6] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"];

/// A CA certificate `NAME.pem` with key `NAME.key`, self-signed, for
/// `subject` (`/O=…/CN=…`): `basicConstraints=critical,CA:TRUE` and
/// `keyUsage=critical,keyCertSign`.
pub fn ca(dir: &Path, name: &str, subject: &str) {
    let (key, pem) = (file(dir, name, "key"), file(dir, name, "pem"));
    let mut args = vec!["openssl", "req", "-x509", "-days", "2"];
    args.extend(NEW_KEY);
    args.extend([subject, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    args.extend(["-keyout", &key, "-out", &pem]);
    must(&args);
}

/// A self-signed certificate `NAME.pem` with key `NAME.key` for `subject`,
/// with no extensions: for a server whose client does not verify it.
pub fn self_signed(dir: &Path, name: &str, subject: &str) {
    let (key, pem) = (file(dir, name, "key"), file(dir, name, "pem"));
    let mut args = vec!["openssl", "req", "-x509", "-days", "2"];
    args.extend(NEW_KEY);
    args.extend([subject, "-keyout", &key, "-out", &pem]);
    must(&args);
}

/// A leaf certificate `NAME.pem` with key `NAME.key` for `subject`, signed
/// by the CA made by [`ca`] as `ca` in the same `dir`. Its extensions
/// (written to `NAME.ext`): `basicConstraints=CA:FALSE`,
/// `extendedKeyUsage=EKU` (`serverAuth`, `clientAuth`), and
/// `subjectAltName` of `sans` joined by commas (`DNS:live.test`,
/// `IP:127.0.0.1`) unless `sans` is empty.
pub fn leaf(dir: &Path, ca: &str, name: &str, subject: &str, eku: &str, sans: &[&str]) {
    let (key, csr, ext, pem) = (file(dir, name, "key"), file(dir, name, "csr"), file(dir, name, "ext"), file(dir, name, "pem"));
    let mut args = vec!["openssl", "req"];
    args.extend(NEW_KEY);
    args.extend([subject, "-keyout", &key, "-out", &csr]);
    must(&args);
    let mut text = format!("basicConstraints=CA:FALSE\nextendedKeyUsage={eku}\n");
    if !sans.is_empty() {
        text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    std::fs::write(&ext, text).expect("extensions file");
    let (ca_pem, ca_key) = (file(dir, ca, "pem"), file(dir, ca, "key"));
    must(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &pem,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{have, run, scratch_dir};

    #[test]
    fn a_leaf_verifies_against_its_ca_only_and_carries_its_sans() {
        if !have("openssl") {
            eprintln!("SKIPPED: openssl not installed");
            return;
        }
        let dir = scratch_dir("kit-pki");
        ca(&dir, "ca", "/O=kit/CN=ca");
        ca(&dir, "other", "/O=kit/CN=other");
        leaf(&dir, "ca", "leaf", "/CN=kit.test", "serverAuth", &["DNS:kit.test", "IP:127.0.0.1"]);
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let verify = |ca: &str| run(&["openssl", "verify", "-CAfile", &p(ca), &p("leaf.pem")]).expect("openssl").status.success();
        assert!(verify("ca.pem"));
        assert!(!verify("other.pem"));
        let text = run(&["openssl", "x509", "-noout", "-text", "-in", &p("leaf.pem")]).expect("openssl");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("DNS:kit.test, IP Address:127.0.0.1"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("Subject: CN = kit.test"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
