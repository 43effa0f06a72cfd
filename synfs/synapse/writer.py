"""Synapse-side writes: entities (create, new version, move, trash), storage-location
ownership, and file handles (external S3 handles and Synapse's multipart upload).

Owns every REST call that changes Synapse. Built on ``SynapseClient._request``, so it shares its
retries (429/5xx/connection errors inside a per-call budget) and typed errors: 400 ->
InvalidRequest (bad names and STS rule violations: the core maps them to EINVAL/EXDEV),
403 -> PermissionDenied, 404 -> NotFound, 409 -> AlreadyExists, 412 -> StaleUpdate.

``PUT /entity/{id}`` needs the full entity with its current etag (synapse-api.md §3.4).
``new_version`` and ``move`` read the raw entity, change it and PUT it; on 412 (someone else
updated it first) they read it again and re-apply the change, at most ``MAX_TRIES`` times, so two
writers of one file both land and the last one wins. Re-reading also makes them idempotent: if
the entity already shows the change (say a PUT whose answer was lost, retried by the client with
the old etag), they return without another PUT. ``create_file`` is idempotent the same way: a
409 for a name that already holds our (freshly created, hence unique) file handle is our own
earlier attempt.

Versions: ``new_version`` sends ``newVersion=true``, as synapseclient's ``store_entity`` does by
default (``force_version``), and the emulator honours it: every commit is a new version, even
when the MD5 equals the current one, and older versions keep their file handles in the history.

``multipart_upload`` is Synapse's ``/file/multipart`` flow (§4.5) for a user who does not own an
external storage location (only its creator may register ``/externalFileHandle/s3`` handles):
parts of ``max(8 MiB, ceil(size / 10000))`` bytes go to pre-signed URLs with ``requests`` (never
with the Synapse token; URLs are never logged), each is added with its MD5, then the upload is
completed. A restarted identical request resumes (parts already added are skipped). The file is
read once; if its bytes no longer match ``md5``/``size`` the upload is not completed.

Blocking and thread-safe (worker threads).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from urllib.parse import urlsplit

import requests

from synfs.errors import (AlreadyExists, ContentChanged, FileTooLarge, InvalidRequest,
                          PermissionDenied, QuotaExceeded, StaleUpdate, Unavailable)
from synfs.synapse.client import (RETRY_STATUSES, RetryBudget, SynapseClient, parse_entity,
                                  shared_adapter, thread_session)
from synfs.synapse.models import CT, Entity, UploadDestination, parse_id

log = logging.getLogger(__name__)

FOLDER = CT + "Folder"
FILE = CT + "FileEntity"
S3_HANDLE = CT + "file.S3FileHandle"
MULTIPART_REQUEST = CT + "file.MultipartUploadRequest"
MAX_TRIES = 5                      # reads + PUTs of one update racing other writers
MIN_PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
MAX_ADD_TRIES = 3                  # re-uploads of a part Synapse reports ADD_FAILED
_S3_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


def part_size_for(size: int) -> int:
    return max(MIN_PART_SIZE, -(-size // MAX_PARTS))


class SynapseWriter:
    def __init__(self, client: SynapseClient):
        self.client = client
        self._owned: dict[int, bool] = {}
        self._lock = threading.Lock()
        self._adapter = shared_adapter(8)      # pre-signed part PUTs: no Synapse token
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SynapseWriter({self.client!r})"

    def close(self) -> None:
        self._adapter.close()

    # ---- entities ----------------------------------------------------------------------------
    def create_folder(self, parent_id: int, name: str) -> Entity:
        data = self.client._request("POST", "repo", "/entity", entity_id=parent_id, body={
            "name": name, "parentId": f"syn{parent_id}", "concreteType": FOLDER})
        return parse_entity({"entity": data})

    def create_file(self, parent_id: int, name: str, file_handle_id: int) -> int:
        try:
            data = self.client._request("POST", "repo", "/entity", entity_id=parent_id, body={
                "name": name, "parentId": f"syn{parent_id}", "concreteType": FILE,
                "dataFileHandleId": str(file_handle_id)})
        except AlreadyExists:
            existing = self.client.child_id(parent_id, name)
            if existing is not None:
                raw = self._get_raw(existing)
                if str(raw.get("dataFileHandleId")) == str(file_handle_id):
                    log.debug("create_file: syn%d already holds handle %d", existing,
                              file_handle_id)
                    return existing
            raise
        return parse_id(data["id"])

    def new_version(self, entity_id: int, file_handle_id: int) -> None:
        def change(raw: dict) -> dict | None:
            if raw.get("concreteType") != FILE:
                raise InvalidRequest(f"syn{entity_id} is not a file", entity=f"syn{entity_id}")
            if str(raw.get("dataFileHandleId")) == str(file_handle_id):
                return None                     # already the current version
            raw["dataFileHandleId"] = str(file_handle_id)
            raw.pop("versionLabel", None)       # the server numbers the new version
            raw.pop("versionComment", None)
            return raw

        self._update(entity_id, change, params={"newVersion": "true"})

    def move(self, entity_id: int, new_parent_id: int, new_name: str) -> None:
        def change(raw: dict) -> dict | None:
            if parse_id(raw["parentId"]) == new_parent_id and raw.get("name") == new_name:
                return None
            raw["parentId"] = f"syn{new_parent_id}"
            raw["name"] = new_name
            return raw

        self._update(entity_id, change)

    def delete(self, entity_id: int) -> None:
        """Move to the trash can (already trashed or missing: nothing to do)."""
        self.client._request("DELETE", "repo", f"/entity/syn{entity_id}", entity_id=entity_id)

    def _get_raw(self, entity_id: int) -> dict:
        return self.client._request("GET", "repo", f"/entity/syn{entity_id}",
                                    entity_id=entity_id)

    def _update(self, entity_id: int, change, params: dict | None = None) -> None:
        last: StaleUpdate | None = None
        for attempt in range(MAX_TRIES):
            if attempt:
                time.sleep(random.uniform(0.0, 0.05 * attempt))    # let the racer finish
            body = change(self._get_raw(entity_id))
            if body is None:
                return
            try:
                self.client._request("PUT", "repo", f"/entity/syn{entity_id}", body=body,
                                     params=params, entity_id=entity_id)
                return
            except StaleUpdate as exc:
                last = exc
                log.debug("syn%d changed under the update (try %d), re-reading", entity_id,
                          attempt + 1)
        raise StaleUpdate(f"PUT /entity/syn{entity_id}: still conflicting after {MAX_TRIES} "
                          f"tries ({last.message if last else ''})", entity=f"syn{entity_id}")

    # ---- storage locations and upload destinations --------------------------------------------
    def owns_storage_location(self, storage_location_id: int) -> bool:
        """May this user create external S3 handles there (is it the location's creator)?"""
        with self._lock:
            known = self._owned.get(storage_location_id)
        if known is not None:
            return known
        try:
            self.client._request("GET", "repo", f"/storageLocation/{storage_location_id}")
            owned = True
        except PermissionDenied:
            owned = False
        with self._lock:
            self._owned[storage_location_id] = owned
        return owned

    def upload_destination(self, entity_id) -> UploadDestination:
        return self.client.upload_destination(parse_id(entity_id))

    # ---- file handles -------------------------------------------------------------------------
    def external_s3_handle(self, *, bucket: str, key: str, file_name: str, md5: str, size: int,
                           storage_location_id: int,
                           content_type: str = "application/octet-stream") -> int:
        data = self.client._request("POST", "file", "/externalFileHandle/s3", body={
            "concreteType": S3_HANDLE, "bucketName": bucket, "key": key, "fileName": file_name,
            "contentMd5": md5, "contentSize": size, "storageLocationId": storage_location_id,
            "contentType": content_type})
        return int(data["id"])

    def multipart_upload(self, path: str, *, file_name: str, md5: str, size: int,
                         storage_location_id: int,
                         content_type: str = "application/octet-stream") -> int:
        part_size = part_size_for(size)
        status = self.client._request("POST", "file", "/file/multipart",
                                      params={"forceRestart": "false"}, body={
            "concreteType": MULTIPART_REQUEST, "contentMD5Hex": md5, "fileName": file_name,
            "generatePreview": False, "storageLocationId": storage_location_id,
            "fileSizeBytes": size, "partSizeBytes": part_size, "contentType": content_type})
        if status.get("state") == "COMPLETED" and status.get("resultFileHandleId"):
            return int(status["resultFileHandleId"])          # the same upload, done before
        upload_id = str(status["uploadId"])
        added = status.get("partsState") or ""
        whole = hashlib.md5()
        total = 0
        with open(path, "rb") as f:
            n = 0
            while True:
                chunk = f.read(part_size)
                if not chunk:
                    break
                n += 1
                whole.update(chunk)
                total += len(chunk)
                if total > size:
                    break
                if n <= len(added) and added[n - 1] == "1":
                    continue                                  # resumed: already added
                self._send_part(upload_id, n, chunk, content_type)
        if total != size or whole.hexdigest() != md5.lower():
            raise ContentChanged(f"{path} no longer matches the size and MD5 it was staged with;"
                                 f" multipart upload {upload_id} not completed")
        done = self.client._request("PUT", "file", f"/file/multipart/{upload_id}/complete")
        return int(done["resultFileHandleId"])

    def _send_part(self, upload_id: str, n: int, chunk: bytes, content_type: str) -> None:
        part_md5 = hashlib.md5(chunk).hexdigest()
        error = ""
        for _ in range(MAX_ADD_TRIES):
            self._put_part(upload_id, n, chunk, content_type)
            added = self.client._request("PUT", "file", f"/file/multipart/{upload_id}/add/{n}",
                                         params={"partMD5Hex": part_md5}) or {}
            if added.get("addPartState") == "ADD_SUCCESS":
                return
            error = added.get("errorMessage") or "ADD_FAILED"
            log.info("multipart upload %s: part %d not added (%s), sending it again",
                     upload_id, n, error)
        raise Unavailable(f"multipart upload {upload_id}: part {n} was not accepted ({error})")

    def _part_url(self, upload_id: str, n: int, content_type: str) -> tuple[str, dict]:
        data = self.client._request(
            "POST", "file", f"/file/multipart/{upload_id}/presigned/url/batch",
            body={"uploadId": upload_id, "partNumbers": [n], "contentType": content_type})
        item = next(p for p in data["partPresignedUrls"] if int(p["partNumber"]) == n)
        return item["uploadPresignedUrl"], dict(item.get("signedHeaders") or {})

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = thread_session(self._adapter)
        return session

    def _put_part(self, upload_id: str, n: int, chunk: bytes, content_type: str) -> None:
        """PUT one part to its pre-signed URL (fetched fresh; refetched once on a 403)."""
        budget = RetryBudget(self.client.retry_budget_s)
        url, headers = self._part_url(upload_id, n, content_type)
        refetched = False
        last = ""
        while True:
            host = urlsplit(url).netloc
            try:
                resp = self._session().put(url, data=chunk, headers=headers,
                                           timeout=(self.client.connect_timeout,
                                                    budget.timeout(self.client.read_timeout)))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last = type(exc).__name__             # str(exc) would carry the signed URL
            else:
                status = resp.status_code
                code = (_S3_CODE.search(resp.content or b"") or [None, b""])[1].decode()
                log.debug("part %d of multipart upload %s to %s -> %d %s", n, upload_id, host,
                          status, code)
                if 200 <= status < 300:
                    return
                what = f"multipart upload {upload_id}: part {n} PUT at {host}: {status} {code}"
                if code in ("EntityTooLarge",):
                    raise FileTooLarge(what)
                if code in ("QuotaExceeded",) or status == 507:
                    raise QuotaExceeded(what)
                if status == 403 and not refetched:
                    refetched = True                  # the URL may have expired
                    url, headers = self._part_url(upload_id, n, content_type)
                    continue
                if status in (401, 403):
                    raise PermissionDenied(what)
                if status not in RETRY_STATUSES and code not in ("SlowDown", "BadDigest"):
                    raise Unavailable(what)
                last = f"HTTP {status} {code}".strip()
            if not budget.wait():
                raise Unavailable(f"multipart upload {upload_id}: part {n}: gave up after "
                                  f"{self.client.retry_budget_s:g}s ({last})")
