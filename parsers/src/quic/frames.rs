//! Frames of a decrypted Initial payload (RFC 9000 §19, §12.4): the only
//! ones allowed there are PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE.
//! ACK frames are skipped field by field (ranges and ECN counts included)
//! so the frames after them are found.

use super::header::Reader;

/// Frame type code points (RFC 9000 §19).
pub(crate) mod frame_type {
    pub const PADDING: u64 = 0x00;
    pub const PING: u64 = 0x01;
    pub const ACK: u64 = 0x02;
    pub const ACK_ECN: u64 = 0x03;
    pub const CRYPTO: u64 = 0x06;
    pub const CONNECTION_CLOSE: u64 = 0x1c;
    pub const CONNECTION_CLOSE_APP: u64 = 0x1d;
}

/// One frame, borrowing from the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// One or more PADDING bytes.
    Padding,
    Ping,
    Ack,
    Crypto {
        offset: u64,
        data: &'a [u8],
    },
    /// CONNECTION_CLOSE: `frame_type` is present for the transport variant
    /// (0x1c) and absent for the application variant (0x1d).
    Close {
        error_code: u64,
        frame_type: Option<u64>,
        reason: &'a [u8],
    },
}

/// Walk the frames of `payload`, calling `f` for each. Stops at the first
/// frame that is truncated or of a type not allowed in Initial packets and
/// returns its stable counter name; the frames before it were delivered.
pub(crate) fn parse_frames<'a>(payload: &'a [u8], mut f: impl FnMut(Frame<'a>)) -> Result<(), &'static str> {
    const TRUNCATED: &str = "quic_frame_truncated";
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        let ty = r.varint().ok_or(TRUNCATED)?;
        match ty {
            frame_type::PADDING => {
                while r.peek() == Some(0) {
                    r.u8();
                }
                f(Frame::Padding);
            }
            frame_type::PING => f(Frame::Ping),
            frame_type::ACK | frame_type::ACK_ECN => {
                skip_ack(&mut r, ty == frame_type::ACK_ECN).ok_or(TRUNCATED)?;
                f(Frame::Ack);
            }
            frame_type::CRYPTO => {
                let offset = r.varint().ok_or(TRUNCATED)?;
                let len = r.varint().ok_or(TRUNCATED)?;
                let data = r.bytes_u64(len).ok_or(TRUNCATED)?;
                f(Frame::Crypto { offset, data });
            }
            frame_type::CONNECTION_CLOSE | frame_type::CONNECTION_CLOSE_APP => {
                let error_code = r.varint().ok_or(TRUNCATED)?;
                let frame_type = if ty == frame_type::CONNECTION_CLOSE { Some(r.varint().ok_or(TRUNCATED)?) } else { None };
                let len = r.varint().ok_or(TRUNCATED)?;
                let reason = r.bytes_u64(len).ok_or(TRUNCATED)?;
                f(Frame::Close { error_code, frame_type, reason });
            }
            _ => return Err("quic_unknown_frame"),
        }
    }
    Ok(())
}

/// ACK (RFC 9000 §19.3): largest, delay, range count, first range, then
/// `count` (gap, length) pairs, then three ECN counts for type 0x03. Each
/// range reads at least two bytes, so a huge count ends at the payload end.
fn skip_ack(r: &mut Reader<'_>, ecn: bool) -> Option<()> {
    r.varint()?; // largest acknowledged
    r.varint()?; // ack delay
    let count = r.varint()?;
    r.varint()?; // first ack range
    let mut i = 0u64;
    while i < count {
        r.varint()?; // gap
        r.varint()?; // range length
        i += 1;
    }
    if ecn {
        r.varint()?;
        r.varint()?;
        r.varint()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(b: &[u8]) -> (Vec<Frame<'_>>, Result<(), &'static str>) {
        let mut v = Vec::new();
        let r = parse_frames(b, |f| v.push(f));
        (v, r)
    }

    #[test]
    fn rfc9001_a3_server_payload() {
        // ACK (largest 0, delay 0, 0 ranges, first 0) then CRYPTO at 0.
        let p = hex::decode(
            "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566dc5430b9a045a1200\
             130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00020304",
        )
        .unwrap();
        let (v, r) = frames(&p);
        assert_eq!(r, Ok(()));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], Frame::Ack);
        match v[1] {
            Frame::Crypto { offset: 0, data } => assert_eq!(data.len(), 0x5a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ack_with_ranges_and_ecn_then_close() {
        // ACK_ECN: largest 0x4010 (2-byte varint), delay 5, 2 ranges,
        // first 1, (gap 0, len 1), (gap 2, len 3), ECN 1 2 3; then PING,
        // PADDING x3, CONNECTION_CLOSE 0x1c code 0x12e frame type 6 reason "bad".
        let p = hex::decode("03 4010 05 02 01 00 01 02 03 01 02 03 01 000000 1c 412e 06 03 626164".replace(' ', "")).unwrap();
        let (v, r) = frames(&p);
        assert_eq!(r, Ok(()));
        assert_eq!(
            v,
            vec![Frame::Ack, Frame::Ping, Frame::Padding, Frame::Close { error_code: 0x12e, frame_type: Some(6), reason: b"bad" }]
        );
        // Application close has no frame type.
        let (v, _) = frames(&[0x1d, 0x05, 0x00]);
        assert_eq!(v, vec![Frame::Close { error_code: 5, frame_type: None, reason: b"" }]);
    }

    #[test]
    fn unknown_and_truncated_frames_stop() {
        // CRYPTO then STREAM (0x08, not allowed in Initial).
        let (v, r) = frames(&[0x06, 0x00, 0x01, 0xaa, 0x08, 0x00]);
        assert_eq!(v, vec![Frame::Crypto { offset: 0, data: &[0xaa] }]);
        assert_eq!(r, Err("quic_unknown_frame"));
        // CRYPTO claims 5 bytes, has 1.
        assert_eq!(frames(&[0x06, 0x00, 0x05, 0xaa]).1, Err("quic_frame_truncated"));
        // ACK with an absurd range count ends at the payload end.
        assert_eq!(frames(&[0x02, 0x00, 0x00, 0xbf, 0xff, 0xff, 0xff, 0x00, 0x01, 0x01]).1, Err("quic_frame_truncated"));
        // Empty payload is fine.
        assert_eq!(frames(&[]).1, Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn random_payloads_never_panic(p in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut crypto = 0usize;
            let _ = parse_frames(&p, |f| if let Frame::Crypto { data, .. } = f { crypto += data.len() });
            proptest::prop_assert!(crypto <= p.len());
        }
    }
}
