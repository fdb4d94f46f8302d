//! Classic pcap records (draft-ietf-opsawg-pcap): a 16-byte record header
//! (24 bytes in the "modified" variant) in the file's byte order, then the
//! captured bytes.

use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, LegacyPcapBlock};

use super::{nom_reason, u32_at, Item, PacketIter, MAX_CAPLEN};

/// Record headers in a row that [`record_boundary`] wants before it
/// believes a record starts somewhere.
pub const CHAIN: usize = 16;

/// How far past its starting point [`record_boundary`] looks: more than
/// the largest record, so a real boundary is always inside the window.
const WINDOW: usize = MAX_CAPLEN as usize + (64 << 10);

/// See [`super::CaptureFile::record_boundary`].
pub(super) fn record_boundary(data: &[u8], from: usize, big_endian: bool, nanos: bool, modified: bool) -> Option<usize> {
    let hdr = if modified { 24 } else { 16 };
    let frac_limit: u32 = if nanos { 1_000_000_000 } else { 1_000_000 };
    let end = data.len();
    let last = from.checked_add(WINDOW)?.min(end);
    // One plausible header at `o`: where the next one would start.
    let record = |o: usize, prev_sec: Option<u32>| -> Option<(usize, u32)> {
        let sec = u32_at(data, o, big_endian)?;
        let frac = u32_at(data, o + 4, big_endian)?;
        let caplen = u32_at(data, o + 8, big_endian)?;
        let origlen = u32_at(data, o + 12, big_endian)?;
        let next = o.checked_add(hdr)?.checked_add(caplen as usize)?;
        let close_in_time = prev_sec.is_none_or(|p| sec.abs_diff(p) <= 86_400);
        (frac < frac_limit && caplen <= MAX_CAPLEN && caplen <= origlen && next <= end && close_in_time).then_some((next, sec))
    };
    let chain_at = |o: usize| {
        let mut at = o;
        let mut prev = None;
        for _ in 0..CHAIN {
            if at == end {
                return true;
            }
            match record(at, prev) {
                Some((next, sec)) => {
                    at = next;
                    prev = Some(sec);
                }
                None => return false,
            }
        }
        true
    };
    let found = (from..last).find(|&o| chain_at(o))?;
    // A header read 4 bytes late (the sub-second part as seconds, the
    // captured length as the sub-second part, the length on the wire as the
    // captured length, the frame's first bytes as its length on the wire)
    // chains as well as the real one wherever frames are not cut short and
    // packets are close in time: every record is the same shape, so the
    // misreading stays in step for as long as one cares to follow it. When
    // `from` falls just past a real start, the first chain found is that
    // misreading; the real start is then less than a header before it.
    // Not into the 24-byte file header.
    Some((found.saturating_sub(hdr - 1).max(24)..found).find(|&o| chain_at(o)).unwrap_or(found))
}

impl<'a> PacketIter<'a> {
    pub(super) fn next_pcap(&mut self, big_endian: bool, nanos: bool, modified: bool, linktype: u32) -> Option<Item<'a>> {
        const WHAT: &str = "packet record";
        let data = self.data;
        let start = self.pos;
        let rest = data.get(start..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let hdr_len = if modified { 24 } else { 16 };
        if rest.len() < hdr_len {
            return Some(Err(self.truncated_header(start, "packet record header", hdr_len, rest.len())));
        }
        // Check the claimed length before parsing: a record claiming 16 MB
        // is corruption, and one running past the end is a truncated file.
        let caplen = u32_at(rest, 8, big_endian).unwrap_or(u32::MAX);
        if caplen > MAX_CAPLEN {
            return Some(Err(self.corrupt(start, WHAT, format!("captured length {caplen} exceeds the {MAX_CAPLEN}-byte limit"))));
        }
        let have = rest.len() - hdr_len;
        if caplen as usize > have {
            return Some(Err(self.truncated_record(start, WHAT, u64::from(caplen), have)));
        }
        let parsed = if modified {
            parse_pcap_frame_modified(rest)
        } else if big_endian {
            parse_pcap_frame_be(rest)
        } else {
            parse_pcap_frame(rest)
        };
        let (left, rec): (&[u8], LegacyPcapBlock<'a>) = match parsed {
            Ok(x) => x,
            Err(e) => return Some(Err(self.corrupt(start, WHAT, nom_reason(&e)))),
        };
        self.pos = data.len() - left.len();
        self.prefetch_ahead();
        let frac = i64::from(rec.ts_usec);
        let ts_ns = i64::from(rec.ts_sec) * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Some(Ok(self.packet(ts_ns, linktype, rec.data, rec.origlen, start)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

    // ---- classic pcap -----------------------------------------------------

    /// Records that are all the same shape (never cut short, close in time)
    /// also chain when read 4 bytes late: a search that starts just past a
    /// record's start must still find a real start, not the misreading.
    #[test]
    fn a_boundary_search_is_not_fooled_by_headers_read_late() {
        let frame = [0x02u8, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x00];
        let mut payload = frame.to_vec();
        payload.resize(1514, 0x5a);
        for (be, nanos) in [(false, false), (true, false), (false, true)] {
            let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut bytes = pcap(be, nanos, 1, &[]);
            for i in 0..40u32 {
                // Not cut short: the length on the wire is the captured length.
                for v in [1_767_603_602, 19_267 + 3 * i, 1514, 1514] {
                    bytes.extend(u32b(v));
                }
                bytes.extend(&payload);
            }
            let starts: Vec<usize> = (0..40).map(|i| 24 + i * (16 + 1514)).collect();
            for from in 24..starts[3] {
                let b = super::record_boundary(&bytes, from, be, nanos, false).expect("a boundary in range");
                assert!(starts.contains(&b), "from {from}: {b} is not a record start (be {be}, nanos {nanos})");
                assert!(b + 15 >= from, "from {from}: {b} is more than a header before it");
            }
        }
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for be in [false, true] {
            for nanos in [false, true] {
                let recs: &[(u32, u32, &[u8])] = &[(10, 5, b"ab"), (1_700_000_000, 999_999, b"cde")];
                let bytes = pcap(be, nanos, 101, recs);
                let f = open("t.pcap", bytes.clone());
                assert_eq!(f.format(), Format::Pcap);
                let mul = if nanos { 1 } else { 1000 };
                assert_eq!(
                    all(&f),
                    vec![Ok((10 * S + 5 * mul, 101, b"ab".to_vec())), Ok((1_700_000_000 * S + 999_999 * mul, 101, b"cde".to_vec())),],
                    "be={be} nanos={nanos}"
                );
                let p: Vec<Packet<'_>> = f.packets().map(|p| p.expect("packet")).collect();
                assert_eq!((p[0].offset, p[1].offset), (24, 24 + 16 + 2));
                assert_eq!((p[0].orig_len, p[1].orig_len), (102, 103));
            }
        }
    }

    #[test]
    fn packet_data_is_borrowed_not_copied() {
        let f = open("t.pcap", pcap(false, false, 1, &[(1, 0, b"payload")]));
        let p = f.packets().next().expect("one").expect("ok");
        let whole = f.bytes().as_ptr_range();
        assert!(whole.contains(&p.data.as_ptr()));
        assert_eq!(p.data.as_ptr() as usize - whole.start as usize, 24 + 16);
    }

    #[test]
    fn pcap_linktype_fcs_bits_are_masked() {
        // FCS length 2 in the top nibble, the "FCS present" bit, LINKTYPE 105.
        let f = open("f.pcap", pcap(true, false, 0x2400_0069, &[(1, 0, b"x")]));
        assert_eq!(all(&f), vec![Ok((S, 105, b"x".to_vec()))]);
    }

    #[test]
    fn pcap_modified_format() {
        let mut b = pcap_header(false, 0xa1b2_cd34, 1);
        b.extend(pcap_record(false, 3, 7, b"mod"));
        // Kuznetzov extra fields: ifindex, protocol, pkt_type, padding.
        let at = b.len() - 3;
        b.splice(at..at, [0u8; 8]);
        assert_eq!(all(&open("m.pcap", b)), vec![Ok((3 * S + 7000, 1, b"mod".to_vec()))]);
    }

    #[test]
    fn pcap_truncated_tail_after_good_packets() {
        let mut bytes = pcap(false, false, 1, &[(1, 0, b"good"), (2, 0, b"cut-short")]);
        bytes.truncate(bytes.len() - 3);
        let got = all(&open("capture.pcap", bytes));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok((S, 1, b"good".to_vec())));
        assert_eq!(got[1], Err("capture.pcap: truncated packet record at byte 44 (header says 9 bytes, 6 remain)".into()));
    }

    #[test]
    fn pcap_truncated_record_header() {
        let mut bytes = pcap(true, true, 1, &[(1, 0, b"good")]);
        bytes.extend([1, 2, 3, 4, 5]);
        let got = all(&open("t.pcap", bytes));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err("t.pcap: truncated packet record header at byte 44 (16 bytes needed, 5 remain)".into()));
    }

    #[test]
    fn pcap_huge_caplen_is_corruption() {
        let mut bytes = pcap(false, false, 1, &[(1, 0, b"ok")]);
        let mut rec = pcap_record(false, 2, 0, b"");
        rec[8..12].copy_from_slice(&(16u32 << 20).to_le_bytes());
        bytes.extend(rec);
        bytes.extend(vec![0u8; 64]);
        let f = open("h.pcap", bytes);
        assert_eq!(all(&f).len(), 2);
        assert_eq!(last_err(&f), "h.pcap: corrupt packet record at byte 42: captured length 16777216 exceeds the 262144-byte limit");
    }
}
