//! AF_PACKET TPACKET_V3 sockets for `pinwatch live` (the default backend on
//! Linux), through the `netring` crate: one memory-mapped ring per worker,
//! the workers' sockets in one `PACKET_FANOUT` group (see `docs/live.md`,
//! Scaling).

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{bail, Context};
use netring::{Capture, FanoutFlags, FanoutMode};

use super::fanout_cbpf;

/// How packets are shared out over the sockets of a fanout group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fanout {
    /// The kernel's flow hash (`PACKET_FANOUT_HASH`): both directions of a
    /// flow on one socket; different flows of one client may be on
    /// different sockets.
    Hash,
    /// Every packet of one client on one socket (a classic-BPF program,
    /// `PACKET_FANOUT_CBPF`, see `fanout_cbpf`), so that findings joining
    /// several flows of a client work across processes.
    Client,
}

/// Ring geometry: blocks of this size; a block is handed over when full or
/// after [`BLOCK_TIMEOUT_MS`].
const BLOCK_SIZE: usize = 1 << 20;
/// The kernel's block timeout, ms: a partly filled block is handed to the
/// worker after this long.
pub const BLOCK_TIMEOUT_MS: u32 = 100;
/// How long a worker waits for a block before it looks at the clock.
pub const POLL: Duration = Duration::from_millis(100);

/// The LINKTYPE of what an AF_PACKET `SOCK_RAW` socket delivers on an
/// interface of ARPHRD type `arphrd` (`/sys/class/net/IF/type`).
pub fn linktype_of_arphrd(arphrd: u32) -> Option<u32> {
    match arphrd {
        // Ethernet, loopback (an Ethernet header of zeros).
        1 | 772 => Some(1),
        // No link header: tun, WireGuard, IP-in-IP, SIT, GRE.
        65534 | 768 | 776 | 778 => Some(101),
        _ => None,
    }
}

/// The interface's LINKTYPE, from its ARPHRD type.
pub fn interface_linktype(name: &str) -> anyhow::Result<u32> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("`{name}` is not an interface name");
    }
    let path = format!("/sys/class/net/{name}/type");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("cannot capture on {name}: no such interface (`ip link` lists them)")
        } else {
            anyhow::anyhow!("cannot capture on {name}: {path}: {e}")
        }
    })?;
    let t: u32 = text.trim().parse().with_context(|| format!("{path}: `{}`", text.trim()))?;
    linktype_of_arphrd(t)
        .with_context(|| format!("{name}: link type {t} (ARPHRD) is not one the AF_PACKET backend decodes; use --backend pcap"))
}

/// What a worker's socket is opened with.
#[derive(Debug, Clone)]
pub struct RingSpec {
    /// The interface to capture on.
    pub interface: String,
    /// Bytes of the ring (rounded down to whole blocks, at least two).
    pub ring_bytes: u64,
    /// Put the interface in promiscuous mode.
    pub promisc: bool,
    /// Join this fanout group (none for a single socket of its own).
    pub group: Option<(u16, Fanout)>,
}

/// Open one socket: ring, bind, promiscuous mode, fanout.
pub fn open(spec: &RingSpec) -> anyhow::Result<Capture> {
    let blocks = usize::try_from(spec.ring_bytes / BLOCK_SIZE as u64).unwrap_or(usize::MAX).clamp(2, 1 << 16);
    let mut b = Capture::builder()
        .interface(&spec.interface)
        .block_size(BLOCK_SIZE)
        .block_count(blocks)
        .frame_size(2048)
        .block_timeout_ms(BLOCK_TIMEOUT_MS)
        .fill_rxhash(false)
        .promiscuous(spec.promisc)
        .poll_timeout(POLL);
    if let Some((group, Fanout::Hash)) = spec.group {
        // DEFRAG: fragments are reassembled before hashing, so they follow their flow.
        b = b.fanout(FanoutMode::Hash, group).fanout_flags(FanoutFlags::DEFRAG);
    }
    let cap = b.build().map_err(|e| {
        let msg = e.to_string();
        let hint = match e {
            netring::Error::PermissionDenied => " (needs root or CAP_NET_RAW)",
            netring::Error::InterfaceNotFound(_) => " (no such interface; `ip link` lists them)",
            _ => "",
        };
        anyhow::anyhow!("cannot capture on {}: {msg}{hint}", spec.interface)
    })?;
    if let Some((group, Fanout::Client)) = spec.group {
        fanout_cbpf::join(cap.as_fd(), group, &fanout_cbpf::client_program())
            .with_context(|| format!("{}: joining fanout group {group} (client)", spec.interface))?;
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types() {
        assert_eq!(linktype_of_arphrd(1), Some(1));
        assert_eq!(linktype_of_arphrd(65534), Some(101));
        assert_eq!(linktype_of_arphrd(824), None);
        assert!(interface_linktype("../etc").is_err());
        let e = interface_linktype("pwnosuchif0").expect_err("missing").to_string();
        assert!(e.contains("no such interface"), "{e}");
    }
}
