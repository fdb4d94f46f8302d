//! QuicConn::datagram and the gQUIC hello reader: the input is split into datagrams for both directions
//! by its own bytes. Invariant: the connection's heap stays within its caps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pinwatch_parsers::quic::{QuicConn, MAX_CRYPTO_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut c = QuicConn::new();
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = (usize::from(ctl & 0x7f) * 16).min(tail.len());
        c.datagram(ctl & 0x80 == 0, &tail[..n], &mut out);
        // Google QUIC hellos: a found SNI is always a prefix-free string.
        if let Ok(h) = pinwatch_parsers::quic::gquic::inspect_client_datagram(&tail[..n]) {
            assert!(h.sni.as_deref().is_none_or(|s| !s.is_empty()));
        }
        rest = &tail[n..];
        out.clear();
    }
    assert!(c.heap_bytes() <= 2 * MAX_CRYPTO_BYTES + 64 * 1024);
});
