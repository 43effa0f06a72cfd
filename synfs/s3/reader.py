"""Ranged reads of file content: from S3 with STS credentials, or from a pre-signed URL.

Owns the byte-fetching I/O (blocking, thread-safe, called from worker threads):

* ``S3Reader`` reads ``bytes=start-end`` of an object through the lean SigV4 client of
  ``synfs.s3.getclient`` (path-style, persistent connections per thread, region redirects
  followed there), one request at a time per call. Credentials S3 rejects are refreshed as
  ``synfs.s3.policy`` says (a fresh set, the read retried). ``AccessDenied`` ->
  PermissionDenied, ``NoSuchKey`` -> NotFound; 5xx, SlowDown, resets, timeouts and bodies cut
  short are retried with backoff inside the per-call budget, then Unavailable.
* ``UrlReader`` does the same over ``requests`` for files without STS, given a callable that
  returns a fresh pre-signed URL (they live 30 s); a 403 refetches the URL once.

Both offer ``read_range`` (returns bytes) and ``read_into`` (fills a caller's buffer, e.g. a
prefetch part; ``S3Reader`` receives the socket straight into it, so a part costs one copy).
A read past the end of the object returns the bytes that exist (``b""`` / 0 at or past EOF);
``length <= 0`` returns ``b""`` without a request. URLs (their query strings carry
signatures) and credentials are never logged or put in exception messages.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import requests

from synfs.errors import NotFound, PermissionDenied, Unavailable
from synfs.synapse.client import (CallStats, RetryBudget, quiet_third_party_loggers,
                                  shared_adapter, thread_session)
from synfs.s3.getclient import GetClient, S3Error, ShortBody, TransportError  # noqa: F401
from synfs.s3.policy import (NOT_FOUND_CODES, RETRY_STATUSES, TRANSPORT_ERRORS, RequestCredentials,
                             retryable)

log = logging.getLogger(__name__)
quiet_third_party_loggers()

__all__ = ["S3Reader", "UrlReader", "ShortBody"]

URL_LIFETIME_S = 25.0        # pre-signed URLs live 30 s; refetch before a retry after this


def _range(start: int, length: int) -> str:
    return f"bytes={start}-{start + length - 1}"


class S3Reader:
    """Ranged GETs from S3 with STS credentials from a ``CredentialStore``."""

    def __init__(self, endpoint_url: str | None, credentials, *, retry_budget_s: float = 30.0,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 permission: str = "read_only"):
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.retry_budget_s = retry_budget_s
        self.permission = permission
        self.stats = CallStats()
        self.client = GetClient(endpoint_url, connect_timeout=connect_timeout,
                                read_timeout=read_timeout)

    def __repr__(self) -> str:
        return f"S3Reader(endpoint_url={self.endpoint_url!r})"

    def read_range(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
                   start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        buf = bytearray(length)
        n = self._get(storage_location_id, entity_id, bucket, key, start, memoryview(buf))
        del buf[n:]
        return bytes(buf)

    def read_into(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
                  start: int, out: memoryview) -> int:
        """Receive ``len(out)`` bytes at ``start`` straight into ``out``; returns how many
        arrived (fewer only at the end of the object)."""
        if len(out) == 0:
            return 0
        return self._get(storage_location_id, entity_id, bucket, key, start, out)

    def _get(self, storage_location_id, entity_id, bucket, key, start, out) -> int:
        where = f"syn{entity_id}"
        budget = RetryBudget(self.retry_budget_s)
        rc = RequestCredentials(self.credentials, storage_location_id, entity_id,
                                self.permission, self.stats)
        last = ""
        while True:
            self.stats.incr("s3 GetObject")
            started = time.monotonic()
            try:
                got = self.client.get_into(rc.creds, bucket, key, start, out)
                log.debug("GetObject %s [%d+%d] -> %d bytes in %.3fs", where, start, len(out),
                          got, time.monotonic() - started)
                return got
            except S3Error as exc:
                code, status = exc.code, exc.status
                log.debug("GetObject %s -> %d %s in %.3fs", where, status, code,
                          time.monotonic() - started)
                if rc.refresh_after(code, status, f"S3 GetObject {where}: {status} {code}",
                                    where):
                    continue
                if code == "AccessDenied" or status == 403:
                    raise PermissionDenied(f"S3 GetObject {where}: {status} {code}",
                                           entity=where) from None
                if code in NOT_FOUND_CODES or status == 404:
                    raise NotFound(f"S3 GetObject {where}: {status} {code}", entity=where) from None
                if retryable(code, status):
                    last = f"{status} {code}"
                else:
                    raise Unavailable(f"S3 GetObject {where}: {status} {code}",
                                      entity=where) from None
            except (TransportError, *TRANSPORT_ERRORS) as exc:
                last = type(exc).__name__
                log.debug("GetObject %s failed in %.3fs: %s (%s)", where,
                          time.monotonic() - started, last, exc)
            if not budget.wait():
                raise Unavailable(f"S3 GetObject {where}: gave up after "
                                  f"{self.retry_budget_s:g}s ({last})", entity=where)

    def close(self) -> None:
        self.client.close()


class UrlReader:
    """Ranged GETs of pre-signed URLs (for content not in an STS storage location)."""

    def __init__(self, retry_budget_s: float = 30.0, *, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, pool_size: int = 32,
                 clock: Callable[[], float] = time.monotonic):
        self.retry_budget_s = retry_budget_s
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.clock = clock
        self.stats = CallStats()
        self._adapter = shared_adapter(pool_size)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"UrlReader(retry_budget_s={self.retry_budget_s:g})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = thread_session(self._adapter)
        return session

    def close(self) -> None:
        self._adapter.close()

    def read_into(self, url_provider: Callable[[], str], start: int, out: memoryview) -> int:
        data = self.read_range(url_provider, start, len(out))
        out[:len(data)] = data
        return len(data)

    def read_range(self, url_provider: Callable[[], str], start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        budget = RetryBudget(self.retry_budget_s)
        url, url_time = url_provider(), self.clock()
        self.stats.incr("url fetch")
        refreshed = False
        last = ""
        while True:
            host = urlsplit(url).netloc
            self.stats.incr("url GET")
            started = time.monotonic()
            try:
                resp = self._session().get(
                    url, headers={"Range": _range(start, length)}, allow_redirects=True,
                    timeout=(self.connect_timeout, budget.timeout(self.read_timeout)))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last = type(exc).__name__       # str(exc) would carry the signed URL
            else:
                status = resp.status_code
                log.debug("ranged GET at %s [%d+%d] -> %d in %.3fs", host, start, length, status,
                          time.monotonic() - started)
                if status == 206:
                    return resp.content[:length]
                if status == 200:
                    return resp.content[start:start + length]
                if status == 416:
                    return b""
                if status == 403 and not refreshed:
                    refreshed = True
                    url, url_time = url_provider(), self.clock()
                    self.stats.incr("url fetch")
                    continue
                if status in (401, 403):
                    raise PermissionDenied(f"pre-signed GET at {host}: {status}")
                if status == 404:
                    raise NotFound(f"pre-signed GET at {host}: 404")
                if status not in RETRY_STATUSES:
                    raise Unavailable(f"pre-signed GET at {host}: {status}")
                last = f"HTTP {status}"
            if not budget.wait():
                raise Unavailable(f"pre-signed GET: gave up after {self.retry_budget_s:g}s "
                                  f"({last})")
            if self.clock() - url_time > URL_LIFETIME_S:
                url, url_time = url_provider(), self.clock()
                self.stats.incr("url fetch")
