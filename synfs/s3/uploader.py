"""Uploads of staged files to S3 with read_write STS credentials (the write half of the
object-store seam).

Owns the S3 calls of a commit. ``S3Uploader.upload`` reads a local file once, sequentially,
hashing it on the way, and writes it to ``bucket/key``:

* a file of at most ``part_size`` bytes goes up with one PutObject;
* a larger one with a multipart upload (CreateMultipartUpload, UploadPart, Complete) in parts
  of ``max(part_size, ceil(size / 10000))`` bytes, at most ``max_concurrency`` parts in flight
  (memory stays below ``max_concurrency + 1`` parts); on any failure the upload is aborted, so
  no parts are left behind.

Every body carries ``Content-MD5``, so S3 itself refuses corrupted bytes (``BadDigest``,
retried). The result is then checked: each ETag equals the MD5 of its bytes (a multipart ETag
is the MD5 of the part digests plus ``-N``; KMS or SSE-C encrypted objects have other ETags and
are exempt) and a HeadObject shows the object's size equals the bytes read. A file that changed
size while it was read is refused (``ContentChanged``) and its object deleted.

Objects get the canned ACL ``bucket-owner-full-control`` (synapse-api.md §5.3); a bucket that
refuses ACLs ("Invalid canned ACL", ``AccessControlListNotSupported``) is written again without
one and remembered. Errors, per request: credentials S3 rejects are refreshed as
``synfs.s3.policy`` says; ``AccessDenied`` -> PermissionDenied; ``QuotaExceeded`` -> QuotaExceeded
(EDQUOT); ``EntityTooLarge`` -> FileTooLarge (EFBIG); 5xx, SlowDown and transport errors are
retried with backoff inside ``retry_budget_s``, then Unavailable. Every call has a connect and a
read timeout. ``delete`` is best-effort cleanup of an orphan object and never raises.

Blocking and thread-safe (worker threads). Credentials never appear in logs or messages.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import logging
import os
import threading
import time

import botocore.config
import botocore.exceptions

from synfs.errors import (ContentChanged, FileTooLarge, NotFound, PermissionDenied,
                          QuotaExceeded, SynfsError, Unavailable)
from synfs.s3.policy import (NOT_FOUND_CODES, TRANSPORT_ERRORS, RequestCredentials, client_error,
                             retryable)
from synfs.synapse.client import CallStats, RetryBudget, quiet_third_party_loggers
from synfs.s3.clients import ClientCache, s3_config
from synfs.synapse.models import StsCredentials

log = logging.getLogger(__name__)
quiet_third_party_loggers()

PERMISSION = "read_write"
ACL = "bucket-owner-full-control"
MAX_PARTS = 10_000
ABORT_BUDGET_S = 10.0
QUOTA_CODES = frozenset({"QuotaExceeded", "XMinioAdminBucketQuotaExceeded",
                         "XMinioStorageFull", "InsufficientStorage"})
TOO_LARGE_CODES = frozenset({"EntityTooLarge"})
KMS_SSE = frozenset({"aws:kms", "aws:kms:dsse"})


class _AclRefused(Exception):
    """The bucket refused the canned ACL: write again without one."""


def _acl_refused(code: str, message: str) -> bool:
    text = message.lower()
    return (code == "AccessControlListNotSupported" or "invalid canned acl" in text
            or (code in ("InvalidArgument", "InvalidRequest", "NotImplemented")
                and "acl" in text))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _etag(resp: dict | None) -> str:
    return str((resp or {}).get("ETag") or "").strip('"').lower()


def _etag_checked(resp: dict | None) -> bool:
    """ETags are MD5s unless the object is encrypted with KMS or a customer key."""
    resp = resp or {}
    return not (resp.get("ServerSideEncryption") in KMS_SSE or resp.get("SSECustomerAlgorithm"))


class _Target:
    """Where one upload goes (and which entity names its storage location for STS)."""

    def __init__(self, storage_location_id: int, entity_id: int, bucket: str, key: str):
        self.storage_location_id = storage_location_id
        self.entity_id = entity_id
        self.bucket = bucket
        self.key = key
        self.where = f"syn{entity_id} s3://{bucket}/{key}"


class S3Uploader:
    """PutObject / multipart uploads with STS credentials from a ``CredentialStore``."""

    def __init__(self, endpoint_url: str | None, credentials, *, retry_budget_s: float = 30.0,
                 part_size: int = 8 * 1024 * 1024, max_concurrency: int = 4,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0):
        if part_size < 1 or max_concurrency < 1:
            raise ValueError("part_size and max_concurrency must be positive")
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.retry_budget_s = retry_budget_s
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.stats = CallStats()
        self._config = s3_config(connect_timeout, read_timeout, max(10, 2 * max_concurrency))
        self._clients = ClientCache(endpoint_url, self._config)
        self._no_acl: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Uploader(endpoint_url={self.endpoint_url!r}, part_size={self.part_size})"

    def close(self) -> None:
        self._clients.close()

    # ---- public ----------------------------------------------------------------------------
    def upload(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
               path: str) -> tuple[str, int]:
        """Write the file at ``path`` to ``bucket/key``; returns ``(md5_hex, size)``."""
        target = _Target(storage_location_id, entity_id, bucket, key)
        started = time.monotonic()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            part_size = max(self.part_size, -(-size // MAX_PARTS))
            try:
                if size <= part_size:
                    md5, total, etag_ok = self._put_single(target, f)
                else:
                    md5, total, etag_ok = self._put_multipart(target, f, part_size)
            except NotFound as exc:              # no such bucket / upload vanished
                raise Unavailable(exc.message, entity=exc.entity) from None
            changed = os.fstat(f.fileno()).st_size != total
        try:
            if changed:
                raise ContentChanged(f"{path} changed size while it was uploaded",
                                     entity=f"syn{entity_id}")
            if not etag_ok:
                raise Unavailable(f"S3 upload {target.where}: the ETag does not match the MD5",
                                  entity=f"syn{entity_id}")
            head = self._call("HeadObject", target, lambda c: c.head_object(
                Bucket=bucket, Key=key), missing_ok=True)
            if int(head.get("ContentLength", -1)) != total:
                raise Unavailable(f"S3 upload {target.where}: the object has "
                                  f"{head.get('ContentLength')} bytes, the file {total}",
                                  entity=f"syn{entity_id}")
        except NotFound:
            raise Unavailable(f"S3 upload {target.where}: object missing after upload",
                              entity=f"syn{entity_id}") from None
        except SynfsError:
            self.delete(storage_location_id, entity_id, bucket, key)
            raise
        log.debug("uploaded %d bytes to %s in %.3fs", total, target.where,
                  time.monotonic() - started)
        return md5, total

    def delete(self, storage_location_id: int, entity_id: int, bucket: str, key: str) -> None:
        """Best-effort removal of an orphan object (never raises)."""
        target = _Target(storage_location_id, entity_id, bucket, key)
        try:
            self._call("DeleteObject", target,
                       lambda c: c.delete_object(Bucket=bucket, Key=key), missing_ok=True)
        except NotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - cleanup must not mask the caller's error
            log.warning("could not delete orphan object %s: %s", target.where,
                        getattr(exc, "message", None) or type(exc).__name__)

    # ---- single PUT --------------------------------------------------------------------------
    def _put_single(self, target: _Target, f) -> tuple[str, int, bool]:
        data = f.read()
        digest = hashlib.md5(data).digest()
        resp = self._with_acl(target, "PutObject", lambda c, acl: c.put_object(
            Bucket=target.bucket, Key=target.key, Body=data, ContentMD5=_b64(digest), **acl))
        ok = not _etag_checked(resp) or _etag(resp) == digest.hex()
        return digest.hex(), len(data), ok

    # ---- multipart ---------------------------------------------------------------------------
    def _put_multipart(self, target: _Target, f, part_size: int) -> tuple[str, int, bool]:
        bucket, key = target.bucket, target.key
        created = self._with_acl(target, "CreateMultipartUpload",
                                 lambda c, acl: c.create_multipart_upload(
                                     Bucket=bucket, Key=key, **acl))
        upload_id = created["UploadId"]
        try:
            md5, total, parts, part_digests = self._send_parts(target, f, part_size, upload_id)
            try:
                done = self._call("CompleteMultipartUpload", target,
                                  lambda c: c.complete_multipart_upload(
                                      Bucket=bucket, Key=key, UploadId=upload_id,
                                      MultipartUpload={"Parts": parts}), missing_ok=True)
            except NotFound:
                # A Complete whose answer was lost, retried: the upload is gone. The object
                # (checked below) tells whether it was completed.
                done = self._call("HeadObject", target, lambda c: c.head_object(
                    Bucket=bucket, Key=key), missing_ok=True)
        except BaseException:
            self._abort(target, upload_id)
            raise
        expected = hashlib.md5(b"".join(part_digests)).hexdigest() + f"-{len(parts)}"
        return md5, total, not _etag_checked(done) or _etag(done) == expected

    def _send_parts(self, target: _Target, f, part_size: int, upload_id: str):
        """Read parts sequentially, upload up to ``max_concurrency`` at a time."""
        whole = hashlib.md5()
        total = 0
        digests: list[bytes] = []
        etags: dict[int, str] = {}
        failed = threading.Event()
        slots = threading.BoundedSemaphore(self.max_concurrency)
        futures: list[concurrent.futures.Future] = []

        def send(n: int, chunk: bytes, digest: bytes) -> None:
            try:
                if failed.is_set():
                    return
                resp = self._call("UploadPart", target, lambda c: c.upload_part(
                    Bucket=target.bucket, Key=target.key, UploadId=upload_id, PartNumber=n,
                    Body=chunk, ContentMD5=_b64(digest)))
                if _etag_checked(resp) and _etag(resp) != digest.hex():
                    raise Unavailable(f"S3 UploadPart {n} of {target.where}: the ETag does not "
                                      "match the MD5", entity=f"syn{target.entity_id}")
                etags[n] = resp["ETag"]
            except BaseException:
                failed.set()
                raise
            finally:
                slots.release()

        with concurrent.futures.ThreadPoolExecutor(self.max_concurrency,
                                                   thread_name_prefix="s3-upload") as pool:
            try:
                while not failed.is_set():
                    chunk = f.read(part_size)
                    if not chunk:
                        break
                    n = len(digests) + 1
                    if n > MAX_PARTS:
                        raise FileTooLarge(f"{target.where}: more than {MAX_PARTS} parts",
                                           entity=f"syn{target.entity_id}")
                    digest = hashlib.md5(chunk).digest()
                    whole.update(chunk)
                    total += len(chunk)
                    digests.append(digest)
                    slots.acquire()
                    futures.append(pool.submit(send, n, chunk, digest))
                    del chunk
            except BaseException:
                failed.set()
                raise
        for fut in futures:         # the first failure, in part order
            fut.result()
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in range(1, len(digests) + 1)]
        return whole.hexdigest(), total, parts, digests

    def _abort(self, target: _Target, upload_id: str) -> None:
        try:
            self._call("AbortMultipartUpload", target, lambda c: c.abort_multipart_upload(
                Bucket=target.bucket, Key=target.key, UploadId=upload_id),
                missing_ok=True, budget_s=min(self.retry_budget_s, ABORT_BUDGET_S))
        except NotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - never mask the failure being reported
            log.warning("multipart upload %s of %s could not be aborted (%s); the bucket's "
                        "lifecycle rules must clean it up", upload_id, target.where,
                        getattr(exc, "message", None) or type(exc).__name__)

    # ---- one S3 request ----------------------------------------------------------------------
    def _with_acl(self, target: _Target, op: str, fn):
        """``fn(client, acl_kwargs)`` with the canned ACL unless the bucket refuses ACLs."""
        with self._lock:
            use_acl = target.bucket not in self._no_acl
        if use_acl:
            try:
                return self._call(op, target, lambda c: fn(c, {"ACL": ACL}), acl_sensitive=True)
            except _AclRefused:
                log.info("bucket %s refuses canned ACLs: writing without %s", target.bucket, ACL)
                with self._lock:
                    self._no_acl.add(target.bucket)
        return self._call(op, target, lambda c: fn(c, {}))

    def _client(self, creds: StsCredentials):
        return self._clients.get(creds)

    def _call(self, op: str, target: _Target, fn, *, acl_sensitive: bool = False,
              missing_ok: bool = False, budget_s: float | None = None):
        """One S3 request with refresh-once, retries inside the budget and error mapping."""
        where, entity = target.where, f"syn{target.entity_id}"
        sl = target.storage_location_id
        budget_total = self.retry_budget_s if budget_s is None else budget_s
        budget = RetryBudget(budget_total)
        rc = RequestCredentials(self.credentials, sl, target.entity_id, PERMISSION, self.stats)
        last = ""
        while True:
            self.stats.incr(f"s3 {op}")
            started = time.monotonic()
            try:
                resp = fn(self._client(rc.creds))
                log.debug("%s %s in %.3fs", op, where, time.monotonic() - started)
                return resp
            except botocore.exceptions.ClientError as exc:
                code, status, message = client_error(exc)
                log.debug("%s %s -> %d %s in %.3fs", op, where, status, code,
                          time.monotonic() - started)
                what = f"S3 {op} {where}: {status} {code}"
                if rc.refresh_after(code, status, what, entity):
                    continue
                if acl_sensitive and _acl_refused(code, message):
                    raise _AclRefused() from None
                if code in QUOTA_CODES or status == 507:
                    raise QuotaExceeded(what, entity=entity) from None
                if code in TOO_LARGE_CODES:
                    raise FileTooLarge(what, entity=entity) from None
                if code == "AccessDenied" or status == 403:
                    raise PermissionDenied(what, entity=entity) from None
                if code in NOT_FOUND_CODES or code == "NoSuchUpload" or status == 404:
                    raise (NotFound if missing_ok else Unavailable)(what, entity=entity) from None
                if not (retryable(code, status) or code == "BadDigest"):
                    raise Unavailable(what, entity=entity) from None
                last = f"{status} {code}"
            except TRANSPORT_ERRORS as exc:
                last = type(exc).__name__
                log.debug("%s %s failed in %.3fs: %s", op, where, time.monotonic() - started,
                          last)
            if not budget.wait():
                raise Unavailable(f"S3 {op} {where}: gave up after {budget_total:g}s ({last})",
                                  entity=entity)
