//! criterion micro-benchmarks: decode, ClientHello parse, JA3/JA4, flow
//! lookup through the whole table. Run with `cargo bench -p pinwatch-benches`.
//! Inputs are built in memory so the benches need no capture files.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use pinwatch_parsers::decode::{decode, linktype};
use pinwatch_parsers::hello::Transport;
use pinwatch_parsers::ja3::ja3;
use pinwatch_parsers::ja4::ja4;
use pinwatch_parsers::tls::{parse_client_hello, Dir, TlsParser};

/// A Chrome-like ClientHello body (GREASE, 16 ciphers, SNI, ALPN, groups).
fn client_hello_body() -> Vec<u8> {
    let mut exts = Vec::new();
    let mut push = |t: u16, d: &[u8]| {
        exts.extend(t.to_be_bytes());
        exts.extend((d.len() as u16).to_be_bytes());
        exts.extend(d);
    };
    push(0x0a0a, &[]);
    push(0x0000, &[0, 14, 0, 0, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm']);
    push(0x0017, &[]);
    push(0xff01, &[0]);
    push(0x000a, &[0, 8, 0x4a, 0x4a, 0, 0x1d, 0, 0x17, 0, 0x18]);
    push(0x000b, &[1, 0]);
    push(0x0023, &[]);
    push(0x0010, &[0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1']);
    push(0x000d, &[0, 8, 4, 3, 8, 4, 4, 1, 5, 3]);
    push(0x002b, &[6, 0x6a, 0x6a, 3, 4, 3, 3]);
    let mut b = vec![3, 3];
    b.extend([0x11; 32]);
    b.push(32);
    b.extend([0x22; 32]);
    let ciphers: [u16; 16] =
        [0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];
    b.extend(((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        b.extend(c.to_be_bytes());
    }
    b.extend([1, 0]);
    b.extend((exts.len() as u16).to_be_bytes());
    b.extend(exts);
    b
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let total = 40 + payload.len();
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    f.extend([0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend([0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// Ethernet/IPv4/TCP frame of client `i` (10.x.y.z:port) to 10.0.0.2:443.
fn flow_frame(i: u32, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let total = 40 + payload.len();
    let ip = 0x0a00_0000 | (i >> 4);
    let port = 20_000 + (i & 15) as u16;
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    f.extend([0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend(ip.to_be_bytes());
    f.extend([10, 0, 0, 2]);
    f.extend(port.to_be_bytes());
    f.extend(443u16.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(0u32.to_be_bytes());
    f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// The flow table's per-packet cost on a bulk packet of a tracked flow,
/// with 100,000 flows in the table: the hash lookup (cache misses
/// included, as the flows are visited in a scattered order) and counters.
fn flow_benches(c: &mut Criterion) {
    use pinwatch::flow::{FlowTable, Limits};
    const FLOWS: u32 = 100_000;
    let mut table = FlowTable::new(Limits::default());
    let mut ended = Vec::new();
    let garbage = [0x41u8; 100];
    for i in 0..FLOWS {
        let syn = flow_frame(i, 0x02, 99, &[]);
        let d = decode(linktype::ETHERNET, &syn).expect("frame decodes");
        table.packet(&d, 1, syn.len() as u32, 0, &mut ended);
        // Not TLS after the probe segments: the flow is bypassed.
        for k in 0..17u32 {
            let f = flow_frame(i, 0x18, 100 + k * 100, &garbage);
            let d = decode(linktype::ETHERNET, &f).expect("frame decodes");
            table.packet(&d, 2, f.len() as u32, 0, &mut ended);
        }
    }
    assert_eq!(table.len(), FLOWS as usize);
    // Visit the flows in a scattered order.
    let frames: Vec<Vec<u8>> =
        (0..4096u32).map(|k| flow_frame(k.wrapping_mul(2_654_435_761) % FLOWS, 0x10, 5_000, &[0x17; 1400])).collect();
    let decoded: Vec<_> = frames.iter().map(|f| decode(linktype::ETHERNET, f).expect("frame decodes")).collect();
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(decoded.len() as u64));
    g.bench_function("bulk_packet_100k_flows", |b| {
        b.iter(|| {
            for d in &decoded {
                table.packet(black_box(d), 3, 1454, 0, &mut ended);
            }
        })
    });
    // The same packets as a thread of a chunked replay takes them: hashed
    // already, each packet's map slot asked for 8 packets ahead and its flow
    // 4 ahead (crate::flowmap).
    let hashed: Vec<_> = decoded
        .iter()
        .map(|d| {
            let key = pinwatch::flow::FlowKey::new(d);
            (key, table.hash(&key))
        })
        .collect();
    g.bench_function("bulk_packet_100k_flows_prefetched", |b| {
        b.iter(|| {
            for (j, d) in decoded.iter().enumerate() {
                if let Some((_, h)) = hashed.get(j + 8) {
                    table.prefetch_slot(*h);
                }
                if let Some((_, h)) = hashed.get(j + 4) {
                    table.prefetch_flow(*h);
                }
                let (key, hash) = &hashed[j];
                table.packet_hashed(black_box(d), key, *hash, 3, 1454, 0, &mut ended);
            }
        })
    });
    g.finish();
    assert!(ended.is_empty(), "no flow ended during the bench");
}

fn benches(c: &mut Criterion) {
    let body = client_hello_body();
    let mut record = vec![0x16, 3, 1];
    record.extend(((body.len() + 4) as u16).to_be_bytes());
    record.extend([1, 0, (body.len() >> 8) as u8, body.len() as u8]);
    record.extend(&body);
    let bulk = frame(&[0x17u8; 1400]);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(bulk.len() as u64));
    g.bench_function("ethernet_ipv4_tcp_1400", |b| b.iter(|| decode(linktype::ETHERNET, black_box(&bulk))));
    g.finish();

    let ch = parse_client_hello(&body).expect("bench hello parses");
    c.bench_function("client_hello_parse", |b| b.iter(|| parse_client_hello(black_box(&body))));
    c.bench_function("tls_stream_client_hello", |b| {
        b.iter(|| {
            let mut p = TlsParser::new();
            let mut out = Vec::new();
            p.feed(Dir::Client, black_box(&record), 0, &mut out);
            out.len()
        })
    });
    c.bench_function("ja3", |b| b.iter(|| ja3(black_box(&ch))));
    c.bench_function("ja4", |b| b.iter(|| ja4(black_box(&ch), Transport::Tcp)));
}

criterion_group!(parsers, benches, flow_benches);
criterion_main!(parsers);
