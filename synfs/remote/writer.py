"""The async face of the write seams: Synapse writes and S3 uploads in worker threads.

``RemoteWriter`` shares the capacity limiters of ``Remote`` (one budget of concurrent Synapse
calls for reads and writes together). ``store_bytes`` turns a staged local file into a Synapse
file handle the way Synapse allows for the caller: the owner of an external storage location
uploads with ``read_write`` STS credentials to ``<baseKey>/<uuid>/<name>`` and registers the
object (``POST /externalFileHandle/s3``); anyone else uses Synapse's multipart upload with that
storage location. Ownership is asked once per storage location.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import uuid

import trio

from synfs import errors
from synfs.synapse.models import Entity, UploadDestination

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WriteTarget:
    """Where new bytes for files of one folder go: an external S3 STS storage location."""

    folder_id: int
    storage_location_id: int
    bucket: str
    base_key: str | None


def md5_and_size(path: str) -> tuple[str, int]:
    digest = hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class RemoteWriter:
    def __init__(self, writer, uploader, remote):
        self.writer = writer
        self.uploader = uploader
        self.synapse_limiter = remote.synapse_limiter
        self.s3_limiter = remote.s3_limiter
        self._owner: dict[int, bool] = {}

    async def _synapse(self, fn, *args, **kw):
        return await trio.to_thread.run_sync(lambda: fn(*args, **kw),
                                             limiter=self.synapse_limiter)

    async def upload_destination(self, folder_id: int) -> UploadDestination:
        return await self._synapse(self.writer.upload_destination, folder_id)

    async def create_folder(self, parent_id: int, name: str) -> Entity:
        return await self._synapse(self.writer.create_folder, parent_id, name)

    async def create_file(self, parent_id: int, name: str, file_handle_id: int) -> int:
        return await self._synapse(self.writer.create_file, parent_id, name, file_handle_id)

    async def new_version(self, entity_id: int, file_handle_id: int) -> None:
        await self._synapse(self.writer.new_version, entity_id, file_handle_id)

    async def move(self, entity_id: int, parent_id: int, name: str) -> None:
        await self._synapse(self.writer.move, entity_id, parent_id, name)

    async def delete(self, entity_id: int) -> None:
        await self._synapse(self.writer.delete, entity_id)

    async def owns(self, storage_location_id: int) -> bool:
        if storage_location_id not in self._owner:
            self._owner[storage_location_id] = await self._synapse(
                self.writer.owns_storage_location, storage_location_id)
        return self._owner[storage_location_id]

    async def store_bytes(self, target: WriteTarget, path: str, name: str) -> int:
        """Upload a staged file; return the new file handle's id."""
        if await self.owns(target.storage_location_id):
            prefix = f"{target.base_key}/" if target.base_key else ""
            key = f"{prefix}{uuid.uuid4()}/{name}"
            md5, size = await trio.to_thread.run_sync(
                self.uploader.upload, target.storage_location_id, target.folder_id,
                target.bucket, key, path, limiter=self.s3_limiter)
            try:
                return await self._synapse(
                    self.writer.external_s3_handle, bucket=target.bucket, key=key,
                    file_name=name, md5=md5, size=size,
                    storage_location_id=target.storage_location_id)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._cleanup(target, key)
                raise
        md5, size = await trio.to_thread.run_sync(md5_and_size, path)
        if size == 0:
            raise errors.InvalidRequest(
                f"{name}: Synapse's upload for users who do not own the storage location "
                "rejects empty files")
        return await self._synapse(self.writer.multipart_upload, os.fspath(path), file_name=name,
                                   md5=md5, size=size,
                                   storage_location_id=target.storage_location_id)

    async def _cleanup(self, target: WriteTarget, key: str) -> None:
        try:
            await trio.to_thread.run_sync(self.uploader.delete, target.storage_location_id,
                                          target.folder_id, target.bucket, key,
                                          limiter=self.s3_limiter)
        except Exception as exc:  # noqa: BLE001 - best effort: an unregistered object only
            log.warning("could not remove unregistered object %s: %s", key, exc)
