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
//! 4. [`enrich`]: the MDM/device feed (its sources and the AN1725 scoring
//!    that joins a verdict to a device and an app).
//! 5. [`output`]: EVE and OCSF rendering, fingerprints memo, and the sinks
//!    lines are written to.
//! 6. [`run`]: the engine and reporting desk, the replay pipeline and its
//!    multi-threaded form; [`live`] drives the same engine from interfaces.
//! 7. [`report`]: reads EVE lines back (not packets) for `pinwatch report`,
//!    the visibility-gap page and the network team's lists.
//!
//! [`config`] is read by every stage and depends on none. Every decision
//! about traffic takes its time from packet timestamps, so a replay gives the
//! same records every run. Wall time is used only for operations: the live
//! stats interval, the wait for a feed URL, and output rotation and
//! reconnection.

pub mod capped;
pub mod capture;
pub mod config;
pub mod enrich;
pub mod flow;
#[cfg(feature = "live")]
pub mod live;
pub mod output;
pub mod report;
pub mod run;
pub mod verdict;

// Old flat module paths, kept while open branches still name them; the
// tree's own code uses the folder paths.
pub use enrich::feed_source;
pub use flow::{certs, map as flowmap, quic_session, reassembly, session};
pub use output::{eve, fingerprints, ocsf};
pub use run::{engine, pipeline, sharded};
pub use verdict::{classify, findings, inspector};
