//! Running the machine's tools from a test: a command whose failure fails
//! the test ([`must`]), whether a tool is installed ([`have`]) or the test
//! runs as root ([`is_root`]), the skip-or-fail policy of tests that need
//! them ([`skip`]), a fresh scratch directory ([`scratch_dir`]) and a child
//! process killed when it goes out of scope ([`KillOnDrop`]).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `args[0]` run with `args[1..]`, stdin from `/dev/null`; its output.
pub fn run(args: &[&str]) -> std::io::Result<Output> {
    Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output()
}

/// [`run`], and panic (naming the command and its stderr) unless it
/// started and exited 0.
#[track_caller]
pub fn must(args: &[&str]) {
    let o = run(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Is `tool` on the `PATH` (`command -v`)?
pub fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Does the test run as root (`id -u` is 0)?
pub fn is_root() -> bool {
    run(&["id", "-u"]).is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A test that cannot run here (`reason`): panics with `WHAT required
/// (VAR=1) but cannot run: REASON` when the environment variable `var` is
/// `1` (CI sets it where the tools are installed, so that a test that
/// checked nothing cannot pass there), else prints `SKIPPED: REASON` to
/// stderr and returns.
#[track_caller]
pub fn skip(var: &str, what: &str, reason: &str) {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        panic!("{what} required ({var}=1) but cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A number unique in this process, for names that tests running in
/// parallel must not share: with [`std::process::id`], unique on the
/// machine while the process lives.
pub fn next_seq() -> usize {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// An empty directory `pinwatch-TAG-PID-N` under [`std::env::temp_dir`]
/// (`N` from [`next_seq`]), emptied first if it exists. The caller removes
/// it when done.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pinwatch-{tag}-{}-{}", std::process::id(), next_seq()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A child process, killed and reaped when this goes out of scope.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
