//! benches: criterion micro-benchmarks (`benches/`) and the throughput
//! run's capture generator (`gencap`, see `benches/README.md`).

pub mod gencap;
