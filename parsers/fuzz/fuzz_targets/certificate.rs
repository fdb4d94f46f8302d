//! parse_certificate(): any DER-ish bytes. Invariant: never panics; a parsed
//! certificate's SHA-256 is 64 hex digits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = pinwatch_parsers::cert::parse_certificate(data) {
        assert_eq!(c.sha256.len(), 64);
    }
});
