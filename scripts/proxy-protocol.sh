#!/usr/bin/env bash
# PROXY protocol capture: curl -> HAProxy (TCP mode, send-proxy / send-proxy-v2)
# -> nginx (listen ... ssl proxy_protocol), all on the loopback of one network
# namespace, captured on both legs with tcpdump.
#
#   sudo scripts/proxy-protocol.sh [OUT.pcap]   (default: pcaps/proxy-protocol.pcap)
#
# Writes OUT.pcap (both legs), OUT-minus-.pcap + .expected.tsv: one row per
# curl run (frontend port, PROXY version, SNI, the client leg's JA3 as
# tshark 4.0 reads it, the server certificate's SHA-256 as openssl prints it),
# which tests/tests/parser_gaps.rs checks pinwatch's backend-leg records against.
#
# Requirements (Debian bookworm): haproxy nginx-light tcpdump iproute2 openssl
# curl tshark. Nothing leaves the namespace: every address is 127.0.0.1.
set -euo pipefail
OUT=${1:-pcaps/proxy-protocol.pcap}
NS=pwparsers-pp
FE1=41871 FE2=41872 BE1=41881 BE2=41882   # HAProxy frontends (v1, v2) and nginx backends
SNI=backend.proxy.test

[[ $(id -u) -eq 0 ]] || { echo "proxy-protocol.sh: must run as root" >&2; exit 2; }
for t in ip tcpdump nginx haproxy openssl curl tshark; do
    command -v "$t" >/dev/null || { echo "proxy-protocol.sh: missing $t" >&2; exit 2; }
done
T=$(mktemp -d /tmp/pwparsers-pp.XXXXXX)
cleanup() {
    [[ -f $T/tcpdump.pid ]] && kill "$(cat "$T/tcpdump.pid")" 2>/dev/null || true
    [[ -f $T/haproxy.pid ]] && kill "$(cat "$T/haproxy.pid")" 2>/dev/null || true
    [[ -f $T/nginx.pid ]] && kill "$(cat "$T/nginx.pid")" 2>/dev/null || true
    sleep 0.3
    ip netns del $NS 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
ip netns del $NS 2>/dev/null || true
ip netns add $NS
ip -n $NS link set lo up
in_ns() { ip netns exec $NS "$@"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=$SNI" -addext "subjectAltName=DNS:$SNI" -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
CERT_SHA256=$(openssl x509 -in "$T/cert.pem" -outform DER | sha256sum | cut -d' ' -f1)

cat > "$T/nginx.conf" <<EOF
worker_processes 1;
pid $T/nginx.pid;
error_log $T/nginx-error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $T; proxy_temp_path $T; fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;
    server {
        listen 127.0.0.1:$BE1 ssl proxy_protocol;
        listen 127.0.0.1:$BE2 ssl proxy_protocol;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "ok \$proxy_protocol_addr\n"; }
    }
}
EOF
cat > "$T/haproxy.cfg" <<EOF
global
    pidfile $T/haproxy.pid
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend v1
    bind 127.0.0.1:$FE1
    default_backend nginx_v1
frontend v2
    bind 127.0.0.1:$FE2
    default_backend nginx_v2
backend nginx_v1
    server n1 127.0.0.1:$BE1 send-proxy
backend nginx_v2
    server n2 127.0.0.1:$BE2 send-proxy-v2
EOF
in_ns nginx -c "$T/nginx.conf"
in_ns haproxy -D -f "$T/haproxy.cfg"
in_ns tcpdump -i lo -U -s 0 -w "$T/cap.pcap" "tcp port $FE1 or tcp port $FE2 or tcp port $BE1 or tcp port $BE2" 2>/dev/null &
echo $! > "$T/tcpdump.pid"
sleep 1
for fe in $FE1 $FE2; do
    for tls in --tlsv1.2 --tlsv1.3; do
        max=${tls#--tlsv}
        echo "curl frontend $fe $tls" >&2
        in_ns curl -sS -o /dev/null --cacert "$T/cert.pem" --resolve "$SNI:$fe:127.0.0.1" "$tls" --tls-max "$max" \
            "https://$SNI:$fe/"
        sleep 0.3
    done
done
sleep 1
kill "$(cat "$T/tcpdump.pid")"; rm -f "$T/tcpdump.pid"
sleep 0.5
mkdir -p "$(dirname "$OUT")"
cp "$T/cap.pcap" "$OUT"
# The oracle: tshark reads the client legs (plain TLS, no PROXY header).
EXP=${OUT%.pcap}.expected.tsv
{
    printf 'client_port\tfrontend_port\tproxy_version\tsni\tja3\tcert_sha256\n'
    tshark -r "$OUT" -Y "tls.handshake.type==1 && (tcp.dstport==$FE1 || tcp.dstport==$FE2)" \
        -T fields -e tcp.srcport -e tcp.dstport -e tls.handshake.extensions_server_name -e tls.handshake.ja3 2>/dev/null |
    while IFS=$'\t' read -r cport fport sni ja3; do
        v=1; [[ $fport == "$FE2" ]] && v=2
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cport" "$fport" "$v" "$sni" "$ja3" "$CERT_SHA256"
    done
} > "$EXP"
echo "proxy-protocol.sh: wrote $OUT and $EXP ($(($(wc -l < "$EXP") - 1)) sessions)"
