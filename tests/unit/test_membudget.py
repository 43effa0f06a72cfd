"""Unit tests of the memory budget (synfs.read.membudget): limits, reuse, reclaiming from idle
open files, direct reads that wait instead of deadlocking, and fair shares."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from synfs.read.membudget import MIN_POOLED, MemoryBudget, size_class

MiB = 1024 * 1024


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Owner:
    def __init__(self, budget, clock):
        self.budget = budget
        self.bufs = []
        self.last_active = clock()
        self.shrunk = 0
        budget.register(self)

    def shrink(self) -> int:
        self.shrunk += 1
        freed = sum(b.capacity for b in self.bufs)
        for b in self.bufs:
            self.budget.free(b)
        self.bufs = []
        return freed


def test_size_classes():
    assert size_class(1) == MIN_POOLED
    assert size_class(MIN_POOLED + 1) == 2 * MIN_POOLED
    assert size_class(MiB + 128 * 1024) == 2 * MiB
    assert size_class(8 * MiB) == 8 * MiB


def test_prefetch_allocations_stay_below_the_direct_reserve():
    b = MemoryBudget(16 * MiB, direct_reserve=4 * MiB, keep_free=0)
    got = [b.try_alloc(4 * MiB) for _ in range(4)]
    assert sum(x is not None for x in got) == 3         # 12 MiB: the last 4 are reserved
    assert b.stats["refused"] == 1 and b.used == 12 * MiB
    for x in got:
        if x is not None:
            b.free(x)
    assert b.used == 0 and b.peak == 12 * MiB


def test_freed_buffers_are_reused_then_unmapped_beyond_keep_free():
    b = MemoryBudget(64 * MiB, keep_free=8 * MiB)
    x = b.try_alloc(3 * MiB)
    assert x.capacity == 4 * MiB
    x.view(3)[:] = b"abc"
    b.free(x)
    y = b.try_alloc(4 * MiB)
    assert y is x and b.stats["reused"] == 1
    z = [b.try_alloc(8 * MiB) for _ in range(2)]
    for buf in (y, *z):
        b.free(buf)
    assert b.used == b._free_bytes <= 8 * MiB
    b.trim()
    assert b.used == 0


def test_small_buffers_are_exact_and_not_pooled():
    b = MemoryBudget(16 * MiB)
    x = b.try_alloc(1000)
    assert x.capacity == 1000 and not x.pooled
    b.free(x)
    assert b.used == 0


def test_idle_owners_give_their_buffers_back():
    clock = Clock()
    b = MemoryBudget(16 * MiB, direct_reserve=2 * MiB, keep_free=0, idle_s=1.0, clock=clock)
    idle, busy = Owner(b, clock), Owner(b, clock)
    idle.bufs = [b.try_alloc(4 * MiB, idle) for _ in range(2)]
    busy.bufs = [b.try_alloc(4 * MiB, busy)]
    clock.t += 5
    busy.last_active = clock()
    assert b.try_alloc(4 * MiB, busy) is not None      # 12 + 4 > 14: the idle owner pays
    assert idle.shrunk == 1 and idle.bufs == [] and b.stats["reclaimed"] == 1
    assert busy.shrunk == 0


def test_active_owners_are_not_robbed():
    clock = Clock()
    b = MemoryBudget(16 * MiB, direct_reserve=2 * MiB, keep_free=0, clock=clock)
    a, c = Owner(b, clock), Owner(b, clock)
    a.bufs = [b.try_alloc(8 * MiB, a)]
    assert b.try_alloc(8 * MiB, c) is None and a.shrunk == 0


def test_fair_share_divides_among_active_readers():
    clock = Clock()
    b = MemoryBudget(66 * MiB, direct_reserve=2 * MiB, clock=clock)
    owners = [Owner(b, clock) for _ in range(4)]
    assert b.fair_share() == 16 * MiB
    clock.t += 10
    owners[0].last_active = clock()
    assert b.fair_share() == 64 * MiB


def test_direct_reads_wait_for_each_other_not_for_prefetch():
    b = MemoryBudget(16 * MiB, direct_reserve=4 * MiB, keep_free=0)
    held = [b.try_alloc(4 * MiB) for _ in range(3)]     # prefetch holds its whole ceiling
    assert all(held)
    order = []

    async def direct(name, until: trio.Event):
        buf = await b.alloc_direct(4 * MiB)
        order.append(("got", name))
        await until.wait()
        b.free(buf, direct=True)

    async def main():
        release_a, no_wait = trio.Event(), trio.Event()
        no_wait.set()
        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(direct, "a", release_a)
                await wait_all_tasks_blocked()          # a holds the reserve
                n.start_soon(direct, "b", no_wait)
                await wait_all_tasks_blocked()          # b is waiting, not served
                assert order == [("got", "a")] and b.stats["direct_waits"] == 1
                release_a.set()                         # b waits for a, not forever
        assert order == [("got", "a"), ("got", "b")]
        assert b.direct_used == 0

    trio.run(main)


def test_a_lone_direct_read_larger_than_the_reserve_proceeds():
    b = MemoryBudget(16 * MiB, direct_reserve=2 * MiB, keep_free=0)
    held = [b.try_alloc(2 * MiB) for _ in range(7)]
    assert all(held)

    async def main():
        buf = await b.alloc_direct(8 * MiB)
        assert buf.capacity == 8 * MiB
        b.free(buf, direct=True)

    trio.run(main)


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        MemoryBudget(0)


def test_a_full_budget_serves_a_small_part_from_a_kept_larger_buffer_shrunk_to_its_class():
    """With the budget full of kept 16 MiB buffers, a 1 MiB part takes one of them shrunk in
    place to 1 MiB: no new mapping, and the budget counts 1 MiB, not 16, so the room it
    frees serves other parts (kept whole, it starved them)."""
    b = MemoryBudget(34 * MiB, direct_reserve=2 * MiB)
    bufs = [b.try_alloc(16 * MiB) for _ in range(2)]
    for buf in bufs:
        b.free(buf)
    small = b.try_alloc(MiB)
    assert small in bufs and small.capacity == MiB and len(small.view()) == MiB
    assert b.stats["allocated"] == 2 and b.stats["shrunk"] == 1 and b.used == 17 * MiB
    other = b.try_alloc(16 * MiB)
    assert other in bufs and other is not small and b.stats["allocated"] == 2
    assert b.try_alloc(8 * MiB) is not None and b.stats["refused"] == 0   # the room freed
    assert b.stats["allocated"] == 3 and b.used == 25 * MiB


def test_with_room_a_small_part_gets_its_own_buffer_and_kept_large_ones_wait_for_large_parts():
    """Kept buffers up to twice the part's class are taken whole; much larger ones are left
    for the larger parts that follow while a new small mapping fits."""
    b = MemoryBudget(512 * MiB, direct_reserve=64 * MiB)
    big = [b.try_alloc(32 * MiB) for _ in range(4)]
    for buf in big:
        b.free(buf)
    small = b.try_alloc(MiB)
    assert small not in big and small.capacity == MiB and b.stats["shrunk"] == 0
    half = b.try_alloc(16 * MiB)
    assert half in big and half.capacity == 32 * MiB           # one class up: whole
    assert b.try_alloc(32 * MiB) in big and b.stats["allocated"] == 5


def test_a_direct_read_with_room_leaves_a_much_larger_kept_buffer_whole():
    """Direct reads choose kept buffers as prefetching does: with room for a new small buffer
    the kept 32 MiB one is not shrunk for a 1 MiB read."""
    async def main():
        b = MemoryBudget(512 * MiB)
        big = b.try_alloc(32 * MiB)
        b.free(big)
        small = await b.alloc_direct(MiB)
        assert small is not big and big.capacity == 32 * MiB and b.stats["shrunk"] == 0
        b.free(small, direct=True)
        assert b.try_alloc(32 * MiB) is big

    trio.run(main)


def test_four_files_first_parts_do_not_take_all_the_budget_as_whole_kept_buffers():
    """One fast reader left ten 32 MiB buffers filling the budget; four files then start with
    1 MiB parts. The first shrinks a kept buffer to 1 MiB, the others fit beside it, and
    nothing is refused (kept whole, ten 1 MiB parts held 320 MiB and six were refused)."""
    b = MemoryBudget(352 * MiB, direct_reserve=32 * MiB)
    bufs = [b.try_alloc(32 * MiB) for _ in range(10)]
    for buf in bufs:
        b.free(buf)
    parts = [b.try_alloc(MiB) for _ in range(4 * 4)]          # four files, four parts each
    assert all(p is not None for p in parts) and b.stats["refused"] == 0
    assert b.stats["shrunk"] == 1 and b.stats["allocated"] == 10 + 15
    assert b.used == 9 * 32 * MiB + 16 * MiB
    assert b.try_alloc(32 * MiB) in bufs                       # kept for the next big parts


def test_buffers_outlive_the_last_close_are_lent_to_the_kernel_then_unmapped():
    """A job reading files one after another reuses the buffers of the previous file; once no
    file was open for ``trim_delay_s`` the kernel may take their pages (``MADV_FREE``) while
    they stay for reuse, and after ``release_delay_s`` they are unmapped. Each delay counts
    from the last close."""

    async def main():
        b = MemoryBudget(64 * MiB, trim_delay_s=5.0, release_delay_s=300.0,
                         clock=trio.current_time)
        first = Owner(b, trio.current_time)
        buf = b.try_alloc(8 * MiB)
        b.free(buf)
        b.unregister(first)
        b.trim_later()
        await trio.sleep(1.0)
        second = Owner(b, trio.current_time)       # the next file of the job
        assert b.try_alloc(8 * MiB) is buf and b.stats["allocated"] == 1
        b.free(buf)
        b.unregister(second)
        b.trim_later()
        await trio.sleep(4.5)
        assert b.stats["lent"] == 0                # not yet: the delay counts from the close
        await trio.sleep(1.0)
        assert b.stats["lent"] == 1 and b.used == 8 * MiB      # lent, still mapped
        buf.view()[:5] = b"again"                  # a lent buffer is written before reuse
        assert bytes(buf.view(5)) == b"again"
        third = Owner(b, trio.current_time)
        assert b.try_alloc(8 * MiB) is buf and b.stats["allocated"] == 1
        b.free(buf)
        b.unregister(third)
        b.trim_later()
        await trio.sleep(6.0)
        assert b.stats["lent"] == 2 and b.used == 8 * MiB
        await trio.sleep(290.0)
        assert b.used == 8 * MiB                   # 296 s after the last close
        await trio.sleep(10.0)
        assert b.used == 0 and b._free_bytes == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_buffer_given_back_while_a_reply_shows_it_stays_accounted_then_is_reused():
    """The last reference to a part can drop while a read returns a view of it: that memory
    is neither reused (the reply would change under its reader) nor forgotten by the account
    (it is still mapped), and once the view is gone the next allocation reuses it instead of
    mapping fresh pages."""
    b = MemoryBudget(64 * MiB, direct_reserve=4 * MiB)
    buf = b.try_alloc(8 * MiB)
    buf.view()[:4] = b"data"
    reply = buf.view(4).toreadonly()
    b.free(buf)
    assert b.used == 8 * MiB                        # still mapped, still counted
    other = b.try_alloc(8 * MiB)
    assert other is not buf and bytes(reply) == b"data"
    assert b.used == 16 * MiB and b.stats["allocated"] == 2
    reply.release()
    b.free(other)
    again = [b.try_alloc(8 * MiB), b.try_alloc(8 * MiB)]
    assert buf in again and other in again and b.stats["allocated"] == 2
    for x in again:
        b.free(x)
    b.trim()
    assert b.used == 0


def test_a_direct_read_gives_its_buffer_back_for_reuse():
    """``read_direct`` lets go of its view before freeing: the next direct read of the same
    size reuses the mapping."""
    from synfs.read.downloads import Downloads
    from tests.unit.test_prefetch import DataRemote, blob

    remote = DataRemote()
    data = blob(4 * MiB, seed=3)
    ent = remote.entity(1, data)
    downloads = Downloads(remote, MemoryBudget(64 * MiB))

    async def main():
        assert await downloads.read_direct(ent, 0, 2 * MiB) == data[:2 * MiB]
        assert await downloads.read_direct(ent, MiB, 3 * MiB) == data[MiB:3 * MiB]
        assert downloads.budget.stats["allocated"] == 1
        assert downloads.budget.stats["reused"] == 1

    trio.run(main)
