#!/usr/bin/env bash
# Throughput and memory of pinwatch on a large, realistic egress capture, against
# the cost of walking the capture (pinwatch walk) and against tshark and ndpiReader
# doing the same job, all measured in the same run. See benches/README.md.
#
#   scripts/throughput.sh [--size 2G] [--dir /tmp/pinwatch-throughput] [--reps 3]
#                         [--flows 1000000] [--seed 1] [--tshark-size 200M] [--warmup 0]
#
# Needs: cargo, GNU time (/usr/bin/time). Uses when installed: tshark (package
# tshark), ndpiReader (package libndpi-bin). Captures are generated once into --dir
# and reused while size, seed and warm-up are unchanged.
set -euo pipefail

SIZE=2G
DIR=${PINWATCH_THROUGHPUT_DIR:-${TMPDIR:-/tmp}/pinwatch-throughput}
REPS=3
FLOWS=1000000
SEED=1
TSHARK_SIZE=200M
WARMUP=0

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "  --size S          size of the bulk capture (K/M/G suffixes, powers of 1024)"
    echo "  --dir D           where captures and outputs go"
    echo "  --reps N          runs per measurement; the median wall time is reported"
    echo "  --flows N         flows of the memory run (--concurrent-flows); 0 skips it"
    echo "  --seed N          generator seed"
    echo "  --tshark-size S   tshark runs on this prefix of the capture (same seed, smaller --size)"
    echo "  --warmup S        generator warm-up seconds (capture opens with transfers in progress)"
}

die() { echo "throughput.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
        --reps) REPS=${2:?--reps needs a value}; shift 2 ;;
        --flows) FLOWS=${2:?--flows needs a value}; shift 2 ;;
        --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
        --tshark-size) TSHARK_SIZE=${2:?--tshark-size needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
[[ "$FLOWS" =~ ^[0-9]+$ ]] || die "--flows must be a non-negative integer"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"
[[ "$SIZE" =~ ^[0-9]+[KMGTkmgt]?$ ]] || die "--size must look like 500M or 2G"
[[ "$TSHARK_SIZE" =~ ^[0-9]+[KMGTkmgt]?$ ]] || die "--tshark-size must look like 200M"
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PINWATCH=$TARGET/release/pinwatch
GENCAP=$TARGET/release/gencap
mkdir -p "$DIR"

to_bytes() { # 2G -> bytes (powers of 1024, as gencap)
    local n=${1%[KMGTkmgt]} s=${1: -1}
    case "$s" in
        K|k) echo $((n << 10)) ;; M|m) echo $((n << 20)) ;; G|g) echo $((n << 30)) ;; T|t) echo $((n << 40)) ;;
        *) echo "$n" ;;
    esac
}

# ---------------------------------------------------------------- build
echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release -q -p pinwatch --bin pinwatch && cargo build --release -q -p pinwatch-benches --bin gencap)
"$PINWATCH" walk --help >/dev/null 2>&1 \
    || die "this pinwatch has no 'walk' subcommand (the baseline); build a tree that has it"
"$PINWATCH" replay --help 2>/dev/null | grep -q -- '--threads' \
    || die "this pinwatch replay has no --threads option; build a tree that has it"

# ---------------------------------------------------------------- captures
# gen NAME ARGS... : generate $DIR/NAME.pcap unless NAME.json records the same arguments
gen() {
    local name=$1; shift
    local pcap=$DIR/$name.pcap meta=$DIR/$name.json args="$*"
    if [[ -s "$pcap" && -s "$meta" ]] && grep -qxF "args: $args" "$meta"; then
        echo "== reusing $pcap" >&2
    else
        echo "== generating $pcap ($args)" >&2
        rm -f "$pcap" "$meta"
        "$GENCAP" --out "$pcap" "$@" 2> "$DIR/$name.gen.err" || { cat "$DIR/$name.gen.err" >&2; die "gencap failed"; }
        { echo "args: $args"; tail -n 1 "$DIR/$name.gen.err"; } > "$meta"
    fi
}
BULK=egress-$SIZE-seed$SEED-warmup$WARMUP
gen "$BULK" --size "$SIZE" --seed "$SEED" --warmup "$WARMUP"
CAP=$DIR/$BULK.pcap
TS_CAP=$CAP
if (( $(to_bytes "$TSHARK_SIZE") < $(to_bytes "$SIZE") )); then
    # same seed and arguments, smaller size: byte for byte a prefix of $CAP
    PREFIX=egress-$TSHARK_SIZE-seed$SEED-warmup$WARMUP
    gen "$PREFIX" --size "$TSHARK_SIZE" --seed "$SEED" --warmup "$WARMUP"
    TS_CAP=$DIR/$PREFIX.pcap
fi
if (( FLOWS > 0 )); then
    FLOWCAP_NAME=flows-$FLOWS-seed$SEED
    gen "$FLOWCAP_NAME" --concurrent-flows "$FLOWS" --seed "$SEED"
fi

# ---------------------------------------------------------------- measuring
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else printf "%.6f\n", (v[NR/2]+v[NR/2+1])/2}'; }
json_num() { grep -o "\"$1\":[0-9.eE+-]*" | head -n 1 | cut -d: -f2; } # json_num KEY < line

# measure LABEL STDOUT CMD...: run CMD $REPS times; sets SECS (median wall seconds) and RSS_KB (max peak RSS)
measure() {
    local label=$1 out=$2; shift 2
    local times=() rss=0 i t0 t1 r
    for ((i = 1; i <= REPS; i++)); do
        t0=$(date +%s%N)
        if ! /usr/bin/time -f '%M' -o "$DIR/$label.rss" "$@" > "$out" 2> "$DIR/$label.err"; then
            cat "$DIR/$label.err" >&2
            die "$label failed: $*"
        fi
        t1=$(date +%s%N)
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", (b - a) / 1e9}')")
        r=$(tail -n 1 "$DIR/$label.rss")
        if (( r > rss )); then rss=$r; fi
        echo "   $label run $i: ${times[-1]} s, peak RSS $((r / 1024)) MB" >&2
    done
    SECS=$(printf '%s\n' "${times[@]}" | median)
    RSS_KB=$rss
}

ROWS=()   # "tool|threads|seconds|bytes|packets|sessions|rss_kb"
declare -A PW_TLS PW_FLOWS
add_row() { ROWS+=("$1|$2|$3|$4|$5|$6|$7"); }

# Every tool starts from the page cache, in the same state: the files are
# dropped from the cache (no root needed: dd's nocache asks the kernel with
# posix_fadvise) and read back in one sequential pass, so that the kernel
# holds them in large folios. Left in whatever pieces earlier reads made,
# the same file can take twice as many page faults to map, which moves the
# walk's time by half and the others' by less (seen on this machine).
warm() {
    local f
    for f in "$@"; do
        dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true
        cat "$f" > /dev/null
    done
}
warm "$CAP" "$TS_CAP"

# The walk and the two pinwatch runs take turns, REPS rounds of the three, so
# that a slow spell of this shared machine hits all three alike.
declare -A TIMES RSSMAX
run_once() { # LABEL STDOUT CMD...
    local label=$1 out=$2; shift 2
    local t0 t1 r secs
    t0=$(date +%s%N)
    if ! /usr/bin/time -f '%M' -o "$DIR/$label.rss" "$@" > "$out" 2> "$DIR/$label.err"; then
        cat "$DIR/$label.err" >&2
        die "$label failed: $*"
    fi
    t1=$(date +%s%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", (b - a) / 1e9}')
    TIMES[$label]+="$secs "
    r=$(tail -n 1 "$DIR/$label.rss")
    if (( r > ${RSSMAX[$label]:-0} )); then RSSMAX[$label]=$r; fi
    echo "   $label: $secs s, peak RSS $((r / 1024)) MB" >&2
}
echo "== pinwatch walk (baseline), replay --threads 1 and --threads 2, $REPS rounds" >&2
for ((i = 1; i <= REPS; i++)); do
    run_once walk "$DIR/walk.out" "$PINWATCH" walk "$CAP"
    for th in 1 2; do
        run_once "replay$th" /dev/null "$PINWATCH" replay "$CAP" --threads "$th" --quiet -o "$DIR/replay$th.eve.json"
    done
done
median_of() { tr ' ' '\n' <<<"${TIMES[$1]}" | grep . | median; }
W=$(tail -n 1 "$DIR/walk.out")
CAP_BYTES=$(json_num bytes <<<"$W")
CAP_PACKETS=$(json_num packets <<<"$W")
[[ -n "$CAP_BYTES" && -n "$CAP_PACKETS" ]] || die "unexpected walk output: $W"
WALK_SECS=$(median_of walk)
add_row "pinwatch walk" 1 "$WALK_SECS" "$CAP_BYTES" "$CAP_PACKETS" "" "${RSSMAX[walk]}"
for th in 1 2; do
    STATS=$(tail -n 1 "$DIR/replay$th.eve.json")
    grep -q '"event_type":"stats"' <<<"$STATS" || die "no stats record at the end of $DIR/replay$th.eve.json"
    FLOWS_CREATED=$(json_num flows_created <<<"$STATS")
    TLS_LOGGED=$(json_num tls_records_logged <<<"$STATS")
    add_row "pinwatch replay" "$th" "$(median_of "replay$th")" "$CAP_BYTES" "$CAP_PACKETS" "$FLOWS_CREATED" "${RSSMAX[replay$th]}"
    PW_TLS[$th]=$TLS_LOGGED
    PW_FLOWS[$th]=$FLOWS_CREATED
done
grep -v '"event_type":"stats"' "$DIR/replay1.eve.json" > "$DIR/replay1.nostats.json"
grep -v '"event_type":"stats"' "$DIR/replay2.eve.json" > "$DIR/replay2.nostats.json"
if cmp -s "$DIR/replay1.nostats.json" "$DIR/replay2.nostats.json"; then
    SAME="identical (except the stats record)"
else
    SAME="DIFFERENT: diff $DIR/replay1.nostats.json $DIR/replay2.nostats.json"
fi

NDPI_NOTE="ndpiReader: not installed (Debian: apt-get install libndpi-bin)"
if command -v ndpiReader >/dev/null 2>&1; then
    echo "== ndpiReader" >&2
    # -i FILE: read the pcap, classify every flow (DPI on up to 80 packets per TCP flow, the
    # default), print the summary (no per-flow dump without -v) and quit. Single-threaded on files.
    measure ndpi "$DIR/ndpi.out" ndpiReader -i "$CAP"
    NDPI_FLOWS=$(grep -m1 'Unique flows:' "$DIR/ndpi.out" | awk '{print $3}')
    add_row "ndpiReader" 1 "$SECS" "$CAP_BYTES" "$CAP_PACKETS" "${NDPI_FLOWS:-}" "$RSS_KB"
    NDPI_NOTE="ndpiReader: $({ ndpiReader -h 2>&1 || true; } | grep -m1 -o 'nDPI [0-9.]*' || echo '?'), whole capture, flows = its 'Unique flows'"
fi

TSHARK_NOTE="tshark: not installed (Debian: apt-get install tshark)"
if command -v tshark >/dev/null 2>&1; then
    TS_WALK=$("$PINWATCH" walk "$TS_CAP" | tail -n 1)
    TS_BYTES=$(json_num bytes <<<"$TS_WALK")
    TS_PACKETS=$(json_num packets <<<"$TS_WALK")
    echo "== tshark on $(basename "$TS_CAP")" >&2
    measure tshark "$DIR/tshark.out" tshark -n -r "$TS_CAP" -Y 'tls.handshake.type == 1' \
        -T fields -e tls.handshake.extensions_server_name -e tls.handshake.ja3
    TS_HELLOS=$(wc -l < "$DIR/tshark.out")
    label="tshark"
    if [[ "$TS_CAP" != "$CAP" ]]; then label="tshark ($TSHARK_SIZE prefix)"; fi
    add_row "$label" 1 "$SECS" "$TS_BYTES" "$TS_PACKETS" "$TS_HELLOS" "$RSS_KB"
    TSHARK_NOTE="tshark: $(tshark -v 2>/dev/null | head -n 1 | sed "s/\.$//"), ClientHello SNI + JA3 (-Y 'tls.handshake.type == 1' -T fields), sessions = ClientHellos"
    if [[ "$TS_CAP" != "$CAP" ]]; then TSHARK_NOTE+="; run on the first $TSHARK_SIZE of the capture (a byte-exact prefix), compared per byte"; fi
fi

if (( FLOWS > 0 )); then
    FCAP=$DIR/$FLOWCAP_NAME.pcap
    warm "$FCAP"
    echo "== memory: $FLOWS concurrent flows" >&2
    measure flowswalk "$DIR/flowswalk.out" "$PINWATCH" walk "$FCAP"
    FWALK_RSS=$RSS_KB
    # one run; the EVE lines go through a pipe and only the stats record is kept
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$DIR/flows.rss" "$PINWATCH" replay "$FCAP" --threads 1 --quiet \
        --max-flows "$((FLOWS + 1000))" 2> "$DIR/flows.err" | tail -n 1 > "$DIR/flows.stats.json" \
        || { cat "$DIR/flows.err" >&2; die "memory run failed"; }
    t1=$(date +%s%N)
    FLOWS_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", (b - a) / 1e9}')
    FLOWS_RSS=$(tail -n 1 "$DIR/flows.rss")
    FSTATS=$(cat "$DIR/flows.stats.json")
    F_ACTIVE=$(json_num flows_active_max <<<"$FSTATS")
    F_BUFS=$(json_num flow_buffers_max <<<"$FSTATS")
    [[ -n "$F_ACTIVE" ]] || die "no stats record from the memory run ($DIR/flows.stats.json)"
fi

# ---------------------------------------------------------------- report
echo
echo "pinwatch throughput — $(date -u +%Y-%m-%dT%H:%M:%SZ), pinwatch $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo "capture: $CAP"
echo "  $(tail -n 1 "$DIR/$BULK.json")"
echo "  $CAP_PACKETS packets, $CAP_BYTES packet bytes; every tool reads it from the page cache; median of $REPS runs (wall time)"
echo
printf '%-28s %7s %10s %8s %9s %12s %11s %8s\n' tool threads median_s Gbit/s Mpkt/s sessions/s peak_RSS_MB vs_walk
WALK_BPS=$(awk -v b="$CAP_BYTES" -v s="$WALK_SECS" 'BEGIN {print b / s}')
declare -A BPS
for row in "${ROWS[@]}"; do
    IFS='|' read -r tool th secs bytes pkts sess rss <<<"$row"
    bps=$(awk -v b="$bytes" -v s="$secs" 'BEGIN {print b / s}')
    BPS["$tool/$th"]=$bps
    awk -v tool="$tool" -v th="$th" -v s="$secs" -v b="$bytes" -v p="$pkts" -v n="$sess" -v r="$rss" -v w="$WALK_BPS" 'BEGIN {
        ses = (n == "") ? "-" : sprintf("%.0f", n / s)
        printf "%-28s %7s %10.3f %8.2f %9.2f %12s %11.0f %8.3f\n", tool, th, s, b * 8 / s / 1e9, p / s / 1e6, ses, r / 1024, (b / s) / w
    }'
done
echo
ratio() { awk -v a="${BPS[$1]:-}" -v b="${BPS[$2]:-}" 'BEGIN {if (a == "" || b == "") print "n/a"; else printf "%.2f", a / b}'; }
echo "throughput ratios (bytes per second):"
echo "  pinwatch 1 thread / ndpiReader : $(ratio 'pinwatch replay/1' 'ndpiReader/1')"
TSKEY=$(for k in "${!BPS[@]}"; do [[ $k == tshark* ]] && echo "$k"; done | head -n 1)
echo "  pinwatch 1 thread / tshark     : $(ratio 'pinwatch replay/1' "${TSKEY:-none}")"
echo "  pinwatch 2 threads / 1 thread  : $(ratio 'pinwatch replay/2' 'pinwatch replay/1')"
echo "  pinwatch 1 thread / walk       : $(ratio 'pinwatch replay/1' 'pinwatch walk/1')"
echo
echo "pinwatch --threads 1 vs --threads 2 output: $SAME"
echo "pinwatch sessions: flows_created ${PW_FLOWS[1]}, tls records ${PW_TLS[1]} (generator: $(json_num sessions < "$DIR/$BULK.json") sessions with a SYN + $(json_num sessions_midstream < "$DIR/$BULK.json") mid-stream)"
echo "$NDPI_NOTE"
echo "$TSHARK_NOTE"
echo "peak RSS (GNU time %M) includes the pages of the memory-mapped capture that pinwatch touched; see walk"
if (( FLOWS > 0 )); then
    echo
    echo "memory: $FLOWS concurrent TLS flows ($FCAP, --threads 1 --max-flows $((FLOWS + 1000)))"
    echo "  $(tail -n 1 "$DIR/$FLOWCAP_NAME.json")"
    awk -v r="$FLOWS_RSS" -v w="$FWALK_RSS" -v n="$F_ACTIVE" -v fb="$F_BUFS" -v s="$FLOWS_SECS" 'BEGIN {
        printf "  flows_active_max %d, %.2f s (one run), peak RSS %.0f MB, walk of the same file %.0f MB\n", n, s, r / 1024, w / 1024
        if (n > 0) printf "  RSS per tracked flow: %.0f B ((peak - walk) / flows); flow buffers (stats flow_buffers_max) %.0f B per flow\n", (r - w) * 1024 / n, fb / n
    }'
fi
