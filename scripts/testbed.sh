#!/usr/bin/env bash
# pinwatch scenario testbed: real TLS stacks in Linux network namespaces, captured at an egress tap.
#
#   sudo scripts/testbed.sh [OUTDIR] [GROUP...]   (default OUTDIR: pcaps/, groups: basic inspection fallback quic)
#
# For each scenario group it writes OUTDIR/testbed-<group>.pcap and OUTDIR/testbed-<group>.expected.tsv
# (one row per TCP session or QUIC flow, in capture order) and checks every row against the capture with
# scripts/testbed/pcap_tls_summary.py. Exit status 1 if the wire disagrees with the expectations
# (set TESTBED_STRICT=0 to keep going).
#
# Topology (all addresses 10.77.0.0/16, nothing leaves the namespaces):
#
#   pw-client 10.77.1.2 --[pwc0|pwr-c]-- pw-router 10.77.1.1 / 10.77.2.1 --[pwr-o|pwo0]-- pw-origin 10.77.2.2-.5
#                                       (tcpdump tap on pwr-o; the inspection group also taps pwr-c
#                                        because the proxy runs in pw-router; the fallback group taps
#                                        only pwr-c, so each client session appears once; the quic
#                                        group taps pwr-o, UDP)
#
# Requirements (Debian bookworm): nginx-light tcpdump iproute2 iptables ethtool openssl curl python3
# openjdk-17 libokhttp-java; mitmproxy 11.0.2 in /opt/pinwatch-venv (or $MITMDUMP) for "inspection" and
# "fallback"; "quic" uses the aioquic that mitmproxy 11.0.2 pulls into the same venv (python: $QUIC_PY).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-pcaps/}
shift || true
SCN_GROUPS=("$@")
[[ ${#SCN_GROUPS[@]} -gt 0 ]] || SCN_GROUPS=(basic inspection fallback quic)
STRICT=${TESTBED_STRICT:-1}
GAP=${TESTBED_GAP:-0.2}
MITMDUMP=${MITMDUMP:-/opt/pinwatch-venv/bin/mitmdump}
QUIC_PY=${QUIC_PY:-$(dirname "$MITMDUMP")/python3}   # python with aioquic + cryptography (quic group)
PY=/usr/bin/python3
OKHTTP_CP=/usr/share/java/okhttp.jar:/usr/share/java/okio.jar

NS_C=pw-client NS_R=pw-router NS_O=pw-origin
C_IP=10.77.1.2 R_CIP=10.77.1.1 R_OIP=10.77.2.1 O_IP13=10.77.2.2 O_IP12=10.77.2.3
O_IPFB=10.77.2.4 O_IPPLAIN=10.77.2.5   # fallback group: TLS 1.3 origin never proxied; plain HTTP on :443
PROXY_PORT=8080 TPROXY_PORT=8081
QUIC_PORT=443 QUIC_PORT_LEAF=8443   # quic group, UDP on $O_IPFB: full chain | leaf only
FALLBACK_TRIES=2   # fallback group: attempts through the proxy before the client goes direct
WRONG_PIN=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=   # base64 of 32 zero bytes

[[ $(id -u) -eq 0 ]] || { echo "testbed.sh: must run as root (network namespaces)" >&2; exit 2; }
for t in ip tcpdump nginx openssl curl "$PY" java javac keytool; do
    command -v "$t" >/dev/null || { echo "testbed.sh: missing $t" >&2; exit 2; }
done

# one run at a time (the namespace names are fixed)
exec 9>/run/lock/pinwatch-testbed.lock
flock -n 9 || { echo "testbed.sh: another testbed run is active" >&2; exit 2; }
# temp dirs of earlier runs that were killed before their trap could run
rm -rf /tmp/pw-testbed.??????
T=$(mktemp -d /tmp/pw-testbed.XXXXXX)
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
    if [[ -n ${TESTBED_KEEP_TMP:-} ]]; then echo "testbed: temp dir kept: $T" >&2; else rm -rf "$T"; fi
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
    nsx "$NS_R" ip addr add "$R_CIP/24" dev pwr-c
    nsx "$NS_R" ip addr add "$R_OIP/24" dev pwr-o
    nsx "$NS_O" ip addr add "$O_IP13/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IP12/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IPFB/24" dev pwo0
    nsx "$NS_O" ip addr add "$O_IPPLAIN/24" dev pwo0
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
events { worker_connections 64; }
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
# Clients (pw-client). Each runner: <sni> <port> <via> <trust> [args...]
# ($ROW_IP is the row's server_ip, for rows without an SNI)
# ---------------------------------------------------------------------------------------------
run_curl() {
    local sni=$1 port=$2 via=$3 trust=$4; shift 4
    local a=(-sS -o /dev/null -w 'curl: %{http_code} ssl_verify=%{ssl_verify_result}\n' --max-time 10
             --cacert "$(cafile_for "$trust")")
    local x
    for x in "$@"; do
        case $x in
            pin=origin) a+=(--pinnedpubkey "sha256//$ORIGIN_PIN") ;;
            pin=wrong) a+=(--pinnedpubkey "sha256//$WRONG_PIN") ;;
            *) a+=("$x") ;;
        esac
    done
    [[ $via == explicit ]] && a+=(-x "http://$R_CIP:$PROXY_PORT")
    if [[ $via == fallback ]]; then   # app-style retry loop: N tries through the proxy, then direct
        local try rc
        for try in $(seq 1 "$FALLBACK_TRIES"); do
            rc=0
            nsx "$NS_C" curl "${a[@]}" -x "http://$R_CIP:$PROXY_PORT" "https://$sni:$port/" || rc=$?
            echo "curl: try $try via proxy: exit $rc"
        done
        echo "curl: try $((FALLBACK_TRIES + 1)) direct:"
    fi
    nsx "$NS_C" curl "${a[@]}" "https://$sni:$port/"
}

run_sclient() {
    local sni=$1 port=$2 via=$3 trust=$4; shift 4
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
    local a=()
    case $mode in
        pin=origin) a=(pin "https://$sni:$port/" "sha256/$ORIGIN_PIN") ;;
        pin=wrong) a=(pin "https://$sni:$port/" "sha256/$WRONG_PIN") ;;
        fallback=origin) a=(fallback "https://$sni:$port/" "sha256/$ORIGIN_PIN" "$R_CIP:$PROXY_PORT" "$FALLBACK_TRIES") ;;
        *) a=("$mode" "https://$sni:$port/") ;;
    esac
    [[ $via == explicit ]] && a+=("$R_CIP:$PROXY_PORT")
    nsx "$NS_C" java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
        -Djavax.net.ssl.trustStore="$PKI/trust-$trust.p12" -Djavax.net.ssl.trustStorePassword=changeit \
        -Djavax.net.ssl.trustStoreType=PKCS12 -cp "$T/java:$OKHTTP_CP" PinClient "${a[@]}"
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
    V_JAVA="okhttp/$(dpkg-query -W -f='${Version}' libokhttp-java 2>/dev/null | cut -d- -f1)+JSSE/$(java -version 2>&1 | awk -F'"' 'NR==1{print $2}')"
    V_MITM=mitmproxy/unavailable
    if [[ -x $MITMDUMP ]]; then
        local mv
        mv=$("$MITMDUMP" --version 2>/dev/null || true)
        V_MITM="mitmproxy/$(awk '/^Mitmproxy/{print $2}' <<<"$mv")+$(awk '/^OpenSSL/{print $2"/"$3}' <<<"$mv")"
    fi
    V_NGINX=$(nginx -v 2>&1 | awk '{print $3}')
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
run_group() {
    local group=$1
    local -n table="SCENARIOS_$group"
    local pcap="$OUT/testbed-$group.pcap" tsv="$OUT/testbed-$group.expected.tsv"
    local line label via sni ip port client sessions
    log "group $group: ${#table[@]} client actions"

    for line in "${table[@]}"; do
        IFS='|' read -r label via sni ip port client sessions <<<"$line"
        [[ $(trim "$sni") == - ]] || add_host "$(trim "$sni")" "$(trim "$ip")"
    done

    # TLS secrets of the clients that support a key log (curl, python, mitmproxy; not JSSE, not
    # s_client) so the encrypted records can be opened in Wireshark
    rm -f "$OUT/testbed-$group.keylog"
    export SSLKEYLOGFILE="$OUT/testbed-$group.keylog" MITMPROXY_SSLKEYLOGFILE="$OUT/testbed-$group.keylog"
    local ifaces=(pwr-o) mitm='' checkpy=$PY
    case $group in
        inspection) ifaces=(pwr-c pwr-o) mitm=full ;;
        fallback) ifaces=(pwr-c) mitm=explicit ;;   # client side only: every session once, client 10.77.1.2
        quic) checkpy=$QUIC_PY ;;   # the checker decrypts QUIC packets (cryptography)
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
    for line in "${table[@]}"; do
        IFS='|' read -r label via sni ip port client sessions <<<"$line"
        label=$(trim "$label") via=$(trim "$via") sni=$(trim "$sni") ip=$(trim "$ip") port=$(trim "$port")
        local cargs
        read -r -a cargs <<<"$client"
        local runner=${cargs[0]}
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
    "$checkpy" "$HERE/testbed/pcap_tls_summary.py" "$pcap" --expect "$tsv" "${kl[@]}" >"$T/check-$group.txt" || ok=0
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
            log "group $g SKIPPED: needs iptables and $MITMDUMP (python3 -m venv /opt/pinwatch-venv && /opt/pinwatch-venv/bin/pip install mitmproxy==11.0.2)"
            CHECK_FAILED=1
            continue
        fi
        if [[ $g == quic && $V_AIOQUIC == aioquic/unavailable ]]; then
            log "group $g SKIPPED: needs aioquic and cryptography in $QUIC_PY (mitmproxy==11.0.2 in /opt/pinwatch-venv pulls both in)"
            CHECK_FAILED=1
            continue
        fi
        run_group "$g"
    done
    log "done in $(( ($(date +%s%N) - START_NS) / 1000000 )) ms"
    if [[ $CHECK_FAILED -ne 0 && $STRICT -ne 0 ]]; then exit 1; fi
}

main
