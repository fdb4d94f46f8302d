#!/usr/bin/env bash
# Conformance against the shared corpus: replays every capture that has an
# independent oracle (tshark 4.0.17, FoxIO rust ja4, python cryptography)
# and prints the per-field agreement table.
#
#   scripts/conformance.sh                 # corpus at ../shared/corpus
#   PINWATCH_CORPUS=/path/to/corpus scripts/conformance.sh
#
# Full lists: target/conformance/{summary.txt,disagreements.tsv,per_capture.tsv,all_files.tsv}.
# Extra arguments go to the test binary (e.g. `corpus_conformance` to skip
# the every-file no-panic run).
# Without the corpus the tests fail (PINWATCH_CORPUS_REQUIRED=1) instead of
# printing SKIPPED, and a run that wrote no summary is a failure: this script
# never exits 0 having checked nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
export PINWATCH_CORPUS_REQUIRED=1
rm -f "$target/conformance/summary.txt"
cargo test --release -p pinwatch-tests --test corpus -- --nocapture --test-threads=1 "$@"
status=$?
if [ -f "$target/conformance/summary.txt" ]; then
  echo
  echo "================ per-field agreement (target/conformance/summary.txt) ================"
  cat "$target/conformance/summary.txt"
elif [ "$status" -eq 0 ]; then
  echo "conformance: no summary was written, so nothing was compared" >&2
  status=1
fi
exit $status
