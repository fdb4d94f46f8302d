#!/usr/bin/env bash
# pinwatch scenario testbed: real TLS stacks in Linux network namespaces, captured at an egress tap.
#
#   sudo scripts/testbed.sh [OUTDIR] [GROUP...]   (default OUTDIR: pcaps/,
#                                                  groups: basic inspection fallback quic benign inline)
#
# For each scenario group it writes OUTDIR/testbed-<group>.pcap and OUTDIR/testbed-<group>.expected.tsv
# (one row per TCP session or QUIC flow, in capture order) and checks every row against the capture with
# scripts/testbed/pcap_tls_summary.py. Exit status 1 if the wire disagrees with the expectations
# (set TESTBED_STRICT=0 to keep going).
#
# Topology (all addresses 10.77.0.0/16, nothing leaves the namespaces):
#
#   pw-client 10.77.1.2 --[pwc0|pwr-c]-- pw-router 10.77.1.1 / 10.77.2.1 --[pwr-o|pwo0]-- pw-origin 10.77.2.2-.6
#   (+10.77.1.3: the inline group's client with its own route)
#                                       (tcpdump tap on pwr-o; the inspection group also taps pwr-c
#                                        because the proxy runs in pw-router; the fallback, benign and
#                                        inline groups tap only pwr-c, so each client session appears
#                                        once; the quic group taps pwr-o, UDP)
#
# Requirements (Debian bookworm): nginx-light tcpdump iproute2 iptables ethtool openssl curl python3
# openjdk-17 libokhttp-java; mitmproxy 11.0.2 in /opt/pinwatch-venv (or $MITMDUMP) for "inspection",
# "fallback" and "inline"; "quic" uses the aioquic that mitmproxy 11.0.2 pulls into the same venv
# (python: $QUIC_PY); "inline" also needs squid-openssl (squid with ssl-bump, $SQUID).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-pcaps/}
shift || true
SCN_GROUPS=("$@")
[[ ${#SCN_GROUPS[@]} -gt 0 ]] || SCN_GROUPS=(basic inspection fallback quic benign inline)
STRICT=${TESTBED_STRICT:-1}
GAP=${TESTBED_GAP:-0.2}
PINWATCH_VENV=${PINWATCH_VENV:-/opt/pinwatch-venv}   # mitmproxy venv (.ci/run makes it)
MITMDUMP=${MITMDUMP:-$PINWATCH_VENV/bin/mitmdump}
QUIC_PY=${QUIC_PY:-$(dirname "$MITMDUMP")/python3}   # python with aioquic + cryptography (quic group)
PY=${PYTHON:-$(command -v python3 || echo python3)}   # the system python (ssl module linked to OpenSSL)
SQUID=${SQUID:-/usr/sbin/squid}   # squid-openssl (ssl-bump); inline group
SQUID_CERTGEN=${SQUID_CERTGEN:-/usr/lib/squid/security_file_certgen}
OKHTTP_CP=${OKHTTP_CP:-/usr/share/java/okhttp.jar:/usr/share/java/okio.jar}   # Debian libokhttp-java

NS_C=pw-client NS_R=pw-router NS_O=pw-origin
C_IP=10.77.1.2 R_CIP=10.77.1.1 R_OIP=10.77.2.1 O_IP13=10.77.2.2 O_IP12=10.77.2.3
O_IPFB=10.77.2.4 O_IPPLAIN=10.77.2.5   # fallback group: TLS 1.3 origin never proxied; plain HTTP on :443
O_IPH2=10.77.2.6   # benign group: nginx TLS 1.2+1.3 with HTTP/2
C_IP2=10.77.1.3    # inline group: a client address that the REDIRECT rule exempts (its own route)
PROXY_PORT=8080 TPROXY_PORT=8081 SQUID_PORT=3129
INLINE_ORIGIN_TTL=50   # inline group: pw-origin's initial TTL, so that the origin looks distant at the tap
QUIC_PORT=443 QUIC_PORT_LEAF=8443   # quic group, UDP on $O_IPFB: full chain | leaf only
FALLBACK_TRIES=2   # fallback group: attempts through the proxy before the client goes direct
WRONG_PIN=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=   # base64 of 32 zero bytes

[[ $(id -u) -eq 0 ]] || { echo "testbed.sh: must run as root (network namespaces)" >&2; exit 2; }
for t in ip tcpdump nginx openssl curl "$PY" java javac keytool; do
    command -v "$t" >/dev/null || { echo "testbed.sh: missing $t" >&2; exit 2; }
done

# one run at a time (the namespace names are fixed)
LOCK_DIR=${PINWATCH_LOCK_DIR:-/run/lock}
exec 9>"$LOCK_DIR/pinwatch-testbed.lock"
flock -n 9 || { echo "testbed.sh: another testbed run is active" >&2; exit 2; }
# The temp dir of an earlier run killed before its trap could run: only the
# one that run recorded, never anything else.
if [[ -s $LOCK_DIR/pinwatch-testbed.dir ]]; then
    old=$(cat "$LOCK_DIR/pinwatch-testbed.dir")
    [[ $old == */pw-testbed.* && -d $old ]] && rm -rf -- "$old"
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/pw-testbed.XXXXXX")
echo "$T" > "$LOCK_DIR/pinwatch-testbed.dir"
PIDS=()
log() { printf '[testbed %5.1fs] %s\n' "$(($(date +%s%N) - START_NS))e-9" "$*" >&2; }
START_NS=$(date +%s%N)

kill_ns_procs() {   # processes left in our own namespaces (e.g. by an interrupted earlier run)
    local ns pid
    for ns in "$NS_C" "$NS_R" "$NS_O"; do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    done
}

teardown_net() {
    kill_ns_procs
    sleep 0.2
    local ns
    for ns in "$NS_C" "$NS_R" "$NS_O"; do
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    rmdir /etc/netns 2>/dev/null || true
}

cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    teardown_net
    if [[ -n ${TESTBED_KEEP_TMP:-} ]]; then echo "testbed: temp dir kept: $T" >&2; else rm -rf "$T"; rm -f "$LOCK_DIR/pinwatch-testbed.dir"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Scenario tables. One line per client action:
#   label | via | sni | server_ip | server_port | client | expected sessions
# via:      direct | explicit (client uses the mitmproxy HTTP proxy) | transparent (iptables REDIRECT) |
#           fallback (the client tries $FALLBACK_TRIES times through the explicit proxy, then goes direct)
# sni:      "-" = no SNI: the client connects to server_ip itself and sends no server_name
# client:   "<runner> <trust> [args]"  runner: curl, sclient (openssl s_client), py (python ssl),
#           java (OkHttp), aioquic (QUIC/HTTP/3); trust: which CA file the client trusts: origin | inspect | both
# sessions: space-separated "path=outcome/class/alert_sender/alert", in capture order
#           (order of the client's SYN); path: direct | client-proxy | proxy-origin; a session may
#           give its own server as path@ip:port=... (default: the row's server_ip:server_port) and a
#           tag appended to the label as path[@ip:port]#tag=... (several sessions of one action on one path).
# Every row has its own SNI, so rows are matched to sessions by (server_ip, server_port, sni); in the
# fallback group the retries of one action share theirs and "-" rows have none (the checker goes by order).
# Server ends (pw-origin): 10.77.2.2:443 nginx TLS1.2+1.3 | 10.77.2.3:443 nginx TLS1.2 only |
#   10.77.2.2:9443 nginx TLS1.3, 2 s handshake timeout | 10.77.2.2:8443 / 10.77.2.3:8443
#   openssl s_server requiring a client certificate (TLS1.3 / TLS1.2) | 10.77.2.4:443 and :4443 nginx
#   TLS1.3 (fallback group) | 10.77.2.5:443 nginx plain HTTP, no TLS (fallback group) |
#   10.77.2.4 udp/443 and udp/8443 aioquic HTTP/3 (quic group, started with it).
# Expectations were read off real captures (see pcaps/README.md); the run re-checks them.
# ---------------------------------------------------------------------------------------------
# shellcheck disable=SC2034  # used through a nameref (local -n table=SCENARIOS_<group>)
SCENARIOS_basic=(
"curl-ok-tls13       |direct|api.origin.test          |10.77.2.2|443 |curl origin                     |direct=established/-/-/-"
"curl-ok-tls12       |direct|api12.origin.test        |10.77.2.3|443 |curl origin                     |direct=established/-/-/-"
"curl-pin-ok-tls13   |direct|pinned.origin.test       |10.77.2.2|443 |curl origin pin=origin          |direct=established/-/-/-"
"curl-pin-wrong-tls13|direct|pinfail.origin.test      |10.77.2.2|443 |curl origin pin=wrong           |direct=client_rejected/C/client/encrypted"
"curl-pin-wrong-tls12|direct|pinfail12.origin.test    |10.77.2.3|443 |curl origin pin=wrong           |direct=client_rejected/C/client/encrypted"
"curl-untrusted-tls13|direct|untrusted.origin.test    |10.77.2.2|443 |curl inspect                    |direct=client_rejected/A/client/unknown_ca(48)"
"curl-hostname-tls13 |direct|mismatch.other.test      |10.77.2.2|443 |curl origin                     |direct=client_rejected/C/client/encrypted"
"sclient-untr-tls12  |direct|sclient12.origin.test    |10.77.2.3|443 |sclient inspect                 |direct=client_rejected/A/client/unknown_ca(48)"
"sclient-untr-tls13  |direct|sclient13.origin.test    |10.77.2.2|443 |sclient inspect                 |direct=client_rejected/A/client/unknown_ca(48)"
"python-ok-tls13     |direct|py.origin.test           |10.77.2.2|443 |py origin request               |direct=established/-/-/-"
"python-untr-tls13   |direct|py-untrusted.origin.test |10.77.2.2|443 |py inspect request              |direct=client_rejected/A/client/unknown_ca(48)"
"python-untr-tls12   |direct|py-untrusted12.origin.test|10.77.2.3|443|py inspect request              |direct=client_rejected/A/client/unknown_ca(48)"
"python-silent-tls13 |direct|py-silent.origin.test    |10.77.2.2|443 |py inspect silent               |direct=client_rejected/D/-/-"
"python-stall-tls13  |direct|py-stall.origin.test     |10.77.2.2|9443|py inspect stall                |direct=client_rejected/E/-/-"
"okhttp-ok-tls13     |direct|okhttp.origin.test       |10.77.2.2|443 |java origin trust               |direct=established/-/-/-"
"okhttp-pin-tls13    |direct|okhttp-pin.origin.test   |10.77.2.2|443 |java origin pin=wrong           |direct=client_rejected/C/client/encrypted"
"okhttp-pin-tls12    |direct|okhttp-pin12.origin.test |10.77.2.3|443 |java origin pin=wrong           |direct=client_rejected/C/client/encrypted"
"okhttp-tmthrow-tls13|direct|okhttp-tm.origin.test    |10.77.2.2|443 |java origin tm-throw            |direct=client_rejected/B/client/encrypted"
"okhttp-tmthrow-tls12|direct|okhttp-tm12.origin.test  |10.77.2.3|443 |java origin tm-throw            |direct=client_rejected/A/client/certificate_unknown(46)"
"curl-tls13-to-12only|direct|v13only.origin.test      |10.77.2.3|443 |curl origin --tlsv1.3           |direct=server_rejected/A/server/protocol_version(70)"
"curl-nocert-mtls12  |direct|mtls12.origin.test       |10.77.2.3|8443|curl origin                     |direct=server_rejected/A/server/handshake_failure(40)"
"curl-nocert-mtls13  |direct|mtls13.origin.test       |10.77.2.2|8443|curl origin                     |direct=server_rejected/-/server/encrypted"
)

# mitmproxy in pw-router: explicit HTTP proxy on 10.77.1.1:8080 and transparent mode on :8081 (iptables
# REDIRECT of client tcp/443). It presents leaves issued by the inspection CA and verifies the origin
# against the origin CA. SNIs matching ^bypass are passed through untouched (ignore_hosts).
# client-proxy sessions: 10.77.1.2 -> 10.77.1.1:8080 (explicit) or -> origin ip:443 (transparent, as the
# client sees it); proxy-origin sessions: 10.77.2.1 -> origin.
X="client-proxy@10.77.1.1:8080"
# shellcheck disable=SC2034
SCENARIOS_inspection=(
"x-curl-trusted     |explicit   |x-curl.origin.test       |10.77.2.2|443|curl both                |$X=established/-/-/- proxy-origin=established/-/-/-"
"x-curl-untrusted   |explicit   |x-curl-untr.origin.test  |10.77.2.2|443|curl origin              |$X=client_rejected/A/client/unknown_ca(48) proxy-origin=client_rejected/C/-/-"
"x-curl-pinned      |explicit   |x-curl-pin.origin.test   |10.77.2.2|443|curl both pin=origin     |$X=client_rejected/C/client/encrypted proxy-origin=client_rejected/C/-/-"
"x-python-untrusted |explicit   |x-py-untr.origin.test    |10.77.2.2|443|py origin request        |$X=client_rejected/A/client/unknown_ca(48) proxy-origin=client_rejected/C/-/-"
"x-okhttp-pinned    |explicit   |x-okhttp-pin.origin.test |10.77.2.2|443|java both pin=origin     |$X=client_rejected/C/client/encrypted proxy-origin=client_rejected/C/-/-"
"x-okhttp-tmthrow   |explicit   |x-okhttp-tm.origin.test  |10.77.2.2|443|java both tm-throw       |$X=client_rejected/B/client/encrypted proxy-origin=client_rejected/C/-/-"
"t-curl-trusted     |transparent|t-curl.origin.test       |10.77.2.2|443|curl both                |client-proxy=established/-/-/- proxy-origin=established/-/-/-"
"t-curl-untrusted   |transparent|t-curl-untr.origin.test  |10.77.2.2|443|curl origin              |client-proxy=client_rejected/A/client/unknown_ca(48) proxy-origin=client_rejected/C/-/-"
"t-curl-pinned      |transparent|t-curl-pin.origin.test   |10.77.2.2|443|curl both pin=origin     |client-proxy=client_rejected/C/client/encrypted proxy-origin=client_rejected/C/-/-"
"t-sclient-untr12   |transparent|t-sclient12.origin.test  |10.77.2.3|443|sclient origin -tls1_2   |client-proxy=client_rejected/A/client/unknown_ca(48) proxy-origin=client_rejected/C/-/-"
"t-python-untrusted |transparent|t-py-untr.origin.test    |10.77.2.2|443|py origin request        |client-proxy=client_rejected/A/client/unknown_ca(48) proxy-origin=client_rejected/C/-/-"
"t-okhttp-pinned    |transparent|t-okhttp-pin.origin.test |10.77.2.2|443|java both pin=origin     |client-proxy=client_rejected/C/client/encrypted proxy-origin=client_rejected/C/-/-"
"t-okhttp-tmthrow   |transparent|t-okhttp-tm.origin.test  |10.77.2.2|443|java both tm-throw       |client-proxy=client_rejected/B/client/encrypted proxy-origin=client_rejected/C/-/-"
"t-okhttp-bypassed  |transparent|bypass-pin.origin.test   |10.77.2.2|443|java origin pin=origin   |client-proxy=established/-/-/- proxy-origin=established/-/-/-"
)

# AN1725 "fallback pattern" and opaque sessions. mitmproxy runs in explicit mode only (no REDIRECT rule),
# so anything the client sends without -x/Proxy reaches the origin untouched; the tap is pwr-c only.
# fb-*: a client pinned to the origin key that also trusts the inspection CA (so only the pin fails)
# tries twice through the proxy (class C each time), then the same client goes direct to the same SNI
# on 10.77.2.4 and succeeds. OkHttp does this in one process (one OkHttpClient, app-level retry loop);
# curl is run three times. The op-* rows are opaque to SNI-based tracking: no SNI, an unusual port,
# and plain HTTP on tcp/443.
# shellcheck disable=SC2034
SCENARIOS_fallback=(
"fb-okhttp-pin      |fallback|fallback.origin.test     |10.77.2.4|443 |java both fallback=origin|$X#1=client_rejected/C/client/encrypted $X#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
"fb-curl-pin        |fallback|fallback-curl.origin.test|10.77.2.4|443 |curl both pin=origin     |$X#1=client_rejected/C/client/encrypted $X#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
"op-nosni-ip        |direct  |-                        |10.77.2.4|443 |sclient origin request   |direct=established/-/-/-"
"op-oddport-tls13   |direct  |oddport.origin.test      |10.77.2.4|4443|curl origin              |direct=established/-/-/-"
"op-plain-http-443  |direct  |-                        |10.77.2.5|443 |pysock                   |direct=not_tls/-/-/-"
)

# QUIC (UDP) with aioquic on both ends: an HTTP/3 server in pw-origin on 10.77.2.4 (UDP only; nginx holds
# the TCP ports of that address) and aioquic clients (scripts/testbed/quic_peer.py). udp/443 presents
# the leaf + origin CA like nginx, so the server's Handshake flight needs two datagrams; udp/8443 presents
# the leaf alone, so the whole server flight (Initial + Handshake) fits in one datagram. Each row is one
# QUIC flow (UDP 5-tuple), matched by its first Initial; the client trust is as for the other runners,
# "v2" = the client offers only QUIC version 2 (RFC 9369).
# Where the rejection is readable: aioquic puts its CONNECTION_CLOSE (0x1c, CRYPTO_ERROR 0x100 + alert)
# in every packet number space it still has keys for. A client that has already sent a Handshake packet
# (the ACK of the first server datagram) has dropped its Initial keys, so the close is in a Handshake
# packet only (class -, the key log is needed to read it); when the server flight came in one datagram
# it is also in an Initial packet, readable by anyone from the client's Destination CID (class A).
# shellcheck disable=SC2034
SCENARIOS_quic=(
"quic-h3-ok          |direct|quic.origin.test          |10.77.2.4|443 |aioquic origin      |direct=established/-/-/-"
"quic-h3-untrusted   |direct|quic-untrusted.origin.test|10.77.2.4|443 |aioquic inspect     |direct=client_rejected/-/client/bad_certificate(42)"
"quic-h3-untr-1dgram |direct|quic-leaf.origin.test     |10.77.2.4|8443|aioquic inspect     |direct=client_rejected/A/client/bad_certificate(42)"
"quicv2-h3-ok        |direct|quicv2.origin.test        |10.77.2.4|443 |aioquic origin v2   |direct=established/-/-/-"
)

# Benign load for capture-loss tests: every session is accepted and used by its client (a request is sent
# and the answer read), direct to nginx, tap pwr-c. A "many" row is one client process making COUNT
# sessions one after the other, session i with SNI pattern % i (every session has its own SNI). The rows
# of one runner run in order; the four runners run at the same time, so the capture order of sessions
# from different runners varies between runs (the checker matches benign rows to sessions by
# (client_ip, server_ip, server_port, sni), not by position). Client args: reqs=N = N requests on one
# connection (curl; HTTP/1.1 keep-alive, or HTTP/2 on 10.77.2.6), jdk / okhttp = Java HttpsURLConnection
# or OkHttp (a fresh connection pool per request, so that HTTP/2 connections are not coalesced).
#   label | many | sni pattern | server_ip | server_port | client | COUNT
# shellcheck disable=SC2034
SCENARIOS_benign=(
"b-py13      |many|b-py13-%03d.origin.test   |10.77.2.2|443|py origin many                  |80"
"b-py12      |many|b-py12-%03d.origin.test   |10.77.2.3|443|py origin many                  |50"
"b-curl13    |many|b-curl13-%03d.origin.test |10.77.2.2|443|curl origin                     |40"
"b-curl12    |many|b-curl12-%03d.origin.test |10.77.2.3|443|curl origin                     |20"
"b-curlka13  |many|b-curlka13-%03d.origin.test|10.77.2.2|443|curl origin reqs=3              |20"
"b-curlka12  |many|b-curlka12-%03d.origin.test|10.77.2.3|443|curl origin reqs=3              |10"
"b-curlh2-13 |many|b-h2-13-%03d.origin.test  |10.77.2.6|443|curl origin reqs=3              |20"
"b-curlh2-12 |many|b-h2-12-%03d.origin.test  |10.77.2.6|443|curl origin reqs=2 --tls-max 1.2|10"
"b-sclient13 |many|b-sc13-%03d.origin.test   |10.77.2.2|443|sclient origin request          |15"
"b-sclient12 |many|b-sc12-%03d.origin.test   |10.77.2.3|443|sclient origin request          |15"
"b-jdk13     |many|b-jdk13-%03d.origin.test  |10.77.2.2|443|java origin jdk                 |10"
"b-jdk12     |many|b-jdk12-%03d.origin.test  |10.77.2.3|443|java origin jdk                 |5"
"b-okhttp-h2 |many|b-okh2-%03d.origin.test   |10.77.2.6|443|java origin okhttp              |10"
"b-okhttp12  |many|b-ok12-%03d.origin.test   |10.77.2.3|443|java origin okhttp              |5"
)

# Inline transparent inspection: the inspector runs in pw-router behind
#   iptables -t nat PREROUTING -i pwr-c -s 10.77.1.3 -j RETURN; ... -p tcp --dport 443 -j REDIRECT
# and the tap is pwr-c only, so every session shows the ORIGIN's address, intercepted or not. Two
# inspectors, one after the other in one capture: the label prefix (mitm/ or squid/) says which one runs.
#   mitm:  mitmproxy 11.0.2 --mode transparent, ignore_hosts = $INLINE_BYPASS
#   squid: squid-openssl 5.7, https_port intercept ssl-bump, security_file_certgen,
#          ssl_bump peek step1 / splice (ssl::server_name $INLINE_BYPASS) / bump all
# Both sign with the testbed's inspection CA and verify the origin against the origin CA. pw-origin's
# initial TTL is $INLINE_ORIGIN_TTL during this group (restored after it), so origin packets reach the
# tap with TTL 49 and the inspector's with 64.
# via:   inline = default route (REDIRECTed to the inspector) | ownroute = the client binds 10.77.1.3,
#        which the REDIRECT rule exempts: the session goes around the inspector (a client with its own
#        route) | fallback-route = pinned app: $FALLBACK_TRIES tries on the default route, then the same
#        app over its own route (10.77.1.3)
# path:  inline (terminated by the inspector) | inline-bypass (spliced by the inspector: the client talks
#        to the real origin through the inspector box) | direct (did not traverse the inspector)
# Client args: tls12 = Java limited to TLSv1.2 (jdk.tls.client.protocols). curl/s_client/python use
# --tls-max 1.2 / -tls1_2 / --max-tls 1.2 against the TLS 1.2-only origin 10.77.2.3, because the
# inspector negotiates its own version with the client.
# (pcaps/testbed-inline.toml lists the same names under [bypass] domains: keep them in step)
INLINE_BYPASS=(bypass-m-curl13.origin.test bypass-m-curl12.origin.test bypass-m-okhttp13.origin.test
               bypass-s-curl13.origin.test bypass-s-curl12.origin.test bypass-s-okhttp13.origin.test)
# shellcheck disable=SC2034
SCENARIOS_inline=(
"mitm/curl-trusted13  |inline        |m-curl13.origin.test        |10.77.2.2|443|curl both                     |inline=established/-/-/-"
"mitm/curl-trusted12  |inline        |m-curl12.origin.test        |10.77.2.3|443|curl both --tls-max 1.2       |inline=established/-/-/-"
"mitm/py-trusted13    |inline        |m-py13.origin.test          |10.77.2.2|443|py both request               |inline=established/-/-/-"
"mitm/curl-untr13     |inline        |m-curl-untr13.origin.test   |10.77.2.2|443|curl origin                   |inline=client_rejected/A/client/unknown_ca(48)"
"mitm/curl-untr12     |inline        |m-curl-untr12.origin.test   |10.77.2.3|443|curl origin --tls-max 1.2     |inline=client_rejected/A/client/unknown_ca(48)"
"mitm/py-untr13       |inline        |m-py-untr13.origin.test     |10.77.2.2|443|py origin request             |inline=client_rejected/A/client/unknown_ca(48)"
"mitm/py-untr12       |inline        |m-py-untr12.origin.test     |10.77.2.3|443|py origin request --max-tls 1.2|inline=client_rejected/A/client/unknown_ca(48)"
"mitm/sclient-untr13  |inline        |m-sc-untr13.origin.test     |10.77.2.2|443|sclient origin                |inline=client_rejected/A/client/unknown_ca(48)"
"mitm/sclient-untr12  |inline        |m-sc-untr12.origin.test     |10.77.2.3|443|sclient origin -tls1_2        |inline=client_rejected/A/client/unknown_ca(48)"
"mitm/okhttp-pin13    |inline        |m-okhttp-pin13.origin.test  |10.77.2.2|443|java both pin=origin          |inline=client_rejected/C/client/encrypted"
"mitm/okhttp-pin12    |inline        |m-okhttp-pin12.origin.test  |10.77.2.3|443|java both pin=origin tls12    |inline=client_rejected/C/client/encrypted"
"mitm/okhttp-tmthrow13|inline        |m-okhttp-tm13.origin.test   |10.77.2.2|443|java both tm-throw            |inline=client_rejected/B/client/encrypted"
"mitm/okhttp-tmthrow12|inline        |m-okhttp-tm12.origin.test   |10.77.2.3|443|java both tm-throw tls12      |inline=client_rejected/A/client/certificate_unknown(46)"
"mitm/curl-bypass13   |inline        |bypass-m-curl13.origin.test |10.77.2.2|443|curl origin                   |inline-bypass=established/-/-/-"
"mitm/curl-bypass12   |inline        |bypass-m-curl12.origin.test |10.77.2.3|443|curl origin --tls-max 1.2     |inline-bypass=established/-/-/-"
"mitm/okhttp-bypass13 |inline        |bypass-m-okhttp13.origin.test|10.77.2.2|443|java origin pin=origin       |inline-bypass=established/-/-/-"
"mitm/curl-route13    |ownroute      |m-route-curl13.origin.test  |10.77.2.2|443|curl origin                   |direct=established/-/-/-"
"mitm/curl-route12    |ownroute      |m-route-curl12.origin.test  |10.77.2.3|443|curl origin --tls-max 1.2     |direct=established/-/-/-"
"mitm/py-route13      |ownroute      |m-route-py13.origin.test    |10.77.2.2|443|py origin request             |direct=established/-/-/-"
"mitm/okhttp-route12  |ownroute      |m-route-okhttp12.origin.test|10.77.2.3|443|java origin pin=origin tls12  |direct=established/-/-/-"
"mitm/fb-okhttp-route |fallback-route|m-fb-okhttp.origin.test     |10.77.2.2|443|java both fallback=origin     |inline#1=client_rejected/C/client/encrypted inline#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
"mitm/fb-curl-route   |fallback-route|m-fb-curl.origin.test       |10.77.2.2|443|curl both pin=origin          |inline#1=client_rejected/C/client/encrypted inline#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
"squid/curl-trusted13  |inline        |s-curl13.origin.test        |10.77.2.2|443|curl both                     |inline=established/-/-/-"
"squid/curl-trusted12  |inline        |s-curl12.origin.test        |10.77.2.3|443|curl both --tls-max 1.2       |inline=established/-/-/-"
"squid/py-trusted13    |inline        |s-py13.origin.test          |10.77.2.2|443|py both request               |inline=established/-/-/-"
"squid/curl-untr13     |inline        |s-curl-untr13.origin.test   |10.77.2.2|443|curl origin                   |inline=client_rejected/A/client/unknown_ca(48)"
"squid/curl-untr12     |inline        |s-curl-untr12.origin.test   |10.77.2.3|443|curl origin --tls-max 1.2     |inline=client_rejected/A/client/unknown_ca(48)"
"squid/py-untr13       |inline        |s-py-untr13.origin.test     |10.77.2.2|443|py origin request             |inline=client_rejected/A/client/unknown_ca(48)"
"squid/py-untr12       |inline        |s-py-untr12.origin.test     |10.77.2.3|443|py origin request --max-tls 1.2|inline=client_rejected/A/client/unknown_ca(48)"
"squid/sclient-untr13  |inline        |s-sc-untr13.origin.test     |10.77.2.2|443|sclient origin                |inline=client_rejected/A/client/unknown_ca(48)"
"squid/sclient-untr12  |inline        |s-sc-untr12.origin.test     |10.77.2.3|443|sclient origin -tls1_2        |inline=client_rejected/A/client/unknown_ca(48)"
"squid/okhttp-pin13    |inline        |s-okhttp-pin13.origin.test  |10.77.2.2|443|java both pin=origin          |inline=client_rejected/C/client/encrypted"
"squid/okhttp-pin12    |inline        |s-okhttp-pin12.origin.test  |10.77.2.3|443|java both pin=origin tls12    |inline=client_rejected/C/client/encrypted"
"squid/okhttp-tmthrow13|inline        |s-okhttp-tm13.origin.test   |10.77.2.2|443|java both tm-throw            |inline=client_rejected/B/client/encrypted"
"squid/okhttp-tmthrow12|inline        |s-okhttp-tm12.origin.test   |10.77.2.3|443|java both tm-throw tls12      |inline=client_rejected/A/client/certificate_unknown(46)"
"squid/curl-bypass13   |inline        |bypass-s-curl13.origin.test |10.77.2.2|443|curl origin                   |inline-bypass=established/-/-/-"
"squid/curl-bypass12   |inline        |bypass-s-curl12.origin.test |10.77.2.3|443|curl origin --tls-max 1.2     |inline-bypass=established/-/-/-"
"squid/okhttp-bypass13 |inline        |bypass-s-okhttp13.origin.test|10.77.2.2|443|java origin pin=origin       |inline-bypass=established/-/-/-"
"squid/curl-route13    |ownroute      |s-route-curl13.origin.test  |10.77.2.2|443|curl origin                   |direct=established/-/-/-"
"squid/curl-route12    |ownroute      |s-route-curl12.origin.test  |10.77.2.3|443|curl origin --tls-max 1.2     |direct=established/-/-/-"
"squid/py-route12      |ownroute      |s-route-py12.origin.test    |10.77.2.3|443|py origin request --max-tls 1.2|direct=established/-/-/-"
"squid/okhttp-route13  |ownroute      |s-route-okhttp13.origin.test|10.77.2.2|443|java origin pin=origin        |direct=established/-/-/-"
"squid/fb-okhttp-route |fallback-route|s-fb-okhttp.origin.test     |10.77.2.2|443|java both fallback=origin     |inline#1=client_rejected/C/client/encrypted inline#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
"squid/fb-curl-route   |fallback-route|s-fb-curl.origin.test       |10.77.2.2|443|curl both pin=origin          |inline#1=client_rejected/C/client/encrypted inline#2=client_rejected/C/client/encrypted direct#3=established/-/-/-"
)

# ---------------------------------------------------------------------------------------------
# PKI
# ---------------------------------------------------------------------------------------------
make_pki() {
    local P=$T/pki
    mkdir -p "$P"
    local cacfg=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/O=pinwatch testbed/CN=pinwatch testbed origin CA" "${cacfg[@]}" \
        -keyout "$P/origin-ca.key" -out "$P/origin-ca.pem" 2>/dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/O=pinwatch testbed/CN=pinwatch testbed inspection CA" "${cacfg[@]}" \
        -keyout "$P/inspect-ca.key" -out "$P/inspect-ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/O=pinwatch testbed/CN=api.origin.test" -keyout "$P/origin.key" -out "$P/origin.csr" 2>/dev/null
    cat >"$P/origin.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:api.origin.test,DNS:pinned.origin.test,DNS:*.origin.test
EOF
    openssl x509 -req -in "$P/origin.csr" -CA "$P/origin-ca.pem" -CAkey "$P/origin-ca.key" \
        -CAcreateserial -days 30 -extfile "$P/origin.ext" -out "$P/origin.pem" 2>/dev/null
    cat "$P/origin.pem" "$P/origin-ca.pem" >"$P/origin-chain.pem"
    cat "$P/origin-ca.pem" "$P/inspect-ca.pem" >"$P/both-ca.pem"
    ORIGIN_PIN=$(openssl x509 -in "$P/origin.pem" -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64)
    local tr
    for tr in origin inspect both; do
        local i=0 f
        rm -f "$P/trust-$tr.p12"
        for f in origin inspect; do
            [[ $tr == "$f" || $tr == both ]] || continue
            keytool -importcert -noprompt -storetype PKCS12 -keystore "$P/trust-$tr.p12" \
                -storepass changeit -alias "ca$((i++))" -file "$P/$f-ca.pem" >/dev/null 2>&1
        done
    done
    # mitmproxy wants key+cert of its CA in one file in its confdir
    mkdir -p "$T/mitm"
    cat "$P/inspect-ca.key" "$P/inspect-ca.pem" >"$T/mitm/mitmproxy-ca.pem"
    cp "$P/inspect-ca.pem" "$T/mitm/mitmproxy-ca-cert.pem"
    PKI=$P
}

cafile_for() { echo "$PKI/$1-ca.pem"; }

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@" 9>&-; }   # fd 9 = run lock, not inherited

setup_net() {
    teardown_net
    local ns
    for ns in "$NS_C" "$NS_R" "$NS_O"; do
        ip netns add "$ns"
        nsx "$ns" ip link set lo up
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip link add pwc0 netns "$NS_C" type veth peer name pwr-c netns "$NS_R"
    ip link add pwo0 netns "$NS_O" type veth peer name pwr-o netns "$NS_R"
    nsx "$NS_C" ip addr add "$C_IP/24" dev pwc0
    nsx "$NS_C" ip addr add "$C_IP2/24" dev pwc0   # secondary: the default source stays $C_IP
    nsx "$NS_R" ip addr add "$R_CIP/24" dev pwr-c
    nsx "$NS_R" ip addr add "$R_OIP/24" dev pwr-o
    nsx "$NS_O" ip addr add "$O_IP13/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IP12/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IPFB/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IPPLAIN/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IPH2/24" dev pwo0
    local pair lns dev
    for pair in "$NS_C pwc0" "$NS_R pwr-c" "$NS_R pwr-o" "$NS_O pwo0"; do
        read -r lns dev <<<"$pair"
        nsx "$lns" ip link set "$dev" up
        # no offloads: the tap then sees MTU-sized segments with valid checksums
        if command -v ethtool >/dev/null; then
            nsx "$lns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
        fi
    done
    nsx "$NS_C" ip route add default via "$R_CIP"
    nsx "$NS_O" ip route add default via "$R_OIP"
    nsx "$NS_R" sysctl -qw net.ipv4.ip_forward=1
    # name resolution inside the namespaces (ip netns exec bind-mounts /etc/netns/<ns>/hosts)
    for ns in "$NS_C" "$NS_R"; do
        mkdir -p "/etc/netns/$ns"
        printf '127.0.0.1 localhost\n' >"/etc/netns/$ns/hosts"
    done
}

add_host() {   # sni ip
    local ns
    for ns in "$NS_C" "$NS_R"; do printf '%s %s\n' "$2" "$1" >>"/etc/netns/$ns/hosts"; done
}

# ---------------------------------------------------------------------------------------------
# Servers (pw-origin)
# ---------------------------------------------------------------------------------------------
start_servers() {
    mkdir -p "$T/nginx"
    cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log info;
events { worker_connections 256; }
http {
    access_log $T/nginx/access.log;
    default_type text/plain;
    ssl_certificate     $PKI/origin-chain.pem;
    ssl_certificate_key $PKI/origin.key;
    keepalive_timeout 5s;
    server {   # TLS 1.2 + 1.3 (negotiates 1.3)
        listen $O_IP13:443 ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "pinwatch testbed origin (tls13 host)\n"; }
    }
    server {   # TLS 1.2 only
        listen $O_IP12:443 ssl;
        ssl_protocols TLSv1.2;
        location / { return 200 "pinwatch testbed origin (tls12 host)\n"; }
    }
    server {   # TLS 1.3, short handshake timeout (stall scenario)
        listen $O_IP13:9443 ssl;
        ssl_protocols TLSv1.3;
        client_header_timeout 2s;
        location / { return 200 "pinwatch testbed origin (stall host)\n"; }
    }
    server {   # fallback group: TLS 1.3 origin that is only ever reached directly; also on an odd port
        listen $O_IPFB:443 ssl;
        listen $O_IPFB:4443 ssl;
        ssl_protocols TLSv1.3;
        location / { return 200 "pinwatch testbed origin (fallback host)\n"; }
    }
    server {   # benign group: TLS 1.2 + 1.3 with HTTP/2 (ALPN h2)
        listen $O_IPH2:443 ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "pinwatch testbed origin (h2 host)\n"; }
    }
    server {   # fallback group: plain HTTP (no TLS) on tcp/443
        listen $O_IPPLAIN:443;
        location / { return 200 "pinwatch testbed origin (plain http on 443)\n"; }
    }
}
EOF
    # background jobs use "ip netns exec" directly (not the nsx function) so that $! is the
    # server's own pid (ip execs it) and can be signalled
    ip netns exec "$NS_O" nginx -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" -g 'daemon off;' 9>&- &
    PIDS+=($!)
    local v
    for v in 13 12; do
        local ip=$O_IP13 opt=-tls1_3
        [[ $v == 12 ]] && { ip=$O_IP12; opt=-tls1_2; }
        ip netns exec "$NS_O" openssl s_server -quiet -accept "$ip:8443" "$opt" -www \
            -cert "$PKI/origin.pem" -key "$PKI/origin.key" -cert_chain "$PKI/origin-ca.pem" \
            -Verify 1 -verify_return_error -CAfile "$PKI/origin-ca.pem" \
            >"$T/s_server$v.log" 2>&1 </dev/null 9>&- &
        PIDS+=($!)
    done
    wait_port "$NS_O" "$O_IP13" 443
    wait_port "$NS_O" "$O_IP12" 443
    wait_port "$NS_O" "$O_IP13" 9443
    wait_port "$NS_O" "$O_IP13" 8443
    wait_port "$NS_O" "$O_IP12" 8443
    wait_port "$NS_O" "$O_IPFB" 443
    wait_port "$NS_O" "$O_IPFB" 4443
    wait_port "$NS_O" "$O_IPPLAIN" 443
    wait_port "$NS_O" "$O_IPH2" 443
}

wait_udp_port() {   # ns ip port
    local i
    for i in $(seq 1 100); do
        nsx "$1" ss -Hlun "sport = :$3" 2>/dev/null | awk -v want="$2:$3" '$4 == want {f=1} END {exit !f}' && return 0
        sleep 0.05
    done
    echo "testbed: nothing listening on udp $2:$3 in $1" >&2
    return 1
}

# quic group: aioquic HTTP/3 server in pw-origin (its TLS secrets go to $T, merged into the group's key log)
start_quic() {
    SSLKEYLOGFILE="$T/quic-server.keylog" ip netns exec "$NS_O" "$QUIC_PY" "$HERE/testbed/quic_peer.py" server \
        "$PKI/origin.key" "$O_IPFB:$QUIC_PORT:$PKI/origin-chain.pem" "$O_IPFB:$QUIC_PORT_LEAF:$PKI/origin.pem" \
        >"$T/quic-server.log" 2>&1 </dev/null 9>&- &
    PIDS+=($!)
    QUIC_PID=$!
    wait_udp_port "$NS_O" "$O_IPFB" "$QUIC_PORT"
    wait_udp_port "$NS_O" "$O_IPFB" "$QUIC_PORT_LEAF"
}

stop_quic() {
    kill "${QUIC_PID:-0}" 2>/dev/null || true
    wait "${QUIC_PID:-0}" 2>/dev/null || true
}

wait_port() {   # ns ip port   (ip "*" = any)
    local i
    for i in $(seq 1 100); do
        nsx "$1" ss -Hltn "sport = :$3" 2>/dev/null |
            awk -v want="$2:$3" '$4 == want || substr(want, 1, 2) == "*:" {f=1} END {exit !f}' && return 0
        sleep 0.05
    done
    echo "testbed: nothing listening on $2:$3 in $1" >&2
    return 1
}

# ---------------------------------------------------------------------------------------------
# Inspection proxy (pw-router)
# ---------------------------------------------------------------------------------------------
start_mitm() {   # [full | explicit]: full = explicit proxy + transparent mode behind the REDIRECT rule
    local what=${1:-full}
    local modes=(--mode "regular@$R_CIP:$PROXY_PORT")
    if [[ $what == full ]]; then
        nsx "$NS_R" iptables -t nat -A PREROUTING -i pwr-c -p tcp --dport 443 -j REDIRECT --to-ports "$TPROXY_PORT"
        modes+=(--mode "transparent@$TPROXY_PORT")
    fi
    ip netns exec "$NS_R" "$MITMDUMP" --set confdir="$T/mitm" "${modes[@]}" \
        --set ssl_verify_upstream_trusted_ca="$PKI/origin-ca.pem" \
        --set ignore_hosts='^bypass[^.]*\.origin\.test' --set flow_detail=0 --set termlog_verbosity=info \
        >"$T/mitmdump-$what.log" 2>&1 9>&- &
    PIDS+=($!)
    MITM_PID=$!
    wait_port "$NS_R" "$R_CIP" "$PROXY_PORT"
    [[ $what != full ]] || wait_port "$NS_R" '*' "$TPROXY_PORT"
}

stop_mitm() {
    kill "${MITM_PID:-0}" 2>/dev/null || true
    wait "${MITM_PID:-0}" 2>/dev/null || true
    nsx "$NS_R" iptables -t nat -F PREROUTING 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Inline transparent inspectors (pw-router, inline group): mitmproxy or squid behind a REDIRECT rule
# that exempts $C_IP2 (the client with its own route). One runs at a time.
# ---------------------------------------------------------------------------------------------
inline_redirect() {   # port
    nsx "$NS_R" iptables -t nat -A PREROUTING -i pwr-c -s "$C_IP2" -j RETURN
    nsx "$NS_R" iptables -t nat -A PREROUTING -i pwr-c -p tcp --dport 443 -j REDIRECT --to-ports "$1"
}

start_inline() {   # mitm | squid
    INLINE_NOW=$1
    case $1 in
        mitm)
            local re
            re=$(printf '%s|' "${INLINE_BYPASS[@]}")
            re="^(${re%|})(:[0-9]+)?\$"
            re=${re//./\\.}
            ip netns exec "$NS_R" "$MITMDUMP" --set confdir="$T/mitm" --mode "transparent@$TPROXY_PORT" \
                --set ssl_verify_upstream_trusted_ca="$PKI/origin-ca.pem" \
                --set ignore_hosts="$re" --set flow_detail=0 --set termlog_verbosity=info \
                >"$T/mitmdump-inline.log" 2>&1 9>&- &
            PIDS+=($!)
            INLINE_PID=$!
            wait_port "$NS_R" '*' "$TPROXY_PORT"
            inline_redirect "$TPROXY_PORT"
            ;;
        squid)
            local d=$T/squid
            rm -rf "$d"
            mkdir -p "$d"
            cp "$PKI/inspect-ca.pem" "$PKI/inspect-ca.key" "$PKI/origin-ca.pem" "$d/"
            "$SQUID_CERTGEN" -c -s "$d/ssl_db" -M 4MB >/dev/null
            cat >"$d/squid.conf" <<EOF
# squid-openssl ssl-bump in intercept mode (written by scripts/testbed.sh)
http_port 127.0.0.1:3128
https_port $SQUID_PORT intercept ssl-bump tls-cert=$d/inspect-ca.pem tls-key=$d/inspect-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=4MB
sslcrtd_program $SQUID_CERTGEN -s $d/ssl_db -M 4MB
sslcrtd_children 2 startup=1 idle=1
tls_outgoing_options cafile=$d/origin-ca.pem
acl step1 at_step SslBump1
acl inline_bypass ssl::server_name ${INLINE_BYPASS[*]}
ssl_bump peek step1
ssl_bump splice inline_bypass
ssl_bump bump all
http_access allow all
cache deny all
cache_effective_user proxy
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log stdio:$d/access.log
logfile_rotate 0
coredump_dir $d
netdb_filename none
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
EOF
            chown -R proxy: "$d"
            chmod o+x "$T"   # squid and its helpers run as proxy and need to reach $T/squid
            ip netns exec "$NS_R" "$SQUID" -N -f "$d/squid.conf" >"$d/squid.out" 2>&1 9>&- &
            PIDS+=($!)
            INLINE_PID=$!
            wait_port "$NS_R" '*' "$SQUID_PORT"
            inline_redirect "$SQUID_PORT"
            ;;
    esac
    log "inline inspector: $1 (pid $INLINE_PID)"
}

stop_inline() {
    [[ -n ${INLINE_NOW:-} ]] || return 0
    nsx "$NS_R" iptables -t nat -F PREROUTING 2>/dev/null || true
    kill "${INLINE_PID:-0}" 2>/dev/null || true
    wait "${INLINE_PID:-0}" 2>/dev/null || true
    INLINE_NOW=
}

# ---------------------------------------------------------------------------------------------
# Clients (pw-client). Each runner: <sni> <port> <via> <trust> [args...]
# ($ROW_IP is the row's server_ip, for rows without an SNI)
# ---------------------------------------------------------------------------------------------
run_curl() {
    local sni=$1 port=$2 via=$3 trust=$4; shift 4
    local a=(-sS -o /dev/null -w 'curl: %{http_code} ssl_verify=%{ssl_verify_result}\n' --max-time 10
             --cacert "$(cafile_for "$trust")")
    local x reqs=1
    for x in "$@"; do
        case $x in
            pin=origin) a+=(--pinnedpubkey "sha256//$ORIGIN_PIN") ;;
            pin=wrong) a+=(--pinnedpubkey "sha256//$WRONG_PIN") ;;
            reqs=*) reqs=${x#reqs=} ;;
            *) a+=("$x") ;;
        esac
    done
    if [[ $via == many ]]; then run_curl_many "$sni" "$port" "$reqs" "${a[@]}"; return; fi
    [[ $via == explicit ]] && a+=(-x "http://$R_CIP:$PROXY_PORT")
    [[ $via == ownroute ]] && a+=(--interface "$C_IP2")
    if [[ $via == fallback || $via == fallback-route ]]; then
        # app-style retry loop: N tries through the proxy (fallback) or on the default route through the
        # inline inspector (fallback-route), then direct (fallback-route: from the client's own route)
        local try rc px=(-x "http://$R_CIP:$PROXY_PORT") how="via proxy"
        [[ $via == fallback ]] || { px=(); how="on the default route"; }
        for try in $(seq 1 "$FALLBACK_TRIES"); do
            rc=0
            nsx "$NS_C" curl "${a[@]}" "${px[@]}" "https://$sni:$port/" || rc=$?
            echo "curl: try $try $how: exit $rc"
        done
        echo "curl: try $((FALLBACK_TRIES + 1)) direct:"
        [[ $via == fallback ]] || a+=(--interface "$C_IP2")
    fi
    nsx "$NS_C" curl "${a[@]}" "https://$sni:$port/"
}

# benign load: $ROW_COUNT sessions, session i to SNI printf(pattern, i) at $ROW_IP, $reqs requests each
# on that one connection; ten hosts per curl process (curl opens one connection per host name)
run_curl_many() {
    local pat=$1 port=$2 reqs=$3; shift 3
    local a=(-sS --max-time 10 -w '%{http_code} %{http_version}\n') i=1 n ok=0 out x skip=0
    for x in "$@"; do   # run_curl's options without its single-transfer -o/-w (each URL gets its own)
        if [[ $skip -eq 1 ]]; then skip=0; continue; fi
        case $x in
            -o | -w | --max-time) skip=1 ;;
            -sS) ;;
            *) a+=("$x") ;;
        esac
    done
    while [[ $i -le $ROW_COUNT ]]; do
        local b=() name r
        for n in $(seq "$i" $((i + 9))); do
            [[ $n -le $ROW_COUNT ]] || break
            # shellcheck disable=SC2059
            name=$(printf "$pat" "$n")
            b+=(--resolve "$name:$port:$ROW_IP")
            for r in $(seq 1 "$reqs"); do b+=(-o /dev/null "https://$name:$port/$r"); done
        done
        out=$(nsx "$NS_C" curl "${a[@]}" "${b[@]}" 2>&1) || true
        ok=$((ok + $(grep -c '^200 ' <<<"$out" || true)))
        i=$((i + 10))
    done
    echo "curl: $ok/$((ROW_COUNT * reqs)) requests answered 200 on $ROW_COUNT connections ($(grep -o ' [0-9.]*$' <<<"$out" | sort -u | tr -d '\n'))"
    [[ $ok -eq $((ROW_COUNT * reqs)) ]]
}

run_sclient() {
    local sni=$1 port=$2 via=$3 trust=$4; shift 4
    if [[ $via == many ]]; then run_sclient_many "$sni" "$port" "$trust"; return; fi
    if [[ $sni == - || ${1:-} == request ]]; then run_sclient_request "$sni" "$port" "$via" "$trust" "$@"; return; fi
    local a=(-connect "$sni:$port" -servername "$sni" -verify_return_error -CAfile "$(cafile_for "$trust")")
    [[ $via == explicit ]] && a+=(-proxy "$R_CIP:$PROXY_PORT")
    nsx "$NS_C" openssl s_client "${a[@]}" "$@" </dev/null 2>&1 | grep -E 'verify error|Verify return|Protocol|alert' | head -3
}

# s_client that sends one HTTP/1.0 request and reads the response (-quiet implies -ign_eof). SNI "-":
# connect to the row's IP with -noservername; the chain is verified, the name is not (no -verify_hostname).
run_sclient_request() {
    local sni=$1 port=$2 via=$3 trust=$4; shift 4
    [[ ${1:-} == request ]] && shift
    local a=(-verify_return_error -CAfile "$(cafile_for "$trust")" -quiet) host=$sni
    if [[ $sni == - ]]; then host=$ROW_IP; a+=(-connect "$ROW_IP:$port" -noservername)
    else a+=(-connect "$sni:$port" -servername "$sni"); fi
    [[ $via == explicit ]] && a+=(-proxy "$R_CIP:$PROXY_PORT")
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" |
        nsx "$NS_C" timeout 10 openssl s_client "${a[@]}" "$@" 2>&1 | grep -aE '^HTTP/|verify|error' | head -3
}

# benign load: $ROW_COUNT s_client sessions to $ROW_IP, SNI printf(pattern, i), one HTTP/1.0 request each
run_sclient_many() {
    local pat=$1 port=$2 trust=$3 i name ok=0
    for i in $(seq 1 "$ROW_COUNT"); do
        # shellcheck disable=SC2059
        name=$(printf "$pat" "$i")
        printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$name" |
            nsx "$NS_C" timeout 10 openssl s_client -connect "$ROW_IP:$port" -servername "$name" -quiet \
                -verify_return_error -verify_hostname "$name" -CAfile "$(cafile_for "$trust")" 2>/dev/null |
            grep -q '^HTTP/1.1 200' && ok=$((ok + 1))
    done
    echo "openssl s_client: $ok/$ROW_COUNT sessions answered 200"
    [[ $ok -eq $ROW_COUNT ]]
}

# not TLS at all: a plain TCP socket that sends an HTTP/1.0 request to ROW_IP:port and reads the answer
run_pysock() {
    local port=$2
    nsx "$NS_C" "$PY" - "$ROW_IP" "$port" <<'PYEOF'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET / HTTP/1.0\r\nHost: " + sys.argv[1].encode() + b"\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
s.close()
print("python-socket: " + data.split(b"\r\n", 1)[0].decode(errors="replace"), file=sys.stderr)
PYEOF
}

run_py() {
    local sni=$1 port=$2 via=$3 trust=$4 mode=$5; shift 5
    local a=()
    [[ $via == explicit ]] && a+=(--proxy "$R_CIP:$PROXY_PORT")
    [[ $via == ownroute ]] && a+=(--bind "$C_IP2")
    [[ $via == many ]] && a+=(--count "$ROW_COUNT" --connect "$ROW_IP")
    nsx "$NS_C" "$PY" "$HERE/testbed/tls_client.py" "$mode" "$sni" "$port" "$(cafile_for "$trust")" "${a[@]}" "$@"
}

# aioquic HTTP/3 client: one GET /, then CONNECTION_CLOSE with H3_NO_ERROR; "v2" = QUIC version 2 only
run_aioquic() {
    local sni=$1 port=$2 trust=$4 ver=v1
    [[ ${5:-} == v2 ]] && ver=v2
    nsx "$NS_C" "$QUIC_PY" "$HERE/testbed/quic_peer.py" client "$sni" "$port" "$(cafile_for "$trust")" --version "$ver"
}

run_java() {
    local sni=$1 port=$2 via=$3 trust=$4 mode=$5; shift 5
    local a=() jo=() x i
    case $mode in
        pin=origin) a=(pin "https://$sni:$port/" "sha256/$ORIGIN_PIN") ;;
        pin=wrong) a=(pin "https://$sni:$port/" "sha256/$WRONG_PIN") ;;
        fallback=origin)
            if [[ $via == fallback-route ]]; then
                a=(fallback-route "https://$sni:$port/" "sha256/$ORIGIN_PIN" "$C_IP2" "$FALLBACK_TRIES")
            else
                a=(fallback "https://$sni:$port/" "sha256/$ORIGIN_PIN" "$R_CIP:$PROXY_PORT" "$FALLBACK_TRIES")
            fi ;;
        jdk|okhttp)   # benign load (via many): one request per session, SNI printf(pattern, i)
            a=(many)
            # shellcheck disable=SC2059
            for i in $(seq 1 "$ROW_COUNT"); do a+=("$mode:https://$(printf "$sni" "$i"):$port/"); done ;;
        *) a=("$mode" "https://$sni:$port/") ;;
    esac
    [[ $via == explicit ]] && a+=("$R_CIP:$PROXY_PORT")
    [[ $via == ownroute ]] && jo+=(-Dpinclient.bind="$C_IP2")
    for x in "$@"; do [[ $x != tls12 ]] || jo+=(-Djdk.tls.client.protocols=TLSv1.2); done
    java_cmd "$trust" "${jo[@]}" PinClient "${a[@]}"
}

java_cmd() {   # trust [jvm options] PinClient args...
    local trust=$1; shift
    nsx "$NS_C" java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
        -Djavax.net.ssl.trustStore="$PKI/trust-$trust.p12" -Djavax.net.ssl.trustStorePassword=changeit \
        -Djavax.net.ssl.trustStoreType=PKCS12 -cp "$T/java:$OKHTTP_CP" "$@"
}

stack_of() {   # runner -> stack string for the TSV
    case $1 in
        curl) echo "$V_CURL" ;;
        sclient) echo "$V_SCLIENT" ;;
        py) echo "$V_PY" ;;
        java) echo "$V_JAVA" ;;
        pysock) echo python-socket ;;
        aioquic) echo "$V_AIOQUIC" ;;
    esac
}

versions() {
    V_CURL="curl/$(curl --version | awk 'NR==1{print $2}')+$(curl --version | grep -o 'OpenSSL/[0-9.]*' | head -1)"
    V_SCLIENT="openssl-s_client/$(openssl version | awk '{print $2}')"
    V_PY="python/$($PY -c 'import platform;print(platform.python_version())')-ssl+OpenSSL/$($PY -c 'import ssl;print(ssl.OPENSSL_VERSION.split()[1])')"
    V_JDK="java-HttpsURLConnection+JSSE/$(java -version 2>&1 | awk -F'"' 'NR==1{print $2}')"
    V_JAVA="okhttp/$(dpkg-query -W -f='${Version}' libokhttp-java 2>/dev/null | cut -d- -f1)+JSSE/$(java -version 2>&1 | awk -F'"' 'NR==1{print $2}')"
    V_MITM=mitmproxy/unavailable
    if [[ -x $MITMDUMP ]]; then
        local mv
        mv=$("$MITMDUMP" --version 2>/dev/null || true)
        V_MITM="mitmproxy/$(awk '/^Mitmproxy/{print $2}' <<<"$mv")+$(awk '/^OpenSSL/{print $2"/"$3}' <<<"$mv")"
    fi
    V_NGINX=$(nginx -v 2>&1 | awk '{print $3}')
    V_SQUID=squid/unavailable
    if [[ -x $SQUID ]]; then
        V_SQUID="squid/$("$SQUID" -v | awk '/^Squid Cache/{print $4}')+OpenSSL/$(openssl version | awk '{print $2}')"
    fi
    V_AIOQUIC=aioquic/unavailable
    if [[ -x $QUIC_PY ]]; then
        V_AIOQUIC=$("$QUIC_PY" -c 'import aioquic, cryptography, platform
print(f"aioquic/{aioquic.__version__}+python/{platform.python_version()}+cryptography/{cryptography.__version__}")' \
            2>/dev/null || echo aioquic/unavailable)
    fi
}

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }

# ---------------------------------------------------------------------------------------------
# One group: capture + clients + expectations + check
# ---------------------------------------------------------------------------------------------

# "many" rows (benign load): one background worker per runner runs that runner's rows in table order,
# all workers at once; every session of a row becomes one TSV row (all accepted: established, direct)
run_many_rows() {   # group tsv
    local -n mtable="SCENARIOS_$1"
    local tsv=$2 line label via sni ip port client count runners=() r wpids=()
    for line in "${mtable[@]}"; do
        IFS='|' read -r label via sni ip port client count <<<"$line"
        read -r r _ <<<"$client"
        [[ " ${runners[*]} " == *" $r "* ]] || runners+=("$r")
    done
    log "benign load: ${#mtable[@]} rows, runners ${runners[*]} at the same time"
    for r in "${runners[@]}"; do
        (
            if [[ $r == java ]]; then   # one JVM for all Java rows (a JVM start costs seconds here)
                local specs=() t0 rc=0 trust=''
                t0=$(date +%s%N)
                for line in "${mtable[@]}"; do
                    IFS='|' read -r label via sni ip port client count <<<"$line"
                    local cargs i
                    read -r -a cargs <<<"$client"
                    [[ ${cargs[0]} == java ]] || continue
                    trust=${cargs[1]}
                    # shellcheck disable=SC2059
                    for i in $(seq 1 "$(trim "$count")"); do
                        specs+=("${cargs[2]}:https://$(printf "$(trim "$sni")" "$i"):$(trim "$port")/")
                    done
                done
                java_cmd "$trust" PinClient many "${specs[@]}" || rc=$?
                echo "java rows: ${#specs[@]} sessions in one JVM: exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms"
                exit 0
            fi
            for line in "${mtable[@]}"; do
                IFS='|' read -r label via sni ip port client count <<<"$line"
                local cargs
                read -r -a cargs <<<"$client"
                [[ ${cargs[0]} == "$r" ]] || continue
                ROW_IP=$(trim "$ip") ROW_COUNT=$(trim "$count")
                local rc=0 t0
                t0=$(date +%s%N)
                "run_$r" "$(trim "$sni")" "$(trim "$port")" many "${cargs[@]:1}" || rc=$?
                echo "$(trim "$label"): ${cargs[*]} x$ROW_COUNT -> $ROW_IP:$(trim "$port"): exit $rc," \
                    "$(( ($(date +%s%N) - t0) / 1000000 )) ms"
            done
        ) >"$T/many-$r.out" 2>&1 9>&- &
        wpids+=($!)
    done
    for r in "${wpids[@]}"; do wait "$r" || true; done
    for r in "${runners[@]}"; do sed 's/^/      /' "$T/many-$r.out" >&2; cat "$T/many-$r.out" >>"$T/clients.log"; done
    local n
    for line in "${mtable[@]}"; do
        IFS='|' read -r label via sni ip port client count <<<"$line"
        read -r r _ <<<"$client"
        local stack
        stack=$(stack_of "$r")
        [[ $client != *" jdk"* ]] || stack=$V_JDK
        for n in $(seq 1 "$(trim "$count")"); do
            # shellcheck disable=SC2059
            printf '%s#%d\t%s\t%s\t%s\t%s\testablished\t-\t-\t-\tdirect\t%s\n' "$(trim "$label")" "$n" "$(trim "$ip")" \
                "$(trim "$port")" "$(printf "$(trim "$sni")" "$n")" "$stack" "$C_IP" >>"$tsv"
        done
    done
}
run_group() {
    local group=$1
    local -n table="SCENARIOS_$group"
    local pcap="$OUT/testbed-$group.pcap" tsv="$OUT/testbed-$group.expected.tsv"
    local line label via sni ip port client sessions
    log "group $group: ${#table[@]} client actions"

    for line in "${table[@]}"; do
        IFS='|' read -r label via sni ip port client sessions <<<"$line"
        if [[ $(trim "$via") == many ]]; then   # benign load: one name per session (Java resolves them)
            local n
            # shellcheck disable=SC2059
            for n in $(seq 1 "$(trim "$sessions")"); do add_host "$(printf "$(trim "$sni")" "$n")" "$(trim "$ip")"; done
            continue
        fi
        [[ $(trim "$sni") == - ]] || add_host "$(trim "$sni")" "$(trim "$ip")"
    done

    # TLS secrets of the clients that support a key log (curl, python, mitmproxy; not JSSE, not
    # s_client) so the encrypted records can be opened in Wireshark
    rm -f "$OUT/testbed-$group.keylog"
    export SSLKEYLOGFILE="$OUT/testbed-$group.keylog" MITMPROXY_SSLKEYLOGFILE="$OUT/testbed-$group.keylog"
    local ifaces=(pwr-o) mitm='' checkpy=$PY checkargs=() ttl0=''
    case $group in
        inspection) ifaces=(pwr-c pwr-o) mitm=full ;;
        fallback) ifaces=(pwr-c) mitm=explicit ;;   # client side only: every session once, client 10.77.1.2
        quic) checkpy=$QUIC_PY ;;   # the checker decrypts QUIC packets (cryptography)
        benign) ifaces=(pwr-c) checkargs=(--match key) ;;   # concurrent clients: rows matched by key
        inline)   # client side of the inspector box only; the origin looks distant (lower TTL)
            ifaces=(pwr-c)
            ttl0=$(nsx "$NS_O" sysctl -n net.ipv4.ip_default_ttl)
            nsx "$NS_O" sysctl -qw net.ipv4.ip_default_ttl="$INLINE_ORIGIN_TTL"
            cp "$PKI/inspect-ca.pem" "$OUT/testbed-inline-ca.pem"
            checkargs=(--inspector-ttl 64 --inspect-ca "$OUT/testbed-inline-ca.pem") ;;
    esac
    [[ -z $mitm ]] || start_mitm "$mitm"
    [[ $group != quic ]] || { rm -f "$T/quic-server.keylog"; start_quic; }
    # The inspection CA's certificate (public part only) goes beside the
    # capture so a sensor config can name it (pcaps/testbed.toml).
    [[ $group == inspection ]] && cp "$PKI/inspect-ca.pem" "$OUT/testbed-inspection-ca.pem"
    local caps=() tpids=() ifc
    for ifc in "${ifaces[@]}"; do
        ip netns exec "$NS_R" tcpdump --immediate-mode -Z root -i "$ifc" -n -s 0 -U -w "$T/$group-$ifc.pcap" 'tcp or udp or icmp' \
            2>"$T/tcpdump-$group-$ifc.log" 9>&- &
        tpids+=($!)
        PIDS+=($!)
        caps+=("$T/$group-$ifc.pcap")
    done
    local i
    for ifc in "${ifaces[@]}"; do
        for i in $(seq 1 100); do grep -q 'listening on' "$T/tcpdump-$group-$ifc.log" && break; sleep 0.05; done
    done
    sleep 0.3

    printf 'client_port_or_label\tserver_ip\tserver_port\tsni\tstack\texpected_outcome\texpected_class\texpected_alert_sender\texpected_alert\tpath\tclient_ip\n' >"$tsv.tmp"
    [[ $group != benign ]] || run_many_rows "$group" "$tsv.tmp"
    for line in "${table[@]}"; do
        IFS='|' read -r label via sni ip port client sessions <<<"$line"
        label=$(trim "$label") via=$(trim "$via") sni=$(trim "$sni") ip=$(trim "$ip") port=$(trim "$port")
        [[ $via != many ]] || continue   # done above, all at once
        local cargs
        read -r -a cargs <<<"$client"
        local runner=${cargs[0]}
        if [[ $group == inline && ${label%%/*} != "${INLINE_NOW:-}" ]]; then
            stop_inline
            start_inline "${label%%/*}"
        fi
        log "$label: $runner ${cargs[*]:1} -> $sni ($ip:$port) via $via"
        local rc=0
        ROW_IP=$ip
        "run_$runner" "$sni" "$port" "$via" "${cargs[@]:1}" >"$T/client.out" 2>&1 || rc=$?
        grep -v -e '^$' -e 'More details here' -e 'curl failed to verify' -e 'establish a secure' \
            -e 'how to fix it' "$T/client.out" | sed 's/^/      /' >&2 || true
        { echo "== $label"; cat "$T/client.out"; } >>"$T/clients.log"
        [[ $rc -eq 0 ]] || echo "      (exit $rc)" >&2
        local s path spec sip sport cip stack tag
        for s in $sessions; do
            path=${s%%=*} spec=${s#*=} tag=
            if [[ $path == *#* ]]; then tag="#${path#*#}"; path=${path%%#*}; fi
            sip=$ip sport=$port
            if [[ $path == *@* ]]; then sip=${path#*@}; sport=${sip##*:}; sip=${sip%:*}; path=${path%%@*}; fi
            cip=$C_IP stack=$(stack_of "$runner")
            [[ $path == proxy-origin ]] && { cip=$R_OIP; stack=$V_MITM; }
            [[ $path == direct && ( $via == ownroute || $via == fallback-route ) ]] && cip=$C_IP2
            IFS=/ read -r o c snd al <<<"$spec"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label$([[ $path == direct ]] || echo "/$path")$tag" "$sip" "$sport" "$sni" \
                "$stack" "$o" "$c" "$snd" "$al" "$path" "$cip" >>"$tsv.tmp"
        done
        sleep "$GAP"
    done
    sleep 1
    for i in "${tpids[@]}"; do kill -INT "$i" 2>/dev/null || true; done
    for i in "${tpids[@]}"; do wait "$i" 2>/dev/null || true; done
    [[ -z $mitm ]] || stop_mitm
    stop_inline
    [[ -z $ttl0 ]] || nsx "$NS_O" sysctl -qw net.ipv4.ip_default_ttl="$ttl0"
    if [[ $group == quic ]]; then   # one key log with both ends' secrets (the server also has the
        stop_quic                   # 1-RTT secrets of a handshake that the client abandoned)
        { cat "$OUT/testbed-$group.keylog" "$T/quic-server.keylog" 2>/dev/null || true; } |
            awk '!seen[$0]++' >"$T/keylog.tmp"
        mv "$T/keylog.tmp" "$OUT/testbed-$group.keylog"
    fi
    unset SSLKEYLOGFILE MITMPROXY_SSLKEYLOGFILE

    if [[ ${#caps[@]} -gt 1 ]]; then
        "$PY" "$HERE/testbed/pcap_merge.py" "$pcap" "${caps[@]}"
    else
        cp "${caps[0]}" "$pcap"
    fi
    mv "$tsv.tmp" "$tsv"
    log "wrote $pcap ($(stat -c %s "$pcap") bytes) and $tsv"
    local summary="$OUT/testbed-$group.summary.txt" ok=1
    local kl=()
    [[ $group != quic ]] || kl=(--keylog "$OUT/testbed-$group.keylog")
    "$checkpy" "$HERE/testbed/pcap_tls_summary.py" "$pcap" --expect "$tsv" "${kl[@]}" "${checkargs[@]}" \
        >"$T/check-$group.txt" || ok=0
    {
        if [[ $group == quic ]]; then
            echo "# scripts/testbed.sh group $group: expected vs observed per QUIC flow (capture order);"
            echo "# one token per datagram: C/S = client/server, then its coalesced packets joined by '+':"
            echo "# I = Initial, H = Handshake, 1R = 1-RTT (short header); [frames] when decrypted (Initial:"
            echo "# keys from the client's DCID; Handshake/1-RTT: the key log), (n) = packet bytes otherwise."
            echo "# CC:code/ft=frame type/'reason' = CONNECTION_CLOSE 0x1c, APP_CC = 0x1d; datagram padding omitted."
            echo "# clients and server: $V_AIOQUIC (HTTP/3)"
        else
            echo "# scripts/testbed.sh group $group: expected vs observed per TCP session (capture order);"
            echo "# record sequence: C/S = client/server, hs = plaintext handshake, app/alert-enc = encrypted"
            echo "# record (TLSCiphertext.length), ALERT[..] = plaintext alert, FIN/RST = first of each per side."
            echo "# clients: $V_CURL | $V_SCLIENT | $V_PY | $V_JAVA; servers: $V_NGINX, openssl-s_server/${V_SCLIENT#*/}"
        fi
        if [[ -n $mitm ]]; then echo "# proxy: $V_MITM"; fi
        if [[ $group == inline ]]; then echo "# inline inspectors: $V_MITM (mitm/ rows) | $V_SQUID (squid/ rows)"; fi
        cat "$T/check-$group.txt"
    } >"$summary"
    if [[ $ok -eq 1 ]]; then
        log "group $group: all $(($(wc -l <"$tsv") - 1)) sessions match the expectations"
    else
        cat "$T/check-$group.txt" >&2
        log "group $group: capture DISAGREES with expectations (see above)"
        CHECK_FAILED=1
    fi
    [[ -z ${TESTBED_VERBOSE:-} ]] || cat "$T/check-$group.txt" >&2
}

# ---------------------------------------------------------------------------------------------
main() {
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    CHECK_FAILED=0
    versions
    log "versions: $V_CURL | $V_SCLIENT | $V_PY | $V_JAVA | $V_NGINX | $V_MITM | $V_AIOQUIC"
    make_pki
    mkdir -p "$T/java"
    javac -d "$T/java" -cp "$OKHTTP_CP" "$HERE/testbed/PinClient.java"
    setup_net
    start_servers
    local g
    for g in "${SCN_GROUPS[@]}"; do
        declare -p "SCENARIOS_$g" >/dev/null 2>&1 || { echo "testbed: unknown group $g" >&2; exit 2; }
        local -n tbl="SCENARIOS_$g"
        [[ ${#tbl[@]} -gt 0 ]] || { log "group $g: no scenarios, skipped"; continue; }
        if [[ $g == inspection || $g == fallback ]] && ! { [[ -x $MITMDUMP ]] && command -v iptables >/dev/null; }; then
            log "group $g SKIPPED: needs iptables and $MITMDUMP (python3 -m venv $PINWATCH_VENV && $PINWATCH_VENV/bin/pip install mitmproxy==11.0.2)"
            CHECK_FAILED=1
            continue
        fi
        if [[ $g == inline ]] && ! { [[ -x $MITMDUMP && -x $SQUID && -x $SQUID_CERTGEN ]] && command -v iptables >/dev/null; }; then
            log "group $g SKIPPED: needs iptables, $MITMDUMP and squid-openssl ($SQUID, $SQUID_CERTGEN)"
            CHECK_FAILED=1
            continue
        fi
        if [[ $g == quic && $V_AIOQUIC == aioquic/unavailable ]]; then
            log "group $g SKIPPED: needs aioquic and cryptography in $QUIC_PY (mitmproxy==11.0.2 in $PINWATCH_VENV pulls both in)"
            CHECK_FAILED=1
            continue
        fi
        run_group "$g"
    done
    log "done in $(( ($(date +%s%N) - START_NS) / 1000000 )) ms"
    if [[ $CHECK_FAILED -ne 0 && $STRICT -ne 0 ]]; then exit 1; fi
}

main
