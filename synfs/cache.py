"""Explicit, bounded, TTL'd caches with an injectable clock, and trio single-flight.

``TTLCache`` is a size-bounded LRU whose entries expire ``ttl`` seconds after insertion.
``SingleFlight`` makes concurrent requests for the same key share one call (design lesson 6):
fifty lookups of one folder make one REST call. Both live in the trio thread only.
"""

from __future__ import annotations

import collections
import time
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


class TTLCache(Generic[K, V]):
    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self.ttl = ttl
        self.clock = clock
        self._data: collections.OrderedDict[K, tuple[float, V]] = collections.OrderedDict()

    def get(self, key: K, default=None):
        item = self._data.get(key, _MISSING)
        if item is _MISSING:
            return default
        expires, value = item
        if self.clock() >= expires:
            del self._data[key]
            return default
        self._data.move_to_end(key)
        return value

    def __contains__(self, key: K) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def set(self, key: K, value: V, ttl: float | None = None) -> None:
        self._data[key] = (self.clock() + (self.ttl if ttl is None else ttl), value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: K, default=None):
        item = self._data.pop(key, _MISSING)
        return default if item is _MISSING else item[1]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight(Generic[K, V]):
    """Coalesce concurrent async calls per key; the first caller's result (or error) is shared."""

    def __init__(self):
        self._inflight: dict[K, tuple[trio.Event, list]] = {}

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        waiting = self._inflight.get(key)
        if waiting is not None:
            event, box = waiting
            await event.wait()
            if box[1] is not None:
                raise box[1]
            return box[0]
        event, box = trio.Event(), [None, None]
        self._inflight[key] = (event, box)
        try:
            box[0] = await fn()
            return box[0]
        except BaseException as exc:  # shared with waiters, re-raised here unchanged
            box[1] = exc if isinstance(exc, Exception) else RuntimeError("cancelled")
            raise
        finally:
            del self._inflight[key]
            event.set()

    def __len__(self) -> int:
        return len(self._inflight)
