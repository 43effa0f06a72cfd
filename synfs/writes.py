"""Writes in the filesystem core: every change becomes a Synapse entity or version.

Mixed into ``synfs.fs.Filesystem``; trio thread only. Writes are possible only in folders
whose storage location is an external S3 bucket with STS, for a user with the needed
permission, on a mount that is not read-only; elsewhere the first call that would write gets
EROFS (wrong storage or read-only mount) or EACCES (no permission).

Bytes are staged in a local file per open file (``synfs.staging``) and committed on
``flush`` (every ``close``) and ``fsync``: upload, file handle, then a new FileEntity or a new
version. The call returns only once Synapse holds the new version; on failure it returns the
error, Synapse keeps the old content, and the staged bytes stay on disk (the log says where).

New files have no Synapse id until their first commit, so they get temporary inode numbers
(from 2**48 up); once committed, the temporary inode stays an alias of the new entity for as
long as the kernel remembers it. A rename over an existing file makes the source's content a
new version of the target (so the target's history is kept) and trashes the source entity.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import stat
import time

import trio

from synfs import errors
from synfs.remote_write import WriteTarget
from synfs.synapse.models import Entity, Kind

log = logging.getLogger(__name__)

TEMP_INO_BASE = 1 << 48
NAME_RE = re.compile(r"^[a-zA-Z0-9,_. \-+()']+$")
MAX_NAME = 256
COPY_CHUNK = 8 * 1024 * 1024


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise errors.NameTooLong(f"{name[:40]}...: Synapse names are at most {MAX_NAME} characters")
    if not NAME_RE.match(name) or name != name.strip():
        raise errors.InvalidName(
            f"{name!r}: Synapse names may only contain letters, numbers, spaces, underscores, "
            "hyphens, periods, plus signs, apostrophes, commas and parentheses, and may not "
            "start or end with a space")


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
    dirty: bool = False
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


class WriteOps:
    """Write operations of ``Filesystem`` (see the module docstring)."""

    # ---- set-up (called from Filesystem.__init__) ------------------------------------------
    def _init_writes(self, writer, staging, read_only: bool) -> None:
        self.writer = writer
        self.staging = staging
        self.read_only = read_only or writer is None
        self._writes: dict[int, WriteHandle] = {}          # fh -> handle
        self._active: dict[int, WriteHandle] = {}          # ino -> handle being written
        self._pending: dict[tuple[int, str], int] = {}     # (parent id, name) -> temp ino
        self._ino_to_id: dict[int, int] = {}               # temp/aliased ino -> entity id
        self._id_to_ino: dict[int, int] = {}               # entity id -> ino the kernel knows
        self._next_temp = TEMP_INO_BASE
        self._dest_cache: dict[int, object] = {}
        self._failed_saves: collections.deque = collections.deque(maxlen=50)

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
    def _require(ent: Entity, allowed: bool, access: str) -> None:
        if not allowed:
            raise errors.PermissionDenied(f"no {access} permission on syn{ent.id} ({ent.name})",
                                          entity=f"syn{ent.id}")

    async def _folder_for_write(self, folder_id: int, access: str) -> tuple[Entity, WriteTarget]:
        folder = await self.entity(folder_id, fresh=True)
        if not folder.kind.is_container:
            raise errors.NotADirectory(f"syn{folder_id} is not a folder")
        target = await self.write_target(folder_id)
        self._require(folder, {"CREATE": folder.can_create, "DELETE": folder.can_delete,
                               "UPDATE": folder.can_update}[access], access)
        return folder, target

    # ---- inode bookkeeping --------------------------------------------------------------------
    def _temp_ino(self) -> int:
        self._next_temp += 1
        return self._next_temp

    def _alias(self, ino: int, entity_id: int) -> None:
        old = self._ino_to_id.get(ino)
        if old is not None and self._id_to_ino.get(old) == ino:
            del self._id_to_ino[old]
        if ino != entity_id:
            self._ino_to_id[ino] = entity_id
            self._id_to_ino[entity_id] = ino

    def _drop_alias_if_unused(self, ino: int) -> None:
        if ino in self.lookups or ino in self._active:
            return
        eid = self._ino_to_id.pop(ino, None)
        if eid is not None and self._id_to_ino.get(eid) == ino:
            del self._id_to_ino[eid]

    def _invalidate(self, *, entity_id: int | None = None, parent_id: int | None = None,
                    name: str | None = None) -> None:
        if entity_id is not None:
            self._entities.pop(entity_id)
            self._stored.pop(entity_id)
            self._headers.pop(entity_id)
        if parent_id is not None:
            self._listings.pop(parent_id)
            self._rows.pop(parent_id)
            if name is not None:
                self._negative.pop((parent_id, name))

    def pending_ino(self, parent_id: int, name: str) -> int | None:
        return self._pending.get((parent_id, name))

    def pending_names(self, parent_id: int) -> dict[str, int]:
        return {n: ino for (p, n), ino in self._pending.items() if p == parent_id}

    def active_handle(self, ino: int) -> WriteHandle | None:
        return self._active.get(ino)

    # ---- handles ------------------------------------------------------------------------------
    def _attach(self, h: WriteHandle) -> int:
        fh = self._new_fh()
        h.refs += 1
        self._writes[fh] = h
        self._active[h.ino] = h
        return fh

    async def _ensure_staged(self, h: WriteHandle, keep_bytes: int | None = None) -> None:
        """Give the handle its local copy: the base version's bytes (up to ``keep_bytes``)."""
        if h.staged is not None:
            return
        staged = self.staging.new(h.name)
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
            eid = self.entity_id(ino)
            ent = await self.entity(eid, fresh=True)
            if ent.kind.is_container:
                raise errors.IsADirectory(f"syn{ent.id} is a folder")
            target = await self.write_target(ent.parent_id)
            self._require(ent, ent.can_update, "UPDATE")
            if ent.file_handle is None:
                self._require(ent, False, "DOWNLOAD")
            h = WriteHandle(ino=ino, parent_id=ent.parent_id, name=ent.name, target=target,
                            entity_id=ent.id, base=ent)
        fh = self._attach(h)
        if truncate:
            await self._truncate(h, 0)
        return fh

    def share_for_read(self, ino: int) -> int | None:
        """A read-only open of a file this mount is writing reads the written bytes."""
        h = self._active.get(ino)
        return self._attach(h) if h is not None else None

    async def create(self, parent_ino: int, name: str, exclusive: bool = False,
                     truncate: bool = False) -> tuple[int, object]:
        """``open(O_CREAT)`` of a name the kernel did not know. If Synapse has it after all
        (created elsewhere meanwhile), it is opened for writing unless ``O_EXCL``."""
        check_name(name)
        parent_id = self.entity_id(parent_ino)
        temp = self.pending_ino(parent_id, name)
        if temp is not None and not exclusive and temp in self._active:
            fh = self._attach(self._active[temp])
            if truncate:
                await self._truncate(self._active[temp], 0)
            return fh, self.write_attr(self._active[temp])
        if temp is not None:
            raise errors.AlreadyExists(f"{name} is being created")
        _, target = await self._folder_for_write(parent_id, "CREATE")
        self._invalidate(parent_id=parent_id)
        child = (await self.listing(parent_id)).get(name)
        if child is not None:
            if exclusive or child.kind is not Kind.FILE:
                raise errors.AlreadyExists(f"{name} exists in syn{parent_id}")
            ino = self.ino_of(child.id)
            fh = await self.open_for_write(ino, truncate)
            return fh, self.write_attr(self._writes[fh])
        ino = self._temp_ino()
        h = WriteHandle(ino=ino, parent_id=parent_id, name=name, target=target)
        h.staged = self.staging.new(name)
        h.dirty = True
        self._pending[(parent_id, name)] = ino
        fh = self._attach(h)
        return fh, self.write_attr(h)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self._writable(fh)
        async with h.lock:
            await self._ensure_staged(h)
            written = h.staged.write(offset, data)
            h.dirty = True
            return written

    async def read_written(self, fh: int, offset: int, size: int) -> bytes:
        h = self._writes[fh]
        if h.staged is None:
            return await self.remote.read(h.base, offset, size) if h.base else b""
        return h.staged.read(offset, size)

    def _writable(self, fh: int) -> WriteHandle:
        h = self._writes.get(fh)
        if h is None:
            raise errors.SynfsError("file not open for writing")
        return h

    async def _truncate(self, h: WriteHandle, size: int) -> None:
        async with h.lock:
            if h.staged is None:
                await self._ensure_staged(h, keep_bytes=size)
            h.staged.truncate(size)
            h.dirty = True

    async def flush(self, fh: int) -> None:
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
            except errors.SynfsError as exc:
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
        handle_id = await self.writer.store_bytes(h.target, h.staged.path, h.name)
        if h.entity_id is None:
            try:
                eid = await self.writer.create_file(h.parent_id, h.name, handle_id)
            except errors.AlreadyExists:   # created elsewhere meanwhile: last close wins
                self._invalidate(parent_id=h.parent_id)
                child = (await self.listing(h.parent_id)).get(h.name)
                if child is None:
                    raise
                eid = child.id
                await self.writer.new_version(eid, handle_id)
            self._pending.pop((h.parent_id, h.name), None)
            h.entity_id = eid
            self._alias(h.ino, eid)
        else:
            await self.writer.new_version(h.entity_id, handle_id)
        h.dirty = False
        self._invalidate(entity_id=h.entity_id, parent_id=h.parent_id, name=h.name)
        log.info("saved %s as a new version of syn%d", h.name, h.entity_id)

    def release_write(self, fh: int) -> bool:
        """Drop one reference; returns False when fh was not a write-capable handle."""
        h = self._writes.pop(fh, None)
        if h is None:
            return False
        h.refs -= 1
        if h.refs > 0:
            return True
        if self._active.get(h.ino) is h:
            del self._active[h.ino]
        if h.staged is not None:
            if h.dirty and not h.unlinked:
                h.staged.keep(f"{h.name} in syn{h.parent_id} was never saved to Synapse")
            else:
                h.staged.discard()
        if h.entity_id is None:
            self._pending.pop((h.parent_id, h.name), None)
        self._drop_alias_if_unused(h.ino)
        return True

    def write_attr(self, h: WriteHandle):
        """Attributes of a file this mount is writing (size from the staged copy)."""
        from synfs.fs import Attr   # local: fs imports this module

        when = h.base.modified_on if (h.base and not h.dirty) else time.time()
        return Attr(ino=h.ino, is_dir=False, size=h.size, mtime=when, ctime=when,
                    mode=stat.S_IFREG | self.opts.file_mode, uid=self.opts.uid, gid=self.opts.gid)

    # ---- namespace changes (renames: synfs.renames) ------------------------------------------
    async def mkdir(self, parent_ino: int, name: str):
        check_name(name)
        parent_id = self.entity_id(parent_ino)
        await self._folder_for_write(parent_id, "CREATE")
        if name in await self.listing(parent_id) or self.pending_ino(parent_id, name):
            raise errors.AlreadyExists(f"{name} exists in syn{parent_id}")
        folder = await self.writer.create_folder(parent_id, name)
        self._invalidate(parent_id=parent_id, name=name)
        self._entities.set(folder.id, folder)
        return self.attr_of(folder)

    async def _child(self, parent_id: int, name: str) -> Entity:
        self._invalidate(parent_id=parent_id)
        child = (await self.listing(parent_id)).get(name)
        if child is None:
            raise errors.NotFound(f"{name!r} not in syn{parent_id}")
        return await self.entity(child.id, fresh=True)

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent_id = self.entity_id(parent_ino)
        temp = self.pending_ino(parent_id, name)
        if temp is not None:            # never saved: forget it (open handles keep their data)
            self._pending.pop((parent_id, name))
            if temp in self._active:
                self._active[temp].unlinked = True
            return
        await self._folder_for_write(parent_id, "DELETE")
        ent = await self._child(parent_id, name)
        if ent.kind.is_container:
            raise errors.IsADirectory(f"{name} is a folder: use rmdir")
        self._require(ent, ent.can_delete, "DELETE")
        await self.writer.delete(ent.id)
        h = self._active.get(self.ino_of(ent.id))
        if h is not None:
            h.unlinked = True
        self._invalidate(entity_id=ent.id, parent_id=parent_id, name=name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent_id = self.entity_id(parent_ino)
        await self._folder_for_write(parent_id, "DELETE")
        ent = await self._child(parent_id, name)
        if not ent.kind.is_container:
            raise errors.NotADirectory(f"{name} is not a folder")
        self._require(ent, ent.can_delete, "DELETE")
        self._invalidate(parent_id=ent.id)
        if await self.listing(ent.id) or self.pending_names(ent.id):
            raise errors.NotEmpty(f"{name} is not empty")
        await self.writer.delete(ent.id)
        self._invalidate(entity_id=ent.id, parent_id=parent_id, name=name)

    # ---- attributes -----------------------------------------------------------------------------
    async def setattr(self, ino: int, size: int | None, fh: int | None, other: bool):
        """Truncate (``size``) and metadata changes (``other``: mode, owner, times)."""
        h = self._writes.get(fh) if fh is not None else self._active.get(ino)
        if size is not None:
            if h is not None:
                await self._truncate(h, size)
            else:                               # truncate(2) on a path: open, cut, save
                tmp_fh = await self.open_for_write(ino, truncate=False)
                try:
                    h2 = self._writes[tmp_fh]
                    await self._truncate(h2, size)
                    await self.commit(h2)
                finally:
                    self.release_write(tmp_fh)
        elif other and h is None:
            ent = await self.entity(self.entity_id(ino))
            folder = ent.id if ent.kind.is_container else ent.parent_id
            await self.write_target(folder)     # EROFS outside writable folders
        if self._active.get(ino) is not None:
            return self.write_attr(self._active[ino])
        return await self.getattr(ino)

    def write_status(self) -> dict:
        """Files being written, those not yet saved, and saves that failed (data kept)."""
        handles = set(self._writes.values())
        return {"pending": sum(1 for h in handles if h.dirty),
                "unsaved": [{"name": h.name, "folder": f"syn{h.parent_id}",
                             "staged": str(h.staged.path) if h.staged else None}
                            for h in handles if h.dirty],
                "failed": list(self._failed_saves),
                "open_for_write": len(handles),
                "staging_bytes": self.staging.used if self.staging else 0}

