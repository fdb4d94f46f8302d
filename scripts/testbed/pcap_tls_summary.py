#!/usr/bin/env python3
"""Summarise TLS-over-TCP sessions and QUIC flows in a classic pcap and check testbed expectations.

Part of the pinwatch scenario testbed (scripts/testbed.sh). Standard library only for TCP; QUIC flows
(pcap_quic.py beside this file) need `cryptography` to decrypt packets (run it with the venv's python).

    pcap_tls_summary.py CAPTURE.pcap                 # per-session wire summary
    pcap_tls_summary.py CAPTURE.pcap --expect X.tsv  # also check X.tsv rows, exit 1 on mismatch
    ... [--keylog KEYLOG]                            # NSS key log: QUIC Handshake/1-RTT packets too
    ... [--match key]                                # match rows to sessions by (client_ip, server_ip,
                                                     # server_port, sni) instead of by position
    ... [--inspector-ttl 64 --inspect-ca CA.pem]     # also check the path column (inline group)

Path (inline group, tap on the client side of an inline inspector box): a session whose SYN-ACK has the
inspector's TTL (the box next to the tap sends with its initial TTL) went through the inspector, any
other TTL means the client reached the origin itself: `direct`. Through the inspector, the session is
`inline` when the inspector terminated TLS and `inline-bypass` when it spliced it (the origin's own
TLS). Which one: TLS <= 1.2, the issuer of the leaf certificate (the inspection CA's subject = inline);
TLS 1.3 (certificate encrypted), the largest record of the server's encrypted flight against that of
the `direct` TLS 1.3 sessions to the same server in the capture (the origin's chain: within 16 bytes =
inline-bypass). Every check prints the server SYN-ACK TTL and two delays: SYN -> SYN-ACK and
ClientHello -> ServerHello (first packet of each).

Sessions (TCP, from the client's SYN) and QUIC flows (UDP, from the client's first Initial) are numbered
together in capture order.

The observation logic below is a deliberately small re-statement of the wire facts
in docs (domain.md section 1.3). It exists so that the testbed notices when a
client stack changes behaviour; it is not pinwatch's classifier.

Supports: pcap (not pcapng), linktype Ethernet (1) or raw IPv4 (101), IPv4 + TCP / UDP (QUIC).
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcap_quic  # noqa: E402

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
          80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
          109: "missing_extension", 112: "unrecognized_name", 116: "certificate_required",
          120: "no_application_protocol"}
HS = {1: "CH", 2: "SH", 4: "NST", 8: "EE", 11: "Cert", 12: "SKE", 13: "CR", 14: "SHD",
      15: "CV", 16: "CKE", 20: "Fin"}


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        yield sec + frac / (1e9 if nano else 1e6), linktype, pkt


def parse_ipv4_tcp(linktype, pkt):
    r = pcap_quic.ipv4_payload(linktype, pkt, 6, strict=True)
    if r is None:
        return None
    src, dst, tcp = r
    sport, dport, seq, _ack, offflags = struct.unpack("!HHIIH", tcp[:14])
    doff = (offflags >> 12) * 4
    flags = offflags & 0x3F
    return src, sport, dst, dport, seq, flags, tcp[doff:]


class Dir:
    def __init__(self):
        self.ttl = None         # IP TTL of this side's first packet (the SYN / SYN-ACK)
        self.syn_ts = None
        self.isn = None
        self.segs = {}          # rel seq -> (ts, payload)
        self.fin_ts = None
        self.rst_ts = None
        self.pkts = 0

    def stream(self):
        """Contiguous bytes from rel seq 1, plus a list of (offset, ts) for timing."""
        buf = bytearray()
        marks = []
        nxt = 1
        for s in sorted(self.segs):
            ts, pl = self.segs[s]
            if s + len(pl) <= nxt:
                continue
            if s > nxt:           # hole: stop (lost data in capture)
                break
            cut = nxt - s
            marks.append((len(buf), ts))
            buf += pl[cut:]
            nxt = s + len(pl)
        return bytes(buf), marks


class Session:
    def __init__(self, idx, ts, cli, srv):
        self.idx, self.ts, self.cli, self.srv = idx, ts, cli, srv
        self.d = {"C": Dir(), "S": Dir()}
        self.events = []
        self.sni = "-"
        self.version = None
        self.suite = None
        self.leaf_issuer = None   # DER of the leaf's issuer Name (TLS <= 1.2 plaintext Certificate)
        self.srv_flight_max = 0   # TLS 1.3: largest encrypted server record before the client's first


def ts_at(marks, off):
    t = marks[0][1] if marks else 0.0
    for o, ts in marks:
        if o <= off:
            t = ts
        else:
            break
    return t


def der_item(b, p):
    """(tag, content start, end) of the DER item at p."""
    tag, ln = b[p], b[p + 1]
    p += 2
    if ln & 0x80:
        n = ln & 0x7F
        ln = int.from_bytes(b[p:p + n], "big")
        p += n
    return tag, p, p + ln


def cert_issuer(der):
    """DER of the issuer Name of an X.509 certificate."""
    _, p, _ = der_item(der, 0)        # Certificate SEQUENCE
    _, p, _ = der_item(der, p)        # tbsCertificate SEQUENCE: step inside
    tag, _, e = der_item(der, p)
    if tag == 0xA0:                   # [0] version
        p = e
    for _ in range(2):                # serialNumber, signature AlgorithmIdentifier
        _, _, p = der_item(der, p)
    _, _, e = der_item(der, p)        # issuer Name
    return der[p:e]


def cert_subject(der):
    _, p, _ = der_item(der, 0)
    _, p, _ = der_item(der, p)
    tag, _, e = der_item(der, p)
    if tag == 0xA0:
        p = e
    for _ in range(4):                # serial, signature, issuer, validity
        _, _, p = der_item(der, p)
    _, _, e = der_item(der, p)
    return der[p:e]


def pem_der(path):
    import base64
    lines = open(path).read().split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
    return base64.b64decode("".join(lines.split()))


def parse_hello_exts(body, is_ch):
    """Return (sni, selected_version) from a ClientHello/ServerHello body."""
    p = 2 + 32
    sid = body[p]
    p += 1 + sid
    if is_ch:
        n = struct.unpack("!H", body[p:p + 2])[0]
        p += 2 + n
        n = body[p]
        p += 1 + n
    else:
        suite = struct.unpack("!H", body[p:p + 2])[0]
        p += 3
    sni, ver = None, None
    if p + 2 <= len(body):
        end = p + 2 + struct.unpack("!H", body[p:p + 2])[0]
        p += 2
        while p + 4 <= end:
            et, el = struct.unpack("!HH", body[p:p + 4])
            ed = body[p + 4:p + 4 + el]
            if et == 0 and is_ch and len(ed) > 5:
                nl = struct.unpack("!H", ed[3:5])[0]
                sni = ed[5:5 + nl].decode("ascii", "replace")
            if et == 43 and not is_ch and len(ed) == 2:
                ver = struct.unpack("!H", ed)[0]
            p += 4 + el
    if is_ch:
        return sni, None, None
    legacy = struct.unpack("!H", body[0:2])[0]
    return None, ver or legacy, suite


def analyse(sess):
    """Fill sess.events with (ts, side, kind, length, detail) TLS record events."""
    for side in ("C", "S"):
        data, marks = sess.d[side].stream()
        off = 0
        # explicit proxy: skip the plaintext HTTP CONNECT request / response in front of the TLS stream
        if data[:8] == b"CONNECT " or data[:7] == b"HTTP/1.":
            hdr_end = data.find(b"\r\n\r\n")
            if hdr_end >= 0:
                first = data[:data.find(b"\r\n")].decode("latin-1")
                sess.events.append((ts_at(marks, 0), side, "http", hdr_end + 4, first))
                off = hdr_end + 4
        encrypted_hs = False   # TLS 1.2: after this side's CCS
        while off + 5 <= len(data):
            ctype, _rv, ln = struct.unpack("!BHH", data[off:off + 5])
            if ctype not in (20, 21, 22, 23):
                sess.events.append((ts_at(marks, off), side, "junk", len(data) - off, ""))
                break
            body = data[off + 5:off + 5 + ln]
            ts = ts_at(marks, off)
            partial = len(body) < ln
            if ctype == 22 and not encrypted_hs and not partial:
                names = []
                q = 0
                while q + 4 <= len(body):
                    ht = body[q]
                    hl = int.from_bytes(body[q + 1:q + 4], "big")
                    names.append(HS.get(ht, f"hs{ht}"))
                    hb = body[q + 4:q + 4 + hl]
                    try:
                        if ht == 1:
                            sni, _, _ = parse_hello_exts(hb, True)
                            sess.sni = sni or "-"
                        elif ht == 2:
                            _, ver, suite = parse_hello_exts(hb, False)
                            sess.version, sess.suite = ver, suite
                        elif ht == 11 and side == "S" and sess.leaf_issuer is None and len(hb) > 10:
                            first = int.from_bytes(hb[3:6], "big")
                            sess.leaf_issuer = cert_issuer(hb[6:6 + first])
                    except (IndexError, struct.error):
                        pass
                    q += 4 + hl
                sess.events.append((ts, side, "hs", ln, "+".join(names)))
            elif ctype == 22:
                sess.events.append((ts, side, "hs-enc", ln, ""))
            elif ctype == 20:
                sess.events.append((ts, side, "ccs", ln, ""))
                if sess.version != 0x0304:
                    encrypted_hs = True
            elif ctype == 21:
                if ln == 2 and not partial:
                    lvl, desc = body[0], body[1]
                    sess.events.append((ts, side, "alert", ln,
                                        f"{'fatal' if lvl == 2 else 'warning'}:{ALERTS.get(desc, 'alert')}({desc})"))
                else:
                    sess.events.append((ts, side, "alert-enc", ln, ""))
            else:
                sess.events.append((ts, side, "app", ln, ""))
            off += 5 + ln
        d = sess.d[side]
        if d.fin_ts is not None:
            sess.events.append((d.fin_ts, side, "FIN", 0, ""))
        if d.rst_ts is not None:
            sess.events.append((d.rst_ts, side, "RST", 0, ""))
    sess.events.sort(key=lambda e: e[0])
    if sess.version == 0x0304:   # the server's encrypted flight: its records before the client's first
        capp = next((e[0] for e in sess.events if e[1] == "C" and e[2] == "app"), None)
        sess.srv_flight_max = max((e[3] for e in sess.events if e[1] == "S" and e[2] == "app"
                                   and (capp is None or e[0] <= capp)), default=0)


def ip_ttl(linktype, pkt):
    if linktype == 1:
        p = 18 if pkt[12:14] == b"\x81\x00" else 14
        return pkt[p + 8] if len(pkt) > p + 8 else None
    return pkt[8] if len(pkt) > 8 else None


def timing(s):
    """(server SYN-ACK TTL, SYN->SYN-ACK ms, ClientHello->ServerHello ms) of a TCP session."""
    syn_ack = None if s.d["S"].syn_ts is None else (s.d["S"].syn_ts - s.ts) * 1e3
    ch = next((e[0] for e in s.events if e[1] == "C" and e[2] == "hs" and "CH" in e[4]), None)
    sh = next((e[0] for e in s.events if e[1] == "S" and e[2] == "hs" and "SH" in e[4]), None)
    return s.d["S"].ttl, syn_ack, None if ch is None or sh is None else (sh - ch) * 1e3


def fmt_timing(s):
    ttl, a, b = timing(s)
    f = lambda v: "-" if v is None else f"{v:.2f}ms"  # noqa: E731
    return f"ttl={ttl} syn>synack={f(a)} ch>sh={f(b)}"


def derive_path(s, sessions, inspector_ttl, inspect_subject):
    """direct | inline | inline-bypass (see the module docstring)."""
    if s.d["S"].ttl != inspector_ttl:
        return "direct"
    if s.version != 0x0304:
        if s.leaf_issuer is None:
            return "inline?"
        return "inline" if s.leaf_issuer == inspect_subject else "inline-bypass"
    base = [o.srv_flight_max for o in sessions if not getattr(o, "is_quic", False)
            and o.d["S"].ttl != inspector_ttl and o.srv == s.srv and o.version == 0x0304 and o.srv_flight_max]
    if not base or not s.srv_flight_max:
        return "inline?"
    return "inline-bypass" if any(abs(s.srv_flight_max - b) <= 16 for b in base) else "inline"


def load_sessions(path, keylog=None):
    """TCP sessions and QUIC flows of the capture, in order of their first packet."""
    order = load_tcp_sessions(path)
    flows = pcap_quic.load_flows(read_pcap(path), keylog, ALERTS)
    if flows:
        order = sorted(order + flows, key=lambda s: s.ts)
        for i, s in enumerate(order, 1):
            s.idx = i
    return order


def load_tcp_sessions(path):
    sessions = {}
    order = []
    for ts, lt, pkt in read_pcap(path):
        r = parse_ipv4_tcp(lt, pkt)
        if r is None:
            continue
        src, sport, dst, dport, seq, flags, payload = r
        syn, fin, rst, ack = flags & 2, flags & 1, flags & 4, flags & 16
        k = ((src, sport), (dst, dport))
        rk = ((dst, dport), (src, sport))
        if syn and not ack and k not in sessions:
            s = Session(len(order) + 1, ts, (src, sport), (dst, dport))
            sessions[k] = s
            order.append(s)
        if k in sessions:
            s, side = sessions[k], "C"
        elif rk in sessions:
            s, side = sessions[rk], "S"
        else:
            continue   # mid-stream session without SYN: ignored
        d = s.d[side]
        d.pkts += 1
        if d.ttl is None:
            d.ttl = ip_ttl(lt, pkt)
        if syn:
            d.isn = seq
            if d.syn_ts is None:
                d.syn_ts = ts
        if d.isn is None:
            continue
        rel = (seq - d.isn) & 0xFFFFFFFF
        if payload:
            if rel not in d.segs or len(d.segs[rel][1]) < len(payload):
                d.segs[rel] = (ts, payload)
        if fin and d.fin_ts is None:
            d.fin_ts = ts
        if rst and d.rst_ts is None:
            d.rst_ts = ts
    for s in order:
        analyse(s)
    return order


# TLS 1.3 record sizes (TLSCiphertext.length) for AEAD suites with 16-byte tags. OpenSSL and
# BoringSSL add no padding; OpenJDK's SunJSSE pads every TLS 1.3 record with 16 zero bytes
# (sun.security.ssl.OutputRecord T13PaddingHolder), so its alerts are 35 and Finished +16.
T13_PADS = (0, 16)
T13_ALERT_SIZES = {2 + 1 + 16 + p for p in T13_PADS}


def t13_finished_sizes(suite):
    hl = 48 if suite == 0x1302 else 32
    return {4 + hl + 1 + 16 + p for p in T13_PADS}


def observe(s):
    """Derive (outcome, class, alert_sender, alert) from the record events."""
    if getattr(s, "is_quic", False):
        return s.observe()
    ev = s.events
    # the client's first bytes are not a TLS record (nor an HTTP CONNECT in front of one): not TLS
    cfirst = next((e for e in ev if e[1] == "C" and e[2] not in ("FIN", "RST")), None)
    if cfirst is not None and cfirst[2] == "junk":
        return ("not_tls", "-", "-", "-")
    for e in ev:   # a plaintext fatal alert decides directly (class A)
        if e[2] == "alert" and "fatal" in e[4]:
            side = "server" if e[1] == "S" else "client"
            return ("server_rejected" if side == "server" else "client_rejected", "A", side,
                    e[4].split(":", 1)[1])
    sh = next((i for i, e in enumerate(ev) if e[1] == "S" and e[2] == "hs" and "SH" in e[4]), None)
    if sh is None:
        return ("no_server_hello", "-", "-", "-")
    v13 = s.version == 0x0304
    after = ev[sh + 1:]
    crec = [e for e in after if e[1] == "C" and e[2] in ("app", "hs-enc", "alert-enc", "hs")]
    first_close = next((e for e in ev if e[2] in ("FIN", "RST")), None)
    if v13:
        fin_sizes = t13_finished_sizes(s.suite)
        fin_i = next((i for i, e in enumerate(crec) if e[2] == "app" and e[3] in fin_sizes), None)
        is_alert = lambda e: e[2] == "app" and e[3] in T13_ALERT_SIZES  # noqa: E731
        if fin_i is None and crec and is_alert(crec[0]):
            return ("client_rejected", "B", "client", "encrypted")
    else:
        fin_i = next((i for i, e in enumerate(crec) if e[2] == "hs-enc"), None)
        is_alert = lambda e: e[2] == "alert-enc"  # noqa: E731
    if fin_i is None:
        if crec:
            return ("incomplete", "-", "-", "-")
        # nothing from the client after the server flight: who gave up?
        if first_close is not None and first_close[1] == "C":
            return ("client_rejected", "D", "-", "-")
        return ("client_rejected", "E", "-", "-")
    fin_ts = crec[fin_i][0]
    post = crec[fin_i + 1:]
    srv_post = [e for e in ev if e[1] == "S" and e[0] >= fin_ts and e[2] in ("app", "alert-enc")]
    srv_alert = (lambda e: e[2] == "app" and e[3] in T13_ALERT_SIZES) if v13 else \
        (lambda e: e[2] == "alert-enc")
    if srv_post and all(srv_alert(e) for e in srv_post) and first_close is not None \
            and first_close[1] == "S" and not any(e[0] < srv_post[0][0] for e in post):
        # the server answered the client's Finished only with an alert and closed (an alert that
        # answers the client's own close_notify, as squid sends it, is not a rejection)
        return ("server_rejected", "-", "server", "encrypted")
    if any(not is_alert(e) for e in post):
        return ("established", "-", "-", "-")
    # handshake completed by the client, no application data, then close
    if any(is_alert(e) for e in post):
        return ("client_rejected", "C", "client", "encrypted")
    return ("client_rejected", "C", "-", "-")


def fmt_events(s):
    if getattr(s, "is_quic", False):
        return s.fmt_events()
    out = []
    for _ts, side, kind, ln, det in s.events:
        if kind == "hs":
            out.append(f"{side}:{det}({ln})")
        elif kind == "http":
            out.append(f"{side}:[{det}]")
        elif kind == "alert":
            out.append(f"{side}:ALERT[{det}]")
        elif kind in ("FIN", "RST"):
            out.append(f"{side}:{kind}")
        else:
            out.append(f"{side}:{kind}({ln})")
    # compress runs of identical tokens
    comp = []
    for t in out:
        if comp and comp[-1][0] == t:
            comp[-1][1] += 1
        else:
            comp.append([t, 1])
    return " ".join(t if n == 1 else f"{t}x{n}" for t, n in comp)


def vername(v):
    return {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0"}.get(v, "?")


def summary_line(s):
    o = observe(s)
    if getattr(s, "is_quic", False):
        return (f"#{s.idx} {s.cli[0]}:{s.cli[1]} > {s.srv[0]}:{s.srv[1]} udp sni={s.sni} {s.summary()} "
                f"observed={'/'.join(o)}\n    {fmt_events(s)}")
    return (f"#{s.idx} {s.cli[0]}:{s.cli[1]} > {s.srv[0]}:{s.srv[1]} sni={s.sni} "
            f"tls={vername(s.version)} suite={'0x%04x' % s.suite if s.suite else '-'} "
            f"observed={'/'.join(o)} {fmt_timing(s)}\n    {fmt_events(s)}")


def check(sessions, tsv, by_key=False, inspector_ttl=None, inspect_subject=None):
    rows = []
    with open(tsv) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip() and not line.startswith("#"):
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    ok = True
    if len(rows) != len(sessions):
        print(f"MISMATCH: {len(rows)} expectation rows but {len(sessions)} sessions/flows in capture")
        ok = False
    if by_key:   # rows in any order: match each session by (client_ip, server_ip, server_port, sni)
        index = {}
        for s in sessions:
            k = (s.cli[0], s.srv[0], s.srv[1], s.sni)
            if k in index:
                print(f"MISMATCH: two sessions with key {k} (--match key needs unique keys)")
                ok = False
            index[k] = s
        keyed = []
        for r in rows:
            keyed.append(index.pop((r.get("client_ip"), r["server_ip"], int(r["server_port"]), r["sni"]), None))
        for k in index:
            print(f"MISMATCH: session {k} in the capture has no expectation row")
            ok = False
    for i, r in enumerate(rows):
        if by_key:
            s = keyed[i]
        else:
            s = sessions[i] if i < len(sessions) else None
        key = (r["server_ip"], int(r["server_port"]), r["sni"])
        if s is None or (s.srv[0], s.srv[1], s.sni) != key or \
                ("client_ip" in r and r["client_ip"] != s.cli[0]):
            print(f"MISMATCH row {i + 1} {r['client_port_or_label']}: expected session {key}, "
                  f"capture has {(s.srv[0], s.srv[1], s.sni) if s else None}")
            ok = False
            continue
        o = observe(s)
        exp = (r["expected_outcome"], r["expected_class"], r["expected_alert_sender"], r["expected_alert"])
        quic = getattr(s, "is_quic", False)
        extra = ""
        if inspector_ttl is not None and not quic:
            o = o + (derive_path(s, sessions, inspector_ttl, inspect_subject),)
            exp = exp + (r["path"],)
        mark = "ok " if o == exp else "BAD"
        if o != exp:
            ok = False
        if quic:
            extra = f"\n    udp {s.summary()}"
        else:
            extra = f" {s.cli[0]} tls={vername(s.version)} {fmt_timing(s)}"
        print(f"{mark} {r['client_port_or_label']:<28} port={s.cli[1]:<5} expected={'/'.join(exp)} "
              f"observed={'/'.join(o)}{extra}\n    {fmt_events(s)}")
    return ok


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    keylog = args[args.index("--keylog") + 1] if "--keylog" in args else None
    sessions = load_sessions(args[0], keylog)
    by_key = "--match" in args and args[args.index("--match") + 1] == "key"
    ittl = int(args[args.index("--inspector-ttl") + 1]) if "--inspector-ttl" in args else None
    subj = cert_subject(pem_der(args[args.index("--inspect-ca") + 1])) if "--inspect-ca" in args else None
    if "--expect" in args:
        ok = check(sessions, args[args.index("--expect") + 1], by_key, ittl, subj)
        sys.exit(0 if ok else 1)
    for s in sessions:
        print(summary_line(s))


if __name__ == "__main__":
    main()
