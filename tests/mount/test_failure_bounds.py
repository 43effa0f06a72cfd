"""A failing read or open answers within --retry-budget (plus one request timeout), on real
mounts (issue 11 E): the kernel retries a failed readahead with a read of its own, and that
retry gets the same error at once instead of spending the budget a second time."""

from __future__ import annotations

import errno
import os
import time

import pytest

BUDGET = 3.0


@pytest.fixture(scope="module")
def fmount(seeded, mounts):
    owner, layout = seeded
    return mounts(owner.token, layout["externalStsFolder"], "bounds",
                  ["--retry-budget", str(BUDGET), "--metadata-ttl", "0"])


def test_a_failing_read_answers_within_the_budget(emulator, fmount):
    path = fmount.path / "matrix.csv"
    os.stat(path)
    emulator.set_faults(s3_error_rate=1.0, s3_error_status=503)
    try:
        fd = os.open(path, os.O_RDONLY)
        t0 = time.monotonic()
        try:
            with pytest.raises(OSError) as exc:
                os.read(fd, 65536)
            took = time.monotonic() - t0
        finally:
            os.close(fd)
    finally:
        emulator.reset_faults()
    assert exc.value.errno == errno.EIO
    assert BUDGET * 0.8 < took < BUDGET + 1.5, f"a failing read took {took:.1f}s"
    assert path.read_bytes()[:10]           # recovered: a new open reads again


def test_a_failing_stat_answers_within_the_budget(emulator, fmount):
    emulator.set_faults(errors=[{"path": "/(bundle2|children)$", "status": 503}])
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            os.stat(fmount.path / "matrix.csv")
        took = time.monotonic() - t0
    finally:
        emulator.reset_faults()
    assert exc.value.errno == errno.EIO
    assert took < BUDGET + 1.5, f"a failing stat took {took:.1f}s"


def test_a_failing_open_answers_within_the_budget(emulator, fmount):
    """`open` of a file (its lookup and the entity fetch open makes to check permissions) with
    Synapse failing: EIO within one budget, not one per step the kernel or the core retries."""
    path = fmount.path / "matrix.csv"
    os.stat(path)
    emulator.set_faults(errors=[{"path": "/entity/", "status": 503}])
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            os.close(os.open(path, os.O_RDONLY))
        took = time.monotonic() - t0
    finally:
        emulator.reset_faults()
    assert exc.value.errno == errno.EIO
    assert BUDGET * 0.8 < took < BUDGET + 1.5, f"a failing open took {took:.1f}s"
    os.close(os.open(path, os.O_RDONLY))      # recovered
