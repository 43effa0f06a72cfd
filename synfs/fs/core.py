"""The filesystem core: Synapse entities as a directory tree, async, owned by the trio thread.

It knows nothing of FUSE: it takes and returns plain values (``Attr``, ``str`` names, ints)
and raises ``synfs.errors`` exceptions; ``synfs.fs.fuse_ops`` translates to and from pyfuse3.

``Filesystem`` composes three collaborators, each owning its state:

- the tree (``synfs.fs.tree.Tree``): inode identity, kernel lookup counts, cached entities
  and listings;
- the read path's open-file table (``synfs.read.openfiles.OpenFiles``);
- the write path (``synfs.write.path.WritePath``: files open for writing, staging, saves) and
  its namespace changes (``synfs.write.namespace.Namespace``: mkdir, unlink, rmdir, rename).

The core owns only directory handles and the file-handle counter, and answers each request by
asking them in turn: a file this mount is writing is answered by the write path (its staged
size), anything else by the tree. ``readdir`` makes no REST call: files of unknown size get
provisional attributes (size 0, attribute timeout 0), so ``find`` costs only the listings and
the kernel asks ``getattr`` when it needs a size.

Open files stay pinned to what they opened. The kernel keeps one size and one page cache per
inode, and pyfuse3's ``getattr`` does not say which open file asks, so the pin is per inode:

- a file deleted while open keeps answering ``getattr`` from the version its open files read
  (``st_nlink`` 0), and reading it goes on; so does an open directory after ``rmdir``;
- when the tree sees a newer version of a file whose inode has open readers (a save on this
  mount, a rename over it, or another client's upload), that inode is retired at the readers'
  version (``Tree.retire``) and the file gets a fresh inode number; an ``open`` of the retired
  inode through a stale kernel name fails with ESTALE, which makes the kernel look the name
  up again and open the current version;
- opening for writing (or truncating) a file this mount has open for reading fails with
  ETXTBSY: the writer's bytes would land in the readers' page cache and size.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from typing import Callable

from synfs import errors
from synfs.fs.attrs import ROOT_INO, Attr, AttrMaker, Options
from synfs.fs.tree import SHOWN_KINDS, Tree
from synfs.read.openfiles import OpenFiles
from synfs.synapse.models import ChildHeader, Entity, Kind
from synfs.write.namespace import Namespace
from synfs.write.path import WritePath

__all__ = ["ROOT_INO", "Attr", "Filesystem", "Options"]

log = logging.getLogger(__name__)

XATTR_PREFIX = "user.synapse."


@dataclasses.dataclass
class DirHandle:
    ino: int
    entries: list[tuple[str, ChildHeader | int]]   # a child, or the temp ino of an unsaved file
    mtime: float = 0.0                             # for fstat after the folder is removed


class Filesystem:
    def __init__(self, remote, root_id: int, options: Options = Options(),
                 clock: Callable[[], float] = time.monotonic, *, writer=None, staging=None,
                 read_only: bool = True, store=None, tree=None):
        self.remote = remote
        self.root_id = root_id
        self.opts = options
        self._fh = itertools.count(1)
        # a live Tree, or another with its methods (synfs.fs.snaptree.SnapTree)
        self.tree = tree if tree is not None else Tree(remote, root_id, options, clock, store)
        self.attrs = AttrMaker(options, self.tree.ino_of)
        self.reads = OpenFiles(remote, options.readahead, self._new_fh,
                               options.cache_entries, clock)
        self.writes = WritePath(self.tree, remote, writer, staging, read_only, self._new_fh)
        self.namespace = Namespace(self.tree, self.writes)
        self.tree.in_use = self._in_use
        self.tree.writing = lambda ino: self.writes.active_handle(ino) is not None
        self._dirs: dict[int, DirHandle] = {}

    def _new_fh(self) -> int:
        return next(self._fh)

    def _in_use(self, ino: int) -> bool:
        return (self.writes.active_handle(ino) is not None or self.reads.pinned(ino) is not None
                or any(d.ino == ino for d in self._dirs.values()))

    @property
    def read_only(self) -> bool:
        return self.writes.read_only

    @property
    def store(self):
        return self.tree.store

    @property
    def lookups(self) -> dict[int, int]:
        return self.tree.lookups

    def entity_id(self, ino: int) -> int:
        return self.tree.entity_id(ino)

    # ---- attributes ------------------------------------------------------------------------
    def _entry_attr(self, ent: Entity) -> Attr:
        """An entity's attributes, or those of this mount's unsaved data written over it."""
        self._retire_if_moved_on(ent.id, ent.version, ent.file_handle_id)
        active = self.writes.active_handle(self.tree.ino_of(ent.id))
        return self.attrs.of_write(active) if active is not None else self.attrs.of_entity(ent)

    def _known_attr(self, child: ChildHeader) -> Attr:
        active = self.writes.active_handle(self.tree.ino_of(child.id))
        if active is not None:
            return self.attrs.of_write(active)
        ent = self.tree.known(child)
        if ent is not None:
            return self._entry_attr(ent)
        self._retire_if_moved_on(child.id, child.version, None)
        return self.attrs.of_header(child)

    def _retire_if_moved_on(self, entity_id: int, version: int | None,
                            file_handle_id: int | None) -> bool:
        """Every inode with open readers of another version of the file than (``version``,
        ``file_handle_id``) stays theirs; the file gets a new inode."""
        retired = False
        for ino, pinned in self.reads.pins_of(entity_id):
            if self.tree.frozen(ino) is not None or self.writes.active_handle(ino) is not None:
                continue
            same = (pinned.file_handle_id == file_handle_id if file_handle_id is not None
                    else pinned.version == version)
            if not same:
                self.tree.retire(ino, pinned)
                retired = True
        return retired

    def _pinned_attr(self, ino: int, ent: Entity) -> Attr:
        """An inode that stays at the version its open files read; no name leads to it."""
        size = ent.file_handle.size if ent.file_handle is not None else 0
        return dataclasses.replace(self.attrs.make(ino, False, size, ent.modified_on), nlink=0)

    async def getattr(self, ino: int) -> Attr:
        active = self.writes.active_handle(ino)
        if active is not None:
            return self.attrs.of_write(active)
        frozen = self.tree.frozen(ino)
        if frozen is not None:
            return self._pinned_attr(ino, frozen)
        if not self.tree.is_known_ino(ino):
            raise errors.NotFound("an unsaved file that is gone")
        try:
            attr, current = await self._current_attr(ino)
        except errors.NotFound:
            pinned = self.reads.pinned(ino)
            if pinned is not None:          # deleted while open: its readers keep it
                return self._pinned_attr(ino, pinned)
            folder = next((d for d in self._dirs.values() if d.ino == ino), None)
            if folder is not None:          # removed while open (fstat of the open folder)
                return dataclasses.replace(self.attrs.make(ino, True, 0, folder.mtime), nlink=0)
            raise
        pinned = self.reads.pinned(ino)
        if pinned is not None and current is not None and self.tree.frozen(ino) is None and \
                current.file_handle_id != pinned.file_handle_id:
            self.tree.retire(ino, pinned)   # its name leads to another version now
        frozen = self.tree.frozen(ino)      # the answer showed a newer version than pinned
        return self._pinned_attr(ino, frozen) if frozen is not None else attr

    async def _current_attr(self, ino: int) -> tuple[Attr, Entity | None]:
        """The attributes of what the inode's entity is now, and that entity (a file's)."""
        entity_id = self.tree.entity_id(ino)
        header = self.tree.header(entity_id)
        if header is not None and ino != ROOT_INO:
            ent = self.tree.known(header)
            if ent is not None:
                return self._entry_attr(ent), ent
            if header.kind.is_container:
                return self.attrs.of_header(header), None
            ent = await self.tree.fetch_file(entity_id)
        else:
            ent = await self.tree.entity(entity_id)
        if ent.kind not in SHOWN_KINDS:
            raise errors.NotFound(f"syn{ent.id} is a {ent.kind.value}, not shown")
        self._retire_if_moved_on(ent.id, ent.version, ent.file_handle_id)
        return self.attrs.of_entity(ent), ent

    async def lookup(self, parent_ino: int, name: str) -> Attr:
        parent_id = self.tree.entity_id(parent_ino)
        if name in (".", ".."):
            raise errors.NotFound("dot entries are answered by the kernel")
        temp = self.writes.pending_ino(parent_id, name)
        if temp is not None and self.writes.active_handle(temp) is not None:
            return self.attrs.of_write(self.writes.active_handle(temp))
        if self.tree.is_negative(parent_id, name):
            raise errors.NotFound(f"{name!r} not in syn{parent_id} (cached)")
        await self.tree.check_container(parent_ino, parent_id)
        children = await self.tree.listing(parent_id)
        child = children.get(name)
        if child is None:
            self.tree.set_negative(parent_id, name)
            raise errors.NotFound(f"{name!r} not in syn{parent_id}")
        ent = self.tree.known(child)
        if ent is None:
            if child.kind.is_container:
                return self.attrs.of_header(child)
            try:
                ent = await self.tree.fetch_file(child.id)
            except errors.NotFound:
                self.tree.invalidate(parent_id=parent_id)
                raise
        return self._entry_attr(ent)

    async def setattr(self, ino: int, size: int | None, fh: int | None, other: bool) -> Attr:
        """Truncate (``size``) and metadata changes (``other``: mode, owner, times)."""
        if size is not None:
            if fh is None:
                self._refuse_write_while_read(ino)
            await self.writes.set_size(ino, fh, size)
        elif other:
            await self.writes.check_metadata_change(ino, fh)
        active = self.writes.active_handle(ino)
        return self.attrs.of_write(active) if active is not None else await self.getattr(ino)

    # ---- kernel lookup counts --------------------------------------------------------------
    def remember(self, ino: int) -> None:
        self.tree.remember(ino)

    def forget(self, inodes: list[tuple[int, int]]) -> None:
        self.tree.forget(inodes)

    # ---- directories -----------------------------------------------------------------------
    async def opendir(self, ino: int) -> int:
        entity_id = self.tree.entity_id(ino)
        await self.tree.check_container(ino, entity_id)
        children = await self.tree.listing(entity_id)
        entries: dict[str, ChildHeader | int] = dict(children)
        entries.update(self.writes.pending_names(entity_id))
        fh = self._new_fh()
        self._dirs[fh] = DirHandle(ino, sorted(entries.items(), key=lambda kv: kv[0].encode()),
                                   self.tree.modified_on(entity_id))
        return fh

    async def readdir(self, fh: int, start: int) -> list[tuple[int, str, Attr]]:
        """Up to ``readdir_batch`` entries from offset ``start``: (next offset, name, attr).

        Offsets index the listing snapshot taken at opendir, so paging is stable even when
        the folder changes meanwhile."""
        handle = self._dirs.get(fh)
        if handle is None:
            raise errors.SynfsError("unknown directory handle")
        out = []
        batch = handle.entries[start:start + self.opts.readdir_batch]
        for i, (name, child) in enumerate(batch):
            if isinstance(child, int):      # an unsaved new file of this mount
                h = self.writes.active_handle(child)
                if h is not None:
                    out.append((start + i + 1, name, self.attrs.of_write(h)))
            else:
                out.append((start + i + 1, name, self._known_attr(child)))
        if not out and batch:  # every entry in this batch vanished: continue past it
            return await self.readdir(fh, start + len(batch))
        return out

    def releasedir(self, fh: int) -> None:
        handle = self._dirs.pop(fh, None)
        if handle is not None:
            self.tree.drop_alias_if_unused(handle.ino)

    # ---- files -----------------------------------------------------------------------------
    async def open(self, ino: int, writable: bool, truncate: bool = False) -> tuple[int, bool]:
        """Open a file; returns (fh, keep_cache)."""
        if writable:
            self._refuse_write_while_read(ino)
            return await self.writes.open_for_write(ino, truncate), False
        shared = self.writes.share_for_read(ino)
        if shared is not None:
            return shared, False
        if self.tree.frozen(ino) is not None:
            raise errors.ContentChanged(f"inode {ino} stays at an older version for the files "
                                        "open on it: look the name up again")
        ent = await self.tree.entity(self.tree.entity_id(ino))
        pinned = self.reads.pinned(ino)
        if pinned is not None and ent.kind is Kind.FILE and \
                pinned.file_handle_id != ent.file_handle_id:
            self.tree.retire(ino, pinned)   # the kernel retries the open after a new lookup
            raise errors.ContentChanged(f"syn{ent.id} has a new version since inode {ino} "
                                        "was opened: look the name up again")
        return self.reads.open(ino, ent)

    def _refuse_write_while_read(self, ino: int) -> None:
        if self.read_only:
            return                          # the write path answers EROFS
        if self.reads.pinned(ino) is not None or self.tree.frozen(ino) is not None:
            raise errors.OpenForReading(
                f"syn{self.tree.entity_id(ino)} is open for reading on this mount; close it "
                "first, or write a new file and rename it over this one")

    async def create(self, parent_ino: int, name: str, exclusive: bool = False,
                     truncate: bool = False) -> tuple[int, Attr]:
        fh, h = await self.writes.create(parent_ino, name, exclusive, truncate)
        return fh, self.attrs.of_write(h)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        if fh in self.reads:
            return await self.reads.read(fh, offset, size)
        return await self.writes.read_written(fh, offset, size)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        return await self.writes.write(fh, offset, data)

    async def flush(self, fh: int) -> None:
        await self.writes.flush(fh)

    async def fsync(self, fh: int) -> None:
        await self.writes.fsync(fh)

    def release(self, fh: int) -> None:
        ino = self.reads.ino_of(fh)
        if self.reads.release(fh):
            self.tree.drop_alias_if_unused(ino)
        else:
            self.writes.release_write(fh)

    async def settle(self) -> None:
        """After ``release``: make the saves owed at a last close (``touch``, ``O_TRUNC``)."""
        await self.writes.settle()

    # ---- namespace -------------------------------------------------------------------------
    async def mkdir(self, parent_ino: int, name: str) -> Attr:
        return self.attrs.of_entity(await self.namespace.mkdir(parent_ino, name))

    async def unlink(self, parent_ino: int, name: str) -> None:
        await self.namespace.unlink(parent_ino, name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        await self.namespace.rmdir(parent_ino, name)

    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int,
                     new_name: str, flags: int) -> None:
        await self.namespace.rename(old_parent_ino, old_name, new_parent_ino, new_name, flags)

    # ---- status (for `synfs status`) -------------------------------------------------------
    def status(self) -> dict:
        writes = self.writes.status()
        out = {"uploads": writes,
               "open_files": len(self.reads) + writes["open_for_write"],
               "kernel_inodes": len(self.tree.lookups)}
        if self.tree.store is not None:
            out["metadata_store"] = self.tree.store.status()
        downloads = getattr(self.remote, "downloads", None)
        for part in (getattr(self.remote, "status", None), getattr(downloads, "status", None)):
            if callable(part):      # read memory, part downloads and the disk cache, if any
                out.update(part())
        return out

    # ---- extended attributes ---------------------------------------------------------------
    async def xattrs(self, ino: int) -> dict[str, str]:
        await self.writes.wait_settled(ino)
        ent = self.tree.frozen(ino)         # an inode kept at its readers' version
        if ent is None:
            try:
                ent = await self.tree.entity(self.tree.entity_id(ino))
            except errors.NotFound:
                ent = self.reads.pinned(ino)    # deleted while open
                if ent is None:
                    raise
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
