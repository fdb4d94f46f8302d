//! OpenVpnTcp::feed: the input is split into chunks for both directions by
//! its own bytes. Invariants: no panic, the unwrapper's heap stays within
//! its cap, and it never hands out more bytes than it was fed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pinwatch_parsers::openvpn::{OpenVpnTcp, MAX_CONTROL_PACKET};
use pinwatch_parsers::tls::Dir;

fuzz_target!(|data: &[u8]| {
    let mut o = OpenVpnTcp::new();
    let mut tls = Vec::new();
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = usize::from(ctl & 0x7f).min(tail.len());
        let dir = if ctl & 0x80 == 0 {
            Dir::Client
        } else {
            Dir::Server
        };
        o.feed(dir, &tail[..n], &mut tls);
        rest = &tail[n..];
        assert!(o.heap_bytes() <= 2 * MAX_CONTROL_PACKET.next_power_of_two());
    }
    assert!(tls.len() <= data.len());
});
