"""Scheduling of Synapse REST calls within production's per-user limits, and coalescing.

Owns two blocking, thread-safe helpers of ``synfs.synapse.client``:

* ``RateLimiter``: at most 3 requests in flight and at most 600 sent in any 60 s, shared by
  every thread of the process (production Synapse answers 429 beyond either).
* ``Coalescer``: concurrent calls with the same key share one execution and its outcome.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

MAX_CONCURRENT = 3           # production: concurrent requests per user
MAX_PER_PERIOD = 600         # production: requests per user per minute
PERIOD_S = 60.0


class RateLimiter:
    """At most ``concurrency`` requests in flight and at most ``max_requests`` sent in any
    ``period`` seconds (plus ``margin``, for clock and network skew), across all threads.
    A sliding window rather than a token bucket: a bucket refilling at the same rate would
    allow its burst on top of the rate and overrun the server's window. Blocking."""

    def __init__(self, concurrency: int = MAX_CONCURRENT, max_requests: int = MAX_PER_PERIOD,
                 period: float = PERIOD_S, *, margin: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.period = period
        self.margin = margin
        self.clock = clock
        self.sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._sent: collections.deque[float] = collections.deque()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.waits = 0               # times a request waited for the per-period limit
        self.waited_s = 0.0
        self.waiting = 0             # requests waiting for the per-period limit right now
        self.longest_wait_s = 0.0
        self.last_wait_at: float | None = None     # wall-clock time of the last wait

    @contextlib.contextmanager
    def slot(self):
        self._slots.acquire()
        try:
            self._wait_turn()
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1
        finally:
            self._slots.release()

    def _wait_turn(self) -> None:
        started = None
        try:
            while True:
                with self._lock:
                    now = self.clock()
                    window = self.period + self.margin
                    while self._sent and now - self._sent[0] >= window:
                        self._sent.popleft()
                    if len(self._sent) < self.max_requests:
                        self._sent.append(now)
                        if started is not None:
                            self.longest_wait_s = max(self.longest_wait_s, now - started)
                        return
                    delay = self._sent[0] + window - now
                    if started is None:
                        started = now
                        self.waits += 1
                        self.waiting += 1
                    self.waited_s += delay
                    self.last_wait_at = time.time()
                    queued = self.waiting + self._slots_waiting()
                log.debug("Synapse request limit (%d per %gs) reached: waiting %.2fs, %d "
                          "request(s) queued", self.max_requests, self.period, delay, queued)
                self.sleep(delay)
        finally:
            if started is not None:
                with self._lock:
                    self.waiting -= 1

    def _slots_waiting(self) -> int:
        """Requests queued behind the concurrency slots (best effort, for logs)."""
        waiters = getattr(self._slots, "_cond", None)
        return len(getattr(waiters, "_waiters", ()) or ())

    def status(self) -> dict:
        """What ``synfs status`` shows of the limiter (the waits a user may feel)."""
        with self._lock:
            return {"limit": f"{self.max_requests} per {self.period:g}s",
                    "in_flight": self.in_flight, "waiting": self.waiting,
                    "waits": self.waits, "waited_s": round(self.waited_s, 1),
                    "longest_wait_s": round(self.longest_wait_s, 1),
                    "last_wait_at": self.last_wait_at}


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class Coalescer:
    """Concurrent calls with the same key share one execution (threads). Followers get a
    deep copy of the answer unless ``copy_results`` is off (for immutable answers)."""

    def __init__(self, copy_results: bool = True):
        self.copy_results = copy_results
        self._lock = threading.Lock()
        self._flights: dict[tuple, _Flight] = {}

    def do(self, key: tuple, fn: Callable[[], object]):
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if not self.copy_results:
                return flight.result
            return copy.deepcopy(flight.result)    # callers may not share mutable answers
        try:
            flight.result = fn()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def __len__(self) -> int:
        return len(self._flights)


def call_key(*parts) -> tuple:
    """A hashable key for a call from its method, path, JSON body, params..."""
    return tuple(json.dumps(p, sort_keys=True, separators=(",", ":"), default=str)
                 for p in parts)
