//! pcapng blocks (draft-ietf-opsawg-pcapng): sections with their own byte
//! order, interfaces with their own link type and clock, and the three packet
//! block kinds. Framing (type, both lengths) is checked here, the blocks are
//! parsed by `pcap-parser`.

use pcap_parser::pcapng::{
    parse_block_be, parse_block_le, Block, InterfaceDescriptionBlock, OptionCode, EPB_MAGIC, IDB_MAGIC, SHB_MAGIC, SPB_MAGIC,
};

use super::{nom_reason, saturate, u16_at, u32_at, Item, PacketIter, State, MAX_CAPLEN};

/// Obsolete pcapng Packet Block type, superseded by the EPB.
pub(super) const PB_MAGIC: u32 = 0x0000_0002;
const NS_PER_S: i128 = 1_000_000_000;

/// A pcapng interface, from its IDB.
#[derive(Debug, Clone, Copy)]
pub(super) struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_s: u64,
    /// `if_tsoffset`, seconds added to every timestamp.
    offset_s: i64,
}

impl Iface {
    fn ts_ns(&self, ts_high: u32, ts_low: u32) -> i64 {
        let units = (u128::from(ts_high) << 32) | u128::from(ts_low);
        let ns = units * NS_PER_S as u128 / u128::from(self.units_per_s);
        // `units` < 2^64, so `ns` < 2^94: both fit an i128.
        saturate(ns as i128 + i128::from(self.offset_s) * NS_PER_S)
    }

    /// Captured length of a packet block without a caplen field (SPB).
    fn caplen(&self, orig_len: u32, available: usize) -> usize {
        let mut n = (orig_len as usize).min(available);
        if self.snaplen != 0 {
            n = n.min(self.snaplen as usize);
        }
        n
    }
}

/// Units per second for an `if_tsresol` byte: 10^n, or 2^n when the top bit
/// is set.
fn units_per_second(tsresol: u8) -> Option<u64> {
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(u32::from(tsresol))
    } else {
        1u64.checked_shl(u32::from(tsresol & 0x7f))
    }
}

impl<'a> PacketIter<'a> {
    pub(super) fn next_pcapng(&mut self) -> Option<Item<'a>> {
        loop {
            let data = self.data;
            let start = self.pos;
            let rest = data.get(start..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            if rest.len() < 12 {
                return Some(Err(self.truncated_header(start, "pcapng block header", 12, rest.len())));
            }
            if u32_at(rest, 0, false) == Some(SHB_MAGIC) {
                // A new section, possibly in the other byte order.
                let section_be = match u32_at(rest, 8, true) {
                    Some(0x1a2b_3c4d) => true,
                    Some(0x4d3c_2b1a) => false,
                    other => {
                        let bom = other.unwrap_or_default();
                        return Some(Err(self.corrupt(start, "pcapng section header block", format!("bad byte-order magic {bom:#010x}"))));
                    }
                };
                if let State::PcapNg { big_endian, .. } = &mut self.state {
                    *big_endian = section_be;
                }
            }
            let be = match self.state {
                State::PcapNg { big_endian, .. } => big_endian,
                State::Pcap { .. } => return None,
            };
            let block_type = u32_at(rest, 0, be).unwrap_or_default();
            let len = u32_at(rest, 4, be).unwrap_or_default();
            if len < 12 || len & 3 != 0 {
                return Some(Err(self.corrupt(
                    start,
                    "pcapng block",
                    format!("block length {len} (must be a multiple of 4 and at least 12)"),
                )));
            }
            let len = len as usize;
            if len > rest.len() {
                return Some(Err(self.truncated_record(start, "pcapng block", len as u64, rest.len())));
            }
            let trailer = u32_at(rest, len - 4, be).unwrap_or_default();
            if trailer as usize != len {
                return Some(Err(self.corrupt(start, "pcapng block", format!("block length {len} at the start but {trailer} at the end"))));
            }
            let block = &rest[..len];
            self.pos = start + len;
            self.prefetch_ahead();
            let item = match block_type {
                SHB_MAGIC | IDB_MAGIC | EPB_MAGIC | SPB_MAGIC => self.ng_block(block, start, be),
                PB_MAGIC => self.ng_obsolete_packet(block, start, be),
                // NRB, ISB, DSB, custom, journal, process... : not packets.
                _ => None,
            };
            if item.is_some() {
                return item;
            }
        }
    }

    /// Parse one framed SHB/IDB/EPB/SPB with `pcap-parser`.
    fn ng_block(&mut self, block: &'a [u8], start: usize, be: bool) -> Option<Item<'a>> {
        let parsed = if be { parse_block_be(block) } else { parse_block_le(block) };
        let block = match parsed {
            Ok((_, b)) => b,
            Err(e) => {
                let what = match u32_at(block, 0, be) {
                    Some(SHB_MAGIC) => "pcapng section header block",
                    Some(IDB_MAGIC) => "pcapng interface description block",
                    Some(EPB_MAGIC) => "pcapng enhanced packet block",
                    _ => "pcapng simple packet block",
                };
                return Some(Err(self.corrupt(start, what, nom_reason(&e))));
            }
        };
        let State::PcapNg { ifaces, last_ts, .. } = &mut self.state else {
            return None;
        };
        match block {
            Block::SectionHeader(shb) => {
                if shb.major_version != 1 {
                    return Some(Err(self.corrupt(
                        start,
                        "pcapng section header block",
                        format!("unsupported version {}.{}", shb.major_version, shb.minor_version),
                    )));
                }
                ifaces.clear();
                None
            }
            Block::InterfaceDescription(idb) => match iface(&idb, be) {
                Ok(i) => {
                    ifaces.push(i);
                    None
                }
                Err(reason) => Some(Err(self.corrupt(start, "pcapng interface description block", reason))),
            },
            Block::EnhancedPacket(epb) => {
                const WHAT: &str = "pcapng enhanced packet block";
                let Some(ifc) = ifaces.get(epb.if_id as usize).copied() else {
                    let n = ifaces.len();
                    return Some(Err(self.corrupt(
                        start,
                        WHAT,
                        format!("packet on interface {}, but the section declares {n}", epb.if_id),
                    )));
                };
                if epb.caplen > MAX_CAPLEN {
                    return Some(Err(self.corrupt(
                        start,
                        WHAT,
                        format!("captured length {} exceeds the {MAX_CAPLEN}-byte limit", epb.caplen),
                    )));
                }
                let ts = ifc.ts_ns(epb.ts_high, epb.ts_low);
                *last_ts = ts;
                // `data` carries the padding; the crate checked that the
                // padded caplen fits in the block.
                let n = (epb.caplen as usize).min(epb.data.len());
                let data = epb.data.get(..n).unwrap_or(epb.data);
                let orig_len = epb.origlen;
                Some(Ok(self.packet(ts, ifc.linktype, data, orig_len, start)))
            }
            Block::SimplePacket(spb) => {
                const WHAT: &str = "pcapng simple packet block";
                let Some(ifc) = ifaces.first().copied() else {
                    return Some(Err(self.corrupt(start, WHAT, "no interface declared in this section")));
                };
                let n = ifc.caplen(spb.origlen, spb.data.len());
                if n > MAX_CAPLEN as usize {
                    return Some(Err(self.corrupt(start, WHAT, format!("captured length {n} exceeds the {MAX_CAPLEN}-byte limit"))));
                }
                let data = spb.data.get(..n).unwrap_or(spb.data);
                let ts = *last_ts;
                Some(Ok(self.packet(ts, ifc.linktype, data, spb.origlen, start)))
            }
            _ => None,
        }
    }

    /// The obsolete Packet Block (type 2), which `pcap-parser` does not
    /// parse: 16-bit interface id and drops count, then the EPB fields.
    fn ng_obsolete_packet(&mut self, block: &'a [u8], start: usize, be: bool) -> Option<Item<'a>> {
        const WHAT: &str = "pcapng packet block";
        let State::PcapNg { ifaces, last_ts, .. } = &mut self.state else {
            return None;
        };
        if block.len() < 32 {
            let n = block.len();
            return Some(Err(self.corrupt(start, WHAT, format!("block length {n} is shorter than the 32-byte minimum"))));
        }
        let if_id = u16_at(block, 8, be).unwrap_or_default();
        let hi = u32_at(block, 12, be).unwrap_or_default();
        let lo = u32_at(block, 16, be).unwrap_or_default();
        let caplen = u32_at(block, 20, be).unwrap_or_default();
        let orig_len = u32_at(block, 24, be).unwrap_or_default();
        let Some(ifc) = ifaces.get(usize::from(if_id)).copied() else {
            let n = ifaces.len();
            return Some(Err(self.corrupt(start, WHAT, format!("packet on interface {if_id}, but the section declares {n}"))));
        };
        if caplen > MAX_CAPLEN {
            return Some(Err(self.corrupt(start, WHAT, format!("captured length {caplen} exceeds the {MAX_CAPLEN}-byte limit"))));
        }
        // 28 header bytes, the data, and the 4-byte trailing length.
        let Some(data) = block.get(28..28 + caplen as usize).filter(|_| 28 + caplen as usize + 4 <= block.len()) else {
            let n = block.len();
            return Some(Err(self.corrupt(start, WHAT, format!("captured length {caplen} does not fit in the {n}-byte block"))));
        };
        let ts = ifc.ts_ns(hi, lo);
        *last_ts = ts;
        Some(Ok(self.packet(ts, ifc.linktype, data, orig_len, start)))
    }
}

/// Link type, snaplen and clock of an IDB. `pcap-parser` reads
/// `if_tsoffset` as little-endian whatever the section's byte order, and its
/// power-of-2 `if_tsresol` always fails, so both are decoded here.
fn iface(idb: &InterfaceDescriptionBlock<'_>, big_endian: bool) -> Result<Iface, String> {
    let mut tsresol = None;
    let mut offset_s = None;
    for opt in &idb.options {
        let Ok(v) = opt.as_bytes() else { continue };
        match opt.code {
            OptionCode::IfTsresol if tsresol.is_none() && v.len() == 1 => {
                tsresol = Some(v[0]);
            }
            OptionCode::IfTsoffset if offset_s.is_none() && v.len() == 8 => {
                let a: [u8; 8] = v.try_into().unwrap_or_default();
                offset_s = Some(if big_endian { i64::from_be_bytes(a) } else { i64::from_le_bytes(a) });
            }
            _ => {}
        }
    }
    let tsresol = tsresol.unwrap_or(6);
    let units_per_s = units_per_second(tsresol).ok_or_else(|| format!("if_tsresol {tsresol:#04x} is out of range"))?;
    Ok(Iface { linktype: (idb.linktype.0 as u32) & 0xffff, snaplen: idb.snaplen, units_per_s, offset_s: offset_s.unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

    #[test]
    fn pcapng_interfaces_with_own_linktype_and_resolution() {
        for be in [false, true] {
            let f = open("t.pcapng", two_interfaces(be));
            assert_eq!(f.format(), Format::PcapNg);
            assert_eq!(
                all(&f),
                vec![
                    Ok((1_500_000_000, 1, b"eth".to_vec())),
                    Ok((2_000_000_123, 101, b"raw!!".to_vec())),
                    // SPB: first interface, previous packet's timestamp.
                    Ok((2_000_000_123, 1, b"sp".to_vec())),
                ],
                "be={be}"
            );
            let offsets: Vec<u64> = f.packets().map(|p| p.expect("packet").offset).collect();
            let (s, i0, i1) = (28u64, 32u64, 40u64);
            let first = s + i0 + i1 + 20;
            assert_eq!(offsets[0], first, "be={be}");
            assert_eq!(offsets[1], first + 36, "be={be}");
            let p = f.packets().next().expect("one").expect("ok");
            assert!(f.bytes().as_ptr_range().contains(&p.data.as_ptr()));
        }
    }

    #[test]
    fn pcapng_power_of_two_resolution_and_offset() {
        for be in [false, true] {
            let mut b = shb(be);
            // 2^10 units per second, clock starts at 1_600_000_000 s.
            b.extend(idb(be, 113, 0, Some(0x8a), Some(1_600_000_000)));
            // 10^3 units per second, negative offset.
            b.extend(idb(be, 0, 0, Some(3), Some(-5)));
            b.extend(epb(be, 0, 3 * 1024 + 512, b"a"));
            b.extend(epb(be, 1, 10_250, b"b"));
            assert_eq!(
                all(&open("r.pcapng", b)),
                vec![Ok((1_600_000_003 * S + 500_000_000, 113, b"a".to_vec())), Ok((5 * S + 250_000_000, 0, b"b".to_vec())),],
                "be={be}"
            );
        }
    }

    #[test]
    fn pcapng_sections_switch_byte_order_and_reset_interfaces() {
        let mut b = shb(false);
        b.extend(idb(false, 1, 0, None, None));
        b.extend(idb(false, 101, 0, None, None));
        b.extend(epb(false, 1, 1, b"s1"));
        b.extend(shb(true));
        b.extend(idb(true, 228, 0, Some(9), None));
        b.extend(epb(true, 0, 7, b"s2"));
        b.extend(obsolete_pb(true, 0, 8, b"old"));
        b.extend(epb(true, 1, 9, b"gone"));
        let got = all(&open("m.pcapng", b));
        assert_eq!(got[..3], [Ok((1000, 101, b"s1".to_vec())), Ok((7, 228, b"s2".to_vec())), Ok((8, 228, b"old".to_vec())),]);
        let err = got[3].clone().expect_err("interface 1 is from section 1");
        assert!(err.contains("packet on interface 1, but the section declares 1"), "{err}");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn pcapng_spb_is_cut_to_orig_len_and_snaplen() {
        let mut b = shb(false);
        b.extend(idb(false, 1, 3, None, None));
        b.extend(spb(false, 5, b"abcde")); // snaplen 3
        b.extend(spb(false, 2, b"xy")); // padded to 4 in the block
        let got = all(&open("s.pcapng", b));
        assert_eq!(got, vec![Ok((0, 1, b"abc".to_vec())), Ok((0, 1, b"xy".to_vec()))]);
    }

    #[test]
    fn pcapng_bad_blocks() {
        let good = {
            let mut b = shb(false);
            b.extend(idb(false, 1, 0, None, None));
            b.extend(epb(false, 0, 1, b"ok"));
            b
        };
        let at = good.len();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Length not a multiple of 4.
            (
                {
                    let mut b = epb(false, 0, 2, b"x");
                    b[4..8].copy_from_slice(&13u32.to_le_bytes());
                    b
                },
                "corrupt pcapng block at byte {at}: block length 13 (must be a multiple of 4 and at least 12)",
            ),
            // Leading and trailing lengths disagree.
            (
                {
                    let mut b = epb(false, 0, 2, b"x");
                    let n = b.len();
                    b[n - 4..].copy_from_slice(&64u32.to_le_bytes());
                    b
                },
                "corrupt pcapng block at byte {at}: block length 36 at the start but 64 at the end",
            ),
            // Cut short.
            (epb(false, 0, 2, b"xxxx")[..30].to_vec(), "truncated pcapng block at byte {at} (header says 36 bytes, 30 remain)"),
            (vec![6, 0, 0], "truncated pcapng block header at byte {at} (12 bytes needed, 3 remain)"),
            // Packet for an undeclared interface.
            (epb(false, 7, 2, b"x"), "packet on interface 7, but the section declares 1"),
            // caplen larger than the block.
            (
                {
                    let mut b = epb(false, 0, 2, b"xxxx");
                    b[20..24].copy_from_slice(&40u32.to_le_bytes());
                    b
                },
                "corrupt pcapng enhanced packet block at byte {at}",
            ),
            // caplen above the limit.
            (
                {
                    let mut b = epb(false, 0, 2, b"xxxx");
                    b[20..24].copy_from_slice(&(1u32 << 24).to_le_bytes());
                    b
                },
                "corrupt pcapng enhanced packet block at byte {at}",
            ),
            // caplen above the limit, in a block that holds it.
            (epb(false, 0, 2, &vec![0u8; MAX_CAPLEN as usize + 1]), "captured length 262145 exceeds the 262144-byte limit"),
            // Bad byte-order magic in a second SHB.
            (
                {
                    let mut b = shb(false);
                    b[8..12].copy_from_slice(&[1, 2, 3, 4]);
                    b
                },
                "bad byte-order magic 0x01020304",
            ),
            // if_tsresol out of range.
            (idb(false, 1, 0, Some(40), None), "if_tsresol 0x28 is out of range"),
        ];
        for (tail, want) in cases {
            let want = want.replace("{at}", &at.to_string());
            let want = want.as_str();
            let mut b = good.clone();
            b.extend(&tail);
            let f = open("b.pcapng", b);
            let got = all(&f);
            assert_eq!(got[0], Ok((1000, 1, b"ok".to_vec())), "{want}");
            assert_eq!(got.len(), 2, "{want}");
            let err = got[1].clone().expect_err("error");
            assert!(err.contains(want), "{err} does not contain {want}");
            assert!(err.starts_with("b.pcapng: "), "{err}");
            assert!(err.contains(&format!("at byte {at}")), "{err}");
        }
    }
}
