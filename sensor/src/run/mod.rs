//! Running the pipeline: what a run is asked to do ([`options`]) and what it
//! counts ([`stats`]), the per-shard flow tables ([`engine`]), the
//! reporting desk as a sans-IO state machine ([`reporter`]), the replay entry point with its options and bundled default
//! ([`pipeline`]), and the multi-threaded replay that splits a capture by
//! flow-key partition and merges the records back in a deterministic order
//! ([`sharded`]). Live capture (`crate::live`) drives the same engine.

pub mod engine;
pub mod options;
pub mod pipeline;
pub mod reporter;
pub mod sharded;
pub mod stats;
