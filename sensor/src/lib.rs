//! # pinwatch sensor
//!
//! Owns everything with I/O, threads and time-keeping: capture files
//! ([`capture`]), the flow table and TCP reassembly ([`flow`],
//! [`reassembly`]), the per-session TLS state ([`session`]), EVE output
//! ([`eve`]) and the replay pipeline ([`pipeline`]). Time is always the packet
//! timestamp, never the wall clock.

pub mod capped;
pub mod capture;
pub mod certs;
pub mod classify;
pub mod config;
pub mod engine;
pub mod enrich;
pub mod feed_source;
pub mod findings;
pub mod eve;
pub mod fingerprints;
pub mod inspector;
pub mod flow;
pub mod flowmap;
#[cfg(feature = "live")]
pub mod live;
pub mod metrics;
pub mod ocsf;
pub mod output;
pub mod pipeline;
pub mod quic_session;
pub mod reassembly;
pub mod session;
pub mod sharded;
pub mod sinks;
