//! Target `quic`: [`QuicConn::datagram`], the QUIC Initial path (header
//! protection, AEAD decryption, CRYPTO frame reassembly, the ClientHello).
//!
//! A case is `[oracle: u8][ClientHello message: u32 length + bytes]`, then
//! datagrams `[from client: u8][length: u16][bytes]`. Mutations take a
//! ClientHello (the streams' ones, maybe with changed bytes), cut it into
//! CRYPTO frames (overlapping, duplicated, out of order, with PADDING and
//! PING between), seal them into QUIC v1 client Initial packets here
//! (RFC 9001 §5, written from the RFC with the `aes-gcm`, `aes` and `hkdf`
//! crates, independently of the parser's code), with random connection IDs
//! and packet numbers, coalesce packets into datagrams and shuffle or
//! repeat those; then maybe drop a datagram or change its bytes (the
//! oracle is then off).
//!
//! Checks: no panic; the connection's heap within its documented bound
//! (two CRYPTO buffers of `MAX_CRYPTO_BYTES` plus keys and hellos); the
//! check's heap at most 1 MiB plus ten times the case; and with the oracle
//! on, exactly one ClientHello event, equal to the one parsed from the
//! whole message.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use hkdf::Hkdf;
use sha2::Sha256;

use pinwatch_parsers::quic::{QuicConn, QuicEvent, MAX_CRYPTO_BYTES};
use pinwatch_parsers::tls::parse_client_hello;

use super::alloc::measure;
use super::{havoc, put_blob, Reader, Rng, Target};

pub struct Quic;

/// RFC 9001 §5.2: the QUIC v1 initial salt.
const SALT_V1: [u8; 20] =
    [0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a];

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) {
    let full = format!("tls13 {label}");
    let mut info = (out.len() as u16).to_be_bytes().to_vec();
    info.push(full.len() as u8);
    info.extend(full.as_bytes());
    info.push(0);
    let hk = Hkdf::<Sha256>::from_prk(secret).expect("a 32-byte PRK");
    hk.expand(&info, out).expect("short output");
}

/// Client Initial keys for `dcid`: (key, iv, hp).
fn client_keys(dcid: &[u8]) -> ([u8; 16], [u8; 12], [u8; 16]) {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&SALT_V1), dcid);
    let mut client = [0u8; 32];
    expand_label(&prk, "client in", &mut client);
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&client, "quic key", &mut key);
    expand_label(&client, "quic iv", &mut iv);
    expand_label(&client, "quic hp", &mut hp);
    (key, iv, hp)
}

/// A protected QUIC v1 client Initial (2-byte packet number) carrying `payload`.
pub fn seal_initial(dcid: &[u8], scid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
    let (key, iv, hp) = client_keys(dcid);
    let mut payload = payload.to_vec();
    payload.resize(payload.len().max(4), 0);
    let mut hdr = vec![0xc1];
    hdr.extend(1u32.to_be_bytes());
    hdr.push(dcid.len() as u8);
    hdr.extend(dcid);
    hdr.push(scid.len() as u8);
    hdr.extend(scid);
    hdr.push(0); // token length
    hdr.extend((0x4000u16 | (2 + payload.len() + 16) as u16).to_be_bytes());
    let pn_offset = hdr.len();
    hdr.extend((pn as u16).to_be_bytes());
    let mut nonce = iv;
    for (n, p) in nonce[4..].iter_mut().zip(u64::from(pn).to_be_bytes()) {
        *n ^= p;
    }
    let aead = Aes128Gcm::new_from_slice(&key).expect("16-byte key");
    let tag = aead.encrypt_in_place_detached(&nonce.into(), &hdr, &mut payload).expect("seal");
    let mut out = hdr;
    out.extend(payload);
    out.extend(tag);
    let mut sample: [u8; 16] = out[pn_offset + 4..pn_offset + 20].try_into().expect("16 bytes");
    aes::Aes128::new_from_slice(&hp).expect("16-byte key").encrypt_block((&mut sample).into());
    out[0] ^= sample[0] & 0x0f;
    out[pn_offset] ^= sample[1];
    out[pn_offset + 1] ^= sample[2];
    out
}

fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=0x3f => vec![v as u8],
        0x40..=0x3fff => (0x4000 | v as u16).to_be_bytes().to_vec(),
        0x4000..=0x3fff_ffff => (0x8000_0000 | v as u32).to_be_bytes().to_vec(),
        _ => (0xc000_0000_0000_0000 | v.min((1 << 62) - 1)).to_be_bytes().to_vec(),
    }
}

fn crypto_frame(off: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(off));
    f.extend(varint(data.len() as u64));
    f.extend(data);
    f
}

pub struct Case<'a> {
    pub oracle: bool,
    pub ch: &'a [u8],
    pub datagrams: Vec<(bool, &'a [u8])>,
}

pub fn parse_case(b: &[u8]) -> Option<Case<'_>> {
    let mut r = Reader(b);
    let oracle = r.u8()? == 1;
    let ch = r.blob()?;
    let mut datagrams = Vec::new();
    while let Some(from_client) = r.u8() {
        let Some(n) = r.u16() else { break };
        let n = usize::from(n).min(r.0.len());
        datagrams.push((from_client & 1 == 1, r.take(n)?));
    }
    Some(Case { oracle, ch, datagrams })
}

fn write_case(oracle: bool, ch: &[u8], datagrams: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![u8::from(oracle)];
    put_blob(&mut v, ch);
    for (c, d) in datagrams {
        v.push(u8::from(*c));
        v.extend((d.len().min(0xffff) as u16).to_le_bytes());
        v.extend(&d[..d.len().min(0xffff)]);
    }
    v
}

impl Target for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut rng = Rng::new(11);
        super::seeds::material().client_hellos.iter().map(|ch| self.build(ch, &mut rng, false)).collect()
    }
    fn mutate(&self, seed: &[u8], _all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let Some(c) = parse_case(seed) else {
            return seed.to_vec();
        };
        let mut ch = c.ch.to_vec();
        if rng.chance(3) {
            // Change the hello itself: the oracle follows it.
            let body_len = ch.len();
            havoc(&mut ch, rng);
            if rng.chance(2) && ch.len() >= 4 {
                // Keep the handshake header's length right, so the body is parsed.
                let n = (ch.len() - 4) as u32;
                ch[1..4].copy_from_slice(&n.to_be_bytes()[1..]);
            }
            let _ = body_len;
        }
        let mut v = self.build(&ch, rng, true);
        if rng.chance(4) {
            // Break the datagrams themselves: no oracle.
            let Some(c) = parse_case(&v) else { return v };
            let mut ds: Vec<(bool, Vec<u8>)> = c.datagrams.iter().map(|(f, d)| (*f, d.to_vec())).collect();
            let ch = c.ch.to_vec();
            if !ds.is_empty() {
                let i = rng.below(ds.len());
                if rng.chance(3) {
                    ds.remove(i);
                } else {
                    havoc(&mut ds[i].1, rng);
                    if rng.chance(3) {
                        ds[i].0 = !ds[i].0;
                    }
                }
            }
            v = write_case(false, &ch, &ds);
        }
        v
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let Some(c) = parse_case(case) else {
            return Ok(());
        };
        let cap = 2 * MAX_CRYPTO_BYTES + 64 * 1024;
        let (r, peak) = measure(|| -> Result<Vec<QuicEvent>, String> {
            let mut q = QuicConn::new();
            let mut out = Vec::new();
            let mut hellos = Vec::new();
            for (from_client, d) in &c.datagrams {
                q.datagram(*from_client, d, &mut out);
                hellos.extend(out.drain(..).filter(|e| matches!(e, QuicEvent::ClientHello(_))));
                if q.heap_bytes() > cap {
                    return Err(format!("QuicConn holds {} B > {cap} B", q.heap_bytes()));
                }
            }
            Ok(hellos)
        });
        let hellos = r?;
        let heap_cap = (1 << 20) + 10 * case.len() as u64;
        if peak > heap_cap {
            return Err(format!("heap peak {peak} B > {heap_cap} B"));
        }
        if !c.oracle || c.ch.len() < 4 {
            return Ok(());
        }
        let declared = (usize::from(c.ch[1]) << 16) | (usize::from(c.ch[2]) << 8) | usize::from(c.ch[3]);
        if c.ch[0] != 1 || declared != c.ch.len() - 4 {
            return Ok(());
        }
        let want = parse_client_hello(&c.ch[4..]);
        match (want, hellos.as_slice()) {
            (None, _) => Ok(()),
            (Some(w), [QuicEvent::ClientHello(g)]) if **g == w => Ok(()),
            (Some(_), got) => {
                Err(format!("{} ClientHello events from a whole, faithfully framed ClientHello of {} B", got.len(), c.ch.len()))
            }
        }
    }
}

impl Quic {
    /// Frame `ch` into sealed Initials and datagrams.
    fn build(&self, ch: &[u8], rng: &mut Rng, shake: bool) -> Vec<u8> {
        let dlen = if shake { [0, 1, 8, 20][rng.below(4)] } else { 8 };
        let dcid = rng.bytes(dlen);
        let slen = rng.below(21);
        let scid = rng.bytes(slen);
        // Fragments covering the hello, maybe overlapping and duplicated.
        let mut frags: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut at = 0;
        let size = if shake { [1, 7, 100, 400, 1100][rng.below(5)] } else { 1100 };
        while at < ch.len() && frags.len() < 48 {
            let n = if shake { 1 + rng.below(size) } else { size };
            let end = (at + n).min(ch.len());
            frags.push((at as u64, ch[at..end].to_vec()));
            at = end;
        }
        // Short DCIDs are not a valid first Initial (RFC 9000 §7.2): no oracle.
        let mut oracle = at >= ch.len() && dcid.len() >= 8;
        if at < ch.len() {
            frags.push((at as u64, ch[at..].to_vec()));
        }
        if shake {
            for _ in 0..rng.below(4) {
                let from = rng.below(ch.len());
                let to = (from + 1 + rng.below(200)).min(ch.len());
                frags.push((from as u64, ch[from..to].to_vec()));
            }
            if rng.chance(8) {
                // A fragment far past the buffer: counted as overflow.
                frags.push((rng.interesting_u64() & ((1 << 62) - 1), rng.bytes(8)));
                oracle = false;
            }
            for i in (1..frags.len()).rev() {
                if rng.chance(2) {
                    frags.swap(i, rng.below(i + 1));
                }
            }
        }
        // Packets of 1–3 fragments, padded; datagrams of 1–3 packets.
        let mut packets = Vec::new();
        let mut pn = if shake { rng.below(1 << 14) as u32 } else { 0 };
        let mut i = 0;
        while i < frags.len() {
            let k = if shake { 1 + rng.below(3) } else { 1 };
            let mut payload = Vec::new();
            for (off, d) in frags.iter().skip(i).take(k) {
                if shake && rng.chance(4) {
                    payload.push(0x01); // PING
                }
                payload.extend(crypto_frame(*off, d));
            }
            i += k;
            payload.resize(payload.len().max(if shake { rng.below(1200) } else { 1162 }), 0);
            packets.push(seal_initial(&dcid, &scid, pn, &payload));
            pn += 1;
        }
        let mut datagrams: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < packets.len() {
            let k = if shake { 1 + rng.below(3) } else { 1 };
            let d: Vec<u8> = packets.iter().skip(i).take(k).flatten().copied().collect();
            datagrams.push((true, d));
            i += k;
        }
        if shake && datagrams.len() > 1 && rng.chance(2) {
            let j = rng.below(datagrams.len());
            let dup = datagrams[j].clone();
            datagrams.push(dup);
        }
        // The first datagram must come first: its DCID keys the connection
        // (the same for all here), so any order works; shuffle some.
        if shake && rng.chance(2) {
            datagrams.reverse();
        }
        write_case(oracle, ch, &datagrams)
    }
}
