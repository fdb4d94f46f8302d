//! Test support for the end-to-end tests of pinwatch.
//!
//! The corpus conformance test (`tests/tests/corpus.rs`, run it with
//! `scripts/conformance.sh`) replays every capture of the shared corpus that
//! has an independent oracle and compares pinwatch's EVE `tls` records (and,
//! for IETF QUIC, its `quic` records: fields `quic_*`) with it, field by
//! field. The pieces are here so other tests can reuse them:
//!
//! - [`corpus`]: where the corpus is (`PINWATCH_CORPUS`, else
//!   `<workspace>/../shared/corpus`), the MANIFEST's capture → oracle-name
//!   map, every capture file in the corpus.
//! - [`oracle`]: parsers for `oracle/<name>.tshark.tsv` (tshark 4.0.17),
//!   `<name>.ja4rs.json` (FoxIO rust ja4) and `<name>.certs.tsv` (python
//!   `cryptography`). These are written from the oracle README, not from our
//!   parser code, and share nothing with it.
//! - [`eve`]: our side: the `tls` and `quic` lines of a run, keyed by client/server.
//! - [`compare`]: matching oracle streams (TCP, and QUIC streams whose
//!   Initial tshark decrypted) to our records and the per-field comparison,
//!   with tallies and a list of every disagreement. Google QUIC (CHLO) and
//!   TLS over plain UDP are counted as out of scope.
//! - [`known`]: disagreements that were looked at and explained (reported
//!   separately, not counted against us), and the captures whose read error
//!   is expected.
//! - Classic pcap read/write, frame builders and the corpus locator are in
//!   the shared test kit (`pinwatch_testkit`, `tests/kit`).
//! - [`run`]: replaying one capture in-process (`catch_unwind`, so a panic is
//!   a result, not a crash) and a small parallel runner with a watchdog.
//!
//! ## Why the library API and not the binary
//!
//! A test in another package cannot use `env!("CARGO_BIN_EXE_pinwatch")`
//! (Cargo sets it only for the package that owns the binary), and depending
//! on `pinwatch` (even as a dev-dependency) builds its *library* only, not
//! `target/*/pinwatch`. The tests therefore call
//! `pinwatch::run::pipeline::replay` directly, which is what the binary calls too,
//! so `cargo test` always tests the code it just built.

pub mod compare;
pub mod corpus;
pub mod eve;
pub mod fuzz;
pub mod known;
pub mod oracle;
pub mod run;
