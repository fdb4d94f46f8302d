//! Verdicts: what a session's handshake and its wire say about the path it
//! took and how it ended ([`classify`]), the inline inspector's learned or
//! declared profile that some of those judgements lean on ([`inspector`]),
//! and the findings (signatures 1725001…) raised on one session or on a
//! pattern across a client's sessions ([`findings`]), and the SOC's tuning
//! of which findings are written ([`tuning`]: suppress, threshold, allow,
//! with the rules from [`crate::config::tuning`]). Pure functions of the
//! flow summaries and the configuration: no I/O, no clock.

pub mod classify;
pub mod findings;
pub mod inspector;
pub mod tuning;
