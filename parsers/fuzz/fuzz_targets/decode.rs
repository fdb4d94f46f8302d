//! decode(): any link type, any bytes. Invariant: the payload is a sub-slice
//! of the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pinwatch_parsers::decode::decode;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let lt = u32::from(data[0]) | if data[1] & 1 == 1 { 0x100 } else { 0 };
    let frame = &data[2..];
    if let Ok(d) = decode(lt, frame) {
        let start = frame.as_ptr() as usize;
        let p = d.payload.as_ptr() as usize;
        assert!(d.payload.is_empty() || (p >= start && p + d.payload.len() <= start + frame.len()));
    }
});
