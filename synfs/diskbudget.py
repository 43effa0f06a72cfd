"""One byte budget (``--cache-size``) for everything synfs keeps in its cache directory.

Owns the accounting shared by the two users of that directory: the write staging area
(``synfs.write.staging``, unsaved user data) and the optional data cache (``synfs.read.datacache``, a
copy of bytes that are safe in S3). It holds no files itself; it only counts.

* Staged bytes come first. ``stage`` refuses only when staged bytes alone would exceed the
  limit; otherwise it accepts and, if staged plus cached bytes are now over the limit, asks the
  data cache (its ``reclaimer``) to evict least-recently-used blocks for the difference, before
  the caller writes the staged bytes to disk.
* The data cache lives in what staging leaves: ``room`` is ``limit - staged``. It ``claim``s
  the bytes of a block before writing it (evicting its own LRU blocks until the claim fits)
  and ``unclaim``s them only after the block's file is gone, so counted bytes never lag
  behind the disk. The one exception: a block being written while staging takes its room
  cannot be evicted mid-write; the cache evicts it (or an older block) as soon as the write
  ends (``over`` is then positive), so the overshoot is bounded by the blocks in flight.

Thread-safe: staging calls it from the trio thread, the data cache from worker threads. The
lock guards only the counters; the reclaimer is called outside it, so the data cache may call
``claim``/``unclaim`` while holding its own lock (lock order: data cache, then budget).
"""

from __future__ import annotations

import threading
from typing import Callable


class DiskBudget:
    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError("disk budget must be >= 0")
        self.limit = limit
        self.staged = 0           # bytes of staged (unsaved) writes
        self.cached = 0           # bytes the data cache holds or is writing (headers included)
        self._lock = threading.Lock()
        self._reclaim: Callable[[int], int] | None = None

    def __repr__(self) -> str:
        return f"DiskBudget(limit={self.limit}, staged={self.staged}, cached={self.cached})"

    def set_reclaimer(self, reclaim: Callable[[int], int]) -> None:
        """``reclaim(nbytes)`` evicts at least ``nbytes`` of cached data if it can and returns
        what it freed (it must ``unclaim`` them). One data cache per budget."""
        if self._reclaim is not None:
            raise RuntimeError("this disk budget already has a data cache")
        self._reclaim = reclaim

    # ---- staging (priority) ------------------------------------------------------------
    def stage(self, nbytes: int, *, force: bool = False) -> bool:
        """Count ``nbytes`` more staged data; False (nothing counted) only if staged data
        alone would exceed the limit (``force``: count it anyway, for files already on disk,
        e.g. kept from an earlier crash). Evicts cached data to make the room first."""
        with self._lock:
            if not force and self.staged + nbytes > self.limit:
                return False
            self.staged += nbytes
            over = self.staged + self.cached - self.limit
        if over > 0 and self._reclaim is not None:
            self._reclaim(over)
        return True

    def unstage(self, nbytes: int) -> None:
        with self._lock:
            self.staged = max(0, self.staged - nbytes)

    # ---- data cache (what is left) -----------------------------------------------------
    @property
    def room(self) -> int:
        """The most the data cache may hold now: the limit minus staged bytes."""
        return max(0, self.limit - self.staged)

    def claim(self, nbytes: int, *, force: bool = False) -> bool:
        """Count ``nbytes`` more cached data if it fits next to staged and cached bytes (or
        unconditionally with ``force``, for blocks already on disk; then evict)."""
        with self._lock:
            if not force and self.staged + self.cached + nbytes > self.limit:
                return False
            self.cached += nbytes
            return True

    def unclaim(self, nbytes: int) -> None:
        with self._lock:
            self.cached = max(0, self.cached - nbytes)

    def over(self, extra: int = 0) -> int:
        """How many bytes (plus ``extra`` wanted) are counted beyond the limit (0 if none)."""
        with self._lock:
            return max(0, self.staged + self.cached + extra - self.limit)
