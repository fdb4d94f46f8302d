#!/usr/bin/env bash
# Classification summary: every testbed session (expected vs pinwatch's
# outcome/class and path) and the outcome table over the shared corpus.
#   scripts/classification.sh                       # stored captures
#   PINWATCH_TESTBED_DIR=/tmp/fresh scripts/classification.sh   # plus a fresh testbed run
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p pinwatch-tests --test testbed --test classification --test loss -- --nocapture --test-threads=1 2>&1 \
  | grep -vE '^\s+(Compiling|Finished|Running)'
