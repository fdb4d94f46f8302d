#!/usr/bin/env bash
# Regenerate the vendored OCSF schema that tests/tests/ocsf.rs validates
# pinwatch's `--format ocsf` output against (tests/ocsf/README.md).
#
# Source: the PyPI package ocsf-json-schema (pinned below), which bundles the
# official OCSF schema exports (Apache-2.0) and turns a class into a JSON
# Schema (draft 2020-12) with every referenced object embedded. We take the
# Detection Finding class (2004) of OCSF 1.4.0 without profiles, plus the
# captions of every enumerated `*_id` attribute of the class and of the
# objects it embeds (the JSON Schema checks the ids, not that `type`,
# `algorithm`, `activity_name`... name the same thing).
#
#   bash scripts/ocsf-schema.sh            # rewrite tests/ocsf/
#   bash scripts/ocsf-schema.sh --check    # exit 1 if tests/ocsf/ differs
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="ocsf-json-schema==1.2.0"
VERSION="1.4.0"
CLASS="detection_finding"
venv=${PINWATCH_OCSF_VENV:-$(mktemp -d /tmp/pinwatch-ocsf.XXXXXX)/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "$PKG"
out=tests/ocsf
if [ "${1:-}" = "--check" ]; then out=$(mktemp -d /tmp/pinwatch-ocsf-check.XXXXXX); fi
mkdir -p "$out"
"$venv/bin/python" - "$VERSION" "$CLASS" "$out" <<'PY'
import json, os, shutil, sys
import ocsf_json_schema
from ocsf_json_schema import get_ocsf_schema, OcsfJsonSchemaEmbedded
version, cls, out = sys.argv[1:4]
raw = get_ocsf_schema(version=version)
schema = OcsfJsonSchemaEmbedded(raw).get_class_schema(class_name=cls, profiles=[])
def captions(attrs):
    res = {}
    for name, a in sorted(attrs.items()):
        if "enum" in a and a.get("sibling"):
            res[name] = {"sibling": a["sibling"], "enum": {k: v["caption"] for k, v in sorted(a["enum"].items(), key=lambda kv: int(kv[0]))}}
    return res
caps = {"class": {"name": cls, "uid": raw["classes"][cls]["uid"], "captions": captions(raw["classes"][cls]["attributes"])}, "objects": {}}
for d in sorted(schema.get("$defs", {})):
    name = d if d in raw["objects"] else d.replace("_", "/", 1)
    if name in raw["objects"]:
        c = captions(raw["objects"][name]["attributes"])
        if c:
            caps["objects"][d] = c
with open(os.path.join(out, f"{cls}-{version}.schema.json"), "w") as f:
    json.dump(schema, f, indent=1, sort_keys=True)
    f.write("\n")
with open(os.path.join(out, f"{cls}-{version}.captions.json"), "w") as f:
    json.dump(caps, f, indent=1, sort_keys=True)
    f.write("\n")
shutil.copy(os.path.join(os.path.dirname(ocsf_json_schema.__file__), "ocsf", "LICENSE.txt"), os.path.join(out, "LICENSE-OCSF.txt"))
PY
if [ "${1:-}" = "--check" ]; then
  for f in "$out"/*; do
    cmp -s "$f" "tests/ocsf/$(basename "$f")" || { echo "ocsf-schema: tests/ocsf/$(basename "$f") differs from a fresh generation"; exit 1; }
  done
  echo "ocsf-schema: tests/ocsf/ is what $PKG generates"
fi
