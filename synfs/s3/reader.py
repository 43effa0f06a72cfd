"""Ranged reads of file content: from S3 with STS credentials, or from a pre-signed URL.

Owns the byte-fetching I/O (blocking, thread-safe, called from worker threads):

* ``S3Reader`` reads ``bytes=start-end`` of an object with boto3, one client per distinct
  credential set (cached, path-style, us-east-1, botocore's own retries off). Credentials S3
  rejects are refreshed as ``synfs.s3.policy`` says (a fresh set, the read retried).
  ``AccessDenied`` -> PermissionDenied, ``NoSuchKey`` -> NotFound; 5xx, SlowDown and connection
  errors are retried with backoff inside the per-call budget, then Unavailable.
* ``UrlReader`` does the same over ``requests`` for files without STS, given a callable that
  returns a fresh pre-signed URL (they live 30 s); a 403 refetches the URL once.

Both offer ``read_range`` (returns bytes) and ``read_into`` (fills a caller's buffer, e.g. a
prefetch part; ``S3Reader`` streams the socket straight into it, so a part costs one copy).
A read past the end of the object returns the bytes that exist (``b""`` / 0 at or past EOF);
``length <= 0`` returns ``b""`` without a request; a body cut short is retried. URLs (their
query strings carry signatures) and credentials are never logged or put in exception messages.
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import botocore.config
import botocore.exceptions
import requests

from synfs.errors import NotFound, PermissionDenied, Unavailable
from synfs.synapse.client import (CallStats, RetryBudget, quiet_third_party_loggers,
                                  shared_adapter, thread_session)
from synfs.s3.clients import ClientCache, s3_config
from synfs.s3.policy import (NOT_FOUND_CODES, RETRY_STATUSES, TRANSPORT_ERRORS, RequestCredentials,
                             client_error, retryable)
from synfs.synapse.models import StsCredentials

log = logging.getLogger(__name__)
quiet_third_party_loggers()

class ShortBody(ConnectionError):
    """The connection ended before the body promised by Content-Length (retried)."""


URL_LIFETIME_S = 25.0        # pre-signed URLs live 30 s; refetch before a retry after this


def _range(start: int, length: int) -> str:
    return f"bytes={start}-{start + length - 1}"


def _consume(body, skip: int, length: int, out: memoryview | None):
    """Read a botocore ``StreamingBody``: ``length`` bytes after skipping ``skip``; into
    ``out`` (returns the count) or as bytes. Bytes stream from the socket straight into
    ``out`` when the body wraps a plain ``http.client`` response."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    complete = False
    try:
        if out is None or skip or not isinstance(fp, http.client.HTTPResponse):
            data = body.read()
            complete = True
            data = data[skip:skip + length]
            if out is None:
                return data
            out[:len(data)] = data
            return len(data)
        want = min(length, len(out))
        expected = fp.length if fp.length is not None else want
        got = _recv_body(fp, out[:want]) if fp.length == want and not fp.chunked else 0
        while got < want:
            n = fp.readinto(out[got:want])
            if not n:
                break
            got += n
        if got < min(want, expected):
            raise ShortBody(f"body ended after {got} of {min(want, expected)} bytes")
        complete = fp.length in (0, None) or fp.isclosed()
        if complete:
            raw.release_conn()
        return got
    finally:
        if not complete:
            body.close()      # never hand a half-read connection back to the pool


def _recv_body(resp: http.client.HTTPResponse, out: memoryview) -> int:
    """Receive a whole body of ``len(out)`` bytes into ``out`` with one blocking
    ``recv(MSG_WAITALL)`` on the socket (after what http.client already buffered), bounded by
    a kernel receive timeout: one GIL hand-off per part instead of one per socket read, which
    is what lets eight downloads share the process with the FUSE loop. 0 when the response
    is not a plain socket stream (the caller then reads it the ordinary way)."""
    buffered = resp.fp
    sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    if type(sock) is not socket.socket or not hasattr(buffered, "peek"):
        return 0            # TLS sockets refuse recv flags: the caller reads the usual way
    timeout = sock.gettimeout()
    got = buffered.readinto(out[:min(len(buffered.peek(1)), len(out))])
    try:
        sock.settimeout(None)
        secs = timeout if timeout else 60.0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", int(secs), int(secs % 1 * 1e6)))
        while got < len(out):
            n = sock.recv_into(out[got:], len(out) - got, socket.MSG_WAITALL)
            if not n:
                break
            got += n
    except OSError as exc:          # the receive timeout (EAGAIN) or a reset
        raise ShortBody(f"body read failed after {got} of {len(out)} bytes: "
                        f"{type(exc).__name__}") from None
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
        sock.settimeout(timeout)
    resp.length -= got
    if resp.length == 0:
        resp.close()                # the body is consumed: the connection can be reused
    return got


class S3Reader:
    """Ranged GETs from S3 with STS credentials from a ``CredentialStore``."""

    def __init__(self, endpoint_url: str | None, credentials, *, retry_budget_s: float = 30.0,
                 max_pool: int = 32, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 permission: str = "read_only"):
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.retry_budget_s = retry_budget_s
        self.permission = permission
        self.stats = CallStats()
        self._config = s3_config(connect_timeout, read_timeout, max_pool)
        self._clients = ClientCache(endpoint_url, self._config)

    def __repr__(self) -> str:
        return f"S3Reader(endpoint_url={self.endpoint_url!r}, clients={len(self._clients)})"

    def _client(self, creds: StsCredentials):
        return self._clients.get(creds)

    def read_range(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
                   start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self._get(storage_location_id, entity_id, bucket, key, start, length, None)

    def read_into(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
                  start: int, out: memoryview) -> int:
        """Stream ``len(out)`` bytes at ``start`` straight into ``out``; returns how many
        arrived (fewer only at the end of the object)."""
        if len(out) == 0:
            return 0
        return self._get(storage_location_id, entity_id, bucket, key, start, len(out), out)

    def _get(self, storage_location_id, entity_id, bucket, key, start, length, out):
        where = f"syn{entity_id}"
        budget = RetryBudget(self.retry_budget_s)
        rc = RequestCredentials(self.credentials, storage_location_id, entity_id,
                                self.permission, self.stats)
        last = ""
        while True:
            self.stats.incr("s3 GetObject")
            started = time.monotonic()
            try:
                resp = self._client(rc.creds).get_object(Bucket=bucket, Key=key,
                                                      Range=_range(start, length))
                ignored_range = (resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200
                                 and not resp.get("ContentRange"))
                skip = start if ignored_range else 0    # the server sent the whole object
                result = _consume(resp["Body"], skip, length, out)
                log.debug("GetObject %s [%d+%d] -> %d bytes in %.3fs", where, start, length,
                          result if isinstance(result, int) else len(result),
                          time.monotonic() - started)
                return result
            except botocore.exceptions.ClientError as exc:
                code, status, _ = client_error(exc)
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
                if code == "InvalidRange" or status == 416:
                    return b"" if out is None else 0
                if retryable(code, status):
                    last = f"{status} {code}"
                else:
                    raise Unavailable(f"S3 GetObject {where}: {status} {code}",
                                      entity=where) from None
            except TRANSPORT_ERRORS as exc:
                last = type(exc).__name__
                log.debug("GetObject %s failed in %.3fs: %s", where, time.monotonic() - started,
                          last)
            if not budget.wait():
                raise Unavailable(f"S3 GetObject {where}: gave up after "
                                  f"{self.retry_budget_s:g}s ({last})", entity=where)

    def close(self) -> None:
        self._clients.close()


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
