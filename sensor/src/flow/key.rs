//! The flow key: a flow's two endpoints in a fixed order (the lower one
//! first), its protocol and its network context (the VLAN ids), so that
//! both directions of a flow find the same entry.

use std::net::IpAddr;

use pinwatch_parsers::decode::Decoded;

/// Normalised flow key: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Network context from the decoder ([`Decoded::context`]: the VLAN ids folded), 0 without VLANs.
    pub context: u64,
    /// IANA protocol number: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// The lower endpoint (address, port), as the derived `Ord` of the pair orders them.
    pub lo: (IpAddr, u16),
    /// The other endpoint.
    pub hi: (IpAddr, u16),
}

impl FlowKey {
    /// The key of a decoded packet's flow; both directions give the same key.
    pub fn new(d: &Decoded<'_>) -> Self {
        let a = (d.src, d.sport);
        let b = (d.dst, d.dport);
        let (lo, hi) = if endpoint_le(a, b) { (a, b) } else { (b, a) };
        FlowKey { context: d.context, proto: d.proto, lo, hi }
    }
}

/// `a <= b` as the derived `Ord` of `(IpAddr, u16)` has it (IPv4 before
/// IPv6, then address, then port), in integer compares: the generic tuple
/// and enum comparison was a visible share of every packet's cost.
#[inline(always)]
pub(crate) fn endpoint_le(a: (IpAddr, u16), b: (IpAddr, u16)) -> bool {
    let addr = |ip: IpAddr| match ip {
        IpAddr::V4(v) => (0u8, u128::from(u32::from(v))),
        IpAddr::V6(v) => (1u8, u128::from(v)),
    };
    let ((fa, xa), (fb, xb)) = (addr(a.0), addr(b.0));
    (fa, xa, a.1) <= (fb, xb, b.1)
}

/// Does the packet travel lo -> hi?
pub(crate) fn from_lo(key: &FlowKey, d: &Decoded<'_>) -> bool {
    (d.src, d.sport) == key.lo && (d.dst, d.dport) == key.hi
}
