#!/usr/bin/env python3
"""QUIC (RFC 9000/9001, v1 and v2 = RFC 9369) flows in a classic pcap, for the pinwatch testbed checker.

Imported by pcap_tls_summary.py; also usable alone:

    pcap_quic.py CAPTURE.pcap [--keylog KEYLOG]

A flow is a UDP 5-tuple whose first datagram is a long-header Initial (v1 or v2) from the client. Initial
packets are decrypted with the keys derived from the client's first Destination Connection ID (no secrets
needed: this is what any on-path observer can read). With an NSS key log (the client's SSLKEYLOGFILE,
labels CLIENT/SERVER_HANDSHAKE_TRAFFIC_SECRET and CLIENT/SERVER_TRAFFIC_SECRET_0) the Handshake and
1-RTT packets are decrypted too. Needs `cryptography` (AES/ChaCha20) only to decrypt; HKDF is stdlib.

Observation (a testbed guard, not pinwatch's classifier):
  * a CONNECTION_CLOSE of type 0x1c with an error in 0x100..0x1ff (CRYPTO_ERROR = 0x100 + TLS alert) before
    the handshake finished -> <sender>_rejected, alert name(code); class A if a copy of that frame is in an
    Initial packet (readable without secrets), '-' if only in Handshake/1-RTT packets (key log needed);
  * both sides sent 1-RTT (short header) packets and nothing above -> established;
  * no server datagram at all -> no_server_response.
"""
import hashlib
import hmac
import struct
import sys

V1, V2 = 0x00000001, 0x6B3343CF
SALT = {V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
        V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")}
LABEL_PREFIX = {V1: b"quic ", V2: b"quicv2 "}
# long header packet type bits (first byte & 0x30) >> 4
LONG_TYPES = {V1: {0: "I", 1: "0R", 2: "H", 3: "Retry"}, V2: {1: "I", 2: "0R", 3: "H", 0: "Retry"}}
VNAME = {V1: "v1", V2: "v2"}
SUITES = {0x1301: (hashlib.sha256, 16, "aes"), 0x1302: (hashlib.sha384, 32, "aes"),
          0x1303: (hashlib.sha256, 32, "chacha")}
HS = {1: "CH", 2: "SH", 4: "NST", 8: "EE", 11: "Cert", 13: "CR", 15: "CV", 20: "Fin"}
FRAME_NAMES = {0x00: "PAD", 0x01: "PING", 0x02: "ACK", 0x03: "ACK", 0x04: "RESET_STREAM",
               0x05: "STOP_SENDING", 0x06: "CRYPTO", 0x07: "NEW_TOKEN", 0x10: "MAX_DATA",
               0x11: "MAX_STREAM_DATA", 0x12: "MAX_STREAMS", 0x13: "MAX_STREAMS", 0x14: "DATA_BLOCKED",
               0x15: "STREAM_DATA_BLOCKED", 0x16: "STREAMS_BLOCKED", 0x17: "STREAMS_BLOCKED",
               0x18: "NEW_CID", 0x19: "RETIRE_CID", 0x1a: "PATH_CHALLENGE", 0x1b: "PATH_RESPONSE",
               0x1c: "CC", 0x1d: "APP_CC", 0x1e: "HANDSHAKE_DONE", 0x30: "DATAGRAM", 0x31: "DATAGRAM"}


# ------------------------------------------------------------------------------------------------
# crypto
# ------------------------------------------------------------------------------------------------
def hkdf_extract(h, salt, ikm):
    return hmac.new(salt, ikm, h).digest()


def hkdf_expand_label(h, secret, label, length):
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), h).digest()
        out += t
        i += 1
    return out[:length]


class Keys:
    """Packet protection keys of one direction and epoch."""

    def __init__(self, version, secret, suite=0x1301):
        h, klen, self.kind = SUITES[suite]
        pre = LABEL_PREFIX[version]
        self.key = hkdf_expand_label(h, secret, pre + b"key", klen)
        self.iv = hkdf_expand_label(h, secret, pre + b"iv", 12)
        self.hp = hkdf_expand_label(h, secret, pre + b"hp", klen)

    def mask(self, sample):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        if self.kind == "chacha":
            enc = Cipher(algorithms.ChaCha20(self.hp, sample), mode=None).encryptor()
            return enc.update(b"\x00" * 5)
        enc = Cipher(algorithms.AES(self.hp), modes.ECB()).encryptor()
        return enc.update(sample) + enc.finalize()

    def open(self, pn, aad, ct):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
        nonce = bytes(a ^ b for a, b in zip(self.iv, pn.to_bytes(12, "big")))
        aead = ChaCha20Poly1305(self.key) if self.kind == "chacha" else AESGCM(self.key)
        return aead.decrypt(nonce, ct, aad)


def initial_keys(version, dcid):
    init = hkdf_extract(hashlib.sha256, SALT[version], dcid)
    return {side: Keys(version, hkdf_expand_label(hashlib.sha256, init, label, 32))
            for side, label in (("C", b"client in"), ("S", b"server in"))}


def read_keylog(path):
    """client_random (bytes) -> {label: secret}"""
    out = {}
    if not path:
        return out
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and not line.startswith("#"):
                    out.setdefault(bytes.fromhex(p[1]), {})[p[0]] = bytes.fromhex(p[2])
    except (OSError, ValueError):
        pass
    return out


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------
def varint(b, p):
    n = 1 << (b[p] >> 6)
    v = b[p] & 0x3F
    for i in range(1, n):
        v = (v << 8) | b[p + i]
    return v, p + n


def decode_pn(largest, truncated, nbits):
    """RFC 9000 A.3"""
    expected = largest + 1
    win = 1 << nbits
    hwin, mask = win // 2, win - 1
    cand = (expected & ~mask) | truncated
    if cand <= expected - hwin and cand < (1 << 62) - win:
        return cand + win
    if cand > expected + hwin and cand >= win:
        return cand - win
    return cand


def parse_frames(pl):
    """List of (name, detail) for a decrypted payload; stops at an unknown frame type."""
    out = []
    p = 0
    try:
        while p < len(pl):
            ft, p = varint(pl, p)
            name = FRAME_NAMES.get(ft, "STREAM" if 0x08 <= ft <= 0x0F else f"0x{ft:x}")
            det = None
            if ft == 0x00:
                while p < len(pl) and pl[p] == 0:
                    p += 1
            elif ft == 0x01 or ft == 0x1e:
                pass
            elif ft in (0x02, 0x03):
                _largest, p = varint(pl, p)
                _delay, p = varint(pl, p)
                cnt, p = varint(pl, p)
                _first, p = varint(pl, p)
                for _ in range(2 * cnt):
                    _, p = varint(pl, p)
                if ft == 0x03:
                    for _ in range(3):
                        _, p = varint(pl, p)
            elif ft == 0x04:
                for _ in range(3):
                    _, p = varint(pl, p)
            elif ft == 0x05:
                for _ in range(2):
                    _, p = varint(pl, p)
            elif ft == 0x06:
                off, p = varint(pl, p)
                ln, p = varint(pl, p)
                det = (off, pl[p:p + ln])
                p += ln
            elif ft == 0x07:
                ln, p = varint(pl, p)
                p += ln
            elif 0x08 <= ft <= 0x0F:
                sid, p = varint(pl, p)
                off = 0
                if ft & 0x04:
                    off, p = varint(pl, p)
                if ft & 0x02:
                    ln, p = varint(pl, p)
                else:
                    ln = len(pl) - p
                det = (sid, off, ln, bool(ft & 0x01))
                p += ln
            elif ft in (0x10, 0x12, 0x13, 0x14, 0x16, 0x17, 0x19):
                _, p = varint(pl, p)
            elif ft in (0x11, 0x15):
                for _ in range(2):
                    _, p = varint(pl, p)
            elif ft == 0x18:
                for _ in range(2):
                    _, p = varint(pl, p)
                ln = pl[p]
                p += 1 + ln + 16
            elif ft in (0x1a, 0x1b):
                p += 8
            elif ft in (0x1c, 0x1d):
                code, p = varint(pl, p)
                ftype = None
                if ft == 0x1c:
                    ftype, p = varint(pl, p)
                ln, p = varint(pl, p)
                det = (code, ftype, pl[p:p + ln].decode("utf-8", "replace"))
                p += ln
            elif ft in (0x30, 0x31):
                ln = len(pl) - p
                if ft == 0x31:
                    ln, p = varint(pl, p)
                p += ln
            else:
                out.append((name, None))
                break
            out.append((name, det))
    except IndexError:
        out.append(("TRUNCATED", None))
    return out


def parse_hello(msg):
    """(sni, alpn, client_random) from a ClientHello message (type+len+body); (None, None, None) on error."""
    try:
        body = msg[4:]
        rnd = body[2:34]
        p = 34
        p += 1 + body[p]
        n = struct.unpack("!H", body[p:p + 2])[0]
        p += 2 + n
        p += 1 + body[p]
        end = p + 2 + struct.unpack("!H", body[p:p + 2])[0]
        p += 2
        sni = alpn = None
        while p + 4 <= end:
            et, el = struct.unpack("!HH", body[p:p + 4])
            ed = body[p + 4:p + 4 + el]
            if et == 0 and len(ed) > 5:
                sni = ed[5:5 + struct.unpack("!H", ed[3:5])[0]].decode("ascii", "replace")
            elif et == 16 and len(ed) > 3:
                alpn = ed[3:3 + ed[2]].decode("ascii", "replace")
            p += 4 + el
        return sni, alpn, rnd
    except (IndexError, struct.error):
        return None, None, None


def server_hello_suite(msg):
    try:
        body = msg[4:]
        p = 34
        p += 1 + body[p]
        return struct.unpack("!H", body[p:p + 2])[0]
    except (IndexError, struct.error):
        return None


class CryptoStream:
    """CRYPTO frame reassembly of one side and epoch."""

    def __init__(self):
        self.parts = {}

    def add(self, off, data):
        if off not in self.parts or len(self.parts[off]) < len(data):
            self.parts[off] = data

    def data(self):
        buf = bytearray()
        for off in sorted(self.parts):
            d = self.parts[off]
            if off > len(buf):
                break
            buf += d[len(buf) - off:]
        return bytes(buf)

    def messages(self):
        d, p, out = self.data(), 0, []
        while p + 4 <= len(d):
            ln = int.from_bytes(d[p + 1:p + 4], "big")
            if p + 4 + ln > len(d):
                break
            out.append(d[p:p + 4 + ln])
            p += 4 + ln
        return out


class Packet:
    def __init__(self, ts, side, ptype, length):
        self.ts, self.side, self.ptype, self.length = ts, side, ptype, length
        self.frames = None   # list of (name, detail) when decrypted
        self.pn = None


class QuicFlow:
    is_quic = True

    def __init__(self, ts, cli, srv, version, odcid, cscid):
        self.ts, self.cli, self.srv = ts, cli, srv
        self.idx = 0
        self.version = version
        self.odcid = odcid
        self.cid_len = {"C": None, "S": len(cscid)}   # DCID length of short packets sent by side
        self.keys = {("I", side): k for side, k in initial_keys(version, odcid).items()}
        self.largest = {}
        self.crypto = {}
        self.dgrams = []          # (ts, side, [Packet])
        self.sni = "-"
        self.alpn = None
        self.random = None
        self.suite = None
        self.secrets = None

    # -- decryption ----------------------------------------------------------------------
    def _key(self, space, side):
        k = self.keys.get((space, side))
        if k is None and space in ("H", "1R") and self.secrets is not None and self.suite in SUITES:
            who = "CLIENT" if side == "C" else "SERVER"
            label = f"{who}_HANDSHAKE_TRAFFIC_SECRET" if space == "H" else f"{who}_TRAFFIC_SECRET_0"
            sec = self.secrets.get(label)
            if sec is not None:
                k = self.keys[(space, side)] = Keys(self.version, sec, self.suite)
        return k

    def _unprotect(self, pkt, dgram, start, pn_off, end, space, short):
        k = self._key(space, pkt.side)
        if k is None or pn_off + 20 > len(dgram):
            return
        try:
            mask = k.mask(dgram[pn_off + 4:pn_off + 20])
        except ImportError:
            return
        first = dgram[start] ^ (mask[0] & (0x1F if short else 0x0F))
        pnl = (first & 3) + 1
        tpn = int.from_bytes(bytes(a ^ b for a, b in zip(dgram[pn_off:pn_off + pnl], mask[1:1 + pnl])), "big")
        pn = decode_pn(self.largest.get((space, pkt.side), -1), tpn, 8 * pnl)
        aad = bytes([first]) + dgram[start + 1:pn_off] + tpn.to_bytes(pnl, "big")
        try:
            pl = k.open(pn, aad, dgram[pn_off + pnl:end])
        except Exception:   # noqa: BLE001 (InvalidTag: wrong key or not ours)
            return
        self.largest[(space, pkt.side)] = max(pn, self.largest.get((space, pkt.side), -1))
        pkt.pn = pn
        pkt.frames = parse_frames(pl)
        for name, det in pkt.frames:
            if name == "CRYPTO" and det is not None:
                self.crypto.setdefault((space, pkt.side), CryptoStream()).add(*det)
        self._learn()

    def _learn(self):
        if self.random is None:
            msgs = self.crypto.get(("I", "C"), CryptoStream()).messages()
            if msgs and msgs[0][0] == 1:
                sni, self.alpn, self.random = parse_hello(msgs[0])
                self.sni = sni or "-"
        if self.suite is None:
            msgs = self.crypto.get(("I", "S"), CryptoStream()).messages()
            if msgs and msgs[0][0] == 2:
                self.suite = server_hello_suite(msgs[0])
        if self.secrets is None and self.random is not None and self.random in KEYLOG:
            self.secrets = KEYLOG[self.random]

    # -- datagrams -----------------------------------------------------------------------
    def add_datagram(self, ts, side, d):
        pkts = []
        p = 0
        while p < len(d):
            b0 = d[p]
            if b0 & 0x80:   # long header
                if p + 7 > len(d):
                    break
                ver = struct.unpack("!I", d[p + 1:p + 5])[0]
                q = p + 5
                dl = d[q]
                q += 1 + dl
                sl = d[q]
                scid = d[q + 1:q + 1 + sl]
                q += 1 + sl
                if ver == 0:
                    pkts.append(Packet(ts, side, "VN", len(d) - p))
                    break
                ptype = LONG_TYPES.get(ver, {}).get((b0 & 0x30) >> 4, "?")
                if ptype == "Retry" or ptype == "?":
                    pkts.append(Packet(ts, side, ptype, len(d) - p))
                    break
                if ptype == "I":
                    tl, q = varint(d, q)
                    q += tl
                ln, q = varint(d, q)
                end = min(q + ln, len(d))
                if side == "S" and self.cid_len["C"] is None:
                    self.cid_len["C"] = len(scid)    # client's short packets carry the server's CID
                pkt = Packet(ts, side, ptype, end - p)
                space = "H" if ptype == "H" else ptype
                if ptype in ("I", "H"):
                    self._unprotect(pkt, d, p, q, end, space, short=False)
                pkts.append(pkt)
                p = end
            elif not b0 & 0x40:   # fixed bit clear: not a packet; aioquic pads datagrams with zeros
                rest = d[p:]
                pkts.append(Packet(ts, side, "zeros" if not any(rest) else "junk", len(rest)))
                break
            else:           # short header: the rest of the datagram
                pkt = Packet(ts, side, "1R", len(d) - p)
                cl = self.cid_len[side]
                if cl is not None:
                    self._unprotect(pkt, d, p, p + 1 + cl, len(d), "1R", short=True)
                pkts.append(pkt)
                break
        self.dgrams.append((ts, side, pkts))

    # -- observation ---------------------------------------------------------------------
    def packets(self):
        for _ts, _side, pkts in self.dgrams:
            yield from pkts

    def observe(self):
        pk = list(self.packets())
        if not any(p.side == "S" for p in pk):
            return ("no_server_response", "-", "-", "-")
        hs_done = False
        closes = []   # (packet, code, frame_type)
        for p in pk:
            for name, det in p.frames or ():
                if name == "HANDSHAKE_DONE":
                    hs_done = True
                if name == "CC" and det is not None and 0x100 <= det[0] <= 0x1FF and not hs_done:
                    closes.append((p, det[0]))
        if closes:
            side = closes[0][0].side
            code = closes[0][1]
            seen_initial = any(p.ptype == "I" and p.side == side and c == code for p, c in closes)
            alert = f"{ALERTS.get(code - 0x100, 'alert')}({code - 0x100})"
            return ("client_rejected" if side == "C" else "server_rejected",
                    "A" if seen_initial else "-", "client" if side == "C" else "server", alert)
        if any(p.side == "C" and p.ptype == "1R" for p in pk) and \
                any(p.side == "S" and p.ptype == "1R" for p in pk):
            req, resp = self.exchange()
            if req is False or resp is False:
                # 1-RTT readable (key log) but no request/response on a client-initiated
                # bidirectional stream: the testbed's clients always make one
                return ("established_no_exchange", "-", "-", "-")
            return ("established", "-", "-", "-")
        return ("incomplete", "-", "-", "encrypted" if any(p.frames is None for p in pk) else "-")

    def exchange(self):
        """(request seen, response seen) on client-initiated bidirectional streams (id % 4 == 0), from
        the decrypted 1-RTT packets of each side; None for a side none of whose 1-RTT packets was read."""
        out = []
        for side in ("C", "S"):
            rtt = [p for p in self.packets() if p.side == side and p.ptype == "1R"]
            if not any(p.frames is not None for p in rtt):
                out.append(None)
                continue
            out.append(any(name == "STREAM" and det is not None and det[0] % 4 == 0 and det[2] > 0
                           for p in rtt for name, det in p.frames or ()))
        return tuple(out)

    def close(self):
        """The first CONNECTION_CLOSE seen: 'side:CC|APP_CC:0xcode' or '-' (or '?' if unreadable)."""
        for p in self.packets():
            for name, det in p.frames or ():
                if name in ("CC", "APP_CC") and det is not None:
                    return f"{p.side}:{name}:0x{det[0]:x}"
        return "?" if any(p.frames is None and p.ptype != "zeros" for p in self.packets()) else "-"

    def fmt_events(self):
        toks = []
        for _ts, side, pkts in self.dgrams:
            parts = []
            for p in pkts:
                if p.ptype == "zeros":
                    continue   # datagram padding after the last packet
                if p.frames is None:
                    parts.append(f"{p.ptype}({p.length})")
                    continue
                names = []
                for name, det in p.frames:
                    if name == "CRYPTO" and det is not None and det[0] == 0 and det[1]:
                        name = f"CRYPTO:{HS.get(det[1][0], det[1][0])}"
                    elif name in ("CC", "APP_CC") and det is not None:
                        name = f"{name}:0x{det[0]:x}" + (f"/ft=0x{det[1]:x}" if det[1] is not None else "") + \
                            (f"/'{det[2]}'" if det[2] else "")
                    if not names or names[-1] != name:
                        names.append(name)
                parts.append(f"{p.ptype}[{','.join(names)}]")
            toks.append(f"{side}:" + "+".join(parts))
        return " ".join(toks)

    def summary(self):
        return (f"quic={VNAME.get(self.version, hex(self.version))} alpn={self.alpn or '-'} "
                f"suite={'0x%04x' % self.suite if self.suite else '-'} "
                f"keys={'initial+keylog' if self.secrets else 'initial'} "
                f"request/response={'/'.join({True: 'yes', False: 'no', None: '?'}[x] for x in self.exchange())} "
                f"close={self.close()}")


ALERTS = {}
KEYLOG = {}


def ipv4_payload(linktype, pkt, proto, strict=False):
    """(src, dst, transport bytes) of an IPv4 packet of protocol `proto` in an
    Ethernet (optionally 802.1Q) or raw-IP frame; None otherwise. With
    `strict`, an unsupported link type stops the program."""
    if linktype == 1:
        if len(pkt) < 14:
            return None
        etype = struct.unpack("!H", pkt[12:14])[0]
        p = 14
        if etype == 0x8100:
            etype = struct.unpack("!H", pkt[16:18])[0]
            p = 18
        if etype != 0x0800:
            return None
        ip = pkt[p:]
    elif linktype in (101, 228):
        ip = pkt
    elif strict:
        raise SystemExit(f"unsupported linktype {linktype}")
    else:
        return None
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != proto:
        return None
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    src = ".".join(map(str, ip[12:16]))
    dst = ".".join(map(str, ip[16:20]))
    return src, dst, ip[ihl:total]


def parse_ipv4_udp(linktype, pkt):
    r = ipv4_payload(linktype, pkt, 17)
    if r is None:
        return None
    src, dst, udp = r
    if len(udp) < 8:
        return None
    sport, dport = struct.unpack("!HH", udp[:4])
    return src, sport, dst, dport, udp[8:]


def load_flows(packets, keylog=None, alerts=None):
    """packets: iterable of (ts, linktype, raw) as pcap_tls_summary.read_pcap yields them."""
    KEYLOG.clear()
    KEYLOG.update(read_keylog(keylog))
    if alerts:
        ALERTS.update(alerts)
    raw = []
    for ts, lt, pkt in packets:
        r = parse_ipv4_udp(lt, pkt)
        if r is not None:
            raw.append((ts, r))
    # one pass in capture order: a flow's first datagram carries the ClientHello, which names the
    # key log entry that the later Handshake and 1-RTT packets need
    flows, order = {}, []
    for ts, (src, sport, dst, dport, d) in raw:
        k = ((src, sport), (dst, dport))
        rk = ((dst, dport), (src, sport))
        if k in flows:
            flows[k].add_datagram(ts, "C", d)
        elif rk in flows:
            flows[rk].add_datagram(ts, "S", d)
        elif len(d) >= 7 and d[0] & 0xC0 == 0xC0:
            ver = struct.unpack("!I", d[1:5])[0]
            if ver in LONG_TYPES and LONG_TYPES[ver].get((d[0] & 0x30) >> 4) == "I":
                dl = d[5]
                dcid = d[6:6 + dl]
                sl = d[6 + dl]
                scid = d[7 + dl:7 + dl + sl]
                f = QuicFlow(ts, (src, sport), (dst, dport), ver, dcid, scid)
                flows[k] = f
                order.append(f)
                f.add_datagram(ts, "C", d)
    return order


def main():
    a = sys.argv[1:]
    if not a:
        raise SystemExit(__doc__)
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from pcap_tls_summary import ALERTS as TLS_ALERTS, read_pcap
    kl = a[a.index("--keylog") + 1] if "--keylog" in a else None
    for i, f in enumerate(load_flows(read_pcap(a[0]), kl, TLS_ALERTS), 1):
        print(f"#{i} {f.cli[0]}:{f.cli[1]} > {f.srv[0]}:{f.srv[1]} sni={f.sni} {f.summary()} "
              f"observed={'/'.join(f.observe())}\n    {f.fmt_events()}")


if __name__ == "__main__":
    main()
