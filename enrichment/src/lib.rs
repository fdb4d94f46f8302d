//! # pinwatch-enrichment
//!
//! Sans-IO device and app enrichment: the MDM/device feed model ([`feed`]),
//! the time-aware IP → device map ([`leases`]), the clock offset of each
//! feed source ([`clock`]) and per-session app attribution
//! ([`attribution`]), and IP bindings from RADIUS accounting, Kea DHCP
//! leases and MDM inventory exports ([`bindings`]). Time is always passed in (packet time, ns since the
//! Unix epoch), never read from a clock, so replays are deterministic. No
//! files, no network.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attribution;
pub mod bindings;
pub mod clock;
pub mod feed;
pub mod leases;

pub use attribution::{attribute, attribute_with, Attribution, AttributionConfig, Method, Reason, RunnerUp, SessionQuery, Strength};
pub use clock::{ClockConfig, ClockOffsets, SourceKey};
pub use feed::{Event, EventBody, FeedReader, FeedReport, SCHEMA_VERSION};
pub use leases::{Lease, LeaseConfig, LeaseMap, LeaseMatch};
