"""Durable records of staged files: what each one is for, so a crash loses nothing.

Every staged file ``<staging>/<stem>`` has a small JSON record ``<staging>.journal/<stem>.json``
written before the first byte of the file is accepted, and rewritten whenever what it says
changes. A write is atomic and durable: a temporary file is written and ``fsync``ed, renamed
over the record, and the directory is ``fsync``ed; a reader sees the old or the new record,
never a torn one, even after ``kill -9`` or a power cut.

A record says where the bytes belong and how far saving them got:

* ``parent_id``/``name``: the folder and name the file has on the mount (renames follow);
  ``entity_id``: the File it is a new version of, or None for a new file;
* ``base_handle_id``/``base_version``: the file handle (and version number) the target had
  when the staged copy started from it (or after this mount's last save of it): on recovery
  the target is updated only if it still holds that handle;
* ``state``: ``open`` (being written: content may be half written), ``closing`` (a save
  started: the content is complete), ``uploaded`` (the bytes are file handle
  ``file_handle_id``; only the entity update is left), ``saved`` (Synapse holds exactly
  these bytes), ``conflict`` (the target changed meanwhile; kept for the user);
* ``unlinked``: the name was removed while the file was open (nothing to save);
* ``user_id``: whose data it is (only that user's mounts and commands touch it); ``pid``:
  the daemon writing it (a live pid means "in use"); storage location/bucket/base key of the
  target folder, for uploads without a mount.

No module state; the functions are safe in any thread (each record has one writer at a time:
the mount that owns it, or ``synfs recover`` under the record's lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from pathlib import Path

from synfs.localdirs import private_dir

log = logging.getLogger(__name__)

OPEN, CLOSING, UPLOADED, SAVED, CONFLICT = "open", "closing", "uploaded", "saved", "conflict"
STATES = (OPEN, CLOSING, UPLOADED, SAVED, CONFLICT)
SUFFIX = ".json"


@dataclasses.dataclass
class Record:
    stem: str                         # the staged file's name in the staging directory
    parent_id: int | None = None
    name: str = ""
    entity_id: int | None = None
    base_handle_id: int | None = None
    base_version: int | None = None
    state: str = OPEN
    file_handle_id: int | None = None
    unlinked: bool = False
    user_id: str | None = None
    pid: int | None = None
    storage_location_id: int | None = None
    bucket: str | None = None
    base_key: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    updated: float = dataclasses.field(default_factory=time.time)
    note: str = ""

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        fields = {f.name for f in dataclasses.fields(cls)}
        rec = cls(**{k: v for k, v in data.items() if k in fields})
        if rec.state not in STATES:
            raise ValueError(f"unknown state {rec.state!r}")
        return rec


def journal_dir(staging_root: Path) -> Path:
    staging_root = Path(staging_root)
    return staging_root.with_name(staging_root.name + ".journal")


def record_path(staging_root: Path, stem: str) -> Path:
    return journal_dir(staging_root) / (stem + SUFFIX)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(staging_root: Path, rec: Record) -> None:
    """Replace the record atomically and durably (tmp + fsync + rename + fsync dir)."""
    folder = journal_dir(staging_root)
    private_dir(folder)
    rec.updated = time.time()
    final = folder / (rec.stem + SUFFIX)
    tmp = folder / f".{rec.stem}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(dataclasses.asdict(rec), sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(folder)


def remove(staging_root: Path, stem: str) -> None:
    """Drop a record (after its data file is gone or saved)."""
    folder = journal_dir(staging_root)
    try:
        (folder / (stem + SUFFIX)).unlink()
    except FileNotFoundError:
        return
    fsync_dir(folder)


def read(staging_root: Path, stem: str) -> Record | None:
    try:
        return Record.from_json(json.loads(record_path(staging_root, stem).read_text()))
    except FileNotFoundError:
        return None


def scan(staging_root: Path) -> tuple[list[Record], list[str]]:
    """Every readable record, and one line per record that could not be read."""
    folder = journal_dir(staging_root)
    records, bad = [], []
    if not folder.is_dir():
        return records, bad
    for path in sorted(folder.glob("*" + SUFFIX)):
        try:
            records.append(Record.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            bad.append(f"{path}: unreadable record ({exc})")
    return records, bad


def pid_alive(pid: int | None) -> bool:
    """Is ``pid`` a live process other than this one (a mount still writing the file)?"""
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"synfs" in cmdline


@contextlib.contextmanager
def locked(staging_root: Path, stem: str, blocking: bool = False):
    """An exclusive lock on one record (mount start-up recovery vs ``synfs recover``).
    Yields False if another process holds it and ``blocking`` is False."""
    folder = journal_dir(staging_root)
    private_dir(folder)
    fd = os.open(folder / f".{stem}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def drop_lock(staging_root: Path, stem: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (journal_dir(staging_root) / f".{stem}.lock").unlink()
