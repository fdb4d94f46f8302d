#!/usr/bin/env python3
"""aioquic HTTP/3 server and client for the pinwatch testbed (scripts/testbed.sh, group "quic").

    quic_peer.py server KEY.pem IP:PORT:CHAIN.pem [IP:PORT:CHAIN.pem ...]
    quic_peer.py client SNI PORT CAFILE [--version v1|v2] [--connect IP]

server: HTTP/3 over QUIC (v1 and v2) on each IP:PORT (UDP), presenting the certificates of CHAIN.pem
        (leaf first, then the chain to send) with the private key KEY.pem; answers every request with 200
        and a short text body. Runs until killed (SIGTERM/SIGINT).
client: resolves SNI (the namespace's /etc/hosts), connects with server_name=SNI, trusting only CAFILE,
        sends one GET / and reads the response, then closes with H3_NO_ERROR. If the handshake fails
        (for example the certificate does not verify) it reports the error and exits 1.
        --version v2: offer only QUIC version 2 (RFC 9369, 0x6b3343cf); default: version 1 only.
        --connect IP: send to IP instead of resolving SNI.

TLS secrets are appended to $SSLKEYLOGFILE (NSS key log format) when it is set, by both modes.
Needs aioquic (mitmproxy 11.0.2 pulls in aioquic 1.2.0; run with /opt/pinwatch-venv/bin/python).
"""
import asyncio
import os
import signal
import socket
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"v1": QuicProtocolVersion.VERSION_1, "v2": QuicProtocolVersion.VERSION_2}


class H3Protocol(QuicConnectionProtocol):
    """Both ends: an H3Connection once ALPN h3 is negotiated."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        self.response = asyncio.get_event_loop().create_future()
        # read by get() when there is a request; a failed handshake leaves it unread otherwise
        self.response.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.status = None
        self.body = b""
        self.terminated = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            if self._quic.configuration.is_client and not self.response.done():
                self.response.set_exception(ConnectionError(
                    f"connection terminated: error 0x{event.error_code:x} frame_type {event.frame_type} "
                    f"reason {event.reason_phrase!r}"))
        if self.h3 is None:
            return
        for ev in self.h3.handle_event(event):
            if self._quic.configuration.is_client:
                self.client_event(ev)
            else:
                self.server_event(ev)

    def server_event(self, ev) -> None:
        if isinstance(ev, HeadersReceived):
            hdrs = dict(ev.headers)
            body = b"pinwatch testbed origin (quic host)\n"
            self.h3.send_headers(ev.stream_id, [(b":status", b"200"), (b"server", b"aioquic"),
                                                (b"content-type", b"text/plain"),
                                                (b"content-length", str(len(body)).encode())])
            self.h3.send_data(ev.stream_id, body, end_stream=True)
            self.transmit()
            print(f"quic-server: {hdrs.get(b':method', b'?').decode()} "
                  f"{hdrs.get(b':authority', b'?').decode()}{hdrs.get(b':path', b'?').decode()} "
                  f"version=0x{self._quic._version:x}", file=sys.stderr, flush=True)

    def client_event(self, ev) -> None:
        if isinstance(ev, HeadersReceived):
            self.status = dict(ev.headers).get(b":status", b"?").decode()
        elif isinstance(ev, DataReceived):
            self.body += ev.data
        if getattr(ev, "stream_ended", False) and not self.response.done():
            self.response.set_result((self.status, self.body))

    async def get(self, authority: str) -> tuple:
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                   (b":authority", authority.encode()), (b":path", b"/"),
                                   (b"user-agent", b"pinwatch-testbed-aioquic")], end_stream=True)
        self.transmit()
        return await asyncio.wait_for(asyncio.shield(self.response), 5)


async def run_server(key: str, endpoints: list) -> None:
    keylog = os.environ.get("SSLKEYLOGFILE")
    klf = open(keylog, "a") if keylog else None  # noqa: SIM115 (process lifetime)
    servers = []
    for ep in endpoints:
        ip, port, chain = ep.split(":", 2)
        cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, secrets_log_file=klf)
        cfg.load_cert_chain(chain, key)
        servers.append(await serve(ip, int(port), configuration=cfg, create_protocol=H3Protocol))
        print(f"quic-server: listening on {ip}:{port} (udp), chain {chain}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers:
        srv.close()


async def run_client(sni: str, port: int, cafile: str, version: str, connect_ip: str) -> int:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=sni,
                            supported_versions=[VERSIONS[version]])
    cfg.load_verify_locations(cafile)
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        cfg.secrets_log_file = open(keylog, "a")  # noqa: SIM115 (closed at exit)
    # IPv4 socket of our own (aioquic's connect() binds a dual-stack [::] socket; the testbed
    # namespaces have IPv6 disabled)
    ip = connect_ip or socket.gethostbyname(sni)
    loop = asyncio.get_running_loop()
    conn = QuicConnection(configuration=cfg)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: H3Protocol(conn), local_addr=("0.0.0.0", 0), family=socket.AF_INET)
    t0 = time.monotonic()
    rc = 0
    try:
        proto.connect((ip, port))
        await asyncio.wait_for(proto.wait_connected(), 5)
        status, body = await proto.get(f"{sni}:{port}" if port != 443 else sni)
        print(f"aioquic: {status} {body.decode(errors='replace').strip()!r} "
              f"version=0x{conn._version:x} in {time.monotonic() - t0:.3f}s")
        proto.close(error_code=ErrorCode.H3_NO_ERROR)
    except (ConnectionError, asyncio.TimeoutError) as exc:
        ev = proto.terminated
        detail = f"error 0x{ev.error_code:x} ({ev.reason_phrase})" if ev else repr(exc)
        print(f"aioquic: handshake failed: {detail} in {time.monotonic() - t0:.3f}s")
        rc = 1
        proto.close()   # no-op if aioquic already closed it; else sends CONNECTION_CLOSE
    try:
        # the CONNECTION_CLOSE has gone out when close() returns (transmit); wait for the draining
        # period to end, bounded
        await asyncio.wait_for(proto.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass
    transport.close()
    return rc


def main() -> int:
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "server":
        asyncio.run(run_server(a[1], a[2:]))
        return 0
    if len(a) >= 4 and a[0] == "client":
        opt = {"--version": "v1", "--connect": ""}
        for k in opt:
            if k in a:
                opt[k] = a[a.index(k) + 1]
        return asyncio.run(run_client(a[1], int(a[2]), a[3], opt["--version"], opt["--connect"]))
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
