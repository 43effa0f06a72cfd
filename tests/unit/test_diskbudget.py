"""Unit tests of the one ``--cache-size`` budget (synfs.diskbudget) shared by the write staging
area (synfs.write.staging) and the data cache (synfs.read.datacache): staged writes come first and evict
cached blocks, the cache directory as a whole stays within the budget, ENOSPC comes only when
staged data alone would exceed it, and the data cache lives in the room staging leaves."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from synfs import errors
from synfs.read import datacache
from synfs.read.datacache import HEADER, DataCache
from synfs.diskbudget import DiskBudget
from synfs.write.staging import StagingArea

BLOCK = 64 * 1024
PER_BLOCK = BLOCK + HEADER.size          # what one cached block costs on disk


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def store_file(cache, fh, data):
    cache.store(fh, len(data), None, 0, memoryview(data))


def read(cache, fh, size, start, n):
    out = bytearray(n)
    return bytes(out) if cache.read_into(fh, size, start, memoryview(out)) else None


def disk_bytes(root: Path) -> int:
    """What the cache directory holds: staged files plus cached blocks."""
    staged = sum(p.stat().st_size for p in (root / "staging").glob("*")) \
        if (root / "staging").exists() else 0
    return staged + sum(p.stat().st_size for p in (root / "data").rglob("*.blk"))


def world(tmp_path, limit):
    disk = DiskBudget(limit)
    cache = DataCache(tmp_path, disk, block_size=BLOCK)
    staging = StagingArea(tmp_path / "staging", disk)
    return disk, cache, staging


def test_staging_growth_evicts_least_recently_used_cache_blocks(tmp_path):
    disk, cache, staging = world(tmp_path, 6 * PER_BLOCK)
    a, b = blob(3 * BLOCK, 1), blob(3 * BLOCK, 2)
    store_file(cache, 1, a)
    store_file(cache, 2, b)
    assert cache.total == disk.cached == 6 * PER_BLOCK          # the cache fills the budget
    assert read(cache, 1, len(a), 0, 10) == a[:10]              # handle 1 block 0: recent

    f = staging.new("x")
    f.write(0, b"w" * (PER_BLOCK + 1))                          # needs two blocks' room
    assert staging.used == PER_BLOCK + 1
    assert not cache.has(1, 1) and not cache.has(1, 2)          # the two oldest went
    assert cache.has(1, 0) and all(cache.has(2, i) for i in range(3))
    assert not (tmp_path / "data" / "1" / "1.blk").exists()     # gone from disk, not just index
    assert cache.stats["evicted"] == 2
    assert cache.total == disk.cached == 4 * PER_BLOCK
    assert disk_bytes(tmp_path) <= 6 * PER_BLOCK
    assert read(cache, 1, len(a), 0, len(a)) is None            # evicted data reads as a miss
    assert f.read(0, 5) == b"wwwww"


def test_truncate_up_evicts_too_and_shrinking_staging_gives_room_back(tmp_path):
    disk, cache, staging = world(tmp_path, 4 * PER_BLOCK)
    store_file(cache, 1, blob(4 * BLOCK))
    f = staging.new("t")
    f.truncate(3 * PER_BLOCK)
    assert cache.total == PER_BLOCK and cache.max_bytes == PER_BLOCK
    f.truncate(0)
    assert cache.max_bytes == 4 * PER_BLOCK
    store_file(cache, 2, blob(3 * BLOCK, 2))                    # room is back
    assert all(cache.has(2, i) for i in range(3))
    assert disk_bytes(tmp_path) <= 4 * PER_BLOCK


def test_enospc_only_when_staged_data_alone_exceeds_the_budget(tmp_path):
    limit = 5 * PER_BLOCK
    disk, cache, staging = world(tmp_path, limit)
    store_file(cache, 1, blob(5 * BLOCK))
    f = staging.new("big")
    f.write(0, b"a" * (limit - 10))             # the cache gives way: no ENOSPC
    f.write(limit - 10, b"b" * 10)              # exactly the budget: still fine
    assert staging.used == limit and cache.total == 0 and disk.cached == 0
    with pytest.raises(errors.NoSpace) as exc:
        f.write(limit, b"c")                    # one byte more than the budget
    assert "staging area" in str(exc.value) and f"{limit} of {limit}" in str(exc.value)
    assert staging.used == limit and f.size == limit       # the refused write counted nothing
    assert disk_bytes(tmp_path) == limit

    g = staging.new("other")
    with pytest.raises(errors.NoSpace):
        g.truncate(1)
    f.discard()
    assert staging.used == 0
    g.write(0, b"fits now")
    store_file(cache, 2, blob(2 * BLOCK, 2))
    assert cache.has(2, 0) and cache.has(2, 1)


def test_data_cache_keeps_within_the_room_staging_leaves(tmp_path):
    disk, cache, staging = world(tmp_path, 6 * PER_BLOCK)
    f = staging.new("s")
    f.write(0, b"s" * (2 * PER_BLOCK + 100))
    assert cache.max_bytes == 6 * PER_BLOCK - (2 * PER_BLOCK + 100)
    data = blob(10 * BLOCK)
    store_file(cache, 1, data)
    assert cache.total <= cache.max_bytes < 4 * PER_BLOCK
    assert cache.total == 3 * PER_BLOCK                         # as much as fits, no more
    assert disk_bytes(tmp_path) <= 6 * PER_BLOCK
    store_file(cache, 2, blob(2 * BLOCK, 2))                    # newer data evicts older
    assert cache.has(2, 0) and cache.has(2, 1) and cache.total == 3 * PER_BLOCK

    f.truncate(6 * PER_BLOCK - PER_BLOCK // 2)                  # room left < one block
    assert cache.total == 0
    store_file(cache, 3, blob(BLOCK, 3))
    assert not cache.has(3, 0) and cache.stats["no_room"] >= 1 and disk.cached == 0


def test_a_block_that_cannot_fit_evicts_nothing(tmp_path):
    disk, cache, staging = world(tmp_path, 2 * PER_BLOCK)
    store_file(cache, 1, blob(100))                             # a small (tail) block
    staging.new("s").write(0, b"x" * (PER_BLOCK + PER_BLOCK // 2))
    assert cache.has(1, 0)                                      # still fits next to staging
    store_file(cache, 2, blob(BLOCK, 2))                        # a whole block never fits now
    assert not cache.has(2, 0) and cache.has(1, 0) and cache.stats["evicted"] == 0


def test_a_new_file_larger_than_the_room_keeps_its_newest_blocks(tmp_path):
    disk, cache, staging = world(tmp_path, 3 * PER_BLOCK)
    store_file(cache, 1, blob(BLOCK))
    staging.new("s").write(0, b"x" * (PER_BLOCK + PER_BLOCK // 2))
    store_file(cache, 2, blob(2 * BLOCK, 2))                    # room for one block only
    assert [cache.has(k, i) for k, i in ((1, 0), (2, 0), (2, 1))] == [False, False, True]
    assert cache.total == disk.cached == PER_BLOCK
    assert disk_bytes(tmp_path) <= 3 * PER_BLOCK


def test_staging_taking_room_during_a_block_write_is_settled_after_it(tmp_path):
    disk, cache, staging = world(tmp_path, 4 * PER_BLOCK)
    store_file(cache, 1, blob(2 * BLOCK))
    f = staging.new("s")
    original = cache._write_block

    def write_while_staging_grows(*args):
        f.write(0, b"x" * (3 * PER_BLOCK + PER_BLOCK // 2))   # takes the room mid-write
        return original(*args)

    cache._write_block = write_while_staging_grows
    store_file(cache, 2, blob(BLOCK, 2))
    assert staging.used == 3 * PER_BLOCK + PER_BLOCK // 2
    assert cache.total == disk.cached == 0      # the block written meanwhile went too
    assert not (tmp_path / "data" / "2").exists()
    assert disk_bytes(tmp_path) <= 4 * PER_BLOCK


def test_the_cache_makes_room_before_it_writes_a_block(tmp_path):
    disk, cache, staging = world(tmp_path, 4 * PER_BLOCK)
    staging.new("s").write(0, b"x" * PER_BLOCK)
    peaks = []
    original = cache._write_block

    def measured(*args):
        ok = original(*args)
        peaks.append(disk_bytes(tmp_path))      # before any eviction after the write
        return ok

    cache._write_block = measured
    for fh in range(1, 6):
        store_file(cache, fh, blob(2 * BLOCK, fh))
    assert len(peaks) == 10 and max(peaks) <= 4 * PER_BLOCK
    assert cache.total == 3 * PER_BLOCK


def test_a_random_mix_never_exceeds_the_budget_on_disk(tmp_path):
    rng = random.Random(7)
    limit = 8 * PER_BLOCK
    disk, cache, staging = world(tmp_path, limit)
    files, fh = [], 100
    for step in range(400):
        op = rng.random()
        if op < 0.35:
            fh += 1
            store_file(cache, fh, blob(rng.randint(1, 4) * BLOCK - rng.randint(0, 100), fh))
        elif op < 0.6:
            f = files[-1] if files and rng.random() < 0.6 else staging.new(f"f{step}")
            if f not in files:
                files.append(f)
            off, n = rng.randint(0, f.size), rng.randint(1, 2 * PER_BLOCK)
            try:
                f.write(off, b"d" * n)
            except errors.NoSpace:              # only when staged data alone would not fit
                assert staging.used + (off + n - f.size) > limit
        elif op < 0.75 and files:
            f = rng.choice(files)
            size = rng.randint(0, 3 * PER_BLOCK)
            try:
                f.truncate(size)
            except errors.NoSpace:
                assert staging.used + (size - f.size) > limit
        elif op < 0.85 and files:
            files.pop(rng.randrange(len(files))).discard()
        elif fh > 100:
            k = rng.randint(101, fh)
            read(cache, k, BLOCK, 0, 10)
        staged_on_disk = sum(f.size for f in files)
        assert staging.used == staged_on_disk
        assert disk.cached == cache.total
        assert disk_bytes(tmp_path) == staged_on_disk + cache.total <= limit
    assert cache.stats["evicted"] > 0 and cache.stats["stored"] > 0


def test_refused_staging_counts_nothing_and_evicts_nothing(tmp_path):
    disk, cache, staging = world(tmp_path, 4 * PER_BLOCK)
    store_file(cache, 1, blob(2 * BLOCK))
    f = staging.new("s")
    with pytest.raises(errors.NoSpace):
        f.write(0, b"x" * (4 * PER_BLOCK + 1))
    assert staging.used == 0 and cache.has(1, 0) and cache.has(1, 1)


def test_the_same_block_written_twice_at_once_is_counted_once(tmp_path):
    disk, cache, staging = world(tmp_path, 10 * PER_BLOCK)
    data = blob(BLOCK)
    original = cache._write_block
    nested = []

    def racing(*args):                          # another reader stores the same block meanwhile
        if not nested:
            nested.append(1)
            store_file(cache, 1, data)
        return original(*args)

    cache._write_block = racing
    store_file(cache, 1, data)
    assert len(nested) == 1 and cache.has(1, 0)
    assert cache.total == disk.cached == PER_BLOCK == disk_bytes(tmp_path)


class _StrikingOs:
    """``os`` for the data cache, except that just before the cache opens the temporary
    file of block 1 of handle 1, ``strike()`` runs (what other threads did meanwhile)."""

    def __init__(self, strike):
        self.strike, self.strikes = strike, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def open(self, path, *args, **kw):
        p = Path(path)
        if p.parent.name == "1" and p.name.startswith("1.") and p.name.endswith(".tmp") \
                and self.strikes < 3:
            self.strikes += 1
            self.strike()
        return os.open(path, *args, **kw)


def test_a_handle_directory_stays_while_a_block_is_written_in_it(tmp_path, monkeypatch):
    """The interleaving behind the flaky stress test below: a thread is about to write block 1
    of a handle when another stores block 2 and staging evicts every indexed block of that
    handle. The handle's directory must stay for the writer (it used to be removed, and a
    retry met the same fate: a write error)."""
    disk, cache, staging = world(tmp_path, 10 * PER_BLOCK)
    data = blob(3 * BLOCK)
    view = memoryview(data)
    cache.store(1, len(data), None, 0, view[:BLOCK])

    def strike():
        cache.store(1, len(data), None, 2 * BLOCK, view[2 * BLOCK:])
        room_for_the_writer = disk.limit - PER_BLOCK
        assert disk.stage(room_for_the_writer)            # evicts blocks 0 and 2
        disk.unstage(room_for_the_writer)
        assert not cache.has(1, 0) and not cache.has(1, 2)

    shim = _StrikingOs(strike)
    monkeypatch.setattr(datacache, "os", shim)
    cache.store(1, len(data), None, BLOCK, view[BLOCK:2 * BLOCK])
    monkeypatch.undo()
    assert shim.strikes >= 1
    assert cache.stats["write_errors"] == 0 and cache.has(1, 1)
    assert read(cache, 1, len(data), BLOCK, BLOCK) == data[BLOCK:2 * BLOCK]
    assert (tmp_path / "data" / "1" / "meta.json").exists()
    assert cache.total == disk.cached == PER_BLOCK == disk_bytes(tmp_path)


def test_threads_storing_while_staging_changes_keep_the_books_straight(tmp_path):
    disk, cache, staging = world(tmp_path, 10 * PER_BLOCK)
    stop = threading.Event()
    failures = []
    files = {fh: blob((fh % 3 + 1) * BLOCK, fh) for fh in range(1, 25)}

    def filler(seed):                           # both threads store the same files at times
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                fh = rng.randint(1, 24)
                store_file(cache, fh, files[fh])
                read(cache, fh, len(files[fh]), 0, 10)
                time.sleep(0)                   # let the others in between
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=filler, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    rng = random.Random(3)
    f = staging.new("s")
    try:
        for _ in range(2000):                   # staging grows and shrinks meanwhile
            f.truncate(rng.randint(0, 10 * PER_BLOCK))
            time.sleep(0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures and cache.stats["write_errors"] == 0
    assert cache.stats["stored"] > 50 and cache.stats["evicted"] > 50
    assert disk.cached == cache.total
    assert disk.staged == f.size
    assert disk.staged + disk.cached <= disk.limit
    assert disk_bytes(tmp_path) == f.size + cache.total


def test_staging_alone_gets_the_whole_budget_and_a_budget_has_one_cache(tmp_path):
    staging = StagingArea(tmp_path / "staging", DiskBudget(100))
    f = staging.new("s")
    f.write(0, b"x" * 100)
    with pytest.raises(errors.NoSpace):
        f.write(100, b"y")
    disk = DiskBudget(10 * PER_BLOCK)
    DataCache(tmp_path / "a", disk, block_size=BLOCK)
    with pytest.raises(RuntimeError):
        DataCache(tmp_path / "b", disk, block_size=BLOCK)


def test_blocks_found_at_start_are_evicted_to_fit_next_to_nothing_staged(tmp_path):
    first = DataCache(tmp_path, 10 * PER_BLOCK, block_size=BLOCK)
    store_file(first, 1, blob(6 * BLOCK))
    disk = DiskBudget(4 * PER_BLOCK)
    again = DataCache(tmp_path, disk, block_size=BLOCK)
    assert again.total == disk.cached == 4 * PER_BLOCK
    assert disk_bytes(tmp_path) == 4 * PER_BLOCK


@pytest.mark.parametrize("with_cache_dir", [True, False])
def test_the_daemon_gives_staging_and_the_data_cache_one_budget(tmp_path, monkeypatch,
                                                                 with_cache_dir):
    from synfs.service import daemon
    from synfs.config import Config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = Config(root_id=1, mountpoint=tmp_path / "mnt", token="not-a-real-token",
                 repo_endpoint="http://127.0.0.1:9/repo/v1",
                 file_endpoint="http://127.0.0.1:9/file/v1",
                 auth_endpoint="http://127.0.0.1:9/auth/v1", s3_endpoint="http://127.0.0.1:9",
                 cache_dir=tmp_path / "cache" if with_cache_dir else None,
                 cache_size=3 * 1024 * 1024)
    parts = daemon.build(cfg)
    cache = parts.remote.downloads.cache
    assert parts.staging.budget.limit == 3 * 1024 * 1024
    if with_cache_dir:
        assert cache is not None and cache.budget is parts.staging.budget
    else:
        assert cache is None
