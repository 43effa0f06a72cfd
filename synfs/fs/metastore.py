"""The persistent file-metadata store: what a remount needs to answer ``stat`` without a REST call.

A file's size, MD5 and file handle are fixed by its version: Synapse forces a new
``versionNumber`` whenever a file's content changes, and an in-place handle swap keeps the MD5.
``POST /entity/children`` returns ``versionNumber`` and ``modifiedOn`` for every child (never the
size), so a record saved under (entity id, versionNumber, modifiedOn) is valid exactly as long
as the listing still shows that pair; ``modifiedOn`` also covers the corner of a deleted
version's number being reused. One SQLite file per Synapse user (permissions differ by user),
bounded to ``max_entries`` rows (the least recently saved go first), written in batches.

Records hold the whole ``Entity`` including the user's permission flags as they were when
fetched; callers treat a stored entity as good for attributes only and fetch a fresh one
before acting on permissions (``Entity.from_store``). The store is a cache: any error reading
or writing it is logged once and the store turns itself off; it never fails a filesystem call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from synfs.localdirs import private_dir
from synfs.synapse.models import Entity, FileHandle, Kind

log = logging.getLogger(__name__)

FLUSH_EVERY = 256          # pending writes before a commit
SCHEMA = 1


def _encode(ent: Entity) -> str:
    data = dataclasses.asdict(ent)
    data["kind"] = ent.kind.value
    data.pop("from_store", None)
    return json.dumps(data, separators=(",", ":"))


def _decode(text: str) -> Entity:
    data = json.loads(text)
    data["kind"] = Kind(data["kind"])
    if data.get("file_handle") is not None:
        data["file_handle"] = FileHandle(**data["file_handle"])
    return Entity(**data, from_store=True)


class MetaStore:
    """Entity records keyed by id, valid for one (versionNumber, modifiedOn)."""

    def __init__(self, path: Path, max_entries: int = 500_000, clock=time.time):
        self.path = Path(path)
        self.max_entries = max_entries
        self.clock = clock
        self.hits = self.misses = self.stale = 0
        self._pending: dict[int, tuple] = {}
        self._db: sqlite3.Connection | None = None
        try:
            private_dir(self.path.parent)
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                 timeout=0.05)   # never stall the trio thread: retry later
            os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)")
            row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if row is not None and row[0] != SCHEMA:
                db.execute("DROP TABLE IF EXISTS entities")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA,))
            db.execute("CREATE TABLE IF NOT EXISTS entities (id INTEGER PRIMARY KEY, "
                       "version INTEGER, modified_on REAL, record TEXT, used REAL)")
            db.execute("CREATE INDEX IF NOT EXISTS entities_used ON entities(used)")
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.warning("metadata store %s unusable, running without it: %s", self.path, exc)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _fail(self, exc: Exception) -> None:
        log.warning("metadata store %s failed, turning it off: %s", self.path, exc)
        try:
            self._db.close()
        except (sqlite3.Error, AttributeError):
            pass
        self._db = None
        self._pending.clear()

    def get(self, entity_id: int, version: int | None, modified_on: float) -> Entity | None:
        """The stored entity if it was saved for exactly this version and modifiedOn."""
        if self._db is None:
            return None
        pending = self._pending.get(entity_id)
        try:
            row = (pending[1:4] if pending is not None else self._db.execute(
                "SELECT version, modified_on, record FROM entities WHERE id=?",
                (entity_id,)).fetchone())
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        if row is None:
            self.misses += 1
            return None
        if row[0] != version or row[1] != modified_on:
            self.stale += 1
            return None
        try:
            ent = _decode(row[2])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("metadata store: unreadable record for syn%d dropped: %s", entity_id, exc)
            self.stale += 1
            return None
        self.hits += 1
        return ent

    def put(self, ent: Entity) -> None:
        """Remember a freshly fetched file entity (containers need no record)."""
        if self._db is None or ent.kind is not Kind.FILE or ent.from_store:
            return
        self._pending[ent.id] = (ent.id, ent.version, ent.modified_on, _encode(ent),
                                 self.clock())
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit pending records and keep the table within ``max_entries``."""
        if self._db is None or not self._pending:
            return
        rows = list(self._pending.values())
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?)", rows)
                count = self._db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]
                if count > self.max_entries:
                    self._db.execute(
                        "DELETE FROM entities WHERE id IN (SELECT id FROM entities "
                        "ORDER BY used LIMIT ?)", (count - self.max_entries,))
            self._pending.clear()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                self._fail(exc)
            elif len(self._pending) > 16 * FLUSH_EVERY:   # another mount holds it: try later,
                self._pending.clear()                       # but never hold much in memory
        except sqlite3.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def status(self) -> dict:
        return {"enabled": self.enabled, "hits": self.hits, "misses": self.misses,
                "stale": self.stale}
