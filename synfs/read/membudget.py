"""One memory budget for every read buffer of the mount (``--max-memory``), and the buffers.

Owns how much memory the prefetch windows of all open files hold together, so that a job
opening 500 files does not multiply it (design lesson 9). Everything here lives in the trio
thread; worker threads only fill buffers they were handed.

* ``Buffer``: one read buffer. Buffers of 64 KiB or more are anonymous ``mmap`` regions in
  power-of-two size classes (huge pages where the kernel allows), kept in a free list and
  reused, so a sequential read does not page-fault its way through fresh memory and memory
  given back is really returned to the kernel (no malloc arena fragmentation). A kept buffer
  serves its class or the next one up whole; a much larger one serves a small part only when
  no new buffer fits, shrunk in place (``mremap``) to the part's class, so the budget never
  counts 32 MiB for a 1 MiB part. Smaller ones are plain ``bytearray`` objects.
* ``MemoryBudget``: accounts every buffer it handed out *and* every free buffer it keeps.
  ``try_alloc`` (prefetch) never waits and never takes the last ``direct_reserve`` bytes; when
  it fails it first drops free buffers, then asks idle owners (open files that have not read
  for ``idle_s`` seconds) to give their buffered parts back (``owner.shrink()``), then says
  no; the prefetcher then stops growing its window. ``alloc_direct`` (the fallback for a read
  that must be served now) may use the whole limit and waits for other direct reads to
  finish, which always happens, so the read path cannot deadlock on memory.
  ``fair_share()`` is the window an open file may grow to while others are reading too.
  When the last open file closes, the free buffers stay (the next file of a job reading one
  after another reuses them instead of page-faulting fresh, zeroed memory: that zeroing was a
  third of the daemon's CPU with four readers); ``trim_delay_s`` (5 s) later they are lent
  to the kernel (``MADV_FREE``: it takes their pages whenever it needs memory, at no cost,
  and a buffer reused before that costs nothing), ``release_delay_s`` (5 min) later they are
  unmapped. A buffer given back while a view of it is still alive (a read's reply of the
  part whose last reference just dropped) is held aside, still accounted, and joins the free
  list once the view is gone: never reused under a reply, never unmapped while shown, never
  left out of the account.
"""

from __future__ import annotations

import logging
import mmap
import time
import weakref
from typing import Callable, Protocol

import trio

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_POOLED = 64 * 1024          # smaller buffers are plain bytearrays, never pooled
HUGE_PAGE = 2 * MiB


def size_class(n: int) -> int:
    """The pooled size for ``n`` bytes: the next power of two, at least ``MIN_POOLED``."""
    if n <= MIN_POOLED:
        return MIN_POOLED
    return 1 << (n - 1).bit_length()


class Owner(Protocol):
    last_active: float

    def shrink(self) -> int: ...


class Buffer:
    """A writable region of ``capacity`` bytes; ``view(n)`` is a memoryview of its first n."""

    __slots__ = ("capacity", "_mem", "pooled")

    def __init__(self, capacity: int, pooled: bool):
        self.capacity = capacity
        self.pooled = pooled
        if pooled:
            # private: Python's default (MAP_SHARED) makes shmem pages, slower to fault in,
            # pinned by FUSE through the slow path, and never transparent huge pages
            self._mem = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if capacity >= HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    self._mem.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
        else:
            self._mem = bytearray(capacity)

    def view(self, n: int | None = None) -> memoryview:
        mv = memoryview(self._mem)
        return mv if n is None else mv[:n]

    def exported(self) -> bool:
        """Is a view of this buffer still alive somewhere (e.g. a read's reply)?"""
        if not self.pooled:
            return True
        try:
            self._mem.resize(self.capacity)     # refused while views exist; else a no-op
        except BufferError:
            return True
        return False

    def shrink(self, capacity: int) -> bool:
        """Keep only the first ``capacity`` bytes (``mremap``: their pages stay as they are, the
        tail's go back to the system); False while a view is alive or where unsupported."""
        if not self.pooled or capacity >= self.capacity:
            return False
        try:
            self._mem.resize(capacity)
        except (BufferError, OSError, ValueError, SystemError):
            return False
        self.capacity = capacity
        return True

    def lend(self) -> bool:
        """Pages the kernel may reclaim at no cost (``MADV_FREE``); False where unsupported."""
        if not self.pooled or not hasattr(mmap, "MADV_FREE"):
            return False
        try:
            self._mem.madvise(mmap.MADV_FREE)
        except (OSError, ValueError):
            return False
        return True

    def close(self) -> None:
        if self.pooled:
            try:
                self._mem.close()
            except BufferError:     # a view is still alive somewhere: GC unmaps it later
                pass


class MemoryBudget:
    def __init__(self, limit: int, *, direct_reserve: int | None = None,
                 keep_free: int | None = None, idle_s: float = 1.0, trim_delay_s: float = 5.0,
                 release_delay_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        if limit <= 0:
            raise ValueError("the memory budget must be positive")
        self.limit = limit
        self.direct_reserve = (direct_reserve if direct_reserve is not None
                               else max(2 * MiB, min(64 * MiB, limit // 8)))
        self.keep_free = keep_free if keep_free is not None else limit
        self.idle_s = idle_s
        self.trim_delay_s = trim_delay_s
        self.release_delay_s = release_delay_s
        self._trim_pending = False
        self._last_unregister = clock()
        self.clock = clock
        self.used = 0                  # bytes of all buffers: handed out + kept free
        self.direct_used = 0
        self.peak = 0
        self._free: dict[int, list[Buffer]] = {}
        self._free_bytes = 0
        self._held: list[Buffer] = []  # given back while a view of them was still alive
        self._owners: weakref.WeakSet = weakref.WeakSet()
        self._changed = trio.Event()
        self.stats = {"refused": 0, "reclaimed": 0, "direct": 0, "direct_waits": 0,
                      "allocated": 0, "reused": 0, "shrunk": 0, "lent": 0}

    def __repr__(self) -> str:
        return (f"MemoryBudget(limit={self.limit}, used={self.used}, free={self._free_bytes}, "
                f"direct={self.direct_used})")

    # ---- owners (open files with prefetched parts) -----------------------------------
    def register(self, owner: Owner) -> None:
        self._owners.add(owner)

    def unregister(self, owner: Owner) -> None:
        self._owners.discard(owner)
        self._last_unregister = self.clock()

    def owners(self) -> int:
        return len(self._owners)

    def active_owners(self) -> int:
        now = self.clock()
        return sum(1 for o in list(self._owners) if now - o.last_active < self.idle_s)

    def fair_share(self) -> int:
        """How much one reading file may buffer while the others read too."""
        return (self.limit - self.direct_reserve) // max(1, self.active_owners())

    # ---- allocation ------------------------------------------------------------------
    def _take_free(self, cls: int, *, most: int | None = None) -> Buffer | None:
        """A kept buffer for class ``cls``: of that class or the smallest larger one up to
        ``most``, whole; or, with ``most=None``, of any larger class, shrunk in place to ``cls``
        (its first pages reused as they are, the budget counting only what the part needs)."""
        for have in sorted(c for c, bucket in self._free.items()
                           if bucket and c >= cls and (most is None or c <= most)):
            buf = self._free[have].pop()
            self._free_bytes -= have
            self.stats["reused"] += 1
            if most is None and have > cls and buf.shrink(cls):
                self.used -= have - cls
                self.stats["shrunk"] += 1
            return buf
        return None

    def _new(self, n: int) -> Buffer:
        cls = size_class(n)
        pooled = n > MIN_POOLED
        buf = Buffer(cls if pooled else n, pooled)
        self.used += buf.capacity
        self.peak = max(self.peak, self.used)
        self.stats["allocated"] += 1
        return buf

    def _drop_free(self, need: int) -> None:
        """Unmap free buffers until ``need`` more bytes fit (or none are left)."""
        for cls in sorted(self._free, reverse=True):
            bucket = self._free[cls]
            while bucket and self.used + need > self._ceiling():
                bucket.pop().close()
                self._free_bytes -= cls
                self.used -= cls

    def _ceiling(self) -> int:
        return self.limit - self.direct_reserve

    def _fits(self, n: int, ceiling: int) -> bool:
        return self.used + n <= ceiling

    def _reuse(self, need: int, ceiling: int) -> Buffer | None:
        """A kept buffer for class ``need``: reused (a new mapping costs page faults and
        zeroing), but one much larger than the part is left for a larger part while a new one
        fits under ``ceiling``: kept whole, one fast reader's 32 MiB buffers took all the
        budget from four files' first 1 MiB parts and their reads fell back to direct GETs."""
        buf = self._take_free(need, most=2 * need)
        if buf is None and not self._fits(need, ceiling):
            buf = self._take_free(need)
        return buf

    def try_alloc(self, n: int, owner: Owner | None = None) -> Buffer | None:
        """A buffer for prefetching ``n`` bytes, or None when the budget is spent."""
        self._reap_held()
        need = size_class(n) if n > MIN_POOLED else n
        if n > MIN_POOLED:
            buf = self._reuse(need, self._ceiling())
            if buf is not None:
                return buf
        if not self._fits(need, self._ceiling()):
            self._drop_free(need)
        if not self._fits(need, self._ceiling()):
            self._reclaim(need, owner)
        if not self._fits(need, self._ceiling()):
            self.stats["refused"] += 1
            return None
        return self._new(n)

    def _reclaim(self, need: int, asking: Owner | None) -> None:
        now = self.clock()
        idle = sorted((o for o in list(self._owners)
                       if o is not asking and now - o.last_active >= self.idle_s),
                      key=lambda o: o.last_active)
        for owner in idle:
            freed = owner.shrink()
            if freed:
                self.stats["reclaimed"] += 1
                log.debug("reclaimed %d bytes from an idle open file", freed)
            self._drop_free(need)
            if self._fits(need, self._ceiling()):
                return

    async def alloc_direct(self, n: int) -> Buffer:
        """A buffer for a read that must be served now; waits only for other direct reads."""
        self.stats["direct"] += 1
        self._reap_held()
        need = size_class(n) if n > MIN_POOLED else n
        while True:
            if n > MIN_POOLED:
                buf = self._reuse(need, self.limit)
                if buf is not None:
                    self.direct_used += buf.capacity
                    return buf
            if not self._fits(need, self.limit):
                self._drop_free(need)
            # a lone direct read always proceeds, so one larger than the reserve cannot hang
            if self._fits(need, self.limit) or self.direct_used == 0:
                buf = self._new(n)
                self.direct_used += buf.capacity
                return buf
            self.stats["direct_waits"] += 1
            await self._changed.wait()

    def free(self, buf: Buffer, direct: bool = False) -> None:
        """Give a buffer back: kept for reuse while the free list is small, else unmapped.
        A buffer a reply still shows (the last reference to a part dropped while its read
        returns a view of it) is held aside, still accounted, until that view is gone."""
        if direct:
            self.direct_used -= buf.capacity
        if buf.pooled and buf.exported():
            self._held.append(buf)
        else:
            self._keep_or_unmap(buf)
        self._changed.set()
        self._changed = trio.Event()

    def _keep_or_unmap(self, buf: Buffer) -> None:
        if buf.pooled and self._free_bytes + buf.capacity <= self.keep_free:
            self._free.setdefault(buf.capacity, []).append(buf)
            self._free_bytes += buf.capacity
        else:
            buf.close()
            self.used -= buf.capacity

    def _reap_held(self) -> None:
        """Held buffers whose views are gone join the free list (or are unmapped)."""
        if not self._held:
            return
        still = []
        for buf in self._held:
            if buf.exported():
                still.append(buf)
            else:
                self._keep_or_unmap(buf)
        self._held = still

    def trim_later(self) -> None:
        """No file is open: ``trim_delay_s`` later the free buffers are lent to the kernel
        (``lend``), ``release_delay_s`` later unmapped (``trim``), unless a file is open by
        then; each delay counts from the last close (trio thread; one pending at a time)."""
        if self._trim_pending:
            return
        self._trim_pending = True
        trio.lowlevel.spawn_system_task(self._trim_when_idle, name="memory budget trim")

    async def _trim_when_idle(self) -> None:
        lent_after = None               # the last close the free buffers were lent after
        try:
            while True:
                lent = lent_after == self._last_unregister
                idle = self.clock() - self._last_unregister
                due = self.release_delay_s if lent else self.trim_delay_s
                if idle < due:      # wakes every trim_delay_s at most: a later close counts
                    await trio.sleep(min(due - idle, self.trim_delay_s))
                    if self.owners():
                        return          # in use again: the next last close schedules anew
                elif not lent:
                    self.lend()
                    lent_after = self._last_unregister
                else:
                    self.trim()
                    return
        finally:
            self._trim_pending = False

    def lend(self) -> None:
        """Let the kernel take the free buffers' pages back whenever it needs memory
        (``MADV_FREE``) while they stay mapped: reused before that, they cost nothing; taken,
        they come back as fresh zeroed pages (every buffer is written before it is read)."""
        self._reap_held()
        for bucket in self._free.values():
            for buf in bucket:
                if buf.lend():
                    self.stats["lent"] += 1

    def trim(self) -> None:
        """Unmap every free buffer (e.g. when the mount goes idle)."""
        self._reap_held()
        for cls, bucket in self._free.items():
            while bucket:
                bucket.pop().close()
                self.used -= cls
        self._free_bytes = 0

