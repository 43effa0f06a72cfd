"""Run-time fault injection and production-like throttling for the emulator.

``Faults`` is one mutable object shared by the REST app and the S3 proxy; the admin endpoint
``/admin/v1/faults`` reads and replaces it. ``Throttle`` mimics Synapse's filters: at most 3
concurrent requests and 600 requests per 60 s per user, answered with 429 ``{"reason": ...}``.
"""

from __future__ import annotations

import collections
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field, fields

CONCURRENT_LIMIT = 3
FREQUENCY_LIMIT = 600
FREQUENCY_WINDOW_S = 60.0


@dataclass
class ErrorRule:
    """Fail a share of matching requests: ``method`` ('*' for any), ``path`` regex searched in
    the request path (e.g. ``/entity/children``), ``status`` 429/500/503, ``rate`` 0..1."""

    path: str
    status: int
    rate: float = 1.0
    method: str = "*"
    count: int | None = None  # fail at most this many times, then stop (None: no limit)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path, path) is not None


@dataclass
class Faults:
    latency_ms: int = 0                      # added to every REST request
    errors: list[ErrorRule] = field(default_factory=list)
    sts_expiration_s: int | None = None      # reported STS lifetime; proxy rejects afterwards
    s3_error_rate: float = 0.0               # share of STS-signed S3 requests that fail
    s3_error_status: int = 503
    s3_latency_ms: int = 0
    s3_bucket_regions: dict = field(default_factory=dict)   # bucket -> region (S3 proxy)
    throttling: bool = False
    view_lag_s: float = 0.0                  # view rows show changes only once this old
    table_job_s: float = 0.0                 # table jobs answer 202 PROCESSING this long
    table_page_rows: int | None = None       # maxRowsPerPage of table queries (None: computed)

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            out[f.name] = [asdict(rule) for rule in value] if f.name == "errors" else value
        return out

    def update(self, data: dict) -> None:
        """Replace the fields present in ``data`` (validated); unknown keys are an error."""
        allowed = set(self.to_json())
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        with self._lock:
            for key, value in data.items():
                if key == "errors":
                    value = [ErrorRule(**rule) for rule in value or []]
                    for rule in value:
                        re.compile(rule.path)
                        if rule.status not in (429, 500, 502, 503, 504):
                            raise ValueError("error status must be one of 429, 500, 502, 503, 504")
                        if not 0.0 <= rule.rate <= 1.0:
                            raise ValueError("rate must be between 0 and 1")
                elif key in ("view_lag_s", "table_job_s"):
                    value = float(value or 0)
                    if value < 0:
                        raise ValueError(f"{key} must be 0 or more")
                elif key == "s3_bucket_regions":
                    value = {str(k): str(v) for k, v in (value or {}).items()}
                elif key == "table_page_rows" and value is not None:
                    value = int(value)
                    if value < 1:
                        raise ValueError("table_page_rows must be 1 or more")
                setattr(self, key, value)

    def reset(self) -> None:
        self.update(Faults().to_json())

    def pick_error(self, method: str, path: str) -> int | None:
        """Status to fail this request with, or None."""
        with self._lock:
            for rule in self.errors:
                if rule.matches(method, path) and random.random() < rule.rate:
                    if rule.count is not None:
                        if rule.count <= 0:
                            continue
                        rule.count -= 1
                    return rule.status
        return None


class Throttle:
    """Per-user concurrency and frequency limits (in memory, like production's filters)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active: dict[int, int] = collections.defaultdict(int)
        self._recent: dict[int, collections.deque] = collections.defaultdict(collections.deque)

    def enter(self, key: int) -> str | None:
        """Admit a request (returns None) or return the 429 reason."""
        t = time.monotonic()
        with self._lock:
            recent = self._recent[key]
            while recent and t - recent[0] > FREQUENCY_WINDOW_S:
                recent.popleft()
            if len(recent) >= FREQUENCY_LIMIT:
                return (f"Requests are too frequent. Allowed {FREQUENCY_LIMIT} requests every "
                        f"{int(FREQUENCY_WINDOW_S)} seconds.")
            if self._active[key] >= CONCURRENT_LIMIT:
                return (f"Too many concurrent requests. Allowed {CONCURRENT_LIMIT} concurrent "
                        "connections at any time.")
            recent.append(t)
            self._active[key] += 1
            return None

    def leave(self, key: int) -> None:
        with self._lock:
            self._active[key] = max(0, self._active[key] - 1)
