#!/usr/bin/env bash
# Are the records byte-identical between two revisions? For refactors that
# must not change behaviour (issue 20): builds `pinwatch` at both revisions,
# replays every capture in pcaps/ (with its config and feed, as the tests do)
# and every capture of the shared corpus with each, and compares the output
# files byte for byte.
#
#   scripts/same-output.sh OLD_REV [NEW_REV]     (NEW_REV default: the work tree)
#
# Env: PINWATCH_CORPUS (default ../shared/corpus beside the repo),
#      SAME_OUTPUT_DIR (default: a new mktemp -d; kept for inspection),
#      SAME_OUTPUT_TARGET (cargo target dir for the old build; default
#      target/same-output).
# Exit 0: every output identical and at least one capture compared;
# 1: a difference (listed); 2: usage or build error.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
old=${1:?usage: scripts/same-output.sh OLD_REV [NEW_REV]}
new=${2:-}
corpus=${PINWATCH_CORPUS:-$repo/../shared/corpus}
work=${SAME_OUTPUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pinwatch-same-output.XXXXXX")}
mkdir -p "$work"

build() { # rev label -> path of the binary
  local rev=$1 label=$2 tree target
  if [ -z "$rev" ]; then
    (cd "$repo" && cargo build -q -p pinwatch --locked) >&2 || exit 2
    echo "${CARGO_TARGET_DIR:-$repo/target}/debug/pinwatch"
    return
  fi
  tree="$work/tree-$label"
  rm -rf "$tree"
  git -C "$repo" worktree add -q --detach "$tree" "$rev" >&2 || exit 2
  target=${SAME_OUTPUT_TARGET:-$repo/target/same-output}
  (cd "$tree" && CARGO_TARGET_DIR="$target/$label" cargo build -q -p pinwatch --locked) >&2 || exit 2
  cp "$target/$label/debug/pinwatch" "$work/pinwatch-$label"
  git -C "$repo" worktree remove --force "$tree" >&2
  echo "$work/pinwatch-$label"
}

old_bin=$(build "$old" old)
new_bin=$(build "$new" new)
echo "old: $old ($old_bin)"
echo "new: ${new:-work tree} ($new_bin)"

# The captures: pcaps/*.pcap with testbed-<group>.toml / testbed.toml and a
# feed beside them, then every capture file of the corpus with defaults.
list="$work/captures.tsv"
: > "$list"
for p in "$repo"/pcaps/*.pcap; do
  g=$(basename "$p" .pcap)
  cfg="$repo/pcaps/$g.toml"; [ -f "$cfg" ] || cfg="$repo/pcaps/testbed.toml"
  feed="$repo/pcaps/$g.feed.jsonl"; [ -f "$feed" ] || feed=""
  printf '%s\t%s\t%s\n' "$p" "$cfg" "$feed" >> "$list"
done
if [ -d "$corpus" ]; then
  find "$corpus" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' -o -name '*.pcap.gz' -o -name '*.pcapng.gz' \) \
    -not -path '*/oracle/*' | LC_ALL=C sort | while read -r p; do printf '%s\t\t\n' "$p"; done >> "$list"
else
  echo "corpus: not found at $corpus (only pcaps/ compared)"
fi

same=0; diff=0; n=0
while IFS=$'\t' read -r p cfg feed; do
  n=$((n + 1))
  args=(replay --quiet --threads 1 "$p")
  [ -n "$cfg" ] && args+=(-c "$cfg")
  [ -n "$feed" ] && args+=(--feed "$feed")
  "$old_bin" "${args[@]}" > "$work/$n.old" 2>/dev/null || echo "exit $?" >> "$work/$n.old"
  "$new_bin" "${args[@]}" > "$work/$n.new" 2>/dev/null || echo "exit $?" >> "$work/$n.new"
  if cmp -s "$work/$n.old" "$work/$n.new"; then
    same=$((same + 1)); rm -f "$work/$n.old" "$work/$n.new"
  else
    diff=$((diff + 1)); echo "DIFFERENT: $p (outputs $work/$n.old, $work/$n.new)"
  fi
done < "$list"
echo "captures: $n, identical: $same, different: $diff (work dir $work)"
[ "$n" -gt 0 ] || { echo "nothing compared"; exit 1; }
[ "$diff" -eq 0 ]
