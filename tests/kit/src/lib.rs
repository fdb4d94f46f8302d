//! The test kit every pinwatch test shares, so that one question has one
//! answer:
//!
//! - [`corpus`]: where the shared corpus of public captures is, and what to
//!   do when it is not there (print `SKIPPED`, or fail when
//!   `PINWATCH_CORPUS_REQUIRED=1`, as CI sets it); the MANIFEST's per-file
//!   table; a minimum-count check for tests that loop over files.
//! - [`pcap`]: classic pcap files read and written whole, and the TCP
//!   fields of an Ethernet/IPv4 frame, with lengths and checksums fixed
//!   after a rewrite.
//! - [`frames`]: Ethernet/IPv4/TCP and UDP frames built from their fields.
//!
//! It depends on no pinwatch crate, so the parsers' and the sensor's unit
//! tests can use it without building each other.

pub mod corpus;
pub mod frames;
pub mod pcap;
