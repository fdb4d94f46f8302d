//! Link, network and tunnel decoding: a captured frame in, the innermost
//! TCP/UDP 5-tuple and payload out.
//!
//! Heads up! The link types are the tcpdump.org LINKTYPE_* values
//! (<https://www.tcpdump.org/linktypes.html>); the tunnels follow RFC 2784/2890
//! (GRE), draft-foschiano-erspan (ERSPAN I/II/III), RFC 7348 (VXLAN),
//! RFC 8926 (GENEVE) and 3GPP TS 29.281 (GTP-U).
//!
//! Contract: [`decode`] never panics and never allocates. Anything it cannot
//! use comes back as a [`Skip`] whose [`Skip::reason`] is a stable,
//! snake_case counter name for the stats record. Ethernet, VLAN/QinQ, IPv4 and
//! IPv6 (with extension headers) are parsed by `etherparse` in its *lax* mode,
//! so a snap-length-truncated frame still yields what it has (`truncated`).

use std::net::IpAddr;

use etherparse::{EtherType, IpNumber, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice};

/// LINKTYPE_* values we decode.
pub mod linktype {
    /// BSD loopback: a 4-byte address family in host byte order, then IP.
    pub const NULL: u32 = 0;
    /// Ethernet II (with 802.1Q/QinQ tags, PPPoE and Cisco MetaData handled).
    pub const ETHERNET: u32 = 1;
    /// PPP, optionally with HDLC address/control bytes (`ff 03`) in front.
    pub const PPP: u32 = 9;
    /// Raw IP (`DLT_RAW` as numbered on some older BSDs); the version nibble tells IPv4 from IPv6.
    pub const RAW_OLD_BSD: u32 = 12;
    /// Raw IP (`DLT_RAW` as numbered on OpenBSD); the version nibble tells IPv4 from IPv6.
    pub const RAW_OLD_OPENBSD: u32 = 14;
    /// PPP in HDLC-like framing; read as [`PPP`].
    pub const PPP_HDLC: u32 = 50;
    /// PPPoE (`LINKTYPE_PPP_ETHER`): each frame starts with the 6-byte PPPoE
    /// session header (RFC 2516 §4), then the PPP protocol field.
    pub const PPP_ETHER: u32 = 51;
    /// Raw IP; the version nibble tells IPv4 from IPv6.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: a 4-byte address family in network byte order, then IP.
    pub const LOOP: u32 = 108;
    /// Linux "cooked" capture v1: a 16-byte header ending in the EtherType.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4 (decoded like [`RAW`]: the version nibble decides).
    pub const IPV4: u32 = 228;
    /// Raw IPv6 (decoded like [`RAW`]: the version nibble decides).
    pub const IPV6: u32 = 229;
    /// Linux "cooked" capture v2: a 20-byte header starting with the EtherType.
    pub const LINUX_SLL2: u32 = 276;
}

/// How deep tunnels may nest before we give up (counted as `tunnel_depth`).
pub const MAX_TUNNEL_DEPTH: usize = 4;

/// TCP header fields the flow table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Sequence number as on the wire (absolute, not relative to the ISN).
    pub seq: u32,
    /// Acknowledgment number as on the wire (meaningful only with [`TcpInfo::ACK`] set).
    pub ack: u32,
    /// Flag bits as on the wire (FIN=0x01, SYN=0x02, RST=0x04, PSH=0x08, ACK=0x10).
    pub flags: u8,
    /// Receive window as on the wire (unscaled).
    pub window: u16,
}

impl TcpInfo {
    /// FIN flag bit of [`TcpInfo::flags`].
    pub const FIN: u8 = 0x01;
    /// SYN flag bit of [`TcpInfo::flags`].
    pub const SYN: u8 = 0x02;
    /// RST flag bit of [`TcpInfo::flags`].
    pub const RST: u8 = 0x04;
    /// ACK flag bit of [`TcpInfo::flags`].
    pub const ACK: u8 = 0x10;

    /// True when any bit of `f` (one of the flag constants, or several or-ed) is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Tunnel encapsulation that carried the innermost packet (the outermost one
/// if several were nested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// GRE (RFC 2784/2890) carrying IP or Ethernet, or PPTP's enhanced GRE carrying PPP.
    Gre,
    /// ERSPAN type I: GRE protocol 0x88be without a sequence number, Ethernet right after.
    ErspanI,
    /// ERSPAN type II: GRE protocol 0x88be with a sequence number and an 8-byte header.
    ErspanII,
    /// ERSPAN type III: GRE protocol 0x22eb, a 12-byte header (20 with the platform sub-header).
    ErspanIII,
    /// VXLAN (RFC 7348) on UDP port 4789 or 8472, carrying Ethernet.
    Vxlan,
    /// GENEVE (RFC 8926) on UDP port 6081, carrying Ethernet or IP.
    Geneve,
    /// GTP-U (3GPP TS 29.281) T-PDUs on UDP port 2152, carrying IP.
    GtpU,
    /// IP directly in IP (IP protocol 4 or 41).
    IpInIp,
}

/// The innermost transport packet of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Source address of the innermost IP header.
    pub src: IpAddr,
    /// Destination address of the innermost IP header.
    pub dst: IpAddr,
    /// IANA protocol number: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Source TCP/UDP port.
    pub sport: u16,
    /// Destination TCP/UDP port.
    pub dport: u16,
    /// TCP header fields; `None` for UDP.
    pub tcp: Option<TcpInfo>,
    /// Transport payload as captured (may be shorter than on the wire).
    pub payload: &'a [u8],
    /// True when the capture cut the packet short (snap length).
    pub truncated: bool,
    /// VLAN ids folded into one value, so the same 5-tuple on two VLANs is
    /// two flows; 0 when there are none. Tunnel ids (VNI, TEID, GRE key,
    /// ERSPAN session) are deliberately left out: they differ per direction
    /// in common deployments (GTP-U uplink/downlink TEIDs, GENEVE from load
    /// balancers), which would split one connection into two half-flows.
    pub context: u64,
    /// The VLAN ids on the way to the innermost IP header, outermost first
    /// (at most three, as Suricata's `vlan`).
    pub vlans: Vlans,
    /// Outermost tunnel, if any.
    pub tunnel: Option<Tunnel>,
    /// IPv4 TTL or IPv6 hop limit of the innermost IP header: how far the
    /// sender is from the tap, against the usual initial values.
    pub ttl: u8,
    /// TCP options as on the wire (empty for UDP): the server's TCP
    /// signature is read from its SYN-ACK.
    pub tcp_options: &'a [u8],
}

/// Why a frame produced no TCP/UDP packet. Not an error of the sensor: a
/// counted outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The capture's link type is none of [`linktype`]; carries the value.
    UnsupportedLinktype(u32),
    /// The frame ends inside a link-layer header (Ethernet, SLL, loopback, PPP).
    LinkTruncated,
    /// The frame carries something other than IPv4/IPv6 (ARP, PPP control, a non-IP tunnel payload, ...).
    NotIp,
    /// The IP header could not be parsed.
    IpMalformed,
    /// An IP fragment (first or later); fragments are not reassembled.
    IpFragment,
    /// IP carrying a protocol other than TCP, UDP, GRE or IP-in-IP.
    NotTcpUdp,
    /// The TCP or UDP header could not be parsed.
    TransportMalformed,
    /// A GRE, GENEVE or GTP-U header is inconsistent or cut short.
    TunnelMalformed,
    /// More than [`MAX_TUNNEL_DEPTH`] nested encapsulations.
    TunnelDepth,
}

impl Skip {
    /// Stable counter name for the stats record.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::UnsupportedLinktype(_) => "unsupported_linktype",
            Skip::LinkTruncated => "link_truncated",
            Skip::NotIp => "not_ip",
            Skip::IpMalformed => "ip_malformed",
            Skip::IpFragment => "ip_fragment",
            Skip::NotTcpUdp => "not_tcp_udp",
            Skip::TransportMalformed => "transport_malformed",
            Skip::TunnelMalformed => "tunnel_malformed",
            Skip::TunnelDepth => "tunnel_depth",
        }
    }
}

/// What sits at the start of a byte slice.
#[derive(Clone, Copy)]
enum Layer {
    Ethernet,
    EtherType(u16),
    Ip,
}

/// Up to three VLAN ids, outermost first: 12 bits each, the top bit of a
/// slot set when it holds one. Six bytes with 2-byte alignment: a `Flow`
/// keeps its first packet's in what was padding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Vlans([u16; 3]);

impl Vlans {
    /// Most ids kept (Suricata's `VLAN_MAX_LAYERS`).
    pub const MAX: usize = 3;

    /// These ids with `id` added after them; a fourth and later are dropped.
    #[must_use]
    pub fn push(self, id: u16) -> Vlans {
        let mut v = self;
        if let Some(slot) = v.0.iter_mut().find(|s| **s & 0x8000 == 0) {
            *slot = 0x8000 | (id & 0x0fff);
        }
        v
    }

    /// Number of ids held (0 to [`Vlans::MAX`]).
    pub fn len(&self) -> usize {
        self.0.iter().filter(|s| **s & 0x8000 != 0).count()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.0[0] & 0x8000 == 0
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().take_while(|s| **s & 0x8000 != 0).map(|s| s & 0x0fff)
    }
}

/// Decode one captured frame of the given link type.
pub fn decode(linktype: u32, data: &[u8]) -> Result<Decoded<'_>, Skip> {
    if linktype == linktype::ETHERNET {
        if let Some(d) = ethernet_ip_tcp(data) {
            return Ok(d);
        }
    }
    decode_full(linktype, data)
}

/// Every link type and encapsulation, through etherparse's whole-packet slicer.
fn decode_full(linktype: u32, data: &[u8]) -> Result<Decoded<'_>, Skip> {
    let (layer, rest) = link(linktype, data)?;
    decode_layer(layer, rest, 0, 0, Vlans::default(), None)
}

/// A TCP packet's summary from etherparse's view of the segment.
#[allow(clippy::too_many_arguments)]
fn tcp_decoded<'a>(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    t: &TcpSlice<'a>,
    truncated: bool,
    context: u64,
    vlans: Vlans,
    tunnel: Option<Tunnel>,
) -> Decoded<'a> {
    Decoded {
        src,
        dst,
        proto: 6,
        sport: t.source_port(),
        dport: t.destination_port(),
        tcp: Some(TcpInfo {
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: t.header_slice().get(13).copied().unwrap_or(0),
            window: t.window_size(),
        }),
        payload: t.payload(),
        truncated,
        context,
        vlans,
        tunnel,
        ttl,
        tcp_options: t.header_slice().get(20..).unwrap_or(&[]),
    }
}

/// The common case on an egress tap, untagged Ethernet, IPv4 or IPv6, TCP,
/// read straight from the bytes: the same result as [`decode_full`] (a
/// property test checks it on valid, cut and corrupted frames) at a fraction
/// of the cost, which matters because every bulk packet comes through here.
/// Only the plain case is taken: IPv4 without fragmentation and with a total
/// length that fits the frame, IPv6 with TCP right after the fixed header
/// and a non-zero payload length that fits, a whole TCP header. `None`:
/// anything else (VLAN, UDP, options that do not fit, extension headers,
/// cut or odd lengths, tunnels, errors), which the full path handles.
fn ethernet_ip_tcp(data: &[u8]) -> Option<Decoded<'_>> {
    let ip = data.get(14..)?;
    let (src, dst, ttl, segment) = match be16(data, 12)? {
        0x0800 => {
            let &vihl = ip.first()?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let frag = be16(ip, 6)?;
            // Version 4, a whole header, no fragment (MF or an offset), TCP.
            if vihl >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || frag & 0x3fff != 0 || *ip.get(9)? != 6 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), *ip.get(8)?, ip.get(ihl..total)?)
        }
        0x86dd => {
            let len = usize::from(be16(ip, 4)?);
            // Version 6, TCP as the next header, a payload length that fits (0 is a jumbogram).
            if ip.first()? >> 4 != 6 || *ip.get(6)? != 6 || len == 0 || 40 + len > ip.len() {
                return None;
            }
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), *ip.get(7)?, ip.get(40..40 + len)?)
        }
        _ => return None,
    };
    let off = usize::from(segment.get(12)? >> 4) * 4;
    if off < 20 {
        return None;
    }
    Some(Decoded {
        src,
        dst,
        proto: 6,
        sport: be16(segment, 0)?,
        dport: be16(segment, 2)?,
        tcp: Some(TcpInfo { seq: be32(segment, 4)?, ack: be32(segment, 8)?, flags: *segment.get(13)?, window: be16(segment, 14)? }),
        payload: segment.get(off..)?,
        truncated: false,
        context: 0,
        vlans: Vlans::default(),
        tunnel: None,
        ttl,
        tcp_options: segment.get(20..off)?,
    })
}

fn link(linktype: u32, data: &[u8]) -> Result<(Layer, &[u8]), Skip> {
    use linktype::*;
    match linktype {
        ETHERNET => Ok((Layer::Ethernet, data)),
        RAW | RAW_OLD_BSD | RAW_OLD_OPENBSD | IPV4 | IPV6 => Ok((Layer::Ip, data)),
        NULL | LOOP => {
            // 4-byte address family in host (NULL) or network (LOOP) order;
            // the IP version nibble that follows is the reliable signal.
            let rest = data.get(4..).ok_or(Skip::LinkTruncated)?;
            Ok((Layer::Ip, rest))
        }
        LINUX_SLL => {
            // 16 bytes: packet type, ARPHRD, addr len, 8-byte addr, protocol.
            let proto = be16(data, 14).ok_or(Skip::LinkTruncated)?;
            sll_payload(proto, &data[16..])
        }
        LINUX_SLL2 => {
            // 20 bytes: protocol, reserved, ifindex, ARPHRD, pkt type, addr len, addr.
            let proto = be16(data, 0).ok_or(Skip::LinkTruncated)?;
            let rest = data.get(20..).ok_or(Skip::LinkTruncated)?;
            sll_payload(proto, rest)
        }
        PPP | PPP_HDLC => ppp(data),
        PPP_ETHER => ppp(pppoe_header(data)?),
        other => Err(Skip::UnsupportedLinktype(other)),
    }
}

fn sll_payload(proto: u16, rest: &[u8]) -> Result<(Layer, &[u8]), Skip> {
    match proto {
        // ARPHRD_ETHER-less frames carry an EtherType; 0x0004 is 802.2 LLC.
        0x0800 | 0x86dd | 0x8100 | 0x88a8 | 0x9100 | 0x8864 | CISCO_METADATA => Ok((Layer::EtherType(proto), rest)),
        _ => Err(Skip::NotIp),
    }
}

fn ppp(data: &[u8]) -> Result<(Layer, &[u8]), Skip> {
    // Optional HDLC address/control (ff 03), then a 1- or 2-byte protocol.
    let d = if data.starts_with(&[0xff, 0x03]) { &data[2..] } else { data };
    let first = *d.first().ok_or(Skip::LinkTruncated)?;
    let (proto, rest) = if first & 1 == 1 { (u16::from(first), &d[1..]) } else { (be16(d, 0).ok_or(Skip::LinkTruncated)?, &d[2..]) };
    match proto {
        0x0021 | 0x0057 => Ok((Layer::Ip, rest)),
        _ => Err(Skip::NotIp),
    }
}

/// The PPP frame behind a PPPoE session header (version 1, type 1, code 0:
/// session data; session id; payload length), cut to that length. A
/// discovery packet (another code) carries no IP.
fn pppoe_header(data: &[u8]) -> Result<&[u8], Skip> {
    let h = data.get(..6).ok_or(Skip::LinkTruncated)?;
    if h[0] != 0x11 || h[1] != 0 {
        return Err(Skip::NotIp);
    }
    let len = usize::from(be16(h, 4).ok_or(Skip::LinkTruncated)?);
    let body = &data[6..];
    Ok(&body[..len.min(body.len())])
}

/// A PPPoE session frame (EtherType 0x8864, RFC 2516 §4), bare or behind
/// VLAN tags (QinQ on a broadband access uplink): the VLAN ids, outermost
/// first, and the PPP frame (protocol field first) the PPPoE header
/// announces. `None` for anything else, PPPoE discovery (0x8863) included.
fn pppoe_session(layer: Layer, data: &[u8]) -> Option<(Vlans, &[u8])> {
    let (mut et, mut at) = match layer {
        Layer::Ethernet => (be16(data, 12)?, 14),
        Layer::EtherType(et) => (et, 0),
        Layer::Ip => return None,
    };
    let mut ids = Vlans::default();
    // Tags beyond Vlans::MAX are stepped over, as etherparse's VLAN slicer does.
    for _ in 0..8 {
        if !matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        ids = ids.push(be16(data, at)? & 0x0fff);
        et = be16(data, at + 2)?;
        at += 4;
    }
    if et != 0x8864 {
        return None;
    }
    Some((ids, pppoe_header(data.get(at..)?).ok()?))
}

/// EtherType of Cisco MetaData (TrustSec SGT tag).
const CISCO_METADATA: u16 = 0x8909;

/// Step over a Cisco MetaData header (`data` starts after its EtherType):
/// version, length, option type, SGT, then the real EtherType.
fn step_cisco_metadata(data: &[u8]) -> Result<(u16, &[u8]), Skip> {
    let inner = be16(data, 6).ok_or(Skip::LinkTruncated)?;
    Ok((inner, data.get(8..).ok_or(Skip::LinkTruncated)?))
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Mix a tunnel or VLAN identifier into the flow context.
fn mix(ctx: u64, tag: u64, id: u64) -> u64 {
    // FNV-1a style fold; stable across runs and platforms.
    let mut h = ctx ^ 0xcbf2_9ce4_8422_2325;
    for v in [tag, id] {
        h ^= v;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Slice one layer with etherparse, stepping over a Cisco MetaData header
/// (TrustSec SGT tag, EtherType 0x8909: version, length, option type, SGT,
/// then the real EtherType), which etherparse does not know.
#[inline]
fn slice_layer(layer: Layer, data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    Ok(match layer {
        Layer::Ethernet if be16(data, 12) == Some(CISCO_METADATA) => {
            let (inner, rest) = step_cisco_metadata(data.get(14..).ok_or(Skip::LinkTruncated)?)?;
            LaxSlicedPacket::from_ether_type(EtherType(inner), rest)
        }
        Layer::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::LinkTruncated)?,
        // Behind a Linux SLL header or inside a tunnel.
        Layer::EtherType(CISCO_METADATA) => {
            let (inner, rest) = step_cisco_metadata(data)?;
            LaxSlicedPacket::from_ether_type(EtherType(inner), rest)
        }
        Layer::EtherType(et) => LaxSlicedPacket::from_ether_type(EtherType(et), data),
        Layer::Ip => {
            // Raw IP: the version nibble decides.
            match data.first().map(|b| b >> 4) {
                Some(4) | Some(6) => {}
                Some(_) => return Err(Skip::NotIp),
                None => return Err(Skip::LinkTruncated),
            }
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::IpMalformed)?
        }
    })
}

/// The IP layer of a sliced packet: source, destination, TTL (hop limit)
/// and payload; ARP and anything else not IP is skipped.
#[inline]
fn ip_of<'p, 'a>(pkt: &'p LaxSlicedPacket<'a>) -> Result<(IpAddr, IpAddr, u8, &'p LaxIpPayloadSlice<'a>), Skip> {
    match &pkt.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            Ok((IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.ttl(), ip.payload()))
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            Ok((IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), h.hop_limit(), ip.payload()))
        }
        Some(LaxNetSlice::Arp(_)) => Err(Skip::NotIp),
        None => Err(match pkt.stop_err {
            Some(_) => Skip::IpMalformed,
            None => Skip::NotIp,
        }),
    }
}

fn decode_layer(layer: Layer, data: &[u8], depth: usize, ctx: u64, vlans: Vlans, tunnel: Option<Tunnel>) -> Result<Decoded<'_>, Skip> {
    if depth > MAX_TUNNEL_DEPTH {
        return Err(Skip::TunnelDepth);
    }
    // etherparse 0.21 does not know PPPoE: step over it (and any VLAN tags
    // in front of it) here and go on with the PPP payload.
    if let Some((ids, ppp_frame)) = pppoe_session(layer, data) {
        let (mut ctx, mut vlans) = (ctx, vlans);
        for id in ids.ids() {
            ctx = mix(ctx, 1, u64::from(id));
            vlans = vlans.push(id);
        }
        let (inner, rest) = ppp(ppp_frame)?;
        return decode_layer(inner, rest, depth + 1, ctx, vlans, tunnel);
    }
    let pkt = slice_layer(layer, data)?;
    let (mut ctx, mut vlans) = (ctx, vlans);
    for id in pkt.vlan_ids() {
        ctx = mix(ctx, 1, u64::from(id.value()));
        vlans = vlans.push(id.value());
    }
    // Cisco MetaData after 802.1Q tags (where Cisco puts it when a frame
    // has both): etherparse stops at the unknown EtherType; go on past it.
    let pkt = match pkt.ether_payload() {
        Some(p) if pkt.net.is_none() && p.ether_type.0 == CISCO_METADATA => {
            let (inner, rest) = step_cisco_metadata(p.payload)?;
            let pkt = LaxSlicedPacket::from_ether_type(EtherType(inner), rest);
            for id in pkt.vlan_ids() {
                ctx = mix(ctx, 1, u64::from(id.value()));
                vlans = vlans.push(id.value());
            }
            pkt
        }
        _ => pkt,
    };
    let (src, dst, ttl, payload) = ip_of(&pkt)?;
    if payload.fragmented {
        return Err(Skip::IpFragment);
    }
    let truncated = payload.incomplete;
    match payload.ip_number {
        IpNumber::TCP => match &pkt.transport {
            Some(TransportSlice::Tcp(t)) => Ok(tcp_decoded(src, dst, ttl, t, truncated, ctx, vlans, tunnel)),
            _ => Err(Skip::TransportMalformed),
        },
        IpNumber::UDP => match &pkt.transport {
            Some(TransportSlice::Udp(u)) => {
                let (sport, dport) = (u.source_port(), u.destination_port());
                let body = u.payload();
                if let Some(inner) = udp_tunnel(sport, dport, body) {
                    let (kind, _id, layer, rest) = inner?;
                    return decode_layer(layer, rest, depth + 1, ctx, vlans, tunnel.or(Some(kind)));
                }
                Ok(Decoded {
                    src,
                    dst,
                    proto: 17,
                    sport,
                    dport,
                    tcp: None,
                    payload: body,
                    truncated,
                    context: ctx,
                    vlans,
                    tunnel,
                    ttl,
                    tcp_options: &[],
                })
            }
            _ => Err(Skip::TransportMalformed),
        },
        IpNumber::GRE => {
            let (kind, _id, layer, rest) = gre(payload.payload)?;
            decode_layer(layer, rest, depth + 1, ctx, vlans, tunnel.or(Some(kind)))
        }
        IpNumber::IPV4 | IpNumber::IPV6 => decode_layer(Layer::Ip, payload.payload, depth + 1, ctx, vlans, tunnel.or(Some(Tunnel::IpInIp))),
        _ => Err(Skip::NotTcpUdp),
    }
}

type Inner<'a> = Result<(Tunnel, u64, Layer, &'a [u8]), Skip>;

/// Recognise UDP-borne tunnels by their IANA ports. `None`: not a tunnel.
fn udp_tunnel(sport: u16, dport: u16, d: &[u8]) -> Option<Inner<'_>> {
    let port = |p: u16| sport == p || dport == p;
    if port(4789) || port(8472) {
        // VXLAN: flags(1, I bit 0x08) reserved(3) VNI(3) reserved(1), then Ethernet.
        if d.len() >= 8 && d[0] & 0x08 != 0 {
            let vni = be32(d, 4).map(|v| u64::from(v >> 8)).unwrap_or(0);
            return Some(Ok((Tunnel::Vxlan, vni, Layer::Ethernet, &d[8..])));
        }
        return None;
    }
    if port(6081) {
        // GENEVE: ver(2)|optlen(6), flags, protocol type(2), VNI(3), reserved.
        if d.len() < 8 || d[0] >> 6 != 0 {
            return Some(Err(Skip::TunnelMalformed));
        }
        let hdr = 8 + usize::from(d[0] & 0x3f) * 4;
        let proto = be16(d, 2).unwrap_or(0);
        let vni = be32(d, 4).map(|v| u64::from(v >> 8)).unwrap_or(0);
        let rest = match d.get(hdr..) {
            Some(r) => r,
            None => return Some(Err(Skip::TunnelMalformed)),
        };
        let layer = match proto {
            0x6558 => Layer::Ethernet,
            0x0800 | 0x86dd => Layer::Ip,
            _ => return Some(Err(Skip::TunnelMalformed)),
        };
        return Some(Ok((Tunnel::Geneve, vni, layer, rest)));
    }
    if dport == 2152 || sport == 2152 {
        return Some(gtpu(d));
    }
    None
}

/// GTP-U (3GPP TS 29.281 §5): only T-PDUs (type 0xff) carry user IP packets.
fn gtpu(d: &[u8]) -> Inner<'_> {
    let flags = *d.first().ok_or(Skip::TunnelMalformed)?;
    if flags >> 5 != 1 || d.get(1) != Some(&0xff) {
        return Err(Skip::NotIp);
    }
    let teid = u64::from(be32(d, 4).ok_or(Skip::TunnelMalformed)?);
    let mut off = 8;
    if flags & 0x07 != 0 {
        // Sequence number (2), N-PDU (1), next extension header type (1).
        let mut next = *d.get(11).ok_or(Skip::TunnelMalformed)?;
        off = 12;
        if flags & 0x04 != 0 {
            let mut guard = 0;
            while next != 0 {
                guard += 1;
                if guard > 16 {
                    return Err(Skip::TunnelMalformed);
                }
                let words = usize::from(*d.get(off).ok_or(Skip::TunnelMalformed)?);
                if words == 0 {
                    return Err(Skip::TunnelMalformed);
                }
                off += words * 4;
                next = *d.get(off - 1).ok_or(Skip::TunnelMalformed)?;
            }
        }
    }
    let rest = d.get(off..).ok_or(Skip::TunnelMalformed)?;
    Ok((Tunnel::GtpU, teid, Layer::Ip, rest))
}

/// GRE (RFC 2784/2890) and the ERSPAN types carried in it.
fn gre(d: &[u8]) -> Inner<'_> {
    let flags = be16(d, 0).ok_or(Skip::TunnelMalformed)?;
    let proto = be16(d, 2).ok_or(Skip::TunnelMalformed)?;
    if flags & 0x0007 > 1 {
        // Only versions 0 (GRE) and 1 (enhanced GRE / PPTP) exist.
        return Err(Skip::TunnelMalformed);
    }
    let (c, k, s) = (flags & 0x8000 != 0, flags & 0x2000 != 0, flags & 0x1000 != 0);
    let mut off = 4;
    if c {
        off += 4;
    }
    let mut key = 0u64;
    if k {
        key = u64::from(be32(d, off).ok_or(Skip::TunnelMalformed)?);
        off += 4;
    }
    if s {
        off += 4;
    }
    if flags & 0x0007 == 1 {
        // PPTP's enhanced GRE has an optional ack number and carries PPP.
        if flags & 0x0080 != 0 {
            off += 4;
        }
        let rest = d.get(off..).ok_or(Skip::TunnelMalformed)?;
        let (layer, inner) = ppp(rest)?;
        return Ok((Tunnel::Gre, key, layer, inner));
    }
    let rest = d.get(off..).ok_or(Skip::TunnelMalformed)?;
    match proto {
        0x0800 | 0x86dd => Ok((Tunnel::Gre, key, Layer::Ip, rest)),
        0x6558 => Ok((Tunnel::Gre, key, Layer::Ethernet, rest)),
        0x88be if !s => Ok((Tunnel::ErspanI, key, Layer::Ethernet, rest)),
        0x88be => {
            // ERSPAN II: 8-byte header; session id in the low 10 bits of word 0.
            let sess = be16(rest, 2).ok_or(Skip::TunnelMalformed)? & 0x03ff;
            let inner = rest.get(8..).ok_or(Skip::TunnelMalformed)?;
            Ok((Tunnel::ErspanII, key << 16 | u64::from(sess), Layer::Ethernet, inner))
        }
        0x22eb => {
            // ERSPAN III: 12-byte header, plus an 8-byte platform sub-header if O is set.
            let sess = be16(rest, 2).ok_or(Skip::TunnelMalformed)? & 0x03ff;
            let o = rest.get(11).ok_or(Skip::TunnelMalformed)? & 0x01 != 0;
            let hdr = if o { 20 } else { 12 };
            let inner = rest.get(hdr..).ok_or(Skip::TunnelMalformed)?;
            Ok((Tunnel::ErspanIII, key << 16 | u64::from(sess), Layer::Ethernet, inner))
        }
        _ => Err(Skip::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4/TCP 10.0.0.1:1234 -> 10.0.0.2:443, SYN, 4 payload bytes.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.extend_from_slice(&[0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn eth(ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = eth(0x0800, &ipv4_tcp(b"abcd"));
        let d = decode(linktype::ETHERNET, &f).expect("decodes");
        assert_eq!(d.src, "10.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!((d.sport, d.dport, d.proto), (1234, 443, 6));
        assert_eq!(d.payload, b"abcd");
        assert_eq!(d.tcp.map(|t| (t.seq, t.flags)), Some((100, 0x02)));
        assert_eq!(d.context, 0);
        assert!(!d.truncated);
    }

    #[test]
    fn vlans_pack_three_ids_outermost_first() {
        let v = Vlans::default().push(100).push(4095).push(1).push(7);
        assert_eq!(v.ids().collect::<Vec<_>>(), [100, 4095, 1]);
        assert!(Vlans::default().is_empty());
    }

    #[test]
    fn vlan_changes_context() {
        let mut body = vec![0x00, 0x0a, 0x08, 0x00];
        body.extend(ipv4_tcp(b""));
        let frame = eth(0x8100, &body);
        let d = decode(linktype::ETHERNET, &frame).expect("decodes");
        assert_ne!(d.context, 0);
        assert_eq!(d.dport, 443);
        assert_eq!(d.vlans.ids().collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn raw_null_sll_sll2_ppp() {
        let ip = ipv4_tcp(b"x");
        assert_eq!(decode(linktype::RAW, &ip).expect("raw").payload, b"x");
        let mut null = vec![2, 0, 0, 0];
        null.extend(&ip);
        assert_eq!(decode(linktype::NULL, &null).expect("null").payload, b"x");
        let mut sll = vec![0u8; 14];
        sll.extend([0x08, 0x00]);
        sll.extend(&ip);
        assert_eq!(decode(linktype::LINUX_SLL, &sll).expect("sll").payload, b"x");
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(&ip);
        assert_eq!(decode(linktype::LINUX_SLL2, &sll2).expect("sll2").payload, b"x");
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend(&ip);
        assert_eq!(decode(linktype::PPP, &ppp).expect("ppp").payload, b"x");
    }

    #[test]
    fn pppoe_linktype_starts_with_the_pppoe_header() {
        // LINKTYPE_PPP_ETHER (51): no Ethernet header, the PPPoE session
        // header first, then PPP protocol 0x0021 (IPv4).
        let ip = ipv4_tcp(b"x");
        let mut f = vec![0x11, 0x00, 0x12, 0x34];
        f.extend(((ip.len() + 2) as u16).to_be_bytes());
        f.extend([0x00, 0x21]);
        f.extend(&ip);
        assert_eq!(decode(linktype::PPP_ETHER, &f).expect("pppoe linktype").payload, b"x");
        // A discovery packet (code 0x09, PADI) is not IP.
        f[1] = 0x09;
        assert_eq!(decode(linktype::PPP_ETHER, &f).map(|d| d.payload), Err(Skip::NotIp));
        assert_eq!(decode(linktype::PPP_ETHER, &[0x11, 0x00]).map(|d| d.payload), Err(Skip::LinkTruncated));
    }

    #[test]
    fn pppoe_bare_and_behind_qinq() {
        let ip = ipv4_tcp(b"x");
        let mut pppoe = vec![0x11, 0x00, 0x12, 0x34];
        pppoe.extend(((ip.len() + 2) as u16).to_be_bytes());
        pppoe.extend([0x00, 0x21]);
        pppoe.extend(&ip);
        let bare = eth(0x8864, &pppoe);
        let d = decode(linktype::ETHERNET, &bare).expect("pppoe");
        assert_eq!(d.payload, b"x");
        assert!(d.vlans.is_empty());
        // QinQ: outer 802.1ad tag 100, inner 802.1Q tag 200, then PPPoE.
        let mut tagged = vec![0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x88, 0x64];
        tagged.extend(&pppoe);
        let q = eth(0x88a8, &tagged);
        let d = decode(linktype::ETHERNET, &q).expect("pppoe in qinq");
        assert_eq!(d.payload, b"x");
        assert_eq!(d.vlans.ids().collect::<Vec<_>>(), [100, 200]);
        // PPPoE discovery and LCP are not IP.
        let mut lcp = pppoe.clone();
        lcp[6..8].copy_from_slice(&[0xc0, 0x21]);
        assert_eq!(decode(linktype::ETHERNET, &eth(0x8864, &lcp)).map(|d| d.payload), Err(Skip::NotIp));
        assert!(decode(linktype::ETHERNET, &eth(0x8863, &pppoe)).is_err());
        // A truncated PPPoE header never panics.
        for cut in 0..pppoe.len() {
            let _ = decode(linktype::ETHERNET, &eth(0x8864, &pppoe[..cut]));
        }
    }

    #[test]
    fn vxlan_inner_packet_wins() {
        let inner = eth(0x0800, &ipv4_tcp(b"in"));
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend(inner);
        let udp_len = 8 + vx.len();
        let mut udp = vec![0x30, 0x39, 0x12, 0xb5, (udp_len >> 8) as u8, udp_len as u8, 0, 0];
        udp.extend(vx);
        let total = 20 + udp.len();
        let mut outer = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        outer.extend(udp);
        let d = decode(linktype::RAW, &outer).expect("vxlan");
        assert_eq!(d.tunnel, Some(Tunnel::Vxlan));
        assert_eq!(d.payload, b"in");
        assert_eq!(d.dport, 443);
        assert_eq!(d.context, 0, "tunnel ids are not part of the flow context");
    }

    #[test]
    fn cisco_metadata_sgt_is_stepped_over() {
        // Frame from mercury's tls_sgt.pcap layout: 0x8909, v1, len 1, opt 0x0001, SGT 2, then IPv4.
        let mut body = vec![0x01, 0x01, 0x00, 0x01, 0x00, 0x02, 0x08, 0x00];
        body.extend(ipv4_tcp(b"sgt"));
        let frame = eth(0x8909, &body);
        let d = decode(linktype::ETHERNET, &frame).expect("decodes");
        assert_eq!(d.payload, b"sgt");
    }

    #[test]
    fn cisco_metadata_after_vlan_tags_and_in_linux_sll() {
        // Found by the `decode` fuzz target: the SGT tag was only stepped
        // over right after the MAC addresses, so a tagged frame with a VLAN
        // (or captured with `-i any`) was not IP at all.
        let mut cmd = vec![0x01, 0x01, 0x00, 0x01, 0x00, 0x02, 0x08, 0x00];
        cmd.extend(ipv4_tcp(b"sgt"));
        let mut tagged = vec![0x00, 0x2a, 0x89, 0x09];
        tagged.extend(&cmd);
        let frame = eth(0x8100, &tagged);
        let d = decode(linktype::ETHERNET, &frame).expect("vlan, then cisco metadata");
        assert_eq!(d.payload, b"sgt");
        assert_eq!(d.vlans.ids().collect::<Vec<_>>(), [42]);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x89, 0x09];
        sll.extend(&cmd);
        assert_eq!(decode(linktype::LINUX_SLL, &sll).expect("sll, then cisco metadata").payload, b"sgt");
    }

    #[test]
    fn gre_ip() {
        let mut gre = vec![0x00, 0x00, 0x08, 0x00];
        gre.extend(ipv4_tcp(b"g"));
        let total = 20 + gre.len();
        let mut outer = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 47, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        outer.extend(gre);
        let d = decode(linktype::RAW, &outer).expect("gre");
        assert_eq!(d.tunnel, Some(Tunnel::Gre));
        assert_eq!(d.payload, b"g");
    }

    #[test]
    fn truncated_and_garbage_are_skips() {
        assert_eq!(decode(linktype::ETHERNET, &[1, 2, 3]), Err(Skip::LinkTruncated));
        assert_eq!(decode(999, &[0; 64]).map(|_| ()), Err(Skip::UnsupportedLinktype(999)));
        assert_eq!(decode(linktype::RAW, &[0x10; 40]).map(|_| ()), Err(Skip::NotIp));
        // Snap-length cut inside the payload: still decoded, marked truncated.
        let full = ipv4_tcp(b"abcdefgh");
        let d = decode(linktype::RAW, &full[..full.len() - 4]).expect("truncated");
        assert!(d.truncated);
        assert_eq!(d.payload, b"abcd");
    }

    /// Ethernet frames around a TCP segment, for the fast-path property.
    fn eth_tcp_variants(payload: &[u8]) -> Vec<Vec<u8>> {
        let v4 = ipv4_tcp(payload);
        let mut v6 = vec![0x60, 0, 0, 0];
        v6.extend(((20 + payload.len()) as u16).to_be_bytes());
        v6.extend([6, 64]);
        v6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain([0u8; 11].iter()).chain([1u8].iter()));
        v6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain([0u8; 11].iter()).chain([2u8].iter()));
        v6.extend(&v4[20..]);
        let mut opts = v4.clone();
        opts[0] = 0x46; // IHL 6: 4 bytes of options (the TCP header then reads shifted)
                        // Ethernet padding after the IP packet (short frames are padded to 60 bytes).
        let mut padded = eth(0x0800, &v4);
        padded.extend([0u8; 18]);
        let mut padded6 = eth(0x86dd, &v6);
        padded6.extend([0xffu8; 7]);
        vec![eth(0x0800, &v4), eth(0x86dd, &v6), eth(0x0800, &opts), eth(0x86dd, &v4), eth(0x0800, &v6), padded, padded6]
    }

    #[test]
    fn fast_path_takes_plain_tcp_and_leaves_the_rest() {
        let v = eth_tcp_variants(b"hello");
        assert!(ethernet_ip_tcp(&v[0]).is_some(), "IPv4");
        assert!(ethernet_ip_tcp(&v[1]).is_some(), "IPv6");
        assert_eq!(ethernet_ip_tcp(&v[0]).map(|d| d.payload), Some(&b"hello"[..]));
        let vlan = {
            let mut f = v[0].clone();
            f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
            f
        };
        assert!(ethernet_ip_tcp(&vlan).is_none(), "VLAN goes the full way");
        assert_eq!(decode(linktype::ETHERNET, &vlan).map(|d| d.payload), Ok(&b"hello"[..]));
    }

    proptest::proptest! {
        /// The fast path gives exactly what the full path gives, on valid,
        /// truncated and corrupted frames.
        #[test]
        fn fast_path_agrees_with_full_path(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            cut in 0usize..120,
            flip in 0usize..80,
            bits in 0u8..=255,
            flip2 in 0usize..80,
            bits2 in 0u8..=255,
        ) {
            for mut f in eth_tcp_variants(&payload) {
                if flip < f.len() {
                    f[flip] ^= bits;
                }
                if flip2 < f.len() {
                    f[flip2] ^= bits2;
                }
                let f = &f[..f.len().saturating_sub(cut % 40)];
                if let Some(fast) = ethernet_ip_tcp(f) {
                    proptest::prop_assert_eq!(Ok(fast), decode_full(linktype::ETHERNET, f));
                }
            }
        }

        #[test]
        fn never_panics(lt in 0u32..300, data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(lt, &data);
            let _ = decode(linktype::ETHERNET, &data);
            let _ = decode(linktype::RAW, &data);
        }
    }
}
