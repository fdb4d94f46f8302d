#!/usr/bin/env python3
"""Print the sensor crate's dependencies between top-level folders (stages)
and fail if the folders, or the modules (files), form a cycle.

Reads `crate::…` paths in the product code (unit tests and comments are
left out), resolving the flat re-exports in lib.rs to their folders. A
module naming its own ancestor (`flow::map` using `crate::flow::…`) is not
counted: a parent always names its children, so only siblings and
strangers can form the cycles this guards against."""
import os, re, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'sensor', 'src')
alias = {}
lib = open(os.path.join(root, 'lib.rs')).read()
for m in re.finditer(r'pub use (\w+)::\{([^}]*)\};|pub use (\w+)::(\w+)( as (\w+))?;', lib):
    if m.group(1):
        for part in m.group(2).split(','):
            part = part.strip()
            if not part:
                continue
            name = part.split(' as ')[-1].strip()
            alias[name] = m.group(1)
    else:
        alias[m.group(6) or m.group(4)] = m.group(3)

def stage(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith('.rs') else first

deps = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        src = stage(rel)
        if src in ('lib', 'main'):
            continue
        text = open(path).read()
        # Unit tests may reach anywhere; only the product's code counts.
        text = re.split(r'#\[cfg\(test\)\]', text)[0]
        text = '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('//'))
        for m in re.finditer(r'crate::(\w+)', text):
            dst = alias.get(m.group(1), m.group(1))
            if dst != src:
                deps.setdefault(src, set()).add(dst)

# Module (file) level: `crate::a::b::c` names the deepest module that exists.
modules = set()
for dirpath, _, files in os.walk(root):
    for f in files:
        if f.endswith('.rs') and f not in ('lib.rs', 'main.rs'):
            rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
            if rel[-1] == 'mod':
                rel = rel[:-1]
            modules.add('::'.join(rel))
mdeps = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs') or f in ('lib.rs', 'main.rs'):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
        if rel[-1] == 'mod':
            rel = rel[:-1]
        me = '::'.join(rel)
        text = re.split(r'#\[cfg\(test\)\]', open(os.path.join(dirpath, f)).read())[0]
        text = '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('//'))
        for m in re.finditer(r'crate((?:::\w+)+)', text):
            parts = m.group(1).strip(':').split('::')
            parts[0] = alias.get(parts[0], parts[0])
            if parts[0] in ('flowmap',):
                parts = ['flow', 'map'] + parts[1:]
            path = '::'.join(parts).split('::')
            best = None
            for i in range(len(path), 0, -1):
                cand = '::'.join(path[:i])
                if cand in modules:
                    best = cand
                    break
            if best and best != me and not me.startswith(best + '::'):
                mdeps.setdefault(me, set()).add(best)

for s in sorted(deps):
    print(f'{s:8} -> {", ".join(sorted(deps[s]))}')

def find_cycles(deps):
    state, stack, cycles = {}, [], []
    def visit(n):
        state[n] = 1; stack.append(n)
        for d in sorted(deps.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop(); state[n] = 2
    for n in sorted(deps):
        if n not in state:
            visit(n)
    return cycles

cycles = find_cycles(deps) + find_cycles(mdeps)
for c in cycles:
    print('CYCLE: ' + ' -> '.join(c))
print(f'{len(mdeps)} modules with dependencies, {len(cycles)} cycles')
sys.exit(1 if cycles else 0)
