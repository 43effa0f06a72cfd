"""Shared, single-flight part downloads: the layer between open files and the ``Remote``.

Owns, for the whole mount (one ``Downloads``; trio thread only, worker threads just fill
buffers):

* ``Part``: one ranged download ``[start, end)`` of one file handle into a buffer from the
  ``MemoryBudget``, reference-counted by the open files holding it and the reads copying out
  of it; the buffer goes back to the budget when the last user lets go and the download is over.
* ``Downloads``: the live parts of every file handle. A read that needs bytes a live part holds
  or is still downloading waits for that part instead of starting another GET, so many
  processes reading the same file share one download (single-flight keyed by file handle id
  and position; ``synfs.read.prefetch`` cuts parts on a fixed grid so readers line up). With a disk
  cache (``synfs.read.datacache``) it fills parts from it and stores what S3 sent; when the budget
  refuses, ``read_direct`` serves one read with one ranged GET of just its bytes.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Callable

import trio

from synfs import errors
from synfs.read.membudget import MemoryBudget
from synfs.synapse.models import Entity

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class Part:
    __slots__ = ("fh_id", "start", "end", "buf", "done", "error", "refs", "cached", "owners",
                 "__weakref__")

    def __init__(self, fh_id: int, start: int, end: int, buf):
        self.fh_id = fh_id
        self.start = start
        self.end = end
        self.buf = buf
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.refs = 1
        self.cached = False
        self.owners: set = set()        # prefetchers to top up when this part arrives

    def __repr__(self) -> str:
        state = "error" if self.error else "done" if self.done.is_set() else "loading"
        return f"Part({self.fh_id}, {self.start}-{self.end}, {state}, refs={self.refs})"

    @property
    def length(self) -> int:
        return self.end - self.start

    def view(self):
        return self.buf.view(self.end - self.start)


class Downloads:
    """Shared by every open file of a mount: live parts, the budget, the disk cache."""

    def __init__(self, remote, budget: MemoryBudget, cache=None, *,
                 cache_threads: int = 2, clock: Callable[[], float] = time.monotonic):
        self.remote = remote
        self.budget = budget
        self.cache = cache
        self.clock = clock
        self.cache_limiter = trio.CapacityLimiter(cache_threads)
        self.align = cache.block_size if cache is not None else 0   # parts cover whole blocks
        self._live: dict[int, list[Part]] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self.read_sizes: collections.Counter[int] = collections.Counter()

    @classmethod
    def for_remote(cls, remote) -> "Downloads":
        """The mount's instance (``remote.downloads``), or a default one per remote (tests)."""
        found = getattr(remote, "downloads", None)
        if found is None:
            found = cls(remote, MemoryBudget(512 * MiB))
            try:
                remote.downloads = found
            except AttributeError:
                pass
        return found

    # ---- parts ---------------------------------------------------------------------------
    def part_at(self, entity: Entity, pos: int, end: int, owner=None) -> Part | None:
        """A live part holding ``pos`` (shared), or a new one for ``[pos, end)`` (shortened so
        it does not overlap a later live part); None when the budget says no."""
        handle = entity.file_handle
        live = self._live.setdefault(handle.id, [])
        for part in live:
            if part.start <= pos < part.end and part.error is None:
                part.refs += 1
                self.stats["shared"] += 1
                return part
        for part in live:
            if pos < part.start < end:
                end = part.start
        end = min(end, handle.size)
        buf = self.budget.try_alloc(end - pos, owner)
        if buf is None:
            return None
        part = Part(handle.id, pos, end, buf)
        live.append(part)
        self.stats["parts"] += 1
        trio.lowlevel.spawn_system_task(self._download, part, entity,
                                        name=f"download syn{entity.id} {pos}-{end}")
        return part

    def unref(self, part: Part) -> None:
        part.refs -= 1
        if part.refs <= 0:
            self._forget(part)
            if part.done.is_set():
                self._free(part)

    def _forget(self, part: Part) -> None:
        live = self._live.get(part.fh_id)
        if live is not None:
            try:
                live.remove(part)
            except ValueError:
                pass
            if not live:
                del self._live[part.fh_id]

    def _free(self, part: Part) -> None:
        if part.buf is not None:
            self.budget.free(part.buf)
            part.buf = None

    async def _download(self, part: Part, entity: Entity) -> None:
        part.refs += 1       # the download's own hold: the buffer stays until it is over
        try:
            try:
                await self.fill(entity, part.start, part.view(), part)
            except BaseException as exc:  # noqa: BLE001 - handed to the readers, never lost
                part.error = exc if isinstance(exc, Exception) else errors.Unavailable("cancelled")
                self._forget(part)
                if not isinstance(exc, Exception):
                    raise
                return
            finally:
                part.done.set()
            for owner in list(part.owners):     # keep their GETs in flight without a read
                owner.top_up()
            if self.cache is not None and not part.cached:
                handle = entity.file_handle
                try:
                    await trio.to_thread.run_sync(self.cache.store, handle.id, handle.size,
                                                  handle.md5, part.start, part.view(),
                                                  limiter=self.cache_limiter)
                except Exception:  # noqa: BLE001 - a cache failure never fails a read
                    log.warning("data cache: storing part of syn%d failed", entity.id,
                                exc_info=True)
        finally:
            self.unref(part)

    async def fill(self, entity: Entity, start: int, out, part: Part | None = None) -> None:
        """Fill ``out`` with the content at ``start``: from the disk cache when it holds it,
        else from S3 (or a pre-signed URL)."""
        handle = entity.file_handle
        if self.cache is not None:
            hit = await trio.to_thread.run_sync(self.cache.read_into, handle.id, handle.size,
                                                start, out, limiter=self.cache_limiter)
            if hit:
                self.stats["cache_hits"] += 1
                if part is not None:
                    part.cached = True
                return
        if hasattr(self.remote, "read_into"):
            got = await self.remote.read_into(entity, start, out)
        else:
            data = await self.remote.read(entity, start, len(out))
            got = len(data)
            out[:got] = data
        self.stats["gets"] += 1
        self.stats["bytes"] += got
        if got != len(out):
            raise errors.Unavailable(
                f"syn{entity.id}: asked for {len(out)} bytes at {start}, got {got} (object "
                "shorter than its file handle says?)", entity=f"syn{entity.id}")

    def status(self) -> dict:
        """Memory, download and cache counters (for ``synfs status``)."""
        b = self.budget
        out = {"memory": {"used_bytes": b.used, "limit_bytes": b.limit, "peak_bytes": b.peak,
                          "direct_bytes": b.direct_used, **b.stats},
               "downloads": {k: v for k, v in self.stats.items() if k != "bytes"}
               | {"received_bytes": self.stats["bytes"]}}
        if self.cache is not None:
            out["cache"] = {"used_bytes": self.cache.total, "size_bytes": self.cache.max_bytes,
                            "dir": str(self.cache.dir), **dict(self.cache.stats)}
        return out

    async def read_direct(self, entity: Entity, start: int, end: int) -> bytes:
        """One ranged read of exactly ``[start, end)``, outside any window."""
        buf = await self.budget.alloc_direct(end - start)
        view = buf.view(end - start)
        try:
            await self.fill(entity, start, view)
            self.stats["direct"] += 1
            return bytes(view)
        finally:
            view.release()          # else the buffer counts as still shown and is not reused
            self.budget.free(buf, direct=True)
