//! Kea's memfile lease file for DHCPv4 (`kea-leases4.csv`), sans-IO: one
//! line in, one lease record out.
//!
//! The file is a CSV written by `kea-dhcp4` itself: a header line naming the
//! columns, then one line per lease change, appended (the newest line for an
//! address wins). Kea 2.2 writes `address, hwaddr, client_id,
//! valid_lifetime, expire, subnet_id, fqdn_fwd, fqdn_rev, hostname, state,
//! user_context`; later versions append `pool_id`. Columns are found by the
//! header, so an added column changes nothing. Kea never quotes: a comma
//! inside a value (a hostname, the user context) is written as `&#x2c`.
//!
//! Meaning of a line (Kea's lease states: 0 default, 1 declined, 2
//! expired-reclaimed):
//! * `valid_lifetime > 0`, state 0: the client holds `address` from the
//!   client's last transmission time `cltt = expire - valid_lifetime` until
//!   `expire` (a new lease or a renewal);
//! * `valid_lifetime == 0`: the lease was deleted — a DHCPRELEASE, or a
//!   reclaimed lease flushed — ending at `expire` (which is then the cltt);
//! * state 2: the lease expired and was reclaimed, ending at `expire`;
//! * state 1: the address was declined (a conflict on the wire).
//!
//! Which files to read, and in what order, around Kea's lease file cleanup
//! (LFC): see `sensor/src/bindings/mod.rs`.

use std::net::Ipv4Addr;

/// Longest line accepted (a lease line with a long user context).
pub const MAX_LINE: usize = 64 * 1024;

/// What a lease line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// Held from `from_s` to `until_s`.
    Active,
    /// Released or deleted at `until_s`.
    Released,
    /// Expired (reclaimed) at `until_s`.
    Expired,
    /// Declined by the client (address in use) at `from_s`.
    Declined,
}

/// One lease line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeaLease {
    /// The leased IPv4 address.
    pub address: Ipv4Addr,
    /// Lower-case `aa:bb:cc:dd:ee:ff`; `None` when Kea recorded none or it
    /// is not a MAC address.
    pub hwaddr: Option<String>,
    /// `client_id` column as written, if not empty.
    pub client_id: Option<String>,
    /// `hostname` column with Kea's `&#x2c` turned back into commas, if not empty.
    pub hostname: Option<String>,
    /// Kea's `subnet_id`, if the column is there and not empty.
    pub subnet_id: Option<u32>,
    /// What the line says happened.
    pub kind: LeaseKind,
    /// State 2 (expired-reclaimed) on the line: with `Released`, the flush
    /// of a lease that had already expired.
    pub reclaimed: bool,
    /// Start: the client's last transmission time, `expire - valid_lifetime`,
    /// seconds since the Unix epoch.
    pub from_s: i64,
    /// End: `expire` (for a declined lease, equal to `from_s`), seconds since the Unix epoch.
    pub until_s: i64,
}

/// Why a line gave no lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The header line (read, columns learnt).
    Header,
    /// An empty or whitespace-only line.
    Blank,
    /// No header seen yet, or a required column is missing from it.
    NoHeader,
    /// Too long, or a field that does not parse.
    Malformed,
}

/// Reader of one lease file: learns the columns from its header.
#[derive(Debug, Default, Clone)]
pub struct KeaReader {
    cols: Option<Cols>,
}

#[derive(Debug, Clone, Copy)]
struct Cols {
    address: usize,
    hwaddr: Option<usize>,
    client_id: Option<usize>,
    valid_lifetime: usize,
    expire: usize,
    subnet_id: Option<usize>,
    hostname: Option<usize>,
    state: Option<usize>,
}

fn unescape(s: &str) -> String {
    s.replace("&#x2c", ",")
}

impl KeaReader {
    /// A reader that has seen no header yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the header (a new file starts).
    pub fn reset(&mut self) {
        self.cols = None;
    }

    /// Read one line (without its newline).
    pub fn push_line(&mut self, line: &str) -> Result<KeaLease, Skip> {
        if line.len() > MAX_LINE {
            return Err(Skip::Malformed);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Err(Skip::Blank);
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.first().is_some_and(|c| c.trim() == "address") {
            let pos = |n: &str| f.iter().position(|c| c.trim() == n);
            self.cols = match (pos("address"), pos("valid_lifetime"), pos("expire")) {
                (Some(address), Some(valid_lifetime), Some(expire)) => Some(Cols {
                    address,
                    hwaddr: pos("hwaddr"),
                    client_id: pos("client_id"),
                    valid_lifetime,
                    expire,
                    subnet_id: pos("subnet_id"),
                    hostname: pos("hostname"),
                    state: pos("state"),
                }),
                _ => None,
            };
            return if self.cols.is_some() { Err(Skip::Header) } else { Err(Skip::NoHeader) };
        }
        let Some(c) = self.cols else {
            return Err(Skip::NoHeader);
        };
        let get = |i: usize| f.get(i).map(|s| s.trim()).ok_or(Skip::Malformed);
        let opt = |i: Option<usize>| i.and_then(|i| f.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty());
        let address: Ipv4Addr = get(c.address)?.parse().map_err(|_| Skip::Malformed)?;
        let valid: i64 = get(c.valid_lifetime)?.parse().map_err(|_| Skip::Malformed)?;
        let expire: i64 = get(c.expire)?.parse().map_err(|_| Skip::Malformed)?;
        if !(0..=u32::MAX as i64).contains(&valid) || !(0..=(1i64 << 40)).contains(&expire) {
            return Err(Skip::Malformed);
        }
        let state: u32 = match opt(c.state) {
            Some(s) => s.parse().map_err(|_| Skip::Malformed)?,
            None => 0,
        };
        let subnet_id = match opt(c.subnet_id) {
            Some(s) => Some(s.parse().map_err(|_| Skip::Malformed)?),
            None => None,
        };
        let kind = if valid == 0 {
            LeaseKind::Released
        } else {
            match state {
                1 => LeaseKind::Declined,
                2 => LeaseKind::Expired,
                _ => LeaseKind::Active,
            }
        };
        let from_s = expire - valid;
        let until_s = match kind {
            LeaseKind::Declined => from_s,
            _ => expire,
        };
        Ok(KeaLease {
            address,
            hwaddr: opt(c.hwaddr).and_then(super::inventory::normalize_mac),
            client_id: opt(c.client_id).map(str::to_owned),
            hostname: opt(c.hostname).map(unescape),
            subnet_id,
            kind,
            reclaimed: state == 2,
            from_s,
            until_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";

    #[test]
    fn kea_lines_by_header() {
        let mut r = KeaReader::new();
        assert_eq!(r.push_line("192.0.2.5,aa:bb:cc:dd:ee:ff,,4000,1787004000,1,0,0,,0,"), Err(Skip::NoHeader));
        assert_eq!(r.push_line(HEADER), Err(Skip::Header));
        let l = r.push_line("192.0.2.5,AA:BB:CC:DD:EE:0F,01:aa:bb,4000,1787004000,1,0,0,host&#x2cname,0,").unwrap();
        assert_eq!(l.address, Ipv4Addr::new(192, 0, 2, 5));
        assert_eq!(l.hwaddr.as_deref(), Some("aa:bb:cc:dd:ee:0f"));
        assert_eq!(l.hostname.as_deref(), Some("host,name"));
        assert_eq!((l.kind, l.from_s, l.until_s), (LeaseKind::Active, 1_787_000_000, 1_787_004_000));
        let l = r.push_line("192.0.2.5,aa:bb:cc:dd:ee:0f,,0,1787001000,1,0,0,,0,").unwrap();
        assert_eq!((l.kind, l.until_s), (LeaseKind::Released, 1_787_001_000));
        let l = r.push_line("192.0.2.5,aa:bb:cc:dd:ee:0f,,4000,1787004000,1,0,0,,2,").unwrap();
        assert_eq!((l.kind, l.until_s), (LeaseKind::Expired, 1_787_004_000));
        let l = r.push_line("192.0.2.5,,,4000,1787004000,1,0,0,,1,").unwrap();
        assert_eq!((l.kind, l.hwaddr), (LeaseKind::Declined, None));
        assert_eq!(r.push_line("not-an-ip,,,4000,1,1,0,0,,0,"), Err(Skip::Malformed));
        assert_eq!(r.push_line("192.0.2.5,,,-1,1,1,0,0,,0,"), Err(Skip::Malformed));
        assert_eq!(r.push_line("192.0.2.5"), Err(Skip::Malformed));
        // A later version's extra column (pool_id) changes nothing.
        let mut r = KeaReader::new();
        r.push_line(&format!("{HEADER},pool_id")).unwrap_err();
        assert_eq!(r.push_line("192.0.2.9,aa:bb:cc:dd:ee:01,,60,1000,3,0,0,,0,,0").unwrap().from_s, 940);
    }

    proptest::proptest! {
        #[test]
        fn kea_any_line_never_panics(s in "\\PC{0,200}") {
            let mut r = KeaReader::new();
            let _ = r.push_line(HEADER);
            let _ = r.push_line(&s);
        }
    }
}
