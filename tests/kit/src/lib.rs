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
//! - [`sys`]: the machine's tools run from a test (a command that must
//!   succeed, is a tool installed, are we root), the skip-or-fail policy of
//!   tests that need them (`SKIPPED`, or a failure when CI sets the test's
//!   `PINWATCH_*_REQUIRED=1`), scratch directories, a child killed on drop.
//! - [`pki`]: a throwaway PKI made with `openssl`: CAs and the leaves they
//!   sign, self-signed certificates.
//! - [`netns`]: network namespaces for tests that run real daemons, with
//!   their veths, scratch directory and processes, all removed on drop.
//!
//! It depends on no crate at all (none of pinwatch's), so the parsers' and
//! the sensor's unit tests can use it without building each other.

pub mod corpus;
pub mod frames;
pub mod netns;
pub mod pcap;
pub mod pki;
pub mod sys;
