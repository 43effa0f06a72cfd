"""Unit tests of the filesystem core (synfs.fs.core / synfs.read.openfiles) with an in-memory fake remote:
no FUSE, no HTTP. They pin down identity, caching, paging, permissions and the read path."""

from __future__ import annotations

import errno
import hashlib
import stat

import pytest
import trio

from synfs import errors
from synfs.cache import SingleFlight, TTLCache
from synfs.read.openfiles import ReadaheadPolicy
from synfs.fs.core import ROOT_INO, Filesystem, Options
from synfs.synapse.models import CT, ChildHeader, Entity, FileHandle, Kind


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeRemote:
    """A tiny Synapse: entities by id, children by parent, bytes by entity."""

    def __init__(self):
        self.entities: dict[int, Entity] = {}
        self.children: dict[int, list[int]] = {}
        self.data: dict[int, bytes] = {}
        self.calls: list[tuple] = []
        self.delay = 0.0

    def add(self, eid, name, kind, parent=None, data=None, **kw):
        fh = None
        if kind is Kind.FILE:
            fh = FileHandle(id=eid * 10, size=len(data), md5=hashlib.md5(data).hexdigest(),
                            concrete_type=CT + "file.S3FileHandle", storage_location_id=1,
                            bucket="b", key=f"k/{eid}")
            self.data[eid] = data
        self.entities[eid] = Entity(id=eid, name=name, kind=kind, parent_id=parent, etag=f"e{eid}",
                                    created_on=1.0, modified_on=float(eid), version=1 if fh else None,
                                    file_handle_id=fh.id if fh else None, file_handle=fh, **kw)
        if parent is not None:
            self.children.setdefault(parent, []).append(eid)

    async def get_entity(self, eid):
        self.calls.append(("get_entity", eid))
        if self.delay:
            await trio.sleep(self.delay)
        if eid not in self.entities:
            raise errors.NotFound(f"syn{eid}")
        return self.entities[eid]

    async def list_children(self, parent):
        self.calls.append(("list_children", parent))
        if self.delay:
            await trio.sleep(self.delay)
        return [ChildHeader(id=c, name=self.entities[c].name, kind=self.entities[c].kind,
                            modified_on=self.entities[c].modified_on,
                            version=self.entities[c].version)
                for c in self.children.get(parent, [])]

    async def read(self, entity, start, length):
        self.calls.append(("read", entity.id, start, length))
        return self.data[entity.id][start:start + length]

    def count(self, name):
        return sum(1 for c in self.calls if c[0] == name)


@pytest.fixture
def world():
    r = FakeRemote()
    r.add(100, "project", Kind.PROJECT)
    r.add(101, "data (v1)", Kind.FOLDER, 100)
    r.add(102, "a.txt", Kind.FILE, 100, data=b"hello world")
    r.add(103, "big.bin", Kind.FILE, 101, data=bytes(range(256)) * 40000)
    r.add(104, "table", Kind.OTHER, 100)
    r.add(105, "secret.txt", Kind.FILE, 100, data=b"x", can_download=False)
    r.add(106, "terms.txt", Kind.FILE, 100, data=b"y", unmet_access_requirement=True)
    return r


def make_fs(remote, clock=None, **opts):
    return Filesystem(remote, 100, Options(uid=7, gid=8, **opts), clock=clock or FakeClock())


def run(fn, *args):
    return trio.run(fn, *args)


def test_root_is_inode_one_and_children_keep_synapse_ids(world):
    fs = make_fs(world)

    async def main():
        root = await fs.getattr(ROOT_INO)
        assert root.is_dir and stat.S_ISDIR(root.mode) and root.mode & 0o777 == 0o555
        a = await fs.lookup(ROOT_INO, "a.txt")
        assert a.ino == 102 and a.size == 11 and not a.is_dir and a.mode & 0o777 == 0o444
        assert (a.uid, a.gid) == (7, 8) and a.mtime == 102.0
        d = await fs.lookup(ROOT_INO, "data (v1)")
        assert d.ino == 101 and d.is_dir
        big = await fs.lookup(d.ino, "big.bin")
        assert big.size == 256 * 40000

    run(main)


def test_hidden_kinds_and_missing_names_are_enoent(world):
    fs = make_fs(world)

    async def main():
        for name in ("table", "nope", ".", ".."):
            with pytest.raises(errors.NotFound):
                await fs.lookup(ROOT_INO, name)
        with pytest.raises(errors.NotFound):
            await fs.getattr(104)
        with pytest.raises(errors.NotADirectory):
            await fs.lookup(102, "x")

    run(main)


def test_negative_lookups_are_cached_briefly(world):
    clock = FakeClock()
    fs = make_fs(world, clock, negative_ttl=5.0, metadata_ttl=60.0)

    async def main():
        for _ in range(3):
            with pytest.raises(errors.NotFound):
                await fs.lookup(ROOT_INO, "later.txt")
        assert world.count("list_children") == 1
        world.add(200, "later.txt", Kind.FILE, 100, data=b"new")
        clock.t += 6  # negative entry expired, but the listing is still fresh
        with pytest.raises(errors.NotFound):
            await fs.lookup(ROOT_INO, "later.txt")
        clock.t += 61  # listing expired: the new file appears
        assert (await fs.lookup(ROOT_INO, "later.txt")).size == 3

    run(main)


def test_metadata_ttl_refreshes_attributes(world):
    clock = FakeClock()
    fs = make_fs(world, clock, metadata_ttl=10.0)

    async def main():
        assert (await fs.getattr(102)).size == 11
        world.add(102, "a.txt", Kind.FILE, None, data=b"changed content!")
        assert (await fs.getattr(102)).size == 11  # cached
        clock.t += 11
        assert (await fs.getattr(102)).size == 16

    run(main)


def test_concurrent_lookups_make_one_call_each(world):
    world.delay = 0.05
    fs = make_fs(world)

    async def main():
        async with trio.open_nursery() as n:
            for _ in range(50):
                n.start_soon(fs.lookup, ROOT_INO, "a.txt")
        assert world.count("list_children") == 1
        assert world.count("get_entity") == 2  # root + a.txt

    run(main)


def test_readdir_pages_from_a_snapshot(world):
    for i in range(300):
        world.add(1000 + i, f"f{i:03d}", Kind.FILE, 101, data=b"z" * i)
    fs = make_fs(world, readdir_batch=32)

    async def main():
        fh = await fs.opendir(101)
        seen, offset = [], 0
        while True:
            batch = await fs.readdir(fh, offset)
            if not batch:
                break
            seen.extend(batch)
            offset = batch[-1][0]
            if offset == 64:  # a change after opendir does not disturb the snapshot
                world.add(5000, "aaa-new", Kind.FILE, 101, data=b"")
        names = [name for _, name, _ in seen]
        assert names == sorted(names, key=str.encode) and len(names) == 301
        assert "aaa-new" not in names
        # sizes are not in listings: files come back provisional (size 0, not to be cached)
        assert all(attr.provisional and attr.size == 0 for _, _, attr in seen)
        assert world.count("get_entity") == 1          # the folder itself, at opendir
        by_name = {name: attr for _, name, attr in seen}
        assert (await fs.getattr(by_name["f299"].ino)).size == 299
        assert (await fs.getattr(by_name["big.bin"].ino)).size == 256 * 40000
        fs.releasedir(fh)

    run(main)


def test_open_checks_permissions_and_mode(world):
    fs = make_fs(world)

    async def main():
        with pytest.raises(errors.PermissionDenied) as e1:
            await fs.open(105, writable=False)
        assert "DOWNLOAD" in str(e1.value) and e1.value.errno == errno.EACCES
        with pytest.raises(errors.PermissionDenied) as e2:
            await fs.open(106, writable=False)
        assert "access requirement" in str(e2.value)
        with pytest.raises(errors.ReadOnly):
            await fs.open(102, writable=True)
        with pytest.raises(errors.IsADirectory):
            await fs.open(101, writable=False)

    run(main)


def test_sequential_reads_grow_the_window_and_random_reads_reset_it(world):
    fs = Filesystem(world, 100, Options(readahead=ReadaheadPolicy(initial=64 * 1024,
                                                                  maximum=1024 * 1024)),
                    clock=FakeClock())
    expected = world.data[103]

    async def main():
        fh, keep = await fs.open(103, writable=False)
        assert keep is False
        out = bytearray()
        for off in range(0, len(expected), 4096):
            out += await fs.read(fh, off, 4096)
        assert bytes(out) == expected
        reads = [c for c in world.calls if c[0] == "read"]
        lengths = [c[3] for c in reads]
        assert lengths[0] == 64 * 1024 and max(lengths) == 1024 * 1024  # initial, then grown
        assert len(reads) < 20
        assert await fs.read(fh, len(expected), 10) == b""
        assert await fs.read(fh, len(expected) - 3, 10) == expected[-3:]
        world.calls.clear()
        assert await fs.read(fh, 5, 10) == expected[5:15]
        assert world.calls == [("read", 103, 5, 64 * 1024)]
        fs.release(fh)
        _, keep_again = await fs.open(103, writable=False)
        assert keep_again is True  # same file handle as last open: page cache stays valid

    run(main)


def test_short_object_is_an_error_not_silent_truncation(world):
    fs = make_fs(world)

    async def main():
        fh, _ = await fs.open(102, writable=False)
        world.data[102] = b"hello"  # S3 object shorter than its file handle claims
        with pytest.raises(errors.Unavailable):
            await fs.read(fh, 0, 11)

    run(main)


def test_xattrs_expose_synapse_identity(world):
    fs = make_fs(world)

    async def main():
        values = await fs.xattrs(102)
        assert values["user.synapse.id"] == "syn102"
        assert values["user.synapse.md5"] == hashlib.md5(b"hello world").hexdigest()
        assert await fs.getxattr(102, "user.synapse.version") == "1"
        with pytest.raises(errors.NoAttribute):
            await fs.getxattr(102, "user.other")

    run(main)


def test_lookup_counts_follow_remember_and_forget(world):
    fs = make_fs(world)
    fs.remember(102)
    fs.remember(102)
    fs.forget([(102, 1)])
    assert fs.lookups == {102: 1}
    fs.forget([(102, 1), (999, 3)])
    assert fs.lookups == {}


def test_ttl_cache_bounds_and_expiry():
    clock = FakeClock()
    cache = TTLCache(2, 10.0, clock)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")
    cache.set("c", 3)  # evicts least recently used "b"
    assert "b" not in cache and cache.get("a") == 1 and len(cache) == 2
    clock.t += 10
    assert cache.get("a") is None


def test_single_flight_shares_errors():
    flight = SingleFlight()
    calls = []

    async def failing():
        calls.append(1)
        await trio.sleep(0.01)
        raise errors.Unavailable("down")

    async def main():
        results = []

        async def one():
            try:
                await flight.do("k", failing)
            except errors.Unavailable:
                results.append("err")

        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(one)
        assert results == ["err"] * 5 and calls == [1]

    trio.run(main)
