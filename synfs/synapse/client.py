"""The blocking Synapse REST client: endpoints, bearer auth, retries, paging and typed errors.

Owns every HTTP call synfs makes to Synapse (``/repo/v1`` and ``/file/v1``) and turns the
answers into the plain models of ``synfs.synapse.models`` or the typed errors of
``synfs.errors`` (design lesson 4): 404 -> NotFound, 401 -> AuthenticationFailed,
403 -> PermissionDenied, 409 -> AlreadyExists, 412 -> StaleUpdate, 400 -> InvalidRequest.
429/5xx and connection errors are retried with jittered exponential backoff inside a per-call
budget of seconds, then become ``Unavailable``; other 4xx are never retried.

Every request of every thread waits its turn in one ``synfs.synapse.throttle.RateLimiter``
(production's 3 concurrent / 600 per minute per user), so a busy mount waits instead of
collecting 429s; identical read-only calls in flight together (GETs; children, bundle and file
handle batch POSTs) share one request. ``stats`` counts requests sent, ``coalesced`` the rest.

It is blocking and thread-safe: the filesystem calls it from worker threads
(``trio.to_thread``). Each thread gets its own ``requests.Session``. The token never appears in
a repr, a log record or an exception message.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import random
import re
import threading
import time
from typing import Callable, Iterable

import requests
import requests.adapters

from synfs import __version__
from synfs.errors import (AlreadyExists, AuthenticationFailed, InvalidRequest, NotFound,
                          PermissionDenied, StaleUpdate, SynfsError, Unavailable)
from synfs.synapse.models import (ChildHeader, Entity, FileHandle, StsCredentials,
                                  UploadDestination, kind_of, parse_date, parse_id)
from synfs.synapse.throttle import Coalescer, RateLimiter, call_key

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_ONLY_POSTS = frozenset({"/entity/children", "/entity/child", "/entity/{id}/bundle2",
                             "/entity/{id}/version/{id}/bundle2", "/fileHandle/batch",
                             "/entity/header"})
BATCH_LIMIT = 100            # POST /fileHandle/batch: at most 100 requestedFiles
DEFAULT_CHILD_TYPES = ("folder", "file", "link", "project", "table", "entityview", "dataset")


def quiet_third_party_loggers() -> None:
    """urllib3 and botocore log request lines, query strings (pre-signed signatures) and
    headers (session tokens) at DEBUG: keep them at INFO or above so no secret is ever logged."""
    for name in ("urllib3", "botocore", "boto3", "s3transfer"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


quiet_third_party_loggers()


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Base URLs of the three Synapse prefixes (production by default, synapse-api.md §1.1)."""

    repo: str = "https://repo-prod.prod.sagebase.org/repo/v1"
    file: str = "https://file-prod.prod.sagebase.org/file/v1"
    auth: str = "https://auth-prod.prod.sagebase.org/auth/v1"

    @classmethod
    def from_info(cls, info: dict) -> "Endpoints":
        """From a synapseclient-style mapping (``repoEndpoint``, ``fileHandleEndpoint``,
        ``authEndpoint``), e.g. the emulator's ``emulator.json``."""
        return cls(repo=info["repoEndpoint"].rstrip("/"),
                   file=info["fileHandleEndpoint"].rstrip("/"),
                   auth=info.get("authEndpoint", cls.auth).rstrip("/"))


class CallStats(collections.Counter):
    """A thread-safe Counter of HTTP requests sent, keyed ``"METHOD /normalized/path"``
    (ids replaced by ``{id}``; retries count as separate requests)."""

    def __init__(self, *args, **kwargs):
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def incr(self, key: str, n: int = 1) -> None:
        with self._lock:
            self[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self)

    def reset(self) -> None:
        with self._lock:
            self.clear()


class RetryBudget:
    """Jittered exponential backoff (``base`` doubling up to ``cap``) inside a deadline.

    ``wait()`` sleeps before the next attempt and returns False once the budget is spent.
    Shared with the S3 readers."""

    def __init__(self, budget_s: float, *, base: float = 0.25, cap: float = 4.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + max(0.0, budget_s)
        self.base = base
        self.cap = cap
        self.attempts = 0

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def timeout(self, wanted: float, floor: float = 1.0) -> float:
        """A per-attempt timeout that keeps the call near its budget (never below ``floor``)."""
        return max(floor, min(wanted, self.remaining()))

    def wait(self) -> bool:
        remaining = self.remaining()
        if remaining <= 0.05:
            return False
        delay = min(self.cap, self.base * (2 ** self.attempts)) * random.uniform(0.5, 1.5)
        self.attempts += 1
        self.sleep(min(delay, remaining))
        return True


def shared_adapter(pool_size: int) -> requests.adapters.HTTPAdapter:
    """One connection pool for all threads (urllib3 pools are thread-safe); ``pool_size``
    should be at least the number of worker threads, or urllib3 warns and discards."""
    return requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size,
                                         max_retries=0)


def thread_session(adapter: requests.adapters.HTTPAdapter) -> requests.Session:
    """A per-thread Session (Sessions are not documented thread-safe) over a shared pool, so
    threads that come and go (trio's thread cache) reuse connections instead of leaking them."""
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_ID_SEGMENT = re.compile(r"^(syn)?\d+$", re.IGNORECASE)


def normalize_path(path: str) -> str:
    """``/entity/syn123/bundle2?x=1`` -> ``/entity/{id}/bundle2`` (for stats and logs)."""
    path = path.split("?", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/"))


def _syn(entity_id: int | None) -> str | None:
    return None if entity_id is None else f"syn{entity_id}"


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = body.get("reason") or body.get("error_description") or body.get("error")
        if reason:
            return str(reason)[:500]
    return (resp.text or resp.reason or "").strip()[:200]


_STATUS_ERRORS: dict[int, type[SynfsError]] = {
    400: InvalidRequest, 401: AuthenticationFailed, 403: PermissionDenied, 404: NotFound,
    409: AlreadyExists, 412: StaleUpdate,
}


def _parse_expiration(text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.now(dt.timezone.utc)
    return dt.datetime.fromtimestamp(parse_date(text), dt.timezone.utc)


def parse_file_handle(data: dict) -> FileHandle:
    loc = data.get("storageLocationId")
    return FileHandle(
        id=int(data["id"]), size=int(data.get("contentSize") or 0), md5=data.get("contentMd5"),
        concrete_type=data.get("concreteType", ""),
        storage_location_id=int(loc) if loc is not None else None,
        bucket=data.get("bucketName"), key=data.get("key"), file_name=data.get("fileName"),
        content_type=data.get("contentType"))


def parse_entity(bundle: dict) -> Entity:
    """An ``EntityBundle`` (entity, fileHandles, permissions, restrictionInformation)."""
    e = bundle["entity"]
    fh_id = int(e["dataFileHandleId"]) if e.get("dataFileHandleId") else None
    handle = None
    for fh in bundle.get("fileHandles") or ():
        if fh_id is not None and str(fh.get("id")) == str(fh_id):
            handle = parse_file_handle(fh)
    perms = bundle.get("permissions") or {}
    restrictions = bundle.get("restrictionInformation") or {}
    parent = e.get("parentId")
    return Entity(
        id=parse_id(e["id"]), name=e.get("name", ""), kind=kind_of(e.get("concreteType")),
        parent_id=parse_id(parent) if parent else None, etag=e.get("etag", ""),
        created_on=parse_date(e.get("createdOn")), modified_on=parse_date(e.get("modifiedOn")),
        version=e.get("versionNumber"), file_handle_id=fh_id, file_handle=handle,
        can_download=bool(perms.get("canDownload", True)),
        can_update=bool(perms.get("canEdit", False)),
        can_create=bool(perms.get("canAddChild", False)),
        can_delete=bool(perms.get("canDelete", False)),
        unmet_access_requirement=bool(restrictions.get("hasUnmetAccessRequirement", False)))


class SynapseClient:
    """Blocking, thread-safe Synapse REST client (see the module docstring)."""

    def __init__(self, endpoints: Endpoints | None, token: str, *, retry_budget_s: float = 30.0,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 user_agent: str = f"synfs/{__version__}", pool_size: int = 16,
                 limiter: RateLimiter | None = None):
        self.endpoints = endpoints or Endpoints()
        self.__token = token
        self.retry_budget_s = retry_budget_s
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.user_agent = user_agent
        self.stats = CallStats()           # HTTP requests sent
        self.coalesced = CallStats()       # calls answered by an identical request in flight
        self.limiter = limiter if limiter is not None else RateLimiter()
        self._coalescer = Coalescer()
        self._adapter = shared_adapter(pool_size)
        self._local = threading.local()
        self.user_id: str | None = None    # ownerId, once user_profile() has answered
        self.rejected_since: float | None = None   # time of a 401 not followed by a success

    def __repr__(self) -> str:
        return f"SynapseClient(repo={self.endpoints.repo!r}, file={self.endpoints.file!r})"

    __str__ = __repr__

    def __getstate__(self):  # never let the token travel by pickling
        raise TypeError("SynapseClient cannot be pickled")

    # ---- transport -----------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = thread_session(self._adapter)
            session.headers.update({
                "Authorization": f"Bearer {self.__token}",
                "Accept": "application/json; charset=UTF-8",
                "User-Agent": self.user_agent,
            })
            self._local.session = session
        return session

    def close(self) -> None:
        self._adapter.close()

    def _request(self, method: str, prefix: str, path: str, *, body=None, params=None,
                 entity_id: int | None = None, ok: Iterable[int] = (200, 201, 204)):
        """One logical call with retries; returns the decoded JSON body (None if empty).
        Identical read-only calls already in flight are joined instead of sent again."""
        def send():
            sent.append(True)
            return self._send(method, prefix, path, body=body, params=params,
                              entity_id=entity_id, ok=ok)

        norm, sent = normalize_path(path), []
        if method != "GET" and not (method == "POST" and norm in READ_ONLY_POSTS):
            return send()
        result = self._coalescer.do(call_key(method, prefix, path, body, params, ok), send)
        if not sent:
            self.coalesced.incr(f"{method} {norm}")
        return result

    def _send(self, method: str, prefix: str, path: str, *, body=None, params=None,
              entity_id: int | None = None, ok: Iterable[int] = (200, 201, 204)):
        base = self.endpoints.repo if prefix == "repo" else self.endpoints.file
        url = base + path
        key = f"{method} {normalize_path(path)}"
        entity = _syn(entity_id)
        budget = RetryBudget(self.retry_budget_s)
        last = ""
        while True:
            self.stats.incr(key)
            started = time.monotonic()
            try:
                with self.limiter.slot():
                    resp = self._session().request(
                        method, url, json=body, params=params, allow_redirects=False,
                        timeout=(self.connect_timeout, budget.timeout(self.read_timeout)))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last = f"{type(exc).__name__}"
                log.debug("%s failed after %.3fs: %s", key, time.monotonic() - started, last)
            else:
                status = resp.status_code
                log.debug("%s -> %d in %.3fs", key, status, time.monotonic() - started)
                if status == 401 and self.rejected_since is None:
                    self.rejected_since = time.time()      # for synfs status
                elif status != 401 and status < 500 and status != 429:
                    self.rejected_since = None
                if status in ok:
                    if not resp.content:
                        return None
                    try:
                        return resp.json()
                    except ValueError:
                        last = f"HTTP {status} with a body that is not JSON"
                elif status in RETRY_STATUSES:
                    last = f"HTTP {status}: {_reason(resp)}"
                else:
                    raise self._error(key, status, _reason(resp), entity)
            if not budget.wait():
                raise Unavailable(f"{key}: gave up after {self.retry_budget_s:g}s ({last})",
                                  entity=entity)
            log.debug("%s: retrying (%s)", key, last)

    @staticmethod
    def _error(key: str, status: int, reason: str, entity: str | None) -> SynfsError:
        cls = _STATUS_ERRORS.get(status)
        if cls is None:
            cls = InvalidRequest if 400 <= status < 500 else Unavailable
        where = f" ({entity})" if entity else ""
        return cls(f"{key}{where}: {status} {reason}", entity=entity)

    # ---- API -----------------------------------------------------------------------------
    def user_profile(self) -> dict:
        profile = self._request("GET", "repo", "/userProfile")
        if isinstance(profile, dict) and profile.get("ownerId"):
            self.user_id = str(profile["ownerId"])
        return profile

    def get_entity(self, entity_id: int) -> Entity:
        bundle = self._request("POST", "repo", f"/entity/syn{entity_id}/bundle2", body={
            "includeEntity": True, "includeFileHandles": True, "includePermissions": True,
            "includeRestrictionInformation": True}, entity_id=entity_id)
        return parse_entity(bundle)

    def list_children(self, parent_id: int | None,
                      include_types: Iterable[str] = DEFAULT_CHILD_TYPES) -> list[ChildHeader]:
        """Every child (all pages); ``parent_id=None`` lists the caller's projects."""
        types = ["project"] if parent_id is None else list(include_types)
        children: list[ChildHeader] = []
        seen_ids: set[int] = set()
        seen_tokens: set[str] = set()
        token = None
        while True:
            page = self._request("POST", "repo", "/entity/children", entity_id=parent_id, body={
                "parentId": _syn(parent_id), "includeTypes": types, "sortBy": "NAME",
                "sortDirection": "ASC", "nextPageToken": token}) or {}
            for h in page.get("page") or ():
                child_id = parse_id(h["id"])
                if child_id in seen_ids:       # offset paging can repeat a row under inserts
                    continue
                seen_ids.add(child_id)
                children.append(ChildHeader(
                    id=child_id, name=h.get("name", ""), kind=kind_of(h.get("type")),
                    modified_on=parse_date(h.get("modifiedOn")), version=h.get("versionNumber")))
            token = page.get("nextPageToken")
            if not token:
                return children
            if token in seen_tokens:
                raise Unavailable(f"POST /entity/children: paging loops at token {token!r}",
                                  entity=_syn(parent_id))
            seen_tokens.add(token)

    def child_id(self, parent_id: int | None, name: str) -> int | None:
        try:
            found = self._request("POST", "repo", "/entity/child", entity_id=parent_id,
                                  body={"parentId": _syn(parent_id), "entityName": name})
        except NotFound:
            return None
        return parse_id(found["id"])

    def _batch(self, pairs: list[tuple[int, int]], *, handles: bool, urls: bool) -> list[dict]:
        body = {"requestedFiles": [{"fileHandleId": str(fh), "associateObjectId": f"syn{eid}",
                                    "associateObjectType": "FileEntity"} for eid, fh in pairs],
                "includeFileHandles": handles, "includePreSignedURLs": urls,
                "includePreviewPreSignedURLs": False}
        entity = pairs[0][0] if len(pairs) == 1 else None
        result = self._request("POST", "file", "/fileHandle/batch", body=body, entity_id=entity)
        return (result or {}).get("requestedFiles") or []

    @staticmethod
    def _item_error(item: dict | None, entity_id: int, fh_id: int) -> SynfsError | None:
        where = f"file handle {fh_id} of syn{entity_id}"
        if item is None:
            return NotFound(f"POST /fileHandle/batch: no result for {where}",
                            entity=f"syn{entity_id}")
        code = item.get("failureCode")
        if code == "NOT_FOUND":
            return NotFound(f"POST /fileHandle/batch: {where}: NOT_FOUND", entity=f"syn{entity_id}")
        if code == "UNAUTHORIZED":
            return PermissionDenied(f"POST /fileHandle/batch: {where}: UNAUTHORIZED",
                                    entity=f"syn{entity_id}")
        if code:
            return Unavailable(f"POST /fileHandle/batch: {where}: {code}", entity=f"syn{entity_id}")
        return None

    def get_file_handles(self, requests_: list[tuple[int, int]]) -> dict[int, FileHandle | SynfsError]:
        """``(entity_id, file_handle_id)`` pairs -> ``{file_handle_id: FileHandle or error}``."""
        pairs = list(dict((fh, (eid, fh)) for eid, fh in requests_).values())
        out: dict[int, FileHandle | SynfsError] = {}
        for i in range(0, len(pairs), BATCH_LIMIT):
            chunk = pairs[i:i + BATCH_LIMIT]
            items = {str(r.get("fileHandleId")): r
                     for r in self._batch(chunk, handles=True, urls=False)}
            for eid, fh in chunk:
                item = items.get(str(fh))
                err = self._item_error(item, eid, fh)
                if err is None and not item.get("fileHandle"):
                    err = Unavailable(f"POST /fileHandle/batch: no handle for {fh}",
                                      entity=f"syn{eid}")
                out[fh] = err if err is not None else parse_file_handle(item["fileHandle"])
        return out

    def presigned_url(self, entity_id: int, file_handle_id: int) -> str:
        """A fresh pre-signed download URL (valid ~30 s: fetch it right before use)."""
        items = self._batch([(entity_id, file_handle_id)], handles=False, urls=True)
        item = next((r for r in items if str(r.get("fileHandleId")) == str(file_handle_id)), None)
        err = self._item_error(item, entity_id, file_handle_id)
        if err is not None:
            raise err
        url = item.get("preSignedURL")
        if not url:
            raise Unavailable(f"POST /fileHandle/batch: no URL for {file_handle_id}",
                              entity=f"syn{entity_id}")
        return url

    def presigned_urls(self, pairs: list[tuple[int, int]]) -> dict[int, str | SynfsError]:
        """Pre-signed URLs for up to 100 ``(entity_id, file_handle_id)`` pairs in one call."""
        items = {str(r.get("fileHandleId")): r
                 for r in self._batch(pairs[:BATCH_LIMIT], handles=False, urls=True)}
        out: dict[int, str | SynfsError] = {}
        for eid, fh in pairs[:BATCH_LIMIT]:
            item = items.get(str(fh))
            err = self._item_error(item, eid, fh)
            url = item.get("preSignedURL") if err is None else None
            out[fh] = url or err or Unavailable(f"POST /fileHandle/batch: no URL for {fh}",
                                                entity=f"syn{eid}")
        return out

    def sts_credentials(self, entity_id: int, permission: str = "read_only") -> StsCredentials:
        data = self._request("GET", "repo", f"/entity/syn{entity_id}/sts",
                             params={"permission": permission}, entity_id=entity_id)
        return StsCredentials(
            bucket=data["bucket"], base_key=data.get("baseKey"),
            access_key_id=data["accessKeyId"], secret_access_key=data["secretAccessKey"],
            session_token=data["sessionToken"], expiration=_parse_expiration(data.get("expiration")),
            fetched_at=time.monotonic())

    def upload_destination(self, entity_id: int,
                           storage_location_id: int | None = None) -> UploadDestination:
        path = f"/entity/syn{entity_id}/uploadDestination"
        if storage_location_id is not None:
            path += f"/{storage_location_id}"
        data = self._request("GET", "file", path, entity_id=entity_id)
        return UploadDestination(
            storage_location_id=int(data["storageLocationId"]),
            concrete_type=data.get("concreteType", ""), sts_enabled=bool(data.get("stsEnabled")),
            bucket=data.get("bucket"), base_key=data.get("baseKey"))
