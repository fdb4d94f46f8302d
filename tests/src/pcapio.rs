//! Classic pcap files, read and written whole: enough for tests that make
//! variants of real captures (drop, reorder or split packets). Both byte
//! orders and both timestamp resolutions are read; a file is written back
//! with the header it was read with.

/// One packet record: its 16-byte header as in the file (byte order of the
/// file) and the captured frame.
#[derive(Debug, Clone)]
pub struct Record {
    pub header: [u8; 16],
    pub frame: Vec<u8>,
}

/// A classic pcap file: its 24-byte header, whether it is little-endian,
/// its link type, and its records.
#[derive(Debug, Clone)]
pub struct Pcap {
    pub header: [u8; 24],
    pub little_endian: bool,
    pub linktype: u32,
    pub records: Vec<Record>,
}

impl Pcap {
    /// Parse a classic pcap (not pcapng). `Err` names what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Pcap, String> {
        let header: [u8; 24] = bytes.get(..24).ok_or("shorter than a pcap header")?.try_into().map_err(|_| "header")?;
        let little_endian = match header[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => return Err("not a classic pcap".into()),
        };
        let u32_at = |b: &[u8], at: usize| {
            let a: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
            if little_endian { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        };
        let linktype = u32_at(&header, 20);
        let mut records = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let h: [u8; 16] = bytes[at..at + 16].try_into().expect("16 bytes");
            let caplen = u32_at(&h, 8) as usize;
            let frame = bytes.get(at + 16..at + 16 + caplen).ok_or_else(|| format!("record at byte {at} is cut short"))?;
            records.push(Record { header: h, frame: frame.to_vec() });
            at += 16 + caplen;
        }
        Ok(Pcap { header, little_endian, linktype, records })
    }

    /// Read and parse a file.
    pub fn read(path: &std::path::Path) -> Result<Pcap, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Pcap::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The file's bytes, with these records.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for r in &self.records {
            out.extend_from_slice(&r.header);
            out.extend_from_slice(&r.frame);
        }
        out
    }
}
