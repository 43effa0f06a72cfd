"""Open files of the read path: each pinned to one file handle (immutable content).

``OpenFile`` is what the filesystem core keeps per open: ``read(offset, size) -> bytes`` and
``close()`` (from ``release``; it frees the file's prefetch buffers). Reads go through a
``synfs.prefetch.Prefetcher`` over the mount's shared ``Downloads`` (memory budget,
single-flight part downloads, optional disk cache): ``remote.downloads`` when the composition
root set one, else a default one per remote (tests with fake remotes).
"""

from __future__ import annotations

from synfs.downloads import Downloads
from synfs.prefetch import Prefetcher, ReadaheadPolicy
from synfs.synapse.models import Entity

__all__ = ["OpenFile", "ReadaheadPolicy"]


class OpenFile:
    def __init__(self, entity: Entity, remote, policy: ReadaheadPolicy,
                 downloads: Downloads | None = None):
        self.entity = entity
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
