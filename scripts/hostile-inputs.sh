#!/usr/bin/env bash
# Make the hostile inputs of issue 17 items 5 and 7 in DIR (default
# /tmp/pinwatch-hostile) and run the release binary on each under
# /usr/bin/time -v, printing exit status, peak RSS and wall time:
#   bomb-zeros.pcap.gz   5 GiB of zeros, gzip'd (~5 MB): not a capture magic
#   bomb-framed.pcap.gz  a pcap header, then 5 GiB of zeros, gzip'd: past the 4 GiB cap
#   /dev/zero as capture, config (-c), feed (--feed), CA file, and on stdin
# Usage: scripts/hostile-inputs.sh [DIR] [PINWATCH]
set -euo pipefail
dir=${1:-${TMPDIR:-/tmp}/pinwatch-hostile}
bin=${2:-target/release/pinwatch}
mkdir -p "$dir"
good=pcaps/testbed-basic.pcap
if [ ! -s "$dir/bomb-zeros.pcap.gz" ]; then
  head -c 5G /dev/zero | gzip -1 > "$dir/bomb-zeros.pcap.gz"
fi
if [ ! -s "$dir/bomb-framed.pcap.gz" ]; then
  { head -c 24 "$good"; head -c 5G /dev/zero; } | gzip -1 > "$dir/bomb-framed.pcap.gz"
fi
printf '[inspection]\nca_certificates = ["/dev/zero"]\n' > "$dir/ca-zero.toml"
run() {
  local name=$1; shift
  local log="$dir/$name.time"
  set +e
  /usr/bin/time -v "$@" > /dev/null 2> "$log"
  local rc=$?
  set -e
  printf '%-22s exit %s  peak RSS %8s KB  wall %s  %s\n' "$name" "$rc" \
    "$(awk -F': ' '/Maximum resident/ {print $2}' "$log")" \
    "$(awk -F'): ' '/Elapsed/ {print $2}' "$log")" \
    "$(grep -m1 '^pinwatch:' "$log" | cut -c1-110)"
}
run bomb-zeros "$bin" replay --quiet "$dir/bomb-zeros.pcap.gz"
run bomb-framed "$bin" replay --quiet "$dir/bomb-framed.pcap.gz"
run replay-dev-zero "$bin" replay --quiet /dev/zero
run config-dev-zero "$bin" replay --quiet -c /dev/zero "$good"
run ca-dev-zero "$bin" replay --quiet -c "$dir/ca-zero.toml" "$good"
run feed-dev-zero "$bin" replay --quiet --feed /dev/zero "$good"
run stdin-zeros sh -c "head -c 6G /dev/zero | $bin replay --quiet -"
