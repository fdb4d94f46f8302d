//! The PROXY protocol v2 header (HAProxy's binary preface, sent by load
//! balancers such as HAProxy `send-proxy-v2`, AWS NLB and nginx
//! `proxy_protocol`) in front of the TLS a backend receives.
//!
//! Layout (HAProxy's `proxy-protocol.txt`, section 2.2): the 12-byte
//! signature `\r\n\r\n\0\r\nQUIT\n`, one byte of version (high nibble, 2)
//! and command (low nibble, 0 LOCAL or 1 PROXY), one byte of address family
//! and transport, a 16-bit big-endian length of what follows (addresses,
//! then TLVs), then that many bytes. The v1 text line is handled where the
//! TLS start is decided (`flow::tls_start`).
//!
//! Pure, never panics.

/// What the bytes at a segment start say about a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2 {
    /// Not a v2 header (nor the start of one).
    No,
    /// A v2 header of this many bytes (signature included): TLS, if any,
    /// starts right after it.
    Header(usize),
    /// The start of one; more bytes are needed.
    More,
    /// A v2 header longer than the `hold` bytes a caller can keep before
    /// deciding; whatever follows it is looked for at the next segment
    /// start.
    TooLong,
}

/// The v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Look for a v2 header at the start of `b`; `hold` is how many bytes the
/// caller can gather at most before it must decide.
pub fn v2_len(b: &[u8], hold: usize) -> V2 {
    let n = b.len().min(SIGNATURE.len());
    if b[..n] != SIGNATURE[..n] {
        return V2::No;
    }
    if b.len() < 16 {
        return V2::More;
    }
    let (version, command) = (b[12] >> 4, b[12] & 0x0f);
    if version != 2 || command > 1 {
        return V2::No;
    }
    let total = 16 + usize::from(u16::from_be_bytes([b[14], b[15]]));
    if b.len() >= total {
        V2::Header(total)
    } else if total < hold {
        V2::More
    } else {
        V2::TooLong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 PROXY header for TCP over IPv4 from 192.0.2.1:56324 to
    /// 198.51.100.2:443, built field by field from the specification.
    fn v2_ipv4() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend([0x21, 0x11, 0x00, 0x0c]);
        h.extend([192, 0, 2, 1, 198, 51, 100, 2]);
        h.extend(56324u16.to_be_bytes());
        h.extend(443u16.to_be_bytes());
        h
    }

    #[test]
    fn v2_header_lengths() {
        let h = v2_ipv4();
        assert_eq!(h.len(), 28);
        assert_eq!(v2_len(&h, 128), V2::Header(28));
        let mut with_hello = h.clone();
        with_hello.extend([0x16, 0x03, 0x01, 0x00, 0x05]);
        assert_eq!(v2_len(&with_hello, 128), V2::Header(28));
        for cut in 0..28 {
            assert_eq!(v2_len(&h[..cut], 128), V2::More, "cut {cut}");
        }
        // A header whose TLVs make it longer than the caller can hold.
        let mut long = h.clone();
        long[14..16].copy_from_slice(&300u16.to_be_bytes());
        assert_eq!(v2_len(&long, 128), V2::TooLong);
        // Version 1 in the binary form, or a command other than LOCAL/PROXY: not v2.
        let mut bad = h.clone();
        bad[12] = 0x11;
        assert_eq!(v2_len(&bad, 128), V2::No);
        bad[12] = 0x22;
        assert_eq!(v2_len(&bad, 128), V2::No);
        assert_eq!(v2_len(b"\x16\x03\x01\x00\x05", 128), V2::No);
        assert_eq!(v2_len(b"PROXY TCP4 ", 128), V2::No);
    }
}
