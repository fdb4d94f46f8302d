//! `--fanout client`: a classic-BPF fanout program (`PACKET_FANOUT_CBPF`)
//! that sends every packet of one client to the same socket of the fanout
//! group, whichever process holds it, so that the findings that join
//! several flows of one client (the fallback, sid 1725004) see them all.
//!
//! The kernel's own `PACKET_FANOUT_HASH` hashes the flow (both directions
//! alike), so two flows of one client to different servers usually land on
//! different sockets. The program here hashes the *client address*
//! instead. On the wire the client is not marked, so it takes the usual
//! sign: the client's port is the higher one (ephemeral ports are above the
//! service ports). For TCP and UDP over IPv4 and IPv6 (no extension
//! headers):
//!
//! - source port > destination port: the source address is the client's;
//! - source port < destination port: the destination address is;
//! - equal ports, IPv4 fragments, other protocols and IPv6 with extension
//!   headers: both addresses XOR-ed (still the same for both directions).
//!
//! The 32 bits taken (the IPv4 address, the last word of an IPv6 one) are
//! folded onto themselves and the kernel takes the result modulo the
//! number of sockets in the group. Offsets are relative to the network
//! header (`SKF_NET_OFF`), so the program does not depend on the link
//! layer (Ethernet, VLAN offloaded, raw IP).
//!
//! Setting the program on a socket needs `setsockopt` with a pointer to a
//! `sock_fprog`, which no safe wrapper in our dependencies offers for
//! `PACKET_FANOUT_DATA`: this module is the one place with `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: instruction class, size, mode or operation, source.
    pub code: u16,
    /// Jump offset if the test is true.
    pub jt: u8,
    /// Jump offset if the test is false.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

// Instruction classes and modes (linux/bpf_common.h, linux/filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const RSH: u16 = 0x70;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RET_A: u16 = 0x10;
const TAX: u16 = 0x00;
/// `SKF_NET_OFF`: loads relative to the network header.
pub const NET: u32 = (-0x100000i32) as u32;

/// A jump target while assembling.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum L {
    Next,
    V4,
    V6,
    P4,
    Cli4Src,
    Cli4Dst,
    Sym4,
    P6,
    Cli6Src,
    Cli6Dst,
    Sym6,
    Other,
    Mix,
}

enum Item {
    Label(L),
    Op(u16, u32),
    /// Conditional jump: code, k, true target, false target.
    J(u16, u32, L, L),
    /// Unconditional jump.
    Ja(L),
}

/// The program (see the module documentation).
pub fn client_program() -> Vec<Insn> {
    use Item::*;
    use L::*;
    let items = vec![
        Op(LD | B | ABS, NET),
        Op(ALU | RSH | K, 4),
        J(JMP | JEQ | K, 4, V4, Next),
        J(JMP | JEQ | K, 6, V6, Other),
        Label(V4),
        Op(LD | H | ABS, NET + 6),
        J(JMP | JSET | K, 0x3fff, Sym4, Next),
        Op(LD | B | ABS, NET + 9),
        J(JMP | JEQ | K, 6, P4, Next),
        J(JMP | JEQ | K, 17, P4, Sym4),
        Label(P4),
        Op(LDX | B | MSH, NET),
        Op(LD | H | IND, NET),
        Op(ST, 0),
        Op(LD | H | IND, NET + 2),
        Op(LDX | W | MEM, 0),
        // A = destination port, X = source port.
        J(JMP | JGT | X, 0, Cli4Dst, Next),
        J(JMP | JEQ | X, 0, Sym4, Cli4Src),
        Label(Cli4Src),
        Op(LD | W | ABS, NET + 12),
        Ja(Mix),
        Label(Cli4Dst),
        Op(LD | W | ABS, NET + 16),
        Ja(Mix),
        Label(Sym4),
        Op(LD | W | ABS, NET + 12),
        Op(MISC | TAX, 0),
        Op(LD | W | ABS, NET + 16),
        Op(ALU | XOR | X, 0),
        Ja(Mix),
        Label(V6),
        Op(LD | B | ABS, NET + 6),
        J(JMP | JEQ | K, 6, P6, Next),
        J(JMP | JEQ | K, 17, P6, Sym6),
        Label(P6),
        Op(LD | H | ABS, NET + 40),
        Op(ST, 0),
        Op(LD | H | ABS, NET + 42),
        Op(LDX | W | MEM, 0),
        J(JMP | JGT | X, 0, Cli6Dst, Next),
        J(JMP | JEQ | X, 0, Sym6, Cli6Src),
        Label(Cli6Src),
        Op(LD | W | ABS, NET + 20),
        Ja(Mix),
        Label(Cli6Dst),
        Op(LD | W | ABS, NET + 36),
        Ja(Mix),
        Label(Sym6),
        Op(LD | W | ABS, NET + 20),
        Op(MISC | TAX, 0),
        Op(LD | W | ABS, NET + 36),
        Op(ALU | XOR | X, 0),
        Ja(Mix),
        Label(Other),
        Op(RET | K, 0),
        Label(Mix),
        Op(MISC | TAX, 0),
        Op(ALU | RSH | K, 16),
        Op(ALU | XOR | X, 0),
        Op(MISC | TAX, 0),
        Op(ALU | RSH | K, 8),
        Op(ALU | XOR | X, 0),
        Op(MISC | TAX, 0),
        Op(ALU | RSH | K, 4),
        Op(ALU | XOR | X, 0),
        Op(MISC | TAX, 0),
        Op(ALU | RSH | K, 2),
        Op(ALU | XOR | X, 0),
        Op(MISC | TAX, 0),
        Op(ALU | RSH | K, 1),
        Op(ALU | XOR | X, 0),
        Op(RET | RET_A, 0),
    ];
    assemble(&items)
}

/// Where the labels of a program fall: the instruction index of each, and
/// the number of instructions (a label takes none). The first pass of both
/// assemblers here (this classic BPF one and the eBPF one of
/// `super::ebpf_bypass`).
pub(super) struct Labels<L> {
    at: Vec<(L, usize)>,
    /// Instructions in the program.
    pub(super) len: usize,
}

impl<L: PartialEq + Copy> Labels<L> {
    /// `label(item)` is the label an item defines, if it is one.
    pub(super) fn new<I>(items: &[I], label: impl Fn(&I) -> Option<L>) -> Self {
        let mut at = Vec::new();
        let mut len = 0usize;
        for it in items {
            match label(it) {
                Some(l) => at.push((l, len)),
                None => len += 1,
            }
        }
        Labels { at, len }
    }

    /// Instruction index of `l`. The programs are constants, so a jump to a
    /// label that is not defined is a bug in them (their tests assemble
    /// them).
    pub(super) fn of(&self, l: L) -> usize {
        self.at.iter().find(|(x, _)| *x == l).map(|(_, i)| *i).expect("label defined")
    }
}

fn assemble(items: &[Item]) -> Vec<Insn> {
    let labels = Labels::new(items, |it| match it {
        Item::Label(l) => Some(*l),
        _ => None,
    });
    let target = |l: L, here: usize| -> usize {
        let to = if l == L::Next { here + 1 } else { labels.of(l) };
        to - (here + 1)
    };
    let mut out = Vec::with_capacity(labels.len);
    for it in items {
        let here = out.len();
        match *it {
            Item::Label(_) => {}
            Item::Op(code, k) => out.push(Insn { code, jt: 0, jf: 0, k }),
            Item::J(code, k, t, f) => out.push(Insn {
                code,
                jt: u8::try_from(target(t, here)).expect("short jump"),
                jf: u8::try_from(target(f, here)).expect("short jump"),
                k,
            }),
            Item::Ja(t) => out.push(Insn { code: JMP | JA, jt: 0, jf: 0, k: target(t, here) as u32 }),
        }
    }
    out
}

/// `PACKET_FANOUT_CBPF` (linux/if_packet.h).
pub const PACKET_FANOUT_CBPF: u32 = 6;
/// `PACKET_FANOUT_FLAG_DEFRAG`: IP fragments are reassembled before the
/// program sees them.
pub const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;

/// Join fanout group `group` in `PACKET_FANOUT_CBPF` mode (after `bind`)
/// and set the program of the group.
pub fn join(fd: BorrowedFd<'_>, group: u16, prog: &[Insn]) -> std::io::Result<()> {
    let arg: libc::c_int = (u32::from(group) | ((PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_DEFRAG) << 16)) as libc::c_int;
    // SAFETY: `fd` is an open socket borrowed for the call; the option value
    // is a c_int on our stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&arg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut filter: Vec<libc::sock_filter> = prog.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| std::io::Error::other("program too long"))?,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `filter`, which lives until after the call
    // (the kernel copies the program); the size passed is `sock_fprog`'s.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT_DATA,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal classic-BPF interpreter over a packet that starts at its
    /// network header (what `SKF_NET_OFF` loads are relative to), for the
    /// instructions the program uses. `None`: a load out of bounds (the
    /// kernel then returns 0).
    fn run(prog: &[Insn], pkt: &[u8]) -> Option<u32> {
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let load = |off: u32, size: usize| -> Option<u32> {
            let o = off.wrapping_sub(NET) as usize;
            let b = pkt.get(o..o + size)?;
            Some(b.iter().fold(0u32, |acc, v| (acc << 8) | u32::from(*v)))
        };
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            let cls = i.code & 0x07;
            match cls {
                0x00 => {
                    let size = match i.code & 0x18 {
                        W => 4,
                        H => 2,
                        _ => 1,
                    };
                    let off = if i.code & 0xe0 == IND { i.k.wrapping_add(x) } else { i.k };
                    a = load(off, size)?;
                }
                0x01 => {
                    if i.code & 0xe0 == MSH {
                        x = (load(i.k, 1)? & 0xf) * 4;
                    } else {
                        x = m[i.k as usize];
                    }
                }
                0x02 => m[i.k as usize] = a,
                0x04 => {
                    let v = if i.code & X != 0 { x } else { i.k };
                    match i.code & 0xf0 {
                        RSH => a >>= v,
                        XOR => a ^= v,
                        c => panic!("alu op {c:#x}"),
                    }
                }
                0x05 => {
                    let v = if i.code & X != 0 { x } else { i.k };
                    let taken = match i.code & 0xf0 {
                        JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        JEQ => a == v,
                        JGT => a > v,
                        JSET => a & v != 0,
                        c => panic!("jump op {c:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                0x06 => return Some(if i.code & RET_A != 0 { a } else { i.k }),
                0x07 => x = a,
                _ => panic!("class {cls}"),
            }
        }
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn v6(src: [u8; 16], dst: [u8; 16], next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, next, 64];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn both_directions_and_every_server_of_a_client_get_one_value() {
        let prog = client_program();
        let c = [10, 99, 0, 1];
        let to_a = run(&prog, &v4(c, [93, 184, 216, 34], 6, 40001, 443)).expect("loads");
        let from_a = run(&prog, &v4([93, 184, 216, 34], c, 6, 443, 40001)).expect("loads");
        let to_b = run(&prog, &v4(c, [142, 250, 1, 1], 6, 40002, 8443)).expect("loads");
        let quic = run(&prog, &v4(c, [142, 250, 1, 2], 17, 51000, 443)).expect("loads");
        assert_eq!(to_a, from_a);
        assert_eq!(to_a, to_b, "another server, same client");
        assert_eq!(to_a, quic, "QUIC of the same client");
        // Another client: its value differs (the fold of 10.99.0.1 and 10.99.0.3 differ).
        let other = run(&prog, &v4([10, 99, 0, 3], [93, 184, 216, 34], 6, 40001, 443)).expect("loads");
        assert_ne!(to_a, other);
    }

    #[test]
    fn ipv6_and_the_odd_cases_are_symmetric() {
        let prog = client_program();
        let mut c = [0u8; 16];
        c[0] = 0xfd;
        c[15] = 7;
        let mut s = [0u8; 16];
        s[0] = 0x20;
        s[15] = 9;
        let up = run(&prog, &v6(c, s, 6, 50000, 443)).expect("loads");
        let down = run(&prog, &v6(s, c, 6, 443, 50000)).expect("loads");
        let mut s2 = s;
        s2[15] = 10;
        let other_server = run(&prog, &v6(c, s2, 17, 50001, 443)).expect("loads");
        assert_eq!(up, down);
        assert_eq!(up, other_server);
        // Extension header (hop-by-hop): the pair, both ways alike.
        assert_eq!(run(&prog, &v6(c, s, 0, 50000, 443)), run(&prog, &v6(s, c, 0, 443, 50000)));
        // Equal ports, ICMP, a fragment: the pair, both ways alike.
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        assert_eq!(run(&prog, &v4(a, b, 17, 5353, 5353)), run(&prog, &v4(b, a, 17, 5353, 5353)));
        assert_eq!(run(&prog, &v4(a, b, 1, 0, 0)), run(&prog, &v4(b, a, 1, 0, 0)));
        let mut frag = v4(a, b, 6, 40000, 443);
        frag[6] = 0x20; // more fragments
        let mut frag_back = v4(b, a, 6, 9, 9);
        frag_back[6] = 0x20;
        assert_eq!(run(&prog, &frag), run(&prog, &frag_back));
        // Not IP, or too short: socket 0, never a panic.
        assert_eq!(run(&prog, &[0x10, 0, 0]), Some(0));
        assert_eq!(run(&prog, &[0x45, 0, 0]), None);
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        let prog = client_program();
        assert!(prog.len() < 256);
        for (i, insn) in prog.iter().enumerate() {
            if insn.code & 0x07 == JMP {
                let far = if insn.code & 0xf0 == JA { insn.k as usize } else { usize::from(insn.jt.max(insn.jf)) };
                assert!(i + 1 + far < prog.len(), "jump at {i} leaves the program");
            }
        }
        assert_eq!(prog.last().map(|i| i.code), Some(RET | RET_A));
    }
}
