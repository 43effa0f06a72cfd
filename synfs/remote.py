"""The async face of the Synapse and S3 seams, as the filesystem core sees them.

``Remote`` runs the blocking client calls in worker threads (separate capacity limiters for
Synapse and S3, design lesson 5) and returns plain models. It decides how a file's bytes are
read: ranged S3 GETs with STS credentials when the file handle lives in an STS-enabled
storage location, pre-signed URLs otherwise. The core depends on this interface only; tests
pass an in-memory fake with the same methods.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from synfs.synapse.models import ChildHeader, Entity, FileHandle

log = logging.getLogger(__name__)


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

    async def _synapse(self, fn, *args):
        return await trio.to_thread.run_sync(fn, *args, limiter=self.synapse_limiter)

    async def get_entity(self, entity_id: int) -> Entity:
        return await self._synapse(self.client.get_entity, entity_id)

    async def list_children(self, parent_id: int) -> list[ChildHeader]:
        return await self._synapse(self.client.list_children, parent_id)

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
        if handle.is_s3 and await self.is_sts_location(entity.id, handle.storage_location_id):
            return await trio.to_thread.run_sync(
                self.s3_reader.read_range, handle.storage_location_id, entity.id, handle.bucket,
                handle.key, start, length, limiter=self.s3_limiter)

        def url() -> str:
            return self.client.presigned_url(entity.id, handle.id)

        return await trio.to_thread.run_sync(self.url_reader.read_range, url, start, length,
                                             limiter=self.s3_limiter)
