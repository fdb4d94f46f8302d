//! # pinwatch-parsers
//!
//! Pure parsers for the pinwatch sensor: bytes in, summaries out.
//!
//! ## Contract
//! - **No I/O and no clock.** Every function takes the bytes (and, where time
//!   matters, the packet timestamp) it needs; replaying a capture gives the
//!   same results every run.
//! - **No panics on any input.** Every entry point is meant for hostile
//!   bytes: lengths are checked before slicing, buffers have fixed caps, and
//!   problems come back as counted outcomes (`decode::Skip`,
//!   `tls::TlsEvent::Malformed`, ...) rather than errors that stop a caller.
//!   Each public entry point has a property test here and a cargo-fuzz target
//!   in `parsers/fuzz`.
//! - **Code points stay integers.** Versions, cipher suites and extension types
//!   are kept as sent (GREASE included) so unknown values reach the output;
//!   named constants exist for the ones we act on.
//!
//! ## Modules
//! - [`decode`]: link types, VLAN, IPv4/IPv6, tunnels → innermost 5-tuple.
//! - [`tls`]: TLS record-stream parser (both directions of one connection).
//! - [`hello`]: the ClientHello/ServerHello summary shared by TLS and QUIC.
//! - [`openvpn`]: the TLS stream inside OpenVPN's TCP control channel.
//! - [`ja3`], [`ja4`]: fingerprints computed from the summary only.
//! - [`cert`]: X.509 certificate summaries in Suricata's formats.
//! - [`community_id`]: Community ID v1 flow hashes.
//! - [`quic`]: QUIC long headers, Initial-packet decryption (RFC 9001/9369),
//!   CRYPTO reassembly into the same hello summary as TLS.
//! - [`time`]: [`time::Timestamp`], packet and feed time whose arithmetic
//!   saturates (shared by every crate of the workspace).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cert;
pub mod community_id;
pub mod decode;
pub mod hello;
pub mod ja3;
pub mod ja4;
pub mod openvpn;
pub mod quic;
pub mod time;
pub mod tls;
