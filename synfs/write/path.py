"""Writes in the filesystem core: every change becomes a Synapse entity or version.

Mixed into ``synfs.fs.Filesystem``; trio thread only. Writes are possible only in folders
whose storage location is an external S3 bucket with STS, for a user with the needed
permission, on a mount that is not read-only; elsewhere the first call that would write gets
EROFS (wrong storage or read-only mount) or EACCES (no permission).

Bytes are staged in a local file per open file (``synfs.write.staging``, with a durable record
per file, ``synfs.write.journal``) and saved on ``flush`` (every ``close``) when bytes were
written since the last save, on ``fsync`` when anything changed, and at the last ``release``
for what is still owed (a new file never written, e.g. ``touch``, becomes an empty File then; a
file opened with ``O_TRUNC`` and closed unwritten, an empty version). So ``echo hi > f`` (the
shell closes a first descriptor before writing) makes one version, not an empty one first.
A save is upload, file handle, then a new FileEntity or a new version; the call returns only
once Synapse holds it. On failure it returns the error, Synapse keeps the old content, and
the file stays open in this mount (visible, readable, with its staged bytes) after its last
close, until a later ``fsync``/close saves it or it is unlinked; its record lets the next mount
or ``synfs recover`` finish the save after a crash (``synfs.write.recovery``).

New files have no Synapse id until their first commit, so they get temporary inode numbers
from the tree; once committed, the temporary inode stays an alias of the new entity for as
long as the kernel remembers it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Callable

import trio

from synfs import errors
from synfs.remote.writer import WriteTarget
from synfs.synapse.models import Entity, Kind
from synfs.write import journal
from synfs.write.names import check_key, check_name
from synfs.write.ports import TreePort

log = logging.getLogger(__name__)

COPY_CHUNK = 8 * 1024 * 1024


@dataclasses.dataclass(eq=False)
class WriteHandle:
    """An open file that may be written; shared by every fh opened on it meanwhile."""

    ino: int
    parent_id: int
    name: str
    target: WriteTarget
    entity_id: int | None = None      # None until a new file's first commit
    base: Entity | None = None        # the version the staged copy started from
    staged: object | None = None      # StagedFile
    dirty: bool = False               # content differs from what Synapse holds
    written: bool = False             # bytes written (or an explicit truncate) since last save
    failed: bool = False              # the last save failed (retried at the next fsync/close)
    settled: trio.Event | None = None  # set when the save owed at the last release is done
    unlinked: bool = False
    refs: int = 0
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)

    @property
    def size(self) -> int:
        if self.staged is not None:
            return self.staged.size
        if self.base is not None and self.base.file_handle is not None:
            return self.base.file_handle.size
        return 0


class WritePath:
    """Files open for writing, and saving them (see the module docstring)."""

    def __init__(self, tree: TreePort, remote, writer, staging, read_only: bool,
                 new_fh: Callable[[], int]):
        self.tree = tree
        self.remote = remote
        self.new_fh = new_fh
        self.writer = writer
        self.staging = staging
        self.read_only = read_only or writer is None
        self._writes: dict[int, WriteHandle] = {}          # fh -> handle
        self._active: dict[int, WriteHandle] = {}          # ino -> handle being written
        self._pending: dict[tuple[int, str], int] = {}     # (parent id, name) -> temp ino
        self._dest_cache: dict[int, object] = {}
        self._failed_saves: collections.deque = collections.deque(maxlen=50)
        self._owed: list[WriteHandle] = []                 # saves owed at a last release
        self.recovery: dict = {"kept": [], "recovered": [], "conflicts": []}

    # ---- where writing is allowed -----------------------------------------------------------
    async def write_target(self, folder_id: int) -> WriteTarget:
        if self.read_only:
            raise errors.ReadOnly("this mount is read-only")
        dest = self._dest_cache.get(folder_id)
        if dest is None:
            dest = await self.writer.upload_destination(folder_id)
            self._dest_cache[folder_id] = dest
        if not (dest.is_external_s3 and dest.sts_enabled):
            kind = "an external bucket without STS" if dest.is_external_s3 else (
                "Synapse-managed storage")
            raise errors.ReadOnly(f"syn{folder_id} is on {kind}; synfs writes only to "
                                  "external-bucket STS folders")
        return WriteTarget(folder_id, dest.storage_location_id, dest.bucket, dest.base_key)

    @staticmethod
    def require(ent: Entity, allowed: bool, access: str) -> None:
        if not allowed:
            raise errors.PermissionDenied(f"no {access} permission on syn{ent.id} ({ent.name})",
                                          entity=f"syn{ent.id}")

    async def folder_for_write(self, folder_id: int, access: str) -> tuple[Entity, WriteTarget]:
        folder = await self.tree.entity(folder_id, fresh=True)
        if not folder.kind.is_container:
            raise errors.NotADirectory(f"syn{folder_id} is not a folder")
        target = await self.write_target(folder_id)
        self.require(folder, {"CREATE": folder.can_create, "DELETE": folder.can_delete,
                               "UPDATE": folder.can_update}[access], access)
        return folder, target

    # ---- unsaved new files ---------------------------------------------------------------
    def pending_ino(self, parent_id: int, name: str) -> int | None:
        return self._pending.get((parent_id, name))

    def set_pending(self, parent_id: int, name: str, ino: int) -> None:
        self._pending[(parent_id, name)] = ino

    def forget_pending(self, parent_id: int, name: str, unlink: bool = True) -> None:
        """The unsaved new file's name is gone; with ``unlink``, it will never be saved
        (handles still open keep reading and writing their data)."""
        ino = self._pending.pop((parent_id, name), None)
        if unlink and ino in self._active:
            self.mark_unlinked(self._active[ino])

    def mark_unlinked(self, h: WriteHandle) -> None:
        """The handle's file was removed: nothing of it will be saved; a handle kept only for
        a failed save goes now."""
        h.unlinked = True
        if h.staged is not None:
            h.staged.note(unlinked=True)
        if h.refs == 0 and h.settled is None:
            self._drop(h)

    def pending_names(self, parent_id: int) -> dict[str, int]:
        return {n: ino for (p, n), ino in self._pending.items() if p == parent_id}

    def active_handle(self, ino: int) -> WriteHandle | None:
        return self._active.get(ino)

    # ---- handles ------------------------------------------------------------------------------
    def _attach(self, h: WriteHandle) -> int:
        fh = self.new_fh()
        h.refs += 1
        self._writes[fh] = h
        self._active[h.ino] = h
        return fh

    @staticmethod
    def record_fields(h: WriteHandle) -> dict:
        """What the staged file's durable record says about where its bytes belong."""
        base = h.base
        return dict(parent_id=h.parent_id, name=h.name, entity_id=h.entity_id,
                    base_handle_id=base.file_handle_id if base is not None else None,
                    base_version=base.version if base is not None else None,
                    storage_location_id=h.target.storage_location_id,
                    bucket=h.target.bucket, base_key=h.target.base_key)

    def retarget(self, h: WriteHandle, parent_id: int, name: str, target: WriteTarget,
                 entity: Entity | None = None) -> None:
        """The handle's file was renamed (onto ``entity``, whose next version it becomes)."""
        h.parent_id, h.name, h.target = parent_id, name, target
        if entity is not None:
            h.entity_id, h.base = entity.id, entity
        if h.staged is not None:
            h.staged.note(**self.record_fields(h))

    def _staging_new(self, h: WriteHandle):
        return self.staging.new(h.name, **self.record_fields(h))

    async def _ensure_staged(self, h: WriteHandle, keep_bytes: int | None = None) -> None:
        """Give the handle its local copy: the base version's bytes (up to ``keep_bytes``)."""
        if h.staged is not None:
            return
        staged = self._staging_new(h)
        try:
            size = h.size if keep_bytes is None else min(keep_bytes, h.size)
            offset = 0
            while offset < size:
                data = await self.remote.read(h.base, offset, min(COPY_CHUNK, size - offset))
                if not data:
                    raise errors.Unavailable(f"syn{h.entity_id}: content ended at {offset}")
                staged.write(offset, data)
                offset += len(data)
        except BaseException:
            staged.discard()
            raise
        h.staged = staged

    async def open_for_write(self, ino: int, truncate: bool) -> int:
        h = self._active.get(ino)
        if h is None:
            eid = self.tree.entity_id(ino)
            ent = await self.tree.entity(eid, fresh=True)
            if ent.kind.is_container:
                raise errors.IsADirectory(f"syn{ent.id} is a folder")
            target = await self.write_target(ent.parent_id)
            self.require(ent, ent.can_update, "UPDATE")
            if ent.file_handle is None:
                self.require(ent, False, "DOWNLOAD")
            h = WriteHandle(ino=ino, parent_id=ent.parent_id, name=ent.name, target=target,
                            entity_id=ent.id, base=ent)
        fh = self._attach(h)
        if truncate:
            await self._truncate(h, 0, explicit=False)
        return fh

    def share_for_read(self, ino: int) -> int | None:
        """A read-only open of a file this mount is writing reads the written bytes."""
        h = self._active.get(ino)
        return self._attach(h) if h is not None else None

    async def create(self, parent_ino: int, name: str, exclusive: bool = False,
                     truncate: bool = False) -> tuple[int, WriteHandle]:
        """``open(O_CREAT)`` of a name the kernel did not know. If Synapse has it after all
        (created elsewhere meanwhile), it is opened for writing unless ``O_EXCL``."""
        check_name(name)
        parent_id = self.tree.entity_id(parent_ino)
        temp = self.pending_ino(parent_id, name)
        if temp is not None and not exclusive and temp in self._active:
            fh = self._attach(self._active[temp])
            if truncate:
                await self._truncate(self._active[temp], 0, explicit=False)
            return fh, self._active[temp]
        if temp is not None:
            raise errors.AlreadyExists(f"{name} is being created")
        _, target = await self.folder_for_write(parent_id, "CREATE")
        check_key(target.base_key, name)
        self.tree.invalidate(parent_id=parent_id)
        child = (await self.tree.listing(parent_id)).get(name)
        if child is not None:
            if exclusive or child.kind is not Kind.FILE:
                raise errors.AlreadyExists(f"{name} exists in syn{parent_id}")
            ino = self.tree.ino_of(child.id)
            fh = await self.open_for_write(ino, truncate)
            return fh, self._writes[fh]
        ino = self.tree.new_temp_ino()
        h = WriteHandle(ino=ino, parent_id=parent_id, name=name, target=target)
        h.staged = self._staging_new(h)
        h.dirty = True                  # saved at the first close after a write, or at release
        self._pending[(parent_id, name)] = ino
        fh = self._attach(h)
        return fh, h

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self._writable(fh)
        async with h.lock:
            await self._ensure_staged(h)
            h.staged.note(state=journal.OPEN)      # durable before the bytes are accepted
            written = h.staged.write(offset, data)
            h.dirty = h.written = True
            return written

    async def read_written(self, fh: int, offset: int, size: int) -> bytes:
        h = self._writable(fh)
        if h.staged is None:
            return await self.remote.read(h.base, offset, size) if h.base else b""
        return h.staged.read(offset, size)

    def _writable(self, fh: int) -> WriteHandle:
        h = self._writes.get(fh)
        if h is None:
            raise errors.SynfsError("unknown file handle")
        return h

    async def _truncate(self, h: WriteHandle, size: int, explicit: bool = True) -> None:
        """Cut or extend the staged copy; ``explicit`` (truncate/ftruncate, not ``O_TRUNC`` at
        open) counts as written, so the next close saves it."""
        async with h.lock:
            if h.staged is None:
                await self._ensure_staged(h, keep_bytes=size)
            if size == h.staged.size and not explicit and not h.dirty and h.base is not None \
                    and h.base.file_handle is not None and h.base.file_handle.size == size:
                return                          # O_TRUNC of an empty file changes nothing
            h.staged.note(state=journal.OPEN)
            h.staged.truncate(size)
            h.dirty = True
            h.written = h.written or explicit

    async def flush(self, fh: int) -> None:
        """``close``: save only if bytes were written since the last save."""
        h = self._writes.get(fh)
        if h is not None and h.written:
            await self.commit(h)

    async def fsync(self, fh: int) -> None:
        """``fsync``: save whatever differs from Synapse (also retries a failed save)."""
        h = self._writes.get(fh)
        if h is not None:
            await self.commit(h)

    async def commit(self, h: WriteHandle) -> None:
        """Make Synapse hold the handle's bytes; returns only once it does."""
        async with h.lock:
            if not h.dirty or h.unlinked:
                return
            try:
                await self._commit_locked(h)
                h.failed = False
            except errors.SynfsError as exc:
                h.failed = True
                self._failed_saves.append({
                    "name": h.name, "folder": f"syn{h.parent_id}", "error": type(exc).__name__,
                    "staged": str(h.staged.path) if h.staged else None, "at": time.time()})
                log.error("saving %s (in syn%d) failed: %s; the data stays in %s and Synapse "
                          "still holds the previous content", h.name, h.parent_id, exc,
                          h.staged.path if h.staged else "(nothing staged)")
                raise

    async def _commit_locked(self, h: WriteHandle) -> None:
        if h.staged is None:
            await self._ensure_staged(h)
        rec = h.staged.record
        if rec.state == journal.UPLOADED and rec.file_handle_id is not None:
            handle_id = rec.file_handle_id      # uploaded before a failed entity update
        else:
            h.staged.sync()
            h.staged.note(state=journal.CLOSING)
            handle_id = await self.writer.store_bytes(h.target, h.staged.path, h.name)
            h.staged.note(state=journal.UPLOADED, file_handle_id=handle_id)
        created = h.entity_id is None
        if h.entity_id is None:
            try:
                eid = await self.writer.create_file(h.parent_id, h.name, handle_id)
            except errors.AlreadyExists:   # created elsewhere meanwhile: last close wins
                self.tree.invalidate(parent_id=h.parent_id)
                child = (await self.tree.listing(h.parent_id)).get(h.name)
                if child is None:
                    raise
                eid = child.id
                await self.writer.new_version(eid, handle_id)
            self._pending.pop((h.parent_id, h.name), None)
            h.entity_id = eid
            self.tree.alias(h.ino, eid)
        else:
            await self.writer.new_version(h.entity_id, handle_id)
        h.dirty = h.written = False
        h.staged.note(state=journal.SAVED, entity_id=h.entity_id, base_handle_id=handle_id,
                      file_handle_id=None)
        self.tree.invalidate(entity_id=h.entity_id, parent_id=h.parent_id, name=h.name)
        if created:
            log.info("saved %s as a new file syn%d in syn%d", h.name, h.entity_id, h.parent_id)
        else:
            log.info("saved %s as a new version of syn%d", h.name, h.entity_id)

    def release_write(self, fh: int) -> bool:
        """Drop one reference; returns False when fh was not a write-capable handle."""
        h = self._writes.pop(fh, None)
        if h is None:
            return False
        h.refs -= 1
        if h.refs > 0:
            return True
        if h.dirty and not h.unlinked and h.staged is not None:
            if h.failed:        # stays visible with its data; the next fsync/close retries
                log.warning("%s (in syn%d) is not saved; it stays on this mount with its data "
                            "in %s until a later fsync/close saves it or it is removed",
                            h.name, h.parent_id, h.staged.path)
            elif h.settled is None:
                h.staged.note(state=journal.CLOSING)    # every writer closed: content complete
                h.settled = trio.Event()
                self._owed.append(h)
            return True
        self._drop(h)
        return True

    def _drop(self, h: WriteHandle) -> None:
        if self._active.get(h.ino) is h:
            del self._active[h.ino]
        if h.staged is not None:
            if h.dirty and not h.unlinked:
                h.staged.keep(f"{h.name} in syn{h.parent_id} was never saved to Synapse")
            else:
                h.staged.discard()
        if h.entity_id is None and self._pending.get((h.parent_id, h.name)) == h.ino:
            del self._pending[(h.parent_id, h.name)]
        self.tree.drop_alias_if_unused(h.ino)

    async def settle(self) -> None:
        """Make the saves owed at last releases (a new file never written, an ``O_TRUNC``
        closed unwritten); called after ``release`` (which cannot wait or report)."""
        while self._owed:
            h = self._owed.pop(0)
            try:
                await self.commit(h)
            except errors.SynfsError:
                pass                            # logged and listed as failed by commit
            except Exception:  # noqa: BLE001 - a release path must never raise
                h.failed = True
                log.exception("saving %s failed", h.name)
            finally:
                if h.settled is not None:
                    h.settled.set()
                    h.settled = None
            if h.refs == 0 and (not h.dirty or h.unlinked):
                self._drop(h)

    async def wait_settled(self, ino: int) -> None:
        """Wait for the save owed at the last release of ``ino`` (so its id is known)."""
        h = self._active.get(ino)
        if h is not None and h.settled is not None:
            await h.settled.wait()

    # ---- attributes -----------------------------------------------------------------------------
    async def set_size(self, ino: int, fh: int | None, size: int) -> None:
        """``truncate``/``ftruncate``: on an open handle, or on a path (open, cut, save)."""
        h = self._writes.get(fh) if fh is not None else self._active.get(ino)
        if h is not None:
            await self._truncate(h, size)
            if h.refs == 0:                     # kept after a failed save: nobody will close it
                await self.commit(h)
            return
        tmp_fh = await self.open_for_write(ino, truncate=False)
        try:
            h2 = self._writes[tmp_fh]
            await self._truncate(h2, size)
            await self.commit(h2)
        finally:
            self.release_write(tmp_fh)

    async def check_metadata_change(self, ino: int, fh: int | None) -> None:
        """chmod/chown/utimes are accepted (and ignored) only where writing is possible."""
        h = self._writes.get(fh) if fh is not None else self._active.get(ino)
        if h is None:
            ent = await self.tree.entity(self.tree.entity_id(ino))
            folder = ent.id if ent.kind.is_container else ent.parent_id
            await self.write_target(folder)     # EROFS outside writable folders

    def status(self) -> dict:
        """Files being written, those not yet saved, and saves that failed (data kept)."""
        open_handles = set(self._writes.values())
        handles = open_handles | set(self._active.values())    # with those kept after failures
        rec = self.recovery
        return {"pending": sum(1 for h in handles if h.dirty),
                "unsaved": [{"name": h.name, "folder": f"syn{h.parent_id}",
                             "staged": str(h.staged.path) if h.staged else None,
                             "open": h.refs > 0}
                            for h in handles if h.dirty],
                "failed": list(self._failed_saves),
                "open_for_write": len(open_handles),
                "staging_bytes": self.staging.used if self.staging else 0,
                # what earlier (crashed) mounts left: see synfs.write.recovery
                "kept": list(rec["kept"]), "recovered": list(rec["recovered"]),
                "conflicts": list(rec["conflicts"]),
                "kept_count": len(rec["kept"]), "recovered_count": len(rec["recovered"]),
                "conflicts_count": len(rec["conflicts"]),
                "kept_bytes": self.staging.kept_bytes if self.staging else 0}

