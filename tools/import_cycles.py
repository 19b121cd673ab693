"""Import graph of a Rust crate's src: modules from file paths, edges from `crate::a::b` and `super::` paths
(comments and `#[cfg(test)]` modules left out); prints each circle (strongly connected
component) of more than one module, largest first.

    python3 tools/import_cycles.py engine/src [file|top] [module,module  (print their edges)]
"""
import re, sys, os
root = sys.argv[1] if len(sys.argv) > 1 else "engine/src"
level = sys.argv[2] if len(sys.argv) > 2 else "file"
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs"): continue
        p = os.path.join(d, f); rel = os.path.relpath(p, root)[:-3]
        parts = rel.split("/")
        if parts[-1] in ("mod", "lib"): parts = parts[:-1]
        mods["::".join(parts)] = p
def resolve(path):
    segs = path.split("::")
    for k in range(len(segs), 0, -1):
        m = "::".join(segs[:k])
        if m in mods: return m
    return None
def top(m): return m.split("::")[0] if m else m
edges = {}
for m, p in mods.items():
    src = re.sub(r"//[^\n]*", "", open(p).read())
    # drop test modules roughly: files named tests / *_tests
    if m.split("::")[-1].endswith("tests") or "tests" in m.split("::"): continue
    src = re.sub(r"#\[cfg\(test\)\]\s*(pub(\(crate\))? )?mod\s+\w+\s*\{.*", "", src, flags=re.S)
    targets = set()
    for u in re.finditer(r"crate::((?:\w+::)*\w+)", src):
        t = resolve(u.group(1)); 
        if t: targets.add(t)
    for u in re.finditer(r"use crate::\{([^;]*)\};", src, flags=re.S):
        for item in re.findall(r"(\w+(?:::\w+)*)", u.group(1)):
            t = resolve(item)
            if t: targets.add(t)
    for u in re.finditer(r"use (super::(?:super::)*)((?:\w+::)*\w+)", src):
        base = m.split("::") if not p.endswith("mod.rs") else m.split("::") + ["_"]
        up = u.group(1).count("super")
        b = base[:-up] if up <= len(base) else []
        t = resolve("::".join(b + u.group(2).split("::")))
        if t: targets.add(t)
    if level == "top":
        edges.setdefault(top(m), set()).update(top(t) for t in targets if top(t) != top(m))
    else:
        edges.setdefault(m, set()).update(t for t in targets if t != m)
# tarjan
idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in list(edges):
    if v not in idx: sc(v)
for comp in sorted(out, key=len, reverse=True):
    print(len(comp), " ".join(comp))
if len(sys.argv) > 3:
    for m in sys.argv[3].split(","):
        print(m, "->", sorted(edges.get(m, ())))
