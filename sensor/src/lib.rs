//! # pinwatch sensor
//!
//! Owns everything with I/O, threads and time-keeping. A packet's path reads
//! top to bottom through the folders:
//!
//! 1. [`capture`]: capture files (pcap, pcapng, gzip) read into packets with
//!    their timestamps; [`capped`] bounds every read the user names.
//! 2. [`flow`]: the flow table, TCP reassembly of handshake bytes, and the
//!    per-session TLS and QUIC state with certificate summaries.
//! 3. [`verdict`]: classification of each session's path and outcome, the
//!    inline inspector's profile, and the findings.
//! 4. [`enrich`]: the MDM/device feed (its sources, the RADIUS and Kea
//!    binding producers, and the AN1725 scoring that joins a verdict to a
//!    device and an app).
//! 5. [`output`]: EVE and OCSF rendering, fingerprints memo, and the sinks
//!    lines are written to.
//! 6. [`run`]: the engine and reporting desk, the replay pipeline and its
//!    multi-threaded form; [`live`] drives the same engine from interfaces.
//! 7. [`report`]: reads EVE lines back (not packets) for `pinwatch report`,
//!    the visibility-gap page and the network team's lists.
//!
//! [`config`] is read by every stage and depends on none: it holds what the
//! configuration file declares, parsed and checked at start (the networks,
//! the inspection deployment, the feed's binding namespaces and transport,
//! the alert tuning rules). [`timefmt`] (Suricata's timestamp format) and
//! [`capped`] (bounded reads) are leaves every stage may use.
//! `scripts/module-deps.py` checks, in CI, that the folders and the files
//! within them depend on each other one way only.
//!
//! Every decision about traffic takes its time from packet timestamps, so a
//! replay gives the same records every run. Wall time is used only for operations: the live
//! stats interval, the wait for a feed URL, and output rotation and
//! reconnection.

#![warn(missing_docs)]

pub mod capped;
pub mod capture;
pub mod config;
pub mod enrich;
pub mod flow;
#[cfg(target_os = "linux")]
pub mod live;
pub mod output;
pub mod report;
pub mod run;
pub mod timefmt;
pub mod verdict;
