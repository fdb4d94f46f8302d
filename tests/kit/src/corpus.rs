//! The shared corpus (`../shared/corpus` beside the workspace, or
//! `PINWATCH_CORPUS`): its location, its MANIFEST, and the policy when it is
//! absent.
//!
//! A test that needs the corpus calls [`root`]. Without the corpus it gets
//! `None` after a `SKIPPED:` line — unless `PINWATCH_CORPUS_REQUIRED=1`, in
//! which case [`root`] panics: CI always has the corpus, and an oracle test
//! that checked nothing must not pass there.

use std::path::{Path, PathBuf};

/// The workspace root (this crate is `tests/kit`).
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    p.canonicalize().unwrap_or(p)
}

/// Where the corpus is expected: `PINWATCH_CORPUS`, else
/// `<workspace>/../shared/corpus`.
pub fn candidate() -> PathBuf {
    match std::env::var_os("PINWATCH_CORPUS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("..").join("shared").join("corpus"),
    }
}

/// Is the corpus required (`PINWATCH_CORPUS_REQUIRED=1`)?
pub fn required() -> bool {
    std::env::var("PINWATCH_CORPUS_REQUIRED").is_ok_and(|v| v == "1")
}

/// The corpus directory (one with an `oracle/` subdirectory), or `Err(the
/// path looked at)`, with no policy applied: for callers that report the
/// absence themselves.
pub fn locate() -> Result<PathBuf, PathBuf> {
    let c = candidate();
    if c.join("oracle").is_dir() {
        Ok(c.canonicalize().unwrap_or(c))
    } else {
        Err(c)
    }
}

/// The corpus directory. When it is absent: panics under
/// `PINWATCH_CORPUS_REQUIRED=1`, else prints `SKIPPED: …` and returns `None`.
pub fn root() -> Option<PathBuf> {
    match locate() {
        Ok(p) => Some(p),
        Err(p) if required() => {
            panic!(
                "the corpus is not at {} and PINWATCH_CORPUS_REQUIRED=1: this test cannot check anything (set PINWATCH_CORPUS)",
                p.display()
            )
        }
        Err(p) => {
            println!("SKIPPED: corpus not found at {} (set PINWATCH_CORPUS; CI sets PINWATCH_CORPUS_REQUIRED=1)", p.display());
            None
        }
    }
}

/// A test that loops over corpus files asserts it saw enough of them, so
/// that a renamed folder or a bad filter cannot make it pass on nothing.
#[track_caller]
pub fn at_least(found: usize, min: usize, what: &str) {
    assert!(found >= min, "only {found} {what} in the corpus, expected at least {min}: did files move?");
}

/// One row of MANIFEST.md's per-file table:
/// `| file | source | license | bytes | format/link | pkts | CH tcp/quic | versions | features | oracle | references |`.
#[derive(Debug, Clone)]
pub struct Row {
    /// Path inside the corpus, e.g. `zeek/testing/btest/Traces/tls/hrr.pcap`.
    pub rel: String,
    /// `rel` under the corpus root.
    pub path: PathBuf,
    /// `format/link`, as capinfos names them (`pcap/ether`, `pcapng/linux-sll`).
    pub format_link: String,
    /// Packets, as capinfos counts them.
    pub packets: String,
    /// Oracle base name (`oracle/<name>.tshark.tsv`); duplicates of the same
    /// bytes share the name of the first copy. When the row names none:
    /// `rel` with `/` replaced by `__`.
    pub oracle: String,
    /// The oracle kinds the row lists after the name (`tshark.tsv`, `certs`,
    /// `ja4py`, …), empty when it names none.
    pub kinds: Vec<String>,
    /// Every cell of the row, trimmed, as written.
    pub cells: Vec<String>,
}

impl Row {
    /// `oracle/<oracle>.<kind>` if that file exists.
    pub fn oracle_file(&self, corpus: &Path, kind: &str) -> Option<PathBuf> {
        let p = corpus.join("oracle").join(format!("{}.{kind}", self.oracle));
        p.is_file().then_some(p)
    }
}

/// The per-file table of `MANIFEST.md` (the sources table above it is
/// skipped: its second cell is not `repo@commit`). Empty if the file is
/// missing; a test using it checks a minimum count ([`at_least`]).
pub fn manifest(corpus: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.md")).unwrap_or_default();
    parse_manifest(&text, corpus)
}

fn parse_manifest(text: &str, corpus: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<String> = line.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect();
        if cells.len() < 10 || !cells[1].contains('@') {
            continue;
        }
        let rel = cells[0].trim_matches('`').to_string();
        if rel.ends_with('/') {
            continue;
        }
        let named = cells.iter().skip(2).find_map(|c| {
            let c = c.strip_prefix('`')?;
            let (name, rest) = c.split_once('`')?;
            let kinds = rest.strip_prefix(':')?;
            Some((name.to_string(), kinds.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()))
        });
        let (oracle, kinds) = named.unwrap_or_else(|| (rel.replace('/', "__"), Vec::new()));
        out.push(Row { path: corpus.join(&rel), format_link: cells[4].clone(), packets: cells[5].clone(), rel, oracle, kinds, cells });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_per_file_table_and_skips_the_sources_table() {
        let text = "\
| corpus dir | repo | commit | license | #pcaps | MB | what |
|---|---|---|---|---|---|---|
| `zeek/` | zeek/zeek | `a13de64` | BSD-3-Clause | 96 | 3.63 | traces |

| file | source | license | bytes | format/link | pkts | CH tcp/quic | versions | features | oracle | references |
|---|---|---|---|---|---|---|---|---|---|---|
| `arkime/tests/pcap/socks-https-example.pcap` | arkime/arkime@2d2f367879 | Apache-2.0 | 34470 | pcap/ether | 93 | 3/0 | 1.0 -> 1.0 | SOCKS | `arkime__socks-https-example.pcap`: tshark.tsv, certs, ja4py | arkime/x.test |
| `a/b.pcap` | o/r@1234567 | MIT | 10 | pcapng/linux-sll | 2 | 0/0 | - | - | - | - |
";
        let rows = parse_manifest(text, Path::new("/c"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].rel, "arkime/tests/pcap/socks-https-example.pcap");
        assert_eq!(rows[0].path, Path::new("/c/arkime/tests/pcap/socks-https-example.pcap"));
        assert_eq!(rows[0].oracle, "arkime__socks-https-example.pcap");
        assert_eq!(rows[0].kinds, ["tshark.tsv", "certs", "ja4py"]);
        assert_eq!(rows[0].format_link, "pcap/ether");
        assert_eq!(rows[0].packets, "93");
        assert_eq!(rows[1].oracle, "a__b.pcap");
        assert!(rows[1].kinds.is_empty());
        assert_eq!(rows[1].format_link, "pcapng/linux-sll");
    }

    #[test]
    #[should_panic(expected = "only 3 captures")]
    fn at_least_fails_below_the_minimum() {
        at_least(3, 4, "captures");
    }
}
