#!/usr/bin/env bash
# How long the report page of 100k sessions takes to open (docs/report.md,
# "Page size and speed"). Generates EVE lines for N sessions (default
# 100,000: 60 apps, 800 devices, 3,000 destinations, 6 networks, about 12%
# of them rejected under inspection or going around it, with their alerts),
# runs `pinwatch report` on them, then loads the page in headless Chromium:
# the time to the DOM of the report minus the time to the DOM of an empty
# page (Chromium's own start), median of 5 runs each.
#
#   scripts/report-perf.sh [SESSIONS]        # PINWATCH=path/to/pinwatch, CHROMIUM=chromium
#
# A measurement, not a test: it prints figures and exits 0 unless a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
PINWATCH=${PINWATCH:-target/release/pinwatch}
CHROMIUM=${CHROMIUM:-chromium}
work=$(mktemp -d "${TMPDIR:-/tmp}/pinwatch-report-perf.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$N" "$work/eve.json" <<'EOF'
import json, random, sys
n, out = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(7)
apps = [f"com.example.app{i:02d}" for i in range(60)]
devices = [f"enterprises/perf/devices/d{i:04d}" for i in range(800)]
dests = [f"api{i}.svc{i % 97}.example{i % 13}.com" for i in range(3000)]
nets = [f"site-{i}" for i in range(6)]
t0 = 1_790_000_000
with open(out, "w") as f:
    for i in range(n):
        ts = t0 + i * 0.6
        stamp = __import__("time").strftime("%Y-%m-%dT%H:%M:%S", __import__("time").gmtime(ts)) + ".%06d+0000" % int((ts % 1) * 1e6)
        fid = 10_000_000 + i
        r = rnd.random()
        if r < 0.06:
            path, outcome, cls = "explicit_proxy", "client_rejected", rnd.choice("ABCDE")
        elif r < 0.12:
            path, outcome, cls = "direct", "established", None
        elif r < 0.14:
            path, outcome, cls = "unknown", "established", None
        elif r < 0.17:
            path, outcome, cls = "sanctioned_bypass", "established", None
        else:
            path, outcome, cls = "explicit_proxy", "established", None
        app, dev, dest = rnd.choice(apps), rnd.choice(devices), rnd.choice(dests)
        fail = {"outcome": outcome}
        if cls: fail["class"] = cls
        rec = {"timestamp": stamp, "flow_id": fid, "event_type": "tls", "src_ip": f"10.{rnd.randrange(6)}.{rnd.randrange(256)}.{rnd.randrange(1,255)}", "src_port": 40000,
               "dest_ip": "203.0.113.5", "dest_port": 443, "proto": "TCP", "tls": {"sni": dest}, "tls_failure": fail,
               "path": {"kind": path, "confidence": "high", "evidence": []},
               "mobile": {"device_id": dev, "binding": {"context": rnd.choice(nets)}, "app": {"package": app},
                          "app_state": rnd.choice(["foreground", "background"]), "baseline": {"approved": rnd.random() > 0.05, "sources": ["learned"]}}}
        f.write(json.dumps(rec) + "\n")
        if path == "direct" or cls:
            sid = 1725001 if cls else 1725002
            a = {"timestamp": stamp, "flow_id": fid, "event_type": "alert", "src_ip": rec["src_ip"], "dest_ip": "203.0.113.5", "tls": {"sni": dest},
                 "alert": {"signature_id": sid, "signature": "AN1725 perf", "severity": 2, "metadata": {"confidence": ["high"]}},
                 "evidence": {"reasons": ["perf"], "flow_ids": [fid]}}
            f.write(json.dumps(a) + "\n")
EOF
echo "eve: $(wc -l < "$work/eve.json") lines, $(du -h "$work/eve.json" | cut -f1)"
start=$(date +%s.%N)
"$PINWATCH" report "$work/eve.json" -o "$work/report"
echo "pinwatch report: $(echo "$(date +%s.%N) - $start" | bc) s"
echo "page: $(du -h "$work/report/report.html" | cut -f1)"
printf '<!doctype html><title>x</title>' > "$work/blank.html"

median_load() {
  local url=$1 times=()
  for _ in 1 2 3 4 5; do
    local s e
    s=$(date +%s.%N)
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile" --dump-dom "$url" >/dev/null 2>&1
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
blank=$(median_load "file://$work/blank.html")
page=$(median_load "file://$work/report/report.html")
echo "chromium --dump-dom, median of 5: empty page ${blank} s, report ${page} s"
echo "report page of $N sessions opens in $(echo "$page - $blank" | bc) s beyond Chromium's start"
