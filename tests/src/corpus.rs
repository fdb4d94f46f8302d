//! The shared corpus's captures, on top of the test kit's locator and
//! MANIFEST parser (`pinwatch_testkit::corpus`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use pinwatch_testkit::corpus::{at_least, locate, manifest, root, workspace_root, Row as Capture};

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// One capture per distinct oracle name that has a `tshark.tsv` (the first
/// copy in MANIFEST order; duplicates are the same bytes).
pub fn captures_with_tshark_oracle(corpus: &Path) -> Vec<Capture> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for c in manifest(corpus) {
        if seen.contains_key(&c.oracle) || c.oracle_file(corpus, "tshark.tsv").is_none() || !c.path.is_file() {
            continue;
        }
        seen.insert(c.oracle.clone(), ());
        out.push(c);
    }
    out
}

/// Is this file a capture (pcap, pcapng, or gzip of one), by its first bytes?
pub fn looks_like_capture(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok();
    ok && matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
            | [0x1f, 0x8b, _, _]
    )
}

/// Every capture file in the corpus (outside `oracle/`) whose name contains
/// `.pcap`, `.cap` or `.gz` and whose first bytes are a capture magic,
/// sorted by path.
pub fn all_capture_files(corpus: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![corpus.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_lowercase();
            if p.is_dir() {
                if !(dir == corpus && name == "oracle") {
                    stack.push(p);
                }
            } else if (name.contains(".pcap") || name.contains(".cap") || name.ends_with(".gz")) && looks_like_capture(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `path` relative to the corpus, with `/` separators.
pub fn rel_path(corpus: &Path, path: &Path) -> String {
    path.strip_prefix(corpus).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// The `pinwatch` binary if one was built (`target/release/pinwatch`, else
/// `target/debug/pinwatch`), for tests that want the command line. Note that
/// `cargo test -p pinwatch-tests` does NOT build it (a package dependency
/// builds the library only), so prefer `pinwatch::run::pipeline::replay`.
pub fn pinwatch_binary() -> Option<PathBuf> {
    let exe = if cfg!(windows) { "pinwatch.exe" } else { "pinwatch" };
    ["release", "debug"].iter().map(|p| target_dir().join(p).join(exe)).find(|p| p.is_file())
}
