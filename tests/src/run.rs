//! Replaying captures in-process, panics caught, in parallel, with a watchdog.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use pinwatch::run::pipeline::{replay, Input, Options};

/// What one replay gave.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// EVE lines (tls records, then the stats record).
    pub eve: Vec<u8>,
    /// `Summary.first_error`: a capture read error (e.g. a corrupt tail).
    pub first_error: Option<String>,
    pub packets: u64,
    pub tls_records: u64,
    pub flow_buffers_max: u64,
    pub flows_max: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub enum RunResult {
    Ok(RunOutput),
    /// `replay` returned an error.
    Err(String),
    /// `replay` panicked; the message.
    Panicked(String),
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Replay one capture file with default limits, stats on, no progress bar.
pub fn run_capture(path: &Path) -> RunResult {
    let t = Instant::now();
    let inputs = [Input::File(path.to_path_buf())];
    let opts = Options { progress: false, stats: true, ..Options::default() };
    let mut eve = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| replay(&inputs, &opts, &mut eve)));
    match r {
        Err(p) => RunResult::Panicked(panic_message(p.as_ref())),
        Ok(Err(e)) => RunResult::Err(format!("{e:#}")),
        Ok(Ok(s)) => RunResult::Ok(RunOutput {
            eve,
            first_error: s.first_error,
            packets: s.stats.capture.packets,
            tls_records: s.stats.tls_records_logged,
            flow_buffers_max: s.stats.memory.flow_buffers_max,
            flows_max: s.stats.memory.flows_max,
            elapsed: t.elapsed(),
        }),
    }
}

/// Threads to use: `PINWATCH_TEST_THREADS`, else the available parallelism (at most 8).
pub fn default_threads() -> usize {
    std::env::var("PINWATCH_TEST_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8))
}

/// Run `f` over `items` on `threads` worker threads. Returns the results in
/// item order (`None` where a worker died), or `Err(items still running)` when one item ran longer than
/// `per_item` (a hang: the stuck worker is abandoned, the test fails).
pub fn par_map<T, R, F>(items: Vec<T>, threads: usize, per_item: Duration, f: F) -> Result<Vec<Option<R>>, Vec<T>>
where
    T: Send + Sync + Clone + 'static,
    R: Send + 'static,
    F: Fn(&T) -> R + Send + Sync + 'static,
{
    let n = items.len();
    let items = Arc::new(items);
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let running: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    for _ in 0..threads.max(1).min(n.max(1)) {
        let (items, f, next, running, tx) = (items.clone(), f.clone(), next.clone(), running.clone(), tx.clone());
        std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= items.len() {
                break;
            }
            if let Ok(mut r) = running.lock() {
                r[i] = Some(Instant::now());
            }
            let out = f(&items[i]);
            if let Ok(mut r) = running.lock() {
                r[i] = None;
            }
            if tx.send((i, out)).is_err() {
                break;
            }
        });
    }
    drop(tx);
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let mut got = 0;
    while got < n {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((i, r)) => {
                results[i] = Some(r);
                got += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let stuck: Vec<T> = running
                    .lock()
                    .map(|r| {
                        r.iter()
                            .enumerate()
                            .filter(|(_, t)| t.is_some_and(|t| t.elapsed() > per_item))
                            .map(|(i, _)| items[i].clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if !stuck.is_empty() {
                    return Err(stuck);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(results)
}

/// Where the conformance reports go: `<target>/conformance/`.
pub fn report_dir() -> PathBuf {
    crate::corpus::target_dir().join("conformance")
}
