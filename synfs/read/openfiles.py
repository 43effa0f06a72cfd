"""The read path's open-file table: each open file pinned to one file handle (immutable content).

``OpenFiles`` owns (trio thread only) the files open for reading: ``open(ino, entity)`` checks
what Synapse says about downloading it and returns a file handle and whether the kernel may
keep its page cache (the same file handle as the last open of that inode); ``read`` and
``release`` serve and free it. ``OpenFile`` reads through a ``synfs.read.prefetch.Prefetcher``
over the mount's shared ``Downloads`` (memory budget, single-flight part downloads, optional
disk cache): ``remote.downloads`` when the composition root set one, else a default one per
remote (tests with fake remotes).

Failures: a read that failed (after the seams' retry budget) is remembered per open file (by
the table, which answers the kernel; an ``OpenFile`` itself always tries again) for
``FAILURE_MEMORY_S``; a read overlapping that range meanwhile — the kernel retrying a failed
readahead — gets the same error at once, marked as a replay so that ``synfs status`` counts
the one error the caller saw, not each FUSE reply.

Pins: every open file remembers the inode it was opened on; ``pinned(ino)`` is the entity (the
version) the inode's open files read, so the core can keep answering that inode's attributes
from it after the file is deleted or replaced (``synfs.fs.core``). All open files of one inode
read the same version: the kernel keeps one size and one page cache per inode.
"""

from __future__ import annotations

import time
from typing import Callable

from synfs import errors
from synfs.cache import TTLCache
from synfs.read.downloads import Downloads
from synfs.read.prefetch import Prefetcher, ReadaheadPolicy
from synfs.synapse.models import Entity

__all__ = ["OpenFile", "OpenFiles", "ReadaheadPolicy"]

# When a read fails, the kernel reads the same range again at once (a failed readahead is
# retried page by page): for this long, a read of an open file overlapping a range that just
# failed gets the same error without a new attempt, so a caller waits one retry budget, not two.
FAILURE_MEMORY_S = 5.0


class OpenFile:
    def __init__(self, entity: Entity, remote, policy: ReadaheadPolicy,
                 downloads: Downloads | None = None, ino: int = 0):
        self.entity = entity
        self.ino = ino
        # the last failed read (start, end, when, error), kept by OpenFiles for its replays
        self.failed: tuple[int, int, float, errors.SynfsError] | None = None
        self.size = entity.file_handle.size
        self.downloads = downloads if downloads is not None else Downloads.for_remote(remote)
        self.prefetcher = Prefetcher(entity, self.downloads, policy)

    @property
    def requests(self) -> int:
        """Downloads this open file started (for tests and stats)."""
        return self.prefetcher.requests

    async def read(self, offset: int, size: int) -> bytes:
        return await self.prefetcher.read(offset, size)

    def close(self) -> None:
        self.prefetcher.close()


class OpenFiles:
    def __init__(self, remote, policy: ReadaheadPolicy, new_fh: Callable[[], int],
                 entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.remote = remote
        self.policy = policy
        self.new_fh = new_fh
        self.clock = clock
        self._files: dict[int, OpenFile] = {}
        self._pins: dict[int, dict[int, OpenFile]] = {}    # ino -> its open files by fh
        self._inos: dict[int, set[int]] = {}               # entity id -> inos with open files
        # ino -> file handle id of its last open: same content, the page cache may stay
        self._last_handle: TTLCache[int, int] = TTLCache(entries, 24 * 3600, clock)

    def __contains__(self, fh: int) -> bool:
        return fh in self._files

    def __len__(self) -> int:
        return len(self._files)

    def pinned(self, ino: int) -> Entity | None:
        """The version the open files of ``ino`` read, or None when none is open."""
        files = self._pins.get(ino)
        return next(iter(files.values())).entity if files else None

    def pins_of(self, entity_id: int) -> list[tuple[int, Entity]]:
        """(inode, version) of every inode with open files of the entity."""
        return [(ino, self.pinned(ino)) for ino in self._inos.get(entity_id, ())]

    def ino_of(self, fh: int) -> int | None:
        handle = self._files.get(fh)
        return handle.ino if handle is not None else None

    def open(self, ino: int, ent: Entity) -> tuple[int, bool]:
        """Open ``ent`` (its current version) for reading; returns (fh, keep_cache)."""
        if ent.kind.is_container:
            raise errors.IsADirectory(f"syn{ent.id} is a folder")
        if ent.unmet_access_requirement:
            raise errors.PermissionDenied(
                f"syn{ent.id} ({ent.name}): an access requirement is not met; accept its "
                "terms on synapse.org first", entity=f"syn{ent.id}")
        if not ent.can_download or ent.file_handle is None:
            raise errors.PermissionDenied(
                f"syn{ent.id} ({ent.name}): no DOWNLOAD permission", entity=f"syn{ent.id}")
        fh = self.new_fh()
        self._files[fh] = handle = OpenFile(ent, self.remote, self.policy, ino=ino)
        self._pins.setdefault(ino, {})[fh] = handle
        self._inos.setdefault(ent.id, set()).add(ino)
        keep = self._last_handle.get(ino) == ent.file_handle.id
        self._last_handle.set(ino, ent.file_handle.id)
        return fh, keep

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self._files.get(fh)
        if handle is None:
            raise errors.SynfsError("unknown file handle")
        if handle.failed is not None:
            start, end, when, exc = handle.failed
            if self.clock() - when >= FAILURE_MEMORY_S:
                handle.failed = None
            elif offset < end and offset + size > start:
                raise exc.replayed()        # the kernel's retry of a failed readahead
        try:
            return await handle.read(offset, size)
        except errors.SynfsError as exc:
            handle.failed = (offset, offset + size, self.clock(), exc)
            raise

    def release(self, fh: int) -> bool:
        """Close one open file (frees its prefetch buffers); False if fh was not one."""
        handle = self._files.pop(fh, None)
        if handle is None:
            return False
        files = self._pins.get(handle.ino)
        if files is not None:
            files.pop(fh, None)
            if not files:
                del self._pins[handle.ino]
                inos = self._inos.get(handle.entity.id)
                if inos is not None:
                    inos.discard(handle.ino)
                    if not inos:
                        del self._inos[handle.entity.id]
        handle.close()
        return True
