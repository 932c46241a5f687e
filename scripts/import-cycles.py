#!/usr/bin/env python3
"""Fail when the modules of src/ import each other in a cycle.

Dependencies point one way (ARCHITECTURE.md): a file may use its own module's
parent (`super::`), but two files, or two modules, that use each other are a
cycle. Reads every `crate::`, `super::` and `self::` path outside comments and
`#[cfg(test)]` code, resolves it to the file that defines it, and prints each
cycle (a strongly connected component of that graph) with the edges in it.
"""
import collections
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"


def modules():
    found = {}
    for dirpath, _, names in os.walk(SRC):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, SRC)[:-3].split("/")
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            found[tuple(parts)] = path
    return found


def code_of(path):
    lines = [l for l in open(path).read().split("\n") if not l.strip().startswith("//")]
    text = "\n".join(lines)
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def main():
    files = modules()

    def resolve(path):
        for k in range(len(path), 0, -1):
            if tuple(path[:k]) in files:
                return tuple(path[:k])
        return None

    edges = collections.defaultdict(set)
    use = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_]\w*)+)(::\{([^}]*)\})?")
    for mod, path in files.items():
        is_dir_mod = path.endswith("mod.rs") or path.endswith("lib.rs")
        for m in use.finditer(code_of(path)):
            head, segs = m.group(1), [s for s in m.group(2).split("::") if s]
            if head == "crate":
                base = []
            elif head == "super":
                base = list(mod[:-1])
            else:
                base = list(mod) if is_dir_mod else list(mod[:-1])
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
            targets = [base + segs]
            for item in (m.group(4) or "").split(","):
                item = item.strip().split(" ")[0].split("::")[0]
                if item and item != "self":
                    targets.append(base + segs + [item])
            for t in targets:
                r = resolve(t)
                # A file's own ancestors (its `super`) are not a dependency edge.
                if r is not None and r != mod and r != mod[: len(r)]:
                    edges[mod].add(r)

    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(comp)

    for v in sorted(files):
        if v not in index:
            visit(v)
    name = lambda m: "/".join(m) or "lib"
    for comp in cycles:
        print("import cycle:", ", ".join(sorted(name(m) for m in comp)))
        for a in sorted(comp):
            for b in sorted(edges[a] & set(comp)):
                print(f"  {name(a)} -> {name(b)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
