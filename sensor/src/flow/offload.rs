//! Kernel-side bypass: the hooks a [`super::FlowTable`] calls so that, once
//! a TCP flow has nothing left to read ([`super::Flow::bypass`]), its later
//! packets are dropped in the kernel before they reach the capture ring,
//! and only counted there (`pinwatch live --kernel-bypass`, an eBPF socket
//! filter: `crate::live::ebpf_bypass`).
//!
//! A flow is offloaded once its verdict is settled: its parse is over (or
//! it is not TLS), or the client has sent application data after the
//! handshake (the moment `crate::flow::decision` takes the verdict as
//! known). Then, per direction, the kernel drops what the table would only
//! have counted: every packet of a direction whose parser is done
//! ([`DROP_ALL`]), or only the packets without payload of a direction whose
//! parser still reads records ([`DROP_EMPTY`]: its ACKs), so that a late
//! alert such as a TLS 1.2 close_notify is still read.
//!
//! The filter always passes SYN, FIN and RST, so the table sees how and
//! when the flow closes (and who closed first) as before; what the kernel
//! counted is added to the flow's counters when the flow ends, and an
//! offloaded flow the kernel saw lately is not timed out.
//!
//! What changes: the ACKs the kernel drops are not looked at, so capture
//! loss at the end of the other direction's bytes (a trailing hole, which
//! withholds a rejection claim) is noticed at the close (the FIN's or RST's
//! ACK), not at the next ACK. Once the client has sent data after the
//! handshake no rejection is claimed on such a hole anyway.

use super::FlowKey;

/// What the kernel counted for one direction of an offloaded flow.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirSeen {
    /// Packets.
    pub pkts: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Their TCP payload bytes.
    pub payload: u64,
}

/// What the kernel counted for an offloaded flow since it was offloaded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelSeen {
    /// Packets sent by the key's `lo` endpoint.
    pub from_lo: DirSeen,
    /// Packets sent by the key's `hi` endpoint.
    pub from_hi: DirSeen,
    /// Capture time (ns since the Unix epoch) of the latest packet the
    /// kernel dropped for this flow, if any.
    pub last_ts: Option<i64>,
}

/// Mode of a direction: drop its packets without payload (its ACKs).
pub const DROP_EMPTY: u8 = 1;
/// Mode of a direction: drop all its packets (but SYN, FIN and RST).
pub const DROP_ALL: u8 = 2;

/// The kernel side of the bypass, as the flow table sees it.
pub trait Offload: Send {
    /// Ask the kernel to drop this TCP flow's packets from now on (except
    /// SYN, FIN and RST), per direction `[from lo, from hi]` as the mode
    /// says ([`DROP_EMPTY`], [`DROP_ALL`], 0: none). False when it was not
    /// taken (table full, not TCP over IPv4/IPv6, an error): the flow's
    /// packets keep coming.
    fn offload(&mut self, key: &FlowKey, modes: [u8; 2]) -> bool;
    /// What the kernel counted for an offloaded flow; with `remove`, the
    /// flow is also taken out of the kernel's table (it ended).
    fn seen(&mut self, key: &FlowKey, remove: bool) -> Option<KernelSeen>;
}
