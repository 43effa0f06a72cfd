"""Unit tests of Synapse call scheduling (synfs.synapse.throttle): the per-user concurrency
and per-minute limits across threads, and coalescing of identical calls."""

from __future__ import annotations

import threading
import time

import pytest

from synfs.synapse.throttle import Coalescer, RateLimiter, call_key
from tests.harness import wait_for


class FakeTime:
    def __init__(self):
        self.t = 0.0
        self.slept: list[float] = []

    def clock(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


def test_never_more_than_the_limit_in_any_window():
    ft = FakeTime()
    lim = RateLimiter(3, 5, 10.0, margin=0.5, clock=ft.clock, sleep=ft.sleep)
    sent = []
    for _ in range(12):
        with lim.slot():
            sent.append(ft.t)
        ft.t += 0.1
    for i, t in enumerate(sent):     # any 5 consecutive sends span more than the period
        if i >= 5:
            assert t - sent[i - 5] >= 10.0
    assert lim.waits >= 2 and sent[4] < 1.0          # the first 5 go at once (the burst)


def test_concurrency_is_bounded_across_threads():
    lim = RateLimiter(3, 1000, 60.0)
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with lim.slot():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3 and lim.peak_in_flight == 3 and lim.in_flight == 0


class CountingCoalescer(Coalescer):
    """Counts the calls that joined a flight in progress."""

    def __init__(self):
        super().__init__()
        self.followers = 0

    def do(self, key, fn):
        with self._lock:
            if key in self._flights:
                self.followers += 1
        return super().do(key, fn)


def test_identical_calls_in_flight_share_one_execution():
    co = CountingCoalescer()
    calls, gate = [], threading.Event()
    results = []

    def fn():
        calls.append(1)
        assert gate.wait(10)
        return {"page": [1, 2, 3]}

    def caller():
        results.append(co.do(call_key("POST", "/entity/children", {"parentId": "syn1"}), fn))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: co.followers == 7, timeout=10, what="7 calls joining the first")
    gate.set()
    for t in threads:
        t.join()
    assert calls == [1] and len(results) == 8
    assert all(r == {"page": [1, 2, 3]} for r in results)
    assert len({id(r) for r in results}) == 8        # nobody shares a mutable answer


def test_errors_are_shared_and_the_next_call_goes_again():
    co = Coalescer()

    def boom():
        raise ValueError("down")

    with pytest.raises(ValueError):
        co.do(("k",), boom)
    assert co.do(("k",), lambda: 5) == 5 and len(co) == 0


def test_call_keys_ignore_dict_order():
    assert call_key("POST", {"a": 1, "b": 2}) == call_key("POST", {"b": 2, "a": 1})
    assert call_key("POST", {"a": 1}) != call_key("POST", {"a": 2})
