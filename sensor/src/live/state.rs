//! State that survives a restart of `pinwatch live` (`state_file` in the
//! configuration, docs/config.md, "State file").
//!
//! What is kept: the IP → device bindings (leases, with their ends and
//! conflict flags), the destinations learned per app, the inline
//! inspector's learned profile, and the feed sources' clock offsets. It is
//! written as one JSON document, `{"format":"pinwatch-state","version":1,
//! ...}`, atomically: to `<file>.tmp`, `fsync`, renamed over the file, and
//! the directory `fsync`ed, so a crash leaves the old file or the new one,
//! never half of one. It is written every `state_interval_s` and at
//! shutdown, and read at start.
//!
//! A file that cannot be used — not JSON or cut short (`corrupt`), another
//! program's (`foreign`), a newer version (`newer_version`), larger than
//! [`MAX_STATE_BYTES`] (`too_large`) — is reported, renamed
//! `<file>.bad-<unix seconds>` so that nothing is lost, and the sensor
//! starts without it: never fatal. Size is bounded: at most
//! [`MAX_STATE_LEASES`] leases and [`MAX_STATE_LEARNED`] learned
//! destinations are written (the oldest leases are left out first), and
//! what is left out is counted (`stats.live.state.dropped`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pinwatch_enrichment::clock::SourceKey;
use pinwatch_enrichment::feed::Confidence;
use pinwatch_enrichment::leases::EndReason;

/// `format` of a pinwatch state file.
pub const FORMAT: &str = "pinwatch-state";
/// The version written (and the newest read).
pub const VERSION: u64 = 1;
/// Largest state file read or written.
pub const MAX_STATE_BYTES: u64 = 64 << 20;
/// Most leases written.
pub const MAX_STATE_LEASES: usize = 100_000;
/// Most learned destinations written, all apps together.
pub const MAX_STATE_LEARNED: usize = 100_000;
/// Most clock offsets written.
pub const MAX_STATE_CLOCKS: usize = 10_000;

/// One IP lease (IP → device binding) as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRec {
    /// The binding namespace (`network.context`).
    pub context: String,
    /// The bound address.
    pub ip: IpAddr,
    /// The device holding it.
    pub device_id: String,
    /// Start of the binding, ns since the Unix epoch (inclusive).
    pub from_ns: i64,
    /// End of the binding, ns since the Unix epoch (exclusive).
    pub until_ns: i64,
    /// Confidence of the binding event.
    pub confidence: Confidence,
    /// `natural`, `released`, `expired`, `superseded`.
    pub end: String,
    /// Another device's binding overlapped it, or the feed reported a
    /// `conflict`.
    pub conflict: bool,
}

/// One feed source's clock offset as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRec {
    /// The device whose events the source logged.
    pub device_id: String,
    /// The source's `source.kind`.
    pub kind: String,
    /// The source's `source.vendor` (empty when none).
    pub vendor: String,
    /// The estimated offset, event time − packet time, ns.
    pub offset_ns: i64,
    /// Sessions the estimate rests on.
    pub sessions: usize,
}

/// The document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDoc {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written; a newer one is not read.
    pub version: u64,
    /// Wall-clock time it was written, in Suricata's timestamp format.
    pub written: String,
    /// The IP leases, oldest first.
    #[serde(default)]
    pub leases: Vec<LeaseRec>,
    /// Destinations learned per app package.
    #[serde(default)]
    pub learned: BTreeMap<String, Vec<String>>,
    /// What was learned of the inline inspector and of origins.
    #[serde(default)]
    pub inspector: crate::verdict::inspector::Learned,
    /// The feed sources' clock offsets.
    #[serde(default)]
    pub clock: Vec<ClockRec>,
}

fn end_str(e: EndReason) -> &'static str {
    match e {
        EndReason::Natural => "natural",
        EndReason::Released => "released",
        EndReason::Expired => "expired",
        EndReason::Superseded => "superseded",
    }
}

fn end_of(s: &str) -> Option<EndReason> {
    Some(match s {
        "natural" => EndReason::Natural,
        "released" => EndReason::Released,
        "expired" => EndReason::Expired,
        "superseded" => EndReason::Superseded,
        _ => return None,
    })
}

/// Why a state file was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bad {
    /// Not JSON, or cut short.
    Corrupt,
    /// JSON, but not a pinwatch state file.
    Foreign,
    /// A version this sensor does not know (newer).
    NewerVersion,
    /// Larger than [`MAX_STATE_BYTES`].
    TooLarge,
}

/// Counters of the state file (`stats.live.state`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateStats {
    /// The state file's path.
    pub file: String,
    /// A state file was read at start.
    pub loaded: bool,
    /// Leases read from it.
    pub leases_loaded: u64,
    /// Learned destinations read.
    pub learned_loaded: u64,
    /// Clock offsets read.
    pub clocks_loaded: u64,
    /// Entries of the file that could not be used (an unknown lease end, ...).
    pub entries_skipped: u64,
    /// Why the file at start was set aside, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<Bad>,
    /// Where the unusable file was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside_as: Option<String>,
    /// Writes that worked.
    pub writes: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// The last write's error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_write_error: Option<String>,
    /// Bytes of the last write.
    pub bytes: u64,
    /// Leases in the last write.
    pub leases_saved: u64,
    /// Leases and learned destinations left out of the last write (caps).
    pub dropped: u64,
}

/// Read and check a state file. `Ok(None)`: there is none.
pub fn read(path: &Path) -> Result<Option<StateDoc>, (Bad, String)> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((Bad::Corrupt, format!("{}: {e}", path.display()))),
        Ok(m) if m.len() > MAX_STATE_BYTES => {
            return Err((Bad::TooLarge, format!("{}: {} bytes, more than {MAX_STATE_BYTES}", path.display(), m.len())))
        }
        Ok(_) => crate::capped::read_file(path, MAX_STATE_BYTES, "state file").map_err(|e| (Bad::Corrupt, e))?,
    };
    parse(&bytes).map(Some).map_err(|(b, e)| (b, format!("{}: {e}", path.display())))
}

/// Check and decode a state document.
pub fn parse(bytes: &[u8]) -> Result<StateDoc, (Bad, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_eof() { "cut short" } else { "not JSON" };
        (Bad::Corrupt, format!("{what}: {e}"))
    })?;
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err((Bad::Foreign, format!("not a pinwatch state file (no \"format\":\"{FORMAT}\")")));
    }
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(VERSION) => {}
        Some(n) if n > VERSION => return Err((Bad::NewerVersion, format!("version {n}; this pinwatch reads version {VERSION}"))),
        _ => return Err((Bad::Corrupt, "no usable \"version\"".into())),
    }
    serde_json::from_value(v).map_err(|e| (Bad::Corrupt, format!("version {VERSION} but {e}")))
}

/// Move an unusable file out of the way: `<file>.bad-<unix seconds>`.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".bad-{secs}"));
    let mut to = PathBuf::from(name);
    let mut n = 1;
    while to.exists() {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".bad-{secs}-{n}"));
        to = PathBuf::from(name);
        n += 1;
    }
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// Write `bytes` to `path` atomically: a temporary file beside it,
/// `fsync`, rename over `path`, `fsync` of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// What is kept of the sensor, taken now.
pub fn snapshot(en: Option<&crate::enrich::Enricher>, profile: &crate::verdict::inspector::Profile) -> (StateDoc, u64) {
    snapshot_capped(en, profile, MAX_STATE_LEASES)
}

fn snapshot_capped(
    en: Option<&crate::enrich::Enricher>,
    profile: &crate::verdict::inspector::Profile,
    max_leases: usize,
) -> (StateDoc, u64) {
    let mut dropped = 0u64;
    let mut doc = StateDoc {
        format: FORMAT.into(),
        version: VERSION,
        written: crate::enrich::feed_http::wall_time(),
        inspector: profile.learned(),
        ..StateDoc::default()
    };
    if let Some(en) = en {
        let all = en.leases().export();
        // Oldest first: the newest are kept.
        let skip = all.len().saturating_sub(max_leases);
        dropped += skip as u64;
        doc.leases = all
            .into_iter()
            .skip(skip)
            .map(|(ctx, ip, l)| LeaseRec {
                context: ctx.to_string(),
                ip,
                device_id: l.device_id.clone(),
                from_ns: l.from_ns,
                until_ns: l.until_ns,
                confidence: l.confidence,
                end: end_str(l.end).into(),
                conflict: l.conflict,
            })
            .collect();
        let mut left = MAX_STATE_LEARNED;
        let mut apps: Vec<(&String, &Vec<String>)> = en.learned().iter().collect();
        apps.sort();
        for (pkg, hosts) in apps {
            let take = hosts.len().min(left);
            dropped += (hosts.len() - take) as u64;
            left -= take;
            if take > 0 {
                doc.learned.insert(pkg.clone(), hosts[..take].to_vec());
            }
        }
        let clocks = en.clock_estimates();
        dropped += clocks.len().saturating_sub(MAX_STATE_CLOCKS) as u64;
        doc.clock = clocks
            .into_iter()
            .take(MAX_STATE_CLOCKS)
            .map(|(k, off, n)| ClockRec { device_id: k.device, kind: k.kind, vendor: k.vendor, offset_ns: off, sessions: n })
            .collect();
    }
    (doc, dropped)
}

/// Put a document's contents into the enricher and the profile. Returns
/// (leases, learned, clocks, skipped).
pub fn apply(doc: &StateDoc, en: &mut crate::enrich::Enricher, profile: &mut crate::verdict::inspector::Profile) -> (u64, u64, u64, u64) {
    let (mut leases, mut learned, mut clocks, mut skipped) = (0, 0, 0, 0);
    for l in doc.leases.iter().take(MAX_STATE_LEASES) {
        match end_of(&l.end) {
            Some(end) if !l.context.is_empty() && !l.device_id.is_empty() => {
                en.restore_lease(&l.context, l.ip, &l.device_id, l.from_ns, l.until_ns, l.confidence, end, l.conflict);
                leases += 1;
            }
            _ => skipped += 1,
        }
    }
    skipped += doc.leases.len().saturating_sub(MAX_STATE_LEASES) as u64;
    for (pkg, hosts) in &doc.learned {
        for h in hosts {
            if learned as usize >= MAX_STATE_LEARNED {
                skipped += 1;
                continue;
            }
            en.learn(pkg, h);
            learned += 1;
        }
    }
    for c in doc.clock.iter().take(MAX_STATE_CLOCKS) {
        en.restore_clock(
            SourceKey { device: c.device_id.clone(), kind: c.kind.clone(), vendor: c.vendor.clone() },
            c.offset_ns,
            c.sessions,
        );
        clocks += 1;
    }
    profile.restore(&doc.inspector);
    (leases, learned, clocks, skipped)
}

/// The state file of a live run.
pub struct StateFile {
    /// Where it is read and written.
    pub path: PathBuf,
    /// Its counters, for `stats.live.state`.
    pub stats: StateStats,
}

impl StateFile {
    /// Read `path` into the enricher and profile. Whatever is wrong with
    /// the file is reported on stderr and in the stats, and the file set
    /// aside: never an error.
    pub fn load(path: &Path, en: &mut crate::enrich::Enricher, profile: &mut crate::verdict::inspector::Profile) -> StateFile {
        let mut st = StateStats { file: path.display().to_string(), ..StateStats::default() };
        match read(path) {
            Ok(None) => eprintln!("pinwatch: state file {}: none yet; it will be written", path.display()),
            Ok(Some(doc)) => {
                let (l, h, c, s) = apply(&doc, en, profile);
                st.loaded = true;
                (st.leases_loaded, st.learned_loaded, st.clocks_loaded, st.entries_skipped) = (l, h, c, s);
                eprintln!(
                    "pinwatch: state file {}: {l} bindings, {h} learned destinations, {c} clock offsets restored (written {})",
                    path.display(),
                    doc.written
                );
            }
            Err((bad, msg)) => {
                st.set_aside = Some(bad);
                match set_aside(path) {
                    Ok(to) => {
                        eprintln!("pinwatch: state file {msg}; set aside as {} and starting without it", to.display());
                        st.set_aside_as = Some(to.display().to_string());
                    }
                    Err(e) => eprintln!("pinwatch: state file {msg}; cannot set it aside ({e}); starting without it"),
                }
            }
        }
        StateFile { path: path.to_path_buf(), stats: st }
    }

    /// Write the state now (atomically). A failure is counted and reported.
    pub fn save(&mut self, en: Option<&crate::enrich::Enricher>, profile: &crate::verdict::inspector::Profile) {
        let (mut doc, mut dropped) = snapshot(en, profile);
        let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
        // Over the byte cap (very long names): the older half of the
        // leases go, until it fits.
        while bytes.len() as u64 > MAX_STATE_BYTES && !doc.leases.is_empty() {
            let half = doc.leases.len().div_ceil(2);
            doc.leases.drain(..half);
            dropped += half as u64;
            bytes = serde_json::to_vec(&doc).unwrap_or_default();
        }
        match write_atomic(&self.path, &bytes) {
            Ok(()) => {
                self.stats.writes += 1;
                self.stats.bytes = bytes.len() as u64;
                self.stats.leases_saved = doc.leases.len() as u64;
                self.stats.dropped = dropped;
            }
            Err(e) => {
                self.stats.write_errors += 1;
                let msg = format!("{}: {e}", self.path.display());
                if self.stats.last_write_error.as_deref() != Some(&msg) {
                    eprintln!("pinwatch: state file {msg}");
                }
                self.stats.last_write_error = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pinwatch-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d.join("state.json")
    }

    fn enricher() -> crate::enrich::Enricher {
        crate::enrich::Enricher::from_events(Vec::new(), &Default::default())
    }

    fn aside(path: &Path) -> Vec<String> {
        let dir = path.parent().expect("dir");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("state.json.bad-"))
            .collect();
        v.sort();
        v
    }

    /// Written, read back into a fresh enricher: the same device for the
    /// same IP and time, the learned destinations and the profile.
    #[test]
    fn round_trip_through_a_file() {
        let path = tmp("roundtrip");
        let mut en = enricher();
        en.restore_lease(
            "vpn1",
            "10.8.0.2".parse().expect("ip"),
            "dev-a",
            0,
            1_000_000_000_000,
            Confidence::Authenticated,
            EndReason::Natural,
            false,
        );
        en.learn("com.example.app", "api.example.com");
        let mut profile = crate::verdict::inspector::Profile::default();
        profile.restore(&crate::verdict::inspector::Learned {
            inspector_sigs: vec![("64:64240:1460:7:MSTNW".into(), 3)],
            inspector_hops: Some((1, 2)),
            origin_sigs: Vec::new(),
        });
        let mut sf = StateFile { path: path.clone(), stats: StateStats::default() };
        sf.save(Some(&en), &profile);
        assert_eq!((sf.stats.writes, sf.stats.write_errors, sf.stats.leases_saved), (1, 0, 1));
        assert!(!path.with_extension("json.tmp").exists(), "no temporary file left");
        let text = std::fs::read_to_string(&path).expect("written");
        assert!(text.starts_with("{\"format\":\"pinwatch-state\",\"version\":1,"), "{text}");

        let mut en2 = enricher();
        let mut p2 = crate::verdict::inspector::Profile::default();
        let st = StateFile::load(&path, &mut en2, &mut p2).stats;
        assert!(st.loaded && st.set_aside.is_none(), "{st:?}");
        assert_eq!((st.leases_loaded, st.learned_loaded, st.entries_skipped), (1, 1, 0));
        let m = en2
            .enrich("10.8.0.2".parse().expect("ip"), "192.0.2.1".parse().expect("ip"), 443, None, 5_000_000_000)
            .expect("the binding came back");
        assert_eq!(m.device_id, "dev-a");
        assert_eq!(m.binding.context, "vpn1");
        assert_eq!(en2.learned().get("com.example.app"), Some(&vec!["api.example.com".to_string()]));
        assert_eq!(p2.learned(), profile.learned());
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    /// Corrupt, truncated, foreign, newer and oversized files are
    /// reported, set aside as `.bad-<ts>`, and the sensor starts empty.
    #[test]
    fn unusable_files_are_set_aside_never_fatal() {
        let good = {
            let mut en = enricher();
            en.restore_lease("lan", "10.0.0.9".parse().expect("ip"), "d", 0, 10, Confidence::Dhcp, EndReason::Natural, false);
            serde_json::to_string(&snapshot(Some(&en), &crate::verdict::inspector::Profile::default()).0).expect("json")
        };
        let cases: Vec<(&str, Vec<u8>, Bad)> = vec![
            ("garbage", b"\x00\x01not json at all".to_vec(), Bad::Corrupt),
            ("truncated", good.as_bytes()[..good.len() / 2].to_vec(), Bad::Corrupt),
            ("empty", Vec::new(), Bad::Corrupt),
            ("foreign", br#"{"leases":[],"version":1}"#.to_vec(), Bad::Foreign),
            ("array", b"[1,2,3]".to_vec(), Bad::Foreign),
            ("newer", good.replacen("\"version\":1", "\"version\":7", 1).into_bytes(), Bad::NewerVersion),
            ("badtypes", br#"{"format":"pinwatch-state","version":1,"written":"x","leases":"no"}"#.to_vec(), Bad::Corrupt),
        ];
        for (name, bytes, want) in cases {
            let path = tmp(name);
            std::fs::write(&path, &bytes).expect("write");
            let mut en = enricher();
            let mut p = crate::verdict::inspector::Profile::default();
            let st = StateFile::load(&path, &mut en, &mut p).stats;
            assert_eq!(st.set_aside, Some(want), "{name}: {st:?}");
            assert!(!st.loaded && st.leases_loaded == 0, "{name}");
            assert!(!path.exists(), "{name}: the bad file was moved away");
            let moved = aside(&path);
            assert_eq!(moved.len(), 1, "{name}: {moved:?}");
            assert_eq!(std::fs::read(path.with_file_name(&moved[0])).expect("kept"), bytes, "{name}: set aside unchanged");
            assert_eq!(en.leases().len(), 0, "{name}");
            let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
        }
        // Over the size cap: set aside without being read.
        let path = tmp("huge");
        let f = std::fs::File::create(&path).expect("create");
        f.set_len(MAX_STATE_BYTES + 1).expect("sparse");
        let st = StateFile::load(&path, &mut enricher(), &mut crate::verdict::inspector::Profile::default()).stats;
        assert_eq!(st.set_aside, Some(Bad::TooLarge));
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
        // No file: nothing set aside, nothing loaded.
        let path = tmp("none");
        let st = StateFile::load(&path, &mut enricher(), &mut crate::verdict::inspector::Profile::default()).stats;
        assert!(!st.loaded && st.set_aside.is_none());
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    /// Entries the sensor cannot use are skipped and counted, the rest kept.
    #[test]
    fn unknown_entries_are_counted() {
        let doc = format!(
            r#"{{"format":"{FORMAT}","version":1,"written":"t","leases":[{{"context":"lan","ip":"10.0.0.1","device_id":"d","from_ns":0,"until_ns":10,"confidence":"dhcp","end":"weird","conflict":false}},{{"context":"lan","ip":"10.0.0.2","device_id":"e","from_ns":0,"until_ns":10,"confidence":"dhcp","end":"natural","conflict":false}}]}}"#
        );
        let d = parse(doc.as_bytes()).expect("parses");
        let mut en = enricher();
        let (l, _, _, skipped) = apply(&d, &mut en, &mut crate::verdict::inspector::Profile::default());
        assert_eq!((l, skipped), (1, 1));
    }

    /// The lease cap: the newest are written, the rest counted.
    #[test]
    fn the_lease_cap_keeps_the_newest() {
        let mut en = enricher();
        for i in 0..60u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i));
            en.restore_lease("lan", ip, "d", i64::from(i), i64::from(i) + 1_000, Confidence::Dhcp, EndReason::Natural, false);
        }
        let (doc, dropped) = snapshot_capped(Some(&en), &crate::verdict::inspector::Profile::default(), 50);
        assert_eq!(doc.leases.len(), 50);
        assert_eq!(dropped, 10);
        assert_eq!(doc.leases.first().map(|l| l.from_ns), Some(10), "the oldest are left out");
    }
}
