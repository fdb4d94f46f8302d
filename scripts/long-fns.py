#!/usr/bin/env python3
"""List functions longer than a limit (default 100 lines) in the workspace's
Rust sources, tests and unit-test modules included, and exit 1 if any is.

Relies on rustfmt's layout (CI checks it): a function starts at a line
`… fn name…` and ends at the first later line that is `}` at the same
indentation. CI runs it. Usage: scripts/long-fns.py [LIMIT] [--report]
(--report lists without failing)."""
import os, re, sys

limit = 100
report = False
for a in sys.argv[1:]:
    if a == '--report':
        report = True
    else:
        limit = int(a)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
fn_re = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"C"\s+)?fn\s+(\w+)')
long = []
for top in ('parsers', 'enrichment', 'sensor', 'tests', 'benches'):
    for dirpath, dirs, files in os.walk(os.path.join(root, top)):
        dirs[:] = [d for d in dirs if d not in ('target', 'regressions')]
        for f in sorted(files):
            if not f.endswith('.rs'):
                continue
            path = os.path.join(dirpath, f)
            lines = open(path, encoding='utf-8').read().split('\n')
            for i, line in enumerate(lines):
                m = fn_re.match(line)
                if not m or line.rstrip().endswith(';'):
                    continue
                indent = m.group(1)
                for j in range(i + 1, len(lines)):
                    if lines[j] == indent + '}':
                        n = j - i + 1
                        if n > limit:
                            long.append((n, os.path.relpath(path, root), i + 1, m.group(8)))
                        break
for n, path, line, name in sorted(long, reverse=True):
    print(f'{n:5} {path}:{line} {name}')
print(f'{len(long)} functions over {limit} lines')
sys.exit(1 if long and not report else 0)
