//! Locating the shared corpus and its captures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or_else(|| here.to_path_buf())
}

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

/// Where the corpus is expected: `PINWATCH_CORPUS`, else `<workspace>/../shared/corpus`.
pub fn corpus_candidate() -> PathBuf {
    match std::env::var_os("PINWATCH_CORPUS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("..").join("shared").join("corpus"),
    }
}

/// The corpus directory, or `Err(path looked at)` when it is not there
/// (a directory with an `oracle/` subdirectory).
pub fn corpus_dir() -> Result<PathBuf, PathBuf> {
    let c = corpus_candidate();
    if c.join("oracle").is_dir() {
        Ok(c.canonicalize().unwrap_or(c))
    } else {
        Err(c)
    }
}

/// One capture of the MANIFEST's per-file table.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Path inside the corpus, e.g. `zeek/testing/btest/Traces/tls/hrr.pcap`.
    pub rel: String,
    pub path: PathBuf,
    /// Oracle base name (`oracle/<name>.tshark.tsv`); duplicates of the same
    /// bytes share the name of the first copy.
    pub oracle: String,
}

impl Capture {
    pub fn oracle_file(&self, corpus: &Path, kind: &str) -> Option<PathBuf> {
        let p = corpus.join("oracle").join(format!("{}.{kind}", self.oracle));
        p.is_file().then_some(p)
    }
}

/// Default oracle name when the MANIFEST does not give one: `<dir>__<rest with / → __>`.
pub fn default_oracle_name(rel: &str) -> String {
    rel.replace('/', "__")
}

/// The per-file table of `MANIFEST.md`: `| `file` | repo@commit | ... | `oracle-name`: kinds | refs |`.
pub fn manifest_captures(corpus: &Path) -> Vec<Capture> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.md")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        if cells.len() < 10 || !cells[1].contains('@') {
            continue; // the sources table, not the per-file one
        }
        let rel = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
        if rel.ends_with('/') {
            continue;
        }
        let oracle = cells
            .iter()
            .skip(2)
            .find_map(|c| {
                let c = c.strip_prefix('`')?;
                let (name, rest) = c.split_once('`')?;
                rest.starts_with(':').then(|| name.to_string())
            })
            .unwrap_or_else(|| default_oracle_name(&rel));
        out.push(Capture { path: corpus.join(&rel), rel, oracle });
    }
    out
}

/// One capture per distinct oracle name that has a `tshark.tsv` (the first
/// copy in MANIFEST order; duplicates are the same bytes).
pub fn captures_with_tshark_oracle(corpus: &Path) -> Vec<Capture> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for c in manifest_captures(corpus) {
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
/// builds the library only), so prefer `pinwatch::pipeline::replay`.
pub fn pinwatch_binary() -> Option<PathBuf> {
    let exe = if cfg!(windows) { "pinwatch.exe" } else { "pinwatch" };
    ["release", "debug"].iter().map(|p| target_dir().join(p).join(exe)).find(|p| p.is_file())
}
