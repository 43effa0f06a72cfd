"""The async face of the Synapse and S3 seams, as the filesystem core sees them.

``Remote`` runs the blocking client calls in worker threads (separate capacity limiters for
Synapse and S3, design lesson 5) and returns plain models. It decides how a file's bytes are
read: ranged S3 GETs with STS credentials when the file handle lives in an STS-enabled
storage location, pre-signed URLs otherwise (a URL is reused for ``URL_REUSE_S`` seconds, so
the parts of one file do not each cost a REST call; on a snapshot mount, ``pin_locations``
makes the first missing URL bring those of the next files, 100 per call). The core depends on this interface only;
tests pass an in-memory fake with the same methods (``read_into`` is optional: the prefetcher
falls back to ``read``). A file deleted while open is still read with STS credentials asked
for through its folder. ``downloads`` is the mount's shared ``synfs.prefetch.Downloads``
(memory budget, single-flight part downloads, disk cache), set by the composition root.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

import trio

from synfs import errors
from synfs.synapse.models import ChildHeader, Entity, FileHandle

log = logging.getLogger(__name__)

URL_REUSE_S = 20.0        # pre-signed URLs live 30 s


class RemoteInterface(Protocol):
    async def get_entity(self, entity_id: int) -> Entity: ...

    async def list_children(self, parent_id: int) -> list[ChildHeader]: ...

    async def read(self, entity: Entity, start: int, length: int) -> bytes: ...


class Remote:
    """Async adapter over ``SynapseClient``, ``CredentialStore``, ``S3Reader`` and ``UrlReader``."""

    def __init__(self, client, s3_reader, url_reader, *, synapse_concurrency: int = 3,
                 s3_concurrency: int = 16):
        self.client = client
        self.s3_reader = s3_reader
        self.url_reader = url_reader
        self.synapse_limiter = trio.CapacityLimiter(synapse_concurrency)
        self.s3_limiter = trio.CapacityLimiter(s3_concurrency)
        self._sts_locations: dict[int, bool] = {}
        self._urls = _UrlCache(client)
        self.downloads = None

    async def _synapse(self, fn, *args):
        return await trio.to_thread.run_sync(fn, *args, limiter=self.synapse_limiter)

    async def get_entity(self, entity_id: int) -> Entity:
        return await self._synapse(self.client.get_entity, entity_id)

    async def list_children(self, parent_id: int) -> list[ChildHeader]:
        return await self._synapse(self.client.list_children, parent_id)

    def pin_locations(self, sts_by_location: dict[int, bool],
                      url_batch: Callable[[int], list[tuple[int, int]]] | None = None) -> None:
        """For a snapshot mount: which storage locations are STS-enabled is already known (no
        call to ask), and a missing pre-signed URL is fetched together with those of the files
        ``url_batch(entity_id)`` names (``POST /fileHandle/batch``, up to 100 per call)."""
        self._sts_locations.update(sts_by_location)
        self._urls.batch = url_batch

    async def is_sts_location(self, entity_id: int, storage_location_id: int | None) -> bool:
        """Whether a storage location is STS-enabled (a storage location never changes this)."""
        if storage_location_id is None:
            return False
        known = self._sts_locations.get(storage_location_id)
        if known is None:
            dest = await self._synapse(self.client.upload_destination, entity_id,
                                       storage_location_id)
            known = bool(dest.sts_enabled)
            self._sts_locations[storage_location_id] = known
        return known

    async def read(self, entity: Entity, start: int, length: int) -> bytes:
        handle: FileHandle = entity.file_handle
        if length <= 0 or start >= handle.size:
            return b""
        length = min(length, handle.size - start)
        if await self._uses_sts(entity):
            return await self._sts_read(self.s3_reader.read_range, entity, start, length)
        return await trio.to_thread.run_sync(self.url_reader.read_range,
                                             self._urls.provider(entity.id, handle.id), start,
                                             length, limiter=self.s3_limiter)

    async def read_into(self, entity: Entity, start: int, out: memoryview) -> int:
        """Fill ``out`` with content at ``start`` (fewer bytes only at the end of the file)."""
        handle: FileHandle = entity.file_handle
        length = min(len(out), handle.size - start)
        if length <= 0:
            return 0
        out = out[:length]
        if await self._uses_sts(entity):
            return await self._sts_read(self.s3_reader.read_into, entity, start, out)
        return await trio.to_thread.run_sync(self.url_reader.read_into,
                                             self._urls.provider(entity.id, handle.id), start,
                                             out, limiter=self.s3_limiter)

    async def _sts_read(self, fn, entity: Entity, start: int, arg):
        """A ranged STS read. Credentials are asked for through the file's entity; a file
        deleted while open (its readers keep reading its version) has none left, so they are
        then asked for through its folder, in the same storage location."""
        handle: FileHandle = entity.file_handle

        def call(via: int):
            return trio.to_thread.run_sync(fn, handle.storage_location_id, via, handle.bucket,
                                           handle.key, start, arg, limiter=self.s3_limiter)

        try:
            return await call(entity.id)
        except (errors.NotFound, errors.InvalidRequest):
            if entity.parent_id is None:
                raise
            log.debug("syn%d is gone: STS credentials through its folder syn%d", entity.id,
                      entity.parent_id)
            return await call(entity.parent_id)

    async def _uses_sts(self, entity: Entity) -> bool:
        handle = entity.file_handle
        return handle.is_s3 and await self.is_sts_location(entity.id, handle.storage_location_id)


class _UrlCache:
    """Pre-signed URLs per file handle, reused while young (thread-safe: worker threads ask).
    A provider's second call (after a 403 or a long retry) always fetches a new URL. With a
    ``batch`` hint (snapshot mounts) a missing URL comes with those of the hinted files, in
    one call, and one batch is fetched at a time (the next asker finds its URL cached)."""

    def __init__(self, client, clock=time.monotonic):
        self.client = client
        self.clock = clock
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._urls: dict[int, tuple[float, str]] = {}
        self.batch: Callable[[int], list[tuple[int, int]]] | None = None

    def _young(self, file_handle_id: int) -> str | None:
        with self._lock:
            cached = self._urls.get(file_handle_id)
        return cached[1] if cached and self.clock() - cached[0] < URL_REUSE_S else None

    def _batched(self, entity_id: int, file_handle_id: int) -> str:
        with self._fetching:
            url = self._young(file_handle_id)
            if url is not None:
                return url
            pairs = [(entity_id, file_handle_id)] + [
                (e, f) for e, f in self.batch(entity_id) if self._young(f) is None]
            got = self.client.presigned_urls(pairs)
            now = self.clock()
            with self._lock:
                if len(self._urls) + len(got) >= 10_000:
                    self._urls.clear()
                for fh, value in got.items():
                    if isinstance(value, str):
                        self._urls[fh] = (now, value)
        mine = got.get(file_handle_id)
        if isinstance(mine, Exception):
            raise mine
        return mine

    def provider(self, entity_id: int, file_handle_id: int):
        calls = [0]

        def url() -> str:
            calls[0] += 1
            with self._lock:
                cached = self._urls.get(file_handle_id)
            if calls[0] == 1 and cached and self.clock() - cached[0] < URL_REUSE_S:
                return cached[1]
            if calls[0] == 1 and self.batch is not None:
                return self._batched(entity_id, file_handle_id)
            fresh = self.client.presigned_url(entity_id, file_handle_id)
            with self._lock:
                if len(self._urls) >= 10_000:
                    self._urls.clear()
                self._urls[file_handle_id] = (self.clock(), fresh)
            return fresh

        return url
