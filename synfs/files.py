"""Open files of the read path: each pinned to one file handle (immutable content), with a
simple sequential readahead window.

A read inside the buffered window is served from memory. A read that continues where the
previous one ended doubles the window (``initial`` up to ``maximum``); any other read resets
it. One ranged request fills the window. The full prefetcher (parallel ranged GETs, a global
memory budget) replaces this later.
"""

from __future__ import annotations

import dataclasses

import trio

from synfs import errors
from synfs.synapse.models import Entity


@dataclasses.dataclass(frozen=True)
class ReadaheadPolicy:
    initial: int = 1024 * 1024
    maximum: int = 16 * 1024 * 1024


class OpenFile:
    def __init__(self, entity: Entity, remote, policy: ReadaheadPolicy):
        self.entity = entity
        self.size = entity.file_handle.size
        self.remote = remote
        self.policy = policy
        self._lock = trio.Lock()
        self._buf_start = 0
        self._buf = b""
        self._next_expected = 0
        self._window = policy.initial
        self.requests = 0   # ranged requests made (for tests and stats)

    async def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size or size <= 0:
            return b""
        size = min(size, self.size - offset)
        async with self._lock:
            end = offset + size
            buf_end = self._buf_start + len(self._buf)
            if not (self._buf_start <= offset and end <= buf_end):
                if offset == self._next_expected:
                    self._window = min(self._window * 2, self.policy.maximum)
                else:
                    self._window = self.policy.initial
                length = min(max(size, self._window), self.size - offset)
                self._buf, self._buf_start = b"", 0
                data = await self.remote.read(self.entity, offset, length)
                self.requests += 1
                if len(data) != length:
                    raise errors.Unavailable(
                        f"syn{self.entity.id}: asked for {length} bytes at {offset}, got "
                        f"{len(data)} (object shorter than its file handle says?)")
                self._buf, self._buf_start = data, offset
            self._next_expected = offset + size
            rel = offset - self._buf_start
            return self._buf[rel:rel + size]
