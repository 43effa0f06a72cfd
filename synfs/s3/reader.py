"""Ranged reads of file content: from S3 with STS credentials, or from a pre-signed URL.

Owns the byte-fetching I/O (blocking, thread-safe, called from worker threads):

* ``S3Reader`` reads ``bytes=start-end`` of an object with boto3, one client per distinct
  credential set (cached, path-style, us-east-1, botocore's own retries off). A token S3
  rejects as expired or invalid (``ExpiredToken``, ``InvalidToken``, ``InvalidAccessKeyId``, or
  any 403 once the reported expiration has passed: SeaweedFS's codes differ from AWS's) is
  invalidated in the ``CredentialStore`` and the read retried ONCE with fresh credentials.
  ``AccessDenied`` -> PermissionDenied, ``NoSuchKey`` -> NotFound; 5xx, SlowDown and connection
  errors are retried with backoff inside the per-call budget, then Unavailable.
* ``UrlReader`` does the same over ``requests`` for files without STS, given a callable that
  returns a fresh pre-signed URL (they live 30 s); a 403 refetches the URL once.

A read past the end of the object returns the bytes that exist (``b""`` at or past EOF);
``length <= 0`` returns ``b""`` without a request. URLs (their query strings carry signatures)
and credentials are never logged or put in exception messages.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import requests
import urllib3.exceptions

from synfs.errors import NotFound, PermissionDenied, Unavailable
from synfs.synapse.client import (CallStats, RetryBudget, quiet_third_party_loggers,
                                  shared_adapter, thread_session)
from synfs.synapse.models import StsCredentials

log = logging.getLogger(__name__)
quiet_third_party_loggers()

REFRESH_CODES = frozenset({"ExpiredToken", "InvalidToken", "InvalidAccessKeyId",
                           "TokenRefreshRequired"})
RETRY_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout",
                         "RequestTimeTooSkewed", "Throttling", "ThrottlingException",
                         "BadGateway", "GatewayTimeout"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSPORT_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError,
                    botocore.exceptions.IncompleteReadError, urllib3.exceptions.HTTPError,
                    ConnectionError, TimeoutError)
URL_LIFETIME_S = 25.0        # pre-signed URLs live 30 s; refetch before a retry after this
MAX_CLIENTS = 16


def _range(start: int, length: int) -> str:
    return f"bytes={start}-{start + length - 1}"


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
        self._config = botocore.config.Config(
            region_name="us-east-1", signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_pool_connections=max_pool, tcp_keepalive=True,
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required")
        self._session = boto3.session.Session()
        self._clients: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Reader(endpoint_url={self.endpoint_url!r}, clients={len(self._clients)})"

    def _client(self, creds: StsCredentials):
        key = (creds.access_key_id, creds.session_token)
        with self._lock:     # boto3 sessions are not thread-safe: create clients under a lock
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(
                    "s3", endpoint_url=self.endpoint_url, config=self._config,
                    aws_access_key_id=creds.access_key_id,
                    aws_secret_access_key=creds.secret_access_key,
                    aws_session_token=creds.session_token)
                self._clients[key] = client
                while len(self._clients) > MAX_CLIENTS:
                    _, old = self._clients.popitem(last=False)
                    old.close()
            else:
                self._clients.move_to_end(key)
            return client

    def read_range(self, storage_location_id: int, entity_id: int, bucket: str, key: str,
                   start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        where = f"syn{entity_id}"
        budget = RetryBudget(self.retry_budget_s)
        refreshed = False
        creds = self.credentials.get(storage_location_id, entity_id, self.permission)
        last = ""
        while True:
            self.stats.incr("s3 GetObject")
            started = time.monotonic()
            try:
                resp = self._client(creds).get_object(Bucket=bucket, Key=key,
                                                      Range=_range(start, length))
                body = resp["Body"]
                try:
                    data = body.read()
                finally:
                    body.close()
                log.debug("GetObject %s [%d+%d] -> %d bytes in %.3fs", where, start, length,
                          len(data), time.monotonic() - started)
                if resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200 \
                        and not resp.get("ContentRange"):
                    data = data[start:]          # the server ignored Range: whole object
                return data[:length]
            except botocore.exceptions.ClientError as exc:
                err = exc.response.get("Error", {})
                code = str(err.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                log.debug("GetObject %s -> %d %s in %.3fs", where, status, code,
                          time.monotonic() - started)
                if code in REFRESH_CODES or (status == 403 and self.credentials.expired(creds)):
                    if refreshed:
                        raise PermissionDenied(f"S3 rejected fresh credentials for {where}: "
                                               f"{status} {code}", entity=where) from None
                    refreshed = True
                    self.stats.incr("s3 refresh")
                    self.credentials.invalidate(storage_location_id, self.permission, creds)
                    creds = self.credentials.get(storage_location_id, entity_id, self.permission)
                    continue
                if code == "AccessDenied" or status == 403:
                    raise PermissionDenied(f"S3 GetObject {where}: {status} {code}",
                                           entity=where) from None
                if code in NOT_FOUND_CODES or status == 404:
                    raise NotFound(f"S3 GetObject {where}: {status} {code}", entity=where) from None
                if code == "InvalidRange" or status == 416:
                    return b""
                if status in RETRY_STATUSES or status >= 500 or code in RETRY_CODES:
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
        with self._lock:
            clients, self._clients = list(self._clients.values()), collections.OrderedDict()
        for client in clients:
            client.close()


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
