//! One seeded, structure-aware mutation runner per entry point of the
//! sensor (`pinwatch_tests::fuzz`, README "Fuzzing"), on stable Rust.
//!
//! ```sh
//! cargo run --release -p pinwatch-tests --bin fuzz -- TARGET [--seconds N] [--cases N] [--seed S] [--out DIR]
//! cargo run --release -p pinwatch-tests --bin fuzz -- list
//! ```
//!
//! Prints one JSON line of figures (cases, CPU seconds, execs per CPU
//! second, findings) at the end, and every `--report-every` seconds (default
//! 300) while it runs; writes each finding's case to `--out` (default
//! `target/fuzz/TARGET`), to be kept under `tests/regressions/TARGET/`.
//! Exits 1 when something was found.

use std::path::PathBuf;
use std::time::Duration;

use pinwatch_tests::fuzz::{self, alloc::Counting, RunOptions};

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let Some(name) = args.get(1).filter(|a| !a.starts_with("--")) else {
        eprintln!("usage: fuzz TARGET|list [--seconds N] [--cases N] [--seed S] [--out DIR] [--report-every SECONDS]");
        std::process::exit(2);
    };
    if name == "list" {
        for t in fuzz::targets() {
            println!("{}", t.name());
        }
        return;
    }
    let Some(t) = fuzz::target(name) else {
        eprintln!("fuzz: no target {name:?} (try `fuzz list`)");
        std::process::exit(2);
    };
    let seed: u64 = flag("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds: u64 = flag("--seconds").and_then(|s| s.parse().ok()).unwrap_or(60);
    let cases: u64 = flag("--cases").and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let every: u64 = flag("--report-every").and_then(|s| s.parse().ok()).unwrap_or(300).max(1);
    let out = flag("--out").map(PathBuf::from).unwrap_or_else(|| pinwatch_tests::corpus::target_dir().join("fuzz").join(name));
    // A panic is a finding here: keep the default hook's message quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let mut total = fuzz::Report { target: name.clone(), seed, ..fuzz::Report::default() };
    // Slices of `every` seconds, each with its own seed (seed, seed+1, ...),
    // so a long run reports as it goes and any slice can be rerun alone.
    let mut slice = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) && total.cases < cases {
        let left = Duration::from_secs(seconds).saturating_sub(started.elapsed()).min(Duration::from_secs(every));
        let o = RunOptions { seed: seed + slice, cases: cases - total.cases, duration: left, out: Some(out.clone()) };
        let r = fuzz::run(t.as_ref(), &o);
        total.seeds = r.seeds;
        total.cases += r.cases;
        total.cpu_seconds += r.cpu_seconds;
        total.findings += r.findings;
        total.found.extend(r.found.into_iter().take(20usize.saturating_sub(total.found.len())));
        total.wall_seconds = started.elapsed().as_secs_f64();
        total.execs_per_cpu_second = if total.cpu_seconds > 0.0 { total.cases as f64 / total.cpu_seconds } else { 0.0 };
        println!("{}", serde_json::to_string(&total).unwrap_or_default());
        slice += 1;
        if r.seeds == 0 {
            break;
        }
    }
    if total.findings > 0 {
        std::process::exit(1);
    }
}
