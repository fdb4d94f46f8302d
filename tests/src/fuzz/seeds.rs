//! Seeds shared by the targets: the capture files (`pcaps/` and, when it is
//! there, the shared corpus), and what is cut out of them: frames, the two
//! byte streams of TCP connections, ClientHello messages and certificates.
//! Loaded once per process.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use pinwatch::capture::CaptureFile;
use pinwatch::flow::reassembly::{Chunk, Limits, Reassembler};
use pinwatch_parsers::decode::{decode, linktype};
use pinwatch_parsers::tls::{Dir, TlsEvent, TlsParser};

/// Largest capture file taken as a seed whole (bigger ones give frames and
/// streams only).
pub const MAX_SEED_FILE: u64 = 2 << 20;
/// Bytes kept of each direction of a TCP stream (the handshake is at the start).
pub const MAX_STREAM: usize = 24 * 1024;

/// Everything cut out of the captures.
#[derive(Debug, Default)]
pub struct Material {
    /// (name, bytes) of capture files no bigger than [`MAX_SEED_FILE`].
    pub files: Vec<(String, Vec<u8>)>,
    /// (link type, frame) of decodable packets.
    pub frames: Vec<(u32, Vec<u8>)>,
    /// (client bytes, server bytes) of TCP connections whose client side
    /// starts with a TLS handshake record.
    pub streams: Vec<(Vec<u8>, Vec<u8>)>,
    /// ClientHello handshake messages (with their 4-byte header).
    pub client_hellos: Vec<Vec<u8>>,
    /// DER certificates.
    pub certs: Vec<Vec<u8>>,
}

/// The capture files: every `pcaps/*.pcap`, then the corpus's (sorted, so a
/// seed number means the same run everywhere with the same corpus).
pub fn capture_paths() -> Vec<PathBuf> {
    let root = crate::corpus::workspace_root();
    let mut v = super::files_in(&root.join("pcaps"));
    v.retain(|p| p.extension().is_some_and(|x| x == "pcap"));
    if let Ok(c) = crate::corpus::locate() {
        let mut more = crate::corpus::all_capture_files(&c);
        more.sort();
        v.extend(more);
    }
    v
}

pub fn material() -> &'static Material {
    static M: OnceLock<Material> = OnceLock::new();
    M.get_or_init(load)
}

type Key = (IpAddr, u16, IpAddr, u16);

#[derive(Default)]
struct Conn {
    /// Direction 0 is the side that sent the first SYN (or first segment).
    first: Option<Key>,
    bytes: [Vec<u8>; 2],
    re: [Reassembler; 2],
}

fn load() -> Material {
    let mut m = Material::default();
    let lim = Limits::default();
    for path in capture_paths() {
        let Ok(f) = CaptureFile::open(&path) else {
            continue;
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if f.len() <= MAX_SEED_FILE {
            if let Ok(b) = std::fs::read(&path) {
                m.files.push((name, b));
            }
        }
        let mut conns: BTreeMap<Key, Conn> = BTreeMap::new();
        let mut frames_here = 0;
        for p in f.packets().take(200_000) {
            let Ok(p) = p else { break };
            let Ok(d) = decode(p.linktype, p.data) else {
                continue;
            };
            if frames_here < 64
                && (frames_here < 8
                    || d.tunnel.is_some()
                    || !d.vlans.is_empty()
                    || p.linktype != linktype::ETHERNET
                    || !d.payload.is_empty())
            {
                frames_here += 1;
                m.frames.push((p.linktype, p.data.to_vec()));
            }
            let Some(tcp) = d.tcp else { continue };
            let k = (d.src, d.sport, d.dst, d.dport);
            let rk = (d.dst, d.dport, d.src, d.sport);
            let key = if conns.contains_key(&rk) { rk } else { k };
            if conns.len() > 4096 && !conns.contains_key(&key) {
                continue;
            }
            let c = conns.entry(key).or_default();
            let first = *c.first.get_or_insert(k);
            let dir = usize::from(first != k);
            if tcp.has(pinwatch_parsers::decode::TcpInfo::SYN) {
                c.re[dir].sync(tcp.seq.wrapping_add(1));
                continue;
            }
            if d.payload.is_empty() || c.bytes[dir].len() >= MAX_STREAM {
                continue;
            }
            let Conn { bytes, re, .. } = c;
            re[dir].segment(tcp.seq, d.payload, &lim, &mut |ch| {
                if let Chunk::Data { bytes: b, .. } = ch {
                    let room = MAX_STREAM - bytes[dir].len().min(MAX_STREAM);
                    bytes[dir].extend_from_slice(&b[..b.len().min(room)]);
                }
            });
        }
        let mut here = 0;
        for c in conns.into_values() {
            let [cb, sb] = c.bytes;
            if cb.len() >= 9 && cb[0] == 0x16 && cb[5] == 1 && here < 24 {
                here += 1;
                m.streams.push((cb, sb));
            }
        }
    }
    // ClientHellos and certificates out of the streams.
    for (cb, sb) in &m.streams {
        if let Some(len) = cb.get(6..9).map(|l| usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2])) {
            let rec = usize::from(cb[3]) << 8 | usize::from(cb[4]);
            if 4 + len <= rec && 5 + rec <= cb.len() {
                m.client_hellos.push(cb[5..9 + len].to_vec());
            }
        }
        let mut p = TlsParser::new();
        let mut out = Vec::new();
        p.feed(Dir::Server, sb, 0, &mut out);
        for e in out {
            if let TlsEvent::Certificates { chain, .. } = e {
                for c in chain {
                    if m.certs.len() < 400 && !m.certs.contains(&c) {
                        m.certs.push(c);
                    }
                }
            }
        }
    }
    m.client_hellos.sort();
    m.client_hellos.dedup();
    m
}
