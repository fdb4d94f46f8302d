//! MDM inventory export → identity index: which MDM device id a MAC
//! address, a user name or a certificate common name (CN) belongs to.
//! Sans-IO: the caller hands in the export's bytes.
//!
//! Two forms (documented in `docs/bindings.md`):
//! * **CSV** with a header row (RFC 4180 quoting, as spreadsheet and MDM
//!   console exports write it);
//! * **JSON**: an array of objects, or one object per line (JSON lines).
//!
//! Columns (CSV) and keys (JSON) are matched after lower-casing and dropping
//! everything but letters and digits, so `Wi-Fi MAC`, `wifi_mac_address` and
//! `wiFiMacAddress` all read as `wifimac…`. Each role has a list of accepted
//! names ([`ColumnMap::default`]); a deployment can replace them. A JSON
//! value may be a string or an array of strings; a string or a CSV cell may
//! hold several values separated by `;`, `|`, `,` or spaces.
//!
//! MACs are normalised to lower-case `aa:bb:cc:dd:ee:ff` from any of
//! `AA-BB-CC-DD-EE-FF`, `aa:bb:…`, `aabb.ccdd.eeff`, `AABBCCDDEEFF`; user
//! names and CNs are compared case-insensitively. An identity claimed by
//! two devices is ambiguous and maps to none (counted).

use std::collections::HashMap;

use serde_json::Value;

/// Most devices read from one export.
pub const MAX_DEVICES: usize = 1_000_000;
/// Largest export accepted, bytes.
pub const MAX_BYTES: usize = 512 * 1024 * 1024;

/// Normalise a MAC address; `None` if it is not 12 hex digits in one of the
/// usual spellings.
pub fn normalize_mac(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() > 17 {
        return None;
    }
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Separators, if any, must be one kind at the usual places.
    let seps: Vec<(usize, char)> = s.char_indices().filter(|(_, c)| !c.is_ascii_hexdigit()).collect();
    let ok = match seps.len() {
        0 => true,
        5 => seps.iter().all(|&(i, c)| (c == ':' || c == '-') && c == seps[0].1 && i % 3 == 2),
        2 => seps.iter().all(|&(i, c)| c == '.' && i % 5 == 4),
        _ => false,
    };
    if !ok {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    let b = h.as_bytes();
    let parts: Vec<&str> = (0..6).map(|i| std::str::from_utf8(&b[2 * i..2 * i + 2]).unwrap_or("00")).collect();
    Some(parts.join(":"))
}

/// Which identity matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A MAC address (normalised, see [`normalize_mac`]).
    Mac,
    /// A certificate's common name.
    CertCn,
    /// A user name (UPN, e-mail, ...).
    User,
}

impl IdentityKind {
    /// `identity.kind` as written in the feed (`mac`, `cert_cn`, `user`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Mac => "mac",
            IdentityKind::CertCn => "cert_cn",
            IdentityKind::User => "user",
        }
    }
}

/// Accepted column/key names per role, already normalised (lower-case
/// letters and digits only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    /// Names of the MDM device id column.
    pub device_id: Vec<String>,
    /// Names of MAC address columns.
    pub mac: Vec<String>,
    /// Names of user name columns.
    pub user: Vec<String>,
    /// Names of certificate CN columns.
    pub cert_cn: Vec<String>,
}

/// Lower-case, letters and digits only.
pub fn norm_col(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

impl Default for ColumnMap {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| norm_col(s)).collect();
        Self {
            // pinwatch's own name first, then common export headers (Intune
            // "Device ID"/Graph `id`, Jamf "Mobile Device ID"/"Jamf Pro ID",
            // Workspace ONE "Device ID").
            device_id: v(&["device_id", "mdm_device_id", "Device ID", "Mobile Device ID", "Jamf Pro ID", "Management ID", "id"]),
            mac: v(&[
                "mac",
                "macs",
                "wifi_mac",
                "Wi-Fi MAC",
                "wiFiMacAddress",
                "Wi-Fi MAC Address",
                "wifi_mac_address",
                "ethernet_mac",
                "Ethernet MAC",
                "ethernetMacAddress",
                "MAC Address",
            ]),
            user: v(&[
                "user",
                "user_name",
                "username",
                "User Name",
                "userPrincipalName",
                "Primary user UPN",
                "UPN",
                "email",
                "Email Address",
                "emailAddress",
            ]),
            cert_cn: v(&["cert_cn", "certificate_cn", "Certificate Common Name", "common_name", "cn"]),
        }
    }
}

/// Counters of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryReport {
    /// Rows read with a device id.
    pub devices: u64,
    /// Rows without a device id (or not an object), skipped.
    pub rows_skipped: u64,
    /// Cells in a MAC column that are not a MAC.
    pub bad_macs: u64,
    /// Identities claimed by more than one device (they map to none).
    pub ambiguous: u64,
    /// The export stopped at [`MAX_DEVICES`] or a parse error; see `error`.
    pub truncated: bool,
    /// The first parse error (or a missing device id column), if any.
    pub error: Option<String>,
}

/// identity → device id.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    map: HashMap<(IdentityKind, String), Option<String>>,
    report: InventoryReport,
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn split_multi(s: &str) -> impl Iterator<Item = &str> {
    s.split([';', '|', ' ', ',']).map(str::trim).filter(|s| !s.is_empty())
}

impl Inventory {
    /// Counters of the load.
    pub fn report(&self) -> &InventoryReport {
        &self.report
    }

    /// True when no identity is known (nothing loaded, or no row had one).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn add(&mut self, kind: IdentityKind, key: String, device: &str) {
        match self.map.get_mut(&(kind, key.clone())) {
            None => {
                self.map.insert((kind, key), Some(device.to_owned()));
            }
            Some(Some(d)) if d == device => {}
            Some(slot @ Some(_)) => {
                *slot = None;
                self.report.ambiguous += 1;
            }
            Some(None) => {}
        }
    }

    fn add_row(&mut self, device: &str, macs: &[&str], users: &[&str], cns: &[&str]) {
        self.report.devices += 1;
        for m in macs {
            match normalize_mac(m) {
                Some(m) => self.add(IdentityKind::Mac, m, device),
                None => self.report.bad_macs += 1,
            }
        }
        for u in users {
            self.add(IdentityKind::User, u.to_lowercase(), device);
        }
        for c in cns {
            self.add(IdentityKind::CertCn, c.to_lowercase(), device);
        }
    }

    /// Read a CSV export (header row first).
    pub fn from_csv(data: &[u8], cols: &ColumnMap) -> Inventory {
        let mut inv = Inventory::default();
        let data = &data[..data.len().min(MAX_BYTES)];
        let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(data);
        let header: Vec<String> = match rdr.headers() {
            Ok(h) => h.iter().map(norm_col).collect(),
            Err(e) => {
                inv.report.error = Some(format!("header: {e}"));
                return inv;
            }
        };
        let find = |names: &[String]| -> Vec<usize> {
            // In the order of `names` (the first accepted name present wins
            // for the device id; every present one counts for identities).
            let mut v: Vec<usize> = Vec::new();
            for i in names.iter().filter_map(|n| header.iter().position(|h| h == n)) {
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            v
        };
        let (id_cols, mac_cols, user_cols, cn_cols) = (find(&cols.device_id), find(&cols.mac), find(&cols.user), find(&cols.cert_cn));
        let Some(&id_col) = id_cols.first() else {
            inv.report.error = Some("no device id column".into());
            return inv;
        };
        for rec in rdr.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    inv.report.truncated = true;
                    inv.report.error = Some(format!("row: {e}"));
                    break;
                }
            };
            if inv.report.devices as usize >= MAX_DEVICES {
                inv.report.truncated = true;
                break;
            }
            let Some(dev) = rec.get(id_col).filter(|s| !s.is_empty()) else {
                inv.report.rows_skipped += 1;
                continue;
            };
            let cells = |cs: &[usize]| -> Vec<&str> { cs.iter().filter_map(|&i| rec.get(i)).flat_map(split_multi).collect() };
            let (m, u, c) = (cells(&mac_cols), cells(&user_cols), cells(&cn_cols));
            let dev = dev.to_owned();
            inv.add_row(&dev, &m, &u, &c);
        }
        inv
    }

    /// Read a JSON export: an array of objects, or JSON lines.
    pub fn from_json(data: &[u8], cols: &ColumnMap) -> Inventory {
        let mut inv = Inventory::default();
        let data = &data[..data.len().min(MAX_BYTES)];
        let text = String::from_utf8_lossy(data);
        let trimmed = text.trim_start();
        let rows: Vec<Value> = if trimmed.starts_with('[') {
            match serde_json::from_str::<Vec<Value>>(trimmed) {
                Ok(v) => v,
                Err(e) => {
                    inv.report.error = Some(format!("json: {e}"));
                    return inv;
                }
            }
        } else {
            let mut v = Vec::new();
            for (n, line) in trimmed.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(x) => v.push(x),
                    Err(e) => {
                        inv.report.rows_skipped += 1;
                        if inv.report.error.is_none() {
                            inv.report.error = Some(format!("line {}: {e}", n + 1));
                        }
                    }
                }
            }
            v
        };
        for row in rows {
            if inv.report.devices as usize >= MAX_DEVICES {
                inv.report.truncated = true;
                break;
            }
            let Value::Object(obj) = row else {
                inv.report.rows_skipped += 1;
                continue;
            };
            let by: HashMap<String, &Value> = obj.iter().map(|(k, v)| (norm_col(k), v)).collect();
            let strings = |names: &[String]| -> Vec<String> {
                let mut out = Vec::new();
                let mut seen: Vec<&String> = Vec::new();
                for n in names {
                    if seen.contains(&n) {
                        continue;
                    }
                    seen.push(n);
                    match by.get(n) {
                        Some(Value::String(s)) => out.extend(split_multi(s).map(str::to_owned)),
                        Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
                        Some(Value::Number(x)) => out.push(x.to_string()),
                        _ => {}
                    }
                }
                out
            };
            let Some(dev) = strings(&cols.device_id).into_iter().next() else {
                inv.report.rows_skipped += 1;
                continue;
            };
            let (m, u, c) = (strings(&cols.mac), strings(&cols.user), strings(&cols.cert_cn));
            inv.add_row(&dev, &strs(&m), &strs(&u), &strs(&c));
        }
        inv
    }

    /// The device of one identity (`None` if unknown or ambiguous).
    pub fn lookup(&self, kind: IdentityKind, value: &str) -> Option<&str> {
        let key = match kind {
            IdentityKind::Mac => normalize_mac(value)?,
            _ => value.trim().to_lowercase(),
        };
        self.map.get(&(kind, key)).and_then(|d| d.as_deref())
    }

    /// Resolve the identities a RADIUS or DHCP record carries, strongest
    /// first: the MAC, then the user name as a certificate CN, then as a
    /// user name (also without a `host/` prefix, as Windows machine
    /// authentication sends it). Returns the device and the identity that
    /// matched.
    pub fn resolve(&self, mac: Option<&str>, user: Option<&str>) -> Option<(&str, IdentityKind, String)> {
        if let Some(m) = mac.and_then(normalize_mac) {
            if let Some(d) = self.lookup(IdentityKind::Mac, &m) {
                return Some((d, IdentityKind::Mac, m));
            }
        }
        let user = user.map(str::trim).filter(|u| !u.is_empty())?;
        let bare = user.strip_prefix("host/").unwrap_or(user);
        for kind in [IdentityKind::CertCn, IdentityKind::User] {
            for u in [user, bare] {
                if let Some(d) = self.lookup(kind, u) {
                    return Some((d, kind, u.to_owned()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_mac_spellings() {
        for s in ["AA-BB-CC-00-11-2F", "aa:bb:cc:00:11:2f", "aabb.cc00.112f", "AABBCC00112F"] {
            assert_eq!(normalize_mac(s).as_deref(), Some("aa:bb:cc:00:11:2f"), "{s}");
        }
        for s in ["", "aa:bb:cc:00:11", "aa:bb:cc:00:11:2g", "aa:bb-cc:00:11:2f", "a:abb:cc:00:11:2f", "10.0.0.1", "aabbcc00112f00"] {
            assert_eq!(normalize_mac(s), None, "{s}");
        }
    }

    #[test]
    fn inventory_csv_intune_like_headers() {
        let csv = "Device name,Device ID,Wi-Fi MAC,Ethernet MAC,Primary user UPN,Serial number\n\
                   pixel-7,dev-1,AA-BB-CC-00-11-22,,alice@corp.example,SER1\n\
                   \"galaxy, s23\",dev-2,aabbcc001133,aa:bb:cc:00:11:44,bob@corp.example,SER2\n\
                   shared,dev-3,not-a-mac,,bob@corp.example,SER3\n\
                   ,,aa:bb:cc:00:11:55,,,\n";
        let inv = Inventory::from_csv(csv.as_bytes(), &ColumnMap::default());
        let r = inv.report();
        assert_eq!((r.devices, r.rows_skipped, r.bad_macs, r.ambiguous), (3, 1, 1, 1), "{r:?}");
        assert_eq!(inv.lookup(IdentityKind::Mac, "aa:bb:cc:00:11:22"), Some("dev-1"));
        assert_eq!(inv.lookup(IdentityKind::Mac, "AA-BB-CC-00-11-44"), Some("dev-2"));
        assert_eq!(inv.lookup(IdentityKind::User, "ALICE@corp.example"), Some("dev-1"));
        // bob has two devices: ambiguous, maps to none.
        assert_eq!(inv.lookup(IdentityKind::User, "bob@corp.example"), None);
        assert_eq!(inv.resolve(Some("AA-BB-CC-00-11-33"), Some("bob@corp.example")).map(|x| x.0), Some("dev-2"));
        assert_eq!(inv.resolve(None, Some("alice@corp.example")).map(|x| (x.0, x.1)), Some(("dev-1", IdentityKind::User)));
    }

    #[test]
    fn inventory_json_array_and_lines() {
        let arr = r#"[{"id":"enterprises/x/devices/1","wiFiMacAddress":"020000aa0001","userPrincipalName":"carol@corp"},
                     {"deviceId":"enterprises/x/devices/2","macs":["02:00:00:aa:00:02","02-00-00-AA-00-03"],"cert_cn":"dev2.corp"},
                     "nonsense"]"#;
        let inv = Inventory::from_json(arr.as_bytes(), &ColumnMap::default());
        assert_eq!(inv.report().devices, 2);
        assert_eq!(inv.report().rows_skipped, 1);
        assert_eq!(inv.lookup(IdentityKind::Mac, "02:00:00:aa:00:03"), Some("enterprises/x/devices/2"));
        assert_eq!(inv.resolve(None, Some("host/DEV2.corp")).map(|x| (x.0, x.1)), Some(("enterprises/x/devices/2", IdentityKind::CertCn)));
        let lines = "{\"device_id\":\"d9\",\"mac\":\"02:00:00:aa:00:09\"}\nnot json\n";
        let inv = Inventory::from_json(lines.as_bytes(), &ColumnMap::default());
        assert_eq!((inv.report().devices, inv.report().rows_skipped), (1, 1));
        assert_eq!(inv.lookup(IdentityKind::Mac, "0200.00aa.0009"), Some("d9"));
    }
    proptest::proptest! {
        /// Any bytes as an export: never a panic, and every device counted
        /// came from a row.
        #[test]
        fn inventory_any_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let cols = ColumnMap::default();
            let mut csv = b"device_id,mac,user\n".to_vec();
            csv.extend_from_slice(&data);
            let inv = Inventory::from_csv(&csv, &cols);
            proptest::prop_assert!(inv.report().devices <= csv.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64 + 1);
            let _ = Inventory::from_json(&data, &cols);
            let _ = normalize_mac(&String::from_utf8_lossy(&data));
        }
    }
}
