"""Listing the objects under a prefix with STS credentials (``ListObjectsV2``, every page).

Owns the S3 calls that describe objects rather than read them: ``ListObjectsV2`` and
``HeadObject`` (for ``synfs register``). Blocking and thread-safe.
Credentials come from a ``CredentialStore`` (``read_only`` suffices: Synapse's session policy
grants ``s3:ListBucket`` on ``<baseKey>/*``); rejected credentials are refreshed as
``synfs.s3.policy`` says. ``AccessDenied`` -> PermissionDenied,
``NoSuchBucket`` -> NotFound; 5xx, SlowDown and connection errors are retried with backoff
inside the per-call budget, then Unavailable. Credentials never reach a log or a message.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterator

import botocore.exceptions

from synfs.errors import NotFound, PermissionDenied, Unavailable
from synfs.s3.clients import ClientCache, s3_config
from synfs.s3.policy import (NOT_FOUND_CODES, TRANSPORT_ERRORS, RequestCredentials, client_error,
                             retryable)
from synfs.synapse.client import CallStats, RetryBudget, quiet_third_party_loggers

log = logging.getLogger(__name__)
quiet_third_party_loggers()

PAGE_SIZE = 1000
# Server-side encryption whose ETag is not the MD5 of the object's bytes, even single-part.
ETAG_NOT_MD5 = {"aws:kms", "aws:kms:dsse", "SSE-C"}


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its full key, size and ETag (quotes stripped); ``encryption`` only
    from ``head`` (a listing does not say it): ``aws:kms``, ``AES256``, ``SSE-C`` or ""."""

    key: str
    size: int
    etag: str
    last_modified: float = 0.0
    encryption: str = ""

    @property
    def etag_is_md5(self) -> bool:
        """A single-part upload's ETag is the hex MD5 of its bytes; a multipart one is
        ``<md5 of part md5s>-<parts>``, never the object's MD5, and neither is the ETag of an
        object encrypted with SSE-KMS or SSE-C (known only after ``head``)."""
        e = self.etag.lower()
        return (len(e) == 32 and all(c in "0123456789abcdef" for c in e)
                and self.encryption not in ETAG_NOT_MD5)


class S3Lister:
    def __init__(self, endpoint_url: str | None, credentials, *, retry_budget_s: float = 30.0,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 permission: str = "read_only", page_size: int = PAGE_SIZE):
        self.credentials = credentials
        self.retry_budget_s = retry_budget_s
        self.permission = permission
        self.page_size = page_size
        self.stats = CallStats()
        self._clients = ClientCache(endpoint_url, s3_config(connect_timeout, read_timeout, 4))

    def __repr__(self) -> str:
        return f"S3Lister(clients={len(self._clients)})"

    def close(self) -> None:
        self._clients.close()

    def list_objects(self, storage_location_id: int, entity_id: int, bucket: str,
                     prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, page by page."""
        token = None
        while True:
            page = self._page(storage_location_id, entity_id, bucket, prefix, token)
            for item in page.get("Contents") or ():
                modified = item.get("LastModified")
                yield ObjectInfo(key=item["Key"], size=int(item.get("Size") or 0),
                                 etag=str(item.get("ETag") or "").strip('"'),
                                 last_modified=modified.timestamp() if modified else 0.0)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise Unavailable(f"S3 ListObjectsV2 s3://{bucket}/{prefix}: truncated page "
                                  "without a continuation token")

    def head(self, storage_location_id: int, entity_id: int, bucket: str,
             key: str) -> ObjectInfo:
        """The object's current size, ETag and server-side encryption (``HeadObject``)."""
        resp = self._call("HeadObject", f"s3://{bucket}/{key}", storage_location_id, entity_id,
                          lambda s3: s3.head_object(Bucket=bucket, Key=key))
        modified = resp.get("LastModified")
        encryption = str(resp.get("ServerSideEncryption") or "")
        if resp.get("SSECustomerAlgorithm"):
            encryption = "SSE-C"
        return ObjectInfo(key=key, size=int(resp.get("ContentLength") or 0),
                          etag=str(resp.get("ETag") or "").strip('"'),
                          last_modified=modified.timestamp() if modified else 0.0,
                          encryption=encryption)

    def _page(self, storage_location_id, entity_id, bucket, prefix, token) -> dict:
        kwargs = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
        if token:
            kwargs["ContinuationToken"] = token
        return self._call("ListObjectsV2", f"s3://{bucket}/{prefix}", storage_location_id,
                          entity_id, lambda s3: s3.list_objects_v2(**kwargs))

    def _call(self, op: str, where: str, storage_location_id: int, entity_id: int, fn) -> dict:
        budget = RetryBudget(self.retry_budget_s)
        rc = RequestCredentials(self.credentials, storage_location_id, entity_id,
                                self.permission)
        last = ""
        while True:
            self.stats.incr(f"s3 {op}")
            started = time.monotonic()
            try:
                resp = fn(self._clients.get(rc.creds))
                log.debug("%s %s -> ok in %.3fs", op, where, time.monotonic() - started)
                return resp
            except botocore.exceptions.ClientError as exc:
                code, status, _ = client_error(exc)
                log.debug("%s %s -> %d %s", op, where, status, code)
                if rc.refresh_after(code, status, f"S3 {op} {where}: {status} {code}"):
                    continue
                if code == "AccessDenied" or status == 403:
                    raise PermissionDenied(f"S3 {op} {where}: {status} {code}") from None
                if code in NOT_FOUND_CODES or status == 404:
                    raise NotFound(f"S3 {op} {where}: {status} {code}") from None
                if not retryable(code, status):
                    raise Unavailable(f"S3 {op} {where}: {status} {code}") from None
                last = f"{status} {code}"
            except TRANSPORT_ERRORS as exc:
                last = type(exc).__name__
            if not budget.wait():
                raise Unavailable(f"S3 {op} {where}: gave up after {self.retry_budget_s:g}s "
                                  f"({last})")
