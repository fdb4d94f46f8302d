//! Whole-pipeline throughput against the cost of just walking the capture's
//! packet records, measured in the same run (criterion reports both; their
//! ratio is what to quote on a shared, noisy machine).
//!
//! Input: the testbed captures in `pcaps/` (real TLS and QUIC handshakes),
//! replayed back to back in memory. `cargo bench -p pinwatch-benches --bench pipeline`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use pinwatch::capture::{CaptureFile, Merged};
use pinwatch::run::pipeline::{replay, Input, Options};
use pinwatch_parsers::decode::decode;

fn captures() -> Vec<(String, &'static [u8])> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
    ["testbed-basic.pcap", "testbed-inspection.pcap", "testbed-fallback.pcap", "testbed-quic.pcap"]
        .iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(n)).expect("testbed capture");
            (n.to_string(), &*Box::leak(bytes.into_boxed_slice()))
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let caps = captures();
    let total: u64 = caps.iter().map(|(_, b)| b.len() as u64).sum();
    let files: Vec<CaptureFile> = caps.iter().map(|(n, b)| CaptureFile::from_bytes(n.clone(), b.to_vec()).expect("capture")).collect();
    let refs: Vec<&CaptureFile> = files.iter().collect();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(total));
    g.bench_function("baseline_walk_records", |b| {
        b.iter(|| Merged::new(&refs).filter_map(Result::ok).map(|p| p.data.len()).sum::<usize>())
    });
    g.bench_function("walk_and_decode", |b| {
        b.iter(|| Merged::new(&refs).filter_map(Result::ok).filter(|p| decode(p.linktype, p.data).is_ok()).count())
    });
    g.bench_function("replay_full", |b| {
        b.iter(|| {
            let inputs: Vec<Input> = caps.iter().map(|(n, bytes)| Input::Bytes { name: n.clone(), bytes }).collect();
            let mut sink = std::io::sink();
            let s = replay(&inputs, &Options::default(), &mut sink).expect("replay");
            black_box(s.stats.tls_records_logged)
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
