//! Network namespaces for tests that run real daemons (needs root and
//! `ip`): a [`Lab`] holds the namespaces a test made, a scratch directory
//! and the processes it started, and removes them all when dropped.
//!
//! Names are unique on the machine while the test process lives: a lab's
//! namespaces are `PREFIX-PID-N-NAME` (`N` from [`crate::sys::next_seq`]),
//! so tests running in parallel, and other test runs on the same machine,
//! never share one. [`remove_stale`] deletes the `PREFIX-PID-*` namespaces
//! of test processes that no longer exist. Interfaces are made inside the
//! namespaces ([`Lab::veth`]), never in the host's, so their names need not
//! be unique.
//!
//! What a test does in its namespaces (its servers, clients and checks)
//! stays in the test, as free functions or an extension trait on [`Lab`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{must, next_seq, run};

/// Namespaces, a scratch directory and child processes, removed on drop.
pub struct Lab {
    prefix: String,
    id: String,
    /// The scratch directory (under [`std::env::temp_dir`]).
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<Child>,
    keep_env: Option<&'static str>,
    keep_on_panic: bool,
}

impl Lab {
    /// A lab with no namespace yet, and an empty scratch directory
    /// `pinwatch-TAG-PID-N` under [`std::env::temp_dir`]. Its namespaces
    /// will be named `PREFIX-PID-N-NAME` ([`Lab::ns`]).
    pub fn new(prefix: &str, tag: &str) -> Lab {
        let id = format!("{}-{}", std::process::id(), next_seq());
        let dir = std::env::temp_dir().join(format!("pinwatch-{tag}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Lab { prefix: prefix.to_string(), id, dir, namespaces: Vec::new(), children: Vec::new(), keep_env: None, keep_on_panic: false }
    }

    /// Keep the scratch directory (and say so) when the environment
    /// variable `var` is set.
    pub fn keep_dir_if_env(&mut self, var: &'static str) {
        self.keep_env = Some(var);
    }

    /// Keep the scratch directory when the test fails (the drop happens
    /// during a panic).
    pub fn keep_dir_on_panic(&mut self) {
        self.keep_on_panic = true;
    }

    /// The full name of this lab's namespace `name`: `PREFIX-PID-N-NAME`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{}-{name}", self.prefix, self.id)
    }

    /// Create namespace `name` ([`Lab::ns`]), deleted on drop; its full
    /// name, or why `ip netns add` failed.
    pub fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let full = self.ns(name);
        let o = run(&["ip", "netns", "add", &full]).map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        self.namespaces.push(full.clone());
        Ok(full)
    }

    /// [`Lab::add_ns`], panicking if it fails.
    #[track_caller]
    pub fn must_add_ns(&mut self, name: &str) -> String {
        self.add_ns(name).unwrap_or_else(|e| panic!("ip netns add {}: {e}", self.ns(name)))
    }

    /// `ip -n NS ARGS`, which must succeed (`ns` is a full name).
    #[track_caller]
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut all = vec!["ip", "-n", ns];
        all.extend_from_slice(args);
        must(&all);
    }

    /// A veth pair: `dev_a` in namespace `ns_a`, its peer `dev_b` in `ns_b`
    /// (full names), both down and without addresses.
    #[track_caller]
    pub fn veth(&self, (ns_a, dev_a): (&str, &str), (ns_b, dev_b): (&str, &str)) {
        self.ip(ns_a, &["link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b]);
    }

    /// `sysctl -qw KEY=VALUE` in namespace `ns`, failure ignored.
    pub fn sysctl(&self, ns: &str, setting: &str) {
        let _ = run(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting]);
    }

    /// One end of a link, made ready for traffic: `cidr` on `dev`, `lo` up,
    /// no IPv6 on `dev` (no neighbour discovery chatter), `dev` up.
    #[track_caller]
    pub fn endpoint(&self, ns: &str, dev: &str, cidr: &str) {
        self.ip(ns, &["addr", "add", cidr, "dev", dev]);
        self.ip(ns, &["link", "set", "lo", "up"]);
        self.sysctl(ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        self.ip(ns, &["link", "set", dev, "up"]);
    }

    /// `name` in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// [`Lab::path`] as a string, for command lines.
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// `ip netns exec NS ARGS` (`ns` a full name), stdin from `/dev/null`.
    pub fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args).stdin(Stdio::null());
        c
    }

    /// Start a long-running process in `ns`; stdout and stderr go to
    /// `LOG.out` and `LOG.err` in the scratch directory. It is killed on
    /// drop. Its pid.
    #[track_caller]
    pub fn spawn(&mut self, ns: &str, args: &[&str], log: &str) -> u32 {
        let out = std::fs::File::create(self.path(&format!("{log}.out"))).expect("log");
        let err = std::fs::File::create(self.path(&format!("{log}.err"))).expect("log");
        let child = self.cmd(ns, args).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.keep(child)
    }

    /// Keep a child started otherwise, to be killed on drop. Its pid.
    pub fn keep(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Wait until `file` in the scratch directory holds `needle`; panics
    /// (showing the file) after `timeout`.
    #[track_caller]
    pub fn wait_for_log(&self, file: &str, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(self.path(file)).unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "{file}: `{needle}` never appeared:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until something listens on TCP `port` in `ns` (`ss`); false
    /// after `timeout`.
    pub fn wait_listening(&self, ns: &str, port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.cmd(ns, &["ss", "-Hltn", &format!("sport = :{port}")]).output();
            if o.is_ok_and(|o| !o.stdout.is_empty()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -SIG PID`, which must succeed.
    #[track_caller]
    pub fn signal(&self, pid: u32, sig: &str) {
        must(&["kill", &format!("-{sig}"), &pid.to_string()]);
    }

    fn child(&mut self, pid: u32) -> &mut Child {
        self.children.iter_mut().find(|c| c.id() == pid).expect("our child")
    }

    /// Wait for child `pid` to exit: its exit code (`None` if a signal
    /// ended it). After `timeout` it is killed and this panics.
    #[track_caller]
    pub fn wait(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let c = self.child(pid);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("process {pid} did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait up to `timeout` for child `pid` to exit: its exit code, `None`
    /// if a signal ended it or it still runs (it is then left running).
    pub fn wait_up_to(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let c = self.child(pid);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill child `pid` now and reap it (no-op if it is not ours).
    pub fn kill_child(&mut self, pid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    /// Kills the children, then any process left in the lab's namespaces
    /// (daemons that forked away), deletes the namespaces (and with them
    /// the interfaces in them) and the scratch directory, unless kept.
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            if let Ok(o) = run(&["ip", "netns", "pids", ns]) {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = run(&["kill", "-KILL", pid]);
                }
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let keep_env = self.keep_env.is_some_and(|v| std::env::var_os(v).is_some());
        if keep_env || (self.keep_on_panic && std::thread::panicking()) {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Delete the namespaces `PREFIX-PID-*` whose test process `PID` no longer
/// exists (left by a run that was killed before its labs were dropped).
pub fn remove_stale(prefix: &str) {
    let Ok(o) = run(&["ip", "netns", "list"]) else { return };
    let prefix = format!("{prefix}-");
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        let Some(pid) = rest.split('-').next() else { continue };
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_process_and_lab() {
        let (a, b) = (Lab::new("pwkit", "kit-netns"), Lab::new("pwkit", "kit-netns"));
        let pid = std::process::id().to_string();
        assert!(a.ns("c").starts_with(&format!("pwkit-{pid}-")) && a.ns("c").ends_with("-c"), "{}", a.ns("c"));
        assert_ne!(a.ns("c"), b.ns("c"));
        assert_ne!(a.dir, b.dir);
        assert!(a.dir.is_dir());
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists(), "the scratch directory goes with the lab");
    }
}
