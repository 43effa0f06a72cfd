"""The filesystem core: Synapse entities as a directory tree, async, owned by the trio thread.

It knows nothing of FUSE: it takes and returns plain values (``Attr``, ``str`` names, ints)
and raises ``synfs.errors`` exceptions. ``synfs.fuse_ops`` translates to and from pyfuse3.

Identity: inode numbers are the numeric Synapse ids (stable across remounts); the mount's
root entity is inode 1. Projects and Folders are directories, FileEntities regular files;
other entity types (tables, views, links, datasets, ...) are not shown.
Metadata is cached with the metadata TTL, negative lookups with a short TTL, and concurrent
fetches of one entity or listing share one REST call.

REST frugality: a listing (one call per 50 children) gives every child's name, type,
version and modifiedOn, but not a file's size. Folders are answered from their header alone.
A file whose size is not known is listed with a provisional attribute (size 0, attribute
timeout 0, ``Attr.provisional``), so ``find`` costs only the listings and the kernel asks
``getattr`` when something needs the size (``stat``, ``read`` past the cached size, ``lseek``
to the end). Sizes come from the in-memory entity cache, then from the persistent
``synfs.metastore`` (valid for the listing's version and modifiedOn), then from one bundle
call; a run of misses in one folder (``ls -l``) fetches the next siblings alongside.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import time
from typing import Callable

import trio

from synfs import errors
from synfs.cache import SingleFlight, TTLCache
from synfs.files import OpenFile, ReadaheadPolicy
from synfs.synapse.models import ChildHeader, Entity, Kind
from synfs.renames import RenameOps
from synfs.writes import TEMP_INO_BASE, WriteOps

log = logging.getLogger(__name__)

ROOT_INO = 1
READ_AHEAD_SIBLINGS = 2     # with the file asked for: 3 calls, Synapse's concurrency limit
XATTR_PREFIX = "user.synapse."


@dataclasses.dataclass(frozen=True)
class Options:
    metadata_ttl: float = 60.0
    negative_ttl: float = 5.0
    uid: int = 0
    gid: int = 0
    file_mode: int = 0o444
    dir_mode: int = 0o555
    cache_entries: int = 100_000
    readdir_batch: int = 32
    readahead: ReadaheadPolicy = ReadaheadPolicy()


@dataclasses.dataclass(frozen=True)
class Attr:
    ino: int
    is_dir: bool
    size: int
    mtime: float
    ctime: float
    mode: int
    uid: int
    gid: int
    nlink: int = 1
    blksize: int = 1024 * 1024
    provisional: bool = False     # size not known yet: the kernel must not cache this


@dataclasses.dataclass
class DirHandle:
    ino: int
    entries: list[tuple[str, ChildHeader | int]]   # a child, or the temp ino of an unsaved file


class Filesystem(WriteOps, RenameOps):
    def __init__(self, remote, root_id: int, options: Options = Options(),
                 clock: Callable[[], float] = time.monotonic, *, writer=None, staging=None,
                 read_only: bool = True, store=None):
        self.remote = remote
        self.root_id = root_id
        self.opts = options
        self.clock = clock
        self._entities: TTLCache[int, Entity] = TTLCache(options.cache_entries,
                                                          options.metadata_ttl, clock)
        self._listings: TTLCache[int, dict[str, ChildHeader]] = TTLCache(
            max(16, options.cache_entries // 100), options.metadata_ttl, clock)
        # child id -> (parent id, position in the parent's listing, header)
        self._headers: TTLCache[int, tuple[int, int, ChildHeader]] = TTLCache(
            options.cache_entries, options.metadata_ttl, clock)
        self._rows: TTLCache[int, list[ChildHeader]] = TTLCache(
            max(16, options.cache_entries // 100), options.metadata_ttl, clock)
        # file entities by id, good while the listing shows the same version and modifiedOn
        # (a file's content is fixed per version), so no TTL: fetched or read from the store
        self._stored: TTLCache[int, Entity] = TTLCache(options.cache_entries, float("inf"),
                                                        clock)
        self.store = store                 # synfs.metastore.MetaStore or None
        self._last_miss: tuple[int, int] | None = None    # (folder, file) of the last fetch
        self._negative: TTLCache[tuple[int, str], bool] = TTLCache(10_000, options.negative_ttl,
                                                                  clock)
        self._entity_flight: SingleFlight[int, Entity] = SingleFlight()
        self._listing_flight: SingleFlight[int, dict] = SingleFlight()
        self.lookups: dict[int, int] = {}
        self._dirs: dict[int, DirHandle] = {}
        self._files: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._last_handle: TTLCache[int, int] = TTLCache(options.cache_entries, 24 * 3600, clock)
        self._init_writes(writer, staging, read_only)

    # ---- ids -----------------------------------------------------------------------------
    def entity_id(self, ino: int) -> int:
        if ino == ROOT_INO:
            return self.root_id
        return self._ino_to_id.get(ino, ino)

    def ino_of(self, entity_id: int) -> int:
        if entity_id == self.root_id:
            return ROOT_INO
        return self._id_to_ino.get(entity_id, entity_id)

    # ---- remote access with caches ---------------------------------------------------------
    async def entity(self, entity_id: int, fresh: bool = False) -> Entity:
        if not fresh:
            cached = self._entities.get(entity_id)
            if cached is not None:
                return cached

        async def fetch() -> Entity:
            ent = await self.remote.get_entity(entity_id)
            self._entities.set(entity_id, ent)
            if ent.kind is Kind.FILE:
                self._stored.set(entity_id, ent)
                if self.store is not None:
                    self.store.put(ent)
            return ent

        return await self._entity_flight.do(entity_id, fetch)

    async def listing(self, entity_id: int) -> dict[str, ChildHeader]:
        cached = self._listings.get(entity_id)
        if cached is not None:
            return cached

        async def fetch() -> dict[str, ChildHeader]:
            children = await self.remote.list_children(entity_id)
            shown = {}
            rows = []
            for child in children:
                if child.kind not in (Kind.PROJECT, Kind.FOLDER, Kind.FILE):
                    continue
                if child.id == ROOT_INO:  # cannot collide with the root inode
                    log.warning("skipping entity syn%d: id reserved for the mount root", child.id)
                    continue
                shown[child.name] = child
                self._headers.set(child.id, (entity_id, len(rows), child))
                rows.append(child)
            self._listings.set(entity_id, shown)
            self._rows.set(entity_id, rows)
            return shown

        return await self._listing_flight.do(entity_id, fetch)

    # ---- attributes ----------------------------------------------------------------------
    def _attr(self, entity_id: int, is_dir: bool, size: int, mtime: float,
              provisional: bool = False) -> Attr:
        if is_dir:
            return Attr(ino=self.ino_of(entity_id), is_dir=True, size=0, mtime=mtime,
                        ctime=mtime, mode=stat.S_IFDIR | self.opts.dir_mode,
                        uid=self.opts.uid, gid=self.opts.gid, nlink=2)
        return Attr(ino=self.ino_of(entity_id), is_dir=False, size=size, mtime=mtime,
                    ctime=mtime, mode=stat.S_IFREG | self.opts.file_mode,
                    uid=self.opts.uid, gid=self.opts.gid, provisional=provisional)

    def attr_of(self, ent: Entity) -> Attr:
        size = ent.file_handle.size if ent.file_handle is not None else 0
        return self._attr(ent.id, ent.kind.is_container, size, ent.modified_on)

    def header_attr(self, child: ChildHeader) -> Attr:
        """A folder's attributes, or a file's provisional ones, from its listing header."""
        return self._attr(child.id, child.kind.is_container, 0, child.modified_on,
                          provisional=not child.kind.is_container)

    def known(self, child: ChildHeader) -> Entity | None:
        """The entity behind a listing header if it is known for that version, without a call."""
        if child.kind.is_container:
            return self._entities.get(child.id)
        ent = self._stored.get(child.id)
        if ent is not None and ent.version == child.version and \
                ent.modified_on == child.modified_on:
            return ent
        if self.store is not None and child.kind is Kind.FILE:
            ent = self.store.get(child.id, child.version, child.modified_on)
            if ent is not None:
                self._stored.set(child.id, ent)
                return ent
        return None

    def _known_attr(self, child: ChildHeader) -> Attr:
        active = self._active.get(self.ino_of(child.id))
        if active is not None:
            return self.write_attr(active)
        ent = self.known(child)
        return self._entry_attr(ent) if ent is not None else self.header_attr(child)

    async def _fetch_file(self, entity_id: int) -> Entity:
        """One file's entity; in a run of misses within one folder, its next siblings too."""
        place = self._headers.get(entity_id)
        siblings: list[int] = []
        if place is not None:
            parent, pos, _ = place
            if self._last_miss is not None and self._last_miss[0] == parent and \
                    self._last_miss[1] != entity_id:
                rows = self._rows.get(parent) or []
                for child in rows[pos + 1:pos + 1 + 4 * READ_AHEAD_SIBLINGS]:
                    if len(siblings) >= READ_AHEAD_SIBLINGS:
                        break
                    if child.kind is Kind.FILE and self.known(child) is None:
                        siblings.append(child.id)
            self._last_miss = (parent, entity_id)
        fresh = self._entities.get(entity_id) is not None   # cached, but not this version
        if not siblings:
            return await self.entity(entity_id, fresh=fresh)

        async def quietly(sibling: int) -> None:
            try:
                await self.entity(sibling)
            except errors.SynfsError:
                pass                    # its own stat will report it

        async with trio.open_nursery() as nursery:
            for sibling in siblings:
                nursery.start_soon(quietly, sibling)
            return await self.entity(entity_id, fresh=fresh)

    async def getattr(self, ino: int) -> Attr:
        if ino in self._active:
            return self.write_attr(self._active[ino])
        if ino > TEMP_INO_BASE and ino not in self._ino_to_id:
            raise errors.NotFound("an unsaved file that is gone")
        entity_id = self.entity_id(ino)
        place = self._headers.get(entity_id)
        if place is not None and ino != ROOT_INO:
            ent = self.known(place[2])
            if ent is not None:
                return self._entry_attr(ent)
            if place[2].kind.is_container:
                return self.header_attr(place[2])
            ent = await self._fetch_file(entity_id)
        else:
            ent = await self.entity(entity_id)
        if ent.kind not in (Kind.PROJECT, Kind.FOLDER, Kind.FILE):
            raise errors.NotFound(f"syn{ent.id} is a {ent.kind.value}, not shown")
        return self.attr_of(ent)

    async def lookup(self, parent_ino: int, name: str) -> Attr:
        parent_id = self.entity_id(parent_ino)
        if name in (".", ".."):
            raise errors.NotFound("dot entries are answered by the kernel")
        temp = self.pending_ino(parent_id, name)
        if temp is not None and temp in self._active:
            return self.write_attr(self._active[temp])
        if (parent_id, name) in self._negative:
            raise errors.NotFound(f"{name!r} not in syn{parent_id} (cached)")
        await self._check_container(parent_ino, parent_id)
        children = await self.listing(parent_id)
        child = children.get(name)
        if child is None:
            self._negative.set((parent_id, name), True)
            raise errors.NotFound(f"{name!r} not in syn{parent_id}")
        ent = self.known(child)
        if ent is None:
            if child.kind.is_container:
                return self.header_attr(child)
            try:
                ent = await self._fetch_file(child.id)
            except errors.NotFound:
                self._listings.pop(parent_id)
                raise
        return self._entry_attr(ent)

    # ---- kernel lookup counts ------------------------------------------------------------
    def remember(self, ino: int) -> None:
        self.lookups[ino] = self.lookups.get(ino, 0) + 1

    def forget(self, inodes: list[tuple[int, int]]) -> None:
        for ino, count in inodes:
            left = self.lookups.get(ino, 0) - count
            if left > 0:
                self.lookups[ino] = left
            else:
                self.lookups.pop(ino, None)
                self._drop_alias_if_unused(ino)

    # ---- directories ---------------------------------------------------------------------
    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    async def _check_container(self, ino: int, entity_id: int) -> None:
        """NotADirectory unless the entity is a Project or Folder (from its header if listed)."""
        place = self._headers.get(entity_id)
        if place is None or ino == ROOT_INO:
            kind = (await self.entity(entity_id)).kind
        else:
            kind = place[2].kind
        if not kind.is_container:
            raise errors.NotADirectory(f"syn{entity_id} is not a folder")

    async def opendir(self, ino: int) -> int:
        entity_id = self.entity_id(ino)
        await self._check_container(ino, entity_id)
        children = await self.listing(entity_id)
        entries: dict[str, ChildHeader | int] = dict(children)
        entries.update(self.pending_names(entity_id))
        fh = self._new_fh()
        self._dirs[fh] = DirHandle(ino, sorted(entries.items(), key=lambda kv: kv[0].encode()))
        return fh

    async def readdir(self, fh: int, start: int) -> list[tuple[int, str, Attr]]:
        """Up to ``readdir_batch`` entries from offset ``start``: (next offset, name, attr).

        Offsets index the listing snapshot taken at opendir, so paging is stable even when
        the folder changes meanwhile. No REST call: files of unknown size get provisional
        attributes (see the module docstring)."""
        handle = self._dirs.get(fh)
        if handle is None:
            raise errors.SynfsError("unknown directory handle")
        out = []
        batch = handle.entries[start:start + self.opts.readdir_batch]
        for i, (name, child) in enumerate(batch):
            if isinstance(child, int):      # an unsaved new file of this mount
                h = self._active.get(child)
                if h is not None:
                    out.append((start + i + 1, name, self.write_attr(h)))
            else:
                out.append((start + i + 1, name, self._known_attr(child)))
        if not out and batch:  # every entry in this batch vanished: continue past it
            return await self.readdir(fh, start + len(batch))
        return out

    def _entry_attr(self, ent: Entity) -> Attr:
        """An entity's attributes, or those of this mount's unsaved data written over it."""
        active = self._active.get(self.ino_of(ent.id))
        return self.write_attr(active) if active is not None else self.attr_of(ent)

    def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # ---- files ---------------------------------------------------------------------------
    async def open(self, ino: int, writable: bool, truncate: bool = False) -> tuple[int, bool]:
        """Open a file; returns (fh, keep_cache)."""
        if writable:
            return await self.open_for_write(ino, truncate), False
        shared = self.share_for_read(ino)
        if shared is not None:
            return shared, False
        ent = await self.entity(self.entity_id(ino))
        if ent.kind.is_container:
            raise errors.IsADirectory(f"syn{ent.id} is a folder")
        if ent.unmet_access_requirement:
            raise errors.PermissionDenied(
                f"syn{ent.id} ({ent.name}): an access requirement is not met; accept its "
                "terms on synapse.org first", entity=f"syn{ent.id}")
        if not ent.can_download or ent.file_handle is None:
            raise errors.PermissionDenied(
                f"syn{ent.id} ({ent.name}): no DOWNLOAD permission", entity=f"syn{ent.id}")
        fh = self._new_fh()
        self._files[fh] = OpenFile(ent, self.remote, self.opts.readahead)
        keep = self._last_handle.get(ino) == ent.file_handle.id
        self._last_handle.set(ino, ent.file_handle.id)
        return fh, keep

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        if fh in self._writes:
            return await self.read_written(fh, offset, size)
        handle = self._files.get(fh)
        if handle is None:
            raise errors.SynfsError("unknown file handle")
        return await handle.read(offset, size)

    def release(self, fh: int) -> None:
        if not self.release_write(fh):
            handle = self._files.pop(fh, None)
            if handle is not None:
                handle.close()      # frees its prefetch buffers

    # ---- status (for `synfs status`) ------------------------------------------------------
    def status(self) -> dict:
        out = {"uploads": self.write_status(),
               "open_files": len(self._files) + len(set(self._writes.values())),
               "kernel_inodes": len(self.lookups)}
        if self.store is not None:
            out["metadata_store"] = self.store.status()
        cache = getattr(self.remote, "status", None)
        if callable(cache):
            out.update(cache())
        return out

    # ---- extended attributes -------------------------------------------------------------
    async def xattrs(self, ino: int) -> dict[str, str]:
        ent = await self.entity(self.entity_id(ino))
        out = {XATTR_PREFIX + "id": f"syn{ent.id}", XATTR_PREFIX + "etag": ent.etag}
        if ent.version is not None and ent.kind is Kind.FILE:
            out[XATTR_PREFIX + "version"] = str(ent.version)
        if ent.file_handle is not None:
            out[XATTR_PREFIX + "file_handle_id"] = str(ent.file_handle.id)
            if ent.file_handle.md5:
                out[XATTR_PREFIX + "md5"] = ent.file_handle.md5
        return out

    async def getxattr(self, ino: int, name: str) -> str:
        values = await self.xattrs(ino)
        if name not in values:
            raise errors.NoAttribute(f"no attribute {name}")
        return values[name]
