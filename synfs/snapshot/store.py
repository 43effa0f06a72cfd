"""The snapshot file: format, the writer that builds it, and the read-only reader mounts use.

A snapshot is one SQLite file, marked as ours by ``PRAGMA application_id`` (``SYNF``) and
versioned by ``PRAGMA user_version``. Tables:

- ``meta(key, value)``: root id and name, when and how it was built (source, view, where),
  the builder's Synapse user id, the endpoint, and ``complete`` = 1 once every node is known;
- ``nodes``: every Project/Folder/File of the tree: id, parent, name, kind, version,
  modifiedOn, createdOn, etag and, for files, size, MD5, file handle id and type, storage
  location, bucket and key (where the caller may know them); ``done`` = 0 marks a file whose
  details are still to be fetched and ``listed`` = 0 a folder whose listing is still to come;
- ``locations``: per storage location, whether it is STS-enabled, its bucket and base key.

No secret is ever written (no token, no credentials, no pre-signed URL). The writer works on
``<out>.partial`` and renames it over ``<out>`` only once complete, so an interrupted build
(even ``kill -9``) never leaves a file that looks finished, and the next run resumes from the
partial file (what it records as done is not fetched again).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator

from synfs.config import EXIT_BAD_SNAPSHOT
from synfs.synapse.models import ChildHeader, Entity, FileHandle, Kind

APPLICATION_ID = 0x53594E46          # "SYNF"
FORMAT = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY, parent_id INTEGER, name TEXT NOT NULL, kind TEXT NOT NULL,
    version INTEGER, modified_on REAL, created_on REAL, etag TEXT,
    size INTEGER, md5 TEXT, file_handle_id INTEGER, concrete_type TEXT,
    storage_location_id INTEGER, bucket TEXT, key TEXT, file_name TEXT, content_type TEXT,
    done INTEGER NOT NULL DEFAULT 0, listed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes (parent_id, name);
CREATE TABLE IF NOT EXISTS locations (
    storage_location_id INTEGER PRIMARY KEY, sts_enabled INTEGER NOT NULL, bucket TEXT,
    base_key TEXT);
"""
NODE_FIELDS = ("id", "parent_id", "name", "kind", "version", "modified_on", "created_on", "etag",
               "size", "md5", "file_handle_id", "concrete_type", "storage_location_id", "bucket",
               "key", "file_name", "content_type", "done")


class SnapshotError(Exception):
    """A snapshot file we cannot use; ``exit_code`` tells the CLI which kind of bad input."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_SNAPSHOT):
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Node:
    id: int
    parent_id: int | None
    name: str
    kind: str                          # Kind.value: project, folder, file
    version: int | None = None
    modified_on: float = 0.0
    created_on: float = 0.0
    etag: str = ""
    size: int | None = None
    md5: str | None = None
    file_handle_id: int | None = None
    concrete_type: str | None = None
    storage_location_id: int | None = None
    bucket: str | None = None
    key: str | None = None
    file_name: str | None = None
    content_type: str | None = None
    done: bool = True

    @property
    def is_container(self) -> bool:
        return self.kind in (Kind.PROJECT.value, Kind.FOLDER.value)

    @classmethod
    def from_entity(cls, ent: Entity, parent_id: int | None = None) -> "Node":
        fh = ent.file_handle
        return cls(id=ent.id, parent_id=ent.parent_id if parent_id is None else parent_id,
                   name=ent.name, kind=ent.kind.value, version=ent.version,
                   modified_on=ent.modified_on, created_on=ent.created_on, etag=ent.etag,
                   size=fh.size if fh else None, md5=fh.md5 if fh else None,
                   file_handle_id=ent.file_handle_id,
                   concrete_type=fh.concrete_type if fh else None,
                   storage_location_id=fh.storage_location_id if fh else None,
                   bucket=fh.bucket if fh else None, key=fh.key if fh else None,
                   file_name=fh.file_name if fh else None,
                   content_type=fh.content_type if fh else None, done=True)

    @classmethod
    def from_header(cls, child: ChildHeader, parent_id: int) -> "Node":
        """A listed child whose details (for a file: its handle) are still to be fetched."""
        return cls(id=child.id, parent_id=parent_id, name=child.name, kind=child.kind.value,
                   version=child.version, modified_on=child.modified_on,
                   done=child.kind.is_container)

    def header(self) -> ChildHeader:
        return ChildHeader(id=self.id, name=self.name, kind=Kind(self.kind),
                           modified_on=self.modified_on, version=self.version)

    def entity(self) -> Entity:
        handle = None
        if self.file_handle_id is not None and self.size is not None:
            handle = FileHandle(id=self.file_handle_id, size=self.size, md5=self.md5,
                                concrete_type=self.concrete_type or "",
                                storage_location_id=self.storage_location_id,
                                bucket=self.bucket, key=self.key, file_name=self.file_name,
                                content_type=self.content_type)
        return Entity(id=self.id, name=self.name, kind=Kind(self.kind), parent_id=self.parent_id,
                      etag=self.etag or "", created_on=self.created_on or self.modified_on,
                      modified_on=self.modified_on, version=self.version,
                      file_handle_id=self.file_handle_id, file_handle=handle,
                      can_download=handle is not None)


def _node(row) -> Node:
    data = dict(zip(NODE_FIELDS, row))
    data["done"] = bool(data["done"])
    return Node(**data)


_SELECT = "SELECT " + ", ".join(NODE_FIELDS) + " FROM nodes"


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


class SnapshotWriter:
    """Builds ``<out>.partial``; ``finish()`` marks it complete and renames it to ``out``."""

    def __init__(self, out: Path, root_id: int, meta: dict[str, str], *, restart: bool = False):
        self.out = out
        self.path = partial_path(out)
        if restart and self.path.exists():
            self.path.unlink()
        self.resumed = self.path.exists()
        if self.resumed:
            check_ours(self.path)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self.db.execute(f"PRAGMA user_version = {FORMAT}")
        old = dict(self.db.execute("SELECT key, value FROM meta"))
        if self.resumed and (old.get("root_id") != str(root_id) or
                             any(old.get(k) != meta.get(k) for k in ("where", "view", "source"))):
            self.db.close()
            raise SnapshotError(f"{self.path} is an unfinished snapshot of another root or "
                                "with other options; remove it or pass --restart")
        meta = dict(meta, root_id=str(root_id), format=str(FORMAT), complete="0")
        meta.setdefault("started", old.get("started") or _now())
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        self.db.commit()

    def put(self, nodes: Iterable[Node], *, listed: int | None = None) -> None:
        """Insert or replace nodes; ``listed`` marks that folder's listing as complete (in
        the same transaction, so a crash cannot record a listing without its children)."""
        rows = [tuple(getattr(n, f) if f != "done" else int(n.done) for f in NODE_FIELDS)
                for n in nodes]
        with self.db:
            self.db.executemany(
                f"INSERT INTO nodes ({', '.join(NODE_FIELDS)}) VALUES "
                f"({', '.join('?' * len(NODE_FIELDS))}) ON CONFLICT(id) DO UPDATE SET " +
                ", ".join(f"{f} = excluded.{f}" for f in NODE_FIELDS[1:]), rows)
            if listed is not None:
                self.db.execute("UPDATE nodes SET listed = 1 WHERE id = ?", (listed,))

    def delete(self, ids: Iterable[int]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM nodes WHERE id = ?", ((i,) for i in ids))

    def put_location(self, loc: int, sts_enabled: bool, bucket: str | None,
                     base_key: str | None) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO locations VALUES (?, ?, ?, ?)",
                            (loc, int(sts_enabled), bucket, base_key))

    def locations(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT storage_location_id FROM locations")}

    def has(self, node_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM nodes WHERE id = ?", (node_id,)).fetchone() is not None

    def unlisted_folders(self) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM nodes WHERE kind != 'file' AND listed = 0 ORDER BY id")]

    def pending_files(self) -> list[Node]:
        return [_node(r) for r in self.db.execute(_SELECT + " WHERE kind = 'file' AND done = 0")]

    def files(self) -> list[Node]:
        return [_node(r) for r in self.db.execute(_SELECT + " WHERE kind = 'file'")]

    def location_of_files(self) -> dict[int, int]:
        """storage location -> one file stored there (to name the location in a REST call)."""
        return dict(self.db.execute(
            "SELECT storage_location_id, MIN(id) FROM nodes WHERE kind = 'file' AND "
            "storage_location_id IS NOT NULL GROUP BY storage_location_id"))

    def prune(self, keep_files: set[int], root_id: int) -> None:
        """Keep only ``keep_files`` and the folders on their paths (``--where``)."""
        parents = dict(self.db.execute("SELECT id, parent_id FROM nodes"))
        keep = {root_id}
        for fid in keep_files:
            node = fid
            while node is not None and node not in keep:
                keep.add(node)
                node = parents.get(node)
        with self.db:
            self.db.execute("CREATE TEMP TABLE keep (id INTEGER PRIMARY KEY)")
            self.db.executemany("INSERT INTO keep VALUES (?)", ((i,) for i in keep))
            self.db.execute("DELETE FROM nodes WHERE id NOT IN (SELECT id FROM keep)")
            self.db.execute("DROP TABLE keep")

    def count(self, kind: str = "file") -> int:
        return self.db.execute("SELECT COUNT(*) FROM nodes WHERE kind = ?", (kind,)).fetchone()[0]

    def finish(self, extra_meta: dict[str, str]) -> Path:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                dict(extra_meta, complete="1", finished=_now()).items())
        self.db.close()
        os.replace(self.path, self.out)
        return self.out

    def close(self) -> None:
        self.db.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_ours(path: Path) -> None:
    """SnapshotError unless ``path`` is a synfs snapshot file of a format we read."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        raise SnapshotError(f"{path} is not a synfs snapshot (not an SQLite file)")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != APPLICATION_ID:
        raise SnapshotError(f"{path} is an SQLite file but not a synfs snapshot")
    version = int.from_bytes(head[60:64], "big")
    if version > FORMAT:
        raise SnapshotError(f"{path} has snapshot format {version}; this synfs reads "
                            f"format {FORMAT} (upgrade synfs)")


class Snapshot:
    """A complete snapshot opened read-only (one connection; used from one thread at a time)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        check_ours(self.path)
        try:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True,
                                      check_same_thread=False)
            self.meta = dict(self.db.execute("SELECT key, value FROM meta"))
            self.root_id = int(self.meta["root_id"])
            root = self.node(self.root_id)
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            raise SnapshotError(f"{self.path} is a damaged synfs snapshot ({exc})") from None
        if self.meta.get("complete") != "1" or root is None:
            self.db.close()
            raise SnapshotError(f"{self.path} is an unfinished snapshot; run the same "
                                "synfs snapshot command again to complete it")
        self.root = root

    def close(self) -> None:
        self.db.close()

    def _query(self, sql: str, args=()) -> list:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise SnapshotError(f"{self.path} is damaged ({exc})") from None

    def node(self, node_id: int) -> Node | None:
        rows = self._query(_SELECT + " WHERE id = ?", (node_id,))
        return _node(rows[0]) if rows else None

    def children(self, parent_id: int) -> list[Node]:
        return [_node(r) for r in self._query(_SELECT + " WHERE parent_id = ? ORDER BY name",
                                              (parent_id,))]

    def files(self) -> Iterator[Node]:
        for row in self._query(_SELECT + " WHERE kind = 'file' ORDER BY id"):
            yield _node(row)

    def paths(self) -> dict[int, str]:
        """Every node's path below the root ("" for the root)."""
        parent = {r[0]: (r[1], r[2]) for r in self._query("SELECT id, parent_id, name FROM nodes")}
        out: dict[int, str] = {self.root_id: ""}
        for start in parent:
            chain, node = [], start
            while node not in out and node in parent:
                chain.append(node)
                node = parent[node][0]
            if node not in out:
                continue                  # not under the root (cannot happen in our files)
            for n in reversed(chain):
                base = out[parent[n][0]]
                out[n] = f"{base}/{parent[n][1]}" if base else parent[n][1]
        return out

    def locations(self) -> dict[int, tuple[bool, str | None, str | None]]:
        return {r[0]: (bool(r[1]), r[2], r[3]) for r in
                self._query("SELECT storage_location_id, sts_enabled, bucket, base_key "
                            "FROM locations")}

    def info(self) -> dict:
        (folders,), = self._query("SELECT COUNT(*) FROM nodes WHERE kind != 'file'")
        (files, size), = self._query(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM nodes WHERE kind = 'file'")
        (no_access,), = self._query(
            "SELECT COUNT(*) FROM nodes WHERE kind = 'file' AND size IS NULL")
        return {"path": str(self.path), "root": f"syn{self.root_id}", "root_name": self.root.name,
                "created": self.meta.get("finished", ""), "source": self.meta.get("source", ""),
                "view": self.meta.get("view") or None, "where": self.meta.get("where") or None,
                "user_id": self.meta.get("user_id") or None,
                "endpoint": self.meta.get("endpoint") or None, "folders": folders - 1,
                "files": files, "bytes": size, "files_without_access": no_access,
                "storage_locations": sorted(self.locations()),
                "calls": int(self.meta.get("calls", "0") or 0)}
