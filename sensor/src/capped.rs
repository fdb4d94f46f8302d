//! Reads of the files and streams a user names (captures that are not
//! memory-mapped, gzip output, stdin, the configuration, CA files), capped
//! *before* the memory is spent: the buffer grows by doubling but never
//! past the cap (plus one byte, to see that the input goes on, plus one
//! 64 KiB read), so a `/dev/zero` or a gzip bomb costs the cap, not twice
//! it. The caps are in docs/output.md, "Limits and overflow actions".

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Largest configuration file read (`-c`), bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest CA file read (`inspection.ca_certificates`), bytes.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Size of one read.
const READ_CHUNK: usize = 64 * 1024;

/// What [`read_capped`] got: the bytes (at most `cap`), and whether the
/// input went on past `cap` (then `bytes` holds the first `cap` bytes).
#[derive(Debug)]
pub struct Capped {
    /// The bytes read, at most `cap`.
    pub bytes: Vec<u8>,
    /// True when the input had more than `cap` bytes.
    pub over: bool,
}

/// Read `r` to its end or to `cap` bytes, whichever comes first. The
/// buffer's capacity never exceeds `cap + 1 + 64 KiB`.
pub fn read_capped(mut r: impl Read, cap: u64) -> io::Result<Capped> {
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut bytes: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(Capped { bytes, over: false }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n > limit - bytes.len() {
            let keep = limit - bytes.len();
            bytes.extend_from_slice(&chunk[..keep]);
            return Ok(Capped { bytes, over: true });
        }
        if bytes.capacity() - bytes.len() < n {
            // Double, but never past the cap: a 4 GiB cap is never a 8 GiB buffer.
            let want = bytes.capacity().max(READ_CHUNK).saturating_mul(2).min(limit).max(bytes.len() + n);
            bytes.reserve_exact(want - bytes.len());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Read up to `n` bytes (fewer only at the end of the input).
pub fn read_head(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Read a whole file the user named, refusing more than `cap` bytes. The
/// error names the file and, when the cap is hit, the cap and what it is
/// for (`what`, e.g. "configuration file").
pub fn read_file(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>, String> {
    let name = path.display();
    let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let got = read_capped(file, cap).map_err(|e| format!("{name}: {e}"))?;
    if got.over {
        return Err(format!("{name}: larger than {cap} bytes, the cap of a {what}"));
    }
    Ok(got.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_stream_costs_the_cap_not_twice_it() {
        let cap = 1_000_000u64;
        let got = read_capped(io::repeat(0).take(10 * cap), cap).expect("reads");
        assert!(got.over);
        assert_eq!(got.bytes.len() as u64, cap);
        assert!(got.bytes.capacity() as u64 <= cap + 1 + READ_CHUNK as u64, "{}", got.bytes.capacity());
        let got = read_capped(io::repeat(7).take(cap), cap).expect("reads");
        assert!(!got.over, "exactly the cap is fine");
        assert_eq!(got.bytes.len() as u64, cap);
        let got = read_capped(&b"abc"[..], cap).expect("reads");
        assert_eq!((got.bytes.as_slice(), got.over), (&b"abc"[..], false));
    }

    #[test]
    fn dev_zero_is_refused_with_its_name_and_the_cap() {
        let e = read_file(Path::new("/dev/zero"), 4096, "configuration file").expect_err("endless");
        assert!(e.contains("/dev/zero") && e.contains("4096") && e.contains("configuration file"), "{e}");
    }
}
