//! ClientHello/ServerHello bodies and the fingerprints computed from them.
//! Invariant: JA4 always has its three-part shape.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pinwatch_parsers::hello::Transport;
use pinwatch_parsers::tls::{parse_client_hello, parse_server_hello};

fuzz_target!(|data: &[u8]| {
    if let Some(ch) = parse_client_hello(data) {
        let j = pinwatch_parsers::ja4::ja4(&ch, Transport::Tcp);
        assert_eq!(j.split('_').count(), 3, "{j}");
        let _ = pinwatch_parsers::ja3::ja3(&ch);
    }
    if let Some(sh) = parse_server_hello(data) {
        let _ = pinwatch_parsers::ja3::ja3s(&sh);
    }
});
