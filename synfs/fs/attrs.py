"""Attributes the core hands to the FUSE adapter, and the mount options they are built from.

``Attr`` is a plain value (no pyfuse3): the adapter turns it into ``EntryAttributes``.
``AttrMaker`` is the one place that builds a file's or folder's attributes, from an entity, a
listing header (folders; files of unknown size get provisional attributes) or a file this
mount is writing (size from its staged copy).
"""

from __future__ import annotations

import dataclasses
import stat
import time
from typing import Callable

from synfs.read.prefetch import ReadaheadPolicy
from synfs.synapse.models import ChildHeader, Entity

ROOT_INO = 1


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


class AttrMaker:
    """Builds ``Attr`` values with the mount's modes and owner; ``ino_of`` maps entity ids."""

    def __init__(self, opts: Options, ino_of: Callable[[int], int]):
        self.opts = opts
        self.ino_of = ino_of

    def make(self, ino: int, is_dir: bool, size: int, mtime: float,
             provisional: bool = False) -> Attr:
        if is_dir:
            return Attr(ino=ino, is_dir=True, size=0, mtime=mtime, ctime=mtime,
                        mode=stat.S_IFDIR | self.opts.dir_mode, uid=self.opts.uid,
                        gid=self.opts.gid, nlink=2)
        return Attr(ino=ino, is_dir=False, size=size, mtime=mtime, ctime=mtime,
                    mode=stat.S_IFREG | self.opts.file_mode, uid=self.opts.uid,
                    gid=self.opts.gid, provisional=provisional)

    def of_entity(self, ent: Entity) -> Attr:
        size = ent.file_handle.size if ent.file_handle is not None else 0
        return self.make(self.ino_of(ent.id), ent.kind.is_container, size, ent.modified_on)

    def of_header(self, child: ChildHeader) -> Attr:
        """A folder's attributes, or a file's provisional ones, from its listing header."""
        return self.make(self.ino_of(child.id), child.kind.is_container, 0, child.modified_on,
                         provisional=not child.kind.is_container)

    def of_write(self, h) -> Attr:
        """A file this mount is writing (``synfs.write.path.WriteHandle``): staged size."""
        when = h.base.modified_on if (h.base and not h.dirty) else time.time()
        return self.make(h.ino, False, h.size, when)
