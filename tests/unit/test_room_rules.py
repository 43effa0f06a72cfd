"""Each room's ``__init__.py`` states what it may import and who imports it, and the code obeys:
the sentences "May import ..." and "Imported by ..." of every room's docstring are read as rules
(each ``name`` a room, a room's module such as ``synapse.models``, or a foundation module; "the
foundation" meaning all of them) and checked against every import statement in the package.
Every module also stays small, opens with a docstring, and does more than forward calls."""

from __future__ import annotations

import ast
import re

import pytest

from tests.unit.test_layout import FOUNDATION, PKG, RANK, graph, modules, room

ROOMS = sorted(RANK)
FOUNDATION_NAMES = {m.removeprefix("synfs.") for m in FOUNDATION if m != "synfs"}
ENTRY_POINTS = {"synfs.__main__"}      # ``python -m synfs``; the console scripts call synfs.cli.main
MAX_LINES = 520


def sentence(doc: str, opening: str) -> str | None:
    """The clause of ``doc`` that starts with ``opening``, up to a full stop or semicolon."""
    flat = " ".join(doc.split())
    at = flat.find(opening)
    if at < 0:
        return None
    m = re.match(r"(.*?)(?:;|\.(?:\s|$)|$)", flat[at + len(opening):])
    return m.group(1)


def names_in(clause: str, known: set[str]) -> set[str]:
    """The synfs modules a clause names: ``room``, ``room.module``, foundation names."""
    out = set()
    for token in re.findall(r"``([^`]+)``", clause):
        mods = {m for m in known if m == f"synfs.{token}" or m.startswith(f"synfs.{token}.")}
        assert mods, f"{token!r} names no synfs module"
        out |= mods
    if "the foundation" in clause:
        out |= FOUNDATION
    return out


def rules(doc: str, known: set[str]) -> tuple[set[str] | None, set[str] | None]:
    may, by = sentence(doc, "May import"), sentence(doc, "Imported by")
    return (None if may is None else names_in(may, known),
            None if by is None else {room(m) for m in names_in(by, known) if room(m)})


def broken_rules(g: dict[str, set[str]], docs: dict[str, str]) -> list[str]:
    """Every import that a room's stated rules forbid, and every room that states none."""
    known = set(g)
    wrong = []
    stated = {}
    for name in docs:
        may, by = rules(docs[name], known)
        if may is None or by is None:
            wrong.append(f"synfs.{name}: docstring lacks 'May import ...' or 'Imported by ...'")
            continue
        stated[name] = (may, by)
    for mod, deps in g.items():
        here = room(mod)
        for dep in deps:
            there = room(dep)
            if there == here:
                continue
            if here in stated and dep not in stated[here][0]:
                wrong.append(f"{mod} -> {dep}: not in synfs.{here}'s 'May import'")
            if there in stated and mod not in ENTRY_POINTS and here not in stated[there][1]:
                wrong.append(f"{mod} -> {dep}: {here or mod} not in synfs.{there}'s 'Imported by'")
    return wrong


def room_docs() -> dict[str, str]:
    return {name: ast.get_docstring(ast.parse((PKG / name / "__init__.py").read_text())) or ""
            for name in ROOMS}


def test_the_checker_catches_a_forbidden_import():
    g = {"synfs.read.prefetch": {"synfs.errors", "synfs.fs.core"}, "synfs.fs.core": set(),
         "synfs.errors": set()}
    docs = {"read": "Owns reads. May import the foundation. Imported by ``fs``.",
            "fs": "Owns the tree. May import ``read``; never ``cli``. Imported by nobody."}
    assert broken_rules(g, docs) == [
        "synfs.read.prefetch -> synfs.fs.core: not in synfs.read's 'May import'",
        "synfs.read.prefetch -> synfs.fs.core: read not in synfs.fs's 'Imported by'"]
    docs["read"] = "Owns reads, imports whatever it likes."
    assert broken_rules(g, docs)[0].startswith("synfs.read: docstring lacks")
    with pytest.raises(AssertionError, match="names no synfs module"):
        names_in("May import ``nowhere``", set(g))


def test_every_room_obeys_its_stated_import_rules():
    docs = room_docs()
    assert set(docs) >= {"cli", "service", "fs", "read", "write", "remote", "synapse", "s3",
                         "emulator", "register", "snapshot"}
    assert broken_rules(graph(), docs) == []


@pytest.mark.parametrize("name", ROOMS)
def test_room_docstring_says_what_it_owns(name):
    doc = room_docs()[name]
    first = doc.split("May import")[0]
    assert len(first) > 80, f"synfs/{name}/__init__.py does not say what the room owns"
    # every module of the room is named in its docstring, so the room's map stays true
    for path in sorted((PKG / name).glob("*.py")):
        if path.stem != "__init__":
            assert re.search(rf"\b{path.stem}\b", doc), f"synfs/{name}/__init__.py never names {path.stem}"


def forwards_only(source: str) -> bool:
    """True for a module that only passes calls on: every function and method is one call
    (after its docstring and imports), and nothing else happens at module level."""
    tree = ast.parse(source)

    def trivial(stmt) -> bool:
        return (isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass))
                or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
                or (isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name)
                                                         and t.id == "__all__"
                                                         for t in stmt.targets)))

    def forwards(fn) -> bool:
        body = [s for s in fn.body if not trivial(s)]
        return (len(body) == 1 and isinstance(body[0], (ast.Return, ast.Expr))
                and isinstance(body[0].value, (ast.Call, ast.Await)))

    funcs = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    funcs.append(item)
                elif not trivial(item):
                    return False
        elif not trivial(node):
            return False
    return all(forwards(f) for f in funcs)


def test_the_forwarding_check_tells_a_shim_from_a_module():
    shim = '"""x"""\nfrom a import b\n\ndef read(x):\n    """y"""\n    return b.read(x)\n'
    assert forwards_only(shim)
    assert forwards_only('"""x"""\nfrom a import *\n')
    assert forwards_only('class A:\n    async def f(self):\n        return await self.g()\n')
    assert not forwards_only(shim + "\ndef size(x):\n    n = len(x)\n    return n\n")
    assert not forwards_only('LIMIT = 3\n')


@pytest.mark.parametrize("name", sorted(set(modules()) - ENTRY_POINTS))
def test_module_is_small_documented_and_not_a_forwarder(name):
    path = modules()[name]
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES, f"{path} has {len(source.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(source))
    assert doc and len(doc) > 40, f"{path} lacks an opening docstring saying what it owns"
    if path.name != "__init__.py":
        assert not forwards_only(source), f"{path} only forwards calls to other modules"


def synfs_bases(source: str, own: set[str]) -> list[str]:
    """Base classes of ``source``'s classes that are synfs classes (mixins, core parents);
    exceptions from ``errors`` and typing Protocols are not inheritance of behaviour."""
    tree = ast.parse(source)
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("synfs") and n.module != "synfs.errors"
                for a in n.names}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = ast.unparse(base)
                if name in own | imported:
                    out.append(f"{node.name}({name})")
    return out


def test_the_mixin_check_sees_a_mixin():
    src = "from synfs.write.path import WriteOps\nclass A:\n    pass\nclass F(A, WriteOps):\n    pass\n"
    assert synfs_bases(src, {"A", "F"}) == ["F(A)", "F(WriteOps)"]
    assert synfs_bases("from synfs import errors\nclass C(errors.SynfsError):\n    pass\n",
                       {"C"}) == []


@pytest.mark.parametrize("room_name", ["fs", "read", "write", "remote"])
def test_the_core_rooms_compose_instead_of_inheriting(room_name):
    wrong = []
    for path in sorted((PKG / room_name).glob("*.py")):
        source = path.read_text()
        own = {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)}
        wrong += [f"{path.name}: {b}" for b in synfs_bases(source, own)]
    assert wrong == []


def test_filesystem_holds_its_collaborators():
    from synfs.fs.core import Filesystem
    from synfs.fs.tree import Tree
    from synfs.read.openfiles import OpenFiles
    from synfs.write.namespace import Namespace
    from synfs.write.path import WritePath

    assert Filesystem.__mro__ == (Filesystem, object)
    fs = Filesystem(object(), 100)
    parts = {"tree": Tree, "reads": OpenFiles, "writes": WritePath, "namespace": Namespace}
    for attr, cls in parts.items():
        assert type(getattr(fs, attr)) is cls, attr
    # no collaborator holds the Filesystem itself (each reaches the others through what it owns)
    for attr in parts:
        held = vars(getattr(fs, attr)).values()
        assert not any(v is fs for v in held), f"fs.{attr} holds the Filesystem"


def test_package_docstring_lists_every_room_and_foundation_module():
    doc = ast.get_docstring(ast.parse((PKG / "__init__.py").read_text()))
    for name in ROOMS:
        assert f"``{name}/``" in doc, f"synfs/__init__.py does not list the room {name}/"
    for name in sorted(FOUNDATION_NAMES):
        assert f"``{name}``" in doc, f"synfs/__init__.py does not list the foundation {name}"
