//! TlsParser::feed/gap: the input is split into chunks for both directions by
//! its own bytes. Invariants: the consumed offset equals the bytes fed plus
//! the gaps, and the parser's heap stays within its caps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pinwatch_parsers::tls::{Dir, TlsParser, MAX_HANDSHAKE_MESSAGE, MAX_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let mut p = TlsParser::new();
    let mut out = Vec::new();
    let mut fed = [0u64; 2];
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = usize::from(ctl & 0x3f).min(tail.len());
        let dir = if ctl & 0x40 == 0 { Dir::Client } else { Dir::Server };
        if ctl & 0x80 != 0 && n == 0 {
            p.gap(dir, 7);
            fed[dir.idx()] += 7;
        } else {
            p.feed(dir, &tail[..n], 0, &mut out);
            fed[dir.idx()] += n as u64;
        }
        rest = &tail[n..];
        out.clear();
    }
    assert_eq!(p.offset(Dir::Client), fed[0]);
    assert_eq!(p.offset(Dir::Server), fed[1]);
    assert!(p.heap_bytes() <= 2 * (MAX_HANDSHAKE_MESSAGE + MAX_RECORD_LEN) + 1024);
});
