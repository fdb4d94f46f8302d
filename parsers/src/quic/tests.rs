//! Known-answer tests (RFC 9001 Appendix A, RFC 9369 Appendix A), synthetic
//! connections built with the test-only protector, and property tests.

use super::crypto::{protect_long, DirKeys, InitialKeys};
use super::header::{params, PacketType};
use super::*;
use crate::hello::Transport;
use crate::ja4::ja4;

/// Hex with any whitespace (as printed in the RFCs) to bytes.
fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

const RFC_DCID: &str = "8394c8f03e515708";

/// RFC 9001 §A.2: the unprotected CRYPTO frame (then PADDING to 1162 bytes).
const A2_CRYPTO_FRAME: &str = "
   060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
   04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
   616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
   04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
   baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
   0d0010000e0403050306030203080408 050806002d00020101001c0002400100
   3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
   75300901100f088394c8f03e51570806 048000ffff";

/// RFC 9001 §A.2: the protected client Initial (1200 bytes).
const RFC9001_A2_PACKET: &str = "
   c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
   d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
   1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
   8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
   30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
   457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
   4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
   4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
   485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
   059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
   7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
   9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
   be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
   68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
   c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
   f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
   291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
   25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
   14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
   ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
   e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
   c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
   203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
   cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
   fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
   a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
   90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
   162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
   40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
   6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
   8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
   be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
   54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
   760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
   f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
   056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
   7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
   e221af44860018ab0856972e194cd934";

/// RFC 9001 §A.3: the server's unprotected payload (ACK + CRYPTO).
const A3_PAYLOAD: &str = "
   02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
   88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
   0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
   020304";

/// RFC 9001 §A.3: the protected server Initial.
const RFC9001_A3_PACKET: &str = "
   cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
   5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
   dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
   022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
   2158407dd074ee";

/// RFC 9001 §A.4: Retry.
const RFC9001_A4_RETRY: &str = "
   ff000000010008f067a5502a4262b574 6f6b656e04a265ba2eff4d829058fb3f
   0f2496ba";

/// RFC 9369 §A.2: the protected v2 client Initial.
const RFC9369_A2_PACKET: &str = "
   d76b3343cf088394c8f03e5157080000 449ea0c95e82ffe67b6abcdb4298b485
   dd04de806071bf03dceebfa162e75d6c 96058bdbfb127cdfcbf903388e99ad04
   9f9a3dd4425ae4d0992cfff18ecf0fdb 5a842d09747052f17ac2053d21f57c5d
   250f2c4f0e0202b70785b7946e992e58 a59ac52dea6774d4f03b55545243cf1a
   12834e3f249a78d395e0d18f4d766004 f1a2674802a747eaa901c3f10cda5500
   cb9122faa9f1df66c392079a1b40f0de 1c6054196a11cbea40afb6ef5253cd68
   18f6625efce3b6def6ba7e4b37a40f77 32e093daa7d52190935b8da58976ff33
   12ae50b187c1433c0f028edcc4c2838b 6a9bfc226ca4b4530e7a4ccee1bfa2a3
   d396ae5a3fb512384b2fdd851f784a65 e03f2c4fbe11a53c7777c023462239dd
   6f7521a3f6c7d5dd3ec9b3f233773d4b 46d23cc375eb198c63301c21801f6520
   bcfb7966fc49b393f0061d974a2706df 8c4a9449f11d7f3d2dcbb90c6b877045
   636e7c0c0fe4eb0f697545460c806910 d2c355f1d253bc9d2452aaa549e27a1f
   ac7cf4ed77f322e8fa894b6a83810a34 b361901751a6f5eb65a0326e07de7c12
   16ccce2d0193f958bb3850a833f7ae43 2b65bc5a53975c155aa4bcb4f7b2c4e5
   4df16efaf6ddea94e2c50b4cd1dfe060 17e0e9d02900cffe1935e0491d77ffb4
   fdf85290fdd893d577b1131a610ef6a5 c32b2ee0293617a37cbb08b847741c3b
   8017c25ca9052ca1079d8b78aebd4787 6d330a30f6a8c6d61dd1ab5589329de7
   14d19d61370f8149748c72f132f0fc99 f34d766c6938597040d8f9e2bb522ff9
   9c63a344d6a2ae8aa8e51b7b90a4a806 105fcbca31506c446151adfeceb51b91
   abfe43960977c87471cf9ad4074d30e1 0d6a7f03c63bd5d4317f68ff325ba3bd
   80bf4dc8b52a0ba031758022eb025cdd 770b44d6d6cf0670f4e990b22347a7db
   848265e3e5eb72dfe8299ad7481a4083 22cac55786e52f633b2fb6b614eaed18
   d703dd84045a274ae8bfa73379661388 d6991fe39b0d93debb41700b41f90a15
   c4d526250235ddcd6776fc77bc97e7a4 17ebcb31600d01e57f32162a8560cacc
   7e27a096d37a1a86952ec71bd89a3e9a 30a2a26162984d7740f81193e8238e61
   f6b5b984d4d3dfa033c1bb7e4f0037fe bf406d91c0dccf32acf423cfa1e70710
   10d3f270121b493ce85054ef58bada42 310138fe081adb04e2bd901f2f13458b
   3d6758158197107c14ebb193230cd115 7380aa79cae1374a7c1e5bbcb80ee23e
   06ebfde206bfb0fcbc0edc4ebec30966 1bdd908d532eb0c6adc38b7ca7331dce
   8dfce39ab71e7c32d318d136b6100671 a1ae6a6600e3899f31f0eed19e3417d1
   34b90c9058f8632c798d4490da498730 7cba922d61c39805d072b589bd52fdf1
   e86215c2d54e6670e07383a27bbffb5a ddf47d66aa85a0c6f9f32e59d85a44dd
   5d3b22dc2be80919b490437ae4f36a0a e55edf1d0b5cb4e9a3ecabee93dfc6e3
   8d209d0fa6536d27a5d6fbb17641cde2 7525d61093f1b28072d111b2b4ae5f89
   d5974ee12e5cf7d5da4d6a31123041f3 3e61407e76cffcdcfd7e19ba58cf4b53
   6f4c4938ae79324dc402894b44faf8af bab35282ab659d13c93f70412e85cb19
   9a37ddec600545473cfb5a05e08d0b20 9973b2172b4d21fb69745a262ccde96b
   a18b2faa745b6fe189cf772a9f84cbfc";

/// RFC 9369 §A.3: the protected v2 server Initial.
const RFC9369_A3_PACKET: &str = "
   dc6b3343cf0008f067a5502a4262b500 4075d92faaf16f05d8a4398c47089698
   baeea26b91eb761d9b89237bbf872630 17915358230035f7fd3945d88965cf17
   f9af6e16886c61bfc703106fbaf3cb4c fa52382dd16a393e42757507698075b2
   c984c707f0a0812d8cd5a6881eaf21ce da98f4bd23f6fe1a3e2c43edd9ce7ca8
   4bed8521e2e140";

/// RFC 9369 §A.4: v2 Retry.
const RFC9369_A4_RETRY: &str = "
   cf6b3343cf0008f067a5502a4262b574 6f6b656ec8646ce8bfe33952d9555436
   65dcc7b6";

/// The ClientHello handshake message of §A.2 (type, length, body).
fn rfc_client_hello_msg() -> Vec<u8> {
    h(A2_CRYPTO_FRAME)[4..].to_vec()
}

/// The ServerHello handshake message of §A.3.
fn rfc_server_hello_msg() -> Vec<u8> {
    h(A3_PAYLOAD)[9..].to_vec()
}

fn feed(c: &mut QuicConn, from_client: bool, d: &[u8]) -> Vec<QuicEvent> {
    let mut out = Vec::new();
    c.datagram(from_client, d, &mut out);
    out
}

fn hellos(ev: &[QuicEvent]) -> (Vec<&ClientHello>, Vec<&ServerHello>) {
    let ch = ev.iter().filter_map(|e| if let QuicEvent::ClientHello(c) = e { Some(&**c) } else { None }).collect();
    let sh = ev.iter().filter_map(|e| if let QuicEvent::ServerHello(s) = e { Some(&**s) } else { None }).collect();
    (ch, sh)
}

fn check_rfc_client_hello(ch: &ClientHello) {
    assert_eq!(ch.sni.as_deref(), Some("example.com"));
    assert_eq!(ch.alpn, vec!["alpn".to_string()]);
    assert_eq!(ch.ciphers, vec![0x1301, 0x1302]);
    assert_eq!(ch.supported_versions, vec![0x0304]);
    assert_eq!(ch.extensions.last(), Some(&0x0039)); // quic_transport_parameters
    let fp = ja4(ch, Transport::Quic);
    assert!(fp.starts_with("q13d0211an_"), "{fp}");
}

fn check_rfc_server_hello(sh: &ServerHello) {
    assert_eq!(sh.cipher, 0x1301);
    assert_eq!(sh.selected_version, Some(0x0304));
    assert_eq!(sh.extensions, vec![0x0033, 0x002b]);
}

#[test]
fn rfc9001_a2_a3_client_and_server_initial() {
    let client = h(RFC9001_A2_PACKET);
    assert_eq!(client.len(), 1200);
    assert!(looks_like_quic_initial(&client));
    let server = h(RFC9001_A3_PACKET);
    assert!(!looks_like_quic_initial(&server)); // empty DCID: not a client's first Initial

    let mut c = QuicConn::new();
    let ev = feed(&mut c, true, &client);
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_client_hello(hellos(&ev).0[0]);
    assert_eq!(c.version(), Some(version::V1));
    assert_eq!(c.original_dcid(), Some(&h(RFC_DCID)[..]));
    assert_eq!(c.decrypted_initials(true), 1);
    // The same datagram again (a retransmission) reports nothing new.
    assert!(feed(&mut c, true, &client).is_empty());

    let ev = feed(&mut c, false, &server);
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_server_hello(hellos(&ev).1[0]);
    check_rfc_client_hello(c.client_hello().unwrap());
    check_rfc_server_hello(c.server_hello().unwrap());
    assert_eq!(c.decrypted_initials(false), 1);
    // Nothing is buffered once the hellos are out, and the ~3 KiB of
    // cached keys are dropped.
    assert!(c.heap_bytes() < 1024, "{}", c.heap_bytes());
    // A later server Initial (say an ACK) still decrypts.
    assert!(feed(&mut c, false, &server).is_empty());
    assert_eq!(c.decrypted_initials(false), 2);
}

#[test]
fn rfc9001_a2_plaintext_and_pn() {
    // Decrypt A.2 directly: packet number 2, payload = CRYPTO frame + PADDING.
    let keys = InitialKeys::derive(params(version::V1).unwrap(), &h(RFC_DCID)).unwrap();
    let pkt = h(RFC9001_A2_PACKET);
    let p = crypto::unprotect_long(&keys.client, &pkt, 18, None).unwrap();
    assert_eq!(p.pn, 2);
    assert_eq!(p.payload.len(), 1162);
    let frame = h(A2_CRYPTO_FRAME);
    assert_eq!(&p.payload[..frame.len()], &frame[..]);
    assert!(p.payload[frame.len()..].iter().all(|b| *b == 0));
    // And protecting that plaintext with the A.2 header gives the RFC bytes.
    let again = protect_long(&keys.client, &h("c300000001088394c8f03e5157080000449e00000002"), 2, &p.payload);
    assert_eq!(again, pkt);
    // A.3 the same way (pn 1, 2-byte encoding).
    let p = crypto::unprotect_long(&keys.server, &h(RFC9001_A3_PACKET), 18, None).unwrap();
    assert_eq!((p.pn, p.payload), (1, h(A3_PAYLOAD)));
}

#[test]
fn rfc9001_server_initial_needs_client_initial() {
    let mut c = QuicConn::new();
    let ev = feed(&mut c, false, &h(RFC9001_A3_PACKET));
    assert_eq!(ev, vec![QuicEvent::Undecryptable { from_client: false, why: "quic_no_client_initial" }]);
}

#[test]
fn rfc9369_a2_a3_v2_initials() {
    let client = h(RFC9369_A2_PACKET);
    assert_eq!(client.len(), 1200);
    assert!(looks_like_quic_initial(&client));
    let mut c = QuicConn::new();
    let ev = feed(&mut c, true, &client);
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_client_hello(hellos(&ev).0[0]);
    assert_eq!(c.version(), Some(version::V2));
    let ev = feed(&mut c, false, &h(RFC9369_A3_PACKET));
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_server_hello(hellos(&ev).1[0]);
    let keys = InitialKeys::derive(params(version::V2).unwrap(), &h(RFC_DCID)).unwrap();
    let p = crypto::unprotect_long(&keys.client, &client, 18, None).unwrap();
    assert_eq!(p.pn, 2);
    assert_eq!(&p.payload[..245], &h(A2_CRYPTO_FRAME)[..]);
}

#[test]
fn rfc_retry_integrity_v1_v2() {
    for (client, retry) in [(RFC9001_A2_PACKET, RFC9001_A4_RETRY), (RFC9369_A2_PACKET, RFC9369_A4_RETRY)] {
        let mut c = QuicConn::new();
        feed(&mut c, true, &h(client));
        assert_eq!(feed(&mut c, false, &h(retry)), vec![QuicEvent::Retry]);
        let mut bad = h(retry);
        let n = bad.len();
        bad[n - 1] ^= 1;
        let mut c = QuicConn::new();
        feed(&mut c, true, &h(client));
        assert_eq!(feed(&mut c, false, &bad), vec![QuicEvent::Malformed { from_client: false, what: "quic_retry_integrity" }]);
        // From the client side a Retry makes no sense.
        assert_eq!(feed(&mut c, true, &h(retry)), vec![QuicEvent::Malformed { from_client: true, what: "quic_unexpected_direction" }]);
    }
}

// ---- synthetic connections -------------------------------------------------

fn varint4(v: usize) -> [u8; 4] {
    (0x8000_0000u32 | v as u32).to_be_bytes()
}

/// A protected long-header packet (2-byte packet number) with `payload`.
#[allow(clippy::too_many_arguments)]
fn long_packet(version: u32, ty: PacketType, dcid: &[u8], scid: &[u8], token: &[u8], pn: u64, payload: &[u8], keys: &DirKeys) -> Vec<u8> {
    let v2 = version == version::V2;
    let bits: u8 = match ty {
        PacketType::Initial => 0,
        PacketType::ZeroRtt => 1,
        PacketType::Handshake => 2,
        PacketType::Retry => 3,
    };
    let wire = if v2 { (bits + 1) & 3 } else { bits };
    let mut payload = payload.to_vec();
    payload.resize(payload.len().max(4), 0);
    let mut hdr = vec![0xc0 | (wire << 4) | 0x01];
    hdr.extend(version.to_be_bytes());
    hdr.push(dcid.len() as u8);
    hdr.extend(dcid);
    hdr.push(scid.len() as u8);
    hdr.extend(scid);
    if ty == PacketType::Initial {
        hdr.extend(varint4(token.len()));
        hdr.extend(token);
    }
    hdr.extend(varint4(2 + payload.len() + 16));
    hdr.extend((pn as u16).to_be_bytes());
    protect_long(keys, &hdr, pn, &payload)
}

fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint4(offset));
    f.extend(varint4(data.len()));
    f.extend(data);
    f
}

fn keys(version: u32, cid: &[u8]) -> InitialKeys {
    InitialKeys::derive(params(version).unwrap(), cid).unwrap()
}

const DCID: &[u8] = &[0xd0, 1, 2, 3, 4, 5, 6, 7, 8];
const CLIENT_SCID: &[u8] = &[0xc1, 0xc1, 0xc1, 0xc1];
const SERVER_SCID: &[u8] = &[0x5e, 0x5e, 0x5e, 0x5e, 0x5e];

#[test]
fn client_hello_split_over_packets_and_shuffled() {
    // Chrome-style: the ClientHello in pieces over three Initials, the pieces
    // of the first packet out of order with PING/PADDING between them.
    let ch = rfc_client_hello_msg();
    let k = keys(version::V1, DCID);
    let (a, b, c) = (&ch[..60], &ch[60..61], &ch[61..]);
    let mut p1 = crypto_frame(60, b);
    p1.push(0x01);
    p1.extend([0, 0, 0]);
    p1.extend(crypto_frame(30, &a[30..]));
    p1.extend(crypto_frame(0, &a[..40])); // overlaps the previous piece
    let pkt1 = long_packet(version::V1, PacketType::Initial, DCID, CLIENT_SCID, &[], 0, &p1, &k.client);
    let pkt2 = long_packet(version::V1, PacketType::Initial, DCID, CLIENT_SCID, &[], 1, &crypto_frame(61, &c[..100]), &k.client);
    let pkt3 = long_packet(version::V1, PacketType::Initial, DCID, CLIENT_SCID, &[], 2, &crypto_frame(161, &c[100..]), &k.client);
    let mut conn = QuicConn::new();
    assert!(feed(&mut conn, true, &pkt3).is_empty());
    assert!(feed(&mut conn, true, &pkt1).is_empty());
    assert!(conn.heap_bytes() > 0);
    let ev = feed(&mut conn, true, &pkt2);
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_client_hello(hellos(&ev).0[0]);
    // Server: ACK + ServerHello coalesced with a Handshake packet and
    // trailing datagram padding; then a 1-RTT short-header datagram.
    let mut sp = vec![0x02, 0x00, 0x00, 0x00, 0x00];
    sp.extend(crypto_frame(0, &rfc_server_hello_msg()));
    let mut dgram = long_packet(version::V1, PacketType::Initial, CLIENT_SCID, SERVER_SCID, &[], 0, &sp, &k.server);
    dgram.extend(long_packet(version::V1, PacketType::Handshake, CLIENT_SCID, SERVER_SCID, &[], 0, &[9; 50], &k.client));
    dgram.extend([0u8; 40]);
    let ev = feed(&mut conn, false, &dgram);
    assert_eq!(ev.len(), 1, "{ev:?}");
    check_rfc_server_hello(hellos(&ev).1[0]);
    assert!(feed(&mut conn, false, &[0x41, 1, 2, 3, 4, 5]).is_empty());
    // Later client Initials go to the server's CID but keep the original keys.
    let ack = long_packet(version::V1, PacketType::Initial, SERVER_SCID, CLIENT_SCID, &[], 3, &[0x02, 0, 0, 0, 0], &k.client);
    assert!(feed(&mut conn, true, &ack).is_empty());
    assert_eq!(conn.decrypted_initials(true), 4);
}

#[test]
fn connection_close_with_tls_alert() {
    let k = keys(version::V1, DCID);
    let mut conn = QuicConn::new();
    let p = long_packet(version::V1, PacketType::Initial, DCID, CLIENT_SCID, &[], 0, &crypto_frame(0, &rfc_client_hello_msg()), &k.client);
    assert_eq!(feed(&mut conn, true, &p).len(), 1);
    // Server closes: CRYPTO_ERROR 0x12e (certificate_unknown), frame type CRYPTO.
    let mut close = vec![0x1c, 0x41, 0x2e, 0x06, 0x0b];
    close.extend(b"bad cert \xff!");
    let p = long_packet(version::V1, PacketType::Initial, CLIENT_SCID, SERVER_SCID, &[], 0, &close, &k.server);
    assert_eq!(
        feed(&mut conn, false, &p),
        vec![QuicEvent::ConnectionClose {
            from_client: false,
            error_code: 0x12e,
            frame_type: Some(6),
            reason: "bad cert \u{fffd}!".into(),
            tls_alert: Some(46)
        }]
    );
    // Application close from the client: no TLS alert.
    let p = long_packet(version::V1, PacketType::Initial, SERVER_SCID, CLIENT_SCID, &[], 1, &[0x1d, 0x41, 0x2e, 0x00], &k.client);
    assert_eq!(
        feed(&mut conn, true, &p),
        vec![QuicEvent::ConnectionClose { from_client: true, error_code: 0x12e, frame_type: None, reason: String::new(), tls_alert: None }]
    );
    // An unknown frame after the close is reported; the close still is.
    let p =
        long_packet(version::V1, PacketType::Initial, SERVER_SCID, CLIENT_SCID, &[], 2, &[0x1c, 0x0a, 0x00, 0x00, 0x08, 0x00], &k.client);
    let ev = feed(&mut conn, true, &p);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1], QuicEvent::Malformed { from_client: true, what: "quic_unknown_frame" });
}

/// A Retry built like a server would (the tag computed with the RFC 9001
/// §5.8 key over the pseudo-packet).
fn retry_packet(version: u32, odcid: &[u8], dcid: &[u8], scid: &[u8], token: &[u8]) -> Vec<u8> {
    let wire: u8 = if version == version::V2 { 0 } else { 3 };
    let mut p = vec![0xc0 | (wire << 4)];
    p.extend(version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend(dcid);
    p.push(scid.len() as u8);
    p.extend(scid);
    p.extend(token);
    let (aead, nonce) = retry_aead(version).unwrap();
    let mut aad = retry_pseudo_packet(odcid, &p).unwrap();
    let tag = aead.encrypt_in_place_detached(&nonce.into(), &aad, &mut []).unwrap();
    aad.clear();
    p.extend(tag);
    p
}

#[test]
fn retry_switches_keys_to_the_new_dcid() {
    for v in [version::V1, version::V2] {
        let k1 = keys(v, DCID);
        let ch = crypto_frame(0, &rfc_client_hello_msg());
        let mut conn = QuicConn::new();
        let p = long_packet(v, PacketType::Initial, DCID, CLIENT_SCID, &[], 0, &ch, &k1.client);
        assert_eq!(feed(&mut conn, true, &p).len(), 1);
        let retry = retry_packet(v, DCID, CLIENT_SCID, SERVER_SCID, b"tok");
        assert_eq!(feed(&mut conn, false, &retry), vec![QuicEvent::Retry]);
        // A second Retry is reported, but the client follows the first.
        let retry2 = retry_packet(v, DCID, CLIENT_SCID, &[0x99; 8], b"tok2");
        assert_eq!(feed(&mut conn, false, &retry2), vec![QuicEvent::Retry]);
        // The client retries towards SERVER_SCID, with keys from it; the
        // identical ClientHello is not reported twice.
        let k2 = keys(v, SERVER_SCID);
        let p = long_packet(v, PacketType::Initial, SERVER_SCID, CLIENT_SCID, b"tok", 1, &ch, &k2.client);
        assert!(feed(&mut conn, true, &p).is_empty());
        assert_eq!(conn.original_dcid(), Some(SERVER_SCID));
        let sp = crypto_frame(0, &rfc_server_hello_msg());
        let p = long_packet(v, PacketType::Initial, CLIENT_SCID, &[7; 8], &[], 0, &sp, &k2.server);
        let ev = feed(&mut conn, false, &p);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(conn.version(), Some(v));
    }
}

#[test]
fn version_negotiation_then_new_attempt() {
    let mut conn = QuicConn::new();
    // An Initial of a version we do not know: not decryptable.
    let mut grease = vec![0xc0, 0x12, 0x34, 0x56, 0x78, 8];
    grease.extend(DCID[..8].iter());
    grease.extend([0u8; 1200]);
    assert!(!looks_like_quic_initial(&grease));
    assert_eq!(feed(&mut conn, true, &grease), vec![QuicEvent::Undecryptable { from_client: true, why: "quic_unsupported_version" }]);
    let mut vn = vec![0x80, 0, 0, 0, 0, 4];
    vn.extend(CLIENT_SCID);
    vn.push(8);
    vn.extend(&DCID[..8]);
    vn.extend([0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf, 0xff]);
    assert_eq!(feed(&mut conn, false, &vn), vec![QuicEvent::VersionNegotiation { versions: vec![1, version::V2] }]);
    // The new attempt uses another DCID.
    let new_dcid = [0xee; 12];
    let k = keys(version::V1, &new_dcid);
    let p =
        long_packet(version::V1, PacketType::Initial, &new_dcid, CLIENT_SCID, &[], 0, &crypto_frame(0, &rfc_client_hello_msg()), &k.client);
    let ev = feed(&mut conn, true, &p);
    assert_eq!(hellos(&ev).0.len(), 1, "{ev:?}");
    assert_eq!(conn.original_dcid(), Some(&new_dcid[..]));
    assert_eq!(conn.version(), Some(version::V1));
    // A later connection reusing the 5-tuple with yet another DCID: its own
    // DCID decrypts it, the keys move there and its ClientHello is reported.
    let third = [0x33; 8];
    let mut ch = rfc_client_hello_msg();
    ch[44] = 0x03;
    let p = long_packet(
        version::V1,
        PacketType::Initial,
        &third,
        CLIENT_SCID,
        &[],
        0,
        &crypto_frame(0, &ch),
        &keys(version::V1, &third).client,
    );
    let ev = feed(&mut conn, true, &p);
    assert_eq!(hellos(&ev).0.len(), 1, "{ev:?}");
    assert_eq!(conn.client_hello().unwrap().ciphers, vec![0x1301, 0x1303]);
    assert_eq!(conn.original_dcid(), Some(&third[..]));
}

#[test]
fn compatible_version_negotiation_v1_to_v2() {
    // RFC 9368: the client offers v1, the server answers in v2; both use
    // keys from the client's original DCID, each with its version's salt.
    let mut conn = QuicConn::new();
    let p = long_packet(
        version::V1,
        PacketType::Initial,
        DCID,
        CLIENT_SCID,
        &[],
        0,
        &crypto_frame(0, &rfc_client_hello_msg()),
        &keys(version::V1, DCID).client,
    );
    assert_eq!(feed(&mut conn, true, &p).len(), 1);
    let p = long_packet(
        version::V2,
        PacketType::Initial,
        CLIENT_SCID,
        SERVER_SCID,
        &[],
        0,
        &crypto_frame(0, &rfc_server_hello_msg()),
        &keys(version::V2, DCID).server,
    );
    assert_eq!(hellos(&feed(&mut conn, false, &p)).1.len(), 1);
    assert_eq!(conn.version(), Some(version::V2));
}

#[test]
fn drafts_and_vendor_versions_decrypt() {
    for v in [0xff00_001d, 0xff00_0020, 0xff00_0022, 0xff00_001b, version::MVFST_D27] {
        let k = keys(v, DCID);
        let p = long_packet(v, PacketType::Initial, DCID, &[], &[], 0, &crypto_frame(0, &rfc_client_hello_msg()), &k.client);
        assert!(looks_like_quic_initial(&p), "{v:08x}");
        let mut conn = QuicConn::new();
        assert_eq!(hellos(&feed(&mut conn, true, &p)).0.len(), 1, "{v:08x}");
    }
}

#[test]
fn reserved_version_tries_draft29_then_v1_salt() {
    for real in [version::DRAFT_29, version::V1] {
        let k = keys(real, DCID);
        let ch = crypto_frame(0, &rfc_client_hello_msg());
        let p = long_packet(0x1a2a_3a4a, PacketType::Initial, DCID, &[], &[], 0, &ch, &k.client);
        assert!(looks_like_quic_initial(&p));
        let mut conn = QuicConn::new();
        assert_eq!(hellos(&feed(&mut conn, true, &p)).0.len(), 1, "{real:08x}");
        let p = long_packet(0x1a2a_3a4a, PacketType::Initial, DCID, &[], &[], 1, &[0x01], &k.client);
        assert!(feed(&mut conn, true, &p).is_empty());
        assert_eq!(conn.decrypted_initials(true), 2);
        assert_eq!(conn.version(), Some(0x1a2a_3a4a));
    }
}

#[test]
fn hello_retry_request_then_second_client_hello() {
    // TLS-level HRR: the server's ServerHello is an HRR, the client's second
    // ClientHello continues the CRYPTO stream after the first one.
    let k = keys(version::V1, DCID);
    let ch = rfc_client_hello_msg();
    let mut ch2 = ch.clone();
    ch2[10] ^= 0xff; // another random: not part of the summary
    ch2[44] = 0x03; // ciphers 1301,1303: a different summary, reported
    let mut conn = QuicConn::new();
    let p = long_packet(version::V1, PacketType::Initial, DCID, &[], &[], 0, &crypto_frame(0, &ch), &k.client);
    assert_eq!(feed(&mut conn, true, &p).len(), 1);
    let mut hrr = rfc_server_hello_msg();
    hrr[6..38].copy_from_slice(&tls::HRR_RANDOM);
    let p = long_packet(version::V1, PacketType::Initial, &[], SERVER_SCID, &[], 0, &crypto_frame(0, &hrr), &k.server);
    let ev = feed(&mut conn, false, &p);
    assert!(hellos(&ev).1[0].hello_retry_request);
    let p = long_packet(version::V1, PacketType::Initial, SERVER_SCID, &[], &[], 1, &crypto_frame(ch.len(), &ch2), &k.client);
    let ev = feed(&mut conn, true, &p);
    assert_eq!(hellos(&ev).0.len(), 1, "{ev:?}");
    assert_eq!(conn.client_hello().unwrap().ciphers, vec![0x1301, 0x1303]);
    let p = long_packet(
        version::V1,
        PacketType::Initial,
        &[],
        SERVER_SCID,
        &[],
        1,
        &crypto_frame(hrr.len(), &rfc_server_hello_msg()),
        &k.server,
    );
    assert_eq!(hellos(&feed(&mut conn, false, &p)).1.len(), 1);
    assert!(!conn.server_hello().unwrap().hello_retry_request);
}

#[test]
fn overflow_is_reported_once_and_bounded() {
    let k = keys(version::V1, DCID);
    let mut conn = QuicConn::new();
    let mut overflows = 0;
    for i in 0..300u64 {
        // Pieces with holes between them: they all wait in `pending`.
        let p =
            long_packet(version::V1, PacketType::Initial, DCID, &[], &[], i, &crypto_frame(100 + 200 * i as usize, &[1; 100]), &k.client);
        for e in feed(&mut conn, true, &p) {
            assert_eq!(e, QuicEvent::Overflow { from_client: true });
            overflows += 1;
        }
        assert!(conn.heap_bytes() <= 2 * MAX_CRYPTO_BYTES);
    }
    assert_eq!(overflows, 1);
}

#[test]
fn malformed_datagrams() {
    let mut c = QuicConn::new();
    assert_eq!(feed(&mut c, true, &[0xc0, 0, 0, 0, 1]), vec![QuicEvent::Malformed { from_client: true, what: "quic_header_truncated" }]);
    let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
    long_cid.extend([0; 40]);
    assert_eq!(feed(&mut c, true, &long_cid), vec![QuicEvent::Malformed { from_client: true, what: "quic_cid_too_long" }]);
    // A client Initial whose AEAD tag is wrong.
    let mut p = h(RFC9001_A2_PACKET);
    p[500] ^= 1;
    assert_eq!(feed(&mut c, true, &p), vec![QuicEvent::Undecryptable { from_client: true, why: "quic_initial_auth_failed" }]);
    assert!(feed(&mut c, true, &[]).is_empty());
    assert!(feed(&mut c, true, &[0x40; 30]).is_empty()); // short header
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Random datagrams, some starting like long headers of known versions.
    #[test]
    fn random_datagrams_never_panic(
        dgrams in proptest::collection::vec((proptest::bool::ANY, 0u8..6, proptest::collection::vec(proptest::num::u8::ANY, 0..1300)), 1..12)
    ) {
        let mut c = QuicConn::new();
        let mut out = Vec::new();
        for (from_client, kind, mut d) in dgrams {
            let v: u32 = match kind { 0 => 1, 1 => version::V2, 2 => 0, 3 => 0xff00_001d, _ => 0x1234_5678 };
            if kind < 5 && d.len() > 6 {
                d[0] |= 0x80;
                d[1..5].copy_from_slice(&v.to_be_bytes());
                d[5] %= 24;
            }
            c.datagram(from_client, &d, &mut out);
        }
        proptest::prop_assert!(c.heap_bytes() <= 2 * 4 * MAX_CRYPTO_BYTES);
    }

    /// The RFC client Initial with one byte changed, cut short, or with junk
    /// coalesced after it.
    #[test]
    fn mutated_rfc_initial_never_panics(pos in 0usize..1200, val in proptest::num::u8::ANY, cut in 0usize..1200, tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        let mut p = h(RFC9001_A2_PACKET);
        p[pos] = val;
        p.truncate(p.len() - cut);
        p.extend(tail);
        let mut c = QuicConn::new();
        let mut out = Vec::new();
        c.datagram(true, &p, &mut out);
        c.datagram(false, &h(RFC9001_A3_PACKET), &mut out);
        let _ = looks_like_quic_initial(&p);
    }

    /// Properly protected Initials with random frames inside: the frame
    /// parser and the reassembler see arbitrary plaintext; memory stays bounded.
    #[test]
    fn random_plaintext_in_valid_initials(
        payloads in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0usize..70000), 1..30)
    ) {
        let k = keys(version::V1, DCID);
        let mut c = QuicConn::new();
        let mut out = Vec::new();
        for (i, (from_client, mut body, off)) in payloads.into_iter().enumerate() {
            if i % 2 == 0 {
                // Give half of them a CRYPTO frame header at a random offset.
                let mut f = crypto_frame(off, &[]);
                let n = body.len();
                f.truncate(5);
                f.extend(varint4(n));
                f.extend(body);
                body = f;
            }
            let keys = if from_client || i == 0 { &k.client } else { &k.server };
            let p = long_packet(version::V1, PacketType::Initial, DCID, &[], &[], i as u64, &body, keys);
            c.datagram(from_client || i == 0, &p, &mut out);
            proptest::prop_assert!(c.heap_bytes() <= 2 * 4 * MAX_CRYPTO_BYTES);
        }
    }
}
