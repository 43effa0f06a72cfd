"""Comparing two snapshots: which files were added, removed or changed, by path.

A file is "changed" when the same path holds another entity, version, file handle, size or
MD5 in the second snapshot. Folders are not listed (their files are).
"""

from __future__ import annotations

import dataclasses

from synfs.snapshot.store import Node, Snapshot


@dataclasses.dataclass
class Diff:
    added: list[str]
    removed: list[str]
    changed: list[tuple[str, str]]     # (path, what changed)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        out = [f"+ {p}" for p in self.added] + [f"- {p}" for p in self.removed]
        out += [f"M {p} ({why})" for p, why in self.changed]
        return sorted(out, key=lambda line: (line[2:], line[0]))


def _files(snap: Snapshot) -> dict[str, Node]:
    paths = snap.paths()
    return {paths[n.id]: n for n in snap.files() if n.id in paths}


def _what_changed(a: Node, b: Node) -> str | None:
    if a.id != b.id:
        return f"syn{a.id} -> syn{b.id}"
    parts = []
    if a.version != b.version:
        parts.append(f"version {a.version} -> {b.version}")
    if a.size != b.size:
        parts.append(f"size {a.size} -> {b.size}")
    if a.md5 != b.md5:
        parts.append("md5")
    if a.file_handle_id != b.file_handle_id and not parts:
        parts.append(f"file handle {a.file_handle_id} -> {b.file_handle_id}")
    return ", ".join(parts) or None


def diff(a: Snapshot, b: Snapshot) -> Diff:
    fa, fb = _files(a), _files(b)
    changed = []
    for path in sorted(fa.keys() & fb.keys()):
        why = _what_changed(fa[path], fb[path])
        if why:
            changed.append((path, why))
    return Diff(added=sorted(fb.keys() - fa.keys()), removed=sorted(fa.keys() - fb.keys()),
                changed=changed)
