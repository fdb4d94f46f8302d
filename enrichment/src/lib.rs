//! # pinwatch-enrichment
//!
//! Sans-IO device and app enrichment: the MDM/device feed model and the
//! time-aware IP → device map. Time is always passed in (packet time), never
//! read from a clock, so replays are deterministic.
//!
//! This crate is deliberately small until the enrichment issue lands; it
//! fixes the shape the sensor will call: a lookup keyed by network context,
//! IP and packet time.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Who an IP belonged to over a half-open interval `[from_ns, until_ns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub device_id: String,
    pub from_ns: i64,
    pub until_ns: i64,
}

/// Interval map from (network context, IP) to device bindings.
#[derive(Debug, Default)]
pub struct LeaseMap {
    map: BTreeMap<(String, IpAddr), Vec<Binding>>,
}

impl LeaseMap {
    /// Record a binding. Bindings for one key are kept sorted by start time.
    pub fn insert(&mut self, context: &str, ip: IpAddr, b: Binding) {
        let v = self.map.entry((context.to_string(), ip)).or_default();
        let at = v.partition_point(|x| x.from_ns <= b.from_ns);
        v.insert(at, b);
    }

    /// The binding in force at `ts_ns`: the latest-starting one that covers it.
    pub fn lookup(&self, context: &str, ip: IpAddr, ts_ns: i64) -> Option<&Binding> {
        self.map
            .get(&(context.to_string(), ip))?
            .iter()
            .rev()
            .find(|b| b.from_ns <= ts_ns && ts_ns < b.until_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_respects_intervals_and_reuse() {
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let mut m = LeaseMap::default();
        m.insert("wifi", ip, Binding { device_id: "a".into(), from_ns: 0, until_ns: 100 });
        m.insert("wifi", ip, Binding { device_id: "b".into(), from_ns: 100, until_ns: 200 });
        assert_eq!(m.lookup("wifi", ip, 50).map(|b| b.device_id.as_str()), Some("a"));
        assert_eq!(m.lookup("wifi", ip, 150).map(|b| b.device_id.as_str()), Some("b"));
        assert_eq!(m.lookup("wifi", ip, 250), None);
        assert_eq!(m.lookup("vpn", ip, 50), None);
    }
}
