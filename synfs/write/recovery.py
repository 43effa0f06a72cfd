"""Finishing what a crash left in the staging area: kept files, their rules, and saving them.

After ``kill -9`` (or a power cut) the staging area holds files with their records
(``synfs.write.journal``). This module owns what happens to them, for the mount's start-up
(``StartupRecovery``, driven by ``synfs.service.daemon``) and for ``synfs recover``
(``synfs.cli.recover``), which works without a mount:

* ``scan`` finds every kept file: a record with its data file (a data file without a record,
  from an older synfs, is listed too). A record whose ``pid`` is a live synfs process belongs
  to a running mount and is left alone.
* Automatically (at the next mount of the same user and cache directory) only a file whose
  save had started is saved (state ``closing``: complete content; ``uploaded``: only the
  entity update is left, no upload again), and only if the target still holds the file handle
  the staged copy was based on; if the target changed meanwhile (or a new file's name was
  taken) the file is kept and reported as a conflict. A file whose writer never closed it
  (``open``) is kept and never saved on its own: its content may be half written. ``saved``
  records (Synapse holds the bytes) and files removed before the crash are dropped.
* ``Saver.save`` (blocking, worker threads) does one save; ``force`` (``synfs recover save``)
  also saves ``open`` files and conflicts (as a new version of the changed target, whose
  history keeps the other content; a deleted target's name gets a new file).

Nothing is deleted unless Synapse holds the bytes or the user said ``discard``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from pathlib import Path

import trio

from synfs import errors
from synfs.remote.writer import md5_and_size
from synfs.write import journal

log = logging.getLogger(__name__)

AUTO_STATES = (journal.CLOSING, journal.UPLOADED)


@dataclasses.dataclass
class Kept:
    """One kept staged file."""

    path: Path
    size: int
    record: journal.Record | None      # None: a data file without a record (older synfs)
    in_use: bool = False               # a running mount is writing it

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def state(self) -> str:
        return self.record.state if self.record else "unknown"

    def describe(self) -> dict:
        rec = self.record
        out = {"id": self.id, "staged": str(self.path), "size": self.size, "state": self.state,
               "in_use": self.in_use}
        if rec is not None:
            out.update(name=rec.name, folder=f"syn{rec.parent_id}" if rec.parent_id else None,
                       entity=f"syn{rec.entity_id}" if rec.entity_id else None,
                       user_id=rec.user_id, unlinked=rec.unlinked, note=rec.note,
                       updated=rec.updated)
        return out


def scan(staging_root: Path) -> tuple[list[Kept], list[str]]:
    """Every kept file in the staging area, and one line per problem found."""
    staging_root = Path(staging_root)
    records, problems = journal.scan(staging_root)
    found: list[Kept] = []
    seen: set[str] = set()
    for rec in records:
        path = staging_root / rec.stem
        seen.add(rec.stem)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            journal.remove(staging_root, rec.stem)     # nothing staged: nothing to keep
            continue
        found.append(Kept(path, size, rec, in_use=journal.pid_alive(rec.pid)))
    if staging_root.is_dir():
        for path in sorted(staging_root.iterdir()):
            if path.is_file() and path.name not in seen and not path.name.startswith("."):
                found.append(Kept(path, path.stat().st_size, None))
    return found, problems


def discard(staging_root: Path, kept: Kept) -> None:
    try:
        kept.path.unlink()
    except FileNotFoundError:
        pass
    journal.remove(staging_root, kept.id)
    journal.drop_lock(staging_root, kept.id)


class Conflict(errors.SynfsError):
    """The target changed since the staged copy was made; kept for the user to decide."""


class Saver:
    """Saves one kept file, blocking (worker threads or the ``synfs recover`` command)."""

    def __init__(self, client, writer, uploader):
        self.client = client            # SynapseClient: get_entity, child_id
        self.writer = writer            # SynapseWriter
        self.uploader = uploader        # S3Uploader

    def save(self, staging_root: Path, kept: Kept, force: bool = False) -> str:
        """Save it (then delete it); returns what happened. Raises ``Conflict`` (kept) or any
        ``SynfsError`` (kept, nothing changed in Synapse but maybe an unused file handle)."""
        rec = kept.record
        if rec is None or rec.parent_id is None:
            raise errors.InvalidRequest(f"{kept.id} has no record: where it belongs is unknown")
        if rec.unlinked:
            discard(staging_root, kept)
            return "dropped: it was removed before the crash"
        if rec.state == journal.SAVED:
            discard(staging_root, kept)
            return "dropped: Synapse already holds it"
        if rec.state not in AUTO_STATES and not force:
            raise Conflict(f"{rec.name}: its writer never closed it (content may be half "
                           "written); `synfs recover save` it to keep it anyway")
        target = self._target(rec, force)
        if target == "done":
            discard(staging_root, kept)
            return f"dropped: syn{rec.entity_id} already holds it"
        handle_id = rec.file_handle_id if rec.state == journal.UPLOADED else None
        if handle_id is None:
            handle_id = self._upload(rec, kept.path)
            rec.state, rec.file_handle_id = journal.UPLOADED, handle_id
            journal.write(staging_root, rec)
        if target is None:
            eid = self.writer.create_file(rec.parent_id, rec.name, handle_id)
            what = f"saved {rec.name} as a new file syn{eid} in syn{rec.parent_id}"
        else:
            self.writer.new_version(target, handle_id)
            what = f"saved {rec.name} as a new version of syn{target}"
        discard(staging_root, kept)
        return what

    def _target(self, rec: journal.Record, force: bool):
        """The entity to version (None: create a new file; "done": already saved)."""
        if rec.entity_id is not None:
            try:
                ent = self.client.get_entity(rec.entity_id)
            except errors.NotFound:
                if not force:
                    raise Conflict(f"{rec.name}: syn{rec.entity_id} is gone (deleted)") from None
                rec.entity_id = None
                return self._target(rec, force)
            current = ent.file_handle_id
            if rec.file_handle_id is not None and current == rec.file_handle_id:
                return "done"
            if current != rec.base_handle_id and not force:
                raise Conflict(f"{rec.name}: syn{ent.id} changed since it was opened "
                               f"(handle {current}, expected {rec.base_handle_id})")
            return ent.id
        existing = self.client.child_id(rec.parent_id, rec.name)
        if existing is None:
            return None
        ent = self.client.get_entity(existing)
        if rec.file_handle_id is not None and ent.file_handle_id == rec.file_handle_id:
            rec.entity_id = ent.id
            return "done"
        if not force:
            raise Conflict(f"{rec.name}: syn{rec.parent_id} has a file of that name made "
                           f"elsewhere meanwhile (syn{ent.id})")
        return ent.id

    def _upload(self, rec: journal.Record, path: Path) -> int:
        slid = rec.storage_location_id
        if slid is None or rec.bucket is None:
            raise errors.InvalidRequest(f"{rec.name}: the record names no storage location")
        if self.writer.owns_storage_location(slid):
            prefix = f"{rec.base_key}/" if rec.base_key else ""
            key = f"{prefix}{uuid.uuid4()}/{rec.name}"
            md5, size = self.uploader.upload(slid, rec.parent_id, rec.bucket, key, str(path))
            return self.writer.external_s3_handle(bucket=rec.bucket, key=key,
                                                  file_name=rec.name, md5=md5, size=size,
                                                  storage_location_id=slid)
        md5, size = md5_and_size(str(path))
        if size == 0:
            raise errors.InvalidRequest(f"{rec.name}: Synapse's upload for users who do not own "
                                        "the storage location rejects empty files")
        return self.writer.multipart_upload(str(path), file_name=rec.name, md5=md5, size=size,
                                            storage_location_id=slid)


class StartupRecovery:
    """A mount's start-up: find what an earlier crash kept, count it, report it, finish it.

    ``scan`` runs before the mount serves (disk only); ``run`` is a trio task that saves the
    complete files in worker threads and updates ``writes.recovery`` (shown by
    ``synfs status`` as ``uploads.kept`` / ``recovered`` / ``conflicts``)."""

    def __init__(self, staging, writes, saver: Saver | None, user_id: str | None):
        self.staging = staging
        self.writes = writes
        self.saver = saver
        self.user_id = user_id
        self.todo: list[Kept] = []

    def _entry(self, kept: Kept, why: str) -> dict:
        out = kept.describe()
        out["why"] = why
        out["at"] = time.time()
        return out

    def scan(self) -> None:
        found, problems = scan(self.staging.root)
        for line in problems:
            log.warning("staging: %s", line)
        lists = self.writes.recovery
        for kept in found:
            rec = kept.record
            if kept.in_use:
                continue
            if rec is not None and rec.user_id not in (None, self.user_id):
                continue                      # another user's data: their mounts recover it
            self.staging.adopt(kept.size)
            if rec is None:
                why = "no record (older synfs): `synfs recover` to inspect or discard"
            elif rec.unlinked or rec.state == journal.SAVED or (
                    rec.state in AUTO_STATES and self.saver is not None):
                self.todo.append(kept)
                why = "to be saved" if rec.state in AUTO_STATES and not rec.unlinked else (
                    "to be dropped")
            elif rec.state == journal.CONFLICT:
                why = rec.note or "conflict"
            else:
                why = "never closed by its writer: kept, not saved on its own"
            log.warning("found %s kept by an earlier mount: %s (%d bytes, state %s): %s",
                        kept.path, rec.name if rec else kept.id, kept.size, kept.state, why)
            if kept not in self.todo:
                (lists["conflicts"] if rec is not None and rec.state == journal.CONFLICT
                 else lists["kept"]).append(self._entry(kept, why))

    async def run(self) -> None:
        lists = self.writes.recovery
        for kept in self.todo:
            rec = kept.record
            try:
                what = await trio.to_thread.run_sync(self._save_locked, kept)
            except Conflict as exc:
                rec.state, rec.note = journal.CONFLICT, exc.message
                journal.write(self.staging.root, rec)
                log.warning("kept %s: %s", kept.path, exc.message)
                lists["conflicts"].append(self._entry(kept, exc.message))
                continue
            except errors.SynfsError as exc:
                log.error("could not save %s (kept in %s): %s; it is tried again at the next "
                          "mount, or run `synfs recover save %s`", rec.name, kept.path,
                          exc.message, kept.id)
                lists["kept"].append(self._entry(kept, f"save failed: {exc.message}"))
                continue
            except Exception as exc:  # noqa: BLE001 - a start-up task must not kill the mount
                log.exception("could not save %s (kept in %s)", rec.name, kept.path)
                lists["kept"].append(self._entry(kept, f"save failed: {exc}"))
                continue
            if what is None:
                lists["kept"].append(self._entry(kept, "in use by `synfs recover`"))
                continue
            self.staging.disown(kept.size)
            log.warning("recovered %s: %s", kept.path, what)
            lists["recovered"].append(self._entry(kept, what))

    def _save_locked(self, kept: Kept) -> str | None:
        with journal.locked(self.staging.root, kept.id) as got:
            if not got or not kept.path.exists():
                return None
            return self.saver.save(self.staging.root, kept)


def default_staging_dir(cache_dir: Path | None) -> Path:
    """Where ``synfs mount`` stages writes for ``--cache-dir`` (None: the default)."""
    if cache_dir is not None:
        return Path(cache_dir) / "staging"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "synfs" / "staging"
