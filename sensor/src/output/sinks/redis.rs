//! Redis EVE sink with the semantics of Suricata's redis `eve-log` output:
//!
//! - `mode=list` (or `lpush`, the default): `LPUSH key line`; `mode=rpush`:
//!   `RPUSH key line`;
//! - `mode=channel` (or `publish`): `PUBLISH key line` (a line no subscriber
//!   hears is gone, as in Redis itself);
//! - `mode=stream` (or `xadd`): `XADD key MAXLEN ~ maxlen * field line`
//!   (`maxlen=0`: no trimming; `trim_exact=true`: `MAXLEN =`).
//!
//! `batch` lines are pipelined in one round trip (Suricata's
//! `pipelining.batch-size`; `batch=1` sends one command at a time). The
//! client is the `redis` crate's synchronous connection; reconnects and the
//! bounded queue are the shared sink machinery ([`super`]).

use std::sync::atomic::Ordering::Relaxed;

use super::{Params, SinkCounters, Transport, IO_TIMEOUT};

/// The Redis command used per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `LPUSH key line` (`mode=list` or `lpush`, the default).
    Lpush,
    /// `RPUSH key line` (`mode=rpush`).
    Rpush,
    /// `PUBLISH key line` (`mode=channel` or `publish`).
    Publish,
    /// `XADD key [MAXLEN ~|= maxlen] * field line` (`mode=stream` or `xadd`).
    Stream,
}

/// A Redis sink's settings, from the URL and its query keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port (6379 by default).
    pub port: u16,
    /// The command used per line (`mode`).
    pub mode: Mode,
    /// List, channel or stream name (`key`, default `pinwatch`).
    pub key: String,
    /// Stream mode: the entry's field name (`field`, default `eve`, Suricata's).
    pub field: String,
    /// Stream mode: `MAXLEN` (`maxlen`, default 100000 as Suricata; 0 = none).
    pub maxlen: u64,
    /// Stream mode: exact trimming (`trim_exact=true`) instead of `~`.
    pub trim_exact: bool,
}

impl RedisConfig {
    pub(crate) fn from_params(host: String, port: u16, p: &mut Params) -> Result<RedisConfig, String> {
        let mode = match p.take("mode").as_deref() {
            None | Some("list") | Some("lpush") => Mode::Lpush,
            Some("rpush") => Mode::Rpush,
            Some("channel") | Some("publish") => Mode::Publish,
            Some("stream") | Some("xadd") => Mode::Stream,
            Some(m) => return Err(format!("mode={m}: expected list, lpush, rpush, channel, publish, stream or xadd")),
        };
        let key = p.take("key").unwrap_or_else(|| "pinwatch".to_string());
        let field = p.take("field").unwrap_or_else(|| "eve".to_string());
        if key.is_empty() || field.is_empty() {
            return Err("key and field must not be empty".into());
        }
        let maxlen = match p.take("maxlen") {
            None => 100_000,
            Some(v) => v.parse().map_err(|_| format!("maxlen={v}: expected a number"))?,
        };
        let trim_exact = match p.take("trim_exact").as_deref() {
            None | Some("false") | Some("no") => false,
            Some("true") | Some("yes") => true,
            Some(v) => return Err(format!("trim_exact={v}: expected true or false")),
        };
        Ok(RedisConfig { host, port, mode, key, field, maxlen, trim_exact })
    }

    /// Suricata's pipelining batch-size default.
    pub(crate) fn default_batch(&self) -> usize {
        10
    }

    fn url(&self) -> String {
        if self.host.contains(':') {
            format!("redis://[{}]:{}/", self.host, self.port)
        } else {
            format!("redis://{}:{}/", self.host, self.port)
        }
    }
}

/// The Redis [`Transport`]: one pipelined round trip per batch over the `redis` crate's synchronous
/// connection, opened on first use and again after [`Transport::reset`]. An error reply that would
/// come again (wrong key type, out of memory, no permission) drops the batch (counted) instead of
/// retrying it.
pub struct RedisTransport {
    cfg: RedisConfig,
    conn: Option<redis::Connection>,
}

impl RedisTransport {
    /// A transport for `cfg`; it connects on the first send.
    pub fn new(cfg: RedisConfig) -> Self {
        RedisTransport { cfg, conn: None }
    }

    fn connect(&mut self, c: &SinkCounters) -> Result<&mut redis::Connection, String> {
        if self.conn.is_none() {
            let client = redis::Client::open(self.cfg.url()).map_err(|e| format!("redis {}: {e}", self.cfg.url()))?;
            let conn =
                client.get_connection_with_timeout(IO_TIMEOUT).map_err(|e| format!("redis {}:{}: {e}", self.cfg.host, self.cfg.port))?;
            conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            c.connects.fetch_add(1, Relaxed);
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| "no connection".to_string())
    }

    fn pipeline(&self, batch: &[Vec<u8>]) -> redis::Pipeline {
        let cfg = &self.cfg;
        let mut p = redis::pipe();
        for line in batch {
            let cmd = match cfg.mode {
                Mode::Lpush => p.cmd("LPUSH").arg(&cfg.key).arg(line.as_slice()),
                Mode::Rpush => p.cmd("RPUSH").arg(&cfg.key).arg(line.as_slice()),
                Mode::Publish => p.cmd("PUBLISH").arg(&cfg.key).arg(line.as_slice()),
                Mode::Stream => {
                    let c = p.cmd("XADD").arg(&cfg.key);
                    let c = if cfg.maxlen > 0 { c.arg("MAXLEN").arg(if cfg.trim_exact { "=" } else { "~" }).arg(cfg.maxlen) } else { c };
                    c.arg("*").arg(&cfg.field).arg(line.as_slice())
                }
            };
            cmd.ignore();
        }
        p
    }
}

/// An error reply that the same commands would get again.
fn gives_up(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    match e.kind() {
        ErrorKind::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly) => false,
        ErrorKind::Server(_) | ErrorKind::Extension => true,
        _ => false,
    }
}

impl Transport for RedisTransport {
    fn send(&mut self, batch: &[Vec<u8>], c: &SinkCounters) -> Result<u64, String> {
        let p = self.pipeline(batch);
        let conn = self.connect(c)?;
        match p.query::<()>(conn) {
            Ok(()) => Ok(0),
            // The server refused the commands (a key of another type, out
            // of memory, no permission): resending will not help. The batch
            // is counted as dropped and the error kept for the stats. A
            // server still loading its data, or a replica, is retried.
            Err(e) if gives_up(&e) => {
                c.write_errors.fetch_add(1, Relaxed);
                *c.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("redis: {e}"));
                c.bytes_dropped.fetch_add(batch.iter().map(|l| l.len() as u64 + 1).sum(), Relaxed);
                Ok(batch.len() as u64)
            }
            Err(e) => Err(format!("redis {}:{}: {e}", self.cfg.host, self.cfg.port)),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}
