"""SQLite state of the emulator: schema, transactions, id sequences and shared row helpers.

One ``Store`` per process owns one connection (WAL mode) guarded by a lock; every request runs
its reads and writes inside ``store.tx()``, which commits on success and rolls back on error.
The CLI (``synfs emulator add-user``) may open the same file from another process: SQLite's
own locking and a busy timeout make that safe.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import secrets
import sqlite3
import threading
import uuid
from pathlib import Path

ROOT_ID = 4489
TRASH_ID = 1681355
DEFAULT_STORAGE_LOCATION_ID = 1
ANONYMOUS_ID = 273950
PUBLIC_GROUP_ID = 273948
AUTHENTICATED_USERS_ID = 273949
ALL_SCOPES = ("openid", "email", "profile", "view", "download", "modify", "authorize", "offline_access")

CT = "org.sagebionetworks.repo.model."
PROJECT = CT + "Project"
FOLDER = CT + "Folder"
FILE = CT + "FileEntity"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, user_name TEXT UNIQUE NOT NULL, email TEXT NOT NULL,
    display_name TEXT, certified INTEGER NOT NULL DEFAULT 1, is_admin INTEGER NOT NULL DEFAULT 0,
    etag TEXT NOT NULL, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
    scopes TEXT NOT NULL, name TEXT, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, parent_id INTEGER, concrete_type TEXT NOT NULL,
    etag TEXT NOT NULL, created_on TEXT NOT NULL, created_by INTEGER NOT NULL,
    modified_on TEXT NOT NULL, modified_by INTEGER NOT NULL, description TEXT, alias TEXT,
    current_version INTEGER NOT NULL DEFAULT 1, trashed_by INTEGER, trashed_on TEXT,
    trash_original_parent INTEGER, trash_original_name TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS entities_parent_name ON entities(parent_id, name);
CREATE TABLE IF NOT EXISTS versions (
    entity_id INTEGER NOT NULL REFERENCES entities(id), version_number INTEGER NOT NULL,
    version_label TEXT, version_comment TEXT, data_file_handle_id INTEGER,
    modified_on TEXT NOT NULL, modified_by INTEGER NOT NULL, created_on TEXT NOT NULL,
    created_by INTEGER NOT NULL, PRIMARY KEY (entity_id, version_number));
CREATE TABLE IF NOT EXISTS acls (
    entity_id INTEGER PRIMARY KEY, etag TEXT NOT NULL, created_on TEXT NOT NULL,
    modified_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acl_entries (
    entity_id INTEGER NOT NULL, principal_id INTEGER NOT NULL, access_type TEXT NOT NULL,
    PRIMARY KEY (entity_id, principal_id, access_type));
CREATE TABLE IF NOT EXISTS access_requirements (
    id INTEGER PRIMARY KEY, entity_id INTEGER NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS access_approvals (
    requirement_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
    PRIMARY KEY (requirement_id, user_id));
CREATE TABLE IF NOT EXISTS file_handles (
    id INTEGER PRIMARY KEY, concrete_type TEXT NOT NULL, etag TEXT NOT NULL,
    created_by INTEGER NOT NULL, created_on TEXT NOT NULL, modified_on TEXT NOT NULL,
    content_type TEXT, content_md5 TEXT, content_size INTEGER, file_name TEXT,
    storage_location_id INTEGER, status TEXT NOT NULL DEFAULT 'AVAILABLE',
    bucket_name TEXT, key TEXT, external_url TEXT, is_preview INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS storage_locations (
    id INTEGER PRIMARY KEY, concrete_type TEXT NOT NULL, created_by INTEGER NOT NULL,
    created_on TEXT NOT NULL, etag TEXT NOT NULL, body TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS project_settings (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, settings_type TEXT NOT NULL,
    concrete_type TEXT NOT NULL, etag TEXT NOT NULL, locations TEXT NOT NULL,
    UNIQUE (project_id, settings_type));
CREATE TABLE IF NOT EXISTS multipart_uploads (
    id INTEGER PRIMARY KEY, started_by INTEGER NOT NULL, started_on TEXT NOT NULL,
    updated_on TEXT NOT NULL, request TEXT NOT NULL, request_hash TEXT NOT NULL,
    bucket TEXT NOT NULL, key TEXT NOT NULL, s3_upload_id TEXT NOT NULL,
    parts_state TEXT NOT NULL, part_md5s TEXT NOT NULL, state TEXT NOT NULL,
    result_file_handle_id INTEGER);
CREATE TABLE IF NOT EXISTS annotations (entity_id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS column_models (
    id INTEGER PRIMARY KEY, hash TEXT UNIQUE NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS views (
    entity_id INTEGER PRIMARY KEY, view_type_mask INTEGER NOT NULL, scope_ids TEXT NOT NULL,
    column_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS view_index (
    view_id INTEGER NOT NULL, entity_id INTEGER NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (view_id, entity_id));
CREATE TABLE IF NOT EXISTS async_jobs (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT NOT NULL, request TEXT NOT NULL,
    started_on TEXT NOT NULL, ready_at REAL NOT NULL, state TEXT NOT NULL, response TEXT,
    error_status INTEGER, error_reason TEXT);
"""

# First value handed out by each id sequence (well away from the fixed ids above).
SEQUENCE_STARTS = {
    "entity": 3000001,
    "user": 3400001,
    "file_handle": 100001,
    "storage_location": 50001,
    "project_setting": 7001,
    "multipart": 90001,
    "access_requirement": 9601,
    "column": 68001,
    "async_job": 7700001,
}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def synapse_date(value: dt.datetime | None = None) -> str:
    """The exact Synapse date shape: ``2024-05-01T12:00:00.000Z``."""
    value = (value or now()).astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_synapse_date(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def new_etag() -> str:
    return str(uuid.uuid4())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def syn_id(num: int) -> str:
    return f"syn{num}"


def parse_syn_id(text) -> int | None:
    """``syn123`` / ``123`` / 123 -> 123; anything else -> None."""
    if isinstance(text, int):
        return text
    if not isinstance(text, str):
        return None
    s = text.strip()
    if s.lower().startswith("syn"):
        s = s[3:]
    if "." in s:  # syn123.4 (version suffix) is not an entity id here
        return None
    return int(s) if s.isdigit() else None


class Store:
    """The emulator's SQLite database."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                     isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)
        with self.tx() as c:
            for name, start in SEQUENCE_STARTS.items():
                c.execute("INSERT OR IGNORE INTO sequences(name, next) VALUES (?, ?)", (name, start))
            self._seed_fixed(c)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def tx(self):
        """Run a block in one IMMEDIATE transaction; yields the connection."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                c.execute("COMMIT")

    # ---- sequences --------------------------------------------------------------------
    @staticmethod
    def next_id(c: sqlite3.Connection, name: str) -> int:
        row = c.execute("SELECT next FROM sequences WHERE name = ?", (name,)).fetchone()
        c.execute("UPDATE sequences SET next = next + 1 WHERE name = ?", (name,))
        return int(row["next"])

    # ---- fixed rows -------------------------------------------------------------------
    def _seed_fixed(self, c: sqlite3.Connection) -> None:
        stamp = synapse_date()
        for eid, name in ((ROOT_ID, "root"), (TRASH_ID, "trashcan")):
            if c.execute("SELECT 1 FROM entities WHERE id = ?", (eid,)).fetchone():
                continue
            c.execute(
                "INSERT INTO entities(id, name, parent_id, concrete_type, etag, created_on, created_by,"
                " modified_on, modified_by) VALUES (?, ?, NULL, ?, ?, ?, 1, ?, 1)",
                (eid, name, FOLDER, new_etag(), stamp, stamp))
            c.execute(
                "INSERT INTO versions(entity_id, version_number, version_label, modified_on,"
                " modified_by, created_on, created_by) VALUES (?, 1, '1', ?, 1, ?, 1)",
                (eid, stamp, stamp))

    # ---- users and tokens -------------------------------------------------------------
    def create_user(self, user_name: str, email: str | None = None, certified: bool = True,
                    is_admin: bool = False, display_name: str | None = None) -> int:
        with self.tx() as c:
            if c.execute("SELECT 1 FROM users WHERE user_name = ?", (user_name,)).fetchone():
                raise ValueError(f"user {user_name!r} already exists")
            uid = self.next_id(c, "user")
            c.execute(
                "INSERT INTO users(id, user_name, email, display_name, certified, is_admin, etag,"
                " created_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, user_name, email or f"{user_name}@example.org", display_name or user_name,
                 int(certified), int(is_admin), new_etag(), synapse_date()))
            return uid

    def issue_token(self, user_id: int, scopes=ALL_SCOPES, name: str = "emulator") -> str:
        """Return a new opaque personal access token (stored only as a hash)."""
        token = "synemu" + secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
        with self.tx() as c:
            c.execute("INSERT INTO tokens(token_hash, user_id, scopes, name, created_on)"
                      " VALUES (?, ?, ?, ?, ?)",
                      (hash_token(token), user_id, json.dumps(list(scopes)), name, synapse_date()))
        return token

    def user_for_token(self, token: str):
        """(user row, scopes) for a bearer token, or None."""
        with self.tx() as c:
            row = c.execute(
                "SELECT u.*, t.scopes AS token_scopes FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ?", (hash_token(token),)).fetchone()
        if row is None:
            return None
        return row, frozenset(json.loads(row["token_scopes"]))

    def user_by_name(self, user_name: str):
        with self.tx() as c:
            return c.execute("SELECT * FROM users WHERE user_name = ?", (user_name,)).fetchone()

    # ---- entity helpers shared by the API modules --------------------------------------
    @staticmethod
    def entity_row(c: sqlite3.Connection, eid: int):
        return c.execute("SELECT * FROM entities WHERE id = ?", (eid,)).fetchone()

    @staticmethod
    def ancestors(c: sqlite3.Connection, eid: int) -> list[int]:
        """Ids from ``eid`` up to (and including) the root: [eid, parent, ..., 4489]."""
        out = []
        cur = eid
        while cur is not None and len(out) < 200:
            out.append(cur)
            row = c.execute("SELECT parent_id FROM entities WHERE id = ?", (cur,)).fetchone()
            cur = row["parent_id"] if row else None
        return out

    @staticmethod
    def in_trash(c: sqlite3.Connection, eid: int) -> bool:
        return TRASH_ID in Store.ancestors(c, eid)[1:]
