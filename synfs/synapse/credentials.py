"""The STS credential store: one cached set of temporary S3 credentials per storage location.

Owns when ``GET /entity/{id}/sts`` is called. Credentials are scoped to a storage location's
bucket and baseKey (synapse-api.md §6.1), so they are cached per ``(storage location,
permission)`` whichever entity of that location asked first. A cached set is reused until less
than ``min(3600 s, half its original lifetime)`` remains (synapseclient refreshes under 1 h;
the half rule keeps short test lifetimes working). Concurrent ``get`` calls for the same key
share one REST call and its outcome (single-flight). ``invalidate`` drops a set S3 rejected,
but only if it is still the cached one, so a late failure cannot discard fresher credentials.
``status()`` reports each cached set's expiry (no secrets); every secret fetched is
registered with ``synfs.redact`` so that no log line can carry it.

Blocking and thread-safe (worker threads). Time comes from injectable clocks: ``clock``
(monotonic, for ages) and ``wall`` (aware UTC datetime, against the reported expiration).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Callable

from synfs import redact
from synfs.synapse.models import StsCredentials
from synfs.synapse.throttle import Coalescer

log = logging.getLogger(__name__)

MAX_MARGIN_S = 3600.0


@dataclasses.dataclass
class _Entry:
    creds: StsCredentials
    refresh_at: float        # on ``clock``: when to fetch a new set
    margin: float            # seconds before the reported expiration to fetch a new set


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CredentialStore:
    def __init__(self, client, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], dt.datetime] = _utcnow):
        self.client = client
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, str], _Entry] = {}
        self._flights = Coalescer(copy_results=False)   # one REST call per key at a time
        self.fetches = 0          # REST calls made (for tests and benchmarks)

    def __repr__(self) -> str:
        return f"CredentialStore(cached={len(self._cache)}, fetches={self.fetches})"

    def get(self, storage_location_id: int, entity_id: int,
            permission: str = "read_only") -> StsCredentials:
        """Fresh-enough credentials for the location; ``entity_id`` is any entity stored
        there that the caller may download (it names the location in the REST call)."""
        key = (storage_location_id, permission)
        cached = self._cached(key)
        if cached is not None:
            return cached

        def fetch() -> StsCredentials:
            again = self._cached(key)      # a flight that just landed may have filled it
            return again if again is not None else self._fetch(key, entity_id)

        return self._flights.do(key, fetch)

    def _cached(self, key: tuple[int, str]) -> StsCredentials | None:
        with self._lock:
            entry = self._cache.get(key)
            return entry.creds if entry is not None and self._fresh(entry) else None

    def _fetch(self, key: tuple[int, str], entity_id: int) -> StsCredentials:
        storage_location_id, permission = key
        with self._lock:
            self.fetches += 1
        creds = self.client.sts_credentials(entity_id, permission)
        redact.register_secret(creds.secret_access_key)
        redact.register_secret(creds.session_token)
        now = self.clock()
        lifetime = creds.remaining(self.wall())
        margin = min(MAX_MARGIN_S, max(lifetime, 0.0) / 2)
        entry = _Entry(creds, refresh_at=now + lifetime - margin, margin=margin)
        with self._lock:
            self._cache[key] = entry
        log.debug("STS %s credentials for storage location %d (via syn%d): %.0fs to expiry",
                  permission, storage_location_id, entity_id, lifetime)
        return creds

    def _fresh(self, entry: _Entry) -> bool:
        # Both clocks: the monotonic one ignores wall-clock jumps, the wall one sees time
        # spent suspended (CLOCK_MONOTONIC stops during suspend).
        return (self.clock() < entry.refresh_at
                and entry.creds.remaining(self.wall()) > entry.margin)

    def invalidate(self, storage_location_id: int, permission: str,
                   creds: StsCredentials) -> bool:
        """Drop ``creds`` if they are still the cached set (True when dropped)."""
        key = (storage_location_id, permission)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and _same(entry.creds, creds):
                del self._cache[key]
                return True
        return False

    def expired(self, creds: StsCredentials) -> bool:
        """Has the reported expiration of ``creds`` passed (by the wall clock)?"""
        return creds.remaining(self.wall()) <= 0

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def status(self) -> dict:
        """For ``synfs status``: expiry per cached storage location; never a secret."""
        now_wall, now = self.wall(), self.clock()
        with self._lock:
            items = sorted(self._cache.items())
            fetches = self.fetches
        return {"fetches": fetches, "locations": [
            {"storage_location_id": loc, "permission": perm, "bucket": e.creds.bucket,
             "base_key": e.creds.base_key, "expiration": e.creds.expiration.isoformat(),
             "remaining_s": round(e.creds.remaining(now_wall)),
             "refresh_in_s": round(max(0.0, e.refresh_at - now))}
            for (loc, perm), e in items]}


def _same(a: StsCredentials, b: StsCredentials) -> bool:
    return a is b or (a.access_key_id == b.access_key_id and a.session_token == b.session_token)
