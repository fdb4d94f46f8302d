//! The IP → device lease map with one IP bound to many devices in turn (a
//! CGNAT address, a busy DHCP pool): each assign costs a bounded time
//! (at most `max_per_key` = 256 leases are kept and scanned per IP), where
//! it scanned every earlier lease (76 s for 100k devices, 267 s for 300k).
//! `cargo bench -p pinwatch-benches --bench leases`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use pinwatch_enrichment::feed::Confidence;
use pinwatch_enrichment::leases::{LeaseConfig, LeaseMap};

const S: i64 = 1_000_000_000;

fn devices_on_one_ip(n: u64) -> LeaseMap {
    let mut m = LeaseMap::new(LeaseConfig::default());
    let ip = std::net::IpAddr::from([10, 0, 0, 7]);
    for i in 0..n {
        let from = i as i64 * S;
        m.assign("wifi", ip, &format!("dev-{i}"), from, from + 3600 * S, Confidence::Dhcp);
    }
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("leases");
    g.sample_size(10);
    for n in [100_000u64, 300_000] {
        g.bench_function(format!("{n}_devices_on_one_ip"), |b| b.iter_batched(|| (), |()| devices_on_one_ip(n), BatchSize::PerIteration));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
