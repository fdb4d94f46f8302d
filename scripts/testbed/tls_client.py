#!/usr/bin/env python3
"""Python `ssl` (OpenSSL) client used by scripts/testbed.sh.

    tls_client.py MODE HOST PORT CAFILE [--proxy HOST:PORT] [--max-tls 1.2] [--stall-max SECONDS]
                  [--bind SRCIP] [--count N --connect IP]

MODE:
  request  verify against CAFILE, send one HTTP/1.1 GET, read the response, close (no close_notify,
           like most Python HTTP clients).
  silent   verify against CAFILE via a MemoryBIO; when verification fails, drop the alert that
           OpenSSL queued and close the TCP socket (emulates a stack that aborts silently).
  stall    send the ClientHello, read the server flight, then never answer; close only after
           the server has closed (or after --stall-max seconds).
  many     benign load: --count N sessions one after the other, session i with SNI HOST % i (e.g.
           "b-py13-%03d.origin.test"), TCP to --connect IP; each verifies, sends one GET with
           Connection: close and reads the whole response. Exit 1 if any session fails.
--bind SRCIP: source address of the TCP connection (a client with its own route).
Exit status 0 when the client behaved as intended (including an expected verification failure).
"""
import argparse
import socket
import ssl
import sys
import time


def connect(host, port, proxy, bind=None):
    src = (bind, 0) if bind else None
    if proxy:
        ph, pp = proxy.rsplit(":", 1)
        s = socket.create_connection((ph, int(pp)), timeout=10, source_address=src)
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("proxy closed during CONNECT")
            resp += chunk
        if b" 200" not in resp.split(b"\r\n", 1)[0]:
            raise SystemExit(f"proxy refused CONNECT: {resp[:80]!r}")
        return s
    return socket.create_connection((host, port), timeout=10, source_address=src)


def make_ctx(cafile, max_tls):
    ctx = ssl.create_default_context(cafile=cafile)
    if max_tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def mode_request(a):
    ctx = make_ctx(a.cafile, a.max_tls)
    raw = connect(a.host, a.port, a.proxy, a.bind)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=a.host)
    except ssl.SSLCertVerificationError as e:
        print(f"python: verification failed as configured: {e.verify_message}", file=sys.stderr)
        raw.close()
        return 0
    tls.sendall(f"GET / HTTP/1.1\r\nHost: {a.host}\r\nConnection: close\r\n\r\n".encode())
    body = b""
    while True:
        try:
            chunk = tls.recv(4096)
        except ssl.SSLError:
            break
        if not chunk:
            break
        body += chunk
    status = body.split(b"\r\n", 1)[0].decode(errors="replace")
    print(f"python: {tls.version()} {status}", file=sys.stderr)
    tls.close()
    return 0


def mode_silent(a):
    ctx = make_ctx(a.cafile, a.max_tls)
    raw = connect(a.host, a.port, a.proxy, a.bind)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=a.host)
    while True:
        try:
            obj.do_handshake()
            print("python: handshake unexpectedly succeeded", file=sys.stderr)
            raw.close()
            return 1
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                raw.sendall(pending)
            data = raw.recv(65536)
            if not data:
                print("python: server closed first", file=sys.stderr)
                raw.close()
                return 1
            inc.write(data)
        except ssl.SSLCertVerificationError as e:
            dropped = out.read()
            print(f"python: verification failed ({e.verify_message}); dropping {len(dropped)} "
                  f"queued bytes (the alert) and closing", file=sys.stderr)
            raw.close()
            return 0


def mode_stall(a):
    ctx = make_ctx(a.cafile, a.max_tls)
    raw = connect(a.host, a.port, a.proxy, a.bind)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=a.host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        raw.sendall(out.read())          # the ClientHello; the server flight is never processed
    t0 = time.time()
    raw.settimeout(a.stall_max)
    got = 0
    try:
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except (socket.timeout, ConnectionResetError):
        pass
    print(f"python: stalled {time.time() - t0:.1f}s after reading {got} bytes of server flight",
          file=sys.stderr)
    raw.close()
    return 0


def mode_many(a):
    ctx = make_ctx(a.cafile, a.max_tls)
    ok = 0
    for i in range(1, a.count + 1):
        name = a.host % i
        raw = socket.create_connection((a.connect, a.port), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname=name)
        tls.sendall(f"GET /{i} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while True:
            try:
                chunk = tls.recv(4096)
            except ssl.SSLError:
                break
            if not chunk:
                break
            body += chunk
        if body.startswith(b"HTTP/1.1 200"):
            ok += 1
        tls.close()
    print(f"python: {ok}/{a.count} sessions answered 200 ({a.connect}:{a.port})", file=sys.stderr)
    return 0 if ok == a.count else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["request", "silent", "stall", "many"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("cafile")
    p.add_argument("--proxy")
    p.add_argument("--max-tls")
    p.add_argument("--stall-max", type=float, default=5.0)
    p.add_argument("--bind")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--connect")
    a = p.parse_args()
    return {"request": mode_request, "silent": mode_silent, "stall": mode_stall, "many": mode_many}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
