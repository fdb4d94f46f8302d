#!/usr/bin/env bash
# Live capture benchmark (not a test): replay a real-stack capture onto a veth
# pair between two network namespaces with tcpreplay at rising packet rates,
# and for each sensor find the highest rate it takes with zero kernel drops and
# its CPU cost per packet. Sensors: pinwatch live (AF_PACKET) with 1 and 2
# workers, and the Suricata peer (AF_PACKET, workers runmode) with 1 and 2
# threads, measured in the same run; `pinwatchkb-N` is pinwatch with
# --kernel-bypass (the eBPF filter drops the packets of settled flows before
# the ring; they count as seen, from its stats, and the filter's own cost is
# spent in the kernel's receive path, which no sensor's cgroup is charged for,
# the ring copy included). Each sensor runs in its own cgroup with
# the same CPU quota, so that the sensor, not the sender, is the bottleneck.
#
#   scripts/live-bench.sh [--pcap FILE] [--rates "2000 5000 ..."] [--seconds S]
#                         [--quota PERCENT] [--per-worker] [--sensors "pinwatch-1 ..."]
#                         [--dir D]
#
# --per-worker: the quota is per worker (thread), so a sensor with N workers
# gets N x PERCENT: the way to compare 1 and 2 workers on a machine whose
# cores the sender already shares (each worker gets a slow "core" of its own).
# Without it, every sensor gets PERCENT in all, however many workers it runs.
#
# Needs root, network namespaces, tcpreplay (Debian tcpreplay), python3, cgroup
# v2 (cpu.max, cpu.stat) or v1 (cpu.cfs_quota_us, cpuacct.usage), a release
# build (cargo build --release -p pinwatch) and, for Suricata, the peer in
# ../shared/peers/suricata (its runtime libraries: see its README).
#
# CPU per packet: the cgroup's CPU time while the packets were sent (and one
# second after), less the sensor's idle cost over the same time (measured for
# two seconds before), divided by the packets sent. Drops: pinwatch's final
# stats record (stats.live.dropped, the kernel's PACKET_STATISTICS summed over
# the rings), Suricata's (stats.capture.kernel_drops). A rate counts as taken
# when the sensor saw every packet sent with no kernel drop.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PINWATCH=${PINWATCH:-$TARGET/release/pinwatch}
SURI_DIR=${SURICATA_DIR:-$ROOT/../shared/peers/suricata}
PCAP=$ROOT/pcaps/testbed-benign.pcap
RATES="2000 5000 10000 20000 40000 80000"
SECONDS_PER_RATE=4
QUOTA=25
PER_WORKER=0
SENSORS="pinwatch-1 pinwatch-2 suricata-1 suricata-2"
DIR=/tmp/pinwatch-live-bench
NS_T=pwafpacket-bt
NS_S=pwafpacket-bs
IF_T=pwafpacket-t0
IF_S=pwafpacket-s0
CG_NAME=pwafpacket-bench

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "live-bench.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --pcap) PCAP=${2:?}; shift 2 ;;
        --rates) RATES=${2:?}; shift 2 ;;
        --seconds) SECONDS_PER_RATE=${2:?}; shift 2 ;;
        --quota) QUOTA=${2:?}; shift 2 ;;
        --per-worker) PER_WORKER=1; shift ;;
        --sensors) SENSORS=${2:?}; shift 2 ;;
        --dir) DIR=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$QUOTA" =~ ^[1-9][0-9]*$ ]] || die "--quota is a percentage of one core"
[[ "$SECONDS_PER_RATE" =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"
[ "$(id -u)" = 0 ] || die "needs root (namespaces, cgroups, AF_PACKET)"
command -v tcpreplay >/dev/null || die "tcpreplay is not installed (apt-get install tcpreplay)"
[ -x "$PINWATCH" ] || die "no release build at $PINWATCH (cargo build --release -p pinwatch)"
[ -r "$PCAP" ] || die "cannot read $PCAP"
PCAP_PACKETS=$(tcpdump -nr "$PCAP" 2>/dev/null | wc -l)
[ "$PCAP_PACKETS" -gt 0 ] || die "$PCAP has no packets"
mkdir -p "$DIR"

# --- cgroups: v2 if mounted, else v1 (cpu + cpuacct) ---
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CGV=2
    CG=/sys/fs/cgroup/$CG_NAME
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
else
    CGV=1
    [ -d /sys/fs/cgroup/cpu ] && [ -d /sys/fs/cgroup/cpuacct ] || die "no cgroup v2 and no v1 cpu/cpuacct controllers"
    CG=/sys/fs/cgroup/cpu/$CG_NAME
    CGA=/sys/fs/cgroup/cpuacct/$CG_NAME
fi
# The cgroup, with the quota for a sensor of $1 workers.
cg_make() {
    local q=$QUOTA
    [ "$PER_WORKER" = 1 ] && q=$((QUOTA * ${1:-1}))
    if [ $CGV = 2 ]; then
        mkdir -p "$CG"; echo "$((q * 1000)) 100000" > "$CG/cpu.max"
    else
        mkdir -p "$CG" "$CGA"; echo 100000 > "$CG/cpu.cfs_period_us"; echo $((q * 1000)) > "$CG/cpu.cfs_quota_us"
    fi
}
# CPU time of the cgroup so far, nanoseconds.
cg_usage_ns() {
    if [ $CGV = 2 ]; then
        awk '/^usage_usec/ { print $2 * 1000 }' "$CG/cpu.stat"
    else
        cat "$CGA/cpuacct.usage"
    fi
}
cg_join_cmd() {
    if [ $CGV = 2 ]; then echo "echo \$\$ > $CG/cgroup.procs"; else echo "echo \$\$ > $CG/cgroup.procs; echo \$\$ > $CGA/cgroup.procs"; fi
}
cg_drop() {
    rmdir "$CG" 2>/dev/null || true
    [ $CGV = 1 ] && { rmdir "$CGA" 2>/dev/null || true; }
    return 0
}

SENSOR_PID=
cleanup() {
    [ -n "$SENSOR_PID" ] && kill -KILL "$SENSOR_PID" 2>/dev/null || true
    for ns in $NS_T $NS_S; do
        for p in $(ip netns pids $ns 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del $ns 2>/dev/null || true
    done
    sleep 0.2
    cg_drop
}
trap cleanup EXIT
cleanup

ip netns add $NS_T
ip netns add $NS_S
ip -n $NS_T link add $IF_T type veth peer name $IF_S netns $NS_S
for pair in "$NS_T $IF_T" "$NS_S $IF_S"; do
    set -- $pair
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.all.disable_ipv6=1"
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
done
cg_make

# Start a sensor in the cgroup and the sensor namespace; wait until it captures.
start_sensor() {
    local kind=$1 n=$2 out=$3
    rm -rf "$out"; mkdir -p "$out"
    cg_make "$n"
    case $kind in
    pinwatch|pinwatchkb)
        local kb=
        [ "$kind" = pinwatchkb ] && kb=--kernel-bypass
        sh -c "$(cg_join_cmd); exec ip netns exec $NS_S \"$PINWATCH\" live -i $IF_S --workers $n $kb --stats-interval 0 -o \"$out/eve.json\"" \
            >"$out/stdout" 2>"$out/stderr" &
        SENSOR_PID=$!
        wait_for "$out/stderr" "capturing on"
        ;;
    suricata)
        sh -c "$(cg_join_cmd); exec ip netns exec $NS_S \"$SURI_DIR/live.sh\" $IF_S \"$out\" $n" >"$out/stdout" 2>"$out/stderr" &
        SENSOR_PID=$!
        wait_for "$out/suricata.log" "engine started"
        ;;
    esac
}
wait_for() {
    local i
    for i in $(seq 1 300); do
        grep -qi "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "live-bench.sh: '$2' never appeared in $1:" >&2; cat "$1" >&2 || true
    exit 1
}
stop_sensor() {
    kill -INT "$SENSOR_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 300); do
        kill -0 "$SENSOR_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SENSOR_PID" 2>/dev/null || true
    wait "$SENSOR_PID" 2>/dev/null || true
    SENSOR_PID=
}
# "seen drops bypassed%" from the last stats record of an EVE file
# (bypassed%: pinwatch's share of packets of flows it no longer parses, in
# user space or, with --kernel-bypass, in the kernel).
final_counts() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
kind, path = sys.argv[1], sys.argv[2]
last = None
for line in open(path):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("event_type") == "stats":
        last = r["stats"]
if last is None:
    print("-1 -1 -"); sys.exit()
if kind.startswith("pinwatch"):
    live = last["live"]
    kernel = live.get("kernel_bypass", {}).get("packets", 0)
    share = 100 * (last["flow"]["bypassed_packets"] + kernel) / max(last["capture"]["packets"] + kernel, 1)
    print(live["received"] - live["dropped"] + kernel, live["dropped"], f"{share:.1f}")
else:
    cap = last.get("capture", {})
    print(cap.get("kernel_packets", 0) - cap.get("kernel_drops", 0), cap.get("kernel_drops", 0), "-")
EOF
}

RESULTS=$DIR/results.tsv
printf 'sensor\trate_pps\tsent\tseen\tkernel_drops\tcpu_us_per_packet\tidle_cpu_pct\tbypassed_pct\n' > "$RESULTS"
echo "live-bench: $(date -u +%FT%TZ), $(nproc) cores, quota ${QUOTA}% of one core per $([ "$PER_WORKER" = 1 ] && echo worker || echo sensor) (cgroup v$CGV), $PCAP ($PCAP_PACKETS packets) x loops, ${SECONDS_PER_RATE} s per rate"
for sensor in $SENSORS; do
    kind=${sensor%-*} n=${sensor##*-}
    if [ "$kind" = suricata ] && ! "$SURI_DIR/bin/suricata" -V >/dev/null 2>&1; then
        echo "live-bench: $sensor SKIPPED: $SURI_DIR/bin/suricata does not run (see its README)"; continue
    fi
    for rate in $RATES; do
        out=$DIR/$sensor-$rate
        start_sensor "$kind" "$n" "$out"
        sleep 1
        u0=$(cg_usage_ns); t0=$(date +%s%N)
        sleep 2
        u1=$(cg_usage_ns); t1=$(date +%s%N)
        loops=$(( (rate * SECONDS_PER_RATE + PCAP_PACKETS - 1) / PCAP_PACKETS ))
        sent=$(ip netns exec $NS_T tcpreplay -i $IF_T --pps="$rate" --loop="$loops" --unique-ip "$PCAP" 2>&1 | awk '/Actual:/ { print $2; exit }')
        sleep 1
        u2=$(cg_usage_ns); t2=$(date +%s%N)
        stop_sensor
        read -r seen drops bypassed < <(final_counts "$kind" "$out/eve.json")
        python3 - "$sensor" "$rate" "$sent" "$seen" "$drops" "$u0" "$u1" "$u2" "$t0" "$t1" "$t2" "$bypassed" >>"$RESULTS" <<'EOF'
import sys
s, rate, sent, seen, drops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0), int(sys.argv[4]), int(sys.argv[5])
u0, u1, u2, t0, t1, t2 = map(int, sys.argv[6:12])
bypassed = sys.argv[12]
idle_rate = (u1 - u0) / (t1 - t0)            # CPU ns per ns idle
busy = (u2 - u1) - idle_rate * (t2 - t1)
per = busy / sent / 1000 if sent else float("nan")
print(f"{s}\t{rate}\t{sent}\t{seen}\t{drops}\t{per:.2f}\t{idle_rate * 100:.2f}\t{bypassed}")
EOF
        tail -1 "$RESULTS" | awk -F'\t' '{ printf "  %-12s %7s pps: sent %8s seen %8s drops %6s  %6s us/packet (idle %s%%, bypassed %s%%)\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
        if [ "$drops" != 0 ] || [ "$seen" -lt "$sent" ]; then
            break   # higher rates only drop more
        fi
    done
done

echo
echo "highest rate with zero kernel drops (every packet seen), and CPU per packet at the lowest rate:"
python3 - "$RESULTS" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["sensor"], []).append(r)
for s, rs in by.items():
    ok = [int(r["rate_pps"]) for r in rs if r["kernel_drops"] == "0" and int(r["seen"]) >= int(r["sent"])]
    print(f"  {s:12s} max clean rate {max(ok) if ok else 0:>7} pps; {rs[0]['cpu_us_per_packet']} us/packet at {rs[0]['rate_pps']} pps")
EOF
echo "results: $RESULTS"
