//! TLS sessions carried in OpenVPN's TCP control channel: the flow table
//! hands a stream that starts with an OpenVPN client hard reset to
//! `pinwatch_parsers::openvpn`, and the TLS bytes it unwraps to the
//! session's TLS parser, so these sessions get the same `tls` record as any
//! other.

use pinwatch_parsers::openvpn::looks_like_client_reset;
use pinwatch_parsers::tls::{Dir, TlsEvent};

use crate::flow::session::TlsSession;

/// Called at a direction's first segment, before the TLS test: true when
/// this direction is OpenVPN over TCP (the client's stream starts with a
/// hard reset, or the session was already found to be OpenVPN), and the
/// session then unwraps it.
pub fn starts(session: &mut TlsSession, dir: Dir, first: &[u8]) -> bool {
    if session.openvpn().is_some() {
        return true;
    }
    if dir == Dir::Client && session.parser.offset(Dir::Client) == 0 && looks_like_client_reset(first) {
        session.rare.get_or_insert_with(Box::default).openvpn = Some(Box::default());
        return true;
    }
    false
}

/// Unwrap `bytes` of one direction and feed the TLS inside to the parser.
pub fn feed(session: &mut TlsSession, dir: Dir, bytes: &[u8], ts: i64, events: &mut Vec<TlsEvent>) {
    let Some(o) = session.openvpn() else { return };
    let mut tls = Vec::new();
    o.feed(dir, bytes, &mut tls);
    if !tls.is_empty() {
        session.parser.feed(dir, &tls, ts, events);
    }
}
