//! More structures that grow with traffic, driven with arbitrary input (the
//! correlator and the alert folder are in `bounds.rs`, the lease map in
//! `enrichment/src/leases.rs`, the TLS and QUIC parsers' buffers in
//! `parsers/src/tls.rs` and `parsers/src/quic/tests.rs`): each stays within
//! its documented bound (docs/output.md, "Bounds of what grows with
//! traffic") and counts what it drops. Times are arbitrary `i64`s, the ends
//! of time included (overflow checks are on in test builds).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use pinwatch::flow::reassembly::{self, Reassembler, SEEN_BYTES};
use pinwatch::flow::{FlowTable, Limits};
use pinwatch_enrichment::{ClockConfig, ClockOffsets, FeedReader, SessionQuery};
use pinwatch_parsers::decode::{Decoded, TcpInfo, Vlans};

fn any_time() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), 0i64..10_000_000_000_000, Just(i64::MAX), Just(i64::MIN), Just(0)]
}

/// One TCP packet: (client, client port, flags, seq, payload length, time step or absolute time).
fn packet() -> impl Strategy<Value = (u8, u16, u8, u32, usize, i64)> {
    (
        any::<u8>(),
        1000u16..1016,
        prop_oneof![Just(TcpInfo::SYN), Just(TcpInfo::ACK), Just(TcpInfo::ACK | TcpInfo::FIN), Just(TcpInfo::RST), any::<u8>()],
        any::<u32>(),
        prop_oneof![Just(0usize), 1usize..1500],
        prop_oneof![0i64..2_000_000_000, any_time()],
    )
}

fn tls_like(n: usize, seed: u32) -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x01, 0x3f, 0xff, 0x01, 0x00, 0x3f, 0xfb];
    v.extend((0..n).map(|i| (i as u32).wrapping_mul(seed) as u8));
    v.truncate(n);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The flow table: flows within `max_flows` (evictions counted), and the
    /// bytes its flows hold within `max_buffer_bytes` plus one small head
    /// buffer per partition (a flow over the budget gives its buffers up,
    /// counted in `buffer_budget_drops`).
    #[test]
    fn flow_table_stays_within_its_caps(packets in proptest::collection::vec(packet(), 1..600), max_flows in 1usize..200, budget in 1usize..300_000) {
        let lim = Limits { max_flows, max_buffer_bytes: budget, ..Limits::default() };
        let mut t = FlowTable::new(lim);
        let mut out = Vec::new();
        let mut ts = 0i64;
        let server = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
        for (i, (client, sport, flags, seq, len, step)) in packets.iter().enumerate() {
            ts = if *step < 2_000_000_000 && *step >= 0 { ts.saturating_add(*step) } else { *step };
            let payload = tls_like(*len, i as u32 + 1);
            let from_client = i % 3 != 2;
            let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, *client));
            let (src, dst, sp, dp) = if from_client { (c, server, *sport, 443) } else { (server, c, 443, *sport) };
            let d = Decoded { src, dst, proto: 6, sport: sp, dport: dp, tcp: Some(TcpInfo { seq: *seq, ack: seq.wrapping_add(7), flags: *flags, window: 1024 }), payload: &payload, truncated: false, context: 0, vlans: Vlans::default(), tunnel: None, ttl: 64, tcp_options: &[] };
            t.packet(&d, ts, 60 + *len as u32, 0, &mut out);
            prop_assert!(t.len() <= max_flows, "{} flows, cap {max_flows}", t.len());
            let slack = t.partitions() * 1024;
            prop_assert!(t.heap_bytes() <= budget + slack, "{} bytes held, budget {budget}", t.heap_bytes());
            out.clear();
        }
        let s = t.stats;
        // Every flow created is still there, or ended (evicted, timed out or closed).
        prop_assert!(s.flows_created <= t.len() as u64 + s.flows_ended + s.flows_evicted + s.flows_timed_out, "{s:?}");
        t.drain(pinwatch::flow::CloseKind::Eof, &mut out);
        prop_assert_eq!(t.len(), 0);
        prop_assert_eq!(t.heap_bytes(), 0);
    }

    /// One direction's reassembly: out-of-order payload within `max_bytes`
    /// and `max_segments` (plus the fixed copy of the first bytes), whatever
    /// the segments and ACKs; every byte given up is reported as a gap.
    #[test]
    fn reassembly_stays_within_its_caps(ops in proptest::collection::vec((any::<bool>(), any::<u32>(), 0usize..3000), 1..300), max_bytes in 1usize..20_000, max_segments in 1usize..70, isn in any::<u32>()) {
        let lim = reassembly::Limits { max_bytes, max_segments };
        let mut r = Reassembler::default();
        r.sync(isn);
        let (mut delivered, mut gaps) = (0u64, 0u64);
        let cap = max_bytes + max_segments.next_power_of_two() * std::mem::size_of::<(u32, Vec<u8>)>() + std::mem::size_of::<[u8; SEEN_BYTES]>() + 64;
        for (ack, off, len) in &ops {
            // Mostly near the stream, sometimes anywhere in sequence space.
            let seq = if off % 4 == 0 { *off } else { isn.wrapping_add(off % 40_000) };
            let mut out = |c: reassembly::Chunk<'_>| match c {
                reassembly::Chunk::Data { bytes, .. } => delivered += bytes.len() as u64,
                reassembly::Chunk::Gap(n) => gaps += u64::from(n),
            };
            if *ack {
                r.acked(seq, &mut out);
            } else {
                r.segment(seq, &vec![0xab; *len], &lim, &mut out);
            }
            prop_assert!(r.heap_bytes() <= cap, "{} B held, cap {cap}", r.heap_bytes());
        }
        prop_assert_eq!(gaps, r.counters.gap_bytes);
    }

    /// Clock offsets: at most `max_sources` sources, each with at most
    /// `max_sessions` sessions, whatever the events and session times.
    #[test]
    fn clock_offsets_stay_within_their_caps(events in proptest::collection::vec((0u8..6, -600_000i64..600_000, prop_oneof![Just(443u16), Just(80u16)]), 1..60), sessions in proptest::collection::vec((any_time(), prop_oneof![Just(443u16), Just(80u16)]), 1..60), max_sources in 1usize..5, max_sessions in 1usize..6) {
        let mut reader = FeedReader::default();
        let base = pinwatch_enrichment::feed::parse_rfc3339_ns("2026-08-21T09:14:00Z").expect("time");
        let evs: Vec<_> = events.iter().enumerate().filter_map(|(i, (src, ms, port))| {
            let t = base + ms * 1_000_000;
            let secs = t / 1_000_000_000;
            let when = time_string(secs, (t % 1_000_000_000) as u32);
            let line = format!(r#"{{"schema_version":1,"event_type":"net_connect","event_time":"{when}","observed_time":"{when}","device":{{"id":"dev1"}},"source":{{"kind":"k{src}"}},"app":{{"package":"p"}},"dst_ip":"203.0.113.5","dst_port":{port}}}"#);
            reader.push_line(&line, i as u64 + 1)
        }).collect();
        prop_assert!(!evs.is_empty(), "no event parsed: {:?}", reader.report());
        let cfg = ClockConfig { max_sources, max_sessions, ..ClockConfig::default() };
        let mut c = ClockOffsets::new(cfg);
        for (start, port) in &sessions {
            let start = if start % 2 == 0 { base.saturating_add(start % 600_000_000_000) } else { *start };
            let q = SessionQuery { device_id: "dev1", dst_ip: "203.0.113.5".parse().expect("ip"), dst_port: *port, sni: None, session_start_ns: start };
            c.observe(&evs, &q);
            let est = c.estimates();
            prop_assert!(est.len() <= max_sources, "{} sources, cap {max_sources}", est.len());
            for (k, _, n) in &est {
                prop_assert!(*n <= max_sessions, "{k:?}: {n} sessions, cap {max_sessions}");
            }
        }
    }
}

/// `secs` since the epoch as RFC 3339 UTC (days to civil date, H. Hinnant's algorithm).
fn time_string(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
