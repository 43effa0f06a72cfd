"""The package's layout holds: no import cycle anywhere in ``synfs/`` (module-level and
function-level imports alike), and imports point one way between the rooms, as
docs/architecture.md draws them."""

from __future__ import annotations

import ast
from pathlib import Path

import synfs

PKG = Path(synfs.__file__).parent

# A room may import its own modules and rooms of a lower rank; equal ranks may not mix.
RANK = {"cli": 6, "service": 5, "fs": 4, "read": 3, "write": 3, "register": 3, "snapshot": 3,
        "remote": 2,
        "synapse": 1, "s3": 1, "emulator": 1}
FOUNDATION = {"synfs", "synfs.errors", "synfs.config", "synfs.cache", "synfs.diskbudget",
              "synfs.localdirs",
              "synfs.redact", "synfs.progress"}
ENTRY = {"synfs.__main__"}          # ``python -m synfs``: the command line, above every room
ALLOWED_SAME_RANK = {("s3", "synapse")}       # the S3 seam reuses the client's retry budget


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every synfs module ``name`` imports, wherever the import statement stands."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in known else mod)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_package():
    g = graph()
    assert len(g) > 40 and "synfs.fs.core" in g and "synfs.emulator.app" in g
    assert cycles(g) == []


def test_imports_point_down_between_rooms():
    wrong = []
    for name, deps in graph().items():
        if name in ENTRY:
            continue
        if name in FOUNDATION:
            assert all(d in FOUNDATION for d in deps), (name, deps)
            continue
        here = room(name)
        assert here in RANK, f"{name} is in no room (add it to a room or the foundation)"
        for dep in deps:
            there = room(dep)
            if dep in FOUNDATION or there == here or (here, there) in ALLOWED_SAME_RANK:
                continue
            if here == "emulator" or there == "emulator":
                if here != "cli":     # only the emulator/demo commands start it
                    wrong.append(f"{name} -> {dep}")
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{name} -> {dep}")
    assert wrong == []
