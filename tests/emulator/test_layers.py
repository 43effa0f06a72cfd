"""The emulator's modules are layered: every ``import``/``from`` statement in
``synfs/emulator`` (module level and inside functions, relative and absolute) points down the
layer order of the package docstring, so there is no import cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import synfs.emulator as pkg

PKG_DIR = Path(pkg.__file__).parent
PKG = "synfs.emulator"

# Layer of each module (lower imports nothing higher); the package docstring states the order.
LAYERS = [
    {"errors", "db", "context", "faults", "s3config", "s3proxy", "s3world"},
    {"storage", "handles", "columns", "view_schema", "table_query"},
    {"acl"},
    {"entity_core", "annotations", "entity_children", "entity_versions", "entity_bundle",
     "trash", "entities", "views"},
    {"acl_api", "storage_api", "filehandles", "multipart", "sts", "users", "admin",
     "table_jobs", "table_api"},
    {"app", "server"},
]


def module_imports(path: Path) -> set[str]:
    """Names of sibling emulator modules imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PKG + "."):
                    found.add(alias.name[len(PKG) + 1:].split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module
            elif node.level == 0 and node.module and (node.module == PKG
                                                       or node.module.startswith(PKG + ".")):
                base = node.module[len(PKG) + 1:] if node.module != PKG else None
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:  # from . import a, b
                found.update(alias.name for alias in node.names)
    found.discard(path.stem)
    return found


def graph() -> dict[str, set[str]]:
    mods = {p.stem: p for p in PKG_DIR.glob("*.py") if p.stem != "__init__"}
    return {name: module_imports(path) & set(mods) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = PKG_DIR / "entities.py"
    assert "entity_core" in module_imports(src)


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_imports_point_down_the_layers():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    edges = graph()
    unplaced = sorted(set(edges) - set(level))
    assert not unplaced, f"modules without a layer: {unplaced}"
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
              if level[b] > level[a]]
    assert not upward, f"imports pointing up the layers: {upward}"


def test_modules_are_small_and_documented():
    for path in sorted(PKG_DIR.glob("*.py")):
        lines = path.read_text().splitlines()
        assert len(lines) <= 520, f"{path.name} has {len(lines)} lines"
        doc = ast.get_docstring(ast.parse("\n".join(lines)))
        assert doc and len(doc) > 40, f"{path.name} lacks an opening docstring"
