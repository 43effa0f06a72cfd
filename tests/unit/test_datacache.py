"""Unit tests of the on-disk data cache (synfs.read.datacache): round trips, LRU eviction within
the size limit, persistence across instances (remounts), detection of corrupted, truncated
and misplaced blocks, and the whole-file MD5 check."""

from __future__ import annotations

import hashlib
import logging
import os
import random

import pytest
import trio

from synfs.read.datacache import HEADER, DataCache
from synfs.read.membudget import MemoryBudget
from synfs.read.downloads import Downloads
from tests.unit.test_prefetch import DataRemote, opener

BLOCK = 64 * 1024


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def read(cache, fh, size, start, n):
    out = bytearray(n)
    ok = cache.read_into(fh, size, start, memoryview(out))
    return bytes(out) if ok else None


def store_all(cache, fh, data, md5=None, step=3 * BLOCK):
    for off in range(0, len(data), step):
        cache.store(fh, len(data), md5, off, memoryview(data)[off:off + step])


def test_round_trip_with_unaligned_ranges_and_a_short_last_block(tmp_path):
    cache = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    data = blob(5 * BLOCK + 777)
    store_all(cache, 7, data)
    assert cache.total == 6 * HEADER.size + len(data)
    for start, n in ((0, len(data)), (5, 100), (BLOCK - 3, 10), (5 * BLOCK + 700, 77)):
        assert read(cache, 7, len(data), start, n) == data[start:start + n]
    assert read(cache, 8, len(data), 0, 10) is None          # another handle: nothing


def test_only_whole_blocks_are_kept(tmp_path):
    cache = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    data = blob(4 * BLOCK)
    cache.store(1, len(data), None, 100, memoryview(data)[100:2 * BLOCK + 50])
    assert cache.has(1, 1) and not cache.has(1, 0) and not cache.has(1, 2)


def test_least_recently_used_blocks_go_first_within_the_limit(tmp_path):
    per_block = BLOCK + HEADER.size
    cache = DataCache(tmp_path, 4 * per_block, block_size=BLOCK)
    a, b = blob(2 * BLOCK, 1), blob(2 * BLOCK, 2)
    store_all(cache, 1, a)
    store_all(cache, 2, b)
    assert read(cache, 1, len(a), 0, 10) == a[:10]           # handle 1 block 0 is now recent
    store_all(cache, 3, blob(BLOCK, 3))
    assert cache.total <= 4 * per_block
    assert cache.has(1, 0) and not cache.has(1, 1)           # LRU order, not insertion
    used = sum(f.stat().st_size for f in (tmp_path / "data").rglob("*.blk"))
    assert used == cache.total <= cache.max_bytes
    assert cache.stats["evicted"] == 1


def test_blocks_survive_a_new_instance(tmp_path):
    data = blob(3 * BLOCK + 5)
    first = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    store_all(first, 42, data)
    again = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    assert again.total == first.total
    assert read(again, 42, len(data), 0, len(data)) == data
    small = DataCache(tmp_path, BLOCK + HEADER.size, block_size=BLOCK)   # smaller limit
    assert small.total <= BLOCK + HEADER.size


def _block(tmp_path, fh, index):
    return tmp_path / "data" / str(fh) / f"{index}.blk"


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
def test_damaged_blocks_are_detected_dropped_and_logged(tmp_path, caplog, damage):
    cache = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    data = blob(3 * BLOCK)
    store_all(cache, 5, data)
    path = _block(tmp_path, 5, 1)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[HEADER.size + 1000] ^= 0xFF
        path.write_bytes(raw)
    elif damage == "truncate":
        path.write_bytes(raw[:HEADER.size + 100])
    else:                                # another block's file under this block's name
        path.write_bytes(_block(tmp_path, 5, 2).read_bytes())
    with caplog.at_level(logging.WARNING, logger="synfs.read.datacache"):
        assert read(cache, 5, len(data), BLOCK, 100) is None
    assert "corrupt" in caplog.text
    assert not path.exists() and not cache.has(5, 1) and cache.stats["corrupt"] == 1
    assert read(cache, 5, len(data), 0, 100) == data[:100]   # the good blocks still serve


def test_a_complete_file_is_checked_against_its_md5(tmp_path, caplog):
    cache = DataCache(tmp_path, 10 * 1024 * 1024, block_size=BLOCK)
    good = blob(2 * BLOCK + 9, 1)
    store_all(cache, 1, good, md5=hashlib.md5(good).hexdigest())
    assert cache.is_verified(1) and cache.stats["verified"] == 1
    bad = blob(2 * BLOCK + 9, 2)
    with caplog.at_level(logging.WARNING, logger="synfs.read.datacache"):
        store_all(cache, 2, bad, md5=hashlib.md5(b"something else").hexdigest())
    assert "does not match its MD5" in caplog.text
    assert cache.stats["md5_mismatch"] == 1
    assert not any(cache.has(2, i) for i in range(3))
    assert not (tmp_path / "data" / "2").exists()


def test_the_prefetcher_reads_through_the_cache(tmp_path):
    remote = DataRemote()
    data = blob(5 * 1024 * 1024 + 3, 9)
    ent = remote.entity(1, data)
    cache = DataCache(tmp_path, 64 * 1024 * 1024)

    async def read_all(open_):
        f = open_(ent)
        out = bytearray()
        for off in range(0, len(data), 1024 * 1024):
            out += await f.read(off, 1024 * 1024)
        f.close()
        with trio.fail_after(10):          # the cache writes finish after the reads
            while not cache.is_verified(ent.file_handle.id):
                await trio.sleep(0.005)
        return bytes(out)

    downloads, open_ = opener(remote, cache=cache)
    assert trio.run(read_all, open_) == data
    assert cache.is_verified(ent.file_handle.id)
    fetched = remote.fetched()
    # a new mount (new Downloads, new DataCache on the same directory): no S3 read at all
    downloads2 = Downloads(remote, MemoryBudget(64 * 1024 * 1024),
                           DataCache(tmp_path, 64 * 1024 * 1024))
    from synfs.read.openfiles import OpenFile
    from synfs.read.prefetch import ReadaheadPolicy

    assert trio.run(read_all, lambda e: OpenFile(e, remote, ReadaheadPolicy(), downloads2)) == data
    assert remote.fetched() == fetched and downloads2.stats["cache_hits"] > 0
    os.utime(tmp_path)                     # (nothing else to check: bytes were exact)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_the_cache_is_private_to_its_user(tmp_path):
    """The cache directory, data/ and data/<handle>/ are 0700 and meta.json 0600 (issue 11 G),
    whatever the umask; directories an older version left 0755 are tightened at start-up."""
    old = os.umask(0o022)
    try:
        root = tmp_path / "new" / "cache"
        cache = DataCache(root, 10 * 1024 * 1024, block_size=BLOCK)
        data = blob(BLOCK + 5)
        store_all(cache, 7, data, hashlib.md5(data).hexdigest())
        assert _mode(tmp_path / "new") == 0o700 and _mode(root) == 0o700
        assert _mode(root / "data") == 0o700 and _mode(root / "data" / "7") == 0o700
        assert _mode(root / "data" / "7" / "meta.json") == 0o600
        assert cache.is_verified(7)        # meta.json was rewritten, still private
        assert _mode(root / "data" / "7" / "meta.json") == 0o600
        assert {_mode(p) for p in (root / "data" / "7").glob("*.blk")} == {0o600}
        for p in (root / "data", root / "data" / "7"):
            os.chmod(p, 0o755)
        os.chmod(root / "data" / "7" / "meta.json", 0o644)
        DataCache(root, 10 * 1024 * 1024, block_size=BLOCK)
        assert _mode(root / "data") == 0o700 and _mode(root / "data" / "7") == 0o700
        assert _mode(root / "data" / "7" / "meta.json") == 0o600
    finally:
        os.umask(old)
