"""Unit tests of the prefetcher (synfs.read.prefetch / synfs.read.openfiles) with an in-memory remote:
sequential, random and seek patterns, out-of-order reads, single-flight downloads, a file
changed between opens, errors, and the memory budget. No timing assertions."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio

from synfs import errors
from synfs.read.openfiles import OpenFile
from synfs.read.membudget import MemoryBudget
from synfs.read.downloads import Downloads
from synfs.read.prefetch import ReadaheadPolicy
from synfs.synapse.models import CT, Entity, FileHandle, Kind

MiB = 1024 * 1024


class DataRemote:
    """Bytes per file handle id; records every ranged read; can delay or fail them."""

    def __init__(self):
        self.blobs: dict[int, bytes] = {}
        self.reads: list[tuple[int, int, int]] = []
        self.delay = 0.0
        self.fail_next = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def entity(self, eid: int, data: bytes, fh_id: int | None = None) -> Entity:
        fh_id = fh_id or eid * 10
        self.blobs[fh_id] = data
        handle = FileHandle(id=fh_id, size=len(data), md5=hashlib.md5(data).hexdigest(),
                            concrete_type=CT + "file.S3FileHandle", storage_location_id=1,
                            bucket="b", key=f"k/{fh_id}")
        return Entity(id=eid, name=f"f{eid}", kind=Kind.FILE, parent_id=1, etag="e",
                      created_on=0.0, modified_on=0.0, version=1, file_handle_id=fh_id,
                      file_handle=handle)

    async def read_into(self, entity: Entity, start: int, out) -> int:
        fh = entity.file_handle.id
        self.reads.append((fh, start, len(out)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.delay)
            if self.fail_next:
                self.fail_next -= 1
                raise errors.Unavailable("S3 is down")
            data = self.blobs[fh][start:start + len(out)]
            out[:len(data)] = data
            return len(data)
        finally:
            self.in_flight -= 1

    def fetched(self, fh: int | None = None) -> int:
        return sum(n for f, _, n in self.reads if fh is None or f == fh)


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def opener(remote, limit=256 * MiB, policy=ReadaheadPolicy(), cache=None):
    downloads = Downloads(remote, MemoryBudget(limit), cache)
    return downloads, (lambda ent: OpenFile(ent, remote, policy, downloads))


SMALL = ReadaheadPolicy(maximum=32 * MiB, part_max=8 * MiB)    # reachable in a small file


def test_sequential_reads_are_exact_and_the_window_grows():
    remote = DataRemote()
    data = blob(40 * MiB + 12345)
    ent = remote.entity(1, data)
    downloads, open_ = opener(remote, policy=SMALL)

    async def main():
        f = open_(ent)
        out = bytearray()
        for off in range(0, len(data), 128 * 1024):
            out += await f.read(off, 128 * 1024)
        assert bytes(out) == data
        assert await f.read(len(data), 4096) == b""
        sizes = [n for _, _, n in remote.reads]
        assert sizes[0] == SMALL.initial                        # the first window
        assert max(sizes) == SMALL.part_max                     # grown to the largest part
        assert remote.fetched() == len(data)                    # nothing fetched twice
        assert f.prefetcher.resets == 0 and len(sizes) < 25
        assert remote.max_in_flight > 1 or remote.delay == 0
        f.close()

    trio.run(main)
    assert downloads.budget.used == downloads.budget._free_bytes   # every buffer came back


def test_parts_download_in_parallel():
    remote = DataRemote()
    remote.delay = 0.01
    data = blob(48 * MiB)
    ent = remote.entity(1, data)
    _, open_ = opener(remote)

    async def main():
        f = open_(ent)
        for off in range(0, len(data), MiB):
            assert await f.read(off, MiB) == data[off:off + MiB]
        f.close()

    trio.run(main)
    assert remote.max_in_flight >= 3


def test_random_reads_fetch_only_what_is_asked():
    remote = DataRemote()
    data = blob(64 * MiB, seed=2)
    ent = remote.entity(1, data)
    _, open_ = opener(remote)
    rng = random.Random(7)
    offsets = [rng.randrange(0, len(data) - 256 * 1024) for _ in range(60)]

    async def main():
        f = open_(ent)
        for off in offsets:
            assert await f.read(off, 256 * 1024) == data[off:off + 256 * 1024]
        assert f.prefetcher.random
        f.close()

    trio.run(main)
    # two windows at most before random access is recognised, then exactly the bytes asked
    assert remote.fetched() <= 60 * 256 * 1024 + 2 * ReadaheadPolicy().initial + 8 * MiB


def test_small_seeks_are_served_from_the_window():
    remote = DataRemote()
    data = blob(96 * MiB, seed=3)
    ent = remote.entity(1, data)
    _, open_ = opener(remote, policy=SMALL)

    async def main():
        f = open_(ent)
        for off in range(0, 12 * MiB, MiB):
            assert await f.read(off, MiB) == data[off:off + MiB]
        fetched = remote.fetched()
        # backward within keep_behind, forward inside what is held: no new download
        for off in (11 * MiB + 5, 10 * MiB, 12 * MiB + 100, 9 * MiB + 7):
            assert await f.read(off, 4096) == data[off:off + 4096]
        assert f.prefetcher.resets == 0
        assert remote.fetched() - fetched <= SMALL.part_max     # a top-up at most
        # a far jump resets the window; reading on from there is sequential again
        assert await f.read(90 * MiB, 4096) == data[90 * MiB:90 * MiB + 4096]
        assert f.prefetcher.resets == 1
        assert await f.read(90 * MiB + 4096, 4096) == data[90 * MiB + 4096:90 * MiB + 8192]
        assert f.prefetcher.resets == 1 and not f.prefetcher.random
        f.close()

    trio.run(main)


def test_concurrent_out_of_order_reads_like_kernel_readahead():
    remote = DataRemote()
    remote.delay = 0.002
    data = blob(24 * MiB, seed=4)
    ent = remote.entity(1, data)
    _, open_ = opener(remote)
    got: dict[int, bytes] = {}

    async def main():
        f = open_(ent)

        async def one(off):
            got[off] = await f.read(off, MiB)

        for batch in range(0, 24, 4):       # 4 requests in flight, last one first
            async with trio.open_nursery() as n:
                for i in reversed(range(batch, batch + 4)):
                    n.start_soon(one, i * MiB)
                    await trio.sleep(0)
        assert f.prefetcher.resets == 0
        f.close()

    trio.run(main)
    assert b"".join(got[i * MiB] for i in range(24)) == data
    assert remote.fetched() <= len(data) + 2 * MiB


def test_readers_of_one_file_share_downloads():
    remote = DataRemote()
    remote.delay = 0.005
    data = blob(20 * MiB, seed=5)
    ent = remote.entity(1, data)
    downloads, open_ = opener(remote)

    async def reader(results, i):
        f = open_(ent)
        out = bytearray()
        for off in range(0, len(data), MiB):
            out += await f.read(off, MiB)
        results[i] = bytes(out)
        f.close()

    async def main():
        results = {}
        async with trio.open_nursery() as n:
            for i in range(8):
                n.start_soon(reader, results, i)
        assert all(r == data for r in results.values()) and len(results) == 8

    trio.run(main)
    assert remote.fetched() < 2 * len(data)           # eight readers, about one download
    assert downloads.stats["shared"] > 0


def test_a_new_version_is_a_new_handle_with_new_bytes():
    remote = DataRemote()
    old, new = blob(3 * MiB, seed=6), blob(3 * MiB + 10, seed=7)
    ent_v1 = remote.entity(1, old, fh_id=111)
    ent_v2 = remote.entity(1, new, fh_id=222)     # same entity id, content changed
    _, open_ = opener(remote)

    async def main():
        f1 = open_(ent_v1)
        assert await f1.read(0, MiB) == old[:MiB]
        f2 = open_(ent_v2)                            # opened while f1 still holds parts
        out = bytearray()
        for off in range(0, len(new), MiB):
            out += await f2.read(off, MiB)
        assert bytes(out) == new
        assert await f1.read(MiB, MiB) == old[MiB:2 * MiB]
        f1.close()
        f2.close()

    trio.run(main)


def test_a_failed_download_fails_the_read_and_the_next_read_retries():
    remote = DataRemote()
    data = blob(4 * MiB, seed=8)
    ent = remote.entity(1, data)
    _, open_ = opener(remote)

    async def main():
        f = open_(ent)
        remote.fail_next = 1
        with pytest.raises(errors.Unavailable):
            await f.read(0, 4096)
        assert await f.read(0, 4096) == data[:4096]
        assert await f.read(4096, MiB) == data[4096:4096 + MiB]
        f.close()

    trio.run(main)


def test_a_small_budget_falls_back_to_direct_reads_and_holds_its_limit():
    remote = DataRemote()
    remote.delay = 0.001
    files = [remote.entity(i, blob(6 * MiB, seed=i)) for i in range(1, 9)]
    limit = 16 * MiB
    downloads, open_ = opener(remote, limit=limit)

    async def reader(ent, out):
        f = open_(ent)
        buf = bytearray()
        for off in range(0, ent.file_handle.size, 256 * 1024):
            buf += await f.read(off, 256 * 1024)
        out[ent.id] = bytes(buf)
        f.close()

    async def main():
        out = {}
        async with trio.open_nursery() as n:
            for ent in files:
                n.start_soon(reader, ent, out)
        for ent in files:
            assert out[ent.id] == remote.blobs[ent.file_handle.id]

    trio.run(main)
    budget = downloads.budget
    assert budget.peak <= limit
    assert downloads.stats["direct"] > 0 or budget.stats["refused"] == 0
    assert budget.direct_used == 0


def test_five_hundred_open_files_do_not_multiply_the_budget():
    remote = DataRemote()
    limit = 32 * MiB
    files = [remote.entity(i, blob(300 * 1024 + i, seed=i)) for i in range(1, 501)]
    downloads, open_ = opener(remote, limit=limit)

    async def main():
        handles = [open_(ent) for ent in files]
        for f, ent in zip(handles, files):       # each file read a little, all left open
            assert await f.read(0, 64 * 1024) == remote.blobs[ent.file_handle.id][:64 * 1024]
        assert downloads.budget.peak <= limit
        for f in handles:
            f.close()
        assert downloads.budget.used == downloads.budget._free_bytes

    trio.run(main)


def test_close_lets_in_flight_downloads_finish_and_frees_them():
    remote = DataRemote()
    remote.delay = 0.02
    data = blob(16 * MiB, seed=9)
    ent = remote.entity(1, data)
    downloads, open_ = opener(remote)

    async def main():
        f = open_(ent)
        for off in range(0, 4 * MiB, MiB):
            await f.read(off, MiB)
        f.close()                                   # parts still downloading ahead
        assert downloads.budget.used > downloads.budget._free_bytes
        with trio.fail_after(10):                   # they finish, then give their memory back
            while downloads.budget.used != downloads.budget._free_bytes:
                await trio.sleep(0.005)
        with pytest.raises(errors.SynfsError):
            await f.read(0, 10)

    trio.run(main)


def test_the_windows_of_all_files_together_stay_within_the_total():
    """One file alone grows its window to ``maximum``; four files reading at once share
    ``total`` (a quarter each), though the budget would give each more, and read exactly."""
    policy = ReadaheadPolicy(maximum=8 * MiB, total=16 * MiB, part_max=4 * MiB)
    remote = DataRemote()
    datas = [blob(24 * MiB + i, seed=i) for i in range(5)]
    ents = [remote.entity(i + 1, d) for i, d in enumerate(datas)]
    downloads, open_ = opener(remote, limit=256 * MiB, policy=policy)

    async def read_all(files, idx):
        outs = [bytearray() for _ in idx]
        for off in range(0, 24 * MiB + 8, MiB):          # in lockstep, like parallel readers
            for out, f in zip(outs, files):
                out += await f.read(off, MiB)
        return outs

    async def main():
        alone = open_(ents[0])
        [out] = await read_all([alone], [0])
        assert bytes(out) == datas[0] and alone.prefetcher.window == 8 * MiB
        alone.close()
        four = [open_(ent) for ent in ents[1:]]
        outs = await read_all(four, range(1, 5))
        assert [bytes(o) for o in outs] == datas[1:]
        assert all(f.prefetcher.window == 4 * MiB for f in four)   # 16 MiB / 4 files
        assert downloads.budget.fair_share() > 4 * MiB             # the budget allowed more
        for f in four:
            f.close()

    trio.run(main)
