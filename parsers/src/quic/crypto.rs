//! Initial packet protection: key derivation (RFC 9001 §5.2, RFC 9369
//! §3.3), header protection removal (RFC 9001 §5.4, AES only: Initials
//! always use AEAD_AES_128_GCM), packet number recovery (RFC 9000 §A.3)
//! and AEAD decryption (RFC 9001 §5.3).
//!
//! Everything takes its inputs as arguments and returns `None`/`Err` for
//! bad input; nothing panics.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use hkdf::Hkdf;
use sha2::Sha256;

use super::header::VersionParams;

/// Length of the AEAD tag (AEAD_AES_128_GCM).
pub(crate) const TAG_LEN: usize = 16;
/// Length of the header-protection sample.
pub(crate) const SAMPLE_LEN: usize = 16;

/// Packet-protection keys for one direction.
#[derive(Clone)]
pub(crate) struct DirKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl std::fmt::Debug for DirKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirKeys { .. }")
    }
}

/// Both directions' Initial keys, derived from the client's original
/// Destination Connection ID.
#[derive(Debug, Clone)]
pub(crate) struct InitialKeys {
    pub client: DirKeys,
    pub server: DirKeys,
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
pub(crate) fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
    let full = 6 + label.len();
    let mut info = Vec::with_capacity(4 + full);
    info.extend_from_slice(&u16::try_from(out.len()).ok()?.to_be_bytes());
    info.push(u8::try_from(full).ok()?);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label.as_bytes());
    info.push(0);
    hk.expand(&info, out).ok()
}

/// `client_initial_secret` and `server_initial_secret` for a connection ID.
pub(crate) fn initial_secrets(salt: &[u8], cid: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), cid);
    let mut client = [0u8; 32];
    let mut server = [0u8; 32];
    expand_label(&prk, "client in", &mut client)?;
    expand_label(&prk, "server in", &mut server)?;
    Some((client, server))
}

/// key, iv and hp of one direction (labels "quic key"... or "quicv2 key"...).
pub(crate) fn key_iv_hp(secret: &[u8], v2: bool) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let (k, i, h) = if v2 { ("quicv2 key", "quicv2 iv", "quicv2 hp") } else { ("quic key", "quic iv", "quic hp") };
    let mut key = [0u8; 16];
    let mut iv = [0u8; 12];
    let mut hp = [0u8; 16];
    expand_label(secret, k, &mut key)?;
    expand_label(secret, i, &mut iv)?;
    expand_label(secret, h, &mut hp)?;
    Some((key, iv, hp))
}

impl DirKeys {
    fn from_secret(secret: &[u8], v2: bool) -> Option<Self> {
        let (key, iv, hp) = key_iv_hp(secret, v2)?;
        Some(DirKeys { aead: Aes128Gcm::new_from_slice(&key).ok()?, iv, hp: Aes128::new_from_slice(&hp).ok()? })
    }

    /// The 5-byte header-protection mask for a 16-byte sample.
    fn mask(&self, sample: &[u8]) -> Option<[u8; 5]> {
        let block: [u8; SAMPLE_LEN] = sample.try_into().ok()?;
        let mut block = GenericArray::from(block);
        self.hp.encrypt_block(&mut block);
        Some([block[0], block[1], block[2], block[3], block[4]])
    }

    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (d, s) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
            *d ^= s;
        }
        n
    }
}

impl InitialKeys {
    /// Derive both directions' keys for `version` from `cid`.
    pub(crate) fn derive(p: VersionParams, cid: &[u8]) -> Option<Self> {
        let (c, s) = initial_secrets(p.salt, cid)?;
        Some(InitialKeys { client: DirKeys::from_secret(&c, p.v2)?, server: DirKeys::from_secret(&s, p.v2)? })
    }
}

/// Recover a full packet number from its truncated encoding
/// (RFC 9000 §A.3). `largest` is the largest packet number successfully
/// processed in this packet-number space, if any.
pub(crate) fn decode_pn(largest: Option<u64>, truncated: u64, nbits: u32) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let win = 1u64 << nbits;
    let hwin = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | truncated;
    if candidate.saturating_add(hwin) <= expected && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// A decrypted long-header packet: its full packet number and plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plaintext {
    pub pn: u64,
    pub payload: Vec<u8>,
}

/// Remove header protection from a long-header packet and decrypt it.
///
/// `packet` runs from the first byte to the end given by the Length field;
/// `pn_offset` is where the packet number starts. The input is not changed
/// (a copy is decrypted). Errors are stable counter names.
pub(crate) fn unprotect_long(keys: &DirKeys, packet: &[u8], pn_offset: usize, largest: Option<u64>) -> Result<Plaintext, &'static str> {
    let sample_at = pn_offset.saturating_add(4);
    let sample = packet.get(sample_at..sample_at.saturating_add(SAMPLE_LEN)).ok_or("quic_packet_too_short")?;
    let mask = keys.mask(sample).ok_or("quic_packet_too_short")?;
    let mut buf = packet.to_vec();
    buf[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(buf[0] & 0x03) + 1;
    if pn_offset + pn_len + TAG_LEN > buf.len() {
        return Err("quic_packet_too_short");
    }
    let mut truncated = 0u64;
    for i in 0..pn_len {
        buf[pn_offset + i] ^= mask[1 + i];
        truncated = (truncated << 8) | u64::from(buf[pn_offset + i]);
    }
    let pn = decode_pn(largest, truncated, 8 * pn_len as u32);
    let nonce = GenericArray::from(keys.nonce(pn));
    let (aad, rest) = buf.split_at_mut(pn_offset + pn_len);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| "quic_packet_too_short")?;
    keys.aead.decrypt_in_place_detached(&nonce, aad, ct, &GenericArray::from(tag)).map_err(|_| "quic_initial_auth_failed")?;
    let start = pn_offset + pn_len;
    let end = buf.len() - TAG_LEN;
    buf.truncate(end);
    buf.drain(..start);
    Ok(Plaintext { pn, payload: buf })
}

/// Protect a long-header packet (test builder; the inverse of
/// [`unprotect_long`]). `header` is the unprotected header ending with the
/// `pn_len`-byte packet number; its Length field must already count the
/// packet number, `payload` and the tag.
#[cfg(test)]
pub(crate) fn protect_long(keys: &DirKeys, header: &[u8], pn: u64, payload: &[u8]) -> Vec<u8> {
    let pn_len = usize::from(header[0] & 3) + 1;
    let pn_offset = header.len() - pn_len;
    let mut ct = payload.to_vec();
    let nonce = GenericArray::from(keys.nonce(pn));
    let tag = keys.aead.encrypt_in_place_detached(&nonce, header, &mut ct).unwrap();
    let mut out = header.to_vec();
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    let sample_at = pn_offset + 4;
    let mask = keys.mask(&out[sample_at..sample_at + SAMPLE_LEN]).unwrap();
    out[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        out[pn_offset + i] ^= mask[1 + i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::header::{params, version};
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    const CID: &str = "8394c8f03e515708";

    #[test]
    fn rfc9001_a1_keys() {
        let salt = params(version::V1).unwrap().salt;
        let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), &h(CID));
        assert_eq!(prk.to_vec(), h("7db5df06e7a69e432496adedb0085192 3595221596ae2ae9fb8115c1e9ed0a44"));
        let (c, s) = initial_secrets(salt, &h(CID)).unwrap();
        assert_eq!(c.to_vec(), h("c00cf151ca5be075ed0ebfb5c80323c4 2d6b7db67881289af4008f1f6c357aea"));
        assert_eq!(s.to_vec(), h("3c199828fd139efd216c155ad844cc81 fb82fa8d7446fa7d78be803acdda951b"));
        let (k, i, hp) = key_iv_hp(&c, false).unwrap();
        assert_eq!(k.to_vec(), h("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(i.to_vec(), h("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp.to_vec(), h("9f50449e04a0e810283a1e9933adedd2"));
        let (k, i, hp) = key_iv_hp(&s, false).unwrap();
        assert_eq!(k.to_vec(), h("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(i.to_vec(), h("0ac1493ca1905853b0bba03e"));
        assert_eq!(hp.to_vec(), h("c206b8d9b9f0f37644430b490eeaa314"));
        // A.2 header protection: sample -> mask.
        let keys = InitialKeys::derive(params(version::V1).unwrap(), &h(CID)).unwrap();
        assert_eq!(keys.client.mask(&h("d1b1c98dd7689fb8ec11d242b123dc9b")).unwrap().to_vec(), h("437b9aec36"));
        assert_eq!(keys.server.mask(&h("2cd0991cd25b0aac406a5816b6394100")).unwrap().to_vec(), h("2ec0d8356a"));
    }

    #[test]
    fn rfc9369_a1_keys() {
        let p = params(version::V2).unwrap();
        let (prk, _) = Hkdf::<Sha256>::extract(Some(p.salt), &h(CID));
        assert_eq!(prk.to_vec(), h("2062e8b3cd8d52092614b8071d0aa1fb 7c2e3ac193f78b280e72d8f5751f6aba"));
        let (c, s) = initial_secrets(p.salt, &h(CID)).unwrap();
        assert_eq!(c.to_vec(), h("14ec9d6eb9fd7af83bf5a668bc17a7e2 83766aade7ecd0891f70f9ff7f4bf47b"));
        assert_eq!(s.to_vec(), h("0263db1782731bf4588e7e4d93b74639 07cb8cd8200b5da55a8bd488eafc37c1"));
        let (k, i, hp) = key_iv_hp(&c, true).unwrap();
        assert_eq!(k.to_vec(), h("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(i.to_vec(), h("91f73e2351d8fa91660e909f"));
        assert_eq!(hp.to_vec(), h("45b95e15235d6f45a6b19cbcb0294ba9"));
        let (k, i, hp) = key_iv_hp(&s, true).unwrap();
        assert_eq!(k.to_vec(), h("82db637861d55e1d011f19ea71d5d2a7"));
        assert_eq!(i.to_vec(), h("dd13c276499c0249d3310652"));
        assert_eq!(hp.to_vec(), h("edf6d05c83121201b436e16877593c3a"));
        let keys = InitialKeys::derive(p, &h(CID)).unwrap();
        assert_eq!(keys.client.mask(&h("ffe67b6abcdb4298b485dd04de806071")).unwrap().to_vec(), h("94a0c95e80"));
        assert_eq!(keys.server.mask(&h("6f05d8a4398c47089698baeea26b91eb")).unwrap().to_vec(), h("4dd92e91ea"));
    }

    #[test]
    fn hkdf_labels_rfc9001_a1() {
        // The HkdfLabel bytes listed in A.1, rebuilt the way expand_label does.
        fn info(len: u16, label: &str) -> Vec<u8> {
            let mut v = len.to_be_bytes().to_vec();
            v.push((6 + label.len()) as u8);
            v.extend(b"tls13 ");
            v.extend(label.as_bytes());
            v.push(0);
            v
        }
        assert_eq!(info(32, "client in"), h("00200f746c73313320636c69656e7420696e00"));
        assert_eq!(info(16, "quic hp"), h("00100d746c733133207175696320687000"));
        assert_eq!(info(16, "quicv2 key"), h("001010746c73313320717569637632206b657900"));
    }

    #[test]
    fn packet_number_decoding_rfc9000_a3() {
        assert_eq!(decode_pn(Some(0xa82f_30ea), 0x9b32, 16), 0xa82f_9b32);
        assert_eq!(decode_pn(None, 2, 32), 2);
        assert_eq!(decode_pn(None, 0, 8), 0);
        assert_eq!(decode_pn(Some(255), 0x01, 8), 257);
        assert_eq!(decode_pn(Some(300), 0xff, 8), 255);
        // Near the top of the space nothing overflows.
        let top = (1u64 << 62) - 1;
        assert_eq!(decode_pn(Some(top), 0xff, 8), top & !0xff | 0xff);
        assert_eq!(decode_pn(Some(u64::MAX), 0, 8), !0xff);
    }

    #[test]
    fn protect_roundtrip_and_tamper() {
        let keys = InitialKeys::derive(params(version::V1).unwrap(), &h(CID)).unwrap();
        // Header: Initial, pn_len 2, DCID 8394.., SCID empty, token empty,
        // Length = 2 + 30 + 16 = 48 (0x4030), pn = 0x0102.
        let hdr = h("c100000001088394c8f03e51570800004030 0102");
        let payload = vec![1u8; 30];
        let pkt = protect_long(&keys.client, &hdr, 0x0102, &payload);
        let pn_offset = hdr.len() - 2;
        let p = unprotect_long(&keys.client, &pkt, pn_offset, None).unwrap();
        assert_eq!(p, Plaintext { pn: 0x0102, payload: payload.clone() });
        // Wrong direction, flipped bits, truncation: errors, never panics.
        assert_eq!(unprotect_long(&keys.server, &pkt, pn_offset, None), Err("quic_initial_auth_failed"));
        for i in 0..pkt.len() {
            let mut bad = pkt.clone();
            bad[i] ^= 0x10;
            assert!(unprotect_long(&keys.client, &bad, pn_offset, None).is_err(), "byte {i}");
        }
        for n in 0..pkt.len() {
            assert!(unprotect_long(&keys.client, &pkt[..n], pn_offset, None).is_err());
        }
        assert!(unprotect_long(&keys.client, &pkt, pkt.len() + 5, None).is_err());
    }
}
