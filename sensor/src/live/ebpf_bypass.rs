//! `--kernel-bypass`: an eBPF socket filter on every worker's AF_PACKET
//! socket drops the packets of the flows the sensor has finished reading,
//! before they are copied into the ring, and counts them in a map the
//! sensor reads back when the flow ends (as Suricata's AF_PACKET eBPF
//! bypass does). The flow table decides what is offloaded
//! ([`crate::flow::offload`]): a TCP flow whose handshake parse is over in
//! both directions and that holds no buffer.
//!
//! The program (hand-assembled below, so that no BPF toolchain is needed to
//! build pinwatch; `tests` load it into the kernel, whose verifier checks
//! it) reads the packet with the classic `LD_ABS`/`LD_IND` loads relative
//! to the network header (`SKF_NET_OFF`), so it does not depend on the link
//! layer. For TCP over IPv4 (not a fragment) or IPv6 (TCP as the first
//! next header):
//!
//! - SYN, FIN or RST set: the packet goes to the ring (the sensor keeps the
//!   flow's close state, and a new connection on the tuple is seen);
//! - else it builds the key (family, source and destination address and
//!   port, as the kernel loaded them: host-order words) and looks up the
//!   direction's drop-all entry (family word + 0x100), then, for a packet
//!   without TCP payload, its drop-empty entry; a hit adds 1 packet,
//!   `skb->len` bytes and the TCP payload length to the entry, stores
//!   `bpf_ktime_get_ns()` and drops the packet (returns 0);
//! - everything else goes to the ring (returns `0xffffffff`).
//!
//! One map per process, shared by its workers (a flow's packets reach one
//! socket of the fanout group, so one worker), with up to four entries per
//! flow (per direction, drop-empty and drop-all). It is a hash of at most
//! `4 × --kernel-bypass-flows` entries, allocated as they are used: when it
//! is full, a direction is not offloaded (counted) and its packets keep
//! coming to user space, where the table skips them as before.
//!
//! What the filter does not see: VLAN ids (two flows that differ only in
//! VLAN share an entry), tunnels (flows decoded inside a tunnel are never
//! offloaded: the filter sees the outer header).
//!
//! The bpf(2) commands used (`BPF_MAP_CREATE`, `BPF_PROG_LOAD`, map lookup,
//! update and delete) and `SO_ATTACH_BPF` have no safe wrapper in our
//! dependencies (aya and libbpf-rs load ELF objects made by a BPF
//! compiler), so this module, like [`super::fanout_cbpf`], holds `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;

use crate::flow::offload::{DirSeen, KernelSeen, Offload, DROP_ALL, DROP_EMPTY};
use crate::flow::FlowKey;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// `SKF_NET_OFF`: loads relative to the network header.
const NET: i32 = -0x10_0000;
/// Bytes of a key: family (u32), source address (4 × u32), destination
/// address (4 × u32), source port (u16), destination port (u16).
pub const KEY_SIZE: usize = 40;
/// Bytes of a value: packets, bytes, payload bytes, last `ktime` ns (u64 each).
pub const VALUE_SIZE: usize = 32;
/// Added to a key's family word: the entry drops all packets of its
/// direction ([`DROP_ALL`]); without it, only those without payload
/// ([`DROP_EMPTY`]). A direction moves from the one to the other by adding
/// an entry, so no entry the kernel counts in is ever rewritten.
const ALL: i32 = 0x100;

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const MOV32_K: u8 = 0xb4;
const ADD64_K: u8 = 0x07;
const SUB64_X: u8 = 0x1f;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const RSH64_K: u8 = 0x77;
const LD_ABS_B: u8 = 0x30;
const LD_ABS_H: u8 = 0x28;
const LD_ABS_W: u8 = 0x20;
const LD_IND_B: u8 = 0x50;
const LD_IND_H: u8 = 0x48;
const LD_IMM64: u8 = 0x18;
const LDX_W: u8 = 0x61;
const ST_DW: u8 = 0x7a;
const ST_W: u8 = 0x62;
const STX_DW: u8 = 0x7b;
const STX_W: u8 = 0x63;
const STX_H: u8 = 0x6b;
const ATOMIC_ADD_DW: u8 = 0xdb;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JSET_K: u8 = 0x45;
const JSGE_K: u8 = 0x75;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// `BPF_PSEUDO_MAP_FD`: the `LD_IMM64` immediate is a map's fd.
const PSEUDO_MAP_FD: u8 = 1;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_KTIME_GET_NS: i32 = 5;
/// TCP FIN | SYN | RST.
const FIN_SYN_RST: i32 = 0x07;

/// Jump targets while assembling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    V4,
    V6,
    Lookup,
    NonNegative,
    Count,
    Pass,
}

enum Item {
    Label(L),
    Op(Insn),
    /// A jump: opcode, register, immediate, target.
    J(u8, u8, i32, L),
}

fn op(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Item {
    Item::Op(Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm })
}

// Registers: r0 loads and results, r1-r2 helper arguments, r6 the skb
// (the legacy loads read it), r7 the entry found, r8 the IPv4 header
// length, r9 the TCP payload length; the key at fp-40.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const FP: u8 = 10;

/// The filter program, for the map whose fd is `map_fd`.
pub fn program(map_fd: i32) -> Vec<Insn> {
    use Item::J;
    let mut items = vec![
        op(MOV64_X, R6, R1, 0, 0),
        op(LD_ABS_B, 0, 0, 0, NET),
        op(RSH64_K, R0, 0, 0, 4),
        J(JEQ_K, R0, 4, L::V4),
        J(JEQ_K, R0, 6, L::V6),
        J(JA, 0, 0, L::Pass),
    ];
    items.extend(ipv4_key());
    items.extend(ipv6_key());
    items.extend(count_and_drop(map_fd));
    assemble(&items)
}

/// Zero the key (the helper reads all 40 bytes) and set its family word.
fn new_key(family: i32) -> Vec<Item> {
    let mut items: Vec<Item> = (0..5).map(|k| op(ST_DW, FP, 0, -40 + 8 * k, 0)).collect();
    items.push(op(ST_W, FP, 0, -40, family | ALL));
    items
}

/// IPv4: TCP, not a fragment, no SYN/FIN/RST; the key and r9.
fn ipv4_key() -> Vec<Item> {
    use Item::{Label, J};
    let mut items = vec![
        Label(L::V4),
        op(LD_ABS_B, 0, 0, 0, NET + 9),
        J(JNE_K, R0, 6, L::Pass),
        op(LD_ABS_H, 0, 0, 0, NET + 6),
        J(JSET_K, R0, 0x3fff, L::Pass),
        op(LD_ABS_B, 0, 0, 0, NET),
        op(AND64_K, R0, 0, 0, 0x0f),
        op(LSH64_K, R0, 0, 0, 2),
        op(MOV64_X, R8, R0, 0, 0),
        op(LD_IND_B, 0, R8, 0, NET + 13),
        J(JSET_K, R0, FIN_SYN_RST, L::Pass),
    ];
    items.extend(new_key(4));
    items.extend([
        op(LD_ABS_W, 0, 0, 0, NET + 12),
        op(STX_W, FP, R0, -36, 0),
        op(LD_ABS_W, 0, 0, 0, NET + 16),
        op(STX_W, FP, R0, -20, 0),
        op(LD_IND_H, 0, R8, 0, NET),
        op(STX_H, FP, R0, -4, 0),
        op(LD_IND_H, 0, R8, 0, NET + 2),
        op(STX_H, FP, R0, -2, 0),
        // Payload: total length - IP header - TCP header.
        op(LD_ABS_H, 0, 0, 0, NET + 2),
        op(MOV64_X, R9, R0, 0, 0),
        op(SUB64_X, R9, R8, 0, 0),
        op(LD_IND_B, 0, R8, 0, NET + 12),
        op(RSH64_K, R0, 0, 0, 4),
        op(LSH64_K, R0, 0, 0, 2),
        op(SUB64_X, R9, R0, 0, 0),
        J(JA, 0, 0, L::Lookup),
    ]);
    items
}

/// IPv6: TCP right after the fixed header, no SYN/FIN/RST; the key and r9.
fn ipv6_key() -> Vec<Item> {
    use Item::{Label, J};
    let mut items = vec![
        Label(L::V6),
        op(LD_ABS_B, 0, 0, 0, NET + 6),
        J(JNE_K, R0, 6, L::Pass),
        op(LD_ABS_B, 0, 0, 0, NET + 53),
        J(JSET_K, R0, FIN_SYN_RST, L::Pass),
    ];
    items.extend(new_key(6));
    for k in 0..8i16 {
        items.push(op(LD_ABS_W, 0, 0, 0, NET + 8 + 4 * i32::from(k)));
        items.push(op(STX_W, FP, R0, -36 + 4 * k, 0));
    }
    items.extend([
        op(LD_ABS_H, 0, 0, 0, NET + 40),
        op(STX_H, FP, R0, -4, 0),
        op(LD_ABS_H, 0, 0, 0, NET + 42),
        op(STX_H, FP, R0, -2, 0),
        op(LD_ABS_H, 0, 0, 0, NET + 4),
        op(MOV64_X, R9, R0, 0, 0),
        op(LD_ABS_B, 0, 0, 0, NET + 52),
        op(RSH64_K, R0, 0, 0, 4),
        op(LSH64_K, R0, 0, 0, 2),
        op(SUB64_X, R9, R0, 0, 0),
    ]);
    items
}

/// `r1 = map_lookup_elem(map, fp-40)`, into r7 and r0.
fn lookup(map_fd: i32) -> [Item; 6] {
    [
        op(LD_IMM64, R1, PSEUDO_MAP_FD, 0, map_fd),
        op(0, 0, 0, 0, 0),
        op(MOV64_X, R2, FP, 0, 0),
        op(ADD64_K, R2, 0, 0, -40),
        op(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
        op(MOV64_X, R7, R0, 0, 0),
    ]
}

/// Look the key up: the drop-all entry, else (no payload) the drop-empty
/// one; on a hit count the packet and drop it, else pass it whole.
fn count_and_drop(map_fd: i32) -> Vec<Item> {
    use Item::{Label, J};
    // A payload length below 0 (an IPv4 total length of 0, as a >64 KiB
    // GRO packet has with BIG TCP, or a bad header): count it as 1 byte, so
    // that a drop-empty entry never takes a packet that may carry data.
    let mut items = vec![Label(L::Lookup), J(JSGE_K, R9, 0, L::NonNegative), op(MOV64_K, R9, 0, 0, 1), Label(L::NonNegative)];
    items.extend(lookup(map_fd));
    items.extend([
        J(JNE_K, R0, 0, L::Count),
        J(JNE_K, R9, 0, L::Pass),
        op(LDX_W, R1, FP, -40, 0),
        op(AND64_K, R1, 0, 0, 0xff),
        op(STX_W, FP, R1, -40, 0),
    ]);
    items.extend(lookup(map_fd));
    items.extend([
        J(JEQ_K, R0, 0, L::Pass),
        Label(L::Count),
        op(MOV64_K, R1, 0, 0, 1),
        op(ATOMIC_ADD_DW, R7, R1, 0, 0),
        op(LDX_W, R1, R6, 0, 0), // skb->len
        op(ATOMIC_ADD_DW, R7, R1, 8, 0),
        op(ATOMIC_ADD_DW, R7, R9, 16, 0),
        op(CALL, 0, 0, 0, HELPER_KTIME_GET_NS),
        op(STX_DW, R7, R0, 24, 0),
        op(MOV64_K, R0, 0, 0, 0),
        op(EXIT, 0, 0, 0, 0),
        Label(L::Pass),
        op(MOV32_K, R0, 0, 0, -1),
        op(EXIT, 0, 0, 0, 0),
    ]);
    items
}

fn assemble(items: &[Item]) -> Vec<Insn> {
    let labels = super::fanout_cbpf::Labels::new(items, |it| match it {
        Item::Label(l) => Some(*l),
        _ => None,
    });
    let mut out = Vec::with_capacity(labels.len);
    for it in items {
        match *it {
            Item::Label(_) => {}
            Item::Op(i) => out.push(i),
            Item::J(code, dst, imm, l) => {
                let to = labels.of(l);
                let off = i16::try_from(to as isize - (out.len() as isize + 1)).expect("short jump");
                out.push(Insn { code, regs: dst & 0x0f, off, imm });
            }
        }
    }
    out
}

/// The words of an address as the program's loads leave them in the key
/// (each 32-bit word of the address in network order, loaded into a host
/// integer and stored in host order).
fn words(ip: IpAddr) -> (u32, [u32; 4]) {
    match ip {
        IpAddr::V4(a) => (4, [u32::from_be_bytes(a.octets()), 0, 0, 0]),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            (6, [w(0), w(4), w(8), w(12)])
        }
    }
}

/// The map key of packets from `src` to `dst`.
pub fn key_bytes(src: (IpAddr, u16), dst: (IpAddr, u16)) -> Option<[u8; KEY_SIZE]> {
    let (f, s) = words(src.0);
    let (g, d) = words(dst.0);
    if f != g {
        return None;
    }
    let mut k = [0u8; KEY_SIZE];
    k[0..4].copy_from_slice(&f.to_ne_bytes());
    for i in 0..4 {
        k[4 + 4 * i..8 + 4 * i].copy_from_slice(&s[i].to_ne_bytes());
        k[20 + 4 * i..24 + 4 * i].copy_from_slice(&d[i].to_ne_bytes());
    }
    k[36..38].copy_from_slice(&src.1.to_ne_bytes());
    k[38..40].copy_from_slice(&dst.1.to_ne_bytes());
    Some(k)
}

// bpf(2) commands and types.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `SO_ATTACH_BPF` (asm-generic/socket.h).
const SO_ATTACH_BPF: libc::c_int = 50;

/// A `union bpf_attr`, written field by field at the kernel's offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(mut self, at: usize, v: u32) -> Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(mut self, at: usize, name: &str) -> Self {
        let b = &name.as_bytes()[..name.len().min(15)];
        self.0[at..at + b.len()].copy_from_slice(b);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a 128-byte buffer that outlives the call; every
    // pointer written into it points to memory that outlives it too.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_of(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned no fd"))?;
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Counters of the kernel bypass, for the stats records.
#[derive(Debug, Default)]
pub struct BypassCounters {
    offloaded: AtomicU64,
    refused: AtomicU64,
    ended: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

/// `live.kernel_bypass` in a stats record.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BypassStats {
    /// `flows_max`: flows the kernel's table holds at most.
    pub flows_max: u64,
    /// `offloaded`: flow directions handed to the kernel (a flow's two
    /// directions may be handed over at different times, or one only).
    pub offloaded: u64,
    /// `refused`: flow directions not handed over because the kernel's
    /// table was full.
    pub refused: u64,
    /// `active`: flow directions in the kernel's table now.
    pub active: u64,
    /// `packets`: packets the kernel dropped (and counted) for flows that ended.
    pub packets: u64,
    /// `bytes`: their bytes on the wire.
    pub bytes: u64,
    /// `errors`: map operations that failed for another reason.
    pub errors: u64,
    /// `error`: why the kernel bypass is off, when it was asked for and the
    /// kernel refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The program and map of one process, attached to its workers' sockets.
pub struct KernelBypass {
    map: Arc<OwnedFd>,
    prog: OwnedFd,
    flows_max: u32,
    counters: Arc<BypassCounters>,
}

impl KernelBypass {
    /// Create the map (at most `4 × flows_max` entries) and load the program.
    pub fn new(flows_max: u32) -> io::Result<KernelBypass> {
        let entries = flows_max.max(1).saturating_mul(4);
        let mut attr = Attr::new()
            .u32(0, BPF_MAP_TYPE_HASH)
            .u32(4, KEY_SIZE as u32)
            .u32(8, VALUE_SIZE as u32)
            .u32(12, entries)
            .u32(16, BPF_F_NO_PREALLOC)
            .name(28, "pinwatch_bypass");
        let map = fd_of(bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| io::Error::new(e.kind(), format!("creating the bypass map: {e}")))?)?;
        let insns = program(map.as_raw_fd());
        let license = b"Dual MIT/GPL\0";
        let load = |log: &mut Vec<u8>| {
            let mut attr = Attr::new()
                .u32(0, BPF_PROG_TYPE_SOCKET_FILTER)
                .u32(4, insns.len() as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .u32(24, u32::from(!log.is_empty()))
                .u32(28, log.len() as u32)
                .u64(32, if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 })
                .name(48, "pinwatch_bypass");
            bpf(BPF_PROG_LOAD, &mut attr)
        };
        let prog = match load(&mut Vec::new()) {
            Ok(fd) => fd_of(fd)?,
            Err(e) => {
                // Once more with the verifier's log, to say why.
                let mut log = vec![0u8; 64 * 1024];
                let _ = load(&mut log);
                let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
                let tail: String = text.lines().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
                return Err(io::Error::new(
                    e.kind(),
                    format!("loading the bypass program: {e}{}", if tail.is_empty() { String::new() } else { format!(" ({tail})") }),
                ));
            }
        };
        Ok(KernelBypass { map: Arc::new(map), prog, flows_max, counters: Arc::default() })
    }

    /// Put the program on a socket (`SO_ATTACH_BPF`).
    pub fn attach(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        let fd: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: a valid socket fd, and a pointer to a c_int that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_BPF,
                (&fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The flow table's side of it, for one worker.
    pub fn offload(&self) -> Box<dyn Offload> {
        Box::new(MapHandle { map: Arc::clone(&self.map), counters: Arc::clone(&self.counters) })
    }

    /// The counters, for the stats records.
    pub fn stats(&self) -> BypassStats {
        let c = &self.counters;
        let (offloaded, ended) = (c.offloaded.load(Relaxed), c.ended.load(Relaxed));
        BypassStats {
            flows_max: u64::from(self.flows_max),
            offloaded,
            refused: c.refused.load(Relaxed),
            active: offloaded.saturating_sub(ended),
            packets: c.packets.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            errors: c.errors.load(Relaxed),
            error: None,
        }
    }
}

/// One worker's handle on the map.
struct MapHandle {
    map: Arc<OwnedFd>,
    counters: Arc<BypassCounters>,
}

impl MapHandle {
    fn elem(&self, cmd: libc::c_long, key: &[u8; KEY_SIZE], value: Option<&mut [u8; VALUE_SIZE]>, flags: u64) -> io::Result<()> {
        let vp = value.map_or(0, |v| v.as_mut_ptr() as u64);
        let mut attr = Attr::new().u32(0, self.map.as_raw_fd() as u32).u64(8, key.as_ptr() as u64).u64(16, vp).u64(24, flags);
        bpf(cmd, &mut attr).map(|_| ())
    }

    /// The entry of one direction: counts and last ktime; removed with `remove`.
    fn take(&self, key: &[u8; KEY_SIZE], remove: bool) -> Option<(DirSeen, u64)> {
        let mut v = [0u8; VALUE_SIZE];
        if let Err(e) = self.elem(BPF_MAP_LOOKUP_ELEM, key, Some(&mut v), 0) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                self.counters.errors.fetch_add(1, Relaxed);
            }
            return None;
        }
        if remove {
            if self.elem(BPF_MAP_DELETE_ELEM, key, None, 0).is_err() {
                self.counters.errors.fetch_add(1, Relaxed);
            }
            self.counters.ended.fetch_add(1, Relaxed);
        }
        let w = |i: usize| u64::from_ne_bytes(v[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
        Some((DirSeen { pkts: w(0), bytes: w(1), payload: w(2) }, w(3)))
    }
}

/// `CLOCK_MONOTONIC` (the clock of `bpf_ktime_get_ns`) and `CLOCK_REALTIME`
/// (the clock of the ring's time stamps) now, ns.
#[allow(clippy::useless_conversion)] // time_t and c_long are not i64 on every target
fn clocks() -> (i64, i64) {
    let read = |id| {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid clock id and a timespec that outlives the call.
        unsafe { libc::clock_gettime(id, &mut t) };
        i64::from(t.tv_sec).saturating_mul(1_000_000_000).saturating_add(i64::from(t.tv_nsec))
    };
    (read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_REALTIME))
}

/// `BPF_NOEXIST`: an update that only adds.
const BPF_NOEXIST: u64 = 1;
/// `BPF_F_NO_PREALLOC`: the map's entries are allocated as they are used.
const BPF_F_NO_PREALLOC: u32 = 1;

/// The key of a direction's drop-all entry, from its drop-empty one.
fn all_key(mut k: [u8; KEY_SIZE]) -> [u8; KEY_SIZE] {
    let family = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]) | ALL as u32;
    k[0..4].copy_from_slice(&family.to_ne_bytes());
    k
}

impl Offload for MapHandle {
    fn offload(&mut self, key: &FlowKey, modes: [u8; 2]) -> bool {
        if key.proto != 6 {
            return false;
        }
        let (Some(a), Some(b)) = (key_bytes(key.lo, key.hi), key_bytes(key.hi, key.lo)) else { return false };
        let mut added: Vec<[u8; KEY_SIZE]> = Vec::with_capacity(2);
        for (k, mode) in [(a, modes[0]), (b, modes[1])] {
            let k = match mode {
                DROP_EMPTY => k,
                DROP_ALL => all_key(k),
                _ => continue,
            };
            let mut zero = [0u8; VALUE_SIZE];
            match self.elem(BPF_MAP_UPDATE_ELEM, &k, Some(&mut zero), BPF_NOEXIST) {
                Ok(()) => added.push(k),
                // (Already there: its counts are kept.)
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    // All or nothing: the table then asks again later.
                    for k in &added {
                        let _ = self.elem(BPF_MAP_DELETE_ELEM, k, None, 0);
                    }
                    let full = matches!(e.raw_os_error(), Some(libc::E2BIG | libc::ENOMEM | libc::ENOSPC));
                    (if full { &self.counters.refused } else { &self.counters.errors }).fetch_add(1, Relaxed);
                    return false;
                }
            }
        }
        self.counters.offloaded.fetch_add(added.len() as u64, Relaxed);
        !added.is_empty()
    }

    fn seen(&mut self, key: &FlowKey, remove: bool) -> Option<KernelSeen> {
        let mut dirs = [(DirSeen::default(), 0u64); 2];
        let mut any = false;
        for (i, k) in [key_bytes(key.lo, key.hi)?, key_bytes(key.hi, key.lo)?].into_iter().enumerate() {
            for k in [k, all_key(k)] {
                if let Some((d, t)) = self.take(&k, remove) {
                    any = true;
                    let (sum, last) = &mut dirs[i];
                    sum.pkts += d.pkts;
                    sum.bytes += d.bytes;
                    sum.payload += d.payload;
                    *last = (*last).max(t);
                }
            }
        }
        if !any {
            return None;
        }
        let [(from_lo, t_lo), (from_hi, t_hi)] = dirs;
        if remove {
            let c = &self.counters;
            c.packets.fetch_add(from_lo.pkts + from_hi.pkts, Relaxed);
            c.bytes.fetch_add(from_lo.bytes + from_hi.bytes, Relaxed);
        }
        let last = t_lo.max(t_hi);
        let last_ts = (last > 0).then(|| {
            let (mono, real) = clocks();
            real.saturating_sub(mono.saturating_sub(i64::try_from(last).unwrap_or(i64::MAX)).max(0))
        });
        Some(KernelSeen { from_lo, from_hi, last_ts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn jumps_land_on_their_labels() {
        let p = program(3);
        // Every jump's target is inside the program, and the map load is one
        // two-slot instruction with the fd.
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 && ins.code != CALL && ins.code != EXIT {
                let to = i as isize + 1 + ins.off as isize;
                assert!(to > 0 && (to as usize) < p.len(), "jump at {i} to {to}");
            }
        }
        let ld = p.iter().position(|i| i.code == LD_IMM64).expect("map load");
        assert_eq!((p[ld].regs >> 4, p[ld].imm, p[ld + 1].code), (PSEUDO_MAP_FD, 3, 0));
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
    }

    #[test]
    fn keys_are_the_words_the_program_loads() {
        let k = key_bytes((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 443), (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)), 51000)).expect("v4");
        assert_eq!(&k[0..4], &4u32.to_ne_bytes());
        assert_eq!(&k[4..8], &0x0a00_0001u32.to_ne_bytes());
        assert_eq!(&k[8..20], &[0u8; 12]);
        assert_eq!(&k[20..24], &0xc0a8_0102u32.to_ne_bytes());
        assert_eq!(&k[36..38], &443u16.to_ne_bytes());
        assert_eq!(&k[38..40], &51000u16.to_ne_bytes());
        let v6: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let k = key_bytes((IpAddr::V6(v6), 1), (IpAddr::V6(v6), 2)).expect("v6");
        assert_eq!(&k[0..4], &6u32.to_ne_bytes());
        assert_eq!(&k[4..8], &0x2001_0db8u32.to_ne_bytes());
        assert_eq!(&k[16..20], &1u32.to_ne_bytes());
        assert!(key_bytes((IpAddr::V6(v6), 1), (IpAddr::V4(Ipv4Addr::LOCALHOST), 2)).is_none());
    }
}

#[cfg(test)]
mod kernel {
    use super::*;

    /// The kernel's verifier is the judge of the program; this needs root
    /// (or CAP_BPF), so it runs where `PINWATCH_LIVE_REQUIRED` asks for the
    /// live tests (CI, as root) and says so when it cannot.
    #[test]
    fn the_kernel_loads_the_program_and_the_map_keeps_counts() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("PINWATCH_LIVE_REQUIRED").is_none(), "PINWATCH_LIVE_REQUIRED is set, and this is not root");
            eprintln!("SKIPPED: loading the eBPF program needs root");
            return;
        }
        let kb = KernelBypass::new(2).expect("the verifier accepts the program");
        let mut h = kb.offload();
        let key = |i: u8| FlowKey {
            context: 0,
            proto: 6,
            lo: (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i)), 443),
            hi: (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 1)), 40000),
        };
        for i in 0..4 {
            assert!(h.offload(&key(i), [DROP_ALL, DROP_EMPTY]), "flow {i} fits");
        }
        assert!(!h.offload(&key(9), [DROP_ALL, DROP_ALL]), "a fifth flow does not fit a table of 2 × 4 entries");
        assert!(!h.offload(&key(8), [0, 0]), "nothing to drop");
        let seen = h.seen(&key(0), false).expect("offloaded");
        assert_eq!((seen.from_lo, seen.last_ts), (DirSeen::default(), None));
        assert!(h.seen(&key(0), true).is_some());
        assert!(h.seen(&key(0), false).is_none(), "removed");
        assert!(h.offload(&key(9), [0, DROP_ALL]), "room again");
        let st = kb.stats();
        assert!(!h.offload(&key(1), [DROP_ALL, 0]), "already there");
        // 4 flows × 2 directions, then 1 direction; flow 0's 2 removed.
        assert_eq!((st.offloaded, st.refused, st.active, st.errors), (9, 1, 7, 0));
    }
}
